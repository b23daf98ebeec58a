//! What a run offers the system under test: which keys, how many events, what each costs.
//!
//! Key sequences are drawn before the clock starts and are the same for every system in a
//! run, so key generation costs nobody anything and every system sees exactly the same load.

use std::fmt;
use std::time::{Duration, Instant};

/// How stream keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Keys {
    /// Every stream equally likely.
    Uniform,
    /// Zipf with exponent `s`: stream of rank `k` has weight `1 / k^s`.
    Zipf(f64),
}

/// What handling one event costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cost {
    /// Add the payload to the stream's state.
    Trivial,
    /// Spin for this long on every event.
    Spin(Duration),
    /// Spin for `slow` on one event in `one_in`, trivial otherwise.
    Mixed { one_in: u64, slow: Duration },
}

impl Cost {
    /// Does the work of the event with sequence number `seq` into `state`.
    #[inline]
    pub fn apply(self, state: &mut u64, seq: u64) {
        *state = state.wrapping_add(seq);
        match self {
            Cost::Trivial => {}
            Cost::Spin(d) => spin_for(d),
            Cost::Mixed { one_in, slow } => {
                // A multiplicative hash of the sequence number picks the slow events, so they
                // are spread over streams and time rather than following the key pattern.
                if seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) % one_in == 0 {
                    spin_for(slow);
                }
            }
        }
    }
}

/// Busy-waits for `d` (the cost of a handler doing real work on the CPU).
fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// One workload: the scenario name used in reports, and how to generate it.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub streams: u64,
    pub keys: Keys,
    pub cost: Cost,
    pub producers: usize,
    pub workers: usize,
    /// Events in all, split evenly over the producers.
    pub events: u64,
    /// Events per submit for systems that take batches (humpyard's `submit_many_timeout`);
    /// 1: one at a time. Peers, which have no batch send, send one at a time whatever it is.
    pub batch: usize,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match self.keys {
            Keys::Uniform => "uniform".to_owned(),
            Keys::Zipf(s) => format!("zipf s={s}"),
        };
        let cost = match self.cost {
            Cost::Trivial => "trivial handler".to_owned(),
            Cost::Spin(d) => format!("{} ns handler", d.as_nanos()),
            Cost::Mixed { one_in, slow } => format!("1 in {one_in} costs {} us", slow.as_micros()),
        };
        write!(
            f,
            "{}: {} streams, {keys}, {cost}, {} producers -> {} workers, {} events",
            self.name, self.streams, self.producers, self.workers, self.events
        )?;
        if self.batch > 1 {
            write!(f, ", humpyard in batches of {}", self.batch)?;
        }
        Ok(())
    }
}

/// The key sequences of a scenario, one per producer (stream indices `0..streams`).
#[derive(Debug)]
pub struct Load {
    pub per_producer: Vec<Vec<u32>>,
}

impl Load {
    /// Draws the keys of `scenario` with a fixed seed (the same load for every system).
    pub fn draw(scenario: &Scenario) -> Load {
        let per = scenario.events / scenario.producers as u64;
        let sampler = Sampler::new(scenario.streams, scenario.keys);
        let per_producer = (0..scenario.producers)
            .map(|p| {
                let mut rng = XorShift::new(0x5eed_0000 + p as u64);
                (0..per).map(|_| sampler.sample(&mut rng)).collect()
            })
            .collect();
        Load { per_producer }
    }

    /// Events in all.
    pub fn events(&self) -> u64 {
        self.per_producer.iter().map(|k| k.len() as u64).sum()
    }
}

/// Draws stream indices.
struct Sampler {
    streams: u64,
    /// For Zipf: the cumulative weights by rank, normalised to 1.
    cdf: Option<Vec<f64>>,
    /// For Zipf: rank -> stream index, a fixed permutation so that hot streams are scattered.
    ranks: Vec<u32>,
}

impl Sampler {
    fn new(streams: u64, keys: Keys) -> Sampler {
        match keys {
            Keys::Uniform => Sampler {
                streams,
                cdf: None,
                ranks: Vec::new(),
            },
            Keys::Zipf(s) => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=streams)
                    .map(|k| {
                        acc += 1.0 / (k as f64).powf(s);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                let mut ranks: Vec<u32> = (0..streams as u32).collect();
                let mut rng = XorShift::new(0x7a11);
                for i in (1..ranks.len()).rev() {
                    let j = (rng.next() % (i as u64 + 1)) as usize;
                    ranks.swap(i, j);
                }
                Sampler {
                    streams,
                    cdf: Some(cdf),
                    ranks,
                }
            }
        }
    }

    fn sample(&self, rng: &mut XorShift) -> u32 {
        match &self.cdf {
            None => (rng.next() % self.streams) as u32,
            Some(cdf) => {
                let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                let rank = cdf.partition_point(|&c| c < u).min(cdf.len() - 1);
                self.ranks[rank]
            }
        }
    }
}

/// xorshift64: fast, seedable, good enough to draw keys.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_and_uniform_is_not() {
        let scenario = |keys| Scenario {
            name: "t".into(),
            streams: 10_000,
            keys,
            cost: Cost::Trivial,
            producers: 1,
            workers: 1,
            events: 100_000,
            batch: 1,
        };
        let hottest = |keys| {
            let load = Load::draw(&scenario(keys));
            let mut counts = vec![0u64; 10_000];
            for &k in &load.per_producer[0] {
                counts[k as usize] += 1;
            }
            *counts.iter().max().unwrap()
        };
        // Zipf s=1.1 over 10 000 keys gives the top key about 10% of the draws.
        assert!(hottest(Keys::Zipf(1.1)) > 5_000);
        assert!(hottest(Keys::Uniform) < 100);
    }
}
