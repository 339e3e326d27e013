//! The Grafana dashboard (`deploy/grafana/fnmetrics.json`) against a real, throw-away PostgreSQL
//! filled by the real pipeline. Grafana itself is not installable here, so this test expands the
//! dashboard's macros the way Grafana's PostgreSQL data source documents them
//! (<https://grafana.com/docs/grafana/latest/datasources/postgres/query-editor/#macros>):
//!
//! - `$__timeFilter(col)` → `col BETWEEN '<from, RFC 3339>' AND '<to, RFC 3339>'`
//! - `$__timeGroupAlias(col, $__interval)` → `floor(extract(epoch from col)/<secs>)*<secs> AS "time"`
//! - `$__timeGroup(col, $__interval)` → `floor(extract(epoch from col)/<secs>)*<secs>`
//! - `$__unixEpochFrom()`, `$__unixEpochTo()` → the range's ends in Unix seconds
//! - `$__interval` → the interval Grafana chose, e.g. `60s`
//! - a multi-value variable such as `$function` → its values quoted and comma-separated
//!   (`'a','b'`)
//!
//! and runs every panel's SQL, and the variables' queries, asserting rows with the columns a
//! time-series panel needs (`time`, `metric`, `value`) and the right numbers, over a range that
//! reads the minute rollup and one that reads the hourly rollup; quantiles equal those of
//! `PostgresReader`.
#![cfg(all(feature = "redis", feature = "postgres"))]

use fnmetrics::postgres::{PostgresOptions, PostgresReader, Query};
use fnmetrics::{measured, Flusher};
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use fnmetrics_test_support::wait_until;
use postgres::SimpleQueryMessage;
use serde_json::Value;
use std::time::{Duration, SystemTime};

const DASHBOARD: &str = include_str!("../deploy/grafana/fnmetrics.json");
const INTERVAL_SECS: u64 = 60;

#[measured(name = "grafana::load")]
fn load(i: u64) -> Result<(), ()> {
    if i.is_multiple_of(5) {
        Err(())
    } else {
        Ok(())
    }
}

#[measured(name = "grafana::save")]
fn save() {}

#[measured(name = "grafana::not_selected")]
fn not_selected() {}

/// A time range and interval as Grafana sends them.
struct Range {
    /// RFC 3339, UTC.
    from: String,
    to: String,
    /// Unix seconds.
    from_secs: i64,
    to_secs: i64,
    interval_secs: u64,
}

