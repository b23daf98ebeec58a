//! The one place the library names its synchronisation primitives.
//!
//! Every atomic, lock, `ArcSwap`, `UnsafeCell` and thread operation in humpyard comes from this
//! module. Normally they are the standard library's (and parking_lot's `Mutex`); compiled with
//! `RUSTFLAGS="--cfg humpyard_loom"` they are loom's, so the model checker in `loom-tests/` sees
//! every interleaving of the real code. Library code never names `std::sync::atomic` directly.
//!
//! `Arc` is std's in both builds: no protocol here depends on the interleavings of a reference
//! count, and `ArcSwap` holds std `Arc`s.
//!
//! Time, too, comes from here ([`time`]): the engine, the supervisor and the pipeline read the
//! clock, compute deadlines and wait with timeouts only through it.
//!
//! Four differences loom forces on the shape of the API:
//! - [`UnsafeCell`] exposes `with` / `with_mut` closures instead of `get`, so that loom can
//!   check each access against concurrent ones;
//! - under loom, [`time`] is a logical clock that stands still until a model advances it
//!   (`loom_api::clock::advance`); [`thread::park_timeout`] then parks until unparked or until
//!   an advance passes its deadline, so models reach deadlines, timers and timeouts when they
//!   say so, and every interleaving around them is explored;
//! - under loom, [`thread`] keeps a park token per thread in front of loom's `park`, whose
//!   `unpark` wrongly resumes a thread blocked on a lock (tokio-rs/loom#249);
//! - [`thread::pause`] and [`thread::sleep`] (polling loops) yield instead of sleeping under
//!   loom: a model's clock moves only when the model moves it.

#[cfg(not(humpyard_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

    /// An atomically replaceable `std::sync::Arc`.
    pub(crate) use arc_swap::ArcSwap;

    /// A mutual-exclusion lock whose `lock` cannot fail (no poisoning).
    pub(crate) type Mutex<T> = parking_lot::Mutex<T>;

    /// What [`Mutex::lock`] returns.
    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    /// Thread-local storage (loom's under loom, where model threads share one OS thread).
    pub(crate) use std::thread_local;

    /// `std::cell::UnsafeCell` with loom's closure-based access API.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a shared raw pointer to the contents.
        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with an exclusive raw pointer to the contents.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    pub(crate) mod thread {
        pub(crate) use std::thread::{current, park, park_timeout, Builder, JoinHandle, Thread};

        /// Whether the thread behind `join` has ended.
        pub(crate) fn is_finished<T>(join: &JoinHandle<T>) -> bool {
            join.is_finished()
        }

        /// Whether `thread` is the calling thread.
        pub(crate) fn is_current(thread: &Thread) -> bool {
            thread.id() == current().id()
        }

        /// Starts a named thread.
        pub(crate) fn spawn_named<F>(name: String, f: F) -> std::io::Result<JoinHandle<()>>
        where
            F: FnOnce() + Send + 'static,
        {
            Builder::new().name(name).spawn(f)
        }

        /// Waits a little before polling again.
        pub(crate) fn pause(d: std::time::Duration) {
            std::thread::sleep(d);
        }

        /// Sleeps (a polling loop's wait).
        pub(crate) fn sleep(d: std::time::Duration) {
            std::thread::sleep(d);
        }

        /// Offers the rest of this time slice to another thread.
        pub(crate) fn yield_now() {
            std::thread::yield_now();
        }
    }

    /// A hint to the processor inside a short spin.
    #[inline(always)]
    pub(crate) fn spin_hint() {
        std::hint::spin_loop();
    }

    /// The clock: std's.
    pub(crate) mod time {
        pub(crate) use std::time::Instant;
    }
}

