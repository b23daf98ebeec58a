//! The metrics export (feature `metrics`): an engine's, a pipeline's and an integration's
//! counters reach an installed recorder under their documented names and labels, with the
//! values `Engine::metrics`, `Pipeline::stats` and `Integration::stats` give, from the
//! supervisor's tick (R-OBS-2).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use humpyard::pipeline::{Pipeline, StreamHandler};
use humpyard::store::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RecordedEvent};
use humpyard::{Engine, Event, Handler, StreamId};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;

/// The process's one recorder (the facade's global one: the supervisor is another thread).
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("no other recorder in this test binary");
        snapshotter
    })
}

/// Every exported value now, by name and sorted labels (`k=v`).
fn exported() -> HashMap<(String, Vec<String>), f64> {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => return None,
            };
            Some(((key.name().to_owned(), labels), value))
        })
        .collect()
}

/// The value of `name` with exactly `labels`, if exported.
fn value(all: &HashMap<(String, Vec<String>), f64>, name: &str, labels: &[&str]) -> Option<f64> {
    let mut labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
    labels.sort();
    all.get(&(name.to_owned(), labels)).copied()
}

/// Waits until `ready` holds of the exported values (a few supervisor ticks at most).
fn wait_for_export(
    ready: impl Fn(&HashMap<(String, Vec<String>), f64>) -> bool,
) -> HashMap<(String, Vec<String>), f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = exported();
        if ready(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "the export did not catch up: {all:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Fails every tenth payload.
struct Tens;

impl Handler for Tens {
    type Payload = u32;
    type State = u64;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, state: &mut u64, event: &Event<u32>) -> Result<(), String> {
        if *event.payload() % 10 == 0 {
            return Err(format!("{} is a multiple of ten", event.payload()));
        }
        *state += 1;
        Ok(())
    }
}

// proves R-OBS-2: the engine's counters and gauges reach the recorder as absolutes from the
// supervisor tick, named and labelled as the README says, equal to `Engine::metrics` at
// quiescence.
#[test]
fn an_engines_counters_are_exported_with_its_name_and_shards() {
    snapshotter();
    let engine = Engine::builder(Tens)
        .workers(2)
        .shards(4)
        .max_attempts(1)
        .idle_timeout(Duration::from_millis(40))
        .export_metrics("orders")
        .start()
        .unwrap();
    for n in 0..1000u32 {
        let stream = StreamId::new(&format!("order-{}", n % 37)).unwrap();
        engine
            .submit_timeout(Event::new(stream, n), Duration::from_secs(5))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = engine.metrics();
        if m.processed + m.dead_lettered == 1000 {
            break m;
        }
        assert!(Instant::now() < deadline, "not done: {m:?}");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!((m.processed, m.dead_lettered), (900, 100));
    let engine_label = ["engine=orders"];
    let all = wait_for_export(|all| {
        value(all, "humpyard_events_processed_total", &engine_label) == Some(900.0)
            && value(all, "humpyard_events_dead_lettered_total", &engine_label) == Some(100.0)
    });
    let m = engine.metrics();
    let expect = [
        ("humpyard_events_accepted_total", m.accepted),
        ("humpyard_events_rejected_total", m.rejected),
        ("humpyard_events_processed_total", m.processed),
        ("humpyard_events_dead_lettered_total", m.dead_lettered),
        ("humpyard_panics_total", m.panics),
        ("humpyard_retries_total", m.retries),
        ("humpyard_events_queued", m.queued),
        ("humpyard_events_awaiting_retry", m.awaiting_retry),
        ("humpyard_slow_handlers_total", m.slow_handlers),
        ("humpyard_workers_replaced_total", m.workers_replaced),
        ("humpyard_dead_letters_discarded_total", m.dead_letters_discarded),
    ];
    for (name, want) in expect {
        assert_eq!(value(&all, name, &engine_label), Some(want as f64), "{name}");
    }
    assert_eq!(m.accepted, 1000);
    // Entities come and go with the reaper: exported, and never more than were made.
    for name in [
        "humpyard_entities_live",
        "humpyard_entities_reaped_total",
        "humpyard_entities_evicted_total",
    ] {
        assert!(value(&all, name, &engine_label).is_some(), "{name} missing");
    }
    // One queue-depth gauge per shard, labelled with its index, all empty at quiescence.
    for shard in 0..4 {
        let labels = ["engine=orders".to_owned(), format!("shard={shard}")];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert_eq!(
            value(&all, "humpyard_shard_events_queued", &labels),
            Some(0.0),
            "shard {shard}"
        );
    }
    let report = engine.shutdown(Duration::from_secs(5));
    assert!(report.unprocessed.is_empty());
}

/// Counts nothing: the pipeline's own counters are what is checked.
struct Projector;

impl StreamHandler for Projector {
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) {}

    fn apply(&self, _: &mut (), _: &RecordedEvent) {}

    fn handle(&self, _: &(), _: &RecordedEvent) -> Result<(), String> {
        Ok(())
    }
}

