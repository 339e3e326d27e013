//! The Prometheus text exposition format (version 0.0.4), written by hand: [`render`] this
//! process's metrics, or [`render_snapshots`] any snapshots (the fleet-wide ones read from Redis,
//! say), and [`serve`] them on `GET /metrics` from a background thread.
//!
//! # The series
//! Every function is one `function` label value (escaped as the format says: `\\`, `\"`, `\n`).
//!
//! | metric | type | what |
//! |---|---|---|
//! | `fnmetrics_calls_total` | counter | calls that finished (returned or panicked) |
//! | `fnmetrics_errors_total` | counter | calls that returned an error or panicked |
//! | `fnmetrics_panics_total` | counter | calls that panicked (also in the errors) |
//! | `fnmetrics_cancelled_total` | counter | async calls dropped before they finished |
//! | `fnmetrics_dropped_entries_total` | counter | per-call entries dropped or not delivered |
//! | `fnmetrics_duration_seconds` | histogram | call times (`_bucket`, `_sum`, `_count`) |
//!
//! `_count` and `_sum` cover the timed calls: all of them, or about one in N with
//! `#[measured(sample = N)]`, so `_count` may be below `fnmetrics_calls_total`.
//!
//! # Histogram buckets
//! The `le` bounds are fixed: the powers of two of nanoseconds from 2^10 ns (1.024 µs) to
//! 2^42 ns (about 73 minutes), 33 bounds ([`LE_NANOS`]), then `+Inf`. Every power of two is a
//! bucket boundary of the log-linear histogram (each power of two starts 32 buckets), so the
//! count at each `le` is exact, not interpolated: it is the number of calls *shorter than* `le`
//! (the histogram's buckets are half-open, `[low, high)` nanoseconds). That differs from the
//! format's "less than or equal" only for a call that took exactly `le`, to the nanosecond.
//! Prometheus' `histogram_quantile` interpolates within these coarser buckets (a factor of two
//! wide); for quantiles within 2 %, read [`crate::Snapshot::quantile`] instead.
//!
//! # In applications
//! ```
//! # fn main() -> Result<(), fnmetrics::Error> {
//! let server = fnmetrics::prometheus::serve("127.0.0.1:0")?;
//! println!("scrape http://{}/metrics", server.local_addr());
//! // ... run the application; dropping `server` stops the endpoint ...
//! # Ok(())
//! # }
//! ```

use crate::{snapshot_all, Error, ErrorKind, Snapshot};
use fnmetrics_core::bucket_index;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// The `le` bounds of `fnmetrics_duration_seconds`, in nanoseconds: 2^10 ns (1.024 µs) to
/// 2^42 ns (about 73 minutes), each a boundary of the log-linear histogram (see the
/// [module docs](self)).
///
/// ```
/// use fnmetrics::prometheus::LE_NANOS;
/// assert_eq!((LE_NANOS[0], LE_NANOS.len()), (1_024, 33));
/// assert!(LE_NANOS.iter().all(|b| b.is_power_of_two()));
/// ```
pub const LE_NANOS: [u64; 33] = {
    let mut out = [0u64; 33];
    let mut i = 0;
    while i < out.len() {
        out[i] = 1 << (10 + i);
        i += 1;
    }
    out
};

/// The `Content-Type` of the text format, as [`serve`] sends it.
///
/// ```
/// assert!(fnmetrics::prometheus::CONTENT_TYPE.contains("version=0.0.4"));
/// ```
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long [`serve`] waits on one read or write of a connection before giving it up.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head [`serve`] reads.
const MAX_REQUEST: usize = 16 * 1024;

/// This process's metrics ([`snapshot_all`]) in the text format.
///
/// ```
/// #[fnmetrics::measured(name = "doc::prometheus::render")]
/// fn work() {}
/// work();
/// let text = fnmetrics::prometheus::render();
/// assert!(text.contains(r#"fnmetrics_calls_total{function="doc::prometheus::render"} 1"#));
/// ```
pub fn render() -> String {
    render_snapshots(&snapshot_all())
}

