//! One worker index's slot: the thread that currently serves it, and what the supervisor
//! watches of it.
//!
//! The handle lives in an `ArcSwap` and is replaced (epoch + 1) only by
//! [`install`](WorkerSlot::install), a compare-and-swap against the exact handle the
//! supervisor saw dead, so a stale replacer never removes a newer handle (R-CONC-2). A handle
//! that loses that race is retired: its thread sees the mark and exits, and a thread whose
//! epoch is older than its slot's current handle exits too, so two threads never serve one
//! worker index for long. (With one supervisor the race is never lost; the loom model
//! `worker_epoch` checks the rule with two replacers.)

use crate::sync::thread::{self, JoinHandle, Thread};
use crate::sync::Arc as StdArc;
use crate::sync::{ArcSwap, AtomicBool, AtomicUsize, Mutex, Ordering};
use crossbeam_utils::CachePadded;

use super::counters::OwnedCounter;

/// A worker thread as the pool knows it.
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    /// Generation of the worker index: 0 for the first thread, +1 per replacement.
    pub(crate) epoch: u64,
    pub(crate) thread: Thread,
    pub(crate) join: Mutex<Option<JoinHandle<()>>>,
    /// Set (`Release`) when this handle lost the race to be installed; its thread loads it
    /// (`Acquire`) before each shard it takes, and exits.
    pub(crate) retired: StdArc<AtomicBool>,
}

impl WorkerHandle {
    /// A handle with no thread behind it yet (a placeholder, or a model's stand-in), naming
    /// `thread` as the one to unpark.
    pub(crate) fn unstarted(thread: Thread) -> WorkerHandle {
        WorkerHandle {
            epoch: 0,
            thread,
            join: Mutex::new(None),
            retired: StdArc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the thread has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.join.lock().as_ref().is_some_and(thread::is_finished)
    }
}

/// Per worker index: the current thread's handle and what the supervisor watches.
pub(crate) struct WorkerSlot {
    /// The live worker for this index (see the module docs).
    handle: ArcSwap<WorkerHandle>,
    /// Handler calls started plus finished: odd while a call runs. One writer (the worker),
    /// `Relaxed` (see `OwnedCounter`): the supervisor only compares readings a tick apart.
    pub(crate) calls: CachePadded<OwnedCounter>,
    /// The shard the worker runs (for the slow-handler report); `Relaxed`, a label only.
    pub(crate) shard: AtomicUsize,
    /// Fault injection: the worker exits by an escaping panic at its next run's end.
    /// `Relaxed`: the test only needs the worker to see it eventually.
    #[cfg(feature = "fault-injection")]
    pub(crate) kill: AtomicBool,
}

impl WorkerSlot {
    /// A slot holding `handle`.
    pub(crate) fn new(handle: WorkerHandle) -> WorkerSlot {
        WorkerSlot {
            handle: ArcSwap::from_pointee(handle),
            calls: CachePadded::new(OwnedCounter::default()),
            shard: AtomicUsize::new(0),
            #[cfg(feature = "fault-injection")]
            kill: AtomicBool::new(false),
        }
    }

    /// The current handle.
    pub(crate) fn handle(&self) -> StdArc<WorkerHandle> {
        self.handle.load_full()
    }

    /// The current handle's epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.handle.load().epoch
    }

    /// Puts the first thread's handle in place of the placeholder (engine start only).
    pub(crate) fn set_first(&self, handle: WorkerHandle) {
        self.handle.store(StdArc::new(handle));
    }

    /// Installs `fresh` in place of `seen`, the exact handle the caller inspected, if it is
    /// still the current one (compare by identity, so a stale caller never removes a newer
    /// handle). A handle that is not installed is retired and its thread woken to exit.
    /// Returns whether `fresh` was installed.
    pub(crate) fn install(&self, seen: &StdArc<WorkerHandle>, fresh: StdArc<WorkerHandle>) -> bool {
        let previous = self.handle.compare_and_swap(seen, fresh.clone());
        if StdArc::ptr_eq(&previous, seen) {
            return true;
        }
        fresh.retired.store(true, Ordering::Release);
        fresh.thread.unpark();
        false
    }
}
