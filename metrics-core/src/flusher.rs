//! The background flusher: one named thread that moves per-call entries and aggregate deltas to
//! a [`Sink`] (stage 1) and runs a [`Drain`] (stage 2), when `batch_size` entries are pending or
//! `flush_interval` has passed, whichever comes first.
//!
//! Guarantees:
//! - the application's threads never wait on I/O: they push into their own rings and, once per
//!   1024 entries, `try_send` a nudge;
//! - memory stays bounded: past `max_pending_entries` new entries are dropped and counted per
//!   function (`Snapshot::dropped_entries`); aggregates are never dropped;
//! - a batch that failed is retried as it was (same flush id, same entry ids), with capped
//!   exponential backoff and jitter, so a sink that applies a flush id at most once never doubles.

use crate::entry::{self, EntryMode, EntryRecord, IdGen, RawEntry};
use crate::error::{Error, ErrorKind};
use crate::registry;
use crate::snapshot::Snapshot;
use crossbeam_channel::{bounded, select, Receiver, Sender};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Stage 1: where a flush goes (Redis in production).
pub trait Sink: Send + 'static {
    /// Applies one flush: its entries and aggregate deltas, atomically, and at most once per
    /// `batch.flush_id` (a retry of an applied flush must change nothing).
    ///
    /// # Errors
    /// Any error means "maybe not applied": the flusher retries the same batch later.
    fn write(&mut self, batch: &FlushBatch) -> Result<(), Error>;
}

/// Stage 2: moves what stage 1 stored onward (Redis → PostgreSQL in production).
pub trait Drain: Send + 'static {
    /// Moves up to one batch; returns how many entries moved (0 when there was nothing to move).
    ///
    /// # Errors
    /// Any error; the flusher reports it and tries again later. Nothing may be lost or doubled.
    fn drain_once(&mut self) -> Result<u64, Error>;
}

/// One flush: the entries and the aggregate deltas since the previous flush.
#[derive(Clone, Debug)]
pub struct FlushBatch {
    /// Unique per flush, the same on every retry of it.
    pub flush_id: [u8; 16],
    /// Per-call entries.
    pub entries: Vec<EntryRecord>,
    /// What each function gained since the last flush (only functions that changed).
    pub aggregates: Vec<Aggregate>,
}

/// The aggregate counters of one function: in a [`FlushBatch`], what they gained since the
/// previous flush; read back from a sink, the sum of every flush (see
/// [`Snapshot::from_aggregate`](crate::Snapshot::from_aggregate)).
///
/// ```
/// let mut a = fnmetrics_core::Aggregate::new("app::f");
/// a.calls += 1;
/// a.total_ns += 1_500;
/// a.min_ns = 1_500;
/// a.max_ns = 1_500;
/// a.buckets.push((fnmetrics_core::bucket_index(1_500) as u16, 1));
/// assert_eq!(fnmetrics_core::Snapshot::from_aggregate(&a).mean().as_nanos(), 1_500);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    /// The function's name.
    pub name: Arc<str>,
    /// New calls.
    pub calls: u64,
    /// New errors.
    pub errors: u64,
    /// New panics.
    pub panics: u64,
    /// New cancelled calls.
    pub cancelled: u64,
    /// New dropped entries.
    pub dropped_entries: u64,
    /// Added call time, ns.
    pub total_ns: u64,
    /// The shortest call so far (all time in this process), ns; `u64::MAX` if none.
    pub min_ns: u64,
    /// The longest call so far (all time in this process), ns.
    pub max_ns: u64,
    /// New counts per histogram bucket, `(index, count)`.
    pub buckets: Vec<(u16, u64)>,
}

impl Aggregate {
    /// All counters zero (and `min_ns` at `u64::MAX`: no call yet).
    ///
    /// ```
    /// let a = fnmetrics_core::Aggregate::new("app::f");
    /// assert_eq!((a.calls, a.min_ns), (0, u64::MAX));
    /// ```
    pub fn new(name: &str) -> Aggregate {
        Aggregate {
            name: name.into(),
            calls: 0,
            errors: 0,
            panics: 0,
            cancelled: 0,
            dropped_entries: 0,
            total_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            buckets: Vec::new(),
        }
    }
}

