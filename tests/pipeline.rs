//! The whole pipeline against real, throw-away Redis and PostgreSQL servers: process → Redis →
//! PostgreSQL, with servers stopped mid-run, drainers abandoned mid-batch, and several processes.
//!
//! One flusher runs per process, so each test that starts one runs in a process of its own
//! (`own_process!`).
#![cfg(all(feature = "redis", feature = "postgres"))]

use fnmetrics_test_support as support;

use fnmetrics::postgres::{PostgresOptions, PostgresReader, PostgresSink, Query};
use fnmetrics::redis::{RedisOptions, RedisQueue, RedisReader, RedisSink};
use fnmetrics::sink::{EntryRecord, FlushBatch, IdGen, Sink};
use fnmetrics::{measured, Drainer, ErrorKind, Flusher, Mode};
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::postgres::PostgresServer;
use support::redis::RedisServer;
use support::wait_until;

const WAIT: Duration = Duration::from_secs(60);

fn spin(n: u64) -> u64 {
    (0..n).fold(0, |a, i| black_box(a ^ i.wrapping_mul(31)))
}

fn start(redis: &RedisServer, postgres: Option<&PostgresServer>) -> Flusher {
    let mut b = Flusher::builder()
        .redis(redis.url())
        .batch_size(500)
        .flush_interval(Duration::from_millis(50))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .on_error(|_| {});
    if let Some(pg) = postgres {
        b = b.postgres(pg.url());
    }
    b.start().expect("flusher starts")
}

/// `flush()` until it succeeds: right after a server comes back, the first attempt may meet the
/// connection that broke.
fn flush_until_ok(guard: &Flusher) {
    wait_until("a successful flush", WAIT, || guard.flush().is_ok());
}

fn redis_entries(redis: &RedisServer, name: &str) -> Vec<EntryRecord> {
    let mut c = redis.client();
    let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg("metrics_list")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    raw.iter()
        .flat_map(|b| fnmetrics::redis::wire::decode_element(b).entries)
        .filter(|e| &*e.func_name == name)
        .collect()
}

fn fleet(redis: &RedisServer, name: &str) -> fnmetrics::Snapshot {
    RedisReader::connect(&redis.url(), RedisOptions::default())
        .unwrap()
        .get(name)
        .unwrap()
        .expect("aggregates in Redis")
}

fn reader(postgres: &PostgresServer) -> PostgresReader {
    PostgresReader::connect(&postgres.url(), PostgresOptions::default()).unwrap()
}

fn drainer(redis: &RedisServer, postgres: &PostgresServer) -> Drainer {
    Drainer::connect(
        fnmetrics::redis::RedisQueue::new(&redis.url(), RedisOptions::default()).unwrap(),
        fnmetrics::postgres::PostgresSink::new(&postgres.url(), PostgresOptions::default())
            .unwrap(),
    )
    .unwrap()
}

fn queue(redis: &RedisServer) -> RedisQueue {
    RedisQueue::connect(&redis.url(), RedisOptions::default()).unwrap()
}

#[derive(Debug)]
struct Declined;

#[measured(name = "pipeline::agree")]
fn agree(i: u64) -> Result<u64, Declined> {
    let v = spin(200 + (i % 50) * 40);
    if i % 10 == 3 {
        Err(Declined)
    } else {
        Ok(v)
    }
}

