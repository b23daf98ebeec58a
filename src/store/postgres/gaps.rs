//! The reader's rule for missing positions: deliver in position order, stop at a position that
//! may still commit, pass it once every transaction that could commit it has ended.
//!
//! # Why a position can be missing
//!
//! Positions come from the events table's identity in the order transactions draw them, not
//! the order they commit. A read sees position `p + 1` committed and `p` missing when `p`'s
//! transaction is still running (it will commit or roll back), has rolled back, or drew `p`
//! and never inserted it (a failed statement). Only the first case may still fill `p`, so a
//! reader must not pass `p` until it knows the transaction holding `p`, if any, has ended.
//!
//! # The rule
//!
//! Every transaction that inserts events takes its id before it draws a position (`schema`,
//! "The transaction id first"). So when a read sees a missing position below a committed
//! one, the transaction holding it took its id before that read's snapshot. An id `R` drawn
//! after the read (`pg_current_xact_id()` in a short transaction of its own) is larger than
//! every id taken before, that transaction's included. Once a later read's snapshot has
//! `pg_snapshot_xmin >= R`, no transaction older than `R` is running: every position still
//! missing below that first read's highest committed one is decided (rolled back, or never
//! used), for good.
//!
//! One `R` covers every missing position below the highest position visible in the read that
//! drew it, so a reader stopped at a gap draws no new id while it waits there: ids are drawn
//! only when a read stops at a gap above every covered range. And not at the first such stop:
//! most gaps are appends in flight that commit within milliseconds, and the next read passes
//! them; an id is drawn when a read stops at the same uncovered gap a second time (any read
//! that saw the gap below a committed row will do, and the second one did). The check and the rows come from
//! the same statement (one snapshot); a later snapshot's `xmin` could pass a position that
//! committed after the rows were read. (A snapshot's `xmax` is no bound: it is the last
//! completed id plus one, and a running transaction can hold an id at or above it.)
//!
//! The state lives in the store object, which is meant to live long (it owns the pool); a store
//! made per call would draw a new `R` each time, and under writes that never pause could wait
//! forever. The price of the rule: a rolled-back gap waits for every transaction on the server
//! older than `R` (in any database, idle in transaction, prepared), so the wait is reported
//! ([`Gaps::wait`], and a log line as it grows).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::store::GapWait;

/// Missing positions seen and not yet decided, covered by one drawn id.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Every missing position below this is held, if at all, by a transaction older than `id`.
    below: u64,
    /// The transaction id drawn after the read that saw them.
    id: i64,
    /// The first missing position a read stopped at.
    position: u64,
    /// When that read stopped there.
    since: Instant,
    /// The wait last logged (a line each time it doubles, from one second on).
    logged: Duration,
    /// A read delivered `position` since (it committed): nobody waits there any more, though
    /// the range stays undecided until its id is older than the oldest running transaction.
    passed: bool,
}

/// What readers of one store know of missing positions. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Gaps {
    /// Every position below this that no read has seen committed is rolled back or unused.
    decided_below: u64,
    /// Not yet decided, in the order their ids were drawn (ascending ids and ranges).
    pending: VecDeque<Pending>,
    /// The uncovered gap a read last stopped at, and when: a read that stops there again draws
    /// an id for it.
    sighted: Option<(u64, Instant)>,
}

/// Where a read stops, given its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    /// How many of the rows, from the first, the read delivers.
    pub(crate) deliver: usize,
    /// A missing position the read stopped at, for the second time, that no drawn id covers
    /// yet: the caller draws one and [`register`](Gaps::register)s it, covering every missing
    /// position below `below`.
    pub(crate) uncovered: Option<(u64, u64)>,
}

/// More pending ranges than this means something is badly wrong (each needs a new gap above
/// every earlier one while those are still undecided); the oldest are dropped, which only
/// makes a later read draw an id again.
const MAX_PENDING: usize = 1024;

