//! Model 16: batch submits that wait (`Engine::submit_many_timeout`) and batches over more than
//! one shard, with the real engine.
//!
//! Proves (R-BP-2, R-CONC-1): a batch waiting for room is woken when the worker frees it (its
//! waiter path: register, fence, offer again, park); a batch over two shards racing the worker
//! going idle, with one fence after both shards' pushes, leaves no event stranded.
//! Bound: LOOM_MAX_PREEMPTIONS=2 (each model runs the engine's worker beside the producer; at 3
//! the two took most of 8 minutes on the 2-core machine beside a CI run, 2026-12-03).
#![cfg(humpyard_loom)]

use humpyard::Event;
use humpyard_loom_tests::{engine, id, spawn};

/// A producer submits two one-event batches with `submit_many_timeout` into a ring of one: the
/// second finds it full until the worker takes the first, and waits on the batch's waiter path
/// (register, fence, offer again, park): it is woken; no wake-up is lost (a lost one leaves
/// it parked forever, which loom reports as a deadlock).
#[test]
fn a_waiting_batch_is_woken_by_freed_room() {
    loom::model(|| {
        let engine = engine(1, 1, 1, 1);
        let producer = {
            let engine = engine.clone();
            spawn(move || {
                for n in [0u64, 2] {
                    let taken = engine
                        .submit_many_timeout(vec![Event::new(id("a"), n)], humpyard_loom_tests::FOREVER)
                        .expect("room appears");
                    assert_eq!(taken, 1);
                }
            })
        };
        producer.join().unwrap();
        let report = engine.shutdown(humpyard_loom_tests::FOREVER);
        assert!(report.unprocessed.is_empty());
        let m = engine.metrics();
        assert_eq!((m.accepted, m.processed, m.rejected), (2, 2, 0));
    });
}

/// A batch over two shards races the worker finishing shard 0's first event: the batch's one
/// fence, after both shards' pushes, leaves neither shard's events stranded.
#[test]
fn a_batch_over_two_shards_racing_a_worker_going_idle_is_run() {
    loom::model(|| {
        let engine = engine(1, 2, 2, 1);
        let in_shard = |shard: usize| {
            (0..)
                .map(|i| id(&format!("s{i}")))
                .find(|s| engine.shard_of(s) == shard)
                .expect("some id lands in each shard")
        };
        let (first, second) = (in_shard(0), in_shard(1));
        engine.try_submit(Event::new(first.clone(), 0)).unwrap();
        let producer = {
            let engine = engine.clone();
            spawn(move || {
                engine
                    .try_submit_many(vec![Event::new(second, 2), Event::new(first, 4)])
                    .unwrap()
            })
        };
        assert_eq!(producer.join().unwrap(), 2);
        let report = engine.shutdown(humpyard_loom_tests::FOREVER);
        let m = engine.metrics();
        assert!(report.unprocessed.is_empty() && !report.deadline_exceeded);
        assert_eq!((m.accepted, m.processed), (3, 3));
    });
}
