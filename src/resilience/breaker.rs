//! [`CircuitBreaker`]: closed, open and half-open in one atomic word.
//!
//! # The word
//!
//! `state` (2 bits) | consecutive failures (22 bits) | 40 bits: while open, the end of the open
//! period (milliseconds since the breaker was made, read through the crate's clock,
//! `sync::time`, rounded so that it never ends early); while closed, the closed period's
//! number (one more at every close). Every transition is one compare-and-swap of the whole
//! word, so no caller ever sees a state with another state's count or deadline.
//!
//! # Transitions, and who makes each
//!
//! - Closed → Open: the caller whose failure makes the count reach the threshold (its CAS from
//!   the count before). A call remembers the closed period that let it in, and its failure or
//!   success counts only in that period: the late answer of a call that began before the
//!   breaker opened changes nothing, whether the breaker is still open or has closed again
//!   since (a slow call that fails after a successful probe does not reopen it).
//! - Open → HalfOpen: the one caller whose CAS wins once the open period has passed; it runs
//!   its `f` as the probe. Every other caller, then and until the probe ends, gets
//!   [`CallError::Open`] without running `f`.
//! - HalfOpen → Closed (the probe's `Ok`) or → Open again (its `Err`, or its panic, seen by a
//!   guard during the unwind): only the probe's caller leaves half-open, so the breaker is never
//!   stuck there.
//!
//! Orderings: the word is read with `Acquire` and swapped with `AcqRel`, so a caller that sees
//! a transition sees what its maker did before it. The counters beside the word are statistics
//! (`Relaxed`).
//!
//! The transition hook runs on the thread that made the transition, after its CAS, outside any
//! lock; its panics are caught and counted. Two transitions made by different threads may reach
//! the hook out of order (each carries its `from` and `to`).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::engine::panic_message;
use crate::sync::time::Instant;
use crate::sync::{AtomicU64, Ordering};

/// How a [`CircuitBreaker`] behaves. `#[non_exhaustive]`: build it from
/// [`BreakerConfig::default()`] and set the fields you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures (`Err`s or panics of `f`) that open a closed breaker. Default 5.
    /// 0 is taken as 1; values above [`BreakerConfig::MAX_FAILURE_THRESHOLD`] as that.
    pub failure_threshold: u32,
    /// How long an open breaker rejects calls before it lets one probe through. Default 30 s;
    /// kept to the millisecond, rounded up (a longer period than about 34 years is forever).
    pub open_for: Duration,
    /// Called with every transition, on the thread that made it. Default none.
    pub on_transition: Option<TransitionHook>,
}

impl BreakerConfig {
    /// The largest failure threshold the breaker's word can count to: 4 194 303.
    pub const MAX_FAILURE_THRESHOLD: u32 = MAX_FAILURES as u32;
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            on_transition: None,
        }
    }
}

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls run; consecutive failures are counted.
    Closed,
    /// Calls are rejected until the open period has passed.
    Open,
    /// One call, the probe, is running; the others are rejected.
    HalfOpen,
}

/// What a [`CircuitBreaker::call`] returns when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError<E> {
    /// The breaker is open (or half-open with its probe running): `f` did not run.
    Open,
    /// `f` ran and returned this error.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Open => f.write_str("the circuit breaker is open: the call was not made"),
            // Transparent: `f`'s own error speaks, with its own source (an `E` that is only
            // `Display` has no chain to carry it).
            CallError::Failed(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Open => None,
            CallError::Failed(e) => e.source(),
        }
    }
}

/// One change of a breaker's state, as its hook sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
}

/// A breaker's transition hook: a function of [`Transition`], shared (cloning a config clones
/// the `Arc`, not the function).
#[derive(Clone)]
pub struct TransitionHook(Arc<dyn Fn(Transition) + Send + Sync>);

impl TransitionHook {
    /// A hook calling `f` with every transition.
    pub fn new(f: impl Fn(Transition) + Send + Sync + 'static) -> TransitionHook {
        TransitionHook(Arc::new(f))
    }

    /// Calls the hook (not contained: the caller contains it).
    pub(crate) fn call(&self, transition: Transition) {
        (self.0)(transition);
    }
}

impl fmt::Debug for TransitionHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransitionHook(..)")
    }
}

/// A breaker's counters since it was made, and its state, from [`CircuitBreaker::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The state now.
    pub state: BreakerState,
    /// Consecutive failures counted while closed (0 when open or half-open after a probe).
    pub consecutive_failures: u32,
    /// Transitions to open (from closed, or from a failed probe).
    pub opened: u64,
    /// Probes started (transitions to half-open).
    pub probes: u64,
    /// Transitions to closed (successful probes).
    pub closed: u64,
    /// Calls rejected without running `f`.
    pub rejected: u64,
    /// Calls of the transition hook that panicked (each caught).
    pub hook_panics: u64,
}

