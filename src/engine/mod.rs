//! The per-entity dispatch engine.
//!
//! ```text
//!  producers ──submit──▶ shard = hash(stream) → ring (bounded, lock-free) ───────┐
//!                            │ first event into an idle shard                     │
//!                            ▼                                                    │
//!                       scheduler: run queue ──▶ worker threads ── runner ◀───────┘
//!                                                   │  entity table (owned by the run):
//!                                                   │  init / handle / cleanup, reaper
//!                                                   ▼
//!                                  processed | retry (timer) | dead letter
//! ```
//!
//! The pieces, one concept per file:
//!
//! | file | what |
//! |---|---|
//! | [`ingress`] | a producer's submit and its wait for room |
//! | [`ring`] | the lock-free ring behind every shard's ingress and the run queue |
//! | [`shard`] | a shard: its ring, its typed scheduling state, its core; the [`ShardRun`](shard::ShardRun) token |
//! | [`scheduler`] | run queue, sleepers, retry timers, the after-run hand-off and every wake-up |
//! | [`runner`] | one run of a shard: events, entities, retries, dead letters |
//! | [`reaper`] | idle reaping, cap eviction, disposal of a state |
//! | [`retry`] | the pending retry, its backoff, the timers |
//! | [`entity_table`] | a shard's live entities in recency order |
//! | [`containment`] | every call into user code; the one place its panics are counted |
//! | [`worker`], [`worker_slot`] | the worker threads, and each index's handle and epoch |
//! | [`supervisor`] | timers, reaping of quiet shards, replacement of dead workers, slow handlers |
//! | [`lifecycle`], [`shutdown`] | the engine's one lifecycle state; closing, draining, joining, leftovers, the engine's end |
//! | [`shared`] | what the threads share, each part behind an accessor |
//! | [`submit_async`] | a submit that waits for room as a future: a pending task, not a parked thread |
//! | [`metrics`], [`counters`], [`durations`], [`hooks`], [`dead_letter`], [`report`], [`submit_error`], [`config`], [`clock`] | counters, observer hooks and the values they get, errors, settings, ticks |
//! | [`builder`], [`settings`] | settings and starting the threads; the settings as a plain value |
//!
//! Producers parked for room wait in the crate's `waiters` list, which the bulkhead shares.
//!
//! The files are layered, each importing only files below it: `supervisor` → `worker` →
//! `runner` → `reaper` → `shared` (as do `ingress` and `shutdown`) → `scheduler` → `shard` →
//! the leaves (`ring`, `entity_table`, `retry`, `metrics`, `hooks`, ...).
//! `tests/architecture.rs` checks that there is no import cycle.

mod builder;
mod clock;
mod config;
mod containment;
mod counters;
mod dead_letter;
mod durations;
pub(crate) mod entity_table;
mod hooks;
mod ingress;
mod lifecycle;
mod metrics;
mod quiet_panics;
mod reaper;
mod report;
pub(crate) mod retry;
pub(crate) mod ring;
mod runner;
pub(crate) mod scheduler;
mod settings;
pub(crate) mod shard;
mod shared;
mod shutdown;
mod submit_async;
mod submit_error;
mod supervisor;
mod worker;
pub(crate) mod worker_slot;

use std::fmt;
use std::time::Duration;

pub use builder::EngineBuilder;
pub use config::ConfigError;
pub(crate) use containment::panic_message;
pub use dead_letter::{DeadLetter, Failure};
pub use durations::HandlerDurations;
#[cfg(feature = "metrics")]
pub(crate) use hooks::ExportHook;
pub(crate) use hooks::{PanicHook, SlowHandlerHook};
pub use hooks::{PanicReport, PanicSite, Removal, SlowHandler};
pub(crate) use lifecycle::on_some_engine_thread;
pub use metrics::Metrics;
pub use report::ShutdownReport;
pub use settings::EngineConfig;
pub use submit_async::SubmitAsync;
pub use submit_error::{SubmitError, SubmitManyError};

use crate::handler::EventOf;
use crate::resilience::Backoff;
use crate::sync::Arc as StdArc;
use crate::KeyedHandler;
use shard::Shard;
use shared::Shared;

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
pub struct Engine<H: KeyedHandler> {
    shared: StdArc<Shared<H>>,
}

impl<H: KeyedHandler> Engine<H> {
    /// A builder for an engine running `handler`.
    pub fn builder(handler: H) -> EngineBuilder<H> {
        EngineBuilder::new(handler)
    }

