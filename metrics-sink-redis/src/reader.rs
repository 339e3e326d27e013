//! Fleet-wide aggregates, read back from the per-function hashes.

use crate::aggregates::{Fleet, Skipped};
use crate::conn::Conn;
use crate::options::RedisOptions;
use fnmetrics_core::{Error, ErrorKind, Snapshot};

/// Reads the aggregates every process flushed to Redis: fleet-wide totals per function.
///
/// ```no_run
/// use fnmetrics::redis::{RedisOptions, RedisReader};
///
/// let mut reader = RedisReader::connect("redis://127.0.0.1/", RedisOptions::default())?;
/// for name in reader.functions()? {
///     if let Some(m) = reader.get(&name)? {
///         println!("{name}: {} calls, p99 {:?}", m.calls, m.quantile(0.99));
///     }
/// }
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisReader {
    conn: Conn,
    /// The hashes [`get_many`](Self::get_many) skipped because they do not decode.
    skipped: Skipped,
}

impl RedisReader {
    /// Parses `url`, connects and PINGs; see [`RedisSink::connect`](crate::RedisSink::connect).
    ///
    /// # Errors
    /// As [`RedisSink::connect`](crate::RedisSink::connect).
    ///
    /// ```no_run
    /// use fnmetrics::redis::{RedisOptions, RedisReader};
    /// let reader = RedisReader::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn connect(url: &str, options: RedisOptions) -> Result<RedisReader, Error> {
        Ok(RedisReader {
            conn: Conn::connect(url, options, &[])?,
            skipped: Skipped::default(),
        })
    }

    /// The fleet-wide metrics of function `name` (its hash `{prefix}{aggregate_prefix}{name}`),
    /// or `None` if no process flushed any.
    ///
    /// # Errors
    /// [`Decode`] if a field is not a non-negative integer (the hash asked for does not decode:
    /// [`get_many`](Self::get_many) skips such a hash instead), [`Schema`] if the key is not a
    /// hash; connection and server errors as
    /// [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// [`Decode`]: fnmetrics_core::ErrorKind::Decode
    /// [`Schema`]: fnmetrics_core::ErrorKind::Schema
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisReader};
    /// # let mut reader = RedisReader::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// if let Some(m) = reader.get("my_app::load_user")? {
    ///     println!("{} calls, {} errors, mean {:?}", m.calls, m.errors, m.mean());
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn get(&mut self, name: &str) -> Result<Option<Snapshot>, Error> {
        let names = [name.to_owned()];
        Ok(self.sum(&names, false)?.pop().flatten())
    }

    /// The fleet-wide metrics of each of `names`, in the same order (`None` where no process
    /// flushed any): as [`get`](Self::get) for each, with the reads pipelined, 10 000 a round
    /// trip, so reading every function of a large fleet takes a few round trips, not one a
    /// function.
    ///
    /// A hash that does not decode (a field that is not a non-negative integer, left by a
    /// foreign or buggy writer) does not hide the others: it comes back as `None`, is counted in
    /// [`skipped`](Self::skipped), and is named in a warning (`log`, target `fnmetrics`) the
    /// first time this reader skips it. On a Redis Cluster, a function with one such share is
    /// skipped whole: the sum of the other shards would be short.
    ///
    /// # Errors
    /// [`Schema`] if a key is not a hash; connection and server errors as
    /// [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// [`Schema`]: fnmetrics_core::ErrorKind::Schema
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisReader};
    /// # let mut reader = RedisReader::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// let names = reader.functions()?;
    /// let fleet: Vec<fnmetrics::Snapshot> = reader.get_many(&names)?.into_iter().flatten().collect();
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn get_many(&mut self, names: &[String]) -> Result<Vec<Option<Snapshot>>, Error> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.sum(names, true)
    }

    /// The aggregates of `names`, each the sum of the shards' shares. `many`: a share that does
    /// not decode is skipped and counted (its function reads as `None`), and a single Redis
    /// at a `redis://` address is read over the fast `HGETALL` connection; otherwise such a
    /// share is an error, and the reads go through redis-rs.
    fn sum(&mut self, names: &[String], many: bool) -> Result<Vec<Option<Snapshot>>, Error> {
        let mut fleet = Fleet::new(names.len(), many.then_some(&mut self.skipped));
        self.conn.ensure().map_err(Error::unsent)?;
        for shard in 0..self.conn.shards() {
            self.conn.read_aggregates(shard, names, &mut fleet, many)?;
            fleet.failed()?;
        }
        Ok(fleet.finish(names.len()))
    }

    /// How many hashes [`get_many`](Self::get_many) skipped because they do not decode, since
    /// this reader was made: each time it skipped one (a hash read twice counts twice). Read it
    /// before and after a call to know what that call skipped.
    ///
    /// ```
    /// # let server = fnmetrics_test_support::redis::RedisServer::start();
    /// # let url = server.url();
    /// # let mut c = server.client();
    /// # redis::cmd("HSET").arg("app:metrics:app::good").arg("calls").arg("3").exec(&mut c)?;
    /// // Another writer left a field that is not a number.
    /// # redis::cmd("HSET").arg("app:metrics:app::bad").arg("calls").arg("banana").exec(&mut c)?;
    /// use fnmetrics::redis::{RedisOptions, RedisReader};
    ///
    /// let mut reader = RedisReader::connect(&url, RedisOptions::default())?;
    /// let names = ["app::bad".to_owned(), "app::good".to_owned()];
    /// let read = reader.get_many(&names)?;
    /// assert!(read[0].is_none());
    /// assert_eq!(read[1].as_ref().map(|m| m.calls), Some(3));
    /// assert_eq!(reader.skipped(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn skipped(&self) -> u64 {
        self.skipped.count
    }

    /// The names of the functions whose aggregates changed since `cursor` (for a new cursor:
    /// every function flushed since the change log began), sorted, and moves `cursor` past
    /// them. Each flush that changes aggregates bumps a version and records it against the
    /// names it touched (`fnmetrics:changes`, a sorted set), so a reader that keeps up with a
    /// large fleet reads only what moved: [`get_many`](Self::get_many) of these names, not of
    /// every function. A name can come back once more than needed (it changed while it was
    /// being read), never less. A log begun anew (a Redis that lost its data) is read whole
    /// again.
    ///
    /// # Errors
    /// [`Decode`] if a stored name is not UTF-8 or a version is not a number; connection and
    /// server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// [`Decode`]: fnmetrics_core::ErrorKind::Decode
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{ChangeCursor, RedisOptions, RedisReader};
    /// # let mut reader = RedisReader::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// let mut cursor = ChangeCursor::default();
    /// let everything = reader.changed(&mut cursor)?;
    /// // ... later: only what was flushed since.
    /// let moved = reader.changed(&mut cursor)?;
    /// let fresh = reader.get_many(&moved)?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn changed(&mut self, cursor: &mut ChangeCursor) -> Result<Vec<String>, Error> {
        self.conn.ensure().map_err(Error::unsent)?;
        let shards = self.conn.shards();
        cursor.versions.resize(usize::from(shards), 0);
        let mut names = std::collections::BTreeSet::new();
        for shard in 0..shards {
            let key = self
                .conn
                .layout()
                .internal(&self.conn.opts, shard, "changes");
            let counter = self
                .conn
                .layout()
                .internal(&self.conn.opts, shard, "version");
            let after = cursor.versions[usize::from(shard)];
            // With the version now: one lower than the cursor's is a log begun anew (a Redis
            // that lost its data, a replica promoted before it had the last flushes), read
            // whole again.
            let (now, found): (Option<u64>, Vec<(Vec<u8>, String)>) =
                self.conn
                    .run_on(shard, "cannot read the changed functions from Redis", |c| {
                        let range = |after: u64| {
                            let mut cmd = redis::cmd("ZRANGEBYSCORE");
                            cmd.arg(&key)
                                .arg(format!("({after}"))
                                .arg("+inf")
                                .arg("WITHSCORES");
                            cmd
                        };
                        let (now, found): (Option<u64>, Vec<(Vec<u8>, String)>) = redis::pipe()
                            .get(&counter)
                            .add_command(range(after))
                            .query(c)?;
                        if now.unwrap_or(0) < after {
                            return Ok((now, range(0).query(c)?));
                        }
                        Ok((now, found))
                    })?;
            if now.unwrap_or(0) < after {
                cursor.versions[usize::from(shard)] = 0;
            }
            for (name, version) in found {
                let version: u64 = version.parse().map_err(|e| {
                    Error::with_source(
                        ErrorKind::Decode,
                        format!("a version in {key} is not a whole number: {version:?}"),
                        e,
                    )
                })?;
                let v = &mut cursor.versions[usize::from(shard)];
                *v = (*v).max(version);
                names.insert(String::from_utf8(name).map_err(|e| {
                    Error::with_source(
                        ErrorKind::Decode,
                        format!("a name in {key} is not UTF-8"),
                        e,
                    )
                })?);
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Removes the aggregates and the names of `names` (functions that no longer exist): each
    /// hash and name together, in a transaction, so no reader sees one without the other.
    /// Returns how many functions had aggregates. A process that still measures one brings it
    /// back with its next flush; history in PostgreSQL stays until retention drops it.
    ///
    /// # Errors
    /// Connection and server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch);
    /// the names before the failing one are removed.
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisReader};
    /// # let mut reader = RedisReader::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// let old: Vec<String> = reader.functions()?.into_iter().filter(|n| n.starts_with("legacy::")).collect();
    /// reader.forget(&old)?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn forget(&mut self, names: &[String]) -> Result<u64, Error> {
        self.conn.ensure().map_err(Error::unsent)?;
        let mut removed = 0;
        for name in names {
            let mut any = false;
            for shard in 0..self.conn.shards() {
                let layout = self.conn.layout();
                let set = layout.internal(&self.conn.opts, shard, "functions");
                let changes = layout.internal(&self.conn.opts, shard, "changes");
                let key = layout.aggregate_hash(&self.conn.opts, shard, name);
                let (hashes, _, _): (u64, u64, u64) = self.conn.run_on(
                    shard,
                    "cannot remove a function's aggregates from Redis",
                    |c| {
                        redis::pipe()
                            .atomic()
                            .del(&key)
                            .srem(&set, name)
                            .zrem(&changes, name)
                            .query(c)
                    },
                )?;
                any |= hashes > 0;
            }
            removed += u64::from(any);
        }
        Ok(removed)
    }

    /// The names of every function any process flushed aggregates for, sorted.
    ///
    /// # Errors
    /// [`Decode`] if a stored name is not UTF-8; connection and server errors as
    /// [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// [`Decode`]: fnmetrics_core::ErrorKind::Decode
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisReader};
    /// # let mut reader = RedisReader::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// let names: Vec<String> = reader.functions()?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn functions(&mut self) -> Result<Vec<String>, Error> {
        self.conn.ensure().map_err(Error::unsent)?;
        let mut names = Vec::new();
        for shard in 0..self.conn.shards() {
            let key = self
                .conn
                .layout()
                .internal(&self.conn.opts, shard, "functions");
            let raw: Vec<Vec<u8>> =
                self.conn
                    .run_on(shard, "cannot read function names from Redis", |c| {
                        redis::cmd("SMEMBERS").arg(&key).query(c)
                    })?;
            for b in raw {
                names.push(String::from_utf8(b).map_err(|e| {
                    Error::with_source(
                        ErrorKind::Decode,
                        format!("a name in {key} is not UTF-8"),
                        e,
                    )
                })?);
            }
        }
        // A cluster's shards share names.
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }
}

/// Where [`RedisReader::changed`] left off: the last flush version read, per shard. A new one
/// (`default()`) is before every change.
///
/// ```
/// let cursor = fnmetrics::redis::ChangeCursor::default();
/// assert_eq!(format!("{cursor:?}"), "ChangeCursor { versions: [] }");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeCursor {
    versions: Vec<u64>,
}
