//! Per-call entries: a single-producer ring per thread on the hot path, and the records the
//! flusher makes of them (ids, wall-clock times, a compact binary encoding shared by the sinks).

use crate::registry::Outcome;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

/// Which calls produce a per-call entry when a flusher is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EntryMode {
    /// Every call (the default).
    #[default]
    All,
    /// Only calls that failed (errors, panics).
    ErrorsOnly,
    /// No per-call entries; aggregates only.
    None,
}

static MODE: AtomicU8 = AtomicU8::new(MODE_OFF);
const MODE_OFF: u8 = 0;
const MODE_ALL: u8 = 1;
const MODE_ERRORS: u8 = 2;

/// Whether the hot path should push entries at all (a flusher with entries is running).
#[inline(always)]
pub(crate) fn entries_enabled() -> bool {
    MODE.load(Relaxed) != MODE_OFF
}

pub(crate) fn set_mode(mode: Option<EntryMode>) {
    let m = match mode {
        Some(EntryMode::All) => MODE_ALL,
        Some(EntryMode::ErrorsOnly) => MODE_ERRORS,
        Some(EntryMode::None) | None => MODE_OFF,
    };
    MODE.store(m, Relaxed);
}

/// Entries a ring holds before it drops new ones (the flusher empties rings long before that).
const RING_CAP: usize = 8192;
/// Every this many pushes, the producer nudges the flusher.
const NUDGE_EVERY: usize = 1024;

#[derive(Clone, Copy)]
pub(crate) struct RawEntry {
    pub(crate) metric: u32,
    pub(crate) outcome: Outcome,
    pub(crate) nanos: u64,
    pub(crate) end_raw: u64,
}

/// A bounded single-producer, single-consumer ring.
pub(crate) struct Ring {
    buf: Box<[UnsafeCell<MaybeUninit<RawEntry>>]>,
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
    closed: AtomicBool,
}

// SAFETY: a slot is written by the single producer before `tail` is published with Release and
// read by the single consumer (the flusher, which holds RINGS' lock) only below that `tail`.
unsafe impl Sync for Ring {}
// SAFETY: see above; RawEntry is plain data.
unsafe impl Send for Ring {}

impl Ring {
    fn new() -> Ring {
        Ring {
            buf: (0..RING_CAP)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
        }
    }

    /// Moves every published entry into `out`; returns how many.
    fn drain_into(&self, out: &mut Vec<RawEntry>) -> usize {
        let head = self.head.load(Relaxed);
        let tail = self.tail.load(Acquire);
        for i in head..tail {
            // SAFETY: slots in head..tail were fully written before `tail` was released.
            let e = unsafe { (*self.buf[i % RING_CAP].get()).assume_init() };
            out.push(e);
        }
        self.head.store(tail, Release);
        tail - head
    }

    fn is_empty(&self) -> bool {
        self.head.load(Relaxed) == self.tail.load(Acquire)
    }
}

static RINGS: Mutex<Vec<Arc<Ring>>> = Mutex::new(Vec::new());

/// Where entries go when a thread's ring is full (a burst faster than the flusher drains): a
/// shared queue, bounded by `max_pending_entries`. Only this overflow path pays for a shared
/// write; past the bound the entry is dropped and counted.
struct Spill {
    tx: crossbeam_channel::Sender<RawEntry>,
    rx: crossbeam_channel::Receiver<RawEntry>,
    len: AtomicUsize,
    cap: AtomicUsize,
}

static SPILL: once_cell::sync::Lazy<Spill> = once_cell::sync::Lazy::new(|| {
    let (tx, rx) = crossbeam_channel::unbounded();
    Spill {
        tx,
        rx,
        len: AtomicUsize::new(0),
        cap: AtomicUsize::new(0),
    }
});

pub(crate) fn set_spill_capacity(cap: usize) {
    SPILL.cap.store(cap, Relaxed);
}

#[cold]
#[inline(never)]
fn spill(e: RawEntry) -> bool {
    let s = &*SPILL;
    let before = s.len.fetch_add(1, Relaxed);
    if before >= s.cap.load(Relaxed) {
        s.len.fetch_sub(1, Relaxed);
        return false;
    }
    // The receiver lives in the same static, so the send cannot fail.
    let _ = s.tx.send(e);
    if before.is_multiple_of(NUDGE_EVERY) {
        nudge();
    }
    true
}
static NUDGE: Mutex<Option<crossbeam_channel::Sender<()>>> = Mutex::new(None);

pub(crate) fn set_nudge(tx: Option<crossbeam_channel::Sender<()>>) {
    *NUDGE.lock() = tx;
}

/// The producer side, kept in the thread-local state.
pub(crate) struct LocalRing {
    ring: UnsafeCell<Option<Arc<Ring>>>,
    head_seen: Cell<usize>,
}

impl LocalRing {
    pub(crate) const fn new() -> LocalRing {
        LocalRing {
            ring: UnsafeCell::new(None),
            head_seen: Cell::new(0),
        }
    }

