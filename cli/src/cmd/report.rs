//! `fnmetrics report`: per-function calls, errors and latency over a window, from PostgreSQL
//! (the hourly and minute rollups for whole hours and minutes, the raw rows for the edges).

use crate::args::{Format, ReportArgs, Servers, SortKey};
use crate::conn::{self, postgres_error};
use crate::duration::{human_ns, human_span};
use crate::error::{CliError, CliResult};
use crate::glob::{self, Glob};
use crate::output::{csv_field, json, percent, print, Table};
use fnmetrics::postgres::{PostgresReader, Query};
use fnmetrics::redact_url;
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One function's numbers over the window; times in nanoseconds.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FnStats {
    pub(crate) function: String,
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) mean_ns: u64,
    pub(crate) p50_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) max_ns: u64,
}

pub(crate) fn run(s: &Servers, a: &ReportArgs) -> CliResult<u8> {
    let glob = glob::optional(a.func.as_deref())?;
    let url = s.postgres_url()?;
    let mut reader = conn::postgres_reader(s)?;
    let to = SystemTime::now();
    let from = to.checked_sub(a.since).unwrap_or(UNIX_EPOCH);
    let names = functions(&mut reader, url, glob.as_ref())?;
    let mut rows = query(&mut reader, url, &names, a.service.as_deref(), from, to)?;
    sort(&mut rows, a.sort);
    let text = match a.format {
        Format::Json => json(&rows)?,
        Format::Csv => csv(&rows),
        Format::Table if rows.is_empty() => format!(
            "no calls recorded in the last {}{}{}\n",
            human_span(a.since),
            a.func
                .as_deref()
                .map(|g| format!(" for functions matching `{g}`"))
                .unwrap_or_default(),
            a.service
                .as_deref()
                .map(|s| format!(" in service `{s}`"))
                .unwrap_or_default()
        ),
        Format::Table => table(&rows),
    };
    print(&text)?;
    Ok(0)
}

/// The functions stored whose names match `glob`; an error that says to migrate before any
/// drainer made the tables.
pub(crate) fn functions(
    reader: &mut PostgresReader,
    url: &str,
    glob: Option<&Glob>,
) -> CliResult<Vec<String>> {
    let ready = reader
        .is_ready()
        .map_err(|e| postgres_error(url, "cannot read the schema version", e))?;
    if !ready {
        return Err(CliError::runtime(format!(
            "no fnmetrics tables in PostgreSQL at {}",
            redact_url(url)
        ))
        .hint("run `fnmetrics migrate` (or `fnmetrics drain`), or check --table"));
    }
    let mut names = reader
        .functions()
        .map_err(|e| postgres_error(url, "cannot list the functions", e))?;
    if let Some(g) = glob {
        names.retain(|n| g.matches(n));
    }
    Ok(names)
}

/// The numbers of each of `names` with calls in `[from, to)` (of one service, or all), by name:
/// whole hours and minutes from the rollups, the edges from the raw rows.
pub(crate) fn query(
    reader: &mut PostgresReader,
    url: &str,
    names: &[String],
    service: Option<&str>,
    from: SystemTime,
    to: SystemTime,
) -> CliResult<Vec<FnStats>> {
    let mut query = Query::functions(names).between(from, to);
    if let Some(s) = service {
        query = query.service(s);
    }
    let windows = reader
        .window(&query)
        .map_err(|e| postgres_error(url, "cannot read the report", e))?;
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Ok(windows
        .into_iter()
        .map(|(function, w)| FnStats {
            function,
            calls: w.calls,
            errors: w.errors,
            mean_ns: ns(w.mean),
            p50_ns: ns(w.p50),
            p99_ns: ns(w.p99),
            max_ns: ns(w.max),
        })
        .collect())
}

/// Largest first by `key`, then by name.
pub(crate) fn sort(rows: &mut [FnStats], key: SortKey) {
    rows.sort_by(|a, b| {
        let k = |r: &FnStats| match key {
            SortKey::P99 => r.p99_ns,
            SortKey::Errors => r.errors,
            SortKey::Calls => r.calls,
        };
        k(b).cmp(&k(a)).then_with(|| a.function.cmp(&b.function))
    });
}

fn csv(rows: &[FnStats]) -> String {
    let mut s = String::from("function,calls,errors,mean_ns,p50_ns,p99_ns,max_ns\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            csv_field(&r.function),
            r.calls,
            r.errors,
            r.mean_ns,
            r.p50_ns,
            r.p99_ns,
            r.max_ns
        ));
    }
    s
}

/// The aligned table for a person.
pub(crate) fn table(rows: &[FnStats]) -> String {
    let mut t = Table::new(&[
        "function", "calls", "errors", "error%", "mean", "p50", "p99", "max",
    ]);
    for r in rows {
        t.row(vec![
            r.function.clone(),
            r.calls.to_string(),
            r.errors.to_string(),
            percent(r.errors as f64, r.calls as f64),
            human_ns(r.mean_ns as f64),
            human_ns(r.p50_ns as f64),
            human_ns(r.p99_ns as f64),
            human_ns(r.max_ns as f64),
        ]);
    }
    t.render()
}
