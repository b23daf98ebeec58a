//! Orders reserve stock through a warehouse service that fails, times out, sometimes hangs, and
//! goes down for a while. The storefront's orders come in through a supervised inbound source;
//! each placed order causes one reservation, performed under the route's circuit breaker and
//! bulkhead with an idempotency key. The run prints the breaker opening and closing, the
//! retries and the dead letters; stops the integration in the middle, rewinds its checkpoint
//! (as if a crash had lost it) and starts it again; and proves at the end that no reservation
//! ran twice.
//!
//! `cargo run --release --example orders` (in memory), or with `DATABASE_URL=postgres://...`
//! against PostgreSQL (a fresh schema of its own).

#[path = "orders/app.rs"]
mod app;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::{Order, Reservations, Reserve, PLACE, RESERVE};
use humpyard::integration::{
    Command, Effect, Integration, Observed, RoutePolicy, Routes, SendError, Source, SourceContext, SourceError,
};
use humpyard::resilience::BreakerConfig;
use humpyard::store::{EventStore, IdempotencyKey, InMemoryStore};
#[cfg(feature = "postgres")]
use humpyard::store::{PgEventStore, PgStoreConfig};
use humpyard::EngineConfig;
use serde_json::{json, Value};

const ORDERS: u64 = 2_000;
/// Every this many orders asks for a quantity of 0, which the warehouse always refuses.
const POISON_EVERY: u64 = 500;

/// Why the warehouse said no.
#[derive(Debug)]
enum WarehouseError {
    Unavailable,
    TimedOut,
    InvalidQuantity,
}

impl std::fmt::Display for WarehouseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WarehouseError::Unavailable => "503 service unavailable",
            WarehouseError::TimedOut => "timed out waiting for the warehouse",
            WarehouseError::InvalidQuantity => "422 invalid quantity",
        })
    }
}

impl std::error::Error for WarehouseError {}

/// The external service, simulated. It deduplicates by the Idempotency-Key (as a well-made API
/// does), and counts what it really did.
#[derive(Default)]
struct Warehouse {
    /// Answers by idempotency key.
    answers: Mutex<HashMap<String, Value>>,
    /// Reservations made per order (the effect; more than 1 would be a double reservation).
    reserved: Mutex<HashMap<String, u32>>,
    /// Calls for a key whose success the client had already been told of: an effect repeated.
    repeats: AtomicU64,
    told: Mutex<std::collections::HashSet<String>>,
    calls: AtomicU64,
    down: AtomicBool,
}

impl Warehouse {
    fn reserve(&self, key: &str, reserve: &Reserve) -> Result<Value, WarehouseError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.told.lock().unwrap().contains(key) {
            self.repeats.fetch_add(1, Ordering::Relaxed);
        }
        if self.down.load(Ordering::Relaxed) {
            return Err(WarehouseError::Unavailable);
        }
        if reserve.qty == 0 {
            return Err(WarehouseError::InvalidQuantity);
        }
        let roll = mix(call) % 1000;
        if roll < 60 {
            return Err(WarehouseError::Unavailable);
        }
        if roll < 65 {
            // Hangs until the client gives up.
            std::thread::sleep(Duration::from_millis(200));
            return Err(WarehouseError::TimedOut);
        }
        let answer = self.apply(key, reserve);
        if roll < 95 {
            // Done, but the answer is lost: the client sees a timeout and retries with the key.
            return Err(WarehouseError::TimedOut);
        }
        self.told.lock().unwrap().insert(key.to_owned());
        Ok(answer)
    }

    fn apply(&self, key: &str, reserve: &Reserve) -> Value {
        let mut answers = self.answers.lock().unwrap();
        if let Some(answer) = answers.get(key) {
            return answer.clone();
        }
        *self.reserved.lock().unwrap().entry(reserve.order.clone()).or_default() += 1;
        let answer = json!({ "reservation": format!("R-{}", answers.len() + 1) });
        answers.insert(key.to_owned(), answer.clone());
        answer
    }
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The storefront: sends orders `next..ORDERS` as `order.place` commands, keyed by order number
/// so that an order resent after a restart is placed once.
struct Storefront {
    next: Arc<AtomicU64>,
}

