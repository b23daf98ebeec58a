//! Inbound sources: a [`Source`] runs on a thread of its own and turns an external feed into
//! commands, which it sends through [`SourceContext::send`] to the same routes as outbound
//! commands; their handlers append events to the store, and so reach the pipeline.
//!
//! # Backpressure
//!
//! `send` returns once the command's effect has happened: a full bulkhead blocks it (parked,
//! no spinning), an open breaker or a failed attempt waits a backoff, a slow store is slow. So
//! a source never runs ahead of its routes, and nothing is dropped: a command that failed every
//! attempt, has no route, or was cut short by shutdown comes back to the source in
//! [`SendError`].
//!
//! # Supervision
//!
//! A source whose `run` returns an error or panics is restarted after
//! [`Backoff`](crate::resilience::Backoff) (1 s doubling to 60 s by default, with jitter):
//! counted, logged, reported to the observer. The backoff's attempt is the number of
//! consecutive failures; a run that lasted longer than the backoff's longest delay starts the
//! count again. `run` returning `Ok` ends the source (finished). Shutdown asks every source to
//! stop ([`SourceContext::stopping`], [`SourceContext::sleep`] wakes at once, `send` gives up)
//! and waits for each thread until the deadline.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::command::Command;
use super::command_handler::BoxError;
use super::effect_error::EffectError;
use super::observer::Observed;
use super::routes::Router;
use crate::error_chain::Chain;
use crate::pipeline::{contain, dispose, Disposing, ErrorKind};
use crate::resilience::Backoff;
use crate::store::IdempotencyKey;
use crate::sync::Ordering;

/// An external feed turned into commands, run on a thread of its own.
///
/// [`SourceContext::send`] returns once the command's effect has happened: a full bulkhead
/// blocks it (parked), an open breaker or a failed attempt waits a backoff, a slow store is
/// slow. So a source never runs ahead of its routes, and nothing is dropped: a command that
/// failed every attempt, has no route, or was cut short by shutdown comes back in
/// [`SendError`]. A `run` that returns an error or panics is restarted after the integration's
/// [restart backoff](super::IntegrationBuilder::source_restart) (1 s doubling to 60 s by
/// default), counted and reported to the observer; consecutive failures lengthen the wait, a
/// run that lasted longer than the longest wait starts the count again. `run` returning `Ok`
/// ends the source. Shutdown asks every source to stop ([`SourceContext::stopping`];
/// [`SourceContext::sleep`] wakes at once; `send` gives up) before it drains the pipeline.
pub trait Source: Send + 'static {
    /// Reads the feed and sends its commands through `ctx` until
    /// [`ctx.stopping()`](SourceContext::stopping) (then returns `Ok`) or a failure (then
    /// returns `Err`, or panics: the source is restarted after a backoff).
    ///
    /// # Errors
    ///
    /// Whatever stopped the feed; the source is restarted.
    fn run(&mut self, ctx: &SourceContext) -> Result<(), SourceError>;
}

/// Why a source's run ended early.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceError {
    /// `run` returned this error.
    Failed(BoxError),
    /// `run` panicked with this message.
    Panicked(String),
}

impl SourceError {
    /// A failure of the feed.
    pub fn new(error: impl Into<BoxError>) -> SourceError {
        SourceError::Failed(error.into())
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Failed(_) => f.write_str("the source failed"),
            SourceError::Panicked(message) => write!(f, "the source panicked: {message}"),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SourceError::Failed(e) => Some(&**e),
            SourceError::Panicked(_) => None,
        }
    }
}

/// Why [`SourceContext::send`] handed its command back.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// No handler for the command's route (counted, reported).
    Unrouted(Command),
    /// The effect failed every attempt (counted, reported as an inbound dead letter).
    Failed {
        /// The command.
        command: Command,
        /// The last failure (boxed: it is large, and rare).
        error: Box<EffectError>,
    },
    /// The integration is shutting down: the effect did not happen.
    Stopped(Command),
}

