//! `postgres --rows N`: the durable path as the events table grows, and the catch-up of a new
//! subscriber over all of it.
//!
//! 1. **Fill.** `N` one-event appends through `append_many` (over `--streams` streams, batches
//!    of `--batch`, `--threads` writers) into one store, in steps of `--step`. After each step,
//!    a probe pair on the same server: `--probe` appends to the big table and as many to a
//!    fresh small table (a schema of its own, dropped after), so each size's ratio big / small
//!    comes from one moment of this noisy machine.
//!
//!    **A fair pair.** Before the pair the server is settled: the fill's rows are vacuumed and
//!    analysed (what autovacuum does to them in the background a little later: left to it, it
//!    lands on whichever probe runs then) and a checkpoint is taken, so neither side pays for
//!    what the fill left behind. The probe is then cut into `--rounds` slices a side, run in
//!    ABBA order (big, fresh, fresh, big, big, ...), so a drift of the machine's speed within
//!    the pair falls on both sides alike. The time a side took is the sum of its slices.
//! 2. **Catch-up.** A new subscriber's `Pipeline` reads the whole table from position 0,
//!    dispatches every event to a counting handler and checkpoints; then a raw keyset read of
//!    the same rows (`select` the columns a store reads, `where position > $1 order by position
//!    limit 5000`, until none are left) on one connection, with no engine.
//!
//! The server's settings that decide much of it are printed with the figures.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use humpyard::pipeline::Pipeline;
use humpyard::store::{EventStore, PgEventStore, PgStoreConfig, SubscriptionConfig};
use humpyard::StreamId;

use crate::postgres::{append_store, describe, plain_client, server, Count, PgOptions};
use crate::report::Row;

/// Options of `postgres --rows N`.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    pub rows: u64,
    pub step: u64,
    pub probe: u64,
    pub batch: usize,
    pub threads: usize,
    pub streams: u64,
    /// Slices a side of each probe pair, run in ABBA order (an even count balances a steady
    /// drift of the machine's speed; 1 is a plain big-then-fresh pair).
    pub rounds: u64,
}

/// Runs the fill with its probes, then the catch-up, on `DATABASE_URL` or a throwaway server.
pub fn run(o: &ScaleOptions) -> Result<Vec<Row>, String> {
    let (_server, url) = server()?;
    print_settings(&url)?;
    let ids: Arc<Vec<StreamId>> = Arc::new(
        (0..o.streams)
            .map(|i| StreamId::new(&format!("s-{i}")).expect("valid id"))
            .collect(),
    );
    let schema = format!("perf_scale_{}", std::process::id());
    let big = connect(&url, &schema, o.threads)?;
    // Settling needs the right to `checkpoint` (a superuser's, or `pg_checkpoint`'s): find out
    // now, not after the first fill.
    settle(&url, &schema)?;
    let appends = |events: u64| PgOptions {
        events,
        batch: o.batch,
        threads: o.threads,
        streams: o.streams,
        runs: 1,
    };
    let mut rows = Vec::new();
    let mut appended = 0u64;
    println!(
        "  {:>12} {:>14} {:>10} {:>16} {:>16} {:>8}",
        "table rows", "fill events/s", "settle s", "probe big /s", "probe small /s", "big/small"
    );
    let mut probe_no = 0;
    while appended < o.rows {
        let step = o.step.min(o.rows - appended);
        let fill = appends(step);
        let seconds = append_store(&big, &ids, &fill);
        appended += fill.appended();
        let settled = settle(&url, &schema)?;
        let small_schema = format!("{schema}_small_{probe_no}");
        probe_no += 1;
        let small = connect(&url, &small_schema, o.threads)?;
        let slice = appends((o.probe / o.rounds).max(o.threads as u64));
        let (mut big_seconds, mut small_seconds) = (0.0, 0.0);
        for n in 0..2 * o.rounds {
            // ABBA: the big table takes slices 0, 3, 4, 7, 8, ...
            if matches!(n % 4, 0 | 3) {
                big_seconds += append_store(&big, &ids, &slice);
            } else {
                small_seconds += append_store(&small, &ids, &slice);
            }
        }
        let probed = slice.appended() * o.rounds;
        appended += probed;
        drop(small);
        drop_schema(&url, &small_schema)?;
        let at = format!("{:.1}M rows", appended as f64 / 1e6);
        let big_row = Row::throughput(&at, "append-many-big-table", probed, big_seconds, None);
        let small_row = Row::throughput(&at, "append-many-fresh-table", probed, small_seconds, None);
        println!(
            "  {:>12} {:>14.0} {:>10.1} {:>16.0} {:>16.0} {:>7.0}%",
            appended,
            step as f64 / seconds,
            settled,
            big_row.events_per_sec,
            small_row.events_per_sec,
            100.0 * big_row.events_per_sec / small_row.events_per_sec
        );
        rows.push(big_row);
        rows.push(small_row);
    }
    let catch_up = catch_up(&big, appended)?;
    let raw = raw_read(&url, &schema, appended)?;
    println!(
        "  catch-up of a new subscriber over {appended} rows: {:.0} events/s; raw keyset read: {:.0} rows/s; catch-up / raw read: {:.0}%",
        appended as f64 / catch_up,
        appended as f64 / raw,
        100.0 * raw / catch_up
    );
    let at = format!("catch-up over {:.1}M rows", appended as f64 / 1e6);
    rows.push(Row::throughput(&at, "humpyard-catch-up", appended, catch_up, None));
    rows.push(Row::throughput(&at, "raw-keyset-read", appended, raw, None));
    if std::env::var("DATABASE_URL").is_ok() {
        drop(big);
        drop_schema(&url, &schema)?;
    }
    Ok(rows)
}

