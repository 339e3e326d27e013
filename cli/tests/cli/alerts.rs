//! `fnmetrics alerts check` and `fnmetrics alerts export-prometheus`: a valid rules file, every
//! kind of mistake at its exact line and column, and exported rules that `promtool` accepts and
//! that fire on data (`promtool test rules`).

use crate::{expect, ok, run, text};
use fnmetrics_test_support::prometheus::promtool;
use fnmetrics_test_support::TempDir;
use std::path::PathBuf;
use std::process::Command;

const GOOD: &str = r#"# Alert rules of the shop.
[[rule]]
name = "checkout-errors"
functions = "shop::*"              # glob over function names
when = "error_rate > 0.05"
window = "5m"
for = "2m"
min_calls = 20
severity = "page"

[[rule]]
name = "pay-silent"
functions = "shop::pay"
when = "calls_per_s < 0.1"
window = "5m"
severity = "page"

[[rule]]
name = "refund-stopped"
functions = "shop::re*"
when = "calls_per_s < 0.1"
window = "5m"
severity = "ticket"

[[rule]]
name = "gone"
functions = "gone::*"
when = "calls_per_s < 1"
window = "5m"
severity = "ticket"

[[rule]]
name = "slow"
functions = "shop::checkout"
when = "p99 > 250ms"
window = "5m"
severity = "ticket"

[[rule]]
name = "backlog"
when = "backlog > 10000"
window = "1m"
severity = "ticket"

[[notify]]
kind = "webhook"
url = "http://hook:s3cret@127.0.0.1:9099/hook"

[[notify]]
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = 2525
from = "alerts@example.com"
to = ["oncall@example.com", "ops@example.com"]
"#;

/// Writes `text` as `name` in `dir`.
fn file(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write the rules file");
    path
}

/// `alerts check` of `text`, which must fail with exit status 1: its stderr lines, with the
/// file's path as `FILE`.
#[track_caller]
fn mistakes(rules: &str) -> Vec<String> {
    let dir = TempDir::new("alerts");
    let path = file(&dir, "rules.toml", rules);
    let path = path.to_str().unwrap();
    let out = run(&["alerts", "check", path]);
    let stderr = text(&out.stderr).replace(path, "FILE");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let mut lines: Vec<String> = stderr.lines().map(str::to_owned).collect();
    let last = lines.pop().unwrap_or_default();
    assert!(
        last.starts_with("error: FILE is not a valid rules file ("),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "a password in\n{stderr}");
    lines
}

#[test]
fn a_valid_file_passes_check_with_a_line_per_rule() {
    let dir = TempDir::new("alerts");
    let path = file(&dir, "rules.toml", GOOD);
    let out = ok(&["alerts", "check", path.to_str().unwrap()]);
    assert_eq!(
        out,
        "checkout-errors: error_rate > 0.05 over 5m for 2m, functions shop::*, min_calls 20, \
         severity page\n\
         pay-silent: calls_per_s < 0.1 over 5m, functions shop::pay, severity page\n\
         refund-stopped: calls_per_s < 0.1 over 5m, functions shop::re*, severity ticket\n\
         gone: calls_per_s < 1 over 5m, functions gone::*, severity ticket\n\
         slow: p99 > 250ms over 5m, functions shop::checkout, severity ticket\n\
         backlog: backlog > 10000 over 1m, severity ticket\n\
         notify: webhook http://hook:***@127.0.0.1:9099/hook\n\
         notify: email from alerts@example.com to oncall@example.com, ops@example.com via \
         127.0.0.1:2525\n"
    );
}

#[test]
fn the_readme_example_is_valid() {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## Alert rules").expect("the section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let dir = TempDir::new("alerts");
    let path = file(&dir, "rules.toml", example);
    let out = ok(&["alerts", "check", path.to_str().unwrap()]);
    assert_eq!(out.lines().count(), 5, "{out}");
}

