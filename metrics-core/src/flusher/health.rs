//! Readiness: what each stage knows of its server, for health checks and dashboards.

use crate::error::{Error, ErrorKind};
use parking_lot::Mutex;
use std::time::SystemTime;

/// How one stage of the flusher stands with its server.
///
/// ```
/// let h = fnmetrics::StageHealth::default();
/// assert!(!h.connected && h.retrying_since.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageHealth {
    /// The stage's last call to its server succeeded.
    pub connected: bool,
    /// The stage has connected and prepared once: for Redis, its scripts are loaded; for
    /// PostgreSQL, the schema is migrated.
    pub set_up: bool,
    /// Since when the stage has been failing (and retrying, with backoff); `None` while it works.
    pub retrying_since: Option<SystemTime>,
    /// The kind of the last failure of the current run of failures.
    pub last_error_kind: Option<ErrorKind>,
    /// Its message with its causes (passwords never appear in it).
    pub last_error: Option<String>,
    /// When the stage last succeeded.
    pub last_success: Option<SystemTime>,
}

/// How the flusher's stages stand: [`FlusherThreads::health`](crate::FlusherThreads::health).
///
/// ```
/// let h = fnmetrics::Flusher::builder().start()?.health();
/// assert!(h.stage1.is_none() && h.is_ready()); // in-process: nothing to connect to
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Stage 1 (process → Redis, or a custom sink); `None` in-process.
    pub stage1: Option<StageHealth>,
    /// Stage 2 (Redis → PostgreSQL, or a custom drain); `None` when this process runs none.
    pub stage2: Option<StageHealth>,
}

impl Health {
    /// Whether every stage is connected and set up (true in-process).
    ///
    /// ```
    /// assert!(fnmetrics::Health::default().is_ready());
    /// ```
    pub fn is_ready(&self) -> bool {
        [&self.stage1, &self.stage2]
            .into_iter()
            .flatten()
            .all(|s| s.connected && s.set_up)
    }
}

/// A stage's health, written by its thread, read by [`FlusherThreads::health`](crate::FlusherThreads::health).
#[derive(Default)]
pub(crate) struct SharedHealth(Mutex<StageHealth>);

impl SharedHealth {
    pub(crate) fn get(&self) -> StageHealth {
        self.0.lock().clone()
    }

    /// A call to the server succeeded; `set_up` too if it was a connect or a full round.
    pub(crate) fn succeeded(&self) {
        let mut h = self.0.lock();
        h.connected = true;
        h.set_up = true;
        h.retrying_since = None;
        h.last_error_kind = None;
        h.last_error = None;
        h.last_success = Some(SystemTime::now());
    }

    /// A call to the server failed: the stage retries. A failure that is not about the
    /// connection (a lock timeout, a refused row) leaves `connected` as it was.
    pub(crate) fn failed(&self, e: &Error) {
        let mut h = self.0.lock();
        if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Auth) {
            h.connected = false;
        }
        h.retrying_since.get_or_insert_with(SystemTime::now);
        h.last_error_kind = Some(e.kind());
        h.last_error = Some(e.chain());
    }
}
