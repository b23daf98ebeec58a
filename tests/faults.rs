//! Faults: R-FT-1, R-FT-2, R-FT-4, R-OBS-1.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, quiet_planned_panics, sid, Action, Msg, Probe, ProbeHandler};
use humpyard::{DeadLetter, Engine, Event, Failure, Handler, PanicSite, Removal, StreamId};

// proves R-FT-1, R-FT-2: a panic is caught per event, the worker lives on, the state is cleaned
// up and re-made, and the event is retried, then succeeds.
#[test]
fn panic_is_contained_retried_and_state_recreated() {
    quiet_planned_panics();
    let probe = Probe::recording();
    let removals = Arc::new(Mutex::new(Vec::new()));
    let r = removals.clone();
    let engine = Engine::builder(ProbeHandler(probe.clone()))
        .workers(1)
        .max_attempts(3)
        .retry_backoff(Duration::from_millis(1))
        .on_entity_removed(move |id, why| r.lock().unwrap().push((id.as_str().to_owned(), why)))
        .start()
        .unwrap();
    let submit = |seq, action| {
        engine
            .submit_timeout(Event::new(sid("p"), Msg { seq, action }), Duration::from_secs(5))
            .unwrap()
    };
    submit(0, Action::Ok);
    submit(1, Action::PanicTimes(2)); // two panics, then success on the third attempt
    submit(2, Action::Ok);
    engine.shutdown(Duration::from_secs(10));
    let m = engine.metrics();
    assert_eq!((m.processed, m.dead_lettered, m.panics, m.retries), (3, 0, 2, 2));
    assert_eq!(m.workers_replaced, 0, "the worker thread survived the panics");
    assert_eq!(probe.handled.lock().unwrap()["p"], vec![0, 1, 2]);
    // init: first event, and after each of the two panics.
    assert_eq!(probe.inits.load(Ordering::SeqCst), 3);
    assert_eq!(probe.cleanups.load(Ordering::SeqCst), 3);
    let whys: Vec<Removal> = removals.lock().unwrap().iter().map(|(_, w)| *w).collect();
    assert_eq!(whys, vec![Removal::Panicked, Removal::Panicked, Removal::Shutdown]);
}

// proves R-FT-4: failures are retried with capped exponential backoff, then dead-lettered with
// the reason; the default sink keeps the dead letter when no hook is set (R-OBS-1).
#[test]
fn failures_back_off_then_dead_letter_with_the_reason() {
    struct Timed(Arc<Mutex<Vec<Instant>>>);
    impl Handler for Timed {
        type Payload = u32;
        type State = ();
        type Error = String;
        fn init(&self, _: &StreamId) -> Result<(), String> {
            Ok(())
        }
        fn handle(&self, _: &mut (), e: &Event<u32>) -> Result<(), String> {
            self.0.lock().unwrap().push(Instant::now());
            Err(format!("always fails: {}", e.payload()))
        }
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let engine = Engine::builder(Timed(calls.clone()))
        .workers(1)
        .max_attempts(5)
        .retry_backoff(Duration::from_millis(20))
        .retry_backoff_max(Duration::from_millis(80))
        .start()
        .unwrap();
    engine.try_submit(Event::new(sid("f"), 7)).unwrap();
    eventually("dead-lettered", || engine.metrics().dead_lettered == 1);
    let letters: Vec<DeadLetter<u32>> = engine.take_dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 5);
    assert_eq!(*letters[0].event.payload(), 7);
    assert_eq!(letters[0].failure, Failure::Handler("always fails: 7".into()));
    let times = calls.lock().unwrap().clone();
    assert_eq!(times.len(), 5, "exactly max_attempts calls");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Delay k is 20ms * 2^(k-1), capped at 80 ms, with half of it jitter: [d/2, d].
    for (k, gap) in gaps.iter().enumerate() {
        let full = Duration::from_millis((20u64 << k).min(80));
        assert!(*gap >= full / 2, "retry {k} came after {gap:?}, before {:?}", full / 2);
    }
    engine.shutdown(Duration::from_secs(5));
    let m = engine.metrics();
    assert_eq!((m.accepted, m.processed, m.dead_lettered, m.retries), (1, 0, 1, 4));
}

