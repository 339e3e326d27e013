//! Stage 2: claim a batch in Redis, write it to PostgreSQL in one transaction, then remove it
//! from Redis. A crash at any point loses nothing and doubles nothing: an unacknowledged claim
//! expires and is taken over, and PostgreSQL ignores ids it already has.

use fnmetrics_core::{DrainOutcome, EntryRecord, Error, ErrorKind};
use fnmetrics_sink_postgres::{BatchOutcome, PostgresOptions, PostgresSink, RejectedRow};
use fnmetrics_sink_redis::{Claim, DeadLetter, DeadLetterKind, RedisOptions, RedisQueue};
use std::time::Duration;

/// Moves entries from Redis into PostgreSQL. Any number of drainers, in any processes, can work
/// on one Redis at once; each batch is claimed by one of them.
///
/// The flusher runs one when both URLs are set; a fleet can also run dedicated drainers
/// (`fnmetrics drain`, the command in `cli/`).
///
/// ```no_run
/// use fnmetrics::Drainer;
/// let mut d = Drainer::connect(
///     "redis://127.0.0.1/", Default::default(),
///     "postgres://postgres@127.0.0.1/metrics", Default::default(),
/// )?;
/// let done = d.drain_all()?;
/// println!("{} entries saved, {} set aside", done.moved, done.dead_lettered);
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Debug)]
pub struct Drainer {
    queue: RedisQueue,
    pg: PostgresSink,
    /// More connections a claim's write is spread over (see [`Drainer::writers`]).
    writers: Vec<PostgresSink>,
    batch: usize,
    lease: Duration,
    /// A claim whose write or acknowledgement failed: retried first, so its entries do not wait
    /// for the lease to expire.
    held: Option<Claim>,
    /// How often the maintenance thread runs (`None`: never).
    maintain_every: Option<Duration>,
    /// The maintenance thread's stop signal: dropped with the drainer.
    maintainer: Option<crossbeam_channel::Sender<()>>,
    /// How many claims are drained at once (see [`Drainer::lanes`]).
    lanes_wanted: usize,
    /// The drainers of the other lanes, made at the first drain from this one's settings.
    lanes: Vec<Drainer>,
    /// What lanes moved in a call another lane failed: counted with the next call's outcome.
    carry: DrainOutcome,
}

