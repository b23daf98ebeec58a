//! `resilience::SingleFlight` (R-RES-5): overlapping calls for one key run once and share the
//! value; a panicking leader strands nobody. The interleavings are the loom model's
//! (`loom-tests/tests/single_flight.rs`); here real threads, each step waited for by condition.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

mod common;

use common::wait_until;
use humpyard::resilience::{SingleFlight, SingleFlightError};

// proves R-RES-5: concurrent requests for one key run the work once and share the result
#[test]
fn overlapping_calls_for_one_key_run_once_and_share_the_value() {
    let flight = Arc::new(SingleFlight::<String, String>::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let (release, release_rx) = mpsc::channel::<()>();
    let leader = {
        let (flight, runs) = (flight.clone(), runs.clone());
        thread::spawn(move || {
            flight.run("user-7".to_owned(), || {
                runs.fetch_add(1, Ordering::SeqCst);
                release_rx.recv().unwrap();
                "profile of user-7".to_owned()
            })
        })
    };
    wait_until("the leader runs", || flight.in_flight() == 1);
    let joiners: Vec<_> = (0..15)
        .map(|_| {
            let (flight, runs) = (flight.clone(), runs.clone());
            thread::spawn(move || {
                flight.run("user-7".to_owned(), || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    "a second run".to_owned()
                })
            })
        })
        .collect();
    wait_until("every joiner waits", || flight.waiting() == 15);
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap().unwrap(), "profile of user-7");
    for joiner in joiners {
        assert_eq!(joiner.join().unwrap().unwrap(), "profile of user-7");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!((flight.in_flight(), flight.waiting()), (0, 0));
}

// proves R-RES-5
#[test]
fn a_call_after_the_last_one_finished_runs_again() {
    let flight = SingleFlight::<u32, u32>::new();
    assert_eq!(flight.run(1, || 10), Ok(10));
    assert_eq!(flight.run(1, || 11), Ok(11), "nothing is cached");
}

// proves R-RES-5: a panicking leader strands nobody
#[test]
fn a_panicking_leader_releases_its_joiners_with_an_error() {
    let flight = Arc::new(SingleFlight::<&'static str, u64>::new());
    let (release, release_rx) = mpsc::channel::<()>();
    let leader = {
        let flight = flight.clone();
        thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                flight.run("k", || {
                    release_rx.recv().unwrap();
                    panic!("planned panic in the leader's f")
                })
            }))
        })
    };
    wait_until("the leader runs", || flight.in_flight() == 1);
    let joiners: Vec<_> = (0..4)
        .map(|_| {
            let flight = flight.clone();
            thread::spawn(move || flight.run("k", || 99))
        })
        .collect();
    wait_until("every joiner waits", || flight.waiting() == 4);
    release.send(()).unwrap();
    assert!(
        leader.join().unwrap().is_err(),
        "the panic goes on in the leader's caller"
    );
    for joiner in joiners {
        assert_eq!(joiner.join().unwrap(), Err(SingleFlightError));
    }
    assert_eq!(flight.run("k", || 5), Ok(5), "the key is free again");
}

