//! How long handler calls take: a log2 histogram per shard, kept only when the engine was built
//! with [`time_handlers(true)`](crate::EngineBuilder::time_handlers), and its snapshot
//! [`HandlerDurations`].
//!
//! The engine reads no clock per event unless asked: with timing off a handler call costs one
//! predictable branch more (the shard has no [`DurationCounts`]); with it on, two reads of the
//! monotonic clock and two counter updates.
//!
//! # Buckets
//!
//! Bucket `0` counts calls that took at most 1 ns; bucket `i` (1 ..= [`BUCKETS`] - 2) those that
//! took more than 2^(i-1) ns and at most 2^i ns; the last bucket everything longer (2^38 ns is
//! about 275 s). So a bucket's upper bound is inclusive, as Prometheus's `le` is, and a power of
//! two nanoseconds, and finding the bucket is one `leading_zeros`.
//!
//! # Writers and readers
//!
//! The counts live in the shard, beside its other counters, and follow their rule (see
//! `metrics`): one writer at a time, the thread running the shard, with `Relaxed` loads and
//! stores and no read-modify-write; the shard's run hand-off orders successive writers. A
//! snapshot taken while the engine runs may see a call's bucket and not yet its share of the sum;
//! at quiescence and after shutdown it is exact.

use std::time::Duration;

use super::counters::OwnedCounter;

/// Buckets per histogram: 0 ns, one per power of two up to 2^38 ns, and one for the rest.
pub(crate) const BUCKETS: usize = 40;

/// One shard's handler-call durations (328 bytes: the shard keeps them cache-padded, as shards
/// run on different workers at once).
#[derive(Debug)]
pub(crate) struct DurationCounts {
    buckets: [OwnedCounter; BUCKETS],
    /// Nanoseconds, summed over the calls counted (584 years before it wraps).
    sum_nanos: OwnedCounter,
}

impl DurationCounts {
    /// Every bucket empty.
    pub(crate) fn new() -> DurationCounts {
        DurationCounts {
            buckets: std::array::from_fn(|_| OwnedCounter::default()),
            sum_nanos: OwnedCounter::default(),
        }
    }

    /// Counts a call that took `nanos`. Only the shard's current runner calls this.
    #[inline]
    pub(crate) fn record(&self, nanos: u64) {
        self.buckets[bucket_of(nanos)].add(1);
        self.sum_nanos.add(nanos);
    }

    /// Adds this shard's counts to `into`.
    pub(crate) fn add_to(&self, into: &mut HandlerDurations) {
        for (sum, bucket) in into.counts.iter_mut().zip(&self.buckets) {
            *sum += bucket.get();
        }
        into.sum += Duration::from_nanos(self.sum_nanos.get());
    }
}

/// The bucket of a call that took `nanos`.
#[inline]
fn bucket_of(nanos: u64) -> usize {
    // 0 and 1 -> 0; (2^(i-1), 2^i] -> i; capped at the last bucket.
    ((u64::BITS - nanos.saturating_sub(1).leading_zeros()) as usize).min(BUCKETS - 1)
}

/// How long the handler's `handle` calls took, across the engine: a histogram with buckets
/// growing by powers of two ([`Metrics::handler_durations`](crate::Metrics::handler_durations),
/// kept when the engine was built with
/// [`time_handlers(true)`](crate::EngineBuilder::time_handlers)).
///
/// Every call counts, the failed and the panicking ones too (a retried event counts once per
/// attempt); `init` and `cleanup` are not timed. A call that panics is timed until the engine
/// has caught and reported the panic (the process's panic hook, the log line and the engine's
/// `on_panic` hook included). Bucket `i` counts the calls that took at most
/// [`upper_bound(i)`](Self::upper_bound) and more than `upper_bound(i - 1)`:
///
/// ```
/// use std::time::Duration;
/// use humpyard::HandlerDurations;
///
/// assert_eq!(HandlerDurations::upper_bound(0), Some(Duration::from_nanos(1)));
/// assert_eq!(HandlerDurations::upper_bound(10), Some(Duration::from_nanos(1024)));
/// assert_eq!(HandlerDurations::upper_bound(HandlerDurations::BUCKETS - 1), None); // the rest
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerDurations {
    /// Calls per bucket, [`BUCKETS`](Self::BUCKETS) of them.
    pub counts: Vec<u64>,
    /// The calls' durations added up.
    pub sum: Duration,
}

impl Default for HandlerDurations {
    /// No calls yet: every bucket empty.
    fn default() -> HandlerDurations {
        HandlerDurations {
            counts: vec![0; BUCKETS],
            sum: Duration::ZERO,
        }
    }
}

impl HandlerDurations {
    /// The number of buckets: one for 0 ns, one per power of two up to 2^38 ns (about 275 s),
    /// and one for longer calls.
    pub const BUCKETS: usize = BUCKETS;

    /// The inclusive upper bound of bucket `i` (2^i ns); `None` for the last bucket, which has
    /// none, and for an index past it.
    pub fn upper_bound(i: usize) -> Option<Duration> {
        (i < BUCKETS - 1).then(|| Duration::from_nanos(1u64 << i))
    }

    /// The number of calls counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// An upper bound on the `q` quantile (`q` in `0.0..=1.0`, clamped): the upper bound of the
    /// bucket holding the call at rank `ceil(q * count)`, less than twice the true value (1 ns
    /// for a call of 0 ns). `None` with no calls counted, or when that call is in the last,
    /// unbounded bucket.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // The call's rank, 1 ..= count.
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        let bucket = self.counts.iter().position(|&n| {
            seen += n;
            seen >= rank
        })?;
        Self::upper_bound(bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_falls_in_the_bucket_whose_bounds_hold_it() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        for i in 1..BUCKETS - 1 {
            let low = 1u64 << (i - 1);
            let high = 1u64 << i;
            // (low, high]: the upper bound is inclusive, as Prometheus's `le` is.
            assert_eq!(bucket_of(low + 1), i, "{} ns", low + 1);
            assert_eq!(bucket_of(high), i, "{high} ns");
            assert_eq!(bucket_of(high + 1), i + 1, "{} ns", high + 1);
            assert_eq!(HandlerDurations::upper_bound(i), Some(Duration::from_nanos(high)));
        }
        assert_eq!(bucket_of((1 << (BUCKETS - 2)) + 1), BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(HandlerDurations::upper_bound(BUCKETS - 1), None);
    }

    #[test]
    fn a_quantile_is_the_upper_bound_of_the_bucket_holding_its_rank() {
        let counts = DurationCounts::new();
        for nanos in [1_000, 1_000, 1_000, 5_000] {
            counts.record(nanos);
        }
        let mut d = HandlerDurations::default();
        counts.add_to(&mut d);
        assert_eq!(d.count(), 4);
        assert_eq!(d.sum, Duration::from_nanos(8_000));
        // 1 000 ns is in (512, 1024]; 5 000 ns in (4096, 8192].
        assert_eq!(d.quantile(0.5), Some(Duration::from_nanos(1024)));
        assert_eq!(d.quantile(0.75), Some(Duration::from_nanos(1024)));
        assert_eq!(d.quantile(0.76), Some(Duration::from_nanos(8192)));
        assert_eq!(d.quantile(1.0), Some(Duration::from_nanos(8192)));
        assert_eq!(d.quantile(0.0), Some(Duration::from_nanos(1024)));
        assert_eq!(HandlerDurations::default().quantile(0.5), None);
    }
}
