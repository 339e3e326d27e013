//! The names of everything fnmetrics keeps in PostgreSQL for one entry table, and the
//! partitions: which partition holds a time, and its bounds.
//!
//! For an entry table `T` (default `metrics`):
//! - `T`: the raw rows, partitioned by UTC day on `created_at`: `T_p20261202`;
//! - `T_1m`: one-minute rollups, partitioned by UTC day on `bucket`: `T_1m_p20261202`;
//! - `T_1h`: one-hour rollups, partitioned by UTC month on `bucket`: `T_1h_p202612`;
//! - a partition `T_p_old` (and `T_1m_p_old`, `T_1h_p_old`) from `MINVALUE` to 1970-01-01 takes
//!   whatever carries an earlier time (a clock far off, `-infinity`), and `T_p_new` from
//!   year 10000 to `MAXVALUE` what carries a later one, so no entry lacks a place and every
//!   name fits.

use crate::options::quoted;

/// The longest entry table name: the longest suffix (`_1m_p20261202`, 13 bytes) must still fit
/// PostgreSQL's 63-byte identifiers.
pub(crate) const MAX_TABLE_LEN: usize = 50;

/// Microseconds in a minute.
pub(crate) const MINUTE: i64 = 60_000_000;
/// Microseconds in an hour.
pub(crate) const HOUR: i64 = 3_600_000_000;
/// Microseconds in a day.
pub(crate) const DAY: i64 = 86_400_000_000;

/// `t` rounded down to a multiple of `w` (saturating).
pub(crate) fn floor_to(t: i64, w: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(w))
}

/// `t` rounded up to a multiple of `w` (saturating).
pub(crate) fn ceil_to(t: i64, w: i64) -> i64 {
    match t.rem_euclid(w) {
        0 => t,
        r => t.saturating_add(w - r),
    }
}

/// 10000-01-01 as days since 1970-01-01: from there on, one partition ([`Span::New`]).
const NEW_DAY: i64 = 2_932_897;

/// One of the three partitioned tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Level {
    /// The raw rows, one a call (or a sampled call).
    Raw,
    /// One-minute rollups.
    Minute,
    /// One-hour rollups.
    Hour,
}

impl Level {
    pub(crate) const ALL: [Level; 3] = [Level::Raw, Level::Minute, Level::Hour];
    pub(crate) const ROLLUPS: [Level; 2] = [Level::Minute, Level::Hour];

    /// The width of a rollup bucket, in microseconds (`None` for raw rows).
    pub(crate) fn bucket_micros(self) -> Option<i64> {
        match self {
            Level::Raw => None,
            Level::Minute => Some(MINUTE),
            Level::Hour => Some(HOUR),
        }
    }

    /// The `date_trunc` unit of a rollup bucket.
    pub(crate) fn trunc_unit(self) -> &'static str {
        match self {
            Level::Raw => "microseconds",
            Level::Minute => "minute",
            Level::Hour => "hour",
        }
    }

    /// The partition that holds `micros` (since the Unix epoch, UTC).
    pub(crate) fn partition_of(self, micros: i64) -> Span {
        if micros < 0 {
            return Span::Old;
        }
        let day = micros / DAY;
        if day >= NEW_DAY {
            return Span::New;
        }
        match self {
            Level::Raw | Level::Minute => Span::Day(day),
            Level::Hour => {
                let (y, m, _) = civil_from_days(day);
                Span::Month(y, m)
            }
        }
    }
}

/// What one partition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Span {
    /// Everything before 1970-01-01.
    Old,
    /// Everything from 10000-01-01 on.
    New,
    /// A UTC day, as days since 1970-01-01.
    Day(i64),
    /// A UTC month (year, month 1–12).
    Month(i64, u32),
}

impl Span {
    /// The partition's name suffix: `p_old`, `p20261202`, `p202612`.
    pub(crate) fn suffix(self) -> String {
        match self {
            Span::Old => "p_old".to_owned(),
            Span::New => "p_new".to_owned(),
            Span::Day(d) => {
                let (y, m, day) = civil_from_days(d);
                format!("p{y:04}{m:02}{day:02}")
            }
            Span::Month(y, m) => format!("p{y:04}{m:02}"),
        }
    }

