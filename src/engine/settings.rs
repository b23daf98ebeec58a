//! [`EngineConfig`]: the engine's settings as a plain value, for code that configures an engine
//! it does not build itself (a [`Pipeline`](crate::pipeline::Pipeline)'s).

use std::time::Duration;

use super::config::Config;

/// The engine's sizes and timings, without its handler or hooks. Each setter means what the
/// [`EngineBuilder`](crate::EngineBuilder) method of the same name means, with the same default
/// and bounds (checked when the engine starts: a bad value is a
/// [`ConfigError`](crate::ConfigError) then).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub(crate) config: Config,
}

impl Default for EngineConfig {
    /// The engine's defaults for this machine.
    fn default() -> EngineConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        EngineConfig {
            config: Config::defaults(cores),
        }
    }
}

impl EngineConfig {
    /// See [`EngineBuilder::workers`](crate::EngineBuilder::workers).
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// See [`EngineBuilder::shards`](crate::EngineBuilder::shards).
    pub fn shards(mut self, n: usize) -> Self {
        self.config.shards = Some(n);
        self
    }

    /// See [`EngineBuilder::shard_capacity`](crate::EngineBuilder::shard_capacity).
    pub fn shard_capacity(mut self, n: usize) -> Self {
        self.config.shard_capacity = Some(n);
        self
    }

    /// See [`EngineBuilder::idle_timeout`](crate::EngineBuilder::idle_timeout).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d;
        self
    }

    /// See [`EngineBuilder::max_entities`](crate::EngineBuilder::max_entities).
    pub fn max_entities(mut self, n: u64) -> Self {
        self.config.max_entities = n;
        self
    }

    /// See [`EngineBuilder::retry_backoff`](crate::EngineBuilder::retry_backoff).
    pub fn retry_backoff(mut self, d: Duration) -> Self {
        self.config.retry_backoff = d;
        self
    }

    /// See [`EngineBuilder::retry_backoff_max`](crate::EngineBuilder::retry_backoff_max).
    pub fn retry_backoff_max(mut self, d: Duration) -> Self {
        self.config.retry_backoff_max = d;
        self
    }

    /// See [`EngineBuilder::slow_handler_threshold`](crate::EngineBuilder::slow_handler_threshold).
    pub fn slow_handler_threshold(mut self, d: Duration) -> Self {
        self.config.slow_handler_threshold = d;
        self
    }

    /// See [`EngineBuilder::drop_deadline`](crate::EngineBuilder::drop_deadline).
    pub fn drop_deadline(mut self, d: Duration) -> Self {
        self.config.drop_deadline = d;
        self
    }

    /// See [`EngineBuilder::quiet_panics`](crate::EngineBuilder::quiet_panics).
    pub fn quiet_panics(mut self, on: bool) -> Self {
        self.config.quiet_panics = on;
        self
    }

    /// See [`EngineBuilder::time_handlers`](crate::EngineBuilder::time_handlers).
    pub fn time_handlers(mut self, on: bool) -> Self {
        self.config.time_handlers = on;
        self
    }

    /// The number of worker threads set.
    pub fn worker_count(&self) -> usize {
        self.config.workers
    }
}
