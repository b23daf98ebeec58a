//! [`InMemoryStore`]: the embedded store, one lock around an append-only log.
//!
//! Appends commit at once under the lock, in position order, so the commit watermark is always
//! the last position and `read_all` never has a gap to wait for. Memory grows with the log;
//! nothing is persisted. Examples and the perf tool use it when no database is given.
//!
//! Idempotency keys live behind a second lock, in `keys`: claims never wait for appends.

mod keys;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::append_rules::{self, Facts, Verdict};
use super::types::json_is_storable;
use super::watch::Signal;
use super::{
    check_subscriber, AppendWatch, Appended, Claim, ClaimToken, EventFilter, EventStore, ExpectedVersion, FilteredRead,
    IdempotencyKey, InvalidInput, NewEvent, ParkKind, ParkedEvent, RecordedEvent, Snapshot, StoreError,
};
use crate::sync::Mutex;
use crate::StreamId;

/// An event store in this process's memory.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    log: Mutex<Log>,
    /// Idempotency keys (see `keys`).
    keys: Mutex<keys::Keys>,
    appended: Arc<Signal>,
}

#[derive(Debug, Default)]
struct Log {
    /// Position `p` is `events[p - 1]`.
    events: Vec<RecordedEvent>,
    /// Each stream's positions, by version.
    streams: HashMap<StreamId, Vec<u64>>,
    /// Every stored id and its position.
    ids: HashMap<Uuid, u64>,
    /// Each append's first position and last position (to recognise a retried append).
    appends: HashMap<u64, u64>,
    /// Each subscriber's checkpoint, by (subscriber, partition); partition 0 for a subscriber
    /// that is not partitioned.
    checkpoints: HashMap<(String, u32), u64>,
    /// Parked events by (subscriber, position).
    parked: BTreeMap<(String, u64), ParkedEvent>,
    /// Snapshots by (subscriber, stream, state version), then by version.
    snapshots: HashMap<(String, StreamId, u32), BTreeMap<u64, serde_json::Value>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> InMemoryStore {
        InMemoryStore::default()
    }

    /// The same store, keeping a completed idempotency key's outcome for `retention` after its
    /// completion (and any key's record that long after its last change) instead of the default
    /// [`DEFAULT_IDEMPOTENCY_RETENTION`](super::DEFAULT_IDEMPOTENCY_RETENTION), 7 days. Longer
    /// than 100 years counts as 100 years. See [`Claim`] for what it means.
    ///
    /// ```
    /// use std::time::Duration;
    /// use humpyard::store::InMemoryStore;
    ///
    /// // Outcomes kept for 30 days.
    /// let store = InMemoryStore::new().with_idempotency_retention(Duration::from_secs(30 * 24 * 3600));
    /// ```
    pub fn with_idempotency_retention(self, retention: Duration) -> InMemoryStore {
        self.keys.lock().retention = retention;
        self
    }
}

impl Log {
    fn append(
        &mut self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        // The rules are `append_rules`'; this store gathers the facts under its lock.
        append_rules::check_request(&events)?;
        let actual = self.streams.get(stream).and_then(|p| (p.len() as u64).checked_sub(1));
        let facts = Facts {
            repeats: self.replayed(stream, &events),
            first_stored: events.iter().map(|e| e.id).find(|id| self.ids.contains_key(id)),
            actual,
        };
        if let Verdict::Replay(earlier) = append_rules::judge(stream, expected, facts)? {
            return Ok(earlier);
        }
        let versions = actual.map_or(0, |v| v + 1);

        let first_position = self.events.len() as u64 + 1;
        let recorded_at = SystemTime::now();
        let positions = self.streams.entry(stream.clone()).or_default();
        for (i, event) in events.into_iter().enumerate() {
            let position = first_position + i as u64;
            positions.push(position);
            self.ids.insert(event.id, position);
            self.events.push(RecordedEvent {
                position,
                stream: stream.clone(),
                version: versions + i as u64,
                id: event.id,
                event_type: event.event_type,
                data: event.data,
                metadata: event.metadata,
                recorded_at,
            });
        }
        let last_position = self.events.len() as u64;
        self.appends.insert(first_position, last_position);
        Ok(Appended {
            first_position,
            last_position,
            last_version: self.events[last_position as usize - 1].version,
        })
    }

    /// The earlier append that `events` repeats exactly (same stream, same ids in the same
    /// order, the whole append), if any.
    fn replayed(&self, stream: &StreamId, events: &[NewEvent]) -> Option<Appended> {
        let first = *self.ids.get(&events[0].id)?;
        let last = *self.appends.get(&first)?;
        if last - first + 1 != events.len() as u64 {
            return None;
        }
        let stored = &self.events[first as usize - 1..last as usize];
        let same = stored
            .iter()
            .zip(events)
            .all(|(s, e)| s.id == e.id && s.stream == *stream);
        same.then(|| Appended {
            first_position: first,
            last_position: last,
            last_version: stored[stored.len() - 1].version,
        })
    }
}

