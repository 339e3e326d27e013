//! The whole pipeline over a real, throw-away Redis Cluster (3 primaries, a replica each):
//! `#[measured]` calls flushed into hash-tagged shards spread over every primary, drained by the
//! flusher's stage 2 and two more drainers at once, with exact counts in PostgreSQL, in both
//! rollups and in the fleet's aggregates; then a primary killed mid-run and its replica promoted,
//! and still every call once.
#![cfg(all(feature = "redis", feature = "postgres"))]

use fnmetrics_test_support as support;

use fnmetrics::postgres::{PostgresOptions, PostgresSink};
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

fn pg_count(postgres: &PostgresServer, name: &str) -> u64 {
    PostgresSink::connect(&postgres.url(), PostgresOptions::default())
        .unwrap()
        .count_for(name)
        .unwrap()
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
                let mut d = Drainer::new(&url, RedisOptions::default(), &pg, Default::default())
                    .unwrap()
                    .batch_size(700)
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
        pg_count(&postgres, "cluster::work") >= 30_000
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
    assert_eq!(pg_count(&postgres, "cluster::work"), 30_000);
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
    let mut drainer = Drainer::connect(
        &cluster.urls()[1],
        RedisOptions::default(),
        &postgres.url(),
        PostgresOptions::default(),
    )
    .unwrap()
    .lanes(3)
    .batch_size(1_000)
    .maintain_every(None);
    let done = drainer.drain_all().unwrap();
    assert_eq!(done.moved, 20_000);
    assert_eq!(pg_count(&postgres, "cluster::lanes"), 20_000);
    let mut queue = RedisQueue::connect(&cluster.url(), RedisOptions::default()).unwrap();
    assert_eq!(queue.pending_len().unwrap(), 0);
}
