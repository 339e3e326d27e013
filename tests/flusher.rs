//! The flusher against an in-memory sink: triggers, retries, bounds, shutdown.
//!
//! One flusher runs per process, so each test that starts one runs in a process of its own
//! (`own_process!`); each uses its own function names and looks only at its own entries.

use fnmetrics_test_support as support;

use fnmetrics::measured;
use fnmetrics::sink::{EntryRecord, FlushBatch, Sink};
use fnmetrics::{Error, ErrorKind, Snapshot};
use fnmetrics::{Flusher, FlusherBuilder};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::Duration;
use support::wait_until;

/// One write attempt: its flush id and its entries' ids.
type Attempt = ([u8; 16], Vec<[u8; 16]>);

/// A sink that keeps what it is given, applies each flush id once, and can be switched off.
#[derive(Clone, Default)]
struct Memory {
    down: Arc<AtomicBool>,
    attempts: Arc<AtomicU64>,
    applied: Arc<Mutex<HashSet<[u8; 16]>>>,
    entries: Arc<Mutex<Vec<EntryRecord>>>,
    aggregates: Arc<Mutex<Vec<Snapshot>>>,
    /// Every flush id and entry ids of every attempt, to check that retries resend the same.
    tried: Arc<Mutex<Vec<Attempt>>>,
}

impl Sink for Memory {
    fn write(&mut self, batch: &FlushBatch) -> Result<(), Error> {
        self.attempts.fetch_add(1, Relaxed);
        self.tried
            .lock()
            .push((batch.flush_id, batch.entries.iter().map(|e| e.id).collect()));
        if self.down.load(Relaxed) {
            return Err(Error::new(ErrorKind::Unavailable, "memory sink is down"));
        }
        if self.applied.lock().insert(batch.flush_id) {
            self.entries.lock().extend(batch.entries.iter().cloned());
            self.aggregates
                .lock()
                .extend(batch.aggregates.iter().cloned());
        }
        Ok(())
    }
}

impl Memory {
    /// Starts the flusher on this sink.
    fn start(&self, config: FlusherBuilder) -> Flusher {
        config.sink(self.clone()).start().unwrap()
    }

    fn entries_of(&self, name: &str) -> Vec<EntryRecord> {
        self.entries
            .lock()
            .iter()
            .filter(|e| &*e.func_name == name)
            .cloned()
            .collect()
    }

    fn calls_of(&self, name: &str) -> u64 {
        self.aggregates
            .lock()
            .iter()
            .filter(|a| &*a.name == name)
            .map(|a| a.calls)
            .sum()
    }
}

fn config(batch: usize, interval: Duration, max_pending: usize) -> FlusherBuilder {
    Flusher::builder()
        .batch_size(batch)
        .flush_interval(interval)
        .max_pending_entries(max_pending)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .on_error(|_| {})
}

#[measured(name = "flusher::by_size")]
fn by_size() {}

#[test]
fn a_full_batch_is_flushed_without_waiting_for_the_interval() {
    support::own_process!();
    let sink = Memory::default();
    let guard = sink.start(config(100, Duration::from_secs(3600), 10_000));
    for _ in 0..1_000 {
        by_size();
    }
    wait_until("1000 entries by size", Duration::from_secs(10), || {
        sink.entries_of("flusher::by_size").len() == 1_000
    });
    assert!(guard.stats().flushes >= 10);
}

#[measured(name = "flusher::by_time")]
fn by_time() -> Result<(), ()> {
    Err(())
}

#[test]
fn a_small_batch_is_flushed_when_the_interval_passes() {
    support::own_process!();
    let sink = Memory::default();
    let _guard = sink.start(config(10_000, Duration::from_millis(200), 100_000));
    for _ in 0..10 {
        let _ = by_time();
    }
    wait_until("10 entries by time", Duration::from_secs(10), || {
        sink.entries_of("flusher::by_time").len() == 10
    });
    let entries = sink.entries_of("flusher::by_time");
    assert!(entries.iter().all(|e| e.error_occurred));
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    for e in &entries {
        assert!(
            (now_us - e.created_at_micros).abs() < 60_000_000,
            "created_at far off"
        );
        assert_eq!(e.id[6] >> 4, 7, "UUID version 7");
    }
    let ids: HashSet<_> = entries.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 10);
}

#[measured(name = "flusher::retried")]
fn retried(i: u64) -> u64 {
    i
}

