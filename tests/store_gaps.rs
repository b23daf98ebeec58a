//! Gap-safe reading without a global append lock (DESIGN.md, "Gap-safe reading"): a reader never
//! skips a committed event, whatever order transactions take ids, positions and commits in; and
//! no append waits for another stream's transaction, a tool's open one included (R-PG-4,
//! R-PG-5, R-FT-6).

mod store;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use humpyard::pipeline::{Pipeline, StreamHandler};
use humpyard::store::{
    EventStore, ExpectedVersion, NewEvent, PgEventStore, PgStoreConfig, RecordedEvent, StoreError, Subscription,
    SubscriptionConfig,
};
use humpyard::StreamId;
use serde_json::json;
use store::server;

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

fn ev(n: u64) -> NewEvent {
    NewEvent::new("n", json!({ "n": n }))
}

fn postgres(pool_size: u32) -> (Arc<PgEventStore>, String) {
    let mut config = PgStoreConfig::default();
    let schema = server::fresh_schema("gap");
    config.schema = schema.clone();
    config.pool_size = pool_size;
    (Arc::new(PgEventStore::connect(&server::url(), config).unwrap()), schema)
}

fn connect() -> postgres::Client {
    postgres::Client::connect(&server::url(), postgres::NoTls).unwrap()
}

/// Inserts a row the way a tool does (only the documented columns), in `tx`; returns its
/// position. The schema name is the test's own generated one; values are bound.
fn tool_insert(tx: &mut postgres::Transaction<'_>, schema: &str, stream: &str, version: i64) -> i64 {
    tx.query_one(
        &format!(
            "insert into \"{schema}\".events (stream_id, version, event_id, event_type, data) \
             values ($1, $2, $3, 'tool', '{{}}') returning position"
        ),
        &[&stream, &version, &uuid::Uuid::new_v4()],
    )
    .unwrap()
    .get(0)
}

/// Builds the skip of the first defect: a tool's transaction takes its id early, an unrelated
/// transaction holds the oldest running id back, humpyard appends position 2, then the tool
/// inserts position 3 (a lower xid than the append's) and commits. Rows (position, xid):
/// (1, x) (2, high) (3, low), the unrelated transaction still open. Returns that transaction's
/// client, to keep it open while the caller reads.
fn early_xid_tool_row(store: &PgEventStore, schema: &str) -> postgres::Client {
    store.append(&sid("first"), ExpectedVersion::Any, vec![ev(0)]).unwrap();
    let mut tool = connect();
    tool.batch_execute("begin; select pg_current_xact_id();").unwrap();
    let mut unrelated = connect();
    unrelated.batch_execute("begin; select pg_current_xact_id();").unwrap();
    let appended = store
        .append(&sid("humpyard"), ExpectedVersion::Any, vec![ev(1)])
        .unwrap();
    assert_eq!(appended.first_position, 2);
    let row: i64 = tool
        .query_one(
            &format!(
                "insert into \"{schema}\".events (stream_id, version, event_id, event_type, data) \
                 values ('tool-stream', 0, $1, 'tool', '{{}}') returning position"
            ),
            &[&uuid::Uuid::new_v4()],
        )
        .unwrap()
        .get(0);
    assert_eq!(row, 3);
    tool.batch_execute("commit").unwrap();
    unrelated
}

// proves R-PG-5: a tool's row with an early transaction id and a late position, committed
// after a humpyard append, does not make a reader skip the append while an unrelated
// transaction holds the oldest running id back: what is read is a gap-free prefix, and all
// three positions arrive in order
#[test]
fn an_early_xid_tool_row_does_not_make_the_reader_skip_an_append() {
    let (store, schema) = postgres(4);
    let unrelated = early_xid_tool_row(&store, &schema);
    let read: Vec<u64> = store.read_all(0, 10).unwrap().iter().map(|e| e.position).collect();
    assert!(
        read.iter().copied().eq(1..=read.len() as u64),
        "read_all skipped a committed position: {read:?}"
    );
    let mut sub = Subscription::new(store.clone(), 0, SubscriptionConfig::default());
    let delivered: Vec<u64> = (0..3)
        .map(|_| {
            sub.next_timeout(Duration::from_secs(10))
                .unwrap()
                .expect("every committed event")
                .position
        })
        .collect();
    assert_eq!(delivered, [1, 2, 3]);
    drop(unrelated);
}

