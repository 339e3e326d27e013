//! [`Snapshot`]: the counter set of one function, written once. What `get` answers, what a flush
//! sends (as a delta) and what a sink reads back (as a sum) are all this one type, and the
//! counters are declared in one list below: the struct, [`Snapshot::FIELDS`], merge, delta and
//! field access by name all come from it.

use crate::histogram::{bucket_index, Histogram};
use std::time::Duration;

/// How a counter combines across threads, processes and flushes.
///
/// ```
/// use fnmetrics::sink::FieldKind;
/// assert_eq!(FieldKind::Sum.merge(2, 3), 5);
/// assert_eq!(FieldKind::Min.merge(2, 3), 2);
/// assert_eq!(FieldKind::Max.identity(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// Added up (saturating); a flush sends what was gained since the previous one.
    Sum,
    /// The smallest value seen; `u64::MAX` while nothing was.
    Min,
    /// The largest value seen; 0 while nothing was.
    Max,
}

impl FieldKind {
    /// The value that changes nothing when merged: 0, or `u64::MAX` for [`FieldKind::Min`].
    ///
    /// ```
    /// assert_eq!(fnmetrics::sink::FieldKind::Min.identity(), u64::MAX);
    /// ```
    pub const fn identity(self) -> u64 {
        match self {
            FieldKind::Min => u64::MAX,
            FieldKind::Sum | FieldKind::Max => 0,
        }
    }

    /// `a` and `b` combined.
    ///
    /// ```
    /// assert_eq!(fnmetrics::sink::FieldKind::Sum.merge(u64::MAX, 1), u64::MAX);
    /// ```
    pub fn merge(self, a: u64, b: u64) -> u64 {
        match self {
            FieldKind::Sum => a.saturating_add(b),
            FieldKind::Min => a.min(b),
            FieldKind::Max => a.max(b),
        }
    }

    /// What `now` adds over `before`, for a flush. A sum that went down was reset
    /// (`fnmetrics::reset`) and counts from zero again; a minimum or maximum is sent whole (it
    /// covers all time, and merging it again changes nothing).
    fn delta(self, before: Option<u64>, now: u64) -> u64 {
        match (self, before) {
            (FieldKind::Sum, Some(b)) if b <= now => now - b,
            _ => now,
        }
    }
}

/// One counter of the set: its name (also its field name in sinks, e.g. the Redis hash) and
/// how it combines.
///
/// ```
/// use fnmetrics::sink::FieldKind;
/// use fnmetrics::Snapshot;
/// let min = Snapshot::FIELDS.iter().find(|f| f.name == "min_ns").unwrap();
/// assert_eq!(min.kind, FieldKind::Min);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    /// The field's name, as in the struct and in stored data.
    pub name: &'static str,
    /// How it combines.
    pub kind: FieldKind,
}

