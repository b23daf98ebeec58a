//! [`Tracked`]: the [`Handler`] a pipeline's engine runs around the user's [`StreamHandler`]:
//! each stream's state rebuilt from the store when needed, each event's attempts counted, an
//! event that fails its last attempt parked with its stream, and each position marked fully
//! processed for the checkpoint.
//!
//! # Per event (on the thread that runs its stream)
//!
//! 1. If the stream is parked (an earlier event of it is), the event is parked behind the first
//!    one, not handled; its position is done.
//! 2. The state is made the fold of versions `0..v` (`rehydrate`): kept from the previous event
//!    if that was version `v - 1`, else rebuilt from the store.
//! 3. `handle`; `Ok`: `apply`, maybe a snapshot, the position is done. `Err` or a panic: a
//!    failed attempt, counted in the entity; the engine retries it after its backoff; the last
//!    attempt parks it (and its stream), and its position is done.
//!
//! A store error in steps 1-3 (reading the stream, loading a snapshot, parking) is not an
//! attempt: `handle` returns [`TrackedError::Store`], the engine's backoff runs, and the same
//! step is tried again (the engine's own attempt limit is set out of reach; attempts are
//! counted here). A position is marked done only after what it needs is durable (parked) or
//! done (handled), so a checkpoint never passes an event a crash could lose.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::handler::{ErrorKind, StreamHandler};
use super::parking::{ParkedStreams, ResumeRequest};
use super::progress::Progress;
use super::rehydrate;
use super::stats::Counters;
use crate::engine::panic_message;
use crate::error_chain::{text_of, Chain};
use crate::store::{EventStore, ParkKind, ParkedEvent, RecordedEvent, Snapshot, StoreError};
use crate::sync::Ordering;
use crate::{Event, Handler, StreamId};

/// A parked-event hook.
pub(crate) type ParkHook = Box<dyn Fn(&ParkedEvent) + Send + Sync>;

/// What a pipeline's engine carries: a stored event, or a request to resume a parked stream.
pub(crate) enum Delivery {
    /// An event read from the store.
    Event(RecordedEvent),
    /// Replay (after an optional discard) the parked events of the stream it is sent to.
    Resume(Arc<ResumeRequest>),
}

/// What the pipeline's threads share with the handler.
pub(crate) struct Context {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) subscriber: String,
    pub(crate) progress: Arc<Progress>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) parked: ParkedStreams,
    pub(crate) on_parked: Option<ParkHook>,
    /// Handler calls per event before it is parked.
    pub(crate) max_attempts: u32,
    /// Save a snapshot after every `n`th version (0: never), with this state version.
    pub(crate) snapshot_every: u64,
    pub(crate) state_version: u32,
}

impl Context {
    /// Parks `parked` durably; whether a row was written (an event parked behind another
    /// that is parked already, read again after a restart, writes nothing). Counted.
    pub(crate) fn park(&self, parked: &ParkedEvent) -> Result<bool, StoreError> {
        let written = self.store.park(parked)?;
        if written {
            self.counters.parked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(written)
    }

    /// Tells the hook of a parked event (contained: a panicking hook is logged and counted,
    /// and the event stays parked).
    pub(crate) fn notify(&self, parked: &ParkedEvent) {
        if let Some(hook) = &self.on_parked {
            if let Err(message) = contain(|| hook(parked)) {
                self.counters.panics.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    subscriber = self.subscriber.as_str(), position = parked.position;
                    "humpyard pipeline {:?}: the parked-event hook panicked for stream {:?} at position {} ({message:?}); the event stays parked",
                    self.subscriber, parked.stream.as_str(), parked.position
                );
            }
        }
    }

    /// A parked-event record for `event`.
    pub(crate) fn parked_event(
        &self,
        event: &RecordedEvent,
        attempts: u32,
        kind: ParkKind,
        message: String,
    ) -> ParkedEvent {
        ParkedEvent {
            subscriber: self.subscriber.clone(),
            position: event.position,
            stream: event.stream.clone(),
            version: event.version,
            attempts,
            kind,
            message: message.replace('\0', "\u{fffd}"),
            parked_at: std::time::SystemTime::now(),
        }
    }
}

/// One stream's entity in the pipeline's engine.
pub(crate) struct Entity<S> {
    /// The fold of versions `0..next_version`; `None` until (re)built.
    pub(crate) state: Option<S>,
    pub(crate) next_version: u64,
    /// The event being retried, its failed attempts, and, once they are all spent, the park
    /// still to be written (a store error held it up).
    failing: Option<Failing>,
}

struct Failing {
    position: u64,
    attempts: u32,
    park: Option<(ParkKind, String)>,
}

