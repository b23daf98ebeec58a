//! The engine's lifecycle: one state word.
//!
//! | stage      | meaning                                                        | entered by |
//! |------------|----------------------------------------------------------------|------------|
//! | `Open`     | taking events                                                  | start |
//! | `Closed`   | the rings are closed (submits get `Closed`); the workers and the supervisor still run, so what was accepted drains | the first shutdown |
//! | `Stopping` | the workers take no more events and exit; the supervisor exits | the shutdown that drains, at the drain's end or its deadline |
//! | `Stopped`  | every thread joined, the leftovers handed back, every entity cleaned up | the shutdown that drains |
//!
//! The stage only moves forward (`fetch_max`). What each stage means for each thread, and how
//! shutdown gets from one to the next, is in `shutdown`.
//!
//! # Orderings
//!
//! A stage is stored with `Release` (`fetch_max` is `AcqRel`) and loaded with `Acquire` where a
//! thread acts on it once (a worker deciding to exit, shutdown deciding what is left to do).
//! The runner's check between events ([`Lifecycle::should_stop`]) is `Relaxed`: it only makes
//! a run end sooner; nothing it reads depends on it, and the collection of what is left happens
//! after the runner's thread is joined.

use crate::sync::{AtomicU8, Mutex, MutexGuard, Ordering};

/// A lifecycle stage: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Stage {
    Open = 0,
    Closed = 1,
    Stopping = 2,
    Stopped = 3,
}

/// The engine's lifecycle stage, and the lock that makes one shutdown at a time do the drain.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// A [`Stage`]; orderings in the module docs.
    stage: AtomicU8,
    /// Held by the shutdown that drains, so that a concurrent one
    /// waits for it and then finds `Stopped`.
    draining: Mutex<()>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            stage: AtomicU8::new(Stage::Open as u8),
            draining: Mutex::new(()),
        }
    }
}

impl Lifecycle {
    /// The current stage.
    pub(crate) fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Acquire) {
            0 => Stage::Open,
            1 => Stage::Closed,
            2 => Stage::Stopping,
            _ => Stage::Stopped,
        }
    }

    /// Moves the stage forward to `to` (never back); returns the stage before.
    pub(crate) fn advance(&self, to: Stage) -> Stage {
        match self.stage.fetch_max(to as u8, Ordering::AcqRel) {
            0 => Stage::Open,
            1 => Stage::Closed,
            2 => Stage::Stopping,
            _ => Stage::Stopped,
        }
    }

    /// Whether the workers and the supervisor must exit (`Stopping` or later).
    pub(crate) fn is_stopping(&self) -> bool {
        self.stage() >= Stage::Stopping
    }

    /// The runner's check between events: a `Relaxed` load (see the module docs).
    #[inline]
    pub(crate) fn should_stop(&self) -> bool {
        self.stage.load(Ordering::Relaxed) >= Stage::Stopping as u8
    }

    /// Takes the drain lock (see the field).
    pub(crate) fn lock_drain(&self) -> MutexGuard<'_, ()> {
        self.draining.lock()
    }
}
