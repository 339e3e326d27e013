//! Call counts and times: concurrency, recursion, generic instantiations, durations.

use crate::{counts, MyErr};
use fnmetrics::measured;
use std::time::Duration;

#[measured]
fn hot(i: u64) -> Result<u64, MyErr> {
    if i.is_multiple_of(5) {
        Err(MyErr)
    } else {
        Ok(i)
    }
}

#[test]
fn counts_are_exact_under_concurrency() {
    const THREADS: u64 = 4;
    const CALLS: u64 = 250_000;
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(|| {
                for i in 0..CALLS {
                    let _ = hot(i);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let m = metrics!("hot");
    assert_eq!(counts(&m), (1_000_000, THREADS * CALLS / 5, 0, 0));
    assert_eq!(m.histogram().count(), 1_000_000);
}

#[measured]
fn describe<T: std::fmt::Debug>(value: T) -> String {
    format!("{value:?}")
}

#[test]
fn generic_instantiations_share_one_name() {
    describe(1u8);
    describe("two");
    describe(vec![3]);
    assert_eq!(counts(&metrics!("describe")), (3, 0, 0, 0));
}

#[measured]
fn factorial(n: u64) -> u64 {
    if n <= 1 {
        return 1;
    }
    n * factorial(n - 1)
}

#[measured]
fn find_zero(n: u32) -> Result<u32, MyErr> {
    match n {
        0 => Err(MyErr),
        n => find_zero(n - 1).or(Ok(n)),
    }
}

#[test]
fn recursion_counts_every_level() {
    assert_eq!(factorial(10), 3_628_800);
    assert_eq!(counts(&metrics!("factorial")), (10, 0, 0, 0));
    assert_eq!(find_zero(4), Ok(1));
    assert_eq!(counts(&metrics!("find_zero")), (5, 1, 0, 0));
}

#[measured]
fn nap(millis: u64) {
    std::thread::sleep(Duration::from_millis(millis));
}

#[test]
fn call_times_cover_the_body() {
    for millis in [5, 10, 15] {
        nap(millis);
    }
    let m = metrics!("nap");
    assert_eq!(m.calls, 3);
    assert!(m.min() >= Duration::from_millis(5), "{m:?}");
    assert!(m.max() >= Duration::from_millis(15), "{m:?}");
    assert!(m.total() >= Duration::from_millis(30), "{m:?}");
    assert!(m.min() <= m.mean() && m.mean() <= m.max(), "{m:?}");
    let median = m.quantile(0.5);
    assert!(m.min() <= median && median <= m.max(), "{m:?}");
}
