//! The event store contract (`humpyard::store` module docs), as checks any store must pass.
//! `contract_tests!(module, factory)` instantiates every check as a test for one store; each
//! test gets a fresh, empty store from `factory`.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use humpyard::store::{
    EventFilter, EventStore, ExpectedVersion, InvalidInput, NewEvent, ParkKind, ParkedEvent, RecordedEvent, Snapshot,
    StoreError,
};
use humpyard::StreamId;
use serde_json::json;
use uuid::Uuid;

pub fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// Waits until the event at `last` has passed the commit watermark. `read_all` shows a
/// committed event once every older transaction has ended, and on a server shared by tests
/// running in parallel another test's transaction may hold the watermark back for a moment.
pub fn settled(store: &dyn EventStore, last: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.read_all(last - 1, 1).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "position {last} never became readable");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ev(n: u64) -> NewEvent {
    NewEvent::new("counted", json!({ "n": n }))
}

// proves R-PG-4 (versions and positions)
pub fn versions_and_positions(store: &dyn EventStore) {
    let a = sid("order-1");
    let first = store.append(&a, ExpectedVersion::NoStream, vec![ev(0), ev(1)]).unwrap();
    assert_eq!(
        (first.first_position, first.last_position, first.last_version),
        (1, 2, 1)
    );
    let b = sid("order-2");
    let other = store.append(&b, ExpectedVersion::Any, vec![ev(0)]).unwrap();
    assert_eq!((other.first_position, other.last_version), (3, 0));
    let next = store.append(&a, ExpectedVersion::Exact(1), vec![ev(2)]).unwrap();
    assert_eq!((next.first_position, next.last_version), (4, 2));
    let read = store.read_stream(&a, 0, usize::MAX).unwrap();
    let versions: Vec<_> = read.iter().map(|e| (e.version, e.position)).collect();
    assert_eq!(versions, vec![(0, 1), (1, 2), (2, 4)]);
    assert!(read.iter().all(|e| e.stream == a && e.event_type == "counted"));
}

// proves R-PG-4: a conflict takes no position
pub fn wrong_expected_version_writes_nothing(store: &dyn EventStore) {
    let a = sid("acct-1");
    store.append(&a, ExpectedVersion::NoStream, vec![ev(0)]).unwrap();
    for (expected, actual) in [
        (ExpectedVersion::NoStream, Some(0)),
        (ExpectedVersion::Exact(5), Some(0)),
    ] {
        match store.append(&a, expected, vec![ev(1)]) {
            Err(StoreError::WrongExpectedVersion {
                stream,
                expected: e,
                actual: got,
            }) => {
                assert_eq!((stream, e, got), (a.clone(), expected, actual));
            }
            other => panic!("expected WrongExpectedVersion, got {other:?}"),
        }
    }
    match store.append(&sid("fresh"), ExpectedVersion::Exact(0), vec![ev(0)]) {
        Err(StoreError::WrongExpectedVersion { actual: None, .. }) => {}
        other => panic!("expected WrongExpectedVersion with no stream, got {other:?}"),
    }
    // No position was burnt by the failures.
    let next = store.append(&a, ExpectedVersion::Exact(0), vec![ev(1)]).unwrap();
    assert_eq!(next.first_position, 2);
    settled(store, 2);
    assert_eq!(store.read_all(0, usize::MAX).unwrap().len(), 2);
}

pub fn retrying_an_append_is_idempotent(store: &dyn EventStore) {
    let a = sid("cart-7");
    let events = vec![ev(0), ev(1), ev(2)];
    let first = store.append(&a, ExpectedVersion::NoStream, events.clone()).unwrap();
    store.append(&a, ExpectedVersion::Any, vec![ev(3)]).unwrap();
    // The retry carries a stale expected version: it still gets the first answer.
    let again = store.append(&a, ExpectedVersion::NoStream, events).unwrap();
    assert_eq!(again, first);
    settled(store, 4);
    assert_eq!(
        store.read_all(0, usize::MAX).unwrap().len(),
        4,
        "the retry wrote nothing"
    );
}