impl SendError {
    /// The command, handed back.
    pub fn into_command(self) -> Command {
        match self {
            SendError::Unrouted(c) | SendError::Stopped(c) | SendError::Failed { command: c, .. } => c,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Unrouted(c) => write!(f, "no command handler for route {}", c.route()),
            SendError::Failed { .. } => f.write_str("the command failed every attempt"),
            SendError::Stopped(c) => write!(f, "shutting down: the command for {} was not sent", c.route()),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Failed { error, .. } => Some(&**error),
            _ => None,
        }
    }
}

/// What a source is doing, as [`SourceReport`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceState {
    /// In its `run`.
    Running,
    /// Waiting out the backoff before a restart.
    Restarting,
    /// Its `run` returned `Ok` without being asked to stop: done.
    Finished,
    /// Stopped by shutdown.
    Stopped,
}

/// A source, as a report sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceReport {
    /// Its name.
    pub name: String,
    /// What it was doing.
    pub state: SourceState,
    /// The last status it set ([`SourceContext::set_status`]); empty if none.
    pub status: String,
    /// Its restarts after an error or a panic.
    pub restarts: u64,
    /// Commands it sent whose effect happened (or was done already).
    pub sent: u64,
    /// The last error it failed with, as text.
    pub last_error: Option<String>,
    /// Whether its thread ended before the shutdown's deadline (`false` while it runs).
    pub joined: bool,
}

impl SourceReport {
    /// A source about to run for the first time.
    pub(crate) fn starting(name: &str) -> SourceReport {
        SourceReport {
            name: name.to_owned(),
            state: SourceState::Running,
            status: String::new(),
            restarts: 0,
            sent: 0,
            last_error: None,
            joined: false,
        }
    }
}

/// The stop signal shared by a source's thread and shutdown.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    pub(crate) fn stop(&self) {
        *self.stopping.lock() = true;
        self.wake.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.stopping.lock()
    }

    /// Sleeps `d` or until stopped: whether the whole sleep passed.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now().checked_add(d);
        let mut stopping = self.stopping.lock();
        while !*stopping {
            match until {
                Some(until) => {
                    if self.wake.wait_until(&mut stopping, until).timed_out() {
                        return !*stopping;
                    }
                }
                None => self.wake.wait(&mut stopping),
            }
        }
        false
    }
}

/// A source's view of the integration: its sink for commands and its stop signal.
pub struct SourceContext {
    pub(crate) name: String,
    pub(crate) router: Arc<Router>,
    pub(crate) stop: Arc<Stop>,
    pub(crate) shared: Arc<Mutex<SourceReport>>,
    /// Failed attempts a command may make before it is handed back.
    pub(crate) max_attempts: u32,
    /// The wait between tries of one command.
    pub(crate) backoff: Backoff,
}

/// How long `send` waits for a bulkhead place before it looks at the stop signal again.
const PLACE_WAIT: Duration = Duration::from_millis(100);

impl SourceContext {
    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether shutdown has asked the source to stop.
    pub fn stopping(&self) -> bool {
        self.stop.is_set()
    }

    /// Sleeps `d`, or less if shutdown asks the source to stop: whether the whole `d` passed.
    pub fn sleep(&self, d: Duration) -> bool {
        self.stop.sleep(d)
    }

    /// Says what the source is doing, for the reports.
    pub fn set_status(&self, status: impl Into<String>) {
        self.shared.lock().status = status.into();
    }

    /// Performs `command`'s effect and returns once it happened (see the module docs). The
    /// handler is handed a fresh idempotency key; nothing is claimed.
    ///
    /// # Errors
    ///
    /// [`SendError`], with the command.
    pub fn send(&self, command: Command) -> Result<(), SendError> {
        let key = IdempotencyKey::new(format!("in1:{}", uuid::Uuid::new_v4())).expect("a valid key");
        self.deliver(command, &key, false)
    }

