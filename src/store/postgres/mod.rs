//! [`PgEventStore`]: the durable store on PostgreSQL, through a pool of synchronous
//! connections (`postgres`, `r2d2`, `r2d2_postgres`).
//!
//! # Connection hygiene (R-PG-1..3)
//!
//! Every connection is opened with `connect_timeout` and TCP keepalives, and with the startup
//! options `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout`, so a
//! setting is in force from the first statement and nothing a borrower does can leave another
//! borrower without it. Checkout waits at most `checkout_timeout`. Locks are transaction-scoped
//! (`pg_advisory_xact_lock`), and every statement runs in its own or a scoped transaction, so a
//! connection goes back to the pool clean. The pool's own errors (failed reconnects) go to the
//! log facade and to [`PgEventStore::pool_errors`]; an operation's error comes back typed.
//!
//! # Appending
//!
//! `append_many` sends its items to `append_batch` (see `schema`, "Appends"): one statement per
//! run of items whose streams and ids make at most `max_append_locks / pool_size` advisory-lock
//! keys ([`PgStoreConfig::max_append_locks`]; see `locks` for the lock table this bounds and
//! how to size the server). Humpyard's appends
//! to one stream, or with one event id, serialise on those locks; others never wait for each
//! other, and no append waits for a tool's transaction on another stream. A tool's row that
//! takes the version an append computed for the same stream makes the append's insert fail
//! with a unique violation; the call is retried ([`CONTENTION_RETRIES`] times in all, each
//! seeing the tool's row), then [`StoreError::Contention`].
//!
//! What each item answers follows the append rules (`store::append_rules`, shared with the
//! in-memory store): the request checks run here before any call; the server writes an item
//! only on clean facts and answers the facts, which the client judges (see `schema`, "Appends
//! (V5)").
//!
//! # Reading
//!
//! [`read_all`](EventStore::read_all) delivers in position order and stops at a position that
//! is missing below a committed one until it knows the position can no longer commit (R-PG-5):
//! the rule, why it is safe, and what it costs are in `gaps`. In short, every transaction that
//! inserts events takes its id before any position, so an id drawn after a read saw a gap is
//! newer than whatever holds the gap, and once the oldest running transaction is at least that
//! id, the gap is a rollback. A tool's open transaction that inserted events holds readers back
//! (it holds a lower position), never other streams' writers. How long readers have waited at
//! a gap is [`EventStore::gap_wait`], and logged as it doubles from one second on: a long wait
//! points at a long transaction somewhere on the server.
//!
//! Preconditions, checked when the store connects: the identity's sequence caches one value
//! ([`Precondition::SequenceCache`]) and the events table's `draw_xact_id` trigger is enabled
//! ([`Precondition::XactIdTriggerDisabled`]). Not checkable: a tool must not insert with
//! `session_replication_role = replica` (triggers are skipped), and a position a tool draws by
//! hand (`nextval`, inserted later with `overriding system value`) is covered only if its
//! transaction took its id first (`select pg_current_xact_id()`).
//!
//! An event that cannot be decoded (a tool's row with a stream id that breaks the rules) ends
//! the batch before it; the read that starts at it returns
//! [`StoreError::InvalidStoredEvent`], so subscribers report it and go on (R-FT-5).
//!
//! [`read_all_filtered`](EventStore::read_all_filtered) filters in the server, after the same
//! gap rule over every row: one statement returns the position of each row after `after` (up
//! to `max` rows, passed by the filter or not) and the rest of its columns only where the
//! filter passes it, so a row left out costs its position and never ships its data. Event types
//! are compared with `= any($types)` and stream-id prefixes with `^@ any($prefixes)`
//! (`starts_with`: text, no `LIKE` pattern, so `%` and `_` are themselves). A row left out
//! counts as passed even if it cannot be decoded; one the filter passes is an error in its own
//! place, as in `read_all`.
//!
//! # Subscribers' rows
//!
//! Checkpoints, parked events and snapshots (see `schema`, "Subscribers' tables (V3)", and
//! `subscribers`): a subscriber's checkpoint is partition 0 of its `(subscriber, partition)`
//! key; each operation is one statement on an index.
//!
//! # Idempotency keys
//!
//! The protocol of [`Claim`] on the `idempotency_keys` table (see `schema`, "Idempotency keys
//! (V4)", and `idempotency`): a claim is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`
//! statement (R-IDEM-1), `complete` and `fail` are fenced by the claim's generation, every
//! time is the server's, and [`EventStore::purge_idempotency_keys`] deletes the rows past
//! [`PgStoreConfig::idempotency_retention`].
//!
//! # Wake-ups
//!
//! Each appending transaction sends one notification, `pg_notify($1, $2)` on the constant
//! channel `humpyard_appends` with the schema name as payload (R-SEC-4); [`PgEventStore`]'s
//! [`watch`](EventStore::watch) listens on a connection of its own (see `listen`).
//!
//! # The events table
//!
//! As DESIGN.md documents it, plus one optional column of humpyard's own, `opens_append
//! boolean`: false on every event of an append but its first, so that an exact retry of an
//! append can be told from a part of one. Rows tools insert leave it null.

