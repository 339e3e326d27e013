//! The `fnmetrics` binary against real, throw-away Redis and PostgreSQL servers (the
//! `fnmetrics-test-support` fixture). Data comes from the real pipeline: `#[measured]` functions
//! in this test process and a `fnmetrics::Flusher`.
//!
//! One flusher runs per process, so each test that records and flushes runs in a process of its
//! own (`fnmetrics_test_support::own_process!`).

mod alerts;
mod alerts_receivers;
mod alerts_run;
mod cluster;
mod dead_letters;
mod drain;
mod forget;
mod html;
mod migrate;
mod report;
mod serve;
mod status;
mod top;
mod usage;

use fnmetrics::Flusher;
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How long a poll waits before a test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Runs `record` with a flusher to `redis` (and `postgres`: then the entries go on into
/// PostgreSQL), then flushes: when this returns, stage 1 (and stage 2) hold every call. For a
/// test in a process of its own (`own_process!`): one flusher runs per process.
pub(crate) fn record(
    redis: &RedisServer,
    postgres: Option<&PostgresServer>,
    record: impl FnOnce(),
) {
    record_with_prefix(redis, postgres, "", record);
}

/// As [`record`], with the flusher's Redis keys under `key_prefix`.
pub(crate) fn record_with_prefix(
    redis: &RedisServer,
    postgres: Option<&PostgresServer>,
    key_prefix: &str,
    record: impl FnOnce(),
) {
    let mut b = Flusher::builder()
        .redis(redis.url())
        .key_prefix(key_prefix)
        .service("shop")
        .batch_size(10_000)
        .flush_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .on_error(|_| {});
    if let Some(pg) = postgres {
        b = b.postgres(pg.url());
    }
    let guard = b.start().expect("flusher starts");
    record();
    guard.flush().expect("flush");
}

/// The binary with no server URLs from the environment.
pub(crate) fn fnmetrics() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fnmetrics"));
    c.env_remove("FNMETRICS_REDIS_URL")
        .env_remove("FNMETRICS_POSTGRES_URL")
        .stdin(Stdio::null());
    c
}

/// Runs the binary with `args` and returns what it did.
pub(crate) fn run(args: &[&str]) -> Output {
    fnmetrics().args(args).output().expect("the binary runs")
}

/// Runs the binary and expects exit status `code`; returns stdout.
#[track_caller]
pub(crate) fn expect(code: i32, args: &[&str]) -> String {
    let out = run(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(code),
        "fnmetrics {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    stdout
}

/// Runs the binary and expects success; returns stdout.
#[track_caller]
pub(crate) fn ok(args: &[&str]) -> String {
    expect(0, args)
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends `signal` (e.g. "TERM") to a process with `kill`.
pub(crate) fn kill(pid: u32, signal: &str) {
    let st = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(st.success(), "kill -{signal} {pid}");
}

/// Waits for `child` to exit, at most `timeout`; kills it and panics if it does not.
pub(crate) fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
