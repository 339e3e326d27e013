//! The Redis side of [fnmetrics](https://docs.rs/fnmetrics): stage 1 of the flusher (per-call
//! entries and per-function aggregate deltas into Redis), the Redis half of stage 2 (claiming
//! batches of entries for PostgreSQL) and fleet-wide reads of the aggregates.
//!
//! Most users want the `fnmetrics` crate with its `redis` feature, which starts a
//! [`RedisSink`] from `Flusher::builder().redis(url)`.
//!
//! # Running Redis
//! Redis is the durable buffer between the stages: once a flush is accepted, the process forgets
//! it. Run Redis with AOF persistence (`appendonly yes`; `appendfsync everysec` loses at most
//! about a second of flushes on a power loss, `always` none), or a restart loses what stage 2 had
//! not moved yet.
//!
//! A Redis Cluster is found at connect (`cluster_enabled:1` in `INFO cluster`) and used as one
//! ([`ClusterMode::Auto`]): keys are spread over hash-tagged shards (8 by default, the count
//! stored once in the cluster: [`RedisOptions::shards`]), so that every script touches one slot.
//! A flush goes to the shard its id picks, in one round trip with a `WAIT` for a replica of the
//! shard's primary when it has one; readers sum the shards; drainers claim shard by shard. Calls
//! follow `MOVED`, `ASK` and `TRYAGAIN`, and find a promoted replica after a failover. A cluster
//! older than Redis 7.0, a URL with a database other than 0, a key prefix with a brace, or
//! [`ClusterMode::Standalone`] are refused with
//! [`ErrorKind::InvalidConfig`](fnmetrics_core::ErrorKind::InvalidConfig), naming the cluster.
//! The layout is in `docs/cluster.md`.
//!
//! # Key layout
//! With `P` = [`RedisOptions::key_prefix`]:
//!
//! | key | type | what |
//! |---|---|---|
//! | `P` + `metrics_list` ([`entries_key`](RedisOptions::entries_key)) | list | per-call entries, oldest first: one element per flush (per source within a flush), a versioned frame of the source (service and host) and its [`EntryRecord`](fnmetrics_core::EntryRecord)s (see [`wire::decode_element`]) |
//! | `P` + `app:metrics:` ([`aggregate_prefix`](RedisOptions::aggregate_prefix)) + name | hash | `calls`, `errors`, `panics`, `cancelled`, `dropped_entries`, `total_ns`, `min_ns`, `max_ns`, and `b<i>`: the count of histogram bucket `i` |
//! | `P` + `fnmetrics:functions` | set | every function name with aggregates |
//! | `P` + `fnmetrics:changes` | sorted set | every function name with aggregates, scored by the version of the last flush that changed them ([`RedisReader::changed`]) |
//! | `P` + `fnmetrics:version` | string | the version of the last flush with aggregates: one more a flush |
//! | `P` + `fnmetrics:flush:<hex id>` | string | a flush applied; expires after [`flush_id_ttl`](RedisOptions::flush_id_ttl) |
//! | `P` + `fnmetrics:claims` | sorted set | claim ids, scored by lease deadline (ms, Redis time) |
//! | `P` + `fnmetrics:claim:<id>` | list | the elements of one claim |
//! | `P` + `fnmetrics:dead` | list | dead letters, oldest first ([`DeadLetter`]), at most [`dead_letter_cap`](RedisOptions::dead_letter_cap) |
//! | `P` + `fnmetrics:dead:evicted` | string | how many dead letters were evicted because the list was full |
//!
//! Every number is a decimal integer (`total_ns` saturates at `i64::MAX`), so the hashes can be
//! read with `redis-cli HGETALL` too.
//!
//! On a Redis Cluster, shard `i` of `N` (see [`RedisOptions::shards`]) has the hash tag
//! `T` = `{fnm-s<i>-<k>}` (the smallest `k` that puts it in the `i`-th `N`-th of the slots), and
//! every key above is `P` + `T` + the same name: `P{fnm-s3-0}metrics_list`,
//! `P{fnm-s3-0}app:metrics:<name>` (this shard's share of the function's aggregates; readers sum
//! the shards), `P{fnm-s3-0}fnmetrics:claims`… Flush ids are a sorted set per shard,
//! `P` + `T` + `fnmetrics:flushes` (id → when it is forgotten, ms), with `P` + `T` +
//! `fnmetrics:shard` (`retries_seen`); the shard count is stored in `P{fnm-meta}fnmetrics:layout`
//! (`version`, `shards`).
//!
//! # In libraries
//! Nothing to do here: put `#[measured]` on functions and leave the sinks to the application.
//!
//! # In applications
//! The flusher drives [`RedisSink`] and a stage-2 drainer drives [`RedisQueue`]; read the
//! fleet-wide totals with [`RedisReader`]:
//!
//! ```no_run
//! use fnmetrics::redis::{RedisOptions, RedisReader};
//!
//! let mut reader = RedisReader::connect("redis://127.0.0.1:6379/", RedisOptions::default())?;
//! if let Some(m) = reader.get("my_app::load_user")? {
//!     println!("{} calls across the fleet, p99 {:?}", m.calls, m.quantile(0.99));
//! }
//! # Ok::<(), fnmetrics::Error>(())
//! ```
//!
//! # Throughput
//! A flush is one round trip: `EVALSHA` of a script that checks the flush id and every key, then
//! sets the flush-id key, pushes the flush's entries as one frame (one per source, should a
//! flush hold entries of several; one `RPUSH`), and adds the aggregate deltas. The entries cross
//! into Lua as one string per frame, not one per entry: see [`RedisSink`]. Claims
//! move whole frames server-side (`LMOVE`) and are read with a plain `LRANGE`.
//!
//! # Dead letters
//! What stage 2 cannot move for good (bytes it cannot decode, rows the database refuses) goes
//! to the capped list `P` + `fnmetrics:dead` when the claim is acknowledged
//! ([`RedisQueue::ack_with`]); [`RedisQueue::dead_letters`], [`RedisQueue::requeue_dead_letters`]
//! and [`RedisQueue::purge_dead_letters`] list, re-queue and purge them.

mod aggregates;
mod cluster;
mod codec;
mod conn;
mod error;
mod hgetall;
mod layout;
mod options;
mod queue;
mod reader;
mod sink;

pub use codec::{DeadLetter, DeadLetterKind, Undecodable};
/// Redis Cluster's key hash, for tests that check where keys land. Not a stable API.
#[doc(hidden)]
pub use layout::{key_slot, SLOTS};

/// What the entry list holds, for tools that read it directly: each element is one flush's
/// entries in a versioned frame ([`wire::FRAME_VERSION`], [`wire::SOURCED_FRAME_VERSION`]) or,
/// re-queued, a single encoded entry; [`wire::decode_element`] reads any of them.
pub mod wire {
    pub use crate::codec::{decode_element, DecodedElement, FRAME_VERSION, SOURCED_FRAME_VERSION};
}
pub use options::{ClusterMode, RedisOptions};
pub use queue::{Claim, DeadLetterCounts, QueueOverview, RedisQueue};
pub use reader::{ChangeCursor, RedisReader};
pub use sink::{RedisSink, WriteOutcome};
