//! The rules as a Prometheus rule file: one group `fnmetrics`, one alerting rule per rule, over
//! the series of `fnmetrics serve` and `fnmetrics::prometheus` (see `src/prometheus.rs`).
//!
//! Each expression sums by `function` (the fleet's processes, or several scrape targets, add
//! up) over the rule's window, keeps the functions whose name matches the rule's glob (turned
//! into an anchored regex on the `function` label), and compares:
//!
//! | metric | expression |
//! |---|---|
//! | `error_rate` | `increase(errors_total)` / `increase(calls_total)` |
//! | `calls_per_s` | `rate(calls_total)` |
//! | `errors`, `panics`, `dropped` | `increase(errors_total)`, `increase(panics_total)`, `increase(dropped_entries_total)` |
//! | `mean` | `increase(duration_seconds_sum)` / `increase(duration_seconds_count)` |
//! | `p50`, `p99` | `histogram_quantile(q, sum by (function, le) (rate(duration_seconds_bucket)))` |
//!
//! `min_calls = N` adds `and sum by (function) (increase(calls_total[w])) >= N`.
//!
//! # Coarser than fnmetrics' own numbers
//! The `le` bounds are powers of two of nanoseconds, so `histogram_quantile` can only place a
//! quantile within its bucket, a factor of two wide: a p99 from Prometheus is within a factor of
//! 2 of the true one (the interpolation assumes calls spread evenly in the bucket), where
//! fnmetrics' own quantiles (`fnmetrics top`, `report`) are within about 1.6 %. `increase` also
//! extrapolates to the edges of the window, so counts are estimates, not whole numbers.
//!
//! # The absence case
//! A condition that holds with no calls at all (`calls_per_s < 1`, `calls_per_s == 0`) must
//! fire for a function that is not called any more even when it has no samples in the window
//! (its series went away). Where that can be said soundly, `or absent_over_time(..)` is added:
//! - a glob naming one function (no `*`, `?` or set): `absent_over_time` of its calls series,
//!   which carries its `function` label, so the alert names it;
//! - any other glob: `absent_over_time` of the calls of every matching function, which fires
//!   (without a `function` label) only when no matching function has any sample in the window.
//!   One function of several whose series went away is not seen, since Prometheus cannot know
//!   its name; while its series is still scraped (`fnmetrics serve` keeps every function's
//!   aggregates) its rate of 0 fires as usual.
//!
//! # Not exported
//! The pipeline's health metrics (`backlog`, `drain_lag`, `dead_letters`) have no Prometheus
//! series yet: their rules are left out and named in [`Export::skipped`].

use super::rules::{Metric, Rule, Rules};
use std::fmt::Write as _;
use std::time::Duration;

/// A rule file's text, and the rules left out of it.
#[derive(Debug)]
pub(crate) struct Export {
    /// The YAML of a Prometheus rule file.
    pub(crate) yaml: String,
    /// The names of the rules that have no Prometheus equivalent (health metrics).
    pub(crate) skipped: Vec<String>,
}

/// The Prometheus rule file of `rules`; `source` names the rules file in its header comment.
pub(crate) fn export(rules: &Rules, source: &str) -> Export {
    let mut yaml = format!(
        "# Prometheus alerting rules written by `fnmetrics alerts export-prometheus` from {}.\n\
         # Quantiles come from the power-of-two `le` buckets: within a factor of 2, not 1.6 %.\n\
         groups:\n  - name: fnmetrics\n    rules:\n",
        source.replace('\n', " ")
    );
    let mut skipped = Vec::new();
    let mut any = false;
    for rule in &rules.rules {
        if rule.when.metric.is_health() {
            skipped.push(rule.name.clone());
            continue;
        }
        any = true;
        let summary = format!(
            "{{{{ with $labels.function }}}}{{{{ . }}}}{{{{ else }}}}no function matching \
             the rule{{{{ end }}}}: {} over {} (rule {})",
            rule.when,
            prom_duration(rule.window),
            rule.name
        );
        let _ = write!(
            yaml,
            "      - alert: {}\n        expr: |-\n          {}\n        for: {}\n        \
             labels:\n          severity: {}\n        annotations:\n          summary: {}\n",
            quote(&rule.name),
            expr(rule),
            prom_duration(rule.for_),
            quote(&rule.severity),
            quote(&summary),
        );
    }
    if !any {
        yaml = yaml.replace("    rules:\n", "    rules: []\n");
    }
    Export { yaml, skipped }
}

