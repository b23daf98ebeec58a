//! Model 3: producers waiting for room (`Engine::submit_timeout`, `engine::waiters`) with the
//! real engine: 1 worker, 1 shard of capacity 1.
//!
//! Proves (R-BP-2, R-CONC-1): a parked producer is always woken when room appears (a lost
//! wake-up leaves it parked forever, which loom reports as a deadlock, since a model's clock
//! never reaches the deadline). Bound: LOOM_MAX_PREEMPTIONS=3.
//!
//! Not yet modelled: a waiting producer racing `shutdown` (woken with `Closed`). That model
//! runs past loom's branch limit (the drain loop and the lock spin with yields) and did not
//! finish within 10 minutes at bound 2; it is proved by `tests/backpressure.rs`
//! (`shutdown_wakes_waiting_producers_with_closed`) until it is made tractable.
#![cfg(humpyard_loom)]

use humpyard::Event;
use humpyard_loom_tests::{engine, id, spawn, FOREVER};

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
