//! Reads: a time window's stats and a series of points, from the table each part of the window
//! needs, with quantiles from the histogram buckets (the method of every other read).

use crate::error::pg_error;
use crate::options::{quoted, PostgresOptions};
use crate::query::{Functions, Query};
use crate::runtime::outside_runtime;
use crate::schema::{recorded_version, superseded, SCHEMA_VERSION};
use crate::session::{close_off_runtime, is_broken, Endpoint};
use crate::tables::{ceil_to, floor_to, Level, Tables, HOUR, MINUTE};
use crate::types::{ceil_micros, pg_text, secs_to_duration, PgTimestamp};
use fnmetrics_core::{Error, ErrorKind, Histogram};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{FromSql, ToSql, Type};
use postgres::{Client, Statement};
use postgres_protocol::types::{array_from_sql, int2_from_sql, int8_from_sql, Array};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Counts and timings of one function over a time window: a [`PostgresReader::window`].
///
/// Calls and errors are exact (a row counts its `weight`). Quantiles come from the histogram
/// buckets, the method of every other read (`get`, the fleet's aggregates), within 1.6 % of the
/// exact value; the mean, min and max are exact. All timings are zero when the window holds no
/// calls.
///
/// ```no_run
/// # use fnmetrics::postgres::{PostgresOptions, PostgresReader, Query};
/// # use std::time::Duration;
/// # let mut reader = PostgresReader::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
/// let q = Query::function("app::checkout").last(Duration::from_secs(60));
/// let (_, s) = &reader.window(&q)?[0];
/// assert!(s.errors <= s.calls);
/// assert!(s.min <= s.p50 && s.p50 <= s.p99 && s.p99 <= s.max);
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WindowStats {
    /// Calls in the window.
    pub calls: u64,
    /// Calls in the window that failed.
    pub errors: u64,
    /// The mean call time (`avg`).
    pub mean: Duration,
    /// The median call time (from the histogram).
    pub p50: Duration,
    /// The 99th percentile call time (from the histogram).
    pub p99: Duration,
    /// The shortest call.
    pub min: Duration,
    /// The longest call.
    pub max: Duration,
}

/// One point of a [`PostgresReader::series`]: the calls that ended in `[start, start + step)`.
///
/// ```no_run
/// # use fnmetrics::postgres::{PostgresOptions, PostgresReader, Query};
/// # use std::time::Duration;
/// # let mut reader = PostgresReader::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
/// let (day, hour) = (Duration::from_secs(86_400), Duration::from_secs(3600));
/// let q = Query::function("app::checkout").last(day).every(hour);
/// for p in &reader.series(&q)?[0].1 {
///     println!("{:?}: {} calls, {} errors, p99 {:?}", p.start, p.calls, p.errors, p.p99);
/// }
/// # Ok::<(), fnmetrics::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Point {
    /// The start of the point's interval.
    pub start: SystemTime,
    /// Calls (each row counts its weight).
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// The mean call time.
    pub mean: Duration,
    /// The median, from the histogram (within 1.6 %).
    pub p50: Duration,
    /// The 99th percentile, from the histogram (within 1.6 %).
    pub p99: Duration,
    /// The longest call.
    pub max: Duration,
}

/// Runs `statement` and hands each row to `f` as it arrives: decoding here overlaps the
/// server's sending (a month of hourly rollup rows is megabytes of histograms).
fn for_each_row(
    client: &mut Client,
    statement: &Statement,
    params: &[&(dyn ToSql + Sync)],
    mut f: impl FnMut(&postgres::Row) -> Result<(), postgres::Error>,
) -> Result<(), postgres::Error> {
    let mut rows = client.query_raw(statement, params.iter().copied())?;
    while let Some(row) = rows.next()? {
        f(&row)?;
    }
    Ok(())
}

/// A one-dimensional `smallint[]` or `bigint[]` in PostgreSQL's binary format, read in place
/// by postgres-protocol's decoder (no vector a row). Against the hand-written decoder it
/// replaced, `cargo bench --bench history` reads as fast within noise; decoding alone, it takes
/// about 2.5 times as long an element (some 30 ns against 12 on a loaded 2-core machine), which
/// the server's part of a read hides.
struct IntArray<'a>(Array<'a>);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl<'a> FromSql<'a> for IntArray<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<IntArray<'a>, BoxError> {
        let array = array_from_sql(raw)?;
        match array.dimensions().count()? {
            0 | 1 => Ok(IntArray(array)),
            n => Err(format!("an array of {n} dimensions").into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INT2_ARRAY || *ty == Type::INT8_ARRAY
    }
}

impl IntArray<'_> {
    /// The elements as integers (a NULL or malformed element ends them).
    fn values(&self) -> impl Iterator<Item = i64> + '_ {
        let small = self.0.element_type() == Type::INT2.oid();
        let mut elements = self.0.values();
        std::iter::from_fn(move || {
            let bytes = elements.next().ok()???;
            if small {
                int2_from_sql(bytes).ok().map(i64::from)
            } else {
                int8_from_sql(bytes).ok()
            }
        })
    }
}

