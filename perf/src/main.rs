//! `humpyard-perf`: the demo, the load generator and the side-by-side comparison with peers.
//!
//! With no subcommand it runs a ten-second demo on the engine, then a few seconds of the durable
//! path on the embedded store (appends, a pipeline, checkpoints). The subcommands measure:
//! `throughput` (humpyard over a grid of workloads), `compare` (the same workloads on humpyard
//! and on the peers a Rust user would pick instead, in one run), `latency` (open-loop,
//! interleaved with the crossbeam pool) and `entities` (memory per live entity). Each can
//! write its results as JSON (`--json FILE`) and as an SVG chart (`--svg FILE`).

mod args;
mod at_scale;
mod demo;
mod durable_demo;
mod integration;
mod latency;
mod memory;
mod postgres;
mod progress;
mod report;
mod runs;
mod svg;
mod systems;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use args::Flags;
use report::Machine;
use workload::{Cost, Keys, Scenario};

const HELP: &str = "humpyard-perf: the humpyard demo, load generator and peer comparison

USAGE: cargo run --release -p humpyard-perf -- [SUBCOMMAND] [--flag value ...]

(no subcommand)  a 10 s demo on the engine: live rate, then events/s, latency, entities and
                 the accounting line; then the durable path on the embedded InMemoryStore:
                 appenders -> append_many -> Pipeline -> engine, with checkpoints
    --seconds N  --streams N  --producers N  --workers N  --max-entities N
    --durable-seconds 5  --durable-events 1000000  --durable-streams 10000  --appenders 2

throughput       humpyard at saturation over streams x keys x handler cost x producers
    --streams 1,1000,100000,1000000   --keys uniform,zipf   --cost trivial,1us
    --producers 1,<cores>   --workers <cores>   --events N (default: 2000000 trivial,
    400000 costly)   --runs 3   --systems humpyard[,peer...]

compare          the scenarios of the performance bars on humpyard and every peer, one run:
                 uniform-10k, zipf-10k, mixed-cost-10k (2 producers, <cores> workers),
                 uniform-10k-batched (as uniform-10k, humpyard submitting batches of 64 with
                 submit_many_timeout; the peers, which have no batch send, one at a time) and
                 one-to-one-10k (1 producer, 1 worker, against the raw ring ceiling)
    --runs 3   --events N   --scenarios NAME,...   --systems humpyard,humpyard-int,crossbeam-pool,
    flume-pool,mpsc-pool,crossbeam-pool-str,flume-pool-str,mpsc-pool-str,tokio-tasks,ring-ceiling
    (humpyard and the -str pools carry string stream ids; humpyard-int, a KeyedHandler with u64
    keys, and the other pools bare integer keys)

latency          open-loop load at a fixed rate, humpyard and the crossbeam pool interleaved;
                 latency from each event's intended send time to the end of its handler
    --rate 50000   --seconds 10   --streams 10000   --workers <cores>   --slice-ms 500
    --shards N (humpyard's shard count; default: the engine's, 2 a worker)

entities         memory per live entity
    --streams 1000000   --workers <cores>

postgres         the store's batched appends against the raw multi-row insert ceiling of the
                 same server (DATABASE_URL, else a throwaway server)
    --events 200000   --batch 500   --threads 2   --streams 10000   --runs 3
    --rows N: the table grown to N rows in steps (--step N/10), each step followed by a probe
    pair on a settled server (vacuum, checkpoint): --probe 50000 appends to the big table and
    as many to a fresh small one, in --rounds 4 slices a side in ABBA order; then a new
    subscriber's catch-up over all of it beside a raw keyset read of the same rows

integration      the cost of exactly-once effects: the same stored events through the plain
                 durable path and through an integration whose reactions emit one command
                 each (idempotency key claimed and completed per effect), per store
    --stores memory,postgres   --memory-events 200000   --pg-events 20000   --streams 10000
    --runs 3   --effect-workers <cores> (effects that wait on a store or a service scale with
    more workers than cores)

Every subcommand takes --json FILE (machine + results) and --svg FILE (a chart).";

/// Cores of this machine (the default worker count, as in the engine).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help" || a == "help") {
        println!("{HELP}");
        return;
    }
    let command = match argv.first() {
        Some(first) if !first.starts_with("--") => argv.remove(0),
        _ => String::new(),
    };
    let outcome = Flags::parse(argv).and_then(|mut flags| run(&command, &mut flags));
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("humpyard-perf: {e}\n(see --help)");
            std::process::exit(2);
        }
    }
}

