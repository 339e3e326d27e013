//! The Grafana dashboard (`deploy/grafana/fnmetrics.json`) against a real, throw-away PostgreSQL
//! filled by the real pipeline. Grafana itself is not installable here, so this test expands the
//! dashboard's macros the way Grafana's PostgreSQL data source documents them
//! (<https://grafana.com/docs/grafana/latest/datasources/postgres/query-editor/#macros>):
//!
//! - `$__timeFilter(col)` → `col BETWEEN '<from, RFC 3339>' AND '<to, RFC 3339>'`
//! - `$__timeGroupAlias(col, $__interval)` → `floor(extract(epoch from col)/<secs>)*<secs> AS "time"`
//! - `$__interval` → the interval Grafana chose, e.g. `60s`
//! - a multi-value variable such as `$function` → its values quoted and comma-separated
//!   (`'a','b'`)
//!
//! and runs every panel's SQL, and the `function` variable's query, asserting rows with the
//! columns a time-series panel needs (`time`, `metric`, `value`) and the right numbers.
#![cfg(all(feature = "redis", feature = "postgres"))]

use fnmetrics::{measured, Flusher};
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use fnmetrics_test_support::wait_until;
use postgres::SimpleQueryMessage;
use serde_json::Value;
use std::time::Duration;

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

/// The dashboard's SQL with Grafana's macros and variables expanded.
fn expand(sql: &str, from: &str, to: &str, functions: &[&str]) -> String {
    let secs = INTERVAL_SECS;
    let mut out = sql.to_owned();
    // `$__timeGroupAlias(col, $__interval)`, before `$__interval` alone.
    while let Some(at) = out.find("$__timeGroupAlias(") {
        let args_at = at + "$__timeGroupAlias(".len();
        let end = args_at + out[args_at..].find(')').expect("a closing parenthesis");
        let col = out[args_at..end]
            .split(',')
            .next()
            .unwrap()
            .trim()
            .to_owned();
        let with = format!("floor(extract(epoch from {col})/{secs})*{secs} AS \"time\"");
        out.replace_range(at..=end, &with);
    }
    while let Some(at) = out.find("$__timeFilter(") {
        let args_at = at + "$__timeFilter(".len();
        let end = args_at + out[args_at..].find(')').expect("a closing parenthesis");
        let col = out[args_at..end].trim().to_owned();
        out.replace_range(at..=end, &format!("{col} BETWEEN '{from}' AND '{to}'"));
    }
    out = out.replace("$__interval", &format!("{secs}s"));
    let list: Vec<String> = functions
        .iter()
        .map(|f| format!("'{}'", f.replace('\'', "''")))
        .collect();
    out = out.replace("$function", &list.join(","));
    assert!(!out.contains('$'), "a macro left unexpanded:\n{out}");
    out
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
fn every_panel_and_the_function_variable_answer_from_the_metrics_table() {
    let redis = RedisServer::start();
    let pg = PostgresServer::start();
    let flusher = Flusher::builder()
        .redis(redis.url())
        .postgres(pg.url())
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

    // The time range: the last hour, as Grafana sends it (RFC 3339, UTC).
    let range = client
        .query_one(
            "SELECT to_char((now() - interval '1 hour') AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), to_char((now() + interval '1 minute') AT TIME \
             ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[],
        )
        .unwrap();
    let (from, to): (String, String) = (range.get(0), range.get(1));
    let selected = ["grafana::load", "grafana::save"];

    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");

    // The variable: every function, multi-value.
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    let function = vars.iter().find(|v| v["name"] == "function").unwrap();
    assert_eq!(function["multi"], true);
    let sql = expand(function["query"].as_str().unwrap(), &from, &to, &[]);
    let (_, rows) = run(&mut client, &sql);
    let names: Vec<&str> = rows.iter().filter_map(|r| r[0].as_deref()).collect();
    for f in selected.iter().chain(&["grafana::not_selected"]) {
        assert!(names.contains(f), "{f} not in {names:?}");
    }

    let panels = dashboard["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Calls/s", "Error %", "p50", "p99"]);
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        let target = &panel["targets"][0];
        assert_eq!(target["format"], "time_series", "{title}");
        let sql = expand(target["rawSql"].as_str().unwrap(), &from, &to, &selected);
        let (columns, rows) = run(&mut client, &sql);
        assert_eq!(columns, ["time", "metric", "value"], "{title}:\n{sql}");
        assert!(!rows.is_empty(), "{title}: no rows\n{sql}");
        let value = |r: &Vec<Option<String>>| -> f64 { r[2].as_deref().unwrap().parse().unwrap() };
        let metric = |r: &Vec<Option<String>>| r[1].clone().unwrap();
        assert!(
            rows.iter().all(|r| selected.contains(&metric(r).as_str())),
            "{title}: only the selected functions: {rows:?}"
        );
        // Every time is the start of a minute, in epoch seconds.
        for r in &rows {
            let t: f64 = r[0].as_deref().unwrap().parse().unwrap();
            assert_eq!(t % INTERVAL_SECS as f64, 0.0, "{title}: {r:?}");
        }
        let per_fn =
            |f: &str| -> Vec<f64> { rows.iter().filter(|r| metric(r) == f).map(value).collect() };
        match title {
            "Calls/s" => {
                // Calls per second times the interval, summed over the buckets: every call.
                let calls = |f| (per_fn(f).iter().sum::<f64>() * INTERVAL_SECS as f64).round();
                assert_eq!(
                    (calls("grafana::load"), calls("grafana::save")),
                    (250.0, 30.0)
                );
            }
            "Error %" => {
                // All calls fall in one or two minutes: 20 % of `load` calls failed overall.
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