    /// Submits an event without ever blocking.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Full`] if the stream's shard is full, [`SubmitError::Closed`] once
    /// shutdown has begun; the event is inside the error. Both are counted in `rejected`.
    #[inline]
    pub fn try_submit(&self, event: EventOf<H>) -> Result<(), SubmitError<H::Payload, H::Key>> {
        ingress::try_submit(&self.shared, event)
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
    pub fn submit_timeout(&self, event: EventOf<H>, timeout: Duration) -> Result<(), SubmitError<H::Payload, H::Key>> {
        ingress::submit_timeout(&self.shared, event, timeout)
    }

    /// Submits the event in `event`, waiting for room in its shard without blocking a thread:
    /// the future is pending until a worker frees room (or shutdown begins), woken once, like
    /// [`submit_timeout`](Self::submit_timeout)'s parked thread. For async callers (tokio,
    /// async-std, any executor: humpyard depends on none).
    ///
    /// **Cancellation-safe**: the event stays in the caller's `Option` until the engine takes
    /// it. If the future is dropped before it resolves (a `select!` branch that lost, a
    /// timeout, a cancelled task), the event is still there, to submit again or keep; it was
    /// not taken and is not counted. To bound the wait, race it with your runtime's timer.
    ///
    /// ```
    /// # use humpyard::{Engine, Event, Handler, StreamId};
    /// # struct Noop;
    /// # impl Handler for Noop {
    /// #     type Payload = u32; type State = (); type Error = String;
    /// #     fn init(&self, _: &StreamId) -> Result<(), String> { Ok(()) }
    /// #     fn handle(&self, _: &mut (), _: &Event<u32>) -> Result<(), String> { Ok(()) }
    /// # }
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     // Any executor will do; this one polls until ready.
    /// #     let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl std::task::Wake for Unpark { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         match f.as_mut().poll(&mut std::task::Context::from_waker(&waker)) {
    /// #             std::task::Poll::Ready(v) => return v,
    /// #             std::task::Poll::Pending => std::thread::park(),
    /// #         }
    /// #     }
    /// # }
    /// let engine = Engine::builder(Noop).start()?;
    /// let mut pending = Some(Event::new(StreamId::new("order-1")?, 7));
    /// block_on(async {
    ///     // In a `select!`, a losing branch leaves the event in `pending`.
    ///     engine.submit_async(&mut pending).await
    /// })?;
    /// assert!(pending.is_none(), "taken");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SubmitError::Closed`] once shutdown has begun, holding the event (the `Option` is then
    /// empty), counted in `rejected`. An empty `Option` resolves `Ok` at once.
    pub fn submit_async<'a>(&'a self, event: &'a mut Option<EventOf<H>>) -> SubmitAsync<'a, H> {
        SubmitAsync::new(&self.shared, event)
    }

    /// Submits a batch of events without ever blocking, amortising the ring claim, the fence
    /// and the wake-up over each shard's events in it. Each shard takes what fits of its
    /// events, in their order; per-stream order holds within and across batches.
    ///
    /// # Errors
    ///
    /// [`SubmitManyError`] when some were not taken: the count taken, and the others handed
    /// back in the order given, each with its reason (`Full` or `Closed`), all counted in
    /// `rejected`. Once a shard hands an event back, it hands back every later event of the
    /// batch for it too, so resubmitting them in order keeps each stream's order.
    pub fn try_submit_many(&self, events: Vec<EventOf<H>>) -> Result<usize, SubmitManyError<H::Payload, H::Key>> {
        ingress::try_submit_many(&self.shared, events)
    }

    /// Submits a batch of events, waiting up to `timeout` for room for those that do not fit at
    /// once: the producer parks on a full shard's waiter list and is woken by the worker that
    /// frees room (or shutdown), then offers the rest again; no retry loop.
    ///
    /// # Errors
    ///
    /// [`SubmitManyError`] as for [`try_submit_many`](Self::try_submit_many); the reasons are
    /// `Timeout` (time ran out) or `Closed` (shutdown began: every event not yet taken).
    pub fn submit_many_timeout(
        &self,
        events: Vec<EventOf<H>>,
        timeout: Duration,
    ) -> Result<usize, SubmitManyError<H::Payload, H::Key>> {
        ingress::submit_many_timeout(&self.shared, events, timeout)
    }

    /// The index of the shard that `stream`'s events go to (`0..shards`), as in
    /// [`Metrics::shard_queued`]. Streams in one shard share its ring and its worker turn.
    pub fn shard_of(&self, stream: &H::Key) -> usize {
        self.shared.shard_of(stream)
    }

    /// A snapshot of the counters and gauges.
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics()
    }

    /// Takes the dead letters kept by the default sink (when no `on_dead_letter` hook is set).
    pub fn take_dead_letters(&self) -> Vec<DeadLetter<H::Payload, H::Key>> {
        self.shared.dead_letters().take()
    }

