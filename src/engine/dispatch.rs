//! Running a batch of one shard's events: entity lookup, `init`, `handle`, retries, dead
//! letters, idle reaping and cap eviction.
//!
//! Everything here runs on the shard's only runner with `&mut ShardCore`, so it is sequential
//! code. Counters are tallied locally and published once per batch.
//!
//! # Per event
//!
//! 1. Find the stream's entity; if absent, make room under `max_entities` (evict this shard's
//!    least recently used entity) and call `init` once (R-PERF-2).
//! 2. Call `handle` under `catch_unwind`. `Ok` counts as processed.
//! 3. An `Err` or a panic is a failed attempt. After a panic the state is cleaned up and the
//!    next attempt or event makes a fresh one. With attempts left, the event waits in the
//!    shard's retry slot for a capped exponential backoff with jitter (the shard takes no other
//!    event meanwhile, keeping the stream's order; the worker moves on to other shards). With
//!    none left, it is dead-lettered with its last failure (R-FT-1, R-FT-4).

use super::hooks::{contain, PanicSite, Removal};
use super::inner::{ticks, Inner};
use super::shard::{PendingRetry, ShardCore};
use crate::sync::{fence, Ordering};
use crate::{DeadLetter, Event, Failure, Handler, StreamId};

/// Events one run takes from its shard before handing the shard on: large enough to amortise
/// the scheduling, small enough that a shard does not keep a worker from others for long.
#[cfg(not(humpyard_loom))]
pub(crate) const BATCH: usize = 128;
#[cfg(humpyard_loom)]
pub(crate) const BATCH: usize = 2;

/// Idle entities one run reaps at most; more are left to the next run (R-RES-2).
#[cfg(not(humpyard_loom))]
const REAP_BUDGET: usize = 64;
#[cfg(humpyard_loom)]
const REAP_BUDGET: usize = 2;

/// How a run of a shard ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchEnd {
    /// The ring is empty (as far as the runner can see).
    Drained,
    /// The batch budget (or the reap budget) is used up and work remains.
    More,
    /// An event waits for its retry, due at this tick.
    Waiting(u64),
    /// The engine stopped taking events.
    Stopped,
}

/// What one batch counts, published to the shard's stats at its end.
#[derive(Default)]
pub(crate) struct Tally {
    processed: u64,
    dead_lettered: u64,
    panics: u64,
    retries: u64,
    reaped: u64,
    evicted: u64,
}

/// What became of one event.
enum Outcome {
    Done,
    /// Held in the retry slot until this tick.
    Deferred(u64),
}

impl<H: Handler> Inner<H> {
    /// One run of shard `index` by `worker`.
    pub(crate) fn run_batch(&self, worker: usize, index: usize, core: &mut ShardCore<H>) -> BatchEnd {
        let now = self.clock.now();
        let mut tally = Tally::default();
        let mut taken = 0usize;
        let more_to_reap = self.reap(core, now, &mut tally);
        let mut end = if more_to_reap {
            BatchEnd::More
        } else {
            BatchEnd::Drained
        };

        if let Some(pending) = core.retry.take() {
            if self.stop.load(Ordering::Relaxed) {
                end = BatchEnd::Stopped;
                core.retry = Some(pending);
            } else if pending.due > now {
                end = BatchEnd::Waiting(pending.due);
                core.retry = Some(pending);
            } else if let Outcome::Deferred(due) =
                self.dispatch(worker, core, pending.event, pending.attempts, now, &mut tally)
            {
                end = BatchEnd::Waiting(due);
            }
        }

        if !matches!(end, BatchEnd::Waiting(_) | BatchEnd::Stopped) {
            let shard = &self.shards[index];
            loop {
                if taken == BATCH {
                    end = BatchEnd::More;
                    break;
                }
                if self.stop.load(Ordering::Relaxed) {
                    end = BatchEnd::Stopped;
                    break;
                }
                // SAFETY: this thread is the shard's only runner (the caller holds the run).
                let Some(event) = (unsafe { shard.ring.pop_exclusive() }) else {
                    break;
                };
                taken += 1;
                if let Outcome::Deferred(due) = self.dispatch(worker, core, event, 0, now, &mut tally) {
                    end = BatchEnd::Waiting(due);
                    break;
                }
            }
        }

        self.publish(index, core, &tally, taken, end);
        end
    }

