//! Rollups: a batch's rows summed per service, function and bucket (one minute, one hour) on the
//! client, copied into a staging table and merged into `T_1m` and `T_1h` by `INSERT .. ON
//! CONFLICT DO UPDATE`, in the transaction that inserts the rows. Only rows actually inserted are
//! rolled up (all of a batch's on the first attempt; on a retry, those `RETURNING` names), so each
//! entry counts once in each rollup whatever the drainers do.

use crate::schema::ROLLUP_KEY;
use crate::tables::{floor_to, Level, Tables, HOUR, MINUTE};
use crate::types::{duration_to_secs, pg_text, PgTimestamp};
use fnmetrics_core::{bucket_index, EntryRecord, Histogram};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{Client, Statement, Transaction};
use std::borrow::Cow;
use std::collections::HashMap;

/// The session's rollup staging table: created once per connection, emptied at every commit.
const STAGING: &str = "pg_temp.fnmetrics_rollup_staging";

/// `CREATE TEMPORARY TABLE` of [`STAGING`].
const CREATE_STAGING: &str = "CREATE TEMPORARY TABLE IF NOT EXISTS \
    pg_temp.fnmetrics_rollup_staging (
        level smallint NOT NULL,
        service text NOT NULL,
        func_name text NOT NULL,
        bucket timestamptz NOT NULL,
        entries bigint NOT NULL,
        calls bigint NOT NULL,
        errors bigint NOT NULL,
        total double precision NOT NULL,
        min double precision NOT NULL,
        max double precision NOT NULL,
        hist_index smallint[] NOT NULL,
        hist_count bigint[] NOT NULL
    ) ON COMMIT DELETE ROWS";

/// The COPY of [`STAGING`].
const COPY_STAGING: &str = "COPY pg_temp.fnmetrics_rollup_staging (level, service, \
    func_name, bucket, entries, calls, errors, total, min, max, hist_index, hist_count) \
    FROM STDIN (FORMAT binary)";

const COPY_TYPES: [Type; 12] = [
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::INT2_ARRAY,
    Type::INT8_ARRAY,
];

/// The histogram bucket of a stored `execution_time`, exactly as the SQL function
/// `fnmetrics_bucket` computes it from the stored seconds: nanoseconds rounded half to even.
pub(crate) fn bucket_of_secs(secs: f64) -> i16 {
    let ns = (secs * 1e9).round_ties_even();
    let ns = if ns.is_nan() || ns < 1.0 {
        0
    } else if ns >= u64::MAX as f64 {
        u64::MAX
    } else {
        ns as u64
    };
    // At most 1279.
    bucket_index(ns) as i16
}

/// One rollup row's sums.
#[derive(Clone, Debug, PartialEq)]
struct Sums {
    entries: i64,
    calls: i64,
    errors: i64,
    total: f64,
    min: f64,
    max: f64,
    /// Weighted calls per histogram bucket.
    hist: Histogram,
}

impl Sums {
    fn new() -> Sums {
        Sums {
            entries: 0,
            calls: 0,
            errors: 0,
            total: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            hist: Histogram::new(),
        }
    }

    fn add(&mut self, e: &EntryRecord) {
        let secs = duration_to_secs(e.execution_time);
        let weight = i64::from(e.weight);
        self.entries += 1;
        self.calls += weight;
        if e.error_occurred {
            self.errors += weight;
        }
        self.total += secs * weight as f64;
        self.min = self.min.min(secs);
        self.max = self.max.max(secs);
        self.hist
            .add_to_bucket(bucket_of_secs(secs) as usize, u64::from(e.weight));
    }

    fn merge(&mut self, other: &Sums) {
        self.entries += other.entries;
        self.calls += other.calls;
        self.errors += other.errors;
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.hist.merge(&other.hist);
    }
}

/// A rollup row's key: function, bucket start, service (as `text` stores them).
type Key<'a> = (Cow<'a, str>, i64, Cow<'a, str>);

/// A batch's rollup rows: per minute, and per hour (summed from the minutes).
#[derive(Debug, Default)]
pub(crate) struct Rollups<'a> {
    minutes: HashMap<Key<'a>, Sums>,
    hours: HashMap<Key<'a>, Sums>,
}