/// Records the positions it handles.
struct Positions(Arc<Mutex<Vec<u64>>>);

impl StreamHandler for Positions {
    type State = ();
    type Error = String;

    fn init(&self, _: &StreamId) {}

    fn apply(&self, _: &mut (), _: &RecordedEvent) {}

    fn handle(&self, _: &(), event: &RecordedEvent) -> Result<(), String> {
        self.0.lock().unwrap().push(event.position);
        Ok(())
    }
}

// proves R-PG-5: a pipeline's checkpoint never passes a committed position it did not handle,
// with the same early-xid tool row
#[test]
fn a_pipeline_checkpoint_never_passes_an_unhandled_committed_position() {
    let (store, schema) = postgres(4);
    let unrelated = early_xid_tool_row(&store, &schema);
    let handled = Arc::new(Mutex::new(Vec::new()));
    let pipeline = Pipeline::builder(store.clone(), "early-xid", Positions(handled.clone()))
        .checkpoint_interval(Duration::from_millis(5))
        .start()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pipeline.stats().checkpoint < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = pipeline.shutdown(Duration::from_secs(5));
    let handled: BTreeSet<u64> = handled.lock().unwrap().iter().copied().collect();
    for position in 1..=report.checkpoint {
        assert!(
            handled.contains(&position),
            "the checkpoint {} passed position {position}, never handled (handled {handled:?})",
            report.checkpoint
        );
    }
    assert_eq!(report.checkpoint, 3, "every committed event was handled");
    drop(unrelated);
}

/// A tool's transaction inserts a row and stays open while humpyard appends to another
/// stream: the append returns at once; the reader waits for the tool's row (it holds the lower
/// position), then delivers both in position order, or passes it once it rolled back.
fn a_tools_open_insert(commit: bool) {
    let (store, schema) = postgres(4);
    store.append(&sid("before"), ExpectedVersion::Any, vec![ev(0)]).unwrap();
    let mut tool = connect();
    let mut tx = tool.transaction().unwrap();
    assert_eq!(tool_insert(&mut tx, &schema, "tool-stream", 0), 2);
    let started = Instant::now();
    let appender = store.clone();
    let append = std::thread::spawn(move || appender.append(&sid("other"), ExpectedVersion::Any, vec![ev(2)]));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !append.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        append.is_finished(),
        "an append to another stream waited for a tool's open transaction"
    );
    let appended = append.join().unwrap().unwrap();
    assert_eq!(appended.first_position, 3);
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut sub = Subscription::new(store.clone(), 0, SubscriptionConfig::default());
    assert_eq!(sub.next_timeout(Duration::from_secs(10)).unwrap().unwrap().position, 1);
    assert!(
        sub.next_timeout(Duration::from_millis(300)).unwrap().is_none(),
        "the reader passed position 2 while the tool's transaction held it"
    );
    // The wait is reported: where, and for how long (at least the 300 ms just waited).
    let wait = sub.gap_wait().expect("the subscription reports the gap it waits at");
    assert_eq!(wait.position, 2);
    assert!(wait.waited >= Duration::from_millis(250), "{wait:?}");
    if commit {
        tx.commit().unwrap();
    } else {
        tx.rollback().unwrap();
    }
    let rest: Vec<(u64, String)> = (0..if commit { 2 } else { 1 })
        .map(|_| {
            let e = sub.next_timeout(Duration::from_secs(10)).unwrap().expect("an event");
            (e.position, e.event_type)
        })
        .collect();
    if commit {
        assert_eq!(rest, [(2, "tool".to_owned()), (3, "n".to_owned())]);
    } else {
        assert_eq!(rest, [(3, "n".to_owned())], "a rolled-back position is passed");
    }
    assert_eq!(sub.gap_wait(), None, "nothing holds the reader any more");
}