    /// Publishes a batch's tally and gauges, and wakes producers waiting for the room it freed.
    ///
    /// Waiting producers are woken when this run leaves the ring at most half full, or when it
    /// ends for any other reason than its batch budget (drained, waiting for a retry, stopped),
    /// so no run that stops taking events leaves a producer parked beside free room. A run
    /// that used its budget on a fuller ring is requeued and runs again soon. So each wake-up
    /// lets a producer push up to half a ring, not one batch: a park and a wake cost two context
    /// switches, which under saturation cost more than the events they let in.
    fn publish(&self, index: usize, core: &ShardCore<H>, tally: &Tally, taken: usize, end: BatchEnd) {
        let shard = &self.shards[index];
        let stats = &shard.stats;
        stats.processed.add(tally.processed);
        stats.dead_lettered.add(tally.dead_lettered);
        stats.panics.add(tally.panics);
        stats.retries.add(tally.retries);
        stats.reaped.add(tally.reaped);
        stats.evicted.add(tally.evicted);
        stats.awaiting_retry.set(u64::from(core.retry.is_some()));
        let idle = ticks(self.config.idle_timeout);
        let expiry = core
            .table
            .oldest()
            .map_or(u64::MAX, |(_, last)| last.saturating_add(idle));
        shard.next_expiry.store(expiry, Ordering::Relaxed);
        if taken > 0 {
            // Pairs with the fence of a producer registering as a waiter (see `waiters`).
            fence(Ordering::SeqCst);
            if shard.waiters.any() {
                let (len, capacity) = (shard.ring.len(), shard.ring.capacity());
                if end != BatchEnd::More || len <= capacity / 2 {
                    shard.waiters.notify(capacity.saturating_sub(len) as usize);
                }
            }
        }
    }

    /// Handles `event` after `prior` failed attempts, retrying at once while the backoff is
    /// zero; returns whether it is done (processed or dead-lettered) or deferred.
    fn dispatch(
        &self,
        worker: usize,
        core: &mut ShardCore<H>,
        event: Event<H::Payload>,
        prior: u32,
        now: u64,
        tally: &mut Tally,
    ) -> Outcome {
        let mut attempts = prior;
        loop {
            attempts += 1;
            let failure = match self.attempt(worker, core, &event, now, tally) {
                Ok(()) => {
                    tally.processed += 1;
                    return Outcome::Done;
                }
                Err(failure) => failure,
            };
            if attempts >= self.config.max_attempts {
                tally.dead_lettered += 1;
                self.dead_letter(DeadLetter {
                    event,
                    failure,
                    attempts,
                });
                return Outcome::Done;
            }
            tally.retries += 1;
            let delay = self.backoff(attempts, &mut core.rng);
            if delay == 0 {
                continue;
            }
            let due = now.saturating_add(delay);
            core.retry = Some(PendingRetry { event, attempts, due });
            return Outcome::Deferred(due);
        }
    }

