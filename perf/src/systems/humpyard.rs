//! humpyard itself, configured by its defaults except for the worker count.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use humpyard::{Engine, Event, Handler, StreamId, SubmitError};

use super::{Measured, System};
use crate::workload::{Cost, Load, Scenario};

/// The engine with default shards and capacity.
#[derive(Debug)]
pub struct Humpyard;

/// Applies the scenario's cost to the stream's state.
struct Work {
    cost: Cost,
}

impl Handler for Work {
    type Payload = u64;
    type State = u64;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, state: &mut u64, event: &Event<u64>) -> Result<(), String> {
        self.cost.apply(state, *event.payload());
        Ok(())
    }
}

/// Stream ids `s-0`, `s-1`, ... for `streams` streams.
pub fn stream_ids(streams: u64) -> Vec<StreamId> {
    (0..streams)
        .map(|i| StreamId::new(&format!("s-{i}")).expect("valid id"))
        .collect()
}

impl System for Humpyard {
    fn name(&self) -> &'static str {
        "humpyard"
    }

    fn run(&self, scenario: &Scenario, load: &Load) -> Measured {
        let ids = Arc::new(stream_ids(scenario.streams));
        let engine = Arc::new(
            Engine::builder(Work { cost: scenario.cost })
                .workers(scenario.workers)
                .max_entities(scenario.streams.max(1_000_000))
                .start()
                .expect("valid configuration"),
        );
        let start = Arc::new(Barrier::new(load.per_producer.len() + 1));
        std::thread::scope(|scope| {
            for keys in &load.per_producer {
                let (engine, ids, start) = (&engine, &ids, &start);
                let batch = scenario.batch;
                scope.spawn(move || {
                    start.wait();
                    if batch > 1 {
                        for (chunk, keys) in keys.chunks(batch).enumerate() {
                            let events = keys
                                .iter()
                                .enumerate()
                                .map(|(i, &key)| Event::new(ids[key as usize].clone(), (chunk * batch + i) as u64))
                                .collect();
                            engine
                                .submit_many_timeout(events, Duration::from_secs(30))
                                .expect("room within 30 s");
                        }
                        return;
                    }
                    for (seq, &key) in keys.iter().enumerate() {
                        let event = Event::new(ids[key as usize].clone(), seq as u64);
                        if let Err(SubmitError::Full(event)) = engine.try_submit(event) {
                            engine
                                .submit_timeout(event, Duration::from_secs(30))
                                .expect("room within 30 s");
                        }
                    }
                });
            }
            start.wait();
            let began = Instant::now();
            let total = load.events();
            while engine.metrics().processed < total {
                std::thread::sleep(Duration::from_millis(1));
            }
            let elapsed = began.elapsed();
            let report = engine.shutdown(Duration::from_secs(30));
            assert!(report.unprocessed.is_empty());
            Measured {
                handled: engine.metrics().processed,
                elapsed,
            }
        })
    }
}
