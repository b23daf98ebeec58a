//! Resilience primitives for the code around effects (`../shared/DESIGN.md`, "Resilience
//! API"): retries with backoff, circuit breaking, single-flight and bulkheads.
//!
//! Each type is `Send + Sync + Debug`, usable from any thread, with no background thread of its
//! own: time is read (through the crate's clock) when a call comes.
//!
//! | type | what it bounds | file |
//! |---|---|---|
//! | [`Backoff`] | how soon a retry comes: capped exponential delays with equal jitter | `backoff.rs` |
//! | [`CircuitBreaker`] | calls to a failing dependency: closed, open, one probe | `breaker.rs` |
//! | [`SingleFlight`] | duplicate work: overlapping calls for one key run once | `single_flight.rs` |
//! | [`Bulkhead`] | fan-out: at most N callers at once, parked past it | `bulkhead.rs` |

mod backoff;
mod breaker;
mod bulkhead;
mod single_flight;

pub use backoff::Backoff;
pub use breaker::{BreakerConfig, BreakerState, BreakerStats, CallError, CircuitBreaker, Transition, TransitionHook};
pub use bulkhead::{Bulkhead, Permit, ZeroConcurrency};
pub use single_flight::{SingleFlight, SingleFlightError};
