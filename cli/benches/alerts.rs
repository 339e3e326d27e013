//! The alert evaluator, as the real `fnmetrics alerts run` process:
//! - latency: from the first failing call to the webhook's notification, against the issue's
//!   bound (flush interval + evaluation interval + `for` + 1 s), with `for = "0s"`;
//! - cost: the evaluator's CPU (user + system, from /proc) while it evaluates 20 rules over
//!   10 000 functions every second, as a share of one core (goal < 5 %), with none, a tenth and
//!   all of the functions flushed anew each second (real flushes, from a thread here).
//!
//! `cargo bench -p fnmetrics-cli --bench alerts`. Starts its own throw-away servers.

use fnmetrics::redis::{RedisOptions, RedisSink};
use fnmetrics::sink::FlushBatch;
use fnmetrics::{measured, Flusher, Snapshot};
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use fnmetrics_test_support::webhook::Webhook;
use fnmetrics_test_support::TempDir;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLUSH: Duration = Duration::from_millis(100);
const EVAL: Duration = Duration::from_millis(100);
const FUNCTIONS: usize = 10_000;

/// Flushes aggregates for `n` of `names` from `from` on (wrapping): 20 calls each, a few of
/// them failing, over a spread of call times (seeded by `round`).
fn flush_some(sink: &mut RedisSink, names: &[String], from: usize, n: usize, round: u64) {
    let aggregates = (0..n)
        .map(|k| {
            let i = (from + k) % names.len();
            let mut s = Snapshot::new(&names[i]);
            for c in 0..20u64 {
                s.record(1_000 + (c * 7_919 + i as u64 + round) % 5_000_000, c == 0);
            }
            s
        })
        .collect();
    let mut flush_id = [0u8; 16];
    flush_id[..8].copy_from_slice(&round.to_le_bytes());
    flush_id[8..].copy_from_slice(&(from as u64 ^ 0x5eed).to_le_bytes());
    sink.write_batch(&FlushBatch {
        flush_id,
        entries: Vec::new(),
        aggregates,
    })
    .unwrap();
}

/// Stops an evaluator as an operator would (SIGTERM), and waits for it.
fn stop_process(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[measured(name = "bench::alerts::pay")]
fn pay(fail: bool) -> Result<(), ()> {
    if fail {
        Err(())
    } else {
        Ok(())
    }
}

/// An evaluator process, returned once it has its first reading.
fn evaluator(rules: &std::path::Path, redis: &str, pg: &str, interval: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fnmetrics"))
        .args(["alerts", "run", "--interval", interval, "--rules"])
        .arg(rules)
        .args(["--redis", redis, "--postgres", pg])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("alerts run starts");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.contains("evaluating"), "{first}");
    std::thread::spawn(move || for _ in err.lines().map_while(Result::ok) {});
    child
}

/// User + system CPU time of a process so far (Linux, /proc).
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime), in clock ticks; 11 and 12 after the name.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = 100; // sysconf(_SC_CLK_TCK) on Linux
    Duration::from_millis(ticks * 1000 / hz)
}

