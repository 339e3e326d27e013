//! A fixed-size log-linear histogram of nanosecond durations.
//!
//! Values below 32 ns have a bucket each. Above, every power of two is split into 32 linear
//! sub-buckets, so a bucket is at most 1/32 of its lower bound wide and its midpoint is within
//! 1.6 % of any value in it. The last bucket starts at 2^44 ns (about 4.9 hours) and takes every
//! larger value. 1280 buckets in all; histograms merge by adding bucket counts, across threads,
//! processes (through Redis) and time.

use std::time::Duration;

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const MAX_EXP: u32 = 44;

/// The number of buckets of every histogram.
pub const BUCKETS: usize = (SUB + (MAX_EXP - SUB_BITS) as u64 * SUB) as usize;

/// The bucket that holds `nanos`.
#[inline(always)]
pub fn bucket_index(nanos: u64) -> usize {
    if nanos < SUB {
        return nanos as usize;
    }
    let exp = 63 - nanos.leading_zeros();
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (nanos >> (exp - SUB_BITS)) - SUB;
    (SUB + u64::from(exp - SUB_BITS) * SUB + sub) as usize
}

/// The smallest value, in nanoseconds, that falls in bucket `index`.
pub fn bucket_low(index: usize) -> u64 {
    let i = index as u64;
    if i < SUB {
        return i;
    }
    let exp = (i - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (i - SUB) % SUB;
    (SUB + sub) << (exp - u64::from(SUB_BITS))
}

/// The width, in nanoseconds, of bucket `index` (the last bucket reports its nominal width).
pub fn bucket_width(index: usize) -> u64 {
    let i = index as u64;
    if i < SUB {
        return 1;
    }
    let exp = (i - SUB) / SUB + u64::from(SUB_BITS);
    1 << (exp - u64::from(SUB_BITS))
}

/// A mergeable histogram of durations.
///
/// Stored sparse: only the buckets that hold a count take memory, so a snapshot of a function
/// whose calls span a few powers of two is small however wide the range is.
///
/// ```
/// use fnmetrics::Histogram;
/// use std::time::Duration;
///
/// let mut h = Histogram::new();
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// let p50 = h.quantile(0.5).as_secs_f64();
/// assert!((p50 - 0.050).abs() / 0.050 < 0.02);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// `(bucket index, count)`, sorted by index, no zero counts.
    counts: Vec<(u16, u64)>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("non_empty_buckets", &self.counts.len())
            .finish()
    }
}

impl Histogram {
    /// An empty histogram.
    ///
    /// ```
    /// assert_eq!(fnmetrics::Histogram::new().count(), 0);
    /// ```
    pub fn new() -> Self {
        Histogram { counts: Vec::new() }
    }

    /// Records one value.
    ///
    /// ```
    /// let mut h = fnmetrics::Histogram::new();
    /// h.record(std::time::Duration::from_micros(3));
    /// assert_eq!(h.count(), 1);
    /// ```
    pub fn record(&mut self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.add_to_bucket(bucket_index(nanos), 1);
    }

    /// Adds `count` to bucket `index`; an index past the last bucket goes to the last bucket.
    ///
    /// ```
    /// let mut h = fnmetrics::Histogram::new();
    /// h.add_to_bucket(40, 3);
    /// assert_eq!(h.count(), 3);
    /// ```
    pub fn add_to_bucket(&mut self, index: usize, count: u64) {
        if count == 0 {
            return;
        }
        let index = index.min(BUCKETS - 1) as u16;
        // Buckets mostly arrive in index order: appending is the common case.
        match self.counts.last_mut() {
            None => self.counts.push((index, count)),
            Some(last) if last.0 < index => self.counts.push((index, count)),
            Some(last) if last.0 == index => last.1 = last.1.wrapping_add(count),
            Some(_) => match self.counts.binary_search_by_key(&index, |&(i, _)| i) {
                Ok(at) => self.counts[at].1 = self.counts[at].1.wrapping_add(count),
                Err(at) => self.counts.insert(at, (index, count)),
            },
        }
    }

    /// Adds every bucket of `other` to this one.
    ///
    /// ```
    /// use fnmetrics::Histogram;
    /// let (mut a, mut b) = (Histogram::new(), Histogram::new());
    /// a.record(std::time::Duration::from_nanos(10));
    /// b.record(std::time::Duration::from_nanos(20));
    /// a.merge(&b);
    /// assert_eq!(a.count(), 2);
    /// ```
    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.is_empty() {
            self.counts.clone_from(&other.counts);
            return;
        }
        let (a, b) = (&self.counts, &other.counts);
        let mut merged = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        loop {
            let next = match (a.get(i), b.get(j)) {
                (Some(&x), Some(&y)) if x.0 == y.0 => {
                    (i, j) = (i + 1, j + 1);
                    (x.0, x.1.wrapping_add(y.1))
                }
                (Some(&x), Some(&y)) if x.0 < y.0 => {
                    i += 1;
                    x
                }
                (Some(&x), None) => {
                    i += 1;
                    x
                }
                (_, Some(&y)) => {
                    j += 1;
                    y
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.counts = merged;
    }

    /// The number of recorded values.
    ///
    /// ```
    /// assert_eq!(fnmetrics::Histogram::new().count(), 0);
    /// ```
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .fold(0u64, |n, &(_, c)| n.wrapping_add(c))
    }

    /// The count of bucket `index` (0 past the end).
    ///
    /// ```
    /// let mut h = fnmetrics::Histogram::new();
    /// h.add_to_bucket(7, 2);
    /// assert_eq!(h.bucket(7), 2);
    /// ```
    pub fn bucket(&self, index: usize) -> u64 {
        let Ok(index) = u16::try_from(index) else {
            return 0;
        };
        match self.counts.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => self.counts[at].1,
            Err(_) => 0,
        }
    }

