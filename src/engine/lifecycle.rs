//! The engine's lifecycle: one state word, and which threads are the engine's own.
//!
//! | stage      | meaning                                                        | entered by |
//! |------------|----------------------------------------------------------------|------------|
//! | `Open`     | the workers and the supervisor run (from the first shutdown on, the rings are closed and what they accepted drains) | start |
//! | `Stopping` | the workers take no more events and exit; the supervisor exits | the shutdown that drains, at the drain's end or its deadline; or the last drop of the engine on one of its own threads |
//! | `Stopped`  | every thread joined, the leftovers handed back, every entity cleaned up | the shutdown that drains |
//!
//! The stage only moves forward (`fetch_max`). Whether the intake is closed is not a stage: it
//! is every ring's closed mark, set by the first shutdown (see `shutdown`). What each stage
//! means for each thread, and how shutdown gets from one to the next, is in `shutdown`.
//!
//! # Orderings
//!
//! A stage is stored with `Release` (`fetch_max` is `AcqRel`) and loaded with `Acquire` where a
//! thread acts on it once (a worker deciding to exit, shutdown deciding what is left to do).
//! The runner's check between events ([`Lifecycle::should_stop`]) is `Relaxed`: it only makes
//! a run end sooner; nothing it reads depends on it, and the collection of what is left happens
//! after the runner's thread is joined.
//!
//! # The engine's own threads
//!
//! Every worker and supervisor thread marks itself, when it starts, with its engine's
//! identity (the address of the engine's shared state, unique while that state lives, which
//! those threads keep alive). Shutdown and the engine's drop ask [`on_engine_thread`] before
//! they wait for the drain or join a thread: a thread of the engine cannot wait for the very
//! call it is in, and must not join itself. The thread running a shutdown's drain is marked
//! too while it does ([`EngineThreadMark`]): the cleanups and hooks it calls are the engine's
//! calls, and a shutdown they make must not wait for the one they are part of.

use std::cell::Cell;

use crate::sync::{AtomicU8, Mutex, MutexGuard, Ordering};

/// A lifecycle stage: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Stage {
    Open = 0,
    Stopping = 1,
    Stopped = 2,
}

/// The engine's lifecycle stage, and the lock that makes one shutdown at a time do the drain.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// A [`Stage`]; orderings in the module docs.
    stage: AtomicU8,
    /// Held by the shutdown that drains (off the engine's threads), so that a concurrent one
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
            1 => Stage::Stopping,
            _ => Stage::Stopped,
        }
    }

    /// Moves the stage forward to `to` (never back); returns the stage before.
    pub(crate) fn advance(&self, to: Stage) -> Stage {
        match self.stage.fetch_max(to as u8, Ordering::AcqRel) {
            0 => Stage::Open,
            1 => Stage::Stopping,
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

crate::sync::thread_local! {
    /// The identity of the engine whose thread this is; 0 on every other thread. (Not a
    /// `const` initialiser: loom's `thread_local!` has no such form.)
    #[allow(clippy::missing_const_for_thread_local)]
    static ENGINE_OF_THIS_THREAD: Cell<usize> = Cell::new(0);
}

/// Marks the calling thread as one of engine `engine`'s own.
pub(crate) fn mark_engine_thread(engine: usize) {
    ENGINE_OF_THIS_THREAD.with(|cell| cell.set(engine));
}

/// Whether the calling thread is one of engine `engine`'s own (a worker, its supervisor, or a
/// thread running its shutdown's drain).
pub(crate) fn on_engine_thread(engine: usize) -> bool {
    ENGINE_OF_THIS_THREAD.with(|cell| cell.get() == engine)
}

/// Whether the calling thread is any engine's own (where a shutdown must not wait).
pub(crate) fn on_some_engine_thread() -> bool {
    ENGINE_OF_THIS_THREAD.with(|cell| cell.get() != 0)
}

/// Marks the calling thread as one of an engine's own until dropped, then restores the mark it
/// had (it may be a worker of another engine).
#[derive(Debug)]
pub(crate) struct EngineThreadMark {
    previous: usize,
}

impl EngineThreadMark {
    /// Marks the calling thread as one of engine `engine`'s own.
    pub(crate) fn new(engine: usize) -> EngineThreadMark {
        EngineThreadMark {
            previous: ENGINE_OF_THIS_THREAD.with(|cell| cell.replace(engine)),
        }
    }
}

impl Drop for EngineThreadMark {
    fn drop(&mut self) {
        ENGINE_OF_THIS_THREAD.with(|cell| cell.set(self.previous));
    }
}
