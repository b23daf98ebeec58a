//! The pipeline (`humpyard::pipeline`): store -> engine with a durable checkpoint. Every event
//! handled, in stream order; the checkpoint never passes an event still in flight; parked
//! events count as processed; after a shutdown, a crash (a child process killed with SIGKILL) or a
//! server restart, nothing is lost and only events after the last checkpoint are handled again
//! (R-PG-5, R-FT-5).

#[cfg(feature = "postgres")]
mod log_capture;
mod store;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use humpyard::pipeline::{Pipeline, PipelineError, PipelineStats, StreamHandler};
use humpyard::store::ParkKind;
use humpyard::store::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RecordedEvent, SubscriptionConfig};
#[cfg(feature = "postgres")]
use humpyard::store::{PgEventStore, PgStoreConfig};
#[cfg(feature = "postgres")]
use humpyard::testing::ThrowawayPostgres;
use humpyard::{EngineConfig, StreamId};
use serde_json::json;
use store::probed::ProbedStore;
#[cfg(feature = "postgres")]
use store::server;

/// What a handler saw: (stream, version, position) in the order it handled them.
type Seen = Arc<Mutex<Vec<(String, u64, u64)>>>;

/// Records every event; fails the events whose `n` is a multiple of `fail_every` (0: none);
/// holds position `gate_at` until `gate` opens.
struct Recorder {
    seen: Seen,
    fail_every: u64,
    gate_at: u64,
    gate: Arc<AtomicBool>,
    pause: Duration,
    log: Option<Mutex<std::fs::File>>,
}

impl Recorder {
    fn new(seen: Seen) -> Recorder {
        Recorder {
            seen,
            fail_every: 0,
            gate_at: 0,
            gate: Arc::new(AtomicBool::new(true)),
            pause: Duration::ZERO,
            log: None,
        }
    }
}

impl StreamHandler for Recorder {
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) {}

    fn apply(&self, _: &mut (), _: &RecordedEvent) {}

    fn handle(&self, _: &(), e: &RecordedEvent) -> Result<(), String> {
        if e.position == self.gate_at {
            while !self.gate.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if self.fail_every > 0 && e.data["n"].as_u64().unwrap() % self.fail_every == 0 {
            return Err(format!("event {} fails", e.position));
        }
        if !self.pause.is_zero() {
            std::thread::sleep(self.pause);
        }
        if let Some(log) = &self.log {
            // One write per event: what a process killed mid-run has written survives it.
            let mut log = log.lock().unwrap();
            log.write_all(format!("{}\n", e.position).as_bytes()).unwrap();
        }
        self.seen
            .lock()
            .unwrap()
            .push((e.stream.as_str().to_owned(), e.version, e.position));
        Ok(())
    }
}

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// Appends `n` events numbered `from..from + n`, one per item, over `streams` streams, in
/// batches of 100. Returns the last position.
fn append_numbered(store: &dyn EventStore, from: u64, n: u64, streams: u64) -> u64 {
    let mut last = 0;
    let all: Vec<u64> = (from..from + n).collect();
    for chunk in all.chunks(100) {
        let batch = chunk
            .iter()
            .map(|&k| {
                (
                    sid(&format!("s-{}", k % streams)),
                    ExpectedVersion::Any,
                    vec![NewEvent::new("n", json!({ "n": k }))],
                )
            })
            .collect();
        for r in store.append_many(batch).unwrap() {
            last = r.unwrap().last_position;
        }
    }
    last
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Each stream's versions were handled in order, and each (stream, version) once.
fn assert_stream_order(seen: &[(String, u64, u64)]) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (stream, version, _) in seen {
        if let Some(previous) = last.insert(stream, *version) {
            assert!(previous < *version, "{stream}: version {version} after {previous}");
        }
    }
}

fn quick_subscription() -> SubscriptionConfig {
    let mut c = SubscriptionConfig::default();
    c.batch_size = 500;
    c.retry_backoff = Duration::from_millis(20);
    c.retry_backoff_max = Duration::from_millis(200);
    c
}

