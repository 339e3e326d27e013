//! The aggregates of one function as Redis holds them (a hash of decimal fields:
//! `calls`, `errors`, .., `b<i>` for histogram bucket `i`), decoded into a [`Snapshot`], and the
//! fleet-wide sum of the shards' shares. Shared by every read path: redis-rs replies
//! ([`decode`]) and the plain `HGETALL` reader (`hgetall.rs`, through [`add_field`]).

use fnmetrics_core::{Error, ErrorKind, Snapshot};
use std::collections::HashSet;

/// The aggregate hashes a reader skipped because they do not decode.
#[derive(Debug, Default)]
pub(crate) struct Skipped {
    /// Every time one was skipped.
    pub(crate) count: u64,
    /// The keys already named in a warning: one warning a key, not one a read.
    warned: HashSet<String>,
}

impl Skipped {
    /// Counts hash `key`, skipped because of `e`; the first time for `key`, says so in the log.
    pub(crate) fn skip(&mut self, key: &str, e: &Error) {
        self.count += 1;
        if !self.warned.contains(key) {
            self.warned.insert(key.to_owned());
            log::warn!(
                target: "fnmetrics",
                "skipping the aggregates in {key}: they do not decode ({e}); the other \
                 functions are read on"
            );
        }
    }
}

/// The snapshot of function `name` from the fields of its hash `key` (`None`: no fields).
pub(crate) fn decode(
    name: &str,
    key: &str,
    reply: &redis::Value,
) -> Result<Option<Snapshot>, Error> {
    let bad = |what: String| Error::new(ErrorKind::Decode, what);
    fn pair<'a>(
        key: &str,
        f: &'a redis::Value,
        v: &'a redis::Value,
    ) -> Result<(&'a [u8], &'a [u8]), Error> {
        match (f, v) {
            (redis::Value::BulkString(f), redis::Value::BulkString(v)) => Ok((f, v)),
            _ => Err(Error::new(
                ErrorKind::Decode,
                format!("{key} answered HGETALL with {f:?}, {v:?}"),
            )),
        }
    }
    // RESP2 answers a flat array of field, value, field, ..; RESP3 a map. Read in place: a
    // large fleet's hashes are read every second by `fnmetrics alerts run`.
    let (flat, map): (&[redis::Value], &[(redis::Value, redis::Value)]) = match reply {
        redis::Value::Array(items) if items.len() % 2 == 0 => (items, &[]),
        redis::Value::Map(items) => (&[], items),
        other => return Err(bad(format!("{key} answered HGETALL with {other:?}"))),
    };
    let pairs = flat
        .chunks_exact(2)
        .map(|p| pair(key, &p[0], &p[1]))
        .chain(map.iter().map(|(f, v)| pair(key, f, v)));
    if flat.is_empty() && map.is_empty() {
        return Ok(None);
    }
    let mut m = Snapshot::new(name);
    for p in pairs {
        let (field, value) = p?;
        add_field(&mut m, key, field, value)?;
    }
    Ok(Some(m))
}

/// Adds one field of hash `key` to `m`: a histogram bucket (`b<index>`, the most of a hash) or a
/// counter; other fields (a newer version's) are skipped.
///
/// # Errors
/// [`ErrorKind::Decode`] if `value` is not a canonical decimal u64.
pub(crate) fn add_field(
    m: &mut Snapshot,
    key: impl std::fmt::Display,
    field: &[u8],
    value: &[u8],
) -> Result<(), Error> {
    let n = parse_u64(value).ok_or_else(|| {
        Error::new(
            ErrorKind::Decode,
            format!(
                "field {} of {key} is not a non-negative integer: {:?}",
                String::from_utf8_lossy(field),
                String::from_utf8_lossy(value)
            ),
        )
    })?;
    if let Some(i) = field.strip_prefix(b"b").and_then(parse_u64) {
        if let Ok(i) = u16::try_from(i) {
            m.histogram_mut().add_to_bucket(usize::from(i), n);
        }
    } else if let Ok(field) = std::str::from_utf8(field) {
        m.set_field(field, n);
    }
    Ok(())
}

