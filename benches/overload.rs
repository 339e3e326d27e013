//! What a `#[measured]` call costs while a flusher runs, in one run:
//!
//! - without a flusher (no entries are made);
//! - with a flusher into Redis (default settings), calls flat out on one thread: far more
//!   entries than stage 1 can write, so most are dropped where they are made;
//! - with the same flusher, calls paced at 1 M/s (in bursts of 1 000 a millisecond): every
//!   entry is kept.
//!
//! The goal (issue 12): a call whose entry is dropped costs no more than one whose entry is kept.
//!
//! `cargo bench --bench overload`. Starts its own throw-away Redis (the test fixture).

use fnmetrics_test_support as support;

use std::time::{Duration, Instant};
use support::redis::RedisServer;

const FLAT_OUT: u64 = 10_000_000;
const PACED: u64 = 3_000_000;
const BURST: u64 = 1_000;

#[fnmetrics::measured(name = "bench::overload")]
fn call(i: u64) -> u64 {
    std::hint::black_box(i)
}

/// ns per call of `n` calls back to back.
fn flat_out(n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        call(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// ns per call of `n` calls in bursts of `BURST` a millisecond (1 M calls/s); only the bursts
/// are timed.
fn paced(n: u64) -> f64 {
    let mut busy = Duration::ZERO;
    let start = Instant::now();
    for burst in 0..n / BURST {
        let t = Instant::now();
        for i in 0..BURST {
            call(burst * BURST + i);
        }
        busy += t.elapsed();
        let next = start + Duration::from_millis(burst + 1);
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    busy.as_nanos() as f64 / n as f64
}

fn dropped() -> u64 {
    fnmetrics::get("bench::overload").map_or(0, |m| m.dropped_entries)
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "overload".contains(f.as_str())) {
        return;
    }
    flat_out(1_000_000); // warm up: the site, the slot, the pages
    let bare = flat_out(FLAT_OUT);

    let redis = RedisServer::start_with_args(&["--appendfsync", "everysec"]);
    let flusher = fnmetrics::Flusher::builder()
        .redis(redis.url())
        .on_error(|_| {})
        .start()
        .expect("flusher");
    let before = dropped();
    let flat = flat_out(FLAT_OUT);
    let flat_dropped = dropped() - before;
    flusher.flush().expect("flush");
    let before = dropped();
    let kept = paced(PACED);
    let paced_dropped = dropped() - before;
    flusher.flush().expect("flush");
    drop(flusher);

    println!("\nper-call cost of #[measured] with a flusher into Redis (default settings)");
    println!("  no flusher, flat out                  {bare:>8.2} ns/call");
    println!(
        "  flusher, flat out ({FLAT_OUT} calls)    {flat:>8.2} ns/call   ({:.1} % of entries dropped)",
        100.0 * flat_dropped as f64 / FLAT_OUT as f64
    );
    println!(
        "  flusher, paced at 1 M calls/s          {kept:>8.2} ns/call   ({paced_dropped} entries dropped)"
    );
    println!(
        "  ratio flat out / paced                 {:>8.2}   (goal <= 1: a dropped entry costs no more than a kept one)",
        flat / kept
    );
    println!(
        "  ratio flat out / no flusher            {:>8.2}",
        flat / bare
    );
}
