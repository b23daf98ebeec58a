//! Model 12: `resilience::CircuitBreaker`'s one atomic word, callers racing its transitions on
//! the model's clock.
//!
//! Proves (R-RES-6): once the open period has passed, exactly one caller runs as the probe
//! while the others are rejected (no two `f`s ever run at once while the breaker is not
//! closed); a probe that panics reopens the breaker, so it is never stuck half-open and a
//! later probe runs; failures racing the threshold open it once. Bound: LOOM_MAX_PREEMPTIONS=3.
#![cfg(humpyard_loom)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use humpyard::loom_api::clock;
use humpyard::resilience::{BreakerConfig, BreakerState, CallError, CircuitBreaker};
use humpyard_loom_tests::{quiet_planned_panics, spawn};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;

const OPEN_FOR: Duration = Duration::from_millis(10);

/// Past an open period (the breaker rounds its end up to the next millisecond).
const PAST_OPEN: Duration = Duration::from_millis(11);

/// An open breaker (threshold 1, one failure) on a fresh clock.
fn opened() -> Arc<CircuitBreaker> {
    clock::reset();
    let mut config = BreakerConfig::default();
    config.failure_threshold = 1;
    config.open_for = OPEN_FOR;
    let breaker = Arc::new(CircuitBreaker::new(config));
    assert_eq!(breaker.call(|| Err::<(), _>("down")), Err(CallError::Failed("down")));
    breaker
}

/// A call whose `f` checks that it runs alone, and succeeds.
fn call_alone(breaker: &CircuitBreaker, inside: &AtomicUsize) -> Result<(), CallError<()>> {
    breaker.call(|| {
        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two calls ran at once: two probes");
        loom::thread::yield_now();
        inside.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    })
}

// proves R-RES-6
#[test]
fn racing_callers_after_the_open_period_let_one_probe_through() {
    loom::model(|| {
        let breaker = opened();
        clock::advance(PAST_OPEN);
        let inside = Arc::new(AtomicUsize::new(0));
        let other = {
            let (breaker, inside) = (breaker.clone(), inside.clone());
            spawn(move || call_alone(&breaker, &inside))
        };
        let mine = call_alone(&breaker, &inside);
        let theirs = other.join().unwrap();
        assert!(mine.is_ok() || theirs.is_ok(), "one of them probed");
        let stats = breaker.stats();
        assert_eq!(stats.probes, 1, "{stats:?}");
        assert_eq!(breaker.state(), BreakerState::Closed);
    });
}

// proves R-RES-6
#[test]
fn a_panicking_probe_never_leaves_it_stuck() {
    quiet_planned_panics();
    loom::model(|| {
        let breaker = opened();
        clock::advance(PAST_OPEN);
        let panicker = {
            let breaker = breaker.clone();
            spawn(move || {
                catch_unwind(AssertUnwindSafe(|| {
                    breaker.call(|| -> Result<(), ()> { panic!("planned panic in a probe") })
                }))
                .is_err()
            })
        };
        let mine = breaker.call(|| Ok::<_, ()>(()));
        let panicked = panicker.join().unwrap();
        assert_ne!(breaker.state(), BreakerState::HalfOpen, "stuck half-open");
        // Whoever probed, a call after another open period runs.
        clock::advance(PAST_OPEN);
        assert_eq!(breaker.call(|| Ok::<_, ()>(7)), Ok(7), "mine: {mine:?}, panicked: {panicked}");
    });
}

// proves R-RES-6
#[test]
fn failures_racing_the_threshold_open_it_once() {
    loom::model(|| {
        clock::reset();
        let mut config = BreakerConfig::default();
        config.failure_threshold = 2;
        config.open_for = OPEN_FOR;
        let breaker = Arc::new(CircuitBreaker::new(config));
        let other = {
            let breaker = breaker.clone();
            spawn(move || breaker.call(|| Err::<(), _>("down")))
        };
        let _ = breaker.call(|| Err::<(), _>("down"));
        let _ = other.join().unwrap();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.stats().opened, 1);
    });
}
