//! The per-entity dispatch engine.
//!
//! ```text
//!  producers ──try_submit──▶ shard = hash(stream) → ring (bounded, lock-free) ──┐
//!                                   │ first event into an idle shard           │
//!                                   ▼                                          │
//!                              run queue ──▶ worker threads ── run a batch ◀───┘
//!                                              │  entity table (owned by the run):
//!                                              │  init / handle / cleanup, reaping, eviction
//!                                              ▼
//!                                   processed | retry (timer) | dead letter
//! ```
//!
//! The pieces, one per file: [`ring`] (the lock-free ring of ingress and run queue),
//! [`run_queue`] (one lane per worker, home lanes and stealing), [`shard`] (scheduling state
//! machine), [`entity_table`], [`dispatch`] (one batch), [`worker`] (threads), [`supervisor`]
//! (timers, reaping, replacement, slow handlers), [`sleepers`] and [`waiters`] (parking),
//! [`metrics`], [`hooks`], [`config`], [`builder`].

mod builder;
mod config;
mod dead_letter;
mod dispatch;
mod entity_table;
mod hooks;
pub(crate) mod inner;
mod metrics;
mod report;
pub(crate) mod ring;
mod run_queue;
pub(crate) mod shard;
mod sleepers;
mod submit_error;
mod supervisor;
mod waiters;
pub(crate) mod worker;

use crate::sync::Arc as StdArc;
use std::fmt;
use std::time::{Duration, Instant};

pub use builder::EngineBuilder;
pub use config::ConfigError;
pub use dead_letter::{DeadLetter, Failure};
pub use hooks::{PanicReport, PanicSite, Removal, SlowHandler};
pub use metrics::Metrics;
pub use report::ShutdownReport;
pub use submit_error::SubmitError;

use inner::Inner;
use ring::PushError;
use shard::IDLE;

use crate::sync::thread::{self, JoinHandle};
use crate::sync::{fence, AtomicBool, Mutex, Ordering};
use crate::{Event, Handler, StreamId};

/// The dispatch engine: runs each stream's events in order, one at a time, with the stream's
/// state, and different streams in parallel on a pool of worker threads.
///
/// `Engine` is `Send + Sync`: share it between producers behind an `Arc`. Dropping it shuts it
/// down (with the builder's `drop_deadline`); no engine thread outlives it.
///
/// ```
/// use humpyard::{Engine, Event, Handler, StreamId};
/// use std::time::Duration;
///
/// struct Counter;
/// impl Handler for Counter {
///     type Payload = u64;
///     type State = u64;
///     type Error = String;
///     fn init(&self, _: &StreamId) -> Result<u64, String> { Ok(0) }
///     fn handle(&self, total: &mut u64, event: &Event<u64>) -> Result<(), String> {
///         *total += event.payload();
///         Ok(())
///     }
/// }
///
/// let engine = Engine::builder(Counter).workers(2).start()?;
/// let account = StreamId::new("account-7")?;
/// for amount in 1..=10 {
///     // A full shard hands the event back; here we wait up to a second for room.
///     engine.submit_timeout(Event::new(account.clone(), amount), Duration::from_secs(1))
///         .expect("room within a second");
/// }
/// let report = engine.shutdown(Duration::from_secs(5));
/// assert!(report.unprocessed.is_empty());
/// assert_eq!(engine.metrics().processed, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Engine<H: Handler> {
    inner: StdArc<Inner<H>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    shutting_down: AtomicBool,
}

impl<H: Handler> Engine<H> {
    /// A builder for an engine running `handler`.
    pub fn builder(handler: H) -> EngineBuilder<H> {
        EngineBuilder::new(handler)
    }

    fn from_inner(inner: StdArc<Inner<H>>) -> Engine<H> {
        Engine {
            inner,
            supervisor: Mutex::new(None),
            shutting_down: AtomicBool::new(false),
        }
    }

    fn set_supervisor(&self, join: JoinHandle<()>) {
        *self.supervisor.lock() = Some(join);
    }

    /// Submits an event without ever blocking.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Full`] if the stream's shard is full, [`SubmitError::Closed`] once
    /// shutdown has begun; the event is inside the error. Both are counted in `rejected`.
    #[inline]
    pub fn try_submit(&self, event: Event<H::Payload>) -> Result<(), SubmitError<H::Payload>> {
        let index = self.inner.shard_of(event.stream());
        let shard = &self.inner.shards[index];
        match shard.ring.push(event) {
            Ok(()) => {
                self.inner.after_push(index);
                Ok(())
            }
            Err(PushError::Full(event)) => {
                shard.rejected.incr();
                Err(SubmitError::Full(event))
            }
            Err(PushError::Closed(event)) => {
                shard.rejected.incr();
                Err(SubmitError::Closed(event))
            }
        }
    }

