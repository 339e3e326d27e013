//! Per-call entries as they leave the process: [`EntryRecord`], its versioned binary encoding
//! (shared by every sink), and the ids the flusher gives entries and flushes.

use std::sync::Arc;
use std::time::Duration;

/// One per-call entry as stored in Redis and PostgreSQL.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryRecord {
    /// Time-ordered (UUIDv7 layout), unique and deterministic for a given process instance and
    /// sequence number, so a retried write carries the same id.
    pub id: [u8; 16],
    /// The function's name.
    pub func_name: Arc<str>,
    /// How long the call took.
    pub execution_time: Duration,
    /// Whether the call failed (error or panic).
    pub error_occurred: bool,
    /// When the call ended, in microseconds since the Unix epoch.
    pub created_at_micros: i64,
    /// How many calls the entry stands for: 1, or `N` for a timed call of a function that
    /// times one call in `N` (`#[measured(sample = N)]`), so that counts from entries stay
    /// right.
    pub weight: u32,
    /// The process that made the entry: its service and host. Shared by the entries of one
    /// process (an `Arc`), stored in the `service` and `host` columns.
    pub source: Arc<Source>,
}

/// Where entries come from: the service (the application's name, set on the flusher's builder;
/// by default the binary's name) and the host. Empty strings mean "not recorded", as for rows
/// written before schema version 2.
///
/// ```
/// use fnmetrics::sink::Source;
/// let s = Source::new("checkout", "web-1");
/// assert_eq!((&*s.service, &*s.host), ("checkout", "web-1"));
/// assert_eq!(*Source::default().service, *"");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Source {
    /// The service's name.
    pub service: Arc<str>,
    /// The host's name.
    pub host: Arc<str>,
}

impl Source {
    /// A source of these names.
    ///
    /// ```
    /// let s = fnmetrics::sink::Source::new("api", "db-2");
    /// assert_eq!(&*s.host, "db-2");
    /// ```
    pub fn new(service: impl Into<Arc<str>>, host: impl Into<Arc<str>>) -> Source {
        Source {
            service: service.into(),
            host: host.into(),
        }
    }

    /// This process's source: the binary's name (the file stem of the executable) as the
    /// service, and the machine's host name (`/proc/sys/kernel/hostname`, else
    /// `/etc/hostname`, else `$HOSTNAME` or `$COMPUTERNAME`; empty if none says).
    ///
    /// Both are made to pass the flusher's checks of a source (see
    /// [`FlusherConfig::validate`](crate::FlusherConfig::validate)): control characters become
    /// `_`, each name is cut to [`MAX_SOURCE_NAME_LEN`] bytes (at a character boundary), and a
    /// service that nothing names is `unknown`.
    ///
    /// ```
    /// let s = fnmetrics::sink::Source::this_process();
    /// assert!(!s.service.is_empty());
    /// assert!(s.service.len() <= fnmetrics::sink::MAX_SOURCE_NAME_LEN);
    /// ```
    pub fn this_process() -> Source {
        let service = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .or_else(|| std::env::args().next())
            .unwrap_or_default();
        let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::env::var("COMPUTERNAME").ok())
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let service = sanitize_name(&service);
        let service = if service.is_empty() {
            "unknown".to_owned()
        } else {
            service
        };
        Source::new(service, sanitize_name(&host))
    }

    /// Whether both names are empty (nothing recorded).
    ///
    /// ```
    /// assert!(fnmetrics::sink::Source::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.service.is_empty() && self.host.is_empty()
    }

    /// Appends the source as entries and frames carry it: the service, then the host, each as
    /// a `u16` length (little-endian) and that many bytes of UTF-8. A name longer than
    /// `u16::MAX` bytes is cut to `u16::MAX` bytes at a character boundary (a flusher never
    /// has one: it takes names of at most [`MAX_SOURCE_NAME_LEN`] bytes).
    ///
    /// ```
    /// use fnmetrics::sink::Source;
    /// let mut buf = Vec::new();
    /// Source::new("api", "h1").encode_into(&mut buf);
    /// assert_eq!(buf, b"\x03\x00api\x02\x00h1");
    /// ```
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for name in [&*self.service, &*self.host] {
            let name = truncate_str(name, u16::MAX as usize);
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
    }

    /// Reads what [`Source::encode_into`] wrote at the start of `bytes`; returns the source
    /// and how many bytes it took.
    ///
    /// # Errors
    /// [`DecodeError::TooShort`] if `bytes` end inside it, [`DecodeError::SourceNotUtf8`] if a
    /// name is not UTF-8.
    ///
    /// ```
    /// use fnmetrics::sink::{DecodeError, Source};
    /// let (s, used) = Source::decode_prefix(b"\x03\x00api\x02\x00h1 and more").unwrap();
    /// assert_eq!((s, used), (Source::new("api", "h1"), 9));
    /// assert_eq!(Source::decode_prefix(b"\x03\x00ap"), Err(DecodeError::TooShort));
    /// ```
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Source, usize), DecodeError> {
        let mut at = 0;
        let mut name = || -> Result<&str, DecodeError> {
            let len = bytes.get(at..at + 2).ok_or(DecodeError::TooShort)?;
            let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
            let name = bytes
                .get(at + 2..at + 2 + len)
                .ok_or(DecodeError::TooShort)?;
            at += 2 + len;
            std::str::from_utf8(name).map_err(|_| DecodeError::SourceNotUtf8)
        };
        let service = name()?;
        let host = name()?;
        Ok((Source::new(service, host), at))
    }
}

