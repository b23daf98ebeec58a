//! [`Routes`]: route name -> command handler, each route with its own circuit breaker, bulkhead
//! and claim lease ([`RoutePolicy`]); and the router that performs one command's effect.
//!
//! # Performing an effect (`Router::perform`)
//!
//! 1. The route is looked up: none is [`EffectError::Unrouted`] (counted, reported).
//! 2. A completion an earlier try could not store (the store failed after the effect ran) is
//!    stored first; the effect is done. Shutdown stores those still pending once no effect
//!    runs (`Router::flush_pending`).
//! 3. An open breaker ([`CircuitBreaker::rejects_now`]) or a full bulkhead is a wait: nothing
//!    was claimed, no attempt is used.
//! 4. The effect's key is claimed (outbound, and inbound with a key): `Completed` means it ran
//!    already (skipped, counted); `InProgress` is a wait.
//! 5. The handler runs inside the breaker (its `Err` or panic is a failure there and a failed
//!    attempt here); a breaker that turned open meanwhile is a wait. Then the claim is
//!    completed with the outcome, or failed (released) so the next try claims it again.
//!
//! The bulkhead's permit is held from step 3 to the end; the claim is made only while a place
//! is held, so a claim never waits on a place.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::command::{Command, RouteName};
use super::command_handler::{CommandHandler, Effect, ErasedHandler};
use super::effect_error::EffectError;
use super::observer::{Hooks, Observed, ReactorMethod};
use super::stats::IntegrationCounters;
use crate::error_chain::Chain;
use crate::pipeline::{contain, Disposing};
use crate::resilience::{BreakerConfig, BreakerStats, Bulkhead, CallError, CircuitBreaker, Transition, TransitionHook};
use crate::store::{Claim, ClaimToken, EventStore, IdempotencyKey, StoreError};
use crate::sync::{Mutex, Ordering};
use crate::{InvalidStreamId, StreamId};

/// How one route's effects are guarded. `#[non_exhaustive]`: start from
/// [`RoutePolicy::default()`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RoutePolicy {
    /// The route's circuit breaker. Default [`BreakerConfig::default()`] (5 consecutive
    /// failures open it for 30 s). Its transition hook, if any, is called beside the
    /// integration's observer.
    pub breaker: BreakerConfig,
    /// At most this many of the route's effects run at once (a bulkhead); more wait (outbound:
    /// on a timer, using no attempt; inbound: the source blocks). Default 16; at least 1.
    pub max_concurrent: usize,
    /// How long a claim of an effect's key is held while the effect runs. A try that crashed
    /// holds its key this long; an effect that outlasts it may be run again by another
    /// claimant, so make it longer than the handler's own timeouts. Default 60 s.
    pub claim_ttl: Duration,
}

impl Default for RoutePolicy {
    fn default() -> RoutePolicy {
        RoutePolicy {
            breaker: BreakerConfig::default(),
            max_concurrent: 16,
            claim_ttl: Duration::from_secs(60),
        }
    }
}

impl RoutePolicy {
    /// With `breaker` as the route's breaker.
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> RoutePolicy {
        self.breaker = breaker;
        self
    }

    /// With at most `n` effects of the route at once.
    pub fn with_max_concurrent(mut self, n: usize) -> RoutePolicy {
        self.max_concurrent = n;
        self
    }

    /// With claims of the route's effect keys held for `ttl`.
    pub fn with_claim_ttl(mut self, ttl: Duration) -> RoutePolicy {
        self.claim_ttl = ttl;
        self
    }
}

/// Why a route could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// The name breaks a rule of [`RouteName`].
    InvalidName {
        /// The name given.
        name: String,
        /// The rule it breaks.
        problem: InvalidStreamId,
    },
    /// A handler is registered for this route already.
    Duplicate(RouteName),
    /// `max_concurrent` is 0: no effect of the route could ever run.
    ZeroConcurrency(RouteName),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The rule it breaks is the source.
            RouteError::InvalidName { name, .. } => write!(f, "invalid route name {name:?}"),
            RouteError::Duplicate(route) => write!(f, "route {route} has a handler already"),
            RouteError::ZeroConcurrency(route) => write!(f, "route {route}: max_concurrent is 0"),
        }
    }
}

