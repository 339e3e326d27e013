//! `fnmetrics alerts check FILE` and `fnmetrics alerts export-prometheus RULES -o FILE`.

use crate::alerts::deliver::{Alert, Delivery, Notification, Status};
use crate::alerts::eval::{Evaluator, Past, PipelineHealth, Reading, Transition};
use crate::alerts::rules::{Notify, Rule, Rules};
use crate::alerts::{self, prometheus, state};
use crate::args::{AlertsCheck, AlertsCommand, AlertsExport, AlertsRun, AlertsSilence, Servers};
use crate::cmd::serve::Fleet;
use crate::conn::{self, raw_postgres_error, redis_error};
use crate::duration::{human_span, rfc3339, utc};
use crate::error::{CliError, CliResult};
use crate::output::print;
use crate::stop::Stop;
use fnmetrics::postgres::Query;
use fnmetrics::redact_url;
use fnmetrics::redis::ChangeCursor;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often an evaluator reads every function rather than only those that changed: functions
/// forgotten in Redis leave, and a writer that keeps no change log (an older version) is caught
/// up with.
const RESYNC: Duration = Duration::from_secs(60);

pub(crate) fn run(s: &Servers, a: &AlertsCommand) -> CliResult<u8> {
    match a {
        AlertsCommand::Check(a) => check(a),
        AlertsCommand::ExportPrometheus(a) => export(a),
        AlertsCommand::Run(a) => evaluate(s, a),
        AlertsCommand::List(_) => list(s),
        AlertsCommand::Silence(a) => silence(s, a),
    }
}

/// `alerts run`: read, evaluate, record, notify, every interval until stopped.
fn evaluate(s: &Servers, a: &AlertsRun) -> CliResult<u8> {
    let rules = valid(&a.rules)?;
    let stop = Stop::install()?;
    // The signals set the flag on this thread; the evaluator's server calls run undisturbed.
    let every = Every {
        interval: a.interval,
        repeat: a.repeat,
        resend: a.resend_delay,
    };
    stop.shielded(|| evaluate_until(s, rules, every, &stop))
}

/// The rules of `path`, checked (for `fnmetrics drain --rules`).
pub(crate) fn checked_rules(path: &Path) -> CliResult<Rules> {
    valid(path)
}

