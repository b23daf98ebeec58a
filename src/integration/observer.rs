//! [`Observer`]: one hook for what an integration does that an operator wants to hear of
//! ([`Observed`]): breaker transitions, effect failures and waits, unrouted commands, dead
//! letters (parked events), source restarts, store errors.
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
use crate::pipeline::contain;
use crate::resilience::BreakerState;
use crate::store::{ParkedEvent, StoreError};
use crate::sync::{AtomicU64, Ordering};
use crate::{PanicReport, SlowHandler};

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
    /// A reaction (with its effects) has run longer than the engine's slow-handler threshold;
    /// only its shard waits on it.
    SlowHandler {
        /// Which worker and shard, and for how long.
        report: &'a SlowHandler,
    },
}

/// The hook an integration calls with each [`Observed`] event, on the thread where it happened
/// (a worker, a source's thread). Keep it short; it must not block.
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
    observer: Option<Box<dyn Observer>>,
    pub(crate) panics: AtomicU64,
}

impl Hooks {
    pub(crate) fn new(observer: Option<Box<dyn Observer>>) -> Hooks {
        Hooks {
            observer,
            panics: AtomicU64::new(0),
        }
    }

    /// Tells the observer of `event`, contained.
    pub(crate) fn emit(&self, event: &Observed<'_>) {
        let Some(observer) = &self.observer else { return };
        if let Err(message) = contain(|| observer.observe(event)) {
            self.panics.fetch_add(1, Ordering::Relaxed);
            log::error!(message:? = message; "humpyard integration: the observer panicked; it is called again for the next event");
        }
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("observer", &self.observer.is_some())
            .field("panics", &self.panics.load(Ordering::Relaxed))
            .finish()
    }
}