/// The longest service or host name a flusher takes, in bytes
/// ([`FlusherConfig::validate`](crate::FlusherConfig::validate) refuses longer ones).
pub const MAX_SOURCE_NAME_LEN: usize = 255;

/// `name` with control characters replaced by `_`, cut to [`MAX_SOURCE_NAME_LEN`] bytes.
fn sanitize_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    truncate_str(&clean, MAX_SOURCE_NAME_LEN).to_owned()
}

/// `s` cut to at most `max` bytes, at a character boundary (names are cut this way wherever a
/// length is bounded: function names, source names, dead-letter reasons).
///
/// ```
/// assert_eq!(fnmetrics::sink::truncate_str("héllo", 2), "h");
/// assert_eq!(fnmetrics::sink::truncate_str("héllo", 3), "hé");
/// assert_eq!(fnmetrics::sink::truncate_str("abc", 10), "abc");
/// ```
pub fn truncate_str(s: &str, max: usize) -> &str {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Why bytes could not be decoded as an [`EntryRecord`].
///
/// ```
/// use fnmetrics::sink::{DecodeError, EntryRecord};
/// assert_eq!(EntryRecord::decode(&[9; 40]), Err(DecodeError::UnknownVersion(9)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the fixed part of an entry.
    TooShort,
    /// A format version this build does not know (written by a newer fnmetrics, or damaged).
    UnknownVersion(u8),
    /// The error flag is neither 0 nor 1.
    BadErrorFlag(u8),
    /// The function name is not UTF-8.
    NameNotUtf8,
    /// The service or host name is not UTF-8.
    SourceNotUtf8,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooShort => f.write_str("malformed entry: too short"),
            DecodeError::UnknownVersion(v) => write!(
                f,
                "entry of unknown format version {v} (this build reads versions \
                 {ENCODING_VERSION}, {WEIGHTED_ENCODING_VERSION} and {SOURCED_ENCODING_VERSION})"
            ),
            DecodeError::BadErrorFlag(b) => write!(f, "malformed entry: error flag {b}"),
            DecodeError::NameNotUtf8 => f.write_str("malformed entry: name not UTF-8"),
            DecodeError::SourceNotUtf8 => {
                f.write_str("malformed entry: service or host name not UTF-8")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// The format version [`EntryRecord::encode`] writes as its first byte for an entry of weight 1
/// without a source (what every fnmetrics reads).
///
/// The versions of a single entry are odd: 1, [`WEIGHTED_ENCODING_VERSION`] (3) and
/// [`SOURCED_ENCODING_VERSION`] (5). The even ones are the Redis sink's frames of entries
/// (2, and 4 with a source), which hold entries written by
/// [`EntryRecord::encode_without_source_into`].
pub const ENCODING_VERSION: u8 = 1;

/// The format version of an entry whose weight is above 1 (a sampled call) and that has no
/// source: version 1's fields, then the weight (`u32`), then the name. A drainer that does not
/// know it sets such an entry aside as a dead letter, to be re-queued once it is upgraded;
/// entries of weight 1 keep version 1, so a rolling deploy never blocks.
pub const WEIGHTED_ENCODING_VERSION: u8 = 3;

/// The format version of an entry that carries its [`Source`] (a service or host that is not
/// empty): version 3's fields (the weight, whatever it is), then the service and the host as
/// [`Source::encode_into`] writes them (each a `u16` length and UTF-8 bytes), then the name.
///
/// A single entry with a source is written so (a dead letter re-queued into Redis keeps where
/// it came from); an entry without one keeps version 1 or 3, which older drainers read. Frames
/// carry the source once for all their entries. A drainer that does not know version 5 sets
/// such an entry aside as a dead letter, to be re-queued once it is upgraded.
pub const SOURCED_ENCODING_VERSION: u8 = 5;

const FIXED: usize = 1 + 16 + 8 + 8 + 1;

impl EntryRecord {
    /// Encodes the entry as `version, id, created_at (i64 µs), execution_time (u64 ns), error,
    /// name` (integers little-endian): 34 bytes plus the name. An entry of weight above 1 is
    /// version [`WEIGHTED_ENCODING_VERSION`], with its weight (`u32`) before the name; an entry
    /// with a source (not [`Source::is_empty`]) is version [`SOURCED_ENCODING_VERSION`], with
    /// its weight, service and host before the name.
    ///
    /// ```
    /// use fnmetrics::sink::wire::{ENCODING_VERSION, SOURCED_ENCODING_VERSION};
    /// use fnmetrics::sink::{EntryRecord, Source};
    /// let mut e = EntryRecord {
    ///     id: [7; 16],
    ///     func_name: "app::f".into(),
    ///     execution_time: std::time::Duration::from_nanos(1500),
    ///     error_occurred: true,
    ///     created_at_micros: 1_700_000_000_000_000,
    ///     weight: 1,
    ///     source: Default::default(),
    /// };
    /// let bytes = e.encode();
    /// assert_eq!(bytes[0], ENCODING_VERSION);
    /// assert_eq!(EntryRecord::decode(&bytes).unwrap(), e);
    ///
    /// e.source = Source::new("checkout", "web-1").into();
    /// let bytes = e.encode();
    /// assert_eq!(bytes[0], SOURCED_ENCODING_VERSION);
    /// assert_eq!(EntryRecord::decode(&bytes).unwrap(), e);
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let source = if self.source.is_empty() {
            0
        } else {
            4 + 4 + self.source.service.len() + self.source.host.len()
        };
        let mut out = Vec::with_capacity(FIXED + 4 + source + self.func_name.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding of [`EntryRecord::encode`] to `out`.
    ///
    /// ```
    /// # use fnmetrics::sink::EntryRecord;
    /// # let e = EntryRecord { id: [1; 16], func_name: "f".into(),
    /// #   execution_time: std::time::Duration::ZERO, error_occurred: false, created_at_micros: 0,
    /// #   weight: 1, source: Default::default() };
    /// let mut buf = Vec::new();
    /// e.encode_into(&mut buf);
    /// assert_eq!(buf.len(), 35);
    /// ```
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        if self.source.is_empty() {
            return self.encode_without_source_into(out);
        }
        out.push(SOURCED_ENCODING_VERSION);
        self.encode_fixed(out);
        out.extend_from_slice(&self.weight.to_le_bytes());
        self.source.encode_into(out);
        out.extend_from_slice(self.func_name.as_bytes());
    }

    /// Appends the entry without its source (version [`ENCODING_VERSION`], or
    /// [`WEIGHTED_ENCODING_VERSION`] for a weight above 1), for a container that carries the
    /// source once for many entries (the Redis sink's frames);
    /// [`EntryRecord::decode_with_source`] reads it back.
    ///
    /// ```
    /// use fnmetrics::sink::{EntryRecord, Source};
    /// use std::sync::Arc;
    /// let source = Arc::new(Source::new("api", "h1"));
    /// let e = EntryRecord { id: [1; 16], func_name: "f".into(),
    ///     execution_time: std::time::Duration::ZERO, error_occurred: false,
    ///     created_at_micros: 0, weight: 1, source: source.clone() };
    /// let mut buf = Vec::new();
    /// e.encode_without_source_into(&mut buf);
    /// assert_eq!(buf.len(), 35);
    /// assert_eq!(EntryRecord::decode_with_source(&buf, &source).unwrap(), e);
    /// ```
    pub fn encode_without_source_into(&self, out: &mut Vec<u8>) {
        let weighted = self.weight != 1;
        out.push(if weighted {
            WEIGHTED_ENCODING_VERSION
        } else {
            ENCODING_VERSION
        });
        self.encode_fixed(out);
        if weighted {
            out.extend_from_slice(&self.weight.to_le_bytes());
        }
        out.extend_from_slice(self.func_name.as_bytes());
    }

    /// The fields after the version byte that every version has.
    fn encode_fixed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.created_at_micros.to_le_bytes());
        let nanos = u64::try_from(self.execution_time.as_nanos()).unwrap_or(u64::MAX);
        out.extend_from_slice(&nanos.to_le_bytes());
        out.push(u8::from(self.error_occurred));
    }

    /// Decodes what [`EntryRecord::encode`] made. An entry of version 1 or 3 has no source
    /// (empty names).
    ///
    /// # Errors
    /// [`DecodeError`] if the bytes are too short, of another version (an entry written by a newer
    /// fnmetrics is [`DecodeError::UnknownVersion`], never misread), or a name is not UTF-8.
    ///
    /// ```
    /// assert!(fnmetrics::sink::EntryRecord::decode(b"xx").is_err());
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<EntryRecord, DecodeError> {
        Self::decode_or(bytes, Arc::default)
    }

    /// Decodes what [`EntryRecord::encode_without_source_into`] (or [`EntryRecord::encode`])
    /// made, giving an entry without a source of its own `source` (shared, not copied: the
    /// entries of one frame share one allocation). An entry of version
    /// [`SOURCED_ENCODING_VERSION`] keeps its own.
    ///
    /// # Errors
    /// As [`EntryRecord::decode`].
    ///
    /// ```
    /// use fnmetrics::sink::{EntryRecord, Source};
    /// use std::sync::Arc;
    /// # let e = EntryRecord { id: [1; 16], func_name: "f".into(),
    /// #   execution_time: std::time::Duration::ZERO, error_occurred: false, created_at_micros: 0,
    /// #   weight: 1, source: Default::default() };
    /// let source = Arc::new(Source::new("api", "h1"));
    /// let d = EntryRecord::decode_with_source(&e.encode(), &source).unwrap();
    /// assert!(Arc::ptr_eq(&d.source, &source));
    /// ```
    pub fn decode_with_source(
        bytes: &[u8],
        source: &Arc<Source>,
    ) -> Result<EntryRecord, DecodeError> {
        Self::decode_or(bytes, || source.clone())
    }

    /// Decodes, with `source` for an entry that has none of its own.
    fn decode_or(
        bytes: &[u8],
        source: impl FnOnce() -> Arc<Source>,
    ) -> Result<EntryRecord, DecodeError> {
        let (fixed, sourced) = match bytes.first() {
            Some(&ENCODING_VERSION) => (FIXED, false),
            Some(&WEIGHTED_ENCODING_VERSION) => (FIXED + 4, false),
            Some(&SOURCED_ENCODING_VERSION) => (FIXED + 4, true),
            Some(&v) => return Err(DecodeError::UnknownVersion(v)),
            None => return Err(DecodeError::TooShort),
        };
        if bytes.len() < fixed {
            return Err(DecodeError::TooShort);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[1..17]);
        let le8 = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            b
        };
        let created_at_micros = i64::from_le_bytes(le8(17));
        let nanos = u64::from_le_bytes(le8(25));
        let error_occurred = match bytes[33] {
            0 => false,
            1 => true,
            b => return Err(DecodeError::BadErrorFlag(b)),
        };
        let weight = match fixed {
            FIXED => 1,
            _ => u32::from_le_bytes([bytes[34], bytes[35], bytes[36], bytes[37]]),
        };
        let (source, name_at) = if sourced {
            let (s, used) = Source::decode_prefix(&bytes[fixed..])?;
            (Arc::new(s), fixed + used)
        } else {
            (source(), fixed)
        };
        let name = std::str::from_utf8(&bytes[name_at..]).map_err(|_| DecodeError::NameNotUtf8)?;
        Ok(EntryRecord {
            id,
            func_name: name.into(),
            execution_time: Duration::from_nanos(nanos),
            error_occurred,
            created_at_micros,
            weight,
            source,
        })
    }

    /// The id in the usual hyphenated UUID text form.
    ///
    /// ```
    /// # use fnmetrics::sink::EntryRecord;
    /// # let e = EntryRecord { id: [0xab; 16], func_name: "f".into(),
    /// #   execution_time: std::time::Duration::ZERO, error_occurred: false, created_at_micros: 0,
    /// #   weight: 1, source: Default::default() };
    /// assert_eq!(e.id_string(), "abababab-abab-abab-abab-abababababab");
    /// ```
    pub fn id_string(&self) -> String {
        let h: String = self.id.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// Makes UUIDv7-layout ids from (unix ms, process instance, sequence): 48 bits of milliseconds,
/// version 7, then 40 bits of instance and 34 bits of sequence in the random fields.
#[derive(Debug, Clone)]
pub struct IdGen {
    instance: u64,
    seq: u64,
}

impl IdGen {
    /// A generator for this process, with a random 40-bit instance number.
    ///
    /// ```
    /// let mut g = fnmetrics::sink::IdGen::new();
    /// assert_ne!(g.next_id(1_000), g.next_id(1_000));
    /// ```
    pub fn new() -> IdGen {
        let r = random_128();
        IdGen::with_instance(r as u64)
    }

    /// A generator with a chosen instance number (its low 40 bits are used).
    ///
    /// ```
    /// let mut g = fnmetrics::sink::IdGen::with_instance(42);
    /// let id = g.next_id(1_700_000_000_000);
    /// assert_eq!(id[6] >> 4, 7); // UUID version 7
    /// ```
    pub fn with_instance(instance: u64) -> IdGen {
        IdGen {
            instance: instance & ((1 << 40) - 1),
            seq: 0,
        }
    }

    /// The next id, for an entry created at `unix_ms`.
    ///
    /// ```
    /// let mut g = fnmetrics::sink::IdGen::with_instance(1);
    /// assert!(g.next_id(5) < g.next_id(6));
    /// ```
    pub fn next_id(&mut self, unix_ms: u64) -> [u8; 16] {
        let seq = self.seq & ((1 << 34) - 1);
        self.seq = self.seq.wrapping_add(1);
        // 74 random bits: 12 in rand_a, 62 in rand_b.
        let rand = (u128::from(self.instance) << 34) | u128::from(seq);
        let rand_a = (rand >> 62) as u64 & 0xfff;
        let rand_b = rand as u64 & ((1 << 62) - 1);
        let hi = ((unix_ms & 0xffff_ffff_ffff) << 16) | (0x7 << 12) | rand_a;
        let lo = (0b10 << 62) | rand_b;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&hi.to_be_bytes());
        id[8..].copy_from_slice(&lo.to_be_bytes());
        id
    }
}

