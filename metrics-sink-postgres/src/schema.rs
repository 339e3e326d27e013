//! The idempotent migration to schema version 2: the schema-version table, the partitioned raw
//! table, the rollup tables, the SQL functions, and the in-place migration of a version 1 table
//! (its rows moved into day partitions and rolled up). An incompatible table is refused and never
//! altered; a schema newer than this build is left to newer processes.

use crate::error::pg_error;
use crate::options::{millis_ceil, quoted, PostgresOptions};
use crate::partitions::{attach_partition, spans_around};
use crate::rollup::upsert_sql;
use crate::tables::{Level, Span, Tables, DAY};
use fnmetrics_core::{Error, ErrorKind};
use postgres::{Client, GenericClient, Transaction};
use std::collections::BTreeSet;

/// The schema version this crate writes and reads, as recorded in the schema-version table.
///
/// Version 1 was one unpartitioned `metrics` table; version 2 partitions it by day, adds
/// `service`, `host` and `weight`, and keeps the rollups `metrics_1m` and `metrics_1h`.
///
/// ```
/// assert_eq!(fnmetrics::postgres::SCHEMA_VERSION, 2);
/// ```
pub const SCHEMA_VERSION: i32 = 2;

/// The `pg_advisory_xact_lock` key that serialises migrations within a database ("fnmetric").
pub(crate) const MIGRATION_LOCK_KEY: i64 = 0x666e_6d65_7472_6963;

/// Version 1's entry table: what a table must hold to be migrated.
const V1_COLUMNS: [(&str, &str); 5] = [
    ("id", "uuid"),
    ("func_name", "text"),
    ("execution_time", "double precision"),
    ("error_occurred", "boolean"),
    ("created_at", "timestamp with time zone"),
];

/// Version 2's raw table: version 1's columns, then the source and the weight.
const RAW_COLUMNS: [(&str, &str); 8] = [
    ("id", "uuid"),
    ("func_name", "text"),
    ("execution_time", "double precision"),
    ("error_occurred", "boolean"),
    ("created_at", "timestamp with time zone"),
    ("service", "text"),
    ("host", "text"),
    ("weight", "bigint"),
];

/// A rollup table's columns.
const ROLLUP_COLUMNS: [(&str, &str); 13] = [
    ("service", "text"),
    ("func_name", "text"),
    ("label", "text"),
    ("bucket", "timestamp with time zone"),
    ("entries", "bigint"),
    ("calls", "bigint"),
    ("errors", "bigint"),
    ("total", "double precision"),
    ("min", "double precision"),
    ("max", "double precision"),
    ("hist_index", "smallint[]"),
    ("hist_count", "bigint[]"),
    ("updated_at", "timestamp with time zone"),
];

/// The raw table's key: an entry's id and time are both fixed, and a unique index of a
/// partitioned table must hold the partition key.
pub(crate) const RAW_KEY: &str = "id, created_at";

/// A rollup's key. `label` is the room left for a later per-call label (an endpoint, a tenant):
/// empty for now.
pub(crate) const ROLLUP_KEY: &str = "func_name, bucket, service, label";

/// The schema-version table's columns.
const VERSION_COLUMNS: [(&str, &str); 2] = [("table_name", "text"), ("version", "integer")];

/// The SQL functions: the histogram bucket of a time in seconds (the in-process histogram's
/// log-linear buckets: 1 ns each below 32 ns, then 32 a power of two, the last from 2^44 ns), the
/// merge of two sparse histograms, and a quantile of one in seconds, by the in-process method
/// (`Histogram::quantile`: the bucket holding the rank `ceil(q * total)`, its middle), for SQL
/// clients such as the Grafana dashboard. `round(float8)` rounds half to even, as the writer does.
const FUNCTIONS: &str = "
CREATE OR REPLACE FUNCTION fnmetrics_bucket(secs double precision) RETURNS smallint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    x double precision := round(secs * 1e9);
    ns bigint;
    e integer;
