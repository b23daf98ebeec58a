//! Every call into user code is contained and accounted: not only `init`, `handle`, `cleanup`
//! and the hooks, but the `Display` and `Drop` of the handler's error, and the `Drop` of
//! payloads the engine disposes of. A panic in any of them is caught and counted; the worker
//! lives on, the event is processed, retried or dead-lettered, and the accounting identity
//! holds (R-FT-1, R-OBS-2, R-LIFE-3).

mod common;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, quiet_planned_panics, sid};
use humpyard::pipeline::{Pipeline, StreamHandler};
use humpyard::store::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, RecordedEvent};
use humpyard::{Engine, EngineConfig, Event, Handler, Metrics, StreamId};
use serde_json::json;

/// An error whose `Display` or `Drop` panics.
#[derive(Debug)]
enum Loud {
    /// Formatting it panics.
    InDisplay,
    /// Dropping it panics (unless already unwinding).
    InDrop,
}

impl fmt::Display for Loud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loud::InDisplay => panic!("planned panic in Display"),
            Loud::InDrop => f.write_str("an error that explodes when dropped"),
        }
    }
}

impl Drop for Loud {
    fn drop(&mut self) {
        if matches!(self, Loud::InDrop) && !std::thread::panicking() {
            panic!("planned panic in the error's Drop");
        }
    }
}

/// A payload whose `Drop` panics when `explode` is set (unless already unwinding).
#[derive(Debug)]
struct Bomb {
    seq: u64,
    explode: bool,
    fail: Option<fn() -> Loud>,
}

impl Bomb {
    fn ok(seq: u64) -> Bomb {
        Bomb {
            seq,
            explode: false,
            fail: None,
        }
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.explode && !std::thread::panicking() {
            panic!("planned panic in the payload's Drop");
        }
    }
}

/// Records the seqs it handled; fails with the payload's error when it names one.
#[derive(Clone, Default)]
struct Handled(Arc<Mutex<Vec<u64>>>);

impl Handler for Handled {
    type Payload = Bomb;
    type State = ();
    type Error = Loud;

    fn init(&self, _: &StreamId) -> Result<(), Loud> {
        Ok(())
    }

    fn handle(&self, _: &mut (), event: &Event<Bomb>) -> Result<(), Loud> {
        if let Some(error) = event.payload().fail {
            return Err(error());
        }
        self.0.lock().unwrap().push(event.payload().seq);
        Ok(())
    }
}

fn engine(handler: Handled, dead_letter_buffer: usize) -> Engine<Handled> {
    Engine::builder(handler)
        .workers(1)
        .shards(1)
        .max_attempts(1)
        .dead_letter_buffer(dead_letter_buffer)
        .start()
        .unwrap()
}

/// Submits `events` to stream `a` in order, waiting for room.
fn submit_all(engine: &Engine<Handled>, events: impl IntoIterator<Item = Bomb>) {
    for event in events {
        engine
            .submit_timeout(Event::new(sid("a"), event), Duration::from_secs(5))
            .unwrap();
    }
}

fn assert_accounted(m: &Metrics, unprocessed: usize) {
    assert_eq!(
        m.accepted,
        m.processed + m.dead_lettered + unprocessed as u64,
        "accepted {} != processed {} + dead-lettered {} + unprocessed {unprocessed}",
        m.accepted,
        m.processed,
        m.dead_lettered
    );
}

// proves R-FT-1, R-OBS-2: a handler error whose Display panics fails its event (dead-lettered
// with a message that says so), and one whose Drop panics is still dead-lettered with its
// text; the panics are counted, the worker lives on and the stream's later events are handled
// in order.
#[test]
fn an_errors_display_or_drop_that_panics_is_contained() {
    quiet_planned_panics();
    let handled = Handled::default();
    let engine = engine(handled.clone(), 16);
    let failing = |seq, fail: fn() -> Loud| Bomb {
        seq,
        explode: false,
        fail: Some(fail),
    };
    submit_all(
        &engine,
        [
            Bomb::ok(0),
            failing(1, || Loud::InDisplay),
            Bomb::ok(2),
            failing(3, || Loud::InDrop),
            Bomb::ok(4),
        ],
    );
    let report = engine.shutdown(Duration::from_secs(10));
    let m = engine.metrics();
    assert_accounted(&m, report.unprocessed.len());
    assert_eq!((m.processed, m.dead_lettered), (3, 2));
    assert_eq!(m.workers_replaced, 0, "the worker survived");
    assert_eq!(m.panics, 2, "the Display panic and the Drop panic");
    assert_eq!(*handled.0.lock().unwrap(), vec![0, 2, 4]);
    let letters = engine.take_dead_letters();
    let seqs: Vec<u64> = letters.iter().map(|l| l.event.payload().seq).collect();
    assert_eq!(seqs, vec![1, 3]);
    assert!(
        letters[0].failure.message().contains("planned panic in Display"),
        "{}",
        letters[0].failure
    );
    assert_eq!(letters[1].failure.message(), "an error that explodes when dropped");
}