#[cfg(feature = "postgres")]
fn pg_store(url: &str) -> (Arc<PgEventStore>, String) {
    let mut config = PgStoreConfig::default();
    let schema = server::fresh_schema("pipe");
    config.schema = schema.clone();
    (Arc::new(PgEventStore::connect(url, config).unwrap()), schema)
}

/// Events appended before and while the pipeline runs are each handled once, in stream order,
/// and the final checkpoint is the last position.
fn every_event_once_in_stream_order(store: Arc<dyn EventStore>) {
    let before = append_numbered(&*store, 0, 1500, 40);
    let seen: Seen = Arc::default();
    let pipeline = Pipeline::builder(store.clone(), "counter", Recorder::new(seen.clone()))
        .checkpoint_interval(Duration::from_millis(50))
        .subscription(quick_subscription())
        .engine(EngineConfig::default().workers(2).shards(8).shard_capacity(64))
        .start()
        .unwrap();
    let last = append_numbered(&*store, 1500, 1500, 40);
    assert!(last > before);
    wait_for("every event handled", Duration::from_secs(60), || {
        pipeline.stats().handled == 3000
    });
    wait_for(
        "the checkpoint to reach the last position",
        Duration::from_secs(30),
        || pipeline.stats().checkpoint == last,
    );
    let report = pipeline.shutdown(Duration::from_secs(10));
    assert_eq!(report.checkpoint, last);
    assert_eq!(report.unprocessed, 0);
    assert_eq!(store.load_checkpoint("counter").unwrap(), Some(last));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3000);
    let positions: BTreeSet<u64> = seen.iter().map(|s| s.2).collect();
    assert_eq!(positions.len(), 3000, "no event twice");
    assert_stream_order(&seen);
}

// proves R-PERF-3 (a waiting event stalls only its shard): a pipeline, whose events wait in
// their shard for retries and store errors, keeps 8 shards a worker (at least 16) unless told
// otherwise, where the engine alone defaults to 2; a count set is kept.
#[test]
fn a_pipeline_defaults_to_eight_shards_a_worker() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    for (config, expected) in [
        (EngineConfig::default().workers(1), 16),
        (EngineConfig::default().workers(4), 32),
        (EngineConfig::default().workers(4).shards(4), 4),
    ] {
        let seen: Seen = Arc::default();
        let pipeline = Pipeline::builder(store.clone(), "sized", Recorder::new(seen))
            .engine(config)
            .start()
            .unwrap();
        assert_eq!(pipeline.engine_metrics().shard_queued.len(), expected);
        pipeline.shutdown(Duration::from_secs(10));
    }
}

// proves R-CONC-3 (each stream's events in order, through the pipeline)
#[test]
fn in_memory_pipeline_handles_every_event_once_in_stream_order() {
    every_event_once_in_stream_order(Arc::new(InMemoryStore::new()));
}

// proves R-PG-5: the durable path delivers every event once and checkpoints the last position
#[cfg(feature = "postgres")]
#[test]
fn postgres_pipeline_handles_every_event_once_in_stream_order() {
    every_event_once_in_stream_order(pg_store(&server::url()).0);
}

