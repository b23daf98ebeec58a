//! Export of the engine's, pipelines' and integrations' counters and gauges through the
//! [`metrics`] facade (feature `metrics`, off by default).
//!
//! Switched on per engine, pipeline or integration with `export_metrics(name)` on its builder.
//! humpyard installs nothing global: the application installs a recorder (for example
//! `metrics-exporter-prometheus`'s), preferably before starting what it exports. The names and
//! labels are listed in the README's "Metrics" section.
//!
//! # The invariant: no facade call per event
//!
//! The hot path does not change with this module: every value exported is one humpyard
//! already keeps in its own atomics ([`Metrics`](crate::Metrics),
//! [`PipelineStats`](crate::pipeline::PipelineStats), a pipeline's store's
//! [`StoreHealth`](crate::store::StoreHealth),
//! [`IntegrationStats`](crate::integration::IntegrationStats), the routes' breakers and
//! bulkheads). The engine's supervisor thread reads them once per tick (at most 100 ms apart)
//! and hands them to the recorder as absolutes (`Counter::absolute`, `Gauge::set`). No
//! worker, producer or reader thread ever calls the facade, so R-PERF-1's bound on the atomic
//! operations per event holds with the feature on exactly as with it off. The one addition
//! per read batch (not per event) is the pipeline's `head` position, a `Relaxed` store.
//!
//! The handles are registered with the recorder at the first tick, which comes as the engine
//! starts, then kept: install the recorder before starting what it exports, or it is never
//! used. The supervisor exports once more as it stops, after the drain.
//!
//! An engine built without a supervisor thread (loom models only) exports nothing.

mod engine;
mod integration;
mod pipeline;
mod store;

pub(crate) use engine::EngineExport;
pub(crate) use integration::IntegrationExport;
pub(crate) use pipeline::PipelineExport;
pub(crate) use store::StoreExport;

use metrics::{Counter, Gauge, Label};

/// Registers (and describes) the counter `name` with `labels` in the installed recorder.
fn counter(name: &'static str, help: &'static str, labels: &[Label]) -> Counter {
    metrics::describe_counter!(name, help);
    metrics::counter!(name, labels.iter())
}

/// Registers (and describes) the gauge `name` with `labels` in the installed recorder.
fn gauge(name: &'static str, help: &'static str, labels: &[Label]) -> Gauge {
    metrics::describe_gauge!(name, help);
    metrics::gauge!(name, labels.iter())
}

/// How a value is read from a snapshot `S`.
type Read<S> = fn(&S) -> u64;

/// A value read from a snapshot `S`, with its name and description.
type Reading<S> = (&'static str, &'static str, Read<S>);

/// A snapshot `S`'s counters and gauges under one set of labels: registered once, then handed
/// every snapshot.
#[derive(Debug)]
struct Registered<S: 'static> {
    counters: Vec<(Counter, Read<S>)>,
    gauges: Vec<(Gauge, Read<S>)>,
}

impl<S> Registered<S> {
    /// Registers `counters` and `gauges` with `labels`.
    fn new(counters: &[Reading<S>], gauges: &[Reading<S>], labels: &[Label]) -> Registered<S> {
        Registered {
            counters: counters
                .iter()
                .map(|&(name, help, read)| (counter(name, help, labels), read))
                .collect(),
            gauges: gauges
                .iter()
                .map(|&(name, help, read)| (gauge(name, help, labels), read))
                .collect(),
        }
    }

    /// Hands `s` to the recorder: counters as absolutes, gauges set.
    fn export(&self, s: &S) {
        for (handle, read) in &self.counters {
            handle.absolute(read(s));
        }
        for (handle, read) in &self.gauges {
            handle.set(read(s) as f64);
        }
    }
}