// proves R-FT-4: while one entity waits for its retry, other shards run at full speed.
#[test]
fn a_failing_entity_does_not_stall_other_shards() {
    let probe = Probe::new();
    let engine = Engine::builder(ProbeHandler(probe.clone()))
        .workers(1)
        .shards(8)
        .max_attempts(2)
        .retry_backoff(Duration::from_secs(30))
        .retry_backoff_max(Duration::from_secs(30))
        .start()
        .unwrap();
    let bad = sid("bad");
    engine
        .try_submit(Event::new(
            bad.clone(),
            Msg {
                seq: 0,
                action: Action::FailTimes(10),
            },
        ))
        .unwrap();
    eventually("first failure", || engine.metrics().retries == 1);
    // One worker: had it slept through the 15..30 s backoff, nothing else would run meanwhile.
    let mut n = 0;
    for s in 0..200 {
        let id = sid(&format!("good{s}"));
        if engine.shard_of(&id) != engine.shard_of(&bad) {
            engine
                .submit_timeout(Event::new(id, Msg::ok(0)), Duration::from_secs(5))
                .unwrap();
            n += 1;
        }
    }
    eventually("others processed", || engine.metrics().processed == n);
    let m = engine.metrics();
    assert_eq!(
        (m.dead_lettered, m.awaiting_retry),
        (0, 1),
        "the bad entity still waits"
    );
    let report = engine.shutdown(Duration::from_millis(100));
    assert!(report.deadline_exceeded);
    assert_eq!(report.unprocessed.len(), 1, "the waiting event is handed back");
    assert_eq!(report.unprocessed[0].stream(), &bad);
    let m = engine.metrics();
    assert_eq!(
        m.accepted,
        m.processed + m.dead_lettered + report.unprocessed.len() as u64
    );
}

// proves R-FT-2: cleanup runs exactly once for every state init made: across idle reap, eviction,
// panic and shutdown; a panic inside cleanup or init is caught and counted.
#[test]
fn cleanup_exactly_once_per_init_on_every_path() {
    quiet_planned_panics();
    struct Picky {
        inits: AtomicU64,
        cleanups: Mutex<Vec<String>>,
    }
    struct H(Arc<Picky>);
    impl Handler for H {
        type Payload = u8;
        type State = String;
        type Error = String;
        fn init(&self, s: &StreamId) -> Result<String, String> {
            if s.as_str().starts_with("init-panics") {
                panic!("planned panic in init");
            }
            if s.as_str().starts_with("init-fails") {
                return Err("no state for you".into());
            }
            self.0.inits.fetch_add(1, Ordering::SeqCst);
            Ok(s.as_str().to_owned())
        }
        fn handle(&self, _: &mut String, e: &Event<u8>) -> Result<(), String> {
            if *e.payload() == 1 {
                panic!("planned panic in handle");
            }
            Ok(())
        }
        fn cleanup(&self, s: &StreamId, state: String) {
            assert_eq!(s.as_str(), state);
            self.0.cleanups.lock().unwrap().push(state);
            if s.as_str().starts_with("cleanup-panics") {
                panic!("planned panic in cleanup");
            }
        }
    }
    let picky = Arc::new(Picky {
        inits: AtomicU64::new(0),
        cleanups: Mutex::new(Vec::new()),
    });
    let engine = Engine::builder(H(picky.clone()))
        .workers(2)
        .shards(1)
        .max_entities(2)
        .max_attempts(1)
        .idle_timeout(Duration::from_millis(50))
        .start()
        .unwrap();
    let send = |s: &str, p: u8| {
        engine
            .submit_timeout(Event::new(sid(s), p), Duration::from_secs(5))
            .unwrap()
    };
    send("reaped", 0);
    eventually("idle reap", || engine.metrics().entities_reaped == 1);
    send("panics", 1); // handle panics: cleanup after the panic
    send("a", 0);
    send("b", 0);
    send("c", 0); // evicts a (cap 2)
    send("cleanup-panics", 0); // evicts b
    send("init-panics", 0); // at the cap: evicts c before init runs (and panics)
    send("init-fails", 0);
    eventually("all handled", || {
        let m = engine.metrics();
        m.processed + m.dead_lettered == 8
    });
    engine.shutdown(Duration::from_secs(5)); // cleans up cleanup-panics
    let m = engine.metrics();
    let mut cleaned = picky.cleanups.lock().unwrap().clone();
    cleaned.sort();
    let mut want = vec!["reaped", "panics", "a", "b", "c", "cleanup-panics"];
    want.sort();
    assert_eq!(cleaned, want, "each state cleaned up exactly once");
    assert_eq!(picky.inits.load(Ordering::SeqCst), 6);
    assert_eq!(m.entities_evicted, 3);
    assert_eq!(m.entities_reaped, 1);
    assert_eq!(m.entities_live, 0);
    // Panics: handle, init, cleanup.
    assert_eq!(m.panics, 3);
    let letters = engine.take_dead_letters();
    let failures: Vec<_> = letters.iter().map(|l| l.failure.clone()).collect();
    assert!(failures.contains(&Failure::Panic("planned panic in handle".into())));
    assert!(failures.contains(&Failure::Panic("planned panic in init".into())));
    assert!(failures.contains(&Failure::Init("no state for you".into())));
}

