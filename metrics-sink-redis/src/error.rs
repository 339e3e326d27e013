//! How redis errors become fnmetrics errors, for every connection of the crate (redis-rs's,
//! the cluster router's and the plain `HGETALL` reader's).

use fnmetrics_core::{Error, ErrorKind};
use redis::RedisError;

/// Whether the server sent this error (the connection is still in step).
pub(crate) fn is_server_error(e: &RedisError) -> bool {
    !e.is_io_error() && e.code().is_some()
}

/// Maps a redis error to an fnmetrics error of the right kind, keeping it as the source.
///
/// A failed TLS handshake (the server's certificate does not chain to the system's roots or the
/// [`ca_file`](crate::RedisOptions::ca_file), does not name the URL's host or has expired; the server
/// refuses the handshake or does not speak TLS) becomes [`ErrorKind::Auth`]: the server could
/// not prove who it is, and trying again will not change that. TLS that cannot be set up before
/// connecting (unreadable system roots) becomes [`ErrorKind::InvalidConfig`].
/// Timeouts become [`ErrorKind::Timeout`] (the command may or may not have run); other I/O
/// errors, a server still loading its data set and cluster/replica unavailability become
/// [`ErrorKind::Unavailable`]; NOAUTH, WRONGPASS, NOPERM and failed AUTH become
/// [`ErrorKind::Auth`]; WRONGTYPE becomes [`ErrorKind::Schema`]; a URL the client rejects becomes
/// [`ErrorKind::InvalidUrl`]; a reply of an unexpected shape becomes [`ErrorKind::Decode`]; any
/// other error the server sent becomes [`ErrorKind::Server`].
pub(crate) fn map_error(e: RedisError, what: &str) -> Error {
    use redis::ErrorKind as R;
    #[cfg(feature = "tls")]
    if rustls_error(&e).is_some() {
        return Error::with_source(ErrorKind::Auth, format!("{what}: TLS handshake failed"), e);
    }
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_io_error() && std::error::Error::source(&e).is_none() {
        // redis-rs makes I/O errors without an `io::Error` only for TLS set-up that failed
        // before connecting (`From<rustls::Error>`, loading the system's roots).
        ErrorKind::InvalidConfig
    } else if e.is_io_error() {
        ErrorKind::Unavailable
    } else {
        match e.kind() {
            R::AuthenticationFailed => ErrorKind::Auth,
            R::InvalidClientConfig => ErrorKind::InvalidUrl,
            R::TypeError => ErrorKind::Decode,
            R::BusyLoadingError
            | R::TryAgain
            | R::ClusterDown
            | R::MasterDown
            | R::ClusterConnectionNotFound => ErrorKind::Unavailable,
            _ => match e.code() {
                Some("NOAUTH" | "WRONGPASS" | "NOPERM") => ErrorKind::Auth,
                Some("WRONGTYPE") => ErrorKind::Schema,
                _ => ErrorKind::Server,
            },
        }
    };
    Error::with_source(kind, what, e)
}

#[cfg(feature = "tls")]
/// The rustls error in `e`'s source chain, if any. rustls reports a failed handshake (a
/// certificate that does not verify, an alert from the server) as an `io::Error` wrapping
/// a `rustls::Error`, which `io::Error::source` skips, hence `get_ref`.
fn rustls_error(e: &redis::RedisError) -> Option<&rustls::Error> {
    let mut next = std::error::Error::source(e);
    while let Some(err) = next {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(t) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(t);
        }
        next = err.source();
    }
    None
}
