//! The advisory-lock keys of appends, and how a batch is cut so that one transaction never
//! holds too many.
//!
//! An append locks each stream and each event id it writes (see `schema`, "Appends"). A key is
//! a 64-bit FNV-1a of a tag, the schema name and the stream's or the id's bytes: stable across
//! processes and builds, distinct per schema, and the same for every humpyard writer. Two
//! different streams (or ids) sharing a key would only make their appends wait for each other.
//!
//! # Bounding the locks
//!
//! Advisory locks live in the server's shared lock table, which holds
//! `max_locks_per_transaction * (max_connections + max_prepared_transactions)` entries (6 400
//! with the defaults, 64 and 100). A batch of 500 one-event items on 500 streams needs 1 000
//! keys; some twenty such batches at once would fill the table, and then every session's locks
//! fail (`out of shared memory`). So a batch is cut into calls of at most
//! [`keys_per_call`]`(max_append_locks, pool_size)` keys each, in order (an item larger than
//! that goes alone), and a store's appends hold at most `max_append_locks` advisory locks at
//! any instant (a `PgStoreConfig` setting, 4 096 by default: 512 keys a call with the default
//! pool of 8). Size the server for every process that appends: `max_locks_per_transaction *
//! max_connections` should exceed the sum of their `max_append_locks` plus what other sessions
//! lock.

use std::ops::Range;

use uuid::Uuid;

use crate::store::NewEvent;
use crate::StreamId;

/// The fewest keys a call may take, whatever the budget: below it, a batch costs too many calls.
const MIN_KEYS_PER_CALL: usize = 64;

/// The most lock keys one call of `append_batch` takes (unless a single item needs more): the
/// store's lock budget shared by its connections.
pub(crate) fn keys_per_call(max_append_locks: u32, pool_size: u32) -> usize {
    (max_append_locks / pool_size.max(1)).max(MIN_KEYS_PER_CALL as u32) as usize
}

/// FNV-1a, 64 bits, over `parts` in order.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The keys of one schema's streams and ids.
#[derive(Debug, Clone)]
pub(crate) struct LockKeys {
    schema: String,
}

impl LockKeys {
    /// The keys of `schema` (its validated name).
    pub(crate) fn new(schema: &str) -> LockKeys {
        LockKeys {
            schema: schema.to_owned(),
        }
    }

    /// A stream's key.
    pub(crate) fn stream(&self, stream: &StreamId) -> i64 {
        fnv1a(&[
            b"humpyard:stream:",
            self.schema.as_bytes(),
            b":",
            stream.as_str().as_bytes(),
        ]) as i64
    }

    /// An event id's key.
    pub(crate) fn id(&self, id: &Uuid) -> i64 {
        fnv1a(&[b"humpyard:id:", self.schema.as_bytes(), b":", id.as_bytes()]) as i64
    }

    /// The keys of `items`' streams and ids, distinct and ascending: the order every humpyard
    /// writer takes them in.
    pub(crate) fn of<T>(&self, items: &[(StreamId, T, Vec<NewEvent>)]) -> Vec<i64> {
        let mut keys = Vec::with_capacity(items.iter().map(|(_, _, events)| 1 + events.len()).sum());
        for (stream, _, events) in items {
            keys.push(self.stream(stream));
            keys.extend(events.iter().map(|e| self.id(&e.id)));
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// Cuts `items` into consecutive runs of at most `max_keys` keys each (a stream and each of
/// its events' ids per item, counted without merging repeats, so a run's distinct keys are
/// fewer still); an item with more keys than that is a run of its own.
pub(crate) fn runs<T>(items: &[(StreamId, T, Vec<NewEvent>)], max_keys: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut keys) = (0, 0);
    for (i, (_, _, events)) in items.iter().enumerate() {
        let need = 1 + events.len();
        if keys > 0 && keys + need > max_keys {
            runs.push(start..i);
            (start, keys) = (i, 0);
        }
        keys += need;
    }
    if start < items.len() {
        runs.push(start..items.len());
    }
    runs
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(stream: &str, events: usize) -> (StreamId, (), Vec<NewEvent>) {
        let events = (0..events).map(|_| NewEvent::new("t", json!({}))).collect();
        (StreamId::new(stream).unwrap(), (), events)
    }

    #[test]
    fn keys_are_stable_distinct_per_schema_and_sorted() {
        let a = LockKeys::new("one");
        let b = LockKeys::new("two");
        let s = StreamId::new("order-1").unwrap();
        assert_eq!(a.stream(&s), LockKeys::new("one").stream(&s));
        assert_ne!(a.stream(&s), b.stream(&s));
        let items = vec![item("x", 2), item("y", 1), item("x", 1)];
        let keys = a.of(&items);
        assert_eq!(keys.len(), 2 + 4, "two streams, four ids");
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_budget_is_shared_by_the_pool() {
        assert_eq!(keys_per_call(4096, 8), 512);
        assert_eq!(keys_per_call(4096, 3), 1365);
        assert_eq!(keys_per_call(100, 8), 64, "never below the floor");
        assert_eq!(keys_per_call(4096, 0), 4096);
    }

    #[test]
    fn runs_stay_under_the_bound_and_keep_the_order() {
        let items: Vec<_> = (0..500).map(|i| item(&format!("s{i}"), 1)).collect();
        let cut = runs(&items, 256);
        assert_eq!(cut.len(), 4);
        assert_eq!(cut[0], 0..128);
        assert_eq!(cut.last().unwrap().end, 500);
        assert!(cut.windows(2).all(|w| w[0].end == w[1].start));
        let big = vec![item("a", 1), item("b", 300), item("c", 1)];
        assert_eq!(
            runs(&big, 256),
            vec![0..1, 1..2, 2..3],
            "an item larger than the bound goes alone"
        );
        assert!(runs::<()>(&[], 256).is_empty());
    }
}
