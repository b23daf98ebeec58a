//! Inbound sources and the test kit: a failing or panicking source is restarted after its
//! backoff, counted and reported; injected commands reach the routes, whose events reach the
//! pipeline; `inject` blocks while the source's queue is full; shutdown stops the sources
//! before the pipeline and says what each was doing; the timer source ticks; the fixture
//! handler answers by the command's hash and records what it received (R-INT-3, R-OBS-1,
//! R-API-2).

mod common;
mod store;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, Gate, OpenOnDrop};
use humpyard::integration::testkit::{FixtureError, FixtureHandler, ManualSource};
use humpyard::integration::{
    Command, Effect, Integration, Observed, Reactor, RoutePolicy, Routes, SendError, Source, SourceContext,
    SourceError, SourceState, TimerSource,
};
use humpyard::resilience::Backoff;
use humpyard::store::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RecordedEvent};
use humpyard::{EngineConfig, StreamId};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Reacts to each `placed` event with one `notify` command naming its order.
struct Notify;

impl Reactor for Notify {
    type State = ();

    fn init(&self, _stream: &StreamId) {}

    fn apply(&self, _state: &mut (), _event: &RecordedEvent) {}

    fn react(&self, _state: &(), event: &RecordedEvent) -> Vec<Command> {
        if event.event_type != "placed" {
            return Vec::new();
        }
        vec![Command::new("notify", json!({ "order": event.stream.as_str() })).unwrap()]
    }
}

/// A route handler that turns an `order.place` command into a `placed` event on the order's
/// stream.
fn place(command: &Command, effect: &Effect<'_>) -> Result<Value, String> {
    let order = command.payload()["order"].as_str().ok_or("no order")?.to_owned();
    let stream = StreamId::new(&order).map_err(|e| e.to_string())?;
    let appended = effect
        .append(&stream, ExpectedVersion::Any, vec![NewEvent::new("placed", json!({}))])
        .map_err(|e| e.to_string())?;
    Ok(json!(appended.last_position))
}

fn fixtures() -> (tempdir::Dir, FixtureHandler) {
    let dir = tempdir::Dir::new();
    let handler = FixtureHandler::new(dir.path());
    (dir, handler)
}

/// A scratch directory removed when dropped (std only).
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("humpyard-fixtures-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn engine(
    b: humpyard::pipeline::PipelineBuilder<humpyard::integration::Outbound<Notify>>,
) -> humpyard::pipeline::PipelineBuilder<humpyard::integration::Outbound<Notify>> {
    b.engine(
        EngineConfig::default()
            .workers(2)
            .retry_backoff(Duration::from_millis(1)),
    )
    .checkpoint_interval(Duration::from_millis(5))
}

// proves R-INT-3 and the test kit: commands injected into a source reach their route, whose
// events reach the pipeline, whose reactions reach a fixture handler answering by the
// command's hash; every command is recorded
#[test]
fn injected_commands_flow_through_the_routes_and_the_pipeline() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let (_dir, notify) = fixtures();
    for i in 0..3 {
        let expected = Command::new("notify", json!({ "order": format!("order-{i}") })).unwrap();
        notify.record(&expected, Ok(json!({ "sent": i }))).unwrap();
    }
    let (source, injector) = ManualSource::new(4);
    let integration = Integration::builder(
        Arc::clone(&store),
        "notifier",
        Notify,
        Routes::new()
            .route("order.place", place)
            .unwrap()
            .route("notify", notify.clone())
            .unwrap(),
    )
    .source("orders-feed", source)
    .pipeline(engine)
    .start()
    .unwrap();
    for i in 0..3 {
        injector
            .inject(Command::new("order.place", json!({ "order": format!("order-{i}") })).unwrap())
            .unwrap();
    }
    wait_until("three notifications", || notify.received().len() == 3);
    let received = notify.received();
    assert!(
        received.iter().all(|r| r.position.is_some() && r.attempt == 1),
        "{received:?}"
    );
    let stats = integration.stats();
    assert_eq!((stats.inbound, stats.effects, stats.failures), (3, 6, 0), "{stats:?}");
    let report = integration.shutdown(WAIT);
    assert_eq!(report.sources.len(), 1);
    assert_eq!(report.sources[0].sent, 3);
    assert_eq!(report.sources[0].state, SourceState::Stopped);
    assert!(report.sources[0].joined);
}

/// Fails its first run with an error, panics in its second, then sends one command and runs
/// until stopped.
struct Flaky {
    runs: Arc<AtomicU32>,
}

