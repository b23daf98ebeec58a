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
//! are read again by the next run.

mod builder;
pub(crate) mod progress;
mod reader;
mod stats;
mod tracked;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::store::RecordedEvent;
use crate::sync::Mutex;
use crate::{Engine, Handler};

pub use builder::{PipelineBuilder, PipelineError};
pub use stats::PipelineStats;
pub use tracked::Tracked;

use reader::Reader;
use stats::Counters;

/// A running pipeline. See the [module docs](self).
pub struct Pipeline<H: Handler<Payload = RecordedEvent>> {
    engine: Arc<Engine<Tracked<H>>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    reader: Mutex<Option<std::thread::JoinHandle<Reader<H>>>>,
    drop_deadline: Duration,
}

/// What [`Pipeline::shutdown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineReport {
    /// The checkpoint saved last: every position up to it is fully processed.
    pub checkpoint: u64,
    /// Events the engine handed back unprocessed at its deadline (read again by the next run).
    pub unprocessed: usize,
    /// Whether the engine's deadline passed before it drained.
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
    /// Later calls return the report of an already stopped pipeline.
    pub fn shutdown(&self, deadline: Duration) -> PipelineReport {
        self.stop.store(true, Ordering::Release);
        let reader = self.reader.lock().take();
        let report = self.engine.shutdown(deadline);
        if let Some(reader) = reader {
            match reader.join() {
                Ok(mut reader) => reader.save_checkpoint(),
                Err(_) => log::error!("humpyard pipeline: the reader thread panicked"),
            }
        }
        PipelineReport {
            checkpoint: self.counters.checkpoint.load(Ordering::Relaxed),
            unprocessed: report.unprocessed.len(),
            deadline_exceeded: report.deadline_exceeded,
            stats: self.counters.snapshot(),
        }
    }
}

impl<H: Handler<Payload = RecordedEvent>> Drop for Pipeline<H> {
    fn drop(&mut self) {
        if self.reader.lock().is_some() {
            self.shutdown(self.drop_deadline);
        }
    }
}

impl<H: Handler<Payload = RecordedEvent>> std::fmt::Debug for Pipeline<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
