//! [`PostgresSink`]: the connection, the migration, the batch writer and partition maintenance
//! (reads are [`PostgresReader`](crate::PostgresReader)'s).

use crate::error::{classify, kind_of, pg_error, Failure};
use crate::options::{quoted, PostgresOptions};
use crate::partitions::{self, Maintenance};
use crate::rollup::{self, Rollups};
use crate::runtime::outside_runtime;
use crate::schema::{migrate, Migration, RAW_KEY};
use crate::session::{close_off_runtime, is_broken, Endpoint};
use crate::tables::{Level, Span, Tables, DAY};
use crate::types::{duration_to_secs, pg_text, PgTimestamp, PgUuid};
#[cfg(doc)]
use fnmetrics_core::ErrorKind;
use fnmetrics_core::{EntryRecord, Error};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{Client, Statement};
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The raw table's columns as the writer copies them.
const COLUMNS: &str =
    "id, func_name, execution_time, error_occurred, created_at, service, host, weight";

/// The column types of the binary COPY, in [`COLUMNS`] order.
const COPY_TYPES: [Type; 8] = [
    Type::UUID,
    Type::TEXT,
    Type::FLOAT8,
    Type::BOOL,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
];

/// The session's staging table for retries: created once per connection, emptied at every
/// commit.
const STAGING: &str = "pg_temp.fnmetrics_staging";

/// Writes per-call entries to a PostgreSQL table (read them back with
/// [`PostgresReader`](crate::PostgresReader)).
///
/// One sink holds one connection. It is opened by [`PostgresSink::connect`]; when it breaks (the
/// server restarted, the network failed), the failing call returns [`ErrorKind::Unavailable`]
/// and the next call connects again, lazily, running the (idempotent) migration again.
///
/// The sink is `Send`, so it can be moved to a background thread, but not shared: calls take
/// `&mut self`.
///
/// Every call blocks the calling thread on the server (within its timeouts). Inside a tokio
/// runtime, where the sync client it wraps would panic, each call runs on a thread of its own
/// while the caller waits: it works, but it blocks a runtime worker, so async code should
/// call it through `spawn_blocking` (or use the async reads of `fnmetrics::Flusher`).
///
/// ```no_run
/// use fnmetrics::sink::{EntryRecord, IdGen};
/// use fnmetrics::postgres::{PostgresOptions, PostgresSink};
/// use std::time::Duration;
///
/// let mut sink = PostgresSink::connect(
///     "postgres://postgres@127.0.0.1/app",
///     PostgresOptions::default(),
/// )?;
/// let mut ids = IdGen::new();
/// let entry = EntryRecord {
///     id: ids.next_id(1_700_000_000_000),
///     func_name: "app::load_user".into(),
///     execution_time: Duration::from_micros(250),
///     error_occurred: false,
///     created_at_micros: 1_700_000_000_000_000,
///     weight: 1,
///     source: Default::default(),
/// };
/// assert_eq!(sink.write_batch(&[entry.clone()])?.inserted, 1);
/// assert_eq!(sink.write_batch(&[entry])?.inserted, 0); // the same id again: nothing new
/// # Ok::<(), fnmetrics::Error>(())
/// ```
pub struct PostgresSink {
    endpoint: Endpoint,
    conn: Option<Conn>,
    /// The cancel token of the current connection, for [`PostgresSink::canceller`].
    cancel: Arc<Mutex<Option<postgres::CancelToken>>>,
}

/// An open connection with its prepared statements.
struct Conn {
    client: Client,
    /// Whether the connection is TLS.
    tls: bool,
    tables: Tables,
    /// The rollup statements, when batches update the rollups.
    rollups: Option<rollup::Statements>,
    /// What the migration at connect found and did.
    migration: Migration,
    /// Partitions known to be attached (made or seen by this connection).
    partitions: BTreeSet<(Level, Span)>,
    /// Binary `COPY` straight into the raw table: a batch's first attempt (unless the table
    /// refuses `COPY`, as one with row-level security does: then `direct` is false).
    copy: Statement,
    direct: bool,
    /// Binary `COPY` into the staging table: a retry.
    copy_staging: Statement,
    /// `INSERT .. SELECT` from the staging table `ON CONFLICT DO NOTHING`, `RETURNING` the ids
    /// inserted.
    insert_dedupe: Statement,
}

