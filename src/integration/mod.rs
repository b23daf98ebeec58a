//! Integrations: an event causes an external effect, and an external source is turned into
//! commands (the "Integration pattern" of the first seed report).
//!
//! | item | what it is | file |
//! |---|---|---|
//! | [`Command`], [`RouteName`] | what a reaction asks the outside world to do, and where it goes | `command.rs` |
//! | [`effect_key`] | an effect's idempotency key: (subscriber, position, index) and nothing else | `effect_key.rs` |
//! | [`CommandHandler`], [`Effect`] | what performs a command, and what it is handed (key, attempt, follow-up appends) | `command_handler.rs` |
//! | [`Routes`], [`RoutePolicy`] | route -> handler, each route with its breaker, bulkhead and claim lease; performing one effect | `routes.rs` |
//! | [`EffectError`] | why an effect did not happen now: an attempt, a wait, or a refusal | `effect_error.rs` |
//! | [`Reactor`], [`Outbound`] | a reaction to stored events as commands, and the pipeline handler that performs them | `outbound.rs` |
//! | [`Source`], [`SourceContext`] | inbound feeds on their own threads, supervised and restarted | `source.rs` |
//! | [`TimerSource`] | a ready-made source: a command every interval | `timer.rs` |
//! | [`Observer`], [`Observed`] | one contained hook for breaker transitions, failures, waits, dead letters, restarts | `observer.rs` |
//! | [`Integration`] | all of it started and stopped together (sources stop first) | `runtime.rs` |
//! | [`IntegrationStats`] | the counters | `stats.rs` |
//! | [`testkit`] | a fixture command handler keyed by the command's hash, and an injectable source | `testkit.rs` |
//!
//! # Exactly-once effects
//!
//! An outbound effect is claimed under its [`effect_key`] before it runs and completed with its
//! outcome after; a retry, a replay after a crash, a parked event's replay, or another process
//! replaying the same position finds it completed and skips it (R-INT-2), for as long as the
//! store retains completed keys (7 days by default: `PgStoreConfig::idempotency_retention`,
//! `InMemoryStore::with_idempotency_retention`); replay parked events and rewind checkpoints
//! within it. A full bulkhead, an
//! open breaker or a claim held elsewhere is a wait on the engine's timer that uses no attempt;
//! a failed effect uses an attempt, and the last one parks its event (a dead letter). A command
//! with no route parks its event at once (R-INT-1).

mod command;
mod command_handler;
mod effect_error;
mod effect_key;
mod observer;
mod outbound;
mod routes;
mod runtime;
mod source;
mod stats;
pub mod testkit;
mod timer;

pub use command::{Command, CommandProblem, DecodeCommandError, EncodeCommandError, InvalidCommand, RouteName};
pub use command_handler::{BoxError, CommandHandler, Effect};
pub use effect_error::EffectError;
pub use effect_key::effect_key;
pub use observer::{Observed, Observer, ReactorMethod};
pub use outbound::{Outbound, Reactor};
pub use routes::{RouteError, RoutePolicy, RouteStats, Routes};
pub use runtime::{Integration, IntegrationBuilder, IntegrationError, IntegrationReport};
pub use source::{SendError, Source, SourceContext, SourceError, SourceReport, SourceState};
pub use stats::IntegrationStats;
pub use timer::TimerSource;
