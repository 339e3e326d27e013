//! The PostgreSQL sink against a real, throw-away PostgreSQL server (one per test).

use fnmetrics_test_support as support;

use fnmetrics_core::{EntryRecord, ErrorKind, IdGen};
use fnmetrics_sink_postgres::{
    BatchOutcome, PostgresOptions, PostgresReader, PostgresSink, Query, RejectedRow, WindowStats,
    OUTAGE_LEAF_FAILURES,
};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::postgres::{PostgresServer, TestCa};

/// 2023-11-14T22:13:20Z in microseconds since the Unix epoch.
const T0: i64 = 1_700_000_000_000_000;

/// `n` entries of `names` (round robin), one every `step_micros` from `start_micros`, with
/// varied durations (every 7th an error), ids from `ids`.
fn entries(
    ids: &mut IdGen,
    n: usize,
    names: &[&str],
    start_micros: i64,
    step_micros: i64,
) -> Vec<EntryRecord> {
    (0..n)
        .map(|i| {
            let created_at_micros = start_micros + i as i64 * step_micros;
            EntryRecord {
                id: ids.next_id(u64::try_from(created_at_micros / 1000).unwrap_or(0)),
                func_name: names[i % names.len()].into(),
                // Odd nanosecond counts, from 1 ns to about 3 s.
                execution_time: Duration::from_nanos(1 + (i as u64 * 7_919_993) % 3_000_000_007),
                error_occurred: i % 7 == 3,
                created_at_micros,
                weight: 1,
                source: Default::default(),
            }
        })
        .collect()
}

fn connect(pg: &PostgresServer) -> PostgresSink {
    PostgresSink::connect(&pg.url(), PostgresOptions::default()).expect("connect")
}

fn at_micros(micros: i64) -> SystemTime {
    if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    }
}

#[test]
fn migration_is_idempotent_and_parallel_connects_all_succeed() {
    let pg = PostgresServer::start();
    drop(connect(&pg));
    drop(connect(&pg));

    // A fresh database, migrated by several processes' worth of connects at once.
    pg.admin_client()
        .batch_execute("CREATE DATABASE fresh")
        .unwrap();
    let url = pg.url_for("fresh");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresSink::connect(&url, PostgresOptions::default()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().expect("a parallel connect failed");
    }
    drop(PostgresSink::connect(&url, PostgresOptions::default()).unwrap());
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM metrics", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    let versions: Vec<(String, i32)> = client
        .query(
            "SELECT table_name, version FROM fnmetrics_schema_version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(versions, vec![("metrics".to_owned(), 2)]);
    let columns: Vec<(String, String, bool)> = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
             WHERE attrelid = 'metrics'::regclass AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected = [
        ("id", "uuid"),
        ("func_name", "text"),
        ("execution_time", "double precision"),
        ("error_occurred", "boolean"),
        ("created_at", "timestamp with time zone"),
        ("service", "text"),
        ("host", "text"),
        ("weight", "bigint"),
    ];
    assert_eq!(
        columns,
        expected
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string(), true))
            .collect::<Vec<_>>()
    );
    let index: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'metrics'
             AND indexname = 'metrics_func_name_created_at_idx'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        index.ends_with("USING btree (func_name, created_at)"),
        "{index}"
    );
}

#[test]
fn a_batch_lands_as_rows_with_the_exact_values() {
    let pg = PostgresServer::start();
    let mut sink = connect(&pg);
    let mut ids = IdGen::with_instance(11);
    let mut batch = entries(
        &mut ids,
        1_000,
        &["app::a", "app::b", "ünï::cödé"],
        T0,
        1_234,
    );
    // Times before PostgreSQL's and Unix's epochs, and a long call.
    batch[0].created_at_micros = 946_684_799_999_999; // 1999-12-31T23:59:59.999999Z
    batch[1].created_at_micros = -1_234_567; // 1969
    batch[2].execution_time = Duration::new(86_399, 999_999_999);
    batch[3].execution_time = Duration::ZERO;

    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 1_000);
    assert_eq!(pg.raw_rows(), 1_000);

    let mut client = pg.client();
    let rows = client
        .query(
            "SELECT uuid_send(id), id::text, func_name, execution_time, error_occurred,
                    (extract(epoch FROM created_at) * 1000000)::int8
             FROM metrics ORDER BY id",
            &[],
        )
        .unwrap();
    let mut expected = batch.clone();
    expected.sort_by_key(|e| e.id);
    assert_eq!(rows.len(), expected.len());
    for (row, e) in rows.iter().zip(&expected) {
        assert_eq!(row.get::<_, Vec<u8>>(0), e.id.to_vec());
        assert_eq!(row.get::<_, String>(1), e.id_string());
        assert_eq!(row.get::<_, String>(2), &*e.func_name);
        assert_eq!(
            row.get::<_, f64>(3).to_bits(),
            e.execution_time.as_secs_f64().to_bits()
        );
        assert_eq!(row.get::<_, bool>(4), e.error_occurred);
        assert_eq!(row.get::<_, i64>(5), e.created_at_micros);
    }
    assert_eq!(pg.raw_rows_of("ünï::cödé"), 333);
    let mut reader = PostgresReader::connect(&pg.url(), PostgresOptions::default()).unwrap();
    assert_eq!(
        reader.functions().unwrap(),
        vec!["app::a", "app::b", "ünï::cödé"]
    );
    assert_eq!(sink.write_batch(&[]).unwrap().inserted, 0);
}

