//! Partitions: made ahead by maintenance and on demand by the writer (so an entry for a day
//! without a partition is never lost), and dropped whole when they fall out of retention.
//!
//! A partition is made as a plain table and then attached (`ATTACH PARTITION` takes only a
//! `SHARE UPDATE EXCLUSIVE` lock on the parent, which writers' `ROW EXCLUSIVE` does not conflict
//! with; `CREATE TABLE .. PARTITION OF` would take `ACCESS EXCLUSIVE` and stall every writer).
//! An expired partition is detached `CONCURRENTLY` (PostgreSQL 14 and later; the same lock), then
//! dropped alone. Makers of partitions take an advisory lock per table, so two drainers never
//! race on one name; maintenance takes another, so one drainer at a time does it.

use crate::error::pg_error;
use crate::options::{quoted, PostgresOptions};
use crate::tables::{Level, Span, Tables, DAY};
use fnmetrics_core::Error;
use postgres::{Client, GenericClient};
use std::collections::BTreeSet;
use std::time::Duration;

/// The advisory lock key of partition making for `table`: the migration key with the table
/// name's FNV-1a hash mixed in.
fn lock_key(table: &str, salt: u64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in table.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// The advisory lock that serialises makers of `table`'s partitions.
pub(crate) fn partition_lock_key(table: &str) -> i64 {
    lock_key(table, 1)
}

/// The advisory lock that lets one drainer at a time maintain `table`.
pub(crate) fn maintenance_lock_key(table: &str) -> i64 {
    lock_key(table, 2)
}

/// The partitions to have around `now`: for days, yesterday to two days ahead; for months,
/// this one and the next.
pub(crate) fn spans_around(level: Level, now: i64) -> Vec<Span> {
    let mut spans: Vec<Span> = (-1..=2)
        .map(|d| level.partition_of(now.saturating_add(d * DAY)))
        .collect();
    if level == Level::Hour {
        // Two days on may still be this month: reach into the next one.
        spans.push(level.partition_of(now.saturating_add(32 * DAY)));
    }
    spans.sort_unstable();
    spans.dedup();
    spans
}

/// Makes partition `span` of `level` and attaches it, if it is not attached already; a
/// partition left detached (by retention that stopped half-way) is attached again. Returns
/// whether anything was done. The caller holds the partition lock.
pub(crate) fn attach_partition(
    client: &mut impl GenericClient,
    tables: &Tables,
    level: Level,
    span: Span,
) -> Result<bool, postgres::Error> {
    let name = tables.partition(level, span);
    let attached: Option<bool> = client
        .query_opt(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
             FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&quoted(&name)],
        )?
        .map(|r| r.try_get(0))
        .transpose()?;
    let parent = tables.quoted(level);
    match attached {
        Some(true) => return Ok(false),
        Some(false) => {}
        None => client.batch_execute(&format!(
            "CREATE TABLE {} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
            quoted(&name)
        ))?,
    }
    client.batch_execute(&format!(
        "ALTER TABLE {parent} ATTACH PARTITION {} {}",
        quoted(&name),
        span.for_values()
    ))?;
    Ok(true)
}

/// Makes the partitions in `needed` that are not in `known`, in one short transaction under the
/// partition lock, and adds them to `known`. Returns how many were made.
pub(crate) fn ensure(
    client: &mut Client,
    tables: &Tables,
    needed: &BTreeSet<(Level, Span)>,
    known: &mut BTreeSet<(Level, Span)>,
) -> Result<usize, postgres::Error> {
    let missing: Vec<_> = needed.difference(known).copied().collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&partition_lock_key(&tables.raw)],
    )?;
    let mut made = 0;
    for &(level, span) in &missing {
        made += usize::from(attach_partition(&mut tx, tables, level, span)?);
    }
    tx.commit()?;
    known.extend(missing);
    Ok(made)
}

