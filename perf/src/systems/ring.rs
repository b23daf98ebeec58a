//! The ring ceiling: a raw `crossbeam_queue::ArrayQueue` hand-off from one producer thread to
//! one consumer thread, with the same handler work but no routing, no per-stream state and no
//! parking (both sides spin). Nothing that routes and keeps state can beat it; it says how
//! much of the raw hand-off the engine keeps.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;

use super::{Measured, System};
use crate::workload::{Load, Scenario};

/// One producer, one consumer, one queue of humpyard's default shard capacity (16 384).
#[derive(Debug)]
pub struct RingCeiling;

impl System for RingCeiling {
    fn name(&self) -> &'static str {
        "ring-ceiling"
    }

    fn supports(&self, scenario: &Scenario) -> bool {
        scenario.producers == 1 && scenario.workers == 1
    }

    fn run(&self, scenario: &Scenario, load: &Load) -> Measured {
        let queue = ArrayQueue::<u64>::new(16_384);
        let keys = &load.per_producer[0];
        let total = keys.len() as u64;
        let cost = scenario.cost;
        let start = Arc::new(Barrier::new(2));
        std::thread::scope(|scope| {
            let consumer = scope.spawn(|| {
                let mut state = 0u64;
                let mut handled = 0u64;
                while handled < total {
                    match queue.pop() {
                        Some(seq) => {
                            cost.apply(&mut state, seq);
                            handled += 1;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
                std::hint::black_box(state);
                handled
            });
            scope.spawn(|| {
                start.wait();
                for seq in 0..total {
                    let mut item = seq;
                    while let Err(back) = queue.push(item) {
                        item = back;
                        std::hint::spin_loop();
                    }
                }
            });
            start.wait();
            let began = Instant::now();
            let handled = consumer.join().expect("consumer");
            Measured {
                handled,
                elapsed: began.elapsed(),
            }
        })
    }
}
