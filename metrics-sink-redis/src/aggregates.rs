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