impl std::error::Error for RouteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RouteError::InvalidName { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// The command handlers of an integration, by route.
///
/// ```
/// use humpyard::integration::{Command, Effect, RoutePolicy, Routes};
/// use serde_json::{json, Value};
///
/// let routes = Routes::new()
///     .route("inventory.reserve", |_: &Command, _: &Effect<'_>| Ok::<Value, String>(json!("ok")))?
///     .route_with(
///         "mail.send",
///         |_: &Command, _: &Effect<'_>| Ok::<Value, String>(json!(null)),
///         RoutePolicy::default().with_max_concurrent(2),
///     )?;
/// assert_eq!(routes.len(), 2);
/// # Ok::<(), humpyard::integration::RouteError>(())
/// ```
#[derive(Default)]
pub struct Routes {
    entries: Vec<Entry>,
}

/// A route as added. Each user value (the handler, the breaker's transition hook) is held
/// apart, so each `Drop` is contained on its own (one panicking while another unwinds would
/// abort).
struct Entry {
    name: RouteName,
    handler: Disposing<Box<dyn ErasedHandler>>,
    /// The policy, its breaker's hook taken out into `own_hook`.
    policy: RoutePolicy,
    own_hook: Option<Disposing<TransitionHook>>,
}

impl Routes {
    /// No routes.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Adds `handler` for `name` with the default [`RoutePolicy`].
    ///
    /// # Errors
    ///
    /// [`RouteError`] says which rule broke; `self` is dropped with it.
    pub fn route(self, name: &str, handler: impl CommandHandler) -> Result<Routes, RouteError> {
        self.route_with(name, handler, RoutePolicy::default())
    }

    /// Adds `handler` for `name` with `policy`.
    ///
    /// # Errors
    ///
    /// [`RouteError`] says which rule broke.
    pub fn route_with(
        mut self,
        name: &str,
        handler: impl CommandHandler,
        policy: RoutePolicy,
    ) -> Result<Routes, RouteError> {
        let route = RouteName::new(name).map_err(|problem| RouteError::InvalidName {
            name: name.to_owned(),
            problem,
        })?;
        if self.entries.iter().any(|entry| entry.name == route) {
            return Err(RouteError::Duplicate(route));
        }
        if policy.max_concurrent == 0 {
            return Err(RouteError::ZeroConcurrency(route));
        }
        let mut policy = policy;
        let own_hook = policy.breaker.on_transition.take().map(Disposing::new);
        self.entries.push(Entry {
            name: route,
            handler: Disposing::new(Box::new(handler)),
            policy,
            own_hook,
        });
        Ok(self)
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|entry| &entry.name))
            .finish()
    }
}

/// One route's counters and breaker, as [`Integration::route_stats`](super::Integration::route_stats)
/// reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteStats {
    /// The breaker's state and counters.
    pub breaker: BreakerStats,
    /// Places of the bulkhead free now.
    pub available: usize,
}

/// A route, ready: its handler, breaker, bulkhead and lease.
struct Route {
    handler: Disposing<Box<dyn ErasedHandler>>,
    breaker: CircuitBreaker,
    bulkhead: Bulkhead,
    claim_ttl: Duration,
}

/// A completion the store failed to take: the effect ran; its outcome waits to be stored.
struct PendingCompletion {
    route: RouteName,
    token: ClaimToken,
    outcome: serde_json::Value,
}

/// What [`Router::perform`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Performed {
    /// The handler ran and its outcome is stored.
    Ran,
    /// The effect's key was completed already (by an earlier try, run or process).
    AlreadyDone,
}

/// The routes, ready, and what performing a command needs. Shared by the outbound handler and
/// the sources.
pub(crate) struct Router {
    routes: HashMap<RouteName, Route>,
    store: Arc<dyn EventStore>,
    pub(crate) hooks: Arc<Hooks>,
    pub(crate) counters: Arc<IntegrationCounters>,
    pending: Mutex<HashMap<IdempotencyKey, PendingCompletion>>,
}