/// Counters of what a flusher did, for monitoring and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushStats {
    /// Flushes applied by the sink.
    pub flushes: u64,
    /// Entries the sink accepted.
    pub entries_written: u64,
    /// Failed write attempts (each retried later).
    pub failed_writes: u64,
    /// Entries dropped because `max_pending_entries` was reached.
    pub dropped_entries: u64,
    /// Entries stage 2 moved.
    pub entries_drained: u64,
    /// Failed stage 2 attempts.
    pub failed_drains: u64,
    /// Entries held in memory now, waiting to be written (at most `max_pending_entries`).
    pub pending_entries: u64,
}

#[derive(Default)]
struct SharedStats {
    flushes: AtomicU64,
    entries_written: AtomicU64,
    failed_writes: AtomicU64,
    dropped_entries: AtomicU64,
    entries_drained: AtomicU64,
    failed_drains: AtomicU64,
    pending_entries: AtomicU64,
}

impl SharedStats {
    fn load(&self) -> FlushStats {
        FlushStats {
            flushes: self.flushes.load(Relaxed),
            entries_written: self.entries_written.load(Relaxed),
            failed_writes: self.failed_writes.load(Relaxed),
            dropped_entries: self.dropped_entries.load(Relaxed),
            entries_drained: self.entries_drained.load(Relaxed),
            failed_drains: self.failed_drains.load(Relaxed),
            pending_entries: self.pending_entries.load(Relaxed),
        }
    }
}

/// A callback that hears about every error the flusher meets.
pub type ErrorHandler = Arc<dyn Fn(&Error) + Send + Sync>;

/// Settings of a [`Flusher`].
///
/// ```
/// let c = fnmetrics_core::FlusherConfig::default();
/// assert_eq!(c.batch_size, 10_000);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct FlusherConfig {
    /// Flush when this many entries are pending.
    pub batch_size: usize,
    /// Flush at least this often.
    pub flush_interval: Duration,
    /// Keep at most this many entries in memory; past it, new ones are dropped and counted.
    pub max_pending_entries: usize,
    /// How long dropping the guard may spend flushing what is pending.
    pub shutdown_timeout: Duration,
    /// Which calls make a per-call entry.
    pub entries: EntryMode,
    /// The first retry delay; it doubles up to `max_backoff`, with jitter.
    pub min_backoff: Duration,
    /// The longest retry delay.
    pub max_backoff: Duration,
    /// Called with every error (default: printed to stderr).
    pub on_error: ErrorHandler,
}

impl std::fmt::Debug for FlusherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlusherConfig")
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("max_pending_entries", &self.max_pending_entries)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("entries", &self.entries)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish_non_exhaustive()
    }
}

impl Default for FlusherConfig {
    fn default() -> Self {
        FlusherConfig {
            batch_size: 10_000,
            flush_interval: Duration::from_secs(5),
            max_pending_entries: 1_000_000,
            shutdown_timeout: Duration::from_secs(10),
            entries: EntryMode::All,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            on_error: Arc::new(|e: &Error| eprintln!("fnmetrics: {}", error_chain(e))),
        }
    }
}

/// `a: b: c` from an error and its sources.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl FlusherConfig {
    /// Checks the settings ([`Flusher::start`] does too).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`], saying which setting is out of range.
    ///
    /// ```
    /// let mut c = fnmetrics_core::FlusherConfig::default();
    /// c.batch_size = 0;
    /// assert_eq!(c.validate().unwrap_err().kind(), fnmetrics_core::ErrorKind::InvalidConfig);
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::new(ErrorKind::InvalidConfig, m));
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1");
        }
        if self.max_pending_entries < self.batch_size {
            return bad("max_pending_entries must be at least batch_size");
        }
        if self.flush_interval.is_zero() {
            return bad("flush_interval must be longer than zero");
        }
        if self.min_backoff.is_zero() || self.max_backoff < self.min_backoff {
            return bad("backoff must satisfy 0 < min_backoff <= max_backoff");
        }
        Ok(())
    }
}

