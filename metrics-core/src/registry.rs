//! The in-process registry: one [`Metric`] per function name, one [`Slot`] per (thread, metric)
//! (see [`crate::slot`] for their layout).
//!
//! Slots are never freed: when a thread exits its slots are released and the next new thread to
//! record that metric takes one over, counts and all, so memory is bounded by the number of
//! threads alive at once and nothing a dead thread recorded is lost.

use crate::outcome::Outcome;
use crate::ring::{self, LocalRing};
use crate::slot::{self, Scratch, Shared, Slot, Slots};
use crate::snapshot::{Counter, Snapshot};
use parking_lot::{Mutex, RwLock};
use std::cell::{Cell, UnsafeCell};
use std::collections::HashMap;
use std::sync::atomic::Ordering::*;
use std::sync::LazyLock;

/// Everything recorded under one function name.
pub(crate) struct Metric {
    pub(crate) name: &'static str,
    shared: Shared,
    slots: Slots,
}

impl Metric {
    /// Counts `n` per-call entries that were not delivered (dropped by the flusher).
    pub(crate) fn count_dropped(&self, n: u64) {
        self.shared.add(Counter::dropped_entries, n);
    }

    /// What this process recorded, summed over its threads.
    pub(crate) fn snapshot(&self, scratch: &mut Scratch) -> Snapshot {
        slot::read(self.name, &self.shared, &self.slots, scratch)
    }
}

struct Registry {
    metrics: RwLock<Vec<&'static Metric>>,
    by_name: Mutex<HashMap<&'static str, u32>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    metrics: RwLock::new(Vec::new()),
    by_name: Mutex::new(HashMap::new()),
});

/// The longest function name, in bytes. Longer derived names are cut at a character boundary.
pub const MAX_NAME_LEN: usize = 256;

/// Returns the id of the metric called `name`, creating it on first use.
pub(crate) fn register(name: &str) -> u32 {
    crate::clock::warm_up();
    let name = crate::record::truncate_str(name, MAX_NAME_LEN);
    let mut by_name = REGISTRY.by_name.lock();
    if let Some(&id) = by_name.get(name) {
        return id;
    }
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let metric: &'static Metric = Box::leak(Box::new(Metric {
        name,
        shared: Shared::new(),
        slots: Slots::new(),
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
    let slot = metric.slots.take(&metric.shared);
    slots[idx] = Some(slot);
    Some(slot)
}

/// Runs `f` on this thread's slot of metric `id` (attached on the thread's first call of it)
/// and the thread's ring; `false` if the thread's local state is already torn down.
#[inline(always)]
fn with_slot(id: u32, f: impl FnOnce(&'static Slot, &LocalRing)) -> bool {
    LOCAL
        .try_with(|local| {
            // SAFETY: `slots` is only touched by this thread, and nothing called from here
            // re-enters `with_slot`, so this is the only reference to it.
            let slots = unsafe { &mut *local.slots.get() };
            let slot = match slots.get(id as usize) {
                Some(Some(slot)) => *slot,
                _ => match attach(slots, id) {
                    Some(slot) => slot,
                    None => return,
                },
            };
            f(slot, &local.ring);
        })
        .is_ok()
}

/// Records one finished call of metric `id` that started and ended at raw clock readings.
#[inline(always)]
pub(crate) fn record(id: u32, weight: u32, start_raw: u64, end_raw: u64, outcome: Outcome) {
    let nanos = crate::clock::delta_nanos(start_raw, end_raw);
    let done = with_slot(id, |slot, ring| {
        slot.record_owned(nanos, outcome);
        if ring::entries_enabled() && !ring.push(id, weight, nanos, end_raw, outcome) {
            slot.count_dropped();
        }
    });
    if !done {
        record_late(id, nanos, outcome);
    }
}

/// Records one finished call of metric `id` that was not timed (a sampling function's): counted,
/// no time, no entry.
#[inline(always)]
pub(crate) fn record_untimed(id: u32, outcome: Outcome) {
    if !with_slot(id, |slot, _| slot.record_untimed(outcome))
        && let Some(m) = metric(id)
    {
        m.shared.record_untimed(outcome);
    }
}

/// A call on a thread whose local state is already torn down (in another thread-local's
/// destructor): into the shared part, with atomic read-modify-writes.
#[cold]
#[inline(never)]
fn record_late(id: u32, nanos: u64, outcome: Outcome) {
    if let Some(m) = metric(id) {
        m.shared.record(nanos, outcome);
        if ring::entries_enabled() {
            m.count_dropped(1);
            ring::count_late_drop();
        }
    }
}

/// Zeroes every metric (names stay registered).
pub(crate) fn reset_all() {
    for m in all_metrics() {
        slot::clear(&m.shared, &m.slots);
    }
}

/// What the registry holds in memory: see [`crate::memory`].
///
/// ```
/// let m = fnmetrics::memory();
/// assert!(m.bytes >= m.slot_bytes && m.slot_bytes >= m.slots * 64);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Memory {
    /// Functions registered (called at least once).
    pub functions: usize,
    /// Per-thread slots: at most one per (function, thread alive at once), reused when a thread
    /// ends.
    pub slots: usize,
    /// Histogram pages of the slots (64 bytes each: one power of two).
    pub pages: usize,
    /// Histogram pages of the functions' shared parts (256 bytes each).
    pub shared_pages: usize,
    /// Bytes of the slots and their pages: what the (function, thread) pairs hold, apart from
    /// the functions' shared state.
    pub slot_bytes: usize,
    /// Bytes held in all: the functions, their names, and the memory slots and pages come
    /// from (reserved 64 KiB at a time).
    pub bytes: usize,
}

pub(crate) fn memory() -> Memory {
    let metrics = REGISTRY.metrics.read();
    let names: usize = metrics.iter().map(|m| m.name.len()).sum();
    let (slots, pages, shared_pages, arena) = slot::made();
    Memory {
        functions: metrics.len(),
        slots,
        pages,
        shared_pages,
        slot_bytes: slot::slot_bytes(slots, pages),
        bytes: arena + names + metrics.len() * std::mem::size_of::<Metric>(),
    }
}

/// Runs `f` with this thread's snapshot buffers (new ones if they are in use or gone).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = SCRATCH
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| Box::new(Scratch::new()));
    let r = f(&mut scratch);
    let _ = SCRATCH.try_with(|c| c.set(Some(scratch)));
    r
}

/// A snapshot of one metric by name.
pub(crate) fn get(name: &str) -> Option<Snapshot> {
    let m = lookup(name)?;
    Some(with_scratch(|s| m.snapshot(s)))
}

/// Snapshots of every metric, sorted by name.
pub(crate) fn snapshot_all() -> Vec<Snapshot> {
    let mut all: Vec<Snapshot> =
        with_scratch(|s| all_metrics().into_iter().map(|m| m.snapshot(s)).collect());
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

thread_local! {
    /// Buffers for snapshots taken on this thread.
    static SCRATCH: Cell<Option<Box<Scratch>>> = const { Cell::new(None) };
}
