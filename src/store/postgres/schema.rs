//! The schema and its migrations: versioned, idempotent, and serialised between processes by a
//! transaction-scoped advisory lock (R-PG-2).
//!
//! Only the validated, quoted schema name is ever spliced into SQL text; every value is a bound
//! parameter (R-SEC-1). The events table is the one DESIGN.md documents for operators; the
//! others are humpyard's own. V1 is applied as it was in schemas that have it; later changes
//! are new migrations.
//!
//! # Appends (V2)
//!
//! Appends go through one function, `append_batch`, so that a batch of appends across many
//! streams is one statement and one round trip. There is no global append lock (V1's, and its
//! trigger on every insert, are dropped): the function takes a transaction-scoped advisory lock
//! per stream and per event id of the call, all in one ascending key order that the caller
//! sorts, so humpyard's appends to the same stream or with the same id serialise and others
//! never wait for each other, and no two humpyard writers can deadlock. The version and id
//! checks are made under those locks, before the insert draws any position, so a failed append
//! burns none (R-PG-4). The keys are the client's (`lock_keys` in the store): a 64-bit FNV-1a of
//! the schema and the stream or the id's bytes, so every humpyard process names the same lock.
//!
//! Tools take none of these locks. A tool's row for a stream humpyard appends to at the same
//! moment can take the version humpyard computed: humpyard's insert then fails with a unique
//! violation, and the client retries the call (a bounded number of times; see the store).
//!
//! # Appends (V5)
//!
//! The append rules and their precedence are written once, in the client (`store::append_rules`,
//! which the in-memory store calls too). V5's `append_batch` (same locks, probes and insert as
//! V2's) keeps the one decision that must be taken in the server, atomically with the write:
//! an item is written exactly when its facts are clean, namely it repeats no earlier append
//! exactly, names no stored id, and the stream's last version as the item sees it (`-1` for no
//! events) lies in `p_lo ..= p_hi`, the range the client's `admitted_range` computed from the
//! expected version (no encoding of `ExpectedVersion` lives in SQL). For every item it answers
//! whether it wrote (`status`: 0 written, 1 held back) and the facts: a repeat's positions and
//! last version, the first stored id (a repeat's first id too), the last version. The client
//! runs those facts through `append_rules::judge` for the item's result, and a verdict that
//! disagrees with what the server did is an error. `tests/store_differential.rs` pins the two
//! stores together on random histories.
//!
//! # The transaction id first
//!
//! A statement trigger on the events table (`draw_xact_id`, before insert, for each statement)
//! and `append_batch` itself make every transaction that inserts events take its id
//! (`pg_current_xact_id()`) before its insert draws any position from the identity (a
//! statement-level before-insert trigger runs before the rows' defaults are evaluated; checked
//! on PostgreSQL 15). So a transaction that holds a position not yet visible has an id older
//! than any id drawn after that position was seen missing: the reader's gap rule rests on it.
//! (The `tx` column's default takes the id too, but only as the row is formed, after its
//! position, and not at all when a tool gives `tx` a value of its own, copying events: the
//! trigger closes both; `tests/store_gaps.rs` holds such a row's write a second behind its
//! position and shows the reader waits for it.)
//! (see the store's module docs). Two preconditions follow, which the store checks when it
//! connects: the identity's sequence caches one value at a time (a cached value could be used
//! by a later transaction with a newer id), and the trigger is enabled. A session with
//! `session_replication_role = replica` skips triggers: a tool must not insert events so.
//!
//! # Subscribers' tables (V3)
//!
//! All humpyard's own; every value in them is a bound parameter.
//!
//! - `checkpoints (subscriber, position, updated_at, partition int not null default 0, epoch
//!   bigint not null default 0)`, primary key `(subscriber, partition)`. V1's table, re-keyed in
//!   place (the new columns come last); its rows are kept as partition 0 at epoch 0, their
//!   positions unchanged. A subscriber that is not partitioned has its one checkpoint in
//!   partition 0: `save_checkpoint` only moves it forward, `reset_checkpoint` sets it, backwards
//!   too. The partitions and the epoch are for scale-out (DESIGN.md, "Scaling past one
//!   machine": a checkpoint per partition, each save fenced by `where epoch = $mine`), so that
//!   it needs no breaking change of this key later; nothing writes them yet. A humpyard built
//!   before V3 saves with `on conflict (subscriber)`, which no index answers any more: its saves
//!   fail once a newer process has migrated, so the processes of one schema upgrade together.
//! - `parked (subscriber, position, stream_id, version, attempts int, kind, message, parked_at
//!   timestamptz)`, primary key `(subscriber, position)`, and `parked_by_stream (subscriber,
//!   stream_id, position)` for one stream's parked events in position order. `kind` is
//!   `ParkKind::as_str` (`init`, `handler`, `panic`, `behind`); there is no check constraint, so
//!   a later kind needs no migration here, and a kind this build does not know reads back as an
//!   error. Parking a parked position again updates its attempts, kind, message and time.
//!   `parked_at` holds microseconds (a `SystemTime`'s nanoseconds are cut).
//! - `snapshots (subscriber, stream_id, state_version int, version, data jsonb, saved_at
//!   timestamptz default now())`, primary key `(subscriber, stream_id, state_version, version)`:
//!   a load is one backward probe of it (the newest version at or below the bound). A save of
//!   the same key replaces it; older versions are kept, not pruned, as in memory (a load with a
//!   lower bound still finds them), so a table of frequent snapshots grows until an operator
//!   deletes old versions (`delete ... where version < ...` per key is safe: a load falls back
//!   to the newest left).
//!
//! # Idempotency keys (V4)
//!
//! V1's `idempotency_keys (key, state, outcome, claimed_at, expires_at)` gains, with defaults so
//! that its rows keep working:
//!
//! - `generation bigint not null default 0`: the generation of the key's last claim, drawn from
//!   the sequence `idempotency_generation` (never reused; V1's rows have 0, which no token
//!   holds). `complete` and `fail` update only `where generation = $token's and state =
//!   'claimed'`: the fence.
//! - `attempts int not null default 1`: the claims of the key so far.
//! - `retained_until timestamptz not null`: when the row may be purged, the store's retention
//!   after the row's last change: its completion (until then a completed key is not
//!   claimable), its release, or its claim's expiry. Its default, `now() + 7 days`, is for rows
//!   written by a humpyard older than V4.
//!
//! `state` is `claimed`, `completed` or `released` (V1's `failed`, renamed: a failed claim is
//! released, claimable at once, its outcome dropped). V1's completed rows keep their outcome 7
//! days from the migration (V1 let them expire with their claim); its other rows become
//! purgeable 7 days after their claim's expiry. The index `idempotency_keys_retained_until`
//! serves the purge. A humpyard older than V4 would claim completed keys again after their
//! claim's expiry: the processes of one schema upgrade together.
use postgres::Client;

