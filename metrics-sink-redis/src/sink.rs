//! Stage 1: a flush into Redis as one script, guarded by its flush id.

use crate::codec::encode_frames;
use crate::conn::{evalsha, with_script, Conn};
use crate::layout::FlushIds;
use crate::options::RedisOptions;
use fnmetrics_core::{Error, ErrorKind, FieldKind, FlushBatch, Sink};
use redis::{Cmd, Script};
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

/// The flush into a single Redis: flush ids as a key each, which expires (the seed's layout).
/// The two flush scripts share `flush_body.lua` and differ only in how they remember flush ids:
/// a key a flush with a TTL here; a sorted set trimmed by server time, and a write even for a
/// retry (so that a `WAIT` after it covers the flush it found), in a cluster's shard
/// (`docs/cluster.md` §4.2).
static FLUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/flush_body.lua"),
        include_str!("lua/flush.lua")
    ))
});
/// The flush into one shard of a Redis Cluster (`docs/cluster.md` §5.2): flush ids in a sorted
/// set of the shard instead of a key each.
static FLUSH_SHARD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/flush_body.lua"),
        include_str!("lua/flush_shard.lua")
    ))
});

/// Whether [`RedisSink::write_batch`] applied the flush or found it applied before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The flush was applied now.
    Applied,
    /// A flush with this id was applied before (a retry); nothing changed.
    AlreadyApplied,
}

/// Stage 1 into Redis: appends the entries of a flush to the entry list and adds its aggregate
/// deltas to the per-function hashes, atomically and at most once per flush id.
///
/// A flush is one `EVALSHA` of one script (`lua/flush.lua`), one round trip. The script returns
/// at once if the flush-id key `{prefix}fnmetrics:flush:<hex id>` exists (the flush was applied
/// before: a retry changes nothing); otherwise it checks every key and field it will touch (a
/// key of the wrong type fails the flush before anything is written), then sets the flush-id
/// key with a TTL ([`RedisOptions::flush_id_ttl`]), pushes the entries, and adds the aggregate
/// deltas (min/max compared exactly, as decimal strings). Every key it touches is passed as a
/// key of the script. On a Redis Cluster the flush goes to the shard its id picks, where the
/// same script body remembers ids in a sorted set and waits for a replica (`docs/cluster.md`
/// §5); the code that writes it is the same.
///
/// The entries of a flush travel as one argument, a frame (see [`decode_element`]), pushed as
/// one list element: Lua copies it once instead of turning every entry into a string of its own,
/// so the script costs about what a plain pipelined `RPUSH` does (a script that took each entry
/// as an argument reached only 0.6–0.9 M entries/s on this project's 2-core machine). A frame
/// names its entries' source (service and host) once; a batch whose entries come from several
/// sources (a custom stage 1 may build one) travels as one frame per run of entries with the
/// same source, pushed by the same `RPUSH`.
///
/// A connection that breaks is re-made on the next call; since the flusher retries the same
/// batch, the flush-id key makes that safe. At connect, a `maxmemory-policy` that may evict
/// keys is logged as a warning: an evicted flush-id key would let a retry apply twice, and
/// evicted entries are lost.
///
/// [`decode_element`]: crate::wire::decode_element
///
/// ```no_run
/// use fnmetrics::sink::{FlushBatch, Sink};
/// use fnmetrics::redis::{RedisOptions, RedisSink};
///
/// let mut sink = RedisSink::connect("redis://127.0.0.1:6379/", RedisOptions::default())?;
/// sink.write(&FlushBatch { flush_id: [1; 16], entries: vec![], aggregates: vec![] })?;
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisSink {
    conn: Conn,
    /// The frames of the current flush, one after the other, reused.
    frames: Vec<u8>,
    /// Where each frame ends in `frames`.
    frame_ends: Vec<usize>,
}

