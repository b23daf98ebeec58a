//! The metrics export (feature `metrics`): an engine's (with its handler-duration histogram), a
//! pipeline's (with its consumer lag and its store's health) and an integration's (with its
//! routes) counters reach an installed recorder under their documented names and labels, with
//! the values `Engine::metrics`, `Pipeline::stats`, `EventStore::health` and `Integration::stats`
//! give, from the supervisor's tick (R-OBS-2).

mod store;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use humpyard::integration::{Command, Effect, Integration, Reactor, RouteName, RoutePolicy, Routes};
use humpyard::pipeline::{Pipeline, StreamHandler};
use humpyard::resilience::BreakerConfig;
use humpyard::store::{EventStore, ExpectedVersion, GapWait, InMemoryStore, NewEvent, RecordedEvent};
use humpyard::{Engine, EngineConfig, Event, Handler, StreamId};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;
use store::probed::ProbedStore;

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

/// Asserts that each `(name, value)` of `expect` was exported with exactly `labels`.
fn assert_exported(all: &HashMap<(String, Vec<String>), f64>, labels: &[&str], expect: &[(&str, u64)]) {
    for &(name, want) in expect {
        assert_eq!(value(all, name, labels), Some(want as f64), "{name} {labels:?}");
    }
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
        .time_handlers(true)
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
    assert_exported(
        &all,
        &engine_label,
        &[
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
        ],
    );
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
    // The handler-duration histogram, in Prometheus's shape: cumulative buckets up to `+Inf`,
    // `_count` and `_sum` as `Metrics::handler_durations` says.
    let durations = m.handler_durations.expect("timed");
    assert_eq!(durations.count(), 1000);
    assert_eq!(
        value(&all, "humpyard_handler_duration_seconds_count", &engine_label),
        Some(1000.0)
    );
    assert_eq!(
        value(&all, "humpyard_handler_duration_seconds_sum", &engine_label),
        Some(durations.sum.as_secs_f64())
    );
    let mut buckets: Vec<(f64, f64)> = all
        .iter()
        .filter(|((name, labels), _)| {
            name == "humpyard_handler_duration_seconds_bucket" && labels.contains(&"engine=orders".to_owned())
        })
        .map(|((_, labels), n)| {
            let le = labels.iter().find_map(|l| l.strip_prefix("le=")).expect("an le label");
            (le.parse::<f64>().expect("le is a number or +Inf"), *n)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(buckets.len(), 27, "{buckets:?}");
    assert_eq!(buckets[0].0, 1024e-9);
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1000.0)));
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "not cumulative: {buckets:?}"
    );
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
    assert_exported(
        &all,
        &subscriber,
        &[
            ("humpyard_pipeline_events_submitted_total", s.submitted),
            ("humpyard_pipeline_events_handled_total", s.handled),
            ("humpyard_pipeline_events_parked_total", s.parked),
            ("humpyard_pipeline_read_errors_total", s.read_errors),
            ("humpyard_pipeline_checkpoint_errors_total", s.checkpoint_errors),
            ("humpyard_pipeline_checkpoint_position", s.checkpoint),
            ("humpyard_pipeline_head_position", s.head),
            ("humpyard_pipeline_lag_events", 0),
        ],
    );
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

/// A gate: closed (`false`) until opened, with a condition variable to wait on.
type Gate = Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>;

fn open(gate: &Gate) {
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
}

/// Opens the gate when dropped, so a failing assertion does not leave the pipeline's shutdown
/// waiting for a held handler.
struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        open(&self.0);
    }
}

/// Holds every call until the gate opens.
struct Held {
    open: Gate,
}

impl StreamHandler for Held {
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) {}

    fn apply(&self, _: &mut (), _: &RecordedEvent) {}

    fn handle(&self, _: &(), _: &RecordedEvent) -> Result<(), String> {
        let (lock, opened) = &*self.open;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = opened.wait(open).unwrap();
        }
        Ok(())
    }
}

