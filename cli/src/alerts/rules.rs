//! The rules file: its typed model ([`Rules`]) and [`parse`], which checks everything and
//! reports every mistake it can find with its line and column.
//!
//! ```toml
//! [[rule]]
//! name = "checkout-errors"
//! functions = "*::checkout"
//! when = "error_rate > 0.05"
//! window = "1m"
//! for = "30s"
//! min_calls = 20
//! severity = "page"
//!
//! [[notify]]
//! kind = "webhook"
//! url = "http://127.0.0.1:9099/hook"
//! ```
//!
//! Parsing goes in two steps: the TOML syntax first (every syntax error, with the toml crate's
//! recovery), then each `[[rule]]` and `[[notify]]` table on its own through serde (unknown keys
//! refused), so one bad table does not hide the mistakes of the others; then the meaning.

use crate::duration::parse_duration;
use crate::glob::Glob;
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::time::Duration;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// A whole rules file.
#[derive(Debug)]
pub(crate) struct Rules {
    /// The `[[rule]]` tables, in file order.
    pub(crate) rules: Vec<Rule>,
    /// The `[[notify]]` tables, in file order (at least one).
    pub(crate) notify: Vec<Notify>,
}

/// One `[[rule]]`: fire when `when` holds over `window` for `for_`.
#[derive(Debug)]
pub(crate) struct Rule {
    /// Unique in the file; letters, digits, `-`, `_`, `.` and `:`.
    pub(crate) name: String,
    /// The functions watched, each on its own. `*` for the pipeline's health metrics, which
    /// are about no function.
    pub(crate) functions: Glob,
    /// What must hold.
    pub(crate) when: Condition,
    /// The span the metric is computed over (1s or longer).
    pub(crate) window: Duration,
    /// How long `when` must hold before the rule fires (zero: at once).
    pub(crate) for_: Duration,
    /// The fewest calls in `window` for the rule to fire for a function (0 for health metrics).
    pub(crate) min_calls: u64,
    /// Passed on with the alert (`page`, `ticket`, ...).
    pub(crate) severity: String,
}

/// `METRIC OP THRESHOLD`, e.g. `error_rate > 0.05` or `p99 > 250ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Condition {
    /// What is compared.
    pub(crate) metric: Metric,
    /// How.
    pub(crate) op: Op,
    /// With what; durations in seconds.
    pub(crate) threshold: f64,
}

/// What a condition is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Metric {
    /// Failed calls (errors and panics) over calls, 0 to 1.
    ErrorRate,
    /// Calls per second.
    CallsPerS,
    /// Failed calls in the window.
    Errors,
    /// Panicked calls in the window.
    Panics,
    /// Per-call entries dropped or not delivered in the window.
    Dropped,
    /// The mean call time.
    Mean,
    /// The median call time.
    P50,
    /// The 99th percentile of the call time.
    P99,
    /// The pipeline: entries waiting in Redis for stage 2.
    Backlog,
    /// The pipeline: the age of the oldest entry waiting.
    DrainLag,
    /// The pipeline: entries set aside by stage 2.
    DeadLetters,
}

/// What a metric's values are, which says how its threshold is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A fraction from 0 to 1.
    Ratio,
    /// Per second.
    Rate,
    /// A number of things.
    Count,
    /// A time, written with its unit (`250ms`), kept in seconds.
    Seconds,
}

impl Metric {
    /// Every metric with its name in rules files.
    pub(crate) const ALL: [Metric; 11] = [
        Metric::ErrorRate,
        Metric::CallsPerS,
        Metric::Errors,
        Metric::Panics,
        Metric::Dropped,
        Metric::Mean,
        Metric::P50,
        Metric::P99,
        Metric::Backlog,
        Metric::DrainLag,
        Metric::DeadLetters,
    ];

    /// Its name in rules files.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::CallsPerS => "calls_per_s",
            Metric::Errors => "errors",
            Metric::Panics => "panics",
            Metric::Dropped => "dropped",
            Metric::Mean => "mean",
            Metric::P50 => "p50",
            Metric::P99 => "p99",
            Metric::Backlog => "backlog",
            Metric::DrainLag => "drain_lag",
            Metric::DeadLetters => "dead_letters",
        }
    }

    /// How its values are measured.
    pub(crate) fn unit(self) -> Unit {
        match self {
            Metric::ErrorRate => Unit::Ratio,
            Metric::CallsPerS => Unit::Rate,
            Metric::Errors | Metric::Panics | Metric::Dropped => Unit::Count,
            Metric::Backlog | Metric::DeadLetters => Unit::Count,
            Metric::Mean | Metric::P50 | Metric::P99 | Metric::DrainLag => Unit::Seconds,
        }
    }

    /// Whether it is about the pipeline (what `fnmetrics status` shows), not about a function.
    pub(crate) fn is_health(self) -> bool {
        matches!(
            self,
            Metric::Backlog | Metric::DrainLag | Metric::DeadLetters
        )
    }
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// As written in rules files and in PromQL.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// Whether `value OP threshold`.
    pub(crate) fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }
}

