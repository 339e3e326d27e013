//! Where the keys live and how long to wait for the server.

use fnmetrics_core::{Error, ErrorKind};
#[cfg(feature = "tls")]
use std::path::PathBuf;
use std::time::Duration;

/// Key names and timeouts shared by [`RedisSink`](crate::RedisSink),
/// [`RedisQueue`](crate::RedisQueue) and [`RedisReader`](crate::RedisReader).
///
/// The full keys are `{key_prefix}{entries_key}` for the entry list and
/// `{key_prefix}{aggregate_prefix}{func_name}` for a function's aggregates; the bookkeeping keys
/// of fnmetrics itself (flush ids, the function set, claims) are `{key_prefix}fnmetrics:…`.
///
/// ```
/// use fnmetrics::redis::RedisOptions;
/// use std::time::Duration;
///
/// let o = RedisOptions::default()
///     .with_key_prefix("shop:")
///     .with_io_timeout(Duration::from_secs(3));
/// assert_eq!(o.entries_key, "metrics_list");
/// assert_eq!(o.aggregate_prefix, "app:metrics:");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Put in front of every key (default empty).
    pub key_prefix: String,
    /// The list of per-call entries (default `metrics_list`).
    pub entries_key: String,
    /// Put in front of a function's name to make its aggregate hash (default `app:metrics:`).
    pub aggregate_prefix: String,
    /// How long connecting (TCP connect, AUTH, PING) may take (default 2 s).
    pub connect_timeout: Duration,
    /// How long one command may wait for its reply (default 10 s). After a timeout the
    /// connection is dropped and a new one is made on the next call.
    pub io_timeout: Duration,
    /// How long a flush id is remembered, which bounds how late a retry of an applied flush is
    /// still recognised (default 1 hour). A retry follows a failed attempt within the flusher's
    /// longest backoff (seconds), so an hour is a wide margin; each remembered flush costs about
    /// 100 bytes of Redis memory, which at 100 flushes a second is about 36 MB.
    pub flush_id_ttl: Duration,
    /// The most dead letters kept in `{key_prefix}fnmetrics:dead`; past it the oldest go, and
    /// are counted in `{key_prefix}fnmetrics:dead:evicted` (default 100 000).
    pub dead_letter_cap: u64,
    /// A PEM file of CA certificates that a `rediss://` server's certificate must chain to,
    /// instead of the system's roots (default `None`: the system's roots). The file is read
    /// once, when the sink, queue or reader connects. Only with the `tls` feature (on by
    /// default).
    ///
    /// A `rediss://` URL always checks the server's certificate and that it names the URL's
    /// host; the `#insecure` fragment of redis-rs is refused with [`ErrorKind::InvalidUrl`].
    #[cfg(feature = "tls")]
    pub ca_file: Option<PathBuf>,
    /// Whether a node of a Redis Cluster is used as one (default [`ClusterMode::Auto`]).
    pub cluster: ClusterMode,
    /// On a Redis Cluster, how many shards the entries and aggregates are spread over (default
    /// `None`: the count stored in the cluster, or 8 for the first process to use it). Every
    /// process must agree: another count than the stored one is refused.
    pub shards: Option<u16>,
    /// On a Redis Cluster, how many replicas of a shard's primary must have a flush before it
    /// counts as delivered (`WAIT n`, in the flush's round trip): `None` (the default) waits
    /// for one when the primary has a replica, so that a failover keeps what was delivered;
    /// `Some(0)` never waits; `Some(n)` requires n, and a flush fewer replicas acknowledge
    /// within a second is retried (and applied once).
    pub replica_acks: Option<usize>,
}

/// What a sink, queue or reader does when its URL names a node of a Redis Cluster
/// (`cluster_enabled:1`).
///
/// ```
/// use fnmetrics::redis::{ClusterMode, RedisOptions};
/// let o = RedisOptions::default().with_cluster(ClusterMode::Standalone);
/// assert_eq!(o.cluster, ClusterMode::Standalone);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterMode {
    /// Use the cluster: keys spread over hash-tagged shards, each call routed to the primary of
    /// its shard's slot (see `docs/cluster.md`).
    #[default]
    Auto,
    /// Refuse it with [`ErrorKind::InvalidConfig`]: only a standalone Redis will do.
    Standalone,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            key_prefix: String::new(),
            entries_key: "metrics_list".into(),
            aggregate_prefix: "app:metrics:".into(),
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(10),
            flush_id_ttl: Duration::from_secs(3600),
            dead_letter_cap: 100_000,
            #[cfg(feature = "tls")]
            ca_file: None,
            cluster: ClusterMode::Auto,
            shards: None,
            replica_acks: None,
        }
    }
}