// proves R-PG-5 without a global lock: a tool's open insert holds readers back, never an append
// to another stream; the wait is reported; its row is delivered in order once committed
#[test]
fn a_tools_open_insert_holds_readers_not_other_streams_appends() {
    a_tools_open_insert(true);
}

// proves R-PG-5: a position whose transaction rolled back is passed once that transaction ended
#[test]
fn a_tools_rolled_back_insert_is_passed_once_it_ended() {
    a_tools_open_insert(false);
}

// proves R-PG-4 without a global lock: an append waiting on a tool's uncommitted row of its own
// stream (same version) holds up no append to another stream; once the tool commits, the
// waiting append settles against the tool's row (retried, not failed with the server's
// unique violation)
#[test]
fn an_append_waiting_on_its_own_stream_holds_up_no_other_stream() {
    let (store, schema) = postgres(4);
    store
        .append(&sid("busy"), ExpectedVersion::NoStream, vec![ev(0)])
        .unwrap();
    let mut tool = connect();
    let mut tx = tool.transaction().unwrap();
    // The tool takes version 1 of "busy" and stays open: humpyard's next append to "busy"
    // computes version 1 too, and its insert waits on the tool's index entry.
    let tool_row = tool_insert(&mut tx, &schema, "busy", 1);
    let (busy_store, any_store) = (store.clone(), store.clone());
    let busy = std::thread::spawn(move || busy_store.append(&sid("busy"), ExpectedVersion::Any, vec![ev(1)]));
    let exact_store = store.clone();
    let exact = std::thread::spawn(move || exact_store.append(&sid("busy"), ExpectedVersion::Exact(0), vec![ev(9)]));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let other = any_store.append(&sid("quiet"), ExpectedVersion::NoStream, vec![ev(2)]);
    let took = started.elapsed();
    assert!(other.is_ok(), "{other:?}");
    assert!(
        took < Duration::from_secs(2),
        "an append to another stream waited {took:?} behind one waiting on its own stream"
    );
    tx.commit().unwrap();
    let busy = busy
        .join()
        .unwrap()
        .expect("retried against the tool's row, then written");
    assert_eq!(busy.last_version, 2, "after the tool's version 1");
    match exact.join().unwrap() {
        Err(StoreError::WrongExpectedVersion { actual: Some(v), .. }) => assert!(v >= 1),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    assert!(tool_row > 0);
}

// proves R-PG-4: one event id raced into sixteen streams at once is written once; the others
// are DuplicateEventId and burn no position
#[test]
fn one_id_raced_into_sixteen_streams_is_written_once_and_burns_no_position() {
    let (store, _) = postgres(20);
    store.append(&sid("first"), ExpectedVersion::Any, vec![ev(0)]).unwrap();
    let id = uuid::Uuid::new_v4();
    let start = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|n| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                store.append(&sid(&format!("s{n}")), ExpectedVersion::Any, vec![ev(n).with_id(id)])
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let written: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(written.len(), 1, "{results:?}");
    assert_eq!(written[0].first_position, 2);
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, StoreError::DuplicateEventId(d) if *d == id), "{e:?}");
        }
    }
    let next = store.append(&sid("after"), ExpectedVersion::Any, vec![ev(99)]).unwrap();
    assert_eq!(next.first_position, 3, "a loser burnt a position");
}

// proves R-PG-4 at scale and the documented lock settings: sixteen appenders at once, each
// writing batches of 2 000 one-event items to distinct streams (4 000 lock keys a batch), all
// succeed on the test server (`max_locks_per_transaction` 64, `max_connections` 200: a lock
// table of 12 800 entries, which the 64 000 keys of sixteen such batches taken whole would
// overflow: `out of shared memory`); and R-PG-5: the reader then reads them all, whatever other
// tests' transactions stay open meanwhile (with the `xid8` watermark, one open transaction
// anywhere on the server held every reader back)
#[test]
fn many_appenders_of_many_streams_do_not_exhaust_the_lock_table() {
    let (store, _) = postgres(20);
    let start = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let batch = (0..2000)
                    .map(|i| (sid(&format!("t{t}-s{i}")), ExpectedVersion::NoStream, vec![ev(i)]))
                    .collect();
                for result in store.append_many(batch)? {
                    result?;
                }
                Ok::<(), StoreError>(())
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().expect("every batch written");
    }
    assert_eq!(store.read_all(0, usize::MAX).unwrap().len(), 16 * 2000);
}

