//! [`Subscription`]: every event of a store, in position order, from a position on, for as long
//! as the reader wants them.
//!
//! See [`Subscription`] for how it reads, waits and fails.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{AppendWatch, EventFilter, EventStore, FilteredRead, GapWait, RecordedEvent, StoreError};
use crate::resilience::Backoff;

/// Settings of a [`Subscription`]; `Default` gives the documented defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscriptionConfig {
    /// Events fetched per read. Default: 1 000.
    pub batch_size: usize,
    /// The longest wait between reads when no wake-up comes. Default: 250 ms.
    pub poll_interval: Duration,
    /// The wait before retrying after the first failed read; it doubles with each failure in a
    /// row, and half of each wait is random jitter (a [`Backoff`] of the subscription's own).
    /// Default: 50 ms.
    pub retry_backoff: Duration,
    /// The cap on that wait. Default: 5 s.
    pub retry_backoff_max: Duration,
    /// Which events to deliver (by type, by stream-id prefix), applied by the store after gap
    /// detection: the position moves over the events left out. Default: every event.
    pub filter: EventFilter,
}

impl Default for SubscriptionConfig {
    fn default() -> SubscriptionConfig {
        SubscriptionConfig {
            batch_size: 1000,
            poll_interval: Duration::from_millis(250),
            retry_backoff: Duration::from_millis(50),
            retry_backoff_max: Duration::from_secs(5),
            filter: EventFilter::all(),
        }
    }
}

/// The first wait after a read that found nothing.
const FIRST_IDLE_WAIT: Duration = Duration::from_millis(2);

