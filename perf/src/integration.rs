//! `integration`: the cost of exactly-once effects. The same stored events go through two
//! subscribers of one store: the plain durable path (a `Pipeline` whose handler counts) and an
//! `Integration` whose reaction emits one command per event, performed by an in-process command
//! handler under its route's breaker and bulkhead, each effect's idempotency key claimed before
//! and completed after (two store calls per effect). The events are appended first; the clock
//! runs from the start of each subscriber until its watermark reaches the last position. Runs
//! alternate which side goes first; the median is kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use humpyard::integration::{Command, Effect, Integration, Reactor, RoutePolicy, Routes};
use humpyard::pipeline::Pipeline;
use humpyard::store::{
    Claim, EventStore, ExpectedVersion, IdempotencyKey, InMemoryStore, NewEvent, PgEventStore, PgStoreConfig,
    RecordedEvent, SubscriptionConfig,
};
use humpyard::{EngineConfig, StreamId};
use serde_json::{json, Value};

use crate::postgres::Count;
use crate::report::Row;

/// Options of `integration`.
#[derive(Debug, Clone)]
pub struct IntegrationOptions {
    pub memory_events: u64,
    pub pg_events: u64,
    pub streams: u64,
    pub runs: usize,
    pub stores: Vec<String>,
    /// The integration's engine workers: its effects wait on the store (two statements each).
    pub effect_workers: usize,
}

/// Runs the comparison on each store asked for.
pub fn run(o: &IntegrationOptions) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for store in &o.stores {
        match store.as_str() {
            "memory" => rows.extend(compare("memory", o.memory_events, o, &|_| {
                Ok(Arc::new(InMemoryStore::new()) as Arc<dyn EventStore>)
            })?),
            "postgres" => {
                let (_server, url) = crate::postgres::server()?;
                rows.extend(compare("postgres", o.pg_events, o, &|run| {
                    let mut config = PgStoreConfig::default();
                    config.schema = format!("perf_fx_{}_{run}", std::process::id());
                    config.pool_size = o.effect_workers as u32 + 4;
                    let store = PgEventStore::connect(&url, config).map_err(|e| e.to_string())?;
                    Ok(Arc::new(store) as Arc<dyn EventStore>)
                })?);
            }
            other => return Err(format!("--stores: unknown {other:?} (memory, postgres)")),
        }
    }
    Ok(rows)
}

type OpenStore<'a> = &'a dyn Fn(usize) -> Result<Arc<dyn EventStore>, String>;

fn compare(name: &str, events: u64, o: &IntegrationOptions, open: OpenStore<'_>) -> Result<Vec<Row>, String> {
    println!(
        "{name}: {events} events over {} streams, {} runs; the integration's engine has {} workers",
        o.streams,
        o.runs.max(1),
        o.effect_workers
    );
    let mut plain = Vec::new();
    let mut effects = Vec::new();
    let mut ceiling = Vec::new();
    for run in 0..o.runs.max(1) {
        let store = open(run)?;
        let last = preload(&*store, events, o.streams)?;
        if run % 2 == 0 {
            plain.push(plain_path(&store, last)?);
            effects.push(effect_path(&store, last, o.effect_workers)?);
        } else {
            effects.push(effect_path(&store, last, o.effect_workers)?);
            plain.push(plain_path(&store, last)?);
        }
        ceiling.push(claim_ceiling(&store, events, o.effect_workers.max(2), run)?);
    }
    let mut rows = Vec::new();
    for (system, samples) in [
        ("humpyard-durable-path", &mut plain),
        ("humpyard-integration", &mut effects),
        ("store-claim-complete", &mut ceiling),
    ] {
        samples.sort_by(f64::total_cmp);
        let seconds = samples[samples.len() / 2];
        let rates: Vec<String> = samples.iter().map(|t| format!("{:.0}", events as f64 / t)).collect();
        let row = Row::throughput(&format!("integration-{name}"), system, events, seconds, None);
        println!(
            "  {system:<22} {:>10.0} events/s   (runs: {})",
            row.events_per_sec,
            rates.join(" / ")
        );
        rows.push(row);
    }
    println!(
        "  integration / durable path: {:.0}% (one effect per event, its key claimed and completed)",
        100.0 * rows[1].events_per_sec / rows[0].events_per_sec
    );
    println!(
        "  integration / the store's own claim + complete rate: {:.0}%",
        100.0 * rows[1].events_per_sec / rows[2].events_per_sec
    );
    Ok(rows)
}