#[test]
fn a_failed_flush_is_retried_with_the_same_ids_and_applied_once() {
    support::own_process!();
    let sink = Memory::default();
    sink.down.store(true, Relaxed);
    let guard = sink.start(config(50, Duration::from_millis(50), 100_000));
    for i in 0..500 {
        retried(i);
    }
    wait_until("a few failed attempts", Duration::from_secs(10), || {
        sink.attempts.load(Relaxed) >= 3
    });
    sink.down.store(false, Relaxed);
    guard.flush().unwrap();
    assert_eq!(sink.entries_of("flusher::retried").len(), 500);
    assert_eq!(sink.calls_of("flusher::retried"), 500);
    // Every attempt of one flush id carried the same entry ids.
    let tried = sink.tried.lock();
    for (id, entries) in tried.iter() {
        for (id2, entries2) in tried.iter() {
            if id == id2 {
                assert_eq!(entries, entries2);
            }
        }
    }
    assert!(guard.stats().failed_writes >= 3);
}

#[measured(name = "flusher::overflow")]
fn overflow() {}

#[test]
fn entries_past_the_bound_are_dropped_and_counted_and_aggregates_stay_exact() {
    support::own_process!();
    let sink = Memory::default();
    sink.down.store(true, Relaxed);
    let guard = sink.start(config(100, Duration::from_millis(20), 1_000));
    // Memory holds at most `max_pending_entries` in the flusher, 8192 in this thread's ring and
    // `max_pending_entries` in the spill queue; past that, entries are dropped where they are
    // made.
    const HELD: u64 = 1_000 + 8_192 + 1_000;
    const CALLS: u64 = 30_000;
    for _ in 0..CALLS {
        overflow();
    }
    wait_until("the bound to be hit", Duration::from_secs(10), || {
        fnmetrics::get("flusher::overflow").unwrap().dropped_entries >= CALLS - HELD
    });
    sink.down.store(false, Relaxed);
    guard.flush().unwrap();
    let kept = sink.entries_of("flusher::overflow").len() as u64;
    let m = fnmetrics::get("flusher::overflow").unwrap();
    assert_eq!(m.calls, CALLS);
    assert_eq!(kept + m.dropped_entries, CALLS);
    assert!((1_000..=HELD).contains(&kept), "{kept}");
    assert_eq!(sink.calls_of("flusher::overflow"), CALLS);
    assert_eq!(guard.stats().dropped_entries, m.dropped_entries);
}

#[measured(name = "flusher::on_drop")]
fn on_drop() {}

#[test]
fn dropping_the_guard_flushes_what_is_pending() {
    support::own_process!();
    let sink = Memory::default();
    let guard = sink.start(config(10_000, Duration::from_secs(3600), 100_000));
    for _ in 0..321 {
        on_drop();
    }
    drop(guard);
    assert_eq!(sink.entries_of("flusher::on_drop").len(), 321);
    assert_eq!(sink.calls_of("flusher::on_drop"), 321);
}

#[test]
fn a_second_flusher_is_refused_and_bad_settings_are_typed_errors() {
    support::own_process!();
    let sink = Memory::default();
    let guard = sink.start(config(10, Duration::from_secs(1), 100));
    let again = config(10, Duration::from_secs(1), 100)
        .sink(sink.clone())
        .start();
    assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyRunning);
    drop(guard);
    for bad in [
        config(0, Duration::from_secs(1), 100),
        config(10, Duration::ZERO, 100),
        config(100, Duration::from_secs(1), 10),
    ] {
        let err = bad.sink(sink.clone()).start().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    }
}

