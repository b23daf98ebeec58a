//! [`Tracked`]: the user's handler, with each handled event marked done for the checkpoint.

use std::sync::Arc;

use super::progress::Progress;
use super::stats::Counters;
use crate::store::RecordedEvent;
use crate::{Event, Handler, StreamId};

/// The handler a [`Pipeline`](super::Pipeline)'s engine runs: the user's handler, and after each
/// call that returns `Ok`, the event's position marked fully processed. A failed or panicking
/// call marks nothing: the engine retries it, and a dead letter marks it instead.
pub struct Tracked<H> {
    inner: H,
    progress: Arc<Progress>,
    counters: Arc<Counters>,
}

impl<H> Tracked<H> {
    pub(crate) fn new(inner: H, progress: Arc<Progress>, counters: Arc<Counters>) -> Tracked<H> {
        Tracked {
            inner,
            progress,
            counters,
        }
    }

    /// The user's handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }
}

impl<H> std::fmt::Debug for Tracked<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked").finish_non_exhaustive()
    }
}

impl<H: Handler<Payload = RecordedEvent>> Handler for Tracked<H> {
    type Payload = RecordedEvent;
    type State = H::State;
    type Error = H::Error;

    fn init(&self, stream: &StreamId) -> Result<H::State, H::Error> {
        self.inner.init(stream)
    }

    fn handle(&self, state: &mut H::State, event: &Event<RecordedEvent>) -> Result<(), H::Error> {
        self.inner.handle(state, event)?;
        self.counters.handled.fetch_add(1, crate::sync::Ordering::Relaxed);
        self.progress.done(event.payload().position);
        Ok(())
    }

    fn cleanup(&self, stream: &StreamId, state: H::State) {
        self.inner.cleanup(stream, state);
    }
}