// proves R-FT-1, R-OBS-2: a payload whose Drop panics after its event was handled is counted
// as processed; the panic is counted and the batch's other events are not lost.
#[test]
fn a_payload_drop_that_panics_is_contained() {
    quiet_planned_panics();
    let handled = Handled::default();
    let engine = engine(handled.clone(), 16);
    submit_all(
        &engine,
        (0..4).map(|seq| Bomb {
            seq,
            explode: seq == 1,
            fail: None,
        }),
    );
    let report = engine.shutdown(Duration::from_secs(10));
    let m = engine.metrics();
    assert_accounted(&m, report.unprocessed.len());
    assert_eq!((m.processed, m.panics, m.workers_replaced), (4, 1, 0));
    assert_eq!(*handled.0.lock().unwrap(), vec![0, 1, 2, 3]);
}

// proves R-OBS-1, R-OBS-2: the default dead-letter sink, full, discards its oldest letter; a
// payload whose Drop panics there is contained and counted.
#[test]
fn a_discarded_dead_letter_whose_drop_panics_is_contained() {
    quiet_planned_panics();
    let handled = Handled::default();
    let engine = engine(handled.clone(), 1);
    submit_all(
        &engine,
        (0..3).map(|seq| Bomb {
            seq,
            explode: seq == 0,
            fail: Some(|| Loud::InDisplay),
        }),
    );
    let report = engine.shutdown(Duration::from_secs(10));
    let m = engine.metrics();
    assert_accounted(&m, report.unprocessed.len());
    assert_eq!((m.dead_lettered, m.dead_letters_discarded), (3, 2));
    // Three Display panics and the discarded letter's Drop.
    assert_eq!((m.panics, m.workers_replaced), (4, 0));
    let kept: Vec<u64> = engine
        .take_dead_letters()
        .iter()
        .map(|l| l.event.payload().seq)
        .collect();
    assert_eq!(kept, vec![2]);
}

/// A pipeline handler that fails one position with an error whose Display panics.
struct FailsAt {
    position: u64,
    handled: Arc<AtomicU64>,
}

impl StreamHandler for FailsAt {
    type State = ();
    type Error = Loud;

    fn init(&self, _: &StreamId) {}

    fn apply(&self, _: &mut (), _: &RecordedEvent) {}

    fn handle(&self, _: &(), event: &RecordedEvent) -> Result<(), Loud> {
        if event.position == self.position {
            return Err(Loud::InDisplay);
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

// proves R-FT-1, R-PG-5: in a pipeline, an error whose Display panics parks its event (and its
// stream's later events behind it), and the checkpoint passes them (before, the worker unwound mid-batch, the event vanished and
// the checkpoint froze below it for good).
#[test]
fn a_pipeline_checkpoint_passes_an_event_whose_errors_display_panics() {
    quiet_planned_panics();
    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let stream = sid("order-1");
    let events = (0..5).map(|n| NewEvent::new("step", json!({ "n": n }))).collect();
    store.append(&stream, ExpectedVersion::NoStream, events).unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let handler = FailsAt {
        position: 2,
        handled: handled.clone(),
    };
    let pipeline = Pipeline::builder(store.clone(), "fails-at-2", handler)
        .checkpoint_interval(Duration::from_millis(5))
        .engine(EngineConfig::default().workers(1))
        .max_attempts(1)
        .start()
        .unwrap();
    eventually("the checkpoint passes position 2", || pipeline.stats().checkpoint >= 5);
    let report = pipeline.shutdown(Duration::from_secs(5));
    assert_eq!(report.checkpoint, 5);
    assert_eq!((report.stats.handled, report.stats.parked), (1, 4));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}