static RUNNING: AtomicBool = AtomicBool::new(false);

/// Between full flushes (interval, `flush()`, shutdown), aggregates go out at most this often.
const AGGREGATES_EVERY: Duration = Duration::from_secs(1);

/// What the aggregates were when the last batch was built, by metric id. Process-wide, not
/// per flusher: a flusher started after another one sends only what the first did not.
static SENT: Mutex<Vec<Option<Snapshot>>> = Mutex::new(Vec::new());

enum Command {
    Flush(Sender<Result<(), Error>>),
    Shutdown,
}

/// Starts the flusher thread.
#[derive(Debug)]
pub struct Flusher;

impl Flusher {
    /// Starts the one flusher of this process on `sink` (stage 1) and optionally `drain` (stage 2).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] for bad settings, [`ErrorKind::AlreadyRunning`] if a flusher
    /// is running already.
    ///
    /// ```
    /// use fnmetrics_core::{Error, FlushBatch, Flusher, FlusherConfig, Sink};
    /// struct Count(std::sync::Arc<std::sync::atomic::AtomicU64>);
    /// impl Sink for Count {
    ///     fn write(&mut self, b: &FlushBatch) -> Result<(), Error> {
    ///         self.0.fetch_add(b.entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
    ///         Ok(())
    ///     }
    /// }
    /// let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    /// let guard = Flusher::start(FlusherConfig::default(), Box::new(Count(n.clone())), None)?;
    /// # use fnmetrics_core::__private::{Guard, Site};
    /// # static S: Site = Site::new("doc::flusher");
    /// Guard::start(&S).finish(false);
    /// guard.flush()?;
    /// assert_eq!(n.load(std::sync::atomic::Ordering::Relaxed), 1);
    /// # Ok::<(), fnmetrics_core::Error>(())
    /// ```
    pub fn start(
        config: FlusherConfig,
        sink: Box<dyn Sink>,
        drain: Option<Box<dyn Drain>>,
    ) -> Result<FlusherGuard, Error> {
        config.validate()?;
        if RUNNING.swap(true, AcqRel) {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "a flusher is already running in this process",
            ));
        }
        let (cmd_tx, cmd_rx) = bounded::<Command>(16);
        let (nudge_tx, nudge_rx) = bounded::<()>(1);
        let stats = Arc::new(SharedStats::default());
        let mut worker = Worker::new(config.clone(), sink, drain, stats.clone());
        entry::set_nudge(Some(nudge_tx));
        entry::set_spill_capacity(config.max_pending_entries);
        entry::set_mode(Some(config.entries));
        let handle = std::thread::Builder::new()
            .name("fnmetrics-flusher".into())
            .spawn(move || worker.run(cmd_rx, nudge_rx))
            .map_err(|e| {
                RUNNING.store(false, Release);
                entry::set_mode(None);
                Error::with_source(ErrorKind::Unavailable, "cannot spawn the flusher thread", e)
            })?;
        Ok(FlusherGuard {
            cmd: cmd_tx,
            handle: Mutex::new(Some(handle)),
            stats,
        })
    }
}

/// Keeps the flusher running; dropping it flushes what is pending (within the shutdown timeout)
/// and stops the thread.
pub struct FlusherGuard {
    cmd: Sender<Command>,
    handle: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<SharedStats>,
}

