//! [`PostgresOptions`]: table names and the connect timeout.

use fnmetrics_core::{Error, ErrorKind};
use std::time::Duration;

/// The longest identifier PostgreSQL keeps without truncating (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER_LEN: usize = 63;

/// Settings of a [`PostgresSink`](crate::PostgresSink): which tables to use and how long to wait
/// for a connection.
///
/// Table names are plain identifiers: ASCII letters, digits and underscores, not starting with a
/// digit, at most 63 bytes. They are quoted in SQL, so case is kept (`Metrics` and `metrics` are
/// different tables), and resolved through the connection's `search_path` (usually `public`);
/// set the schema with the URL's `options=-csearch_path%3Dmy_schema` if needed.
///
/// ```
/// use fnmetrics_sink_postgres::PostgresOptions;
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
}

impl Default for PostgresOptions {
    /// Table `metrics`, schema-version table `fnmetrics_schema_version`, a 10 s connect timeout.
    fn default() -> Self {
        PostgresOptions {
            table: "metrics".to_owned(),
            schema_table: "fnmetrics_schema_version".to_owned(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl PostgresOptions {
    /// The table the entries go to (default `metrics`).
    ///
    /// ```
    /// # use fnmetrics_sink_postgres::PostgresOptions;
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
    /// # use fnmetrics_sink_postgres::PostgresOptions;
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
    /// # use fnmetrics_sink_postgres::PostgresOptions;
    /// # use std::time::Duration;
    /// let o = PostgresOptions::default().with_connect_timeout(Duration::from_secs(1));
    /// assert_eq!(o.connect_timeout(), Duration::from_secs(1));
    /// ```
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The entry table's name.
    ///
    /// ```
    /// # use fnmetrics_sink_postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().table(), "metrics");
    /// ```
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The schema-version table's name.
    ///
    /// ```
    /// # use fnmetrics_sink_postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().schema_table(), "fnmetrics_schema_version");
    /// ```
    pub fn schema_table(&self) -> &str {
        &self.schema_table
    }

    /// The connect timeout used when the URL sets none.
    ///
    /// ```
    /// # use fnmetrics_sink_postgres::PostgresOptions;
    /// assert_eq!(PostgresOptions::default().connect_timeout().as_secs(), 10);
    /// ```
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Checks both table names and that they differ.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] naming the bad setting.
    ///
    /// ```
    /// # use fnmetrics_sink_postgres::PostgresOptions;
    /// use fnmetrics_core::ErrorKind;
    /// assert!(PostgresOptions::default().validate().is_ok());
    /// let bad = PostgresOptions::default().with_table("metrics; drop table x");
    /// assert_eq!(bad.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        validate_identifier("table", &self.table)?;
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
        Ok(())
    }
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
    fn tables_must_differ() {
        let o = PostgresOptions::default().with_schema_table("metrics");
        assert_eq!(o.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
    }
}
