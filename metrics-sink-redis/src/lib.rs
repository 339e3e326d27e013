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
//! Redis Cluster is not supported yet: a node of one (`cluster_enabled:1` in `INFO cluster`) is
//! refused at connect with [`ErrorKind::InvalidConfig`](fnmetrics_core::ErrorKind::InvalidConfig),
//! which fails a flusher's `start()` at once, naming the cluster. Every script names all the keys
//! it touches (a flush: the entry list, the flush-id key, one hash per function; a claim taken
//! over: its list, in a second script); `docs/cluster.md` plans the cluster layout on that.
//!
//! # Key layout
//! With `P` = [`RedisOptions::key_prefix`]:
//!
//! | key | type | what |
//! |---|---|---|
//! | `P` + `metrics_list` ([`entries_key`](RedisOptions::entries_key)) | list | per-call entries, oldest first: one element per flush (per source within a flush), a versioned frame of the source (service and host) and its [`EntryRecord`](fnmetrics_core::EntryRecord)s (see [`decode_element`]) |
//! | `P` + `app:metrics:` ([`aggregate_prefix`](RedisOptions::aggregate_prefix)) + name | hash | `calls`, `errors`, `panics`, `cancelled`, `dropped_entries`, `total_ns`, `min_ns`, `max_ns`, and `b<i>`: the count of histogram bucket `i` |
//! | `P` + `fnmetrics:functions` | set | every function name with aggregates |
//! | `P` + `fnmetrics:flush:<hex id>` | string | a flush applied; expires after [`flush_id_ttl`](RedisOptions::flush_id_ttl) |
//! | `P` + `fnmetrics:claims` | sorted set | claim ids, scored by lease deadline (ms, Redis time) |
//! | `P` + `fnmetrics:claim:<id>` | list | the elements of one claim |
//! | `P` + `fnmetrics:dead` | list | dead letters, oldest first ([`DeadLetter`]), at most [`dead_letter_cap`](RedisOptions::dead_letter_cap) |
//! | `P` + `fnmetrics:dead:evicted` | string | how many dead letters were evicted because the list was full |
//!
//! Every number is a decimal integer (`total_ns` saturates at `i64::MAX`), so the hashes can be
//! read with `redis-cli HGETALL` too.
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

// Used by the cluster layout's coming stages; tested against a real cluster.
#[cfg_attr(not(test), allow(dead_code))]
mod cluster;
mod codec;
mod conn;
mod layout;
mod options;
mod queue;
mod reader;
#[cfg_attr(not(test), allow(dead_code))]
mod shards;
mod sink;

pub use codec::{
    decode_element, DeadLetter, DeadLetterKind, DecodedElement, Undecodable, FRAME_VERSION,
    SOURCED_FRAME_VERSION,
};
pub use layout::{key_slot, SLOTS};
pub use options::RedisOptions;
pub use queue::{Acked, Claim, DeadLetterCounts, QueueOverview, RedisQueue};
pub use reader::RedisReader;
pub use sink::{RedisSink, WriteOutcome};
