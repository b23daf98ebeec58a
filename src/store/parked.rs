//! [`ParkedEvent`]: an event a subscriber could not handle, kept in the store until it is
//! replayed or discarded.
//!
//! A pipeline parks an event that failed its last attempt, and with it every later event of the
//! same stream (parked *behind* it, not handled), so that no event of that stream runs on a
//! state that missed one. The parked events of a stream are replayed or discarded in position
//! order; the stream runs again once none is left.

use std::fmt;
use std::time::SystemTime;

use crate::StreamId;

/// Why an event is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ParkKind {
    /// Making the stream's state failed (the handler's `init`, or a rehydration the handler
    /// refused).
    Init,
    /// The handler returned an error on every attempt.
    Handler,
    /// The handler panicked on the last attempt.
    Panic,
    /// Not tried: an earlier event of its stream is parked.
    Behind,
    /// The handler said no retry could mend its failure ([`ErrorKind::Park`](crate::pipeline::ErrorKind::Park)):
    /// parked at once (an integration's command with no route, for one).
    Refused,
}

impl ParkKind {
    /// The kind's name as stored (`init`, `handler`, `panic`, `behind`, `refused`).
    pub fn as_str(self) -> &'static str {
        match self {
            ParkKind::Init => "init",
            ParkKind::Handler => "handler",
            ParkKind::Panic => "panic",
            ParkKind::Behind => "behind",
            ParkKind::Refused => "refused",
        }
    }

    /// The kind a stored name stands for.
    pub fn from_name(name: &str) -> Option<ParkKind> {
        Some(match name {
            "init" => ParkKind::Init,
            "handler" => ParkKind::Handler,
            "panic" => ParkKind::Panic,
            "behind" => ParkKind::Behind,
            "refused" => ParkKind::Refused,
            _ => return None,
        })
    }
}

impl fmt::Display for ParkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event parked for a subscriber. Keyed by `(subscriber, position)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    /// The subscriber that parked it.
    pub subscriber: String,
    /// The event's global position.
    pub position: u64,
    /// Its stream.
    pub stream: StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Handler calls made for it, over every run and replay (0 for an event parked behind
    /// another).
    pub attempts: u32,
    /// Why it is parked.
    pub kind: ParkKind,
    /// The last failure's message (for [`ParkKind::Behind`], which event it waits behind).
    pub message: String,
    /// When it was parked (or last failed again in a replay).
    pub parked_at: SystemTime,
}
