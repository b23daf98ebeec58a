//! A shard's live entities: stream id -> state, kept in recency order.
//!
//! Only the thread running the shard touches its table (the shard's run is exclusive), so
//! dispatch, idle reaping and cap eviction are plain sequential code and cannot race: whatever
//! removes an entity removes exactly the one it looked at (R-CONC-2).
//!
//! # Layout
//!
//! Entities (id and state) live in a slab (`Vec<Slot>`); freed slots form a free list. Their
//! recency order is a doubly linked list by slab index whose links and activity stamps live in
//! a separate dense array (`Vec<Recency>`, 16 bytes per slot), so moving an entity to the newest
//! end touches its neighbours' 16-byte records, not their whole entities (most of the per-event
//! cost here is cache misses). The index is a `hashbrown::HashTable<u32>` of slab indices hashed
//! by the id's precomputed hash, so the id is stored once (in the slab) and the index costs
//! about five bytes per bucket. Per entity the table adds the 16-byte recency record and the
//! index bucket to the id and the user's state.
//!
//! Touching an entity moves it to the newest end (O(1)); the idle reaper and the cap evictor take
//! from the oldest end, so reaping costs what expires, never a scan (R-RES-2).

use hashbrown::HashTable;

use crate::StreamKey;

/// "No slot": the end of a list.
const NIL: u32 = u32::MAX;

/// One live entity.
struct Entity<K, S> {
    id: K,
    state: S,
}

/// A slot's place in the recency order (meaningful while the slot is live).
#[derive(Clone, Copy)]
struct Recency {
    /// When it last handled an event, in engine ticks (nanoseconds since the engine started).
    last_active: u64,
    /// Towards the newest end.
    newer: u32,
    /// Towards the oldest end.
    older: u32,
}

enum Slot<K, S> {
    Live(Entity<K, S>),
    Free { next_free: u32 },
}

/// The entity table of one shard.
pub(crate) struct EntityTable<K, S> {
    index: HashTable<u32>,
    slots: Vec<Slot<K, S>>,
    /// Parallel to `slots`.
    recency: Vec<Recency>,
    /// Head of the free list.
    free: u32,
    newest: u32,
    oldest: u32,
    len: usize,
    /// Random per table: see [`index_hash`].
    key: u64,
}

/// The hash the index uses: the key's table hash under the table's random `key`
/// (`Sealed::table_hash` in `key.rs`; for a `StreamId`, its precomputed hash mixed with `key`).
///
/// The shard was chosen from the stable hash's high bits, so every id in one shard shares them;
/// the murmur3 finaliser spreads every bit into the bucket bits and hashbrown's tag. The stable
/// hash is a fixed public function (it must be, for partitioning across processes), so without
/// the per-table key a sender of chosen stream ids could aim them all at one bucket.
#[inline]
fn index_hash<K: StreamKey>(id: &K, key: u64) -> u64 {
    id.table_hash(key)
}

impl<K: StreamKey, S> EntityTable<K, S> {
    /// An empty table whose index is keyed by `key` (random per table).
    pub(crate) fn new(key: u64) -> EntityTable<K, S> {
        EntityTable {
            key,
            index: HashTable::new(),
            slots: Vec::new(),
            recency: Vec::new(),
            free: NIL,
            newest: NIL,
            oldest: NIL,
            len: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn entity(&self, slot: u32) -> &Entity<K, S> {
        match &self.slots[slot as usize] {
            Slot::Live(entity) => entity,
            Slot::Free { .. } => unreachable!("entity table: link to a free slot"),
        }
    }

    fn entity_mut(&mut self, slot: u32) -> &mut Entity<K, S> {
        match &mut self.slots[slot as usize] {
            Slot::Live(entity) => entity,
            Slot::Free { .. } => unreachable!("entity table: link to a free slot"),
        }
    }

    /// The slot of `id`'s entity, if it is live.
    #[inline]
    pub(crate) fn find(&self, id: &K) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(index_hash(id, self.key), |&slot| match &slots[slot as usize] {
                Slot::Live(entity) => entity.id == *id,
                Slot::Free { .. } => false,
            })
            .copied()
    }

    /// Marks the entity in `slot` active at `now` and moves it to the newest end.
    #[inline]
    pub(crate) fn touch(&mut self, slot: u32, now: u64) {
        self.recency[slot as usize].last_active = now;
        if self.newest != slot {
            self.unlink(slot);
            self.link_newest(slot);
        }
    }

    /// The state in `slot`.
    #[inline]
    pub(crate) fn state_mut(&mut self, slot: u32) -> &mut S {
        &mut self.entity_mut(slot).state
    }

    /// Inserts a new entity (the id must not be live) as the newest; returns its slot.
    pub(crate) fn insert(&mut self, id: K, state: S, now: u64) -> u32 {
        debug_assert!(self.find(&id).is_none());
        let hash = index_hash(&id, self.key);
        let entity = Entity { id, state };
        let recency = Recency {
            last_active: now,
            newer: NIL,
            older: NIL,
        };
        let slot = if self.free != NIL {
            let slot = self.free;
            self.free = match self.slots[slot as usize] {
                Slot::Free { next_free } => next_free,
                Slot::Live(_) => unreachable!("entity table: free list holds a live slot"),
            };
            self.slots[slot as usize] = Slot::Live(entity);
            self.recency[slot as usize] = recency;
            slot
        } else {
            assert!(
                self.slots.len() < NIL as usize,
                "entity table: more than u32::MAX entities in one shard"
            );
            self.slots.push(Slot::Live(entity));
            self.recency.push(recency);
            (self.slots.len() - 1) as u32
        };
        let (slots, key) = (&self.slots, self.key);
        self.index.insert_unique(hash, slot, |&s| match &slots[s as usize] {
            Slot::Live(entity) => index_hash(&entity.id, key),
            Slot::Free { .. } => unreachable!("entity table: index holds a free slot"),
        });
        self.link_newest(slot);
        self.len += 1;
        slot
    }

    /// Removes the entity in `slot` and hands back its id and state.
    pub(crate) fn remove(&mut self, slot: u32) -> (K, S) {
        self.unlink(slot);
        let hash = index_hash(&self.entity(slot).id, self.key);
        match self.index.find_entry(hash, |&s| s == slot) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => unreachable!("entity table: live slot missing from the index"),
        }
        let old = std::mem::replace(&mut self.slots[slot as usize], Slot::Free { next_free: self.free });
        self.free = slot;
        self.len -= 1;
        match old {
            Slot::Live(entity) => (entity.id, entity.state),
            Slot::Free { .. } => unreachable!("entity table: removing a free slot"),
        }
    }

