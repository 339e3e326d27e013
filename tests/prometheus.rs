//! `fnmetrics::prometheus` against a real Prometheus (the Debian package `prometheus`): what it
//! scrapes from `serve` is exact, `histogram_quantile` lands in the right bucket, and
//! `promtool check metrics` accepts what `render` writes.

#![cfg(feature = "prometheus")]

use fnmetrics::measured;
use fnmetrics::prometheus::{self, LE_NANOS};
use fnmetrics::Snapshot;
use fnmetrics_test_support::prometheus::{check_metrics, http_get_full, PrometheusServer};
use std::time::{Duration, Instant};

/// How long Prometheus may take to show what the endpoint serves (it scrapes every second).
const WAIT: Duration = Duration::from_secs(15);

#[measured(name = "prom::work")]
fn work(i: u64) -> Result<u64, String> {
    if i.is_multiple_of(3) {
        Err(format!("{i} is a multiple of 3"))
    } else {
        Ok(i)
    }
}

/// Spins for about 300 µs: calls whose times sit in one power-of-two bucket, mostly.
#[measured(name = "prom::slow")]
fn slow() {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(300) {
        std::hint::spin_loop();
    }
}

#[measured(name = "prom::checked \"quoted\" \\ name")]
fn oddly_named() {}

#[test]
fn prometheus_scrapes_the_exact_counts_and_its_quantile_lands_in_the_right_bucket() {
    for i in 0..300 {
        let _ = work(i);
    }
    for _ in 0..100 {
        slow();
    }
    let server = prometheus::serve("127.0.0.1:0").expect("serve");
    let prom = PrometheusServer::start(server.local_addr());

    prom.wait_for_value(
        r#"fnmetrics_calls_total{function="prom::work"}"#,
        300.0,
        WAIT,
    );
    assert_eq!(
        prom.value(r#"fnmetrics_errors_total{function="prom::work"}"#),
        Some(100.0)
    );
    assert_eq!(
        prom.value(r#"fnmetrics_duration_seconds_count{function="prom::work"}"#),
        Some(300.0)
    );
    assert_eq!(
        prom.value(r#"fnmetrics_panics_total{function="prom::work"}"#),
        Some(0.0)
    );

    // The bucket (between two `le` bounds) that holds the local median: Prometheus'
    // interpolated median must fall inside it.
    let local = fnmetrics::get("prom::slow").unwrap();
    let p50 = local.quantile(0.5).as_nanos() as u64;
    let upper = *LE_NANOS.iter().find(|&&b| b > p50).unwrap();
    let lower = upper / 2;
    let expr =
        r#"histogram_quantile(0.5, fnmetrics_duration_seconds_bucket{function="prom::slow"})"#;
    prom.wait_for_value(
        r#"fnmetrics_duration_seconds_count{function="prom::slow"}"#,
        100.0,
        WAIT,
    );
    let got = prom.value(expr).expect("a quantile");
    assert!(
        lower as f64 / 1e9 <= got && got <= upper as f64 / 1e9,
        "histogram_quantile {got}s is not in [{lower}, {upper}] ns, where the local p50 {p50} ns is"
    );
}

#[test]
fn promtool_accepts_what_render_writes() {
    oddly_named();
    let text = prometheus::render();
    assert!(
        text.contains(r#"fnmetrics_calls_total{function="prom::checked \"quoted\" \\ name"}"#),
        "{text}"
    );
    check_metrics(&text).unwrap();

    // A line feed in a name, an empty set, and a histogram from every range.
    let mut s = Snapshot::new("line\nfeed");
    for ns in [0, 1, 999, 1_024, 1_000_000, 3_600_000_000_000, u64::MAX] {
        s.record(ns, ns > 1_000);
    }
    let text = prometheus::render_snapshots(&[s, Snapshot::new("empty")]);
    assert!(text.contains(r#"function="line\nfeed""#), "{text}");
    check_metrics(&text).unwrap();
    check_metrics(&prometheus::render_snapshots(&[])).unwrap();
}

#[test]
fn the_endpoint_answers_get_metrics_only_and_stops_when_dropped() {
    let server = prometheus::serve("127.0.0.1:0").expect("serve");
    let addr = server.local_addr();
    let (status, headers, body) = http_get_full(addr, "/metrics?x=1").unwrap();
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|h| h
                .eq_ignore_ascii_case("content-type: text/plain; version=0.0.4; charset=utf-8")),
        "{headers:?}"
    );
    assert!(body.contains("# TYPE fnmetrics_duration_seconds histogram"));
    assert_eq!(http_get_full(addr, "/").unwrap().0, 404);
    assert_eq!(http_get_full(addr, "/metricsx").unwrap().0, 404);

    // The thread is named (Linux truncates names to 15 bytes).
    let named = std::fs::read_dir("/proc/self/task").unwrap().any(|t| {
        std::fs::read_to_string(t.unwrap().path().join("comm"))
            .is_ok_and(|c| c.trim() == "fnmetrics-prome")
    });
    assert!(named, "no thread named fnmetrics-prometheus");

    // Another server on the same address is refused while this one runs.
    let err = prometheus::serve(addr).unwrap_err();
    assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);

    drop(server);
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn a_failing_scrape_is_answered_with_503_and_the_next_one_is_tried_again() {
    let mut fail = true;
    let server = prometheus::serve_with(
        "127.0.0.1:0",
        Box::new(move || {
            fail = !fail;
            if !fail {
                Err("Redis is down".into())
            } else {
                Ok(prometheus::render_snapshots(&[]))
            }
        }),
    )
    .unwrap();
    let (status, _, body) = http_get_full(server.local_addr(), "/metrics").unwrap();
    assert_eq!(
        (status, body.trim()),
        (503, "cannot collect the metrics: Redis is down")
    );
    assert_eq!(
        http_get_full(server.local_addr(), "/metrics").unwrap().0,
        200
    );
}