/// Sums of one window or point, as the queries return them.
#[derive(Default)]
struct Acc {
    calls: i64,
    errors: i64,
    total: f64,
    min: Option<f64>,
    max: Option<f64>,
    hist: Histogram,
}

impl Acc {
    fn add(&mut self, row: &postgres::Row) -> Result<(), postgres::Error> {
        let index: Option<i16> = row.try_get(1)?;
        let hist: i64 = row.try_get(2)?;
        if let Some(i) = index {
            self.hist.add_to_bucket(
                usize::try_from(i).unwrap_or(0),
                u64::try_from(hist).unwrap_or(0),
            );
        }
        self.calls += row.try_get::<_, i64>(3)?;
        self.errors += row.try_get::<_, i64>(4)?;
        self.total += row.try_get::<_, f64>(5)?;
        if let Some(v) = row.try_get::<_, Option<f64>>(6)? {
            self.min = Some(self.min.map_or(v, |m| m.min(v)));
        }
        if let Some(v) = row.try_get::<_, Option<f64>>(7)? {
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
        Ok(())
    }

    /// Adds a row of a rollup (see [`query_sql`]).
    fn add_rollup(&mut self, row: &postgres::Row) -> Result<(), postgres::Error> {
        self.calls += row.try_get::<_, i64>(1)?;
        self.errors += row.try_get::<_, i64>(2)?;
        self.total += row.try_get::<_, f64>(3)?;
        let min: f64 = row.try_get(4)?;
        let max: f64 = row.try_get(5)?;
        self.min = Some(self.min.map_or(min, |m| m.min(min)));
        self.max = Some(self.max.map_or(max, |m| m.max(max)));
        let index: IntArray<'_> = row.try_get(6)?;
        let count: IntArray<'_> = row.try_get(7)?;
        for (i, c) in index.values().zip(count.values()) {
            self.hist.add_to_bucket(
                usize::try_from(i).unwrap_or(0),
                u64::try_from(c).unwrap_or(0),
            );
        }
        Ok(())
    }

    /// Adds a row of `level`'s query.
    fn add_of(&mut self, level: Level, row: &postgres::Row) -> Result<(), postgres::Error> {
        match level {
            Level::Raw => self.add(row),
            _ => self.add_rollup(row),
        }
    }

    fn mean(&self) -> Duration {
        if self.calls > 0 {
            secs_to_duration(self.total / self.calls as f64)
        } else {
            Duration::ZERO
        }
    }

    fn window(&self) -> WindowStats {
        let min = self.min.map_or(Duration::ZERO, secs_to_duration);
        let max = self.max.map_or(Duration::ZERO, secs_to_duration);
        // A quantile is its bucket's midpoint, which may pass the exact min or max by up to
        // half a bucket: kept within them, as `Snapshot::quantile` does (and the dashboard).
        let within = |q: Duration| q.clamp(min, max.max(min));
        WindowStats {
            calls: u64::try_from(self.calls).unwrap_or(0),
            errors: u64::try_from(self.errors).unwrap_or(0),
            mean: self.mean(),
            p50: within(self.hist.quantile(0.5)),
            p99: within(self.hist.quantile(0.99)),
            min,
            max,
        }
    }
}

/// A part of a window, read from one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    level: Level,
    from: i64,
    to: i64,
}

/// Where each table's data begins (micros since the epoch): the start of its oldest partition
/// (retention drops whole partitions, oldest first; a table whose partitions are not dropped
/// yet still holds its older rows, and they are read).
#[derive(Clone, Copy, Debug)]
struct Cutoffs {
    raw: i64,
    minute: i64,
}

impl Cutoffs {
    /// Reads the oldest partitions of the raw table and the minute rollup.
    fn read(client: &mut Client, tables: &Tables) -> Result<Cutoffs, postgres::Error> {
        let mut oldest = [i64::MAX; 2];
        for (i, level) in [Level::Raw, Level::Minute].into_iter().enumerate() {
            let parent = tables.of(level);
            let rows = client.query(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = to_regclass($1)",
                &[&quoted(parent)],
            )?;
            for row in rows {
                let name: String = row.try_get(0)?;
                let span = name
                    .get(parent.len() + 1..)
                    .and_then(crate::tables::Span::parse);
                if let Some(from) = span.and_then(|s| s.bounds().0) {
                    oldest[i] = oldest[i].min(from);
                }
            }
        }
        Ok(Cutoffs {
            raw: oldest[0],
            minute: oldest[1],
        })
    }
}

