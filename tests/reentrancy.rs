//! Shutdown and the last drop of an engine, made from the engine's own threads: from inside
//! `handle`, from a state's drop during a reap, and from a hook on the supervisor thread. They
//! must never touch a shard the calling thread is running, never join the calling thread, and
//! still account for every event and clean up every state (R-LIFE-1, R-LIFE-2, R-LIFE-3,
//! R-FT-2, R-API-1: no safe call breaks memory safety, whatever thread makes it).

mod common;

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use common::{eventually, sid};
use humpyard::{Engine, Event, Handler, StreamId, SubmitError};

/// What a payload asks the handler to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Nothing,
    /// Call `shutdown` with this deadline on the handler's own engine.
    Shutdown(Duration),
    /// Keep an `Arc` of the engine in the stream's state.
    Adopt,
    /// Wait until the test opens the gate, then drop the `Arc` the state keeps.
    ReleaseWhenOpen,
    /// Sleep this long.
    Sleep(Duration),
}

/// What the tests watch from outside.
#[derive(Default)]
struct Watch {
    inits: AtomicU64,
    cleanups: AtomicU64,
    handled: AtomicU64,
    /// Streams whose `handle` call is in progress.
    in_handle: Mutex<HashSet<String>>,
    /// A cleanup that ran while its stream's `handle` was in progress: the engine touched an
    /// entity whose `&mut State` a handler held.
    violations: AtomicU64,
    /// What an inner shutdown call returned: (unprocessed, drain deferred, how long it took).
    inner_reports: Mutex<Vec<(usize, bool, Duration)>>,
    /// Opened by the test: `ReleaseWhenOpen` goes on.
    gate: (Mutex<bool>, Condvar),
    /// When set, `cleanup` calls `shutdown` on its own engine and records the report's
    /// `drain_deferred` here.
    shutdown_in_cleanup: AtomicBool,
    cleanup_shutdowns: Mutex<Vec<bool>>,
}

impl Watch {
    fn open_gate(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    fn wait_for_gate(&self) {
        let mut open = self.gate.0.lock().unwrap();
        while !*open {
            open = self.gate.1.wait(open).unwrap();
        }
    }
}

thread_local! {
    /// Whether this thread is inside `cleanup`: a cleanup inside another is the engine
    /// cleaning up a shard from inside that shard's own run.
    static IN_CLEANUP: Cell<bool> = const { Cell::new(false) };
}

type Me = Arc<OnceLock<Weak<Engine<Reentrant>>>>;

struct Reentrant {
    me: Me,
    watch: Arc<Watch>,
    returned: Mutex<Option<mpsc::Sender<()>>>,
}

struct State {
    engine: Option<Arc<Engine<Reentrant>>>,
}

impl Handler for Reentrant {
    type Payload = Ask;
    type State = State;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<State, String> {
        self.watch.inits.fetch_add(1, Ordering::SeqCst);
        Ok(State { engine: None })
    }

