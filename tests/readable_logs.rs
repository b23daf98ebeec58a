//! Log lines read on their own: a logger that prints only the message (`record.args()`, as
//! `env_logger`'s default format does, without the key-value fields) still says what happened
//! to what: the stream, and the reason. The key-value fields are unchanged for structured
//! loggers (`observability.rs` reads them).
//!
//! Its own test binary: the logger is process-global.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use humpyard::{Engine, Event, Handler, StreamId};

/// Keeps `record.args()` of every record, and nothing else.
struct ArgsOnly(Mutex<Vec<String>>);

impl log::Log for ArgsOnly {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap().push(record.args().to_string());
    }
    fn flush(&self) {}
}

static LOG: ArgsOnly = ArgsOnly(Mutex::new(Vec::new()));

/// The first line that starts with `prefix`, waiting up to 10 s for it.
fn line_starting(prefix: &str) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = LOG.0.lock().unwrap().iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        assert!(
            Instant::now() < until,
            "no line starts with {prefix:?}: {:?}",
            LOG.0.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `order-7`'s events panic (with a message that tries to forge a second line); `slow-1`'s
/// take 400 ms.
struct Checkout;

const FORGERY: &str = "card declined\nlevel=error msg=\"forged\"";

impl Handler for Checkout {
    type Payload = ();
    type State = ();
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }
    fn handle(&self, _: &mut (), event: &Event<()>) -> Result<(), String> {
        if event.stream().as_str() == "slow-1" {
            std::thread::sleep(Duration::from_millis(400));
            return Ok(());
        }
        std::panic::panic_any(FORGERY.to_owned())
    }
}

// proves R-SEC-3 and issue 19 item 4: with only the message printed, the panic line and the
// dead-letter line name the stream and the reason (the panic's message, escaped: no raw
// newline), and the slow-handler line names the worker and how long the call has run.
#[test]
fn the_message_alone_names_the_stream_and_the_reason() {
    log::set_logger(&LOG).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let engine = Engine::builder(Checkout)
        .workers(2)
        .shards(2)
        .max_attempts(1)
        .slow_handler_threshold(Duration::from_millis(50))
        .start()
        .unwrap();
    engine
        .try_submit(Event::new(StreamId::new("order-7").unwrap(), ()))
        .unwrap();
    engine
        .try_submit(Event::new(StreamId::new("slow-1").unwrap(), ()))
        .unwrap();

    let panic = line_starting("humpyard caught a panic");
    assert_eq!(
        panic,
        r#"humpyard caught a panic in the handler's handle for stream "order-7": "card declined\nlevel=error msg=\"forged\"""#
    );

    let dead = line_starting("humpyard dead-lettered an event");
    assert_eq!(
        dead,
        r#"humpyard dead-lettered an event of stream "order-7" after 1 attempt: panicked: "card declined\nlevel=error msg=\"forged\"""#
    );

    let slow = line_starting("humpyard handler is slow");
    assert!(slow.contains("worker "), "{slow:?}");
    assert!(slow.contains("has been in one call for "), "{slow:?}");
    assert!(slow.contains("(threshold 50ms)"), "{slow:?}");

    engine.shutdown(Duration::from_secs(5));
    for line in LOG.0.lock().unwrap().iter() {
        assert!(!line.contains('\n'), "a raw newline in a log line: {line:?}");
    }
}
