//! The outbound path: reactions become commands, performed by routed handlers under each
//! route's breaker and bulkhead and the effect's claimed idempotency key. A completed effect is
//! never run again (a retry, a rewind as after a crash, a parked event's replay, another
//! process); a command with no route parks its event at once; waits use no attempt and hold no
//! worker. Run on both stores where the store matters (R-INT-1, R-INT-2, R-FT-4, R-RES-3,
//! R-OBS-1).

mod common;
mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, Gate, OpenOnDrop};
use humpyard::integration::{Command, Effect, EffectError, Integration, Observed, Reactor, RoutePolicy, Routes};
use humpyard::resilience::{BreakerConfig, BreakerState, TransitionHook};
use humpyard::store::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, ParkKind, RecordedEvent};
#[cfg(feature = "postgres")]
use humpyard::store::{PgEventStore, PgStoreConfig};
use humpyard::{EngineConfig, StreamId};
use serde_json::{json, Value};
#[cfg(feature = "postgres")]
use store::server;

const WAIT: Duration = Duration::from_secs(20);

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// Reacts to each event with the commands listed in its data (`{"commands": [[route,
/// payload], ...]}`); its state counts the stream's events, and each command's payload gets
/// `"seen"`: how many events came before (so the state is checked too).
struct Listed;

impl Reactor for Listed {
    type State = u64;

    fn init(&self, _stream: &StreamId) -> u64 {
        0
    }

    fn apply(&self, state: &mut u64, _event: &RecordedEvent) {
        *state += 1;
    }

    fn react(&self, state: &u64, event: &RecordedEvent) -> Vec<Command> {
        let Some(list) = event.data["commands"].as_array() else {
            return Vec::new();
        };
        list.iter()
            .map(|pair| {
                let mut payload = pair[1].clone();
                payload["seen"] = json!(*state);
                Command::new(pair[0].as_str().unwrap(), payload).unwrap()
            })
            .collect()
    }
}

/// A command handler that counts its calls per effect key, fails each key's first `fail_first`
/// calls, and fails every call while `broken` is set.
#[derive(Default)]
struct Service {
    calls: Mutex<HashMap<String, u32>>,
    total: AtomicU64,
    fail_first: u32,
    broken: std::sync::atomic::AtomicBool,
}

impl Service {
    fn failing_first(n: u32) -> Arc<Service> {
        Arc::new(Service {
            fail_first: n,
            ..Service::default()
        })
    }

