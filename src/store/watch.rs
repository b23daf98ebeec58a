//! [`AppendWatch`]: wake-ups after appends, so that a subscription does not poll a quiet store.
//!
//! A wake-up is only a hint. It may come when nothing new is readable (another schema's append,
//! an event still above the commit watermark), and a store may lose one (a dropped listening
//! connection), so a reader always polls as well, at a capped interval. What a hint must never
//! do is hide an event: a reader that reads after every wake-up and after every timeout sees
//! everything.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Waits for appends to a store ([`EventStore::watch`](super::EventStore::watch)).
pub trait AppendWatch: Send {
    /// Returns when an append may have committed since this watch last returned, or when
    /// `timeout` has passed, whichever is first. It may return early for no reason.
    fn wait(&mut self, timeout: Duration);

    /// Takes the wake-ups received so far, without waiting. A reader calls it when it is about
    /// to read anyway (after a read that returned events), so that hints do not pile up while
    /// it is busy: a listening connection nobody reads would fill its socket and then hold
    /// the server's notification queue. Default: nothing to take.
    fn drain(&mut self) {}
}

/// The watch of a store that gives no hints: it sleeps, and the reader polls.
#[derive(Debug, Default)]
pub(crate) struct Sleep;

impl AppendWatch for Sleep {
    fn wait(&mut self, timeout: Duration) {
        std::thread::sleep(timeout);
    }
}

/// An in-process append signal: a generation count that every append bumps.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    generation: Mutex<u64>,
    appended: Condvar,
}

impl Signal {
    /// Wakes every watcher: something was appended.
    pub(crate) fn notify(&self) {
        *self.generation.lock() += 1;
        self.appended.notify_all();
    }

    /// A watch that returns once the generation moves past the one it last saw.
    pub(crate) fn watch(self: &Arc<Self>) -> SignalWatch {
        SignalWatch {
            seen: *self.generation.lock(),
            signal: self.clone(),
        }
    }
}

/// A watch on a [`Signal`].
#[derive(Debug)]
pub(crate) struct SignalWatch {
    signal: Arc<Signal>,
    seen: u64,
}

impl AppendWatch for SignalWatch {
    fn wait(&mut self, timeout: Duration) {
        let mut generation = self.signal.generation.lock();
        if *generation == self.seen {
            // Spurious wake-ups only return early, which the contract allows.
            let _ = self.signal.appended.wait_for(&mut generation, timeout);
        }
        self.seen = *generation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_signal_wakes_a_waiting_watch_and_is_not_missed_before_it_waits() {
        let signal = Arc::new(Signal::default());
        let mut watch = signal.watch();
        // Notified before waiting: the wait returns at once.
        signal.notify();
        let began = Instant::now();
        watch.wait(Duration::from_secs(10));
        assert!(began.elapsed() < Duration::from_secs(5));
        // Notified while waiting.
        let notifier = {
            let signal = signal.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                signal.notify();
            })
        };
        let began = Instant::now();
        watch.wait(Duration::from_secs(10));
        assert!(began.elapsed() < Duration::from_secs(5));
        notifier.join().unwrap();
        // Nothing new: the wait lasts its timeout.
        let began = Instant::now();
        watch.wait(Duration::from_millis(30));
        assert!(began.elapsed() >= Duration::from_millis(30));
    }
}
