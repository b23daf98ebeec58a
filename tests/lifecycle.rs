//! Shutdown and drop: R-LIFE-1, R-LIFE-2, R-LIFE-3, R-LIFE-4, R-OBS-2.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{sid, Action, Msg, Probe, ProbeHandler};
use humpyard::{Engine, Event, SubmitError};

// proves R-LIFE-1, R-LIFE-2: dropping the engine shuts it down: every live entity's cleanup runs
// once and no engine thread outlives it (the handler, held by every engine thread, is freed).
#[test]
fn drop_shuts_down_and_joins_every_thread() {
    let probe = Probe::new();
    let engine = Engine::builder(ProbeHandler(probe.clone()))
        .workers(3)
        .shards(8)
        .start()
        .unwrap();
    for s in 0..100 {
        engine
            .try_submit(Event::new(sid(&format!("e{s}")), Msg::ok(0)))
            .unwrap();
    }
    drop(engine);
    assert_eq!(probe.handled_ok.load(Ordering::SeqCst), 100, "drop drained first");
    assert_eq!(probe.inits.load(Ordering::SeqCst), 100);
    assert_eq!(
        probe.cleanups.load(Ordering::SeqCst),
        100,
        "cleanup once per live entity"
    );
    // Only the test holds the probe now: every worker and the supervisor are gone.
    assert_eq!(Arc::strong_count(&probe), 1, "an engine thread outlived the engine");
}

