//! A shard: one ingress ring, its scheduling state, and the entity table of its streams.
//!
//! # Scheduling state machine
//!
//! | state       | meaning                                            | who leaves it, to what |
//! |-------------|----------------------------------------------------|------------------------|
//! | `Idle`      | not queued, not running                            | a producer ([`Shard::schedule_after_push`]) or the supervisor ([`Shard::schedule_if_idle`]): CAS -> `Scheduled`; shutdown ([`Shard::seize`]): CAS -> `Running` |
//! | `Scheduled` | on the run queue exactly once                      | the worker that pops it ([`Shard::begin_run`]): CAS -> `Running`; shutdown ([`Shard::seize`]) |
//! | `Running`   | one thread holds the [`ShardRun`] token            | that thread, consuming the token: -> `Idle` ([`ShardRun::go_idle`], [`ShardRun::release`]), `Scheduled` ([`ShardRun::requeue`]) or `Waiting` ([`ShardRun::wait`]) |
//! | `Waiting`   | an event waits for its retry's timer               | the timer ([`Shard::schedule_if_waiting`]): CAS -> `Scheduled`; shutdown ([`Shard::seize`]) |
//! | `Closed`    | shutdown collected it; it never runs again         | nobody (terminal) |
//!
//! `Closed` is what shutdown leaves behind ([`ShardRun::close`]): a producer that publishes an
//! event claimed before the ring closed, a timer that fires late, or a worker that pops a stale
//! run-queue entry finds the shard neither `Idle`, `Waiting` nor `Scheduled`, so nobody queues
//! it again (a lane holds each shard at most once, see `scheduler::run_queue`).
//!
//! Every transition into `Running` is a CAS from a state other than `Running`, and only the
//! holder of the token leaves `Running`; so at most one [`ShardRun`] exists per shard at any
//! instant. The token is the only way to the ring's consumer side and to the shard's core (the
//! entity table and the retry slot): holding it is the "I run this shard" obligation, checked
//! once, when it is made. That is the per-stream ordering and the exclusive access to the
//! table (R-CONC-3), and why no thread (shutdown included) can touch a shard that another
//! thread, or the calling thread itself further up its stack, is running.
//!
//! # No lost wake-up
//!
//! Producer: publish the event (stamp store), `fence(SeqCst)`, load the state; if `Idle`, CAS
//! it to `Scheduled` and queue the shard.
//! Runner finding the ring empty: store `Idle`, `fence(SeqCst)`, re-check the ring; if an event
//! is there, CAS `Idle -> Running` and run again.
//! In the total order of the two fences, either the producer's comes first, and the runner's
//! re-check sees the event, or the runner's does, and the producer sees `Idle` (or a later
//! state that some other thread scheduled). Either way the event is never stranded in an idle
//! shard. (`SeqCst` fences rather than `SeqCst` accesses, because loom models the former.)
//!
//! # Orderings of the hand-off
//!
//! A runner's writes to the core reach the next runner through a Release/Acquire chain on the
//! state: every store that leaves `Running` is `Release`, every CAS into `Scheduled` or
//! `Running` is `AcqRel` (the CAS into `Running` acquires directly from the previous runner's
//! release, or through the `Scheduled` CAS that did). The run queue's push/pop is
//! Release/Acquire too, but the token does not depend on it.

use crossbeam_utils::CachePadded;

use super::counters::SharedCounter;
use super::durations::DurationCounts;
use super::entity_table::EntityTable;
use super::metrics::ShardStats;
use super::retry::PendingRetry;
use super::ring::{AllocError, Closed, PushError, Ring};
use crate::handler::EventOf;
use crate::resilience::Backoff;
use crate::sync::{fence, AtomicU64, AtomicU8, Ordering, UnsafeCell};
use crate::waiters::Waiters;
use crate::KeyedHandler;

/// A shard's scheduling state: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ShardState {
    Idle = 0,
    Scheduled = 1,
    Running = 2,
    Waiting = 3,
    Closed = 4,
}

