//! The background flusher: two named threads, one per stage, so that a slow stage 2 (a locked or
//! unreachable PostgreSQL, a backlog of millions) never holds stage 1 back.
//!
//! - Stage 1 (`fnmetrics-flusher`, [`stage1`]) moves per-call entries and aggregate deltas from
//!   the rings to a [`Sink`] when `batch_size` entries are pending or `flush_interval` has
//!   passed, whichever comes first.
//! - Stage 2 (`fnmetrics-drain`, [`stage2`]) runs a [`Drain`] after each write of stage 1 and at
//!   least every `flush_interval`, until it has nothing left to move.
//!
//! Guarantees:
//! - the application's threads never wait on I/O: they push into their own rings and, once per
//!   1024 entries, `try_send` a nudge;
//! - memory stays bounded: past `max_pending_entries` new entries are dropped and counted per
//!   function (`Snapshot::dropped_entries`); aggregates are never dropped;
//! - a batch that failed is retried as it was (same flush id, same entry ids), with capped
//!   exponential backoff and jitter, so a sink that applies a flush id at most once never doubles;
//!   the aggregate baseline moves only once the sink confirmed the write;
//! - nothing is lost silently: what is not delivered by the end of shutdown is counted (stats and
//!   the per-function `dropped_entries`, which a later flusher of the process sends) and
//!   reported through `on_error` and the `log` crate;
//! - dropping the [`FlusherThreads`] returns within `shutdown_timeout` + 1 s whatever the servers do; a
//!   stage still inside a server call then ends on that call's own timeout, and the stages of a
//!   later flusher of the same process wait for it before they start.

mod handover;
mod health;
mod stage1;
mod stage2;

pub use health::{Health, StageHealth};

use crate::error::{Error, ErrorKind};
use crate::record::{Source, MAX_SOURCE_NAME_LEN};
use crate::ring::{EntryMode, Rings};
use crate::sink::{Canceller, Drain, Sink};
use crossbeam_channel::{bounded, Receiver, Sender};
use health::SharedHealth;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters of what a flusher did, for monitoring and tests.
///
/// ```
/// let s = fnmetrics::FlushStats::default();
/// assert_eq!(s.dropped_entries, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushStats {
    /// Flushes applied by the sink.
    pub flushes: u64,
    /// Entries the sink accepted.
    pub entries_written: u64,
    /// Failed write attempts (each retried later).
    pub failed_writes: u64,
    /// Entries that were not delivered: dropped because `max_pending_entries` was reached, or
    /// still unwritten when shutdown gave up. The same count as the sum of the functions'
    /// [`Snapshot::dropped_entries`](crate::Snapshot) over this flusher's life, and as what
    /// Redis holds of them: entries written + dropped = calls.
    pub dropped_entries: u64,
    /// Calls whose aggregate delta may or may not have reached the sink: a batch that might have
    /// been applied was still failing when the sink could no longer recognise a retry of it
    /// ([`Sink::flush_id_ttl`]), so it was not sent again.
    pub uncertain_calls: u64,
    /// Entries stage 2 moved.
    pub entries_drained: u64,
    /// Entries stage 2 set aside as dead letters.
    pub dead_letters: u64,
    /// Older dead letters removed because the dead-letter list was full.
    pub dead_letters_evicted: u64,
    /// Failed stage 2 attempts.
    pub failed_drains: u64,
    /// Entries stage 2 gave back to Redis after a failed batch or at shutdown, for the next
    /// drainer to move at once (not waiting for a lease to run out).
    pub entries_handed_back: u64,
    /// Entries held in this process now, waiting to be written: in the flusher, in the threads'
    /// rings and in the spill queue.
    pub pending_entries: u64,
}

