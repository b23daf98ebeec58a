//! The idempotency-key contract (see `tests/store/idempotency.rs`) run against every store:
//! the in-memory store and the Postgres store on a throwaway server (or `DATABASE_URL`); and the
//! Postgres store's upgrade of V1's idempotency keys. Proves R-IDEM-1.

mod store;

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "postgres")]
use humpyard::store::{Claim, PgEventStore, PgStoreConfig};
use humpyard::store::{EventStore, InMemoryStore};
#[cfg(feature = "postgres")]
use serde_json::json;
#[cfg(feature = "postgres")]
use store::idempotency::{claimed, key};
#[cfg(feature = "postgres")]
use store::server;

fn in_memory() -> Arc<dyn EventStore> {
    Arc::new(InMemoryStore::new())
}

fn in_memory_with_retention(retention: Duration) -> Arc<dyn EventStore> {
    Arc::new(InMemoryStore::new().with_idempotency_retention(retention))
}

idempotency_tests!(in_memory_store, in_memory(), in_memory_with_retention);

#[cfg(feature = "postgres")]
fn postgres() -> Arc<dyn EventStore> {
    Arc::new(server::fresh_store())
}

#[cfg(feature = "postgres")]
fn postgres_with_retention(retention: Duration) -> Arc<dyn EventStore> {
    let mut config = PgStoreConfig::default();
    config.schema = server::fresh_schema("t");
    config.pool_size = 4;
    config.idempotency_retention = retention;
    Arc::new(PgEventStore::connect(&server::url(), config).expect("connect"))
}

#[cfg(feature = "postgres")]
idempotency_tests!(postgres_store, postgres(), postgres_with_retention);

// proves R-IDEM-1: V1's rows keep working after V4: a completed key keeps its outcome (past
// its old expiry), a failed one is released, a held one stays held until it expires
#[cfg(feature = "postgres")]
#[test]
fn v1_idempotency_rows_upgrade_to_v4() {
    let schema = server::fresh_schema("upgrade4");
    humpyard::testing::migrate_schema_to(&server::url(), &schema, 3).unwrap();
    let mut sql = postgres::Client::connect(&server::url(), postgres::NoTls).unwrap();
    // As a humpyard before V4 left them (`schema` is this test's own name, quoted).
    sql.batch_execute(&format!(
        "insert into \"{schema}\".idempotency_keys (key, state, outcome, expires_at) values \
         ('done', 'completed', '{{\"receipt\": 1}}', now() - interval '1 hour'), \
         ('failed', 'failed', '\"declined\"', now() + interval '1 hour'), \
         ('held', 'claimed', null, now() + interval '1 hour'), \
         ('expired', 'claimed', null, now() - interval '1 hour')"
    ))
    .unwrap();
    let mut config = PgStoreConfig::default();
    config.schema = schema;
    let store = PgEventStore::connect(&server::url(), config).unwrap();
    let minute = Duration::from_secs(60);
    assert_eq!(
        store.claim(&key("done"), minute).unwrap(),
        Claim::Completed(json!({ "receipt": 1 }))
    );
    assert!(matches!(
        store.claim(&key("held"), minute).unwrap(),
        Claim::InProgress { expires_in } if expires_in > minute
    ));
    // Claimed once before: this is the second attempt.
    let retry = claimed(&store, &key("failed"), minute, 2);
    claimed(&store, &key("expired"), minute, 2);
    store.complete(&retry, json!("charged")).unwrap();
    assert_eq!(
        store.claim(&key("failed"), minute).unwrap(),
        Claim::Completed(json!("charged"))
    );
    // Nothing is past its retention yet.
    assert_eq!(store.purge_idempotency_keys(usize::MAX).unwrap(), 0);
}
