//! Isolation of slow work: R-PERF-3 (a slow stream stalls only its shard), R-FT-3 (a handler
//! over its budget is reported by metric and hook).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, sid, Gate};
use humpyard::{Engine, Event, Handler, SlowHandler, StreamId};

/// Events with payload `true` wait on the gate; others are counted.
struct Sleepy {
    gate: Arc<Gate>,
    sleeping: AtomicBool,
    fast_done_while_sleeping: AtomicU64,
}

struct SleepyHandler(Arc<Sleepy>);

impl Handler for SleepyHandler {
    type Payload = bool;
    type State = ();
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }
    fn handle(&self, _: &mut (), e: &Event<bool>) -> Result<(), String> {
        let s = &self.0;
        if *e.payload() {
            s.sleeping.store(true, Ordering::SeqCst);
            s.gate.wait();
            s.sleeping.store(false, Ordering::SeqCst);
        } else if s.sleeping.load(Ordering::SeqCst) {
            s.fast_done_while_sleeping.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

// proves R-PERF-3, R-FT-3: one stream stuck in its handler leaves the other shards running at
// full speed, and the stuck call is reported once by metric and hook.
#[test]
fn a_stuck_stream_stalls_only_its_own_shard_and_is_reported() {
    let sleepy = Arc::new(Sleepy {
        gate: Gate::new(),
        sleeping: AtomicBool::new(false),
        fast_done_while_sleeping: AtomicU64::new(0),
    });
    let reports: Arc<Mutex<Vec<SlowHandler>>> = Arc::default();
    let r = reports.clone();
    let engine = Engine::builder(SleepyHandler(sleepy.clone()))
        .workers(2)
        .shards(16)
        .slow_handler_threshold(Duration::from_millis(50))
        .on_slow_handler(move |report| r.lock().unwrap().push(report.clone()))
        .start()
        .unwrap();
    let stuck = sid("stuck");
    engine.try_submit(Event::new(stuck.clone(), true)).unwrap();
    sleepy.gate.wait_entered(1);
    let stuck_shard = engine.shard_of(&stuck);
    // Events of the stuck shard queue behind it; every other shard's events are all handled
    // while the stuck call is still inside its handler.
    let mut others = 0u64;
    let mut behind = 0u64;
    for i in 0..20_000 {
        let id = sid(&format!("other-{i}"));
        if engine.shard_of(&id) == stuck_shard {
            behind += 1;
        } else {
            others += 1;
        }
        engine
            .submit_timeout(Event::new(id, false), Duration::from_secs(10))
            .unwrap();
    }
    eventually("other shards drained", || engine.metrics().processed == others);
    assert_eq!(sleepy.fast_done_while_sleeping.load(Ordering::SeqCst), others);
    assert_eq!(engine.metrics().queued, behind, "only the stuck shard's events wait");
    eventually("slow handler reported", || engine.metrics().slow_handlers == 1);
    {
        let reports = reports.lock().unwrap();
        assert_eq!(reports.len(), 1, "reported once per call");
        assert_eq!(reports[0].shard, stuck_shard);
        assert!(reports[0].running_for >= Duration::from_millis(50));
    }
    sleepy.gate.open();
    engine.shutdown(Duration::from_secs(10));
    let m = engine.metrics();
    assert_eq!(m.processed, 20_001);
    assert_eq!(m.slow_handlers, 1);
}
