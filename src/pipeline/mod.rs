//! [`Pipeline`]: a store's events fed through an engine, with a durable checkpoint.
//!
//! One reader thread follows a [`Subscription`](crate::store::Subscription) from the
//! subscriber's checkpoint and submits each event to an [`Engine`] whose handler is the user's,
//! wrapped in [`Tracked`]: so each stream's events are handled in order, different streams in
//! parallel. Submits wait for room (the engine's backpressure); nothing is dropped.
//!
//! An event is *fully processed* when its handler call returns `Ok` or it is dead-lettered
//! after its last attempt. `progress::Progress` keeps a done-flag per position in a window;
//! the reader thread moves the window's front over done positions, and every
//! `checkpoint_interval` saves the low watermark (the front less one: every position up to it
//! is fully processed) as the subscriber's checkpoint. Positions the store never delivers
//! (rolled-back appends) and events it cannot decode (logged and counted) count as done.
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
pub(crate) mod progress;
mod reader;
mod stats;
mod tracked;

use std::sync::Arc;
use std::time::Duration;

use crate::store::RecordedEvent;
use crate::sync::{AtomicBool, Mutex, Ordering};
use crate::{Engine, Handler};

pub use builder::{PipelineBuilder, PipelineError};
pub use stats::PipelineStats;
pub use tracked::Tracked;

use reader::Reader;
use stats::Counters;

/// How long [`Pipeline::shutdown`] waits for the reader thread after the engine has stopped,
/// at least: long enough for a reader between reads (at most 100 ms apart while idle) to stop
/// and save the last checkpoint, short enough that a store that does not answer cannot hold
/// a shutdown for its own timeouts.
pub const READER_GRACE: Duration = Duration::from_secs(1);

/// A running pipeline. See the [module docs](self).
pub struct Pipeline<H: Handler<Payload = RecordedEvent>> {
    engine: Arc<Engine<Tracked<H>>>,
    counters: Arc<Counters>,
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
    pub(crate) fn spawn<H: Handler<Payload = RecordedEvent>>(reader: Reader<H>) -> std::io::Result<ReaderThread> {
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

impl<H: Handler<Payload = RecordedEvent>> Pipeline<H> {
    /// A pipeline feeding `handler` with `store`'s events for `subscriber` (a name with the
    /// [`StreamId`](crate::StreamId) rules).
    pub fn builder(store: Arc<dyn crate::store::EventStore>, subscriber: &str, handler: H) -> PipelineBuilder<H> {
        PipelineBuilder::new(store, subscriber, handler)
    }

    /// The engine that runs the handler (for its metrics).
    pub fn engine(&self) -> &Engine<Tracked<H>> {
        &self.engine
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
                log::warn!(
                    checkpoint = self.counters.checkpoint.load(Ordering::Relaxed);
                    "humpyard pipeline: the reader is still in a store call at the deadline; it saves the last checkpoint when the call returns"
                );
                false
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                log::error!("humpyard pipeline: the reader thread panicked");
                true
            }
        };
        let report = PipelineReport {
            checkpoint: self.counters.checkpoint.load(Ordering::Relaxed),
            unprocessed: engine.unprocessed.len(),
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

impl<H: Handler<Payload = RecordedEvent>> Drop for Pipeline<H> {
    fn drop(&mut self) {
        self.shutdown(self.drop_deadline);
    }
}

impl<H: Handler<Payload = RecordedEvent>> std::fmt::Debug for Pipeline<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
