//! [`Progress`]: which global positions are fully processed, and the low watermark below which
//! every position is.
//!
//! A window of `N` done-flags (a power of two), indexed by `position % N`. The pipeline thread
//! owns the window's front: the lowest position not yet known to be done. It submits positions
//! in increasing order and only while `position < front + N`, so each flag belongs to at most
//! one position in flight at a time. Workers set a position's flag when its event is handled or
//! dead-lettered; the pipeline thread sets the flags of gaps (positions the store never
//! delivers) itself, and [`advance`](Progress::advance)s the front over set flags, clearing
//! each as it passes so the flag can serve position `+ N`.
//!
//! Orderings: a worker's `Release` store of a flag pairs with the pipeline thread's `Acquire`
//! load in `advance`, so everything the handler did happens before the checkpoint that passes
//! it is saved. The clear is `Relaxed`: the next position to use that flag is submitted later by
//! the same thread, and the engine's ring hands it to a worker with release/acquire, so the
//! worker's set happens after the clear. Checked with loom (`loom-tests/tests/progress.rs`).

use crate::sync::{AtomicBool, Ordering};

/// Done-flags for a window of positions, and the front of the window.
pub(crate) struct Progress {
    flags: Box<[AtomicBool]>,
    mask: u64,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("window", &self.flags.len()).finish()
    }
}

impl Progress {
    /// A window of `window` positions, rounded up to a power of two (at least 2).
    pub(crate) fn new(window: usize) -> Progress {
        let n = window.max(2).next_power_of_two();
        Progress {
            flags: (0..n).map(|_| AtomicBool::new(false)).collect(),
            mask: n as u64 - 1,
        }
    }

    /// How many positions the window holds.
    pub(crate) fn window(&self) -> u64 {
        self.mask + 1
    }

    /// Marks `position` done. Called once per position in the window, by a worker (handled or
    /// dead-lettered) or by the pipeline thread (a gap).
    pub(crate) fn done(&self, position: u64) {
        self.flags[(position & self.mask) as usize].store(true, Ordering::Release);
    }

    /// Moves `front` (the lowest position not known done) over every done position, up to
    /// `end` (exclusive: the next position not yet submitted), and returns the new front.
    /// Only the pipeline thread calls it.
    pub(crate) fn advance(&self, mut front: u64, end: u64) -> u64 {
        while front < end {
            let flag = &self.flags[(front & self.mask) as usize];
            if !flag.load(Ordering::Acquire) {
                break;
            }
            flag.store(false, Ordering::Relaxed);
            front += 1;
        }
        front
    }
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_front_stops_at_the_first_position_not_done() {
        let p = Progress::new(8);
        assert_eq!(p.window(), 8);
        p.done(1);
        p.done(2);
        p.done(4);
        assert_eq!(p.advance(1, 5), 3, "3 is not done");
        p.done(3);
        assert_eq!(p.advance(3, 5), 5);
        // Flags were cleared as the front passed: position 9 (the flag of 1) starts not done.
        assert_eq!(p.advance(9, 10), 9);
        p.done(9);
        assert_eq!(p.advance(9, 10), 10);
    }

    #[test]
    fn windows_round_up_to_a_power_of_two() {
        assert_eq!(Progress::new(0).window(), 2);
        assert_eq!(Progress::new(1000).window(), 1024);
    }
}
