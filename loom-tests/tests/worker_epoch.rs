//! Model 5: replacing a dead worker's handle by epoch (`WorkerSlot::install`).
//!
//! Proves (R-CONC-2): of two replacers that saw the same handle, exactly one installs its
//! successor and the other's handle is retired (its thread would exit); a stale replacer that
//! saw an older handle never removes the newer one. Bound: LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use humpyard::loom_api::WorkerSlot;
use humpyard_loom_tests::spawn;
use loom::sync::Arc;

#[test]
fn exactly_one_replacement_and_stale_replacers_lose() {
    loom::model(|| {
        let slot = Arc::new(WorkerSlot::new());
        let stale = slot.load(); // seen before anyone replaced it
        let replacers: Vec<_> = (0..2)
            .map(|_| {
                let slot = slot.clone();
                spawn(move || {
                    let seen = slot.load();
                    loom::thread::yield_now();
                    slot.replace(&seen)
                })
            })
            .collect();
        let results: Vec<_> = replacers.into_iter().map(|r| r.join().unwrap()).collect();
        let current = slot.load();
        let installed: Vec<_> = results.iter().filter(|(_, ok)| *ok).collect();
        assert!(!installed.is_empty(), "some replacement happened");
        for (handle, ok) in &results {
            assert_eq!(*ok, !handle.is_retired(), "a losing handle is retired");
        }
        // Whatever the interleaving, the slot holds the newest installed handle.
        assert!(installed.iter().any(|(h, _)| h.same(&current)));
        assert!(current.epoch() >= 1);
        // A replacer that saw the epoch-0 handle cannot remove a newer one.
        let (late, ok) = slot.replace(&stale);
        assert!(!ok && late.is_retired());
        assert!(slot.load().same(&current));
    });
}
