//! [`Pipeline`]: a store's events fed through an engine, with each stream's state rebuilt from
//! the store, failed events parked in stream order, and a durable checkpoint.
//!
//! One reader thread follows a [`Subscription`](crate::store::Subscription) from the
//! subscriber's checkpoint and submits each event to an engine that runs the user's
//! [`StreamHandler`]: each stream's events are handled in order, different streams in parallel.
//! Submits wait for room (the engine's backpressure); nothing is dropped.
//!
//! # State
//!
//! A stream's state is the fold of its stored events ([`StreamHandler::apply`]). For the event
//! at version `v` the handler sees the fold of versions `0..v`: kept in memory while the entity
//! lives, rebuilt from the store (from the newest snapshot not past `v`, then `read_stream` in
//! pages) after a start, a reap, an eviction or a failure. So the state survives restarts,
//! whatever the process saw. A store error while rebuilding is not a failed attempt: the stream
//! waits with the engine's backoff and tries again.
//!
//! # Failures
//!
//! `handle` returning `Err` or panicking is retried up to
//! [`max_attempts`](PipelineBuilder::max_attempts) with the engine's backoff; then the event is
//! *parked* in the store ([`ParkedEvent`]) and with it its stream:
//! the stream's later events are parked behind it, not handled, until it is replayed
//! successfully ([`Pipeline::replay`]) or discarded ([`Pipeline::discard`]); then they are
//! handled in order. A hook ([`PipelineBuilder::on_parked`]) hears of each parked event.
//!
//! # Checkpoint
//!
//! An event is *fully processed* when its handler call returns `Ok` or it is parked (durably).
//! `progress::Progress` keeps a done-flag per position in a window; the reader thread moves
//! the window's front over done positions, publishes the low watermark (the front less one:
//! every position up to it is fully processed) for [`Pipeline::wait_for`], and every
//! `checkpoint_interval` saves it as the subscriber's checkpoint. Positions the store never
//! delivers (rolled-back appends), positions the subscription's filter leaves out, and events
//! it cannot decode (logged and counted) count as done.
//!
//! After a crash the pipeline resumes from the last saved checkpoint: every event is handled at
//! least once, and the events handled twice are those fully processed after that save, at most
//! one checkpoint interval's worth (plus the window). A handler that must not repeat an effect
//! records what it did (an idempotency key, the event id) (R-PG-5).
//!
//! [`Pipeline::shutdown`] stops reading, shuts the engine down (draining it until the
//! deadline), and saves the final checkpoint; events the engine hands back stay above it and
//! are read again by the next run. It does not wait out a store that does not answer: a reader
//! thread still blocked in a store call after the deadline (and a short grace, for the last
//! save) is left to finish it and then saves the final checkpoint itself, and the report says
//! the deadline was exceeded.

mod builder;
mod handler;
mod parking;
pub(crate) mod progress;
mod reader;
mod rehydrate;
mod stats;
mod tracked;
mod watermark;

use std::sync::Arc;
use std::time::Duration;

use crate::store::{ParkedEvent, StoreError};
use crate::sync::{AtomicBool, Mutex, Ordering};
use crate::{Engine, Event, Metrics, StreamId, SubmitError};

pub use builder::{PipelineBuilder, PipelineError};
pub use handler::{ErrorKind, StreamHandler};
pub use parking::{ReplayError, ReplayReport};
pub use stats::PipelineStats;

use parking::ResumeRequest;
use reader::Reader;
use stats::Counters;
pub(crate) use tracked::{contain, dispose, Disposing};
use tracked::{Context, Delivery, Tracked};
use watermark::Watermark;

/// How long [`Pipeline::shutdown`] waits for the reader thread after the engine has stopped,
/// at least: long enough for a reader between reads (at most 100 ms apart while idle) to stop
/// and save the last checkpoint, short enough that a store that does not answer cannot hold
/// a shutdown for its own timeouts.
pub const READER_GRACE: Duration = Duration::from_secs(1);

/// A running pipeline. See the [module docs](self).
pub struct Pipeline<H: StreamHandler> {
    engine: Arc<Engine<Tracked<H>>>,
    ctx: Arc<Context>,
    counters: Arc<Counters>,
    watermark: Arc<Watermark>,
    /// Tells the reader thread to stop reading. Stored `Release` by shutdown, loaded `Acquire`
    /// by the reader between reads and while it waits for room; it orders nothing else (the
    /// reader's last save waits for shutdown's `drained` message).
    stop: Arc<AtomicBool>,
    /// Held through a shutdown, so that a concurrent call waits for the first one's report.
    lifecycle: Mutex<Lifecycle>,
    drop_deadline: Duration,
}

