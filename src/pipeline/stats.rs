//! [`PipelineStats`]: what a pipeline has done so far.

use crate::sync::{AtomicU64, Ordering};

/// The counters a pipeline's threads share. Every one is `Relaxed`: each is a count (or, for
/// `checkpoint`, the last value saved) read for reporting only; nothing else is ordered by it.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) handled: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) read_errors: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    pub(crate) checkpoint_errors: AtomicU64,
    pub(crate) checkpoint: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> PipelineStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PipelineStats {
            submitted: get(&self.submitted),
            handled: get(&self.handled),
            dead_lettered: get(&self.dead_lettered),
            read_errors: get(&self.read_errors),
            undecodable: get(&self.undecodable),
            checkpoint_errors: get(&self.checkpoint_errors),
            checkpoint: get(&self.checkpoint),
        }
    }
}

/// A snapshot of a pipeline's counters ([`Pipeline::stats`](super::Pipeline::stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PipelineStats {
    /// Events read from the store and accepted by the engine.
    pub submitted: u64,
    /// Events the handler returned `Ok` for.
    pub handled: u64,
    /// Events dead-lettered after their last attempt.
    pub dead_lettered: u64,
    /// Reads from the store that failed (each retried after a backoff).
    pub read_errors: u64,
    /// Stored events that could not be decoded (reported to the log, then passed).
    pub undecodable: u64,
    /// Checkpoint saves that failed (each retried at the next interval).
    pub checkpoint_errors: u64,
    /// The last checkpoint saved: every position up to it is fully processed.
    pub checkpoint: u64,
}
