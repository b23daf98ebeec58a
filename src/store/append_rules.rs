//! The append rules, written once: what makes an append acceptable, and in which order the
//! reasons to refuse it win. Both stores call these functions; neither writes a rule of its own.
//!
//! # The rules, in their precedence
//!
//! 1. The request itself, before any store is touched ([`check_request`]): at least one event
//!    ([`InvalidInput::NoEvents`]); every event storable, no NUL character in its type, data or
//!    metadata ([`InvalidInput::NulCharacter`]: PostgreSQL refuses it, so the in-memory store
//!    does too); at most [`MAX_EVENTS`] events ([`InvalidInput::OutOfRange`]); no id twice in
//!    the append ([`StoreError::DuplicateEventId`] with the first id met again).
//! 2. Then what the store holds ([`judge`], on the [`Facts`] the store gathered):
//!    1. an exact repeat of an earlier append (the same stream, the same ids in the same order,
//!       the whole of that append) is a safe client retry: that append's [`Appended`] again,
//!       nothing written, whatever the expected version;
//!    2. else any stored id is [`StoreError::DuplicateEventId`] with the first stored id in the
//!       append's order, whatever the expected version;
//!    3. else the stream's last version must be one the expected version admits
//!       ([`ExpectedVersion::admits`]), or [`StoreError::WrongExpectedVersion`] with the actual
//!       version;
//!    4. else the events are written.
//!
//! `append_many` applies rule 1 to each item apart, and each item's facts include the items
//! written before it in the call.
//!
//! # Who applies what
//!
//! The in-memory store gathers the facts under its lock and calls [`judge`]; it writes only on
//! [`Verdict::Write`].
//!
//! PostgreSQL must decide in the server, atomically with the write, whether to write; its
//! `append_batch` (migration V5, see `postgres::schema`) keeps only the part it cannot leave to
//! the client and no precedence at all. It gathers the same facts (whether the item repeats an
//! earlier append exactly, and that append's positions; the first stored id, reported for a
//! retry too; the stream's last version as the item sees it) and writes an item exactly when
//! the facts are clean: no repeat, no stored id, and the last version (`-1` for none) inside
//! the range [`admitted_range`] computed here from the expected version. It answers the facts
//! and whether it wrote; the client runs them through [`judge`], which turns them into the
//! item's result, and a verdict that disagrees with what the server did is an error (the
//! schema is not the one this build migrates). So the precedence and the errors are written
//! only here, and the expected-version encoding only in [`admitted_range`].
//!
//! What pins the two stores together: the unit tests below pin the precedence and that
//! [`admitted_range`] says what [`ExpectedVersion::admits`] says; the store contract suite
//! (`tests/store_contract.rs`) runs the same checks on both stores; and the differential
//! property test (`tests/store_differential.rs`) runs random histories of exact, partial,
//! reordered and cross-stream retries, duplicates and wrong expected versions on both and
//! requires the same answer for every item.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use uuid::Uuid;

use super::{Appended, ExpectedVersion, InvalidInput, NewEvent, StoreError};
use crate::StreamId;

/// The most events one append may carry: PostgreSQL's `append_batch` counts them in an `int`.
pub(crate) const MAX_EVENTS: usize = i32::MAX as usize;

/// Rule 1: the checks of an append's events made before any store is touched.
///
/// # Errors
///
/// [`InvalidInput::NoEvents`], [`InvalidInput::NulCharacter`], [`InvalidInput::OutOfRange`]
/// (more than [`MAX_EVENTS`]), or [`StoreError::DuplicateEventId`] with the first id that
/// appears a second time, in that order.
pub(crate) fn check_request(events: &[NewEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::InvalidInput(InvalidInput::NoEvents));
    }
    if !events.iter().all(NewEvent::is_storable) {
        return Err(StoreError::InvalidInput(InvalidInput::NulCharacter));
    }
    if events.len() > MAX_EVENTS {
        return Err(StoreError::InvalidInput(InvalidInput::OutOfRange));
    }
    let mut seen = HashSet::with_capacity(events.len());
    match events.iter().find(|e| !seen.insert(e.id)) {
        Some(twice) => Err(StoreError::DuplicateEventId(twice.id)),
        None => Ok(()),
    }
}

/// What a store found out about an append that passed [`check_request`], as of the moment it
/// would write (under its lock, after the items before it in the call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The earlier append that this one repeats exactly, and where it went.
    pub(crate) repeats: Option<Appended>,
    /// The first of the append's ids, in its order, that is stored already (for an exact
    /// repeat, its first id).
    pub(crate) first_stored: Option<Uuid>,
    /// The stream's last version (`None`: no events).
    pub(crate) actual: Option<u64>,
}

/// What to do with an append the rules accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write its events.
    Write,
    /// Write nothing and answer this earlier append's result (a client retry).
    Replay(Appended),
}

