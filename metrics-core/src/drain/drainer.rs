//! The drainer: claim, write, acknowledge; hand back what could not be stored.

use super::{BatchStore, ClaimQueue, Claimed, RefusedRow, Written};
use crate::error::{Error, ErrorKind};
use crate::record::EntryRecord;
use crate::sink::{Canceller, Drain, DrainOutcome};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::fmt;
use std::time::Duration;

/// Moves entries from a [`ClaimQueue`] into a [`BatchStore`]: claims a batch, writes it in one
/// transaction, then acknowledges it. Any number of drainers, in any processes, can work on one
/// queue at once; each batch is claimed by one of them.
///
/// A batch whose write or acknowledgement failed is held and tried first by the next call
/// ([`Drainer::drain_once`]), or handed back to the queue for any drainer
/// ([`Drainer::hand_back`]; the flusher does that after every failure, and dropping the drainer
/// does it too). Rows the store refuses for good, and what the queue could not decode, are set
/// aside as dead letters by the same atomic acknowledgement.
///
/// The `fnmetrics` crate names the production pair `fnmetrics::Drainer` (Redis into
/// PostgreSQL):
///
/// ```no_run
/// use fnmetrics::postgres::PostgresSink;
/// use fnmetrics::redis::RedisQueue;
///
/// let mut d = fnmetrics::Drainer::connect(
///     RedisQueue::new("redis://127.0.0.1/", Default::default())?,
///     PostgresSink::new("postgres://postgres@127.0.0.1/metrics", Default::default())?,
/// )?;
/// let done = d.drain_all()?;
/// println!("{} entries saved, {} set aside", done.moved, done.dead_lettered);
/// # Ok::<(), fnmetrics::Error>(())
/// ```
pub struct Drainer<Q: ClaimQueue, S: BatchStore> {
    queue: Q,
    store: S,
    /// More connections a claim's write is spread over (see [`Drainer::writers`]).
    writers: Vec<S>,
    claim_size: usize,
    lease: Duration,
    /// A claim whose write or acknowledgement failed: tried first, so its entries do not wait
    /// for the lease to run out.
    held: Option<Q::Claim>,
    /// How often the maintenance thread runs (`None`: never).
    maintain_every: Option<Duration>,
    /// The maintenance thread's stop signal: dropped with the drainer.
    maintainer: Option<Sender<()>>,
    /// How many claims are drained at once (see [`Drainer::lanes`]).
    lanes_wanted: usize,
    /// The drainers of the other lanes, made from this one's settings.
    lanes: Vec<Drainer<Q, S>>,
    /// What lanes moved in a call another lane failed: counted with the next call's outcome.
    carry: DrainOutcome,
}

impl<Q: ClaimQueue, S: BatchStore> fmt::Debug for Drainer<Q, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drainer")
            .field("claim_size", &self.claim_size)
            .field("lease", &self.lease)
            .field("writers", &(self.writers.len() + 1))
            .field("lanes", &self.lanes_wanted)
            .field("maintain_every", &self.maintain_every)
            .field(
                "held_entries",
                &self.held.as_ref().map(|c| c.entries().len()),
            )
            .finish_non_exhaustive()
    }
}

/// How often drainers run the store's maintenance by default.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(600);

/// The fewest entries worth a connection of their own (see [`Drainer::writers`]).
const MIN_PART: usize = 1_000;

impl<Q: ClaimQueue, S: BatchStore> Drainer<Q, S> {
    /// A drainer from `queue` into `store`, connecting on its first call: for a process that
    /// must start while a server is down. Defaults: claims of 50 000 entries, a 60 s lease, one
    /// writer, one lane, maintenance every 10 minutes.
    ///
    /// ```
    /// use fnmetrics::postgres::PostgresSink;
    /// use fnmetrics::redis::RedisQueue;
    /// // Nothing listens on port 1: no error until the first call.
    /// let d = fnmetrics::Drainer::new(
    ///     RedisQueue::new("redis://127.0.0.1:1/", Default::default())?,
    ///     PostgresSink::new("postgres://postgres@127.0.0.1:1/metrics", Default::default())?,
    /// );
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn new(queue: Q, store: S) -> Self {
        Drainer {
            queue,
            store,
            writers: Vec::new(),
            claim_size: 50_000,
            lease: Duration::from_secs(60),
            held: None,
            maintain_every: Some(MAINTENANCE_INTERVAL),
            maintainer: None,
            lanes_wanted: 1,
            lanes: Vec::new(),
            carry: DrainOutcome::default(),
        }
    }

