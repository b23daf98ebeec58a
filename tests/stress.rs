//! Stress: several producers, 10^5 streams, millions of events, random panics and errors,
//! reaping and eviction on. Proves R-CONC-3, R-LIFE-3, R-OBS-2, R-FT-1, R-FT-2, R-RES-1 together.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{quiet_planned_panics, sid, Action, Msg, Probe, ProbeHandler};
use humpyard::{Engine, Event, SubmitError};

const PRODUCERS: u64 = 4;
const STREAMS: u64 = 100_000;
const EVENTS_PER_STREAM: u64 = 30;
const MAX_ENTITIES: u64 = 20_000;
const SHARDS: usize = 32;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

// proves R-CONC-3, R-LIFE-3, R-OBS-2, R-FT-1, R-FT-2, R-RES-1
#[test]
fn millions_of_events_with_faults_are_all_accounted_for() {
    quiet_planned_panics();
    let probe = Probe::new();
    let dead_letters = Arc::new(AtomicU64::new(0));
    let d = dead_letters.clone();
    let engine = Arc::new(
        Engine::builder(ProbeHandler(probe.clone()))
            .workers(2)
            .shards(SHARDS)
            .shard_capacity(512)
            .max_entities(MAX_ENTITIES)
            .idle_timeout(Duration::from_millis(20))
            .max_attempts(3)
            .retry_backoff(Duration::from_micros(50))
            .retry_backoff_max(Duration::from_micros(400))
            .on_dead_letter(move |_| {
                d.fetch_add(1, Ordering::Relaxed);
            })
            .start()
            .unwrap(),
    );
    let planned_dead = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let engine = engine.clone();
            let planned_dead = planned_dead.clone();
            std::thread::spawn(move || {
                let streams: Vec<_> = (0..STREAMS / PRODUCERS).map(|s| sid(&format!("p{p}/s{s}"))).collect();
                let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (p + 1);
                let mut full = 0u64;
                for seq in 0..EVENTS_PER_STREAM {
                    for id in &streams {
                        let action = match xorshift(&mut rng) % 10_000 {
                            0..=9 => Action::PanicTimes(1),
                            10..=19 => Action::FailTimes(1),
                            20 => {
                                planned_dead.fetch_add(1, Ordering::Relaxed);
                                Action::FailTimes(u32::MAX)
                            }
                            _ => Action::Ok,
                        };
                        let event = Event::new(id.clone(), Msg { seq, action });
                        match engine.try_submit(event) {
                            Ok(()) => {}
                            Err(SubmitError::Full(event)) => {
                                full += 1;
                                engine
                                    .submit_timeout(event, Duration::from_secs(60))
                                    .expect("room in 60 s");
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                full
            })
        })
        .collect();
    let full: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    let report = engine.shutdown(Duration::from_secs(120));
    let m = engine.metrics();
    let total = STREAMS * EVENTS_PER_STREAM;
    assert!(report.unprocessed.is_empty(), "drained within the deadline");
    assert_eq!(probe.violations(), 0, "per-stream order or exclusivity broken");
    assert_eq!(m.accepted, total);
    assert_eq!(m.rejected, full, "every Full counted");
    assert_eq!(
        m.accepted,
        m.processed + m.dead_lettered + report.unprocessed.len() as u64
    );
    assert_eq!(m.dead_lettered, planned_dead.load(Ordering::Relaxed));
    assert_eq!(m.dead_lettered, dead_letters.load(Ordering::Relaxed));
    assert_eq!(probe.handled_ok.load(Ordering::SeqCst), m.processed);
    assert_eq!(
        probe.inits.load(Ordering::SeqCst),
        probe.cleanups.load(Ordering::SeqCst)
    );
    assert!(probe.max_live.load(Ordering::SeqCst) <= MAX_ENTITIES + SHARDS as u64);
    assert_eq!((m.entities_live, m.queued, m.awaiting_retry), (0, 0, 0));
    assert!(m.panics > 0 && m.retries > 0 && m.entities_evicted > 0, "{m:?}");
    assert_eq!(m.workers_replaced, 0);
    eprintln!("stress: {m:?}");
}