impl Default for IdGen {
    fn default() -> Self {
        Self::new()
    }
}

/// 128 random bits from the operating system (`getrandom`). Should the system source fail (it
/// does not on any supported platform once booted), SipHash under std's randomly keyed
/// `RandomState` of the time, the process id and a counter stands in: still unpredictable, never
/// a panic.
fn random_128() -> u128 {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_ok() {
        return u128::from_le_bytes(b);
    }
    use std::hash::{BuildHasher, Hasher};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let half = |part: u8| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(part);
        h.write_u64(n);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u64(crate::clock::raw_now());
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// A new flush id: 128 random bits, so two flushes never share an id (a shared id would make the
/// sink skip the second flush as a retry of the first, silently).
///
/// ```
/// assert_ne!(fnmetrics::sink::new_flush_id(), fnmetrics::sink::new_flush_id());
/// ```
pub fn new_flush_id() -> [u8; 16] {
    random_128().to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(weight: u32, source: Source) -> EntryRecord {
        EntryRecord {
            id: [0x5a; 16],
            func_name: "app::orders::place".into(),
            execution_time: Duration::from_nanos(123_456),
            error_occurred: true,
            created_at_micros: 1_700_000_000_123_456,
            weight,
            source: Arc::new(source),
        }
    }

    #[test]
    fn every_version_round_trips() {
        for (weight, source, version) in [
            (1, Source::default(), ENCODING_VERSION),
            (64, Source::default(), WEIGHTED_ENCODING_VERSION),
            (1, Source::new("svc", "h-1"), SOURCED_ENCODING_VERSION),
            (64, Source::new("svc", "h-1"), SOURCED_ENCODING_VERSION),
            // One name is enough to be a source.
            (1, Source::new("", "h-1"), SOURCED_ENCODING_VERSION),
            (1, Source::new("svc", ""), SOURCED_ENCODING_VERSION),
        ] {
            let e = entry(weight, source);
            let bytes = e.encode();
            assert_eq!(bytes[0], version, "{e:?}");
            assert_eq!(EntryRecord::decode(&bytes), Ok(e.clone()));
            let mut appended = vec![0xee];
            e.encode_into(&mut appended);
            assert_eq!(appended[1..], bytes[..]);
        }
    }

    #[test]
    fn the_sourced_version_lays_out_weight_service_host_then_name() {
        let b = entry(7, Source::new("ab", "c")).encode();
        assert_eq!(&b[34..38], &7u32.to_le_bytes());
        assert_eq!(&b[38..], b"\x02\x00ab\x01\x00capp::orders::place");
    }

    #[test]
    fn entries_without_their_source_take_the_given_one() {
        let source = Arc::new(Source::new("svc", "h-1"));
        for weight in [1, 3] {
            let mut e = entry(weight, Source::default());
            e.source = source.clone();
            let mut b = Vec::new();
            e.encode_without_source_into(&mut b);
            assert_eq!(b[0], if weight == 1 { 1 } else { 3 });
            let d = EntryRecord::decode_with_source(&b, &source).unwrap();
            assert!(Arc::ptr_eq(&d.source, &source));
            assert_eq!(d, e);
            // Read alone, it has no source.
            assert!(EntryRecord::decode(&b).unwrap().source.is_empty());
        }
        // An entry that carries its own source keeps it.
        let own = entry(1, Source::new("other", "h-2"));
        let d = EntryRecord::decode_with_source(&own.encode(), &source).unwrap();
        assert_eq!(d.source, own.source);
    }

    #[test]
    fn names_longer_than_u16_max_are_cut_at_a_character_boundary() {
        let long = "é".repeat(40_000); // 80 000 bytes
        let e = entry(1, Source::new(long.as_str(), "h"));
        let d = EntryRecord::decode(&e.encode()).unwrap();
        // 65 535 is odd, and "é" is 2 bytes: the cut falls before it.
        assert_eq!(d.source.service.len(), 65_534);
        assert!(long.starts_with(&*d.source.service));
        assert_eq!(&*d.source.host, "h");
        assert_eq!(d.func_name, e.func_name);
    }

    #[test]
    fn truncated_and_damaged_entries_are_errors_not_panics() {
        for e in [
            entry(1, Source::default()),
            entry(9, Source::default()),
            entry(9, Source::new("svc", "host")),
        ] {
            let b = e.encode();
            let name_at = b.len() - e.func_name.len();
            for cut in 0..b.len() {
                let got = EntryRecord::decode(&b[..cut]);
                if cut < name_at {
                    assert!(got.is_err(), "{} bytes of {:?} decoded", cut, b[0]);
                } else {
                    // Inside the name (the rest of the entry): a shorter name.
                    assert_eq!(&*got.unwrap().func_name, &e.func_name[..cut - name_at]);
                }
            }
        }
        let mut b = entry(1, Source::new("svc", "host")).encode();
        b[38 + 2] = 0xff; // the service's first byte
        assert_eq!(EntryRecord::decode(&b), Err(DecodeError::SourceNotUtf8));
        b[38..40].copy_from_slice(&u16::MAX.to_le_bytes()); // a length past the end
        assert_eq!(EntryRecord::decode(&b), Err(DecodeError::TooShort));
        b[0] = 4; // a frame's version is not an entry's
        assert_eq!(EntryRecord::decode(&b), Err(DecodeError::UnknownVersion(4)));
        let e = DecodeError::UnknownVersion(6).to_string();
        assert!(e.contains("1, 3 and 5"), "{e}");
    }

    #[test]
    fn this_process_has_a_service_that_a_flusher_takes() {
        let s = Source::this_process();
        assert!(!s.service.is_empty());
        for name in [&*s.service, &*s.host] {
            assert!(name.len() <= MAX_SOURCE_NAME_LEN);
            assert!(!name.chars().any(char::is_control), "{name:?}");
        }
        assert_eq!(sanitize_name("a\0b\nc"), "a_b_c");
        let long = sanitize_name(&"ü".repeat(200));
        assert_eq!(long.len(), 254);
    }
}
