//! The engine's settings, their defaults, and [`ConfigError`].

use std::fmt;
use std::time::Duration;

/// The most worker threads an engine may have.
pub(crate) const MAX_WORKERS: usize = 1 << 10;
/// The most shards an engine may have.
pub(crate) const MAX_SHARDS: usize = 1 << 16;
/// The most events one shard's ring may hold.
pub(crate) const MAX_SHARD_CAPACITY: usize = 1 << 24;
/// The most events all rings together may hold (`shards * shard_capacity`).
pub(crate) const MAX_BUFFERED_EVENTS: usize = 1 << 26;
/// The largest `max_entities`: a shard's table indexes its entities with 32 bits.
pub(crate) const MAX_ENTITIES: u64 = 1 << 31;
/// The events a worker's shards buffer by default, together (see [`Config::shard_capacity`]).
pub(crate) const BUFFER_PER_WORKER: usize = 1 << 15;
/// The most dead letters the default sink may keep.
pub(crate) const MAX_DEAD_LETTER_BUFFER: usize = 1 << 20;

/// The engine's validated settings. See [`EngineBuilder`](crate::EngineBuilder) for what each
/// means and its default.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    /// `None`: the default for the worker count ([`shards`](Self::shards)).
    pub(crate) shards: Option<usize>,
    /// `None`: the default for the worker and shard counts
    /// ([`shard_capacity`](Self::shard_capacity)).
    pub(crate) shard_capacity: Option<usize>,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_entities: u64,
    pub(crate) max_attempts: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) retry_backoff_max: Duration,
    pub(crate) slow_handler_threshold: Duration,
    pub(crate) drop_deadline: Duration,
    pub(crate) dead_letter_buffer: usize,
    /// Whether the process's panic hook passes over the panics this engine contains.
    pub(crate) quiet_panics: bool,
    /// Whether handler calls are timed (`Metrics::handler_durations`).
    pub(crate) time_handlers: bool,
    /// Whether to start the supervisor thread (always, except in loom models).
    pub(crate) supervisor: bool,
}

impl Config {
    /// The defaults, for a machine with `cores` cores.
    pub(crate) fn defaults(cores: usize) -> Config {
        let workers = cores.max(1);
        Config {
            workers,
            shards: None,
            shard_capacity: None,
            idle_timeout: Duration::from_secs(60),
            max_entities: 1_000_000,
            max_attempts: 3,
            retry_backoff: Duration::from_millis(10),
            retry_backoff_max: Duration::from_secs(1),
            slow_handler_threshold: Duration::from_secs(1),
            drop_deadline: Duration::from_secs(5),
            dead_letter_buffer: 1024,
            quiet_panics: false,
            time_handlers: false,
            supervisor: true,
        }
    }

    /// The shard count: as set, or two a worker rounded up to a power of two.
    ///
    /// Two a worker: enough for a worker to take another shard while one is slow, waits for a
    /// retry or is hot; few enough that a busy shard's runs are long (a run's scheduling and
    /// the first touches of its ring and table are paid per run, not per event). On 2 cores,
    /// 4 shards ran uniform-10k 1.3x and zipf-10k 1.7x faster than 16 of the same total
    /// capacity (perf/RESULTS.md, 2026-12-03).
    pub(crate) fn shards(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            self.workers
                .saturating_mul(2)
                .checked_next_power_of_two()
                .unwrap_or(usize::MAX)
        })
    }

    /// One shard's capacity: as set, or [`BUFFER_PER_WORKER`] events a worker spread over the
    /// shards, rounded up to a power of two and kept within 1024 to 16 384 (16 384 with the
    /// default shard count).
    pub(crate) fn shard_capacity(&self) -> usize {
        self.shard_capacity.unwrap_or_else(|| {
            let share = BUFFER_PER_WORKER.saturating_mul(self.workers) / self.shards().max(1);
            share
                .checked_next_power_of_two()
                .unwrap_or(usize::MAX)
                .clamp(1024, 16_384)
        })
    }

    /// Checks every setting; the first bad one is the error.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let (shards, shard_capacity) = (self.shards(), self.shard_capacity());
        if self.workers == 0 {
            return Err(ConfigError::ZeroWorkers);
        }
        if self.workers > MAX_WORKERS {
            return Err(ConfigError::TooManyWorkers {
                workers: self.workers,
                max: MAX_WORKERS,
            });
        }
        if shards == 0 {
            return Err(ConfigError::ZeroShards);
        }
        if shards > MAX_SHARDS {
            return Err(ConfigError::TooManyShards {
                shards,
                max: MAX_SHARDS,
            });
        }
        if shard_capacity == 0 {
            return Err(ConfigError::ZeroShardCapacity);
        }
        if shard_capacity > MAX_SHARD_CAPACITY {
            return Err(ConfigError::ShardCapacityTooLarge {
                capacity: shard_capacity,
                max: MAX_SHARD_CAPACITY,
            });
        }
        if shards * shard_capacity > MAX_BUFFERED_EVENTS {
            return Err(ConfigError::TooManyBufferedEvents {
                shards,
                shard_capacity,
                max: MAX_BUFFERED_EVENTS,
            });
        }
        if self.max_entities == 0 {
            return Err(ConfigError::ZeroMaxEntities);
        }
        if self.max_entities > MAX_ENTITIES {
            return Err(ConfigError::MaxEntitiesTooLarge {
                max_entities: self.max_entities,
                max: MAX_ENTITIES,
            });
        }
        if self.dead_letter_buffer > MAX_DEAD_LETTER_BUFFER {
            return Err(ConfigError::DeadLetterBufferTooLarge {
                capacity: self.dead_letter_buffer,
                max: MAX_DEAD_LETTER_BUFFER,
            });
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::ZeroMaxAttempts);
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::ZeroIdleTimeout);
        }
        if self.slow_handler_threshold.is_zero() {
            return Err(ConfigError::ZeroSlowHandlerThreshold);
        }
        if self.retry_backoff_max < self.retry_backoff {
            return Err(ConfigError::BackoffMaxBelowBase {
                base: self.retry_backoff,
                max: self.retry_backoff_max,
            });
        }
        Ok(())
    }
}