/// A canonical decimal u64 (digits only, no sign, not past `u64::MAX`).
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}
/// The fleet-wide aggregates of a list of functions, summed share by share as the shards are
/// read (a single Redis is one shard, whose share is the whole). Shards are read one after the
/// other and, within one, the names in order: the first shard's shares are moved in, later
/// ones merged (`Snapshot::merge`: sums add, minima and maxima compare, buckets add).
#[derive(Debug)]
pub(crate) struct Fleet<'a> {
    sums: Vec<Option<Snapshot>>,
    /// Functions with a share that does not decode: `None` in the end, the sum of the other
    /// shares would be short.
    broken: Vec<usize>,
    /// Where undecodable shares are counted; `None`: the first one is an error.
    skipped: Option<&'a mut Skipped>,
    /// The first share that did not decode, when they are errors.
    failed: Option<Error>,
}

impl<'a> Fleet<'a> {
    /// A sum of `n` functions; a share that does not decode is counted in `skipped` (the
    /// function reads as `None`), or without it is an error ([`Fleet::failed`]).
    pub(crate) fn new(n: usize, skipped: Option<&'a mut Skipped>) -> Fleet<'a> {
        Fleet {
            sums: Vec::with_capacity(n),
            broken: Vec::new(),
            skipped,
            failed: None,
        }
    }

    /// Adds the share of function `at` (`None`: the shard has none).
    #[inline]
    pub(crate) fn share(&mut self, at: usize, share: Option<Snapshot>) {
        if at == self.sums.len() {
            self.sums.push(share);
            return;
        }
        let Some(share) = share else { return };
        match self.slot(at) {
            Some(sum) => sum.merge(&share),
            none => *none = Some(share),
        }
    }

    /// The share of function `at`, in hash `key`, does not decode.
    pub(crate) fn undecodable(&mut self, at: usize, key: impl std::fmt::Display, e: Error) {
        self.slot(at);
        match &mut self.skipped {
            Some(skipped) => {
                skipped.skip(&key.to_string(), &e);
                self.broken.push(at);
            }
            None => {
                self.failed.get_or_insert(e);
            }
        }
    }

    /// The first share that did not decode, when they are errors (taken).
    pub(crate) fn failed(&mut self) -> Result<(), Error> {
        self.failed.take().map_or(Ok(()), Err)
    }

    /// The sums of the `n` functions, in order.
    pub(crate) fn finish(mut self, n: usize) -> Vec<Option<Snapshot>> {
        self.sums.resize(n, None);
        for at in self.broken {
            if let Some(m) = self.sums.get_mut(at) {
                *m = None;
            }
        }
        self.sums
    }

    fn slot(&mut self, at: usize) -> &mut Option<Snapshot> {
        if at >= self.sums.len() {
            self.sums.resize(at + 1, None);
        }
        &mut self.sums[at]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(name: &str, calls: u64, bucket: usize) -> Option<Snapshot> {
        let mut m = Snapshot::new(name);
        m.calls = calls;
        m.histogram_mut().add_to_bucket(bucket, calls);
        Some(m)
    }

    #[test]
    fn shares_of_several_shards_add_up_and_a_broken_one_skips_its_function_whole() {
        let mut skipped = Skipped::default();
        let mut fleet = Fleet::new(3, Some(&mut skipped));
        // Shard 0: a, nothing of b, c.
        fleet.share(0, share("a", 1, 3));
        fleet.share(1, None);
        fleet.share(2, share("c", 5, 1));
        // Shard 1: a again, b for the first time, c's share does not decode.
        fleet.share(0, share("a", 2, 4));
        fleet.share(1, share("b", 7, 2));
        let bad = Error::new(ErrorKind::Decode, "field calls is not a number");
        fleet.undecodable(2, "s1:c", bad);
        assert!(fleet.failed().is_ok());
        let got = fleet.finish(3);
        let a = got[0].as_ref().expect("a");
        assert_eq!((a.calls, a.histogram().count()), (3, 3));
        assert_eq!(got[1].as_ref().map(|m| m.calls), Some(7));
        assert!(
            got[2].is_none(),
            "the sum of c's other shares would be short"
        );
        assert_eq!(skipped.count, 1);
    }

    #[test]
    fn without_a_skip_count_a_share_that_does_not_decode_is_an_error() {
        let mut fleet = Fleet::new(2, None);
        // The first share that does not decode is the error; the shares after it still land.
        fleet.undecodable(0, "k", Error::new(ErrorKind::Decode, "first"));
        fleet.share(1, share("b", 1, 0));
        fleet.undecodable(1, "k", Error::new(ErrorKind::Decode, "second"));
        let e = fleet.failed().unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string().contains("first")),
            (ErrorKind::Decode, true)
        );
        assert!(fleet.failed().is_ok(), "taken");
        assert_eq!(fleet.finish(2)[1].as_ref().map(|m| m.calls), Some(1));
    }
}
