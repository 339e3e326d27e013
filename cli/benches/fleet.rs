//! The fleet views over 10 000 functions, as the real commands: one redraw of `fnmetrics top`
//! (`top --once`: a process that connects, reads every aggregate and prints the table; goal
//! < 200 ms) and one scrape of `fnmetrics serve --prometheus` (goal < 100 ms), against a
//! throw-away `redis-server` filled by a real flusher; medians of several rounds.
//!
//! `cargo bench -p fnmetrics-cli --bench fleet`.

use fnmetrics::__private::{Guard, Site};
use fnmetrics_test_support::redis::RedisServer;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FUNCTIONS: usize = 10_000;
const ROUNDS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fnmetrics() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fnmetrics"));
    c.env_remove("FNMETRICS_REDIS_URL")
        .env_remove("FNMETRICS_POSTGRES_URL");
    c
}

/// One HTTP GET of `/metrics`: the answer's bytes (read into a buffer made once, so that the
/// time is serve's and the network's, not this client's growing of a string).
fn scrape(addr: &str, out: &mut Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect to serve");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    out.clear();
    s.read_to_end(out).expect("the answer");
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "fleet".contains(f.as_str())) {
        return;
    }
    for i in 0..FUNCTIONS {
        let name: &'static str = Box::leak(format!("bench::fleet::f{i:05}").into_boxed_str());
        let site: &'static Site = Box::leak(Box::new(Site::new(name)));
        for spin in [0u64, 100, 1_000, (i as u64 % 7) * 3_000] {
            let g = Guard::start(site);
            for k in 0..spin {
                black_box(k);
            }
            g.finish(i % 10 == 0);
        }
    }
    let redis = RedisServer::start();
    {
        let flusher = fnmetrics::Flusher::builder()
            .redis(redis.url())
            .flush_interval(Duration::from_secs(3600))
            .start()
            .expect("flusher starts");
        flusher.flush().expect("flush");
    }
    let url = redis.url();

    // top: a whole process a redraw (more than the redraw of a running `top`).
    let mut top = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let out = fnmetrics()
            .args(["top", "--once", "--redis", &url])
            .output()
            .expect("top runs");
        top.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("bench::fleet::"))
            .count();
        assert_eq!(rows, FUNCTIONS);
    }

    // serve: one process, scraped again and again.
    let mut child = fnmetrics()
        .args(["serve", "--prometheus", "127.0.0.1:0", "--redis", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("serve says where it listens");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let mut serve = Vec::new();
    let mut answer = Vec::with_capacity(64 << 20);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        scrape(&addr, &mut answer);
        serve.push(t.elapsed());
        let body = String::from_utf8_lossy(&answer);
        assert!(
            body.starts_with("HTTP/1.1 200"),
            "{}",
            &body[..body.len().min(200)]
        );
        let series = body
            .lines()
            .filter(|l| l.starts_with("fnmetrics_calls_total{"))
            .count();
        assert_eq!(series, FUNCTIONS);
    }
    let _ = child.kill();
    let _ = child.wait();

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\nfleet views of {FUNCTIONS} functions in Redis (medians of {ROUNDS})");
    println!(
        "  fnmetrics top --once (a process, a redraw)   {:>7.1} ms   (goal < 200)",
        ms(median(top))
    );
    println!(
        "  fnmetrics serve --prometheus, a scrape       {:>7.1} ms   (goal < 100)",
        ms(median(serve))
    );
}