impl RedisSink {
    /// Parses `url` (`redis://[[user]:password@]host[:port][/db]`), connects within
    /// [`RedisOptions::connect_timeout`], PINGs and loads the aggregate script.
    ///
    /// # Errors
    /// [`InvalidConfig`] for bad options, [`InvalidUrl`] if the URL cannot be parsed,
    /// [`Unavailable`] if nothing answers, [`Timeout`] if the server is too slow, [`Auth`] if it
    /// refuses the credentials.
    ///
    /// [`InvalidConfig`]: fnmetrics_core::ErrorKind::InvalidConfig
    /// [`InvalidUrl`]: fnmetrics_core::ErrorKind::InvalidUrl
    /// [`Unavailable`]: fnmetrics_core::ErrorKind::Unavailable
    /// [`Timeout`]: fnmetrics_core::ErrorKind::Timeout
    /// [`Auth`]: fnmetrics_core::ErrorKind::Auth
    ///
    /// ```no_run
    /// use fnmetrics::redis::{RedisOptions, RedisSink};
    /// let sink = RedisSink::connect(
    ///     "redis://:secret@127.0.0.1:6379/0",
    ///     RedisOptions::default().with_key_prefix("shop:"),
    /// )?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn connect(url: &str, options: RedisOptions) -> Result<RedisSink, Error> {
        let mut sink = RedisSink::new(url, options)?;
        Sink::connect(&mut sink)?;
        Ok(sink)
    }

    /// Parses `url` and checks the options, without connecting: the first write (or
    /// [`Sink::connect`]) connects. For a process that must start while Redis is down.
    ///
    /// # Errors
    /// [`InvalidConfig`] for bad options, [`InvalidUrl`] if the URL cannot be parsed.
    ///
    /// [`InvalidConfig`]: fnmetrics_core::ErrorKind::InvalidConfig
    /// [`InvalidUrl`]: fnmetrics_core::ErrorKind::InvalidUrl
    ///
    /// ```
    /// use fnmetrics::redis::{RedisOptions, RedisSink};
    /// // Nothing listens on port 1: no error until the first write.
    /// let sink = RedisSink::new("redis://127.0.0.1:1/", RedisOptions::default())?;
    /// let err = RedisSink::new("redis://host:notaport/", RedisOptions::default()).unwrap_err();
    /// assert_eq!(err.kind(), fnmetrics::ErrorKind::InvalidUrl);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn new(url: &str, options: RedisOptions) -> Result<RedisSink, Error> {
        static SCRIPTS: LazyLock<[&'static Script; 1]> = LazyLock::new(|| [&*FLUSH]);
        let conn = Conn::new(url, options, &*SCRIPTS)?;
        Ok(RedisSink {
            conn,
            frames: Vec::new(),
            frame_ends: Vec::new(),
        })
    }

    /// Applies `batch` like [`Sink::write`], and says whether it was applied now or before. An
    /// empty batch (no entries, no aggregates) is not sent.
    ///
    /// # Errors
    /// [`Unavailable`] or [`Timeout`] when the connection fails (the flush may or may not have
    /// been applied; retry the same batch), [`Schema`] if a key holds another type than
    /// fnmetrics writes (nothing was written), [`Auth`] or [`Server`] for other refusals.
    ///
    /// [`Unavailable`]: fnmetrics_core::ErrorKind::Unavailable
    /// [`Timeout`]: fnmetrics_core::ErrorKind::Timeout
    /// [`Schema`]: fnmetrics_core::ErrorKind::Schema
    /// [`Auth`]: fnmetrics_core::ErrorKind::Auth
    /// [`Server`]: fnmetrics_core::ErrorKind::Server
    ///
    /// ```no_run
    /// use fnmetrics::sink::FlushBatch;
    /// use fnmetrics::Snapshot;
    /// use fnmetrics::redis::{RedisOptions, RedisSink, WriteOutcome};
    ///
    /// let mut sink = RedisSink::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// let mut delta = Snapshot::new("app::f");
    /// delta.record(900, false);
    /// let batch = FlushBatch { flush_id: [9; 16], entries: vec![], aggregates: vec![delta] };
    /// sink.write_batch(&batch)?;
    /// assert_eq!(sink.write_batch(&batch)?, WriteOutcome::AlreadyApplied);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn write_batch(&mut self, batch: &FlushBatch) -> Result<WriteOutcome, Error> {
        if batch.is_empty() {
            return Ok(WriteOutcome::Applied);
        }
        // Not connected: nothing was sent.
        self.conn.ensure().map_err(Error::unsent)?;
        let shard = self.conn.layout().shard_of(&batch.flush_id);
        // In a cluster, by default a replica of the shard's primary must have the flush too,
        // when it has one; a single Redis is not waited on.
        let replicas = match self.conn.replicas(shard) {
            Some(n) => self.conn.opts.replica_acks.unwrap_or(n.min(1)),
            None => 0,
        };
        let ack_timeout = self.conn.opts.io_timeout.min(Duration::from_secs(1));
        let timeout_ms = u64::try_from(ack_timeout.as_millis()).unwrap_or(u64::MAX);
        let (script, cmd) = self.flush_cmd(shard, batch);
        let (applied, acked): (i64, usize) = self
            .conn
            .run_on(shard, "cannot write a flush to Redis", |c| {
                with_script(c, script, |c| {
                    if replicas == 0 {
                        return Ok((cmd.query(c)?, 0));
                    }
                    redis::pipe()
                        .add_command(cmd.clone())
                        .cmd("WAIT")
                        .arg(replicas)
                        .arg(timeout_ms)
                        .query(c)
                })
            })
            // The script checks every key before it writes: a wrong type means nothing changed.
            .map_err(|e| match e.kind() {
                ErrorKind::Schema => e.unsent(),
                _ => e,
            })?;
        if acked < replicas {
            // Not unsent: it was applied on the primary. The flusher retries the same batch,
            // which finds it applied, or applies it on a replica promoted meanwhile.
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "a flush reached the primary of shard {shard} but {acked} of its {replicas} \
                     replicas within {ack_timeout:?}; it is sent again (and applied once)"
                ),
            ));
        }
        Ok(if applied == 1 {
            WriteOutcome::Applied
        } else {
            WriteOutcome::AlreadyApplied
        })
    }

    /// `EVALSHA` of the flush script of `shard` (see `lua/flush_body.lua` for the layout), and
    /// the script.
    fn flush_cmd(&mut self, shard: u16, batch: &FlushBatch) -> (&'static Script, Cmd) {
        let (layout, opts) = (self.conn.layout(), &self.conn.opts);
        let ids = layout.flush_ids(opts, shard, &batch.flush_id);
        let (script, mut cmd) = match &ids {
            FlushIds::Key(key) => {
                let mut cmd = evalsha(&FLUSH, 5 + batch.aggregates.len());
                cmd.arg(key);
                (&*FLUSH, cmd)
            }
            FlushIds::Set { ids, shard, .. } => {
                let mut cmd = evalsha(&FLUSH_SHARD, 6 + batch.aggregates.len());
                cmd.arg(ids).arg(shard);
                (&*FLUSH_SHARD, cmd)
            }
        };
        cmd.arg(layout.entries_list(opts, shard))
            .arg(layout.internal(opts, shard, "functions"))
            .arg(layout.internal(opts, shard, "changes"))
            .arg(layout.internal(opts, shard, "version"));
        let hashes = layout.aggregates(opts, shard);
        for a in &batch.aggregates {
            cmd.arg(hashes.key(&a.name));
        }
        cmd.arg(opts.flush_id_ttl.as_secs());
        if let FlushIds::Set { id, .. } = &ids {
            cmd.arg(id);
        }
        flush_args(&mut cmd, batch, &mut self.frames, &mut self.frame_ends);
        (script, cmd)
    }
}

