//! Threads parked (and tasks pending) until a place frees, woken one per freed place: the
//! engine's producers waiting for room in one shard's ring (`submit_timeout` and
//! `submit_async`, R-BP-2), and the bulkhead's callers waiting for a permit
//! (`resilience::Bulkhead`, R-RES-3).
//!
//! A waiter is a parked thread or a pending task's [`Waker`]: a task registers, fences, tries
//! once more and returns `Pending` in place of parking; waking it is `Waker::wake`. Nothing
//! else differs, so both kinds share one queue and one protocol.
//!
//! A waiting thread parks once; whoever frees places wakes one waiter per freed place (for the
//! engine, a consumer at the end of a run that leaves the ring at most half full or stops
//! taking events, see `scheduler::Scheduler::hand_off`; for the bulkhead, a dropped permit),
//! closing wakes them all, and the waiter's own deadline is the only other wake-up. There is no
//! retry loop and no timer per wait.
//!
//! # Protocol (no lost wake-up)
//!
//! Waiter: `register` (count += 1 under the lock), `fence(SeqCst)`, try to take a place once
//! more, then park until notified or the deadline.
//! Freer: frees places (the ring's stamp stores, the bulkhead's count), `fence(SeqCst)`, then
//! `notify(freed)` reads the count.
//! Either the waiter's fence comes first in the single total order of `SeqCst` fences, and the
//! freer sees the count and wakes it, or the freer's comes first, and the waiter's re-try sees
//! the freed places. Either way a waiter that could go ahead does.
//! The engine's shutdown frees in the same way: it closes the rings (the closed mark), fences
//! (`SeqCst`), then `notify_all`; a producer either meets the mark on its re-try or is woken.
//!
//! A waiter that was notified but leaves without using the place (its re-try met a closed ring,
//! another thread took the place first, its deadline passed just then, or its future was
//! dropped) passes the wake-up on to the next waiter. So does one whose re-try after
//! registering took a place while a freer notified it: two places freed one after the other
//! may wake A for the first, which B's re-try takes, and B for the second, which B no longer
//! needs; B passes its wake-up on to A (`Waiters::done`).
//!
//! A task's waker may change between polls ([`Waiter::set_waker`]). The freer sets `notified`
//! before it takes the waker under the waker's lock; the task stores its new waker under that
//! lock and then loads `notified`. Either the freer's lock comes after the store, and it wakes
//! the new waker, or it came before, and the task's load (after the lock) sees `notified` and
//! polls again instead of returning `Pending`.

use std::collections::VecDeque;
use std::task::Waker;

use crate::sync::thread::{self, Thread};
use crate::sync::Arc;

use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering};

/// One parked thread or pending task.
#[derive(Debug)]
pub(crate) struct Waiter {
    wake: Wake,
    /// Set (`Release`) by the freer that wakes it, after taking it off the queue; loaded
    /// (`Acquire`) by the waiter between parks, so a spurious unpark is told apart from a
    /// wake-up.
    notified: AtomicBool,
}

/// How a waiter is woken.
#[derive(Debug)]
enum Wake {
    /// Unpark this thread.
    Thread(Thread),
    /// Wake the task's latest waker (taken by the freer that wakes it).
    Task(Mutex<Option<Waker>>),
}

impl Waiter {
    /// Whether a freer has woken this waiter.
    pub(crate) fn is_notified(&self) -> bool {
        self.notified.load(Ordering::Acquire)
    }