/// Runs one subcommand; `Ok(false)` when a check inside it failed.
fn run(command: &str, flags: &mut Flags) -> Result<bool, String> {
    let json = flags.take_opt("json").map(PathBuf::from);
    let svg = flags.take_opt("svg").map(PathBuf::from);
    let (title, rows, chart) = match command {
        "" => {
            let options = demo::DemoOptions::from_flags(flags)?;
            let durable = durable_demo::DurableOptions {
                seconds: flags.take("durable-seconds", 5u64)?,
                max_events: flags.take("durable-events", 1_000_000u64)?.max(1),
                streams: flags.take("durable-streams", 10_000u64)?.max(1),
                appenders: flags.take("appenders", 2u64)?.max(1),
                workers: options.workers(),
            };
            take_leftovers(flags)?;
            let engine_ok = demo::run(&options);
            println!();
            let durable_ok = durable_demo::run(&durable);
            return Ok(engine_ok && durable_ok);
        }
        "throughput" => {
            let (scenarios, systems, runs) = throughput_plan(flags)?;
            take_leftovers(flags)?;
            let rows = runs::measure(&scenarios, &systems, runs);
            let chart = svg::throughput_chart("humpyard throughput", &rows);
            ("throughput", rows, chart)
        }
        "compare" => {
            let (scenarios, systems, runs) = compare_plan(flags)?;
            take_leftovers(flags)?;
            let rows = runs::measure(&scenarios, &systems, runs);
            let chart = svg::throughput_chart("humpyard and its peers", &rows);
            ("compare", rows, chart)
        }
        "latency" => {
            let options = latency::LatencyOptions {
                rate: flags.take("rate", 50_000u64)?.max(1),
                seconds: flags.take("seconds", 10.0f64)?,
                streams: flags.take("streams", 10_000u64)?.max(1),
                workers: flags.take("workers", cores())?.max(1),
                slice: Duration::from_millis(flags.take("slice-ms", 500u64)?.max(10)),
                shards: flags
                    .take_opt("shards")
                    .map(|s| s.parse::<usize>())
                    .transpose()
                    .map_err(|e| format!("--shards: {e}"))?,
            };
            take_leftovers(flags)?;
            let results = latency::run(&options);
            print_latency(&results);
            let series: Vec<_> = results
                .iter()
                .map(|r| (r.row.system.clone(), r.curve.clone()))
                .collect();
            let chart = svg::latency_chart(&format!("open loop, {} events/s", options.rate), &series);
            ("latency", results.into_iter().map(|r| r.row).collect(), chart)
        }
        "entities" => {
            let streams = flags.take("streams", 1_000_000u64)?.max(1);
            let workers = flags.take("workers", cores())?.max(1);
            take_leftovers(flags)?;
            let rows = vec![memory::run(streams, workers)];
            let chart = svg::throughput_chart("entities", &rows);
            ("entities", rows, chart)
        }
        "postgres" if flags.has("rows") => {
            let rows: u64 = flags.take("rows", 0u64)?.max(1);
            let options = at_scale::ScaleOptions {
                rows,
                step: flags.take("step", (rows / 10).max(100_000))?.max(1),
                probe: flags.take("probe", 50_000u64)?.max(1),
                batch: flags.take("batch", 500usize)?.max(1),
                threads: flags.take("threads", 2usize)?.max(1),
                streams: flags.take("streams", 10_000u64)?.max(1),
                rounds: flags.take("rounds", 4u64)?.max(1),
            };
            take_leftovers(flags)?;
            let rows = at_scale::run(&options)?;
            let chart = svg::throughput_chart("PostgreSQL: appends as the table grows", &rows);
            ("postgres at scale", rows, chart)
        }
        "postgres" => {
            let options = postgres::PgOptions {
                events: flags.take("events", 200_000u64)?.max(1),
                batch: flags.take("batch", 500usize)?.max(1),
                threads: flags.take("threads", 2usize)?.max(1),
                streams: flags.take("streams", 10_000u64)?.max(1),
                runs: flags.take("runs", 3usize)?,
            };
            take_leftovers(flags)?;
            let rows = postgres::run(&options)?;
            let chart = svg::throughput_chart("PostgreSQL: batched appends", &rows);
            ("postgres", rows, chart)
        }
        "integration" => {
            let options = integration::IntegrationOptions {
                memory_events: flags.take("memory-events", 200_000u64)?.max(1),
                pg_events: flags.take("pg-events", 20_000u64)?.max(1),
                streams: flags.take("streams", 10_000u64)?.max(1),
                runs: flags.take("runs", 3usize)?,
                stores: flags.take_list("stores", &["memory".to_owned(), "postgres".to_owned()])?,
                effect_workers: flags.take("effect-workers", cores())?.max(1),
            };
            take_leftovers(flags)?;
            let rows = integration::run(&options)?;
            let chart = svg::throughput_chart("exactly-once effects", &rows);
            ("integration", rows, chart)
        }
        other => return Err(format!("unknown subcommand {other:?}")),
    };
    let machine = Machine::here();
    if let Some(path) = json {
        report::write_json(&path, &machine, &rows).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{title}: results written to {}", path.display());
    }
    if let Some(path) = svg {
        std::fs::write(&path, chart).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{title}: chart written to {}", path.display());
    }
    Ok(true)
}

fn take_leftovers(flags: &mut Flags) -> Result<(), String> {
    std::mem::replace(flags, Flags::parse(Vec::new())?).finish()
}

type Plan = (Vec<Scenario>, Vec<Box<dyn systems::System>>, usize);