/// The arguments `apply_flush` reads (see `lua/flush_body.lua`): the frames of the entries, then
/// each aggregate's changed fields. `frames` and `ends` are buffers kept between flushes.
fn flush_args(cmd: &mut Cmd, batch: &FlushBatch, frames: &mut Vec<u8>, ends: &mut Vec<usize>) {
    frames.clear();
    ends.clear();
    encode_frames(&batch.entries, frames, ends);
    cmd.arg(ends.len());
    let mut start = 0;
    for &end in ends.iter() {
        cmd.arg(&frames[start..end]);
        start = end;
    }
    cmd.arg(batch.aggregates.len());
    let mut field = String::with_capacity(8);
    for a in &batch.aggregates {
        // Only what changes something: a field at its identity merges to what is stored.
        let counters = a.fields().filter(|&(f, v)| v != f.kind.identity());
        let buckets = a.histogram().nonzero();
        cmd.arg(&*a.name)
            .arg(counters.clone().count() + buckets.clone().count());
        for (f, v) in counters {
            cmd.arg(f.name).arg(op(f.kind)).arg(clamp(f.kind, v));
        }
        for (i, c) in buckets {
            field.clear();
            let _ = write!(field, "b{i}");
            cmd.arg(&field)
                .arg(op(FieldKind::Sum))
                .arg(clamp(FieldKind::Sum, c));
        }
    }
}

