//! Sampling: which calls of a sampling function are timed.
//!
//! Each thread keeps one budget. A call of a function that times one call in `N` costs
//! `SCALE / N` of it; when the budget runs out, that call is timed and the budget gets an
//! exponentially distributed refill of mean `SCALE`. That is a Poisson process over the calls,
//! as heap profilers sample allocations by bytes: every call has the same chance, `1 / N`,
//! whatever came before, so a function that is slow on every k-th call is not aliased by a fixed
//! stride, and functions with different `N` share the thread's budget without skewing each
//! other. An untimed call costs a thread-local subtraction and a branch: no clock read.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Budget units per expected timed call. A call of a function that samples one in `N` costs
/// `SCALE / N` units, so `N` up to [`MAX_SAMPLE`] keeps its rate within 0.1 %.
const SCALE: i64 = 1 << 30;

/// The largest `N` of `sample = N`.
pub const MAX_SAMPLE: u32 = 1 << 20;

struct Sampler {
    budget: Cell<i64>,
    rng: Cell<u64>,
}

thread_local! {
    // Const-initialised and without `Drop`: an access is a plain thread-local load.
    static SAMPLER: Sampler = const {
        Sampler {
            budget: Cell::new(0),
            rng: Cell::new(0),
        }
    };
}

/// What one call of a function that times one call in `every` costs of the budget.
#[inline(always)]
pub(crate) const fn units(every: u32) -> i64 {
    let every = if every == 0 { 1 } else { every };
    SCALE / every as i64
}

/// Whether this call is timed, for a function whose calls cost `units` each.
#[inline(always)]
pub(crate) fn timed(units: i64) -> bool {
    SAMPLER
        .try_with(|s| {
            let left = s.budget.get() - units;
            if left >= 0 {
                s.budget.set(left);
                false
            } else {
                s.refill(left);
                true
            }
        })
        // A thread being torn down: time the call (the rate is a matter of cost, not counts).
        .unwrap_or(true)
}

impl Sampler {
    /// Adds an exponential draw of mean [`SCALE`] to the budget (which is at or below zero).
    #[cold]
    #[inline(never)]
    fn refill(&self, left: i64) {
        let mut x = self.rng.get();
        if x == 0 {
            // Seeded per thread: the clock and this thread's own address.
            x = crate::clock::raw_now() ^ (self as *const Sampler as u64).rotate_left(32) | 1;
        }
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11; // 53 random bits
        let u = (r as f64 + 1.0) / (1u64 << 53) as f64; // in (0, 1]
        let draw = (-u.ln() * SCALE as f64) as i64;
        self.budget.set(left.saturating_add(draw));
    }
}

/// The run-time default for functions without a `sample` of their own: `every` in the high 32
/// bits, its [`units`] in the low 32 bits, 0 while off, so that the start of an unsampled call
/// reads one word (and divides nothing).
static DEFAULT: AtomicU64 = AtomicU64::new(0);

/// Whether the run-time default samples: one load of a word that is read-mostly.
#[inline(always)]
pub(crate) fn default_on() -> bool {
    DEFAULT.load(Relaxed) != 0
}

/// The run-time default, as `(every, units)`, or `None` while every call is timed.
#[inline(always)]
pub(crate) fn default() -> Option<(u32, i64)> {
    let d = DEFAULT.load(Relaxed);
    if d == 0 {
        return None;
    }
    Some(((d >> 32) as u32, (d & 0xffff_ffff) as i64))
}

/// Times about one call in `every` of every function that has no `sample` of its own (1 or 0:
/// every call, the default).
pub(crate) fn set_default(every: u32) {
    let every = every.min(MAX_SAMPLE);
    let d = match every {
        0 | 1 => 0,
        n => u64::from(n) << 32 | units(n) as u64,
    };
    DEFAULT.store(d, Relaxed);
}

/// The run-time default (1: every call is timed).
pub(crate) fn get_default() -> u32 {
    default().map_or(1, |(every, _)| every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_one_call_in_n_is_timed_and_strides_do_not_alias() {
        for every in [2u32, 10, 64, 1000] {
            let n = 400_000u64;
            let hits = (0..n).filter(|_| timed(units(every))).count() as f64;
            let expected = n as f64 / every as f64;
            // Poisson: within 5 standard deviations.
            assert!(
                (hits - expected).abs() < 5.0 * expected.sqrt() + 2.0,
                "every {every}: {hits} timed, expected {expected}"
            );
        }
        // Every 10th call "slow": with N = 20 a fixed stride would see all or none of them.
        let (mut slow_timed, mut timed_calls) = (0u32, 0u32);
        for i in 0..200_000u32 {
            if timed(units(20)) {
                timed_calls += 1;
                slow_timed += u32::from(i % 10 == 0);
            }
        }
        let share = f64::from(slow_timed) / f64::from(timed_calls);
        assert!((0.08..0.12).contains(&share), "{share}");
    }
}