    fn call(&self, effect: &Effect<'_>) -> Result<Value, String> {
        self.total.fetch_add(1, Ordering::SeqCst);
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(effect.key().as_str().to_owned()).or_default();
            *n += 1;
            *n
        };
        if n <= self.fail_first || self.broken.load(Ordering::SeqCst) {
            return Err(format!("call {n} of {} failed", effect.key()));
        }
        Ok(json!({ "done": effect.key().as_str() }))
    }

    /// How many keys were called more than once although they succeeded: the effects repeated.
    fn calls_of(&self, key: &str) -> u32 {
        self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

fn handler(service: &Arc<Service>) -> impl Fn(&Command, &Effect<'_>) -> Result<Value, String> + Send + Sync + 'static {
    let service = Arc::clone(service);
    move |_: &Command, effect: &Effect<'_>| service.call(effect)
}

fn event(commands: Value) -> NewEvent {
    NewEvent::new("happened", json!({ "commands": commands }))
}

fn append(store: &dyn EventStore, stream: &str, events: Vec<NewEvent>) -> u64 {
    store
        .append(&sid(stream), ExpectedVersion::Any, events)
        .unwrap()
        .last_position
}

#[cfg(feature = "postgres")]
fn pg() -> Arc<dyn EventStore> {
    let mut config = PgStoreConfig::default();
    config.schema = server::fresh_schema("integration");
    Arc::new(PgEventStore::connect(&server::url(), config).unwrap())
}

fn fast(
    b: humpyard::pipeline::PipelineBuilder<humpyard::integration::Outbound<Listed>>,
) -> humpyard::pipeline::PipelineBuilder<humpyard::integration::Outbound<Listed>> {
    b.engine(
        EngineConfig::default()
            .workers(2)
            .retry_backoff(Duration::from_millis(1))
            .retry_backoff_max(Duration::from_millis(20)),
    )
    .checkpoint_interval(Duration::from_millis(5))
}

// proves R-INT-1: a command with no route is counted, reported, and its event parked at once
// with the command, whatever attempts are left; the event's other effects do not run
#[test]
fn an_unrouted_command_parks_its_event_at_once_with_the_command() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let service = Arc::new(Service::default());
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&heard);
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Listed,
        Routes::new().route("svc", handler(&service)).unwrap(),
    )
    .observer(move |o: &Observed<'_>| match o {
        Observed::Unrouted { command, position } => h
            .lock()
            .unwrap()
            .push(format!("unrouted {} at {position:?}", command.route())),
        Observed::DeadLetter { parked } => h.lock().unwrap().push(format!("parked {}", parked.position)),
        _ => {}
    })
    .pipeline(|b| fast(b).max_attempts(5))
    .start()
    .unwrap();
    let at = append(
        &*store,
        "order-1",
        vec![event(json!([["svc", {"n": 1}], ["nowhere", {"n": 2}]]))],
    );
    assert!(integration.pipeline().wait_for(at, WAIT));
    let parked = integration.pipeline().parked(0, 10).unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].kind, parked[0].attempts),
        (ParkKind::Refused, 1),
        "parked at once"
    );
    assert!(parked[0].message.contains("nowhere"), "{}", parked[0].message);
    assert!(
        parked[0].message.contains(r#""n":2"#),
        "the command is kept: {}",
        parked[0].message
    );
    assert_eq!(service.total.load(Ordering::SeqCst), 0, "no effect of the event ran");
    assert_eq!(integration.stats().unrouted, 1);
    assert_eq!(
        *heard.lock().unwrap(),
        vec![format!("unrouted nowhere at Some({at})"), format!("parked {at}")]
    );
    integration.shutdown(WAIT);
}

/// Every event's effects run once over a retry, a rewind (as a crash before the checkpoint
/// save), and a second integration of the same subscriber (another process) replaying it all.
fn completed_effects_are_never_repeated(store: Arc<dyn EventStore>) {
    // Each key's first call fails: every effect is retried once.
    let service = Service::failing_first(1);
    let start = || {
        Integration::builder(
            Arc::clone(&store),
            "reactor",
            Listed,
            Routes::new().route("svc", handler(&service)).unwrap(),
        )
        .pipeline(|b| fast(b).max_attempts(3))
        .start()
        .unwrap()
    };
    let first = start();
    let mut last = 0;
    for i in 0..20 {
        last = append(
            &*store,
            &format!("order-{}", i % 4),
            vec![event(json!([["svc", {"i": i, "c": 0}], ["svc", {"i": i, "c": 1}]]))],
        );
    }
    assert!(first.pipeline().wait_for(last, WAIT));
    let stats = first.stats();
    assert_eq!((stats.effects, stats.failures), (40, 40), "{stats:?}");
    first.shutdown(WAIT);

    // A crash before the checkpoint moved: the next run reads everything again; and another
    // process of the same subscriber replays the same positions at the same time.
    store.reset_checkpoint("reactor", 0).unwrap();
    let second = start();
    let third = start();
    for run in [&second, &third] {
        assert!(run.pipeline().wait_for(last, WAIT));
    }
    // The second run read from 0 and skipped all 40; the third started from 0 too, unless the
    // second had saved a later checkpoint by then: it skips what it reads, and runs nothing.
    let stats = second.stats();
    assert_eq!((stats.effects, stats.skipped), (0, 40), "{stats:?}");
    let stats = third.stats();
    assert_eq!(stats.effects, 0, "{stats:?}");
    assert!(stats.skipped <= 40, "{stats:?}");
    second.shutdown(WAIT);
    third.shutdown(WAIT);
    assert_eq!(
        service.total.load(Ordering::SeqCst),
        80,
        "40 effects, each failed once and run once"
    );
    for position in 1..=last {
        for index in 0..2 {
            let key = format!("fx1:{position}:{index}:reactor");
            assert_eq!(service.calls_of(&key), 2, "{key}");
        }
    }
}