pub fn reusing_a_stored_id_otherwise_is_a_duplicate(store: &dyn EventStore) {
    let a = sid("inv-1");
    let (x, y) = (ev(0), ev(1));
    store
        .append(&a, ExpectedVersion::NoStream, vec![x.clone(), y.clone()])
        .unwrap();
    let fresh = ev(9);
    let cases: Vec<(&str, StreamId, Vec<NewEvent>, Uuid)> = vec![
        ("part of the append", a.clone(), vec![x.clone()], x.id()),
        ("reordered", a.clone(), vec![y.clone(), x.clone()], y.id()),
        ("another stream", sid("inv-2"), vec![x.clone(), y.clone()], x.id()),
        (
            "with a new event",
            a.clone(),
            vec![x.clone(), y.clone(), fresh.clone()],
            x.id(),
        ),
        ("after a new event", a.clone(), vec![fresh.clone(), y.clone()], y.id()),
    ];
    // A duplicate is reported before a wrong expected version (`append_rules`' precedence).
    for expected in [ExpectedVersion::Any, ExpectedVersion::Exact(99)] {
        for (case, stream, events, offending) in cases.clone() {
            match store.append(&stream, expected, events) {
                Err(StoreError::DuplicateEventId(id)) => assert_eq!(id, offending, "{case}, {expected:?}"),
                other => panic!("{case}, {expected:?}: expected DuplicateEventId, got {other:?}"),
            }
        }
    }
    let twice = ev(5);
    match store.append(
        &sid("inv-3"),
        ExpectedVersion::Any,
        vec![twice.clone(), ev(6), twice.clone()],
    ) {
        Err(StoreError::DuplicateEventId(id)) => assert_eq!(id, twice.id()),
        other => panic!("twice in one call: expected DuplicateEventId, got {other:?}"),
    }
    settled(store, 2);
    assert_eq!(store.read_all(0, usize::MAX).unwrap().len(), 2, "nothing written");
    assert_eq!(
        store
            .append(&a, ExpectedVersion::Exact(1), vec![fresh])
            .unwrap()
            .first_position,
        3
    );
}

pub fn an_empty_append_is_invalid(store: &dyn EventStore) {
    match store.append(&sid("s"), ExpectedVersion::Any, Vec::new()) {
        Err(StoreError::InvalidInput(InvalidInput::NoEvents)) => {}
        other => panic!("expected InvalidInput::NoEvents, got {other:?}"),
    }
}

// proves R-FT-6: a batch settles per item
pub fn append_many_settles_each_item(store: &dyn EventStore) {
    let (a, b, c) = (sid("a"), sid("b"), sid("c"));
    let results = store
        .append_many(vec![
            (a.clone(), ExpectedVersion::NoStream, vec![ev(0)]),
            (b.clone(), ExpectedVersion::Exact(3), vec![ev(0)]), // conflict
            (a.clone(), ExpectedVersion::Exact(0), vec![ev(1), ev(2)]), // sees the first item
            (c.clone(), ExpectedVersion::Any, Vec::new()),       // invalid
            (c.clone(), ExpectedVersion::NoStream, vec![ev(0)]),
        ])
        .unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0].as_ref().unwrap().first_position, 1);
    assert!(matches!(
        results[1],
        Err(StoreError::WrongExpectedVersion { actual: None, .. })
    ));
    let third = results[2].as_ref().unwrap();
    assert_eq!(
        (third.first_position, third.last_position, third.last_version),
        (2, 3, 2)
    );
    assert!(matches!(
        results[3],
        Err(StoreError::InvalidInput(InvalidInput::NoEvents))
    ));
    assert_eq!(results[4].as_ref().unwrap().first_position, 4);
    assert!(store.read_stream(&b, 0, usize::MAX).unwrap().is_empty());
    settled(store, 4);
    let all: Vec<_> = store
        .read_all(0, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(all, vec![1, 2, 3, 4]);
}

pub fn ids_repeated_across_items_of_one_batch(store: &dyn EventStore) {
    let (a, b) = (sid("rep-a"), sid("rep-b"));
    let (x, y) = (ev(0), ev(1));
    let results = store
        .append_many(vec![
            (a.clone(), ExpectedVersion::NoStream, vec![x.clone(), y.clone()]),
            (a.clone(), ExpectedVersion::NoStream, vec![x.clone(), y.clone()]), // a retry
            (b.clone(), ExpectedVersion::Any, vec![y.clone()]),                 // a duplicate
            (b.clone(), ExpectedVersion::Any, vec![ev(2)]),
        ])
        .unwrap();
    let first = *results[0].as_ref().unwrap();
    assert_eq!(
        results[1].as_ref().unwrap(),
        &first,
        "the repeat is answered as a retry"
    );
    assert!(matches!(results[2], Err(StoreError::DuplicateEventId(id)) if id == y.id()));
    assert_eq!(results[3].as_ref().unwrap().first_position, 3);
    settled(store, 3);
    assert_eq!(store.read_all(0, usize::MAX).unwrap().len(), 3);
}

