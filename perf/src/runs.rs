//! Runs scenarios on systems, interleaved and repeated, and keeps the median of each.
//!
//! For every scenario the keys are drawn once; then each repetition runs every system once,
//! in turn, so that machine noise spreads over all systems alike. A system whose handlers saw
//! a different number of events than were offered fails the run (a peer bug is not a result).

use crate::report::{peak_rss_mb, reset_peak_rss, Row};
use crate::systems::System;
use crate::workload::{Load, Scenario};

/// Runs and prints; returns one row per scenario and system (the median run).
pub fn measure(scenarios: &[Scenario], systems: &[Box<dyn System>], runs: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for scenario in scenarios {
        println!("{scenario}");
        let load = Load::draw(scenario);
        let chosen: Vec<&dyn System> = systems.iter().map(|s| &**s).filter(|s| s.supports(scenario)).collect();
        let mut samples: Vec<Vec<(f64, Option<f64>)>> = vec![Vec::new(); chosen.len()];
        for _ in 0..runs.max(1) {
            for (i, system) in chosen.iter().enumerate() {
                reset_peak_rss();
                let measured = system.run(scenario, &load);
                assert_eq!(
                    measured.handled,
                    load.events(),
                    "{} handled {} of {} events",
                    system.name(),
                    measured.handled,
                    load.events()
                );
                samples[i].push((measured.elapsed.as_secs_f64(), peak_rss_mb()));
            }
        }
        let mut group = Vec::new();
        for (system, mut s) in chosen.iter().zip(samples) {
            s.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (seconds, rss) = s[s.len() / 2];
            let all: Vec<String> = s
                .iter()
                .map(|(t, _)| format!("{:.2}", load.events() as f64 / t / 1e6))
                .collect();
            let row = Row::throughput(&scenario.name, system.name(), load.events(), seconds, rss);
            println!(
                "  {:<16} {:>8.2} M events/s   (runs: {} M/s; peak RSS {:.0} MiB)",
                system.name(),
                row.events_per_sec / 1e6,
                all.join(" / "),
                rss.unwrap_or(f64::NAN)
            );
            group.push(row);
        }
        print_ratios(&group);
        rows.extend(group);
    }
    rows
}

/// Each humpyard variant against the best peer of its kind (`humpyard`, with `StreamId`s,
/// against the pools carrying the same ids, `-str`; `humpyard-int`, with `u64` keys, against
/// the pools routing bare integers) and against every peer; `humpyard` against the ring
/// ceiling, when they ran.
fn print_ratios(group: &[Row]) {
    let is_ours = |r: &&Row| r.system.starts_with("humpyard");
    let peers = || group.iter().filter(|r| !is_ours(r) && r.system != "ring-ceiling");
    for ours in group.iter().filter(is_ours) {
        let string_keyed = ours.system == "humpyard";
        let same_kind = best(peers().filter(|r| r.system.ends_with("-str") == string_keyed));
        let any = best(peers());
        for (what, peer) in [("of its kind", same_kind), ("of any kind", any)] {
            if let Some(peer) = peer {
                println!(
                    "  {} / best peer {what} ({}): {:.2}x",
                    ours.system,
                    peer.system,
                    ours.events_per_sec / peer.events_per_sec
                );
            }
        }
    }
    let ours = group.iter().find(|r| r.system == "humpyard");
    if let (Some(ours), Some(ring)) = (ours, group.iter().find(|r| r.system == "ring-ceiling")) {
        println!(
            "  humpyard / ring ceiling: {:.0}%",
            100.0 * ours.events_per_sec / ring.events_per_sec
        );
    }
}

/// The fastest of `rows`.
fn best<'a>(rows: impl Iterator<Item = &'a Row>) -> Option<&'a Row> {
    rows.max_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec))
}
