//! [`Observer`]: one hook for what an integration does that an operator wants to hear of
//! ([`Observed`]): breaker transitions, effect failures and waits, unrouted commands, dead
//! letters (parked events), source restarts, store errors, the reactor's panics.
//!
//! Every call is contained: a panicking observer is logged and counted
//! ([`IntegrationStats::observer_panics`](super::IntegrationStats::observer_panics)) and called
//! again for the next event. With no observer nothing is lost: each event is counted in
//! [`IntegrationStats`](super::IntegrationStats) and logged either way.

use std::fmt;
use std::time::Duration;

use super::command::{Command, RouteName};
use super::effect_error::EffectError;
use super::source::SourceError;
use crate::pipeline::{contain, Disposing};
use crate::resilience::BreakerState;
use crate::store::{ParkedEvent, StoreError};
use crate::sync::{AtomicU64, Ordering};
use crate::{PanicReport, SlowHandler, StreamId};

/// Something an integration did, as its [`Observer`] hears of it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Observed<'a> {
    /// A route's circuit breaker changed state.
    BreakerTransition {
        /// The route.
        route: &'a RouteName,
        /// The state before.
        from: BreakerState,
        /// The state after.
        to: BreakerState,
    },
    /// An effect failed an attempt (it is retried after a backoff, or its event parked once
    /// the attempts are spent: see [`DeadLetter`](Self::DeadLetter)).
    EffectFailed {
        /// The error ([`EffectError::Failed`], [`EffectError::Panicked`] or
        /// [`EffectError::ReactionPanicked`]).
        error: &'a EffectError,
    },
    /// An effect could not run now and waits, using no attempt (an open breaker, a full
    /// bulkhead, a claim held elsewhere, a store error).
    EffectWaiting {
        /// Why.
        error: &'a EffectError,
    },
    /// A command with no route. Outbound, its event is parked with it at once; inbound, it is
    /// handed back to its source.
    Unrouted {
        /// The command.
        command: &'a Command,
        /// The position of the event whose reaction emitted it (`None` inbound).
        position: Option<u64>,
    },
    /// An event was parked: its effects failed every attempt, or were refused, or an earlier
    /// event of its stream is parked.
    DeadLetter {
        /// The parked event's record.
        parked: &'a ParkedEvent,
    },
    /// An inbound command whose effect failed every attempt; handed back to its source.
    InboundDeadLetter {
        /// The source's name.
        source: &'a str,
        /// The command.
        command: &'a Command,
        /// The last failure.
        error: &'a EffectError,
    },
    /// A source failed (returned an error or panicked) and is restarted after `delay`.
    SourceRestart {
        /// The source's name.
        source: &'a str,
        /// Restarts so far, this one included.
        restarts: u64,
        /// How long it waits before the restart.
        delay: Duration,
        /// What went wrong.
        error: &'a SourceError,
    },
    /// A store call of the integration failed (a claim, a completion; pool errors included).
    StoreError {
        /// The error.
        error: &'a StoreError,
    },
    /// The pipeline's engine caught a panic outside the reaction (a hook, a `Drop`; a reaction
    /// that panics is an [`EffectFailed`](Self::EffectFailed)).
    Panic {
        /// Where, and its message.
        report: &'a PanicReport,
    },
    /// A [`Reactor`](super::Reactor) method other than `react` panicked (a panicking `react`
    /// is an [`EffectFailed`](Self::EffectFailed)). The pipeline handles it as any stream
    /// handler's panic: one while the state is rebuilt (`init`, `apply`) parks the event
    /// ([`DeadLetter`](Self::DeadLetter) follows); one in `apply` after a handled event drops
    /// the state, rebuilt for the next event; one in `decode_state` is a snapshot that does
    /// not decode (the state is rebuilt without it); one in `encode_state` skips the snapshot;
    /// one in `cleanup` is counted (and, when the engine reaps the stream, reported as a
    /// [`Panic`](Self::Panic) too).
    ReactorPanicked {
        /// Which method.
        method: ReactorMethod,
        /// The stream it ran for (`None` for `encode_state`, which is not told).
        stream: Option<&'a StreamId>,
        /// The panic's message.
        message: &'a str,
    },
    /// A reaction (with its effects) has run longer than the engine's slow-handler threshold;
    /// only its shard waits on it.
    SlowHandler {
        /// Which worker and shard, and for how long.
        report: &'a SlowHandler,
    },
}

/// A [`Reactor`](super::Reactor) method, as [`Observed::ReactorPanicked`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReactorMethod {
    /// [`Reactor::init`](super::Reactor::init).
    Init,
    /// [`Reactor::apply`](super::Reactor::apply).
    Apply,
    /// [`Reactor::encode_state`](super::Reactor::encode_state).
    EncodeState,
    /// [`Reactor::decode_state`](super::Reactor::decode_state).
    DecodeState,
    /// [`Reactor::cleanup`](super::Reactor::cleanup).
    Cleanup,
}

/// The hook an integration calls with each [`Observed`] event, on the thread where it happened
/// (a worker, a source's thread, or the thread that shuts the integration down, for the store
/// errors of its last completions). Keep it short; it must not block.
///
/// Closures `Fn(&Observed<'_>)` are observers.
pub trait Observer: Send + Sync + 'static {
    /// Hears of `event`.
    fn observe(&self, event: &Observed<'_>);
}

impl<F: Fn(&Observed<'_>) + Send + Sync + 'static> Observer for F {
    fn observe(&self, event: &Observed<'_>) {
        self(event);
    }
}

/// The observer, if any, and the count of its panics.
pub(crate) struct Hooks {
    observer: Option<Disposing<Box<dyn Observer>>>,
    /// Observer calls that panicked.
    pub(crate) panics: AtomicU64,
    /// The user's own hooks passed through beside the observer (a breaker's `on_transition`,
    /// the pipeline's `on_panic`, `on_slow_handler`, `on_parked`) that panicked.
    pub(crate) hook_panics: AtomicU64,
}

impl Hooks {
    pub(crate) fn new(observer: Option<Box<dyn Observer>>) -> Hooks {
        Hooks {
            observer: observer.map(Disposing::new),
            panics: AtomicU64::new(0),
            hook_panics: AtomicU64::new(0),
        }
    }

    /// Tells the observer of `event`, contained.
    pub(crate) fn emit(&self, event: &Observed<'_>) {
        let Some(observer) = &self.observer else { return };
        if let Err(message) = contain(|| observer.observe(event)) {
            self.panics.fetch_add(1, Ordering::Relaxed);
            log::error!(
                message:? = message;
                "humpyard integration: the observer panicked ({message:?}); it is called again for the next event"
            );
        }
    }

    /// Counts and logs a panic of the user's own hook at `site` (caught by the caller), with
    /// the panic's `message`.
    pub(crate) fn hook_panicked(&self, site: &str, message: &str) {
        self.hook_panics.fetch_add(1, Ordering::Relaxed);
        log::error!(
            site = site;
            "humpyard integration: a user hook, {site}, panicked ({message:?}); the observer still hears of the event"
        );
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("observer", &self.observer.is_some())
            .field("panics", &self.panics.load(Ordering::Relaxed))
            .field("hook_panics", &self.hook_panics.load(Ordering::Relaxed))
            .finish()
    }
}
