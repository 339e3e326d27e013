//! `fnmetrics serve --prometheus`: a real Prometheus scrapes the fleet-wide aggregates a real
//! flusher wrote to Redis, exactly, and sees new flushes on later scrapes.

use crate::{fnmetrics, kill, record, text, wait_exit, WAIT};
use fnmetrics::measured;
use fnmetrics::prometheus::LE_NANOS;
use fnmetrics_test_support::prometheus::{check_metrics, http_get_full, PrometheusServer};
use fnmetrics_test_support::redis::RedisServer;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// How long Prometheus may take to show what the endpoint serves (it scrapes every second).
const SCRAPED: Duration = Duration::from_secs(15);

#[measured(name = "serve::work")]
fn work(i: u64) -> Result<(), ()> {
    if i.is_multiple_of(4) {
        Err(())
    } else {
        Ok(())
    }
}

#[measured(name = "serve::slow")]
fn slow() {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(300) {
        std::hint::spin_loop();
    }
}

#[test]
fn prometheus_scrapes_the_fleet_from_redis_exactly_and_stops_on_sigterm() {
    fnmetrics_test_support::own_process!();
    let mut redis = RedisServer::start();
    let url = redis.url();
    record(&redis, None, || {
        for i in 0..400 {
            let _ = work(i);
        }
        for _ in 0..50 {
            slow();
        }
    });

    let (mut child, addr) = serve(&["--redis", &url, "--fn", "serve::*", "--timeout", "2s"]);

    let (status, headers, body) = http_get_full(addr, "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        headers.iter().any(|h| h.contains("version=0.0.4")),
        "{headers:?}"
    );
    assert!(
        body.contains(r#"fnmetrics_calls_total{function="serve::work"} 400"#),
        "{body}"
    );
    assert!(!body.contains("top::"), "only --fn's functions: {body}");
    check_metrics(&body).unwrap();
    assert_eq!(http_get_full(addr, "/other").unwrap().0, 404);

    let prom = PrometheusServer::start(addr);
    prom.wait_for_value(
        r#"fnmetrics_calls_total{function="serve::work"}"#,
        400.0,
        SCRAPED,
    );
    assert_eq!(
        prom.value(r#"fnmetrics_errors_total{function="serve::work"}"#),
        Some(100.0)
    );
    prom.wait_for_value(
        r#"fnmetrics_duration_seconds_count{function="serve::slow"}"#,
        50.0,
        SCRAPED,
    );
    let p50 = {
        let mut reader = fnmetrics::redis::RedisReader::connect(&url, Default::default()).unwrap();
        reader
            .get("serve::slow")
            .unwrap()
            .unwrap()
            .quantile(0.5)
            .as_nanos() as u64
    };
    let upper = *LE_NANOS.iter().find(|&&b| b > p50).unwrap();
    let got = prom
        .value(
            r#"histogram_quantile(0.5, fnmetrics_duration_seconds_bucket{function="serve::slow"})"#,
        )
        .expect("a quantile");
    assert!(
        (upper / 2) as f64 / 1e9 <= got && got <= upper as f64 / 1e9,
        "histogram_quantile {got}s is not in the bucket of the fleet p50 {p50} ns"
    );

    // Every scrape reads Redis again: a new flush shows up.
    record(&redis, None, || {
        for i in 0..40 {
            let _ = work(i);
        }
    });
    prom.wait_for_value(
        r#"fnmetrics_calls_total{function="serve::work"}"#,
        440.0,
        SCRAPED,
    );

    // Redis gone: the scrape is answered 503, saying why; back: 200 again.
    redis.stop();
    let (status, _, body) = http_get_full(addr, "/metrics").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cannot read aggregates"), "{body}");
    redis.restart();
    let deadline = Instant::now() + WAIT;
    while http_get_full(addr, "/metrics").unwrap().0 != 200 {
        assert!(Instant::now() < deadline, "no 200 after Redis came back");
        std::thread::sleep(Duration::from_millis(50));
    }

    kill(child.id(), "TERM");
    let st = wait_exit(&mut child, WAIT);
    let mut err = Vec::new();
    std::io::Read::read_to_end(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(st.code(), Some(0), "{}", text(&err));
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn serve_without_an_address_or_on_a_taken_one_fails_saying_so() {
    let redis = RedisServer::start();
    let url = redis.url();
    crate::expect(2, &["serve", "--redis", &url]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = crate::run(&["serve", "--redis", &url, "--prometheus", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

/// A regression test: one hash that did not decode failed every scrape (and the start).
#[test]
fn a_scrape_shows_the_fleet_while_a_hash_does_not_decode() {
    let redis = RedisServer::start();
    crate::top::seed_a_good_and_a_bad_hash(&redis);
    let (mut child, addr) = serve(&["--redis", &redis.url()]);
    let (status, _, body) = http_get_full(addr, "/metrics").unwrap();
    kill(child.id(), "TERM");
    assert_eq!(wait_exit(&mut child, WAIT).code(), Some(0));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#"fnmetrics_calls_total{function="fleet::good"} 7"#),
        "{body}"
    );
    assert!(!body.contains("fleet::bad"), "{body}");
    check_metrics(&body).unwrap();
}

/// Starts `fnmetrics serve --prometheus 127.0.0.1:0` with `args`, and reads the address it
/// listens on from its first line (on failure, the child is killed and its stderr shown).
fn serve(args: &[&str]) -> (Child, SocketAddr) {
    let mut child = fnmetrics()
        .args(["serve", "--prometheus", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr: Option<SocketAddr> = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok());
    let Some(addr) = addr else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("no address in {first:?}: {}", text(&out.stderr));
    };
    (child, addr)
}
