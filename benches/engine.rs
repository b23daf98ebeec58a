//! End-to-end engine throughput with a trivial handler: one producer (the bench thread)
//! submits a burst round-robin over 1, 1 000 or 100 000 streams; the time runs until the
//! workers have handled the whole burst. `engine/timed-handler` is the same with every handler
//! call timed for the duration histogram (`time_handlers(true)`).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use humpyard::{Engine, Event, Handler, StreamId, SubmitError};

struct Count;

impl Handler for Count {
    type Payload = u64;
    type State = u64;
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }
    fn handle(&self, n: &mut u64, e: &Event<u64>) -> Result<(), String> {
        *n = n.wrapping_add(*e.payload());
        Ok(())
    }
}

const BURST: u64 = 100_000;

fn throughput(c: &mut Criterion) {
    assert!(
        !humpyard::internals::pause_points(),
        "benches measure a build without pause points: run `cargo bench`, not `cargo bench --workspace`"
    );
    bursts(c, "engine/trivial-handler", false, &[1, 1_000, 100_000]);
    // The same with every handler call timed (`time_handlers`): the cost of the histogram.
    bursts(c, "engine/timed-handler", true, &[1_000, 100_000]);
}

/// Bursts over each count of `streams`, with handler calls timed or not.
fn bursts(c: &mut Criterion, name: &str, timed: bool, streams: &[usize]) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BURST));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for &streams in streams {
        let engine = Engine::builder(Count).time_handlers(timed).start().expect("engine");
        let ids: Vec<StreamId> = (0..streams)
            .map(|i| StreamId::new(&format!("bench-{i}")).expect("id"))
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(streams), &ids, |b, ids| {
            b.iter_custom(|iters| {
                let target = engine.metrics().processed + iters * BURST;
                let started = Instant::now();
                let mut next = 0usize;
                for _ in 0..iters * BURST {
                    let event = Event::new(ids[next].clone(), 1);
                    next = if next + 1 == ids.len() { 0 } else { next + 1 };
                    if let Err(SubmitError::Full(event)) = engine.try_submit(event) {
                        engine.submit_timeout(event, Duration::from_secs(10)).expect("room");
                    }
                }
                while engine.metrics().processed < target {
                    std::thread::yield_now();
                }
                started.elapsed()
            });
        });
        engine.shutdown(Duration::from_secs(10));
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