struct OpenOnDrop(Arc<AtomicBool>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

// proves R-FT-5 and R-SEC-3: an event a tool stored with a hostile stream id is reported (log
// and counter) in its place and passed; its raw text never reaches the log
#[cfg(feature = "postgres")]
#[test]
fn an_undecodable_event_is_reported_without_its_raw_text_and_passed() {
    log_capture::install();
    let (store, schema) = pg_store(&server::url());
    append_numbered(&*store, 0, 1, 1);
    let mut tool = postgres::Client::connect(&server::url(), postgres::NoTls).unwrap();
    tool.execute(
        // The schema name is the test's own generated one; values are bound.
        &format!(
            "insert into \"{schema}\".events (stream_id, version, event_id, event_type, data) \
             values ($1, 0, $2, 'tool', '{{\"n\": 1}}')"
        ),
        &[&"evil\nlevel=error msg=forged", &uuid::Uuid::new_v4()],
    )
    .unwrap();
    append_numbered(&*store, 2, 1, 1);
    let seen: Seen = Arc::default();
    let store: Arc<dyn EventStore> = store;
    let pipeline = Pipeline::builder(store.clone(), "careful", Recorder::new(seen.clone()))
        .checkpoint_interval(Duration::from_millis(20))
        .start()
        .unwrap();
    wait_for("the checkpoint to pass all three", Duration::from_secs(30), || {
        pipeline.stats().checkpoint == 3
    });
    let report = pipeline.shutdown(Duration::from_secs(10));
    assert_eq!((report.stats.handled, report.stats.undecodable), (2, 1));
    let lines = log_capture::LOG.0.lock().unwrap();
    let line = lines
        .iter()
        .find(|l| l.contains("cannot be decoded") && l.contains("subscriber=careful"))
        .expect("the undecodable event is logged");
    assert!(line.contains("position=2"), "{line:?}");
    assert!(
        !line.contains('\n') && !line.contains("forged"),
        "raw text in the log: {line:?}"
    );
}

// proves R-PG-5: the checkpoint never passes an event still being handled
#[test]
fn the_checkpoint_waits_for_an_event_still_in_flight() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let last = append_numbered(&*store, 0, 200, 20);
    let seen: Seen = Arc::default();
    let mut handler = Recorder::new(seen.clone());
    handler.gate_at = 7;
    let gate = Arc::new(AtomicBool::new(false));
    handler.gate = gate.clone();
    let pipeline = Pipeline::builder(store.clone(), "gated", handler)
        .checkpoint_interval(Duration::from_millis(20))
        .engine(EngineConfig::default().workers(2).shards(64))
        .start()
        .unwrap();
    // Opens the gate if an assertion fails, so that dropping the pipeline can drain it.
    let _open_on_panic = OpenOnDrop(gate.clone());
    // Most events are handled; not position 7, nor what waits behind it in its shard.
    wait_for("the other streams", Duration::from_secs(30), || {
        pipeline.stats().handled >= 150
    });
    std::thread::sleep(Duration::from_millis(200)); // ten checkpoint intervals
    assert_eq!(
        pipeline.stats().checkpoint,
        6,
        "the checkpoint stops below the event in flight"
    );
    assert_eq!(store.load_checkpoint("gated").unwrap(), Some(6));
    gate.store(true, Ordering::Release);
    wait_for("the checkpoint to pass it", Duration::from_secs(30), || {
        pipeline.stats().checkpoint == last
    });
    pipeline.shutdown(Duration::from_secs(10));
    assert_eq!(seen.lock().unwrap().len(), 200);
}

/// A store whose events sit at positions 1 and 21: positions 2 to 20 were rolled back (a gap
/// wider than a small window). Only reads and checkpoints.
struct GappyStore {
    events: Vec<RecordedEvent>,
    checkpoint: Mutex<Option<u64>>,
}

impl GappyStore {
    fn new() -> GappyStore {
        let event = |position: u64, stream: &str| RecordedEvent {
            position,
            stream: sid(stream),
            version: 0,
            id: uuid::Uuid::new_v4(),
            event_type: "n".to_owned(),
            data: json!({ "n": position }),
            metadata: json!({}),
            recorded_at: std::time::SystemTime::now(),
        };
        GappyStore {
            events: vec![event(1, "first"), event(21, "second")],
            checkpoint: Mutex::new(None),
        }
    }
}

impl EventStore for GappyStore {
    fn append(
        &self,
        _: &StreamId,
        _: ExpectedVersion,
        _: Vec<NewEvent>,
    ) -> Result<humpyard::store::Appended, humpyard::store::StoreError> {
        unimplemented!("read-only")
    }