pub fn reads_page_forward(store: &dyn EventStore) {
    let a = sid("log");
    for n in 0..10 {
        store.append(&a, ExpectedVersion::Any, vec![ev(n)]).unwrap();
        store.append(&sid("noise"), ExpectedVersion::Any, vec![ev(n)]).unwrap();
    }
    let page = store.read_stream(&a, 3, 4).unwrap();
    assert_eq!(page.iter().map(|e| e.version).collect::<Vec<_>>(), vec![3, 4, 5, 6]);
    assert!(store.read_stream(&a, 10, 5).unwrap().is_empty());
    assert!(store.read_stream(&sid("missing"), 0, 5).unwrap().is_empty());
    settled(store, 20);
    let all = store.read_all(5, 3).unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), vec![6, 7, 8]);
    assert_eq!(store.read_all(0, usize::MAX).unwrap().len(), 20);
    assert!(store.read_all(20, usize::MAX).unwrap().is_empty());
    assert!(store.read_all(0, 0).unwrap().is_empty());
}

pub fn checkpoints_round_trip_and_names_are_checked(store: &dyn EventStore) {
    assert_eq!(store.load_checkpoint("projector-1").unwrap(), None);
    store.save_checkpoint("projector-1", 41).unwrap();
    store.save_checkpoint("projector-1", 42).unwrap();
    assert_eq!(store.load_checkpoint("projector-1").unwrap(), Some(42));
    assert_eq!(store.load_checkpoint("projector-2").unwrap(), None);
    for bad in ["", "a b", "x'; drop table events; --", "émile"] {
        assert!(
            matches!(
                store.save_checkpoint(bad, 1),
                Err(StoreError::InvalidInput(InvalidInput::SubscriberName(_)))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(store.load_checkpoint(bad), Err(StoreError::InvalidInput(_))),
            "{bad:?}"
        );
    }
}

// proves R-PG-5: a checkpoint never moves back: a late save below it (a detached reader of an
// earlier run saving after a newer one) changes nothing
pub fn a_stale_checkpoint_save_never_moves_it_back(store: &dyn EventStore) {
    store.save_checkpoint("projector", 40).unwrap();
    store.save_checkpoint("projector", 7).unwrap();
    assert_eq!(store.load_checkpoint("projector").unwrap(), Some(40));
    store.save_checkpoint("projector", 41).unwrap();
    assert_eq!(store.load_checkpoint("projector").unwrap(), Some(41));
}

// proves R-SEC-1: hostile text goes in and comes out exactly
pub fn hostile_payloads_round_trip(store: &dyn EventStore) {
    let a = sid("x--=@+/.:_9=="); // every punctuation a stream id may hold
    let data = json!({
        "quote": "it's \"quoted\"", "backslash": "C:\\path\\", "placeholder": "$1 $2 ?",
        "sql": "'); DROP TABLE events; --", "unicode": "žluťoučký kůň 🐎 \u{2028}", "nested": [1, null, {"k": true}]
    });
    let meta = json!({ "trace": "$$ dollar $$", "empty": "" });
    let event = NewEvent::new("type with 'quote' and $1", data.clone()).with_metadata(meta.clone());
    store
        .append(&a, ExpectedVersion::NoStream, vec![event.clone()])
        .unwrap();
    let back = &store.read_stream(&a, 0, 1).unwrap()[0];
    assert_eq!(back.stream, a);
    assert_eq!(back.id, event.id());
    assert_eq!(back.event_type, "type with 'quote' and $1");
    assert_eq!(back.data, data);
    assert_eq!(back.metadata, meta);
    let defaulted = NewEvent::new("t", json!(null));
    store.append(&a, ExpectedVersion::Any, vec![defaulted]).unwrap();
    assert_eq!(store.read_stream(&a, 1, 1).unwrap()[0].metadata, json!({}));
}

// proves R-FT-6 and R-SEC-1: text PostgreSQL cannot hold (a NUL character in an event's type,
// data or metadata) is a typed error of its own item on both stores; the rest of the batch
// commits, nothing is lost
pub fn a_nul_character_fails_only_its_own_item(store: &dyn EventStore) {
    let s = sid("nul");
    let refused = [
        NewEvent::new("t\u{0}", json!(1)),
        NewEvent::new("t", json!({ "deep": ["ok", "a\u{0}b"] })),
        NewEvent::new("t", json!(1)).with_metadata(json!({ "k\u{0}": 1 })),
    ];
    let mut batch = vec![(s.clone(), ExpectedVersion::NoStream, vec![ev(0)])];
    batch.extend(
        refused
            .iter()
            .map(|e| (s.clone(), ExpectedVersion::Any, vec![e.clone()])),
    );
    batch.push((s.clone(), ExpectedVersion::Exact(0), vec![ev(1)]));
    let results = store.append_many(batch).unwrap();
    assert_eq!(results[0].as_ref().unwrap().first_position, 1);
    for refused in &results[1..4] {
        assert!(
            matches!(refused, Err(StoreError::InvalidInput(InvalidInput::NulCharacter))),
            "{refused:?}"
        );
    }
    assert_eq!(results[4].as_ref().unwrap().last_version, 1);
    settled(store, 2);
    assert_eq!(store.read_all(0, usize::MAX).unwrap().len(), 2);
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, vec![refused[0].clone()]),
        Err(StoreError::InvalidInput(InvalidInput::NulCharacter))
    ));
}