impl Condition {
    /// Whether it holds for a function with no calls at all (`calls_per_s < 1`): the absence
    /// case, which must fire for a function that stopped being called.
    pub(crate) fn holds_without_calls(&self) -> bool {
        self.metric == Metric::CallsPerS && self.op.holds(0.0, self.threshold)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let threshold = match self.metric.unit() {
            Unit::Seconds => seconds_text(self.threshold),
            _ => number_text(self.threshold),
        };
        write!(f, "{} {} {threshold}", self.metric.name(), self.op.as_str())
    }
}

/// Where alerts go: one `[[notify]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notify {
    /// A JSON POST to `url`.
    Webhook {
        /// http(s) URL.
        url: String,
    },
    /// A Slack incoming webhook.
    Slack {
        /// http(s) URL.
        url: String,
    },
    /// Mail through an SMTP server.
    Email {
        /// The SMTP server's host name or address.
        smtp_host: String,
        /// Its port (25 unless given).
        smtp_port: u16,
        /// The sender address.
        from: String,
        /// The recipients (at least one).
        to: Vec<String>,
    },
    /// A Prometheus Alertmanager (its API v2).
    Alertmanager {
        /// Its base http(s) URL.
        url: String,
    },
}

impl Notify {
    /// Its `kind` in rules files.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Notify::Webhook { .. } => "webhook",
            Notify::Slack { .. } => "slack",
            Notify::Email { .. } => "email",
            Notify::Alertmanager { .. } => "alertmanager",
        }
    }
}

/// One mistake in a rules file, at a line and column (both from 1; columns count characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Diagnostic {
    /// The line, from 1.
    pub(crate) line: usize,
    /// The column, from 1, in characters.
    pub(crate) column: usize,
    /// What is wrong and what to write instead (no URL password in it).
    pub(crate) message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// The `kind`s of `[[notify]]`.
const NOTIFY_KINDS: &str = "webhook, slack, email or alertmanager";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    functions: Option<Spanned<String>>,
    when: Spanned<String>,
    window: Spanned<String>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    min_calls: Option<Spanned<i64>>,
    severity: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    smtp_host: Option<Spanned<String>>,
    smtp_port: Option<Spanned<i64>>,
    from: Option<Spanned<String>>,
    to: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Collects mistakes as byte spans of the text; turned into lines and columns at the end.
struct Errors<'t> {
    text: &'t str,
    found: Vec<(usize, String)>,
}

impl Errors<'_> {
    fn at(&mut self, offset: usize, message: impl Into<String>) {
        self.found.push((offset, scrub_secrets(&message.into())));
    }

    /// A mistake inside the string value at `span` (a TOML string with its quotes), at
    /// `inner` bytes of its content; at the string's start when the value has escapes or is
    /// written over several lines.
    fn in_string(&mut self, span: &Range<usize>, value: &str, inner: usize, message: String) {
        let raw = self.text.get(span.clone()).unwrap_or("");
        let plain = raw.len() == value.len() + 2
            && (raw.starts_with('"') || raw.starts_with('\''))
            && &raw[1..raw.len() - 1] == value;
        let offset = if plain {
            span.start + 1 + inner
        } else {
            span.start
        };
        self.at(offset, message);
    }

    fn into_diagnostics(self) -> Vec<Diagnostic> {
        let mut found = self.found;
        found.sort_by_key(|(offset, _)| *offset);
        found.dedup();
        found
            .into_iter()
            .map(|(offset, message)| {
                let (line, column) = line_column(self.text, offset);
                Diagnostic {
                    line,
                    column,
                    message,
                }
            })
            .collect()
    }
}

