//! What `#[measured]` records at run time, one module a feature: outcomes and errors, async
//! functions, cancellation, functions returning futures, names, methods, call counts and times.
//!
//! One test binary (like tracing-attributes' suite, but in modules) so that CI links one binary,
//! not one per feature. The run-time off switch has its own binary, `tests/off_switch.rs`: it is
//! process-wide, and turning it off here would lose the records of tests running beside it.
//!
//! Tests run in parallel in one process and never reset the registry, so each one measures
//! functions of its own and reads them by name.
//!
//! Built without the `disabled` feature only: with it nothing is measured.
#![cfg(not(feature = "disabled"))]

use fnmetrics::Snapshot;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// The metrics of function `$name` (a path relative to the calling module).
macro_rules! metrics {
    ($name:expr) => {
        crate::metrics_named(concat!(module_path!(), "::", $name))
    };
}

mod async_fn;
mod calls;
mod cancel;
mod err;
mod futures;
mod methods;
mod names;
mod sample;

/// The metrics recorded under `name`.
fn metrics_named(name: &str) -> Snapshot {
    fnmetrics::get(name).unwrap_or_else(|| panic!("nothing recorded for {name}"))
}

/// `(calls, errors, panics, cancelled)`.
fn counts(m: &Snapshot) -> (u64, u64, u64, u64) {
    (m.calls, m.errors, m.panics, m.cancelled)
}

#[derive(Debug, PartialEq)]
struct MyErr;

impl std::fmt::Display for MyErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}

impl std::error::Error for MyErr {}

/// Pending on the first poll, ready on the second.
#[derive(Default)]
struct YieldOnce {
    yielded: bool,
}

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}