    /// The least recently active entity: its slot and when it was last active.
    #[inline]
    pub(crate) fn oldest(&self) -> Option<(u32, u64)> {
        (self.oldest != NIL).then(|| (self.oldest, self.recency[self.oldest as usize].last_active))
    }

    /// Removes every entity, oldest first.
    pub(crate) fn drain(&mut self) -> Vec<(K, S)> {
        let mut out = Vec::with_capacity(self.len);
        while let Some((slot, _)) = self.oldest() {
            out.push(self.remove(slot));
        }
        self.slots = Vec::new();
        self.recency = Vec::new();
        self.free = NIL;
        self.index = HashTable::new();
        out
    }

    fn unlink(&mut self, slot: u32) {
        let Recency { newer, older, .. } = self.recency[slot as usize];
        if newer != NIL {
            self.recency[newer as usize].older = older;
        } else {
            self.newest = older;
        }
        if older != NIL {
            self.recency[older as usize].newer = newer;
        } else {
            self.oldest = newer;
        }
    }

    fn link_newest(&mut self, slot: u32) {
        let previous = self.newest;
        let me = &mut self.recency[slot as usize];
        me.newer = NIL;
        me.older = previous;
        if previous != NIL {
            self.recency[previous as usize].newer = slot;
        } else {
            self.oldest = slot;
        }
        self.newest = slot;
    }
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;
    use crate::StreamId;

    fn id(s: &str) -> StreamId {
        StreamId::new(s).unwrap()
    }

    #[test]
    fn recency_order_follows_touches() {
        let mut table = EntityTable::new(0x1234_5678);
        let a = table.insert(id("a"), 1, 10);
        let b = table.insert(id("b"), 2, 20);
        let _c = table.insert(id("c"), 3, 30);
        assert_eq!(table.oldest(), Some((a, 10)));
        table.touch(a, 40);
        assert_eq!(table.oldest(), Some((b, 20)));
        assert_eq!(table.remove(b), (id("b"), 2));
        assert_eq!(table.find(&id("b")), None);
        let d = table.insert(id("d"), 4, 50);
        assert_eq!(d, b, "freed slot is reused");
        let order: Vec<_> = table.drain().into_iter().map(|(k, _)| k.as_str().to_owned()).collect();
        assert_eq!(order, ["c", "a", "d"]);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn ids_aimed_at_one_bucket_under_one_key_spread_under_another() {
        // An attacker who knew the key could pick ids sharing a bucket; with another key (each
        // table draws its own at random) the same ids spread out.
        let aimed: Vec<StreamId> = (0u64..)
            .map(|i| id(&format!("x{i}")))
            .filter(|s| index_hash(s, 1) & 0x3ff == 0)
            .take(64)
            .collect();
        let buckets: std::collections::HashSet<u64> = aimed.iter().map(|s| index_hash(s, 2) & 0x3ff).collect();
        assert!(buckets.len() > 50, "only {} distinct buckets", buckets.len());
    }

    #[test]
    fn many_entities_round_trip() {
        let mut table = EntityTable::new(0x1234_5678);
        for i in 0..10_000u64 {
            table.insert(id(&format!("s{i}")), i, i);
        }
        for i in (0..10_000u64).step_by(2) {
            let slot = table.find(&id(&format!("s{i}"))).unwrap();
            assert_eq!(*table.state_mut(slot), i);
            table.remove(slot);
        }
        assert_eq!(table.len(), 5_000);
        assert_eq!(table.oldest().map(|(_, t)| t), Some(1));
    }
}
