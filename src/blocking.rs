//! Blocking calls for async code: [`on_thread`] runs one on a thread of its own and returns a
//! future of its result, which any executor can await (no runtime is assumed).

use fnmetrics_core::{Error, ErrorKind};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// The result of a call running on its own thread, once it is there.
struct Handoff<T> {
    result: Option<Result<T, Error>>,
    waker: Option<Waker>,
}

/// A future of what a blocking call on another thread returns ([`on_thread`]).
pub(crate) struct ThreadFuture<T>(Arc<Mutex<Handoff<T>>>);

impl<T> Future for ThreadFuture<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Puts the call's result in the slot and wakes the future; a call that panicked leaves an
/// error there instead, so the future never waits forever.
struct Completer<T>(Arc<Mutex<Handoff<T>>>, Option<Result<T, Error>>);

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        let result = self.1.take().unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Stopped,
                "the thread of a blocking fnmetrics call panicked",
            ))
        });
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.result = Some(result);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    }
}

/// Runs `f` on a new thread named `name`; the returned future resolves to its result.
pub(crate) fn on_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> ThreadFuture<T> {
    let slot = Arc::new(Mutex::new(Handoff {
        result: None,
        waker: None,
    }));
    let completer = Completer(slot.clone(), None);
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            // The whole completer moves in (not only the field a closure would capture), so it
            // completes the future when this thread is done, however it ends.
            let mut completer = completer;
            completer.1 = Some(f());
        });
    if let Err(e) = spawned {
        // The closure (and its completer) was dropped unrun; say why.
        slot.lock().unwrap_or_else(PoisonError::into_inner).result = Some(Err(Error::with_source(
            ErrorKind::Unavailable,
            format!("cannot spawn {name}"),
            e,
        )));
    }
    ThreadFuture(slot)
}