impl EventStore for InMemoryStore {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let result = self.log.lock().append(stream, expected, events);
        if result.is_ok() {
            self.appended.notify();
        }
        result
    }

    fn append_many(
        &self,
        batch: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let results: Vec<_> = {
            let mut log = self.log.lock();
            batch
                .into_iter()
                .map(|(stream, expected, events)| log.append(&stream, expected, events))
                .collect()
        };
        if results.iter().any(Result::is_ok) {
            self.appended.notify();
        }
        Ok(results)
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.log.lock();
        let Some(positions) = log.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let from = usize::try_from(from_version).unwrap_or(usize::MAX).min(positions.len());
        Ok(positions[from..]
            .iter()
            .take(max)
            .map(|&p| log.events[p as usize - 1].clone())
            .collect())
    }

    fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let log = self.log.lock();
        let from = usize::try_from(after).unwrap_or(usize::MAX).min(log.events.len());
        Ok(log.events[from..].iter().take(max).cloned().collect())
    }

    fn load_checkpoint(&self, subscriber: &str) -> Result<Option<u64>, StoreError> {
        check_subscriber(subscriber)?;
        Ok(self.log.lock().checkpoints.get(&(subscriber.to_owned(), 0)).copied())
    }

    fn save_checkpoint(&self, subscriber: &str, position: u64) -> Result<(), StoreError> {
        check_subscriber(subscriber)?;
        let mut log = self.log.lock();
        let saved = log.checkpoints.entry((subscriber.to_owned(), 0)).or_insert(position);
        // Never back: a late, stale save changes nothing.
        *saved = (*saved).max(position);
        Ok(())
    }

    fn reset_checkpoint(&self, subscriber: &str, position: u64) -> Result<(), StoreError> {
        check_subscriber(subscriber)?;
        self.log.lock().checkpoints.insert((subscriber.to_owned(), 0), position);
        Ok(())
    }

    fn read_all_filtered(&self, after: u64, max: usize, filter: &EventFilter) -> Result<FilteredRead, StoreError> {
        let log = self.log.lock();
        let from = usize::try_from(after).unwrap_or(usize::MAX).min(log.events.len());
        let looked = &log.events[from..log.events.len().min(from.saturating_add(max))];
        Ok(FilteredRead {
            events: looked.iter().filter(|e| filter.passes_event(e)).cloned().collect(),
            passed: looked.last().map_or(after, |e| e.position),
        })
    }

    fn park(&self, event: &ParkedEvent) -> Result<bool, StoreError> {
        check_subscriber(&event.subscriber)?;
        if event.message.contains('\0') {
            return Err(StoreError::InvalidInput(InvalidInput::NulCharacter));
        }
        let mut log = self.log.lock();
        match log.parked.entry((event.subscriber.clone(), event.position)) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(event.clone());
            }
            std::collections::btree_map::Entry::Occupied(_) if event.kind == ParkKind::Behind => return Ok(false),
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                // Its stream and version stay those first stored (as on PostgreSQL).
                let stored = slot.get_mut();
                stored.attempts = event.attempts;
                stored.kind = event.kind;
                stored.message.clone_from(&event.message);
                stored.parked_at = event.parked_at;
            }
        }
        Ok(true)
    }

    fn parked(
        &self,
        subscriber: &str,
        stream: Option<&StreamId>,
        after: u64,
        max: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        check_subscriber(subscriber)?;
        let log = self.log.lock();
        let from = (subscriber.to_owned(), after.saturating_add(1));
        Ok(log
            .parked
            .range(from..)
            .take_while(|((s, _), _)| s == subscriber)
            .map(|(_, p)| p)
            .filter(|p| stream.map_or(true, |s| *s == p.stream))
            .take(max)
            .cloned()
            .collect())
    }

    fn unpark(&self, subscriber: &str, position: u64) -> Result<bool, StoreError> {
        check_subscriber(subscriber)?;
        Ok(self
            .log
            .lock()
            .parked
            .remove(&(subscriber.to_owned(), position))
            .is_some())
    }

    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        check_subscriber(&snapshot.subscriber)?;
        // What PostgreSQL's jsonb refuses, refused here too (as for events).
        if !json_is_storable(&snapshot.data) {
            return Err(StoreError::InvalidInput(InvalidInput::NulCharacter));
        }
        let key = (
            snapshot.subscriber.clone(),
            snapshot.stream.clone(),
            snapshot.state_version,
        );
        self.log
            .lock()
            .snapshots
            .entry(key)
            .or_default()
            .insert(snapshot.version, snapshot.data.clone());
        Ok(())
    }

    fn load_snapshot(
        &self,
        subscriber: &str,
        stream: &StreamId,
        state_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        check_subscriber(subscriber)?;
        let log = self.log.lock();
        let key = (subscriber.to_owned(), stream.clone(), state_version);
        Ok(log
            .snapshots
            .get(&key)
            .and_then(|by_version| by_version.range(..=at_most).next_back())
            .map(|(&version, data)| Snapshot {
                subscriber: subscriber.to_owned(),
                stream: stream.clone(),
                state_version,
                version,
                data: data.clone(),
            }))
    }

    fn claim(&self, key: &IdempotencyKey, ttl: Duration) -> Result<Claim, StoreError> {
        Ok(self.keys.lock().claim(key, ttl))
    }

    fn complete(&self, token: &ClaimToken, outcome: serde_json::Value) -> Result<(), StoreError> {
        // What PostgreSQL's jsonb refuses, refused here too (as for events); the claim stays.
        if !json_is_storable(&outcome) {
            return Err(StoreError::InvalidInput(InvalidInput::NulCharacter));
        }
        self.keys.lock().complete(token, outcome)
    }

    fn fail(&self, token: &ClaimToken) -> Result<(), StoreError> {
        self.keys.lock().fail(token)
    }

    fn purge_idempotency_keys(&self, max: usize) -> Result<usize, StoreError> {
        Ok(self.keys.lock().purge(max))
    }

    fn watch(&self) -> Box<dyn AppendWatch> {
        Box::new(self.appended.watch())
    }
}
