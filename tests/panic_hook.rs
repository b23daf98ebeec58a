//! `EngineBuilder::quiet_panics`: the process's panic hook hears nothing of the panics a quiet
//! engine contains, and everything else as before.
//!
//! Its own test binary: the panic hook is process-global. The tests share one recording hook,
//! set before any engine starts (so a quiet engine's hook wraps it, as the docs advise), and
//! run one at a time.

use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use humpyard::{Engine, Event, Handler, StreamId};

/// The messages of the panics the recording hook was called for.
static HEARD: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// One test at a time: each reads what the shared hook heard.
static SERIAL: Mutex<()> = Mutex::new(());

/// Sets the recording hook (once) and takes the test's turn.
fn setup() -> MutexGuard<'static, ()> {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            HEARD.lock().unwrap_or_else(|e| e.into_inner()).push(message);
        }));
    });
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the recording hook heard a panic with `message`.
fn heard(message: &str) -> bool {
    HEARD.lock().unwrap().iter().any(|m| m == message)
}

/// Panics in `handle` with the event's payload as the message.
struct Panicky;

impl Handler for Panicky {
    type Payload = &'static str;
    type State = ();
    type Error = String;
    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }
    fn handle(&self, _: &mut (), event: &Event<&'static str>) -> Result<(), String> {
        panic!("{}", event.payload())
    }
}

/// Runs one event whose handling panics with `message` on an engine with `quiet`; returns the
/// engine's panic count (the handler's panic and the `on_panic` hook's own, which panics
/// with `message` + " (hook)").
fn run_one(quiet: bool, message: &'static str) -> u64 {
    let engine = Engine::builder(Panicky)
        .workers(1)
        .max_attempts(1)
        .quiet_panics(quiet)
        .on_panic(move |report| {
            if !report.message.ends_with("(hook)") {
                panic!("{message} (hook)");
            }
        })
        .start()
        .unwrap();
    engine
        .try_submit(Event::new(StreamId::new("order-1").unwrap(), message))
        .unwrap();
    let report = engine.shutdown(Duration::from_secs(10));
    assert!(report.unprocessed.is_empty());
    let metrics = engine.metrics();
    assert_eq!(metrics.dead_lettered, 1, "the event failed and was dead-lettered");
    metrics.panics
}

// proves issue 19 item 4 (no requirement id covers the process's panic hook): the option is
// off by default, and then every contained panic reaches the process's hook as before; the
// panics are still caught and counted (R-OBS-1, R-OBS-2).
#[test]
fn without_the_option_contained_panics_reach_the_previous_hook() {
    let _turn = setup();
    let panics = run_one(false, "planned loud panic");
    assert_eq!(panics, 2, "the handler's panic and the panic hook's");
    assert!(heard("planned loud panic"));
    assert!(heard("planned loud panic (hook)"));
}

// proves issue 19 item 4: with the option on, the panics the engine contains (the handler's,
// and its own panic hook's) never reach the hook that was in place before, but are still
// caught and counted (R-OBS-1, R-OBS-2); a panic outside the engine still reaches it, and so
// do the contained panics of another engine without the option.
#[test]
fn with_the_option_only_the_contained_panics_are_silent() {
    let _turn = setup();
    let panics = run_one(true, "planned quiet panic");
    assert_eq!(panics, 2, "the handler's panic and the panic hook's, still counted");
    assert!(!heard("planned quiet panic"), "a contained panic reached the hook");
    assert!(
        !heard("planned quiet panic (hook)"),
        "a contained hook panic reached the hook"
    );

    let outside = std::thread::spawn(|| panic!("planned panic outside the engine")).join();
    assert!(outside.is_err());
    assert!(heard("planned panic outside the engine"));
    let caught_by_the_caller = std::panic::catch_unwind(|| panic!("planned panic in the test thread"));
    assert!(caught_by_the_caller.is_err());
    assert!(
        heard("planned panic in the test thread"),
        "only the engine's own catches are quiet"
    );

    // The quiet hook is installed now; an engine without the option is not quiet.
    assert_eq!(run_one(false, "planned panic of a loud engine"), 2);
    assert!(heard("planned panic of a loud engine"));
    assert!(heard("planned panic of a loud engine (hook)"));
}
