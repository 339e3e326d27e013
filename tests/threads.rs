//! Threads that come and go (a blocking pool): recording memory stays bounded by the threads
//! alive at once. Alone in its binary, so that no other test adds slots meanwhile.

use fnmetrics::measured;
use std::sync::Barrier;

#[measured]
fn short_task(n: u64) -> Result<u64, String> {
    if n.is_multiple_of(7) {
        Err(format!("{n} is a multiple of 7"))
    } else {
        Ok(n * 2)
    }
}

#[measured]
fn other_task() {}

#[test]
fn threads_that_come_and_go_reuse_their_slots_and_lose_nothing() {
    const LIVE: usize = 4;
    const ROUNDS: usize = 60;
    let calls_per_thread = 1_000u64;
    for round in 0..ROUNDS {
        // All LIVE threads are alive at once (the barrier), then all end.
        let barrier = Barrier::new(LIVE);
        std::thread::scope(|s| {
            for t in 0..LIVE {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..calls_per_thread {
                        let _ = short_task((round * LIVE + t) as u64 * calls_per_thread + i);
                    }
                    if round.is_multiple_of(2) {
                        other_task();
                    }
                    barrier.wait();
                });
            }
        });
    }
    let total = (ROUNDS * LIVE) as u64 * calls_per_thread;
    let m = fnmetrics::get(concat!(module_path!(), "::short_task")).unwrap();
    assert_eq!(m.calls, total);
    assert_eq!(m.errors, total.div_ceil(7));
    let other = fnmetrics::get(concat!(module_path!(), "::other_task")).unwrap();
    assert_eq!(other.calls, (ROUNDS / 2 * LIVE) as u64);

    // 240 threads made calls, at most 4 at a time: two functions, at most 4 slots each (a
    // thread ends before the next round starts, but its slots are released when its
    // thread-locals are destroyed, which can lag the join by a little: allow one round).
    let mem = fnmetrics::memory();
    assert_eq!(mem.functions, 2, "{mem:?}");
    assert!(mem.slots <= 2 * 2 * LIVE, "{mem:?}");
    // Each slot holds the few pages its calls landed in.
    assert!(mem.pages <= mem.slots * 8, "{mem:?}");
}