impl Source for Storefront {
    fn run(&mut self, ctx: &SourceContext) -> Result<(), SourceError> {
        while !ctx.stopping() {
            let n = self.next.load(Ordering::SeqCst);
            if n == ORDERS {
                ctx.set_status("every order sent");
                ctx.sleep(Duration::from_secs(3600));
                continue;
            }
            let order = Order {
                order: format!("order-{n}"),
                sku: format!("sku-{}", n % 17),
                qty: if n % POISON_EVERY == POISON_EVERY - 1 {
                    0
                } else {
                    1 + (n % 3) as u32
                },
            };
            let key = IdempotencyKey::new(format!("storefront:{n}")).expect("a valid key");
            let command = Command::encode(PLACE, &order).expect("a valid command");
            ctx.set_status(format!("placing order {n}"));
            match ctx.send_keyed(&key, command) {
                Ok(()) => {
                    self.next.fetch_add(1, Ordering::SeqCst);
                    // About a thousand orders a second.
                    ctx.sleep(Duration::from_millis(1));
                }
                Err(SendError::Stopped(_)) => return Ok(()),
                // The send's error as is: its causes stay its sources.
                Err(e) => return Err(SourceError::new(e)),
            }
        }
        Ok(())
    }
}

/// What the observer saw.
#[derive(Default)]
struct Seen {
    retries: AtomicU64,
    waits: AtomicU64,
    dead_letters: AtomicU64,
}

fn open_store() -> Result<Arc<dyn EventStore>, Box<dyn std::error::Error>> {
    match std::env::var("DATABASE_URL") {
        #[cfg(feature = "postgres")]
        Ok(url) => {
            let mut config = PgStoreConfig::default();
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis();
            config.schema = format!("orders_example_{stamp}");
            println!("store: PostgreSQL, schema {}", config.schema);
            Ok(Arc::new(PgEventStore::connect(&url, config)?))
        }
        _ => {
            println!("store: in memory (set DATABASE_URL for PostgreSQL)");
            Ok(Arc::new(InMemoryStore::new()))
        }
    }
}

fn start(
    store: &Arc<dyn EventStore>,
    warehouse: &Arc<Warehouse>,
    seen: &Arc<Seen>,
    next: &Arc<AtomicU64>,
) -> Result<Integration<Reservations>, Box<dyn std::error::Error>> {
    let w = Arc::clone(warehouse);
    let reserve =
        move |command: &Command, effect: &Effect<'_>| -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
            let reserve: Reserve = command.decode()?;
            // The key goes with the call (an Idempotency-Key header).
            let answer = w.reserve(effect.key().as_str(), &reserve)?;
            app::record_reservation(effect, &reserve, &answer)?;
            Ok(answer)
        };
    let mut breaker = BreakerConfig::default();
    breaker.failure_threshold = 8;
    breaker.open_for = Duration::from_millis(300);
    let routes = Routes::new().route(PLACE, app::place)?.route_with(
        RESERVE,
        reserve,
        RoutePolicy::default().with_breaker(breaker).with_max_concurrent(4),
    )?;
    let s = Arc::clone(seen);
    let integration = Integration::builder(Arc::clone(store), "reservations", Reservations, routes)
        .source("storefront", Storefront { next: Arc::clone(next) })
        .observer(move |o: &Observed<'_>| match o {
            Observed::BreakerTransition { route, from, to } => {
                println!("  breaker {route}: {from:?} -> {to:?}");
            }
            Observed::EffectFailed { .. } => {
                s.retries.fetch_add(1, Ordering::Relaxed);
            }
            Observed::EffectWaiting { .. } => {
                s.waits.fetch_add(1, Ordering::Relaxed);
            }
            Observed::DeadLetter { parked } => {
                s.dead_letters.fetch_add(1, Ordering::Relaxed);
                println!(
                    "  dead letter: {} at position {}: {}",
                    parked.stream, parked.position, parked.message
                );
            }
            Observed::SourceRestart { source, error, .. } => println!("  source {source} restarts: {error}"),
            _ => {}
        })
        .pipeline(|p| {
            p.engine(
                EngineConfig::default()
                    .retry_backoff(Duration::from_millis(5))
                    .retry_backoff_max(Duration::from_millis(200)),
            )
            .max_attempts(6)
            .checkpoint_interval(Duration::from_millis(50))
        })
        .start()?;
    Ok(integration)
}

