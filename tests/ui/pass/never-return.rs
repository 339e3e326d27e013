//! `-> !`, uninhabited and diverging bodies: no unreachable-code warnings (nor `allow`s that a
//! `forbid` would refuse), panics counted.
#![deny(warnings)]
#![forbid(unreachable_code)]

use fnmetrics::measured;
use std::convert::Infallible;

#[measured]
fn fail(message: &str) -> ! {
    panic!("{message}")
}

#[measured]
fn fail_later(message: &str) -> ! {
    let message = message.to_uppercase();
    if message.is_empty() {
        panic!("empty");
    }
    panic!("{message}")
}

#[measured]
fn never_ok() -> Result<Infallible, String> {
    Err("never".to_owned())
}

#[measured]
fn serve() -> Infallible {
    panic!("stopped")
}

#[measured]
fn diverges_inside() -> u32 {
    panic!("no value")
}

#[measured]
async fn serve_async() -> Infallible {
    panic!("stopped")
}

#[measured]
fn opaque_diverging() -> impl std::fmt::Debug {
    panic!("no value")
}

#[measured]
async fn opaque_diverging_async() -> impl std::fmt::Debug {
    panic!("no value")
}

#[measured]
async fn async_never() -> ! {
    panic!("async never")
}

fn main() {
    std::panic::set_hook(Box::new(|_| {}));
    assert!(std::panic::catch_unwind(|| fail("boom")).is_err());
    assert!(std::panic::catch_unwind(|| fail_later("boom")).is_err());
    assert!(never_ok().is_err());
    assert!(std::panic::catch_unwind(serve).is_err());
    assert!(std::panic::catch_unwind(diverges_inside).is_err());
    assert!(std::panic::catch_unwind(|| pollster::block_on(async_never())).is_err());
    assert!(std::panic::catch_unwind(|| pollster::block_on(serve_async())).is_err());
    assert!(std::panic::catch_unwind(opaque_diverging).is_err());
    assert!(std::panic::catch_unwind(|| pollster::block_on(opaque_diverging_async())).is_err());

    for name in [
        "fail",
        "fail_later",
        "serve",
        "diverges_inside",
        "async_never",
    ] {
        let m = fnmetrics::get(&format!("{}::{name}", module_path!())).unwrap();
        assert_eq!((m.calls, m.errors, m.panics), (1, 1, 1), "{name}");
    }
    let m = fnmetrics::get(concat!(module_path!(), "::never_ok")).unwrap();
    assert_eq!((m.calls, m.errors, m.panics), (1, 1, 0));
}