#[test]
fn every_mistake_is_reported_at_its_line_and_column() {
    let text = r#"[[rule]]
name = "checkout-errors"
functions = "*::checkout"
when = "eror_rate > 0.05"
window = "1m"
severity = "page"

[[rule]]
name = "slow"
functions = "shop::[ab"
when = "error_rate > 250ms"
window = "500ms"
severity = "page"

[[rule]]
name = "checkout-errors"
when = "dead_letters > 0"
window = "1m"
min_calls = 20
severity = "ticket"

[[rule]]
name = "quiet"
functions = "shop::pay"
when = "calls_per_s < 1"
window = "5m"
timeout = "1m"
severity = "page"

[[notify]]
kind = "pager"
url = "http://127.0.0.1:9099/hook"

[[notify]]
kind = "webhook"
url = "ftp://hook:s3cret@127.0.0.1/hook"
"#;
    assert_eq!(
        mistakes(text),
        [
            "FILE:4:9: unknown metric `eror_rate`: write one of error_rate, calls_per_s, \
             errors, panics, dropped, mean, p50, p99, backlog, drain_lag, dead_letters",
            "FILE:10:13: invalid glob `shop::[ab`: a `[` is not closed (write `\\[` for the \
             character itself)",
            "FILE:11:22: `error_rate` is not a time, so its threshold has no unit: write a \
             number; the times are mean, p50, p99 and drain_lag",
            "FILE:12:10: window `500ms` is shorter than 1s: write 1s or more, e.g. \"1m\"",
            "FILE:16:8: duplicate rule name `checkout-errors` (first at line 2): give each \
             rule its own name",
            "FILE:19:13: min_calls counts a function's calls, and `dead_letters` is about the \
             pipeline: remove min_calls",
            "FILE:27:1: unknown field `timeout`, expected one of `name`, `functions`, `when`, \
             `window`, `for`, `min_calls`, `severity`",
            "FILE:31:8: unknown notify kind `pager`: write webhook, slack, email or \
             alertmanager",
            "FILE:36:7: `ftp://hook:***@127.0.0.1/hook` is not an http(s) URL: write e.g. \
             \"http://127.0.0.1:9099/hook\"",
        ]
    );
}

#[test]
fn syntax_errors_have_their_line_and_column() {
    let text = "[[rule]]\nname = \"a\nwhen = error_rate\n";
    assert_eq!(
        mistakes(text),
        [
            "FILE:2:10: invalid TOML: invalid basic string, expected `\"`",
            "FILE:3:8: invalid TOML: string values must be quoted, expected literal string",
        ]
    );
}

#[test]
fn missing_and_misplaced_keys_say_what_to_write() {
    let text = r#"[[rule]]
name = "a"
when = "p99 > 0.25"
window = 60
severity = "page"

[[rule]]
name = "b"
when = "errors > 1"
window = "1m"
severity = "page"

[[rule]]
name = "c"
functions = "shop::pay"
when = "calls_per_s < 1"
window = "5m"
min_calls = 5
severity = "page"

[[rule]]
name = "d"
functions = "*"
window = "1m"
severity = "page"

[[notify]]
kind = "slack"
url = "https://hooks.example.com/x"
smtp_port = 25

[[notify]]
kind = "email"
smtp_host = "mail"
to = []
"#;
    assert_eq!(
        mistakes(text),
        [
            "FILE:4:10: invalid type: integer `60`, expected a string: write it in quotes \
             (e.g. window = \"1m\")",
            "FILE:7:1: a rule over `errors` needs `functions`: add functions = \"*\" for \
             every function, or a glob such as \"*::checkout\"",
            "FILE:18:13: min_calls = 5 keeps `calls_per_s < 1` from firing for a function \
             that stopped being called: remove min_calls",
            "FILE:21:1: missing field `when`: add when = \"error_rate > 0.05\" (a metric, a \
             comparison, a threshold)",
            "FILE:30:13: `smtp_port` is not a key of kind = \"slack\": remove it",
            "FILE:32:1: kind = \"email\" needs `from`: add e.g. from = \"alerts@example.com\"",
            "FILE:35:6: `to` is empty: list at least one address, e.g. to = \
             [\"oncall@example.com\"]",
        ]
    );
}

#[test]
fn a_file_without_notify_or_rules_is_refused() {
    let rule = "[[rule]]\nname = \"a\"\nfunctions = \"*\"\nwhen = \"errors > 1\"\nwindow = \
                \"1m\"\nseverity = \"page\"\n";
    assert_eq!(
        mistakes(rule),
        [
            "FILE:7:1: no [[notify]]: add one to say where alerts go, e.g. [[notify]] kind = \
          \"webhook\" url = \"http://127.0.0.1:9099/hook\""
        ]
    );
    assert_eq!(
        mistakes("[rule]\nname = \"a\"\n\n[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\n"),
        [
            "FILE:1:1: `rule` must be an array of tables: write [[rule]] (double brackets) above \
          each one"
        ]
    );
}

