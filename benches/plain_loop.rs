//! The hot path measured the plain way: no criterion, a `#[measured]` fn returning `Result`,
//! 2 M calls a round, the median of 7 rounds, overhead = variant − the bare fn; every variant
//! measured in the same run, in turns.
//!
//! `cargo bench --bench plain_loop` builds it like the other benches (`[profile.bench]`, with
//! LTO); `cargo bench --profile release --bench plain_loop` builds it like a user's
//! `--release` binary (no LTO, 16 codegen units), which is what the recording cost is held to.

mod shared;

use metered::{ErrorCount, HitCount, ResponseTime};
use shared::{work, Overflow};
use std::hint::black_box;
use std::time::Instant;

const CALLS: u64 = 2_000_000;
const ROUNDS: usize = 7;

#[inline(never)]
fn bare(x: u64) -> Result<u64, Overflow> {
    work(x)
}

/// Reads the time-stamp counter, as fnmetrics' hot path does once `quanta` chose it.
#[inline(always)]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` exists on every x86_64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static CLOCK: std::sync::LazyLock<quanta::Clock> =
            std::sync::LazyLock::new(quanta::Clock::new);
        CLOCK.raw()
    }
}

/// The clock alone: two raw TSC reads and their difference, recorded nowhere.
#[inline(never)]
fn clock(x: u64) -> Result<u64, Overflow> {
    let start = tsc();
    let r = work(x);
    black_box(tsc().wrapping_sub(start));
    r
}

#[fnmetrics::measured(name = "bench::plain_loop")]
#[inline(never)]
fn measured(x: u64) -> Result<u64, Overflow> {
    work(x)
}

/// Every call counted, about one in 64 timed.
#[fnmetrics::measured(name = "bench::plain_loop::sampled", sample = 64)]
#[inline(never)]
fn sampled(x: u64) -> Result<u64, Overflow> {
    work(x)
}

#[derive(Default, Debug)]
struct MeteredSvc {
    metrics: MeteredSvcMetrics,
}

#[metered::metered(registry = MeteredSvcMetrics)]
impl MeteredSvc {
    #[measure([HitCount, ErrorCount, ResponseTime])]
    #[inline(never)]
    fn call(&self, x: u64) -> Result<u64, Overflow> {
        work(x)
    }
}

static METERED: std::sync::LazyLock<MeteredSvc> = std::sync::LazyLock::new(MeteredSvc::default);

#[inline(never)]
fn metered(x: u64) -> Result<u64, Overflow> {
    METERED.call(x)
}

type Variant = (&'static str, fn(u64) -> Result<u64, Overflow>);

const VARIANTS: [Variant; 5] = [
    ("bare", bare),
    ("clock", clock),
    ("fnmetrics", measured),
    ("metered", metered),
    ("sample=64", sampled),
];

/// ns per call of one round of `CALLS` calls.
fn round(f: fn(u64) -> Result<u64, Overflow>) -> f64 {
    let start = Instant::now();
    for i in 0..CALLS {
        let _ = black_box(f(black_box(i)));
    }
    start.elapsed().as_nanos() as f64 / CALLS as f64
}

/// ns per call per thread of one round on each of two threads at once, on one function.
fn round_two_threads(f: fn(u64) -> Result<u64, Overflow>) -> f64 {
    let t = std::thread::spawn(move || round(f));
    let here = round(f);
    (here + t.join().unwrap_or(here)) / 2.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // One warm-up round each (registration, page faults, calibration).
    for (_, f) in VARIANTS {
        round(f);
    }
    let mut times = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..ROUNDS {
        for (t, (_, f)) in times.iter_mut().zip(VARIANTS) {
            t.push(round(f));
        }
    }
    let ns: Vec<f64> = times.into_iter().map(median).collect();
    // In turns, as the one-thread rounds: drift on a shared machine hits both alike.
    let (mut bare_twos, mut sampled_twos) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        bare_twos.push(round_two_threads(bare));
        sampled_twos.push(round_two_threads(sampled));
    }
    let (bare_two, sampled_two) = (median(bare_twos), median(sampled_twos));
    let over = |i: usize| ns[i] - ns[0];
    println!(
        "plain loop: {CALLS} calls a round, median of {ROUNDS} rounds (overhead = variant - bare)"
    );
    println!("{:<12} {:>10} {:>10}", "variant", "ns/call", "overhead");
    for (i, (name, _)) in VARIANTS.iter().enumerate() {
        println!("{name:<12} {:>10.2} {:>10.2}", ns[i], over(i));
    }
    let (clock, ours, metered) = (over(1), over(2), over(3));
    println!(
        "\nrecording cost above the two clock reads = {:.2} ns  (goal <= 3)",
        ours - clock
    );
    println!(
        "metered overhead / fnmetrics overhead     = {:.2}  (goal >= 3)",
        metered / ours
    );
    let sampled = over(4);
    println!("\nsample = 64: every call counted, about one in 64 timed");
    println!(
        "sampled overhead / two clock reads        = {:.2}  (goal <= 0.25)",
        sampled / clock
    );
    println!(
        "metered overhead / sampled overhead       = {:.1}  (goal >= 10)",
        metered / sampled
    );
    println!(
        "2 threads on one sampled fn: {sampled_two:.2} ns/call (bare {bare_two:.2}); \
         overhead 2 threads / 1 thread = {:.2}  (goal <= 1.25)",
        (sampled_two - bare_two) / sampled
    );
}
