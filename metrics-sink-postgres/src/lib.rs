//! The PostgreSQL sink of [fnmetrics](https://docs.rs/fnmetrics): it stores per-call entries in
//! a `metrics` table, rolls them up by the minute and the hour, and reads any time window or
//! series back (calls, errors, mean, p50, p99) from the table that holds it most compactly.
//!
//! The tables, made by an idempotent migration (schema version 2, recorded in
//! `fnmetrics_schema_version`; a version 1 table is moved into them in place):
//!
//! ```sql
//! CREATE TABLE metrics (                         -- partitioned by day: metrics_pYYYYMMDD
//!     id uuid NOT NULL,                          -- time-ordered, deterministic per entry
//!     func_name text NOT NULL,
//!     execution_time double precision NOT NULL,  -- seconds
//!     error_occurred boolean NOT NULL,
//!     created_at timestamptz NOT NULL,
//!     service text NOT NULL DEFAULT '',          -- FlusherBuilder::service, the binary's name
//!     host text NOT NULL DEFAULT '',
//!     weight bigint NOT NULL DEFAULT 1,          -- calls the row stands for (sampling)
//!     PRIMARY KEY (id, created_at)
//! ) PARTITION BY RANGE (created_at);
//! CREATE INDEX ON metrics (func_name, created_at);
//! -- metrics_1m (by day) and metrics_1h (by month): one row per function, bucket, service and
//! -- label, with calls, errors, total, min, max and a sparse histogram (hist_index, hist_count).
//! ```
//!
//! Retention drops whole partitions (raw 7 days, minutes 30, hours 365 by default:
//! [`Retention`]); [`PostgresSink::maintain`] makes partitions ahead and drops expired ones.
//! An existing table of another shape is never altered: [`PostgresSink::connect`] fails with
//! [`ErrorKind::Schema`](fnmetrics_core::ErrorKind::Schema).
//!
//! Batches are written in one transaction: a binary `COPY` straight into the partitioned table
//! on a batch's first attempt, and on a retry (or when ids repeat) a `COPY` into a staging table
//! then `INSERT .. ON CONFLICT (id, created_at) DO NOTHING`; the rollups are updated from the
//! rows actually inserted, in the same transaction (see [`PostgresSink::write_batch`]). Writing
//! a batch again (after a timeout, a crash, a takeover by another process) inserts and counts
//! nothing twice. Rows the server refuses for good (a `CHECK` constraint, a row-level-security
//! policy, a row too large for an index) are found by splitting the batch, and returned as dead
//! letters ([`BatchOutcome::rejected`]) while the other rows go in; an error that hits every row
//! alike is an outage, returned as a transient error (the SQLSTATE tells the classes apart: `error.rs`).
//! `cargo bench --bench pipeline -- stage2` compares the drainer with `psql \copy` of the same
//! rows.
//!
//! Connections use TLS (rustls) as the URL's `sslmode` says (`disable`, `prefer`, `require`),
//! always verifying the server's certificate against the system's roots or a CA file
//! ([`PostgresOptions::with_ca_file`]); the mode a connection ended up in is logged. Every wait
//! is bounded: connect, statement and lock timeouts, the migration lock, TCP keepalives (see
//! [`PostgresOptions`]).
//!
//! # In libraries
//! Do not depend on this crate: put `#[measured]` on functions (crate `fnmetrics`) and leave
//! storage to the application.
//!
//! # In applications
//! Usually the `fnmetrics` flusher drives this sink (feature `postgres`). Use it directly to
//! write entries from elsewhere; read with [`PostgresReader`], which never migrates, what a
//! [`Query`] asks for:
//!
//! ```no_run
//! use fnmetrics::postgres::{PostgresOptions, PostgresReader, Query};
//! use std::time::Duration;
//!
//! let mut reader = PostgresReader::connect(
//!     "postgres://postgres@127.0.0.1/app",
//!     PostgresOptions::default(),
//! )?;
//! let month = Query::all().last(Duration::from_secs(30 * 86_400));
//! for (name, w) in reader.window(&month)? {
//!     println!("{name}: {} calls, {} errors, p99 {:?}", w.calls, w.errors, w.p99);
//! }
//! # Ok::<(), fnmetrics::Error>(())
//! ```

mod error;
mod options;
mod partitions;
mod query;
mod reader;
mod rollup;
mod runtime;
mod schema;
mod session;
mod sink;
mod tables;
mod tls;
mod types;

pub use options::PostgresOptions;
pub use partitions::{Maintenance, Retention};
pub use query::Query;
pub use reader::{Point, PostgresReader, WindowStats, MAX_POINTS};
pub use schema::{Migration, SCHEMA_VERSION};
/// After how many single rows refused as an outage may be a bisection calls it one: for the
/// tests. Not a stable API.
#[doc(hidden)]
pub use sink::OUTAGE_LEAF_FAILURES;
pub use sink::{BatchOutcome, PostgresSink, RejectedRow};
