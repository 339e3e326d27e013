//! The recording state of one function: a [`Slot`] per thread that calls it, and a [`Shared`]
//! part every thread may add to.
//!
//! Sized for services with thousands of functions and hundreds of threads. A slot holds the
//! scalar counters (one cache line) and a table of histogram pages; a page is one power of two
//! of the histogram, 32 `u16` counters in one cache line, allocated the first time a call lands
//! in it. A function whose calls span a few powers of two costs a few hundred bytes per thread,
//! the whole range under 3 KiB. When a `u16` counter wraps, the owning thread folds 65 536
//! counts into the shared histogram (`u64`, also paged), so nothing is lost; readers see every
//! fold whole, through a per-slot sequence number (a seqlock with one writer, the owner).
//!
//! A call does not touch its bucket right away: it appends the bucket's index to the slot's
//! `recent` array (a store to an address known before the clock is read), and every 16 calls the
//! owner moves them into the pages. On the machines we measure, a store whose address depends on
//! the clock reading costs about 10 ns (the CPU stalls later loads behind it); this keeps the
//! recording cost above the two clock reads near 2 ns. Readers count `recent` too, and see each
//! move whole through a second sequence number, retried per slot (moves are rare next to a
//! read).
//!
//! Writes by the owner are plain relaxed loads and stores: no `lock`-prefixed instruction and no
//! cache line shared with another writer on the hot path.

use crate::histogram::{self, BUCKETS};
use crate::outcome::Outcome;
use crate::snapshot::{Counter, Snapshot, STORED};
use parking_lot::Mutex;
use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64};
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::OnceLock;

/// Buckets per page: one power of two of the histogram.
const SUB: usize = 32;
/// Pages per histogram.
const PAGES: usize = BUCKETS / SUB;
const _: () = assert!(PAGES * SUB == BUCKETS && PAGES <= 64);
/// What a wrapped per-thread counter moves to the shared histogram.
const FOLD: u64 = 1 << 16;

/// One power of two of a thread's histogram.
#[repr(C, align(64))]
struct Page([AtomicU16; SUB]);

/// One power of two of a function's shared histogram.
#[repr(C, align(64))]
struct WidePage([AtomicU64; SUB]);

/// The identity of each counter ([`FieldKind::identity`](crate::FieldKind::identity)): where a
/// cleared counter starts.
fn identities() -> [u64; STORED] {
    let mut out = [0; STORED];
    for (o, f) in out.iter_mut().zip(Snapshot::FIELDS) {
        *o = f.kind.identity();
    }
    out
}

fn scalars() -> [AtomicU64; STORED] {
    identities().map(AtomicU64::new)
}

/// Merges atomic scalar counters into a snapshot, each by its kind. A timed call is one
/// histogram count, not a scalar; the `calls` scalar holds the calls that were not timed.
fn merge_scalars(scalars: &[AtomicU64; STORED], acc: &mut Snapshot) {
    for ((v, f), c) in acc
        .values_mut()
        .into_iter()
        .zip(Snapshot::FIELDS)
        .zip(scalars)
    {
        *v = f.kind.merge(*v, c.load(Relaxed));
    }
}

