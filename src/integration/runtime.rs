//! [`Integration`]: a pipeline whose reactions become commands ([`Outbound`]), the routes that
//! perform them, the inbound sources that feed the same routes, and the observer, started and
//! stopped together.
//!
//! Shutdown order: the sources stop first (nothing new is appended by them), then the pipeline
//! drains and saves its checkpoint, then the completions the store refused after their effects
//! ran are stored (no effect runs any more, so these are all of them); the report says what
//! each source was doing and which completions, if any, the store never took.
//!
//! Every user value an integration holds (reactor, command handlers, observer, sources, hooks)
//! is dropped contained, on whichever thread drops it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex as PlMutex;

use super::observer::{Hooks, Observed, Observer};
use super::outbound::{Outbound, Reactor};
use super::routes::{RouteStats, Router, Routes};
use super::source::{self, Source, SourceContext, SourceReport, SourceThread, Stop};
use super::stats::{IntegrationCounters, IntegrationStats};
use super::RouteName;
use crate::pipeline::{contain, Disposing, Pipeline, PipelineBuilder, PipelineError, PipelineReport};
use crate::resilience::Backoff;
use crate::store::{EventStore, IdempotencyKey, StoreError};
use crate::sync::{Mutex, Ordering};
use crate::StreamId;

type Configure<R> = Box<dyn FnOnce(PipelineBuilder<Outbound<R>>) -> PipelineBuilder<Outbound<R>>>;

/// Settings of an [`Integration`]; every default is documented on its method.
///
/// Every user value it holds (the reactor, handlers, observer, sources, hooks) is dropped
/// contained, wherever it is dropped: a panicking `Drop` is logged and goes no further.
pub struct IntegrationBuilder<R: Reactor> {
    store: Arc<dyn EventStore>,
    subscriber: String,
    reactor: Disposing<R>,
    routes: Routes,
    observer: Option<Disposing<Box<dyn Observer>>>,
    sources: Vec<(String, Disposing<Box<dyn Source>>)>,
    source_restart: Backoff,
    source_attempts: u32,
    source_retry: Backoff,
    configure: Option<Disposing<Configure<R>>>,
    /// The `engine` label of the metrics export (feature `metrics`).
    #[cfg(feature = "metrics")]
    export: Option<String>,
}

/// Why an integration did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum IntegrationError {
    /// The subscriber name breaks a rule of [`StreamId`].
    Subscriber(StoreError),
    /// Two sources have this name.
    DuplicateSource(String),
    /// A source's name is empty or holds a NUL character (it names the source's thread).
    InvalidSourceName(String),
    /// The pipeline did not start.
    Pipeline(PipelineError),
    /// A source's thread could not be started.
    Spawn(std::io::Error),
}

impl fmt::Display for IntegrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The cause is the source (see `store/error.rs`, "How humpyard's errors read").
            IntegrationError::Subscriber(_) => f.write_str("the integration's subscriber was refused"),
            IntegrationError::DuplicateSource(name) => write!(f, "two sources are named {name:?}"),
            IntegrationError::InvalidSourceName(name) => {
                write!(f, "source name {name:?} is empty or holds a NUL character")
            }
            IntegrationError::Pipeline(_) => f.write_str("the integration's pipeline did not start"),
            IntegrationError::Spawn(_) => f.write_str("could not start a source's thread"),
        }
    }
}

impl std::error::Error for IntegrationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IntegrationError::Subscriber(e) => Some(e),
            IntegrationError::Pipeline(e) => Some(e),
            IntegrationError::Spawn(e) => Some(e),
            IntegrationError::DuplicateSource(_) | IntegrationError::InvalidSourceName(_) => None,
        }
    }
}

