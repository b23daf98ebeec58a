//! The systems a run compares: humpyard and the peers a Rust user would pick instead.
//!
//! Every system gets the same pre-drawn key sequences, the same handler work ([`Cost`](crate::workload::Cost)) and
//! the same guarantees where it can give them: one stream's events are handled in order, by
//! one thread at a time, with that stream's state at hand. Producers that meet a full queue
//! wait (blocking send, or `submit_timeout` for humpyard); nothing is dropped, and each system
//! reports how many events its handlers saw, which the caller checks.

mod humpyard;
mod pool;
mod ring;
mod tokio_tasks;

use std::time::Duration;

use crate::workload::{Load, Scenario};

pub use self::humpyard::{stream_ids, Humpyard, HumpyardInt};
pub use self::pool::{lane_capacity, CrossbeamPool, FlumePool, MpscPool, StateMap, StrPool};
pub use self::ring::RingCeiling;
pub use self::tokio_tasks::TokioTasks;

/// One run's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Events the handlers saw.
    pub handled: u64,
    /// From the start of submitting until the last event was handled.
    pub elapsed: Duration,
}

/// A system under test.
pub trait System {
    /// The name in reports.
    fn name(&self) -> &'static str;

    /// Whether this system can run `scenario` with its guarantees (the ring ceiling has no
    /// routing or state, so it runs only one producer against one consumer).
    fn supports(&self, scenario: &Scenario) -> bool {
        let _ = scenario;
        true
    }

    /// Pushes `load` through and waits until every event was handled.
    fn run(&self, scenario: &Scenario, load: &Load) -> Measured;
}

/// Every system of `compare`, humpyard first.
pub fn all() -> Vec<Box<dyn System>> {
    vec![
        Box::new(Humpyard),
        Box::new(HumpyardInt),
        Box::new(CrossbeamPool),
        Box::new(FlumePool),
        Box::new(MpscPool),
        Box::new(StrPool::<CrossbeamPool>::new()),
        Box::new(StrPool::<FlumePool>::new()),
        Box::new(StrPool::<MpscPool>::new()),
        Box::new(TokioTasks),
        Box::new(RingCeiling),
    ]
}

/// Finds systems by name (`humpyard`, `crossbeam-pool`, ...).
pub fn by_names(names: &str) -> Result<Vec<Box<dyn System>>, String> {
    let mut chosen = Vec::new();
    for name in names.split(',') {
        let system = all()
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("unknown system {name:?}; known: {}", known()))?;
        chosen.push(system);
    }
    Ok(chosen)
}

fn known() -> String {
    all().iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
}

/// The stream index a peer routes by, spread by a multiplicative hash (what a user would do
/// with integer keys; humpyard hashes its string ids once, when they are made).
#[inline]
pub(crate) fn lane_of(key: u64, lanes: usize) -> usize {
    ((key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % lanes as u64) as usize
}