BEGIN
    IF x = 'NaN'::double precision OR x < 1 THEN
        RETURN 0;
    ELSIF x < 32 THEN
        RETURN x::smallint;
    ELSIF x >= 17592186044416 THEN
        RETURN 1279;
    END IF;
    ns := x::bigint;
    e := floor(ln(x) / ln(2))::integer;
    IF (1::bigint << e) > ns THEN
        e := e - 1;
    ELSIF (1::bigint << (e + 1)) <= ns THEN
        e := e + 1;
    END IF;
    RETURN (32 + (e - 5) * 32 + ((ns >> (e - 5)) - 32))::smallint;
END
$fn$;

CREATE OR REPLACE FUNCTION fnmetrics_hist_merge(
    a_index smallint[], a_count bigint[], b_index smallint[], b_count bigint[],
    OUT hist_index smallint[], OUT hist_count bigint[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT coalesce(array_agg(i ORDER BY i), '{}'), coalesce(array_agg(c ORDER BY i), '{}')
    FROM (SELECT i, sum(c)::bigint AS c
          FROM unnest(coalesce(a_index, '{}') || coalesce(b_index, '{}'),
                      coalesce(a_count, '{}') || coalesce(b_count, '{}')) AS u(i, c)
          GROUP BY i) s
$fn$;

CREATE OR REPLACE FUNCTION fnmetrics_quantile(
    hist_index smallint[], hist_count bigint[], q double precision) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    total double precision;
    rank double precision;
    seen double precision := 0;
    b record;
    e integer;
    low bigint := 0;
    width bigint := 1;
BEGIN
    SELECT sum(c) INTO total FROM unnest(hist_count) AS c;
    IF total IS NULL OR total <= 0 OR q IS NULL THEN
        RETURN NULL;
    END IF;
    IF q = 'NaN'::double precision THEN
        q := 0;
    END IF;
    rank := least(greatest(ceil(least(greatest(q, 0), 1) * total), 1), total);
    FOR b IN SELECT u.i::bigint AS i, u.c FROM unnest(hist_index, hist_count) AS u(i, c)
             WHERE u.c > 0 ORDER BY u.i LOOP
        seen := seen + b.c;
        IF b.i < 32 THEN
            low := b.i;
            width := 1;
        ELSE
            e := ((b.i - 32) / 32)::integer;
            low := (32 + (b.i - 32) % 32) << e;
            width := 1::bigint << e;
        END IF;
        IF seen >= rank THEN
            RETURN (low + (width - 1) / 2) / 1e9::double precision;
        END IF;
    END LOOP;
    RETURN low / 1e9::double precision;
END
$fn$;
";

/// A column of an existing table, read from `pg_attribute`.
struct FoundColumn {
    name: String,
    ty: String,
    /// NOT NULL with no default, identity or generation: an INSERT must give it a value.
    needs_value: bool,
}

/// What the migration of a [`PostgresSink`](crate::PostgresSink)'s connection found and did
/// ([`PostgresSink::migration`](crate::PostgresSink::migration)).
///
/// ```no_run
/// use fnmetrics::postgres::{Migration, PostgresOptions, PostgresSink};
///
/// let sink = PostgresSink::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
/// match sink.migration() {
///     Some(Migration::Created) => println!("made the tables"),
///     Some(Migration::FromV1 { rows }) => println!("moved {rows} rows into the new tables"),
///     _ => println!("the schema was current"),
/// }
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Migration {
    /// The schema was at the current version already (a rollup table dropped by hand is made
    /// again and filled from the raw rows).
    Current,
    /// The tables were made.
    Created,
    /// A version 1 table's rows were moved into the partitioned table and rolled up.
    FromV1 {
        /// The rows moved.
        rows: u64,
    },
}

/// Brings the database to [`SCHEMA_VERSION`], or explains why it cannot.
///
/// One transaction holding `pg_advisory_xact_lock`, so processes that start together migrate one
/// after the other, and the later ones find the work done. An existing table of another shape is
/// never altered.
///
/// The lock is waited for at most `migration_lock_timeout` (a `lock_timeout` for that one
/// statement, with `statement_timeout` off so the lock's own limit decides); then the session's
/// limits apply again, but for moving a version 1 table's rows, which may take long and is done
/// once.
///
/// # Errors
/// [`ErrorKind::Superseded`] when the schema is newer than this build;
/// [`ErrorKind::Schema`] for a table of another shape; [`ErrorKind::Timeout`] for the lock.
pub(crate) fn migrate(client: &mut Client, options: &PostgresOptions) -> Result<Migration, Error> {
    let ctx = "cannot migrate the PostgreSQL schema";
    let tables = Tables::new(options.table());
    let mut tx = client.transaction().map_err(|e| pg_error(ctx, e))?;
    lock_migrations(&mut tx, options)?;
    tx.batch_execute(&session_timeouts("SET LOCAL", options))
        .map_err(|e| pg_error(ctx, e))?;

    let applied = applied_version(&mut tx, options)?;
    if applied > SCHEMA_VERSION {
        return Err(superseded(options, applied));
    }
    let have_functions: bool = tx
        .query_one(
            "SELECT to_regprocedure('fnmetrics_bucket(double precision)') IS NOT NULL
                AND to_regprocedure('fnmetrics_hist_merge(smallint[], bigint[], smallint[], bigint[])')
                    IS NOT NULL
                AND to_regprocedure('fnmetrics_quantile(smallint[], bigint[], double precision)')
                    IS NOT NULL",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_error(ctx, e))?;
    if !have_functions {
        // Only when missing: replacing them needs their owner, and a role that merely writes
        // must be able to connect.
        tx.batch_execute(FUNCTIONS).map_err(|e| pg_error(ctx, e))?;
    }
    let migrated = match relation(&mut tx, &tables.raw)? {
        None => {
            create_raw(&mut tx, &tables).map_err(|e| pg_error(ctx, e))?;
            Migration::Created
        }
        Some(kind) if kind == "p" => {
            check_columns(
                &tables.raw,
                &RAW_COLUMNS,
                &columns_of(&mut tx, &tables.raw)?,
            )?;
            check_unique(&mut tx, &tables.raw, RAW_KEY)?;
            Migration::Current
        }
        Some(_) => {
            check_columns(&tables.raw, &V1_COLUMNS, &columns_of(&mut tx, &tables.raw)?)?;
            let rows = from_v1(&mut tx, &tables)?;
            Migration::FromV1 { rows }
        }
    };
    let mut created = Vec::new();
    for level in Level::ROLLUPS {
        let name = tables.of(level);
        match relation(&mut tx, name)? {
            None => {
                create_rollup(&mut tx, &tables, level).map_err(|e| pg_error(ctx, e))?;
                created.push(level);
            }
            Some(kind) if kind == "p" => {
                check_columns(name, &ROLLUP_COLUMNS, &columns_of(&mut tx, name)?)?;
                check_unique(&mut tx, name, ROLLUP_KEY)?;
            }
            Some(kind) => {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "`{name}` exists but is not a partitioned table (pg_class.relkind = \
                         '{kind}'); {NEVER_ALTERED}"
                    ),
                ))
            }
        }
    }
    if migrated != Migration::Created && !created.is_empty() {
        // Raw rows without rollups (a version 1 table just moved, or a rollup table someone
        // dropped): roll them all up into the new rollups, so raw and rollups agree from the
        // first day.
        roll_up_raw(&mut tx, &tables, &created).map_err(|e| pg_error(ctx, e))?;
    }
    if applied < SCHEMA_VERSION {
        tx.execute(
            &format!(
                "INSERT INTO {} (table_name, version) VALUES ($1, $2)",
                quoted(options.schema_table())
            ),
            &[&options.table(), &SCHEMA_VERSION],
        )
        .map_err(|e| pg_error(ctx, e))?;
    }
    tx.commit().map_err(|e| pg_error(ctx, e))?;
    if let Migration::FromV1 { rows } = migrated {
        log::info!(
            target: "fnmetrics",
            "migrated PostgreSQL table `{}` from schema version 1 to {SCHEMA_VERSION}: {rows} rows \
             moved into day partitions and rolled up",
            tables.raw
        );
    }
    Ok(migrated)
}

