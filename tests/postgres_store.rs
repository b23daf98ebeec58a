//! The Postgres store beyond the shared contract: connection hygiene (R-PG-1), nothing left
//! on a returned connection (R-PG-2), typed errors and recovery (R-PG-3), migrations racing
//! (R-PG-2), on a throwaway server (or `DATABASE_URL`).

mod store;

use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use humpyard::store::{
    EventFilter, EventStore, ExpectedVersion, InvalidInput, NewEvent, PgEventStore, PgStoreConfig, StoreError,
};
use humpyard::testing::ThrowawayPostgres;
use humpyard::StreamId;
use serde_json::json;
use store::server;

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

fn config(schema: String) -> PgStoreConfig {
    let mut c = PgStoreConfig::default();
    c.schema = schema;
    c
}

fn outside() -> postgres::Client {
    postgres::Client::connect(&server::url(), postgres::NoTls).unwrap()
}

// proves R-PG-1: every pooled connection runs with the timeouts
#[test]
fn pooled_connections_run_with_the_configured_timeouts() {
    let mut c = config(server::fresh_schema("hyg"));
    c.statement_timeout = Duration::from_millis(1500);
    c.lock_timeout = Duration::from_millis(700);
    c.idle_in_transaction_timeout = Duration::from_secs(9);
    c.pool_size = 3;
    let store = PgEventStore::connect(&server::url(), c).unwrap();
    // Several checkouts, so more than one pooled connection answers.
    let seen: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6).map(|_| s.spawn(|| store.session_settings().unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for settings in seen {
        assert_eq!(settings.statement_timeout, "1500ms");
        assert_eq!(settings.lock_timeout, "700ms");
        assert_eq!(settings.idle_in_transaction_session_timeout, "9s");
        assert_eq!(settings.application_name, "humpyard");
    }
}

// proves R-PG-1: an unreachable server is an error within the connect timeout, never a hang
#[test]
fn an_unresponsive_server_fails_within_the_connect_timeout() {
    // A listener that never accepts: TCP connects (the kernel's backlog), the startup
    // handshake never answers.
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = black_hole.local_addr().unwrap().port();
    let mut c = config("humpyard".to_owned());
    c.connect_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let url = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    match PgEventStore::connect(&url, c) {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // Nothing listening at all: refused at once, still typed.
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("host=127.0.0.1 port={closed_port} user=postgres dbname=postgres");
    assert!(matches!(
        PgEventStore::connect(&url, config("humpyard".to_owned())),
        Err(StoreError::Unavailable(_))
    ));
    drop(black_hole);
}

// proves R-SEC-1: names and connection strings are validated, typed errors
#[test]
fn bad_schema_names_and_urls_are_typed_errors() {
    for bad in ["Public", "x\"; drop schema public; --", "", "1abc"] {
        match PgEventStore::connect(&server::url(), config(bad.to_owned())) {
            Err(StoreError::InvalidInput(InvalidInput::SchemaName)) => {}
            other => panic!("{bad:?}: expected InvalidInput::SchemaName, got {other:?}"),
        }
    }
    match PgEventStore::connect("host=127.0.0.1 port=notaport", config("humpyard".to_owned())) {
        Err(StoreError::InvalidInput(InvalidInput::ConnectionString)) => {}
        other => panic!("expected InvalidInput::ConnectionString, got {other:?}"),
    }
}

// proves R-PG-2: locks are transaction-scoped; nothing is left on a returned connection
#[test]
fn no_lock_or_open_transaction_outlives_an_operation() {
    // A server of its own: other tests' operations in flight would hold locks of their own.
    let own = ThrowawayPostgres::start().unwrap();
    let store = PgEventStore::connect(&own.url(), config("leaks".to_owned())).unwrap();
    let a = sid("leak-check");
    store
        .append(&a, ExpectedVersion::NoStream, vec![NewEvent::new("e", json!(1))])
        .unwrap();
    assert!(store
        .append(&a, ExpectedVersion::NoStream, vec![NewEvent::new("e", json!(2))])
        .is_err());
    store.save_checkpoint("reader", 1).unwrap();
    store.read_all(0, 10).unwrap();
    let mut watcher = postgres::Client::connect(&own.url(), postgres::NoTls).unwrap();
    let advisory: i64 = watcher
        .query_one(
            "select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid \
             where l.locktype = 'advisory' and a.application_name = 'humpyard'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(advisory, 0, "an advisory lock outlived its operation");
    let in_transaction: i64 = watcher
        .query_one(
            "select count(*) from pg_stat_activity where application_name = 'humpyard' \
             and state like 'idle in transaction%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        in_transaction, 0,
        "a pooled connection was returned inside a transaction"
    );
}

// proves R-PG-2: processes migrating one schema at once serialise on the advisory lock
#[test]
fn concurrent_migrations_of_one_schema_all_succeed_once() {
    let schema = server::fresh_schema("mig");
    let start = Arc::new(Barrier::new(8));
    let results: Vec<_> = (0..8)
        .map(|_| {
            let (schema, start, url) = (schema.clone(), start.clone(), server::url());
            std::thread::spawn(move || {
                start.wait();
                PgEventStore::connect(&url, config(schema)).map(drop)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    // `schema` is a name this test made (`fresh_schema`), quoted: no value is spliced.
    let row = outside()
        .query_one(
            &format!("select count(*), count(distinct version), max(version) from \"{schema}\".migrations"),
            &[],
        )
        .unwrap();
    let (applied, distinct, last): (i64, i64, i32) = (row.get(0), row.get(1), row.get(2));
    // Every migration from V1 to the newest (V4 at least), each applied once.
    assert!(last >= 4, "the newest migration is V{last}");
    assert_eq!(
        (applied, distinct),
        (i64::from(last), i64::from(last)),
        "each applied once"
    );
}

// proves R-PG-4, R-PG-5 across an upgrade: a schema that V1 made, with events in it, is
// migrated to V2 when a store connects: the global lock and its trigger are gone, the xid
// trigger is in, the old events read back, and appends go on from their versions
#[test]
fn a_v1_schema_with_events_upgrades_to_v2() {
    let schema = server::fresh_schema("upgrade");
    humpyard::testing::migrate_schema_to(&server::url(), &schema, 1).unwrap();
    let mut sql = outside();
    // Events as a V1 writer or a tool left them (`schema` is this test's own name, quoted).
    for (stream, version) in [("a", 0i64), ("a", 1), ("b", 0)] {
        sql.execute(
            &format!(
                "insert into \"{schema}\".events (stream_id, version, event_id, event_type, data) \
                 values ($1, $2, $3, 'old', '{{}}')"
            ),
            &[&stream, &version, &uuid::Uuid::new_v4()],
        )
        .unwrap();
    }
    sql.execute(
        &format!("insert into \"{schema}\".checkpoints (subscriber, position) values ($1, $2)"),
        &[&"p", &2i64],
    )
    .unwrap();
    let store = PgEventStore::connect(&server::url(), config(schema.clone())).unwrap();
    let triggers: Vec<String> = sql
        .query(
            "select tgname::text from pg_trigger where tgrelid = ($1 || '.events')::regclass and not tgisinternal \
             order by tgname",
            &[&format!("\"{schema}\"")],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(triggers, ["draw_xact_id"]);
    let overloads: i64 = sql
        .query_one(
            "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname = $1 and p.proname = 'append_batch'",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        overloads, 2,
        "V1's append_batch is dropped; V2's stays beside V5's for processes of older builds"
    );
    let old: Vec<(u64, String)> = store
        .read_all(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| (e.position, e.stream.as_str().to_owned()))
        .collect();
    assert_eq!(old, [(1, "a".to_owned()), (2, "a".to_owned()), (3, "b".to_owned())]);
    assert_eq!(store.load_checkpoint("p").unwrap(), Some(2));
    let a = StreamId::new("a").unwrap();
    let next = store
        .append(&a, ExpectedVersion::Exact(1), vec![NewEvent::new("new", json!({}))])
        .unwrap();
    assert_eq!((next.first_position, next.last_version), (4, 2));
    assert!(matches!(
        store.append(&a, ExpectedVersion::Exact(1), vec![NewEvent::new("late", json!({}))]),
        Err(StoreError::WrongExpectedVersion { actual: Some(2), .. })
    ));
}

// proves the gap rule's preconditions are checked: a position sequence that caches values, or
// a disabled xid trigger, is a typed error when a store connects
#[test]
fn broken_gap_preconditions_are_typed_errors_at_connect() {
    let schema = server::fresh_schema("pre");
    drop(PgEventStore::connect(&server::url(), config(schema.clone())).unwrap());
    let mut sql = outside();
    let events = format!("\"{schema}\".events");
    sql.batch_execute(&format!("alter table {events} alter column position set cache 20"))
        .unwrap();
    assert!(matches!(
        PgEventStore::connect(&server::url(), config(schema.clone())),
        Err(StoreError::Precondition(humpyard::store::Precondition::SequenceCache(
            20
        )))
    ));
    sql.batch_execute(&format!(
        "alter table {events} alter column position set cache 1; alter table {events} disable trigger draw_xact_id"
    ))
    .unwrap();
    assert!(matches!(
        PgEventStore::connect(&server::url(), config(schema)),
        Err(StoreError::Precondition(
            humpyard::store::Precondition::XactIdTriggerDisabled
        ))
    ));
}

// proves R-PG-3: a server restart surfaces as typed errors, then the pool recovers; nothing
// is lost or written twice
#[test]
fn the_pool_recovers_after_a_server_restart() {
    let mut own = ThrowawayPostgres::start().unwrap();
    let mut c = config("restart".to_owned());
    c.pool_size = 2;
    c.checkout_timeout = Duration::from_secs(5);
    let store = PgEventStore::connect(&own.url(), c).unwrap();
    let a = sid("survivor");
    let first = NewEvent::new("e", json!(0));
    store.append(&a, ExpectedVersion::NoStream, vec![first]).unwrap();
    own.restart().unwrap();
    // Until the pool notices the old connections are gone, an operation may fail: typed.
    let mut written = 1;
    let mut errors = 0;
    for n in 1..=5 {
        let event = NewEvent::new("e", json!(n));
        loop {
            match store.append(&a, ExpectedVersion::Any, vec![event.clone()]) {
                Ok(_) => {
                    written += 1;
                    break;
                }
                Err(StoreError::Unavailable(_)) if errors < 10 => errors += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }
    let versions: Vec<u64> = store
        .read_stream(&a, 0, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(
        versions,
        (0..written).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
}

// proves R-FT-6: a batch whose items share an id goes item by item; an item the server rejects
// after an earlier one was written fails alone, and the written item's result is kept
#[test]
fn a_failure_late_in_an_item_by_item_batch_keeps_the_written_items_results() {
    let schema = server::fresh_schema("late");
    let store = PgEventStore::connect(&server::url(), config(schema.clone())).unwrap();
    // An operator's own rule on the table, which the server enforces and humpyard cannot see.
    outside()
        .batch_execute(&format!(
            "alter table \"{schema}\".events add constraint no_forbidden check (stream_id <> 'forbidden')"
        ))
        .unwrap();
    let first = NewEvent::new("e", json!({"n": 1}));
    // The first item again at the end (a retry) makes the batch go item by item; the second
    // call fails as a whole (SQLSTATE 23514) after the first committed.
    let results = store
        .append_many(vec![
            (sid("late-a"), ExpectedVersion::NoStream, vec![first.clone()]),
            (
                sid("forbidden"),
                ExpectedVersion::NoStream,
                vec![NewEvent::new("e", json!(2))],
            ),
            (sid("late-a"), ExpectedVersion::NoStream, vec![first.clone()]),
        ])
        .expect("the first item was written, so the batch answers per item");
    assert_eq!(results.len(), 3);
    let written = results[0].as_ref().expect("the first item was written");
    match &results[1] {
        Err(StoreError::Backend(e)) => assert_eq!(e.sqlstate(), Some("23514")),
        other => panic!("expected the server's refusal, got {other:?}"),
    }
    assert_eq!(results[2].as_ref().expect("the retry answers as the first"), written);
    let stored = store.read_stream(&sid("late-a"), 0, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].id, stored[0].position), (first.id(), written.first_position));
    assert!(store.read_stream(&sid("forbidden"), 0, 10).unwrap().is_empty());

    // Had the first call failed, nothing was written and the batch fails as a whole.
    let later = NewEvent::new("e", json!(3));
    assert!(store
        .append_many(vec![
            (
                sid("forbidden"),
                ExpectedVersion::Any,
                vec![NewEvent::new("e", json!(4))]
            ),
            (sid("late-d"), ExpectedVersion::Any, vec![later.clone()]),
            (sid("late-d"), ExpectedVersion::Any, vec![later]),
        ])
        .is_err());
    assert!(store.read_stream(&sid("late-d"), 0, 10).unwrap().is_empty());
}

// V3 across an upgrade: a schema that V2 made, with checkpoints saved, is migrated when a store
// connects: the checkpoints are keyed by (subscriber, partition) with an epoch, the saved
// positions are kept as partition 0, saves stay monotonic from them, and the new tables work
#[test]
fn a_v2_schema_with_checkpoints_upgrades_to_v3() {
    let schema = server::fresh_schema("upgrade3");
    humpyard::testing::migrate_schema_to(&server::url(), &schema, 2).unwrap();
    let mut sql = outside();
    // Saved as a V2 humpyard saved them (`schema` is this test's own name, quoted).
    sql.execute(
        &format!("insert into \"{schema}\".checkpoints (subscriber, position) values ($1, $2), ($3, $4)"),
        &[&"p", &7i64, &"q", &3i64],
    )
    .unwrap();
    let store = PgEventStore::connect(&server::url(), config(schema.clone())).unwrap();
    let key: Vec<String> = sql
        .query(
            "select a.attname::text from pg_index i \
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) \
             where i.indrelid = ($1 || '.checkpoints')::regclass and i.indisprimary \
             order by array_position(i.indkey::int2[], a.attnum)",
            &[&format!("\"{schema}\"")],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(key, ["subscriber", "partition"]);
    let rows: Vec<(String, i32, i64, i64)> = sql
        .query(
            &format!("select subscriber, partition, epoch, position from \"{schema}\".checkpoints order by subscriber"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(rows, [("p".to_owned(), 0, 0, 7), ("q".to_owned(), 0, 0, 3)]);
    assert_eq!(store.load_checkpoint("p").unwrap(), Some(7));
    store.save_checkpoint("p", 5).unwrap();
    assert_eq!(store.load_checkpoint("p").unwrap(), Some(7), "still never back");
    store.save_checkpoint("p", 9).unwrap();
    store.reset_checkpoint("q", 1).unwrap();
    assert_eq!(
        (store.load_checkpoint("p").unwrap(), store.load_checkpoint("q").unwrap()),
        (Some(9), Some(1))
    );
    // Another partition of the same subscriber is a row of its own (for scale-out).
    sql.execute(
        &format!("insert into \"{schema}\".checkpoints (subscriber, partition, position) values ($1, $2, $3)"),
        &[&"p", &1i32, &100i64],
    )
    .unwrap();
    assert_eq!(store.load_checkpoint("p").unwrap(), Some(9));
    store.save_checkpoint("p", 10).unwrap();
    assert_eq!(store.load_checkpoint("p").unwrap(), Some(10));
    let snapshot = humpyard::store::Snapshot {
        subscriber: "p".to_owned(),
        stream: sid("s"),
        state_version: 1,
        version: 4,
        data: json!({"n": 4}),
    };
    store.save_snapshot(&snapshot).unwrap();
    assert_eq!(store.load_snapshot("p", &sid("s"), 1, 10).unwrap(), Some(snapshot));
    assert!(store.parked("p", None, 0, usize::MAX).unwrap().is_empty());
}

/// Appends `good-1`, a tool's row with a stream id humpyard cannot decode (type `tool`), and
/// `good-3`; returns the store once all three are readable.
fn store_with_an_undecodable_row_at_2() -> PgEventStore {
    let schema = server::fresh_schema("undecodable");
    let store = PgEventStore::connect(&server::url(), config(schema.clone())).unwrap();
    let ev = || NewEvent::new("counted", json!({}));
    store.append(&sid("good-1"), ExpectedVersion::Any, vec![ev()]).unwrap();
    outside()
        .execute(
            // The schema name is the test's own generated one; values are bound.
            &format!(
                "insert into \"{schema}\".events (stream_id, version, event_id, event_type, data) \
                 values ($1, 0, $2, 'tool', '{{}}')"
            ),
            &[&"not a valid id!", &uuid::Uuid::new_v4()],
        )
        .unwrap();
    store.append(&sid("good-3"), ExpectedVersion::Any, vec![ev()]).unwrap();
    store::contract::settled(&store, 3);
    store
}

// proves R-FT-5 for filtered reads: a row that cannot be decoded and that the filter leaves out
// is passed like any other, never an error; one the filter passes is an error in its own place,
// as in read_all
#[test]
fn an_undecodable_row_a_filter_leaves_out_does_not_fail_a_filtered_read() {
    let store = store_with_an_undecodable_row_at_2();
    assert!(matches!(
        store.read_all(1, usize::MAX),
        Err(StoreError::InvalidStoredEvent { position: 2, .. })
    ));
    for filter in [
        EventFilter::all().stream_prefix("good-"),
        EventFilter::all().event_types(["counted"]),
    ] {
        let read = store.read_all_filtered(0, usize::MAX, &filter).unwrap();
        let positions: Vec<u64> = read.events.iter().map(|e| e.position).collect();
        assert_eq!((positions, read.passed), (vec![1, 3], 3), "{filter:?}");
        let from_it = store.read_all_filtered(1, usize::MAX, &filter).unwrap();
        assert_eq!((from_it.events.len(), from_it.passed), (1, 3), "{filter:?}");
    }
    // Passed by the filter: it ends the batch before it, and is the error of the read that
    // starts at it; the read after it goes on.
    for filter in [
        EventFilter::all().stream_prefix("not"),
        EventFilter::all().event_types(["tool"]),
    ] {
        let read = store.read_all_filtered(0, usize::MAX, &filter).unwrap();
        assert_eq!((read.events.len(), read.passed), (0, 1), "{filter:?}");
        assert!(
            matches!(
                store.read_all_filtered(1, usize::MAX, &filter),
                Err(StoreError::InvalidStoredEvent { position: 2, .. })
            ),
            "{filter:?}"
        );
        let after = store.read_all_filtered(2, usize::MAX, &filter).unwrap();
        assert_eq!((after.events.len(), after.passed), (0, 3), "{filter:?}");
    }
}

// proves R-PG-5 for filtered reads: a position still held by an open transaction stops a
// filtered read even when the events after it would be left out by the filter
#[test]
fn a_filtered_read_never_passes_a_position_that_may_yet_commit() {
    let schema = server::fresh_schema("filtergap");
    let store = PgEventStore::connect(&server::url(), config(schema.clone())).unwrap();
    let ev = || NewEvent::new("counted", json!({}));
    store.append(&sid("seen-1"), ExpectedVersion::Any, vec![ev()]).unwrap();
    let mut tool = outside();
    let mut tx = tool.transaction().unwrap();
    // A tool's transaction takes its id, then a position, and holds it open.
    tx.query_one("select pg_current_xact_id()", &[]).unwrap();
    tx.execute(
        &format!(
            "insert into \"{schema}\".events (stream_id, version, event_id, event_type, data) \
             values ('held-2', 0, $1, 'counted', '{{}}')"
        ),
        &[&uuid::Uuid::new_v4()],
    )
    .unwrap();
    store.append(&sid("other-3"), ExpectedVersion::Any, vec![ev()]).unwrap();
    let nothing = EventFilter::all().event_types(["none"]);
    for _ in 0..3 {
        let read = store.read_all_filtered(0, usize::MAX, &nothing).unwrap();
        assert_eq!((read.events.len(), read.passed), (0, 1), "position 2 may yet commit");
    }
    tx.commit().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = store
            .read_all_filtered(0, usize::MAX, &EventFilter::all().stream_prefix("held-"))
            .unwrap();
        if read.passed == 3 {
            assert_eq!(read.events.iter().map(|e| e.position).collect::<Vec<_>>(), [2]);
            break;
        }
        assert!(Instant::now() < deadline, "never passed 2: {read:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// proves R-PG-4 across a rolling upgrade: after V5, a process of an older build still appends
// through V2's `append_batch` (kept beside V5's), and the two kinds of writer continue each
// other's versions
#[test]
fn an_older_builds_append_batch_still_appends_beside_v5() {
    let schema = server::fresh_schema("rolling");
    let store = PgEventStore::connect(&server::url(), config(schema.clone())).unwrap();
    let s = sid("order-1");
    store
        .append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("placed", json!({}))])
        .unwrap();
    // What a process of the build before V5 sends: V2's signature, its expected version
    // encoded in the old way (here `Exact(0)`), no advisory-lock keys (one writer here).
    let old_id = uuid::Uuid::new_v4();
    let row = outside()
        .query_one(
            &format!(
                "select status, last_version from \"{schema}\".append_batch(\
                 array['order-1'], array[0::bigint], array[1], array[1], array[1], array[$1::uuid], \
                 array['paid'], array['{{}}'::jsonb], array['{{}}'::jsonb], array[]::bigint[], \
                 'humpyard_appends', $2)"
            ),
            &[&old_id, &schema],
        )
        .unwrap();
    let (status, last_version): (Vec<i16>, Vec<i64>) = (row.get(0), row.get(1));
    assert_eq!((status, last_version), (vec![0], vec![1]), "accepted by V2's function");
    store
        .append(&s, ExpectedVersion::Exact(1), vec![NewEvent::new("shipped", json!({}))])
        .unwrap();
    let read: Vec<(u64, String)> = store
        .read_stream(&s, 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| (e.version, e.event_type))
        .collect();
    assert_eq!(read, [(0, "placed".into()), (1, "paid".into()), (2, "shipped".into())]);
    assert_eq!(store.read_stream(&s, 1, 1).unwrap()[0].id, old_id);
}
