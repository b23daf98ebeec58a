//! Async callers inside tokio runtimes (current-thread and multi-thread): `Engine::submit_async`
//! waits for room as a pending task, never a blocked thread, and loses nothing when cancelled;
//! `store::AsyncStore` runs the store's calls off the executor's threads (R-BP-2 for async
//! callers; issue 19). The waker protocol itself is model-checked in
//! `loom-tests/tests/async_waiting.rs`.

mod common;
mod store;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{sid, Gate, Msg, OpenOnDrop, Probe, ProbeHandler};
use humpyard::store::{AsyncStore, ExpectedVersion, InMemoryStore, NewEvent, StoreError};
use humpyard::{Engine, Event, Handler, StreamId, SubmitError};
use serde_json::json;

/// Holds the worker in event 0 until the gate opens; records every payload in order.
struct Held {
    gate: Arc<Gate>,
    seen: Seen,
}

impl Handler for Held {
    type Payload = u64;
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<(), String> {
        Ok(())
    }

    fn handle(&self, _: &mut (), event: &Event<u64>) -> Result<(), String> {
        if *event.payload() == 0 {
            self.gate.wait();
        }
        self.seen.lock().unwrap().push(*event.payload());
        Ok(())
    }
}

/// What the handler saw, in order.
type Seen = Arc<Mutex<Vec<u64>>>;

/// An engine of one worker and one shard of capacity 1, its worker held in event 0 and event
/// 1 in the ring: the next submit finds no room until the gate opens.
fn full_engine() -> (Arc<Engine<Held>>, Arc<Gate>, Seen) {
    let gate = Gate::new();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let held = Held {
        gate: gate.clone(),
        seen: seen.clone(),
    };
    let engine = Arc::new(
        Engine::builder(held)
            .workers(1)
            .shards(1)
            .shard_capacity(1)
            .start()
            .unwrap(),
    );
    engine.try_submit(Event::new(sid("a"), 0)).unwrap();
    gate.wait_entered(1);
    engine.try_submit(Event::new(sid("a"), 1)).unwrap();
    (engine, gate, seen)
}

/// A current-thread runtime with its timers and I/O: one thread, so a blocked one would stall
/// every task.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// proves R-BP-2 for async callers: on a current-thread runtime a submit waiting for room leaves
// the runtime's only thread free (its timer fires); cancelled by the timeout, the event is
// still the caller's, neither taken nor counted; submitted again, it runs in order
#[test]
fn a_pending_submit_blocks_no_thread_and_a_cancelled_one_loses_nothing() {
    let runtime = current_thread();
    let (engine, gate, seen) = full_engine();
    let _open = OpenOnDrop(gate.clone());
    runtime.block_on(async {
        let mut pending = Some(Event::new(sid("a"), 2));
        let waited = tokio::time::timeout(Duration::from_millis(50), engine.submit_async(&mut pending)).await;
        assert!(waited.is_err(), "no room while the worker is held: the timeout wins");
        assert_eq!(
            pending.as_ref().map(|e| *e.payload()),
            Some(2),
            "the event is still ours"
        );
        let m = engine.metrics();
        assert_eq!(
            (m.accepted, m.rejected),
            (2, 0),
            "a cancelled submit is neither taken nor refused"
        );

        // The gate opens from another thread while the submit is pending again.
        let opener = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                gate.open();
            })
        };
        engine.submit_async(&mut pending).await.expect("room appears");
        assert!(pending.is_none(), "taken");
        opener.join().unwrap();
    });
    let report = engine.shutdown(Duration::from_secs(10));
    assert!(report.unprocessed.is_empty());
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
    let m = engine.metrics();
    assert_eq!((m.accepted, m.processed, m.rejected), (3, 3, 0));
}

// proves R-BP-2 and R-CONC-1 for async callers: when shutdown begins, a pending submit resolves
// `Closed` with its own event, counted in `rejected`
#[test]
fn shutdown_hands_a_pending_submit_its_event_back() {
    let runtime = current_thread();
    let (engine, gate, seen) = full_engine();
    let _open = OpenOnDrop(gate.clone());
    let outcome = runtime.block_on(async {
        let mut pending = Some(Event::new(sid("a"), 2));
        let submit = engine.submit_async(&mut pending);
        let closer = {
            let engine = engine.clone();
            let gate = gate.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                // Shutdown closes the rings (waking the submit) and drains once the gate opens.
                let opener = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    gate.open();
                });
                let report = engine.shutdown(Duration::from_secs(10));
                opener.join().unwrap();
                report
            })
        };
        let outcome = submit.await;
        assert!(pending.is_none(), "handed back inside the error");
        (outcome, closer.join().unwrap())
    });
    let (outcome, report) = outcome;
    match outcome {
        Err(SubmitError::Closed(event)) => assert_eq!(*event.payload(), 2),
        other => panic!("expected Closed with event 2, got {other:?}"),
    }
    assert!(report.unprocessed.is_empty());
    assert_eq!(*seen.lock().unwrap(), vec![0, 1]);
    let m = engine.metrics();
    assert_eq!((m.accepted, m.processed, m.rejected), (2, 2, 1));
}