/// A circuit breaker: after `failure_threshold` consecutive failures it rejects calls for
/// `open_for`, then lets exactly one probe through, whose outcome closes it or opens it again.
///
/// `Send + Sync`; share it (an `Arc`, or a field of a shared value) among the callers of one
/// dependency. It has no thread of its own: time is read when a call comes. See the module
/// source for the protocol.
pub struct CircuitBreaker {
    /// Read by every call: on a line of its own, apart from the counters.
    word: CachePadded<AtomicU64>,
    /// The zero of the word's deadlines.
    epoch: Instant,
    threshold: u64,
    open_for_ms: u64,
    hook: Option<TransitionHook>,
    counters: CachePadded<Counters>,
}

/// Statistics (`Relaxed`), written on transitions and rejections.
#[derive(Debug, Default)]
struct Counters {
    opened: AtomicU64,
    probes: AtomicU64,
    /// Also the source of the closed periods' numbers.
    closed: AtomicU64,
    rejected: AtomicU64,
    hook_panics: AtomicU64,
}

const STATE_BITS: u32 = 2;
const FAILURE_BITS: u32 = 22;
const MAX_FAILURES: u64 = (1 << FAILURE_BITS) - 1;
const UNTIL_SHIFT: u32 = STATE_BITS + FAILURE_BITS;
const MAX_UNTIL: u64 = (1 << (64 - UNTIL_SHIFT)) - 1;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

fn pack(state: u64, failures: u64, until_ms: u64) -> u64 {
    state | failures << STATE_BITS | until_ms << UNTIL_SHIFT
}

fn state_of(word: u64) -> u64 {
    word & ((1 << STATE_BITS) - 1)
}

fn failures_of(word: u64) -> u64 {
    (word >> STATE_BITS) & MAX_FAILURES
}

fn until_of(word: u64) -> u64 {
    word >> UNTIL_SHIFT
}

/// The closed period's number, in a closed word (the same bits as an open word's deadline).
fn period_of(word: u64) -> u64 {
    word >> UNTIL_SHIFT
}

fn public_state(state: u64) -> BreakerState {
    match state {
        CLOSED => BreakerState::Closed,
        OPEN => BreakerState::Open,
        _ => BreakerState::HalfOpen,
    }
}

