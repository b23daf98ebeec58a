//! Worker threads: take a shard from the run queue, run a batch of its events, hand it on.
//!
//! A worker runs one shard at a time, so a slow or stuck handler stalls only its own shard;
//! the other workers take its other queued shards from its lane of the run queue (R-PERF-3,
//! see `run_queue`). A worker that runs out of work polls for about a microsecond and a few
//! yields of its time slice ([`POLL_ROUNDS`]), then parks (see `sleepers`): an idle worker
//! uses no CPU.
//!
//! Each worker index has a [`WorkerHandle`] in an `ArcSwap` (see `inner::WorkerSlot`). If the
//! thread dies anyway (a bug in the engine, or injected in tests), the shard it was running is
//! requeued by the unwinding [`RunGuard`] and the supervisor swaps in a new thread with
//! `epoch + 1`, installing it only in place of the exact handle it saw dead
//! ([`WorkerSlot::install`]). A replacement that loses that race is retired and exits, and a
//! worker whose epoch is older than its slot's current one exits too: two threads never serve
//! one worker index.

use crate::sync::Arc as StdArc;
use std::io;

use super::dispatch::BatchEnd;
use super::inner::{Inner, WorkerSlot};
use super::shard::{SCHEDULED, WAITING};
use crate::sync::thread::{self, JoinHandle, Thread};
use crate::sync::{fence, spin_hint, AtomicBool, Mutex, Ordering};
use crate::Handler;

/// A worker thread as the pool knows it.
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    /// Generation of the worker index: 0 for the first thread, +1 per replacement.
    pub(crate) epoch: u64,
    pub(crate) thread: Thread,
    pub(crate) join: Mutex<Option<JoinHandle<()>>>,
    /// Set when this handle lost the race to be installed: its thread exits at once.
    pub(crate) retired: StdArc<AtomicBool>,
}

impl WorkerHandle {
    /// A handle with no thread behind it yet (a placeholder, or a model's stand-in), naming
    /// `thread` as the one to unpark.
    pub(crate) fn unstarted(thread: Thread) -> WorkerHandle {
        WorkerHandle {
            epoch: 0,
            thread,
            join: Mutex::new(None),
            retired: StdArc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the thread has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.join.lock().as_ref().is_some_and(thread::is_finished)
    }
}

impl WorkerSlot {
    /// Installs `fresh` in place of `seen`, the exact handle the caller inspected, if it is
    /// still the current one (compare by identity, so a stale caller never removes a newer
    /// handle). A handle that is not installed is retired and its thread woken to exit.
    /// Returns whether `fresh` was installed.
    pub(crate) fn install(&self, seen: &StdArc<WorkerHandle>, fresh: StdArc<WorkerHandle>) -> bool {
        let previous = self.handle.compare_and_swap(seen, fresh.clone());
        if StdArc::ptr_eq(&previous, seen) {
            return true;
        }
        fresh.retired.store(true, Ordering::Release);
        fresh.thread.unpark();
        false
    }
}

/// Starts the worker thread for `index` with `epoch`.
pub(crate) fn spawn_worker<H: Handler>(inner: &StdArc<Inner<H>>, index: usize, epoch: u64) -> io::Result<WorkerHandle> {
    let inner = inner.clone();
    let retired = StdArc::new(AtomicBool::new(false));
    let retired_in_thread = retired.clone();
    let join = thread::spawn_named(format!("humpyard-worker-{index}"), move || {
        worker_main(&inner, index, epoch, &retired_in_thread)
    })?;
    Ok(WorkerHandle {
        epoch,
        thread: join.thread().clone(),
        join: Mutex::new(Some(join)),
        retired,
    })
}

fn worker_main<H: Handler>(inner: &Inner<H>, index: usize, epoch: u64, retired: &AtomicBool) {
    loop {
        if retired.load(Ordering::Acquire) || inner.workers[index].handle.load().epoch > epoch {
            return; // lost the installation race, or superseded
        }
        if let Some(shard) = inner.run_queue.pop(index) {
            if inner.run_queue.own_has_ready(index) {
                // More work than this worker: wake a parked one to steal (it re-checks the
                // lanes itself).
                inner.wake_worker(index);
            }
            run_shard(inner, index, shard);
            continue;
        }
        if inner.stop.load(Ordering::Acquire) {
            return;
        }
        if poll_briefly(inner) {
            continue;
        }
        inner.sleepers.register(index);
        fence(Ordering::SeqCst);
        if inner.run_queue.has_ready() || inner.stop.load(Ordering::Relaxed) {
            inner.sleepers.unregister(index);
            continue;
        }
        crate::pause::point(crate::pause::PausePoint::BeforePark);
        thread::park();
        inner.sleepers.unregister(index);
    }
}

/// Polling rounds before an idle worker parks: busy-waits of 1, 2, 4 ... 32 spin hints (about a
/// microsecond in all), then yields of the time slice. Work often arrives within that time, and
/// a park and unpark cost a few microseconds and two context switches; past it, the worker
/// parks and uses no CPU. None under loom, whose models check the parking protocol itself.
#[cfg(not(humpyard_loom))]
const POLL_ROUNDS: u32 = 10;
#[cfg(humpyard_loom)]
const POLL_ROUNDS: u32 = 0;

/// Polls the run queue for a short, bounded time; `true` if work (or stop) appeared.
fn poll_briefly<H: Handler>(inner: &Inner<H>) -> bool {
    for round in 0..POLL_ROUNDS {
        if round < 6 {
            for _ in 0..1u32 << round {
                spin_hint();
            }
        } else {
            thread::yield_now();
        }
        if inner.run_queue.has_ready() || inner.stop.load(Ordering::Relaxed) {
            return true;
        }
    }
    false
}

/// Requeues the shard if the worker unwinds while running it, so the shard resumes on another
/// thread (R-FT-1).
struct RunGuard<'a, H: Handler> {
    inner: &'a Inner<H>,
    shard: usize,
}

impl<H: Handler> Drop for RunGuard<'_, H> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.inner.shards[self.shard].release_as(SCHEDULED);
            self.inner.enqueue(self.shard);
        }
    }
}

/// Runs `shard` (popped from the run queue, state `SCHEDULED`) until it is drained, has used its
/// batch, waits for a retry, or the engine stops.
fn run_shard<H: Handler>(inner: &Inner<H>, worker: usize, index: usize) {
    let shard = &inner.shards[index];
    let guard = RunGuard { inner, shard: index };
    inner.workers[worker].shard.store(index, Ordering::Relaxed);
    shard.begin_run();
    loop {
        // SAFETY: this thread moved the shard from SCHEDULED to RUNNING after popping it from
        // the run queue (or re-took it in `go_idle`): it is the shard's only runner.
        let end = unsafe { shard.with_core(|core| inner.run_batch(worker, index, core)) };
        #[cfg(feature = "fault-injection")]
        if inner.workers[worker].kill.swap(false, Ordering::Relaxed) {
            panic!("humpyard fault injection: worker {worker} exits while running shard {index}");
        }
        match end {
            BatchEnd::Drained => {
                if shard.go_idle() {
                    shard.begin_run();
                    continue;
                }
            }
            BatchEnd::More => {
                shard.release_as(SCHEDULED);
                inner.enqueue(index);
            }
            BatchEnd::Waiting(due) => {
                shard.release_as(WAITING);
                inner.add_timer(due, index);
            }
            BatchEnd::Stopped => shard.release_as(super::shard::IDLE),
        }
        break;
    }
    std::mem::forget(guard);
}
