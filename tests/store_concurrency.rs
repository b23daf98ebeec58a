//! Appends racing each other on both stores. The Postgres store serialises appends to one
//! stream, and appends of one event id, under transaction-scoped advisory locks, and checks the
//! expected version and the ids under them; appends to other streams run side by side. These
//! races are what those locks are for. Proves R-PG-4.

mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use humpyard::store::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, StoreError};
use humpyard::StreamId;
use serde_json::json;
use store::contract::settled;

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// Eight writers append with exact expected versions to three streams, each learning the
/// current version from its own results and from `WrongExpectedVersion::actual`. Every stream
/// ends with dense versions, every position is taken exactly once (none burnt by a loser), and
/// each writer's successes are where the log says.
fn exact_appends_race(store: Arc<dyn EventStore>) {
    let writers = 8;
    let rounds = 40;
    let start = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                let mut known: [Option<u64>; 3] = [None; 3];
                let mut won = Vec::new();
                start.wait();
                for round in 0..rounds {
                    let s = (w + round) % 3;
                    let expected = known[s].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    let count = 1 + round as u64 % 2;
                    let events = (0..count).map(|i| NewEvent::new("e", json!([w, round, i]))).collect();
                    match store.append(&sid(&format!("race-{s}")), expected, events) {
                        Ok(a) => {
                            known[s] = Some(a.last_version);
                            won.push((a, count));
                        }
                        Err(StoreError::WrongExpectedVersion { actual, .. }) => known[s] = actual,
                        Err(e) => panic!("writer {w}: {e:?}"),
                    }
                }
                won
            })
        })
        .collect();
    let won: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    // One append's positions increase but need not be contiguous: appends to other streams
    // draw theirs at the same time (DESIGN.md, "Gap-safe reading").
    let total: u64 = won.iter().map(|(_, count)| count).sum();
    assert!(won.len() > writers, "too few appends won to mean anything");
    settled(&*store, total);
    let log = store.read_all(0, usize::MAX).unwrap();
    assert_eq!(
        log.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "positions dense: no loser burnt one"
    );
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &log {
        versions.entry(e.stream.as_str()).or_default().push(e.version);
    }
    for (stream, v) in versions {
        assert_eq!(
            v,
            (0..v.len() as u64).collect::<Vec<_>>(),
            "{stream}: versions dense, in position order"
        );
    }
    for (a, count) in &won {
        let (first, last) = (&log[a.first_position as usize - 1], &log[a.last_position as usize - 1]);
        assert_eq!(
            (first.stream.as_str(), last.version),
            (last.stream.as_str(), a.last_version)
        );
        assert_eq!(
            first.version + count - 1,
            last.version,
            "one append's versions are consecutive"
        );
    }
}

#[test]
fn in_memory_exact_appends_race_to_dense_versions() {
    exact_appends_race(Arc::new(InMemoryStore::new()));
}

// proves R-PG-4: racing exact appends keep versions dense and burn no position
#[cfg(feature = "postgres")]
#[test]
fn postgres_exact_appends_race_to_dense_versions() {
    exact_appends_race(Arc::new(store::server::fresh_store()));
}

/// Two writers append the same event (one id) to two streams at once, many times: each time
/// one append wins and the other is a typed `DuplicateEventId`, and no position is burnt.
fn one_id_raced_into_two_streams(store: Arc<dyn EventStore>) {
    let rounds = 60;
    let start = Arc::new(Barrier::new(2));
    let events: Arc<Vec<NewEvent>> = Arc::new((0..rounds).map(|n| NewEvent::new("e", json!(n))).collect());
    let handles: Vec<_> = (0..2)
        .map(|w| {
            let (store, start, events) = (store.clone(), start.clone(), events.clone());
            std::thread::spawn(move || {
                (0..rounds)
                    .map(|n| {
                        start.wait();
                        store.append(
                            &sid(&format!("twin-{w}")),
                            ExpectedVersion::Any,
                            vec![events[n].clone()],
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<_>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for n in 0..rounds {
        let (a, b) = (&results[0][n], &results[1][n]);
        let id = events[n].id();
        match (a, b) {
            (Ok(_), Err(StoreError::DuplicateEventId(d))) | (Err(StoreError::DuplicateEventId(d)), Ok(_)) => {
                assert_eq!(*d, id)
            }
            other => panic!("round {n}: expected one append and one duplicate, got {other:?}"),
        }
    }
    settled(&*store, rounds as u64);
    assert_eq!(
        store.read_all(0, usize::MAX).unwrap().len(),
        rounds,
        "one event per round, positions dense"
    );
}

#[test]
fn in_memory_one_id_raced_into_two_streams_is_one_append() {
    one_id_raced_into_two_streams(Arc::new(InMemoryStore::new()));
}

// proves R-PG-4: an id raced into two streams is one append and one typed duplicate
#[cfg(feature = "postgres")]
#[test]
fn postgres_one_id_raced_into_two_streams_is_one_append() {
    one_id_raced_into_two_streams(Arc::new(store::server::fresh_store()));
}
