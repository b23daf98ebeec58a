//! [`PipelineExport`]: a pipeline's [`PipelineStats`] as `humpyard_pipeline_*` counters and
//! gauges, labelled `subscriber`, with its consumer lag.

use std::sync::OnceLock;

use metrics::Label;

use super::{Reading, Registered};
use crate::pipeline::PipelineStats;

/// The pipeline's counters: (name, description, field).
const COUNTERS: [Reading<PipelineStats>; 15] = [
    (
        "humpyard_pipeline_events_submitted_total",
        "Events read from the store and accepted by the engine.",
        |s| s.submitted,
    ),
    (
        "humpyard_pipeline_events_handled_total",
        "Events the handler returned Ok for (replays not included).",
        |s| s.handled,
    ),
    (
        "humpyard_pipeline_events_parked_total",
        "Events parked after their last attempt or behind a parked event of their stream.",
        |s| s.parked,
    ),
    (
        "humpyard_pipeline_events_replayed_total",
        "Parked events replayed successfully.",
        |s| s.replayed,
    ),
    (
        "humpyard_pipeline_events_discarded_total",
        "Parked events discarded.",
        |s| s.discarded,
    ),
    (
        "humpyard_pipeline_rehydrations_total",
        "States rebuilt from the store.",
        |s| s.rehydrations,
    ),
    (
        "humpyard_pipeline_rehydrated_events_total",
        "Events folded while rebuilding states.",
        |s| s.rehydrated_events,
    ),
    ("humpyard_pipeline_snapshots_saved_total", "Snapshots saved.", |s| {
        s.snapshots_saved
    }),
    (
        "humpyard_pipeline_snapshot_errors_total",
        "Snapshots not saved, or ignored because they did not decode.",
        |s| s.snapshot_errors,
    ),
    (
        "humpyard_pipeline_store_retries_total",
        "Store calls of the handler's side retried after a backoff.",
        |s| s.store_retries,
    ),
    (
        "humpyard_pipeline_waits_total",
        "Handler errors classified Wait (retried without using an attempt).",
        |s| s.waits,
    ),
    (
        "humpyard_pipeline_panics_total",
        "Panics caught in user code outside handle.",
        |s| s.panics,
    ),
    (
        "humpyard_pipeline_read_errors_total",
        "Reads from the store that failed.",
        |s| s.read_errors,
    ),
    (
        "humpyard_pipeline_undecodable_events_total",
        "Stored events that could not be decoded (passed).",
        |s| s.undecodable,
    ),
    (
        "humpyard_pipeline_checkpoint_errors_total",
        "Checkpoint saves that failed.",
        |s| s.checkpoint_errors,
    ),
];

/// The pipeline's gauges: (name, description, value).
const GAUGES: [Reading<PipelineStats>; 3] = [
    (
        "humpyard_pipeline_checkpoint_position",
        "The last checkpoint saved: every position up to it is processed.",
        |s| s.checkpoint,
    ),
    (
        "humpyard_pipeline_head_position",
        "The highest store position the reader has read.",
        |s| s.head,
    ),
    (
        "humpyard_pipeline_lag_events",
        "Consumer lag: head position minus the checkpoint.",
        |s| s.head.saturating_sub(s.checkpoint),
    ),
];

/// Exports one pipeline's [`PipelineStats`]; called by its engine's supervisor on every tick.
#[derive(Debug)]
pub(crate) struct PipelineExport {
    labels: Vec<Label>,
    handles: OnceLock<Registered<PipelineStats>>,
}

impl PipelineExport {
    /// An export labelled `subscriber = subscriber`.
    pub(crate) fn new(subscriber: &str) -> PipelineExport {
        PipelineExport {
            labels: vec![Label::new("subscriber", subscriber.to_owned())],
            handles: OnceLock::new(),
        }
    }

    /// Hands `s` to the recorder as absolutes (registering the handles the first time).
    pub(crate) fn export(&self, s: &PipelineStats) {
        self.handles
            .get_or_init(|| Registered::new(&COUNTERS, &GAUGES, &self.labels))
            .export(s);
    }
}