impl<R: Reactor> IntegrationBuilder<R> {
    /// The observer that hears of every [`Observed`] event. Default: none (everything is still
    /// counted and logged).
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Some(Disposing::new(Box::new(observer)));
        self
    }

    /// Adds an inbound source, run on its own thread under supervision. Names must differ, and
    /// be neither empty nor hold a NUL character (checked by [`start`](Self::start)).
    pub fn source(mut self, name: &str, source: impl Source) -> Self {
        self.sources.push((name.to_owned(), Disposing::new(Box::new(source))));
        self
    }

    /// The backoff before a failed source is restarted. Default 1 s doubling to 60 s, with
    /// jitter.
    pub fn source_restart(mut self, backoff: Backoff) -> Self {
        self.source_restart = backoff;
        self
    }

    /// How an inbound command is retried: `attempts` failed attempts before it is handed back
    /// to its source (at least 1), with `backoff` between tries (and between waits for an open
    /// breaker). Default 3 attempts, 10 ms doubling to 1 s.
    pub fn source_retries(mut self, attempts: u32, backoff: Backoff) -> Self {
        self.source_attempts = attempts.max(1);
        self.source_retry = backoff;
        self
    }

    /// Sets the pipeline's own settings (attempts, backoff, checkpoint interval, ...): `f` gets
    /// the pipeline's builder and returns it. A parked-event hook set there is called before
    /// the observer hears of the dead letter.
    pub fn pipeline(
        mut self,
        f: impl FnOnce(PipelineBuilder<Outbound<R>>) -> PipelineBuilder<Outbound<R>> + 'static,
    ) -> Self {
        self.configure = Some(Disposing::new(Box::new(f)));
        self
    }

    /// Exports this integration's [`IntegrationStats`] through the [`metrics`] facade as
    /// `humpyard_integration_*` counters labelled `subscriber`, each route's breaker and
    /// bulkhead as `humpyard_route_*` labelled `subscriber` and `route`, and its pipeline's and
    /// engine's as [`PipelineBuilder::export_metrics`] does (`engine = name`). All from the
    /// engine's supervisor tick: never a facade call per event.
    #[cfg(feature = "metrics")]
    pub fn export_metrics(mut self, name: &str) -> Self {
        self.export = Some(name.to_owned());
        self
    }

    /// Starts the pipeline, then the sources.
    ///
    /// # Errors
    ///
    /// [`IntegrationError`] says what did not start; nothing is left running.
    pub fn start(self) -> Result<Integration<R>, IntegrationError> {
        crate::store::check_subscriber(&self.subscriber).map_err(IntegrationError::Subscriber)?;
        let subscriber = StreamId::new(&self.subscriber).expect("checked above");
        for (i, (name, _)) in self.sources.iter().enumerate() {
            if name.is_empty() || name.contains('\0') {
                return Err(IntegrationError::InvalidSourceName(name.clone()));
            }
            if self.sources[..i].iter().any(|(other, _)| other == name) {
                return Err(IntegrationError::DuplicateSource(name.clone()));
            }
        }
        let hooks = Arc::new(Hooks::new(self.observer.map(Disposing::into_inner)));
        let counters = Arc::new(IntegrationCounters::default());
        let router = Arc::new(Router::new(
            self.routes,
            Arc::clone(&self.store),
            Arc::clone(&hooks),
            Arc::clone(&counters),
        ));
        let outbound = Outbound::new(self.reactor.into_inner(), Arc::clone(&router), subscriber);
        let mut builder = Pipeline::builder(Arc::clone(&self.store), &self.subscriber, outbound);
        if let Some(configure) = self.configure {
            builder = (configure.into_inner())(builder);
        }
        // The user's own hooks run first, each contained: a panic there is counted and does
        // not keep the observer from hearing of the event.
        let (own_panic, own_slow) = builder.take_engine_hooks();
        let (own_panic, own_slow) = (own_panic.map(Disposing::new), own_slow.map(Disposing::new));
        let panics = Arc::clone(&hooks);
        builder = builder.on_panic(move |report| {
            if let Some(own) = &own_panic {
                if let Err(message) = contain(|| own(report)) {
                    panics.hook_panicked("the pipeline's on_panic", &message);
                }
            }
            panics.emit(&Observed::Panic { report });
        });
        let slow = Arc::clone(&hooks);
        builder = builder.on_slow_handler(move |report| {
            if let Some(own) = &own_slow {
                if let Err(message) = contain(|| own(report)) {
                    slow.hook_panicked("the pipeline's on_slow_handler", &message);
                }
            }
            slow.emit(&Observed::SlowHandler { report });
        });
        #[cfg(feature = "metrics")]
        if let Some(name) = &self.export {
            let export = crate::export::IntegrationExport::new(&self.subscriber);
            let (router, counters, hooks) = (Arc::clone(&router), Arc::clone(&counters), Arc::clone(&hooks));
            builder = builder.export_metrics(name).export_with(
                name,
                Box::new(move |_| {
                    let stats = counters.snapshot(
                        hooks.panics.load(Ordering::Relaxed),
                        hooks.hook_panics.load(Ordering::Relaxed),
                    );
                    export.export(&stats, &router.all_route_stats());
                }),
            );
        }
        let own = builder.take_on_parked().map(Disposing::new);
        let dead_letters = Arc::clone(&hooks);
        builder = builder.on_parked(move |parked| {
            if let Some(own) = &own {
                if let Err(message) = contain(|| own(parked)) {
                    dead_letters.hook_panicked("the pipeline's on_parked", &message);
                }
            }
            dead_letters.emit(&Observed::DeadLetter { parked });
        });
        let pipeline = builder.start().map_err(IntegrationError::Pipeline)?;
        let mut threads = Vec::with_capacity(self.sources.len());
        for (name, source) in self.sources {
            let shared = Arc::new(PlMutex::new(SourceReport::starting(&name)));
            let ctx = SourceContext {
                name,
                router: Arc::clone(&router),
                stop: Arc::new(Stop::default()),
                shared,
                max_attempts: self.source_attempts,
                backoff: self.source_retry,
            };
            let longest = self.source_restart.delay(u32::MAX);
            let thread = std::thread::Builder::new().name(format!("humpyard-source-{}", ctx.name));
            match source::spawn(source, ctx, self.source_restart, longest, thread) {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    stop_sources(&mut threads, Duration::from_secs(5));
                    pipeline.shutdown(Duration::from_secs(5));
                    // Effects may have run meanwhile: their refused completions are stored
                    // (or logged) as at shutdown.
                    router.flush_pending(Instant::now().checked_add(Duration::from_secs(5)));
                    return Err(IntegrationError::Spawn(e));
                }
            }
        }
        Ok(Integration {
            pipeline,
            router,
            hooks,
            counters,
            sources: Mutex::new(threads),
        })
    }
}

