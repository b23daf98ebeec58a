//! [`StoreError`]: what went wrong in an event store operation, as types.

use std::fmt;

use uuid::Uuid;

use super::ExpectedVersion;
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
}

/// What is wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidInput {
    /// An append with no events.
    NoEvents,
    /// A subscriber name that breaks the [`StreamId`] rules.
    SubscriberName(InvalidStreamId),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::WrongExpectedVersion {
                stream,
                expected,
                actual,
            } => {
                write!(f, "stream {stream:?} expected at {expected}, but it is at ")?;
                match actual {
                    Some(v) => write!(f, "version {v}"),
                    None => f.write_str("no stream"),
                }
            }
            StoreError::DuplicateEventId(id) => write!(f, "event id {id} is stored already"),
            StoreError::InvalidInput(InvalidInput::NoEvents) => f.write_str("an append needs at least one event"),
            StoreError::InvalidInput(InvalidInput::SubscriberName(e)) => write!(f, "invalid subscriber name: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::InvalidInput(InvalidInput::SubscriberName(e)) => Some(e),
            _ => None,
        }
    }
}
