//! [`Aggregate`]: the counters of one function as they leave the process (deltas) or come back
//! from a sink (sums), and how a delta is taken between two snapshots.

use crate::snapshot::Snapshot;
use std::sync::Arc;

/// The aggregate counters of one function: in a [`FlushBatch`](crate::FlushBatch), what they gained since the
/// previous flush; read back from a sink, the sum of every flush (see
/// [`Snapshot::from_aggregate`](crate::Snapshot::from_aggregate)).
///
/// ```
/// let mut a = fnmetrics_core::Aggregate::new("app::f");
/// a.calls += 1;
/// a.total_ns += 1_500;
/// a.min_ns = 1_500;
/// a.max_ns = 1_500;
/// a.buckets.push((fnmetrics_core::bucket_index(1_500) as u16, 1));
/// assert_eq!(fnmetrics_core::Snapshot::from_aggregate(&a).mean().as_nanos(), 1_500);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    /// The function's name.
    pub name: Arc<str>,
    /// New calls.
    pub calls: u64,
    /// New errors.
    pub errors: u64,
    /// New panics.
    pub panics: u64,
    /// New cancelled calls.
    pub cancelled: u64,
    /// New dropped entries.
    pub dropped_entries: u64,
    /// Added call time, ns.
    pub total_ns: u64,
    /// The shortest call so far (all time in this process), ns; `u64::MAX` if none.
    pub min_ns: u64,
    /// The longest call so far (all time in this process), ns.
    pub max_ns: u64,
    /// New counts per histogram bucket, `(index, count)`.
    pub buckets: Vec<(u16, u64)>,
}

impl Aggregate {
    /// All counters zero (and `min_ns` at `u64::MAX`: no call yet).
    ///
    /// ```
    /// let a = fnmetrics_core::Aggregate::new("app::f");
    /// assert_eq!((a.calls, a.min_ns), (0, u64::MAX));
    /// ```
    pub fn new(name: &str) -> Aggregate {
        Aggregate {
            name: name.into(),
            calls: 0,
            errors: 0,
            panics: 0,
            cancelled: 0,
            dropped_entries: 0,
            total_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            buckets: Vec::new(),
        }
    }
}

/// What `now` gained over `before` (`None`: nothing sent yet). A counter that went down was reset
/// (`fnmetrics::reset`): it counts from zero again.
pub(crate) fn delta(before: Option<&Snapshot>, now: &Snapshot) -> Aggregate {
    // A counter that went down was reset (fnmetrics::reset): count from zero again.
    let sub = |a: u64, b: Option<u64>| match b {
        Some(b) if b <= a => a - b,
        _ => a,
    };
    let mut buckets = Vec::new();
    for (i, c) in now.histogram.nonzero() {
        let was = before.map(|b| b.histogram.bucket(i));
        let d = sub(c, was);
        if d != 0 {
            buckets.push((i as u16, d));
        }
    }
    Aggregate {
        name: now.name.as_str().into(),
        calls: sub(now.calls, before.map(|b| b.calls)),
        errors: sub(now.errors, before.map(|b| b.errors)),
        panics: sub(now.panics, before.map(|b| b.panics)),
        cancelled: sub(now.cancelled, before.map(|b| b.cancelled)),
        dropped_entries: sub(now.dropped_entries, before.map(|b| b.dropped_entries)),
        total_ns: sub(now.total_ns, before.map(|b| b.total_ns)),
        min_ns: now.min_ns,
        max_ns: now.max_ns,
        buckets,
    }
}