// proves R-BP-2 and R-CONC-3 for async callers: 8 tasks on a multi-thread runtime push 16 000
// events through shards of 4 places, each waiting for room as a task; every event is taken and
// handled once, in its stream's order, and none is refused
#[test]
fn many_tasks_on_a_multi_thread_runtime_keep_every_streams_order() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let probe = Probe::recording();
    let engine = Arc::new(
        Engine::builder(ProbeHandler(probe.clone()))
            .workers(2)
            .shards(4)
            .shard_capacity(4)
            .start()
            .unwrap(),
    );
    const TASKS: u64 = 8;
    const EACH: u64 = 2000;
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    for n in 0..EACH {
                        // Stream t-k gets seqs 0, 1, 2, ... in order from this task alone.
                        let stream = sid(&format!("t{t}-{}", n % 10));
                        let mut pending = Some(Event::new(stream, Msg::ok(n / 10)));
                        engine.submit_async(&mut pending).await.expect("the engine is open");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let report = engine.shutdown(Duration::from_secs(30));
    assert!(report.unprocessed.is_empty());
    let m = engine.metrics();
    assert_eq!((m.accepted, m.processed, m.rejected), (TASKS * EACH, TASKS * EACH, 0));
    assert_eq!(probe.violations(), 0, "order and exclusivity held");
    let handled = probe.handled.lock().unwrap();
    assert_eq!(handled.len(), (TASKS * 10) as usize);
    for (stream, seqs) in handled.iter() {
        assert_eq!(*seqs, (0..EACH / 10).collect::<Vec<_>>(), "stream {stream}");
    }
    assert_eq!(probe.handled_ok.load(Ordering::SeqCst), TASKS * EACH);
}

// proves issue 19's async store: on a current-thread runtime, calls run on the store's own
// threads and come back as futures; a call that panics comes back as `StoreError::Panicked`,
// and the store's thread goes on with the next call
#[test]
fn the_async_store_answers_from_its_own_threads_and_contains_panics() {
    let runtime = current_thread();
    let store = AsyncStore::new(Arc::new(InMemoryStore::new()), 1).unwrap();
    runtime.block_on(async {
        let order = sid("order-1");
        let placed = NewEvent::new("placed", json!({ "total": 12 }));
        let appended = store
            .append(order.clone(), ExpectedVersion::NoStream, vec![placed])
            .await
            .unwrap();
        assert_eq!(appended.last_version, 0);
        let panicked = store
            .call(|_| -> Result<(), StoreError> { panic!("a store of one's own broke") })
            .await;
        match panicked {
            Err(StoreError::Panicked(message)) => assert!(message.contains("broke"), "{message}"),
            other => panic!("expected Panicked, got {other:?}"),
        }
        // The thread survived its panic.
        let events = store.read_stream(order, 0, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        let thread = store
            .call(|_| Ok(std::thread::current().name().map(str::to_owned)))
            .await;
        assert_eq!(thread.unwrap().as_deref(), Some("humpyard-store-0"));
    });
}

// proves issue 19's async store on PostgreSQL: the synchronous driver, which must not run on an
// executor's thread, serves tasks of a multi-thread runtime through `AsyncStore`
#[cfg(feature = "postgres")]
#[test]
fn the_postgres_store_is_usable_from_tokio_tasks_through_the_async_store() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = AsyncStore::new(Arc::new(store::server::fresh_store()), 4).unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let stream = sid(&format!("acct-{t}"));
                    let mut expected = ExpectedVersion::NoStream;
                    for n in 0..10 {
                        let event = NewEvent::new("deposited", json!({ "n": n }));
                        let appended = store.append(stream.clone(), expected, vec![event]).await.unwrap();
                        expected = ExpectedVersion::Exact(appended.last_version);
                    }
                    store.read_stream(stream, 0, 100).await.unwrap().len()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 10);
        }
        let all = store.read_all(0, 1000).await.unwrap();
        assert_eq!(all.len(), 80);
    });
}

/// A waker whose `wake` panics: an executor's code gone wrong.
struct PanickingWaker;

impl std::task::Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("planned panic in a waker");
    }
}

// proves the containment of an executor's code (R-CONC-1 for async callers): a waker that
// panics when the worker wakes it stops neither the worker nor the shard; the task, marked
// woken, gets in at its next poll
#[test]
fn a_panicking_waker_stops_neither_the_worker_nor_the_shard() {
    common::quiet_planned_panics();
    let (engine, gate, seen) = full_engine();
    let _open = OpenOnDrop(gate.clone());
    let mut pending = Some(Event::new(sid("a"), 2));
    let mut submit = Box::pin(engine.submit_async(&mut pending));
    let waker = std::task::Waker::from(Arc::new(PanickingWaker));
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(
        submit.as_mut().poll(&mut cx).is_pending(),
        "no room while the worker is held"
    );
    // The run that frees room wakes the task through the panicking waker.
    gate.open();
    common::wait_until("the held events are handled", || seen.lock().unwrap().len() == 2);
    let noop = std::task::Waker::from(Arc::new(Ignored));
    let mut cx = std::task::Context::from_waker(&noop);
    assert!(
        submit.as_mut().poll(&mut cx).is_ready(),
        "room is free: the submit gets in"
    );
    drop(submit);
    assert!(pending.is_none());
    // The shard still runs: another event is handled after the waker's panic.
    engine
        .submit_timeout(Event::new(sid("a"), 3), Duration::from_secs(10))
        .unwrap();
    let report = engine.shutdown(Duration::from_secs(10));
    assert!(report.unprocessed.is_empty());
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3]);
}

/// A waker that does nothing (the test polls by hand).
struct Ignored;

impl std::task::Wake for Ignored {
    fn wake(self: Arc<Self>) {}
}
