//! What recording costs at scale, in one run: for 1 000 and 10 000 functions × 1, 8 and 64
//! threads that stay alive (each thread calls each function once), the memory added per
//! (function, thread), `snapshot_all()` and `get(name)` times; then the per-call overhead.
//!
//! `cargo bench --bench scale`. Each configuration runs in a child process of this binary, so
//! that one's functions and threads do not weigh on the next.

use fnmetrics::__private::{Guard, Site};
use std::hint::black_box;
use std::process::Command;
use std::sync::Barrier;
use std::time::{Duration, Instant};

const CONFIGS: [(usize, usize); 6] = [
    (1_000, 1),
    (1_000, 8),
    (1_000, 64),
    (10_000, 1),
    (10_000, 8),
    (10_000, 64),
];

/// Resident set size, bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One configuration; prints one table row.
fn child(functions: usize, threads: usize) {
    let sites: Vec<&'static Site> = (0..functions)
        .map(|i| {
            let name: &'static str = Box::leak(format!("scale::f{i:05}").into_boxed_str());
            &*Box::leak(Box::new(Site::new(name)))
        })
        .collect();
    let (rss0, mem0) = (rss(), fnmetrics::memory());
    let called = Barrier::new(threads + 1);
    let done = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for site in &sites {
                    Guard::start(site).finish(false);
                }
                called.wait();
                // Stay alive while the main thread reads.
                done.wait();
            });
        }
        called.wait();
        let (rss1, mem1) = (rss(), fnmetrics::memory());
        let pairs = (functions * threads) as f64;

        let mut snapshot_all = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let all = black_box(fnmetrics::snapshot_all());
            snapshot_all.push(t.elapsed());
            assert_eq!(all.len(), functions);
            assert!(all.iter().all(|m| m.calls == threads as u64));
        }
        // `get` of functions spread over the registry, each read cold (not the one before).
        let names: Vec<String> = (0..2_000)
            .map(|i| format!("scale::f{:05}", (i * 7_919) % functions))
            .collect();
        let mut get = Vec::new();
        for name in &names {
            let t = Instant::now();
            let m = black_box(fnmetrics::get(name));
            get.push(t.elapsed());
            assert_eq!(m.map(|m| m.calls), Some(threads as u64));
        }
        println!(
            "| {functions} | {threads} | {:.0} B | {:.0} B | {:.0} B | {:.2} ms | {:.2} µs |",
            (rss1.saturating_sub(rss0)) as f64 / pairs,
            (mem1.bytes - mem0.bytes) as f64 / pairs,
            (mem1.slot_bytes - mem0.slot_bytes) as f64 / pairs,
            median(snapshot_all).as_secs_f64() * 1e3,
            median(get).as_secs_f64() * 1e6,
        );
        done.wait();
    });
}

#[inline(never)]
fn bare(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[fnmetrics::measured(name = "scale::measured")]
#[inline(never)]
fn measured(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

/// ns per call, median of 7 rounds of 2 M calls.
fn per_call(f: fn(u64) -> u64) -> f64 {
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for i in 0..2_000_000u64 {
                black_box(f(black_box(i)));
            }
            t.elapsed().as_secs_f64() * 1e9 / 2e6
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[3]
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    if let (Some(f), Some(t)) = (args.next(), args.next())
        && let (Ok(f), Ok(t)) = (f.parse(), t.parse())
    {
        child(f, t);
        return;
    }
    println!("| functions | threads | RSS added per (fn, thread) | fnmetrics::memory() per pair | slots and pages per pair | snapshot_all() | get(name) |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let exe = std::env::current_exe().expect("the bench binary's path");
    for (functions, threads) in CONFIGS {
        let out = Command::new(&exe)
            .arg(functions.to_string())
            .arg(threads.to_string())
            .output()
            .expect("run a configuration");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let (b, m) = (per_call(bare), per_call(measured));
    println!(
        "\nper call: bare {b:.2} ns, #[measured] {m:.2} ns, overhead {:.2} ns",
        m - b
    );
}