/// How long each table keeps its partitions: raw rows 7 days, one-minute rollups 30 days,
/// one-hour rollups 365 days by default (the policy of the usual metrics systems).
///
/// A partition is dropped once everything it can hold is older than its table's retention; as
/// partitions are days (months for the hourly rollup), data stays up to a day (a month) longer.
///
/// ```
/// use fnmetrics::postgres::Retention;
/// use std::time::Duration;
/// let r = Retention::default().with_raw(Duration::from_secs(3 * 86_400));
/// assert_eq!(r.raw(), Duration::from_secs(3 * 86_400));
/// assert_eq!(r.minute(), Duration::from_secs(30 * 86_400));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    raw: Duration,
    minute: Duration,
    hour: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Retention {
            raw: Duration::from_secs(7 * DAY),
            minute: Duration::from_secs(30 * DAY),
            hour: Duration::from_secs(365 * DAY),
        }
    }
}

impl Retention {
    /// How long raw rows are kept.
    ///
    /// ```
    /// # use fnmetrics::postgres::Retention;
    /// assert_eq!(Retention::default().raw().as_secs(), 7 * 86_400);
    /// ```
    pub fn raw(&self) -> Duration {
        self.raw
    }

    /// How long one-minute rollups are kept.
    ///
    /// ```
    /// # use fnmetrics::postgres::Retention;
    /// assert_eq!(Retention::default().minute().as_secs(), 30 * 86_400);
    /// ```
    pub fn minute(&self) -> Duration {
        self.minute
    }

    /// How long one-hour rollups are kept.
    ///
    /// ```
    /// # use fnmetrics::postgres::Retention;
    /// assert_eq!(Retention::default().hour().as_secs(), 365 * 86_400);
    /// ```
    pub fn hour(&self) -> Duration {
        self.hour
    }

    /// Keeps raw rows this long.
    ///
    /// ```
    /// # use fnmetrics::postgres::Retention;
    /// let r = Retention::default().with_raw(std::time::Duration::from_secs(86_400));
    /// assert_eq!(r.raw().as_secs(), 86_400);
    /// ```
    pub fn with_raw(mut self, keep: Duration) -> Self {
        self.raw = keep;
        self
    }

    /// Keeps one-minute rollups this long.
    ///
    /// ```
    /// # use fnmetrics::postgres::Retention;
    /// let r = Retention::default().with_minute(std::time::Duration::from_secs(90 * 86_400));
    /// assert_eq!(r.minute().as_secs(), 90 * 86_400);
    /// ```
    pub fn with_minute(mut self, keep: Duration) -> Self {
        self.minute = keep;
        self
    }

    /// Keeps one-hour rollups this long.
    ///
    /// ```
    /// # use fnmetrics::postgres::Retention;
    /// let r = Retention::default().with_hour(std::time::Duration::from_secs(2 * 365 * 86_400));
    /// assert_eq!(r.hour().as_secs(), 2 * 365 * 86_400);
    /// ```
    pub fn with_hour(mut self, keep: Duration) -> Self {
        self.hour = keep;
        self
    }

    /// The retention of `level`.
    pub(crate) fn of(&self, level: Level) -> Duration {
        match level {
            Level::Raw => self.raw,
            Level::Minute => self.minute,
            Level::Hour => self.hour,
        }
    }
}

/// What one maintenance run did.
///
/// ```no_run
/// # use fnmetrics::postgres::{PostgresOptions, PostgresSink};
/// let mut sink = PostgresSink::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
/// let m = sink.maintain()?;
/// println!("{} partitions made, {} dropped", m.created, m.dropped.len());
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Maintenance {
    /// Whether this run did the work: `false` when another process held the maintenance lock
    /// (it is doing it).
    pub ran: bool,
    /// Partitions made ahead.
    pub created: usize,
    /// The partitions dropped, by name.
    pub dropped: Vec<String>,
}

/// One maintenance run on `client` (a connection of its own: detaching concurrently cannot run
/// inside a transaction). Takes the maintenance lock without waiting; makes the partitions
/// around `now`, then detaches and drops those past retention.
pub(crate) fn maintain(
    client: &mut Client,
    options: &PostgresOptions,
    now: i64,
) -> Result<Maintenance, Error> {
    let ctx = "cannot maintain the PostgreSQL partitions";
    let err = |e| pg_error(ctx, e);
    let tables = Tables::new(options.table());
    let key = maintenance_lock_key(&tables.raw);
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
    if !got {
        return Ok(Maintenance::default());
    }
    let result = maintain_locked(client, options, &tables, now);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&key]);
    let m = result?;
    unlocked.map_err(err)?;
    Ok(m)
}

