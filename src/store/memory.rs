//! [`InMemoryStore`]: the embedded store, one lock around an append-only log.
//!
//! Appends commit at once under the lock, in position order, so the commit watermark is always
//! the last position and `read_all` never has a gap to wait for. Memory grows with the log;
//! nothing is persisted. Examples and the perf tool use it when no database is given.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use uuid::Uuid;

use super::watch::Signal;
use super::{
    check_subscriber, AppendWatch, Appended, EventStore, ExpectedVersion, InvalidInput, NewEvent, RecordedEvent,
    StoreError,
};
use crate::sync::Mutex;
use crate::StreamId;

/// An event store in this process's memory.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    log: Mutex<Log>,
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
    checkpoints: HashMap<String, u64>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> InMemoryStore {
        InMemoryStore::default()
    }
}

impl Log {
    fn append(
        &mut self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        if events.is_empty() {
            return Err(StoreError::InvalidInput(InvalidInput::NoEvents));
        }
        // What PostgreSQL refuses, refused here too: code tried on the embedded store holds.
        if !events.iter().all(NewEvent::is_storable) {
            return Err(StoreError::InvalidInput(InvalidInput::NulCharacter));
        }
        let mut seen = HashSet::with_capacity(events.len());
        if let Some(twice) = events.iter().find(|e| !seen.insert(e.id)) {
            return Err(StoreError::DuplicateEventId(twice.id));
        }
        if let Some(earlier) = self.replayed(stream, &events) {
            return Ok(earlier);
        }
        if let Some(stored) = events.iter().find(|e| self.ids.contains_key(&e.id)) {
            return Err(StoreError::DuplicateEventId(stored.id));
        }
        let versions = self.streams.get(stream).map_or(0, Vec::len) as u64;
        let actual = versions.checked_sub(1);
        if !expected.admits(actual) {
            return Err(StoreError::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                actual,
            });
        }

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
        Ok(self.log.lock().checkpoints.get(subscriber).copied())
    }

    fn save_checkpoint(&self, subscriber: &str, position: u64) -> Result<(), StoreError> {
        check_subscriber(subscriber)?;
        let mut log = self.log.lock();
        let saved = log.checkpoints.entry(subscriber.to_owned()).or_insert(position);
        // Never back: a late, stale save changes nothing.
        *saved = (*saved).max(position);
        Ok(())
    }

    fn watch(&self) -> Box<dyn AppendWatch> {
        Box::new(self.appended.watch())
    }
}
