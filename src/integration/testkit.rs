//! A test kit for integrations, so they are tested without the external service:
//!
//! - [`FixtureHandler`]: a command handler that records every command it receives and answers
//!   from fixture files keyed by the command's [fingerprint](super::Command::fingerprint_hex)
//!   (SHA-256 of its canonical JSON, stable across processes and Rust versions): the answer to
//!   a command is the file `{dir}/{fingerprint}.json`, `{"ok": <outcome>}` or
//!   `{"err": "<message>"}`. File names are made only of the fingerprint's hex digits, so no
//!   command can name a path outside the directory; [`FixtureHandler::fixtures`] lists only
//!   names of that form.
//! - [`ManualSource`] and its [`Injector`]: an inbound source a test feeds by hand; `inject`
//!   blocks while the source's queue is full (the same backpressure as production), and every
//!   command not performed (handed back by `send`, or still queued at shutdown) comes back
//!   through [`Injector::take_unsent`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::command::Command;
use super::command_handler::{CommandHandler, Effect};
use super::source::{SendError, Source, SourceContext, SourceError};
use crate::store::IdempotencyKey;
use crate::sync::{AtomicBool, Ordering};

/// Why a [`FixtureHandler`] could not answer; returned as the effect's error.
#[derive(Debug)]
#[non_exhaustive]
pub enum FixtureError {
    /// No fixture file for the command.
    Missing {
        /// The file that would answer it.
        path: PathBuf,
        /// The command's canonical JSON (to write the fixture from).
        command: String,
    },
    /// The fixture could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The fixture is not `{"ok": ...}` or `{"err": "..."}`.
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// The fixture answers with this error.
    Answered(String),
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FixtureError::Missing { path, command } => {
                write!(f, "no fixture {} for the command {command}", path.display())
            }
            FixtureError::Io { path, .. } => write!(f, "could not read the fixture {}", path.display()),
            FixtureError::Malformed { path } => write!(
                f,
                "the fixture {} is neither {{\"ok\": ...}} nor {{\"err\": \"...\"}}",
                path.display()
            ),
            FixtureError::Answered(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for FixtureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FixtureError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A command the [`FixtureHandler`] received, with what its effect was handed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Received {
    /// The command.
    pub command: Command,
    /// The effect's idempotency key.
    pub key: IdempotencyKey,
    /// The key's claim attempt.
    pub attempt: u32,
    /// The position of the event that caused it (`None` inbound).
    pub position: Option<u64>,
}

/// A command handler answering from fixture files (see the [module docs](self)). Cloning
/// shares the record.
#[derive(Debug, Clone)]
pub struct FixtureHandler {
    dir: PathBuf,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FixtureHandler {
    /// A handler answering from the fixtures in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> FixtureHandler {
        FixtureHandler {
            dir: dir.into(),
            received: Arc::default(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that answers `command`: `{dir}/{fingerprint}.json`.
    pub fn fixture_path(&self, command: &Command) -> PathBuf {
        self.dir.join(format!("{}.json", command.fingerprint_hex()))
    }

    /// Writes the fixture answering `command` with `answer` (`Ok(outcome)` or `Err(message)`),
    /// creating the directory if needed.
    ///
    /// # Errors
    ///
    /// The file system's.
    pub fn record(&self, command: &Command, answer: Result<Value, String>) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let body = match answer {
            Ok(outcome) => json!({ "ok": outcome }),
            Err(message) => json!({ "err": message }),
        };
        let path = self.fixture_path(command);
        std::fs::write(&path, serde_json::to_vec_pretty(&body).map_err(std::io::Error::other)?)?;
        Ok(path)
    }

    /// The fingerprints that have a fixture in the directory (file names of any other form
    /// are not fixtures and are left out), sorted.
    ///
    /// # Errors
    ///
    /// The file system's.
    pub fn fixtures(&self) -> std::io::Result<Vec<String>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(hex) = name.strip_suffix(".json").filter(|h| is_fingerprint(h)) {
                found.push(hex.to_owned());
            }
        }
        found.sort();
        Ok(found)
    }

    /// Every command received so far, in order (retries included).
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    /// How many times a command equal to `command` was received.
    pub fn count(&self, command: &Command) -> usize {
        self.received.lock().iter().filter(|r| r.command == *command).count()
    }

    fn answer(&self, command: &Command) -> Result<Value, FixtureError> {
        let path = self.fixture_path(command);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FixtureError::Missing {
                    path,
                    command: command.canonical_json(),
                })
            }
            Err(source) => return Err(FixtureError::Io { path, source }),
        };
        let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(FixtureError::Malformed { path });
        };
        match (body.remove("ok"), body.remove("err")) {
            (Some(outcome), None) => Ok(outcome),
            (None, Some(Value::String(message))) => Err(FixtureError::Answered(message)),
            _ => Err(FixtureError::Malformed { path }),
        }
    }
}