/// `snapshots` in the text format, sorted by name: a `# HELP` and `# TYPE` line a metric, then
/// one series a function (see the [module docs](self) for the metrics and bucket bounds).
///
/// ```
/// let mut s = fnmetrics::Snapshot::new("app::\"quoted\"");
/// s.record(1_500, true); // 1.5 µs, an error
/// let text = fnmetrics::prometheus::render_snapshots(&[s]);
/// assert!(text.contains(r#"fnmetrics_errors_total{function="app::\"quoted\""} 1"#));
/// assert!(text.contains(r#"fnmetrics_duration_seconds_bucket{function="app::\"quoted\"",le="0.000001024"} 0"#));
/// assert!(text.contains(r#"fnmetrics_duration_seconds_bucket{function="app::\"quoted\"",le="0.000002048"} 1"#));
/// ```
pub fn render_snapshots(snapshots: &[Snapshot]) -> String {
    let mut order: Vec<&Snapshot> = snapshots.iter().collect();
    order.sort_by(|a, b| a.name.cmp(&b.name));
    let labels: Vec<String> = order.iter().map(|s| escape_label(&s.name)).collect();
    // About 40 lines of about 90 bytes a function.
    let mut out = String::with_capacity(512 + order.len() * 3_600);

    let counters: [Counter; 5] = [
        (
            "fnmetrics_calls_total",
            "Calls that finished (returned or panicked).",
            |s| s.calls,
        ),
        (
            "fnmetrics_errors_total",
            "Calls that returned an error or panicked.",
            |s| s.errors,
        ),
        (
            "fnmetrics_panics_total",
            "Calls that panicked (also counted as errors).",
            |s| s.panics,
        ),
        (
            "fnmetrics_cancelled_total",
            "Async calls dropped before they finished (not counted as calls).",
            |s| s.cancelled,
        ),
        (
            "fnmetrics_dropped_entries_total",
            "Per-call entries dropped or not delivered (the calls are still counted).",
            |s| s.dropped_entries,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (s, label) in order.iter().zip(&labels) {
            for part in [name, "{function=\"", label, "\"} "] {
                out.push_str(part);
            }
            push_u64(&mut out, value(s));
            out.push('\n');
        }
    }

    let h = "fnmetrics_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {h} Call times of the timed calls; le bounds are powers of two of nanoseconds, \
         counting calls shorter than le.\n# TYPE {h} histogram"
    );
    let (les, starts) = le_table();
    let mut bucket_prefix = String::new();
    for (s, label) in order.iter().zip(&labels) {
        let hist = s.histogram();
        let mut buckets = hist.nonzero().peekable();
        let mut cumulative = 0u64;
        bucket_prefix.clear();
        for part in [h, "_bucket{function=\"", label, "\",le=\""] {
            bucket_prefix.push_str(part);
        }
        for (le, &start) in les.iter().zip(starts) {
            // Every bucket below the one that starts at this bound.
            while let Some((_, c)) = buckets.next_if(|&(i, _)| i < start) {
                cumulative = cumulative.wrapping_add(c);
            }
            // Written piece by piece: 33 lines a function, the bulk of the text.
            for part in [bucket_prefix.as_str(), le, "\"} "] {
                out.push_str(part);
            }
            push_u64(&mut out, cumulative);
            out.push('\n');
        }
        let count = hist.count();
        let _ = writeln!(
            out,
            "{h}_bucket{{function=\"{label}\",le=\"+Inf\"}} {count}\n\
             {h}_sum{{function=\"{label}\"}} {}\n\
             {h}_count{{function=\"{label}\"}} {count}",
            s.total_ns as f64 / 1e9
        );
    }
    out
}

/// Appends `n` in decimal (what `write!` does, without its formatting machinery).
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
}

/// A counter metric: its name, its help text and its value in a snapshot.
type Counter = (&'static str, &'static str, fn(&Snapshot) -> u64);

/// The `le` texts of [`LE_NANOS`] in seconds, and the histogram bucket each bound starts.
fn le_table() -> &'static (Vec<String>, Vec<usize>) {
    static TABLE: OnceLock<(Vec<String>, Vec<usize>)> = OnceLock::new();
    TABLE.get_or_init(|| {
        let les = LE_NANOS.iter().map(|&ns| (ns as f64 / 1e9).to_string());
        let starts = LE_NANOS.iter().map(|&ns| bucket_index(ns));
        (les.collect(), starts.collect())
    })
}

/// A label value escaped as the text format wants it: backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    if !value.contains(['\\', '"', '\n']) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// What [`serve_with`] calls on every scrape: the body of the answer, or why there is none
/// (answered with status 503 and the error's text).
///
/// ```
/// use fnmetrics::prometheus::{render, Scrape};
/// let mut scrape: Box<Scrape> = Box::new(|| Ok(render()));
/// assert!(scrape().unwrap().contains("# TYPE fnmetrics_calls_total counter"));
/// ```
pub type Scrape = dyn FnMut() -> Result<String, Box<dyn std::error::Error + Send + Sync>> + Send;

/// Serves [`render`] on `http://addr/metrics` from a background thread named
/// `fnmetrics-prometheus`, until the returned guard is dropped.
///
/// The endpoint answers `GET /metrics` (a query string is ignored) with status 200 and
/// [`CONTENT_TYPE`], and anything else with 404. It speaks HTTP/1.1 and closes each connection
/// after its answer; connections are answered one at a time, each read and write waiting at
/// most 10 seconds.
///
/// # Errors
/// [`ErrorKind::InvalidConfig`] if `addr` cannot be listened on (in use, not local, not an
/// address); [`ErrorKind::Unavailable`] if the thread cannot be started.
///
/// ```
/// use std::io::{Read, Write};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = fnmetrics::prometheus::serve("127.0.0.1:0")?;
/// let mut conn = std::net::TcpStream::connect(server.local_addr())?;
/// conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
/// let mut answer = String::new();
/// conn.read_to_string(&mut answer)?;
/// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert!(answer.contains("# TYPE fnmetrics_calls_total counter"));
/// # Ok(())
/// # }
/// ```
pub fn serve(addr: impl ToSocketAddrs) -> Result<PrometheusServer, Error> {
    serve_with(addr, Box::new(|| Ok(render())))
}