// proves R-FT-6: an expected version no stream can reach (past i64::MAX, the database's
// bigint) is a conflict of its own item on both stores, not a failure of the batch
pub fn an_unreachable_expected_version_is_a_conflict_of_its_item(store: &dyn EventStore) {
    let s = sid("far");
    let results = store
        .append_many(vec![
            (s.clone(), ExpectedVersion::NoStream, vec![ev(0)]),
            (s.clone(), ExpectedVersion::Exact(u64::MAX), vec![ev(1)]),
            (s.clone(), ExpectedVersion::Exact(0), vec![ev(2)]),
        ])
        .unwrap();
    assert!(results[0].is_ok());
    assert!(
        matches!(
            results[1],
            Err(StoreError::WrongExpectedVersion { actual: Some(0), .. })
        ),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2].as_ref().unwrap().last_version, 1);
}

// proves R-PG-4: of 16 racing appends with one expected version, exactly one wins
pub fn racing_appends_one_wins(store: Arc<dyn EventStore>) {
    let a = sid("contended");
    store.append(&a, ExpectedVersion::NoStream, vec![ev(0)]).unwrap();
    let start = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|n| {
            let (store, start, a) = (store.clone(), start.clone(), a.clone());
            std::thread::spawn(move || {
                start.wait();
                store.append(&a, ExpectedVersion::Exact(0), vec![ev(n)])
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(winners[0].first_position, 2);
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::WrongExpectedVersion { actual: Some(1), .. }),
                "{e:?}"
            );
        }
    }
    // The losers burnt no position.
    let next = store
        .append(&sid("after"), ExpectedVersion::NoStream, vec![ev(0)])
        .unwrap();
    assert_eq!(next.first_position, 3);
}

/// Whether `result` is the typed error of a bad subscriber name.
fn bad_name<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::InvalidInput(InvalidInput::SubscriberName(_))))
}

const BAD_NAMES: [&str; 4] = ["", "a b", "x'; drop table parked; --", "émile"];

/// A time the Postgres store keeps exactly (`timestamptz` holds microseconds).
fn at_micros(micros: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(micros)
}

fn parked_event(subscriber: &str, position: u64, stream: &str, kind: ParkKind) -> ParkedEvent {
    ParkedEvent {
        subscriber: subscriber.to_owned(),
        position,
        stream: sid(stream),
        version: position * 10,
        attempts: 3,
        kind,
        message: format!("failed at {position}: it's \"quoted\" $1 %_"),
        parked_at: at_micros(1_700_000_000_000_000 + position),
    }
}

fn positions_of(parked: &[ParkedEvent]) -> Vec<u64> {
    parked.iter().map(|p| p.position).collect()
}

