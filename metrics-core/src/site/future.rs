//! Measuring a future a plain `fn` returns (`-> impl Future`, `Pin<Box<dyn Future>>`).

use super::Guard;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future measured like an `async fn`: the guard starts at the first poll and finishes when
/// the inner future is ready, with `is_error` of its output; dropped in between, the guard
/// records a cancellation (or, while unwinding, a panic). Never polled, it records nothing.
///
/// It adds an `Option<Guard>` (24 bytes) to the inner future: `start` and `is_error` are
/// closures that capture nothing, so they take no space.
#[must_use = "futures do nothing unless polled"]
pub struct Instrumented<F, S, C> {
    future: F,
    guard: Option<Guard>,
    start: S,
    is_error: C,
}

/// Wraps `future` so that it is measured from its first poll to its completion: `start` starts
/// the guard, `is_error` tells whether the output is an error.
///
/// `is_error` comes last and its parameter type is written by the macro, so that the output type
/// is known while the future (often an `async` block) is type-checked, as a declared return type
/// would make it.
///
/// ```
/// use fnmetrics_core::__private::{instrument, Guard, Site};
/// static SITE: Site = Site::new("doc::instrument");
/// let future = instrument(
///     async { Err::<u8, ()>(()) },
///     || Guard::start(&SITE),
///     |out: &Result<u8, ()>| out.is_err(),
/// );
/// assert!(fnmetrics_core::get("doc::instrument").is_none()); // Not polled yet.
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// block_on(future).unwrap_err();
/// assert_eq!(fnmetrics_core::get("doc::instrument").unwrap().errors, 1);
/// ```
#[inline(always)]
pub fn instrument<F, S, C>(future: F, start: S, is_error: C) -> Instrumented<F, S, C>
where
    F: Future,
    S: Fn() -> Guard,
    C: Fn(&F::Output) -> bool,
{
    Instrumented {
        future,
        guard: None,
        start,
        is_error,
    }
}

impl<F, S, C> Future for Instrumented<F, S, C>
where
    F: Future,
    S: Fn() -> Guard,
    C: Fn(&F::Output) -> bool,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is pinned structurally and nothing else is: it is never moved out of
        // `self` (there is no `Drop` impl, no method hands it out by value or by `&mut`), and
        // `Instrumented` is `Unpin` only when `F` is, as an auto trait. The other fields are
        // only used through `&mut`, which pinning allows for fields that are not structural.
        let this = unsafe { self.get_unchecked_mut() };
        if this.guard.is_none() {
            this.guard = Some((this.start)());
        }
        // SAFETY: see above; `this.future` stays where it is for as long as `self` is pinned.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        let output = match future.poll(cx) {
            Poll::Ready(output) => output,
            Poll::Pending => return Poll::Pending,
        };
        if let Some(guard) = this.guard.take() {
            guard.finish((this.is_error)(&output));
        }
        Poll::Ready(output)
    }
}

impl<F, S, C> fmt::Debug for Instrumented<F, S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrumented")
            .field("started", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::{instrument, Instrumented};
    use crate::__private::{Guard, Site};
    use std::future::{ready, Future, Ready};
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    #[test]
    fn adds_only_the_guard_option() {
        type Start = fn() -> Guard;
        fn size<F>() -> usize {
            std::mem::size_of::<F>()
        }
        let future = instrument(ready(1u64), || Guard::start(&SITE), |_: &u64| false);
        static SITE: Site = Site::new("core::future::size");
        assert_eq!(std::mem::size_of_val(&future), size::<Ready<u64>>() + 24);
        // A start function pointer instead of a closure would cost 8 more bytes.
        assert_eq!(
            size::<Instrumented<Ready<u64>, Start, fn(&u64) -> bool>>(),
            size::<Ready<u64>>() + 24 + 16
        );
    }

    #[test]
    fn measures_from_first_poll_to_ready() {
        static SITE: Site = Site::new("core::future::measured");
        let never_polled = instrument(ready(()), || Guard::start(&SITE), |_: &()| true);
        drop(never_polled);
        assert!(crate::get("core::future::measured").is_none());

        let mut cx = Context::from_waker(Waker::noop());
        let mut future = pin!(instrument(ready(()), || Guard::start(&SITE), |_: &()| true));
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(()));
        let m = crate::get("core::future::measured").unwrap();
        assert_eq!((m.calls, m.errors, m.cancelled), (1, 1, 0));
    }
}
