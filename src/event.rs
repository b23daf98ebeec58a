//! [`Event`]: a payload addressed to one stream.

use crate::StreamId;

/// A payload addressed to the stream (entity) that must handle it.
///
/// The engine hands every event back to its owner when it cannot take it
/// ([`SubmitError`](crate::SubmitError)), when shutdown leaves it unprocessed
/// ([`ShutdownReport`](crate::ShutdownReport)) or when it fails for good
/// ([`DeadLetter`](crate::DeadLetter)): an event is never dropped silently.
///
/// `K` names the stream: a [`StreamId`] unless the handler is a
/// [`KeyedHandler`](crate::KeyedHandler) with another [`StreamKey`](crate::StreamKey).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<P, K = StreamId> {
    stream: K,
    payload: P,
}

impl<P, K> Event<P, K> {
    /// An event for `stream` carrying `payload`.
    #[inline]
    pub fn new(stream: K, payload: P) -> Event<P, K> {
        Event { stream, payload }
    }

    /// The stream this event belongs to.
    #[inline]
    pub fn stream(&self) -> &K {
        &self.stream
    }

    /// The payload.
    #[inline]
    pub fn payload(&self) -> &P {
        &self.payload
    }

    /// Takes the event apart.
    #[inline]
    pub fn into_parts(self) -> (K, P) {
        (self.stream, self.payload)
    }
}
