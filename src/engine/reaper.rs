//! Entities leaving: idle reaping, cap eviction, and the one way a state is disposed of.
//!
//! Both run inside a shard's run (the runner calls them with the shard's core), so they cannot
//! race dispatch: whatever they remove is exactly the entity they looked at (R-CONC-2).
//!
//! - **Reaping** ([`reap`]): at the start of each run, up to [`REAP_BUDGET`] entities idle for
//!   `idle_timeout` are removed, oldest first; more are left to the next run, so the cost is
//!   proportional to what expires, never a scan (R-RES-2). The supervisor schedules a quiet
//!   shard whose oldest entity has expired ([`next_expiry`]), so entities are reaped without new
//!   events.
//! - **Eviction** ([`make_room`]): before `init` makes a state, if the engine is at
//!   `max_entities`, this shard's least recently used entity is removed. Shards race on the
//!   shared count, so each may overshoot the cap by one (R-RES-1).
//! - **Disposal** ([`dispose`]): `cleanup` (contained), the live count, and the removal hook
//!   (contained); used for reaping, eviction, a state dropped after a panic, and shutdown.

use super::clock::ticks;
use super::hooks::{PanicSite, Removal};
use super::metrics::Tally;
use super::shard::ShardCore;
use super::shared::Shared;
use crate::KeyedHandler;

/// Idle entities one run reaps at most; more are left to the next run (R-RES-2).
#[cfg(not(humpyard_loom))]
pub(crate) const REAP_BUDGET: usize = 64;
#[cfg(humpyard_loom)]
pub(crate) const REAP_BUDGET: usize = 2;

/// Reaps up to [`REAP_BUDGET`] entities idle for `idle_timeout` at `now`, oldest first;
/// returns whether more are expired.
pub(crate) fn reap<H: KeyedHandler>(shared: &Shared<H>, core: &mut ShardCore<H>, now: u64, tally: &mut Tally) -> bool {
    let idle = ticks(shared.config().idle_timeout);
    let expired = |core: &ShardCore<H>| {
        core.table
            .oldest()
            .filter(|&(_, last)| now.saturating_sub(last) >= idle)
    };
    for _ in 0..REAP_BUDGET {
        let Some((slot, _)) = expired(core) else { return false };
        let (id, state) = core.table.remove(slot);
        tally.reaped += 1;
        dispose(shared, id, state, Removal::Reaped);
    }
    expired(core).is_some()
}

/// Evicts this shard's least recently used entity if the engine is at `max_entities`.
pub(crate) fn make_room<H: KeyedHandler>(shared: &Shared<H>, core: &mut ShardCore<H>, tally: &mut Tally) {
    if shared.live_entities() < shared.config().max_entities {
        return;
    }
    if let Some((slot, _)) = core.table.oldest() {
        let (id, state) = core.table.remove(slot);
        tally.evicted += 1;
        dispose(shared, id, state, Removal::Evicted);
    }
}

/// When the shard's oldest entity becomes idle-expired, in ticks; `u64::MAX` if it has none.
pub(crate) fn next_expiry<H: KeyedHandler>(shared: &Shared<H>, core: &ShardCore<H>) -> u64 {
    let idle = ticks(shared.config().idle_timeout);
    core.table
        .oldest()
        .map_or(u64::MAX, |(_, last)| last.saturating_add(idle))
}

/// Disposes of a state removed from its table: `cleanup` (contained), the live count, and the
/// removal hook (contained).
pub(crate) fn dispose<H: KeyedHandler>(shared: &Shared<H>, id: H::Key, state: H::State, why: Removal) {
    let containment = shared.containment();
    let _ = containment.run(PanicSite::Cleanup, Some(&id), || shared.handler().cleanup(&id, state));
    shared.entity_disposed();
    if let Some(hook) = shared.on_entity_removed() {
        let _ = containment.run(PanicSite::Hook, Some(&id), || hook(&id, why));
    }
}
