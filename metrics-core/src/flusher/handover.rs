//! The one process-wide piece of flusher state, and why it is process-wide.
//!
//! A flusher owns its state in its handle and its threads (stats, health, the entries it holds,
//! the aggregate baseline while it runs). Two things belong to the process, not to one flusher:
//!
//! - **the seat**: the per-thread entry rings have a single consumer, so one flusher runs at a
//!   time; a second [`FlusherThreads::start`](super::FlusherThreads::start) while one runs is refused with
//!   [`ErrorKind::AlreadyRunning`](crate::ErrorKind::AlreadyRunning);
//! - **the baseline**: what the process's sinks confirmed of each function's aggregates. A
//!   flusher started after another one sends only what the first did not deliver, so that
//!   restarting a flusher never counts a call twice. The running flusher's stage 1 takes the
//!   baseline when it starts and owns it (no lock on its path); it hands it back when it ends,
//!   and a later flusher's stage 1 waits for it, so two never build deltas from one baseline.
//!   Likewise a later stage 2 starts only once an earlier one, still finishing a batch past its
//!   shutdown deadline, has ended, so the two never work on one claim.

use crate::snapshot::Snapshot;
use parking_lot::{Condvar, Mutex};

/// What the sink confirmed of each metric's aggregates, by metric id.
pub(super) type Baseline = Vec<Option<Snapshot>>;

struct Seat {
    /// A flusher holds the seat (from `start` until its handle is dropped).
    taken: bool,
    /// The baseline, while no stage 1 holds it.
    baseline: Option<Baseline>,
    /// A stage 2 thread is running.
    draining: bool,
}

static SEAT: Mutex<Seat> = Mutex::new(Seat {
    taken: false,
    baseline: Some(Vec::new()),
    draining: false,
});
static CHANGED: Condvar = Condvar::new();

/// Takes the seat; false if a flusher holds it.
pub(super) fn sit() -> bool {
    let mut s = SEAT.lock();
    !std::mem::replace(&mut s.taken, true)
}

/// Gives the seat up (the flusher's handle is dropped, or its start failed).
pub(super) fn stand_up() {
    SEAT.lock().taken = false;
}

/// Stage 1's baseline while it runs: taken from the seat (waiting for an earlier stage 1 that
/// is still finishing a write, which ends on its sink's own I/O timeouts), handed back when
/// dropped, however the thread ends.
pub(super) struct HeldBaseline {
    map: Option<Baseline>,
    /// Taken from the seat, so handed back to it (not so in unit tests).
    seated: bool,
}

impl HeldBaseline {
    pub(super) fn take() -> HeldBaseline {
        let mut s = SEAT.lock();
        loop {
            if let Some(b) = s.baseline.take() {
                return HeldBaseline {
                    map: Some(b),
                    seated: true,
                };
            }
            CHANGED.wait(&mut s);
        }
    }

    /// An empty baseline of its own, outside the seat: for unit tests.
    #[cfg(test)]
    pub(super) fn detached() -> HeldBaseline {
        HeldBaseline {
            map: Some(Vec::new()),
            seated: false,
        }
    }

    pub(super) fn get(&self, id: usize) -> Option<&Snapshot> {
        self.map.as_ref()?.get(id)?.as_ref()
    }

    /// Moves the baseline of metric `id` to `snap`.
    pub(super) fn set(&mut self, id: usize, snap: Snapshot) {
        let Some(b) = self.map.as_mut() else { return };
        if b.len() <= id {
            b.resize(id + 1, None);
        }
        b[id] = Some(snap);
    }
}

impl Drop for HeldBaseline {
    fn drop(&mut self) {
        if let (Some(b), true) = (self.map.take(), self.seated) {
            SEAT.lock().baseline = Some(b);
            CHANGED.notify_all();
        }
    }
}

/// A running stage 2: taken when its thread starts (waiting for an earlier one to end), given
/// back when dropped.
pub(super) struct Draining(());

impl Draining {
    pub(super) fn start() -> Draining {
        let mut s = SEAT.lock();
        while s.draining {
            CHANGED.wait(&mut s);
        }
        s.draining = true;
        Draining(())
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        SEAT.lock().draining = false;
        CHANGED.notify_all();
    }
}
