//! The idempotent migration: the schema-version table, the entry table and its index, and the
//! check of a table that already exists.

use crate::error::pg_error;
use crate::options::{millis_ceil, quoted, PostgresOptions};
use fnmetrics_core::{Error, ErrorKind};
use postgres::{Client, Transaction};

/// The schema version this crate writes and reads, as recorded in the schema-version table.
///
/// ```
/// assert_eq!(fnmetrics::postgres::SCHEMA_VERSION, 1);
/// ```
pub const SCHEMA_VERSION: i32 = 1;

/// The `pg_advisory_xact_lock` key that serialises migrations within a database ("fnmetric").
pub(crate) const MIGRATION_LOCK_KEY: i64 = 0x666e_6d65_7472_6963;

/// The entry table's columns and their types as `format_type` spells them.
const ENTRY_COLUMNS: [(&str, &str); 5] = [
    ("id", "uuid"),
    ("func_name", "text"),
    ("execution_time", "double precision"),
    ("error_occurred", "boolean"),
    ("created_at", "timestamp with time zone"),
];

/// The schema-version table's columns.
const VERSION_COLUMNS: [(&str, &str); 2] = [("table_name", "text"), ("version", "integer")];

/// A column of an existing table, read from `pg_attribute`.
struct FoundColumn {
    name: String,
    ty: String,
    /// NOT NULL with no default, identity or generation: an INSERT must give it a value.
    needs_value: bool,
}

/// Brings the database to [`SCHEMA_VERSION`], or explains why it cannot.
///
/// One transaction holding `pg_advisory_xact_lock`, so processes that start together migrate one
/// after the other, and the later ones find the work done. An existing entry table is checked,
/// never altered.
///
/// The lock is waited for at most `migration_lock_timeout` (a `lock_timeout` for that one
/// statement, with `statement_timeout` off so the lock's own limit decides); then the session's
/// limits apply again. A lock not had in time is an [`ErrorKind::Timeout`] naming the lock.
pub(crate) fn migrate(client: &mut Client, options: &PostgresOptions) -> Result<(), Error> {
    let ctx = "cannot migrate the PostgreSQL schema";
    let mut tx = client.transaction().map_err(|e| pg_error(ctx, e))?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = {}",
        millis_ceil(options.migration_lock_timeout())
    ))
    .map_err(|e| pg_error(ctx, e))?;
    if let Err(e) = tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]) {
        if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            return Err(Error::with_source(
                ErrorKind::Timeout,
                format!(
                    "cannot migrate the PostgreSQL schema: another process holds the migration \
                     lock (pg_advisory_xact_lock({MIGRATION_LOCK_KEY})) for longer than \
                     migration_lock_timeout ({:?})",
                    options.migration_lock_timeout()
                ),
                e,
            ));
        }
        return Err(pg_error(ctx, e));
    }
    tx.batch_execute(&session_timeouts("SET LOCAL", options))
        .map_err(|e| pg_error(ctx, e))?;

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
    match columns_of(&mut tx, options.schema_table())? {
        Some(found) => check_columns(options.schema_table(), &VERSION_COLUMNS, &found)?,
        None => {
            return Err(Error::new(
                ErrorKind::Schema,
                format!(
                    "`{}` could not be created or is not visible in the search_path",
                    options.schema_table()
                ),
            ))
        }
    }
    let applied: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {versions} WHERE table_name = $1"),
            &[&options.table()],
        )
        .and_then(|row| row.try_get(0))
        .map_err(|e| pg_error(ctx, e))?;
    if applied > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::Schema,
            format!(
                "table `{}` is at schema version {applied} (recorded in `{}`), newer than the \
                 version {SCHEMA_VERSION} this fnmetrics understands",
                options.table(),
                options.schema_table()
            ),
        ));
    }

    match columns_of(&mut tx, options.table())? {
        None => create_entry_table(&mut tx, options.table()).map_err(|e| pg_error(ctx, e))?,
        Some(found) => {
            check_columns(options.table(), &ENTRY_COLUMNS, &found)?;
            check_id_is_unique(&mut tx, options.table())?;
        }
    }
    if applied < SCHEMA_VERSION {
        tx.execute(
            &format!("INSERT INTO {versions} (table_name, version) VALUES ($1, $2)"),
            &[&options.table(), &SCHEMA_VERSION],
        )
        .map_err(|e| pg_error(ctx, e))?;
    }
    tx.commit().map_err(|e| pg_error(ctx, e))
}