/// Splits `[from, to)` into parts: whole hours from `T_1h`, whole minutes from `T_1m`, the rest
/// from the raw rows. Rollups are exact, so this gives the raw rows' numbers from far fewer rows.
/// Where the raw rows are past retention, an edge is widened to whole minutes (whole hours past
/// the minute rollup's retention).
fn plan_window(from: i64, to: i64, rollups: bool, cut: Cutoffs) -> Vec<Segment> {
    if from >= to {
        return Vec::new();
    }
    if !rollups {
        return vec![Segment {
            level: Level::Raw,
            from,
            to,
        }];
    }
    let mut out = Vec::new();
    let (h0, h1) = (ceil_to(from, HOUR), floor_to(to, HOUR));
    if h0 < h1 {
        out.push(Segment {
            level: Level::Hour,
            from: h0,
            to: h1,
        });
        part(from, h0, cut, &mut out);
        part(h1, to, cut, &mut out);
    } else {
        part(from, to, cut, &mut out);
    }
    out.retain(|s| s.from < s.to);
    out.sort_by_key(|s| s.from);
    out
}

/// A part of a window shorter than the hours around it: minutes and raw edges, or as fine as
/// retention still allows from `a` on.
fn part(a: i64, b: i64, cut: Cutoffs, out: &mut Vec<Segment>) {
    if a >= b {
        return;
    }
    let seg = |level, from, to| Segment { level, from, to };
    if a < cut.minute {
        out.push(seg(Level::Hour, floor_to(a, HOUR), ceil_to(b, HOUR)));
    } else if a < cut.raw {
        out.push(seg(Level::Minute, floor_to(a, MINUTE), ceil_to(b, MINUTE)));
    } else {
        let (m0, m1) = (ceil_to(a, MINUTE), floor_to(b, MINUTE));
        if m0 < m1 {
            out.push(seg(Level::Raw, a, m0));
            out.push(seg(Level::Minute, m0, m1));
            out.push(seg(Level::Raw, m1, b));
        } else {
            out.push(seg(Level::Raw, a, b));
        }
    }
}

/// The table and step of a series: the coarsest rollup whose buckets divide `step` (it gives the
/// same points from fewer rows), else the raw rows; but never a table past its retention at
/// `from` (then the step is rounded up to the buckets of the finest table that holds `from`).
fn plan_series(from: i64, step: i64, rollups: bool, cut: Cutoffs) -> (Level, i64) {
    if !rollups {
        return (Level::Raw, step);
    }
    if step % HOUR == 0 || from < cut.minute {
        return (Level::Hour, ceil_to(step, HOUR));
    }
    if step % MINUTE == 0 || from < cut.raw {
        return (Level::Minute, ceil_to(step, MINUTE));
    }
    (Level::Raw, step)
}

/// A series' table, first point and step, and how many points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SeriesPlan {
    level: Level,
    start: i64,
    end: i64,
    step: i64,
    points: usize,
}

impl SeriesPlan {
    fn new(
        options: &PostgresOptions,
        cut: Cutoffs,
        from: SystemTime,
        to: SystemTime,
        step: Duration,
    ) -> Result<SeriesPlan, Error> {
        let (from, to) = (ceil_micros(from), ceil_micros(to));
        let step = i64::try_from(step.as_micros()).unwrap_or(i64::MAX).max(1);
        let (level, step) = plan_series(from, step, options.rollups(), cut);
        let start = level.bucket_micros().map_or(from, |w| floor_to(from, w));
        let points = if from >= to {
            0
        } else {
            usize::try_from((to - start - 1) / step + 1).unwrap_or(usize::MAX)
        };
        if points > MAX_POINTS {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "a series of {points} points asked for: at most {MAX_POINTS}; make the step \
                     longer or the window shorter"
                ),
            ));
        }
        Ok(SeriesPlan {
            level,
            start,
            // Whole points, the last one too (it may end after `to`): a point means the same
            // whatever table it is read from.
            end: start.saturating_add(step.saturating_mul(points as i64)),
            step,
            points,
        })
    }
}

/// The query of one level, for `$1` name (`many`: an array of names), `[$2, $3)`, points
/// `($from - $4) / $5`, and `$6` service (NULL: all). Raw rows are grouped into rows of (point,
/// histogram bucket, its count, calls, errors, total, min, max, function); rollup rows come as
/// stored: (point, calls, errors, total, min, max, histogram buckets, their counts, function).
fn query_sql(tables: &Tables, level: Level, many: bool) -> String {
    let t = tables.quoted(level);
    // An index scan of `(func_name, …)` for each name either way.
    let name = if many {
        "func_name = ANY($1::text[])"
    } else {
        "func_name = $1"
    };
    match level {
        Level::Raw => format!(
            "SELECT ((extract(epoch FROM created_at) * 1000000)::bigint - $4) / $5,
                    fnmetrics_bucket(execution_time), sum(weight)::bigint, sum(weight)::bigint,
                    coalesce(sum(weight) FILTER (WHERE error_occurred), 0)::bigint,
                    sum(execution_time * weight), min(execution_time), max(execution_time),
                    func_name
             FROM {t}
             WHERE {name} AND created_at >= $2 AND created_at < $3
               AND ($6::text IS NULL OR service = $6)
             GROUP BY func_name, 1, 2"
        ),
        // Rollup rows as they are: the histograms are merged here, not by the server, which
        // would unnest every bucket of every row into a hash aggregate (on one core, about
        // 5 times slower for a month of hours, benches/history.rs and cli/benches/report.rs).
        _ => format!(
            "SELECT ((extract(epoch FROM bucket) * 1000000)::bigint - $4) / $5,
                    calls, errors, total, min, max, hist_index, hist_count, func_name
             FROM {t}
             WHERE {name} AND bucket >= $2 AND bucket < $3
               AND ($6::text IS NULL OR service = $6)"
        ),
    }
}