    /// The non-empty buckets as `(index, count)`, in index order.
    ///
    /// ```
    /// let mut h = fnmetrics::Histogram::new();
    /// h.add_to_bucket(7, 2);
    /// assert_eq!(h.nonzero().collect::<Vec<_>>(), vec![(7, 2)]);
    /// ```
    pub fn nonzero(&self) -> impl Iterator<Item = (usize, u64)> + Clone + '_ {
        self.counts.iter().map(|&(i, c)| (usize::from(i), c))
    }

    /// Gives back the memory grown past its buckets (for one kept a long time).
    ///
    /// ```
    /// let mut h = fnmetrics::Histogram::new();
    /// for i in 0..20 {
    ///     h.add_to_bucket(i, 1);
    /// }
    /// h.shrink_to_fit();
    /// assert_eq!(h.count(), 20);
    /// ```
    pub fn shrink_to_fit(&mut self) {
        self.counts.shrink_to_fit();
    }

    /// What this histogram gained over `before`, bucket by bucket; a bucket that went down
    /// was reset and counts from zero again.
    pub(crate) fn delta_since(&self, before: &Histogram) -> Histogram {
        let mut out = Histogram::new();
        for (i, c) in self.nonzero() {
            let was = before.bucket(i);
            out.add_to_bucket(i, if was <= c { c - was } else { c });
        }
        out
    }

    /// The value at quantile `q` (0.0 to 1.0; out-of-range values are clamped), as the midpoint of
    /// the bucket holding that rank. `Duration::ZERO` when empty.
    ///
    /// ```
    /// let mut h = fnmetrics::Histogram::new();
    /// h.record(std::time::Duration::from_millis(5));
    /// let p = h.quantile(0.99).as_secs_f64();
    /// assert!((p - 0.005).abs() / 0.005 < 0.02);
    /// ```
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (i, c) in self.nonzero() {
            seen += c;
            if seen >= rank {
                let mid = bucket_low(i) + (bucket_width(i) - 1) / 2;
                return Duration::from_nanos(mid);
            }
        }
        Duration::from_nanos(bucket_low(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_that_contains_it() {
        let mut v = 1u64;
        while v < (1 << 44) {
            for x in [v, v + 1, v * 3 / 2, v.saturating_mul(2) - 1] {
                if x >= 1 << 44 {
                    assert_eq!(bucket_index(x), BUCKETS - 1, "{x} is past the range");
                    continue;
                }
                let i = bucket_index(x);
                assert!(bucket_low(i) <= x, "{x} below bucket {i}");
                assert!(x < bucket_low(i) + bucket_width(i), "{x} above bucket {i}");
            }
            v = v * 2 + 1;
        }
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_index(0), 0);
    }

    #[test]
    fn midpoint_is_within_two_percent() {
        for x in (32..10_000_000u64).step_by(997) {
            let i = bucket_index(x);
            let mid = bucket_low(i) + (bucket_width(i) - 1) / 2;
            let err = (mid as f64 - x as f64).abs() / x as f64;
            assert!(err <= 0.02, "{x}: {err}");
        }
    }

    #[test]
    fn buckets_added_out_of_order_merge_and_stay_sorted() {
        let mut a = Histogram::new();
        for i in [9, 3, 700, 3, 0, BUCKETS + 5] {
            a.add_to_bucket(i, 1);
        }
        assert_eq!(
            a.nonzero().collect::<Vec<_>>(),
            vec![(0, 1), (3, 2), (9, 1), (700, 1), (BUCKETS - 1, 1)]
        );
        let mut b = Histogram::new();
        b.add_to_bucket(3, 5);
        b.add_to_bucket(4, 1);
        b.add_to_bucket(2_000, 1);
        a.merge(&b);
        assert_eq!(
            a.nonzero().collect::<Vec<_>>(),
            vec![(0, 1), (3, 7), (4, 1), (9, 1), (700, 1), (BUCKETS - 1, 2)]
        );
        assert_eq!(a.count(), 13);
        let d = a.delta_since(&b);
        assert_eq!(d.bucket(3), 2);
        assert_eq!(d.bucket(4), 0);
        assert_eq!(d.bucket(BUCKETS - 1), 1);
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        for (q, want) in [
            (0.5, 5_000.0),
            (0.9, 9_000.0),
            (0.99, 9_900.0),
            (1.0, 10_000.0),
        ] {
            let got = h.quantile(q).as_nanos() as f64 / 1_000.0;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
    }
}