/// The line and column (from 1; columns in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Parses and checks a rules file: the rules, or every mistake found (sorted by position).
pub(crate) fn parse(text: &str) -> Result<Rules, Vec<Diagnostic>> {
    let mut errors = Errors {
        text,
        found: Vec::new(),
    };
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let offset = e.span().map_or(0, |s| s.start);
            errors.at(offset, format!("invalid TOML: {}", e.message().trim_end()));
        }
        return Err(errors.into_diagnostics());
    }
    let mut raw_rules = Vec::new();
    let mut raw_notify = Vec::new();
    // Whether the key was there but not an array of tables: a `[rule]` is one mistake, not two.
    let (mut bad_rule, mut bad_notify) = (false, false);
    for (key, value) in root.into_inner() {
        let list = match key.get_ref().as_ref() {
            "rule" => &mut raw_rules,
            "notify" => &mut raw_notify,
            other => {
                errors.at(
                    key.span().start,
                    format!(
                        "unknown key `{other}`: a rules file holds [[rule]] and [[notify]] \
                         tables only"
                    ),
                );
                continue;
            }
        };
        let name = key.get_ref().to_string();
        let span = value.span();
        match value.into_inner() {
            DeValue::Array(items) if items.iter().all(|i| i.get_ref().is_table()) => {
                list.extend(items);
            }
            _ => {
                bad_rule |= name == "rule";
                bad_notify |= name == "notify";
                errors.at(
                    span.start,
                    format!(
                        "`{name}` must be an array of tables: write [[{name}]] (double brackets) \
                     above each one"
                    ),
                )
            }
        }
    }
    let rules = check_rules(&mut errors, raw_rules, bad_rule);
    let notify = check_notify(&mut errors, raw_notify, bad_notify);
    if errors.found.is_empty() {
        Ok(Rules { rules, notify })
    } else {
        Err(errors.into_diagnostics())
    }
}

/// Deserializes one table; a failure is reported at its span (the table's when it has none).
fn deserialize<T: for<'de> Deserialize<'de>>(
    errors: &mut Errors<'_>,
    table: Spanned<DeValue<'_>>,
    hint: fn(&str) -> Option<&'static str>,
) -> Option<(Range<usize>, T)> {
    let span = table.span();
    match T::deserialize(ValueDeserializer::from(table)) {
        Ok(t) => Some((span, t)),
        Err(e) => {
            let offset = e.span().map_or(span.start, |s| s.start);
            let mut message = e.message().trim_end().to_owned();
            if let Some(h) = missing_field(&message).and_then(hint) {
                message.push_str(": add ");
                message.push_str(h);
            } else if message.starts_with("invalid type") && message.ends_with("expected a string")
            {
                message.push_str(": write it in quotes (e.g. window = \"1m\")");
            }
            errors.at(offset, message);
            None
        }
    }
}

/// The field of serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

fn rule_hint(field: &str) -> Option<&'static str> {
    Some(match field {
        "name" => "name = \"checkout-errors\" (unique in the file)",
        "when" => "when = \"error_rate > 0.05\" (a metric, a comparison, a threshold)",
        "window" => "window = \"1m\" (the span the metric is computed over)",
        "severity" => "severity = \"page\" (or ticket, warning, ...)",
        _ => return None,
    })
}

fn notify_hint(field: &str) -> Option<&'static str> {
    (field == "kind").then_some("kind = \"webhook\" (webhook, slack, email or alertmanager)")
}

fn check_rules(errors: &mut Errors<'_>, raw: Vec<Spanned<DeValue<'_>>>, bad: bool) -> Vec<Rule> {
    if raw.is_empty() && !bad {
        errors.at(
            0,
            "no [[rule]]: add one, e.g. [[rule]] name = \"checkout-errors\" functions = \
             \"*::checkout\" when = \"error_rate > 0.05\" window = \"1m\" severity = \"page\"",
        );
    }
    let mut rules = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    for table in raw {
        let Some((span, r)) = deserialize::<RawRule>(errors, table, rule_hint) else {
            continue;
        };
        let before = errors.found.len();
        let name = check_name(errors, &r.name, &mut names);
        let when = check_condition(errors, &r.when);
        let window = check_window(errors, &r.window);
        let for_ = check_for(errors, r.for_.as_ref());
        let severity = check_severity(errors, &r.severity);
        let functions = match (when, &r.functions) {
            (Some(c), Some(f)) if c.metric.is_health() => {
                errors.at(
                    f.span().start,
                    format!(
                        "`{}` is about the pipeline, not a function: remove `functions`",
                        c.metric.name()
                    ),
                );
                None
            }
            (Some(c), None) if !c.metric.is_health() => {
                errors.at(
                    span.start,
                    format!(
                        "a rule over `{}` needs `functions`: add functions = \"*\" for every \
                         function, or a glob such as \"*::checkout\"",
                        c.metric.name()
                    ),
                );
                None
            }
            (_, Some(f)) => check_glob(errors, f),
            (_, None) => Glob::new("*").ok(),
        };
        let min_calls = r
            .min_calls
            .as_ref()
            .and_then(|m| check_min_calls(errors, m, when));
        if errors.found.len() > before {
            continue;
        }
        if let (Some(name), Some(functions), Some(when), Some(window), Some(for_), Some(sev)) =
            (name, functions, when, window, for_, severity)
        {
            rules.push(Rule {
                name,
                functions,
                when,
                window,
                for_,
                min_calls: min_calls.unwrap_or(0),
                severity: sev,
            });
        }
    }
    rules
}

