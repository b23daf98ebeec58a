//! Counters and gauges, and the [`Metrics`] snapshot built from them.
//!
//! Nothing here takes a lock or does a read-modify-write on the hot path:
//! - `accepted` is the sum of the rings' tails (each accepted event claims one position);
//! - `queued` is tail minus head per ring;
//! - the per-shard counters ([`ShardStats`]) have one writer at a time, the thread running the
//!   shard, which tallies a run in a [`Tally`] and adds it with a `Relaxed` load and store once
//!   per run; the shard's run hand-off (its state's Release/Acquire) orders successive writers;
//! - `rejected` is a per-shard `fetch_add`, on the rejection path only;
//! - `panics` is one `SharedCounter` (`counters`) in the engine's containment, bumped only
//!   when a panic is caught.
//!
//! Every counter is read with `Relaxed` loads: a snapshot taken while the engine runs is a set
//! of independent readings; at quiescence (after shutdown has joined the threads, or once the
//! reader has synchronised with the writers some other way) each reading is exact.
//!
//! At quiescence (and after shutdown) the snapshot is exact and
//! `accepted == processed + dead_lettered + queued + (events waiting for a retry)`; after
//! shutdown the last two are the report's `unprocessed` (R-OBS-2, R-LIFE-3).

use super::counters::OwnedCounter;
use super::durations::HandlerDurations;

/// What one shard's runner counts.
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    pub(crate) processed: OwnedCounter,
    pub(crate) dead_lettered: OwnedCounter,
    pub(crate) retries: OwnedCounter,
    pub(crate) reaped: OwnedCounter,
    pub(crate) evicted: OwnedCounter,
    /// 1 while an event of the shard waits for a retry (a gauge).
    pub(crate) awaiting_retry: OwnedCounter,
}

/// What one run of a shard counts, added to the shard's [`ShardStats`] once, at its end.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) processed: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) retries: u64,
    pub(crate) reaped: u64,
    pub(crate) evicted: u64,
}

impl Tally {
    /// Adds the tally to `stats` and sets the retry gauge. Only the shard's runner calls it.
    pub(crate) fn publish(&self, stats: &ShardStats, awaiting_retry: bool) {
        stats.processed.add(self.processed);
        stats.dead_lettered.add(self.dead_lettered);
        stats.retries.add(self.retries);
        stats.reaped.add(self.reaped);
        stats.evicted.add(self.evicted);
        stats.awaiting_retry.set(u64::from(awaiting_retry));
    }
}

/// A snapshot of the engine's counters and gauges ([`Engine::metrics`](crate::Engine::metrics)).
///
/// Counters only grow. While the engine runs the fields are read one after another, so they
/// may be off by the events in flight; at quiescence and after shutdown they are exact and
/// `accepted == processed + dead_lettered + queued + awaiting_retry` (after shutdown, `queued +
/// awaiting_retry` is the report's `unprocessed.len()`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Events taken into a ring.
    pub accepted: u64,
    /// Submits that handed their event back (`Full`, `Timeout` or `Closed`).
    pub rejected: u64,
    /// Events handled successfully.
    pub processed: u64,
    /// Events that failed `max_attempts` times.
    pub dead_lettered: u64,
    /// Caught panics: in `init`, `handle`, `cleanup`, in hooks, and in the `Display` and `Drop`
    /// of the user's values the engine formats or disposes of.
    pub panics: u64,
    /// Handler attempts after the first (retries scheduled).
    pub retries: u64,
    /// Live entities (states made by `init` and not yet cleaned up).
    pub entities_live: u64,
    /// Entities cleaned up because they were idle for `idle_timeout`.
    pub entities_reaped: u64,
    /// Entities cleaned up to keep `max_entities`.
    pub entities_evicted: u64,
    /// Events waiting in rings (not those being handled).
    pub queued: u64,
    /// Events held back for a retry after a failure (at most one per shard).
    pub awaiting_retry: u64,
    /// Handler calls that ran longer than the slow-handler threshold.
    pub slow_handlers: u64,
    /// Worker threads that died and were replaced.
    pub workers_replaced: u64,
    /// Dead letters dropped from the default buffer because it was full (never with a hook).
    pub dead_letters_discarded: u64,
    /// Events waiting in each shard's ring, by shard index.
    pub shard_queued: Vec<u64>,
    /// How long `handle` calls took, when the engine was built with
    /// [`time_handlers(true)`](crate::EngineBuilder::time_handlers); `None` otherwise.
    pub handler_durations: Option<HandlerDurations>,
}