// proves R-INT-2: a retry, a replay after a crash and another process replaying the same
// positions find each completed effect by its key and skip it
#[test]
fn in_memory_completed_effects_are_never_repeated() {
    completed_effects_are_never_repeated(Arc::new(InMemoryStore::new()));
}

// proves R-INT-2 on PostgreSQL (the keys shared through the server)
#[cfg(feature = "postgres")]
#[test]
fn postgres_completed_effects_are_never_repeated() {
    completed_effects_are_never_repeated(pg());
}

// proves R-INT-2 and R-FT-4 (outbound): an effect that fails every attempt parks its event (a
// dead letter with the reason); the replay runs only the effects not completed
#[test]
fn a_parked_events_replay_runs_only_what_did_not_complete() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let ok = Arc::new(Service::default());
    let flaky = Arc::new(Service::default());
    flaky.broken.store(true, Ordering::SeqCst);
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Listed,
        Routes::new()
            .route("ok", handler(&ok))
            .unwrap()
            .route("flaky", handler(&flaky))
            .unwrap(),
    )
    .pipeline(|b| fast(b).max_attempts(3))
    .start()
    .unwrap();
    let at = append(
        &*store,
        "order-1",
        vec![event(json!([["ok", {}], ["flaky", {}], ["ok", {"2": 2}]]))],
    );
    assert!(integration.pipeline().wait_for(at, WAIT));
    let parked = integration.pipeline().parked(0, 10).unwrap();
    assert_eq!((parked[0].kind, parked[0].attempts), (ParkKind::Handler, 3));
    assert!(parked[0].message.contains("failed"), "{}", parked[0].message);
    assert_eq!(
        ok.total.load(Ordering::SeqCst),
        1,
        "the first effect ran once, the third never"
    );
    assert_eq!(flaky.total.load(Ordering::SeqCst), 3);

    flaky.broken.store(false, Ordering::SeqCst);
    let report = integration.pipeline().replay(&sid("order-1"), WAIT).unwrap();
    assert_eq!(report.replayed, 1);
    assert_eq!(
        ok.calls_of(&format!("fx1:{at}:0:reactor")),
        1,
        "not repeated by the replay"
    );
    assert_eq!(ok.calls_of(&format!("fx1:{at}:2:reactor")), 1);
    assert_eq!(flaky.calls_of(&format!("fx1:{at}:1:reactor")), 4);
    integration.shutdown(WAIT);
}

// proves R-FT-4 (outbound) and R-OBS-1: an open breaker is a wait that uses no attempt (with
// two attempts, a wait that used one would park the event); the probe's success closes it;
// the transitions reach the observer
#[test]
fn an_open_breaker_waits_without_using_an_attempt() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let service = Service::failing_first(1);
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let t = Arc::clone(&transitions);
    let mut breaker = BreakerConfig::default();
    breaker.failure_threshold = 1;
    breaker.open_for = Duration::from_millis(150);
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Listed,
        Routes::new()
            .route_with("svc", handler(&service), RoutePolicy::default().with_breaker(breaker))
            .unwrap(),
    )
    .observer(move |o: &Observed<'_>| {
        if let Observed::BreakerTransition { to, .. } = o {
            t.lock().unwrap().push(*to);
        }
    })
    .pipeline(|b| fast(b).max_attempts(2))
    .start()
    .unwrap();
    let at = append(&*store, "order-1", vec![event(json!([["svc", {}]]))]);
    assert!(integration.pipeline().wait_for(at, WAIT));
    assert!(integration.pipeline().parked(0, 10).unwrap().is_empty(), "not parked");
    let stats = integration.stats();
    assert_eq!((stats.effects, stats.failures), (1, 1), "{stats:?}");
    assert!(stats.waits >= 1, "it waited while the breaker was open: {stats:?}");
    assert_eq!(service.total.load(Ordering::SeqCst), 2);
    assert_eq!(
        *transitions.lock().unwrap(),
        vec![BreakerState::Open, BreakerState::HalfOpen, BreakerState::Closed]
    );
    integration.shutdown(WAIT);
}