use super::config::SchemaName;
use crate::store::StoreError;

use super::backend_error;

/// The advisory-lock key of a schema-wide purpose (migrations): stable across processes (FNV-1a
/// of a label and the schema name), distinct per schema and purpose.
pub(crate) fn lock_key(purpose: &str, schema: &SchemaName) -> i64 {
    super::locks::fnv1a(&[purpose.as_bytes(), b":", schema.as_str().as_bytes()]) as i64
}

/// Migrations in order; each runs once per schema, in the same transaction as its record.
const MIGRATIONS: &[(i32, &str)] = &[(1, V1), (2, V2), (3, V3), (4, V4), (5, V5)];

/// The first schema: the tables, and appends under one global lock (replaced by V2).
const V1: &str = r#"
create table if not exists {s}.events (
    position bigint generated always as identity primary key,
    -- Byte order: stream ids are identifiers, and the (stream_id, version) index then
    -- compares with memcmp instead of the database locale's strcoll.
    stream_id text collate "C" not null,
    version bigint not null,
    event_id uuid not null unique,
    event_type text not null,
    data jsonb not null,
    metadata jsonb not null default '{}',
    recorded_at timestamptz not null default now(),
    tx xid8 not null default pg_current_xact_id(),
    -- humpyard's own, optional: false on every event of an append but its first, so that a
    -- retry can be told from a part of an earlier append (null, as tools leave it, opens one).
    opens_append boolean,
    unique (stream_id, version)
);
-- Every insert into the events table takes the append lock, a tool's as much as humpyard's
-- own (which holds it already), so positions, transaction ids and commits follow one order
-- whoever writes.
create or replace function {s}.take_append_lock() returns trigger
language plpgsql as $t$
begin
    perform pg_advisory_xact_lock(hashtextextended('humpyard:append:' || tg_table_schema, 0));
    return null;
end;
$t$;
create or replace trigger take_append_lock before insert on {s}.events
    for each statement execute function {s}.take_append_lock();
create table if not exists {s}.checkpoints (
    subscriber text primary key,
    position bigint not null,
    updated_at timestamptz not null default now()
);
create table if not exists {s}.idempotency_keys (
    key text primary key,
    state text not null,
    outcome jsonb,
    claimed_at timestamptz not null default now(),
    expires_at timestamptz not null
);
create or replace function {s}.append_batch(
    p_streams text[], p_expected bigint[], p_counts int[],
    p_items int[], p_offsets int[], p_ids uuid[], p_types text[], p_data jsonb[], p_meta jsonb[],
    p_lock bigint, p_channel text, p_payload text)
-- One row of arrays, one element per item (positions: one per inserted event, see step 3).
returns table (status smallint[], first_position bigint[], last_position bigint[],
               last_version bigint[], actual bigint[], dup uuid[], positions bigint[])
