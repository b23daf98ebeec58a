//! The event store: durable, ordered streams of events behind one trait, [`EventStore`].
//!
//! Two implementations pass one contract test suite (`tests/store_contract.rs`):
//! [`InMemoryStore`], the embedded default, and [`PgEventStore`] on PostgreSQL.
//!
//! # The contract
//!
//! - A stream's first event has version 0; one append's events take consecutive versions.
//!   [`ExpectedVersion`] is checked before anything is written: `Exact(v)` means the stream's
//!   last version is `v`, `NoStream` that it has no events.
//! - Global positions start at 1 and only grow; within a stream, position order is version
//!   order. An append that fails takes no position.
//! - Event ids are unique across the store. Appending again exactly the events of an earlier
//!   append (same ids, same order, one append) returns that append's [`Appended`] and writes
//!   nothing, whatever the expected version: a client may retry safely. Any other reuse of a
//!   stored id (part of an append, reordered, another stream, twice in one call) is
//!   [`StoreError::DuplicateEventId`] with the first offending id, and writes nothing. These
//!   rules and their precedence are written once, in `append_rules`, which both stores call.
//! - [`EventStore::append_many`] applies its items in order, each seeing those before it; an
//!   item that fails is rolled back alone and reported in its own slot (R-FT-6).
//! - [`EventStore::read_all`] returns events in position order and never one past the commit
//!   watermark: a reader never skips an event that commits late with a lower position (R-PG-5).
//!   A stored event that cannot be decoded is an error in its own place: a read returns the
//!   events before it, and the read that starts at it returns
//!   [`StoreError::InvalidStoredEvent`] with its position, so a reader can report it and go on
//!   (R-FT-5).
//! - [`Subscription`] follows `read_all` from a position on, woken by the store's
//!   [`AppendWatch`] and polling as well; errors are per item and never its end.
//! - Beside its checkpoint (which only moves forward, except by
//!   [`EventStore::reset_checkpoint`]), each subscriber keeps its [`ParkedEvent`]s, listed in
//!   position order, and its [`Snapshot`]s, loaded as the newest at or below a version; both
//!   stores keep them the same way (the contract suite runs on both).
//! - [`EventStore::read_all_filtered`] reads like `read_all` and returns what an
//!   [`EventFilter`] passes; a position it leaves out still counts as read.
//! - Subscriber names follow the [`StreamId`] rules; a bad name is a typed
//!   error, never text spliced into a query (R-SEC-1).
//! - Idempotency keys ([`EventStore::claim`], [`EventStore::complete`], [`EventStore::fail`]):
//!   of concurrent claims of one key exactly one gets [`Claim::Claimed`] (R-IDEM-1); a
//!   completed key replays its outcome and cannot be claimed again for the store's retention
//!   period, whatever the claim's `ttl`; a failed one is released at once for a retry; a claim
//!   neither completed nor failed within its `ttl` can be claimed again (with a higher
//!   [`ClaimToken::attempt`]); `complete` and `fail` with a token that is no longer the key's
//!   current claim change nothing and return [`StoreError::ClaimLost`]. The protocol in full,
//!   retention and purging: [`Claim`] (the contract suite is `tests/idempotency_contract.rs`).

mod append_rules;
mod async_store;
mod error;
mod filter;
mod idempotency;
mod memory;
mod parked;
#[cfg(feature = "postgres")]
mod postgres;
mod snapshot;
mod subscription;
mod typed;
mod types;
mod watch;

pub use async_store::AsyncStore;
pub use error::{BackendError, InvalidInput, Precondition, StoreError};
pub use filter::{EventFilter, FilteredRead};
pub use idempotency::{Claim, ClaimToken, IdempotencyKey, DEFAULT_IDEMPOTENCY_RETENTION};
pub use memory::InMemoryStore;
pub use parked::{ParkKind, ParkedEvent};
#[cfg(all(feature = "testing", feature = "postgres"))]
pub(crate) use postgres::migrate_schema_to;
#[cfg(feature = "postgres")]
pub use postgres::{PgEventStore, PgStoreConfig, SessionSettings};
pub use snapshot::Snapshot;
pub use subscription::{Subscription, SubscriptionConfig};
pub use typed::DecodeError;
pub(crate) use types::json_is_storable;
pub use types::{Appended, ExpectedVersion, GapWait, NewEvent, RecordedEvent, StoreHealth};
pub use watch::AppendWatch;

use std::time::Duration;

use crate::StreamId;

