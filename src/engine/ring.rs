//! The bounded lock-free ring behind every shard's ingress and the pool's run queue.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue (the one crossbeam-queue's `ArrayQueue`
//! implements), with two changes: positions are plain 64-bit counters (so `tail` is also the
//! count of elements ever accepted, and the engine's `accepted` metric costs nothing), and bit 63
//! of `tail` is a *closed* mark that makes every later push fail with [`PushError::Closed`].
//!
//! # State
//!
//! - `tail`: the next position a producer claims (bits 0..63), and [`CLOSED`] (bit 63).
//!   Positions stay below 2^62 (centuries at 10^8 events/s), so doubled stamps cannot overflow.
//! - `head`: the next position a consumer takes. `head <= tail` always; `tail - head <= capacity`.
//! - Each slot has a `stamp`. For the slot of position `p`:
//!   `stamp == 2p` means free for the producer of `p`; `stamp == 2p + 1` means it holds the
//!   element of `p`; after the consumer takes it, `stamp == 2(p + capacity)` (free for the next
//!   lap). Doubling keeps "full" (odd) and "free" (even) apart for every capacity; with plain
//!   `p + 1` / `p + capacity` stamps a ring of capacity 1 cannot tell them apart.
//!
//! # Orderings
//!
//! - A producer claims `p` by a `Relaxed` CAS on `tail`: the CAS only arbitrates between
//!   producers; it orders no data.
//! - It writes the element, then stores `stamp = 2p + 1` with `Release`. A consumer loads the
//!   stamp with `Acquire` before reading the element: the write happens-before the read.
//! - The consumer reads the element, then stores `stamp = 2(p + capacity)` with `Release`; the next
//!   lap's producer loads it with `Acquire` before writing: the read happens-before the write.
//! - `close` is an `AcqRel` `fetch_or` on `tail`: a claim either precedes it (and is counted in
//!   the final tail) or fails on the mark.
//!
//! A full ring rejects at once and hands the element back: no retry loop, no waiting (R-BP-1).
//! The producer that claimed a position publishes it a few instructions later; a consumer that
//! finds the head slot claimed but not yet published treats the ring as empty, and the engine's
//! scheduling protocol (see `shard`) guarantees that producer schedules the shard afterwards.
//!
//! Once the ring is closed its tail is frozen: every position below it was claimed by a push
//! that returned `Ok` (or is about to), so its element must be handed back too.
//! [`pop_claimed`](Ring::pop_claimed) is the consumer side of that: it waits for a claimed
//! position's producer to publish (a preempted producer runs again within a time slice)
//! instead of stopping there, which would lose the element and every one behind it.

use std::fmt;
use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::sync::{spin_hint, thread, AtomicU64, Ordering, UnsafeCell};

/// The closed mark in `tail`.
const CLOSED: u64 = 1 << 63;

/// Why [`Ring::push`] handed its element back.
pub(crate) enum PushError<T> {
    /// `capacity` elements are waiting.
    Full(T),
    /// The ring was closed.
    Closed(T),
}

/// [`Ring::push_many`] found the ring closed and took nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

struct Slot<T> {
    /// See the module docs: `2p` free, `2p + 1` full, `2(p + capacity)` consumed.
    stamp: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded ring of at most `capacity` elements.
pub(crate) struct Ring<T> {
    /// Next position to claim; bit 63 is [`CLOSED`]. Written by producers.
    tail: CachePadded<AtomicU64>,
    /// Next position to take. Written by consumers.
    head: CachePadded<AtomicU64>,
    slots: Box<[Slot<T>]>,
    capacity: u64,
    /// `capacity - 1` when `capacity` is a power of two, so indexing is a mask, not a division.
    mask: Option<u64>,
}

// SAFETY: the ring moves `T`s between threads (so `T: Send` is needed) and never hands out
// references to them; every slot access is ordered by its stamp as the module docs describe.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above; shared access only moves values in and out through the stamp protocol.
unsafe impl<T: Send> Sync for Ring<T> {}

/// The memory a ring's slots need could not be allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AllocError {
    /// The bytes asked for.
    pub(crate) bytes: usize,
}

impl<T> Ring<T> {
    /// A ring holding at most `capacity` elements. `capacity` must be at least 1.
    pub(crate) fn new(capacity: usize) -> Ring<T> {
        match Ring::try_new(capacity) {
            Ok(ring) => ring,
            Err(e) => panic!("ring of {capacity} slots: cannot allocate {} bytes", e.bytes),
        }
    }