/// A process's resident memory (Linux, /proc), MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "alerts".contains(f.as_str())) {
        return;
    }
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    let dir = TempDir::new("bench-alerts");
    let hook = Webhook::start();

    // Latency: one rule, for = 0s.
    let rules = dir.path().join("one.toml");
    std::fs::write(
        &rules,
        format!(
            "[[rule]]\nname = \"pay\"\nfunctions = \"bench::alerts::pay\"\n\
             when = \"errors > 0\"\nwindow = \"5s\"\nseverity = \"page\"\n\
             [[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url()
        ),
    )
    .unwrap();
    let flusher = Flusher::builder()
        .redis(redis.url())
        .flush_interval(FLUSH)
        .on_error(|_| {})
        .start()
        .unwrap();
    let mut latencies = Vec::new();
    for round in 0..5 {
        let mut ev = evaluator(&rules, &redis.url(), &pg.url(), "100ms");
        let before = hook.bodies().len();
        let t = Instant::now();
        let _ = pay(true);
        while hook.bodies().len() == before {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "round {round}: no notification"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(t.elapsed());
        let _ = ev.kill();
        let _ = ev.wait();
        // The next round's alert is a new episode.
        pg.client()
            .batch_execute("DELETE FROM fnmetrics_alerts")
            .unwrap();
    }
    drop(flusher);
    latencies.sort();
    let bound = FLUSH + EVAL + Duration::from_secs(1);
    // The bound, for every round.
    assert!(
        latencies[4] <= bound,
        "first failing call -> webhook took {:?} (bound {bound:?})",
        latencies[4]
    );

    // Cost: 10 000 functions, 20 rules, every second, with none, a tenth or all of the
    // functions flushed anew each second (by real flushes: the change log is the flusher's).
    let mut sink = RedisSink::connect(&redis.url(), RedisOptions::default()).unwrap();
    let names: Vec<String> = (0..FUNCTIONS)
        .map(|i| format!("bench::fleet::f{i:05}"))
        .collect();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut redis.client())
        .unwrap();
    flush_some(&mut sink, &names, 0, FUNCTIONS, 0);
    flush_some(&mut sink, &names, 0, FUNCTIONS, 1);
    // What the change log costs a flush, in Redis: its ZADD and INCR, of the flush script.
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.client())
        .unwrap();
    let usec = |cmd: &str| -> f64 {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .and_then(|l| l.split("usec=").nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let log_share = (usec("zadd") + usec("incr")) / usec("evalsha");
    let metrics = [
        ("bench::fleet::*", "error_rate > 0.5"),
        ("bench::fleet::*", "p99 > 1s"),
        ("bench::fleet::*", "errors > 100"),
        ("bench::fleet::*", "mean > 500ms"),
        ("bench::fleet::f0000*", "calls_per_s < 0.01"),
    ];
    let mut many = String::new();
    for r in 0..20 {
        let (functions, when) = metrics[r % metrics.len()];
        many.push_str(&format!(
            "[[rule]]\nname = \"r{r}\"\nfunctions = \"{functions}\"\nwhen = \"{when}\"\n\
             window = \"1m\"\nseverity = \"page\"\n"
        ));
    }
    many.push_str(&format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url()
    ));
    let rules = dir.path().join("many.toml");
    std::fs::write(&rules, many).unwrap();
    let mut shares = Vec::new();
    for changing in [0, FUNCTIONS / 10, FUNCTIONS] {
        let ev = evaluator(&rules, &redis.url(), &pg.url(), "1s");
        let stop = Arc::new(AtomicBool::new(false));
        let producer = {
            let (stop, names, url) = (Arc::clone(&stop), names.clone(), redis.url());
            std::thread::spawn(move || {
                let mut sink = RedisSink::connect(&url, RedisOptions::default()).unwrap();
                let (mut from, mut round) = (0, 1);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if changing > 0 {
                        flush_some(&mut sink, &names, from, changing, round);
                        from = (from + changing) % names.len();
                        round += 1;
                    }
                    std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
                }
            })
        };
        // Past the start and a whole window (the rules' 1m), so that the evaluator holds all
        // it will: what it costs from then on.
        std::thread::sleep(Duration::from_secs(65));
        let (c0, t0) = (cpu(ev.id()), Instant::now());
        std::thread::sleep(Duration::from_secs(10));
        let (c1, t1) = (cpu(ev.id()), Instant::now());
        let rss = rss_mib(ev.id());
        stop.store(true, Ordering::Relaxed);
        producer.join().unwrap();
        stop_process(ev);
        let share = (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64();
        shares.push((changing, share, rss));
    }

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\nalerts: the real `fnmetrics alerts run`");
    println!(
        "  first failing call -> webhook, median of 5   {:>8.0} ms (max {:.0}; bound flush {} + eval {} + for 0 + 1 s = {:.0} ms)",
        ms(latencies[2]),
        ms(latencies[4]),
        ms(FLUSH),
        ms(EVAL),
        ms(bound)
    );
    println!(
        "  change log: ZADD + INCR, of the flush script's time in Redis (2 flushes of {FUNCTIONS} functions) {:>5.1} %",
        log_share * 100.0
    );
    for (changing, share, rss) in shares {
        println!(
            "  CPU, 20 rules x {FUNCTIONS} functions every 1 s, {changing:>5} flushed a second {:>6.1} % of a core (goal < 5), resident {rss:.0} MiB",
            share * 100.0
        );
    }
}
