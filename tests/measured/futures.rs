//! Plain fns returning a future are measured like `async fn`s: from the first poll to completion,
//! with the future's output classified, whatever shape the body builds the future in.
// The shapes under test are futures written without `async fn`.
#![allow(clippy::manual_async_fn)]

use crate::{counts, poll_once, MyErr, YieldOnce};
use fnmetrics::measured;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `futures::FutureExt::boxed`, written out.
trait Boxed<'a>: Future + Sized + Send + 'a {
    fn boxed(self) -> BoxFuture<'a, Self::Output> {
        Box::pin(self)
    }
}

impl<'a, F: Future + Send + 'a> Boxed<'a> for F {}

/// Ok after `millis` of sleep (in the future, not when it is made), or an error.
async fn work(millis: u64, fail: bool) -> Result<u64, MyErr> {
    YieldOnce::default().await;
    std::thread::sleep(Duration::from_millis(millis));
    if fail {
        Err(MyErr)
    } else {
        Ok(millis)
    }
}

#[measured]
fn impl_future(millis: u64, fail: bool) -> impl Future<Output = Result<u64, MyErr>> {
    async move { work(millis, fail).await }
}

#[measured]
fn impl_future_from_call(millis: u64, fail: bool) -> impl Future<Output = Result<u64, MyErr>> {
    work(millis, fail)
}

#[measured]
fn early_return(millis: u64, fail: bool) -> Pin<Box<dyn Future<Output = Result<u64, MyErr>>>> {
    if fail {
        return Box::pin(async move { work(millis, true).await });
    }
    Box::pin(async move { work(millis, false).await })
}

#[measured]
fn built_first(millis: u64, fail: bool) -> BoxFuture<'static, Result<u64, MyErr>> {
    let future = async move { work(millis, fail).await };
    Box::pin(future)
}

#[measured]
fn boxed_method(millis: u64, fail: bool) -> BoxFuture<'static, Result<u64, MyErr>> {
    async move { work(millis, fail).await }.boxed()
}

trait Service {
    fn call(&self, millis: u64, fail: bool) -> impl Future<Output = Result<u64, MyErr>> + Send;
}

pub(crate) struct Api;

impl Service for Api {
    #[measured]
    fn call(&self, millis: u64, fail: bool) -> impl Future<Output = Result<u64, MyErr>> + Send {
        async move { work(millis, fail).await }
    }
}

/// Each shape: made and dropped unpolled (nothing), made now and run later (the time is the
/// run's, 5 ms, not the making's), an `Err` output (an error).
fn check(
    name: &str,
    make: impl Fn(u64, bool) -> Pin<Box<dyn Future<Output = Result<u64, MyErr>>>>,
) {
    drop(make(0, false));
    assert!(
        fnmetrics::get(name).is_none(),
        "{name}: recorded before a poll"
    );
    let later = make(5, false);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(pollster::block_on(later), Ok(5));
    assert_eq!(pollster::block_on(make(0, true)), Err(MyErr));
    let m = crate::metrics_named(name);
    assert_eq!(counts(&m), (2, 1, 0, 0), "{name}");
    assert!(m.max() >= Duration::from_millis(5), "{name}: {m:?}");
    assert!(
        m.max() < Duration::from_millis(20),
        "{name}: made, not run: {m:?}"
    );
}

#[test]
fn futures_are_measured_from_first_poll_to_completion() {
    let module = module_path!();
    check(&format!("{module}::impl_future"), |m, f| {
        Box::pin(impl_future(m, f))
    });
    check(&format!("{module}::impl_future_from_call"), |m, f| {
        Box::pin(impl_future_from_call(m, f))
    });
    check(&format!("{module}::early_return"), early_return);
    check(&format!("{module}::built_first"), |m, f| built_first(m, f));
    check(&format!("{module}::boxed_method"), |m, f| {
        boxed_method(m, f)
    });
    check(&format!("{module}::<Api as Service>::call"), |m, f| {
        Box::pin(Api.call(m, f))
    });
}

#[measured]
fn ready_now(n: u32) -> impl Future<Output = u32> + Unpin {
    std::future::ready(n)
}

#[test]
fn an_unpin_future_stays_unpin_and_is_measured() {
    let mut future = ready_now(3);
    assert_eq!(poll_once(&mut future), Poll::Ready(3));
    assert_eq!(counts(&metrics!("ready_now")), (1, 0, 0, 0));
}

/// A boxed future that comes from elsewhere cannot be wrapped without a second allocation: the
/// call is measured as a sync call (documented).
#[measured]
fn boxed_from_call(fail: bool) -> BoxFuture<'static, Result<u64, MyErr>> {
    boxed_work(fail)
}

fn boxed_work(fail: bool) -> BoxFuture<'static, Result<u64, MyErr>> {
    Box::pin(work(0, fail))
}

#[test]
fn a_boxed_future_from_another_call_is_measured_as_a_sync_call() {
    let future = boxed_from_call(true);
    assert_eq!(counts(&metrics!("boxed_from_call")), (1, 0, 0, 0));
    assert_eq!(pollster::block_on(future), Err(MyErr));
}

#[measured]
fn panics_when_polled() -> impl Future<Output = u8> {
    async { panic!("in the future") }
}

#[test]
fn a_panic_in_the_future_is_a_panic() {
    let future = panics_when_polled();
    assert!(std::panic::catch_unwind(|| pollster::block_on(future)).is_err());
    assert_eq!(counts(&metrics!("panics_when_polled")), (1, 1, 1, 0));
}

#[measured]
fn sized(n: u64) -> impl Future<Output = u64> {
    async move {
        YieldOnce::default().await;
        n
    }
}

fn sized_bare(n: u64) -> impl Future<Output = u64> {
    async move {
        YieldOnce::default().await;
        n
    }
}

#[measured]
async fn sized_async(n: u64) -> u64 {
    YieldOnce::default().await;
    n
}

async fn sized_async_bare(n: u64) -> u64 {
    YieldOnce::default().await;
    n
}

#[test]
fn futures_grow_by_no_more_than_the_guard() {
    use std::mem::size_of_val;
    let growth = size_of_val(&sized(1)) - size_of_val(&sized_bare(1));
    let async_growth = size_of_val(&sized_async(1)) - size_of_val(&sized_async_bare(1));
    assert_eq!(growth, 24);
    assert!(async_growth <= 24, "{async_growth}");
}
