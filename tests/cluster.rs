//! The whole pipeline over a real, throw-away Redis Cluster (3 primaries, a replica each):
//! `#[measured]` calls flushed into hash-tagged shards spread over every primary, drained by the
//! flusher's stage 2 and two more drainers at once, with exact counts in PostgreSQL, in both
//! rollups and in the fleet's aggregates; then a primary killed mid-run and its replica promoted,
//! and still every call once.
#![cfg(all(feature = "redis", feature = "postgres"))]

use fnmetrics_test_support as support;

use fnmetrics::postgres::PostgresOptions;
use fnmetrics::redis::{RedisOptions, RedisQueue, RedisReader};
use fnmetrics::{measured, Drainer, Flusher};
use std::time::Duration;
use support::postgres::PostgresServer;
use support::redis_cluster::RedisCluster;
use support::wait_until;

const WAIT: Duration = Duration::from_secs(120);

#[measured(name = "cluster::work")]
fn work(i: u64) -> Result<u64, ()> {
    if i.is_multiple_of(10) {
        Err(())
    } else {
        Ok(i)
    }
}

fn rollup_calls(postgres: &PostgresServer, name: &str) -> (i64, i64) {
    let mut c = postgres.client();
    let one = |c: &mut postgres::Client, t: &str| -> i64 {
        c.query_one(
            &format!("SELECT coalesce(sum(calls), 0)::bigint FROM {t} WHERE func_name = $1"),
            &[&name],
        )
        .unwrap()
        .get(0)
    };
    (one(&mut c, "metrics_1m"), one(&mut c, "metrics_1h"))
}

