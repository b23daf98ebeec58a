//! humpyard itself, configured by its defaults except for the worker count: `humpyard` names
//! its streams with `StreamId`s (as the string-keyed pools do), `humpyard-int` with bare `u64`
//! keys through a `KeyedHandler` (as the integer-keyed pools do).

use std::marker::PhantomData;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use humpyard::{Engine, Event, KeyedHandler, StreamId, StreamKey, SubmitError};

use super::{Measured, System};
use crate::workload::{Cost, Load, Scenario};

/// The engine with `StreamId` keys, default shards and capacity.
#[derive(Debug)]
pub struct Humpyard;

/// The engine with `u64` keys, default shards and capacity.
#[derive(Debug)]
pub struct HumpyardInt;

/// Applies the scenario's cost to the stream's state.
struct Work<K> {
    cost: Cost,
    key: PhantomData<fn() -> K>,
}

impl<K: StreamKey> KeyedHandler for Work<K> {
    type Key = K;
    type Payload = u64;
    type State = u64;
    type Error = String;

    fn init(&self, _: &K) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, state: &mut u64, event: &Event<u64, K>) -> Result<(), String> {
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
        let ids = stream_ids(scenario.streams);
        run(scenario, load, |key| ids[key as usize].clone())
    }
}

impl System for HumpyardInt {
    fn name(&self) -> &'static str {
        "humpyard-int"
    }

    fn run(&self, scenario: &Scenario, load: &Load) -> Measured {
        run(scenario, load, u64::from)
    }
}

/// Pushes `load` through an engine whose key for stream index `i` is `key(i)`.
fn run<K: StreamKey>(scenario: &Scenario, load: &Load, key: impl Fn(u32) -> K + Sync) -> Measured {
    let engine = Engine::builder(Work {
        cost: scenario.cost,
        key: PhantomData,
    })
    .workers(scenario.workers)
    .max_entities(scenario.streams.max(1_000_000))
    .start()
    .expect("valid configuration");
    let start = Arc::new(Barrier::new(load.per_producer.len() + 1));
    std::thread::scope(|scope| {
        for keys in &load.per_producer {
            let (engine, key, start) = (&engine, &key, &start);
            let batch = scenario.batch;
            scope.spawn(move || {
                start.wait();
                if batch > 1 {
                    for (chunk, keys) in keys.chunks(batch).enumerate() {
                        let events = keys
                            .iter()
                            .enumerate()
                            .map(|(i, &k)| Event::new(key(k), (chunk * batch + i) as u64))
                            .collect();
                        engine
                            .submit_many_timeout(events, Duration::from_secs(30))
                            .expect("room within 30 s");
                    }
                    return;
                }
                for (seq, &k) in keys.iter().enumerate() {
                    let event = Event::new(key(k), seq as u64);
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
