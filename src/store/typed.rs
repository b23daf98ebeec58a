//! Typed events: a stored event's data (or metadata) decoded into the user's serde type, with a
//! typed error that says which event failed ([`DecodeError`]), and a new event's data encoded
//! from one.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{NewEvent, RecordedEvent};
use crate::StreamId;

/// A stored event whose data or metadata does not decode into the type asked for.
#[derive(Debug)]
pub struct DecodeError {
    /// The event's position.
    pub position: u64,
    /// Its stream.
    pub stream: StreamId,
    /// Its type.
    pub event_type: String,
    /// Whether the metadata failed (else the data).
    pub metadata: bool,
    /// What serde said.
    pub source: serde_json::Error,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} of the {:?} event at position {} (stream {:?}) does not decode",
            if self.metadata { "metadata" } else { "data" },
            self.event_type,
            self.position,
            self.stream.as_str(),
        )
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl RecordedEvent {
    /// The event's data as a `T`.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] with the event's position, stream and type when the data does not fit
    /// `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        T::deserialize(&self.data).map_err(|source| self.decode_error(false, source))
    }

    /// The event's metadata as a `T`.
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode).
    pub fn decode_metadata<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        T::deserialize(&self.metadata).map_err(|source| self.decode_error(true, source))
    }

    fn decode_error(&self, metadata: bool, source: serde_json::Error) -> DecodeError {
        DecodeError {
            position: self.position,
            stream: self.stream.clone(),
            event_type: self.event_type.clone(),
            metadata,
            source,
        }
    }
}

impl NewEvent {
    /// An event of `event_type` whose data is `data` encoded as JSON (a fresh id, empty
    /// metadata, as [`NewEvent::new`]).
    ///
    /// # Errors
    ///
    /// serde's, when `data` cannot be encoded (a map with non-string keys, a failing
    /// `Serialize`).
    pub fn encode<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        data: &T,
    ) -> Result<NewEvent, serde_json::Error> {
        Ok(NewEvent::new(event_type, serde_json::to_value(data)?))
    }
}
