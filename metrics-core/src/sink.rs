//! The contract between the flusher and where metrics go: a [`Sink`] takes each flush (stage 1,
//! Redis in production), a [`Drain`] moves what the sink stored onward (stage 2, Redis →
//! PostgreSQL), and [`FlushBatch`] and [`DrainOutcome`] pass between them.

use crate::error::Error;
use crate::record::EntryRecord;
use crate::snapshot::Snapshot;
use std::time::Duration;

/// Stage 1: where a flush goes.
///
/// ```
/// use fnmetrics::Error;
/// use fnmetrics::sink::{FlushBatch, Sink};
/// struct Stdout;
/// impl Sink for Stdout {
///     fn write(&mut self, batch: &FlushBatch) -> Result<(), Error> {
///         println!("{} entries, {} functions", batch.entries.len(), batch.aggregates.len());
///         Ok(())
///     }
/// }
/// ```
pub trait Sink: Send + 'static {
    /// Applies one flush: its entries and aggregate deltas, atomically, and at most once per
    /// `batch.flush_id` (a retry of an applied flush must change nothing).
    ///
    /// # Errors
    /// Any error means "maybe applied", unless it is marked [`Error::unsent`] ("certainly not
    /// applied"). The flusher retries the same batch later.
    fn write(&mut self, batch: &FlushBatch) -> Result<(), Error>;

    /// How long the sink remembers an applied flush id, if not forever. The flusher never
    /// retries a batch that may have been applied once this much time has passed since its first
    /// attempt: the retry could be applied a second time. `None` (the default): forever.
    ///
    /// ```
    /// # struct S;
    /// # impl fnmetrics::sink::Sink for S {
    /// #     fn write(&mut self, _: &fnmetrics::sink::FlushBatch) -> Result<(), fnmetrics::Error> { Ok(()) }
    /// # }
    /// use fnmetrics::sink::Sink;
    /// assert_eq!(S.flush_id_ttl(), None);
    /// ```
    fn flush_id_ttl(&self) -> Option<Duration> {
        None
    }

    /// Connects and prepares (Redis: authenticates and loads the script), so that a server
    /// that refuses this process for good (credentials, a certificate) is known at start. The
    /// stage thread calls it once when it starts; [`Sink::write`] must connect by itself too,
    /// as a sink is also started while its server is down. The default does nothing.
    ///
    /// # Errors
    /// Whatever connecting met; the stage reports it and goes on (a transient error), or the
    /// flusher does not start (a definitive one: see [`ErrorKind::is_transient`]).
    ///
    /// [`ErrorKind::is_transient`]: crate::ErrorKind::is_transient
    ///
    /// ```
    /// # struct S;
    /// # impl fnmetrics::sink::Sink for S {
    /// #     fn write(&mut self, _: &fnmetrics::sink::FlushBatch) -> Result<(), fnmetrics::Error> { Ok(()) }
    /// # }
    /// use fnmetrics::sink::Sink;
    /// assert!(S.connect().is_ok());
    /// ```
    fn connect(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Stage 2: moves what stage 1 stored onward, on a thread of its own.
///
/// ```
/// use fnmetrics::sink::{Drain, DrainOutcome};
/// use fnmetrics::Error;
/// struct Nothing;
/// impl Drain for Nothing {
///     fn drain_once(&mut self) -> Result<DrainOutcome, Error> {
///         Ok(DrainOutcome::default()) // nothing to move
///     }
/// }
/// ```
pub trait Drain: Send + 'static {
    /// Moves up to one batch. An outcome with nothing moved and nothing set aside means there
    /// was nothing to move.
    ///
    /// # Errors
    /// Any error; the flusher reports it and tries again later. Nothing may be lost or doubled.
    fn drain_once(&mut self) -> Result<DrainOutcome, Error>;

    /// Connects and prepares (the PostgreSQL drainer: authenticates and migrates the schema).
    /// The stage thread calls it once when it starts, as [`Sink::connect`]; `drain_once` must
    /// connect by itself too. The default does nothing.
    ///
    /// # Errors
    /// As [`Sink::connect`].
    ///
    /// ```
    /// # struct D;
    /// # impl fnmetrics::sink::Drain for D {
    /// #     fn drain_once(&mut self) -> Result<fnmetrics::sink::DrainOutcome, fnmetrics::Error> { Ok(Default::default()) }
    /// # }
    /// use fnmetrics::sink::Drain;
    /// assert!(D.connect().is_ok());
    /// ```
    fn connect(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Gives back what this drain still holds (a batch whose write failed) so that another
    /// drainer can move it at once, instead of after a lease; returns how many entries it gave
    /// back. The stage calls it after every failed [`Drain::drain_once`] and when it stops. The
    /// default holds nothing.
    ///
    /// # Errors
    /// The server could not be told; the drain keeps what it holds and tries again later.
    ///
    /// ```
    /// # struct D;
    /// # impl fnmetrics::sink::Drain for D {
    /// #     fn drain_once(&mut self) -> Result<fnmetrics::sink::DrainOutcome, fnmetrics::Error> { Ok(Default::default()) }
    /// # }
    /// use fnmetrics::sink::Drain;
    /// assert_eq!(D.hand_back().unwrap(), 0);
    /// ```
    fn hand_back(&mut self) -> Result<u64, Error> {
        Ok(0)
    }

    /// A handle that cancels the server call this drain is making, from another thread: the
    /// flusher uses it when shutdown reaches its deadline during a write. `None` (the default):
    /// the call ends on its own timeouts.
    ///
    /// ```
    /// # struct D;
    /// # impl fnmetrics::sink::Drain for D {
    /// #     fn drain_once(&mut self) -> Result<fnmetrics::sink::DrainOutcome, fnmetrics::Error> { Ok(Default::default()) }
    /// # }
    /// use fnmetrics::sink::Drain;
    /// assert!(D.canceller().is_none());
    /// ```
    fn canceller(&self) -> Option<Canceller> {
        None
    }
}

/// Cancels a drain's server call in progress, from any thread ([`Drain::canceller`]).
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
/// use std::sync::Arc;
/// let cancelled = Arc::new(AtomicBool::new(false));
/// let c = cancelled.clone();
/// let canceller = fnmetrics::sink::Canceller::new(move || c.store(true, Relaxed));
/// canceller.cancel();
/// assert!(cancelled.load(Relaxed));
/// ```
#[derive(Clone)]
pub struct Canceller(std::sync::Arc<dyn Fn() + Send + Sync>);

impl Canceller {
    /// A canceller that runs `f`. `f` may block on I/O (a cancel request is a connection of its
    /// own); it should bound its waits.
    ///
    /// ```
    /// let c = fnmetrics::sink::Canceller::new(|| {});
    /// c.cancel();
    /// ```
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Canceller {
        Canceller(std::sync::Arc::new(f))
    }

    /// Asks the server to cancel the call in progress (nothing if there is none).
    ///
    /// ```
    /// fnmetrics::sink::Canceller::new(|| {}).cancel();
    /// ```
    pub fn cancel(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Canceller")
    }
}

/// One flush: the entries and the aggregate deltas since the previous flush.
///
/// ```
/// let b = fnmetrics::sink::FlushBatch {
///     flush_id: fnmetrics::sink::new_flush_id(),
///     entries: vec![],
///     aggregates: vec![],
/// };
/// assert!(b.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct FlushBatch {
    /// 128 random bits, unique per flush, the same on every retry of it.
    pub flush_id: [u8; 16],
    /// Per-call entries.
    pub entries: Vec<EntryRecord>,
    /// What each function gained since the last flush ([`Snapshot::delta_since`]; only functions
    /// that changed).
    pub aggregates: Vec<Snapshot>,
}

