//! `resilience::CircuitBreaker` (R-RES-6): closed, open, exactly one probe in half-open, a
//! panicking probe never leaves it stuck, transitions counted and reported. The interleavings
//! of racing callers are the loom model's (`loom-tests/tests/breaker.rs`); here the real clock.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use humpyard::resilience::{BreakerConfig, BreakerState, CallError, CircuitBreaker, Transition, TransitionHook};

const OPEN_FOR: Duration = Duration::from_millis(50);

fn breaker(threshold: u32) -> CircuitBreaker {
    breaker_open_for(threshold, OPEN_FOR)
}

/// A breaker that stays open for `open_for`: a test that checks a rejection right after the
/// breaker opens uses a period no stall of a busy machine outlasts.
fn breaker_open_for(threshold: u32, open_for: Duration) -> CircuitBreaker {
    let mut config = BreakerConfig::default();
    config.failure_threshold = threshold;
    config.open_for = open_for;
    CircuitBreaker::new(config)
}

const LONG: Duration = Duration::from_secs(60);

fn fail(b: &CircuitBreaker) -> Result<(), CallError<&'static str>> {
    b.call(|| Err::<(), _>("down"))
}

fn succeed(b: &CircuitBreaker) -> Result<u32, CallError<&'static str>> {
    b.call(|| Ok(7))
}

/// Waits past the open period (the breaker reads the real clock).
fn let_the_open_period_pass() {
    thread::sleep(OPEN_FOR + Duration::from_millis(20));
}

// proves R-RES-6
#[test]
fn defaults_are_documented_values() {
    let config = BreakerConfig::default();
    assert_eq!(config.failure_threshold, 5);
    assert_eq!(config.open_for, Duration::from_secs(30));
    assert!(config.on_transition.is_none());
}

// proves R-RES-6: consecutive failures open it; a success resets the count
#[test]
fn consecutive_failures_open_it_and_a_success_resets_the_count() {
    let b = breaker_open_for(3, LONG);
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    assert_eq!(succeed(&b), Ok(7), "closed: f runs");
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    assert_eq!(b.state(), BreakerState::Closed, "the success reset the count: 2 < 3");
    assert_eq!(b.stats().consecutive_failures, 2);
    assert_eq!(fail(&b), Err(CallError::Failed("down")));
    assert_eq!(b.state(), BreakerState::Open);

    let ran = AtomicUsize::new(0);
    let rejected = b.call(|| {
        ran.fetch_add(1, Ordering::SeqCst);
        Ok::<_, ()>(())
    });
    assert_eq!(rejected, Err(CallError::Open));
    assert_eq!(ran.load(Ordering::SeqCst), 0, "an open breaker does not run f");
    let stats = b.stats();
    assert_eq!((stats.opened, stats.rejected), (1, 1));
}

// proves R-RES-6: after the open period exactly one probe runs; callers racing it are rejected
#[test]
fn after_the_open_period_one_probe_runs_and_its_success_closes_it() {
    let b = Arc::new(breaker(1));
    fail(&b).unwrap_err();
    let_the_open_period_pass();

    // The probe holds still inside f while others call.
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let probe = {
        let b = b.clone();
        thread::spawn(move || {
            b.call(|| {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok::<_, ()>("probed")
            })
        })
    };
    entered.recv().unwrap();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let ran = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (b, ran, start) = (b.clone(), ran.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                b.call(|| {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ()>("second probe")
                })
            })
        })
        .collect();
    for racer in racers {
        assert_eq!(racer.join().unwrap(), Err(CallError::Open));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0, "half-open: only the probe runs");
    release.send(()).unwrap();
    assert_eq!(probe.join().unwrap(), Ok("probed"));
    assert_eq!(b.state(), BreakerState::Closed);
    let stats = b.stats();
    assert_eq!((stats.opened, stats.probes, stats.closed, stats.rejected), (1, 1, 1, 8));
}

// proves R-RES-6
#[test]
fn a_failed_probe_opens_it_again_for_the_whole_period() {
    let open_for = Duration::from_millis(300);
    let b = breaker_open_for(2, open_for);
    fail(&b).unwrap_err();
    fail(&b).unwrap_err();
    thread::sleep(open_for + Duration::from_millis(20));
    let probed = Instant::now();
    assert_eq!(fail(&b), Err(CallError::Failed("down")), "the probe ran and failed");
    assert_eq!(b.state(), BreakerState::Open);
    // Rejected until the whole period has passed since the probe failed.
    let mut rejected = 0;
    while probed.elapsed() < open_for {
        if succeed(&b) == Err(CallError::Open) {
            rejected += 1;
        } else {
            panic!("let in after {:?} of {open_for:?}", probed.elapsed());
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert!(rejected > 0);
    thread::sleep(Duration::from_millis(20));
    assert_eq!(succeed(&b), Ok(7));
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.stats().opened, 2);
}

// proves R-RES-6: a panicking probe counts as a failure and never leaves the breaker stuck
#[test]
fn a_panicking_probe_reopens_it_and_the_next_probe_runs() {
    let b = breaker(1);
    fail(&b).unwrap_err();
    let_the_open_period_pass();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        b.call(|| -> Result<(), ()> { panic!("planned panic in a probe") })
    }));
    assert!(panicked.is_err(), "the probe's panic reaches its caller");
    assert_eq!(b.state(), BreakerState::Open, "not stuck half-open");
    let_the_open_period_pass();
    assert_eq!(succeed(&b), Ok(7), "a new probe runs");
    assert_eq!(b.state(), BreakerState::Closed);
}

