//! The user-facing flusher: [`Flusher::builder`] sets it up, [`FlusherBuilder::start`] starts it.
//! No URL keeps everything in-process; a Redis URL adds stage 1; a PostgreSQL URL as well adds
//! stage 2 (Redis → PostgreSQL) on a thread of its own; `.sink(..)` and `.drain(..)` plug in
//! custom stages.

use crate::secret::Url;
use fnmetrics_core::{Drain, Sink};
use fnmetrics_core::{EntryMode, Error, ErrorKind, FlushStats, FlusherConfig, Health, Source};
use std::sync::Arc;
use std::time::Duration;

/// Where a [`Flusher`] sends metrics.
///
/// ```
/// let f = fnmetrics::Flusher::builder().start()?;
/// assert_eq!(f.mode(), fnmetrics::Mode::InProcess);
/// assert_eq!(f.mode().to_string(), "in-process");
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Nothing leaves the process: read with [`crate::get`] and [`crate::snapshot_all`].
    InProcess,
    /// Stage 1 into Redis; no stage 2.
    Redis,
    /// Stage 1 into Redis, and this process runs stage 2 into PostgreSQL.
    RedisAndPostgres,
    /// Stage 1 into Redis; stage 2 into PostgreSQL is run by other processes
    /// ([`FlusherBuilder::run_drain`]`(false)`).
    RedisDrainedElsewhere,
    /// A custom stage 1 ([`FlusherBuilder::sink`]), with or without a custom stage 2.
    Custom,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::InProcess => "in-process",
            Mode::Redis => "redis",
            Mode::RedisAndPostgres => "redis+postgres",
            Mode::RedisDrainedElsewhere => "redis+postgres (drained elsewhere)",
            Mode::Custom => "custom",
        })
    }
}

/// The running flusher: keep it alive as long as metrics should leave the process. Dropping it
/// flushes what is pending (stage 1 first, then stage 2 in the time left, all within
/// [`FlusherBuilder::shutdown_timeout`] + 1 s) and stops its threads.
///
/// ```
/// // No URL: the embedded, in-process default.
/// let flusher = fnmetrics::Flusher::builder().start()?;
/// assert_eq!(flusher.mode(), fnmetrics::Mode::InProcess);
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Debug)]
pub struct Flusher {
    inner: Option<fnmetrics_core::FlusherThreads>,
    mode: Mode,
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    targets: Targets,
}

impl Flusher {
    /// A builder with the defaults: no Redis, no PostgreSQL, `batch_size` 10 000,
    /// `flush_interval` 5 s, `max_pending_entries` 1 000 000, `shutdown_timeout` 10 s, the
    /// binary's name as the service and the machine's as the host.
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().batch_size(500);
    /// # drop(b);
    /// ```
    pub fn builder() -> FlusherBuilder {
        FlusherBuilder {
            redis: None,
            postgres: None,
            config: FlusherConfig::default(),
            key_prefix: String::new(),
            table: None,
            ca_file: None,
            run_drain: true,
            claim_size: 50_000,
            writers: 1,
            lease: Duration::from_secs(60),
            sink: None,
            drain: None,
        }
    }
}

/// Settings of the flusher; [`FlusherBuilder::start`] starts it. `Debug` shows URLs with their
/// passwords replaced by `***`.
///
/// The setters of a stage exist only with its crate features (both on by default):
/// [`redis`](Self::redis), [`key_prefix`](Self::key_prefix) and [`ca_file`](Self::ca_file) with
/// `redis`; [`postgres`](Self::postgres), [`table`](Self::table), [`run_drain`](Self::run_drain),
/// [`lease`](Self::lease), [`writers`](Self::writers) and [`claim_size`](Self::claim_size) with
/// `redis` and `postgres`.
#[must_use = "a builder does nothing until start() is called"]
pub struct FlusherBuilder {
    redis: Option<Url>,
    postgres: Option<Url>,
    config: FlusherConfig,
    key_prefix: String,
    table: Option<String>,
    ca_file: Option<std::path::PathBuf>,
    run_drain: bool,
    // Read only where stage 2 can run: with both features.
    #[cfg_attr(not(all(feature = "redis", feature = "postgres")), allow(dead_code))]
    claim_size: usize,
    #[cfg_attr(not(all(feature = "redis", feature = "postgres")), allow(dead_code))]
    writers: usize,
    #[cfg_attr(not(all(feature = "redis", feature = "postgres")), allow(dead_code))]
    lease: Duration,
    sink: Option<Box<dyn Sink>>,
    drain: Option<Box<dyn Drain>>,
}

