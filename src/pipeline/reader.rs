//! The pipeline's reader thread: subscription -> engine, and the checkpoint.

use std::sync::Arc;
use std::time::Duration;

use super::handler::StreamHandler;
use super::progress::{Pass, Window};
use super::stats::Counters;
use super::tracked::{Delivery, Tracked};
use super::watermark::Watermark;
use crate::store::{EventStore, RecordedEvent, StoreError, Subscription};
use crate::sync::time::Instant;
use crate::sync::{AtomicBool, Ordering};
use crate::{Engine, Event, SubmitError};

/// How long one submit waits for room before the thread looks at its stop flag again.
const SUBMIT_WAIT: Duration = Duration::from_millis(10);

/// The longest idle wait while a thread waits in `Pipeline::wait_for`.
const WAITED_FOR: Duration = Duration::from_millis(1);

/// How long the thread sleeps while the window is full (every flag belongs to a position in
/// flight) before it looks again.
const WINDOW_WAIT: Duration = Duration::from_micros(200);

/// What the reader thread works with.
pub(crate) struct Reader<H: StreamHandler> {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) subscriber: String,
    pub(crate) engine: Arc<Engine<Tracked<H>>>,
    /// The positions in flight, and the watermark below them.
    pub(crate) window: Window,
    pub(crate) counters: Arc<Counters>,
    /// The low watermark, published for `Pipeline::wait_for`.
    pub(crate) watermark: Arc<Watermark>,
    /// The pipeline's stop flag (its orderings are stated on `Pipeline::stop`).
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) subscription: Subscription,
    pub(crate) batch_size: usize,
    pub(crate) checkpoint_interval: Duration,
    /// The checkpoint last saved, and when the next save is due.
    pub(crate) saved: u64,
    pub(crate) next_save: Instant,
}