/// Adds to a counter that only this thread writes: a load and a store, no read-modify-write.
#[inline(always)]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// A function's state that any thread may add to with atomic read-modify-writes: where slots
/// fold wrapped counters, and where calls land from a thread whose local state is gone.
pub(crate) struct Shared {
    scalars: [AtomicU64; STORED],
    /// Bit `p` is set once `pages[p]` is.
    present: AtomicU64,
    pages: [OnceLock<&'static WidePage>; PAGES],
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            scalars: scalars(),
            present: AtomicU64::new(0),
            pages: [const { OnceLock::new() }; PAGES],
        }
    }

    /// Adds `n` to scalar counter `c` (a sum).
    pub(crate) fn add(&self, c: Counter, n: u64) {
        self.scalars[c as usize].fetch_add(n, Relaxed);
    }

    fn add_to_bucket(&self, index: usize, n: u64) {
        let p = index / SUB;
        let Some(cell) = self.pages.get(p) else {
            return;
        };
        let page = cell.get_or_init(|| {
            WIDE_PAGES_MADE.fetch_add(1, Relaxed);
            let page = arena_zeroed::<WidePage>();
            self.present.fetch_or(1 << p, Release);
            page
        });
        page.0[index % SUB].fetch_add(n, Relaxed);
    }

    /// Records one call from any thread.
    pub(crate) fn record(&self, nanos: u64, outcome: Outcome) {
        if outcome == Outcome::Cancelled {
            self.add(Counter::cancelled, 1);
            return;
        }
        if outcome.is_error() {
            self.add(Counter::errors, 1);
        }
        if outcome == Outcome::Panic {
            self.add(Counter::panics, 1);
        }
        self.add(Counter::total_ns, nanos);
        self.scalars[Counter::min_ns as usize].fetch_min(nanos, Relaxed);
        self.scalars[Counter::max_ns as usize].fetch_max(nanos, Relaxed);
        self.add_to_bucket(histogram::bucket_index(nanos), 1);
    }

    /// Records one call that was not timed, from any thread.
    pub(crate) fn record_untimed(&self, outcome: Outcome) {
        match outcome {
            Outcome::Cancelled => self.add(Counter::cancelled, 1),
            _ => self.add(Counter::calls, 1),
        }
        if outcome.is_error() {
            self.add(Counter::errors, 1);
        }
        if outcome == Outcome::Panic {
            self.add(Counter::panics, 1);
        }
    }

    fn add_into(&self, acc: &mut Snapshot, dense: &mut Dense) {
        merge_scalars(&self.scalars, acc);
        let mut mask = self.present.load(Acquire);
        while mask != 0 {
            let p = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(page) = self.pages[p].get() {
                dense.add_page(p, page.0.iter().map(|c| c.load(Relaxed)));
            }
        }
    }

    fn clear(&self) {
        for (c, v) in self.scalars.iter().zip(identities()) {
            c.store(v, Relaxed);
        }
        for page in self.pages.iter().filter_map(OnceLock::get) {
            for c in &page.0 {
                c.store(0, Relaxed);
            }
        }
    }
}

/// One thread's counters for one function. Written only by the thread that holds it
/// (`in_use`); read by anyone. When the thread ends, the slot is released with its counts and
/// the next new thread that calls the function takes it over.
#[repr(C, align(64))]
pub(crate) struct Slot {
    scalars: [AtomicU64; STORED],
    /// Odd while the owner folds a wrapped counter into `shared`.
    seq: AtomicU32,
    /// Odd while the owner moves `recent` into the pages.
    moving: AtomicU32,
    /// How many of `recent` hold a call.
    recent_len: AtomicU32,
    pub(crate) in_use: AtomicBool,
    /// Bit `p` is set once `pages[p]` is allocated.
    present: AtomicU64,
    shared: &'static Shared,
    /// The bucket indices of the latest calls, not yet in the pages: a store to a fixed
    /// address per call, where a store to the call's own bucket (an address known only once
    /// the clock is read) costs the CPU several times more.
    recent: [AtomicU16; RECENT],
    pages: [AtomicPtr<Page>; PAGES],
}

/// Calls a slot holds in `recent` before moving them into its pages: with the sequence numbers,
/// lengths and page mask, one cache line, so that a reader touches two lines of a slot whose
/// calls are all recent.
const RECENT: usize = 16;

impl Slot {
    /// A new slot, held by the caller, in memory that is never freed.
    pub(crate) fn new_held(shared: &'static Shared) -> &'static Slot {
        let slot = Slot {
            scalars: scalars(),
            seq: AtomicU32::new(0),
            moving: AtomicU32::new(0),
            recent_len: AtomicU32::new(0),
            in_use: AtomicBool::new(true),
            present: AtomicU64::new(0),
            shared,
            recent: [const { AtomicU16::new(0) }; RECENT],
            pages: [const { AtomicPtr::new(std::ptr::null_mut()) }; PAGES],
        };
        SLOTS_MADE.fetch_add(1, Relaxed);
        let at = arena_alloc(Layout::new::<Slot>()).cast::<Slot>();
        // SAFETY: `at` is fresh, never-freed memory with the size and alignment of a `Slot`,
        // and nothing else points to it yet.
        unsafe {
            at.write(slot);
            &*at
        }
    }

    /// Records one call; only the thread that holds the slot may call this.
    #[inline(always)]
    pub(crate) fn record_owned(&self, nanos: u64, outcome: Outcome) {
        if outcome == Outcome::Cancelled {
            bump(&self.scalars[Counter::cancelled as usize], 1);
            return;
        }
        if outcome != Outcome::Ok {
            bump(&self.scalars[Counter::errors as usize], 1);
            if outcome == Outcome::Panic {
                bump(&self.scalars[Counter::panics as usize], 1);
            }
        }
        bump(&self.scalars[Counter::total_ns as usize], nanos);
        let min = &self.scalars[Counter::min_ns as usize];
        if nanos < min.load(Relaxed) {
            min.store(nanos, Relaxed);
        }
        let max = &self.scalars[Counter::max_ns as usize];
        if nanos > max.load(Relaxed) {
            max.store(nanos, Relaxed);
        }
        let index = histogram::bucket_index(nanos) as u16;
        let n = self.recent_len.load(Relaxed) as usize % RECENT;
        self.recent[n].store(index, Relaxed);
        if n + 1 == RECENT {
            self.move_recent();
        } else {
            self.recent_len.store(n as u32 + 1, Release);
        }
    }

    /// Records one finished call that was not timed (a sampling function's): its outcome only.
    #[inline(always)]
    pub(crate) fn record_untimed(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Cancelled => Counter::cancelled,
            _ => Counter::calls,
        };
        bump(&self.scalars[counter as usize], 1);
        if outcome.is_error() {
            bump(&self.scalars[Counter::errors as usize], 1);
            if outcome == Outcome::Panic {
                bump(&self.scalars[Counter::panics as usize], 1);
            }
        }
    }

