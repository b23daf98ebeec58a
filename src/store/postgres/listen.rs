//! The Postgres [`AppendWatch`]: `LISTEN` on one dedicated connection.
//!
//! Every appending transaction sends one notification at commit, `pg_notify($1, $2)` with the
//! constant channel [`CHANNEL`] and the schema's name as payload, both bound values (R-SEC-4): a
//! stream id is never a channel name, and `LISTEN` names only the constant. Several schemas
//! share the channel; a watch ignores the others' payloads.
//!
//! The connection is the watch's own, outside the pool (a pooled connection would carry the
//! `LISTEN` to the next borrower, R-PG-2). It opens lazily with the store's connect deadline; if
//! it fails or drops, the watch waits a capped exponential backoff with jitter (a
//! [`Backoff`] per watch: 50 ms doubling to 5 s) before trying again, logs
//! and counts each failure ([`PgEventStore::watch_errors`](super::PgEventStore::watch_errors)),
//! and in the meantime its waits are plain sleeps: the reader's polling carries on. After every
//! (re)connection the first wait returns at once, since notifications sent while no one
//! listened are gone.

use crate::sync::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fallible_iterator::FallibleIterator;

use super::connect_within;
use crate::resilience::Backoff;
use crate::store::AppendWatch;

/// The one notification channel of every humpyard schema.
pub(crate) const CHANNEL: &str = "humpyard_appends";

/// The first wait before reconnecting, and its cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A `LISTEN`ing connection (when it is up) and its reconnect schedule.
pub(crate) struct PgWatch {
    config: postgres::Config,
    connect_timeout: Duration,
    schema: String,
    client: Option<postgres::Client>,
    /// The waits before reconnecting, and the failures in a row that pick the next one.
    backoff: Backoff,
    failures: u32,
    retry_at: Option<Instant>,
    /// The store's count of watch errors (`Relaxed`: a count read for reporting only).
    errors: Arc<AtomicU64>,
}

impl PgWatch {
    pub(crate) fn new(
        config: postgres::Config,
        connect_timeout: Duration,
        schema: String,
        errors: Arc<AtomicU64>,
    ) -> PgWatch {
        PgWatch {
            config,
            connect_timeout,
            schema,
            client: None,
            backoff: Backoff::new(BACKOFF_FIRST, BACKOFF_MAX),
            failures: 0,
            retry_at: None,
            errors,
        }
    }

    /// Opens the connection and listens; on failure schedules the next try.
    fn connect(&mut self) {
        let listening = connect_within(&self.config, self.connect_timeout).and_then(|mut client| {
            // A constant statement: nothing is spliced into it.
            client
                .batch_execute("LISTEN humpyard_appends")
                .map_err(super::backend_error)?;
            Ok(client)
        });
        match listening {
            Ok(client) => {
                self.client = Some(client);
                self.failures = 0;
                self.retry_at = None;
            }
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&mut self, error: &(dyn std::error::Error + 'static)) {
        self.client = None;
        self.errors.fetch_add(1, Ordering::Relaxed);
        let wait = self.backoff.delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        let (text, retry_in_ms) = (crate::error_chain::Chain(error).to_string(), wait.as_millis() as u64);
        log::warn!(
            error:? = text, retry_in_ms = retry_in_ms;
            "humpyard store: the append watch lost its listening connection ({text:?}); listening again in {retry_in_ms} ms"
        );
        self.retry_at = Some(Instant::now() + wait);
    }
}

impl AppendWatch for PgWatch {
    fn drain(&mut self) {
        let Some(client) = self.client.as_mut() else { return };
        let drained = {
            let mut queued = client.notifications();
            let mut queued = queued.timeout_iter(Duration::ZERO);
            loop {
                match queued.next() {
                    Ok(Some(_)) => continue,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        };
        if let Err(e) = drained {
            self.failed(&e);
        }
    }

    fn wait(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        if self.client.is_none() {
            let now = Instant::now();
            match self.retry_at {
                Some(at) if now < at => {
                    // Not yet: sleep (the reader polls meanwhile).
                    std::thread::sleep(at.min(deadline) - now);
                    return;
                }
                _ => {
                    self.connect();
                    // Up or not, return: what was sent before the LISTEN is lost, so read now.
                    return;
                }
            }
        }
        let Some(client) = self.client.as_mut() else { return };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = client.notifications().timeout_iter(left).next();
            match next {
                Ok(Some(n)) if n.payload() == self.schema => {
                    // Take whatever else is queued without waiting, then go read.
                    self.drain();
                    return;
                }
                Ok(Some(_)) if !left.is_zero() => continue,
                Ok(_) => return,
                Err(e) => {
                    self.failed(&e);
                    return;
                }
            }
        }
    }
}