/// Evaluates `rules` every `a.interval` until `stop` (see `alerts run`); deliveries under way
/// when it stops are waited for.
pub(crate) fn evaluate_until(s: &Servers, rules: Rules, a: Every, stop: &Stop) -> CliResult<u8> {
    // Posts again no more often than evaluations (a zero delay would end alerts at once).
    let a = Every {
        resend: a.resend.max(a.interval),
        ..a
    };
    let redis_url = s.redis_url()?;
    let pg_url = s.postgres_url()?.to_owned();
    let mut fleet = Fleet::connect(redis_url, s.redis_options())
        .map_err(|e| redis_error(redis_url, "cannot connect to Redis", e))?;
    let mut queue = conn::queue(s)?;
    let mut pg = conn::postgres_rw(s)?;
    let pg_err = |what: &'static str| {
        let url = pg_url.clone();
        move |e| raw_postgres_error(&url, what, e)
    };
    state::ensure_tables(&mut pg).map_err(pg_err("cannot make the alert tables"))?;
    let severity: HashMap<String, String> = rules
        .rules
        .iter()
        .map(|r| (r.name.clone(), r.severity.clone()))
        .collect();
    let names: Vec<String> = rules.rules.iter().map(|r| r.name.clone()).collect();
    let mut sender = Sender {
        targets: Arc::new(rules.notify.clone()),
        under_way: Vec::new(),
    };
    let alertmanager = rules
        .notify
        .iter()
        .any(|n| matches!(n, Notify::Alertmanager { .. }));
    let mut resent = Instant::now();
    let mut ev = Evaluator::new(rules);
    // What fired before a restart (or in another evaluator) resolves here as it should.
    let restored = state::firing(&mut pg).map_err(pg_err("cannot read the alerts' state"))?;
    ev.restore(
        restored
            .into_iter()
            .filter(|a| severity.contains_key(&a.rule))
            .map(|a| ((a.rule, a.function), a.value, a.started_at)),
    );
    let mut started = false;
    let mut cursor = ChangeCursor::default();
    // When everything was last read; `None`: read everything next (first, or after a failure,
    // when the change log may have moved past what was read).
    let mut complete_at: Option<Instant> = None;
    loop {
        let complete = complete_at.is_none_or(|t| t.elapsed() >= RESYNC);
        let read = if complete {
            // The cursor first: what changes while everything is read comes again next time.
            fleet
                .skip_changes(&mut cursor)
                .and_then(|()| fleet.read(None))
        } else {
            fleet.read_changed(&mut cursor)
        };
        let read = read
            .map_err(|e| redis_error(redis_url, "cannot read aggregates", e))
            .and_then(|all| {
                let o = queue
                    .overview()
                    .map_err(|e| redis_error(redis_url, "cannot read the pipeline's state", e))?;
                Ok((all, o))
            });
        match &read {
            Ok(_) if complete => complete_at = Some(Instant::now()),
            Ok(_) => {}
            Err(_) => complete_at = None,
        }
        match read {
            Ok((all, o)) => {
                let reading = Reading {
                    at: SystemTime::now(),
                    fleet: all,
                    complete,
                    health: PipelineHealth {
                        backlog: o.entries_waiting,
                        drain_lag: o.drain_lag.map_or(0.0, |d| d.as_secs_f64()),
                        dead_letters: o.dead_letters.held,
                    },
                };
                let (at, lag) = (reading.at, reading.health.drain_lag);
                let transitions = ev.step(reading);
                if !started {
                    // Windows reach back before this evaluator started, as PostgreSQL says.
                    let history = backfill(&mut ev, s, at, lag);
                    // Said once the first reading is in: what happens from now on is seen.
                    eprintln!(
                        "fnmetrics alerts: evaluating {} rules every {} on Redis at {}",
                        names.len(),
                        human_span(a.interval),
                        redact_url(redis_url)
                    );
                    if let Err(why) = history {
                        eprintln!("fnmetrics alerts: windows start at the first reading: {why}");
                    }
                    started = true;
                }
                let mut fired = Vec::new();
                let mut gone = Vec::new();
                for t in &transitions {
                    match t {
                        Transition::Fired { key, value, since } => fired.push(state::Fired {
                            rule: &key.0,
                            function: key.1.as_deref(),
                            severity: severity.get(&key.0).map_or("", String::as_str),
                            value: *value,
                            since: *since,
                        }),
                        Transition::Resolved { key, .. } => gone.push((&*key.0, key.1.as_deref())),
                    }
                }
                state::fired(&mut pg, &fired).map_err(pg_err("cannot record firing alerts"))?;
                let mine: HashSet<(String, Option<String>)> = state::resolved(&mut pg, &gone)
                    .map_err(pg_err("cannot record resolved alerts"))?
                    .into_iter()
                    .collect();
                let silenced = if mine.is_empty() {
                    HashSet::new()
                } else {
                    state::silenced(&mut pg).map_err(pg_err("cannot read the silences"))?
                };
                let mut resolved = by_rule(transitions.into_iter().filter_map(|t| match t {
                    Transition::Resolved { key, value, since }
                        if mine.contains(&key) && !silenced.contains(&key.0) =>
                    {
                        Some((key.0, key.1, value, since))
                    }
                    _ => None,
                }));
                // One notification a rule: what fires and is due (new, repeated, or held back
                // by a silence that ended), then what resolved.
                let mut due = by_rule(
                    state::claim_due(&mut pg, &names, a.repeat)
                        .map_err(pg_err("cannot claim notifications"))?
                        .into_iter()
                        .map(stored_row),
                );
                for rule in &ev.rules().rules {
                    if let Some(alerts) = due.remove(&rule.name) {
                        sender.notify(Status::Firing, rule, alerts, a.resend)?;
                    }
                    if let Some(alerts) = resolved.remove(&rule.name) {
                        sender.notify(Status::Resolved, rule, alerts, a.resend)?;
                    }
                }
                // Alertmanager ends an alert not posted again: what fires is, every
                // `resend` (by every evaluator: Alertmanager takes each alert once).
                if alertmanager && resent.elapsed() >= a.resend {
                    resent = Instant::now();
                    let mut alive = by_rule(
                        state::notified_firing(&mut pg)
                            .map_err(pg_err("cannot read the firing alerts"))?
                            .into_iter()
                            .map(stored_row),
                    );
                    for rule in &ev.rules().rules {
                        if let Some(alerts) = alive.remove(&rule.name) {
                            sender.keep_alive(rule, alerts, a.resend);
                        }
                    }
                }
            }
            // Redis away: said on stderr, tried again next interval.
            Err(e) => eprintln!("{}", e.report()),
        }
        if stop.sleep(a.interval) {
            return Ok(0);
        }
    }
}

