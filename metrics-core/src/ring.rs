//! Per-call entries on the hot path: a single-producer ring per thread, a bounded shared spill
//! queue for bursts, and [`Rings`], the flusher's handle that turns entries on, drains them and
//! turns them off.

use crate::outcome::Outcome;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::Arc;

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

fn set_mode(mode: Option<EntryMode>) {
    let m = match mode {
        Some(EntryMode::All) => MODE_ALL,
        Some(EntryMode::ErrorsOnly) => MODE_ERRORS,
        Some(EntryMode::None) | None => MODE_OFF,
    };
    MODE.store(m, Relaxed);
}

/// Entries a ring holds; past that, new ones spill into the shared queue (the flusher empties
/// rings long before that).
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

    /// Pushes one entry into the ring, or the spill queue when the ring is full; false if both
    /// were full and the entry was dropped (the caller counts it).
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
fn drain_rings(out: &mut Vec<RawEntry>) -> usize {
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

/// Entries waiting in the rings and the spill queue.
fn backlog() -> u64 {
    let rings: u64 = RINGS
        .lock()
        .iter()
        .map(|r| {
            // Head first: it never passes the tail read after it.
            let head = r.head.load(Acquire);
            r.tail.load(Acquire).saturating_sub(head) as u64
        })
        .sum();
    rings + SPILL.len.load(Relaxed) as u64
}

/// The running flusher's handle on the entry rings. Opening it turns per-call entries on (in
/// `mode`), with a spill queue of `spill_cap` and a channel to nudge the flusher; [`Rings::close`]
/// turns them off. One flusher runs per process, so one handle is open at a time.
pub(crate) struct Rings(());

impl Rings {
    pub(crate) fn open(
        mode: EntryMode,
        spill_cap: usize,
        nudge: crossbeam_channel::Sender<()>,
    ) -> Rings {
        set_nudge(Some(nudge));
        set_spill_capacity(spill_cap);
        set_mode(Some(mode));
        Rings(())
    }

    /// Moves every entry waiting in the rings and the spill queue into `out`; returns how many.
    pub(crate) fn drain(&self, out: &mut Vec<RawEntry>) -> usize {
        drain_rings(out)
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