#[test]
fn local_redis_and_postgres_agree_on_the_same_calls() {
    support::own_process!();
    let (redis, postgres) = (RedisServer::start(), PostgresServer::start());
    let guard = start(&redis, Some(&postgres));
    assert_eq!(guard.mode(), Mode::RedisAndPostgres);
    let from = SystemTime::now() - Duration::from_secs(1);
    for i in 0..5_000 {
        let _ = agree(i);
    }
    guard.flush().unwrap();
    let to = SystemTime::now() + Duration::from_secs(1);

    let local = fnmetrics::get("pipeline::agree").unwrap();
    let fleet = fleet(&redis, "pipeline::agree");
    let agree = Query::function("pipeline::agree").between(from, to);
    let window = reader(&postgres).window(&agree).unwrap()[0].1;
    // The guard reads the same through the URLs it was given.
    assert_eq!(
        guard.fleet("pipeline::agree").unwrap().as_ref(),
        Some(&fleet)
    );
    assert_eq!(
        guard.window(&agree).unwrap(),
        [("pipeline::agree".to_owned(), window)]
    );
    assert_eq!((local.calls, local.errors), (5_000, 500));
    assert_eq!((fleet.calls, fleet.errors), (5_000, 500));
    assert_eq!((window.calls, window.errors), (5_000, 500));
    assert_eq!(fleet.total(), local.total());
    assert_eq!((fleet.min(), fleet.max()), (local.min(), local.max()));
    assert_eq!(fleet.histogram(), local.histogram());
    let close = |a: Duration, b: Duration, tol: f64| {
        let (a, b) = (a.as_secs_f64(), b.as_secs_f64());
        (a - b).abs() <= tol * b.max(1e-9)
    };
    assert!(
        close(window.mean, local.mean(), 1e-3),
        "{window:?} vs {local:?}"
    );
    assert!(close(window.max, local.max(), 1e-6));
    for (q, from_pg) in [(0.5, window.p50), (0.99, window.p99)] {
        assert!(
            close(local.quantile(q), from_pg, 0.03),
            "q{q}: local {:?} vs PostgreSQL {from_pg:?}",
            local.quantile(q)
        );
    }
    assert_eq!(
        queue(&redis).pending_len().unwrap(),
        0,
        "Redis keeps nothing saved"
    );
}

#[measured(name = "pipeline::redis_restart")]
fn redis_restart() {}

#[measured(name = "pipeline::sourced")]
fn sourced(i: u64) -> u64 {
    spin(100 + i % 100)
}

#[test]
fn a_drainer_sees_the_service_and_host_that_the_producer_set() {
    support::own_process!();
    let redis = RedisServer::start();
    let flusher = Flusher::builder()
        .redis(redis.url())
        .service("svc-a")
        .host("h-1")
        .batch_size(500)
        .flush_interval(Duration::from_millis(50))
        .on_error(|_| {})
        .start()
        .expect("flusher starts");
    let from = SystemTime::now();
    for i in 0..1_200 {
        sourced(i);
    }
    flusher.flush().unwrap();
    let to = SystemTime::now();

    // On the wire: frames that name their source once (batches of at most 500 entries).
    let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg("metrics_list")
        .arg(0)
        .arg(-1)
        .query(&mut redis.client())
        .unwrap();
    assert!(raw.len() >= 3, "{} elements", raw.len());
    for element in &raw {
        assert_eq!(element[0], fnmetrics::redis::wire::SOURCED_FRAME_VERSION);
        assert_eq!(&element[1..13], b"\x05\x00svc-a\x03\x00h-1");
    }

    // A drainer's claim decodes them with that source, one allocation per frame.
    let mut q = queue(&redis);
    let claim = q
        .claim(100_000, Duration::from_secs(60))
        .unwrap()
        .expect("entries in Redis");
    assert!(claim.undecodable.is_empty(), "{:?}", claim.undecodable);
    let ours: Vec<&EntryRecord> = claim
        .entries
        .iter()
        .filter(|e| &*e.func_name == "pipeline::sourced")
        .collect();
    assert_eq!(ours.len(), 1_200);
    for e in &claim.entries {
        assert_eq!((&*e.source.service, &*e.source.host), ("svc-a", "h-1"));
    }
    let sources: HashSet<*const fnmetrics::sink::Source> = claim
        .entries
        .iter()
        .map(|e| Arc::as_ptr(&e.source))
        .collect();
    assert!(sources.len() <= raw.len(), "{} sources", sources.len());
    // And their times are the wall clock's.
    let micros = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
    for e in ours {
        assert!(
            (micros(from)..=micros(to)).contains(&e.created_at_micros),
            "{} not in {:?}..{:?}",
            e.created_at_micros,
            from,
            to
        );
    }
    assert!(q.ack(&claim).unwrap());
    assert_eq!(q.pending_len().unwrap(), 0);
}