    /// A ring holding at most `capacity` elements, or an error if its slots cannot be
    /// allocated (the allocation is fallible: an engine reports it as a configuration error
    /// rather than aborting the process). `capacity` must be at least 1.
    pub(crate) fn try_new(capacity: usize) -> Result<Ring<T>, AllocError> {
        assert!(capacity >= 1, "ring capacity must be at least 1");
        let bytes = capacity.saturating_mul(std::mem::size_of::<Slot<T>>());
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).map_err(|_| AllocError { bytes })?;
        slots.extend((0..capacity as u64).map(|p| Slot {
            stamp: AtomicU64::new(2 * p),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }));
        let slots = slots.into_boxed_slice();
        let capacity = capacity as u64;
        Ok(Ring {
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            slots,
            capacity,
            mask: capacity.is_power_of_two().then(|| capacity - 1),
        })
    }

    #[inline]
    fn slot(&self, position: u64) -> &Slot<T> {
        let index = match self.mask {
            Some(mask) => position & mask,
            None => position % self.capacity,
        };
        &self.slots[index as usize]
    }

    /// Appends `value`, or hands it back at once if the ring is full or closed.
    #[inline]
    pub(crate) fn push(&self, value: T) -> Result<(), PushError<T>> {
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            if tail & CLOSED != 0 {
                return Err(PushError::Closed(value));
            }
            let slot = self.slot(tail);
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == 2 * tail {
                match self
                    .tail
                    .compare_exchange_weak(tail, tail + 1, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => {
                        crate::pause::point(crate::pause::PausePoint::AfterTailClaim);
                        // SAFETY: the CAS made this thread the only producer of `tail`, and the
                        // Acquire load of `stamp == 2 * tail` shows the consumer of the previous lap
                        // has finished reading the slot.
                        slot.value.with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
                        slot.stamp.store(2 * tail + 1, Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => tail = current,
                }
            } else if stamp.wrapping_add(2 * self.capacity) == 2 * tail + 1 {
                // The slot still holds the element of `tail - capacity`: `capacity` elements are
                // claimed and not yet consumed, unless `tail` moved meanwhile.
                let current = self.tail.load(Ordering::Relaxed);
                if current == tail {
                    return Err(PushError::Full(value));
                }
                tail = current;
            } else {
                // Another producer claimed `tail` first; catch up.
                spin_hint();
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Appends the next elements of `values`, at most `limit` of them and as many as there is
    /// room for, claiming all their positions with one compare-and-swap; returns how many it
    /// took (0: the ring is full). A closed ring takes none. The elements left in `values`
    /// were not taken, and come after those that were.
    ///
    /// `values` is a `Vec`'s own iterator: nothing between the claim and the last publish can
    /// panic or come up short (a claimed position left unpublished would wedge the ring: its
    /// consumer, the next lap's producers and shutdown's collection would all wait on it).
    ///
    /// The claim is bounded by the consumer's `head` (loaded `Acquire`): with the shard's
    /// consumer (`pop_exclusive`, which publishes `head` after each slot's stamp), every
    /// claimed slot is free then. Each slot's stamp is still checked before its write, so a
    /// ring consumed by racing `pop_shared` calls (which move `head` before the stamp) is
    /// written only once its slot is free too. The claimed positions are published in order,
    /// as single pushes are.
    pub(crate) fn push_many(&self, values: &mut std::vec::IntoIter<T>, limit: usize) -> Result<usize, Closed> {
        let want = values.len().min(limit) as u64;
        if want == 0 {
            return Ok(0);
        }
        let mut tail = self.tail.load(Ordering::Relaxed);
        let (start, n) = loop {
            if tail & CLOSED != 0 {
                return Err(Closed);
            }
            // A stale (older) head only makes the room look smaller; a stale tail fails the CAS.
            let head = self.head.load(Ordering::Acquire);
            let room = self.capacity.saturating_sub(tail.saturating_sub(head));
            let n = want.min(room);
            if n == 0 {
                let current = self.tail.load(Ordering::Relaxed);
                if current == tail {
                    return Ok(0);
                }
                tail = current;
                continue;
            }
            match self
                .tail
                .compare_exchange_weak(tail, tail + n, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break (tail, n),
                Err(current) => tail = current,
            }
        };
        crate::pause::point(crate::pause::PausePoint::AfterTailClaim);
        for (position, value) in (start..start + n).zip(values.by_ref()) {
            let slot = self.slot(position);
            let mut spins = 0u32;
            while slot.stamp.load(Ordering::Acquire) != 2 * position {
                // Only a racing `pop_shared` between its head CAS and its stamp store.
                if spins < 64 {
                    spins += 1;
                    spin_hint();
                } else {
                    thread::yield_now();
                }
            }
            // SAFETY: the CAS made this thread the only producer of `position`, and the Acquire
            // load of `stamp == 2 * position` shows the previous lap's consumer has finished
            // reading the slot.
            slot.value.with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
            slot.stamp.store(2 * position + 1, Ordering::Release);
        }
        Ok(n as usize)
    }

    /// Takes the oldest element, if one is published.
    ///
    /// # Safety
    ///
    /// No other thread may call `pop_exclusive` or `pop_shared` on this ring at the same time,
    /// and successive consumers must be ordered by happens-before (the shard's run handoff).
    #[inline]
    pub(crate) unsafe fn pop_exclusive(&self) -> Option<T> {
        let head = self.head.load(Ordering::Relaxed);
        let slot = self.slot(head);
        if slot.stamp.load(Ordering::Acquire) != 2 * head + 1 {
            return None;
        }
        // SAFETY: `stamp == 2 * head + 1` (Acquire) shows the element of `head` is written, and the
        // caller guarantees no other consumer takes it.
        let value = slot.value.with(|p| unsafe { p.read().assume_init() });
        slot.stamp.store(2 * (head + self.capacity), Ordering::Release);
        self.head.store(head + 1, Ordering::Release);
        Some(value)
    }

    /// Takes the oldest element of a closed ring, waiting for its producer to publish it if
    /// its position is claimed and not yet published; `None` once every claimed position is
    /// taken.
    ///
    /// # Safety
    ///
    /// As [`pop_exclusive`](Self::pop_exclusive). The ring must be closed (its tail frozen).
    pub(crate) unsafe fn pop_claimed(&self) -> Option<T> {
        let mut spins = 0u32;
        loop {
            // SAFETY: forwarded from the caller: this thread is the only consumer.
            if let Some(value) = unsafe { self.pop_exclusive() } {
                return Some(value);
            }
            let tail = self.tail.load(Ordering::Acquire);
            debug_assert!(tail & CLOSED != 0, "pop_claimed on an open ring");
            if self.head.load(Ordering::Relaxed) >= tail & !CLOSED {
                return None;
            }
            // The position is claimed: its producer is between its claim and its publish, a
            // few instructions, unless it was preempted there. Wait for it, yielding.
            if spins < 64 {
                spins += 1;
                spin_hint();
            } else {
                thread::yield_now();
            }
        }
    }

    /// Takes the oldest element, if one is published; any number of consumers may race.
    #[inline]
    pub(crate) fn pop_shared(&self) -> Option<T> {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(head);
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == 2 * head + 1 {
                match self
                    .head
                    .compare_exchange_weak(head, head + 1, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => {
                        // SAFETY: the CAS made this thread the only consumer of `head`, and the
                        // Acquire load of `stamp == 2 * head + 1` shows the element is written.
                        let value = slot.value.with(|p| unsafe { p.read().assume_init() });
                        slot.stamp.store(2 * (head + self.capacity), Ordering::Release);
                        return Some(value);
                    }
                    Err(current) => head = current,
                }
            } else if stamp == 2 * head {
                // Not yet published (or empty): the producer wakes a consumer after publishing.
                return None;
            } else {
                // Another consumer took `head` first; catch up.
                spin_hint();
                head = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Whether the element at the head is published. Callers that race with producers put a
    /// `SeqCst` fence before this check (see `shard`), which is why a `Relaxed` load suffices.
    #[inline]
    pub(crate) fn has_ready(&self) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        self.slot(head).stamp.load(Ordering::Relaxed) == 2 * head + 1
    }

    /// Closes the ring: every later push fails with [`PushError::Closed`].
    pub(crate) fn close(&self) {
        self.tail.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// How many elements were ever accepted (claimed positions).
    #[inline]
    pub(crate) fn accepted(&self) -> u64 {
        self.tail.load(Ordering::Acquire) & !CLOSED
    }

    /// How many elements were ever taken.
    #[inline]
    pub(crate) fn taken(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// The most elements the ring holds.
    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Accepted and not yet taken (a snapshot).
    pub(crate) fn len(&self) -> u64 {
        let head = self.taken();
        self.accepted().saturating_sub(head)
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // `&mut self`: no producer or consumer is left, so every claimed position is published.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed) & !CLOSED;
        for position in head..tail {
            let slot = self.slot(position);
            if slot.stamp.load(Ordering::Relaxed) == 2 * position + 1 {
                // SAFETY: the slot holds the published, untaken element of `position`.
                slot.value.with_mut(|p| unsafe { (*p).assume_init_drop() });
            }
        }
    }
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity)
            .field("accepted", &self.accepted())
            .field("taken", &self.taken())
            .finish()
    }
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_full_and_closed_hand_the_value_back() {
        let ring = Ring::new(3);
        for i in 0..3 {
            assert!(ring.push(i).is_ok());
        }
        assert!(matches!(ring.push(9), Err(PushError::Full(9))));
        // SAFETY: single-threaded test, one consumer.
        assert_eq!(unsafe { ring.pop_exclusive() }, Some(0));
        assert!(ring.push(3).is_ok());
        ring.close();
        assert!(matches!(ring.push(7), Err(PushError::Closed(7))));
        let rest: Vec<_> = std::iter::from_fn(|| ring.pop_shared()).collect();
        assert_eq!(rest, vec![1, 2, 3]);
        assert_eq!(ring.accepted(), 4);
        assert_eq!(ring.len(), 0);
    }

    #[test]
    fn push_many_takes_what_fits_in_order_and_leaves_the_rest() {
        let ring = Ring::new(4);
        assert!(ring.push(0).is_ok());
        let mut values = vec![1, 2, 3, 4, 5].into_iter();
        assert_eq!(ring.push_many(&mut values, 2), Ok(2), "at most the limit");
        assert_eq!(ring.push_many(&mut values, usize::MAX), Ok(1), "what fits");
        assert_eq!(values.as_slice(), &[4, 5], "the rest, in order");
        assert_eq!(ring.push_many(&mut values, usize::MAX), Ok(0), "full");
        // SAFETY: single-threaded test, one consumer.
        assert_eq!(unsafe { ring.pop_exclusive() }, Some(0));
        assert_eq!(ring.push_many(&mut values, usize::MAX), Ok(1));
        ring.close();
        assert_eq!(ring.push_many(&mut values, usize::MAX), Err(Closed));
        assert_eq!(values.as_slice(), &[5]);
        let all: Vec<_> = std::iter::from_fn(|| ring.pop_shared()).collect();
        assert_eq!(all, vec![1, 2, 3, 4]);
        assert_eq!(ring.accepted(), 5);
    }

    #[test]
    fn capacity_one_holds_exactly_one() {
        let ring = Ring::new(1);
        for round in 0..3 {
            assert!(ring.push(round).is_ok());
            assert!(matches!(ring.push(99), Err(PushError::Full(99))), "round {round}");
            assert_eq!(ring.pop_shared(), Some(round));
            assert_eq!(ring.pop_shared(), None);
        }
    }

    #[test]
    fn pop_claimed_takes_every_accepted_element_of_a_closed_ring() {
        let ring = Ring::new(4);
        for i in 0..3 {
            assert!(ring.push(i).is_ok());
        }
        ring.close();
        // SAFETY: single-threaded test, one consumer; the ring is closed.
        let taken: Vec<_> = std::iter::from_fn(|| unsafe { ring.pop_claimed() }).collect();
        assert_eq!(taken, vec![0, 1, 2]);
    }

    #[test]
    fn an_allocation_that_fails_is_an_error_not_an_abort() {
        // More bytes than any allocator gives: try_reserve fails before touching memory.
        let e = Ring::<[u8; 1 << 16]>::try_new(usize::MAX >> 20).expect_err("refused");
        assert!(e.bytes > 1 << 40);
    }

    #[test]
    fn drop_releases_untaken_elements() {
        let marker = std::sync::Arc::new(());
        let ring = Ring::new(4);
        for _ in 0..3 {
            assert!(ring.push(marker.clone()).is_ok());
        }
        drop(ring);
        assert_eq!(std::sync::Arc::strong_count(&marker), 1);
    }
}