    fn handle(&self, state: &mut State, event: &Event<Ask>) -> Result<(), String> {
        let stream = event.stream().as_str().to_owned();
        self.watch.in_handle.lock().unwrap().insert(stream.clone());
        match *event.payload() {
            Ask::Nothing => {}
            Ask::Shutdown(deadline) => {
                let engine = self.me.get().and_then(Weak::upgrade).expect("the engine lives");
                let started = Instant::now();
                let report = engine.shutdown(deadline);
                self.watch.inner_reports.lock().unwrap().push((
                    report.unprocessed.len(),
                    report.drain_deferred,
                    started.elapsed(),
                ));
                if let Some(tx) = self.returned.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
            Ask::Adopt => state.engine = self.me.get().and_then(Weak::upgrade),
            Ask::ReleaseWhenOpen => {
                self.watch.wait_for_gate();
                drop(state.engine.take());
            }
            Ask::Sleep(d) => std::thread::sleep(d),
        }
        self.watch.in_handle.lock().unwrap().remove(&stream);
        self.watch.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn cleanup(&self, stream: &StreamId, state: State) {
        if self.watch.in_handle.lock().unwrap().contains(stream.as_str()) || IN_CLEANUP.get() {
            self.watch.violations.fetch_add(1, Ordering::SeqCst);
        }
        self.watch.cleanups.fetch_add(1, Ordering::SeqCst);
        if self.watch.shutdown_in_cleanup.load(Ordering::SeqCst) {
            if let Some(engine) = self.me.get().and_then(Weak::upgrade) {
                let report = engine.shutdown(Duration::from_secs(10));
                self.watch.cleanup_shutdowns.lock().unwrap().push(report.drain_deferred);
            }
        }
        IN_CLEANUP.set(true);
        drop(state); // may drop the last Arc<Engine>
        IN_CLEANUP.set(false);
    }
}

fn reentrant() -> (Reentrant, Me, Arc<Watch>) {
    let me = Me::default();
    let watch = Arc::new(Watch::default());
    let handler = Reentrant {
        me: me.clone(),
        watch: watch.clone(),
        returned: Mutex::new(None),
    };
    (handler, me, watch)
}

fn submit(engine: &Engine<Reentrant>, stream: &str, ask: Ask) {
    engine
        .submit_timeout(Event::new(sid(stream), ask), Duration::from_secs(5))
        .unwrap();
}

// proves R-LIFE-3, R-FT-2: shutdown called inside `handle` closes the intake and returns at
// once; it never cleans up the entity whose state the handler holds. The drain, the cleanup
// and the join are left to the next shutdown made off the engine's threads, whose report
// accounts for every event.
#[test]
fn shutdown_inside_handle_returns_at_once_and_leaves_the_drain_to_the_caller() {
    let (handler, me, watch) = reentrant();
    let engine = Arc::new(Engine::builder(handler).workers(2).shards(4).start().unwrap());
    me.set(Arc::downgrade(&engine)).unwrap();
    for s in 0..8 {
        submit(&engine, &format!("other-{s}"), Ask::Nothing);
    }
    submit(&engine, "self", Ask::Shutdown(Duration::from_millis(300)));
    eventually("the inner shutdown returned", || {
        !watch.inner_reports.lock().unwrap().is_empty()
    });
    let (inner_unprocessed, deferred, took) = watch.inner_reports.lock().unwrap()[0];
    assert_eq!(
        watch.violations.load(Ordering::SeqCst),
        0,
        "cleaned up a running entity"
    );
    assert_eq!(inner_unprocessed, 0, "the inner call hands nothing back");
    assert!(deferred, "the inner call says the drain was left to another thread");
    assert!(
        took < Duration::from_millis(300),
        "returned at once, not at its deadline: {took:?}"
    );
    match engine.try_submit(Event::new(sid("late"), Ask::Nothing)) {
        Err(SubmitError::Closed(_)) => {}
        other => panic!("the intake is closed: {other:?}"),
    }
    let report = engine.shutdown(Duration::from_secs(10));
    let m = engine.metrics();
    assert!(report.unprocessed.is_empty() && !report.deadline_exceeded && !report.drain_deferred);
    let again = engine.shutdown(Duration::from_secs(10));
    assert!(
        again.unprocessed.is_empty() && !again.drain_deferred,
        "a later call: empty"
    );
    assert_eq!((m.accepted, m.processed), (9, 9));
    assert_eq!(
        watch.inits.load(Ordering::SeqCst),
        watch.cleanups.load(Ordering::SeqCst)
    );
    assert_eq!(watch.violations.load(Ordering::SeqCst), 0);
}

// proves R-LIFE-1: `shutdown(Duration::MAX)` inside `handle` returns (it cannot wait for the
// call it is made from).
#[test]
fn shutdown_without_deadline_inside_handle_returns() {
    let (handler, me, watch) = reentrant();
    let (tx, rx) = mpsc::channel();
    *handler.returned.lock().unwrap() = Some(tx);
    let engine = Arc::new(Engine::builder(handler).workers(1).start().unwrap());
    me.set(Arc::downgrade(&engine)).unwrap();
    submit(&engine, "self", Ask::Shutdown(Duration::MAX));
    if rx.recv_timeout(Duration::from_secs(10)).is_err() {
        // Never returned: the worker is stuck for good, and dropping the engine would wait on
        // it forever.
        std::mem::forget(engine);
        panic!("shutdown(Duration::MAX) inside handle never returned");
    }
    let report = engine.shutdown(Duration::from_secs(10));
    assert!(report.unprocessed.is_empty());
    assert_eq!(
        watch.inits.load(Ordering::SeqCst),
        watch.cleanups.load(Ordering::SeqCst)
    );
    assert_eq!(watch.violations.load(Ordering::SeqCst), 0);
}

// proves R-LIFE-2, R-FT-2: the last `Arc<Engine>`, dropped inside `handle`, stops the engine
// without touching the running entity or joining the calling thread; once that call returns,
// every state is cleaned up exactly once and every engine thread ends.
#[test]
fn the_last_drop_inside_handle_stops_the_engine_safely() {
    let (handler, me, watch) = reentrant();
    let engine = Arc::new(
        Engine::builder(handler)
            .workers(2)
            .shards(4)
            .drop_deadline(Duration::from_millis(300))
            .start()
            .unwrap(),
    );
    me.set(Arc::downgrade(&engine)).unwrap();
    for s in 0..8 {
        submit(&engine, &format!("other-{s}"), Ask::Nothing);
    }
    submit(&engine, "keeper", Ask::Adopt);
    eventually("all handled", || watch.handled.load(Ordering::SeqCst) == 9);
    submit(&engine, "keeper", Ask::ReleaseWhenOpen);
    drop(engine); // the keeper's state now holds the last Arc
    watch.open_gate();
    eventually("every state cleaned up", || {
        watch.cleanups.load(Ordering::SeqCst) == watch.inits.load(Ordering::SeqCst)
    });
    assert_eq!(
        watch.violations.load(Ordering::SeqCst),
        0,
        "cleaned up a running entity"
    );
    // Every engine thread ends: then only the test holds the watch (the handler is dropped).
    eventually("the engine's threads ended", || Arc::strong_count(&watch) == 1);
}

// proves R-LIFE-2, R-FT-2: a state whose drop releases the last `Arc<Engine>` while it is
// reaped (inside `cleanup`, on a worker) stops the engine safely; every other state is cleaned
// up once and every thread ends.
#[test]
fn the_last_drop_in_a_reaped_states_cleanup_stops_the_engine_safely() {
    let (handler, me, watch) = reentrant();
    let engine = Arc::new(
        Engine::builder(handler)
            .workers(2)
            .shards(1)
            .idle_timeout(Duration::from_millis(100))
            .drop_deadline(Duration::from_millis(300))
            .start()
            .unwrap(),
    );
    me.set(Arc::downgrade(&engine)).unwrap();
    submit(&engine, "keeper", Ask::Adopt);
    eventually("adopted", || watch.handled.load(Ordering::SeqCst) == 1);
    // A second entity in the one shard, newer than the keeper: the keeper is reaped first.
    submit(&engine, "other", Ask::Nothing);
    eventually("both handled", || watch.handled.load(Ordering::SeqCst) == 2);
    drop(engine); // the keeper's state holds the last Arc; the reaper drops it
    eventually("both states cleaned up", || watch.cleanups.load(Ordering::SeqCst) == 2);
    assert_eq!(watch.violations.load(Ordering::SeqCst), 0, "a cleanup inside a cleanup");
    eventually("the engine's threads ended", || Arc::strong_count(&watch) == 1);
    assert_eq!(watch.inits.load(Ordering::SeqCst), 2);
}

// proves R-LIFE-1, R-LIFE-3: a hook on the supervisor thread that shuts the engine down does
// not join its own thread; the next shutdown from outside drains, cleans up and joins, and
// its report accounts for every event.
#[test]
fn shutdown_from_a_supervisor_hook_leaves_the_drain_to_the_caller() {
    let (handler, me, watch) = reentrant();
    let hook_me = me.clone();
    let hook_calls = Arc::new(AtomicU64::new(0));
    let calls = hook_calls.clone();
    let engine = Arc::new(
        Engine::builder(handler)
            .workers(1)
            .shards(1)
            .slow_handler_threshold(Duration::from_millis(20))
            .on_slow_handler(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                if let Some(engine) = hook_me.get().and_then(Weak::upgrade) {
                    engine.shutdown(Duration::ZERO);
                }
            })
            .start()
            .unwrap(),
    );
    me.set(Arc::downgrade(&engine)).unwrap();
    submit(&engine, "slow", Ask::Sleep(Duration::from_millis(200)));
    for n in 0..5 {
        submit(&engine, &format!("after-{n}"), Ask::Nothing);
    }
    eventually("the hook ran", || hook_calls.load(Ordering::SeqCst) == 1);
    let report = engine.shutdown(Duration::from_secs(10));
    let m = engine.metrics();
    assert_eq!(m.panics, 0, "the hook's shutdown did not panic");
    assert_eq!(m.accepted, 6);
    assert_eq!(
        m.accepted,
        m.processed + m.dead_lettered + report.unprocessed.len() as u64,
        "accepted {} != processed {} + unprocessed {}",
        m.accepted,
        m.processed,
        report.unprocessed.len()
    );
    assert_eq!(
        watch.inits.load(Ordering::SeqCst),
        watch.cleanups.load(Ordering::SeqCst)
    );
    drop(engine);
    eventually("the engine's threads ended", || Arc::strong_count(&watch) == 1);
}

// proves R-LIFE-1: a `cleanup` that shuts its own engine down while shutdown is cleaning up
// (on the thread that called shutdown, not an engine thread) does not deadlock on the
// shutdown in progress: it returns at once, its drain left to that shutdown.
#[test]
fn shutdown_inside_cleanup_during_shutdown_returns() {
    let (handler, me, watch) = reentrant();
    let engine = Arc::new(Engine::builder(handler).workers(1).start().unwrap());
    me.set(Arc::downgrade(&engine)).unwrap();
    for s in 0..3 {
        submit(&engine, &format!("s{s}"), Ask::Nothing);
    }
    eventually("handled", || watch.handled.load(Ordering::SeqCst) == 3);
    watch.shutdown_in_cleanup.store(true, Ordering::SeqCst);
    let (tx, rx) = mpsc::channel();
    let shutter = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            let report = engine.shutdown(Duration::from_secs(10));
            let _ = tx.send(report.unprocessed.len());
        })
    };
    if rx.recv_timeout(Duration::from_secs(20)).is_err() {
        std::mem::forget(engine);
        panic!("shutdown never returned: a cleanup's nested shutdown deadlocked");
    }
    shutter.join().unwrap();
    assert_eq!(*watch.cleanup_shutdowns.lock().unwrap(), vec![true, true, true]);
    assert_eq!(watch.cleanups.load(Ordering::SeqCst), 3);
}