-- No JIT: the planner's row guesses for unnest over parameters make these small queries look
-- big enough to compile (300 ms a call).
language plpgsql set jit = off as $fn$
#variable_conflict use_column
declare
    n_items int := coalesce(array_length(p_streams, 1), 0);
    -- Per item: 0 accepted, 1 wrong expected version, 2 duplicate id, 3 a retry of an earlier
    -- append (answered from its rows in res_first and res_last).
    st smallint[] := array_fill(0::smallint, array[n_items]);
    -- Per accepted item: the stream's version before it.
    base bigint[] := array_fill(null::bigint, array[n_items]);
    res_first bigint[] := array_fill(null::bigint, array[n_items]);
    res_last bigint[] := array_fill(null::bigint, array[n_items]);
    res_lastver bigint[] := array_fill(null::bigint, array[n_items]);
    res_actual bigint[] := array_fill(null::bigint, array[n_items]);
    res_dup uuid[] := array_fill(null::uuid, array[n_items]);
    any_ok boolean := false;
    h0 bigint;
    h1 bigint;
    hits int[];
    pre_streams text[];
    pre_versions bigint[];
    new_ids uuid[] := '{}';
    new_streams text[] := '{}';
    new_versions bigint[] := '{}';
    positions bigint[];
    r record;
    q record;
    ids uuid[];
    cur_stream text;
    cur bigint;
begin
    -- The caller guarantees: every item has events, no id appears twice in the call.
    -- Every set below is built with unnest (linear), never by subscripting a text or jsonb
    -- array per row (each subscript walks the array from its start).

    -- 0. Before the lock, the index probes: which ids are stored, and each stream's last
    --    version, as of the newest position seen then (h0). Appends commit in position order
    --    (the lock below), so under the lock the rows with a position above h0 are exactly the
    --    appends committed since; their streams and ids patch what was read here. The probes
    --    thus run beside another append's insert instead of after it.
    h0 := coalesce((select max(e.position) from {s}.events e), 0);
    select coalesce(array_agg(distinct u.item), '{}') into hits
        from unnest(p_ids, p_items) as u(id, item)
        -- A scalar subquery, never flattened into a join: one index probe per id, whatever
        -- the cached plan thought of the table's size.
        where (select true from {s}.events e where e.event_id = u.id);
    select coalesce(array_agg(d.stream), '{}'),
           coalesce(array_agg((select e.version from {s}.events e where e.stream_id = d.stream
                               order by e.version desc limit 1)), '{}')
        into pre_streams, pre_versions
        from (select distinct x from unnest(p_streams) as x) as d(stream);

    perform pg_advisory_xact_lock(p_lock);

    -- What committed since h0: usually nothing (then no query), else a short range of the
    -- primary key, planned for its bounds each time (EXECUTE): a cached generic plan guesses
    -- a third of the table for `position > $1` and scans all of it.
    h1 := coalesce((select max(e.position) from {s}.events e), 0);
    if h1 > h0 then
        execute 'select coalesce(array_agg(e.event_id), ''{}''), coalesce(array_agg(e.stream_id), ''{}''),
                        coalesce(array_agg(e.version), ''{}'')
                 from {s}.events e where e.position between $1 and $2'
            into new_ids, new_streams, new_versions using h0 + 1, h1;
        hits := hits || coalesce((select array_agg(distinct u.item)
            from unnest(p_ids, p_items) as u(id, item)
            join unnest(new_ids) as n(id) on n.id = u.id), '{}');
    end if;

    -- 1. Items naming a stored id: exactly one earlier append again (a retry) or a
    --    duplicate. Rare, so checked one by one (and skipped when there are none).
    if cardinality(hits) > 0 then
        for r in
            with it as (
                select u.i::int as i, u.stream, u.cnt, (sum(u.cnt) over (order by u.i) - u.cnt)::int as start
                from unnest(p_streams, p_counts) with ordinality as u(stream, cnt, i))
            select it.i, it.stream, it.cnt, it.start from it where it.i = any(hits)
        loop
            ids := p_ids[r.start + 1 : r.start + r.cnt];
            select e.position, e.version, e.stream_id, e.tx, e.opens_append into q
                from {s}.events e where e.event_id = ids[1];
            if found and q.stream_id = r.stream and q.opens_append is distinct from false
                and (select count(*) from unnest(ids) with ordinality as u(id, ord)
                     join {s}.events e on e.event_id = u.id
                     where e.stream_id = q.stream_id and e.tx = q.tx
                       and e.position = q.position + u.ord - 1
                       and e.version = q.version + u.ord - 1
                       and (u.ord = 1 or e.opens_append = false)) = r.cnt
                and not exists (select 1 from {s}.events e
                     where e.stream_id = q.stream_id and e.version = q.version + r.cnt
                       and e.tx = q.tx and e.opens_append = false)
            then
                st[r.i] := 3;
                res_first[r.i] := q.position;
                res_last[r.i] := q.position + r.cnt - 1;
                res_lastver[r.i] := q.version + r.cnt - 1;
            else
                st[r.i] := 2;
                res_dup[r.i] := (select u.id from unnest(ids) with ordinality as u(id, ord)
                                 join {s}.events e on e.event_id = u.id order by u.ord limit 1);
            end if;
        end loop;
    end if;

    -- 2. Expected versions: the items in (stream, item) order, the stream's version carried
    --    from one item to the next, so each item sees the accepted ones before it. (A
    --    set-based form with window sums measured no faster.)
    for r in
        with it as (
            select u.i::int as i, u.stream, u.expected, u.cnt
            from unnest(p_streams, p_expected, p_counts) with ordinality as u(stream, expected, cnt, i)),
        latest as (
            select p.stream, greatest(p.v, n.v) as v
            from unnest(pre_streams, pre_versions) as p(stream, v)
            left join (select n.stream, max(n.version) as v
                       from unnest(new_streams, new_versions) as n(stream, version)
                       group by n.stream) as n on n.stream = p.stream)
        select it.i, it.stream, it.expected, it.cnt, latest.v
        from it join latest on latest.stream = it.stream
        order by it.stream, it.i
    loop
        if cur_stream is distinct from r.stream then
            cur_stream := r.stream;
            cur := r.v;
        end if;
        continue when st[r.i] <> 0;
        if (r.expected = -2 and cur is not null)
            or (r.expected >= 0 and cur is distinct from r.expected) then
            st[r.i] := 1;
            res_actual[r.i] := cur;
            continue;
        end if;
        base[r.i] := coalesce(cur, -1);
        cur := coalesce(cur, -1) + r.cnt;
        res_lastver[r.i] := cur;
        any_ok := true;
    end loop;

    -- 3. One insert of every accepted item's rows, in call order. The rows reach the insert
    --    in that order and draw their positions from the identity as they arrive (nextval is
    --    volatile, so it runs after the sort), so their positions in ascending order are the
    --    accepted events in call order; the caller maps them back to its accepted items by
    --    counting, with no join of the inserted rows here.
    if any_ok then
        with it as (
            select u.i::int as i, u.stream, u.b
            from unnest(p_streams, base) with ordinality as u(stream, b, i)
            where u.b is not null),
        rws as (
            select it.stream, it.b + ev.ord as version, ev.ord, ev.id, ev.typ, ev.dat, ev.met, ev.idx
            from unnest(p_items, p_offsets, p_ids, p_types, p_data, p_meta) with ordinality
                 as ev(item, ord, id, typ, dat, met, idx)
            join it on it.i = ev.item),
        ins as (
            insert into {s}.events (stream_id, version, event_id, event_type, data, metadata,
                                    opens_append)
            select rws.stream, rws.version, rws.id, rws.typ, rws.dat, rws.met, rws.ord = 1
            from rws order by rws.idx
            returning position)
        select array_agg(ins.position order by ins.position) into positions from ins;
        -- One wake-up per appending transaction, delivered at commit (R-SEC-4: the channel
        -- and payload are bound values, never spliced).
        perform pg_notify(p_channel, p_payload);
    end if;

    return query select st, res_first, res_last, res_lastver, res_actual, res_dup, positions;
