//! Idle worker threads: who is parked, so a producer can wake exactly one.
//!
//! # Protocol (no lost wake-up)
//!
//! Worker going idle: `register` (count += 1 under the lock), `fence(SeqCst)`, re-check the run
//! queue (and the engine's lifecycle), then park; on waking, `unregister` (a no-op if a waker
//! already took it off the list).
//! Waker: pushes onto the run queue, `fence(SeqCst)`, then `pop_one` reads the count (and
//! takes the shard's home worker if it is parked, else any).
//! By the total order of the two fences, either the worker's re-check sees the pushed shard or
//! the waker sees the worker registered and unparks it. `Thread::unpark` before `park` makes the
//! park return at once, so the unpark itself cannot be lost either.
//!
//! The list keeps the [`Thread`] that registered, not only its worker index, and a waker
//! unparks exactly that thread. (Looking the index up in the worker slots instead woke the
//! wrong thread when a replacement worker parked before the supervisor had installed its
//! handle: the slot still named the dead thread, and the replacement slept on.)
//!
//! `count` is `Relaxed`: it is written under the lock, and read without it only after the
//! reader's `SeqCst` fence, which is what orders it against the other side's fence.

use crate::sync::thread::Thread;
use crate::sync::{AtomicUsize, Mutex, Ordering};

/// The parked workers: index and thread.
#[derive(Debug, Default)]
pub(crate) struct Sleepers {
    /// `list.len()`, readable without the lock (see the module docs for its ordering).
    count: AtomicUsize,
    list: Mutex<Vec<(usize, Thread)>>,
}

impl Sleepers {
    /// Registers worker `worker`, running on `thread`, as about to park.
    pub(crate) fn register(&self, worker: usize, thread: &Thread) {
        let mut list = self.list.lock();
        list.push((worker, thread.clone()));
        self.count.store(list.len(), Ordering::Relaxed);
    }

    /// Takes worker `worker` off the list, if a waker has not already.
    pub(crate) fn unregister(&self, worker: usize) {
        let mut list = self.list.lock();
        if let Some(at) = list.iter().position(|(w, _)| *w == worker) {
            list.swap_remove(at);
            self.count.store(list.len(), Ordering::Relaxed);
        }
    }

    /// Takes one parked worker off the list, `preferred` if it is parked, else the most
    /// recently parked (its cache is warmest), and returns its thread to unpark. The caller
    /// has fenced (`SeqCst`) after publishing the work.
    #[inline]
    pub(crate) fn pop_one(&self, preferred: usize) -> Option<Thread> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut list = self.list.lock();
        let sleeper = match list.iter().position(|(w, _)| *w == preferred) {
            Some(at) => Some(list.swap_remove(at)),
            None => list.pop(),
        };
        self.count.store(list.len(), Ordering::Relaxed);
        sleeper.map(|(_, thread)| thread)
    }

    /// Takes every parked worker off the list; returns their threads to unpark.
    pub(crate) fn take_all(&self) -> Vec<Thread> {
        let mut list = self.list.lock();
        self.count.store(0, Ordering::Relaxed);
        list.drain(..).map(|(_, thread)| thread).collect()
    }
}