/// An alert in a notification: its function, value and since when.
type Row = (Option<String>, f64, SystemTime);

/// `(rule, function, value, since)` rows grouped by rule, each group in the rows' order.
fn by_rule(
    rows: impl IntoIterator<Item = (String, Option<String>, f64, SystemTime)>,
) -> HashMap<String, Vec<Row>> {
    let mut out: HashMap<String, Vec<Row>> = HashMap::new();
    for (rule, function, value, since) in rows {
        out.entry(rule).or_default().push((function, value, since));
    }
    out
}

/// A stored alert as a `by_rule` row.
fn stored_row(a: state::Stored) -> (String, Option<String>, f64, SystemTime) {
    (a.rule, a.function, a.value, a.started_at)
}

/// Fills `ev`'s windows from PostgreSQL, back from its first reading at `at`: per function
/// matched, a series of minutes (hours, for windows over 2 h) over the longest window. Not
/// when the drain is more than a step behind (`lag` seconds: PostgreSQL lacks the newest calls,
/// and a rule on the calls a second would see them as missing). Why not, as an error.
fn backfill(ev: &mut Evaluator, s: &Servers, at: SystemTime, lag: f64) -> Result<(), String> {
    let Some((window, names)) = ev.history_wanted() else {
        return Ok(());
    };
    if names.is_empty() {
        return Ok(());
    }
    let step = if window <= Duration::from_secs(2 * 3600) {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(3600)
    };
    if lag > step.as_secs_f64() {
        return Err(format!(
            "the drain into PostgreSQL is {} behind",
            human_span(Duration::from_secs_f64(lag))
        ));
    }
    let mut reader = conn::postgres_reader(s).map_err(|e| e.to_string())?;
    if !reader.is_ready().map_err(|e| e.to_string())? {
        return Err("PostgreSQL has no metrics tables yet".to_owned());
    }
    // Whole steps of UNIX time, as the rollups have them.
    let back = at
        .checked_sub(window)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_secs();
    let from = UNIX_EPOCH + Duration::from_secs(back - back % step.as_secs());
    let series = reader
        .series(&Query::functions(&names).between(from, at).every(step))
        .map_err(|e| e.to_string())?;
    let series = series
        .into_iter()
        .map(|(name, points)| {
            let past = points
                .iter()
                .map(|p| Past {
                    start: p.start,
                    calls: p.calls,
                    errors: p.errors,
                    mean: p.mean,
                })
                .collect();
            (name, past)
        })
        .collect();
    ev.backfill(from, step, series);
    Ok(())
}

fn alert_json(function: Option<&str>, value: f64, since: SystemTime) -> Value {
    json!({ "function": function, "value": value, "started_at": rfc3339(since) })
}

/// Delivers notifications to the `[[notify]]` targets, each on a thread of its own (retries
/// and timeouts do not hold evaluation back; a failed delivery is said on stderr), and waits
/// for the deliveries under way when dropped: a notification is claimed in PostgreSQL before
/// it is sent, so no other evaluator sends it if this one stops.
struct Sender {
    targets: Arc<Vec<Notify>>,
    under_way: Vec<std::thread::JoinHandle<()>>,
}

impl Sender {
    /// A notification: one JSON line on standard output, and delivered to every target.
    fn notify(
        &mut self,
        status: Status,
        rule: &Rule,
        alerts: Vec<Row>,
        resend: Duration,
    ) -> CliResult<()> {
        let json_alerts: Vec<Value> = alerts
            .iter()
            .map(|(f, v, since)| alert_json(f.as_deref(), *v, *since))
            .collect();
        let line = json!({
            "status": status.as_str(),
            "rule": rule.name,
            "severity": rule.severity,
            "alerts": json_alerts,
        });
        print(&format!("{line}\n"))?;
        self.send(&notification(status, rule, alerts, resend), |_| true);
        Ok(())
    }

    /// Posts firing `alerts` of `rule` again to the Alertmanager targets, so that they stay
    /// active there.
    fn keep_alive(&mut self, rule: &Rule, alerts: Vec<Row>, resend: Duration) {
        let n = notification(Status::Firing, rule, alerts, resend);
        self.send(&n, |t| matches!(t, Notify::Alertmanager { .. }));
    }