impl std::fmt::Debug for FlusherGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlusherGuard")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl FlusherGuard {
    /// Flushes everything recorded so far through stage 1, then runs stage 2 until it has
    /// nothing left to move; returns once done.
    ///
    /// # Errors
    /// The first error either stage met (what failed stays pending and is retried in the
    /// background), or [`ErrorKind::Stopped`] if the flusher thread is gone.
    ///
    /// ```no_run
    /// # fn f(guard: &fnmetrics_core::FlusherGuard) -> Result<(), fnmetrics_core::Error> {
    /// guard.flush()?;
    /// # Ok(()) }
    /// ```
    pub fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = bounded(1);
        let stopped = || Error::new(ErrorKind::Stopped, "the flusher thread has stopped");
        self.cmd.send(Command::Flush(tx)).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    /// What the flusher has done so far.
    ///
    /// ```no_run
    /// # fn f(guard: &fnmetrics_core::FlusherGuard) {
    /// println!("{} entries written", guard.stats().entries_written);
    /// # }
    /// ```
    pub fn stats(&self) -> FlushStats {
        self.stats.load()
    }
}

impl Drop for FlusherGuard {
    fn drop(&mut self) {
        let _ = self.cmd.send(Command::Shutdown);
        if let Some(h) = self.handle.lock().take() {
            let _ = h.join();
        }
        // Also when the thread ended early: a new flusher can start.
        entry::set_mode(None);
        entry::set_nudge(None);
        RUNNING.store(false, Release);
    }
}

/// Runs a sink's call, turning a panic into an error so that one bad sink call does not end the
/// flusher thread.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(Error::new(
                ErrorKind::Server,
                format!("{what} panicked: {msg}"),
            ))
        }
    }
}

struct Worker {
    cfg: FlusherConfig,
    sink: Box<dyn Sink>,
    drain: Option<Box<dyn Drain>>,
    stats: Arc<SharedStats>,
    ids: IdGen,
    flush_ids: IdGen,
    raw: Vec<RawEntry>,
    pending: VecDeque<EntryRecord>,
    in_flight: Option<FlushBatch>,
    names: HashMap<u32, Arc<str>>,
    last_flush: Instant,
    last_aggregates: Instant,
    retry_at: Option<Instant>,
    backoff: Duration,
    drain_retry_at: Option<Instant>,
    drain_backoff: Duration,
    jitter: u64,
}

impl Worker {
    fn new(
        cfg: FlusherConfig,
        sink: Box<dyn Sink>,
        drain: Option<Box<dyn Drain>>,
        stats: Arc<SharedStats>,
    ) -> Worker {
        let ids = IdGen::new();
        let flush_ids = IdGen::new();
        let backoff = cfg.min_backoff;
        Worker {
            cfg,
            sink,
            drain,
            stats,
            jitter: ids.instance_bits() | 1,
            ids,
            flush_ids,
            raw: Vec::new(),
            pending: VecDeque::new(),
            in_flight: None,
            names: HashMap::new(),
            last_flush: Instant::now(),
            last_aggregates: Instant::now(),
            retry_at: None,
            backoff,
            drain_retry_at: None,
            drain_backoff: backoff,
        }
    }

    fn run(&mut self, cmd: Receiver<Command>, nudge: Receiver<()>) {
        // Rings of threads that exit are drained within this period, whatever the interval.
        let tick = self.cfg.flush_interval.min(Duration::from_millis(100));
        loop {
            let mut forced: Option<Sender<Result<(), Error>>> = None;
            let mut shutdown = false;
            select! {
                recv(cmd) -> c => match c {
                    Ok(Command::Flush(ack)) => forced = Some(ack),
                    Ok(Command::Shutdown) | Err(_) => shutdown = true,
                },
                recv(nudge) -> _ => {},
                default(tick) => {},
            }
            if shutdown {
                self.shutdown();
                return;
            }
            self.collect();
            if let Some(ack) = forced {
                let _ = ack.send(self.flush_all());
                continue;
            }
            let due = self.last_flush.elapsed() >= self.cfg.flush_interval;
            if due || self.pending.len() >= self.cfg.batch_size {
                if let Err(e) = self.stage1(due) {
                    (self.cfg.on_error)(&e);
                }
            }
            if due || self.pending.is_empty() {
                if let Err(e) = self.stage2(false) {
                    (self.cfg.on_error)(&e);
                }
            }
        }
    }

