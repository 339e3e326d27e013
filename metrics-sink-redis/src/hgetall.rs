//! Pipelined `HGETALL` on a plain TCP connection of its own, each reply decoded straight into a
//! [`Snapshot`]: how the transport reads aggregates for
//! [`RedisReader::get_many`](crate::RedisReader::get_many) on a single Redis at a `redis://`
//! address.
//!
//! `fnmetrics alerts run` reads the hashes of every function that changed, every second. Through
//! redis-rs each field and each value of a reply became a `Value::BulkString(Vec<u8>)` made by a
//! general parser (combine) and freed right after: more than half of the evaluator's CPU. Here the replies
//! are read into one buffer, reused from call to call, and each field and value is looked at
//! where it lies: no allocation per string.
//!
//! Only what this read needs of RESP2 is spoken: commands are arrays of bulk strings, replies are
//! read as arrays, bulk strings, simple strings, errors and integers. Errors come out as
//! redis-rs errors mapped by [`map_error`], so a caller sees the kinds the redis-rs path gives:
//! an error reply (`WRONGTYPE`) is the same [`redis::RedisError`] redis-rs would make of it, an
//! I/O error or a timeout the same `io::Error` inside one.

use crate::aggregates::{add_field, Fleet};
use crate::error::map_error;
use crate::layout::AggregateKeys;
use crate::options::RedisOptions;
use fnmetrics_core::{Error, ErrorKind, Snapshot};
use redis::RedisError;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::{Duration, Instant};

/// What a failed read says, as the redis-rs path says it.
const READING: &str = "cannot read aggregates from Redis";
/// What a failed connect says, as the redis-rs connection (`conn.rs`) says it.
const CONNECTING: &str = "cannot connect to Redis";
/// The buffer replies are read into, to start with and to shrink back to.
const BUFFER: usize = 64 * 1024;
/// Past this, a buffer grown for a big reply is given back after the call.
const KEEP_AT_MOST: usize = 1024 * 1024;
/// The longest simple string or error line accepted.
const MAX_LINE: usize = 64 * 1024;
/// The longest bulk string accepted: Redis' own limit (`proto-max-bulk-len`).
const MAX_BULK: usize = 512 * 1024 * 1024;
/// HGETALLs sent before their replies are read: as the redis-rs path pipelined them.
pub(crate) const PIPELINE: usize = 10_000;

/// A plain TCP connection to a single Redis, used for pipelined `HGETALL` only.
pub(crate) struct HgetallConn {
    stream: TcpStream,
    replies: Replies,
    /// The commands of one round trip, encoded; reused.
    out: Vec<u8>,
}

impl std::fmt::Debug for HgetallConn {
    // The address only: nothing of the credentials is kept here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HgetallConn")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

/// Why a read failed, and whether the connection is still usable.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The server answered with an error reply, and every reply was read: the connection is in
    /// step.
    Answered(Error),
    /// I/O failed, timed out or the server sent something that is not RESP: the connection must
    /// be dropped, a late reply could be read for the next command.
    Broken(Error),
}

