//! The pool's run queue: shards that are `SCHEDULED` and wait for a worker.
//!
//! One lane (a [`Ring`]) per worker. A shard has a home worker (`shard % workers`) and is
//! always queued in its home lane; a worker takes from its own lane first and steals from the
//! others only when its own is empty. So while the load is even, each shard keeps running on
//! the same thread and its entity table stays in that thread's cache (as a statically sharded
//! pool's would), and when one worker falls behind (a hot or slow shard) the others take its
//! queued shards instead of idling.
//!
//! A shard is queued at most once (only the thread that moved it to `Scheduled` pushes it), and
//! only in its home lane, so a lane holds at most its home shards (`ceil(shards / workers)`),
//! plus one slot per worker that may be in the middle of taking one (a consumer has claimed
//! the slot and not yet released it). A lane of that many slots never fills; the push's retry
//! is a guard, never taken.
//!
//! Wake-ups: the pusher fences (`SeqCst`) and wakes a parked worker, preferring the lane's
//! owner; a worker going to sleep registers, fences and re-checks *every* lane
//! ([`RunQueue::has_ready`]) before parking (see `sleepers`).

use crate::engine::ring::{PushError, Ring};
use crate::sync::spin_hint;

/// Queued shards, one lane per worker.
#[derive(Debug)]
pub(crate) struct RunQueue {
    lanes: Box<[Ring<usize>]>,
}

impl RunQueue {
    /// Lanes for `workers` workers, each with room for its home shards and one slot per
    /// worker (see the module docs).
    pub(crate) fn new(workers: usize, shards: usize) -> RunQueue {
        let workers = workers.max(1);
        let home = shards.div_ceil(workers);
        RunQueue {
            lanes: (0..workers).map(|_| Ring::new(home + workers)).collect(),
        }
    }

    /// The worker whose lane queues `shard`.
    #[inline]
    pub(crate) fn home(&self, shard: usize) -> usize {
        shard % self.lanes.len()
    }

    /// Queues `shard` in its home lane. The caller then fences and wakes a worker.
    pub(crate) fn push(&self, shard: usize) {
        let lane = &self.lanes[self.home(shard)];
        let mut shard = shard;
        loop {
            match lane.push(shard) {
                Ok(()) => return,
                Err(PushError::Full(s) | PushError::Closed(s)) => {
                    shard = s;
                    spin_hint();
                }
            }
        }
    }

    /// Takes a shard for `worker`: from its own lane, else the oldest of another lane's.
    #[inline]
    pub(crate) fn pop(&self, worker: usize) -> Option<usize> {
        let n = self.lanes.len();
        (0..n).find_map(|i| self.lanes[(worker + i) % n].pop_shared())
    }

    /// Whether `worker`'s own lane holds a shard (a snapshot).
    #[inline]
    pub(crate) fn own_has_ready(&self, worker: usize) -> bool {
        self.lanes[worker % self.lanes.len()].has_ready()
    }

    /// Whether any lane holds a shard. Callers fence (`SeqCst`) first (see `sleepers`).
    #[inline]
    pub(crate) fn has_ready(&self) -> bool {
        self.lanes.iter().any(Ring::has_ready)
    }
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;

    #[test]
    fn own_lane_first_then_steal_oldest() {
        let q = RunQueue::new(2, 4);
        q.push(1); // home 1
        q.push(0); // home 0
        q.push(3); // home 1
        assert_eq!(q.pop(0), Some(0), "own lane first");
        assert_eq!(q.pop(0), Some(1), "then steal from lane 1, oldest first");
        assert!(q.has_ready() && q.own_has_ready(1) && !q.own_has_ready(0));
        assert_eq!(q.pop(1), Some(3));
        assert_eq!(q.pop(1), None);
        assert!(!q.has_ready());
    }

    #[test]
    fn a_lane_holds_every_shard() {
        let q = RunQueue::new(3, 10);
        for shard in (0..10).filter(|s| s % 3 == 0) {
            q.push(shard);
        }
        let mut taken: Vec<_> = std::iter::from_fn(|| q.pop(2)).collect();
        taken.sort_unstable();
        assert_eq!(taken, vec![0, 3, 6, 9]);
    }
}