    fn append_many(
        &self,
        _: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<Result<humpyard::store::Appended, humpyard::store::StoreError>>, humpyard::store::StoreError> {
        unimplemented!("read-only")
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, humpyard::store::StoreError> {
        Ok(self
            .events
            .iter()
            .filter(|e| &e.stream == stream && e.version >= from)
            .take(max)
            .cloned()
            .collect())
    }

    fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, humpyard::store::StoreError> {
        Ok(self
            .events
            .iter()
            .filter(|e| e.position > after)
            .take(max)
            .cloned()
            .collect())
    }

    fn load_checkpoint(&self, _: &str) -> Result<Option<u64>, humpyard::store::StoreError> {
        Ok(*self.checkpoint.lock().unwrap())
    }

    fn save_checkpoint(&self, _: &str, position: u64) -> Result<(), humpyard::store::StoreError> {
        let mut saved = self.checkpoint.lock().unwrap();
        *saved = Some(saved.unwrap_or(0).max(position));
        Ok(())
    }

    fn parked(
        &self,
        _: &str,
        _: Option<&StreamId>,
        _: u64,
        _: usize,
    ) -> Result<Vec<humpyard::store::ParkedEvent>, humpyard::store::StoreError> {
        Ok(Vec::new())
    }
}

// proves R-PG-5 (the done-flag window): a gap wider than the window is jumped over only once
// everything submitted before it is done; with an event still in flight below it, the reader
// waits, and the checkpoint never passes the event
#[test]
fn the_window_is_not_jumped_while_an_event_before_the_gap_is_in_flight() {
    let store = Arc::new(GappyStore::new());
    let seen: Seen = Arc::default();
    let mut handler = Recorder::new(seen.clone());
    handler.gate_at = 1;
    let gate = Arc::new(AtomicBool::new(false));
    handler.gate = gate.clone();
    let pipeline = Pipeline::builder(store.clone(), "jump", handler)
        .window(4)
        .checkpoint_interval(Duration::from_millis(5))
        .start()
        .unwrap();
    let _open_on_panic = OpenOnDrop(gate.clone());
    wait_for("position 1 in flight", Duration::from_secs(10), || {
        pipeline.stats().submitted >= 1
    });
    std::thread::sleep(Duration::from_millis(200)); // forty checkpoint intervals
    assert_eq!(
        pipeline.stats().checkpoint,
        0,
        "the checkpoint passed position 1 while it was in flight"
    );
    gate.store(true, Ordering::Release);
    wait_for("the checkpoint past the gap", Duration::from_secs(10), || {
        pipeline.stats().checkpoint == 21
    });
    pipeline.shutdown(Duration::from_secs(10));
    let positions: Vec<u64> = seen.lock().unwrap().iter().map(|(_, _, p)| *p).collect();
    assert_eq!(positions, [1, 21]);
}

// proves R-FT-5: an event that fails its last attempt is parked (hook, counter, store) with
// every later event of its stream behind it, and parked events count as processed
#[test]
fn failed_events_are_parked_with_their_stream_and_count_as_processed() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let last = append_numbered(&*store, 0, 300, 10);
    let seen: Seen = Arc::default();
    let mut handler = Recorder::new(seen.clone());
    handler.fail_every = 10;
    let letters = Arc::new(Mutex::new(Vec::new()));
    let for_hook = letters.clone();
    let pipeline = Pipeline::builder(store.clone(), "picky", handler)
        .checkpoint_interval(Duration::from_millis(20))
        .engine(
            EngineConfig::default()
                .workers(2)
                .retry_backoff(Duration::from_millis(1)),
        )
        .max_attempts(2)
        .on_parked(move |parked| for_hook.lock().unwrap().push((parked.position, parked.kind)))
        .start()
        .unwrap();
    wait_for("the checkpoint to reach the end", Duration::from_secs(30), || {
        pipeline.stats().checkpoint == last
    });
    let stored = pipeline.parked(0, usize::MAX).unwrap();
    let report = pipeline.shutdown(Duration::from_secs(10));
    let PipelineStats { handled, parked, .. } = report.stats;
    // Every event of stream s-0 fails: the first is parked for its failure, the other 29
    // behind it, untried.
    assert_eq!((handled, parked), (270, 30));
    let mut letters = letters.lock().unwrap().clone();
    letters.sort_unstable();
    let expected: Vec<(u64, ParkKind)> = (0..30)
        .map(|k| (k * 10 + 1, if k == 0 { ParkKind::Handler } else { ParkKind::Behind }))
        .collect();
    assert_eq!(letters, expected);
    assert_eq!(
        stored.iter().map(|p| (p.position, p.kind)).collect::<Vec<_>>(),
        expected,
        "parked in the store, in position order"
    );
    assert_eq!((stored[0].attempts, stored[0].message.as_str()), (2, "event 1 fails"));
    assert!(seen.lock().unwrap().iter().all(|(stream, _, _)| stream != "s-0"));
}

// proves R-FT-5 and R-PG-5: the checkpoint passes a parked event only after it is parked and
// the hook has it, so a crash meanwhile cannot lose it; a hook that panics still lets it pass
#[test]
fn the_checkpoint_passes_a_parked_event_only_after_its_hook_returns() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let last = append_numbered(&*store, 0, 20, 4);
    let seen: Seen = Arc::default();
    let mut handler = Recorder::new(seen.clone());
    handler.fail_every = 10; // n = 0 and 10: positions 1 and 11
    let (hook_store, checkpoints_in_hook) = (store.clone(), Arc::new(Mutex::new(Vec::new())));
    let for_hook = checkpoints_in_hook.clone();
    let pipeline = Pipeline::builder(store.clone(), "slow-letters", handler)
        .checkpoint_interval(Duration::from_millis(1))
        .engine(EngineConfig::default().workers(2))
        .max_attempts(1)
        .on_parked(move |parked| {
            let position = parked.position;
            // Many checkpoint intervals pass while the hook works.
            std::thread::sleep(Duration::from_millis(100));
            let saved = hook_store.load_checkpoint("slow-letters").unwrap().unwrap_or(0);
            for_hook.lock().unwrap().push((position, saved));
            if position == 11 {
                panic!("the parked-event sink failed");
            }
        })
        .start()
        .unwrap();
    wait_for("the checkpoint to reach the end", Duration::from_secs(30), || {
        pipeline.stats().checkpoint == last
    });
    let report = pipeline.shutdown(Duration::from_secs(10));
    // n = 0 (s-0) and n = 10 (s-2) fail; s-0's n = 4, 8, 12, 16 and s-2's n = 14, 18 are
    // parked behind them.
    assert_eq!((report.stats.parked, report.stats.panics), (8, 1));
    let mut in_hook = checkpoints_in_hook.lock().unwrap().clone();
    in_hook.sort_unstable();
    assert_eq!(in_hook.len(), 8);
    for (position, saved) in in_hook {
        assert!(
            saved < position,
            "checkpoint {saved} passed parked event {position} before its hook returned"
        );
    }
}

