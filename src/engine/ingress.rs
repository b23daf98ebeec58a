//! Ingress: a producer's submit, and its wait for room.
//!
//! A submit pushes the event onto its stream's shard ring (lock-free; a full or closed ring
//! hands it back at once, counted in `rejected`), then schedules the shard if it was idle.
//! `submit_timeout` parks the producer on the shard's waiter list until a run frees room, the
//! engine closes, or its deadline: one wake-up, no retry loop, no timer per write (R-BP-2).
//! The protocols are in `shard` (scheduling) and the crate's `waiters` (parking).

use std::time::Duration;

use super::ring::{Closed, PushError};
use super::shared::Shared;
use super::submit_error::{SubmitError, SubmitManyError};
use crate::handler::EventOf;
use crate::pause::{self, PausePoint};
use crate::sync::thread;
use crate::sync::time::Instant;
use crate::sync::{fence, Arc, Ordering};
use crate::waiters::{Waiter, Waiters};
use crate::KeyedHandler;

/// An event of handler `H` handed back, with why.
type RefusalOf<H> = SubmitError<<H as KeyedHandler>::Payload, <H as KeyedHandler>::Key>;

/// Submits `event` without ever blocking.
#[inline]
pub(crate) fn try_submit<H: KeyedHandler>(shared: &Shared<H>, event: EventOf<H>) -> Result<(), RefusalOf<H>> {
    let shard = &shared.shards()[shared.shard_of(event.stream())];
    match shard.push(event) {
        Ok(()) => {
            shared.scheduler().after_push(shard);
            Ok(())
        }
        Err(PushError::Full(event)) => {
            shard.rejected().incr();
            Err(SubmitError::Full(event))
        }
        Err(PushError::Closed(event)) => {
            shard.rejected().incr();
            Err(SubmitError::Closed(event))
        }
    }
}

/// Submits a batch without ever blocking: each shard's events with one claim, one fence for
/// the batch, each shard that took some scheduled once. Returns how many were taken, or the
/// events handed back in their order (see [`SubmitManyError`]).
pub(crate) fn try_submit_many<H: KeyedHandler>(
    shared: &Shared<H>,
    events: Vec<EventOf<H>>,
) -> Result<usize, SubmitManyError<H::Payload, H::Key>> {
    let total = events.len();
    let rejected = push_all(shared, events);
    finish(shared, total, rejected)
}

/// Submits a batch, waiting up to `timeout` for room for what did not fit: while some events
/// are handed back full, the producer parks on the waiter list of the first one's shard (one
/// wake-up, as [`submit_timeout`]), then offers them all again. Events of other full shards
/// wait with it: a shard that frees room while the first stays full is offered to only when
/// the first wakes the producer (or the deadline does).
pub(crate) fn submit_many_timeout<H: KeyedHandler>(
    shared: &Shared<H>,
    events: Vec<EventOf<H>>,
    timeout: Duration,
) -> Result<usize, SubmitManyError<H::Payload, H::Key>> {
    let deadline = Instant::now().checked_add(timeout);
    let total = events.len();
    let mut rest = push_all(shared, events);
    loop {
        if rest.is_empty() {
            return Ok(total);
        }
        if rest.iter().any(SubmitError::is_closed) {
            // Nothing more will be taken: whatever waited for room is closed out too.
            let closed = rest.into_iter().map(|e| SubmitError::Closed(e.into_event())).collect();
            return finish(shared, total, closed);
        }
        // Every one left met a full shard: wait for room in the first one's.
        let waited = shared.shard_of(rest[0].event().stream());
        let waiters = shared.shards()[waited].waiters();
        let in_waited = |rest: &[RefusalOf<H>]| {
            rest.iter()
                .filter(|e| shared.shard_of(e.event().stream()) == waited)
                .count()
        };
        let before = in_waited(&rest);
        let waiter = waiters.register();
        // Pairs with the consumer's fence after freeing room (see `waiters`).
        fence(Ordering::SeqCst);
        rest = push_all(shared, rest.into_iter().map(SubmitError::into_event).collect());
        if in_waited(&rest) < before {
            waiters.done(&waiter);
            continue;
        }
        if rest.iter().any(SubmitError::is_closed) {
            waiters.leave(&waiter);
            continue;
        }
        if !park_until_notified(waiters, &waiter, deadline) {
            let timed_out = rest.into_iter().map(|e| SubmitError::Timeout(e.into_event())).collect();
            return finish(shared, total, timed_out);
        }
        // Woken for room (or for shutdown): offer them all again.
    }
}