// Parked events: kept per subscriber, listed in position order (all, or one stream's), paged
// by `after` and `max`; parking a parked position again updates it; unpark says whether it was
// there; names are checked and a NUL in a message is refused on both stores
pub fn parked_events_round_trip_in_position_order(store: &dyn EventStore) {
    let sub = "projector";
    let parked = [
        parked_event(sub, 7, "acct-1", ParkKind::Behind),
        parked_event(sub, 3, "acct-2", ParkKind::Handler),
        parked_event(sub, 5, "acct-1", ParkKind::Panic),
        parked_event(sub, 9, "acct-1", ParkKind::Init),
    ];
    for p in &parked {
        store.park(p).unwrap();
    }
    store
        .park(&parked_event("other", 4, "acct-1", ParkKind::Handler))
        .unwrap();
    let all = store.parked(sub, None, 0, usize::MAX).unwrap();
    assert_eq!(
        all,
        vec![
            parked[1].clone(),
            parked[2].clone(),
            parked[0].clone(),
            parked[3].clone()
        ],
        "every field back, in position order, only this subscriber's"
    );
    let one = sid("acct-1");
    assert_eq!(
        positions_of(&store.parked(sub, Some(&one), 0, usize::MAX).unwrap()),
        [5, 7, 9]
    );
    assert_eq!(
        positions_of(&store.parked(sub, Some(&sid("acct-2")), 0, usize::MAX).unwrap()),
        [3]
    );
    assert!(store
        .parked(sub, Some(&sid("acct-3")), 0, usize::MAX)
        .unwrap()
        .is_empty());
    assert_eq!(
        positions_of(&store.parked(sub, None, 3, usize::MAX).unwrap()),
        [5, 7, 9]
    );
    assert_eq!(positions_of(&store.parked(sub, None, 4, 2).unwrap()), [5, 7]);
    assert_eq!(positions_of(&store.parked(sub, None, 0, 1).unwrap()), [3]);
    assert_eq!(positions_of(&store.parked(sub, Some(&one), 5, 1).unwrap()), [7]);
    assert!(store.parked(sub, None, 0, 0).unwrap().is_empty());
    assert!(store.parked(sub, None, 9, usize::MAX).unwrap().is_empty());
    assert!(store.parked(sub, None, u64::MAX, usize::MAX).unwrap().is_empty());
    assert_eq!(positions_of(&store.parked("other", None, 0, usize::MAX).unwrap()), [4]);
    assert!(store.parked("nobody", None, 0, usize::MAX).unwrap().is_empty());

    // A replay that failed again: the same position, parked again.
    let again = ParkedEvent {
        attempts: 6,
        kind: ParkKind::Panic,
        message: "panicked: 'index out of bounds'".to_owned(),
        parked_at: at_micros(1_800_000_000_000_000),
        ..parked[0].clone()
    };
    assert!(store.park(&again).unwrap(), "written");
    let all = store.parked(sub, None, 0, usize::MAX).unwrap();
    assert_eq!(positions_of(&all), [3, 5, 7, 9], "updated, not added");
    assert_eq!(all[2], again);
    // Parked again as behind another (read again after a restart): the stored row is kept.
    let behind = ParkedEvent {
        attempts: 0,
        kind: ParkKind::Behind,
        message: "behind the parked event at position 3".to_owned(),
        ..again.clone()
    };
    assert!(!store.park(&behind).unwrap(), "kept, not written");
    assert_eq!(store.parked(sub, None, 0, usize::MAX).unwrap()[2], again);

    assert!(store.unpark(sub, 5).unwrap());
    assert!(!store.unpark(sub, 5).unwrap(), "gone already");
    assert!(!store.unpark(sub, 4).unwrap(), "another subscriber's");
    assert!(!store.unpark(sub, u64::MAX).unwrap());
    assert_eq!(
        positions_of(&store.parked(sub, None, 0, usize::MAX).unwrap()),
        [3, 7, 9]
    );
    assert_eq!(positions_of(&store.parked("other", None, 0, usize::MAX).unwrap()), [4]);

    for bad in BAD_NAMES {
        assert!(
            bad_name(store.park(&ParkedEvent {
                subscriber: bad.to_owned(),
                ..parked[1].clone()
            })),
            "{bad:?}"
        );
        assert!(bad_name(store.parked(bad, None, 0, usize::MAX)), "{bad:?}");
        assert!(bad_name(store.unpark(bad, 3)), "{bad:?}");
    }
    let nul = ParkedEvent {
        message: "a\u{0}b".to_owned(),
        ..parked[1].clone()
    };
    assert!(matches!(
        store.park(&nul),
        Err(StoreError::InvalidInput(InvalidInput::NulCharacter))
    ));
    assert_eq!(
        store.parked(sub, None, 0, 1).unwrap()[0],
        parked[1],
        "the refused park changed nothing"
    );
}

fn snapshot(subscriber: &str, stream: &str, state_version: u32, version: u64) -> Snapshot {
    Snapshot {
        subscriber: subscriber.to_owned(),
        stream: sid(stream),
        state_version,
        version,
        data: json!({ "stream": stream, "state": state_version, "at": version, "q": "it's $1" }),
    }
}

