//! `postgres`: the store's append path against the raw insert ceiling of the same server.
//!
//! Both sides write the same rows (one event per item, uniform over the streams) in batches,
//! from the same number of threads: humpyard through `PgEventStore::append_many` (one statement
//! per batch: version and id checks under the append lock, per-item results), the ceiling
//! through a plain multi-row `INSERT ... SELECT FROM unnest(...)` of the same columns into a
//! table of the same shape, with no checks. Runs alternate; the median is kept.
//!
//! The third side is the whole durable path: the same appends while a `Pipeline` subscribes,
//! dispatches every event to a handler on the engine and checkpoints; the time runs until the
//! checkpoint reaches the last appended position.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use humpyard::pipeline::Pipeline;
use humpyard::pipeline::StreamHandler;
use humpyard::store::{RecordedEvent, SubscriptionConfig};

use humpyard::store::{EventStore, ExpectedVersion, NewEvent, PgEventStore, PgStoreConfig};
use humpyard::testing::ThrowawayPostgres;
use humpyard::StreamId;
use serde_json::json;
use uuid::Uuid;

use crate::report::Row;

/// Options of `postgres`.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub events: u64,
    pub batch: usize,
    pub threads: usize,
    pub streams: u64,
    pub runs: usize,
}

impl PgOptions {
    /// The appends each writer makes: an equal share of `events`.
    pub(crate) fn per_writer(&self) -> u64 {
        self.events / self.threads as u64
    }

    /// The events a run appends: `events` rounded down to a multiple of the writers.
    pub(crate) fn appended(&self) -> u64 {
        self.per_writer() * self.threads as u64
    }
}

/// A plain connection for the harness's own statements.
pub(crate) fn plain_client(url: &str) -> Result<postgres::Client, String> {
    postgres::Client::connect(url, postgres::NoTls).map_err(|e| describe(&e))
}

/// What went wrong, in the server's words when it sent any (the driver's own `Display` of a
/// server error is only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |db| db.message().to_owned())
}

/// `DATABASE_URL`, or a throwaway server (kept alive by the first element) and its URL.
pub(crate) fn server() -> Result<(Option<ThrowawayPostgres>, String), String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) => Ok((None, url)),
        Err(_) => {
            let server = ThrowawayPostgres::start().map_err(|e| format!("throwaway server: {e}"))?;
            let url = server.url();
            println!("throwaway PostgreSQL server on port {}", server.port());
            Ok((Some(server), url))
        }
    }
}

/// Runs the comparison on `DATABASE_URL` or a throwaway server.
pub fn run(o: &PgOptions) -> Result<Vec<Row>, String> {
    let (_server, url) = server()?;
    let ids: Arc<Vec<StreamId>> = Arc::new(
        (0..o.streams)
            .map(|i| StreamId::new(&format!("s-{i}")).expect("valid id"))
            .collect(),
    );
    let mut samples: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for run in 0..o.runs.max(1) {
        let schema = format!("perf_{}_{run}", std::process::id());
        let mut config = PgStoreConfig::default();
        config.schema = schema.clone();
        config.pool_size = o.threads as u32 + 1;
        let store = Arc::new(PgEventStore::connect(&url, config).map_err(|e| e.to_string())?);
        samples[0].push(append_store(&store, &ids, o));
        samples[1].push(raw_insert(&url, &schema, &ids, o)?);
        let mut config = PgStoreConfig::default();
        config.schema = format!("{schema}_path");
        config.pool_size = o.threads as u32 + 2;
        let store = Arc::new(PgEventStore::connect(&url, config).map_err(|e| e.to_string())?);
        samples[2].push(durable_path(&store, &ids, o)?);
    }
    let mut rows = Vec::new();
    for (i, system) in ["humpyard-append-many", "raw-insert-ceiling", "humpyard-durable-path"]
        .into_iter()
        .enumerate()
    {
        let s = &mut samples[i];
        s.sort_by(f64::total_cmp);
        let seconds = s[s.len() / 2];
        let rates: Vec<String> = s.iter().map(|t| format!("{:.0}", o.events as f64 / t)).collect();
        let scenario = if i == 2 {
            "pg-durable-path-uniform"
        } else {
            "pg-append-uniform"
        };
        let row = Row::throughput(scenario, system, o.events, seconds, None);
        println!(
            "  {system:<22} {:>10.0} events/s   (runs: {})",
            row.events_per_sec,
            rates.join(" / ")
        );
        rows.push(row);
    }
    println!(
        "  append_many / raw insert ceiling: {:.0}%;  durable path / raw insert ceiling: {:.0}%",
        100.0 * rows[0].events_per_sec / rows[1].events_per_sec,
        100.0 * rows[2].events_per_sec / rows[1].events_per_sec
    );
    Ok(rows)
}

