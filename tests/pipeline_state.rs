//! A pipeline's state and failures: each stream's state rebuilt from the store after a restart,
//! a reap, an eviction or a panic (the handler always sees the fold of every earlier event);
//! failed events parked in stream order, replayed and discarded; `wait_for`; filters; rewinds;
//! store errors that are not attempts. Run on both stores (R-FT-4, R-FT-5, R-PG-5, R-LIFE-3,
//! R-CONC-3).

mod store;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use humpyard::pipeline::{Pipeline, ReplayError, StreamHandler};
use humpyard::store::{EventFilter, EventStore, ExpectedVersion, InMemoryStore, NewEvent, ParkKind, RecordedEvent};
#[cfg(feature = "postgres")]
use humpyard::store::{PgEventStore, PgStoreConfig};
use humpyard::{EngineConfig, StreamId};
use serde_json::json;
#[cfg(feature = "postgres")]
use store::server;

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// The fold the handler keeps: the sum of the amounts and how many events went in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Totals {
    sum: i64,
    count: u64,
}

/// What `handle` saw: (stream, version, position, the state it was given).
type Seen = Arc<Mutex<Vec<(String, u64, u64, Totals)>>>;

/// Sums each account's amounts. Fails (or panics in) the positions it is told to, until healed.
#[derive(Default)]
struct Ledger {
    seen: Seen,
    /// Positions whose `handle` fails while `healed` is false.
    fail: Mutex<HashSet<u64>>,
    /// Positions whose `handle` panics once.
    panic_once: Mutex<HashSet<u64>>,
    /// Versions (stream, version) whose `apply` panics once.
    apply_panic_once: Mutex<HashSet<(String, u64)>>,
    healed: AtomicBool,
    snapshots: bool,
    /// A position whose `handle` waits until `release` is set (0: none).
    hold: AtomicU64,
    release: AtomicBool,
    /// `cleanup` and `encode_state` panic.
    hostile: AtomicBool,
}

impl StreamHandler for Ledger {
    type State = Totals;
    type Error = String;

    fn init(&self, _: &StreamId) -> Totals {
        Totals::default()
    }

    fn apply(&self, state: &mut Totals, event: &RecordedEvent) {
        if self
            .apply_panic_once
            .lock()
            .unwrap()
            .remove(&(event.stream.as_str().to_owned(), event.version))
        {
            panic!("planned panic in apply");
        }
        state.sum += event.data["amount"].as_i64().unwrap();
        state.count += 1;
    }

    fn handle(&self, state: &Totals, event: &RecordedEvent) -> Result<(), String> {
        if self.hold.load(Ordering::SeqCst) == event.position {
            while !self.release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if self.panic_once.lock().unwrap().remove(&event.position) {
            panic!("planned panic in handle");
        }
        if !self.healed.load(Ordering::SeqCst) && self.fail.lock().unwrap().contains(&event.position) {
            return Err(format!("position {} refused", event.position));
        }
        self.seen
            .lock()
            .unwrap()
            .push((event.stream.as_str().to_owned(), event.version, event.position, *state));
        Ok(())
    }

    fn encode_state(&self, state: &Totals) -> Option<serde_json::Value> {
        if self.hostile.load(Ordering::SeqCst) {
            panic!("planned panic in encode_state");
        }
        self.snapshots
            .then(|| json!({ "sum": state.sum, "count": state.count }))
    }

    fn cleanup(&self, _: &StreamId, _: Totals) {
        if self.hostile.load(Ordering::SeqCst) {
            panic!("planned panic in cleanup");
        }
    }

    fn decode_state(&self, _: &StreamId, data: &serde_json::Value) -> Option<Totals> {
        Some(Totals {
            sum: data["sum"].as_i64()?,
            count: data["count"].as_u64()?,
        })
    }
}

fn quiet_planned_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let planned = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|s| s.starts_with("planned"));
        if !planned {
            default(info);
        }
    }));
}

/// Appends one event per amount to `stream`; returns the last position.
fn deposit(store: &dyn EventStore, stream: &str, amounts: &[i64]) -> u64 {
    let events = amounts
        .iter()
        .map(|a| NewEvent::new("deposited", json!({ "amount": a })))
        .collect();
    store
        .append(&sid(stream), ExpectedVersion::Any, events)
        .unwrap()
        .last_position
}

/// Checks that every state `handle` saw is the fold of the stream's stored events before it.
fn assert_folds(store: &dyn EventStore, seen: &Seen) -> usize {
    let seen = seen.lock().unwrap();
    let mut streams: HashMap<String, Vec<i64>> = HashMap::new();
    for (stream, version, position, state) in seen.iter() {
        let amounts = streams.entry(stream.clone()).or_insert_with(|| {
            store
                .read_stream(&sid(stream), 0, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| e.data["amount"].as_i64().unwrap())
                .collect()
        });
        let expected = Totals {
            sum: amounts[..*version as usize].iter().sum(),
            count: *version,
        };
        assert_eq!(
            *state, expected,
            "{stream} version {version} (position {position}) saw a state that is not the fold of its stream"
        );
    }
    seen.len()
}

fn start(store: &Arc<dyn EventStore>, subscriber: &str, ledger: Arc<Ledger>) -> Pipeline<Shared> {
    builder(store, subscriber, ledger).start().unwrap()
}

fn builder(
    store: &Arc<dyn EventStore>,
    subscriber: &str,
    ledger: Arc<Ledger>,
) -> humpyard::pipeline::PipelineBuilder<Shared> {
    Pipeline::builder(store.clone(), subscriber, Shared(ledger))
        .checkpoint_interval(Duration::from_millis(10))
        .engine(
            EngineConfig::default()
                .workers(2)
                .retry_backoff(Duration::from_millis(1))
                .retry_backoff_max(Duration::from_millis(5)),
        )
}

/// The ledger behind an `Arc`, so that the test keeps a handle on it.
struct Shared(Arc<Ledger>);