impl ShardState {
    #[inline]
    fn from_u8(value: u8) -> ShardState {
        match value {
            0 => ShardState::Idle,
            1 => ShardState::Scheduled,
            2 => ShardState::Running,
            3 => ShardState::Waiting,
            4 => ShardState::Closed,
            _ => unreachable!("shard state {value}"),
        }
    }
}

/// What only the shard's runner touches (through its [`ShardRun`]).
pub(crate) struct ShardCore<H: KeyedHandler> {
    pub(crate) table: EntityTable<H::Key, H::State>,
    /// An event waiting for its retry. While it waits, the shard takes no other event, so the
    /// stream's later events stay behind it (R-CONC-3).
    pub(crate) retry: Option<PendingRetry<H::Payload, H::Key>>,
    /// The delays before its retries (the engine's `retry_backoff` settings, jittered with a
    /// seed of this shard's).
    pub(crate) backoff: Backoff,
}

/// One shard.
pub(crate) struct Shard<H: KeyedHandler> {
    /// Its place in the engine's shard array (and the run queue's entries).
    index: usize,
    /// The ingress ring. Producers push through [`Shard::push`]; the consumer side is reached
    /// only through a [`ShardRun`].
    ring: Ring<EventOf<H>>,
    /// A [`ShardState`]; its transitions and their orderings are in the module docs.
    state: CachePadded<AtomicU8>,
    /// Submits to this shard that were handed back (any thread, `Relaxed` `fetch_add`).
    rejected: SharedCounter,
    /// Producers parked in `submit_timeout`.
    waiters: Waiters,
    stats: ShardStats,
    /// How long its handler calls took, when the engine times them (`time_handlers`); written
    /// by the runner like `stats`, padded so that shards run by two workers at once share no
    /// line.
    durations: Option<Box<CachePadded<DurationCounts>>>,
    /// When the oldest entity becomes idle-expired, in ticks; `u64::MAX` when the table is
    /// empty. Written by the runner, read by the supervisor to schedule quiet shards for
    /// reaping; `Relaxed`: a stale reading only moves a reap by one supervisor tick.
    next_expiry: AtomicU64,
    core: UnsafeCell<ShardCore<H>>,
}

// SAFETY: `core` is reached only through a `ShardRun`, of which at most one exists at a time
// (see the module docs), and successive holders are ordered by the state's Release/Acquire;
// everything else is atomic or `Sync`. The core holds `H::State` and events, both `Send`.
unsafe impl<H: KeyedHandler> Sync for Shard<H> {}

impl<H: KeyedHandler> Shard<H> {
    /// Shard `index` with a ring of `capacity`; `seed` keys its table's index and its retries'
    /// jitter (`backoff`'s seed is replaced by it); `timed`: whether it keeps handler-call
    /// durations.
    pub(crate) fn new(
        index: usize,
        capacity: usize,
        seed: u64,
        backoff: Backoff,
        timed: bool,
    ) -> Result<Shard<H>, AllocError> {
        Ok(Shard {
            index,
            ring: Ring::try_new(capacity)?,
            state: CachePadded::new(AtomicU8::new(ShardState::Idle as u8)),
            rejected: SharedCounter::default(),
            waiters: Waiters::default(),
            stats: ShardStats::default(),
            durations: timed.then(|| Box::new(CachePadded::new(DurationCounts::new()))),
            next_expiry: AtomicU64::new(u64::MAX),
            core: UnsafeCell::new(ShardCore {
                table: EntityTable::new(seed.rotate_left(17) ^ 0x243f_6a88_85a3_08d3),
                retry: None,
                backoff: backoff.with_seed(seed),
            }),
        })
    }

    /// The shard's index.
    #[inline]
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Producer side: appends `event`, or hands it back at once if the ring is full or closed.
    #[inline]
    pub(crate) fn push(&self, event: EventOf<H>) -> Result<(), PushError<EventOf<H>>> {
        self.ring.push(event)
    }

