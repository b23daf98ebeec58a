//! Races of the engine's threads that loom cannot reach, forced at pause points.

mod common;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{quiet_planned_panics, secs, serial, sid, within, Count};
use humpyard::pause::{self, PausePoint};
use humpyard::{Engine, Event};

// proves R-LIFE-3, R-OBS-2: a producer that has claimed a ring slot and is preempted before it
// publishes does not make shutdown lose its event or the events claimed behind it. Shutdown
// with a zero deadline waits for the claimed slot, then hands back all three; the accounting
// identity holds exactly.
#[test]
fn shutdown_waits_for_a_claimed_slot_and_hands_back_what_is_behind_it() {
    let _serial = serial();
    let count = Count::default();
    let engine = Arc::new(
        Engine::builder(count.clone())
            .workers(1)
            .shards(1)
            .shard_capacity(8)
            .start()
            .unwrap(),
    );
    // A producer claims position 0 and is held before it writes and publishes the event.
    let (go, wait_for_go) = mpsc::channel::<()>();
    let producer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            wait_for_go.recv().unwrap();
            engine.try_submit(Event::new(sid("a"), 0))
        })
    };
    let claimed = pause::hold_thread(PausePoint::AfterTailClaim, producer.thread().id());
    go.send(()).unwrap();
    assert!(claimed.wait_reached(secs(10)), "the producer claimed its slot");
    // Two more events are claimed and published behind it; the worker cannot take them (the
    // head slot is not published yet).
    engine.try_submit(Event::new(sid("a"), 1)).unwrap();
    engine.try_submit(Event::new(sid("b"), 2)).unwrap();

    let collect = pause::hold(PausePoint::BeforeCollect);
    let shutter = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.shutdown(Duration::ZERO))
    };
    assert!(collect.wait_reached(secs(10)), "shutdown stopped the workers");
    collect.release();
    // Shutdown now meets the claimed, unpublished slot: it must wait for it.
    let returned_early = within(Duration::from_millis(300), || shutter.is_finished());
    claimed.release();
    let report = shutter.join().unwrap();
    producer.join().unwrap().expect("the producer was told Ok");

    let m = engine.metrics();
    assert_eq!(m.accepted, 3);
    assert_eq!(
        m.accepted,
        m.processed + m.dead_lettered + report.unprocessed.len() as u64,
        "accepted {} != processed {} + dead-lettered {} + unprocessed {}",
        m.accepted,
        m.processed,
        m.dead_lettered,
        report.unprocessed.len()
    );
    assert!(
        !returned_early,
        "shutdown returned while an accepted event was unpublished"
    );
    assert!(report.deadline_exceeded);
    let mut back: Vec<u64> = report.unprocessed.iter().map(|e| *e.payload()).collect();
    back.sort_unstable();
    assert_eq!(back, vec![0, 1, 2]);
    assert_eq!(count.handled(), 0);
}

// proves R-FT-1, R-CONC-1: a replacement worker that registers as a sleeper and parks before
// the supervisor has installed its handle is still woken by a producer's wake-up (the wake-up
// reaches the thread that parked, not the dead one whose handle is still in the slot), and
// its shard resumes.
#[test]
fn a_replacement_worker_that_parks_before_its_install_is_woken() {
    let _serial = serial();
    quiet_planned_panics();
    let count = Count::default();
    let engine = Engine::builder(count.clone())
        .workers(1)
        .shards(1)
        .slow_handler_threshold(Duration::from_millis(4)) // a supervisor tick of 2 ms
        .start()
        .unwrap();
    let install = pause::hold(PausePoint::BeforeInstall);

    // The first worker goes to sleep once (held there, then let go), so that it is parked
    // and not about to be held again.
    let first_sleep = pause::hold(PausePoint::BeforePark);
    engine.try_submit(Event::new(sid("a"), 0)).unwrap();
    assert!(first_sleep.wait_reached(secs(10)), "the first worker went idle");
    first_sleep.release();
    assert!(within(secs(10), || count.handled() == 1));

    // The worker dies at the end of its next batch; the supervisor starts a replacement and
    // is held before installing it.
    let replacement_sleeps = pause::hold(PausePoint::BeforePark);
    engine.inject_worker_exit(0);
    engine.try_submit(Event::new(sid("a"), 1)).unwrap();
    assert!(install.wait_reached(secs(10)), "the supervisor started a replacement");
    // The replacement runs the shard its predecessor left queued, finds nothing, registers as
    // a sleeper and is held just before it parks: its handle is not in the slot yet.
    assert!(replacement_sleeps.wait_reached(secs(10)), "the replacement went idle");

    // A producer's event must wake it.
    engine.try_submit(Event::new(sid("a"), 2)).unwrap();
    replacement_sleeps.release();
    install.release();
    let woken = within(secs(10), || count.handled() == 3);
    assert!(woken, "the replacement stayed parked: handled {} of 3", count.handled());
    // The supervisor counts the replacement once it has installed it (maybe after the
    // replacement, woken by the producer, has already handled the event).
    assert!(within(secs(10), || engine.metrics().workers_replaced == 1));
    let report = engine.shutdown(secs(10));
    assert!(report.unprocessed.is_empty());
}