// proves R-RES-3: a route's bulkhead bounds its effects in flight; a command that finds it full
// waits on a timer without holding a worker, so (with two workers, one held by the blocked
// effect) another route's effects still run
#[test]
fn a_full_bulkhead_waits_without_holding_a_worker() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let gate = Gate::new();
    let g = Arc::clone(&gate);
    let slow_calls = Arc::new(AtomicU32::new(0));
    let s = Arc::clone(&slow_calls);
    let other = Arc::new(Service::default());
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Listed,
        Routes::new()
            .route_with(
                "slow",
                move |_: &Command, _: &Effect<'_>| {
                    s.fetch_add(1, Ordering::SeqCst);
                    g.wait();
                    Ok::<Value, String>(json!(null))
                },
                RoutePolicy::default().with_max_concurrent(1),
            )
            .unwrap()
            .route("other", handler(&other))
            .unwrap(),
    )
    // Many shards: a stream of the other route rarely shares a shard with a slow one (those
    // wait behind it, in stream order).
    .pipeline(|b| {
        fast(b)
            .engine(
                EngineConfig::default()
                    .workers(2)
                    .shards(1024)
                    .retry_backoff(Duration::from_millis(1))
                    .retry_backoff_max(Duration::from_millis(20)),
            )
            .max_attempts(1)
    })
    .start()
    .unwrap();
    // Dropped before the integration, on every path: a failure never leaves a worker held.
    let _opener = OpenOnDrop(Arc::clone(&gate));
    append(&*store, "a", vec![event(json!([["slow", {}]]))]);
    gate.wait_entered(1);
    append(&*store, "b", vec![event(json!([["slow", {}]]))]);
    wait_until("the second slow effect waits for the bulkhead", || {
        integration.stats().waits >= 2
    });
    let mut last = 0;
    for i in 0..10 {
        last = append(&*store, &format!("c{i}"), vec![event(json!([["other", {"i": i}]]))]);
    }
    let ran = || other.total.load(Ordering::SeqCst);
    let deadline = std::time::Instant::now() + WAIT;
    while ran() < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let free = ran();
    let slow_in_flight = slow_calls.load(Ordering::SeqCst);
    // Opened before any assertion, so that a failure does not hang the shutdown.
    gate.open();
    assert!(free >= 5, "a worker stayed free for the other route: {free} of 10 ran");
    assert_eq!(slow_in_flight, 1, "never two in the bulkhead");
    assert!(integration.pipeline().wait_for(last, WAIT));
    assert_eq!(ran(), 10);
    assert_eq!(slow_calls.load(Ordering::SeqCst), 2);
    assert!(
        integration.pipeline().parked(0, 10).unwrap().is_empty(),
        "waits used no attempt"
    );
    integration.shutdown(WAIT);
}

// proves R-INT-2: the handler is handed the effect's key; its follow-up appends get ids derived
// from it, so a retry after a failure that followed the append writes nothing twice
#[test]
fn follow_up_appends_are_not_repeated_by_a_retry() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Listed,
        Routes::new()
            .route("reserve", move |command: &Command, effect: &Effect<'_>| {
                let n = c.fetch_add(1, Ordering::SeqCst);
                let reply = NewEvent::new(
                    "reserved",
                    json!({ "for": command.payload(), "key": effect.key().as_str() }),
                );
                effect
                    .append(&StreamId::new("stock").unwrap(), ExpectedVersion::Any, vec![reply])
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("the reply was lost".to_owned());
                }
                Ok(json!("reserved"))
            })
            .unwrap(),
    )
    .pipeline(|b| fast(b).max_attempts(3))
    .start()
    .unwrap();
    let at = append(&*store, "order-1", vec![event(json!([["reserve", {"sku": "A"}]]))]);
    assert!(integration.pipeline().wait_for(at, WAIT));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let stock = store.read_stream(&sid("stock"), 0, 10).unwrap();
    assert_eq!(stock.len(), 1, "one follow-up event: {stock:?}");
    assert_eq!(stock[0].data["key"], json!(format!("fx1:{at}:0:reactor")));
    integration.shutdown(WAIT);
}