impl StreamHandler for Shared {
    type State = Totals;
    type Error = String;

    fn init(&self, stream: &StreamId) -> Totals {
        self.0.init(stream)
    }

    fn apply(&self, state: &mut Totals, event: &RecordedEvent) {
        self.0.apply(state, event)
    }

    fn handle(&self, state: &Totals, event: &RecordedEvent) -> Result<(), String> {
        self.0.handle(state, event)
    }

    fn encode_state(&self, state: &Totals) -> Option<serde_json::Value> {
        self.0.encode_state(state)
    }

    fn decode_state(&self, stream: &StreamId, data: &serde_json::Value) -> Option<Totals> {
        self.0.decode_state(stream, data)
    }

    fn cleanup(&self, stream: &StreamId, state: Totals) {
        self.0.cleanup(stream, state)
    }
}

const WAIT: Duration = Duration::from_secs(30);

/// A restart in the middle of every stream: the second run's states go on from the first's.
fn state_survives_a_restart(store: Arc<dyn EventStore>) {
    for round in 0..3 {
        for account in 0..4 {
            deposit(&*store, &format!("acct-{account}"), &[round * 100 + account + 1, 7]);
        }
    }
    let ledger = Arc::new(Ledger::default());
    let first = start(&store, "ledger", ledger.clone());
    assert!(first.wait_for(24, WAIT));
    first.shutdown(WAIT);
    let mut last = 0;
    for account in 0..4 {
        last = deposit(&*store, &format!("acct-{account}"), &[1000]);
    }
    let second = Arc::new(Ledger::default());
    let pipeline = start(&store, "ledger", second.clone());
    assert!(pipeline.wait_for(last, WAIT));
    let report = pipeline.shutdown(WAIT);
    assert_eq!(assert_folds(&*store, &ledger.seen), 24);
    assert_eq!(assert_folds(&*store, &second.seen), 4, "only the new events");
    // acct-0: 1 + 7 + 101 + 7 + 201 + 7 = 324 before the 1000.
    let seen = second.seen.lock().unwrap();
    let acct0 = seen.iter().find(|s| s.0 == "acct-0").unwrap();
    assert_eq!(acct0.3, Totals { sum: 324, count: 6 });
    assert_eq!(report.stats.rehydrations, 4);
    assert_eq!(report.stats.rehydrated_events, 24);
}