    fn send(&mut self, n: &Notification, to: impl Fn(&Notify) -> bool) {
        self.under_way.retain(|h| !h.is_finished());
        for i in 0..self.targets.len() {
            if !to(&self.targets[i]) {
                continue;
            }
            let (targets, n) = (Arc::clone(&self.targets), n.clone());
            self.under_way.push(std::thread::spawn(move || {
                if let Err(e) = Delivery::default().deliver(&targets[i], &n) {
                    eprintln!("fnmetrics alerts: {e}");
                }
            }));
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.under_way.retain(|h| !h.is_finished());
        if !self.under_way.is_empty() {
            eprintln!(
                "fnmetrics alerts: waiting for {} deliveries under way",
                self.under_way.len()
            );
        }
        for h in self.under_way.drain(..) {
            let _ = h.join();
        }
    }
}

/// The notification of `alerts` of `rule`; a firing one ends, for Alertmanager, after four
/// `resend` delays unless posted again.
fn notification(status: Status, rule: &Rule, alerts: Vec<Row>, resend: Duration) -> Notification {
    Notification {
        status,
        rule: rule.name.clone(),
        severity: rule.severity.clone(),
        summary: format!(
            "{} over {}",
            rule.when,
            prometheus::prom_duration(rule.window)
        ),
        alerts: alerts
            .into_iter()
            .map(|(function, value, started_at)| Alert {
                function,
                value,
                started_at,
            })
            .collect(),
        ends_at: match status {
            Status::Firing => Some(SystemTime::now() + 4 * resend),
            Status::Resolved => None,
        },
    }
}

/// How often `evaluate_until` evaluates, notifies again, and posts again to Alertmanager.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Every {
    pub(crate) interval: Duration,
    pub(crate) repeat: Duration,
    pub(crate) resend: Duration,
}

impl Default for Every {
    /// As `alerts run`'s defaults: 1s, 4h, 1m.
    fn default() -> Every {
        Every {
            interval: Duration::from_secs(1),
            repeat: Duration::from_secs(4 * 3600),
            resend: Duration::from_secs(60),
        }
    }
}

/// `alerts list`.
fn list(s: &Servers) -> CliResult<u8> {
    let url = s.postgres_url()?.to_owned();
    let mut pg = conn::postgres_rw(s)?;
    let err = |what: &'static str| {
        let url = url.clone();
        move |e| raw_postgres_error(&url, what, e)
    };
    state::ensure_tables(&mut pg).map_err(err("cannot make the alert tables"))?;
    let firing = state::firing(&mut pg).map_err(err("cannot read the alerts"))?;
    let day = SystemTime::now() - std::time::Duration::from_secs(86_400);
    let resolved = state::resolved_since(&mut pg, day).map_err(err("cannot read the alerts"))?;
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let mut text = String::new();
    if firing.is_empty() {
        text.push_str("nothing fires\n");
    } else {
        text.push_str("firing:\n");
        for f in &firing {
            text.push_str(&format!(
                "  {} {} = {} since {} UTC\n",
                f.rule,
                f.function.as_deref().unwrap_or("(pipeline)"),
                f.value,
                utc(secs(f.started_at))
            ));
        }
    }
    if !resolved.is_empty() {
        text.push_str("resolved in the last 24 h:\n");
        for (f, at) in &resolved {
            text.push_str(&format!(
                "  {} {} from {} to {} UTC\n",
                f.rule,
                f.function.as_deref().unwrap_or("(pipeline)"),
                utc(secs(f.started_at)),
                utc(secs(*at))
            ));
        }
    }
    print(&text)?;
    Ok(0)
}

/// `alerts silence RULE --for D`.
fn silence(s: &Servers, a: &AlertsSilence) -> CliResult<u8> {
    let url = s.postgres_url()?.to_owned();
    let mut pg = conn::postgres_rw(s)?;
    state::ensure_tables(&mut pg)
        .and_then(|()| state::silence(&mut pg, &a.rule, a.for_))
        .map_err(|e| raw_postgres_error(&url, "cannot record the silence", e))?;
    print(&format!(
        "rule `{}` silenced for {}\n",
        a.rule,
        prometheus::prom_duration(a.for_)
    ))?;
    Ok(0)
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
            format!("notify: {} {}", n.kind(), redact_url(url))
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
