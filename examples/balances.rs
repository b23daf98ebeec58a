//! Account balances from a pipeline that is stopped and restarted in the middle of its streams:
//! each balance the handler sees is the fold of the account's stored events, whatever the
//! process saw before. One deposit is refused and parked; a replay handles it once fixed.
//!
//! `cargo run --release --example balances`

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use humpyard::pipeline::{Pipeline, StreamHandler};
use humpyard::store::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RecordedEvent};
use humpyard::{EngineConfig, StreamId};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Deposited {
    amount: i64,
}

/// Keeps each account's balance and reports it after each deposit.
struct Balances {
    /// The balance after each account's last handled deposit (what a read model would store).
    reported: Arc<Mutex<BTreeMap<String, i64>>>,
    /// Refuses deposits of 13 until fixed (an outage of some downstream system).
    fixed: Arc<AtomicBool>,
}

impl StreamHandler for Balances {
    type State = i64;
    // A boxed error keeps its causes: a parked event's message holds the whole chain.
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn init(&self, _: &StreamId) -> i64 {
        0
    }

    fn apply(&self, balance: &mut i64, event: &RecordedEvent) {
        // An event that does not decode adds nothing (and is refused by `handle`).
        *balance += event.decode::<Deposited>().map_or(0, |d| d.amount);
    }

    fn handle(&self, balance: &i64, event: &RecordedEvent) -> Result<(), Self::Error> {
        let deposit: Deposited = event.decode()?;
        if deposit.amount == 13 && !self.fixed.load(Ordering::SeqCst) {
            return Err("the ledger service refused 13".into());
        }
        let after = balance + deposit.amount;
        self.reported.lock().unwrap().insert(event.stream.to_string(), after);
        Ok(())
    }
}

fn deposit(store: &dyn EventStore, account: &str, amount: i64) -> Result<u64, Box<dyn std::error::Error>> {
    let event = NewEvent::encode("deposited", &Deposited { amount })?;
    Ok(store
        .append(&StreamId::new(account)?, ExpectedVersion::Any, vec![event])?
        .last_position)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let reported = Arc::new(Mutex::new(BTreeMap::new()));
    let fixed = Arc::new(AtomicBool::new(false));
    let start = |store: &Arc<dyn EventStore>| {
        Pipeline::builder(
            store.clone(),
            "balances",
            Balances {
                reported: reported.clone(),
                fixed: fixed.clone(),
            },
        )
        .engine(EngineConfig::default().workers(2))
        .max_attempts(2)
        .start()
    };
    let accounts = ["alice", "bob", "carol"];

    // The first run: three deposits per account.
    let pipeline = start(&store)?;
    let mut last = 0;
    for round in 1..=3 {
        for (i, account) in accounts.iter().enumerate() {
            last = deposit(&*store, account, round * 10 + i as i64)?;
        }
    }
    pipeline.wait_for(last, Duration::from_secs(10));
    let report = pipeline.shutdown(Duration::from_secs(5));
    println!(
        "first run stopped at checkpoint {}: {:?}",
        report.checkpoint,
        reported.lock().unwrap()
    );

    // Deposits while nothing runs, then a second run (a new process would do the same).
    deposit(&*store, "alice", 100)?;
    deposit(&*store, "bob", 13)?; // refused: parked, and bob's later deposits behind it
    last = deposit(&*store, "bob", 1)?;
    let pipeline = start(&store)?;
    pipeline.wait_for(last, Duration::from_secs(10));
    for parked in pipeline.parked(0, 100)? {
        println!(
            "parked: {} version {} ({}, {} attempts): {}",
            parked.stream, parked.version, parked.kind, parked.attempts, parked.message
        );
    }

    // The downstream system is back: replay bob's parked deposits, in order.
    fixed.store(true, Ordering::SeqCst);
    let replay = pipeline.replay(&StreamId::new("bob")?, Duration::from_secs(10))?;
    println!("replayed {} of bob's deposits", replay.replayed);
    let stats = pipeline.shutdown(Duration::from_secs(5)).stats;
    println!(
        "second run: {} handled, {} states rebuilt from {} stored events",
        stats.handled, stats.rehydrations, stats.rehydrated_events
    );

    // What the handler reported equals the fold of every stored event.
    for account in accounts {
        let fold: i64 = store
            .read_stream(&StreamId::new(account)?, 0, usize::MAX)?
            .iter()
            .map(|e| e.decode::<Deposited>().map_or(0, |d| d.amount))
            .sum();
        let seen = reported.lock().unwrap()[account];
        println!("{account}: balance {seen}, fold of the store {fold}");
        assert_eq!(seen, fold);
    }
    Ok(())
}
