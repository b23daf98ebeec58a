//! The supervisor thread: the engine's clock-driven chores.
//!
//! Every tick (a quarter of the idle timeout or half the slow-handler threshold, clamped to
//! 1 ms ..= 100 ms) it:
//! - replaces worker threads that died (R-FT-1), by compare-and-swap on the exact handle it saw;
//! - schedules idle shards whose oldest entity has expired, so a quiet entity is reaped without
//!   new events (R-RES-2; the shard's runner does the reaping, so it cannot race dispatch);
//! - reports handler calls that have run past the slow-handler threshold (R-FT-3);
//! - with feature `metrics`, hands the counters to the export hooks (`crate::export`): the only
//!   place the `metrics` facade is called from, never per event (R-PERF-1).
//!
//! It fires due retry timers on every wake-up. Between ticks it sleeps until the next tick or the
//! next retry timer, whichever is first; a new timer unparks it.

use std::time::Duration;

use super::clock::ticks;
use super::hooks::{PanicSite, SlowHandler};
use super::lifecycle::mark_engine_thread;
use super::shared::Shared;
use super::worker;
use super::worker_slot::WorkerHandle;
use crate::pause::{self, PausePoint};
use crate::sync::thread::{self, JoinHandle};
use crate::sync::Arc as StdArc;
use crate::sync::Ordering;
use crate::KeyedHandler;

/// The supervisor's period for `config`.
fn tick(shared: &Shared<impl KeyedHandler>) -> Duration {
    let c = shared.config();
    (c.idle_timeout / 4)
        .min(c.slow_handler_threshold / 2)
        .clamp(Duration::from_millis(1), Duration::from_millis(100))
}

/// What the supervisor remembers of one worker between ticks.
#[derive(Clone, Copy)]
struct Watch {
    calls: u64,
    since: u64,
    reported: bool,
}

/// Starts the supervisor thread.
pub(crate) fn spawn<H: KeyedHandler>(shared: &StdArc<Shared<H>>) -> std::io::Result<JoinHandle<()>> {
    let shared = shared.clone();
    thread::spawn_named("humpyard-supervisor".to_owned(), move || {
        mark_engine_thread(shared.id());
        supervisor_main(&shared);
    })
}

fn supervisor_main<H: KeyedHandler>(shared: &StdArc<Shared<H>>) {
    let period = ticks(tick(shared));
    let mut watches = vec![
        Watch {
            calls: 0,
            since: 0,
            reported: false
        };
        shared.workers().len()
    ];
    let mut next_tick = 0u64;
    let clock = shared.clock();
    while !shared.lifecycle().is_stopping() {
        let now = clock.now();
        let next_due = shared.scheduler().fire_timers(shared.shards(), now);
        if now >= next_tick {
            replace_dead_workers(shared);
            schedule_expired_shards(shared, now);
            watch_slow_handlers(shared, now, &mut watches);
            #[cfg(feature = "metrics")]
            export(shared);
            next_tick = now + period;
        }
        let wake = next_tick.min(next_due);
        thread::park_timeout(Duration::from_nanos(wake.saturating_sub(clock.now()).max(1)));
    }
    // The counts of the drain (and of events refused as the engine closed) since the last tick.
    #[cfg(feature = "metrics")]
    export(shared);
}

/// Hands one snapshot of the counters to every export hook, each contained (a recorder is
/// user code).
#[cfg(feature = "metrics")]
fn export<H: KeyedHandler>(shared: &Shared<H>) {
    let hooks = shared.export_hooks();
    if hooks.is_empty() {
        return;
    }
    let metrics = shared.metrics();
    for hook in hooks {
        let _ = shared.containment().run(PanicSite::Hook, None, || hook(&metrics));
    }
}

fn replace_dead_workers<H: KeyedHandler>(shared: &StdArc<Shared<H>>) {
    if shared.lifecycle().is_stopping() {
        return;
    }
    for (index, slot) in shared.workers().iter().enumerate() {
        let seen = slot.handle();
        if seen.is_finished() {
            replace_worker(shared, index, &seen);
        }
    }
}

/// Replaces worker `index`, whose thread (`seen`, the handle the caller inspected) has ended:
/// joins it, starts a thread with the next epoch and installs it in place of exactly `seen`.
pub(crate) fn replace_worker<H: KeyedHandler>(shared: &StdArc<Shared<H>>, index: usize, seen: &StdArc<WorkerHandle>) {
    // Reap the dead thread; its panic was already printed by the panic hook.
    if let Some(join) = seen.join.lock().take() {
        let _ = join.join();
    }
    match worker::spawn(shared, index, seen.epoch + 1) {
        Ok(fresh) => {
            pause::point(PausePoint::BeforeInstall);
            if shared.workers()[index].install(seen, StdArc::new(fresh)) {
                shared.stats().workers_replaced.incr();
                log::error!(
                    worker = index, epoch = seen.epoch + 1;
                    "humpyard replaced dead worker {index} with a fresh thread (epoch {})",
                    seen.epoch + 1
                );
            }
        }
        Err(error) => {
            log::error!(
                worker = index, error:? = error;
                "humpyard could not start a thread to replace dead worker {index} ({error}); will retry"
            );
        }
    }
}

fn schedule_expired_shards<H: KeyedHandler>(shared: &Shared<H>, now: u64) {
    for shard in shared.shards() {
        if shard.next_expiry() <= now {
            shared.scheduler().schedule_if_idle(shard);
        }
    }
}

fn watch_slow_handlers<H: KeyedHandler>(shared: &Shared<H>, now: u64, watches: &mut [Watch]) {
    let threshold = ticks(shared.config().slow_handler_threshold);
    for (index, (slot, watch)) in shared.workers().iter().zip(watches.iter_mut()).enumerate() {
        let calls = slot.calls.get();
        if calls != watch.calls {
            *watch = Watch {
                calls,
                since: now,
                reported: false,
            };
            continue;
        }
        let in_call = calls % 2 == 1;
        if in_call && !watch.reported && now.saturating_sub(watch.since) >= threshold {
            watch.reported = true;
            shared.stats().slow_handlers.incr();
            let report = SlowHandler {
                worker: index,
                shard: slot.shard.load(Ordering::Relaxed),
                running_for: Duration::from_nanos(now - watch.since),
            };
            log::warn!(
                worker = report.worker, shard = report.shard, running_for:? = report.running_for;
                "humpyard handler is slow: worker {} has been in one call for {:?} (threshold {:?}); only shard {} waits on it",
                report.worker, report.running_for, shared.config().slow_handler_threshold, report.shard
            );
            if let Some(hook) = shared.on_slow_handler() {
                let _ = shared.containment().run(PanicSite::Hook, None, || hook(&report));
            }
        }
    }
}