#[test]
fn the_same_batch_written_again_inserts_nothing() {
    let pg = PostgresServer::start();
    let mut sink = connect(&pg);
    let mut ids = IdGen::with_instance(12);
    let batch = entries(&mut ids, 500, &["app::retry"], T0, 10);
    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 500);
    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 0);
    assert_eq!(pg.raw_rows(), 500);

    // Half old, half new; plus a duplicate inside the batch.
    let mut mixed = batch[250..].to_vec();
    let new = entries(&mut ids, 250, &["app::retry"], T0 + 5_000, 10);
    mixed.extend_from_slice(&new);
    mixed.push(new[0].clone());
    assert_eq!(sink.write_batch(&mixed).unwrap().inserted, 250);
    assert_eq!(pg.raw_rows(), 750);

    // A second sink (another process) retrying the same batch changes nothing either.
    let mut other = connect(&pg);
    assert_eq!(other.write_batch(&mixed).unwrap().inserted, 0);
    assert_eq!(pg.raw_rows(), 750);
}

#[test]
fn concurrent_writers_of_overlapping_batches_insert_each_row_once() {
    let pg = PostgresServer::start();
    let all = entries(&mut IdGen::with_instance(18), 6_000, &["app::c"], T0, 1);
    // Batch k covers rows 1000k..1000k+2000: each overlaps the next by half.
    let batches: Vec<Vec<EntryRecord>> = (0..5)
        .map(|k| all[k * 1_000..k * 1_000 + 2_000].to_vec())
        .collect();
    let url = pg.url();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (url, batches) = (url.clone(), batches.clone());
            std::thread::spawn(move || {
                let mut sink = PostgresSink::connect(&url, PostgresOptions::default()).unwrap();
                // Each writer goes through the batches in its own order.
                (0..batches.len())
                    .map(|i| {
                        let outcome = sink.write_batch(&batches[(i * (t + 1) + t) % 5]).unwrap();
                        assert!(outcome.rejected.is_empty());
                        outcome.inserted
                    })
                    .sum::<u64>()
            })
        })
        .collect();
    let inserted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(inserted, 6_000);
    assert_eq!(pg.raw_rows(), 6_000);
}

/// What `psql \d` would tell: the columns and their types, plus the row count.
fn describe(client: &mut postgres::Client, table: &str) -> (Vec<(String, String)>, i64) {
    let cols = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum",
            &[&table],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0);
    (cols, n)
}