/// Counts the events of a batch handed back (each in its shard's `rejected`) and says what the
/// batch of `total` came to.
fn finish<H: KeyedHandler>(
    shared: &Shared<H>,
    total: usize,
    rejected: Vec<RefusalOf<H>>,
) -> Result<usize, SubmitManyError<H::Payload, H::Key>> {
    if rejected.is_empty() {
        return Ok(total);
    }
    for e in &rejected {
        shared.shards()[shared.shard_of(e.event().stream())].rejected().incr();
    }
    Err(SubmitManyError {
        accepted: total - rejected.len(),
        rejected,
    })
}

/// The most events [`push_batch`] groups at once: its grouping keys hold a 32-bit index. (3
/// in the unit tests, which prove the chunking.)
const MAX_BATCH: usize = if cfg!(test) { 3 } else { u32::MAX as usize };

/// [`push_batch`] over a batch of any size, in chunks of at most [`MAX_BATCH`] events. Once a
/// chunk hands some back, every later chunk is handed back whole, with the reason of the first
/// one handed back: no stream's event overtakes one of its events handed back.
fn push_all<H: KeyedHandler>(shared: &Shared<H>, mut events: Vec<EventOf<H>>) -> Vec<RefusalOf<H>> {
    if events.len() <= MAX_BATCH {
        return push_batch(shared, events);
    }
    let mut rejected: Vec<RefusalOf<H>> = Vec::new();
    while !events.is_empty() {
        let rest = events.split_off(events.len().min(MAX_BATCH));
        match rejected.first().map(SubmitError::is_closed) {
            None => rejected = push_batch(shared, events),
            Some(closed) => rejected.extend(events.into_iter().map(|e| {
                if closed {
                    SubmitError::Closed(e)
                } else {
                    SubmitError::Full(e)
                }
            })),
        }
        events = rest;
    }
    rejected
}

/// Pushes `events` (at most [`MAX_BATCH`]) into their shards' rings, each shard's events (in
/// their order) with one claim ([`Ring::push_many`](super::ring::Ring::push_many)); then,
/// after one `SeqCst` fence, schedules each shard that took some if it was idle (the
/// no-lost-wake-up protocol of `shard`, its fence shared by the batch). Returns the events not
/// taken, in their order, each with its reason (not counted yet). A shard takes a prefix of its
/// events: what it hands back is the rest of them, so a stream's later events never overtake
/// one handed back. The events are put in shard order before any claim: nothing between a
/// claim and its publishes can fail.
fn push_batch<H: KeyedHandler>(shared: &Shared<H>, events: Vec<EventOf<H>>) -> Vec<RefusalOf<H>> {
    debug_assert!(events.len() <= MAX_BATCH);
    let shards = shared.shards();
    let order = group_by_shard(shared, &events);
    let mut slots: Vec<Option<EventOf<H>>> = events.into_iter().map(Some).collect();
    let ordered: Vec<EventOf<H>> = order
        .iter()
        .map(|&key| slots[key as u32 as usize].take().expect("each event is taken once"))
        .collect();
    drop(slots);
    let mut values = ordered.into_iter();
    let mut rejected: Vec<(u32, RefusalOf<H>)> = Vec::new();
    let mut took: Vec<u32> = Vec::new();
    for group in order.chunk_by(|a, b| a >> 32 == b >> 32) {
        let shard_index = (group[0] >> 32) as u32;
        let (taken, closed) = match shards[shard_index as usize].push_many(&mut values, group.len()) {
            Ok(n) => (n, false),
            Err(Closed) => (0, true),
        };
        if taken > 0 {
            took.push(shard_index);
        }
        for &key in &group[taken..] {
            let event = values.next().expect("the rest of the group comes next");
            let error = if closed {
                SubmitError::Closed(event)
            } else {
                SubmitError::Full(event)
            };
            rejected.push((key as u32, error));
        }
    }
    if !took.is_empty() {
        fence(Ordering::SeqCst);
        for index in took {
            shared.scheduler().after_fenced_push(&shards[index as usize]);
        }
    }
    rejected.sort_unstable_by_key(|&(i, _)| i);
    rejected.into_iter().map(|(_, e)| e).collect()
}

/// The batch's events as keys `shard << 32 | index`, in shard order and, within a shard, in
/// the batch's order. A counting sort (no comparisons) when the engine has at most
/// [`COUNTED_SHARDS`] shards, its counts on the stack; a sort of the keys otherwise.
fn group_by_shard<H: KeyedHandler>(shared: &Shared<H>, events: &[EventOf<H>]) -> Vec<u64> {
    let key = |i: usize, e: &EventOf<H>| ((shared.shard_of(e.stream()) as u64) << 32) | i as u64;
    let shards = shared.shards().len();
    if shards > COUNTED_SHARDS {
        let mut keys: Vec<u64> = events.iter().enumerate().map(|(i, e)| key(i, e)).collect();
        keys.sort_unstable();
        return keys;
    }
    let mut next = [0usize; COUNTED_SHARDS + 1];
    for e in events {
        next[shared.shard_of(e.stream()) + 1] += 1;
    }
    for s in 1..=shards {
        next[s] += next[s - 1];
    }
    let mut keys = vec![0u64; events.len()];
    for (i, e) in events.iter().enumerate() {
        let s = shared.shard_of(e.stream());
        keys[next[s]] = key(i, e);
        next[s] += 1;
    }
    keys
}

