//! Subscriptions (`humpyard::store::Subscription`) on both stores: every event once, in position
//! order, woken by appends; on PostgreSQL a transaction that holds a lower position is waited
//! for (R-PG-5; more in `store_gaps.rs`), and errors are per item and never the end (R-FT-5).

mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use humpyard::store::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, Subscription, SubscriptionConfig};
#[cfg(feature = "postgres")]
use humpyard::store::{PgEventStore, PgStoreConfig, StoreError};
#[cfg(feature = "postgres")]
use humpyard::testing::ThrowawayPostgres;
use humpyard::StreamId;
use serde_json::json;
use store::probed::ProbedStore;
#[cfg(feature = "postgres")]
use store::server;

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

fn ev(n: u64) -> NewEvent {
    NewEvent::new("n", json!({ "n": n }))
}

#[cfg(feature = "postgres")]
fn postgres() -> (Arc<PgEventStore>, String) {
    let mut config = PgStoreConfig::default();
    let schema = server::fresh_schema("sub");
    config.schema = schema.clone();
    (Arc::new(PgEventStore::connect(&server::url(), config).unwrap()), schema)
}

/// Appends `total` events from two threads while a subscriber reads; the subscriber must see
/// every position once, in order, and the data of each.
fn every_event_once_in_order(store: Arc<dyn EventStore>) {
    let total = 2_000u64;
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut sub = Subscription::new(store, 0, SubscriptionConfig::default());
            let mut seen = Vec::new();
            while seen.len() < total as usize {
                let batch = sub.next_batch(300, Duration::from_secs(30)).unwrap();
                assert!(!batch.is_empty(), "no event within 30 s after {}", seen.len());
                seen.extend(batch.into_iter().map(|e| (e.position, e.data["n"].as_u64().unwrap())));
            }
            assert!(sub.next_timeout(Duration::from_millis(50)).unwrap().is_none());
            seen
        })
    };
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for chunk in 0..(total / 2 / 10) {
                    let batch = (0..10u64)
                        .map(|i| {
                            let n = w * total + chunk * 10 + i;
                            (sid(&format!("s-{}", n % 37)), ExpectedVersion::Any, vec![ev(n)])
                        })
                        .collect();
                    for r in store.append_many(batch).unwrap() {
                        r.unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let seen = reader.join().unwrap();
    let positions: Vec<u64> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        positions,
        (1..=total).collect::<Vec<_>>(),
        "every position once, in order"
    );
    let mut values: Vec<u64> = seen.iter().map(|(_, n)| *n).collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), total as usize, "every event's data once");
}

// proves R-PG-5 (the contract's reading rule on the in-memory store)
#[test]
fn in_memory_subscription_sees_every_event_once_in_order() {
    every_event_once_in_order(Arc::new(InMemoryStore::new()));
}

// proves R-PG-5 (every committed event delivered once, in position order, under concurrent appends)
#[cfg(feature = "postgres")]
#[test]
fn postgres_subscription_sees_every_event_once_in_order() {
    every_event_once_in_order(postgres().0);
}

/// After the subscriber has idled long enough for its polling to slow to the cap, an append
/// still reaches it at once: the store's watch woke it.
fn an_append_wakes_an_idle_subscriber(store: Arc<dyn EventStore>) {
    let mut config = SubscriptionConfig::default();
    config.poll_interval = Duration::from_secs(120);
    let mut sub = Subscription::new(store.clone(), 0, config);
    // Idle for a while: the waits between reads grow to seconds.
    assert!(sub.next_timeout(Duration::from_secs(3)).unwrap().is_none());
    let appender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        store.append(&sid("wake"), ExpectedVersion::Any, vec![ev(1)]).unwrap();
    });
    let began = Instant::now();
    let event = sub.next_timeout(Duration::from_secs(100)).unwrap().expect("an event");
    // Polling alone would wait several seconds here (the next wait is at least 4 s); a
    // wake-up makes it milliseconds. The bound leaves room for a slow machine.
    assert!(
        began.elapsed() < Duration::from_millis(3500),
        "woken after {:?}: no wake-up came",
        began.elapsed()
    );
    assert_eq!(event.position, 1);
    appender.join().unwrap();
}

// proves R-PG-5 (subscribers are woken, not left to a slow poll, on the in-memory store)
#[test]
fn in_memory_appends_wake_an_idle_subscriber() {
    an_append_wakes_an_idle_subscriber(Arc::new(InMemoryStore::new()));
}

// proves R-SEC-4: the wake-up travels on the constant channel, sent with pg_notify($1, $2)
#[cfg(feature = "postgres")]
#[test]
fn postgres_notifications_wake_an_idle_subscriber() {
    an_append_wakes_an_idle_subscriber(postgres().0);
}

