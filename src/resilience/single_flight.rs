//! [`SingleFlight`]: overlapping calls for one key run the work once and share its value.
//!
//! # Protocol
//!
//! The map holds one running flight per key. A caller takes the map's lock and either finds a
//! flight that has not finished (it joins: it waits for that flight's outcome) or puts a new
//! one in (it leads: it runs `f`). The leader, when `f` returns or unwinds, first takes its
//! flight out of the map (later callers start a new flight: nothing is cached), then publishes
//! the outcome under the flight's lock and unparks the joiners it lists. A joiner checks the
//! outcome under that lock before it lists itself and parks, so it either sees the outcome or
//! is listed before it is published, and is woken: no joiner waits forever. A leader whose `f`
//! panics publishes that it panicked (its guard runs during the unwind); the joiners return
//! [`SingleFlightError`] at once, and the panic goes on in the leader's caller.
//!
//! Lock order: the map's, then a flight's (a joiner checks a found flight while holding the
//! map); a leader never holds both. A finished flight left in the map (its removal panicked in
//! the key's `Hash` or `Eq`) is replaced by the next caller, never joined.
//!
//! A call made from inside the running `f` for the same key, on the leader's thread, runs its
//! own `f`: waiting for itself would never end.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::engine::panic_message;
use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering};

/// Runs overlapping calls for one key once: the first caller's `f` runs, the others wait for it
/// and get a clone of its value. Calls for different keys never wait for each other (beyond a
/// short lock to find the key), and a call that starts after the last one for its key finished
/// runs again: nothing is cached.
pub struct SingleFlight<K, V> {
    flights: Mutex<HashMap<K, Arc<Flight<V>>>>,
    /// Joiners waiting now, over all keys (a statistic).
    waiting: AtomicUsize,
}

/// The call a joiner waited on panicked: it has no value to share. The panic itself went on in
/// the caller that ran `f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SingleFlightError;

impl fmt::Display for SingleFlightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the call this one waited for panicked, so there is no value to share")
    }
}

impl std::error::Error for SingleFlightError {}

/// One running call of `f`.
struct Flight<V> {
    /// The thread running `f`.
    leader: Thread,
    state: Mutex<FlightState<V>>,
}

struct FlightState<V> {
    /// `None` while `f` runs; then `Some(Ok(value))` (a value only if anyone joined), or
    /// `Some(Err(SingleFlightError))` if it panicked.
    outcome: Option<Result<Option<V>, SingleFlightError>>,
    /// Joiners parked for the outcome.
    parked: Vec<Thread>,
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    /// No calls yet.
    pub fn new() -> SingleFlight<K, V> {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Runs `f`, or, if a call for `key` is running, waits for it and returns a clone of its
    /// value.
    ///
    /// # Errors
    ///
    /// [`SingleFlightError`] when the call this one waited for panicked. This call does not
    /// run `f` itself then; call again to try.
    ///
    /// # Panics
    ///
    /// If `f` panics, the panic propagates here (and the callers waiting on it get
    /// `Err(SingleFlightError)`); so does a panic of the value's `Clone` (the copy for the
    /// callers waiting) or of the key's `Clone`, `Hash` or `Eq`.
    ///
    /// # Deadlocks
    ///
    /// The key's `Hash` and `Eq` run under the map's lock, and the joiners' clones of the value
    /// under the flight's: a `Hash`, `Eq` or `Clone` that calls into the same `SingleFlight`
    /// deadlocks. `f` itself may call it (for any key).
    pub fn run(&self, key: K, f: impl FnOnce() -> V) -> Result<V, SingleFlightError> {
        let mut flights = self.flights.lock();
        if let Some(running) = flights.get(&key).filter(|f| !f.finished()) {
            if thread::is_current(&running.leader) {
                // The leader's own `f` calls again for its key.
                drop(flights);
                return Ok(f());
            }
            let running = running.clone();
            drop(flights);
            let _counted = Counted::new(&self.waiting);
            return running.wait();
        }
        // The guard exists before the flight is in the map: if the insert panics (the key's
        // `Clone`, `Hash`, `Eq` or `Drop`), its unwind publishes the panic, so no flight is ever
        // left in the map unfinished.
        let mut leading = Leading {
            flights: self,
            key: None,
            flight: Arc::new(Flight {
                leader: thread::current(),
                state: Mutex::new(FlightState {
                    outcome: None,
                    parked: Vec::new(),
                }),
            }),
            published: false,
        };
        let stale = flights.insert(key.clone(), leading.flight.clone());
        drop(flights);
        leading.key = Some(key);
        // A finished flight that was left in the map (see the module docs) ends here, outside
        // the lock; its value's `Drop` is contained.
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(stale))) {
            let message = panic_message(payload);
            log::error!(
                message:? = message;
                "humpyard caught a panic dropping a single-flight value: {message:?}"
            );
        }
        let value = f();
        leading.land(&value);
        Ok(value)
    }

    /// Keys with a call running now.
    pub fn in_flight(&self) -> usize {
        self.flights.lock().values().filter(|f| !f.finished()).count()
    }

    /// Callers waiting now for another caller's `f`, over all keys (a statistic: it may change
    /// the next moment).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight::new()
    }
}

