//! Stage 2 of the production pipeline: the core's drainer on Redis and PostgreSQL.

/// Moves entries from Redis into PostgreSQL: claims a batch in Redis, writes it to PostgreSQL
/// in one transaction, then removes it from Redis. A crash at any point loses nothing and
/// doubles nothing: an unacknowledged claim expires and is taken over, and PostgreSQL ignores
/// ids it already has. Any number of drainers, in any processes, can work on one Redis at once.
///
/// The flusher runs one when both URLs are set; a fleet can also run dedicated drainers
/// (`fnmetrics drain`, the command in `cli/`). The orchestration is the core's generic
/// [`fnmetrics_core::Drainer`]; see it for every setting.
///
/// ```no_run
/// use fnmetrics::postgres::PostgresSink;
/// use fnmetrics::redis::RedisQueue;
/// let mut d = fnmetrics::Drainer::connect(
///     RedisQueue::new("redis://127.0.0.1/", Default::default())?,
///     PostgresSink::new("postgres://postgres@127.0.0.1/metrics", Default::default())?,
/// )?
/// .writers(2);
/// let done = d.drain_all()?;
/// println!("{} entries saved, {} set aside", done.moved, done.dead_lettered);
/// # Ok::<(), fnmetrics::Error>(())
/// ```
pub type Drainer = fnmetrics_core::Drainer<
    fnmetrics_sink_redis::RedisQueue,
    fnmetrics_sink_postgres::PostgresSink,
>;