    /// Moves the calls in `recent` into the pages, seen whole by readers (`moving`).
    #[cold]
    #[inline(never)]
    fn move_recent(&self) {
        let seq = self.moving.load(Relaxed);
        self.moving.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        for r in &self.recent {
            self.count(usize::from(r.load(Relaxed)));
        }
        self.recent_len.store(0, Relaxed);
        self.moving.store(seq.wrapping_add(2), Release);
    }

    /// Adds one call to bucket `index` of the pages.
    #[inline(always)]
    fn count(&self, index: usize) {
        let Some(page) = self.pages.get(index / SUB) else {
            return;
        };
        let page = page.load(Relaxed);
        if page.is_null() {
            self.first_in_page(index);
            return;
        }
        // SAFETY: a non-null page pointer points to a page from the arena, never freed.
        let counter = unsafe { &(*page).0[index % SUB] };
        let n = counter.load(Relaxed).wrapping_add(1);
        if n == 0 {
            self.fold(index, counter);
        } else {
            counter.store(n, Relaxed);
        }
    }

    /// Adds to the `dropped_entries` counter; only the holding thread may call this.
    #[inline(always)]
    pub(crate) fn count_dropped(&self) {
        bump(&self.scalars[Counter::dropped_entries as usize], 1);
    }

    /// The first call in a page: allocate it, with that call counted.
    #[cold]
    #[inline(never)]
    fn first_in_page(&self, index: usize) {
        let p = index / SUB;
        PAGES_MADE.fetch_add(1, Relaxed);
        let page = arena_zeroed::<Page>();
        page.0[index % SUB].store(1, Relaxed);
        self.pages[p].store(std::ptr::from_ref(page).cast_mut(), Release);
        self.present
            .store(self.present.load(Relaxed) | 1 << p, Release);
    }

    /// `counter` wrapped: move its 65 536 counts to the shared histogram, seen whole by readers.
    #[cold]
    #[inline(never)]
    fn fold(&self, index: usize, counter: &AtomicU16) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        self.shared.add_to_bucket(index, FOLD);
        counter.store(0, Relaxed);
        self.seq.store(seq.wrapping_add(2), Release);
    }

    fn add_into(&self, acc: &mut Snapshot, dense: &mut Dense, copy: &mut Vec<(usize, [u16; SUB])>) {
        merge_scalars(&self.scalars, acc);
        // The pages and `recent` are read as one: again if the owner moved calls meanwhile
        // (every `RECENT` calls; a read takes far less).
        let recent = loop {
            let seq = self.moving.load(Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            copy.clear();
            let len = (self.recent_len.load(Acquire) as usize).min(RECENT);
            let mut recent = [0u16; RECENT];
            for (r, c) in recent.iter_mut().zip(&self.recent).take(len) {
                *r = c.load(Relaxed);
            }
            let mut mask = self.present.load(Acquire);
            while mask != 0 {
                let p = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let page = self.pages[p].load(Acquire);
                if !page.is_null() {
                    // SAFETY: a non-null page pointer points to a page from the arena, never
                    // freed.
                    let page = unsafe { &*page };
                    copy.push((p, page.0.each_ref().map(|c| c.load(Relaxed))));
                }
            }
            fence(Acquire);
            if self.moving.load(Relaxed) == seq {
                break (recent, len);
            }
        };
        for (p, counts) in copy.iter() {
            dense.add_page(*p, counts.iter().map(|&c| u64::from(c)));
        }
        for &i in &recent.0[..recent.1] {
            dense.add_one(usize::from(i));
        }
    }

    fn clear(&self) {
        for (c, v) in self.scalars.iter().zip(identities()) {
            c.store(v, Relaxed);
        }
        self.recent_len.store(0, Relaxed);
        for p in &self.pages {
            let page = p.load(Acquire);
            if !page.is_null() {
                // SAFETY: a non-null page pointer points to a page from the arena, never freed.
                for c in unsafe { &(*page).0 } {
                    c.store(0, Relaxed);
                }
            }
        }
    }
}