end;
$fn$;
"#;

/// No global append lock: per-stream and per-id locks in `append_batch`, and a trigger that
/// draws the inserting transaction's id before any position (see the module docs).
const V2: &str = r#"
drop trigger if exists take_append_lock on {s}.events;
drop function if exists {s}.take_append_lock();
create or replace function {s}.draw_xact_id() returns trigger
language plpgsql as $t$
begin
    -- The transaction's id before the insert draws any position (see the store's docs).
    perform pg_current_xact_id();
    return null;
end;
$t$;
create or replace trigger draw_xact_id before insert on {s}.events
    for each statement execute function {s}.draw_xact_id();
drop function if exists {s}.append_batch(text[], bigint[], int[], int[], int[], uuid[], text[], jsonb[],
                                          jsonb[], bigint, text, text);
create or replace function {s}.append_batch(
    p_streams text[], p_expected bigint[], p_counts int[],
    p_items int[], p_offsets int[], p_ids uuid[], p_types text[], p_data jsonb[], p_meta jsonb[],
    p_locks bigint[], p_channel text, p_payload text)
-- One row of arrays, one element per item (positions: one per inserted event, see step 4).
returns table (status smallint[], first_position bigint[], last_position bigint[],
               last_version bigint[], actual bigint[], dup uuid[], positions bigint[])