    /// Pushes as many of `values` as fit with one claim (see [`Ring::push_many`]); the caller
    /// must then fence and schedule the shard ([`Scheduler::after_fenced_push`]).
    ///
    /// [`Scheduler::after_fenced_push`]: super::scheduler::Scheduler::after_fenced_push
    #[inline]
    pub(crate) fn push_many(&self, values: &mut std::vec::IntoIter<EventOf<H>>, limit: usize) -> Result<usize, Closed> {
        self.ring.push_many(values, limit)
    }

    /// Closes the ring: every later push fails with `Closed`; its tail is frozen.
    pub(crate) fn close(&self) {
        self.ring.close();
    }

    /// Events ever accepted (claimed positions).
    #[inline]
    pub(crate) fn accepted(&self) -> u64 {
        self.ring.accepted()
    }

    /// Events accepted and not yet taken (a snapshot).
    #[inline]
    pub(crate) fn queued(&self) -> u64 {
        self.ring.len()
    }

    /// The most events the ring holds.
    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    /// Submits handed back.
    #[inline]
    pub(crate) fn rejected(&self) -> &SharedCounter {
        &self.rejected
    }

    /// Producers waiting for room.
    #[inline]
    pub(crate) fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    /// The runner's counters.
    #[inline]
    pub(crate) fn stats(&self) -> &ShardStats {
        &self.stats
    }

    /// Its handler-call durations, when the engine times them.
    #[inline]
    pub(crate) fn durations(&self) -> Option<&DurationCounts> {
        self.durations.as_deref().map(|padded| &**padded)
    }

    /// When the oldest entity expires (see the field).
    #[inline]
    pub(crate) fn next_expiry(&self) -> u64 {
        self.next_expiry.load(Ordering::Relaxed)
    }

    /// The current state (a snapshot).
    #[inline]
    pub(crate) fn state(&self) -> ShardState {
        ShardState::from_u8(self.state.load(Ordering::Acquire))
    }

    #[inline]
    fn transition(&self, from: ShardState, to: ShardState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Producer side, after a successful push: whether this call moved the shard from `Idle`
    /// to `Scheduled` (the caller must then queue it).
    #[inline]
    pub(crate) fn schedule_after_push(&self) -> bool {
        fence(Ordering::SeqCst);
        self.state.load(Ordering::Relaxed) == ShardState::Idle as u8
            && self.transition(ShardState::Idle, ShardState::Scheduled)
    }

    /// `Idle -> Scheduled` (maintenance: reaping a quiet shard; or a batch's producer, after
    /// its one fence); whether it happened (the caller must then queue it).
    pub(crate) fn schedule_if_idle(&self) -> bool {
        self.state.load(Ordering::Relaxed) == ShardState::Idle as u8
            && self.transition(ShardState::Idle, ShardState::Scheduled)
    }

    /// `Waiting -> Scheduled` (its retry is due); whether it happened (the caller must then
    /// queue it).
    pub(crate) fn schedule_if_waiting(&self) -> bool {
        self.transition(ShardState::Waiting, ShardState::Scheduled)
    }

    /// The worker that popped the shard from the run queue takes its run: `Scheduled ->
    /// Running`. `None` if it is no longer `Scheduled` (shutdown seized it).
    #[inline]
    pub(crate) fn begin_run(&self) -> Option<ShardRun<'_, H>> {
        self.transition(ShardState::Scheduled, ShardState::Running)
            .then_some(ShardRun { shard: self })
    }

    /// Takes the run of a shard nobody runs, whatever its state (`Idle`, `Scheduled` or
    /// `Waiting`), for shutdown's collection. `None` while a thread runs it, or once it is
    /// `Closed`.
    pub(crate) fn seize(&self) -> Option<ShardRun<'_, H>> {
        // Guess `Idle` (a drained shard's state): one CAS in the usual case.
        let mut current = ShardState::Idle as u8;
        loop {
            if current == ShardState::Running as u8 || current == ShardState::Closed as u8 {
                return None;
            }
            match self
                .state
                .compare_exchange(current, ShardState::Running as u8, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(ShardRun { shard: self }),
                Err(now) => current = now,
            }
        }
    }
}