/// Every event of a store after a position, in position order.
///
/// It reads in batches with [`EventStore::read_all`], which never passes the commit watermark,
/// so it never skips an event that commits late with a lower position (R-PG-5). Between reads it
/// waits on the store's [`AppendWatch`] (LISTEN/NOTIFY on PostgreSQL), and polls as well: after
/// a read that found nothing it waits 2 ms, then twice as long each time, up to
/// [`SubscriptionConfig::poll_interval`], so an event held back by the watermark is picked up
/// soon after it passes even when no wake-up comes.
///
/// Errors are per item and never the end (R-FT-5): a read that fails is returned as that call's
/// `Err` and retried on the next call after a capped exponential backoff with jitter (a
/// [`Backoff`] per subscription, so subscriptions failing together do not retry together); a
/// stored event
/// humpyard cannot decode is returned as `Err(StoreError::InvalidStoredEvent { position, .. })`
/// in its place, and the subscription goes on after it. The iterator never returns `None`.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    watch: Option<Box<dyn AppendWatch>>,
    config: SubscriptionConfig,
    /// The position of the last event returned (or reported as undecodable).
    position: u64,
    /// Read but not yet returned; positions above `position`.
    buffer: VecDeque<RecordedEvent>,
    /// How long to wait before the next read when the last found nothing.
    idle_wait: Duration,
    /// Failed reads in a row, and when the next read may be tried.
    failures: u32,
    /// The waits after failed reads (`config`'s `retry_backoff` settings, seeded per
    /// subscription).
    backoff: Backoff,
    retry_at: Option<Instant>,
    /// How far the last read reached (events after the buffered ones that the filter left
    /// out): the position once the buffer is drained.
    read_to: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.position)
            .field("buffered", &self.buffer.len())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Every event of `store` with a position greater than `after` (0: from the start).
    pub fn new(store: Arc<dyn EventStore>, after: u64, config: SubscriptionConfig) -> Subscription {
        Subscription {
            backoff: Backoff::new(config.retry_backoff, config.retry_backoff_max),
            store,
            watch: None,
            idle_wait: FIRST_IDLE_WAIT,
            config,
            position: after,
            buffer: VecDeque::new(),
            failures: 0,
            retry_at: None,
            read_to: after,
        }
    }

    /// The position of the last event returned (or reported undecodable, or left out by the
    /// filter after the last one returned): resuming after it misses nothing.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Failed reads in a row so far (0 once a read succeeds).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The missing position ahead of this subscription where the store's readers are held,
    /// waiting for an older transaction to end, and how long they have waited there
    /// ([`EventStore::gap_wait`]); `None` when nothing holds them. A wait that grows points at
    /// a long transaction on the server (the store logs it too, as it doubles).
    pub fn gap_wait(&self) -> Option<GapWait> {
        self.store.gap_wait().filter(|wait| wait.position > self.position)
    }

    /// The next event, waiting up to `timeout` for one; `Ok(None)` if none came in time.
    ///
    /// # Errors
    ///
    /// A failed read (the next call retries it after a backoff), or
    /// [`StoreError::InvalidStoredEvent`] for an event that cannot be decoded (the next call
    /// goes on after it).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>, StoreError> {
        let mut batch = self.next_batch(1, timeout)?;
        Ok(batch.pop())
    }

    /// Up to `max` next events, waiting up to `timeout` for the first; an empty vector if none
    /// came in time.
    ///
    /// # Errors
    ///
    /// As [`next_timeout`](Self::next_timeout); events read before the failure stay buffered
    /// for the next call.
    pub fn next_batch(&mut self, max: usize, timeout: Duration) -> Result<Vec<RecordedEvent>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.buffer.is_empty() {
                let n = max.max(1).min(self.buffer.len());
                let batch: Vec<RecordedEvent> = self.buffer.drain(..n).collect();
                self.position = batch[batch.len() - 1].position;
                if self.buffer.is_empty() {
                    self.position = self.position.max(self.read_to);
                }
                return Ok(batch);
            }
            let now = Instant::now();
            if let Some(retry_at) = self.retry_at {
                if now < retry_at {
                    if deadline <= now {
                        return Ok(Vec::new());
                    }
                    std::thread::sleep(retry_at.min(deadline) - now);
                    continue;
                }
            }
            // The watch is set up before the first read, so that no wake-up is lost between a
            // read and the wait after it.
            if self.watch.is_none() {
                self.watch = Some(self.store.watch());
            }
            match self.read() {
                Ok(read) if !read.events.is_empty() => {
                    self.recovered();
                    self.idle_wait = FIRST_IDLE_WAIT;
                    self.read_to = read.passed;
                    self.buffer.extend(read.events);
                    // Busy: no wait comes soon, so take the hints now. What they announce
                    // committed before this drain and is read before the next wait.
                    if let Some(watch) = self.watch.as_mut() {
                        watch.drain();
                    }
                }
                Ok(read) if read.passed > self.position => {
                    // Only events the filter leaves out: move over them and read on.
                    self.recovered();
                    self.idle_wait = FIRST_IDLE_WAIT;
                    self.position = read.passed;
                    self.read_to = read.passed;
                    if deadline <= Instant::now() {
                        return Ok(Vec::new());
                    }
                }
                Ok(_) => {
                    self.recovered();
                    let now = Instant::now();
                    if deadline <= now {
                        return Ok(Vec::new());
                    }
                    let wait = self.idle_wait.min(deadline - now);
                    self.idle_wait = (self.idle_wait * 2).min(self.config.poll_interval.max(FIRST_IDLE_WAIT));
                    if let Some(watch) = self.watch.as_mut() {
                        watch.wait(wait);
                    }
                }
                Err(StoreError::InvalidStoredEvent { position, reason }) if position > self.position => {
                    // That event alone is reported; the subscription goes on after it.
                    self.recovered();
                    self.position = position;
                    self.read_to = position;
                    return Err(StoreError::InvalidStoredEvent { position, reason });
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    let backoff = self.backoff.delay(self.failures - 1);
                    self.retry_at = Some(Instant::now() + backoff);
                    return Err(e);
                }
            }
        }
    }

    /// One read from the position on, filtered when the filter leaves anything out.
    fn read(&self) -> Result<FilteredRead, StoreError> {
        let max = self.config.batch_size.max(1);
        if self.config.filter.is_all() {
            let events = self.store.read_all(self.position, max)?;
            let passed = events.last().map_or(self.position, |e| e.position);
            Ok(FilteredRead { events, passed })
        } else {
            self.store.read_all_filtered(self.position, max, &self.config.filter)
        }
    }

    fn recovered(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }
}

impl Iterator for Subscription {
    type Item = Result<RecordedEvent, StoreError>;

    /// The next event or error, waiting as long as it takes: a subscription never ends.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(self.config.poll_interval) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
