//! The clock: raw TSC ticks on the hot path, converted to nanoseconds off it.
//!
//! `quanta` reads the TSC with one `rdtsc` when the CPU has an invariant TSC and falls back to the
//! OS monotonic clock otherwise, so [`raw_now`] is always safe to call.

use once_cell::sync::Lazy;
use std::time::{SystemTime, UNIX_EPOCH};

struct Anchor {
    clock: quanta::Clock,
    raw: u64,
    unix_nanos: u128,
}

static ANCHOR: Lazy<Anchor> = Lazy::new(|| {
    let clock = quanta::Clock::new();
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
    ANCHOR.clock.raw()
}

/// Nanoseconds between two raw readings; 0 if `end` is not after `start`.
#[inline(always)]
pub(crate) fn delta_nanos(start: u64, end: u64) -> u64 {
    ANCHOR.clock.delta_as_nanos(start, end)
}

/// Converts a raw reading to nanoseconds since the Unix epoch, anchored at first use.
pub(crate) fn raw_to_unix_nanos(raw: u64) -> u128 {
    let a = &*ANCHOR;
    if raw >= a.raw {
        a.unix_nanos + u128::from(a.clock.delta_as_nanos(a.raw, raw))
    } else {
        a.unix_nanos
            .saturating_sub(u128::from(a.clock.delta_as_nanos(raw, a.raw)))
    }
}

/// Forces clock calibration now, so that the first measured call does not pay for it.
pub(crate) fn warm_up() {
    Lazy::force(&ANCHOR);
}