// proves R-RES-6
#[test]
fn a_panic_while_closed_counts_as_a_failure() {
    let b = breaker(2);
    for _ in 0..2 {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            b.call(|| -> Result<(), ()> { panic!("planned panic") })
        }));
    }
    assert_eq!(b.state(), BreakerState::Open);
}

// proves R-RES-6
#[test]
fn a_late_answer_from_before_the_breaker_opened_changes_nothing() {
    let b = breaker(1);
    // A call admitted while closed, answering only after the breaker opened.
    let late = b.call(|| {
        fail(&b).unwrap_err();
        assert_eq!(b.state(), BreakerState::Open);
        Ok::<_, &str>(())
    });
    assert_eq!(late, Ok(()));
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "a member's success does not close an open breaker"
    );
}

// proves R-RES-6
#[test]
fn a_late_failure_from_an_earlier_closed_period_does_not_reopen_it() {
    let b = breaker(1);
    // A slow call admitted while closed; meanwhile the breaker opens, is probed, and closes.
    let late = b.call(|| {
        fail(&b).unwrap_err();
        let_the_open_period_pass();
        assert_eq!(succeed(&b), Ok(7), "the probe");
        assert_eq!(b.state(), BreakerState::Closed);
        Err::<(), _>("timed out long ago")
    });
    assert_eq!(late, Err(CallError::Failed("timed out long ago")));
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "a late failure does not reopen the new period"
    );
    assert_eq!(b.stats().opened, 1);
    // Nor does a late success reset the new period's count.
    let b = breaker(2);
    let late = b.call(|| {
        fail(&b).unwrap_err();
        fail(&b).unwrap_err();
        let_the_open_period_pass();
        assert_eq!(succeed(&b), Ok(7), "the probe");
        fail(&b).unwrap_err();
        Ok::<_, &str>(())
    });
    assert_eq!(late, Ok(()));
    assert_eq!(
        b.stats().consecutive_failures,
        1,
        "the new period's failure still counts"
    );
}

// proves R-RES-6: transitions are reported through the hook; a panicking hook is contained
#[test]
fn transitions_are_reported_in_order_and_a_panicking_hook_is_counted() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut config = BreakerConfig::default();
    config.failure_threshold = 1;
    config.open_for = OPEN_FOR;
    config.on_transition = Some(TransitionHook::new({
        let seen = seen.clone();
        move |t: Transition| {
            seen.lock().unwrap().push((t.from, t.to));
            if t.to == BreakerState::HalfOpen {
                panic!("planned panic in the transition hook");
            }
        }
    }));
    let b = CircuitBreaker::new(config.clone());
    fail(&b).unwrap_err();
    let_the_open_period_pass();
    fail(&b).unwrap_err();
    let_the_open_period_pass();
    assert_eq!(succeed(&b), Ok(7));
    use BreakerState::*;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
    assert_eq!(b.stats().hook_panics, 2);
    assert_eq!(b.state(), Closed);
}

// proves R-RES-6
#[test]
fn thresholds_out_of_range_are_clamped() {
    let b = breaker(0);
    fail(&b).unwrap_err();
    assert_eq!(b.state(), BreakerState::Open, "0 acts as 1");

    let b = breaker(u32::MAX);
    for _ in 0..1000 {
        fail(&b).unwrap_err();
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.stats().consecutive_failures, 1000);
}

// proves R-RES-6
#[test]
// and R-API-2: `Failed` is transparent, `f`'s own error speaking once with its own source.
fn call_errors_say_what_happened_and_pass_the_calls_error_through() {
    use std::error::Error;
    let open: CallError<std::io::Error> = CallError::Open;
    assert!(open.to_string().contains("open"));
    assert!(open.source().is_none());
    let failed = CallError::Failed(std::io::Error::other("refused"));
    assert_eq!(failed.to_string(), "refused");
    assert!(failed.source().is_none());
    #[derive(Debug)]
    struct Refused(std::io::Error);
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the ledger refused")
        }
    }
    impl Error for Refused {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }
    let failed = CallError::Failed(Refused(std::io::Error::other("connection reset")));
    assert_eq!(failed.to_string(), "the ledger refused");
    assert_eq!(
        failed.source().map(ToString::to_string).as_deref(),
        Some("connection reset")
    );
}

// proves R-RES-6
#[test]
fn it_is_send_sync_and_debug() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<CircuitBreaker>();
    check::<BreakerConfig>();
    assert!(format!("{:?}", breaker(1)).contains("Closed"));
}