impl Gaps {
    /// Decides what a read made at `now` may deliver: `positions` are the rows it read after
    /// `after`, in order, and `xmin` is `pg_snapshot_xmin` of the same statement's snapshot.
    pub(crate) fn cut(&mut self, after: u64, positions: &[u64], xmin: i64, now: Instant) -> Cut {
        // Ranges whose transactions have all ended are decided, in the order ids were drawn.
        while let Some(front) = self.pending.front() {
            if front.id > xmin {
                break;
            }
            self.decided_below = self.decided_below.max(front.below);
            self.pending.pop_front();
        }
        let mut expected = after + 1;
        for (i, &position) in positions.iter().enumerate() {
            if position > expected && position > self.decided_below {
                // Missing: [expected, position), decided below `decided_below`.
                let missing = expected.max(self.decided_below);
                let covered = self.pending.iter().any(|p| p.below > missing);
                let top = *positions.last().unwrap_or(&position);
                self.delivered(i.checked_sub(1).map(|last| positions[last]));
                let uncovered = match self.sighted {
                    _ if covered => None,
                    Some((seen, _)) if seen == missing => Some((missing, top)),
                    _ => {
                        self.sighted = Some((missing, now));
                        None
                    }
                };
                return Cut { deliver: i, uncovered };
            }
            expected = position + 1;
        }
        self.delivered(positions.last().copied());
        Cut {
            deliver: positions.len(),
            uncovered: None,
        }
    }

    /// Marks the ranges whose stopping position a read delivered up to `last` as passed.
    fn delivered(&mut self, last: Option<u64>) {
        if let Some(last) = last {
            for pending in self.pending.iter_mut().filter(|p| p.position <= last) {
                pending.passed = true;
            }
        }
    }

    /// Records the id drawn for a read that stopped at `position`, covering every missing
    /// position below `below`; the wait counts from the first read that stopped there.
    pub(crate) fn register(&mut self, position: u64, below: u64, id: i64, now: Instant) {
        let since = match self.sighted.take() {
            Some((seen, at)) if seen == position => at,
            other => {
                self.sighted = other;
                now
            }
        };
        if self.pending.iter().any(|p| p.below > position) {
            return; // another read covered it meanwhile
        }
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        let at = self
            .pending
            .iter()
            .position(|p| p.id > id)
            .unwrap_or(self.pending.len());
        self.pending.insert(
            at,
            Pending {
                below,
                id,
                position,
                since,
                logged: Duration::ZERO,
                passed: false,
            },
        );
    }

    /// The wait at the lowest undecided missing position that no read has passed, if readers
    /// are held at one.
    pub(crate) fn wait(&self, now: Instant) -> Option<GapWait> {
        self.pending.iter().find(|p| !p.passed).map(|p| GapWait {
            position: p.position,
            waited: now.saturating_duration_since(p.since),
        })
    }

    /// Whether the wait at the lowest gap has doubled since it was last logged (from one
    /// second on); marks it logged.
    pub(crate) fn due_for_log(&mut self, now: Instant) -> Option<GapWait> {
        let front = self.pending.iter_mut().find(|p| !p.passed)?;
        let waited = now.saturating_duration_since(front.since);
        if waited >= Duration::from_secs(1) && waited >= front.logged * 2 {
            front.logged = waited;
            return Some(GapWait {
                position: front.position,
                waited,
            });
        }
        None
    }
}

