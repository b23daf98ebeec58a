//! Model 9: a shutdown whose deadline runs out (`shutdown`), with the real engine: an event
//! waits for its retry (no timer fires: the model has no supervisor) while a producer's submit
//! races the shutdown.
//!
//! Proves (R-LIFE-3, R-OBS-2): the accounting identity holds exactly: `accepted == processed +
//! dead_lettered + unprocessed`, the pending retry included, and a late-published event too.
//! Two models, because one does not reach both halves at a bound that ends:
//! - `a_deadline_that_runs_out_on_the_clock_accounts_for_every_event`: a clock thread moves the
//!   model's clock until the shutdown returns, so the deadline runs out on the clock (the
//!   drain's wait, its deadline check and the collection that follows);
//! - `a_deadline_that_has_run_out_collects_a_claimed_slot`: the deadline is zero, so the
//!   collection races the producer at once, and loom reaches a producer between claiming its
//!   slot and publishing it (the clock-driven model never did, at bounds 3 and 4: the planted
//!   `collect-skips-a-claimed-slot` survived it; this one catches it).
//!
//! Bound: LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use std::time::Duration;

use humpyard::loom_api::clock;
use humpyard::{Engine, Event, ShutdownReport};
use humpyard_loom_tests::{engine_with_a_retry, id, spawn, FailsOnce};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;

/// Starts a producer of event 2 beside event 1's pending retry, runs `shut_down`, and checks
/// the accounting once the producer is done.
fn producer_racing(shut_down: impl FnOnce(&Arc<Engine<FailsOnce>>) -> ShutdownReport<u64>) {
    let engine = engine_with_a_retry();
    let producer = {
        let engine = engine.clone();
        spawn(move || u64::from(engine.try_submit(Event::new(id("a"), 2)).is_ok()))
    };
    let report = shut_down(&engine);
    let accepted = 1 + producer.join().unwrap();
    let m = engine.metrics();
    assert_eq!(m.accepted, accepted);
    assert_eq!(
        m.accepted,
        m.processed + m.dead_lettered + report.unprocessed.len() as u64,
        "accepted {} != processed {} + dead-lettered {} + unprocessed {}",
        m.accepted,
        m.processed,
        m.dead_lettered,
        report.unprocessed.len()
    );
    assert_eq!((m.queued, m.awaiting_retry, m.entities_live), (0, 0, 0));
}

#[test]
fn a_deadline_that_runs_out_on_the_clock_accounts_for_every_event() {
    loom::model(|| {
        producer_racing(|engine| {
            let stopped = Arc::new(AtomicBool::new(false));
            let time = {
                let stopped = stopped.clone();
                spawn(move || {
                    // Time passes until the shutdown has returned (its deadline passes meanwhile).
                    while !stopped.load(Ordering::Acquire) {
                        clock::advance(Duration::from_millis(1));
                    }
                })
            };
            let report = engine.shutdown(Duration::from_millis(1));
            stopped.store(true, Ordering::Release);
            time.join().unwrap();
            report
        });
    });
}

#[test]
fn a_deadline_that_has_run_out_collects_a_claimed_slot() {
    loom::model(|| producer_racing(|engine| engine.shutdown(Duration::ZERO)));
}
