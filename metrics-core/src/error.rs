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
    /// Per-call entries were dropped: calls made them faster than they could be written, and
    /// the memory bound (`max_pending_entries`) was reached. The calls are still counted.
    Overloaded,
    /// The server refused this data for good (a constraint, an encoding, a size limit): retrying
    /// the same data cannot succeed, so it is set aside as a dead letter.
    Rejected,
    /// The server's data is laid out by a newer fnmetrics (a schema version this build does not
    /// know, met during a rolling upgrade): this process leaves that work to the newer ones and
    /// goes on with the rest. Not transient, but not a reason to fail a start either.
    Superseded,
}

impl ErrorKind {
    /// Whether trying the same work again later may succeed (a connection, a timeout, a server
    /// restarting), as opposed to a setting or data that must change first.
    ///
    /// ```
    /// use fnmetrics::ErrorKind;
    /// assert!(ErrorKind::Unavailable.is_transient());
    /// assert!(!ErrorKind::Rejected.is_transient());
    /// ```
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Server
        )
    }

    /// Whether this error, as a stage's first answer, fails `Flusher::start`: a definitive
    /// refusal (bad credentials, an incompatible table), not a server that is merely down or
    /// busy, and not [`ErrorKind::Superseded`] (newer processes do that work).
    ///
    /// ```
    /// use fnmetrics::ErrorKind;
    /// assert!(ErrorKind::Auth.fails_start());
    /// assert!(!ErrorKind::Unavailable.fails_start());
    /// assert!(!ErrorKind::Superseded.fails_start());
    /// ```
    pub fn fails_start(self) -> bool {
        !self.is_transient() && self != ErrorKind::Superseded
    }
}

/// An fnmetrics error: a [`ErrorKind`], a message for this layer, and the underlying cause in
/// [`source()`](std::error::Error::source).
///
/// ```
/// use fnmetrics::{Error, ErrorKind};
/// let e = Error::new(ErrorKind::InvalidConfig, "batch_size must be at least 1");
/// assert_eq!(e.kind(), ErrorKind::InvalidConfig);
/// assert_eq!(e.to_string(), "batch_size must be at least 1");
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    unsent: bool,
}

impl Error {
    /// An error of `kind` with a message.
    ///
    /// ```
    /// let e = fnmetrics::Error::new(fnmetrics::ErrorKind::Timeout, "flush timed out");
    /// assert!(std::error::Error::source(&e).is_none());
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
            unsent: false,
        }
    }

    /// An error of `kind` with a message and the cause.
    ///
    /// ```
    /// use fnmetrics::{Error, ErrorKind};
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
            unsent: false,
        }
    }

    /// What went wrong.
    ///
    /// ```
    /// # use fnmetrics::{Error, ErrorKind};
    /// assert_eq!(Error::new(ErrorKind::Auth, "x").kind(), ErrorKind::Auth);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Marks the error as happening before the request left this process (no connection could
    /// be made, a check refused it), so the server certainly applied nothing. Without the mark,
    /// a failed write may or may not have been applied (a timeout after sending, say).
    ///
    /// ```
    /// use fnmetrics::{Error, ErrorKind};
    /// let e = Error::new(ErrorKind::Unavailable, "connection refused").unsent();
    /// assert!(e.is_unsent());
    /// assert!(!Error::new(ErrorKind::Timeout, "no reply").is_unsent());
    /// ```
    pub fn unsent(mut self) -> Error {
        self.unsent = true;
        self
    }

    /// Whether [`Error::unsent`] marked this error: nothing was applied.
    ///
    /// ```
    /// # use fnmetrics::{Error, ErrorKind};
    /// assert!(!Error::new(ErrorKind::Server, "x").is_unsent());
    /// ```
    pub fn is_unsent(&self) -> bool {
        self.unsent
    }

    /// This error and its sources, `a: b: c`, for a log line: what `{}` prints.
    ///
    /// ```
    /// use fnmetrics::{Error, ErrorKind};
    /// let io = std::io::Error::other("refused");
    /// let e = Error::with_source(ErrorKind::Unavailable, "cannot reach Redis", io);
    /// assert_eq!(e.chain(), "cannot reach Redis: refused");
    /// ```
    pub fn chain(&self) -> String {
        let mut s = String::new();
        self.write_chain(&mut s).expect("a String takes any write");
        s
    }

    /// Writes `message: cause: cause`. A cause whose text the line already holds is left out:
    /// many errors print their own source in their message too (a driver's "db error: ERROR:
    /// x" whose source is "ERROR: x").
    fn write_chain(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut line = self.message.clone();
        let mut cur = StdError::source(self);
        while let Some(c) = cur {
            let text = c.to_string();
            if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            // An fnmetrics error's own Display already holds its sources.
            if c.is::<Error>() {
                break;
            }
            cur = c.source();
        }
        out.write_str(&line)
    }

    /// This layer's message alone, without the causes (`{:#}` prints the same).
    ///
    /// ```
    /// use fnmetrics::{Error, ErrorKind};
    /// let e = Error::with_source(ErrorKind::Unavailable, "cannot reach Redis", std::io::Error::other("refused"));
    /// assert_eq!(e.message(), "cannot reach Redis");
    /// assert_eq!(format!("{e:#}"), "cannot reach Redis");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
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

/// `{}` prints the whole chain, `message: cause: cause` ([`Error::chain`]): the first thing a
/// user prints should say why, not only what. `{:#}` prints this layer's message alone, for
/// reporters that walk [`source()`](std::error::Error::source) themselves (as `anyhow`'s `{:#}`
/// and `eyre` do).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.write_str(&self.message)
        } else {
            self.write_chain(f)
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
