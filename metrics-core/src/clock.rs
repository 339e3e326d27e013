//! The clock: raw TSC ticks on the hot path, converted to nanoseconds off it.
//!
//! `quanta` calibrates the TSC against the OS clock and decides whether the TSC can be trusted
//! (invariant, and calibration agrees); otherwise it falls back to the OS monotonic clock. When it
//! chose the TSC, the hot path reads it with a bare `rdtsc` and converts with a fixed-point
//! multiplier taken from quanta's calibration, which skips quanta's per-read dispatch; in every
//! other case it goes through quanta, so [`raw_now`] is always safe to call.
//!
//! Wall-clock time (an entry's `created_at`) is a raw reading converted from an [`Anchor`], a raw
//! reading and the system clock taken together. The multiplier is off by the calibration's error
//! and the TSC drifts from the system clock (which NTP steers), so an anchor is good for a short
//! while only: stage 1 converts through a [`WallClock`], which takes a new anchor every
//! [`REANCHOR_EVERY`] and converts each reading from the last anchor taken before it. The error
//! of a `created_at` is then the drift over at most that long (plus a stage 1 write that blocks
//! meanwhile), however long the entry waited in its ring (within the hour of anchors kept). The
//! calls themselves never pay for it: they read the raw clock only.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Set once, when the clock is calibrated, if quanta uses the TSC.
static TSC: AtomicBool = AtomicBool::new(false);

/// What the end of a call needs to know, in one byte read with one load: [`TSC_ON`] once the
/// TSC is in use, and [`RECORDING_OFF`] while recording is switched off.
static END: AtomicU8 = AtomicU8::new(0);
const TSC_ON: u8 = 1;
const RECORDING_OFF: u8 = 2;

/// Switches recording off (or on again): see `fnmetrics::set_enabled`.
pub(crate) fn set_recording(on: bool) {
    if on {
        END.fetch_and(!RECORDING_OFF, Relaxed);
    } else {
        END.fetch_or(RECORDING_OFF, Relaxed);
    }
}

/// Whether recording is on.
#[inline(always)]
pub(crate) fn recording() -> bool {
    END.load(Relaxed) & RECORDING_OFF == 0
}

/// The raw clock at the end of a call, or `None` while recording is off: one load and one
/// compare on the common path.
#[inline(always)]
pub(crate) fn raw_end() -> Option<u64> {
    let end = END.load(Relaxed);
    #[cfg(target_arch = "x86_64")]
    if end == TSC_ON {
        // SAFETY: `rdtsc` exists on every x86_64 CPU; quanta checked that this one's TSC is
        // invariant before `TSC_ON` was set.
        return Some(unsafe { core::arch::x86_64::_rdtsc() });
    }
    if end & RECORDING_OFF != 0 {
        return None;
    }
    Some(raw_now())
}
/// Nanoseconds per TSC tick, as a 32.32 fixed-point number.
static NANOS_PER_TICK_FP32: AtomicU64 = AtomicU64::new(0);

/// The calibrated clock, made at first use (which decides whether the TSC is used).
static CLOCK: LazyLock<quanta::Clock> = LazyLock::new(|| {
    let clock = quanta::Clock::new();
    #[cfg(target_arch = "x86_64")]
    if format!("{clock:?}").contains("Counter(") {
        let mult = clock.delta_as_nanos(0, 1 << 32);
        if mult > 0 {
            NANOS_PER_TICK_FP32.store(mult, Relaxed);
            TSC.store(true, Relaxed);
            END.fetch_or(TSC_ON, Relaxed);
        }
    }
    clock
});

/// Reads the raw clock (TSC ticks, or nanoseconds on the fallback clock).
#[inline(always)]
pub(crate) fn raw_now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if TSC.load(Relaxed) {
        // SAFETY: `rdtsc` exists on every x86_64 CPU; quanta checked that this one's TSC is
        // invariant before `TSC` was set.
        return unsafe { core::arch::x86_64::_rdtsc() };
    }
    CLOCK.raw()
}

/// Nanoseconds between two raw readings; 0 if `end` is not after `start`.
#[inline(always)]
pub(crate) fn delta_nanos(start: u64, end: u64) -> u64 {
    if end <= start {
        return 0;
    }
    if TSC.load(Relaxed) {
        let fp = u128::from(end - start) * u128::from(NANOS_PER_TICK_FP32.load(Relaxed));
        return u64::try_from(fp >> 32).unwrap_or(u64::MAX);
    }
    CLOCK.delta_as_nanos(start, end)
}

/// How often a [`WallClock`] takes a new anchor: well within a minute, so that `created_at`,
/// and the per-minute buckets computed from it, never carry more than a minute's drift.
pub(crate) const REANCHOR_EVERY: Duration = Duration::from_secs(30);

