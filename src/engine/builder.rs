//! [`EngineBuilder`]: settings, hooks, and starting the threads.

use std::fmt;
use std::time::Duration;

use super::config::{Config, ConfigError};
use super::dead_letter::{DeadLetter, DeadLetterHook};
use super::hooks::{PanicHook, PanicReport, Removal, RemovalHook, SlowHandler, SlowHandlerHook};
use crate::KeyedHandler;

/// Configures and starts an [`Engine`](crate::Engine). Made by
/// [`Engine::builder`](crate::Engine::builder); [`start`](Self::start) is with the engine (in
/// `engine/mod.rs`), where the threads are started.
///
/// # Sizing: shards, workers, capacity
///
/// - **Workers** are OS threads that run handlers. More workers than cores only helps when
///   handlers block (I/O); for CPU-bound handlers use the core count (the default).
/// - **Shards** are the unit of ordering and of parallelism: a shard's events run on one
///   worker at a time, and every stream belongs to one shard. Several shards per worker let a
///   worker move on when a shard is slow, waits for a retry, or is hot, and spread load more
///   evenly; each shard costs a ring (`shard_capacity` slots of one event each) and a table.
///   Too few shards and one hot stream's shard-mates wait behind it; too many and memory and
///   scheduling overhead grow: each run of a shard pays for its scheduling and for the first
///   touches of its ring and table, so a busy engine runs fastest with few shards whose runs
///   are long. The default is 2 shards per worker, a power of two.
/// - **Capacity** bounds what waits per shard. A full shard rejects at once
///   ([`SubmitError::Full`](crate::SubmitError::Full), the event handed back): that is the
///   backpressure signal. Larger rings absorb longer bursts at the cost of memory and of
///   queueing latency (`capacity / per-shard throughput`); the total buffered is
///   `shards * shard_capacity` events.
///
/// # Backpressure
///
/// [`Engine::try_submit`](crate::Engine::try_submit) never blocks.
/// [`Engine::submit_timeout`](crate::Engine::submit_timeout) parks the producer until the shard
/// has room, with one wake-up from the worker that frees it, or until the timeout. No submit
/// ever retries in a loop, spins, or drops an event silently; every rejection is counted.
pub struct EngineBuilder<H: KeyedHandler> {
    handler: H,
    config: Config,
    hooks: HooksOf<H>,
}