fn check_name(
    errors: &mut Errors<'_>,
    name: &Spanned<String>,
    seen: &mut Vec<(String, usize)>,
) -> Option<String> {
    let (span, n) = (name.span(), name.get_ref());
    if n.is_empty()
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        errors.at(
            span.start,
            format!(
                "invalid rule name `{n}`: write letters, digits, `-`, `_`, `.` or `:` (e.g. \
                 \"checkout-errors\")"
            ),
        );
        return None;
    }
    if let Some((_, first)) = seen.iter().find(|(s, _)| s == n) {
        let (line, _) = line_column(errors.text, *first);
        errors.at(
            span.start,
            format!(
                "duplicate rule name `{n}` (first at line {line}): give each rule its own name"
            ),
        );
        return None;
    }
    seen.push((n.clone(), span.start));
    Some(n.clone())
}

fn check_condition(errors: &mut Errors<'_>, when: &Spanned<String>) -> Option<Condition> {
    match parse_condition(when.get_ref()) {
        Ok(c) => Some(c),
        Err((at, message)) => {
            errors.in_string(&when.span(), when.get_ref(), at, message);
            None
        }
    }
}

/// Parses `METRIC OP THRESHOLD`; a mistake is the byte offset in `s` where it is, and what to
/// write instead.
pub(crate) fn parse_condition(s: &str) -> Result<Condition, (usize, String)> {
    let metrics = || {
        Metric::ALL
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let skip_ws = |i: usize| i + s[i..].len() - s[i..].trim_start().len();
    let start = skip_ws(0);
    let end = s[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(s.len(), |i| start + i);
    let word = &s[start..end];
    if word.is_empty() {
        return Err((
            start,
            "write a condition as `METRIC OP THRESHOLD`, e.g. \"error_rate > 0.05\" or \"p99 > \
             250ms\""
                .into(),
        ));
    }
    let Some(metric) = Metric::ALL.into_iter().find(|m| m.name() == word) else {
        let also = if word.starts_with('p') && word[1..].chars().all(|c| c.is_ascii_digit()) {
            " (the quantiles are p50 and p99)"
        } else {
            ""
        };
        return Err((
            start,
            format!("unknown metric `{word}`{also}: write one of {}", metrics()),
        ));
    };
    let at = skip_ws(end);
    let rest = &s[at..];
    let op = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">", Op::Gt),
        ("<", Op::Lt),
    ]
    .into_iter()
    .find(|(t, _)| rest.starts_with(t));
    let Some((op_text, op)) = op else {
        let what = if rest.starts_with("=>") {
            "write `>=` for greater than or equal".to_owned()
        } else if rest.starts_with("=<") {
            "write `<=` for less than or equal".to_owned()
        } else if rest.starts_with('=') {
            "write `==` to compare for equality".to_owned()
        } else {
            format!("expected a comparison after `{word}`: write >, >=, <, <=, == or !=")
        };
        return Err((at, what));
    };
    if rest[op_text.len()..].starts_with(['<', '>', '=']) {
        return Err((
            at,
            format!("invalid comparison `{}`: write >, >=, <, <=, == or !=", {
                let n = rest
                    .find(|c: char| !"<>=!".contains(c))
                    .unwrap_or(rest.len());
                &rest[..n]
            }),
        ));
    }
    let at = skip_ws(at + op_text.len());
    let text = s[at..].trim_end();
    let name = metric.name();
    if text.is_empty() {
        let example = match metric.unit() {
            Unit::Seconds => "250ms",
            Unit::Ratio => "0.05",
            _ => "10",
        };
        return Err((
            at,
            format!(
                "expected a threshold after `{name} {op_text}`, e.g. `{name} {op_text} {example}`"
            ),
        ));
    }
    let number = text.parse::<f64>().ok().filter(|n| n.is_finite());
    let threshold = match (metric.unit(), number) {
        (Unit::Seconds, Some(0.0)) => 0.0,
        (Unit::Seconds, Some(_)) => {
            return Err((
                at,
                format!(
                    "`{name}` is a time: write the threshold with its unit, e.g. `{name} \
                     {op_text} {text}ms` or `{name} {op_text} {text}s`"
                ),
            ))
        }
        (Unit::Seconds, None) => match parse_duration(text) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => return Err((at, e)),
        },
        (_, Some(n)) => n,
        (unit, None) => {
            let message = if parse_duration(text).is_ok() {
                format!(
                    "`{name}` is not a time, so its threshold has no unit: write a number; the \
                     times are mean, p50, p99 and drain_lag"
                )
            } else if unit == Unit::Ratio && text.ends_with('%') {
                "write error_rate as a fraction: 5% is 0.05".to_owned()
            } else {
                format!("invalid threshold `{text}`: write a number, e.g. `{name} {op_text} 10`")
            };
            return Err((at, message));
        }
    };
    if threshold < 0.0 {
        return Err((
            at,
            format!("`{name}` is never negative: write a threshold of 0 or more"),
        ));
    }
    if metric.unit() == Unit::Ratio && threshold > 1.0 {
        return Err((
            at,
            format!("error_rate is a fraction from 0 to 1: write e.g. 0.05 for 5% (not {text})"),
        ));
    }
    Ok(Condition {
        metric,
        op,
        threshold,
    })
}