impl Source for Flaky {
    fn run(&mut self, ctx: &SourceContext) -> Result<(), SourceError> {
        match self.runs.fetch_add(1, Ordering::SeqCst) {
            0 => Err(SourceError::new("the feed dropped the connection")),
            1 => panic!("planned panic in a source"),
            _ => {
                ctx.send(Command::new("order.place", json!({ "order": "order-1" })).unwrap())
                    .map_err(|e| SourceError::new(e.to_string()))?;
                ctx.set_status("idle");
                while ctx.sleep(Duration::from_secs(60)) {}
                Ok(())
            }
        }
    }
}

// proves R-INT-3 and R-OBS-1: a source that fails and one that panics is restarted after its
// backoff, each restart counted and reported to the observer
#[test]
fn a_failing_or_panicking_source_is_restarted_and_reported() {
    common::quiet_planned_panics();
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let runs = Arc::new(AtomicU32::new(0));
    let restarts = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&restarts);
    let integration = Integration::builder(
        Arc::clone(&store),
        "notifier",
        Notify,
        Routes::new()
            .route("order.place", place)
            .unwrap()
            .route("notify", |_: &Command, _: &Effect<'_>| Ok::<Value, String>(json!(null)))
            .unwrap(),
    )
    .source(
        "flaky",
        Flaky {
            runs: Arc::clone(&runs),
        },
    )
    .source_restart(Backoff::new(Duration::from_millis(5), Duration::from_millis(50)).without_jitter())
    .observer(move |o: &Observed<'_>| {
        if let Observed::SourceRestart {
            source,
            restarts,
            delay,
            error,
        } = o
        {
            r.lock()
                .unwrap()
                .push((source.to_string(), *restarts, *delay, chain(*error)));
        }
    })
    .pipeline(engine)
    .start()
    .unwrap();
    wait_until("the third run sent its command", || integration.stats().inbound == 1);
    let heard = restarts.lock().unwrap().clone();
    assert_eq!(heard.len(), 2, "{heard:?}");
    assert_eq!((heard[0].1, heard[0].2), (1, Duration::from_millis(5)));
    assert_eq!(
        (heard[1].1, heard[1].2),
        (2, Duration::from_millis(10)),
        "the backoff doubles"
    );
    assert!(heard[0].3.contains("dropped the connection"), "{heard:?}");
    assert!(heard[1].3.contains("planned panic"), "{heard:?}");
    assert_eq!(integration.stats().source_restarts, 2);
    wait_until("the source says it is idle", || {
        integration.sources()[0].status == "idle"
    });
    let report = integration.shutdown(WAIT);
    let source = &report.sources[0];
    assert_eq!(
        (source.restarts, source.state, source.joined),
        (2, SourceState::Stopped, true)
    );
    assert!(source.last_error.as_deref().unwrap().contains("planned panic"));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

// proves R-INT-3: a source's output is backpressured: with its route's one place held and its
// queue full, `inject` blocks until the route frees
#[test]
fn inject_blocks_while_the_sources_queue_is_full() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let gate = Gate::new();
    let g = Arc::clone(&gate);
    let (source, injector) = ManualSource::new(1);
    let integration = Integration::builder(
        Arc::clone(&store),
        "notifier",
        Notify,
        Routes::new()
            .route_with(
                "slow",
                move |_: &Command, _: &Effect<'_>| {
                    g.wait();
                    Ok::<Value, String>(json!(null))
                },
                RoutePolicy::default().with_max_concurrent(1),
            )
            .unwrap(),
    )
    .source("feed", source)
    .pipeline(engine)
    .start()
    .unwrap();
    let _opener = OpenOnDrop(Arc::clone(&gate));
    let command = |i: u32| Command::new("slow", json!({ "i": i })).unwrap();
    injector.inject(command(0)).unwrap();
    gate.wait_entered(1);
    // The source is blocked in `send`; one more fits the queue; the next must block.
    injector.inject(command(1)).unwrap();
    let returned = Arc::new(AtomicBool::new(false));
    let third = {
        let (injector, returned) = (injector.clone(), Arc::clone(&returned));
        std::thread::spawn(move || {
            injector.inject(command(2)).unwrap();
            returned.store(true, Ordering::SeqCst);
        })
    };
    wait_until("the third inject is parked on the full queue", || {
        injector.queued() == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    let blocked = !returned.load(Ordering::SeqCst);
    gate.open();
    assert!(blocked, "inject returned while the queue was full");
    third.join().unwrap();
    wait_until("every command sent", || integration.stats().inbound == 3);
    integration.shutdown(WAIT);
}

// proves R-INT-3: the timer source sends a command every interval; shutdown stops the sources
// first (the timer ends without another tick) and reports what each was doing
#[test]
fn a_timer_source_ticks_until_shutdown_stops_it_first() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let ticks = Arc::new(AtomicU32::new(0));
    let t = Arc::clone(&ticks);
    let integration = Integration::builder(
        Arc::clone(&store),
        "notifier",
        Notify,
        Routes::new()
            .route("sweep", move |command: &Command, _: &Effect<'_>| {
                assert_eq!(command.payload()["tick"], json!(t.load(Ordering::SeqCst)));
                t.fetch_add(1, Ordering::SeqCst);
                Ok::<Value, String>(json!(null))
            })
            .unwrap(),
    )
    .source(
        "sweeper",
        TimerSource::new(Duration::from_millis(5), |tick| {
            Command::new("sweep", json!({ "tick": tick })).unwrap()
        }),
    )
    .pipeline(engine)
    .start()
    .unwrap();
    wait_until("five ticks", || ticks.load(Ordering::SeqCst) >= 5);
    let report = integration.shutdown(WAIT);
    let after = ticks.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(ticks.load(Ordering::SeqCst), after, "no tick after shutdown");
    assert_eq!(report.sources[0].state, SourceState::Stopped);
    assert!(report.sources[0].status.starts_with("tick "), "{:?}", report.sources[0]);
    assert!(report.sources[0].joined);
}

