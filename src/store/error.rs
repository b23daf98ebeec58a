//! [`StoreError`]: what went wrong in an event store operation, as types.
//!
//! # How humpyard's errors read
//!
//! Every public error type in humpyard keeps one convention, so that a reporter that walks the
//! chain (anyhow's `{:#}`, or any loop over `source()`) prints each cause once:
//!
//! - `Display` says what failed at this level, in words a user can act on, and never repeats
//!   its cause's text; `source()` returns the cause, which says the rest. So
//!   `StoreError::Unavailable` displays "the database is unavailable" and its source, the
//!   [`BackendError`], says why.
//! - [`BackendError`] ends the chain. It speaks for the driver, whose own chain is not
//!   humpyard's to expose piecemeal and whose top words ("db error", "error connecting to
//!   server") say nothing alone: its `Display` is what the server said (its message, detail and
//!   hint) or the driver's text with every cause below it ("error connecting to server:
//!   Connection refused (os error 111)"), then the SQLSTATE; so its `source()` is `None`, and
//!   the driver's error stays reachable through [`BackendError::driver_error`].
//! - Names are printed as their text: a stream id, a key or a route as `{:?}` of its string,
//!   never as `StreamId(...)`.
//!
//! `to_string()` of an error therefore holds its top level only; print the chain to see why.

use std::fmt;

use uuid::Uuid;

use super::{ExpectedVersion, IdempotencyKey};
use crate::{InvalidStreamId, StreamId};

/// Why a store operation failed. Nothing was written when an append fails.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream's last version was not the expected one.
    WrongExpectedVersion {
        /// The stream.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's last version (`None`: no events).
        actual: Option<u64>,
    },
    /// An event id is stored already (and this is not a retry of exactly that append), or
    /// appears twice in one call: the first offending id.
    DuplicateEventId(Uuid),
    /// The request itself is malformed.
    InvalidInput(InvalidInput),
    /// No connection could be had or kept: connecting failed or timed out, the pool had no
    /// connection within its checkout timeout, or the server closed the connection.
    Unavailable(BackendError),
    /// The database cancelled the statement: `statement_timeout` or `lock_timeout`.
    Timeout(BackendError),
    /// Any other error the database reported.
    Backend(BackendError),
    /// A stored event that humpyard cannot read back (a row written by another tool with a
    /// stream id that breaks the rules).
    InvalidStoredEvent {
        /// The row's position.
        position: u64,
        /// What is wrong with its stream id.
        reason: InvalidStreamId,
    },
    /// An append kept meeting another writer's row for its stream's next version or one of its
    /// ids (a tool writing to the same stream without humpyard's locks), and gave up after a
    /// few tries; nothing was written. The server's last unique violation is inside.
    Contention(BackendError),
    /// The schema breaks a rule gap-safe reading rests on; see [`Precondition`].
    Precondition(Precondition),
    /// This store does not implement the operation named (a trait method left at its
    /// default); both of humpyard's stores implement every one.
    Unsupported(&'static str),
    /// The operation panicked (a store's code, or the closure given to
    /// [`AsyncStore::call`](super::AsyncStore::call)); the panic was contained on the store's
    /// thread. Its message is inside.
    Panicked(String),
    /// A [`complete`](super::EventStore::complete) or [`fail`](super::EventStore::fail) whose
    /// token is no longer the key's current claim: the claim expired and another claimant took
    /// the key, or it was completed or failed already. Nothing was changed; the effect's
    /// outcome is another claimant's to record.
    ClaimLost {
        /// The key.
        key: IdempotencyKey,
    },
}

/// A rule of the events table that gap-safe reading rests on, found broken when a store
/// connects (see the Postgres store's docs, "Reading").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precondition {
    /// The identity sequence of `position` caches more than one value at a time (its `CACHE`
    /// setting): a cached value can be used by a later transaction with a newer id.
    SequenceCache(i64),
    /// The events table's `draw_xact_id` trigger is disabled (or missing).
    XactIdTriggerDisabled,
}

