//! Shared pieces of the loom models in `tests/`: a small handler and id helper.
//!
//! Every model runs the library's real code built with `--cfg humpyard_loom`. Conventions:
//! - the model's main thread starts the engine and drives it; every thread the library or a
//!   model spawns is followed by a `yield_now` (the library's `spawn_named` does it), which
//!   keeps loom 0.7 exploring (tokio-rs/loom#392);
//! - shutdown uses a deadline that cannot pass in a model, so an event stranded by a lost
//!   wake-up makes the drain loop spin until loom's branch limit fails the model, and a parked
//!   thread nobody wakes makes loom report a deadlock.
#![cfg(humpyard_loom)]

use humpyard::{Engine, Event, Handler, StreamId};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

/// Handles `u64` payloads: even ones succeed, odd ones fail (`Err`).
#[derive(Debug, Clone, Copy)]
pub struct EvenOk;

impl Handler for EvenOk {
    type Payload = u64;
    type State = u64;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, seen: &mut u64, event: &Event<u64>) -> Result<(), String> {
        *seen += 1;
        if event.payload() % 2 == 1 {
            return Err("odd".to_owned());
        }
        Ok(())
    }
}

/// A stream id.
pub fn id(s: &str) -> StreamId {
    StreamId::new(s).expect("valid id")
}

/// A drain deadline that never passes within a model.
pub const FOREVER: std::time::Duration = std::time::Duration::from_secs(3600);

/// An engine for a model: `workers` workers, `shards` shards of `capacity`, `max_attempts`
/// attempts per event, and no supervisor thread (models drive its steps themselves, through
/// `loom_api::fire_timers` and `loom_api::replace_worker`). Resets the model's clock: call it
/// first in a model's body.
pub fn engine(workers: usize, shards: usize, capacity: usize, max_attempts: u32) -> Arc<Engine<EvenOk>> {
    engine_with(EvenOk, |b| {
        b.workers(workers)
            .shards(shards)
            .shard_capacity(capacity)
            .max_attempts(max_attempts)
    })
}

/// An engine running `handler` with the settings `settings` makes, no supervisor thread, and
/// the model's clock reset (see [`engine`]).
pub fn engine_with<H: Handler>(
    handler: H,
    settings: impl FnOnce(humpyard::EngineBuilder<H>) -> humpyard::EngineBuilder<H>,
) -> Arc<Engine<H>> {
    humpyard::loom_api::clock::reset();
    Arc::new(
        settings(Engine::builder(handler))
            .without_supervisor()
            .start()
            .expect("valid configuration"),
    )
}

/// Fails the first attempt of payload 1 (`Err`), handles everything else: an event that waits
/// for one retry.
#[derive(Debug, Clone, Copy)]
pub struct FailsOnce;

impl Handler for FailsOnce {
    type Payload = u64;
    type State = u64;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, calls: &mut u64, event: &Event<u64>) -> Result<(), String> {
        *calls += 1;
        if *event.payload() == 1 && *calls == 1 {
            return Err("first attempt".to_owned());
        }
        Ok(())
    }
}

/// An engine of 1 worker and 1 shard of 2 running [`FailsOnce`] with two attempts an event and
/// a 10 ms backoff, the model's clock reset, and event 1 submitted to stream `a`: its first
/// attempt fails and it waits for its retry (5 to 10 ms on the model's clock).
pub fn engine_with_a_retry() -> Arc<Engine<FailsOnce>> {
    let engine = engine_with(FailsOnce, |b| {
        b.workers(1)
            .shards(1)
            .shard_capacity(2)
            .max_attempts(2)
            .retry_backoff(std::time::Duration::from_millis(10))
            .retry_backoff_max(std::time::Duration::from_millis(10))
    });
    engine.try_submit(Event::new(id("a"), 1)).expect("room");
    engine
}

/// Spawns a model thread, then yields, so loom keeps exploring (tokio-rs/loom#392).
pub fn spawn<T: 'static>(f: impl FnOnce() -> T + 'static) -> thread::JoinHandle<T> {
    let handle = thread::spawn(f);
    thread::yield_now();
    handle
}

/// Keeps the panics a model plants (their messages say "planned panic") from printing a report
/// in every iteration; any other panic is reported as usual.
pub fn quiet_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let planned = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.contains("planned panic"));
            if !planned {
                report(info);
            }
        }));
    });
}

/// A gate the handler waits at while handling event 0, opened by the producer.
#[derive(Debug, Default)]
pub struct Gate {
    /// (the handler has reached the gate, the gate is open)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    pub fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }

    /// The handler's side: says it has arrived, then waits for the gate to open.
    pub fn wait(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap();
        }
    }

    /// Waits until the handler has reached the gate (it has taken event 0 from the ring).
    pub fn reached(&self) {
        let mut state = self.state.lock().unwrap();
        while !state.0 {
            state = self.changed.wait(state).unwrap();
        }
    }
}

/// An engine of one worker and one shard of capacity 1 running [`HeldAtGate`], and its gate.
pub fn gated_engine() -> (Arc<Gate>, Arc<Engine<HeldAtGate>>) {
    let gate = Arc::new(Gate::default());
    let engine = engine_with(HeldAtGate(gate.clone()), |b| b.workers(1).shards(1).shard_capacity(1));
    (gate, engine)
}

/// [`gated_engine`] with no room: its worker holds event 0 at the gate and event 1 fills the
/// ring, so a submit waits until the gate opens. (A producer that waited for event 1's room would
/// be woken only when the held run ends: a run wakes waiting producers as it hands off,
/// `Scheduler::hand_off`.)
pub fn full_gated_engine() -> (Arc<Gate>, Arc<Engine<HeldAtGate>>) {
    let (gate, engine) = gated_engine();
    engine.try_submit(Event::new(id("a"), 0)).expect("room");
    gate.reached();
    engine
        .try_submit(Event::new(id("a"), 1))
        .expect("room: event 0 left the ring");
    (gate, engine)
}

/// Holds event 0 at the gate, so the worker frees no room after taking it.
#[derive(Debug)]
pub struct HeldAtGate(pub Arc<Gate>);

impl Handler for HeldAtGate {
    type Payload = u64;
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }

    fn handle(&self, _: &mut (), event: &Event<u64>) -> Result<(), String> {
        if *event.payload() == 0 {
            self.0.wait();
        }
        Ok(())
    }
}
