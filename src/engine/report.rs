//! [`ShutdownReport`]: what shutdown could not process.

use std::fmt;

use crate::Event;

/// The result of [`Engine::shutdown`](crate::Engine::shutdown).
///
/// After shutdown, `accepted == processed + dead_lettered + unprocessed.len()` holds exactly.
pub struct ShutdownReport<P> {
    /// Accepted events that were neither processed nor dead-lettered when the deadline passed,
    /// in per-stream order (an event waiting for a retry comes first in its shard).
    pub unprocessed: Vec<Event<P>>,
    /// Whether the deadline passed before the rings were drained.
    pub deadline_exceeded: bool,
}

impl<P> ShutdownReport<P> {
    pub(crate) fn empty() -> ShutdownReport<P> {
        ShutdownReport {
            unprocessed: Vec::new(),
            deadline_exceeded: false,
        }
    }
}

impl<P> fmt::Debug for ShutdownReport<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownReport")
            .field("unprocessed", &self.unprocessed.len())
            .field("deadline_exceeded", &self.deadline_exceeded)
            .finish()
    }
}
