//! [`EffectError`]: why a command's effect did not happen (now), in types: the route and key it
//! concerns, and whether it is a failed attempt, a wait that uses none, or a refusal no retry
//! mends ([`EffectError::kind`]).

use std::fmt;
use std::time::Duration;

use super::command::{Command, RouteName};
use super::command_handler::BoxError;
use crate::pipeline::ErrorKind;
use crate::store::{IdempotencyKey, StoreError};

/// Why a command's effect did not happen now.
#[derive(Debug)]
#[non_exhaustive]
pub enum EffectError {
    /// No command handler is registered for the command's route: counted, reported, and the
    /// event parked at once with the command ([`ErrorKind::Park`]).
    Unrouted {
        /// The command, whole.
        command: Command,
    },
    /// The route's circuit breaker is open: tried later, no attempt used.
    BreakerOpen {
        /// The route.
        route: RouteName,
    },
    /// Every place of the route's bulkhead is taken: tried later, no attempt used.
    BulkheadFull {
        /// The route.
        route: RouteName,
    },
    /// Another claimant (a try that crashed, another process) holds the effect's key: tried
    /// later, no attempt used.
    ClaimedElsewhere {
        /// The route.
        route: RouteName,
        /// The effect's key.
        key: IdempotencyKey,
        /// How long until that claim expires.
        expires_in: Duration,
    },
    /// The store failed while claiming or completing the key: tried later, no attempt used;
    /// but a store without idempotency keys ([`StoreError::Unsupported`]) or one refusing the
    /// input parks the event at once.
    Store {
        /// The route.
        route: RouteName,
        /// The store's error.
        source: StoreError,
    },
    /// The command handler returned an error: a failed attempt.
    Failed {
        /// The route.
        route: RouteName,
        /// The effect's key.
        key: IdempotencyKey,
        /// The handler's error.
        source: BoxError,
    },
    /// The reaction to the event panicked (no command was performed): a failed attempt.
    ReactionPanicked {
        /// The event's position.
        position: u64,
        /// The panic's message.
        message: String,
    },
    /// The command handler panicked: a failed attempt.
    Panicked {
        /// The route.
        route: RouteName,
        /// The effect's key.
        key: IdempotencyKey,
        /// The panic's message.
        message: String,
    },
}

impl EffectError {
    /// What the error means for the event: a failed attempt ([`Failed`](Self::Failed),
    /// [`Panicked`](Self::Panicked)), a wait ([`BreakerOpen`](Self::BreakerOpen),
    /// [`BulkheadFull`](Self::BulkheadFull), [`ClaimedElsewhere`](Self::ClaimedElsewhere),
    /// [`Store`](Self::Store)), or a refusal ([`Unrouted`](Self::Unrouted)).
    pub fn kind(&self) -> ErrorKind {
        match self {
            EffectError::Unrouted { .. } => ErrorKind::Park,
            // A store without idempotency keys, or input it refuses: no wait mends it.
            EffectError::Store {
                source: StoreError::Unsupported("claim" | "complete" | "fail") | StoreError::InvalidInput(_),
                ..
            } => ErrorKind::Park,
            EffectError::BreakerOpen { .. }
            | EffectError::BulkheadFull { .. }
            | EffectError::ClaimedElsewhere { .. }
            | EffectError::Store { .. } => ErrorKind::Wait,
            EffectError::Failed { .. } | EffectError::Panicked { .. } | EffectError::ReactionPanicked { .. } => {
                ErrorKind::Attempt
            }
        }
    }

    /// The route it concerns (none for a reaction that panicked).
    pub fn route(&self) -> Option<&RouteName> {
        Some(match self {
            EffectError::ReactionPanicked { .. } => return None,
            EffectError::Unrouted { command } => command.route(),
            EffectError::BreakerOpen { route }
            | EffectError::BulkheadFull { route }
            | EffectError::ClaimedElsewhere { route, .. }
            | EffectError::Store { route, .. }
            | EffectError::Failed { route, .. }
            | EffectError::Panicked { route, .. } => route,
        })
    }
}

impl fmt::Display for EffectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EffectError::Unrouted { command } => {
                write!(
                    f,
                    "no command handler for route {}: {}",
                    command.route(),
                    command.canonical_json()
                )
            }
            EffectError::BreakerOpen { route } => write!(f, "route {route}: the circuit breaker is open"),
            EffectError::BulkheadFull { route } => write!(f, "route {route}: every place of the bulkhead is taken"),
            EffectError::ClaimedElsewhere { route, key, expires_in } => write!(
                f,
                "route {route}: the effect {key} is claimed elsewhere (the claim expires in {expires_in:?})"
            ),
            // The cause is the source (see `store/error.rs`, "How humpyard's errors read"). The
            // handler's error is user code: its Display is called where the error is described
            // (contained), not here.
            EffectError::Store { route, .. } => write!(f, "route {route}: the store failed"),
            EffectError::Failed { route, key, .. } => write!(f, "route {route}: the effect {key} failed"),
            EffectError::ReactionPanicked { position, message } => {
                write!(
                    f,
                    "the reaction to the event at position {position} panicked: {message}"
                )
            }
            EffectError::Panicked { route, key, message } => {
                write!(f, "route {route}: the effect {key} panicked: {message}")
            }
        }
    }
}

impl std::error::Error for EffectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EffectError::Store { source, .. } => Some(source),
            EffectError::Failed { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
