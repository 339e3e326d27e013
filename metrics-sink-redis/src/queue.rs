//! The Redis side of stage 2: claims with leases, acknowledged after the database committed.

use crate::codec::{decode_element, DeadLetter, DeadLetterKind, Undecodable};
use crate::conn::{evalsha, Conn};
use crate::options::RedisOptions;
use fnmetrics_core::{Acked, ClaimQueue, Claimed, EntryRecord, Error, ErrorKind, RefusedRow};
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/count_of.lua"),
        include_str!("lua/claim.lua")
    ))
});
static PENDING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/count_of.lua"),
        include_str!("lua/pending.lua")
    ))
});
static TAKEOVER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/takeover.lua")));
static ACK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/ack.lua")));
static REQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/requeue.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release.lua")));

/// How often [`RedisQueue::claim`] tries when a claim vanishes while it is read.
const CLAIM_ATTEMPTS: usize = 3;

/// A batch of entries claimed by one drainer until its lease runs out.
///
/// ```no_run
/// # use fnmetrics::redis::{RedisOptions, RedisQueue};
/// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
/// if let Some(claim) = queue.claim(50_000, std::time::Duration::from_secs(60))? {
///     println!("claim {} holds {} entries", claim.id, claim.entries.len());
/// }
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Claim {
    /// The claim's id; its elements are in the list `{prefix}fnmetrics:claim:{id}`.
    pub id: String,
    /// The claimed entries, oldest first.
    pub entries: Vec<EntryRecord>,
    /// What in the claim could not be decoded: to be set aside as dead letters when the claim
    /// is acknowledged ([`RedisQueue::ack_with`] does that).
    pub undecodable: Vec<Undecodable>,
    /// When the lease runs out, in ms since the Unix epoch by the Redis server's clock. It is
    /// also the claim's token of ownership: a drainer that takes the claim over gives it
    /// another deadline, and [`RedisQueue::release`] then leaves it alone.
    pub lease_until_ms: u64,
    /// The shard whose keys hold the claim (0 on a single Redis).
    pub shard: u16,
}

impl Claim {
    /// Dead letters for what in the claim could not be decoded.
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// if let Some(claim) = queue.claim(1000, std::time::Duration::from_secs(30))? {
    ///     let dead = claim.dead_letters();
    ///     queue.ack_with(&claim, &dead)?;
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.undecodable
            .iter()
            .map(|u| {
                DeadLetter::new(
                    DeadLetterKind::Undecodable,
                    u.reason.clone(),
                    u.bytes.clone(),
                )
            })
            .collect()
    }
}

/// How many dead letters the list holds, and how many were evicted because it was full.
///
/// ```no_run
/// # use fnmetrics::redis::{RedisOptions, RedisQueue};
/// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
/// let c = queue.dead_letter_counts()?;
/// println!("{} dead letters, {} evicted", c.held, c.evicted);
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterCounts {
    /// Dead letters in the list now.
    pub held: u64,
    /// Dead letters removed, oldest first, because the list was at its cap
    /// ([`RedisOptions::dead_letter_cap`]), since the count was created.
    pub evicted: u64,
}

