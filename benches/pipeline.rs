//! Throughput of the two pipeline stages against their peers on the same box, in one run:
//!
//! - stage 1 (process → Redis): entries/s through `RedisSink` against `redis-benchmark -P 64`
//!   RPUSH into the same server;
//! - stage 2 (Redis → PostgreSQL): entries/s through `Drainer` (claim, binary COPY into the
//!   partitioned table, rollups, acknowledge), with the rollups off and on, each into a table of
//!   its own, against `psql \copy` of the same rows (all eight columns) into a third such table,
//!   and against a naive one-INSERT-per-row writer.
//!
//! `cargo bench --bench pipeline`. Starts its own throw-away servers (the test fixture).

use fnmetrics_test_support as support;

use fnmetrics::postgres::{PostgresOptions, PostgresSink};
use fnmetrics::redis::{RedisOptions, RedisSink};
use fnmetrics::sink::{EntryRecord, FlushBatch, IdGen, Sink, Source};
use fnmetrics::Drainer;
use fnmetrics::Snapshot;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::postgres::PostgresServer;
use support::redis::RedisServer;

const STAGE1_ENTRIES: usize = 1_000_000;
const FLUSH: usize = 10_000;
const STAGE2_ENTRIES: usize = 500_000;
const NAIVE_ROWS: usize = 5_000;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// `n` entries of about 50 bytes encoded, spread over 20 function names, from one process (one
/// shared source, as a flusher makes them).
fn entries(ids: &mut IdGen, n: usize) -> Vec<EntryRecord> {
    let names: Vec<std::sync::Arc<str>> = (0..20)
        .map(|i| format!("app::orders::fn_{i:02}").into())
        .collect();
    let source = std::sync::Arc::new(Source::new("bench", "bench-host"));
    let t0 = now_micros();
    (0..n)
        .map(|i| {
            let created = t0 + i as i64;
            EntryRecord {
                id: ids.next_id(created as u64 / 1000),
                func_name: names[i % names.len()].clone(),
                execution_time: Duration::from_nanos(1_000 + (i as u64 * 7_919) % 5_000_000),
                error_occurred: i % 13 == 0,
                created_at_micros: created,
                weight: 1,
                source: source.clone(),
            }
        })
        .collect()
}

fn batches(ids: &mut IdGen, total: usize) -> Vec<FlushBatch> {
    (0..total / FLUSH)
        .map(|_| FlushBatch {
            flush_id: ids.next_id(now_micros() as u64 / 1000),
            entries: entries(ids, FLUSH),
            aggregates: vec![aggregate()],
        })
        .collect()
}

/// One function's delta as a flush of `FLUSH` calls carries it: 40 histogram buckets.
fn aggregate() -> Snapshot {
    let mut a = Snapshot::new("app::orders::fn_00");
    (a.calls, a.errors, a.total_ns, a.min_ns, a.max_ns) =
        (FLUSH as u64, 7, 123_456_789, 1_000, 5_000_000);
    for b in 300..340 {
        a.histogram_mut().add_to_bucket(b, 250);
    }
    a
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn redis_benchmark(port: u16) -> Option<f64> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-P", "64", "-n", "1000000", "-d", "50", "-t", "rpush", "-q"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "RPUSH: 1388888.88 requests per second, p50=..." (after \r-separated progress lines)
    let at = text.rfind("RPUSH: ")? + "RPUSH: ".len();
    text[at..].split_whitespace().next()?.parse().ok()
}

#[fnmetrics::measured(name = "bench::end_to_end")]
fn end_to_end_call(i: u64) -> u64 {
    std::hint::black_box(i)
}

/// What stage 2 does while an end-to-end run measures stage 1.
#[derive(Clone, Copy, PartialEq)]
enum Stage2 {
    /// No PostgreSQL configured.
    None,
    /// Draining into PostgreSQL at the same time.
    Running,
    /// Stalled: another session holds `LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE`.
    Locked,
}