/// A call's part: an ordinary call made while closed, or the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Let in during the closed period with this number.
    Member(u64),
    Probe,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> CircuitBreaker {
        let open_for_ms = u64::try_from(config.open_for.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        CircuitBreaker {
            word: CachePadded::new(AtomicU64::new(pack(CLOSED, 0, 0))),
            epoch: Instant::now(),
            threshold: u64::from(config.failure_threshold).clamp(1, MAX_FAILURES),
            open_for_ms,
            hook: config.on_transition,
            counters: CachePadded::new(Counters::default()),
        }
    }

    /// Runs `f` if the breaker lets it (closed, or as the one probe once the open period has
    /// passed) and counts its outcome; otherwise returns [`CallError::Open`] at once.
    ///
    /// A panic of `f` counts as a failure and propagates to the caller.
    pub fn call<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>> {
        let role = self.admit()?;
        let mut outcome = Outcome {
            breaker: self,
            role,
            reported: false,
        };
        let result = f();
        outcome.report(result.is_ok());
        result.map_err(CallError::Failed)
    }

    /// The state now (it may change the next moment). An open breaker whose period has passed
    /// reads `Open` until a call probes it.
    pub fn state(&self) -> BreakerState {
        public_state(state_of(self.word.load(Ordering::Acquire)))
    }

    /// Whether a call made now would be rejected without running `f`: open within its period,
    /// or half-open with its probe running. A hint for a caller with work to do before the call
    /// (claiming a key, say): it may change the next moment, and [`call`](Self::call) decides.
    pub fn rejects_now(&self) -> bool {
        let word = self.word.load(Ordering::Acquire);
        match state_of(word) {
            CLOSED => false,
            OPEN => self.now_ms() < until_of(word),
            _ => true,
        }
    }

    /// The counters and the state.
    pub fn stats(&self) -> BreakerStats {
        let word = self.word.load(Ordering::Acquire);
        BreakerStats {
            state: public_state(state_of(word)),
            consecutive_failures: failures_of(word) as u32,
            opened: self.counters.opened.load(Ordering::Relaxed),
            probes: self.counters.probes.load(Ordering::Relaxed),
            closed: self.counters.closed.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
            hook_panics: self.counters.hook_panics.load(Ordering::Relaxed),
        }
    }

    /// Lets a call in (as a member while closed, as the probe when the open period has passed)
    /// or rejects it.
    fn admit<E>(&self) -> Result<Role, CallError<E>> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            match state_of(word) {
                CLOSED => return Ok(Role::Member(period_of(word))),
                OPEN if self.now_ms() >= until_of(word) => {
                    let probing = pack(HALF_OPEN, 0, 0);
                    match self
                        .word
                        .compare_exchange(word, probing, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => {
                            self.counters.probes.fetch_add(1, Ordering::Relaxed);
                            self.report(OPEN, HALF_OPEN);
                            return Ok(Role::Probe);
                        }
                        Err(now) => word = now,
                    }
                }
                _ => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(CallError::Open);
                }
            }
        }
    }

    /// Counts a call's success.
    fn succeeded(&self, role: Role) {
        match role {
            Role::Probe => {
                // Only the probe leaves half-open: nobody else writes the word meanwhile. The
                // new closed period's number: one more than the closes before it.
                let period = (self.counters.closed.fetch_add(1, Ordering::Relaxed) + 1) & MAX_UNTIL;
                self.word.store(pack(CLOSED, 0, period), Ordering::Release);
                self.report(HALF_OPEN, CLOSED);
            }
            Role::Member(period) => {
                let mut word = self.word.load(Ordering::Acquire);
                // A success resets the count of the closed period that let the call in; in any
                // other state or period it is a late answer, and changes nothing.
                while state_of(word) == CLOSED && period_of(word) == period && failures_of(word) != 0 {
                    match self.word.compare_exchange_weak(
                        word,
                        pack(CLOSED, 0, period),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return,
                        Err(now) => word = now,
                    }
                }
            }
        }
    }

    /// Counts a call's failure (an `Err`, or a panic).
    fn failed(&self, role: Role) {
        match role {
            Role::Probe => {
                self.word.store(pack(OPEN, 0, self.open_until()), Ordering::Release);
                self.counters.opened.fetch_add(1, Ordering::Relaxed);
                self.report(HALF_OPEN, OPEN);
            }
            Role::Member(period) => {
                let mut word = self.word.load(Ordering::Acquire);
                while state_of(word) == CLOSED && period_of(word) == period {
                    let failures = (failures_of(word) + 1).min(MAX_FAILURES);
                    let opens = failures >= self.threshold;
                    let next = if opens {
                        pack(OPEN, 0, self.open_until())
                    } else {
                        pack(CLOSED, failures, period)
                    };
                    match self
                        .word
                        .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => {
                            if opens {
                                self.counters.opened.fetch_add(1, Ordering::Relaxed);
                                self.report(CLOSED, OPEN);
                            }
                            return;
                        }
                        Err(now) => word = now,
                    }
                }
            }
        }
    }

    /// Milliseconds since the breaker was made, on the crate's clock.
    fn now_ms(&self) -> u64 {
        u64::try_from(Instant::now().saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The end of an open period starting now, in the word's units: `now_ms` is rounded
    /// down, so one more millisecond keeps the period from ending early.
    fn open_until(&self) -> u64 {
        self.now_ms()
            .saturating_add(1)
            .saturating_add(self.open_for_ms)
            .min(MAX_UNTIL)
    }

    /// Tells the hook, containing its panics.
    fn report(&self, from: u64, to: u64) {
        let Some(hook) = &self.hook else { return };
        let transition = Transition {
            from: public_state(from),
            to: public_state(to),
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (hook.0)(transition))) {
            self.counters.hook_panics.fetch_add(1, Ordering::Relaxed);
            let message = panic_message(payload);
            log::error!(
                from:? = transition.from, to:? = transition.to, message:? = message;
                "humpyard caught a panic in a circuit breaker's transition hook ({:?} to {:?}): {message:?}",
                transition.from, transition.to
            );
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("stats", &self.stats())
            .field("failure_threshold", &self.threshold)
            .field("open_for_ms", &self.open_for_ms)
            .finish()
    }
}

/// Reports a call's outcome exactly once: `report` on return, a failure if `f` unwinds.
struct Outcome<'a> {
    breaker: &'a CircuitBreaker,
    role: Role,
    reported: bool,
}

impl Outcome<'_> {
    fn report(&mut self, ok: bool) {
        self.reported = true;
        if ok {
            self.breaker.succeeded(self.role);
        } else {
            self.breaker.failed(self.role);
        }
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if !self.reported {
            // `f` panicked: a failure, so a panicking probe reopens the breaker.
            self.breaker.failed(self.role);
        }
    }
}