-- No JIT: the planner's row guesses for unnest over parameters make these small queries look
-- big enough to compile (300 ms a call).
language plpgsql set jit = off as $fn$
#variable_conflict use_column
declare
    n_items int := coalesce(array_length(p_streams, 1), 0);
    -- Per item: 0 accepted, 1 wrong expected version, 2 duplicate id, 3 a retry of an earlier
    -- append (answered from its rows in res_first and res_last).
    st smallint[] := array_fill(0::smallint, array[n_items]);
    -- Per accepted item: the stream's version before it.
    base bigint[] := array_fill(null::bigint, array[n_items]);
    res_first bigint[] := array_fill(null::bigint, array[n_items]);
    res_last bigint[] := array_fill(null::bigint, array[n_items]);
    res_lastver bigint[] := array_fill(null::bigint, array[n_items]);
    res_actual bigint[] := array_fill(null::bigint, array[n_items]);
    res_dup uuid[] := array_fill(null::uuid, array[n_items]);
    any_ok boolean := false;
    hits int[];
    pre_streams text[];
    pre_versions bigint[];
    positions bigint[];
    r record;
    q record;
    ids uuid[];
    cur_stream text;
    cur bigint;
begin
    -- The caller guarantees: every item has events, no id appears twice in the call, and
    -- p_locks holds the keys of every stream and id of the call, distinct and ascending.
    -- Every set below is built with unnest (linear), never by subscripting a text or jsonb
    -- array per row (each subscript walks the array from its start).

    -- 0. This transaction's id before any position (the insert's trigger does it as well).
    perform pg_current_xact_id();

    -- 1. The locks, in the caller's ascending order: no two humpyard writers wait for each
    --    other in a cycle. Until this transaction ends, no other humpyard writer appends to
    --    these streams or writes these ids, so the checks below hold until the insert.
    perform pg_advisory_xact_lock(k) from unnest(p_locks) as k;

    -- 2. Under the locks, the index probes: which ids are stored, and each stream's last
    --    version (a forward limit-1 probe of the (stream_id, version) index).
    select coalesce(array_agg(distinct u.item), '{}') into hits
        from unnest(p_ids, p_items) as u(id, item)
        -- A scalar subquery, never flattened into a join: one index probe per id, whatever
        -- the cached plan thought of the table's size.
        where (select true from {s}.events e where e.event_id = u.id);
    select coalesce(array_agg(d.stream), '{}'),
           coalesce(array_agg((select e.version from {s}.events e where e.stream_id = d.stream
                               order by e.version desc limit 1)), '{}')
        into pre_streams, pre_versions
        from (select distinct x from unnest(p_streams) as x) as d(stream);

    -- 3a. Items naming a stored id: exactly one earlier append again (a retry) or a
    --     duplicate. Rare, so checked one by one (and skipped when there are none). An
    --     append's events take consecutive versions in one transaction; their positions
    --     increase but need not be consecutive (appends to other streams interleave), so the
    --     match is by versions.
    if cardinality(hits) > 0 then
        for r in
            with it as (
                select u.i::int as i, u.stream, u.cnt, (sum(u.cnt) over (order by u.i) - u.cnt)::int as start
                from unnest(p_streams, p_counts) with ordinality as u(stream, cnt, i))
            select it.i, it.stream, it.cnt, it.start from it where it.i = any(hits)
        loop
            ids := p_ids[r.start + 1 : r.start + r.cnt];
            select e.position, e.version, e.stream_id, e.tx, e.opens_append into q
                from {s}.events e where e.event_id = ids[1];
            if found and q.stream_id = r.stream and q.opens_append is distinct from false
                and (select count(*) from unnest(ids) with ordinality as u(id, ord)
                     join {s}.events e on e.event_id = u.id
                     where e.stream_id = q.stream_id and e.tx = q.tx
                       and e.version = q.version + u.ord - 1
                       and (u.ord = 1 or e.opens_append = false)) = r.cnt
                and not exists (select 1 from {s}.events e
                     where e.stream_id = q.stream_id and e.version = q.version + r.cnt
                       and e.tx = q.tx and e.opens_append = false)
            then
                st[r.i] := 3;
                res_first[r.i] := q.position;
                res_last[r.i] := (select e.position from {s}.events e where e.event_id = ids[r.cnt]);
                res_lastver[r.i] := q.version + r.cnt - 1;
            else
                st[r.i] := 2;
                res_dup[r.i] := (select u.id from unnest(ids) with ordinality as u(id, ord)
                                 join {s}.events e on e.event_id = u.id order by u.ord limit 1);
            end if;
        end loop;
    end if;

    -- 3b. Expected versions: the items in (stream, item) order, the stream's version carried
    --     from one item to the next, so each item sees the accepted ones before it.
    for r in
        with it as (
            select u.i::int as i, u.stream, u.expected, u.cnt
            from unnest(p_streams, p_expected, p_counts) with ordinality as u(stream, expected, cnt, i))
        select it.i, it.stream, it.expected, it.cnt, p.v
        from it join unnest(pre_streams, pre_versions) as p(stream, v) on p.stream = it.stream
        order by it.stream, it.i
    loop
        if cur_stream is distinct from r.stream then
            cur_stream := r.stream;
            cur := r.v;
        end if;
        continue when st[r.i] <> 0;
        if (r.expected = -2 and cur is not null)
            or (r.expected >= 0 and cur is distinct from r.expected) then
            st[r.i] := 1;
            res_actual[r.i] := cur;
            continue;
        end if;
        base[r.i] := coalesce(cur, -1);
        cur := coalesce(cur, -1) + r.cnt;
        res_lastver[r.i] := cur;
        any_ok := true;
    end loop;

    -- 4. One insert of every accepted item's rows, in call order. The rows reach the insert
    --    in that order and draw their positions from the identity as they arrive (nextval is
    --    volatile, so it runs after the sort), so their positions in ascending order are the
    --    accepted events in call order; the caller maps them back to its accepted items by
    --    counting, with no join of the inserted rows here.
    if any_ok then
        with it as (
            select u.i::int as i, u.stream, u.b
            from unnest(p_streams, base) with ordinality as u(stream, b, i)
            where u.b is not null),
        rws as (
            select it.stream, it.b + ev.ord as version, ev.ord, ev.id, ev.typ, ev.dat, ev.met, ev.idx
            from unnest(p_items, p_offsets, p_ids, p_types, p_data, p_meta) with ordinality
                 as ev(item, ord, id, typ, dat, met, idx)
            join it on it.i = ev.item),
        ins as (
            insert into {s}.events (stream_id, version, event_id, event_type, data, metadata,
                                    opens_append)
            select rws.stream, rws.version, rws.id, rws.typ, rws.dat, rws.met, rws.ord = 1
            from rws order by rws.idx
            returning position)
        select array_agg(ins.position order by ins.position) into positions from ins;
        -- One wake-up per appending transaction, delivered at commit (R-SEC-4: the channel
        -- and payload are bound values, never spliced).
        perform pg_notify(p_channel, p_payload);
    end if;

    return query select st, res_first, res_last, res_lastver, res_actual, res_dup, positions;