#[test]
fn service_and_host_names_are_checked_at_start() {
    support::own_process!();
    let b = || Flusher::builder().on_error(|_| {});
    for (bad, why) in [
        (b().service(""), "empty"),
        (b().service("a".repeat(256)), "256 bytes"),
        (b().host("é".repeat(128)), "256 bytes"),
        (b().service("api\0"), "control character"),
        (b().host("web\n1"), "control character"),
        (b().host("web\u{7f}"), "control character"),
        (b().service("api\u{85}"), "control character"),
    ] {
        let err = bad.start().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{why}: {err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    // At the limits: 255 bytes, an empty host, any other Unicode.
    for good in [
        b().service("a".repeat(255)).host(""),
        b().service("注文-サービス").host("é".repeat(127)),
    ] {
        good.start().unwrap();
    }
}

#[measured(name = "flusher::sourced")]
fn sourced() {}

#[test]
fn entries_carry_the_service_and_host_of_the_builder() {
    support::own_process!();
    let sink = Memory::default();
    let guard = sink.start(
        config(10_000, Duration::from_secs(3600), 100_000)
            .service("svc-m")
            .host("h-m"),
    );
    for _ in 0..50 {
        sourced();
    }
    drop(guard);
    let got = sink.entries_of("flusher::sourced");
    assert_eq!(got.len(), 50);
    assert_eq!(
        (&*got[0].source.service, &*got[0].source.host),
        ("svc-m", "h-m")
    );
    // One source for the whole flusher, not a copy per entry.
    assert!(got.iter().all(|e| Arc::ptr_eq(&e.source, &got[0].source)));
}

#[measured(name = "flusher::restarted")]
fn restarted() {}

#[test]
fn a_flusher_started_after_another_sends_only_new_aggregates() {
    support::own_process!();
    let sink = Memory::default();
    let start = || sink.start(config(10_000, Duration::from_secs(3600), 100_000));
    let first = start();
    for _ in 0..70 {
        restarted();
    }
    drop(first);
    let second = start();
    for _ in 0..30 {
        restarted();
    }
    second.flush().unwrap();
    assert_eq!(sink.calls_of("flusher::restarted"), 100);
    assert_eq!(sink.entries_of("flusher::restarted").len(), 100);
}

/// A sink that panics on its first write, then works.
struct Flaky(Memory, bool);

impl Sink for Flaky {
    fn write(&mut self, batch: &FlushBatch) -> Result<(), Error> {
        if !self.1 {
            self.1 = true;
            panic!("flaky sink");
        }
        self.0.write(batch)
    }
}

#[measured(name = "flusher::panicking_sink")]
fn panicking_sink() {}

#[test]
fn a_panicking_sink_is_an_error_and_the_flusher_goes_on() {
    support::own_process!();
    let sink = Memory::default();
    let guard = config(10_000, Duration::from_secs(3600), 100_000)
        .sink(Flaky(sink.clone(), false))
        .start()
        .unwrap();
    for _ in 0..5 {
        panicking_sink();
    }
    let err = guard.flush().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert!(err.to_string().contains("flaky sink"), "{err}");
    guard.flush().unwrap();
    assert_eq!(sink.entries_of("flusher::panicking_sink").len(), 5);
}

#[measured(name = "flusher::errors_only")]
fn errors_only(i: u64) -> Result<u64, u64> {
    if i.is_multiple_of(4) {
        Err(i)
    } else {
        Ok(i)
    }
}

#[test]
fn errors_only_mode_keeps_entries_of_failed_calls_and_counts_all() {
    support::own_process!();
    let sink = Memory::default();
    let c = config(10_000, Duration::from_secs(3600), 100_000)
        .entries(fnmetrics::EntryMode::ErrorsOnly);
    let guard = sink.start(c);
    for i in 0..100 {
        let _ = errors_only(i);
    }
    guard.flush().unwrap();
    let entries = sink.entries_of("flusher::errors_only");
    assert_eq!(entries.len(), 25);
    assert!(entries.iter().all(|e| e.error_occurred));
    assert_eq!(sink.calls_of("flusher::errors_only"), 100);
}

#[measured(name = "flusher::sampled", sample = 16)]
fn sampled(i: u64) -> Result<u64, String> {
    if i.is_multiple_of(3) {
        Err("no".into())
    } else {
        Ok(i)
    }
}

#[test]
fn a_sampled_function_makes_entries_of_its_timed_calls_only_each_weighing_n() {
    support::own_process!();
    let sink = Memory::default();
    let guard = sink.start(config(10_000, Duration::from_secs(3600), 100_000));
    for i in 0..32_000 {
        let _ = sampled(i);
    }
    guard.flush().unwrap();
    let entries = sink.entries_of("flusher::sampled");
    let m = fnmetrics::get("flusher::sampled").unwrap();
    assert_eq!(m.calls, 32_000);
    assert_eq!(entries.len() as u64, m.timed, "one entry per timed call");
    assert!(entries.iter().all(|e| e.weight == 16));
    // The weights add up to about the calls (one in 16 timed, at random).
    let weighed: u64 = entries.iter().map(|e| u64::from(e.weight)).sum();
    assert!((28_000..36_000).contains(&weighed), "{weighed}");
    // Entries of weight 16 survive the wire format: with the flusher's source as version 5,
    // without a source as version 3; others keep version 1.
    let e = entries[0].clone();
    assert_eq!(
        e.encode()[0],
        fnmetrics::sink::wire::SOURCED_ENCODING_VERSION
    );
    assert_eq!(
        fnmetrics::sink::EntryRecord::decode(&e.encode()).unwrap(),
        e
    );
    let e = fnmetrics::sink::EntryRecord {
        source: Default::default(),
        ..e
    };
    assert_eq!(
        e.encode()[0],
        fnmetrics::sink::wire::WEIGHTED_ENCODING_VERSION
    );
    assert_eq!(
        fnmetrics::sink::EntryRecord::decode(&e.encode()).unwrap(),
        e
    );
    let plain = fnmetrics::sink::EntryRecord { weight: 1, ..e };
    assert_eq!(plain.encode()[0], fnmetrics::sink::wire::ENCODING_VERSION);
    assert_eq!(
        fnmetrics::sink::EntryRecord::decode(&plain.encode()).unwrap(),
        plain
    );
}

#[measured(name = "flusher::slow_or_failed")]
fn slow_or_failed(i: u64) -> Result<u64, String> {
    if i.is_multiple_of(10) {
        std::thread::sleep(Duration::from_millis(2));
    }
    if i.is_multiple_of(7) {
        return Err("no".into());
    }
    Ok(i)
}

#[test]
fn errors_and_slow_mode_keeps_every_error_and_every_slow_call_and_nothing_else() {
    support::own_process!();
    let sink = Memory::default();
    let c = config(10_000, Duration::from_secs(3600), 100_000).entries(
        fnmetrics::EntryMode::ErrorsAndSlow(Duration::from_millis(1)),
    );
    let guard = sink.start(c);
    for i in 0..200 {
        let _ = slow_or_failed(i);
    }
    guard.flush().unwrap();
    let entries = sink.entries_of("flusher::slow_or_failed");
    // Errors: multiples of 7 (29 of 0..200); slow: multiples of 10 (20); both: multiples of 70 (3).
    assert_eq!(entries.len(), 29 + 20 - 3);
    assert!(entries
        .iter()
        .all(|e| e.error_occurred || e.execution_time >= Duration::from_millis(1)));
    assert!(entries.iter().all(|e| e.weight == 1));
    assert_eq!(sink.calls_of("flusher::slow_or_failed"), 200);
}

#[measured(name = "flusher::sample_mode")]
fn sample_mode(i: u64) -> u64 {
    i
}

#[test]
fn sample_mode_keeps_about_one_call_in_n_each_weighing_n() {
    support::own_process!();
    let sink = Memory::default();
    let c = config(10_000, Duration::from_secs(3600), 100_000)
        .entries(fnmetrics::EntryMode::Sample(20));
    let guard = sink.start(c);
    for i in 0..40_000 {
        std::hint::black_box(sample_mode(i));
    }
    guard.flush().unwrap();
    let entries = sink.entries_of("flusher::sample_mode");
    // About 2 000; a binomial count within 6 standard deviations (about 6 * 44).
    assert!((1_730..2_270).contains(&entries.len()), "{}", entries.len());
    assert!(entries.iter().all(|e| e.weight == 20));
    assert_eq!(sink.calls_of("flusher::sample_mode"), 40_000);
    let bad = config(10, Duration::from_secs(1), 100)
        .entries(fnmetrics::EntryMode::Sample(0))
        .sink(sink.clone())
        .start();
    drop(guard);
    assert_eq!(bad.unwrap_err().kind(), fnmetrics::ErrorKind::InvalidConfig);
}

/// A sink whose writes wait while `hold` is set, keeping the flusher thread busy.
struct Held(Memory, Arc<AtomicBool>);

impl Sink for Held {
    fn write(&mut self, batch: &FlushBatch) -> Result<(), Error> {
        self.0.attempts.fetch_add(1, Relaxed);
        while self.1.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.0.attempts.fetch_sub(1, Relaxed);
        self.0.write(batch)
    }
}

#[measured(name = "flusher::burst")]
fn burst() {}

#[test]
fn a_burst_larger_than_a_thread_ring_spills_instead_of_dropping() {
    support::own_process!();
    let sink = Memory::default();
    let hold = Arc::new(AtomicBool::new(true));
    let guard = config(1, Duration::from_secs(3600), 100_000)
        .sink(Held(sink.clone(), hold.clone()))
        .start()
        .unwrap();
    burst();
    wait_until(
        "the flusher to be busy writing",
        Duration::from_secs(10),
        || sink.attempts.load(Relaxed) == 1,
    );
    // The flusher cannot drain this thread's ring (8192 entries) while it waits in the sink.
    for _ in 0..20_000 {
        burst();
    }
    hold.store(false, Relaxed);
    guard.flush().unwrap();
    assert_eq!(sink.entries_of("flusher::burst").len(), 20_001);
    assert_eq!(fnmetrics::get("flusher::burst").unwrap().dropped_entries, 0);
}
