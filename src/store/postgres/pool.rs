//! The connection pool: r2d2 over `r2d2_postgres`'s manager, wrapped so that a checkout that
//! times out says why no connection could be made.
//!
//! r2d2 keeps a failed connect only as text (the error's `to_string()`), which it puts in the
//! message of the next checkout that times out. A `postgres::Error`'s `Display` is its top level
//! only ("error connecting to server"), its cause ("Connection refused") being in `source()`, so
//! that text lost the reason. [`ConnectError`] displays the whole chain instead, and the timeout
//! reads "timed out waiting for connection: error connecting to server: Connection refused (os
//! error 111)".

use std::fmt;
use std::sync::Arc;

use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

use crate::error_chain::Chain;
use crate::sync::{AtomicU64, Ordering};

/// The store's pool.
pub(super) type Pool = r2d2::Pool<Manager>;

/// A connection checked out of [`Pool`].
pub(super) type Pooled = r2d2::PooledConnection<Manager>;

/// `r2d2_postgres`'s manager, with errors that carry their cause in their text.
#[derive(Debug)]
pub(super) struct Manager(PostgresConnectionManager<NoTls>);

impl Manager {
    /// A manager connecting with `config`.
    pub(super) fn new(config: postgres::Config) -> Manager {
        Manager(PostgresConnectionManager::new(config, NoTls))
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = postgres::Client;
    type Error = ConnectError;

    fn connect(&self) -> Result<postgres::Client, ConnectError> {
        self.0.connect().map_err(ConnectError)
    }

    fn is_valid(&self, conn: &mut postgres::Client) -> Result<(), ConnectError> {
        self.0.is_valid(conn).map_err(ConnectError)
    }

    fn has_broken(&self, conn: &mut postgres::Client) -> bool {
        self.0.has_broken(conn)
    }
}

/// A pooled connection that could not be made or failed its check: the driver's error, whose
/// `Display` is the whole chain, because r2d2 keeps only the text.
#[derive(Debug)]
pub(super) struct ConnectError(postgres::Error);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Chain(&self.0).fmt(f)
    }
}

/// The end of its chain: the `Display` holds the causes.
impl std::error::Error for ConnectError {}

/// Routes the pool's background errors to the log and a counter (R-PG-3); the counter is the
/// store's `pool_errors` (`Relaxed`).
#[derive(Debug)]
pub(super) struct PoolErrors(pub(super) Arc<AtomicU64>);

impl r2d2::HandleError<ConnectError> for PoolErrors {
    fn handle_error(&self, error: ConnectError) {
        self.0.fetch_add(1, Ordering::Relaxed);
        let text = error.to_string();
        log::warn!(error:? = text; "humpyard store: a pooled connection failed ({text:?})");
    }
}