// proves R-OBS-1: a panicking hook is caught and counted, and still called for later events;
// without hooks nothing is lost.
#[test]
fn panicking_hooks_are_caught_counted_and_called_again() {
    quiet_planned_panics();
    let probe = Probe::new();
    let dead_letter_calls = Arc::new(AtomicU64::new(0));
    let panic_hook_calls = Arc::new(AtomicU64::new(0));
    let (d, p) = (dead_letter_calls.clone(), panic_hook_calls.clone());
    let engine = Engine::builder(ProbeHandler(probe))
        .workers(1)
        .max_attempts(1)
        .on_dead_letter(move |letter| {
            d.fetch_add(1, Ordering::SeqCst);
            panic!("hook panic for {}", letter.event.stream());
        })
        .on_panic(move |report| {
            p.fetch_add(1, Ordering::SeqCst);
            assert_eq!(report.site, PanicSite::Hook);
        })
        .start()
        .unwrap();
    for seq in 0..3 {
        engine
            .submit_timeout(
                Event::new(
                    sid("x"),
                    Msg {
                        seq,
                        action: Action::FailTimes(1),
                    },
                ),
                Duration::from_secs(5),
            )
            .unwrap();
    }
    engine.shutdown(Duration::from_secs(5));
    let m = engine.metrics();
    assert_eq!(
        dead_letter_calls.load(Ordering::SeqCst),
        3,
        "called again after panicking"
    );
    assert_eq!(panic_hook_calls.load(Ordering::SeqCst), 3);
    assert_eq!((m.dead_lettered, m.panics), (3, 3));
    assert!(engine.take_dead_letters().is_empty(), "the hook took them");
}

// proves R-FT-1: a worker thread that dies anyway is detected and replaced, and its shard
// resumes; nothing is lost.
#[test]
fn dead_worker_is_replaced_and_its_shard_resumes() {
    quiet_planned_panics();
    let probe = Probe::recording();
    let engine = Engine::builder(ProbeHandler(probe.clone()))
        .workers(1)
        .shards(1)
        .shard_capacity(10_000)
        .slow_handler_threshold(Duration::from_millis(20))
        .start()
        .unwrap();
    let slow = Action::Sleep(Duration::from_micros(200));
    for seq in 0..2_000 {
        engine
            .try_submit(Event::new(sid("w"), Msg { seq, action: slow }))
            .unwrap();
    }
    engine.inject_worker_exit(0);
    eventually("replacement", || engine.metrics().workers_replaced == 1);
    let report = engine.shutdown(Duration::from_secs(30));
    assert!(report.unprocessed.is_empty());
    assert_eq!(probe.handled.lock().unwrap()["w"], (0..2_000).collect::<Vec<_>>());
    let m = engine.metrics();
    assert_eq!((m.processed, m.workers_replaced), (2_000, 1));
    assert_eq!(probe.violations(), 0);
}

// proves R-LIFE-3, R-FT-4: shutdown's drain waits for an event held for its retry (its shard
// is neither idle nor queued, but it has work): with a deadline that allows it, the retry runs
// and succeeds instead of the event being handed back
#[test]
fn shutdown_drains_an_event_waiting_for_its_retry() {
    let probe = Probe::recording();
    let engine = Engine::builder(ProbeHandler(probe.clone()))
        .workers(1)
        .shards(1)
        .max_attempts(2)
        .retry_backoff(Duration::from_millis(200))
        .retry_backoff_max(Duration::from_millis(200))
        .start()
        .unwrap();
    engine
        .try_submit(Event::new(
            sid("retried"),
            Msg {
                seq: 0,
                action: Action::FailTimes(1),
            },
        ))
        .unwrap();
    eventually("the first attempt failed", || engine.metrics().awaiting_retry == 1);
    let report = engine.shutdown(Duration::from_secs(10));
    assert!(
        report.unprocessed.is_empty(),
        "the waiting event was handed back, not retried"
    );
    assert!(!report.deadline_exceeded);
    let m = engine.metrics();
    assert_eq!((m.processed, m.retries, m.awaiting_retry), (1, 1, 0));
    assert_eq!(probe.handled.lock().unwrap()["retried"], vec![0]);
}
