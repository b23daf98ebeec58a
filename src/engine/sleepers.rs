//! Idle worker threads: who is parked, so a producer can wake exactly one.
//!
//! # Protocol (no lost wake-up)
//!
//! Worker going idle: `register` (count += 1 under the lock), `fence(SeqCst)`, re-check the run
//! queue (and the stop flag), then park; on waking, `unregister` (a no-op if a waker already
//! took it off the list).
//! Waker: pushes onto the run queue, `fence(SeqCst)`, then `pop_one` reads the count (and
//! takes the shard's home worker if it is parked, else any).
//! By the total order of the two fences, either the worker's re-check sees the pushed shard or
//! the waker sees the worker registered and unparks it. `Thread::unpark` before `park` makes the
//! park return at once, so the unpark itself cannot be lost either.

use crate::sync::{AtomicUsize, Mutex, Ordering};

/// The parked workers' indices.
#[derive(Debug, Default)]
pub(crate) struct Sleepers {
    /// `list.len()`, readable without the lock.
    count: AtomicUsize,
    list: Mutex<Vec<usize>>,
}

impl Sleepers {
    pub(crate) fn register(&self, worker: usize) {
        let mut list = self.list.lock();
        list.push(worker);
        self.count.store(list.len(), Ordering::Relaxed);
    }

    pub(crate) fn unregister(&self, worker: usize) {
        let mut list = self.list.lock();
        if let Some(at) = list.iter().position(|&w| w == worker) {
            list.swap_remove(at);
            self.count.store(list.len(), Ordering::Relaxed);
        }
    }

    /// Takes one parked worker off the list, most recently parked first (its cache is warmest).
    /// The caller has fenced (`SeqCst`) after publishing the work.
    #[inline]
    pub(crate) fn pop_one(&self, preferred: usize) -> Option<usize> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut list = self.list.lock();
        let worker = match list.iter().position(|&w| w == preferred) {
            Some(at) => Some(list.swap_remove(at)),
            None => list.pop(),
        };
        self.count.store(list.len(), Ordering::Relaxed);
        worker
    }

    /// Takes every parked worker off the list.
    pub(crate) fn take_all(&self) -> Vec<usize> {
        let mut list = self.list.lock();
        self.count.store(0, Ordering::Relaxed);
        std::mem::take(&mut *list)
    }
}
