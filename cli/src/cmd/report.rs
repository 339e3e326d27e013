//! `fnmetrics report`: per-function calls, errors and latency over a window, from PostgreSQL's
//! `metrics` table.

use crate::args::{Format, ReportArgs, Servers, SortKey};
use crate::conn::{self, quoted, raw_postgres_error};
use crate::duration::{human_ns, human_span};
use crate::error::{CliError, CliResult};
use crate::glob::{self, Glob};
use crate::output::{csv_field, json, percent, print, Table};
use serde::Serialize;
use std::time::Duration;

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
    if let Some(service) = &a.service {
        return Err(CliError::usage(format!(
            "--service {service}: the metrics table has no service column yet"
        ))
        .hint("leave out --service; it applies once the history schema adds services"));
    }
    let glob = glob::optional(a.func.as_deref())?;
    let url = s.postgres_url()?;
    let options = s.postgres_options()?;
    let mut client = conn::raw_postgres(s)?;
    let mut rows = query(&mut client, options.table(), a.since, glob.as_ref())
        .map_err(|e| raw_postgres_error(url, "cannot read the report", e))?;
    sort(&mut rows, a.sort);
    let text = match a.format {
        Format::Json => json(&rows)?,
        Format::Csv => csv(&rows),
        Format::Table if rows.is_empty() => format!(
            "no calls recorded in the last {}{}\n",
            human_span(a.since),
            a.func
                .as_deref()
                .map(|g| format!(" for functions matching `{g}`"))
                .unwrap_or_default()
        ),
        Format::Table => table(&rows),
    };
    print(&text)?;
    Ok(0)
}

/// The numbers of every function with calls in the last `since`, matching `glob`, by name.
pub(crate) fn query(
    client: &mut postgres::Client,
    table: &str,
    since: Duration,
    glob: Option<&Glob>,
) -> Result<Vec<FnStats>, postgres::Error> {
    let like = glob.map_or_else(|| "%".to_owned(), Glob::to_like);
    let sql = format!(
        "SELECT func_name,
                count(*),
                count(*) FILTER (WHERE error_occurred),
                avg(execution_time),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY execution_time),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY execution_time),
                max(execution_time)
         FROM {}
         WHERE created_at >= now() - make_interval(secs => $1) AND func_name LIKE $2
         GROUP BY func_name
         ORDER BY func_name",
        quoted(table)
    );
    let ns = |secs: f64| (secs * 1e9).round().max(0.0) as u64;
    let mut out = Vec::new();
    for r in client.query(&sql, &[&since.as_secs_f64(), &like])? {
        let function: String = r.try_get(0)?;
        if glob.is_some_and(|g| !g.matches(&function)) {
            continue;
        }
        out.push(FnStats {
            function,
            calls: r.try_get::<_, i64>(1)?.max(0) as u64,
            errors: r.try_get::<_, i64>(2)?.max(0) as u64,
            mean_ns: ns(r.try_get(3)?),
            p50_ns: ns(r.try_get(4)?),
            p99_ns: ns(r.try_get(5)?),
            max_ns: ns(r.try_get(6)?),
        });
    }
    Ok(out)
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
