//! Schema v2 against a real, throw-away PostgreSQL server: the migration of a v1 table with
//! data, exact rollups under retries and concurrent writers, partitions made on demand,
//! retention, maintenance under load, and reads that agree whatever table they use.

use fnmetrics_test_support as support;

use fnmetrics_core::{EntryRecord, IdGen, Source};
use fnmetrics_sink_postgres::{
    Migration, PostgresOptions, PostgresReader, PostgresSink, Query, Retention,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::postgres::PostgresServer;

const DAY: i64 = 86_400_000_000;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn at(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros as u64)
}

/// `n` entries of `names` from two services, one every `step` µs from `start`, weights 1 and 4,
/// every 5th an error.
fn entries(ids: &mut IdGen, n: usize, names: &[&str], start: i64, step: i64) -> Vec<EntryRecord> {
    let sources = [
        Arc::new(Source::new("api", "h1")),
        Arc::new(Source::new("worker", "h2")),
    ];
    (0..n)
        .map(|i| EntryRecord {
            id: ids.next_id((start / 1000) as u64),
            func_name: names[i % names.len()].into(),
            execution_time: Duration::from_nanos(1 + (i as u64 * 7_919_993) % 300_000_007),
            error_occurred: i % 5 == 2,
            created_at_micros: start + i as i64 * step,
            weight: if i % 3 == 0 { 4 } else { 1 },
            source: sources[i % 2].clone(),
        })
        .collect()
}

type Groups = BTreeMap<(String, String, String), (i64, i64, i64, String)>;

/// Per (service, function, bucket) of `unit`: rows, calls, errors and the histogram, computed
/// from the raw rows and read from the rollup; with the largest relative difference of `total`.
fn raw_and_rollup(
    client: &mut postgres::Client,
    unit: &str,
    rollup: &str,
) -> (Groups, Groups, f64) {
    let raw_sql = format!(
        "WITH g AS (
             SELECT service, func_name,
                    date_trunc('{unit}', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS b,
                    fnmetrics_bucket(execution_time) AS i, count(*) AS n, sum(weight) AS w,
                    coalesce(sum(weight) FILTER (WHERE error_occurred), 0) AS e,
                    sum(execution_time * weight) AS t
             FROM metrics GROUP BY 1, 2, 3, 4)
         SELECT service, func_name, b::text, sum(n)::bigint, sum(w)::bigint, sum(e)::bigint,
                string_agg(i || ':' || w, ',' ORDER BY i), sum(t)
         FROM g GROUP BY 1, 2, 3"
    );
    let rollup_sql = format!(
        "SELECT service, func_name, bucket::text, entries, calls, errors,
                (SELECT string_agg(i || ':' || c, ',' ORDER BY i)
                 FROM unnest(hist_index, hist_count) AS u(i, c)),
                total
         FROM {rollup}"
    );
    let mut totals = BTreeMap::new();
    let mut read = |sql: &str, side: usize| -> Groups {
        client
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| {
                let key: (String, String, String) = (r.get(0), r.get(1), r.get(2));
                totals.entry(key.clone()).or_insert([0.0; 2])[side] = r.get::<_, f64>(7);
                (key, (r.get(3), r.get(4), r.get(5), r.get(6)))
            })
            .collect()
    };
    let raw = read(&raw_sql, 0);
    let rolled = read(&rollup_sql, 1);
    let worst = totals
        .values()
        .map(|[a, b]| (a - b).abs() / a.abs().max(1e-12))
        .fold(0.0, f64::max);
    (raw, rolled, worst)
}

/// Both rollups equal what the raw rows say, bucket for bucket.
fn assert_rollups_exact(client: &mut postgres::Client) {
    for (unit, rollup) in [("minute", "metrics_1m"), ("hour", "metrics_1h")] {
        let (raw, rolled, worst) = raw_and_rollup(client, unit, rollup);
        assert!(!raw.is_empty());
        assert_eq!(raw, rolled, "{rollup} differs from the raw rows");
        assert!(worst < 1e-9, "{rollup}: total off by {worst}");
    }
}

