//! Where fnmetrics' keys live, and nowhere else are they named. On a single Redis: the seed's
//! names (`metrics_list`, `app:metrics:{func_name}`, `fnmetrics:*`, after the key prefix). On a
//! Redis Cluster (`docs/cluster.md` §4): the same names with a shard's hash tag after the
//! prefix, so that every key one script touches lies in one slot. A single Redis is laid out as
//! one shard with an empty tag.

use crate::options::RedisOptions;
use std::fmt::Write as _;

/// The version of the cluster layout this build writes and reads.
pub(crate) const LAYOUT_VERSION: i64 = 1;

/// Shards of a cluster when nobody chose a number (`docs/cluster.md` §4.1).
pub(crate) const DEFAULT_SHARDS: u16 = 8;

/// The number of slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// The Redis Cluster slot of `key`, as Redis computes it: CRC16 (XMODEM) of the key, or of its
/// hash tag (what lies between the first `{` and the next `}`, when that is not empty),
/// modulo 16 384.
///
/// ```
/// use fnmetrics::redis::key_slot;
/// assert_eq!(key_slot(b"foo"), 12_182);
/// // Keys with the same hash tag share a slot.
/// assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
/// ```
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS
}

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the checksum of Redis Cluster's slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash tag of shard `i` of `n` in a cluster: `fnm-s<i>-<k>`, with the smallest `k` whose
/// slot lies in the `i`-th `n`-th of the slots, so that shards spread over primaries made with
/// equal, ordered slot ranges (`redis-cli --cluster create`) as evenly as they can.
pub(crate) fn shard_tag(i: u16, n: u16) -> String {
    let n = u32::from(n.max(1));
    let (lo, hi) = (
        u32::from(i) * u32::from(SLOTS) / n,
        (u32::from(i) + 1) * u32::from(SLOTS) / n,
    );
    (0u32..)
        .map(|k| format!("fnm-s{i}-{k}"))
        .find(|t| (lo..hi).contains(&u32::from(key_slot(t.as_bytes()))))
        .unwrap_or_else(|| format!("fnm-s{i}"))
}

/// How keys are named: one set on a single Redis, one set a shard in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The seed's names, after the key prefix.
    Single,
    /// Shard `i`'s names carry `{tags[i]}` right after the key prefix.
    Cluster { tags: Vec<String> },
}

impl Layout {
    /// The layout of a cluster of `shards` shards.
    pub(crate) fn cluster(shards: u16) -> Layout {
        Layout::Cluster {
            tags: (0..shards.max(1))
                .map(|i| format!("{{{}}}", shard_tag(i, shards)))
                .collect(),
        }
    }

    /// The shards keys are spread over: 1 on a single Redis.
    pub(crate) fn shards(&self) -> u16 {
        match self {
            Layout::Single => 1,
            Layout::Cluster { tags } => u16::try_from(tags.len()).unwrap_or(1),
        }
    }

    /// The hash tag of `shard`, braces included (empty on a single Redis).
    fn tag(&self, shard: u16) -> &str {
        match self {
            Layout::Single => "",
            Layout::Cluster { tags } => tags.get(usize::from(shard)).map_or("", String::as_str),
        }
    }

    /// The shard of a flush: its id picks it (ids are random), and a retry of the same id goes
    /// to the same shard, where the id is remembered. Always 0 on a single Redis.
    pub(crate) fn shard_of(&self, flush_id: &[u8; 16]) -> u16 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&flush_id[..8]);
        let n = u64::from(self.shards().max(1));
        u16::try_from(u64::from_le_bytes(head) % n).unwrap_or(0)
    }

    /// `{key_prefix}{tag}{entries_key}`: the list of flushed entries.
    pub(crate) fn entries_list(&self, o: &RedisOptions, shard: u16) -> String {
        format!("{}{}{}", o.key_prefix, self.tag(shard), o.entries_key)
    }

    /// `{key_prefix}{tag}{aggregate_prefix}{name}`: a function's aggregate hash.
    pub(crate) fn aggregate_hash(&self, o: &RedisOptions, shard: u16, name: &str) -> String {
        self.aggregates(o, shard).key(name)
    }

    /// The aggregate hashes of `shard`: `{key_prefix}{tag}{aggregate_prefix}` and a name.
    pub(crate) fn aggregates(&self, o: &RedisOptions, shard: u16) -> AggregateKeys {
        AggregateKeys {
            prefix: format!("{}{}{}", o.key_prefix, self.tag(shard), o.aggregate_prefix),
        }
    }

    /// `{key_prefix}{tag}fnmetrics:{suffix}`: fnmetrics' own bookkeeping.
    pub(crate) fn internal(&self, o: &RedisOptions, shard: u16, suffix: &str) -> String {
        format!("{}{}fnmetrics:{}", o.key_prefix, self.tag(shard), suffix)
    }

    /// `{key_prefix}{tag}fnmetrics:claim:{id}`: the list of one claim's elements.
    pub(crate) fn claim(&self, o: &RedisOptions, shard: u16, id: &str) -> String {
        format!("{}{}fnmetrics:claim:{id}", o.key_prefix, self.tag(shard))
    }

    /// Where `shard` remembers the flushes it applied, and flush `flush_id` (`docs/cluster.md`
    /// §4.2: a single Redis keeps the seed's key a flush, a cluster's shard a sorted set).
    pub(crate) fn flush_ids(&self, o: &RedisOptions, shard: u16, flush_id: &[u8; 16]) -> FlushIds {
        let mut hex = String::with_capacity(32);
        for b in flush_id {
            let _ = write!(hex, "{b:02x}");
        }
        match self {
            Layout::Single => FlushIds::Key(self.internal(o, shard, &format!("flush:{hex}"))),
            Layout::Cluster { .. } => FlushIds::Set {
                ids: self.internal(o, shard, "flushes"),
                shard: self.internal(o, shard, "shard"),
                id: hex,
            },
        }
    }

    /// `{key_prefix}{fnm-meta}fnmetrics:layout`: a cluster's stored layout (a hash: `version`,
    /// `shards`).
    pub(crate) fn record(o: &RedisOptions) -> String {
        format!("{}{{fnm-meta}}fnmetrics:layout", o.key_prefix)
    }
}