/// The version recorded for the entry table, creating the schema-version table if needed.
pub(crate) fn applied_version(
    tx: &mut Transaction<'_>,
    options: &PostgresOptions,
) -> Result<i32, Error> {
    let ctx = "cannot read the fnmetrics schema version";
    let versions = quoted(options.schema_table());
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {versions} (
             table_name text NOT NULL,
             version integer NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (table_name, version)
         )"
    ))
    .map_err(|e| pg_error(ctx, e))?;
    let Some(_) = relation(tx, options.schema_table())? else {
        return Err(Error::new(
            ErrorKind::Schema,
            format!(
                "`{}` could not be created or is not visible in the search_path",
                options.schema_table()
            ),
        ));
    };
    check_columns(
        options.schema_table(),
        &VERSION_COLUMNS,
        &columns_of(tx, options.schema_table())?,
    )?;
    tx.query_one(
        &format!("SELECT coalesce(max(version), 0) FROM {versions} WHERE table_name = $1"),
        &[&options.table()],
    )
    .and_then(|row| row.try_get(0))
    .map_err(|e| pg_error(ctx, e))
}

/// The version a reader finds recorded (0 when nothing is), without creating anything.
pub(crate) fn recorded_version(
    client: &mut impl GenericClient,
    options: &PostgresOptions,
) -> Result<i32, postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&quoted(options.schema_table())],
        )?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    client
        .query_one(
            &format!(
                "SELECT coalesce(max(version), 0) FROM {} WHERE table_name = $1",
                quoted(options.schema_table())
            ),
            &[&options.table()],
        )?
        .try_get(0)
}

