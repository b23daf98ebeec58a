//! Shared pieces of the interleaving tests: one test at a time (pause points are process-wide),
//! a counting handler, and small helpers.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use humpyard::{Event, Handler, StreamId};

/// Holds the process-wide test lock: pause points are global, so tests that arm them run one
/// at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Counts handled events; keeps no state worth speaking of.
#[derive(Debug, Default, Clone)]
pub struct Count(pub Arc<AtomicU64>);

impl Count {
    pub fn handled(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Handler for Count {
    type Payload = u64;
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }

    fn handle(&self, _: &mut (), _: &Event<u64>) -> Result<(), String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Waits until `cond` holds; `false` after `limit`.
pub fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Silences the default panic message for the tests' planned panics.
pub fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info.to_string();
            if !text.contains("planned panic") && !text.contains("fault injection") {
                default(info);
            }
        }));
    });
}