// proves R-OBS-2: consumer lag is what the subscriber has read but not yet checkpointed: with
// its handler held, the head moves to the last event and the exported lag is the whole backlog;
// once the handler goes on, the checkpoint catches up and the lag falls to 0.
#[test]
fn a_held_pipeline_exports_its_lag_until_it_catches_up() {
    snapshotter();
    let store = Arc::new(InMemoryStore::new());
    let stream = StreamId::new("ledger-1").unwrap();
    let events = (0..12).map(|n| NewEvent::new("Posted", json!({ "n": n }))).collect();
    store.append(&stream, ExpectedVersion::Any, events).unwrap();
    let gate: Gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let pipeline = Pipeline::builder(store.clone(), "held-ledger", Held { open: gate.clone() })
        .checkpoint_interval(Duration::from_millis(5))
        .export_metrics("held-ledger-engine")
        .start()
        .unwrap();
    // Dropped before the pipeline, should an assertion below fail.
    let _open = OpenOnDrop(gate.clone());
    let subscriber = ["subscriber=held-ledger"];
    wait_for_export(|all| {
        value(all, "humpyard_pipeline_head_position", &subscriber) == Some(12.0)
            && value(all, "humpyard_pipeline_checkpoint_position", &subscriber) == Some(0.0)
            && value(all, "humpyard_pipeline_lag_events", &subscriber) == Some(12.0)
    });
    let s = pipeline.stats();
    assert_eq!((s.head, s.checkpoint, s.handled), (12, 0, 0), "{s:?}");

    open(&gate);
    assert!(pipeline.wait_for(12, Duration::from_secs(10)));
    wait_for_export(|all| {
        value(all, "humpyard_pipeline_checkpoint_position", &subscriber) == Some(12.0)
            && value(all, "humpyard_pipeline_lag_events", &subscriber) == Some(0.0)
    });
    pipeline.shutdown(Duration::from_secs(5));
}

/// Reacts to every event with one command to route `svc`.
struct OneCommand;

impl Reactor for OneCommand {
    type State = ();

    fn init(&self, _: &StreamId) {}

    fn apply(&self, _: &mut (), _: &RecordedEvent) {}

    fn react(&self, _: &(), event: &RecordedEvent) -> Vec<Command> {
        vec![Command::new("svc", json!({ "position": event.position })).unwrap()]
    }
}