fn throughput_plan(flags: &mut Flags) -> Result<Plan, String> {
    let streams = flags.take_list("streams", &[1u64, 1_000, 100_000, 1_000_000])?;
    let keys = flags.take_list("keys", &["uniform".to_owned(), "zipf".to_owned()])?;
    let costs = flags.take_list("cost", &["trivial".to_owned(), "1us".to_owned()])?;
    let producers = flags.take_list("producers", &[1usize, cores()])?;
    let workers = flags.take("workers", cores())?.max(1);
    let events: Option<u64> = flags
        .take_opt("events")
        .map(|e| e.parse().map_err(|e| format!("--events: {e}")))
        .transpose()?;
    let runs = flags.take("runs", 3usize)?;
    let systems = systems::by_names(&flags.take("systems", "humpyard".to_owned())?)?;
    let mut scenarios = Vec::new();
    for &streams in &streams {
        for key in &keys {
            let keys = match key.as_str() {
                "uniform" => Keys::Uniform,
                "zipf" => Keys::Zipf(1.1),
                other => return Err(format!("--keys: {other:?} is not uniform or zipf")),
            };
            for cost in &costs {
                let (cost, default_events) = match cost.as_str() {
                    "trivial" => (Cost::Trivial, 2_000_000),
                    "1us" => (Cost::Spin(Duration::from_micros(1)), 400_000),
                    other => return Err(format!("--cost: {other:?} is not trivial or 1us")),
                };
                for &producers in &producers {
                    let producers = producers.max(1);
                    scenarios.push(Scenario {
                        name: format!(
                            "{}-{}-{}-{}p",
                            key,
                            latency::short(streams),
                            if cost == Cost::Trivial { "trivial" } else { "1us" },
                            producers
                        ),
                        streams: streams.max(1),
                        keys,
                        cost,
                        producers,
                        workers,
                        events: events.unwrap_or(default_events),
                        batch: 1,
                    });
                }
            }
        }
    }
    Ok((scenarios, systems, runs))
}

fn compare_plan(flags: &mut Flags) -> Result<Plan, String> {
    let runs = flags.take("runs", 3usize)?;
    let events: Option<u64> = flags
        .take_opt("events")
        .map(|e| e.parse().map_err(|e| format!("--events: {e}")))
        .transpose()?;
    let names = flags.take_list(
        "scenarios",
        &[
            "uniform-10k",
            "zipf-10k",
            "mixed-cost-10k",
            "uniform-10k-batched",
            "one-to-one-10k",
        ]
        .map(str::to_owned),
    )?;
    let systems = match flags.take_opt("systems") {
        Some(names) => systems::by_names(&names)?,
        None => systems::all(),
    };
    let workers = cores();
    let scenario = |name: &str, keys, cost, producers, workers, events| Scenario {
        name: name.to_owned(),
        streams: 10_000,
        keys,
        cost,
        producers,
        workers,
        events,
        batch: 1,
    };
    let mixed = Cost::Mixed {
        one_in: 100,
        slow: Duration::from_micros(100),
    };
    let scenarios = names
        .iter()
        .map(|name| match name.as_str() {
            "uniform-10k" => Ok(scenario(
                name,
                Keys::Uniform,
                Cost::Trivial,
                2,
                workers,
                events.unwrap_or(4_000_000),
            )),
            "zipf-10k" => Ok(scenario(
                name,
                Keys::Zipf(1.1),
                Cost::Trivial,
                2,
                workers,
                events.unwrap_or(4_000_000),
            )),
            "mixed-cost-10k" => Ok(scenario(
                name,
                Keys::Uniform,
                mixed,
                2,
                workers,
                events.unwrap_or(600_000),
            )),
            "uniform-10k-batched" => Ok(Scenario {
                batch: 64,
                ..scenario(
                    name,
                    Keys::Uniform,
                    Cost::Trivial,
                    2,
                    workers,
                    events.unwrap_or(4_000_000),
                )
            }),
            "one-to-one-10k" => Ok(scenario(
                name,
                Keys::Uniform,
                Cost::Trivial,
                1,
                1,
                events.unwrap_or(4_000_000),
            )),
            other => Err(format!("--scenarios: unknown {other:?}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((scenarios, systems, runs))
}

fn print_latency(results: &[latency::LatencyResult]) {
    println!("{}", results.first().map_or("", |r| r.row.scenario.as_str()));
    println!(
        "  {:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "system", "events", "p50 us", "p90 us", "p99 us", "p99.9 us", "p99.99", "max us"
    );
    for r in results {
        let at = |q: f64| r.curve.iter().find(|p| p.0 == q).map_or(f64::NAN, |p| p.1);
        println!(
            "  {:<16} {:>10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.0}",
            r.row.system,
            r.row.events,
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            at(0.9999),
            r.max_us
        );
    }
    if let [ours, pool] = results {
        let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map_or(f64::NAN, |(a, b)| a / b);
        println!(
            "  humpyard / crossbeam-pool: p99 {:.2}x, p99.9 {:.2}x",
            ratio(ours.row.p99_us, pool.row.p99_us),
            ratio(ours.row.p999_us, pool.row.p999_us)
        );
    }
}