impl<H: KeyedHandler> fmt::Debug for EngineBuilder<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("config", &self.config)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl<H: KeyedHandler> EngineBuilder<H> {
    pub(crate) fn new(handler: H) -> EngineBuilder<H> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        EngineBuilder {
            handler,
            config: Config::defaults(cores),
            hooks: Hooks::default(),
        }
    }

    /// Worker threads. Default: the number of available cores. Must be 1 to 1 024. Each is an
    /// OS thread with the platform's default stack, and adds a lane of `ceil(shards / workers)
    /// + workers` slots (16 bytes each) to the run queue.
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// Shards (ingress rings and entity tables). Default: `2 * workers` (the worker count set,
    /// whenever it is set) rounded up to a power of two. More shards isolate a slow stream from more of the others (it stalls only its own
    /// shard) and let skewed load spread over more workers; fewer make each run of a shard
    /// longer, which is what a busy engine's throughput depends on (each run pays for the
    /// shard's scheduling and the first touches of its ring and entity table). Must be 1 to
    /// 65 536, and `shards * shard_capacity` at most 2^26
    /// (see [`shard_capacity`](Self::shard_capacity)).
    pub fn shards(mut self, n: usize) -> Self {
        self.config.shards = Some(n);
        self
    }

    /// The most events waiting in one shard's ring (the event a worker is handling does not
    /// count). Default: 32 768 events a worker spread over the shards, rounded up to a power of
    /// two and kept within 1024 to 16 384: 16 384 with the default shard count, 1024 for 2
    /// workers and 64 shards. Must be 1 to 2^24 (16 777 216), and `shards * shard_capacity`,
    /// the events all rings hold, at most 2^26 (67 108 864). A power of two indexes slightly
    /// faster.
    ///
    /// The rings are allocated when the engine starts: each slot takes
    /// `8 + size_of::<Event<Payload, Key>>()` bytes (48 for a `u64` payload and a `StreamId`,
    /// 24 with a `u64` key), so the default 4 shards of 16 384 for 2 workers take 3 MiB, and
    /// the largest total, 2^26 slots, 3 GiB with a `u64`
    /// payload (more with a larger one). An allocation that fails is
    /// [`ConfigError::OutOfMemory`], not an abort.
    pub fn shard_capacity(mut self, n: usize) -> Self {
        self.config.shard_capacity = Some(n);
        self
    }

    /// How long an entity may go without events before it is reaped (`cleanup` runs). Default:
    /// 60 s. Must be longer than zero. Reaping happens even if no new event arrives.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d;
        self
    }

    /// The most live entities across the engine; making one more evicts the least recently
    /// used entity of the same shard. Shards race, so each may overshoot by one: at most
    /// `n + shards` are live at any instant. Default: 1 000 000. Must be 1 to 2^31. Nothing is
    /// allocated up front: each live entity costs its id, its state and about 27 bytes of
    /// table (`humpyard-perf entities`), so the cap bounds that memory.
    pub fn max_entities(mut self, n: u64) -> Self {
        self.config.max_entities = n;
        self
    }

    /// Handler calls per event, the first included (`1` = no retry); then the event is
    /// dead-lettered. Default: 3. Must be at least 1.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = n;
        self
    }

    /// The delay before the first retry; each further retry doubles it, up to
    /// [`retry_backoff_max`](Self::retry_backoff_max), and half of each delay is random jitter
    /// (a [`Backoff`](crate::resilience::Backoff) per shard, each with a seed of its own).
    /// While an event waits, its shard takes no other event (keeping its stream's order) but the
    /// worker runs other shards. Default: 10 ms. Zero retries at once.
    pub fn retry_backoff(mut self, d: Duration) -> Self {
        self.config.retry_backoff = d;
        self
    }

    /// The cap on the retry delay. Default: 1 s. Must not be below `retry_backoff`.
    pub fn retry_backoff_max(mut self, d: Duration) -> Self {
        self.config.retry_backoff_max = d;
        self
    }

    /// A handler call running longer than this is reported once (metric `slow_handlers`, the
    /// log, and [`on_slow_handler`](Self::on_slow_handler)); it stalls only its own shard.
    /// Detection is by the supervisor's tick, so a report may come up to one tick late.
    /// Default: 1 s. Must be longer than zero.
    pub fn slow_handler_threshold(mut self, d: Duration) -> Self {
        self.config.slow_handler_threshold = d;
        self
    }

    /// Times every `handle` call and keeps a histogram of the durations per shard, read as
    /// [`Metrics::handler_durations`](crate::Metrics::handler_durations) and exported as
    /// `humpyard_handler_duration_seconds` with feature `metrics`. Default: off, and then the
    /// engine reads no clock per event. On, each call costs two reads of the monotonic clock
    /// and two counter updates on the shard's own cache lines (no read-modify-write; the bench
    /// `engine/timed-handler` measures it beside `engine/trivial-handler`). A call that panics
    /// is timed until the engine has caught and reported the panic.
    pub fn time_handlers(mut self, on: bool) -> Self {
        self.config.time_handlers = on;
        self
    }

    /// The drain deadline dropping the engine uses (see
    /// [`Engine::shutdown`](crate::Engine::shutdown)). Default: 5 s.
    pub fn drop_deadline(mut self, d: Duration) -> Self {
        self.config.drop_deadline = d;
        self
    }

    /// How many dead letters the default sink keeps when no
    /// [`on_dead_letter`](Self::on_dead_letter) hook is set; the oldest is dropped and counted
    /// (`dead_letters_discarded`) when it is full. Default: 1024. At most 2^20 (1 048 576);
    /// the buffer grows as letters arrive, each holding its event and its failure's text.
    pub fn dead_letter_buffer(mut self, n: usize) -> Self {
        self.config.dead_letter_buffer = n;
        self
    }

    /// Keeps the panics this engine contains off stderr. Default: off, and then nothing global
    /// is installed.
    ///
    /// Rust's panic hook runs where a panic starts, before the engine catches it, so by default
    /// every contained panic (in `init`, `handle`, `cleanup`, a hook, or the `Display` or
    /// `Drop` of a user value) also prints its message, and with `RUST_BACKTRACE` a backtrace,
    /// to stderr: one report per failed attempt. The engine reports each one already: a log
    /// line (at `error`, naming the stream and the panic's message), the
    /// [`panics`](crate::Metrics::panics) counter and [`on_panic`](Self::on_panic).
    ///
    /// With `true`, starting the engine installs, once per process, a panic hook that wraps
    /// the hook in place at that moment (`std::panic::take_hook`, then `set_hook`): it prints
    /// nothing for a panic raised inside a call this engine contains, and passes every other
    /// panic to the previous hook. Panics of other engines without the option, of your own
    /// threads and of the engine's own code (a bug) print as before. The hook stays installed
    /// after the engine ends; it is silent only while a quiet engine's contained call runs.
    ///
    /// If you set a panic hook of your own:
    /// - set it **before** starting the engine: the engine's hook wraps it and calls it for
    ///   every panic the engine does not contain;
    /// - or, if you set it later, chain to the hook you replace (`let previous =
    ///   std::panic::take_hook();` and call `previous(info)` from yours for the panics you do
    ///   not handle yourself), or contained panics print again through yours.
    ///
    /// ```
    /// # use humpyard::{Engine, Event, Handler, StreamId};
    /// # struct Orders;
    /// # impl Handler for Orders {
    /// #     type Payload = u32;
    /// #     type State = u32;
    /// #     type Error = String;
    /// #     fn init(&self, _: &StreamId) -> Result<u32, String> { Ok(0) }
    /// #     fn handle(&self, _: &mut u32, _: &Event<u32>) -> Result<(), String> { Ok(()) }
    /// # }
    /// // Your own hook first...
    /// std::panic::set_hook(Box::new(|info| eprintln!("my app: {info}")));
    /// // ...then the engine's, in front of it: contained panics print nothing, others go to yours.
    /// let engine = Engine::builder(Orders).quiet_panics(true).start()?;
    /// # engine.shutdown(std::time::Duration::from_secs(1));
    /// # Ok::<(), humpyard::ConfigError>(())
    /// ```
    pub fn quiet_panics(mut self, on: bool) -> Self {
        self.config.quiet_panics = on;
        self
    }

    /// Called with every dead letter, on the worker thread. Without it dead letters go to the
    /// engine's buffer ([`Engine::take_dead_letters`](crate::Engine::take_dead_letters)). A
    /// panic in the hook is caught and counted.
    pub fn on_dead_letter(mut self, hook: impl Fn(DeadLetter<H::Payload, H::Key>) + Send + Sync + 'static) -> Self {
        self.hooks.dead_letter = Some(Box::new(hook));
        self
    }

    /// Called with every caught panic (in `init`, `handle`, `cleanup` or a hook).
    pub fn on_panic(mut self, hook: impl Fn(&PanicReport<H::Key>) + Send + Sync + 'static) -> Self {
        self.hooks.panic = Some(Box::new(hook));
        self
    }

    /// Called once per handler call that runs past the slow-handler threshold.
    pub fn on_slow_handler(mut self, hook: impl Fn(&SlowHandler) + Send + Sync + 'static) -> Self {
        self.hooks.slow_handler = Some(Box::new(hook));
        self
    }

    /// Called after every `cleanup`, with the reason the entity was removed.
    pub fn on_entity_removed(mut self, hook: impl Fn(&H::Key, Removal) + Send + Sync + 'static) -> Self {
        self.hooks.entity_removed = Some(Box::new(hook));
        self
    }

    /// Exports this engine's [`Metrics`](crate::Metrics) through the [`metrics`] facade as
    /// `humpyard_*` counters and gauges labelled `engine = name` (per-shard queue depths also
    /// `shard`), from the supervisor thread on every tick: never a facade call per event. The
    /// names are listed in the README's "Metrics" section. Install a recorder (the
    /// application's choice; humpyard installs none) before starting the engine.
    #[cfg(feature = "metrics")]
    pub fn export_metrics(mut self, name: &str) -> Self {
        let export = crate::export::EngineExport::new(name);
        self.hooks.export.push(Box::new(move |m| export.export(m)));
        self
    }

    /// Calls `hook` on every supervisor tick with the engine's counters (a pipeline's or an
    /// integration's own export).
    #[cfg(feature = "metrics")]
    pub(crate) fn export_with(mut self, hook: super::hooks::ExportHook) -> Self {
        self.hooks.export.push(hook);
        self
    }

    /// Takes every size and timing of `config` ([`EngineConfig`](crate::EngineConfig)), and its
    /// [`quiet_panics`](Self::quiet_panics) and [`time_handlers`](Self::time_handlers), replacing
    /// those set before; `max_attempts` and
    /// the hooks stay as they are.
    pub fn config(mut self, config: super::settings::EngineConfig) -> Self {
        let (attempts, supervisor) = (self.config.max_attempts, self.config.supervisor);
        self.config = config.config;
        self.config.max_attempts = attempts;
        self.config.supervisor = supervisor;
        self
    }

    /// Model checking only: start no supervisor thread (no retry timers, time-driven reaping,
    /// slow-handler reports or worker replacement), to keep a loom model's state space small.
    #[cfg(humpyard_loom)]
    #[doc(hidden)]
    pub fn without_supervisor(mut self) -> Self {
        self.config.supervisor = false;
        self
    }

    /// The handler, the validated settings and the hooks, for [`start`](Self::start).
    pub(crate) fn into_parts(self) -> Result<(H, Config, HooksOf<H>), ConfigError> {
        self.config.validate()?;
        Ok((self.handler, self.config, self.hooks))
    }
}