/// A YAML double-quoted scalar (JSON's string syntax is YAML's).
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// A Prometheus duration (also how rules are summed up): whole milliseconds in the largest
/// unit that divides them (`90s`, `5m`, `1500ms`).
pub(crate) fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A PromQL string literal (double quotes; Go escapes).
fn promql_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The PromQL expression of a function rule.
pub(crate) fn expr(rule: &Rule) -> String {
    let sel = format!(
        "{{function=~{}}}",
        promql_string(&rule.functions.to_regex())
    );
    let w = prom_duration(rule.window);
    let inc = |m: &str| format!("sum by (function) (increase({m}{sel}[{w}]))");
    let quantile = |q: &str| {
        format!(
            "histogram_quantile({q}, sum by (function, le) \
             (rate(fnmetrics_duration_seconds_bucket{sel}[{w}])))"
        )
    };
    let value = match rule.when.metric {
        Metric::ErrorRate => format!(
            "{} / {}",
            inc("fnmetrics_errors_total"),
            inc("fnmetrics_calls_total")
        ),
        Metric::CallsPerS => {
            format!("sum by (function) (rate(fnmetrics_calls_total{sel}[{w}]))")
        }
        Metric::Errors => inc("fnmetrics_errors_total"),
        Metric::Panics => inc("fnmetrics_panics_total"),
        Metric::Dropped => inc("fnmetrics_dropped_entries_total"),
        Metric::Mean => format!(
            "{} / {}",
            inc("fnmetrics_duration_seconds_sum"),
            inc("fnmetrics_duration_seconds_count")
        ),
        Metric::P50 => quantile("0.5"),
        Metric::P99 => quantile("0.99"),
        Metric::Backlog | Metric::DrainLag | Metric::DeadLetters => {
            unreachable!("health rules are not exported")
        }
    };
    let when = &rule.when;
    let mut e = format!("({value}) {} {}", when.op.as_str(), when.threshold);
    if rule.min_calls > 0 {
        e = format!(
            "({e}) and ({} >= {})",
            inc("fnmetrics_calls_total"),
            rule.min_calls
        );
    }
    if when.holds_without_calls() {
        let absent_sel = match rule.functions.literal() {
            Some(name) => format!("{{function={}}}", promql_string(&name)),
            None => sel.clone(),
        };
        e = format!("({e}) or absent_over_time(fnmetrics_calls_total{absent_sel}[{w}])");
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::parse;

    fn one(rule: &str) -> String {
        let text = format!(
            "[[rule]]\nname = \"r\"\nseverity = \"page\"\n{rule}\n[[notify]]\nkind = \
             \"webhook\"\nurl = \"http://h/\"\n"
        );
        let rules = parse(&text).unwrap();
        expr(&rules.rules[0])
    }

    #[test]
    fn expressions() {
        assert_eq!(
            one("functions = \"*::checkout\"\nwhen = \"error_rate > 0.05\"\nwindow = \"1m\"\nmin_calls = 20"),
            "((sum by (function) (increase(fnmetrics_errors_total{function=~\"^.*::checkout$\"}[1m])) \
             / sum by (function) (increase(fnmetrics_calls_total{function=~\"^.*::checkout$\"}[1m]))) \
             > 0.05) and (sum by (function) (increase(fnmetrics_calls_total{function=~\"^.*::checkout$\"}[1m])) >= 20)"
        );
        assert_eq!(
            one("functions = \"a.b\"\nwhen = \"p99 > 250ms\"\nwindow = \"90s\""),
            "(histogram_quantile(0.99, sum by (function, le) \
             (rate(fnmetrics_duration_seconds_bucket{function=~\"^a\\\\.b$\"}[90s])))) > 0.25"
        );
        assert_eq!(
            one("functions = \"shop::pay\"\nwhen = \"calls_per_s < 0.5\"\nwindow = \"5m\""),
            "((sum by (function) (rate(fnmetrics_calls_total{function=~\"^shop::pay$\"}[5m]))) < 0.5) \
             or absent_over_time(fnmetrics_calls_total{function=\"shop::pay\"}[5m])"
        );
        assert!(
            one("functions = \"shop::*\"\nwhen = \"calls_per_s == 0\"\nwindow = \"5m\"").ends_with(
                "or absent_over_time(fnmetrics_calls_total{function=~\"^shop::.*$\"}[5m])"
            )
        );
        assert!(
            !one("functions = \"*\"\nwhen = \"calls_per_s > 5\"\nwindow = \"5m\"")
                .contains("absent")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(prom_duration(Duration::ZERO), "0s");
        assert_eq!(prom_duration(Duration::from_secs(90)), "90s");
        assert_eq!(prom_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(prom_duration(Duration::from_secs(7 * 86_400)), "7d");
    }
}
