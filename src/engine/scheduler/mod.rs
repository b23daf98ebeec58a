//! The scheduler: which shard runs next, who wakes whom, and what happens to a shard when its
//! run ends.
//!
//! - [`run_queue`]: one lane of queued shards per worker, home lanes and stealing.
//! - [`sleepers`]: the parked workers, so that new work wakes exactly one.
//! - the retry timers (`retry::RetryTimers`), fired by the supervisor through
//!   [`Scheduler::fire_timers`].
//! - [`Scheduler::hand_off`]: after a run, the shard goes idle (with the re-check that prevents a
//!   lost wake-up), is requeued, waits for its retry's timer, or is released because the engine
//!   stops; and producers waiting for room are woken.
//!
//! The runner (`runner`) never calls back into the scheduler: it returns a [`RunEnd`], and the
//! worker hands the run and its end to [`Scheduler::hand_off`].
//!
//! # Wake-ups, and why none is lost
//!
//! - *A shard for a worker*: whoever moves a shard to `Scheduled` pushes it on the run queue,
//!   fences (`SeqCst`) and wakes a parked worker ([`Scheduler::enqueue`]); a worker about to
//!   park registers, fences and re-checks every lane ([`Scheduler::idle`]). See `sleepers`.
//! - *An event for an idle shard*: the producer's publish-fence-check against the runner's
//!   idle-fence-recheck. See `shard`.
//! - *Room for a producer*: the runner frees slots, then the hand-off fences and wakes waiting
//!   producers; a producer registers, fences and re-tries its push. See `waiters`.

pub(crate) mod run_queue;
pub(crate) mod sleepers;

use super::retry::RetryTimers;
use super::shard::{Shard, ShardRun};
use crate::pause::{self, PausePoint};
use crate::sync::thread::{self, Thread};
use crate::sync::{fence, spin_hint, Ordering};
use crate::KeyedHandler;

use run_queue::RunQueue;
use sleepers::Sleepers;

/// How a run of a shard ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunEnd {
    /// The ring is empty (as far as the runner can see).
    Drained,
    /// The run's budget (events or reaping) is used up and work remains.
    More,
    /// An event waits for its retry, due at this tick.
    Waiting(u64),
    /// The engine is stopping: the run took no more events.
    Stopped,
}

/// Polling rounds before an idle worker parks: busy-waits of 1, 2, 4 ... 32 spin hints (about a
/// microsecond in all), then yields of the time slice. Work often arrives within that time, and
/// a park and unpark cost a few microseconds and two context switches; past it, the worker
/// parks and uses no CPU. None under loom, whose models check the parking protocol itself.
#[cfg(not(humpyard_loom))]
const POLL_ROUNDS: u32 = 10;
#[cfg(humpyard_loom)]
const POLL_ROUNDS: u32 = 0;

/// The run queue, the sleepers and the retry timers.
#[derive(Debug)]
pub(crate) struct Scheduler {
    run_queue: RunQueue,
    sleepers: Sleepers,
    timers: RetryTimers,
}

impl Scheduler {
    /// A scheduler for `workers` workers and `shards` shards.
    pub(crate) fn new(workers: usize, shards: usize) -> Scheduler {
        Scheduler {
            run_queue: RunQueue::new(workers, shards),
            sleepers: Sleepers::default(),
            timers: RetryTimers::default(),
        }
    }

    /// The retry timers.
    pub(crate) fn timers(&self) -> &RetryTimers {
        &self.timers
    }

    /// After a successful push to `shard`: schedules it if it was idle.
    #[inline]
    pub(crate) fn after_push<H: KeyedHandler>(&self, shard: &Shard<H>) {
        if shard.schedule_after_push() {
            self.enqueue(shard.index());
        }
    }

    /// After pushes to `shard` and one `SeqCst` fence made after them all (a batch): schedules
    /// it if it was idle. The fence is the producer's half of the no-lost-wake-up protocol.
    #[inline]
    pub(crate) fn after_fenced_push<H: KeyedHandler>(&self, shard: &Shard<H>) {
        if shard.schedule_if_idle() {
            self.enqueue(shard.index());
        }
    }

    /// Schedules `shard` if it is idle (maintenance: reaping a quiet shard).
    pub(crate) fn schedule_if_idle<H: KeyedHandler>(&self, shard: &Shard<H>) {
        if shard.schedule_if_idle() {
            self.enqueue(shard.index());
        }
    }