fn check_window(errors: &mut Errors<'_>, window: &Spanned<String>) -> Option<Duration> {
    let (span, text) = (window.span(), window.get_ref());
    match parse_duration(text) {
        Ok(d) if d < Duration::from_secs(1) => {
            errors.at(
                span.start,
                format!("window `{text}` is shorter than 1s: write 1s or more, e.g. \"1m\""),
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errors.at(span.start, format!("window: {e}"));
            None
        }
    }
}

fn check_for(errors: &mut Errors<'_>, for_: Option<&Spanned<String>>) -> Option<Duration> {
    let Some(for_) = for_ else {
        return Some(Duration::ZERO);
    };
    let text = for_.get_ref().trim();
    if text == "0" || text == "0s" {
        return Some(Duration::ZERO);
    }
    match parse_duration(text) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.at(
                for_.span().start,
                format!("for: {e} (or \"0s\" to fire at once)"),
            );
            None
        }
    }
}

fn check_severity(errors: &mut Errors<'_>, severity: &Spanned<String>) -> Option<String> {
    let s = severity.get_ref();
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        errors.at(
            severity.span().start,
            format!(
                "invalid severity `{s}`: write one word of letters, digits, `-` or `_`, such as \
                 page, ticket or warning"
            ),
        );
        return None;
    }
    Some(s.clone())
}

fn check_glob(errors: &mut Errors<'_>, functions: &Spanned<String>) -> Option<Glob> {
    let pattern = functions.get_ref();
    if pattern.is_empty() {
        errors.at(
            functions.span().start,
            "an empty glob matches no function: write \"*\" for every function, or e.g. \
             \"*::checkout\"",
        );
        return None;
    }
    match Glob::new(pattern) {
        Ok(g) => Some(g),
        Err(e) => {
            errors.at(functions.span().start, e.to_string());
            None
        }
    }
}

fn check_min_calls(
    errors: &mut Errors<'_>,
    min_calls: &Spanned<i64>,
    when: Option<Condition>,
) -> Option<u64> {
    let (span, n) = (min_calls.span(), *min_calls.get_ref());
    let Ok(n) = u64::try_from(n) else {
        errors.at(
            span.start,
            "min_calls must be 0 or more, e.g. min_calls = 20",
        );
        return None;
    };
    match when {
        Some(c) if c.metric.is_health() => {
            errors.at(
                span.start,
                format!(
                    "min_calls counts a function's calls, and `{}` is about the pipeline: \
                     remove min_calls",
                    c.metric.name()
                ),
            );
            None
        }
        Some(c) if n > 0 && c.holds_without_calls() => {
            errors.at(
                span.start,
                format!(
                    "min_calls = {n} keeps `{c}` from firing for a function that stopped being \
                     called: remove min_calls"
                ),
            );
            None
        }
        _ => Some(n),
    }
}