    /// Moves entries from the rings into `pending`, dropping (and counting) what does not fit.
    fn collect(&mut self) {
        self.raw.clear();
        entry::drain_rings(&mut self.raw);
        let in_flight = self.in_flight.as_ref().map_or(0, |b| b.entries.len());
        for i in 0..self.raw.len() {
            let raw = self.raw[i];
            if self.pending.len() + in_flight >= self.cfg.max_pending_entries {
                self.stats.dropped_entries.fetch_add(1, Relaxed);
                if let Some(m) = registry::metric(raw.metric) {
                    m.flusher_dropped.fetch_add(1, Relaxed);
                }
                continue;
            }
            let Some(name) = self.name(raw.metric) else {
                continue;
            };
            let unix_nanos = crate::clock::raw_to_unix_nanos(raw.end_raw);
            let micros = i64::try_from(unix_nanos / 1_000).unwrap_or(i64::MAX);
            let ms = u64::try_from(unix_nanos / 1_000_000).unwrap_or(u64::MAX);
            self.pending.push_back(EntryRecord {
                id: self.ids.next_id(ms),
                func_name: name,
                execution_time: Duration::from_nanos(raw.nanos),
                error_occurred: raw.outcome.is_error(),
                created_at_micros: micros,
            });
        }
        self.publish_pending();
    }

    fn publish_pending(&self) {
        let in_flight = self.in_flight.as_ref().map_or(0, |b| b.entries.len());
        self.stats
            .pending_entries
            .store((self.pending.len() + in_flight) as u64, Relaxed);
    }

    fn name(&mut self, metric: u32) -> Option<Arc<str>> {
        if let Some(n) = self.names.get(&metric) {
            return Some(n.clone());
        }
        let n: Arc<str> = registry::metric(metric)?.name.into();
        self.names.insert(metric, n.clone());
        Some(n)
    }

    /// The aggregate deltas since the last batch was built; the baseline moves to now.
    fn deltas(&mut self) -> Vec<Aggregate> {
        let mut sent = SENT.lock();
        let mut out = Vec::new();
        for (id, m) in registry::all_metrics().into_iter().enumerate() {
            let now = m.snapshot();
            if sent.len() <= id {
                sent.resize(id + 1, None);
            }
            let d = delta(sent[id].as_ref(), &now);
            if d.calls + d.cancelled + d.dropped_entries != 0 {
                out.push(d);
            }
            sent[id] = Some(now);
        }
        out
    }

