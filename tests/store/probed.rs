//! [`ProbedStore`]: the in-memory store with its reads counted and holdable, and its watches'
//! drains counted, for tests of what readers do with a store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use humpyard::store::{
    AppendWatch, Appended, Claim, ClaimToken, EventStore, ExpectedVersion, IdempotencyKey, InMemoryStore, NewEvent,
    ParkedEvent, RecordedEvent, StoreError, StoreHealth,
};
use humpyard::StreamId;

/// An in-memory store that counts its `read_all` calls and holds them while `hold` is set (a
/// store call blocked on a dead connection), and counts its watches' `drain` calls.
pub struct ProbedStore {
    inner: InMemoryStore,
    pub reads: AtomicU64,
    pub hold: AtomicBool,
    pub held: AtomicU64,
    pub drains: Arc<AtomicU64>,
    /// How many `complete` calls still fail (a store that went away after the effect ran).
    pub fail_completes: AtomicU64,
    /// What `health` reports (the in-memory store has none of a real store's trouble).
    pub health: Mutex<StoreHealth>,
}

impl ProbedStore {
    pub fn new() -> ProbedStore {
        ProbedStore {
            inner: InMemoryStore::new(),
            reads: AtomicU64::new(0),
            hold: AtomicBool::new(false),
            held: AtomicU64::new(0),
            drains: Arc::new(AtomicU64::new(0)),
            fail_completes: AtomicU64::new(0),
            health: Mutex::new(StoreHealth::default()),
        }
    }
}

/// The in-memory store's watch, with its drains counted.
struct ProbedWatch {
    inner: Box<dyn AppendWatch>,
    drains: Arc<AtomicU64>,
}

impl AppendWatch for ProbedWatch {
    fn wait(&mut self, timeout: Duration) {
        self.inner.wait(timeout);
    }

    fn drain(&mut self) {
        self.drains.fetch_add(1, Ordering::Relaxed);
        self.inner.drain();
    }
}

impl EventStore for ProbedStore {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        self.inner.append(stream, expected, events)
    }

    fn append_many(
        &self,
        batch: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        self.inner.append_many(batch)
    }

    fn read_stream(&self, stream: &StreamId, from: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from, max)
    }

    fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if self.hold.load(Ordering::Acquire) {
            self.held.fetch_add(1, Ordering::AcqRel);
            while self.hold.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.inner.read_all(after, max)
    }

    fn load_checkpoint(&self, subscriber: &str) -> Result<Option<u64>, StoreError> {
        self.inner.load_checkpoint(subscriber)
    }

    fn save_checkpoint(&self, subscriber: &str, position: u64) -> Result<(), StoreError> {
        self.inner.save_checkpoint(subscriber, position)
    }

    fn park(&self, event: &ParkedEvent) -> Result<bool, StoreError> {
        self.inner.park(event)
    }

    fn parked(
        &self,
        subscriber: &str,
        stream: Option<&StreamId>,
        after: u64,
        max: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        self.inner.parked(subscriber, stream, after, max)
    }

    fn unpark(&self, subscriber: &str, position: u64) -> Result<bool, StoreError> {
        self.inner.unpark(subscriber, position)
    }

    fn claim(&self, key: &IdempotencyKey, ttl: Duration) -> Result<Claim, StoreError> {
        self.inner.claim(key, ttl)
    }

    fn complete(&self, token: &ClaimToken, outcome: serde_json::Value) -> Result<(), StoreError> {
        let failing = self
            .fail_completes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(StoreError::Unsupported("fault injection: complete"));
        }
        self.inner.complete(token, outcome)
    }

    fn fail(&self, token: &ClaimToken) -> Result<(), StoreError> {
        self.inner.fail(token)
    }

    fn watch(&self) -> Box<dyn AppendWatch> {
        Box::new(ProbedWatch {
            inner: self.inner.watch(),
            drains: self.drains.clone(),
        })
    }

    fn health(&self) -> StoreHealth {
        *self.health.lock().unwrap()
    }
}
