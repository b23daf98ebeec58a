//! DESIGN.md, "Scheduling": idle workers park; they do not spin. A worker that runs out of
//! work polls for about a microsecond and a few time-slice yields, then parks; an idle engine
//! must use next to no CPU. Alone in its test binary, so other tests' engines do not count.

use std::time::Duration;

use humpyard::{Engine, Event, Handler, StreamId};

struct Sum;

impl Handler for Sum {
    type Payload = u64;
    type State = u64;
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }
    fn handle(&self, n: &mut u64, e: &Event<u64>) -> Result<(), String> {
        *n += e.payload();
        Ok(())
    }
}

/// CPU time used so far by this process's live threads named `humpyard-*` (Linux schedstat).
fn engine_cpu() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("humpyard-") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += stat.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    }
    Duration::from_nanos(total)
}

#[test]
fn an_idle_engine_parks_its_workers() {
    let engine = Engine::builder(Sum).workers(4).start().unwrap();
    for n in 0..10_000u64 {
        let id = StreamId::new(&format!("s{}", n % 100)).unwrap();
        engine
            .submit_timeout(Event::new(id, n), Duration::from_secs(10))
            .unwrap();
    }
    while engine.metrics().processed < 10_000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    let before = engine_cpu();
    std::thread::sleep(Duration::from_millis(500));
    let used = engine_cpu() - before;
    // Four spinning workers would use about 2 s of CPU here (or all the machine has); parked
    // ones use nothing, and the supervisor's 100 ms tick a few microseconds.
    assert!(
        used < Duration::from_millis(100),
        "idle engine used {used:?} of CPU in 500 ms"
    );
    engine.shutdown(Duration::from_secs(10));
}