// proves R-INT-1 (inbound) and R-API-2: an inbound command with no route, and one that fails
// every attempt, come back to the source with the command and a typed reason
#[test]
fn inbound_commands_that_cannot_happen_come_back_typed() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let answers = Arc::new(Mutex::new(Vec::new()));
    struct Once {
        answers: Arc<Mutex<Vec<String>>>,
    }
    impl Source for Once {
        fn run(&mut self, ctx: &SourceContext) -> Result<(), SourceError> {
            for route in ["nowhere", "broken"] {
                let command = Command::new(route, json!({ "r": route })).unwrap();
                let answer = match ctx.send(command.clone()) {
                    Ok(()) => "sent".to_owned(),
                    Err(SendError::Unrouted(back)) => format!("unrouted {}", (back == command)),
                    Err(SendError::Failed { command: back, error }) => {
                        format!("failed {} {}", back == command, error.route().unwrap())
                    }
                    Err(e) => format!("other {e}"),
                };
                self.answers.lock().unwrap().push(answer);
            }
            while ctx.sleep(Duration::from_secs(60)) {}
            Ok(())
        }
    }
    let integration = Integration::builder(
        Arc::clone(&store),
        "notifier",
        Notify,
        Routes::new()
            .route("broken", |_: &Command, _: &Effect<'_>| Err::<Value, _>("down"))
            .unwrap(),
    )
    .source(
        "once",
        Once {
            answers: Arc::clone(&answers),
        },
    )
    .source_retries(2, Backoff::new(Duration::from_millis(1), Duration::from_millis(2)))
    .pipeline(engine)
    .start()
    .unwrap();
    wait_until("both answered", || answers.lock().unwrap().len() == 2);
    assert_eq!(*answers.lock().unwrap(), vec!["unrouted true", "failed true broken"]);
    let stats = integration.stats();
    assert_eq!(
        (stats.unrouted, stats.failures, stats.inbound_dead_letters),
        (1, 2, 2),
        "{stats:?}"
    );
    integration.shutdown(WAIT);
}