#[test]
fn redis_stopped_mid_run_then_restarted_loses_nothing_and_doubles_nothing() {
    support::own_process!();
    let mut redis = RedisServer::start();
    let guard = start(&redis, None);
    for _ in 0..2_000 {
        redis_restart();
    }
    guard.flush().unwrap();
    redis.stop();
    let failed = guard.stats().failed_writes;
    for _ in 0..3_000 {
        redis_restart();
    }
    wait_until("the flusher to meet the stopped server", WAIT, || {
        guard.stats().failed_writes > failed + 2
    });
    redis.restart();
    flush_until_ok(&guard);

    let entries = redis_entries(&redis, "pipeline::redis_restart");
    assert_eq!(entries.len(), 5_000);
    let ids: HashSet<_> = entries.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 5_000, "no entry twice");
    let fleet = fleet(&redis, "pipeline::redis_restart");
    assert_eq!(fleet.calls, 5_000, "aggregates not doubled by retries");
    assert_eq!(fleet.dropped_entries, 0);
}

#[measured(name = "pipeline::postgres_restart")]
fn postgres_restart() {}

#[test]
fn postgres_stopped_mid_run_entries_wait_in_redis_and_arrive_once() {
    support::own_process!();
    let (redis, mut postgres) = (RedisServer::start(), PostgresServer::start());
    let guard = start(&redis, Some(&postgres));
    for _ in 0..2_000 {
        postgres_restart();
    }
    guard.flush().unwrap();
    assert_eq!(postgres.raw_rows_of("pipeline::postgres_restart"), 2_000);
    postgres.stop();
    for _ in 0..3_000 {
        postgres_restart();
    }
    assert!(
        guard.flush().is_err(),
        "stage 2 cannot succeed without PostgreSQL"
    );
    // Waiting in Redis: in the list, or in a claim the drainer holds.
    assert_eq!(queue(&redis).pending_len().unwrap(), 3_000);
    postgres.restart();
    flush_until_ok(&guard);
    assert_eq!(postgres.raw_rows_of("pipeline::postgres_restart"), 5_000);
    assert_eq!(queue(&redis).pending_len().unwrap(), 0);
}

fn batch(ids: &mut IdGen, name: &str, n: usize) -> FlushBatch {
    let now_us = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    FlushBatch {
        flush_id: ids.next_id(now_us as u64 / 1000),
        entries: (0..n)
            .map(|i| EntryRecord {
                id: ids.next_id(now_us as u64 / 1000),
                func_name: name.into(),
                execution_time: Duration::from_micros(i as u64 + 1),
                error_occurred: i % 4 == 0,
                created_at_micros: now_us,
                weight: 1,
                source: Default::default(),
            })
            .collect(),
        aggregates: Vec::new(),
    }
}

/// Run by `drainers_killed_between_claim_and_commit_or_commit_and_ack_lose_and_double_nothing`
/// in a child process, which dies at the step `FNMETRICS_CHILD_CRASH_AT` names: `exit` runs no
/// destructor and says no goodbye to either server, as a kill would (and, unlike `abort`, leaves
/// no core file where core dumps are on).
#[test]
#[ignore = "a child process of another test"]
fn child_drainer_dies_mid_batch() {
    let (Some((redis, postgres)), Ok(at)) = (
        support::child_servers(),
        std::env::var("FNMETRICS_CHILD_CRASH_AT"),
    ) else {
        return;
    };
    let mut queue = RedisQueue::connect(&redis, RedisOptions::default()).unwrap();
    let mut db = PostgresSink::connect(&postgres, PostgresOptions::default()).unwrap();
    let claim = queue
        .claim(1_000, Duration::from_millis(300))
        .unwrap()
        .unwrap();
    if at == "claim" {
        std::process::exit(9);
    }
    assert_eq!(db.write_batch(&claim.entries).unwrap().inserted, 1_000);
    std::process::exit(9); // after the commit, before the acknowledgement
}

