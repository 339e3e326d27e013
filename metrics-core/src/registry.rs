//! The in-process registry: one [`Metric`] per function name, one [`Slot`] per (thread, metric).
//!
//! A slot is written only by the thread that owns it, with plain relaxed loads and stores (no
//! `lock`-prefixed instruction, no shared cache line), and read by anyone who sums a snapshot.
//! Slots are never freed: when a thread exits its slots are released and the next new thread to
//! record that metric takes one over, counts and all, so memory is bounded by the number of
//! threads alive at once and nothing a dead thread recorded is lost.

use crate::histogram::{self, BUCKETS};
use crate::ring::{self, LocalRing};
use crate::snapshot::Snapshot;
use once_cell::sync::Lazy;
use parking_lot::{Mutex, RwLock};
use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

/// How a measured call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// Returned a value that is not an error.
    Ok = 0,
    /// Returned an error (`Err`, or what `error_if` said).
    Error = 1,
    /// Panicked: counts as an error, too.
    Panic = 2,
    /// An async call whose future was dropped before it completed.
    Cancelled = 3,
}

impl Outcome {
    /// Whether this outcome counts as an error.
    ///
    /// ```
    /// use fnmetrics_core::Outcome;
    /// assert!(Outcome::Panic.is_error());
    /// assert!(!Outcome::Cancelled.is_error());
    /// ```
    pub fn is_error(self) -> bool {
        matches!(self, Outcome::Error | Outcome::Panic)
    }
}

/// One thread's counters for one metric. Aligned so two slots never share a cache line.
#[repr(align(128))]
pub(crate) struct Slot {
    in_use: AtomicBool,
    errors: AtomicU64,
    panics: AtomicU64,
    cancelled: AtomicU64,
    dropped: AtomicU64,
    total_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
    /// Calls are not counted apart: a call is one histogram count, so `calls` is their sum.
    buckets: [AtomicU64; BUCKETS],
}

/// Adds to a counter that only this thread writes: a load and a store, no atomic read-modify-write.
#[inline(always)]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Slot {
    fn new(in_use: bool) -> Slot {
        Slot {
            in_use: AtomicBool::new(in_use),
            errors: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }

    /// Records one call; only the owning thread may call this.
    #[inline(always)]
    fn record_owned(&self, nanos: u64, outcome: Outcome) {
        if outcome == Outcome::Cancelled {
            bump(&self.cancelled, 1);
            return;
        }
        if outcome != Outcome::Ok {
            bump(&self.errors, 1);
            if outcome == Outcome::Panic {
                bump(&self.panics, 1);
            }
        }
        bump(&self.total_ns, nanos);
        if nanos < self.min_ns.load(Relaxed) {
            self.min_ns.store(nanos, Relaxed);
        }
        if nanos > self.max_ns.load(Relaxed) {
            self.max_ns.store(nanos, Relaxed);
        }
        if let Some(b) = self.buckets.get(histogram::bucket_index(nanos)) {
            bump(b, 1);
        }
    }

    /// Records one call from any thread, with atomic read-modify-writes (the cold fallback used
    /// when a thread's local state is already torn down).
    fn record_shared(&self, nanos: u64, outcome: Outcome) {
        if outcome == Outcome::Cancelled {
            self.cancelled.fetch_add(1, Relaxed);
            return;
        }
        if outcome.is_error() {
            self.errors.fetch_add(1, Relaxed);
        }
        if outcome == Outcome::Panic {
            self.panics.fetch_add(1, Relaxed);
        }
        self.total_ns.fetch_add(nanos, Relaxed);
        self.min_ns.fetch_min(nanos, Relaxed);
        self.max_ns.fetch_max(nanos, Relaxed);
        if let Some(b) = self.buckets.get(histogram::bucket_index(nanos)) {
            b.fetch_add(1, Relaxed);
        }
    }

    fn add_into(&self, acc: &mut Snapshot) {
        acc.errors += self.errors.load(Relaxed);
        acc.panics += self.panics.load(Relaxed);
        acc.cancelled += self.cancelled.load(Relaxed);
        acc.dropped_entries += self.dropped.load(Relaxed);
        acc.total_ns = acc.total_ns.saturating_add(self.total_ns.load(Relaxed));
        acc.min_ns = acc.min_ns.min(self.min_ns.load(Relaxed));
        acc.max_ns = acc.max_ns.max(self.max_ns.load(Relaxed));
        for (i, b) in self.buckets.iter().enumerate() {
            let c = b.load(Relaxed);
            if c != 0 {
                acc.calls += c;
                acc.histogram_mut().add_to_bucket(i, c);
            }
        }
    }

    fn clear(&self) {
        for c in [
            &self.errors,
            &self.panics,
            &self.cancelled,
            &self.dropped,
            &self.total_ns,
            &self.max_ns,
        ] {
            c.store(0, Relaxed);
        }
        self.min_ns.store(u64::MAX, Relaxed);
        for b in self.buckets.iter() {
            b.store(0, Relaxed);
        }
    }
}

