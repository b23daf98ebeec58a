//! Per-stream order and exclusivity: R-CONC-2, R-CONC-3, R-PERF-2.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, sid, Msg, Probe, ProbeHandler};
use humpyard::{Engine, Event};

// proves R-CONC-3: many producers, many streams; each stream's events are handled in submit
// order by one thread at a time.
#[test]
fn many_producers_many_streams_order_per_stream() {
    let probe = Probe::recording();
    let engine = Arc::new(
        Engine::builder(ProbeHandler(probe.clone()))
            .workers(4)
            .shards(8)
            .shard_capacity(64)
            .start()
            .unwrap(),
    );
    const PRODUCERS: u64 = 4;
    const STREAMS_EACH: u64 = 50;
    const EVENTS_EACH: u64 = 400;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let ids: Vec<_> = (0..STREAMS_EACH).map(|s| sid(&format!("p{p}-s{s}"))).collect();
                for seq in 0..EVENTS_EACH {
                    for id in &ids {
                        engine
                            .submit_timeout(Event::new(id.clone(), Msg::ok(seq)), Duration::from_secs(30))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let report = engine.shutdown(Duration::from_secs(30));
    assert!(report.unprocessed.is_empty());
    assert_eq!(probe.violations(), 0, "order or exclusivity broken");
    let handled = probe.handled.lock().unwrap();
    assert_eq!(handled.len() as u64, PRODUCERS * STREAMS_EACH);
    for (stream, seqs) in handled.iter() {
        assert_eq!(seqs, &(0..EVENTS_EACH).collect::<Vec<_>>(), "stream {stream}");
    }
    // proves R-PERF-2: one init per stream, none speculative.
    assert_eq!(probe.inits.load(Ordering::SeqCst), PRODUCERS * STREAMS_EACH);
    assert_eq!(probe.cleanups.load(Ordering::SeqCst), PRODUCERS * STREAMS_EACH);
}

// proves R-CONC-2: events for an entity that is being reaped are never lost; they reach a fresh
// instance, in order, and every state is cleaned up exactly once.
#[test]
fn events_racing_the_reaper_reach_a_fresh_instance_in_order() {
    let probe = Probe::recording();
    let engine = Engine::builder(ProbeHandler(probe.clone()))
        .workers(2)
        .shards(4)
        .idle_timeout(Duration::from_millis(2))
        .start()
        .unwrap();
    let ids: Vec<_> = (0..20).map(|s| sid(&format!("r{s}"))).collect();
    let mut seq = 0;
    for round in 0..60u64 {
        for id in &ids {
            engine
                .submit_timeout(Event::new(id.clone(), Msg::ok(seq)), Duration::from_secs(10))
                .unwrap();
        }
        seq += 1;
        // Gaps around the idle timeout, so reaps land between, and racing with, events.
        std::thread::sleep(Duration::from_micros(500 + (round % 7) * 700));
    }
    eventually("entities reaped", || engine.metrics().entities_reaped > 0);
    engine.shutdown(Duration::from_secs(30));
    assert_eq!(probe.violations(), 0);
    let handled = probe.handled.lock().unwrap();
    for id in &ids {
        assert_eq!(handled[id.as_str()], (0..seq).collect::<Vec<_>>(), "stream {id}");
    }
    let m = engine.metrics();
    assert!(m.entities_reaped > 0, "the reaper ran");
    let inits = probe.inits.load(Ordering::SeqCst);
    assert!(inits > ids.len() as u64, "reaped entities came back as fresh instances");
    assert_eq!(inits, probe.cleanups.load(Ordering::SeqCst), "cleanup once per init");
    assert_eq!(m.entities_live, 0);
}

// proves R-CONC-2, R-RES-1: eviction under the cap removes the least recently used entity,
// and an evicted stream's next event gets a fresh state, in order.
#[test]
fn eviction_removes_exactly_the_lru_entity() {
    let probe = Probe::recording();
    let engine = Engine::builder(ProbeHandler(probe.clone()))
        .workers(1)
        .shards(1)
        .max_entities(3)
        .start()
        .unwrap();
    let submit = |s: &str, seq| {
        engine
            .submit_timeout(Event::new(sid(s), Msg::ok(seq)), Duration::from_secs(10))
            .unwrap()
    };
    let live = || probe.live.load(Ordering::SeqCst);
    submit("a", 0);
    submit("b", 0);
    submit("c", 0);
    submit("a", 1); // a is now the most recent; b is the least
    eventually("4 handled", || probe.handled_ok.load(Ordering::SeqCst) == 4);
    submit("d", 0); // evicts b
    eventually("d handled", || probe.handled_ok.load(Ordering::SeqCst) == 5);
    assert_eq!(live(), 3);
    assert_eq!(engine.metrics().entities_evicted, 1);
    let inits_before = probe.inits.load(Ordering::SeqCst);
    submit("a", 2); // a survived: no init
    eventually("a handled", || probe.handled_ok.load(Ordering::SeqCst) == 6);
    assert_eq!(probe.inits.load(Ordering::SeqCst), inits_before, "a was not evicted");
    submit("b", 1); // b was evicted: fresh init, evicts c (the LRU now)
    eventually("b handled", || probe.handled_ok.load(Ordering::SeqCst) == 7);
    assert_eq!(probe.inits.load(Ordering::SeqCst), inits_before + 1);
    engine.shutdown(Duration::from_secs(10));
    assert_eq!(engine.metrics().entities_evicted, 2);
    assert_eq!(
        probe.inits.load(Ordering::SeqCst),
        probe.cleanups.load(Ordering::SeqCst)
    );
    assert_eq!(probe.violations(), 0);
}
