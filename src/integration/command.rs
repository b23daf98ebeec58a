//! [`Command`]: what a reaction to an event asks the outside world to do, as an opaque value: a
//! validated [`RouteName`] (which command handler performs it) and a JSON payload.
//!
//! A command is built only through a validated constructor ([`Command::new`],
//! [`Command::encode`]); a bad route name or a payload the store could not hold (a NUL
//! character: commands are parked in the store with their event) is a typed error that hands
//! the route and payload back. [`Command::fingerprint`] is a stable hash of the command
//! (SHA-256 of its canonical JSON: keys sorted, no whitespace), the same in every process and
//! every version of Rust, for fixtures keyed by command.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::json_is_storable;
use crate::{InvalidStreamId, StreamId};

/// The name a command is routed by: the rules of a [`StreamId`] (1 to 255 bytes; ASCII letters,
/// digits and `-_.:@+/=`; a letter or digit first), e.g. `inventory.reserve`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteName(StreamId);

impl RouteName {
    /// Checks `name`.
    ///
    /// # Errors
    ///
    /// The rule `name` breaks.
    pub fn new(name: &str) -> Result<RouteName, InvalidStreamId> {
        StreamId::new(name).map(RouteName)
    }

    /// The name's text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command: a route name and a JSON payload. Built only through [`Command::new`] or
/// [`Command::encode`].
///
/// ```
/// use humpyard::integration::Command;
/// use serde_json::json;
///
/// let command = Command::new("inventory.reserve", json!({ "sku": "A-1", "qty": 2 }))?;
/// assert_eq!(command.route().as_str(), "inventory.reserve");
/// assert!(Command::new("no spaces", json!(null)).is_err());
/// # Ok::<(), humpyard::integration::InvalidCommand>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    route: RouteName,
    payload: Value,
}

/// Why a command could not be built; it hands the route and the payload back.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidCommand {
    route: String,
    payload: Value,
    problem: CommandProblem,
}

/// What is wrong with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandProblem {
    /// The route name breaks a rule.
    RouteName(InvalidStreamId),
    /// The payload holds a NUL character (U+0000) in a string or an object key, which the
    /// store cannot keep (a command is parked with its event).
    NulCharacter,
}

/// [`Command::encode`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum EncodeCommandError {
    /// The value did not serialize to JSON.
    Serialize {
        /// The route the command was for.
        route: String,
        /// serde's error.
        source: serde_json::Error,
    },
    /// The route or the serialized payload was refused.
    Invalid(InvalidCommand),
}

/// [`Command::decode`] failed: the payload is not a `T`.
#[derive(Debug)]
pub struct DecodeCommandError {
    route: RouteName,
    source: serde_json::Error,
}

impl Command {
    /// A command for `route` carrying `payload`.
    ///
    /// # Errors
    ///
    /// [`InvalidCommand`] (with the route and payload) for a bad route name or a payload with a
    /// NUL character.
    pub fn new(route: &str, payload: Value) -> Result<Command, InvalidCommand> {
        let refuse = |problem| InvalidCommand {
            route: route.to_owned(),
            payload: payload.clone(),
            problem,
        };
        let name = RouteName::new(route).map_err(|reason| refuse(CommandProblem::RouteName(reason)))?;
        if !json_is_storable(&payload) {
            return Err(refuse(CommandProblem::NulCharacter));
        }
        Ok(Command { route: name, payload })
    }

    /// A command for `route` carrying `value` serialized to JSON.
    ///
    /// # Errors
    ///
    /// [`EncodeCommandError::Serialize`] if `value` does not serialize,
    /// [`EncodeCommandError::Invalid`] as [`Command::new`].
    pub fn encode<T: Serialize + ?Sized>(route: &str, value: &T) -> Result<Command, EncodeCommandError> {
        let payload = serde_json::to_value(value).map_err(|source| EncodeCommandError::Serialize {
            route: route.to_owned(),
            source,
        })?;
        Command::new(route, payload).map_err(EncodeCommandError::Invalid)
    }

    /// The route.
    pub fn route(&self) -> &RouteName {
        &self.route
    }

    /// The payload.
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// The payload as a `T`.
    ///
    /// # Errors
    ///
    /// [`DecodeCommandError`] (naming the route) if the payload is not a `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeCommandError> {
        T::deserialize(&self.payload).map_err(|source| DecodeCommandError {
            route: self.route.clone(),
            source,
        })
    }

    /// The route and the payload.
    pub fn into_parts(self) -> (RouteName, Value) {
        (self.route, self.payload)
    }

    /// The command as canonical JSON: `{"payload":...,"route":"..."}`, every object's keys
    /// sorted by their UTF-8 bytes, no whitespace, numbers and strings as serde_json writes
    /// them. Equal commands give equal text, whatever order their objects were built in.
    pub fn canonical_json(&self) -> String {
        let mut out = String::new();
        out.push_str("{\"payload\":");
        write_canonical(&self.payload, &mut out);
        out.push_str(",\"route\":");
        write_canonical(&Value::String(self.route.as_str().to_owned()), &mut out);
        out.push('}');
        out
    }

    /// SHA-256 of [`canonical_json`](Self::canonical_json): stable across processes, platforms
    /// and Rust versions (never `std::hash`).
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_json().as_bytes()).into()
    }

    /// [`fingerprint`](Self::fingerprint) as 64 lowercase hex digits.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint())
    }
}

/// Lowercase hex digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Writes `value` with every object's keys sorted (whatever order the map keeps them in).
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(&Value::String(key.clone()), out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        // Scalars: serde_json's own compact text (strings escaped, numbers as written).
        scalar => out.push_str(&scalar.to_string()),
    }
}

impl InvalidCommand {
    /// What is wrong.
    pub fn problem(&self) -> &CommandProblem {
        &self.problem
    }

    /// The route and the payload, handed back.
    pub fn into_parts(self) -> (String, Value) {
        (self.route, self.payload)
    }
}

impl fmt::Display for InvalidCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            // The rule it breaks is the source.
            CommandProblem::RouteName(_) => write!(f, "invalid route name {:?}", self.route),
            CommandProblem::NulCharacter => write!(
                f,
                "the payload of a command for {:?} holds a NUL character, which the store cannot keep",
                self.route
            ),
        }
    }
}

impl std::error::Error for InvalidCommand {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            CommandProblem::RouteName(reason) => Some(reason),
            CommandProblem::NulCharacter => None,
        }
    }
}

impl fmt::Display for EncodeCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeCommandError::Serialize { route, .. } => {
                write!(f, "the payload of a command for {route:?} did not serialize")
            }
            // Transparent: the command's own error speaks, with its own source.
            EncodeCommandError::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for EncodeCommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EncodeCommandError::Serialize { source, .. } => Some(source),
            EncodeCommandError::Invalid(e) => e.source(),
        }
    }
}

impl DecodeCommandError {
    /// The route of the command whose payload did not decode.
    pub fn route(&self) -> &RouteName {
        &self.route
    }
}

impl fmt::Display for DecodeCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the payload of a command for {:?} did not decode",
            self.route.as_str()
        )
    }
}

impl std::error::Error for DecodeCommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