// proves R-SEC-4: LISTEN names only the constant channel; a stream id never becomes one
#[cfg(feature = "postgres")]
#[test]
fn notifications_use_one_constant_channel_with_the_schema_as_payload() {
    let (store, schema) = postgres();
    let mut listener = postgres::Client::connect(&server::url(), postgres::NoTls).unwrap();
    listener.batch_execute("LISTEN humpyard_appends").unwrap();
    let hostile = sid("humpyard_appends/NOTIFY=evil");
    store.append(&hostile, ExpectedVersion::Any, vec![ev(1)]).unwrap();
    let mut notes = listener.notifications();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    use fallible_iterator::FallibleIterator;
    while Instant::now() < deadline {
        if let Some(n) = notes.timeout_iter(Duration::from_millis(200)).next().unwrap() {
            got.push((n.channel().to_owned(), n.payload().to_owned()));
            if n.payload() == schema {
                break;
            }
        }
    }
    assert!(
        got.iter().any(|(c, p)| c == "humpyard_appends" && *p == schema),
        "notifications seen: {got:?}"
    );
    assert!(got.iter().all(|(c, _)| c == "humpyard_appends"));
}

// proves R-PG-5 (the gap rule): an older transaction that drew a lower position by hand before
// a later append committed, and inserts it only afterwards, is waited for: it took its id
// first, so the id the reader draws at the gap is newer, and the gap is not passed until that
// transaction ends
#[cfg(feature = "postgres")]
#[test]
fn an_older_transaction_inserting_a_lower_position_late_is_waited_for() {
    let (store, schema) = postgres();
    store.append(&sid("before"), ExpectedVersion::Any, vec![ev(0)]).unwrap();
    let mut tool = postgres::Client::connect(&server::url(), postgres::NoTls).unwrap();
    let mut tx = tool.transaction().unwrap();
    // The tool's transaction id first, then a position drawn from the identity by hand.
    tx.query_one("select pg_current_xact_id()", &[]).unwrap();
    let drawn: i64 = tx
        .query_one(
            "select nextval(pg_get_serial_sequence($1, 'position'))",
            &[&format!("\"{schema}\".events")],
        )
        .unwrap()
        .get(0);
    assert_eq!(drawn, 2);
    let later = store.append(&sid("after"), ExpectedVersion::Any, vec![ev(2)]).unwrap();
    assert_eq!(later.first_position, 3);
    tx.execute(
        &format!(
            // The schema name is the test's own generated one; values are bound.
            "insert into \"{schema}\".events (position, stream_id, version, event_id, event_type, data) \
             overriding system value values ($1, $2, 0, $3, 'tool', '{{}}')"
        ),
        &[&drawn, &"late-stream", &uuid::Uuid::new_v4()],
    )
    .unwrap();
    let mut sub = Subscription::new(store.clone(), 0, SubscriptionConfig::default());
    assert_eq!(sub.next_timeout(Duration::from_secs(10)).unwrap().unwrap().position, 1);
    assert!(
        sub.next_timeout(Duration::from_millis(300)).unwrap().is_none(),
        "position 3 was delivered while the older transaction still held position 2"
    );
    tx.commit().unwrap();
    let delivered: Vec<u64> = (0..2)
        .map(|_| {
            sub.next_timeout(Duration::from_secs(10))
                .unwrap()
                .expect("an event")
                .position
        })
        .collect();
    assert_eq!(delivered, [2, 3]);
}

// proves R-PG-5 with R-SEC-4's notifications: draining a Postgres watch takes the hints queued
// on its connection, so a later wait waits for a new append instead of waking for old ones
#[cfg(feature = "postgres")]
#[test]
fn draining_a_postgres_watch_takes_the_queued_hints() {
    let (store, _) = postgres();
    let mut watch = store.watch();
    watch.wait(Duration::ZERO); // connects and listens
                                // Without a drain every round wakes at once (its hints are queued); with one, a round
                                // wakes early only if a hint was still on its way at the drain, so one quiet round of
                                // three is asked for.
    let mut rounds = Vec::new();
    for round in 0..3 {
        for n in 0..20 {
            store
                .append(&sid("hinted"), ExpectedVersion::Any, vec![ev(round * 20 + n)])
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(500)); // the hints reach the connection
        watch.drain();
        let began = Instant::now();
        watch.wait(Duration::from_millis(400));
        rounds.push(began.elapsed());
        if began.elapsed() >= Duration::from_millis(300) {
            return;
        }
    }
    panic!("every wait after a drain woke early: {rounds:?}");
}

