//! Resource bounds: R-RES-1 (memory bounded whatever the input), R-RES-2 (incremental reaping).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, sid, Msg, Probe, ProbeHandler};
use humpyard::{Engine, Event, Handler, StreamId};

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

// proves R-RES-1: live entities never exceed max_entities + shards, whatever the input.
#[test]
fn entity_cap_holds_under_many_distinct_streams() {
    let probe = Probe::new();
    let engine = Arc::new(
        Engine::builder(ProbeHandler(probe.clone()))
            .workers(2)
            .shards(8)
            .max_entities(100)
            .start()
            .unwrap(),
    );
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for s in 0..20_000 {
                    engine
                        .submit_timeout(
                            Event::new(sid(&format!("p{p}-{s}")), Msg::ok(0)),
                            Duration::from_secs(10),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    engine.shutdown(Duration::from_secs(30));
    let max_live = probe.max_live.load(Ordering::SeqCst);
    assert!(max_live <= 100 + 8, "{max_live} live entities, cap 100 + 8 shards");
    let m = engine.metrics();
    assert_eq!(m.processed, 40_000);
    assert!(
        m.entities_evicted >= 40_000 - 108,
        "only the survivors were cleaned up at shutdown"
    );
    assert_eq!(probe.inits.load(Ordering::SeqCst), 40_000);
    assert_eq!(probe.cleanups.load(Ordering::SeqCst), 40_000);
}

/// A handler with a small state, for the memory test.
struct Tiny;

impl Handler for Tiny {
    type Payload = ();
    type State = u64;
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }
    fn handle(&self, n: &mut u64, _: &Event<()>) -> Result<(), String> {
        *n += 1;
        Ok(())
    }
}

// proves R-RES-1: ten million distinct stream ids leave resident memory flat.
#[test]
fn ten_million_distinct_streams_leave_memory_flat() {
    let engine = Engine::builder(Tiny)
        .workers(2)
        .shards(16)
        .shard_capacity(1024)
        .max_entities(10_000)
        .start()
        .unwrap();
    let mut name = String::with_capacity(32);
    let mut submit_range = |range: std::ops::Range<u64>| {
        for i in range {
            use std::fmt::Write;
            name.clear();
            write!(name, "stream-{i}").unwrap();
            engine
                .submit_timeout(Event::new(StreamId::new(&name).unwrap(), ()), Duration::from_secs(10))
                .unwrap();
        }
    };
    submit_range(0..1_000_000);
    let after_warmup = rss();
    submit_range(1_000_000..10_000_000);
    let after_all = rss();
    let m = engine.metrics();
    assert!(m.entities_live <= 10_000 + 16);
    let growth = after_all.saturating_sub(after_warmup);
    assert!(
        growth < 32 << 20,
        "resident memory grew {} MiB over 9M more distinct streams",
        growth >> 20
    );
    engine.shutdown(Duration::from_secs(30));
    assert_eq!(engine.metrics().processed, 10_000_000);
}

// proves R-RES-2: reaping is incremental: with 50 000 expired entities in one shard, the next
// events are dispatched after at most one reap budget, not after a full reap (a stop-the-world
// scan would reap all 50 000 first).
#[test]
fn reaping_is_incremental_not_stop_the_world() {
    const NORMAL: u8 = 0;
    const BLOCKER: u8 = 1;
    const LATE: u8 = 2;
    struct Watch {
        removed: Arc<AtomicU64>,
        removed_when_late_event_ran: Arc<AtomicU64>,
        blocker_calls: AtomicU64,
    }
    impl Handler for Watch {
        type Payload = u8;
        type State = ();
        type Error = String;
        fn init(&self, _: &StreamId) -> Result<(), String> {
            Ok(())
        }
        fn handle(&self, _: &mut (), event: &Event<u8>) -> Result<(), String> {
            match *event.payload() {
                BLOCKER if self.blocker_calls.fetch_add(1, Ordering::SeqCst) == 0 => {
                    // Hold the shard (RUNNING, so no maintenance run can start) until every
                    // entity has expired, then fail: the retry's run starts with a reap pass.
                    std::thread::sleep(Duration::from_millis(400));
                    Err("once".into())
                }
                LATE => {
                    let removed = self.removed.load(Ordering::SeqCst);
                    self.removed_when_late_event_ran.store(removed, Ordering::SeqCst);
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }
    let removed = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(u64::MAX));
    let r = removed.clone();
    let engine = Engine::builder(Watch {
        removed: removed.clone(),
        removed_when_late_event_ran: seen.clone(),
        blocker_calls: AtomicU64::new(0),
    })
    .workers(1)
    .shards(1)
    .shard_capacity(100_000)
    .idle_timeout(Duration::from_millis(300))
    .retry_backoff(Duration::from_millis(1))
    .on_entity_removed(move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
    })
    .start()
    .unwrap();
    for i in 0..50_000 {
        engine.try_submit(Event::new(sid(&format!("old-{i}")), NORMAL)).unwrap();
    }
    eventually("all made", || engine.metrics().processed == 50_000);
    engine.try_submit(Event::new(sid("blocker"), BLOCKER)).unwrap();
    engine.try_submit(Event::new(sid("late"), LATE)).unwrap();
    eventually("late handled", || engine.metrics().processed == 50_002);
    let at_late = seen.load(Ordering::SeqCst);
    assert!(at_late > 0, "the retry's run reaped first");
    assert!(
        at_late <= 128,
        "the late event waited for {at_late} reaps: not incremental"
    );
    eventually("all reaped", || engine.metrics().entities_reaped >= 50_000);
    engine.shutdown(Duration::from_secs(10));
}
