//! The sharded thread pool a Rust user writes by hand: one bounded channel and one thread per
//! worker, streams routed by key hash to a fixed worker, each worker keeping its streams'
//! states in a `HashMap`. Per-stream order and state hold; balance does not (a hot or slow
//! stream holds up every stream on its worker). One implementation over three channels, and
//! over two kinds of key: bare integers (`crossbeam-pool`, ...), and the string stream ids
//! humpyard carries (`crossbeam-pool-str`, ...).

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use humpyard::StreamId;

use super::{lane_of, stream_ids, Measured, System};
use crate::workload::{Load, Scenario};

/// What travels through a pool's channel: the stream's key and the event's sequence number.
#[derive(Debug, Clone)]
pub(crate) struct Msg<K> {
    pub(crate) key: K,
    pub(crate) seq: u64,
}

/// The key a pool routes by: a bare integer (what a user with integer entity ids writes), or
/// the same string stream id humpyard carries (cloned per event as humpyard's producers do,
/// routed by its precomputed hash, kept in a `HashMap` keyed by the string as a user would).
pub(crate) trait PoolKey: Clone + Eq + std::hash::Hash + Send + 'static {
    /// The key of stream index `key`.
    fn make(ids: &[StreamId], key: u32) -> Self;
    /// The lane (worker) of this key among `lanes`.
    fn lane(&self, lanes: usize) -> usize;
}

impl PoolKey for u64 {
    #[inline]
    fn make(_: &[StreamId], key: u32) -> u64 {
        u64::from(key)
    }
    #[inline]
    fn lane(&self, lanes: usize) -> usize {
        lane_of(*self, lanes)
    }
}

impl PoolKey for StreamId {
    #[inline]
    fn make(ids: &[StreamId], key: u32) -> StreamId {
        ids[key as usize].clone()
    }
    #[inline]
    fn lane(&self, lanes: usize) -> usize {
        ((u128::from(self.hash_u64()) * lanes as u128) >> 64) as usize
    }
}

/// A bounded multi-producer channel as the pool uses it.
pub(crate) trait Channel: Send + Sync + 'static {
    type Tx<M: Send + 'static>: Clone + Send + 'static;
    type Rx<M: Send + 'static>: Send + 'static;
    fn bounded<M: Send + 'static>(capacity: usize) -> (Self::Tx<M>, Self::Rx<M>);
    /// Blocks while the channel is full.
    fn send<M: Send + 'static>(tx: &Self::Tx<M>, msg: M);
    /// Blocks while empty; `None` once every sender is gone and the channel is empty.
    fn recv<M: Send + 'static>(rx: &Self::Rx<M>) -> Option<M>;
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
    type Tx<M: Send + 'static> = crossbeam_channel::Sender<M>;
    type Rx<M: Send + 'static> = crossbeam_channel::Receiver<M>;
    fn bounded<M: Send + 'static>(capacity: usize) -> (Self::Tx<M>, Self::Rx<M>) {
        crossbeam_channel::bounded(capacity)
    }
    fn send<M: Send + 'static>(tx: &Self::Tx<M>, msg: M) {
        assert!(tx.send(msg).is_ok(), "worker alive");
    }
    fn recv<M: Send + 'static>(rx: &Self::Rx<M>) -> Option<M> {
        rx.recv().ok()
    }
}

impl Channel for FlumePool {
    type Tx<M: Send + 'static> = flume::Sender<M>;
    type Rx<M: Send + 'static> = flume::Receiver<M>;
    fn bounded<M: Send + 'static>(capacity: usize) -> (Self::Tx<M>, Self::Rx<M>) {
        flume::bounded(capacity)
    }
    fn send<M: Send + 'static>(tx: &Self::Tx<M>, msg: M) {
        assert!(tx.send(msg).is_ok(), "worker alive");
    }
    fn recv<M: Send + 'static>(rx: &Self::Rx<M>) -> Option<M> {
        rx.recv().ok()
    }
}

