//! A clean stop on SIGINT and SIGTERM: the signal sets a flag that long-running commands check
//! between steps.

use crate::error::{CliError, CliResult};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set once SIGINT or SIGTERM arrived.
#[derive(Clone, Debug)]
pub(crate) struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Registers the flag for SIGINT and SIGTERM. A second signal while stopping ends the
    /// process at once (exit status 1), for a stop that hangs (a batch stuck on a server).
    pub(crate) fn install() -> CliResult<Stop> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it only acts when the flag is already set: the second signal.
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&flag))
                .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&flag)))
                .map_err(|e| CliError::caused("cannot install the signal handlers", e))?;
        }
        Ok(Stop(flag))
    }

    /// Runs `f` on a thread of its own on which SIGINT and SIGTERM are blocked, and waits for
    /// it: the signals reach this thread instead, so they set the flag without interrupting
    /// `f`'s system calls. A socket with a timeout, as every server connection has, returns
    /// `EINTR` to a signal even with `SA_RESTART`, and a client library then fails the command
    /// it was waiting on (an acknowledgement that the server may have applied).
    pub(crate) fn shielded<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        // SAFETY: plain libc calls on a sigset_t of our own; `pthread_sigmask` changes only this
        // thread's mask, and the old mask is put back before returning.
        unsafe {
            let mut block: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, SIGINT);
            libc::sigaddset(&mut block, SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
            let result = std::thread::scope(|s| {
                // Spawned with the signals blocked: the thread inherits the mask.
                let worker = s.spawn(f);
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                worker.join()
            });
            result.unwrap_or_else(|p| std::panic::resume_unwind(p))
        }
    }

    /// Whether a stop was asked for.
    pub(crate) fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sleeps for `d`, waking early on a stop; returns whether a stop was asked for.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.requested() {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }
}
