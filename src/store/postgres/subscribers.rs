//! A subscriber's own rows beside its checkpoint (V3, see `schema`): checkpoint rewinds, parked
//! events and snapshots. The [`EventStore`](crate::store::EventStore) methods of
//! [`PgEventStore`] call these; the semantics are the trait's, as the in-memory store has them.
//!
//! Every value is a bound parameter (R-SEC-1), every subscriber name is checked first. What the
//! columns cannot hold is refused before the server sees it: a NUL character in a message or in
//! a snapshot's data ([`InvalidInput::NulCharacter`]), a position or version past `i64::MAX` or
//! a count or state version past `i32::MAX` ([`InvalidInput::OutOfRange`]). A bound in a query
//! (`after`, `at_most`, a position to unpark) past what a column can hold matches nothing, or
//! everything below it, as it would in memory.

use crate::store::types::json_is_storable;
use crate::store::{check_subscriber, InvalidInput, ParkKind, ParkedEvent, Snapshot, StoreError};
use crate::StreamId;

use super::{backend_error, malformed, to_i64, PgEventStore};

/// A count or state version as the `int` columns hold it.
fn to_i32(n: u32) -> Result<i32, StoreError> {
    i32::try_from(n).map_err(|_| StoreError::InvalidInput(InvalidInput::OutOfRange))
}

/// `reset_checkpoint`: the subscriber's checkpoint (partition 0) set to `position`, backwards
/// too, made if missing. Its epoch is left as it is.
pub(super) fn reset_checkpoint(store: &PgEventStore, subscriber: &str, position: u64) -> Result<(), StoreError> {
    check_subscriber(subscriber)?;
    let position = to_i64(position)?;
    store
        .checkout()?
        .execute(&store.sql.reset_checkpoint, &[&subscriber, &position])
        .map_err(backend_error)?;
    Ok(())
}

/// `park`: one upsert on `(subscriber, position)`; a parked position gets the new attempts,
/// kind, message and time (its stream and version are the event's, unchanged), unless the new
/// kind is `behind` (the row is kept). Whether a row was written.
pub(super) fn park(store: &PgEventStore, event: &ParkedEvent) -> Result<bool, StoreError> {
    check_subscriber(&event.subscriber)?;
    if event.message.contains('\0') {
        return Err(StoreError::InvalidInput(InvalidInput::NulCharacter));
    }
    let position = to_i64(event.position)?;
    let version = to_i64(event.version)?;
    let attempts = to_i32(event.attempts)?;
    let written = store
        .checkout()?
        .execute(
            &store.sql.park,
            &[
                &event.subscriber,
                &position,
                &event.stream.as_str(),
                &version,
                &attempts,
                &event.kind.as_str(),
                &event.message,
                &event.parked_at,
            ],
        )
        .map_err(backend_error)?;
    Ok(written == 1)
}

/// `parked`: a range of the primary key, or of `parked_by_stream` for one stream, in position
/// order.
pub(super) fn parked(
    store: &PgEventStore,
    subscriber: &str,
    stream: Option<&StreamId>,
    after: u64,
    max: usize,
) -> Result<Vec<ParkedEvent>, StoreError> {
    check_subscriber(subscriber)?;
    let Ok(after) = i64::try_from(after) else {
        return Ok(Vec::new()); // no position is stored past i64::MAX
    };
    let limit = i64::try_from(max).ok();
    let mut conn = store.checkout()?;
    let rows = match stream {
        None => conn.query(&store.sql.parked, &[&subscriber, &after, &limit]),
        Some(stream) => conn.query(
            &store.sql.parked_in_stream,
            &[&subscriber, &after, &limit, &stream.as_str()],
        ),
    }
    .map_err(backend_error)?;
    rows.iter().map(|row| parked_event(subscriber, row)).collect()
}

/// One row of the `parked` or `parked_in_stream` statements. A row that is not what humpyard
/// writes (a tool's) is a backend error naming it, never a panic.
fn parked_event(subscriber: &str, row: &postgres::Row) -> Result<ParkedEvent, StoreError> {
    let position = row.get::<_, i64>(0) as u64;
    let stream: String = row.get(1);
    let stream = StreamId::new(&stream).map_err(|e| {
        malformed(format!(
            "the parked event of {subscriber} at position {position} has an invalid stream id: {e}"
        ))
    })?;
    let attempts: i32 = row.get(3);
    let attempts = u32::try_from(attempts).map_err(|_| {
        malformed(format!(
            "the parked event of {subscriber} at position {position} has {attempts} attempts"
        ))
    })?;
    let kind: String = row.get(4);
    let kind = ParkKind::from_name(&kind).ok_or_else(|| {
        malformed(format!(
            "the parked event of {subscriber} at position {position} has an unknown kind {kind:?}"
        ))
    })?;
    Ok(ParkedEvent {
        subscriber: subscriber.to_owned(),
        position,
        stream,
        version: row.get::<_, i64>(2) as u64,
        attempts,
        kind,
        message: row.get(5),
        parked_at: row.get(6),
    })
}

/// `unpark`: one delete; whether it removed a row.
pub(super) fn unpark(store: &PgEventStore, subscriber: &str, position: u64) -> Result<bool, StoreError> {
    check_subscriber(subscriber)?;
    let Ok(position) = i64::try_from(position) else {
        return Ok(false);
    };
    let deleted = store
        .checkout()?
        .execute(&store.sql.unpark, &[&subscriber, &position])
        .map_err(backend_error)?;
    Ok(deleted > 0)
}

/// `save_snapshot`: one upsert on the whole key; a snapshot of the same key is replaced. Older
/// snapshots are kept (not pruned), as in memory: a load with a lower `at_most` still finds
/// them.
pub(super) fn save_snapshot(store: &PgEventStore, snapshot: &Snapshot) -> Result<(), StoreError> {
    check_subscriber(&snapshot.subscriber)?;
    if !json_is_storable(&snapshot.data) {
        return Err(StoreError::InvalidInput(InvalidInput::NulCharacter));
    }
    let state_version = to_i32(snapshot.state_version)?;
    let version = to_i64(snapshot.version)?;
    store
        .checkout()?
        .execute(
            &store.sql.save_snapshot,
            &[
                &snapshot.subscriber,
                &snapshot.stream.as_str(),
                &state_version,
                &version,
                &snapshot.data,
            ],
        )
        .map_err(backend_error)?;
    Ok(())
}

/// `load_snapshot`: the newest version at or below `at_most`, one backward probe of the
/// primary key.
pub(super) fn load_snapshot(
    store: &PgEventStore,
    subscriber: &str,
    stream: &StreamId,
    state_version: u32,
    at_most: u64,
) -> Result<Option<Snapshot>, StoreError> {
    check_subscriber(subscriber)?;
    let Ok(state) = i32::try_from(state_version) else {
        return Ok(None); // never saved: `save_snapshot` refuses it
    };
    let at_most = i64::try_from(at_most).unwrap_or(i64::MAX);
    let row = store
        .checkout()?
        .query_opt(
            &store.sql.load_snapshot,
            &[&subscriber, &stream.as_str(), &state, &at_most],
        )
        .map_err(backend_error)?;
    Ok(row.map(|row| Snapshot {
        subscriber: subscriber.to_owned(),
        stream: stream.clone(),
        state_version,
        version: row.get::<_, i64>(0) as u64,
        data: row.get(1),
    }))
}