/// Rule 2: the verdict on an append to `stream` expecting `expected`, given the `facts`.
///
/// # Errors
///
/// [`StoreError::DuplicateEventId`] or [`StoreError::WrongExpectedVersion`], in the precedence
/// of the module docs.
pub(crate) fn judge(stream: &StreamId, expected: ExpectedVersion, facts: Facts) -> Result<Verdict, StoreError> {
    if let Some(earlier) = facts.repeats {
        return Ok(Verdict::Replay(earlier));
    }
    if let Some(id) = facts.first_stored {
        return Err(StoreError::DuplicateEventId(id));
    }
    if !expected.admits(facts.actual) {
        return Err(StoreError::WrongExpectedVersion {
            stream: stream.clone(),
            expected,
            actual: facts.actual,
        });
    }
    Ok(Verdict::Write)
}

/// The last versions `expected` admits, as PostgreSQL's `append_batch` tests them: a `bigint`
/// range over the last version with `-1` for a stream without events. An expectation no stream
/// can meet (a version past `i64::MAX`) is an empty range.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // used by the Postgres store only
pub(crate) fn admitted_range(expected: ExpectedVersion) -> RangeInclusive<i64> {
    match expected {
        ExpectedVersion::Any => -1..=i64::MAX,
        ExpectedVersion::NoStream => -1..=-1,
        ExpectedVersion::Exact(v) => match i64::try_from(v) {
            Ok(v) => v..=v,
            Err(_) => RangeInclusive::new(0, -1),
        },
    }
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;
    use serde_json::json;

    fn stream() -> StreamId {
        StreamId::new("s").unwrap()
    }

    const EARLIER: Appended = Appended {
        first_position: 3,
        last_position: 4,
        last_version: 1,
    };

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn ev(n: u128) -> NewEvent {
        NewEvent::new("e", json!({})).with_id(id(n))
    }

    /// Expectations of every kind, the edges of the encodings included.
    fn expectations() -> Vec<ExpectedVersion> {
        let mut all = vec![ExpectedVersion::Any, ExpectedVersion::NoStream];
        all.extend([0, 1, 2, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX].map(ExpectedVersion::Exact));
        all
    }

    #[test]
    fn request_checks_come_in_their_order() {
        assert!(matches!(
            check_request(&[]),
            Err(StoreError::InvalidInput(InvalidInput::NoEvents))
        ));
        let nul = NewEvent::new("e\0", json!({})).with_id(id(1));
        assert!(matches!(
            check_request(&[nul, ev(1)]),
            Err(StoreError::InvalidInput(InvalidInput::NulCharacter))
        ));
        assert!(matches!(
            check_request(&[ev(1), ev(2), ev(2), ev(1)]),
            Err(StoreError::DuplicateEventId(twice)) if twice == id(2)
        ));
        assert!(check_request(&[ev(1), ev(2)]).is_ok());
    }

    #[test]
    fn an_exact_repeat_is_replayed_whatever_else_holds() {
        for expected in expectations() {
            for actual in [None, Some(0), Some(7)] {
                let facts = Facts {
                    repeats: Some(EARLIER),
                    first_stored: Some(id(1)),
                    actual,
                };
                assert_eq!(
                    judge(&stream(), expected, facts).unwrap(),
                    Verdict::Replay(EARLIER),
                    "{expected:?} at {actual:?}"
                );
            }
        }
    }

    #[test]
    fn a_stored_id_wins_over_a_wrong_expected_version() {
        for expected in expectations() {
            for actual in [None, Some(0), Some(7)] {
                let facts = Facts {
                    repeats: None,
                    first_stored: Some(id(9)),
                    actual,
                };
                assert!(
                    matches!(judge(&stream(), expected, facts), Err(StoreError::DuplicateEventId(d)) if d == id(9)),
                    "{expected:?} at {actual:?}"
                );
            }
        }
    }

    #[test]
    fn clean_facts_write_exactly_when_the_version_is_admitted() {
        for expected in expectations() {
            for actual in [None, Some(0), Some(1), Some(2), Some(i64::MAX as u64)] {
                let facts = Facts {
                    repeats: None,
                    first_stored: None,
                    actual,
                };
                match judge(&stream(), expected, facts) {
                    Ok(Verdict::Write) => assert!(expected.admits(actual)),
                    Err(StoreError::WrongExpectedVersion {
                        stream: s,
                        expected: e,
                        actual: a,
                    }) => {
                        assert!(!expected.admits(actual));
                        assert_eq!((s, e, a), (stream(), expected, actual));
                    }
                    other => panic!("{expected:?} at {actual:?}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn the_servers_range_admits_what_the_rule_admits() {
        for expected in expectations() {
            let range = admitted_range(expected);
            assert!(
                range.contains(&-1) == expected.admits(None),
                "{expected:?} at no stream"
            );
            for v in [0, 1, 2, 3, i64::MAX as u64 - 1, i64::MAX as u64] {
                assert_eq!(
                    range.contains(&(v as i64)),
                    expected.admits(Some(v)),
                    "{expected:?} at {v}"
                );
            }
        }
    }
}
