//! [`PipelineBuilder`]: the pipeline's settings, and starting it.

use std::sync::Arc;
use std::time::Duration;

use super::handler::StreamHandler;
use super::parking;
use super::progress::{Progress, Window};
use super::reader::Reader;
use super::stats::Counters;
use super::tracked::{Context, ParkHook, Tracked};
use super::watermark::Watermark;
use super::{Lifecycle, Pipeline, ReaderThread};
use crate::engine::{PanicHook, SlowHandlerHook};
use crate::store::{
    check_subscriber, EventFilter, EventStore, ParkedEvent, StoreError, Subscription, SubscriptionConfig,
};
use crate::sync::{AtomicBool, Mutex, Ordering};
use crate::{ConfigError, Engine, EngineConfig, PanicReport, SlowHandler};

/// The shortest checkpoint interval: shorter would have the reader poll the store in a loop.
const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(1);

/// The widest window of positions in flight (one flag byte each, allocated at start).
pub(crate) const MAX_WINDOW: usize = 1 << 24;

/// The shortest backoff of a pipeline's engine (a zero one is raised to it).
pub(crate) const MIN_RETRY_BACKOFF: Duration = Duration::from_millis(1);

/// The most attempts one event may be given.
pub(crate) const MAX_ATTEMPTS: u32 = 1 << 16;

/// Settings of a [`Pipeline`]; every default is documented on its method.
pub struct PipelineBuilder<H: StreamHandler> {
    store: Arc<dyn EventStore>,
    subscriber: String,
    handler: H,
    checkpoint_interval: Duration,
    window: usize,
    subscription: SubscriptionConfig,
    engine: EngineConfig,
    max_attempts: u32,
    snapshot_every: u64,
    state_version: u32,
    on_parked: Option<ParkHook>,
    on_panic: Option<PanicHook>,
    on_slow_handler: Option<SlowHandlerHook>,
    drop_deadline: Duration,
    /// The `engine` label and the extra export hooks (feature `metrics`).
    #[cfg(feature = "metrics")]
    export: Option<(String, Vec<crate::engine::ExportHook>)>,
}

/// Why a pipeline did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipelineError {
    /// The subscriber name is invalid, its checkpoint or parked events could not be loaded,
    /// or the store does not support parking ([`StoreError::Unsupported`]).
    Store(StoreError),
    /// The engine's settings are invalid, or its threads could not start.
    Engine(ConfigError),
    /// The reader thread could not be started.
    Spawn(std::io::Error),
    /// The window of positions in flight is larger than supported.
    WindowTooLarge {
        /// The window asked for.
        window: usize,
        /// The widest allowed.
        max: usize,
    },
    /// `max_attempts` is 0 (no event would be handled) or above the bound.
    MaxAttempts {
        /// The value asked for.
        asked: u32,
        /// The largest allowed.
        max: u32,
    },
}

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The cause is the source (see `store/error.rs`, "How humpyard's errors read").
            PipelineError::Store(_) => f.write_str("the pipeline's store failed"),
            PipelineError::Engine(_) => f.write_str("the pipeline's engine could not be built"),
            PipelineError::Spawn(_) => f.write_str("could not start the pipeline's reader thread"),
            PipelineError::WindowTooLarge { window, max } => {
                write!(
                    f,
                    "a window of {window} positions asked for; at most {max} is supported"
                )
            }
            PipelineError::MaxAttempts { asked, max } => {
                write!(f, "max_attempts {asked} asked for; it must be 1 to {max}")
            }
        }
    }
}

impl std::error::Error for PipelineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PipelineError::Store(e) => Some(e),
            PipelineError::Engine(e) => Some(e),
            PipelineError::Spawn(e) => Some(e),
            PipelineError::WindowTooLarge { .. } | PipelineError::MaxAttempts { .. } => None,
        }
    }
}

impl<H: StreamHandler> std::fmt::Debug for PipelineBuilder<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("subscriber", &self.subscriber)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("window", &self.window)
            .field("subscription", &self.subscription)
            .field("engine", &self.engine)
            .field("max_attempts", &self.max_attempts)
            .field("snapshot_every", &self.snapshot_every)
            .finish_non_exhaustive()
    }
}

impl<H: StreamHandler> PipelineBuilder<H> {
    pub(crate) fn new(store: Arc<dyn EventStore>, subscriber: &str, handler: H) -> PipelineBuilder<H> {
        PipelineBuilder {
            store,
            subscriber: subscriber.to_owned(),
            handler,
            checkpoint_interval: Duration::from_secs(1),
            window: 1 << 16,
            subscription: SubscriptionConfig::default(),
            engine: EngineConfig::default(),
            max_attempts: 3,
            snapshot_every: 0,
            state_version: 0,
            on_parked: None,
            on_panic: None,
            on_slow_handler: None,
            drop_deadline: Duration::from_secs(5),
            #[cfg(feature = "metrics")]
            export: None,
        }
    }