impl fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config is left out: it may hold a password.
        f.debug_struct("PostgresSink")
            .field("options", &self.endpoint.options)
            .field("connected", &self.conn.is_some())
            .field("tls", &self.uses_tls())
            .finish_non_exhaustive()
    }
}

/// What [`PostgresSink::write_batch`] did with a batch: how many rows were new, and which the
/// server refused for good (dead letters).
///
/// `inserted + rejected.len()` is at most the batch's length: rows whose id was already in the
/// table count in neither.
///
/// ```no_run
/// # use fnmetrics::sink::EntryRecord;
/// # use fnmetrics::postgres::{PostgresOptions, PostgresSink};
/// # let mut sink = PostgresSink::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
/// # let batch: Vec<EntryRecord> = Vec::new();
/// let outcome = sink.write_batch(&batch)?;
/// println!("{} new rows", outcome.inserted);
/// let dead_letters: Vec<&EntryRecord> = outcome.rejected.iter().map(|r| &batch[r.index]).collect();
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchOutcome {
    /// Rows written that were not in the table before.
    pub inserted: u64,
    /// Rows the server refused for good, in batch order. Retrying them cannot succeed: set them
    /// aside.
    pub rejected: Vec<RejectedRow>,
}

/// One row of a batch that the server refused for good, and why.
///
/// ```no_run
/// # use fnmetrics::sink::EntryRecord;
/// # use fnmetrics::postgres::{PostgresOptions, PostgresSink};
/// # let mut sink = PostgresSink::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
/// # let batch: Vec<EntryRecord> = Vec::new();
/// for r in sink.write_batch(&batch)?.rejected {
///     // e.g. `new row for relation "metrics" violates check constraint "fast"` (23514)
///     eprintln!("entry {} refused: {} ({})", r.index, r.reason, r.sqlstate.as_deref().unwrap_or("?"));
/// }
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RejectedRow {
    /// The row's position in the batch given to [`PostgresSink::write_batch`].
    pub index: usize,
    /// The server's message.
    pub reason: String,
    /// The server's detail, if it gave one (for a constraint, usually `Failing row contains
    /// (...)` with the row's values).
    pub detail: Option<String>,
    /// The SQLSTATE, e.g. `23514` for a `CHECK` constraint.
    pub sqlstate: Option<String>,
}