// proves the test kit: fixtures are keyed by the command's SHA-256 fingerprint, live only under
// the directory whatever the route name, and a missing or malformed one is a typed error
#[test]
fn fixtures_are_keyed_by_hash_and_never_leave_their_directory() {
    let (dir, handler) = fixtures();
    let sneaky = Command::new("a/../../../etc/passwd", json!({ "x": 1 })).unwrap();
    let path = handler.fixture_path(&sneaky);
    assert_eq!(path.parent().unwrap(), dir.path());
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        format!("{}.json", sneaky.fingerprint_hex())
    );
    handler.record(&sneaky, Err("declined".to_owned())).unwrap();
    std::fs::write(dir.path().join("notes.json"), "{}").unwrap();
    std::fs::write(dir.path().join("../escape.json"), "{}").ok();
    assert_eq!(handler.fixtures().unwrap(), vec![sneaky.fingerprint_hex()]);
    let _ = std::fs::remove_file(dir.path().join("../escape.json"));

    // Payload key order does not change the fingerprint (canonical JSON).
    let a = Command::new("r", serde_json::from_str(r#"{"a":1,"b":2}"#).unwrap()).unwrap();
    let b = Command::new("r", serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap()).unwrap();
    assert_eq!(handler.fixture_path(&a), handler.fixture_path(&b));
    std::fs::write(handler.fixture_path(&a), "[1]").unwrap();

    // Sent through a source, as inbound commands: the handler's typed error comes back.
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    struct Ask {
        commands: Vec<Command>,
        outcomes: Arc<Mutex<Vec<String>>>,
    }
    impl Source for Ask {
        fn run(&mut self, ctx: &SourceContext) -> Result<(), SourceError> {
            for command in self.commands.drain(..) {
                let outcome = match ctx.send(command) {
                    Ok(()) => "ok".to_owned(),
                    Err(SendError::Failed { error, .. }) => {
                        match std::error::Error::source(&*error).and_then(|e| e.downcast_ref::<FixtureError>()) {
                            Some(FixtureError::Malformed { .. }) => "malformed".to_owned(),
                            Some(FixtureError::Missing { command, .. }) => format!("missing {command}"),
                            Some(FixtureError::Answered(message)) => format!("answered {message}"),
                            other => format!("{other:?}"),
                        }
                    }
                    Err(e) => format!("{e}"),
                };
                self.outcomes.lock().unwrap().push(outcome);
            }
            while ctx.sleep(Duration::from_secs(60)) {}
            Ok(())
        }
    }
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let integration = Integration::builder(
        Arc::clone(&store),
        "notifier",
        Notify,
        Routes::new()
            .route("r", handler.clone())
            .unwrap()
            .route("a/../../../etc/passwd", handler.clone())
            .unwrap(),
    )
    .source(
        "ask",
        Ask {
            commands: vec![b.clone(), Command::new("r", json!("missing")).unwrap(), sneaky.clone()],
            outcomes: Arc::clone(&outcomes),
        },
    )
    .source_retries(1, Backoff::new(Duration::from_millis(1), Duration::from_millis(1)))
    .pipeline(engine)
    .start()
    .unwrap();
    wait_until("three answers", || outcomes.lock().unwrap().len() == 3);
    assert_eq!(
        *outcomes.lock().unwrap(),
        vec![
            "malformed".to_owned(),
            r#"missing {"payload":"missing","route":"r"}"#.to_owned(),
            "answered declined".to_owned()
        ]
    );
    assert_eq!(
        (handler.count(&a), handler.count(&sneaky), handler.received().len()),
        (1, 1, 3)
    );
    integration.shutdown(WAIT);
}

// proves R-INT-3 and the test kit: nothing injected is lost: a command `send` handed back
// (unrouted), the one cut short by shutdown, and those still queued when the source stopped
// all come back through `take_unsent`, and `inject` refuses once the source is gone
#[test]
fn a_manual_source_hands_back_every_command_it_did_not_get_performed() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let (source, injector) = ManualSource::new(8);
    let integration = Integration::builder(
        Arc::clone(&store),
        "notifier",
        Notify,
        Routes::new()
            .route("down", |_: &Command, _: &Effect<'_>| {
                Err::<Value, String>("down".to_owned())
            })
            .unwrap(),
    )
    .source("feed", source)
    // The failing command waits out a long backoff between attempts: it is in flight at
    // shutdown.
    .source_retries(100, Backoff::new(Duration::from_secs(30), Duration::from_secs(30)))
    .pipeline(engine)
    .start()
    .unwrap();
    injector.inject(Command::new("nowhere", json!(0)).unwrap()).unwrap();
    injector.inject(Command::new("down", json!(1)).unwrap()).unwrap();
    wait_until("the failing command is in flight", || integration.stats().failures == 1);
    injector.inject(Command::new("down", json!(2)).unwrap()).unwrap();
    injector.inject(Command::new("down", json!(3)).unwrap()).unwrap();
    integration.shutdown(WAIT);
    let unsent = injector.take_unsent();
    let described: Vec<(String, Value)> = unsent
        .iter()
        .map(|(_, e)| {
            let why = match e {
                SendError::Unrouted(_) => "unrouted",
                SendError::Stopped(_) => "stopped",
                _ => "other",
            };
            (why.to_owned(), e_command(e).payload().clone())
        })
        .collect();
    assert_eq!(
        described,
        vec![
            ("unrouted".to_owned(), json!(0)),
            ("stopped".to_owned(), json!(1)),
            ("stopped".to_owned(), json!(2)),
            ("stopped".to_owned(), json!(3)),
        ]
    );
    assert!(injector.inject(Command::new("down", json!(4)).unwrap()).is_err());
}