mod config;
mod gaps;
mod idempotency;
mod listen;
mod locks;
mod pool;
mod schema;
mod subscribers;

use crate::sync::{AtomicU64, Mutex, Ordering};
use std::sync::Arc;
use std::time::Instant;

use postgres::error::SqlState;
use postgres::NoTls;
use uuid::Uuid;

use self::config::{millis, SchemaName};
use self::gaps::Gaps;
use self::locks::LockKeys;
use self::pool::{Manager, Pool, PoolErrors, Pooled};
use super::append_rules::{self, Facts, Verdict};
use super::{
    check_subscriber, AppendWatch, Appended, BackendError, Claim, ClaimToken, EventFilter, EventStore, ExpectedVersion,
    FilteredRead, GapWait, IdempotencyKey, InvalidInput, NewEvent, ParkedEvent, Precondition, RecordedEvent, Snapshot,
    StoreError, StoreHealth,
};
use crate::StreamId;
pub use config::PgStoreConfig;

/// Calls of `append_batch` for one run of items before a repeated unique violation (another
/// writer's row for the same stream's version or id) is given up as [`StoreError::Contention`].
pub(crate) const CONTENTION_RETRIES: u32 = 3;

/// The event store on PostgreSQL.
pub struct PgEventStore {
    pool: Pool,
    schema: SchemaName,
    /// The advisory-lock keys of this schema's streams and ids.
    keys: LockKeys,
    /// The most keys one call of `append_batch` takes (see `locks`).
    keys_per_call: usize,
    /// What readers know of missing positions (see `gaps`); held only between statements.
    gaps: Mutex<Gaps>,
    /// Errors the pool reported (a `Relaxed` count, read for reporting only).
    pool_errors: Arc<AtomicU64>,
    sql: Statements,
    /// For the watches' own connections.
    pg: postgres::Config,
    connect_timeout: std::time::Duration,
    /// Errors of the watches' connections (a `Relaxed` count, read for reporting only).
    watch_errors: Arc<AtomicU64>,
    /// [`PgStoreConfig::idempotency_retention`] in milliseconds, as the statements bind it.
    idempotency_retention_ms: i64,
}

impl std::fmt::Debug for PgEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEventStore")
            .field("schema", &self.schema.as_str())
            .field("pool", &self.pool.state())
            .finish_non_exhaustive()
    }
}

/// The statements' text for one schema, built once. The only text spliced in is the schema
/// name, validated (`[a-z_][a-z0-9_]{0,62}`, see `SchemaName`) and double-quoted, and the fixed
/// column list; every value is a `$n` parameter (R-SEC-1).
struct Statements {
    append_batch: String,
    read_stream: String,
    read_all: String,
    read_all_filtered: String,
    draw_xact_id: String,
    preconditions: String,
    load_checkpoint: String,
    save_checkpoint: String,
    reset_checkpoint: String,
    park: String,
    parked: String,
    parked_in_stream: String,
    unpark: String,
    save_snapshot: String,
    load_snapshot: String,
    claim: String,
    key_state: String,
    complete_claim: String,
    fail_claim: String,
    purge_keys: String,
}

