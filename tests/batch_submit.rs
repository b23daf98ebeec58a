//! Batch submits (`try_submit_many`, `submit_many_timeout`): each shard takes a prefix of its
//! events in order, what does not fit comes back in the order given with its reason, counted;
//! per-stream order holds within and across batches; the accounting identity holds
//! (R-BP-1, R-BP-2, R-CONC-3, R-OBS-2, R-API-2).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{sid, Gate, Msg, OpenOnDrop, Probe, ProbeHandler};
use humpyard::{Engine, Event, Handler, StreamId, SubmitError};

/// Holds the worker on every event of stream `held` until the gate opens.
struct HeldStream(Arc<Gate>);

impl Handler for HeldStream {
    type Payload = u64;
    type State = Vec<u64>;
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<Vec<u64>, String> {
        Ok(Vec::new())
    }
    fn handle(&self, seen: &mut Vec<u64>, event: &Event<u64>) -> Result<(), String> {
        if event.stream().as_str().starts_with("held") {
            self.0.wait();
        }
        seen.push(*event.payload());
        Ok(())
    }
}

/// Two streams in different shards of a two-shard engine (one worker per shard).
fn two_shards(engine: &Engine<HeldStream>) -> (StreamId, StreamId) {
    let held = (0..)
        .map(|i| sid(&format!("held-{i}")))
        .find(|s| engine.shard_of(s) == 0)
        .unwrap();
    let free = (0..)
        .map(|i| sid(&format!("free-{i}")))
        .find(|s| engine.shard_of(s) == 1)
        .unwrap();
    (held, free)
}

fn held_engine(capacity: usize) -> (Engine<HeldStream>, Arc<Gate>) {
    let gate = Gate::new();
    let engine = Engine::builder(HeldStream(gate.clone()))
        .workers(2)
        .shards(2)
        .shard_capacity(capacity)
        .start()
        .unwrap();
    (engine, gate)
}

// proves R-BP-1 and R-API-2 for batches: a full shard takes what fits of its events and hands
// back the rest of them, in the order given, typed and counted, at once; other shards' events
// are taken; nothing is lost
#[test]
fn a_full_shard_takes_a_prefix_and_hands_back_the_rest_in_order() {
    let (engine, gate) = held_engine(3);
    let _opener = OpenOnDrop(gate.clone());
    let (held, free) = two_shards(&engine);
    engine.try_submit(Event::new(held.clone(), 0)).unwrap();
    gate.wait_entered(1);
    // Interleaved: held 1..=6 and free 101..=105. Each shard has room for 3 (the free one is
    // idle: nothing runs it before the batch's one schedule, after all its pushes).
    let batch: Vec<_> = (1..=6)
        .flat_map(|i| {
            let free = (i <= 5).then(|| Event::new(free.clone(), 100 + i));
            std::iter::once(Event::new(held.clone(), i)).chain(free)
        })
        .collect();
    let error = engine.try_submit_many(batch).expect_err("each shard has room for 3");
    assert_eq!(error.accepted, 6, "3 of each stream");
    let back: Vec<(bool, u64)> = error
        .rejected
        .iter()
        .map(|e| (matches!(e, SubmitError::Full(_)), *e.event().payload()))
        .collect();
    assert_eq!(
        back,
        vec![(true, 4), (true, 104), (true, 5), (true, 105), (true, 6)],
        "each stream's rest, in the order given"
    );
    assert_eq!(engine.metrics().rejected, 5);
    // Submitting the rest again, in order, once there is room keeps the stream's order.
    gate.open();
    let mut rest = error.into_events();
    while !rest.is_empty() {
        rest = match engine.submit_many_timeout(rest, Duration::from_secs(10)) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_events(),
        };
    }
    let report = engine.shutdown(Duration::from_secs(10));
    let m = engine.metrics();
    assert!(report.unprocessed.is_empty());
    assert_eq!((m.accepted, m.processed), (12, 12));
}