impl FlushBatch {
    /// Whether the batch holds neither entries nor aggregates.
    ///
    /// ```
    /// let b = fnmetrics::sink::FlushBatch { flush_id: [0; 16], entries: vec![], aggregates: vec![] };
    /// assert!(b.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.aggregates.is_empty()
    }
}

/// What one [`Drain::drain_once`] did.
///
/// ```
/// let o = fnmetrics::sink::DrainOutcome { moved: 10, ..Default::default() };
/// assert!(!o.is_idle());
/// assert!(fnmetrics::sink::DrainOutcome::default().is_idle());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Entries moved onward.
    pub moved: u64,
    /// Entries set aside as dead letters (undecodable, or refused for good downstream).
    pub dead_lettered: u64,
    /// Older dead letters removed because the dead-letter list was full.
    pub dead_letters_evicted: u64,
    /// Batches this drainer wrote after its lease ran out, which another drainer had taken
    /// over and acknowledged first: their entries are counted by that drainer, not here.
    pub taken_over: u64,
}

impl std::ops::AddAssign for DrainOutcome {
    fn add_assign(&mut self, o: DrainOutcome) {
        self.moved += o.moved;
        self.dead_lettered += o.dead_lettered;
        self.dead_letters_evicted += o.dead_letters_evicted;
        self.taken_over += o.taken_over;
    }
}

/// The sum of two outcomes, field by field.
///
/// ```
/// use fnmetrics::sink::DrainOutcome;
/// let a = DrainOutcome { moved: 2, ..Default::default() };
/// let b = DrainOutcome { moved: 3, taken_over: 1, ..Default::default() };
/// assert_eq!(a + b, DrainOutcome { moved: 5, taken_over: 1, ..Default::default() });
/// ```
impl std::ops::Add for DrainOutcome {
    type Output = DrainOutcome;
    fn add(mut self, o: DrainOutcome) -> DrainOutcome {
        self += o;
        self
    }
}

impl DrainOutcome {
    /// Whether nothing was there to move.
    ///
    /// ```
    /// assert!(fnmetrics::sink::DrainOutcome::default().is_idle());
    /// ```
    pub fn is_idle(&self) -> bool {
        self.moved == 0 && self.dead_lettered == 0 && self.taken_over == 0
    }
}
