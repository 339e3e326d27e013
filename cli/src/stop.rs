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