end;
$fn$;
"#;

/// Checkpoints keyed by (subscriber, partition), with a fencing epoch, so that partitioned
/// subscribers (DESIGN.md, "Scaling past one machine") need no breaking change later; parked
/// events; snapshots (see the module docs, "Subscribers' tables (V3)").
const V3: &str = r#"
-- Existing rows become partition 0 at epoch 0, their positions unchanged. The primary key is
-- V1's (unnamed in V1, so PostgreSQL's default name).
alter table {s}.checkpoints
    add column partition int not null default 0,
    add column epoch bigint not null default 0;
alter table {s}.checkpoints drop constraint checkpoints_pkey;
alter table {s}.checkpoints add constraint checkpoints_pkey primary key (subscriber, partition);
create table {s}.parked (
    subscriber text collate "C" not null,
    position bigint not null,
    stream_id text collate "C" not null,
    version bigint not null,
    attempts int not null,
    -- ParkKind::as_str: init, handler, panic, behind.
    kind text not null,
    message text not null,
    parked_at timestamptz not null,
    primary key (subscriber, position)
);
-- One stream's parked events in position order (the primary key serves the subscriber's all).
create index parked_by_stream on {s}.parked (subscriber, stream_id, position);
create table {s}.snapshots (
    subscriber text collate "C" not null,
    stream_id text collate "C" not null,
    state_version int not null,
    version bigint not null,
    data jsonb not null,
    saved_at timestamptz not null default now(),
    -- The newest at or below a version: a backward scan of this key.
    primary key (subscriber, stream_id, state_version, version)
);
"#;

/// Idempotency keys fenced by a generation, counted in attempts, and kept for a retention
/// period (see the module docs, "Idempotency keys (V4)").
const V4: &str = r#"
create sequence {s}.idempotency_generation;
alter table {s}.idempotency_keys
    add column generation bigint not null default 0,
    add column attempts int not null default 1,
    add column retained_until timestamptz not null default now() + interval '7 days';
-- V1's rows: a failed claim is released; a completed key keeps its outcome the default
-- retention from now; any other row is purgeable that long after its claim's expiry.
update {s}.idempotency_keys set state = 'released', outcome = null where state = 'failed';
update {s}.idempotency_keys
    set retained_until = case when state = 'completed' then now() else expires_at end + interval '7 days';
create index idempotency_keys_retained_until on {s}.idempotency_keys (retained_until);
"#;