impl HgetallConn {
    /// Connects to the TCP address of `info` within [`RedisOptions::connect_timeout`], sends
    /// `AUTH` (with the user name, if any) when there is a password and `SELECT` when the
    /// database is not 0, as redis-rs does; reads and writes then wait at most
    /// [`RedisOptions::io_timeout`].
    ///
    /// Errors are those of connecting through redis-rs (`cannot connect to Redis`): a refused
    /// or unreachable address is [`ErrorKind::Unavailable`], a timeout [`ErrorKind::Timeout`], a
    /// refused password [`ErrorKind::Auth`]. None of them quotes the password.
    pub(crate) fn connect(
        info: &redis::ConnectionInfo,
        opts: &RedisOptions,
    ) -> Result<HgetallConn, Error> {
        let fail = |e: RedisError| map_error(e, CONNECTING);
        let redis::ConnectionAddr::Tcp(host, port) = &info.addr else {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "the fast HGETALL path serves redis:// TCP addresses only",
            ));
        };
        let start = Instant::now();
        let stream = connect_tcp(host, *port, opts.connect_timeout).map_err(fail)?;
        let mut conn = HgetallConn {
            stream,
            replies: Replies::new(),
            out: Vec::with_capacity(BUFFER),
        };
        // AUTH and SELECT wait at most what is left of connect_timeout, together.
        let within_connect_timeout = |conn: &HgetallConn| {
            let left = opts.connect_timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(timed_out("connecting took longer than connect_timeout"));
            }
            conn.set_timeouts(left)
        };
        let info = &info.redis;
        if let Some(password) = &info.password {
            within_connect_timeout(&conn).map_err(fail)?;
            match conn.authenticate(info.username.as_deref(), password) {
                Err(AuthFailure::WrongArity) if info.username.is_some() => {
                    // A Redis older than 6 knows `AUTH password` only; redis-rs retries so too.
                    conn.authenticate(None, password)
                }
                r => r,
            }
            .map_err(|e| fail(e.into()))?;
        }
        if info.db != 0 {
            within_connect_timeout(&conn).map_err(fail)?;
            conn.select(info.db).map_err(fail)?;
        }
        conn.set_timeouts(opts.io_timeout).map_err(fail)?;
        Ok(conn)
    }

    fn set_timeouts(&self, t: Duration) -> Result<(), RedisError> {
        self.stream.set_read_timeout(Some(t))?;
        self.stream.set_write_timeout(Some(t))?;
        Ok(())
    }

    /// `AUTH [username] password`, as redis-rs reports its failures.
    fn authenticate(&mut self, username: Option<&str>, password: &str) -> Result<(), AuthFailure> {
        self.out.clear();
        let args = usize::from(username.is_some()) + 2;
        begin_command(&mut self.out, args);
        push_arg(&mut self.out, &[b"AUTH"]);
        if let Some(user) = username {
            push_arg(&mut self.out, &[user.as_bytes()]);
        }
        push_arg(&mut self.out, &[password.as_bytes()]);
        let sent = self.send();
        // The password is not kept in the buffer longer than needed.
        self.out.fill(0);
        self.out.clear();
        sent.map_err(AuthFailure::Other)?;
        let src = &mut &self.stream;
        let other = |e: Broken| AuthFailure::Other(e.into());
        match self.replies.head(src).map_err(other)? {
            Head::Simple(line) if self.replies.buf[line.clone()] == *b"OK" => Ok(()),
            Head::Error(line) => {
                let text = &self.replies.buf[line];
                if contains(text, b"wrong number of arguments for 'auth' command") {
                    Err(AuthFailure::WrongArity)
                } else {
                    Err(AuthFailure::Other(RedisError::from((
                        redis::ErrorKind::AuthenticationFailed,
                        "Password authentication failed",
                    ))))
                }
            }
            head => {
                self.replies.skip_rest_of(head, src).map_err(other)?;
                Err(AuthFailure::Other(RedisError::from((
                    redis::ErrorKind::ResponseError,
                    "Redis server refused to authenticate, returns Ok() != Value::Okay",
                ))))
            }
        }
    }

    /// `SELECT db`, as redis-rs reports its failure.
    fn select(&mut self, db: i64) -> Result<(), RedisError> {
        self.out.clear();
        begin_command(&mut self.out, 2);
        push_arg(&mut self.out, &[b"SELECT"]);
        push_arg(&mut self.out, &[db.to_string().as_bytes()]);
        self.send()?;
        let src = &mut &self.stream;
        match self.replies.head(src)? {
            Head::Error(line) => Err(RedisError::from((
                redis::ErrorKind::ResponseError,
                "Redis server refused to switch database",
                // Without the `-` and the CRLF.
                String::from_utf8_lossy(&self.replies.buf[line.start + 1..line.end - 2])
                    .into_owned(),
            ))),
            other => Ok(self.replies.skip_rest_of(other, src)?),
        }
    }

    fn send(&mut self) -> Result<(), RedisError> {
        (&self.stream).write_all(&self.out)?;
        Ok(())
    }

    /// The snapshots of `names` into `fleet`, `names[i]`'s at `i` (a hash that does not decode
    /// goes to [`Fleet::undecodable`]), `HGETALL`s sent [`PIPELINE`] at a time, of the hashes
    /// `keys` names.
    ///
    /// In each round trip the first error reply wins, as through redis-rs, where the pipeline
    /// failed on an error reply.
    pub(crate) fn read(
        &mut self,
        keys: &AggregateKeys,
        names: &[String],
        fleet: &mut Fleet<'_>,
    ) -> Result<(), ReadError> {
        let read = names
            .chunks(PIPELINE)
            .enumerate()
            .try_for_each(|(c, chunk)| self.round_trip(keys, chunk, c * PIPELINE, fleet));
        self.replies.shrink();
        read
    }

    /// One round trip: the `HGETALL`s of `names`, the first of them at `first` in `fleet`.
    fn round_trip(
        &mut self,
        keys: &AggregateKeys,
        names: &[String],
        first: usize,
        fleet: &mut Fleet<'_>,
    ) -> Result<(), ReadError> {
        let broken = |e: RedisError| ReadError::Broken(map_error(e, READING));
        self.out.clear();
        for name in names {
            begin_command(&mut self.out, 2);
            push_arg(&mut self.out, &[b"HGETALL"]);
            push_arg(&mut self.out, &keys.parts(name));
        }
        self.send().map_err(broken)?;
        let mut refused = None;
        let src = &mut &self.stream;
        for (at, name) in (first..).zip(names) {
            let reply = self
                .replies
                .hgetall(src, name, keys)
                .map_err(|e| broken(e.into()))?;
            match reply {
                Reply::Hash(m) => fleet.share(at, m),
                Reply::Refused(e) => {
                    refused.get_or_insert(e);
                }
                Reply::Undecodable(e) => fleet.undecodable(at, keys.named(name), e),
            }
        }
        match refused {
            Some(e) => Err(ReadError::Answered(e)),
            None => Ok(()),
        }
    }
}

