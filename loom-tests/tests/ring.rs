//! Model 1: the ingress ring (`engine::ring`), the library's real code under loom.
//!
//! Proves (R-CONC-1, R-CONC-4, R-BP-1): with concurrent producers and a consumer, no element is
//! lost, duplicated or reordered per producer; a full ring hands the element back; a push
//! racing `close` is either accepted or handed back as `Closed`; racing shared pops take each
//! element once. Bound: LOOM_MAX_PREEMPTIONS=3 (set by `run`).
//!
//! Every concurrent actor runs on a spawned thread and the model's main thread only spawns and
//! joins: loom 0.7 stops exploring a model whose main thread races a spawned thread that begins
//! with an atomic load (tokio-rs/loom#392), which would make these models pass vacuously.
#![cfg(humpyard_loom)]

use humpyard::loom_api::{PushError, Ring};
use loom::sync::Arc;
use loom::thread;

/// Two producers push two elements each into a ring of capacity 2 while a consumer pops; what
/// each producer got accepted is taken exactly once, in its push order.
#[test]
fn producers_and_consumer_lose_nothing() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2));
        let producers: Vec<_> = (0..2u32)
            .map(|p| {
                let ring = ring.clone();
                thread::spawn(move || {
                    let mut accepted = Vec::new();
                    for i in 0..2u32 {
                        let value = p * 10 + i;
                        match ring.push(value) {
                            Ok(()) => accepted.push(value),
                            Err(PushError::Full(v)) => assert_eq!(v, value, "full hands the element back"),
                            Err(PushError::Closed(_)) => unreachable!("never closed"),
                        }
                    }
                    accepted
                })
            })
            .collect();
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut taken = Vec::new();
                for _ in 0..2 {
                    // SAFETY: this is the only consumer while it runs.
                    if let Some(v) = unsafe { ring.pop_exclusive() } {
                        taken.push(v);
                    }
                }
                taken
            })
        };
        let accepted: Vec<Vec<u32>> = producers.into_iter().map(|p| p.join().unwrap()).collect();
        let mut taken = consumer.join().unwrap();
        // SAFETY: every other thread is joined; this is the only consumer.
        while let Some(v) = unsafe { ring.pop_exclusive() } {
            taken.push(v);
        }
        for (p, mine) in accepted.iter().enumerate() {
            let got: Vec<u32> = taken.iter().copied().filter(|v| v / 10 == p as u32).collect();
            assert_eq!(&got, mine, "producer {p}: taken exactly once, in order");
        }
        assert_eq!(ring.accepted() as usize, taken.len());
    });
}

/// A push racing `close` is either accepted (and then taken) or handed back as `Closed`.
#[test]
fn close_racing_push_is_all_or_nothing() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || match ring.push(7u32) {
                Ok(()) => true,
                Err(PushError::Closed(7)) => false,
                Err(other) => panic!("unexpected {other:?}"),
            })
        };
        let closer = {
            let ring = ring.clone();
            thread::spawn(move || ring.close())
        };
        let accepted = producer.join().unwrap();
        closer.join().unwrap();
        assert_eq!(ring.pop_shared(), accepted.then_some(7));
        assert_eq!(ring.pop_shared(), None);
        assert_eq!(ring.push(8), Err(PushError::Closed(8)));
    });
}

/// A producer and two consumers racing on the shared pop (the run queue's): each element is
/// taken once.
#[test]
fn shared_pop_takes_each_element_once() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(2));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.push(1u32).unwrap();
                ring.push(2u32).unwrap();
            })
        };
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let ring = ring.clone();
                thread::spawn(move || ring.pop_shared())
            })
            .collect();
        producer.join().unwrap();
        let mut all: Vec<u32> = consumers.into_iter().filter_map(|c| c.join().unwrap()).collect();
        all.extend(std::iter::from_fn(|| ring.pop_shared()));
        all.sort();
        assert_eq!(all, vec![1, 2]);
    });
}

/// A ring of capacity 1 across three laps: a producer pushes 0, 1, 2 (trying again when it is
/// full) while a consumer takes them; each slot's stamp goes round three times, and every
/// element arrives once, in order (the doubled stamps keep "full" and "free" apart even at
/// capacity 1).
#[test]
fn capacity_one_across_laps() {
    loom::model(|| {
        let ring = Arc::new(Ring::new(1));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for n in 0u64..3 {
                    let mut value = n;
                    loop {
                        match ring.push(value) {
                            Ok(()) => break,
                            Err(PushError::Full(v)) => {
                                value = v;
                                thread::yield_now();
                            }
                            Err(PushError::Closed(_)) => unreachable!("never closed"),
                        }
                    }
                }
            })
        };
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut taken = Vec::new();
                while taken.len() < 3 {
                    // SAFETY: this thread is the ring's only consumer.
                    match unsafe { ring.pop_exclusive() } {
                        Some(v) => taken.push(v),
                        None => thread::yield_now(),
                    }
                }
                taken
            })
        };
        producer.join().unwrap();
        assert_eq!(consumer.join().unwrap(), vec![0, 1, 2]);
        assert_eq!(ring.accepted(), 3);
    });
}
