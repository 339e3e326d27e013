//! `fnmetrics alerts check FILE` and `fnmetrics alerts export-prometheus RULES -o FILE`.

use crate::alerts::rules::{Notify, Rule, Rules};
use crate::alerts::{self, prometheus};
use crate::args::{AlertsCheck, AlertsCommand, AlertsExport};
use crate::error::{CliError, CliResult};
use crate::output::print;
use crate::redact::redact;
use std::path::Path;

pub(crate) fn run(a: &AlertsCommand) -> CliResult<u8> {
    match a {
        AlertsCommand::Check(a) => check(a),
        AlertsCommand::ExportPrometheus(a) => export(a),
    }
}

fn valid(path: &Path) -> CliResult<Rules> {
    alerts::load(path)?.map_err(|d| alerts::invalid(path, &d))
}

fn check(a: &AlertsCheck) -> CliResult<u8> {
    let rules = valid(&a.file)?;
    let mut text = String::new();
    for r in &rules.rules {
        text.push_str(&rule_line(r));
        text.push('\n');
    }
    for n in &rules.notify {
        text.push_str(&notify_line(n));
        text.push('\n');
    }
    print(&text)?;
    Ok(0)
}

/// `checkout-errors: error_rate > 0.05 over 1m for 30s, functions *::checkout, min_calls 20,
/// severity page`.
fn rule_line(r: &Rule) -> String {
    let mut s = format!(
        "{}: {} over {}",
        r.name,
        r.when,
        prometheus::prom_duration(r.window)
    );
    if !r.for_.is_zero() {
        s.push_str(&format!(" for {}", prometheus::prom_duration(r.for_)));
    }
    if !r.when.metric.is_health() {
        s.push_str(&format!(", functions {}", r.functions.as_str()));
    }
    if r.min_calls > 0 {
        s.push_str(&format!(", min_calls {}", r.min_calls));
    }
    s.push_str(&format!(", severity {}", r.severity));
    s
}

fn notify_line(n: &Notify) -> String {
    match n {
        Notify::Webhook { url } | Notify::Slack { url } | Notify::Alertmanager { url } => {
            format!("notify: {} {}", n.kind(), redact(url))
        }
        Notify::Email {
            smtp_host,
            smtp_port,
            from,
            to,
        } => format!(
            "notify: email from {from} to {} via {smtp_host}:{smtp_port}",
            to.join(", ")
        ),
    }
}

fn export(a: &AlertsExport) -> CliResult<u8> {
    let rules = valid(&a.rules)?;
    let out = prometheus::export(&rules, &a.rules.display().to_string());
    for name in &out.skipped {
        eprintln!(
            "warning: rule `{name}` is over the pipeline's health, which has no Prometheus \
             series yet: left out"
        );
    }
    if a.output.as_os_str() == "-" {
        print(&out.yaml)?;
    } else {
        std::fs::write(&a.output, &out.yaml)
            .map_err(|e| CliError::caused(format!("cannot write {}", a.output.display()), e))?;
    }
    Ok(0)
}
