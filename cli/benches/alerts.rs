//! The alert evaluator, as the real `fnmetrics alerts run` process:
//! - latency: from the first failing call to the webhook's notification, against the issue's
//!   bound (flush interval + evaluation interval + `for` + 1 s), with `for = "0s"`;
//! - cost: the evaluator's CPU (user + system, from /proc) while it evaluates 20 rules over
//!   10 000 functions every second, as a share of one core (goal < 5 %).
//!
//! `cargo bench -p fnmetrics-cli --bench alerts`. Starts its own throw-away servers.

use fnmetrics::{measured, Flusher};
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use fnmetrics_test_support::webhook::Webhook;
use fnmetrics_test_support::TempDir;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FLUSH: Duration = Duration::from_millis(100);
const EVAL: Duration = Duration::from_millis(100);

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

    // Cost: 10 000 functions, 20 rules, every second.
    let mut c = redis.client();
    let mut pipe = redis::pipe();
    for i in 0..10_000u64 {
        let name = format!("bench::fleet::f{i:05}");
        pipe.cmd("HSET")
            .arg(format!("app:metrics:{name}"))
            .arg("calls")
            .arg(1_000 + i)
            .arg("errors")
            .arg(i % 7)
            .arg("b300")
            .arg(1_000 + i)
            .ignore();
        pipe.cmd("SADD")
            .arg("fnmetrics:functions")
            .arg(&name)
            .ignore();
    }
    let () = pipe.query(&mut c).unwrap();
    let metrics = [
        "error_rate > 0.5",
        "calls_per_s < 0.01",
        "p99 > 1s",
        "errors > 100",
    ];
    let mut many = String::new();
    for r in 0..20 {
        many.push_str(&format!(
            "[[rule]]\nname = \"r{r}\"\nfunctions = \"bench::fleet::*\"\nwhen = \"{}\"\n\
             window = \"1m\"\nseverity = \"page\"\n",
            metrics[r % metrics.len()]
        ));
    }
    many.push_str(&format!(
        "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n",
        hook.url()
    ));
    let rules = dir.path().join("many.toml");
    std::fs::write(&rules, many).unwrap();
    let mut ev = evaluator(&rules, &redis.url(), &pg.url(), "1s");
    let (c0, t0) = (cpu(ev.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let (c1, t1) = (cpu(ev.id()), Instant::now());
    let _ = ev.kill();
    let _ = ev.wait();
    let share = (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64();

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
        "  CPU, 20 rules x 10 000 functions every 1 s   {:>8.1} % of a core (goal < 5)",
        share * 100.0
    );
}