/// The health of stage 2 as Redis sees it ([`RedisQueue::overview`]): what `fnmetrics status`
/// shows, and what alert rules on the pipeline read.
///
/// ```no_run
/// # use fnmetrics::redis::{RedisOptions, RedisQueue};
/// let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
/// let o = queue.overview()?;
/// println!("{} entries waiting, drain lag {:?}", o.entries_waiting, o.drain_lag);
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueOverview {
    /// Entries waiting for stage 2: in the entry list and in claims.
    pub entries_waiting: u64,
    /// Claims drainers hold (being written, or left by a drainer that died).
    pub claims_held: u64,
    /// Of those, claims whose lease ran out (Redis server time): the next claim takes them over.
    pub claims_expired: u64,
    /// Dead letters held and evicted.
    pub dead_letters: DeadLetterCounts,
    /// Functions with aggregates.
    pub functions: u64,
    /// When the oldest entry at the head of the entry list was recorded (micros since the Unix
    /// epoch); `None` when the list is empty.
    pub oldest_waiting_micros: Option<i64>,
    /// The age of that entry by the Redis server's clock (zero for one from the future);
    /// `None` when the list is empty.
    pub drain_lag: Option<std::time::Duration>,
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
/// use fnmetrics::redis::{RedisOptions, RedisQueue};
/// use std::time::Duration;
///
/// let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
/// while let Some(claim) = queue.claim(50_000, Duration::from_secs(60))? {
///     // ... write claim.entries to PostgreSQL and commit ...
///     queue.ack(&claim)?;
/// }
/// assert_eq!(queue.pending_len()?, 0);
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisQueue {
    conn: Conn,
    /// The shard the next claim looks at first (claims go round the shards).
    cursor: u16,
}

/// The keys of one shard's queue.
struct Keys {
    list: String,
    claims: String,
    claim_prefix: String,
    dead: String,
    dead_evicted: String,
}

impl RedisQueue {
    /// Parses `url`, connects, PINGs and loads the scripts; see
    /// [`RedisSink::connect`](crate::RedisSink::connect).
    ///
    /// # Errors
    /// As [`RedisSink::connect`](crate::RedisSink::connect).
    ///
    /// ```no_run
    /// use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// let queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn connect(url: &str, options: RedisOptions) -> Result<RedisQueue, Error> {
        let mut queue = RedisQueue::new(url, options)?;
        queue.conn.ensure()?;
        Ok(queue)
    }

    /// Parses `url` and checks the options, without connecting: the first call connects.
    ///
    /// # Errors
    /// As [`RedisSink::new`](crate::RedisSink::new).
    ///
    /// ```
    /// use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// let queue = RedisQueue::new("redis://127.0.0.1:1/", RedisOptions::default())?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn new(url: &str, options: RedisOptions) -> Result<RedisQueue, Error> {
        static SCRIPTS: LazyLock<[&'static Script; 6]> =
            LazyLock::new(|| [&*CLAIM, &*TAKEOVER, &*PENDING, &*ACK, &*REQUEUE, &*RELEASE]);
        let conn = Conn::new(url, options, &*SCRIPTS)?;
        Ok(RedisQueue { conn, cursor: 0 })
    }

    /// Another queue on the same server with the same options, not connected yet, whose
    /// claims start at shard `first` (claims go round the shards of a Redis Cluster): for
    /// drainers that work side by side without asking the same shard first.
    ///
    /// ```
    /// use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// let q = RedisQueue::new("redis://127.0.0.1:1/", RedisOptions::default())?;
    /// let other = q.another(4);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn another(&self, first: u16) -> RedisQueue {
        RedisQueue {
            conn: self.conn.another(),
            cursor: first,
        }
    }

    /// The list of claim `id` in `shard`.
    fn claim_key(&self, shard: u16, id: &str) -> String {
        self.conn.layout().claim(&self.conn.opts, shard, id)
    }

    /// The keys of `shard`'s queue.
    fn keys(&self, shard: u16) -> Keys {
        let (l, o) = (self.conn.layout(), &self.conn.opts);
        Keys {
            list: l.entries_list(o, shard),
            claims: l.internal(o, shard, "claims"),
            claim_prefix: l.claim(o, shard, ""),
            dead: l.internal(o, shard, "dead"),
            dead_evicted: l.internal(o, shard, "dead:evicted"),
        }
    }

    /// Claims a batch, atomically: a claim whose lease has run out if there is one (taken over
    /// with a new deadline, `lease` from now), otherwise elements from the head of the entry
    /// list (each a flush's frame of entries): at least one, then more while the entries stay
    /// below `max`. `None` when there is nothing to claim. What cannot be decoded (an unknown
    /// version, damage) comes back in [`Claim::undecodable`] and never blocks the rest.
    ///
    /// # Errors
    /// [`InvalidConfig`] if `max` or `lease` is zero; connection and server errors as
    /// [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// [`InvalidConfig`]: fnmetrics_core::ErrorKind::InvalidConfig
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// let claim = queue.claim(1000, std::time::Duration::from_secs(30))?;
    /// # Ok::<(), fnmetrics::Error>(())
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
        // Round the shards, from where the last claim was found: drainers do not all wait on
        // one shard. A single Redis has one.
        self.conn.ensure().map_err(Error::unsent)?;
        let shards = self.conn.shards();
        for i in 0..shards {
            let shard = (self.cursor + i) % shards;
            if let Some(claim) = self.claim_in(shard, max, lease_ms)? {
                self.cursor = (shard + 1) % shards;
                return Ok(Some(claim));
            }
        }
        Ok(None)
    }

    /// A claim from `shard`'s queue, as [`RedisQueue::claim`] says.
    fn claim_in(&mut self, shard: u16, max: usize, lease_ms: u64) -> Result<Option<Claim>, Error> {
        let k = self.keys(shard);
        let what = "cannot claim entries in Redis";
        // The claim script moves entries into a claim list server-side and returns its id and
        // length; LRANGE reads it, in the same round trip for a new claim. Were the claim
        // acknowledged by another drainer in between (its lease ran out and it was taken over),
        // the lengths differ and we claim again.
        for _ in 0..CLAIM_ATTEMPTS {
            let new_id = new_claim_id();
            let new_key = self.claim_key(shard, &new_id);
            let mut cmd = evalsha(&CLAIM, 3);
            cmd.arg(&k.list)
                .arg(&k.claims)
                .arg(&new_key)
                .arg(max)
                .arg(lease_ms)
                .arg(&k.claim_prefix)
                .arg(&new_id);
            let mut p = redis::pipe();
            p.add_command(cmd)
                .cmd("LRANGE")
                .arg(&new_key)
                .arg(0)
                .arg(-1);
            type Reply = (Option<Vec<String>>, Vec<Vec<u8>>);
            let (claimed, mut raw): Reply =
                self.conn.run_on(shard, what, |c| match p.query(c) {
                    Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                        CLAIM.load(c)?;
                        p.query(c)
                    }
                    r => r,
                })?;
            let number = |s: Option<&String>| s.and_then(|s| s.parse::<u64>().ok());
            let (id, len, lease_until_ms) = match claimed.as_deref() {
                None => return Ok(None),
                // A claim whose lease ran out: take it over (a second script, which names its
                // list among its keys), then read it.
                Some([marker, id]) if marker.is_empty() => {
                    let key = self.claim_key(shard, id);
                    let mut cmd = evalsha(&TAKEOVER, 2);
                    cmd.arg(&k.claims).arg(&key).arg(id).arg(lease_ms);
                    let taken: Option<Vec<String>> =
                        self.conn.eval_on(shard, what, &TAKEOVER, &cmd)?;
                    let Some([len, until]) = taken.as_deref() else {
                        // Gone, empty, or taken by another drainer meanwhile: claim again.
                        continue;
                    };
                    let (len, until) = (number(Some(len)), number(Some(until)));
                    raw = self.conn.run_on(shard, what, |c| {
                        redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(c)
                    })?;
                    (id.clone(), len, until)
                }
                Some([id, len, until]) => (id.clone(), number(Some(len)), number(Some(until))),
                Some(_) => {
                    return Err(Error::new(
                        ErrorKind::Server,
                        "the claim script answered in a wrong shape",
                    ))
                }
            };
            let (Some(len), Some(lease_until_ms)) = (len, lease_until_ms) else {
                return Err(Error::new(
                    ErrorKind::Server,
                    "the claim script answered a number that is not one",
                ));
            };
            if raw.len() as u64 == len {
                let mut claim = Claim {
                    id,
                    entries: Vec::new(),
                    undecodable: Vec::new(),
                    lease_until_ms,
                    shard,
                };
                for element in &raw {
                    let d = decode_element(element);
                    claim.entries.extend(d.entries);
                    claim.undecodable.extend(d.undecodable);
                }
                return Ok(Some(claim));
            }
        }
        Err(Error::new(
            ErrorKind::Server,
            "claims kept vanishing while they were read",
        ))
    }

    /// Removes a claim and its entries: call it once the entries are committed elsewhere.
    /// Acknowledging a claim that is gone (already acknowledged, or taken over and acknowledged
    /// by another drainer) does nothing and returns `false`: that drainer accounts for it.
    ///
    /// # Errors
    /// Connection and server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch);
    /// the claim then stays and is taken over after its lease, which is safe because the
    /// database dedupes.
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// if let Some(claim) = queue.claim(1000, std::time::Duration::from_secs(30))? {
    ///     queue.ack(&claim)?;
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn ack(&mut self, claim: &Claim) -> Result<bool, Error> {
        self.ack_with(claim, &[]).map(|a| a.removed)
    }

    /// Sets `dead` aside in the dead-letter list and removes the claim, atomically: call it once
    /// the claim's other entries are committed elsewhere. Says whether this call removed the
    /// claim, and how many older dead letters were evicted because the list was full
    /// ([`RedisOptions::dead_letter_cap`]). If the claim is gone (another drainer took it over
    /// and acknowledged it), nothing is added: a dead letter is never set aside twice, and the
    /// drainer that removed the claim is the one that counts its entries.
    ///
    /// # Errors
    /// As [`RedisQueue::ack`].
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// if let Some(claim) = queue.claim(1000, std::time::Duration::from_secs(30))? {
    ///     // ... write claim.entries, collect the rows the database refused ...
    ///     let acked = queue.ack_with(&claim, &claim.dead_letters())?;
    ///     println!("removed: {}, evicted: {}", acked.removed, acked.dead_letters_evicted);
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn ack_with(&mut self, claim: &Claim, dead: &[DeadLetter]) -> Result<Acked, Error> {
        let k = self.keys(claim.shard);
        let mut cmd = evalsha(&ACK, 4);
        cmd.arg(self.claim_key(claim.shard, &claim.id))
            .arg(&k.claims)
            .arg(&k.dead)
            .arg(&k.dead_evicted)
            .arg(&claim.id)
            .arg(self.conn.opts.dead_letter_cap);
        for d in dead {
            cmd.arg(d.encode());
        }
        let evicted: i64 = self.conn.eval_on(
            claim.shard,
            "cannot acknowledge a claim in Redis",
            &ACK,
            &cmd,
        )?;
        Ok(Acked::new(
            evicted >= 0,
            u64::try_from(evicted).unwrap_or(0),
        ))
    }

    /// Hands a claim back, atomically: its elements return to the head of the entry list, in
    /// their order, and the claim is forgotten, so that the next [`claim`](Self::claim) of any
    /// drainer takes them at once instead of after the lease. For a drainer that stops, or
    /// whose write failed. Only a claim that is still the caller's is handed back: one taken
    /// over by another drainer (after the lease ran out) is left alone. Returns whether this
    /// call handed it back.
    ///
    /// # Errors
    /// Connection and server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch);
    /// the claim then stays, and is taken over after its lease.
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// if let Some(claim) = queue.claim(1000, std::time::Duration::from_secs(30))? {
    ///     // ... the write failed, or the drainer is stopping ...
    ///     assert!(queue.release(&claim)?);
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn release(&mut self, claim: &Claim) -> Result<bool, Error> {
        let k = self.keys(claim.shard);
        let mut cmd = evalsha(&RELEASE, 3);
        cmd.arg(self.claim_key(claim.shard, &claim.id))
            .arg(&k.claims)
            .arg(&k.list)
            .arg(&claim.id)
            .arg(claim.lease_until_ms);
        let n: i64 = self.conn.eval_on(
            claim.shard,
            "cannot hand a claim back in Redis",
            &RELEASE,
            &cmd,
        )?;
        Ok(n >= 0)
    }

    /// Connects now, if there is no connection yet (PING, scripts loaded).
    ///
    /// # Errors
    /// As [`RedisQueue::connect`].
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// let mut queue = RedisQueue::new("redis://127.0.0.1/", RedisOptions::default())?;
    /// queue.ensure_connected()?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn ensure_connected(&mut self) -> Result<(), Error> {
        self.conn.ensure()
    }

    /// Up to `count` dead letters, oldest first, from position `start`.
    ///
    /// # Errors
    /// [`Decode`] if an element of the list is not a dead letter; connection and server errors
    /// as [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// [`Decode`]: fnmetrics_core::ErrorKind::Decode
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// for d in queue.dead_letters(0, 100)? {
    ///     println!("{:?} {:?}: {}", d.at, d.kind, d.reason);
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn dead_letters(&mut self, start: usize, count: usize) -> Result<Vec<DeadLetter>, Error> {
        if count == 0 {
            return Ok(Vec::new());
        }
        // Each shard's first `start + count`, merged by when they were set aside (a single
        // Redis: its list, from `start`).
        self.conn.ensure().map_err(Error::unsent)?;
        let shards = self.conn.shards();
        let (first, last) = if shards == 1 {
            (start, start.saturating_add(count - 1))
        } else {
            (0, start.saturating_add(count - 1))
        };
        let mut all = Vec::new();
        for shard in 0..shards {
            let key = self.keys(shard).dead;
            let raw: Vec<Vec<u8>> =
                self.conn
                    .run_on(shard, "cannot read dead letters from Redis", |c| {
                        redis::cmd("LRANGE")
                            .arg(&key)
                            .arg(first)
                            .arg(last.min(i64::MAX as usize))
                            .query(c)
                    })?;
            for b in &raw {
                let mut d = DeadLetter::decode(b).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Decode,
                        format!("an element of {key} is not a dead letter"),
                    )
                })?;
                d.shard = shard;
                all.push(d);
            }
        }
        if shards == 1 {
            return Ok(all);
        }
        all.sort_by_key(|d| d.at);
        Ok(all.into_iter().skip(start).take(count).collect())
    }

    /// How many dead letters are held, and how many were evicted.
    ///
    /// # Errors
    /// Connection and server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// assert_eq!(queue.dead_letter_counts()?.held, 0);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn dead_letter_counts(&mut self) -> Result<DeadLetterCounts, Error> {
        self.conn.ensure().map_err(Error::unsent)?;
        let mut out = DeadLetterCounts::default();
        for shard in 0..self.conn.shards() {
            let k = self.keys(shard);
            let (held, evicted): (u64, Option<u64>) =
                self.conn
                    .run_on(shard, "cannot count dead letters in Redis", |c| {
                        redis::pipe().llen(&k.dead).get(&k.dead_evicted).query(c)
                    })?;
            out.held += held;
            out.evicted += evicted.unwrap_or(0);
        }
        Ok(out)
    }

    /// Puts dead letters back on the entry list, for stage 2 to try again (after the cause was
    /// fixed: a constraint dropped, a newer fnmetrics deployed). Each is moved only if it is
    /// still in the dead-letter list, so two operators re-queueing at once move it once. Returns
    /// how many were moved.
    ///
    /// # Errors
    /// Connection and server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// let all = queue.dead_letters(0, 1000)?;
    /// queue.requeue_dead_letters(&all)?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn requeue_dead_letters(&mut self, letters: &[DeadLetter]) -> Result<u64, Error> {
        self.requeue_or_purge("requeue", letters)
    }

    /// Removes dead letters for good; returns how many were still there.
    ///
    /// # Errors
    /// Connection and server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// let old = queue.dead_letters(0, 10)?;
    /// queue.purge_dead_letters(&old)?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn purge_dead_letters(&mut self, letters: &[DeadLetter]) -> Result<u64, Error> {
        self.requeue_or_purge("purge", letters)
    }

    fn requeue_or_purge(&mut self, mode: &str, letters: &[DeadLetter]) -> Result<u64, Error> {
        let mut n = 0;
        let mut shards: Vec<u16> = letters.iter().map(|d| d.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            let k = self.keys(shard);
            let mine: Vec<&DeadLetter> = letters.iter().filter(|d| d.shard == shard).collect();
            for chunk in mine.chunks(500) {
                let mut cmd = evalsha(&REQUEUE, 2);
                cmd.arg(&k.dead).arg(&k.list).arg(mode);
                for d in chunk {
                    cmd.arg(d.encode()).arg(&d.payload);
                }
                let moved: u64 = self.conn.eval_on(
                    shard,
                    "cannot move dead letters in Redis",
                    &REQUEUE,
                    &cmd,
                )?;
                n += moved;
            }
        }
        Ok(n)
    }

    /// How many entries wait for stage 2: in the entry list and in claims (held or expired).
    ///
    /// # Errors
    /// Connection and server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// println!("{} entries pending", queue.pending_len()?);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn pending_len(&mut self) -> Result<u64, Error> {
        let what = "cannot count pending entries in Redis";
        self.conn.ensure().map_err(Error::unsent)?;
        let mut n = 0;
        for shard in 0..self.conn.shards() {
            let k = self.keys(shard);
            // The entry list first, then the claims: an element that moves into a new claim in
            // between is counted twice, never missed.
            n += self.count_list(shard, &k.list)?;
            let ids: Vec<String> = self.conn.run_on(shard, what, |c| {
                redis::cmd("ZRANGE").arg(&k.claims).arg(0).arg(-1).query(c)
            })?;
            for id in ids {
                let key = self.claim_key(shard, &id);
                n += self.count_list(shard, &key)?;
            }
        }
        Ok(n)
    }

    /// Stage 2's health in a few round trips: entries waiting (list and claims), claims held
    /// and expired, dead letters, functions, and the drain lag (the age of the oldest entry at
    /// the head of the entry list, by the server's clock).
    ///
    /// # Errors
    /// Connection and server errors as [`RedisSink::write_batch`](crate::RedisSink::write_batch).
    ///
    /// ```no_run
    /// # use fnmetrics::redis::{RedisOptions, RedisQueue};
    /// # let mut queue = RedisQueue::connect("redis://127.0.0.1/", RedisOptions::default())?;
    /// if queue.overview()?.claims_expired > 0 {
    ///     eprintln!("a drainer died holding a claim; the next one takes it over");
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn overview(&mut self) -> Result<QueueOverview, Error> {
        let entries_waiting = self.pending_len()?;
        let dead_letters = self.dead_letter_counts()?;
        let shards = self.conn.shards();
        let (mut held, mut expired) = (0, 0);
        let mut names = std::collections::BTreeSet::new();
        let mut functions = 0;
        // (the oldest waiting entry, its shard's server time), micros.
        let mut oldest: Option<(i64, i64)> = None;
        for shard in 0..shards {
            let k = self.keys(shard);
            let set = self
                .conn
                .layout()
                .internal(&self.conn.opts, shard, "functions");
            type Reply = ((u64, u64), u64, u64, u64, Vec<Vec<u8>>, Option<Vec<u8>>);
            let ((secs, micros), h, e, n, members, head): Reply =
                self.conn
                    .run_on(shard, "cannot read the claims and the entry list", |c| {
                        // The server's time first: claims expire by it.
                        let (secs, micros): (u64, u64) = redis::cmd("TIME").query(c)?;
                        let now_ms = secs * 1000 + micros / 1000;
                        let mut p = redis::pipe();
                        p.zcard(&k.claims)
                            .zcount(&k.claims, "-inf", now_ms)
                            .scard(&set);
                        // A cluster's shards share names: count them once.
                        if shards > 1 {
                            p.smembers(&set);
                        }
                        p.lindex(&k.list, 0);
                        if shards > 1 {
                            let (h, e, n, members, head) = p.query(c)?;
                            Ok(((secs, micros), h, e, n, members, head))
                        } else {
                            let (h, e, n, head) = p.query(c)?;
                            Ok(((secs, micros), h, e, n, Vec::new(), head))
                        }
                    })?;
            held += h;
            expired += e;
            functions += n;
            names.extend(members);
            let now = i64::try_from(secs.saturating_mul(1_000_000).saturating_add(micros))
                .unwrap_or(i64::MAX);
            let first = head.and_then(|b| {
                crate::codec::decode_element(&b)
                    .entries
                    .iter()
                    .map(|e| e.created_at_micros)
                    .min()
            });
            if let Some(m) = first
                && oldest.is_none_or(|(o, _)| m < o)
            {
                oldest = Some((m, now));
            }
        }
        if shards > 1 {
            functions = names.len() as u64;
        }
        Ok(QueueOverview {
            entries_waiting,
            claims_held: held,
            claims_expired: expired,
            dead_letters,
            functions,
            oldest_waiting_micros: oldest.map(|(m, _)| m),
            drain_lag: oldest.map(|(m, now)| {
                std::time::Duration::from_micros(u64::try_from(now - m).unwrap_or(0))
            }),
        })
    }

    /// The entries in one list (frames count their entries).
    fn count_list(&mut self, shard: u16, key: &str) -> Result<u64, Error> {
        let mut cmd = evalsha(&PENDING, 1);
        cmd.arg(key);
        self.conn.eval_on(
            shard,
            "cannot count pending entries in Redis",
            &PENDING,
            &cmd,
        )
    }
}

