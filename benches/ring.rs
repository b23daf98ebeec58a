//! The ingress ring alone: one or two producer threads hand `u64`s to one consumer thread
//! through humpyard's ring and, for scale, through `crossbeam_queue::ArrayQueue` (the same
//! Vyukov design without the closed mark). Capacity 4096 (a shard's
//! default until 2026-12-03, now 16 384; kept so that the figures compare across dates).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use humpyard::internals::{PushError, Ring};

const ITEMS: u64 = 1_000_000;
const CAPACITY: usize = 4096;

/// What the bench needs of a bounded MPSC queue.
trait Queue: Sync {
    fn push(&self, v: u64) -> Result<(), u64>;
    /// Only one thread pops at a time.
    fn pop(&self) -> Option<u64>;
}

impl Queue for Ring<u64> {
    fn push(&self, v: u64) -> Result<(), u64> {
        Ring::push(self, v).map_err(|e| match e {
            PushError::Full(v) | PushError::Closed(v) => v,
        })
    }
    fn pop(&self) -> Option<u64> {
        // SAFETY: the bench pops from one thread only.
        unsafe { self.pop_exclusive() }
    }
}

impl Queue for ArrayQueue<u64> {
    fn push(&self, v: u64) -> Result<(), u64> {
        ArrayQueue::push(self, v)
    }
    fn pop(&self) -> Option<u64> {
        ArrayQueue::pop(self)
    }
}

/// Moves `ITEMS` items from `producers` threads to one consumer; both sides spin.
fn transfer(queue: &dyn Queue, producers: u64) -> Duration {
    let start = Barrier::new(producers as usize + 1);
    std::thread::scope(|s| {
        for _ in 0..producers {
            s.spawn(|| {
                start.wait();
                for i in 0..ITEMS / producers {
                    let mut v = i;
                    while let Err(back) = queue.push(v) {
                        v = back;
                        std::hint::spin_loop();
                    }
                }
            });
        }
        start.wait();
        let began = Instant::now();
        let mut got = 0;
        while got < ITEMS / producers * producers {
            match queue.pop() {
                Some(v) => {
                    std::hint::black_box(v);
                    got += 1;
                }
                None => std::hint::spin_loop(),
            }
        }
        began.elapsed()
    })
}

fn ring(c: &mut Criterion) {
    assert!(
        !humpyard::internals::pause_points(),
        "benches measure a build without pause points: run `cargo bench`, not `cargo bench --workspace`"
    );
    let mut group = c.benchmark_group("ring");
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(20);
    for producers in [1u64, 2] {
        group.bench_with_input(BenchmarkId::new("humpyard", producers), &producers, |b, &p| {
            b.iter_custom(|iters| (0..iters).map(|_| transfer(&Ring::<u64>::new(CAPACITY), p)).sum());
        });
        group.bench_with_input(BenchmarkId::new("crossbeam-queue", producers), &producers, |b, &p| {
            b.iter_custom(|iters| (0..iters).map(|_| transfer(&ArrayQueue::<u64>::new(CAPACITY), p)).sum());
        });
    }
    group.finish();
}

criterion_group!(benches, ring);
criterion_main!(benches);
