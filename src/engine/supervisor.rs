//! The supervisor thread: the engine's clock-driven chores.
//!
//! Every tick (a quarter of the idle timeout or half the slow-handler threshold, clamped to
//! 1 ms ..= 100 ms) it:
//! - replaces worker threads that died (R-FT-1), by compare-and-swap on the exact handle it saw;
//! - schedules idle shards whose oldest entity has expired, so a quiet entity is reaped without
//!   new events (R-RES-2; the shard's runner does the reaping, so it cannot race dispatch);
//! - reports handler calls that have run past the slow-handler threshold (R-FT-3).
//!
//! Between ticks it sleeps until the next tick or the next retry timer, whichever is first; a
//! new timer unparks it.

use crate::sync::Arc as StdArc;
use std::cmp::Reverse;
use std::time::Duration;

use super::hooks::{contain, PanicSite, SlowHandler};
use super::inner::{ticks, Inner};
use super::shard::WAITING;
use super::worker::spawn_worker;
use crate::sync::{thread, Ordering};
use crate::Handler;

/// The supervisor's period for `config`.
fn tick(inner: &Inner<impl Handler>) -> Duration {
    let c = &inner.config;
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

pub(crate) fn supervisor_main<H: Handler>(inner: &StdArc<Inner<H>>) {
    let period = ticks(tick(inner));
    let mut watches = vec![
        Watch {
            calls: 0,
            since: 0,
            reported: false
        };
        inner.workers.len()
    ];
    let mut next_tick = 0u64;
    while !inner.supervisor_stop.load(Ordering::Acquire) {
        let now = inner.clock.now();
        let next_due = fire_timers(inner, now);
        if now >= next_tick {
            replace_dead_workers(inner);
            schedule_expired_shards(inner, now);
            watch_slow_handlers(inner, now, &mut watches);
            next_tick = now + period;
        }
        let wake = next_tick.min(next_due);
        thread::park_timeout(Duration::from_nanos(wake.saturating_sub(inner.clock.now()).max(1)));
    }
}

/// Schedules the `WAITING` shards whose retry is due; returns the next due tick.
fn fire_timers<H: Handler>(inner: &Inner<H>, now: u64) -> u64 {
    loop {
        let due_shard = {
            let mut timers = inner.timers.lock();
            match timers.peek() {
                Some(&Reverse((due, shard))) if due <= now => {
                    timers.pop();
                    shard
                }
                Some(&Reverse((due, _))) => return due,
                None => return u64::MAX,
            }
        };
        if inner.shards[due_shard].try_transition(WAITING, super::shard::SCHEDULED) {
            inner.enqueue(due_shard);
        }
    }
}

fn replace_dead_workers<H: Handler>(inner: &StdArc<Inner<H>>) {
    if inner.stop.load(Ordering::Acquire) {
        return;
    }
    for (index, slot) in inner.workers.iter().enumerate() {
        let seen = slot.handle.load_full();
        if !seen.is_finished() {
            continue;
        }
        // Reap the dead thread; its panic was already printed by the panic hook.
        if let Some(join) = seen.join.lock().take() {
            let _ = join.join();
        }
        match spawn_worker(inner, index, seen.epoch + 1) {
            Ok(fresh) => {
                crate::pause::point(crate::pause::PausePoint::BeforeInstall);
                if slot.install(&seen, StdArc::new(fresh)) {
                    inner.stats.workers_replaced.incr();
                    log::error!(worker = index, epoch = seen.epoch + 1; "humpyard replaced a dead worker thread");
                }
            }
            Err(error) => {
                log::error!(worker = index, error:? = error; "humpyard could not replace a dead worker; will retry");
            }
        }
    }
}

fn schedule_expired_shards<H: Handler>(inner: &Inner<H>, now: u64) {
    for (index, shard) in inner.shards.iter().enumerate() {
        if shard.next_expiry.load(Ordering::Relaxed) <= now {
            inner.poke(index);
        }
    }
}

fn watch_slow_handlers<H: Handler>(inner: &Inner<H>, now: u64, watches: &mut [Watch]) {
    let threshold = ticks(inner.config.slow_handler_threshold);
    for (index, (slot, watch)) in inner.workers.iter().zip(watches.iter_mut()).enumerate() {
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
            inner.stats.slow_handlers.incr();
            let report = SlowHandler {
                worker: index,
                shard: slot.shard.load(Ordering::Relaxed),
                running_for: Duration::from_nanos(now - watch.since),
            };
            log::warn!(worker = report.worker, shard = report.shard, running_for:? = report.running_for; "humpyard handler is slow");
            if let Some(hook) = &inner.hooks.slow_handler {
                if let Err(message) = contain(|| hook(&report)) {
                    inner
                        .stats
                        .panics
                        .add(inner.report_panic(PanicSite::Hook, None, &message));
                }
            }
        }
    }
}