/// Why a call of [`Tracked`] did not finish; the engine retries it after its backoff.
#[derive(Debug)]
pub(crate) enum TrackedError<E> {
    /// The user's handler returned an error (an attempt, counted).
    Handler(E),
    /// The user's handler returned an error it classified [`ErrorKind::Wait`] (not an attempt).
    Wait(E),
    /// The user's code panicked (an attempt, counted).
    Panic(String),
    /// The store did not answer (not an attempt).
    Store(StoreError),
}

impl<E: std::fmt::Display + 'static> std::fmt::Display for TrackedError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Text, not an error type: each carries its whole chain (`error_chain`).
            TrackedError::Handler(e) => f.write_str(&text_of(e)),
            TrackedError::Wait(e) => write!(f, "waiting: {}", text_of(e)),
            TrackedError::Panic(message) => write!(f, "panicked: {message}"),
            TrackedError::Store(e) => write!(f, "the store: {}", Chain(e)),
        }
    }
}

/// The engine's handler in a pipeline. See the module docs.
pub(crate) struct Tracked<H> {
    pub(crate) inner: H,
    pub(crate) ctx: Arc<Context>,
}

impl<H: StreamHandler> Handler for Tracked<H> {
    type Payload = Delivery;
    type State = Entity<H::State>;
    type Error = TrackedError<H::Error>;

    fn init(&self, _stream: &StreamId) -> Result<Self::State, Self::Error> {
        Ok(Entity {
            state: None,
            next_version: 0,
            failing: None,
        })
    }

    fn handle(&self, entity: &mut Self::State, event: &Event<Delivery>) -> Result<(), Self::Error> {
        let result = match event.payload() {
            Delivery::Event(recorded) => self.handle_event(entity, recorded),
            Delivery::Resume(request) => super::parking::resume(self, entity, event.stream(), request),
        };
        if let Err(TrackedError::Store(error)) = &result {
            self.ctx.counters.store_retries.fetch_add(1, Ordering::Relaxed);
            let error = crate::error_chain::Chain(error).to_string();
            log::warn!(
                subscriber = self.ctx.subscriber.as_str(), stream = event.stream().as_str(), error:? = error;
                "humpyard pipeline {:?}: the store failed while rebuilding stream {:?}'s state or parking its event ({error:?}); trying again after a backoff",
                self.ctx.subscriber, event.stream().as_str()
            );
        }
        result
    }

    fn cleanup(&self, stream: &StreamId, entity: Self::State) {
        if let Some(state) = entity.state {
            self.inner.cleanup(stream, state);
        }
    }
}

impl<H: StreamHandler> Tracked<H> {
    fn handle_event(&self, entity: &mut Entity<H::State>, event: &RecordedEvent) -> Result<(), TrackedError<H::Error>> {
        let ctx = &*self.ctx;
        if let Some(head) = ctx.parked.head(&event.stream) {
            if event.position == head {
                // Read again after a restart: it is parked already.
                ctx.progress.done(event.position);
                return Ok(());
            }
            if event.position > head {
                let message = format!("behind the parked event at position {head}");
                let parked = ctx.parked_event(event, 0, ParkKind::Behind, message);
                if ctx.park(&parked).map_err(TrackedError::Store)? {
                    ctx.notify(&parked);
                }
                self.drop_state(entity, &event.stream);
                ctx.progress.done(event.position);
                return Ok(());
            }
            // Below the first parked event: it was handled before that one failed; a read
            // after a restart hands it over again, and it is handled again (at least once).
        }
        if let Some(failing) = entity.failing.as_ref().filter(|f| f.position == event.position) {
            if let Some((kind, message)) = failing.park.clone() {
                // Every attempt failed; only the park is left (the store failed it before).
                return self.park_failed(entity, event, kind, message);
            }
        }
        if let Err(failure) = self.attempt(entity, event) {
            return self.failed(entity, event, failure);
        }
        entity.failing = None;
        self.fold_in(entity, event);
        ctx.counters.handled.fetch_add(1, Ordering::Relaxed);
        ctx.progress.done(event.position);
        Ok(())
    }