    /// The bounds as micros since the Unix epoch; `None` is `MINVALUE` below, `MAXVALUE` above.
    pub(crate) fn bounds(self) -> (Option<i64>, Option<i64>) {
        match self {
            Span::Old => (None, Some(0)),
            Span::New => (Some(NEW_DAY * DAY), None),
            Span::Day(d) => (Some(d * DAY), Some((d + 1) * DAY)),
            Span::Month(y, m) => {
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    Some(days_from_civil(y, m, 1) * DAY),
                    Some(days_from_civil(ny, nm, 1) * DAY),
                )
            }
        }
    }

    /// `FOR VALUES FROM (..) TO (..)` of `ATTACH PARTITION`.
    pub(crate) fn for_values(self) -> String {
        let (from, to) = self.bounds();
        let bound = |b: Option<i64>, none: &str| {
            b.map_or_else(|| none.to_owned(), |t| format!("'{}'", timestamp(t)))
        };
        format!(
            "FOR VALUES FROM ({}) TO ({})",
            bound(from, "MINVALUE"),
            bound(to, "MAXVALUE")
        )
    }

    /// Whether everything this partition can hold is older than `cutoff` (micros since the
    /// epoch): it may be dropped.
    pub(crate) fn ends_before(self, cutoff: i64) -> bool {
        self.bounds().1.is_some_and(|end| end <= cutoff)
    }

    /// The span named by a partition's suffix (what [`Span::suffix`] made), if it is one.
    pub(crate) fn parse(suffix: &str) -> Option<Span> {
        match suffix {
            "p_old" => return Some(Span::Old),
            "p_new" => return Some(Span::New),
            _ => {}
        }
        let digits = suffix.strip_prefix('p')?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let y: i64 = digits.get(0..4)?.parse().ok()?;
        let m: u32 = digits.get(4..6)?.parse().ok()?;
        if !(1..=12).contains(&m) {
            return None;
        }
        match digits.len() {
            6 => Some(Span::Month(y, m)),
            8 => {
                let d: u32 = digits[6..8].parse().ok()?;
                let days = days_from_civil(y, m, d);
                (civil_from_days(days) == (y, m, d)).then_some(Span::Day(days))
            }
            _ => None,
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS+00` of micros since the epoch (whole days and months only are asked
/// for, but any time prints right).
pub(crate) fn timestamp(micros: i64) -> String {
    let days = micros.div_euclid(DAY);
    let rest = micros.rem_euclid(DAY) / 1_000_000;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The table names for entry table `table`.
#[derive(Clone, Debug)]
pub(crate) struct Tables {
    pub(crate) raw: String,
    pub(crate) minute: String,
    pub(crate) hour: String,
}

impl Tables {
    pub(crate) fn new(table: &str) -> Tables {
        Tables {
            raw: table.to_owned(),
            minute: format!("{table}_1m"),
            hour: format!("{table}_1h"),
        }
    }

    /// The parent table of a level.
    pub(crate) fn of(&self, level: Level) -> &str {
        match level {
            Level::Raw => &self.raw,
            Level::Minute => &self.minute,
            Level::Hour => &self.hour,
        }
    }

    /// A partition's name.
    pub(crate) fn partition(&self, level: Level, span: Span) -> String {
        format!("{}_{}", self.of(level), span.suffix())
    }

    /// `"T"`: the quoted parent name.
    pub(crate) fn quoted(&self, level: Level) -> String {
        quoted(self.of(level))
    }
}

pub(crate) use fnmetrics_core::calendar::{civil_from_days, days_from_civil};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_424), (2025, 12, 2));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        for d in (-800_000..3_000_000).step_by(997) {
            let (y, m, day) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, day), d);
        }
    }

    #[test]
    fn partitions_of_times() {
        let t = 1_796_169_600_000_000; // 2026-12-02 00:00:00 UTC
        assert_eq!(Level::Raw.partition_of(t).suffix(), "p20261202");
        assert_eq!(Level::Raw.partition_of(t - 1).suffix(), "p20261201");
        assert_eq!(Level::Hour.partition_of(t).suffix(), "p202612");
        assert_eq!(Level::Minute.partition_of(-5).suffix(), "p_old");
        assert_eq!(
            Level::Raw.partition_of(t).for_values(),
            "FOR VALUES FROM ('2026-12-02 00:00:00+00') TO ('2026-12-03 00:00:00+00')"
        );
        assert_eq!(
            Level::Hour.partition_of(t).for_values(),
            "FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')"
        );
        assert_eq!(
            Span::Old.for_values(),
            "FOR VALUES FROM (MINVALUE) TO ('1970-01-01 00:00:00+00')"
        );
        assert_eq!(Level::Raw.partition_of(i64::MAX), Span::New);
        assert_eq!(
            Level::Hour.partition_of(NEW_DAY * DAY - 1),
            Span::Month(9999, 12)
        );
        for s in [
            Span::Old,
            Span::New,
            Span::Day(20_424),
            Span::Month(2026, 12),
        ] {
            assert_eq!(Span::parse(&s.suffix()), Some(s));
        }
        for bad in ["p2026", "p20261332", "px", "p2026120", "p20260230"] {
            assert_eq!(Span::parse(bad), None, "{bad}");
        }
        assert!(Span::Day(20_424).ends_before((20_425) * DAY));
        assert!(!Span::Day(20_424).ends_before((20_425) * DAY - 1));
        assert_eq!(timestamp(-1), "1969-12-31 23:59:59+00");
    }

    #[test]
    fn names() {
        let t = Tables::new("metrics");
        assert_eq!(
            t.partition(Level::Minute, Span::Day(0)),
            "metrics_1m_p19700101"
        );
        let longest = Tables::new(&"a".repeat(MAX_TABLE_LEN));
        assert_eq!(
            longest
                .partition(Level::Minute, Span::Day(NEW_DAY - 1))
                .len(),
            63
        );
    }
}