/// The error of a schema newer than this build.
pub(crate) fn superseded(options: &PostgresOptions, applied: i32) -> Error {
    Error::new(
        ErrorKind::Superseded,
        format!(
            "table `{}` is at schema version {applied} (recorded in `{}`), newer than the version \
             {SCHEMA_VERSION} this fnmetrics knows: this process leaves writing to PostgreSQL to \
             newer drainers (its entries wait for them in Redis); upgrade it to drain again",
            options.table(),
            options.schema_table()
        ),
    )
}

/// Takes the migration lock, waiting at most `migration_lock_timeout`.
fn lock_migrations(tx: &mut Transaction<'_>, options: &PostgresOptions) -> Result<(), Error> {
    let ctx = "cannot migrate the PostgreSQL schema";
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = {}",
        millis_ceil(options.migration_lock_timeout())
    ))
    .map_err(|e| pg_error(ctx, e))?;
    match tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]) {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            Err(Error::with_source(
                ErrorKind::Timeout,
                format!(
                    "cannot migrate the PostgreSQL schema: another process holds the migration \
                     lock (pg_advisory_xact_lock({MIGRATION_LOCK_KEY})) for longer than \
                     migration_lock_timeout ({:?})",
                    options.migration_lock_timeout()
                ),
                e,
            ))
        }
        Err(e) => Err(pg_error(ctx, e)),
    }
}

/// `SET` (or `SET LOCAL`) statements for the session's `statement_timeout` and `lock_timeout`.
pub(crate) fn session_timeouts(set: &str, options: &PostgresOptions) -> String {
    format!(
        "{set} statement_timeout = {}; {set} lock_timeout = {}",
        millis_ceil(options.statement_timeout()),
        millis_ceil(options.lock_timeout())
    )
}

/// An index name made of `table` and `suffix`, cut to PostgreSQL's 63 bytes.
fn index_name(table: &str, suffix: &str) -> String {
    let mut name = format!("{table}_{suffix}");
    name.truncate(63); // ASCII, so this cuts on a character boundary
    quoted(&name)
}

