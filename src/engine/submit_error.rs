//! [`SubmitError`]: why the engine handed an event back; [`SubmitManyError`]: what a batch
//! submit took and what it handed back.

use std::fmt;

use crate::{Event, StreamId};

/// Why [`Engine::try_submit`](crate::Engine::try_submit) or
/// [`Engine::submit_timeout`](crate::Engine::submit_timeout) did not take an event. The event
/// comes back inside the error, untouched; every such rejection is counted in
/// [`Metrics::rejected`](crate::Metrics::rejected).
pub enum SubmitError<P, K = StreamId> {
    /// The stream's shard is full (`shard_capacity` events wait in it). Nothing was retried.
    Full(Event<P, K>),
    /// The engine is shutting down or shut down; it takes no more events.
    Closed(Event<P, K>),
    /// `submit_timeout`'s time ran out before the shard had room.
    Timeout(Event<P, K>),
}

impl<P, K> SubmitError<P, K> {
    /// The event that was not taken.
    pub fn into_event(self) -> Event<P, K> {
        match self {
            SubmitError::Full(event) | SubmitError::Closed(event) | SubmitError::Timeout(event) => event,
        }
    }

    /// The event that was not taken, by reference.
    pub fn event(&self) -> &Event<P, K> {
        match self {
            SubmitError::Full(event) | SubmitError::Closed(event) | SubmitError::Timeout(event) => event,
        }
    }

    /// Whether the shard was full (`Full` or `Timeout`): trying later may succeed.
    pub fn is_full(&self) -> bool {
        matches!(self, SubmitError::Full(_) | SubmitError::Timeout(_))
    }

    /// Whether the engine is closed: trying again never succeeds.
    pub fn is_closed(&self) -> bool {
        matches!(self, SubmitError::Closed(_))
    }
}

impl<P, K: fmt::Debug> fmt::Debug for SubmitError<P, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload may be large or not Debug; the stream id is enough to identify the event.
        let (kind, event) = match self {
            SubmitError::Full(event) => ("Full", event),
            SubmitError::Closed(event) => ("Closed", event),
            SubmitError::Timeout(event) => ("Timeout", event),
        };
        f.debug_struct(kind)
            .field("stream", event.stream())
            .finish_non_exhaustive()
    }
}

impl<P, K: fmt::Display> fmt::Display for SubmitError<P, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stream = self.event().stream();
        match self {
            SubmitError::Full(_) => write!(f, "shard of stream {stream} is full; event handed back"),
            SubmitError::Closed(_) => write!(f, "engine is shut down; event for stream {stream} handed back"),
            SubmitError::Timeout(_) => write!(f, "timed out waiting for room for stream {stream}; event handed back"),
        }
    }
}

impl<P, K: fmt::Debug + fmt::Display> std::error::Error for SubmitError<P, K> {}

/// What [`Engine::try_submit_many`](crate::Engine::try_submit_many) or
/// [`Engine::submit_many_timeout`](crate::Engine::submit_many_timeout) did when it did not take
/// every event of the batch: how many it took, and each event it handed back, untouched, with
/// its reason. Every event handed back is counted in [`Metrics::rejected`](crate::Metrics::rejected).
#[non_exhaustive]
pub struct SubmitManyError<P, K = StreamId> {
    /// Events taken into the rings.
    pub accepted: usize,
    /// The events not taken, in the order they were given, each inside its [`SubmitError`].
    /// A shard takes a prefix of the batch's events for it: once one is handed back, every
    /// later event of its shard is too, so submitting them again in this order keeps each
    /// stream's order.
    pub rejected: Vec<SubmitError<P, K>>,
}

impl<P, K> SubmitManyError<P, K> {
    /// The events not taken, in the order they were given.
    pub fn into_events(self) -> Vec<Event<P, K>> {
        self.rejected.into_iter().map(SubmitError::into_event).collect()
    }
}

impl<P, K: fmt::Debug> fmt::Debug for SubmitManyError<P, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitManyError")
            .field("accepted", &self.accepted)
            .field("rejected", &self.rejected)
            .finish()
    }
}

impl<P, K: fmt::Display> fmt::Display for SubmitManyError<P, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events of the batch taken, {} handed back",
            self.accepted,
            self.rejected.len()
        )?;
        if let Some(first) = self.rejected.first() {
            write!(f, " (the first: {first})")?;
        }
        Ok(())
    }
}

impl<P, K: fmt::Debug + fmt::Display> std::error::Error for SubmitManyError<P, K> {}