impl PostgresSink {
    /// Connects to `url`, migrates the schema (idempotently) and prepares the statements.
    ///
    /// `url` is a `postgres://user:password@host:port/database?options` URL or a libpq-style
    /// `key=value` string. TLS (rustls) is used as its `sslmode` says (`disable`, `prefer`, the
    /// default, or `require`), always verifying the server's certificate: see
    /// [`PostgresOptions::with_ca_file`].
    /// Several processes may connect at once: migrations take an advisory lock and run one after
    /// the other.
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidConfig`]: a bad table name in `options`, or the URL names a database
    ///   that does not exist (an operator must create it; retrying will not help).
    /// - [`ErrorKind::InvalidUrl`]: `url` cannot be parsed.
    /// - [`ErrorKind::Unavailable`]: the server cannot be reached, or is starting or stopping.
    /// - [`ErrorKind::Auth`]: the server refused the role or the password; or TLS failed: the
    ///   server's certificate does not verify against the CA file or the system roots, or
    ///   `sslmode=require` and the server does not offer TLS.
    /// - [`ErrorKind::InvalidConfig`] also: the CA file cannot be read or holds no certificate.
    /// - [`ErrorKind::Schema`]: the table exists with other columns or types than fnmetrics
    ///   writes (the message names the column); it is left unchanged.
    /// - [`ErrorKind::Timeout`]: another process held the migration's advisory lock for longer
    ///   than [`PostgresOptions::migration_lock_timeout`] (the message says so), or a statement
    ///   of the migration hit `statement_timeout` or `lock_timeout`.
    /// - [`ErrorKind::Server`]: any other error from the server.
    ///
    /// ```no_run
    /// use fnmetrics::postgres::{PostgresOptions, PostgresSink};
    /// let sink = PostgresSink::connect(
    ///     "postgres://postgres@127.0.0.1:5432/app?connect_timeout=5",
    ///     PostgresOptions::default().with_table("app_metrics"),
    /// )?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    ///
    /// A URL that cannot be parsed fails before any connection is tried:
    ///
    /// ```
    /// use fnmetrics::postgres::{PostgresOptions, PostgresSink};
    /// let err = PostgresSink::connect("postgres://h:notaport/db", PostgresOptions::default())
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidUrl);
    /// ```
    pub fn connect(url: &str, options: PostgresOptions) -> Result<PostgresSink, Error> {
        let mut sink = PostgresSink::new(url, options)?;
        sink.ensure_connected()?;
        Ok(sink)
    }

    /// Parses `url` and checks the options, without connecting: the first call connects (and
    /// migrates). For a process that must start while PostgreSQL is down.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidUrl`] and [`ErrorKind::InvalidConfig`] as [`PostgresSink::connect`].
    ///
    /// ```
    /// use fnmetrics::postgres::{PostgresOptions, PostgresSink};
    /// // Nothing listens on port 1: no error until the first call.
    /// let sink = PostgresSink::new("postgres://postgres@127.0.0.1:1/app", PostgresOptions::default())?;
    /// assert_eq!(sink.uses_tls(), None);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn new(url: &str, options: PostgresOptions) -> Result<PostgresSink, Error> {
        Ok(PostgresSink {
            endpoint: Endpoint::parse(url, options)?,
            conn: None,
            cancel: Arc::default(),
        })
    }

    /// Another sink to the same server with the same options, not connected yet: for work on a
    /// connection of its own (the drainers' maintenance thread, say).
    ///
    /// ```
    /// use fnmetrics::postgres::{PostgresOptions, PostgresSink};
    /// let sink = PostgresSink::new("postgres://postgres@127.0.0.1:1/app", PostgresOptions::default())?;
    /// let other = sink.another();
    /// assert_eq!(other.options(), sink.options());
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn another(&self) -> PostgresSink {
        PostgresSink {
            endpoint: self.endpoint.clone(),
            conn: None,
            cancel: Arc::default(),
        }
    }

    /// What the migration of the current connection found and did: made the tables, moved a
    /// version 1 table's rows, or found the schema current. `None` while not connected.
    ///
    /// ```no_run
    /// # use fnmetrics::postgres::{Migration, PostgresOptions, PostgresSink};
    /// let sink = PostgresSink::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
    /// assert!(sink.migration().is_some());
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn migration(&self) -> Option<Migration> {
        self.conn.as_ref().map(|c| c.migration)
    }

    /// Connects (and migrates, and prepares) now, if there is no connection yet.
    ///
    /// # Errors
    /// As [`PostgresSink::connect`].
    ///
    /// ```no_run
    /// use fnmetrics::postgres::{PostgresOptions, PostgresSink};
    /// let mut sink = PostgresSink::new("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
    /// sink.ensure_connected()?;
    /// assert!(sink.uses_tls().is_some());
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn ensure_connected(&mut self) -> Result<(), Error> {
        self.with_conn("cannot connect to PostgreSQL", |_| Ok(()))
    }

    /// A handle that cancels the statement this sink is running, from another thread (a
    /// PostgreSQL cancel request, on a connection of its own, within the connect timeout): the
    /// statement fails with SQLSTATE `57014`, the connection stays usable. The flusher uses it
    /// when shutdown reaches its deadline in the middle of a write.
    ///
    /// ```no_run
    /// # use fnmetrics::postgres::{PostgresOptions, PostgresSink};
    /// let mut sink = PostgresSink::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
    /// let cancel = sink.canceller();
    /// std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_secs(5));
    ///     cancel.cancel();
    /// });
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn canceller(&self) -> fnmetrics_core::Canceller {
        let (token, tls) = (self.cancel.clone(), self.endpoint.tls.clone());
        fnmetrics_core::Canceller::new(move || {
            let t = token.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(t) = t {
                let tls = tls.clone();
                let sent = outside_runtime(move || {
                    t.cancel_query(tls)
                        .map_err(|e| pg_error("cannot cancel the PostgreSQL statement", e))
                });
                if let Err(e) = sent {
                    log::warn!(target: "fnmetrics", "{e}");
                }
            }
        })
    }

    /// Whether the open connection uses TLS; `None` when there is none (it broke, and the next
    /// call connects again).
    ///
    /// ```no_run
    /// # use fnmetrics::postgres::{PostgresOptions, PostgresSink};
    /// let sink = PostgresSink::connect(
    ///     "postgres://app@db.example.com/app?sslmode=require",
    ///     PostgresOptions::default().with_ca_file("/etc/fnmetrics/db-ca.pem"),
    /// )?;
    /// assert_eq!(sink.uses_tls(), Some(true));
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn uses_tls(&self) -> Option<bool> {
        self.conn.as_ref().map(|c| c.tls)
    }

    /// The options this sink was made with.
    ///
    /// ```no_run
    /// # use fnmetrics::postgres::{PostgresOptions, PostgresSink};
    /// # let sink = PostgresSink::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
    /// assert_eq!(sink.options().table(), "metrics");
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn options(&self) -> &PostgresOptions {
        &self.endpoint.options
    }

    /// Writes `entries` and returns how many rows were new, and which rows the server refused
    /// for good.
    ///
    /// Normally the whole batch goes in one transaction: the entries are copied (binary `COPY`)
    /// straight into the raw table (PostgreSQL routes each row to its day's partition), the
    /// batch's rollup rows are merged into `T_1m` and `T_1h`, and the transaction commits.
    /// Partitions the batch needs that this connection has not seen are made first, in a short
    /// transaction of their own, so an entry for a day without a partition is never lost.
    ///
    /// Writing the same batch again (after a timeout, a crash, a takeover by another drainer)
    /// changes nothing: the `COPY` hits an id already there (SQLSTATE 23505) and the whole
    /// transaction is rolled back; then the entries are copied into a temporary staging table
    /// and moved with `INSERT .. ON CONFLICT (id, created_at) DO NOTHING RETURNING id`, and only
    /// the rows it returns are rolled up. So each entry counts once in the raw table and once in
    /// each rollup, and a retry of a batch wholly written inserts 0. An empty batch returns at
    /// once, without a round trip. (The first attempt skips the staging table: the rows are
    /// written once instead of twice, which makes stage 2 about as fast as `psql \copy`.)
    ///
    /// No entry value that fnmetrics makes can be refused by the table it creates: a NUL
    /// character in a name, which `text` cannot hold, is stored as U+FFFD (and
    /// [`PostgresReader`](crate::PostgresReader) looks names up the same way), and a `created_at` before 4714 BC is stored as `-infinity`.
    ///
    /// # Rows the server refuses: dead letters
    ///
    /// A table may refuse some rows for good: a `CHECK` constraint or a trigger an operator
    /// added, a foreign key, a server encoding that cannot hold a name, a row-level-security
    /// policy (SQLSTATE classes `22`, `23`, `44`, `54000`, and `42501`/`P0001` which may be an
    /// outage instead; `error.rs` sorts them). Then the batch
    /// is split in halves, again and again (depth first), each part written in its own committed
    /// transaction, until each refused row stands alone. The good rows are written, and the
    /// refused ones are returned in [`BatchOutcome::rejected`] with the server's reason, for the
    /// caller to set aside (retrying them cannot succeed). A batch with `k` refused rows among
    /// `n` takes about `2k·log2(n/k)` extra transactions, at most `2n − 1` (every row refused).
    /// A part committed before a later part failed stays: ids dedupe, so a retry is harmless.
    ///
    /// An error that hits every row alike is an outage, not bad data: a revoked `INSERT`
    /// privilege (`42501`) looks like a row-level-security refusal until every row fails. So if
    /// a `RowsOrOutage` error is among the failures and no part could be written, nothing is
    /// rejected and an error is returned (the caller retries later). To bound that search, it
    /// stops after [`OUTAGE_LEAF_FAILURES`] (32) single rows refused that way with no part
    /// written: an outage then costs about `log2(n) + 64` small transactions instead of `2n − 1`,
    /// while a row-level-security policy would have to refuse the first 32 rows tried in a row
    /// (a cluster at the start of the batch) to be taken for an outage — and even then the batch
    /// is retried, not lost. Errors of class `22`, `23`, `44` and `54000` are about the row by
    /// definition: they are never taken for an outage.
    ///
    /// # Errors
    /// Nothing is rejected when an error is returned; the caller retries the same batch later.
    ///
    /// - [`ErrorKind::Unavailable`]: the connection is down or breaks, or the server is a
    ///   read-only replica (after a failover); the connection is dropped and the next call
    ///   connects again.
    /// - [`ErrorKind::Timeout`]: the table stayed locked by another session for longer than
    ///   [`PostgresOptions::lock_timeout`], or a statement ran longer than
    ///   [`PostgresOptions::statement_timeout`].
    /// - [`ErrorKind::Server`]: other server trouble (a deadlock, a full disk, out of memory), or
    ///   an outage that hits every row (a revoked privilege, the table dropped: the next call
    ///   connects again and migrates).
    /// - The errors of [`PostgresSink::connect`] when reconnecting.
    ///
    /// Parts written before the error stay written; and if the connection broke after a commit
    /// was sent, that part may be in: writing the batch again is the way to find out (rows
    /// already there count 0).
    ///
    /// ```no_run
    /// # use fnmetrics::sink::EntryRecord;
    /// # use fnmetrics::postgres::{PostgresOptions, PostgresSink};
    /// # let mut sink = PostgresSink::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
    /// # let batch: Vec<EntryRecord> = Vec::new();
    /// let outcome = sink.write_batch(&batch)?;
    /// assert!(outcome.inserted + outcome.rejected.len() as u64 <= batch.len() as u64);
    /// for r in &outcome.rejected {
    ///     eprintln!("dead letter {:?}: {} ({:?})", batch[r.index].id_string(), r.reason, r.sqlstate);
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn write_batch(&mut self, entries: &[EntryRecord]) -> Result<BatchOutcome, Error> {
        if entries.is_empty() {
            return Ok(BatchOutcome::default());
        }
        outside_runtime(|| self.write_batch_here(entries))
    }

    fn write_batch_here(&mut self, entries: &[EntryRecord]) -> Result<BatchOutcome, Error> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.open()?,
        };
        let mut result = conn.write_part(entries);
        if matches!(&result, Err(e) if !classify(e).is_transient()) {
            // A partition this connection took for attached may have been dropped since (it fell
            // out of retention): look again, and try once more if one had to be made.
            conn.partitions.clear();
            match conn.ensure_partitions(entries) {
                Ok(0) => {}
                Ok(_) => result = conn.write_part(entries),
                Err(e) => result = Err(e),
            }
        }
        let result = match result {
            Ok(inserted) => Ok(BatchOutcome {
                inserted,
                rejected: Vec::new(),
            }),
            Err(e) if classify(&e).is_transient() => Err(e),
            Err(e) => Bisection::new(entries).run(&mut conn, e),
        };
        if !is_broken(&conn.client, &result) {
            self.conn = Some(conn);
        }
        result.map_err(|e| {
            if classify(&e).is_transient() {
                pg_error("cannot write the batch to PostgreSQL", e)
            } else {
                Error::with_source(
                    kind_of(&e),
                    "cannot write the batch to PostgreSQL: every row tried was refused alike and \
                     none could be written, so this is taken for an outage (a revoked privilege, \
                     say), not for bad rows; nothing was rejected",
                    e,
                )
            }
        })
    }

    /// One maintenance run: makes the partitions of the coming days, and drops those past
    /// [`PostgresOptions::retention`], whole (never row by row). Only one process of those
    /// sharing the table does it at a time (an advisory lock, not waited for: the others return
    /// [`Maintenance::ran`] `false`). A partition is detached concurrently (PostgreSQL 14 and
    /// later), so writers are never stalled behind it; every wait is bounded by the lock and
    /// statement timeouts. The flusher's drainers run it every few minutes on a connection of
    /// their own.
    ///
    /// # Errors
    /// As [`PostgresSink::write_batch`]; a timeout leaves the rest for the next run.
    ///
    /// ```no_run
    /// # use fnmetrics::postgres::{PostgresOptions, PostgresSink};
    /// let mut sink = PostgresSink::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
    /// for name in sink.maintain()?.dropped {
    ///     println!("dropped {name}");
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn maintain(&mut self) -> Result<Maintenance, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        self.maintain_at(now)
    }

    /// [`PostgresSink::maintain`] as if the time were `now` (micros since the Unix epoch), for
    /// tests of retention.
    #[doc(hidden)]
    pub fn maintain_at(&mut self, now: i64) -> Result<Maintenance, Error> {
        let options = self.endpoint.options.clone();
        let m = outside_runtime(|| {
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => self.open()?,
            };
            let result = partitions::maintain(&mut conn.client, &options, now);
            conn.partitions.clear();
            if !conn.client.is_closed() {
                self.conn = Some(conn);
            }
            result
        })?;
        Ok(m)
    }

    /// Runs `f` on the connection, opening it first if needed, and forgets a connection that
    /// broke so the next call opens a new one.
    fn with_conn<T: Send>(
        &mut self,
        context: &str,
        f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, Error> {
        outside_runtime(|| {
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => self.open()?,
            };
            let result = f(&mut conn);
            if !is_broken(&conn.client, &result) {
                self.conn = Some(conn);
            }
            result.map_err(|e| pg_error(context, e))
        })
    }

    /// Opens a connection, keeping its cancel token for [`PostgresSink::canceller`].
    fn open(&mut self) -> Result<Conn, Error> {
        Conn::open(&self.endpoint, &self.cancel)
    }
}