fn connect(url: &str, schema: &str, threads: usize) -> Result<Arc<PgEventStore>, String> {
    let mut config = PgStoreConfig::default();
    config.schema = schema.to_owned();
    config.pool_size = threads as u32 + 2;
    PgEventStore::connect(url, config)
        .map(Arc::new)
        .map_err(|e| format!("{schema}: {e}"))
}

/// Settles the server before a probe pair: vacuums and analyses the big table (the fill's rows,
/// which autovacuum would otherwise take on during whichever probe runs next) and takes a
/// checkpoint (the fill's dirty pages). Returns the seconds it took.
fn settle(url: &str, schema: &str) -> Result<f64, String> {
    let began = Instant::now();
    let mut client = plain_client(url)?;
    // One statement each: several in one simple query are one transaction, which vacuum refuses.
    for statement in [format!("vacuum (analyze) \"{schema}\".events"), "checkpoint".to_owned()] {
        client
            .batch_execute(&statement)
            .map_err(|e| format!("settling the server ({statement}): {}", describe(&e)))?;
    }
    Ok(began.elapsed().as_secs_f64())
}

fn drop_schema(url: &str, schema: &str) -> Result<(), String> {
    let mut client = plain_client(url)?;
    client
        .batch_execute(&format!("drop schema \"{schema}\" cascade"))
        .map_err(|e| describe(&e))
}

/// Prints the settings that decide much of an at-scale run.
fn print_settings(url: &str) -> Result<(), String> {
    let mut client = plain_client(url)?;
    let mut shown = Vec::new();
    for name in [
        "server_version",
        "shared_buffers",
        "work_mem",
        "effective_cache_size",
        "max_wal_size",
        "fsync",
        "synchronous_commit",
    ] {
        let row = client
            .query_one(&format!("show {name}"), &[])
            .map_err(|e| describe(&e))?;
        shown.push(format!("{name}={}", row.get::<_, String>(0)));
    }
    println!("  server: {}", shown.join(" "));
    Ok(())
}

/// Seconds for a new subscriber to dispatch and checkpoint positions `1..=last`.
fn catch_up(store: &Arc<PgEventStore>, last: u64) -> Result<f64, String> {
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let mut subscription = SubscriptionConfig::default();
    subscription.batch_size = 5000;
    let began = Instant::now();
    let pipeline = Pipeline::builder(dyn_store, "catch-up", Count(AtomicU64::new(0)))
        .checkpoint_interval(Duration::from_millis(100))
        .subscription(subscription)
        .start()
        .map_err(|e| e.to_string())?;
    while !pipeline.wait_for(last, Duration::from_secs(1)) {}
    let seconds = began.elapsed().as_secs_f64();
    let report = pipeline.shutdown(Duration::from_secs(30));
    if report.stats.handled != last {
        return Err(format!(
            "the catch-up handled {} of {last} events",
            report.stats.handled
        ));
    }
    Ok(seconds)
}

/// Seconds to read every row of the events table by keyset pages on one connection.
fn raw_read(url: &str, schema: &str, last: u64) -> Result<f64, String> {
    let mut client = plain_client(url)?;
    let page = client
        .prepare(&format!(
            "select position, stream_id, version, event_id, event_type, data, metadata, recorded_at \
             from \"{schema}\".events where position > $1 order by position limit 5000"
        ))
        .map_err(|e| describe(&e))?;
    let began = Instant::now();
    let (mut after, mut read) = (0i64, 0u64);
    loop {
        let rows = client.query(&page, &[&after]).map_err(|e| describe(&e))?;
        let Some(end) = rows.last() else { break };
        after = end.get(0);
        for row in &rows {
            // Decode what a store decodes, so the read is not cheaper than one.
            let _: (String, i64, uuid::Uuid, String, serde_json::Value, serde_json::Value) =
                (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5), row.get(6));
        }
        read += rows.len() as u64;
    }
    if read != last {
        return Err(format!("the raw read found {read} of {last} rows"));
    }
    Ok(began.elapsed().as_secs_f64())
}