#[test]
fn every_call_lands_once_across_shards_drainers_and_a_failover() {
    support::own_process!();
    let mut cluster = RedisCluster::start(3, 1);
    let postgres = PostgresServer::start();
    let urls = cluster.urls();
    let flusher = Flusher::builder()
        .redis(urls[0].clone())
        .postgres(postgres.url())
        .batch_size(500)
        .flush_interval(Duration::from_millis(50))
        .backoff(Duration::from_millis(10), Duration::from_millis(200))
        .on_error(|_| {})
        .start()
        .expect("the flusher starts on a cluster");
    // Two more drainers, entering through other nodes, drain at the same time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drainers: Vec<_> = [urls[1].clone(), urls[2].clone()]
        .into_iter()
        .map(|url| {
            let (stop, pg) = (stop.clone(), postgres.url());
            std::thread::spawn(move || {
                let mut d = fnmetrics::redis::RedisQueue::new(&url, RedisOptions::default())
                    .and_then(|q| {
                        Ok(Drainer::new(
                            q,
                            fnmetrics::postgres::PostgresSink::new(&pg, Default::default())?,
                        ))
                    })
                    .unwrap()
                    .claim_size(700)
                    .lease(Duration::from_secs(5))
                    .maintain_every(None);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match d.drain_once() {
                        Ok(o) if o.is_idle() => std::thread::sleep(Duration::from_millis(20)),
                        Ok(_) => {}
                        Err(_) => {
                            let _ = d.hand_back();
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
        })
        .collect();

    for i in 0..20_000 {
        let _ = work(i);
    }
    flusher.flush().unwrap();
    // A primary dies; its replica takes over; calls go on.
    let victim = cluster.masters()[1].port;
    cluster.kill(victim);
    for i in 20_000..30_000 {
        let _ = work(i);
    }
    wait_until("stage 1 to deliver after the failover", WAIT, || {
        flusher.flush().is_ok()
    });

    // Readers enter through a node that still runs.
    let alive = urls
        .iter()
        .find(|u| !u.contains(&format!(":{victim}/")))
        .unwrap()
        .clone();
    wait_until("every call in PostgreSQL", WAIT, || {
        postgres.raw_rows_of("cluster::work") >= 30_000
    });
    let mut queue = RedisQueue::connect(&alive, RedisOptions::default()).unwrap();
    wait_until("nothing waiting in Redis", WAIT, || {
        queue.pending_len().unwrap_or(1) == 0
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for d in drainers {
        d.join().unwrap();
    }
    drop(flusher);
    assert_eq!(postgres.raw_rows_of("cluster::work"), 30_000);
    assert_eq!(rollup_calls(&postgres, "cluster::work"), (30_000, 30_000));
    let fleet = RedisReader::connect(&alive, RedisOptions::default())
        .unwrap()
        .get("cluster::work")
        .unwrap()
        .expect("aggregates");
    assert_eq!((fleet.calls, fleet.errors), (30_000, 3_000));
}

/// A drainer with three lanes drains the shards of every primary at once, every entry once.
#[test]
fn lanes_drain_the_shards_in_parallel_every_entry_once() {
    use fnmetrics::redis::RedisSink;
    use fnmetrics::sink::{EntryRecord, FlushBatch, IdGen, Sink};
    let cluster = RedisCluster::start(3, 0);
    let postgres = PostgresServer::start();
    let mut sink = RedisSink::connect(&cluster.url(), RedisOptions::default()).unwrap();
    let mut ids = IdGen::with_instance(12);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let name: std::sync::Arc<str> = "cluster::lanes".into();
    for f in 0..40u64 {
        let entries = (0..500)
            .map(|i| EntryRecord {
                id: ids.next_id((now / 1000) as u64),
                func_name: name.clone(),
                execution_time: Duration::from_micros(10 + i),
                error_occurred: false,
                created_at_micros: now - 1_000_000 + i as i64,
                weight: 1,
                source: Default::default(),
            })
            .collect();
        let mut flush_id = ids.next_id(f);
        flush_id[..8].copy_from_slice(&f.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        sink.write(&FlushBatch {
            flush_id,
            entries,
            aggregates: Vec::new(),
        })
        .unwrap();
    }
    let mut drainer = connect_drainer(&cluster.urls()[1], &postgres.url())
        .unwrap()
        .lanes(3)
        .claim_size(1_000)
        .maintain_every(None);
    let done = drainer.drain_all().unwrap();
    assert_eq!(done.moved, 20_000);
    assert_eq!(postgres.raw_rows_of("cluster::lanes"), 20_000);
    let mut queue = RedisQueue::connect(&cluster.url(), RedisOptions::default()).unwrap();
    assert_eq!(queue.pending_len().unwrap(), 0);
}

/// Slots moved from one primary to another (keys and all) while a flusher writes and drains:
/// every call once.
#[test]
fn a_reshard_mid_run_loses_and_doubles_nothing() {
    support::own_process!();
    let cluster = RedisCluster::start(3, 0);
    let postgres = PostgresServer::start();
    let flusher = Flusher::builder()
        .redis(cluster.url())
        .postgres(postgres.url())
        .batch_size(300)
        .flush_interval(Duration::from_millis(20))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .on_error(|_| {})
        .start()
        .expect("the flusher starts");
    let masters = cluster.masters();
    let reshard = cluster.start_reshard(&masters[0].id, &masters[1].id, 3_000);
    let mut i = 0u64;
    // Calls all through the reshard, and some after.
    let mut reshard = Some(reshard);
    while reshard
        .as_mut()
        .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
        || i < 20_000
    {
        let _ = resharded(i);
        i += 1;
        if i.is_multiple_of(1_000) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    cluster.finish_reshard(reshard.take().unwrap());
    for _ in 0..5_000 {
        let _ = resharded(i);
        i += 1;
    }
    wait_until("stage 1 to deliver after the reshard", WAIT, || {
        flusher.flush().is_ok()
    });
    wait_until("every call in PostgreSQL", WAIT, || {
        postgres.raw_rows_of("cluster::resharded") >= i
    });
    drop(flusher);
    assert_eq!(postgres.raw_rows_of("cluster::resharded"), i);
    let fleet = RedisReader::connect(&cluster.url(), RedisOptions::default())
        .unwrap()
        .get("cluster::resharded")
        .unwrap()
        .expect("aggregates");
    assert_eq!(fleet.calls, i);
    // The slots did move.
    let moved = cluster.masters();
    let owned = |id: &str| -> u32 {
        moved
            .iter()
            .filter(|m| m.id == id)
            .flat_map(|m| &m.slots)
            .map(|&(a, b)| u32::from(b - a) + 1)
            .sum()
    };
    assert!(owned(&masters[1].id) >= 5_461 + 3_000, "{moved:?}");
}

#[measured(name = "cluster::resharded")]
fn resharded(i: u64) -> u64 {
    i
}

#[measured(name = "cluster::produced")]
fn produced(i: u64) -> Result<u64, ()> {
    if i.is_multiple_of(7) {
        Err(())
    } else {
        Ok(i)
    }
}

const PRODUCED: u64 = 20_000;

/// Run by `several_processes_flush_and_drain_through_different_nodes` in child processes.
#[test]
#[ignore = "a child process of another test"]
fn producer_child() {
    let Some((redis, postgres)) = support::child_servers() else {
        return;
    };
    let flusher = Flusher::builder()
        .redis(redis)
        .postgres(postgres)
        .batch_size(1_000)
        .flush_interval(Duration::from_millis(30))
        .backoff(Duration::from_millis(10), Duration::from_millis(200))
        .on_error(|_| {})
        .start()
        .unwrap();
    for i in 0..PRODUCED {
        let _ = produced(i);
    }
    flusher.flush().unwrap();
}

/// Three processes, each entering the cluster through another node, flush and drain at once:
/// every call once in PostgreSQL and in the fleet's aggregates.
#[test]
fn several_processes_flush_and_drain_through_different_nodes() {
    let cluster = RedisCluster::start(3, 0);
    let postgres = PostgresServer::start();
    let urls = cluster.urls();
    let children: Vec<_> = urls
        .iter()
        .take(3)
        .map(|url| {
            support::child_test("producer_child", url, &postgres.url())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a producer failed");
    }
    let mut d = connect_drainer(&urls[1], &postgres.url())
        .unwrap()
        .maintain_every(None);
    wait_until("every call in PostgreSQL", WAIT, || {
        let _ = d.drain_all();
        postgres.raw_rows_of("cluster::produced") == 3 * PRODUCED
    });
    let fleet = RedisReader::connect(&urls[2], RedisOptions::default())
        .unwrap()
        .get("cluster::produced")
        .unwrap()
        .expect("aggregates");
    assert_eq!(fleet.calls, 3 * PRODUCED);
    assert_eq!(fleet.errors, 3 * PRODUCED.div_ceil(7));
}

/// Settings a cluster cannot take fail `start()` at once, naming the cluster.
#[test]
fn start_fails_at_once_on_settings_a_cluster_cannot_take() {
    support::own_process!();
    let cluster = RedisCluster::start(3, 0);
    let started = Flusher::builder()
        .redis(cluster.url())
        .key_prefix("{shop}:")
        .run_drain(false)
        .on_error(|_| {})
        .start();
    let e = started.expect_err("start() refuses a braced prefix on a cluster");
    assert_eq!(e.kind(), fnmetrics::ErrorKind::InvalidConfig, "{e}");
    assert!(e.to_string().contains("Redis Cluster"), "{e}");
}

/// A drainer from the Redis at `redis` into the PostgreSQL at `postgres`, both with default
/// options, connected.
fn connect_drainer(redis: &str, postgres: &str) -> Result<Drainer, fnmetrics::Error> {
    Drainer::connect(
        fnmetrics::redis::RedisQueue::new(redis, RedisOptions::default())?,
        fnmetrics::postgres::PostgresSink::new(postgres, PostgresOptions::default())?,
    )
}
