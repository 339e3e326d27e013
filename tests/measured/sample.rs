//! `#[measured(sample = N)]`: every call, error, panic and cancellation counted exactly, about one
//! call in N timed, chosen at random so that periodic workloads are not aliased.

use crate::{counts, poll_once, MyErr, YieldOnce};
use fnmetrics::measured;
use std::hint::black_box;
use std::time::Duration;

#[measured(sample = 64)]
fn sampled(i: u64) -> Result<u64, MyErr> {
    if i.is_multiple_of(7) {
        Err(MyErr)
    } else {
        Ok(i)
    }
}

#[test]
fn every_call_and_error_is_counted_and_about_one_in_n_is_timed() {
    const CALLS: u64 = 200_000;
    for i in 0..CALLS {
        let _ = sampled(i);
    }
    let m = metrics!("sampled");
    assert_eq!(counts(&m), (CALLS, CALLS.div_ceil(7), 0, 0));
    fnmetrics_test_support::assert_about_one_in(64, CALLS, m.timed);
    assert_eq!(
        m.histogram().count(),
        m.timed,
        "timings cover the timed calls"
    );
    assert!(m.mean() > Duration::ZERO && m.min() <= m.max());
}

#[measured(sample = 16)]
fn sampled_panics(i: u64) {
    assert!(!i.is_multiple_of(3), "every third call panics");
}

#[test]
fn panics_of_a_sampled_function_are_counted_exactly() {
    for i in 0..3_000 {
        let _ = std::panic::catch_unwind(|| sampled_panics(i));
    }
    let m = metrics!("sampled_panics");
    assert_eq!(counts(&m), (3_000, 1_000, 1_000, 0));
}

#[measured(sample = 8)]
async fn sampled_async() {
    YieldOnce::default().await;
}

#[test]
fn cancellations_of_a_sampled_async_function_are_counted_exactly() {
    for _ in 0..800 {
        let mut f = Box::pin(sampled_async());
        assert!(poll_once(&mut f).is_pending());
        drop(f);
    }
    let m = metrics!("sampled_async");
    assert_eq!(counts(&m), (0, 0, 0, 800));
}

struct Cache;

#[measured(sample = 32)]
impl Cache {
    fn lookup(&self, i: u64) -> Option<u64> {
        i.is_multiple_of(2).then_some(i)
    }
}

#[test]
fn sample_on_an_impl_block_samples_each_method() {
    for i in 0..64_000 {
        black_box(Cache.lookup(i));
    }
    let m = metrics!("Cache::lookup");
    assert_eq!(m.calls, 64_000);
    fnmetrics_test_support::assert_about_one_in(32, 64_000, m.timed);
}
