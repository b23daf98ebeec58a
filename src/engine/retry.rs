//! Retries: the event a shard holds back after a failure, the delay before it is tried again,
//! and the timers that schedule its shard when that delay is over.
//!
//! A failed event with attempts left waits in its shard's retry slot ([`PendingRetry`]). The
//! shard takes no other event meanwhile, so the stream's later events stay behind it
//! (R-CONC-3), but the shard is not running: it is `Waiting`, and its worker moves on to other
//! shards. The runner computes the delay with its shard's [`Backoff`](crate::resilience::Backoff)
//! (capped exponential with equal jitter, R-FT-4; one per shard, seeded from the engine's seed,
//! so the shards' retries do not fire together) and ends the run with the due tick; the scheduler's hand-off moves the shard to
//! `Waiting` and arms a timer ([`RetryTimers::arm`]); the supervisor fires the due timers
//! ([`RetryTimers::take_due`]) and the scheduler moves each shard from `Waiting` to
//! `Scheduled` and queues it. A shard is armed at most once at a time (only its runner arms it,
//! and only on leaving `Running` for `Waiting`), so a timer never schedules a shard twice.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::sync::thread::Thread;
use crate::sync::Mutex;
use crate::Event;

/// An event held back after a failure, until its retry is due.
pub(crate) struct PendingRetry<P, K> {
    pub(crate) event: Event<P, K>,
    /// Handler calls made so far.
    pub(crate) attempts: u32,
    /// When to try again, in engine ticks.
    pub(crate) due: u64,
}

/// The retry timers: (due tick, shard) of the `Waiting` shards, and the supervisor that fires
/// them.
#[derive(Debug, Default)]
pub(crate) struct RetryTimers {
    heap: Mutex<BinaryHeap<Reverse<(u64, usize)>>>,
    /// The supervisor thread, unparked when a timer is armed (it sleeps until the earliest).
    supervisor: Mutex<Option<Thread>>,
}

impl RetryTimers {
    /// Names the thread that fires the timers.
    pub(crate) fn set_supervisor(&self, thread: Thread) {
        *self.supervisor.lock() = Some(thread);
    }

    /// Arms a timer for `shard`, due at `due`, and wakes the supervisor to re-plan its sleep.
    pub(crate) fn arm(&self, due: u64, shard: usize) {
        self.heap.lock().push(Reverse((due, shard)));
        if let Some(supervisor) = &*self.supervisor.lock() {
            supervisor.unpark();
        }
    }

    /// Takes the earliest timer if it is due at `now`: `Ok(shard)`; else `Err(next due tick)`
    /// (`u64::MAX` when none is armed).
    pub(crate) fn take_due(&self, now: u64) -> Result<usize, u64> {
        let mut heap = self.heap.lock();
        match heap.peek() {
            Some(&Reverse((due, shard))) if due <= now => {
                heap.pop();
                Ok(shard)
            }
            Some(&Reverse((due, _))) => Err(due),
            None => Err(u64::MAX),
        }
    }
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;

    #[test]
    fn timers_come_due_in_order() {
        let timers = RetryTimers::default();
        timers.arm(30, 1);
        timers.arm(10, 2);
        assert_eq!(timers.take_due(5), Err(10));
        assert_eq!(timers.take_due(30), Ok(2));
        assert_eq!(timers.take_due(30), Ok(1));
        assert_eq!(timers.take_due(30), Err(u64::MAX));
    }
}
