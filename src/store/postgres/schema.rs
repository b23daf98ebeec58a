//! The schema and its migrations: versioned, idempotent, and serialised between processes by a
//! transaction-scoped advisory lock (R-PG-2).
//!
//! Only the validated, quoted schema name is ever spliced into SQL text; every value is a bound
//! parameter (R-SEC-1). The events table is the one DESIGN.md documents for operators; the
//! others are humpyard's own.
//!
//! Appends go through one function, `append_batch`, so that a batch of appends across many
//! streams is one statement and one round trip. It takes a transaction-scoped advisory lock
//! first (one per schema), so appends take positions and commit in one order: a reader that
//! sees an event sees every event with a lower position (gap-safe reading, design (b) of
//! DESIGN.md), and version and id checks made under the lock hold until the insert, so a
//! failed append takes no position.

use postgres::Client;

use super::config::SchemaName;
use crate::store::StoreError;

use super::backend_error;

/// The advisory-lock keys of a schema: stable across processes (FNV-1a of a label and the
/// schema name), distinct per schema and purpose.
pub(crate) fn lock_key(purpose: &str, schema: &SchemaName) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in purpose.bytes().chain([b':']).chain(schema.as_str().bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// Migrations in order; each runs once per schema, in the same transaction as its record.
const MIGRATIONS: &[(i32, &str)] = &[(1, V1)];

const V1: &str = r#"
create table if not exists {s}.events (
    position bigint generated always as identity primary key,
    stream_id text not null,
    version bigint not null,
    event_id uuid not null unique,
    event_type text not null,
    data jsonb not null,
    metadata jsonb not null default '{}',
    recorded_at timestamptz not null default now(),
    tx xid8 not null default pg_current_xact_id(),
    unique (stream_id, version)
);
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
    p_ids uuid[], p_types text[], p_data jsonb[], p_meta jsonb[], p_lock bigint)
returns table (item int, status smallint, first_position bigint, last_position bigint,
               last_version bigint, actual bigint, dup uuid)
language plpgsql as $fn$
#variable_conflict use_column
declare
    n_items int := coalesce(array_length(p_streams, 1), 0);
    i int;
    k int;
    off int := 0;
    n int;
    s text;
    v bigint;
    ids uuid[];
    stored uuid[];
    r record;
    v_dup uuid;
    -- The call's streams that have events, and their last version so far.
    b_streams text[] := '{}';
    b_last bigint[] := '{}';
    -- Accepted items and the version before each: their rows are inserted at the end, in
    -- one statement.
    item_ok boolean[] := array_fill(false, array[n_items]);
    item_base bigint[] := array_fill(null::bigint, array[n_items]);
    any_ok boolean := false;
    res_status smallint[] := array_fill(0::smallint, array[n_items]);
    res_first bigint[] := array_fill(null::bigint, array[n_items]);
    res_last bigint[] := array_fill(null::bigint, array[n_items]);
    res_lastver bigint[] := array_fill(null::bigint, array[n_items]);
    res_actual bigint[] := array_fill(null::bigint, array[n_items]);
    res_dup uuid[] := array_fill(null::uuid, array[n_items]);
begin
    -- The caller guarantees: every item has events, no id appears twice in the call.
    perform pg_advisory_xact_lock(p_lock);
    -- Joins with unnest, not `= any(array)`: a cached generic plan for the latter may scan
    -- the whole table; these probe the indexes once per id and per stream.
    select coalesce(array_agg(e.event_id), '{}') into stored
        from unnest(p_ids) as u(id) join {s}.events e on e.event_id = u.id;
    select coalesce(array_agg(t.stream), '{}'), coalesce(array_agg(t.last), '{}')
        into b_streams, b_last
        from (select d.stream, (select max(e.version) from {s}.events e
                                where e.stream_id = d.stream) as last
              from (select distinct x from unnest(p_streams) as x) as d(stream)) as t
        where t.last is not null;
    for i in 1 .. n_items loop
        n := p_counts[i];
        s := p_streams[i];
        ids := p_ids[off + 1 : off + n];
        off := off + n;
        if cardinality(stored) > 0 and ids && stored then
            -- Exactly one earlier append again (a retry), or a duplicate.
            select e.position, e.version, e.stream_id, e.tx into r
                from {s}.events e where e.event_id = ids[1];
            if found and r.stream_id = s
                and (select count(*) from unnest(ids) with ordinality as u(id, ord)
                     join {s}.events e on e.event_id = u.id
                     where e.stream_id = r.stream_id and e.tx = r.tx
                       and e.position = r.position + u.ord - 1
                       and e.version = r.version + u.ord - 1) = n
                and not exists (select 1 from {s}.events e
                     where e.stream_id = r.stream_id and e.tx = r.tx
                       and e.version in (r.version - 1, r.version + n))
            then
                res_first[i] := r.position;
                res_last[i] := r.position + n - 1;
                res_lastver[i] := r.version + n - 1;
            else
                select u.id into v_dup from unnest(ids) with ordinality as u(id, ord)
                    where u.id = any(stored) order by u.ord limit 1;
                res_status[i] := 2;
                res_dup[i] := v_dup;
            end if;
            continue;
        end if;
        k := array_position(b_streams, s);
        v := case when k is null then null else b_last[k] end;
        if (p_expected[i] = -2 and v is not null)
            or (p_expected[i] >= 0 and v is distinct from p_expected[i]) then
            res_status[i] := 1;
            res_actual[i] := v;
            continue;
        end if;
        item_ok[i] := true;
        item_base[i] := coalesce(v, -1);
        any_ok := true;
        res_lastver[i] := coalesce(v, -1) + n;
        if k is null then
            b_streams := b_streams || s;
            b_last := b_last || (coalesce(v, -1) + n);
        else
            b_last[k] := coalesce(v, -1) + n;
        end if;
    end loop;
    if any_ok then
        for r in
            with items as (
                select u.i::int as i, u.c, (sum(u.c) over (order by u.i) - u.c)::int as start
                from unnest(p_counts) with ordinality as u(c, i)),
            rows as (
                select items.i, items.start + k as idx, item_base[items.i] + k as version
                from items, generate_series(1, items.c) as k
                where item_ok[items.i]),
            ins as (
                insert into {s}.events (stream_id, version, event_id, event_type, data, metadata)
                select p_streams[rows.i], rows.version, p_ids[rows.idx], p_types[rows.idx],
                       p_data[rows.idx], p_meta[rows.idx]
                from rows order by rows.idx
                returning position, event_id)
            select rows.i, min(ins.position) as first, max(ins.position) as last
            from ins join rows on p_ids[rows.idx] = ins.event_id
            group by rows.i
        loop
            res_first[r.i] := r.first;
            res_last[r.i] := r.last;
        end loop;
    end if;
    return query select g, res_status[g], res_first[g], res_last[g], res_lastver[g],
                        res_actual[g], res_dup[g]
                 from generate_series(1, n_items) as g;
end;
$fn$;
"#;

/// Brings `schema` up to the newest migration. Safe to run from many processes at once: the
/// first takes the advisory lock and migrates, the others wait and find nothing to do.
pub(crate) fn migrate(client: &mut Client, schema: &SchemaName) -> Result<(), StoreError> {
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
    for &(version, sql) in MIGRATIONS {
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