    /// Rebuilds the state if needed, then calls `handle`.
    pub(crate) fn attempt(
        &self,
        entity: &mut Entity<H::State>,
        event: &RecordedEvent,
    ) -> Result<(), Failure<H::Error>> {
        match entity.state.as_mut() {
            Some(_) if entity.next_version == event.version => {}
            Some(state) if entity.next_version < event.version => {
                // Versions this pipeline did not handle (its filter left them out): fold them in.
                let folded = rehydrate::fold(self, state, &event.stream, &mut entity.next_version, event.version);
                if let Err(failure) = folded {
                    if matches!(failure, Failure::Panic(..)) {
                        self.drop_state(entity, &event.stream);
                    }
                    return Err(failure);
                }
            }
            _ => {
                // None, or ahead of the event (handled again after a restart or a rewind).
                self.drop_state(entity, &event.stream);
                let state = rehydrate::rebuild(self, &event.stream, event.version)?;
                entity.state = Some(state);
                entity.next_version = event.version;
            }
        }
        let state = entity.state.as_ref().expect("rebuilt above");
        match contain(|| self.inner.handle(state, event)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.classify(e, &event.stream)),
            Err(message) => Err(Failure::Panic(ParkKind::Panic, message)),
        }
    }

    /// What the handler says `error` means (its `error_kind`, contained: a panic there makes
    /// it an attempt).
    fn classify(&self, error: H::Error, stream: &StreamId) -> Failure<H::Error> {
        match contain(|| self.inner.error_kind(&error)) {
            Ok(ErrorKind::Attempt) => Failure::Handler(error),
            Ok(ErrorKind::Wait) => Failure::Wait(error),
            Ok(ErrorKind::Park) => Failure::Refused(error),
            Err(message) => {
                self.caught("error_kind", stream, &message);
                Failure::Handler(error)
            }
        }
    }

    /// A failed attempt: counted; the last one parks the event. A wait is no attempt; a
    /// refusal parks the event at once.
    fn failed(
        &self,
        entity: &mut Entity<H::State>,
        event: &RecordedEvent,
        failure: Failure<H::Error>,
    ) -> Result<(), TrackedError<H::Error>> {
        let mut last = false;
        let (kind, error) = match failure {
            Failure::Store(e) => return Err(TrackedError::Store(e)),
            Failure::Wait(e) => {
                self.ctx.counters.waits.fetch_add(1, Ordering::Relaxed);
                return Err(TrackedError::Wait(e));
            }
            Failure::Handler(e) => (ParkKind::Handler, TrackedError::Handler(e)),
            Failure::Refused(e) => {
                last = true;
                (ParkKind::Refused, TrackedError::Handler(e))
            }
            Failure::Panic(kind, message) => {
                // The state may be half-folded: rebuild it for the next attempt.
                self.drop_state(entity, &event.stream);
                (kind, TrackedError::Panic(message))
            }
        };
        let attempts = match &entity.failing {
            Some(f) if f.position == event.position => f.attempts + 1,
            _ => 1,
        };
        entity.failing = Some(Failing {
            position: event.position,
            attempts,
            park: None,
        });
        if attempts < self.ctx.max_attempts && !last {
            return Err(error);
        }
        let message = describe(error);
        self.park_failed(entity, event, kind, message)
    }

    /// Parks an event whose attempts are spent, and with it its stream.
    fn park_failed(
        &self,
        entity: &mut Entity<H::State>,
        event: &RecordedEvent,
        kind: ParkKind,
        message: String,
    ) -> Result<(), TrackedError<H::Error>> {
        let ctx = &*self.ctx;
        let attempts = entity.failing.as_ref().map_or(ctx.max_attempts, |f| f.attempts);
        let parked = ctx.parked_event(event, attempts, kind, message.clone());
        if let Err(e) = ctx.park(&parked) {
            if let Some(failing) = entity.failing.as_mut() {
                failing.park = Some((kind, message));
            }
            return Err(TrackedError::Store(e));
        }
        // The stream is parked before anyone hears of it: a hook that replays it finds it so.
        ctx.parked.set_head(&event.stream, event.position);
        ctx.notify(&parked);
        entity.failing = None;
        self.drop_state(entity, &event.stream);
        ctx.progress.done(event.position);
        Ok(())
    }

    /// Folds a handled `event` into the entity's state, and saves a snapshot when one is due. A
    /// panic in `apply` leaves the state to be rebuilt for the next event.
    pub(crate) fn fold_in(&self, entity: &mut Entity<H::State>, event: &RecordedEvent) {
        let Some(state) = entity.state.as_mut() else { return };
        if let Err(message) = contain(|| self.inner.apply(state, event)) {
            self.ctx.counters.panics.fetch_add(1, Ordering::Relaxed);
            log::error!(
                stream = event.stream.as_str(), position = event.position, message:? = message;
                "humpyard pipeline: apply panicked on stream {:?} after the event at position {} was handled ({message:?}); the state is rebuilt for the next one",
                event.stream.as_str(), event.position
            );
            self.drop_state(entity, &event.stream);
            return;
        }
        entity.next_version = event.version + 1;
        let every = self.ctx.snapshot_every;
        if every > 0 && entity.next_version % every == 0 {
            self.save_snapshot(entity, event);
        }
    }

    fn save_snapshot(&self, entity: &Entity<H::State>, event: &RecordedEvent) {
        let ctx = &*self.ctx;
        let Some(state) = entity.state.as_ref() else { return };
        let data = match contain(|| self.inner.encode_state(state)) {
            Ok(Some(data)) => data,
            Ok(None) => return,
            Err(message) => {
                self.caught("encode_state", &event.stream, &message);
                return;
            }
        };
        let snapshot = Snapshot {
            subscriber: ctx.subscriber.clone(),
            stream: event.stream.clone(),
            state_version: ctx.state_version,
            version: event.version,
            data,
        };
        match ctx.store.save_snapshot(&snapshot) {
            Ok(()) => {
                ctx.counters.snapshots_saved.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                // A snapshot only saves work: a failed one is reported, and the fold still holds.
                ctx.counters.snapshot_errors.fetch_add(1, Ordering::Relaxed);
                let error = crate::error_chain::Chain(&error).to_string();
                log::warn!(
                    stream = event.stream.as_str(), version = event.version, error:? = error;
                    "humpyard pipeline: saving the snapshot of stream {:?} at version {} failed ({error:?})",
                    event.stream.as_str(), event.version
                );
            }
        }
    }

    /// Counts and logs a panic caught in user code at `site` (one that fails no attempt).
    fn caught(&self, site: &str, stream: &StreamId, message: &str) {
        self.ctx.counters.panics.fetch_add(1, Ordering::Relaxed);
        log::error!(
            site = site, stream = stream.as_str(), message:? = message;
            "humpyard pipeline: user code panicked in {site} for stream {:?}: {message:?}",
            stream.as_str()
        );
    }

    /// Drops the entity's state (given to the user's `cleanup`), to be rebuilt when next needed.
    pub(crate) fn drop_state(&self, entity: &mut Entity<H::State>, stream: &StreamId) {
        if let Some(state) = entity.state.take() {
            if let Err(message) = contain(|| self.inner.cleanup(stream, state)) {
                self.caught("cleanup", stream, &message);
            }
        }
    }
}

