//! Internals exposed to the loom models and the criterion benches, and to nothing else: this
//! module exists only under `--cfg humpyard_loom` or with the `internals` feature (which the
//! crate's own dev-dependency turns on). Not part of the public API; no stability promised.

/// Whether this build has the test-only pause points (feature `pause-points`). The benches
/// assert it is off: a build with pause points pays a load per point.
pub fn pause_points() -> bool {
    cfg!(feature = "pause-points")
}

/// The ingress ring (`engine::ring::Ring`).
#[derive(Debug)]
pub struct Ring<T>(crate::engine::ring::Ring<T>);

/// Why a push handed its element back.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring held `capacity` elements.
    Full(T),
    /// The ring was closed.
    Closed(T),
}

impl<T> Ring<T> {
    /// A ring of `capacity` elements.
    pub fn new(capacity: usize) -> Ring<T> {
        Ring(crate::engine::ring::Ring::new(capacity))
    }

    /// Appends, or hands the element back.
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        self.0.push(value).map_err(|e| match e {
            crate::engine::ring::PushError::Full(v) => PushError::Full(v),
            crate::engine::ring::PushError::Closed(v) => PushError::Closed(v),
        })
    }

    /// Appends as many of `values` as fit, with one claim; how many it took, or `Err(())` if
    /// the ring is closed (nothing taken).
    #[allow(clippy::result_unit_err)]
    pub fn push_many(&self, values: &mut std::vec::IntoIter<T>) -> Result<usize, ()> {
        self.0.push_many(values, usize::MAX).map_err(|_| ())
    }

    /// Single-consumer pop.
    ///
    /// # Safety
    ///
    /// As `engine::ring::Ring::pop_exclusive`: no concurrent consumer.
    pub unsafe fn pop_exclusive(&self) -> Option<T> {
        // SAFETY: forwarded to the caller.
        unsafe { self.0.pop_exclusive() }
    }

    /// Single-consumer pop of a closed ring, waiting for a claimed position's producer to
    /// publish; `None` once every claimed position is taken.
    ///
    /// # Safety
    ///
    /// As `engine::ring::Ring::pop_claimed`: no concurrent consumer; the ring is closed.
    pub unsafe fn pop_claimed(&self) -> Option<T> {
        // SAFETY: forwarded to the caller.
        unsafe { self.0.pop_claimed() }
    }

    /// Multi-consumer pop.
    pub fn pop_shared(&self) -> Option<T> {
        self.0.pop_shared()
    }

    /// Closes the ring.
    pub fn close(&self) {
        self.0.close()
    }

    /// Elements ever accepted.
    pub fn accepted(&self) -> u64 {
        self.0.accepted()
    }
}
