//! Parked streams: which streams have a parked event (and the first one's position), and the
//! resumption of a parked stream (replay, or discard then replay) on the thread that runs it.
//!
//! # Stream order
//!
//! While a stream has a parked event, every later event of it is parked behind that one, not
//! handled, so that none runs on a state that missed an event. [`ParkedStreams`] holds each
//! such stream with its first parked position; it is loaded from the store when the pipeline
//! starts and changed only on the thread running the stream (a park, a resume), so the next
//! event of the stream, which the engine hands to a thread after that one, sees the change.
//!
//! # Resuming
//!
//! [`Pipeline::replay`](super::Pipeline::replay) and [`Pipeline::discard`](super::Pipeline::discard)
//! send a [`Delivery::Resume`](super::tracked::Delivery) to the stream through the engine, so
//! it runs in the stream's order with its other events. It discards the one asked for (if any),
//! then, if the stream's first parked event is gone or a replay was asked for, handles the
//! stream's parked events in position order, each with the state folded from every event
//! before it: each success is unparked; the first failure stays parked (attempts and message
//! updated) and the stream stays parked behind it. Once none is left, the stream runs again.
//! A store error stops the request, and the engine runs it again after its backoff; what it did
//! is kept in the request ([`ResumeRequest`]), so the second run only writes what the first
//! could not (an unpark, a failure's record) and handles no event twice.
//!
//! A request is sent only once the pipeline's watermark has passed the stream's last parked
//! position (`Pipeline::resume` waits for it): after a restart or a rewind the reader reads the
//! parked positions again, and a request that ran before they came back would replay events
//! the reader then hands over a second time (a discarded one included).

use std::collections::HashMap;
use std::sync::Arc;

use super::handler::StreamHandler;
use super::tracked::{describe, dispose, Entity, Failure, Tracked, TrackedError};
use crate::store::{ParkKind, ParkedEvent, StoreError};
use crate::sync::{AtomicBool, Mutex, Ordering};
use crate::StreamId;

/// Parked events read per store call while resuming.
const PAGE: usize = 256;

/// The streams with a parked event, and the position of the first one.
#[derive(Debug, Default)]
pub(crate) struct ParkedStreams {
    heads: Mutex<HashMap<StreamId, u64>>,
    /// Whether `heads` may be non-empty: the event path's fast check (most pipelines have no
    /// parked stream). Changed under the lock; the thread that reads it for a stream runs after
    /// the one that changed it for that stream (the engine orders them), so `Relaxed` suffices.
    any: AtomicBool,
}

impl ParkedStreams {
    /// The first parked position of `stream`, if it is parked.
    #[inline]
    pub(crate) fn head(&self, stream: &StreamId) -> Option<u64> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        self.heads.lock().get(stream).copied()
    }

    /// Marks `stream` parked from `position` on (kept if an earlier position is parked).
    pub(crate) fn set_head(&self, stream: &StreamId, position: u64) {
        let mut heads = self.heads.lock();
        let head = heads.entry(stream.clone()).or_insert(position);
        *head = (*head).min(position);
        self.any.store(true, Ordering::Relaxed);
    }

    /// Makes `position` the stream's first parked one (after a resume moved it on).
    fn move_head(&self, stream: &StreamId, position: u64) {
        self.heads.lock().insert(stream.clone(), position);
        self.any.store(true, Ordering::Relaxed);
    }

    /// The stream has no parked event left.
    fn clear(&self, stream: &StreamId) {
        let mut heads = self.heads.lock();
        heads.remove(stream);
        self.any.store(!heads.is_empty(), Ordering::Relaxed);
    }

    /// How many streams are parked.
    pub(crate) fn len(&self) -> usize {
        self.heads.lock().len()
    }
}

/// A request to resume one parked stream, and where its answer goes.
pub(crate) struct ResumeRequest {
    /// The parked position to discard first, if any.
    pub(crate) discard: Option<u64>,
    /// What the request has done so far: the engine runs it again after a store error, and
    /// the second run must not repeat what the first did. Touched only by the thread running
    /// the stream (one at a time, in order).
    progress: Mutex<ResumeProgress>,
    reply: Mutex<Option<std::sync::mpsc::SyncSender<Result<ReplayReport, StoreError>>>>,
}

#[derive(Default)]
struct ResumeProgress {
    /// `None` until the discard was tried; then whether it removed the event.
    discarded: Option<bool>,
    /// Whether the discarded event was the stream's first parked one.
    was_head: bool,
    /// A parked event handled successfully whose unpark is still to be written.
    handled: Option<u64>,
    /// A parked event that failed again, whose updated record is still to be written.
    failed: Option<ParkedEvent>,
    report: ReplayReport,
}