fn check_notify(errors: &mut Errors<'_>, raw: Vec<Spanned<DeValue<'_>>>, bad: bool) -> Vec<Notify> {
    if raw.is_empty() && !bad {
        errors.at(
            errors.text.len(),
            "no [[notify]]: add one to say where alerts go, e.g. [[notify]] kind = \"webhook\" \
             url = \"http://127.0.0.1:9099/hook\"",
        );
    }
    let mut out = Vec::new();
    for table in raw {
        let Some((span, n)) = deserialize::<RawNotify>(errors, table, notify_hint) else {
            continue;
        };
        let before = errors.found.len();
        let kind = n.kind.get_ref().as_str();
        let is_email = kind == "email";
        if !["webhook", "slack", "email", "alertmanager"].contains(&kind) {
            errors.at(
                n.kind.span().start,
                format!("unknown notify kind `{kind}`: write {NOTIFY_KINDS}"),
            );
            continue;
        }
        // Keys of the other kinds.
        let foreign: [(&str, Option<Range<usize>>); 5] = [
            ("url", n.url.as_ref().map(Spanned::span)),
            ("smtp_host", n.smtp_host.as_ref().map(Spanned::span)),
            ("smtp_port", n.smtp_port.as_ref().map(Spanned::span)),
            ("from", n.from.as_ref().map(Spanned::span)),
            ("to", n.to.as_ref().map(Spanned::span)),
        ];
        for (key, at) in foreign {
            if let Some(at) = at
                && (key == "url") == is_email
            {
                errors.at(
                    at.start,
                    format!("`{key}` is not a key of kind = \"{kind}\": remove it"),
                );
            }
        }
        let notify = if is_email {
            check_email(errors, span.start, &n)
        } else {
            let url = match &n.url {
                Some(u) => check_url(errors, u),
                None => {
                    errors.at(
                        span.start,
                        format!(
                            "kind = \"{kind}\" needs `url`: add e.g. url = \
                             \"http://127.0.0.1:9099/hook\""
                        ),
                    );
                    None
                }
            };
            url.map(|url| match kind {
                "webhook" => Notify::Webhook { url },
                "slack" => Notify::Slack { url },
                _ => Notify::Alertmanager { url },
            })
        };
        if errors.found.len() == before {
            out.extend(notify);
        }
    }
    out
}

fn check_email(errors: &mut Errors<'_>, table: usize, n: &RawNotify) -> Option<Notify> {
    let mut missing = |key: &str, example: &str| {
        errors.at(
            table,
            format!("kind = \"email\" needs `{key}`: add e.g. {key} = {example}"),
        );
    };
    let host = n.smtp_host.as_ref().map(|h| h.get_ref().clone());
    if host.is_none() {
        missing("smtp_host", "\"smtp.example.com\"");
    }
    let from = n.from.as_ref();
    if from.is_none() {
        missing("from", "\"alerts@example.com\"");
    }
    let to = n.to.as_ref();
    if to.is_none() {
        missing("to", "[\"oncall@example.com\"]");
    }
    let mut ok = host.is_some() && from.is_some() && to.is_some();
    if let Some(h) = &n.smtp_host {
        let s = h.get_ref();
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "/@:".contains(c)) {
            errors.at(
                h.span().start,
                "smtp_host is a host name or address only, e.g. \"smtp.example.com\" (the port \
                 goes in smtp_port)",
            );
            ok = false;
        }
    }
    let port = match &n.smtp_port {
        None => 25,
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => port,
            _ => {
                errors.at(
                    p.span().start,
                    "smtp_port must be from 1 to 65535, e.g. 25 or 587",
                );
                ok = false;
                0
            }
        },
    };
    if let Some(f) = from {
        ok &= check_address(errors, f);
    }
    if let Some(to) = to {
        if to.get_ref().is_empty() {
            errors.at(
                to.span().start,
                "`to` is empty: list at least one address, e.g. to = [\"oncall@example.com\"]",
            );
            ok = false;
        }
        for a in to.get_ref() {
            ok &= check_address(errors, a);
        }
    }
    ok.then(|| Notify::Email {
        smtp_host: host.unwrap_or_default(),
        smtp_port: port,
        from: from.map(|f| f.get_ref().clone()).unwrap_or_default(),
        to: to
            .map(|t| t.get_ref().iter().map(|a| a.get_ref().clone()).collect())
            .unwrap_or_default(),
    })
}