// proves R-PG-5: a subscription busy reading (its reads return events, so it never waits)
// drains its watch, so that hints do not pile up on a listening connection nobody reads
#[test]
fn a_busy_subscription_drains_its_watch() {
    let store = Arc::new(ProbedStore::new());
    for n in 0..10 {
        store.append(&sid("busy"), ExpectedVersion::Any, vec![ev(n)]).unwrap();
    }
    let mut config = SubscriptionConfig::default();
    config.batch_size = 3;
    let mut sub = Subscription::new(store.clone(), 0, config);
    let mut seen = 0;
    while seen < 10 {
        seen += sub.next_batch(3, Duration::from_secs(10)).unwrap().len();
    }
    assert!(
        store.drains.load(std::sync::atomic::Ordering::Relaxed) >= 3,
        "drains: {}",
        store.drains.load(std::sync::atomic::Ordering::Relaxed)
    );
}

// proves R-FT-5: an event that cannot be decoded is an error in its own place; the rest flows
#[cfg(feature = "postgres")]
#[test]
fn an_undecodable_event_is_reported_in_place_and_the_subscription_goes_on() {
    let (store, schema) = postgres();
    store.append(&sid("good-1"), ExpectedVersion::Any, vec![ev(1)]).unwrap();
    let mut tool = postgres::Client::connect(&server::url(), postgres::NoTls).unwrap();
    tool.execute(
        // The schema name is the test's own generated one; values are bound.
        &format!(
            "insert into \"{schema}\".events (stream_id, version, event_id, event_type, data) \
             values ($1, 0, $2, 'tool', '{{}}')"
        ),
        &[&"not a valid id!", &uuid::Uuid::new_v4()],
    )
    .unwrap();
    store.append(&sid("good-3"), ExpectedVersion::Any, vec![ev(3)]).unwrap();
    store::contract::settled(&*store, 3);
    let mut sub = Subscription::new(store.clone(), 0, SubscriptionConfig::default());
    let items: Vec<_> = (&mut sub).take(3).collect();
    assert_eq!(items[0].as_ref().unwrap().position, 1);
    assert!(
        matches!(items[1], Err(StoreError::InvalidStoredEvent { position: 2, .. })),
        "got {:?}",
        items[1]
    );
    assert_eq!(items[2].as_ref().unwrap().position, 3);
    assert_eq!(sub.position(), 3);
}

// proves R-FT-5: a lost server is an error, never a silent end; the subscription resumes
// where it was and misses nothing
#[cfg(feature = "postgres")]
#[test]
fn a_subscription_reports_a_lost_server_and_resumes_without_gaps() {
    let mut own = ThrowawayPostgres::start().unwrap();
    let mut config = PgStoreConfig::default();
    config.connect_timeout = Duration::from_secs(2);
    config.checkout_timeout = Duration::from_secs(2);
    let store = Arc::new(PgEventStore::connect(&own.url(), config).unwrap());
    for n in 0..5 {
        store.append(&sid("before"), ExpectedVersion::Any, vec![ev(n)]).unwrap();
    }
    let mut sub_config = SubscriptionConfig::default();
    sub_config.retry_backoff = Duration::from_millis(20);
    sub_config.retry_backoff_max = Duration::from_millis(200);
    let mut sub = Subscription::new(store.clone(), 0, sub_config);
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.extend(
            sub.next_batch(10, Duration::from_secs(10))
                .unwrap()
                .iter()
                .map(|e| e.position),
        );
    }
    own.stop();
    // The next read fails, and says so.
    let mut errors = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while errors == 0 && Instant::now() < deadline {
        match sub.next_batch(10, Duration::from_millis(500)) {
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_)) => errors += 1,
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(batch) => assert!(batch.is_empty(), "events from a stopped server"),
        }
    }
    assert!(errors > 0, "a stopped server was never reported");
    assert!(sub.failures() > 0);
    own.restart().unwrap();
    // Appends after the restart reach the same subscription, after the old ones, none twice.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut appended = 0;
    while appended < 5 {
        match store.append(&sid("after"), ExpectedVersion::Any, vec![ev(100 + appended)]) {
            Ok(_) => appended += 1,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("the store never recovered: {e:?}"),
        }
    }
    while seen.len() < 10 && Instant::now() < deadline {
        match sub.next_batch(10, Duration::from_millis(500)) {
            Ok(batch) => seen.extend(batch.iter().map(|e| e.position)),
            Err(_) => continue, // reconnecting: reported, then retried
        }
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    assert_eq!(sub.failures(), 0);
}