impl ResumeRequest {
    /// A request, and the receiver of its answer.
    pub(crate) fn new(
        discard: Option<u64>,
    ) -> (
        Arc<ResumeRequest>,
        std::sync::mpsc::Receiver<Result<ReplayReport, StoreError>>,
    ) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let request = ResumeRequest {
            discard,
            progress: Mutex::new(ResumeProgress::default()),
            reply: Mutex::new(Some(tx)),
        };
        (Arc::new(request), rx)
    }

    fn answer(&self, result: Result<ReplayReport, StoreError>) {
        if let Some(reply) = self.reply.lock().take() {
            // The caller may have stopped waiting.
            let _ = reply.try_send(result);
        }
    }
}

/// What a replay or a discard did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Parked events handled successfully (and unparked).
    pub replayed: u64,
    /// Whether the event asked to be discarded was (always `false` for a replay).
    pub discarded: bool,
    /// The parked event that failed again: the stream stays parked behind it. `None` when the
    /// stream has no parked event left, or when a discard left an earlier one first.
    pub failed: Option<ParkedEvent>,
    /// Parked events of the stream left.
    pub still_parked: u64,
}

/// Why [`Pipeline::replay`](super::Pipeline::replay) or
/// [`Pipeline::discard`](super::Pipeline::discard) did not report what it did.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplayError {
    /// Nothing is parked there: the stream has no parked event, or that position is not
    /// parked.
    NotParked,
    /// The store failed before the request was sent.
    Store(StoreError),
    /// The engine had no room for the request within the timeout; nothing was done.
    Busy,
    /// The pipeline has not yet read up to the stream's last parked event (after a restart or
    /// a rewind it reads them again); nothing was done: try again once
    /// [`Pipeline::wait_for`](super::Pipeline::wait_for) that position returns `true`.
    CatchingUp,
    /// The request was sent and runs in the stream's order, but did not finish within the
    /// timeout; see [`Pipeline::parked`](super::Pipeline::parked) for what it did.
    Timeout,
    /// The pipeline is shutting down or has stopped; the request did not run.
    Stopped,
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::NotParked => f.write_str("nothing is parked there"),
            ReplayError::Store(_) => f.write_str("the store failed; nothing was done"),
            ReplayError::Busy => f.write_str("the engine had no room for the request; nothing was done"),
            ReplayError::CatchingUp => {
                f.write_str("the pipeline has not yet read up to the stream's parked events; nothing was done")
            }
            ReplayError::Timeout => f.write_str("the request did not finish within the timeout; it runs on"),
            ReplayError::Stopped => f.write_str("the pipeline has stopped"),
        }
    }
}

impl std::error::Error for ReplayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplayError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// Runs a resume request on the thread that runs `stream`.
pub(crate) fn resume<H: StreamHandler>(
    tracked: &Tracked<H>,
    entity: &mut Entity<H::State>,
    stream: &StreamId,
    request: &ResumeRequest,
) -> Result<(), TrackedError<H::Error>> {
    match run(tracked, entity, stream, request) {
        Ok(report) => {
            request.answer(Ok(report));
            Ok(())
        }
        // Tried again after the engine's backoff; the caller waits meanwhile (or times out).
        Err(e) => Err(TrackedError::Store(e)),
    }
}

