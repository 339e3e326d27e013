//! Per-call entries on the hot path: a single-producer ring per thread, a bounded shared spill
//! queue for bursts, and [`Rings`], the flusher's handle that turns entries on, drains them and
//! turns them off.

use crate::outcome::Outcome;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;

/// Which calls produce a per-call entry when a flusher is running. The aggregates count every
/// call whatever the mode.
///
/// ```
/// use fnmetrics::EntryMode;
/// use std::time::Duration;
/// let b = fnmetrics::Flusher::builder()
///     .entries(EntryMode::ErrorsAndSlow(Duration::from_millis(250)));
/// # drop(b);
/// let b = fnmetrics::Flusher::builder().entries(EntryMode::Sample(100));
/// # drop(b);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EntryMode {
    /// Every call (the default; for a sampling function, every timed call).
    #[default]
    All,
    /// Only calls that failed (errors, panics).
    ErrorsOnly,
    /// Every call that failed, and every call at least this slow; nothing else. Each entry
    /// stands for itself (weight as the call's).
    ErrorsAndSlow(std::time::Duration),
    /// About one call in `n`, at random (as `#[measured(sample = n)]` chooses): each entry
    /// carries weight `n` (times the function's own), so that counts from entries stay right.
    /// `n` from 1 to [`MAX_SAMPLE`](crate::MAX_SAMPLE).
    Sample(u32),
    /// No per-call entries; aggregates only.
    None,
}

/// The running flusher's entry mode as the hot path reads it: the mode in the low 8 bits, its
/// argument (`ErrorsAndSlow`'s threshold in nanoseconds, saturated at 2^56, or `Sample`'s `n`)
/// above, in one word so that a call never sees a mode with another mode's argument. `All` has
/// no argument, so the common test is one comparison with `MODE_ALL`.
static MODE: AtomicU64 = AtomicU64::new(MODE_OFF);
const MODE_OFF: u64 = 0;
const MODE_ALL: u64 = 1;
const MODE_ERRORS: u64 = 2;
const MODE_SLOW: u64 = 3;
const MODE_SAMPLE: u64 = 4;
/// The largest argument the mode word holds.
const MODE_ARG_MAX: u64 = (1 << 56) - 1;

/// Whether the hot path should push entries at all (a flusher with entries is running).
#[inline(always)]
pub(crate) fn entries_enabled() -> bool {
    MODE.load(Relaxed) != MODE_OFF
}