    /// One handler call for `event`, making the entity first if needed.
    fn attempt(
        &self,
        worker: usize,
        core: &mut ShardCore<H>,
        event: &Event<H::Payload>,
        now: u64,
        tally: &mut Tally,
    ) -> Result<(), Failure> {
        let stream = event.stream();
        let slot = match core.table.find(stream) {
            Some(slot) => {
                core.table.touch(slot, now);
                slot
            }
            None => {
                // Make room first, so that a state exists only while it is counted: at most
                // `max_entities + shards` states exist at any instant, in-flight inits included.
                self.make_room(core, tally);
                let state = match contain(|| self.handler.init(stream)) {
                    Ok(Ok(state)) => state,
                    Ok(Err(e)) => return Err(Failure::Init(e.to_string())),
                    Err(message) => {
                        tally.panics += self.report_panic(PanicSite::Init, Some(stream), &message);
                        return Err(Failure::Panic(message));
                    }
                };
                self.live_entities.fetch_add(1, Ordering::Relaxed);
                core.table.insert(stream.clone(), state, now)
            }
        };
        let calls = &self.workers[worker].calls;
        calls.add(1);
        let result = contain(|| self.handler.handle(core.table.state_mut(slot), event));
        calls.add(1);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Handler(e.to_string())),
            Err(message) => {
                tally.panics += self.report_panic(PanicSite::Handle, Some(stream), &message);
                // The state may be half-updated: clean it up; the next call makes a fresh one.
                let (id, state) = core.table.remove(slot);
                self.cleanup(id, state, Removal::Panicked, tally);
                Err(Failure::Panic(message))
            }
        }
    }

    /// Evicts this shard's least recently used entity if the engine is at `max_entities`.
    /// Shards race on the shared count, so each may overshoot the cap by one (R-RES-1).
    fn make_room(&self, core: &mut ShardCore<H>, tally: &mut Tally) {
        if self.live_entities.load(Ordering::Relaxed) < self.config.max_entities {
            return;
        }
        if let Some((slot, _)) = core.table.oldest() {
            let (id, state) = core.table.remove(slot);
            tally.evicted += 1;
            self.cleanup(id, state, Removal::Evicted, tally);
        }
    }

    /// Reaps up to `REAP_BUDGET` entities idle for `idle_timeout`, oldest first; returns whether
    /// more are expired (R-RES-2).
    fn reap(&self, core: &mut ShardCore<H>, now: u64, tally: &mut Tally) -> bool {
        let idle = ticks(self.config.idle_timeout);
        let expired = |core: &ShardCore<H>| {
            core.table
                .oldest()
                .filter(|&(_, last)| now.saturating_sub(last) >= idle)
        };
        for _ in 0..REAP_BUDGET {
            let Some((slot, _)) = expired(core) else { return false };
            let (id, state) = core.table.remove(slot);
            tally.reaped += 1;
            self.cleanup(id, state, Removal::Reaped, tally);
        }
        expired(core).is_some()
    }

    /// Calls `cleanup` (contained), updates the live count and tells the removal hook.
    pub(crate) fn cleanup(&self, id: StreamId, state: H::State, why: Removal, tally: &mut Tally) {
        if let Err(message) = contain(|| self.handler.cleanup(&id, state)) {
            tally.panics += self.report_panic(PanicSite::Cleanup, Some(&id), &message);
        }
        self.live_entities.fetch_sub(1, Ordering::Relaxed);
        if let Some(hook) = &self.hooks.entity_removed {
            if let Err(message) = contain(|| hook(&id, why)) {
                tally.panics += self.report_panic(PanicSite::Hook, Some(&id), &message);
            }
        }
    }

    /// Hands a dead letter to the hook, or to the default buffer.
    fn dead_letter(&self, letter: DeadLetter<H::Payload>) {
        log::warn!(
            stream = letter.event.stream().as_str(),
            attempts = letter.attempts,
            failure:? = letter.failure;
            "humpyard dead-lettered an event"
        );
        match &self.hooks.dead_letter {
            Some(hook) => {
                let stream = letter.event.stream().clone();
                if let Err(message) = contain(|| hook(letter)) {
                    self.stats
                        .panics
                        .add(self.report_panic(PanicSite::Hook, Some(&stream), &message));
                }
            }
            None => {
                let mut buffer = self.dead_letters.lock();
                if buffer.len() >= self.config.dead_letter_buffer {
                    buffer.pop_front();
                    self.stats.dead_letters_discarded.incr();
                }
                if self.config.dead_letter_buffer > 0 {
                    buffer.push_back(letter);
                }
            }
        }
    }

    /// The delay before the retry that follows `attempts` calls: `retry_backoff * 2^(attempts-1)`
    /// capped at `retry_backoff_max`, then "equal jitter" (half fixed, half random) so retries of
    /// many entities do not fire together.
    fn backoff(&self, attempts: u32, rng: &mut u64) -> u64 {
        let base = ticks(self.config.retry_backoff);
        let cap = ticks(self.config.retry_backoff_max);
        let exp = base.saturating_mul(1u64 << (attempts - 1).min(32)).min(cap);
        if exp < 2 {
            return exp;
        }
        let half = exp / 2;
        half + xorshift(rng) % (exp - half + 1)
    }

    /// Cleans up every entity and collects every unprocessed event of every shard. Called by
    /// shutdown after all workers are joined.
    pub(crate) fn collect_leftovers(&self, unprocessed: &mut Vec<Event<H::Payload>>) {
        for (index, shard) in self.shards.iter().enumerate() {
            // SAFETY: every worker and the supervisor have been joined: no other thread can run
            // this shard.
            unsafe {
                shard.with_core(|core| {
                    let mut tally = Tally::default();
                    if let Some(pending) = core.retry.take() {
                        unprocessed.push(pending.event);
                    }
                    // SAFETY: as above, this thread is the only consumer.
                    while let Some(event) = shard.ring.pop_exclusive() {
                        unprocessed.push(event);
                    }
                    for (id, state) in core.table.drain() {
                        self.cleanup(id, state, Removal::Shutdown, &mut tally);
                    }
                    self.publish(index, core, &tally, 0, BatchEnd::Stopped);
                });
            }
        }
    }
}

/// xorshift64*: cheap, good enough for jitter.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