/// Running with its reader thread, or stopped with the first shutdown's report.
pub(crate) enum Lifecycle {
    Running(ReaderThread),
    Stopped(PipelineReport),
}

/// The reader thread, seen from [`Pipeline::shutdown`]: once `run` returns, the thread waits
/// for `drained` (the engine has drained), saves the last checkpoint and says so on `finished`.
/// Shutdown waits for that no longer than its deadline: a reader blocked in a store call (a
/// checkout, a connect, a statement) finishes on its own, detached.
pub(crate) struct ReaderThread {
    drained: std::sync::mpsc::SyncSender<()>,
    finished: std::sync::mpsc::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ReaderThread {
    /// Starts `reader` on a thread of its own.
    pub(crate) fn spawn<H: StreamHandler>(reader: Reader<H>) -> std::io::Result<ReaderThread> {
        let (drained, drained_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let (finished_tx, finished) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("humpyard-pipeline".to_owned())
            .spawn(move || {
                let mut reader = reader.run();
                // Shutdown sends once the engine has drained (or gave up at its deadline); a
                // pipeline dropped without one never leaves the reader running (Drop shuts down).
                let _ = drained_rx.recv();
                reader.save_checkpoint();
                reader.watermark.finish();
                let _ = finished_tx.send(());
            })?;
        Ok(ReaderThread {
            drained,
            finished,
            thread,
        })
    }
}

/// What [`Pipeline::shutdown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineReport {
    /// The checkpoint saved last: every position up to it is fully processed.
    pub checkpoint: u64,
    /// Events the engine handed back unprocessed at its deadline (read again by the next run).
    pub unprocessed: usize,
    /// Whether the deadline passed before the engine drained, or before the reader thread
    /// had stopped and saved the last checkpoint (it was blocked in a store call; it saves
    /// when that call returns).
    pub deadline_exceeded: bool,
    /// The counters at the end.
    pub stats: PipelineStats,
}

impl<H: StreamHandler> Pipeline<H> {
    /// A pipeline feeding `handler` with `store`'s events for `subscriber` (a name with the
    /// [`StreamId`] rules).
    pub fn builder(store: Arc<dyn crate::store::EventStore>, subscriber: &str, handler: H) -> PipelineBuilder<H> {
        PipelineBuilder::new(store, subscriber, handler)
    }

    /// The metrics of the engine that runs the handler. Its `processed` counts handler calls
    /// that finished (handled, parked, or a resume request), `retries` every backoff (failed
    /// attempts and store errors alike).
    pub fn engine_metrics(&self) -> Metrics {
        self.engine.metrics()
    }

    /// Waits until the low watermark has reached `position` (every position up to it fully
    /// processed: handled or parked; the value the next checkpoint save writes): `true`; or
    /// `false` at the timeout, or once the pipeline has stopped short of it. The reader thread
    /// signals each advance; this does not poll.
    pub fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        self.watermark.wait_for(position, timeout)
    }

    /// The low watermark now (see [`wait_for`](Self::wait_for)).
    pub fn watermark(&self) -> u64 {
        self.watermark.value()
    }

    /// Up to `max` of this subscriber's parked events after position `after`, in position
    /// order.
    ///
    /// # Errors
    ///
    /// The store's.
    pub fn parked(&self, after: u64, max: usize) -> Result<Vec<ParkedEvent>, StoreError> {
        self.ctx.store.parked(&self.ctx.subscriber, None, after, max)
    }

    /// How many streams are parked now.
    pub fn parked_streams(&self) -> usize {
        self.ctx.parked.len()
    }

    /// Replays `stream`'s parked events in order, on the thread that runs the stream, each
    /// with the state folded from every event before it, and waits up to `timeout` for the
    /// outcome. Each success is unparked; the first failure stays parked (its attempts and
    /// message updated) and the stream behind it. Once none is left, the stream's events are
    /// handled again as they come.
    ///
    /// # Errors
    ///
    /// [`ReplayError`] says what happened.
    pub fn replay(&self, stream: &StreamId, timeout: Duration) -> Result<ReplayReport, ReplayError> {
        self.resume(stream.clone(), None, timeout)
    }

    /// Discards the parked event at `position` (it will never be handled) and waits up to
    /// `timeout` for the outcome. If it was its stream's first parked event, the stream's other
    /// parked events are replayed as by [`replay`](Self::replay).
    ///
    /// # Errors
    ///
    /// [`ReplayError`] says what happened.
    pub fn discard(&self, position: u64, timeout: Duration) -> Result<ReplayReport, ReplayError> {
        let found = self
            .ctx
            .store
            .parked(&self.ctx.subscriber, None, position.saturating_sub(1), 1)
            .map_err(ReplayError::Store)?;
        match found.into_iter().next() {
            Some(parked) if parked.position == position => self.resume(parked.stream, Some(position), timeout),
            _ => Err(ReplayError::NotParked),
        }
    }

