//! Turning `postgres::Error` into an fnmetrics [`Error`] of the right [`ErrorKind`], and
//! [`classify`]: what a writer should do about a failure.

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
///   connections (`53300`), a read-only transaction (`25006`: a replica, after a failover), a
///   closed connection and I/O errors → [`ErrorKind::Unavailable`].
/// - A statement cancelled by `statement_timeout` (`57014`) or a lock not had within
///   `lock_timeout` (`55P03`) → [`ErrorKind::Timeout`].
/// - TLS failures: the server's certificate does not verify (an unknown CA, a wrong host name,
///   expired), the handshake is refused, or `sslmode=require` and the server does not offer
///   TLS → [`ErrorKind::Auth`]: the server could not be authenticated as the settings require.
///   Not transient: retrying the same settings against the same server fails the same way, an
///   operator must fix the certificate, the CA file or the URL. (A handshake cut short by the
///   network is an I/O error, [`ErrorKind::Unavailable`].)
/// - An invalid configuration detected while connecting → [`ErrorKind::InvalidUrl`]: all of it
///   comes from the URL.
/// - Any other server error → [`ErrorKind::Server`].
pub(crate) fn kind_of(e: &postgres::Error) -> ErrorKind {
    if let Some(code) = e.code() {
        return kind_of_sqlstate(code);
    }
    if e.to_string() == TLS_ERROR {
        return match io_source(e) {
            Some(io)
                if !io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<rustls::Error>()) =>
            {
                ErrorKind::Unavailable
            }
            _ if std::error::Error::source(e)
                .is_some_and(|s| s.to_string().contains("no hostname")) =>
            {
                ErrorKind::InvalidUrl
            }
            _ => ErrorKind::Auth,
        };
    }
    if e.is_closed() || io_source(e).is_some() {
        return ErrorKind::Unavailable;
    }
    // tokio-postgres does not expose its error kinds; these two are told apart by their text.
    match e.to_string().as_str() {
        "authentication error" => ErrorKind::Auth,
        "invalid configuration" | "invalid connection string" => ErrorKind::InvalidUrl,
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
    } else if c.starts_with("08")
        || c.starts_with("57P")
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        ErrorKind::Unavailable
    } else if *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE {
        ErrorKind::Timeout
    } else {
        ErrorKind::Server
    }
}

/// What a writer should do about a failed PostgreSQL call: try again later (on the same or a new
/// connection), or set rows aside. Made by [`classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Failure {
    /// Try the same work again later, on the same connection: a lock or statement timeout
    /// (`55P03`, `57014`), a serialization failure or deadlock (`40001`, `40P01`), the server out
    /// of disk or memory (`53100`, `53200`, other class `53`), and any other server trouble
    /// (class `58`, `XX`, ...) that is not about the data.
    Retry,
    /// Try the same work again later on a new connection (drop this one): the connection broke
    /// or the driver lost track of it (no SQLSTATE: closed, I/O, protocol), a connection
    /// exception (class `08`), a shutdown or restart (`57P01`–`57P03`), too many connections
    /// (`53300`), a read-only transaction (`25006`, a replica after a failover: a new connection
    /// may reach the new primary), or the table or the prepared statements changed under the
    /// connection (`42P01` undefined table, `42703` undefined column, `0A000` a cached plan that
    /// changed, `26000` a prepared statement gone, class `3D`): a new connection runs the
    /// migration and prepares again.
    Reconnect,
    /// The data of one or more rows was refused, and sending it again will fail again: a data
    /// exception (class `22`: encoding, out of range, too long), an integrity constraint
    /// violation (class `23`: `CHECK`, `NOT NULL`, a foreign key, a unique index other than the
    /// id's), a view's `WITH CHECK OPTION` (class `44`), or a row too large for an index
    /// (`54000`). Splitting the batch finds the rows.
    Rows,
    /// Either some rows or every row: `42501` insufficient privilege (a revoked `INSERT` grant
    /// hits every row, a row-level-security policy only some) or `P0001` (a trigger's
    /// `RAISE EXCEPTION`, which may test the row or not). Only splitting the batch can tell: if
    /// no row can be written it is an outage ([`Failure::Retry`]), otherwise the refused rows
    /// are set aside as with [`Failure::Rows`].
    RowsOrOutage,
}

impl Failure {
    /// Whether the same work may succeed later without changing the data:
    /// [`Failure::Retry`] and [`Failure::Reconnect`].
    pub(crate) fn is_transient(self) -> bool {
        matches!(self, Failure::Retry | Failure::Reconnect)
    }
}

/// What a writer should do about `e`: see [`Failure`] for the SQLSTATEs of each class.
/// [`PostgresSink::write_batch`](crate::PostgresSink::write_batch) acts on it. Crate-private:
/// its argument is the `postgres` crate's error, which is not part of fnmetrics' API.
pub(crate) fn classify(e: &postgres::Error) -> Failure {
    let Some(code) = e.code() else {
        return Failure::Reconnect;
    };
    let c = code.code();
    let class = &c[..c.len().min(2)];
    if matches!(class, "22" | "23" | "44") || *code == SqlState::PROGRAM_LIMIT_EXCEEDED {
        Failure::Rows
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE || *code == SqlState::RAISE_EXCEPTION {
        Failure::RowsOrOutage
    } else if matches!(class, "08" | "3D" | "26")
        || c.starts_with("57P")
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        || *code == SqlState::UNDEFINED_TABLE
        || *code == SqlState::UNDEFINED_COLUMN
        || *code == SqlState::FEATURE_NOT_SUPPORTED
    {
        Failure::Reconnect
    } else {
        Failure::Retry
    }
}

/// How tokio-postgres shows an error of its (private) TLS kind.
const TLS_ERROR: &str = "error performing TLS handshake";

/// The first I/O error in `e`'s chain.
fn io_source(e: &postgres::Error) -> Option<&std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = cur {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = s.source();
    }
    None
}

/// Wraps a client error, with `context` as this layer's message and the error as the source.
pub(crate) fn pg_error(context: &str, e: postgres::Error) -> Error {
    Error::with_source(kind_of(&e), context, e)
}

/// A failed connect, with what to do about a certificate that does not verify: the first thing
/// a user meets against a server with a self-signed certificate (`sslmode=prefer`, the
/// default, verifies it too).
pub(crate) fn connect_error(e: postgres::Error) -> Error {
    let certificate = kind_of(&e) == ErrorKind::Auth && e.to_string() == TLS_ERROR;
    let context = if certificate {
        "cannot connect to PostgreSQL: its TLS certificate does not verify (fnmetrics never falls \
         back to plaintext; give the server's CA with a CA file, or set sslmode=disable in the \
         URL for a server that has no valid certificate)"
    } else {
        "cannot connect to PostgreSQL"
    };
    pg_error(context, e)
}