#[derive(Default)]
pub(crate) struct SharedStats {
    pub(crate) flushes: AtomicU64,
    pub(crate) entries_written: AtomicU64,
    pub(crate) failed_writes: AtomicU64,
    /// Entries not delivered at shutdown (those dropped where they were made are counted by
    /// the rings).
    pub(crate) dropped_entries: AtomicU64,
    pub(crate) uncertain_calls: AtomicU64,
    pub(crate) entries_drained: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) dead_letters_evicted: AtomicU64,
    pub(crate) failed_drains: AtomicU64,
    pub(crate) entries_handed_back: AtomicU64,
    /// Entries the stage 1 thread holds (pending and in flight).
    pub(crate) held_entries: AtomicU64,
}

/// A callback that hears about every error the flusher meets.
pub type ErrorHandler = Arc<dyn Fn(&Error) + Send + Sync>;

/// Settings of a [`FlusherThreads`].
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
    /// How long dropping the flusher may spend: stage 1 first, stage 2 in the time left.
    pub shutdown_timeout: Duration,
    /// Which calls make a per-call entry.
    pub entries: EntryMode,
    /// The first retry delay; it doubles up to `max_backoff`, with jitter.
    pub min_backoff: Duration,
    /// The longest retry delay.
    pub max_backoff: Duration,
    /// Called with every error, besides the `log` record (default: printed to stderr when no
    /// `log` logger is installed).
    pub on_error: ErrorHandler,
    /// How long [`FlusherThreads::start`] waits for the stages' first answer from their servers (a
    /// refusal that no retry can change fails the start); a server that has not answered by then
    /// is waited for by its stage, in the background.
    pub connect_wait: Duration,
    /// Whether [`FlusherThreads::start`] waits until every stage has connected and set up, and fails on
    /// any error, a server that is merely down included (for tests and command-line tools).
    pub fail_fast: bool,
    /// The service and host written with every entry (default [`Source::this_process`]). The
    /// service must not be empty; each name is at most [`MAX_SOURCE_NAME_LEN`] bytes, with no
    /// control characters (NUL included).
    pub source: Arc<Source>,
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
            .field("connect_wait", &self.connect_wait)
            .field("fail_fast", &self.fail_fast)
            .field("source", &self.source)
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
            on_error: Arc::new(|e: &Error| {
                if log::max_level() == log::LevelFilter::Off {
                    eprintln!("fnmetrics: {}", e.chain());
                }
            }),
            connect_wait: Duration::from_secs(1),
            fail_fast: false,
            source: Arc::new(Source::this_process()),
        }
    }
}