// proves R-OBS-1: a panicking observer is contained and counted, and called again; the
// integration goes on as without one
#[test]
fn a_panicking_observer_is_counted_and_changes_nothing() {
    common::quiet_planned_panics();
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let service = Service::failing_first(1);
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Listed,
        Routes::new().route("svc", handler(&service)).unwrap(),
    )
    .observer(|o: &Observed<'_>| {
        if let Observed::EffectFailed { error } = o {
            assert!(matches!(error, EffectError::Failed { .. }));
            panic!("planned: the observer fails");
        }
    })
    .pipeline(|b| fast(b).max_attempts(3))
    .start()
    .unwrap();
    let mut last = 0;
    for i in 0..3 {
        last = append(&*store, &format!("s{i}"), vec![event(json!([["svc", {}]]))]);
    }
    assert!(integration.pipeline().wait_for(last, WAIT));
    let stats = integration.stats();
    assert_eq!(
        (stats.effects, stats.failures, stats.observer_panics),
        (3, 3, 3),
        "{stats:?}"
    );
    integration.shutdown(WAIT);
}

// proves R-INT-2: an effect that ran but whose completion the store refused is completed later,
// not run again, even once its claim's lease has passed (the completion is kept and stored
// first on the retry)
#[test]
fn a_completion_the_store_refused_is_stored_later_without_running_again() {
    let probed = Arc::new(store::probed::ProbedStore::new());
    probed.fail_completes.store(3, Ordering::SeqCst);
    let store: Arc<dyn EventStore> = probed.clone();
    let service = Arc::new(Service::default());
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Listed,
        Routes::new()
            .route_with(
                "svc",
                handler(&service),
                RoutePolicy::default().with_claim_ttl(Duration::from_millis(1)),
            )
            .unwrap(),
    )
    .pipeline(|b| fast(b).max_attempts(2))
    .start()
    .unwrap();
    let at = append(&*store, "order-1", vec![event(json!([["svc", {}]]))]);
    assert!(integration.pipeline().wait_for(at, WAIT));
    let stats = integration.stats();
    assert_eq!(
        service.total.load(Ordering::SeqCst),
        1,
        "the effect ran once: {stats:?}"
    );
    assert_eq!((stats.effects, stats.store_errors), (1, 3), "{stats:?}");
    assert!(
        integration.pipeline().parked(0, 10).unwrap().is_empty(),
        "store errors are waits"
    );
    let key = humpyard::integration::effect_key(&sid("reactor"), at, 0);
    assert!(matches!(
        store.claim(&key, Duration::from_secs(1)).unwrap(),
        humpyard::store::Claim::Completed(_)
    ));
    integration.shutdown(WAIT);
}

/// Panics in its reaction to a `boom` event once, and sleeps in its reaction to a `slow` one.
struct Moody {
    panicked: std::sync::atomic::AtomicBool,
}

impl Reactor for Moody {
    type State = ();

    fn init(&self, _stream: &StreamId) {}

    fn apply(&self, _state: &mut (), _event: &RecordedEvent) {}

    fn react(&self, _state: &(), event: &RecordedEvent) -> Vec<Command> {
        match event.event_type.as_str() {
            "boom" if !self.panicked.swap(true, Ordering::SeqCst) => panic!("planned panic in a reaction"),
            "slow" => std::thread::sleep(Duration::from_millis(150)),
            _ => {}
        }
        Vec::new()
    }
}