    /// Performs `command`'s effect under `key` (the feed's own message id, say), claimed in the
    /// store as an outbound effect's: a command sent again with a completed key (a feed that
    /// redelivers) does not run again.
    ///
    /// # Errors
    ///
    /// [`SendError`], with the command.
    pub fn send_keyed(&self, key: &IdempotencyKey, command: Command) -> Result<(), SendError> {
        self.deliver(command, key, true)
    }

    fn deliver(&self, command: Command, key: &IdempotencyKey, claim: bool) -> Result<(), SendError> {
        let counters = &self.router.counters;
        let mut failed = 0u32;
        let mut waits = 0u32;
        loop {
            if self.stopping() {
                if claim && self.router.is_pending(key) {
                    // The effect ran; only its completion waits to be stored (shutdown stores
                    // it). It happened: not handed back.
                    counters.inbound.fetch_add(1, Ordering::Relaxed);
                    self.shared.lock().sent += 1;
                    return Ok(());
                }
                return Err(SendError::Stopped(command));
            }
            let attempt = failed.saturating_add(1);
            let error = match self.router.perform(&command, key, claim, None, PLACE_WAIT, attempt) {
                Ok(_) => {
                    counters.inbound.fetch_add(1, Ordering::Relaxed);
                    self.shared.lock().sent += 1;
                    return Ok(());
                }
                Err(error) => error,
            };
            let delay = match error.kind() {
                ErrorKind::Wait => {
                    waits = waits.saturating_add(1);
                    self.backoff.delay(waits)
                }
                ErrorKind::Park => {
                    counters.inbound_dead_letters.fetch_add(1, Ordering::Relaxed);
                    dispose(error);
                    return Err(SendError::Unrouted(command));
                }
                _ => {
                    failed = failed.saturating_add(1);
                    if failed >= self.max_attempts {
                        counters.inbound_dead_letters.fetch_add(1, Ordering::Relaxed);
                        // The error may hold the handler's, whose Display is user code: contained.
                        let text = contain(|| error.to_string())
                            .unwrap_or_else(|m| format!("the error's Display panicked: {m}"));
                        log::error!(
                            source = self.name.as_str(), route = command.route().as_str();
                            "humpyard integration: source {:?}: a command for route {:?} failed every attempt ({text:?}); handed back to its source",
                            self.name.as_str(), command.route().as_str()
                        );
                        self.router.hooks.emit(&Observed::InboundDeadLetter {
                            source: &self.name,
                            command: &command,
                            error: &error,
                        });
                        return Err(SendError::Failed {
                            command,
                            error: Box::new(error),
                        });
                    }
                    self.backoff.delay(failed)
                }
            };
            dispose(error);
            self.sleep(delay);
        }
    }
}