/// Why an attempt failed.
pub(crate) enum Failure<E> {
    /// A failed attempt.
    Handler(E),
    /// Not an attempt: try again later ([`ErrorKind::Wait`]).
    Wait(E),
    /// Park at once ([`ErrorKind::Park`]).
    Refused(E),
    /// A panic, in `handle` ([`ParkKind::Panic`]) or while rebuilding the state
    /// ([`ParkKind::Init`]).
    Panic(ParkKind, String),
    Store(StoreError),
}

/// The text of an error (its `Display`, user code; the whole chain for humpyard's own errors,
/// see `error_chain`), and the error disposed of (its `Drop`, user code too); both contained.
pub(crate) fn describe<E: std::fmt::Display + 'static>(error: E) -> String {
    let text = contain(|| text_of(&error)).unwrap_or_else(|message| format!("the error's Display panicked: {message}"));
    dispose(error);
    text
}

/// Runs user code `f`; a panic comes back as its message (its payload disposed of, contained).
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(panic_message)
}

/// Drops a user value whose `Drop` may panic, containing the panic.
pub(crate) fn dispose<T>(value: T) {
    let _ = contain(move || drop(value));
}

/// A user value whose `Drop` (user code) runs contained wherever its holder is dropped: on a
/// worker, a source's thread, or a caller's thread after a failed start. A panicking `Drop` is
/// logged and goes no further.
pub(crate) struct Disposing<T>(Option<T>);

impl<T> Disposing<T> {
    pub(crate) fn new(value: T) -> Disposing<T> {
        Disposing(Some(value))
    }

    /// The value, no longer disposed of by this holder.
    pub(crate) fn into_inner(mut self) -> T {
        self.0.take().expect("present until dropped")
    }
}

impl<T> std::ops::Deref for Disposing<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T> std::ops::DerefMut for Disposing<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.as_mut().expect("present until dropped")
    }
}

impl<T> Drop for Disposing<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            if let Err(message) = contain(move || drop(value)) {
                log::error!(message:? = message; "humpyard: a user value's Drop panicked ({message:?}); contained");
            }
        }
    }
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::Disposing;
    use std::sync::atomic::{AtomicU32, Ordering};

    static DROPS: AtomicU32 = AtomicU32::new(0);

    struct Loud;

    impl Drop for Loud {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            panic!("planned panic in a user Drop");
        }
    }

    // proves R-FT-3 (user code contained): a user value's panicking Drop goes no further
    #[test]
    fn a_disposing_holder_contains_its_values_drop() {
        let before = DROPS.load(Ordering::SeqCst);
        drop(Disposing::new(Loud));
        assert_eq!(
            DROPS.load(Ordering::SeqCst),
            before + 1,
            "dropped once, and the panic went no further"
        );
        let kept = Disposing::new(vec![1, 2]).into_inner();
        assert_eq!(kept, vec![1, 2]);
    }
}
