//! tokio the way its users model entities: one task per stream, each with a bounded mpsc
//! channel, on a multi-threaded runtime with one thread per worker. Producers are plain
//! threads that `blocking_send` to the stream's channel. Order and state per stream hold, and
//! the runtime's work stealing balances hot streams; each task and channel costs memory.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use tokio::sync::mpsc;

use super::{Measured, System};
use crate::workload::{Load, Scenario};

/// Each stream's channel holds this many events (all streams together hold far more than
/// humpyard's rings; a smaller value makes producers block more often).
const STREAM_CAPACITY: usize = 64;

/// A task and a bounded channel per stream.
#[derive(Debug)]
pub struct TokioTasks;

impl System for TokioTasks {
    fn name(&self) -> &'static str {
        "tokio-tasks"
    }

    fn run(&self, scenario: &Scenario, load: &Load) -> Measured {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(scenario.workers)
            .build()
            .expect("runtime");
        let cost = scenario.cost;
        let (senders, tasks): (Vec<_>, Vec<_>) = (0..scenario.streams)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<u64>(STREAM_CAPACITY);
                let task = runtime.spawn(async move {
                    let mut state = 0u64;
                    let mut handled = 0u64;
                    while let Some(seq) = rx.recv().await {
                        cost.apply(&mut state, seq);
                        handled += 1;
                    }
                    handled
                });
                (tx, task)
            })
            .unzip();
        let start = Arc::new(Barrier::new(load.per_producer.len() + 1));
        // The scope ends when every producer has sent its last event.
        let began = std::thread::scope(|scope| {
            for keys in &load.per_producer {
                let (senders, start) = (&senders, &start);
                scope.spawn(move || {
                    start.wait();
                    for (seq, &key) in keys.iter().enumerate() {
                        senders[key as usize].blocking_send(seq as u64).expect("task alive");
                    }
                });
            }
            start.wait();
            Instant::now()
        });
        drop(senders);
        let handled = runtime.block_on(async {
            let mut handled = 0;
            for task in tasks {
                handled += task.await.expect("task");
            }
            handled
        });
        let elapsed = began.elapsed();
        runtime.shutdown_background();
        Measured { handled, elapsed }
    }
}
