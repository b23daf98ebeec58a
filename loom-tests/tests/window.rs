//! Model 11: the pipeline reader's window (`pipeline::progress::Window` over `Progress`): the
//! reader submits positions 1 and 2, passes the gap 3..=6 (wider than the window of 2), and
//! submits 7; a worker marks 1 done, the dead-letter path marks 2 done after its hook, and the
//! reader marks 7; the reader reads the watermark after every step.
//!
//! Proves (R-PG-5): the watermark (what the next checkpoint save writes) never passes a
//! position that is neither finished nor a gap: the jump over the wide gap waits for every
//! position in flight below it. Bound: LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use humpyard::loom_api::Progress;
use humpyard_loom_tests::spawn;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;

#[test]
fn the_watermark_never_passes_an_unfinished_position() {
    loom::model(|| {
        let progress = Progress::new(2);
        // What the handlers finished (set before the done mark), by position.
        let finished: Arc<Vec<AtomicBool>> = Arc::new((0..8).map(|_| AtomicBool::new(false)).collect());
        let gap = |p: u64| (3..=6).contains(&p);
        let mut reader = progress.reader(0);
        let check = |reader: &mut humpyard::loom_api::Window| {
            let watermark = reader.watermark();
            for p in 1..=watermark {
                assert!(
                    gap(p) || finished[p as usize].load(Ordering::Acquire),
                    "the watermark {watermark} passed position {p}, still in flight"
                );
            }
        };
        let mark = |p: u64| {
            let (progress, finished) = (progress.clone(), finished.clone());
            move || {
                finished[p as usize].store(true, Ordering::Release);
                progress.done(p);
            }
        };

        assert!(reader.try_pass_to(1));
        reader.submitted(1);
        let worker = spawn(mark(1));
        check(&mut reader);
        assert!(reader.try_pass_to(2));
        reader.submitted(2);
        // The dead-letter path: the hook runs, then the position is marked.
        let dead_letter = spawn(mark(2));
        check(&mut reader);
        while !reader.try_pass_to(7) {
            check(&mut reader);
            loom::thread::yield_now();
        }
        reader.submitted(7);
        check(&mut reader);
        mark(7)();
        worker.join().unwrap();
        dead_letter.join().unwrap();
        check(&mut reader);
        assert_eq!(reader.watermark(), 7);
    });
}
