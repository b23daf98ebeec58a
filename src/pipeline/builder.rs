//! [`PipelineBuilder`]: the pipeline's settings, and starting it.

use std::sync::Arc;
use std::time::Duration;

use super::progress::{Progress, Window};
use super::reader::Reader;
use super::stats::Counters;
use super::{Lifecycle, Pipeline, ReaderThread, Tracked};
use crate::store::{check_subscriber, EventStore, RecordedEvent, StoreError, Subscription, SubscriptionConfig};
use crate::sync::{AtomicBool, Mutex, Ordering};
use crate::{ConfigError, DeadLetter, Engine, EngineBuilder, Handler};

/// The shortest checkpoint interval: shorter would have the reader poll the store in a loop.
const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(1);

/// The widest window of positions in flight (one flag byte each, allocated at start).
pub(crate) const MAX_WINDOW: usize = 1 << 24;

type EngineSettings<H> = Box<dyn FnOnce(EngineBuilder<Tracked<H>>) -> EngineBuilder<Tracked<H>>>;
type DeadLetterHook = Box<dyn Fn(DeadLetter<RecordedEvent>) + Send + Sync>;

/// Settings of a [`Pipeline`]; every default is documented on its method.
pub struct PipelineBuilder<H: Handler<Payload = RecordedEvent>> {
    store: Arc<dyn EventStore>,
    subscriber: String,
    handler: H,
    checkpoint_interval: Duration,
    window: usize,
    subscription: SubscriptionConfig,
    engine: Option<EngineSettings<H>>,
    dead_letter: Option<DeadLetterHook>,
    drop_deadline: Duration,
}

/// Why a pipeline did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipelineError {
    /// The subscriber name is invalid, or its checkpoint could not be loaded.
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
}

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipelineError::Store(e) => write!(f, "the pipeline's store: {e}"),
            PipelineError::Engine(e) => write!(f, "the pipeline's engine: {e}"),
            PipelineError::Spawn(e) => write!(f, "the pipeline's reader thread: {e}"),
            PipelineError::WindowTooLarge { window, max } => {
                write!(
                    f,
                    "a window of {window} positions asked for; at most {max} is supported"
                )
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
            PipelineError::WindowTooLarge { .. } => None,
        }
    }
}

impl<H: Handler<Payload = RecordedEvent>> std::fmt::Debug for PipelineBuilder<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("subscriber", &self.subscriber)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("window", &self.window)
            .field("subscription", &self.subscription)
            .finish_non_exhaustive()
    }
}

impl<H: Handler<Payload = RecordedEvent>> PipelineBuilder<H> {
    pub(crate) fn new(store: Arc<dyn EventStore>, subscriber: &str, handler: H) -> PipelineBuilder<H> {
        PipelineBuilder {
            store,
            subscriber: subscriber.to_owned(),
            handler,
            checkpoint_interval: Duration::from_secs(1),
            window: 1 << 16,
            subscription: SubscriptionConfig::default(),
            engine: None,
            dead_letter: None,
            drop_deadline: Duration::from_secs(5),
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

    /// Settings for the engine (workers, shards, attempts, ...), applied to its builder. Its
    /// dead-letter hook is the pipeline's: set yours with [`on_dead_letter`](Self::on_dead_letter).
    /// Default: the engine's defaults.
    pub fn engine(
        mut self,
        settings: impl FnOnce(EngineBuilder<Tracked<H>>) -> EngineBuilder<Tracked<H>> + 'static,
    ) -> Self {
        self.engine = Some(Box::new(settings));
        self
    }

    /// Called with every dead letter, on a worker thread, before its position is marked fully
    /// processed: once the hook returns (or panics), the checkpoint may pass it. Default: none
    /// (dead letters are counted in the stats).
    pub fn on_dead_letter(mut self, hook: impl Fn(DeadLetter<RecordedEvent>) + Send + Sync + 'static) -> Self {
        self.dead_letter = Some(Box::new(hook));
        self
    }

    /// The deadline `Drop` gives [`Pipeline::shutdown`]. Default: 5 s.
    pub fn drop_deadline(mut self, d: Duration) -> Self {
        self.drop_deadline = d;
        self
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
        let progress = Arc::new(Progress::new(self.window));
        let counters = Arc::new(Counters::default());
        counters.checkpoint.store(checkpoint, Ordering::Relaxed);
        let mut builder = Engine::builder(Tracked::new(self.handler, progress.clone(), counters.clone()));
        if let Some(settings) = self.engine {
            builder = settings(builder);
        }
        let (for_hook, counters_for_hook, user_hook) = (progress.clone(), counters.clone(), self.dead_letter);
        builder = builder.on_dead_letter(move |letter: DeadLetter<RecordedEvent>| {
            // The user's hook first, then the mark: a checkpoint saved in between would pass a
            // dead letter that a crash then loses before anyone heard of it. A panic in the
            // hook still marks it (it is reported as the engine reports any hook's panic), or
            // the checkpoint would stop there for good.
            let position = letter.event.payload().position;
            counters_for_hook.dead_lettered.fetch_add(1, Ordering::Relaxed);
            let outcome = match &user_hook {
                Some(hook) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(letter))),
                None => Ok(()),
            };
            for_hook.done(position);
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        });
        let engine = Arc::new(builder.start().map_err(PipelineError::Engine)?);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            subscription: Subscription::new(self.store.clone(), checkpoint, self.subscription.clone()),
            batch_size: self.subscription.batch_size.max(1),
            store: self.store,
            subscriber: self.subscriber,
            engine: engine.clone(),
            window: Window::new(progress, checkpoint),
            counters: counters.clone(),
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
            counters,
            stop,
            lifecycle: Mutex::new(Lifecycle::Running(reader)),
            drop_deadline: self.drop_deadline,
        })
    }
}