fn set_mode(mode: Option<EntryMode>) {
    let (m, arg) = match mode {
        Some(EntryMode::All) => (MODE_ALL, 0),
        Some(EntryMode::ErrorsOnly) => (MODE_ERRORS, 0),
        Some(EntryMode::ErrorsAndSlow(d)) => {
            (MODE_SLOW, u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        }
        Some(EntryMode::Sample(n)) => (MODE_SAMPLE, u64::from(n.max(1))),
        Some(EntryMode::None) | None => (MODE_OFF, 0),
    };
    MODE.store(m | arg.min(MODE_ARG_MAX) << 8, Relaxed);
}

/// Whether a call of `nanos` that ended as `outcome` makes an entry in a mode other than
/// `All`, and the entry's weight (the call's `weight`, times `n` in `Sample(n)`).
#[cold]
#[inline(never)]
fn filtered(word: u64, nanos: u64, outcome: Outcome, weight: u32) -> Option<u32> {
    let arg = word >> 8;
    match word & 0xff {
        MODE_ERRORS => outcome.is_error().then_some(weight),
        MODE_SLOW => (outcome.is_error() || nanos >= arg).then_some(weight),
        MODE_SAMPLE => {
            let n = u32::try_from(arg).unwrap_or(u32::MAX);
            crate::site::sample_one_in(n).then(|| weight.saturating_mul(n))
        }
        _ => Some(weight),
    }
}

/// Entries a ring holds; past that, new ones spill into the shared queue (the flusher empties
/// rings long before that).
const RING_CAP: usize = 8192;
/// Every this many pushes, the producer nudges the flusher.
const NUDGE_EVERY: usize = 1024;

#[derive(Clone, Copy)]
pub(crate) struct RawEntry {
    pub(crate) metric: u32,
    /// How many calls it stands for (sampling).
    pub(crate) weight: u32,
    pub(crate) outcome: Outcome,
    pub(crate) nanos: u64,
    pub(crate) end_raw: u64,
}

/// A bounded single-producer, single-consumer ring.
pub(crate) struct Ring {
    buf: Box<[UnsafeCell<MaybeUninit<RawEntry>>]>,
    head: CachePadded<AtomicUsize>,
    /// The producer's line: where it writes next, and how many entries it dropped.
    producer: CachePadded<Producer>,
    closed: AtomicBool,
}

/// What only the producer writes, on one cache line.
struct Producer {
    tail: AtomicUsize,
    /// Entries this thread dropped (ring and spill queue full), counted with a plain load and
    /// store: one writer.
    dropped: AtomicU64,
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
            producer: CachePadded::new(Producer {
                tail: AtomicUsize::new(0),
                dropped: AtomicU64::new(0),
            }),
            closed: AtomicBool::new(false),
        }
    }

    /// Moves up to `limit` published entries into `out`, oldest first; returns how many.
    fn drain_into(&self, out: &mut Vec<RawEntry>, limit: usize) -> usize {
        let head = self.head.load(Relaxed);
        let tail = self
            .producer
            .tail
            .load(Acquire)
            .min(head.saturating_add(limit));
        for i in head..tail {
            // SAFETY: slots in head..tail were fully written before `tail` was released.
            let e = unsafe { (*self.buf[i % RING_CAP].get()).assume_init() };
            out.push(e);
        }
        self.head.store(tail, Release);
        tail - head
    }

    fn is_empty(&self) -> bool {
        self.head.load(Relaxed) == self.producer.tail.load(Acquire)
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

static SPILL: std::sync::LazyLock<Spill> = std::sync::LazyLock::new(|| {
    let (tx, rx) = crossbeam_channel::unbounded();
    Spill {
        tx,
        rx,
        len: AtomicUsize::new(0),
        cap: AtomicUsize::new(0),
    }
});

fn set_spill_capacity(cap: usize) {
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

fn set_nudge(tx: Option<crossbeam_channel::Sender<()>>) {
    *NUDGE.lock() = tx;
}

/// After the spill queue refused an entry, this many more entries that find the ring full are
/// dropped without trying it: a dropped entry then costs a few local stores, not a write to a
/// line that the flusher and every other thread also write (which made a call 3 to 4 times
/// slower under overload than one whose entry was kept).
const DROP_STREAK: u32 = 1024;

/// The producer side, kept in the thread-local state.
pub(crate) struct LocalRing {
    ring: UnsafeCell<Option<Arc<Ring>>>,
    head_seen: Cell<usize>,
    /// Entries still to drop without trying the spill queue (see [`DROP_STREAK`]).
    drop_streak: Cell<u32>,
}

impl LocalRing {
    pub(crate) const fn new() -> LocalRing {
        LocalRing {
            ring: UnsafeCell::new(None),
            head_seen: Cell::new(0),
            drop_streak: Cell::new(0),
        }
    }

    /// Pushes one entry into the ring, or the spill queue when the ring is full; false if both
    /// were full and the entry was dropped (counted here per thread, and by the caller per
    /// function).
    #[inline]
    pub(crate) fn push(
        &self,
        metric: u32,
        weight: u32,
        nanos: u64,
        end_raw: u64,
        outcome: Outcome,
    ) -> bool {
        let mode = MODE.load(Relaxed);
        let weight = if mode == MODE_ALL {
            weight
        } else {
            match filtered(mode, nanos, outcome, weight) {
                Some(w) => w,
                // Not an entry in this mode: nothing dropped.
                None => return true,
            }
        };
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
        let tail = ring.producer.tail.load(Relaxed);
        if tail - self.head_seen.get() >= RING_CAP {
            self.head_seen.set(ring.head.load(Acquire));
            if tail - self.head_seen.get() >= RING_CAP {
                return self.overflow(
                    ring,
                    RawEntry {
                        metric,
                        weight,
                        outcome,
                        nanos,
                        end_raw,
                    },
                );
            }
        }
        // SAFETY: the slot at `tail` is outside head..tail, so the consumer does not read it.
        unsafe {
            (*ring.buf[tail % RING_CAP].get()).write(RawEntry {
                metric,
                weight,
                outcome,
                nanos,
                end_raw,
            });
        }
        ring.producer.tail.store(tail + 1, Release);
        if (tail + 1) % NUDGE_EVERY == 0 {
            nudge();
        }
        true
    }

    /// The ring is full: the entry goes to the spill queue, or is dropped and counted.
    #[cold]
    #[inline(never)]
    fn overflow(&self, ring: &Ring, entry: RawEntry) -> bool {
        let streak = self.drop_streak.get();
        let kept = streak == 0 && spill(entry);
        if !kept {
            self.drop_streak.set(match streak {
                0 => DROP_STREAK,
                n => n - 1,
            });
            let d = &ring.producer.dropped;
            d.store(d.load(Relaxed) + 1, Relaxed);
        }
        kept
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

/// Entries dropped on the hot path by threads whose rings are gone, and by calls made after a
/// thread's local state was torn down.
static RETIRED_DROPS: AtomicU64 = AtomicU64::new(0);

/// Counts an entry dropped by a call whose thread has no ring any more.
pub(crate) fn count_late_drop() {
    RETIRED_DROPS.fetch_add(1, Relaxed);
}

/// Every entry dropped on the hot path since the process started.
fn hot_drops() -> u64 {
    let rings = RINGS.lock();
    let live: u64 = rings.iter().map(|r| r.producer.dropped.load(Relaxed)).sum();
    // Read under the lock, which retiring a ring takes too: no count is seen twice or missed.
    live + RETIRED_DROPS.load(Relaxed)
}

/// Moves up to `limit` entries from the rings and the spill queue into `out` (the spill queue,
/// the oldest overflow, first), and forgets rings of exited threads once empty.
fn drain_rings(out: &mut Vec<RawEntry>, limit: usize) -> usize {
    let mut n = 0;
    let s = &*SPILL;
    while n < limit {
        let Ok(e) = s.rx.try_recv() else { break };
        s.len.fetch_sub(1, Relaxed);
        out.push(e);
        n += 1;
    }
    let mut rings = RINGS.lock();
    for r in rings.iter() {
        n += r.drain_into(out, limit - n);
    }
    rings.retain(|r| {
        let gone = r.closed.load(Acquire) && r.is_empty();
        if gone {
            RETIRED_DROPS.fetch_add(r.producer.dropped.load(Relaxed), Relaxed);
        }
        !gone
    });
    n
}

/// Entries waiting in the rings and the spill queue.
fn backlog() -> u64 {
    let rings: u64 = RINGS
        .lock()
        .iter()
        .map(|r| {
            // Head first: it never passes the tail read after it.
            let head = r.head.load(Acquire);
            r.producer.tail.load(Acquire).saturating_sub(head) as u64
        })
        .sum();
    rings + SPILL.len.load(Relaxed) as u64
}

/// The running flusher's handle on the entry rings. Opening it turns per-call entries on (in
/// `mode`), with a spill queue of `spill_cap` and a channel to nudge the flusher; [`Rings::close`]
/// turns them off. One flusher runs per process, so one handle is open at a time.
pub(crate) struct Rings {
    /// [`hot_drops`] when the handle was opened.
    drops_before: u64,
}

impl Rings {
    pub(crate) fn open(
        mode: EntryMode,
        spill_cap: usize,
        nudge: crossbeam_channel::Sender<()>,
    ) -> Rings {
        set_nudge(Some(nudge));
        set_spill_capacity(spill_cap);
        let drops_before = hot_drops();
        set_mode(Some(mode));
        Rings { drops_before }
    }

    /// Moves up to `limit` entries waiting in the rings and the spill queue into `out`; returns
    /// how many. What is left waits there (and, once they are full, new entries are dropped
    /// where they are made, at little cost).
    pub(crate) fn drain(&self, out: &mut Vec<RawEntry>, limit: usize) -> usize {
        drain_rings(out, limit)
    }

    /// Entries dropped where they were made (ring and spill queue full) since this handle was
    /// opened.
    pub(crate) fn dropped(&self) -> u64 {
        hot_drops().saturating_sub(self.drops_before)
    }

    /// How many entries wait in the rings and the spill queue.
    pub(crate) fn backlog(&self) -> u64 {
        backlog()
    }

    /// Stops making entries (calls are still counted in the aggregates).
    pub(crate) fn close(&self) {
        set_mode(None);
        set_nudge(None);
    }
}
