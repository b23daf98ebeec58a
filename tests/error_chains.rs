//! Errors that say why: every public error type of humpyard says what failed at its own level
//! in its `Display`, and leads to the cause through `source()`, so a reporter that walks the
//! chain (anyhow's `{:#}`, or `chain` below) prints each cause once (R-API-2; the convention is
//! written out in `src/store/error.rs`).
// Without feature `postgres` the tests that need a real store's errors are left out, and with
// them some helpers and imports.
#![cfg_attr(not(feature = "postgres"), allow(unused_imports, dead_code))]

use std::error::Error;
#[cfg(feature = "postgres")]
use std::net::TcpListener;
#[cfg(feature = "postgres")]
use std::time::Duration;

use humpyard::integration::testkit::FixtureError;
use humpyard::integration::{
    Command, EffectError, EncodeCommandError, IntegrationError, RouteName, Routes, SendError, SourceError,
};
use humpyard::pipeline::{PipelineError, ReplayError};
use humpyard::resilience::{Bulkhead, CallError};
use humpyard::store::{EventStore, ExpectedVersion, IdempotencyKey, InMemoryStore, InvalidInput, NewEvent, StoreError};
#[cfg(feature = "postgres")]
use humpyard::store::{PgEventStore, PgStoreConfig};
#[cfg(feature = "postgres")]
use humpyard::testing::ThrowawayPostgres;
use humpyard::{ConfigError, InvalidStreamId, StreamId};
use serde_json::{json, Value};

