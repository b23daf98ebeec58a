//! Model 14: `resilience::Bulkhead`, a parked waiter racing the drop of the only permit and a
//! barging `try_acquire`.
//!
//! Proves (R-RES-3, R-RES-4): never two holders of a one-place bulkhead; a waiter parked with
//! no deadline in reach (the model's clock never moves) gets the place once it frees: the
//! register-fence-retry protocol loses no wake-up (a lost one is a loom deadlock), and a waiter
//! woken for a place a barger took waits again and is woken again. Bound:
//! LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use std::time::Duration;

use humpyard::resilience::Bulkhead;
use humpyard_loom_tests::spawn;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;

/// Holds the place for one step, checking it is alone.
fn hold(inside: &AtomicUsize) {
    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders of one place");
    loom::thread::yield_now();
    inside.fetch_sub(1, Ordering::SeqCst);
}

// proves R-RES-3
#[test]
fn a_freed_place_reaches_the_parked_waiter() {
    loom::model(|| {
        humpyard::loom_api::clock::reset();
        let bulkhead = Arc::new(Bulkhead::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let held = bulkhead.try_acquire().expect("a free place");
        let waiter = {
            let (bulkhead, inside) = (bulkhead.clone(), inside.clone());
            spawn(move || {
                let permit = bulkhead.acquire_timeout(Duration::from_secs(60));
                assert!(permit.is_some(), "the place freed, and the clock never reaches the deadline");
                hold(&inside);
            })
        };
        let barger = {
            let (bulkhead, inside) = (bulkhead.clone(), inside.clone());
            spawn(move || {
                if let Some(_permit) = bulkhead.try_acquire() {
                    hold(&inside);
                }
            })
        };
        hold_as_main(&inside, held);
        waiter.join().unwrap();
        barger.join().unwrap();
        assert_eq!((bulkhead.available(), bulkhead.waiting()), (1, 0));
    });
}

/// The main thread's turn with the permit it took first, then its drop.
fn hold_as_main(inside: &AtomicUsize, permit: humpyard::resilience::Permit<'_>) {
    hold(inside);
    drop(permit);
}

// proves R-RES-3
#[test]
fn a_waiter_timing_out_as_it_is_woken_passes_the_place_on() {
    loom::model(|| {
        humpyard::loom_api::clock::reset();
        let bulkhead = Arc::new(Bulkhead::new(1));
        let held = bulkhead.try_acquire().expect("a free place");
        let waiter = |timeout: Duration| {
            let bulkhead = bulkhead.clone();
            spawn(move || bulkhead.acquire_timeout(timeout).is_some())
        };
        let hasty = waiter(Duration::from_millis(10));
        let patient = waiter(Duration::from_secs(60));
        // The hasty waiter's deadline passes as the place frees.
        humpyard::loom_api::clock::advance(Duration::from_millis(10));
        drop(held);
        let hasty_got_it = hasty.join().unwrap();
        let patient_got_it = patient.join().unwrap();
        // The patient one gets the place, whichever way the hasty one went (a wake-up it
        // received but did not use was passed on; otherwise loom reports a deadlock).
        assert!(patient_got_it, "hasty: {hasty_got_it}");
        assert_eq!((bulkhead.available(), bulkhead.waiting()), (1, 0));
    });
}