impl Statements {
    fn new(schema: &SchemaName) -> Statements {
        let s = schema.quoted();
        let columns = "position, stream_id, version, event_id, event_type, data, metadata, recorded_at";
        Statements {
            append_batch: format!(
                "select status, first_position, last_position, last_version, actual, dup, positions \
                 from {s}.append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ),
            // The version range is bounded above as well as by the limit ($4 = $2 + $3, a
            // stream's versions being dense): without it, on a long stream whose statistics
            // are stale the planner reads the whole rest of the stream into a bitmap and sorts
            // it for each page (37 ms a page at 50 000 versions from the end, 1.4 ms with it).
            read_stream: format!(
                "select {columns} from {s}.events where stream_id = $1 and version >= $2 \
                 and version < $4 order by version limit $3"
            ),
            // Every row above the position, and the oldest running transaction id of the same
            // snapshot (an initplan: computed once), for the gap rule (see `gaps`).
            read_all: format!(
                "select {columns}, (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint) \
                 from {s}.events where position > $1 order by position limit $2"
            ),
            // As `read_all`, with whether each row passes the filter ($3: any type, else one of
            // $4; $5: any stream, else one starting with one of $6, compared as text, no
            // pattern) and the row's columns only where it does: a row left out ships its
            // position alone. The subquery (a limit: never flattened) computes `matches` once
            // per row; `data` and `metadata` of a row left out are never read from their
            // toast.
            read_all_filtered: format!(
                "select r.position, \
                        case when r.matches then r.stream_id end, case when r.matches then r.version end, \
                        case when r.matches then r.event_id end, case when r.matches then r.event_type end, \
                        case when r.matches then r.data end, case when r.matches then r.metadata end, \
                        case when r.matches then r.recorded_at end, \
                        (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint), r.matches \
                 from (select e.position, e.stream_id, e.version, e.event_id, e.event_type, e.data, e.metadata, \
                              e.recorded_at, \
                              ($3::boolean or e.event_type = any($4::text[])) \
                              and ($5::boolean or e.stream_id ^@ any($6::text[])) as matches \
                       from {s}.events e where e.position > $1 order by e.position limit $2) r \
                 order by r.position"
            ),
            draw_xact_id: "select pg_current_xact_id()::text::bigint".to_owned(),
            preconditions: format!(
                "select (select sq.seqcache from pg_sequence sq \
                         where sq.seqrelid = pg_get_serial_sequence('{s}.events', 'position')::regclass), \
                        coalesce((select t.tgenabled in ('O', 'A') from pg_trigger t \
                                  where t.tgrelid = '{s}.events'::regclass and t.tgname = 'draw_xact_id'), false)"
            ),
            // An unpartitioned subscriber's checkpoint is its partition 0 (V3).
            load_checkpoint: format!("select position from {s}.checkpoints where subscriber = $1 and partition = 0"),
            // Never back: a stale save (a detached reader of an earlier run) changes nothing.
            save_checkpoint: format!(
                "insert into {s}.checkpoints as c (subscriber, partition, position) values ($1, 0, $2) \
                 on conflict (subscriber, partition) do update set position = excluded.position, updated_at = now() \
                 where c.position < excluded.position"
            ),
            // Exactly the position given, backwards too (a rewind).
            reset_checkpoint: format!(
                "insert into {s}.checkpoints (subscriber, partition, position) values ($1, 0, $2) \
                 on conflict (subscriber, partition) do update set position = excluded.position, updated_at = now()"
            ),
            park: format!(
                "insert into {s}.parked \
                 (subscriber, position, stream_id, version, attempts, kind, message, parked_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8) \
                 on conflict (subscriber, position) do update set attempts = excluded.attempts, \
                 kind = excluded.kind, message = excluded.message, parked_at = excluded.parked_at \
                 where excluded.kind <> 'behind'"
            ),
            parked: format!(
                "select position, stream_id, version, attempts, kind, message, parked_at from {s}.parked \
                 where subscriber = $1 and position > $2 order by position limit $3"
            ),
            // The same columns, through `parked_by_stream`.
            parked_in_stream: format!(
                "select position, stream_id, version, attempts, kind, message, parked_at from {s}.parked \
                 where subscriber = $1 and stream_id = $4 and position > $2 order by position limit $3"
            ),
            unpark: format!("delete from {s}.parked where subscriber = $1 and position = $2"),
            save_snapshot: format!(
                "insert into {s}.snapshots (subscriber, stream_id, state_version, version, data) \
                 values ($1, $2, $3, $4, $5) \
                 on conflict (subscriber, stream_id, state_version, version) \
                 do update set data = excluded.data, saved_at = now()"
            ),
            load_snapshot: format!(
                "select version, data from {s}.snapshots \
                 where subscriber = $1 and stream_id = $2 and state_version = $3 and version <= $4 \
                 order by version desc limit 1"
            ),
            // One statement (R-IDEM-1; see `idempotency`): $1 the key, $2 the ttl and $3 the
            // retention in milliseconds. The generation is drawn whether or not the row is
            // taken (a sequence value is cheap; only its uniqueness matters).
            claim: format!(
                "insert into {s}.idempotency_keys as k \
                 (key, state, claimed_at, expires_at, generation, attempts, retained_until) \
                 values ($1, 'claimed', now(), now() + $2::bigint * interval '1 millisecond', \
                         nextval('{s}.idempotency_generation'), 1, \
                         now() + ($2::bigint + $3::bigint) * interval '1 millisecond') \
                 on conflict (key) do update set state = 'claimed', outcome = null, \
                 claimed_at = excluded.claimed_at, expires_at = excluded.expires_at, \
                 generation = excluded.generation, attempts = least(k.attempts, 2147483646) + 1, \
                 retained_until = excluded.retained_until \
                 where case k.state when 'claimed' then k.expires_at <= now() \
                                    when 'completed' then k.retained_until <= now() \
                                    else true end \
                 returning generation, attempts"
            ),
            // Why a claim took nothing: 1 completed (with the outcome), 2 claimed (with the
            // milliseconds to its expiry), 0 claimable by now.
            key_state: format!(
                "select case when state = 'completed' and retained_until > now() then 1 \
                             when state = 'claimed' and expires_at > now() then 2 else 0 end, \
                        outcome, (extract(epoch from expires_at - now()) * 1000)::bigint \
                 from {s}.idempotency_keys where key = $1"
            ),
            // Only the key's current claim, still claimed ($2 its generation), is finished.
            complete_claim: format!(
                "update {s}.idempotency_keys set state = 'completed', outcome = $3, \
                 retained_until = now() + $4::bigint * interval '1 millisecond' \
                 where key = $1 and generation = $2 and state = 'claimed'"
            ),
            fail_claim: format!(
                "update {s}.idempotency_keys set state = 'released', outcome = null, \
                 retained_until = now() + $3::bigint * interval '1 millisecond' \
                 where key = $1 and generation = $2 and state = 'claimed'"
            ),
            // Rows a claim holds locked are skipped, and the condition is checked again on the
            // locked rows.
            purge_keys: format!(
                "delete from {s}.idempotency_keys where retained_until <= now() and key in \
                 (select key from {s}.idempotency_keys where retained_until <= now() \
                  limit $1 for update skip locked)"
            ),
        }
    }
}

/// Settings of a pooled connection, as `SHOW` prints them (`30s`, `10s`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionSettings {
    /// `statement_timeout`.
    pub statement_timeout: String,
    /// `lock_timeout`.
    pub lock_timeout: String,
    /// `idle_in_transaction_session_timeout`.
    pub idle_in_transaction_session_timeout: String,
    /// `application_name` (`humpyard`).
    pub application_name: String,
}

