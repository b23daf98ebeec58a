//! The engine's two kinds of counter, by who writes them: [`OwnedCounter`] (one writer at a
//! time, no read-modify-write) and [`SharedCounter`] (any thread, a `Relaxed` `fetch_add`).
//! Which counter is which, and the orderings that make a snapshot exact at quiescence, are in
//! `metrics`.

use crate::sync::{AtomicU64, Ordering};

/// A counter with a single writer at a time: a `Relaxed` load and store (no read-modify-write);
/// successive writers are ordered by whatever hands the writing role on (a shard's run).
#[derive(Debug, Default)]
pub(crate) struct OwnedCounter(AtomicU64);

impl OwnedCounter {
    /// Adds `n`. Only the shard's current runner calls this.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        if n != 0 {
            self.0.store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }

    /// Sets the value (for gauges).
    #[inline]
    pub(crate) fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter any thread may bump: a `Relaxed` `fetch_add`, read `Relaxed` (a count orders
/// nothing).
#[derive(Debug, Default)]
pub(crate) struct SharedCounter(AtomicU64);

impl SharedCounter {
    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