fn maintain_locked(
    client: &mut Client,
    options: &PostgresOptions,
    tables: &Tables,
    now: i64,
) -> Result<Maintenance, Error> {
    let ctx = "cannot maintain the PostgreSQL partitions";
    let err = |e| pg_error(ctx, e);
    let mut m = Maintenance {
        ran: true,
        ..Maintenance::default()
    };
    let needed: BTreeSet<_> = Level::ALL
        .into_iter()
        .flat_map(|l| spans_around(l, now).into_iter().map(move |s| (l, s)))
        .collect();
    m.created = ensure(client, tables, &needed, &mut BTreeSet::new()).map_err(err)?;
    let concurrently: bool = client
        .query_one(
            "SELECT current_setting('server_version_num')::int >= 140000",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
    for level in Level::ALL {
        let keep = i64::try_from(options.retention().of(level).as_micros()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(keep);
        let parent = tables.of(level);
        // Attached partitions, and tables of our naming left detached by a run that stopped.
        let rows = client
            .query(
                "SELECT c.relname::text, i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false)
                 FROM pg_class c
                 LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
                 WHERE c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass($1))
                   AND c.relkind = 'r'
                   AND left(c.relname, length($2) + 1) = $2 || '_'
                   AND (i.inhparent IS NULL OR i.inhparent = to_regclass($1))",
                &[&quoted(parent), &parent],
            )
            .map_err(err)?;
        for row in rows {
            let name: String = row.try_get(0).map_err(err)?;
            let attached: bool = row.try_get(1).map_err(err)?;
            let pending: bool = row.try_get(2).map_err(err)?;
            let Some(span) = Span::parse(&name[parent.len() + 1..]) else {
                continue; // not one of ours (another level's, or a user's table)
            };
            if !span.ends_before(cutoff) {
                continue;
            }
            if attached {
                detach(client, parent, &name, pending, concurrently).map_err(err)?;
            }
            if drop_detached(client, &name).map_err(err)? {
                log::info!(
                    target: "fnmetrics",
                    "dropped partition `{name}`: past the retention of `{parent}`"
                );
                m.dropped.push(name);
            }
        }
    }
    Ok(m)
}

/// Detaches partition `name` from `parent`: concurrently where the server can (no lock that
/// stalls writers), finishing a detach a stopped run left pending.
fn detach(
    client: &mut Client,
    parent: &str,
    name: &str,
    pending: bool,
    concurrently: bool,
) -> Result<(), postgres::Error> {
    let how = match (pending, concurrently) {
        (true, _) => "FINALIZE",
        (false, true) => "CONCURRENTLY",
        (false, false) => "",
    };
    // The session's lock_timeout bounds the waits (a concurrent detach that times out is left
    // pending, and finalized by the next run).
    client.batch_execute(&format!(
        "ALTER TABLE {} DETACH PARTITION {} {how}",
        quoted(parent),
        quoted(name)
    ))
}

/// Drops table `name` if it is not (or no longer: a writer may have attached it again for a late
/// entry) a partition. Returns whether it was dropped.
fn drop_detached(client: &mut Client, name: &str) -> Result<bool, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        quoted(name)
    ))?;
    let attached: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1))",
            &[&quoted(name)],
        )?
        .try_get(0)?;
    if attached {
        return Ok(false);
    }
    tx.batch_execute(&format!("DROP TABLE {}", quoted(name)))?;
    tx.commit()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_ahead() {
        let now = 1_796_169_600_000_000; // 2026-12-02
        let days: Vec<String> = spans_around(Level::Raw, now)
            .iter()
            .map(|s| s.suffix())
            .collect();
        assert_eq!(days, ["p20261201", "p20261202", "p20261203", "p20261204"]);
        let months: Vec<String> = spans_around(Level::Hour, now)
            .iter()
            .map(|s| s.suffix())
            .collect();
        assert_eq!(months, ["p202612", "p202701"]);
    }

    #[test]
    fn lock_keys_differ() {
        assert_ne!(
            partition_lock_key("metrics"),
            maintenance_lock_key("metrics")
        );
        assert_ne!(
            partition_lock_key("metrics"),
            partition_lock_key("metrics2")
        );
    }
}
