//! Model 13: `resilience::SingleFlight`, two callers of one key racing the leader's landing.
//!
//! Proves (R-RES-5): every caller gets the value of an `f` that ran (once when they overlap,
//! twice when they do not); a joiner is never left parked (a lost wake-up is a loom deadlock);
//! when the leader's `f` panics, a joiner returns `SingleFlightError` instead of waiting
//! forever. Bound: LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use humpyard::resilience::{SingleFlight, SingleFlightError};
use humpyard_loom_tests::{quiet_planned_panics, spawn};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;

// proves R-RES-5
#[test]
fn overlapping_callers_share_one_value_and_nobody_is_stranded() {
    loom::model(|| {
        let flight = Arc::new(SingleFlight::<u8, usize>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let call = {
            let (flight, runs) = (flight.clone(), runs.clone());
            move || flight.run(1, || 10 + runs.fetch_add(1, Ordering::SeqCst))
        };
        let other = spawn(call.clone());
        let mine = call().unwrap();
        let theirs = other.join().unwrap().unwrap();
        let ran = runs.load(Ordering::SeqCst);
        assert!(ran == 1 || ran == 2);
        if ran == 1 {
            assert_eq!((mine, theirs), (10, 10), "one run, one shared value");
        } else {
            assert_ne!(mine, theirs, "two runs, one value each");
        }
        assert_eq!(flight.in_flight(), 0);
    });
}

// proves R-RES-5
#[test]
fn a_panicking_leader_strands_nobody() {
    quiet_planned_panics();
    loom::model(|| {
        let flight = Arc::new(SingleFlight::<u8, u8>::new());
        let call = {
            let flight = flight.clone();
            move || {
                catch_unwind(AssertUnwindSafe(|| {
                    flight.run(1, || -> u8 { panic!("planned panic in the leader's f") })
                }))
            }
        };
        let other = spawn(call.clone());
        let mine = call();
        let theirs = other.join().unwrap();
        // Each either led (and its panic came back) or joined (and got the error).
        for outcome in [mine, theirs] {
            match outcome {
                Err(_) | Ok(Err(SingleFlightError)) => {}
                Ok(Ok(v)) => panic!("no f returned, yet a value: {v}"),
            }
        }
        assert_eq!(flight.in_flight(), 0);
    });
}
