//! The sync `postgres` client blocks on a tokio runtime of its own, and tokio panics when that
//! happens on a thread that is running a runtime ("Cannot start a runtime from within a
//! runtime"), which is where a tokio service calls us from. [`outside_runtime`] moves such a
//! call to a thread of its own.

use fnmetrics_core::{Error, ErrorKind};

/// Whether this thread runs inside a tokio runtime (or has entered one).
pub(crate) fn in_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Runs `f` here, or, on a thread inside a tokio runtime, on a short-lived thread of its own
/// while this one waits: the call still blocks its caller (as documented on each public
/// method), but it no longer panics. A panic in `f` is passed on.
pub(crate) fn outside_runtime<T: Send>(
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> Result<T, Error> {
    if !in_runtime() {
        return f();
    }
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("fnmetrics-postgres".into())
            .spawn_scoped(s, f)
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Unavailable,
                    "cannot spawn a thread for a PostgreSQL call made inside a tokio runtime",
                    e,
                )
            })?;
        worker
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