impl<K, V> fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts only: `K` and `V` need not be `Debug`.
        f.debug_struct("SingleFlight")
            .field("flights", &self.flights.lock().len())
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

impl<V: Clone> Flight<V> {
    fn finished(&self) -> bool {
        self.state.lock().outcome.is_some()
    }

    /// Waits for the leader's outcome.
    fn wait(&self) -> Result<V, SingleFlightError> {
        let mut listed = false;
        loop {
            {
                let mut state = self.state.lock();
                match &state.outcome {
                    Some(Ok(Some(value))) => return Ok(value.clone()),
                    // Not reached: a joiner took its reference before the leader counted them.
                    Some(Ok(None)) => return Err(SingleFlightError),
                    Some(Err(e)) => return Err(*e),
                    None if !listed => {
                        state.parked.push(thread::current());
                        listed = true;
                    }
                    None => {}
                }
            }
            // Woken by the leader, or spuriously: look again.
            thread::park();
        }
    }
}

/// One waiting joiner, counted while it lives (a `V::clone` that panics uncounts it too).
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(count: &'a AtomicUsize) -> Counted<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The leader's duty: take the flight out of the map and publish its outcome, on return or
/// during an unwind.
struct Leading<'a, K: Hash + Eq, V> {
    flights: &'a SingleFlight<K, V>,
    /// `None` once taken out of the map.
    key: Option<K>,
    flight: Arc<Flight<V>>,
    published: bool,
}

impl<K: Hash + Eq, V> Leading<'_, K, V> {
    /// Takes the flight out of the map; whether that went cleanly (false: the key's `Hash`,
    /// `Eq` or `Drop` panicked, the panic was caught, and the finished flight may stay in the
    /// map until a caller replaces it).
    fn take_out(&mut self) -> bool {
        let Some(key) = self.key.take() else { return true };
        let (flights, flight) = (self.flights, &self.flight);
        let taken = catch_unwind(AssertUnwindSafe(move || {
            let mut map = flights.flights.lock();
            if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
                map.remove(&key);
            }
            drop(map);
            drop(key);
        }));
        match taken {
            Ok(()) => true,
            Err(payload) => {
                let message = panic_message(payload);
                log::error!(
                    message:? = message;
                    "humpyard caught a panic in a single-flight key's Hash, Eq or Drop: {message:?}"
                );
                false
            }
        }
    }

    /// Publishes the outcome and wakes the joiners.
    fn publish(&mut self, outcome: Result<Option<V>, SingleFlightError>) {
        self.published = true;
        let parked = {
            let mut state = self.flight.state.lock();
            state.outcome = Some(outcome);
            std::mem::take(&mut state.parked)
        };
        for joiner in parked {
            joiner.unpark();
        }
    }
}

impl<K: Hash + Eq, V: Clone> Leading<'_, K, V> {
    /// `f` returned `value`: out of the map, then the value (a clone, if anyone joined) to the
    /// joiners.
    fn land(&mut self, value: &V) {
        let clean = self.take_out();
        // Out of the map, the flight gains no joiner: its references now are this leader's and
        // one per joiner. (Left in the map, it might gain one: keep a value for it.)
        let joined = !clean || Arc::strong_count(&self.flight) > 1;
        // The clone runs outside the flight's lock; if it panics, `Drop` publishes the panic.
        let shared = if joined { Some(value.clone()) } else { None };
        self.publish(Ok(shared));
    }
}

impl<K: Hash + Eq, V> Drop for Leading<'_, K, V> {
    fn drop(&mut self) {
        if !self.published {
            // `f` (or the value's `Clone`) panicked: the joiners learn so and go.
            self.take_out();
            self.publish(Err(SingleFlightError));
        }
    }
}
