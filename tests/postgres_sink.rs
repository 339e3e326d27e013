//! The PostgreSQL sink against a real, throw-away PostgreSQL server (one per test).
#![cfg(feature = "postgres")]

mod support;

use fnmetrics_core::{EntryRecord, ErrorKind, IdGen};
use fnmetrics_sink_postgres::{PostgresOptions, PostgresSink, WindowStats};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::postgres::PostgresServer;

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
    let mut sink = PostgresSink::connect(&url, PostgresOptions::default()).unwrap();
    assert_eq!(sink.count().unwrap(), 0);

    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: Vec<(String, i32)> = client
        .query(
            "SELECT table_name, version FROM fnmetrics_schema_version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(versions, vec![("metrics".to_owned(), 1)]);
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

    assert_eq!(sink.write_batch(&batch).unwrap(), 1_000);
    assert_eq!(sink.count().unwrap(), 1_000);

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
    assert_eq!(sink.count_for("ünï::cödé").unwrap(), 333);
    assert_eq!(
        sink.functions().unwrap(),
        vec!["app::a", "app::b", "ünï::cödé"]
    );
    assert_eq!(sink.write_batch(&[]).unwrap(), 0);
}

#[test]
fn the_same_batch_written_again_inserts_nothing() {
    let pg = PostgresServer::start();
    let mut sink = connect(&pg);
    let mut ids = IdGen::with_instance(12);
    let batch = entries(&mut ids, 500, &["app::retry"], T0, 10);
    assert_eq!(sink.write_batch(&batch).unwrap(), 500);
    assert_eq!(sink.write_batch(&batch).unwrap(), 0);
    assert_eq!(sink.count().unwrap(), 500);

    // Half old, half new; plus a duplicate inside the batch.
    let mut mixed = batch[250..].to_vec();
    let new = entries(&mut ids, 250, &["app::retry"], T0 + 5_000, 10);
    mixed.extend_from_slice(&new);
    mixed.push(new[0].clone());
    assert_eq!(sink.write_batch(&mixed).unwrap(), 250);
    assert_eq!(sink.count().unwrap(), 750);

    // A second sink (another process) retrying the same batch changes nothing either.
    let mut other = connect(&pg);
    assert_eq!(other.write_batch(&mixed).unwrap(), 0);
    assert_eq!(other.count().unwrap(), 750);
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
                    .map(|i| sink.write_batch(&batches[(i * (t + 1) + t) % 5]).unwrap())
                    .sum::<u64>()
            })
        })
        .collect();
    let inserted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(inserted, 6_000);
    assert_eq!(connect(&pg).count().unwrap(), 6_000);
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
        ("m_no_key", "table `m_no_key` has no primary key or unique index on `id`"),
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
    assert_eq!(sink.write_batch(&batch).unwrap(), 10);
}

#[test]
fn a_newer_schema_version_is_a_schema_error() {
    let pg = PostgresServer::start();
    drop(connect(&pg));
    pg.client()
        .batch_execute(
            "INSERT INTO fnmetrics_schema_version (table_name, version) VALUES ('metrics', 2)",
        )
        .unwrap();
    let err = PostgresSink::connect(&pg.url(), PostgresOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema);
    assert!(err.to_string().contains("schema version 2"), "{err}");
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
    // TLS is not supported: a URL that requires it is a URL problem.
    let err = PostgresSink::connect(&format!("{}?sslmode=require", pg.url()), opts()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{err:?}");
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
    assert_eq!(sink.write_batch(&batch).unwrap(), 4);
    assert_eq!(sink.count_for("app::nul\u{FFFD}name").unwrap(), 1);
    assert_eq!(sink.count_for("app::nul\0name").unwrap(), 1);
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
    assert_eq!(sink.write_batch(&batch).unwrap(), 2_001);

    let check = |sink: &mut PostgresSink,
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
        let got = sink.window("app::w", from, to).unwrap();
        assert!(inside.len() > 100);
        let mut want = WindowStats::default();
        want.calls = inside.len() as u64;
        want.errors = inside.iter().filter(|e| e.error_occurred).count() as u64;
        want.mean = secs(times.iter().sum::<f64>() / times.len() as f64);
        want.p50 = secs(percentile_cont(&times, 0.5));
        want.p99 = secs(percentile_cont(&times, 0.99));
        want.min = secs(times[0]);
        want.max = secs(times[times.len() - 1]);
        assert_eq!(got, want);
        assert!(want.errors > 0 && want.p50 != want.p99);
    };

    // Whole window, then one whose bounds fall exactly on rows: `from` is in, `to` is out.
    check(
        &mut sink,
        T0,
        T0 + 10_000_000,
        at_micros(T0),
        at_micros(T0 + 10_000_000),
    );
    let (a, b) = (T0 + 200_000, T0 + 1_600_000);
    check(&mut sink, a, b, at_micros(a), at_micros(b));
    // Bounds inside a microsecond: the row at `a` is before `from`, the row at `b` before `to`.
    let half = Duration::from_nanos(500);
    check(
        &mut sink,
        a + 1,
        b + 1,
        at_micros(a) + half,
        at_micros(b) + half,
    );

    // No calls: zeros.
    let empty = sink
        .window("app::w", at_micros(T0 - 10), at_micros(T0))
        .unwrap();
    assert_eq!(empty, WindowStats::default());
    assert_eq!(
        sink.window("app::nobody", at_micros(0), SystemTime::now())
            .unwrap(),
        WindowStats::default()
    );
}

#[test]
fn server_stopped_mid_run_fails_unavailable_then_the_batch_succeeds_after_restart() {
    let mut pg = PostgresServer::start();
    let mut sink = connect(&pg);
    let mut ids = IdGen::with_instance(15);
    let first = entries(&mut ids, 100, &["app::f"], T0, 1);
    assert_eq!(sink.write_batch(&first).unwrap(), 100);

    pg.stop();
    let batch = entries(&mut ids, 2_000, &["app::f", "app::g"], T0 + 1_000, 1);
    let err = sink.write_batch(&batch).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    // Still down: the reconnect is refused.
    let err = sink.write_batch(&batch).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert_eq!(sink.count().unwrap_err().kind(), ErrorKind::Unavailable);

    pg.restart();
    assert_eq!(sink.write_batch(&batch).unwrap(), 2_000);
    assert_eq!(sink.count().unwrap(), 2_100);
    assert_eq!(sink.write_batch(&batch).unwrap(), 0);

    // A restart between two calls: the first call notices the dead connection, the next works.
    pg.restart();
    let more = entries(&mut ids, 10, &["app::f"], T0 + 9_000, 1);
    assert_eq!(
        sink.write_batch(&more).unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert_eq!(sink.write_batch(&more).unwrap(), 10);
    assert_eq!(sink.count().unwrap(), 2_110);
}

#[test]
fn the_sink_can_move_to_another_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<PostgresSink>();
}
