//! Recursive functions, sync and async: every level is one call.
#![deny(warnings)]

use fnmetrics::measured;
use std::future::Future;
use std::pin::Pin;

#[measured]
fn fib(n: u32) -> u64 {
    if n < 2 {
        return n as u64;
    }
    fib(n - 1) + fib(n - 2)
}

#[measured]
fn countdown(n: u32) -> Result<u32, String> {
    if n == 0 {
        return Err("liftoff".to_owned());
    }
    countdown(n - 1).or(Ok(n))
}

#[measured]
fn depth_async(n: u32) -> Pin<Box<dyn Future<Output = u32>>> {
    Box::pin(async move {
        if n == 0 {
            0
        } else {
            1 + depth_async(n - 1).await
        }
    })
}

fn main() {
    assert_eq!(fib(10), 55);
    // fib(n) makes 2 * fib(n + 1) - 1 calls.
    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::fib"))
            .unwrap()
            .calls,
        177
    );
    assert_eq!(countdown(3), Ok(1));
    let m = fnmetrics::get(concat!(module_path!(), "::countdown")).unwrap();
    assert_eq!((m.calls, m.errors), (4, 1));
    assert_eq!(pollster::block_on(depth_async(4)), 4);
    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::depth_async"))
            .unwrap()
            .calls,
        5
    );
}
