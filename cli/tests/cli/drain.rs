//! `fnmetrics drain`: moves entries from Redis into PostgreSQL; `--once` exits when done; SIGTERM
//! and SIGINT stop it cleanly with exit status 0.

use crate::{fnmetrics, kill, ok, record, text, wait_exit, WAIT};
use fnmetrics::measured;
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use fnmetrics_test_support::wait_until;
use std::io::Read;
use std::process::Stdio;

#[measured(name = "drain::work")]
fn work(i: u64) -> Result<u64, String> {
    if i.is_multiple_of(4) {
        Err("no".into())
    } else {
        Ok(i)
    }
}

#[test]
fn drain_moves_entries_and_stops_cleanly_on_sigterm_and_sigint() {
    fnmetrics_test_support::own_process!();
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    let (r, p) = (redis.url(), pg.url());
    // Stage 1 only: the entries wait in Redis.
    record(&redis, None, || {
        for i in 0..120 {
            let _ = work(i);
        }
    });
    let st: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--redis", &r, "--format", "json"])).unwrap();
    assert_eq!(st["entries_waiting"], 120);

    let out = fnmetrics()
        .args([
            "drain",
            "--once",
            "--batch",
            "50",
            "--redis",
            &r,
            "--postgres",
            &p,
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("120 entries moved"), "{err}");
    assert_eq!(pg.raw_rows_of("drain::work"), 120);

    // Running: it picks up what comes later, then stops on a signal.
    for signal in ["TERM", "INT"] {
        let mut child = fnmetrics()
            .args(["drain", "--poll", "50ms", "--redis", &r, "--postgres", &p])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let before = pg.raw_rows_of("drain::work");
        record(&redis, None, || {
            for i in 0..80 {
                let _ = work(i);
            }
        });
        wait_until("the drainer to move the new entries", WAIT, || {
            pg.raw_rows_of("drain::work") == before + 80
        });
        kill(child.id(), signal);
        let status = wait_exit(&mut child, WAIT);
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status:?}\n{err}");
        assert!(
            err.contains("80 entries moved") && err.contains("(stopped)"),
            "{err}"
        );
    }
    let st: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--redis", &r, "--format", "json"])).unwrap();
    assert_eq!(st["entries_waiting"], 0);
    assert_eq!(st["claims_held"], 0, "no claim left behind");

    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "report",
        "--postgres",
        &p,
        "--fn",
        "drain::*",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(json[0]["calls"], 280);
    assert_eq!(json[0]["errors"], 70);
}
