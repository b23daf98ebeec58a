//! A probe handler shared by the integration tests: it counts every call, checks per-stream
//! order and exclusivity, and fails, panics or sleeps when an event asks it to.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use humpyard::{Event, Handler, StreamId};

/// What the probe does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ok,
    /// Return `Err` on the first `n` attempts.
    FailTimes(u32),
    /// Panic on the first `n` attempts.
    PanicTimes(u32),
    /// Sleep, then succeed.
    Sleep(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    /// Per-stream sequence number, increasing in submit order.
    pub seq: u64,
    pub action: Action,
}

impl Msg {
    pub fn ok(seq: u64) -> Msg {
        Msg {
            seq,
            action: Action::Ok,
        }
    }
}

#[derive(Default)]
struct StreamTrack {
    last_seq: Option<u64>,
    busy: bool,
    /// Attempts seen per seq (for FailTimes / PanicTimes).
    attempts: HashMap<u64, u32>,
}

/// Shared counters and checks.
#[derive(Default)]
pub struct Probe {
    pub inits: AtomicU64,
    pub cleanups: AtomicU64,
    pub handled_ok: AtomicU64,
    pub calls: AtomicU64,
    pub live: AtomicU64,
    pub max_live: AtomicU64,
    pub violations: AtomicU64,
    tracks: Vec<Mutex<HashMap<String, StreamTrack>>>,
    /// Seqs handled successfully, per stream (only when `record` is on).
    pub record: bool,
    pub handled: Mutex<HashMap<String, Vec<u64>>>,
}

impl Probe {
    pub fn new() -> Arc<Probe> {
        Arc::new(Probe {
            tracks: (0..64).map(|_| Mutex::new(HashMap::new())).collect(),
            ..Probe::default()
        })
    }

    pub fn recording() -> Arc<Probe> {
        Arc::new(Probe {
            tracks: (0..64).map(|_| Mutex::new(HashMap::new())).collect(),
            record: true,
            ..Probe::default()
        })
    }

    fn track<R>(&self, stream: &StreamId, f: impl FnOnce(&mut StreamTrack) -> R) -> R {
        let shard = (stream.hash_u64() % self.tracks.len() as u64) as usize;
        let mut map = self.tracks[shard].lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(stream.as_str().to_owned()).or_default())
    }

    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::SeqCst)
    }
}

/// The entity's state: its stream and how many events it handled.
#[derive(Debug)]
pub struct ProbeState {
    pub stream: StreamId,
    pub handled: u64,
}

/// The handler around a probe.
#[derive(Clone)]
pub struct ProbeHandler(pub Arc<Probe>);

impl Handler for ProbeHandler {
    type Payload = Msg;
    type State = ProbeState;
    type Error = String;

    fn init(&self, stream: &StreamId) -> Result<ProbeState, String> {
        let p = &self.0;
        p.inits.fetch_add(1, Ordering::SeqCst);
        let live = p.live.fetch_add(1, Ordering::SeqCst) + 1;
        p.max_live.fetch_max(live, Ordering::SeqCst);
        Ok(ProbeState {
            stream: stream.clone(),
            handled: 0,
        })
    }

    fn handle(&self, state: &mut ProbeState, event: &Event<Msg>) -> Result<(), String> {
        let p = &self.0;
        p.calls.fetch_add(1, Ordering::Relaxed);
        if state.stream != *event.stream() {
            p.violations.fetch_add(1, Ordering::SeqCst);
        }
        let msg = *event.payload();
        let attempt = p.track(event.stream(), |t| {
            if t.busy {
                p.violations.fetch_add(1, Ordering::SeqCst); // two threads on one stream
            }
            if t.last_seq.is_some_and(|last| msg.seq < last) {
                p.violations.fetch_add(1, Ordering::SeqCst); // out of order
            }
            t.busy = true;
            t.last_seq = Some(msg.seq);
            let a = t.attempts.entry(msg.seq).or_insert(0);
            *a += 1;
            *a
        });
        let release = || p.track(event.stream(), |t| t.busy = false);
        match msg.action {
            Action::Ok => {}
            Action::FailTimes(n) if attempt <= n => {
                release();
                return Err(format!("planned failure {attempt} of seq {}", msg.seq));
            }
            Action::PanicTimes(n) if attempt <= n => {
                release();
                panic!("planned panic {attempt} of seq {}", msg.seq);
            }
            Action::Sleep(d) => std::thread::sleep(d),
            _ => {}
        }
        p.track(event.stream(), |t| {
            t.busy = false;
            t.attempts.remove(&msg.seq);
        });
        state.handled += 1;
        p.handled_ok.fetch_add(1, Ordering::SeqCst);
        if p.record {
            p.handled
                .lock()
                .unwrap()
                .entry(event.stream().as_str().to_owned())
                .or_default()
                .push(msg.seq);
        }
        Ok(())
    }

    fn cleanup(&self, stream: &StreamId, state: ProbeState) {
        let p = &self.0;
        if state.stream != *stream {
            p.violations.fetch_add(1, Ordering::SeqCst);
        }
        p.cleanups.fetch_add(1, Ordering::SeqCst);
        p.live.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

/// Silences the default panic message for planned panics (keeps test output readable).
pub fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info.to_string();
            if !text.contains("planned panic") && !text.contains("fault injection") && !text.contains("hook panic") {
                default(info);
            }
        }));
    });
}

/// A gate a handler can wait on, to hold a worker.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    cv: std::sync::Condvar,
    pub entered: AtomicU64,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    pub fn wait(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }

    /// Spins (with sleeps) until `n` callers have entered.
    pub fn wait_entered(&self, n: u64) {
        let start = std::time::Instant::now();
        while self.entered.load(Ordering::SeqCst) < n {
            assert!(start.elapsed() < Duration::from_secs(30), "gate never entered");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Opens its gate when dropped: declared after what a gated handler runs in, it opens the gate
/// on every path out of a test (a failed assertion too), so a shutdown is never held by it.
pub struct OpenOnDrop(pub Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Waits until `cond` holds, failing after 30 s.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(30), "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `done` holds (checked every millisecond), failing the test after 10 s: a test
/// waits for a step by its condition, never by a guessed sleep.
pub fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
