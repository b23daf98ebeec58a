//! Optional observer hooks and what they are given.
//!
//! Every hook is optional (R-OBS-1): without one, counters are still kept and dead letters go
//! to the engine's default buffer. Every call of a hook goes through the engine's containment
//! (`containment`): a hook that panics is caught and counted in `Metrics::panics`, and is
//! still called for later events.

use std::time::Duration;

use crate::StreamId;

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
    /// In the `Display` of the handler's error, formatting it for the failure's message.
    Display,
    /// In the `Drop` of a value the engine disposed of: a handled event's payload, the
    /// handler's error, a discarded dead letter, the handler or a hook when the engine ends.
    Drop,
}

impl PanicSite {
    /// Where the panic happened, in words, for a log line.
    pub(crate) fn in_words(self) -> &'static str {
        match self {
            PanicSite::Init => "the handler's init",
            PanicSite::Handle => "the handler's handle",
            PanicSite::Cleanup => "the handler's cleanup",
            PanicSite::Hook => "an engine hook",
            PanicSite::Display => "the Display of the handler's error",
            PanicSite::Drop => "the Drop of a user value",
        }
    }
}

/// A caught panic, given to the `on_panic` hook.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PanicReport<K = StreamId> {
    /// Where it happened.
    pub site: PanicSite,
    /// The stream being handled, if any.
    pub stream: Option<K>,
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

pub(crate) type PanicHook<K = StreamId> = Box<dyn Fn(&PanicReport<K>) + Send + Sync>;
pub(crate) type SlowHandlerHook = Box<dyn Fn(&SlowHandler) + Send + Sync>;
pub(crate) type RemovalHook<K> = Box<dyn Fn(&K, Removal) + Send + Sync>;
/// Called by the supervisor on every tick with the engine's counters (feature `metrics`): the
/// engine's own export and, for a pipeline or an integration, theirs (see `crate::export`).
#[cfg(feature = "metrics")]
pub(crate) type ExportHook = Box<dyn Fn(&super::metrics::Metrics) + Send + Sync>;