/// Calls of a `#[measured]` function on one thread while the flusher moves their entries to
/// Redis; the clock stops when stage 1 has them all in Redis.
fn end_to_end(stage2: Stage2) -> f64 {
    let redis = RedisServer::start_with_args(&["--appendfsync", "everysec"]);
    let pg = (stage2 != Stage2::None).then(PostgresServer::start);
    let mut builder = fnmetrics::Flusher::builder()
        .redis(redis.url())
        .batch_size(FLUSH)
        .shutdown_timeout(Duration::from_secs(1))
        .on_error(|_| {});
    if let Some(pg) = &pg {
        builder = builder.postgres(pg.url());
    }
    let flusher = builder.start().expect("flusher");
    let mut locker = pg.as_ref().map(PostgresServer::client);
    let lock = match (stage2, locker.as_mut()) {
        (Stage2::Locked, Some(c)) => {
            let mut tx = c.transaction().expect("begin");
            tx.batch_execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
                .expect("lock");
            Some(tx)
        }
        _ => None,
    };
    let written = flusher.stats().entries_written;
    let dropped = fnmetrics::get("bench::end_to_end").map_or(0, |m| m.dropped_entries);
    let t = Instant::now();
    for i in 0..STAGE1_ENTRIES as u64 {
        end_to_end_call(i);
    }
    // Stage 1 only: `flush()` would also wait for stage 2.
    while flusher.stats().entries_written - written < STAGE1_ENTRIES as u64 {
        let stats = flusher.stats();
        assert_eq!(stats.dropped_entries, 0, "entries were dropped: {stats:?}");
        std::thread::sleep(Duration::from_micros(200));
    }
    let took = t.elapsed();
    let now = fnmetrics::get("bench::end_to_end").map_or(0, |m| m.dropped_entries);
    assert_eq!(now - dropped, 0, "entries were dropped");
    if stage2 == Stage2::Locked {
        assert_eq!(
            flusher.stats().entries_drained,
            0,
            "stage 2 was held by the lock"
        );
    }
    drop(flusher);
    drop(lock);
    rate(STAGE1_ENTRIES, took)
}

