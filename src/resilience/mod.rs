//! Resilience primitives for the code around effects: retries with backoff (and, as the
//! resilience issue goes on, circuit breaking, single-flight and bulkheads).
//!
//! Each type is `Send + Sync + Debug`, usable from any thread, with no background thread of its
//! own (`../shared/DESIGN.md`, "Resilience API").

mod backoff;

pub use backoff::Backoff;