/// Every slot of one function: append-only, readable without a lock. Chunk `k` holds `2^k`
/// slots, allocated when the first of them is added.
pub(crate) struct Slots {
    len: AtomicUsize,
    chunks: [OnceLock<Box<[AtomicPtr<Slot>]>>; CHUNKS],
    /// Serialises adding (a thread's first call of the function).
    grow: Mutex<()>,
}

const CHUNKS: usize = 32;

impl Slots {
    pub(crate) fn new() -> Slots {
        Slots {
            len: AtomicUsize::new(0),
            chunks: [const { OnceLock::new() }; CHUNKS],
            grow: Mutex::new(()),
        }
    }

    /// `(chunk, offset)` of slot `i`.
    fn locate(i: usize) -> (usize, usize) {
        let k = (usize::BITS - 1 - (i + 1).leading_zeros()) as usize;
        (k, i + 1 - (1 << k))
    }

    fn iter(&self) -> impl Iterator<Item = &'static Slot> + '_ {
        let len = self.len.load(Acquire);
        (0..len).filter_map(|i| {
            let (k, off) = Self::locate(i);
            let p = self.chunks.get(k)?.get()?.get(off)?.load(Relaxed);
            // SAFETY: entries below `len` (read with Acquire, stored with Release after the
            // entry) point to slots from the arena, never freed.
            (!p.is_null()).then(|| unsafe { &*p })
        })
    }

    /// A slot for the calling thread: a released one if there is one, else a new one.
    pub(crate) fn take(&self, shared: &'static Shared) -> &'static Slot {
        for s in self.iter() {
            if s.in_use
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
            {
                return s;
            }
        }
        let slot = Slot::new_held(shared);
        let _grow = self.grow.lock();
        let n = self.len.load(Relaxed);
        let (k, off) = Self::locate(n);
        if let Some(chunk) = self.chunks.get(k) {
            let chunk = chunk.get_or_init(|| {
                (0..1usize << k)
                    .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                    .collect()
            });
            chunk[off].store(std::ptr::from_ref(slot).cast_mut(), Relaxed);
            self.len.store(n + 1, Release);
        }
        slot
    }
}

/// The bucket counts of one snapshot being summed, dense, with a mask of the pages touched so
/// that only those are read back and cleared. Reused across snapshots.
pub(crate) struct Dense {
    counts: Box<[u64; BUCKETS]>,
    mask: u64,
}

impl Dense {
    pub(crate) fn new() -> Dense {
        Dense {
            counts: Box::new([0; BUCKETS]),
            mask: 0,
        }
    }

    fn add_one(&mut self, index: usize) {
        if let Some(c) = self.counts.get_mut(index) {
            self.mask |= 1 << (index / SUB);
            *c += 1;
        }
    }

    fn add_page(&mut self, p: usize, counts: impl Iterator<Item = u64>) {
        self.mask |= 1 << p;
        for (acc, c) in self.counts[p * SUB..(p + 1) * SUB].iter_mut().zip(counts) {
            *acc = acc.wrapping_add(c);
        }
    }

    fn clear(&mut self) {
        let mut mask = std::mem::take(&mut self.mask);
        while mask != 0 {
            let p = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.counts[p * SUB..(p + 1) * SUB].fill(0);
        }
    }