/// The partitioned raw table, its index, and partitions around today.
fn create_raw(tx: &mut Transaction<'_>, tables: &Tables) -> Result<(), postgres::Error> {
    let t = tables.quoted(Level::Raw);
    tx.batch_execute(&format!(
        "CREATE TABLE {t} (
             id uuid NOT NULL,
             func_name text NOT NULL,
             execution_time double precision NOT NULL,
             error_occurred boolean NOT NULL,
             created_at timestamptz NOT NULL,
             service text NOT NULL DEFAULT '',
             host text NOT NULL DEFAULT '',
             weight bigint NOT NULL DEFAULT 1,
             PRIMARY KEY ({RAW_KEY})
         ) PARTITION BY RANGE (created_at);
         COMMENT ON COLUMN {t}.execution_time IS 'seconds';
         COMMENT ON COLUMN {t}.weight IS 'calls this row stands for (1, or N for a call sampled one in N)';
         CREATE INDEX {} ON {t} (func_name, created_at);",
        index_name(&tables.raw, "func_name_created_at_idx")
    ))?;
    for span in spans_around(Level::Raw, now_micros(tx)?) {
        attach_partition(tx, tables, Level::Raw, span)?;
    }
    Ok(())
}

/// A partitioned rollup table and partitions around today.
fn create_rollup(
    tx: &mut Transaction<'_>,
    tables: &Tables,
    level: Level,
) -> Result<(), postgres::Error> {
    let t = tables.quoted(level);
    tx.batch_execute(&format!(
        "CREATE TABLE {t} (
             service text NOT NULL,
             func_name text NOT NULL,
             label text NOT NULL DEFAULT '',
             bucket timestamptz NOT NULL,
             entries bigint NOT NULL,
             calls bigint NOT NULL,
             errors bigint NOT NULL,
             total double precision NOT NULL,
             min double precision NOT NULL,
             max double precision NOT NULL,
             hist_index smallint[] NOT NULL,
             hist_count bigint[] NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY ({ROLLUP_KEY})
         ) PARTITION BY RANGE (bucket);
         COMMENT ON TABLE {t} IS 'fnmetrics rollup: one row per function, service, label and {unit}';
         COMMENT ON COLUMN {t}.entries IS 'raw rows rolled up';
         COMMENT ON COLUMN {t}.calls IS 'calls they stand for (the sum of their weights)';
         COMMENT ON COLUMN {t}.total IS 'seconds, weighted';
         COMMENT ON COLUMN {t}.hist_index IS 'histogram buckets (fnmetrics_bucket), ascending';
         COMMENT ON COLUMN {t}.hist_count IS 'weighted calls in each bucket of hist_index';",
        unit = level.trunc_unit()
    ))?;
    for span in spans_around(level, now_micros(tx)?) {
        attach_partition(tx, tables, level, span)?;
    }
    Ok(())
}

/// The server's clock, in micros since the Unix epoch.
fn now_micros(tx: &mut Transaction<'_>) -> Result<i64, postgres::Error> {
    tx.query_one("SELECT (extract(epoch FROM now()) * 1000000)::bigint", &[])?
        .try_get(0)
}