/// An error from the database or its driver, with the SQLSTATE code when the server sent one.
///
/// The last link of a [`StoreError`]'s chain: its `Display` holds everything the server or the
/// driver said (see the module docs), so it has no `source()`.
#[derive(Debug)]
pub struct BackendError {
    sqlstate: Option<String>,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl BackendError {
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // used by the Postgres store only
    pub(crate) fn new(
        sqlstate: Option<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> BackendError {
        BackendError {
            sqlstate,
            source: source.into(),
        }
    }

    /// The SQLSTATE code the server sent (`57014`, `40P01`, ...), if any.
    pub fn sqlstate(&self) -> Option<&str> {
        self.sqlstate.as_deref()
    }

    /// The driver's own error (a `postgres::Error` from the Postgres store, to downcast), whose
    /// words this error's `Display` already holds. An error copied for another item of a failed
    /// call holds only that text.
    pub fn driver_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// What the server or the driver said, without the SQLSTATE: a server's error as its
    /// message, detail and hint (the driver's own `Display` of it is only "db error"); any other
    /// error as its `Display` and every cause below it.
    fn said(&self) -> String {
        let source: &(dyn std::error::Error + 'static) = &*self.source;
        #[cfg(feature = "postgres")]
        if let Some(db) = source
            .downcast_ref::<postgres::Error>()
            .and_then(postgres::Error::as_db_error)
        {
            use std::fmt::Write as _;
            let mut text = db.message().to_owned();
            if let Some(detail) = db.detail() {
                let _ = write!(text, ". Detail: {detail}");
            }
            if let Some(hint) = db.hint() {
                let _ = write!(text, ". Hint: {hint}");
            }
            return text;
        }
        crate::error_chain::Chain(source).to_string()
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.said())?;
        match &self.sqlstate {
            Some(code) => write!(f, " (SQLSTATE {code})"),
            None => Ok(()),
        }
    }
}

/// The end of the chain: the `Display` holds the driver's causes (see the module docs).
impl std::error::Error for BackendError {}

/// What is wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidInput {
    /// An append with no events.
    NoEvents,
    /// A subscriber name that breaks the [`StreamId`] rules.
    SubscriberName(InvalidStreamId),
    /// A schema name that is not `[a-z_][a-z0-9_]{0,62}`.
    SchemaName,
    /// A connection string that `postgres::Config` cannot parse.
    ConnectionString,
    /// A number too large for the database (positions and versions are `bigint`).
    OutOfRange,
    /// An idempotency key that is empty, longer than 255 bytes, or holds a NUL character.
    IdempotencyKey,
    /// A NUL character (U+0000) in an event's type, data or metadata (a string or an object
    /// key), or in a stored outcome: PostgreSQL's `text` and `jsonb` cannot hold it, so
    /// neither store takes it.
    NulCharacter,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::WrongExpectedVersion {
                stream,
                expected,
                actual,
            } => {
                // The id's text, quoted: `StreamId`'s `Debug` is for programmers, not messages.
                write!(f, "stream {:?} expected at {expected}, but it is at ", stream.as_str())?;
                match actual {
                    Some(v) => write!(f, "version {v}"),
                    None => f.write_str("no stream"),
                }
            }
            StoreError::DuplicateEventId(id) => write!(f, "event id {id} is stored already"),
            StoreError::InvalidInput(InvalidInput::NoEvents) => f.write_str("an append needs at least one event"),
            // The rule it breaks is the source.
            StoreError::InvalidInput(InvalidInput::SubscriberName(_)) => f.write_str("invalid subscriber name"),
            StoreError::InvalidInput(InvalidInput::SchemaName) => {
                f.write_str("invalid schema name: it must match [a-z_][a-z0-9_]{0,62}")
            }
            StoreError::InvalidInput(InvalidInput::ConnectionString) => {
                f.write_str("the connection string does not parse")
            }
            StoreError::InvalidInput(InvalidInput::OutOfRange) => {
                f.write_str("a position or version is beyond i64::MAX")
            }
            StoreError::InvalidInput(InvalidInput::NulCharacter) => {
                f.write_str("a NUL character (U+0000) in an event's type, data or metadata, or an outcome")
            }
            StoreError::InvalidInput(InvalidInput::IdempotencyKey) => {
                f.write_str("an idempotency key must be 1 to 255 bytes, with no NUL character")
            }
            // The database's own words are the source, a `BackendError`.
            StoreError::Unavailable(_) => f.write_str("the database is unavailable"),
            StoreError::Timeout(_) => {
                f.write_str("the database cancelled the statement (statement_timeout or lock_timeout)")
            }
            StoreError::Backend(_) => f.write_str("the database failed"),
            StoreError::InvalidStoredEvent { position, .. } => {
                write!(f, "the event at position {position} has an invalid stream id")
            }
            StoreError::Contention(_) => {
                f.write_str("another writer kept taking the append's version or ids; nothing was written")
            }
            StoreError::Precondition(Precondition::SequenceCache(cache)) => write!(
                f,
                "the events table's position sequence caches {cache} values; gap-safe reading needs 1"
            ),
            StoreError::Precondition(Precondition::XactIdTriggerDisabled) => {
                f.write_str("the events table's draw_xact_id trigger is disabled or missing")
            }
            StoreError::Unsupported(operation) => write!(f, "this store does not support {operation}"),
            StoreError::Panicked(message) => write!(f, "the store operation panicked: {message:?}"),
            StoreError::ClaimLost { key } => write!(
                f,
                "the claim of idempotency key {:?} is no longer held: it expired and was claimed again, \
                 or it was finished already",
                key.as_str()
            ),
        }
    }
}

