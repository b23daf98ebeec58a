//! Logs and errors: R-SEC-3 (untrusted text reaches logs only as escaped structured fields),
//! R-API-2 (errors are typed, implement std::error::Error, carry the value back).

mod log_capture;

use std::time::Duration;

use log_capture::LOG;

use humpyard::{ConfigError, Engine, Event, Handler, StreamId, SubmitError};

struct Hostile;

impl Handler for Hostile {
    type Payload = ();
    type State = ();
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }
    fn handle(&self, _: &mut (), _: &Event<()>) -> Result<(), String> {
        Err("boom\nlevel=error msg=\"forged line\"\u{1b}[31m".to_owned())
    }
}

// proves R-SEC-3: a payload-derived error with newlines, quotes and escape codes reaches the log
// as one escaped field, never as raw text that could forge a line.
#[test]
fn untrusted_text_is_logged_escaped() {
    log_capture::install();
    let engine = Engine::builder(Hostile).workers(1).max_attempts(1).start().unwrap();
    engine
        .try_submit(Event::new(StreamId::new("victim").unwrap(), ()))
        .unwrap();
    engine.shutdown(Duration::from_secs(5));
    let lines = LOG.0.lock().unwrap();
    let dead = lines
        .iter()
        .find(|l| l.starts_with("humpyard dead-lettered an event"))
        .expect("the dead letter is logged");
    assert!(!dead.contains('\n'), "raw newline in a log line: {dead:?}");
    assert!(!dead.contains('\u{1b}'), "raw escape code in a log line: {dead:?}");
    assert!(
        dead.contains(r"boom\nlevel=error"),
        "the text is kept, escaped: {dead:?}"
    );
    assert!(dead.contains("stream=victim"));
}

// proves R-API-2: an error's message names a stream by its text, never as `StreamId(...)`.
#[test]
fn a_version_conflict_names_its_stream_by_its_text() {
    let conflict = humpyard::store::StoreError::WrongExpectedVersion {
        stream: StreamId::new("order-3").unwrap(),
        expected: humpyard::store::ExpectedVersion::Exact(2),
        actual: Some(5),
    };
    assert_eq!(
        conflict.to_string(),
        "stream \"order-3\" expected at version 2, but it is at version 5"
    );
}

// proves R-API-2: errors are typed enums implementing std::error::Error, with sources, and a
// rejected event comes back inside the error.
#[test]
fn errors_are_typed_and_hand_the_value_back() {
    fn is_error<E: std::error::Error + Send + 'static>(_: &E) {}
    let engine = Engine::builder(Hostile).workers(1).start().unwrap();
    engine.shutdown(Duration::from_secs(1));
    let err = engine
        .try_submit(Event::new(StreamId::new("x").unwrap(), ()))
        .unwrap_err();
    is_error(&err);
    assert!(matches!(err, SubmitError::Closed(_)));
    assert_eq!(err.into_event().stream().as_str(), "x");
    let config = Engine::builder(Hostile).workers(0).start().unwrap_err();
    is_error(&config);
    assert!(matches!(config, ConfigError::ZeroWorkers));
    let spawn = ConfigError::Spawn(std::io::Error::other("no threads"));
    assert!(
        std::error::Error::source(&spawn).is_some(),
        "the cause is kept as the source"
    );
    is_error(&StreamId::new("").unwrap_err());
}

// proves R-API-1 (contract): the engine is shared by producers behind an Arc.
#[test]
fn engine_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Engine<Hostile>>();
    shareable::<humpyard::Metrics>();
}
