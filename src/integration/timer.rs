//! [`TimerSource`]: a ready-made inbound source that sends a command every interval (a
//! periodic sweep, a report, a poll of an API without push).

use std::fmt;
use std::time::Duration;

use super::command::Command;
use super::source::{SendError, Source, SourceContext, SourceError};

/// Sends the command `make(tick)` every `every`, ticks counting from 0 for each run (a restart
/// starts again at 0). The first command goes after one interval. A command handed back
/// (failed every attempt, no route) is reported by the integration and the timer goes on;
/// shutdown ends it.
pub struct TimerSource<F> {
    every: Duration,
    make: F,
}

impl<F: FnMut(u64) -> Command + Send + 'static> TimerSource<F> {
    /// A timer sending `make(tick)` every `every` (at least 1 ms).
    pub fn new(every: Duration, make: F) -> TimerSource<F> {
        TimerSource {
            every: every.max(Duration::from_millis(1)),
            make,
        }
    }
}

impl<F: FnMut(u64) -> Command + Send + 'static> Source for TimerSource<F> {
    fn run(&mut self, ctx: &SourceContext) -> Result<(), SourceError> {
        let mut tick = 0u64;
        while ctx.sleep(self.every) {
            ctx.set_status(format!("tick {tick}"));
            match ctx.send((self.make)(tick)) {
                Ok(()) | Err(SendError::Unrouted(_) | SendError::Failed { .. }) => {}
                Err(SendError::Stopped(_)) => break,
            }
            tick += 1;
        }
        Ok(())
    }
}

impl<F> fmt::Debug for TimerSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerSource")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}
