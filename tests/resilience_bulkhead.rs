//! `resilience::Bulkhead` (R-RES-3): bounded concurrency, permits freed on every path, waiters
//! parked and woken one per freed place. The interleavings are the loom model's
//! (`loom-tests/tests/bulkhead.rs`); here real threads, each step waited for by condition.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::wait_until;
use humpyard::resilience::{Bulkhead, ZeroConcurrency};

// proves R-RES-3: every fan-out is bounded: never more than max_concurrent at once
#[test]
fn never_more_than_max_concurrent_holders() {
    let bulkhead = Arc::new(Bulkhead::new(3));
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let (bulkhead, inside, most) = (bulkhead.clone(), inside.clone(), most.clone());
            thread::spawn(move || {
                let mut done = 0;
                while done < 200 {
                    // Half the callers wait, half try and go round.
                    let permit = if i % 2 == 0 {
                        bulkhead.acquire_timeout(Duration::from_secs(10))
                    } else {
                        bulkhead.try_acquire()
                    };
                    let Some(_permit) = permit else { continue };
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    done += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert!(
        most.load(Ordering::SeqCst) <= 3,
        "{} inside at once",
        most.load(Ordering::SeqCst)
    );
    assert_eq!(bulkhead.available(), 3, "every permit came back");
}

// proves R-RES-3
#[test]
fn try_acquire_never_blocks_and_refuses_when_full() {
    let bulkhead = Bulkhead::new(2);
    let a = bulkhead.try_acquire().unwrap();
    let _b = bulkhead.try_acquire().unwrap();
    assert!(bulkhead.try_acquire().is_none());
    assert_eq!(bulkhead.available(), 0);
    drop(a);
    assert_eq!(bulkhead.available(), 1);
    assert!(bulkhead.try_acquire().is_some());
}

// proves R-RES-3
#[test]
fn acquire_timeout_gives_up_after_its_timeout_and_leaves_the_list() {
    let bulkhead = Bulkhead::new(1);
    let _held = bulkhead.try_acquire().unwrap();
    let started = Instant::now();
    assert!(bulkhead.acquire_timeout(Duration::from_millis(30)).is_none());
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(bulkhead.waiting(), 0);
}

// proves R-RES-3: a freed place wakes one parked waiter (no spinning, no lost wake-up)
#[test]
fn each_freed_place_wakes_one_parked_waiter() {
    let bulkhead = Arc::new(Bulkhead::new(1));
    let held = bulkhead.try_acquire().unwrap();
    let (got_tx, got) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let (bulkhead, got_tx, release_rx) = (bulkhead.clone(), got_tx.clone(), release_rx.clone());
            thread::spawn(move || {
                let permit = bulkhead.acquire_timeout(Duration::from_secs(60)).expect("a place");
                got_tx.send(i).unwrap();
                // Hold the place until told to let go.
                release_rx.lock().unwrap().recv().unwrap();
                drop(permit);
            })
        })
        .collect();
    wait_until("three callers are parked", || bulkhead.waiting() == 3);
    drop(held);
    got.recv_timeout(Duration::from_secs(10)).expect("one waiter woke");
    // The others stay parked: one freed place, one wake-up.
    assert_eq!(bulkhead.waiting(), 2);
    assert!(got.try_recv().is_err());
    for _ in 0..2 {
        release_tx.send(()).unwrap();
        got.recv_timeout(Duration::from_secs(10)).expect("the next waiter woke");
    }
    release_tx.send(()).unwrap();
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(bulkhead.available(), 1);
}

// proves R-RES-4: a permit is released on every path, a panic's unwind included
#[test]
fn a_panic_while_holding_a_permit_frees_it_and_wakes_a_waiter() {
    let bulkhead = Arc::new(Bulkhead::new(1));
    let (entered_tx, entered) = mpsc::channel();
    let (go_tx, go) = mpsc::channel::<()>();
    let holder = {
        let bulkhead = bulkhead.clone();
        thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                let _permit = bulkhead.try_acquire().unwrap();
                entered_tx.send(()).unwrap();
                go.recv().unwrap();
                panic!("planned panic while holding a permit");
            }))
            .is_err()
        })
    };
    entered.recv().unwrap();
    let waiter = {
        let bulkhead = bulkhead.clone();
        thread::spawn(move || bulkhead.acquire_timeout(Duration::from_secs(60)).is_some())
    };
    wait_until("the waiter is parked", || bulkhead.waiting() == 1);
    go_tx.send(()).unwrap();
    assert!(holder.join().unwrap());
    assert!(waiter.join().unwrap(), "the unwind's drop woke the waiter");
    assert_eq!(bulkhead.available(), 1);
}

// proves R-RES-3
#[test]
fn zero_places_is_refused() {
    assert_eq!(Bulkhead::try_new(0).unwrap_err(), ZeroConcurrency);
    assert!(
        catch_unwind(|| Bulkhead::new(0)).is_err(),
        "new panics on 0, as documented"
    );
    assert_eq!(Bulkhead::new(4).max_concurrent(), 4);
}

// proves R-RES-3
#[test]
fn it_is_send_sync_and_debug() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<Bulkhead>();
    let bulkhead = Bulkhead::new(2);
    let permit = bulkhead.try_acquire().unwrap();
    assert!(format!("{permit:?}").contains("available: 1"));
}
