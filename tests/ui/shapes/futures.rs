//! Functions that are not `async fn` but return a future: `impl Future`, boxed trait objects,
//! early returns, futures built first and returned later, trait methods returning `impl Future`.
//! Compiled with and without `#[measured]` (tests/ui.rs makes the bare twin).
#![deny(warnings)]
#![allow(clippy::manual_async_fn)]

use fnmetrics::measured;
use std::future::Future;
use std::pin::Pin;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `futures::FutureExt::boxed`, written out so that this test needs no `futures` crate.
trait Boxed<'a>: Future + Sized + Send + 'a {
    fn boxed(self) -> BoxFuture<'a, Self::Output> {
        Box::pin(self)
    }
}

impl<'a, F: Future + Send + 'a> Boxed<'a> for F {}

#[derive(Debug)]
struct Failed;

#[measured]
fn impl_future(fail: bool) -> impl Future<Output = Result<u32, Failed>> {
    async move {
        if fail {
            return Err(Failed);
        }
        Ok(1)
    }
}

#[measured]
fn impl_future_send_unpin(n: u32) -> impl Future<Output = u32> + Send + Unpin {
    std::future::ready(n)
}

#[measured]
fn impl_future_prefix(items: &[u32]) -> impl Future<Output = u32> + '_ {
    let first = items.first().copied().unwrap_or_default();
    async move { first + items.len() as u32 }
}

#[measured]
fn impl_future_from_call(n: u32) -> impl Future<Output = Result<u32, Failed>> {
    impl_future(n == 0)
}

#[measured]
fn box_pin_early_return(n: u32) -> Pin<Box<dyn Future<Output = Result<u32, Failed>> + Send>> {
    if n == 0 {
        return Box::pin(async move { Err(Failed) });
    }
    Box::pin(async move { Ok(n) })
}

#[measured]
fn box_pin_built_first(n: u32) -> Pin<Box<dyn Future<Output = u32> + Send>> {
    let fut = async move { n * 2 };
    Box::pin(fut)
}

#[measured]
fn boxed_method(n: u32) -> BoxFuture<'static, Result<u32, Failed>> {
    async move {
        if n == 0 {
            Err(Failed)
        } else {
            Ok(n)
        }
    }
    .boxed()
}

#[measured]
fn box_pin_branches(n: u32) -> BoxFuture<'static, u32> {
    match n {
        0 => Box::pin(async { 0 }),
        _ => Box::pin(async move { n + 1 }),
    }
}

#[measured]
fn box_pin_collect<'a>(
    words: &'a [&'a str],
) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + 'a>> {
    Box::pin(async move { words.iter().map(|w| w.to_uppercase()).collect() })
}

#[measured]
fn box_pin_local(n: u32) -> Pin<Box<dyn Future<Output = u32>>> {
    let shared = std::rc::Rc::new(n);
    Box::pin(async move { *shared })
}

#[measured]
fn boxed_from_call(n: u32) -> BoxFuture<'static, u32> {
    box_pin_built_first(n)
}

trait Service {
    fn call(&self, n: u32) -> impl Future<Output = Result<u32, Failed>> + Send;
}

struct Doubler;

impl Service for Doubler {
    #[measured]
    fn call(&self, n: u32) -> impl Future<Output = Result<u32, Failed>> + Send {
        async move { n.checked_mul(2).ok_or(Failed) }
    }
}

struct Tripler;

#[measured]
impl Service for Tripler {
    fn call(&self, n: u32) -> impl Future<Output = Result<u32, Failed>> + Send {
        async move { n.checked_mul(3).ok_or(Failed) }
    }
}

struct Conn {
    id: u32,
}

impl Conn {
    #[measured]
    fn query<'a>(&'a self, sql: &'a str) -> impl Future<Output = Result<String, Failed>> + 'a {
        async move { Ok(format!("{} {sql}", self.id)) }
    }

    #[measured]
    fn boxed_query(&self) -> BoxFuture<'_, u32> {
        Box::pin(async move { self.id })
    }
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

fn assert_unpin<T: Unpin>(value: T) -> T {
    value
}

pub(crate) fn main() {
    use pollster::block_on;
    assert!(block_on(assert_send(impl_future(true))).is_err());
    assert_eq!(
        block_on(assert_unpin(assert_send(impl_future_send_unpin(3)))),
        3
    );
    assert_eq!(block_on(impl_future_prefix(&[4, 5])), 6);
    assert!(block_on(impl_future_from_call(0)).is_err());
    assert!(block_on(box_pin_early_return(0)).is_err());
    assert_eq!(block_on(box_pin_early_return(2)).unwrap(), 2);
    assert_eq!(block_on(box_pin_built_first(2)), 4);
    assert!(block_on(boxed_method(0)).is_err());
    assert_eq!(block_on(box_pin_branches(1)), 2);
    assert_eq!(block_on(box_pin_collect(&["a", "b"])), ["A", "B"]);
    assert_eq!(block_on(box_pin_local(7)), 7);
    assert_eq!(block_on(boxed_from_call(1)), 2);
    assert_eq!(block_on(assert_send(Doubler.call(2))).unwrap(), 4);
    assert_eq!(block_on(Tripler.call(2)).unwrap(), 6);
    let conn = Conn { id: 1 };
    assert_eq!(block_on(conn.query("select")).unwrap(), "1 select");
    assert_eq!(block_on(conn.boxed_query()), 1);
}