/// A durable store of event streams. See the [module docs](self) for the contract.
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` if its last version is as `expected`.
    ///
    /// # Errors
    ///
    /// [`StoreError::WrongExpectedVersion`], [`StoreError::DuplicateEventId`],
    /// [`StoreError::InvalidInput`] (no events), or the backend's errors. Nothing is written.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError>;

    /// Appends many items, in as few round trips as the store can (one for the in-memory store;
    /// on PostgreSQL one per few hundred streams and ids, see its docs); one result per item, in
    /// order. A conflict fails only its own item.
    ///
    /// # Errors
    ///
    /// The outer error only when the batch could not be attempted at all (the connection
    /// failed before anything was written); then nothing was written.
    fn append_many(
        &self,
        batch: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError>;

    /// Up to `max` events of `stream` from version `from_version` on, in version order.
    ///
    /// # Errors
    ///
    /// The backend's errors.
    fn read_stream(&self, stream: &StreamId, from_version: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `max` events with position greater than `after`, in position order, never past a
    /// position that is still missing and may yet commit (`usize::MAX`: no limit): the events
    /// returned are every event from `after + 1` on, with no gap that a later read could fill.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidStoredEvent`] when the first event after `after` cannot be decoded
    /// (a later one ends the batch before it instead), or the backend's errors.
    fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position `subscriber` last saved, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a bad subscriber name, or the backend's errors.
    fn load_checkpoint(&self, subscriber: &str) -> Result<Option<u64>, StoreError>;

    /// Saves `position` as `subscriber`'s checkpoint. A checkpoint never moves back: a save
    /// below the stored position changes nothing (a late save of an earlier run's reader
    /// cannot undo a newer one's).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a bad subscriber name, or the backend's errors.
    fn save_checkpoint(&self, subscriber: &str, position: u64) -> Result<(), StoreError>;

    /// Moves `subscriber`'s checkpoint to `position`, backwards too: the one way to rewind a
    /// subscriber (to rebuild a projection). Call it while no pipeline of that subscriber
    /// runs: a running one saves its own watermark over it. Parked events stay parked. Later
    /// saves are monotonic again from `position`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a bad subscriber name, or the backend's errors.
    fn reset_checkpoint(&self, subscriber: &str, position: u64) -> Result<(), StoreError> {
        let _ = (subscriber, position);
        Err(StoreError::Unsupported("reset_checkpoint"))
    }

    /// Like [`read_all`](Self::read_all), but looks at up to `max` events and returns only
    /// those `filter` passes, with the position it read up to ([`FilteredRead::passed`]):
    /// positions left out still count as passed. Gap detection is unchanged: a read never
    /// passes a position that may yet commit, filtered out or not. The default filters the
    /// results of `read_all`; stores override it to filter in the server.
    ///
    /// # Errors
    ///
    /// As [`read_all`](Self::read_all).
    fn read_all_filtered(&self, after: u64, max: usize, filter: &EventFilter) -> Result<FilteredRead, StoreError> {
        let events = self.read_all(after, max)?;
        let passed = events.last().map_or(after, |e| e.position);
        Ok(FilteredRead {
            events: events.into_iter().filter(|e| filter.passes_event(e)).collect(),
            passed,
        })
    }

    /// Parks `event` for its subscriber. If that position is parked already, its attempts,
    /// kind, message and time are updated (a replay that failed again), unless `event`'s kind
    /// is [`ParkKind::Behind`]: then the stored row is kept (an event read again after a
    /// restart keeps the failure it was parked for). Whether a row was written (inserted or
    /// updated).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a bad subscriber name or a NUL character in the
    /// message ([`InvalidInput::NulCharacter`], on both stores), or the backend's errors (on
    /// PostgreSQL also [`InvalidInput::OutOfRange`] for a position or version past `i64::MAX`
    /// or attempts past `i32::MAX`); [`StoreError::Unsupported`] from a store without parking
    /// (a pipeline does not start on one).
    fn park(&self, event: &ParkedEvent) -> Result<bool, StoreError> {
        let _ = event;
        Err(StoreError::Unsupported("park"))
    }

    /// Up to `max` of `subscriber`'s parked events with position greater than `after`, in
    /// position order; only `stream`'s if given.
    ///
    /// # Errors
    ///
    /// As [`park`](Self::park).
    fn parked(
        &self,
        subscriber: &str,
        stream: Option<&StreamId>,
        after: u64,
        max: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        let _ = (subscriber, stream, after, max);
        Err(StoreError::Unsupported("parked"))
    }

    /// Removes `subscriber`'s parked event at `position`; whether it was parked.
    ///
    /// # Errors
    ///
    /// As [`park`](Self::park).
    fn unpark(&self, subscriber: &str, position: u64) -> Result<bool, StoreError> {
        let _ = (subscriber, position);
        Err(StoreError::Unsupported("unpark"))
    }

    /// Stores `snapshot`, replacing one with the same key. Snapshots of the same subscriber,
    /// stream and state version at other versions are kept.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a bad subscriber name or a NUL character in the data
    /// ([`InvalidInput::NulCharacter`], on both stores), or the backend's errors (on PostgreSQL
    /// also [`InvalidInput::OutOfRange`] for a version past `i64::MAX` or a state version past
    /// `i32::MAX`); [`StoreError::Unsupported`] from a store without snapshots.
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let _ = snapshot;
        Err(StoreError::Unsupported("save_snapshot"))
    }

    /// The newest snapshot of `stream` for `subscriber` with this `state_version` whose
    /// `version` is at most `at_most`.
    ///
    /// # Errors
    ///
    /// As [`save_snapshot`](Self::save_snapshot).
    fn load_snapshot(
        &self,
        subscriber: &str,
        stream: &StreamId,
        state_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let _ = (subscriber, stream, state_version, at_most);
        Err(StoreError::Unsupported("load_snapshot"))
    }

    /// A watch that wakes when an append may have committed, for readers that wait for new
    /// events. The default gives no hints (it sleeps; readers poll).
    fn watch(&self) -> Box<dyn AppendWatch> {
        Box::new(watch::Sleep)
    }

    /// Claims `key` for `ttl`: [`Claim::Claimed`] with the token to finish the claim with, or
    /// [`Claim::InProgress`] while another claimant holds a live claim, or
    /// [`Claim::Completed`] with the stored outcome. Of concurrent claims of one key exactly
    /// one is [`Claim::Claimed`] (R-IDEM-1). A `ttl` above 100 years counts as 100 years; a
    /// zero `ttl` makes a claim that has expired at once (it can still be finished while
    /// nobody else claims the key). See [`Claim`] for the protocol.
    ///
    /// # Errors
    ///
    /// The backend's errors; [`StoreError::Unsupported`] from a store without idempotency
    /// keys.
    fn claim(&self, key: &IdempotencyKey, ttl: Duration) -> Result<Claim, StoreError> {
        let _ = (key, ttl);
        Err(StoreError::Unsupported("claim"))
    }

    /// Completes the claim `token` holds with `outcome`: from now on, for the store's retention
    /// period, claims of its key answer [`Claim::Completed`] with `outcome` and the key cannot
    /// be claimed again. A claim whose `ttl` has passed can still be completed if nobody has
    /// claimed the key since.
    ///
    /// # Errors
    ///
    /// [`StoreError::ClaimLost`] if the token is no longer the key's current claim (it expired
    /// and the key was claimed again, or the claim was completed or failed already): nothing
    /// is changed. [`InvalidInput::NulCharacter`] for an outcome with a NUL character (on both
    /// stores, as PostgreSQL's `jsonb` cannot hold one): the claim stays open for a storable
    /// outcome. The backend's errors; [`StoreError::Unsupported`] from a store without
    /// idempotency keys.
    fn complete(&self, token: &ClaimToken, outcome: serde_json::Value) -> Result<(), StoreError> {
        let _ = (token, outcome);
        Err(StoreError::Unsupported("complete"))
    }

    /// Fails the claim `token` holds: the effect did not happen (or may be tried again) and the
    /// key is released at once, so the next claim gets [`Claim::Claimed`] with the next
    /// attempt. Nothing is stored for it.
    ///
    /// # Errors
    ///
    /// [`StoreError::ClaimLost`] as for [`complete`](Self::complete); the backend's errors;
    /// [`StoreError::Unsupported`] from a store without idempotency keys.
    fn fail(&self, token: &ClaimToken) -> Result<(), StoreError> {
        let _ = token;
        Err(StoreError::Unsupported("fail"))
    }

    /// Deletes up to `max` idempotency-key records whose retention has passed since their last
    /// change (a completion, a release, or a claim's expiry); how many it deleted
    /// (`usize::MAX`: no limit). Nothing purges by itself: call it periodically, with a bound
    /// that keeps each call short, until it returns less than `max`. A purged key is free; a
    /// later claim starts again at attempt 1.
    ///
    /// # Errors
    ///
    /// The backend's errors; [`StoreError::Unsupported`] from a store without idempotency
    /// keys.
    fn purge_idempotency_keys(&self, max: usize) -> Result<usize, StoreError> {
        let _ = max;
        Err(StoreError::Unsupported("purge_idempotency_keys"))
    }

    /// Whether readers are held at a missing position now, and for how long: a position below
    /// committed ones whose transaction has not yet been seen to end. A long wait points at a
    /// long transaction on the server. Stores with no such positions (the in-memory store)
    /// answer `None`.
    fn gap_wait(&self) -> Option<GapWait> {
        None
    }

    /// The store's own trouble: its background connection errors and the readers' gap wait.
    /// The default counts no errors and asks [`gap_wait`](Self::gap_wait). A pipeline's metrics
    /// export calls it on its engine's supervisor thread once per tick (a panic is contained and
    /// counted there): read counters, never wait on I/O.
    fn health(&self) -> StoreHealth {
        StoreHealth {
            gap_wait: self.gap_wait(),
            ..StoreHealth::default()
        }
    }
}

/// Checks a subscriber name against the [`StreamId`] rules.
pub(crate) fn check_subscriber(subscriber: &str) -> Result<(), StoreError> {
    StreamId::new(subscriber)
        .map(drop)
        .map_err(|e| StoreError::InvalidInput(InvalidInput::SubscriberName(e)))
}