/// Logs a warning when the server may evict fnmetrics keys: `maxmemory` set with a
/// `maxmemory-policy` other than `noeviction` (`volatile-*` policies evict flush-id keys, which
/// have a TTL, so a retry could apply twice; `allkeys-*` may evict entries and aggregates). A
/// server that refuses `CONFIG GET` (managed services often do) is not checked.
fn warn_if_evicting(conn: &mut Conn) {
    let what = "cannot read the eviction policy";
    let get = |c: &mut redis::Connection| {
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory*")
            .query::<Vec<String>>(c)
    };
    // Every primary of a cluster, the one server otherwise.
    let Ok(all) = conn.on_each_primary(what, get) else {
        return;
    };
    for pairs in all {
        warn_if_evicting_by(&pairs);
    }
}

/// The warning of [`warn_if_evicting`] for one server's `CONFIG GET maxmemory*`.
fn warn_if_evicting_by(pairs: &[String]) {
    let value = |name: &str| {
        pairs
            .chunks(2)
            .find(|p| p[0] == name)
            .and_then(|p| p.get(1).cloned())
    };
    let limited = value("maxmemory").is_some_and(|m| m != "0");
    let policy = value("maxmemory-policy").unwrap_or_default();
    if limited && policy != "noeviction" {
        log::warn!(
            target: "fnmetrics",
            "Redis has maxmemory-policy {policy}: under memory pressure it may evict fnmetrics \
             keys (flush ids, so a retried flush could count twice; entries and aggregates). \
             Use maxmemory-policy noeviction for the fnmetrics server."
        );
    }
}

impl Sink for RedisSink {
    fn write(&mut self, batch: &FlushBatch) -> Result<(), Error> {
        self.write_batch(batch).map(|_| ())
    }

    fn flush_id_ttl(&self) -> Option<Duration> {
        Some(self.conn.opts.flush_id_ttl)
    }

    /// Connects (PING, script loaded) and warns if the server may evict fnmetrics keys.
    fn connect(&mut self) -> Result<(), Error> {
        self.conn.ensure()?;
        warn_if_evicting(&mut self.conn);
        Ok(())
    }
}

/// How the flush script combines a field (see `lua/flush.lua`).
fn op(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Sum => "+",
        FieldKind::Min => "<",
        FieldKind::Max => ">",
    }
}