/// As [`StoreError::InvalidInput`] displays it.
impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&StoreError::InvalidInput(self.clone()), f)
    }
}

impl std::error::Error for InvalidInput {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InvalidInput::SubscriberName(e) => Some(e),
            _ => None,
        }
    }
}

impl From<InvalidInput> for StoreError {
    fn from(input: InvalidInput) -> StoreError {
        StoreError::InvalidInput(input)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::InvalidInput(InvalidInput::SubscriberName(e)) => Some(e),
            StoreError::Unavailable(e)
            | StoreError::Timeout(e)
            | StoreError::Backend(e)
            | StoreError::Contention(e) => Some(e),
            StoreError::InvalidStoredEvent { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

impl StoreError {
    /// The same failure, for another item that a failed call stood for: the same variant, and
    /// for the database's errors the same SQLSTATE and message (the cause itself is not
    /// `Clone`).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // used by the Postgres store only
    pub(crate) fn for_another_item(&self) -> StoreError {
        let copy = |e: &BackendError| BackendError::new(e.sqlstate.clone(), e.said());
        match self {
            StoreError::Unavailable(e) => StoreError::Unavailable(copy(e)),
            StoreError::Timeout(e) => StoreError::Timeout(copy(e)),
            StoreError::Backend(e) => StoreError::Backend(copy(e)),
            StoreError::Contention(e) => StoreError::Contention(copy(e)),
            StoreError::WrongExpectedVersion {
                stream,
                expected,
                actual,
            } => StoreError::WrongExpectedVersion {
                stream: stream.clone(),
                expected: *expected,
                actual: *actual,
            },
            StoreError::DuplicateEventId(id) => StoreError::DuplicateEventId(*id),
            StoreError::InvalidInput(input) => StoreError::InvalidInput(input.clone()),
            StoreError::InvalidStoredEvent { position, reason } => StoreError::InvalidStoredEvent {
                position: *position,
                reason: *reason,
            },
            StoreError::Precondition(p) => StoreError::Precondition(p.clone()),
            StoreError::Unsupported(operation) => StoreError::Unsupported(operation),
            StoreError::Panicked(message) => StoreError::Panicked(message.clone()),
            StoreError::ClaimLost { key } => StoreError::ClaimLost { key: key.clone() },
        }
    }
}