    /// Pushes one entry; false if it had to be dropped (ring full).
    #[inline]
    pub(crate) fn push(&self, metric: u32, nanos: u64, end_raw: u64, outcome: Outcome) -> bool {
        if MODE.load(Relaxed) == MODE_ERRORS && !outcome.is_error() {
            return true;
        }
        // SAFETY: only this thread touches its LocalRing.
        let slot = unsafe { &mut *self.ring.get() };
        let ring = match slot {
            Some(r) => &**r,
            None => {
                let r = Arc::new(Ring::new());
                RINGS.lock().push(r.clone());
                &**slot.insert(r)
            }
        };
        let tail = ring.tail.load(Relaxed);
        if tail - self.head_seen.get() >= RING_CAP {
            self.head_seen.set(ring.head.load(Acquire));
            if tail - self.head_seen.get() >= RING_CAP {
                return spill(RawEntry {
                    metric,
                    outcome,
                    nanos,
                    end_raw,
                });
            }
        }
        // SAFETY: the slot at `tail` is outside head..tail, so the consumer does not read it.
        unsafe {
            (*ring.buf[tail % RING_CAP].get()).write(RawEntry {
                metric,
                outcome,
                nanos,
                end_raw,
            });
        }
        ring.tail.store(tail + 1, Release);
        if (tail + 1) % NUDGE_EVERY == 0 {
            nudge();
        }
        true
    }
}

impl Drop for LocalRing {
    fn drop(&mut self) {
        if let Some(r) = self.ring.get_mut() {
            r.closed.store(true, Release);
        }
    }
}

#[cold]
fn nudge() {
    if let Some(tx) = NUDGE.lock().as_ref() {
        let _ = tx.try_send(());
    }
}

/// Moves every entry the rings hold into `out`, and forgets rings of exited threads once empty.
pub(crate) fn drain_rings(out: &mut Vec<RawEntry>) -> usize {
    let mut rings = RINGS.lock();
    let mut n = 0;
    for r in rings.iter() {
        n += r.drain_into(out);
    }
    rings.retain(|r| !(r.closed.load(Acquire) && r.is_empty()));
    drop(rings);
    let s = &*SPILL;
    for e in s.rx.try_iter() {
        s.len.fetch_sub(1, Relaxed);
        out.push(e);
        n += 1;
    }
    n
}

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
}

/// An error decoding an [`EntryRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed entry: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

const ENCODING_VERSION: u8 = 1;
const FIXED: usize = 1 + 16 + 8 + 8 + 1;

impl EntryRecord {
    /// Encodes the entry as `version, id, created_at (i64 µs), execution_time (u64 ns), error,
    /// name` (integers little-endian): 34 bytes plus the name.
    ///
    /// ```
    /// use fnmetrics_core::EntryRecord;
    /// let e = EntryRecord {
    ///     id: [7; 16],
    ///     func_name: "app::f".into(),
    ///     execution_time: std::time::Duration::from_nanos(1500),
    ///     error_occurred: true,
    ///     created_at_micros: 1_700_000_000_000_000,
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
    /// # use fnmetrics_core::EntryRecord;
    /// # let e = EntryRecord { id: [1; 16], func_name: "f".into(),
    /// #   execution_time: std::time::Duration::ZERO, error_occurred: false, created_at_micros: 0 };
    /// let mut buf = Vec::new();
    /// e.encode_into(&mut buf);
    /// assert_eq!(buf.len(), 35);
    /// ```
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(ENCODING_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.created_at_micros.to_le_bytes());
        let nanos = u64::try_from(self.execution_time.as_nanos()).unwrap_or(u64::MAX);
        out.extend_from_slice(&nanos.to_le_bytes());
        out.push(u8::from(self.error_occurred));
        out.extend_from_slice(self.func_name.as_bytes());
    }

    /// Decodes what [`EntryRecord::encode`] made.
    ///
    /// # Errors
    /// [`DecodeError`] if the bytes are too short, of another version, or the name is not UTF-8.
    ///
    /// ```
    /// assert!(fnmetrics_core::EntryRecord::decode(b"xx").is_err());
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<EntryRecord, DecodeError> {
        if bytes.len() < FIXED {
            return Err(DecodeError("too short"));
        }
        if bytes[0] != ENCODING_VERSION {
            return Err(DecodeError("unknown version"));
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
            _ => return Err(DecodeError("bad error flag")),
        };
        let name =
            std::str::from_utf8(&bytes[FIXED..]).map_err(|_| DecodeError("name not UTF-8"))?;
        Ok(EntryRecord {
            id,
            func_name: name.into(),
            execution_time: Duration::from_nanos(nanos),
            error_occurred,
            created_at_micros,
        })
    }

    /// The id in the usual hyphenated UUID text form.
    ///
    /// ```
    /// # use fnmetrics_core::EntryRecord;
    /// # let e = EntryRecord { id: [0xab; 16], func_name: "f".into(),
    /// #   execution_time: std::time::Duration::ZERO, error_occurred: false, created_at_micros: 0 };
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
    /// let mut g = fnmetrics_core::IdGen::new();
    /// assert_ne!(g.next_id(1_000), g.next_id(1_000));
    /// ```
    pub fn new() -> IdGen {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(crate::clock::raw_to_unix_nanos(crate::clock::raw_now()));
        IdGen::with_instance(h.finish())
    }

    /// A generator with a chosen instance number (its low 40 bits are used).
    ///
    /// ```
    /// let mut g = fnmetrics_core::IdGen::with_instance(42);
    /// let id = g.next_id(1_700_000_000_000);
    /// assert_eq!(id[6] >> 4, 7); // UUID version 7
    /// ```
    pub fn with_instance(instance: u64) -> IdGen {
        IdGen {
            instance: instance & ((1 << 40) - 1),
            seq: 0,
        }
    }

    /// The low bits of the instance number (a per-process random value).
    pub(crate) fn instance_bits(&self) -> u64 {
        self.instance
    }

    /// The next id, for an entry created at `unix_ms`.
    ///
    /// ```
    /// let mut g = fnmetrics_core::IdGen::with_instance(1);
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