// proves R-BP-2 for batches: a batch that does not fit waits for room, parked, and is taken
// once the worker frees it; with no room in time the rest comes back as `Timeout`
#[test]
fn a_waiting_batch_is_taken_when_room_frees_or_times_out() {
    let (engine, gate) = held_engine(2);
    let _opener = OpenOnDrop(gate.clone());
    let engine = Arc::new(engine);
    let (held, _) = two_shards(&engine);
    engine.try_submit(Event::new(held.clone(), 0)).unwrap();
    gate.wait_entered(1);
    let batch = |from: u64| {
        (from..from + 4)
            .map(|i| Event::new(held.clone(), i))
            .collect::<Vec<_>>()
    };
    let error = engine
        .submit_many_timeout(batch(1), Duration::from_millis(50))
        .expect_err("no room in time");
    assert_eq!(error.accepted, 2);
    assert!(error.rejected.iter().all(|e| matches!(e, SubmitError::Timeout(_))));
    assert_eq!(
        error.into_events().iter().map(|e| *e.payload()).collect::<Vec<_>>(),
        vec![3, 4]
    );
    let waiting = {
        let engine = engine.clone();
        let batch = batch(5);
        std::thread::spawn(move || engine.submit_many_timeout(batch, Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(50));
    gate.open();
    assert_eq!(waiting.join().unwrap().unwrap(), 4);
    let report = engine.shutdown(Duration::from_secs(10));
    assert!(report.unprocessed.is_empty());
    let m = engine.metrics();
    assert_eq!((m.accepted, m.processed, m.rejected), (7, 7, 2));
}

// proves R-LIFE-1 for batches: after shutdown a batch is handed back whole as `Closed`, counted
#[test]
fn a_batch_after_shutdown_is_handed_back_closed() {
    let (engine, _gate) = held_engine(4);
    engine.shutdown(Duration::from_secs(5));
    let batch: Vec<_> = (0..5).map(|i| Event::new(sid(&format!("s{i}")), i)).collect();
    let error = engine.try_submit_many(batch).expect_err("closed");
    assert_eq!(error.accepted, 0);
    assert!(error.rejected.iter().all(SubmitError::is_closed));
    assert_eq!(
        error.into_events().iter().map(|e| *e.payload()).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(engine.metrics().rejected, 5);
    let error = engine
        .submit_many_timeout(vec![Event::new(sid("s"), 9)], Duration::from_secs(5))
        .expect_err("closed");
    assert!(error.rejected[0].is_closed());
}

// proves R-CONC-3 and R-OBS-2 for batches: producers submitting batches over many streams
// (waiting for room) get every stream's events handled once, in order; accounting holds
#[test]
fn batches_from_many_producers_keep_each_streams_order() {
    many_producers_in_batches(8);
}

// as above, with more shards than the counting sort groups a batch for (the keys are sorted)
#[test]
fn batches_keep_each_streams_order_with_many_shards() {
    many_producers_in_batches(512);
}

fn many_producers_in_batches(shards: usize) {
    let probe = Probe::recording();
    let engine = Arc::new(
        Engine::builder(ProbeHandler(probe.clone()))
            .workers(2)
            .shards(shards)
            .shard_capacity(16)
            .start()
            .unwrap(),
    );
    const PRODUCERS: u64 = 3;
    const PER_STREAM: u64 = 400;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let streams: Vec<StreamId> = (0..20).map(|s| sid(&format!("p{p}-s{s}"))).collect();
                let mut seq = 0;
                while seq < PER_STREAM {
                    // A batch holds several events of each stream, in order.
                    let batch: Vec<_> = (seq..seq + 5)
                        .flat_map(|q| streams.iter().map(move |s| Event::new(s.clone(), Msg::ok(q))))
                        .collect();
                    engine.submit_many_timeout(batch, Duration::from_secs(60)).unwrap();
                    seq += 5;
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let report = engine.shutdown(Duration::from_secs(30));
    assert!(report.unprocessed.is_empty());
    assert_eq!(probe.violations(), 0);
    let handled = probe.handled.lock().unwrap();
    assert_eq!(handled.len(), (PRODUCERS * 20) as usize);
    for (stream, seqs) in handled.iter() {
        assert_eq!(seqs, &(0..PER_STREAM).collect::<Vec<_>>(), "{stream}");
    }
    let m = engine.metrics();
    assert_eq!(m.accepted, PRODUCERS * 20 * PER_STREAM);
    assert_eq!(m.accepted, m.processed + m.dead_lettered);
}