impl Drop for PostgresSink {
    /// Inside a tokio runtime, the connection is closed on a thread of its own.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            close_off_runtime(conn);
        }
    }
}

/// After how many single rows refused with an error that may be an outage (`42501`, `P0001`), and no part
/// written, a bisection stops and calls it an outage (see [`PostgresSink::write_batch`]).
pub const OUTAGE_LEAF_FAILURES: u32 = 32;

/// The state of splitting a batch to find the rows the server refuses.
struct Bisection<'a> {
    entries: &'a [EntryRecord],
    outcome: BatchOutcome,
    /// Parts written (committed), whether or not they held new rows.
    parts_written: u64,
    /// Single rows refused with a `RowsOrOutage` error, and the last such error.
    outage_like_leaves: u32,
    outage_like: Option<postgres::Error>,
}

impl<'a> Bisection<'a> {
    fn new(entries: &'a [EntryRecord]) -> Self {
        Bisection {
            entries,
            outcome: BatchOutcome::default(),
            parts_written: 0,
            outage_like_leaves: 0,
            outage_like: None,
        }
    }

    /// Splits the batch, whose whole failed with `first` (a `Rows` or `RowsOrOutage` error),
    /// depth first. Returns the outcome, or the error to report: a transient one, or the
    /// `RowsOrOutage` one that made it an outage.
    fn run(
        mut self,
        conn: &mut Conn,
        first: postgres::Error,
    ) -> Result<BatchOutcome, postgres::Error> {
        // Parts still to write, the next on top.
        let mut stack: Vec<(usize, usize)> = Vec::new();
        self.failed(0, self.entries.len(), first, &mut stack)?;
        while let Some((start, end)) = stack.pop() {
            match conn.write_part(&self.entries[start..end]) {
                Ok(n) => {
                    self.outcome.inserted += n;
                    self.parts_written += 1;
                }
                Err(e) if classify(&e).is_transient() => return Err(e),
                Err(e) => self.failed(start, end, e, &mut stack)?,
            }
        }
        match self.outage_like {
            // Not one row could be written, and some were refused in a way that may hit every
            // row: an outage.
            Some(e) if self.parts_written == 0 => Err(e),
            _ => Ok(self.outcome),
        }
    }