/// The append rules written once, in the client (`store::append_rules`): `append_batch` keeps
/// only what must be decided in the server, atomically with the write. It takes each item's
/// admitted range of last versions (`p_lo`, `p_hi`, computed by the client's rule) instead of
/// an encoded expected version, writes an item exactly when its facts are clean (no exact
/// repeat of an earlier append, no stored id, the last version in the range), and answers the
/// facts (a repeat's positions, the first stored id, the last version) and whether it wrote,
/// with no precedence and no error codes: the client judges the facts (see the module docs,
/// "Appends (V5)"). V2's function (another signature) is kept, so a process of an older build
/// still appends while newer ones run beside it: both take the same locks and write the same
/// rows.
const V5: &str = r#"
create or replace function {s}.append_batch(
    p_streams text[], p_lo bigint[], p_hi bigint[], p_counts int[],
    p_items int[], p_offsets int[], p_ids uuid[], p_types text[], p_data jsonb[], p_meta jsonb[],
    p_locks bigint[], p_channel text, p_payload text)
-- One row of arrays, one element per item (positions: one per inserted event, see step 4).
returns table (status smallint[], first_position bigint[], last_position bigint[],
               last_version bigint[], actual bigint[], dup uuid[], positions bigint[])
-- No JIT: the planner's row guesses for unnest over parameters make these small queries look
-- big enough to compile (300 ms a call).
language plpgsql set jit = off as $fn$
#variable_conflict use_column
declare
    n_items int := coalesce(array_length(p_streams, 1), 0);
    -- Per item: 0 written, 1 held back (the facts below say why; the client judges them).
    st smallint[] := array_fill(0::smallint, array[n_items]);
    -- Per accepted item: the stream's version before it.
    base bigint[] := array_fill(null::bigint, array[n_items]);
    res_first bigint[] := array_fill(null::bigint, array[n_items]);
    res_last bigint[] := array_fill(null::bigint, array[n_items]);
    res_lastver bigint[] := array_fill(null::bigint, array[n_items]);
    res_actual bigint[] := array_fill(null::bigint, array[n_items]);
    res_dup uuid[] := array_fill(null::uuid, array[n_items]);
    any_ok boolean := false;
    hits int[];
    pre_streams text[];
    pre_versions bigint[];
    positions bigint[];
    r record;
    q record;
    ids uuid[];
    cur_stream text;
    cur bigint;