#[cfg(all(test, not(humpyard_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_gap_stops_the_read_until_its_id_is_older_than_xmin() {
        let mut gaps = Gaps::default();
        let t0 = Instant::now();
        // Rows 1, 2, 4, 5 committed; 3 missing. The read delivers 1 and 2; at the first stop
        // no id is drawn (3 is most likely an append about to commit).
        assert_eq!(
            gaps.cut(0, &[1, 2, 4, 5], 100, t0),
            Cut {
                deliver: 2,
                uncovered: None
            }
        );
        // Stopped there again: now an id covering every missing position below 5.
        let t1 = t0 + Duration::from_millis(3);
        assert_eq!(
            gaps.cut(2, &[4, 5], 100, t1),
            Cut {
                deliver: 0,
                uncovered: Some((3, 5))
            }
        );
        gaps.register(3, 5, 120, t1);
        // The wait counts from the first stop.
        let wait = gaps.wait(t1 + Duration::from_millis(7)).unwrap();
        assert_eq!((wait.position, wait.waited), (3, Duration::from_millis(10)));
        // Still held while a transaction older than 120 runs; no new id needed.
        assert_eq!(
            gaps.cut(2, &[4, 5, 6], 119, t1),
            Cut {
                deliver: 0,
                uncovered: None
            }
        );
        // 3 committed meanwhile: delivered, whatever xmin says.
        assert_eq!(gaps.cut(2, &[3, 4, 5], 50, t1).deliver, 3);
        // Or it rolled back: once xmin reaches 120, 3 is passed.
        assert_eq!(
            gaps.cut(2, &[4, 5, 6], 120, t1),
            Cut {
                deliver: 3,
                uncovered: None
            }
        );
        assert!(gaps.wait(t1).is_none());
    }

    #[test]
    fn a_gap_that_fills_before_the_next_read_costs_no_id() {
        let mut gaps = Gaps::default();
        let now = Instant::now();
        assert_eq!(gaps.cut(0, &[1, 3], 10, now).uncovered, None);
        assert_eq!(
            gaps.cut(1, &[2, 3, 5], 10, now),
            Cut {
                deliver: 2,
                uncovered: None
            },
            "4 is new"
        );
        assert_eq!(
            gaps.cut(3, &[4, 5], 10, now),
            Cut {
                deliver: 2,
                uncovered: None
            }
        );
        assert!(gaps.wait(now).is_none());
    }

    #[test]
    fn a_gap_above_the_covered_range_needs_a_new_id() {
        let mut gaps = Gaps::default();
        let now = Instant::now();
        assert_eq!(gaps.cut(0, &[1, 3], 10, now).uncovered, None);
        assert_eq!(gaps.cut(0, &[1, 3], 10, now).uncovered, Some((2, 3)));
        gaps.register(2, 3, 20, now);
        // 2 rolled back and decided; 5 missing below 6, above the covered range.
        assert_eq!(
            gaps.cut(0, &[1, 3, 4, 6], 20, now),
            Cut {
                deliver: 3,
                uncovered: None
            }
        );
        assert_eq!(
            gaps.cut(4, &[6], 20, now),
            Cut {
                deliver: 0,
                uncovered: Some((5, 6))
            }
        );
        gaps.register(5, 6, 30, now);
        assert_eq!(gaps.cut(4, &[6], 29, now).deliver, 0);
        assert_eq!(gaps.cut(4, &[6], 30, now).deliver, 1);
    }

    #[test]
    fn a_gap_that_committed_is_no_longer_reported_as_a_wait() {
        let mut gaps = Gaps::default();
        let now = Instant::now();
        gaps.cut(0, &[1, 3], 10, now);
        assert_eq!(gaps.cut(0, &[1, 3], 10, now).uncovered, Some((2, 3)));
        gaps.register(2, 3, 20, now);
        assert_eq!(gaps.wait(now).map(|w| w.position), Some(2));
        // 2 committed; an older, unrelated transaction still keeps xmin below 20.
        assert_eq!(gaps.cut(0, &[1, 2, 3], 15, now).deliver, 3);
        assert_eq!(gaps.wait(now), None);
    }

    #[test]
    fn nothing_missing_means_nothing_held() {
        let mut gaps = Gaps::default();
        let now = Instant::now();
        assert_eq!(
            gaps.cut(7, &[8, 9, 10], 1, now),
            Cut {
                deliver: 3,
                uncovered: None
            }
        );
        assert_eq!(
            gaps.cut(7, &[], 1, now),
            Cut {
                deliver: 0,
                uncovered: None
            }
        );
    }

    #[test]
    fn waits_are_logged_as_they_double() {
        let mut gaps = Gaps::default();
        let start = Instant::now();
        gaps.register(3, 5, 1, start);
        assert!(gaps.due_for_log(start + Duration::from_millis(500)).is_none());
        assert!(gaps.due_for_log(start + Duration::from_secs(1)).is_some());
        assert!(gaps.due_for_log(start + Duration::from_millis(1500)).is_none());
        assert!(gaps.due_for_log(start + Duration::from_secs(2)).is_some());
    }
}
