//! Turning `postgres::Error` into an fnmetrics [`Error`] of the right [`ErrorKind`].

use fnmetrics_core::{Error, ErrorKind};
use postgres::error::SqlState;

/// The kind of a PostgreSQL client error.
///
/// - SQLSTATE `28P01` (bad password) and `28000` (unknown role, refused by `pg_hba.conf`) and
///   client-side authentication failures → [`ErrorKind::Auth`].
/// - `3D000` (the database does not exist) → [`ErrorKind::InvalidConfig`]: the URL names a
///   database that is not there, which waiting will not fix; an operator has to create it or fix
///   the URL. (Class `08`, `57P0x` and `53300` are the "try again later" states.)
/// - Connection exceptions (class `08`), shutdowns and restarts (`57P01`–`57P03`), too many
///   connections (`53300`), a closed connection and I/O errors → [`ErrorKind::Unavailable`].
/// - An invalid configuration detected while connecting, or a URL that requires TLS (not
///   supported) → [`ErrorKind::InvalidUrl`]: all of it comes from the URL.
/// - Any other server error → [`ErrorKind::Server`].
pub(crate) fn kind_of(e: &postgres::Error) -> ErrorKind {
    if let Some(code) = e.code() {
        return kind_of_sqlstate(code);
    }
    if e.is_closed() || has_io_source(e) {
        return ErrorKind::Unavailable;
    }
    // tokio-postgres does not expose its error kinds; these two are told apart by their text.
    match e.to_string().as_str() {
        "authentication error" => ErrorKind::Auth,
        // With `NoTls`, a TLS error means the URL asked for TLS (`sslmode=require`), which this
        // sink does not support.
        "invalid configuration"
        | "invalid connection string"
        | "error performing TLS handshake" => ErrorKind::InvalidUrl,
        "timeout waiting for server" => ErrorKind::Unavailable,
        _ => ErrorKind::Server,
    }
}

fn kind_of_sqlstate(code: &SqlState) -> ErrorKind {
    let c = code.code();
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        ErrorKind::Auth
    } else if *code == SqlState::INVALID_CATALOG_NAME {
        ErrorKind::InvalidConfig
    } else if c.starts_with("08") || c.starts_with("57P") || *code == SqlState::TOO_MANY_CONNECTIONS
    {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Server
    }
}

fn has_io_source(e: &postgres::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = cur {
        if s.is::<std::io::Error>() {
            return true;
        }
        cur = s.source();
    }
    false
}

/// Wraps a client error, with `context` as this layer's message and the error as the source.
pub(crate) fn pg_error(context: &str, e: postgres::Error) -> Error {
    Error::with_source(kind_of(&e), context, e)
}
