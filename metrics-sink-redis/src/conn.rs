//! One lazily re-made connection, and how redis errors become fnmetrics errors.

use crate::options::RedisOptions;
use fnmetrics_core::{Error, ErrorKind};
use redis::{Cmd, Connection, FromRedisValue, RedisError, Script};

/// A client, its current connection (if any) and the scripts it uses.
pub(crate) struct Conn {
    client: redis::Client,
    conn: Option<Connection>,
    pub(crate) opts: RedisOptions,
    scripts: &'static [&'static Script],
}

impl std::fmt::Debug for Conn {
    // The URL may hold a password: show only the address and the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.client.get_connection_info().addr)
            .field("connected", &self.conn.is_some())
            .field("opts", &self.opts)
            .finish()
    }
}

impl Conn {
    /// Parses `url`, connects, PINGs and loads `scripts`.
    pub(crate) fn connect(
        url: &str,
        opts: RedisOptions,
        scripts: &'static [&'static Script],
    ) -> Result<Conn, Error> {
        opts.validate()?;
        let client = redis::Client::open(url)
            .map_err(|e| Error::with_source(ErrorKind::InvalidUrl, "invalid Redis URL", e))?;
        let mut conn = Conn {
            client,
            conn: None,
            opts,
            scripts,
        };
        conn.connection()?;
        Ok(conn)
    }

    /// The open connection, or a new one (connected, PINGed, scripts loaded).
    fn connection(&mut self) -> Result<&mut Connection, Error> {
        if self.conn.is_none() {
            let c = self
                .establish()
                .map_err(|e| map_error(e, "cannot connect to Redis"))?;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "no Redis connection"))
    }

    fn establish(&self) -> redis::RedisResult<Connection> {
        let mut c = self
            .client
            .get_connection_with_timeout(self.opts.connect_timeout)?;
        c.set_read_timeout(Some(self.opts.io_timeout))?;
        c.set_write_timeout(Some(self.opts.io_timeout))?;
        redis::cmd("PING").query::<()>(&mut c)?;
        for s in self.scripts {
            s.load(&mut c)?;
        }
        Ok(c)
    }

    /// Runs `f` on the connection (making one if needed). An error the server did not send
    /// (I/O, timeout, a broken reply) drops the connection, so the next call starts afresh
    /// instead of reading a late reply to an old command.
    pub(crate) fn run<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        let c = self.connection()?;
        f(c).map_err(|e| {
            if !is_server_error(&e) {
                self.conn = None;
            }
            map_error(e, what)
        })
    }

    /// EVALSHA `cmd` (built by [`evalsha`]); on NOSCRIPT (a restarted or flushed server) loads
    /// `script` and tries once more. NOSCRIPT means nothing ran, so the retry is safe.
    pub(crate) fn eval<T: FromRedisValue>(
        &mut self,
        what: &str,
        script: &Script,
        cmd: &Cmd,
    ) -> Result<T, Error> {
        self.run(what, |c| match cmd.query(c) {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                script.load(c)?;
                cmd.query(c)
            }
            r => r,
        })
    }
}

/// `EVALSHA <sha> <numkeys>`; the caller adds the keys and arguments.
pub(crate) fn evalsha(script: &Script, numkeys: usize) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(numkeys);
    cmd
}

/// Whether the server sent this error (the connection is still in step).
fn is_server_error(e: &RedisError) -> bool {
    !e.is_io_error() && e.code().is_some()
}

/// Maps a redis error to an fnmetrics error of the right kind, keeping it as the source.
///
/// Timeouts become [`ErrorKind::Timeout`] (the command may or may not have run); other I/O
/// errors, a server still loading its data set and cluster/replica unavailability become
/// [`ErrorKind::Unavailable`]; NOAUTH, WRONGPASS, NOPERM and failed AUTH become
/// [`ErrorKind::Auth`]; WRONGTYPE becomes [`ErrorKind::Schema`]; a URL the client rejects becomes
/// [`ErrorKind::InvalidUrl`]; a reply of an unexpected shape becomes [`ErrorKind::Decode`]; any
/// other error the server sent becomes [`ErrorKind::Server`].
pub(crate) fn map_error(e: RedisError, what: &str) -> Error {
    use redis::ErrorKind as R;
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
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
