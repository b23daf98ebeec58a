//! Model 3: producers waiting for room (`Engine::submit_timeout`, `engine::waiters`) with the
//! real engine: 1 worker, 1 shard of capacity 1.
//!
//! Proves (R-BP-2, R-CONC-1): a parked producer is always woken when room appears, and when the
//! engine closes; no wake-up is lost. A lost wake-up leaves the producer parked forever, which
//! loom reports as a deadlock (a model's clock never reaches a deadline).
//! Bound: LOOM_MAX_PREEMPTIONS=3 for both models (6 s and 43 s on the 2-core machine,
//! 2026-11-23).
#![cfg(humpyard_loom)]

use humpyard::{Engine, Event, Handler, StreamId, SubmitError};
use humpyard_loom_tests::{engine, id, spawn, FOREVER};
use loom::sync::{Arc, Condvar, Mutex};

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

/// A gate the handler waits at while handling event 0, opened by the producer.
#[derive(Debug, Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
}

/// Holds event 0 at the gate, so the worker frees no room after taking it.
#[derive(Debug)]
struct HeldAtGate(Arc<Gate>);

impl Handler for HeldAtGate {
    type Payload = u64;
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }

    fn handle(&self, _: &mut (), event: &Event<u64>) -> Result<(), String> {
        if *event.payload() == 0 {
            self.0.wait();
        }
        Ok(())
    }
}

/// Events 0 and 1 fill the worker and the ring (event 0 is held until the producer is done), so
/// event 2's submit can only end by shutdown's wake-up: it must come back as `Closed`. Shutdown
/// races every step (any submit may meet the closed ring first).
#[test]
fn waiting_producer_is_woken_by_close() {
    loom::model(|| {
        let gate = Arc::new(Gate::default());
        let engine = Arc::new(
            Engine::builder(HeldAtGate(gate.clone()))
                .workers(1)
                .shards(1)
                .shard_capacity(1)
                .without_supervisor()
                .start()
                .expect("valid configuration"),
        );
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
