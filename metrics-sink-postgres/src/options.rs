//! [`PostgresOptions`]: table names, and a bound on every wait (connect, statements, locks, the
//! migration lock, a dead peer).

use crate::partitions::Retention;
use crate::tables::MAX_TABLE_LEN;
use fnmetrics_core::{Error, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest identifier PostgreSQL keeps without truncating (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER_LEN: usize = 63;

/// The longest timeout PostgreSQL accepts for `statement_timeout` and `lock_timeout`
/// (`INT_MAX` milliseconds, about 24.8 days).
const MAX_SERVER_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Settings of a [`PostgresSink`](crate::PostgresSink): which tables to use, and how long any wait
/// may last.
///
/// # Every wait has a bound
///
/// | wait | bound | default |
/// | --- | --- | --- |
/// | setting up the TCP connection | [`connect_timeout`](Self::connect_timeout) (the URL's `connect_timeout` wins) | 10 s |
/// | one statement on the server | [`statement_timeout`](Self::statement_timeout) | 30 s |
/// | a table or row lock held by another session | [`lock_timeout`](Self::lock_timeout) | 5 s |
/// | the migration's advisory lock, held by another process | [`migration_lock_timeout`](Self::migration_lock_timeout) | 30 s |
/// | a peer that is gone (no reply, no RST): idle connection | TCP keepalives: [`keepalives_idle`](Self::keepalives_idle), then [`keepalives_retries`](Self::keepalives_retries) probes [`keepalives_interval`](Self::keepalives_interval) apart | 10 s + 3 × 5 s |
/// | a peer that is gone: data sent, never acknowledged | [`tcp_user_timeout`](Self::tcp_user_timeout) | 30 s |
///
/// `statement_timeout` and `lock_timeout` are set on the server for the sink's session with `SET`
/// right after connecting, so they win over the URL's `options=-c...` and the role's or the
/// database's settings. The TCP settings in the URL (`keepalives`, `keepalives_idle`,
/// `keepalives_interval`, `keepalives_retries`, `tcp_user_timeout`) win over these options; with
/// `keepalives=0` in the URL no keepalives are sent.
///
/// A statement stopped by `statement_timeout` or `lock_timeout` is an
/// [`ErrorKind::Timeout`]: transient, the caller tries again later.
///
/// Table names are plain identifiers: ASCII letters, digits and underscores, not starting with a
/// digit, at most 63 bytes. They are quoted in SQL, so case is kept (`Metrics` and `metrics` are
/// different tables), and resolved through the connection's `search_path` (usually `public`);
/// set the schema with the URL's `options=-csearch_path%3Dmy_schema` if needed.
///
/// ```
/// use fnmetrics::postgres::PostgresOptions;
/// use std::time::Duration;
/// let o = PostgresOptions::default()
///     .with_table("app_metrics")
///     .with_connect_timeout(Duration::from_secs(3));
/// assert_eq!(o.table(), "app_metrics");
/// assert_eq!(o.schema_table(), "fnmetrics_schema_version");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    table: String,
    schema_table: String,
    connect_timeout: Duration,
    statement_timeout: Duration,
    lock_timeout: Duration,
    migration_lock_timeout: Duration,
    keepalives_idle: Duration,
    keepalives_interval: Duration,
    keepalives_retries: u32,
    tcp_user_timeout: Duration,
    ca_file: Option<PathBuf>,
    rollups: bool,
    retention: Retention,
}

impl Default for PostgresOptions {
    /// Table `metrics`, schema-version table `fnmetrics_schema_version`, and the timeouts in the
    /// table above: connect 10 s, statement 30 s, lock 5 s, migration lock 30 s, keepalives after
    /// 10 s idle then 3 probes 5 s apart, TCP user timeout 30 s.
    fn default() -> Self {
        PostgresOptions {
            table: "metrics".to_owned(),
            schema_table: "fnmetrics_schema_version".to_owned(),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(5),
            migration_lock_timeout: Duration::from_secs(30),
            keepalives_idle: Duration::from_secs(10),
            keepalives_interval: Duration::from_secs(5),
            keepalives_retries: 3,
            tcp_user_timeout: Duration::from_secs(30),
            ca_file: None,
            rollups: true,
            retention: Retention::default(),
        }
    }
}

impl PostgresOptions {
    /// The table the entries go to (default `metrics`).
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().with_table("m2").table(), "m2");
    /// ```
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The table that records applied migrations (default `fnmetrics_schema_version`). It may be
    /// shared by several entry tables: each row names the table it migrated.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// let o = PostgresOptions::default().with_schema_table("my_versions");
    /// assert_eq!(o.schema_table(), "my_versions");
    /// ```
    pub fn with_schema_table(mut self, schema_table: impl Into<String>) -> Self {
        self.schema_table = schema_table.into();
        self
    }

    /// How long to wait for a TCP connection to be set up (default 10 s). A `connect_timeout`
    /// given in the URL wins.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// # use std::time::Duration;
    /// let o = PostgresOptions::default().with_connect_timeout(Duration::from_secs(1));
    /// assert_eq!(o.connect_timeout(), Duration::from_secs(1));
    /// ```
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one statement may run on the server before it is cancelled (default 30 s): the
    /// session's `statement_timeout`. A cancelled statement is an [`ErrorKind::Timeout`] and the
    /// batch is not written (the caller tries it again later). Rounded up to whole milliseconds.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// # use std::time::Duration;
    /// let o = PostgresOptions::default().with_statement_timeout(Duration::from_secs(60));
    /// assert_eq!(o.statement_timeout(), Duration::from_secs(60));
    /// ```
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// How long a statement may wait for a lock another session holds (default 5 s): the
    /// session's `lock_timeout` (someone runs `LOCK TABLE metrics`, a long `ALTER TABLE`, ...).
    /// Giving up is an [`ErrorKind::Timeout`]. Rounded up to whole milliseconds.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// # use std::time::Duration;
    /// let o = PostgresOptions::default().with_lock_timeout(Duration::from_millis(500));
    /// assert_eq!(o.lock_timeout(), Duration::from_millis(500));
    /// ```
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How long [`PostgresSink::connect`](crate::PostgresSink::connect) waits for the migration's
    /// advisory lock (default 30 s). Processes that start together take it one after the other,
    /// each for a few milliseconds; a process that holds it longer is stuck or migrating a huge
    /// table, and the connect fails with [`ErrorKind::Timeout`] rather than hang. Rounded up to
    /// whole milliseconds.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// # use std::time::Duration;
    /// let o = PostgresOptions::default().with_migration_lock_timeout(Duration::from_secs(5));
    /// assert_eq!(o.migration_lock_timeout(), Duration::from_secs(5));
    /// ```
    pub fn with_migration_lock_timeout(mut self, timeout: Duration) -> Self {
        self.migration_lock_timeout = timeout;
        self
    }

    /// How long a connection is idle before the first TCP keepalive probe (default 10 s; whole
    /// seconds, at least 1). With the default interval and retries a dead peer of an idle
    /// connection is noticed after about 25 s. The URL's `keepalives_idle` wins.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// # use std::time::Duration;
    /// let o = PostgresOptions::default().with_keepalives_idle(Duration::from_secs(30));
    /// assert_eq!(o.keepalives_idle(), Duration::from_secs(30));
    /// ```
    pub fn with_keepalives_idle(mut self, idle: Duration) -> Self {
        self.keepalives_idle = idle;
        self
    }

    /// The time between two unanswered TCP keepalive probes (default 5 s; whole seconds, at
    /// least 1). The URL's `keepalives_interval` wins.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// # use std::time::Duration;
    /// let o = PostgresOptions::default().with_keepalives_interval(Duration::from_secs(2));
    /// assert_eq!(o.keepalives_interval(), Duration::from_secs(2));
    /// ```
    pub fn with_keepalives_interval(mut self, interval: Duration) -> Self {
        self.keepalives_interval = interval;
        self
    }

    /// How many unanswered TCP keepalive probes close the connection (default 3, at least 1).
    /// The URL's `keepalives_retries` wins.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// let o = PostgresOptions::default().with_keepalives_retries(5);
    /// assert_eq!(o.keepalives_retries(), 5);
    /// ```
    pub fn with_keepalives_retries(mut self, retries: u32) -> Self {
        self.keepalives_retries = retries;
        self
    }

    /// How long sent data may stay unacknowledged before the connection is closed (default
    /// 30 s): the socket's `TCP_USER_TIMEOUT` (Linux), which notices a dead peer while a batch is
    /// being sent, where keepalives (only sent on an idle connection) do not. Whole
    /// milliseconds. The URL's `tcp_user_timeout` wins.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// # use std::time::Duration;
    /// let o = PostgresOptions::default().with_tcp_user_timeout(Duration::from_secs(60));
    /// assert_eq!(o.tcp_user_timeout(), Duration::from_secs(60));
    /// ```
    pub fn with_tcp_user_timeout(mut self, timeout: Duration) -> Self {
        self.tcp_user_timeout = timeout;
        self
    }

    /// Trust only the CA certificates in this PEM file (one or more `CERTIFICATE` blocks) for
    /// TLS connections, instead of the system's roots: what libpq's `sslrootcert` does, which
    /// the URL cannot set here. The file is read at every connect; an unreadable file, or one
    /// with no certificate, fails the connect with [`ErrorKind::InvalidConfig`].
    ///
    /// TLS is used as the URL's `sslmode` says: `disable` (never), `prefer` (the default: TLS
    /// when the server offers it), `require`. Whenever TLS is used the server's certificate is
    /// verified (its chain up to a trusted root, and the URL's host name or IP address), with or
    /// without a CA file, like libpq's `verify-full`; a certificate that does not verify fails the
    /// connect with [`ErrorKind::Auth`], also with `prefer` (never a silent fall back to
    /// plaintext). Which mode a connection ended up in is logged (the `log` crate, target
    /// `fnmetrics_sink_postgres::sink`) and returned by
    /// [`PostgresSink::uses_tls`](crate::PostgresSink::uses_tls).
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// use std::path::Path;
    /// let o = PostgresOptions::default().with_ca_file("/etc/fnmetrics/db-ca.pem");
    /// assert_eq!(o.ca_file(), Some(Path::new("/etc/fnmetrics/db-ca.pem")));
    /// ```
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The CA file given to [`with_ca_file`](Self::with_ca_file), if any.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().ca_file(), None);
    /// ```
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Whether each batch also updates the rollups `T_1m` and `T_1h` (default `true`), in the
    /// same transaction as its raw rows. Turn it off only where nothing reads rollups (a
    /// benchmark of raw writes, say): every drainer of a table must agree, or the rollups miss
    /// what the others wrote.
    ///
    /// ```
    /// use fnmetrics::postgres::PostgresOptions;
    /// assert!(!PostgresOptions::default().with_rollups(false).rollups());
    /// ```
    pub fn with_rollups(mut self, on: bool) -> Self {
        self.rollups = on;
        self
    }

    /// How long each table keeps its partitions (see [`Retention`]); maintenance
    /// ([`PostgresSink::maintain`](crate::PostgresSink::maintain)) drops older ones.
    ///
    /// ```
    /// use fnmetrics::postgres::{PostgresOptions, Retention};
    /// use std::time::Duration;
    /// let o = PostgresOptions::default()
    ///     .with_retention(Retention::default().with_raw(Duration::from_secs(2 * 86_400)));
    /// assert_eq!(o.retention().raw(), Duration::from_secs(2 * 86_400));
    /// ```
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Whether batches update the rollups.
    ///
    /// ```
    /// assert!(fnmetrics::postgres::PostgresOptions::default().rollups());
    /// ```
    pub fn rollups(&self) -> bool {
        self.rollups
    }

    /// How long each table keeps its partitions.
    ///
    /// ```
    /// let o = fnmetrics::postgres::PostgresOptions::default();
    /// assert_eq!(o.retention(), fnmetrics::postgres::Retention::default());
    /// ```
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// The entry table's name.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().table(), "metrics");
    /// ```
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The schema-version table's name.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().schema_table(), "fnmetrics_schema_version");
    /// ```
    pub fn schema_table(&self) -> &str {
        &self.schema_table
    }

    /// The connect timeout used when the URL sets none.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().connect_timeout().as_secs(), 10);
    /// ```
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The server-side limit on one statement.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().statement_timeout().as_secs(), 30);
    /// ```
    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    /// The server-side limit on waiting for a lock.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().lock_timeout().as_secs(), 5);
    /// ```
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// The limit on waiting for the migration's advisory lock.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().migration_lock_timeout().as_secs(), 30);
    /// ```
    pub fn migration_lock_timeout(&self) -> Duration {
        self.migration_lock_timeout
    }

    /// The idle time before the first TCP keepalive probe.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().keepalives_idle().as_secs(), 10);
    /// ```
    pub fn keepalives_idle(&self) -> Duration {
        self.keepalives_idle
    }

    /// The time between TCP keepalive probes.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().keepalives_interval().as_secs(), 5);
    /// ```
    pub fn keepalives_interval(&self) -> Duration {
        self.keepalives_interval
    }

    /// How many unanswered TCP keepalive probes close the connection.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().keepalives_retries(), 3);
    /// ```
    pub fn keepalives_retries(&self) -> u32 {
        self.keepalives_retries
    }

    /// The socket's `TCP_USER_TIMEOUT`.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().tcp_user_timeout().as_secs(), 30);
    /// ```
    pub fn tcp_user_timeout(&self) -> Duration {
        self.tcp_user_timeout
    }

    /// Checks both table names and that they differ, and that every timeout is in range: more
    /// than zero; `statement_timeout`, `lock_timeout` and `migration_lock_timeout` at most
    /// 2 147 483 647 ms (PostgreSQL's limit); keepalive times at least 1 s (the kernel counts
    /// them in seconds); `tcp_user_timeout` at most `u32::MAX` ms; `keepalives_retries` at least 1.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] naming the bad setting.
    ///
    /// ```
    /// # use fnmetrics::postgres::PostgresOptions;
    /// use fnmetrics::ErrorKind;
    /// use std::time::Duration;
    /// assert!(PostgresOptions::default().validate().is_ok());
    /// let bad = PostgresOptions::default().with_table("metrics; drop table x");
    /// assert_eq!(bad.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
    /// let bad = PostgresOptions::default().with_lock_timeout(Duration::ZERO);
    /// assert!(bad.validate().unwrap_err().to_string().contains("lock_timeout"));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        validate_identifier("table", &self.table)?;
        if self.table.len() > MAX_TABLE_LEN {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "table `{}` is longer than {MAX_TABLE_LEN} bytes: its partitions' names \
                     (`{}_1m_p20261202`) must fit PostgreSQL's 63",
                    self.table, self.table
                ),
            ));
        }
        validate_identifier("schema_table", &self.schema_table)?;
        if self.table == self.schema_table {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "table and schema_table are both `{}`; they must differ",
                    self.table
                ),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "connect_timeout must be more than zero",
            ));
        }
        for (setting, value) in [
            ("statement_timeout", self.statement_timeout),
            ("lock_timeout", self.lock_timeout),
            ("migration_lock_timeout", self.migration_lock_timeout),
        ] {
            check_range(setting, value, Duration::from_millis(1), MAX_SERVER_TIMEOUT)?;
        }
        let max_secs = Duration::from_secs(u64::from(i32::MAX as u32));
        check_range(
            "keepalives_idle",
            self.keepalives_idle,
            Duration::from_secs(1),
            max_secs,
        )?;
        check_range(
            "keepalives_interval",
            self.keepalives_interval,
            Duration::from_secs(1),
            max_secs,
        )?;
        check_range(
            "tcp_user_timeout",
            self.tcp_user_timeout,
            Duration::from_millis(1),
            Duration::from_millis(u64::from(u32::MAX)),
        )?;
        if self.keepalives_retries == 0 {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "keepalives_retries must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `value` must lie in `min..=max`.
fn check_range(setting: &str, value: Duration, min: Duration, max: Duration) -> Result<(), Error> {
    if value < min || value > max {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("{setting} must be between {min:?} and {max:?}, not {value:?}"),
        ));
    }
    Ok(())
}

