#![allow(dead_code)] // each test binary uses part of these helpers
//! Shared pieces of the store tests.

pub mod contract;
pub mod idempotency;
pub mod probed;
#[cfg(feature = "postgres")]
pub mod server;