impl<'a> Rollups<'a> {
    /// Sums `entries`. Names are borrowed from them: nothing is allocated per entry.
    pub(crate) fn of(entries: impl Iterator<Item = &'a EntryRecord>) -> Rollups<'a> {
        let mut minutes: HashMap<Key<'a>, Sums> = HashMap::new();
        for e in entries {
            let key = (
                pg_text(&e.func_name),
                floor_to(e.created_at_micros, MINUTE),
                pg_text(&e.source.service),
            );
            minutes.entry(key).or_insert_with(Sums::new).add(e);
        }
        let mut hours: HashMap<Key<'a>, Sums> = HashMap::new();
        for ((func, start, service), s) in &minutes {
            hours
                .entry((func.clone(), floor_to(*start, HOUR), service.clone()))
                .or_insert_with(Sums::new)
                .merge(s);
        }
        Rollups { minutes, hours }
    }

    /// Whether there is nothing to roll up.
    pub(crate) fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// Every row, in the merges' key order (function, bucket, service) per level.
    fn rows(&self) -> Vec<(Level, &Key<'a>, &Sums)> {
        let mut rows: Vec<_> = [(Level::Minute, &self.minutes), (Level::Hour, &self.hours)]
            .into_iter()
            .flat_map(|(level, map)| map.iter().map(move |(k, s)| (level, k, s)))
            .collect();
        rows.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        rows
    }

    /// Copies the rows into [`STAGING`] and merges them into both rollups, in `tx`.
    pub(crate) fn write(
        &self,
        tx: &mut Transaction<'_>,
        statements: &Statements,
    ) -> Result<(), postgres::Error> {
        if self.is_empty() {
            return Ok(());
        }
        let mut writer = BinaryCopyInWriter::new(tx.copy_in(&statements.copy)?, &COPY_TYPES);
        for (level, (func, start, service), s) in self.rows() {
            let (index, count): (Vec<i16>, Vec<i64>) = s
                .hist
                .nonzero()
                .map(|(i, c)| (i as i16, i64::try_from(c).unwrap_or(i64::MAX)))
                .unzip();
            writer.write(&[
                &(level as i16),
                &&**service,
                &&**func,
                &PgTimestamp(*start),
                &s.entries,
                &s.calls,
                &s.errors,
                &s.total,
                &s.min,
                &s.max,
                &index,
                &count,
            ])?;
        }
        writer.finish()?;
        for m in &statements.merge {
            tx.execute(m, &[])?;
        }
        Ok(())
    }
}

/// A connection's prepared rollup statements: the `COPY` into [`STAGING`] and the merges into
/// `T_1m` and `T_1h`.
pub(crate) struct Statements {
    copy: Statement,
    merge: [Statement; 2],
}

impl Statements {
    /// Makes the staging table and prepares the statements on `client`.
    pub(crate) fn prepare(
        client: &mut Client,
        tables: &Tables,
    ) -> Result<Statements, postgres::Error> {
        client.batch_execute(CREATE_STAGING)?;
        Ok(Statements {
            copy: client.prepare(COPY_STAGING)?,
            merge: [
                client.prepare(&merge_sql(tables, Level::Minute))?,
                client.prepare(&merge_sql(tables, Level::Hour))?,
            ],
        })
    }
}

/// The statement that merges the staged rows of `level` into its rollup.
fn merge_sql(tables: &Tables, level: Level) -> String {
    upsert_sql(
        tables,
        level,
        &format!(
            "SELECT service, func_name, bucket, entries, calls, errors, total, min, max, \
             hist_index, hist_count FROM {STAGING} WHERE level = {}",
            level as i16
        ),
    )
}

/// `INSERT` into the rollup of `level` the rows of `source` (a `SELECT` of service, func_name,
/// bucket, entries, calls, errors, total, min, max, hist_index, hist_count, one row per key),
/// adding them to rows already there. Rows go in key order, so two writers lock shared rows in
/// the same order and never deadlock.
pub(crate) fn upsert_sql(tables: &Tables, level: Level, source: &str) -> String {
    format!(
        "INSERT INTO {t} AS r (service, func_name, label, bucket, entries, calls, errors, total,
                              min, max, hist_index, hist_count)
         SELECT s.service, s.func_name, '', s.bucket, s.entries, s.calls, s.errors, s.total,
                s.min, s.max, s.hist_index, s.hist_count
         FROM ({source}) s
         ORDER BY s.func_name, s.bucket, s.service
         ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET
             entries = r.entries + EXCLUDED.entries,
             calls = r.calls + EXCLUDED.calls,
             errors = r.errors + EXCLUDED.errors,
             total = r.total + EXCLUDED.total,
             min = least(r.min, EXCLUDED.min),
             max = greatest(r.max, EXCLUDED.max),
             (hist_index, hist_count) = (
                 SELECT m.hist_index, m.hist_count
                 FROM fnmetrics_hist_merge(r.hist_index, r.hist_count,
                                           EXCLUDED.hist_index, EXCLUDED.hist_count) m),
             updated_at = now()",
        t = tables.quoted(level)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn buckets_follow_the_stored_seconds() {
        assert_eq!(bucket_of_secs(0.0), 0);
        assert_eq!(bucket_of_secs(31e-9), 31);
        assert_eq!(bucket_of_secs(32e-9), 32);
        assert_eq!(bucket_of_secs(1e6), 1279);
        for ns in [33u64, 1_000, 1_234_567, 999_999_999, 1 << 40] {
            let secs = Duration::from_nanos(ns).as_secs_f64();
            assert_eq!(bucket_of_secs(secs), bucket_index(ns) as i16, "{ns}");
        }
    }

    #[test]
    fn sums_are_weighted_and_split_by_bucket() {
        let e = |micros: i64, ns: u64, err: bool, weight: u32| EntryRecord {
            id: [0; 16],
            func_name: "f".into(),
            execution_time: Duration::from_nanos(ns),
            error_occurred: err,
            created_at_micros: micros,
            weight,
            source: Arc::default(),
        };
        let batch = [
            e(0, 100, false, 1),
            e(59_999_999, 300, true, 4),
            e(60_000_000, 200, false, 1),
        ];
        let r = Rollups::of(batch.iter());
        let key = |start| (Cow::Borrowed("f"), start, Cow::Borrowed(""));
        let minute0 = &r.minutes[&key(0)];
        assert_eq!((minute0.entries, minute0.calls, minute0.errors), (2, 5, 4));
        assert_eq!(minute0.hist.count(), 5);
        assert!((minute0.total - 1300e-9).abs() < 1e-15);
        let hour0 = &r.hours[&key(0)];
        assert_eq!((hour0.entries, hour0.calls), (3, 6));
        assert_eq!((hour0.min, hour0.max), (100e-9, 300e-9));
        let levels: Vec<Level> = r.rows().iter().map(|r| r.0).collect();
        assert_eq!(levels, [Level::Minute, Level::Minute, Level::Hour]);
    }
}