begin
    -- The caller guarantees: every item has events, no id appears twice in the call, and
    -- p_locks holds the keys of every stream and id of the call, distinct and ascending.
    -- Every set below is built with unnest (linear), never by subscripting a text or jsonb
    -- array per row (each subscript walks the array from its start).

    -- 0. This transaction's id before any position (the insert's trigger does it as well).
    perform pg_current_xact_id();

    -- 1. The locks, in the caller's ascending order: no two humpyard writers wait for each
    --    other in a cycle. Until this transaction ends, no other humpyard writer appends to
    --    these streams or writes these ids, so the checks below hold until the insert.
    perform pg_advisory_xact_lock(k) from unnest(p_locks) as k;

    -- 2. Under the locks, the index probes: which ids are stored, and each stream's last
    --    version (a forward limit-1 probe of the (stream_id, version) index).
    select coalesce(array_agg(distinct u.item), '{}') into hits
        from unnest(p_ids, p_items) as u(id, item)
        -- A scalar subquery, never flattened into a join: one index probe per id, whatever
        -- the cached plan thought of the table's size.
        where (select true from {s}.events e where e.event_id = u.id);
    select coalesce(array_agg(d.stream), '{}'),
           coalesce(array_agg((select e.version from {s}.events e where e.stream_id = d.stream
                               order by e.version desc limit 1)), '{}')
        into pre_streams, pre_versions
        from (select distinct x from unnest(p_streams) as x) as d(stream);

    -- 3a. Items naming a stored id: the facts of exactly one earlier append again (a retry:
    --     its positions) or not (the first stored id; a retry's first id too), and either
    --     way held back. Rare, so checked one by one (and skipped when there are none). An
    --     append's events take consecutive versions in one transaction; their positions
    --     increase but need not be consecutive (appends to other streams interleave), so the
    --     match is by versions.
    if cardinality(hits) > 0 then
        for r in
            with it as (
                select u.i::int as i, u.stream, u.cnt, (sum(u.cnt) over (order by u.i) - u.cnt)::int as start
                from unnest(p_streams, p_counts) with ordinality as u(stream, cnt, i))
            select it.i, it.stream, it.cnt, it.start from it where it.i = any(hits)
        loop
            ids := p_ids[r.start + 1 : r.start + r.cnt];
            select e.position, e.version, e.stream_id, e.tx, e.opens_append into q
                from {s}.events e where e.event_id = ids[1];
            if found and q.stream_id = r.stream and q.opens_append is distinct from false
                and (select count(*) from unnest(ids) with ordinality as u(id, ord)
                     join {s}.events e on e.event_id = u.id
                     where e.stream_id = q.stream_id and e.tx = q.tx
                       and e.version = q.version + u.ord - 1
                       and (u.ord = 1 or e.opens_append = false)) = r.cnt
                and not exists (select 1 from {s}.events e
                     where e.stream_id = q.stream_id and e.version = q.version + r.cnt
                       and e.tx = q.tx and e.opens_append = false)
            then
                st[r.i] := 1;
                res_dup[r.i] := ids[1];
                res_first[r.i] := q.position;
                res_last[r.i] := (select e.position from {s}.events e where e.event_id = ids[r.cnt]);
                res_lastver[r.i] := q.version + r.cnt - 1;
            else
                st[r.i] := 1;
                res_dup[r.i] := (select u.id from unnest(ids) with ordinality as u(id, ord)
                                 join {s}.events e on e.event_id = u.id order by u.ord limit 1);
            end if;
        end loop;
    end if;

    -- 3b. Each item's last version: the items in (stream, item) order, the stream's version
    --     carried from one item to the next, so each item sees the written ones before it. An
    --     item not held back is written when its version (-1: no events) is in the range the
    --     client computed from its expected version (p_lo to p_hi).
    for r in
        with it as (
            select u.i::int as i, u.stream, u.lo, u.hi, u.cnt
            from unnest(p_streams, p_lo, p_hi, p_counts) with ordinality as u(stream, lo, hi, cnt, i))
        select it.i, it.stream, it.lo, it.hi, it.cnt, p.v
        from it join unnest(pre_streams, pre_versions) as p(stream, v) on p.stream = it.stream
        order by it.stream, it.i
    loop
        if cur_stream is distinct from r.stream then
            cur_stream := r.stream;
            cur := r.v;
        end if;
        res_actual[r.i] := cur;
        continue when st[r.i] <> 0;
        if coalesce(cur, -1) not between r.lo and r.hi then
            st[r.i] := 1;
            continue;
        end if;
        base[r.i] := coalesce(cur, -1);
        cur := coalesce(cur, -1) + r.cnt;
        res_lastver[r.i] := cur;
        any_ok := true;
    end loop;

    -- 4. One insert of every accepted item's rows, in call order. The rows reach the insert
    --    in that order and draw their positions from the identity as they arrive (nextval is
    --    volatile, so it runs after the sort), so their positions in ascending order are the
    --    accepted events in call order; the caller maps them back to its accepted items by
    --    counting, with no join of the inserted rows here.
    if any_ok then
        with it as (
            select u.i::int as i, u.stream, u.b
            from unnest(p_streams, base) with ordinality as u(stream, b, i)
            where u.b is not null),
        rws as (
            select it.stream, it.b + ev.ord as version, ev.ord, ev.id, ev.typ, ev.dat, ev.met, ev.idx
            from unnest(p_items, p_offsets, p_ids, p_types, p_data, p_meta) with ordinality
                 as ev(item, ord, id, typ, dat, met, idx)
            join it on it.i = ev.item),
        ins as (
            insert into {s}.events (stream_id, version, event_id, event_type, data, metadata,
                                    opens_append)
            select rws.stream, rws.version, rws.id, rws.typ, rws.dat, rws.met, rws.ord = 1
            from rws order by rws.idx
            returning position)
        select array_agg(ins.position order by ins.position) into positions from ins;
        -- One wake-up per appending transaction, delivered at commit (R-SEC-4: the channel
        -- and payload are bound values, never spliced).
        perform pg_notify(p_channel, p_payload);
    end if;

    return query select st, res_first, res_last, res_lastver, res_actual, res_dup, positions;
end;
$fn$;
"#;

/// Brings `schema` up to the newest migration. Safe to run from many processes at once: the
/// first takes the advisory lock and migrates, the others wait and find nothing to do.
pub(crate) fn migrate(client: &mut Client, schema: &SchemaName) -> Result<(), StoreError> {
    migrate_to(client, schema, i32::MAX)
}

/// Brings `schema` up to migration `last` (an older humpyard's schema, for upgrade tests).
pub(crate) fn migrate_to(client: &mut Client, schema: &SchemaName, last: i32) -> Result<(), StoreError> {
    // The validated, quoted schema name is the only text spliced in; values are bound.
    let s = schema.quoted();
    let mut tx = client.transaction().map_err(backend_error)?;
    tx.execute("select pg_advisory_xact_lock($1)", &[&lock_key("migrate", schema)])
        .map_err(backend_error)?;
    tx.batch_execute(&format!(
        "create schema if not exists {s};
         create table if not exists {s}.migrations (
             version int primary key, applied_at timestamptz not null default now());"
    ))
    .map_err(backend_error)?;
    for &(version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version <= last) {
        let done = tx
            .query_opt(&format!("select 1 from {s}.migrations where version = $1"), &[&version])
            .map_err(backend_error)?
            .is_some();
        if !done {
            tx.batch_execute(&sql.replace("{s}", &s)).map_err(backend_error)?;
            tx.execute(
                &format!("insert into {s}.migrations (version) values ($1)"),
                &[&version],
            )
            .map_err(backend_error)?;
        }
    }
    tx.commit().map_err(backend_error)
}
