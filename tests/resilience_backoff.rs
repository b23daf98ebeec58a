//! `humpyard::resilience::Backoff` against DESIGN.md's contract: capped exponential, no overflow
//! for any attempt, equal jitter within `[d/2, d]` never above the cap, a pure function of
//! (seed, attempt), and instances without a seed decorrelated (R-FT-4's backoff with jitter).

use std::time::Duration;

use humpyard::resilience::Backoff;
use proptest::prelude::*;

/// `min(max, base * 2^attempt)`, computed the slow, obviously right way.
fn expected(base: Duration, max: Duration, attempt: u32) -> Duration {
    let mut d = base;
    for _ in 0..attempt {
        if d >= max {
            return max;
        }
        d = d.saturating_mul(2);
    }
    d.min(max)
}

proptest! {
    #[test]
    fn without_jitter_it_is_min_of_max_and_base_times_two_to_the_attempt(
        base_ns in 0u64..5_000_000_000,
        max_ns in 0u64..100_000_000_000,
        attempt in prop_oneof![0u32..80, Just(u32::MAX), any::<u32>()],
    ) {
        let (base, max) = (Duration::from_nanos(base_ns), Duration::from_nanos(max_ns));
        let b = Backoff::new(base, max).without_jitter();
        prop_assert_eq!(b.delay(attempt), expected(base, max, attempt.min(200)));
    }

    #[test]
    fn with_jitter_it_stays_within_half_to_all_of_the_delay_and_repeats_per_seed(
        base_ns in 0u64..5_000_000_000,
        max_ns in 0u64..100_000_000_000,
        attempt in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let (base, max) = (Duration::from_nanos(base_ns), Duration::from_nanos(max_ns));
        let b = Backoff::new(base, max).with_seed(seed);
        let full = expected(base, max, attempt.min(200));
        let d = b.delay(attempt);
        prop_assert!(d <= full && d <= max, "{:?} above {:?}", d, full);
        prop_assert!(d >= full / 2, "{:?} below half of {:?}", d, full);
        prop_assert_eq!(d, Backoff::new(base, max).with_seed(seed).delay(attempt), "same seed, same delay");
    }
}

#[test]
fn huge_durations_do_not_overflow() {
    let b = Backoff::new(Duration::MAX, Duration::MAX);
    for attempt in [0, 1, 63, 64, 127, 128, u32::MAX] {
        assert_eq!(b.without_jitter().delay(attempt), Duration::MAX);
        assert!(b.delay(attempt) >= Duration::MAX / 2);
    }
    let zero = Backoff::new(Duration::ZERO, Duration::from_secs(1));
    assert_eq!(zero.delay(u32::MAX), Duration::ZERO, "a zero base stays zero");
}

#[test]
fn instances_without_a_seed_are_decorrelated() {
    let (base, max) = (Duration::from_millis(100), Duration::from_secs(10));
    let a = Backoff::new(base, max);
    let b = Backoff::new(base, max);
    let same = (0..20).filter(|&n| a.delay(n) == b.delay(n)).count();
    assert!(same < 5, "{same} of 20 delays equal: the seeds are not independent");
    // The jitter spreads: 1 000 parties' first retries are not all the same delay.
    let firsts: std::collections::HashSet<Duration> = (0..1000).map(|_| Backoff::new(base, max).delay(3)).collect();
    assert!(firsts.len() > 900, "{} distinct delays of 1 000", firsts.len());
}

#[test]
fn it_is_send_sync_debug_and_copy() {
    fn assert_traits<T: Send + Sync + std::fmt::Debug + Copy>() {}
    assert_traits::<Backoff>();
}
