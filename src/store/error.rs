//! [`StoreError`]: what went wrong in an event store operation, as types.

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
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sqlstate {
            Some(code) => write!(f, "{} (SQLSTATE {code})", self.source),
            None => write!(f, "{}", self.source),
        }
    }
}

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
            StoreError::InvalidInput(InvalidInput::SubscriberName(e)) => write!(f, "invalid subscriber name: {e}"),
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
            StoreError::Unavailable(e) => write!(f, "the database is unavailable: {e}"),
            StoreError::Timeout(e) => write!(f, "the database cancelled the statement: {e}"),
            StoreError::Backend(e) => write!(f, "the database failed: {e}"),
            StoreError::InvalidStoredEvent { position, reason } => {
                write!(f, "the event at position {position} has an invalid stream id: {reason}")
            }
            StoreError::Contention(e) => write!(
                f,
                "another writer kept taking the append's version or ids; nothing was written: {e}"
            ),
            StoreError::Precondition(Precondition::SequenceCache(cache)) => write!(
                f,
                "the events table's position sequence caches {cache} values; gap-safe reading needs 1"
            ),
            StoreError::Precondition(Precondition::XactIdTriggerDisabled) => {
                f.write_str("the events table's draw_xact_id trigger is disabled or missing")
            }
            StoreError::Unsupported(operation) => write!(f, "this store does not support {operation}"),
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
            | StoreError::Contention(e) => Some(&*e.source),
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
        let copy = |e: &BackendError| BackendError::new(e.sqlstate.clone(), e.source.to_string());
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
            StoreError::ClaimLost { key } => StoreError::ClaimLost { key: key.clone() },
        }
    }
}