impl Channel for MpscPool {
    type Tx<M: Send + 'static> = std::sync::mpsc::SyncSender<M>;
    type Rx<M: Send + 'static> = std::sync::mpsc::Receiver<M>;
    fn bounded<M: Send + 'static>(capacity: usize) -> (Self::Tx<M>, Self::Rx<M>) {
        std::sync::mpsc::sync_channel(capacity)
    }
    fn send<M: Send + 'static>(tx: &Self::Tx<M>, msg: M) {
        assert!(tx.send(msg).is_ok(), "worker alive");
    }
    fn recv<M: Send + 'static>(rx: &Self::Rx<M>) -> Option<M> {
        rx.recv().ok()
    }
}

/// The same pools routing the string stream ids humpyard carries (see [`PoolKey`]).
#[derive(Debug)]
pub struct StrPool<C>(std::marker::PhantomData<C>);

impl<C> StrPool<C> {
    pub fn new() -> StrPool<C> {
        StrPool(std::marker::PhantomData)
    }
}

/// A worker's stream states: std's `HashMap` with its default hasher, as a user writes it
/// (a multiplicative hasher measured no faster here: the cost is in the channel hand-off).
pub type StateMap<K = u64> = HashMap<K, u64>;

/// The total capacity humpyard's defaults give (`2 * workers` shards, rounded up to a power of
/// two, of 16 384), split over the workers, so that both buffer as many events.
pub fn lane_capacity(workers: usize) -> usize {
    ((2 * workers).next_power_of_two() * 16_384 / workers).max(1)
}

fn run_pool<C: Channel, K: PoolKey>(scenario: &Scenario, load: &Load) -> Measured {
    let workers = scenario.workers;
    let ids = if std::any::TypeId::of::<K>() == std::any::TypeId::of::<StreamId>() {
        stream_ids(scenario.streams)
    } else {
        Vec::new()
    };
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| C::bounded::<Msg<K>>(lane_capacity(workers)))
        .unzip();
    let start = Arc::new(Barrier::new(load.per_producer.len() + 1));
    let cost = scenario.cost;
    std::thread::scope(|scope| {
        let lanes: Vec<_> = rxs
            .into_iter()
            .map(|rx| {
                scope.spawn(move || {
                    let mut states = StateMap::<K>::default();
                    let mut handled = 0u64;
                    while let Some(msg) = C::recv::<Msg<K>>(&rx) {
                        cost.apply(states.entry(msg.key).or_insert(0), msg.seq);
                        handled += 1;
                    }
                    handled
                })
            })
            .collect();
        for keys in &load.per_producer {
            let (txs, start, ids) = (txs.clone(), &start, &ids);
            scope.spawn(move || {
                start.wait();
                for (seq, &key) in keys.iter().enumerate() {
                    let key = K::make(ids, key);
                    let lane = key.lane(txs.len());
                    C::send(&txs[lane], Msg { key, seq: seq as u64 });
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
        run_pool::<CrossbeamPool, u64>(scenario, load)
    }
}

impl System for FlumePool {
    fn name(&self) -> &'static str {
        "flume-pool"
    }
    fn run(&self, scenario: &Scenario, load: &Load) -> Measured {
        run_pool::<FlumePool, u64>(scenario, load)
    }
}

impl System for MpscPool {
    fn name(&self) -> &'static str {
        "mpsc-pool"
    }
    fn run(&self, scenario: &Scenario, load: &Load) -> Measured {
        run_pool::<MpscPool, u64>(scenario, load)
    }
}

/// The string-keyed pools' names in reports.
pub(crate) trait Named {
    const NAME: &'static str;
}

impl Named for CrossbeamPool {
    const NAME: &'static str = "crossbeam-pool-str";
}

impl Named for FlumePool {
    const NAME: &'static str = "flume-pool-str";
}

impl Named for MpscPool {
    const NAME: &'static str = "mpsc-pool-str";
}

impl<C: Channel + Named> System for StrPool<C> {
    fn name(&self) -> &'static str {
        C::NAME
    }
    fn run(&self, scenario: &Scenario, load: &Load) -> Measured {
        run_pool::<C, StreamId>(scenario, load)
    }
}
