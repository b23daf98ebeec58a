//! humpyard's counters in Prometheus' text format: install a recorder
//! (`metrics-exporter-prometheus`, no HTTP server, no runtime), start an engine with
//! `export_metrics` (and `time_handlers`, for the handler-duration histogram), run some events,
//! and print what a scrape would get.
//!
//! `cargo run --example prometheus --features metrics`

use std::time::{Duration, Instant};

use humpyard::{Engine, Event, Handler, StreamId};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Sums each stream's payloads; refuses zero.
struct Sums;

impl Handler for Sums {
    type Payload = u64;
    type State = u64;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, sum: &mut u64, event: &Event<u64>) -> Result<(), String> {
        if *event.payload() == 0 {
            return Err("zero is refused".to_owned());
        }
        *sum += event.payload();
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The application installs the recorder, before starting what it exports.
    let handle = PrometheusBuilder::new().install_recorder()?;

    let engine = Engine::builder(Sums)
        .workers(2)
        .shards(4)
        .max_attempts(1)
        .time_handlers(true)
        .export_metrics("sums")
        .start()?;
    for n in 0..10_000u64 {
        let stream = StreamId::new(&format!("account-{}", n % 100))?;
        engine.submit_timeout(Event::new(stream, n % 50), Duration::from_secs(5))?;
    }
    // Wait until every event is done, then for a supervisor tick to export the totals.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let m = engine.metrics();
        let text = handle.render();
        if m.processed + m.dead_lettered == 10_000
            && text.contains("humpyard_events_processed_total{engine=\"sums\"} 9800")
            && text.contains("humpyard_handler_duration_seconds_count{engine=\"sums\"} 10000")
        {
            break text;
        }
        assert!(Instant::now() < deadline, "the export did not catch up:\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    };
    print!("{text}");

    for line in [
        "humpyard_events_accepted_total{engine=\"sums\"} 10000",
        "humpyard_events_processed_total{engine=\"sums\"} 9800",
        "humpyard_events_dead_lettered_total{engine=\"sums\"} 200",
        "humpyard_events_queued{engine=\"sums\"} 0",
        "humpyard_shard_events_queued{engine=\"sums\",shard=\"3\"} 0",
        "# TYPE humpyard_events_processed_total counter",
        "# TYPE humpyard_entities_live gauge",
        // Every call timed, failed ones too: the `+Inf` bucket holds them all.
        "humpyard_handler_duration_seconds_bucket{engine=\"sums\",le=\"+Inf\"} 10000",
        "humpyard_handler_duration_seconds_count{engine=\"sums\"} 10000",
    ] {
        assert!(text.contains(line), "missing {line:?}");
    }
    engine.shutdown(Duration::from_secs(5));
    Ok(())
}