impl Drainer {
    /// Connects to both servers (running the PostgreSQL migration).
    ///
    /// # Errors
    /// The typed error of either connection (bad URL, unreachable, credentials, schema).
    ///
    /// ```no_run
    /// let d = fnmetrics::Drainer::connect(
    ///     "redis://127.0.0.1/", Default::default(),
    ///     "postgres://postgres@127.0.0.1/metrics", Default::default(),
    /// )?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn connect(
        redis_url: &str,
        redis_options: RedisOptions,
        postgres_url: &str,
        postgres_options: PostgresOptions,
    ) -> Result<Drainer, Error> {
        let mut d = Drainer::new(redis_url, redis_options, postgres_url, postgres_options)?;
        fnmetrics_core::Drain::connect(&mut d)?;
        Ok(d)
    }

    /// Parses both URLs and checks the options, without connecting: the first call connects
    /// (and migrates). For a process that must start while a server is down.
    ///
    /// # Errors
    /// A URL that cannot be parsed, or bad options.
    ///
    /// ```
    /// // Nothing listens on port 1: no error until the first call.
    /// let d = fnmetrics::Drainer::new(
    ///     "redis://127.0.0.1:1/", Default::default(),
    ///     "postgres://postgres@127.0.0.1:1/metrics", Default::default(),
    /// )?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn new(
        redis_url: &str,
        redis_options: RedisOptions,
        postgres_url: &str,
        postgres_options: PostgresOptions,
    ) -> Result<Drainer, Error> {
        Ok(Drainer {
            queue: RedisQueue::new(redis_url, redis_options)?,
            pg: PostgresSink::new(postgres_url, postgres_options)?,
            writers: Vec::new(),
            batch: 50_000,
            lease: Duration::from_secs(60),
            held: None,
            maintain_every: Some(MAINTENANCE_INTERVAL),
            maintainer: None,
            lanes_wanted: 1,
            lanes: Vec::new(),
            carry: DrainOutcome::default(),
        })
    }

    /// The most entries one claim takes (default 50 000).
    ///
    /// ```no_run
    /// # let d: fnmetrics::Drainer = unimplemented!();
    /// let d = d.batch_size(10_000);
    /// ```
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        for lane in &mut self.lanes {
            lane.batch = self.batch;
        }
        self
    }

    /// How many PostgreSQL connections write a claim (default 1): a claim of at least
    /// `n * 1 000` entries is cut into `n` parts written at once, each in a transaction of its
    /// own, on its own connection (made on first use), so that a server with several cores
    /// stores a claim that much sooner. The claim is acknowledged once every part is in. A part
    /// that fails goes again on the first connection (a connection more that cannot be had
    /// slows the drain down, it does not stop it); if that fails too, the whole claim is
    /// written again later, and the parts already in are skipped by their ids (rollups count
    /// each entry once either way). Rollup rows that two parts share are updated one part after
    /// the other, in key order.
    ///
    /// ```no_run
    /// use fnmetrics::Drainer;
    /// let d = Drainer::connect(
    ///     "redis://127.0.0.1/", Default::default(),
    ///     "postgres://postgres@127.0.0.1/app", Default::default(),
    /// )?
    /// .writers(2);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn writers(mut self, n: usize) -> Self {
        self.writers = (1..n.max(1)).map(|_| self.pg.another()).collect();
        for lane in &mut self.lanes {
            lane.writers = (1..n.max(1)).map(|_| lane.pg.another()).collect();
        }
        self
    }

    /// How many claims this drainer works on at once (default 1): each lane claims, writes and
    /// acknowledges its own batches, on connections of its own (Redis, and PostgreSQL as
    /// [`Drainer::writers`] says), in a thread of its own for the call. On a Redis Cluster the
    /// lanes start their claims at different shards, so shards on different primaries are
    /// drained in parallel; on a single Redis they take turns at its one entry list. A call's
    /// outcome sums the lanes'; if a lane fails, the call returns its error (the other lanes'
    /// work is counted with the next call's outcome) and the lane keeps its batch, as one
    /// drainer does.
    ///
    /// ```no_run
    /// use fnmetrics::Drainer;
    /// let d = Drainer::connect(
    ///     "redis://127.0.0.1:7000/", Default::default(),
    ///     "postgres://postgres@127.0.0.1/app", Default::default(),
    /// )?
    /// .lanes(3);
    /// # Ok::<(), fnmetrics::Error>(())
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
            let w = self.lanes.len() + 1;
            let first = u16::try_from(w * 8 / n).unwrap_or(0);
            let lane = Drainer {
                queue: self.queue.another(first),
                pg: self.pg.another(),
                writers: self.writers.iter().map(PostgresSink::another).collect(),
                batch: self.batch,
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

    /// How long a claim is this drainer's before another may take it over (default 60 s).
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

    /// How often this drainer maintains the PostgreSQL partitions (makes those of the coming
    /// days, drops those past retention: [`PostgresSink::maintain`]), on a thread and a
    /// connection of its own, so that neither stage waits for it; `None` never does. Default
    /// every 10 minutes, the first run when the drainer first drains. Of the drainers sharing
    /// a table, one at a time does the work (an advisory lock).
    ///
    /// ```no_run
    /// use fnmetrics::Drainer;
    /// use std::time::Duration;
    /// let d = Drainer::connect(
    ///     "redis://127.0.0.1/", Default::default(),
    ///     "postgres://postgres@127.0.0.1/app", Default::default(),
    /// )?
    /// .maintain_every(Some(Duration::from_secs(3600)));
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn maintain_every(mut self, every: Option<Duration>) -> Self {
        self.maintain_every = every;
        self.maintainer = None; // a running thread stops; the next connect starts one at the new pace
        self
    }

    /// Starts the maintenance thread, if it should run and does not yet.
    fn start_maintenance(&mut self) {
        let (Some(every), None) = (self.maintain_every, &self.maintainer) else {
            return;
        };
        let sink = self.pg.another();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let spawned = std::thread::Builder::new()
            .name("fnmetrics-maintain".into())
            .spawn(move || maintain_until_stopped(sink, every, &stopped));
        match spawned {
            Ok(_) => self.maintainer = Some(stop),
            Err(e) => log::warn!(
                target: "fnmetrics",
                "cannot start the PostgreSQL maintenance thread: {e}"
            ),
        }
    }

    /// Claims one batch, saves it and removes it from Redis; returns how many entries it moved
    /// and set aside (both 0: nothing to move).
    ///
    /// # Errors
    /// A failed claim, write or removal; nothing is lost. The drainer keeps a batch whose write
    /// or removal failed, and the next call tries it first; [`Drainer::hand_back`] gives it
    /// back to Redis for any drainer instead (the flusher does that after every failure, and
    /// dropping the drainer does it too).
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
            return Ok(add(o, std::mem::take(&mut self.carry)));
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
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        Err(Error::new(
                            ErrorKind::Server,
                            "a thread draining a lane panicked",
                        ))
                    })
                })
                .collect();
            (mine, theirs)
        });
        self.lanes = lanes;
        let mut sum = DrainOutcome::default();
        let mut first_error = None;
        for r in std::iter::once(mine).chain(theirs) {
            match r {
                Ok(o) => sum = add(sum, o),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => {
                self.carry = add(std::mem::take(&mut self.carry), sum);
                Err(e)
            }
            None => Ok(add(sum, std::mem::take(&mut self.carry))),
        }
    }

    /// One claim of this lane: claimed, written, acknowledged.
    fn drain_lane(&mut self) -> Result<DrainOutcome, Error> {
        let claim = match self.held.take() {
            Some(claim) => claim,
            // PostgreSQL first (a no-op while connected): a batch is claimed only when it can
            // be written, and a schema newer than this build claims nothing.
            None => match self
                .pg
                .ensure_connected()
                .and_then(|()| self.queue.claim(self.batch, self.lease))?
            {
                Some(claim) => claim,
                None => return Ok(DrainOutcome::default()),
            },
        };
        // Written again after a failure, rows dedupe by id; acknowledged after the lease was
        // taken over, the other drainer's write dedupes too. What cannot be decoded, and rows
        // the database refuses for good, are set aside as dead letters by the same atomic ack.
        let done = self.write(&claim.entries).and_then(|written| {
            let mut dead = claim.dead_letters();
            for r in &written.rejected {
                let Some(entry) = claim.entries.get(r.index) else {
                    continue;
                };
                dead.push(DeadLetter::new(
                    DeadLetterKind::Rejected,
                    rejection_reason(r),
                    entry.encode(),
                ));
            }
            let acked = self.queue.ack_with(&claim, &dead)?;
            if !acked.removed {
                // Taken over and acknowledged by another drainer: it counts these.
                return Ok(DrainOutcome {
                    taken_over: 1,
                    ..DrainOutcome::default()
                });
            }
            Ok(DrainOutcome {
                moved: (claim.entries.len() - written.rejected.len()) as u64,
                dead_lettered: dead.len() as u64,
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
    fn write(&mut self, entries: &[EntryRecord]) -> Result<BatchOutcome, Error> {
        let parts = (entries.len() / MIN_PART).clamp(1, self.writers.len() + 1);
        if parts == 1 {
            return self.pg.write_batch(entries);
        }
        let size = entries.len().div_ceil(parts);
        let chunks: Vec<(usize, &[EntryRecord])> = entries
            .chunks(size)
            .enumerate()
            .map(|(i, c)| (i * size, c))
            .collect();
        let sinks = std::iter::once(&mut self.pg).chain(self.writers.iter_mut());
        let results: Vec<(usize, Result<BatchOutcome, Error>)> = std::thread::scope(|scope| {
            let running: Vec<_> = sinks
                .zip(&chunks)
                .map(|(sink, &(at, chunk))| (at, scope.spawn(move || sink.write_batch(chunk))))
                .collect();
            running
                .into_iter()
                .map(|(at, t)| {
                    let r = t.join().unwrap_or_else(|_| {
                        Err(Error::new(
                            ErrorKind::Server,
                            "a thread writing part of a claim to PostgreSQL panicked",
                        ))
                    });
                    (at, r)
                })
                .collect()
        });
        let mut out = BatchOutcome::default();
        for (at, r) in results {
            let part = match r {
                Ok(part) => part,
                // A part that failed goes again on the first connection, so that a connection
                // more that cannot be had (a server at its connection limit, say) slows the
                // drain down instead of stopping it; if that fails too, the claim is retried.
                Err(_) => {
                    let end = (at + size).min(entries.len());
                    self.pg.write_batch(&entries[at..end])?
                }
            };
            out.inserted += part.inserted;
            out.rejected
                .extend(part.rejected.into_iter().map(|mut row| {
                    row.index += at;
                    row
                }));
        }
        Ok(out)
    }

    /// Gives the batch this drainer still holds (after a failed write or removal) back to
    /// Redis, in one script: its entries go back to the head of the entry list and the claim
    /// is forgotten, so the next claim of any drainer moves them at once instead of after the
    /// lease. Returns how many entries it gave back (0: it held nothing, or another drainer
    /// had taken the claim over after its lease ran out).
    ///
    /// # Errors
    /// Redis could not be reached; the drainer keeps the batch (and retries it, or hands it
    /// back, later).
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
            Ok(true) => Ok((claim.entries.len() + claim.undecodable.len()) as u64),
            Ok(false) => Ok(0),
            Err(e) => {
                self.held = Some(claim);
                Err(e)
            }
        }
    }

    /// Drains until Redis has nothing unclaimed left; returns the sum of what it did.
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
            total.moved += o.moved;
            total.dead_lettered += o.dead_lettered;
            total.dead_letters_evicted += o.dead_letters_evicted;
            total.taken_over += o.taken_over;
        }
    }
}