/// Whether `a` looks like a mail address (`user@domain`); reports it when not.
fn check_address(errors: &mut Errors<'_>, a: &Spanned<String>) -> bool {
    let s = a.get_ref();
    let good = s.split_once('@').is_some_and(|(user, domain)| {
        !user.is_empty() && !domain.is_empty() && !s.contains(char::is_whitespace)
    });
    if !good {
        errors.at(
            a.span().start,
            format!("`{s}` is not a mail address: write e.g. \"oncall@example.com\""),
        );
    }
    good
}

/// An http(s) URL with a host, or a mistake naming it with its password hidden.
fn check_url(errors: &mut Errors<'_>, url: &Spanned<String>) -> Option<String> {
    let u = url.get_ref();
    let lower = u.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let host_ok = rest.is_some_and(|r| {
        let authority = &r[..r.find(['/', '?', '#']).unwrap_or(r.len())];
        let host = authority.rsplit('@').next().unwrap_or("");
        !host.is_empty() && !host.starts_with(':')
    });
    if host_ok && !u.contains(char::is_whitespace) {
        return Some(u.clone());
    }
    let shown = if u.contains("://") {
        format!("`{}` is", fnmetrics::redact_url(u))
    } else if u.contains('@') {
        // No scheme to tell a password from the rest: say nothing of it.
        "the value is".to_owned()
    } else {
        format!("`{u}` is")
    };
    errors.at(
        url.span().start,
        format!("{shown} not an http(s) URL: write e.g. \"http://127.0.0.1:9099/hook\""),
    );
    None
}

