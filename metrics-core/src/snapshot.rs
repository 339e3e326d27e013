//! What `get` answers: the counts and timings of one function.

use crate::histogram::Histogram;
use std::time::Duration;

/// The metrics of one function at one moment: local (from this process), fleet-wide (from Redis)
/// or over a time window, depending on where it was read.
///
/// `calls` counts calls that finished, by returning or by panicking; `errors` counts those that
/// returned an error or panicked (`panics` is the part of `errors` that panicked). An async call
/// whose future was dropped before it finished is counted in `cancelled` only, and its time is not
/// recorded. Timings (`total`, `min`, `max`, the histogram) cover the `calls`.
///
/// ```
/// use fnmetrics_core::__private::{Guard, Site};
/// static PARSE: Site = Site::new("doc::snapshot::parse");
/// Guard::start(&PARSE).finish(false);
/// Guard::start(&PARSE).finish(true);
/// let m = fnmetrics_core::get("doc::snapshot::parse").unwrap();
/// assert_eq!((m.calls, m.errors), (2, 1));
/// assert!(m.min <= m.mean() && m.mean() <= m.max);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The function's name.
    pub name: String,
    /// Calls that finished (returned or panicked).
    pub calls: u64,
    /// Calls that returned an error or panicked.
    pub errors: u64,
    /// Calls that panicked (included in `errors`).
    pub panics: u64,
    /// Async calls dropped before they finished (not included in `calls`).
    pub cancelled: u64,
    /// Per-call entries dropped because a buffer was full (the aggregates still count the calls).
    pub dropped_entries: u64,
    /// The sum of all call times.
    pub total: Duration,
    /// The shortest call (zero when there was none).
    pub min: Duration,
    /// The longest call.
    pub max: Duration,
    pub(crate) total_ns: u64,
    pub(crate) min_ns: u64,
    pub(crate) max_ns: u64,
    pub(crate) histogram: Histogram,
}

impl Snapshot {
    pub(crate) fn empty(name: &str) -> Snapshot {
        Snapshot {
            name: name.to_owned(),
            calls: 0,
            errors: 0,
            panics: 0,
            cancelled: 0,
            dropped_entries: 0,
            total: Duration::ZERO,
            min: Duration::ZERO,
            max: Duration::ZERO,
            total_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            histogram: Histogram::new(),
        }
        .finished()
    }

    /// Fills the public `Duration` fields from the nanosecond sums.
    pub(crate) fn finished(mut self) -> Snapshot {
        self.total = Duration::from_nanos(self.total_ns);
        self.min = if self.min_ns == u64::MAX {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.min_ns)
        };
        self.max = Duration::from_nanos(self.max_ns);
        self
    }

    /// The snapshot of an aggregate read back from a sink (the sum of the flushed deltas).
    ///
    /// ```
    /// use fnmetrics_core::{Aggregate, Snapshot};
    /// let mut a = Aggregate::new("f");
    /// a.calls = 2;
    /// a.errors = 1;
    /// let s = Snapshot::from_aggregate(&a);
    /// assert_eq!((s.name.as_str(), s.calls, s.errors), ("f", 2, 1));
    /// ```
    pub fn from_aggregate(a: &crate::Aggregate) -> Snapshot {
        let mut histogram = Histogram::new();
        for &(i, c) in &a.buckets {
            histogram.add_to_bucket(usize::from(i), c);
        }
        Snapshot {
            name: a.name.to_string(),
            calls: a.calls,
            errors: a.errors,
            panics: a.panics,
            cancelled: a.cancelled,
            dropped_entries: a.dropped_entries,
            total: Duration::ZERO,
            min: Duration::ZERO,
            max: Duration::ZERO,
            total_ns: a.total_ns,
            min_ns: if a.calls == 0 { u64::MAX } else { a.min_ns },
            max_ns: a.max_ns,
            histogram,
        }
        .finished()
    }

    /// The mean call time (zero when there were no calls).
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static S: Site = Site::new("doc::mean");
    /// # let f = || Guard::start(&S).finish(false);
    /// f();
    /// assert!(fnmetrics_core::get("doc::mean").unwrap().mean() > std::time::Duration::ZERO);
    /// ```
    pub fn mean(&self) -> Duration {
        if self.calls == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.total_ns / self.calls)
    }

    /// The call time at quantile `q` (0.5 for the median, 0.99 for p99), within 2 % of the true
    /// value, and never outside `min..=max`.
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static S: Site = Site::new("doc::quantile");
    /// # let f = || Guard::start(&S).finish(false);
    /// f();
    /// let m = fnmetrics_core::get("doc::quantile").unwrap();
    /// assert!(m.quantile(0.99) <= m.max);
    /// ```
    pub fn quantile(&self, q: f64) -> Duration {
        if self.calls == 0 {
            return Duration::ZERO;
        }
        self.histogram.quantile(q).clamp(self.min, self.max)
    }

    /// The share of calls that failed, from 0.0 to 1.0.
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static S: Site = Site::new("doc::error_rate");
    /// # let f = || Guard::start(&S).finish(true);
    /// f();
    /// assert_eq!(fnmetrics_core::get("doc::error_rate").unwrap().error_rate(), 1.0);
    /// ```
    pub fn error_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.errors as f64 / self.calls as f64
        }
    }

    /// The latency histogram.
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static S: Site = Site::new("doc::histogram");
    /// # let f = || Guard::start(&S).finish(false);
    /// f();
    /// assert_eq!(fnmetrics_core::get("doc::histogram").unwrap().histogram().count(), 1);
    /// ```
    pub fn histogram(&self) -> &Histogram {
        &self.histogram
    }

    /// The total time in nanoseconds (saturating), as sinks store it.
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static S: Site = Site::new("doc::total_nanos");
    /// # let f = || Guard::start(&S).finish(false);
    /// f();
    /// let m = fnmetrics_core::get("doc::total_nanos").unwrap();
    /// assert_eq!(m.total_nanos() as u128, m.total.as_nanos());
    /// ```
    pub fn total_nanos(&self) -> u64 {
        self.total_ns
    }

    /// Adds another snapshot's counts into this one (names are kept).
    ///
    /// ```
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static S: Site = Site::new("doc::merge");
    /// # let f = || Guard::start(&S).finish(false);
    /// f();
    /// let mut a = fnmetrics_core::get("doc::merge").unwrap();
    /// let b = a.clone();
    /// a.merge(&b);
    /// assert_eq!(a.calls, 2 * b.calls);
    /// ```
    pub fn merge(&mut self, other: &Snapshot) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.panics += other.panics;
        self.cancelled += other.cancelled;
        self.dropped_entries += other.dropped_entries;
        self.total_ns = self.total_ns.saturating_add(other.total_ns);
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.histogram.merge(&other.histogram);
        let done = std::mem::replace(self, Snapshot::empty("")).finished();
        *self = done;
    }
}
