//! [`ShutdownReport`]: what shutdown could not process.

use std::fmt;

use crate::{Event, StreamId};

/// The result of [`Engine::shutdown`](crate::Engine::shutdown).
///
/// After a shutdown made off the engine's threads, `accepted == processed + dead_lettered +
/// unprocessed.len()` holds exactly.
#[non_exhaustive]
pub struct ShutdownReport<P, K = StreamId> {
    /// Accepted events that were neither processed nor dead-lettered when the deadline passed,
    /// in per-stream order (an event waiting for a retry comes first in its shard).
    pub unprocessed: Vec<Event<P, K>>,
    /// Whether the deadline passed before the rings were drained.
    pub deadline_exceeded: bool,
    /// Whether shutdown was called on one of the engine's own threads (from a handler, a hook,
    /// or a value's `Drop` running there). Then it only closed the intake: the engine keeps
    /// draining, and the drain, the cleanup and the join are left to the next shutdown (or the
    /// last drop) made off the engine's threads, whose report hands back what is left.
    /// `unprocessed` is empty.
    pub drain_deferred: bool,
}

impl<P, K> ShutdownReport<P, K> {
    /// The report of a call that found the engine already shut down.
    pub(crate) fn empty() -> ShutdownReport<P, K> {
        ShutdownReport {
            unprocessed: Vec::new(),
            deadline_exceeded: false,
            drain_deferred: false,
        }
    }

    /// The report of a call made on one of the engine's own threads.
    pub(crate) fn deferred() -> ShutdownReport<P, K> {
        ShutdownReport {
            drain_deferred: true,
            ..ShutdownReport::empty()
        }
    }
}

impl<P, K> fmt::Debug for ShutdownReport<P, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownReport")
            .field("unprocessed", &self.unprocessed.len())
            .field("deadline_exceeded", &self.deadline_exceeded)
            .field("drain_deferred", &self.drain_deferred)
            .finish()
    }
}
