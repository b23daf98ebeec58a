//! The in-memory store's idempotency keys: the protocol documented on [`Claim`], kept in a map
//! behind the store's second lock, with every deadline on the monotonic clock.
//!
//! The states and their rules are the Postgres store's, one for one (the `where` of its `claim`
//! statement is the match in [`Keys::claim`] here): a claimed key is held until its expiry, a completed
//! one until its retention passes, a released one not at all. Generations come from one
//! counter for the whole store, so a token never matches a later claim, of its key or any
//! other, even after its record was purged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::store::idempotency::{DEFAULT_IDEMPOTENCY_RETENTION, MAX_SPAN};
use crate::store::{Claim, ClaimToken, IdempotencyKey, StoreError};

/// Every key's record, and what a claim needs to make a new one.
#[derive(Debug)]
pub(super) struct Keys {
    entries: HashMap<IdempotencyKey, Entry>,
    /// The last generation handed out (0: none yet); only grows.
    generation: u64,
    /// How long a completed key keeps its outcome, and any record is kept after its last change.
    pub(super) retention: Duration,
    /// The origin of the deadlines below: a deadline is a `Duration` after it, so adding a
    /// long span saturates instead of overflowing an `Instant`.
    origin: Instant,
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// The generation of the key's last claim.
    generation: u64,
    /// Claims of the key so far.
    attempts: u32,
    /// When `purge` may delete the record: the retention after its last change (completion,
    /// release, or the claim's expiry).
    retained_until: Duration,
}

#[derive(Debug)]
enum State {
    Claimed { expires_at: Duration },
    Completed(serde_json::Value),
    Released,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys {
            entries: HashMap::new(),
            generation: 0,
            retention: DEFAULT_IDEMPOTENCY_RETENTION,
            origin: Instant::now(),
        }
    }
}

impl Keys {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn retention(&self) -> Duration {
        self.retention.min(MAX_SPAN)
    }

    pub(super) fn claim(&mut self, key: &IdempotencyKey, ttl: Duration) -> Claim {
        let now = self.now();
        let expires_at = now + ttl.min(MAX_SPAN);
        let retained_until = expires_at + self.retention();
        // Held (answered) or claimable: the Postgres claim statement's `where`, turned round.
        let attempts = match self.entries.get(key) {
            None => 1,
            Some(entry) => match &entry.state {
                State::Claimed { expires_at } if *expires_at > now => {
                    return Claim::InProgress {
                        expires_in: *expires_at - now,
                    }
                }
                State::Completed(outcome) if entry.retained_until > now => return Claim::Completed(outcome.clone()),
                State::Claimed { .. } | State::Completed(_) | State::Released => entry.attempts.saturating_add(1),
            },
        };
        self.generation += 1;
        self.entries.insert(
            key.clone(),
            Entry {
                state: State::Claimed { expires_at },
                generation: self.generation,
                attempts,
                retained_until,
            },
        );
        Claim::Claimed(ClaimToken::new(key.clone(), self.generation, attempts))
    }

    /// The entry `token`'s claim is still current in, if it is: the key's last claim, and
    /// neither completed nor failed (expired but not claimed again is still current).
    fn held(&mut self, token: &ClaimToken) -> Result<&mut Entry, StoreError> {
        match self.entries.get_mut(token.key()) {
            Some(entry) if entry.generation == token.generation() && matches!(entry.state, State::Claimed { .. }) => {
                Ok(entry)
            }
            _ => Err(StoreError::ClaimLost {
                key: token.key().clone(),
            }),
        }
    }

    pub(super) fn complete(&mut self, token: &ClaimToken, outcome: serde_json::Value) -> Result<(), StoreError> {
        let retained_until = self.now() + self.retention();
        let entry = self.held(token)?;
        entry.state = State::Completed(outcome);
        entry.retained_until = retained_until;
        Ok(())
    }

    pub(super) fn fail(&mut self, token: &ClaimToken) -> Result<(), StoreError> {
        let retained_until = self.now() + self.retention();
        let entry = self.held(token)?;
        entry.state = State::Released;
        entry.retained_until = retained_until;
        Ok(())
    }

    pub(super) fn purge(&mut self, max: usize) -> usize {
        let now = self.now();
        let mut purged = 0;
        self.entries.retain(|_, entry| {
            let drop = purged < max && entry.retained_until <= now;
            purged += usize::from(drop);
            !drop
        });
        purged
    }
}
