//! The one error type of fnmetrics.

use std::error::Error as StdError;
use std::fmt;

/// What went wrong, to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A setting is out of range (a zero batch size, say).
    InvalidConfig,
    /// A Redis or PostgreSQL URL could not be parsed.
    InvalidUrl,
    /// A server could not be reached, or the connection broke.
    Unavailable,
    /// The server refused the credentials.
    Auth,
    /// The PostgreSQL table (or a Redis key) exists with another shape than fnmetrics expects.
    Schema,
    /// The server answered a command with an error.
    Server,
    /// Another flusher is already running in this process.
    AlreadyRunning,
    /// The work did not finish within its time limit.
    Timeout,
    /// Stored data could not be decoded.
    Decode,
    /// The flusher thread is gone.
    Stopped,
}

/// An fnmetrics error: a [`ErrorKind`], a message for this layer, and the underlying cause in
/// [`source()`](std::error::Error::source).
///
/// ```
/// use fnmetrics_core::{Error, ErrorKind};
/// let e = Error::new(ErrorKind::InvalidConfig, "batch_size must be at least 1");
/// assert_eq!(e.kind(), ErrorKind::InvalidConfig);
/// assert_eq!(e.to_string(), "batch_size must be at least 1");
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a message.
    ///
    /// ```
    /// let e = fnmetrics_core::Error::new(fnmetrics_core::ErrorKind::Timeout, "flush timed out");
    /// assert!(std::error::Error::source(&e).is_none());
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error of `kind` with a message and the cause.
    ///
    /// ```
    /// use fnmetrics_core::{Error, ErrorKind};
    /// let io = std::io::Error::other("refused");
    /// let e = Error::with_source(ErrorKind::Unavailable, "cannot reach Redis", io);
    /// assert_eq!(std::error::Error::source(&e).unwrap().to_string(), "refused");
    /// ```
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Error {
        Error {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    ///
    /// ```
    /// # use fnmetrics_core::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Auth, "x").kind(), ErrorKind::Auth);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