/// The functions a read is about: one, or several (read in one query a table).
#[derive(Clone, Copy, Debug)]
enum Names<'a> {
    One(&'a str),
    Many(&'a [String]),
}

impl Names<'_> {
    fn many(self) -> bool {
        matches!(self, Names::Many(_))
    }
}

/// The prepared queries of a connection, made on first use.
#[derive(Default)]
struct Queries {
    /// By level, for one name and then for several.
    by_level: [Option<Statement>; 6],
}

impl Queries {
    fn get(
        &mut self,
        client: &mut Client,
        tables: &Tables,
        level: Level,
        many: bool,
    ) -> Result<Statement, postgres::Error> {
        let slot = &mut self.by_level[level as usize + if many { 3 } else { 0 }];
        if let Some(s) = slot {
            return Ok(s.clone());
        }
        let s = client.prepare(&query_sql(tables, level, many))?;
        *slot = Some(s.clone());
        Ok(s)
    }
}

/// The first query parameter: one name, or an array of names.
enum NameParam {
    One(String),
    Many(Vec<String>),
}

impl NameParam {
    fn new(names: Names<'_>) -> NameParam {
        match names {
            Names::One(n) => NameParam::One(pg_text(n).into_owned()),
            Names::Many(ns) => {
                NameParam::Many(ns.iter().map(|n| pg_text(n).into_owned()).collect())
            }
        }
    }

    fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            NameParam::One(n) => n,
            NameParam::Many(ns) => ns,
        }
    }
}

/// The window read of each of `names`, on `client`: the functions with calls in `[from, to)`,
/// by name.
fn read_window(
    client: &mut Client,
    queries: &mut Queries,
    options: &PostgresOptions,
    service: Option<&str>,
    names: Names<'_>,
    from: SystemTime,
    to: SystemTime,
) -> Result<Vec<(String, WindowStats)>, postgres::Error> {
    let (from, to) = (ceil_micros(from), ceil_micros(to));
    let tables = Tables::new(options.table());
    let cut = Cutoffs::read(client, &tables)?;
    let name = NameParam::new(names);
    let service = service.map(pg_text);
    let mut by_name: BTreeMap<String, Acc> = BTreeMap::new();
    for seg in plan_window(from, to, options.rollups(), cut) {
        let q = queries.get(client, &tables, seg.level, names.many())?;
        let (from, to) = (PgTimestamp(seg.from), PgTimestamp(seg.to));
        let service = service.as_deref();
        let params: [&(dyn ToSql + Sync); 6] =
            [name.as_param(), &from, &to, &seg.from, &i64::MAX, &service];
        for_each_row(client, &q, &params, |row| {
            let f: &str = row.try_get(8)?;
            let acc = match by_name.get_mut(f) {
                Some(acc) => acc,
                None => by_name.entry(f.to_owned()).or_default(),
            };
            acc.add_of(seg.level, row)
        })?;
    }
    Ok(by_name
        .into_iter()
        .filter(|(_, acc)| acc.calls > 0)
        .map(|(f, acc)| (f, acc.window()))
        .collect())
}

/// The series read of each of `names`, on `client`: the functions with calls in the plan's
/// points, by name.
fn read_series(
    client: &mut Client,
    queries: &mut Queries,
    options: &PostgresOptions,
    service: Option<&str>,
    names: Names<'_>,
    plan: SeriesPlan,
) -> Result<Vec<(String, Vec<Point>)>, postgres::Error> {
    if plan.points == 0 {
        return Ok(Vec::new());
    }
    let tables = Tables::new(options.table());
    let q = queries.get(client, &tables, plan.level, names.many())?;
    let name = NameParam::new(names);
    let service = service.map(pg_text);
    let (from, to) = (PgTimestamp(plan.start), PgTimestamp(plan.end));
    let service = service.as_deref();
    let params: [&(dyn ToSql + Sync); 6] = [
        name.as_param(),
        &from,
        &to,
        &plan.start,
        &plan.step,
        &service,
    ];
    let mut by_name: BTreeMap<String, Vec<Acc>> = BTreeMap::new();
    for_each_row(client, &q, &params, |row| {
        let p: i64 = row.try_get(0)?;
        let Some(p) = usize::try_from(p).ok().filter(|p| *p < plan.points) else {
            return Ok(());
        };
        let f: &str = row.try_get(8)?;
        let points = match by_name.get_mut(f) {
            Some(points) => points,
            None => by_name
                .entry(f.to_owned())
                .or_insert_with(|| zero_sums(plan)),
        };
        points[p].add_of(plan.level, row)
    })?;
    Ok(by_name
        .into_iter()
        .filter(|(_, points)| points.iter().any(|acc| acc.calls > 0))
        .map(|(f, points)| (f, to_points(plan, &points)))
        .collect())
}

