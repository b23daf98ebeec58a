//! Model 2: shard scheduling (`engine::shard`, `engine::scheduler`, `engine::worker`), with the
//! real engine: the state machine Idle -> Scheduled -> Running -> Idle with its re-check, the
//! ring, the run queue and the sleepers, driven by producers and the library's own worker
//! threads (their run loop, hand-off and parking).
//!
//! Proves (R-CONC-1, R-CONC-3, R-CONC-4): a pushed event is never stranded in an idle shard
//! (the lost wake-up: shutdown's drain would spin to loom's branch limit), every accepted event
//! is handled exactly once, and a shard never runs on two threads at once (loom's `UnsafeCell`
//! tracking fails the model if two runners are inside the shard's core together).
//!
//! Bound: LOOM_MAX_PREEMPTIONS=2, because the state space forces it: four threads of real engine
//! code (the workers' polling, parking and metrics included) took 7.5 minutes for the first
//! model at bound 3 and more than 12 for the second (stopped there), against a 20-minute budget
//! for every model; at bound 2 both take 69 s (2-core machine, 2026-12-02). Bound 2 still
//! catches each planted lost wake-up (`mutations/run`: `idle-without-recheck`,
//! `idle-without-fence`, `push-without-fence`, `sleeper-without-fence`).
#![cfg(humpyard_loom)]

use humpyard::Event;
use humpyard_loom_tests::{engine, id, spawn, FOREVER};

/// Submits `values` to stream `a`; returns how many were accepted.
fn produce(engine: &humpyard::Engine<humpyard_loom_tests::EvenOk>, values: &[u64]) -> u64 {
    values
        .iter()
        .filter(|&&v| engine.try_submit(Event::new(id("a"), v)).is_ok())
        .count() as u64
}

/// Shuts `engine` down without a deadline: the drain ends (no event stranded) and each of the
/// `accepted` events was handled exactly once.
fn drains_every_accepted_event(engine: &humpyard::Engine<humpyard_loom_tests::EvenOk>, accepted: u64) {
    let report = engine.shutdown(FOREVER);
    let m = engine.metrics();
    assert!(report.unprocessed.is_empty() && !report.deadline_exceeded);
    assert_eq!(
        (m.accepted, m.processed),
        (accepted, accepted),
        "every accepted event handled once"
    );
}

/// Two producers race one worker going idle.
#[test]
fn producers_racing_a_worker_going_idle() {
    loom::model(|| {
        let engine = engine(1, 1, 2, 1);
        let producers: Vec<_> = [0u64, 2]
            .into_iter()
            .map(|v| {
                let engine = engine.clone();
                spawn(move || produce(&engine, &[v]))
            })
            .collect();
        let accepted: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
        drains_every_accepted_event(&engine, accepted);
    });
}

/// One producer feeds two workers: the shard is never run by both at once.
#[test]
fn two_workers_never_run_one_shard_together() {
    loom::model(|| {
        let engine = engine(2, 1, 2, 1);
        let producer = {
            let engine = engine.clone();
            spawn(move || produce(&engine, &[0, 2]))
        };
        let accepted = producer.join().unwrap();
        drains_every_accepted_event(&engine, accepted);
    });
}