fn loaded(store: &dyn EventStore, subscriber: &str, stream: &str, state_version: u32, at_most: u64) -> Option<u64> {
    store
        .load_snapshot(subscriber, &sid(stream), state_version, at_most)
        .unwrap()
        .map(|s| s.version)
}

// Snapshots: a load returns the newest not past `at_most`, of its own subscriber, stream and
// state version only; a save of the same key replaces it; names checked, NUL refused
pub fn snapshots_load_the_newest_not_past_at_most(store: &dyn EventStore) {
    let sub = "projector";
    for version in [20, 10, 30] {
        store.save_snapshot(&snapshot(sub, "cart-1", 1, version)).unwrap();
    }
    assert_eq!(
        store.load_snapshot(sub, &sid("cart-1"), 1, 25).unwrap(),
        Some(snapshot(sub, "cart-1", 1, 20)),
        "every field back"
    );
    for (at_most, newest) in [
        (9, None),
        (10, Some(10)),
        (19, Some(10)),
        (29, Some(20)),
        (30, Some(30)),
    ] {
        assert_eq!(loaded(store, sub, "cart-1", 1, at_most), newest, "at most {at_most}");
    }
    assert_eq!(loaded(store, sub, "cart-1", 1, u64::MAX), Some(30));

    // Another state version: its own snapshots only.
    store.save_snapshot(&snapshot(sub, "cart-1", 2, 15)).unwrap();
    assert_eq!(loaded(store, sub, "cart-1", 2, u64::MAX), Some(15));
    assert_eq!(loaded(store, sub, "cart-1", 2, 14), None);
    assert_eq!(
        loaded(store, sub, "cart-1", 1, 19),
        Some(10),
        "not the other state version's 15"
    );
    assert_eq!(loaded(store, sub, "cart-1", 3, u64::MAX), None);
    assert_eq!(loaded(store, sub, "cart-1", u32::MAX, u64::MAX), None);

    // Another stream, another subscriber: their own.
    store.save_snapshot(&snapshot(sub, "cart-2", 1, 40)).unwrap();
    store.save_snapshot(&snapshot("auditor", "cart-1", 1, 50)).unwrap();
    assert_eq!(loaded(store, sub, "cart-1", 1, u64::MAX), Some(30));
    assert_eq!(loaded(store, sub, "cart-2", 1, u64::MAX), Some(40));
    assert_eq!(loaded(store, sub, "cart-2", 1, 39), None);
    assert_eq!(loaded(store, "auditor", "cart-1", 1, u64::MAX), Some(50));
    assert_eq!(loaded(store, "auditor", "cart-1", 1, 49), None);
    assert_eq!(loaded(store, sub, "cart-3", 1, u64::MAX), None);
    assert_eq!(loaded(store, "nobody", "cart-1", 1, u64::MAX), None);

    // The same key again: replaced.
    let replaced = Snapshot {
        data: json!({ "replaced": true }),
        ..snapshot(sub, "cart-1", 1, 20)
    };
    store.save_snapshot(&replaced).unwrap();
    assert_eq!(store.load_snapshot(sub, &sid("cart-1"), 1, 25).unwrap(), Some(replaced));

    for bad in BAD_NAMES {
        let named = Snapshot {
            subscriber: bad.to_owned(),
            ..snapshot(sub, "cart-1", 1, 1)
        };
        assert!(bad_name(store.save_snapshot(&named)), "{bad:?}");
        assert!(bad_name(store.load_snapshot(bad, &sid("cart-1"), 1, 1)), "{bad:?}");
    }
    let nul = Snapshot {
        data: json!({ "k": ["a\u{0}b"] }),
        ..snapshot(sub, "cart-1", 1, 35)
    };
    assert!(matches!(
        store.save_snapshot(&nul),
        Err(StoreError::InvalidInput(InvalidInput::NulCharacter))
    ));
    assert_eq!(
        loaded(store, sub, "cart-1", 1, u64::MAX),
        Some(30),
        "the refused save wrote nothing"
    );
}