    /// Part `start..end` failed with a non-transient error `e`: split it, or reject its one row,
    /// or give up and call it an outage.
    fn failed(
        &mut self,
        start: usize,
        end: usize,
        e: postgres::Error,
        stack: &mut Vec<(usize, usize)>,
    ) -> Result<(), postgres::Error> {
        if end - start > 1 {
            let mid = start + (end - start) / 2;
            stack.push((mid, end));
            stack.push((start, mid));
            return Ok(());
        }
        let db = e.as_db_error();
        self.outcome.rejected.push(RejectedRow {
            index: start,
            reason: db.map_or_else(|| e.to_string(), |d| d.message().to_owned()),
            detail: db.and_then(|d| d.detail()).map(str::to_owned),
            sqlstate: e.code().map(|c| c.code().to_owned()),
        });
        if classify(&e) == Failure::RowsOrOutage {
            self.outage_like_leaves += 1;
            if self.parts_written == 0 && self.outage_like_leaves >= OUTAGE_LEAF_FAILURES {
                return Err(e);
            }
            self.outage_like = Some(e);
        }
        Ok(())
    }
}

impl Conn {
    /// Writes `entries` in one transaction (see [`PostgresSink::write_batch`]); returns how many
    /// rows were new.
    fn write_part(&mut self, entries: &[EntryRecord]) -> Result<u64, postgres::Error> {
        self.ensure_partitions(entries)?;
        if self.direct {
            let mut tx = self.client.transaction()?;
            match copy_entries(&mut tx, &self.copy, entries) {
                Ok(()) => {
                    if let Some(r) = &self.rollups {
                        Rollups::of(entries.iter()).write(&mut tx, r)?;
                    }
                    tx.commit()?;
                    return Ok(entries.len() as u64);
                }
                // Some ids are there already: a retry. (The transaction rolls back.)
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                Err(e) => return Err(e),
            }
        }
        // A retry, or a table that refuses `COPY`: through the staging table.
        let mut tx = self.client.transaction()?;
        copy_entries(&mut tx, &self.copy_staging, entries)?;
        let rows = tx.query(&self.insert_dedupe, &[])?;
        let inserted = rows.len() as u64;
        if let (Some(r), true) = (&self.rollups, inserted > 0) {
            let new: HashSet<[u8; 16]> = rows
                .iter()
                .filter_map(|r| r.try_get::<_, &[u8]>(0).ok()?.try_into().ok())
                .collect();
            Rollups::of(entries.iter().filter(|e| new.contains(&e.id))).write(&mut tx, r)?;
        }
        tx.commit()?;
        Ok(inserted)
    }

