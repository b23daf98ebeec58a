//! Idempotency keys on PostgreSQL (R-IDEM-1): the protocol documented on
//! [`Claim`](crate::store::Claim), on the `idempotency_keys` table (V1, with V4's columns; see
//! `schema`, "Idempotency keys (V4)"). The [`EventStore`](crate::store::EventStore) methods of
//! [`PgEventStore`] call these.
//!
//! - A claim is one statement, `INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <claimable>
//!   RETURNING`, never a check followed by an insert: the server serialises the claims of one
//!   key on its row (or on the unique index while none exists), so of any number of
//!   concurrent claims exactly one returns a row. The key is claimable when it has no row, or
//!   its claim has expired, or it was released by `fail`, or its outcome's retention has
//!   passed. A claim that returned nothing reads the row to say why (in progress, or the
//!   outcome); if the row turns out claimable by then (the claim expired, or was released or
//!   purged, between the two statements) it claims again, a few times at most.
//! - Each claim takes a new generation from the sequence `idempotency_generation` (never
//!   reused, so no token, however old, matches a later claim) and counts one more attempt.
//!   `complete` and `fail` are `UPDATE ... WHERE key = $1 AND generation = $2 AND state =
//!   'claimed'`; no row updated is [`StoreError::ClaimLost`].
//! - Every time is the server's (`now()`), never a client clock: processes on several machines
//!   agree on expiries. A span (`ttl`, retention) is bound in milliseconds.
//! - Purging deletes rows whose `retained_until` has passed, a bounded number per statement,
//!   skipping rows a claim holds locked at that moment.

use std::time::Duration;

use super::{backend_error, PgEventStore};
use crate::store::idempotency::span_millis;
use crate::store::types::json_is_storable;
use crate::store::{Claim, ClaimToken, IdempotencyKey, InvalidInput, StoreError};

/// Claim statements for one call before a key seen claimable between statements, every time,
/// is answered as in progress (another party keeps claiming and releasing it).
const CLAIM_TRIES: u32 = 3;

/// `claim`: see the module docs.
pub(super) fn claim(store: &PgEventStore, key: &IdempotencyKey, ttl: Duration) -> Result<Claim, StoreError> {
    let ttl_ms = span_millis(ttl);
    let mut conn = store.checkout()?;
    for _ in 0..CLAIM_TRIES {
        let claimed = conn
            .query_opt(
                &store.sql.claim,
                &[&key.as_str(), &ttl_ms, &store.idempotency_retention_ms],
            )
            .map_err(backend_error)?;
        if let Some(row) = claimed {
            let generation: i64 = row.get(0);
            let attempts: i32 = row.get(1);
            return Ok(Claim::Claimed(ClaimToken::new(
                key.clone(),
                generation as u64,
                attempts.max(1) as u32,
            )));
        }
        let row = conn
            .query_opt(&store.sql.key_state, &[&key.as_str()])
            .map_err(backend_error)?;
        // No row: purged since the claim statement, claimable again.
        let Some(row) = row else { continue };
        match row.get::<_, i32>(0) {
            HELD_COMPLETED => {
                let outcome: Option<serde_json::Value> = row.get(1);
                return Ok(Claim::Completed(outcome.unwrap_or(serde_json::Value::Null)));
            }
            HELD_CLAIMED => {
                let expires_in_ms: i64 = row.get(2);
                return Ok(Claim::InProgress {
                    expires_in: Duration::from_millis(expires_in_ms.max(0) as u64),
                });
            }
            // Claimable again since the claim statement (expired, released): try it again.
            _ => {}
        }
    }
    Ok(Claim::InProgress {
        expires_in: Duration::ZERO,
    })
}

/// `key_state`'s first column: the key is completed and retained.
const HELD_COMPLETED: i32 = 1;
/// `key_state`'s first column: the key is claimed and its claim has not expired.
const HELD_CLAIMED: i32 = 2;

/// `complete`: the token's claim, if still current, becomes the key's outcome.
pub(super) fn complete(store: &PgEventStore, token: &ClaimToken, outcome: serde_json::Value) -> Result<(), StoreError> {
    // The server would refuse it; refused here so that the claim stays open for a storable one.
    if !json_is_storable(&outcome) {
        return Err(StoreError::InvalidInput(InvalidInput::NulCharacter));
    }
    let generation = token.generation() as i64;
    let updated = store
        .checkout()?
        .execute(
            &store.sql.complete_claim,
            &[
                &token.key().as_str(),
                &generation,
                &outcome,
                &store.idempotency_retention_ms,
            ],
        )
        .map_err(backend_error)?;
    held(updated, token)
}

/// `fail`: the token's claim, if still current, is released.
pub(super) fn fail(store: &PgEventStore, token: &ClaimToken) -> Result<(), StoreError> {
    let generation = token.generation() as i64;
    let updated = store
        .checkout()?
        .execute(
            &store.sql.fail_claim,
            &[&token.key().as_str(), &generation, &store.idempotency_retention_ms],
        )
        .map_err(backend_error)?;
    held(updated, token)
}

/// `purge_idempotency_keys`: one `DELETE` of up to `max` rows past their retention.
pub(super) fn purge(store: &PgEventStore, max: usize) -> Result<usize, StoreError> {
    let limit = i64::try_from(max).ok();
    let deleted = store
        .checkout()?
        .execute(&store.sql.purge_keys, &[&limit])
        .map_err(backend_error)?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}

/// A finishing `UPDATE`'s row count as the protocol's answer.
fn held(updated: u64, token: &ClaimToken) -> Result<(), StoreError> {
    if updated == 0 {
        return Err(StoreError::ClaimLost {
            key: token.key().clone(),
        });
    }
    Ok(())
}
