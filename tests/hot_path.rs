//! The hot path allocates nothing per event (R-PERF-1): a counting global allocator watches a
//! steady stream of events on live entities.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use humpyard::{Engine, Event, Handler, StreamId};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Sum;

impl Handler for Sum {
    type Payload = u64;
    type State = u64;
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }
    fn handle(&self, s: &mut u64, e: &Event<u64>) -> Result<(), String> {
        *s += e.payload();
        Ok(())
    }
}

// proves R-PERF-1: no allocation per event beyond the user's payload (here none at all).
#[test]
fn steady_state_events_do_not_allocate() {
    let engine = Engine::builder(Sum)
        .workers(2)
        .shards(16)
        .shard_capacity(1 << 16)
        .start()
        .unwrap();
    let ids: Vec<StreamId> = (0..1_000).map(|i| StreamId::new(&format!("s{i}")).unwrap()).collect();
    let run = |n: u64| {
        for k in 0..n {
            let event = Event::new(ids[(k % 1_000) as usize].clone(), k);
            engine.submit_timeout(event, Duration::from_secs(10)).unwrap();
        }
    };
    let wait = |target: u64| {
        while engine.metrics().processed < target {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    run(100_000); // warm up: entities made, tables grown
    wait(100_000);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    run(1_000_000);
    let during = ALLOCATIONS.load(Ordering::SeqCst) - before;
    wait(1_100_000);
    engine.shutdown(Duration::from_secs(10));
    // Parking and waking threads may allocate a little; per event it must be nothing.
    assert!(during < 1_000, "{during} allocations for 1 000 000 events");
}