/// Everything recorded under one function name.
pub(crate) struct Metric {
    pub(crate) name: &'static str,
    slots: Mutex<Vec<&'static Slot>>,
    shared: Slot,
    /// Entries the flusher dropped because its buffer was full.
    pub(crate) flusher_dropped: AtomicU64,
}

impl Metric {
    fn take_slot(&self) -> &'static Slot {
        let mut slots = self.slots.lock();
        for s in slots.iter() {
            if s.in_use
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
            {
                return s;
            }
        }
        let slot: &'static Slot = Box::leak(Box::new(Slot::new(true)));
        slots.push(slot);
        slot
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut acc = Snapshot::new(self.name);
        self.shared.add_into(&mut acc);
        for s in self.slots.lock().iter() {
            s.add_into(&mut acc);
        }
        acc.dropped_entries += self.flusher_dropped.load(Relaxed);
        acc
    }

    fn clear(&self) {
        self.shared.clear();
        for s in self.slots.lock().iter() {
            s.clear();
        }
        self.flusher_dropped.store(0, Relaxed);
    }
}

struct Registry {
    metrics: RwLock<Vec<&'static Metric>>,
    by_name: Mutex<HashMap<&'static str, u32>>,
}

static REGISTRY: Lazy<Registry> = Lazy::new(|| Registry {
    metrics: RwLock::new(Vec::new()),
    by_name: Mutex::new(HashMap::new()),
});

/// The longest function name, in bytes. Longer derived names are cut at a character boundary.
pub const MAX_NAME_LEN: usize = 256;

/// Returns the id of the metric called `name`, creating it on first use.
pub(crate) fn register(name: &str) -> u32 {
    crate::clock::warm_up();
    let mut cut = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let name = &name[..cut];
    let mut by_name = REGISTRY.by_name.lock();
    if let Some(&id) = by_name.get(name) {
        return id;
    }
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let metric: &'static Metric = Box::leak(Box::new(Metric {
        name,
        slots: Mutex::new(Vec::new()),
        shared: Slot::new(true),
        flusher_dropped: AtomicU64::new(0),
    }));
    let mut metrics = REGISTRY.metrics.write();
    let id = metrics.len() as u32;
    metrics.push(metric);
    by_name.insert(name, id);
    id
}

pub(crate) fn metric(id: u32) -> Option<&'static Metric> {
    REGISTRY.metrics.read().get(id as usize).copied()
}

pub(crate) fn lookup(name: &str) -> Option<&'static Metric> {
    let id = *REGISTRY.by_name.lock().get(name)?;
    metric(id)
}

pub(crate) fn all_metrics() -> Vec<&'static Metric> {
    REGISTRY.metrics.read().clone()
}

/// This thread's view: its slot for each metric id, and its entry ring.
struct Local {
    slots: UnsafeCell<Vec<Option<&'static Slot>>>,
    ring: LocalRing,
}

impl Drop for Local {
    fn drop(&mut self) {
        for s in self.slots.get_mut().iter().flatten() {
            s.in_use.store(false, Release);
        }
    }
}

thread_local! {
    static LOCAL: Local = const {
        Local { slots: UnsafeCell::new(Vec::new()), ring: LocalRing::new() }
    };
}

#[cold]
#[inline(never)]
fn attach(slots: &mut Vec<Option<&'static Slot>>, id: u32) -> Option<&'static Slot> {
    let metric = metric(id)?;
    let idx = id as usize;
    if slots.len() <= idx {
        slots.resize(idx + 1, None);
    }
    let slot = metric.take_slot();
    slots[idx] = Some(slot);
    Some(slot)
}

/// Records one finished call of metric `id` that started and ended at raw clock readings.
#[inline(always)]
pub(crate) fn record(id: u32, start_raw: u64, end_raw: u64, outcome: Outcome) {
    let nanos = crate::clock::delta_nanos(start_raw, end_raw);
    let done = LOCAL.try_with(|local| {
        // SAFETY: `slots` is only touched by this thread, and nothing called from here re-enters
        // `record`, so this is the only reference to it.
        let slots = unsafe { &mut *local.slots.get() };
        let slot = match slots.get(id as usize) {
            Some(Some(slot)) => *slot,
            _ => match attach(slots, id) {
                Some(slot) => slot,
                None => return,
            },
        };
        slot.record_owned(nanos, outcome);
        if ring::entries_enabled() && !local.ring.push(id, nanos, end_raw, outcome) {
            bump(&slot.dropped, 1);
        }
    });
    if done.is_err() {
        if let Some(m) = metric(id) {
            m.shared.record_shared(nanos, outcome);
            if ring::entries_enabled() {
                m.flusher_dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Zeroes every metric (names stay registered).
pub(crate) fn reset_all() {
    for m in all_metrics() {
        m.clear();
    }
}

/// A snapshot of one metric by name.
pub(crate) fn get(name: &str) -> Option<Snapshot> {
    lookup(name).map(Metric::snapshot)
}

/// Snapshots of every metric, sorted by name.
pub(crate) fn snapshot_all() -> Vec<Snapshot> {
    let mut all: Vec<Snapshot> = all_metrics().into_iter().map(Metric::snapshot).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}