fn stage1() -> (f64, Option<f64>) {
    let redis = RedisServer::start_with_args(&["--appendfsync", "everysec"]);
    let mut sink = RedisSink::connect(&redis.url(), RedisOptions::default()).expect("connect");
    let mut ids = IdGen::with_instance(1);
    let work = batches(&mut ids, STAGE1_ENTRIES);
    let t = Instant::now();
    for b in &work {
        sink.write(b).expect("stage 1 write");
    }
    let ours = rate(STAGE1_ENTRIES, t.elapsed());
    (ours, redis_benchmark(redis.port()))
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00` for microseconds since the Unix epoch.
fn timestamp_text(micros: i64) -> String {
    let (days, rem) = (
        micros.div_euclid(86_400_000_000),
        micros.rem_euclid(86_400_000_000),
    );
    let (y, m, d) = fnmetrics_core::calendar::civil_from_days(days);
    let s = rem / 1_000_000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}+00",
        s / 3600,
        s / 60 % 60,
        s % 60,
        rem % 1_000_000
    )
}

/// `psql \copy` of `rows` as CSV, all eight columns, into `table`.
fn psql_copy(pg: &PostgresServer, table: &str, rows: &[EntryRecord]) -> Duration {
    let mut csv = String::with_capacity(rows.len() * 120);
    for e in rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            e.id_string(),
            e.func_name,
            e.execution_time.as_secs_f64(),
            e.error_occurred,
            timestamp_text(e.created_at_micros),
            e.source.service,
            e.source.host,
            e.weight
        ));
    }
    let path = std::env::temp_dir().join(format!("fnmetrics-bench-{}.csv", std::process::id()));
    std::fs::write(&path, csv).expect("write csv");
    let psql = pg.bin_dir().join("psql");
    let t = Instant::now();
    let out = Command::new(psql)
        .arg(pg.url())
        .arg("-c")
        .arg(format!(
            "\\copy {table} (id, func_name, execution_time, error_occurred, created_at, service, \
             host, weight) FROM '{}' WITH (FORMAT csv)",
            path.display()
        ))
        .output()
        .expect("run psql");
    let took = t.elapsed();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn naive(pg: &PostgresServer, table: &str, rows: &[EntryRecord]) -> Duration {
    let mut client = pg.client();
    let insert = client
        .prepare(&format!(
            "INSERT INTO {table} (id, func_name, execution_time, error_occurred, created_at,
                                  service, host, weight)
             VALUES ($1::text::uuid, $2, $3, $4, to_timestamp($5::float8 / 1e6), $6, $7, $8)"
        ))
        .expect("prepare");
    let t = Instant::now();
    for e in rows {
        client
            .execute(
                &insert,
                &[
                    &e.id_string(),
                    &&*e.func_name,
                    &e.execution_time.as_secs_f64(),
                    &e.error_occurred,
                    &(e.created_at_micros as f64),
                    &&*e.source.service,
                    &&*e.source.host,
                    &i64::from(e.weight),
                ],
            )
            .expect("insert");
    }
    t.elapsed()
}

/// Stage 2 figures, rows/s.
struct Stage2Rates {
    rollups_off: f64,
    rollups_on: f64,
    /// With `Drainer::writers(2)`.
    rollups_off_2: f64,
    rollups_on_2: f64,
    /// `PostgresSink::write_batch` of the same rows, rollups on, without Redis.
    sink_alone: f64,
    copy: f64,
    naive: f64,
}

/// Fills Redis with `work`, then drains it as `options` say: rows/s.
fn drain_rate(
    redis: &RedisServer,
    pg: &PostgresServer,
    work: &[FlushBatch],
    options: PostgresOptions,
    writers: usize,
) -> f64 {
    let mut sink = RedisSink::connect(&redis.url(), RedisOptions::default()).expect("connect");
    for b in work {
        // A flush id of its own: the same one again would be skipped as a retry.
        let b = FlushBatch {
            flush_id: fnmetrics::sink::new_flush_id(),
            ..b.clone()
        };
        sink.write(&b).expect("fill Redis");
    }
    // Filling may have started an AOF rewrite in the background: not part of stage 2.
    let mut client = redis.client();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut client)
            .expect("INFO");
        if info.contains("aof_rewrite_in_progress:0") && info.contains("rdb_bgsave_in_progress:0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut drainer = fnmetrics::redis::RedisQueue::new(&redis.url(), RedisOptions::default())
        .and_then(|q| {
            Drainer::connect(
                q,
                fnmetrics::postgres::PostgresSink::new(&pg.url(), options)?,
            )
        })
        .expect("connect drainer")
        .claim_size(50_000)
        .writers(writers)
        .maintain_every(None);
    let t = Instant::now();
    let moved = drainer.drain_all().expect("drain").moved;
    let took = t.elapsed();
    assert_eq!(moved as usize, STAGE2_ENTRIES);
    rate(STAGE2_ENTRIES, took)
}

fn stage2() -> Stage2Rates {
    let redis = RedisServer::start_with_args(&["--appendfsync", "everysec"]);
    let pg = PostgresServer::start();
    let mut ids = IdGen::with_instance(2);
    let table = |t: &str| PostgresOptions::default().with_table(t);
    // Tables of the same shape and partitions for psql and the naive writer, and for a warm-up
    // of the fresh server (its first writes are slower, whoever makes them).
    for t in ["bench_copy", "bench_warm"] {
        drop(PostgresSink::connect(&pg.url(), table(t)).expect("connect"));
    }
    // No checkpoint in the middle of a measured run (each writes some 300 MB of WAL): every one
    // starts right after one, whoever it is.
    let mut admin = pg.admin_client();
    for sql in [
        "ALTER SYSTEM SET max_wal_size = '20GB'",
        "ALTER SYSTEM SET checkpoint_timeout = '1h'",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(sql).expect("settings");
    }
    let mut settle = || admin.batch_execute("CHECKPOINT").expect("checkpoint");
    psql_copy(&pg, "bench_warm", &entries(&mut ids, STAGE2_ENTRIES / 5));
    // The same rows for everyone, as stage 1 flushes them (flush batches made one after the
    // other, so their times and ids overlap a little, as a busy process's do).
    let work = batches(&mut ids, STAGE2_ENTRIES);
    let rows: Vec<EntryRecord> = work.iter().flat_map(|b| b.entries.clone()).collect();
    settle();
    let copy = rate(rows.len(), psql_copy(&pg, "bench_copy", &rows));
    settle();
    let rollups_off = drain_rate(
        &redis,
        &pg,
        &work,
        table("bench_off").with_rollups(false),
        1,
    );
    settle();
    let rollups_on = drain_rate(&redis, &pg, &work, table("bench_on"), 1);
    settle();
    let off = table("bench_off_2").with_rollups(false);
    let rollups_off_2 = drain_rate(&redis, &pg, &work, off, 2);
    settle();
    let rollups_on_2 = drain_rate(&redis, &pg, &work, table("bench_on_2"), 2);
    settle();
    let mut alone = PostgresSink::connect(&pg.url(), table("bench_alone")).expect("connect");
    let t = Instant::now();
    for b in rows.chunks(50_000) {
        alone.write_batch(b).expect("write");
    }
    let sink_alone = rate(STAGE2_ENTRIES, t.elapsed());
    let naive_rows = entries(&mut ids, NAIVE_ROWS);
    let naive = rate(naive_rows.len(), naive(&pg, "bench_copy", &naive_rows));
    let mut client = pg.client();
    let mut count = |t: &str| {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .and_then(|r| r.try_get(0))
            .expect("count");
        n as usize
    };
    assert_eq!(count("bench_off"), STAGE2_ENTRIES);
    assert_eq!(count("bench_on"), STAGE2_ENTRIES);
    assert_eq!(count("bench_off_2"), STAGE2_ENTRIES);
    assert_eq!(count("bench_on_2"), STAGE2_ENTRIES);
    assert_eq!(count("bench_copy"), STAGE2_ENTRIES + NAIVE_ROWS);
    Stage2Rates {
        rollups_off,
        rollups_on,
        rollups_off_2,
        rollups_on_2,
        sink_alone,
        copy,
        naive,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names neither stage skips this bench.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty()
        && !filter
            .iter()
            .any(|f| "pipeline".contains(f.as_str()) || f.contains("stage"))
    {
        return;
    }
    // `cargo bench --bench pipeline -- stage2`: stage 2 only.
    let only_stage2 = filter.iter().any(|f| f == "stage2");
    if !only_stage2 {
        stage1_report();
    }
    stage2_report();
}

fn stage1_report() {
    let (s1, peer) = stage1();
    println!(
        "\nstage 1: process -> Redis ({STAGE1_ENTRIES} entries of ~50 bytes, flushes of {FLUSH})"
    );
    println!("  fnmetrics RedisSink              {s1:>12.0} entries/s   (goal >= 3000000)");
    match peer {
        Some(p) => {
            println!("  redis-benchmark -P 64 RPUSH      {p:>12.0} entries/s");
            println!("  ratio fnmetrics / redis-benchmark {:>11.2}", s1 / p);
        }
        None => println!("  redis-benchmark: not available"),
    }
    let e2e = end_to_end(Stage2::None);
    println!("  end to end: #[measured] calls -> flusher -> Redis");
    println!("    Redis only                     {e2e:>12.0} entries/s   (goal >= 2500000)");
    let running = end_to_end(Stage2::Running);
    println!("    stage 2 draining meanwhile     {running:>12.0} entries/s");
    let locked = end_to_end(Stage2::Locked);
    println!("    stage 2 stalled by a table lock {locked:>11.0} entries/s");
    println!(
        "    ratio stalled / Redis only       {:>11.2}   (goal: the same rate; stage 2 draining shares the CPU)",
        locked / e2e
    );
}

fn stage2_report() {
    let s2 = stage2();
    println!("\nstage 2: Redis -> PostgreSQL ({STAGE2_ENTRIES} entries, claims of 50000)");
    println!(
        "  fnmetrics Drainer, rollups off   {:>12.0} rows/s",
        s2.rollups_off
    );
    println!(
        "  fnmetrics Drainer, rollups on    {:>12.0} rows/s",
        s2.rollups_on
    );
    println!(
        "  the same, 2 writers, rollups off {:>12.0} rows/s",
        s2.rollups_off_2
    );
    println!(
        "  the same, 2 writers, rollups on  {:>12.0} rows/s",
        s2.rollups_on_2
    );
    println!(
        "  PostgresSink alone, rollups on   {:>12.0} rows/s",
        s2.sink_alone
    );
    println!(
        "  psql \\copy (CSV), same rows       {:>12.0} rows/s",
        s2.copy
    );
    println!(
        "  naive INSERT per row             {:>12.0} rows/s",
        s2.naive
    );
    println!(
        "  ratio rollups off / psql \\copy    {:>11.2}   (goal >= 1.2)",
        s2.rollups_off / s2.copy
    );
    println!(
        "  ratio rollups on / psql \\copy     {:>11.2}   (goal >= 1.0)",
        s2.rollups_on / s2.copy
    );
    println!(
        "  ratio 2 writers, rollups off / psql {:>9.2}   (goal >= 1.2)",
        s2.rollups_off_2 / s2.copy
    );
    println!(
        "  ratio 2 writers, rollups on / psql  {:>9.2}   (goal >= 1.0)",
        s2.rollups_on_2 / s2.copy
    );
    println!(
        "  ratio rollups on / naive          {:>11.1}   (goal >= 20)",
        s2.rollups_on / s2.naive
    );
}
