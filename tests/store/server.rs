//! One PostgreSQL server per test binary: `DATABASE_URL` if set, else a throwaway server
//! started on first use. A static is never dropped: the server's guard stops it when the
//! test process exits.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use humpyard::store::{PgEventStore, PgStoreConfig};
use humpyard::testing::ThrowawayPostgres;

/// The server's connection string.
pub fn url() -> String {
    static SERVER: OnceLock<(Option<ThrowawayPostgres>, String)> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var("DATABASE_URL") {
            Ok(url) => (None, url),
            Err(_) => {
                let server = ThrowawayPostgres::start().expect("a throwaway PostgreSQL server");
                let url = server.url();
                (Some(server), url)
            }
        })
        .1
        .clone()
}

/// A schema name no other test in this run uses.
pub fn fresh_schema(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store in a schema of its own: each test starts empty.
pub fn fresh_store() -> PgEventStore {
    let mut config = PgStoreConfig::default();
    config.schema = fresh_schema("t");
    config.pool_size = 20;
    PgEventStore::connect(&url(), config).expect("connect")
}
