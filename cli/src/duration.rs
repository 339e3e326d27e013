//! Durations on the command line (`250ms`, `30s`, `5m`, `1h`, `7d`) and in output (`12 ns`,
//! `3.4 µs`, `120.5 ms`, `2.10 s`).

use fnmetrics::__calendar::civil_from_days;
use std::time::Duration;

/// Parses `<number><unit>` with unit `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d` or `w`; the
/// number may have a fraction (`1.5h`). Several parts add up (`1h30m`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration `{s}`: write a number and a unit, e.g. 250ms, 30s, 5m, 1h, 24h, 7d"
        )
    };
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 7.0 * 86_400.0,
            _ => return Err(bad()),
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    if total <= 0.0 {
        return Err(format!(
            "invalid duration `{s}`: it must be longer than zero"
        ));
    }
    Ok(Duration::from_secs_f64(total))
}

/// A call time for a person: `ns` below 1 µs, then `µs`, `ms` and `s` with one decimal (two in
/// seconds).
pub(crate) fn human_ns(ns: f64) -> String {
    if !ns.is_finite() {
        return "-".into();
    }
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A window length for a person: `90s` → `1m30s`, `86400s` → `24h`.
pub(crate) fn human_span(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (days, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    if days >= 2 && h == 0 && m == 0 && sec == 0 {
        return format!("{days}d");
    }
    let hours = days * 24 + h;
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 {
        out.push_str(&format!("{sec}s"));
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since the Unix epoch.
pub(crate) fn utc(epoch_secs: f64) -> String {
    let secs = epoch_secs.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// RFC 3339 in UTC, to the second: `2026-12-02T05:34:46Z`.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as f64;
    format!("{}Z", utc(secs).replacen(' ', "T", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse() {
        for (s, want) in [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("30m", Duration::from_secs(1800)),
            ("1h", Duration::from_secs(3600)),
            ("24h", Duration::from_secs(86_400)),
            ("7d", Duration::from_secs(7 * 86_400)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("20us", Duration::from_micros(20)),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn mistakes_are_refused_with_an_example() {
        for s in ["", "10", "h", "1x", "-1s", "0s", "1..2s"] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains("invalid duration"), "{s}: {e}");
        }
    }

    #[test]
    fn call_times_read_well() {
        assert_eq!(human_ns(12.0), "12 ns");
        assert_eq!(human_ns(3_400.0), "3.4 µs");
        assert_eq!(human_ns(120_500_000.0), "120.5 ms");
        assert_eq!(human_ns(2_100_000_000.0), "2.10 s");
    }

    #[test]
    fn spans_and_dates() {
        assert_eq!(human_span(Duration::from_secs(86_400)), "24h");
        assert_eq!(human_span(Duration::from_secs(90)), "1m30s");
        assert_eq!(human_span(Duration::from_secs(3 * 86_400)), "3d");
        assert_eq!(utc(0.0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000.0), "2023-11-14 22:13:20");
    }
}
