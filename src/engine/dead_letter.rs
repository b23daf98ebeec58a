//! [`DeadLetter`] and [`Failure`]: an event that failed for good, and why.

use std::fmt;

use crate::Event;

/// Why handling an event failed. The texts come from the handler's error's `Display` or the
/// panic's message; they are untrusted and are only ever logged as escaped fields (R-SEC-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `init` returned an error while making the entity's state.
    Init(String),
    /// `handle` returned an error.
    Handler(String),
    /// `init` or `handle` panicked; the text is the panic message.
    Panic(String),
}

impl Failure {
    /// The failure's message.
    pub fn message(&self) -> &str {
        match self {
            Failure::Init(m) | Failure::Handler(m) | Failure::Panic(m) => m,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Init(m) => write!(f, "init failed: {m:?}"),
            Failure::Handler(m) => write!(f, "handler failed: {m:?}"),
            Failure::Panic(m) => write!(f, "panicked: {m:?}"),
        }
    }
}

impl std::error::Error for Failure {}

/// An event that failed `max_attempts` times, with the last failure.
///
/// Given to the `on_dead_letter` hook; without a hook, kept in the engine's dead-letter buffer
/// (see [`Engine::take_dead_letters`](crate::Engine::take_dead_letters)).
pub struct DeadLetter<P> {
    /// The event, handed back.
    pub event: Event<P>,
    /// The last attempt's failure.
    pub failure: Failure,
    /// How many times the handler was called for it (the first call included).
    pub attempts: u32,
}

impl<P> fmt::Debug for DeadLetter<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("stream", self.event.stream())
            .field("failure", &self.failure)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}