// A rewind: reset_checkpoint sets the checkpoint exactly, backwards too (and makes one that
// was never saved); from there save_checkpoint is monotonic again
pub fn reset_checkpoint_moves_it_back_then_saves_never_do(store: &dyn EventStore) {
    store.save_checkpoint("projector", 40).unwrap();
    store.reset_checkpoint("projector", 10).unwrap();
    assert_eq!(store.load_checkpoint("projector").unwrap(), Some(10));
    store.save_checkpoint("projector", 5).unwrap();
    assert_eq!(
        store.load_checkpoint("projector").unwrap(),
        Some(10),
        "a save still never moves it back"
    );
    store.save_checkpoint("projector", 12).unwrap();
    assert_eq!(store.load_checkpoint("projector").unwrap(), Some(12));
    store.reset_checkpoint("projector", 0).unwrap();
    assert_eq!(store.load_checkpoint("projector").unwrap(), Some(0));
    store.reset_checkpoint("projector", 99).unwrap();
    assert_eq!(store.load_checkpoint("projector").unwrap(), Some(99), "forwards too");
    store.reset_checkpoint("fresh", 3).unwrap();
    assert_eq!(store.load_checkpoint("fresh").unwrap(), Some(3));
    assert_eq!(
        store.load_checkpoint("projector").unwrap(),
        Some(99),
        "each subscriber its own"
    );
    for bad in BAD_NAMES {
        assert!(bad_name(store.reset_checkpoint(bad, 1)), "{bad:?}");
    }
}

/// The events of a filtered read, as (position, stream, type).
fn summary(events: &[RecordedEvent]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .map(|e| (e.position, e.stream.as_str().to_owned(), e.event_type.clone()))
        .collect()
}

// Filtered reads: by event type, by stream-id prefix (compared as text: `_` and `%` are no
// wildcards), both; positions left out count as passed; `max` bounds the positions looked at,
// passed or not
pub fn filtered_reads_by_type_and_prefix(store: &dyn EventStore) {
    let log: [(&str, &str); 8] = [
        ("order-1", "placed"),    // 1
        ("order-2", "placed"),    // 2
        ("cust-1", "registered"), // 3
        ("order-1", "shipped"),   // 4
        ("ord_9", "placed"),      // 5
        ("ordx9", "placed"),      // 6
        ("cust-1", "placed"),     // 7
        ("order-2", "cancelled"), // 8
    ];
    for (n, (stream, event_type)) in (0..).zip(log) {
        store
            .append(
                &sid(stream),
                ExpectedVersion::Any,
                vec![NewEvent::new(event_type, json!({ "n": n }))],
            )
            .unwrap();
    }
    settled(store, 8);
    let all = store.read_all(0, usize::MAX).unwrap();
    let read = |after: u64, max: usize, filter: &EventFilter| {
        let read = store.read_all_filtered(after, max, filter).unwrap();
        // What passes comes back whole, exactly as read_all has it.
        for event in &read.events {
            assert_eq!(event, &all[event.position as usize - 1]);
        }
        (read.events.iter().map(|e| e.position).collect::<Vec<_>>(), read.passed)
    };
    let everything = store.read_all_filtered(0, usize::MAX, &EventFilter::all()).unwrap();
    assert_eq!((summary(&everything.events), everything.passed), (summary(&all), 8));

    let placed = EventFilter::all().event_types(["placed"]);
    assert_eq!(read(0, usize::MAX, &placed), (vec![1, 2, 5, 6, 7], 8));
    let two_types = EventFilter::all().event_types(["shipped", "cancelled"]);
    assert_eq!(read(0, usize::MAX, &two_types), (vec![4, 8], 8));
    let orders = EventFilter::all().stream_prefix("order-");
    assert_eq!(read(0, usize::MAX, &orders), (vec![1, 2, 4, 8], 8));
    let two_prefixes = EventFilter::all().stream_prefix("cust-").stream_prefix("order-2");
    assert_eq!(read(0, usize::MAX, &two_prefixes), (vec![2, 3, 7, 8], 8));
    let whole_id = EventFilter::all().stream_prefix("cust-1");
    assert_eq!(read(0, usize::MAX, &whole_id), (vec![3, 7], 8));
    let both = EventFilter::all().event_types(["placed"]).stream_prefix("order-");
    assert_eq!(read(0, usize::MAX, &both), (vec![1, 2], 8));
    let both_of_many = EventFilter::all()
        .event_types(["placed", "registered"])
        .stream_prefix("cust-")
        .stream_prefix("ord_");
    assert_eq!(read(0, usize::MAX, &both_of_many), (vec![3, 5, 7], 8));

    // Prefixes are text, never patterns.
    assert_eq!(
        read(0, usize::MAX, &EventFilter::all().stream_prefix("ord_")),
        (vec![5], 8)
    );
    for pattern in ["%", "ord%", "_", "order-_", "%-1"] {
        assert_eq!(
            read(0, usize::MAX, &EventFilter::all().stream_prefix(pattern)),
            (vec![], 8),
            "{pattern:?}"
        );
    }
    // Nothing can match a type or prefix with a NUL character; it is not an error.
    assert_eq!(
        read(0, usize::MAX, &EventFilter::all().event_types(["placed\u{0}"])),
        (vec![], 8)
    );
    assert_eq!(
        read(0, usize::MAX, &EventFilter::all().stream_prefix("order-\u{0}")),
        (vec![], 8)
    );
    assert_eq!(
        read(
            0,
            usize::MAX,
            &EventFilter::all().stream_prefix("o\u{0}").stream_prefix("cust-")
        ),
        (vec![3, 7], 8)
    );

    // Passed moves over what the filter leaves out; `max` bounds what is looked at.
    let shipped = EventFilter::all().event_types(["shipped"]);
    assert_eq!(
        read(0, usize::MAX, &EventFilter::all().event_types(["none"])),
        (vec![], 8)
    );
    assert_eq!(read(0, 2, &shipped), (vec![], 2));
    assert_eq!(read(2, 2, &shipped), (vec![4], 4));
    assert_eq!(read(4, 3, &shipped), (vec![], 7));
    assert_eq!(read(0, 5, &placed), (vec![1, 2, 5], 5));
    assert_eq!(read(5, 5, &placed), (vec![6, 7], 8));
    assert_eq!(read(3, 0, &placed), (vec![], 3), "max 0 looks at nothing");
    assert_eq!(read(8, usize::MAX, &placed), (vec![], 8), "nothing after the last");
    assert_eq!(read(100, usize::MAX, &placed), (vec![], 100));
    assert_eq!(read(u64::MAX, usize::MAX, &placed), (vec![], u64::MAX));
}