// proves R-PG-5 (the checkpoint interval) with R-BP-2's rule of no spinning: a zero interval
// does not turn an idle pipeline into a loop polling the store (the interval has a floor of 1 ms)
#[test]
fn a_zero_checkpoint_interval_does_not_poll_the_store_in_a_loop() {
    let store = Arc::new(ProbedStore::new());
    let last = append_numbered(&*store, 0, 10, 2);
    let pipeline = Pipeline::builder(store.clone(), "eager", Recorder::new(Seen::default()))
        .checkpoint_interval(Duration::ZERO)
        .start()
        .unwrap();
    wait_for("the checkpoint to reach the end", Duration::from_secs(30), || {
        pipeline.stats().checkpoint == last
    });
    let before = store.reads.load(Ordering::Relaxed);
    let idle = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let reads = store.reads.load(Ordering::Relaxed) - before;
    let elapsed_ms = idle.elapsed().as_millis() as u64;
    pipeline.shutdown(Duration::from_secs(10));
    // At most one read a millisecond, and some slack; a loop makes hundreds of thousands.
    assert!(
        reads <= 2 * elapsed_ms + 50,
        "{reads} reads in {elapsed_ms} ms while idle"
    );
}

// proves R-BP-3 for the pipeline: a window wider than supported is a typed error at start,
// not an overflow or a huge allocation
#[test]
fn an_absurd_window_is_a_typed_error() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    for window in [usize::MAX, (1 << 24) + 1] {
        match Pipeline::builder(store.clone(), "wide", Recorder::new(Seen::default()))
            .window(window)
            .start()
        {
            Err(PipelineError::WindowTooLarge { window: w, max }) => assert_eq!((w, max), (window, 1 << 24)),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a window of {window} was accepted"),
        }
    }
}