#[test]
fn usage_and_unreadable_files() {
    // No file: a usage error.
    expect(2, &["alerts", "check"]);
    expect(2, &["alerts", "export-prometheus", "rules.toml"]);
    // A file that is not there: a runtime failure naming it.
    let out = run(&["alerts", "check", "/nonexistent/rules.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("cannot read /nonexistent/rules.toml"), "{err}");
    let help = ok(&["alerts", "--help"]);
    assert!(
        help.contains("check") && help.contains("export-prometheus"),
        "{help}"
    );
    let help = ok(&["alerts", "export-prometheus", "--help"]);
    assert!(help.contains("factor of 2"), "{help}");
}

/// Exports `GOOD`: the rule file's path, in `dir`, after checking the warning and exit status.
fn export(dir: &TempDir) -> PathBuf {
    let rules = file(dir, "rules.toml", GOOD);
    let out_path = dir.path().join("fnmetrics.rules.yml");
    let out = run(&[
        "alerts",
        "export-prometheus",
        rules.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr,
        "warning: rule `backlog` is over the pipeline's health, which has no Prometheus series \
         yet: left out\n"
    );
    out_path
}

#[track_caller]
fn promtool_ok(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .output()
        .expect("promtool runs");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{said}");
    said
}

#[test]
fn exported_rules_pass_promtool_check_rules() {
    let dir = TempDir::new("alerts");
    let path = export(&dir);
    let yaml = std::fs::read_to_string(&path).unwrap();
    assert!(yaml.contains("- name: fnmetrics"), "{yaml}");
    assert!(!yaml.contains("backlog"), "{yaml}");
    assert!(!yaml.contains("s3cret"), "{yaml}");
    let said = promtool_ok(&["check", "rules", path.to_str().unwrap()]);
    assert!(said.contains("SUCCESS: 5 rules found"), "{said}");
    // `-o -`: standard output.
    let rules = dir.path().join("rules.toml");
    let out = run(&[
        "alerts",
        "export-prometheus",
        rules.to_str().unwrap(),
        "-o",
        "-",
    ]);
    assert_eq!(text(&out.stdout), yaml);
}

/// The exported rules fire on data: promtool's unit tests, with series as `fnmetrics serve`
/// exposes them (one `function` label).
#[test]
fn exported_rules_fire_on_data() {
    let dir = TempDir::new("alerts");
    export(&dir);
    // One sample a minute. shop::checkout: 100 calls a minute, 10 of them failed, all between
    // 2^27 and 2^28 ns (134-268 ms). shop::rare: 1 call a minute, all failed (under
    // min_calls). shop::cart: no error. shop::refund: 10 calls a minute, then none after 5m.
    // shop::pay and gone::*: no series at all.
    let tests = r#"rule_files:
  - fnmetrics.rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'fnmetrics_calls_total{function="shop::checkout"}'
        values: '0+100x20'
      - series: 'fnmetrics_errors_total{function="shop::checkout"}'
        values: '0+10x20'
      - series: 'fnmetrics_duration_seconds_bucket{function="shop::checkout",le="0.134217728"}'
        values: '0x20'
      - series: 'fnmetrics_duration_seconds_bucket{function="shop::checkout",le="0.268435456"}'
        values: '0+100x20'
      - series: 'fnmetrics_duration_seconds_bucket{function="shop::checkout",le="+Inf"}'
        values: '0+100x20'
      - series: 'fnmetrics_calls_total{function="shop::rare"}'
        values: '0+1x20'
      - series: 'fnmetrics_errors_total{function="shop::rare"}'
        values: '0+1x20'
      - series: 'fnmetrics_calls_total{function="shop::cart"}'
        values: '0+100x20'
      - series: 'fnmetrics_errors_total{function="shop::cart"}'
        values: '0x20'
      - series: 'fnmetrics_calls_total{function="shop::refund"}'
        values: '0+10x5 50x15'
    alert_rule_test:
      # Pending (for = 2m), not firing yet.
      - eval_time: 2m
        alertname: checkout-errors
        exp_alerts: []
      - eval_time: 10m
        alertname: checkout-errors
        exp_alerts:
          - exp_labels:
              severity: page
              function: shop::checkout
            exp_annotations:
              summary: "shop::checkout: error_rate > 0.05 over 5m (rule checkout-errors)"
      - eval_time: 10m
        alertname: pay-silent
        exp_alerts:
          - exp_labels:
              severity: page
              function: shop::pay
            exp_annotations:
              summary: "shop::pay: calls_per_s < 0.1 over 5m (rule pay-silent)"
      - eval_time: 4m
        alertname: refund-stopped
        exp_alerts: []
      - eval_time: 15m
        alertname: refund-stopped
        exp_alerts:
          - exp_labels:
              severity: ticket
              function: shop::refund
            exp_annotations:
              summary: "shop::refund: calls_per_s < 0.1 over 5m (rule refund-stopped)"
      - eval_time: 10m
        alertname: gone
        exp_alerts:
          - exp_labels:
              severity: ticket
            exp_annotations:
              summary: "no function matching the rule: calls_per_s < 1 over 5m (rule gone)"
      - eval_time: 10m
        alertname: slow
        exp_alerts:
          - exp_labels:
              severity: ticket
              function: shop::checkout
            exp_annotations:
              summary: "shop::checkout: p99 > 250ms over 5m (rule slow)"
"#;
    let path = file(&dir, "tests.yml", tests);
    promtool_ok(&["test", "rules", path.to_str().unwrap()]);
}
