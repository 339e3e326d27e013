//! Reads of history: a window and an hourly series over 30 days holding 10 M entries of one
//! function, through `PostgresReader` (whole hours from the hourly rollup, edges from the minute
//! rollup and the raw rows), against the same reads from the raw rows alone
//! (`with_rollups(false)`), in one run.
//!
//! `cargo bench --bench history`. Starts its own throw-away PostgreSQL (the test fixture) and
//! writes the entries through `PostgresSink` (about a minute). `FNMETRICS_HISTORY_ENTRIES`
//! sets another count.

use fnmetrics_test_support as support;

use fnmetrics::postgres::{PostgresOptions, PostgresReader, PostgresSink, Query};
use fnmetrics::sink::{EntryRecord, IdGen, Source};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::postgres::PostgresServer;

const DAYS: u64 = 30;
const BATCH: usize = 50_000;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The best of `runs` timings of `f` (the first run is cold), and its last result.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let t = Instant::now();
    let mut out = f();
    let cold = t.elapsed();
    let mut best = cold;
    for _ in 1..runs {
        let t = Instant::now();
        out = f();
        best = best.min(t.elapsed());
    }
    (cold, best, out)
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "history".contains(f.as_str())) {
        return;
    }
    let total: usize = std::env::var("FNMETRICS_HISTORY_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let pg = PostgresServer::start();
    let mut sink = PostgresSink::connect(&pg.url(), PostgresOptions::default()).expect("connect");
    let span = (DAYS * 86_400_000_000) as i64;
    let end = now_micros();
    let start = end - span;
    let step = span / total as i64;
    let source = Arc::new(Source::new("bench", "bench-host"));
    let name: Arc<str> = "app::history".into();
    let mut ids = IdGen::with_instance(9);
    let t = Instant::now();
    let mut written = 0;
    while written < total {
        let n = BATCH.min(total - written);
        let batch: Vec<EntryRecord> = (written..written + n)
            .map(|i| {
                let created = start + i as i64 * step;
                EntryRecord {
                    id: ids.next_id(created as u64 / 1000),
                    func_name: name.clone(),
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
    pg.client().batch_execute("VACUUM ANALYZE").expect("vacuum");

    let (from, to) = (
        UNIX_EPOCH + Duration::from_micros(start as u64),
        UNIX_EPOCH + Duration::from_micros(end as u64 + 1),
    );
    let mut rolled =
        PostgresReader::connect(&pg.url(), PostgresOptions::default()).expect("reader");
    let mut raw =
        PostgresReader::connect(&pg.url(), PostgresOptions::default().with_rollups(false))
            .expect("reader");
    let window = Query::function("app::history").between(from, to);
    let (w_cold, w_best, w) = best(5, || rolled.window(&window).expect("window")[0].1);
    let (r_cold, r_best, r) = best(2, || raw.window(&window).expect("window")[0].1);
    assert_eq!(w.calls, total as u64);
    assert_eq!((w.calls, w.errors, w.p99), (r.calls, r.errors, r.p99));
    let hour = Duration::from_secs(3600);
    let series = window.every(hour);
    let (s_cold, s_best, s) = best(5, || rolled.series(&series).expect("series").remove(0).1);
    assert_eq!(s.iter().map(|p| p.calls).sum::<u64>(), total as u64);

    println!(
        "\nhistory: {total} entries of one function over {DAYS} days (written in {:.1} s, {:.0} rows/s with rollups)",
        load.as_secs_f64(),
        total as f64 / load.as_secs_f64()
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  window, 30 days, rollups + raw edges   cold {:>8.1} ms   best {:>8.1} ms   (goal < 1000)",
        ms(w_cold),
        ms(w_best)
    );
    println!(
        "  window, 30 days, raw rows only         cold {:>8.1} ms   best {:>8.1} ms",
        ms(r_cold),
        ms(r_best)
    );
    println!(
        "  ratio raw only / rollups               {:>8.1}",
        r_best.as_secs_f64() / w_best.as_secs_f64()
    );
    println!(
        "  series, 30 days by the hour ({} points) cold {:>8.1} ms   best {:>8.1} ms",
        s.len(),
        ms(s_cold),
        ms(s_best)
    );
}
