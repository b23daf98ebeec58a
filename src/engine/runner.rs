//! One run of a shard: take events from its ring and handle them, with their entities, retries
//! and dead letters; reap what is idle. Returns how the run ended ([`RunEnd`]); what happens to
//! the shard next is the scheduler's (`scheduler::Scheduler::hand_off`).
//!
//! Everything here runs on the thread holding the shard's [`ShardRun`], so it is sequential
//! code. Counters are tallied locally and published once per run.
//!
//! # Per event
//!
//! 1. Find the stream's entity; if absent, make room under `max_entities` (evict this shard's
//!    least recently used entity) and call `init` once (R-PERF-2).
//! 2. Call `handle` (timed, when the engine times handler calls; in a `tracing` span, with
//!    feature `tracing`). `Ok` counts as processed, and the event is disposed of (its payload's
//!    `Drop` is user code).
//! 3. An `Err` or a panic is a failed attempt; the error's text is its `Display` (user code).
//!    After a panic the state is cleaned up and the next attempt or event makes a fresh one.
//!    With attempts left, the event waits in the shard's retry slot for a capped exponential
//!    backoff with jitter (the shard takes no other event meanwhile, keeping the stream's
//!    order; the worker moves on to other shards). With none left, it is dead-lettered with its
//!    last failure (R-FT-1, R-FT-4).
//!
//! Every call into user code goes through the engine's containment, so no panic unwinds a run:
//! an event is always processed, held for a retry or dead-lettered, and the run's tally is
//! always published.

use super::clock::ticks;
use super::dead_letter::{DeadLetter, Failure};
use super::durations::DurationCounts;
use super::hooks::{PanicSite, Removal};
use super::metrics::Tally;
use super::reaper;
use super::retry::PendingRetry;
use super::scheduler::RunEnd;
use super::shard::{ShardCore, ShardRun};
use super::shared::Shared;
use crate::handler::EventOf;
use crate::KeyedHandler;

/// Events one run takes from its shard before handing the shard on: large enough to amortise
/// the scheduling, small enough that a shard does not keep a worker from others for long.
#[cfg(not(humpyard_loom))]
pub(crate) const BATCH: usize = 128;
#[cfg(humpyard_loom)]
pub(crate) const BATCH: usize = 2;

/// What became of one event.
enum Outcome {
    Done,
    /// Held in the retry slot until this tick.
    Deferred(u64),
}

/// Runs the shard held by `run` on worker `worker`; returns how the run ended and how many
/// events it took from the ring.
pub(crate) fn run<H: KeyedHandler>(shared: &Shared<H>, worker: usize, run: &mut ShardRun<'_, H>) -> (RunEnd, usize) {
    let shard = run.shard();
    let now = shared.clock().now();
    let cx = Context {
        shared,
        worker,
        durations: shard.durations(),
        now,
    };
    let stopping = || shared.lifecycle().should_stop();
    let (end, taken, expiry) = run.with(|core, ring| {
        let mut tally = Tally::default();
        let mut taken = 0usize;
        let mut end = RunEnd::Drained;

        // The retry first, then the reaping: the retried event's entity keeps its state
        // between attempts however long the backoff was (its last activity is the attempt
        // before, and a reap first would drop it, with what the handler kept of the failure).
        if let Some(pending) = core.retry.take() {
            if stopping() {
                end = RunEnd::Stopped;
                core.retry = Some(pending);
            } else if pending.due > now {
                end = RunEnd::Waiting(pending.due);
                core.retry = Some(pending);
            } else if let Outcome::Deferred(due) = dispatch(&cx, core, pending.event, pending.attempts, &mut tally) {
                end = RunEnd::Waiting(due);
            }
        }

        if reaper::reap(shared, core, now, &mut tally) && end == RunEnd::Drained {
            end = RunEnd::More;
        }

        if !matches!(end, RunEnd::Waiting(_) | RunEnd::Stopped) {
            loop {
                if taken == BATCH {
                    end = RunEnd::More;
                    break;
                }
                if stopping() {
                    end = RunEnd::Stopped;
                    break;
                }
                let Some(event) = ring.pop() else { break };
                taken += 1;
                if let Outcome::Deferred(due) = dispatch(&cx, core, event, 0, &mut tally) {
                    end = RunEnd::Waiting(due);
                    break;
                }
            }
        }

        tally.publish(shard.stats(), core.retry.is_some());
        (end, taken, reaper::next_expiry(shared, core))
    });
    run.set_next_expiry(expiry);
    (end, taken)
}

/// What the calls of one run share.
struct Context<'a, H: KeyedHandler> {
    shared: &'a Shared<H>,
    /// The worker running the shard.
    worker: usize,
    /// The shard's handler-call durations, when the engine times them.
    durations: Option<&'a DurationCounts>,
    /// The run's start, in ticks: the entities' activity stamp and the retries' base.
    now: u64,
}