/// How many anchors a [`WallClock`] keeps (64 minutes of them): an entry that waited longer (in
/// a ring, while the sink was down) is converted from the oldest one.
const ANCHORS_KEPT: usize = 128;

/// A raw reading and the system clock at the same moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Anchor {
    pub(crate) raw: u64,
    pub(crate) unix_nanos: u128,
}

impl Anchor {
    /// Reads both clocks: the raw reading is the midpoint of two taken around the system
    /// clock's, so the pair is off by half a system-clock read at most.
    pub(crate) fn now() -> Anchor {
        warm_up();
        let before = raw_now();
        let unix_nanos = unix_now_nanos();
        let after = raw_now();
        Anchor {
            raw: before + after.saturating_sub(before) / 2,
            unix_nanos,
        }
    }
}

/// The system clock, in nanoseconds since the Unix epoch (0 before it).
fn unix_now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Converts raw readings to wall-clock time from anchors taken every [`REANCHOR_EVERY`] (see
/// the module docs). Owned by the thread that converts (stage 1): no locks, no atomics.
#[derive(Debug)]
pub(crate) struct WallClock {
    /// Oldest first, in raw order; never empty.
    anchors: VecDeque<Anchor>,
}

impl WallClock {
    /// A wall clock anchored now.
    pub(crate) fn new() -> WallClock {
        WallClock::starting_at(Anchor::now())
    }

    /// A wall clock whose first anchor is `anchor`.
    pub(crate) fn starting_at(anchor: Anchor) -> WallClock {
        WallClock {
            anchors: VecDeque::from([anchor]),
        }
    }

    /// Takes a new anchor if the newest one is [`REANCHOR_EVERY`] old by the system clock (or
    /// the system clock was set back past it); says whether it did.
    pub(crate) fn refresh(&mut self) -> bool {
        self.refresh_at(unix_now_nanos(), Anchor::now)
    }

    /// [`WallClock::refresh`] with the system clock reading `now_unix_nanos`; `anchor` makes
    /// the new anchor when one is due.
    pub(crate) fn refresh_at(
        &mut self,
        now_unix_nanos: u128,
        anchor: impl FnOnce() -> Anchor,
    ) -> bool {
        let newest = self.newest();
        let due = now_unix_nanos < newest.unix_nanos
            || now_unix_nanos - newest.unix_nanos >= REANCHOR_EVERY.as_nanos();
        if !due {
            return false;
        }
        let anchor = anchor();
        // Raw readings only go forward; should one not, the new anchor replaces what it
        // precedes, so that the anchors stay in raw order.
        while self.anchors.back().is_some_and(|a| a.raw >= anchor.raw) {
            self.anchors.pop_back();
        }
        if self.anchors.len() == ANCHORS_KEPT {
            self.anchors.pop_front();
        }
        self.anchors.push_back(anchor);
        true
    }

    fn newest(&self) -> Anchor {
        // Never empty: made with one anchor, and an anchor is only removed to push another.
        self.anchors.back().copied().unwrap_or(Anchor {
            raw: 0,
            unix_nanos: 0,
        })
    }

    /// Converts a raw reading to nanoseconds since the Unix epoch, from the last anchor taken
    /// at or before it (the oldest kept, for a reading older than all of them).
    pub(crate) fn to_unix_nanos(&self, raw: u64) -> u128 {
        let newest = self.newest();
        let a = if raw >= newest.raw {
            newest
        } else {
            let after = self.anchors.partition_point(|a| a.raw <= raw);
            let before = after.saturating_sub(1);
            self.anchors.get(before).copied().unwrap_or(newest)
        };
        if raw >= a.raw {
            a.unix_nanos + u128::from(delta_nanos(a.raw, raw))
        } else {
            a.unix_nanos
                .saturating_sub(u128::from(delta_nanos(raw, a.raw)))
        }
    }

    /// How many anchors it holds.
    #[cfg(test)]
    fn anchors(&self) -> usize {
        self.anchors.len()
    }
}

/// Forces clock calibration now, so that the first measured call does not pay for it.
pub(crate) fn warm_up() {
    LazyLock::force(&CLOCK);
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u128 = 1_700_000_000_000_000_000;

    #[test]
    fn a_wall_clock_is_re_anchored_to_the_system_clock_within_a_minute() {
        warm_up();
        assert!(REANCHOR_EVERY <= Duration::from_secs(60));
        let every = REANCHOR_EVERY.as_nanos();
        let first = Anchor {
            raw: 1_000_000,
            unix_nanos: T0,
        };
        let mut wall = WallClock::starting_at(first);
        // Not due yet: nothing changes (and no anchor is taken).
        assert!(!wall.refresh_at(T0 + every - 1, || panic!("anchored too early")));
        assert_eq!(wall.anchors(), 1);

        // By the system clock REANCHOR_EVERY and 5 ms have passed; by the raw clock (a TSC
        // running slow, or a multiplier a little off) only 10 000 ticks.
        let raw = first.raw + 10_000;
        let drifted = T0 + u128::from(delta_nanos(first.raw, raw));
        assert_eq!(wall.to_unix_nanos(raw), drifted);
        let now = T0 + every + 5_000_000;
        assert!(wall.refresh_at(now, || Anchor {
            raw,
            unix_nanos: now
        }));
        assert_eq!(wall.anchors(), 2);
        // From then on, readings follow the system clock...
        assert_eq!(wall.to_unix_nanos(raw), now);
        assert_eq!(
            wall.to_unix_nanos(raw + 500),
            now + u128::from(delta_nanos(raw, raw + 500))
        );
        // ...and a reading taken before the new anchor (an entry that waited in its ring) is
        // still converted from the anchor before it.
        assert_eq!(
            wall.to_unix_nanos(first.raw + 10),
            T0 + u128::from(delta_nanos(first.raw, first.raw + 10))
        );
        assert_eq!(
            wall.to_unix_nanos(first.raw - 10),
            T0 - u128::from(delta_nanos(first.raw - 10, first.raw))
        );
    }

    #[test]
    fn a_system_clock_set_back_is_followed_at_once() {
        let mut wall = WallClock::starting_at(Anchor {
            raw: 1_000,
            unix_nanos: T0,
        });
        let back = T0 - 3_600_000_000_000;
        assert!(wall.refresh_at(back, || Anchor {
            raw: 2_000,
            unix_nanos: back
        }));
        assert_eq!(wall.to_unix_nanos(2_000), back);
        assert_eq!(wall.to_unix_nanos(1_000), T0);
    }

    #[test]
    fn a_wall_clock_keeps_a_bounded_history_in_raw_order() {
        let mut wall = WallClock::starting_at(Anchor {
            raw: 0,
            unix_nanos: T0,
        });
        let every = REANCHOR_EVERY.as_nanos();
        for i in 1..=300u64 {
            let unix_nanos = T0 + u128::from(i) * every;
            assert!(wall.refresh_at(unix_nanos, || Anchor {
                raw: i * 1_000,
                unix_nanos
            }));
        }
        assert_eq!(wall.anchors(), ANCHORS_KEPT);
        // Each reading from the last anchor at or before it.
        assert_eq!(wall.to_unix_nanos(250_000), T0 + 250 * every);
        assert_eq!(
            wall.to_unix_nanos(250_001),
            T0 + 250 * every + u128::from(delta_nanos(250_000, 250_001))
        );
        // Older than every anchor kept: from the oldest.
        let oldest = 300 - ANCHORS_KEPT as u64 + 1;
        assert_eq!(
            wall.to_unix_nanos(oldest * 1_000),
            T0 + u128::from(oldest) * every
        );
        assert!(wall.to_unix_nanos(5) < T0 + u128::from(oldest) * every);
        // A raw reading that went back replaces the anchors it precedes.
        let unix_nanos = T0 + 301 * every;
        assert!(wall.refresh_at(unix_nanos, || Anchor {
            raw: 299_500,
            unix_nanos
        }));
        assert_eq!(wall.anchors(), ANCHORS_KEPT);
        assert_eq!(wall.to_unix_nanos(299_500), unix_nanos);
        assert_eq!(
            wall.to_unix_nanos(300_000),
            unix_nanos + u128::from(delta_nanos(299_500, 300_000))
        );
        assert_eq!(wall.to_unix_nanos(299_000), T0 + 299 * every);
    }

    #[test]
    fn an_anchor_pairs_the_raw_clock_with_the_system_clock() {
        let before = unix_now_nanos();
        let a = Anchor::now();
        let after = unix_now_nanos();
        assert!((before..=after).contains(&a.unix_nanos));
        let mut wall = WallClock::new();
        assert!(!wall.refresh(), "a fresh wall clock is not due");
        let converted = wall.to_unix_nanos(raw_now());
        let system = unix_now_nanos();
        let off = converted.abs_diff(system);
        assert!(off < 50_000_000, "{off} ns between the two clocks");
    }

    #[test]
    fn raw_readings_convert_to_the_time_that_passed() {
        super::warm_up();
        let (t, start) = (std::time::Instant::now(), super::raw_now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (nanos, real) = (super::delta_nanos(start, super::raw_now()), t.elapsed());
        let real = real.as_nanos() as f64;
        assert!(
            (nanos as f64 - real).abs() / real < 0.05,
            "{nanos} ns vs {real} ns"
        );
    }
}
