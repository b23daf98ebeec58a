//! [`Integration`]: a pipeline whose reactions become commands ([`Outbound`]), the routes that
//! perform them, the inbound sources that feed the same routes, and the observer, started and
//! stopped together.
//!
//! Shutdown order: the sources stop first (nothing new is appended by them), then the pipeline
//! drains and saves its checkpoint; the report says what each source was doing.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex as PlMutex;

use super::observer::{Hooks, Observed, Observer};
use super::outbound::{Outbound, Reactor};
use super::routes::{RouteStats, Router, Routes};
use super::source::{self, Source, SourceContext, SourceReport, SourceState, SourceThread, Stop};
use super::stats::{IntegrationCounters, IntegrationStats};
use super::RouteName;
use crate::pipeline::{Pipeline, PipelineBuilder, PipelineError, PipelineReport};
use crate::resilience::Backoff;
use crate::store::{EventStore, StoreError};
use crate::sync::{Mutex, Ordering};
use crate::StreamId;

type Configure<R> = Box<dyn FnOnce(PipelineBuilder<Outbound<R>>) -> PipelineBuilder<Outbound<R>>>;

/// Settings of an [`Integration`]; every default is documented on its method.
pub struct IntegrationBuilder<R: Reactor> {
    store: Arc<dyn EventStore>,
    subscriber: String,
    reactor: R,
    routes: Routes,
    observer: Option<Box<dyn Observer>>,
    sources: Vec<(String, Box<dyn Source>)>,
    source_restart: Backoff,
    source_attempts: u32,
    source_retry: Backoff,
    configure: Option<Configure<R>>,
}

/// Why an integration did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum IntegrationError {
    /// The subscriber name breaks a rule of [`StreamId`].
    Subscriber(StoreError),
    /// Two sources have this name.
    DuplicateSource(String),
    /// The pipeline did not start.
    Pipeline(PipelineError),
    /// A source's thread could not be started.
    Spawn(std::io::Error),
}

impl fmt::Display for IntegrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntegrationError::Subscriber(e) => write!(f, "the integration's subscriber: {e}"),
            IntegrationError::DuplicateSource(name) => write!(f, "two sources are named {name:?}"),
            IntegrationError::Pipeline(e) => write!(f, "the integration's pipeline: {e}"),
            IntegrationError::Spawn(e) => write!(f, "a source's thread: {e}"),
        }
    }
}

impl std::error::Error for IntegrationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IntegrationError::Subscriber(e) => Some(e),
            IntegrationError::Pipeline(e) => Some(e),
            IntegrationError::Spawn(e) => Some(e),
            IntegrationError::DuplicateSource(_) => None,
        }
    }
}

impl<R: Reactor> IntegrationBuilder<R> {
    /// The observer that hears of every [`Observed`] event. Default: none (everything is still
    /// counted and logged).
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Adds an inbound source, run on its own thread under supervision. Names must differ.
    pub fn source(mut self, name: &str, source: impl Source) -> Self {
        self.sources.push((name.to_owned(), Box::new(source)));
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
        self.configure = Some(Box::new(f));
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
            if self.sources[..i].iter().any(|(other, _)| other == name) {
                return Err(IntegrationError::DuplicateSource(name.clone()));
            }
        }
        let hooks = Arc::new(Hooks::new(self.observer));
        let counters = Arc::new(IntegrationCounters::default());
        let router = Arc::new(Router::new(
            self.routes,
            Arc::clone(&self.store),
            Arc::clone(&hooks),
            Arc::clone(&counters),
        ));
        let outbound = Outbound::new(self.reactor, Arc::clone(&router), subscriber);
        let mut builder = Pipeline::builder(Arc::clone(&self.store), &self.subscriber, outbound);
        if let Some(configure) = self.configure {
            builder = configure(builder);
        }
        let (own_panic, own_slow) = builder.take_engine_hooks();
        let panics = Arc::clone(&hooks);
        builder = builder.on_panic(move |report| {
            if let Some(own) = &own_panic {
                own(report);
            }
            panics.emit(&Observed::Panic { report });
        });
        let slow = Arc::clone(&hooks);
        builder = builder.on_slow_handler(move |report| {
            if let Some(own) = &own_slow {
                own(report);
            }
            slow.emit(&Observed::SlowHandler { report });
        });
        let own = builder.take_on_parked();
        let dead_letters = Arc::clone(&hooks);
        builder = builder.on_parked(move |parked| {
            if let Some(own) = &own {
                own(parked);
            }
            dead_letters.emit(&Observed::DeadLetter { parked });
        });
        let pipeline = builder.start().map_err(IntegrationError::Pipeline)?;
        let mut threads = Vec::with_capacity(self.sources.len());
        for (name, source) in self.sources {
            let shared = Arc::new(PlMutex::new(SourceReport {
                name: name.clone(),
                state: SourceState::Running,
                status: String::new(),
                restarts: 0,
                sent: 0,
                last_error: None,
                joined: false,
            }));
            let ctx = SourceContext {
                name,
                router: Arc::clone(&router),
                stop: Arc::new(Stop::default()),
                shared,
                max_attempts: self.source_attempts,
                backoff: self.source_retry,
            };
            let longest = self.source_restart.delay(u32::MAX);
            match source::spawn(source, ctx, self.source_restart, longest) {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    stop_sources(&mut threads, Duration::from_secs(5));
                    pipeline.shutdown(Duration::from_secs(5));
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
}

impl<R: Reactor> Integration<R> {
    /// An integration reacting to `store`'s events as `subscriber` (a name with the
    /// [`StreamId`] rules) with `reactor`, whose commands go to `routes`.
    pub fn builder(store: Arc<dyn EventStore>, subscriber: &str, reactor: R, routes: Routes) -> IntegrationBuilder<R> {
        IntegrationBuilder {
            store,
            subscriber: subscriber.to_owned(),
            reactor,
            routes,
            observer: None,
            sources: Vec::new(),
            source_restart: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            source_attempts: 3,
            source_retry: Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
            configure: None,
        }
    }

    /// The pipeline (its watermark, parked events, replays, stats).
    pub fn pipeline(&self) -> &Pipeline<Outbound<R>> {
        &self.pipeline
    }

    /// A snapshot of the integration's counters.
    pub fn stats(&self) -> IntegrationStats {
        self.counters.snapshot(self.hooks.panics.load(Ordering::Relaxed))
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
    /// the pipeline down with what is left of `deadline` (at least a tenth of it). A later call
    /// returns the pipeline's first report and the sources as they ended.
    pub fn shutdown(&self, deadline: Duration) -> IntegrationReport {
        let started = Instant::now();
        let sources = {
            let mut threads = self.sources.lock();
            stop_sources(&mut threads, deadline);
            threads.iter().map(|s| s.shared.lock().clone()).collect()
        };
        let left = deadline.saturating_sub(started.elapsed()).max(deadline / 10);
        let pipeline = self.pipeline.shutdown(left);
        IntegrationReport {
            sources,
            pipeline,
            stats: self.stats(),
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
                log::warn!(source = name.as_str(); "humpyard integration: a source did not stop by the deadline; left to end on its own");
            }
        }
    }
}

impl<R: Reactor> Drop for Integration<R> {
    fn drop(&mut self) {
        let mut threads = self.sources.lock();
        stop_sources(&mut threads, Duration::from_secs(5));
        // The pipeline's own Drop shuts it down after this.
    }
}

impl<R: Reactor> fmt::Debug for Integration<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Integration")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
