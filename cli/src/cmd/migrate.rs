//! `fnmetrics migrate [--check]`: run the PostgreSQL migration, or only check the schema version.

use crate::args::{MigrateArgs, Servers};
use crate::conn::{self, quoted, raw_postgres_error};
use crate::error::CliResult;
use crate::output::print;
use fnmetrics::redact_url;

use fnmetrics::postgres::{Migration, SCHEMA_VERSION};

pub(crate) fn run(s: &Servers, a: &MigrateArgs) -> CliResult<u8> {
    let url = s.postgres_url()?;
    let options = s.postgres_options()?;
    if !a.check {
        // Connecting migrates (idempotently, under an advisory lock).
        let sink = conn::sink(s)?;
        let did = match sink.migration() {
            Some(Migration::Created) => "tables created; ".to_owned(),
            Some(Migration::FromV1 { rows }) => format!(
                "migrated from version 1 ({rows} rows moved into day partitions and rolled up); "
            ),
            _ => String::new(),
        };
        print(&format!(
            "{did}schema current: table `{}` at version {SCHEMA_VERSION} in {}\n",
            options.table(),
            redact_url(url)
        ))?;
        return Ok(0);
    }

    let mut client = conn::raw_postgres(s)?;
    let err = |e| raw_postgres_error(url, "cannot read the schema version", e);
    let versions = options.schema_table();
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted(versions)])
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
    let applied: Option<i32> = if exists {
        client
            .query_one(
                &format!(
                    "SELECT max(version) FROM {} WHERE table_name = $1",
                    quoted(versions)
                ),
                &[&options.table()],
            )
            .and_then(|r| r.try_get(0))
            .map_err(err)?
    } else {
        None
    };
    let (line, code) = match applied {
        Some(v) if v == SCHEMA_VERSION => (
            format!("schema current: table `{}` at version {v}", options.table()),
            0,
        ),
        Some(v) if v > SCHEMA_VERSION => (
            format!(
                "schema newer than this fnmetrics: table `{}` at version {v}, this build knows \
                 version {SCHEMA_VERSION}; upgrade fnmetrics",
                options.table()
            ),
            1,
        ),
        Some(v) => (
            format!(
                "schema out of date: table `{}` at version {v}, current is {SCHEMA_VERSION}; \
                 run `fnmetrics migrate`",
                options.table()
            ),
            1,
        ),
        None => (
            format!(
                "schema missing: no version recorded for table `{}` in `{versions}`; run \
                 `fnmetrics migrate`",
                options.table()
            ),
            1,
        ),
    };
    print(&format!("{line}\n"))?;
    Ok(code)
}