impl<R: Reactor> fmt::Debug for IntegrationBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntegrationBuilder")
            .field("subscriber", &self.subscriber)
            .field("routes", &self.routes)
            .field("sources", &self.sources.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A running integration. See the [module docs](super).
pub struct Integration<R: Reactor> {
    pipeline: Pipeline<Outbound<R>>,
    router: Arc<Router>,
    hooks: Arc<Hooks>,
    counters: Arc<IntegrationCounters>,
    sources: Mutex<Vec<SourceThread>>,
}

/// What [`Integration::shutdown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntegrationReport {
    /// Each source, stopped first.
    pub sources: Vec<SourceReport>,
    /// The pipeline, stopped next.
    pub pipeline: PipelineReport,
    /// The counters at the end.
    pub stats: IntegrationStats,
    /// Effects that ran but whose completion the store refused, and still refused when
    /// shutdown tried again (once the pipeline had stopped, until the deadline). Each key's
    /// claim expires after its route's `claim_ttl`; a replay of its event after that would
    /// run the effect again. Empty unless the store failed through the shutdown.
    pub unsaved_completions: Vec<IdempotencyKey>,
}

impl<R: Reactor> Integration<R> {
    /// An integration reacting to `store`'s events as `subscriber` (a name with the
    /// [`StreamId`] rules) with `reactor`, whose commands go to `routes`.
    pub fn builder(store: Arc<dyn EventStore>, subscriber: &str, reactor: R, routes: Routes) -> IntegrationBuilder<R> {
        IntegrationBuilder {
            store,
            subscriber: subscriber.to_owned(),
            reactor: Disposing::new(reactor),
            routes,
            observer: None,
            sources: Vec::new(),
            source_restart: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            source_attempts: 3,
            source_retry: Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
            configure: None,
            #[cfg(feature = "metrics")]
            export: None,
        }
    }

