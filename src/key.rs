//! [`StreamKey`]: what names a stream in the engine — a [`StreamId`], or an integer or UUID
//! entity id.
//!
//! The engine needs three things of a key: equality (the entity table finds a stream's state
//! by it), a stable 64-bit hash (the shard and the table's bucket come from it, and it must be
//! the same in every process, like [`StreamId::hash_u64`]) and a text form for logs and
//! reports. The trait is sealed: the hashes of every key type are the crate's own, and every
//! value of every key type is valid (integers and UUIDs need no checks; a `StreamId` was
//! checked when it was made).
//!
//! The stable hash is public, so keys that share a shard can be chosen by whoever chooses the
//! keys, as with any fixed routing. The entity table indexes by another hash, keyed by a random
//! seed per table (`Sealed::table_hash`), so chosen keys do not share a bucket: for keys of up
//! to 64 bits the stable hash is a bijection and the seed is mixed into it; for 128-bit keys,
//! whose 64-bit stable hash has choosable collisions, the seed enters before the fold.
//!
//! A [`StreamId`] carries its hash, computed once when it was made. The integer keys hash with
//! the murmur3 finaliser (a bijection on 64 bits, so distinct `u64` keys never share a hash),
//! a handful of instructions per event. A `u64` key makes the engine's queue element 24 bytes
//! with a `u64` payload where a `StreamId` makes it 48, and the entity table compares 8 bytes
//! instead of the id's text.

use std::fmt;
use std::hash::Hash;

use crate::stream_id::fmix64;
use crate::StreamId;

/// The type that names a stream: [`StreamId`] (the default everywhere), `u64`, `u32`, `i64`,
/// `i32`, `u128` or [`uuid::Uuid`].
///
/// Choose it with [`KeyedHandler::Key`](crate::KeyedHandler::Key); a [`Handler`](crate::Handler)
/// uses `StreamId`. Sealed: implemented by the crate for these types only.
pub trait StreamKey: Clone + Eq + Hash + fmt::Debug + fmt::Display + Send + Sync + 'static + sealed::Sealed {
    /// The key's stable 64-bit hash: a fixed function of the value, the same in every process.
    fn stable_hash(&self) -> u64;
}

pub(crate) mod sealed {
    /// Keeps [`StreamKey`](super::StreamKey) to the crate's key types, and holds what only the
    /// crate calls.
    pub trait Sealed {
        /// The hash a shard's entity table indexes the key by, keyed by the table's random
        /// `seed`: keys that share a [`stable_hash`](super::StreamKey::stable_hash) (which is
        /// public, so such keys can be chosen) must not share a bucket in every table.
        fn table_hash(&self, seed: u64) -> u64;
    }
}

/// The table hash of a key whose stable hash is a bijection of its value (or, for a
/// `StreamId`, whose collisions are the text hash's): the stable hash mixed with the seed.
#[inline]
fn seeded(stable: u64, seed: u64) -> u64 {
    fmix64(stable ^ seed)
}

impl sealed::Sealed for StreamId {
    #[inline]
    fn table_hash(&self, seed: u64) -> u64 {
        seeded(self.hash_u64(), seed)
    }
}
impl StreamKey for StreamId {
    #[inline]
    fn stable_hash(&self) -> u64 {
        self.hash_u64()
    }
}

macro_rules! integer_key {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {
            #[inline]
            fn table_hash(&self, seed: u64) -> u64 {
                seeded(self.stable_hash(), seed)
            }
        }
        impl StreamKey for $t {
            #[inline]
            fn stable_hash(&self) -> u64 {
                // Sign-extension for the signed types is a bijection too: distinct values,
                // distinct hashes.
                fmix64(*self as u64)
            }
        }
    )*};
}

integer_key!(u64, u32, i64, i32);

impl sealed::Sealed for u128 {
    /// The seed enters before the halves are folded, so which pairs of keys collide depends on
    /// it (folding first, as `stable_hash` does, would keep every chosen collision).
    #[inline]
    fn table_hash(&self, seed: u64) -> u64 {
        fmix64(fmix64((*self as u64) ^ seed) ^ (*self >> 64) as u64)
    }
}
impl StreamKey for u128 {
    /// 128 bits folded into 64: unlike the smaller integers', its collisions can be chosen, so
    /// its entity-table hash is keyed before the fold (see `table_hash`).
    #[inline]
    fn stable_hash(&self) -> u64 {
        fmix64((*self as u64) ^ fmix64((*self >> 64) as u64))
    }
}

impl sealed::Sealed for uuid::Uuid {
    #[inline]
    fn table_hash(&self, seed: u64) -> u64 {
        self.as_u128().table_hash(seed)
    }
}
impl StreamKey for uuid::Uuid {
    #[inline]
    fn stable_hash(&self) -> u64 {
        self.as_u128().stable_hash()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // proves R-PERF-4: integer keys spread over the hash's high bits (which pick the shard) even
    /// when the keys are consecutive, and distinct `u64` keys never share a hash.
    #[test]
    fn consecutive_integer_keys_spread_over_the_shards() {
        let shards = 16u128;
        let mut counts = [0u32; 16];
        for key in 0u64..16_000 {
            counts[((u128::from(key.stable_hash()) * shards) >> 64) as usize] += 1;
        }
        for count in counts {
            assert!((800..1200).contains(&count), "{counts:?}");
        }
        let hashes: std::collections::HashSet<u64> = (0u64..100_000).map(|k| k.stable_hash()).collect();
        assert_eq!(hashes.len(), 100_000);
    }

    // proves R-PERF-4 (no chosen input slows the entity table): 128-bit keys chosen to share a
    // stable hash do not share a table hash, whatever the table's seed.
    #[test]
    fn chosen_u128_collisions_do_not_collide_in_the_table() {
        use sealed::Sealed;
        // (hi, lo) and (hi', lo ^ fmix64(hi) ^ fmix64(hi')) share the stable hash.
        let aimed: Vec<u128> = (0u64..1000)
            .map(|hi| {
                let lo = 7 ^ fmix64(0) ^ fmix64(hi);
                (u128::from(hi) << 64) | u128::from(lo)
            })
            .collect();
        assert!(aimed.iter().all(|k| k.stable_hash() == aimed[0].stable_hash()));
        for seed in [1u64, 0x9e37_79b9_7f4a_7c15, u64::MAX] {
            let hashes: std::collections::HashSet<u64> = aimed.iter().map(|k| k.table_hash(seed)).collect();
            assert_eq!(hashes.len(), aimed.len(), "seed {seed:#x}");
        }
    }

    // proves R-PERF-4: the hash is a fixed function of the value, the same in every process.
    #[test]
    fn key_hashes_are_stable() {
        assert_eq!(7u64.stable_hash(), fmix64(7));
        assert_eq!(7u32.stable_hash(), 7u64.stable_hash());
        assert_eq!((-1i64).stable_hash(), u64::MAX.stable_hash());
        let id = StreamId::new("order-7").unwrap();
        assert_eq!(id.stable_hash(), id.hash_u64());
        let uuid = uuid::Uuid::from_u128(7);
        assert_eq!(uuid.stable_hash(), 7u128.stable_hash());
    }
}