fn run<H: StreamHandler>(
    tracked: &Tracked<H>,
    entity: &mut Entity<H::State>,
    stream: &StreamId,
    request: &ResumeRequest,
) -> Result<ReplayReport, StoreError> {
    let ctx = &*tracked.ctx;
    let mut progress = request.progress.lock();
    let progress = &mut *progress;
    if let Some(position) = request.discard {
        if progress.discarded.is_none() {
            let head = ctx.parked.head(stream);
            let removed = ctx.store.unpark(&ctx.subscriber, position)?;
            if removed {
                ctx.counters.discarded.fetch_add(1, Ordering::Relaxed);
            }
            progress.was_head = removed && head.map_or(true, |h| position <= h);
            progress.discarded = Some(removed);
        }
        progress.report.discarded = progress.discarded == Some(true);
        if !progress.was_head {
            // An event behind the first (or one no longer parked): nothing else changes.
            progress.report.still_parked = count(tracked, stream)?;
            return Ok(progress.report.clone());
        }
    }
    // What an earlier run of this request left to write.
    if let Some(position) = progress.handled {
        ctx.store.unpark(&ctx.subscriber, position)?;
        progress.handled = None;
    }
    if progress.failed.is_some() {
        return failed_again(tracked, stream, progress);
    }
    // The entity's state, if any, is of the events handled before the park: rebuild it.
    tracked.drop_state(entity, stream);
    loop {
        let page = ctx.store.parked(&ctx.subscriber, Some(stream), 0, PAGE)?;
        let Some(first) = page.first() else {
            ctx.parked.clear(stream);
            progress.report.still_parked = 0;
            return Ok(progress.report.clone());
        };
        ctx.parked.move_head(stream, first.position);
        for parked in page {
            let Some(event) = ctx
                .store
                .read_stream(stream, parked.version, 1)?
                .into_iter()
                .find(|e| e.position == parked.position)
            else {
                // Not in the store as parked (a rewritten table): nothing to handle.
                ctx.store.unpark(&ctx.subscriber, parked.position)?;
                continue;
            };
            match tracked.attempt(entity, &event) {
                Ok(()) => {
                    tracked.fold_in(entity, &event);
                    ctx.counters.replayed.fetch_add(1, Ordering::Relaxed);
                    progress.report.replayed += 1;
                    progress.handled = Some(parked.position);
                    ctx.store.unpark(&ctx.subscriber, parked.position)?;
                    progress.handled = None;
                }
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Wait(e)) => {
                    // Not an attempt and not a new failure: the event stays parked as it was
                    // (its record untouched, nobody notified), and the replay ends; replay it
                    // again once the dependency is back.
                    dispose(e);
                    ctx.counters.waits.fetch_add(1, Ordering::Relaxed);
                    tracked.drop_state(entity, stream);
                    progress.report.still_parked = count(tracked, stream)?;
                    return Ok(progress.report.clone());
                }
                Err(failure) => {
                    // A wait is no attempt: the event stays parked with its attempts, and the
                    // replay ends (replay it again later).
                    let (kind, message, attempts) = match failure {
                        Failure::Handler(e) => (ParkKind::Handler, describe(e), parked.attempts.saturating_add(1)),
                        Failure::Refused(e) => (ParkKind::Refused, describe(e), parked.attempts.saturating_add(1)),
                        Failure::Panic(kind, message) => (kind, message, parked.attempts.saturating_add(1)),
                        Failure::Store(_) | Failure::Wait(_) => unreachable!("returned above"),
                    };
                    tracked.drop_state(entity, stream);
                    let again = ctx.parked_event(&event, attempts, kind, message);
                    progress.failed = Some(again);
                    return failed_again(tracked, stream, progress);
                }
            }
        }
    }
}

/// Writes the record of a parked event that failed again (`progress.failed`): the stream stays
/// parked behind it.
fn failed_again<H: StreamHandler>(
    tracked: &Tracked<H>,
    stream: &StreamId,
    progress: &mut ResumeProgress,
) -> Result<ReplayReport, StoreError> {
    let ctx = &*tracked.ctx;
    let again = progress.failed.clone().expect("a failure to write");
    let still_parked = count(tracked, stream)?;
    let written = ctx.park(&again)?;
    progress.failed = None;
    ctx.parked.move_head(stream, again.position);
    if written {
        ctx.notify(&again);
    }
    progress.report.still_parked = still_parked;
    progress.report.failed = Some(again);
    Ok(progress.report.clone())
}

/// How many parked events `stream` has.
fn count<H: StreamHandler>(tracked: &Tracked<H>, stream: &StreamId) -> Result<u64, StoreError> {
    let ctx = &*tracked.ctx;
    Ok(ctx.store.parked(&ctx.subscriber, Some(stream), 0, usize::MAX)?.len() as u64)
}

/// The parked streams of `subscriber` in `store`, read in pages. A store without parking
/// ([`StoreError::Unsupported`]) is refused.
pub(crate) fn load(store: &dyn crate::store::EventStore, subscriber: &str) -> Result<ParkedStreams, StoreError> {
    let streams = ParkedStreams::default();
    let mut after = 0;
    loop {
        // A store without parking is an error here: a pipeline on it could never park an
        // event that failed, and would retry it forever.
        let page = store.parked(subscriber, None, after, 4096)?;
        let Some(last) = page.last() else { return Ok(streams) };
        after = last.position;
        for parked in &page {
            streams.set_head(&parked.stream, parked.position);
        }
    }
}