    /// [`Drainer::new`], then [`Drainer::connect`]: both servers answered (and the store's
    /// schema is set up) when it returns.
    ///
    /// # Errors
    /// As [`Drainer::connect`].
    ///
    /// ```no_run
    /// use fnmetrics::postgres::PostgresSink;
    /// use fnmetrics::redis::RedisQueue;
    /// let d = fnmetrics::Drainer::connect(
    ///     RedisQueue::new("redis://127.0.0.1/", Default::default())?,
    ///     PostgresSink::new("postgres://postgres@127.0.0.1/metrics", Default::default())?,
    /// )?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn connect(queue: Q, store: S) -> Result<Self, Error> {
        let mut d = Drainer::new(queue, store);
        d.connect_both()?;
        Ok(d)
    }

    /// Connects to the queue and to the store (setting its schema up). Both are tried whatever
    /// the first one answers: a refusal that no retry can change (credentials, a certificate)
    /// must be heard even while the other server is merely down.
    fn connect_both(&mut self) -> Result<(), Error> {
        let queue = self.queue.connect();
        let store = self.store.connect();
        match (queue, store) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Err(q), Err(s)) if q.kind().is_transient() && !s.kind().is_transient() => Err(s),
            (Err(q), Err(_)) => Err(q),
        }
    }

    /// The most entries one claim takes (default 50 000; at least 1).
    ///
    /// ```no_run
    /// # let d: fnmetrics::Drainer = unimplemented!();
    /// let d = d.claim_size(10_000);
    /// ```
    pub fn claim_size(mut self, n: usize) -> Self {
        self.claim_size = n.max(1);
        for lane in &mut self.lanes {
            lane.claim_size = self.claim_size;
        }
        self
    }

    /// How many store connections write a claim (default 1): a claim of at least `n * 1 000`
    /// entries is cut into `n` parts written at once, each in a transaction of its own, on its
    /// own connection ([`BatchStore::another`], connected on first use), so that a server with
    /// several cores stores a claim that much sooner. The claim is acknowledged once every part
    /// is in. A part that fails goes again on the first connection (a connection more that
    /// cannot be had slows the drain down, it does not stop it); if that fails too, the whole
    /// claim is written again later, and the parts already in are skipped by their ids.
    ///
    /// ```no_run
    /// # let d: fnmetrics::Drainer = unimplemented!();
    /// let d = d.writers(2);
    /// ```
    pub fn writers(mut self, n: usize) -> Self {
        self.writers = (1..n.max(1)).map(|_| self.store.another()).collect();
        for lane in &mut self.lanes {
            lane.writers = (1..n.max(1)).map(|_| lane.store.another()).collect();
        }
        self
    }

    /// How many claims this drainer works on at once (default 1, at most 64): each lane
    /// claims, writes and acknowledges its own batches, on connections of its own
    /// ([`ClaimQueue::lane`], and [`Drainer::writers`] store connections), in a thread of its
    /// own for the call. On a Redis Cluster the lanes start their claims at different shards,
    /// so shards on different primaries are drained in parallel; on a single Redis they take
    /// turns at its one entry list. A call's outcome sums the lanes'; if a lane fails, the call
    /// returns its error (the other lanes' work is counted with the next call's outcome) and
    /// the lane keeps its batch, as one drainer does.
    ///
    /// ```no_run
    /// # let d: fnmetrics::Drainer = unimplemented!();
    /// let d = d.lanes(3);
    /// ```
    pub fn lanes(mut self, n: usize) -> Self {
        self.lanes_wanted = n.clamp(1, 64);
        self.lanes.clear();
        self.make_lanes();
        self
    }

    /// The other lanes' drainers, made from this one's settings.
    fn make_lanes(&mut self) {
        let n = self.lanes_wanted;
        while self.lanes.len() + 1 < n {
            let lane = Drainer {
                queue: self.queue.lane(self.lanes.len() + 1, n),
                store: self.store.another(),
                writers: self.writers.iter().map(S::another).collect(),
                claim_size: self.claim_size,
                lease: self.lease,
                held: None,
                maintain_every: None,
                maintainer: None,
                lanes_wanted: 1,
                lanes: Vec::new(),
                carry: DrainOutcome::default(),
            };
            self.lanes.push(lane);
        }
    }

    /// How long a claim is this drainer's before another may take it over (default 60 s):
    /// longer than a claim takes to write, with margin.
    ///
    /// ```no_run
    /// # let d: fnmetrics::Drainer = unimplemented!();
    /// let d = d.lease(std::time::Duration::from_secs(30));
    /// ```
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d;
        for lane in &mut self.lanes {
            lane.lease = d;
        }
        self
    }

    /// How often this drainer runs the store's maintenance ([`BatchStore::maintain`]: for
    /// PostgreSQL, makes the partitions of the coming days and drops those past retention), on
    /// a thread and a connection of its own, so that neither stage waits for it; `None` never
    /// does. Default every 10 minutes, the first run when the drainer first drains. Of the
    /// drainers sharing a PostgreSQL table, one at a time does the work (an advisory lock).
    ///
    /// ```no_run
    /// # let d: fnmetrics::Drainer = unimplemented!();
    /// let d = d.maintain_every(Some(std::time::Duration::from_secs(3600)));
    /// ```
    pub fn maintain_every(mut self, every: Option<Duration>) -> Self {
        self.maintain_every = every;
        self.maintainer = None; // a running thread stops; the next drain starts one at the new pace
        self
    }

    /// Starts the maintenance thread, if it should run and does not yet.
    fn start_maintenance(&mut self) {
        let (Some(every), None) = (self.maintain_every, &self.maintainer) else {
            return;
        };
        let store = self.store.another();
        let (stop, stopped) = bounded::<()>(0);
        let spawned = std::thread::Builder::new()
            .name("fnmetrics-maintain".into())
            .spawn(move || maintain_until_stopped(store, every, &stopped));
        match spawned {
            Ok(_) => self.maintainer = Some(stop),
            Err(e) => log::warn!(target: "fnmetrics", "cannot start the maintenance thread: {e}"),
        }
    }

    /// Claims one batch (per lane), stores it and acknowledges it; returns how many entries it
    /// moved and set aside (an idle outcome: nothing to move).
    ///
    /// # Errors
    /// A failed claim, write or acknowledgement; nothing is lost. The drainer holds a batch
    /// whose write or acknowledgement failed, and the next call tries it first;
    /// [`Drainer::hand_back`] gives it back to the queue for any drainer instead.
    ///
    /// ```no_run
    /// # let mut d: fnmetrics::Drainer = unimplemented!();
    /// while !d.drain_once()?.is_idle() {}
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn drain_once(&mut self) -> Result<DrainOutcome, Error> {
        self.start_maintenance();
        if self.lanes_wanted <= 1 {
            let o = self.drain_lane()?;
            return Ok(o + std::mem::take(&mut self.carry));
        }
        self.make_lanes();
        let mut lanes = std::mem::take(&mut self.lanes);
        let (mine, theirs) = std::thread::scope(|scope| {
            let running: Vec<_> = lanes
                .iter_mut()
                .map(|lane| scope.spawn(move || lane.drain_lane()))
                .collect();
            let mine = self.drain_lane();
            let theirs: Vec<Result<DrainOutcome, Error>> = running
                .into_iter()
                .map(|t| joined(t.join(), "a thread draining a lane panicked"))
                .collect();
            (mine, theirs)
        });
        self.lanes = lanes;
        let mut sum = DrainOutcome::default();
        let mut first_error = None;
        for r in std::iter::once(mine).chain(theirs) {
            match r {
                Ok(o) => sum += o,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => {
                self.carry += sum;
                Err(e)
            }
            None => Ok(sum + std::mem::take(&mut self.carry)),
        }
    }

    /// One claim of this lane: claimed, written, acknowledged.
    fn drain_lane(&mut self) -> Result<DrainOutcome, Error> {
        let claim = match self.held.take() {
            Some(claim) => claim,
            // The store first (a no-op while connected): a batch is claimed only when it can
            // be written, and a schema newer than this build claims nothing.
            None => {
                self.store.connect()?;
                match self.queue.claim(self.claim_size, self.lease)? {
                    Some(claim) => claim,
                    None => return Ok(DrainOutcome::default()),
                }
            }
        };
        // Written again after a failure, rows dedupe by id; acknowledged after the lease was
        // taken over, the other drainer's write dedupes too.
        let done = self.write(claim.entries()).and_then(|written| {
            let refused: Vec<RefusedRow> = written
                .refused
                .into_iter()
                .filter(|r| r.index < claim.entries().len())
                .collect();
            let acked = self.queue.ack(&claim, &refused)?;
            if !acked.removed {
                // Taken over and acknowledged by another drainer: it counts these.
                return Ok(DrainOutcome {
                    taken_over: 1,
                    ..DrainOutcome::default()
                });
            }
            Ok(DrainOutcome {
                moved: (claim.entries().len() - refused.len()) as u64,
                dead_lettered: (claim.undecodable() + refused.len()) as u64,
                dead_letters_evicted: acked.dead_letters_evicted,
                ..DrainOutcome::default()
            })
        });
        if done.is_err() {
            self.held = Some(claim);
        }
        done
    }

    /// Writes `entries` on as many connections as [`Drainer::writers`] allows for their number,
    /// a contiguous part each, at once; the rows refused are indexed into `entries`.
    fn write(&mut self, entries: &[EntryRecord]) -> Result<Written, Error> {
        let parts = (entries.len() / MIN_PART).clamp(1, self.writers.len() + 1);
        if parts == 1 {
            return self.store.write(entries);
        }
        let size = entries.len().div_ceil(parts);
        let stores = std::iter::once(&mut self.store).chain(self.writers.iter_mut());
        let results: Vec<(usize, Result<Written, Error>)> = std::thread::scope(|scope| {
            let running: Vec<_> = stores
                .zip(entries.chunks(size).enumerate())
                .map(|(store, (i, part))| (i * size, scope.spawn(move || store.write(part))))
                .collect();
            running
                .into_iter()
                .map(|(at, t)| {
                    let what = "a thread writing part of a claim panicked";
                    (at, joined(t.join(), what))
                })
                .collect()
        });
        let mut out = Written::default();
        for (at, r) in results {
            let part = match r {
                Ok(part) => part,
                // A part that failed goes again on the first connection, so that a connection
                // more that cannot be had (a server at its connection limit, say) slows the
                // drain down instead of stopping it; if that fails too, the claim is retried.
                Err(_) => {
                    let end = (at + size).min(entries.len());
                    self.store.write(&entries[at..end])?
                }
            };
            out.inserted += part.inserted;
            out.refused.extend(part.refused.into_iter().map(|mut row| {
                row.index += at;
                row
            }));
        }
        Ok(out)
    }

    /// Gives the batches this drainer still holds (after a failed write or acknowledgement)
    /// back to the queue ([`ClaimQueue::release`]), so that the next claim of any drainer moves
    /// them at once instead of after the lease. Returns how many elements it gave back (0: it
    /// held nothing, or another drainer had taken the claim over after its lease ran out).
    ///
    /// # Errors
    /// The queue could not be reached; the drainer keeps the batch (and retries it, or hands
    /// it back, later).
    ///
    /// ```no_run
    /// # let mut d: fnmetrics::Drainer = unimplemented!();
    /// if d.drain_once().is_err() {
    ///     d.hand_back()?;
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn hand_back(&mut self) -> Result<u64, Error> {
        let mut n = 0;
        let mut failed = None;
        for lane in &mut self.lanes {
            match lane.hand_back() {
                Ok(k) => n += k,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        let mine = self.hand_back_mine();
        match (mine, failed) {
            (Ok(k), None) => Ok(n + k),
            (Err(e), _) | (Ok(_), Some(e)) => Err(e),
        }
    }

    /// Hands back this lane's batch.
    fn hand_back_mine(&mut self) -> Result<u64, Error> {
        let Some(claim) = self.held.take() else {
            return Ok(0);
        };
        match self.queue.release(&claim) {
            Ok(true) => Ok((claim.entries().len() + claim.undecodable()) as u64),
            Ok(false) => Ok(0),
            Err(e) => {
                self.held = Some(claim);
                Err(e)
            }
        }
    }

    /// Drains until the queue has nothing unclaimed left; returns the sum of what it did.
    ///
    /// # Errors
    /// As [`Drainer::drain_once`].
    ///
    /// ```no_run
    /// # let mut d: fnmetrics::Drainer = unimplemented!();
    /// d.drain_all()?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn drain_all(&mut self) -> Result<DrainOutcome, Error> {
        let mut total = DrainOutcome::default();
        loop {
            let o = self.drain_once()?;
            if o.is_idle() {
                return Ok(total);
            }
            total += o;
        }
    }

    /// Whether this drainer (one of its lanes included) holds a batch it could not store.
    fn holds(&self) -> bool {
        self.held.is_some() || self.lanes.iter().any(Drainer::holds)
    }
}

impl<Q: ClaimQueue, S: BatchStore> Drain for Drainer<Q, S> {
    fn drain_once(&mut self) -> Result<DrainOutcome, Error> {
        Drainer::drain_once(self)
    }

    fn connect(&mut self) -> Result<(), Error> {
        self.connect_both()
    }

    fn hand_back(&mut self) -> Result<u64, Error> {
        Drainer::hand_back(self)
    }

    fn canceller(&self) -> Option<Canceller> {
        let all: Vec<Canceller> = std::iter::once(self)
            .chain(&self.lanes)
            .flat_map(|d| std::iter::once(&d.store).chain(&d.writers))
            .filter_map(S::canceller)
            .collect();
        if all.is_empty() {
            return None;
        }
        Some(Canceller::new(move || {
            for c in &all {
                c.cancel();
            }
        }))
    }
}

impl<Q: ClaimQueue, S: BatchStore> Drop for Drainer<Q, S> {
    /// Hands back a batch it still holds (one call to the queue, within its I/O timeout), so
    /// that a drainer that stops never makes its entries wait for a lease.
    fn drop(&mut self) {
        if self.holds()
            && let Err(e) = self.hand_back()
        {
            log::warn!(
                target: "fnmetrics",
                "a stopping drainer could not hand its batch back; another drainer takes it \
                 over when the lease runs out: {e}"
            );
        }
    }
}

/// A scoped thread's result, a panic made an error.
fn joined<T>(r: std::thread::Result<Result<T, Error>>, what: &str) -> Result<T, Error> {
    r.unwrap_or_else(|_| Err(Error::new(ErrorKind::Server, what)))
}

/// The maintenance thread: a run now, then one every `every`, until the drainer is gone. Errors
/// are logged and the next run tries again; a store laid out by a newer build
/// ([`ErrorKind::Superseded`]) leaves maintenance to newer drainers.
fn maintain_until_stopped<S: BatchStore>(mut store: S, every: Duration, stopped: &Receiver<()>) {
    loop {
        match store.maintain() {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Superseded => return,
            Err(e) => log::warn!(target: "fnmetrics", "maintenance failed: {e}"),
        }
        if !matches!(stopped.recv_timeout(every), Err(RecvTimeoutError::Timeout)) {
            return;
        }
    }
}