/// Moves a version 1 table's rows into a new partitioned table, one partition a day; returns
/// how many. The old table goes, unless it had columns of its own (then it stays, renamed
/// `T_v1`, and a warning says so).
fn from_v1(tx: &mut Transaction<'_>, tables: &Tables) -> Result<u64, Error> {
    let ctx = "cannot migrate the version 1 table to version 2";
    let err = |e| pg_error(ctx, e);
    check_unique(tx, &tables.raw, "id")?;
    let extra: Vec<String> = columns_of(tx, &tables.raw)?
        .into_iter()
        .filter(|c| !V1_COLUMNS.iter().any(|(n, _)| *n == c.name))
        .map(|c| c.name)
        .collect();
    // Moving the rows takes as long as it takes, once.
    tx.batch_execute("SET LOCAL statement_timeout = 0")
        .map_err(err)?;
    let old = format!("{}_v1", tables.raw);
    tx.batch_execute(&format!(
        "ALTER TABLE {} RENAME TO {}",
        quoted(&tables.raw),
        quoted(&old)
    ))
    .map_err(err)?;
    // Its index names would collide with the new table's.
    let indexes: Vec<String> = tx
        .query(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = to_regclass($1)",
            &[&quoted(&old)],
        )
        .map_err(err)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    for (n, index) in indexes.iter().enumerate() {
        tx.batch_execute(&format!(
            "ALTER INDEX {} RENAME TO {}",
            quoted(index),
            index_name(&old, &format!("idx{n}"))
        ))
        .map_err(err)?;
    }
    create_raw(tx, tables).map_err(err)?;
    attach_for_rows(tx, tables, &[Level::Raw], &quoted(&old)).map_err(err)?;
    let rows = tx
        .execute(
            &format!(
                "INSERT INTO {} (id, func_name, execution_time, error_occurred, created_at)
                 SELECT id, func_name, execution_time, error_occurred, created_at FROM {}",
                quoted(&tables.raw),
                quoted(&old)
            ),
            &[],
        )
        .map_err(err)?;
    if extra.is_empty() {
        tx.batch_execute(&format!("DROP TABLE {}", quoted(&old)))
            .map_err(err)?;
    } else {
        log::warn!(
            target: "fnmetrics",
            "the version 1 table had columns of its own ({}): its rows were moved to the new \
             `{}`, and it stays as `{old}` with those columns; drop it when they are not needed",
            extra.join(", "),
            tables.raw
        );
    }
    Ok(rows)
}

