//! [`EngineExport`]: an engine's [`Metrics`] as `humpyard_*` counters and gauges, labelled
//! `engine` (and `shard` for the per-shard queue depth, `le` for the handler-duration
//! histogram's buckets).

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Label};

use super::{counter, gauge, Reading, Registered};
use crate::{HandlerDurations, Metrics};

/// The engine's counters: (name, description, field).
const COUNTERS: [Reading<Metrics>; 11] = [
    (
        "humpyard_events_accepted_total",
        "Events taken into a shard's ring.",
        |m| m.accepted,
    ),
    (
        "humpyard_events_rejected_total",
        "Submits that handed their event back (full, timeout or closed).",
        |m| m.rejected,
    ),
    ("humpyard_events_processed_total", "Events handled successfully.", |m| {
        m.processed
    }),
    (
        "humpyard_events_dead_lettered_total",
        "Events that failed their last attempt.",
        |m| m.dead_lettered,
    ),
    (
        "humpyard_panics_total",
        "Panics caught in user code (init, handle, cleanup, hooks, Display, Drop).",
        |m| m.panics,
    ),
    ("humpyard_retries_total", "Handler attempts after the first.", |m| {
        m.retries
    }),
    (
        "humpyard_entities_reaped_total",
        "Entities cleaned up after their idle timeout.",
        |m| m.entities_reaped,
    ),
    (
        "humpyard_entities_evicted_total",
        "Entities cleaned up to keep max_entities.",
        |m| m.entities_evicted,
    ),
    (
        "humpyard_slow_handlers_total",
        "Handler calls that ran past the slow-handler threshold.",
        |m| m.slow_handlers,
    ),
    (
        "humpyard_workers_replaced_total",
        "Worker threads that died and were replaced.",
        |m| m.workers_replaced,
    ),
    (
        "humpyard_dead_letters_discarded_total",
        "Dead letters dropped because the default buffer was full.",
        |m| m.dead_letters_discarded,
    ),
];

/// The engine's gauges: (name, description, field).
const GAUGES: [Reading<Metrics>; 3] = [
    (
        "humpyard_entities_live",
        "Live entities (states made by init, not yet cleaned up).",
        |m| m.entities_live,
    ),
    ("humpyard_events_queued", "Events waiting in the shards' rings.", |m| {
        m.queued
    }),
    (
        "humpyard_events_awaiting_retry",
        "Events held back for a retry after a failure.",
        |m| m.awaiting_retry,
    ),
];

/// The per-shard queue depth gauge.
const SHARD_QUEUED: &str = "humpyard_shard_events_queued";

/// The handler-duration histogram, in Prometheus's shape: cumulative `_bucket` counters
/// labelled `le` (seconds), a `_sum` and a `_count`.
const DURATION_BUCKET: &str = "humpyard_handler_duration_seconds_bucket";
const DURATION_SUM: &str = "humpyard_handler_duration_seconds_sum";
const DURATION_COUNT: &str = "humpyard_handler_duration_seconds_count";

/// The buckets exported as `le` bounds: 2^10 ns (about 1 µs) to 2^35 ns (about 34 s), then
/// `+Inf`. Shorter calls count in the first bound, as Prometheus buckets are cumulative.
const EXPORTED_BOUNDS: std::ops::RangeInclusive<usize> = 10..=35;

/// Exports one engine's [`Metrics`]; called by its supervisor on every tick.
#[derive(Debug)]
pub(crate) struct EngineExport {
    labels: Vec<Label>,
    handles: OnceLock<Handles>,
}

/// The registered handles: [`COUNTERS`] and [`GAUGES`], then one gauge per shard.
#[derive(Debug)]
struct Handles {
    readings: Registered<Metrics>,
    shard_queued: Vec<Gauge>,
    /// When the engine times its handler calls.
    durations: Option<DurationHandles>,
}

/// The histogram's handles: one counter per exported bound, `+Inf` last.
#[derive(Debug)]
struct DurationHandles {
    buckets: Vec<Counter>,
    sum: Gauge,
    count: Counter,
}

impl DurationHandles {
    fn new(labels: &[Label]) -> DurationHandles {
        let bounds = EXPORTED_BOUNDS
            .filter_map(HandlerDurations::upper_bound)
            .map(|d| d.as_secs_f64().to_string())
            .chain(["+Inf".to_owned()]);
        let buckets = bounds
            .map(|le| {
                let mut labels = labels.to_vec();
                labels.push(Label::new("le", le));
                counter(
                    DURATION_BUCKET,
                    "Handler calls that took at most `le` seconds (cumulative).",
                    &labels,
                )
            })
            .collect();
        DurationHandles {
            buckets,
            sum: gauge(DURATION_SUM, "Seconds spent in handler calls.", labels),
            count: counter(DURATION_COUNT, "Handler calls timed.", labels),
        }
    }

    fn export(&self, d: &HandlerDurations) {
        let mut below = d.counts[..*EXPORTED_BOUNDS.start()].iter().sum::<u64>();
        for (i, handle) in EXPORTED_BOUNDS.zip(&self.buckets) {
            below += d.counts[i];
            handle.absolute(below);
        }
        if let Some(inf) = self.buckets.last() {
            inf.absolute(d.count());
        }
        self.sum.set(d.sum.as_secs_f64());
        self.count.absolute(d.count());
    }
}

impl EngineExport {
    /// An export labelled `engine = name`.
    pub(crate) fn new(name: &str) -> EngineExport {
        EngineExport {
            labels: vec![Label::new("engine", name.to_owned())],
            handles: OnceLock::new(),
        }
    }

    /// Hands `m` to the recorder as absolutes (registering the handles the first time).
    pub(crate) fn export(&self, m: &Metrics) {
        let handles = self.handles.get_or_init(|| Handles {
            readings: Registered::new(&COUNTERS, &GAUGES, &self.labels),
            shard_queued: (0..m.shard_queued.len())
                .map(|shard| {
                    let mut labels = self.labels.clone();
                    labels.push(Label::new("shard", shard.to_string()));
                    gauge(SHARD_QUEUED, "Events waiting in one shard's ring.", &labels)
                })
                .collect(),
            durations: m.handler_durations.as_ref().map(|_| DurationHandles::new(&self.labels)),
        });
        handles.readings.export(m);
        for (queued, handle) in m.shard_queued.iter().zip(&handles.shard_queued) {
            handle.set(*queued as f64);
        }
        if let (Some(handles), Some(d)) = (&handles.durations, &m.handler_durations) {
            handles.export(d);
        }
    }
}