/// The hooks of an engine running `H`.
pub(crate) type HooksOf<H> = Hooks<<H as KeyedHandler>::Payload, <H as KeyedHandler>::Key>;

/// The hooks the builder was given.
pub(crate) struct Hooks<P, K> {
    pub(crate) dead_letter: Option<DeadLetterHook<P, K>>,
    pub(crate) panic: Option<PanicHook<K>>,
    pub(crate) slow_handler: Option<SlowHandlerHook>,
    pub(crate) entity_removed: Option<RemovalHook<K>>,
    #[cfg(feature = "metrics")]
    pub(crate) export: Vec<super::hooks::ExportHook>,
}

impl<P, K> Default for Hooks<P, K> {
    fn default() -> Self {
        Hooks {
            dead_letter: None,
            panic: None,
            slow_handler: None,
            entity_removed: None,
            #[cfg(feature = "metrics")]
            export: Vec::new(),
        }
    }
}

impl<P, K> Hooks<P, K> {
    /// How many export hooks are set (none without feature `metrics`).
    fn export_count(&self) -> usize {
        #[cfg(feature = "metrics")]
        return self.export.len();
        #[cfg(not(feature = "metrics"))]
        0
    }
}

impl<P, K> fmt::Debug for Hooks<P, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("dead_letter", &self.dead_letter.is_some())
            .field("panic", &self.panic.is_some())
            .field("slow_handler", &self.slow_handler.is_some())
            .field("entity_removed", &self.entity_removed.is_some())
            .field("export", &self.export_count())
            .finish()
    }
}