// proves R-OBS-1 and R-FT-3 (outbound): a reaction's panic (a failed attempt, retried) and a
// slow reaction reach the integration's one observer
#[test]
fn the_engines_panics_and_slow_reactions_reach_the_observer() {
    common::quiet_planned_panics();
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&heard);
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Moody {
            panicked: std::sync::atomic::AtomicBool::new(false),
        },
        Routes::new(),
    )
    .observer(move |o: &Observed<'_>| match o {
        Observed::EffectFailed { error } => h.lock().unwrap().push(format!("failed: {error}")),
        Observed::SlowHandler { .. } => h.lock().unwrap().push("slow".to_owned()),
        _ => {}
    })
    .pipeline(|b| {
        b.engine(
            EngineConfig::default()
                .workers(2)
                .retry_backoff(Duration::from_millis(1))
                .slow_handler_threshold(Duration::from_millis(20)),
        )
        .max_attempts(3)
    })
    .start()
    .unwrap();
    store
        .append(&sid("a"), ExpectedVersion::Any, vec![NewEvent::new("boom", json!({}))])
        .unwrap();
    let at = store
        .append(&sid("b"), ExpectedVersion::Any, vec![NewEvent::new("slow", json!({}))])
        .unwrap()
        .last_position;
    assert!(integration.pipeline().wait_for(at, WAIT));
    wait_until("both heard", || heard.lock().unwrap().len() >= 2);
    let heard = heard.lock().unwrap().clone();
    assert!(
        heard.iter().any(|h| h.contains("planned panic in a reaction")),
        "{heard:?}"
    );
    assert!(heard.iter().any(|h| h == "slow"), "{heard:?}");
    integration.shutdown(WAIT);
}

// proves R-INT-2: a follow-up append the store refused uses no id, so the retry's stored
// append derives the same ids as the first try's stored one and writes nothing twice
#[test]
fn a_refused_follow_up_append_uses_no_id() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Listed,
        Routes::new()
            .route("reserve", move |_: &Command, effect: &Effect<'_>| {
                let n = c.fetch_add(1, Ordering::SeqCst);
                let stock = StreamId::new("stock").unwrap();
                if n == 0 {
                    // A stale expected version: refused, nothing stored.
                    let stale = effect.append(&stock, ExpectedVersion::Exact(99), vec![NewEvent::new("x", json!(0))]);
                    assert!(stale.is_err());
                }
                effect
                    .append(&stock, ExpectedVersion::Any, vec![NewEvent::new("reserved", json!(1))])
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("the reply was lost".to_owned());
                }
                Ok(json!("reserved"))
            })
            .unwrap(),
    )
    .pipeline(|b| fast(b).max_attempts(3))
    .start()
    .unwrap();
    let at = append(&*store, "order-1", vec![event(json!([["reserve", {}]]))]);
    assert!(integration.pipeline().wait_for(at, WAIT));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(store.read_stream(&sid("stock"), 0, 10).unwrap().len(), 1);
    integration.shutdown(WAIT);
}

/// An integration whose one route's effect runs once and whose completion the probed store
/// refuses `refusals` times, with the pipeline's retry pushed far off (so only shutdown can
/// store the completion). Returns the integration, the store, the service, and the effect's key.
fn refused_completion(
    refusals: u64,
) -> (
    Integration<Listed>,
    Arc<store::probed::ProbedStore>,
    Arc<Service>,
    humpyard::store::IdempotencyKey,
) {
    let probed = Arc::new(store::probed::ProbedStore::new());
    probed.fail_completes.store(refusals, Ordering::SeqCst);
    let store: Arc<dyn EventStore> = probed.clone();
    let service = Arc::new(Service::default());
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Listed,
        Routes::new()
            .route_with(
                "svc",
                handler(&service),
                RoutePolicy::default().with_claim_ttl(Duration::from_millis(1)),
            )
            .unwrap(),
    )
    .pipeline(|b| {
        b.engine(
            EngineConfig::default()
                .workers(2)
                .retry_backoff(Duration::from_secs(60))
                .retry_backoff_max(Duration::from_secs(60)),
        )
    })
    .start()
    .unwrap();
    let at = append(&*store, "order-1", vec![event(json!([["svc", {}]]))]);
    wait_until("the effect ran and its completion was refused", || {
        integration.stats().store_errors >= 1
    });
    let key = humpyard::integration::effect_key(&sid("reactor"), at, 0);
    (integration, probed, service, key)
}

