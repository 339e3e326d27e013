//! What the entry list holds: each element is one flush's entries in a versioned frame, and what
//! the dead-letter list holds.
//!
//! An element of the entry list is one of
//! - a **frame with a source** (version [`SOURCED_FRAME_VERSION`] = 4, what a flush pushes):
//!   `4`, the service and the host (each a `u16` length and that many bytes of UTF-8, as
//!   [`Source::encode_into`] writes them), a `u32` count, then for each entry a `u32` length
//!   and the entry as [`EntryRecord::encode_without_source_into`] made it (integers
//!   little-endian). Every entry of the frame comes from that source; a flush whose entries
//!   come from several sources pushes one frame per run of entries with the same source;
//! - a **frame** (version [`FRAME_VERSION`] = 2, what fnmetrics pushed before entries had a
//!   source): `2`, a `u32` count, then the entries as in version 4. Its entries have no source;
//! - a **single entry** (its own first byte: [`ENCODING_VERSION`] = 1,
//!   [`WEIGHTED_ENCODING_VERSION`] = 3 or [`SOURCED_ENCODING_VERSION`] = 5): what a re-queued
//!   dead letter, or an older fnmetrics, pushes (see [`EntryRecord::encode`]).
//!
//! Anything else (a newer version during a rolling deploy, damage) is undecodable: it becomes a
//! dead letter and never blocks the entries around it. Inside a frame each entry has its own
//! length, so one bad entry is set aside and the rest decode.