/// The points of a series from their sums.
fn to_points(plan: SeriesPlan, points: &[Acc]) -> Vec<Point> {
    points
        .iter()
        .enumerate()
        .map(|(i, acc)| {
            let w = acc.window();
            let at = plan
                .start
                .saturating_add(plan.step.saturating_mul(i as i64));
            Point {
                start: micros_to_time(at),
                calls: w.calls,
                errors: w.errors,
                mean: w.mean,
                p50: w.p50,
                p99: w.p99,
                max: w.max,
            }
        })
        .collect()
}

/// The most points one series may have.
///
/// ```
/// assert_eq!(fnmetrics::postgres::MAX_POINTS, 100_000);
/// ```
pub const MAX_POINTS: usize = 100_000;

fn micros_to_time(micros: i64) -> SystemTime {
    if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    }
}

/// Reads windows and series of what drainers stored, on one connection that it keeps: it opens
/// it on first use (and again only when it broke), never migrates, and prepares each query once.
///
/// Each part of a window is read from the table that holds it most compactly: whole hours from
/// `T_1h`, whole minutes from `T_1m`, and only the edges from the raw rows. Rollups are exact, so
/// the numbers are those of the raw rows; quantiles come from the same histogram buckets as
/// every other read (`get`, the fleet's aggregates), within 1.6 %. Where raw rows are past
/// their retention, an edge widens to whole minutes (hours, past the minute rollup's).
///
/// Before any drainer made the tables, reads return no calls.
///
/// Every call blocks on the server (within the timeouts of [`PostgresOptions`]); inside a tokio
/// runtime it runs on a thread of its own.
///
/// What to read is a [`Query`]: [`PostgresReader::window`] reads each function's numbers over
/// its range, [`PostgresReader::series`] points every step.
///
/// ```no_run
/// use fnmetrics::postgres::{PostgresOptions, PostgresReader, Query};
/// use std::time::Duration;
///
/// let mut reader = PostgresReader::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
/// let month = Query::function("app::checkout").last(Duration::from_secs(30 * 86_400));
/// for (name, w) in reader.window(&month)? {
///     println!("{name}: {} calls, p99 {:?}", w.calls, w.p99);
/// }
/// # Ok::<(), fnmetrics::Error>(())
/// ```
pub struct PostgresReader {
    endpoint: Endpoint,
    conn: Option<ReadConn>,
}

struct ReadConn {
    client: Client,
    /// Whether the tables exist (a schema version is recorded); checked again while they do not.
    ready: bool,
    queries: Queries,
    functions: Option<Statement>,
}

