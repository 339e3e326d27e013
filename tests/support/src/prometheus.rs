//! A throw-away Prometheus server (the Debian package `prometheus`): its own config and TSDB in
//! a temporary directory, on a free loopback port, scraping one target every second. Also
//! `promtool check metrics` and a minimal HTTP GET for the tests of `/metrics` endpoints.

use super::{find_binary, free_port, wait_until, TempDir};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Prometheus may take to be ready after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `prometheus` that scrapes `http://<target>/metrics` every second. Dropping it stops
/// the server and removes its directory.
#[derive(Debug)]
pub struct PrometheusServer {
    child: Child,
    port: u16,
    // Declared last: dropped after the child is killed.
    dir: TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `target` (`host:port`, path `/metrics`) every second and waits
    /// until it is ready (`/-/ready`). Panics saying `apt-get install prometheus` when the binary
    /// is missing.
    pub fn start(target: SocketAddr) -> PrometheusServer {
        let binary = find_binary("prometheus", &[], "prometheus");
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: fnmetrics\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("cannot write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("cannot start prometheus");
        let mut server = PrometheusServer { child, port, dir };
        let mut exited = None;
        wait_until("prometheus to be ready", START_TIMEOUT, || {
            if let Ok(Some(st)) = server.child.try_wait() {
                exited = Some(st);
                return true;
            }
            matches!(http_get(server.addr(), "/-/ready"), Ok((200, _)))
        });
        if let Some(st) = exited {
            panic!("prometheus exited ({st}):\n{}", server.log());
        }
        server
    }

    /// Where its HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Runs the instant query `expr` (`/api/v1/query`) and returns its result vector, or why
    /// there is none.
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (status, body) = http_get(self.addr(), &path).map_err(|e| e.to_string())?;
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if status != 200 || json["status"] != "success" {
            return Err(format!("status {status}: {body}"));
        }
        match &json["data"]["result"] {
            serde_json::Value::Array(v) => Ok(v.clone()),
            other => Err(format!("no result vector: {other}")),
        }
    }

    /// The value of the one-series answer to `expr`, if it has one series.
    pub fn value(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr).ok()?;
        let [one] = result.as_slice() else {
            return None;
        };
        one["value"][1].as_str()?.parse().ok()
    }

    /// Polls `expr` until its one series has the value `want`, at most `timeout`; panics with
    /// the last answer (and the server's log) otherwise.
    pub fn wait_for_value(&self, expr: &str, want: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.value(expr) == Some(want) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "Prometheus did not answer {want} to `{expr}` within {timeout:?}; last \
                     answer: {:?}\ntargets: {:?}\n--- log\n{}",
                    self.query(expr),
                    http_get(self.addr(), "/api/v1/targets"),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `promtool` binary, or a panic saying `apt-get install prometheus`.
pub fn promtool() -> PathBuf {
    find_binary("promtool", &[], "prometheus")
}

/// Runs `promtool check metrics` on `text` (on its stdin): `Err` with its output if it finds a
/// problem (lint warnings included).
pub fn check_metrics(text: &str) -> Result<(), String> {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start promtool");
    let mut stdin = child.stdin.take().expect("stdin");
    let text = text.to_owned();
    // Written from another thread: promtool may answer before it read everything.
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().expect("promtool runs");
    let _ = writer.join();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics ({}): {said}", out.status))
    }
}

/// `GET path` over HTTP/1.0 (the server closes after the answer): the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let (status, _, body) = http_get_full(addr, path)?;
    Ok((status, body))
}

/// As [`http_get`], with the response head's header lines too.
pub fn http_get_full(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<String>, String)> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, lines.map(str::to_owned).collect(), body.to_owned()))
}

/// `s` percent-encoded for a query string.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
