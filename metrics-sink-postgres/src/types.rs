//! Tiny `ToSql` newtypes for the binary COPY and the query parameters, and the conversions
//! between Rust times and PostgreSQL's.
//!
//! `uuid` is 16 raw bytes on the wire and `timestamptz` is an `i64` of microseconds since
//! 2000-01-01 UTC, so two newtypes are simpler than the `uuid` and `chrono` crates.

use bytes::BytesMut;
use postgres::types::{accepts, to_sql_checked, IsNull, ToSql, Type};
use std::borrow::Cow;
use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01 00:00:00 UTC.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A `uuid` value: the 16 bytes of an id, sent as they are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgUuid<'a>(pub(crate) &'a [u8; 16]);

impl ToSql for PgUuid<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    accepts!(UUID);
    to_sql_checked!();
}

/// The earliest `timestamptz` PostgreSQL accepts (4714-11-24 BC), in microseconds since 2000.
const PG_MIN_TIMESTAMP: i64 = -211_813_488_000_000_000;

/// A `timestamptz` value from microseconds since the Unix epoch. Times before PostgreSQL's range
/// become `-infinity` (the latest `i64` time is within it), so no value makes the server reject
/// a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgTimestamp(pub(crate) i64);

impl ToSql for PgTimestamp {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let mut pg = self.0.saturating_sub(PG_EPOCH_OFFSET_MICROS);
        if pg < PG_MIN_TIMESTAMP {
            pg = i64::MIN; // -infinity
        }
        out.extend_from_slice(&pg.to_be_bytes());
        Ok(IsNull::No)
    }

    accepts!(TIMESTAMPTZ);
    to_sql_checked!();
}

/// `s` as PostgreSQL `text` can hold it: a NUL character (which `text` rejects) becomes U+FFFD.
pub(crate) fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// The first whole microsecond at or after `t`, since the Unix epoch (saturating).
///
/// Stored times are whole microseconds, so `created_at >= t` holds exactly when
/// `created_at >= ceil_micros(t)`, and `created_at < t` exactly when `created_at < ceil_micros(t)`.
pub(crate) fn ceil_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => {
            let up = d.as_micros() + u128::from(d.subsec_nanos() % 1_000 != 0);
            i64::try_from(up).unwrap_or(i64::MAX)
        }
        // ceil(-d) = -floor(d)
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |us| -us),
    }
}

/// Seconds as stored in `execution_time`.
pub(crate) fn duration_to_secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A `Duration` from seconds as stored in `execution_time`, rounded to the nanosecond; negative
/// or NaN values give zero and huge ones saturate. A value written from a `Duration` reads back
/// as exactly that `Duration` (for durations below about 104 days, where f64 still resolves
/// nanoseconds).
pub(crate) fn secs_to_duration(secs: f64) -> Duration {
    let nanos = (secs * 1e9).round();
    if nanos.is_nan() || nanos <= 0.0 {
        Duration::ZERO
    } else if nanos >= u64::MAX as f64 {
        Duration::from_nanos(u64::MAX)
    } else {
        Duration::from_nanos(nanos as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_micros_rounds_up_sub_microsecond_times() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_500);
        assert_eq!(ceil_micros(t), 2);
        assert_eq!(ceil_micros(UNIX_EPOCH + Duration::from_micros(7)), 7);
        assert_eq!(ceil_micros(UNIX_EPOCH - Duration::from_nanos(1_500)), -1);
        assert_eq!(ceil_micros(UNIX_EPOCH - Duration::from_micros(3)), -3);
    }

    #[test]
    fn durations_round_trip_through_seconds() {
        for nanos in [
            0,
            1,
            999,
            1_500,
            123_456_789,
            3_600_000_000_001,
            86_400_000_000_000,
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(secs_to_duration(duration_to_secs(d)), d, "{nanos} ns");
        }
        assert_eq!(secs_to_duration(-1.0), Duration::ZERO);
        assert_eq!(secs_to_duration(f64::NAN), Duration::ZERO);
        assert_eq!(
            secs_to_duration(f64::INFINITY),
            Duration::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn text_never_holds_nul() {
        assert!(matches!(pg_text("app::f"), Cow::Borrowed("app::f")));
        assert_eq!(pg_text("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn timestamps_before_postgres_range_are_minus_infinity() {
        for micros in [i64::MIN, PG_MIN_TIMESTAMP + PG_EPOCH_OFFSET_MICROS - 1] {
            let mut buf = BytesMut::new();
            PgTimestamp(micros)
                .to_sql(&Type::TIMESTAMPTZ, &mut buf)
                .unwrap();
            assert_eq!(&buf[..], &i64::MIN.to_be_bytes());
        }
        let mut buf = BytesMut::new();
        let earliest = PG_MIN_TIMESTAMP + PG_EPOCH_OFFSET_MICROS;
        PgTimestamp(earliest)
            .to_sql(&Type::TIMESTAMPTZ, &mut buf)
            .unwrap();
        assert_eq!(&buf[..], &PG_MIN_TIMESTAMP.to_be_bytes());
    }

    #[test]
    fn timestamps_are_sent_relative_to_2000() {
        let mut buf = BytesMut::new();
        PgTimestamp(PG_EPOCH_OFFSET_MICROS + 5)
            .to_sql(&Type::TIMESTAMPTZ, &mut buf)
            .unwrap();
        assert_eq!(&buf[..], &5i64.to_be_bytes());
        assert!(!<PgTimestamp as ToSql>::accepts(&Type::TIMESTAMP));
        assert!(<PgUuid<'_> as ToSql>::accepts(&Type::UUID));
    }
}
