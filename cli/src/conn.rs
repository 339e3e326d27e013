//! Connecting to the servers named on the command line, with errors that name the server (its
//! URL redacted) and say what to do.

use crate::args::Servers;
use crate::error::{CliError, CliResult};
use fnmetrics::postgres::{PostgresOptions, PostgresReader, PostgresSink};
use fnmetrics::redact_url;
use fnmetrics::redis::{RedisOptions, RedisQueue, RedisReader};
use fnmetrics::ErrorKind;
use postgres::config::SslMode;
use std::sync::Arc;
use std::time::Duration;

/// How long connecting to either server may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Servers {
    /// The Redis URL, or a usage error saying how to give one.
    pub(crate) fn redis_url(&self) -> CliResult<&str> {
        self.redis
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                CliError::usage("no Redis URL given")
                    .hint("pass --redis redis://HOST:PORT/ or set FNMETRICS_REDIS_URL")
            })
    }

    /// The PostgreSQL URL, or a usage error saying how to give one.
    pub(crate) fn postgres_url(&self) -> CliResult<&str> {
        self.postgres
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                CliError::usage("no PostgreSQL URL given").hint(
                    "pass --postgres postgres://USER@HOST:PORT/DATABASE or set \
                     FNMETRICS_POSTGRES_URL",
                )
            })
    }

    /// The Redis options of `--key-prefix`.
    pub(crate) fn redis_options(&self) -> RedisOptions {
        RedisOptions::default()
            .with_key_prefix(self.key_prefix.clone())
            .with_connect_timeout(CONNECT_TIMEOUT)
    }

    /// The PostgreSQL options of `--table`, checked.
    pub(crate) fn postgres_options(&self) -> CliResult<PostgresOptions> {
        let o = PostgresOptions::default()
            .with_table(self.table.clone())
            .with_connect_timeout(CONNECT_TIMEOUT);
        o.validate()
            .map_err(|e| CliError::usage(format!("invalid --table `{}`: {e}", self.table)))?;
        Ok(o)
    }
}

/// A fnmetrics error from a Redis call, with the server named and a hint.
pub(crate) fn redis_error(url: &str, what: &str, e: fnmetrics::Error) -> CliError {
    let hint = match e.kind() {
        ErrorKind::InvalidUrl => "write it as redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS)",
        ErrorKind::Auth => "check the password (or user) in the Redis URL",
        ErrorKind::Unavailable | ErrorKind::Timeout => {
            "check that redis-server runs and listens there, or give another --redis / \
             FNMETRICS_REDIS_URL"
        }
        ErrorKind::Schema => {
            "a key fnmetrics uses holds another type: check --key-prefix, or that nothing else \
             writes these keys"
        }
        _ => "see the cause above",
    };
    CliError::caused(named(what, "Redis", url), e).hint(hint)
}

/// A fnmetrics error from a PostgreSQL call, with the server named and a hint.
pub(crate) fn postgres_error(url: &str, what: &str, e: fnmetrics::Error) -> CliError {
    let hint = match e.kind() {
        ErrorKind::InvalidUrl => "write it as postgres://USER[:PASSWORD]@HOST:PORT/DATABASE",
        ErrorKind::Auth => "check the user and password in the PostgreSQL URL (or its TLS setup)",
        ErrorKind::Unavailable | ErrorKind::Timeout => {
            "check that PostgreSQL runs and accepts connections there, or give another \
             --postgres / FNMETRICS_POSTGRES_URL"
        }
        ErrorKind::Schema => {
            "the table exists with another shape: migrate it yourself or use --table NAME"
        }
        ErrorKind::InvalidConfig => "check the database name in the URL, and --table",
        ErrorKind::Superseded => "a newer fnmetrics made these tables: upgrade this command",
        _ => "see the cause above",
    };
    CliError::caused(named(what, "PostgreSQL", url), e).hint(hint)
}

