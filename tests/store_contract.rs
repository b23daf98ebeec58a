//! The event store contract run against every store (see `tests/store/contract.rs`).
//! Proves R-PG-4 and R-FT-6 for the in-memory store; the Postgres store runs the same checks.

mod store;

use std::sync::Arc;

use humpyard::store::{EventStore, InMemoryStore};

fn in_memory() -> Arc<dyn EventStore> {
    Arc::new(InMemoryStore::new())
}

contract_tests!(in_memory_store, in_memory());
