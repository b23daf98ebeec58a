//! Idempotency keys (R-IDEM-1, R-INT-2): a request or an outbound effect runs under a key that
//! at most one party holds at a time, and once it has run its outcome is replayed instead of
//! running it again.
//!
//! The types are the store's vocabulary; the protocol (documented on [`Claim`]) is on the
//! [`EventStore`](super::EventStore) trait, and both stores keep it the same way (one contract
//! suite, `tests/idempotency_contract.rs`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::InvalidInput;

/// How long a store keeps a completed key's outcome unless configured otherwise: 7 days.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The longest claim `ttl` or retention a store honours, 100 years; a longer one counts as
/// this (so that the expiry is always a representable time on both stores).
pub(crate) const MAX_SPAN: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A validated idempotency key: 1 to [`MAX_LEN`](Self::MAX_LEN) bytes of any text but NUL.
/// A key is always a bound parameter, never spliced into SQL, so any other text is safe.
///
/// ```
/// use humpyard::store::IdempotencyKey;
///
/// let key = IdempotencyKey::new("payments/order-42/0")?;
/// assert_eq!(key.as_str(), "payments/order-42/0");
/// assert!(IdempotencyKey::new("").is_err());
/// # Ok::<(), humpyard::store::InvalidInput>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Checks `key`.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::IdempotencyKey`] for an empty key, one longer than
    /// [`MAX_LEN`](Self::MAX_LEN) bytes, or one with a NUL character.
    pub fn new(key: impl Into<String>) -> Result<IdempotencyKey, InvalidInput> {
        let key = key.into();
        if key.is_empty() || key.len() > Self::MAX_LEN || key.contains('\0') {
            return Err(InvalidInput::IdempotencyKey);
        }
        Ok(IdempotencyKey(key))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for IdempotencyKey {
    type Error = InvalidInput;

    fn try_from(key: &str) -> Result<IdempotencyKey, InvalidInput> {
        IdempotencyKey::new(key)
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidInput;

    fn try_from(key: String) -> Result<IdempotencyKey, InvalidInput> {
        IdempotencyKey::new(key)
    }
}

impl FromStr for IdempotencyKey {
    type Err = InvalidInput;

    fn from_str(key: &str) -> Result<IdempotencyKey, InvalidInput> {
        IdempotencyKey::new(key)
    }
}

/// What the holder of a claim holds: proof of which claim of which key it is, for
/// [`complete`](super::EventStore::complete) and [`fail`](super::EventStore::fail).
///
/// Opaque but for its key and [`attempt`](Self::attempt). It carries its key, so it cannot
/// finish another key's claim. Its generation is the fencing number: the store hands out a
/// new one, never used before, with every claim, and refuses a token whose claim is no longer
/// the key's current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken {
    key: IdempotencyKey,
    generation: u64,
    attempt: u32,
}

impl ClaimToken {
    pub(crate) fn new(key: IdempotencyKey, generation: u64, attempt: u32) -> ClaimToken {
        ClaimToken {
            key,
            generation,
            attempt,
        }
    }

    /// The key claimed.
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// How many times the key has been claimed, this claim included: 1 for the first. Above 1,
    /// an earlier holder may have run the effect (its claim expired, or it failed after
    /// starting), so the external side must deduplicate by the key.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

/// The answer to a [`claim`](super::EventStore::claim).
///
/// # The protocol
///
/// A key is in one of three states:
///
/// | state     | a claim answers                                   | until                      |
/// |-----------|---------------------------------------------------|----------------------------|
/// | free      | [`Claim::Claimed`] (and the key becomes claimed)  |                            |
/// | claimed   | [`Claim::InProgress`]                             | the claim's `ttl` passes   |
/// | completed | [`Claim::Completed`] with the stored outcome      | the retention passes       |
///
/// - A claim is atomic: of any number of concurrent claims of one free key exactly one gets
///   [`Claim::Claimed`] (on PostgreSQL one `INSERT ... ON CONFLICT DO UPDATE ... WHERE` statement,
///   never a check followed by an insert).
/// - [`complete`](super::EventStore::complete) stores the outcome: for the retention period
///   the key answers [`Claim::Completed`] and can never be claimed again, whatever the claim's
///   `ttl` was. To record a definitive failure that must not be retried, complete with an
///   outcome that says so.
/// - [`fail`](super::EventStore::fail) releases the claim at once: the effect failed and may be
///   retried, so the next claim gets [`Claim::Claimed`], its attempt one higher.
/// - A claim that is neither completed nor failed within its `ttl` (its holder died, or is
///   slow) expires and the key can be claimed again. The effect may have happened: the new
///   holder's [`ClaimToken::attempt`] is above 1, and the key goes with the effect so that the
///   external side can deduplicate by it.
///
/// # Fencing
///
/// Every claim hands out a [`ClaimToken`] with a fresh generation (a number never handed out
/// before by the store). `complete` and `fail` succeed only while the token's generation is the
/// key's current claim and the key is still claimed; otherwise they change nothing and return
/// [`StoreError::ClaimLost`](super::StoreError::ClaimLost): a holder whose claim expired and
/// was taken by another can never overwrite the other's claim or a stored outcome. A holder
/// whose claim expired but was *not* claimed again may still complete or fail it (nobody else
/// ran the effect meanwhile).
///
/// # Retention and purging
///
/// Each store keeps a completed key's outcome for its retention period (default
/// [`DEFAULT_IDEMPOTENCY_RETENTION`], 7 days; [`InMemoryStore::with_idempotency_retention`] and
/// [`PgStoreConfig::idempotency_retention`]), counted from the completion. After it the outcome
/// may be forgotten and the key claimed again, so keep it longer than anything may replay the
/// effect (a retry, a replay after a crash, another process replaying the position).
///
/// A key's record is kept until the retention has passed since its last change (its
/// completion, its release by `fail`, or the expiry of its claim), so attempt counts survive
/// that long; then [`purge_idempotency_keys`](super::EventStore::purge_idempotency_keys) deletes
/// it. Nothing purges by itself: call it periodically (say hourly) so that the records do not
/// grow forever; a pipeline will call it later. A key claimed after its record was purged
/// starts again at attempt 1.
///
/// # Example
///
/// An outbound effect under its key: claimed before it runs, completed with its outcome after,
/// failed (released for a retry) if it did not happen.
///
/// ```
/// use std::time::Duration;
/// use humpyard::store::{Claim, EventStore, IdempotencyKey, InMemoryStore, StoreError};
/// use serde_json::json;
///
/// fn send_receipt(store: &dyn EventStore, key: &IdempotencyKey) -> Result<serde_json::Value, StoreError> {
///     match store.claim(key, Duration::from_secs(30))? {
///         Claim::Claimed(token) => {
///             // Run the effect, handing the key to the external side (it deduplicates by it
///             // when `token.attempt() > 1`). On failure: `store.fail(&token)?`.
///             let outcome = json!({ "sent": true, "attempt": token.attempt() });
///             store.complete(&token, outcome.clone())?;
///             Ok(outcome)
///         }
///         Claim::Completed(outcome) => Ok(outcome), // ran before: not again
///         _ => Ok(json!("in progress elsewhere; try later")),
///     }
/// }
///
/// let store = InMemoryStore::new();
/// let key = IdempotencyKey::new("receipts/42/0")?;
/// let first = send_receipt(&store, &key)?;
/// assert_eq!(send_receipt(&store, &key)?, first); // replayed, not sent twice
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`InMemoryStore::with_idempotency_retention`]: super::InMemoryStore::with_idempotency_retention
/// [`PgStoreConfig::idempotency_retention`]: super::PgStoreConfig::idempotency_retention
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Claim {
    /// This caller holds the key: run the effect, then
    /// [`complete`](super::EventStore::complete) or [`fail`](super::EventStore::fail) it with
    /// this token before the claim's `ttl` passes.
    Claimed(ClaimToken),
    /// Another caller holds a live claim of the key and has not finished: do not run the
    /// effect now; ask again later.
    InProgress {
        /// How long until that claim expires if it is not finished first (zero if it just
        /// has).
        expires_in: Duration,
    },
    /// The effect ran and was completed with this outcome: do not run it again; use this.
    Completed(serde_json::Value),
}

/// `d` clamped to [`MAX_SPAN`], in whole milliseconds (as the Postgres store binds it).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // used by the Postgres store only
pub(crate) fn span_millis(d: Duration) -> i64 {
    // MAX_SPAN is about 3.2e12 ms: always fits.
    d.min(MAX_SPAN).as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        for good in ["k", "k'; drop table x; -- $1 é", &"k".repeat(255)] {
            assert_eq!(IdempotencyKey::new(good).unwrap().as_str(), good);
        }
        for bad in [String::new(), "k".repeat(256), "k\0".to_owned()] {
            assert_eq!(IdempotencyKey::new(bad), Err(InvalidInput::IdempotencyKey));
        }
        // 255 bytes, not characters.
        assert!(IdempotencyKey::new("é".repeat(128)).is_err());
        assert_eq!("k".parse::<IdempotencyKey>().unwrap().to_string(), "k");
    }

    #[test]
    fn spans_are_clamped() {
        assert_eq!(span_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(span_millis(Duration::MAX), span_millis(MAX_SPAN));
    }
}