impl std::fmt::Debug for FlusherBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlusherBuilder")
            .field("redis", &self.redis)
            .field("postgres", &self.postgres)
            .field("config", &self.config)
            .field("key_prefix", &self.key_prefix)
            .field("table", &self.table)
            .field("ca_file", &self.ca_file)
            .field("run_drain", &self.run_drain)
            .field("sink", &self.sink.as_ref().map(|_| "custom"))
            .field("drain", &self.drain.as_ref().map(|_| "custom"))
            .finish_non_exhaustive()
    }
}

impl FlusherBuilder {
    /// Sends entries and aggregates to the Redis server at `url` (`redis://host:port/db`).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().redis("redis://127.0.0.1:6379/");
    /// # drop(b);
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis = Some(Url::new(url.into()));
        self
    }

    /// Moves entries from Redis into the PostgreSQL database at `url` (needs [`Self::redis`]).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder()
    ///     .redis("redis://127.0.0.1/")
    ///     .postgres("postgres://postgres@127.0.0.1/metrics");
    /// # drop(b);
    /// ```
    #[cfg(all(feature = "redis", feature = "postgres"))]
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.postgres = Some(Url::new(url.into()));
        self
    }

    /// Flush when this many entries are pending (the size limit).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().batch_size(10_000);
    /// # drop(b);
    /// ```
    pub fn batch_size(mut self, n: usize) -> Self {
        self.config.batch_size = n;
        self
    }

    /// Flush at least this often (the time interval).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().flush_interval(std::time::Duration::from_secs(10));
    /// # drop(b);
    /// ```
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.config.flush_interval = d;
        self
    }

    /// Keep at most `n` entries in memory; past it new entries are dropped and counted
    /// ([`crate::Snapshot::dropped_entries`]). Aggregates are never dropped.
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().max_pending_entries(1_000_000);
    /// # drop(b);
    /// ```
    pub fn max_pending_entries(mut self, n: usize) -> Self {
        self.config.max_pending_entries = n;
        self
    }

    /// How long dropping the flusher may spend flushing what is pending: stage 1 first, stage 2
    /// in the time left. The drop returns within this plus one second whatever the servers do;
    /// what is not delivered by then is counted as dropped and reported.
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().shutdown_timeout(std::time::Duration::from_secs(3));
    /// # drop(b);
    /// ```
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.config.shutdown_timeout = d;
        self
    }

    /// Which calls make a per-call entry (default: all).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().entries(fnmetrics::EntryMode::ErrorsOnly);
    /// # drop(b);
    /// ```
    pub fn entries(mut self, mode: EntryMode) -> Self {
        self.config.entries = mode;
        self
    }

    /// The service name written with every entry (stored per row; default: the binary's name,
    /// see [`Source::this_process`](crate::sink::Source::this_process)). Not empty, at most
    /// [`MAX_SOURCE_NAME_LEN`](crate::sink::MAX_SOURCE_NAME_LEN) (255) bytes, no control
    /// characters: [`start`](Self::start) checks.
    ///
    /// ```
    /// let flusher = fnmetrics::Flusher::builder().service("checkout").host("web-1").start()?;
    /// # drop(flusher);
    /// let err = fnmetrics::Flusher::builder().service("").start().unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn service(mut self, name: impl Into<Arc<str>>) -> Self {
        let host = self.config.source.host.clone();
        self.config.source = Arc::new(Source::new(name, host));
        self
    }

    /// The host name written with every entry (default: the machine's host name, see
    /// [`Source::this_process`](crate::sink::Source::this_process)). At most
    /// [`MAX_SOURCE_NAME_LEN`](crate::sink::MAX_SOURCE_NAME_LEN) (255) bytes, no control
    /// characters; empty means "not recorded". [`start`](Self::start) checks.
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().host("pod-7f9c");
    /// # drop(b);
    /// let err = fnmetrics::Flusher::builder().host("web\n1").start().unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// ```
    pub fn host(mut self, name: impl Into<Arc<str>>) -> Self {
        let service = self.config.source.service.clone();
        self.config.source = Arc::new(Source::new(service, name));
        self
    }

    /// A prefix for every Redis key (default none: `metrics_list`, `app:metrics:{func_name}`).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().key_prefix("staging:");
    /// # drop(b);
    /// ```
    #[cfg(feature = "redis")]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The PostgreSQL table (default `metrics`).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().table("fn_metrics");
    /// # drop(b);
    /// ```
    #[cfg(all(feature = "redis", feature = "postgres"))]
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = Some(name.into());
        self
    }

    /// Whether this process runs stage 2 (Redis → PostgreSQL) itself (default true when a
    /// PostgreSQL URL is set). Turn it off when dedicated drainers do it.
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().run_drain(false);
    /// # drop(b);
    /// ```
    #[cfg(all(feature = "redis", feature = "postgres"))]
    pub fn run_drain(mut self, yes: bool) -> Self {
        self.run_drain = yes;
        self
    }

    /// A PEM file of CA certificates that the servers' TLS certificates must chain to (a
    /// `rediss://` URL; a PostgreSQL URL with `sslmode=require` or `prefer`), instead of the
    /// system's roots. The certificate must also name the URL's host.
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder()
    ///     .redis("rediss://metrics.internal:6380/")
    ///     .ca_file("/etc/fnmetrics/ca.pem");
    /// # drop(b);
    /// ```
    #[cfg(feature = "redis")]
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// How long a batch that stage 2 claimed is this process's before another drainer may take
    /// it over (default 60 s): after a crash, or a stage 2 stuck past shutdown, its entries wait
    /// this long. Longer than one batch takes to write, with margin.
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().lease(std::time::Duration::from_secs(30));
    /// # drop(b);
    /// ```
    #[cfg(all(feature = "redis", feature = "postgres"))]
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d;
        self
    }

    /// How many PostgreSQL connections stage 2 writes a claim over at once (default 1; as
    /// [`Drainer::writers`](fnmetrics_core::Drainer::writers)): more store a backlog sooner on
    /// a server with cores to spare, at one connection each per process.
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().writers(2);
    /// # drop(b);
    /// ```
    #[cfg(all(feature = "redis", feature = "postgres"))]
    pub fn writers(mut self, n: usize) -> Self {
        self.writers = n.max(1);
        self
    }

    /// The most entries one claim of stage 2 takes from Redis (default 50 000; as
    /// [`Drainer::claim_size`](fnmetrics_core::Drainer::claim_size)). Not to be confused with
    /// [`batch_size`](Self::batch_size), the entries of one flush of stage 1.
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().claim_size(20_000);
    /// # drop(b);
    /// ```
    #[cfg(all(feature = "redis", feature = "postgres"))]
    pub fn claim_size(mut self, n: usize) -> Self {
        self.claim_size = n.max(1);
        self
    }

    /// The first and the longest retry delay after a failed write (doubling, with jitter).
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = fnmetrics::Flusher::builder().backoff(Duration::from_millis(50), Duration::from_secs(5));
    /// # drop(b);
    /// ```
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.config.min_backoff = first;
        self.config.max_backoff = max;
        self
    }

    /// Called with every error the flusher meets, besides its `log` record (default: printed to
    /// stderr when no `log` logger is installed).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().on_error(|e| eprintln!("metrics: {e}"));
    /// # drop(b);
    /// ```
    pub fn on_error(mut self, f: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.config.on_error = Arc::new(f);
        self
    }

    /// How long [`start`](Self::start) waits for the servers' first answers (default 1 s).
    /// An answer that no retry can change (credentials refused, a certificate that does not
    /// verify, an incompatible table) fails the start; a server that is down, starting,
    /// unreachable or busy does not: its stage connects, migrates and retries in the
    /// background while entries wait (in Redis, or in memory within
    /// [`max_pending_entries`](Self::max_pending_entries)).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().connect_wait(std::time::Duration::from_millis(200));
    /// # drop(b);
    /// ```
    pub fn connect_wait(mut self, d: Duration) -> Self {
        self.config.connect_wait = d;
        self
    }

    /// Makes [`start`](Self::start) wait until every stage has connected (and PostgreSQL is
    /// migrated), and fail on any error, a server that is merely down included: today's
    /// behaviour of most clients, for tests and command-line tools (default off).
    ///
    /// ```
    /// let err = fnmetrics::Flusher::builder()
    ///     .redis("redis://127.0.0.1:1/") // nothing listens there
    ///     .fail_fast(true)
    ///     .on_error(|_| {})
    ///     .start()
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::Unavailable);
    /// ```
    pub fn fail_fast(mut self, yes: bool) -> Self {
        self.config.fail_fast = yes;
        self
    }

    /// A custom stage 1 instead of Redis: every flush goes to `sink` (see [`crate::sink`]).
    ///
    /// ```
    /// use fnmetrics::sink::{FlushBatch, Sink};
    /// struct Stdout;
    /// impl Sink for Stdout {
    ///     fn write(&mut self, batch: &FlushBatch) -> Result<(), fnmetrics::Error> {
    ///         println!("{} entries", batch.entries.len());
    ///         Ok(())
    ///     }
    /// }
    /// let flusher = fnmetrics::Flusher::builder().sink(Stdout).start()?;
    /// assert_eq!(flusher.mode(), fnmetrics::Mode::Custom);
    /// flusher.flush()?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// A custom stage 2, run on its own thread after each write of stage 1 and at least every
    /// `flush_interval` (with [`Self::sink`], or instead of the PostgreSQL drainer).
    ///
    /// ```
    /// use fnmetrics::sink::{Drain, DrainOutcome, FlushBatch, Sink};
    /// struct Null;
    /// impl Sink for Null {
    ///     fn write(&mut self, _: &FlushBatch) -> Result<(), fnmetrics::Error> { Ok(()) }
    /// }
    /// impl Drain for Null {
    ///     fn drain_once(&mut self) -> Result<DrainOutcome, fnmetrics::Error> {
    ///         Ok(DrainOutcome::default())
    ///     }
    /// }
    /// let flusher = fnmetrics::Flusher::builder().sink(Null).drain(Null).start()?;
    /// flusher.flush()?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn drain(mut self, drain: impl Drain) -> Self {
        self.drain = Some(Box::new(drain));
        self
    }

    /// Starts the flusher's threads. Each stage connects (and stage 2 migrates the PostgreSQL
    /// schema) in its own thread, retrying with backoff while its server is down, starting,
    /// unreachable or busy; `start` waits at most [`connect_wait`](Self::connect_wait) for
    /// their first answers and fails only on a definitive one. It does no I/O on the calling
    /// thread, so it is safe in async code (it blocks for at most `connect_wait`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] for bad settings (among them a [`service`](Self::service) or
    /// [`host`](Self::host) name that is refused; or a PostgreSQL URL without a Redis URL, a
    /// URL together with a custom sink, or a URL whose crate feature is off),
    /// [`ErrorKind::InvalidUrl`] for a URL that does not parse, [`ErrorKind::Auth`] and
    /// [`ErrorKind::Schema`] (and `InvalidConfig` for a database that does not exist) when a
    /// server answers so within `connect_wait`, [`ErrorKind::AlreadyRunning`] if a flusher
    /// already runs in this process. With [`fail_fast`](Self::fail_fast), any error of the
    /// first connection.
    ///
    /// ```
    /// let err = fnmetrics::Flusher::builder().batch_size(0).start().unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// let err = fnmetrics::Flusher::builder()
    ///     .flush_interval(std::time::Duration::ZERO)
    ///     .start()
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// ```
    pub fn start(mut self) -> Result<Flusher, Error> {
        // Also in-process, where no flusher thread would check them.
        self.config.validate()?;
        let bad = |m: &str| Err(Error::new(ErrorKind::InvalidConfig, m));
        if let Some(sink) = self.sink.take() {
            if self.redis.is_some() || self.postgres.is_some() {
                return bad("a custom sink replaces Redis and PostgreSQL: give it no URL");
            }
            let drain = self.drain.take();
            let inner = fnmetrics_core::FlusherThreads::start(self.config, sink, drain)?;
            return Ok(Flusher {
                inner: Some(inner),
                mode: Mode::Custom,
                targets: Targets::default(),
            });
        }
        match (&self.redis, &self.postgres) {
            (None, None) if self.drain.is_some() => {
                bad("a custom drain needs a stage 1: .sink(..) or .redis(url)")
            }
            (None, None) => Ok(Flusher {
                inner: None,
                mode: Mode::InProcess,
                targets: Targets::default(),
            }),
            (None, Some(_)) => bad("PostgreSQL is fed from Redis: set .redis(url) as well"),
            (Some(_), _) => self.start_pipeline(),
        }
    }

    #[cfg(feature = "redis")]
    fn start_pipeline(mut self) -> Result<Flusher, Error> {
        let targets = Targets {
            redis: self.redis.clone(),
            postgres: self.postgres.clone(),
            key_prefix: self.key_prefix.clone(),
            table: self.table.clone(),
            ca_file: self.ca_file.clone(),
            #[cfg(feature = "postgres")]
            reader: Default::default(),
        };
        // Nothing connects here: the stages do, in their threads.
        let sink = fnmetrics_sink_redis::RedisSink::new(targets.redis()?, targets.redis_options())?;
        let (drain, mode) = match self.drain.take() {
            Some(custom) => (Some(custom), Mode::Redis),
            None => self.stage2(&targets)?,
        };
        let inner =
            fnmetrics_core::FlusherThreads::start(self.config.clone(), Box::new(sink), drain)?;
        Ok(Flusher {
            inner: Some(inner),
            mode,
            targets,
        })
    }

    /// Stage 2 from the PostgreSQL URL: none without one, none here (but a probe) when other
    /// processes drain, the drainer otherwise.
    #[cfg(all(feature = "redis", feature = "postgres"))]
    fn stage2(&self, t: &Targets) -> Result<(Option<Box<dyn Drain>>, Mode), Error> {
        Ok(match &self.postgres {
            None => (None, Mode::Redis),
            Some(_) if !self.run_drain => {
                // No stage 2 here, but a bad URL, credentials or schema still fail the start.
                self.probe_postgres(t)?;
                (None, Mode::RedisDrainedElsewhere)
            }
            Some(_) => (Some(self.drainer(t)?), Mode::RedisAndPostgres),
        })
    }

    /// Connects to PostgreSQL once on a thread of its own (migrating), waiting for the answer
    /// as the stages' first answers are waited for; fails on a definitive one.
    #[cfg(all(feature = "redis", feature = "postgres"))]
    fn probe_postgres(&self, t: &Targets) -> Result<(), Error> {
        let (url, options) = (t.postgres()?.to_owned(), t.postgres_options());
        let mut sink = fnmetrics_sink_postgres::PostgresSink::new(&url, options)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("fnmetrics-probe".into())
            .spawn(move || {
                let _ = tx.send(sink.ensure_connected());
            })
            .map_err(|e| Error::with_source(ErrorKind::Unavailable, "cannot spawn a thread", e))?;
        let answer = if self.config.fail_fast {
            rx.recv().ok()
        } else {
            rx.recv_timeout(self.config.connect_wait).ok()
        };
        match answer {
            Some(Err(e)) if self.config.fail_fast || e.kind().fails_start() => Err(e),
            Some(Err(e)) => {
                self.config.report(&e);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    #[cfg(not(feature = "redis"))]
    fn start_pipeline(self) -> Result<Flusher, Error> {
        Err(Error::new(
            ErrorKind::InvalidConfig,
            "a Redis URL was given but fnmetrics was built without its `redis` feature",
        ))
    }

    #[cfg(all(feature = "redis", feature = "postgres"))]
    fn drainer(&self, t: &Targets) -> Result<Box<dyn Drain>, Error> {
        let drainer = crate::Drainer::new(
            fnmetrics_sink_redis::RedisQueue::new(t.redis()?, t.redis_options())?,
            fnmetrics_sink_postgres::PostgresSink::new(t.postgres()?, t.postgres_options())?,
        );
        Ok(Box::new(
            drainer
                .claim_size(self.claim_size)
                .lease(self.lease)
                .writers(self.writers),
        ))
    }

    /// Without the `postgres` feature there is no PostgreSQL URL to drain into.
    #[cfg(all(feature = "redis", not(feature = "postgres")))]
    fn stage2(&self, _: &Targets) -> Result<(Option<Box<dyn Drain>>, Mode), Error> {
        Ok((None, Mode::Redis))
    }
}

/// Where the flusher writes, for its read methods.
#[derive(Clone, Debug, Default)]
#[cfg_attr(not(all(feature = "redis", feature = "postgres")), allow(dead_code))]
struct Targets {
    redis: Option<Url>,
    postgres: Option<Url>,
    key_prefix: String,
    table: Option<String>,
    ca_file: Option<std::path::PathBuf>,
    /// The reader of windows and series, shared by clones: one connection, opened on the first
    /// read (and again only when it broke), never migrating.
    #[cfg(feature = "postgres")]
    reader: std::sync::Arc<std::sync::Mutex<Option<fnmetrics_sink_postgres::PostgresReader>>>,
}

#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
impl Targets {
    #[cfg(feature = "redis")]
    fn redis(&self) -> Result<&str, Error> {
        Ok(self
            .redis
            .as_ref()
            .ok_or_else(|| not_configured("Redis"))?
            .expose())
    }

    #[cfg(feature = "postgres")]
    fn postgres(&self) -> Result<&str, Error> {
        Ok(self
            .postgres
            .as_ref()
            .ok_or_else(|| not_configured("PostgreSQL"))?
            .expose())
    }

    #[cfg(feature = "redis")]
    fn redis_options(&self) -> fnmetrics_sink_redis::RedisOptions {
        let o =
            fnmetrics_sink_redis::RedisOptions::default().with_key_prefix(self.key_prefix.clone());
        #[cfg(feature = "tls")]
        let o = match &self.ca_file {
            Some(ca) => o.with_ca_file(ca.clone()),
            None => o,
        };
        o
    }

    #[cfg(feature = "redis")]
    fn fleet(&self, name: &str) -> Result<Option<crate::Snapshot>, Error> {
        fnmetrics_sink_redis::RedisReader::connect(self.redis()?, self.redis_options())?.get(name)
    }

    #[cfg(feature = "postgres")]
    fn window(
        &self,
        query: &fnmetrics_sink_postgres::Query,
    ) -> Result<Vec<(String, fnmetrics_sink_postgres::WindowStats)>, Error> {
        self.with_reader(|r| r.window(query))
    }

    #[cfg(feature = "postgres")]
    fn series(
        &self,
        query: &fnmetrics_sink_postgres::Query,
    ) -> Result<Vec<(String, Vec<fnmetrics_sink_postgres::Point>)>, Error> {
        self.with_reader(|r| r.series(query))
    }

    /// Runs `f` on the shared reader, making it on first use.
    #[cfg(feature = "postgres")]
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut fnmetrics_sink_postgres::PostgresReader) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut slot = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let reader = match &mut *slot {
            Some(r) => r,
            None => slot.insert(fnmetrics_sink_postgres::PostgresReader::new(
                self.postgres()?,
                self.postgres_options(),
            )?),
        };
        f(reader)
    }

    #[cfg(feature = "postgres")]
    fn postgres_options(&self) -> fnmetrics_sink_postgres::PostgresOptions {
        let mut o = fnmetrics_sink_postgres::PostgresOptions::default();
        if let Some(t) = &self.table {
            o = o.with_table(t.clone());
        }
        if let Some(ca) = &self.ca_file {
            o = o.with_ca_file(ca.clone());
        }
        o
    }
}

