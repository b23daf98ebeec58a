//! [`Bulkhead`]: at most `max_concurrent` callers at once, each holding a [`Permit`].
//!
//! # Protocol
//!
//! The free places are one counter. [`Bulkhead::try_acquire`] takes a place by
//! compare-and-swap (`Acquire`), never waiting. A dropped permit gives its place back
//! (`Release`) and wakes one parked caller through the crate's waiter list (`waiters`, the
//! list the engine's producers wait in), with its protocol: the waiter registers, fences
//! (`SeqCst`) and tries once more before it parks; the permit's drop frees the place, fences
//! (`SeqCst`) and then reads the list. Either the waiter's retry sees the place or the drop
//! sees the waiter: a place never frees while a waiter sleeps through it.
//!
//! A woken waiter tries again; a `try_acquire` may have taken the place first (there is no
//! hand-over, so the bulkhead is not strictly first-come first-served), and the waiter then
//! waits again, behind the others. A waiter whose deadline passes just as it is woken passes
//! the wake-up on. A permit is released by its `Drop`, so also during a panic's unwind.

use std::fmt;
use std::time::Duration;

use crate::sync::thread;
use crate::sync::time::Instant;
use crate::sync::{fence, AtomicUsize, Ordering};
use crate::waiters::Waiters;

/// Bounded concurrency: at most `max_concurrent` [`Permit`]s exist at once. Callers past the
/// bound are refused ([`try_acquire`](Bulkhead::try_acquire)) or parked until a place frees or
/// their timeout passes ([`acquire_timeout`](Bulkhead::acquire_timeout)); a parked caller uses
/// no CPU, and each freed place wakes one.
pub struct Bulkhead {
    max: usize,
    /// Free places.
    available: AtomicUsize,
    waiters: Waiters,
}

/// A place in a [`Bulkhead`]; dropping it (also during a panic's unwind) frees the place and
/// wakes one waiting caller.
#[must_use = "the place is freed when the permit is dropped"]
pub struct Permit<'a> {
    bulkhead: &'a Bulkhead,
}

/// [`Bulkhead::try_new`] was asked for no places at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroConcurrency;

impl fmt::Display for ZeroConcurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a bulkhead needs at least one place (max_concurrent was 0)")
    }
}

impl std::error::Error for ZeroConcurrency {}

impl Bulkhead {
    /// A bulkhead of `max_concurrent` places.
    ///
    /// # Panics
    ///
    /// If `max_concurrent` is 0 (a bulkhead that lets nothing through is a bug); use
    /// [`try_new`](Bulkhead::try_new) for a typed error instead.
    pub fn new(max_concurrent: usize) -> Bulkhead {
        match Bulkhead::try_new(max_concurrent) {
            Ok(bulkhead) => bulkhead,
            Err(e) => panic!("{e}"),
        }
    }

    /// A bulkhead of `max_concurrent` places, or [`ZeroConcurrency`] for 0.
    ///
    /// # Errors
    ///
    /// [`ZeroConcurrency`] if `max_concurrent` is 0.
    pub fn try_new(max_concurrent: usize) -> Result<Bulkhead, ZeroConcurrency> {
        if max_concurrent == 0 {
            return Err(ZeroConcurrency);
        }
        Ok(Bulkhead {
            max: max_concurrent,
            available: AtomicUsize::new(max_concurrent),
            waiters: Waiters::default(),
        })
    }

    /// A place if one is free now; never blocks.
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        let mut free = self.available.load(Ordering::Relaxed);
        while free > 0 {
            // `Acquire`: what the last holder of the place did happens before this holder runs.
            match self
                .available
                .compare_exchange_weak(free, free - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Some(Permit { bulkhead: self }),
                Err(now) => free = now,
            }
        }
        None
    }

    /// A place, waiting (parked, without spinning) up to `timeout` for one to free; `None` if
    /// none did in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<Permit<'_>> {
        if let Some(permit) = self.try_acquire() {
            return Some(permit);
        }
        // No deadline that far away: wait until woken.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let waiter = self.waiters.register();
            // Pairs with the fence of a dropped permit (see the module docs).
            fence(Ordering::SeqCst);
            if let Some(permit) = self.try_acquire() {
                self.waiters.done(&waiter);
                return Some(permit);
            }
            while !waiter.is_notified() {
                match deadline {
                    None => thread::park(),
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            self.waiters.leave(&waiter);
                            return None;
                        }
                        thread::park_timeout(deadline - now);
                    }
                }
            }
            // Woken for a freed place; a `try_acquire` may have taken it first: then wait again.
            if let Some(permit) = self.try_acquire() {
                return Some(permit);
            }
        }
    }

    /// Free places now (it may change the next moment).
    pub fn available(&self) -> usize {
        self.available.load(Ordering::Relaxed)
    }

    /// Callers parked in [`acquire_timeout`](Bulkhead::acquire_timeout) now.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// The bound this bulkhead was made with.
    pub fn max_concurrent(&self) -> usize {
        self.max
    }
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("max_concurrent", &self.max)
            .field("available", &self.available())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let bulkhead = self.bulkhead;
        // `Release`: this holder's work happens before the next holder's `Acquire`.
        bulkhead.available.fetch_add(1, Ordering::Release);
        // Pairs with a waiter's fence after registering (see the module docs).
        fence(Ordering::SeqCst);
        bulkhead.waiters.notify(1);
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("bulkhead", &self.bulkhead).finish()
    }
}
