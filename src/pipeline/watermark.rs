//! [`Watermark`]: the pipeline's low watermark as the reader thread publishes it, and
//! [`Pipeline::wait_for`](super::Pipeline::wait_for)'s wait on it.
//!
//! The reader thread owns the window's front and is the only thread that moves the watermark:
//! after each batch, each idle wait and each save it [`publish`](Watermark::publish)es the
//! value, and a waiter blocks on a condition variable until that value reaches its position,
//! its timeout passes, or the reader [`finish`](Watermark::finish)es. While anyone waits, the
//! reader's idle waits are short ([`Watermark::has_waiters`]), so a waiter hears of progress
//! within about a millisecond of the handler's; nobody polls the watermark itself.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::sync::{AtomicUsize, Ordering};

/// The published low watermark.
#[derive(Debug, Default)]
pub(crate) struct Watermark {
    state: Mutex<State>,
    changed: Condvar,
    /// Threads in `wait_for` (`Relaxed`: a hint for the reader's cadence only).
    waiters: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    value: u64,
    finished: bool,
}

impl Watermark {
    /// A watermark starting at `value` (the loaded checkpoint).
    pub(crate) fn new(value: u64) -> Watermark {
        let watermark = Watermark::default();
        watermark.state.lock().value = value;
        watermark
    }

    /// The reader thread's new low watermark; wakes the waiters when it moved.
    pub(crate) fn publish(&self, value: u64) {
        let mut state = self.state.lock();
        if value > state.value {
            state.value = value;
            drop(state);
            self.changed.notify_all();
        }
    }

    /// The reader has stopped: the watermark moves no more. Wakes every waiter.
    pub(crate) fn finish(&self) {
        self.state.lock().finished = true;
        self.changed.notify_all();
    }

    /// The value published last.
    pub(crate) fn value(&self) -> u64 {
        self.state.lock().value
    }

    /// Whether a thread waits on it now.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0
    }

    /// Waits until the watermark reaches `position` (`true`), or the timeout passes or the
    /// reader finishes short of it (`false`).
    pub(crate) fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now().checked_add(timeout);
        let mut state = self.state.lock();
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let reached = loop {
            if state.value >= position {
                break true;
            }
            if state.finished {
                break false;
            }
            match deadline {
                Some(deadline) => {
                    if self.changed.wait_until(&mut state, deadline).timed_out() {
                        break state.value >= position;
                    }
                }
                None => self.changed.wait(&mut state),
            }
        };
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        reached
    }
}