    /// The pipeline (its watermark, parked events, replays, stats).
    pub fn pipeline(&self) -> &Pipeline<Outbound<R>> {
        &self.pipeline
    }

    /// A snapshot of the integration's counters.
    pub fn stats(&self) -> IntegrationStats {
        self.counters.snapshot(
            self.hooks.panics.load(Ordering::Relaxed),
            self.hooks.hook_panics.load(Ordering::Relaxed),
        )
    }

    /// A route's breaker and bulkhead now; `None` for an unknown route.
    pub fn route_stats(&self, route: &RouteName) -> Option<RouteStats> {
        self.router.route_stats(route)
    }

    /// Each source now.
    pub fn sources(&self) -> Vec<SourceReport> {
        self.sources.lock().iter().map(|s| s.shared.lock().clone()).collect()
    }

    /// Stops the sources (each asked at once, then waited for until `deadline`), then shuts
    /// the pipeline down with what is left of `deadline` (at least a tenth of it), then stores
    /// the completions the store refused earlier (effects that ran), trying again until what
    /// is left of `deadline` (at least a tenth of it) has passed; called from one of the
    /// engine's own threads (a reaction, a hook), it tries once and does not wait. A later
    /// call returns the pipeline's first report and the sources as they ended, and tries the
    /// completions still unsaved again.
    pub fn shutdown(&self, deadline: Duration) -> IntegrationReport {
        let started = Instant::now();
        let left = |started: Instant| deadline.saturating_sub(started.elapsed()).max(deadline / 10);
        let sources = {
            let mut threads = self.sources.lock();
            stop_sources(&mut threads, deadline);
            threads.iter().map(|s| s.shared.lock().clone()).collect()
        };
        let pipeline = self.pipeline.shutdown(left(started));
        // The workers and sources have stopped (unless one outlived the deadline, or this is
        // an engine thread, whose shutdown does not wait): the pending completions are all.
        let until = if crate::engine::on_some_engine_thread() {
            Some(Instant::now())
        } else {
            Instant::now().checked_add(left(started))
        };
        let unsaved_completions = self.router.flush_pending(until);
        IntegrationReport {
            sources,
            pipeline,
            stats: self.stats(),
            unsaved_completions,
        }
    }
}

/// Asks every source to stop, then waits for each until `deadline` has passed.
fn stop_sources(threads: &mut [SourceThread], deadline: Duration) {
    let until = Instant::now().checked_add(deadline);
    for thread in threads.iter() {
        thread.stop.stop();
    }
    for thread in threads.iter_mut() {
        let Some(handle) = thread.thread.take() else { continue };
        let left = until.map_or(Duration::MAX, |until| until.saturating_duration_since(Instant::now()));
        match thread.finished.recv_timeout(left) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = handle.join();
                thread.shared.lock().joined = true;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let name = thread.shared.lock().name.clone();
                log::warn!(
                    source = name.as_str();
                    "humpyard integration: source {:?} did not stop by the deadline; left to end on its own",
                    name.as_str()
                );
            }
        }
    }
}

impl<R: Reactor> Drop for Integration<R> {
    /// Shuts down as [`Integration::shutdown`] with the pipeline's
    /// [`drop_deadline`](PipelineBuilder::drop_deadline) (5 s by default), if it was not shut
    /// down.
    fn drop(&mut self) {
        self.shutdown(self.pipeline.drop_deadline());
    }
}

impl<R: Reactor> fmt::Debug for Integration<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Integration")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