impl PgEventStore {
    /// Connects a pool to `url` (anything `postgres::Config` parses: a URI or `key=value`
    /// pairs) with `config`'s timeouts, and migrates the schema.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] for a bad schema name or connection string;
    /// [`StoreError::Unavailable`] if no connection could be opened within the timeouts.
    pub fn connect(url: &str, config: PgStoreConfig) -> Result<PgEventStore, StoreError> {
        let schema = SchemaName::new(&config.schema)?;
        let mut pg: postgres::Config = url
            .parse()
            .map_err(|_| StoreError::InvalidInput(InvalidInput::ConnectionString))?;
        pg.connect_timeout(config.connect_timeout)
            .keepalives(true)
            .keepalives_idle(config.keepalive_idle)
            .application_name("humpyard")
            .options(&format!(
                "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
                millis(config.statement_timeout),
                millis(config.lock_timeout),
                millis(config.idle_in_transaction_timeout)
            ));
        // One direct connection first: an unreachable server fails here within
        // `connect_timeout` (a pool would retry until its checkout timeout), and it migrates.
        let mut first = connect_within(&pg, config.connect_timeout)?;
        schema::migrate(&mut first, &schema)?;
        let sql = Statements::new(&schema);
        check_preconditions(&mut first, &sql)?;
        drop(first);
        let pool_errors = Arc::new(AtomicU64::new(0));
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(config.checkout_timeout)
            .error_handler(Box::new(PoolErrors(pool_errors.clone())))
            .build_unchecked(Manager::new(pg.clone()));
        let store = PgEventStore {
            keys: LockKeys::new(schema.as_str()),
            keys_per_call: locks::keys_per_call(config.max_append_locks, config.pool_size.max(1)),
            gaps: Mutex::new(Gaps::default()),
            sql,
            pool,
            schema,
            pool_errors,
            pg,
            connect_timeout: config.connect_timeout,
            watch_errors: Arc::new(AtomicU64::new(0)),
            idempotency_retention_ms: crate::store::idempotency::span_millis(config.idempotency_retention),
        };
        Ok(store)
    }

    /// The settings in force on a pooled connection, as the server reports them (`SHOW`): for
    /// health checks and to prove the hygiene settings (R-PG-1).
    ///
    /// # Errors
    ///
    /// As any operation: [`StoreError::Unavailable`] and the like.
    pub fn session_settings(&self) -> Result<SessionSettings, StoreError> {
        let mut conn = self.checkout()?;
        let mut show = |name: &str| -> Result<String, StoreError> {
            let row = conn
                .query_one("select current_setting($1)", &[&name])
                .map_err(backend_error)?;
            Ok(row.get(0))
        };
        Ok(SessionSettings {
            statement_timeout: show("statement_timeout")?,
            lock_timeout: show("lock_timeout")?,
            idle_in_transaction_session_timeout: show("idle_in_transaction_session_timeout")?,
            application_name: show("application_name")?,
        })
    }