impl fnmetrics_core::Drain for Drainer {
    fn drain_once(&mut self) -> Result<DrainOutcome, Error> {
        Drainer::drain_once(self)
    }

    /// Connects to Redis and to PostgreSQL, and migrates the schema. Both are tried whatever
    /// the first one answers: a refusal that no retry can change (credentials, a certificate)
    /// must reach `start()` even while the other server is merely down.
    fn connect(&mut self) -> Result<(), Error> {
        let redis = self.queue.ensure_connected();
        let postgres = self.pg.ensure_connected();
        match (redis, postgres) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Err(r), Err(p)) if r.kind().is_transient() && !p.kind().is_transient() => Err(p),
            (Err(r), Err(_)) => Err(r),
        }
    }

    fn hand_back(&mut self) -> Result<u64, Error> {
        Drainer::hand_back(self)
    }

    fn canceller(&self) -> Option<fnmetrics_core::Canceller> {
        let all: Vec<_> = std::iter::once(self)
            .chain(&self.lanes)
            .flat_map(|d| std::iter::once(&d.pg).chain(&d.writers))
            .map(PostgresSink::canceller)
            .collect();
        Some(fnmetrics_core::Canceller::new(move || {
            for c in &all {
                c.cancel();
            }
        }))
    }
}

impl Drop for Drainer {
    /// Hands back a batch it still holds (one Redis call, within the I/O timeout), so that a
    /// drainer that stops never makes its entries wait for a lease.
    fn drop(&mut self) {
        if self.held.is_some() {
            if let Err(e) = self.hand_back() {
                log::warn!(
                    target: "fnmetrics",
                    "a stopping drainer could not hand its batch back; another drainer takes it \
                     over when the lease runs out: {e}"
                );
            }
        }
    }
}

