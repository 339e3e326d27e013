//! The user-facing flusher builder: no URL keeps everything in-process; a Redis URL adds stage 1;
//! a PostgreSQL URL as well adds stage 2 (Redis → PostgreSQL) in the same background thread.

use fnmetrics_core::{EntryMode, Error, ErrorKind, FlushStats, FlusherConfig};
use std::sync::Arc;
use std::time::Duration;

/// Entry point of the background flusher: `Flusher::builder()`.
///
/// ```
/// // No URL: the embedded, in-process default.
/// let guard = fnmetrics::Flusher::builder().start()?;
/// assert_eq!(guard.mode(), "in-process");
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Debug)]
pub struct Flusher;

impl Flusher {
    /// A builder with the defaults: no Redis, no PostgreSQL, `batch_size` 10 000,
    /// `flush_interval` 5 s, `max_pending_entries` 1 000 000, `shutdown_timeout` 10 s.
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
            run_drain: true,
            drain_batch: 50_000,
            lease: Duration::from_secs(60),
        }
    }
}

/// Settings of the flusher; [`FlusherBuilder::start`] starts it.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until start() is called"]
pub struct FlusherBuilder {
    redis: Option<String>,
    postgres: Option<String>,
    config: FlusherConfig,
    key_prefix: String,
    table: Option<String>,
    run_drain: bool,
    // Read only where stage 2 can run: with both features.
    #[cfg_attr(not(all(feature = "redis", feature = "postgres")), allow(dead_code))]
    drain_batch: usize,
    #[cfg_attr(not(all(feature = "redis", feature = "postgres")), allow(dead_code))]
    lease: Duration,
}

impl FlusherBuilder {
    /// Sends entries and aggregates to the Redis server at `url` (`redis://host:port/db`).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().redis("redis://127.0.0.1:6379/");
    /// # drop(b);
    /// ```
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis = Some(url.into());
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
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.postgres = Some(url.into());
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

    /// How long dropping the guard may spend flushing what is pending.
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

