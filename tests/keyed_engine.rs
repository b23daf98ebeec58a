//! The engine with integer keys (`KeyedHandler`): the same guarantees as with `StreamId`s, and
//! every value handed back carries its key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use humpyard::{DeadLetter, Engine, Event, Failure, KeyedHandler, PanicReport, Removal, SubmitError};

mod common;
use common::{Gate, OpenOnDrop};

/// Records, per account, the payloads in the order it handled them; fails on payload 13 and
/// panics on payload 666.
#[derive(Clone, Default)]
struct Ledger {
    seen: Arc<Mutex<HashMap<u64, Vec<u64>>>>,
    inits: Arc<AtomicU64>,
    cleanups: Arc<Mutex<Vec<u64>>>,
}

impl KeyedHandler for Ledger {
    type Key = u64;
    type Payload = u64;
    type State = u64;
    type Error = String;

    fn init(&self, key: &u64) -> Result<u64, String> {
        self.inits.fetch_add(1, Ordering::Relaxed);
        Ok(*key)
    }

    fn handle(&self, state: &mut u64, event: &Event<u64, u64>) -> Result<(), String> {
        assert_eq!(*state, *event.stream(), "the state is the one made for this key");
        match *event.payload() {
            13 => Err(format!("unlucky for account {}", event.stream())),
            666 => panic!("planned panic in account {}", event.stream()),
            payload => {
                self.seen
                    .lock()
                    .unwrap()
                    .entry(*event.stream())
                    .or_default()
                    .push(payload);
                Ok(())
            }
        }
    }

    fn cleanup(&self, key: &u64, state: u64) {
        assert_eq!(*key, state);
        self.cleanups.lock().unwrap().push(*key);
    }
}

// proves R-CONC-3, R-LIFE-3: with `u64` keys each key's events run in order, and accounting
// holds across single and batch submits, with many keys sharing shards.
#[test]
fn integer_keys_keep_each_streams_order_and_the_accounting() {
    let ledger = Ledger::default();
    let engine = Engine::builder(ledger.clone()).workers(2).shards(4).start().unwrap();
    let keys = 1_000u64;
    std::thread::scope(|scope| {
        for producer in 0..2u64 {
            let engine = &engine;
            scope.spawn(move || {
                for round in 0..20u64 {
                    // Each producer owns half the keys, so each key's payloads rise.
                    let events: Vec<Event<u64, u64>> = (0..keys / 2)
                        .map(|k| Event::new(k * 2 + producer, round * 100 + 20))
                        .collect();
                    if round % 2 == 0 {
                        engine.submit_many_timeout(events, Duration::from_secs(30)).unwrap();
                    } else {
                        for event in events {
                            engine.submit_timeout(event, Duration::from_secs(30)).unwrap();
                        }
                    }
                }
            });
        }
    });
    let report = engine.shutdown(Duration::from_secs(30));
    assert!(report.unprocessed.is_empty());
    let metrics = engine.metrics();
    assert_eq!(metrics.accepted, 20 * keys);
    assert_eq!(metrics.processed, 20 * keys);
    let seen = ledger.seen.lock().unwrap();
    assert_eq!(seen.len() as u64, keys);
    for (key, payloads) in seen.iter() {
        let expected: Vec<u64> = (0..20).map(|round| round * 100 + 20).collect();
        assert_eq!(payloads, &expected, "key {key}");
    }
    assert_eq!(
        ledger.inits.load(Ordering::Relaxed),
        keys,
        "one init per key (R-PERF-2)"
    );
    assert_eq!(
        ledger.cleanups.lock().unwrap().len() as u64,
        keys,
        "one cleanup per state (R-FT-2)"
    );
}