/// The run of one shard: proof that the holder is the shard's only runner (see the module
/// docs), and the only way to the ring's consumer side and to the core. Made by the
/// transitions into `Running`; consumed by the transitions out of it.
#[must_use = "a shard left Running without a transition is stuck"]
pub(crate) struct ShardRun<'a, H: KeyedHandler> {
    shard: &'a Shard<H>,
}

impl<H: KeyedHandler> std::fmt::Debug for ShardRun<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardRun").field("shard", &self.shard.index).finish()
    }
}

/// The ring's consumer side, lent by [`ShardRun::with`].
pub(crate) struct Consumer<'a, E> {
    ring: &'a Ring<E>,
}

impl<E> Consumer<'_, E> {
    /// Takes the oldest published event.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<E> {
        // SAFETY: a `Consumer` exists only inside `ShardRun::with`, so this thread holds the
        // shard's run: the ring's only consumer, ordered after the previous one by the
        // state's Release/Acquire.
        unsafe { self.ring.pop_exclusive() }
    }

    /// Takes the oldest claimed event of the closed ring, waiting for its producer to publish
    /// it; `None` once every accepted event is taken.
    pub(crate) fn pop_claimed(&mut self) -> Option<E> {
        // SAFETY: as in `pop`; the caller (shutdown) closed the ring first.
        unsafe { self.ring.pop_claimed() }
    }
}

impl<'a, H: KeyedHandler> ShardRun<'a, H> {
    /// The shard.
    #[inline]
    pub(crate) fn shard(&self) -> &'a Shard<H> {
        self.shard
    }

    /// Runs `f` with the shard's core and the ring's consumer side.
    #[inline]
    pub(crate) fn with<R>(&mut self, f: impl FnOnce(&mut ShardCore<H>, &mut Consumer<'_, EventOf<H>>) -> R) -> R {
        let shard = self.shard;
        let mut consumer = Consumer { ring: &shard.ring };
        shard.core.with_mut(|core| {
            // SAFETY: this token is the only one for the shard (module docs), and `&mut self`
            // keeps it from lending the core twice.
            f(unsafe { &mut *core }, &mut consumer)
        })
    }

    /// Sets when the oldest entity expires (see [`Shard::next_expiry`]).
    #[inline]
    pub(crate) fn set_next_expiry(&self, tick: u64) {
        self.shard.next_expiry.store(tick, Ordering::Relaxed);
    }

    /// The ring is empty as far as the runner can see: go `Idle`, then re-check. Returns a new
    /// run if an event arrived meanwhile and this thread re-took the shard.
    #[inline]
    pub(crate) fn go_idle(self) -> Option<ShardRun<'a, H>> {
        let shard = self.shard;
        shard.state.store(ShardState::Idle as u8, Ordering::Release);
        fence(Ordering::SeqCst);
        (shard.ring.has_ready() && shard.transition(ShardState::Idle, ShardState::Running))
            .then_some(ShardRun { shard })
    }

    /// Leaves the shard `Scheduled`; returns its index, which the caller must queue.
    #[inline]
    #[must_use = "a Scheduled shard must be queued"]
    pub(crate) fn requeue(self) -> usize {
        self.shard.state.store(ShardState::Scheduled as u8, Ordering::Release);
        self.shard.index
    }

    /// Leaves the shard `Waiting` for its retry; returns its index, for which the caller must
    /// arm a timer.
    #[inline]
    #[must_use = "a Waiting shard needs its timer"]
    pub(crate) fn wait(self) -> usize {
        self.shard.state.store(ShardState::Waiting as u8, Ordering::Release);
        self.shard.index
    }

    /// Leaves the shard `Idle` without the re-check (the engine is stopping).
    #[inline]
    pub(crate) fn release(self) {
        self.shard.state.store(ShardState::Idle as u8, Ordering::Release);
    }

    /// Leaves the shard `Closed` for good (shutdown has collected it).
    pub(crate) fn close(self) {
        self.shard.state.store(ShardState::Closed as u8, Ordering::Release);
    }
}
