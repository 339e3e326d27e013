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
//! Redis Cluster is not supported yet: one flush touches the entry list, the flush-id key and
//! one hash per function, and the claim script builds claim keys from their ids, so all of them
//! would have to share a slot (a hash tag in [`RedisOptions::key_prefix`] such as `{fnmetrics}`
//! would do that, but this crate connects to a single node).
//!
//! # Key layout
//! With `P` = [`RedisOptions::key_prefix`]:
//!
//! | key | type | what |
//! |---|---|---|
//! | `P` + `metrics_list` ([`entries_key`](RedisOptions::entries_key)) | list | per-call entries, [`EntryRecord::encode`](fnmetrics_core::EntryRecord::encode)d, oldest first |
//! | `P` + `app:metrics:` ([`aggregate_prefix`](RedisOptions::aggregate_prefix)) + name | hash | `calls`, `errors`, `panics`, `cancelled`, `dropped_entries`, `total_ns`, `min_ns`, `max_ns`, and `b<i>`: the count of histogram bucket `i` |
//! | `P` + `fnmetrics:functions` | set | every function name with aggregates |
//! | `P` + `fnmetrics:flush:<hex id>` | string | a flush applied; expires after [`flush_id_ttl`](RedisOptions::flush_id_ttl) |
//! | `P` + `fnmetrics:claims` | sorted set | claim ids, scored by lease deadline (ms, Redis time) |
//! | `P` + `fnmetrics:claim:<id>` | list | the entries of one claim |
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
//! use fnmetrics_sink_redis::{RedisOptions, RedisReader};
//!
//! let mut reader = RedisReader::connect("redis://127.0.0.1:6379/", RedisOptions::default())?;
//! if let Some(m) = reader.get("my_app::load_user")? {
//!     println!("{} calls across the fleet, p99 {:?}", m.calls, m.quantile(0.99));
//! }
//! # Ok::<(), fnmetrics_core::Error>(())
//! ```
//!
//! # Throughput
//! A flush is two round trips: a read-only check (`WATCH` on the flush id, then a script that
//! checks the keys and says whether the flush is known), then one `MULTI`/`EXEC` with the
//! flush-id key, the aggregate deltas (a small script) and the entries as `RPUSH`es of 1000. The
//! entries never pass through Lua, which would cost more than pushing them: see [`RedisSink`]
//! for the measurements. Claims copy entries server-side (`SORT .. BY nosort LIMIT .. STORE`)
//! and are read with a plain `LRANGE`.

mod conn;
mod options;
mod queue;
mod reader;
mod sink;

pub use options::RedisOptions;
pub use queue::{Claim, RedisQueue};
pub use reader::RedisReader;
pub use sink::{RedisSink, WriteOutcome};
