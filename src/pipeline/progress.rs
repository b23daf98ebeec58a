//! [`Progress`]: which global positions are fully processed, and the low watermark below which
//! every position is; [`Window`]: the reader thread's side of it (what it submitted, the gaps it
//! passed, the jump over a gap wider than the window).
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

use std::sync::Arc;

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

/// The reader thread's window of positions in flight: `front` is the lowest position not yet
/// known fully processed, `next` the next one not yet submitted or passed as a gap. Only the
/// reader thread owns it; workers reach the same flags through [`Progress::done`].
#[derive(Debug)]
pub(crate) struct Window {
    progress: Arc<Progress>,
    front: u64,
    next: u64,
}

/// Whether a position fits in the window now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// It is the next to submit; the gaps before it are marked done.
    Ready,
    /// Every flag belongs to a position in flight: wait, and try again.
    Full,
}

impl Window {
    /// A window over `progress` whose positions start after `checkpoint`.
    pub(crate) fn new(progress: Arc<Progress>, checkpoint: u64) -> Window {
        Window {
            progress,
            front: checkpoint + 1,
            next: checkpoint + 1,
        }
    }

    /// Makes `position` the next to submit if it fits in the window, marking the positions
    /// before it that the store never delivered (gaps) as done. A gap wider than the window is
    /// jumped over, but only once everything submitted before it is done: a jump moves the
    /// front, and a position still in flight below it would be passed by the checkpoint.
    pub(crate) fn try_pass_to(&mut self, position: u64) -> Pass {
        let window = self.progress.window();
        if position >= self.front + window {
            self.front = self.progress.advance(self.front, self.next);
            if position >= self.front + window {
                if self.front != self.next {
                    return Pass::Full;
                }
                // Everything submitted is done, and the rest up to `position` is a gap wider
                // than the window: jump over it.
                self.front = position;
                self.next = position;
            }
        }
        for gap in self.next..position {
            self.progress.done(gap);
        }
        self.next = self.next.max(position);
        Pass::Ready
    }

    /// `position` (made the next by [`try_pass_to`](Self::try_pass_to)) was submitted.
    pub(crate) fn submitted(&mut self, position: u64) {
        self.next = position + 1;
    }

    /// The low watermark: every position up to it is fully processed (or a gap).
    pub(crate) fn watermark(&mut self) -> u64 {
        self.front = self.progress.advance(self.front, self.next);
        self.front - 1
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
