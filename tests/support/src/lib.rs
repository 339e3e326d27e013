//! The one test fixture: throw-away `redis-server`, PostgreSQL, Prometheus and Alertmanager
//! servers on free loopback ports, in temporary directories that are removed when the server
//! value is dropped; and receivers inside the test for alert notifications (an HTTP webhook,
//! an SMTP server).
//!
//! Every integration test that needs a server starts its own, so tests run in parallel and can
//! stop and restart their server mid-run. A test that needs the process to itself (it starts a
//! flusher, or changes a process-wide setting) runs in a process of its own:
//! [`own_process!`].

pub mod alertmanager;
pub mod own_process;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod redis_cluster;
pub mod smtp;
pub mod webhook;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A free loopback TCP port (the listener is closed before the port is used).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Finds `binary` on PATH or in `extra_dirs`, or panics saying which Debian package to install.
pub fn find_binary(binary: &str, extra_dirs: &[PathBuf], package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().cloned())
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{binary}` was not found: install the Debian package `{package}` \
                 (apt-get install -y {package}), or run scripts/test, which installs it"
            )
        })
}

/// A fresh directory under the system temp dir, removed by [`TempDir`]'s drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `fnmetrics-<tag>-…` under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "fnmetrics-{tag}-{}-{n}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("cannot create a temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` every 10 ms until it is true, panicking with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The environment variables that give a child test its servers.
const CHILD_REDIS: &str = "FNMETRICS_CHILD_REDIS";
const CHILD_POSTGRES: &str = "FNMETRICS_CHILD_POSTGRES";

/// A command that runs test `name` of this test binary (an `#[ignore]`d test that reads its
/// servers with [`child_servers`]) in a child process, given the servers' URLs; its stdout is
/// discarded. Add more environment and spawn or run it.
pub fn child_test(name: &str, redis_url: &str, postgres_url: &str) -> std::process::Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--ignored", "--exact", name])
        .env(CHILD_REDIS, redis_url)
        .env(CHILD_POSTGRES, postgres_url)
        .stdout(std::process::Stdio::null());
    cmd
}

/// In a test started by [`child_test`]: the Redis and PostgreSQL URLs; `None` when the test
/// runs on its own (`--ignored`), where it should do nothing.
pub fn child_servers() -> Option<(String, String)> {
    Some((
        std::env::var(CHILD_REDIS).ok()?,
        std::env::var(CHILD_POSTGRES).ok()?,
    ))
}

/// Asserts that `timed`, the calls a sample of one in `every` kept out of `calls`, is within 6
/// standard deviations of a binomial count.
pub fn assert_about_one_in(every: u64, calls: u64, timed: u64) {
    let expected = calls as f64 / every as f64;
    let sd = (expected * (1.0 - 1.0 / every as f64)).sqrt();
    assert!(
        (timed as f64 - expected).abs() <= 6.0 * sd + 1.0,
        "{timed} of {calls} timed, expected about {expected}"
    );
}