/// `message` with every `scheme://..` in it shown as [`fnmetrics::redact_url`] shows it, its
/// password replaced by `***` (toml's own messages may quote a value). A URL ends at white space
/// or a quote.
fn scrub_secrets(message: &str) -> String {
    let is_scheme = |c: char| c.is_ascii_alphanumeric() || "+-.".contains(c);
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .char_indices()
            .rev()
            .find(|&(_, c)| !is_scheme(c))
            .map_or(0, |(j, c)| j + c.len_utf8());
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || "\"'`".contains(c))
            .map_or(rest.len(), |e| i + e);
        out.push_str(&rest[..start]);
        out.push_str(&fnmetrics::redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `x` in the shortest form that reads back the same (`0.05`, `20`).
pub(crate) fn number_text(x: f64) -> String {
    format!("{x}")
}

/// Seconds as a rules-file duration: `250ms`, `1.5s`, `20us`.
pub(crate) fn seconds_text(s: f64) -> String {
    let (n, unit) = if s == 0.0 {
        (0.0, "s")
    } else if s < 1e-3 {
        (s * 1e6, "us")
    } else if s < 1.0 {
        (s * 1e3, "ms")
    } else {
        (s, "s")
    };
    let text = format!("{n:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[rule]]
name = "checkout-errors"
functions = "*::checkout"
when = "error_rate > 0.05"
window = "1m"
for = "30s"
min_calls = 20
severity = "page"

[[rule]]
name = "backlog"
when = "backlog >= 10000"
window = "1m"
severity = "ticket"

[[notify]]
kind = "webhook"
url = "http://127.0.0.1:9099/hook"

[[notify]]
kind = "email"
smtp_host = "127.0.0.1"
from = "alerts@example.com"
to = ["oncall@example.com"]
"#;

    fn errors(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_file_gives_the_model() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.rules.len(), 2);
        let c = &r.rules[0];
        assert_eq!(c.name, "checkout-errors");
        assert!(c.functions.matches("shop::checkout"));
        assert_eq!(
            c.when,
            Condition {
                metric: Metric::ErrorRate,
                op: Op::Gt,
                threshold: 0.05
            }
        );
        assert_eq!(c.window, Duration::from_secs(60));
        assert_eq!(c.for_, Duration::from_secs(30));
        assert_eq!((c.min_calls, c.severity.as_str()), (20, "page"));
        assert_eq!(r.rules[1].for_, Duration::ZERO);
        assert_eq!(
            r.notify,
            vec![
                Notify::Webhook {
                    url: "http://127.0.0.1:9099/hook".into()
                },
                Notify::Email {
                    smtp_host: "127.0.0.1".into(),
                    smtp_port: 25,
                    from: "alerts@example.com".into(),
                    to: vec!["oncall@example.com".into()]
                }
            ]
        );
    }

    #[test]
    fn conditions() {
        let c = |s: &str| parse_condition(s).map(|c| (c.metric, c.op, c.threshold));
        assert_eq!(c("p99 > 250ms"), Ok((Metric::P99, Op::Gt, 0.25)));
        assert_eq!(c("calls_per_s<0.5"), Ok((Metric::CallsPerS, Op::Lt, 0.5)));
        assert_eq!(c(" errors >= 3 "), Ok((Metric::Errors, Op::Ge, 3.0)));
        assert_eq!(c("drain_lag != 1m"), Ok((Metric::DrainLag, Op::Ne, 60.0)));
        assert_eq!(
            c("dead_letters == 0"),
            Ok((Metric::DeadLetters, Op::Eq, 0.0))
        );
        let err = |s: &str| parse_condition(s).unwrap_err();
        assert_eq!(err("p95 > 1s").0, 0);
        assert!(err("p95 > 1s").1.contains("p50 and p99"));
        assert_eq!(err("errors = 3").0, 7);
        assert!(err("errors = 3").1.contains("=="));
        assert!(err("errors => 3").1.contains(">="));
        assert!(err("errors <> 3").1.contains("invalid comparison `<>`"));
        assert_eq!(err("error_rate > 250ms").0, 13);
        assert!(err("error_rate > 250ms").1.contains("not a time"));
        assert!(err("error_rate > 5%").1.contains("0.05"));
        assert!(err("error_rate > 5").1.contains("from 0 to 1"));
        assert!(err("p99 > 0.25").1.contains("with its unit"));
        assert!(err("p99 >").1.contains("p99 > 250ms"));
        assert!(err("errors > -1").1.contains("0 or more"));
        assert!(err("").1.contains("METRIC OP THRESHOLD"));
        assert_eq!(
            parse_condition("p99 > 250ms").unwrap().to_string(),
            "p99 > 250ms"
        );
    }

    #[test]
    fn every_mistake_is_reported_in_order() {
        let text = r#"[[rule]]
name = "a"
functions = "x[y"
when = "error_rate > 0.05"
window = "500ms"
severity = "page"

[[rule]]
name = "a"
when = "backlog > 10"
window = "1m"
min_calls = 5
severity = "page"
"#;
        assert_eq!(
            errors(text),
            [
                "3:13: invalid glob `x[y`: a `[` is not closed (write `\\[` for the character \
                 itself)",
                "5:10: window `500ms` is shorter than 1s: write 1s or more, e.g. \"1m\"",
                "9:8: duplicate rule name `a` (first at line 2): give each rule its own name",
                "12:13: min_calls counts a function's calls, and `backlog` is about the \
                 pipeline: remove min_calls",
                "14:1: no [[notify]]: add one to say where alerts go, e.g. [[notify]] kind = \
                 \"webhook\" url = \"http://127.0.0.1:9099/hook\"",
            ]
        );
    }

    #[test]
    fn passwords_are_never_echoed() {
        let text = GOOD.replace(
            "http://127.0.0.1:9099/hook",
            "ftp://hook:s3cret@127.0.0.1/x",
        );
        let e = errors(&text).join("\n");
        assert!(
            e.contains("`ftp://hook:***@127.0.0.1/x` is not an http(s) URL"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        let text = GOOD.replace("http://127.0.0.1:9099/hook", "hook:s3cret@127.0.0.1");
        let e = errors(&text).join("\n");
        assert!(
            e.contains("not an http(s) URL") && !e.contains("s3cret"),
            "{e}"
        );
        assert_eq!(
            scrub_secrets("invalid type: string \"https://u:p@h/x\", expected u16"),
            "invalid type: string \"https://u:***@h/x\", expected u16"
        );
        let e = scrub_secrets("string `https://u:s3c@r:et@h/x` and redis://:s3c%40ret@h:1/ end");
        assert_eq!(e, "string `https://u:***@h/x` and redis://:***@h:1/ end");
    }

    #[test]
    fn lines_and_columns_count_characters() {
        assert_eq!(line_column("ab\nµx", 5), (2, 2));
        assert_eq!(line_column("", 0), (1, 1));
        assert_eq!(line_column("a\n", 2), (2, 1));
    }

    #[test]
    fn durations_read_back() {
        assert_eq!(seconds_text(0.25), "250ms");
        assert_eq!(seconds_text(1.5), "1.5s");
        assert_eq!(seconds_text(0.00002), "20us");
        assert_eq!(number_text(0.05), "0.05");
    }
}