/// Seconds to append `o.events` through the store.
pub(crate) fn append_store(store: &Arc<PgEventStore>, ids: &Arc<Vec<StreamId>>, o: &PgOptions) -> f64 {
    let per_thread = o.per_writer();
    let start = Arc::new(Barrier::new(o.threads + 1));
    let threads: Vec<_> = (0..o.threads)
        .map(|t| {
            let (store, ids, start, o) = (store.clone(), ids.clone(), start.clone(), o.clone());
            std::thread::spawn(move || {
                let mut batch = Vec::with_capacity(o.batch);
                start.wait();
                for n in 0..per_thread {
                    let key = (n * o.threads as u64 + t as u64) % o.streams;
                    let event = NewEvent::new("perf", json!({ "n": n }));
                    batch.push((ids[key as usize].clone(), ExpectedVersion::Any, vec![event]));
                    if batch.len() == o.batch || n + 1 == per_thread {
                        let results = store.append_many(std::mem::take(&mut batch)).expect("append_many");
                        assert!(results.iter().all(Result::is_ok), "an append failed");
                    }
                }
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for t in threads {
        t.join().expect("appender");
    }
    began.elapsed().as_secs_f64()
}

/// Seconds to insert the same rows with plain multi-row inserts into a copy of the table.
fn raw_insert(url: &str, schema: &str, ids: &Arc<Vec<StreamId>>, o: &PgOptions) -> Result<f64, String> {
    let table = format!("\"{schema}\".raw_events");
    let mut setup = plain_client(url)?;
    setup
        .batch_execute(&format!(
            "create table {table} (like \"{schema}\".events including defaults including identity including indexes)"
        ))
        .map_err(|e| describe(&e))?;
    let per_thread = o.per_writer();
    let start = Arc::new(Barrier::new(o.threads + 1));
    let insert = format!(
        "insert into {table} (stream_id, version, event_id, event_type, data, metadata) \
         select s, v, i, 'perf', d, '{{}}'::jsonb from unnest($1::text[], $2::bigint[], $3::uuid[], $4::jsonb[]) as u(s, v, i, d)"
    );
    let threads: Vec<_> = (0..o.threads)
        .map(|t| {
            let (ids, start, o, insert) = (ids.clone(), start.clone(), o.clone(), insert.clone());
            let mut client = plain_client(url)?;
            Ok(std::thread::spawn(move || {
                let (mut streams, mut versions, mut uuids, mut data) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                start.wait();
                for n in 0..per_thread {
                    let key = (n * o.threads as u64 + t as u64) % o.streams;
                    streams.push(ids[key as usize].as_str().to_owned());
                    // Versions made unique per thread so the (stream, version) index accepts them.
                    versions.push((n * o.threads as u64 + t as u64) as i64);
                    uuids.push(Uuid::now_v7());
                    data.push(json!({ "n": n }));
                    if streams.len() == o.batch || n + 1 == per_thread {
                        client
                            .execute(&insert, &[&streams, &versions, &uuids, &data])
                            .expect("raw insert");
                        streams.clear();
                        versions.clear();
                        uuids.clear();
                        data.clear();
                    }
                }
            }))
        })
        .collect::<Result<Vec<_>, String>>()?;
    start.wait();
    let began = Instant::now();
    for t in threads {
        t.join().map_err(|_| "inserter panicked".to_owned())?;
    }
    Ok(began.elapsed().as_secs_f64())
}

/// Counts what the pipeline hands it.
pub(crate) struct Count(pub(crate) AtomicU64);

impl StreamHandler for Count {
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) {}

    fn apply(&self, _: &mut (), _: &RecordedEvent) {}

    fn handle(&self, _: &(), _: &RecordedEvent) -> Result<(), String> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Seconds from the first append until the pipeline's checkpoint reaches the last position.
fn durable_path(store: &Arc<PgEventStore>, ids: &Arc<Vec<StreamId>>, o: &PgOptions) -> Result<f64, String> {
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let mut subscription = SubscriptionConfig::default();
    subscription.batch_size = 2000;
    let pipeline = Pipeline::builder(dyn_store, "perf", Count(AtomicU64::new(0)))
        .checkpoint_interval(Duration::from_millis(20))
        .subscription(subscription)
        .start()
        .map_err(|e| e.to_string())?;
    let began = Instant::now();
    append_store(store, ids, o);
    // A fresh schema and appends that all succeed: positions run 1..=total with no gap.
    let last = o.appended();
    while !pipeline.wait_for(last, Duration::from_secs(1)) {}
    let seconds = began.elapsed().as_secs_f64();
    let report = pipeline.shutdown(Duration::from_secs(10));
    if report.stats.handled != last {
        return Err(format!("the pipeline handled {} events", report.stats.handled));
    }
    Ok(seconds)
}
