//! [`PipelineStats`]: what a pipeline has done so far.

use crate::sync::{AtomicU64, Ordering};

/// The counters a pipeline's threads share. Every one is `Relaxed`: each is a count (or, for
/// `checkpoint`, the last value saved) read for reporting only; nothing else is ordered by it.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) handled: AtomicU64,
    pub(crate) parked: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) discarded: AtomicU64,
    pub(crate) rehydrations: AtomicU64,
    pub(crate) rehydrated_events: AtomicU64,
    pub(crate) snapshots_saved: AtomicU64,
    pub(crate) snapshot_errors: AtomicU64,
    pub(crate) store_retries: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) read_errors: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    pub(crate) checkpoint_errors: AtomicU64,
    pub(crate) checkpoint: AtomicU64,
    /// The highest position the reader has read (set once per batch read, not per event).
    pub(crate) head: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> PipelineStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PipelineStats {
            submitted: get(&self.submitted),
            handled: get(&self.handled),
            parked: get(&self.parked),
            replayed: get(&self.replayed),
            discarded: get(&self.discarded),
            rehydrations: get(&self.rehydrations),
            rehydrated_events: get(&self.rehydrated_events),
            snapshots_saved: get(&self.snapshots_saved),
            snapshot_errors: get(&self.snapshot_errors),
            store_retries: get(&self.store_retries),
            waits: get(&self.waits),
            panics: get(&self.panics),
            read_errors: get(&self.read_errors),
            undecodable: get(&self.undecodable),
            checkpoint_errors: get(&self.checkpoint_errors),
            checkpoint: get(&self.checkpoint),
            head: get(&self.head),
        }
    }
}

/// A snapshot of a pipeline's counters ([`Pipeline::stats`](super::Pipeline::stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PipelineStats {
    /// Events read from the store and accepted by the engine.
    pub submitted: u64,
    /// Events the handler returned `Ok` for (replays not included).
    pub handled: u64,
    /// Events parked: after their last attempt, or behind an earlier parked event of their
    /// stream (a replay that fails again counts again).
    pub parked: u64,
    /// Parked events replayed successfully.
    pub replayed: u64,
    /// Parked events discarded.
    pub discarded: u64,
    /// States rebuilt from the store.
    pub rehydrations: u64,
    /// Events folded while rebuilding states.
    pub rehydrated_events: u64,
    /// Snapshots saved.
    pub snapshots_saved: u64,
    /// Snapshots that could not be saved, or were ignored because they did not decode.
    pub snapshot_errors: u64,
    /// Store calls of the handler's side (rebuilding, parking) that failed and were tried
    /// again after a backoff; none of them counts as an attempt.
    pub store_retries: u64,
    /// Handler errors classified [`ErrorKind::Wait`](super::ErrorKind::Wait): tried again after
    /// a backoff without using an attempt.
    pub waits: u64,
    /// Panics the pipeline caught in user code outside `handle` (`apply` after a handled
    /// event, `encode_state`, `cleanup`, the parked-event hook). An
    /// [`Integration`](crate::integration::Integration) contains the hooks it passes through
    /// itself and counts their panics in its own stats (`hook_panics`).
    pub panics: u64,
    /// Reads from the store that failed (each retried after a backoff).
    pub read_errors: u64,
    /// Stored events that could not be decoded (reported to the log, then passed).
    pub undecodable: u64,
    /// Checkpoint saves that failed (each retried at the next interval).
    pub checkpoint_errors: u64,
    /// The last checkpoint saved: every position up to it is fully processed.
    pub checkpoint: u64,
    /// The highest store position the reader has read (positions its filter left out
    /// included), updated once per batch read. `head - checkpoint` is the consumer lag.
    pub head: u64,
}
