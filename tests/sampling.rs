//! Sampling where timing and process-wide settings matter, in a binary of its own: the run-time
//! default (`fnmetrics::set_default_sample`) is process-wide and would change what other tests'
//! functions time, so the test that sets it runs in a process of its own (`own_process!`); and
//! the quantiles of a sample are compared with the exact ones, which other tests' threads would
//! disturb.
#![cfg(not(feature = "disabled"))]

use fnmetrics::measured;
use fnmetrics::testing::Recording;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn name(function: &str) -> String {
    format!("{}::{function}", module_path!())
}

fn get(function: &str) -> fnmetrics::Snapshot {
    fnmetrics::get(&name(function)).unwrap()
}

#[measured(sample = 1)]
fn own_sample_of_one(i: u64) -> u64 {
    i
}

#[measured]
fn follows_the_default(i: u64) -> u64 {
    i
}

#[test]
fn the_run_time_default_samples_functions_without_their_own_sample() {
    fnmetrics_test_support::own_process!();
    assert_eq!(fnmetrics::default_sample(), 1);
    fnmetrics::set_default_sample(50);
    assert_eq!(fnmetrics::default_sample(), 50);
    for i in 0..50_000 {
        black_box(own_sample_of_one(i));
        black_box(follows_the_default(i));
    }
    fnmetrics::set_default_sample(1);
    let (own, default) = (get("own_sample_of_one"), get("follows_the_default"));
    assert_eq!(
        (own.calls, own.timed),
        (50_000, 50_000),
        "its own sample wins"
    );
    assert_eq!(default.calls, 50_000);
    fnmetrics_test_support::assert_about_one_in(50, 50_000, default.timed);
}

/// Spins for about `d`.
fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

const FAST: Duration = Duration::from_nanos(500);
const SLOW: Duration = Duration::from_micros(5);

/// Slow on every 10th call: 10 does not divide 64, so a fixed stride of 64 would time the slow
/// calls every fifth sample or never, depending on where it started.
#[measured(sample = 64)]
fn bimodal_sampled(i: u64) {
    spin(if i.is_multiple_of(10) { SLOW } else { FAST });
}

#[measured]
fn bimodal_exact(i: u64) {
    spin(if i.is_multiple_of(10) { SLOW } else { FAST });
}

#[test]
fn a_bimodal_function_gets_honest_quantiles_and_mean_from_its_sample() {
    // A run whose timings a busy machine disturbed (a thread preempted for milliseconds weighs
    // far more in a mean over 6 250 calls than over 400 000) is run again, twice at most: a
    // sample that is biased fails every run.
    let mut last = String::new();
    for _ in 0..3 {
        match bimodal_run(&Recording::start()) {
            Ok(()) => return,
            Err(why) => last = why,
        }
    }
    panic!("{last}");
}

/// One run, read from `rec`: what the functions recorded since it started.
fn bimodal_run(rec: &Recording) -> Result<(), String> {
    const CALLS: u64 = 400_000;
    for i in 0..CALLS {
        bimodal_sampled(i);
        bimodal_exact(i);
    }
    let get = |function| rec.get(&name(function)).unwrap();
    let (s, e) = (get("bimodal_sampled"), get("bimodal_exact"));
    assert_eq!((s.calls, e.calls), (CALLS, CALLS));
    fnmetrics_test_support::assert_about_one_in(64, CALLS, s.timed);
    assert!(e.quantile(0.95) >= SLOW && e.quantile(0.5) < SLOW / 2);
    let close = |what: &str, a: Duration, b: Duration, within: f64| {
        let (a, b) = (a.as_nanos() as f64, b.as_nanos() as f64);
        match (a - b).abs() <= within * b {
            true => Ok(()),
            false => Err(format!("{what}: sampled {a} ns, every call {b} ns")),
        }
    };
    // p50 is a fast call, p95 a slow one (10 % of the calls), the mean about a tenth of SLOW:
    // about 6 250 timed calls give each within a few percent.
    close("p50", s.quantile(0.5), e.quantile(0.5), 0.15)?;
    close("p95", s.quantile(0.95), e.quantile(0.95), 0.15)?;
    close("mean", s.mean(), e.mean(), 0.2)?;
    // The slow calls' share of the timed ones is theirs of all calls, 10 % (no aliasing): more
    // than 7 %, less than 15 %.
    let slow = SLOW * 9 / 10;
    match s.quantile(0.93) >= slow && s.quantile(0.85) < slow {
        true => Ok(()),
        false => Err(format!(
            "slow share: p85 {:?}, p93 {:?}",
            s.quantile(0.85),
            s.quantile(0.93)
        )),
    }
}