impl fmt::Debug for PostgresReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config is left out: it may hold a password.
        f.debug_struct("PostgresReader")
            .field("options", &self.endpoint.options)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl PostgresReader {
    /// Parses `url` and connects.
    ///
    /// # Errors
    /// As [`PostgresSink::connect`](crate::PostgresSink::connect), but for the migration: the
    /// reader never changes the schema. [`ErrorKind::Superseded`] if the tables are of a newer
    /// schema than this build reads.
    ///
    /// ```no_run
    /// # use fnmetrics::postgres::{PostgresOptions, PostgresReader};
    /// let reader = PostgresReader::connect("postgres://reader@db/app", PostgresOptions::default())?;
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn connect(url: &str, options: PostgresOptions) -> Result<PostgresReader, Error> {
        let mut r = PostgresReader::new(url, options)?;
        r.with_conn("cannot connect to PostgreSQL", |_| Ok(()))?;
        Ok(r)
    }

    /// Parses `url` and checks the options, without connecting: the first read connects.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidUrl`] and [`ErrorKind::InvalidConfig`].
    ///
    /// ```
    /// use fnmetrics::postgres::{PostgresOptions, PostgresReader};
    /// assert!(PostgresReader::new("postgres://127.0.0.1:1/app", PostgresOptions::default()).is_ok());
    /// assert!(PostgresReader::new("postgres://h:x/app", PostgresOptions::default()).is_err());
    /// ```
    pub fn new(url: &str, options: PostgresOptions) -> Result<PostgresReader, Error> {
        Ok(PostgresReader {
            endpoint: Endpoint::parse(url, options)?,
            conn: None,
        })
    }

    /// Whether the tables exist at the schema this build reads (a drainer, or
    /// `fnmetrics migrate`, made them). Before, every read returns no calls.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`], [`ErrorKind::Timeout`], [`ErrorKind::Server`] as the server
    /// answers; [`ErrorKind::Superseded`] if the tables are of a newer
    /// schema than this build reads.
    ///
    /// ```no_run
    /// # use fnmetrics::postgres::{PostgresOptions, PostgresReader};
    /// # let mut reader = PostgresReader::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
    /// if !reader.is_ready()? {
    ///     eprintln!("nothing stored yet: no drainer has run against this database");
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn is_ready(&mut self) -> Result<bool, Error> {
        self.with_conn("cannot read the schema version in PostgreSQL", |c| {
            Ok(c.ready)
        })
    }

    /// Each function's calls over the query's range (its step, if any, is not used): calls,
    /// errors, mean, p50, p99, min and max, by name. A query of one function
    /// ([`Query::function`]) reads one row, zeros where it has no calls; one of several
    /// ([`Query::functions`], [`Query::all`]) reads those with calls, in one query a table for
    /// them all (an index scan a name).
    ///
    /// Whole hours come from the hourly rollup, whole minutes from the minute rollup, and only
    /// the edges from the raw rows (see [`PostgresReader`]).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] for a query without a time range;
    /// [`ErrorKind::Unavailable`], [`ErrorKind::Timeout`], [`ErrorKind::Server`] as the server
    /// answers; the next call connects again if the connection broke.
    ///
    /// ```no_run
    /// # use fnmetrics::postgres::{PostgresOptions, PostgresReader, Query};
    /// # use std::time::Duration;
    /// # let mut reader = PostgresReader::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
    /// let day = Duration::from_secs(86_400);
    /// for (name, w) in reader.window(&Query::all().service("checkout").last(day))? {
    ///     println!("{name}: {} calls, {} errors, p99 {:?}", w.calls, w.errors, w.p99);
    /// }
    /// let (_, w) = &reader.window(&Query::function("app::load_user").last(day))?[0];
    /// assert!(w.errors <= w.calls);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn window(&mut self, query: &Query) -> Result<Vec<(String, WindowStats)>, Error> {
        let (from, to) = query.span(SystemTime::now())?;
        let mut all = Vec::new();
        let names = self.names(query, &mut all)?;
        let found = self.window_inner(query.service_name(), names, from, to)?;
        Ok(match query.names() {
            Functions::One(name) => {
                vec![(name.clone(), found.into_iter().next().unwrap_or_default().1)]
            }
            _ => found,
        })
    }

    /// The names `query` reads; for [`Query::all`], those stored, listed into `all`.
    fn names<'a>(
        &mut self,
        query: &'a Query,
        all: &'a mut Vec<String>,
    ) -> Result<Names<'a>, Error> {
        Ok(match query.names() {
            Functions::One(name) => Names::One(name),
            Functions::Many(names) => Names::Many(names),
            Functions::All => {
                *all = self.functions()?;
                Names::Many(all)
            }
        })
    }

    fn window_inner(
        &mut self,
        service: Option<&str>,
        names: Names<'_>,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<(String, WindowStats)>, Error> {
        if matches!(names, Names::Many([])) {
            return Ok(Vec::new());
        }
        let options = self.endpoint.options.clone();
        self.with_conn("cannot read a time window from PostgreSQL", |c| {
            if !c.ready {
                return Ok(Vec::new());
            }
            read_window(
                &mut c.client,
                &mut c.queries,
                &options,
                service,
                names,
                from,
                to,
            )
        })
    }

    /// Each function's points every step ([`Query::every`]) over the query's range: calls,
    /// errors, mean, p50, p99 and max of the calls that ended in each, by name. A query of one
    /// function ([`Query::function`]) reads one row, points with no calls where it has none;
    /// one of several ([`Query::functions`], [`Query::all`]) reads those with calls in any
    /// point, in one query for them all.
    ///
    /// It reads the coarsest rollup whose buckets divide the step, and the raw rows only for a
    /// step that is not whole minutes; points then start at the range's start rounded down to
    /// those buckets (a whole minute or hour). Every point covers its whole step, the last one
    /// too (it may reach past the range's end). Past a table's retention, the step is rounded
    /// up to the buckets of the finest table that still holds the start.
    ///
    /// # Errors
    /// As [`PostgresReader::window`]; [`ErrorKind::InvalidConfig`] for a query without a step,
    /// a zero step, or more than [`MAX_POINTS`] points.
    ///
    /// ```no_run
    /// # use fnmetrics::postgres::{PostgresOptions, PostgresReader, Query};
    /// # use std::time::Duration;
    /// # let mut reader = PostgresReader::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
    /// let (day, hour) = (Duration::from_secs(86_400), Duration::from_secs(3600));
    /// for (name, points) in reader.series(&Query::all().last(day).every(hour))? {
    ///     let peak = points.iter().map(|p| p.p99).max().unwrap_or_default();
    ///     println!("{name}: worst hourly p99 {peak:?}");
    /// }
    /// let q = Query::function("app::f").last(day).every(Duration::from_secs(600));
    /// assert!(reader.series(&q)?[0].1.len() >= 144);
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn series(&mut self, query: &Query) -> Result<Vec<(String, Vec<Point>)>, Error> {
        let (from, to) = query.span(SystemTime::now())?;
        let step = query.step()?;
        let plan = self.series_plan(from, to, step)?;
        let mut all = Vec::new();
        let names = self.names(query, &mut all)?;
        let found = self.series_inner(query.service_name(), names, plan)?;
        Ok(match query.names() {
            Functions::One(name) => {
                let points = found.into_iter().next().map_or_else(
                    || to_points(plan.0, &zero_sums(plan.0)),
                    |(_, points)| points,
                );
                vec![(name.clone(), points)]
            }
            _ => found,
        })
    }

    /// The series plan of `[from, to)` by `step` (it reads where each table's data begins).
    fn series_plan(
        &mut self,
        from: SystemTime,
        to: SystemTime,
        step: Duration,
    ) -> Result<(SeriesPlan, bool), Error> {
        let options = self.endpoint.options.clone();
        let (cut, ready) = self.with_conn("cannot read a series from PostgreSQL", |c| {
            if c.ready {
                Ok((
                    Cutoffs::read(&mut c.client, &Tables::new(options.table()))?,
                    true,
                ))
            } else {
                Ok((Cutoffs { raw: 0, minute: 0 }, false))
            }
        })?;
        Ok((SeriesPlan::new(&options, cut, from, to, step)?, ready))
    }

    fn series_inner(
        &mut self,
        service: Option<&str>,
        names: Names<'_>,
        (plan, ready): (SeriesPlan, bool),
    ) -> Result<Vec<(String, Vec<Point>)>, Error> {
        if !ready || matches!(names, Names::Many([])) {
            return Ok(Vec::new());
        }
        let options = self.endpoint.options.clone();
        self.with_conn("cannot read a series from PostgreSQL", |c| {
            read_series(
                &mut c.client,
                &mut c.queries,
                &options,
                service,
                names,
                plan,
            )
        })
    }

    /// The functions stored, sorted: those of the hourly rollup (a year by default), or of the
    /// raw rows when rollups are off. One index probe a name.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`], [`ErrorKind::Timeout`], [`ErrorKind::Server`] as the server
    /// answers.
    ///
    /// ```no_run
    /// # use fnmetrics::postgres::{PostgresOptions, PostgresReader};
    /// # let mut reader = PostgresReader::connect("postgres://postgres@127.0.0.1/app", PostgresOptions::default())?;
    /// for name in reader.functions()? {
    ///     println!("{name}");
    /// }
    /// # Ok::<(), fnmetrics::Error>(())
    /// ```
    pub fn functions(&mut self) -> Result<Vec<String>, Error> {
        let options = self.endpoint.options.clone();
        self.with_conn("cannot list the functions in PostgreSQL", |c| {
            if !c.ready {
                return Ok(Vec::new());
            }
            let q = match &c.functions {
                Some(q) => q.clone(),
                None => {
                    let q = c.client.prepare(&functions_sql(&options))?;
                    c.functions = Some(q.clone());
                    q
                }
            };
            c.client
                .query(&q, &[])?
                .iter()
                .map(|r| r.try_get(0))
                .collect()
        })
    }

    /// Runs `f` on the connection, opening it first if needed, and forgets a connection that
    /// broke so the next call opens a new one.
    fn with_conn<T: Send>(
        &mut self,
        context: &str,
        f: impl FnOnce(&mut ReadConn) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, Error> {
        outside_runtime(|| {
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => {
                    let (client, _) = self.endpoint.open(None)?;
                    ReadConn {
                        client,
                        ready: false,
                        queries: Queries::default(),
                        functions: None,
                    }
                }
            };
            if !conn.ready {
                let v = recorded_version(&mut conn.client, &self.endpoint.options)
                    .map_err(|e| pg_error(context, e))?;
                if v > SCHEMA_VERSION {
                    return Err(superseded(&self.endpoint.options, v));
                }
                conn.ready = v == SCHEMA_VERSION;
            }
            let result = f(&mut conn);
            if !is_broken(&conn.client, &result) {
                self.conn = Some(conn);
            }
            result.map_err(|e| pg_error(context, e))
        })
    }
}

