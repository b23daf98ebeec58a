//! The handler-duration histogram (`time_handlers`): every `handle` call counted once, failed,
//! panicking and retried ones included, in a bucket whose bounds hold its duration; none kept
//! (and no clock read) unless asked (R-OBS-2).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use humpyard::{Engine, Event, Handler, HandlerDurations, StreamId};

/// How long a slow call sleeps: a lower bound on its duration, whatever the machine's load.
const SLOW: Duration = Duration::from_millis(3);

#[derive(Clone, Copy)]
enum Call {
    Fast,
    Slow,
    Fails,
    Panics,
}

/// Does what the event says, and counts its calls.
struct Mixed {
    calls: Arc<AtomicU64>,
}

impl Handler for Mixed {
    type Payload = Call;
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }

    fn handle(&self, _: &mut (), event: &Event<Call>) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match event.payload() {
            Call::Fast => Ok(()),
            Call::Slow => {
                std::thread::sleep(SLOW);
                Ok(())
            }
            Call::Fails => Err("refused".to_owned()),
            Call::Panics => panic!("the handler panicked on purpose"),
        }
    }
}

fn run(time_handlers: bool, events: &[Call]) -> (Option<HandlerDurations>, u64) {
    let calls = Arc::new(AtomicU64::new(0));
    let engine = Engine::builder(Mixed { calls: calls.clone() })
        .workers(2)
        .shards(4)
        .max_attempts(2)
        .retry_backoff(Duration::ZERO)
        .quiet_panics(true)
        .time_handlers(time_handlers)
        .start()
        .unwrap();
    for (n, call) in events.iter().enumerate() {
        let stream = StreamId::new(&format!("job-{}", n % 7)).unwrap();
        engine
            .submit_timeout(Event::new(stream, *call), Duration::from_secs(10))
            .unwrap();
    }
    let report = engine.shutdown(Duration::from_secs(30));
    assert!(report.unprocessed.is_empty());
    (engine.metrics().handler_durations, calls.load(Ordering::Relaxed))
}

// proves R-OBS-2: with `time_handlers(true)` the histogram counts every `handle` call exactly
// once (a failed or panicking call too, each attempt of a retried event), and a call's bucket
// holds its duration: every call that slept 3 ms is in a bucket whose bound is above 3 ms.
#[test]
fn every_handler_call_is_timed_once_in_the_bucket_that_holds_it() {
    let mut events = vec![Call::Fast; 200];
    for n in 0..5 {
        events[n * 40 + 1] = Call::Slow;
        events[n * 40 + 2] = Call::Fails;
    }
    events[99] = Call::Panics;
    events[150] = Call::Panics;
    let (durations, calls) = run(true, &events);
    let d = durations.expect("the engine times its handler calls");

    // 188 fast and 5 slow calls, 5 failing and 2 panicking events with two attempts each.
    assert_eq!(calls, 188 + 5 + 2 * 5 + 2 * 2);
    assert_eq!(d.count(), calls);
    assert_eq!(d.counts.len(), HandlerDurations::BUCKETS);

    let above_slow: u64 = d
        .counts
        .iter()
        .enumerate()
        .filter(|(i, _)| HandlerDurations::upper_bound(*i).map_or(true, |bound| bound > SLOW))
        .map(|(_, n)| n)
        .sum();
    assert!(above_slow >= 5, "the slow calls are in low buckets: {d:?}");
    assert!(d.sum >= SLOW * 5, "the sum misses the slow calls: {d:?}");
    assert!(d.quantile(1.0).map_or(true, |longest| longest > SLOW), "{d:?}");
}

// proves R-OBS-2: the histogram is opt-in; an engine built without `time_handlers` keeps none.
#[test]
fn without_the_option_no_durations_are_kept() {
    let (durations, calls) = run(false, &[Call::Fast, Call::Slow, Call::Fails]);
    assert_eq!(calls, 4);
    assert_eq!(durations, None);
}