impl Router {
    pub(crate) fn new(
        routes: Routes,
        store: Arc<dyn EventStore>,
        hooks: Arc<Hooks>,
        counters: Arc<IntegrationCounters>,
    ) -> Router {
        let routes = routes
            .entries
            .into_iter()
            .map(|entry| {
                let Entry {
                    name,
                    handler,
                    policy,
                    own_hook: own,
                } = entry;
                let mut breaker = policy.breaker;
                let (hooks, route) = (Arc::clone(&hooks), name.clone());
                breaker.on_transition = Some(TransitionHook::new(move |t: Transition| {
                    if let Some(own) = &own {
                        // The user's own hook, contained: a panic there does not keep the
                        // observer from hearing of the transition.
                        if let Err(message) = contain(|| own.call(t)) {
                            hooks.hook_panicked("a breaker's on_transition", &message);
                        }
                    }
                    log::info!(
                        route = route.as_str(), from:? = t.from, to:? = t.to;
                        "humpyard integration: route {:?}'s circuit breaker went from {:?} to {:?}",
                        route.as_str(), t.from, t.to
                    );
                    hooks.emit(&Observed::BreakerTransition {
                        route: &route,
                        from: t.from,
                        to: t.to,
                    });
                }));
                let ready = Route {
                    handler,
                    breaker: CircuitBreaker::new(breaker),
                    bulkhead: Bulkhead::new(policy.max_concurrent),
                    claim_ttl: policy.claim_ttl,
                };
                (name, ready)
            })
            .collect();
        Router {
            routes,
            store,
            hooks,
            counters,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `route` has a handler.
    pub(crate) fn has_route(&self, route: &RouteName) -> bool {
        self.routes.contains_key(route)
    }

    /// The route's stats, if it exists.
    pub(crate) fn route_stats(&self, route: &RouteName) -> Option<RouteStats> {
        self.routes.get(route).map(|r| RouteStats {
            breaker: r.breaker.stats(),
            available: r.bulkhead.available(),
        })
    }

    /// Every route's stats now, sorted by name (for the metrics export).
    #[cfg(feature = "metrics")]
    pub(crate) fn all_route_stats(&self) -> Vec<(RouteName, RouteStats)> {
        let mut all: Vec<_> = self
            .routes
            .iter()
            .map(|(name, r)| {
                let stats = RouteStats {
                    breaker: r.breaker.stats(),
                    available: r.bulkhead.available(),
                };
                (name.clone(), stats)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Counts and reports a command with no route.
    pub(crate) fn unrouted(&self, command: &Command, position: Option<u64>) -> EffectError {
        self.counters.unrouted.fetch_add(1, Ordering::Relaxed);
        let from = position.map_or(String::new(), |p| format!(" (from the event at position {p})"));
        log::error!(
            route = command.route().as_str(), position:? = position;
            "humpyard integration: a command for route {:?}{from} has no command handler",
            command.route().as_str()
        );
        self.hooks.emit(&Observed::Unrouted { command, position });
        EffectError::Unrouted {
            command: command.clone(),
        }
    }

    /// Counts and reports a reaction that panicked (a failed attempt).
    pub(crate) fn reaction_panicked(&self, position: u64, message: String) -> EffectError {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        log::error!(
            position = position, message:? = message;
            "humpyard integration: the reaction to the event at position {position} panicked: {message:?}"
        );
        let error = EffectError::ReactionPanicked { position, message };
        self.hooks.emit(&Observed::EffectFailed { error: &error });
        error
    }

    /// Logs and reports a [`Reactor`](super::Reactor) method's panic (the pipeline counts
    /// it and handles it).
    pub(crate) fn reactor_method_panicked(&self, method: ReactorMethod, stream: Option<&StreamId>, message: &str) {
        let on = stream.map_or(String::new(), |s| format!(" for stream {:?}", s.as_str()));
        log::error!(
            method:? = method, stream:? = stream.map(StreamId::as_str), message:? = message;
            "humpyard integration: the reactor's {method:?}{on} panicked: {message:?}"
        );
        self.hooks.emit(&Observed::ReactorPanicked {
            method,
            stream,
            message,
        });
    }

    /// Performs `command`'s effect (see the module docs). `claim`: whether `key` is claimed
    /// (else the effect runs unguarded by the store, with `key` and `attempt` handed to the
    /// handler; a claimed key's attempt is the claim's). `wait_for_place`: how long to wait for
    /// a bulkhead place (zero: not at all).
    pub(crate) fn perform(
        &self,
        command: &Command,
        key: &IdempotencyKey,
        claim: bool,
        position: Option<u64>,
        wait_for_place: Duration,
        attempt: u32,
    ) -> Result<Performed, EffectError> {
        let Some(route) = self.routes.get(command.route()) else {
            return Err(self.unrouted(command, position));
        };
        let name = command.route();
        if self.finish_pending(name, key)? {
            return Ok(Performed::AlreadyDone);
        }
        if route.breaker.rejects_now() {
            return Err(self.waiting(EffectError::BreakerOpen { route: name.clone() }));
        }
        let permit = if wait_for_place.is_zero() {
            route.bulkhead.try_acquire()
        } else {
            route.bulkhead.acquire_timeout(wait_for_place)
        };
        let Some(_permit) = permit else {
            return Err(self.waiting(EffectError::BulkheadFull { route: name.clone() }));
        };
        let token = if claim {
            match self.store.claim(key, route.claim_ttl) {
                Ok(Claim::Claimed(token)) => Some(token),
                Ok(Claim::InProgress { expires_in }) => {
                    return Err(self.waiting(EffectError::ClaimedElsewhere {
                        route: name.clone(),
                        key: key.clone(),
                        expires_in,
                    }))
                }
                Ok(Claim::Completed(_)) => {
                    self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    return Ok(Performed::AlreadyDone);
                }
                Err(source) => return Err(self.store_failed(name, source)),
            }
        } else {
            None
        };
        let effect = Effect {
            route: name,
            key,
            attempt: token.as_ref().map_or(attempt, ClaimToken::attempt),
            position,
            store: &*self.store,
            appended: std::cell::Cell::new(0),
        };
        // The handler's Err and its panic are both failures to the breaker.
        let outcome = route
            .breaker
            .call(|| match contain(|| route.handler.handle(command, &effect)) {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(source)) => Err(EffectError::Failed {
                    route: name.clone(),
                    key: key.clone(),
                    source,
                }),
                Err(message) => Err(EffectError::Panicked {
                    route: name.clone(),
                    key: key.clone(),
                    message,
                }),
            });
        match outcome {
            Ok(outcome) => {
                self.counters.effects.fetch_add(1, Ordering::Relaxed);
                if let Some(token) = token {
                    self.complete(name, token, outcome)?;
                }
                Ok(Performed::Ran)
            }
            Err(CallError::Open) => {
                self.release(name, token);
                Err(self.waiting(EffectError::BreakerOpen { route: name.clone() }))
            }
            Err(CallError::Failed(error)) => {
                self.release(name, token);
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                // The error holds the handler's, whose Display is user code: contained.
                let text = contain(|| Chain(&error).to_string())
                    .unwrap_or_else(|m| format!("the error's Display panicked: {m}"));
                log::warn!(
                    route = name.as_str(), key = key.as_str();
                    "humpyard integration: route {:?}: effect {:?} failed: {text:?}",
                    name.as_str(), key.as_str()
                );
                self.hooks.emit(&Observed::EffectFailed { error: &error });
                Err(error)
            }
        }
    }

    /// Stores a completion an earlier try could not: `Ok(true)` once it is stored (or was
    /// lost to another claimant), `Ok(false)` if none was pending.
    fn finish_pending(&self, route: &RouteName, key: &IdempotencyKey) -> Result<bool, EffectError> {
        let Some(pending) = self.pending.lock().remove(key) else {
            return Ok(false);
        };
        self.complete(route, pending.token, pending.outcome)?;
        Ok(true)
    }

    /// Completes `token` with `outcome`; a store error keeps it pending (the effect ran: it must
    /// not be claimed and run again) and is a wait.
    fn complete(&self, route: &RouteName, token: ClaimToken, outcome: serde_json::Value) -> Result<(), EffectError> {
        let outcome = if crate::store::json_is_storable(&outcome) {
            outcome
        } else {
            log::warn!(
                route = route.as_str(), key = token.key().as_str();
                "humpyard integration: route {:?}: the outcome of effect {:?} holds a NUL character; stored as null",
                route.as_str(), token.key().as_str()
            );
            serde_json::Value::Null
        };
        match self.store.complete(&token, outcome.clone()) {
            Ok(()) => Ok(()),
            Err(StoreError::ClaimLost { .. }) => {
                // The claim expired and another claimant took the key while the effect ran:
                // the claim lease is shorter than the effect took.
                self.counters.claims_lost.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    route = route.as_str(), key = token.key().as_str();
                    "humpyard integration: route {:?}: the claim on effect {:?} was lost while it ran (claim_ttl too short?)",
                    route.as_str(), token.key().as_str()
                );
                Ok(())
            }
            Err(source) => {
                let key = token.key().clone();
                let pending = PendingCompletion {
                    route: route.clone(),
                    token,
                    outcome,
                };
                self.pending.lock().insert(key, pending);
                Err(self.store_failed(route, source))
            }
        }
    }

    /// Whether `key`'s effect ran and its completion waits to be stored.
    pub(crate) fn is_pending(&self, key: &IdempotencyKey) -> bool {
        self.pending.lock().contains_key(key)
    }

    /// Stores the completions still pending (the store refused them after their effect ran),
    /// trying again until `until` (`None`: until stored). Called by shutdown once the sources
    /// and the pipeline have stopped; safe beside a worker or source still performing (each
    /// key is taken by one party). Returns the keys whose completion is still not stored; they
    /// stay pending (a later try, or a later flush, stores them). Their claims expire after
    /// the route's `claim_ttl`, and a replay of them after that would run their effects again.
    pub(crate) fn flush_pending(&self, until: Option<Instant>) -> Vec<IdempotencyKey> {
        let mut pause = Duration::from_millis(10);
        loop {
            let pending: Vec<_> = self.pending.lock().drain().collect();
            let mut left = Vec::new();
            for (key, p) in pending {
                match self.store.complete(&p.token, p.outcome.clone()) {
                    Ok(()) => {}
                    Err(StoreError::ClaimLost { .. }) => {
                        self.counters.claims_lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                        self.hooks.emit(&Observed::StoreError { error: &error });
                        left.push((key, p));
                    }
                }
            }
            let out_of_time = until.is_some_and(|until| Instant::now() + pause > until);
            if left.is_empty() || out_of_time {
                let keys = left
                    .iter()
                    .map(|(key, p)| {
                        log::error!(
                            route = p.route.as_str(), key = key.as_str();
                            "humpyard integration: route {:?}: effect {:?} ran but the store never took its completion by the shutdown's deadline; a replay after its claim expires would run it again",
                            p.route.as_str(), key.as_str()
                        );
                        key.clone()
                    })
                    .collect();
                // Still pending: a source's late `send` sees the effect happened.
                self.pending.lock().extend(left);
                return keys;
            }
            self.pending.lock().extend(left);
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Releases a claim whose effect did not happen. A store error is logged: the claim then
    /// expires by its lease.
    fn release(&self, route: &RouteName, token: Option<ClaimToken>) {
        let Some(token) = token else { return };
        if let Err(error) = self.store.fail(&token) {
            let text = Chain(&error).to_string();
            log::warn!(
                route = route.as_str(), key = token.key().as_str(), error:? = text;
                "humpyard integration: route {:?}: releasing the claim on effect {:?} failed ({text:?}); it expires by its lease",
                route.as_str(), token.key().as_str()
            );
            self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
            self.hooks.emit(&Observed::StoreError { error: &error });
        }
    }

    fn waiting(&self, error: EffectError) -> EffectError {
        self.counters.waits.fetch_add(1, Ordering::Relaxed);
        self.hooks.emit(&Observed::EffectWaiting { error: &error });
        error
    }

    fn store_failed(&self, route: &RouteName, source: StoreError) -> EffectError {
        self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
        let text = Chain(&source).to_string();
        log::warn!(
            route = route.as_str(), error:? = text;
            "humpyard integration: route {:?}: the store failed ({text:?}); the effect waits",
            route.as_str()
        );
        self.hooks.emit(&Observed::StoreError { error: &source });
        self.waiting(EffectError::Store {
            route: route.clone(),
            source,
        })
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
