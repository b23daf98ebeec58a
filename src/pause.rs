//! Pause points: named places in the engine and the pipeline where a test can hold a thread
//! until it says go, to force an interleaving that loom cannot reach (real threads, real time,
//! PostgreSQL).
//!
//! The points exist only with the `pause-points` feature, which nothing turns on but the
//! `interleavings` test crate: the library's own tests, the benches and the perf tool build
//! without it, and there every point is an empty inline function. With the feature, a point
//! that no test has armed costs one `Relaxed` load.
//!
//! # The points
//!
//! | point | thread | where |
//! |---|---|---|
//! | [`AfterTailClaim`](PausePoint::AfterTailClaim) | a producer | a ring push has claimed its position and not yet written and published the element |
//! | [`BeforeInstall`](PausePoint::BeforeInstall) | the supervisor | a replacement worker thread is started and its handle not yet installed in the worker's slot |
//! | [`BeforePark`](PausePoint::BeforePark) | a worker | registered as a sleeper, re-checked the run queue, about to park |
//! | [`BeforeWaiterPark`](PausePoint::BeforeWaiterPark) | a producer in `submit_timeout` | registered as a waiter, its re-try found the ring full, about to park |
//! | [`WaiterLeaving`](PausePoint::WaiterLeaving) | a producer in `submit_timeout` | its deadline passed; it has not yet left the waiter list (a consumer may wake it meanwhile) |
//! | [`BeforeCollect`](PausePoint::BeforeCollect) | the shutting-down thread | the workers are stopped; the leftovers are not yet collected |
//! | [`BeforeCheckpointSave`](PausePoint::BeforeCheckpointSave) | the pipeline's reader | the watermark is computed; the store's `save_checkpoint` not yet called |
//!
//! # Use
//!
//! ```ignore
//! let held = pause::hold(PausePoint::BeforeInstall);     // the next thread to reach it stops
//! assert!(held.wait_reached(Duration::from_secs(10)));  // it is there now
//! // ... do what must happen while it waits ...
//! held.release();                                       // it goes on (dropping `held` too)
//! ```
//!
//! Points are process-wide: tests that arm them run one at a time (the `interleavings` crate
//! serialises its tests).

/// A named place where a test can hold a thread. See the [module docs](self) for the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PausePoint {
    /// A ring push has claimed its position (the tail moved) and not yet written and
    /// published the element.
    AfterTailClaim,
    /// The supervisor has started a replacement worker thread and not yet installed its
    /// handle.
    BeforeInstall,
    /// A worker has registered as a sleeper and re-checked the run queue; it parks next.
    BeforePark,
    /// A producer in `submit_timeout` is registered as a waiter and its re-try found the ring
    /// full; it parks next.
    BeforeWaiterPark,
    /// A producer in `submit_timeout` saw its deadline pass and has not yet left the waiter
    /// list: a consumer may take it off the list and wake it meanwhile.
    WaiterLeaving,
    /// Shutdown has stopped the workers and not yet collected what is left.
    BeforeCollect,
    /// The pipeline's reader is about to save its checkpoint.
    BeforeCheckpointSave,
}

/// Reaches `point`: blocks here while a test holds it. Compiled to nothing without the
/// `pause-points` feature.
#[inline(always)]
pub(crate) fn point(point: PausePoint) {
    #[cfg(all(feature = "pause-points", not(humpyard_loom)))]
    imp::reached(point);
    #[cfg(not(all(feature = "pause-points", not(humpyard_loom))))]
    let _ = point;
}

#[cfg(all(feature = "pause-points", not(humpyard_loom)))]
pub use imp::{hold, hold_thread, Held};

#[cfg(all(feature = "pause-points", not(humpyard_loom)))]
mod imp {
    use std::sync::{Condvar, Mutex, MutexGuard};
    use std::thread::ThreadId;
    use std::time::{Duration, Instant};

    use super::PausePoint;
    use crate::sync::statics::{AtomicUsize, Ordering};

    /// Armed entries. `Relaxed` is enough: a thread that misses an arming done just before
    /// it reached the point was not ordered after the arming anyway; the registry's mutex
    /// orders everything else.
    static ARMED: AtomicUsize = AtomicUsize::new(0);