// proves R-LIFE-3 (shutdown within the caller's deadline) and R-PG-1 (no hang on a stuck store):
// shutdown keeps its deadline (plus READER_GRACE) while the reader is blocked in a store call,
// concurrent calls get the first call's report, and the reader saves the last checkpoint once
// the call returns
#[test]
fn shutdown_keeps_its_deadline_while_the_reader_is_blocked_in_the_store() {
    let store = Arc::new(ProbedStore::new());
    let last = append_numbered(&*store, 0, 50, 5);
    let pipeline = Arc::new(
        Pipeline::builder(store.clone(), "blocked", Recorder::new(Seen::default()))
            .checkpoint_interval(Duration::from_secs(3600))
            .start()
            .unwrap(),
    );
    wait_for("every event handled", Duration::from_secs(30), || {
        pipeline.stats().handled == 50
    });
    store.hold.store(true, Ordering::Release);
    wait_for("the reader to block in a read", Duration::from_secs(30), || {
        store.held.load(Ordering::Acquire) > 0
    });
    // Were shutdown to wait for the reader, this would end the wait (and fail the test below
    // instead of hanging it).
    let watchdog = store.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        watchdog.hold.store(false, Ordering::Release);
    });
    let started = Instant::now();
    let reports: Vec<_> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..2)
            .map(|_| s.spawn(|| pipeline.shutdown(Duration::from_millis(200))))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "shutdown took {took:?} with a 200 ms deadline"
    );
    assert!(
        reports[0].deadline_exceeded,
        "the reader had not finished: {:?}",
        reports[0]
    );
    assert_eq!(
        reports[0], reports[1],
        "a concurrent call returns the first call's report"
    );
    assert_eq!(pipeline.shutdown(Duration::ZERO), reports[0]);
    // The blocked call returns; the reader, detached, saves the last checkpoint itself.
    assert_eq!(store.load_checkpoint("blocked").unwrap(), None);
    store.hold.store(false, Ordering::Release);
    wait_for("the detached reader's save", Duration::from_secs(30), || {
        store.load_checkpoint("blocked").unwrap() == Some(last)
    });
}

/// Events handled by a run that stopped early, the checkpoint it left, and a second run.
fn resume_after(stopped_with: &[u64], checkpoint: u64, second_run: &[u64], last: u64) {
    assert!(checkpoint > 0, "the first run saved no progress");
    let first: BTreeSet<u64> = stopped_with.iter().copied().collect();
    let second: BTreeSet<u64> = second_run.iter().copied().collect();
    assert_eq!(second.len(), second_run.len(), "the second run handled an event twice");
    // At least once: every position handled by one run or the other.
    let all: BTreeSet<u64> = first.union(&second).copied().collect();
    assert_eq!(all, (1..=last).collect::<BTreeSet<_>>(), "an event was lost");
    // Nothing at or below the checkpoint is handled again; the repeats are the first run's
    // events after it.
    assert!(
        second.iter().all(|&p| p > checkpoint),
        "the second run went below the checkpoint"
    );
    assert!(first.iter().filter(|&&p| p <= checkpoint).count() as u64 == checkpoint);
}

