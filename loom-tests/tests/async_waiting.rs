//! Model: tasks waiting for room (`Engine::submit_async`, `engine::submit_async`, the crate's
//! `waiters` with a task's waker) with the real engine: 1 worker, 1 shard of capacity 1.
//!
//! Proves (R-BP-2, R-CONC-1) for async callers: a pending submit is always woken when room
//! appears and when the engine closes, its waker registration racing both; a future dropped
//! while registered passes on a wake-up it got and loses no event (it stays in the caller's
//! `Option`). A lost wake-up leaves `block_on` waiting forever, which loom reports as a
//! deadlock. Bound: LOOM_MAX_PREEMPTIONS=2 (about 4 minutes on 2 cores; at 3 the file ran 37
//! minutes without finishing): the wake-up protocol these share with parked threads is checked
//! at 3 in `waiting.rs`.
#![cfg(humpyard_loom)]

use std::future::Future;
use std::task::{Context, Wake, Waker};

use humpyard::{Event, SubmitError};
use humpyard_loom_tests::{engine, full_gated_engine, gated_engine, id, spawn, FOREVER};
use loom::future::block_on;

/// The second submit finds the ring full until the worker takes the first event: its waker is
/// registered racing the worker's freeing of room.
#[test]
fn a_pending_submit_is_woken_by_freed_room() {
    loom::model(|| {
        let engine = engine(1, 1, 1, 3);
        let producer = {
            let engine = engine.clone();
            spawn(move || {
                for n in [0u64, 2] {
                    let mut event = Some(Event::new(id("a"), n));
                    block_on(engine.submit_async(&mut event)).expect("room appears");
                    assert!(event.is_none(), "taken");
                }
            })
        };
        producer.join().unwrap();
        let report = engine.shutdown(FOREVER);
        assert!(report.unprocessed.is_empty());
        let m = engine.metrics();
        assert_eq!((m.accepted, m.processed, m.rejected), (2, 2, 0));
    });
}

/// Events 0 and 1 fill the worker and the ring (event 0 is held until the producer is done),
/// so event 2's submit can end only by shutdown's wake-up, as `Closed` with its event.
/// Shutdown races every step.
#[test]
fn a_pending_submit_is_woken_by_close() {
    loom::model(|| {
        let (gate, engine) = gated_engine();
        let producer = {
            let engine = engine.clone();
            spawn(move || {
                let outcomes = [0u64, 1, 2].map(|n| {
                    let mut event = Some(Event::new(id("a"), n));
                    let outcome = block_on(engine.submit_async(&mut event));
                    assert!(event.is_none(), "taken or handed back in the error");
                    outcome
                });
                gate.open();
                outcomes
            })
        };
        let report = engine.shutdown(FOREVER);
        let outcomes = producer.join().unwrap();
        assert!(
            matches!(&outcomes[2], Err(SubmitError::Closed(e)) if *e.payload() == 2),
            "only shutdown can end the third submit: {:?}",
            outcomes[2]
        );
        let accepted = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
        let m = engine.metrics();
        assert!(!report.deadline_exceeded && report.unprocessed.is_empty());
        assert_eq!(
            (m.accepted, m.processed, m.rejected),
            (accepted, accepted, 3 - accepted)
        );
    });
}

/// A waker that does nothing: task A is polled once by hand, never woken.
struct Ignored;

impl Wake for Ignored {
    fn wake(self: std::sync::Arc<Self>) {}
}

/// The worker holds event 0 at the gate and event 1 fills the ring. Task A polls its submit
/// once (pending, registered) and drops it; task B waits in `block_on`. When the gate opens the
/// run frees room and wakes one waiter: if that is A, already dropped or dropping, A's leave
/// must pass the wake-up on to B. A swallowed wake-up leaves B waiting forever: a deadlock.
/// A's event is never taken and stays in its `Option`.
#[test]
fn a_dropped_submit_passes_its_wake_up_on() {
    loom::model(|| {
        // The worker holds event 0 at the gate; event 1 fills the ring.
        let (gate, engine) = full_gated_engine();
        // Task A, on the model's main thread: one poll, pending and registered.
        let mut a = Some(Event::new(id("a"), 2));
        let mut submit_a = Box::pin(engine.submit_async(&mut a));
        let waker = Waker::from(std::sync::Arc::new(Ignored));
        let polled = submit_a.as_mut().poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending(), "the ring is full while the gate is shut");
        let b = {
            let engine = engine.clone();
            spawn(move || {
                let mut event = Some(Event::new(id("a"), 3));
                block_on(engine.submit_async(&mut event))
            })
        };
        // The run frees room once the gate opens, racing A's drop and B's registration.
        gate.open();
        drop(submit_a);
        assert!(b.join().unwrap().is_ok(), "B gets in once room is free");
        assert!(
            matches!(&a, Some(e) if *e.payload() == 2),
            "a dropped submit leaves its event with the caller"
        );
        let report = engine.shutdown(FOREVER);
        let m = engine.metrics();
        assert!(report.unprocessed.is_empty());
        assert_eq!((m.accepted, m.processed, m.rejected), (3, 3, 0));
    });
}

/// The worker holds event 0 at the gate and event 1 fills the ring; tasks B and C wait for
/// room. When the gate opens, a woken task may lose the freed room to the other (whose retry
/// after registering takes it first): it must then register anew, not wait on a list it was
/// taken off. Both get in; a task left waiting off the list is a deadlock.
#[test]
fn a_woken_submit_that_loses_the_room_waits_again() {
    loom::model(|| {
        // The worker holds event 0 at the gate; event 1 fills the ring.
        let (gate, engine) = full_gated_engine();
        let producers = [2u64, 3].map(|n| {
            let engine = engine.clone();
            spawn(move || {
                let mut event = Some(Event::new(id("a"), n));
                block_on(engine.submit_async(&mut event))
            })
        });
        gate.open();
        for producer in producers {
            assert!(producer.join().unwrap().is_ok(), "each gets in once room is free");
        }
        let report = engine.shutdown(FOREVER);
        let m = engine.metrics();
        assert!(report.unprocessed.is_empty());
        assert_eq!((m.accepted, m.processed, m.rejected), (4, 4, 0));
    });
}

/// A task's waker may change between polls (a task moved to another executor thread). Task A
/// polls once with a waker that does nothing, then goes on in `block_on` with its own, while
/// the gate opens and the run frees room: if the freer takes (and wakes) the old waker just as
/// A keeps the new one, A must see that it was notified and try again rather than wait on a
/// waker nobody will wake (`Waiter::set_waker`'s re-read of `notified`).
#[test]
fn a_submit_polled_with_a_new_waker_is_not_lost() {
    loom::model(|| {
        // The worker holds event 0 at the gate; event 1 fills the ring.
        let (gate, engine) = full_gated_engine();
        let a = {
            let engine = engine.clone();
            spawn(move || {
                let mut event = Some(Event::new(id("a"), 2));
                let mut submit = Box::pin(engine.submit_async(&mut event));
                let ignored = Waker::from(std::sync::Arc::new(Ignored));
                if submit.as_mut().poll(&mut Context::from_waker(&ignored)).is_pending() {
                    block_on(submit.as_mut()).expect("room appears");
                }
                drop(submit);
                event.is_none()
            })
        };
        gate.open();
        assert!(a.join().unwrap(), "taken");
        let report = engine.shutdown(FOREVER);
        let m = engine.metrics();
        assert!(report.unprocessed.is_empty());
        assert_eq!((m.accepted, m.processed, m.rejected), (3, 3, 0));
    });
}