fn count(client: &mut postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn a_v1_table_with_data_is_migrated_in_place_into_day_partitions_and_rolled_up() {
    let pg = PostgresServer::start();
    let mut client = pg.client();
    client
        .batch_execute(
            "CREATE TABLE fnmetrics_schema_version (table_name text NOT NULL, version integer NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, version));
             INSERT INTO fnmetrics_schema_version (table_name, version) VALUES ('metrics', 1);
             CREATE TABLE metrics (id uuid PRIMARY KEY, func_name text NOT NULL,
                 execution_time double precision NOT NULL, error_occurred boolean NOT NULL,
                 created_at timestamptz NOT NULL);
             CREATE INDEX metrics_func_name_created_at_idx ON metrics (func_name, created_at);
             INSERT INTO metrics
             SELECT gen_random_uuid(), 'app::f' || (g % 3), (g % 1000) / 1e5, g % 7 = 0,
                    '2026-11-20 00:00:00+00'::timestamptz + g * interval '7 seconds'
             FROM generate_series(1, 60000) g;
             -- A day with only an afternoon row, and a row before 1970.
             INSERT INTO metrics VALUES
                 (gen_random_uuid(), 'app::lone', 0.001, false, '2026-11-10 18:00:00+00'),
                 (gen_random_uuid(), 'app::lone', 0.002, true, '1969-07-20 20:17:00+00');",
        )
        .unwrap();
    let sink = PostgresSink::connect(&pg.url(), PostgresOptions::default()).unwrap();
    assert_eq!(sink.migration(), Some(Migration::FromV1 { rows: 60_002 }));
    assert_eq!(pg.raw_rows(), 60_002);
    assert_eq!(
        PostgresSink::connect(&pg.url(), PostgresOptions::default())
            .unwrap()
            .migration(),
        Some(Migration::Current)
    );
    for lone in ["metrics_p20261110", "metrics_p_old"] {
        assert_eq!(
            count(&mut client, &format!("SELECT count(*) FROM ONLY {lone}")),
            1,
            "{lone}"
        );
    }
    // 60 000 × 7 s spans five days: five day partitions hold them.
    let partitions = count(
        &mut client,
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'metrics'::regclass AND c.relname BETWEEN 'metrics_p20261120' AND 'metrics_p20261124'",
    );
    assert_eq!(partitions, 5);
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM ONLY metrics_p20261121"),
        86_400 / 7 + 1
    );
    let version = count(
        &mut client,
        "SELECT max(version)::bigint FROM fnmetrics_schema_version WHERE table_name = 'metrics'",
    );
    assert_eq!(version, 2);
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pg_class WHERE relname = 'metrics_v1'"
        ),
        0
    );
    assert_rollups_exact(&mut client);
    // Old rows have no source and weigh 1.
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM metrics WHERE service = '' AND weight = 1"
        ),
        60_002
    );
    // The window over the migrated days reads rollups and raw edges, and agrees with the rows.
    let mut reader = PostgresReader::connect(&pg.url(), PostgresOptions::default()).unwrap();
    let from = at(1_795_132_800_000_000 + 3_600_000_000 + 1); // 2026-11-20 01:00:00.000001
    let to = at(1_795_132_800_000_000 + 2 * DAY + 30_000_001);
    let w = reader
        .window(&Query::function("app::f1").between(from, to))
        .unwrap()[0]
        .1;
    let want = count(
        &mut client,
        "SELECT count(*) FROM metrics WHERE func_name = 'app::f1'
         AND created_at >= '2026-11-20 01:00:00.000001+00' AND created_at < '2026-11-22 00:00:30.000001+00'",
    );
    assert_eq!(w.calls, want as u64);
}

#[test]
fn rollups_stay_exact_through_retries_and_concurrent_writers_of_overlapping_batches() {
    let pg = PostgresServer::start();
    let mut ids = IdGen::with_instance(3);
    let start = now_micros() - 3 * 3_600_000_000;
    let batch = entries(&mut ids, 30_000, &["a", "b", "c"], start, 300_000);
    let mut sink = PostgresSink::connect(&pg.url(), PostgresOptions::default()).unwrap();
    // A first part, then the whole batch again (a crash after the commit, a retry).
    assert_eq!(sink.write_batch(&batch[..10_000]).unwrap().inserted, 10_000);
    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 20_000);
    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 0);
    // Four writers at once on overlapping slices (claims taken over).
    let more = entries(&mut ids, 40_000, &["a", "d"], start + 1, 250_000);
    let url = pg.url();
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let (url, part) = (url.clone(), more[k * 8_000..k * 8_000 + 16_000].to_vec());
            std::thread::spawn(move || {
                let mut s = PostgresSink::connect(&url, PostgresOptions::default()).unwrap();
                s.write_batch(&part).unwrap().inserted
            })
        })
        .collect();
    let inserted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(inserted, 40_000);
    assert_eq!(pg.raw_rows(), 70_000);
    assert_rollups_exact(&mut pg.client());
    let calls = count(
        &mut pg.client(),
        "SELECT sum(calls)::bigint FROM metrics_1h",
    );
    let weights: i64 = batch.iter().chain(&more).map(|e| i64::from(e.weight)).sum();
    assert_eq!(calls, weights);
}