/// As [`serve`], answering each scrape with what `scrape` returns: the fleet-wide metrics read
/// from Redis, say (what `fnmetrics serve --prometheus` does). An `Err` is answered with status
/// 503 and its text, and the next scrape calls `scrape` again.
///
/// # Errors
/// As [`serve`].
///
/// ```
/// # fn main() -> Result<(), fnmetrics::Error> {
/// let fleet = vec![fnmetrics::Snapshot::new("app::f")];
/// let server = fnmetrics::prometheus::serve_with(
///     "127.0.0.1:0",
///     Box::new(move || Ok(fnmetrics::prometheus::render_snapshots(&fleet))),
/// )?;
/// # drop(server);
/// # Ok(())
/// # }
/// ```
pub fn serve_with(
    addr: impl ToSocketAddrs,
    scrape: Box<Scrape>,
) -> Result<PrometheusServer, Error> {
    let invalid = |e: std::io::Error| {
        Error::with_source(
            ErrorKind::InvalidConfig,
            "cannot listen for Prometheus scrapes",
            e,
        )
    };
    let listener = TcpListener::bind(addr).map_err(invalid)?;
    let local = listener.local_addr().map_err(invalid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("fnmetrics-prometheus".into())
        .spawn({
            let stop = Arc::clone(&stop);
            move || accept_loop(&listener, &stop, scrape)
        })
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Unavailable,
                "cannot start the fnmetrics-prometheus thread",
                e,
            )
        })?;
    Ok(PrometheusServer {
        addr: local,
        stop,
        thread: Some(thread),
    })
}

/// The running endpoint of [`serve`]; dropping it stops the thread (after the scrape it may be
/// answering).
///
/// ```
/// # fn main() -> Result<(), fnmetrics::Error> {
/// let server = fnmetrics::prometheus::serve("127.0.0.1:0")?;
/// let addr = server.local_addr();
/// drop(server);
/// assert!(std::net::TcpStream::connect(addr).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PrometheusServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PrometheusServer {
    /// The address it listens on (with the port chosen when `serve` was given port 0).
    ///
    /// ```
    /// # fn main() -> Result<(), fnmetrics::Error> {
    /// let server = fnmetrics::prometheus::serve("127.0.0.1:0")?;
    /// assert_ne!(server.local_addr().port(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the thread from `accept` with a connection of our own (to loopback when it
        // listens on every address).
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let woke = TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok();
        if let Some(t) = self.thread.take() {
            // Not woken (the address is not reachable from here): leave the thread behind
            // rather than hang; it exits at its next connection.
            if woke {
                let _ = t.join();
            }
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, mut scrape: Box<Scrape>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else {
            // Out of file descriptors, say: back off a little rather than spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if let Err(e) = answer(conn, &mut scrape) {
            log::debug!("fnmetrics-prometheus: a scrape connection failed: {e}");
        }
    }
}

/// Reads one request and answers it.
fn answer(mut conn: TcpStream, scrape: &mut Box<Scrape>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(&mut conn, "431 Request Header Fields Too Large", "", "");
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next(), parts.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    if method != Some("GET") || path != "/metrics" {
        return respond(
            &mut conn,
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n",
        );
    }
    match scrape() {
        Ok(body) => respond(&mut conn, "200 OK", CONTENT_TYPE, &body),
        Err(e) => {
            let text = format!("cannot collect the metrics: {e}\n");
            respond(&mut conn, "503 Service Unavailable", "text/plain", &text)
        }
    }
}

fn respond(
    conn: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())?;
    conn.flush()?;
    let _ = conn.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_le_bound_starts_a_bucket() {
        for &ns in &LE_NANOS {
            let i = bucket_index(ns);
            assert_eq!(fnmetrics_core::bucket_low(i), ns);
            assert_eq!(bucket_index(ns - 1), i - 1);
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 1_234_567, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_label("plain::name"), "plain::name");
    }

    #[test]
    fn buckets_are_cumulative_and_exact_at_each_bound() {
        let mut s = Snapshot::new("f");
        for ns in [1_023, 1_024, 2_047, 2_048, 5_000_000_000_000_000] {
            s.record(ns, false);
        }
        let text = render_snapshots(&[s]);
        let at = |le: &str| {
            let key = format!("fnmetrics_duration_seconds_bucket{{function=\"f\",le=\"{le}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&key)).unwrap();
            line[key.len()..].parse::<u64>().unwrap()
        };
        assert_eq!(at("0.000001024"), 1);
        assert_eq!(at("0.000002048"), 3);
        assert_eq!(at("0.000004096"), 4);
        assert_eq!(at("4398.046511104"), 4);
        assert_eq!(at("+Inf"), 5);
    }
}