    /// How often the checkpoint is saved (when it moved). After a crash, the events handled
    /// again are at most those fully processed in one interval. Default: 1 s; at least 1 ms
    /// (the reader wakes at this cadence to save, and each wake reads the store once).
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.checkpoint_interval = d.max(MIN_CHECKPOINT_INTERVAL);
        self
    }

    /// The most positions in flight (read, not yet known fully processed), rounded up to a
    /// power of two. Reading waits while that many are. Default: 65 536. At most 2^24 (one
    /// byte per position, allocated at start: 16 MiB); more is
    /// [`PipelineError::WindowTooLarge`].
    pub fn window(mut self, n: usize) -> Self {
        self.window = n;
        self
    }

    /// The subscription's settings (batch size, polling, read retries). Default:
    /// [`SubscriptionConfig::default`].
    pub fn subscription(mut self, config: SubscriptionConfig) -> Self {
        self.subscription = config;
        self
    }

    /// Only events `filter` passes are handled (by type, by stream-id prefix); the store
    /// applies it after gap detection, and positions left out count as processed. Default:
    /// every event. Shorthand for the subscription's [`SubscriptionConfig::filter`].
    pub fn filter(mut self, filter: EventFilter) -> Self {
        self.subscription.filter = filter;
        self
    }

    /// The engine's sizes and timings (workers, shards, capacity, idle timeout, entity cap,
    /// retry backoff, at least 1 ms here: a store error is retried after it however often it
    /// repeats). Default: [`EngineConfig::default`], except the shard count when it is not
    /// set: 8 a worker, at least 16 (the engine's own default is 2 a worker). A pipeline's
    /// events wait in their shard for retries, store errors and (in an integration) open
    /// breakers and full bulkheads, and a waiting event holds its whole shard: more shards keep
    /// more streams moving meanwhile, and a pipeline's throughput is bound by the store, not by
    /// the engine's runs.
    pub fn engine(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// Handler calls per event (the first included) before it is parked; a store error while
    /// rebuilding the state or parking is not an attempt. Default: 3; 1 to 65 536.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Saves a snapshot of a stream's state (the handler's
    /// [`encode_state`](StreamHandler::encode_state)) after every `every`th version, tagged
    /// with `state_version`; rebuilding a state then starts from the newest snapshot with that
    /// `state_version` not past the version needed. Give a new `state_version` whenever the
    /// state's shape changes: older snapshots are then never loaded. Default: no snapshots
    /// (`every` 0).
    pub fn snapshot_every(mut self, every: u64, state_version: u32) -> Self {
        self.snapshot_every = every;
        self.state_version = state_version;
        self
    }

    /// Called with every event parked (after its last attempt, or behind an earlier parked
    /// event of its stream), on a worker thread, once it is durably parked. A panic in it is
    /// caught and counted ([`PipelineStats::panics`](super::PipelineStats::panics)). Default:
    /// none (parked events are in the store: [`Pipeline::parked`]).
    pub fn on_parked(mut self, hook: impl Fn(&ParkedEvent) + Send + Sync + 'static) -> Self {
        self.on_parked = Some(Box::new(hook));
        self
    }

    /// The deadline `Drop` gives [`Pipeline::shutdown`]. Default: 5 s.
    pub fn drop_deadline(mut self, d: Duration) -> Self {
        self.drop_deadline = d;
        self
    }

    /// Called with each panic the pipeline's engine catches (as
    /// [`EngineBuilder::on_panic`](crate::EngineBuilder::on_panic)). Default: none (logged and
    /// counted either way).
    pub fn on_panic(mut self, hook: impl Fn(&PanicReport) + Send + Sync + 'static) -> Self {
        self.on_panic = Some(Box::new(hook));
        self
    }

    /// Called once for each handler call that runs past the engine's slow-handler threshold (as
    /// [`EngineBuilder::on_slow_handler`](crate::EngineBuilder::on_slow_handler)). Default: none
    /// (logged either way).
    pub fn on_slow_handler(mut self, hook: impl Fn(&SlowHandler) + Send + Sync + 'static) -> Self {
        self.on_slow_handler = Some(Box::new(hook));
        self
    }

    /// Takes the engine's panic and slow-handler hooks set so far (an integration calls them
    /// beside its observer).
    pub(crate) fn take_engine_hooks(&mut self) -> (Option<PanicHook>, Option<SlowHandlerHook>) {
        (self.on_panic.take(), self.on_slow_handler.take())
    }

    /// Exports this pipeline's [`PipelineStats`](super::PipelineStats) through the [`metrics`]
    /// facade as `humpyard_pipeline_*` counters and gauges labelled `subscriber` (the
    /// pipeline's subscriber name), with the consumer lag (`humpyard_pipeline_lag_events`:
    /// head position minus checkpoint), and its engine's counters as
    /// [`EngineBuilder::export_metrics`](crate::EngineBuilder::export_metrics) does, labelled
    /// `engine = name`. All from the engine's supervisor tick: never a facade call per event.
    #[cfg(feature = "metrics")]
    pub fn export_metrics(mut self, name: &str) -> Self {
        let hooks = self.export.take().map(|(_, hooks)| hooks).unwrap_or_default();
        self.export = Some((name.to_owned(), hooks));
        self
    }

    /// Adds an export hook called on the engine's supervisor tick (an integration's own),
    /// and turns the export on (labelled `engine = name` unless already named).
    #[cfg(feature = "metrics")]
    pub(crate) fn export_with(mut self, name: &str, hook: crate::engine::ExportHook) -> Self {
        self.export
            .get_or_insert_with(|| (name.to_owned(), Vec::new()))
            .1
            .push(hook);
        self
    }

    /// Takes the parked-event hook set so far (an integration calls it beside its observer).
    pub(crate) fn take_on_parked(&mut self) -> Option<ParkHook> {
        self.on_parked.take()
    }

    /// Loads the checkpoint, starts the engine and the reader thread.
    ///
    /// # Errors
    ///
    /// [`PipelineError`] says what failed; nothing is left running.
    pub fn start(self) -> Result<Pipeline<H>, PipelineError> {
        check_subscriber(&self.subscriber).map_err(PipelineError::Store)?;
        if self.window > MAX_WINDOW {
            return Err(PipelineError::WindowTooLarge {
                window: self.window,
                max: MAX_WINDOW,
            });
        }
        let checkpoint = self
            .store
            .load_checkpoint(&self.subscriber)
            .map_err(PipelineError::Store)?
            .unwrap_or(0);
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS {
            return Err(PipelineError::MaxAttempts {
                asked: self.max_attempts,
                max: MAX_ATTEMPTS,
            });
        }
        let parked = parking::load(&*self.store, &self.subscriber).map_err(PipelineError::Store)?;
        let progress = Arc::new(Progress::new(self.window));
        let counters = Arc::new(Counters::default());
        counters.checkpoint.store(checkpoint, Ordering::Relaxed);
        counters.head.store(checkpoint, Ordering::Relaxed);
        let ctx = Arc::new(Context {
            store: self.store.clone(),
            subscriber: self.subscriber.clone(),
            progress: progress.clone(),
            counters: counters.clone(),
            parked,
            on_parked: self.on_parked,
            max_attempts: self.max_attempts,
            snapshot_every: self.snapshot_every,
            state_version: self.state_version,
        });
        let tracked = Tracked {
            inner: self.handler,
            ctx: ctx.clone(),
        };
        // Attempts are counted by `Tracked` (store errors are not attempts), so the engine's
        // own limit is out of reach: it only runs the backoff between tries.
        // A store error is retried after the engine's backoff however often it repeats: never
        // with no pause (a worker would loop on the store, and shutdown would wait for it).
        let mut engine_config = self.engine;
        engine_config.config.retry_backoff = engine_config.config.retry_backoff.max(MIN_RETRY_BACKOFF);
        let workers = engine_config.config.workers;
        engine_config.config.shards = engine_config
            .config
            .shards
            .or_else(|| workers.saturating_mul(8).checked_next_power_of_two().map(|n| n.max(16)));
        let mut engine = Engine::builder(tracked).config(engine_config).max_attempts(u32::MAX);
        if let Some(hook) = self.on_panic {
            engine = engine.on_panic(hook);
        }
        if let Some(hook) = self.on_slow_handler {
            engine = engine.on_slow_handler(hook);
        }
        #[cfg(feature = "metrics")]
        if let Some((name, hooks)) = self.export {
            let export = crate::export::PipelineExport::new(&self.subscriber);
            let store_export = crate::export::StoreExport::new(&self.subscriber);
            let (stats, store) = (counters.clone(), self.store.clone());
            engine = engine.export_metrics(&name).export_with(Box::new(move |_| {
                export.export(&stats.snapshot());
                store_export.export(&store.health());
            }));
            for hook in hooks {
                engine = engine.export_with(hook);
            }
        }
        let engine = engine.start().map_err(PipelineError::Engine)?;
        let engine = Arc::new(engine);
        let watermark = Arc::new(Watermark::new(checkpoint));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            subscription: Subscription::new(self.store.clone(), checkpoint, self.subscription.clone()),
            batch_size: self.subscription.batch_size.max(1),
            store: self.store,
            subscriber: self.subscriber,
            engine: engine.clone(),
            window: Window::new(progress, checkpoint),
            counters: counters.clone(),
            watermark: watermark.clone(),
            stop: stop.clone(),
            checkpoint_interval: self.checkpoint_interval,
            saved: checkpoint,
            next_save: crate::sync::time::Instant::now() + self.checkpoint_interval,
        };
        let reader = match ReaderThread::spawn(reader) {
            Ok(reader) => reader,
            Err(e) => {
                engine.shutdown(Duration::ZERO);
                return Err(PipelineError::Spawn(e));
            }
        };
        Ok(Pipeline {
            engine,
            ctx,
            counters,
            watermark,
            stop,
            lifecycle: Mutex::new(Lifecycle::Running(reader)),
            drop_deadline: self.drop_deadline,
        })
    }
}
