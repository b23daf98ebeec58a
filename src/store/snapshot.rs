//! [`Snapshot`]: a subscriber's state of one stream, folded up to a version and stored, so that
//! rebuilding the state reads only the events after it.
//!
//! Keyed by `(subscriber, stream, state_version, version)`. `state_version` is the user's
//! number for the state's shape: a state type that changes gets a new number, and snapshots of
//! the old shape are never loaded for it.

use crate::StreamId;

/// A stored fold of a stream's events `0..=version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The subscriber whose state it is.
    pub subscriber: String,
    /// The stream.
    pub stream: StreamId,
    /// The user's version of the state's shape (the Postgres store holds it as `int`: at most
    /// `i32::MAX`).
    pub state_version: u32,
    /// The last stream version folded into it.
    pub version: u64,
    /// The encoded state.
    pub data: serde_json::Value,
}