    /// Moves the counts into `acc`'s histogram and `calls`, and clears.
    fn drain_into(&mut self, acc: &mut Snapshot) {
        let mut mask = self.mask;
        while mask != 0 {
            let p = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            for (j, &c) in self.counts[p * SUB..(p + 1) * SUB].iter().enumerate() {
                if c != 0 {
                    acc.calls = acc.calls.wrapping_add(c);
                    acc.timed = acc.timed.wrapping_add(c);
                    acc.histogram_mut().add_to_bucket(p * SUB + j, c);
                }
            }
        }
        self.clear();
    }
}

/// Reusable buffers for taking snapshots.
pub(crate) struct Scratch {
    dense: Dense,
    seqs: Vec<u32>,
    copy: Vec<(usize, [u16; SUB])>,
    slots: Vec<&'static Slot>,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            dense: Dense::new(),
            seqs: Vec::new(),
            copy: Vec::new(),
            slots: Vec::new(),
        }
    }
}

/// The snapshot of a function: `shared` and every slot summed, a consistent view in which every
/// fold is either whole or not yet begun.
pub(crate) fn read(name: &str, shared: &Shared, slots: &Slots, scratch: &mut Scratch) -> Snapshot {
    scratch.slots.clear();
    scratch.slots.extend(slots.iter());
    // Touch every slot's two lines first, in a loop of independent loads, so that their cache
    // misses overlap instead of coming one after another in the reading loop below.
    let mut warm = 0u64;
    for s in &scratch.slots {
        warm ^= s.scalars[1].load(Relaxed) ^ u64::from(s.seq.load(Relaxed));
    }
    std::hint::black_box(warm);
    loop {
        scratch.seqs.clear();
        scratch
            .seqs
            .extend(scratch.slots.iter().map(|s| s.seq.load(Acquire)));
        if scratch.seqs.iter().any(|q| q & 1 == 1) {
            // A fold is under way: it takes nanoseconds.
            std::hint::spin_loop();
            continue;
        }
        let mut acc = Snapshot::new(name);
        shared.add_into(&mut acc, &mut scratch.dense);
        for s in &scratch.slots {
            s.add_into(&mut acc, &mut scratch.dense, &mut scratch.copy);
        }
        fence(Acquire);
        let unchanged = scratch
            .slots
            .iter()
            .zip(&scratch.seqs)
            .all(|(s, q)| s.seq.load(Relaxed) == *q);
        if unchanged {
            scratch.dense.drain_into(&mut acc);
            return acc;
        }
        // A fold happened while reading: its counts may be on both sides. Read again.
        scratch.dense.clear();
    }
}

/// Zeroes a function's counters (reset; racy with calls in flight, as documented).
pub(crate) fn clear(shared: &Shared, slots: &Slots) {
    shared.clear();
    for s in slots.iter() {
        s.clear();
    }
}

/// Slots, thread pages and shared pages made so far (never freed), and the arena's chunks.
static SLOTS_MADE: AtomicUsize = AtomicUsize::new(0);
static PAGES_MADE: AtomicUsize = AtomicUsize::new(0);
static WIDE_PAGES_MADE: AtomicUsize = AtomicUsize::new(0);
static ARENA_BYTES: AtomicUsize = AtomicUsize::new(0);

/// `(slots, thread pages, shared pages, bytes reserved by the arena)`.
pub(crate) fn made() -> (usize, usize, usize, usize) {
    (
        SLOTS_MADE.load(Relaxed),
        PAGES_MADE.load(Relaxed),
        WIDE_PAGES_MADE.load(Relaxed),
        ARENA_BYTES.load(Relaxed),
    )
}

/// The bytes `slots` slots and `pages` thread pages take.
pub(crate) fn slot_bytes(slots: usize, pages: usize) -> usize {
    slots * size_of::<Slot>() + pages * size_of::<Page>()
}

/// Memory handed out in cache-line multiples from 64 KiB chunks, never freed: pages and slots
/// live as long as the process (slots are reused when their thread ends), and a chunk wastes at
/// most its unused tail, once.
struct Arena {
    next: usize,
    left: usize,
}

const ARENA_CHUNK: usize = 64 * 1024;

static ARENA: Mutex<Arena> = Mutex::new(Arena { next: 0, left: 0 });

/// Zeroed memory for `layout` (alignment at most 64), never freed.
fn arena_alloc(layout: Layout) -> *mut u8 {
    let size = layout.size().next_multiple_of(64).max(64);
    debug_assert!(layout.align() <= 64 && size <= ARENA_CHUNK);
    let mut a = ARENA.lock();
    if a.left < size {
        let chunk = Layout::from_size_align(ARENA_CHUNK, 64).unwrap_or(layout);
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(chunk) };
        if p.is_null() {
            handle_alloc_error(chunk);
        }
        a.next = p as usize;
        a.left = ARENA_CHUNK;
        ARENA_BYTES.fetch_add(ARENA_CHUNK, Relaxed);
    }
    let p = a.next as *mut u8;
    a.next += size;
    a.left -= size;
    p
}