/// Engines with at most this many shards group a batch by a counting sort.
const COUNTED_SHARDS: usize = 256;

/// Submits `event`, waiting up to `timeout` for room in its shard.
pub(crate) fn submit_timeout<H: KeyedHandler>(
    shared: &Shared<H>,
    event: EventOf<H>,
    timeout: Duration,
) -> Result<(), RefusalOf<H>> {
    let deadline = Instant::now().checked_add(timeout);
    let shard = &shared.shards()[shared.shard_of(event.stream())];
    let mut event = match shard.push(event) {
        Ok(()) => {
            shared.scheduler().after_push(shard);
            return Ok(());
        }
        Err(PushError::Closed(event)) => {
            shard.rejected().incr();
            return Err(SubmitError::Closed(event));
        }
        Err(PushError::Full(event)) => event,
    };
    let waiters = shard.waiters();
    loop {
        let waiter = waiters.register();
        // Pairs with the consumer's fence after freeing room (see `waiters`).
        fence(Ordering::SeqCst);
        match shard.push(event) {
            Ok(()) => {
                waiters.done(&waiter);
                shared.scheduler().after_push(shard);
                return Ok(());
            }
            Err(PushError::Closed(e)) => {
                waiters.leave(&waiter);
                shard.rejected().incr();
                return Err(SubmitError::Closed(e));
            }
            Err(PushError::Full(e)) => event = e,
        }
        if !park_until_notified(waiters, &waiter, deadline) {
            shard.rejected().incr();
            return Err(SubmitError::Timeout(event));
        }
        // Woken for room (or for shutdown): try once more; another producer may have taken
        // the room first, and then we wait for the next wake-up.
    }
}

/// Parks the registered `waiter` until a freer notifies it (`true`) or `deadline` passes
/// (`false`: it has left the list, passing on a wake-up it got meanwhile).
fn park_until_notified(waiters: &Waiters, waiter: &Arc<Waiter>, deadline: Option<Instant>) -> bool {
    while !waiter.is_notified() {
        let now = Instant::now();
        let left = match deadline {
            Some(deadline) if now >= deadline => {
                pause::point(PausePoint::WaiterLeaving);
                waiters.leave(waiter);
                return false;
            }
            Some(deadline) => deadline - now,
            None => Duration::from_secs(3600),
        };
        pause::point(PausePoint::BeforeWaiterPark);
        thread::park_timeout(left);
    }
    true
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use crate::{Engine, Event, Handler, StreamId, SubmitError};

    static HOLD: AtomicBool = AtomicBool::new(true);

    /// Holds the worker in its first event until `HOLD` is cleared.
    struct Held;

    impl Handler for Held {
        type Payload = u64;
        type State = ();
        type Error = String;
        fn init(&self, _: &StreamId) -> Result<(), String> {
            Ok(())
        }
        fn handle(&self, _: &mut (), _: &Event<u64>) -> Result<(), String> {
            while HOLD.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        }
    }

    // proves R-BP-1 and R-CONC-3 for batches over a chunk (in unit tests a chunk is 3 events,
    // `MAX_BATCH`): after a refusal every later chunk comes back whole, in order
    #[test]
    fn a_batch_over_a_chunk_hands_back_every_later_chunk_whole_after_a_refusal() {
        let engine = Engine::builder(Held)
            .workers(1)
            .shards(1)
            .shard_capacity(4)
            .start()
            .unwrap();
        let id = StreamId::new("a").unwrap();
        engine.try_submit(Event::new(id.clone(), 0)).unwrap();
        while engine.metrics().queued != 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Chunks [1 2 3] (all fit), [4 5 6] (4 fits), [7 8 9] and [10]: handed back whole.
        let batch = (1..=10).map(|i| Event::new(id.clone(), i)).collect();
        let error = engine.try_submit_many(batch).expect_err("room for 4");
        assert_eq!(error.accepted, 4);
        assert!(error.rejected.iter().all(|e| matches!(e, SubmitError::Full(_))));
        let back: Vec<u64> = error.into_events().iter().map(|e| *e.payload()).collect();
        assert_eq!(back, vec![5, 6, 7, 8, 9, 10]);
        HOLD.store(false, Ordering::SeqCst);
        let report = engine.shutdown(Duration::from_secs(10));
        assert!(report.unprocessed.is_empty());
        assert_eq!(engine.metrics().processed, 5);
    }
}
