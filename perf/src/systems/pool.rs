//! The sharded thread pool a Rust user writes by hand: one bounded channel and one thread per
//! worker, streams routed by key hash to a fixed worker, each worker keeping its streams'
//! states in a `HashMap`. Per-stream order and state hold; balance does not (a hot or slow
//! stream holds up every stream on its worker). One implementation over three channels.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use super::{lane_of, Measured, System};
use crate::workload::{Load, Scenario};

/// What travels through a pool's channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Msg {
    pub(crate) key: u64,
    pub(crate) seq: u64,
}

/// A bounded multi-producer channel as the pool uses it.
pub(crate) trait Channel: Send + Sync + 'static {
    type Tx: Clone + Send + 'static;
    type Rx: Send + 'static;
    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx);
    /// Blocks while the channel is full.
    fn send(tx: &Self::Tx, msg: Msg);
    /// Blocks while empty; `None` once every sender is gone and the channel is empty.
    fn recv(rx: &Self::Rx) -> Option<Msg>;
}

/// Pool over `crossbeam-channel`.
#[derive(Debug)]
pub struct CrossbeamPool;
/// Pool over `flume`.
#[derive(Debug)]
pub struct FlumePool;
/// Pool over `std::sync::mpsc::sync_channel`.
#[derive(Debug)]
pub struct MpscPool;

impl Channel for CrossbeamPool {
    type Tx = crossbeam_channel::Sender<Msg>;
    type Rx = crossbeam_channel::Receiver<Msg>;
    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx) {
        crossbeam_channel::bounded(capacity)
    }
    fn send(tx: &Self::Tx, msg: Msg) {
        tx.send(msg).expect("worker alive");
    }
    fn recv(rx: &Self::Rx) -> Option<Msg> {
        rx.recv().ok()
    }
}

impl Channel for FlumePool {
    type Tx = flume::Sender<Msg>;
    type Rx = flume::Receiver<Msg>;
    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx) {
        flume::bounded(capacity)
    }
    fn send(tx: &Self::Tx, msg: Msg) {
        tx.send(msg).expect("worker alive");
    }
    fn recv(rx: &Self::Rx) -> Option<Msg> {
        rx.recv().ok()
    }
}

impl Channel for MpscPool {
    type Tx = std::sync::mpsc::SyncSender<Msg>;
    type Rx = std::sync::mpsc::Receiver<Msg>;
    fn bounded(capacity: usize) -> (Self::Tx, Self::Rx) {
        std::sync::mpsc::sync_channel(capacity)
    }
    fn send(tx: &Self::Tx, msg: Msg) {
        tx.send(msg).expect("worker alive");
    }
    fn recv(rx: &Self::Rx) -> Option<Msg> {
        rx.recv().ok()
    }
}

/// A worker's stream states: std's `HashMap` with its default hasher, as a user writes it
/// (a multiplicative hasher measured no faster here: the cost is in the channel hand-off).
pub type StateMap = HashMap<u64, u64>;

/// The total capacity humpyard's defaults give (16 shards x 4096), split over the workers, so
/// that both buffer as many events.
pub fn lane_capacity(workers: usize) -> usize {
    (16 * 4096 / workers).max(1)
}

fn run_pool<C: Channel>(scenario: &Scenario, load: &Load) -> Measured {
    let workers = scenario.workers;
    let (txs, rxs): (Vec<C::Tx>, Vec<C::Rx>) = (0..workers).map(|_| C::bounded(lane_capacity(workers))).unzip();
    let start = Arc::new(Barrier::new(load.per_producer.len() + 1));
    let cost = scenario.cost;
    std::thread::scope(|scope| {
        let lanes: Vec<_> = rxs
            .into_iter()
            .map(|rx| {
                scope.spawn(move || {
                    let mut states = StateMap::default();
                    let mut handled = 0u64;
                    while let Some(msg) = C::recv(&rx) {
                        cost.apply(states.entry(msg.key).or_insert(0), msg.seq);
                        handled += 1;
                    }
                    handled
                })
            })
            .collect();
        for keys in &load.per_producer {
            let (txs, start) = (txs.clone(), &start);
            scope.spawn(move || {
                start.wait();
                for (seq, &key) in keys.iter().enumerate() {
                    let key = u64::from(key);
                    C::send(&txs[lane_of(key, txs.len())], Msg { key, seq: seq as u64 });
                }
            });
        }
        drop(txs);
        start.wait();
        let began = Instant::now();
        let handled = lanes.into_iter().map(|l| l.join().expect("lane")).sum();
        Measured {
            handled,
            elapsed: began.elapsed(),
        }
    })
}

impl System for CrossbeamPool {
    fn name(&self) -> &'static str {
        "crossbeam-pool"
    }
    fn run(&self, scenario: &Scenario, load: &Load) -> Measured {
        run_pool::<CrossbeamPool>(scenario, load)
    }
}

impl System for FlumePool {
    fn name(&self) -> &'static str {
        "flume-pool"
    }
    fn run(&self, scenario: &Scenario, load: &Load) -> Measured {
        run_pool::<FlumePool>(scenario, load)
    }
}

impl System for MpscPool {
    fn name(&self) -> &'static str {
        "mpsc-pool"
    }
    fn run(&self, scenario: &Scenario, load: &Load) -> Measured {
        run_pool::<MpscPool>(scenario, load)
    }
}