#[test]
fn drainers_killed_between_claim_and_commit_or_commit_and_ack_lose_and_double_nothing() {
    let (redis, postgres) = (RedisServer::start(), PostgresServer::start());
    let mut sink = RedisSink::connect(&redis.url(), RedisOptions::default()).unwrap();
    let mut ids = IdGen::new();
    for _ in 0..3 {
        sink.write(&batch(&mut ids, "pipeline::killed", 1_000))
            .unwrap();
    }
    for at in ["claim", "commit"] {
        let status = support::child_test(
            "child_drainer_dies_mid_batch",
            &redis.url(),
            &postgres.url(),
        )
        .env("FNMETRICS_CHILD_CRASH_AT", at)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
        assert!(!status.success(), "the child drainer was to die at {at}");
    }
    assert_eq!(postgres.raw_rows_of("pipeline::killed"), 1_000);
    assert_eq!(
        queue(&redis).pending_len().unwrap(),
        3_000,
        "both claims still held"
    );

    let mut drainer = drainer(&redis, &postgres).claim_size(1_000);
    // The unclaimed batch moves at once; the two dead drainers' claims once their leases expire.
    wait_until("every claim to be saved", WAIT, || {
        drainer.drain_all().unwrap();
        queue(&redis).pending_len().unwrap() == 0
    });
    assert_eq!(postgres.raw_rows_of("pipeline::killed"), 3_000);
    // Each entry counted once in each rollup too, whatever the dead drainers did.
    let mut client = postgres.client();
    for rollup in ["metrics_1m", "metrics_1h"] {
        let row = client
            .query_one(
                &format!(
                    "SELECT
                         (SELECT string_agg(i || ':' || c, ',' ORDER BY i) FROM (
                              SELECT fnmetrics_bucket(execution_time) AS i, sum(weight) AS c
                              FROM metrics WHERE func_name = $1 GROUP BY 1) r),
                         (SELECT string_agg(i || ':' || c, ',' ORDER BY i) FROM (
                              SELECT u.i, sum(u.c) AS c
                              FROM {rollup}, unnest(hist_index, hist_count) AS u(i, c)
                              WHERE func_name = $1 GROUP BY 1) r),
                         (SELECT count(*) FILTER (WHERE error_occurred) FROM metrics
                          WHERE func_name = $1),
                         (SELECT sum(entries)::bigint FROM {rollup} WHERE func_name = $1),
                         (SELECT sum(calls)::bigint FROM {rollup} WHERE func_name = $1),
                         (SELECT sum(errors)::bigint FROM {rollup} WHERE func_name = $1)"
                ),
                &[&"pipeline::killed"],
            )
            .unwrap();
        let (raw_hist, rolled_hist): (String, String) = (row.get(0), row.get(1));
        assert_eq!(raw_hist, rolled_hist, "{rollup}");
        let (errors, entries, calls, rolled_errors): (i64, i64, i64, i64) =
            (row.get(2), row.get(3), row.get(4), row.get(5));
        assert_eq!(
            (entries, calls, rolled_errors),
            (3_000, 3_000, errors),
            "{rollup}"
        );
    }
}

#[measured(name = "pipeline::overflow")]
fn overflow() {}

#[test]
fn entries_over_the_bound_are_dropped_counted_in_redis_and_aggregates_stay_exact() {
    support::own_process!();
    let mut redis = RedisServer::start();
    let guard = Flusher::builder()
        .redis(redis.url())
        .batch_size(100)
        .max_pending_entries(1_000)
        .flush_interval(Duration::from_millis(20))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .on_error(|_| {})
        .start()
        .unwrap();
    redis.stop();
    // What memory holds at most: `max_pending_entries` in the flusher, 8192 in this thread's
    // ring, and `max_pending_entries` in the spill queue. Past that, entries are dropped.
    const HELD: u64 = 1_000 + 8_192 + 1_000;
    const CALLS: u64 = 30_000;
    for _ in 0..CALLS {
        overflow();
    }
    wait_until("the bound to be hit", WAIT, || {
        fnmetrics::get("pipeline::overflow")
            .unwrap()
            .dropped_entries
            >= CALLS - HELD
    });
    assert!(
        guard.stats().pending_entries <= HELD,
        "memory stays bounded: {:?}",
        guard.stats()
    );
    redis.restart();
    flush_until_ok(&guard);
    let kept = redis_entries(&redis, "pipeline::overflow").len() as u64;
    let fleet = fleet(&redis, "pipeline::overflow");
    let local = fnmetrics::get("pipeline::overflow").unwrap();
    assert_eq!(fleet.calls, CALLS, "aggregates are never dropped");
    // One loss figure everywhere: the flusher's stats, the function's counter, Redis.
    assert_eq!(fleet.dropped_entries, local.dropped_entries);
    assert_eq!(guard.stats().dropped_entries, local.dropped_entries);
    assert_eq!(
        kept + fleet.dropped_entries,
        CALLS,
        "written + dropped = calls"
    );
    assert!((1_000..=HELD).contains(&kept), "{kept}");
}