    /// One `append_batch` call for `items` (each with events; no id twice in the call), taking
    /// the advisory locks of their streams and ids. A unique violation (a tool's row took a
    /// version or an id the call meant to write; nothing of the call was written) is retried,
    /// [`CONTENTION_RETRIES`] calls in all.
    fn call_append_batch(
        &self,
        items: &[(StreamId, ExpectedVersion, Vec<NewEvent>)],
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let total: usize = items.iter().map(|(_, _, events)| events.len()).sum();
        let mut streams = Vec::with_capacity(items.len());
        let mut lo = Vec::with_capacity(items.len());
        let mut hi = Vec::with_capacity(items.len());
        let mut counts = Vec::with_capacity(items.len());
        let mut item_of = Vec::with_capacity(total);
        let mut offset_in = Vec::with_capacity(total);
        let mut ids = Vec::with_capacity(total);
        let mut types = Vec::with_capacity(total);
        let mut data = Vec::with_capacity(total);
        let mut meta = Vec::with_capacity(total);
        for (item, (stream, expect, events)) in (1i32..).zip(items) {
            streams.push(stream.as_str());
            // The server writes only where the last version is in this range (the rules'
            // encoding, not the server's).
            let admitted = append_rules::admitted_range(*expect);
            lo.push(*admitted.start());
            hi.push(*admitted.end());
            counts.push(i32::try_from(events.len()).map_err(|_| StoreError::InvalidInput(InvalidInput::OutOfRange))?);
            for (offset, event) in (1i32..).zip(events) {
                item_of.push(item);
                offset_in.push(offset);
                ids.push(event.id);
                types.push(event.event_type.as_str());
                data.push(&event.data);
                meta.push(&event.metadata);
            }
        }
        let keys = self.keys.of(items);
        let mut calls = 1;
        let row = loop {
            let result = self.checkout()?.query_one(
                &self.sql.append_batch,
                &[
                    &streams,
                    &lo,
                    &hi,
                    &counts,
                    &item_of,
                    &offset_in,
                    &ids,
                    &types,
                    &data,
                    &meta,
                    &keys,
                    &listen::CHANNEL,
                    &self.schema.as_str(),
                ],
            );
            match result {
                Ok(row) => break row,
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    if calls == CONTENTION_RETRIES {
                        return Err(StoreError::Contention(BackendError::new(
                            Some(SqlState::UNIQUE_VIOLATION.code().to_owned()),
                            e,
                        )));
                    }
                    calls += 1;
                }
                Err(e) => return Err(backend_error(e)),
            }
        };
        let answer = BatchAnswer {
            status: row.try_get(0).map_err(backend_error)?,
            first: row.try_get(1).map_err(backend_error)?,
            last: row.try_get(2).map_err(backend_error)?,
            last_version: row.try_get(3).map_err(backend_error)?,
            actual: row.try_get(4).map_err(backend_error)?,
            dup: row.try_get(5).map_err(backend_error)?,
            positions: row
                .try_get::<_, Option<Vec<i64>>>(6)
                .map_err(backend_error)?
                .unwrap_or_default(),
        };
        answer.results(items)
    }

    /// Runs a read of the rows after `after` (`statement`: position in column 0, the
    /// snapshot's `pg_snapshot_xmin` in column 8, in position order) and applies the gap rule
    /// (see `gaps`): the rows, and how many of them, from the first, the read may deliver (up
    /// to the first position that may still commit).
    fn read_after(
        &self,
        statement: &str,
        after: u64,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<(Vec<postgres::Row>, usize), StoreError> {
        let mut conn = self.checkout()?;
        let rows = conn.query(statement, params).map_err(backend_error)?;
        let Some(xmin) = rows.first().map(|row| row.get::<_, i64>(8)) else {
            return Ok((rows, 0));
        };
        // The gap rule (see `gaps`): deliver up to the first position that may still commit.
        let positions: Vec<u64> = rows.iter().map(|row| row.get::<_, i64>(0) as u64).collect();
        let cut = self.gaps.lock().cut(after, &positions, xmin, Instant::now());
        if let Some((position, below)) = cut.uncovered {
            // An id drawn now, after the read: newer than that of any transaction holding a
            // position missing below `below`.
            let id: i64 = conn
                .query_one(&self.sql.draw_xact_id, &[])
                .map_err(backend_error)?
                .get(0);
            self.gaps.lock().register(position, below, id, Instant::now());
        }
        drop(conn);
        if let Some(wait) = self.gaps.lock().due_for_log(Instant::now()) {
            log::warn!(
                schema = self.schema.as_str(), position = wait.position, waited:? = wait.waited;
                "humpyard store: readers of schema {:?} have waited {:?} at missing position {} for an older \
                 transaction to end (a long transaction on the server holds them back)",
                self.schema.as_str(), wait.waited, wait.position
            );
        }
        Ok((rows, cut.deliver))
    }

    /// Connection errors the pool met in the background (failed reconnects), since start.
    pub fn pool_errors(&self) -> u64 {
        self.pool_errors.load(Ordering::Relaxed)
    }

    /// Failures of the append watches' listening connections (each retried after a capped
    /// backoff; readers poll meanwhile), since start.
    pub fn watch_errors(&self) -> u64 {
        self.watch_errors.load(Ordering::Relaxed)
    }

    fn checkout(&self) -> Result<Pooled, StoreError> {
        self.pool
            .get()
            .map_err(|e| StoreError::Unavailable(BackendError::new(None, e)))
    }
}

/// `append_batch`'s answer (V5): whether it wrote each item, the facts it found for each, and
/// the written events' positions.
struct BatchAnswer {
    /// 0 written, 1 held back (the facts say why).
    status: Vec<i16>,
    /// An exact repeat's earlier append: its first and last positions and last version. A
    /// written item's positions come from `positions`; its last version is in `last_version`.
    first: Vec<Option<i64>>,
    last: Vec<Option<i64>>,
    last_version: Vec<Option<i64>>,
    /// The stream's last version as the item saw it.
    actual: Vec<Option<i64>>,
    /// The item's first stored id.
    dup: Vec<Option<Uuid>>,
    /// The written items' events in call order, ascending.
    positions: Vec<i64>,
}