// proves R-INT-2: an effect that ran but whose completion the store refused, still pending when
// the integration shuts down (its retry far off), is completed by the shutdown: the key is
// found done afterwards, not claimable again once its lease has passed
#[test]
fn a_completion_still_pending_at_shutdown_is_stored_by_the_shutdown() {
    let (integration, probed, service, key) = refused_completion(1);
    let report = integration.shutdown(Duration::from_secs(1));
    assert_eq!(service.total.load(Ordering::SeqCst), 1);
    assert!(report.unsaved_completions.is_empty(), "{report:?}");
    std::thread::sleep(Duration::from_millis(5));
    assert!(
        matches!(
            probed.claim(&key, Duration::from_secs(1)).unwrap(),
            humpyard::store::Claim::Completed(_)
        ),
        "the completion is stored: a replay skips the effect"
    );
}

// proves R-INT-2 and R-OBS-1: a completion the store still refuses through the shutdown is
// named in the report (its effect ran; a replay after its lease would run it again)
#[test]
fn a_completion_the_store_refuses_through_shutdown_is_reported_unsaved() {
    let (integration, _probed, _service, key) = refused_completion(u64::MAX);
    let report = integration.shutdown(Duration::from_millis(300));
    assert_eq!(report.unsaved_completions, vec![key]);
    assert_eq!(
        integration
            .shutdown(Duration::from_millis(300))
            .unsaved_completions
            .len(),
        1,
        "a later call tries again; the store still refuses"
    );
}

/// Panics when dropped (user code the integration must contain).
struct LoudDrop(&'static AtomicU32);

impl Drop for LoudDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("planned panic in a user Drop");
    }
}

// proves the containment of user code (R-FT-3): the command handlers', the observer's and the
// breaker hook's Drop run contained when an integration is dropped, and when a start fails
#[test]
fn user_values_with_panicking_drops_are_dropped_contained() {
    common::quiet_planned_panics();
    static DROPS: AtomicU32 = AtomicU32::new(0);
    let build = |subscriber: &str| {
        let handler_drop = LoudDrop(&DROPS);
        let observer_drop = LoudDrop(&DROPS);
        let hook_drop = LoudDrop(&DROPS);
        let mut breaker = BreakerConfig::default();
        breaker.on_transition = Some(TransitionHook::new(move |_| {
            let _ = &hook_drop;
        }));
        Integration::builder(
            Arc::new(InMemoryStore::new()),
            subscriber,
            Listed,
            Routes::new()
                .route_with(
                    "svc",
                    move |_: &Command, _: &Effect<'_>| {
                        let _ = &handler_drop;
                        Ok::<Value, String>(json!(null))
                    },
                    RoutePolicy::default().with_breaker(breaker),
                )
                .unwrap(),
        )
        .observer(move |_: &Observed<'_>| {
            let _ = &observer_drop;
        })
    };
    let integration = build("reactor").start().unwrap();
    drop(integration);
    assert_eq!(DROPS.load(Ordering::SeqCst), 3, "each dropped once, contained");
    let refused = build("").start();
    assert!(refused.is_err());
    assert_eq!(DROPS.load(Ordering::SeqCst), 6);
}