    /// Sends a resume request for `stream` once the watermark has passed its parked events
    /// (see the `parking` module), and waits for its answer.
    fn resume(&self, stream: StreamId, discard: Option<u64>, timeout: Duration) -> Result<ReplayReport, ReplayError> {
        let started = std::time::Instant::now();
        let left = || timeout.saturating_sub(started.elapsed());
        let parked = self
            .ctx
            .store
            .parked(&self.ctx.subscriber, Some(&stream), 0, usize::MAX)
            .map_err(ReplayError::Store)?;
        let Some(last) = parked.last() else {
            return Err(ReplayError::NotParked);
        };
        if !self.watermark.wait_for(last.position, left()) {
            return Err(ReplayError::CatchingUp);
        }
        let (request, answer) = ResumeRequest::new(discard);
        match self
            .engine
            .submit_timeout(Event::new(stream, Delivery::Resume(request)), left())
        {
            Ok(()) => {}
            Err(SubmitError::Closed(_)) => return Err(ReplayError::Stopped),
            Err(_) => return Err(ReplayError::Busy),
        }
        match answer.recv_timeout(left()) {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(e)) => Err(ReplayError::Store(e)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(ReplayError::Timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(ReplayError::Stopped),
        }
    }

    /// A snapshot of the pipeline's counters.
    pub fn stats(&self) -> PipelineStats {
        self.counters.snapshot()
    }

    /// Stops reading, shuts the engine down with `deadline`, and saves the last checkpoint.
    ///
    /// The engine drains until `deadline` (and the handler calls then in progress return: a
    /// thread cannot be preempted). The reader then has until `deadline`, and at least
    /// [`READER_GRACE`] after the engine stopped, to end its current read (reads are at most
    /// 100 ms apart while idle) and save; it is joined. A reader still blocked in a store call
    /// after that (a checkout, a connect, a statement, each bounded by the store's timeouts) is
    /// left to finish on its own and save then; the report says the deadline was exceeded.
    /// A later or concurrent call waits for the first to finish and returns its report.
    pub fn shutdown(&self, deadline: Duration) -> PipelineReport {
        let mut lifecycle = self.lifecycle.lock();
        let reader = match &*lifecycle {
            Lifecycle::Stopped(report) => return report.clone(),
            Lifecycle::Running(reader) => reader,
        };
        let until = crate::sync::time::Instant::now().checked_add(deadline);
        self.stop.store(true, Ordering::Release);
        let engine = self.engine.shutdown(deadline);
        let _ = reader.drained.send(());
        let left = until
            .map_or(Duration::MAX, |until| {
                until.saturating_duration_since(crate::sync::time::Instant::now())
            })
            .max(READER_GRACE);
        let reader_finished = match reader.finished.recv_timeout(left) {
            Ok(()) => true,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let checkpoint = self.counters.checkpoint.load(Ordering::Relaxed);
                log::warn!(
                    checkpoint = checkpoint;
                    "humpyard pipeline {:?}: the reader is still in a store call at the deadline (checkpoint {checkpoint}); it saves the last checkpoint when the call returns",
                    self.ctx.subscriber
                );
                false
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                log::error!(
                    "humpyard pipeline {:?}: the reader thread panicked (its panic went to the process's panic hook)",
                    self.ctx.subscriber
                );
                true
            }
        };
        self.watermark.finish();
        let report = PipelineReport {
            checkpoint: self.counters.checkpoint.load(Ordering::Relaxed),
            unprocessed: engine
                .unprocessed
                .iter()
                .filter(|e| matches!(e.payload(), Delivery::Event(_)))
                .count(),
            deadline_exceeded: engine.deadline_exceeded || !reader_finished,
            stats: self.counters.snapshot(),
        };
        if let Lifecycle::Running(reader) = std::mem::replace(&mut *lifecycle, Lifecycle::Stopped(report.clone())) {
            if reader_finished {
                // It has sent `finished`: nothing is left but returning.
                let _ = reader.thread.join();
            }
        }
        report
    }
}

impl<H: StreamHandler> Pipeline<H> {
    /// The deadline its `Drop` shuts down with ([`PipelineBuilder::drop_deadline`]).
    pub(crate) fn drop_deadline(&self) -> Duration {
        self.drop_deadline
    }
}

impl<H: StreamHandler> Drop for Pipeline<H> {
    fn drop(&mut self) {
        self.shutdown(self.drop_deadline);
    }
}

impl<H: StreamHandler> std::fmt::Debug for Pipeline<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
