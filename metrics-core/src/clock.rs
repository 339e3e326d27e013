//! The clock: raw TSC ticks on the hot path, converted to nanoseconds off it.
//!
//! `quanta` calibrates the TSC against the OS clock and decides whether the TSC can be trusted
//! (invariant, and calibration agrees); otherwise it falls back to the OS monotonic clock. When it
//! chose the TSC, the hot path reads it with a bare `rdtsc` and converts with a fixed-point
//! multiplier taken from quanta's calibration, which skips quanta's per-read dispatch; in every
//! other case it goes through quanta, so [`raw_now`] is always safe to call.

use once_cell::sync::Lazy;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

/// Set once, when the anchor is made, if quanta uses the TSC.
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

struct Anchor {
    clock: quanta::Clock,
    raw: u64,
    unix_nanos: u128,
}

static ANCHOR: Lazy<Anchor> = Lazy::new(|| {
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
    let raw = clock.raw();
    let unix_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Anchor {
        clock,
        raw,
        unix_nanos,
    }
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
    ANCHOR.clock.raw()
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
    ANCHOR.clock.delta_as_nanos(start, end)
}

/// Converts a raw reading to nanoseconds since the Unix epoch, anchored at first use.
pub(crate) fn raw_to_unix_nanos(raw: u64) -> u128 {
    let a = &*ANCHOR;
    if raw >= a.raw {
        a.unix_nanos + u128::from(delta_nanos(a.raw, raw))
    } else {
        a.unix_nanos
            .saturating_sub(u128::from(delta_nanos(raw, a.raw)))
    }
}

/// Forces clock calibration now, so that the first measured call does not pay for it.
pub(crate) fn warm_up() {
    Lazy::force(&ANCHOR);
}

#[cfg(test)]
mod tests {
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