/// `d` in whole milliseconds, rounded up, as PostgreSQL's `statement_timeout` and `lock_timeout`
/// take them (validated to fit).
pub(crate) fn millis_ceil(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn validate_identifier(setting: &str, name: &str) -> Result<(), Error> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_IDENTIFIER_LEN {
        Some("is longer than 63 bytes")
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        Some("starts with a digit")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Some("may only hold ASCII letters, digits and underscores")
    } else {
        None
    };
    match problem {
        Some(p) => Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("{setting} `{name}` {p}"),
        )),
        None => Ok(()),
    }
}

/// `name` quoted as an SQL identifier (it was validated, so there is nothing to escape).
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        for ok in ["metrics", "M_2", "_x", &"a".repeat(63)] {
            assert!(validate_identifier("table", ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "a-b", "a b", "é", "a\"b", &"a".repeat(64)] {
            let e = validate_identifier("table", bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{bad}");
        }
    }

    #[test]
    fn timeouts_are_checked() {
        let o = PostgresOptions::default;
        for (bad, what) in [
            (
                o().with_statement_timeout(Duration::ZERO),
                "statement_timeout",
            ),
            (
                o().with_lock_timeout(Duration::from_secs(30 * 86_400)),
                "lock_timeout",
            ),
            (
                o().with_migration_lock_timeout(Duration::ZERO),
                "migration_lock_timeout",
            ),
            (
                o().with_keepalives_idle(Duration::from_millis(500)),
                "keepalives_idle",
            ),
            (
                o().with_keepalives_interval(Duration::ZERO),
                "keepalives_interval",
            ),
            (o().with_keepalives_retries(0), "keepalives_retries"),
            (
                o().with_tcp_user_timeout(Duration::ZERO),
                "tcp_user_timeout",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{what}");
            assert!(e.to_string().starts_with(what), "{e}");
        }
        assert!(o()
            .with_lock_timeout(Duration::from_micros(1))
            .validate()
            .is_err());
        assert!(o()
            .with_lock_timeout(Duration::from_millis(1))
            .validate()
            .is_ok());
    }

    #[test]
    fn server_timeouts_round_up_to_milliseconds() {
        assert_eq!(millis_ceil(Duration::from_micros(1_001)), 2);
        assert_eq!(millis_ceil(Duration::from_secs(5)), 5_000);
    }

    #[test]
    fn tables_must_differ() {
        let o = PostgresOptions::default().with_schema_table("metrics");
        assert_eq!(o.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
    }
}