    /// Schedules the `Waiting` shards whose retry is due at `now`; returns the next due tick
    /// (`u64::MAX` when no timer is armed).
    pub(crate) fn fire_timers<H: KeyedHandler>(&self, shards: &[Shard<H>], now: u64) -> u64 {
        loop {
            match self.timers.take_due(now) {
                Ok(index) => {
                    if shards[index].schedule_if_waiting() {
                        self.enqueue(index);
                    }
                }
                Err(next_due) => return next_due,
            }
        }
    }

    /// Puts shard `index`, which the caller moved to `Scheduled`, on the run queue and wakes a
    /// parked worker, its home worker if that one is parked.
    pub(crate) fn enqueue(&self, index: usize) {
        self.run_queue.push(index);
        fence(Ordering::SeqCst);
        self.wake_one(self.run_queue.home(index));
    }

    /// Wakes one parked worker, `preferred` if it is parked, if any is. The caller has fenced
    /// after publishing the work.
    #[inline]
    fn wake_one(&self, preferred: usize) {
        if let Some(thread) = self.sleepers.pop_one(preferred) {
            thread.unpark();
        }
    }

    /// Wakes every parked worker (the engine is stopping).
    pub(crate) fn wake_all(&self) {
        for thread in self.sleepers.take_all() {
            thread.unpark();
        }
    }

    /// A queued shard for `worker`: from its own lane first, else stolen. If more are queued in
    /// its lane, a parked worker is woken to steal them.
    #[inline]
    pub(crate) fn next_for(&self, worker: usize) -> Option<usize> {
        let index = self.run_queue.pop(worker)?;
        if self.run_queue.own_has_ready(worker) {
            // More work than this worker: wake a parked one (it re-checks the lanes itself).
            self.wake_one(worker);
        }
        Some(index)
    }

    /// Hands a run on after it ended with `end`, having taken `taken` events from the ring:
    /// wakes producers waiting for the room it freed, then moves the shard on. Returns a new
    /// run if the shard went idle and an event arrived meanwhile (the caller runs it again).
    ///
    /// Waiting producers are woken when the run leaves the ring at most half full, or when it
    /// ends for another reason than its budget (drained, waiting for a retry, stopped), so no
    /// run that stops taking events leaves a producer parked beside free room. A run that used
    /// its budget on a fuller ring is requeued and runs again soon. So each wake-up lets a
    /// producer push up to half a ring, not one batch: a park and a wake cost two context
    /// switches, which under saturation cost more than the events they let in.
    pub(crate) fn hand_off<'a, H: KeyedHandler>(
        &self,
        run: ShardRun<'a, H>,
        end: RunEnd,
        taken: usize,
    ) -> Option<ShardRun<'a, H>> {
        let shard = run.shard();
        if taken > 0 {
            // Pairs with the fence of a producer registering as a waiter (see `waiters`).
            fence(Ordering::SeqCst);
            let waiters = shard.waiters();
            if waiters.any() {
                let (len, capacity) = (shard.queued(), shard.capacity());
                if end != RunEnd::More || len <= capacity / 2 {
                    waiters.notify(capacity.saturating_sub(len) as usize);
                }
            }
        }
        match end {
            RunEnd::Drained => run.go_idle(),
            RunEnd::More => {
                let index = run.requeue();
                self.enqueue(index);
                None
            }
            RunEnd::Waiting(due) => {
                let index = run.wait();
                self.timers.arm(due, index);
                None
            }
            RunEnd::Stopped => {
                run.release();
                None
            }
        }
    }

    /// A worker with nothing to run: polls briefly, then parks until work (or `stopping`)
    /// appears. `me` is the worker's own thread (what a waker unparks).
    pub(crate) fn idle(&self, worker: usize, me: &Thread, stopping: impl Fn() -> bool) {
        if self.poll_briefly(&stopping) {
            return;
        }
        self.sleepers.register(worker, me);
        fence(Ordering::SeqCst);
        if self.run_queue.has_ready() || stopping() {
            self.sleepers.unregister(worker);
            return;
        }
        pause::point(PausePoint::BeforePark);
        thread::park();
        self.sleepers.unregister(worker);
    }

    /// Polls the run queue for a short, bounded time; `true` if work (or stop) appeared.
    fn poll_briefly(&self, stopping: &impl Fn() -> bool) -> bool {
        for round in 0..POLL_ROUNDS {
            if round < 6 {
                for _ in 0..1u32 << round {
                    spin_hint();
                }
            } else {
                thread::yield_now();
            }
            if self.run_queue.has_ready() || stopping() {
                return true;
            }
        }
        false
    }
}
