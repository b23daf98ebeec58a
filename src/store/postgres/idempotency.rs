//! Idempotency keys (R-IDEM-1): whoever claims a key runs the request; everyone else learns
//! that it is in progress, or gets the stored outcome.
//!
//! A claim is one statement, `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`, never a
//! check followed by an insert: of any number of concurrent claims of one key, exactly one
//! returns [`Claim::Claimed`]. A key lives until its expiry (`ttl` from its claim); an expired
//! key can be claimed again, whatever its state.

use std::time::Duration;

use super::{backend_error, PgEventStore};
use crate::store::types::json_is_storable;
use crate::store::{InvalidInput, StoreError};

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This caller holds the key: run the request, then [`complete`](PgEventStore::complete)
    /// or [`fail`](PgEventStore::fail) it.
    Claimed,
    /// Another caller holds the key and has not finished.
    InProgress,
    /// The request ran and succeeded; its stored outcome.
    Completed(serde_json::Value),
    /// The request ran and failed; its stored outcome.
    Failed(serde_json::Value),
}

/// The longest key, in bytes.
const MAX_KEY: usize = 255;

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY || key.contains('\0') {
        return Err(StoreError::InvalidInput(InvalidInput::IdempotencyKey));
    }
    Ok(())
}

impl PgEventStore {
    /// Claims `key` for `ttl`, or reports who has it.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::IdempotencyKey`] for an empty or over-long key (1 to 255 bytes; any
    /// text but NUL, it is always a bound parameter), or the backend's errors.
    pub fn claim(&self, key: &str, ttl: Duration) -> Result<Claim, StoreError> {
        check_key(key)?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut conn = self.checkout()?;
        let claimed = conn
            .query_opt(&self.sql.claim, &[&key, &ttl_ms])
            .map_err(backend_error)?
            .is_some();
        if claimed {
            return Ok(Claim::Claimed);
        }
        let row = conn.query_opt(&self.sql.claim_state, &[&key]).map_err(backend_error)?;
        Ok(match row {
            // Expired and removed between the two statements: a later claim will win it.
            None => Claim::InProgress,
            Some(row) => {
                let state: String = row.get(0);
                let outcome: Option<serde_json::Value> = row.get(1);
                let outcome = outcome.unwrap_or(serde_json::Value::Null);
                match state.as_str() {
                    "completed" => Claim::Completed(outcome),
                    "failed" => Claim::Failed(outcome),
                    _ => Claim::InProgress,
                }
            }
        })
    }

    /// Records that the request under `key` succeeded, with `outcome` for later claimants.
    ///
    /// # Errors
    ///
    /// As [`claim`](Self::claim).
    pub fn complete(&self, key: &str, outcome: serde_json::Value) -> Result<(), StoreError> {
        self.finish(key, "completed", outcome)
    }

    /// Records that the request under `key` failed, with `outcome` for later claimants.
    ///
    /// # Errors
    ///
    /// As [`claim`](Self::claim).
    pub fn fail(&self, key: &str, outcome: serde_json::Value) -> Result<(), StoreError> {
        self.finish(key, "failed", outcome)
    }

    fn finish(&self, key: &str, state: &str, outcome: serde_json::Value) -> Result<(), StoreError> {
        check_key(key)?;
        if !json_is_storable(&outcome) {
            return Err(StoreError::InvalidInput(InvalidInput::NulCharacter));
        }
        self.checkout()?
            .execute(&self.sql.finish_claim, &[&key, &state, &outcome])
            .map_err(backend_error)?;
        Ok(())
    }
}
