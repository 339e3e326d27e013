//! `fnmetrics report --since 30d` over 10 M entries (100 functions, 30 days), the real command
//! against a throw-away PostgreSQL (the test fixture) holding the rollups (goal < 1 s), against
//! the query the command ran before rollups existed (`percentile_cont` over the raw rows), in
//! one run.
//!
//! `cargo bench -p fnmetrics-cli --bench report`. Writes the entries through `PostgresSink`
//! first (a minute or two). `FNMETRICS_HISTORY_ENTRIES` sets another count.

use fnmetrics::postgres::{PostgresOptions, PostgresSink};
use fnmetrics::sink::{EntryRecord, IdGen, Source};
use fnmetrics_test_support::postgres::PostgresServer;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAYS: i64 = 30;
const FUNCTIONS: usize = 100;
const BATCH: usize = 50_000;
const RUNS: usize = 5;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Runs the command; returns how long it took and its standard output.
fn report(args: &[&str]) -> (Duration, String) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_fnmetrics"))
        .args(args)
        .env_remove("FNMETRICS_POSTGRES_URL")
        .output()
        .expect("the command runs");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, String::from_utf8(out.stdout).expect("UTF-8"))
}

/// The calls of every row of a JSON report.
fn calls(json: &str) -> u64 {
    let rows: serde_json::Value = serde_json::from_str(json).expect("JSON");
    rows.as_array()
        .expect("a list")
        .iter()
        .map(|r| r["calls"].as_u64().expect("calls"))
        .sum()
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "report".contains(f.as_str())) {
        return;
    }
    let total: usize = std::env::var("FNMETRICS_HISTORY_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    // FNMETRICS_BENCH_POSTGRES_URL: a server of your own, filled once and read again by later
    // runs (to try a query out without writing the entries each time).
    let own = std::env::var("FNMETRICS_BENCH_POSTGRES_URL").ok();
    let fixture = own.is_none().then(PostgresServer::start);
    let url = own.unwrap_or_else(|| {
        fixture
            .as_ref()
            .map(PostgresServer::url)
            .unwrap_or_default()
    });
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let mut sink = PostgresSink::connect(&url, PostgresOptions::default()).expect("connect");
    let held: i64 = client
        .query_one("SELECT count(*) FROM metrics", &[])
        .and_then(|r| r.try_get(0))
        .expect("count");
    let held = held as usize;
    // 30 days less an hour up to a minute ago, so that `--since 30d` after the load (a minute or
    // two) covers them all.
    let end = now_micros() - 60_000_000;
    let start = end - DAYS * 86_400_000_000 + 3_600_000_000;
    let step = (end - start) / total as i64;
    let source = Arc::new(Source::new("bench", "bench-host"));
    let names: Vec<Arc<str>> = (0..FUNCTIONS)
        .map(|i| format!("bench::report::f{i:03}").into())
        .collect();
    let mut ids = IdGen::with_instance(11);
    let t = Instant::now();
    let mut written = if held == total { total } else { 0 };
    assert!(
        held == total || held == 0,
        "{held} rows already in the table"
    );
    while written < total {
        let n = BATCH.min(total - written);
        let batch: Vec<EntryRecord> = (written..written + n)
            .map(|i| {
                let created = start + i as i64 * step;
                EntryRecord {
                    id: ids.next_id(created as u64 / 1000),
                    func_name: names[i % FUNCTIONS].clone(),
                    execution_time: Duration::from_nanos(1_000 + (i as u64 * 7_919) % 5_000_000),
                    error_occurred: i % 13 == 0,
                    created_at_micros: created,
                    weight: 1,
                    source: source.clone(),
                }
            })
            .collect();
        sink.write_batch(&batch).expect("write");
        written += n;
    }
    let load = t.elapsed();
    drop(sink);
    if held == 0 {
        client.batch_execute("VACUUM ANALYZE").expect("vacuum");
    }

    let args = [
        "report",
        "--postgres",
        &url,
        "--since",
        "30d",
        "--format",
        "json",
    ];
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let (took, json) = report(&args);
        assert_eq!(calls(&json), total as u64, "every entry in the report");
        times.push(took);
    }
    let cold = times[0];
    times.sort();
    let median = times[RUNS / 2];
    let (one_fn, json) = report(&[
        "report",
        "--postgres",
        &url,
        "--since",
        "30d",
        "--format",
        "json",
        "--fn",
        "bench::report::f007",
    ]);
    assert_eq!(calls(&json), (total / FUNCTIONS) as u64);

    // The query of the command before the rollups: every raw row, sorted for percentile_cont.
    let t = Instant::now();
    let rows = client
        .query(
            "SELECT func_name, count(*), count(*) FILTER (WHERE error_occurred),
                    avg(execution_time),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY execution_time),
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY execution_time),
                    max(execution_time)
             FROM metrics WHERE created_at >= now() - interval '30 days'
             GROUP BY func_name",
            &[],
        )
        .expect("raw report");
    let raw = t.elapsed();
    assert_eq!(rows.len(), FUNCTIONS);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "\nreport: {total} entries of {FUNCTIONS} functions over {DAYS} days (written in {:.1} s)",
        load.as_secs_f64()
    );
    println!(
        "  fnmetrics report --since 30d              cold {:>8.1} ms   median {:>8.1} ms   (goal < 1000)",
        ms(cold),
        ms(median)
    );
    println!(
        "  fnmetrics report --since 30d --fn ONE     {:>8.1} ms",
        ms(one_fn)
    );
    println!(
        "  the raw-row query of the old report       {:>8.1} ms   ratio old / new {:.1}",
        ms(raw),
        raw.as_secs_f64() / median.as_secs_f64()
    );
}