macro_rules! counter_set {
    ($( $(#[$doc:meta])* $field:ident: $kind:ident, )*) => {
        /// The metrics of one function: local (from this process), fleet-wide (from Redis), or
        /// what a flush adds (a delta), depending on where it came from.
        ///
        /// `calls` counts calls that finished, by returning or by panicking; `errors` counts
        /// those that returned an error or panicked (`panics` is the part of `errors` that
        /// panicked). An async call whose future was dropped before it finished is counted in
        /// `cancelled` only, and its time is not recorded. Timings (`total_ns`, `min_ns`,
        /// `max_ns`, the histogram) cover the `calls`; [`total`](Snapshot::total),
        /// [`min`](Snapshot::min), [`max`](Snapshot::max), [`mean`](Snapshot::mean) and
        /// [`quantile`](Snapshot::quantile) give them as `Duration`s.
        ///
        /// ```
        /// #[fnmetrics::measured(name = "doc::snapshot::parse")]
        /// fn parse(fail: bool) -> Result<(), ()> {
        ///     if fail { Err(()) } else { Ok(()) }
        /// }
        /// let _ = parse(false);
        /// let _ = parse(true);
        /// let m = fnmetrics::get("doc::snapshot::parse").unwrap();
        /// assert_eq!((m.calls, m.errors), (2, 1));
        /// assert!(m.min() <= m.mean() && m.mean() <= m.max());
        /// ```
        #[derive(Clone, Debug, PartialEq)]
        #[non_exhaustive]
        pub struct Snapshot {
            /// The function's name.
            pub name: String,
            $( $(#[$doc])* pub $field: u64, )*
            histogram: Histogram,
        }

        /// Each counter's position in [`Snapshot::FIELDS`]: how atomic copies of the set index it.
        #[allow(non_camel_case_types)]
        // Not every counter is addressed by position (`timed` is the histogram's count).
        #[allow(dead_code)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Counter {
            $( $field, )*
        }

        /// How many counters the set has.
        pub(crate) const COUNTERS: usize = [$( stringify!($field), )*].len();

        impl Snapshot {
            /// Every counter, in [`FIELDS`](Snapshot::FIELDS) order, to fill in by position.
            pub(crate) fn values_mut(&mut self) -> [&mut u64; COUNTERS] {
                [$( &mut self.$field, )*]
            }

            /// Every counter of the set, in declaration order (the histogram's buckets come on
            /// top: see [`Snapshot::histogram`]).
            ///
            /// ```
            /// let names: Vec<&str> = fnmetrics::Snapshot::FIELDS.iter().map(|f| f.name).collect();
            /// assert_eq!(names[0], "calls");
            /// ```
            pub const FIELDS: &'static [Field] = &[
                $( Field { name: stringify!($field), kind: FieldKind::$kind }, )*
            ];

            /// No calls: every counter at its [identity](FieldKind::identity).
            ///
            /// ```
            /// let s = fnmetrics::Snapshot::new("app::f");
            /// assert_eq!((s.calls, s.min_ns), (0, u64::MAX));
            /// ```
            pub fn new(name: &str) -> Snapshot {
                Snapshot {
                    name: name.to_owned(),
                    $( $field: FieldKind::$kind.identity(), )*
                    histogram: Histogram::new(),
                }
            }

            /// Each counter with its value, in [`FIELDS`](Snapshot::FIELDS) order.
            ///
            /// ```
            /// let s = fnmetrics::Snapshot::new("app::f");
            /// assert!(s.fields().all(|(f, v)| v == f.kind.identity()));
            /// ```
            pub fn fields(&self) -> impl Iterator<Item = (Field, u64)> + Clone + use<> {
                let values = [$( self.$field, )*];
                Self::FIELDS.iter().copied().zip(values)
            }

            /// Sets the counter called `name`; `false` (and nothing changes) if there is none.
            ///
            /// ```
            /// let mut s = fnmetrics::Snapshot::new("app::f");
            /// assert!(s.set_field("errors", 3));
            /// assert!(!s.set_field("b12", 1));
            /// assert_eq!(s.errors, 3);
            /// ```
            pub fn set_field(&mut self, name: &str, value: u64) -> bool {
                match name {
                    $( stringify!($field) => self.$field = value, )*
                    _ => return false,
                }
                true
            }

            /// Adds another snapshot's counts into this one (each counter by its
            /// [kind](FieldKind); the name is kept).
            ///
            /// ```
            /// # #[fnmetrics::measured(name = "doc::merge")]
            /// # fn f() {}
            /// f();
            /// let mut a = fnmetrics::get("doc::merge").unwrap();
            /// let b = a.clone();
            /// a.merge(&b);
            /// assert_eq!(a.calls, 2 * b.calls);
            /// ```
            pub fn merge(&mut self, other: &Snapshot) {
                $( self.$field = FieldKind::$kind.merge(self.$field, other.$field); )*
                self.histogram.merge(&other.histogram);
            }

            /// What this snapshot gained over `before` (`None`: everything), as a flush sends
            /// it; see [`FieldKind`] for how each counter's delta is taken.
            ///
            /// ```
            /// let mut before = fnmetrics::Snapshot::new("app::f");
            /// before.record(100, false);
            /// let mut now = before.clone();
            /// now.record(300, true);
            /// let d = now.delta_since(Some(&before));
            /// assert_eq!((d.calls, d.errors, d.total_ns, d.min_ns), (1, 1, 300, 100));
            /// ```
            pub fn delta_since(&self, before: Option<&Snapshot>) -> Snapshot {
                let histogram = match before {
                    Some(b) => self.histogram.delta_since(&b.histogram),
                    None => self.histogram.clone(),
                };
                Snapshot {
                    name: self.name.clone(),
                    $( $field: FieldKind::$kind.delta(before.map(|b| b.$field), self.$field), )*
                    histogram,
                }
            }
        }
    };
}

counter_set! {
    /// Calls that finished (returned or panicked).
    calls: Sum,
    /// Calls that returned an error or panicked.
    errors: Sum,
    /// Calls that panicked (included in `errors`).
    panics: Sum,
    /// Async calls dropped before they finished (not included in `calls`).
    cancelled: Sum,
    /// Per-call entries dropped because a buffer was full, or not delivered (the aggregates
    /// still count the calls).
    dropped_entries: Sum,
    /// The sum of all call times, in nanoseconds (saturating).
    total_ns: Sum,
    /// The shortest call, in nanoseconds; `u64::MAX` while there was none.
    min_ns: Min,
    /// The longest call, in nanoseconds.
    max_ns: Max,
    /// Calls that were timed: all of `calls`, unless the function samples
    /// (`#[measured(sample = N)]`, `fnmetrics::set_default_sample`), which times about one call
    /// in N. `total_ns`, `min_ns`, `max_ns`, the histogram, and so the mean and quantiles, cover
    /// the timed calls; `calls`, `errors`, `panics` and `cancelled` count every call. Last in the
    /// set: recording keeps it as the histogram's count, not as a counter of its own.
    timed: Sum,
}

/// The counters a per-thread slot keeps as scalars: all but `timed`, which is the histogram's
/// count. (A slot's `calls` scalar holds its calls that were not timed; the timed ones are
/// histogram counts.)
pub(crate) const STORED: usize = COUNTERS - 1;

impl Snapshot {
    /// Records one finished call of `nanos` nanoseconds: what a sink or a test does to build a
    /// snapshot by hand.
    ///
    /// ```
    /// let mut s = fnmetrics::Snapshot::new("app::f");
    /// s.record(1_500, true);
    /// assert_eq!((s.calls, s.errors, s.mean().as_nanos()), (1, 1, 1_500));
    /// ```
    pub fn record(&mut self, nanos: u64, is_error: bool) {
        self.calls = self.calls.saturating_add(1);
        self.timed = self.timed.saturating_add(1);
        self.errors = self.errors.saturating_add(u64::from(is_error));
        self.total_ns = self.total_ns.saturating_add(nanos);
        self.min_ns = self.min_ns.min(nanos);
        self.max_ns = self.max_ns.max(nanos);
        self.histogram.add_to_bucket(bucket_index(nanos), 1);
    }

    /// The latency histogram.
    ///
    /// ```
    /// # #[fnmetrics::measured(name = "doc::histogram")]
    /// # fn f() {}
    /// f();
    /// assert_eq!(fnmetrics::get("doc::histogram").unwrap().histogram().count(), 1);
    /// ```
    pub fn histogram(&self) -> &Histogram {
        &self.histogram
    }

    /// The latency histogram, to fill in by bucket (a sink reading stored counts back).
    ///
    /// ```
    /// let mut s = fnmetrics::Snapshot::new("app::f");
    /// s.histogram_mut().add_to_bucket(40, 2);
    /// assert_eq!(s.histogram().count(), 2);
    /// ```
    pub fn histogram_mut(&mut self) -> &mut Histogram {
        &mut self.histogram
    }

    /// The sum of all call times.
    ///
    /// ```
    /// let mut s = fnmetrics::Snapshot::new("app::f");
    /// s.record(7, false);
    /// assert_eq!(s.total().as_nanos(), 7);
    /// ```
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.total_ns)
    }

    /// The shortest call (zero when there was none).
    ///
    /// ```
    /// assert!(fnmetrics::Snapshot::new("app::f").min().is_zero());
    /// ```
    pub fn min(&self) -> Duration {
        if self.min_ns == u64::MAX {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.min_ns)
        }
    }

    /// The longest call (zero when there was none).
    ///
    /// ```
    /// let mut s = fnmetrics::Snapshot::new("app::f");
    /// s.record(9, false);
    /// assert_eq!(s.max().as_nanos(), 9);
    /// ```
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The mean call time, over the timed calls (zero when there were none).
    ///
    /// ```
    /// # #[fnmetrics::measured(name = "doc::mean")]
    /// # fn f() {}
    /// f();
    /// assert!(fnmetrics::get("doc::mean").unwrap().mean() > std::time::Duration::ZERO);
    /// ```
    pub fn mean(&self) -> Duration {
        if self.timed == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.total_ns / self.timed)
    }

    /// The call time at quantile `q` (0.5 for the median, 0.99 for p99), within 1.6 % of the
    /// true value, and never outside `min..=max`.
    ///
    /// ```
    /// # #[fnmetrics::measured(name = "doc::quantile")]
    /// # fn f() {}
    /// f();
    /// let m = fnmetrics::get("doc::quantile").unwrap();
    /// assert!(m.quantile(0.99) <= m.max());
    /// ```
    pub fn quantile(&self, q: f64) -> Duration {
        if self.calls == 0 {
            return Duration::ZERO;
        }
        let (min, max) = (self.min(), self.max());
        self.histogram.quantile(q).clamp(min, max.max(min))
    }

    /// The share of calls that failed, from 0.0 to 1.0.
    ///
    /// ```
    /// # #[fnmetrics::measured(name = "doc::error_rate")]
    /// # fn f() -> Result<(), ()> { Err(()) }
    /// let _ = f();
    /// assert_eq!(fnmetrics::get("doc::error_rate").unwrap().error_rate(), 1.0);
    /// ```
    pub fn error_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.errors as f64 / self.calls as f64
        }
    }

    /// Whether nothing at all was recorded: no call, no cancellation, no dropped entry.
    ///
    /// ```
    /// assert!(fnmetrics::Snapshot::new("app::f").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.calls == 0 && self.cancelled == 0 && self.dropped_entries == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_merged_onto_its_base_gives_the_later_snapshot() {
        let mut before = Snapshot::new("f");
        for (ns, e) in [(40, false), (900, true), (70_000, false)] {
            before.record(ns, e);
        }
        before.cancelled = 2;
        let mut now = before.clone();
        for (ns, e) in [(30, false), (900, false), (5_000_000, true)] {
            now.record(ns, e);
        }
        now.dropped_entries = 4;
        let d = now.delta_since(Some(&before));
        assert_eq!(
            (d.calls, d.errors, d.cancelled, d.dropped_entries),
            (3, 1, 0, 4)
        );
        let mut again = before.clone();
        again.merge(&d);
        assert_eq!(again, now);
    }

    #[test]
    fn a_counter_that_went_down_was_reset_and_counts_from_zero() {
        let mut before = Snapshot::new("f");
        for _ in 0..5 {
            before.record(100, true);
        }
        let mut now = Snapshot::new("f");
        now.record(100, false);
        let d = now.delta_since(Some(&before));
        assert_eq!((d.calls, d.errors, d.histogram().count()), (1, 0, 1));
    }

    #[test]
    fn every_field_can_be_set_by_its_name() {
        let mut s = Snapshot::new("f");
        for (i, f) in Snapshot::FIELDS.iter().enumerate() {
            assert!(s.set_field(f.name, i as u64 + 1));
        }
        let got: Vec<u64> = s.fields().map(|(_, v)| v).collect();
        assert_eq!(got, (1..=Snapshot::FIELDS.len() as u64).collect::<Vec<_>>());
    }
}