/// Holds event 0 until its gate opens; handles the rest at once.
struct HoldsZero {
    gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    entered: Arc<std::sync::atomic::AtomicBool>,
}

impl humpyard::Handler for HoldsZero {
    type Payload = u64;
    type State = ();
    type Error = String;

    fn init(&self, _: &humpyard::StreamId) -> Result<(), String> {
        Ok(())
    }

    fn handle(&self, _: &mut (), event: &Event<u64>) -> Result<(), String> {
        if *event.payload() == 0 {
            self.entered.store(true, std::sync::atomic::Ordering::SeqCst);
            let (open, opened) = &*self.gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
        }
        Ok(())
    }
}

// proves R-BP-2, R-CONC-1: a waiting producer that a consumer wakes just as its own deadline
// passes (it leaves without the room) passes the wake-up on to the next waiter, who gets in;
// without that, the next waiter stays parked beside free room until its own deadline
#[test]
fn a_wake_up_met_by_a_leaving_waiter_is_passed_on() {
    let _serial = serial();
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let entered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let engine = Arc::new(
        Engine::builder(HoldsZero {
            gate: gate.clone(),
            entered: entered.clone(),
        })
        .workers(1)
        .shards(1)
        .shard_capacity(1)
        .start()
        .unwrap(),
    );
    // The worker holds event 0; event 1 fills the ring.
    engine.try_submit(Event::new(sid("a"), 0)).unwrap();
    assert!(within(secs(10), || entered.load(std::sync::atomic::Ordering::SeqCst)));
    engine.try_submit(Event::new(sid("a"), 1)).unwrap();

    // Producer A waits 50 ms, and is held as its deadline passes, still on the waiter list.
    let (go_a, wait_a) = mpsc::channel::<()>();
    let a = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            wait_a.recv().unwrap();
            engine.submit_timeout(Event::new(sid("a"), 2), Duration::from_millis(50))
        })
    };
    let a_leaving = pause::hold_thread(PausePoint::WaiterLeaving, a.thread().id());
    go_a.send(()).unwrap();
    assert!(a_leaving.wait_reached(secs(10)), "A's deadline passed");
    // Producer B registers behind A and is held just before it parks.
    let (go_b, wait_b) = mpsc::channel::<()>();
    let b = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            wait_b.recv().unwrap();
            engine.submit_timeout(Event::new(sid("a"), 3), Duration::from_secs(5))
        })
    };
    let b_parking = pause::hold_thread(PausePoint::BeforeWaiterPark, b.thread().id());
    go_b.send(()).unwrap();
    assert!(b_parking.wait_reached(secs(10)), "B registered behind A");

    // The worker finishes 0, takes 1, and its run ends: it frees one slot and wakes the oldest
    // waiter, A. It parks afterwards, when the hand-off is done.
    let worker_idle = pause::hold(PausePoint::BeforePark);
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    assert!(worker_idle.wait_reached(secs(10)), "the run ended");
    worker_idle.release();
    // A leaves without the room (its deadline passed): the wake-up must go on to B.
    a_leaving.release();
    assert!(matches!(a.join().unwrap(), Err(humpyard::SubmitError::Timeout(_))));
    b_parking.release();
    let started = std::time::Instant::now();
    let b = b.join().unwrap();
    assert!(
        b.is_ok(),
        "B stayed parked beside free room: {b:?} after {:?}",
        started.elapsed()
    );
    let report = engine.shutdown(secs(10));
    assert!(report.unprocessed.is_empty());
}