/// Handles `event` after `prior` failed attempts, retrying at once while the backoff is zero;
/// returns whether it is done (processed or dead-lettered) or deferred.
fn dispatch<H: KeyedHandler>(
    cx: &Context<'_, H>,
    core: &mut ShardCore<H>,
    event: EventOf<H>,
    prior: u32,
    tally: &mut Tally,
) -> Outcome {
    let shared = cx.shared;
    let config = shared.config();
    let mut attempts = prior;
    loop {
        attempts += 1;
        let failure = match attempt(cx, core, &event, tally) {
            Ok(()) => {
                tally.processed += 1;
                let (stream, payload) = event.into_parts();
                shared.containment().dispose(Some(&stream), payload);
                return Outcome::Done;
            }
            Err(failure) => failure,
        };
        if attempts >= config.max_attempts {
            tally.dead_lettered += 1;
            let letter = DeadLetter {
                event,
                failure,
                attempts,
            };
            shared.dead_letters().deliver(letter, shared.containment());
            return Outcome::Done;
        }
        tally.retries += 1;
        // Retry 0 follows the first call.
        let delay = ticks(core.backoff.delay(attempts - 1));
        if delay == 0 {
            continue;
        }
        let due = cx.now.saturating_add(delay);
        core.retry = Some(PendingRetry { event, attempts, due });
        return Outcome::Deferred(due);
    }
}

/// One handler call for `event`, making the entity first if needed.
fn attempt<H: KeyedHandler>(
    cx: &Context<'_, H>,
    core: &mut ShardCore<H>,
    event: &EventOf<H>,
    tally: &mut Tally,
) -> Result<(), Failure> {
    let (shared, now) = (cx.shared, cx.now);
    let containment = shared.containment();
    let stream = event.stream();
    let slot = match core.table.find(stream) {
        Some(slot) => {
            core.table.touch(slot, now);
            slot
        }
        None => {
            // Make room first, so that a state exists only while it is counted: at most
            // `max_entities + shards` states exist at any instant, in-flight inits included.
            reaper::make_room(shared, core, tally);
            let state = match containment.run(PanicSite::Init, Some(stream), || shared.handler().init(stream)) {
                Ok(Ok(state)) => state,
                Ok(Err(e)) => return Err(Failure::Init(describe(shared, event, e))),
                Err(message) => return Err(Failure::Panic(message)),
            };
            shared.entity_made();
            core.table.insert(stream.clone(), state, now)
        }
    };
    let calls = &shared.workers()[cx.worker].calls;
    calls.add(1);
    let timer = cx.durations.map(|durations| (durations, shared.clock().now()));
    let result = containment.run(PanicSite::Handle, Some(stream), || {
        in_span(stream, cx.worker, || {
            shared.handler().handle(core.table.state_mut(slot), event)
        })
    });
    if let Some((durations, started)) = timer {
        durations.record(shared.clock().now().saturating_sub(started));
    }
    calls.add(1);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::Handler(describe(shared, event, e))),
        Err(message) => {
            // The state may be half-updated: clean it up; the next call makes a fresh one.
            let (id, state) = core.table.remove(slot);
            reaper::dispose(shared, id, state, Removal::Panicked);
            Err(Failure::Panic(message))
        }
    }
}

/// Runs `handle` in a `humpyard.handle` span (feature `tracing`). Called inside the call's
/// containment, so the subscriber's code (it may format `stream`) is contained like the
/// handler. A panic of `handle` is caught here and resumed after the span is left: the
/// subscriber's `exit` and `close` never run during an unwind, where a second panic would
/// abort the process.
#[cfg(feature = "tracing")]
fn in_span<K: std::fmt::Display, R>(stream: &K, worker: usize, handle: impl FnOnce() -> R) -> R {
    let span = tracing::debug_span!("humpyard.handle", stream = %stream, worker = worker).entered();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(handle));
    drop(span);
    result.unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

/// Without feature `tracing`: runs `handle`, nothing more.
#[cfg(not(feature = "tracing"))]
#[inline(always)]
fn in_span<K, R>(_stream: &K, _worker: usize, handle: impl FnOnce() -> R) -> R {
    handle()
}

/// The text of the handler's error `e` (its `Display`), then `e` disposed of: both user code,
/// both contained. A `Display` that panics gives a text that says so.
fn describe<H: KeyedHandler>(shared: &Shared<H>, event: &EventOf<H>, e: H::Error) -> String {
    let containment = shared.containment();
    let stream = Some(event.stream());
    let text = match containment.run(PanicSite::Display, stream, || e.to_string()) {
        Ok(text) => text,
        Err(message) => format!("the error's Display panicked: {message}"),
    };
    containment.dispose(stream, e);
    text
}
