//! Open-loop latency: events are offered at a fixed rate whatever the system does, and each
//! event's latency runs from its *intended* send time to the end of its handler call, so a
//! stall delays every later event's clock too (no coordinated omission). humpyard and the
//! crossbeam pool run interleaved, in short slices, so that both meet the same machine noise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use humpyard::{Engine, Event, Handler, StreamId, SubmitError};

use crate::progress::Progress;
use crate::report::Row;
use crate::svg::QUANTILES;
use crate::systems::{lane_capacity, lane_of, stream_ids, StateMap};
use crate::workload::XorShift;

/// Latencies in nanoseconds, 1 ns to 60 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Records `intended -> now` into a shared histogram.
#[derive(Clone)]
struct Recorder {
    latencies: Arc<Mutex<Histogram<u64>>>,
    handled: Arc<AtomicU64>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            latencies: Arc::new(Mutex::new(histogram())),
            handled: Arc::new(AtomicU64::new(0)),
        }
    }

    fn record(&self, intended: Instant) {
        let ns = intended.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.latencies.lock().expect("histogram").saturating_record(ns.max(1));
        self.handled.fetch_add(1, Ordering::Release);
    }
}

/// A system under open-loop load.
trait Target {
    fn name(&self) -> &'static str;
    fn submit(&self, key: u64, intended: Instant);
    fn recorder(&self) -> &Recorder;
}

struct Stamp {
    intended: Instant,
    seq: u64,
}

struct Timed {
    recorder: Recorder,
}

impl Handler for Timed {
    type Payload = Stamp;
    type State = u64;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, state: &mut u64, event: &Event<Stamp>) -> Result<(), String> {
        *state = state.wrapping_add(event.payload().seq);
        self.recorder.record(event.payload().intended);
        Ok(())
    }
}

struct HumpyardTarget {
    engine: Engine<Timed>,
    ids: Vec<StreamId>,
    recorder: Recorder,
}

impl Target for HumpyardTarget {
    fn name(&self) -> &'static str {
        "humpyard"
    }

    fn submit(&self, key: u64, intended: Instant) {
        let event = Event::new(self.ids[key as usize].clone(), Stamp { intended, seq: key });
        if let Err(SubmitError::Full(event)) = self.engine.try_submit(event) {
            self.engine
                .submit_timeout(event, Duration::from_secs(30))
                .expect("room within 30 s");
        }
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

struct PoolTarget {
    lanes: Vec<crossbeam_channel::Sender<(u64, Instant)>>,
    recorder: Recorder,
}

impl PoolTarget {
    fn start(workers: usize) -> (PoolTarget, Vec<std::thread::JoinHandle<()>>) {
        let recorder = Recorder::new();
        let (lanes, threads) = (0..workers)
            .map(|_| {
                let (tx, rx) = crossbeam_channel::bounded::<(u64, Instant)>(lane_capacity(workers));
                let recorder = recorder.clone();
                let thread = std::thread::spawn(move || {
                    let mut states = StateMap::default();
                    while let Ok((key, intended)) = rx.recv() {
                        let state = states.entry(key).or_insert(0);
                        *state = state.wrapping_add(key);
                        recorder.record(intended);
                    }
                });
                (tx, thread)
            })
            .unzip();
        (PoolTarget { lanes, recorder }, threads)
    }
}

impl Target for PoolTarget {
    fn name(&self) -> &'static str {
        "crossbeam-pool"
    }

    fn submit(&self, key: u64, intended: Instant) {
        self.lanes[lane_of(key, self.lanes.len())]
            .send((key, intended))
            .expect("lane alive");
    }

    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

/// Options of `latency`.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    pub rate: u64,
    pub seconds: f64,
    pub streams: u64,
    pub workers: usize,
    pub slice: Duration,
    /// humpyard's shard count; `None`: the engine's default.
    pub shards: Option<usize>,
}