impl Drop for PostgresReader {
    /// Inside a tokio runtime, the connection is closed on a thread of its own.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            close_off_runtime(conn);
        }
    }
}

/// The sums of a series' points with no calls.
fn zero_sums(plan: SeriesPlan) -> Vec<Acc> {
    (0..plan.points).map(|_| Acc::default()).collect()
}

/// The skip scan over the names of the hourly rollup (or the raw table).
fn functions_sql(options: &PostgresOptions) -> String {
    let tables = Tables::new(options.table());
    let t = if options.rollups() {
        tables.quoted(Level::Hour)
    } else {
        tables.quoted(Level::Raw)
    };
    format!(
        "WITH RECURSIVE names(func_name) AS (
             (SELECT func_name FROM {t} ORDER BY func_name LIMIT 1)
             UNION ALL
             SELECT (SELECT m.func_name FROM {t} m
                     WHERE m.func_name > names.func_name
                     ORDER BY m.func_name LIMIT 1)
             FROM names WHERE names.func_name IS NOT NULL
         )
         SELECT func_name FROM names WHERE func_name IS NOT NULL"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUT: Cutoffs = Cutoffs { raw: 0, minute: 0 };

    fn seg(level: Level, from: i64, to: i64) -> Segment {
        Segment { level, from, to }
    }

    /// A one-dimensional array in the binary format, elements of `width` bytes.
    fn binary_array(width: usize, values: &[i64]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [
            1i32,
            0,
            if width == 2 { 21 } else { 20 },
            values.len() as i32,
            1,
        ] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for v in values {
            b.extend_from_slice(&(width as i32).to_be_bytes());
            b.extend_from_slice(&v.to_be_bytes()[8 - width..]);
        }
        b
    }

    #[test]
    fn binary_arrays_are_read_in_place() {
        let small = binary_array(2, &[0, 31, 1279, -2]);
        let a = IntArray::from_sql(&Type::INT2_ARRAY, &small).unwrap();
        assert_eq!(a.values().collect::<Vec<_>>(), [0, 31, 1279, -2]);
        let big = binary_array(8, &[1, i64::MAX]);
        let a = IntArray::from_sql(&Type::INT8_ARRAY, &big).unwrap();
        assert_eq!(a.values().collect::<Vec<_>>(), [1, i64::MAX]);
        // An empty array has no dimensions.
        let empty = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20];
        let a = IntArray::from_sql(&Type::INT8_ARRAY, &empty).unwrap();
        assert_eq!(a.values().count(), 0);
        let mut two_dims = big.clone();
        two_dims[3] = 2;
        assert!(IntArray::from_sql(&Type::INT8_ARRAY, &two_dims).is_err());
        assert!(IntArray::from_sql(&Type::INT8_ARRAY, &big[..2]).is_err());
        // A truncated element ends the values.
        assert_eq!(
            IntArray::from_sql(&Type::INT8_ARRAY, &big[..big.len() - 1])
                .unwrap()
                .values()
                .count(),
            1
        );
        assert!(IntArray::accepts(&Type::INT2_ARRAY) && !IntArray::accepts(&Type::TEXT));
    }

    #[test]
    fn a_window_reads_hours_minutes_and_raw_edges() {
        let (from, to) = (HOUR + 5 * MINUTE + 7, 4 * HOUR + 2 * MINUTE + 3);
        assert_eq!(
            plan_window(from, to, true, CUT),
            vec![
                seg(Level::Raw, from, HOUR + 6 * MINUTE),
                seg(Level::Minute, HOUR + 6 * MINUTE, 2 * HOUR),
                seg(Level::Hour, 2 * HOUR, 4 * HOUR),
                seg(Level::Minute, 4 * HOUR, 4 * HOUR + 2 * MINUTE),
                seg(Level::Raw, 4 * HOUR + 2 * MINUTE, to),
            ]
        );
        // The parts cover the window exactly.
        let parts = plan_window(from, to, true, CUT);
        assert!(parts.windows(2).all(|w| w[0].to == w[1].from));
        assert_eq!(
            plan_window(from, to, false, CUT),
            vec![seg(Level::Raw, from, to)]
        );
        assert_eq!(
            plan_window(10, 20, true, CUT),
            vec![seg(Level::Raw, 10, 20)]
        );
    }

    #[test]
    fn past_retention_edges_widen() {
        let cut = Cutoffs {
            raw: 10 * HOUR,
            minute: 5 * HOUR,
        };
        let from = 7 * HOUR + 90 * 1_000_000; // raw gone, minutes kept
        assert_eq!(
            plan_window(from, 8 * HOUR, true, cut),
            vec![seg(Level::Minute, 7 * HOUR + MINUTE, 8 * HOUR)]
        );
        let from = 3 * HOUR + 7; // minutes gone too
        assert_eq!(
            plan_window(from, 5 * HOUR, true, cut),
            vec![
                seg(Level::Hour, 3 * HOUR, 4 * HOUR),
                seg(Level::Hour, 4 * HOUR, 5 * HOUR)
            ]
        );
    }

    #[test]
    fn a_series_reads_the_coarsest_table_its_step_allows() {
        assert_eq!(plan_series(0, HOUR, true, CUT), (Level::Hour, HOUR));
        assert_eq!(
            plan_series(0, 5 * MINUTE, true, CUT),
            (Level::Minute, 5 * MINUTE)
        );
        assert_eq!(
            plan_series(0, 10_000_000, true, CUT),
            (Level::Raw, 10_000_000)
        );
        assert_eq!(
            plan_series(0, 10_000_000, false, CUT),
            (Level::Raw, 10_000_000)
        );
        let cut = Cutoffs {
            raw: 10 * HOUR,
            minute: 5 * HOUR,
        };
        assert_eq!(
            plan_series(7 * HOUR, 10_000_000, true, cut),
            (Level::Minute, MINUTE)
        );
        assert_eq!(plan_series(HOUR, MINUTE, true, cut), (Level::Hour, HOUR));
    }
}
