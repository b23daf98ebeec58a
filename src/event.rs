//! [`Event`]: a payload addressed to one stream.

use crate::StreamId;

/// A payload addressed to the stream (entity) that must handle it.
///
/// The engine hands every event back to its owner when it cannot take it
/// ([`SubmitError`](crate::SubmitError)), when shutdown leaves it unprocessed
/// ([`ShutdownReport`](crate::ShutdownReport)) or when it fails for good
/// ([`DeadLetter`](crate::DeadLetter)): an event is never dropped silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<P> {
    stream: StreamId,
    payload: P,
}

impl<P> Event<P> {
    /// An event for `stream` carrying `payload`.
    #[inline]
    pub fn new(stream: StreamId, payload: P) -> Event<P> {
        Event { stream, payload }
    }

    /// The stream this event belongs to.
    #[inline]
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The payload.
    #[inline]
    pub fn payload(&self) -> &P {
        &self.payload
    }

    /// Takes the event apart.
    #[inline]
    pub fn into_parts(self) -> (StreamId, P) {
        (self.stream, self.payload)
    }
}
