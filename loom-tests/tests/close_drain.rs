//! Model 4: close and drain (`Engine::shutdown`) racing submits, with the real engine.
//!
//! Proves (R-LIFE-3, R-LIFE-4, R-CONC-1): every submit racing shutdown is either accepted and
//! then processed (or handed back in the report), or handed back as `Closed`: never both,
//! never neither; shutdown always finishes. Bound: LOOM_MAX_PREEMPTIONS=3 (184 s on the 2-core
//! machine, 2026-11-23).
#![cfg(humpyard_loom)]

use humpyard::{Event, SubmitError};
use humpyard_loom_tests::{engine, id, spawn, FOREVER};

#[test]
fn submits_racing_shutdown_are_accounted_once() {
    loom::model(|| {
        let engine = engine(1, 1, 2, 3);
        let producer = {
            let engine = engine.clone();
            spawn(move || {
                let mut accepted = Vec::new();
                for n in [0u64, 2] {
                    match engine.try_submit(Event::new(id("a"), n)) {
                        Ok(()) => accepted.push(n),
                        Err(SubmitError::Closed(e)) => assert_eq!(*e.payload(), n),
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                }
                accepted
            })
        };
        let report = engine.shutdown(FOREVER);
        let accepted = producer.join().unwrap();
        let m = engine.metrics();
        assert!(!report.deadline_exceeded && report.unprocessed.is_empty());
        assert_eq!(m.accepted, accepted.len() as u64);
        assert_eq!(m.processed, m.accepted, "accepted means processed");
        assert_eq!(m.rejected, 2 - m.accepted, "the rest were handed back as Closed");
        assert_eq!(m.entities_live, 0);
    });
}
