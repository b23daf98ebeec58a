//! Shared pieces of the store tests.

pub mod contract;