/// Why `AUTH` failed.
enum AuthFailure {
    /// The server knows `AUTH password` only (older than Redis 6).
    WrongArity,
    Other(RedisError),
}

impl From<AuthFailure> for RedisError {
    fn from(r: AuthFailure) -> RedisError {
        match r {
            AuthFailure::WrongArity => RedisError::from((
                redis::ErrorKind::AuthenticationFailed,
                "Password authentication failed",
            )),
            AuthFailure::Other(e) => e,
        }
    }
}

/// A TCP connection to the first address of `host` that accepts one within `timeout`, as
/// redis-rs makes it (`TCP_NODELAY`).
fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, RedisError> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match connect_one(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => e.into(),
        None => RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "could not resolve to any addresses",
        )),
    })
}

fn connect_one(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(addr, timeout)?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn timed_out(what: &'static str) -> RedisError {
    io::Error::new(io::ErrorKind::TimedOut, what).into()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Appends `*<n>\r\n`: a command of `n` arguments follows.
fn begin_command(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends one argument, the bytes of `parts` one after the other, as a bulk string.
fn push_arg(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.push(b'$');
    push_decimal(out, parts.iter().map(|p| p.len()).sum());
    out.extend_from_slice(b"\r\n");
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The start of a reply, its header line read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Head {
    /// `*<n>`: `n` replies follow (-1: a nil array).
    Array(i64),
    /// `$<n>`: `n` bytes follow (-1: nil).
    Bulk(i64),
    /// `:<n>`.
    Integer,
    /// `+<text>`: where the text lies in the buffer (until the next read).
    Simple(Range<usize>),
    /// `-<text>`: the whole line, `-` to `\r\n`, lies there (until the next read).
    Error(Range<usize>),
}

impl Head {
    /// What a person would call it, for an error message.
    fn what(&self) -> &'static str {
        match self {
            Head::Array(-1) | Head::Bulk(-1) => "nil",
            Head::Array(_) => "an array",
            Head::Bulk(_) => "a bulk string",
            Head::Integer => "an integer",
            Head::Simple(_) => "a simple string",
            Head::Error(_) => "an error",
        }
    }
}

/// What one `HGETALL` answered.
enum Reply {
    /// The snapshot (`None`: the key holds no hash).
    Hash(Option<Snapshot>),
    /// An error reply (`WRONGTYPE`), mapped as the redis-rs path maps it.
    Refused(Error),
    /// A reply that is not a function's hash.
    Undecodable(Error),
}

/// What [`parse_head`] found at the start of the unread bytes.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// The header, and how many bytes it took.
    Head(Head, usize),
    /// More bytes are needed.
    Incomplete,
    /// Not RESP2.
    Invalid(&'static str),
}

/// Parses one header line (`*2\r\n`, `$5\r\n`, `+OK\r\n`, `-ERR ..\r\n`) at the start of `b`;
/// line ranges are offsets into `b`.
fn parse_head(b: &[u8]) -> Parsed {
    let Some(&kind) = b.first() else {
        return Parsed::Incomplete;
    };
    match kind {
        b'+' | b'-' => match b.iter().position(|&c| c == b'\n') {
            None if b.len() > MAX_LINE => Parsed::Invalid("a line longer than 64 KiB"),
            None => Parsed::Incomplete,
            Some(nl) if b[nl - 1] == b'\r' => {
                let head = if kind == b'+' {
                    Head::Simple(1..nl - 1)
                } else {
                    Head::Error(0..nl + 1)
                };
                Parsed::Head(head, nl + 1)
            }
            Some(_) => Parsed::Invalid("a line not ended by CRLF"),
        },
        b'*' | b'$' | b':' => {
            let negative = b.get(1) == Some(&b'-');
            let digits_at = 1 + usize::from(negative);
            let mut n: i64 = 0;
            let mut i = digits_at;
            loop {
                match b.get(i) {
                    None => return Parsed::Incomplete,
                    Some(&d) if d.is_ascii_digit() => {
                        if i - digits_at >= 18 {
                            return Parsed::Invalid("a number of more than 18 digits");
                        }
                        n = n * 10 + i64::from(d - b'0');
                        i += 1;
                    }
                    Some(b'\r') if i > digits_at => break,
                    Some(_) => return Parsed::Invalid("a header that is not a number"),
                }
            }
            match b.get(i + 1) {
                None => return Parsed::Incomplete,
                Some(b'\n') => {}
                Some(_) => return Parsed::Invalid("a line not ended by CRLF"),
            }
            let n = if negative { -n } else { n };
            let head = match kind {
                b'*' if n >= -1 => Head::Array(n),
                b'$' if (-1..=MAX_BULK as i64).contains(&n) => Head::Bulk(n),
                b':' => Head::Integer,
                _ => return Parsed::Invalid("a length out of range"),
            };
            Parsed::Head(head, i + 2)
        }
        _ => Parsed::Invalid("an unknown reply type"),
    }
}

/// Replies read from a stream through a buffer of their own: `buf[pos..end]` is read and not
/// parsed yet.
struct Replies {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

/// Why the stream of replies cannot be read on (the connection must be dropped). Small, unlike
/// a [`RedisError`], which it becomes only when it happens.
#[derive(Debug)]
enum Broken {
    /// Reading failed or timed out, or the server closed the connection.
    Io(io::Error),
    /// The bytes are not RESP2.
    Invalid(&'static str),
}

impl From<io::Error> for Broken {
    fn from(e: io::Error) -> Broken {
        Broken::Io(e)
    }
}

impl From<Broken> for RedisError {
    /// As redis-rs reports the same: an I/O error inside, or a parse error.
    fn from(b: Broken) -> RedisError {
        match b {
            Broken::Io(e) => e.into(),
            Broken::Invalid(what) => RedisError::from((
                redis::ErrorKind::ParseError,
                "invalid RESP reply",
                what.to_owned(),
            )),
        }
    }
}

/// A bulk string that lies whole at the start of `b`: where its bytes start, and how many.
/// (Lengths of up to 9 digits: longer ones take [`Replies::head`].)
#[inline]
fn bulk_in(b: &[u8]) -> Option<(usize, usize)> {
    let rest = b.strip_prefix(b"$")?;
    let digits = rest
        .iter()
        .take(9)
        .take_while(|d| d.is_ascii_digit())
        .count();
    let len = rest[..digits]
        .iter()
        .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
    let at = 1 + digits + 2;
    let whole =
        digits > 0 && b.get(at - 2..at)? == b"\r\n" && b.get(at + len..at + len + 2)? == b"\r\n";
    whole.then_some((at, len))
}

impl Replies {
    fn new() -> Replies {
        Replies {
            buf: vec![0; BUFFER],
            pos: 0,
            end: 0,
        }
    }

    /// Gives back the memory of a buffer grown for a big reply, when nothing is left unread.
    fn shrink(&mut self) {
        if self.buf.len() > KEEP_AT_MOST && self.pos == self.end {
            *self = Replies::new();
        }
    }

    /// Reads until at least `n` unread bytes are in the buffer (moving them to its start, and
    /// growing it if they do not fit).
    #[cold]
    fn fill(&mut self, src: &mut impl Read, n: usize) -> Result<(), Broken> {
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.buf.len() < n {
            self.buf.resize(n.next_power_of_two(), 0);
        }
        while self.end < n {
            match src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )
                    .into())
                }
                Ok(got) => self.end += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The next header.
    #[inline]
    fn head(&mut self, src: &mut impl Read) -> Result<Head, Broken> {
        loop {
            match parse_head(&self.buf[self.pos..self.end]) {
                Parsed::Head(mut head, used) => {
                    if let Head::Simple(r) | Head::Error(r) = &mut head {
                        *r = r.start + self.pos..r.end + self.pos;
                    }
                    self.pos += used;
                    return Ok(head);
                }
                Parsed::Incomplete => {
                    let have = self.end - self.pos;
                    self.fill(src, have + 1)?;
                }
                Parsed::Invalid(what) => return Err(Broken::Invalid(what)),
            }
        }
    }

    /// The `n` bytes of a bulk string whose header was read: where they lie in the buffer
    /// (until the next read).
    #[inline]
    fn payload(&mut self, src: &mut impl Read, n: usize) -> Result<Range<usize>, Broken> {
        if self.end - self.pos < n + 2 {
            self.fill(src, n + 2)?;
        }
        let at = self.pos;
        if &self.buf[at + n..at + n + 2] != b"\r\n" {
            return Err(Broken::Invalid("a bulk string not ended by CRLF"));
        }
        self.pos += n + 2;
        Ok(at..at + n)
    }

    /// The next bulk string, where it lies in the buffer (until the next read); or the header
    /// of what came instead.
    #[inline]
    fn bulk(&mut self, src: &mut impl Read) -> Result<Result<Range<usize>, Head>, Broken> {
        // Most often the whole `$<len>\r\n<bytes>\r\n` is in the buffer already.
        if let Some((at, len)) = bulk_in(&self.buf[self.pos..self.end]) {
            let start = self.pos + at;
            self.pos = start + len + 2;
            return Ok(Ok(start..start + len));
        }
        match self.head(src)? {
            Head::Bulk(n) if n >= 0 => Ok(Ok(self.payload(src, n as usize)?)),
            head => Ok(Err(head)),
        }
    }

    /// Reads past what is left of a reply that started with `head`.
    fn skip_rest_of(&mut self, head: Head, src: &mut impl Read) -> Result<(), Broken> {
        let mut left: u64 = 0;
        let mut head = head;
        loop {
            match head {
                Head::Array(n) => left += n.max(0) as u64,
                Head::Bulk(n) if n >= 0 => {
                    self.payload(src, n as usize)?;
                }
                _ => {}
            }
            if left == 0 {
                return Ok(());
            }
            left -= 1;
            head = self.head(src)?;
        }
    }

    /// One `HGETALL` reply for function `name`, decoded as
    /// [`decode`](crate::aggregates::decode) decodes redis-rs's.
    fn hgetall(
        &mut self,
        src: &mut impl Read,
        name: &str,
        keys: &AggregateKeys,
    ) -> Result<Reply, Broken> {
        let key = keys.named(name);
        let bad = |what: String| Reply::Undecodable(Error::new(ErrorKind::Decode, what));
        let n = match self.head(src)? {
            Head::Array(0) => return Ok(Reply::Hash(None)),
            Head::Array(n) if n > 0 && n % 2 == 0 => n / 2,
            Head::Error(line) => {
                let e = match redis::parse_redis_value(&self.buf[line])
                    .and_then(|v| v.extract_error())
                {
                    Err(e) => e,
                    Ok(_) => Broken::Invalid("an error reply that is not one").into(),
                };
                return Ok(Reply::Refused(map_error(e, READING)));
            }
            head @ Head::Array(n) if n > 0 => {
                self.skip_rest_of(head, src)?;
                return Ok(bad(format!(
                    "{key} answered HGETALL with an odd number of fields and values ({n})"
                )));
            }
            head => {
                let what = head.what();
                self.skip_rest_of(head, src)?;
                return Ok(bad(format!("{key} answered HGETALL with {what}")));
            }
        };
        let mut m = Snapshot::new(name);
        for left in (0..n).rev() {
            let f = match self.bulk(src)? {
                Ok(f) => f,
                Err(head) => {
                    let what = head.what();
                    self.skip_rest_of(head, src)?;
                    self.skip_rest_of(Head::Array(2 * left + 1), src)?;
                    return Ok(bad(format!(
                        "{key} answered HGETALL with {what} for a field"
                    )));
                }
            };
            let added = if let Some((at, len)) = bulk_in(&self.buf[self.pos..self.end]) {
                // The value is whole in the buffer too (most often): both are read in place.
                let v = self.pos + at..self.pos + at + len;
                self.pos = v.end + 2;
                add_field(&mut m, key, &self.buf[f], &self.buf[v])
            } else {
                // Reading the value moves the buffer: the field is copied aside first.
                let f = self.buf[f].to_vec();
                let v = match self.bulk(src)? {
                    Ok(v) => v,
                    Err(head) => {
                        let what = head.what();
                        self.skip_rest_of(head, src)?;
                        self.skip_rest_of(Head::Array(2 * left), src)?;
                        return Ok(bad(format!(
                            "{key} answered HGETALL with {what} for the value of field {}",
                            String::from_utf8_lossy(&f)
                        )));
                    }
                };
                add_field(&mut m, key, &f, &self.buf[v])
            };
            if let Err(e) = added {
                self.skip_rest_of(Head::Array(2 * left), src)?;
                return Ok(Reply::Undecodable(e));
            }
        }
        Ok(Reply::Hash(Some(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes `step` at a time: every read boundary gets crossed.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// The aggregate hashes of a single Redis with the default options.
    fn aggregates() -> AggregateKeys {
        crate::layout::Layout::Single.aggregates(&RedisOptions::default(), 0)
    }

    fn bulk(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_arg(&mut out, &[s]);
        out
    }

    fn hash(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", pairs.len() * 2).into_bytes();
        for (f, v) in pairs {
            out.extend(bulk(f.as_bytes()));
            out.extend(bulk(v.as_bytes()));
        }
        out
    }

    /// Decodes `bytes` as replies for `names`, `step` bytes a read.
    fn decode_all(bytes: &[u8], names: &[&str], step: usize) -> Vec<Result<Reply, Broken>> {
        let mut src = Trickle { bytes, step };
        let mut r = Replies::new();
        let keys = aggregates();
        let out = names
            .iter()
            .map(|n| r.hgetall(&mut src, n, &keys))
            .collect();
        assert_eq!(r.pos, r.end, "bytes left unread");
        out
    }

    fn snapshot(r: &Result<Reply, Broken>) -> Option<&Snapshot> {
        match r {
            Ok(Reply::Hash(m)) => m.as_ref(),
            Ok(Reply::Refused(e) | Reply::Undecodable(e)) => panic!("{e}"),
            Err(e) => panic!("{e:?}"),
        }
    }

    fn error(r: &Result<Reply, Broken>) -> (bool, &Error) {
        match r {
            Ok(Reply::Refused(e)) => (true, e),
            Ok(Reply::Undecodable(e)) => (false, e),
            Ok(Reply::Hash(m)) => panic!("decoded: {m:?}"),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn commands_are_encoded_as_redis_rs_encodes_them() {
        let mut out = Vec::new();
        begin_command(&mut out, 2);
        push_arg(&mut out, &[b"HGETALL"]);
        push_arg(&mut out, &[b"p:", b"app:metrics:", "f ✓".as_bytes()]);
        begin_command(&mut out, 3);
        push_arg(&mut out, &[b"AUTH"]);
        push_arg(&mut out, &[b""]);
        push_arg(&mut out, &[&[b'x'; 1234]]);
        let mut expected = redis::cmd("HGETALL")
            .arg("p:app:metrics:f ✓")
            .get_packed_command();
        expected.extend(
            redis::cmd("AUTH")
                .arg("")
                .arg(&[b'x'; 1234][..])
                .get_packed_command(),
        );
        assert_eq!(out, expected);
        for n in [0, 7, 10, 99, 12_345, usize::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn headers_parse_and_wait_for_their_crlf() {
        use Parsed::*;
        assert_eq!(parse_head(b"*2\r\n$"), Head(self::Head::Array(2), 4));
        assert_eq!(parse_head(b"*-1\r\n"), Head(self::Head::Array(-1), 5));
        assert_eq!(parse_head(b"$0\r\n\r\n"), Head(self::Head::Bulk(0), 4));
        assert_eq!(parse_head(b":-42\r\n"), Head(self::Head::Integer, 6));
        assert_eq!(parse_head(b"+OK\r\n"), Head(self::Head::Simple(1..3), 5));
        assert_eq!(parse_head(b"+\r\n"), Head(self::Head::Simple(1..1), 3));
        assert_eq!(parse_head(b"-ERR x\r\n"), Head(self::Head::Error(0..8), 8));
        for partial in [
            &b""[..],
            b"*",
            b"*1",
            b"*12\r",
            b"$-",
            b"+OK",
            b"+OK\r",
            b"-E",
        ] {
            assert_eq!(parse_head(partial), Incomplete, "{partial:?}");
        }
        for bad in [
            &b"x\r\n"[..],
            b"*\r\n",
            b"*-\r\n",
            b"*1x\r\n",
            b"*1\rx",
            b"*-2\r\n",
            b"$-2\r\n",
            b"$1234567890123456789\r\n",
            b"+OK\n",
        ] {
            assert!(matches!(parse_head(bad), Invalid(_)), "{bad:?}");
        }
    }

    #[test]
    fn hashes_decode_across_every_read_boundary() {
        let mut bytes = hash(&[
            ("calls", "3"),
            ("b40", "2"),
            ("errors", "1"),
            ("b7", "1"),
            ("min_ns", "18446744073709551615"),
            ("a_newer_field", "9"),
        ]);
        bytes.extend(b"*0\r\n");
        let long = "x".repeat(100);
        bytes.extend(hash(&[(&long, "1"), ("b99999", "5"), ("calls", "007")]));
        let mut expected = Snapshot::new("f");
        (expected.calls, expected.errors, expected.min_ns) = (3, 1, u64::MAX);
        expected.histogram_mut().add_to_bucket(40, 2);
        expected.histogram_mut().add_to_bucket(7, 1);
        let mut third = Snapshot::new("h");
        third.calls = 7;
        for step in [1, 2, 3, 7, 64, 1 << 20] {
            let got = decode_all(&bytes, &["f", "g", "h"], step);
            assert_eq!(snapshot(&got[0]), Some(&expected), "step {step}");
            assert_eq!(snapshot(&got[1]), None);
            assert_eq!(snapshot(&got[2]), Some(&third));
        }
    }

    #[test]
    fn a_reply_that_does_not_decode_is_read_to_its_end() {
        let mut bytes = hash(&[("calls", "3"), ("errors", "three"), ("b1", "1")]);
        bytes.extend(hash(&[("calls", "-1")]));
        bytes.extend(hash(&[("calls", "18446744073709551616")]));
        bytes.extend(b"*3\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n");
        bytes.extend(b"*2\r\n$5\r\ncalls\r\n*2\r\n:1\r\n$2\r\nxy\r\n");
        bytes.extend(b"*4\r\n*1\r\n+x\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n1\r\n");
        bytes.extend(b"*2\r\n$5\r\ncalls\r\n$-1\r\n");
        bytes.extend(b":3\r\n$3\r\nabc\r\n+OK\r\n*-1\r\n");
        bytes.extend(hash(&[("calls", "5")]));
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "ok"];
        for step in [1, 5, 1 << 20] {
            let got = decode_all(&bytes, &names, step);
            let messages: Vec<String> = got[..11]
                .iter()
                .map(|r| {
                    let (refused, e) = error(r);
                    assert!(!refused);
                    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
                    e.to_string()
                })
                .collect();
            assert!(messages[0].contains("field errors of app:metrics:a"));
            assert!(messages[0].contains("\"three\""), "{}", messages[0]);
            assert!(messages[3].contains("odd number"), "{}", messages[3]);
            assert!(messages[4].contains("an array for the value of field calls"));
            assert!(
                messages[5].contains("an array for a field"),
                "{}",
                messages[5]
            );
            assert!(messages[6].contains("nil for the value"), "{}", messages[6]);
            assert!(messages[7].contains("with an integer"), "{}", messages[7]);
            assert!(
                messages[8].contains("with a bulk string"),
                "{}",
                messages[8]
            );
            assert!(
                messages[9].contains("with a simple string"),
                "{}",
                messages[9]
            );
            assert!(messages[10].contains("with nil"), "{}", messages[10]);
            assert_eq!(snapshot(&got[11]).map(|m| m.calls), Some(5));
        }
    }

    #[test]
    fn an_error_reply_is_the_error_redis_rs_makes_of_it() {
        let mut bytes =
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n".to_vec();
        bytes.extend(b"-NOPERM no permissions\r\n-ERR something else\r\n");
        bytes.extend(hash(&[("calls", "1")]));
        let got = decode_all(&bytes, &["a", "b", "c", "d"], 3);
        let kinds: Vec<ErrorKind> = got[..3]
            .iter()
            .map(|r| {
                let (refused, e) = error(r);
                assert!(refused);
                e.kind()
            })
            .collect();
        assert_eq!(
            kinds,
            [ErrorKind::Schema, ErrorKind::Auth, ErrorKind::Server]
        );
        let (_, e) = error(&got[0]);
        let source = std::error::Error::source(e).expect("the redis error");
        let redis = source.downcast_ref::<RedisError>().expect("a redis error");
        assert_eq!(redis.code(), Some("WRONGTYPE"));
        assert_eq!(snapshot(&got[3]).map(|m| m.calls), Some(1));
    }

    #[test]
    fn a_stream_that_breaks_or_is_not_resp_is_an_error_of_the_connection() {
        let keys = aggregates();
        let cut = hash(&[("calls", "1"), ("errors", "0")]);
        for end in 0..cut.len() {
            let mut src = Trickle {
                bytes: &cut[..end],
                step: 3,
            };
            let e = Replies::new().hgetall(&mut src, "f", &keys).err().unwrap();
            let e = RedisError::from(e);
            assert!(e.is_io_error(), "{end}: {e}");
            assert_eq!(map_error(e, READING).kind(), ErrorKind::Unavailable);
        }
        for bad in [&b"?\r\n"[..], b"*2\r\n$1\r\nab\r\n", b"$99999999999\r\n"] {
            let mut src = Trickle {
                bytes: bad,
                step: 64,
            };
            let e = Replies::new().hgetall(&mut src, "f", &keys).err().unwrap();
            let e = RedisError::from(e);
            assert_eq!(e.kind(), redis::ErrorKind::ParseError, "{bad:?}");
        }
    }

    #[test]
    fn a_grown_buffer_is_given_back() {
        let long = "x".repeat(3 << 20);
        let mut bytes = hash(&[(&long, "1"), ("calls", "2")]);
        bytes.extend(hash(&[("calls", "3")]));
        let mut src = Trickle {
            bytes: &bytes,
            step: 1 << 16,
        };
        let mut r = Replies::new();
        let keys = aggregates();
        let got = r.hgetall(&mut src, "big", &keys);
        assert_eq!(snapshot(&got).map(|m| m.calls), Some(2));
        assert!(r.buf.len() > KEEP_AT_MOST);
        let got = r.hgetall(&mut src, "f", &keys);
        assert_eq!(snapshot(&got).map(|m| m.calls), Some(3));
        r.shrink();
        assert_eq!(r.buf.len(), BUFFER);
    }

    #[test]
    fn hash_keys_are_named_as_the_layout_names_them() {
        let opts = RedisOptions::default()
            .with_key_prefix("p:")
            .with_aggregate_prefix("agg:");
        let layout = crate::layout::Layout::Single;
        let keys = layout.aggregates(&opts, 0);
        let name = "app::f ✓";
        assert_eq!(keys.named(name).to_string(), "p:agg:app::f ✓");
        assert_eq!(keys.parts(name).concat(), "p:agg:app::f ✓".as_bytes());
        assert_eq!(keys.key(name), layout.aggregate_hash(&opts, 0, name));
    }
}