/// Sums go through `HINCRBY`, which takes an i64: a delta past it cannot happen in practice, and
/// the stored sum saturates there anyway. Minima and maxima are compared as u64 strings.
fn clamp(kind: FieldKind, v: u64) -> u64 {
    match kind {
        FieldKind::Sum => v.min(i64::MAX as u64),
        FieldKind::Min | FieldKind::Max => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::open_layout;
    use crate::layout::{key_slot, DEFAULT_SHARDS};
    use fnmetrics_core::Snapshot;
    use fnmetrics_test_support::redis::RedisServer;
    use fnmetrics_test_support::redis_cluster::RedisCluster;

    fn batch(id: u64) -> FlushBatch {
        let mut a = Snapshot::new("app::f");
        a.record(1_000 + id, id.is_multiple_of(4));
        let mut flush_id = [0u8; 16];
        // Spread over the shards as random ids do.
        flush_id[..8].copy_from_slice(&id.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        flush_id[8..].copy_from_slice(&id.to_le_bytes());
        FlushBatch {
            flush_id,
            entries: Vec::new(),
            aggregates: vec![a],
        }
    }

    /// The aggregate `field` of `app::f` summed over the shards, and the shards that have one.
    fn summed(conn: &mut Conn, field: &str) -> (u64, usize) {
        let (mut total, mut shards) = (0, 0);
        for shard in 0..conn.shards() {
            let key = conn.layout().aggregate_hash(&conn.opts, shard, "app::f");
            let v: Option<u64> = conn
                .run_on(shard, "read", |c| {
                    redis::cmd("HGET").arg(&key).arg(field).query(c)
                })
                .unwrap();
            if let Some(v) = v {
                total += v;
                shards += 1;
            }
        }
        (total, shards)
    }

    #[test]
    fn flushes_spread_over_shards_apply_once_and_survive_a_failover() {
        let mut cluster = RedisCluster::start(3, 1);
        let opts = RedisOptions::default();
        // A flush waits for a replica of its shard's primary.
        let mut sink =
            RedisSink::connect(&cluster.url(), opts.clone().with_replica_acks(1)).unwrap();
        assert_eq!(sink.conn.shards(), DEFAULT_SHARDS);
        {
            // Every process agrees on the stored count; another one asked for is refused.
            let router = sink.conn.router().expect("a cluster");
            assert_eq!(open_layout(router, &opts, Some(8)).unwrap().1, 8);
            let e = open_layout(router, &opts, Some(16)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
        }
        for id in 0..40 {
            assert_eq!(sink.write_batch(&batch(id)).unwrap(), WriteOutcome::Applied);
        }
        let (calls, shards) = summed(&mut sink.conn, "calls");
        assert_eq!(calls, 40);
        assert_eq!(shards, 8, "40 flushes reach every shard");
        // A retry applies nothing.
        assert_eq!(
            sink.write_batch(&batch(7)).unwrap(),
            WriteOutcome::AlreadyApplied
        );
        // The primary of flush 7's shard dies; its replica (which acknowledged the flush) takes
        // over: the flush is still known there, and new flushes go on.
        let shard = sink.conn.layout().shard_of(&batch(7).flush_id);
        let key = sink.conn.layout().entries_list(&opts, shard);
        let router = sink.conn.router().expect("a cluster");
        let owner = router.primary_of(key_slot(key.as_bytes())).unwrap();
        cluster.kill(owner.rsplit_once(':').unwrap().1.parse().unwrap());
        // The promoted replica has no replica of its own: flushes stop waiting.
        sink.conn.opts.replica_acks = Some(0);
        // The first call may find the old primary gone (maybe sent): the flusher sends the same
        // batch again, as here.
        let retried = (0..5)
            .find_map(|_| match sink.write_batch(&batch(7)) {
                Ok(outcome) => Some(outcome),
                Err(e) => {
                    assert!(e.kind().is_transient(), "{e}");
                    None
                }
            })
            .expect("the flush reaches the promoted replica");
        assert_eq!(retried, WriteOutcome::AlreadyApplied);
        for id in 40..50 {
            sink.write_batch(&batch(id)).unwrap();
        }
        assert_eq!(summed(&mut sink.conn, "calls").0, 50);
    }

    /// `EVALSHA` of the shard flush for flush `id` with one frame and one aggregate.
    fn shard_flush(c: &mut redis::Connection, id: &str, ttl_secs: u64) -> i64 {
        let t = "{fnm-s0-0}";
        FLUSH_SHARD
            .key(format!("{t}fnmetrics:flushes"))
            .key(format!("{t}fnmetrics:shard"))
            .key(format!("{t}metrics_list"))
            .key(format!("{t}fnmetrics:functions"))
            .key(format!("{t}fnmetrics:changes"))
            .key(format!("{t}fnmetrics:version"))
            .key(format!("{t}app:metrics:f"))
            .arg(ttl_secs)
            .arg(id)
            .arg(1)
            .arg(b"frame".as_slice())
            .arg(1)
            .arg("f")
            .arg(1)
            .arg("calls")
            .arg("+")
            .arg(3)
            .invoke(c)
            .unwrap()
    }

    #[test]
    fn a_shard_flush_is_applied_once_and_its_ids_expire() {
        let server = RedisServer::start();
        let mut c = server.client();
        let t = "{fnm-s0-0}";
        assert_eq!(shard_flush(&mut c, "aa", 3600), 1);
        // A retry: nothing changes but the shard's count of retries (a write, for WAIT).
        assert_eq!(shard_flush(&mut c, "aa", 3600), 0);
        let calls: u64 = redis::cmd("HGET")
            .arg(format!("{t}app:metrics:f"))
            .arg("calls")
            .query(&mut c)
            .unwrap();
        let len: u64 = redis::cmd("LLEN")
            .arg(format!("{t}metrics_list"))
            .query(&mut c)
            .unwrap();
        let retries: u64 = redis::cmd("HGET")
            .arg(format!("{t}fnmetrics:shard"))
            .arg("retries_seen")
            .query(&mut c)
            .unwrap();
        assert_eq!((calls, len, retries), (3, 1, 1));
        // An id remembered for no time is forgotten by the next flush: then it applies again.
        assert_eq!(shard_flush(&mut c, "bb", 0), 1);
        assert_eq!(shard_flush(&mut c, "cc", 3600), 1);
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("{t}fnmetrics:flushes"))
            .arg(0)
            .arg(-1)
            .query(&mut c)
            .unwrap();
        assert_eq!(ids, ["aa", "cc"]);
        let calls: u64 = redis::cmd("HGET")
            .arg(format!("{t}app:metrics:f"))
            .arg("calls")
            .query(&mut c)
            .unwrap();
        assert_eq!(calls, 9);
    }
}
