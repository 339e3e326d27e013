//! The Redis side of stage 2: claims with leases, acknowledged after the database committed.

use crate::conn::{evalsha, Conn};
use crate::options::RedisOptions;
use fnmetrics_core::{EntryRecord, Error, ErrorKind};
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/claim.lua")));
static PENDING: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/pending.lua")));

/// How often [`RedisQueue::claim`] tries when a claim vanishes while it is read.
const CLAIM_ATTEMPTS: usize = 3;

/// A batch of entries claimed by one drainer until its lease runs out.
///
/// ```no_run
/// # use fnmetrics_sink_redis::{RedisOptions, RedisQueue};
/// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
/// if let Some(claim) = queue.claim(50_000, std::time::Duration::from_secs(60))? {
///     println!("claim {} holds {} entries", claim.id, claim.entries.len());
/// }
/// # Ok::<(), fnmetrics_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Claim {
    /// The claim's id; its entries are in the list `{prefix}fnmetrics:claim:{id}`.
    pub id: String,
    /// The claimed entries, oldest first.
    pub entries: Vec<EntryRecord>,
}

/// The Redis side of stage 2: hands out batches of entries to drainers, safely across crashes.
///
/// [`claim`](Self::claim) moves entries from the head of the entry list into a claim list
/// registered in the sorted set `{prefix}fnmetrics:claims` with a lease deadline (Redis server
/// time, so drainers' clocks do not matter). A drainer writes the entries to the database, commits,
/// then [`ack`](Self::ack)s the claim. A drainer that dies before the ack leaves the claim behind;
/// once the lease has run out, the next `claim` by any drainer takes it over, with the same id and
/// entries. The database dedupes by entry id, so a claim written twice is stored once.
///
/// ```no_run
/// use fnmetrics_sink_redis::{RedisOptions, RedisQueue};
/// use std::time::Duration;
///
/// let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
/// while let Some(claim) = queue.claim(50_000, Duration::from_secs(60))? {
///     // ... write claim.entries to PostgreSQL and commit ...
///     queue.ack(&claim)?;
/// }
/// assert_eq!(queue.pending_len()?, 0);
/// # Ok::<(), fnmetrics_core::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisQueue {
    conn: Conn,
    list: String,
    claims: String,
    claim_prefix: String,
    ids: u64,
}

