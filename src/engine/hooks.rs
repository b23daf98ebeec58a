//! Optional observer hooks, and running user code without letting a panic escape.
//!
//! Every hook is optional (R-OBS-1): without one, counters are still kept and dead letters go
//! to the engine's default buffer. A hook that panics is caught and counted in
//! `Metrics::panics`, and is still called for later events.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::{DeadLetter, StreamId};

/// Where a caught panic happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicSite {
    /// In [`Handler::init`](crate::Handler::init).
    Init,
    /// In [`Handler::handle`](crate::Handler::handle).
    Handle,
    /// In [`Handler::cleanup`](crate::Handler::cleanup).
    Cleanup,
    /// In one of the engine's hooks.
    Hook,
}

/// A caught panic, given to the `on_panic` hook.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PanicReport {
    /// Where it happened.
    pub site: PanicSite,
    /// The stream being handled, if any.
    pub stream: Option<StreamId>,
    /// The panic's message (untrusted text).
    pub message: String,
}

/// Why an entity's state was cleaned up, given to the `on_entity_removed` hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Removal {
    /// Idle for `idle_timeout`.
    Reaped,
    /// Least recently used when `max_entities` was reached.
    Evicted,
    /// Its `handle` panicked; the next event makes a fresh state.
    Panicked,
    /// The engine shut down.
    Shutdown,
}

/// A handler call that has run longer than the slow-handler threshold, given to the
/// `on_slow_handler` hook once per such call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SlowHandler {
    /// The worker thread's index.
    pub worker: usize,
    /// The shard it is running (only this shard waits on the call).
    pub shard: usize,
    /// How long the call has run, at least.
    pub running_for: Duration,
}

pub(crate) type DeadLetterHook<P> = Box<dyn Fn(DeadLetter<P>) + Send + Sync>;
pub(crate) type PanicHook = Box<dyn Fn(&PanicReport) + Send + Sync>;
pub(crate) type SlowHandlerHook = Box<dyn Fn(&SlowHandler) + Send + Sync>;
pub(crate) type RemovalHook = Box<dyn Fn(&StreamId, Removal) + Send + Sync>;

/// The hooks the builder was given.
pub(crate) struct Hooks<P> {
    pub(crate) dead_letter: Option<DeadLetterHook<P>>,
    pub(crate) panic: Option<PanicHook>,
    pub(crate) slow_handler: Option<SlowHandlerHook>,
    pub(crate) entity_removed: Option<RemovalHook>,
}

impl<P> Default for Hooks<P> {
    fn default() -> Self {
        Hooks {
            dead_letter: None,
            panic: None,
            slow_handler: None,
            entity_removed: None,
        }
    }
}

impl<P> fmt::Debug for Hooks<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("dead_letter", &self.dead_letter.is_some())
            .field("panic", &self.panic.is_some())
            .field("slow_handler", &self.slow_handler.is_some())
            .field("entity_removed", &self.entity_removed.is_some())
            .finish()
    }
}

/// Runs `f`, catching a panic. On a panic, returns its message.
#[inline]
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(panic_message)
}

/// The text of a panic payload. The payload is dropped here, and if dropping it panics too
/// (a payload with a panicking `Drop`), that second payload is leaked rather than allowed to
/// unwind through the worker.
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