    /// A prefix for every Redis key (default none: `metrics_list`, `app:metrics:{func_name}`).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().key_prefix("staging:");
    /// # drop(b);
    /// ```
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
    pub fn run_drain(mut self, yes: bool) -> Self {
        self.run_drain = yes;
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

    /// Called with every error the flusher meets (default: printed to stderr).
    ///
    /// ```
    /// let b = fnmetrics::Flusher::builder().on_error(|e| eprintln!("metrics: {e}"));
    /// # drop(b);
    /// ```
    pub fn on_error(mut self, f: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.config.on_error = Arc::new(f);
        self
    }

    /// Connects (checking URLs, credentials and the PostgreSQL schema) and starts the thread.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] for bad settings (or a PostgreSQL URL without a Redis URL, or
    /// a URL whose crate feature is off), [`ErrorKind::InvalidUrl`], [`ErrorKind::Unavailable`],
    /// [`ErrorKind::Auth`], [`ErrorKind::Schema`] from the servers,
    /// [`ErrorKind::AlreadyRunning`] if a flusher already runs in this process.
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
    pub fn start(self) -> Result<FlusherGuard, Error> {
        // Also in-process, where no flusher thread would check them.
        self.config.validate()?;
        match (&self.redis, &self.postgres) {
            (None, None) => Ok(FlusherGuard {
                inner: None,
                mode: "in-process",
                targets: Targets::default(),
            }),
            (None, Some(_)) => Err(Error::new(
                ErrorKind::InvalidConfig,
                "PostgreSQL is fed from Redis: set .redis(url) as well",
            )),
            (Some(redis), postgres) => self.start_pipeline(redis, postgres.as_deref()),
        }
    }

    #[cfg(feature = "redis")]
    fn start_pipeline(&self, redis: &str, postgres: Option<&str>) -> Result<FlusherGuard, Error> {
        use fnmetrics_sink_redis::{RedisOptions, RedisSink};
        let options = RedisOptions::default().with_key_prefix(self.key_prefix.clone());
        let sink = RedisSink::connect(redis, options.clone())?;
        let (drain, mode): (Option<Box<dyn fnmetrics_core::Drain>>, _) = match postgres {
            None => (None, "redis"),
            Some(pg) => {
                let drainer = self.drainer(redis, pg, options)?;
                if self.run_drain {
                    (Some(drainer), "redis+postgres")
                } else {
                    (None, "redis+postgres (drained elsewhere)")
                }
            }
        };
        let inner = fnmetrics_core::Flusher::start(self.config.clone(), Box::new(sink), drain)?;
        Ok(FlusherGuard {
            inner: Some(inner),
            mode,
            targets: Targets {
                redis: Some(redis.to_owned()),
                postgres: postgres.map(str::to_owned),
                key_prefix: self.key_prefix.clone(),
                table: self.table.clone(),
            },
        })
    }

    #[cfg(not(feature = "redis"))]
    fn start_pipeline(&self, _: &str, _: Option<&str>) -> Result<FlusherGuard, Error> {
        Err(Error::new(
            ErrorKind::InvalidConfig,
            "a Redis URL was given but fnmetrics was built without its `redis` feature",
        ))
    }

    #[cfg(all(feature = "redis", feature = "postgres"))]
    fn drainer(
        &self,
        redis: &str,
        postgres: &str,
        options: fnmetrics_sink_redis::RedisOptions,
    ) -> Result<Box<dyn fnmetrics_core::Drain>, Error> {
        let mut pg = fnmetrics_sink_postgres::PostgresOptions::default();
        if let Some(t) = &self.table {
            pg = pg.with_table(t.clone());
        }
        let drainer = crate::Drainer::connect(redis, options, postgres, pg)?;
        Ok(Box::new(
            drainer.batch_size(self.drain_batch).lease(self.lease),
        ))
    }

    #[cfg(all(feature = "redis", not(feature = "postgres")))]
    fn drainer(
        &self,
        _: &str,
        _: &str,
        _: fnmetrics_sink_redis::RedisOptions,
    ) -> Result<Box<dyn fnmetrics_core::Drain>, Error> {
        Err(Error::new(
            ErrorKind::InvalidConfig,
            "a PostgreSQL URL was given but fnmetrics was built without its `postgres` feature",
        ))
    }
}

/// Keeps the flusher running; dropping it flushes what is pending (bounded by the shutdown
/// timeout) and stops the thread.
#[derive(Debug)]
pub struct FlusherGuard {
    inner: Option<fnmetrics_core::FlusherGuard>,
    mode: &'static str,
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    targets: Targets,
}

/// Where the flusher writes, for the guard's read methods.
#[derive(Debug, Default)]
#[cfg_attr(not(all(feature = "redis", feature = "postgres")), allow(dead_code))]
struct Targets {
    redis: Option<String>,
    postgres: Option<String>,
    key_prefix: String,
    table: Option<String>,
}

#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
fn not_configured(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidConfig,
        format!("no {what} URL was given to this flusher"),
    )
}

impl FlusherGuard {
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

    /// The fleet-wide metrics of function `name`: the sum over every process that flushed to this
    /// flusher's Redis (read now, so it includes what this process flushed last).
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
        let url = self
            .targets
            .redis
            .as_deref()
            .ok_or_else(|| not_configured("Redis"))?;
        let options = fnmetrics_sink_redis::RedisOptions::default()
            .with_key_prefix(self.targets.key_prefix.clone());
        fnmetrics_sink_redis::RedisReader::connect(url, options)?.get(name)
    }

    /// Function `name`'s calls that ended in `from..to`, from this flusher's PostgreSQL table.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] without a PostgreSQL URL; the connection's errors.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// let g = fnmetrics::Flusher::builder().start()?;
    /// let to = SystemTime::now();
    /// let err = g.window("app::f", to - Duration::from_secs(60), to).unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidConfig);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    #[cfg(feature = "postgres")]
    pub fn window(
        &self,
        name: &str,
        from: std::time::SystemTime,
        to: std::time::SystemTime,
    ) -> Result<fnmetrics_sink_postgres::WindowStats, Error> {
        let url = self
            .targets
            .postgres
            .as_deref()
            .ok_or_else(|| not_configured("PostgreSQL"))?;
        let mut options = fnmetrics_sink_postgres::PostgresOptions::default();
        if let Some(t) = &self.targets.table {
            options = options.with_table(t.clone());
        }
        fnmetrics_sink_postgres::PostgresSink::connect(url, options)?.window(name, from, to)
    }

    /// `"in-process"`, `"redis"` or `"redis+postgres"`.
    ///
    /// ```
    /// assert_eq!(fnmetrics::Flusher::builder().start()?.mode(), "in-process");
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn mode(&self) -> &'static str {
        self.mode
    }
}
