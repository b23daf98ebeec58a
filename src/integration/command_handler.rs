//! [`CommandHandler`]: what performs a routed [`Command`]'s external effect, and [`Effect`]: what
//! it is handed besides the command (the effect's idempotency key, its attempt, and a way to
//! append follow-up events that a retry cannot append twice).
//!
//! # Follow-up events
//!
//! [`Effect::append`] gives each event an id derived from the effect's key and the event's
//! place among the effect's appends (SHA-256, as a version-8 UUID). A retry of the effect (after
//! a failure, a crash, or in another process) derives the same ids, so its append of the same
//! events is the store's safe client retry: it returns the first append's result and writes
//! nothing (see the store's contract), whatever the expected version.

use std::cell::Cell;
use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::command::{Command, RouteName};
use crate::store::{Appended, EventStore, ExpectedVersion, IdempotencyKey, NewEvent, StoreError};
use crate::StreamId;

/// The error a [`CommandHandler`] returns, boxed: anything that converts into
/// `Box<dyn std::error::Error + Send + Sync>` (every error type, `String` and `&str`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Performs the external effect of the commands routed to it.
///
/// `handle` runs on one of the engine's workers (outbound) or a source's thread (inbound),
/// under the route's circuit breaker and bulkhead and, for outbound commands, the effect's
/// claimed idempotency key. `Ok(outcome)` says the effect happened: the outcome (any JSON) is
/// stored with the key and the effect is never run again for it. `Err` says it did not happen
/// (or may be tried again): the attempt counts against the pipeline's `max_attempts` and the
/// route's breaker. A panic counts as an `Err`. An external call that may have happened
/// although it reports failure (a timeout) should carry [`Effect::key`] (the usual
/// `Idempotency-Key` header) so the other side deduplicates the retry.
///
/// Closures `Fn(&Command, &Effect<'_>) -> Result<serde_json::Value, E>` are command handlers.
pub trait CommandHandler: Send + Sync + 'static {
    /// What `handle` returns on failure.
    type Error: Into<BoxError>;

    /// Performs `command`'s effect.
    fn handle(&self, command: &Command, effect: &Effect<'_>) -> Result<serde_json::Value, Self::Error>;
}

impl<F, E> CommandHandler for F
where
    F: Fn(&Command, &Effect<'_>) -> Result<serde_json::Value, E> + Send + Sync + 'static,
    E: Into<BoxError>,
{
    type Error = E;

    fn handle(&self, command: &Command, effect: &Effect<'_>) -> Result<serde_json::Value, E> {
        self(command, effect)
    }
}

/// A command handler with its error boxed, as the routes keep it.
pub(crate) trait ErasedHandler: Send + Sync {
    fn handle(&self, command: &Command, effect: &Effect<'_>) -> Result<serde_json::Value, BoxError>;
}

impl<H: CommandHandler> ErasedHandler for H {
    fn handle(&self, command: &Command, effect: &Effect<'_>) -> Result<serde_json::Value, BoxError> {
        CommandHandler::handle(self, command, effect).map_err(Into::into)
    }
}

/// What a [`CommandHandler`] is handed besides its command.
pub struct Effect<'a> {
    pub(crate) route: &'a RouteName,
    pub(crate) key: &'a IdempotencyKey,
    pub(crate) attempt: u32,
    pub(crate) position: Option<u64>,
    pub(crate) store: &'a dyn EventStore,
    /// Events appended so far by this call (the next derived id's index).
    pub(crate) appended: Cell<u32>,
}

impl Effect<'_> {
    /// The route the command came by.
    pub fn route(&self) -> &RouteName {
        self.route
    }

    /// The effect's idempotency key: for an outbound command a function of (subscriber, event
    /// position, index) only ([`effect_key`](super::effect_key)); for an inbound command the
    /// key its source gave, or a fresh one. Send it with the external call.
    pub fn key(&self) -> &IdempotencyKey {
        self.key
    }

    /// How many times the effect's key has been claimed, this time included (1 for the first
    /// try). Above 1 an earlier try may have reached the external side.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The global position of the event whose reaction emitted the command (`None` for an
    /// inbound command).
    pub fn position(&self) -> Option<u64> {
        self.position
    }

    /// Appends follow-up `events` to `stream`, with `expected`, each with an id derived from
    /// this effect's key (see the module docs): a retry appends nothing twice.
    ///
    /// # Errors
    ///
    /// The store's ([`StoreError::WrongExpectedVersion`] and all); the events are handed
    /// nowhere: build them again to retry.
    pub fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        // Ids are used up only by an append that was stored: a refused one (a stale expected
        // version) leaves them for the next, so a retry derives the same ids for what it stores.
        let first = self.appended.get();
        let mut next = first;
        let events = events
            .into_iter()
            .map(|event| {
                let id = follow_up_id(self.key, next);
                next = next.wrapping_add(1);
                event.with_id(id)
            })
            .collect();
        let appended = self.store.append(stream, expected, events)?;
        self.appended.set(next);
        Ok(appended)
    }
}

impl fmt::Debug for Effect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Effect")
            .field("route", self.route)
            .field("key", self.key)
            .field("attempt", &self.attempt)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// The id of the `index`th event an effect with `key` appends: the first 16 bytes of
/// SHA-256("humpyard-follow-up\0" key "\0" index) as a version-8 UUID.
pub(crate) fn follow_up_id(key: &IdempotencyKey, index: u32) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(b"humpyard-follow-up\0");
    hash.update(key.as_str().as_bytes());
    hash.update(b"\0");
    hash.update(index.to_be_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}
