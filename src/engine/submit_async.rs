//! [`SubmitAsync`]: a submit that waits for room without blocking a thread (R-BP-2 for async
//! callers).
//!
//! The future borrows the caller's `Option<Event>` and takes the event out of it only when a
//! ring takes the event (or hands it back closed, inside the error). Dropping the future at any
//! other moment (a `select!` branch that lost, a timeout, a cancelled task) leaves the event in
//! the caller's `Option`: nothing is lost and nothing is taken twice. This is the same
//! guarantee a reserve-then-send shape gives, without a claimed ring position that would hold
//! up every later event of the shard while a caller kept it.
//!
//! # Protocol
//!
//! The thread path of `ingress::submit_timeout`, with `Pending` for `park`: push; if full,
//! register the task's waker on the shard's waiter list, `fence(SeqCst)`, push once more, and
//! return `Pending` only if the waiter is still unwoken after keeping the current waker
//! (`Waiter::set_waker`, see the crate's `waiters`). A freer (a run that freed room, or
//! shutdown's close) notifies one waiter and wakes its latest waker. A woken task's next push
//! is the try its wake-up stood for: if another producer took the room first, it registers
//! anew. A future dropped while registered leaves the list and passes a wake-up it got on
//! (`Waiters::leave`), as does one whose re-try after registering succeeds (`Waiters::done`). loom:
//! `loom-tests/tests/async_waiting.rs`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::ring::PushError;
use super::shared::Shared;
use super::submit_error::SubmitError;
use crate::handler::EventOf;
use crate::sync::{fence, Arc, Ordering};
use crate::waiters::Waiter;
use crate::KeyedHandler;

/// The future of [`Engine::submit_async`](crate::Engine::submit_async): resolves when the
/// event in the caller's `Option` is taken (`Ok`, the `Option` is then `None`) or handed back
/// because the engine closed (`Err(SubmitError::Closed)`, holding the event; the `Option` is
/// `None`). Until then the event stays in the caller's `Option`, so dropping this future loses
/// nothing.
#[must_use = "a future does nothing unless polled; the event stays in its Option until then"]
pub struct SubmitAsync<'a, H: KeyedHandler> {
    shared: &'a Shared<H>,
    event: &'a mut Option<EventOf<H>>,
    /// The event's shard (computed once; the event cannot change while borrowed).
    shard: usize,
    /// This task's place on the shard's waiter list, while registered.
    waiter: Option<Arc<Waiter>>,
}

impl<'a, H: KeyedHandler> SubmitAsync<'a, H> {
    pub(crate) fn new(shared: &'a Shared<H>, event: &'a mut Option<EventOf<H>>) -> SubmitAsync<'a, H> {
        let shard = event.as_ref().map_or(0, |e| shared.shard_of(e.stream()));
        SubmitAsync {
            shared,
            event,
            shard,
            waiter: None,
        }
    }
}

impl<H: KeyedHandler> Future for SubmitAsync<'_, H> {
    type Output = Result<(), SubmitError<H::Payload, H::Key>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is `Unpin`: the future is never pinned in place.
        let this = self.get_mut();
        let shard = &this.shared.shards()[this.shard];
        let waiters = shard.waiters();
        loop {
            // Woken: this push is the try the wake-up stood for; if it fails, register anew.
            if this.waiter.as_ref().is_some_and(|waiter| waiter.is_notified()) {
                this.waiter = None;
            }
            // An empty `Option` (never filled, or polled again after completing): nothing to do.
            let Some(event) = this.event.take() else {
                if let Some(waiter) = this.waiter.take() {
                    waiters.leave(&waiter);
                }
                return Poll::Ready(Ok(()));
            };
            match shard.push(event) {
                Ok(()) => {
                    if let Some(waiter) = this.waiter.take() {
                        waiters.done(&waiter);
                    }
                    this.shared.scheduler().after_push(shard);
                    return Poll::Ready(Ok(()));
                }
                Err(PushError::Closed(event)) => {
                    if let Some(waiter) = this.waiter.take() {
                        waiters.leave(&waiter);
                    }
                    shard.rejected().incr();
                    return Poll::Ready(Err(SubmitError::Closed(event)));
                }
                Err(PushError::Full(event)) => *this.event = Some(event),
            }
            match &this.waiter {
                // Registered and not yet woken, now with the current waker: wait.
                Some(waiter) if waiter.set_waker(cx.waker()) => return Poll::Pending,
                // Woken just now (the freer took it off the list): try again.
                Some(_) => this.waiter = None,
                None => {
                    this.waiter = Some(waiters.register_task(cx.waker()));
                    // Pairs with the freer's fence after freeing room (see `waiters`); then try
                    // once more before waiting.
                    fence(Ordering::SeqCst);
                }
            }
        }
    }
}

impl<H: KeyedHandler> Drop for SubmitAsync<'_, H> {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            // Dropped while waiting: leave, passing on a wake-up this task got and did not use.
            self.shared.shards()[self.shard].waiters().leave(&waiter);
        }
    }
}

impl<H: KeyedHandler> std::fmt::Debug for SubmitAsync<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitAsync")
            .field("shard", &self.shard)
            .field("holds_event", &self.event.is_some())
            .field("waiting", &self.waiter.is_some())
            .finish()
    }
}