/// The dashboard's SQL with Grafana's macros and variables expanded.
fn expand(sql: &str, r: &Range, functions: &[&str], services: &[&str]) -> String {
    let secs = r.interval_secs;
    let mut out = sql.to_owned();
    // `$__timeGroupAlias(col, $__interval)` and `$__timeGroup(..)`, before `$__interval` alone.
    for (mac, alias) in [
        ("$__timeGroupAlias(", " AS \"time\""),
        ("$__timeGroup(", ""),
    ] {
        while let Some(at) = out.find(mac) {
            let args_at = at + mac.len();
            let end = args_at + out[args_at..].find(')').expect("a closing parenthesis");
            let col = out[args_at..end]
                .split(',')
                .next()
                .unwrap()
                .trim()
                .to_owned();
            let with = format!("floor(extract(epoch from {col})/{secs})*{secs}{alias}");
            out.replace_range(at..=end, &with);
        }
    }
    while let Some(at) = out.find("$__timeFilter(") {
        let args_at = at + "$__timeFilter(".len();
        let end = args_at + out[args_at..].find(')').expect("a closing parenthesis");
        let col = out[args_at..end].trim().to_owned();
        out.replace_range(
            at..=end,
            &format!("{col} BETWEEN '{}' AND '{}'", r.from, r.to),
        );
    }
    out = out
        .replace("$__unixEpochFrom()", &r.from_secs.to_string())
        .replace("$__unixEpochTo()", &r.to_secs.to_string())
        .replace("$__interval", &format!("{secs}s"));
    let list = |values: &[&str]| -> String {
        values
            .iter()
            .map(|f| format!("'{}'", f.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(",")
    };
    out = out
        .replace("$function", &list(functions))
        .replace("$service", &list(services));
    assert!(!out.contains('$'), "a macro left unexpanded:\n{out}");
    out
}

/// The range from `ago` seconds before the server's now to a minute after it, by `interval_secs`.
fn range(client: &mut postgres::Client, ago: i64, interval_secs: u64) -> Range {
    let row = client
        .query_one(
            "SELECT to_char((now() - make_interval(secs => $1)) AT TIME ZONE 'UTC',
                            'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    to_char((now() + interval '1 minute') AT TIME ZONE 'UTC',
                            'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    extract(epoch FROM now() - make_interval(secs => $1))::bigint,
                    extract(epoch FROM now() + interval '1 minute')::bigint",
            &[&(ago as f64)],
        )
        .unwrap();
    Range {
        from: row.get(0),
        to: row.get(1),
        from_secs: row.get(2),
        to_secs: row.get(3),
        interval_secs,
    }
}

/// Runs `sql`; the column names and every row as text.
fn run(client: &mut postgres::Client, sql: &str) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for m in client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{e}:\n{sql}"))
    {
        if let SimpleQueryMessage::Row(r) = m {
            columns = r.columns().iter().map(|c| c.name().to_owned()).collect();
            rows.push((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect());
        }
    }
    (columns, rows)
}

#[test]
fn every_panel_and_variable_answers_from_the_rollups() {
    let redis = RedisServer::start();
    let pg = PostgresServer::start();
    let flusher = Flusher::builder()
        .redis(redis.url())
        .postgres(pg.url())
        .service("shop")
        .flush_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .on_error(|_| {})
        .start()
        .expect("flusher starts");
    for i in 0..250 {
        let _ = load(i);
    }
    for _ in 0..30 {
        save();
    }
    not_selected();
    flusher.flush().expect("flush");
    let mut client = pg.client();
    wait_until("every row in PostgreSQL", Duration::from_secs(30), || {
        let n: i64 = client
            .query_one("SELECT count(*) FROM metrics", &[])
            .unwrap()
            .get(0);
        n == 281
    });
    drop(flusher);

    let selected = ["grafana::load", "grafana::save"];
    let services = ["shop"];
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let hour = range(&mut client, 3600, INTERVAL_SECS);

    // The variables: every function and every service, multi-value.
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    let values = |client: &mut postgres::Client, name: &str| -> Vec<String> {
        let var = vars.iter().find(|v| v["name"] == name).unwrap();
        assert_eq!(var["multi"], true, "{name}");
        let sql = expand(var["query"].as_str().unwrap(), &hour, &[], &[]);
        let (_, rows) = run(client, &sql);
        rows.into_iter().filter_map(|r| r[0].clone()).collect()
    };
    let names = values(&mut client, "function");
    for f in selected.iter().chain(&["grafana::not_selected"]) {
        assert!(names.iter().any(|n| n == f), "{f} not in {names:?}");
    }
    assert_eq!(values(&mut client, "service"), ["shop"]);

    let panels = dashboard["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Calls/s", "Error %", "p50", "p99"]);
    let metric_of = |f: &str| format!("{f} (shop)");
    // The last hour (the minute rollup) and the last week (the hourly one).
    for r in [&hour, &range(&mut client, 7 * 86_400, INTERVAL_SECS)] {
        for panel in panels {
            let title = panel["title"].as_str().unwrap();
            let target = &panel["targets"][0];
            assert_eq!(target["format"], "time_series", "{title}");
            let sql = expand(target["rawSql"].as_str().unwrap(), r, &selected, &services);
            let (columns, rows) = run(&mut client, &sql);
            assert_eq!(columns, ["time", "metric", "value"], "{title}:\n{sql}");
            assert!(!rows.is_empty(), "{title}: no rows\n{sql}");
            let value =
                |r: &Vec<Option<String>>| -> f64 { r[2].as_deref().unwrap().parse().unwrap() };
            let metric = |r: &Vec<Option<String>>| r[1].clone().unwrap();
            assert!(
                rows.iter()
                    .all(|r| selected.iter().any(|f| metric_of(f) == metric(r))),
                "{title}: only the selected functions: {rows:?}"
            );
            // Every time is the start of an interval, in epoch seconds.
            for row in &rows {
                let t: f64 = row[0].as_deref().unwrap().parse().unwrap();
                assert_eq!(t % INTERVAL_SECS as f64, 0.0, "{title}: {row:?}");
            }
            let per_fn = |f: &str| -> Vec<f64> {
                rows.iter()
                    .filter(|r| metric(r) == metric_of(f))
                    .map(value)
                    .collect()
            };
            match title {
                "Calls/s" => {
                    // Calls per second times the time each point stands for (the interval, or
                    // an hour from the hourly rollup), summed: every call.
                    let width = if r.to_secs - r.from_secs > 172_800 {
                        3600.0
                    } else {
                        INTERVAL_SECS as f64
                    };
                    let calls = |f| (per_fn(f).iter().sum::<f64>() * width).round();
                    assert_eq!(
                        (calls("grafana::load"), calls("grafana::save")),
                        (250.0, 30.0),
                        "{rows:?}"
                    );
                }
                "Error %" => {
                    assert!(
                        per_fn("grafana::save").iter().all(|&v| v == 0.0),
                        "{rows:?}"
                    );
                    assert!(
                        per_fn("grafana::load")
                            .iter()
                            .all(|&v| v > 0.0 && v <= 100.0),
                        "{rows:?}"
                    );
                }
                _ => assert!(
                    rows.iter().map(value).all(|v| v > 0.0 && v < 1.0),
                    "{title}: seconds: {rows:?}"
                ),
            }
        }
    }

    // With one point for the whole range, the quantile panels give what PostgresReader reads
    // (the same histogram, the same method).
    let mut reader = PostgresReader::connect(&pg.url(), PostgresOptions::default()).unwrap();
    let now = SystemTime::now();
    let whole = Range {
        interval_secs: 315_360_000,
        ..range(&mut client, 3600, INTERVAL_SECS)
    };
    for f in selected {
        let w = reader
            .window(&Query::function(f).between(
                now - Duration::from_secs(3600),
                now + Duration::from_secs(60),
            ))
            .unwrap()[0]
            .1;
        for (title, want) in [("p50", w.p50), ("p99", w.p99)] {
            let panel = panels.iter().find(|p| p["title"] == title).unwrap();
            let sql = expand(
                panel["targets"][0]["rawSql"].as_str().unwrap(),
                &whole,
                &[f],
                &services,
            );
            let (_, rows) = run(&mut client, &sql);
            assert_eq!(rows.len(), 1, "{title} of {f}: {rows:?}");
            let secs: f64 = rows[0][2].as_deref().unwrap().parse().unwrap();
            assert_eq!(
                Duration::from_nanos((secs * 1e9).round() as u64),
                want,
                "{title} of {f}"
            );
        }
    }
}
