//! Internals exposed to the loom models in `loom-tests/`, and only there: this module exists
//! only when the crate is built with `--cfg humpyard_loom`. The models drive the library's real
//! code through these thin wrappers, never a copy of it. The ring's wrapper lives in
//! [`internals`](crate::internals), which the benches use too.

pub use crate::internals::{PushError, Ring};

/// One worker index's slot (`engine::worker_slot::WorkerSlot`), with stand-in handles that have no
/// thread behind them, for the replacement-by-epoch model.
pub struct WorkerSlot(crate::engine::worker_slot::WorkerSlot);

impl std::fmt::Debug for WorkerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSlot").field("epoch", &self.0.epoch()).finish()
    }
}

/// A worker handle as a replacer sees it.
#[derive(Debug, Clone)]
pub struct WorkerHandle(std::sync::Arc<crate::engine::worker_slot::WorkerHandle>);

impl WorkerSlot {
    /// A slot holding an epoch-0 handle.
    pub fn new() -> WorkerSlot {
        let handle = crate::engine::worker_slot::WorkerHandle::unstarted(crate::sync::thread::current());
        WorkerSlot(crate::engine::worker_slot::WorkerSlot::new(handle))
    }

    /// The current handle.
    pub fn load(&self) -> WorkerHandle {
        WorkerHandle(self.0.handle())
    }

    /// What the supervisor does for a dead worker it saw as `seen`: make a handle with
    /// `seen.epoch + 1` and install it in place of exactly `seen`. Returns the fresh handle and
    /// whether it was installed.
    pub fn replace(&self, seen: &WorkerHandle) -> (WorkerHandle, bool) {
        let mut fresh = crate::engine::worker_slot::WorkerHandle::unstarted(crate::sync::thread::current());
        fresh.epoch = seen.0.epoch + 1;
        let fresh = std::sync::Arc::new(fresh);
        let installed = self.0.install(&seen.0, fresh.clone());
        (WorkerHandle(fresh), installed)
    }
}

impl Default for WorkerSlot {
    fn default() -> Self {
        WorkerSlot::new()
    }
}

impl WorkerHandle {
    /// The handle's epoch.
    pub fn epoch(&self) -> u64 {
        self.0.epoch
    }

    /// Whether the handle lost its installation race (its thread would exit).
    pub fn is_retired(&self) -> bool {
        self.0.retired.load(crate::sync::Ordering::Acquire)
    }

    /// Whether two handles are the same one.
    pub fn same(&self, other: &WorkerHandle) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The handler of [`Shard`] models: shards are generic over a handler; the scheduling protocol
/// never calls it.
#[derive(Debug)]
struct Unused;

impl crate::Handler for Unused {
    type Payload = u64;
    type State = ();
    type Error = String;

    fn init(&self, _: &crate::StreamId) -> Result<(), String> {
        Ok(())
    }

    fn handle(&self, _: &mut (), _: &crate::Event<u64>) -> Result<(), String> {
        Ok(())
    }
}

/// One shard (`engine::shard::Shard`): its ring and scheduling state machine, driven step by
/// step the way `scheduler::Scheduler::after_push` (producers) and `worker::run_shard` with
/// `Scheduler::hand_off` (workers) drive it.
pub struct Shard(crate::engine::shard::Shard<Unused>);

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("state", &self.0.state()).finish()
    }
}

impl Shard {
    /// A shard whose ring holds `capacity` events.
    pub fn new(capacity: usize) -> Shard {
        Shard(crate::engine::shard::Shard::new(0, capacity, 1).expect("a small ring"))
    }

    /// Producer side, as `ingress::try_submit` and `Scheduler::after_push`: push, then schedule
    /// the shard if it was idle. `Ok(true)` means the caller must put the shard on the run
    /// queue.
    pub fn submit(&self, value: u64) -> Result<bool, PushError<u64>> {
        let stream = crate::StreamId::new("s").expect("valid id");
        match self.0.push(crate::Event::new(stream, value)) {
            Ok(()) => Ok(self.0.schedule_after_push()),
            Err(crate::engine::ring::PushError::Full(e)) => Err(PushError::Full(e.into_parts().1)),
            Err(crate::engine::ring::PushError::Closed(e)) => Err(PushError::Closed(e.into_parts().1)),
        }
    }

    /// Worker side, as `worker::run_shard` after popping the shard from the run queue: take the
    /// run (the `ShardRun` token), drain the ring through the shard's core (loom checks that no
    /// two threads are inside it at once), go idle with the re-check, and run again while the
    /// re-check re-takes it. Returns the values taken.
    pub fn run(&self) -> Vec<u64> {
        let mut taken = Vec::new();
        let mut run = self.0.begin_run().expect("popped from the run queue: Scheduled");
        loop {
            run.with(|core, ring| {
                while let Some(event) = ring.pop() {
                    core.rng = core.rng.wrapping_add(1); // a write inside the core
                    taken.push(event.into_parts().1);
                }
            });
            match run.go_idle() {
                Some(again) => run = again,
                None => return taken,
            }
        }
    }

    /// Whether the shard is idle with an event in its ring: an event stranded by a lost
    /// wake-up (meaningful once every producer and worker is done).
    pub fn stranded(&self) -> bool {
        self.0.state() == crate::engine::shard::ShardState::Idle && self.0.queued() > 0
    }
}

/// The pipeline's done-flag window (`pipeline::progress::Progress`).
#[derive(Debug)]
pub struct Progress(crate::pipeline::progress::Progress);

impl Progress {
    /// A window of `window` positions (rounded up to a power of two).
    pub fn new(window: usize) -> Progress {
        Progress(crate::pipeline::progress::Progress::new(window))
    }

    /// How many positions the window holds.
    pub fn window(&self) -> u64 {
        self.0.window()
    }

    /// A worker marks `position` fully processed.
    pub fn done(&self, position: u64) {
        self.0.done(position);
    }

    /// The pipeline thread moves the front over done positions below `end`.
    pub fn advance(&self, front: u64, end: u64) -> u64 {
        self.0.advance(front, end)
    }
}