/// A `postgres` crate error from a raw query or connection, with the server named and a hint.
pub(crate) fn raw_postgres_error(url: &str, what: &str, e: postgres::Error) -> CliError {
    use postgres::error::SqlState;
    let hint = match e.code() {
        Some(c) if *c == SqlState::UNDEFINED_TABLE => {
            Some("the table does not exist yet: run `fnmetrics migrate` (or check --table)")
        }
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            Some("check the user and password in the PostgreSQL URL")
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => {
            Some("the database does not exist: create it, or fix the URL")
        }
        Some(_) => None,
        // No server error: the connection (refused, timed out, broken).
        None if is_io(&e) || e.is_closed() => Some(
            "check that PostgreSQL runs and accepts connections there, or give another \
             --postgres / FNMETRICS_POSTGRES_URL",
        ),
        None => None,
    };
    let err = CliError::caused(named(what, "PostgreSQL", url), e);
    match hint {
        Some(h) => err.hint(h),
        None => err,
    }
}

/// Whether an I/O error is in `e`'s cause chain.
fn is_io(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<std::io::Error>() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// `cannot connect to Redis at URL`, or `cannot read .. (Redis at URL)`, the URL redacted.
fn named(what: &str, server: &str, url: &str) -> String {
    let url = redact_url(url);
    match what.strip_suffix(server) {
        Some(_) => format!("{what} at {url}"),
        None => format!("{what} ({server} at {url})"),
    }
}

/// The reader of the per-function aggregates.
pub(crate) fn reader(s: &Servers) -> CliResult<RedisReader> {
    let url = s.redis_url()?;
    RedisReader::connect(url, s.redis_options())
        .map_err(|e| redis_error(url, "cannot connect to Redis", e))
}

/// The stage-2 queue (entries, claims, dead letters).
pub(crate) fn queue(s: &Servers) -> CliResult<RedisQueue> {
    let url = s.redis_url()?;
    RedisQueue::connect(url, s.redis_options())
        .map_err(|e| redis_error(url, "cannot connect to Redis", e))
}

/// The PostgreSQL sink: connecting migrates the schema.
pub(crate) fn sink(s: &Servers) -> CliResult<PostgresSink> {
    let url = s.postgres_url()?;
    PostgresSink::connect(url, s.postgres_options()?)
        .map_err(|e| postgres_error(url, "cannot connect to PostgreSQL", e))
}

/// The PostgreSQL reader (windows and series from the rollups); it never migrates.
pub(crate) fn postgres_reader(s: &Servers) -> CliResult<PostgresReader> {
    let url = s.postgres_url()?;
    PostgresReader::connect(url, s.postgres_options()?)
        .map_err(|e| postgres_error(url, "cannot connect to PostgreSQL", e))
}

/// A plain PostgreSQL connection for reading (reports, the schema check): it never migrates.
/// TLS as the URL's `sslmode` says, the server's certificate checked against the system's roots.
pub(crate) fn raw_postgres(s: &Servers) -> CliResult<postgres::Client> {
    postgres_session(s, true)
}

/// A plain PostgreSQL connection that may write (the alerts' state).
pub(crate) fn postgres_rw(s: &Servers) -> CliResult<postgres::Client> {
    postgres_session(s, false)
}

fn postgres_session(s: &Servers, read_only: bool) -> CliResult<postgres::Client> {
    let url = s.postgres_url()?;
    let mut config: postgres::Config = url.parse().map_err(|e| {
        CliError::caused(
            format!("cannot parse the PostgreSQL URL {}", redact_url(url)),
            e,
        )
        .hint("write it as postgres://USER[:PASSWORD]@HOST:PORT/DATABASE")
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let mut roots = rustls::RootCertStore::empty();
    if config.get_ssl_mode() != SslMode::Disable {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    // ring on purpose (aws-lc-rs needs cmake and nasm to build); rustls 0.23.48 deprecates
    // its provider for lacking post-quantum key exchange, and offers no other ring one.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::caused("cannot set up TLS (rustls)", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .map_err(|e| raw_postgres_error(url, "cannot connect to PostgreSQL", e))?;
    let setup = if read_only {
        "SET statement_timeout = '120s'; SET default_transaction_read_only = on"
    } else {
        "SET statement_timeout = '30s'"
    };
    client
        .batch_execute(setup)
        .map_err(|e| raw_postgres_error(url, "cannot set up the PostgreSQL session", e))?;
    Ok(client)
}

/// `name` as a quoted SQL identifier (checked by [`Servers::postgres_options`]).
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