    static REGISTRY: Registry = Registry {
        entries: Mutex::new(Vec::new()),
        changed: Condvar::new(),
    };

    struct Registry {
        entries: Mutex<Vec<Entry>>,
        changed: Condvar,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Stage {
        /// Waiting for a thread.
        Armed,
        /// A thread is held there.
        Holding,
        /// The test said go (or gave up on it).
        Released,
    }

    struct Entry {
        id: u64,
        point: PausePoint,
        /// Only this thread is held, if set.
        thread: Option<ThreadId>,
        stage: Stage,
    }

    fn entries() -> MutexGuard<'static, Vec<Entry>> {
        REGISTRY.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A test's hold on a point: the first matching thread to reach it stops there until
    /// [`release`](Held::release) (or drop).
    #[derive(Debug)]
    pub struct Held {
        id: u64,
        point: PausePoint,
    }

    /// Holds the next thread, whichever it is, that reaches `point`.
    pub fn hold(point: PausePoint) -> Held {
        arm(point, None)
    }

    /// Holds `thread` the next time it reaches `point`; other threads pass.
    pub fn hold_thread(point: PausePoint, thread: ThreadId) -> Held {
        arm(point, Some(thread))
    }

    fn arm(point: PausePoint, thread: Option<ThreadId>) -> Held {
        let mut entries = entries();
        let id = entries.iter().map(|e| e.id + 1).max().unwrap_or(0);
        entries.push(Entry {
            id,
            point,
            thread,
            stage: Stage::Armed,
        });
        ARMED.fetch_add(1, Ordering::Relaxed);
        Held { id, point }
    }

    impl Held {
        /// Waits until a thread is held at the point; `false` if none came within `timeout`.
        pub fn wait_reached(&self, timeout: Duration) -> bool {
            let until = Instant::now() + timeout;
            let mut entries = entries();
            loop {
                match entries.iter().find(|e| e.id == self.id).map(|e| e.stage) {
                    Some(Stage::Holding) => return true,
                    Some(Stage::Armed) => {}
                    Some(Stage::Released) | None => return false,
                }
                let now = Instant::now();
                if now >= until {
                    return false;
                }
                entries = REGISTRY
                    .changed
                    .wait_timeout(entries, until - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }

        /// Whether a thread is held at the point now.
        pub fn is_reached(&self) -> bool {
            entries().iter().any(|e| e.id == self.id && e.stage == Stage::Holding)
        }

        /// The point this hold is on.
        pub fn point(&self) -> PausePoint {
            self.point
        }

        /// Lets the held thread go on; disarms the point if no thread reached it.
        pub fn release(self) {
            drop(self);
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            let mut entries = entries();
            if let Some(at) = entries.iter().position(|e| e.id == self.id) {
                if entries[at].stage == Stage::Armed {
                    entries.remove(at);
                    ARMED.fetch_sub(1, Ordering::Relaxed);
                } else {
                    entries[at].stage = Stage::Released;
                }
            }
            REGISTRY.changed.notify_all();
        }
    }

    /// Blocks the calling thread while a test holds `point` for it.
    #[inline]
    pub(super) fn reached(point: PausePoint) {
        if ARMED.load(Ordering::Relaxed) != 0 {
            reached_slow(point);
        }
    }

    #[cold]
    fn reached_slow(point: PausePoint) {
        let me = std::thread::current().id();
        let mut entries = entries();
        let Some(at) = entries
            .iter()
            .position(|e| e.point == point && e.stage == Stage::Armed && e.thread.map_or(true, |t| t == me))
        else {
            return;
        };
        let id = entries[at].id;
        entries[at].stage = Stage::Holding;
        REGISTRY.changed.notify_all();
        loop {
            match entries.iter().position(|e| e.id == id) {
                Some(at) if entries[at].stage == Stage::Released => {
                    entries.remove(at);
                    ARMED.fetch_sub(1, Ordering::Relaxed);
                    REGISTRY.changed.notify_all();
                    return;
                }
                Some(_) => {}
                None => return,
            }
            entries = REGISTRY.changed.wait(entries).unwrap_or_else(|e| e.into_inner());
        }
    }
}