/// Attaches the partitions of `levels` that the rows of table `source` need (one per UTC day
/// they fall on, or month for the hourly rollup).
fn attach_for_rows(
    tx: &mut Transaction<'_>,
    tables: &Tables,
    levels: &[Level],
    source: &str,
) -> Result<(), postgres::Error> {
    let days: Vec<i64> = tx
        .query(
            &format!(
                "SELECT DISTINCT floor(extract(epoch FROM created_at) / 86400)::bigint
                 FROM {source} WHERE created_at >= '1970-01-01 00:00:00+00'
                 UNION SELECT -1 FROM {source} WHERE created_at < '1970-01-01 00:00:00+00'"
            ),
            &[],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for &level in levels {
        let spans: BTreeSet<Span> = days
            .iter()
            .map(|&d| level.partition_of(d.saturating_mul(DAY)))
            .collect();
        for span in spans {
            attach_partition(tx, tables, level, span)?;
        }
    }
    Ok(())
}

/// Rolls every raw row up into the rollups of `levels` (just made, empty).
fn roll_up_raw(
    tx: &mut Transaction<'_>,
    tables: &Tables,
    levels: &[Level],
) -> Result<(), postgres::Error> {
    tx.batch_execute("SET LOCAL statement_timeout = 0")?;
    let raw = tables.quoted(Level::Raw);
    attach_for_rows(tx, tables, levels, &raw)?;
    for &level in levels {
        let unit = level.trunc_unit();
        let source = format!(
            "SELECT service, func_name, b AS bucket, sum(n)::bigint AS entries,
                    sum(w)::bigint AS calls, sum(e)::bigint AS errors, sum(t) AS total,
                    min(mn) AS min, max(mx) AS max,
                    array_agg(hb ORDER BY hb) AS hist_index, array_agg(w ORDER BY hb) AS hist_count
             FROM (SELECT service, func_name,
                          date_trunc('{unit}', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS b,
                          fnmetrics_bucket(execution_time) AS hb,
                          count(*) AS n, sum(weight)::bigint AS w,
                          coalesce(sum(weight) FILTER (WHERE error_occurred), 0)::bigint AS e,
                          sum(execution_time * weight) AS t,
                          min(execution_time) AS mn, max(execution_time) AS mx
                   FROM {raw} GROUP BY 1, 2, 3, 4) g
             GROUP BY service, func_name, b"
        );
        tx.batch_execute(&upsert_sql(tables, level, &source))?;
    }
    Ok(())
}

/// What a rule says about a table fnmetrics did not make as it expects.
const NEVER_ALTERED: &str =
    "fnmetrics never alters an existing table: migrate it yourself, or choose another table name";

/// The `pg_class.relkind` of `table` (as the search path resolves it), or `None` if there is no
/// such relation. Anything but a table or a partitioned table is refused.
fn relation(tx: &mut Transaction<'_>, table: &str) -> Result<Option<String>, Error> {
    let kind = tx
        .query_opt(
            "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&quoted(table)],
        )
        .map_err(|e| pg_error("cannot read the PostgreSQL catalog", e))?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    let kind: String = kind
        .try_get(0)
        .map_err(|e| pg_error("cannot read the PostgreSQL catalog", e))?;
    if kind != "r" && kind != "p" {
        return Err(Error::new(
            ErrorKind::Schema,
            format!("`{table}` exists but is not a table (pg_class.relkind = '{kind}')"),
        ));
    }
    Ok(Some(kind))
}

/// The columns of `table`.
fn columns_of(tx: &mut Transaction<'_>, table: &str) -> Result<Vec<FoundColumn>, Error> {
    let ctx = "cannot read the PostgreSQL catalog";
    let rows = tx
        .query(
            "SELECT a.attname::text,
                    format_type(a.atttypid, a.atttypmod),
                    a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''
             FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&quoted(table)],
        )
        .map_err(|e| pg_error(ctx, e))?;
    rows.iter()
        .map(|r| {
            Ok(FoundColumn {
                name: r.try_get(0)?,
                ty: r.try_get(1)?,
                needs_value: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, postgres::Error>>()
        .map_err(|e| pg_error(ctx, e))
}

/// Every expected column must be there with exactly the expected type, and no other column may
/// need a value on INSERT.
fn check_columns(
    table: &str,
    expected: &[(&str, &str)],
    found: &[FoundColumn],
) -> Result<(), Error> {
    for (name, ty) in expected {
        match found.iter().find(|c| c.name == *name) {
            None => {
                let have: Vec<String> = found
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.ty))
                    .collect();
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "table `{table}` has no column `{name}` (expected `{name} {ty}`; found \
                         columns: {}); {NEVER_ALTERED}",
                        have.join(", ")
                    ),
                ));
            }
            Some(c) if c.ty != *ty => {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "column `{table}.{name}` has type `{}`, expected `{ty}`; {NEVER_ALTERED}",
                        c.ty
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(c) = found
        .iter()
        .find(|c| c.needs_value && !expected.iter().any(|(n, _)| *n == c.name))
    {
        return Err(Error::new(
            ErrorKind::Schema,
            format!(
                "table `{table}` has an extra column `{} {}` that is NOT NULL without a \
                 default, so fnmetrics cannot insert rows; {NEVER_ALTERED}",
                c.name, c.ty
            ),
        ));
    }
    Ok(())
}

/// `ON CONFLICT (key)` needs a unique, non-partial index on exactly the columns of `key`.
fn check_unique(tx: &mut Transaction<'_>, table: &str, key: &str) -> Result<(), Error> {
    let columns: Vec<String> = key.split(", ").map(str::to_owned).collect();
    let unique: bool = tx
        .query_one(
            "SELECT EXISTS (
                 SELECT 1 FROM pg_index i
                 WHERE i.indrelid = to_regclass($1)
                   AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
                   AND i.indnkeyatts = cardinality($2::text[])
                   AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
                        FROM pg_attribute a
                        WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[]))
                       = (SELECT array_agg(c ORDER BY c) FROM unnest($2::text[]) c)
             )",
            &[&quoted(table), &columns],
        )
        .and_then(|row| row.try_get(0))
        .map_err(|e| pg_error("cannot read the PostgreSQL catalog", e))?;
    if unique {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Schema,
            format!(
                "table `{table}` has no primary key or unique index on ({key}), which \
                 deduplication (`ON CONFLICT ({key})`) needs; {NEVER_ALTERED}"
            ),
        ))
    }
}
