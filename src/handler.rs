//! [`Handler`]: the user's per-entity logic; [`KeyedHandler`]: the same for streams named by
//! another [`StreamKey`] than [`StreamId`] (an integer or UUID entity id).

use crate::{Event, StreamId, StreamKey};

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
///
/// Streams are named by [`StreamId`]s. For integer or UUID entity ids, implement
/// [`KeyedHandler`] instead; every `Handler` is a `KeyedHandler` whose key is `StreamId`.
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

/// A [`Handler`] whose streams are named by [`Key`](Self::Key): a `u64`, `u32`, `i64`, `i32`,
/// `u128`, [`uuid::Uuid`] or [`StreamId`].
///
/// Everything [`Handler`] says holds, with `Key` in place of `StreamId`: the engine
/// ([`Engine<H>`](crate::Engine)) takes `Event<Payload, Key>`s and hands back the same in its
/// errors, reports and dead letters. A service whose entities have integer ids uses them as
/// they are, without making a text id per event; the queue element is then 24 bytes with a
/// `u64` payload, against 48 with a `StreamId`.
///
/// ```
/// use humpyard::{Engine, Event, KeyedHandler};
///
/// struct Balances;
/// impl KeyedHandler for Balances {
///     type Key = u64; // account number
///     type Payload = i64;
///     type State = i64;
///     type Error = String;
///     fn init(&self, _account: &u64) -> Result<i64, String> { Ok(0) }
///     fn handle(&self, balance: &mut i64, event: &Event<i64, u64>) -> Result<(), String> {
///         *balance += event.payload();
///         Ok(())
///     }
/// }
///
/// let engine = Engine::builder(Balances).workers(2).start()?;
/// engine.try_submit(Event::new(42, 100)).expect("room");
/// engine.shutdown(std::time::Duration::from_secs(5));
/// assert_eq!(engine.metrics().processed, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait KeyedHandler: Send + Sync + 'static {
    /// What names a stream.
    type Key: StreamKey;
    /// What an event carries.
    type Payload: Send + 'static;
    /// The state kept per live entity.
    type State: Send + 'static;
    /// What `init` and `handle` report on failure (`String` works).
    type Error: std::fmt::Display + std::fmt::Debug + Send + 'static;

    /// Makes the state of `key`'s entity, as [`Handler::init`].
    fn init(&self, key: &Self::Key) -> Result<Self::State, Self::Error>;

    /// Handles one event with its entity's state, as [`Handler::handle`].
    fn handle(&self, state: &mut Self::State, event: &Event<Self::Payload, Self::Key>) -> Result<(), Self::Error>;

    /// Disposes of a state, as [`Handler::cleanup`].
    fn cleanup(&self, _key: &Self::Key, _state: Self::State) {}
}

impl<H: Handler> KeyedHandler for H {
    type Key = StreamId;
    type Payload = H::Payload;
    type State = H::State;
    type Error = H::Error;

    #[inline]
    fn init(&self, key: &StreamId) -> Result<H::State, H::Error> {
        Handler::init(self, key)
    }

    #[inline]
    fn handle(&self, state: &mut H::State, event: &Event<H::Payload>) -> Result<(), H::Error> {
        Handler::handle(self, state, event)
    }

    #[inline]
    fn cleanup(&self, key: &StreamId, state: H::State) {
        Handler::cleanup(self, key, state)
    }
}

/// The events of handler `H`: its payload, addressed by its key.
pub(crate) type EventOf<H> = Event<<H as KeyedHandler>::Payload, <H as KeyedHandler>::Key>;
