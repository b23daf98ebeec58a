//! Ingress: a producer's submit, and its wait for room.
//!
//! A submit pushes the event onto its stream's shard ring (lock-free; a full or closed ring
//! hands it back at once, counted in `rejected`), then schedules the shard if it was idle.
//! `submit_timeout` parks the producer on the shard's waiter list until a run frees room, the
//! engine closes, or its deadline: one wake-up, no retry loop, no timer per write (R-BP-2).
//! The protocols are in `shard` (scheduling) and the crate's `waiters` (parking).

use std::time::Duration;

use super::ring::PushError;
use super::shared::Shared;
use super::submit_error::SubmitError;
use crate::pause::{self, PausePoint};
use crate::sync::thread;
use crate::sync::time::Instant;
use crate::sync::{fence, Ordering};
use crate::{Event, Handler};

/// Submits `event` without ever blocking.
#[inline]
pub(crate) fn try_submit<H: Handler>(
    shared: &Shared<H>,
    event: Event<H::Payload>,
) -> Result<(), SubmitError<H::Payload>> {
    let shard = &shared.shards()[shared.shard_of(event.stream())];
    match shard.push(event) {
        Ok(()) => {
            shared.scheduler().after_push(shard);
            Ok(())
        }
        Err(PushError::Full(event)) => {
            shard.rejected().incr();
            Err(SubmitError::Full(event))
        }
        Err(PushError::Closed(event)) => {
            shard.rejected().incr();
            Err(SubmitError::Closed(event))
        }
    }
}

/// Submits `event`, waiting up to `timeout` for room in its shard.
pub(crate) fn submit_timeout<H: Handler>(
    shared: &Shared<H>,
    event: Event<H::Payload>,
    timeout: Duration,
) -> Result<(), SubmitError<H::Payload>> {
    let deadline = Instant::now().checked_add(timeout);
    let shard = &shared.shards()[shared.shard_of(event.stream())];
    let mut event = match shard.push(event) {
        Ok(()) => {
            shared.scheduler().after_push(shard);
            return Ok(());
        }
        Err(PushError::Closed(event)) => {
            shard.rejected().incr();
            return Err(SubmitError::Closed(event));
        }
        Err(PushError::Full(event)) => event,
    };
    let waiters = shard.waiters();
    loop {
        let waiter = waiters.register();
        // Pairs with the consumer's fence after freeing room (see `waiters`).
        fence(Ordering::SeqCst);
        match shard.push(event) {
            Ok(()) => {
                waiters.done(&waiter);
                shared.scheduler().after_push(shard);
                return Ok(());
            }
            Err(PushError::Closed(e)) => {
                waiters.leave(&waiter);
                shard.rejected().incr();
                return Err(SubmitError::Closed(e));
            }
            Err(PushError::Full(e)) => event = e,
        }
        while !waiter.is_notified() {
            let now = Instant::now();
            let left = match deadline {
                Some(deadline) if now >= deadline => {
                    pause::point(PausePoint::WaiterLeaving);
                    waiters.leave(&waiter);
                    shard.rejected().incr();
                    return Err(SubmitError::Timeout(event));
                }
                Some(deadline) => deadline - now,
                None => Duration::from_secs(3600),
            };
            pause::point(PausePoint::BeforeWaiterPark);
            thread::park_timeout(left);
        }
        // Woken for room (or for shutdown): try once more; another producer may have taken
        // the room first, and then we wait for the next wake-up.
    }
}
