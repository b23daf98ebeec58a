//! Quiet panics: an opt-in process panic hook that stays silent for the panics an engine
//! contains ([`EngineBuilder::quiet_panics`](crate::EngineBuilder::quiet_panics)).
//!
//! Rust calls the process's panic hook where a panic starts, before unwinding, so catching the
//! panic later does not take back what the hook printed: the default hook writes the message
//! (and, with `RUST_BACKTRACE`, a backtrace) to stderr for every panic, contained or not. An
//! engine whose handler fails on many events prints one such report a panic, though each is
//! already caught, logged and counted (`containment`).
//!
//! An engine with the option on installs, once per process, a hook that wraps the hook in
//! place before it (`take_hook`, then `set_hook`). While a thread runs a call such an engine
//! contains, a thread-local flag says so, and the hook passes over a panic raised then; every
//! other panic goes to the previous hook, as before. An engine without the option (the default)
//! installs nothing and never sets the flag, so its contained panics print as they always did,
//! and its hot path gains only a branch on a field it reads anyway.
//!
//! The flag is std's `thread_local!`, not the sync facade's: the hook reads it on whatever
//! thread panics, including threads no loom model runs. It orders nothing between threads; a
//! thread reads and writes only its own. The once-per-process installation is a
//! `std::sync::Once` for the same reason: it guards the process's hook, not engine state.

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

std::thread_local! {
    /// Whether this thread is inside a call a quiet engine contains. Set by [`catch`] for the
    /// length of the call and restored after it (calls nest: a hook run while another
    /// contained call is on the stack).
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// Installs the quiet hook in front of the process's current one, once per process.
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_with`: a panic while this thread's locals are being destroyed is not ours.
            if !CONTAINED.try_with(Cell::get).unwrap_or(false) {
                previous(info);
            }
        }));
    });
}

/// Runs `f` and catches its panic, like `catch_unwind`; with `quiet`, the thread is marked as
/// inside a contained call while `f` runs, so the quiet hook passes over a panic it raises.
#[inline]
pub(crate) fn catch<R>(quiet: bool, f: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send>> {
    // Built with `panic = "abort"`, nothing is caught: the report is the only word left.
    if !quiet || cfg!(panic = "abort") {
        return catch_unwind(AssertUnwindSafe(f));
    }
    // `try_with`: an engine used from a thread-local's destructor has no flag left to set; its
    // panics then go to the previous hook.
    let was = CONTAINED.try_with(|c| c.replace(true)).ok();
    let result = catch_unwind(AssertUnwindSafe(f));
    if let Some(was) = was {
        let _ = CONTAINED.try_with(|c| c.set(was));
    }
    result
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_set_inside_and_restored_after_also_when_nested() {
        let now = || CONTAINED.with(Cell::get);
        assert!(!now());
        let inner = catch(true, || {
            assert!(now());
            let nested = catch(true, || assert!(now()));
            assert!(nested.is_ok());
            assert!(now(), "a nested call leaves the outer mark in place");
            catch(false, || {
                assert!(now(), "a loud call inside a quiet one is still inside it")
            })
            .unwrap();
        });
        assert!(inner.is_ok());
        assert!(!now());
        assert!(catch(false, now).is_ok_and(|inside| !inside));
    }
}