impl FlusherConfig {
    /// Checks the settings ([`FlusherThreads::start`] does too).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`], saying which setting is out of range: among them a source
    /// with an empty service, a name longer than [`MAX_SOURCE_NAME_LEN`] bytes, or one with a
    /// control character.
    ///
    /// ```
    /// use fnmetrics::sink::Source;
    /// let mut c = fnmetrics_core::FlusherConfig::default();
    /// c.batch_size = 0;
    /// assert_eq!(c.validate().unwrap_err().kind(), fnmetrics::ErrorKind::InvalidConfig);
    ///
    /// let mut c = fnmetrics_core::FlusherConfig::default();
    /// c.source = Source::new("checkout", "web\0").into();
    /// assert_eq!(c.validate().unwrap_err().kind(), fnmetrics::ErrorKind::InvalidConfig);
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
        if let EntryMode::Sample(n) = self.entries
            && !(1..=crate::MAX_SAMPLE).contains(&n)
        {
            return bad("EntryMode::Sample(n) takes n from 1 to MAX_SAMPLE (1048576)");
        }
        if self.source.service.is_empty() {
            return bad("the service name must not be empty");
        }
        for (what, name) in [
            ("service", &self.source.service),
            ("host", &self.source.host),
        ] {
            if name.len() > MAX_SOURCE_NAME_LEN {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "the {what} name is {} bytes long, longer than {MAX_SOURCE_NAME_LEN}",
                        name.len()
                    ),
                ));
            }
            if let Some(c) = name.chars().find(|c| c.is_control()) {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("the {what} name {name:?} holds the control character {c:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Reports an error as the flusher does: a `log` record, then the `on_error` callback.
    ///
    /// ```
    /// let c = fnmetrics_core::FlusherConfig::default();
    /// c.report(&fnmetrics::Error::new(fnmetrics::ErrorKind::Unavailable, "Redis is down"));
    /// ```
    pub fn report(&self, e: &Error) {
        log::error!(target: "fnmetrics", "{}", e.chain());
        (self.on_error)(e);
    }
}

/// What a caller asks of a stage thread.
enum Command {
    /// Do everything pending now, and answer.
    Flush(Sender<Result<(), Error>>),
    /// Finish by this deadline, then end.
    Shutdown(Instant),
}

/// A running stage thread: its commands, a channel that disconnects when it ends, and its
/// health.
struct StageHandle {
    cmd: Sender<Command>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    health: Arc<SharedHealth>,
    /// The stage's first connection attempt, until [`FlusherThreads::start`] has read it.
    first: Option<Receiver<Result<(), Error>>>,
}

impl StageHandle {
    fn spawn(
        name: &str,
        cmd: Sender<Command>,
        health: Arc<SharedHealth>,
        first: Receiver<Result<(), Error>>,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<StageHandle, Error> {
        let (done_tx, done) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _done = done_tx; // dropped when the thread ends, however it ends
                body();
            })
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Unavailable,
                    format!("cannot spawn the {name} thread"),
                    e,
                )
            })?;
        Ok(StageHandle {
            cmd,
            done,
            thread: Some(thread),
            health,
            first: Some(first),
        })
    }

    /// The stage's first connection attempt, waited for until `until` (`None`: as long as it
    /// takes). `None` if it has not answered by then.
    fn first_answer(&mut self, until: Option<Instant>) -> Option<Result<(), Error>> {
        let rx = self.first.take()?;
        let stopped = || {
            Err(Error::new(
                ErrorKind::Stopped,
                "the flusher thread has stopped",
            ))
        };
        match until {
            None => Some(rx.recv().unwrap_or_else(|_| stopped())),
            Some(t) => match rx.recv_deadline(t) {
                Ok(r) => Some(r),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Some(stopped()),
            },
        }
    }

    /// Sends `Flush` and waits for the answer.
    fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = bounded(1);
        let stopped = || Error::new(ErrorKind::Stopped, "the flusher thread has stopped");
        self.cmd.send(Command::Flush(tx)).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    /// Asks the thread to finish by `deadline`, and waits for it until `wait_until`. A thread
    /// still busy then is left to end on its own (its server calls have timeouts).
    fn stop(&mut self, deadline: Instant, wait_until: Instant) -> bool {
        let _ = self.cmd.send(Command::Shutdown(deadline));
        self.wait(wait_until)
    }

    /// Waits for the thread to end until `until`; whether it did.
    fn wait(&mut self, until: Instant) -> bool {
        let ended = matches!(
            self.done.recv_deadline(until),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        if ended && let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        ended
    }
}

