//! [`Handler`]: the user's per-entity logic.

use crate::{Event, StreamId};

/// The per-entity logic the engine runs.
///
/// For each stream the engine calls [`init`](Handler::init) once when the stream's first event
/// arrives (or arrives again after the entity was reaped, evicted or lost to a panic), then
/// [`handle`](Handler::handle) for each of the stream's events in the order they were accepted,
/// one at a time, and finally [`cleanup`](Handler::cleanup) exactly once for every state `init`
/// made: when the entity is reaped for idleness, evicted by the entity cap, dropped after a
/// panic, or at shutdown.
///
/// Calls for different streams run in parallel on the engine's worker threads, so the handler is
/// shared (`Sync`); calls for one stream never overlap.
///
/// A panic in any of the three methods is caught and counted; the worker thread lives on.
pub trait Handler: Send + Sync + 'static {
    /// What an event carries.
    type Payload: Send + 'static;
    /// The state kept per live entity.
    type State: Send + 'static;
    /// What `init` and `handle` report on failure (`String` works).
    type Error: std::fmt::Display + std::fmt::Debug + Send + 'static;

    /// Makes the state of `stream`'s entity. An `Err` fails the event that needed it
    /// ([`Failure::Init`](crate::Failure::Init)); it is retried like a failed `handle`.
    fn init(&self, stream: &StreamId) -> Result<Self::State, Self::Error>;

    /// Handles one event with its entity's state. An `Err` or a panic is retried up to the
    /// engine's `max_attempts`, then the event is dead-lettered.
    fn handle(&self, state: &mut Self::State, event: &Event<Self::Payload>) -> Result<(), Self::Error>;

    /// Disposes of a state; called exactly once for every state `init` made.
    fn cleanup(&self, _stream: &StreamId, _state: Self::State) {}
}