#[cfg(humpyard_loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
    pub(crate) use loom::sync::MutexGuard;
    pub(crate) use loom::thread_local;

    /// `arc_swap::ArcSwap`'s API over a loom mutex. arc-swap's own atomics are invisible to
    /// loom, and its thread-local debt slots assume real OS threads (loom runs its threads as
    /// coroutines on one), so under loom the swap is modelled by a lock with the same
    /// semantics: `compare_and_swap` replaces only the exact `Arc` the caller saw.
    #[derive(Debug)]
    pub(crate) struct ArcSwap<T>(Mutex<std::sync::Arc<T>>);

    impl<T> ArcSwap<T> {
        pub(crate) fn from_pointee(value: T) -> Self {
            ArcSwap(Mutex::new(std::sync::Arc::new(value)))
        }

        pub(crate) fn load(&self) -> std::sync::Arc<T> {
            self.0.lock().clone()
        }

        pub(crate) fn load_full(&self) -> std::sync::Arc<T> {
            self.load()
        }

        pub(crate) fn store(&self, value: std::sync::Arc<T>) {
            *self.0.lock() = value;
        }

        /// Replaces the value with `new` if it is `current`; returns the value before.
        pub(crate) fn compare_and_swap(
            &self,
            current: &std::sync::Arc<T>,
            new: std::sync::Arc<T>,
        ) -> std::sync::Arc<T> {
            let mut slot = self.0.lock();
            let before = slot.clone();
            if std::sync::Arc::ptr_eq(&before, current) {
                *slot = new;
            }
            before
        }
    }

    /// loom's mutex with the panic-free `lock` of parking_lot.
    ///
    /// loom resumes a thread blocked on this mutex when another thread unparks it with loom's
    /// own `unpark` (tokio-rs/loom#249); [`thread`] below therefore unparks only parked threads.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Mutex::new(T::default())
        }
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
    }

    /// Threads, with a park token of their own in front of loom's park and unpark.
    ///
    /// loom's `unpark` resumes a thread blocked on a loom `Mutex` (tokio-rs/loom#249), which
    /// std never does: a model in which one thread unparks another that is just then taking a
    /// lock fails inside loom ("expected to be able to acquire lock"). Here each thread has a
    /// token word (`EMPTY`, `NOTIFIED`, or `PARKED` while it is about to park or parked), as
    /// std's futex parker has, and `unpark` calls loom's only on a thread that is `PARKED`,
    /// which does nothing between marking itself so and parking: never a thread on a lock.
    /// The semantics are std's: `unpark` leaves one token, `park` consumes it or waits.
    pub(crate) mod thread {
        use std::cell::RefCell;
        use std::sync::Arc;

        use loom::sync::atomic::{AtomicIsize, Ordering};

        const PARKED: isize = -1;
        const EMPTY: isize = 0;
        const NOTIFIED: isize = 1;

        /// A handle to a thread: loom's handle and the thread's park token.
        #[derive(Debug, Clone)]
        pub(crate) struct Thread {
            thread: loom::thread::Thread,
            token: Arc<AtomicIsize>,
        }

        impl Thread {
            /// Whether two handles name one thread (the same park token).
            pub(crate) fn same(&self, other: &Thread) -> bool {
                Arc::ptr_eq(&self.token, &other.token)
            }

            /// Leaves the thread a token; wakes it if it is parked.
            pub(crate) fn unpark(&self) {
                if self.token.swap(NOTIFIED, Ordering::Release) == PARKED {
                    self.thread.unpark();
                }
            }
        }

        loom::thread_local! {
            static TOKEN: RefCell<Option<Arc<AtomicIsize>>> = RefCell::new(None);
        }

        fn my_token() -> Arc<AtomicIsize> {
            TOKEN.with(|t| {
                t.borrow_mut()
                    .get_or_insert_with(|| Arc::new(AtomicIsize::new(EMPTY)))
                    .clone()
            })
        }

        /// The calling thread's handle.
        pub(crate) fn current() -> Thread {
            Thread {
                thread: loom::thread::current(),
                token: my_token(),
            }
        }

        /// Whether `thread` is the calling thread.
        pub(crate) fn is_current(thread: &Thread) -> bool {
            thread.same(&current())
        }

        /// Consumes the calling thread's token, waiting for one if there is none.
        pub(crate) fn park() {
            let token = my_token();
            // NOTIFIED -> EMPTY: consumed at once; EMPTY -> PARKED: wait for an unpark.
            if token.fetch_sub(1, Ordering::Acquire) == NOTIFIED {
                return;
            }
            loop {
                loom::thread::park();
                if token
                    .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
            }
        }

        /// Parks until unparked, or until the model's clock is advanced past `timeout` from
        /// now (see [`super::time`]).
        pub(crate) fn park_timeout(timeout: std::time::Duration) {
            let Some(deadline) = super::time::Instant::now().checked_add(timeout) else {
                return park();
            };
            super::time::wake_at(deadline, current());
            park();
            super::time::forget(&current());
        }

        /// A started thread: join it, or reach it through [`JoinHandle::thread`].
        #[derive(Debug)]
        pub(crate) struct JoinHandle<T> {
            join: loom::thread::JoinHandle<T>,
            thread: Thread,
        }

        impl<T> JoinHandle<T> {
            pub(crate) fn thread(&self) -> &Thread {
                &self.thread
            }

            pub(crate) fn join(self) -> std::thread::Result<T> {
                self.join.join()
            }
        }

        /// loom cannot observe a thread's end without joining it; models never kill workers.
        pub(crate) fn is_finished<T>(_: &JoinHandle<T>) -> bool {
            false
        }

        /// Starts a named thread, then yields: loom 0.7 stops exploring when the spawner's next
        /// step races a child that begins with an atomic load (tokio-rs/loom#392); a yield
        /// right after the spawn restores the exploration.
        pub(crate) fn spawn_named<F>(name: String, f: F) -> std::io::Result<JoinHandle<()>>
        where
            F: FnOnce() + Send + 'static,
        {
            let token = Arc::new(AtomicIsize::new(EMPTY));
            let child_token = token.clone();
            let join = loom::thread::Builder::new().name(name).spawn(move || {
                TOKEN.with(|t| *t.borrow_mut() = Some(child_token));
                f();
            })?;
            let thread = Thread {
                thread: join.thread().clone(),
                token,
            };
            loom::thread::yield_now();
            Ok(JoinHandle { join, thread })
        }

        /// The model's clock stands still: polling again means letting another thread run.
        pub(crate) fn pause(_: std::time::Duration) {
            loom::thread::yield_now();
        }

        /// The model's clock stands still: a polling loop's sleep lets another thread run.
        pub(crate) fn sleep(_: std::time::Duration) {
            loom::thread::yield_now();
        }

        pub(crate) fn yield_now() {
            loom::thread::yield_now();
        }
    }

    /// Under loom a spin must yield, or the model never lets the other thread progress.
    #[inline(always)]
    pub(crate) fn spin_hint() {
        loom::thread::yield_now();
    }

    /// A logical clock for models: it starts at zero and moves only when a model calls
    /// [`advance`](time::advance); a thread in `park_timeout` is unparked by the advance that
    /// passes its deadline.
    ///
    /// The clock is a std atomic, not loom's: loom runs one model thread at a time, so it is
    /// never contended, and reading the time is no scheduling point (a loom atomic would add one
    /// to every read and multiply the interleavings). The interleavings around time are those
    /// around `advance`, which yields to loom before and after it moves the clock. The list of
    /// timed parkers is a loom lock: a parker's handle passes through it to the thread that
    /// advances the clock and unparks it, and loom must see that hand-over (its park token may
    /// have been made on the parker's thread; through a lock loom cannot see, the unpark's
    /// access to it is a causality violation). The clock outlives a model's iterations (the
    /// list does not: a loom static lives for one execution): models call
    /// [`reset`](time::reset) first.
    pub(crate) mod time {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::Duration;

        use super::thread::{self, Thread};

        static NOW_NANOS: AtomicU64 = AtomicU64::new(0);

        loom::lazy_static! {
            static ref TIMED: loom::sync::Mutex<Vec<(u64, Thread)>> = loom::sync::Mutex::new(Vec::new());
        }

        fn timed() -> loom::sync::MutexGuard<'static, Vec<(u64, Thread)>> {
            TIMED.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// A point on the model's clock.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) struct Instant(u64);

        impl Instant {
            pub(crate) fn now() -> Instant {
                Instant(NOW_NANOS.load(Ordering::SeqCst))
            }

            pub(crate) fn checked_add(&self, d: Duration) -> Option<Instant> {
                let nanos = u64::try_from(d.as_nanos()).ok()?;
                self.0.checked_add(nanos).map(Instant)
            }

            pub(crate) fn saturating_duration_since(&self, earlier: Instant) -> Duration {
                Duration::from_nanos(self.0.saturating_sub(earlier.0))
            }

            pub(crate) fn elapsed(&self) -> Duration {
                Instant::now().saturating_duration_since(*self)
            }
        }

        impl std::ops::Add<Duration> for Instant {
            type Output = Instant;
            fn add(self, d: Duration) -> Instant {
                self.checked_add(d).expect("the model's clock overflows")
            }
        }

        impl std::ops::Sub<Instant> for Instant {
            type Output = Duration;
            fn sub(self, earlier: Instant) -> Duration {
                self.saturating_duration_since(earlier)
            }
        }

        /// Unparks `thread` when the clock passes `deadline`.
        pub(crate) fn wake_at(deadline: Instant, thread: Thread) {
            timed().push((deadline.0, thread));
        }

        /// Forgets `thread`'s deadline (its park returned).
        pub(crate) fn forget(thread: &Thread) {
            timed().retain(|(_, t)| !t.same(thread));
        }

        /// Moves the clock forward by `d` and unparks every thread whose deadline it passes.
        pub(crate) fn advance(d: Duration) {
            loom::thread::yield_now();
            let step = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            let now = NOW_NANOS.fetch_add(step, Ordering::SeqCst).saturating_add(step);
            let due: Vec<Thread> = {
                let mut timed = timed();
                let (due, later): (Vec<_>, Vec<_>) = timed.drain(..).partition(|(at, _)| *at <= now);
                *timed = later;
                due.into_iter().map(|(_, t)| t).collect()
            };
            for thread in due {
                thread.unpark();
            }
            thread::yield_now();
        }

        /// Back to zero, no timed parkers: the start of a model's iteration.
        pub(crate) fn reset() {
            NOW_NANOS.store(0, Ordering::SeqCst);
            timed().clear();
        }
    }
}

pub(crate) use imp::*;
pub(crate) use std::sync::Arc;

/// Atomics for `static`s: the standard library's in every build, loom's included (loom's
/// atomics cannot live in a `static`). Only process-wide counters and test-only switches that
/// take part in no modelled protocol use them.
#[allow(unused_imports)] // used by the `testing` and `pause-points` features
pub(crate) mod statics {
    pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
}
