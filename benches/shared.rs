//! Set-up shared by the benches: the measured workload, the "limit" baseline, a two-thread
//! runner, and a summary that prints ratios from criterion's own estimates.

#![allow(dead_code)]

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The error type of the workload.
#[derive(Debug)]
pub(crate) struct Overflow;

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("overflow")
    }
}

impl std::error::Error for Overflow {}

/// A variant under measurement.
pub(crate) type Job = fn(u64) -> Result<u64, Overflow>;

/// The body every variant wraps: a few nanoseconds of real work that can fail.
#[inline(never)]
pub(crate) fn work(x: u64) -> Result<u64, Overflow> {
    black_box(x)
        .checked_mul(3)
        .map(|v| v ^ 0x5a5a)
        .ok_or(Overflow)
}

static CLOCK: std::sync::LazyLock<quanta::Clock> = std::sync::LazyLock::new(quanta::Clock::new);
static LIMIT_CALLS: AtomicU64 = AtomicU64::new(0);
static LIMIT_NANOS: AtomicU64 = AtomicU64::new(0);

/// The floor any recorder must pay: two TSC reads and two relaxed atomic adds.
#[inline(never)]
pub(crate) fn limit(x: u64) -> Result<u64, Overflow> {
    let clock = &*CLOCK;
    let start = clock.raw();
    let r = work(x);
    let end = clock.raw();
    LIMIT_CALLS.fetch_add(1, Relaxed);
    LIMIT_NANOS.fetch_add(clock.delta_as_nanos(start, end), Relaxed);
    r
}

/// The clock alone: two TSC reads and their difference, recorded nowhere (the floor under any
/// recorder that times every call).
#[inline(never)]
pub(crate) fn clock_only(x: u64) -> Result<u64, Overflow> {
    let clock = &*CLOCK;
    let start = clock.raw();
    let r = work(x);
    let end = clock.raw();
    black_box(end.wrapping_sub(start));
    r
}

/// Runs `f` on this thread and on one helper thread at once; returns this thread's time for
/// `iters` calls (both threads make `iters` calls, so this is the per-thread cost under sharing).
pub(crate) struct Pair {
    go: crossbeam_channel::Sender<(u64, Job)>,
    done: crossbeam_channel::Receiver<()>,
    barrier: Arc<Barrier>,
}

impl Pair {
    pub(crate) fn new() -> Pair {
        let (go, go_rx) = crossbeam_channel::unbounded::<(u64, Job)>();
        let (done_tx, done) = crossbeam_channel::unbounded();
        let barrier = Arc::new(Barrier::new(2));
        let b = barrier.clone();
        std::thread::Builder::new()
            .name("bench-peer".into())
            .spawn(move || {
                while let Ok((iters, f)) = go_rx.recv() {
                    b.wait();
                    for i in 0..iters {
                        let _ = black_box(f(black_box(i)));
                    }
                    let _ = done_tx.send(());
                }
            })
            .expect("spawn bench peer");
        Pair { go, done, barrier }
    }

    pub(crate) fn run(&self, iters: u64, f: Job) -> Duration {
        self.go.send((iters, f)).expect("bench peer gone");
        self.barrier.wait();
        let start = Instant::now();
        for i in 0..iters {
            let _ = black_box(f(black_box(i)));
        }
        let elapsed = start.elapsed();
        self.done.recv().expect("bench peer gone");
        elapsed
    }
}

/// The median estimate, in ns, criterion stored for `group/id`.
pub(crate) fn median_ns(group: &str, id: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let file = dir
        .join("criterion")
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(file).ok()?;
    let at = text.find("\"median\"")?;
    let rest = &text[at..];
    let p = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let num: String = rest[p..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    num.parse().ok()
}
