//! What the entry list holds: each element is one flush's entries in a versioned frame, and what
//! the dead-letter list holds.
//!
//! An element of the entry list is one of
//! - a **frame** (version [`FRAME_VERSION`]): `2`, a `u32` count, then for each entry a `u32`
//!   length and the entry as [`EntryRecord::encode`] made it (integers little-endian);
//! - a **single entry** (its own first byte, [`ENCODING_VERSION`](fnmetrics_core::ENCODING_VERSION)
//!   = 1): what a re-queued dead letter, or an older fnmetrics, pushes.
//!
//! Anything else (a newer version during a rolling deploy, damage) is undecodable: it becomes a
//! dead letter and never blocks the entries around it. Inside a frame each entry has its own
//! length, so one bad entry is set aside and the rest decode.

use fnmetrics_core::{EntryRecord, ENCODING_VERSION, WEIGHTED_ENCODING_VERSION};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first byte of a frame.
pub const FRAME_VERSION: u8 = 2;

/// Appends the frame of `entries` to `out`.
pub(crate) fn encode_frame(entries: &[EntryRecord], out: &mut Vec<u8>) {
    out.push(FRAME_VERSION);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        e.encode_into(out);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Bytes that could not be decoded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecodable {
    /// The bytes: a whole element, or one entry of a frame.
    pub bytes: Vec<u8>,
    /// Why they could not be decoded.
    pub reason: String,
}

/// One element of the entry list, decoded: its entries, and what could not be decoded.
///
/// ```
/// let d = fnmetrics::redis::decode_element(&[9, 9, 9]);
/// assert!(d.entries.is_empty());
/// assert_eq!(d.undecodable.len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct DecodedElement {
    /// The entries, in order.
    pub entries: Vec<EntryRecord>,
    /// What could not be decoded (set aside as dead letters by a drainer).
    pub undecodable: Vec<Undecodable>,
}

/// Decodes one element of the entry list (a frame or a single entry). Never fails: what cannot
/// be decoded is returned in [`DecodedElement::undecodable`].
///
/// ```
/// use fnmetrics::sink::EntryRecord;
/// let e = EntryRecord {
///     id: [1; 16],
///     func_name: "app::f".into(),
///     execution_time: std::time::Duration::from_micros(3),
///     error_occurred: false,
///     created_at_micros: 0,
///     weight: 1,
///     source: Default::default(),
/// };
/// let d = fnmetrics::redis::decode_element(&e.encode());
/// assert_eq!(d.entries, vec![e]);
/// ```
pub fn decode_element(bytes: &[u8]) -> DecodedElement {
    let mut out = DecodedElement::default();
    let bad = |bytes: &[u8], reason: String| Undecodable {
        bytes: bytes.to_vec(),
        reason,
    };
    match bytes.first() {
        Some(&ENCODING_VERSION | &WEIGHTED_ENCODING_VERSION) => match EntryRecord::decode(bytes) {
            Ok(e) => out.entries.push(e),
            Err(e) => out.undecodable.push(bad(bytes, e.to_string())),
        },
        Some(&FRAME_VERSION) if bytes.len() >= 5 => {
            let count = u32_at(bytes, 1) as usize;
            let mut at = 5;
            out.entries.reserve(count.min(bytes.len() / 40));
            for i in 0..count {
                let Some(len) = (at + 4 <= bytes.len()).then(|| u32_at(bytes, at) as usize) else {
                    out.undecodable.push(bad(
                        &bytes[at..],
                        format!("frame truncated before entry {i} of {count}"),
                    ));
                    return out;
                };
                let Some(entry) = bytes.get(at + 4..at + 4 + len) else {
                    out.undecodable.push(bad(
                        &bytes[at..],
                        format!("frame truncated inside entry {i} of {count}"),
                    ));
                    return out;
                };
                match EntryRecord::decode(entry) {
                    Ok(e) => out.entries.push(e),
                    Err(e) => out.undecodable.push(bad(entry, e.to_string())),
                }
                at += 4 + len;
            }
            if at != bytes.len() {
                out.undecodable.push(bad(
                    &bytes[at..],
                    format!("{} bytes after the last entry of a frame", bytes.len() - at),
                ));
            }
        }
        Some(&v) => out.undecodable.push(bad(
            bytes,
            format!(
                "element of unknown format version {v} (this build reads {ENCODING_VERSION}, \
                 {WEIGHTED_ENCODING_VERSION} and {FRAME_VERSION})"
            ),
        )),
        None => out.undecodable.push(bad(bytes, "empty element".into())),
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// Why a dead letter was set aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterKind {
    /// The bytes could not be decoded (an unknown version, damage): the payload is those bytes.
    Undecodable,
    /// The database refused the entry for good (a constraint, an encoding, a size limit): the
    /// payload is the entry, encoded.
    Rejected,
}

/// One dead letter: what was set aside, why and when. Read them with
/// [`RedisQueue::dead_letters`](crate::RedisQueue::dead_letters); re-queue them (after fixing
/// the cause) or purge them through the same type.
///
/// ```
/// use fnmetrics::redis::{DeadLetter, DeadLetterKind};
/// let d = DeadLetter::new(DeadLetterKind::Undecodable, "unknown version 9", vec![9, 1, 2]);
/// assert_eq!(d.reason, "unknown version 9");
/// assert!(d.entry().is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// When it was set aside (to the microsecond).
    pub at: SystemTime,
    /// Why.
    pub kind: DeadLetterKind,
    /// The reason in words: the decoder's or the database's message.
    pub reason: String,
    /// The bytes set aside: an encoded entry, or an element that could not be decoded.
    pub payload: Vec<u8>,
}