impl RedisQueue {
    /// Parses `url`, connects, PINGs and loads the scripts; see
    /// [`RedisSink::connect`](crate::RedisSink::connect).
    ///
    /// # Errors
    /// As [`RedisSink::connect`](crate::RedisSink::connect).
    ///
    /// ```no_run
    /// use fnmetrics_sink_redis::{RedisOptions, RedisQueue};
    /// let queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// # Ok::<(), fnmetrics_core::Error>(())
    /// ```
    pub fn connect(url: &str, options: RedisOptions) -> Result<RedisQueue, Error> {
        static SCRIPTS: LazyLock<[&'static Script; 2]> = LazyLock::new(|| [&*CLAIM, &*PENDING]);
        let conn = Conn::connect(url, options, &*SCRIPTS)?;
        Ok(RedisQueue {
            list: conn.opts.entries_list(),
            claims: conn.opts.internal("claims"),
            claim_prefix: conn.opts.internal("claim:"),
            conn,
            ids: 0,
        })
    }

    /// Claims a batch, atomically: a claim whose lease has run out if there is one (taken over
    /// with a new deadline, `lease` from now), otherwise up to `max` entries from the head of the
    /// entry list. `None` when there is nothing to claim.
    ///
    /// # Errors
    /// [`InvalidConfig`] if `max` or `lease` is zero; [`Decode`] if a claimed entry is malformed
    /// (the claim stays in Redis, nothing is lost; the message names its key); connection and
    /// server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// [`InvalidConfig`]: fnmetrics_core::ErrorKind::InvalidConfig
    /// [`Decode`]: fnmetrics_core::ErrorKind::Decode
    ///
    /// ```no_run
    /// # use fnmetrics_sink_redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// let claim = queue.claim(1000, std::time::Duration::from_secs(30))?;
    /// # Ok::<(), fnmetrics_core::Error>(())
    /// ```
    pub fn claim(&mut self, max: usize, lease: Duration) -> Result<Option<Claim>, Error> {
        if max == 0 || lease.is_zero() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "a claim needs max >= 1 and a lease longer than zero",
            ));
        }
        let lease_ms = u64::try_from(lease.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, 1 << 40);
        let what = "cannot claim entries in Redis";
        // The claim script moves entries into a claim list server-side and returns its id and
        // length; LRANGE reads it, in the same round trip for a new claim. Were the claim
        // acknowledged by another drainer in between (its lease ran out and it was taken over),
        // the lengths differ and we claim again.
        for _ in 0..CLAIM_ATTEMPTS {
            let new_id = self.new_id();
            let mut cmd = evalsha(&CLAIM, 2);
            cmd.arg(&self.list)
                .arg(&self.claims)
                .arg(max)
                .arg(lease_ms)
                .arg(&self.claim_prefix)
                .arg(&new_id);
            let mut p = redis::pipe();
            p.add_command(cmd)
                .cmd("LRANGE")
                .arg(format!("{}{new_id}", self.claim_prefix))
                .arg(0)
                .arg(-1);
            type Reply = (Option<(String, usize)>, Vec<Vec<u8>>);
            let (claimed, mut raw): Reply = self.conn.run(what, |c| match p.query(c) {
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                    CLAIM.load(c)?;
                    p.query(c)
                }
                r => r,
            })?;
            let Some((id, len)) = claimed else {
                return Ok(None);
            };
            if id != new_id {
                let key = format!("{}{id}", self.claim_prefix);
                raw = self.conn.run(what, |c| {
                    redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(c)
                })?;
            }
            if raw.len() == len {
                return self.decode(id, &raw).map(Some);
            }
        }
        Err(Error::new(
            ErrorKind::Server,
            "claims kept vanishing while they were read",
        ))
    }

    fn decode(&self, id: String, raw: &[Vec<u8>]) -> Result<Claim, Error> {
        let mut entries = Vec::with_capacity(raw.len());
        for (i, bytes) in raw.iter().enumerate() {
            let e = EntryRecord::decode(bytes).map_err(|e| {
                Error::with_source(
                    ErrorKind::Decode,
                    format!(
                        "entry {i} of claim {}{id} is malformed; the claim was left in Redis",
                        self.claim_prefix
                    ),
                    e,
                )
            })?;
            entries.push(e);
        }
        Ok(Claim { id, entries })
    }

    /// Removes a claim and its entries: call it once the entries are committed elsewhere.
    /// Acknowledging a claim that is gone (already acknowledged, or taken over and acknowledged
    /// by another drainer) does nothing.
    ///
    /// # Errors
    /// Connection and server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch);
    /// the claim then stays and is taken over after its lease, which is safe because the
    /// database dedupes.
    ///
    /// ```no_run
    /// # use fnmetrics_sink_redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// if let Some(claim) = queue.claim(1000, std::time::Duration::from_secs(30))? {
    ///     queue.ack(&claim)?;
    /// }
    /// # Ok::<(), fnmetrics_core::Error>(())
    /// ```
    pub fn ack(&mut self, claim: &Claim) -> Result<(), Error> {
        let key = format!("{}{}", self.claim_prefix, claim.id);
        let claims = &self.claims;
        self.conn.run("cannot acknowledge a claim in Redis", |c| {
            redis::pipe()
                .atomic()
                .unlink(&key)
                .ignore()
                .zrem(claims, &claim.id)
                .ignore()
                .query::<()>(c)
        })
    }

    /// How many entries wait for stage 2: in the entry list and in claims (held or expired).
    ///
    /// # Errors
    /// Connection and server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// ```no_run
    /// # use fnmetrics_sink_redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// println!("{} entries pending", queue.pending_len()?);
    /// # Ok::<(), fnmetrics_core::Error>(())
    /// ```
    pub fn pending_len(&mut self) -> Result<u64, Error> {
        let mut cmd = evalsha(&PENDING, 2);
        cmd.arg(&self.list)
            .arg(&self.claims)
            .arg(&self.claim_prefix);
        self.conn
            .eval("cannot count pending entries in Redis", &PENDING, &cmd)
    }

    /// A fresh claim id: 128 bits from a randomly keyed hasher, the time and a counter.
    fn new_id(&mut self) -> String {
        use std::hash::{BuildHasher, Hasher};
        self.ids = self.ids.wrapping_add(1);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut id = String::with_capacity(32);
        for part in 0..2u8 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u8(part);
            h.write_u64(self.ids);
            h.write_u128(nanos);
            h.write_u32(std::process::id());
            id.push_str(&format!("{:016x}", h.finish()));
        }
        id
    }
}
