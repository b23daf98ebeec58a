//! Shutdown: closing the intake, draining, stopping and joining the threads, and handing back
//! what is left.
//!
//! One shutdown at a time does the work (the lifecycle's drain lock; a concurrent call waits,
//! then finds `Stopped` and returns an empty report):
//!
//! 1. **Close** ([`close_intake`]): every ring's tail gets its closed mark, so every later
//!    submit fails with `Closed` and each ring's tail is frozen; a `SeqCst` fence, then every
//!    waiting producer is woken (it meets the mark on its re-try). Stage `Closed`.
//! 2. **Drain** until every shard is idle with an empty ring, or the deadline: the workers and
//!    the supervisor (which fires retry timers) run on meanwhile.
//! 3. **Stop**: stage `Stopping`, every worker and the supervisor woken and joined (each ends
//!    the handler call it is in).
//! 4. **Collect**: each shard is seized (no thread runs it now), its pending retry and every
//!    event its ring accepted are handed back, in order, and every entity is cleaned up
//!    (`Removal::Shutdown`). An event whose producer claimed its slot before the close and has
//!    not yet published it (a producer preempted between the two) is waited for, not skipped:
//!    the tail is frozen, so the wait is for known positions, each a few instructions from
//!    done. The shard is left `Closed`. Stage `Stopped`.
//!
//! Afterwards `accepted == processed + dead_lettered + unprocessed`, exactly.
//!
//! Shards are reached only through their [`ShardRun`](super::shard::ShardRun) token, so no
//! path here can touch a shard that a thread is running.

use std::time::{Duration, Instant};

use super::hooks::Removal;
use super::lifecycle::Stage;
use super::metrics::Tally;
use super::reaper;
use super::report::ShutdownReport;
use super::shard::ShardState;
use super::shared::Shared;
use crate::pause::{self, PausePoint};
use crate::sync::thread;
use crate::sync::{fence, Ordering};
use crate::{Event, Handler};

/// Shuts the engine down (see the module docs); `deadline` bounds the drain.
pub(crate) fn shutdown<H: Handler>(shared: &Shared<H>, deadline: Duration) -> ShutdownReport<H::Payload> {
    let lifecycle = shared.lifecycle();
    let _one_at_a_time = lifecycle.lock_drain();
    if lifecycle.stage() == Stage::Stopped {
        return ShutdownReport::empty();
    }
    let until = Instant::now().checked_add(deadline);
    close_intake(shared);
    let mut deadline_exceeded = !drain(shared, until);
    stop_threads(shared);
    pause::point(PausePoint::BeforeCollect);
    let mut unprocessed = Vec::new();
    collect_leftovers(shared, &mut unprocessed);
    lifecycle.advance(Stage::Stopped);
    if !unprocessed.is_empty() {
        deadline_exceeded = true;
    }
    ShutdownReport {
        unprocessed,
        deadline_exceeded,
    }
}

/// What dropping the [`Engine`](crate::Engine) does: a shutdown with the builder's
/// `drop_deadline`; what is left is disposed of (contained), and counted in the log.
pub(crate) fn drop_engine<H: Handler>(shared: &Shared<H>) {
    if shared.lifecycle().stage() == Stage::Stopped {
        return;
    }
    let report = shutdown(shared, shared.config().drop_deadline);
    if !report.unprocessed.is_empty() {
        log::warn!(
            unprocessed = report.unprocessed.len();
            "humpyard engine dropped with unprocessed events; call shutdown to get them back"
        );
    }
    for event in report.unprocessed {
        dispose_event(shared, event);
    }
}

/// Closes every ring (idempotent), then wakes every producer waiting for room. When it
/// returns, no submit can succeed any more.
fn close_intake<H: Handler>(shared: &Shared<H>) {
    shared.lifecycle().advance(Stage::Closed);
    for shard in shared.shards() {
        shard.close();
    }
    // Pairs with the fence of a producer registering as a waiter (see `waiters`): either it
    // sees the closed mark on its re-try, or `notify_all` sees it registered.
    fence(Ordering::SeqCst);
    for shard in shared.shards() {
        shard.waiters().notify_all();
    }
}

/// Waits until every shard is idle with an empty ring (no event queued, none in a handler,
/// none waiting for a retry), or `until`; returns whether it drained.
fn drain<H: Handler>(shared: &Shared<H>, until: Option<Instant>) -> bool {
    let drained = || {
        shared
            .shards()
            .iter()
            .all(|shard| shard.state() == ShardState::Idle && shard.queued() == 0)
    };
    let mut pause = Duration::from_micros(50);
    while !drained() {
        let now = Instant::now();
        match until {
            Some(until) if now >= until => return false,
            Some(until) => thread::pause(pause.min(until - now)),
            None => thread::pause(pause),
        }
        pause = (pause * 2).min(Duration::from_millis(5));
    }
    true
}

/// Stage `Stopping`; wakes every worker and the supervisor, and joins them.
fn stop_threads<H: Handler>(shared: &Shared<H>) {
    shared.lifecycle().advance(Stage::Stopping);
    // A worker registers as a sleeper under the sleepers' lock before it re-checks the stage,
    // so it either sees `Stopping` or is on the list `wake_all` takes.
    shared.scheduler().wake_all();
    for slot in shared.workers() {
        slot.handle().thread.unpark();
    }
    let supervisor = shared.supervisor().lock().take();
    if let Some(supervisor) = supervisor {
        supervisor.thread().unpark();
        let _ = supervisor.join();
    }
    // The supervisor is gone: no replacement can change the slots now.
    for slot in shared.workers() {
        let handle = slot.handle();
        let worker = handle.join.lock().take();
        if let Some(worker) = worker {
            let _ = worker.join();
        }
    }
}

/// Seizes every shard nobody runs, hands back its pending retry and every event its (closed)
/// ring accepted, in order, cleans up its entities, and leaves it `Closed`.
fn collect_leftovers<H: Handler>(shared: &Shared<H>, into: &mut Vec<Event<H::Payload>>) {
    for shard in shared.shards() {
        let Some(mut run) = shard.seize() else { continue };
        run.with(|core, ring| {
            if let Some(pending) = core.retry.take() {
                into.push(pending.event);
            }
            while let Some(event) = ring.pop_claimed() {
                into.push(event);
            }
            for (id, state) in core.table.drain() {
                reaper::dispose(shared, id, state, Removal::Shutdown);
            }
            Tally::default().publish(shard.stats(), false);
        });
        run.set_next_expiry(u64::MAX);
        run.close();
    }
}

/// Drops an event nobody can take back any more (contained: its payload is the user's).
fn dispose_event<H: Handler>(shared: &Shared<H>, event: Event<H::Payload>) {
    let (stream, payload) = event.into_parts();
    shared.containment().dispose(Some(&stream), payload);
}

impl<H: Handler> Drop for Shared<H> {
    /// The last holder let go: dispose of the user's values, contained.
    fn drop(&mut self) {
        self.dispose_user_values();
    }
}
