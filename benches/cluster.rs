//! Redis Cluster against one Redis, in one run on this machine (every node on its 2 cores):
//! stage 1 (flushes into Redis) into one `redis-server` and into a 3-primary cluster (goal:
//! ≥ 0.8× the single server), and stage 2 draining the cluster with one lane and with one lane
//! a primary (the shards of different primaries drained in parallel).
//!
//! `cargo bench --bench cluster`. Starts its own throw-away servers (the test fixture).

use fnmetrics::postgres::PostgresOptions;
use fnmetrics::redis::{RedisOptions, RedisSink};
use fnmetrics::sink::{EntryRecord, FlushBatch, IdGen, Sink, Source};
use fnmetrics::{Drainer, Snapshot};
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use fnmetrics_test_support::redis_cluster::RedisCluster;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Entries written by stage 1 in each run; flushes of `FLUSH`.
const STAGE1: usize = 1_000_000;
const FLUSH: usize = 10_000;
/// Entries drained by stage 2 in each run.
const STAGE2: usize = 200_000;
const ROUNDS: usize = 3;

/// Flushes of `FLUSH` entries (20 functions) and one aggregate each, `total` entries in all.
fn flushes(ids: &mut IdGen, total: usize) -> Vec<FlushBatch> {
    let names: Vec<Arc<str>> = (0..20)
        .map(|i| format!("bench::cluster::f{i:02}").into())
        .collect();
    let source = Arc::new(Source::new("bench", "bench-host"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    (0..total / FLUSH)
        .map(|f| {
            let mut delta = Snapshot::new(&names[f % names.len()]);
            let entries = (0..FLUSH)
                .map(|i| {
                    let ns = 1_000 + (i as u64 * 7_919) % 5_000_000;
                    delta.record(ns, i % 13 == 0);
                    EntryRecord {
                        id: ids.next_id((now / 1000) as u64),
                        func_name: names[i % names.len()].clone(),
                        execution_time: Duration::from_nanos(ns),
                        error_occurred: i % 13 == 0,
                        created_at_micros: now + (f * FLUSH + i) as i64,
                        weight: 1,
                        source: source.clone(),
                    }
                })
                .collect();
            FlushBatch {
                // Random ids spread flushes over the shards.
                flush_id: fnmetrics::sink::new_flush_id(),
                entries,
                aggregates: vec![delta],
            }
        })
        .collect()
}

/// Entries a second of `write` of `work` into `url` (fresh flush ids each round), best of
/// `ROUNDS`.
fn stage1(url: &str, work: &[FlushBatch]) -> f64 {
    let mut sink = RedisSink::connect(url, RedisOptions::default()).expect("connect");
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for b in work {
            let b = FlushBatch {
                flush_id: fnmetrics::sink::new_flush_id(),
                ..b.clone()
            };
            sink.write(&b).expect("stage 1");
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    (work.len() * FLUSH) as f64 / best
}

/// Rows a second that a drainer with `lanes` lanes moves from the cluster into `table`.
fn stage2(cluster: &RedisCluster, pg: &PostgresServer, table: &str, lanes: usize) -> f64 {
    // Nothing left from before: every primary emptied.
    for m in cluster.masters() {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", m.port))
            .and_then(|c| c.get_connection())
            .expect("a primary");
        redis::cmd("FLUSHALL")
            .query::<()>(&mut c)
            .expect("FLUSHALL");
    }
    let mut ids = IdGen::with_instance(7);
    let work = flushes(&mut ids, STAGE2);
    let mut sink = RedisSink::connect(&cluster.url(), RedisOptions::default()).expect("connect");
    for b in &work {
        sink.write(b).expect("fill");
    }
    let mut d = fnmetrics::redis::RedisQueue::new(&cluster.url(), RedisOptions::default())
        .and_then(|q| {
            Drainer::connect(
                q,
                fnmetrics::postgres::PostgresSink::new(
                    &pg.url(),
                    PostgresOptions::default().with_table(table),
                )?,
            )
        })
        .expect("drainer")
        .lanes(lanes)
        .claim_size(10_000)
        .maintain_every(None);
    let t = Instant::now();
    let moved = d.drain_all().expect("drain").moved;
    assert_eq!(moved as usize, STAGE2);
    STAGE2 as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "cluster".contains(f.as_str())) {
        return;
    }
    let mut ids = IdGen::with_instance(3);
    let work = flushes(&mut ids, STAGE1);
    let single = RedisServer::start();
    let cluster = RedisCluster::start(3, 0);
    // Alternating, so that both see the machine alike.
    let (mut one, mut three) = (0f64, 0f64);
    for _ in 0..2 {
        one = one.max(stage1(&single.url(), &work));
        three = three.max(stage1(&cluster.url(), &work));
    }
    drop(single);
    let pg = PostgresServer::start();
    let lanes1 = stage2(&cluster, &pg, "bench_lanes1", 1);
    let lanes3 = stage2(&cluster, &pg, "bench_lanes3", 3);

    println!(
        "\nRedis Cluster (3 primaries) against one Redis, {STAGE1} entries in flushes of {FLUSH}"
    );
    println!("  stage 1 into one Redis            {one:>12.0} entries/s");
    println!("  stage 1 into the cluster          {three:>12.0} entries/s");
    println!(
        "  ratio cluster / one Redis         {:>12.2}   (goal >= 0.8)",
        three / one
    );
    println!("  stage 2 from the cluster, 1 lane  {lanes1:>12.0} rows/s ({STAGE2} entries)");
    println!("  stage 2, 3 lanes (one a primary)  {lanes3:>12.0} rows/s");
    println!(
        "  ratio 3 lanes / 1 lane            {:>12.2}",
        lanes3 / lanes1
    );
}
