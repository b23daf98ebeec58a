//! The scheduler hand-off: from `try_submit` of one event to an idle shard until its handler
//! starts, through the engine's scheduling (idle -> scheduled, run-queue push, waking a
//! worker). Two cases: the worker is still polling after its last event ("warm"), or has
//! parked ("parked", after a 2 ms pause), which adds the OS wake-up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use humpyard::{Engine, Event, Handler, StreamId};

/// Records when each handler call starts, as nanoseconds since `base`.
struct Stamp {
    base: Instant,
    started: Arc<AtomicU64>,
}

impl Handler for Stamp {
    type Payload = ();
    type State = ();
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }
    fn handle(&self, _: &mut (), _: &Event<()>) -> Result<(), String> {
        self.started
            .store(self.base.elapsed().as_nanos() as u64, Ordering::Release);
        Ok(())
    }
}

fn handoff(c: &mut Criterion) {
    assert!(
        !humpyard::internals::pause_points(),
        "benches measure a build without pause points: run `cargo bench`, not `cargo bench --workspace`"
    );
    let mut group = c.benchmark_group("handoff");
    group.sample_size(30);
    let base = Instant::now();
    let started = Arc::new(AtomicU64::new(0));
    let engine = Engine::builder(Stamp {
        base,
        started: started.clone(),
    })
    .workers(1)
    .start()
    .expect("engine");
    let id = StreamId::new("handoff").expect("id");
    for (case, pause) in [("warm", Duration::ZERO), ("parked", Duration::from_millis(2))] {
        group.bench_function(BenchmarkId::from_parameter(case), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                    let before = started.load(Ordering::Acquire);
                    let sent = base.elapsed().as_nanos() as u64;
                    engine.try_submit(Event::new(id.clone(), ())).expect("room");
                    let mut at = before;
                    while at == before {
                        // Yield, not spin: on a 2-core machine a spinning waiter can keep the
                        // woken worker off the CPU for a scheduler tick.
                        std::thread::yield_now();
                        at = started.load(Ordering::Acquire);
                    }
                    total += Duration::from_nanos(at.saturating_sub(sent));
                }
                total
            });
        });
    }
    group.finish();
    engine.shutdown(Duration::from_secs(5));
}

criterion_group!(benches, handoff);
criterion_main!(benches);
