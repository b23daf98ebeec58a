//! Feature `tracing`: every handler call runs in a `humpyard.handle` span at DEBUG naming its
//! stream and worker, so a handler's own events carry the stream they belong to (R-OBS-2;
//! issue 19's optional spans). A minimal subscriber of the test's own records the spans.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use humpyard::{Engine, Event, Handler, StreamId};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Metadata, Subscriber};

/// A span as the subscriber saw it made: name, level, its `stream` field.
#[derive(Debug, Clone, PartialEq)]
struct Made {
    name: &'static str,
    level: Level,
    stream: Option<String>,
}

/// What the subscriber saw: the spans made, and for each event, the span its thread was in.
#[derive(Default)]
struct Log {
    spans: Mutex<Vec<Made>>,
    events: Mutex<Vec<(Option<u64>, String)>>,
}

thread_local! {
    /// The spans this thread is in, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Pulls a field's text out of a span's or event's values.
struct FieldText(&'static str, Option<String>);

impl Visit for FieldText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == self.0 {
            self.1 = Some(format!("{value:?}"));
        }
    }
}

/// Writes to the [`Log`].
struct Recorder {
    next: AtomicU64,
    log: Arc<Log>,
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut stream = FieldText("stream", None);
        span.record(&mut stream);
        self.log.spans.lock().unwrap().push(Made {
            name: span.metadata().name(),
            level: *span.metadata().level(),
            stream: stream.1,
        });
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = FieldText("message", None);
        event.record(&mut message);
        let span = ENTERED.with(|entered| entered.borrow().last().copied());
        self.log
            .events
            .lock()
            .unwrap()
            .push((span, message.1.unwrap_or_default()));
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().pop());
        // A subscriber that fails as it leaves the span of stream `bomb`.
        let made = self.log.spans.lock().unwrap()[span.into_u64() as usize - 1].clone();
        if made.stream.as_deref() == Some("bomb") {
            panic!("the subscriber fails on leaving a span");
        }
    }
}

/// The process's one subscriber's log (the spans are made on the engine's worker threads).
fn log() -> &'static Arc<Log> {
    static LOG: OnceLock<Arc<Log>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Log::default());
        let recorder = Recorder {
            next: AtomicU64::new(0),
            log: log.clone(),
        };
        tracing::subscriber::set_global_default(recorder).expect("the only subscriber");
        log
    })
}

/// Logs one `tracing` event per call, as a handler with its own instrumentation would.
struct Traced;

impl Handler for Traced {
    type Payload = u32;
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }

    fn handle(&self, _: &mut (), event: &Event<u32>) -> Result<(), String> {
        if event.stream().as_str() == "bomb" {
            panic!("the handler panics on stream bomb");
        }
        tracing::info!("applied {}", event.payload());
        Ok(())
    }
}

// proves R-OBS-2: with feature `tracing`, each handler call is in a DEBUG span named
// `humpyard.handle` whose `stream` field is the stream's text, and the handler's own events are
// recorded inside it
#[test]
fn each_handler_call_runs_in_a_span_naming_its_stream() {
    let log = log();
    let engine = Engine::builder(Traced).workers(2).shards(4).start().unwrap();
    for n in 0..30u32 {
        let stream = StreamId::new(&format!("cart-{}", n % 3)).unwrap();
        engine
            .submit_timeout(Event::new(stream, n), Duration::from_secs(10))
            .unwrap();
    }
    let report = engine.shutdown(Duration::from_secs(10));
    assert!(report.unprocessed.is_empty());

    let spans = log.spans.lock().unwrap().clone();
    let handle: Vec<&Made> = spans
        .iter()
        .filter(|s| s.name == "humpyard.handle" && s.stream.as_deref().is_some_and(|s| s.starts_with("cart-")))
        .collect();
    assert_eq!(handle.len(), 30, "{spans:?}");
    assert!(handle.iter().all(|s| s.level == Level::DEBUG));
    for stream in ["cart-0", "cart-1", "cart-2"] {
        let n = handle.iter().filter(|s| s.stream.as_deref() == Some(stream)).count();
        assert_eq!(n, 10, "{stream}: {spans:?}");
    }
    // Every event the handler logged was recorded inside a span of its thread.
    let events = log.events.lock().unwrap().clone();
    // (The other test's event on stream `after-bomb` logs "applied 1000".)
    let applied: Vec<_> = events
        .iter()
        .filter(|(_, m)| m.starts_with("applied") && m != "applied 1000")
        .collect();
    assert_eq!(applied.len(), 30, "{events:?}");
    assert!(applied.iter().all(|(span, _)| span.is_some()), "{events:?}");
}

// proves R-OBS-1 and R-FT-1: a subscriber is user code, contained with the handler call. When
// the handler panics and the subscriber panics too as the call leaves its span, the process
// does not abort (the span is left after the handler's panic is caught, never during the
// unwind): both panics are counted and the event is dead-lettered like any failed call.
#[test]
fn a_subscriber_that_panics_leaving_a_failed_calls_span_aborts_nothing() {
    log();
    let engine = Engine::builder(Traced)
        .workers(1)
        .max_attempts(1)
        .quiet_panics(true)
        .start()
        .unwrap();
    engine
        .submit_timeout(Event::new(StreamId::new("bomb").unwrap(), 0), Duration::from_secs(10))
        .unwrap();
    engine
        .submit_timeout(
            Event::new(StreamId::new("after-bomb").unwrap(), 1000),
            Duration::from_secs(10),
        )
        .unwrap();
    let report = engine.shutdown(Duration::from_secs(10));
    assert!(report.unprocessed.is_empty());
    let m = engine.metrics();
    assert_eq!((m.processed, m.dead_lettered), (1, 1), "{m:?}");
    assert!(m.panics >= 1, "{m:?}");
    let letters = engine.take_dead_letters();
    assert_eq!(letters.len(), 1);
    assert!(
        matches!(letters[0].failure, humpyard::Failure::Panic(_)),
        "{:?}",
        letters[0].failure
    );
}