/// `SET` (or `SET LOCAL`) statements for the session's `statement_timeout` and `lock_timeout`.
pub(crate) fn session_timeouts(set: &str, options: &PostgresOptions) -> String {
    format!(
        "{set} statement_timeout = {}; {set} lock_timeout = {}",
        millis_ceil(options.statement_timeout()),
        millis_ceil(options.lock_timeout())
    )
}

fn create_entry_table(tx: &mut Transaction<'_>, table: &str) -> Result<(), postgres::Error> {
    let t = quoted(table);
    let mut index = format!("{table}_func_name_created_at_idx");
    index.truncate(63); // ASCII, so this cuts on a character boundary
    let index = quoted(&index);
    tx.batch_execute(&format!(
        "CREATE TABLE {t} (
             id uuid PRIMARY KEY,
             func_name text NOT NULL,
             execution_time double precision NOT NULL,
             error_occurred boolean NOT NULL,
             created_at timestamptz NOT NULL
         );
         COMMENT ON COLUMN {t}.execution_time IS 'seconds';
         CREATE INDEX {index} ON {t} (func_name, created_at);"
    ))
}

/// The columns of `table` (as the search path resolves it), or `None` if there is no such
/// relation.
fn columns_of(tx: &mut Transaction<'_>, table: &str) -> Result<Option<Vec<FoundColumn>>, Error> {
    let ctx = "cannot read the PostgreSQL catalog";
    let name = quoted(table);
    let kind = tx
        .query_opt(
            "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&name],
        )
        .map_err(|e| pg_error(ctx, e))?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    let kind: String = kind.try_get(0).map_err(|e| pg_error(ctx, e))?;
    if kind != "r" && kind != "p" {
        return Err(Error::new(
            ErrorKind::Schema,
            format!("`{table}` exists but is not a table (pg_class.relkind = '{kind}')"),
        ));
    }
    let rows = tx
        .query(
            "SELECT a.attname::text,
                    format_type(a.atttypid, a.atttypmod),
                    a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''
             FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&name],
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
        .map(Some)
        .map_err(|e| pg_error(ctx, e))
}

/// Every expected column must be there with exactly the expected type, and no other column may
/// need a value on INSERT.
fn check_columns(
    table: &str,
    expected: &[(&str, &str)],
    found: &[FoundColumn],
) -> Result<(), Error> {
    let never_altered = "fnmetrics never alters an existing table: migrate it yourself, or \
                         choose another table name";
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
                         columns: {}); {never_altered}",
                        have.join(", ")
                    ),
                ));
            }
            Some(c) if c.ty != *ty => {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "column `{table}.{name}` has type `{}`, expected `{ty}`; {never_altered}",
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
                 default, so fnmetrics cannot insert rows; {never_altered}",
                c.name, c.ty
            ),
        ));
    }
    Ok(())
}

/// `INSERT .. ON CONFLICT (id)` needs a unique, non-partial index on exactly `id`.
fn check_id_is_unique(tx: &mut Transaction<'_>, table: &str) -> Result<(), Error> {
    let unique: bool = tx
        .query_one(
            "SELECT EXISTS (
                 SELECT 1
                 FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                 WHERE i.indrelid = to_regclass($1)
                   AND i.indisunique AND i.indisvalid
                   AND i.indnkeyatts = 1
                   AND i.indpred IS NULL AND i.indexprs IS NULL
                   AND a.attname = 'id'
             )",
            &[&quoted(table)],
        )
        .and_then(|row| row.try_get(0))
        .map_err(|e| pg_error("cannot read the PostgreSQL catalog", e))?;
    if unique {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Schema,
            format!(
                "table `{table}` has no primary key or unique index on `id`, which \
                 deduplication (`ON CONFLICT (id)`) needs; fnmetrics never alters an existing \
                 table: migrate it yourself, or choose another table name"
            ),
        ))
    }
}