/// A zeroed, never-freed `T` whose every bit pattern of zeros is valid (atomics only).
fn arena_zeroed<T: ZeroValid>() -> &'static T {
    let p = arena_alloc(Layout::new::<T>()).cast::<T>();
    // SAFETY: the memory is zeroed, aligned and sized for `T`, never freed and not aliased, and
    // `ZeroValid` types are valid when all zeros.
    unsafe { &*p }
}

/// Types valid when all their bytes are zero.
///
/// # Safety
/// Only for types made of atomics of integers or pointers.
unsafe trait ZeroValid {}
// SAFETY: `AtomicU16`s only.
unsafe impl ZeroValid for Page {}
// SAFETY: `AtomicU64`s only.
unsafe impl ZeroValid for WidePage {}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak<T>(t: T) -> &'static T {
        Box::leak(Box::new(t))
    }

    fn snapshot(shared: &Shared, slots: &Slots) -> Snapshot {
        read("t", shared, slots, &mut Scratch::new())
    }

    #[test]
    fn a_slot_is_a_few_hundred_bytes_and_a_page_one_cache_line() {
        assert_eq!(std::mem::size_of::<Page>(), 64);
        // A slot with a few pages stays under 1 KiB, and with all 40 within 3 KiB.
        assert!(
            std::mem::size_of::<Slot>() <= 448,
            "{}",
            std::mem::size_of::<Slot>()
        );
        assert!(std::mem::size_of::<Slot>() + PAGES * 64 <= 3 * 1024);
    }

    #[test]
    fn counters_that_wrap_fold_into_shared_and_nothing_is_lost() {
        let shared = leak(Shared::new());
        let slots = leak(Slots::new());
        let slot = slots.take(shared);
        let n = 3 * FOLD + 5;
        for _ in 0..n {
            slot.record_owned(100, Outcome::Ok);
        }
        slot.record_owned(7_000_000, Outcome::Panic);
        let s = snapshot(shared, slots);
        assert_eq!(s.calls, n + 1);
        assert_eq!(s.histogram().bucket(histogram::bucket_index(100)), n);
        assert_eq!((s.errors, s.panics), (1, 1));
        assert_eq!((s.min_ns, s.max_ns), (100, 7_000_000));
        assert_eq!(s.total_ns, 100 * n + 7_000_000);
    }

    #[test]
    fn a_reader_racing_folds_never_sees_a_count_go_down_or_jump() {
        let shared = leak(Shared::new());
        let slots = leak(Slots::new());
        let done = leak(AtomicBool::new(false));
        let writer = std::thread::spawn(move || {
            let slot = slots.take(shared);
            for _ in 0..20 * FOLD {
                slot.record_owned(40, Outcome::Ok);
            }
            done.store(true, Release);
        });
        let mut last = 0;
        let mut reads = 0;
        while !done.load(Acquire) {
            let calls = snapshot(shared, slots).calls;
            assert!(calls >= last, "{calls} after {last}");
            assert!(calls <= 20 * FOLD);
            last = calls;
            reads += 1;
        }
        writer.join().unwrap();
        assert_eq!(snapshot(shared, slots).calls, 20 * FOLD);
        assert!(reads > 0);
    }

    #[test]
    fn released_slots_are_taken_over_with_their_counts() {
        let shared = leak(Shared::new());
        let slots = leak(Slots::new());
        let a = slots.take(shared);
        a.record_owned(10, Outcome::Error);
        a.in_use.store(false, Release);
        let b = slots.take(shared);
        assert!(std::ptr::eq(a, b));
        b.record_owned(10, Outcome::Ok);
        let c = slots.take(shared);
        assert!(!std::ptr::eq(b, c));
        shared.record(20, Outcome::Cancelled);
        let s = snapshot(shared, slots);
        assert_eq!((s.calls, s.errors, s.cancelled), (2, 1, 1));
        assert_eq!(slots.iter().count(), 2);
    }

    #[test]
    fn slot_lists_grow_past_many_chunks() {
        let shared = leak(Shared::new());
        let slots = leak(Slots::new());
        for _ in 0..100 {
            slots.take(shared).record_owned(5, Outcome::Ok);
        }
        assert_eq!(slots.iter().count(), 100);
        assert_eq!(snapshot(shared, slots).calls, 100);
    }
}
