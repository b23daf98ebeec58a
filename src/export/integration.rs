//! [`IntegrationExport`]: an integration's [`IntegrationStats`] as `humpyard_integration_*`
//! counters labelled `subscriber`, and each route's breaker and bulkhead as `humpyard_route_*`
//! counters and gauges labelled `subscriber` and `route`.

use std::sync::OnceLock;

use metrics::Label;

use super::{Reading, Registered};
use crate::integration::{IntegrationStats, RouteName, RouteStats};
use crate::resilience::BreakerState;

/// The integration's counters: (name, description, field).
const COUNTERS: [Reading<IntegrationStats>; 12] = [
    (
        "humpyard_integration_effects_total",
        "Command handler calls that returned Ok.",
        |s| s.effects,
    ),
    (
        "humpyard_integration_effects_skipped_total",
        "Effects not run because their key was completed already.",
        |s| s.skipped,
    ),
    (
        "humpyard_integration_effect_failures_total",
        "Command handler calls that failed or panicked, and reactions that panicked.",
        |s| s.failures,
    ),
    (
        "humpyard_integration_effect_waits_total",
        "Effects that waited without using an attempt.",
        |s| s.waits,
    ),
    (
        "humpyard_integration_commands_unrouted_total",
        "Commands with no route.",
        |s| s.unrouted,
    ),
    (
        "humpyard_integration_claims_lost_total",
        "Effects whose claim expired and was taken by another claimant.",
        |s| s.claims_lost,
    ),
    (
        "humpyard_integration_store_errors_total",
        "Store calls of the integration that failed.",
        |s| s.store_errors,
    ),
    (
        "humpyard_integration_inbound_commands_total",
        "Inbound commands whose effect happened (or was done already).",
        |s| s.inbound,
    ),
    (
        "humpyard_integration_inbound_dead_letters_total",
        "Inbound commands handed back to their source.",
        |s| s.inbound_dead_letters,
    ),
    (
        "humpyard_integration_source_restarts_total",
        "Source restarts after an error or a panic.",
        |s| s.source_restarts,
    ),
    (
        "humpyard_integration_observer_panics_total",
        "Observer calls that panicked.",
        |s| s.observer_panics,
    ),
    (
        "humpyard_integration_hook_panics_total",
        "Calls of the user's own hooks that panicked.",
        |s| s.hook_panics,
    ),
];

/// Each route's counters: (name, description, field).
const ROUTE_COUNTERS: [Reading<RouteStats>; 4] = [
    (
        "humpyard_route_breaker_opened_total",
        "Transitions of the route's breaker to open.",
        |r| r.breaker.opened,
    ),
    (
        "humpyard_route_breaker_probes_total",
        "Probes the route's breaker let through.",
        |r| r.breaker.probes,
    ),
    (
        "humpyard_route_breaker_closed_total",
        "Transitions of the route's breaker to closed.",
        |r| r.breaker.closed,
    ),
    (
        "humpyard_route_breaker_rejected_total",
        "Calls the route's breaker rejected.",
        |r| r.breaker.rejected,
    ),
];

/// Each route's gauges: (name, description, value).
const ROUTE_GAUGES: [Reading<RouteStats>; 2] = [
    (
        "humpyard_route_breaker_open",
        "1 while the route's breaker is open or half-open, else 0.",
        |r| u64::from(r.breaker.state != BreakerState::Closed),
    ),
    (
        "humpyard_route_bulkhead_available",
        "Places of the route's bulkhead free now.",
        |r| r.available as u64,
    ),
];

/// Exports one integration's counters and its routes'; called by its engine's supervisor.
#[derive(Debug)]
pub(crate) struct IntegrationExport {
    labels: Vec<Label>,
    handles: OnceLock<Handles>,
}

#[derive(Debug)]
struct Handles {
    own: Registered<IntegrationStats>,
    /// Per route, in the order the routes were given at the first export.
    routes: Vec<Registered<RouteStats>>,
}

impl IntegrationExport {
    /// An export labelled `subscriber = subscriber`.
    pub(crate) fn new(subscriber: &str) -> IntegrationExport {
        IntegrationExport {
            labels: vec![Label::new("subscriber", subscriber.to_owned())],
            handles: OnceLock::new(),
        }
    }

    /// Hands `s` and each route's stats to the recorder as absolutes. `routes` comes in the
    /// same order on every call (the router's routes do not change once started).
    pub(crate) fn export(&self, s: &IntegrationStats, routes: &[(RouteName, RouteStats)]) {
        let handles = self.handles.get_or_init(|| Handles {
            own: Registered::new(&COUNTERS, &[], &self.labels),
            routes: routes
                .iter()
                .map(|(route, _)| {
                    let mut labels = self.labels.clone();
                    labels.push(Label::new("route", route.as_str().to_owned()));
                    Registered::new(&ROUTE_COUNTERS, &ROUTE_GAUGES, &labels)
                })
                .collect(),
        });
        handles.own.export(s);
        for ((_, stats), registered) in routes.iter().zip(&handles.routes) {
            registered.export(stats);
        }
    }
}
