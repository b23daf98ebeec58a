//! Memory per live entity: the growth of the resident set while `streams` entities become live,
//! less the id each entity keeps and the user's state.

use std::time::Duration;

use humpyard::{Engine, Event, Handler, StreamId};

use crate::report::{peak_rss_mb, reset_peak_rss, rss_kib, Row};
use crate::systems::stream_ids;

struct Keep;

impl Handler for Keep {
    type Payload = u64;
    type State = u64;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, state: &mut u64, event: &Event<u64>) -> Result<(), String> {
        *state += event.payload();
        Ok(())
    }
}

/// Starts an engine, makes `streams` entities live, and reports bytes per entity.
pub fn run(streams: u64, workers: usize) -> Row {
    let ids = stream_ids(streams);
    let engine = Engine::builder(Keep)
        .workers(workers)
        .max_entities(streams)
        .idle_timeout(Duration::from_secs(3600))
        .start()
        .expect("valid configuration");
    reset_peak_rss();
    let before = rss_kib().unwrap_or(0);
    let started = std::time::Instant::now();
    for id in &ids {
        engine
            .submit_timeout(Event::new(id.clone(), 1), Duration::from_secs(30))
            .expect("room within 30 s");
    }
    while engine.metrics().processed < streams {
        std::thread::sleep(Duration::from_millis(1));
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = rss_kib().unwrap_or(0);
    let live = engine.metrics().entities_live;
    let per_entity = after.saturating_sub(before) as f64 * 1024.0 / live.max(1) as f64;
    let state = std::mem::size_of::<u64>() as f64;
    // The table keeps its own copy of each id (ids of up to 16 bytes are inline values; longer
    // ones would share the caller's allocation).
    let id = std::mem::size_of::<StreamId>() as f64;
    println!("entities-{}: {live} live entities", crate::latency::short(streams));
    println!(
        "  resident set growth   {:.1} MiB",
        after.saturating_sub(before) as f64 / 1024.0
    );
    println!("  per entity            {per_entity:.1} bytes (id {id} bytes inline, state {state} bytes)");
    println!(
        "  engine overhead       {:.1} bytes per entity beyond id and state",
        per_entity - state - id
    );
    let row = Row::throughput(
        &format!("entities-{}", crate::latency::short(streams)),
        "humpyard",
        streams,
        seconds,
        peak_rss_mb(),
    );
    engine.shutdown(Duration::from_secs(30));
    drop(ids);
    row
}
