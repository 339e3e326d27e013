//! Futures dropped after a poll and before completion are cancelled, not calls; never polled,
//! they record nothing. The same for `async fn`, `#[async_trait]` methods and plain fns returning
//! a future.
// The shapes under test are futures written without `async fn`.
#![allow(clippy::manual_async_fn)]

use crate::{counts, poll_once, MyErr, YieldOnce};
use fnmetrics::measured;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

#[measured]
async fn abandoned() -> Result<(), MyErr> {
    YieldOnce::default().await;
    Ok(())
}

#[measured]
async fn never_polled() {}

#[test]
fn dropped_futures_are_counted_as_cancelled_not_as_calls() {
    for _ in 0..2 {
        let mut future = Box::pin(abandoned());
        assert!(poll_once(&mut future).is_pending());
        drop(future);
    }
    let m = metrics!("abandoned");
    assert_eq!(counts(&m), (0, 0, 0, 2));
    assert_eq!(m.total(), Duration::ZERO);

    // Finishing after a pending poll is an ordinary call.
    let mut future = Box::pin(abandoned());
    assert!(poll_once(&mut future).is_pending());
    assert_eq!(poll_once(&mut future), Poll::Ready(Ok(())));
    assert_eq!(counts(&metrics!("abandoned")), (1, 0, 0, 2));

    // The body, and so the measurement, starts at the first poll.
    drop(never_polled());
    assert!(fnmetrics::get(concat!(module_path!(), "::never_polled")).is_none());
}

#[measured]
fn impl_future() -> impl Future<Output = Result<(), MyErr>> {
    async {
        YieldOnce::default().await;
        Ok(())
    }
}

#[measured]
fn boxed(fail: bool) -> Pin<Box<dyn Future<Output = Result<(), MyErr>> + Send>> {
    if fail {
        return Box::pin(async {
            YieldOnce::default().await;
            Err(MyErr)
        });
    }
    Box::pin(async {
        YieldOnce::default().await;
        Ok(())
    })
}

#[test]
fn futures_returned_by_plain_fns_are_cancelled_like_async_fns() {
    let mut future = Box::pin(impl_future());
    assert!(poll_once(&mut future).is_pending());
    drop(future);
    drop(impl_future());
    assert_eq!(counts(&metrics!("impl_future")), (0, 0, 0, 1));

    for fail in [false, true] {
        let mut future = boxed(fail);
        assert!(poll_once(&mut future).is_pending());
    }
    drop(boxed(true));
    assert_eq!(counts(&metrics!("boxed")), (0, 0, 0, 2));
}
