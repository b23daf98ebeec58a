//! Model 6: the metrics' accounting identity at quiescence (`engine::metrics`), with the real
//! engine: per-shard single-writer counters published by two workers, read after shutdown.
//!
//! Proves (R-OBS-2, R-LIFE-3): `accepted == processed + dead_lettered + unprocessed` and
//! `rejected` counts every handed-back submit, whichever worker ran which shard.
//! Bound: LOOM_MAX_PREEMPTIONS=3 (215 s on the 2-core machine, 2026-11-23).
#![cfg(humpyard_loom)]

use humpyard::Event;
use humpyard_loom_tests::{engine, id, spawn, FOREVER};

#[test]
fn accounting_identity_holds_at_quiescence() {
    loom::model(|| {
        let engine = engine(2, 2, 1, 1);
        let producer = {
            let engine = engine.clone();
            spawn(move || {
                // One event succeeds, one fails (dead-lettered), on whichever shards they hash to.
                let ok = engine.try_submit(Event::new(id("even"), 0)).is_ok();
                let bad = engine.try_submit(Event::new(id("odd"), 1)).is_ok();
                u64::from(ok) + u64::from(bad)
            })
        };
        let accepted = producer.join().unwrap();
        let report = engine.shutdown(FOREVER);
        let m = engine.metrics();
        assert_eq!(m.accepted, accepted);
        assert_eq!(m.accepted + m.rejected, 2);
        assert_eq!(
            m.accepted,
            m.processed + m.dead_lettered + report.unprocessed.len() as u64
        );
        assert!(report.unprocessed.is_empty());
        assert_eq!((m.queued, m.entities_live, m.awaiting_retry), (0, 0, 0));
    });
}