    /// Makes the partitions `entries` need that this connection has not seen yet; returns how
    /// many were made.
    fn ensure_partitions(&mut self, entries: &[EntryRecord]) -> Result<usize, postgres::Error> {
        let mut needed = BTreeSet::new();
        let mut last_day = None;
        for e in entries {
            let day = e.created_at_micros.div_euclid(DAY);
            if last_day == Some(day) {
                continue;
            }
            last_day = Some(day);
            for level in Level::ALL {
                if level == Level::Raw || self.rollups.is_some() {
                    needed.insert((level, level.partition_of(e.created_at_micros)));
                }
            }
        }
        partitions::ensure(
            &mut self.client,
            &self.tables,
            &needed,
            &mut self.partitions,
        )
    }

    fn open(
        endpoint: &Endpoint,
        cancel: &Mutex<Option<postgres::CancelToken>>,
    ) -> Result<Conn, Error> {
        let options = &endpoint.options;
        // Before the migration, whose lock may be waited for: a shutdown can cancel that too.
        let (mut client, tls) = endpoint.open(Some(cancel))?;
        let migration = migrate(&mut client, options)?;
        let ctx = "cannot prepare the PostgreSQL statements";
        client
            .batch_execute(&format!(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} (
                     id uuid,
                     func_name text,
                     execution_time double precision,
                     error_occurred boolean,
                     created_at timestamptz,
                     service text,
                     host text,
                     weight bigint
                 ) ON COMMIT DELETE ROWS"
            ))
            .map_err(|e| pg_error(ctx, e))?;
        let tables = Tables::new(options.table());
        let t = quoted(options.table());
        // PostgreSQL refuses `COPY` into a table with row-level security: such a table is
        // written through the staging table. (Security turned on later fails a `COPY` with
        // 0A000, which reconnects, and the new connection sees it here.)
        let direct: bool = client
            .query_one(
                "SELECT NOT relrowsecurity FROM pg_class WHERE oid = to_regclass($1)",
                &[&t],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| pg_error(ctx, e))?;
        let mut prepare = |sql: &str| client.prepare(sql).map_err(|e| pg_error(ctx, e));
        let copy = prepare(&format!("COPY {t} ({COLUMNS}) FROM STDIN (FORMAT binary)"))?;
        let copy_staging = prepare(&format!(
            "COPY {STAGING} ({COLUMNS}) FROM STDIN (FORMAT binary)"
        ))?;
        let insert_dedupe = prepare(&format!(
            "INSERT INTO {t} ({COLUMNS}) SELECT {COLUMNS} FROM {STAGING}
             ON CONFLICT ({RAW_KEY}) DO NOTHING RETURNING uuid_send(id)"
        ))?;
        let rollups = match options.rollups() {
            true => Some(
                rollup::Statements::prepare(&mut client, &tables).map_err(|e| pg_error(ctx, e))?,
            ),
            false => None,
        };
        Ok(Conn {
            client,
            tls,
            tables,
            rollups,
            migration,
            partitions: BTreeSet::new(),
            copy,
            direct,
            copy_staging,
            insert_dedupe,
        })
    }
}

