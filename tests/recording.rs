//! Recording in this process: exact counts under concurrency, thread exit, names.

use fnmetrics::measured;
use std::time::Duration;

#[derive(Debug)]
struct Odd;

#[measured(name = "recording::exact")]
fn exact(i: u64) -> Result<u64, Odd> {
    if i.is_multiple_of(7) {
        Err(Odd)
    } else {
        Ok(i)
    }
}

#[test]
fn counts_are_exact_with_four_threads_of_a_million_calls() {
    const THREADS: u64 = 4;
    const CALLS: u64 = 1_000_000;
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(|| {
                for i in 0..CALLS {
                    let _ = exact(i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let m = fnmetrics::get("recording::exact").unwrap();
    assert_eq!(m.calls, THREADS * CALLS);
    assert_eq!(m.errors, THREADS * CALLS.div_ceil(7));
    assert_eq!(m.histogram().count(), THREADS * CALLS);
    assert_eq!(m.panics, 0);
}

#[measured(name = "recording::short_lived")]
fn short_lived() {}

#[test]
fn calls_made_on_threads_that_exited_are_kept() {
    for round in 0..50u64 {
        std::thread::spawn(move || {
            for _ in 0..=round {
                short_lived();
            }
        })
        .join()
        .unwrap();
    }
    let m = fnmetrics::get("recording::short_lived").unwrap();
    assert_eq!(m.calls, (1..=50).sum::<u64>());
}

#[measured(name = "recording::sleepy")]
fn sleepy(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn times_and_quantiles_follow_the_calls() {
    // Each call lasts at least its sleep and at most what the caller saw around it (plus 1 % for
    // the TSC's calibration against the OS clock); under load the upper bound grows, so the
    // checks hold whatever the scheduler does.
    let mut upper = Vec::new();
    for ms in [2, 4, 8, 16] {
        let t = std::time::Instant::now();
        sleepy(ms);
        upper.push(t.elapsed().mul_f64(1.01));
    }
    let m = fnmetrics::get("recording::sleepy").unwrap();
    assert_eq!(m.calls, 4);
    assert!(
        m.min() >= Duration::from_millis(2) && m.min() <= upper[0],
        "{:?}",
        m.min()
    );
    assert!(m.max() >= Duration::from_millis(16), "{:?}", m.max());
    assert!(m.max() <= *upper.iter().max().unwrap(), "{:?}", m.max());
    assert!(m.total() >= Duration::from_millis(30), "{:?}", m.total());
    assert!(m.total() <= upper.iter().sum(), "{:?}", m.total());
    // The median of four is the second smallest: the 4 ms call, or, if the 2 ms one was held
    // up longer, that one; both lie in [4 ms, its upper bound], give or take 2 % of bucketing.
    let p50 = m.quantile(0.5).as_secs_f64();
    let hi = upper[0].max(upper[1]).as_secs_f64();
    assert!(
        (0.004 * 0.98..=hi * 1.02).contains(&p50),
        "p50 {p50} not in [4 ms, {hi}]"
    );
    assert!(m.quantile(1.0) <= m.max());
}

#[test]
fn unknown_names_are_none() {
    assert!(fnmetrics::get("recording::never_called").is_none());
}

#[measured(name = "recording::listed_a")]
fn listed_a() {}

#[measured(name = "recording::listed_b")]
fn listed_b() {}

#[test]
fn snapshot_all_lists_every_function_sorted() {
    listed_b();
    listed_a();
    let all = fnmetrics::snapshot_all();
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"recording::listed_a"));
    assert!(names.contains(&"recording::listed_b"));
    assert!(names.windows(2).all(|w| w[0] <= w[1]));
}
