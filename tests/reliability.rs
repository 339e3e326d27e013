//! The pipeline under ordinary database events (issue 7's table), against real throw-away
//! servers, with exact counts: a locked table, an undecodable entry, a Redis that is down at
//! shutdown, and passwords in `Debug`.
#![cfg(all(feature = "redis", feature = "postgres"))]

use fnmetrics_test_support as support;

use fnmetrics::postgres::{PostgresOptions, PostgresSink};
use fnmetrics::redis::{RedisOptions, RedisQueue, RedisReader};
use fnmetrics::{measured, Drainer, Flusher};
use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::postgres::PostgresServer;
use support::redis::RedisServer;
use support::wait_until;

const WAIT: Duration = Duration::from_secs(60);

fn fleet(redis: &RedisServer, name: &str) -> fnmetrics::Snapshot {
    RedisReader::connect(&redis.url(), RedisOptions::default())
        .unwrap()
        .get(name)
        .unwrap()
        .expect("aggregates in Redis")
}

/// Drains with a dedicated drainer until Redis holds nothing for stage 2.
fn drain_everything(redis: &RedisServer, postgres: &PostgresServer) {
    let mut drainer = connect_drainer(&redis.url(), &postgres.url())
        .unwrap()
        .lease(Duration::from_secs(2));
    let mut queue = RedisQueue::connect(&redis.url(), RedisOptions::default()).unwrap();
    wait_until("Redis to hold nothing for stage 2", WAIT, || {
        let _ = drainer.drain_all();
        queue.pending_len().unwrap() == 0
    });
}

/// A flusher from `redis` to `postgres` that reports no errors (the tests assert counts).
fn pipeline(redis: &RedisServer, postgres: &PostgresServer) -> fnmetrics::FlusherBuilder {
    Flusher::builder()
        .redis(redis.url())
        .postgres(postgres.url())
        .on_error(|_| {})
}

#[measured(name = "reliability::locked")]
fn locked() {}

