//! [`Shared`]: everything the engine's threads share, each part behind an accessor.
//!
//! The engine is one `Arc<Shared>` held by the [`Engine`](crate::Engine) handle, every worker
//! thread and the supervisor. The parts and where their behaviour lives:
//!
//! | part | type | behaviour in |
//! |---|---|---|
//! | the user's handler | `H` | called by `runner` and `reaper`, always through `containment` |
//! | settings | [`Config`] | `config` |
//! | shards (ring, state, table) | [`Shard`] | `shard`, run by `runner` |
//! | run queue, sleepers, timers | [`Scheduler`] | `scheduler` |
//! | worker slots | [`WorkerSlot`] | `worker_slot`, `worker`, `supervisor` |
//! | lifecycle stage | [`Lifecycle`] | `lifecycle`, `shutdown` |
//! | panics caught | [`Containment`] | `containment` |
//! | dead letters | [`DeadLetterSink`] | `dead_letter` |
//! | live entities | an atomic count | `reaper` (cap and disposal) |
//!
//! When the last holder lets go, what is still inside (only after a last drop on one of the
//! engine's own threads: events, entities) is disposed of by `Shared`'s `Drop`, in `shutdown`.

use std::mem::ManuallyDrop;

use crossbeam_utils::CachePadded;

use super::builder::{Hooks, HooksOf};
use super::clock::Clock;
use super::config::Config;
use super::containment::Containment;
use super::counters::SharedCounter;
use super::dead_letter::DeadLetterSink;
use super::durations::HandlerDurations;
use super::hooks::{PanicSite, RemovalHook, SlowHandlerHook};
use super::lifecycle::Lifecycle;
use super::metrics::Metrics;
use super::scheduler::Scheduler;
use super::shard::Shard;
use super::worker_slot::{WorkerHandle, WorkerSlot};
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{AtomicU64, Mutex, Ordering};
use crate::{KeyedHandler, StreamKey};

/// Counters kept outside any shard.
#[derive(Debug, Default)]
pub(crate) struct EngineStats {
    pub(crate) slow_handlers: SharedCounter,
    pub(crate) workers_replaced: SharedCounter,
}

/// Everything the engine's threads share. See the module docs.
pub(crate) struct Shared<H: KeyedHandler> {
    /// Dropped by [`dispose_user_values`](Shared::dispose_user_values), contained.
    handler: ManuallyDrop<H>,
    config: Config,
    shards: Box<[Shard<H>]>,
    scheduler: Scheduler,
    workers: Box<[WorkerSlot]>,
    /// States made by `init` and not yet cleaned up, across all shards (the `max_entities`
    /// cap). `Relaxed`: the cap is a soft bound (each shard may overshoot it by one, as the
    /// builder documents) and the gauge a snapshot; it is exact once the threads are joined.
    live_entities: CachePadded<AtomicU64>,
    clock: Clock,
    lifecycle: Lifecycle,
    /// The supervisor thread, joined by shutdown.
    supervisor: Mutex<Option<JoinHandle<()>>>,
    containment: Containment<H::Key>,
    dead_letters: DeadLetterSink<H::Payload, H::Key>,
    on_entity_removed: Option<RemovalHook<H::Key>>,
    on_slow_handler: Option<SlowHandlerHook>,
    /// Called by the supervisor on every tick (feature `metrics`).
    #[cfg(feature = "metrics")]
    export: Vec<super::hooks::ExportHook>,
    stats: EngineStats,
}

impl<H: KeyedHandler> Shared<H> {
    /// The shared state of an engine with these parts; worker slots hold placeholders until
    /// the builder starts the threads.
    pub(crate) fn new(handler: H, config: Config, hooks: HooksOf<H>, shards: Box<[Shard<H>]>) -> Shared<H> {
        let Hooks {
            dead_letter,
            panic,
            slow_handler,
            entity_removed,
            #[cfg(feature = "metrics")]
            export,
        } = hooks;
        let placeholder = thread::current();
        let quiet_panics = config.quiet_panics;
        Shared {
            handler: ManuallyDrop::new(handler),
            scheduler: Scheduler::new(config.workers, config.shards()),
            workers: (0..config.workers)
                .map(|_| WorkerSlot::new(WorkerHandle::unstarted(placeholder.clone())))
                .collect(),
            dead_letters: DeadLetterSink::new(dead_letter, config.dead_letter_buffer),
            config,
            shards,
            live_entities: CachePadded::new(AtomicU64::new(0)),
            clock: Clock::new(),
            lifecycle: Lifecycle::default(),
            supervisor: Mutex::new(None),
            containment: Containment::new(panic, quiet_panics),
            on_entity_removed: entity_removed,
            on_slow_handler: slow_handler,
            #[cfg(feature = "metrics")]
            export,
            stats: EngineStats::default(),
        }
    }