/// Each level's `Display`, from the error down its `source()` chain.
fn levels(error: &(dyn Error + 'static)) -> Vec<String> {
    let mut levels = vec![error.to_string()];
    let mut next = error.source();
    while let Some(cause) = next {
        levels.push(cause.to_string());
        next = cause.source();
    }
    levels
}

/// The chain as a reporter prints it, `error: cause: cause's cause`, after checking that no
/// level is empty, none repeats a level below it (the symptom of a `Display` that embeds its
/// source), and no name prints as `StreamId(...)`.
fn chain(error: &(dyn Error + 'static)) -> String {
    let levels = levels(error);
    for (i, level) in levels.iter().enumerate() {
        assert!(!level.trim().is_empty(), "level {i} is empty: {levels:?}");
        for below in &levels[i + 1..] {
            assert!(
                !level.contains(below.as_str()),
                "{level:?} repeats its cause {below:?}: {levels:?}"
            );
        }
    }
    let text = levels.join(": ");
    assert!(!text.contains("StreamId("), "{text}");
    text
}

/// `needle` (ignoring case) occurs in `text` exactly once.
fn once(text: &str, needle: &str) -> bool {
    text.to_lowercase().matches(&needle.to_lowercase()).count() == 1
}

#[cfg(feature = "postgres")]
fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[cfg(feature = "postgres")]
fn unavailable() -> StoreError {
    let mut config = PgStoreConfig::default();
    config.connect_timeout = Duration::from_millis(500);
    let url = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", refused_port());
    match PgEventStore::connect(&url, config) {
        Err(e @ StoreError::Unavailable(_)) => e,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

// proves R-API-2: a store that cannot connect says it is unavailable, and its chain says why
// ("connection refused"), once
#[cfg(feature = "postgres")]
#[test]
fn an_unavailable_database_says_why_once() {
    let error = unavailable();
    assert_eq!(error.to_string(), "the database is unavailable");
    let text = chain(&error);
    assert!(once(&text, "connection refused"), "{text}");
    assert!(once(&text, "error connecting to server"), "{text}");
    // The database's words end the chain: one level below the store's.
    assert_eq!(levels(&error).len(), 2, "{text}");
    let StoreError::Unavailable(backend) = &error else {
        unreachable!()
    };
    assert!(
        backend.to_string().to_lowercase().contains("connection refused"),
        "{backend}"
    );
    assert!(backend.driver_error().is::<postgres::Error>());
    assert_eq!(backend.sqlstate(), None);

    // Carried up through the integration's errors, still each level once.
    let route = RouteName::new("mail.send").unwrap();
    let effect = EffectError::Store { route, source: error };
    let command = Command::new("mail.send", json!({})).unwrap();
    let send = SendError::Failed {
        command,
        error: Box::new(effect),
    };
    let source = SourceError::new(send);
    let text = chain(&source);
    assert!(once(&text, "connection refused"), "{text}");
    assert!(once(&text, "the database is unavailable"), "{text}");
    assert!(
        text.starts_with("the source failed: the command failed every attempt: route mail.send"),
        "{text}"
    );
}

// proves R-API-2: a pool checkout that times out because no connection can be made says why
// (the driver's "connection refused"), not only r2d2's "error connecting to server" (mutation
// `pool-error-loses-its-cause`)
#[cfg(feature = "postgres")]
#[test]
fn a_checkout_that_times_out_says_why_no_connection_was_made() {
    // A server of its own, to stop under the store.
    let mut server = ThrowawayPostgres::start().expect("a throwaway PostgreSQL server");
    let mut config = PgStoreConfig::default();
    config.schema = "checkout_timeout".to_owned();
    config.connect_timeout = Duration::from_millis(500);
    config.checkout_timeout = Duration::from_millis(1500);
    let store = PgEventStore::connect(&server.url(), config).expect("connects");
    server.stop();
    let error = store.read_all(0, 10).unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert_eq!(error.to_string(), "the database is unavailable");
    let text = chain(&error);
    assert!(once(&text, "timed out waiting for connection"), "{text}");
    assert!(once(&text, "connection refused"), "{text}");
    // The failed connects are counted, and `health` (what the metrics export reads) says so.
    assert!(store.health().pool_errors > 0);
}

// proves R-API-2: a server's error reads as the server's own message with its SQLSTATE, not the
// driver's bare "db error"
#[cfg(feature = "postgres")]
#[test]
fn a_servers_error_reads_as_its_message_and_sqlstate() {
    let (_server, url) = match std::env::var("DATABASE_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = ThrowawayPostgres::start().expect("a throwaway PostgreSQL server");
            let url = server.url();
            (Some(server), url)
        }
    };
    // A later `dbname` wins over the first (key=value connection strings).
    let url = format!("{url} dbname=humpyard_no_such_database");
    let error = PgEventStore::connect(&url, PgStoreConfig::default()).unwrap_err();
    let text = chain(&error);
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert_eq!(
        text,
        "the database failed: database \"humpyard_no_such_database\" does not exist (SQLSTATE 3D000)"
    );
}

// proves R-API-2: the store's other errors with a cause
#[cfg(feature = "postgres")]
#[test]
fn the_stores_errors_say_each_cause_once() {
    let store = InMemoryStore::new();
    let bad = store.load_checkpoint("no spaces").unwrap_err();
    let text = chain(&bad);
    assert!(text.starts_with("invalid subscriber name: "), "{text}");
    chain(&InvalidInput::SubscriberName(InvalidStreamId::Empty));
    let stored = StoreError::InvalidStoredEvent {
        position: 7,
        reason: InvalidStreamId::Empty,
    };
    assert_eq!(
        chain(&stored),
        "the event at position 7 has an invalid stream id: stream id is empty"
    );
    chain(&ReplayError::Store(unavailable()));
    chain(&PipelineError::Store(unavailable()));
    chain(&PipelineError::Spawn(std::io::Error::other("no threads left")));
    chain(&PipelineError::Engine(ConfigError::Spawn(std::io::Error::other(
        "no threads left",
    ))));
    chain(&IntegrationError::Subscriber(bad));
    chain(&IntegrationError::Pipeline(PipelineError::Store(unavailable())));
    chain(&IntegrationError::Spawn(std::io::Error::other("no threads left")));
    chain(&ConfigError::Spawn(std::io::Error::other("no threads left")));

    // A stored event that does not decode names its stream by its text.
    let stream = StreamId::new("account-7").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new("opened", json!("not a number"))],
        )
        .unwrap();
    let event = store.read_stream(&stream, 0, 10).unwrap().remove(0);
    let error = event.decode::<u64>().unwrap_err();
    let text = chain(&error);
    assert!(text.contains("(stream \"account-7\")"), "{text}");
}

// proves R-API-2 and R-API-1: a version conflict prints the stream's text (see also
// tests/observability.rs)
#[test]
fn a_version_conflict_prints_the_streams_text() {
    let store = InMemoryStore::new();
    let stream = StreamId::new("order-42").unwrap();
    let error = store
        .append(
            &stream,
            ExpectedVersion::Exact(3),
            vec![NewEvent::new("placed", json!({}))],
        )
        .unwrap_err();
    let text = chain(&error);
    assert!(text.starts_with("stream \"order-42\" expected at"), "{text}");
}

// proves R-API-2: the integration's errors
#[test]
fn the_integrations_errors_say_each_cause_once() {
    let refused = Command::new("no spaces", json!({})).unwrap_err();
    assert!(chain(&refused).starts_with("invalid route name \"no spaces\": "));

    let encode = Command::encode("bad route", &1).unwrap_err();
    assert!(matches!(encode, EncodeCommandError::Invalid(_)));
    chain(&encode);
    let mut map = std::collections::BTreeMap::new();
    map.insert((1, 2), 3);
    let encode = Command::encode("fine.route", &map).unwrap_err();
    assert!(matches!(encode, EncodeCommandError::Serialize { .. }));
    let text = chain(&encode);
    assert!(
        text.starts_with("the payload of a command for \"fine.route\" did not serialize: "),
        "{text}"
    );

    let command = Command::new("inventory.reserve", json!({ "qty": 2 })).unwrap();
    let decode = command.decode::<Vec<u8>>().unwrap_err();
    let text = chain(&decode);
    assert!(
        text.starts_with("the payload of a command for \"inventory.reserve\" did not decode: "),
        "{text}"
    );

    let route = Routes::new()
        .route("no spaces", |_: &Command, _: &humpyard::integration::Effect<'_>| {
            Ok::<Value, String>(Value::Null)
        })
        .unwrap_err();
    assert!(chain(&route).starts_with("invalid route name \"no spaces\": "));

    let failed = EffectError::Failed {
        route: RouteName::new("mail.send").unwrap(),
        key: IdempotencyKey::new("mail-1").unwrap(),
        source: "the mail server said 550".into(),
    };
    assert_eq!(
        chain(&failed),
        "route mail.send: the effect mail-1 failed: the mail server said 550"
    );
    chain(&SourceError::new(std::io::Error::other(
        "the feed dropped the connection",
    )));
    chain(&FixtureError::Io {
        path: "fixtures/a.json".into(),
        source: std::io::Error::other("permission denied"),
    });
}

// proves R-API-2: the resilience errors; `CallError::Failed` is the call's own error, as is
#[test]
fn the_resilience_errors_say_each_cause_once() {
    let failed: CallError<std::io::Error> = CallError::Failed(std::io::Error::other("refused"));
    assert_eq!(chain(&failed), "refused");
    chain(&CallError::<std::io::Error>::Open);
    chain(&Bulkhead::try_new(0).unwrap_err());
    chain(&StreamId::new("").unwrap_err());
}
