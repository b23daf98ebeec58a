//! Worker threads: take a shard from the scheduler, run it, hand it back, and park when there
//! is nothing to run.
//!
//! A worker runs one shard at a time, so a slow or stuck handler stalls only its own shard;
//! the other workers take its other queued shards from its lane of the run queue (R-PERF-3,
//! see `scheduler::run_queue`). An idle worker polls briefly, then parks
//! (`scheduler::Scheduler::idle`): it uses no CPU.
//!
//! A worker that dies anyway (a bug in the engine, or injected in tests) does not strand its
//! shard: the unwinding [`RunGuard`] requeues it, and the supervisor replaces the thread
//! (`worker_slot`, `supervisor`). A worker whose handle lost its installation race, or whose
//! slot has moved on to a newer epoch, exits before taking another shard.

use std::io;

use super::lifecycle::mark_engine_thread;
use super::runner;
use super::scheduler::Scheduler;
use super::shard::ShardRun;
use super::shared::Shared;
use super::worker_slot::WorkerHandle;
use crate::sync::thread::{self};
use crate::sync::Arc as StdArc;
use crate::sync::{AtomicBool, Mutex, Ordering};
use crate::KeyedHandler;

/// Starts the worker thread for index `index` with `epoch`.
pub(crate) fn spawn<H: KeyedHandler>(shared: &StdArc<Shared<H>>, index: usize, epoch: u64) -> io::Result<WorkerHandle> {
    let shared = shared.clone();
    let retired = StdArc::new(AtomicBool::new(false));
    let retired_in_thread = retired.clone();
    let join = thread::spawn_named(format!("humpyard-worker-{index}"), move || {
        mark_engine_thread(shared.id());
        worker_main(&shared, index, epoch, &retired_in_thread);
    })?;
    Ok(WorkerHandle {
        epoch,
        thread: join.thread().clone(),
        join: Mutex::new(Some(join)),
        retired,
    })
}

fn worker_main<H: KeyedHandler>(shared: &Shared<H>, index: usize, epoch: u64, retired: &AtomicBool) {
    let me = thread::current();
    let scheduler = shared.scheduler();
    let lifecycle = shared.lifecycle();
    loop {
        if retired.load(Ordering::Acquire) || shared.workers()[index].epoch() > epoch {
            return; // lost the installation race, or superseded
        }
        if let Some(shard) = scheduler.next_for(index) {
            run_shard(shared, index, shard);
            continue;
        }
        if lifecycle.is_stopping() {
            return;
        }
        scheduler.idle(index, &me, || lifecycle.is_stopping());
    }
}

/// Requeues the shard if the worker unwinds while holding its run, so the shard resumes on
/// another thread (R-FT-1). Holds the run between hand-offs.
struct RunGuard<'a, H: KeyedHandler> {
    scheduler: &'a Scheduler,
    run: Option<ShardRun<'a, H>>,
}

impl<H: KeyedHandler> Drop for RunGuard<'_, H> {
    fn drop(&mut self) {
        // Only an unwinding worker leaves a run here: every normal path hands it off.
        if let Some(run) = self.run.take() {
            let index = run.requeue();
            self.scheduler.enqueue(index);
        }
    }
}

/// Runs shard `index` (popped from the run queue) until it is drained, has used its budget,
/// waits for a retry, or the engine stops.
fn run_shard<H: KeyedHandler>(shared: &Shared<H>, worker: usize, index: usize) {
    let Some(run) = shared.shards()[index].begin_run() else {
        return; // a stale entry: shutdown collected the shard
    };
    shared.workers()[worker].shard.store(index, Ordering::Relaxed);
    let scheduler = shared.scheduler();
    let mut guard = RunGuard {
        scheduler,
        run: Some(run),
    };
    while let Some(run) = guard.run.as_mut() {
        let (end, taken) = runner::run(shared, worker, run);
        #[cfg(feature = "fault-injection")]
        if shared.workers()[worker].kill.swap(false, Ordering::Relaxed) {
            panic!("humpyard fault injection: worker {worker} exits while running shard {index}");
        }
        let Some(run) = guard.run.take() else { break };
        guard.run = scheduler.hand_off(run, end, taken);
    }
}
