//! Backpressure and configuration: R-BP-1, R-BP-2, R-BP-3.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{sid, Gate};
use humpyard::{ConfigError, Engine, Event, Handler, StreamId, SubmitError};

/// Holds the worker on every event until the gate opens.
struct Held(Arc<Gate>);

impl Handler for Held {
    type Payload = u64;
    type State = ();
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }
    fn handle(&self, _: &mut (), _: &Event<u64>) -> Result<(), String> {
        self.0.wait();
        Ok(())
    }
}

/// One worker, one shard of `capacity`, its worker held inside the first event.
fn held_engine(capacity: usize) -> (Engine<Held>, Arc<Gate>) {
    let gate = Gate::new();
    let engine = Engine::builder(Held(gate.clone()))
        .workers(1)
        .shards(1)
        .shard_capacity(capacity)
        .start()
        .unwrap();
    engine.try_submit(Event::new(sid("s"), 0)).unwrap();
    gate.wait_entered(1);
    (engine, gate)
}

/// CPU time this thread has used (Linux).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(text.split_whitespace().next().unwrap().parse().unwrap())
}

// proves R-BP-1, R-BP-3
#[test]
fn full_shard_rejects_at_once_and_hands_the_event_back() {
    let (engine, gate) = held_engine(4);
    // The event being handled does not count against capacity.
    for n in 1..=4 {
        engine.try_submit(Event::new(sid("s"), n)).unwrap();
    }
    let started = Instant::now();
    match engine.try_submit(Event::new(sid("s"), 99)) {
        Err(SubmitError::Full(event)) => {
            assert_eq!(*event.payload(), 99);
            assert_eq!(event.stream().as_str(), "s");
        }
        other => panic!("expected Full, got {other:?}"),
    }
    // Never blocks: a blocking submit would sit here until the gate opened (never, here).
    assert!(started.elapsed() < Duration::from_secs(5));
    let m = engine.metrics();
    assert_eq!((m.accepted, m.rejected, m.queued), (5, 1, 4));
    gate.open();
    let report = engine.shutdown(Duration::from_secs(10));
    assert!(report.unprocessed.is_empty());
    let m = engine.metrics();
    assert_eq!(m.processed, 5);
    assert_eq!(m.accepted, m.processed + m.dead_lettered);
}

// proves R-BP-2: the waiting producer parks (no CPU burnt) and is woken once by the freed room.
#[test]
fn submit_timeout_parks_and_is_woken_by_freed_room() {
    let (engine, gate) = held_engine(2);
    let engine = Arc::new(engine);
    engine.try_submit(Event::new(sid("s"), 1)).unwrap();
    engine.try_submit(Event::new(sid("s"), 2)).unwrap();
    let producer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            let cpu = thread_cpu();
            let t = Instant::now();
            let result = engine.submit_timeout(Event::new(sid("s"), 3), Duration::from_secs(60));
            (result.is_ok(), t.elapsed(), thread_cpu() - cpu)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    gate.open();
    let (ok, waited, cpu) = producer.join().unwrap();
    assert!(ok, "room appeared, the submit must succeed");
    assert!(
        waited >= Duration::from_millis(250),
        "it waited for the room: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(30),
        "woken by the room, not by its 60 s deadline"
    );
    // A spinning or polling wait would burn most of the 300 ms.
    assert!(cpu < Duration::from_millis(50), "parked, not spinning: {cpu:?} of CPU");
    engine.shutdown(Duration::from_secs(10));
    let m = engine.metrics();
    assert_eq!((m.accepted, m.processed, m.rejected), (4, 4, 0));
}

// proves R-BP-2, R-BP-1: the deadline ends the wait with the event handed back and counted.
#[test]
fn submit_timeout_times_out_with_the_event() {
    let (engine, gate) = held_engine(1);
    engine.try_submit(Event::new(sid("s"), 1)).unwrap();
    let cpu = thread_cpu();
    let t = Instant::now();
    match engine.submit_timeout(Event::new(sid("s"), 7), Duration::from_millis(200)) {
        Err(SubmitError::Timeout(event)) => assert_eq!(*event.payload(), 7),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(thread_cpu() - cpu < Duration::from_millis(50), "parked, not spinning");
    assert_eq!(engine.metrics().rejected, 1);
    gate.open();
    engine.shutdown(Duration::from_secs(10));
}

// proves R-BP-2, R-LIFE-4: shutdown wakes a parked producer, which gets Closed.
#[test]
fn shutdown_wakes_waiting_producers_with_closed() {
    let (engine, gate) = held_engine(1);
    let engine = Arc::new(engine);
    engine.try_submit(Event::new(sid("s"), 1)).unwrap();
    let producer = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.submit_timeout(Event::new(sid("s"), 2), Duration::from_secs(60)))
    };
    std::thread::sleep(Duration::from_millis(100));
    let shutdown = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.shutdown(Duration::from_secs(10)))
    };
    match producer.join().unwrap() {
        Err(SubmitError::Closed(event)) => assert_eq!(*event.payload(), 2),
        other => panic!("expected Closed, got {other:?}"),
    }
    gate.open();
    let report = shutdown.join().unwrap();
    assert!(report.unprocessed.is_empty());
    let m = engine.metrics();
    assert_eq!((m.accepted, m.processed, m.rejected), (2, 2, 1));
}