impl RedisOptions {
    /// Sets [`key_prefix`](Self::key_prefix).
    ///
    /// ```
    /// let o = fnmetrics::redis::RedisOptions::default().with_key_prefix("test:");
    /// assert_eq!(o.key_prefix, "test:");
    /// ```
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`entries_key`](Self::entries_key).
    ///
    /// ```
    /// let o = fnmetrics::redis::RedisOptions::default().with_entries_key("calls");
    /// assert_eq!(o.entries_key, "calls");
    /// ```
    pub fn with_entries_key(mut self, key: impl Into<String>) -> Self {
        self.entries_key = key.into();
        self
    }

    /// Sets [`aggregate_prefix`](Self::aggregate_prefix).
    ///
    /// ```
    /// let o = fnmetrics::redis::RedisOptions::default().with_aggregate_prefix("agg:");
    /// assert_eq!(o.aggregate_prefix, "agg:");
    /// ```
    pub fn with_aggregate_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.aggregate_prefix = prefix.into();
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let o = fnmetrics::redis::RedisOptions::default()
    ///     .with_connect_timeout(Duration::from_millis(500));
    /// assert_eq!(o.connect_timeout, Duration::from_millis(500));
    /// ```
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`io_timeout`](Self::io_timeout).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let o = fnmetrics::redis::RedisOptions::default().with_io_timeout(Duration::from_secs(1));
    /// assert_eq!(o.io_timeout, Duration::from_secs(1));
    /// ```
    pub fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Sets [`flush_id_ttl`](Self::flush_id_ttl).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let o = fnmetrics::redis::RedisOptions::default()
    ///     .with_flush_id_ttl(Duration::from_secs(24 * 3600));
    /// assert_eq!(o.flush_id_ttl, Duration::from_secs(86_400));
    /// ```
    pub fn with_flush_id_ttl(mut self, ttl: Duration) -> Self {
        self.flush_id_ttl = ttl;
        self
    }

    /// Sets [`dead_letter_cap`](Self::dead_letter_cap).
    ///
    /// ```
    /// let o = fnmetrics::redis::RedisOptions::default().with_dead_letter_cap(1_000);
    /// assert_eq!(o.dead_letter_cap, 1_000);
    /// ```
    pub fn with_dead_letter_cap(mut self, cap: u64) -> Self {
        self.dead_letter_cap = cap;
        self
    }

    /// Sets [`cluster`](Self::cluster).
    ///
    /// ```
    /// use fnmetrics::redis::{ClusterMode, RedisOptions};
    /// let o = RedisOptions::default().with_cluster(ClusterMode::Standalone);
    /// assert_eq!(o.cluster, ClusterMode::Standalone);
    /// ```
    pub fn with_cluster(mut self, mode: ClusterMode) -> Self {
        self.cluster = mode;
        self
    }

    /// Sets [`shards`](Self::shards).
    ///
    /// ```
    /// let o = fnmetrics::redis::RedisOptions::default().with_shards(16);
    /// assert_eq!(o.shards, Some(16));
    /// ```
    pub fn with_shards(mut self, n: u16) -> Self {
        self.shards = Some(n);
        self
    }

    /// Sets [`replica_acks`](Self::replica_acks).
    ///
    /// ```
    /// let o = fnmetrics::redis::RedisOptions::default().with_replica_acks(0);
    /// assert_eq!(o.replica_acks, Some(0));
    /// ```
    pub fn with_replica_acks(mut self, n: usize) -> Self {
        self.replica_acks = Some(n);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::new(ErrorKind::InvalidConfig, m));
        if self.entries_key.is_empty() {
            return bad("entries_key must not be empty");
        }
        if self.connect_timeout.is_zero() || self.io_timeout.is_zero() {
            return bad("connect_timeout and io_timeout must be longer than zero");
        }
        if self.flush_id_ttl.as_secs() == 0 {
            return bad("flush_id_ttl must be at least one second");
        }
        if self.dead_letter_cap == 0 {
            return bad("dead_letter_cap must be at least 1");
        }
        if self.shards == Some(0) || self.shards.is_some_and(|n| n > 1024) {
            return bad("shards must be between 1 and 1024");
        }
        Ok(())
    }

    /// Sets [`ca_file`](Self::ca_file): check a `rediss://` server's certificate against the CA
    /// certificates in this PEM file instead of the system's roots (for a private CA).
    ///
    /// Connecting fails with [`ErrorKind::InvalidConfig`] if the file cannot be read, holds no
    /// PEM certificate, or the URL is not `rediss://`; with [`ErrorKind::Auth`] if the server's
    /// certificate does not chain to these CAs or does not name the URL's host.
    ///
    /// ```
    /// use fnmetrics::redis::RedisOptions;
    ///
    /// let o = RedisOptions::default().with_ca_file("/etc/redis/tls/ca.pem");
    /// assert_eq!(o.ca_file.as_deref(), Some(std::path::Path::new("/etc/redis/tls/ca.pem")));
    /// ```
    ///
    /// ```no_run
    /// use fnmetrics::redis::{RedisOptions, RedisSink};
    ///
    /// let opts = RedisOptions::default().with_ca_file("/etc/redis/tls/ca.pem");
    /// let sink = RedisSink::connect("rediss://:secret@redis.internal:6380/", opts)?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }
}