fn e_command(error: &SendError) -> &Command {
    match error {
        SendError::Unrouted(c) | SendError::Stopped(c) | SendError::Failed { command: c, .. } => c,
        _ => unreachable!("no other kinds"),
    }
}

// proves R-INT-2 and R-INT-3: a keyed inbound effect that ran but whose completion the store
// refused is not reported as cut short by shutdown: `send` returns `Ok` (the effect
// happened), and the shutdown stores the completion
#[test]
fn an_inbound_effect_that_ran_is_not_handed_back_at_shutdown() {
    let probed = Arc::new(store::probed::ProbedStore::new());
    probed.fail_completes.store(u64::MAX, Ordering::SeqCst);
    let store: Arc<dyn EventStore> = probed.clone();
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let (source, injector) = ManualSource::new(2);
    let integration = Integration::builder(
        Arc::clone(&store),
        "notifier",
        Notify,
        Routes::new()
            .route("mail", move |_: &Command, _: &Effect<'_>| {
                c.fetch_add(1, Ordering::SeqCst);
                Ok::<Value, String>(json!("sent"))
            })
            .unwrap(),
    )
    .source("feed", source)
    // After the refusal, `send` waits a long backoff before it tries the completion again:
    // the shutdown comes first.
    .source_retries(3, Backoff::new(Duration::from_secs(30), Duration::from_secs(30)))
    .pipeline(engine)
    .start()
    .unwrap();
    let key = humpyard::store::IdempotencyKey::new("feed:message-1").unwrap();
    injector
        .inject_keyed(key.clone(), Command::new("mail", json!({})).unwrap())
        .unwrap();
    wait_until("the completion was refused", || integration.stats().store_errors >= 1);
    // The store comes back just as the integration shuts down.
    probed.fail_completes.store(0, Ordering::SeqCst);
    let report = integration.shutdown(WAIT);
    assert!(
        injector.take_unsent().is_empty(),
        "the effect happened: not handed back"
    );
    assert_eq!(report.sources[0].sent, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(report.unsaved_completions.is_empty(), "{report:?}");
    assert!(matches!(
        store.claim(&key, Duration::from_secs(1)).unwrap(),
        humpyard::store::Claim::Completed(_)
    ));
}

// proves R-API-2: a source's name that cannot name its thread (empty, or holding a NUL) is a
// typed error at start, not a panic
#[test]
fn a_source_name_that_cannot_name_a_thread_is_refused() {
    for name in ["", "feed\0"] {
        let (source, _injector) = ManualSource::new(1);
        let started = Integration::builder(Arc::new(InMemoryStore::new()), "notifier", Notify, Routes::new())
            .source(name, source)
            .start();
        assert!(
            matches!(started, Err(humpyard::integration::IntegrationError::InvalidSourceName(ref n)) if n == name),
            "{name:?}"
        );
    }
}

// proves R-API-1: an unkeyed inbound command's handler is told which attempt it is
#[test]
fn an_unkeyed_inbound_retry_is_told_its_attempt() {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::clone(&attempts);
    let (source, injector) = ManualSource::new(2);
    let integration = Integration::builder(
        Arc::clone(&store),
        "notifier",
        Notify,
        Routes::new()
            .route("flaky", move |_: &Command, effect: &Effect<'_>| {
                let mut attempts = a.lock().unwrap();
                attempts.push(effect.attempt());
                if attempts.len() < 3 {
                    return Err("not yet".to_owned());
                }
                Ok::<Value, String>(json!(null))
            })
            .unwrap(),
    )
    .source("feed", source)
    .source_retries(5, Backoff::new(Duration::from_millis(1), Duration::from_millis(5)))
    .pipeline(engine)
    .start()
    .unwrap();
    injector.inject(Command::new("flaky", json!({})).unwrap()).unwrap();
    wait_until("the command went through", || integration.stats().inbound == 1);
    assert_eq!(*attempts.lock().unwrap(), vec![1, 2, 3]);
    integration.shutdown(WAIT);
}

/// An error and its causes, joined by ": " as an error reporter prints them: a source's error
/// says "the source failed" and its cause says why (R-API-2).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}