// proves R-FT-1, R-FT-2, R-OBS-1: what the engine hands back carries the integer key: the
// dead letter, the panic report, the removal hook's key.
#[test]
fn failures_carry_the_integer_key() {
    common::quiet_planned_panics();
    let ledger = Ledger::default();
    let letters: Arc<Mutex<Vec<DeadLetter<u64, u64>>>> = Arc::default();
    let panics: Arc<Mutex<Vec<Option<u64>>>> = Arc::default();
    let removed: Arc<Mutex<Vec<(u64, Removal)>>> = Arc::default();
    let engine = Engine::builder(ledger.clone())
        .workers(1)
        .shards(1)
        .shard_capacity(4)
        .max_attempts(1)
        .on_dead_letter({
            let letters = letters.clone();
            move |letter| letters.lock().unwrap().push(letter)
        })
        .on_panic({
            let panics = panics.clone();
            move |report: &PanicReport<u64>| panics.lock().unwrap().push(report.stream)
        })
        .on_entity_removed({
            let removed = removed.clone();
            move |key: &u64, why| removed.lock().unwrap().push((*key, why))
        })
        .start()
        .unwrap();
    engine.try_submit(Event::new(7, 13)).unwrap();
    engine.try_submit(Event::new(8, 666)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while letters.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "two dead letters within 30 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    {
        let letters = letters.lock().unwrap();
        assert_eq!(*letters[0].event.stream(), 7);
        assert_eq!(letters[0].failure, Failure::Handler("unlucky for account 7".to_owned()));
        assert_eq!(*letters[1].event.stream(), 8);
        assert!(matches!(&letters[1].failure, Failure::Panic(m) if m == "planned panic in account 8"));
    }
    assert_eq!(*panics.lock().unwrap(), vec![Some(8)]);
    assert!(removed.lock().unwrap().contains(&(8, Removal::Panicked)));

    engine.shutdown(Duration::from_secs(30));
}

/// Holds every `handle` call on a gate.
struct HeldAccounts(Arc<Gate>);

impl KeyedHandler for HeldAccounts {
    type Key = u64;
    type Payload = ();
    type State = ();
    type Error = String;
    fn init(&self, _: &u64) -> Result<(), String> {
        Ok(())
    }
    fn handle(&self, _: &mut (), _: &Event<(), u64>) -> Result<(), String> {
        self.0.wait();
        Ok(())
    }
}

// proves R-BP-1, R-LIFE-3: a full shard hands the event back with its integer key, and a
// shutdown hands back the queued events with theirs, in order.
#[test]
fn refused_and_unprocessed_events_carry_the_integer_key() {
    let gate = Gate::new();
    let engine = Engine::builder(HeldAccounts(gate.clone()))
        .workers(1)
        .shards(1)
        .shard_capacity(4)
        .start()
        .unwrap();
    let _open = OpenOnDrop(gate.clone());
    engine.try_submit(Event::new(40, ())).unwrap();
    gate.wait_entered(1); // the worker holds 40; the ring is empty
    for key in 41..=44 {
        engine.try_submit(Event::new(key, ())).unwrap();
    }
    let refused = engine.try_submit(Event::new(45, ())).unwrap_err();
    assert!(matches!(refused, SubmitError::Full(_)), "{refused:?}");
    assert_eq!(*refused.event().stream(), 45);
    assert_eq!(refused.to_string(), "shard of stream 45 is full; event handed back");

    // Released just before a shutdown whose deadline has passed: the worker may handle some
    // of the queued events; the rest come back, in order, with their keys.
    gate.open();
    let report = engine.shutdown(Duration::ZERO);
    let back: Vec<u64> = report.unprocessed.iter().map(|e| *e.stream()).collect();
    let expected = [41, 42, 43, 44];
    assert!(expected.ends_with(&back), "{back:?}");
    let metrics = engine.metrics();
    assert_eq!(metrics.accepted, 5);
    assert_eq!(metrics.processed + back.len() as u64, 5);
}

// proves R-BP-1: a batch of UUID-keyed events handed back by a closed engine comes back whole,
// in order, with its keys.
#[test]
fn a_refused_batch_hands_back_its_uuid_keys_in_order() {
    struct Count;
    impl KeyedHandler for Count {
        type Key = uuid::Uuid;
        type Payload = ();
        type State = ();
        type Error = String;
        fn init(&self, _: &uuid::Uuid) -> Result<(), String> {
            Ok(())
        }
        fn handle(&self, _: &mut (), _: &Event<(), uuid::Uuid>) -> Result<(), String> {
            Ok(())
        }
    }
    let engine = Engine::builder(Count).workers(1).start().unwrap();
    engine.shutdown(Duration::from_secs(5));
    let keys: Vec<uuid::Uuid> = (0..10u128).map(uuid::Uuid::from_u128).collect();
    let refused = engine
        .try_submit_many(keys.iter().map(|k| Event::new(*k, ())).collect())
        .unwrap_err();
    assert_eq!(refused.accepted, 0);
    let back: Vec<uuid::Uuid> = refused.into_events().into_iter().map(|e| *e.stream()).collect();
    assert_eq!(back, keys);
}