// proves R-PG-5: a pipeline shut down mid-run resumes from its checkpoint and loses nothing
// proves R-LIFE-3: a shutdown without a deadline (`Duration::MAX`) drains and returns; adding
// it to `Instant::now()` overflowed and panicked before
#[test]
fn a_shutdown_without_a_deadline_drains_and_returns() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let last = append_numbered(&*store, 0, 50, 5);
    let pipeline = Pipeline::builder(store.clone(), "unhurried", Recorder::new(Seen::default()))
        .engine(EngineConfig::default().workers(1))
        .start()
        .unwrap();
    wait_for("every event", Duration::from_secs(30), || {
        pipeline.stats().checkpoint == last
    });
    let report = pipeline.shutdown(Duration::MAX);
    assert_eq!(report.checkpoint, last);
    assert_eq!(store.load_checkpoint("unhurried").unwrap(), Some(last));
}

#[test]
fn a_pipeline_shut_down_mid_run_resumes_from_its_checkpoint() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let last = append_numbered(&*store, 0, 2000, 50);
    let seen: Seen = Arc::default();
    let mut handler = Recorder::new(seen.clone());
    handler.pause = Duration::from_micros(500);
    let pipeline = Pipeline::builder(store.clone(), "resumer", handler)
        .checkpoint_interval(Duration::from_millis(20))
        .engine(EngineConfig::default().workers(2).shards(4).shard_capacity(32))
        .start()
        .unwrap();
    wait_for("some progress", Duration::from_secs(30), || {
        pipeline.stats().checkpoint > 100
    });
    let report = pipeline.shutdown(Duration::from_millis(1));
    assert!(report.checkpoint < last, "the run was meant to stop early");
    let first: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.2).collect();
    let checkpoint = store.load_checkpoint("resumer").unwrap().unwrap();
    assert_eq!(checkpoint, report.checkpoint);
    let again: Seen = Arc::default();
    let pipeline = Pipeline::builder(store.clone(), "resumer", Recorder::new(again.clone()))
        .engine(EngineConfig::default().workers(2))
        .start()
        .unwrap();
    wait_for("the rest", Duration::from_secs(30), || {
        let seen = again.lock().unwrap();
        seen.iter().map(|s| s.2).max() == Some(last) && seen.len() as u64 >= last - checkpoint
    });
    pipeline.shutdown(Duration::from_secs(10));
    let second: Vec<u64> = again.lock().unwrap().iter().map(|s| s.2).collect();
    resume_after(&first, checkpoint, &second, last);
}

#[cfg(feature = "postgres")]
const CHILD: &str = "HUMPYARD_PIPELINE_CHILD";

#[cfg(feature = "postgres")]
/// The child process of `a_pipeline_killed_mid_run_resumes_from_its_checkpoint`: runs a
/// pipeline on the schema it is given and logs each handled position to a file, until killed.
#[test]
#[ignore = "run by a_pipeline_killed_mid_run_resumes_from_its_checkpoint as its child process"]
fn pipeline_child_process() {
    let spec = std::env::var(CHILD).expect("run only as a child process");
    let mut parts = spec.split('\n');
    let (url, schema, log) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let mut config = PgStoreConfig::default();
    config.schema = schema.to_owned();
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::connect(url, config).unwrap());
    let mut handler = Recorder::new(Arc::default());
    handler.pause = Duration::from_micros(300);
    handler.log = Some(Mutex::new(
        std::fs::OpenOptions::new().append(true).create(true).open(log).unwrap(),
    ));
    let _pipeline = Pipeline::builder(store, "crashy", handler)
        .checkpoint_interval(Duration::from_millis(50))
        .engine(EngineConfig::default().workers(2).shards(4).shard_capacity(64))
        .start()
        .unwrap();
    // Until the parent kills this process.
    std::thread::sleep(Duration::from_secs(600));
}

