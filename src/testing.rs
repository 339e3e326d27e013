//! Helpers for tests of what `#[measured]` records, without a flusher and without
//! [`reset`](crate::reset): a [`Recording`] keeps the registry's state when it starts and gives
//! what each function gained since, so tests that call their own functions run in parallel,
//! in one process, without a lock.
//!
//! ```
//! #[fnmetrics::measured(name = "doc::testing::checkout")]
//! fn checkout(ok: bool) -> Result<(), ()> {
//!     if ok { Ok(()) } else { Err(()) }
//! }
//!
//! let rec = fnmetrics::testing::Recording::start();
//! let _ = checkout(true);
//! let _ = checkout(false);
//! let m = rec.get("doc::testing::checkout").unwrap();
//! assert_eq!((m.calls, m.errors), (2, 1));
//! ```

use crate::Snapshot;
use std::collections::HashMap;

/// What the process's functions recorded since [`Recording::start`]: counts, totals and the
/// histogram (so the mean and the quantiles) are exact for the calls since; `min` and `max` are
/// over the whole life of the process, as the registry keeps no others. Calls other threads
/// make to the same functions meanwhile count too: give each test functions of its own.
#[derive(Debug)]
pub struct Recording {
    before: HashMap<String, Snapshot>,
}

impl Recording {
    /// Starts a recording: the registry's state now is its zero.
    ///
    /// ```
    /// let rec = fnmetrics::testing::Recording::start();
    /// assert!(rec.get("doc::testing::never_called").is_none());
    /// ```
    pub fn start() -> Recording {
        let before = crate::snapshot_all()
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        Recording { before }
    }

    /// What function `name` recorded since the start; `None` if it was never called, or not
    /// called since.
    ///
    /// ```
    /// #[fnmetrics::measured(name = "doc::testing::get")]
    /// fn f() {}
    /// f();
    /// let rec = fnmetrics::testing::Recording::start();
    /// assert!(rec.get("doc::testing::get").is_none(), "called before the start only");
    /// f();
    /// assert_eq!(rec.get("doc::testing::get").unwrap().calls, 1);
    /// ```
    pub fn get(&self, name: &str) -> Option<Snapshot> {
        let now = crate::get(name)?;
        let delta = now.delta_since(self.before.get(name));
        (!delta.is_empty()).then_some(delta)
    }

    /// What every function called since the start recorded, sorted by name.
    ///
    /// ```
    /// #[fnmetrics::measured(name = "doc::testing::all")]
    /// fn f() {}
    /// let rec = fnmetrics::testing::Recording::start();
    /// f();
    /// assert!(rec.all().iter().any(|s| s.name == "doc::testing::all" && s.calls == 1));
    /// ```
    pub fn all(&self) -> Vec<Snapshot> {
        crate::snapshot_all()
            .into_iter()
            .filter_map(|s| {
                let d = s.delta_since(self.before.get(&s.name));
                (!d.is_empty()).then_some(d)
            })
            .collect()
    }
}