    /// Submits an event, waiting up to `timeout` for room in its shard.
    ///
    /// The producer parks and is woken once by the worker that frees room (or by shutdown), or
    /// by its own deadline: it does not spin or retry in a loop. A zero timeout behaves like
    /// [`try_submit`](Self::try_submit) except that the error is `Timeout`.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Timeout`] if no room appeared in time, [`SubmitError::Closed`] if
    /// shutdown began; the event is inside the error, and the rejection is counted.
    pub fn submit_timeout(&self, event: Event<H::Payload>, timeout: Duration) -> Result<(), SubmitError<H::Payload>> {
        let deadline = Instant::now().checked_add(timeout);
        let index = self.inner.shard_of(event.stream());
        let shard = &self.inner.shards[index];
        let mut event = match shard.ring.push(event) {
            Ok(()) => {
                self.inner.after_push(index);
                return Ok(());
            }
            Err(PushError::Closed(event)) => {
                shard.rejected.incr();
                return Err(SubmitError::Closed(event));
            }
            Err(PushError::Full(event)) => event,
        };
        loop {
            let waiter = shard.waiters.register();
            // Pairs with the consumer's fence after freeing room (see `waiters`).
            fence(Ordering::SeqCst);
            match shard.ring.push(event) {
                Ok(()) => {
                    shard.waiters.done(&waiter);
                    self.inner.after_push(index);
                    return Ok(());
                }
                Err(PushError::Closed(e)) => {
                    shard.waiters.leave(&waiter);
                    shard.rejected.incr();
                    return Err(SubmitError::Closed(e));
                }
                Err(PushError::Full(e)) => event = e,
            }
            while !waiter.is_notified() {
                let now = Instant::now();
                let left = match deadline {
                    Some(deadline) if now >= deadline => {
                        shard.waiters.leave(&waiter);
                        shard.rejected.incr();
                        return Err(SubmitError::Timeout(event));
                    }
                    Some(deadline) => deadline - now,
                    None => Duration::from_secs(3600),
                };
                thread::park_timeout(left);
            }
            // Woken for room (or for shutdown): try once more; another producer may have taken
            // the room first, and then we wait for the next wake-up.
        }
    }

    /// The index of the shard that `stream`'s events go to (`0..shards`), as in
    /// [`Metrics::shard_queued`]. Streams in one shard share its ring and its worker turn.
    pub fn shard_of(&self, stream: &StreamId) -> usize {
        self.inner.shard_of(stream)
    }

    /// A snapshot of the counters and gauges.
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics()
    }

    /// Takes the dead letters kept by the default sink (when no `on_dead_letter` hook is set).
    pub fn take_dead_letters(&self) -> Vec<DeadLetter<H::Payload>> {
        self.inner.dead_letters.lock().drain(..).collect()
    }

    /// Shuts the engine down and reports what was left.
    ///
    /// 1. Closes the ingress: every later submit fails with `Closed` (producers waiting in
    ///    `submit_timeout` are woken and get `Closed`).
    /// 2. Keeps processing accepted events (retries included) until all are done or `deadline`
    ///    has passed.
    /// 3. Stops the workers (each finishes the call it is in), joins every thread, runs
    ///    `cleanup` for every live entity, and hands back every event still queued.
    ///
    /// Afterwards `accepted == processed + dead_lettered + report.unprocessed.len()`. Calling it
    /// again (or concurrently) returns an empty report at once. It waits for handler calls in
    /// progress to return, so do not call it from inside a handler.
    pub fn shutdown(&self, deadline: Duration) -> ShutdownReport<H::Payload> {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return ShutdownReport::empty();
        }
        let inner = &*self.inner;
        let until = Instant::now().checked_add(deadline);
        for shard in inner.shards.iter() {
            shard.ring.close();
        }
        // Pairs with the fence of a producer registering as a waiter (see `waiters`): either it
        // sees the closed mark on its re-try, or `notify_all` sees it registered.
        fence(Ordering::SeqCst);
        for shard in inner.shards.iter() {
            shard.waiters.notify_all();
        }

        let mut deadline_exceeded = false;
        let mut pause = Duration::from_micros(50);
        while !self.drained() {
            let now = Instant::now();
            match until {
                Some(until) if now >= until => {
                    deadline_exceeded = true;
                    break;
                }
                Some(until) => thread::pause(pause.min(until - now)),
                None => thread::pause(pause),
            }
            pause = (pause * 2).min(Duration::from_millis(5));
        }

        inner.stop.store(true, Ordering::Release);
        inner.supervisor_stop.store(true, Ordering::Release);
        if let Some(supervisor) = self.supervisor.lock().take() {
            supervisor.thread().unpark();
            let _ = supervisor.join();
        }
        self.join_workers();

        crate::pause::point(crate::pause::PausePoint::BeforeCollect);
        let mut unprocessed = Vec::new();
        inner.collect_leftovers(&mut unprocessed);
        if !unprocessed.is_empty() {
            deadline_exceeded = true;
        }
        ShutdownReport {
            unprocessed,
            deadline_exceeded,
        }
    }

    /// Whether every shard is idle with an empty ring and no pending retry.
    fn drained(&self) -> bool {
        self.inner
            .shards
            .iter()
            .all(|shard| shard.state() == IDLE && shard.ring.len() == 0)
    }

    fn join_workers(&self) {
        let inner = &*self.inner;
        for worker in inner.sleepers.take_all() {
            inner.workers[worker].handle.load().thread.unpark();
        }
        let me = thread::current().id();
        for slot in inner.workers.iter() {
            let handle = slot.handle.load_full();
            handle.thread.unpark();
            let join = handle.join.lock().take();
            if let Some(join) = join {
                if join.thread().id() != me {
                    let _ = join.join();
                }
            }
        }
    }

    /// Fault injection (tests only): makes worker `worker`'s thread die by an escaping panic at
    /// its next batch boundary, to prove the supervisor replaces it and its shard resumes.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_worker_exit(&self, worker: usize) {
        self.inner.workers[worker].kill.store(true, Ordering::Relaxed);
    }
}

impl<H: Handler> Drop for Engine<H> {
    fn drop(&mut self) {
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let report = self.shutdown(self.inner.config.drop_deadline);
        if !report.unprocessed.is_empty() {
            log::warn!(unprocessed = report.unprocessed.len(); "humpyard engine dropped with unprocessed events; call shutdown to get them back");
        }
    }
}

impl<H: Handler> fmt::Debug for Engine<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("workers", &self.inner.workers.len())
            .field("shards", &self.inner.shards.len())
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}