/// 64 lowercase hex digits.
fn is_fingerprint(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl CommandHandler for FixtureHandler {
    type Error = FixtureError;

    fn handle(&self, command: &Command, effect: &Effect<'_>) -> Result<Value, FixtureError> {
        self.received.lock().push(Received {
            command: command.clone(),
            key: effect.key().clone(),
            attempt: effect.attempt(),
            position: effect.position(),
        });
        self.answer(command)
    }
}

/// A command waiting in a [`ManualSource`]'s queue, with its key if it has one.
type Queued = (Option<IdempotencyKey>, Command);

/// A command a [`ManualSource`] did not get performed, with its key if it had one, and why:
/// [`SendError::Unrouted`] or [`SendError::Failed`] (handed back by `send`), or
/// [`SendError::Stopped`] (cut short by shutdown, or still queued when the source stopped).
pub type Unsent = (Option<IdempotencyKey>, SendError);

/// What a [`ManualSource`] and its injectors share.
#[derive(Debug, Default)]
struct Returns {
    /// Set once the source is gone: `inject` refuses, and the queue's rest is unsent.
    stopped: AtomicBool,
    handed_back: Mutex<Vec<Unsent>>,
}

/// An inbound source fed by hand through its [`Injector`]. Nothing injected is lost: a command
/// not performed comes back through [`Injector::take_unsent`].
#[derive(Debug)]
pub struct ManualSource {
    queue: flume::Receiver<Queued>,
    returns: Arc<Returns>,
}

/// Feeds a [`ManualSource`]. Cloning makes another producer.
#[derive(Debug, Clone)]
pub struct Injector {
    queue: flume::Sender<Queued>,
    /// The same queue's other end: what the source left in it once it stopped is unsent.
    rest: flume::Receiver<Queued>,
    returns: Arc<Returns>,
}

impl ManualSource {
    /// A source with a queue of `capacity` commands (at least 1), and its injector.
    pub fn new(capacity: usize) -> (ManualSource, Injector) {
        let (tx, rx) = flume::bounded(capacity.max(1));
        let returns = Arc::new(Returns::default());
        let injector = Injector {
            queue: tx,
            rest: rx.clone(),
            returns: Arc::clone(&returns),
        };
        (ManualSource { queue: rx, returns }, injector)
    }
}

/// How often a blocked `inject` looks whether the source has stopped.
const STOP_POLL: Duration = Duration::from_millis(50);

impl Injector {
    /// Queues `command` for the source to send, blocking while the queue is full.
    ///
    /// # Errors
    ///
    /// The command, handed back, once the source is gone (the integration stopped). One that
    /// races the source's end may be queued instead: it then comes back through
    /// [`take_unsent`](Self::take_unsent).
    pub fn inject(&self, command: Command) -> Result<(), Command> {
        self.push((None, command))
    }

    /// As [`inject`](Self::inject), sent with [`SourceContext::send_keyed`] under `key`.
    ///
    /// # Errors
    ///
    /// The command, handed back, once the source is gone.
    pub fn inject_keyed(&self, key: IdempotencyKey, command: Command) -> Result<(), Command> {
        self.push((Some(key), command))
    }

    fn push(&self, mut queued: Queued) -> Result<(), Command> {
        loop {
            if self.returns.stopped.load(Ordering::SeqCst) {
                return Err(queued.1);
            }
            match self.queue.send_timeout(queued, STOP_POLL) {
                Ok(()) => return Ok(()),
                Err(flume::SendTimeoutError::Timeout(back)) => queued = back,
                Err(flume::SendTimeoutError::Disconnected(back)) => return Err(back.1),
            }
        }
    }

    /// Commands queued and not yet taken by the source.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Takes the commands not performed so far: those `send` handed back, and, once the
    /// source is gone (the integration shut down and its thread ended), those still queued. A
    /// source still running past the shutdown's deadline is not gone yet: call again later.
    pub fn take_unsent(&self) -> Vec<Unsent> {
        let mut unsent = std::mem::take(&mut *self.returns.handed_back.lock());
        if self.returns.stopped.load(Ordering::SeqCst) {
            unsent.extend(
                self.rest
                    .try_iter()
                    .map(|(key, command)| (key, SendError::Stopped(command))),
            );
        }
        unsent
    }
}

impl Drop for ManualSource {
    fn drop(&mut self) {
        // After this, `inject` refuses; what is queued stays for `take_unsent`.
        self.returns.stopped.store(true, Ordering::SeqCst);
    }
}

impl Source for ManualSource {
    fn run(&mut self, ctx: &SourceContext) -> Result<(), SourceError> {
        while !ctx.stopping() {
            let (key, command) = match self.queue.recv_timeout(STOP_POLL) {
                Ok(queued) => queued,
                Err(flume::RecvTimeoutError::Timeout) => continue,
                // Every injector is gone: nothing more will come.
                Err(flume::RecvTimeoutError::Disconnected) => return Ok(()),
            };
            ctx.set_status(format!("sending a command for {}", command.route()));
            let sent = match &key {
                Some(key) => ctx.send_keyed(key, command),
                None => ctx.send(command),
            };
            if let Err(error) = sent {
                let stopped = matches!(error, SendError::Stopped(_));
                self.returns.handed_back.lock().push((key, error));
                if stopped {
                    break;
                }
            }
            ctx.set_status("waiting for a command");
        }
        Ok(())
    }
}
