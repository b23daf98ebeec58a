//! [`StoreExport`]: the [`StoreHealth`] of the store a pipeline reads, as `humpyard_store_*`
//! counters and gauges labelled `subscriber` (the store has no thread of its own: its reader's
//! engine exports it).

use std::sync::OnceLock;

use metrics::{Gauge, Label};

use super::{gauge, Reading, Registered};
use crate::store::StoreHealth;

/// The store's counters: (name, description, field).
const COUNTERS: [Reading<StoreHealth>; 2] = [
    (
        "humpyard_store_pool_errors_total",
        "Connections the store's pool failed to make or found broken.",
        |h| h.pool_errors,
    ),
    (
        "humpyard_store_watch_errors_total",
        "Failures of the store's append-watch connections.",
        |h| h.watch_errors,
    ),
];

/// The gap wait, in seconds (0 while no reader is held at a gap).
const GAP_WAIT: &str = "humpyard_store_gap_wait_seconds";

/// Exports the health of a pipeline's store; called by its engine's supervisor on every tick.
#[derive(Debug)]
pub(crate) struct StoreExport {
    labels: Vec<Label>,
    handles: OnceLock<(Registered<StoreHealth>, Gauge)>,
}

impl StoreExport {
    /// An export labelled `subscriber = subscriber`.
    pub(crate) fn new(subscriber: &str) -> StoreExport {
        StoreExport {
            labels: vec![Label::new("subscriber", subscriber.to_owned())],
            handles: OnceLock::new(),
        }
    }

    /// Hands `h` to the recorder (registering the handles the first time).
    pub(crate) fn export(&self, h: &StoreHealth) {
        let (registered, gap_wait) = self.handles.get_or_init(|| {
            (
                Registered::new(&COUNTERS, &[], &self.labels),
                gauge(
                    GAP_WAIT,
                    "How long readers have been held at a missing position; 0 when none.",
                    &self.labels,
                ),
            )
        });
        registered.export(h);
        gap_wait.set(h.gap_wait.map_or(0.0, |w| w.waited.as_secs_f64()));
    }
}
