//! Rebuilding a stream's state from the store: the fold of its events `0..v`, from the newest
//! usable snapshot on.
//!
//! The stream is read with `read_stream` in pages of [`PAGE`] events. A snapshot is looked up
//! only when the handler keeps them (`snapshot_every > 0`); one that does not decode (or whose
//! decoding panics) is skipped for the next older one, and a store without snapshots folds
//! from the start. Any other store error
//! ends the rebuild as [`Failure::Store`]: not an attempt, the engine's backoff runs and the
//! rebuild starts again. A panic in `init` or `apply` is a failed attempt of kind
//! [`ParkKind::Init`](crate::store::ParkKind::Init).

use super::handler::StreamHandler;
use super::tracked::{contain, dispose, Failure, Tracked};
use crate::store::{ParkKind, StoreError};
use crate::sync::Ordering;
use crate::StreamId;

/// Events read per `read_stream` call while rebuilding.
pub(crate) const PAGE: usize = 1024;

/// The fold of `stream`'s stored versions `0..version`.
pub(crate) fn rebuild<H: StreamHandler>(
    tracked: &Tracked<H>,
    stream: &StreamId,
    version: u64,
) -> Result<H::State, Failure<H::Error>> {
    let ctx = &*tracked.ctx;
    let handler = &tracked.inner;
    let mut next = 0;
    let mut state = None;
    if ctx.snapshot_every > 0 && version > 0 {
        // The newest snapshot not past `version - 1` that decodes; each one that does not is
        // skipped for the next older one.
        let mut at_most = version - 1;
        loop {
            let snapshot = match ctx
                .store
                .load_snapshot(&ctx.subscriber, stream, ctx.state_version, at_most)
            {
                Ok(Some(snapshot)) => snapshot,
                Ok(None) | Err(StoreError::Unsupported(_)) => break,
                Err(e) => return Err(Failure::Store(e)),
            };
            if let Ok(Some(decoded)) = contain(|| handler.decode_state(stream, &snapshot.data)) {
                state = Some(decoded);
                next = snapshot.version + 1;
                break;
            }
            ctx.counters.snapshot_errors.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                stream = stream.as_str(), version = snapshot.version;
                "humpyard pipeline: the snapshot of stream {:?} at version {} does not decode; ignored",
                stream.as_str(), snapshot.version
            );
            match snapshot.version.checked_sub(1) {
                Some(older) => at_most = older,
                None => break,
            }
        }
    }
    let mut state = match state {
        Some(state) => state,
        None => contain(|| handler.init(stream)).map_err(|message| Failure::Panic(ParkKind::Init, message))?,
    };
    if let Err(failure) = fold(tracked, &mut state, stream, &mut next, version) {
        // A state half folded is of no use; its `Drop` is user code.
        dispose(state);
        return Err(failure);
    }
    ctx.counters.rehydrations.fetch_add(1, Ordering::Relaxed);
    Ok(state)
}

/// Folds `stream`'s stored versions `*next..version` into `state`, moving `*next` on as it
/// goes (so a store error part way leaves it true to what `state` holds).
pub(crate) fn fold<H: StreamHandler>(
    tracked: &Tracked<H>,
    state: &mut H::State,
    stream: &StreamId,
    next: &mut u64,
    version: u64,
) -> Result<(), Failure<H::Error>> {
    let ctx = &*tracked.ctx;
    while *next < version {
        let want = usize::try_from(version - *next).unwrap_or(usize::MAX).min(PAGE);
        let page = ctx.store.read_stream(stream, *next, want).map_err(Failure::Store)?;
        let before = *next;
        for event in page.iter().take_while(|e| e.version < version) {
            contain(|| tracked.inner.apply(state, event)).map_err(|message| Failure::Panic(ParkKind::Init, message))?;
            *next = event.version + 1;
            ctx.counters.rehydrated_events.fetch_add(1, Ordering::Relaxed);
        }
        if *next == before {
            // Fewer stored events than the version says: nothing more to fold.
            log::error!(
                stream = stream.as_str(), version = version, folded_to = *next;
                "humpyard pipeline: stream {:?} has fewer stored events than the event's version {version} (folded to {})",
                stream.as_str(), *next
            );
            break;
        }
    }
    Ok(())
}
