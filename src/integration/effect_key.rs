//! [`effect_key`]: the idempotency key of an outbound effect, a function of (subscriber, event
//! position, index of the command among the event's commands) and of nothing else (R-INT-2):
//! a retry, a replay after a crash, a parked event's replay, or another process replaying the
//! same position derives the same key, so a completed effect is never run again.
//!
//! The key is `fx1:{position}:{index}:{subscriber}`; a subscriber name too long for that to fit
//! a key's 255 bytes is replaced by the SHA-256 of its text, `fx1h:{position}:{index}:{hex}`.
//! The two forms have different prefixes, so no short name's key equals a long name's; the
//! `1` versions the scheme (a future scheme gets another prefix, never a reinterpretation).

use sha2::{Digest, Sha256};

use super::command::hex;
use crate::store::IdempotencyKey;
use crate::StreamId;

/// The idempotency key of the `index`th command emitted for the event at `position` by
/// `subscriber`.
///
/// ```
/// use humpyard::integration::effect_key;
/// use humpyard::StreamId;
///
/// let subscriber = StreamId::new("orders-reactor")?;
/// assert_eq!(effect_key(&subscriber, 42, 0).as_str(), "fx1:42:0:orders-reactor");
/// # Ok::<(), humpyard::InvalidStreamId>(())
/// ```
pub fn effect_key(subscriber: &StreamId, position: u64, index: u32) -> IdempotencyKey {
    let short = format!("fx1:{position}:{index}:{}", subscriber.as_str());
    let text = if short.len() <= IdempotencyKey::MAX_LEN {
        short
    } else {
        let digest = Sha256::digest(subscriber.as_str().as_bytes());
        format!("fx1h:{position}:{index}:{}", hex(&digest))
    };
    // Both forms are ASCII without NUL, at most 5 + 20 + 1 + 10 + 1 + 64 bytes for the long one.
    IdempotencyKey::new(text).expect("an effect key is always a valid idempotency key")
}
