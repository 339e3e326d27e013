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
    fnmetrics_test_support::own_process!();
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

#[test]
fn a_large_fleet_is_read_whole_on_two_connections() {
    // More functions than one connection reads alone: hashes as flushers write them.
    let redis = RedisServer::start();
    let mut c = redis.client();
    let n = 2_345u64;
    let mut pipe = redis::pipe();
    for i in 0..n {
        let name = format!("fleet::f{i:05}");
        pipe.cmd("HSET")
            .arg(format!("app:metrics:{name}"))
            .arg("calls")
            .arg(i + 1)
            .arg("errors")
            .arg(i % 2)
            .arg("b40")
            .arg(i + 1)
            .ignore();
        pipe.cmd("SADD")
            .arg("fnmetrics:functions")
            .arg(&name)
            .ignore();
    }
    let () = pipe.query(&mut c).unwrap();
    let once = ok(&["top", "--once", "--redis", &redis.url()]);
    let rows: Vec<&str> = once.lines().filter(|l| l.starts_with("fleet::f")).collect();
    assert_eq!(rows.len() as u64, n, "{once}");
    // Most calls first: every function once, with its own count.
    let calls: u64 = rows
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(calls, n * (n + 1) / 2);
    assert!(
        rows[0].starts_with(&format!("fleet::f{:05} ", n - 1)),
        "{}",
        rows[0]
    );
}

/// Seeds `redis` with function `fleet::good` (7 calls) and `fleet::bad`, whose hash another
/// writer spoiled (`calls` is not a number).
pub(crate) fn seed_a_good_and_a_bad_hash(redis: &RedisServer) {
    let mut c = redis.client();
    let () = redis::pipe()
        .cmd("HSET")
        .arg("app:metrics:fleet::good")
        .arg(&["calls", "7", "errors", "1", "b40", "7"])
        .ignore()
        .cmd("HSET")
        .arg("app:metrics:fleet::bad")
        .arg(&["calls", "banana", "errors", "0"])
        .ignore()
        .cmd("SADD")
        .arg("fnmetrics:functions")
        .arg(&["fleet::good", "fleet::bad"])
        .ignore()
        .query(&mut c)
        .unwrap();
}

/// A regression test: one hash that did not decode failed the read of every function.
#[test]
fn top_once_shows_the_fleet_while_a_hash_does_not_decode() {
    let redis = RedisServer::start();
    seed_a_good_and_a_bad_hash(&redis);
    let out = crate::run(&["top", "--once", "--redis", &redis.url()]);
    let (once, stderr) = (crate::text(&out.stdout), crate::text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{once}\n{stderr}");
    // One warning, naming the key.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("app:metrics:fleet::bad"), "{stderr}");
    assert!(stderr.starts_with("fnmetrics: warning: "), "{stderr}");
    let rows: Vec<&str> = once.lines().filter(|l| l.starts_with("fleet::")).collect();
    assert_eq!(rows.len(), 1, "{once}");
    assert!(
        rows[0].starts_with("fleet::good") && rows[0].contains(" 7 "),
        "{once}"
    );
}
