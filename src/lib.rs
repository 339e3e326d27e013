//! Function metrics for Rust: put `#[measured]` on a function and get its call count, error count
//! and execution time (mean, percentiles, min, max), in this process, across a fleet (Redis) and
//! as history (PostgreSQL).
//!
//! ```
//! use fnmetrics::measured;
//!
//! #[derive(Debug)]
//! struct NotFound;
//!
//! #[measured]
//! fn load_user(id: u64) -> Result<String, NotFound> {
//!     if id == 0 { Err(NotFound) } else { Ok(format!("user {id}")) }
//! }
//!
//! # fn main() {
//! load_user(1).unwrap();
//! load_user(0).unwrap_err();
//!
//! let m = fnmetrics::get(concat!(module_path!(), "::load_user")).unwrap();
//! assert_eq!((m.calls, m.errors), (2, 1));
//! println!("mean {:?}, p99 {:?}, max {:?}", m.mean(), m.quantile(0.99), m.max());
//! # }
//! ```
//!
//! # What is recorded
//! For every function: calls, errors (`Err` of any `Result`, type aliases included, and panics),
//! panics, cancelled async calls, total/min/max time and a log-linear histogram whose quantiles are
//! within 1.6 % of the truth. A call costs two TSC reads and a few stores into this thread's own
//! counters: no lock, allocation, hash lookup or shared cache line (see `benches/overhead.rs`).
//!
//! # In libraries
//! Put `#[measured]` on the functions worth watching and stop there: recording needs no set-up,
//! and whether metrics leave the process is the application's choice. Use
//! `default-features = false` to leave the Redis and PostgreSQL clients out of your dependency
//! tree.
//!
//! # In applications
//! Read metrics with [`get`] and [`snapshot_all`]. To share them across processes and keep
//! history, start a [`Flusher`]: it moves per-call entries and per-function aggregates to Redis,
//! and from Redis into a PostgreSQL `metrics` table, from one background thread.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! fn main() -> Result<(), fnmetrics::Error> {
//!     let _flusher = fnmetrics::Flusher::builder()
//!         .redis("redis://127.0.0.1:6379/")
//!         .postgres("postgres://postgres@127.0.0.1/metrics")
//!         .batch_size(10_000)
//!         .flush_interval(Duration::from_secs(10))
//!         .start()?; // dropping the flusher flushes what is pending
//!     // ... run the application ...
//!     Ok(())
//! }
//! ```
//! Without URLs, `start()` keeps everything in-process: the embedded default.

#[cfg(any(feature = "redis", feature = "postgres"))]
mod blocking;
#[cfg(all(feature = "redis", feature = "postgres"))]
mod drain;
mod flusher;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod secret;
pub mod testing;

pub use flusher::{Flusher, FlusherBuilder, Mode};
pub use fnmetrics_core::{
    default_sample, get, is_enabled, memory, reset, set_default_sample, set_enabled, snapshot_all,
    EntryMode, Error, ErrorKind, FlushStats, Health, Histogram, Memory, Snapshot, StageHealth,
    MAX_NAME_LEN, MAX_SAMPLE,
};
pub use fnmetrics_macros::measured;
pub use secret::redact_url;

#[cfg(all(feature = "redis", feature = "postgres"))]
pub use drain::Drainer;

/// The Redis sink: stage 1 writes, the stage 2 queue, and fleet-wide reads
/// ([`redis::RedisReader`]).
#[cfg(feature = "redis")]
pub mod redis {
    #[doc(hidden)]
    pub use fnmetrics_sink_redis::{key_slot, SLOTS};
    pub use fnmetrics_sink_redis::{
        wire, ChangeCursor, Claim, ClusterMode, DeadLetter, DeadLetterCounts, DeadLetterKind,
        QueueOverview, RedisOptions, RedisQueue, RedisReader, RedisSink, Undecodable, WriteOutcome,
    };
}

/// The PostgreSQL sink: migration, batch writer and time-window reads.
#[cfg(feature = "postgres")]
pub mod postgres {
    #[doc(hidden)]
    pub use fnmetrics_sink_postgres::OUTAGE_LEAF_FAILURES;
    pub use fnmetrics_sink_postgres::{
        BatchOutcome, Maintenance, Migration, Point, PostgresOptions, PostgresReader, PostgresSink,
        Query, RejectedRow, Retention, WindowStats, MAX_POINTS, SCHEMA_VERSION,
    };
}

/// The layout of [`Histogram`]'s buckets, for code that reads them one by one (an exporter's
/// own buckets, a quantile between two histograms): bucket `i` holds the durations from
/// [`bucket_low(i)`](histogram::bucket_low) for [`bucket_width(i)`](histogram::bucket_width)
/// nanoseconds.
pub mod histogram {
    pub use fnmetrics_core::{bucket_index, bucket_low, bucket_width, BUCKETS};
}

/// The building blocks of custom stages: implement [`sink::Sink`] (stage 1) or [`sink::Drain`]
/// (stage 2) and plug them in with [`FlusherBuilder::sink`] and [`FlusherBuilder::drain`]; or
/// implement [`sink::ClaimQueue`] and [`sink::BatchStore`] and run the core's drainer on them
/// (`fnmetrics_core::Drainer`, which [`Drainer`] names for Redis and PostgreSQL).
pub mod sink {
    pub use fnmetrics_core::{
        Acked, BatchStore, Canceller, ClaimQueue, Claimed, DecodeError, Drain, DrainOutcome,
        EntryRecord, Field, FieldKind, FlushBatch, RefusedRow, Sink, Source, Written,
        MAX_SOURCE_NAME_LEN,
    };

    /// The versions of the binary encoding of one entry ([`EntryRecord::encode`]), for sinks
    /// that store entries as bytes and readers of what they stored: the first byte says which.
    pub mod wire {
        pub use fnmetrics_core::{
            ENCODING_VERSION, SOURCED_ENCODING_VERSION, WEIGHTED_ENCODING_VERSION,
        };
    }

    /// Ids as the flusher makes them, for benches and tests that build entries by hand. Not a
    /// stable API.
    #[doc(hidden)]
    pub use fnmetrics_core::{new_flush_id, truncate_str, IdGen};
}

/// Calendar arithmetic shared by the crates of fnmetrics and its command. Not a stable API.
#[doc(hidden)]
pub use fnmetrics_core::calendar as __calendar;

/// What the code generated by `#[measured]` calls. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use fnmetrics_core::__private::*;
}