// proves R-PG-4 without deadlocks: appenders whose batches share streams in opposite orders
// (each batch takes the locks of all its streams before writing) never deadlock, because every
// humpyard writer takes its keys in one ascending order
#[test]
fn appenders_sharing_streams_in_opposite_orders_never_deadlock() {
    let (store, _) = postgres(8);
    let streams: Vec<StreamId> = (0..12).map(|i| sid(&format!("shared-{i}"))).collect();
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (store, start, mut order) = (store.clone(), start.clone(), streams.clone());
            if t % 2 == 1 {
                order.reverse();
            }
            order.rotate_left(t);
            std::thread::spawn(move || {
                start.wait();
                for round in 0..15u64 {
                    let batch = order
                        .iter()
                        .map(|s| (s.clone(), ExpectedVersion::Any, vec![ev(round)]))
                        .collect();
                    for result in store.append_many(batch)? {
                        result?;
                    }
                }
                Ok::<(), StoreError>(())
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().expect("no deadlock, every item written");
    }
    assert_eq!(store.read_all(0, usize::MAX).unwrap().len(), 8 * 15 * 12);
}

/// Waits until `schema`'s events have drawn position `position` (sequences are not
/// transactional: a draw shows before its transaction ends).
fn wait_until_drawn(sql: &mut postgres::Client, schema: &str, position: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let drawn: Option<i64> = sql
            .query_one(
                "select last_value from pg_sequences where schemaname = $1 and sequencename like 'events_position%'",
                &[&schema],
            )
            .unwrap()
            .get(0);
        if drawn == Some(position) {
            return;
        }
        assert!(Instant::now() < deadline, "position {position} was never drawn");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads three events through a subscription, in the order it delivers them.
fn three_in_order(store: &Arc<PgEventStore>) -> Vec<(u64, String)> {
    let mut sub = Subscription::new(store.clone(), 0, SubscriptionConfig::default());
    (0..3)
        .map(|_| {
            let e = sub.next_timeout(Duration::from_secs(20)).unwrap().expect("an event");
            (e.position, e.stream.as_str().to_owned())
        })
        .collect()
}

// proves R-PG-5 (the transaction id before any position): a tool's row whose position is
// drawn and whose write comes only later (a slow before-row trigger of the tool's own) is
// still waited for: its transaction took its id at the start of the statement, before the
// position, so the id the reader draws at the gap is newer. The tool gives the `tx` column a
// value of its own (copying events), so the column's default, which otherwise takes the id
// right after the position, does not run. Without the events table's statement trigger the
// row's id comes after the reader's, the gap is passed, and the row is never delivered.
#[test]
fn a_row_whose_write_lags_its_position_is_waited_for() {
    let (store, schema) = postgres(4);
    let mut sql = connect();
    // The schema name is this test's own, quoted; no value is spliced.
    sql.batch_execute(&format!(
        "create function \"{schema}\".slow_row() returns trigger language plpgsql as $f$ \
         begin if new.stream_id = 'slow' then perform pg_sleep(1); end if; return new; end $f$; \
         create trigger slow_row before insert on \"{schema}\".events \
         for each row execute function \"{schema}\".slow_row();"
    ))
    .unwrap();
    store.append(&sid("first"), ExpectedVersion::Any, vec![ev(0)]).unwrap();
    let tool_schema = schema.clone();
    let tool = std::thread::spawn(move || {
        let mut tool = connect();
        let mut tx = tool.transaction().unwrap();
        let position: i64 = tx
            .query_one(
                &format!(
                    "insert into \"{tool_schema}\".events (stream_id, version, event_id, event_type, data, tx) \
                     values ('slow', 0, $1, 'copied', '{{}}', '1'::xid8) returning position"
                ),
                &[&uuid::Uuid::new_v4()],
            )
            .unwrap()
            .get(0);
        tx.commit().unwrap();
        position
    });
    // Wait until the tool's row has drawn position 2.
    wait_until_drawn(&mut sql, &schema, 2);
    assert_eq!(
        store
            .append(&sid("after"), ExpectedVersion::Any, vec![ev(2)])
            .unwrap()
            .first_position,
        3
    );
    let delivered = three_in_order(&store);
    assert_eq!(tool.join().unwrap(), 2);
    assert_eq!(
        delivered,
        [(1, "first".to_owned()), (2, "slow".to_owned()), (3, "after".to_owned())]
    );
}

// proves R-PG-5 (the gap rule's bound): a gap is passed only once the oldest running
// transaction is at least the id drawn after the gap was seen, not one less. Here the gap's
// holder has exactly that id minus one (a transaction that took its id before the holder
// committed the row above the gap), so passing at `xmin >= R - 1` would deliver 3 before 2.
// (Run alone: another transaction taking an id in between makes R larger and the bound loose.)
#[test]
fn a_gap_is_passed_only_once_xmin_reaches_the_drawn_id() {
    let (store, schema) = postgres(4);
    store.append(&sid("first"), ExpectedVersion::Any, vec![ev(0)]).unwrap();
    let mut early = connect();
    let mut early_tx = early.transaction().unwrap();
    early_tx.query_one("select pg_current_xact_id()", &[]).unwrap();
    let mut holder = connect();
    let mut holder_tx = holder.transaction().unwrap();
    assert_eq!(tool_insert(&mut holder_tx, &schema, "held", 0), 2);
    assert_eq!(tool_insert(&mut early_tx, &schema, "early", 0), 3);
    early_tx.commit().unwrap();
    let mut sub = Subscription::new(store.clone(), 0, SubscriptionConfig::default());
    assert_eq!(sub.next_timeout(Duration::from_secs(10)).unwrap().unwrap().position, 1);
    assert!(
        sub.next_timeout(Duration::from_millis(300)).unwrap().is_none(),
        "position 3 was delivered while its gap's holder still ran"
    );
    holder_tx.commit().unwrap();
    let rest: Vec<u64> = (0..2)
        .map(|_| {
            sub.next_timeout(Duration::from_secs(10))
                .unwrap()
                .expect("an event")
                .position
        })
        .collect();
    assert_eq!(rest, [2, 3]);
}

// proves R-PG-4 (a loser burns no position), with the overlap forced: the first append of a
// stream is held inside its insert (a test trigger sleeps on its row, after its position is
// drawn) while a second append to the stream, with the same expectation, starts. The second
// waits for the first's stream lock, then fails with WrongExpectedVersion before drawing a
// position; without per-stream serialisation it would probe before the first commits, insert,
// meet the first's row in the unique index, and burn the position it drew.
#[test]
fn a_same_stream_loser_waits_for_the_winner_and_burns_no_position() {
    let (store, schema) = postgres(4);
    let mut sql = connect();
    // The schema name is this test's own, quoted; no value is spliced.
    sql.batch_execute(&format!(
        "create function \"{schema}\".slow_row() returns trigger language plpgsql as $f$ \
         begin if new.event_type = 'slow' then perform pg_sleep(0.5); end if; return new; end $f$; \
         create trigger slow_row before insert on \"{schema}\".events \
         for each row execute function \"{schema}\".slow_row();"
    ))
    .unwrap();
    let first = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.append(
                &sid("s"),
                ExpectedVersion::NoStream,
                vec![NewEvent::new("slow", json!({}))],
            )
        })
    };
    // Wait until the first append has drawn its position (it sleeps in its insert now).
    wait_until_drawn(&mut sql, &schema, 1);
    let second = store.append(&sid("s"), ExpectedVersion::NoStream, vec![ev(2)]);
    assert!(
        matches!(second, Err(StoreError::WrongExpectedVersion { actual: Some(0), .. })),
        "{second:?}"
    );
    assert_eq!(first.join().unwrap().unwrap().first_position, 1);
    let next = store.append(&sid("other"), ExpectedVersion::Any, vec![ev(3)]).unwrap();
    assert_eq!(next.first_position, 2, "the loser burnt a position");
}