#[test]
fn bad_urls_credentials_and_schemas_are_typed_errors_from_start() {
    support::own_process!();
    let kind = |b: fnmetrics::FlusherBuilder| b.start().unwrap_err().kind();
    assert_eq!(
        kind(Flusher::builder().redis("this is not a url")),
        ErrorKind::InvalidUrl
    );
    // A server that is merely down fails only a fail-fast start (see `tests/lifecycle.rs` for
    // the default: the flusher starts and waits for it).
    let closed = support::free_port();
    let quiet = || Flusher::builder().on_error(|_| {}).fail_fast(true);
    assert_eq!(
        kind(quiet().redis(format!("redis://127.0.0.1:{closed}/"))),
        ErrorKind::Unavailable
    );
    let locked = RedisServer::start_with_password("s3cret");
    let wrong = format!("redis://:wrong@127.0.0.1:{}/", locked.port());
    assert_eq!(kind(Flusher::builder().redis(wrong)), ErrorKind::Auth);
    assert_eq!(
        kind(Flusher::builder().postgres("postgres://127.0.0.1/x")),
        ErrorKind::InvalidConfig
    );

    let (redis, postgres) = (RedisServer::start(), PostgresServer::start());
    postgres
        .client()
        .batch_execute("CREATE TABLE metrics (id bigint primary key, func_name text)")
        .unwrap();
    let err = Flusher::builder()
        .redis(redis.url())
        .postgres(postgres.url())
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    let pg_closed = format!("postgres://postgres@127.0.0.1:{closed}/fnmetrics");
    assert_eq!(
        kind(quiet().redis(redis.url()).postgres(pg_closed)),
        ErrorKind::Unavailable
    );
}

#[measured(name = "pipeline::fleet")]
fn fleet_call(i: u64) -> Result<u64, Declined> {
    if i.is_multiple_of(5) {
        Err(Declined)
    } else {
        Ok(i)
    }
}

const CHILD_CALLS: u64 = 20_000;

/// Run by `two_processes_flushing_and_draining_save_every_call_once` in child processes.
#[test]
#[ignore = "a child process of another test"]
fn child_process_flushes_and_drains() {
    let Some((redis, postgres)) = support::child_servers() else {
        return;
    };
    let guard = Flusher::builder()
        .redis(redis)
        .postgres(postgres)
        .batch_size(1_000)
        .flush_interval(Duration::from_millis(20))
        .on_error(|e| eprintln!("child: {e}"))
        .start()
        .unwrap();
    for i in 0..CHILD_CALLS {
        let _ = fleet_call(i);
    }
    drop(guard); // flushes and drains what is left
}

#[test]
fn two_processes_flushing_and_draining_save_every_call_once() {
    let (redis, postgres) = (RedisServer::start(), PostgresServer::start());
    let children: Vec<_> = (0..2)
        .map(|_| {
            support::child_test(
                "child_process_flushes_and_drains",
                &redis.url(),
                &postgres.url(),
            )
            .spawn()
            .unwrap()
        })
        .collect();
    // Meanwhile a dedicated drainer in this process competes for the same batches.
    let mut drainer = drainer(&redis, &postgres).claim_size(700);
    let mut children = children;
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        drainer.drain_once().unwrap();
    }
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child process failed");
    }
    drainer.drain_all().unwrap();
    assert_eq!(queue(&redis).pending_len().unwrap(), 0);
    assert_eq!(
        postgres.raw_rows_of("pipeline::fleet"),
        2 * CHILD_CALLS,
        "rows in PostgreSQL = calls made"
    );
    let fleet = fleet(&redis, "pipeline::fleet");
    assert_eq!(
        (fleet.calls, fleet.errors),
        (2 * CHILD_CALLS, 2 * CHILD_CALLS / 5)
    );
    let window = reader(&postgres)
        .window(&Query::function("pipeline::fleet").between(
            SystemTime::now() - Duration::from_secs(600),
            SystemTime::now() + Duration::from_secs(1),
        ))
        .unwrap()[0]
        .1;
    assert_eq!((window.calls, window.errors), (fleet.calls, fleet.errors));
}
