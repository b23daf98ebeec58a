//! Model 15: batch submits: the ring's one claim for many positions (`Ring::push_many`) and the
//! engine's `try_submit_many`, the library's real code under loom.
//!
//! Proves (R-CONC-1, R-BP-1, R-LIFE-3, R-OBS-2): a batch claim racing `close` and the
//! collection of a closed ring (which waits for claimed positions to be published) hands every
//! claimed element to the collector exactly once, in order, and takes nothing once closed;
//! a batch beside a single push and a consumer loses, duplicates and reorders nothing; a batch
//! submit racing a shutdown whose deadline has run out is accounted exactly
//! (`accepted == processed + unprocessed`), each stream's events in order; a batch racing a
//! worker going idle is run. (The batch's waiter path and a batch over two shards: model 16,
//! `batch_waiting`.)
//! Bound: LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use std::time::Duration;

use humpyard::loom_api::Ring;
use humpyard::Event;
use humpyard_loom_tests::{engine, id, spawn};
use loom::sync::Arc;
use loom::thread;

/// A batch of three into a ring of two races `close` and the collection that follows: the
/// collector gets exactly the claimed prefix, in order; a closed ring takes nothing.
#[test]
fn a_batch_claim_racing_close_is_collected_exactly() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut values = vec![1u32, 2, 3].into_iter();
                let taken = ring.push_many(&mut values);
                (taken, values.collect::<Vec<_>>())
            })
        };
        let collector = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.close();
                // SAFETY: the only consumer; the ring is closed.
                std::iter::from_fn(|| unsafe { ring.pop_claimed() }).collect::<Vec<_>>()
            })
        };
        let (taken, left) = producer.join().unwrap();
        let collected = collector.join().unwrap();
        match taken {
            Ok(n) => {
                assert_eq!(n, 2, "an open ring of two takes two");
                assert_eq!(collected, vec![1, 2]);
                assert_eq!(left, vec![3]);
            }
            Err(()) => {
                assert!(collected.is_empty());
                assert_eq!(left, vec![1, 2, 3], "a closed ring takes nothing");
            }
        }
        assert_eq!(ring.accepted() as usize, collected.len());
    });
}

/// A batch and a single push race into a ring of two while a consumer takes: what each got
/// accepted is taken exactly once, in its order.
#[test]
fn a_batch_beside_a_push_and_a_consumer_loses_nothing() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2));
        let batch = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut values = vec![10u32, 11].into_iter();
                let n = ring.push_many(&mut values).expect("never closed");
                vec![10u32, 11][..n].to_vec()
            })
        };
        let single = {
            let ring = ring.clone();
            thread::spawn(move || ring.push(20u32).is_ok())
        };
        let consumer = {
            let ring = ring.clone();
            // SAFETY: the only consumer while it runs.
            thread::spawn(move || unsafe { ring.pop_exclusive() })
        };
        let from_batch = batch.join().unwrap();
        let single = single.join().unwrap();
        let mut taken: Vec<u32> = consumer.join().unwrap().into_iter().collect();
        // SAFETY: every other thread is joined.
        taken.extend(std::iter::from_fn(|| unsafe { ring.pop_exclusive() }));
        let got: Vec<u32> = taken.iter().copied().filter(|v| *v < 20).collect();
        assert_eq!(got, from_batch, "the batch's accepted prefix, once, in order");
        assert_eq!(taken.contains(&20), single);
        assert_eq!(taken.len(), from_batch.len() + usize::from(single));
        assert_eq!(ring.accepted() as usize, taken.len());
    });
}

/// A batch of two events of one stream races a shutdown whose deadline has run out: each is
/// processed, handed back unprocessed (in order), or handed back `Closed`; exactly once.
#[test]
fn a_batch_submit_racing_an_expired_shutdown_is_accounted_once() {
    loom::model(|| {
        let engine = engine(1, 1, 4, 1);
        let producer = {
            let engine = engine.clone();
            spawn(move || match engine.try_submit_many(vec![Event::new(id("a"), 0), Event::new(id("a"), 2)]) {
                Ok(n) => n as u64,
                Err(e) => {
                    assert!(e.rejected.iter().all(|r| r.is_closed()));
                    e.accepted as u64
                }
            })
        };
        let report = engine.shutdown(Duration::ZERO);
        let accepted = producer.join().unwrap();
        let m = engine.metrics();
        assert_eq!(m.accepted, accepted);
        assert_eq!(m.rejected, 2 - accepted);
        assert_eq!(m.accepted, m.processed + report.unprocessed.len() as u64);
        let left: Vec<u64> = report.unprocessed.iter().map(|e| *e.payload()).collect();
        let expected: &[u64] = &[0, 2][(m.processed as usize)..(accepted as usize)];
        assert_eq!(left, expected, "what is left is the rest, in order");
    });
}

/// A batch submit races the worker finishing the stream's first event and going idle: the
/// batch's one fence and schedule (the no-lost-wake-up protocol, shared by the batch) leave
/// no event stranded in an idle shard; a shutdown that drains finds them all processed.
#[test]
fn a_batch_submit_racing_a_worker_going_idle_is_run() {
    loom::model(|| {
        let engine = engine(1, 1, 4, 1);
        engine.try_submit(Event::new(id("a"), 0)).unwrap();
        let producer = {
            let engine = engine.clone();
            spawn(move || {
                engine
                    .try_submit_many(vec![Event::new(id("a"), 2), Event::new(id("a"), 4)])
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
