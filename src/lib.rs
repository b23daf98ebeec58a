//! # humpyard
//!
//! A lock-free, high-throughput dispatch engine for per-entity event processing.
//!
//! Events carry a [`StreamId`]. humpyard runs each stream's events in order, one thread at a
//! time, with that stream's state at hand, and runs different streams in parallel on a pool of
//! OS threads: sharded lock-free ingress rings, explicit backpressure (a full ring hands the
//! event back and counts it), idle entities reaped, entity count capped, panics contained, and
//! a shutdown that drains and accounts for every event.
//!
//! Start with [`Engine::builder`] and the [`Handler`] trait ([`KeyedHandler`] for streams named
//! by integer or UUID ids).
#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    clippy::undocumented_unsafe_blocks
)]

// The sync facade: std or loom (see `sync.rs`).
mod sync;

// The vocabulary: stream ids and other keys, events, handlers.
mod event;
mod handler;
mod key;
mod stream_id;

// An error and its causes as one line of text, where humpyard keeps an error as text.
mod error_chain;

// Threads parked until a place frees (the engine's producers, the bulkhead's callers).
mod waiters;

// The engine.
mod engine;

// Test-only places where a test holds a thread (feature `pause-points`; empty without it).
#[cfg(feature = "pause-points")]
pub mod pause;
#[cfg(not(feature = "pause-points"))]
#[allow(unreachable_pub)]
mod pause;

// Export of the counters through the `metrics` facade, from the periodic threads (feature
// `metrics`).
#[cfg(feature = "metrics")]
mod export;

// The event store: the trait, the in-memory store and the Postgres store; subscriptions.
pub mod store;

// The store fed through the engine, with a durable checkpoint.
pub mod pipeline;

// Backoff, circuit breaker, single-flight and bulkhead, for the code around effects.
pub mod resilience;

// Commands to the outside world and the keys that keep their effects from repeating.
pub mod integration;

// A throwaway PostgreSQL server for tests and the perf tool (features `testing` and `postgres`).
#[cfg(all(feature = "testing", feature = "postgres"))]
pub mod testing;

// Internals for the loom models (only under `--cfg humpyard_loom`) and the benches (only with
// the `internals` feature).
#[cfg(any(humpyard_loom, feature = "internals"))]
#[doc(hidden)]
pub mod internals;
#[cfg(humpyard_loom)]
#[doc(hidden)]
pub mod loom_api;

pub use engine::{
    ConfigError, DeadLetter, Engine, EngineBuilder, EngineConfig, Failure, HandlerDurations, Metrics, PanicReport,
    PanicSite, Removal, ShutdownReport, SlowHandler, SubmitAsync, SubmitError, SubmitManyError,
};
pub use event::Event;
pub use handler::{Handler, KeyedHandler};
pub use key::StreamKey;
pub use stream_id::{InvalidStreamId, StreamId};

/// The `uuid` crate humpyard's event ids are made with, for [`store::NewEvent::with_id`] and
/// [`store::RecordedEvent::id`] without a version to keep in step.
pub use uuid;
