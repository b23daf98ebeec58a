//! The Postgres store against the in-memory store on random histories of `append_many` calls:
//! both must answer every item alike (positions, versions, which error) and end with the same
//! log. The histories mix streams named several times in one call, every kind of expected
//! version, exact retries of earlier appends (to their own stream or another), partial,
//! reordered and extended retries, other reuse of stored ids, and ids repeated across the items
//! of one call, each with any expected version, so they reach every path of the server-side
//! `append_batch` (the set-based version check and the item-by-item walk, retries and
//! duplicates) and every step of the precedence in `append_rules` (a retry over a wrong
//! expected version, a duplicate over a wrong expected version). The in-memory store judges its
//! own facts; PostgreSQL's facts come from the server: a difference in what either gathers, or
//! a server that writes where the rules would not, fails here. Proves R-PG-4 and R-FT-6 beyond
//! the hand-written contract checks.

mod store;

use humpyard::store::{Appended, EventStore, ExpectedVersion, InMemoryStore, NewEvent, RecordedEvent, StoreError};
use humpyard::StreamId;
use proptest::prelude::*;
use serde_json::json;

/// How an item picks its events' ids.
#[derive(Debug, Clone)]
enum Ids {
    /// `n` fresh events.
    Fresh(usize),
    /// Exactly the events of the `k`-th successful append so far (a retry).
    Retry(usize),
    /// A fresh event, then the first event of the `k`-th successful append (a duplicate).
    Reuse(usize),
    /// The `k`-th successful append of two or more events without its last (a partial retry).
    Partial(usize),
    /// The `k`-th successful append of two or more events in reverse order (a reordered retry).
    Reordered(usize),
    /// The events of the `k`-th successful append and a fresh one after them.
    Extended(usize),
    /// The events of the item before it in the same call (ids repeated within the call).
    SameAsPrevious,
}

#[derive(Debug, Clone)]
struct Item {
    stream: usize,
    expected: ExpectedVersion,
    ids: Ids,
}

fn item() -> impl Strategy<Value = Item> {
    let expected = prop_oneof![
        3 => Just(ExpectedVersion::Any),
        1 => Just(ExpectedVersion::NoStream),
        2 => (0u64..4).prop_map(ExpectedVersion::Exact),
    ];
    let ids = prop_oneof![
        6 => (1usize..4).prop_map(Ids::Fresh),
        1 => (0usize..8).prop_map(Ids::Retry),
        1 => (0usize..8).prop_map(Ids::Reuse),
        1 => (0usize..8).prop_map(Ids::Partial),
        1 => (0usize..8).prop_map(Ids::Reordered),
        1 => (0usize..8).prop_map(Ids::Extended),
        1 => Just(Ids::SameAsPrevious),
    ];
    (0usize..3, expected, ids).prop_map(|(stream, expected, ids)| Item { stream, expected, ids })
}

/// What two stores must agree on: the result of an item, less the error's payload types that
/// carry driver state.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(Appended),
    WrongExpectedVersion(Option<u64>),
    Duplicate(uuid::Uuid),
    Other(String),
}

fn outcome(result: &Result<Appended, StoreError>) -> Outcome {
    match result {
        Ok(a) => Outcome::Ok(*a),
        Err(StoreError::WrongExpectedVersion { actual, .. }) => Outcome::WrongExpectedVersion(*actual),
        Err(StoreError::DuplicateEventId(id)) => Outcome::Duplicate(*id),
        Err(other) => Outcome::Other(format!("{other:?}")),
    }
}

fn comparable(events: Vec<RecordedEvent>) -> Vec<(u64, String, u64, uuid::Uuid, serde_json::Value)> {
    events
        .into_iter()
        .map(|e| (e.position, e.stream.as_str().to_owned(), e.version, e.id, e.data))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn postgres_answers_every_history_as_the_in_memory_store_does(
        calls in prop::collection::vec(prop::collection::vec(item(), 1..7), 1..6)
    ) {
        let pg = store::server::fresh_store();
        let memory = InMemoryStore::new();
        let streams: Vec<StreamId> = ["a", "b", "c"].iter().map(|s| StreamId::new(s).unwrap()).collect();
        // The events of every append that succeeded, in order: what retries and reuses pick.
        let mut appended: Vec<Vec<NewEvent>> = Vec::new();
        let mut n = 0u64;
        for call in calls {
            let mut batch: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)> = Vec::new();
            // The successful appends of two or more events, which a partial or reordered
            // retry picks from.
            let longer: Vec<usize> = (0..appended.len()).filter(|&k| appended[k].len() > 1).collect();
            for item in &call {
                let mut fresh = |count: usize| -> Vec<NewEvent> {
                    (0..count).map(|_| { n += 1; NewEvent::new("e", json!({ "n": n })) }).collect()
                };
                let events = match item.ids {
                    Ids::Fresh(count) => fresh(count),
                    Ids::Retry(k) if !appended.is_empty() => appended[k % appended.len()].clone(),
                    Ids::Reuse(k) if !appended.is_empty() => {
                        let mut events = fresh(1);
                        events.push(appended[k % appended.len()][0].clone());
                        events
                    }
                    Ids::Partial(k) if !longer.is_empty() => {
                        let mut events = appended[longer[k % longer.len()]].clone();
                        events.pop();
                        events
                    }
                    Ids::Reordered(k) if !longer.is_empty() => {
                        let mut events = appended[longer[k % longer.len()]].clone();
                        events.reverse();
                        events
                    }
                    Ids::Extended(k) if !appended.is_empty() => {
                        let mut events = appended[k % appended.len()].clone();
                        events.extend(fresh(1));
                        events
                    }
                    Ids::SameAsPrevious if !batch.is_empty() => batch[batch.len() - 1].2.clone(),
                    _ => fresh(1),
                };
                batch.push((streams[item.stream].clone(), item.expected, events));
            }
            let expected = memory.append_many(batch.clone()).unwrap();
            let actual = pg.append_many(batch.clone()).unwrap();
            let expected: Vec<Outcome> = expected.iter().map(outcome).collect();
            let actual: Vec<Outcome> = actual.iter().map(outcome).collect();
            prop_assert_eq!(&actual, &expected, "batch {:?}", call);
            for ((_, _, events), result) in batch.into_iter().zip(&expected) {
                if matches!(result, Outcome::Ok(_)) {
                    appended.push(events);
                }
            }
        }
        if let Some(last) = memory.read_all(0, usize::MAX).unwrap().last() {
            store::contract::settled(&pg, last.position);
        }
        prop_assert_eq!(
            comparable(pg.read_all(0, usize::MAX).unwrap()),
            comparable(memory.read_all(0, usize::MAX).unwrap())
        );
    }
}