impl<H: StreamHandler> Reader<H> {
    /// Runs until the stop flag is set; returns itself so that shutdown can save the last
    /// checkpoint once the engine has drained.
    pub(crate) fn run(mut self) -> Reader<H> {
        'reading: while !self.stop.load(Ordering::Acquire) {
            self.save_when_due();
            self.publish_watermark();
            let mut wait = self
                .next_save
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            if self.watermark.has_waiters() {
                wait = wait.min(WAITED_FOR);
            }
            match self.subscription.next_batch(self.batch_size, wait) {
                Ok(events) => {
                    // Once per batch: the highest position read, for the consumer lag.
                    self.counters
                        .head
                        .store(self.subscription.position(), Ordering::Relaxed);
                    if !self.submit_batch(events) {
                        break 'reading;
                    }
                    // Positions the filter left out are passed like gaps.
                    if !self.pass_to(self.subscription.position() + 1) {
                        break 'reading;
                    }
                }
                Err(StoreError::InvalidStoredEvent { position, reason }) => {
                    // Reported and passed: it cannot be handed to a handler.
                    self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                    self.counters.head.fetch_max(position, Ordering::Relaxed);
                    let reason = reason.to_string();
                    log::error!(
                        subscriber = self.subscriber.as_str(), position = position, reason:? = reason;
                        "humpyard pipeline {:?}: the stored event at position {position} cannot be decoded ({reason:?}); passed",
                        self.subscriber
                    );
                    if !self.pass_to(position + 1) {
                        break 'reading;
                    }
                }
                Err(error) => {
                    // The subscription retries after its backoff; each failure is counted and
                    // logged, never swallowed.
                    self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    let error = crate::error_chain::Chain(&error).to_string();
                    log::warn!(
                        subscriber = self.subscriber.as_str(), error:? = error;
                        "humpyard pipeline {:?}: reading the store failed ({error:?}); retrying",
                        self.subscriber
                    );
                }
            }
        }
        self
    }

    /// Submits a batch read from the store through the engine's batch submit (one claim, fence
    /// and wake-up per shard and chunk), waiting for room in the window and in the engine.
    /// Each position is reserved in the window as it joins the chunk (its flag stays not done
    /// until it is handled, so the checkpoint cannot pass it); when the window is full, the
    /// chunk so far is submitted first, so it can move. False if the pipeline is stopping: what
    /// was not submitted is not marked, and the checkpoint stays below it.
    fn submit_batch(&mut self, events: Vec<RecordedEvent>) -> bool {
        let mut chunk = Vec::with_capacity(events.len());
        for event in events {
            let position = event.position;
            let ready = self.window.try_pass_to(position) == Pass::Ready
                || (self.submit_chunk(&mut chunk) && self.pass_to(position));
            if !ready {
                return false;
            }
            self.window.submitted(position);
            chunk.push(Event::new(event.stream.clone(), Delivery::Event(event)));
        }
        self.submit_chunk(&mut chunk)
    }

    /// Submits `chunk` (emptying it), waiting for room in the engine; each stream's events stay
    /// in order (what a shard hands back is the rest of its events, offered again in order).
    /// False if the pipeline is stopping or the engine closed.
    fn submit_chunk(&mut self, chunk: &mut Vec<Event<Delivery>>) -> bool {
        let mut rest = std::mem::take(chunk);
        while !rest.is_empty() {
            let offered = rest.len();
            match self.engine.submit_many_timeout(rest, SUBMIT_WAIT) {
                Ok(_) => {
                    self.counters.submitted.fetch_add(offered as u64, Ordering::Relaxed);
                    return true;
                }
                Err(error) => {
                    self.counters
                        .submitted
                        .fetch_add(error.accepted as u64, Ordering::Relaxed);
                    if error.rejected.iter().any(SubmitError::is_closed) || self.stop.load(Ordering::Acquire) {
                        return false;
                    }
                    // Waiting for room can last: the checkpoint keeps its cadence meanwhile.
                    self.save_when_due();
                    self.publish_watermark();
                    rest = error.into_events();
                }
            }
        }
        true
    }

    /// Makes `position` the next to submit: waits until it fits in the window (see
    /// [`Window::try_pass_to`]). False if stopping.
    fn pass_to(&mut self, position: u64) -> bool {
        while self.window.try_pass_to(position) == Pass::Full {
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            self.save_when_due();
            self.publish_watermark();
            crate::sync::thread::sleep(WINDOW_WAIT);
        }
        true
    }

    /// Publishes the low watermark for `Pipeline::wait_for`.
    fn publish_watermark(&mut self) {
        let watermark = self.window.watermark();
        self.watermark.publish(watermark);
    }

    /// Saves the checkpoint if the interval has passed since the last save.
    fn save_when_due(&mut self) {
        if Instant::now() >= self.next_save {
            self.save_checkpoint();
            self.next_save = Instant::now() + self.checkpoint_interval;
        }
    }

    /// Saves the low watermark if it moved. A failure is counted and logged; the next interval
    /// tries again.
    pub(crate) fn save_checkpoint(&mut self) {
        let watermark = self.window.watermark();
        self.watermark.publish(watermark);
        if watermark <= self.saved {
            return;
        }
        crate::pause::point(crate::pause::PausePoint::BeforeCheckpointSave);
        match self.store.save_checkpoint(&self.subscriber, watermark) {
            Ok(()) => {
                self.saved = watermark;
                self.counters.checkpoint.store(watermark, Ordering::Relaxed);
            }
            Err(error) => {
                self.counters.checkpoint_errors.fetch_add(1, Ordering::Relaxed);
                let error = crate::error_chain::Chain(&error).to_string();
                log::warn!(
                    subscriber = self.subscriber.as_str(), position = watermark, error:? = error;
                    "humpyard pipeline {:?}: saving the checkpoint at position {watermark} failed ({error:?}); retrying at the next interval",
                    self.subscriber
                );
            }
        }
    }
}
