//! [`IntegrationStats`]: what an integration's effects and sources have done so far.

use crate::sync::{AtomicU64, Ordering};

/// The counters the workers and source threads share. Every one is `Relaxed`: counts read for
/// reporting only; nothing else is ordered by them.
#[derive(Debug, Default)]
pub(crate) struct IntegrationCounters {
    pub(crate) effects: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) unrouted: AtomicU64,
    pub(crate) claims_lost: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) inbound: AtomicU64,
    pub(crate) inbound_dead_letters: AtomicU64,
    pub(crate) source_restarts: AtomicU64,
}

impl IntegrationCounters {
    pub(crate) fn snapshot(&self, observer_panics: u64, hook_panics: u64) -> IntegrationStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IntegrationStats {
            effects: get(&self.effects),
            skipped: get(&self.skipped),
            failures: get(&self.failures),
            waits: get(&self.waits),
            unrouted: get(&self.unrouted),
            claims_lost: get(&self.claims_lost),
            store_errors: get(&self.store_errors),
            inbound: get(&self.inbound),
            inbound_dead_letters: get(&self.inbound_dead_letters),
            source_restarts: get(&self.source_restarts),
            observer_panics,
            hook_panics,
        }
    }
}

/// A snapshot of an integration's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct IntegrationStats {
    /// Command handler calls that returned `Ok` (effects that happened).
    pub effects: u64,
    /// Effects not run because their key was completed already (a retry, a replay, another
    /// process).
    pub skipped: u64,
    /// Command handler calls that returned `Err` or panicked, and reactions that panicked
    /// (failed attempts).
    pub failures: u64,
    /// Effects that could not run now and waited without using an attempt (open breaker, full
    /// bulkhead, a claim held elsewhere, a store error).
    pub waits: u64,
    /// Commands with no route.
    pub unrouted: u64,
    /// Effects whose claim expired and was taken by another claimant while they ran.
    pub claims_lost: u64,
    /// Store calls of the integration that failed (claims, completions, releases).
    pub store_errors: u64,
    /// Inbound commands whose effect happened (or was done already).
    pub inbound: u64,
    /// Inbound commands handed back to their source after their last attempt (or unrouted).
    pub inbound_dead_letters: u64,
    /// Source restarts after an error or a panic.
    pub source_restarts: u64,
    /// Observer calls that panicked.
    pub observer_panics: u64,
    /// Calls of the user's own hooks passed through beside the observer that panicked (a
    /// route breaker's `on_transition`; the pipeline's `on_panic`, `on_slow_handler`,
    /// `on_parked`). The observer still heard of each event.
    pub hook_panics: u64,
}
