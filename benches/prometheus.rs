//! What the Prometheus exposition costs with 10 000 functions: `fnmetrics::prometheus::render()`
//! of this process's registry (goal < 100 ms), and the fleet read of `fnmetrics serve
//! --prometheus` (every function's aggregates from Redis with `RedisReader`, then
//! `render_snapshots`) against a throw-away `redis-server` filled by a real flusher (goal
//! < 100 ms for serve's scrape; `cargo bench -p fnmetrics-cli --bench fleet` times the whole
//! scrape over HTTP from the real binary).
//!
//! `cargo bench --bench prometheus`; prints one line a measurement (median of the rounds).

use fnmetrics::__private::{Guard, Site};
use fnmetrics::prometheus;
use fnmetrics::redis::{RedisOptions, RedisReader};
use fnmetrics_test_support::redis::RedisServer;
use std::hint::black_box;
use std::time::{Duration, Instant};

const FUNCTIONS: usize = 10_000;
const ROUNDS: usize = 11;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    let rounds = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    median(rounds)
}

fn main() {
    // 10 000 functions, each called a few times with calls of different lengths, so every
    // histogram has several buckets.
    let sites: Vec<&'static Site> = (0..FUNCTIONS)
        .map(|i| {
            let name: &'static str =
                Box::leak(format!("bench::prometheus::f{i:05}").into_boxed_str());
            &*Box::leak(Box::new(Site::new(name)))
        })
        .collect();
    for (i, site) in sites.iter().enumerate() {
        for spin in [0u64, 100, 1_000, (i as u64 % 7) * 3_000] {
            let g = Guard::start(site);
            for k in 0..spin {
                black_box(k);
            }
            g.finish(i % 10 == 0);
        }
    }

    let text = prometheus::render();
    let lines = text.lines().count();
    let d = time(prometheus::render);
    println!(
        "render() of {FUNCTIONS} functions: {:.1} ms ({lines} lines, {:.1} MB; goal < 100 ms)",
        d.as_secs_f64() * 1e3,
        text.len() as f64 / 1e6
    );
    let snapshots = fnmetrics::snapshot_all();
    let d = time(|| prometheus::render_snapshots(&snapshots));
    println!(
        "render_snapshots() of {FUNCTIONS} snapshots (no registry read): {:.1} ms",
        d.as_secs_f64() * 1e3
    );

    // The fleet: a real flusher writes the aggregates of these functions to Redis.
    let redis = RedisServer::start();
    {
        let flusher = fnmetrics::Flusher::builder()
            .redis(redis.url())
            .flush_interval(Duration::from_secs(3600))
            .start()
            .expect("flusher starts");
        flusher.flush().expect("flush");
    }
    let mut reader = RedisReader::connect(&redis.url(), RedisOptions::default()).expect("reader");
    // What `fnmetrics serve --prometheus` does on a scrape (cli/src/cmd/serve.rs, `fleet`).
    let read_fleet = |reader: &mut RedisReader| -> Vec<fnmetrics::Snapshot> {
        let names = reader.functions().expect("names");
        let all = reader.get_many(&names).expect("get_many");
        all.into_iter().flatten().collect()
    };
    let fleet = |reader: &mut RedisReader| {
        let all = read_fleet(reader);
        (all.len(), prometheus::render_snapshots(&all))
    };
    let (n, _) = fleet(&mut reader);
    assert!(n >= FUNCTIONS, "{n} functions in Redis");
    let read = time(|| read_fleet(&mut reader).len());
    let one_by_one = time(|| {
        let names = reader.functions().expect("names");
        names
            .iter()
            .filter_map(|n| reader.get(n).expect("get"))
            .count()
    });
    let d = time(|| fleet(&mut reader));
    println!(
        "fleet read + render of {n} functions from Redis: {:.1} ms (of which the read {:.1} ms; \
         goal < 100 ms)",
        d.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3
    );
    println!(
        "  (the same read with one HGETALL round trip a function: {:.1} ms)",
        one_by_one.as_secs_f64() * 1e3
    );
}