impl BatchAnswer {
    /// The items' results, each accepted item taking its events' share of `positions` in
    /// order. Anything that does not add up (a schema this build does not know) is an error,
    /// never results paired with the wrong items.
    fn results(
        self,
        items: &[(StreamId, ExpectedVersion, Vec<NewEvent>)],
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let n = items.len();
        let columns = [
            self.first.len(),
            self.last.len(),
            self.last_version.len(),
            self.actual.len(),
            self.dup.len(),
        ];
        if self.status.len() != n || columns.iter().any(|&len| len != n) {
            return Err(malformed(format!(
                "append_batch answered {} items for {n}",
                self.status.len()
            )));
        }
        let mut positions = self.positions.iter().map(|&p| p as u64);
        let mut results = Vec::with_capacity(n);
        for (i, (stream, expect, events)) in items.iter().enumerate() {
            let last_version = self.last_version[i].map(|v| v as u64);
            let repeats = match (self.first[i], self.last[i], last_version) {
                (None, ..) => None,
                (Some(first), Some(last), Some(last_version)) => Some(Appended {
                    first_position: first as u64,
                    last_position: last as u64,
                    last_version,
                }),
                _ => {
                    return Err(malformed(
                        "append_batch answered a retry without its positions".to_owned(),
                    ))
                }
            };
            let facts = Facts {
                repeats,
                first_stored: self.dup[i],
                actual: self.actual[i].map(|v| v as u64),
            };
            // The rules judge the facts; the server wrote on clean facts only, so they must
            // agree on whether the item was written.
            let written = self.status[i] == 0;
            results.push(match append_rules::judge(stream, *expect, facts) {
                Ok(Verdict::Write) if written => {
                    let first = positions.next();
                    let last = if events.len() > 1 {
                        positions.nth(events.len() - 2)
                    } else {
                        first
                    };
                    match (first, last, last_version) {
                        (Some(first_position), Some(last_position), Some(last_version)) => Ok(Appended {
                            first_position,
                            last_position,
                            last_version,
                        }),
                        _ => return Err(malformed("append_batch answered too few positions".to_owned())),
                    }
                }
                Ok(Verdict::Replay(earlier)) if !written => Ok(earlier),
                Err(refused) if !written => Err(refused),
                verdict => {
                    return Err(malformed(format!(
                        "append_batch {} item {i}, but the append rules judge its facts {verdict:?}",
                        if written { "wrote" } else { "held back" }
                    )))
                }
            });
        }
        if positions.next().is_some() {
            return Err(malformed("append_batch answered more positions than events".to_owned()));
        }
        Ok(results)
    }
}

/// An answer of `append_batch` that does not add up. It comes after the call committed, so
/// unlike other errors of an append it does not mean nothing was written; it means the schema
/// is not the one this build migrates (an older or altered function).
fn malformed(what: String) -> StoreError {
    StoreError::Backend(BackendError::new(None, what))
}

/// Migrates `schema` on the server at `url` up to migration `last` only: the schema an older
/// humpyard left (for upgrade tests, through `humpyard::testing`).
#[cfg(feature = "testing")]
pub(crate) fn migrate_schema_to(url: &str, schema: &str, last: i32) -> Result<(), StoreError> {
    let schema = SchemaName::new(schema)?;
    let pg: postgres::Config = url
        .parse()
        .map_err(|_| StoreError::InvalidInput(InvalidInput::ConnectionString))?;
    let mut client = pg.connect(NoTls).map_err(backend_error)?;
    schema::migrate_to(&mut client, &schema, last)
}

/// Checks the rules gap-safe reading rests on (see the module docs, "Reading").
fn check_preconditions(client: &mut postgres::Client, sql: &Statements) -> Result<(), StoreError> {
    let row = client.query_one(&sql.preconditions, &[]).map_err(backend_error)?;
    let cache: Option<i64> = row.get(0);
    let trigger_enabled: bool = row.get(1);
    match cache {
        Some(1) => {}
        Some(other) => return Err(StoreError::Precondition(Precondition::SequenceCache(other))),
        None => return Err(malformed("the events table has no position sequence".to_owned())),
    }
    if !trigger_enabled {
        return Err(StoreError::Precondition(Precondition::XactIdTriggerDisabled));
    }
    Ok(())
}

/// Opens one connection, giving up after `timeout` in all. The driver's `connect_timeout`
/// bounds only the TCP connect; a server that accepts and then never answers the startup
/// handshake would hang it forever. The attempt runs on a helper thread, which is left to
/// finish (or stay blocked) on its own if the deadline passes.
fn connect_within(pg: &postgres::Config, timeout: std::time::Duration) -> Result<postgres::Client, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let pg = pg.clone();
    std::thread::Builder::new()
        .name("humpyard-pg-connect".to_owned())
        .spawn(move || {
            let _ = tx.send(pg.connect(NoTls));
        })
        .map_err(|e| StoreError::Unavailable(BackendError::new(None, e)))?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result.map_err(backend_error),
        Err(_) => Err(StoreError::Unavailable(BackendError::new(
            None,
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from the server within {timeout:?}"),
            ),
        ))),
    }
}

