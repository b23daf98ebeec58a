//! A shard: one ingress ring, its scheduling state, and the entity table of its streams.
//!
//! # Scheduling state machine
//!
//! | state       | meaning                                          | who leaves it, to what                          |
//! |-------------|--------------------------------------------------|-------------------------------------------------|
//! | `IDLE`      | not queued, not running                          | a producer or the supervisor: CAS -> `SCHEDULED` |
//! | `SCHEDULED` | on the run queue exactly once                    | the worker that pops it: store -> `RUNNING`      |
//! | `RUNNING`   | one worker owns the ring's consumer side and the table | that worker: -> `IDLE`, `SCHEDULED` (requeued) or `WAITING` |
//! | `WAITING`   | an event waits for its retry backoff              | the supervisor's timer: CAS -> `SCHEDULED`       |
//!
//! Only the transition into `SCHEDULED` is contended, and it is a CAS, so a shard is queued at
//! most once and run by at most one thread at a time: that is the per-stream ordering and the
//! exclusive access to the entity table (R-CONC-3).
//!
//! # No lost wake-up
//!
//! Producer: publish the event (stamp store), `fence(SeqCst)`, load the state; if `IDLE`, CAS it
//! to `SCHEDULED` and queue the shard.
//! Worker finding the ring empty: store `IDLE`, `fence(SeqCst)`, re-check the ring; if an event
//! is there, CAS `IDLE -> SCHEDULED` and run again.
//! In the total order of the two fences, either the producer's comes first, and the worker's
//! re-check sees the event, or the worker's does, and the producer sees `IDLE` (or a later
//! state that some other thread scheduled). Either way the event is never stranded in an idle
//! shard. (`SeqCst` fences rather than `SeqCst` accesses, because loom models the former.)
//!
//! # Orderings of the handoff
//!
//! A runner's writes to the table reach the next runner through a Release/Acquire chain: the
//! runner's `IDLE`/`WAITING` store is `Release`, the CAS into `SCHEDULED` is `AcqRel`, and the
//! run queue's push/pop is Release/Acquire (a requeue stores `SCHEDULED` before the push).

use crossbeam_utils::CachePadded;

use super::entity_table::EntityTable;
use super::metrics::{ShardStats, SharedCounter};
use super::ring::Ring;
use super::waiters::Waiters;
use crate::sync::{fence, AtomicU64, AtomicU8, Ordering, UnsafeCell};
use crate::{Event, Handler};

pub(crate) const IDLE: u8 = 0;
pub(crate) const SCHEDULED: u8 = 1;
pub(crate) const RUNNING: u8 = 2;
pub(crate) const WAITING: u8 = 3;

/// An event held back after a failure, until its retry is due.
pub(crate) struct PendingRetry<P> {
    pub(crate) event: Event<P>,
    /// Handler calls made so far.
    pub(crate) attempts: u32,
    /// When to try again, in engine ticks.
    pub(crate) due: u64,
}

/// What only the shard's current runner touches.
pub(crate) struct ShardCore<H: Handler> {
    pub(crate) table: EntityTable<H::State>,
    /// An event waiting for its retry. While it waits, the shard takes no other event, so the
    /// stream's later events stay behind it (R-CONC-3).
    pub(crate) retry: Option<PendingRetry<H::Payload>>,
    /// xorshift state for backoff jitter.
    pub(crate) rng: u64,
}

/// One shard.
pub(crate) struct Shard<H: Handler> {
    pub(crate) ring: Ring<Event<H::Payload>>,
    /// `IDLE`, `SCHEDULED`, `RUNNING` or `WAITING`: see the module docs.
    state: CachePadded<AtomicU8>,
    /// Submits to this shard that were handed back.
    pub(crate) rejected: SharedCounter,
    /// Producers parked in `submit_timeout`.
    pub(crate) waiters: Waiters,
    pub(crate) stats: ShardStats,
    /// When the oldest entity becomes idle-expired, in ticks; `u64::MAX` when the table is
    /// empty. Written by the runner, read by the supervisor to schedule quiet shards for reaping.
    pub(crate) next_expiry: AtomicU64,
    core: UnsafeCell<ShardCore<H>>,
}

// SAFETY: `core` is only accessed by the shard's runner, and the state machine above makes the
// runner unique and orders successive runners; everything else is atomic or `Sync`. The core
// holds `H::State` and events, both `Send`.
unsafe impl<H: Handler> Sync for Shard<H> {}

impl<H: Handler> Shard<H> {
    /// A shard with a ring of `capacity`; `seed` keys its table's index and its jitter.
    pub(crate) fn new(capacity: usize, seed: u64) -> Shard<H> {
        Shard {
            ring: Ring::new(capacity),
            state: CachePadded::new(AtomicU8::new(IDLE)),
            rejected: SharedCounter::default(),
            waiters: Waiters::default(),
            stats: ShardStats::default(),
            next_expiry: AtomicU64::new(u64::MAX),
            core: UnsafeCell::new(ShardCore {
                table: EntityTable::new(seed.rotate_left(17) ^ 0x243f_6a88_85a3_08d3),
                retry: None,
                rng: seed | 1,
            }),
        }
    }

    /// Producer side, after a successful push: whether this call moved the shard from `IDLE` to
    /// `SCHEDULED` (the caller must then queue it).
    #[inline]
    pub(crate) fn schedule_after_push(&self) -> bool {
        fence(Ordering::SeqCst);
        self.state.load(Ordering::Relaxed) == IDLE && self.try_transition(IDLE, SCHEDULED)
    }

    /// CAS `from -> to`; whether it happened.
    #[inline]
    pub(crate) fn try_transition(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// The current state (a snapshot).
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// The runner that popped the shard from the run queue takes it.
    #[inline]
    pub(crate) fn begin_run(&self) {
        debug_assert_eq!(self.state.load(Ordering::Relaxed), SCHEDULED);
        self.state.store(RUNNING, Ordering::Relaxed);
    }

    /// The runner found the ring empty: go idle, then re-check. Returns `true` if an event
    /// arrived meanwhile and this runner re-took the shard (state `SCHEDULED`, not queued).
    #[inline]
    pub(crate) fn go_idle(&self) -> bool {
        self.state.store(IDLE, Ordering::Release);
        fence(Ordering::SeqCst);
        self.ring.has_ready() && self.try_transition(IDLE, SCHEDULED)
    }

    /// The runner leaves the shard in `to` (`SCHEDULED` before requeueing, `WAITING`, or `IDLE`
    /// when stopping).
    #[inline]
    pub(crate) fn release_as(&self, to: u8) {
        self.state.store(to, Ordering::Release);
    }

    /// Runs `f` with the shard's core.
    ///
    /// # Safety
    ///
    /// The caller owns the shard's run (state `RUNNING`, taken as the module docs describe) or
    /// every other thread that could run it has been joined.
    #[inline]
    pub(crate) unsafe fn with_core<R>(&self, f: impl FnOnce(&mut ShardCore<H>) -> R) -> R {
        // SAFETY: the caller guarantees exclusive access to the core.
        self.core.with_mut(|core| f(unsafe { &mut *core }))
    }
}