#[test]
fn a_locked_table_does_not_hold_stage_1_back_and_every_entry_arrives_once() {
    support::own_process!();
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let flusher = pipeline(&redis, &postgres)
        .batch_size(1_000)
        .flush_interval(Duration::from_millis(50))
        .max_pending_entries(20_000)
        .shutdown_timeout(Duration::from_secs(2))
        .lease(Duration::from_secs(2))
        .start()
        .unwrap();

    // What a migration, VACUUM FULL or an index build does: hold the table for a while.
    let mut locker = postgres.client();
    let mut lock = locker.transaction().unwrap();
    lock.batch_execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        .unwrap();

    for _ in 0..51 {
        for _ in 0..1_000 {
            locked();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + WAIT;
    let mut stats = flusher.stats();
    while stats.entries_written + stats.dropped_entries < 51_000 {
        assert!(
            Instant::now() < deadline,
            "stage 1 has not moved every entry after {WAIT:?}: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
        stats = flusher.stats();
    }
    assert_eq!(
        (stats.entries_written, stats.dropped_entries),
        (51_000, 0),
        "{stats:?}"
    );
    assert_eq!(stats.entries_drained, 0, "stage 2 is held by the lock");

    let dropping = Instant::now();
    drop(flusher);
    let took = dropping.elapsed();
    assert!(
        took <= Duration::from_secs(3),
        "the drop took {took:?}, past shutdown_timeout + 1 s"
    );

    lock.rollback().unwrap();
    drain_everything(&redis, &postgres);
    assert_eq!(postgres.raw_rows_of("reliability::locked"), 51_000);
    let f = fleet(&redis, "reliability::locked");
    assert_eq!((f.calls, f.dropped_entries), (51_000, 0));
}

#[measured(name = "reliability::beside_garbage")]
fn beside_garbage() {}

#[test]
fn an_undecodable_entry_is_set_aside_and_the_others_arrive() {
    support::own_process!();
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    // Written by a newer fnmetrics during a rolling deploy, say: a format version we do not know.
    let mut c = redis.client();
    let _: () = redis::cmd("RPUSH")
        .arg("metrics_list")
        .arg(&[9u8, 0, 1, 2, 3][..])
        .query(&mut c)
        .unwrap();
    let flusher = pipeline(&redis, &postgres)
        .batch_size(1_000)
        .start()
        .unwrap();
    for _ in 0..10_000 {
        beside_garbage();
    }
    flusher.flush().unwrap();
    assert_eq!(postgres.raw_rows_of("reliability::beside_garbage"), 10_000);
    let stats = flusher.stats();
    assert_eq!((stats.entries_drained, stats.dead_letters), (10_000, 1));
    let mut queue = RedisQueue::connect(&redis.url(), RedisOptions::default()).unwrap();
    assert_eq!(queue.pending_len().unwrap(), 0);
    let dead = queue.dead_letters(0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, [9u8, 0, 1, 2, 3]);
    assert!(dead[0].reason.contains("version 9"), "{}", dead[0].reason);
}

#[measured(name = "reliability::redis_down_at_shutdown")]
fn redis_down_at_shutdown() {}

#[test]
fn a_flusher_that_gives_up_at_shutdown_counts_the_loss_and_the_next_one_sends_exact_aggregates() {
    support::own_process!();
    let mut redis = RedisServer::start();
    let start = |redis: &RedisServer| {
        Flusher::builder()
            .redis(redis.url())
            .flush_interval(Duration::from_millis(20))
            .backoff(Duration::from_millis(10), Duration::from_millis(50))
            .shutdown_timeout(Duration::from_millis(300))
            .on_error(|_| {})
            .start()
            .unwrap()
    };
    let first = start(&redis);
    redis.stop();
    for _ in 0..1_000 {
        redis_down_at_shutdown();
    }
    wait_until("the flusher to hold every entry", WAIT, || {
        first.stats().pending_entries == 1_000 && first.stats().failed_writes > 0
    });
    let dropping = Instant::now();
    drop(first);
    assert!(dropping.elapsed() <= Duration::from_millis(1_300));
    let local = fnmetrics::get("reliability::redis_down_at_shutdown").unwrap();
    assert_eq!(
        (local.calls, local.dropped_entries),
        (1_000, 1_000),
        "the entries that never left are counted as dropped"
    );

    redis.restart();
    let second = start(&redis);
    wait_until("a flush to succeed", WAIT, || second.flush().is_ok());
    let f = fleet(&redis, "reliability::redis_down_at_shutdown");
    assert_eq!((f.calls, f.dropped_entries), (1_000, 1_000));
}

#[test]
fn passwords_appear_in_no_debug_and_no_error() {
    support::own_process!();
    const SECRET: &str = "s3cr3t-Pa55";
    let builder = Flusher::builder()
        .redis(format!("redis://:{SECRET}@127.0.0.1:1/"))
        .postgres(format!("postgres://app:{SECRET}@127.0.0.1:1/db"));
    let shown = format!("{builder:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("redis://:***@127.0.0.1:1/"), "{shown}");
    let err = builder
        .fail_fast(true)
        .on_error(|_| {})
        .start()
        .unwrap_err();
    for text in [format!("{err}"), format!("{err:?}"), err.chain()] {
        assert!(!text.contains(SECRET), "{text}");
    }
    // Started anyway (the servers are merely down): what is reported and the health.
    let said = std::sync::Arc::new(Mutex::new(Vec::new()));
    let heard = said.clone();
    let retrying = Flusher::builder()
        .redis(format!("redis://:{SECRET}@127.0.0.1:1/"))
        .postgres(format!("postgres://app:{SECRET}@127.0.0.1:1/db"))
        .on_error(move |e| heard.lock().push(format!("{e} {e:?}")))
        .start()
        .unwrap();
    wait_until("both stages to report", WAIT, || {
        let h = retrying.health();
        h.stage1.is_some_and(|s| s.last_error.is_some())
            && h.stage2.is_some_and(|s| s.last_error.is_some())
    });
    let health = format!("{:?}", retrying.health());
    drop(retrying);
    assert!(!said.lock().is_empty());
    for text in said.lock().iter().chain([&health]) {
        assert!(!text.contains(SECRET), "{text}");
    }

    let redis = RedisServer::start_with_password(SECRET);
    let flusher = Flusher::builder().redis(redis.url()).start().unwrap();
    let shown = format!("{flusher:?}");
    assert!(
        redis.url().contains(SECRET),
        "the test needs a URL with the password"
    );
    assert!(!shown.contains(SECRET), "{shown}");
    drop(flusher);
    let err = Flusher::builder()
        .redis(redis.url().replace(SECRET, "wrong-Pa55"))
        .on_error(|_| {})
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), fnmetrics::ErrorKind::Auth, "{err}");
    assert!(!format!("{err} {err:?}").contains("wrong-Pa55"), "{err:?}");
}

#[measured(name = "reliability::checked")]
fn checked(slow: bool) {
    if slow {
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn a_row_postgres_refuses_for_good_is_set_aside_and_the_rest_arrive() {
    support::own_process!();
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let flusher = pipeline(&redis, &postgres)
        .batch_size(2_000)
        .start()
        .unwrap();
    // A rule added after the fact: no call may take 20 ms or more.
    postgres
        .client()
        .batch_execute("ALTER TABLE metrics ADD CONSTRAINT fast CHECK (execution_time < 0.02)")
        .unwrap();
    for i in 0..10_001 {
        checked(i == 5_000);
    }
    flusher.flush().unwrap();
    assert_eq!(postgres.raw_rows_of("reliability::checked"), 10_000);
    let stats = flusher.stats();
    assert_eq!((stats.entries_drained, stats.dead_letters), (10_000, 1));
    let mut queue = RedisQueue::connect(&redis.url(), RedisOptions::default()).unwrap();
    assert_eq!(queue.pending_len().unwrap(), 0);
    let dead = queue.dead_letters(0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, fnmetrics::redis::DeadLetterKind::Rejected);
    assert!(dead[0].reason.starts_with("23514"), "{}", dead[0].reason);
    let entry = dead[0].entry().expect("the refused entry");
    assert!(entry.execution_time >= Duration::from_millis(30));

    // Once the rule is dropped, re-queued, it arrives.
    postgres
        .client()
        .batch_execute("ALTER TABLE metrics DROP CONSTRAINT fast")
        .unwrap();
    assert_eq!(queue.requeue_dead_letters(&dead).unwrap(), 1);
    flusher.flush().unwrap();
    assert_eq!(postgres.raw_rows_of("reliability::checked"), 10_001);
    assert_eq!(queue.dead_letter_counts().unwrap().held, 0);
}

#[test]
fn a_slow_drainer_racing_the_drainer_that_took_its_claim_over_lands_every_entry_once() {
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let options = || PostgresOptions::default().with_lock_timeout(Duration::from_secs(30));
    // The schema, then a rule the database enforces: no call of 20 ms or more.
    PostgresSink::connect(&postgres.url(), options()).unwrap();
    postgres
        .client()
        .batch_execute("ALTER TABLE metrics ADD CONSTRAINT fast CHECK (execution_time < 0.02)")
        .unwrap();

    // 5 000 entries (one of them refused by the rule) and one element no version can decode.
    let mut ids = fnmetrics::sink::IdGen::with_instance(77);
    // Calls of now: entries years old would be past retention, and the drainers' maintenance
    // would drop their partition.
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let entries: Vec<fnmetrics::sink::EntryRecord> = (0..5_000)
        .map(|i| fnmetrics::sink::EntryRecord {
            id: ids.next_id(now_us as u64 / 1000),
            func_name: "reliability::raced".into(),
            execution_time: Duration::from_micros(if i == 2_500 { 30_000 } else { 10 + i }),
            error_occurred: i % 9 == 0,
            created_at_micros: now_us + i as i64,
            weight: 1,
            source: Default::default(),
        })
        .collect();
    let mut sink =
        fnmetrics::redis::RedisSink::connect(&redis.url(), RedisOptions::default()).unwrap();
    sink.write_batch(&fnmetrics::sink::FlushBatch {
        flush_id: fnmetrics::sink::new_flush_id(),
        entries,
        aggregates: vec![],
    })
    .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("metrics_list")
        .arg(&[9u8, 9, 9][..])
        .query(&mut redis.client())
        .unwrap();

    let drainer = |lease: Duration| {
        fnmetrics::redis::RedisQueue::new(&redis.url(), RedisOptions::default())
            .and_then(|q| {
                Drainer::connect(
                    q,
                    fnmetrics::postgres::PostgresSink::new(&postgres.url(), options())?,
                )
            })
            .unwrap()
            .claim_size(10_000)
            .lease(lease)
            // Only the two drainers' sessions may wait on the lock: this test counts them.
            .maintain_every(None)
    };
    let mut slow = drainer(Duration::from_millis(300));
    let mut taker = drainer(Duration::from_secs(60));
    // Another session holds the table: whoever writes waits.
    let mut locker = postgres.client();
    let mut lock = locker.transaction().unwrap();
    lock.batch_execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let waiting_on_the_lock = || -> i64 {
        postgres
            .admin_client()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0)
    };

    std::thread::scope(|s| {
        // The slow drainer claims everything and blocks on the lock; its lease runs out.
        let a = s.spawn(move || slow.drain_once().unwrap());
        wait_until("the slow drainer to wait on the lock", WAIT, || {
            waiting_on_the_lock() == 1
        });
        // The other drainer takes the claim over (once the lease ran out) and blocks too.
        let b = s.spawn(move || loop {
            let o = taker.drain_once().unwrap();
            if !o.is_idle() {
                return o;
            }
            std::thread::sleep(Duration::from_millis(20));
        });
        wait_until("both drainers to wait on the lock", WAIT, || {
            waiting_on_the_lock() == 2
        });
        // The table is free: both write the same claim and race to acknowledge it.
        lock.rollback().unwrap();
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        // Exactly one acknowledged the claim and counts it; the other was told it was taken
        // over, and added nothing.
        assert_eq!(a.taken_over + b.taken_over, 1, "{a:?} {b:?}");
        assert_eq!(a.moved + b.moved, 4_999, "{a:?} {b:?}");
        assert_eq!(a.dead_lettered + b.dead_lettered, 2, "{a:?} {b:?}");
    });

    assert_eq!(postgres.raw_rows_of("reliability::raced"), 4_999);
    let mut queue = RedisQueue::connect(&redis.url(), RedisOptions::default()).unwrap();
    assert_eq!(queue.pending_len().unwrap(), 0);
    let dead = queue.dead_letters(0, 10).unwrap();
    assert_eq!(dead.len(), 2, "no dead letter is set aside twice: {dead:?}");
    assert_eq!(
        dead.iter()
            .filter(|d| d.kind == fnmetrics::redis::DeadLetterKind::Rejected)
            .count(),
        1
    );
    assert_eq!(dead.iter().filter(|d| d.payload == [9u8, 9, 9]).count(), 1);
    let mut c = redis.client();
    let claims: u64 = redis::cmd("ZCARD")
        .arg("fnmetrics:claims")
        .query(&mut c)
        .unwrap();
    assert_eq!(claims, 0, "no claim is left behind");
}

/// `n` entries of `name`, one a millisecond from `start_micros`; those at `slow` take 30 ms.
fn entries_at(
    ids: &mut fnmetrics::sink::IdGen,
    name: &str,
    n: usize,
    start_micros: i64,
    slow: &[usize],
) -> Vec<fnmetrics::sink::EntryRecord> {
    let name: std::sync::Arc<str> = name.into();
    let source = std::sync::Arc::new(fnmetrics::sink::Source::new("reliability", "h"));
    (0..n)
        .map(|i| {
            let created = start_micros + i as i64 * 1_000;
            fnmetrics::sink::EntryRecord {
                id: ids.next_id(created as u64 / 1000),
                func_name: name.clone(),
                execution_time: if slow.contains(&i) {
                    Duration::from_millis(30)
                } else {
                    Duration::from_micros(5 + i as u64 % 700)
                },
                error_occurred: i % 7 == 0,
                created_at_micros: created,
                weight: 1,
                source: source.clone(),
            }
        })
        .collect()
}

/// A drainer that writes each claim over two connections: a refused row in the second part is
/// set aside as itself; a part that fails (its day's partition locked) makes the whole claim be
/// written again, and then every entry is in once, in the raw rows and in both rollups.
#[test]
fn a_claim_written_in_parts_lands_every_entry_once_whatever_part_fails() {
    use fnmetrics::redis::RedisSink;
    use fnmetrics::sink::{FlushBatch, IdGen, Sink};
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let options = PostgresOptions::default().with_lock_timeout(Duration::from_millis(300));
    let mut drainer = fnmetrics::redis::RedisQueue::new(&redis.url(), RedisOptions::default())
        .and_then(|q| {
            Drainer::connect(
                q,
                fnmetrics::postgres::PostgresSink::new(&postgres.url(), options)?,
            )
        })
        .unwrap()
        .claim_size(100_000)
        .writers(2)
        .maintain_every(None);
    let mut client = postgres.client();
    client
        .batch_execute("ALTER TABLE metrics ADD CONSTRAINT fast CHECK (execution_time < 0.02)")
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let day = 86_400_000_000;
    let mut ids = IdGen::with_instance(5);
    // The first part today, the second three days ago (a partition of its own).
    let mut all = entries_at(
        &mut ids,
        "reliability::parts",
        3_000,
        now - 3_600_000_000,
        &[],
    );
    all.extend(entries_at(
        &mut ids,
        "reliability::parts",
        3_000,
        now - 3 * day,
        &[1_234],
    ));
    let refused_id = all[3_000 + 1_234].id;
    let mut sink = RedisSink::connect(&redis.url(), RedisOptions::default()).unwrap();
    sink.write(&FlushBatch {
        flush_id: ids.next_id(0),
        entries: all.clone(),
        aggregates: Vec::new(),
    })
    .unwrap();

    // The old day's partition (made by one entry of another function), locked: that part
    // fails, the other commits.
    PostgresSink::connect(&postgres.url(), PostgresOptions::default())
        .unwrap()
        .write_batch(&entries_at(
            &mut ids,
            "reliability::other",
            1,
            now - 3 * day,
            &[],
        ))
        .unwrap();
    let old: String = client
        .query_one(
            "SELECT 'metrics_p' || to_char(now() AT TIME ZONE 'UTC' - interval '3 days', 'YYYYMMDD')",
            &[],
        )
        .unwrap()
        .get(0);
    let mut locker = postgres.client();
    let mut tx = locker.transaction().unwrap();
    tx.batch_execute(&format!("LOCK TABLE {old} IN ACCESS EXCLUSIVE MODE"))
        .unwrap();
    let e = drainer.drain_once().unwrap_err();
    assert!(e.kind().is_transient(), "{e}");
    tx.rollback().unwrap();
    let raw = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM metrics WHERE func_name = 'reliability::parts'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(raw(&mut client), 3_000, "the first part is in");

    // Written again: the first part is skipped by its ids, the second goes in.
    let done = drainer.drain_once().unwrap();
    assert_eq!((done.moved, done.dead_lettered), (5_999, 1));
    assert_eq!(raw(&mut client), 5_999);
    for rollup in ["metrics_1m", "metrics_1h"] {
        let (entries, calls): (i64, i64) = client
            .query_one(
                &format!(
                    "SELECT sum(entries)::bigint, sum(calls)::bigint FROM {rollup}
                     WHERE func_name = 'reliability::parts'"
                ),
                &[],
            )
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert_eq!((entries, calls), (5_999, 5_999), "{rollup}");
    }
    let mut queue = RedisQueue::connect(&redis.url(), RedisOptions::default()).unwrap();
    assert_eq!(queue.pending_len().unwrap(), 0);
    let dead = queue.dead_letters(0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].entry().expect("the refused entry").id, refused_id);
}

#[measured(name = "reliability::two_writers")]
fn two_writers(i: u64) -> Result<(), ()> {
    if i.is_multiple_of(9) {
        Err(())
    } else {
        Ok(())
    }
}

#[test]
fn the_flusher_s_stage_2_over_two_connections_stores_every_entry_once() {
    support::own_process!();
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let flusher = pipeline(&redis, &postgres)
        .batch_size(20_000)
        .writers(2)
        .start()
        .unwrap();
    for i in 0..9_000 {
        let _ = two_writers(i);
    }
    flusher.flush().unwrap();
    assert_eq!(postgres.raw_rows_of("reliability::two_writers"), 9_000);
    let (calls, errors): (i64, i64) = postgres
        .client()
        .query_one(
            "SELECT sum(calls)::bigint, sum(errors)::bigint FROM metrics_1m
             WHERE func_name = 'reliability::two_writers'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((calls, errors), (9_000, 1_000));
    assert_eq!(flusher.stats().entries_drained, 9_000);
}

/// A drainer told to write over two connections, as a role allowed one: the part that cannot
/// have its connection goes on the first one, and every entry arrives once.
#[test]
fn a_second_connection_that_cannot_be_had_slows_the_drain_but_loses_nothing() {
    use fnmetrics::redis::RedisSink;
    use fnmetrics::sink::{FlushBatch, IdGen, Sink};
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    // The schema first, as the owner; then a role that may hold one connection.
    drop(PostgresSink::connect(&postgres.url(), PostgresOptions::default()).unwrap());
    postgres
        .client()
        .batch_execute(
            "CREATE ROLE drainer LOGIN CONNECTION LIMIT 1;
             GRANT USAGE, CREATE ON SCHEMA public TO drainer;
             GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO drainer;
             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE ON TABLES TO drainer;",
        )
        .unwrap();
    let url = format!("postgres://drainer@127.0.0.1:{}/fnmetrics", postgres.port());
    let mut drainer = connect_drainer(&redis.url(), &url)
        .unwrap()
        .writers(2)
        .maintain_every(None);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let mut ids = IdGen::with_instance(6);
    let entries = entries_at(
        &mut ids,
        "reliability::limited",
        4_000,
        now - 60_000_000,
        &[],
    );
    RedisSink::connect(&redis.url(), RedisOptions::default())
        .unwrap()
        .write(&FlushBatch {
            flush_id: ids.next_id(0),
            entries,
            aggregates: Vec::new(),
        })
        .unwrap();
    let done = drainer.drain_once().unwrap();
    assert_eq!(done.moved, 4_000);
    assert_eq!(postgres.raw_rows_of("reliability::limited"), 4_000);
}

/// A drainer from the Redis at `redis` into the PostgreSQL at `postgres`, both with default
/// options, connected.
fn connect_drainer(redis: &str, postgres: &str) -> Result<Drainer, fnmetrics::Error> {
    Drainer::connect(
        fnmetrics::redis::RedisQueue::new(redis, RedisOptions::default())?,
        fnmetrics::postgres::PostgresSink::new(postgres, PostgresOptions::default())?,
    )
}