    /// Shuts the engine down and reports what was left.
    ///
    /// 1. Closes the ingress: every later submit fails with `Closed` (producers waiting in
    ///    `submit_timeout` are woken and get `Closed`).
    /// 2. Keeps processing accepted events (retries included) until all are done or `deadline`
    ///    has passed.
    /// 3. Stops the workers (each finishes the call it is in), joins every thread, runs
    ///    `cleanup` for every live entity, and hands back every event still queued, including
    ///    one whose producer was preempted between claiming its slot and publishing it (it
    ///    waits for that producer: a few instructions, once it runs again).
    ///
    /// Afterwards `accepted == processed + dead_lettered + report.unprocessed.len()`. A
    /// concurrent call waits for the first to finish; a later call returns an empty report at
    /// once. It waits for the handler calls in progress to return.
    ///
    /// Called on one of the engine's own threads (from a handler, a hook, or a value's `Drop`
    /// running there), it only closes the ingress and returns at once with
    /// [`drain_deferred`](ShutdownReport::drain_deferred) set: that thread cannot wait for the
    /// call it is in. The drain, the cleanup and the join are left to the next shutdown, or the
    /// last drop, made off the engine's threads.
    pub fn shutdown(&self, deadline: Duration) -> ShutdownReport<H::Payload, H::Key> {
        shutdown::shutdown(&self.shared, deadline)
    }

    /// Fault injection (tests only): makes worker `worker`'s thread die by an escaping panic at
    /// the end of its next run, to prove the supervisor replaces it and its shard resumes.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_worker_exit(&self, worker: usize) {
        self.shared.workers()[worker]
            .kill
            .store(true, crate::sync::Ordering::Relaxed);
    }
}

/// What the supervisor does, one step at a time, for loom models (which run without the
/// supervisor thread: its loop would multiply every model's interleavings). Each runs the
/// library's own function.
#[cfg(humpyard_loom)]
impl<H: KeyedHandler> Engine<H> {
    /// The supervisor's timer step: schedules the shards waiting for a retry that is due on
    /// the model's clock.
    pub(crate) fn model_fire_timers(&self) {
        let now = self.shared.clock().now();
        self.shared.scheduler().fire_timers(self.shared.shards(), now);
    }

    /// Worker `index` dies between two shards (its thread is told to exit, as a thread whose
    /// handle lost the installation race is), and the supervisor replaces it: joins it, starts
    /// a thread with the next epoch and installs it in place of exactly the handle it saw.
    pub(crate) fn model_replace_worker(&self, index: usize) {
        let seen = self.shared.workers()[index].handle();
        seen.retired.store(true, crate::sync::Ordering::Release);
        seen.thread.unpark();
        supervisor::replace_worker(&self.shared, index, &seen);
    }

    /// Events handled so far, read from the shards' counters only (a full `metrics()` snapshot
    /// loads every counter: in a model's loop, every load is a scheduling point).
    pub(crate) fn model_processed(&self) -> u64 {
        self.shared.shards().iter().map(|s| s.stats().processed.get()).sum()
    }
}

impl<H: KeyedHandler> EngineBuilder<H> {
    /// Validates the settings and starts the worker threads and the supervisor.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] names the first invalid setting, says the rings' memory could not be
    /// allocated, or says a thread could not be started (then no thread is left running).
    pub fn start(self) -> Result<Engine<H>, ConfigError> {
        let (handler, config, hooks) = self.into_parts()?;
        let seed = random_seed();
        let backoff = Backoff::new(config.retry_backoff, config.retry_backoff_max);
        let shards = (0..config.shards())
            .map(|i| {
                let seed = seed.wrapping_add((i as u64).wrapping_mul(0xa076_1d64_78bd_642f));
                Shard::new(i, config.shard_capacity(), seed, backoff, config.time_handlers)
            })
            .collect::<Result<Box<[_]>, _>>()
            .map_err(|e| ConfigError::OutOfMemory { bytes: e.bytes })?;
        let start_supervisor = config.supervisor;
        let shared = StdArc::new(Shared::new(handler, config, hooks, shards));
        // From here on, an early return drops the engine, which stops what was started.
        let engine = Engine { shared: shared.clone() };
        for (index, slot) in shared.workers().iter().enumerate() {
            slot.set_first(worker::spawn(&shared, index, 0).map_err(ConfigError::Spawn)?);
        }
        if start_supervisor {
            let join = supervisor::spawn(&shared).map_err(ConfigError::Spawn)?;
            shared.scheduler().timers().set_supervisor(join.thread().clone());
            *shared.supervisor().lock() = Some(join);
        }
        Ok(engine)
    }
}

/// A random 64-bit seed from the standard library's randomly keyed hasher (no extra crate).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish()
}

impl<H: KeyedHandler> Drop for Engine<H> {
    /// Shuts the engine down with the builder's `drop_deadline` and disposes of what is left
    /// (logging how many events). Dropped on one of the engine's own threads (the last `Arc`
    /// held by a state or a handler), it stops the threads without joining them: each ends
    /// after the call it is in, and the last to end cleans up every entity.
    fn drop(&mut self) {
        shutdown::drop_engine(&self.shared);
    }
}

impl<H: KeyedHandler> fmt::Debug for Engine<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("workers", &self.shared.workers().len())
            .field("shards", &self.shared.shards().len())
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}
