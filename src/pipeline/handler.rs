//! [`StreamHandler`]: what a pipeline runs for each stored event: a pure fold that rebuilds a
//! stream's state from its events, and the effects of each event, kept apart.

use crate::store::RecordedEvent;
use crate::StreamId;

/// The per-stream logic a [`Pipeline`](super::Pipeline) runs.
///
/// A stream's state is the fold of its stored events: [`init`](Self::init) makes the state of
/// a stream with no events, [`apply`](Self::apply) folds one event in. For the event at version
/// `v`, [`handle`](Self::handle) sees the fold of versions `0..v`, whatever happened to the
/// process before: the first time a stream is met after a start, a reap, an eviction or a
/// failure, its state is rebuilt by folding its stored events (from the newest usable
/// [snapshot](Self::encode_state) on), so the state never depends on what this process
/// happened to see. `apply` therefore must be a pure function of the state and the event (no
/// effects, no clock, no randomness): it runs again at every rebuild. Effects belong in
/// `handle`, which runs once per event per pipeline run (at least once overall: after a crash
/// the events after the last checkpoint are handled again).
///
/// `handle` returning `Err` or panicking is a failed attempt; after the pipeline's
/// `max_attempts` the event is parked (see the [module docs](super)). `apply` runs after a
/// successful `handle`; a panic in it is logged and the state is rebuilt for the stream's next
/// event (its effects are not repeated).
///
/// Calls for one stream never overlap; calls for different streams run in parallel.
pub trait StreamHandler: Send + Sync + 'static {
    /// The state folded from a stream's events.
    type State: Send + 'static;
    /// What `handle` reports on failure (`String` works).
    type Error: std::fmt::Display + std::fmt::Debug + Send + 'static;

    /// The state of `stream` before its first event.
    fn init(&self, stream: &StreamId) -> Self::State;

    /// Folds `event` into `state`. Pure: it runs again whenever the state is rebuilt.
    fn apply(&self, state: &mut Self::State, event: &RecordedEvent);

    /// The effects of `event`, with its stream's state folded from every earlier event.
    fn handle(&self, state: &Self::State, event: &RecordedEvent) -> Result<(), Self::Error>;

    /// What a failed `handle` means: by default every error is a failed [attempt](ErrorKind::Attempt).
    /// A handler whose errors say more (a dependency that asks to be tried later, input that
    /// no retry can mend) classifies them here. Called once per error, contained: a panic
    /// here counts as an attempt.
    fn error_kind(&self, _error: &Self::Error) -> ErrorKind {
        ErrorKind::Attempt
    }

    /// The state encoded for a snapshot, if this handler keeps snapshots (the pipeline saves
    /// one every [`snapshot_every`](super::PipelineBuilder::snapshot_every) versions).
    /// Default: none.
    fn encode_state(&self, _state: &Self::State) -> Option<serde_json::Value> {
        None
    }

    /// A state decoded from a snapshot `encode_state` made; `None` if it cannot be (then the
    /// snapshot is ignored and the state is folded from older events). Default: none.
    fn decode_state(&self, _stream: &StreamId, _data: &serde_json::Value) -> Option<Self::State> {
        None
    }

    /// Disposes of a state the pipeline no longer keeps in memory (idle, evicted, shut down).
    fn cleanup(&self, _stream: &StreamId, _state: Self::State) {}
}

/// What a [`StreamHandler::handle`] error means for its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A failed attempt: tried again after the backoff until the pipeline's `max_attempts`
    /// are spent, then parked.
    Attempt,
    /// Not an attempt: the event could not be tried now (a dependency asks to be called later:
    /// a full bulkhead, an open circuit breaker, a claim held elsewhere). Tried again after the
    /// backoff, on a timer (the worker moves on meanwhile), as often as it takes; no attempt is
    /// used. Its shard waits with it (the stream's later events, and the other streams that
    /// hash to the same shard, as for any retry); more shards narrow that. In a
    /// [replay](super::Pipeline::replay) it ends the replay with the event still parked, its
    /// record untouched (the report's `still_parked` says so).
    Wait,
    /// No retry can mend it (a command with no route): parked at once, whatever attempts are
    /// left.
    Park,
}
