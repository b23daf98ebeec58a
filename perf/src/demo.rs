//! The demo (no subcommand): about ten seconds of producers submitting to the engine, a live
//! progress line, then a report: events/s, latency percentiles, entities and the accounting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use humpyard::{Engine, Event, Handler, StreamId, SubmitError};

use crate::args::Flags;
use crate::progress::Progress;

/// One latency sample is taken every `SAMPLE_EVERY` events (timestamps cost a clock read).
const SAMPLE_EVERY: u64 = 64;

/// The demo's payload: a sequence number and, for sampled events, the submit time.
struct Tick {
    seq: u64,
    sent: Option<Instant>,
}

/// Keeps a running total per stream and records sampled latencies.
struct Demo {
    latencies: Arc<Mutex<Histogram<u64>>>,
}

impl Handler for Demo {
    type Payload = Tick;
    type State = u64;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, total: &mut u64, event: &Event<Tick>) -> Result<(), String> {
        let tick = event.payload();
        *total = total.wrapping_add(tick.seq);
        if let Some(sent) = tick.sent {
            let micros = sent.elapsed().as_nanos() as u64 / 1_000;
            if let Ok(mut h) = self.latencies.lock() {
                let _ = h.record(micros.max(1));
            }
        }
        Ok(())
    }
}

/// The demo's settings.
pub struct DemoOptions {
    seconds: u64,
    streams: u64,
    producers: u64,
    workers: usize,
    max_entities: u64,
}

impl DemoOptions {
    /// Reads `--seconds --streams --producers --workers --max-entities`.
    pub fn from_flags(flags: &mut Flags) -> Result<DemoOptions, String> {
        Ok(DemoOptions {
            seconds: flags.take("seconds", 10)?,
            streams: flags.take("streams", 100_000u64)?.max(1),
            producers: flags.take("producers", 2u64)?.max(1),
            workers: flags.take("workers", crate::cores())?.max(1),
            max_entities: flags.take("max-entities", 1_000_000u64)?.max(1),
        })
    }
}

impl DemoOptions {
    /// The worker threads (`--workers`), which the durable part uses too.
    pub fn workers(&self) -> usize {
        self.workers
    }
}

/// Runs the demo; `false` if the accounting did not hold.
pub fn run(o: &DemoOptions) -> bool {
    let latencies = Arc::new(Mutex::new(
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
    ));
    let handler = Demo {
        latencies: latencies.clone(),
    };
    let engine = Arc::new(
        Engine::builder(handler)
            .workers(o.workers)
            .max_entities(o.max_entities)
            .idle_timeout(Duration::from_secs(2))
            .start()
            .expect("valid configuration"),
    );
    println!(
        "humpyard demo: {} producers -> {} workers, {} streams (uniform), entity cap {}, {} s",
        o.producers, o.workers, o.streams, o.max_entities, o.seconds
    );
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..o.producers)
        .map(|p| {
            let engine = engine.clone();
            let stop = stop.clone();
            let (streams, producers) = (o.streams, o.producers);
            std::thread::spawn(move || produce(&engine, &stop, p, producers, streams))
        })
        .collect();

    let started = Instant::now();
    let mut last = (started, 0u64);
    while started.elapsed() < Duration::from_secs(o.seconds) {
        std::thread::sleep(Duration::from_millis(500));
        let m = engine.metrics();
        let now = Instant::now();
        let rate = (m.processed - last.1) as f64 / (now - last.0).as_secs_f64();
        last = (now, m.processed);
        Progress::Stdout.update(&format!(
            "  {:>4.1} s  {:>7.2} M events/s  processed {:>11}  live {:>7}  queued {:>6}  rejected {:>9}",
            started.elapsed().as_secs_f64(),
            rate / 1e6,
            m.processed,
            m.entities_live,
            m.queued,
            m.rejected
        ));
    }
    Progress::Stdout.finish();
    stop.store(true, Ordering::SeqCst);
    let submitted: u64 = producers.into_iter().map(|p| p.join().expect("producer")).sum();
    let elapsed = started.elapsed();
    let live_at_end = engine.metrics().entities_live;
    let report = engine.shutdown(Duration::from_secs(10));
    let m = engine.metrics();
    println!();
    println!("  events processed   {:>14}", m.processed);
    println!(
        "  events/s           {:>14.0}",
        m.processed as f64 / elapsed.as_secs_f64()
    );
    let (p50, p99, p999) = {
        let h = latencies.lock().expect("histogram");
        (
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
        )
    };
    println!("  latency p50/p99/p99.9 (submit -> handled, sampled 1/{SAMPLE_EVERY}, saturated load): {p50} / {p99} / {p999} us");
    println!(
        "  entities           live {} at the end (cleaned up by shutdown) / reaped {} / evicted {}",
        live_at_end, m.entities_reaped, m.entities_evicted
    );
    println!(
        "  backpressure       {} submits handed back (Full), producers retried them",
        m.rejected
    );
    let ok = m.accepted == m.processed + m.dead_lettered + report.unprocessed.len() as u64;
    println!(
        "  accounting         accepted {} = processed {} + dead-lettered {} + unprocessed {}  {}",
        m.accepted,
        m.processed,
        m.dead_lettered,
        report.unprocessed.len(),
        if ok { "OK" } else { "MISMATCH" }
    );
    println!("  submitted by producers {submitted} (each accepted exactly once)");
    println!();
    println!("More: cargo run --release -p humpyard-perf -- --help   (throughput, compare, latency, entities)");
    ok && submitted == m.accepted
}

/// Submits round-robin over this producer's share of the streams until `stop`; a full shard
/// is answered by waiting for room (`submit_timeout`), never by dropping the event.
fn produce(engine: &Engine<Demo>, stop: &AtomicBool, p: u64, producers: u64, streams: u64) -> u64 {
    let ids: Vec<StreamId> = (p..streams)
        .step_by(producers as usize)
        .map(|i| StreamId::new(&format!("stream-{i}")).expect("valid id"))
        .collect();
    let mut sent = 0u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ p;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1024 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = &ids[(x % ids.len() as u64) as usize];
            let sent_at = (sent % SAMPLE_EVERY == 0).then(Instant::now);
            let event = Event::new(
                id.clone(),
                Tick {
                    seq: sent,
                    sent: sent_at,
                },
            );
            match engine.try_submit(event) {
                Ok(()) => {}
                Err(SubmitError::Full(event)) => match engine.submit_timeout(event, Duration::from_secs(5)) {
                    Ok(()) => {}
                    Err(e) => panic!("no room within 5 s: {e}"),
                },
                Err(e) => panic!("{e}"),
            }
            sent += 1;
        }
    }
    sent
}