/// The first byte of a stored dead letter.
const DEAD_LETTER_VERSION: u8 = 1;

impl DeadLetter {
    /// A dead letter set aside now.
    ///
    /// ```
    /// use fnmetrics::redis::{DeadLetter, DeadLetterKind};
    /// let d = DeadLetter::new(DeadLetterKind::Rejected, "violates check", vec![]);
    /// assert_eq!(d.kind, DeadLetterKind::Rejected);
    /// ```
    pub fn new(kind: DeadLetterKind, reason: impl Into<String>, payload: Vec<u8>) -> DeadLetter {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        DeadLetter {
            at: UNIX_EPOCH + Duration::from_micros(micros),
            kind,
            reason: reason.into(),
            payload,
        }
    }

    /// The entry, when the payload is one.
    ///
    /// ```
    /// # use fnmetrics::redis::{DeadLetter, DeadLetterKind};
    /// assert!(DeadLetter::new(DeadLetterKind::Rejected, "x", vec![1]).entry().is_none());
    /// ```
    pub fn entry(&self) -> Option<EntryRecord> {
        EntryRecord::decode(&self.payload).ok()
    }

    /// The stored form: version, time (µs, i64), kind, reason length (u16) and reason, payload.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let micros = self
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let reason = truncate(&self.reason, u16::MAX as usize);
        let mut out = Vec::with_capacity(12 + reason.len() + self.payload.len());
        out.push(DEAD_LETTER_VERSION);
        out.extend_from_slice(&micros.to_le_bytes());
        out.push(match self.kind {
            DeadLetterKind::Undecodable => 0,
            DeadLetterKind::Rejected => 1,
        });
        out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Reads the stored form back; `None` if it is not one.
    pub(crate) fn decode(b: &[u8]) -> Option<DeadLetter> {
        if b.len() < 12 || b[0] != DEAD_LETTER_VERSION {
            return None;
        }
        let mut m = [0u8; 8];
        m.copy_from_slice(&b[1..9]);
        let micros = i64::from_le_bytes(m);
        let kind = match b[9] {
            0 => DeadLetterKind::Undecodable,
            1 => DeadLetterKind::Rejected,
            _ => return None,
        };
        let len = u16::from_le_bytes([b[10], b[11]]) as usize;
        let reason = std::str::from_utf8(b.get(12..12 + len)?).ok()?.to_owned();
        Some(DeadLetter {
            at: UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64),
            kind,
            reason,
            payload: b[12 + len..].to_vec(),
        })
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8, name: &str) -> EntryRecord {
        EntryRecord {
            id: [i; 16],
            func_name: name.into(),
            execution_time: Duration::from_nanos(u64::from(i) * 100),
            error_occurred: i.is_multiple_of(2),
            created_at_micros: 1_700_000_000_000_000 + i64::from(i),
            weight: 1,
            source: Default::default(),
        }
    }

    #[test]
    fn a_frame_round_trips() {
        let entries: Vec<_> = (0..50).map(|i| entry(i, "app::f")).collect();
        let mut b = Vec::new();
        encode_frame(&entries, &mut b);
        let d = decode_element(&b);
        assert_eq!(d.entries, entries);
        assert!(d.undecodable.is_empty());
    }

    #[test]
    fn a_bad_entry_inside_a_frame_is_set_aside_and_the_rest_decode() {
        let entries: Vec<_> = (0..3).map(|i| entry(i, "app::f")).collect();
        let mut b = Vec::new();
        encode_frame(&entries, &mut b);
        // The second entry's version byte: 5 (header) + 4 + len(first) + 4.
        let second = 5 + 4 + entries[0].encode().len() + 4;
        b[second] = 77;
        let d = decode_element(&b);
        assert_eq!(d.entries, vec![entries[0].clone(), entries[2].clone()]);
        assert_eq!(d.undecodable.len(), 1);
        assert!(d.undecodable[0].reason.contains("77"));
    }

    #[test]
    fn truncated_frames_and_unknown_versions_are_undecodable() {
        let mut b = Vec::new();
        encode_frame(&[entry(1, "a"), entry(2, "b")], &mut b);
        let d = decode_element(&b[..b.len() - 3]);
        assert_eq!(d.entries.len(), 1);
        assert_eq!(d.undecodable.len(), 1);
        assert_eq!(decode_element(&[3, 0, 0]).undecodable.len(), 1);
        assert_eq!(decode_element(&[]).undecodable.len(), 1);
    }

    #[test]
    fn dead_letters_round_trip() {
        let d = DeadLetter::new(
            DeadLetterKind::Rejected,
            "violates \"cheap\"",
            entry(4, "x").encode(),
        );
        assert_eq!(DeadLetter::decode(&d.encode()), Some(d.clone()));
        assert_eq!(d.entry(), Some(entry(4, "x")));
    }
}