impl fmt::Debug for SourceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceContext")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A source's thread, seen from shutdown.
pub(crate) struct SourceThread {
    pub(crate) stop: Arc<Stop>,
    pub(crate) shared: Arc<Mutex<SourceReport>>,
    pub(crate) finished: std::sync::mpsc::Receiver<()>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts `source` on a thread of its own, made by `thread`, under supervision with `restart`
/// (see the module docs). If the thread cannot start, the source is dropped contained.
pub(crate) fn spawn(
    mut source: Disposing<Box<dyn Source>>,
    ctx: SourceContext,
    restart: Backoff,
    longest: Duration,
    thread: std::thread::Builder,
) -> std::io::Result<SourceThread> {
    let stop = Arc::clone(&ctx.stop);
    let shared = Arc::clone(&ctx.shared);
    let (finished_tx, finished) = std::sync::mpsc::sync_channel::<()>(1);
    let thread = thread.spawn(move || {
        supervise(&mut **source, &ctx, &restart, longest);
        // The source's own Drop is user code (contained by its holder).
        drop(source);
        let _ = finished_tx.send(());
    })?;
    Ok(SourceThread {
        stop,
        shared,
        finished,
        thread: Some(thread),
    })
}

fn supervise(source: &mut dyn Source, ctx: &SourceContext, restart: &Backoff, longest: Duration) {
    let mut consecutive = 0u32;
    loop {
        if ctx.stopping() {
            ctx.shared.lock().state = SourceState::Stopped;
            return;
        }
        ctx.shared.lock().state = SourceState::Running;
        let started = Instant::now();
        let error = match contain(|| source.run(ctx)) {
            Ok(Ok(())) => {
                ctx.shared.lock().state = if ctx.stopping() {
                    SourceState::Stopped
                } else {
                    SourceState::Finished
                };
                return;
            }
            Ok(Err(error)) if ctx.stopping() => {
                // Ended by the stop (a `SendError::Stopped` passed on): not a failure.
                dispose(error);
                ctx.shared.lock().state = SourceState::Stopped;
                return;
            }
            Ok(Err(error)) => error,
            Err(message) => SourceError::Panicked(message),
        };
        if started.elapsed() > longest {
            consecutive = 0;
        }
        let delay = restart.delay(consecutive);
        consecutive = consecutive.saturating_add(1);
        ctx.router.counters.source_restarts.fetch_add(1, Ordering::Relaxed);
        let text =
            contain(|| Chain(&error).to_string()).unwrap_or_else(|m| format!("the error's Display panicked: {m}"));
        log::warn!(
            source = ctx.name.as_str(), error:? = text, delay:? = delay;
            "humpyard integration: source {:?} failed ({text:?}); restarting it in {delay:?}",
            ctx.name.as_str()
        );
        let restarts = {
            let mut shared = ctx.shared.lock();
            shared.state = SourceState::Restarting;
            shared.restarts += 1;
            shared.last_error = Some(text);
            shared.restarts
        };
        ctx.router.hooks.emit(&Observed::SourceRestart {
            source: &ctx.name,
            restarts,
            delay,
            error: &error,
        });
        dispose(error);
        if !ctx.sleep(delay) {
            ctx.shared.lock().state = SourceState::Stopped;
            return;
        }
    }
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;
    use crate::integration::observer::Hooks;
    use crate::integration::stats::IntegrationCounters;
    use crate::integration::Routes;
    use crate::store::InMemoryStore;
    use std::sync::atomic::{AtomicU32, Ordering};

    static DROPS: AtomicU32 = AtomicU32::new(0);

    /// A source whose `Drop` panics.
    struct Loud;

    impl Source for Loud {
        fn run(&mut self, _ctx: &SourceContext) -> Result<(), SourceError> {
            Ok(())
        }
    }

    impl Drop for Loud {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            panic!("planned panic in a source's Drop");
        }
    }

    // proves R-INT-3 and R-FT-3: a source whose thread cannot start is dropped contained
    #[test]
    fn a_source_whose_thread_cannot_start_is_dropped_contained() {
        let router = Arc::new(Router::new(
            Routes::new(),
            Arc::new(InMemoryStore::new()),
            Arc::new(Hooks::new(None)),
            Arc::new(IntegrationCounters::default()),
        ));
        let ctx = SourceContext {
            name: "loud".to_owned(),
            router,
            stop: Arc::new(Stop::default()),
            shared: Arc::new(Mutex::new(SourceReport::starting("loud"))),
            max_attempts: 1,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(1)),
        };
        // No thread can have a stack this large: the spawn fails.
        let thread = std::thread::Builder::new().stack_size(usize::MAX / 2);
        let restart = Backoff::new(Duration::from_millis(1), Duration::from_millis(1));
        let spawned = spawn(Disposing::new(Box::new(Loud)), ctx, restart, Duration::ZERO, thread);
        assert!(spawned.is_err());
        assert_eq!(
            DROPS.load(Ordering::SeqCst),
            1,
            "dropped once, and its panic went no further"
        );
    }
}
