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
    i int;
    off int := 0;
    n int;
    cur bigint;
    ids uuid[];
    r record;
    v_dup uuid;
    v_first bigint;
    v_last bigint;
    v_lastver bigint;
begin
    perform pg_advisory_xact_lock(p_lock);
    for i in 1 .. coalesce(array_length(p_streams, 1), 0) loop
        n := p_counts[i];
        item := i; status := 0; first_position := null; last_position := null;
        last_version := null; actual := null; dup := null;
        if n = 0 then
            status := 3;
            return next;
            continue;
        end if;
        ids := p_ids[off + 1 : off + n];
        off := off + n;
        -- An id twice in this append.
        select u.id into v_dup from unnest(ids) with ordinality as u(id, ord)
            group by u.id having count(*) > 1 order by min(u.ord) limit 1;
        if v_dup is not null then
            status := 2; dup := v_dup;
            return next;
            continue;
        end if;
        -- Ids stored already: exactly one earlier append again (a retry), or a duplicate.
        if exists (select 1 from {s}.events e where e.event_id = any(ids)) then
            select e.position, e.version, e.stream_id, e.tx into r
                from {s}.events e where e.event_id = ids[1];
            if found and r.stream_id = p_streams[i]
                and (select count(*) from unnest(ids) with ordinality as u(id, ord)
                     join {s}.events e on e.event_id = u.id
                     where e.stream_id = r.stream_id and e.tx = r.tx
                       and e.position = r.position + u.ord - 1
                       and e.version = r.version + u.ord - 1) = n
                and not exists (select 1 from {s}.events e
                     where e.stream_id = r.stream_id and e.tx = r.tx
                       and e.version in (r.version - 1, r.version + n))
            then
                first_position := r.position; last_position := r.position + n - 1;
                last_version := r.version + n - 1;
            else
                select u.id into v_dup from unnest(ids) with ordinality as u(id, ord)
                    where exists (select 1 from {s}.events e where e.event_id = u.id)
                    order by u.ord limit 1;
                status := 2; dup := v_dup;
            end if;
            return next;
            continue;
        end if;
        select max(e.version) into cur from {s}.events e where e.stream_id = p_streams[i];
        if (p_expected[i] = -2 and cur is not null)
            or (p_expected[i] >= 0 and cur is distinct from p_expected[i]) then
            status := 1; actual := cur;
            return next;
            continue;
        end if;
        with ins as (
            insert into {s}.events (stream_id, version, event_id, event_type, data, metadata)
            select p_streams[i], coalesce(cur, -1) + u.ord, u.id,
                   p_types[off - n + u.ord], p_data[off - n + u.ord], p_meta[off - n + u.ord]
            from unnest(ids) with ordinality as u(id, ord)
            order by u.ord
            returning position, version)
        select min(ins.position), max(ins.position), max(ins.version)
            into v_first, v_last, v_lastver from ins;
        first_position := v_first; last_position := v_last; last_version := v_lastver;
        return next;
    end loop;
end;
$fn$;
"#;

/// Brings `schema` up to the newest migration. Safe to run from many processes at once: the
/// first takes the advisory lock and migrates, the others wait and find nothing to do.
pub(crate) fn migrate(client: &mut Client, schema: &SchemaName) -> Result<(), StoreError> {
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