#[test]
fn an_incompatible_existing_table_is_a_schema_error_and_left_unchanged() {
    let pg = PostgresServer::start();
    let mut client = pg.client();
    client
        .batch_execute(
            "CREATE TABLE metrics (id uuid PRIMARY KEY, func_name text NOT NULL,
                 execution_time integer NOT NULL, error_occurred boolean NOT NULL,
                 created_at timestamptz NOT NULL);
             INSERT INTO metrics VALUES (gen_random_uuid(), 'f', 3, false, now());
             CREATE TABLE m_missing (id uuid PRIMARY KEY, func_name text NOT NULL,
                 execution_time double precision NOT NULL, error_occurred boolean NOT NULL);
             CREATE TABLE m_no_key (id uuid NOT NULL, func_name text NOT NULL,
                 execution_time double precision NOT NULL, error_occurred boolean NOT NULL,
                 created_at timestamptz NOT NULL);
             CREATE TABLE m_extra (id uuid PRIMARY KEY, func_name text NOT NULL,
                 execution_time double precision NOT NULL, error_occurred boolean NOT NULL,
                 created_at timestamptz NOT NULL, host text NOT NULL);
             CREATE VIEW m_view AS SELECT * FROM m_extra;",
        )
        .unwrap();
    let before: Vec<_> = ["metrics", "m_missing", "m_no_key", "m_extra"]
        .iter()
        .map(|t| describe(&mut client, t))
        .collect();

    let cases = [
        ("metrics", "column `metrics.execution_time` has type `integer`, expected `double precision`"),
        ("m_missing", "table `m_missing` has no column `created_at` (expected `created_at timestamp with time zone`"),
        ("m_no_key", "table `m_no_key` has no primary key or unique index on (id)"),
        ("m_extra", "extra column `host text` that is NOT NULL without a default"),
        ("m_view", "`m_view` exists but is not a table"),
    ];
    for (table, message) in cases {
        let err = PostgresSink::connect(&pg.url(), PostgresOptions::default().with_table(table))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Schema, "{table}: {err}");
        assert!(err.to_string().contains(message), "{table}: {err}");
    }

    let after: Vec<_> = ["metrics", "m_missing", "m_no_key", "m_extra"]
        .iter()
        .map(|t| describe(&mut client, t))
        .collect();
    assert_eq!(before, after);
    assert_eq!(before[0].1, 1);
    // The failed migration was rolled back as a whole: not even the version table is left.
    let versions: Option<String> = client
        .query_one("SELECT to_regclass('fnmetrics_schema_version')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(versions, None);

    // A compatible table made by someone else is used as it is (extra nullable columns too).
    client
        .batch_execute(
            "CREATE TABLE m_ok (id uuid PRIMARY KEY, func_name text NOT NULL,
                 execution_time double precision NOT NULL, error_occurred boolean NOT NULL,
                 created_at timestamptz NOT NULL, note text)",
        )
        .unwrap();
    let mut sink =
        PostgresSink::connect(&pg.url(), PostgresOptions::default().with_table("m_ok")).unwrap();
    let batch = entries(&mut IdGen::with_instance(13), 10, &["f"], T0, 1);
    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 10);
    // Migrated to version 2; its own column stays with the old table, renamed.
    let kept: Option<String> = client
        .query_one("SELECT to_regclass('m_ok_v1')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(kept.as_deref(), Some("m_ok_v1"));
}

#[test]
fn a_newer_schema_version_is_superseded_and_left_unchanged() {
    let pg = PostgresServer::start();
    drop(connect(&pg));
    pg.client()
        .batch_execute(
            "INSERT INTO fnmetrics_schema_version (table_name, version) VALUES ('metrics', 3)",
        )
        .unwrap();
    let err = PostgresSink::connect(&pg.url(), PostgresOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Superseded);
    assert!(!err.kind().fails_start());
    assert!(err.to_string().contains("schema version 3"), "{err}");
    assert!(err.to_string().contains("newer drainers"), "{err}");
}

