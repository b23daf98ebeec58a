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

#[cfg(feature = "postgres")]
fn postgres() -> Arc<dyn EventStore> {
    Arc::new(store::server::fresh_store())
}

#[cfg(feature = "postgres")]
contract_tests!(postgres_store, postgres());