/// The running threads behind `fnmetrics::Flusher`: stage 1 on `fnmetrics-flusher`, stage 2 (if
/// any) on `fnmetrics-drain`. Dropping it flushes what is pending, within the shutdown timeout,
/// and stops both threads. Applications start it through `fnmetrics::Flusher::builder()`.
///
/// ```
/// use fnmetrics::sink::{FlushBatch, Sink};
/// use fnmetrics::Error;
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use std::sync::Arc;
///
/// struct Count(Arc<AtomicU64>);
/// impl Sink for Count {
///     fn write(&mut self, b: &FlushBatch) -> Result<(), Error> {
///         self.0.fetch_add(b.entries.len() as u64, Relaxed);
///         Ok(())
///     }
/// }
///
/// #[fnmetrics::measured]
/// fn work() {}
///
/// let n = Arc::new(AtomicU64::new(0));
/// let flusher = fnmetrics::Flusher::builder().sink(Count(n.clone())).start()?;
/// work();
/// flusher.flush()?;
/// assert_eq!(n.load(Relaxed), 1);
/// # Ok::<(), fnmetrics::Error>(())
/// ```
pub struct FlusherThreads {
    stage1: StageHandle,
    stage2: Option<StageHandle>,
    canceller: Option<Canceller>,
    rings: Arc<Rings>,
    stats: Arc<SharedStats>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for FlusherThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlusherThreads")
            .field("stage2", &self.stage2.is_some())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl FlusherThreads {
    /// Starts the one flusher of this process on `sink` (stage 1) and optionally `drain`
    /// (stage 2, on a thread of its own).
    ///
    /// Each stage connects in its own thread ([`Sink::connect`], [`Drain::connect`]), and keeps
    /// trying with backoff while its server is down, buffering meanwhile: `start` waits at most
    /// [`FlusherConfig::connect_wait`] for their first answers, and fails only on an answer that
    /// no retry can change (credentials refused, a certificate that does not verify, an
    /// incompatible table). With [`FlusherConfig::fail_fast`] it waits until both stages are set
    /// up, and fails on any error. `start` does no I/O on the caller's thread.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] for bad settings, [`ErrorKind::AlreadyRunning`] if a flusher
    /// is running already, [`ErrorKind::Unavailable`] if a thread cannot be spawned, and a
    /// stage's definitive connection error (any error with `fail_fast`).
    ///
    /// ```
    /// # use fnmetrics::sink::{FlushBatch, Sink};
    /// # struct Null;
    /// # impl Sink for Null { fn write(&mut self, _: &FlushBatch) -> Result<(), fnmetrics::Error> { Ok(()) } }
    /// let first = fnmetrics::Flusher::builder().sink(Null).start()?;
    /// let second = fnmetrics::Flusher::builder().sink(Null).start();
    /// assert_eq!(second.unwrap_err().kind(), fnmetrics::ErrorKind::AlreadyRunning);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn start(
        config: FlusherConfig,
        sink: Box<dyn Sink>,
        drain: Option<Box<dyn Drain>>,
    ) -> Result<FlusherThreads, Error> {
        config.validate()?;
        if !handover::sit() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "a flusher is already running in this process",
            ));
        }
        let (wait, fail_fast) = (config.connect_wait, config.fail_fast);
        let mut flusher = match Self::spawn(config, sink, drain) {
            Ok(f) => f,
            Err(e) => {
                handover::stand_up();
                return Err(e);
            }
        };
        match flusher.first_answers(wait, fail_fast) {
            Ok(()) => Ok(flusher),
            Err(e) => {
                // Stop at once: nothing could be delivered anyway. Dropping gives the seat up.
                flusher.shutdown_timeout = Duration::ZERO;
                drop(flusher);
                Err(e)
            }
        }
    }

    /// Waits for each stage's first connection attempt (see [`FlusherThreads::start`]).
    fn first_answers(&mut self, wait: Duration, fail_fast: bool) -> Result<(), Error> {
        let until = (!fail_fast).then(|| Instant::now() + wait);
        for stage in std::iter::once(&mut self.stage1).chain(self.stage2.as_mut()) {
            match stage.first_answer(until) {
                Some(Err(e)) if fail_fast || e.kind().fails_start() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn spawn(
        config: FlusherConfig,
        sink: Box<dyn Sink>,
        drain: Option<Box<dyn Drain>>,
    ) -> Result<FlusherThreads, Error> {
        let stats = Arc::new(SharedStats::default());
        let (nudge1_tx, nudge1_rx) = bounded::<()>(1);
        let rings = Arc::new(Rings::open(
            config.entries,
            config.max_pending_entries,
            nudge1_tx,
        ));
        let (nudge2_tx, nudge2_rx) = bounded::<()>(1);
        let canceller = drain.as_ref().and_then(|d| d.canceller());
        let stage2 = match drain {
            None => None,
            Some(drain) => {
                let (tx, rx) = bounded::<Command>(16);
                let (first_tx, first_rx) = bounded(1);
                let health = Arc::new(SharedHealth::default());
                let worker =
                    stage2::Stage2::new(config.clone(), drain, stats.clone(), health.clone());
                let body = move || worker.run(rx, nudge2_rx, first_tx);
                match StageHandle::spawn("fnmetrics-drain", tx, health, first_rx, body) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        rings.close();
                        return Err(e);
                    }
                }
            }
        };
        let (tx, rx) = bounded::<Command>(16);
        let (first_tx, first_rx) = bounded(1);
        let health = Arc::new(SharedHealth::default());
        let worker = stage1::Stage1::new(
            config.clone(),
            sink,
            rings.clone(),
            stats.clone(),
            health.clone(),
            stage2.as_ref().map(|_| nudge2_tx),
        );
        let body = move || worker.run(rx, nudge1_rx, first_tx);
        let stage1 = match StageHandle::spawn("fnmetrics-flusher", tx, health, first_rx, body) {
            Ok(h) => h,
            Err(e) => {
                rings.close();
                if let Some(mut s2) = stage2 {
                    let now = Instant::now();
                    s2.stop(now, now + Duration::from_secs(1));
                }
                return Err(e);
            }
        };
        Ok(FlusherThreads {
            stage1,
            stage2,
            canceller,
            rings,
            stats,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// Flushes everything recorded so far through stage 1, then runs stage 2 until it has
    /// nothing left to move; returns once both are done. It blocks the calling thread on both
    /// stages' I/O (bounded by their timeouts): in async code, call it from
    /// `spawn_blocking`, or let the flush interval and the shutdown do the work.
    ///
    /// # Errors
    /// The first error either stage met (what failed stays pending and is retried in the
    /// background), or [`ErrorKind::Stopped`] if a stage thread is gone.
    ///
    /// ```no_run
    /// # fn f(flusher: &fnmetrics::Flusher) -> Result<(), fnmetrics::Error> {
    /// flusher.flush()?;
    /// # Ok(()) }
    /// ```
    pub fn flush(&self) -> Result<(), Error> {
        self.stage1.flush()?;
        match &self.stage2 {
            Some(s2) => s2.flush(),
            None => Ok(()),
        }
    }

    /// What the flusher has done so far.
    ///
    /// ```no_run
    /// # fn f(flusher: &fnmetrics::Flusher) {
    /// println!("{} entries written", flusher.stats().entries_written);
    /// # }
    /// ```
    pub fn stats(&self) -> FlushStats {
        let s = &self.stats;
        FlushStats {
            flushes: s.flushes.load(Relaxed),
            entries_written: s.entries_written.load(Relaxed),
            failed_writes: s.failed_writes.load(Relaxed),
            dropped_entries: s.dropped_entries.load(Relaxed) + self.rings.dropped(),
            uncertain_calls: s.uncertain_calls.load(Relaxed),
            entries_drained: s.entries_drained.load(Relaxed),
            dead_letters: s.dead_letters.load(Relaxed),
            dead_letters_evicted: s.dead_letters_evicted.load(Relaxed),
            failed_drains: s.failed_drains.load(Relaxed),
            entries_handed_back: s.entries_handed_back.load(Relaxed),
            pending_entries: s.held_entries.load(Relaxed) + self.rings.backlog(),
        }
    }

    /// How each stage stands with its server: connected, set up (the schema migrated), since
    /// when it has been retrying and why. Reads memory only: cheap, and safe in async code.
    ///
    /// ```no_run
    /// # fn f(flusher: &fnmetrics::Flusher) {
    /// let h = flusher.health();
    /// if let Some(s) = h.stage2.filter(|s| !s.connected) {
    ///     eprintln!("PostgreSQL: retrying since {:?}: {:?}", s.retrying_since, s.last_error);
    /// }
    /// # }
    /// ```
    pub fn health(&self) -> Health {
        Health {
            stage1: Some(self.stage1.health.get()),
            stage2: self.stage2.as_ref().map(|s| s.health.get()),
        }
    }
}

/// How long past the shutdown timeout dropping a [`FlusherThreads`] may take at most.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(900);

impl Drop for FlusherThreads {
    fn drop(&mut self) {
        let deadline = Instant::now() + self.shutdown_timeout;
        let wait_until = deadline + SHUTDOWN_GRACE;
        // No new entries from here on; calls are still counted in the aggregates.
        self.rings.close();
        if !self.stage1.stop(deadline, wait_until) {
            log::warn!(
                target: "fnmetrics",
                "stage 1 is still inside a write at the shutdown deadline; it ends on its own I/O \
                 timeout and counts what it could not deliver"
            );
        }
        if let Some(s2) = &mut self.stage2 {
            let _ = s2.cmd.send(Command::Shutdown(deadline));
            // A batch still being written at the deadline is cancelled (its statement, not the
            // connection): the write fails at once and stage 2 hands the batch back to Redis.
            if !s2.wait(deadline) {
                if let Some(c) = self.canceller.clone() {
                    let _ = std::thread::Builder::new()
                        .name("fnmetrics-cancel".into())
                        .spawn(move || c.cancel());
                }
                if !s2.wait(wait_until) {
                    log::warn!(
                        target: "fnmetrics",
                        "stage 2 is still inside a batch after the shutdown deadline; it ends on \
                         its own timeouts, and what it holds goes back to the stage-1 store when \
                         it does (or, if the process exits first, when its lease runs out)"
                    );
                }
            }
        }
        handover::stand_up();
    }
}

/// A stage's first contact with its server: runs `connect` (a panic becomes an error), records
/// the outcome in the stage's health, reports a failure, and tells [`FlusherThreads::start`]. Failing,
/// the stage goes on all the same: its calls connect by themselves.
fn first_contact(
    cfg: &FlusherConfig,
    health: &SharedHealth,
    first: &Sender<Result<(), Error>>,
    what: &str,
    connect: impl FnOnce() -> Result<(), Error>,
) -> bool {
    let connected = guarded(what, connect);
    let ok = connected.is_ok();
    match &connected {
        Ok(()) => health.succeeded(),
        Err(e) => {
            health.failed(e);
            cfg.report(e);
        }
    }
    let _ = first.send(connected);
    ok
}

/// Runs a sink's call, turning a panic into an error so that one bad call does not end the
/// thread.
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

/// Capped exponential backoff with ±25 % jitter.
struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    retry_at: Option<Instant>,
    jitter: u64,
}

impl Backoff {
    fn new(cfg: &FlusherConfig) -> Backoff {
        Backoff {
            min: cfg.min_backoff,
            max: cfg.max_backoff,
            current: cfg.min_backoff,
            retry_at: None,
            jitter: (crate::record::new_flush_id()[0] as u64) << 8 | 1,
        }
    }

    /// Whether a retry may run now.
    fn due(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn succeeded(&mut self) {
        self.current = self.min;
        self.retry_at = None;
    }

    /// Schedules the next attempt; returns the delay.
    fn failed(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        // xorshift for jitter: no need for a random-number crate.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let wait = base.mul_f64((self.jitter % 501) as f64 / 1000.0 + 0.75);
        self.retry_at = Some(Instant::now() + wait);
        wait
    }
}

/// The same error again, for a second waiter (errors are not `Clone`: sources may not be).
fn copy_error(e: &Error) -> Error {
    Error::new(e.kind(), e.chain())
}
