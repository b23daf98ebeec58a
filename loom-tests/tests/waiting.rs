//! Model 3: producers waiting for room (`Engine::submit_timeout`, `engine::waiters`) with the
//! real engine: 1 worker, 1 shard of capacity 1.
//!
//! Proves (R-BP-2, R-CONC-1): a parked producer is always woken when room appears, and when the
//! engine closes; no wake-up is lost. A lost wake-up leaves the producer parked forever, which
//! loom reports as a deadlock (the model's clock moves only when a model moves it).
//! Bound: LOOM_MAX_PREEMPTIONS=3 for the three models (242 s in all on the 2-core machine,
//! 2026-12-02; the timed waiters' model takes most of it).
#![cfg(humpyard_loom)]

use humpyard::{Event, SubmitError};
use humpyard_loom_tests::{engine, full_gated_engine, gated_engine, id, spawn, FOREVER};

/// The second submit finds the ring full until the worker takes the first event.
#[test]
fn waiting_producer_is_woken_by_freed_room() {
    loom::model(|| {
        let engine = engine(1, 1, 1, 3);
        let producer = {
            let engine = engine.clone();
            spawn(move || {
                for n in [0u64, 2] {
                    engine
                        .submit_timeout(Event::new(id("a"), n), FOREVER)
                        .expect("room appears");
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

/// Events 0 and 1 fill the worker and the ring (event 0 is held until the producer is done), so
/// event 2's submit can only end by shutdown's wake-up: it must come back as `Closed`. Shutdown
/// races every step (any submit may meet the closed ring first).
#[test]
fn waiting_producer_is_woken_by_close() {
    loom::model(|| {
        let (gate, engine) = gated_engine();
        let producer = {
            let engine = engine.clone();
            spawn(move || {
                let outcomes = [0u64, 1, 2].map(|n| engine.submit_timeout(Event::new(id("a"), n), FOREVER));
                gate.open();
                outcomes
            })
        };
        let report = engine.shutdown(FOREVER);
        let outcomes = producer.join().unwrap();
        assert!(
            matches!(outcomes[2], Err(SubmitError::Closed(_))),
            "only shutdown can end the third submit: {:?}",
            outcomes[2]
        );
        let accepted = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
        for (n, outcome) in outcomes.iter().enumerate() {
            if let Err(e) = outcome {
                assert!(matches!(e, SubmitError::Closed(_)), "{e:?}");
                assert_eq!(*e.event().payload(), n as u64, "the error holds its own event");
            }
        }
        let m = engine.metrics();
        assert!(!report.deadline_exceeded && report.unprocessed.is_empty());
        assert_eq!(
            (m.accepted, m.processed, m.rejected),
            (accepted, accepted, 3 - accepted)
        );
    });
}

/// Two producers wait for room, A with a short timeout, B with none; the model's clock passes
/// A's deadline while the worker frees room. Whoever the worker wakes, nobody stays parked
/// beside free room: if A is woken just as its deadline passes and leaves without the room, it
/// passes the wake-up on to B (`Waiters::leave`). A lost wake-up leaves B parked forever, which
/// loom reports as a deadlock. Bound: LOOM_MAX_PREEMPTIONS=3.
#[test]
fn a_timed_waiter_leaving_passes_its_wake_up_on() {
    loom::model(|| {
        // The worker holds event 0 at the gate; event 1 fills the ring.
        let (gate, engine) = full_gated_engine();
        let a = {
            let engine = engine.clone();
            spawn(move || engine.submit_timeout(Event::new(id("a"), 2), std::time::Duration::from_millis(10)))
        };
        let b = {
            let engine = engine.clone();
            spawn(move || engine.submit_timeout(Event::new(id("a"), 3), FOREVER))
        };
        humpyard::loom_api::clock::advance(std::time::Duration::from_millis(10));
        gate.open();
        let a = a.join().unwrap();
        assert!(b.join().unwrap().is_ok(), "B gets in once room is free");
        assert!(matches!(a, Ok(()) | Err(SubmitError::Timeout(_))), "{a:?}");
        let report = engine.shutdown(FOREVER);
        let m = engine.metrics();
        let accepted = 3 + u64::from(a.is_ok());
        assert!(report.unprocessed.is_empty());
        assert_eq!((m.accepted, m.processed), (accepted, accepted));
    });
}

/// The worker holds event 0 at the gate and event 1 fills the ring; producers B and C wait for
/// room. Two places free one after the other: the first may wake B while C's re-try (after
/// registering) takes it, and the second wake C, who no longer needs it. C must pass that
/// wake-up on (`Waiters::done`), or B sleeps beside free room: a deadlock. Both get in.
/// (Found by this model on 2026-12-03: `done` swallowed the wake-up.)
#[test]
fn a_woken_producer_that_loses_the_room_waits_again() {
    loom::model(|| {
        // The worker holds event 0 at the gate; event 1 fills the ring.
        let (gate, engine) = full_gated_engine();
        let producers = [2u64, 3].map(|n| {
            let engine = engine.clone();
            spawn(move || engine.submit_timeout(Event::new(id("a"), n), FOREVER))
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