    /// Writes batches: while `batch_size` entries are pending, or, if `all`, until nothing is.
    fn stage1(&mut self, all: bool) -> Result<(), Error> {
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return Ok(());
            }
        }
        loop {
            if self.in_flight.is_none() {
                let enough = self.pending.len() >= self.cfg.batch_size;
                if !enough && !all {
                    return Ok(());
                }
                let n = self.pending.len().min(self.cfg.batch_size);
                let entries: Vec<EntryRecord> = self.pending.drain(..n).collect();
                // Summing every function's counters is the flusher's costliest step: do it for
                // the last batch of a full flush, and at most once a second in between.
                let last = all && self.pending.is_empty();
                let aggregates = if last || self.last_aggregates.elapsed() >= AGGREGATES_EVERY {
                    self.last_aggregates = Instant::now();
                    self.deltas()
                } else {
                    Vec::new()
                };
                if entries.is_empty() && aggregates.is_empty() {
                    self.last_flush = Instant::now();
                    return Ok(());
                }
                self.in_flight = Some(FlushBatch {
                    flush_id: self.flush_ids.next_id(unix_ms_now()),
                    entries,
                    aggregates,
                });
            }
            let Some(batch) = self.in_flight.as_ref() else {
                return Ok(());
            };
            match guarded("the sink's write", || self.sink.write(batch)) {
                Ok(()) => {
                    self.stats.flushes.fetch_add(1, Relaxed);
                    self.stats
                        .entries_written
                        .fetch_add(batch.entries.len() as u64, Relaxed);
                    self.in_flight = None;
                    self.publish_pending();
                    self.retry_at = None;
                    self.backoff = self.cfg.min_backoff;
                    self.last_flush = Instant::now();
                    if self.pending.is_empty() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    self.stats.failed_writes.fetch_add(1, Relaxed);
                    let wait = self.next_backoff(false);
                    self.retry_at = Some(Instant::now() + wait);
                    self.last_flush = Instant::now();
                    return Err(e);
                }
            }
        }
    }

    /// Runs stage 2 until it moves nothing (or fails).
    fn stage2(&mut self, force: bool) -> Result<(), Error> {
        if !force {
            if let Some(at) = self.drain_retry_at {
                if Instant::now() < at {
                    return Ok(());
                }
            }
        }
        let Some(drain) = self.drain.as_mut() else {
            return Ok(());
        };
        loop {
            match guarded("the drain", || drain.drain_once()) {
                Ok(0) => {
                    self.drain_retry_at = None;
                    self.drain_backoff = self.cfg.min_backoff;
                    return Ok(());
                }
                Ok(n) => {
                    self.stats.entries_drained.fetch_add(n, Relaxed);
                }
                Err(e) => {
                    self.stats.failed_drains.fetch_add(1, Relaxed);
                    let wait = self.next_backoff(true);
                    self.drain_retry_at = Some(Instant::now() + wait);
                    return Err(e);
                }
            }
        }
    }

    fn flush_all(&mut self) -> Result<(), Error> {
        self.retry_at = None;
        self.stage1(true)?;
        self.stage2(true)
    }

    fn shutdown(&mut self) {
        let deadline = Instant::now() + self.cfg.shutdown_timeout;
        entry::set_mode(None);
        loop {
            self.collect();
            self.retry_at = None;
            match self.stage1(true).and_then(|()| self.stage2(true)) {
                Ok(()) => break,
                Err(e) => {
                    (self.cfg.on_error)(&e);
                    let wait = self
                        .backoff
                        .min(deadline.saturating_duration_since(Instant::now()));
                    if wait.is_zero() {
                        let lost = self.pending.len()
                            + self.in_flight.as_ref().map_or(0, |b| b.entries.len());
                        (self.cfg.on_error)(&Error::new(
                            ErrorKind::Timeout,
                            format!("shutdown timeout: {lost} entries were not written"),
                        ));
                        break;
                    }
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// The next retry delay: doubling, capped, with ±25 % jitter.
    fn next_backoff(&mut self, drain: bool) -> Duration {
        let cur = if drain {
            &mut self.drain_backoff
        } else {
            &mut self.backoff
        };
        let base = *cur;
        *cur = (*cur * 2).min(self.cfg.max_backoff);
        // xorshift for jitter: no need for a random-number crate.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let spread = (self.jitter % 501) as f64 / 1000.0 + 0.75;
        base.mul_f64(spread)
    }
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn delta(before: Option<&Snapshot>, now: &Snapshot) -> Aggregate {
    // A counter that went down was reset (fnmetrics::reset): count from zero again.
    let sub = |a: u64, b: Option<u64>| match b {
        Some(b) if b <= a => a - b,
        _ => a,
    };
    let mut buckets = Vec::new();
    for (i, c) in now.histogram.nonzero() {
        let was = before.map(|b| b.histogram.bucket(i));
        let d = sub(c, was);
        if d != 0 {
            buckets.push((i as u16, d));
        }
    }
    Aggregate {
        name: now.name.as_str().into(),
        calls: sub(now.calls, before.map(|b| b.calls)),
        errors: sub(now.errors, before.map(|b| b.errors)),
        panics: sub(now.panics, before.map(|b| b.panics)),
        cancelled: sub(now.cancelled, before.map(|b| b.cancelled)),
        dropped_entries: sub(now.dropped_entries, before.map(|b| b.dropped_entries)),
        total_ns: sub(now.total_ns, before.map(|b| b.total_ns)),
        min_ns: now.min_ns,
        max_ns: now.max_ns,
        buckets,
    }
}
