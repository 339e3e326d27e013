//! `fnmetrics top`: totals once, or rates redrawn every interval.

use crate::{fnmetrics, kill, ok, record, wait_exit, WAIT};
use fnmetrics::measured;
use fnmetrics_test_support::redis::RedisServer;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[measured(name = "top::busy")]
fn busy(i: u64) -> Result<(), ()> {
    if i.is_multiple_of(10) {
        Err(())
    } else {
        Ok(())
    }
}

#[measured(name = "top::quiet")]
fn quiet() {}

#[test]
fn top_once_prints_totals_and_live_mode_redraws_until_stopped() {
    let redis = RedisServer::start();
    let url = redis.url();
    record(&redis, None, || {
        for i in 0..50 {
            let _ = busy(i);
        }
        quiet();
    });
    let once = ok(&["top", "--once", "--redis", &url, "--fn", "top::*"]);
    let lines: Vec<&str> = once.lines().collect();
    assert!(
        lines[0].starts_with("function") && lines[0].contains("p99"),
        "{once}"
    );
    assert!(
        lines[1].starts_with("top::busy") && lines[1].contains(" 50 "),
        "{once}"
    );
    assert!(lines[1].contains("10.0%"), "{once}");
    assert!(lines[2].starts_with("top::quiet"), "{once}");
    assert_eq!(lines.len(), 3, "{once}");

    // Not a terminal: one frame after the other, no escape codes; rates after the first.
    let mut child = fnmetrics()
        .args([
            "top",
            "--interval",
            "100ms",
            "--redis",
            &url,
            "--fn",
            "top::*",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !seen.iter().any(|l: &String| l.contains("calls/s")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no rates frame: {seen:#?}"
        );
        seen.push(lines.next().expect("output").unwrap());
    }
    kill(child.id(), "TERM");
    assert_eq!(wait_exit(&mut child, WAIT).code(), Some(0));
    let all = seen.join("\n");
    assert!(!all.contains('\x1b'), "{all}");
    assert!(all.contains("rates over the last 100ms"), "{all}");
}