/// Instantiates every check as a test of the store that `$make` returns (a fresh one each).
#[macro_export]
macro_rules! contract_tests {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn versions_and_positions() {
                store::contract::versions_and_positions(&*$make);
            }
            #[test]
            fn wrong_expected_version_writes_nothing() {
                store::contract::wrong_expected_version_writes_nothing(&*$make);
            }
            #[test]
            fn retrying_an_append_is_idempotent() {
                store::contract::retrying_an_append_is_idempotent(&*$make);
            }
            #[test]
            fn reusing_a_stored_id_otherwise_is_a_duplicate() {
                store::contract::reusing_a_stored_id_otherwise_is_a_duplicate(&*$make);
            }
            #[test]
            fn an_empty_append_is_invalid() {
                store::contract::an_empty_append_is_invalid(&*$make);
            }
            #[test]
            fn append_many_settles_each_item() {
                store::contract::append_many_settles_each_item(&*$make);
            }
            #[test]
            fn ids_repeated_across_items_of_one_batch() {
                store::contract::ids_repeated_across_items_of_one_batch(&*$make);
            }
            #[test]
            fn a_nul_character_fails_only_its_own_item() {
                store::contract::a_nul_character_fails_only_its_own_item(&*$make);
            }
            #[test]
            fn an_unreachable_expected_version_is_a_conflict_of_its_item() {
                store::contract::an_unreachable_expected_version_is_a_conflict_of_its_item(&*$make);
            }
            #[test]
            fn reads_page_forward() {
                store::contract::reads_page_forward(&*$make);
            }
            #[test]
            fn checkpoints_round_trip_and_names_are_checked() {
                store::contract::checkpoints_round_trip_and_names_are_checked(&*$make);
            }
            #[test]
            fn a_stale_checkpoint_save_never_moves_it_back() {
                store::contract::a_stale_checkpoint_save_never_moves_it_back(&*$make);
            }
            #[test]
            fn hostile_payloads_round_trip() {
                store::contract::hostile_payloads_round_trip(&*$make);
            }
            #[test]
            fn parked_events_round_trip_in_position_order() {
                store::contract::parked_events_round_trip_in_position_order(&*$make);
            }
            #[test]
            fn snapshots_load_the_newest_not_past_at_most() {
                store::contract::snapshots_load_the_newest_not_past_at_most(&*$make);
            }
            #[test]
            fn reset_checkpoint_moves_it_back_then_saves_never_do() {
                store::contract::reset_checkpoint_moves_it_back_then_saves_never_do(&*$make);
            }
            #[test]
            fn filtered_reads_by_type_and_prefix() {
                store::contract::filtered_reads_by_type_and_prefix(&*$make);
            }
            #[test]
            fn racing_appends_one_wins() {
                store::contract::racing_appends_one_wins($make);
            }
        }
    };
}