// proves R-BP-2: many producers waiting on one shard all get in as room frees; none is lost.
#[test]
fn many_waiting_producers_all_get_in() {
    let gate = Gate::new();
    gate.open();
    let engine = Arc::new(
        Engine::builder(Held(gate))
            .workers(1)
            .shards(1)
            .shard_capacity(2)
            .start()
            .unwrap(),
    );
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for n in 0..2_000u64 {
                    engine
                        .submit_timeout(Event::new(sid(&format!("p{p}")), n), Duration::from_secs(30))
                        .expect("room within 30 s");
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    engine.shutdown(Duration::from_secs(30));
    let m = engine.metrics();
    assert_eq!((m.accepted, m.processed, m.rejected), (16_000, 16_000, 0));
}

// proves R-BP-3: invalid configuration is an error at build time, never a panic later.
#[test]
fn invalid_config_is_a_typed_error() {
    let gate = Gate::new();
    gate.open();
    let b = || Engine::builder(Held(gate.clone()));
    assert!(matches!(b().workers(0).start(), Err(ConfigError::ZeroWorkers)));
    assert!(matches!(b().shards(0).start(), Err(ConfigError::ZeroShards)));
    assert!(matches!(
        b().shards(1 << 20).start(),
        Err(ConfigError::TooManyShards { .. })
    ));
    assert!(matches!(
        b().shard_capacity(0).start(),
        Err(ConfigError::ZeroShardCapacity)
    ));
    assert!(matches!(b().max_entities(0).start(), Err(ConfigError::ZeroMaxEntities)));
    assert!(matches!(b().max_attempts(0).start(), Err(ConfigError::ZeroMaxAttempts)));
    assert!(matches!(
        b().idle_timeout(Duration::ZERO).start(),
        Err(ConfigError::ZeroIdleTimeout)
    ));
    assert!(matches!(
        b().slow_handler_threshold(Duration::ZERO).start(),
        Err(ConfigError::ZeroSlowHandlerThreshold)
    ));
    assert!(matches!(
        b().retry_backoff(Duration::from_secs(2))
            .retry_backoff_max(Duration::from_secs(1))
            .start(),
        Err(ConfigError::BackoffMaxBelowBase { .. })
    ));
    let error: Box<dyn std::error::Error> = Box::new(b().workers(0).start().unwrap_err());
    assert_eq!(error.to_string(), "workers must be at least 1");
    // The defaults are valid.
    let engine = b().start().unwrap();
    engine.try_submit(Event::new(sid("x"), 1)).unwrap();
    engine.shutdown(Duration::from_secs(10));
    assert_eq!(engine.metrics().processed, 1);
}

// proves R-BP-3: every size setting is bounded: an absurd capacity, worker count, entity cap or
// buffer is a typed error at build time, never a panic, an abort or a huge allocation.
#[test]
fn every_size_setting_is_bounded() {
    let gate = Gate::new();
    gate.open();
    let b = || Engine::builder(Held(gate.clone()));
    let refused = |result: Result<Engine<Held>, ConfigError>| match result {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    for capacity in [usize::MAX, 1 << 32] {
        let e = refused(b().shard_capacity(capacity).start());
        assert!(matches!(e, ConfigError::ShardCapacityTooLarge { .. }), "{e:?}");
    }
    let e = refused(b().shards(1 << 16).shard_capacity(1 << 20).start());
    assert!(matches!(e, ConfigError::TooManyBufferedEvents { .. }), "{e:?}");
    for workers in [usize::MAX, 1 << 20] {
        let e = refused(b().workers(workers).start());
        assert!(matches!(e, ConfigError::TooManyWorkers { .. }), "{e:?}");
    }
    let e = refused(b().max_entities(u64::MAX).start());
    assert!(matches!(e, ConfigError::MaxEntitiesTooLarge { .. }), "{e:?}");
    let e = refused(b().dead_letter_buffer(usize::MAX).start());
    assert!(matches!(e, ConfigError::DeadLetterBufferTooLarge { .. }), "{e:?}");
    // The largest accepted values are what the rustdoc says.
    let e = refused(b().shard_capacity((1 << 24) + 1).start());
    assert!(e.to_string().contains("16777216"), "{e}");
}

// proves R-BP-3, R-PERF-3: the default shard count follows the worker count set (two shards a
// worker), whatever the machine's cores, so more workers than cores still have shards to run;
// a shard count set without a capacity keeps the buffer per worker, not 16 384 a shard.
#[test]
fn default_shards_and_capacity_follow_the_workers_and_shards_set() {
    let gate = Gate::new();
    gate.open();
    let shards = |engine: Engine<Held>| {
        let n = engine.metrics().shard_queued.len();
        engine.shutdown(Duration::from_secs(5));
        n
    };
    for (workers, expected) in [(1, 2), (3, 8), (8, 16), (33, 128)] {
        let engine = Engine::builder(Held(gate.clone())).workers(workers).start().unwrap();
        assert_eq!(shards(engine), expected, "{workers} workers");
    }
    // 64 shards for 2 workers: 1024 slots each (32 768 a worker spread over them). With the
    // handler held, one stream's shard takes 1024 events, or 1025 if the worker has already
    // taken the first out, and refuses the next.
    let held = Gate::new();
    let engine = Engine::builder(Held(held.clone()))
        .workers(2)
        .shards(64)
        .start()
        .unwrap();
    let id = StreamId::new("s").unwrap();
    let taken = (0..20_000)
        .take_while(|&i| engine.try_submit(Event::new(id.clone(), i)).is_ok())
        .count();
    assert!((1024..=1025).contains(&taken), "{taken}");
    held.open();
    assert_eq!(shards(engine), 64);
}
