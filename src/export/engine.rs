//! [`EngineExport`]: an engine's [`Metrics`] as `humpyard_*` counters and gauges, labelled
//! `engine` (and `shard` for the per-shard queue depth).

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Label};

use super::{counter, gauge, Reading};
use crate::Metrics;

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

/// Exports one engine's [`Metrics`]; called by its supervisor on every tick.
#[derive(Debug)]
pub(crate) struct EngineExport {
    labels: Vec<Label>,
    handles: OnceLock<Handles>,
}

/// The registered handles, in the order of [`COUNTERS`] and [`GAUGES`], then one gauge per shard.
#[derive(Debug)]
struct Handles {
    counters: Vec<Counter>,
    gauges: Vec<Gauge>,
    shard_queued: Vec<Gauge>,
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
            counters: COUNTERS
                .iter()
                .map(|(name, help, _)| counter(name, help, &self.labels))
                .collect(),
            gauges: GAUGES
                .iter()
                .map(|(name, help, _)| gauge(name, help, &self.labels))
                .collect(),
            shard_queued: (0..m.shard_queued.len())
                .map(|shard| {
                    let mut labels = self.labels.clone();
                    labels.push(Label::new("shard", shard.to_string()));
                    gauge(SHARD_QUEUED, "Events waiting in one shard's ring.", &labels)
                })
                .collect(),
        });
        for ((_, _, read), handle) in COUNTERS.iter().zip(&handles.counters) {
            handle.absolute(read(m));
        }
        for ((_, _, read), handle) in GAUGES.iter().zip(&handles.gauges) {
            handle.set(read(m) as f64);
        }
        for (queued, handle) in m.shard_queued.iter().zip(&handles.shard_queued) {
            handle.set(*queued as f64);
        }
    }
}