/// Orders with a `stock-reserved` event, and how many such events each has.
fn reservations_recorded(store: &dyn EventStore) -> Result<HashMap<String, u32>, Box<dyn std::error::Error>> {
    let mut recorded = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in page.iter().filter(|e| e.event_type == "stock-reserved") {
            *recorded.entry(event.stream.to_string()).or_default() += 1;
        }
    }
    Ok(recorded)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = open_store()?;
    let warehouse = Arc::new(Warehouse::default());
    let seen = Arc::new(Seen::default());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    println!("run 1: {ORDERS} orders; the warehouse fails 6%, loses 3% of its answers, hangs 0.5%");
    let integration = start(&store, &warehouse, &seen, &next)?;
    while next.load(Ordering::SeqCst) < ORDERS / 5 {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("  the warehouse goes down for 0.5 s");
    warehouse.down.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    warehouse.down.store(false, Ordering::SeqCst);
    while next.load(Ordering::SeqCst) < ORDERS / 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let report = integration.shutdown(Duration::from_secs(10));
    for source in &report.sources {
        println!(
            "  stopped source {}: {:?}, {:?}, {} sent",
            source.name, source.state, source.status, source.sent
        );
    }
    println!(
        "  stopped the pipeline at checkpoint {} ({} effects so far)",
        report.pipeline.checkpoint, report.stats.effects
    );
    drop(integration);

    println!("run 2: the checkpoint is rewound to 0, as if a crash had lost it; everything is read again");
    store.reset_checkpoint("reservations", 0)?;
    let integration = start(&store, &warehouse, &seen, &next)?;
    while next.load(Ordering::SeqCst) < ORDERS {
        std::thread::sleep(Duration::from_millis(1));
    }
    let end = store.read_all(0, usize::MAX)?.last().map_or(0, |e| e.position);
    // Follow-up events come after `end`; wait for the reservations the placed orders cause.
    let poison = ORDERS / POISON_EVERY;
    let deadline = Instant::now() + Duration::from_secs(60);
    while reservations_recorded(&*store)?.len() < (ORDERS - poison) as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = store.read_all(end, usize::MAX)?.last().map_or(end, |e| e.position);
    if !integration.pipeline().wait_for(last, Duration::from_secs(30)) {
        return Err("the pipeline did not catch up".into());
    }
    let stats = integration.stats();
    let parked = integration.pipeline().parked(0, usize::MAX)?;
    let report = integration.shutdown(Duration::from_secs(10));

    let reserved = warehouse.reserved.lock().unwrap().clone();
    let recorded = reservations_recorded(&*store)?;
    let twice = reserved.values().filter(|&&n| n > 1).count();
    let recorded_twice = recorded.values().filter(|&&n| n > 1).count();
    let repeats = warehouse.repeats.load(Ordering::Relaxed);
    println!("done in {:.1?}", started.elapsed());
    println!(
        "  warehouse: {} calls, {} orders reserved, {} reserved twice; {} calls repeated a completed effect",
        warehouse.calls.load(Ordering::Relaxed),
        reserved.len(),
        twice,
        repeats
    );
    println!(
        "  run 2: {} effects, {} skipped (completed in run 1), {} failed attempts (retried), {} waits; observer: {} retries, {} waits, {} dead letters",
        stats.effects,
        stats.skipped,
        stats.failures,
        stats.waits,
        seen.retries.load(Ordering::Relaxed),
        seen.waits.load(Ordering::Relaxed),
        seen.dead_letters.load(Ordering::Relaxed)
    );
    println!(
        "  {} orders have stock-reserved ({} twice); {} dead letters parked; pipeline checkpoint {}",
        recorded.len(),
        recorded_twice,
        parked.len(),
        report.pipeline.checkpoint
    );
    let expected = (ORDERS - poison) as usize;
    if twice != 0 || recorded_twice != 0 || repeats != 0 || reserved.len() != expected || recorded.len() != expected {
        return Err(format!(
            "an effect ran twice or not at all: {twice} {recorded_twice} {repeats} {}",
            reserved.len()
        )
        .into());
    }
    if parked.len() as u64 != poison || parked.iter().any(|p| !p.message.contains("invalid quantity")) {
        return Err(format!("expected {poison} dead letters (the orders of quantity 0)").into());
    }
    println!("ok: every reservation ran exactly once across the restart; the {poison} invalid orders are parked");
    Ok(())
}
