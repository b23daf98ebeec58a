//! Model 8: retry timers (`retry`, `Scheduler::fire_timers`) on the model's clock, with the
//! real engine: an event fails once and waits for its retry (its shard `Waiting`, a timer
//! armed), a producer pushes the stream's next event meanwhile, and a supervisor thread moves
//! the clock and fires due timers, as the supervisor's loop does.
//!
//! Proves (R-FT-4, R-CONC-1, R-CONC-3): the timer schedules the waiting shard exactly when the
//! shard waits (the event is retried, then the next one runs: no event is stranded in a
//! `Waiting` shard, and a shard is never queued twice: the run queue's lane holds one entry
//! per shard, and a second would be run by no one: the drain would spin to loom's branch
//! limit). Bound: LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use std::time::Duration;

use humpyard::loom_api::{clock, fire_timers, processed};
use humpyard::Event;
use humpyard_loom_tests::{engine_with_a_retry, id, spawn, FOREVER};

#[test]
fn a_retry_timer_fired_while_a_producer_pushes_strands_nothing() {
    loom::model(|| {
        let engine = engine_with_a_retry();
        let producer = {
            let engine = engine.clone();
            spawn(move || engine.try_submit(Event::new(id("a"), 2)).is_ok())
        };
        let supervisor = {
            let engine = engine.clone();
            spawn(move || {
                // The supervisor's loop: time passes, due timers fire, until both are handled.
                while processed(&engine) < 2 {
                    clock::advance(Duration::from_millis(10));
                    fire_timers(&engine);
                }
            })
        };
        assert!(producer.join().unwrap(), "the ring has room for event 2");
        supervisor.join().unwrap();
        let report = engine.shutdown(FOREVER);
        let m = engine.metrics();
        assert!(report.unprocessed.is_empty() && !report.deadline_exceeded);
        assert_eq!((m.accepted, m.processed, m.retries, m.dead_lettered), (2, 2, 1, 0));
    });
}