// proves R-OBS-2: a pipeline's counters, its checkpoint, head and consumer lag reach the
// recorder labelled with its subscriber, and its engine's labelled with the name given, equal
// to `Pipeline::stats` once the checkpoint has caught up.
#[test]
fn a_pipelines_counters_and_lag_are_exported_with_its_subscriber() {
    snapshotter();
    let store = Arc::new(InMemoryStore::new());
    for s in 0..10 {
        let stream = StreamId::new(&format!("account-{s}")).unwrap();
        let events = (0..20).map(|n| NewEvent::new("Deposited", json!({ "n": n }))).collect();
        store.append(&stream, ExpectedVersion::Any, events).unwrap();
    }
    let pipeline = Pipeline::builder(store.clone(), "projector", Projector)
        .checkpoint_interval(Duration::from_millis(5))
        .export_metrics("projector-engine")
        .start()
        .unwrap();
    assert!(pipeline.wait_for(200, Duration::from_secs(10)));
    let subscriber = ["subscriber=projector"];
    let all = wait_for_export(|all| {
        value(all, "humpyard_pipeline_checkpoint_position", &subscriber) == Some(200.0)
            && value(all, "humpyard_pipeline_events_handled_total", &subscriber) == Some(200.0)
    });
    let s = pipeline.stats();
    assert_eq!((s.submitted, s.handled, s.checkpoint, s.head), (200, 200, 200, 200));
    let expect = [
        ("humpyard_pipeline_events_submitted_total", s.submitted),
        ("humpyard_pipeline_events_handled_total", s.handled),
        ("humpyard_pipeline_events_parked_total", s.parked),
        ("humpyard_pipeline_read_errors_total", s.read_errors),
        ("humpyard_pipeline_checkpoint_errors_total", s.checkpoint_errors),
        ("humpyard_pipeline_checkpoint_position", s.checkpoint),
        ("humpyard_pipeline_head_position", s.head),
        ("humpyard_pipeline_lag_events", 0),
    ];
    for (name, want) in expect {
        assert_eq!(value(&all, name, &subscriber), Some(want as f64), "{name}");
    }
    // Its engine, under the name given.
    let engine = ["engine=projector-engine"];
    assert_eq!(value(&all, "humpyard_events_processed_total", &engine), Some(200.0));

    // Events appended after the pipeline's shutdown are lag: head is read, checkpoint is not
    // moved. With the pipeline stopped nothing is exported any more, so the lag is checked
    // on a live one: a second batch, read and handled, brings lag back to 0.
    let stream = StreamId::new("account-x").unwrap();
    let events = (0..5).map(|n| NewEvent::new("Deposited", json!({ "n": n }))).collect();
    store.append(&stream, ExpectedVersion::Any, events).unwrap();
    assert!(pipeline.wait_for(205, Duration::from_secs(10)));
    wait_for_export(|all| {
        value(all, "humpyard_pipeline_head_position", &subscriber) == Some(205.0)
            && value(all, "humpyard_pipeline_lag_events", &subscriber) == Some(0.0)
    });
    pipeline.shutdown(Duration::from_secs(5));
}