#[test]
fn entries_for_days_without_a_partition_are_written_into_new_ones() {
    let pg = PostgresServer::start();
    let mut sink = PostgresSink::connect(&pg.url(), PostgresOptions::default()).unwrap();
    let mut ids = IdGen::with_instance(4);
    let mut batch = Vec::new();
    // 2001-09-09, a day in 2301, a time before 1970 and one far past year 9999.
    for start in [
        1_000_000_000_000_000,
        10_430_000_000_000_000,
        -5_000_000,
        i64::MAX - 10,
    ] {
        batch.extend(entries(&mut ids, 3, &["late"], start, 1));
    }
    assert_eq!(sink.write_batch(&batch).unwrap().inserted, 12);
    let mut client = pg.client();
    for name in [
        "metrics_p20010909",
        "metrics_p_old",
        "metrics_p_new",
        "metrics_1h_p200109",
    ] {
        assert_eq!(
            count(
                &mut client,
                &format!("SELECT count(*) FROM pg_inherits WHERE inhrelid = '{name}'::regclass")
            ),
            1,
            "{name}"
        );
    }
    assert_rollups_exact(&mut client);
}

#[test]
fn retention_drops_whole_expired_partitions_and_reads_move_to_the_rollups() {
    let pg = PostgresServer::start();
    let options = PostgresOptions::default().with_retention(
        Retention::default()
            .with_raw(Duration::from_secs(3 * 86_400))
            .with_minute(Duration::from_secs(10 * 86_400)),
    );
    let mut sink = PostgresSink::connect(&pg.url(), options.clone()).unwrap();
    let now = now_micros();
    let mut ids = IdGen::with_instance(5);
    let mut all = Vec::new();
    for days_ago in [40, 20, 5, 0] {
        let start = (now - days_ago * DAY) / 3_600_000_000 * 3_600_000_000;
        let batch = entries(&mut ids, 600, &["kept"], start, 1_000_000);
        sink.write_batch(&batch).unwrap();
        all.push((days_ago, batch));
    }
    let m = sink.maintain().unwrap();
    assert!(m.ran);
    let dropped: Vec<&str> = m.dropped.iter().map(String::as_str).collect();
    // Raw: the days of 40, 20 and 5 days ago; 1m: 40 and 20; 1h: nothing (365 days).
    assert_eq!(
        dropped
            .iter()
            .filter(|n| n.starts_with("metrics_p"))
            .count(),
        3,
        "{dropped:?}"
    );
    assert_eq!(
        dropped
            .iter()
            .filter(|n| n.starts_with("metrics_1m_p"))
            .count(),
        2,
        "{dropped:?}"
    );
    assert_eq!(
        dropped
            .iter()
            .filter(|n| n.starts_with("metrics_1h_p"))
            .count(),
        0,
        "{dropped:?}"
    );
    assert_eq!(pg.raw_rows(), 600);
    // A second run finds nothing to do.
    assert!(sink.maintain().unwrap().dropped.is_empty());

    // Reads answer from the finest table that still holds each window: the whole count, from
    // minutes for 5 days ago and from hours for 20 and 40.
    let mut reader = PostgresReader::connect(&pg.url(), options).unwrap();
    for (days_ago, batch) in &all {
        let from = batch[0].created_at_micros;
        let w = reader
            .window(&Query::function("kept").between(at(from), at(from + 3_600_000_000)))
            .unwrap()[0]
            .1;
        let want: u64 = batch.iter().map(|e| u64::from(e.weight)).sum();
        assert_eq!(w.calls, want, "{days_ago} days ago");
        let errors: u64 = batch
            .iter()
            .filter(|e| e.error_occurred)
            .map(|e| u64::from(e.weight))
            .sum();
        assert_eq!(w.errors, errors, "{days_ago} days ago");
    }
}