#[test]
fn connection_errors_have_their_kinds() {
    let opts = PostgresOptions::default;
    for url in [
        "postgres://127.0.0.1:notaport/db",
        "postgres://h/db?sslmode=sometimes",
        "host=a port=x",
    ] {
        let err = PostgresSink::connect(url, opts()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{url}: {err:?}");
        assert!(std::error::Error::source(&err).is_some());
    }

    let port = support::free_port();
    let err = PostgresSink::connect(&format!("postgres://postgres@127.0.0.1:{port}/x"), opts())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(std::error::Error::source(&err).is_some());

    for (options, what) in [
        (opts().with_table("bad-name"), "bad-name"),
        (opts().with_schema_table(""), "schema_table"),
        (opts().with_table("t".repeat(64)), "longer than 63 bytes"),
    ] {
        let err = PostgresSink::connect("postgres://127.0.0.1/x", options).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains(what), "{err}");
    }

    let pg = PostgresServer::start();
    // A database that does not exist: a configuration mistake, not a passing outage.
    let err = PostgresSink::connect(&pg.url_for("no_such_db"), opts()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err:?}");
    // A role that does not exist (SQLSTATE 28000).
    let url = pg.url().replace("postgres@", "nobody@");
    let err = PostgresSink::connect(&url, opts()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
    // TLS required, and the server does not offer it: it cannot be authenticated as asked.
    let err = PostgresSink::connect(&format!("{}?sslmode=require", pg.url()), opts()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");
    assert!(!err.kind().is_transient());
    assert!(
        format!("{err:?}").contains("does not support TLS"),
        "{err:?}"
    );
    // The default (`prefer`) against a server without TLS: plaintext, which is logged.
    let sink = PostgresSink::connect(&pg.url(), opts()).unwrap();
    assert_eq!(sink.uses_tls(), Some(false));
}

/// A value the server rejects would fail the batch on every retry and block the pipeline.
#[test]
fn no_entry_value_makes_the_server_reject_a_batch() {
    let pg = PostgresServer::start();
    let mut sink = connect(&pg);
    let mut batch = entries(&mut IdGen::with_instance(17), 4, &["app::ok"], T0, 1);
    batch[0].func_name = "app::nul\0name".into();
    batch[1].created_at_micros = i64::MIN;
    batch[2].created_at_micros = i64::MAX;
    let outcome = sink.write_batch(&batch).unwrap();
    assert_eq!((outcome.inserted, outcome.rejected.len()), (4, 0));
    assert_eq!(pg.raw_rows_of("app::nul\u{FFFD}name"), 1);
    // The reader looks the name up as it was stored.
    let mut reader = PostgresReader::connect(&pg.url(), PostgresOptions::default()).unwrap();
    let nul = Query::function("app::nul\0name").between(UNIX_EPOCH, SystemTime::now());
    assert_eq!(reader.window(&nul).unwrap()[0].1.calls, 1);
    let mut client = pg.client();
    client.batch_execute("SET timezone = 'UTC'").unwrap();
    let times: Vec<String> = client
        .query(
            "SELECT created_at::text FROM metrics ORDER BY created_at",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(times[0], "-infinity");
    assert_eq!(times[3], "294247-01-10 04:00:54.775807+00");
}

/// `percentile_cont` as PostgreSQL computes it: `lo + (hi - lo) * frac` between the two rows
/// around `p * (n - 1)`.
fn percentile_cont(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor(), pos.ceil());
    let (a, b) = (sorted[lo as usize], sorted[hi as usize]);
    if hi > lo {
        a + (pos - lo) * (b - a)
    } else {
        a
    }
}

/// Seconds to a `Duration`, rounded to the nanosecond (as the sink documents).
fn secs(s: f64) -> Duration {
    Duration::from_nanos((s * 1e9).round() as u64)
}

#[test]
fn window_matches_stats_computed_from_the_same_entries() {
    let pg = PostgresServer::start();
    let mut sink = connect(&pg);
    let mut ids = IdGen::with_instance(14);
    // Durations of k/512 s (k * 1_953_125 ns) are exact in binary, so the sum behind `avg` is
    // exact in any order.
    let mut batch = entries(&mut ids, 2_001, &["app::w", "app::other"], T0, 1_000);
    for (i, e) in batch.iter_mut().enumerate() {
        let k = 1 + (i as u64 * 7_919) % 1_021;
        e.execution_time = Duration::from_nanos(k * 1_953_125);
    }
    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 2_001);
    let mut reader = PostgresReader::connect(&pg.url(), PostgresOptions::default()).unwrap();
    let window = |reader: &mut PostgresReader, name: &str, from, to| {
        let rows = reader
            .window(&Query::function(name).between(from, to))
            .unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows[0].1
    };

    let check = |reader: &mut PostgresReader,
                 from_micros: i64,
                 to_micros: i64,
                 from: SystemTime,
                 to: SystemTime| {
        let inside: Vec<&EntryRecord> = batch
            .iter()
            .filter(|e| {
                &*e.func_name == "app::w"
                    && e.created_at_micros >= from_micros
                    && e.created_at_micros < to_micros
            })
            .collect();
        let mut times: Vec<f64> = inside
            .iter()
            .map(|e| e.execution_time.as_secs_f64())
            .collect();
        times.sort_by(f64::total_cmp);
        let got = window(reader, "app::w", from, to);
        assert!(inside.len() > 100);
        let mut want = WindowStats::default();
        want.calls = inside.len() as u64;
        want.errors = inside.iter().filter(|e| e.error_occurred).count() as u64;
        want.mean = secs(times.iter().sum::<f64>() / times.len() as f64);
        // Quantiles from the histogram buckets, the method of every read.
        let mut hist = fnmetrics::Histogram::new();
        for e in &inside {
            hist.record(e.execution_time);
        }
        want.p50 = hist.quantile(0.5);
        want.p99 = hist.quantile(0.99);
        // Within the histogram's bound of the exact (interpolated) quantiles.
        for (got, exact) in [
            (want.p50, percentile_cont(&times, 0.5)),
            (want.p99, percentile_cont(&times, 0.99)),
        ] {
            assert!(
                (got.as_secs_f64() - exact).abs() / exact < 0.016,
                "{got:?} {exact}"
            );
        }
        want.min = secs(times[0]);
        want.max = secs(times[times.len() - 1]);
        assert_eq!(got, want);
        assert!(want.errors > 0 && want.p50 != want.p99);
    };

    // Whole window, then one whose bounds fall exactly on rows: `from` is in, `to` is out.
    check(
        &mut reader,
        T0,
        T0 + 10_000_000,
        at_micros(T0),
        at_micros(T0 + 10_000_000),
    );
    let (a, b) = (T0 + 200_000, T0 + 1_600_000);
    check(&mut reader, a, b, at_micros(a), at_micros(b));
    // Bounds inside a microsecond: the row at `a` is before `from`, the row at `b` before `to`.
    let half = Duration::from_nanos(500);
    check(
        &mut reader,
        a + 1,
        b + 1,
        at_micros(a) + half,
        at_micros(b) + half,
    );

    // No calls: zeros.
    let empty = window(&mut reader, "app::w", at_micros(T0 - 10), at_micros(T0));
    assert_eq!(empty, WindowStats::default());
    assert_eq!(
        window(&mut reader, "app::nobody", at_micros(0), SystemTime::now()),
        WindowStats::default()
    );
}

#[test]
fn server_stopped_mid_run_fails_unavailable_then_the_batch_succeeds_after_restart() {
    let mut pg = PostgresServer::start();
    let mut sink = connect(&pg);
    let mut ids = IdGen::with_instance(15);
    let first = entries(&mut ids, 100, &["app::f"], T0, 1);
    assert_eq!(sink.write_batch(&first).unwrap().inserted, 100);

    pg.stop();
    let batch = entries(&mut ids, 2_000, &["app::f", "app::g"], T0 + 1_000, 1);
    let err = sink.write_batch(&batch).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    // Still down: the reconnect is refused.
    let err = sink.write_batch(&batch).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert_eq!(
        sink.ensure_connected().unwrap_err().kind(),
        ErrorKind::Unavailable
    );

    pg.restart();
    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 2_000);
    assert_eq!(pg.raw_rows(), 2_100);
    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 0);

    // A restart between two calls: the first call notices the dead connection, the next works.
    pg.restart();
    let more = entries(&mut ids, 10, &["app::f"], T0 + 9_000, 1);
    assert_eq!(
        sink.write_batch(&more).unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert_eq!(sink.write_batch(&more).unwrap().inserted, 10);
    assert_eq!(pg.raw_rows(), 2_110);
}