/// Binary-copies `entries` with `copy` (into the raw table or the staging table).
fn copy_entries(
    tx: &mut postgres::Transaction<'_>,
    copy: &Statement,
    entries: &[EntryRecord],
) -> Result<(), postgres::Error> {
    let mut writer = BinaryCopyInWriter::new(tx.copy_in(copy)?, &COPY_TYPES);
    for e in entries {
        writer.write(&[
            &PgUuid(&e.id),
            &&*pg_text(&e.func_name),
            &duration_to_secs(e.execution_time),
            &e.error_occurred,
            &PgTimestamp(e.created_at_micros),
            &&*pg_text(&e.source.service),
            &&*pg_text(&e.source.host),
            &i64::from(e.weight),
        ])?;
    }
    writer.finish()?;
    Ok(())
}

/// Stage 2's store: [`PostgresSink::write_batch`] (a row refused for good comes back with
/// `SQLSTATE: message (detail)` as its reason), [`PostgresSink::another`],
/// [`PostgresSink::ensure_connected`] (connects and migrates), [`PostgresSink::canceller`] and
/// [`PostgresSink::maintain`] (partitions made and dropped, said in a `log` record).
impl fnmetrics_core::BatchStore for PostgresSink {
    fn write(&mut self, entries: &[EntryRecord]) -> Result<fnmetrics_core::Written, Error> {
        let outcome = self.write_batch(entries)?;
        Ok(fnmetrics_core::Written {
            inserted: outcome.inserted,
            refused: outcome
                .rejected
                .iter()
                .map(|r| fnmetrics_core::RefusedRow {
                    index: r.index,
                    reason: r.to_string(),
                })
                .collect(),
        })
    }

    fn another(&self) -> PostgresSink {
        PostgresSink::another(self)
    }

    fn connect(&mut self) -> Result<(), Error> {
        self.ensure_connected()
    }

    fn canceller(&self) -> Option<fnmetrics_core::Canceller> {
        Some(PostgresSink::canceller(self))
    }

    fn maintain(&mut self) -> Result<(), Error> {
        let m = PostgresSink::maintain(self)?;
        if !m.dropped.is_empty() || m.created > 0 {
            log::info!(
                target: "fnmetrics",
                "PostgreSQL maintenance: {} partitions made, {} dropped",
                m.created,
                m.dropped.len()
            );
        }
        Ok(())
    }
}

/// `SQLSTATE: message (detail)`, as a dead letter's reason.
///
/// ```
/// # use fnmetrics::postgres::RejectedRow;
/// # fn show(r: &RejectedRow) {
/// eprintln!("refused: {r}");
/// # }
/// ```
impl fmt::Display for RejectedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = &self.sqlstate {
            write!(f, "{code}: ")?;
        }
        f.write_str(&self.reason)?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}