#[test]
fn maintenance_while_stage_2_writes_under_load_loses_and_doubles_nothing() {
    let pg = PostgresServer::start();
    let mut sink = PostgresSink::connect(&pg.url(), PostgresOptions::default()).unwrap();
    let now = now_micros();
    // Old days for maintenance to drop while the writers write today's rows.
    let mut ids = IdGen::with_instance(6);
    for d in 8..20 {
        sink.write_batch(&entries(&mut ids, 100, &["old"], now - d * DAY, 1))
            .unwrap();
    }
    let url = pg.url();
    let writers: Vec<_> = (0..2)
        .map(|k| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = PostgresSink::connect(&url, PostgresOptions::default()).unwrap();
                let mut ids = IdGen::with_instance(100 + k);
                let mut n = 0;
                for i in 0..20 {
                    let batch = entries(&mut ids, 5_000, &["load"], now - 60_000_000 + i, 7);
                    n += s.write_batch(&batch).unwrap().inserted;
                    // A retry of the same batch: nothing new.
                    assert_eq!(s.write_batch(&batch).unwrap().inserted, 0);
                }
                n
            })
        })
        .collect();
    let mut dropped = 0;
    for _ in 0..5 {
        dropped += sink.maintain().unwrap().dropped.len();
    }
    let written: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(written, 200_000);
    assert_eq!(dropped, 12, "the raw partitions of the 12 old days");
    let mut client = pg.client();
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM metrics WHERE func_name = 'load'"
        ),
        200_000
    );
    let calls = count(
        &mut client,
        "SELECT sum(calls)::bigint FROM metrics_1m WHERE func_name = 'load'",
    );
    let want = count(
        &mut client,
        "SELECT sum(weight)::bigint FROM metrics WHERE func_name = 'load'",
    );
    assert_eq!(calls, want);
}

