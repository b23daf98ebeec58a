//! Internals exposed to the loom models in `loom-tests/`, and only there: this module exists
//! only when the crate is built with `--cfg humpyard_loom`. The models drive the library's real
//! code through these thin wrappers, never a copy of it. The ring's wrapper lives in
//! [`internals`](crate::internals), which the benches use too.

pub use crate::internals::{PushError, Ring};

/// The model's clock (`sync::time` under loom): it stands still until a model advances it.
pub mod clock {
    use std::time::Duration;

    /// Moves the clock forward by `d`, waking every `park_timeout` whose deadline it passes.
    pub fn advance(d: Duration) {
        crate::sync::time::advance(d)
    }

    /// Back to zero with no timed parkers: call at the start of every model iteration (the
    /// clock is a static, and statics outlive iterations).
    pub fn reset() {
        crate::sync::time::reset()
    }
}

/// The supervisor's timer step on `engine`: schedules the shards whose retry is due on the
/// model's clock (the library's `Scheduler::fire_timers`).
pub fn fire_timers<H: crate::KeyedHandler>(engine: &crate::Engine<H>) {
    engine.model_fire_timers();
}

/// Events `engine` has handled so far (its shards' counters only; cheaper in a model's loop than
/// a full `metrics()` snapshot).
pub fn processed<H: crate::KeyedHandler>(engine: &crate::Engine<H>) -> u64 {
    engine.model_processed()
}

/// Worker `index` of `engine` dies between two shards and the supervisor replaces it with a
/// real spawned thread (the library's `supervisor::replace_worker`).
pub fn replace_worker<H: crate::KeyedHandler>(engine: &crate::Engine<H>, index: usize) {
    engine.model_replace_worker(index);
}

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

/// The pipeline's done-flag window (`pipeline::progress::Progress`).
#[derive(Debug, Clone)]
pub struct Progress(std::sync::Arc<crate::pipeline::progress::Progress>);

impl Progress {
    /// A window of `window` positions (rounded up to a power of two).
    pub fn new(window: usize) -> Progress {
        Progress(std::sync::Arc::new(crate::pipeline::progress::Progress::new(window)))
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

    /// The reader thread's side over these flags, after `checkpoint`.
    pub fn reader(&self, checkpoint: u64) -> Window {
        Window(crate::pipeline::progress::Window::new(self.0.clone(), checkpoint))
    }
}

/// The pipeline reader's window (`pipeline::progress::Window`): what it submitted, the gaps it
/// passed, the jump over a gap wider than the window.
#[derive(Debug)]
pub struct Window(crate::pipeline::progress::Window);

impl Window {
    /// Makes `position` the next to submit if it fits (marking the gaps before it done);
    /// `false` while the window is full.
    pub fn try_pass_to(&mut self, position: u64) -> bool {
        self.0.try_pass_to(position) == crate::pipeline::progress::Pass::Ready
    }

    /// `position` was submitted.
    pub fn submitted(&mut self, position: u64) {
        self.0.submitted(position);
    }

    /// The low watermark: every position up to it is done (or a gap).
    pub fn watermark(&mut self) -> u64 {
        self.0.watermark()
    }
}