/// Offers `rate` events/s for `slice` to `target`, then waits until all were handled.
/// Returns how many were offered.
fn run_slice(target: &dyn Target, rate: u64, slice: Duration, streams: u64, rng: &mut XorShift) -> u64 {
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let before = target.recorder().handled.load(Ordering::Acquire);
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let intended = start + period.mul_f64(sent as f64);
        if intended - start >= slice {
            break;
        }
        // Wait for the intended time: sleep while it is far, yield when it is near (a spin
        // would hold a core the woken workers need, on a machine with few cores).
        loop {
            let now = Instant::now();
            if now >= intended {
                break;
            }
            if intended - now > Duration::from_micros(200) {
                std::thread::sleep(intended - now - Duration::from_micros(100));
            } else {
                std::thread::yield_now();
            }
        }
        target.submit(rng.next() % streams, intended);
        sent += 1;
    }
    while target.recorder().handled.load(Ordering::Acquire) < before + sent {
        std::thread::sleep(Duration::from_micros(200));
    }
    sent
}

/// One system's figures: the row and its percentile curve.
pub struct LatencyResult {
    pub row: Row,
    pub curve: Vec<(f64, f64)>,
    pub max_us: f64,
}

/// Runs the interleaved open-loop comparison.
pub fn run(o: &LatencyOptions) -> Vec<LatencyResult> {
    let recorder = Recorder::new();
    let mut builder = Engine::builder(Timed {
        recorder: recorder.clone(),
    })
    .workers(o.workers)
    .max_entities(o.streams.max(1_000_000));
    if let Some(shards) = o.shards {
        builder = builder.shards(shards);
    }
    let humpyard = HumpyardTarget {
        engine: builder.start().expect("valid configuration"),
        ids: stream_ids(o.streams),
        recorder,
    };
    let (pool, pool_threads) = PoolTarget::start(o.workers);
    let targets: [&dyn Target; 2] = [&humpyard, &pool];
    let names = targets.map(|t| t.name());
    let mut offered = [0u64; 2];
    let mut rng = XorShift::new(42);
    let slices = (o.seconds / o.slice.as_secs_f64()).ceil().max(1.0) as u64;
    // A short warm-up slice each, not recorded.
    for target in targets {
        run_slice(
            target,
            o.rate,
            o.slice.min(Duration::from_millis(200)),
            o.streams,
            &mut rng,
        );
        target.recorder().latencies.lock().expect("histogram").reset();
    }
    for n in 0..slices {
        for (i, target) in targets.iter().enumerate() {
            offered[i] += run_slice(*target, o.rate, o.slice, o.streams, &mut rng);
        }
        Progress::Stderr.update(&format!("  slice {}/{slices}", n + 1));
    }
    Progress::Stderr.finish();
    humpyard.engine.shutdown(Duration::from_secs(10));
    let PoolTarget {
        lanes,
        recorder: pool_recorder,
    } = pool;
    drop(lanes);
    for t in pool_threads {
        t.join().expect("pool worker");
    }
    let seconds = slices as f64 * o.slice.as_secs_f64();
    let scenario = format!("open-loop-{}k-per-s-uniform-{}", o.rate / 1000, short(o.streams));
    [(&humpyard.recorder, names[0], 0), (&pool_recorder, names[1], 1)]
        .into_iter()
        .map(|(recorder, system, i)| {
            let h = recorder.latencies.lock().expect("histogram");
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
            LatencyResult {
                row: Row {
                    scenario: scenario.clone(),
                    system: system.to_owned(),
                    events: offered[i],
                    seconds,
                    events_per_sec: offered[i] as f64 / seconds,
                    p50_us: Some(us(0.5)),
                    p99_us: Some(us(0.99)),
                    p999_us: Some(us(0.999)),
                    peak_rss_mb: None,
                },
                curve: QUANTILES.iter().map(|&q| (q, us(q))).collect(),
                max_us: h.max() as f64 / 1_000.0,
            }
        })
        .collect()
}

/// `10k`, `1m`, `500` for stream counts in scenario names.
pub fn short(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}
