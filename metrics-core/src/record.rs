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
    /// ```
    /// let s = fnmetrics::sink::Source::this_process();
    /// assert!(!s.service.is_empty());
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
        Source::new(service, host)
    }

    /// Whether both names are empty (nothing recorded).
    ///
    /// ```
    /// assert!(fnmetrics::sink::Source::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.service.is_empty() && self.host.is_empty()
    }
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
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooShort => f.write_str("malformed entry: too short"),
            DecodeError::UnknownVersion(v) => {
                write!(f, "entry of unknown format version {v} (this build reads version {ENCODING_VERSION})")
            }
            DecodeError::BadErrorFlag(b) => write!(f, "malformed entry: error flag {b}"),
            DecodeError::NameNotUtf8 => f.write_str("malformed entry: name not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The format version [`EntryRecord::encode`] writes as its first byte for an entry of weight 1
/// (what every fnmetrics reads).
pub const ENCODING_VERSION: u8 = 1;

/// The format version of an entry whose weight is above 1 (a sampled call): version 1's fields,
/// then the weight (`u32`), then the name. (2 is the Redis sink's frame of entries.) A drainer
/// that does not know it sets such an entry aside as a dead letter, to be re-queued once it is
/// upgraded; entries of weight 1 keep version 1, so a rolling deploy never blocks.
pub const WEIGHTED_ENCODING_VERSION: u8 = 3;
const FIXED: usize = 1 + 16 + 8 + 8 + 1;

impl EntryRecord {
    /// Encodes the entry as `version, id, created_at (i64 µs), execution_time (u64 ns), error,
    /// name` (integers little-endian): 34 bytes plus the name; an entry of weight above 1 as
    /// version [`WEIGHTED_ENCODING_VERSION`], with its weight (`u32`) before the name.
    ///
    /// ```
    /// use fnmetrics::sink::EntryRecord;
    /// let e = EntryRecord {
    ///     id: [7; 16],
    ///     func_name: "app::f".into(),
    ///     execution_time: std::time::Duration::from_nanos(1500),
    ///     error_occurred: true,
    ///     created_at_micros: 1_700_000_000_000_000,
    ///     weight: 1,
    ///     source: Default::default(),
    /// };
    /// let bytes = e.encode();
    /// assert_eq!(EntryRecord::decode(&bytes).unwrap(), e);
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED + self.func_name.len());
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
        let weighted = self.weight != 1;
        out.push(if weighted {
            WEIGHTED_ENCODING_VERSION
        } else {
            ENCODING_VERSION
        });
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.created_at_micros.to_le_bytes());
        let nanos = u64::try_from(self.execution_time.as_nanos()).unwrap_or(u64::MAX);
        out.extend_from_slice(&nanos.to_le_bytes());
        out.push(u8::from(self.error_occurred));
        if weighted {
            out.extend_from_slice(&self.weight.to_le_bytes());
        }
        out.extend_from_slice(self.func_name.as_bytes());
    }

    /// Decodes what [`EntryRecord::encode`] made.
    ///
    /// # Errors
    /// [`DecodeError`] if the bytes are too short, of another version (an entry written by a newer
    /// fnmetrics is [`DecodeError::UnknownVersion`], never misread), or the name is not UTF-8.
    ///
    /// ```
    /// assert!(fnmetrics::sink::EntryRecord::decode(b"xx").is_err());
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<EntryRecord, DecodeError> {
        let fixed = match bytes.first() {
            Some(&ENCODING_VERSION) => FIXED,
            Some(&WEIGHTED_ENCODING_VERSION) => FIXED + 4,
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
        let name = std::str::from_utf8(&bytes[fixed..]).map_err(|_| DecodeError::NameNotUtf8)?;
        Ok(EntryRecord {
            id,
            func_name: name.into(),
            execution_time: Duration::from_nanos(nanos),
            error_occurred,
            created_at_micros,
            weight,
            source: Arc::default(),
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
        h.write_u128(crate::clock::raw_to_unix_nanos(crate::clock::raw_now()));
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
