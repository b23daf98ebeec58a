//! [`Reactor`]: a user's reaction to each stored event, with its stream's rebuilt state at hand,
//! as commands; and [`Outbound`], the pipeline handler that performs them.
//!
//! For the event at `position`, the `index`th command's effect runs under the key
//! [`effect_key`](super::effect_key)`(subscriber, position, index)`, claimed before it runs and
//! completed after, so a retry, a replay after a crash, a parked event's replay, or another
//! process replaying the position skips every effect completed already (R-INT-2). The commands
//! of one event run in order; a failure stops there, and the retry reacts again and skips
//! those completed. So `react` must be deterministic: the same state and event give the same
//! commands in the same order.
//!
//! Before any runs, every command's route is checked: a command with no route performs none of
//! its event's effects and parks the event at once, with the command in the parked record's
//! message (R-INT-1).

use std::sync::Arc;
use std::time::Duration;

use super::command::Command;
use super::effect_error::EffectError;
use super::effect_key::effect_key;
use super::observer::ReactorMethod;
use super::routes::Router;
use crate::pipeline::{contain, Disposing, ErrorKind, StreamHandler};
use crate::store::RecordedEvent;
use crate::StreamId;

/// A reaction to stored events: a state folded from each stream's events, and the commands
/// each event causes. See the [module docs](super).
///
/// Its state works as a [`StreamHandler`]'s: `init` and `apply` are a pure fold, rebuilt from
/// the store whenever needed; `react` sees the fold of every earlier event of the stream.
pub trait Reactor: Send + Sync + 'static {
    /// The state folded from a stream's events.
    type State: Send + 'static;

    /// The state of `stream` before its first event.
    fn init(&self, stream: &StreamId) -> Self::State;

    /// Folds `event` into `state`. Pure: it runs again whenever the state is rebuilt.
    fn apply(&self, state: &mut Self::State, event: &RecordedEvent);

    /// The commands `event` causes, with its stream's state before it. Deterministic: a retry
    /// calls it again and skips the effects completed already by their index.
    fn react(&self, state: &Self::State, event: &RecordedEvent) -> Vec<Command>;

    /// As [`StreamHandler::encode_state`]. Default: none.
    fn encode_state(&self, _state: &Self::State) -> Option<serde_json::Value> {
        None
    }

    /// As [`StreamHandler::decode_state`]. Default: none.
    fn decode_state(&self, _stream: &StreamId, _data: &serde_json::Value) -> Option<Self::State> {
        None
    }

    /// As [`StreamHandler::cleanup`].
    fn cleanup(&self, _stream: &StreamId, _state: Self::State) {}
}

/// The [`StreamHandler`] an [`Integration`](super::Integration)'s pipeline runs: a [`Reactor`]'s
/// commands performed through the routes. Its errors are [`EffectError`]s, classified by
/// [`EffectError::kind`].
pub struct Outbound<R> {
    // User code: dropped contained wherever the pipeline's handler is dropped (a worker, or
    // the caller of a start that failed).
    reactor: Disposing<R>,
    router: Arc<Router>,
    subscriber: StreamId,
}

impl<R> Outbound<R> {
    pub(crate) fn new(reactor: R, router: Arc<Router>, subscriber: StreamId) -> Outbound<R> {
        Outbound {
            reactor: Disposing::new(reactor),
            router,
            subscriber,
        }
    }

    /// The reactor.
    pub fn reactor(&self) -> &R {
        &self.reactor
    }
}

impl<R: Reactor> Outbound<R> {
    /// Runs the reactor's `method`; a panic is reported to the observer, then passed on to
    /// the pipeline, which handles it as any stream handler's (a panic while the state is
    /// rebuilt parks the event; one in `apply` after a handled event rebuilds the state).
    fn watched<T>(&self, method: ReactorMethod, stream: Option<&StreamId>, f: impl FnOnce() -> T) -> T {
        match contain(f) {
            Ok(value) => value,
            Err(message) => {
                self.router.reactor_method_panicked(method, stream, &message);
                // No panic hook runs again: the pipeline catches this as the same panic.
                std::panic::resume_unwind(Box::new(message))
            }
        }
    }
}

impl<R> std::fmt::Debug for Outbound<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("subscriber", &self.subscriber)
            .finish_non_exhaustive()
    }
}

impl<R: Reactor> StreamHandler for Outbound<R> {
    type State = R::State;
    type Error = EffectError;

    fn init(&self, stream: &StreamId) -> R::State {
        self.watched(ReactorMethod::Init, Some(stream), || self.reactor.init(stream))
    }

    fn apply(&self, state: &mut R::State, event: &RecordedEvent) {
        self.watched(ReactorMethod::Apply, Some(&event.stream), || {
            self.reactor.apply(state, event)
        });
    }

    fn handle(&self, state: &R::State, event: &RecordedEvent) -> Result<(), EffectError> {
        let commands = match contain(|| self.reactor.react(state, event)) {
            Ok(commands) => commands,
            Err(message) => return Err(self.router.reaction_panicked(event.position, message)),
        };
        if let Some(unrouted) = commands.iter().find(|c| !self.router.has_route(c.route())) {
            return Err(self.router.unrouted(unrouted, Some(event.position)));
        }
        for (index, command) in commands.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let key = effect_key(&self.subscriber, event.position, index);
            self.router
                .perform(command, &key, true, Some(event.position), Duration::ZERO, 1)?;
        }
        Ok(())
    }

    fn error_kind(&self, error: &EffectError) -> ErrorKind {
        error.kind()
    }

    fn encode_state(&self, state: &R::State) -> Option<serde_json::Value> {
        self.watched(ReactorMethod::EncodeState, None, || self.reactor.encode_state(state))
    }

    fn decode_state(&self, stream: &StreamId, data: &serde_json::Value) -> Option<R::State> {
        self.watched(ReactorMethod::DecodeState, Some(stream), || {
            self.reactor.decode_state(stream, data)
        })
    }

    fn cleanup(&self, stream: &StreamId, state: R::State) {
        self.watched(ReactorMethod::Cleanup, Some(stream), || {
            self.reactor.cleanup(stream, state)
        });
    }
}