// proves R-PG-5: a pipeline killed mid-run (SIGKILL) and restarted loses nothing, and handles
// again only what it had handled after its last checkpoint
#[cfg(feature = "postgres")]
#[test]
fn a_pipeline_killed_mid_run_resumes_from_its_checkpoint() {
    let url = server::url();
    let (store, schema) = pg_store(&url);
    let last = append_numbered(&*store, 0, 4000, 64);
    let dir = std::env::temp_dir().join(format!("humpyard-crash-{}-{schema}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("handled");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pipeline_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{url}\n{schema}\n{}", log.display()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let store: Arc<dyn EventStore> = store;
    wait_for(
        "the child to checkpoint part of the log",
        Duration::from_secs(120),
        || store.load_checkpoint("crashy").unwrap().unwrap_or(0) > 500,
    );
    child.kill().unwrap(); // SIGKILL: no shutdown, no final checkpoint
    child.wait().unwrap();
    let first: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    let checkpoint = store.load_checkpoint("crashy").unwrap().unwrap();
    assert!(
        checkpoint < last,
        "the child finished before it was killed; nothing was tested"
    );
    let again: Seen = Arc::default();
    let pipeline = Pipeline::builder(store.clone(), "crashy", Recorder::new(again.clone()))
        .subscription(quick_subscription())
        .engine(EngineConfig::default().workers(2))
        .start()
        .unwrap();
    wait_for("the rest", Duration::from_secs(60), || {
        pipeline.stats().checkpoint == last
    });
    pipeline.shutdown(Duration::from_secs(10));
    let second: Vec<u64> = again.lock().unwrap().iter().map(|s| s.2).collect();
    assert_stream_order(&again.lock().unwrap());
    resume_after(&first, checkpoint, &second, last);
    let repeated = second.iter().filter(|p| first.contains(p)).count();
    println!(
        "killed after {} events, checkpoint {checkpoint}; {repeated} handled again",
        first.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// proves R-PG-5 and R-FT-5: the server restarted mid-run: reads fail (counted), the pipeline
// recovers, and every event is handled exactly once
#[cfg(feature = "postgres")]
#[test]
fn a_pipeline_rides_out_a_server_restart() {
    let mut own = ThrowawayPostgres::start().unwrap();
    let mut config = PgStoreConfig::default();
    config.connect_timeout = Duration::from_secs(2);
    config.checkout_timeout = Duration::from_secs(2);
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::connect(&own.url(), config).unwrap());
    append_numbered(&*store, 0, 500, 16);
    let seen: Seen = Arc::default();
    let pipeline = Pipeline::builder(store.clone(), "survivor", Recorder::new(seen.clone()))
        .checkpoint_interval(Duration::from_millis(50))
        .subscription(quick_subscription())
        .engine(EngineConfig::default().workers(2))
        .start()
        .unwrap();
    wait_for("the first events", Duration::from_secs(30), || {
        pipeline.stats().checkpoint == 500
    });
    own.stop();
    wait_for("a failed read to be counted", Duration::from_secs(30), || {
        pipeline.stats().read_errors > 0
    });
    own.restart().unwrap();
    wait_for("the pool to recover", Duration::from_secs(60), || {
        store.load_checkpoint("survivor").is_ok()
    });
    let last = append_numbered(&*store, 500, 500, 16);
    wait_for("the events after the restart", Duration::from_secs(60), || {
        pipeline.stats().checkpoint == last
    });
    let report = pipeline.shutdown(Duration::from_secs(10));
    let seen = seen.lock().unwrap();
    let positions: BTreeSet<u64> = seen.iter().map(|s| s.2).collect();
    assert_eq!(positions.len(), seen.len(), "an event handled twice");
    assert_eq!(seen.len(), 1000);
    assert_eq!(report.checkpoint, last);
    assert_stream_order(&seen);
}
