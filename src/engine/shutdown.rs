//! Shutdown and the engine's end: closing the intake, draining, stopping and joining the
//! threads, handing back what is left, and disposing of what nobody can take back.
//!
//! # The shutdown that drains ([`shutdown`], off the engine's threads)
//!
//! 1. **Close** ([`close_intake`]): every ring's tail gets its closed mark, so every later
//!    submit fails with `Closed` and each ring's tail is frozen; a `SeqCst` fence, then every
//!    waiting producer is woken (it meets the mark on its re-try).
//! 2. **Drain** until every shard is idle with an empty ring, or the deadline: the workers and
//!    the supervisor (which fires retry timers) run on meanwhile.
//!
//! Then one shutdown at a time (the lifecycle's drain lock; a concurrent call waits, then
//! finds `Stopped` and returns an empty report), on a thread marked as one of the engine's own
//! meanwhile (a `cleanup` or hook it calls that shuts the engine down must not wait for this
//! shutdown):
//!
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
//! # From one of the engine's own threads
//!
//! A handler, a hook, or a state's `Drop` may reach the engine's `shutdown` (through a `Weak`
//! or an `Arc` it holds), or drop its last `Arc`, while running on a worker or the supervisor.
//! That thread cannot wait for the drain (its own call is part of it) and must not join
//! itself, and the shard it is running must not be touched (the handler holds `&mut` to one of
//! its states). So, on an engine thread:
//!
//! - [`shutdown`] only closes the intake and returns at once, with a report that says the
//!   drain was left to another thread (`drain_deferred`). The workers go on draining; the
//!   drain, the cleanup and the join happen at the next shutdown, or the last drop, made off
//!   the engine's threads.
//! - The last drop ([`drop_engine`]) closes the intake and stops the threads without joining
//!   any: each ends after the call it is in. The last of them to end drops the shared state,
//!   whose `Drop` (below) cleans up every entity still alive (their shards are no longer run
//!   by anyone then) and disposes of the events still queued, logging how many. So R-LIFE-2
//!   holds in this form: no engine thread outlives its current call, and every state is
//!   cleaned up exactly once.
//!
//! Shards are reached only through their [`ShardRun`](super::shard::ShardRun) token, so no
//! path here can touch a shard that a thread, the calling one included, is running.

use std::time::Duration;

use super::hooks::Removal;
use super::lifecycle::{on_engine_thread, EngineThreadMark, Stage};
use super::metrics::Tally;
use super::reaper;
use super::report::ShutdownReport;
use super::shard::ShardState;
use super::shared::Shared;
use crate::handler::EventOf;
use crate::pause::{self, PausePoint};
use crate::sync::thread;
use crate::sync::time::Instant;
use crate::sync::{fence, Ordering};
use crate::KeyedHandler;

/// Shuts the engine down (see the module docs); `deadline` bounds the drain.
pub(crate) fn shutdown<H: KeyedHandler>(shared: &Shared<H>, deadline: Duration) -> ShutdownReport<H::Payload, H::Key> {
    if on_engine_thread(shared.id()) {
        close_intake(shared);
        return ShutdownReport::deferred();
    }
    let until = Instant::now().checked_add(deadline);
    close_intake(shared);
    let mut deadline_exceeded = !drain(shared, until);
    let lifecycle = shared.lifecycle();
    let _one_at_a_time = lifecycle.lock_drain();
    if lifecycle.stage() == Stage::Stopped {
        return ShutdownReport::empty();
    }
    // From here on this thread calls the engine's user code (cleanups, hooks): a shutdown made
    // there must not wait for this one.
    let _mark = EngineThreadMark::new(shared.id());
    stop_threads(shared, true);
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
        drain_deferred: false,
    }
}

/// What dropping the [`Engine`](crate::Engine) does (see the module docs).
pub(crate) fn drop_engine<H: KeyedHandler>(shared: &Shared<H>) {
    if shared.lifecycle().stage() == Stage::Stopped {
        return;
    }
    if on_engine_thread(shared.id()) {
        close_intake(shared);
        stop_threads(shared, false);
        log::warn!(
            "humpyard engine dropped on one of its own threads: its threads stop after their current call, \
             and what is left is cleaned up when the last one ends"
        );
        return;
    }
    let report = shutdown(shared, shared.config().drop_deadline);
    if !report.unprocessed.is_empty() {
        log::warn!(
            unprocessed = report.unprocessed.len();
            "humpyard engine dropped with {} events still unprocessed; they are dropped with it (call shutdown to get them back)",
            report.unprocessed.len()
        );
    }
    for event in report.unprocessed {
        dispose_event(shared, event);
    }
}

/// Closes every ring (idempotent), then wakes every producer waiting for room. When it
/// returns, no submit can succeed any more.
fn close_intake<H: KeyedHandler>(shared: &Shared<H>) {
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
/// none waiting for a retry) or already collected, or `until`; returns whether it drained.
fn drain<H: KeyedHandler>(shared: &Shared<H>, until: Option<Instant>) -> bool {
    let drained = || {
        shared
            .shards()
            .iter()
            .all(|shard| matches!(shard.state(), ShardState::Idle | ShardState::Closed) && shard.queued() == 0)
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

/// Stage `Stopping`; wakes every worker and the supervisor, and joins them if `join` (never on
/// one of the engine's own threads).
fn stop_threads<H: KeyedHandler>(shared: &Shared<H>, join: bool) {
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
        if join {
            let _ = supervisor.join();
        } else {
            // Detached: it ends at its next wake-up, which the unpark just gave it.
            drop(supervisor);
        }
    }
    if !join {
        return;
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
fn collect_leftovers<H: KeyedHandler>(shared: &Shared<H>, into: &mut Vec<EventOf<H>>) {
    for shard in shared.shards() {
        let Some(mut run) = shard.seize() else { continue };
        run.with(|core, ring| {
            if let Some(pending) = core.retry.take() {
                into.push(pending.event);
                // The retry gauge goes back to zero with it.
                Tally::default().publish(shard.stats(), false);
            }
            while let Some(event) = ring.pop_claimed() {
                into.push(event);
            }
            for (id, state) in core.table.drain() {
                reaper::dispose(shared, id, state, Removal::Shutdown);
            }
        });
        run.close();
    }
}

/// Drops an event nobody can take back any more (contained: its payload is the user's).
fn dispose_event<H: KeyedHandler>(shared: &Shared<H>, event: EventOf<H>) {
    let (stream, payload) = event.into_parts();
    shared.containment().dispose(Some(&stream), payload);
}

impl<H: KeyedHandler> Drop for Shared<H> {
    /// The last holder let go. After a normal shutdown there is nothing left but the user's
    /// values; after a last drop on one of the engine's own threads, the shards still hold
    /// events and states, and nobody runs them any more.
    fn drop(&mut self) {
        close_intake(self);
        let mut abandoned = Vec::new();
        collect_leftovers(self, &mut abandoned);
        if !abandoned.is_empty() {
            log::warn!(
                abandoned = abandoned.len();
                "humpyard engine ended with {} events it could not hand back (it was dropped on one of its own threads)",
                abandoned.len()
            );
        }
        for event in abandoned {
            dispose_event(self, event);
        }
        self.dispose_user_values();
    }
}
