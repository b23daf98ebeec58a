//! The event store contract run against every store (see `tests/store/contract.rs`): the
//! in-memory store and the Postgres store on a throwaway server (or `DATABASE_URL`).
//! Proves R-PG-4, R-FT-6 and R-SEC-1 (hostile payloads, names checked, values bound).

mod store;

use std::sync::Arc;

use humpyard::store::{EventStore, InMemoryStore};

fn in_memory() -> Arc<dyn EventStore> {
    Arc::new(InMemoryStore::new())
}

contract_tests!(in_memory_store, in_memory());

mod postgres_server {
    use std::sync::OnceLock;

    use humpyard::store::{PgEventStore, PgStoreConfig};
    use humpyard::testing::ThrowawayPostgres;

    /// One server for the whole test binary, started on first use (or `DATABASE_URL`). A
    /// static is never dropped: the server's guard stops it when this process exits.
    fn url() -> String {
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

    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    /// A store in a schema of its own: each test starts empty.
    pub fn fresh() -> PgEventStore {
        let mut config = PgStoreConfig::default();
        config.schema = format!(
            "contract_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        config.pool_size = 20;
        PgEventStore::connect(&url(), config).expect("connect")
    }
}

fn postgres() -> Arc<dyn EventStore> {
    Arc::new(postgres_server::fresh())
}

contract_tests!(postgres_store, postgres());