// proves R-OBS-1: the user's own hooks passed through beside the observer (a breaker's
// on_transition, the pipeline's on_parked and on_slow_handler) run contained: each panics, is
// counted, and the observer still hears of every event
#[test]
fn panicking_own_hooks_do_not_keep_the_observer_from_hearing() {
    common::quiet_planned_panics();
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let service = Service::failing_first(u32::MAX);
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&heard);
    let mut breaker = BreakerConfig::default();
    breaker.failure_threshold = 1;
    breaker.on_transition = Some(TransitionHook::new(|_| panic!("planned panic in a breaker hook")));
    let integration = Integration::builder(
        Arc::clone(&store),
        "reactor",
        Listed,
        Routes::new()
            .route_with("svc", handler(&service), RoutePolicy::default().with_breaker(breaker))
            .unwrap()
            .route("slow", |_: &Command, _: &Effect<'_>| {
                std::thread::sleep(Duration::from_millis(150));
                Ok::<Value, String>(json!(null))
            })
            .unwrap(),
    )
    .observer(move |o: &Observed<'_>| {
        let what = match o {
            Observed::BreakerTransition { .. } => "transition",
            Observed::DeadLetter { .. } => "dead letter",
            Observed::SlowHandler { .. } => "slow",
            _ => return,
        };
        h.lock().unwrap().push(what);
    })
    .pipeline(|b| {
        b.engine(
            EngineConfig::default()
                .workers(2)
                .retry_backoff(Duration::from_millis(1))
                .slow_handler_threshold(Duration::from_millis(20)),
        )
        .max_attempts(1)
        .on_parked(|_| panic!("planned panic in an on_parked hook"))
        .on_slow_handler(|_| panic!("planned panic in an on_slow_handler hook"))
    })
    .start()
    .unwrap();
    append(&*store, "a", vec![event(json!([["svc", {}]]))]);
    let last = append(&*store, "b", vec![event(json!([["slow", {}]]))]);
    assert!(integration.pipeline().wait_for(last, WAIT));
    wait_until("the observer heard all three", || {
        let heard = heard.lock().unwrap();
        ["transition", "dead letter", "slow"].iter().all(|w| heard.contains(w))
    });
    assert!(integration.stats().hook_panics >= 3, "{:?}", integration.stats());
    integration.shutdown(WAIT);
}

/// Panics in `init` for the stream `bad`.
struct BadInit;

impl Reactor for BadInit {
    type State = ();

    fn init(&self, stream: &StreamId) {
        assert!(stream.as_str() != "bad", "planned panic in a reactor's init");
    }

    fn apply(&self, _state: &mut (), _event: &RecordedEvent) {}

    fn react(&self, _state: &(), _event: &RecordedEvent) -> Vec<Command> {
        Vec::new()
    }
}

// proves R-OBS-1 and R-FT-3: a reactor method's panic outside `react` (here `init`) reaches
// the observer, named, and the pipeline handles it as before: the event is parked
#[test]
fn a_reactor_methods_panic_reaches_the_observer() {
    common::quiet_planned_panics();
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&heard);
    let integration = Integration::builder(Arc::clone(&store), "reactor", BadInit, Routes::new())
        .observer(move |o: &Observed<'_>| {
            if let Observed::ReactorPanicked {
                method,
                stream,
                message,
            } = o
            {
                h.lock().unwrap().push(format!("{method:?} {stream:?} {message}"));
            }
        })
        .pipeline(|b| {
            b.engine(
                EngineConfig::default()
                    .workers(2)
                    .retry_backoff(Duration::from_millis(1)),
            )
            .max_attempts(2)
        })
        .start()
        .unwrap();
    let at = store
        .append(&sid("bad"), ExpectedVersion::Any, vec![NewEvent::new("x", json!({}))])
        .unwrap()
        .last_position;
    assert!(integration.pipeline().wait_for(at, WAIT));
    let parked = integration.pipeline().parked(0, 10).unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    let heard = heard.lock().unwrap().clone();
    assert!(!heard.is_empty(), "the observer heard of the panic");
    assert!(
        heard[0].starts_with("Init Some(") && heard[0].contains("planned panic in a reactor's init"),
        "{heard:?}"
    );
    integration.shutdown(WAIT);
}