// proves R-PG-5 and R-LIFE-3: a pipeline restarted mid-stream hands each event the fold of
// every earlier event of its stream (before, the state started from `init` again: 1 + 1000
// instead of 324 + 1000)
#[test]
fn in_memory_state_survives_a_restart() {
    state_survives_a_restart(Arc::new(InMemoryStore::new()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_state_survives_a_restart() {
    state_survives_a_restart(pg());
}

/// Reaps and evictions in the middle of streams: the states are rebuilt.
fn state_survives_reaps_and_evictions(store: Arc<dyn EventStore>) {
    let ledger = Arc::new(Ledger::default());
    let pipeline = builder(&store, "churn", ledger.clone())
        .engine(
            EngineConfig::default()
                .workers(2)
                .shards(1)
                .max_entities(1)
                .idle_timeout(Duration::from_millis(20)),
        )
        .start()
        .unwrap();
    let mut last = 0;
    for round in 0..5 {
        for account in 0..3 {
            // Interleaved streams on one shard with room for one entity: each evicts another.
            last = deposit(&*store, &format!("acct-{account}"), &[round * 10 + account]);
        }
    }
    assert!(pipeline.wait_for(last, WAIT));
    // Idle long enough to be reaped.
    let deadline = Instant::now() + WAIT;
    while pipeline.engine_metrics().entities_reaped == 0 {
        assert!(Instant::now() < deadline, "nothing was reaped");
        std::thread::sleep(Duration::from_millis(10));
    }
    for account in 0..3 {
        last = deposit(&*store, &format!("acct-{account}"), &[500]);
    }
    assert!(pipeline.wait_for(last, WAIT));
    let metrics = pipeline.engine_metrics();
    let report = pipeline.shutdown(WAIT);
    assert!(metrics.entities_evicted > 0, "{metrics:?}");
    assert_eq!(assert_folds(&*store, &ledger.seen), 18);
    assert!(report.stats.rehydrations >= 3);
}

// proves R-PG-5 (and the engine's reap and cap, R-MEM-1): an entity reaped for idleness or
// evicted by the cap gets its state back from the store, not from `init`
#[test]
fn in_memory_state_survives_reaps_and_evictions() {
    state_survives_reaps_and_evictions(Arc::new(InMemoryStore::new()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_state_survives_reaps_and_evictions() {
    state_survives_reaps_and_evictions(pg());
}

/// Panics in `handle` and in `apply` mid-stream: the next state is rebuilt, and the effects of
/// a handled event are not repeated.
fn state_survives_panics(store: Arc<dyn EventStore>) {
    quiet_planned_panics();
    let ledger = Arc::new(Ledger::default());
    let mut last = 0;
    for _ in 0..6 {
        last = deposit(&*store, "acct-a", &[3]);
        deposit(&*store, "acct-b", &[5]);
    }
    // acct-a's positions are 1, 3, 5, ...: position 5 (version 2) panics once in handle;
    // acct-b's version 3 panics once in apply, after its handle succeeded.
    ledger.panic_once.lock().unwrap().insert(5);
    ledger.apply_panic_once.lock().unwrap().insert(("acct-b".to_owned(), 3));
    let pipeline = start(&store, "panicky", ledger.clone());
    assert!(pipeline.wait_for(last + 1, WAIT));
    let report = pipeline.shutdown(WAIT);
    assert_eq!(assert_folds(&*store, &ledger.seen), 12, "each event handled once");
    assert_eq!(
        (report.stats.handled, report.stats.parked, report.stats.panics),
        (12, 0, 1)
    );
}

// proves R-FT-1 and R-CONC-3 in a pipeline: after a panic (in `handle`, or in `apply` after a
// handled event) the stream's next state is rebuilt from the store, and a handled event's
// effects are not repeated
#[test]
fn in_memory_state_survives_panics() {
    state_survives_panics(Arc::new(InMemoryStore::new()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_state_survives_panics() {
    state_survives_panics(pg());
}

/// A failing event parks its stream; replay after healing handles the parked events in order.
fn failures_park_their_stream_in_order(store: Arc<dyn EventStore>) {
    let ledger = Arc::new(Ledger::default());
    let parked_hook = Arc::new(Mutex::new(Vec::new()));
    let mut positions = Vec::new();
    for v in 0..5 {
        positions.push(deposit(&*store, "acct-a", &[v + 1]));
        deposit(&*store, "acct-b", &[10]);
    }
    let last = positions[4] + 1;
    // acct-a's version 2 fails.
    ledger.fail.lock().unwrap().insert(positions[2]);
    let for_hook = parked_hook.clone();
    let pipeline = builder(&store, "parker", ledger.clone())
        .max_attempts(2)
        .on_parked(move |p| for_hook.lock().unwrap().push((p.position, p.kind)))
        .start()
        .unwrap();
    assert!(pipeline.wait_for(last, WAIT), "parked events count as processed");
    let parked = pipeline.parked(0, usize::MAX).unwrap();
    assert_eq!(
        parked
            .iter()
            .map(|p| (p.position, p.kind, p.attempts))
            .collect::<Vec<_>>(),
        [
            (positions[2], ParkKind::Handler, 2),
            (positions[3], ParkKind::Behind, 0),
            (positions[4], ParkKind::Behind, 0)
        ]
    );
    assert_eq!(parked[0].message, format!("position {} refused", positions[2]));
    assert_eq!(parked[0].stream.as_str(), "acct-a");
    assert_eq!(parked_hook.lock().unwrap().len(), 3);
    assert_eq!(pipeline.parked_streams(), 1);
    // Still failing: the replay stops at the first, which stays parked with one more attempt.
    let again = pipeline.replay(&sid("acct-a"), WAIT).unwrap();
    assert_eq!(again.replayed, 0);
    assert_eq!(again.still_parked, 3);
    assert_eq!(
        again.failed.as_ref().map(|f| (f.position, f.attempts)),
        Some((positions[2], 3))
    );
    // A new event of the parked stream parks behind.
    let later = deposit(&*store, "acct-a", &[100]);
    assert!(pipeline.wait_for(later, WAIT));
    assert_eq!(pipeline.parked(0, usize::MAX).unwrap().len(), 4);
    ledger.healed.store(true, Ordering::SeqCst);
    let report = pipeline.replay(&sid("acct-a"), WAIT).unwrap();
    assert_eq!((report.replayed, report.still_parked, report.failed), (4, 0, None));
    assert!(pipeline.parked(0, usize::MAX).unwrap().is_empty());
    assert_eq!(pipeline.parked_streams(), 0);
    assert!(matches!(
        pipeline.replay(&sid("acct-a"), WAIT),
        Err(ReplayError::NotParked)
    ));
    // The stream runs again.
    let after = deposit(&*store, "acct-a", &[1000]);
    assert!(pipeline.wait_for(after, WAIT));
    pipeline.shutdown(WAIT);
    let seen = ledger.seen.lock().unwrap().clone();
    let a: Vec<u64> = seen.iter().filter(|s| s.0 == "acct-a").map(|s| s.1).collect();
    assert_eq!(a, [0, 1, 2, 3, 4, 5, 6], "acct-a in version order, each once");
    assert_eq!(
        seen.iter().filter(|s| s.0 == "acct-b").count(),
        5,
        "acct-b never waited"
    );
    assert_folds(&*store, &ledger.seen);
}

// proves R-FT-5 and R-CONC-3: an event that fails its last attempt is parked durably with
// every later event of its stream behind it (never handled on a state that missed it); a
// replay handles them in order on the folded state; other streams go on
#[test]
fn in_memory_failures_park_their_stream_in_order() {
    failures_park_their_stream_in_order(Arc::new(InMemoryStore::new()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_failures_park_their_stream_in_order() {
    failures_park_their_stream_in_order(pg());
}

/// Parked events survive a restart; a discard of the first replays the rest.
fn parked_events_survive_a_restart_and_discards(store: Arc<dyn EventStore>) {
    let ledger = Arc::new(Ledger::default());
    let mut positions = Vec::new();
    for v in 0..4 {
        positions.push(deposit(&*store, "acct-a", &[v + 1]));
    }
    ledger.fail.lock().unwrap().insert(positions[1]);
    let first = builder(&store, "discarder", ledger.clone())
        .max_attempts(1)
        .start()
        .unwrap();
    assert!(first.wait_for(positions[3], WAIT));
    first.shutdown(WAIT);
    assert_eq!(store.load_checkpoint("discarder").unwrap(), Some(positions[3]));

    let second_ledger = Arc::new(Ledger::default());
    second_ledger.fail.lock().unwrap().insert(positions[1]);
    let pipeline = builder(&store, "discarder", second_ledger.clone())
        .max_attempts(1)
        .start()
        .unwrap();
    assert_eq!(pipeline.parked_streams(), 1, "loaded from the store");
    let later = deposit(&*store, "acct-a", &[50]);
    assert!(pipeline.wait_for(later, WAIT));
    assert_eq!(
        pipeline.parked(0, usize::MAX).unwrap().len(),
        4,
        "parked behind, after the restart"
    );
    assert!(matches!(
        pipeline.discard(positions[0], WAIT),
        Err(ReplayError::NotParked)
    ));
    // Discarding one behind the first changes nothing else.
    let report = pipeline.discard(positions[3], WAIT).unwrap();
    assert!(report.discarded);
    assert_eq!((report.replayed, report.still_parked), (0, 3));
    // Discarding the first replays the rest, on the fold of every stored event before each.
    let report = pipeline.discard(positions[1], WAIT).unwrap();
    assert_eq!((report.replayed, report.still_parked, report.failed), (2, 0, None));
    pipeline.shutdown(WAIT);
    let versions: Vec<u64> = second_ledger.seen.lock().unwrap().iter().map(|s| s.1).collect();
    assert_eq!(versions, [2, 4]);
    assert_folds(&*store, &second_ledger.seen);
}

// proves R-FT-5 and R-LIFE-3: parked events are durable (a restart keeps the stream parked and
// parks its new events behind); discarding the first parked event replays those behind it
#[test]
fn in_memory_parked_events_survive_a_restart_and_discards() {
    parked_events_survive_a_restart_and_discards(Arc::new(InMemoryStore::new()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_parked_events_survive_a_restart_and_discards() {
    parked_events_survive_a_restart_and_discards(pg());
}

/// `wait_for`: true once the watermark reaches the position, false at the timeout or after the
/// pipeline stopped short of it.
fn wait_for_is_signalled(store: Arc<dyn EventStore>) {
    let ledger = Arc::new(Ledger::default());
    let last = deposit(&*store, "acct-a", &[1, 2, 3]);
    let pipeline = Arc::new(start(&store, "waiter", ledger.clone()));
    assert!(pipeline.wait_for(last, WAIT));
    assert!(pipeline.watermark() >= last);
    let started = Instant::now();
    assert!(!pipeline.wait_for(last + 1, Duration::from_millis(100)));
    assert!(started.elapsed() >= Duration::from_millis(100));
    // A waiter blocked on a position not yet appended is woken when it is handled.
    let waiter = {
        let pipeline = pipeline.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            (pipeline.wait_for(last + 2, WAIT), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let appended = deposit(&*store, "acct-b", &[4, 5]);
    assert_eq!(appended, last + 2);
    let (reached, took) = waiter.join().unwrap();
    assert!(reached);
    assert!(took < WAIT / 2, "woken by the timeout, not the watermark: {took:?}");
    // Stopped short of a position: false at once, not at the timeout.
    let waiter = {
        let pipeline = pipeline.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            (pipeline.wait_for(u64::MAX, WAIT), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    pipeline.shutdown(WAIT);
    let (reached, took) = waiter.join().unwrap();
    assert!(!reached);
    assert!(took < WAIT / 2, "{took:?}");
}

// proves R-LIFE-3: `wait_for` is woken by the watermark's advance and by the pipeline's stop
#[test]
fn in_memory_wait_for_is_signalled() {
    wait_for_is_signalled(Arc::new(InMemoryStore::new()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_wait_for_is_signalled() {
    wait_for_is_signalled(pg());
}

/// Only the events a filter passes are handled, and the watermark passes the others.
fn filters_pass_what_they_leave_out(store: Arc<dyn EventStore>) {
    let ledger = Arc::new(Ledger::default());
    deposit(&*store, "order-1", &[1, 2]);
    deposit(&*store, "acct-1", &[3]);
    // Left out by the type filter, but part of order-1's fold.
    store
        .append(
            &sid("order-1"),
            ExpectedVersion::Any,
            vec![NewEvent::new("refunded", json!({ "amount": -2 }))],
        )
        .unwrap();
    deposit(&*store, "order-1", &[9]);
    store
        .append(
            &sid("order-2"),
            ExpectedVersion::Any,
            vec![NewEvent::new("cancelled", json!({ "amount": 0 }))],
        )
        .unwrap();
    let last = deposit(&*store, "acct-2", &[4]);
    let pipeline = builder(&store, "orders", ledger.clone())
        .filter(EventFilter::all().stream_prefix("order-").event_types(["deposited"]))
        .start()
        .unwrap();
    assert!(pipeline.wait_for(last, WAIT), "positions left out count as passed");
    let report = pipeline.shutdown(WAIT);
    assert_eq!(report.checkpoint, last);
    let seen: Vec<(String, u64)> = ledger.seen.lock().unwrap().iter().map(|s| (s.0.clone(), s.1)).collect();
    assert_eq!(
        seen,
        [
            ("order-1".to_owned(), 0),
            ("order-1".to_owned(), 1),
            ("order-1".to_owned(), 3)
        ]
    );
    // Version 3 saw the fold of 0..3, the refund the filter left out included.
    assert_folds(&*store, &ledger.seen);
    assert_eq!(report.stats.rehydrated_events, 1, "only the left-out version was read");
}

// proves R-PG-5 with filters: a filtered subscription handles only what passes, and its
// checkpoint moves over the positions the filter leaves out
#[test]
fn in_memory_filters_pass_what_they_leave_out() {
    filters_pass_what_they_leave_out(Arc::new(InMemoryStore::new()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_filters_pass_what_they_leave_out() {
    filters_pass_what_they_leave_out(pg());
}

/// A rewind: the checkpoint moved back, and the next run handles again from there.
fn a_rewind_handles_again(store: Arc<dyn EventStore>) {
    let last = deposit(&*store, "acct-a", &[1, 2, 3, 4]);
    let ledger = Arc::new(Ledger::default());
    let first = start(&store, "projection", ledger.clone());
    assert!(first.wait_for(last, WAIT));
    first.shutdown(WAIT);
    store.save_checkpoint("projection", 1).unwrap();
    assert_eq!(
        store.load_checkpoint("projection").unwrap(),
        Some(last),
        "saves never move back"
    );
    store.reset_checkpoint("projection", 2).unwrap();
    assert_eq!(store.load_checkpoint("projection").unwrap(), Some(2));
    let again = Arc::new(Ledger::default());
    let second = start(&store, "projection", again.clone());
    assert!(second.wait_for(last, WAIT));
    second.shutdown(WAIT);
    let versions: Vec<u64> = again.seen.lock().unwrap().iter().map(|s| s.1).collect();
    assert_eq!(versions, [2, 3]);
    assert_folds(&*store, &again.seen);
}

// proves R-PG-5: `reset_checkpoint` is the one way back, and a rebuilt run sees folded states
#[test]
fn in_memory_a_rewind_handles_again() {
    a_rewind_handles_again(Arc::new(InMemoryStore::new()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_a_rewind_handles_again() {
    a_rewind_handles_again(pg());
}

/// Snapshots: saved every N versions; a rebuild folds only the events after the newest one not
/// past the version; one that does not decode is ignored; another state version is not loaded.
fn snapshots_bound_the_rebuild(store: Arc<dyn EventStore>) {
    let ledger = Arc::new(Ledger {
        snapshots: true,
        ..Ledger::default()
    });
    let amounts: Vec<i64> = (1..=25).collect();
    let last = deposit(&*store, "acct-a", &amounts);
    let first = builder(&store, "snap", ledger.clone())
        .snapshot_every(10, 1)
        .start()
        .unwrap();
    assert!(first.wait_for(last, WAIT));
    let report = first.shutdown(WAIT);
    assert_eq!(report.stats.snapshots_saved, 2, "after versions 9 and 19");
    let newest = store
        .load_snapshot("snap", &sid("acct-a"), 1, u64::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(newest.version, 19);
    assert_eq!(newest.data, json!({ "sum": 210, "count": 20 }));

    let more = deposit(&*store, "acct-a", &[100]);
    let second = Arc::new(Ledger {
        snapshots: true,
        ..Ledger::default()
    });
    let pipeline = builder(&store, "snap", second.clone())
        .snapshot_every(10, 1)
        .start()
        .unwrap();
    assert!(pipeline.wait_for(more, WAIT));
    let report = pipeline.shutdown(WAIT);
    assert_eq!(
        (report.stats.rehydrations, report.stats.rehydrated_events),
        (1, 5),
        "versions 20-24 only"
    );
    assert_folds(&*store, &second.seen);

    // A changed state type (state version 2) never loads version 1's snapshots.
    let more = deposit(&*store, "acct-a", &[1000]);
    let third = Arc::new(Ledger {
        snapshots: true,
        ..Ledger::default()
    });
    let pipeline = builder(&store, "snap", third.clone())
        .snapshot_every(10, 2)
        .start()
        .unwrap();
    assert!(pipeline.wait_for(more, WAIT));
    let report = pipeline.shutdown(WAIT);
    assert_eq!(report.stats.rehydrated_events, 26);
    assert_folds(&*store, &third.seen);

    // A snapshot that does not decode is ignored: the fold starts from an older one.
    let mut broken = newest.clone();
    broken.version = 25;
    broken.data = json!("not a state");
    store.save_snapshot(&broken).unwrap();
    let more = deposit(&*store, "acct-a", &[7]);
    let fourth = Arc::new(Ledger {
        snapshots: true,
        ..Ledger::default()
    });
    let pipeline = builder(&store, "snap", fourth.clone())
        .snapshot_every(10, 1)
        .start()
        .unwrap();
    assert!(pipeline.wait_for(more, WAIT));
    let report = pipeline.shutdown(WAIT);
    assert_eq!(report.stats.snapshot_errors, 1);
    assert_eq!(report.stats.rehydrated_events, 7, "from version 19's snapshot: 20..=26");
    assert_folds(&*store, &fourth.seen);
}

// proves R-PG-5: snapshots bound what a rebuild reads, keyed by the user's state version
#[test]
fn in_memory_snapshots_bound_the_rebuild() {
    snapshots_bound_the_rebuild(Arc::new(InMemoryStore::new()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_snapshots_bound_the_rebuild() {
    snapshots_bound_the_rebuild(pg());
}

/// A store whose `read_stream` and `park` fail while `failing` is set (a store that does not
/// answer), and count their calls.
struct Flaky {
    inner: InMemoryStore,
    failing: AtomicBool,
    failures: AtomicU64,
    /// The next `unpark` fails (after doing nothing).
    fail_unpark_once: AtomicBool,
}

impl Flaky {
    fn new() -> Flaky {
        Flaky {
            inner: InMemoryStore::new(),
            failing: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            fail_unpark_once: AtomicBool::new(false),
        }
    }
}

impl Flaky {
    fn fail(&self) -> Result<(), humpyard::store::StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(humpyard::store::StoreError::Unsupported("planned outage"));
        }
        Ok(())
    }
}

impl EventStore for Flaky {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<humpyard::store::Appended, humpyard::store::StoreError> {
        self.inner.append(stream, expected, events)
    }

    fn append_many(
        &self,
        batch: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<Result<humpyard::store::Appended, humpyard::store::StoreError>>, humpyard::store::StoreError> {
        self.inner.append_many(batch)
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, humpyard::store::StoreError> {
        self.fail()?;
        self.inner.read_stream(stream, from, max)
    }

    fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, humpyard::store::StoreError> {
        self.inner.read_all(after, max)
    }

    fn load_checkpoint(&self, subscriber: &str) -> Result<Option<u64>, humpyard::store::StoreError> {
        self.inner.load_checkpoint(subscriber)
    }

    fn save_checkpoint(&self, subscriber: &str, position: u64) -> Result<(), humpyard::store::StoreError> {
        self.inner.save_checkpoint(subscriber, position)
    }

    fn park(&self, event: &humpyard::store::ParkedEvent) -> Result<bool, humpyard::store::StoreError> {
        self.fail()?;
        self.inner.park(event)
    }

    fn parked(
        &self,
        subscriber: &str,
        stream: Option<&StreamId>,
        after: u64,
        max: usize,
    ) -> Result<Vec<humpyard::store::ParkedEvent>, humpyard::store::StoreError> {
        self.inner.parked(subscriber, stream, after, max)
    }

    fn unpark(&self, subscriber: &str, position: u64) -> Result<bool, humpyard::store::StoreError> {
        if self.fail_unpark_once.swap(false, Ordering::SeqCst) {
            return Err(humpyard::store::StoreError::Unsupported("planned outage"));
        }
        self.inner.unpark(subscriber, position)
    }
}

// proves R-FT-4: a store error while rebuilding a state or parking an event is not a failed
// attempt: the stream waits with backoff and tries again, and the event is neither parked for
// it nor handled on a state that missed events
#[test]
fn store_errors_while_rebuilding_or_parking_are_not_attempts() {
    let store = Arc::new(Flaky::new());
    let dyn_store: Arc<dyn EventStore> = store.clone();
    deposit(&*dyn_store, "acct-a", &[1, 2]);
    let ledger = Arc::new(Ledger::default());
    let first = builder(&dyn_store, "flaky", ledger.clone())
        .max_attempts(1)
        .start()
        .unwrap();
    assert!(first.wait_for(2, WAIT));
    first.shutdown(WAIT);

    // The next run must rebuild acct-a's state from version 2 on; the store fails meanwhile.
    let last = deposit(&*dyn_store, "acct-a", &[3]);
    store.failing.store(true, Ordering::SeqCst);
    let second = Arc::new(Ledger::default());
    let pipeline = builder(&dyn_store, "flaky", second.clone())
        .max_attempts(1)
        .start()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while store.failures.load(Ordering::SeqCst) < 5 {
        assert!(Instant::now() < deadline, "the rebuild was not retried");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!pipeline.wait_for(last, Duration::from_millis(50)));
    assert_eq!(pipeline.stats().parked, 0, "a store error is not an attempt");
    store.failing.store(false, Ordering::SeqCst);
    assert!(pipeline.wait_for(last, WAIT));

    // Parking: the failed event's park fails until the store answers; it is parked then, once.
    second.fail.lock().unwrap().insert(last + 1);
    store.failing.store(true, Ordering::SeqCst);
    let failing = deposit(&*dyn_store, "acct-a", &[4]);
    let before = store.failures.load(Ordering::SeqCst);
    while store.failures.load(Ordering::SeqCst) < before + 3 {
        assert!(Instant::now() < deadline, "the park was not retried");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!pipeline.wait_for(failing, Duration::from_millis(50)));
    store.failing.store(false, Ordering::SeqCst);
    assert!(pipeline.wait_for(failing, WAIT));
    let report = pipeline.shutdown(WAIT);
    assert_eq!(report.stats.parked, 1);
    assert!(report.stats.store_retries >= 8, "{:?}", report.stats);
    let parked = dyn_store.parked("flaky", None, 0, usize::MAX).unwrap();
    assert_eq!(
        (parked.len(), parked[0].attempts),
        (1, 1),
        "one attempt, however many store errors"
    );
    assert_folds(&*dyn_store, &second.seen);
}

#[cfg(feature = "postgres")]
/// A fresh Postgres store in a schema of its own.
fn pg() -> Arc<dyn EventStore> {
    let mut config = PgStoreConfig::default();
    config.schema = server::fresh_schema("state");
    Arc::new(PgEventStore::connect(&server::url(), config).unwrap())
}

/// A stream of `n` events whose state is rebuilt twice from its last event: from a snapshot
/// (saved every 1 000 versions) and, for a second subscriber without snapshots, from the start.
/// Returns the two rebuild times (start of the pipeline to the event handled).
fn rebuild_a_long_stream(store: Arc<dyn EventStore>, n: u64) -> (Duration, Duration) {
    let stream = sid("long-1");
    let chunk = 10_000u64;
    let mut last = 0;
    for from in (0..n).step_by(chunk as usize) {
        let events = (from..(from + chunk).min(n))
            .map(|_| NewEvent::new("deposited", json!({ "amount": 1 })))
            .collect();
        last = store
            .append(&stream, ExpectedVersion::Any, events)
            .unwrap()
            .last_position;
    }
    // The snapshots a pipeline with `snapshot_every(1000, 1)` would have saved.
    for version in (999..n - 1).step_by(1000) {
        store
            .save_snapshot(&humpyard::store::Snapshot {
                subscriber: "long-snap".to_owned(),
                stream: stream.clone(),
                state_version: 1,
                version,
                data: json!({ "sum": version + 1, "count": version + 1 }),
            })
            .unwrap();
    }
    let mut times = Vec::new();
    for (subscriber, snapshots) in [("long-snap", true), ("long-full", false)] {
        // Start just before the last event: it is the one that needs the whole fold.
        store.reset_checkpoint(subscriber, last - 1).unwrap();
        let ledger = Arc::new(Ledger {
            snapshots,
            ..Ledger::default()
        });
        let mut builder = builder(&store, subscriber, ledger.clone());
        if snapshots {
            builder = builder.snapshot_every(1000, 1);
        }
        let started = Instant::now();
        let pipeline = builder.start().unwrap();
        assert!(pipeline.wait_for(last, Duration::from_secs(600)));
        times.push(started.elapsed());
        let report = pipeline.shutdown(WAIT);
        let expected = if snapshots { (n - 1) % 1000 } else { n - 1 };
        assert_eq!(report.stats.rehydrated_events, expected, "{subscriber}");
        let seen = ledger.seen.lock().unwrap();
        assert_eq!(
            seen[0].3,
            Totals {
                sum: n as i64 - 1,
                count: n - 1
            }
        );
    }
    println!(
        "a stream of {n} events: rebuilt from a snapshot in {:?}, from the start in {:?}",
        times[0], times[1]
    );
    (times[0], times[1])
}

// proves R-PG-5 (bounded rehydration): a million-event stream's state is rebuilt from its
// newest snapshot, folding fewer than 1 000 events (the full fold reads a million); the times
// are printed, not asserted (timings are benchmarks here)
#[test]
fn in_memory_a_million_event_stream_rehydrates_from_a_snapshot() {
    rebuild_a_long_stream(Arc::new(InMemoryStore::new()), 1_000_000);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_a_long_stream_rehydrates_from_a_snapshot() {
    rebuild_a_long_stream(pg(), 100_000);
}

#[cfg(feature = "postgres")]
/// The figure for the note: a million-event stream on PostgreSQL (about a minute of appends;
/// run by hand: `cargo test --release --test pipeline_state -- --ignored --nocapture`).
#[test]
#[ignore = "a minute of appends; run by hand for the figure"]
fn postgres_a_million_event_stream_rehydrates_from_a_snapshot() {
    rebuild_a_long_stream(pg(), 1_000_000);
}

// proves R-CONC-3: a replay runs in the stream's order with the events that keep arriving: the
// stream's versions are handled once each, in order, whether they were parked before the
// replay or appended while it ran
#[test]
fn a_replay_keeps_stream_order_with_events_arriving_meanwhile() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let ledger = Arc::new(Ledger::default());
    let first = deposit(&*store, "acct-a", &[1]);
    ledger.fail.lock().unwrap().insert(first);
    let mut last = deposit(&*store, "acct-a", &[2, 3, 4]);
    let pipeline = Arc::new(
        builder(&store, "orderly", ledger.clone())
            .max_attempts(1)
            .start()
            .unwrap(),
    );
    assert!(pipeline.wait_for(last, WAIT));
    assert_eq!(pipeline.parked(0, usize::MAX).unwrap().len(), 4);
    ledger.healed.store(true, Ordering::SeqCst);
    let appender = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut last = 0;
            for n in 0..200 {
                last = deposit(&*store, "acct-a", &[n]);
            }
            last
        })
    };
    let report = pipeline.replay(&sid("acct-a"), WAIT).unwrap();
    assert!(report.replayed >= 4, "{report:?}");
    last = last.max(appender.join().unwrap());
    assert!(pipeline.wait_for(last, WAIT));
    // Events that arrived before the request ran were parked, and the request replayed them.
    let stats = pipeline.stats();
    assert_eq!(pipeline.parked_streams(), 0, "{stats:?}");
    let versions: Vec<u64> = ledger.seen.lock().unwrap().iter().map(|s| s.1).collect();
    assert_eq!(versions, (0..204).collect::<Vec<u64>>(), "once each, in order");
    assert_folds(&*store, &ledger.seen);
}

// proves R-FT-4: an entity reaped while its event waits for a retry (an idle timeout shorter
// than the backoff) keeps its attempt count: the event is parked after exactly max_attempts
// (before, each retry started again at attempt 1 and the event never parked, holding its shard)
#[test]
fn attempts_survive_a_reap_between_retries() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let ledger = Arc::new(Ledger::default());
    let failing = deposit(&*store, "acct-a", &[1]);
    ledger.fail.lock().unwrap().insert(failing);
    let pipeline = builder(&store, "patient", ledger.clone())
        .engine(
            EngineConfig::default()
                .workers(2)
                .idle_timeout(Duration::from_millis(2))
                .retry_backoff(Duration::from_millis(30))
                .retry_backoff_max(Duration::from_millis(30)),
        )
        .max_attempts(3)
        .start()
        .unwrap();
    assert!(pipeline.wait_for(failing, Duration::from_secs(10)), "never parked");
    let parked = pipeline.parked(0, usize::MAX).unwrap();
    assert_eq!((parked.len(), parked[0].attempts), (1, 3));
    pipeline.shutdown(WAIT);
}

/// A store with no parking (the trait's defaults).
struct NoParking(InMemoryStore);

impl EventStore for NoParking {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<humpyard::store::Appended, humpyard::store::StoreError> {
        self.0.append(stream, expected, events)
    }

    fn append_many(
        &self,
        batch: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<Result<humpyard::store::Appended, humpyard::store::StoreError>>, humpyard::store::StoreError> {
        self.0.append_many(batch)
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, humpyard::store::StoreError> {
        self.0.read_stream(stream, from, max)
    }

    fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, humpyard::store::StoreError> {
        self.0.read_all(after, max)
    }

    fn load_checkpoint(&self, subscriber: &str) -> Result<Option<u64>, humpyard::store::StoreError> {
        self.0.load_checkpoint(subscriber)
    }

    fn save_checkpoint(&self, subscriber: &str, position: u64) -> Result<(), humpyard::store::StoreError> {
        self.0.save_checkpoint(subscriber, position)
    }
}

// proves R-FT-5: a pipeline does not start on a store that cannot park (it would retry a
// failed event forever, holding its shard): a typed error at start
#[test]
fn a_store_without_parking_is_refused_at_start() {
    let store: Arc<dyn EventStore> = Arc::new(NoParking(InMemoryStore::new()));
    match builder(&store, "nowhere", Arc::new(Ledger::default())).start() {
        Err(humpyard::pipeline::PipelineError::Store(humpyard::store::StoreError::Unsupported(_))) => {}
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a pipeline started on a store that cannot park"),
    }
}

// proves R-LIFE-3 with R-BP-2's no-spinning rule: a zero engine backoff and a store that keeps
// failing neither spin a worker on the store nor hold up shutdown (the backoff has a 1 ms floor)
#[test]
fn a_zero_backoff_with_a_failing_store_neither_spins_nor_blocks_shutdown() {
    let store = Arc::new(Flaky::new());
    let dyn_store: Arc<dyn EventStore> = store.clone();
    deposit(&*dyn_store, "acct-a", &[1, 2]);
    store.failing.store(true, Ordering::SeqCst);
    store.inner.reset_checkpoint("spinner", 1).unwrap();
    let pipeline = builder(&dyn_store, "spinner", Arc::new(Ledger::default()))
        .engine(EngineConfig::default().workers(2).retry_backoff(Duration::ZERO))
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let report = pipeline.shutdown(Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // At most one try a millisecond (plus slack); a loop makes hundreds of thousands.
    let tries = store.failures.load(Ordering::SeqCst);
    assert!(tries > 0 && tries < 1_000, "{tries} store calls in ~300 ms");
    assert_eq!(report.unprocessed, 1, "the event waiting for the store is handed back");
}

// proves R-CONC-3 and R-FT-5: after a restart (or a rewind), a replay waits until the reader has
// read the stream's parked positions again; before, it ran at once, and the reader then handed
// the replayed events over a second time
#[test]
fn a_replay_waits_for_the_reader_to_pass_the_parked_events() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let held = deposit(&*store, "acct-b", &[1]);
    let failing = deposit(&*store, "acct-a", &[1]);
    let last = deposit(&*store, "acct-a", &[2]);
    let first = Arc::new(Ledger::default());
    first.fail.lock().unwrap().insert(failing);
    let pipeline = builder(&store, "restarted", first.clone())
        .max_attempts(1)
        .start()
        .unwrap();
    assert!(pipeline.wait_for(last, WAIT));
    pipeline.shutdown(WAIT);
    // Rewind, and hold the reader's progress at acct-b's event.
    store.reset_checkpoint("restarted", 0).unwrap();
    let second = Arc::new(Ledger::default());
    second.healed.store(true, Ordering::SeqCst);
    second.hold.store(held, Ordering::SeqCst);
    let pipeline = builder(&store, "restarted", second.clone())
        .max_attempts(1)
        .start()
        .unwrap();
    // Releases the held event if an assertion fails, so that dropping the pipeline can drain.
    let _release_on_panic = ReleaseOnDrop(second.clone());
    match pipeline.replay(&sid("acct-a"), Duration::from_millis(200)) {
        Err(ReplayError::CatchingUp) => {}
        other => panic!("a replay ran before the reader passed the parked events: {other:?}"),
    }
    second.release.store(true, Ordering::SeqCst);
    let report = pipeline.replay(&sid("acct-a"), WAIT).unwrap();
    assert_eq!(report.replayed, 2);
    assert!(pipeline.wait_for(last, WAIT));
    pipeline.shutdown(WAIT);
    let a: Vec<u64> = second
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0 == "acct-a")
        .map(|s| s.1)
        .collect();
    assert_eq!(a, [0, 1], "each once, in order");
    assert_folds(&*store, &second.seen);
}

// proves R-FT-5: a hook that replays the stream it was told of finds it parked (the stream is
// marked parked before the hook runs)
#[test]
fn a_hook_that_replays_its_stream_finds_it_parked() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let ledger = Arc::new(Ledger::default());
    let failing = deposit(&*store, "acct-a", &[1]);
    ledger.fail.lock().unwrap().insert(failing);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let pipeline = builder(&store, "hooked", ledger.clone())
        .max_attempts(1)
        .on_parked(move |p| tx.lock().unwrap().send(p.stream.clone()).unwrap())
        .start()
        .unwrap();
    let stream = rx.recv_timeout(WAIT).unwrap();
    let report = pipeline.replay(&stream, WAIT).unwrap();
    assert_eq!(report.failed.map(|f| (f.position, f.attempts)), Some((failing, 2)));
    pipeline.shutdown(WAIT);
}

// proves R-FT-5: a replay the engine runs again after a store error (here the unpark after a
// successful replay) does not handle the event again
#[test]
fn a_replay_retried_after_a_store_error_does_not_handle_again() {
    let store = Arc::new(Flaky::new());
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let ledger = Arc::new(Ledger::default());
    let failing = deposit(&*dyn_store, "acct-a", &[1]);
    ledger.fail.lock().unwrap().insert(failing);
    let pipeline = builder(&dyn_store, "retried", ledger.clone())
        .max_attempts(1)
        .start()
        .unwrap();
    assert!(pipeline.wait_for(failing, WAIT));
    ledger.healed.store(true, Ordering::SeqCst);
    store.fail_unpark_once.store(true, Ordering::SeqCst);
    let report = pipeline.replay(&sid("acct-a"), WAIT).unwrap();
    assert_eq!((report.replayed, report.still_parked), (1, 0));
    assert!(pipeline.parked(0, usize::MAX).unwrap().is_empty());
    let stats = pipeline.shutdown(WAIT).stats;
    assert_eq!(stats.store_retries, 1);
    assert_eq!(ledger.seen.lock().unwrap().len(), 1, "handled once");
}

/// Sets the ledger's `release` when dropped.
struct ReleaseOnDrop(Arc<Ledger>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release.store(true, Ordering::SeqCst);
    }
}

// proves R-FT-1 in a pipeline: panics in `encode_state` (the pipeline's stats) and in a
// reaped state's `cleanup` (the engine's metrics) are contained and counted; the events are
// still handled
#[test]
fn panics_in_encode_state_and_cleanup_are_contained_and_counted() {
    quiet_planned_panics();
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let ledger = Arc::new(Ledger {
        snapshots: true,
        ..Ledger::default()
    });
    ledger.hostile.store(true, Ordering::SeqCst);
    let last = deposit(&*store, "acct-a", &[1, 2]);
    let pipeline = builder(&store, "hostile", ledger.clone())
        .snapshot_every(1, 1)
        .engine(
            EngineConfig::default()
                .workers(2)
                .idle_timeout(Duration::from_millis(5)),
        )
        .start()
        .unwrap();
    assert!(pipeline.wait_for(last, WAIT));
    let deadline = Instant::now() + WAIT;
    while pipeline.engine_metrics().entities_reaped == 0 {
        assert!(Instant::now() < deadline, "never reaped");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The reap's `cleanup` runs under the engine's containment, counted in its metrics.
    assert_eq!(pipeline.engine_metrics().panics, 1);
    let stats = pipeline.shutdown(WAIT).stats;
    assert_eq!((stats.handled, stats.snapshots_saved), (2, 0));
    assert_eq!(stats.panics, 2, "the two encode_state panics: {stats:?}");
    assert_folds(&*store, &ledger.seen);
}