impl Claimed for Claim {
    fn entries(&self) -> &[EntryRecord] {
        &self.entries
    }

    fn undecodable(&self) -> usize {
        self.undecodable.len()
    }
}

/// Stage 2's queue: [`RedisQueue::claim`], [`RedisQueue::ack_with`] (the refused rows set aside
/// as [`DeadLetterKind::Rejected`] dead letters, beside what could not be decoded) and
/// [`RedisQueue::release`]. A lane starts its claims at another shard.
impl ClaimQueue for RedisQueue {
    type Claim = Claim;

    fn claim(&mut self, max: usize, lease: Duration) -> Result<Option<Claim>, Error> {
        RedisQueue::claim(self, max, lease)
    }

    fn ack(&mut self, claim: &Claim, refused: &[RefusedRow]) -> Result<Acked, Error> {
        let mut dead = claim.dead_letters();
        dead.extend(refused.iter().filter_map(|r| {
            let entry = claim.entries.get(r.index)?;
            Some(DeadLetter::new(
                DeadLetterKind::Rejected,
                r.reason.clone(),
                entry.encode(),
            ))
        }));
        self.ack_with(claim, &dead)
    }

    fn release(&mut self, claim: &Claim) -> Result<bool, Error> {
        RedisQueue::release(self, claim)
    }

    fn lane(&self, lane: usize, lanes: usize) -> RedisQueue {
        // Lanes are made before the first connection, so the layout may not be known yet: the
        // shard count wanted (or the default), for the starting point only (claims go round).
        let shards = match self.conn.shards() {
            1 => self
                .conn
                .opts
                .shards
                .unwrap_or(crate::layout::DEFAULT_SHARDS),
            n => n,
        };
        let first = lane * usize::from(shards) / lanes.max(1);
        self.another(u16::try_from(first).unwrap_or(0))
    }

    fn connect(&mut self) -> Result<(), Error> {
        self.ensure_connected()
    }
}

/// A fresh claim id: 128 random bits, in hex.
fn new_claim_id() -> String {
    fnmetrics_core::new_flush_id()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