    /// This engine's identity (see `lifecycle::on_engine_thread`).
    pub(crate) fn id(&self) -> usize {
        self as *const Shared<H> as usize
    }

    /// The user's handler. Call it only through [`containment`](Self::containment).
    #[inline]
    pub(crate) fn handler(&self) -> &H {
        &self.handler
    }

    #[inline]
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    #[inline]
    pub(crate) fn shards(&self) -> &[Shard<H>] {
        &self.shards
    }

    /// The shard of `stream`: the hash's high bits scaled to the shard count (Lemire's
    /// multiply-shift, which needs no division and works for any count).
    #[inline]
    pub(crate) fn shard_of(&self, stream: &H::Key) -> usize {
        ((u128::from(stream.stable_hash()) * self.shards.len() as u128) >> 64) as usize
    }

    #[inline]
    pub(crate) fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    #[inline]
    pub(crate) fn workers(&self) -> &[WorkerSlot] {
        &self.workers
    }

    #[inline]
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    #[inline]
    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    #[inline]
    pub(crate) fn containment(&self) -> &Containment<H::Key> {
        &self.containment
    }

    #[inline]
    pub(crate) fn dead_letters(&self) -> &DeadLetterSink<H::Payload, H::Key> {
        &self.dead_letters
    }

    #[inline]
    pub(crate) fn on_entity_removed(&self) -> Option<&RemovalHook<H::Key>> {
        self.on_entity_removed.as_ref()
    }

    #[inline]
    pub(crate) fn on_slow_handler(&self) -> Option<&SlowHandlerHook> {
        self.on_slow_handler.as_ref()
    }

    /// The export hooks the supervisor calls on every tick (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) fn export_hooks(&self) -> &[super::hooks::ExportHook] {
        &self.export
    }

    #[inline]
    pub(crate) fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The supervisor's join handle, for the builder (to set) and shutdown (to take).
    pub(crate) fn supervisor(&self) -> &Mutex<Option<JoinHandle<()>>> {
        &self.supervisor
    }

    /// Live entities now.
    #[inline]
    pub(crate) fn live_entities(&self) -> u64 {
        self.live_entities.load(Ordering::Relaxed)
    }

    /// An `init` made a state.
    #[inline]
    pub(crate) fn entity_made(&self) {
        self.live_entities.fetch_add(1, Ordering::Relaxed);
    }

    /// A state was cleaned up.
    #[inline]
    pub(crate) fn entity_disposed(&self) {
        self.live_entities.fetch_sub(1, Ordering::Relaxed);
    }

    /// A snapshot of the counters.
    pub(crate) fn metrics(&self) -> Metrics {
        let mut m = Metrics {
            shard_queued: Vec::with_capacity(self.shards.len()),
            ..Metrics::default()
        };
        for shard in self.shards.iter() {
            let s = shard.stats();
            m.accepted += shard.accepted();
            let queued = shard.queued();
            m.queued += queued;
            m.shard_queued.push(queued);
            m.rejected += shard.rejected().get();
            m.processed += s.processed.get();
            m.dead_lettered += s.dead_lettered.get();
            m.retries += s.retries.get();
            m.entities_reaped += s.reaped.get();
            m.entities_evicted += s.evicted.get();
            m.awaiting_retry += s.awaiting_retry.get();
            if let Some(counts) = shard.durations() {
                counts.add_to(m.handler_durations.get_or_insert_with(HandlerDurations::default));
            }
        }
        m.panics = self.containment.panics();
        m.entities_live = self.live_entities();
        m.slow_handlers = self.stats.slow_handlers.get();
        m.workers_replaced = self.stats.workers_replaced.get();
        m.dead_letters_discarded = self.dead_letters.discarded();
        m
    }

    /// Disposes of the user's values the engine keeps to its end: the handler, the hooks and
    /// the letters the default sink still holds, each contained (their `Drop` is user code).
    /// Called once, by `Shared`'s `Drop` (in `shutdown`).
    pub(crate) fn dispose_user_values(&mut self) {
        // SAFETY: called once, from `Drop`; nothing reads the handler afterwards.
        let handler = unsafe { ManuallyDrop::take(&mut self.handler) };
        let _ = self.containment.run(PanicSite::Drop, None, move || drop(handler));
        if let Some(hook) = self.on_entity_removed.take() {
            self.containment.dispose(None, hook);
        }
        if let Some(hook) = self.on_slow_handler.take() {
            self.containment.dispose(None, hook);
        }
        let containment = &self.containment;
        self.dead_letters.dispose_all(containment);
        if let Some(hook) = self.containment.take_hook() {
            // The panic hook goes last, uncounted if it panics: nobody reads the counter now.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(hook)));
        }
    }
}
