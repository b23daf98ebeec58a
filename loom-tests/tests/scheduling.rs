//! Model 2: shard scheduling (`engine::shard`): the state machine IDLE -> SCHEDULED -> RUNNING
//! -> IDLE with its re-check, the ring, and the run queue, driven by producers and workers the
//! way `scheduler::Scheduler::after_push` and `worker::run_shard` with `Scheduler::hand_off`
//! drive them.
//!
//! Proves (R-CONC-1, R-CONC-3, R-CONC-4): a pushed event is never stranded in an idle shard
//! (the lost wake-up), every accepted event is taken exactly once, and a shard never runs on two
//! threads at once (loom's `UnsafeCell` tracking fails the model if two runners are inside the
//! shard's core together). Bound: LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use humpyard::loom_api::{Ring, Shard};
use humpyard_loom_tests::spawn;
use loom::sync::Arc;

/// A worker: run the shard each time it is taken from the run queue; stop when the queue is
/// empty (the model's workers do not park; parking is the sleepers' protocol).
fn worker(shard: &Shard, run_queue: &Ring<u32>) -> Vec<u64> {
    let mut taken = Vec::new();
    while run_queue.pop_shared().is_some() {
        taken.extend(shard.run());
    }
    taken
}

/// A producer: submit, and queue the shard if this submit scheduled it.
fn produce(shard: &Shard, run_queue: &Ring<u32>, values: &[u64]) -> Vec<u64> {
    let mut accepted = Vec::new();
    for &v in values {
        if let Ok(scheduled) = shard.submit(v) {
            accepted.push(v);
            if scheduled {
                run_queue.push(0).expect("a shard is queued at most once");
            }
        }
    }
    accepted
}

fn check(shard: &Shard, run_queue: &Ring<u32>, accepted: Vec<u64>, mut taken: Vec<u64>) {
    // Everyone is done: an idle shard must have an empty ring.
    assert!(!shard.stranded(), "an accepted event is stranded in an idle shard");
    // A shard still queued is run by whoever takes it next.
    taken.extend(worker(shard, run_queue));
    taken.sort();
    let mut accepted = accepted;
    accepted.sort();
    assert_eq!(taken, accepted, "every accepted event taken exactly once");
}

/// Two producers race one worker going idle.
#[test]
fn producers_racing_a_worker_going_idle() {
    loom::model(|| {
        let shard = Arc::new(Shard::new(2));
        let run_queue = Arc::new(Ring::new(2));
        let producers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|v| {
                let (shard, run_queue) = (shard.clone(), run_queue.clone());
                spawn(move || produce(&shard, &run_queue, &[v]))
            })
            .collect();
        let consumer = {
            let (shard, run_queue) = (shard.clone(), run_queue.clone());
            spawn(move || worker(&shard, &run_queue))
        };
        let accepted: Vec<u64> = producers.into_iter().flat_map(|p| p.join().unwrap()).collect();
        let taken = consumer.join().unwrap();
        check(&shard, &run_queue, accepted, taken);
    });
}

/// One producer feeds two workers: the shard is never run by both at once.
#[test]
fn two_workers_never_run_one_shard_together() {
    loom::model(|| {
        let shard = Arc::new(Shard::new(2));
        let run_queue = Arc::new(Ring::new(2));
        let producer = {
            let (shard, run_queue) = (shard.clone(), run_queue.clone());
            spawn(move || produce(&shard, &run_queue, &[1, 2]))
        };
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (shard, run_queue) = (shard.clone(), run_queue.clone());
                spawn(move || worker(&shard, &run_queue))
            })
            .collect();
        let accepted = producer.join().unwrap();
        let taken: Vec<u64> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        check(&shard, &run_queue, accepted, taken);
    });
}