// proves R-RES-5
#[test]
fn different_keys_never_wait_for_each_other() {
    let flight = Arc::new(SingleFlight::<&'static str, u8>::new());
    let (release, release_rx) = mpsc::channel::<()>();
    let blocked = {
        let flight = flight.clone();
        thread::spawn(move || {
            flight.run("a", || {
                release_rx.recv().unwrap();
                1
            })
        })
    };
    wait_until("key a runs", || flight.in_flight() == 1);
    // On a thread of its own, so that a regression fails the test instead of hanging it.
    let (done_tx, done) = mpsc::channel();
    {
        let flight = flight.clone();
        thread::spawn(move || done_tx.send(flight.run("b", || 2)).unwrap());
    }
    assert_eq!(
        done.recv_timeout(Duration::from_secs(10)),
        Ok(Ok(2)),
        "b runs while a is running"
    );
    release.send(()).unwrap();
    assert_eq!(blocked.join().unwrap(), Ok(1));
}

// proves R-RES-5
#[test]
fn a_call_for_its_own_key_from_inside_f_runs_its_own_f() {
    let flight = SingleFlight::<u8, u8>::new();
    let outer = flight.run(1, || flight.run(1, || 2).unwrap() + 1);
    assert_eq!(outer, Ok(3));
}

// proves R-RES-5
#[test]
fn a_panicking_clone_of_the_value_does_not_strand_the_joiners() {
    /// Its first clone (the leader's copy for the joiners) panics.
    #[derive(Debug)]
    struct Fragile(Arc<AtomicUsize>);
    impl Clone for Fragile {
        fn clone(&self) -> Self {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("planned panic in Clone");
            }
            Fragile(self.0.clone())
        }
    }
    let flight = Arc::new(SingleFlight::<u8, Fragile>::new());
    let clones = Arc::new(AtomicUsize::new(0));
    let (release, release_rx) = mpsc::channel::<()>();
    let leader = {
        let (flight, clones) = (flight.clone(), clones.clone());
        thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                flight.run(0, || {
                    release_rx.recv().unwrap();
                    Fragile(clones)
                })
            }))
            .is_err()
        })
    };
    wait_until("the leader runs", || flight.in_flight() == 1);
    let joiner = {
        let flight = flight.clone();
        thread::spawn(move || flight.run(0, || Fragile(Arc::new(AtomicUsize::new(1)))).is_err())
    };
    wait_until("the joiner waits", || flight.waiting() == 1);
    release.send(()).unwrap();
    assert!(leader.join().unwrap(), "the clone's panic reaches the leader's caller");
    assert!(joiner.join().unwrap(), "the joiner gets the error, not a hang");
}

// proves R-RES-5
#[test]
fn it_is_send_sync_and_debug() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<SingleFlight<String, Vec<u8>>>();
    assert!(SingleFlightError.to_string().contains("panicked"));
}

/// A key whose `Eq` or `Drop` panics when told to (a user type the map calls into).
#[derive(Debug, Clone)]
struct Touchy {
    id: u8,
    eq_panics: Arc<AtomicUsize>,
    drop_panics: Arc<AtomicUsize>,
}

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        if self.eq_panics.fetch_sub(1, Ordering::SeqCst) == 1 {
            panic!("planned panic in Eq");
        }
        self.id == other.id
    }
}

impl Eq for Touchy {}

impl std::hash::Hash for Touchy {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl Drop for Touchy {
    fn drop(&mut self) {
        if self.drop_panics.fetch_sub(1, Ordering::SeqCst) == 1 {
            panic!("planned panic in Drop");
        }
    }
}

// proves R-RES-5
#[test]
fn a_key_whose_eq_or_drop_panics_never_leaves_a_flight_nobody_finishes() {
    let flight = Arc::new(SingleFlight::<Touchy, u8>::new());
    let eq_panics = Arc::new(AtomicUsize::new(usize::MAX));
    let drop_panics = Arc::new(AtomicUsize::new(usize::MAX));
    let key = Touchy {
        id: 1,
        eq_panics: eq_panics.clone(),
        drop_panics: drop_panics.clone(),
    };
    // The leader's removal of its flight meets a panicking `Eq`: caught, the flight stays.
    let led = flight.run(key.clone(), || {
        eq_panics.store(1, Ordering::SeqCst);
        5
    });
    assert_eq!(led, Ok(5));
    // The next caller replaces the finished flight; the map drops the duplicate key, whose
    // `Drop` panics: the panic reaches this caller, and the new flight is finished with it.
    eq_panics.store(usize::MAX, Ordering::SeqCst);
    drop_panics.store(2, Ordering::SeqCst);
    let second = catch_unwind(AssertUnwindSafe(|| flight.run(key.clone(), || 6)));
    drop_panics.store(usize::MAX, Ordering::SeqCst);
    // Whatever happened there, a caller on another thread is never parked forever.
    let (done_tx, done) = mpsc::channel();
    {
        let (flight, key) = (flight.clone(), key.clone());
        thread::spawn(move || done_tx.send(flight.run(key, || 7)).unwrap());
    }
    assert_eq!(
        done.recv_timeout(Duration::from_secs(10)),
        Ok(Ok(7)),
        "second: {second:?}"
    );
    assert_eq!(flight.in_flight(), 0);
}
