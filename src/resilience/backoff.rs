//! [`Backoff`]: capped exponential delays with "equal jitter", a pure function of a seed and the
//! attempt number.
//!
//! Without jitter the delay before retry `attempt` is `min(max, base * 2^attempt)`, computed
//! without overflow for every `attempt`. With jitter (the default) it is drawn from
//! `[d / 2, d]` of that `d`: half fixed, so a retry never comes at once, half random, so the
//! retries of many parties do not fire together. The draw is a hash of `(seed, attempt)`, so the
//! same seed gives the same delays (tests, reproducible runs), and two instances made without
//! [`with_seed`](Backoff::with_seed) draw different seeds (decorrelated jitter: keep one per
//! retrying party, per shard or per route).

use std::time::Duration;

use crate::sync::statics::{AtomicU64, Ordering};

/// Capped exponential backoff with equal jitter: without jitter the delay before retry
/// `attempt` is `min(max, base * 2^attempt)` (no overflow for any `attempt`); with jitter (the
/// default) it is drawn from `[d / 2, d]` of that `d`, as a hash of `(seed, attempt)`: the same
/// seed gives the same delays, and instances made without [`with_seed`](Backoff::with_seed)
/// draw seeds of their own (keep one per retrying party, per shard or per route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: bool,
    seed: u64,
}

impl Backoff {
    /// Delays from `base` doubling up to `max`, jittered, with a seed of its own.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            jitter: true,
            seed: fresh_seed(),
        }
    }

    /// The same delays without jitter: exactly `min(max, base * 2^attempt)`.
    pub fn without_jitter(mut self) -> Backoff {
        self.jitter = false;
        self
    }

    /// The same delays with this seed: the same seed gives the same jittered delays.
    pub fn with_seed(mut self, seed: u64) -> Backoff {
        self.seed = seed;
        self
    }

    /// The delay before retry `attempt` (0 for the first retry): a pure function of the seed
    /// and `attempt`, never above `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self.capped(attempt);
        if !self.jitter {
            return full;
        }
        let nanos = full.as_nanos();
        let half = nanos / 2;
        // A draw in [half, nanos]: the hash scaled onto the span (multiply and shift, no modulo
        // bias); a span past 64 bits (delays of centuries) is scaled coarsely.
        let span = nanos - half;
        let draw = u128::from(mix(
            self.seed ^ mix(u64::from(attempt).wrapping_add(0x9e37_79b9_7f4a_7c15))
        ));
        let extra = if span <= u128::from(u64::MAX) {
            (draw * (span + 1)) >> 64
        } else {
            (span >> 64) * draw
        };
        from_nanos(half + extra).min(full)
    }

    /// `min(max, base * 2^attempt)` without overflow.
    fn capped(&self, attempt: u32) -> Duration {
        if attempt >= 128 {
            return if self.base.is_zero() { Duration::ZERO } else { self.max };
        }
        let factor = 1u128 << attempt;
        let nanos = self.base.as_nanos().saturating_mul(factor);
        if nanos >= self.max.as_nanos() {
            self.max
        } else {
            // Below `max`, which fits a Duration.
            from_nanos(nanos)
        }
    }
}

/// A duration of `nanos` nanoseconds, which must be at most `Duration::MAX`'s.
fn from_nanos(nanos: u128) -> Duration {
    Duration::new((nanos / 1_000_000_000) as u64, (nanos % 1_000_000_000) as u32)
}

/// splitmix64's finaliser: a well-mixed 64-bit hash.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A seed no other instance in this process draws: a counter, mixed with the process's
/// randomly keyed hasher so that processes differ too.
fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // `Relaxed`: only uniqueness matters.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(n);
    mix(hasher.finish() ^ n)
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;

    #[test]
    fn without_jitter_it_doubles_to_its_cap() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1)).without_jitter();
        let delays: Vec<u64> = (0..9).map(|a| b.delay(a).as_millis() as u64).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1), "no overflow");
    }
}