// proves R-LIFE-3, R-OBS-2: a shutdown whose deadline passes hands back exactly what was left,
// in per-stream order, and the accounting identity holds exactly.
#[test]
fn deadline_hands_back_the_rest_and_accounting_holds() {
    let probe = Probe::recording();
    let engine = Arc::new(
        Engine::builder(ProbeHandler(probe.clone()))
            .workers(2)
            .shards(4)
            .shard_capacity(1000)
            .start()
            .unwrap(),
    );
    let slow = Action::Sleep(Duration::from_millis(2));
    let producers: Vec<_> = (0..3)
        .map(|p| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut accepted = 0u64;
                for seq in 0..400u64 {
                    for s in 0..5 {
                        let msg = Msg { seq, action: slow };
                        match engine.try_submit(Event::new(sid(&format!("p{p}-s{s}")), msg)) {
                            Ok(()) => accepted += 1,
                            Err(SubmitError::Full(_)) => {}
                            Err(SubmitError::Closed(_)) => return accepted,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                accepted
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let report = engine.shutdown(Duration::from_millis(100));
    let took = started.elapsed();
    let accepted_by_producers: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    assert!(report.deadline_exceeded);
    assert!(!report.unprocessed.is_empty());
    assert!(
        took < Duration::from_secs(10),
        "stopped soon after the deadline: {took:?}"
    );
    let m = engine.metrics();
    assert_eq!(m.accepted, accepted_by_producers);
    assert_eq!(
        m.accepted,
        m.processed + m.dead_lettered + report.unprocessed.len() as u64
    );
    assert_eq!((m.queued, m.entities_live), (0, 0));
    // Per stream: the handled prefix, then the handed-back rest, is the accepted sequence.
    let handled = probe.handled.lock().unwrap();
    let mut back: HashMap<&str, Vec<u64>> = HashMap::new();
    for event in &report.unprocessed {
        back.entry(event.stream().as_str())
            .or_default()
            .push(event.payload().seq);
    }
    for (stream, rest) in back {
        let done = handled.get(stream).cloned().unwrap_or_default();
        let all: Vec<u64> = done.iter().chain(rest.iter()).copied().collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "stream {stream} out of order");
    }
    assert_eq!(
        probe.inits.load(Ordering::SeqCst),
        probe.cleanups.load(Ordering::SeqCst)
    );
}

// proves R-LIFE-4: once shutdown starts, submits fail with Closed and are counted; a second
// shutdown returns an empty report.
#[test]
fn submits_after_shutdown_are_closed() {
    let probe = Probe::new();
    let engine = Engine::builder(ProbeHandler(probe)).workers(1).start().unwrap();
    engine.try_submit(Event::new(sid("a"), Msg::ok(0))).unwrap();
    let report = engine.shutdown(Duration::from_secs(5));
    assert!(report.unprocessed.is_empty() && !report.deadline_exceeded);
    match engine.try_submit(Event::new(sid("a"), Msg::ok(1))) {
        Err(SubmitError::Closed(event)) => assert_eq!(event.payload().seq, 1),
        other => panic!("expected Closed, got {other:?}"),
    }
    match engine.submit_timeout(Event::new(sid("a"), Msg::ok(2)), Duration::from_secs(5)) {
        Err(e @ SubmitError::Closed(_)) => assert!(e.is_closed()),
        other => panic!("expected Closed, got {other:?}"),
    }
    let again = engine.shutdown(Duration::from_secs(5));
    assert!(again.unprocessed.is_empty() && !again.deadline_exceeded);
    let m = engine.metrics();
    assert_eq!((m.accepted, m.processed, m.rejected), (1, 1, 2));
}

// proves R-LIFE-1, R-LIFE-3: shutdown under load from racing producers: every submit is either
// accepted and then processed or handed back, never both, never neither.
#[test]
fn shutdown_racing_producers_accounts_for_every_event() {
    for round in 0..5 {
        let probe = Probe::new();
        let engine = Arc::new(
            Engine::builder(ProbeHandler(probe.clone()))
                .workers(2)
                .shards(4)
                .shard_capacity(128)
                .start()
                .unwrap(),
        );
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    let (mut ok, mut back) = (0u64, 0u64);
                    let id = sid(&format!("r{round}-p{p}"));
                    for seq in 0.. {
                        match engine.try_submit(Event::new(id.clone(), Msg::ok(seq))) {
                            Ok(()) => ok += 1,
                            Err(SubmitError::Full(_)) => back += 1,
                            Err(SubmitError::Closed(_)) => return (ok, back + 1),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        let report = engine.shutdown(Duration::from_secs(30));
        let (ok, back) = producers
            .into_iter()
            .map(|p| p.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let m = engine.metrics();
        assert!(report.unprocessed.is_empty(), "a 30 s deadline drains everything");
        assert_eq!(m.accepted, ok);
        assert_eq!(m.rejected, back);
        assert_eq!(m.processed, ok);
        assert_eq!(probe.handled_ok.load(Ordering::SeqCst), ok);
        assert_eq!(
            probe.inits.load(Ordering::SeqCst),
            probe.cleanups.load(Ordering::SeqCst)
        );
    }
}

// proves R-LIFE-3, R-OBS-2: many producers racing a shutdown with a zero deadline: every event a
// producer was told `Ok` for is processed or handed back, never lost with a producer preempted
// between claiming its slot and publishing it.
#[test]
fn zero_deadline_shutdown_racing_producers_loses_nothing() {
    for round in 0..10 {
        let probe = Probe::new();
        let engine = Arc::new(
            Engine::builder(ProbeHandler(probe.clone()))
                .workers(1)
                .shards(4)
                .shard_capacity(1024)
                .start()
                .unwrap(),
        );
        let start = Arc::new(std::sync::Barrier::new(9));
        let producers: Vec<_> = (0..8)
            .map(|p| {
                let (engine, start) = (engine.clone(), start.clone());
                std::thread::spawn(move || {
                    let id = sid(&format!("z{round}-p{p}"));
                    let mut ok = 0u64;
                    start.wait();
                    for seq in 0.. {
                        match engine.try_submit(Event::new(id.clone(), Msg::ok(seq))) {
                            Ok(()) => ok += 1,
                            Err(SubmitError::Full(_)) => {}
                            Err(SubmitError::Closed(_)) => return ok,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        start.wait();
        std::thread::sleep(Duration::from_millis(20));
        let report = engine.shutdown(Duration::ZERO);
        let ok: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
        let m = engine.metrics();
        assert_eq!(m.accepted, ok, "round {round}");
        assert_eq!(
            m.accepted,
            m.processed + m.dead_lettered + report.unprocessed.len() as u64,
            "round {round}: accepted {} != processed {} + unprocessed {}",
            m.accepted,
            m.processed,
            report.unprocessed.len()
        );
        assert_eq!(m.queued, 0, "round {round}: nothing left in the rings");
    }
}