/// Classifies a driver error: timeouts, lost connections, and the rest.
pub(crate) fn backend_error(e: postgres::Error) -> StoreError {
    let code = e.code().cloned();
    let sqlstate = code.as_ref().map(|c| c.code().to_owned());
    // No SQLSTATE: the driver's own error. The connection is gone if it says so or the cause
    // is I/O; otherwise it is a client-side error (a type mismatch, say).
    let io = std::error::Error::source(&e).is_some_and(|cause| cause.is::<std::io::Error>());
    let closed = e.is_closed() || (code.is_none() && io);
    let backend = BackendError::new(sqlstate, e);
    match code {
        Some(c) if c == SqlState::QUERY_CANCELED || c == SqlState::LOCK_NOT_AVAILABLE => StoreError::Timeout(backend),
        Some(c) if c.code().starts_with("08") || c == SqlState::ADMIN_SHUTDOWN || c == SqlState::CRASH_SHUTDOWN => {
            StoreError::Unavailable(backend)
        }
        _ if closed => StoreError::Unavailable(backend),
        _ => StoreError::Backend(backend),
    }
}

fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::InvalidInput(InvalidInput::OutOfRange))
}

fn recorded(row: &postgres::Row) -> Result<RecordedEvent, StoreError> {
    let position = row.get::<_, i64>(0) as u64;
    let stream: String = row.get(1);
    let stream = StreamId::new(&stream).map_err(|reason| StoreError::InvalidStoredEvent { position, reason })?;
    Ok(RecordedEvent {
        position,
        stream,
        version: row.get::<_, i64>(2) as u64,
        id: row.get(3),
        event_type: row.get(4),
        data: row.get(5),
        metadata: row.get(6),
        recorded_at: row.get(7),
    })
}