/// How often drainers maintain the partitions by default.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(600);

/// The sum of two outcomes.
fn add(a: DrainOutcome, b: DrainOutcome) -> DrainOutcome {
    let mut o = a;
    o.moved += b.moved;
    o.dead_lettered += b.dead_lettered;
    o.dead_letters_evicted += b.dead_letters_evicted;
    o.taken_over += b.taken_over;
    o
}

/// The fewest entries worth a connection of their own (see [`Drainer::writers`]).
const MIN_PART: usize = 1_000;

/// The maintenance thread: a run now, then one every `every`, until the drainer is gone. Errors
/// are logged and the next run tries again (every wait in a run is bounded by the sink's
/// timeouts); a schema newer than this build leaves maintenance to newer drainers.
fn maintain_until_stopped(
    mut sink: PostgresSink,
    every: Duration,
    stopped: &crossbeam_channel::Receiver<()>,
) {
    loop {
        match sink.maintain() {
            Ok(m) if !m.dropped.is_empty() || m.created > 0 => log::info!(
                target: "fnmetrics",
                "PostgreSQL maintenance: {} partitions made, {} dropped",
                m.created,
                m.dropped.len()
            ),
            Ok(_) => {}
            Err(e) if e.kind() == fnmetrics_core::ErrorKind::Superseded => return,
            Err(e) => log::warn!(target: "fnmetrics", "PostgreSQL maintenance failed: {e}"),
        }
        if !matches!(
            stopped.recv_timeout(every),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        ) {
            return;
        }
    }
}

/// `SQLSTATE: message (detail)`, as a dead letter's reason.
fn rejection_reason(r: &RejectedRow) -> String {
    let mut s = match &r.sqlstate {
        Some(code) => format!("{code}: {}", r.reason),
        None => r.reason.clone(),
    };
    if let Some(d) = &r.detail {
        s.push_str(" (");
        s.push_str(d);
        s.push(')');
    }
    s
}