/// Appends `events` events round-robin over `streams` streams, 500 a batch; the last position.
fn preload(store: &dyn EventStore, events: u64, streams: u64) -> Result<u64, String> {
    let ids: Vec<StreamId> = (0..streams)
        .map(|i| StreamId::new(&format!("s-{i}")).expect("valid id"))
        .collect();
    let mut last = 0;
    let mut n = 0;
    while n < events {
        let batch: Vec<_> = (n..(n + 500).min(events))
            .map(|i| {
                let event = NewEvent::new("happened", json!({ "i": i }));
                (ids[(i % streams) as usize].clone(), ExpectedVersion::Any, vec![event])
            })
            .collect();
        n += batch.len() as u64;
        for result in store.append_many(batch).map_err(|e| e.to_string())? {
            last = last.max(result.map_err(|e| e.to_string())?.last_position);
        }
    }
    Ok(last)
}

fn subscription() -> SubscriptionConfig {
    let mut subscription = SubscriptionConfig::default();
    subscription.batch_size = 2000;
    subscription
}

/// Seconds for a plain pipeline to take its watermark to `last`.
fn plain_path(store: &Arc<dyn EventStore>, last: u64) -> Result<f64, String> {
    let began = Instant::now();
    let pipeline = Pipeline::builder(Arc::clone(store), "plain", Count(AtomicU64::new(0)))
        .checkpoint_interval(Duration::from_millis(20))
        .subscription(subscription())
        .start()
        .map_err(|e| e.to_string())?;
    while !pipeline.wait_for(last, Duration::from_secs(1)) {}
    let seconds = began.elapsed().as_secs_f64();
    pipeline.shutdown(Duration::from_secs(10));
    Ok(seconds)
}

/// One command per event.
struct OneEach;

impl Reactor for OneEach {
    type State = ();

    fn init(&self, _: &StreamId) {}

    fn apply(&self, _: &mut (), _: &RecordedEvent) {}

    fn react(&self, _: &(), event: &RecordedEvent) -> Vec<Command> {
        vec![Command::new("effect", json!({ "i": event.position })).expect("a valid command")]
    }
}

/// Seconds for an integration to take its watermark to `last`, every effect run once.
fn effect_path(store: &Arc<dyn EventStore>, last: u64, workers: usize) -> Result<f64, String> {
    let ran = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&ran);
    let routes = Routes::new()
        .route_with(
            "effect",
            move |_: &Command, _: &Effect<'_>| {
                r.fetch_add(1, Ordering::Relaxed);
                Ok::<Value, String>(Value::Null)
            },
            RoutePolicy::default().with_max_concurrent(64),
        )
        .map_err(|e| e.to_string())?;
    let began = Instant::now();
    let integration = Integration::builder(Arc::clone(store), "effects", OneEach, routes)
        .pipeline(move |p| {
            p.checkpoint_interval(Duration::from_millis(20))
                .subscription(subscription())
                .engine(EngineConfig::default().workers(workers))
        })
        .start()
        .map_err(|e| e.to_string())?;
    while !integration.pipeline().wait_for(last, Duration::from_secs(1)) {}
    let seconds = began.elapsed().as_secs_f64();
    let report = integration.shutdown(Duration::from_secs(10));
    if ran.load(Ordering::Relaxed) != last || report.stats.effects != last {
        return Err(format!(
            "{} effects ran for {last} events ({:?})",
            ran.load(Ordering::Relaxed),
            report.stats
        ));
    }
    Ok(seconds)
}

/// Seconds for `threads` threads to claim and complete `events` fresh keys straight on the
/// store: the ceiling of the two store calls each effect makes.
fn claim_ceiling(store: &Arc<dyn EventStore>, events: u64, threads: usize, run: usize) -> Result<f64, String> {
    let began = Instant::now();
    let per = events / threads as u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(store);
            std::thread::spawn(move || -> Result<(), String> {
                for i in 0..per {
                    let key = IdempotencyKey::new(format!("ceiling:{run}:{t}:{i}")).map_err(|e| e.to_string())?;
                    match store.claim(&key, Duration::from_secs(60)).map_err(|e| e.to_string())? {
                        Claim::Claimed(token) => store.complete(&token, Value::Null).map_err(|e| e.to_string())?,
                        other => return Err(format!("a fresh key answered {other:?}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle.join().map_err(|_| "a claimer panicked".to_owned())??;
    }
    // Scaled to `events`, as the other rows are.
    Ok(began.elapsed().as_secs_f64() * events as f64 / (per * threads as u64) as f64)
}
