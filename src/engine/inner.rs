//! The state every engine thread shares, and the scheduling helpers they all use.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::config::Config;
use super::hooks::{contain, Hooks, PanicReport, PanicSite};
use super::metrics::{Metrics, OwnedCounter, SharedCounter};
use super::run_queue::RunQueue;
use super::shard::{Shard, IDLE};
use super::sleepers::Sleepers;
use super::worker::WorkerHandle;
use crate::sync::thread::Thread;
use crate::sync::{fence, ArcSwap, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::{DeadLetter, Handler, StreamId};

/// The engine's monotonic clock, in nanosecond ticks since the engine started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock { epoch: Instant::now() }
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        ticks(self.epoch.elapsed())
    }
}

/// A duration in ticks, saturating.
#[inline]
pub(crate) fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Per worker index: the current thread's handle and what the supervisor watches.
pub(crate) struct WorkerSlot {
    /// The live worker for this index. Replaced (epoch + 1) only by a compare-and-swap against
    /// the exact handle that was seen dead (R-CONC-2).
    pub(crate) handle: ArcSwap<WorkerHandle>,
    /// Handler calls started plus finished: odd while a call runs. One writer (the worker).
    pub(crate) calls: CachePadded<OwnedCounter>,
    /// The shard the worker runs (for the slow-handler report).
    pub(crate) shard: AtomicUsize,
    /// Fault injection: the worker exits by an escaping panic at its next batch boundary.
    #[cfg(feature = "fault-injection")]
    pub(crate) kill: AtomicBool,
}

impl WorkerSlot {
    /// A slot holding `handle`.
    pub(crate) fn new(handle: WorkerHandle) -> WorkerSlot {
        WorkerSlot {
            handle: ArcSwap::from_pointee(handle),
            calls: CachePadded::new(OwnedCounter::default()),
            shard: AtomicUsize::new(0),
            #[cfg(feature = "fault-injection")]
            kill: AtomicBool::new(false),
        }
    }
}

/// Counters kept outside any shard.
#[derive(Debug, Default)]
pub(crate) struct EngineStats {
    /// Panics caught outside a shard run (hooks called by the supervisor or at shutdown).
    pub(crate) panics: SharedCounter,
    pub(crate) slow_handlers: SharedCounter,
    pub(crate) workers_replaced: SharedCounter,
    pub(crate) dead_letters_discarded: SharedCounter,
}

/// Everything the engine's threads share.
pub(crate) struct Inner<H: Handler> {
    pub(crate) handler: H,
    pub(crate) config: Config,
    pub(crate) hooks: Hooks<H::Payload>,
    pub(crate) shards: Box<[Shard<H>]>,
    /// Shards ready to run, each at most once (its state is `SCHEDULED`).
    pub(crate) run_queue: RunQueue,
    pub(crate) sleepers: Sleepers,
    pub(crate) workers: Box<[WorkerSlot]>,
    /// Live entities across all shards, for the `max_entities` cap.
    pub(crate) live_entities: CachePadded<AtomicU64>,
    pub(crate) clock: Clock,
    /// Workers stop taking events (after the drain, or at the deadline).
    pub(crate) stop: AtomicBool,
    /// The supervisor stops.
    pub(crate) supervisor_stop: AtomicBool,
    pub(crate) supervisor: Mutex<Option<Thread>>,
    /// Retry timers: (due tick, shard) of `WAITING` shards.
    pub(crate) timers: Mutex<BinaryHeap<Reverse<(u64, usize)>>>,
    pub(crate) stats: EngineStats,
    /// The default dead-letter sink when no hook is set, bounded.
    pub(crate) dead_letters: Mutex<VecDeque<DeadLetter<H::Payload>>>,
}

impl<H: Handler> Inner<H> {
    /// The shard of `stream`: the hash's high bits scaled to the shard count (Lemire's
    /// multiply-shift, which needs no division and works for any count).
    #[inline]
    pub(crate) fn shard_of(&self, stream: &StreamId) -> usize {
        ((u128::from(stream.hash_u64()) * self.shards.len() as u128) >> 64) as usize
    }

    /// Puts a `SCHEDULED` shard on the run queue and wakes a parked worker, its home worker
    /// if that one is parked.
    pub(crate) fn enqueue(&self, shard: usize) {
        self.run_queue.push(shard);
        fence(Ordering::SeqCst);
        self.wake_worker(self.run_queue.home(shard));
    }

    /// Wakes one parked worker, `preferred` if it is parked, if any is. The caller has fenced
    /// after publishing the work.
    #[inline]
    pub(crate) fn wake_worker(&self, preferred: usize) {
        if let Some(worker) = self.sleepers.pop_one(preferred) {
            self.workers[worker].handle.load().thread.unpark();
        }
    }

    /// After a successful push to `shard`: schedule it if it was idle.
    #[inline]
    pub(crate) fn after_push(&self, shard: usize) {
        if self.shards[shard].schedule_after_push() {
            self.enqueue(shard);
        }
    }

    /// Schedules `shard` if it is idle (maintenance: reaping a quiet shard).
    pub(crate) fn poke(&self, shard: usize) {
        let s = &self.shards[shard];
        if s.state() == IDLE && s.try_transition(IDLE, super::shard::SCHEDULED) {
            self.enqueue(shard);
        }
    }

    /// Arms a retry timer for a `WAITING` shard.
    pub(crate) fn add_timer(&self, due: u64, shard: usize) {
        self.timers.lock().push(Reverse((due, shard)));
        if let Some(supervisor) = &*self.supervisor.lock() {
            supervisor.unpark();
        }
    }

    /// Reports a caught panic: logs it and calls the panic hook (itself contained). Returns the
    /// panics to count: 1, or 2 if the panic hook panicked too.
    #[must_use]
    pub(crate) fn report_panic(&self, site: PanicSite, stream: Option<&StreamId>, message: &str) -> u64 {
        log::error!(site:? = site, stream:? = stream.map(StreamId::as_str), message:? = message; "humpyard caught a panic");
        if let Some(hook) = &self.hooks.panic {
            let report = PanicReport {
                site,
                stream: stream.cloned(),
                message: message.to_owned(),
            };
            if contain(|| hook(&report)).is_err() {
                return 2;
            }
        }
        1
    }

    /// A snapshot of the counters.
    pub(crate) fn metrics(&self) -> Metrics {
        let mut m = Metrics {
            shard_queued: Vec::with_capacity(self.shards.len()),
            ..Metrics::default()
        };
        for shard in self.shards.iter() {
            let s = &shard.stats;
            m.accepted += shard.ring.accepted();
            let queued = shard.ring.len();
            m.queued += queued;
            m.shard_queued.push(queued);
            m.rejected += shard.rejected.get();
            m.processed += s.processed.get();
            m.dead_lettered += s.dead_lettered.get();
            m.panics += s.panics.get();
            m.retries += s.retries.get();
            m.entities_reaped += s.reaped.get();
            m.entities_evicted += s.evicted.get();
            m.awaiting_retry += s.awaiting_retry.get();
        }
        m.panics += self.stats.panics.get();
        m.entities_live = self.live_entities.load(Ordering::Relaxed);
        m.slow_handlers = self.stats.slow_handlers.get();
        m.workers_replaced = self.stats.workers_replaced.get();
        m.dead_letters_discarded = self.stats.dead_letters_discarded.get();
        m
    }
}
