//! Containment: every call into user code, and the one place its panics are caught, reported
//! and counted.
//!
//! User code is more than the handler's three methods and the hooks: the engine formats the
//! handler's error (`Display`) for a failure's message, and it disposes of user values (the
//! `Drop` of a handled event's payload, of the handler's error, of a dead letter the full
//! default sink discards, of the handler and the hooks when the engine ends). Any of them may
//! panic, and a panic that escaped would unwind a worker in the middle of a run: the event
//! would vanish, the run's tally would be lost, and the accounting identity would break.
//!
//! So every such call goes through [`Containment::run`] or [`Containment::dispose`]: a panic is
//! caught, logged (site, stream and message as escaped fields, R-SEC-3), handed to the panic
//! hook (itself contained: a panicking panic hook is counted, never re-reported), and counted
//! in one counter, [`Metrics::panics`](crate::Metrics::panics).
//!
//! With [`quiet_panics`](crate::EngineBuilder::quiet_panics) on, every contained call is
//! marked for the process's panic hook (`quiet_panics`), which then prints nothing for it: the
//! log line and the counter here are the report.
//!
//! One exception is outside any library's reach: a `Drop` that panics while its thread is
//! already unwinding aborts the process (Rust's rule). A value that may panic in `Drop` should
//! check `std::thread::panicking()` first.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::counters::SharedCounter;
use super::hooks::{PanicHook, PanicReport, PanicSite};
use super::quiet_panics;
use crate::StreamKey;

/// Runs user code without letting a panic escape, and counts the panics it caught.
pub(crate) struct Containment<K> {
    /// The user's panic hook.
    hook: Option<PanicHook<K>>,
    /// Every panic caught, hooks' included: `Metrics::panics`. Bumped only on a panic.
    panics: SharedCounter,
    /// Whether contained calls are marked for the quiet panic hook (`quiet_panics`).
    quiet: bool,
}

impl<K> std::fmt::Debug for Containment<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containment")
            .field("hook", &self.hook.is_some())
            .field("panics", &self.panics.get())
            .field("quiet", &self.quiet)
            .finish()
    }
}

impl<K: StreamKey> Containment<K> {
    /// Containment that reports caught panics to `hook`; with `quiet`, it installs the quiet
    /// panic hook (once per process) and marks every contained call for it.
    pub(crate) fn new(hook: Option<PanicHook<K>>, quiet: bool) -> Containment<K> {
        if quiet {
            quiet_panics::install();
        }
        Containment {
            hook,
            panics: SharedCounter::default(),
            quiet,
        }
    }

    /// Runs `f`, user code at `site` (for `stream`, if any). A panic is caught, reported and
    /// counted; its message comes back as the error.
    #[inline]
    pub(crate) fn run<R>(&self, site: PanicSite, stream: Option<&K>, f: impl FnOnce() -> R) -> Result<R, String> {
        match quiet_panics::catch(self.quiet, f) {
            Ok(value) => Ok(value),
            Err(payload) => Err(self.caught(site, stream, payload)),
        }
    }

    /// Drops `value`, a user value whose `Drop` may panic (contained like [`run`](Self::run)).
    /// Free for types without drop glue.
    #[inline]
    pub(crate) fn dispose<T>(&self, stream: Option<&K>, value: T) {
        if std::mem::needs_drop::<T>() {
            let _ = self.run(PanicSite::Drop, stream, move || drop(value));
        }
    }

    /// How many panics were caught.
    pub(crate) fn panics(&self) -> u64 {
        self.panics.get()
    }

    /// Takes the hook out, for the engine's end (the hook is user code to dispose of).
    pub(crate) fn take_hook(&mut self) -> Option<PanicHook<K>> {
        self.hook.take()
    }

    /// Logs, reports and counts a caught panic; returns its message.
    #[cold]
    fn caught(&self, site: PanicSite, stream: Option<&K>, payload: Box<dyn Any + Send>) -> String {
        let message = panic_message(payload);
        self.panics.incr();
        // A key's text is the crate's own (`StreamKey` is sealed), and the message is quoted
        // and escaped (`{:?}`), so neither can break the line (R-SEC-3).
        let text = stream.map(ToString::to_string);
        match &text {
            Some(text) => log::error!(
                site:? = site, stream:? = Some(text), message:? = message;
                "humpyard caught a panic in {} for stream {text:?}: {message:?}",
                site.in_words()
            ),
            None => log::error!(
                site:? = site, stream:? = text, message:? = message;
                "humpyard caught a panic in {}: {message:?}",
                site.in_words()
            ),
        }
        if let Some(hook) = &self.hook {
            let report = PanicReport {
                site,
                stream: stream.cloned(),
                message: message.clone(),
            };
            if let Err(second) = quiet_panics::catch(self.quiet, || hook(&report)) {
                // The panic hook itself panicked: count it and log it, but do not report it
                // to the same hook again.
                self.panics.incr();
                let message = panic_message(second);
                log::error!(
                    site:? = PanicSite::Hook, message:? = message;
                    "humpyard caught a panic in the panic hook itself: {message:?}"
                );
            }
            // The report (and its copies of the stream and message) is ours: dropping it
            // runs no user code.
        }
        message
    }
}

/// The text of a panic payload. The payload is dropped here, and if dropping it panics too
/// (a payload with a panicking `Drop`), that second payload is leaked rather than allowed to
/// unwind through the caller.
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    };
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
    message
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;
    use crate::sync::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_panicking_panic_hook_is_counted_once_and_not_called_again_for_itself() {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let containment = Containment::new(
            Some(Box::new(move |_: &PanicReport| {
                c.fetch_add(1, Ordering::SeqCst);
                panic!("planned panic in the panic hook");
            })),
            false,
        );
        let result = containment.run(PanicSite::Handle, None, || -> u8 { panic!("planned panic") });
        assert_eq!(result, Err("planned panic".to_owned()));
        assert_eq!(containment.panics(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dispose_contains_a_panicking_drop() {
        struct Loud;
        impl Drop for Loud {
            fn drop(&mut self) {
                panic!("planned panic in Drop");
            }
        }
        let containment = Containment::<crate::StreamId>::new(None, false);
        containment.dispose(None, Loud);
        containment.dispose(None, 7u64);
        assert_eq!(containment.panics(), 1);
    }
}
