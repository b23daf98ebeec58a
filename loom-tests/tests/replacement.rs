//! Model 10: worker replacement (`supervisor::replace_worker`, `WorkerSlot::install`, the
//! sleepers) with a real spawned thread, racing a producer's wake-up: worker 0 dies between
//! two shards and the supervisor joins it, starts a replacement and installs it, while a
//! producer submits an event (its wake-up may pop the replacement from the sleepers before or
//! after the install).
//!
//! Proves (R-FT-1, R-CONC-1, R-CONC-2): the event is handled: a wake-up reaches the thread that
//! parked, so a replacement that parks before its install is woken (were it not, the event would
//! sit in a scheduled shard with no worker awake, and shutdown's drain would spin to loom's
//! branch limit). Bound: LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use humpyard::loom_api::replace_worker;
use humpyard::Event;
use humpyard_loom_tests::{engine, id, spawn, FOREVER};

#[test]
fn a_replacement_worker_racing_a_producers_wake_up_strands_nothing() {
    loom::model(|| {
        let engine = engine(1, 1, 2, 1);
        let producer = {
            let engine = engine.clone();
            spawn(move || u64::from(engine.try_submit(Event::new(id("a"), 0)).is_ok()))
        };
        replace_worker(&engine, 0);
        let accepted = producer.join().unwrap();
        let report = engine.shutdown(FOREVER);
        let m = engine.metrics();
        assert!(report.unprocessed.is_empty() && !report.deadline_exceeded);
        assert_eq!((m.accepted, m.processed), (accepted, accepted));
    });
}