#[test]
fn a_locked_table_fails_the_batch_within_lock_timeout_then_it_goes_in() {
    let pg = PostgresServer::start();
    let lock_timeout = Duration::from_millis(500);
    let mut sink = PostgresSink::connect(
        &pg.url(),
        PostgresOptions::default().with_lock_timeout(lock_timeout),
    )
    .unwrap();
    let batch = entries(&mut IdGen::with_instance(19), 100, &["app::locked"], T0, 1);

    // Another session holds the table (a long `ALTER TABLE`, an operator's `LOCK TABLE`).
    let mut other = pg.client();
    let mut tx = other.transaction().unwrap();
    tx.batch_execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let started = Instant::now();
    let err = sink.write_batch(&batch).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(err.kind().is_transient());
    assert!(
        took >= lock_timeout && took < lock_timeout + Duration::from_secs(5),
        "{took:?}"
    );
    tx.rollback().unwrap();

    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 100);
    assert_eq!(pg.raw_rows(), 100);
}

/// The key of the migration's `pg_advisory_xact_lock` ("fnmetric", in `schema.rs`).
const MIGRATION_LOCK_KEY: i64 = 0x666e_6d65_7472_6963;

#[test]
fn a_held_migration_lock_fails_connect_with_timeout_instead_of_hanging() {
    let pg = PostgresServer::start();
    let wait = Duration::from_millis(800);
    let options = PostgresOptions::default().with_migration_lock_timeout(wait);

    let mut other = pg.client();
    let mut tx = other.transaction().unwrap();
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .unwrap();
    let started = Instant::now();
    let err = PostgresSink::connect(&pg.url(), options.clone()).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(
        err.to_string()
            .contains("another process holds the migration lock"),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
    assert!(
        took >= wait && took < wait + Duration::from_secs(5),
        "{took:?}"
    );

    tx.rollback().unwrap();
    drop(PostgresSink::connect(&pg.url(), options).unwrap());
    assert_eq!(pg.raw_rows(), 0);
}

/// `(index, sqlstate)` of each rejected row, and a check that every reason is the server's.
fn rejected(outcome: &BatchOutcome) -> Vec<(usize, String)> {
    outcome
        .rejected
        .iter()
        .map(|r: &RejectedRow| {
            assert!(!r.reason.is_empty());
            (r.index, r.sqlstate.clone().unwrap_or_default())
        })
        .collect()
}

#[test]
fn one_row_refused_by_a_check_constraint_is_rejected_and_the_other_10000_go_in() {
    let pg = PostgresServer::start();
    let mut sink = connect(&pg);
    pg.client()
        .batch_execute("ALTER TABLE metrics ADD CONSTRAINT fast CHECK (execution_time < 100)")
        .unwrap();
    let mut batch = entries(&mut IdGen::with_instance(20), 10_001, &["app::c"], T0, 1);
    batch[4_321].execution_time = Duration::from_secs(200);

    let outcome = sink.write_batch(&batch).unwrap();
    assert_eq!(outcome.inserted, 10_000);
    assert_eq!(rejected(&outcome), vec![(4_321, "23514".to_owned())]);
    let r = &outcome.rejected[0];
    assert!(r.reason.contains("check constraint \"fast\""), "{r:?}");
    assert!(
        r.detail.as_deref().unwrap_or("").contains("Failing row"),
        "{r:?}"
    );
    assert_eq!(pg.raw_rows(), 10_000);

    // Written again (a retry after a crash): nothing new, the same row refused.
    let again = sink.write_batch(&batch).unwrap();
    assert_eq!(again.inserted, 0);
    assert_eq!(rejected(&again), vec![(4_321, "23514".to_owned())]);
    assert_eq!(pg.raw_rows(), 10_000);
}

/// An incompressible name too long for the `(func_name, created_at)` index.
fn huge_name() -> String {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..12_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

#[test]
fn scattered_refused_rows_are_each_rejected_and_every_other_row_goes_in() {
    let pg = PostgresServer::start();
    let mut sink = connect(&pg);
    pg.client()
        .batch_execute(
            "ALTER TABLE metrics ADD CONSTRAINT fast CHECK (execution_time < 100);
             ALTER TABLE metrics ADD CONSTRAINT named CHECK (func_name NOT LIKE 'bad::%')",
        )
        .unwrap();
    let mut batch = entries(&mut IdGen::with_instance(21), 3_000, &["app::s"], T0, 1);
    let mut want = Vec::new();
    for i in [0, 1, 2, 999, 1_000, 1_777, 2_998, 2_999] {
        batch[i].execution_time = Duration::from_secs(1_000);
        want.push((i, "23514".to_owned()));
    }
    for i in [500, 2_500] {
        batch[i].func_name = "bad::name".into();
        want.push((i, "23514".to_owned()));
    }
    // A row too large for an index (54000, program_limit_exceeded).
    batch[1_500].func_name = huge_name().into();
    want.push((1_500, "54000".to_owned()));
    want.sort();

    let outcome = sink.write_batch(&batch).unwrap();
    assert_eq!(rejected(&outcome), want);
    assert_eq!(outcome.inserted, 3_000 - want.len() as u64);
    assert_eq!(pg.raw_rows(), 3_000 - want.len() as u64);
    assert!(
        outcome.rejected[want.iter().position(|w| w.0 == 500).unwrap()]
            .reason
            .contains("\"named\"")
    );
    assert!(
        outcome.rejected[want.iter().position(|w| w.0 == 1_500).unwrap()]
            .reason
            .contains("index row")
    );
}

#[test]
fn a_revoked_insert_privilege_is_an_outage_not_dead_letters_while_a_row_policy_rejects_rows() {
    let pg = PostgresServer::start();
    // The migration, and the partitions of T0's days, as the owner: only an owner can make them.
    let mut owner = connect(&pg);
    assert!(owner.maintain_at(T0).unwrap().ran);
    drop(owner);
    let mut admin = pg.client();
    admin
        .batch_execute(
            "CREATE ROLE writer LOGIN;
             GRANT USAGE, CREATE ON SCHEMA public TO writer;
             GRANT SELECT, INSERT ON metrics, fnmetrics_schema_version TO writer;
             GRANT SELECT, INSERT, UPDATE ON metrics_1m, metrics_1h TO writer;
             ALTER TABLE metrics ENABLE ROW LEVEL SECURITY;
             CREATE POLICY readable ON metrics FOR SELECT USING (true);
             CREATE POLICY allowed ON metrics FOR INSERT
                 WITH CHECK (func_name <> 'app::forbidden')",
        )
        .unwrap();
    let url = pg.url().replace("postgres@", "writer@");
    let mut sink = PostgresSink::connect(&url, PostgresOptions::default()).unwrap();
    let mut ids = IdGen::with_instance(22);

    // A row-level-security policy refuses one row (42501): row-specific, a dead letter.
    let mut batch = entries(&mut ids, 200, &["app::p"], T0, 1);
    batch[37].func_name = "app::forbidden".into();
    let outcome = sink.write_batch(&batch).unwrap();
    assert_eq!(outcome.inserted, 199);
    assert_eq!(rejected(&outcome), vec![(37, "42501".to_owned())]);
    assert!(outcome.rejected[0].reason.contains("row-level security"));

    // The INSERT privilege revoked: every row fails alike, an outage. Nothing is rejected.
    admin
        .batch_execute("REVOKE INSERT ON metrics FROM writer")
        .unwrap();
    let batch = entries(&mut ids, 1_000, &["app::p"], T0 + 1_000, 1);
    let err = sink.write_batch(&batch).unwrap_err();
    assert!(err.kind().is_transient(), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Server, "{err:?}");
    assert!(err.to_string().contains("outage"), "{err}");
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");
    assert_eq!(pg.raw_rows(), 199);

    // A batch smaller than the search bound is an outage too.
    let n_small = OUTAGE_LEAF_FAILURES as usize / 2;
    let small = entries(&mut ids, n_small, &["app::p"], T0 + 5_000, 1);
    assert!(sink.write_batch(&small).unwrap_err().kind().is_transient());

    admin
        .batch_execute("GRANT INSERT ON metrics TO writer")
        .unwrap();
    let outcome = sink.write_batch(&batch).unwrap();
    assert_eq!((outcome.inserted, outcome.rejected.len()), (1_000, 0));
    assert_eq!(sink.write_batch(&small).unwrap().inserted, n_small as u64);
    assert_eq!(pg.raw_rows(), 1_199 + n_small as u64);
}

#[test]
fn a_read_only_server_fails_transiently_and_the_sink_reconnects_when_it_is_writable_again() {
    let pg = PostgresServer::start();
    let mut sink = connect(&pg);
    let mut ids = IdGen::with_instance(23);
    let first = entries(&mut ids, 10, &["app::r"], T0, 1);
    assert_eq!(sink.write_batch(&first).unwrap().inserted, 10);

    // What a failover to a replica looks like to a writer: transactions are read-only. Set for
    // every session, including the sink's open one (at its next reload of the configuration).
    let mut admin = pg.admin_client();
    admin
        .batch_execute("ALTER SYSTEM SET default_transaction_read_only = on")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    // Until the session sees the reload, probes go in: each is new, and counted.
    let mut failed = None;
    let mut before_read_only = 0;
    support::wait_until(
        "the sink's session to be read-only",
        Duration::from_secs(30),
        || {
            let probe = entries(&mut ids, 5, &["app::r"], T0 + 100, 1);
            match sink.write_batch(&probe) {
                Ok(o) => {
                    before_read_only += o.inserted;
                    false
                }
                Err(e) => {
                    failed = Some(e);
                    true
                }
            }
        },
    );
    let err = failed.unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(format!("{err:?}").contains("read-only"), "{err:?}");
    // The connection was dropped: the next call connects again, and is refused the same way
    // (the migration cannot run on a read-only server).
    let batch = entries(&mut ids, 100, &["app::r"], T0 + 1_000, 1);
    let err = sink.write_batch(&batch).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");

    admin
        .batch_execute("SET default_transaction_read_only = off")
        .unwrap();
    admin
        .batch_execute("ALTER SYSTEM RESET default_transaction_read_only")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let mut inserted = 0;
    support::wait_until(
        "the sink to write again",
        Duration::from_secs(30),
        || match sink.write_batch(&batch) {
            Ok(o) => {
                inserted += o.inserted;
                true
            }
            Err(e) => {
                assert!(e.kind().is_transient(), "{e:?}");
                false
            }
        },
    );
    assert_eq!(inserted, 100);
    let probe = entries(&mut ids, 5, &["app::r"], T0 + 2_000, 1);
    assert_eq!(sink.write_batch(&probe).unwrap().inserted, 5);
    assert_eq!(pg.raw_rows(), 115 + before_read_only);
}

/// Whether the sessions named `application_name` use TLS, from the server's view
/// (`pg_stat_ssl`): one entry per session.
fn sessions_use_ssl(pg: &PostgresServer, application_name: &str) -> Vec<bool> {
    pg.admin_client()
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&application_name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn tls_required_with_the_ca_file_connects_over_verified_tls_and_writes() {
    let pg = PostgresServer::start_with_tls();
    let options = PostgresOptions::default().with_ca_file(pg.ca_file());
    // By IP address (the certificate's IP SAN) and by host name (its DNS SAN).
    for (host, app, instance) in [
        ("127.0.0.1", "tls_by_ip", 24),
        ("localhost", "tls_by_name", 26),
    ] {
        let url = format!(
            "postgres://postgres@{host}:{}/fnmetrics?sslmode=require&application_name={app}",
            pg.port()
        );
        let mut sink = PostgresSink::connect(&url, options.clone()).unwrap();
        assert_eq!(sink.uses_tls(), Some(true));
        let batch = entries(&mut IdGen::with_instance(instance), 100, &[app], T0, 1);
        assert_eq!(sink.write_batch(&batch).unwrap().inserted, 100);
        assert_eq!(pg.raw_rows_of(app), 100);
        assert_eq!(sessions_use_ssl(&pg, app), vec![true]);
    }

    // `prefer` (the default) takes TLS when the server offers it.
    let url = format!("{}?application_name=tls_prefer", pg.url());
    let sink = PostgresSink::connect(&url, options).unwrap();
    assert_eq!(sink.uses_tls(), Some(true));
    assert_eq!(sessions_use_ssl(&pg, "tls_prefer"), vec![true]);
}

#[test]
fn a_certificate_that_does_not_verify_is_an_auth_error_and_never_falls_back_to_plaintext() {
    let pg = PostgresServer::start_with_tls();
    let dir = support::TempDir::new("other-ca");
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, TestCa::new("someone else's CA").pem()).unwrap();
    let with_password = format!(
        "postgres://postgres:s3cret-pw@127.0.0.1:{}/fnmetrics",
        pg.port()
    );

    for (mode, options) in [
        (
            "require",
            PostgresOptions::default().with_ca_file(&other_ca),
        ),
        ("prefer", PostgresOptions::default().with_ca_file(&other_ca)),
        // No CA file: the system's roots, which do not hold the test CA.
        ("require", PostgresOptions::default()),
        ("prefer", PostgresOptions::default()),
    ] {
        let url = format!("{with_password}?sslmode={mode}&application_name=tls_refused");
        let err = PostgresSink::connect(&url, options.clone()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{mode} {options:?}: {err:?}");
        assert!(!err.kind().is_transient());
        assert!(
            format!("{err:?}").to_lowercase().contains("certificate"),
            "{err:?}"
        );
        assert!(!format!("{err:?}{err}").contains("s3cret-pw"), "{err:?}");
    }
    assert!(sessions_use_ssl(&pg, "tls_refused").is_empty());

    // A CA file that is not there, or holds no certificate: a setting to fix.
    let missing = PostgresOptions::default().with_ca_file(dir.path().join("nope.pem"));
    let err = PostgresSink::connect(&format!("{}?sslmode=require", pg.url()), missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err:?}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let options = PostgresOptions::default().with_ca_file(&empty);
    let err = PostgresSink::connect(&format!("{}?sslmode=require", pg.url()), options).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err:?}");
    assert!(err.to_string().contains("no certificate"), "{err}");
}

#[test]
fn sslmode_disable_against_a_tls_server_is_plaintext() {
    let pg = PostgresServer::start_with_tls();
    let url = format!("{}?sslmode=disable&application_name=plain", pg.url());
    // The CA file is not even read: TLS is never started.
    let options = PostgresOptions::default().with_ca_file("/nonexistent/ca.pem");
    let mut sink = PostgresSink::connect(&url, options).unwrap();
    assert_eq!(sink.uses_tls(), Some(false));
    let batch = entries(&mut IdGen::with_instance(25), 10, &["app::plain"], T0, 1);
    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 10);
    assert_eq!(sessions_use_ssl(&pg, "plain"), vec![false]);
}

/// Nothing the sink shows (errors, their sources, `Debug`) holds the URL's password.
#[test]
fn no_error_or_debug_output_shows_the_password() {
    const PASSWORD: &str = "pw-S3cret-9f1";
    let port = support::free_port();
    let urls = [
        format!("postgres://app:{PASSWORD}@127.0.0.1:notaport/db"),
        format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/db?sslmode=sometimes"),
        format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/db?nosuchoption=1"),
        format!("postgres://app:{PASSWORD}%zz@127.0.0.1:{port}/db"),
        format!("host=127.0.0.1 password={PASSWORD} port=x"),
        format!("host=127.0.0.1 password='{PASSWORD} port={port}"),
        format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/db"), // nothing listens there
    ];
    for url in &urls {
        let err = PostgresSink::connect(url, PostgresOptions::default()).unwrap_err();
        let mut shown = format!("{err} {err:?}");
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&err);
        while let Some(e) = cur {
            shown.push_str(&format!(" {e} {e:?}"));
            cur = e.source();
        }
        assert!(!shown.contains(PASSWORD), "{url}: {shown}");
    }

    let pg = PostgresServer::start();
    let url = pg
        .url()
        .replace("postgres@", &format!("postgres:{PASSWORD}@"));
    let sink = PostgresSink::connect(&url, PostgresOptions::default()).unwrap();
    let shown = format!("{sink:?}");
    assert!(shown.contains("PostgresSink"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");
}

#[test]
fn the_sink_can_move_to_another_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<PostgresSink>();
}
