//! A counter per stream: submit events, shut down, read the accounting.
//!
//! `cargo run --release --example quickstart`

use std::time::{Duration, Instant};

use humpyard::{Engine, Event, Handler, StreamId, SubmitError};

/// Counts the events of each stream and checks they arrive in order.
struct InOrder;

impl Handler for InOrder {
    type Payload = u64;
    type State = u64;
    type Error = String;

    fn init(&self, _: &StreamId) -> Result<u64, String> {
        Ok(0)
    }

    fn handle(&self, next: &mut u64, event: &Event<u64>) -> Result<(), String> {
        if *event.payload() != *next {
            return Err(format!("expected {next}, got {}", event.payload()));
        }
        *next += 1;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder(InOrder).start()?;
    let streams: Vec<StreamId> = (0..1_000)
        .map(|i| StreamId::new(&format!("order-{i}")))
        .collect::<Result<_, _>>()?;

    let started = Instant::now();
    for seq in 0..1_000u64 {
        for stream in &streams {
            match engine.try_submit(Event::new(stream.clone(), seq)) {
                Ok(()) => {}
                Err(SubmitError::Full(event)) => engine.submit_timeout(event, Duration::from_secs(5))?,
                Err(e) => return Err(e.into()),
            }
        }
    }
    let report = engine.shutdown(Duration::from_secs(10));
    let elapsed = started.elapsed();
    let m = engine.metrics();
    println!(
        "{} events on {} streams in {:.2?}: {:.1} M events/s",
        m.processed,
        streams.len(),
        elapsed,
        m.processed as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "accepted {} = processed {} + dead-lettered {} + unprocessed {}",
        m.accepted,
        m.processed,
        m.dead_lettered,
        report.unprocessed.len()
    );
    assert_eq!(m.dead_lettered, 0, "every stream saw its events in order");
    Ok(())
}
