//! Integrations: an event causes an external effect, and an external source is turned into
//! commands (the "Integration pattern" of the first seed report).
//!
//! | item | what it is | file |
//! |---|---|---|
//! | [`Command`], [`RouteName`] | what a reaction asks the outside world to do, and where it goes | `command.rs` |
//! | [`effect_key`] | an effect's idempotency key: (subscriber, position, index) and nothing else | `effect_key.rs` |
//!
//! The outbound path (reactions, command handlers under retry, breaker, bulkhead and the
//! effect's key), inbound sources and the test kit build on these.

mod command;
mod effect_key;

pub use command::{Command, CommandProblem, DecodeCommandError, EncodeCommandError, InvalidCommand, RouteName};
pub use effect_key::effect_key;
