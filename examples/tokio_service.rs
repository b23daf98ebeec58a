//! humpyard inside an async service: tokio tasks feed the engine with `submit_async` (a task
//! waiting for room, never a blocked executor thread) and record what they accept through
//! `AsyncStore` (the synchronous store's calls on threads of its own).
//!
//! Four request tasks each place 5 000 orders for 50 customers. The engine keeps a running
//! total per customer (one stream each, in order); its shards hold only 64 events each, so the
//! tasks keep meeting full shards and wait as tasks. A shutdown signal ends the intake: a task
//! that is waiting for room when it fires keeps its order (`select!` drops the submit future,
//! and the event is still in the task's `Option`), and gives it back as not taken.
//!
//! Run: `cargo run --release --example tokio_service`. humpyard names no runtime; this example
//! uses tokio's multi-thread runtime, and no logger (see the README's "Logging and panics").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use humpyard::store::{AsyncStore, ExpectedVersion, InMemoryStore, NewEvent};
use humpyard::{Engine, Event, Handler, StreamId};
use serde_json::json;

/// The running total of each customer's orders, in cents.
struct Totals {
    totals: Arc<Mutex<HashMap<String, u64>>>,
}

impl Handler for Totals {
    type Payload = u64;
    type State = u64;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, total: &mut u64, order: &Event<u64>) -> Result<(), String> {
        *total += order.payload();
        self.totals
            .lock()
            .unwrap()
            .insert(order.stream().as_str().to_owned(), *total);
        Ok(())
    }
}

const TASKS: u64 = 4;
const ORDERS: u64 = 5_000;
const CUSTOMERS: u64 = 50;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let totals = Arc::new(Mutex::new(HashMap::new()));
    let engine = Arc::new(
        Engine::builder(Totals { totals: totals.clone() })
            .workers(2)
            .shards(4)
            .shard_capacity(64)
            .start()?,
    );
    let store = AsyncStore::new(Arc::new(InMemoryStore::new()), 2)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);

    // Phase 1: every order is taken; full shards make tasks wait, never refuse.
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let engine = engine.clone();
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..ORDERS {
                    let customer = StreamId::new(&format!("customer-{}", (t * ORDERS + n) % CUSTOMERS))?;
                    let mut order = Some(Event::new(customer, 100 + n % 7));
                    engine.submit_async(&mut order).await?;
                }
                // One audit record per task, appended on the store's own threads.
                let audit = StreamId::new(&format!("intake-{t}"))?;
                let record = NewEvent::new("intake-finished", json!({ "orders": ORDERS }));
                store.append(audit, ExpectedVersion::NoStream, vec![record]).await?;
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .collect();
    for task in tasks {
        task.await?.map_err(|e| e as Box<dyn std::error::Error>)?;
    }

    // Phase 2: a task that races each submit with the shutdown signal. The worker is kept busy
    // by a burst, so some submits wait; when the signal fires, the waiting one is dropped and
    // its order is still the task's.
    let late = {
        let engine = engine.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            loop {
                let mut order = Some(Event::new(StreamId::new("customer-late").unwrap(), 1u64));
                tokio::select! {
                    taken = engine.submit_async(&mut order) => taken.expect("open until shutdown"),
                    // The submit future is dropped here, waiting or not: the order is still ours.
                    _ = stopped.changed() => break order.take(),
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(true)?;
    let kept = late.await?;

    let report = tokio::task::spawn_blocking({
        let engine = engine.clone();
        move || engine.shutdown(Duration::from_secs(10))
    })
    .await?;
    let audits = store.read_all(0, 100).await?;
    let m = engine.metrics();
    let totals = totals.lock().unwrap();
    let placed: u64 = (0..TASKS * ORDERS).map(|i| 100 + (i % ORDERS) % 7).sum();
    let booked: u64 = totals
        .iter()
        .filter(|(customer, _)| customer.as_str() != "customer-late")
        .map(|(_, total)| total)
        .sum();

    println!(
        "orders taken: {} (refused {}), handled: {}",
        m.accepted, m.rejected, m.processed
    );
    println!(
        "customers: {}, booked total {booked} of {placed} placed",
        totals.len() - 1
    );
    println!("intake records appended through the async store: {}", audits.len());
    println!(
        "at the shutdown signal, the late task kept its order: {}",
        kept.is_some()
    );
    assert!(report.unprocessed.is_empty(), "shutdown drained every taken order");
    assert_eq!(
        m.rejected, 0,
        "a waiting submit is never refused while the engine is open"
    );
    assert_eq!(m.accepted, m.processed);
    assert_eq!(booked, placed, "every order of phase 1 booked once");
    assert_eq!(audits.len() as u64, TASKS);
    Ok(())
}