#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
fn not_configured(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidConfig,
        format!("no {what} URL was given to this flusher"),
    )
}

impl Flusher {
    /// Flushes everything recorded so far to Redis, then (if this process drains) moves what
    /// Redis holds into PostgreSQL; returns when done. In-process mode: does nothing.
    ///
    /// # Errors
    /// The first error a stage met; what failed stays pending and is retried in the background.
    ///
    /// ```
    /// fnmetrics::Flusher::builder().start()?.flush()?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn flush(&self) -> Result<(), Error> {
        match &self.inner {
            Some(g) => g.flush(),
            None => Ok(()),
        }
    }

    /// What the flusher has done so far.
    ///
    /// ```
    /// let g = fnmetrics::Flusher::builder().start()?;
    /// assert_eq!(g.stats().flushes, 0);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn stats(&self) -> FlushStats {
        self.inner.as_ref().map(|g| g.stats()).unwrap_or_default()
    }

    /// How each stage stands with its server: connected, set up (PostgreSQL migrated), since
    /// when it has been retrying and why. Reads memory only: cheap, and safe in async code.
    ///
    /// ```
    /// let f = fnmetrics::Flusher::builder().start()?;
    /// assert!(f.health().is_ready()); // in-process: nothing to connect to
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn health(&self) -> Health {
        self.inner.as_ref().map(|g| g.health()).unwrap_or_default()
    }

    /// The fleet-wide metrics of function `name`: the sum over every process that flushed to this
    /// flusher's Redis (read now, so it includes what this process flushed last). It blocks on
    /// Redis (within its timeouts): in async code, use [`Flusher::fleet_async`].
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] without a Redis URL; the reader's connection errors.
    ///
    /// ```
    /// let g = fnmetrics::Flusher::builder().start()?;
    /// assert_eq!(g.fleet("app::f").unwrap_err().kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    #[cfg(feature = "redis")]
    pub fn fleet(&self, name: &str) -> Result<Option<crate::Snapshot>, Error> {
        self.targets.fleet(name)
    }

    /// [`Flusher::fleet`] for async code: the read runs on a thread of its own, and the future
    /// (which any executor can await) resolves to its result.
    ///
    /// # Errors
    /// As [`Flusher::fleet`].
    ///
    /// ```
    /// # pollster::block_on(async {
    /// let g = fnmetrics::Flusher::builder().start()?;
    /// let err = g.fleet_async("app::f").await.unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// # Ok::<(), fnmetrics::Error>(())
    /// # }).unwrap();
    /// ```
    #[cfg(feature = "redis")]
    pub fn fleet_async(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<Option<crate::Snapshot>, Error>> + Send + 'static + use<>
    {
        let (t, name) = (self.targets.clone(), name.to_owned());
        crate::blocking::on_thread("fnmetrics-read", move || t.fleet(&name))
    }

    /// Each function's calls over `query`'s range (calls, errors, mean, p50, p99, min, max),
    /// from this flusher's PostgreSQL tables (see
    /// [`PostgresReader::window`](fnmetrics_sink_postgres::PostgresReader::window): a query of
    /// one function reads one row, zeros where it has no calls). It blocks on PostgreSQL
    /// (within its timeouts): in async code, use [`Flusher::window_async`].
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] without a PostgreSQL URL, or for a query without a time
    /// range; the connection's errors.
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::Duration;
    /// let g = fnmetrics::Flusher::builder().start()?;
    /// let q = Query::function("app::f").last(Duration::from_secs(60));
    /// let err = g.window(&q).unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    #[cfg(feature = "postgres")]
    pub fn window(
        &self,
        query: &fnmetrics_sink_postgres::Query,
    ) -> Result<Vec<(String, fnmetrics_sink_postgres::WindowStats)>, Error> {
        self.targets.window(query)
    }

    /// [`Flusher::window`] for async code: the read runs on a thread of its own, and the future
    /// (which any executor can await) resolves to its result.
    ///
    /// # Errors
    /// As [`Flusher::window`].
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::Duration;
    /// # pollster::block_on(async {
    /// let g = fnmetrics::Flusher::builder().start()?;
    /// let q = Query::function("app::f").last(Duration::from_secs(60));
    /// let err = g.window_async(&q).await.unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// # Ok::<(), fnmetrics::Error>(())
    /// # }).unwrap();
    /// ```
    #[cfg(feature = "postgres")]
    pub fn window_async(
        &self,
        query: &fnmetrics_sink_postgres::Query,
    ) -> impl std::future::Future<
        Output = Result<Vec<(String, fnmetrics_sink_postgres::WindowStats)>, Error>,
    >
           + Send
           + 'static
           + use<> {
        let (t, query) = (self.targets.clone(), query.clone());
        crate::blocking::on_thread("fnmetrics-read", move || t.window(&query))
    }

    /// Each function's points every `query`'s step over its range (calls, errors, mean, p50,
    /// p99, max), from this flusher's PostgreSQL tables: the rollups where the step allows (see
    /// [`PostgresReader::series`](fnmetrics_sink_postgres::PostgresReader::series)). It blocks
    /// on PostgreSQL (within its timeouts): in async code, use [`Flusher::series_async`].
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] without a PostgreSQL URL, for a query without a time range
    /// or a step, a zero step, or too many points; the connection's errors.
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::Duration;
    /// let g = fnmetrics::Flusher::builder().start()?;
    /// let q = Query::function("app::f").last(Duration::from_secs(3600)).every(Duration::from_secs(60));
    /// let err = g.series(&q).unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    #[cfg(feature = "postgres")]
    pub fn series(
        &self,
        query: &fnmetrics_sink_postgres::Query,
    ) -> Result<Vec<(String, Vec<fnmetrics_sink_postgres::Point>)>, Error> {
        self.targets.series(query)
    }

    /// [`Flusher::series`] for async code: the read runs on a thread of its own.
    ///
    /// # Errors
    /// As [`Flusher::series`].
    ///
    /// ```
    /// use fnmetrics::postgres::Query;
    /// use std::time::Duration;
    /// # pollster::block_on(async {
    /// let g = fnmetrics::Flusher::builder().start()?;
    /// let q = Query::function("app::f").last(Duration::from_secs(3600)).every(Duration::from_secs(60));
    /// let err = g.series_async(&q).await.unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// # Ok::<(), fnmetrics::Error>(())
    /// # }).unwrap();
    /// ```
    #[cfg(feature = "postgres")]
    pub fn series_async(
        &self,
        query: &fnmetrics_sink_postgres::Query,
    ) -> impl std::future::Future<
        Output = Result<Vec<(String, Vec<fnmetrics_sink_postgres::Point>)>, Error>,
    >
           + Send
           + 'static
           + use<> {
        let (t, query) = (self.targets.clone(), query.clone());
        crate::blocking::on_thread("fnmetrics-read", move || t.series(&query))
    }

    /// Where this flusher sends metrics.
    ///
    /// ```
    /// let f = fnmetrics::Flusher::builder().start()?;
    /// assert_eq!(f.mode(), fnmetrics::Mode::InProcess);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn mode(&self) -> Mode {
        self.mode
    }
}
