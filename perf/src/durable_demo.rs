//! The demo's second part: the durable path on the embedded store. Appenders write batches
//! with `append_many` into an `InMemoryStore` while a `Pipeline` subscribes, hands every event
//! to a handler on the engine (each stream in order) and checkpoints; then a report: appended
//! and handled per second, the checkpoint, and the accounting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use humpyard::pipeline::{Pipeline, StreamHandler};
use humpyard::store::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RecordedEvent};
use humpyard::{EngineConfig, StreamId};
use serde_json::json;

use crate::progress::Progress;

/// Items per `append_many` call.
const BATCH: usize = 256;

/// Keeps a running sum per stream and checks that each stream's versions arrive in order.
struct Tally {
    out_of_order: Arc<AtomicU64>,
}

impl StreamHandler for Tally {
    /// The stream's next expected version and the sum of its `n`s.
    type State = (u64, u64);
    type Error = String;

    fn init(&self, _: &StreamId) -> (u64, u64) {
        (0, 0)
    }

    fn apply(&self, state: &mut (u64, u64), e: &RecordedEvent) {
        state.0 = e.version + 1;
        state.1 = state.1.wrapping_add(e.data["n"].as_u64().unwrap_or(0));
    }

    fn handle(&self, state: &(u64, u64), e: &RecordedEvent) -> Result<(), String> {
        // The state is the fold of every earlier version, even after a reap.
        if e.version != state.0 {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Settings of the durable part.
pub struct DurableOptions {
    pub seconds: u64,
    pub max_events: u64,
    pub streams: u64,
    pub appenders: u64,
    pub workers: usize,
}

/// Runs it; `false` if an event was lost, repeated or out of order.
pub fn run(o: &DurableOptions) -> bool {
    println!(
        "humpyard durable path: {} appenders -> InMemoryStore -> Pipeline -> {} workers, {} streams, \
         up to {} s or {} events",
        o.appenders, o.workers, o.streams, o.seconds, o.max_events
    );
    let store = Arc::new(InMemoryStore::new());
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let workers = o.workers;
    let out_of_order = Arc::new(AtomicU64::new(0));
    let pipeline = Pipeline::builder(
        dyn_store,
        "demo",
        Tally {
            out_of_order: out_of_order.clone(),
        },
    )
    .checkpoint_interval(Duration::from_millis(100))
    .engine(
        EngineConfig::default()
            .workers(workers)
            .idle_timeout(Duration::from_secs(2)),
    )
    .start()
    .expect("the pipeline starts");
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let appenders: Vec<_> = (0..o.appenders)
        .map(|a| {
            let (store, stop, appended) = (store.clone(), stop.clone(), appended.clone());
            let (streams, max_events) = (o.streams, o.max_events);
            std::thread::spawn(move || append(&store, &stop, &appended, a, streams, max_events))
        })
        .collect();
    let started = Instant::now();
    let mut last = (started, 0u64);
    while started.elapsed() < Duration::from_secs(o.seconds) && appended.load(Ordering::Relaxed) < o.max_events {
        std::thread::sleep(Duration::from_millis(500));
        let stats = pipeline.stats();
        let now = Instant::now();
        let rate = (stats.handled - last.1) as f64 / (now - last.0).as_secs_f64();
        last = (now, stats.handled);
        Progress::Stdout.update(&format!(
            "  {:>4.1} s  appended {:>9}  handled {:>9}  {:>6.2} M events/s  checkpoint {:>9}",
            started.elapsed().as_secs_f64(),
            appended.load(Ordering::Relaxed),
            stats.handled,
            rate / 1e6,
            stats.checkpoint
        ));
    }
    Progress::Stdout.finish();
    stop.store(true, Ordering::SeqCst);
    for a in appenders {
        a.join().expect("appender");
    }
    let append_time = started.elapsed();
    let total = appended.load(Ordering::Relaxed);
    // Every append succeeded and positions start at 1: the last position is the count.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pipeline.stats().checkpoint < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let report = pipeline.shutdown(Duration::from_secs(10));
    let out_of_order = out_of_order.load(Ordering::Relaxed);
    println!();
    println!(
        "  appended           {:>14}  ({:.0} events/s)",
        total,
        total as f64 / append_time.as_secs_f64()
    );
    println!(
        "  handled            {:>14}  ({:.0} events/s, append to checkpoint)",
        report.stats.handled,
        report.stats.handled as f64 / elapsed.as_secs_f64()
    );
    let ok = report.stats.handled == total && report.checkpoint == total && out_of_order == 0;
    println!(
        "  accounting         appended {} = handled {}; checkpoint {}; out of stream order {}  {}",
        total,
        report.stats.handled,
        report.checkpoint,
        out_of_order,
        if ok { "OK" } else { "MISMATCH" }
    );
    println!();
    println!("On PostgreSQL: cargo run --release -p humpyard-perf -- postgres   (a throwaway server, or DATABASE_URL)");
    ok
}

/// Appends batches of one-event items, uniform over the streams, until `stop` or the cap.
fn append(store: &InMemoryStore, stop: &AtomicBool, appended: &AtomicU64, a: u64, streams: u64, max_events: u64) {
    let ids: Vec<StreamId> = (0..streams)
        .map(|i| StreamId::new(&format!("account-{i}")).expect("valid id"))
        .collect();
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ (a + 1);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if appended.fetch_add(BATCH as u64, Ordering::Relaxed) + BATCH as u64 > max_events {
            appended.fetch_sub(BATCH as u64, Ordering::Relaxed);
            break;
        }
        let batch = (0..BATCH)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                n += 1;
                let id = ids[(x % streams) as usize].clone();
                (
                    id,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("deposited", json!({ "n": n }))],
                )
            })
            .collect();
        let results = store.append_many(batch).expect("the in-memory store takes every batch");
        assert!(results.iter().all(Result::is_ok), "an append failed");
    }
}