    /// A task's waiter: keeps `waker` (if it is not the one kept already) for the freer that
    /// wakes it. Returns whether the waiter is still unwoken: `false` means a freer has notified
    /// it already (perhaps waking an older waker), so the task must not return `Pending` on it.
    pub(crate) fn set_waker(&self, waker: &Waker) -> bool {
        if let Wake::Task(slot) = &self.wake {
            let mut slot = slot.lock();
            match &*slot {
                Some(kept) if kept.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
        // After the lock: pairs with `wake`'s store before its lock (see the module docs).
        !self.is_notified()
    }

    /// Marks the waiter woken and wakes it. Called once, by the freer that took it off the queue.
    fn wake(&self) {
        self.notified.store(true, Ordering::Release);
        match &self.wake {
            Wake::Thread(thread) => thread.unpark(),
            Wake::Task(slot) => {
                let waker = slot.lock().take();
                // Outside the lock: a waker may run the task at once (an executor's own thread).
                // An executor's code: a panic in it must not stop the freer (a worker between
                // runs, or shutdown) halfway through its wake-ups. The task was marked woken;
                // its next poll, whenever it comes, goes on from there.
                if let Some(waker) = waker {
                    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake())) {
                        crate::pipeline::dispose(payload);
                    }
                }
            }
        }
    }
}

/// A list of parked threads (one per shard; one per bulkhead).
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Registered waiters; written under the lock, read without it by freers after their
    /// `SeqCst` fence (the module's protocol), so `Relaxed` throughout.
    count: AtomicUsize,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
}

impl Waiters {
    /// Adds the current thread at the back. The caller must `fence(SeqCst)` and try to take a
    /// place once more before parking.
    pub(crate) fn register(&self) -> Arc<Waiter> {
        self.push(Waiter {
            wake: Wake::Thread(thread::current()),
            notified: AtomicBool::new(false),
        })
    }

    /// Adds a pending task at the back, to be woken through `waker` (or a later one given to
    /// [`Waiter::set_waker`]). The caller must `fence(SeqCst)` and try to take a place once
    /// more before returning `Pending`.
    pub(crate) fn register_task(&self, waker: &Waker) -> Arc<Waiter> {
        self.push(Waiter {
            wake: Wake::Task(Mutex::new(Some(waker.clone()))),
            notified: AtomicBool::new(false),
        })
    }

    fn push(&self, waiter: Waiter) -> Arc<Waiter> {
        let waiter = Arc::new(waiter);
        let mut queue = self.queue.lock();
        queue.push_back(waiter.clone());
        self.count.store(queue.len(), Ordering::Relaxed);
        waiter
    }

    /// Removes `waiter` when it leaves without the room it may have been woken for; a wake-up it
    /// received goes to the next waiter.
    pub(crate) fn leave(&self, waiter: &Arc<Waiter>) {
        let mut queue = self.queue.lock();
        if let Some(at) = queue.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            queue.remove(at);
            self.count.store(queue.len(), Ordering::Relaxed);
            return;
        }
        drop(queue);
        // Not listed: a freer notified it. Pass that wake-up on.
        self.notify(1);
    }

    /// Removes `waiter` after its re-try (between registering and waiting) took a place. If a
    /// freer notified it meanwhile, that wake-up stood for a freed place the re-try may not
    /// have taken (another waiter, woken for the place the re-try took, may have lost it), so
    /// it is passed on to the next waiter, as [`leave`](Self::leave) does. At worst the next
    /// waiter wakes, finds no place and waits again; swallowed, it could leave a waiter asleep
    /// beside a free place (loom: `a_woken_producer_that_loses_the_room_waits_again`).
    pub(crate) fn done(&self, waiter: &Arc<Waiter>) {
        self.leave(waiter);
    }

    /// Whether any thread is registered. The caller has fenced (`SeqCst`) after freeing room.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) != 0
    }

    /// How many threads are registered now (a statistic: it may change the next moment).
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Wakes up to `n` waiters, oldest first. The caller has fenced (`SeqCst`) after freeing room.
    pub(crate) fn notify(&self, n: usize) {
        if n == 0 || self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let woken: Vec<Arc<Waiter>> = {
            let mut queue = self.queue.lock();
            let take = n.min(queue.len());
            let woken = queue.drain(..take).collect();
            self.count.store(queue.len(), Ordering::Relaxed);
            woken
        };
        // Wake outside the lock: a woken waiter's first step is to take it.
        for waiter in woken {
            waiter.wake();
        }
    }

    /// Wakes every waiter (the engine is closing).
    pub(crate) fn notify_all(&self) {
        self.notify(usize::MAX);
    }
}
