//! The engine's monotonic clock, in nanosecond ticks since the engine started (read through
//! the sync facade's clock, which loom models advance by hand).
//!
//! Ticks are plain `u64`s, so the entity table's activity stamps and the retry timers cost eight
//! bytes each and compare with one instruction.

use std::time::Duration;

use crate::sync::time::Instant;

/// A monotonic clock counting nanoseconds since it was made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub(crate) fn new() -> Clock {
        Clock { epoch: Instant::now() }
    }

    /// Ticks since the clock started.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        ticks(self.epoch.elapsed())
    }
}

/// A duration in ticks, saturating.
#[inline]
pub(crate) fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