/// Why [`EngineBuilder::start`](crate::EngineBuilder::start) refused to start an engine.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// `workers(0)`: nothing would run the events.
    ZeroWorkers,
    /// More worker threads than the engine supports.
    TooManyWorkers {
        /// The workers asked for.
        workers: usize,
        /// The most allowed.
        max: usize,
    },
    /// `shards(0)`: nowhere to put events.
    ZeroShards,
    /// More shards than the engine supports.
    TooManyShards {
        /// The shards asked for.
        shards: usize,
        /// The most allowed.
        max: usize,
    },
    /// `shard_capacity(0)`: every submit would be rejected.
    ZeroShardCapacity,
    /// A shard's ring larger than the engine supports.
    ShardCapacityTooLarge {
        /// The capacity asked for.
        capacity: usize,
        /// The most allowed.
        max: usize,
    },
    /// `shards * shard_capacity`, the events all rings may hold (allocated when the engine
    /// starts), is more than the engine supports.
    TooManyBufferedEvents {
        /// The shards asked for.
        shards: usize,
        /// The capacity of each.
        shard_capacity: usize,
        /// The most events allowed in all rings together.
        max: usize,
    },
    /// `max_entities(0)`: no entity could ever live.
    ZeroMaxEntities,
    /// An entity cap larger than the engine supports.
    MaxEntitiesTooLarge {
        /// The cap asked for.
        max_entities: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A default dead-letter sink larger than the engine supports.
    DeadLetterBufferTooLarge {
        /// The capacity asked for.
        capacity: usize,
        /// The most allowed.
        max: usize,
    },
    /// The rings' memory could not be allocated.
    OutOfMemory {
        /// The bytes the allocation that failed asked for.
        bytes: usize,
    },
    /// `max_attempts(0)`: no event would ever be handled.
    ZeroMaxAttempts,
    /// `idle_timeout(0)`: every entity would be reaped between two events.
    ZeroIdleTimeout,
    /// `slow_handler_threshold(0)`: every call would be reported slow.
    ZeroSlowHandlerThreshold,
    /// `retry_backoff_max` is below `retry_backoff`.
    BackoffMaxBelowBase {
        /// The base delay.
        base: Duration,
        /// The cap.
        max: Duration,
    },
    /// The operating system refused to start a thread.
    Spawn(std::io::Error),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroWorkers => f.write_str("workers must be at least 1"),
            ConfigError::TooManyWorkers { workers, max } => {
                write!(f, "{workers} workers asked for; at most {max} are supported")
            }
            ConfigError::ZeroShards => f.write_str("shards must be at least 1"),
            ConfigError::TooManyShards { shards, max } => {
                write!(f, "{shards} shards asked for; at most {max} are supported")
            }
            ConfigError::ZeroShardCapacity => f.write_str("shard_capacity must be at least 1"),
            ConfigError::ShardCapacityTooLarge { capacity, max } => {
                write!(f, "shard_capacity {capacity} asked for; at most {max} is supported")
            }
            ConfigError::TooManyBufferedEvents {
                shards,
                shard_capacity,
                max,
            } => write!(
                f,
                "{shards} shards of {shard_capacity} events asked for; at most {max} events in all rings are supported"
            ),
            ConfigError::ZeroMaxEntities => f.write_str("max_entities must be at least 1"),
            ConfigError::MaxEntitiesTooLarge { max_entities, max } => {
                write!(f, "max_entities {max_entities} asked for; at most {max} is supported")
            }
            ConfigError::DeadLetterBufferTooLarge { capacity, max } => {
                write!(f, "dead_letter_buffer {capacity} asked for; at most {max} is supported")
            }
            ConfigError::OutOfMemory { bytes } => {
                write!(f, "could not allocate {bytes} bytes for the engine's rings")
            }
            ConfigError::ZeroMaxAttempts => f.write_str("max_attempts must be at least 1"),
            ConfigError::ZeroIdleTimeout => f.write_str("idle_timeout must be longer than zero"),
            ConfigError::ZeroSlowHandlerThreshold => f.write_str("slow_handler_threshold must be longer than zero"),
            ConfigError::BackoffMaxBelowBase { base, max } => {
                write!(f, "retry_backoff_max ({max:?}) is below retry_backoff ({base:?})")
            }
            ConfigError::Spawn(_) => f.write_str("could not start an engine thread"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}