use fnmetrics_core::{
    EntryRecord, Source, ENCODING_VERSION, SOURCED_ENCODING_VERSION, WEIGHTED_ENCODING_VERSION,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first byte of a frame without a source (written by fnmetrics before
/// [`SOURCED_FRAME_VERSION`]; still read).
pub const FRAME_VERSION: u8 = 2;

/// The first byte of a frame whose entries share one source (service and host), written once
/// after this byte.
pub const SOURCED_FRAME_VERSION: u8 = 4;

/// Appends the frames of `entries` to `out`, one frame (version [`SOURCED_FRAME_VERSION`]) per
/// run of consecutive entries with the same source, and pushes where each frame ends in `out`
/// to `ends`. The flusher stamps one source on all its entries, so a flush is one frame.
pub(crate) fn encode_frames(entries: &[EntryRecord], out: &mut Vec<u8>, ends: &mut Vec<usize>) {
    let mut rest = entries;
    while let Some(first) = rest.first() {
        let run = rest
            .iter()
            .position(|e| !same_source(&e.source, &first.source))
            .unwrap_or(rest.len());
        encode_frame(&rest[..run], out);
        ends.push(out.len());
        rest = &rest[run..];
    }
}

/// Whether two sources are the same: the same allocation (the common case, one comparison),
/// else the same names.
fn same_source(a: &Arc<Source>, b: &Arc<Source>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// Appends one frame of `entries`, which share the first one's source.
fn encode_frame(entries: &[EntryRecord], out: &mut Vec<u8>) {
    out.push(SOURCED_FRAME_VERSION);
    if let Some(first) = entries.first() {
        first.source.encode_into(out);
    } else {
        Source::default().encode_into(out);
    }
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        e.encode_without_source_into(out);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Bytes that could not be decoded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecodable {
    /// The bytes: a whole element, or one entry of a frame. An entry of a frame with a source
    /// comes in a frame of its own with that source, so that, re-queued as a dead letter, it
    /// still says where it came from.
    pub bytes: Vec<u8>,
    /// Why they could not be decoded.
    pub reason: String,
}

/// One element of the entry list, decoded: its entries, and what could not be decoded.
///
/// ```
/// let d = fnmetrics::redis::wire::decode_element(&[9, 9, 9]);
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
/// be decoded is returned in [`DecodedElement::undecodable`]. The entries of a frame share one
/// [`Source`] (one allocation per frame).
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
/// let d = fnmetrics::redis::wire::decode_element(&e.encode());
/// assert_eq!(d.entries, vec![e]);
/// ```
pub fn decode_element(bytes: &[u8]) -> DecodedElement {
    let mut out = DecodedElement::default();
    match bytes.first() {
        Some(&(ENCODING_VERSION | WEIGHTED_ENCODING_VERSION | SOURCED_ENCODING_VERSION)) => {
            match EntryRecord::decode(bytes) {
                Ok(e) => out.entries.push(e),
                Err(e) => out.undecodable.push(bad(bytes, e.to_string())),
            }
        }
        Some(&FRAME_VERSION) if bytes.len() >= 5 => {
            decode_frame(bytes, 1, &Arc::default(), false, &mut out);
        }
        Some(&SOURCED_FRAME_VERSION) => match Source::decode_prefix(&bytes[1..]) {
            Ok((source, used)) if bytes.len() >= 1 + used + 4 => {
                decode_frame(bytes, 1 + used, &Arc::new(source), true, &mut out);
            }
            Ok(_) => out
                .undecodable
                .push(bad(bytes, "frame truncated in its header".into())),
            Err(e) => out
                .undecodable
                .push(bad(bytes, format!("frame with a bad source: {e}"))),
        },
        Some(&v) => out.undecodable.push(bad(
            bytes,
            format!(
                "element of unknown format version {v} (this build reads {ENCODING_VERSION}, \
                 {FRAME_VERSION}, {WEIGHTED_ENCODING_VERSION}, {SOURCED_FRAME_VERSION} and \
                 {SOURCED_ENCODING_VERSION})"
            ),
        )),
        None => out.undecodable.push(bad(bytes, "empty element".into())),
    }
    out
}

fn bad(bytes: &[u8], reason: String) -> Undecodable {
    Undecodable {
        bytes: bytes.to_vec(),
        reason,
    }
}

/// Decodes the entries of the frame `bytes` whose count is at `count_at`, each given `source`.
/// With `wrap`, an entry that does not decode is set aside in a frame of its own, with the
/// frame's header (`bytes[..count_at]`), so that it keeps its source.
fn decode_frame(
    bytes: &[u8],
    count_at: usize,
    source: &Arc<Source>,
    wrap: bool,
    out: &mut DecodedElement,
) {
    let count = u32_at(bytes, count_at) as usize;
    let mut at = count_at + 4;
    out.entries.reserve(count.min(bytes.len() / 40));
    for i in 0..count {
        let Some(len) = (at + 4 <= bytes.len()).then(|| u32_at(bytes, at) as usize) else {
            out.undecodable.push(bad(
                &bytes[at..],
                format!("frame truncated before entry {i} of {count}"),
            ));
            return;
        };
        let Some(entry) = at
            .checked_add(4 + len)
            .and_then(|end| bytes.get(at + 4..end))
        else {
            out.undecodable.push(bad(
                &bytes[at..],
                format!("frame truncated inside entry {i} of {count}"),
            ));
            return;
        };
        match EntryRecord::decode_with_source(entry, source) {
            Ok(e) => out.entries.push(e),
            Err(e) if wrap => {
                let mut alone = bytes[..count_at].to_vec();
                alone.extend_from_slice(&1u32.to_le_bytes());
                alone.extend_from_slice(&bytes[at..at + 4 + len]);
                out.undecodable.push(Undecodable {
                    bytes: alone,
                    reason: e.to_string(),
                });
            }
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
    /// The shard whose dead-letter list holds it (0 on a single Redis): set when it is read,
    /// so that re-queueing or purging it goes to the right list.
    pub shard: u16,
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
            shard: 0,
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
        let reason = fnmetrics_core::truncate_str(&self.reason, u16::MAX as usize);
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
            shard: 0,
            at: UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64),
            kind,
            reason,
            payload: b[12 + len..].to_vec(),
        })
    }
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
            weight: if i.is_multiple_of(3) { 8 } else { 1 },
            source: Default::default(),
        }
    }

    fn from(source: &Arc<Source>, e: EntryRecord) -> EntryRecord {
        EntryRecord {
            source: source.clone(),
            ..e
        }
    }

    fn frames(entries: &[EntryRecord]) -> Vec<Vec<u8>> {
        let (mut b, mut ends) = (Vec::new(), Vec::new());
        encode_frames(entries, &mut b, &mut ends);
        let mut start = 0;
        ends.iter()
            .map(|&end| {
                let f = b[start..end].to_vec();
                start = end;
                f
            })
            .collect()
    }

    /// A frame as fnmetrics wrote it before entries had a source.
    fn v2_frame(entries: &[EntryRecord]) -> Vec<u8> {
        let mut b = vec![FRAME_VERSION];
        b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            let mut one = Vec::new();
            e.encode_without_source_into(&mut one);
            b.extend_from_slice(&(one.len() as u32).to_le_bytes());
            b.extend_from_slice(&one);
        }
        b
    }

    #[test]
    fn a_frame_round_trips_with_one_source_for_all_its_entries() {
        let source = Arc::new(Source::new("svc-a", "h-1"));
        let entries: Vec<_> = (0..50).map(|i| from(&source, entry(i, "app::f"))).collect();
        let f = frames(&entries);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0][0], SOURCED_FRAME_VERSION);
        assert_eq!(&f[0][1..13], b"\x05\x00svc-a\x03\x00h-1");
        assert_eq!(&f[0][13..17], &50u32.to_le_bytes());
        let d = decode_element(&f[0]);
        assert_eq!(d.entries, entries);
        assert!(d.undecodable.is_empty());
        // One allocation for the frame, shared by its entries.
        let first = &d.entries[0].source;
        assert!(d.entries.iter().all(|e| Arc::ptr_eq(&e.source, first)));
    }

    #[test]
    fn entries_of_several_sources_go_in_one_frame_per_run() {
        let a = Arc::new(Source::new("svc-a", "h-1"));
        let a_again = Arc::new(Source::new("svc-a", "h-1")); // equal, not the same allocation
        let b = Arc::new(Source::new("svc-b", "h-1"));
        let none = Arc::new(Source::default());
        let entries = vec![
            from(&a, entry(1, "f")),
            from(&a_again, entry(2, "f")),
            from(&b, entry(3, "g")),
            from(&a, entry(4, "f")),
            from(&none, entry(5, "h")),
            from(&none, entry(6, "h")),
        ];
        let f = frames(&entries);
        let counts: Vec<usize> = f.iter().map(|f| decode_element(f).entries.len()).collect();
        assert_eq!(counts, [2, 1, 1, 2]);
        assert!(f.iter().all(|f| f[0] == SOURCED_FRAME_VERSION));
        let decoded: Vec<_> = f.iter().flat_map(|f| decode_element(f).entries).collect();
        assert_eq!(decoded, entries);
        assert!(frames(&[]).is_empty());
    }

    #[test]
    fn frames_and_single_entries_of_older_versions_still_decode() {
        let entries: Vec<_> = (0..4).map(|i| entry(i, "app::f")).collect();
        let d = decode_element(&v2_frame(&entries));
        assert_eq!(d.entries, entries);
        assert!(d.entries.iter().all(|e| e.source.is_empty()));
        assert!(d.undecodable.is_empty());
        for (e, version) in [
            (entry(1, "one"), ENCODING_VERSION),
            (entry(3, "three"), WEIGHTED_ENCODING_VERSION),
            (
                from(&Arc::new(Source::new("s", "h")), entry(3, "five")),
                SOURCED_ENCODING_VERSION,
            ),
        ] {
            let b = e.encode();
            assert_eq!(b[0], version);
            assert_eq!(decode_element(&b).entries, vec![e]);
        }
    }

    #[test]
    fn a_bad_entry_inside_a_frame_is_set_aside_with_its_source_and_the_rest_decode() {
        let source = Arc::new(Source::new("svc", "h"));
        let entries: Vec<_> = (1..4).map(|i| from(&source, entry(i, "app::f"))).collect();
        let mut b = frames(&entries).remove(0);
        // The second entry's version byte: 1 + 8 (source) + 4 (count) + 4 + len(first) + 4.
        let mut first = Vec::new();
        entries[0].encode_without_source_into(&mut first);
        let second = 1 + 8 + 4 + 4 + first.len() + 4;
        b[second] = 77;
        let d = decode_element(&b);
        assert_eq!(d.entries, vec![entries[0].clone(), entries[2].clone()]);
        assert_eq!(d.undecodable.len(), 1);
        assert!(d.undecodable[0].reason.contains("77"));
        // Set aside in a frame of its own: re-queued, it still names its source.
        let alone = &d.undecodable[0].bytes;
        assert_eq!(alone[0], SOURCED_FRAME_VERSION);
        assert_eq!(Source::decode_prefix(&alone[1..]).unwrap().0, *source);
        let again = decode_element(alone);
        assert!(again.entries.is_empty());
        assert_eq!(again.undecodable[0].reason, d.undecodable[0].reason);

        // In a frame without a source, the bad entry's bytes are set aside as they are.
        let mut b = v2_frame(&entries);
        b[5 + 4 + first.len() + 4] = 77;
        let d = decode_element(&b);
        assert_eq!(d.entries.len(), 2);
        assert_eq!(d.undecodable[0].bytes[0], 77);
    }

    #[test]
    fn truncated_frames_and_unknown_versions_are_undecodable() {
        let source = Arc::new(Source::new("svc", "h"));
        for b in [
            frames(&[from(&source, entry(1, "a")), from(&source, entry(2, "b"))]).remove(0),
            v2_frame(&[entry(1, "a"), entry(2, "b")]),
        ] {
            for cut in 0..b.len() {
                let d = decode_element(&b[..cut]);
                assert!(d.entries.len() < 2, "{cut} bytes of {}", b.len());
                assert!(!d.undecodable.is_empty(), "{cut} bytes of {}", b.len());
            }
            let d = decode_element(&b[..b.len() - 3]);
            assert_eq!(d.entries.len(), 1);
            assert_eq!(d.undecodable.len(), 1);
        }
        assert_eq!(decode_element(&[3, 0, 0]).undecodable.len(), 1);
        assert_eq!(decode_element(&[6, 0, 0]).undecodable.len(), 1);
        assert_eq!(decode_element(&[]).undecodable.len(), 1);
        // A header whose service is not UTF-8, and a count far past the bytes.
        let d = decode_element(b"\x04\x01\x00\xff\x00\x00\x01\x00\x00\x00");
        assert!(d.undecodable[0].reason.contains("UTF-8"), "{d:?}");
        let d = decode_element(b"\x04\x00\x00\x00\x00\xff\xff\xff\xff\x05\x00\x00\x00");
        assert!(d.entries.is_empty());
        assert_eq!(d.undecodable.len(), 1);
    }

    #[test]
    fn damaged_frames_never_panic_nor_lose_entries_silently() {
        let source = Arc::new(Source::new("svc-é", "h"));
        let b = frames(&[from(&source, entry(1, "a")), from(&source, entry(3, "bé"))]).remove(0);
        for at in 0..b.len() {
            for byte in [0x00, 0x01, 0x7f, 0xff] {
                let mut damaged = b.clone();
                damaged[at] = byte;
                let d = decode_element(&damaged);
                assert!(d.entries.len() <= 2, "byte {at} set to {byte}: {d:?}");
                // Past the version byte (which, changed, makes the bytes another element: a
                // frame carries no checksum), damage either leaves both entries or sets
                // something aside.
                if at > 0 && d.undecodable.is_empty() {
                    assert_eq!(d.entries.len(), 2, "byte {at} set to {byte}: {d:?}");
                }
            }
        }
    }

    #[test]
    fn source_names_longer_than_u16_max_are_cut_in_frames() {
        let long = "ü".repeat(40_000);
        let source = Arc::new(Source::new("svc", long.as_str()));
        let f = frames(&[from(&source, entry(1, "a"))]);
        let d = decode_element(&f[0]);
        assert_eq!(d.entries.len(), 1);
        assert_eq!(d.entries[0].source.host.len(), 65_534);
        assert!(long.starts_with(&*d.entries[0].source.host));
    }

    #[test]
    fn dead_letters_round_trip() {
        let source = Arc::new(Source::new("svc", "h"));
        for e in [entry(4, "x"), from(&source, entry(4, "x"))] {
            let d = DeadLetter::new(DeadLetterKind::Rejected, "violates \"cheap\"", e.encode());
            assert_eq!(DeadLetter::decode(&d.encode()), Some(d.clone()));
            assert_eq!(d.entry(), Some(e));
        }
    }
}