/// How a shard remembers the flushes it applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FlushIds {
    /// A single Redis: a string key a flush, `{key_prefix}fnmetrics:flush:<hex id>`, which
    /// expires.
    Key(String),
    /// A shard of a cluster: the sorted set `fnmetrics:flushes` of hex ids, scored by when they
    /// are forgotten, and the shard's hash `fnmetrics:shard` (`retries_seen`).
    Set {
        /// The sorted set of flush ids.
        ids: String,
        /// The shard's own hash.
        shard: String,
        /// This flush's id, in hex.
        id: String,
    },
}

/// The names of one shard's aggregate hashes: a prefix, then the function's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AggregateKeys {
    prefix: String,
}

impl AggregateKeys {
    /// The hash of function `name`.
    pub(crate) fn key(&self, name: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + name.len());
        key.push_str(&self.prefix);
        key.push_str(name);
        key
    }

    /// The hash of function `name` in two parts, to be written out one after the other (the
    /// plain `HGETALL` reader sends them so, without making a string a key).
    pub(crate) fn parts<'a>(&'a self, name: &'a str) -> [&'a [u8]; 2] {
        [self.prefix.as_bytes(), name.as_bytes()]
    }

    /// The hash of function `name`, written out only when shown.
    pub(crate) fn named<'a>(&'a self, name: &'a str) -> impl std::fmt::Display + Copy + 'a {
        Named(&self.prefix, name)
    }
}

#[derive(Clone, Copy)]
struct Named<'a>(&'a str, &'a str);

impl std::fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_redis_computes() {
        // The CRC's check value, and slots as `CLUSTER KEYSLOT` answers them.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12_182);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b""), 0);
        // Hash tags, as the cluster specification's examples read.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), crc16(b"{bar") % SLOTS);
        assert_eq!(key_slot(b"foo{bar}{zap}"), crc16(b"bar") % SLOTS);
        assert_eq!(key_slot(b"{bar"), crc16(b"{bar") % SLOTS);
    }

    #[test]
    fn single_names_are_the_seed_s() {
        let o = RedisOptions::default().with_key_prefix("p:");
        let l = Layout::Single;
        assert_eq!(l.entries_list(&o, 0), "p:metrics_list");
        assert_eq!(l.aggregate_hash(&o, 0, "app::f"), "p:app:metrics:app::f");
        assert_eq!(l.internal(&o, 0, "claims"), "p:fnmetrics:claims");
        assert_eq!(l.claim(&o, 0, "c1"), "p:fnmetrics:claim:c1");
        let mut id = [0u8; 16];
        id[0] = 0xab;
        id[15] = 0x01;
        assert_eq!(
            l.flush_ids(&o, 0, &id),
            FlushIds::Key("p:fnmetrics:flush:ab000000000000000000000000000001".into())
        );
        assert_eq!(l.shard_of(&id), 0);
        assert_eq!(Layout::record(&o), "p:{fnm-meta}fnmetrics:layout");
    }

    #[test]
    fn a_cluster_shard_s_keys_share_a_slot_and_shards_spread_evenly() {
        let o = RedisOptions::default().with_key_prefix("p:");
        for n in [1u16, 3, 8, 16] {
            let l = Layout::cluster(n);
            let mut slots = Vec::new();
            for i in 0..n {
                let keys = [
                    l.entries_list(&o, i),
                    l.aggregate_hash(&o, i, "app::{odd} name"),
                    l.internal(&o, i, "claims"),
                    l.claim(&o, i, "abc"),
                    match l.flush_ids(&o, i, &[7; 16]) {
                        FlushIds::Set { ids, .. } => ids,
                        FlushIds::Key(k) => panic!("{k}"),
                    },
                ];
                let slot = key_slot(keys[0].as_bytes());
                assert!(
                    keys.iter().all(|k| key_slot(k.as_bytes()) == slot),
                    "{keys:?}"
                );
                // Shard i lies in the i-th n-th of the slots.
                let lo = u32::from(i) * 16_384 / u32::from(n);
                let hi = (u32::from(i) + 1) * 16_384 / u32::from(n);
                assert!(
                    (lo..hi).contains(&u32::from(slot)),
                    "shard {i} of {n}: {slot}"
                );
                slots.push(slot);
            }
            // Over three primaries of equal ranges, as `redis-cli --cluster create` makes them.
            let mut per_master = [0u16; 3];
            for s in slots {
                per_master[usize::from(s) * 3 / 16_384] += 1;
            }
            let (most, least) = (per_master.iter().max(), per_master.iter().min());
            if n >= 3 {
                assert!(
                    most.zip(least).is_some_and(|(a, b)| a - b <= 1),
                    "{n}: {per_master:?}"
                );
            }
        }
        assert_eq!(
            Layout::cluster(8).entries_list(&o, 3),
            format!("p:{{{}}}metrics_list", shard_tag(3, 8))
        );
    }
}