#[test]
fn windows_and_series_agree_between_raw_rows_and_rollups() {
    let pg = PostgresServer::start();
    let mut sink = PostgresSink::connect(&pg.url(), PostgresOptions::default()).unwrap();
    let mut ids = IdGen::with_instance(7);
    let start = now_micros() - 2 * DAY;
    let batch = entries(&mut ids, 50_000, &["f", "g"], start, 3_000_001);
    sink.write_batch(&batch).unwrap();
    let mut rolled = PostgresReader::connect(&pg.url(), PostgresOptions::default()).unwrap();
    let mut raw =
        PostgresReader::connect(&pg.url(), PostgresOptions::default().with_rollups(false)).unwrap();
    let (from, to) = (at(start + 1_234_567), at(start + DAY + 7_654_321));
    let f = Query::function("f").between(from, to);
    let (a, b) = (
        rolled.window(&f).unwrap()[0].1,
        raw.window(&f).unwrap()[0].1,
    );
    assert_eq!(
        (a.calls, a.errors, a.p50, a.p99, a.min, a.max),
        (b.calls, b.errors, b.p50, b.p99, b.min, b.max)
    );
    assert!(a.calls > 10_000);
    let rel = (a.mean.as_secs_f64() - b.mean.as_secs_f64()).abs() / b.mean.as_secs_f64();
    assert!(rel < 1e-9, "{a:?} {b:?}");
    // Per service.
    let api = rolled.window(&f.clone().service("api")).unwrap()[0].1;
    let worker = rolled.window(&f.clone().service("worker")).unwrap()[0].1;
    assert_eq!(api.calls + worker.calls, a.calls);
    // All functions in one read: each as its own read gives it; names without calls left out.
    let names: Vec<String> = ["f", "g", "h"].map(String::from).to_vec();
    assert_eq!(rolled.functions().unwrap(), ["f", "g"]);
    let many = Query::functions(&names).between(from, to);
    let all = rolled.window(&many).unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0], ("f".to_owned(), a));
    assert_eq!(
        all[1],
        rolled
            .window(&Query::function("g").between(from, to))
            .unwrap()[0]
    );
    // Every function stored: the same.
    assert_eq!(rolled.window(&Query::all().between(from, to)).unwrap(), all);
    let raw_all = raw.window(&many).unwrap();
    assert_eq!(
        raw_all
            .iter()
            .map(|(n, w)| (n, w.calls, w.errors, w.p99))
            .collect::<Vec<_>>(),
        all.iter()
            .map(|(n, w)| (n, w.calls, w.errors, w.p99))
            .collect::<Vec<_>>()
    );
    let of_api = rolled.window(&many.service("api")).unwrap();
    assert_eq!(of_api[0], ("f".to_owned(), api));
    assert!(rolled
        .window(&Query::functions(Vec::<String>::new()).between(from, to))
        .unwrap()
        .is_empty());

    // A series by the hour (from the hourly rollup) against one by the hour from raw rows.
    let (from, to) = (at(start / 3_600_000_000 * 3_600_000_000), at(start + DAY));
    let step = Duration::from_secs(3600);
    let g = Query::function("g").between(from, to).every(step);
    let (sa, sb) = (
        rolled.series(&g).unwrap().remove(0).1,
        raw.series(&g).unwrap().remove(0).1,
    );
    assert_eq!(sa.len(), 25);
    assert_eq!(sa.len(), sb.len());
    for (p, q) in sa.iter().zip(&sb) {
        assert_eq!(
            (p.start, p.calls, p.errors, p.p50, p.p99, p.max),
            (q.start, q.calls, q.errors, q.p50, q.p99, q.max)
        );
    }
    let many = rolled
        .series(&Query::functions(&names).between(from, to).every(step))
        .unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[1], ("g".to_owned(), sa.clone()));
    assert_eq!(
        many[0],
        rolled
            .series(&Query::function("f").between(from, to).every(step))
            .unwrap()
            .remove(0)
    );
    let nobody = rolled
        .series(&Query::function("nobody").between(from, to).every(step))
        .unwrap()
        .remove(0)
        .1;
    assert_eq!(nobody.len(), 25);
    assert!(nobody.iter().all(|p| p.calls == 0));
    let total: u64 = sa.iter().map(|p| p.calls).sum();
    let want: u64 = batch
        .iter()
        .filter(|e| {
            &*e.func_name == "g"
                && e.created_at_micros
                    < (start + DAY) / 3_600_000_000 * 3_600_000_000 + 3_600_000_000
        })
        .map(|e| u64::from(e.weight))
        .sum();
    assert_eq!(total, want);
    assert!(rolled.series(&g.clone().every(Duration::ZERO)).is_err());

    // One quantile method: SQL's fnmetrics_quantile (for dashboards) over the merged hourly
    // rollup gives what the in-process histogram gives, and what the reader reads.
    let mut client = pg.client();
    let merged = client
        .query(
            "SELECT u.i, sum(u.c)::bigint FROM metrics_1h, unnest(hist_index, hist_count) u(i, c)
             WHERE func_name = 'f' GROUP BY u.i ORDER BY u.i",
            &[],
        )
        .unwrap();
    let mut h = fnmetrics_core::Histogram::new();
    for r in &merged {
        h.add_to_bucket(r.get::<_, i16>(0) as usize, r.get::<_, i64>(1) as u64);
    }
    let everything = rolled
        .window(&Query::function("f").between(at(0), at(now_micros() + DAY)))
        .unwrap()[0]
        .1;
    assert_eq!(
        (everything.p50, everything.p99),
        (h.quantile(0.5), h.quantile(0.99))
    );
    for q in [0.0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0, f64::NAN] {
        let sql: f64 = client
            .query_one(
                "SELECT fnmetrics_quantile(array_agg(u.i ORDER BY u.i), array_agg(u.c ORDER BY u.i), $1)
                 FROM (SELECT u.i, sum(u.c)::bigint AS c
                       FROM metrics_1h, unnest(hist_index, hist_count) u(i, c)
                       WHERE func_name = 'f' GROUP BY u.i) u",
                &[&q],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            Duration::from_nanos((sql * 1e9).round() as u64),
            h.quantile(q),
            "q = {q}"
        );
    }
    let none: Option<f64> = client
        .query_one("SELECT fnmetrics_quantile('{}', '{}', 0.5)", &[])
        .unwrap()
        .get(0);
    assert_eq!(none, None);
}

#[test]
fn a_dropped_rollup_is_made_again_from_the_raw_rows_and_the_other_is_left_as_it_is() {
    let pg = PostgresServer::start();
    let mut sink = PostgresSink::connect(&pg.url(), PostgresOptions::default()).unwrap();
    let batch = entries(
        &mut IdGen::with_instance(8),
        5_000,
        &["r"],
        now_micros() - DAY,
        20_000_000,
    );
    sink.write_batch(&batch).unwrap();
    drop(sink);
    let mut client = pg.client();
    client.batch_execute("DROP TABLE metrics_1h").unwrap();
    drop(PostgresSink::connect(&pg.url(), PostgresOptions::default()).unwrap());
    assert_rollups_exact(&mut client);
}
