//! Model 7: the pipeline's done-flag window (`pipeline::progress::Progress`).
//!
//! Proves (R-PG-5): the checkpoint front passes a position only after the worker that handled
//! it has finished (its effect is visible to the thread that saves the checkpoint: loom flags
//! an unsynchronised read of the effect as a data race), and a flag reused for the position one
//! window later never makes that position look done before it is. A window of 2; positions 1
//! and 2 go to two workers; once the front passes 1, its flag serves position 3, handed to
//! the first worker again. The hand-off stands in for the engine's ring (a release store and
//! an acquire load). Bound: LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use humpyard::loom_api::Progress;
use humpyard_loom_tests::spawn;
use loom::cell::UnsafeCell;
use loom::sync::mpsc;
use loom::sync::Arc;

/// What handling a position did (written by its worker, read by the checkpointing thread).
struct Effects([UnsafeCell<bool>; 4]);

// SAFETY: every access goes through loom's UnsafeCell, which checks for races itself.
unsafe impl Sync for Effects {}

#[test]
fn the_front_passes_only_finished_positions_and_reused_flags_start_clear() {
    loom::model(|| {
        let progress = Arc::new(Progress::new(2));
        assert_eq!(progress.window(), 2);
        let effects = Arc::new(Effects([(); 4].map(|_| UnsafeCell::new(false))));
        // Each worker's queue (the engine's ring) and the pipeline thread's wake-ups.
        let (finished_tx, finished) = mpsc::channel::<()>();
        let mut queues = Vec::new();
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (tx, rx) = mpsc::channel::<u64>();
                queues.push(tx);
                let (progress, effects, finished_tx) = (progress.clone(), effects.clone(), finished_tx.clone());
                spawn(move || {
                    let rounds = if w == 0 { 2 } else { 1 };
                    for _ in 0..rounds {
                        let p = rx.recv().unwrap();
                        effects.0[p as usize].with_mut(|e| unsafe { *e = true });
                        progress.done(p);
                        finished_tx.send(()).unwrap();
                    }
                })
            })
            .collect();
        let check = |front: u64| {
            for p in 1..front {
                effects.0[p as usize].with(|e| assert!(unsafe { *e }, "front passed {p} before it was handled"));
            }
        };
        // The pipeline thread: hand out 1 and 2, then 3 once the window has room for it.
        queues[0].send(1).unwrap();
        queues[1].send(2).unwrap();
        let mut front = progress.advance(1, 3);
        check(front);
        while 3 >= front + progress.window() {
            finished.recv().unwrap();
            front = progress.advance(front, 3);
            check(front);
        }
        queues[0].send(3).unwrap();
        front = progress.advance(front, 4);
        check(front);
        while front < 4 {
            finished.recv().unwrap();
            front = progress.advance(front, 4);
            check(front);
        }
        for w in workers {
            w.join().unwrap();
        }
    });
}
