//! [`PgStoreConfig`]: the Postgres store's settings and their defaults, and the validated
//! schema name.

use std::time::Duration;

use crate::store::{InvalidInput, StoreError, DEFAULT_IDEMPOTENCY_RETENTION};

/// Settings of a [`PgEventStore`](super::PgEventStore). Every field has a documented default
/// (`PgStoreConfig::default()`); change fields on a default value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgStoreConfig {
    /// The schema that holds humpyard's tables; `[a-z_][a-z0-9_]{0,62}`. Default `humpyard`.
    pub schema: String,
    /// Connections in the pool. Default 8.
    pub pool_size: u32,
    /// Limit on opening one connection (TCP and startup). Default 5 s.
    pub connect_timeout: Duration,
    /// Limit on waiting for a pooled connection. Default 10 s.
    pub checkout_timeout: Duration,
    /// `statement_timeout` of every pooled connection. Default 30 s.
    pub statement_timeout: Duration,
    /// `lock_timeout` of every pooled connection. Default 10 s.
    pub lock_timeout: Duration,
    /// `idle_in_transaction_session_timeout` of every pooled connection. Default 60 s.
    pub idle_in_transaction_timeout: Duration,
    /// TCP keepalive idle time of every connection. Default 30 s.
    pub keepalive_idle: Duration,
    /// The most advisory locks this store's appends hold at once, all connections together:
    /// one call of an append takes at most `max_append_locks / pool_size` lock keys (at least
    /// 64), one per stream and one per event id, and a larger batch is cut into several calls.
    /// Default 4 096. The server's shared lock table holds `max_locks_per_transaction *
    /// max_connections` entries (6 400 with PostgreSQL's defaults) for every session: keep the
    /// sum of this setting over the processes that append below it, with room for the rest.
    /// Larger means fewer calls per large batch (each call has a fixed cost).
    pub max_append_locks: u32,
    /// How long a completed idempotency key keeps its outcome (and cannot be claimed again),
    /// counted from its completion; any key's record is kept that long after its last change,
    /// then [`purge_idempotency_keys`](crate::store::EventStore::purge_idempotency_keys) may
    /// delete it. Default [`DEFAULT_IDEMPOTENCY_RETENTION`], 7 days; longer than 100 years
    /// counts as 100 years. Keep it longer than anything may replay an effect (see
    /// [`Claim`](crate::store::Claim)). Every process of one schema should use the same value.
    pub idempotency_retention: Duration,
}

impl Default for PgStoreConfig {
    fn default() -> PgStoreConfig {
        PgStoreConfig {
            schema: "humpyard".to_owned(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            checkout_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(60),
            keepalive_idle: Duration::from_secs(30),
            max_append_locks: 4096,
            idempotency_retention: DEFAULT_IDEMPOTENCY_RETENTION,
        }
    }
}

/// A schema name that passed validation: safe to quote into SQL text (R-SEC-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaName(String);

impl SchemaName {
    pub(crate) fn new(name: &str) -> Result<SchemaName, StoreError> {
        let bytes = name.as_bytes();
        let first_ok = bytes.first().is_some_and(|&b| b == b'_' || b.is_ascii_lowercase());
        let rest_ok = bytes[1.min(bytes.len())..]
            .iter()
            .all(|&b| b == b'_' || b.is_ascii_lowercase() || b.is_ascii_digit());
        if first_ok && rest_ok && bytes.len() <= 63 {
            Ok(SchemaName(name.to_owned()))
        } else {
            Err(StoreError::InvalidInput(InvalidInput::SchemaName))
        }
    }

    /// The name, double-quoted for SQL text.
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Milliseconds for a server setting (at least 1: 0 would mean "no limit").
pub(crate) fn millis(d: Duration) -> u128 {
    d.as_millis().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_validated() {
        for good in ["humpyard", "_x", "a1_b2", &"a".repeat(63)] {
            assert!(SchemaName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1a",
            "Humpyard",
            "a-b",
            "a b",
            "x\"; drop schema public; --",
            &"a".repeat(64),
            "é",
        ] {
            assert!(SchemaName::new(bad).is_err(), "{bad}");
        }
        assert_eq!(SchemaName::new("s").unwrap().quoted(), "\"s\"");
    }
}