impl EventStore for PgEventStore {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let mut results = self.append_many(vec![(stream.clone(), expected, events)])?;
        results
            .pop()
            .unwrap_or(Err(StoreError::InvalidInput(InvalidInput::NoEvents)))
    }

    fn append_many(
        &self,
        batch: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        // Answered here, by the request rules (`append_rules::check_request`): items with no
        // events, with a NUL character (the server would fail the whole call with it), and
        // naming one id twice. The rest go to the server in runs under the lock budget (see `locks`), or item by item
        // if an id appears in two items, so that each sees the ones before it (a repeat is a
        // retry or a duplicate). The items move into the calls; nothing is copied.
        let mut results: Vec<Option<Result<Appended, StoreError>>> = Vec::with_capacity(batch.len());
        let mut send = Vec::with_capacity(batch.len());
        let mut send_index = Vec::with_capacity(batch.len());
        let mut seen_in_call = std::collections::HashSet::new();
        let mut shared_ids = false;
        for item in batch {
            let events = &item.2;
            if let Err(refused) = append_rules::check_request(events) {
                results.push(Some(Err(refused)));
                continue;
            }
            shared_ids |= events.iter().any(|e| !seen_in_call.insert(e.id));
            send_index.push(results.len());
            results.push(None);
            send.push(item);
        }
        let runs = if shared_ids {
            (0..send.len()).map(|i| i..i + 1).collect()
        } else {
            locks::runs(&send, self.keys_per_call)
        };
        // One call per run, in order. A failed call fails its own items; until one item has
        // been written it fails the whole batch (nothing was written), so an error never hides
        // an item already committed; a lost connection fails the runs after it untried.
        let mut written = false;
        let mut unavailable: Option<StoreError> = None;
        for run in runs {
            let indices = &send_index[run.clone()];
            if let Some(e) = &unavailable {
                for &index in indices {
                    results[index] = Some(Err(e.for_another_item()));
                }
                continue;
            }
            match self.call_append_batch(&send[run]) {
                Ok(settled) => {
                    for (&index, result) in indices.iter().zip(settled) {
                        written |= result.is_ok();
                        results[index] = Some(result);
                    }
                }
                Err(e) if !written => return Err(e),
                Err(e) => {
                    for &index in indices {
                        results[index] = Some(Err(e.for_another_item()));
                    }
                    if matches!(e, StoreError::Unavailable(_)) {
                        unavailable = Some(e);
                    }
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(StoreError::InvalidInput(InvalidInput::NoEvents))))
            .collect())
    }

    fn read_stream(&self, stream: &StreamId, from_version: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = i64::try_from(max).ok();
        let from = i64::try_from(from_version).unwrap_or(i64::MAX);
        let below = limit.map_or(i64::MAX, |limit| from.saturating_add(limit));
        self.checkout()?
            .query(&self.sql.read_stream, &[&stream.as_str(), &from, &limit, &below])
            .map_err(backend_error)?
            .iter()
            .map(recorded)
            .collect()
    }

    fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = i64::try_from(max).ok();
        let from = i64::try_from(after).unwrap_or(i64::MAX);
        let (rows, deliver) = self.read_after(&self.sql.read_all, after, &[&from, &limit])?;
        // An event that cannot be decoded ends the batch; it is the error of the read that
        // starts at it (R-FT-5: reported in its own place, the rest still readable).
        let mut events = Vec::with_capacity(deliver);
        for row in &rows[..deliver] {
            match recorded(row) {
                Ok(event) => events.push(event),
                Err(e) if events.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(events)
    }

    fn read_all_filtered(&self, after: u64, max: usize, filter: &EventFilter) -> Result<FilteredRead, StoreError> {
        if filter.is_all() {
            let events = self.read_all(after, max)?;
            let passed = events.last().map_or(after, |e| e.position);
            return Ok(FilteredRead { events, passed });
        }
        let limit = i64::try_from(max).ok();
        let from = i64::try_from(after).unwrap_or(i64::MAX);
        // A type or prefix with a NUL character matches no stored event (`text` cannot hold
        // one) and the server would refuse it as a parameter: it is left out of its list, and
        // whether the list was empty ("any") is sent apart, so a list of only such entries
        // matches nothing, as in memory.
        fn usable(list: &[String]) -> Vec<&str> {
            list.iter().map(String::as_str).filter(|t| !t.contains('\0')).collect()
        }
        let (any_type, types) = (filter.types().is_empty(), usable(filter.types()));
        let (any_stream, prefixes) = (filter.prefixes().is_empty(), usable(filter.prefixes()));
        let (rows, deliver) = self.read_after(
            &self.sql.read_all_filtered,
            after,
            &[&from, &limit, &any_type, &types, &any_stream, &prefixes],
        )?;
        // Every row up to the cut is passed, delivered or left out; only the rows the filter
        // passes are decoded. One that cannot be decoded ends the batch before it and is the
        // error of the read that starts at it, as in `read_all`; one the filter leaves out is
        // passed like any other.
        let mut events = Vec::new();
        let mut passed = after;
        for (i, row) in rows[..deliver].iter().enumerate() {
            if row.get::<_, bool>(9) {
                match recorded(row) {
                    Ok(event) => events.push(event),
                    Err(e) if i == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            passed = row.get::<_, i64>(0) as u64;
        }
        Ok(FilteredRead { events, passed })
    }

    fn load_checkpoint(&self, subscriber: &str) -> Result<Option<u64>, StoreError> {
        check_subscriber(subscriber)?;
        let row = self
            .checkout()?
            .query_opt(&self.sql.load_checkpoint, &[&subscriber])
            .map_err(backend_error)?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    fn save_checkpoint(&self, subscriber: &str, position: u64) -> Result<(), StoreError> {
        check_subscriber(subscriber)?;
        let position = to_i64(position)?;
        self.checkout()?
            .execute(&self.sql.save_checkpoint, &[&subscriber, &position])
            .map_err(backend_error)?;
        Ok(())
    }

    fn reset_checkpoint(&self, subscriber: &str, position: u64) -> Result<(), StoreError> {
        subscribers::reset_checkpoint(self, subscriber, position)
    }

    fn park(&self, event: &ParkedEvent) -> Result<bool, StoreError> {
        subscribers::park(self, event)
    }

    fn parked(
        &self,
        subscriber: &str,
        stream: Option<&StreamId>,
        after: u64,
        max: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        subscribers::parked(self, subscriber, stream, after, max)
    }

    fn unpark(&self, subscriber: &str, position: u64) -> Result<bool, StoreError> {
        subscribers::unpark(self, subscriber, position)
    }

    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        subscribers::save_snapshot(self, snapshot)
    }

    fn load_snapshot(
        &self,
        subscriber: &str,
        stream: &StreamId,
        state_version: u32,
        at_most: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        subscribers::load_snapshot(self, subscriber, stream, state_version, at_most)
    }

    fn gap_wait(&self) -> Option<GapWait> {
        self.gaps.lock().wait(Instant::now())
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            pool_errors: self.pool_errors(),
            watch_errors: self.watch_errors(),
            gap_wait: self.gap_wait(),
        }
    }

    fn claim(&self, key: &IdempotencyKey, ttl: std::time::Duration) -> Result<Claim, StoreError> {
        idempotency::claim(self, key, ttl)
    }

    fn complete(&self, token: &ClaimToken, outcome: serde_json::Value) -> Result<(), StoreError> {
        idempotency::complete(self, token, outcome)
    }

    fn fail(&self, token: &ClaimToken) -> Result<(), StoreError> {
        idempotency::fail(self, token)
    }

    fn purge_idempotency_keys(&self, max: usize) -> Result<usize, StoreError> {
        idempotency::purge(self, max)
    }

    fn watch(&self) -> Box<dyn AppendWatch> {
        Box::new(listen::PgWatch::new(
            self.pg.clone(),
            self.connect_timeout,
            self.schema.as_str().to_owned(),
            self.watch_errors.clone(),
        ))
    }
}