// proves R-OBS-2: an integration's counters reach the recorder labelled with its subscriber,
// and each route's breaker and bulkhead labelled with the route too, equal to
// `Integration::stats` and `Integration::route_stats` at quiescence.
#[test]
fn an_integrations_counters_and_routes_are_exported() {
    snapshotter();
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    // Every effect fails its first call: a breaker that opens at one failure opens, probes
    // and closes again.
    let tried = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let seen = tried.clone();
    let service = move |_: &Command, effect: &Effect<'_>| -> Result<serde_json::Value, String> {
        if seen.lock().unwrap().insert(effect.key().as_str().to_owned()) {
            return Err("first call refused".to_owned());
        }
        Ok(json!({}))
    };
    let mut breaker = BreakerConfig::default();
    breaker.failure_threshold = 1;
    breaker.open_for = Duration::from_millis(2);
    let routes = Routes::new()
        .route_with(
            "svc",
            service,
            RoutePolicy::default().with_breaker(breaker).with_max_concurrent(3),
        )
        .unwrap();
    let integration = Integration::builder(Arc::clone(&store), "exported-reactor", OneCommand, routes)
        .pipeline(|b| {
            b.engine(
                EngineConfig::default()
                    .workers(2)
                    .retry_backoff(Duration::from_millis(1))
                    .retry_backoff_max(Duration::from_millis(5)),
            )
            .max_attempts(10)
            .checkpoint_interval(Duration::from_millis(5))
        })
        .export_metrics("reactor-engine")
        .start()
        .unwrap();
    let mut last = 0;
    for s in 0..3 {
        let stream = StreamId::new(&format!("shipment-{s}")).unwrap();
        let appended = store
            .append(&stream, ExpectedVersion::Any, vec![NewEvent::new("Packed", json!({}))])
            .unwrap();
        last = appended.last_position;
    }
    assert!(integration.pipeline().wait_for(last, Duration::from_secs(20)));
    let stats = integration.stats();
    assert_eq!((stats.effects, stats.failures), (3, 3), "{stats:?}");
    let subscriber = ["subscriber=exported-reactor"];
    let all = wait_for_export(|all| {
        value(all, "humpyard_integration_effects_total", &subscriber) == Some(3.0)
            && value(all, "humpyard_integration_effect_failures_total", &subscriber) == Some(3.0)
    });
    let stats = integration.stats();
    assert_exported(
        &all,
        &subscriber,
        &[
            ("humpyard_integration_effects_total", stats.effects),
            ("humpyard_integration_effects_skipped_total", stats.skipped),
            ("humpyard_integration_effect_failures_total", stats.failures),
            ("humpyard_integration_effect_waits_total", stats.waits),
            ("humpyard_integration_commands_unrouted_total", stats.unrouted),
            ("humpyard_integration_claims_lost_total", stats.claims_lost),
            ("humpyard_integration_store_errors_total", stats.store_errors),
            ("humpyard_integration_observer_panics_total", stats.observer_panics),
            ("humpyard_integration_hook_panics_total", stats.hook_panics),
        ],
    );
    // The route, under its name: its breaker opened at least once, and what was exported last
    // is what `route_stats` says (nothing moves at quiescence).
    let route = integration
        .route_stats(&RouteName::new("svc").unwrap())
        .expect("the route");
    assert!(route.breaker.opened >= 1, "{route:?}");
    let labels = ["subscriber=exported-reactor", "route=svc"];
    let all = wait_for_export(|all| {
        value(all, "humpyard_route_breaker_opened_total", &labels) == Some(route.breaker.opened as f64)
    });
    assert_exported(
        &all,
        &labels,
        &[
            ("humpyard_route_breaker_opened_total", route.breaker.opened),
            ("humpyard_route_breaker_probes_total", route.breaker.probes),
            ("humpyard_route_breaker_closed_total", route.breaker.closed),
            ("humpyard_route_breaker_rejected_total", route.breaker.rejected),
            ("humpyard_route_breaker_open", 0),
            ("humpyard_route_bulkhead_available", 3),
        ],
    );
    // Its pipeline and engine, as a pipeline's.
    assert!(value(&all, "humpyard_pipeline_lag_events", &subscriber).is_some());
    assert!(value(&all, "humpyard_events_processed_total", &["engine=reactor-engine"]).is_some());
    integration.shutdown(Duration::from_secs(5));
}

// proves R-OBS-2: the health of the store a pipeline reads (its pool's and watches' connection
// errors, its readers' gap wait) is exported beside the pipeline's counters, labelled with the
// subscriber.
#[test]
fn a_pipelines_store_health_is_exported() {
    snapshotter();
    // The in-memory store, reporting the trouble a real store's connections would have had.
    let store = Arc::new(ProbedStore::new());
    {
        let mut health = store.health.lock().unwrap();
        health.pool_errors = 7;
        health.watch_errors = 3;
        health.gap_wait = Some(GapWait::new(17, Duration::from_millis(1500)));
    }
    let pipeline = Pipeline::builder(store, "troubled", Projector)
        .export_metrics("troubled-engine")
        .start()
        .unwrap();
    let subscriber = ["subscriber=troubled"];
    let all = wait_for_export(|all| value(all, "humpyard_store_pool_errors_total", &subscriber).is_some());
    assert_eq!(value(&all, "humpyard_store_pool_errors_total", &subscriber), Some(7.0));
    assert_eq!(value(&all, "humpyard_store_watch_errors_total", &subscriber), Some(3.0));
    assert_eq!(value(&all, "humpyard_store_gap_wait_seconds", &subscriber), Some(1.5));
    pipeline.shutdown(Duration::from_secs(5));
}
