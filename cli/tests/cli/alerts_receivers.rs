//! `fnmetrics alerts run` in real processes delivering to real receivers: Slack's format to an
//! HTTP server inside the test, mail to an SMTP server inside the test, and a real Alertmanager
//! (which sends on to a webhook the test reads). A restart of the evaluator while an alert
//! fires sends nothing again to Slack or mail, and Alertmanager notifies once per episode.

use crate::{fnmetrics, kill, ok, record, wait_exit, WAIT};
use fnmetrics::measured;
use fnmetrics_test_support::alertmanager::AlertmanagerServer;
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use fnmetrics_test_support::smtp::{Mail, SmtpServer};
use fnmetrics_test_support::webhook::Webhook;
use fnmetrics_test_support::{wait_until, TempDir};
use parking_lot::Mutex;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[measured(name = "recv::pay")]
fn pay(fail: bool) -> Result<(), ()> {
    if fail {
        Err(())
    } else {
        Ok(())
    }
}

const RULE: &str = "recv-pay-errors";

const RULES: &str = r#"
[[rule]]
name = "recv-pay-errors"
functions = "recv::pay"
when = "error_rate > 0.2"
window = "4s"
min_calls = 5
severity = "page"

[[notify]]
kind = "slack"
url = "SLACK"

[[notify]]
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = SMTP_PORT
from = "alerts@example.com"
to = ["oncall@example.com"]

[[notify]]
kind = "alertmanager"
url = "ALERTMANAGER"
"#;

/// A running `alerts run`, its notifications (stdout's JSON lines) and what else it said on
/// stderr, both read on threads of their own.
struct Evaluator {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Evaluator {
    /// Starts one (with `extra` arguments) and returns once it says it has its first reading
    /// (what happens from then on is seen).
    fn start(
        rules: &std::path::Path,
        redis: &RedisServer,
        pg: &PostgresServer,
        extra: &[&str],
    ) -> Evaluator {
        let mut child = fnmetrics()
            .args(["alerts", "run", "--interval", "100ms", "--rules"])
            .arg(rules)
            .args(extra)
            .args(["--redis", &redis.url(), "--postgres", &pg.url()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("alerts run starts");
        let (lines, stderr) = (Arc::default(), Arc::default());
        let out = BufReader::new(child.stdout.take().unwrap());
        let keep: Arc<Mutex<Vec<Value>>> = Arc::clone(&lines);
        let stdout_reader = std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                keep.lock()
                    .push(serde_json::from_str(&line).expect("a JSON line"));
            }
        });
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first)
            .expect("the evaluator says it runs");
        assert!(first.contains("evaluating 1 rules every 100ms"), "{first}");
        // The rest of stderr is kept (delivery errors), so that the evaluator never blocks on it.
        let keep: Arc<Mutex<Vec<String>>> = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                keep.lock().push(line);
            }
        });
        Evaluator {
            child,
            lines,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        }
    }

    /// Stops it with SIGTERM, as a service manager does; returns its notifications and its
    /// stderr once it has exited.
    fn stop(mut self) -> (Vec<Value>, Vec<String>) {
        kill(self.child.id(), "TERM");
        assert!(wait_exit(&mut self.child, WAIT).success());
        for r in self.readers {
            r.join().expect("the reader ends with the pipe");
        }
        let lines = self.lines.lock().clone();
        let stderr = self.stderr.lock().clone();
        (lines, stderr)
    }
}

/// How many of `lines` (the evaluator's JSON lines) say `status` for the rule.
fn counted(lines: &[Value], status: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["status"] == status && l["rule"] == RULE)
        .count()
}

/// Slack's messages for the rule that say `FIRING` or `RESOLVED`.
fn slack(hook: &Webhook, status: &str) -> Vec<String> {
    let head = format!("*[fnmetrics] {status} {RULE} (page)*");
    hook.bodies()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .filter(|t| t.starts_with(&head))
        .map(str::to_owned)
        .collect()
}

/// The mails whose subject says `FIRING` or `RESOLVED` for the rule.
fn mails(smtp: &SmtpServer, status: &str) -> Vec<Mail> {
    let subject = format!("Subject: [fnmetrics] {status} {RULE} (page)\r\n");
    smtp.mails()
        .into_iter()
        .filter(|m| m.data.contains(&subject))
        .collect()
}

/// The statuses (`firing`, `resolved`) of the notifications Alertmanager sent its webhook for
/// the rule's group, in order.
fn alertmanager(hook: &Webhook) -> Vec<String> {
    hook.bodies()
        .iter()
        .filter(|b| b["groupLabels"]["alertname"] == RULE)
        .map(|b| b["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The firing line of `alerts list` for the rule (with since when it fires), if it fires.
fn listed_firing(pg: &PostgresServer) -> Option<String> {
    let listed = ok(&["alerts", "list", "--postgres", &pg.url()]);
    let firing = listed
        .split("resolved in the last")
        .next()
        .unwrap_or_default();
    firing
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{RULE} recv::pay")))
        .map(str::to_owned)
}

/// A burst of failures: 30 of 40 calls fail (an error rate of 0.75).
fn burst(redis: &RedisServer) {
    record(redis, None, || {
        for i in 0..40 {
            let _ = pay(i % 4 != 0);
        }
    });
}

#[test]
fn a_restart_sends_no_duplicate_to_slack_email_or_alertmanager() {
    fnmetrics_test_support::own_process!();
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    let (slack_hook, am_hook) = (Webhook::start(), Webhook::start());
    let am = AlertmanagerServer::start(am_hook.url());
    let smtp = SmtpServer::start();
    let dir = TempDir::new("alerts-receivers");
    let rules = dir.path().join("rules.toml");
    let text = RULES
        .replace("SLACK", slack_hook.url())
        .replace("SMTP_PORT", &smtp.port().to_string())
        .replace("ALERTMANAGER", &am.url());
    std::fs::write(&rules, text).unwrap();
    let first = Evaluator::start(&rules, &redis, &pg, &[]);

    // Healthy calls, then a burst: it fires at every receiver.
    record(&redis, None, || {
        for _ in 0..50 {
            let _ = pay(false);
        }
    });
    burst(&redis);
    wait_until("the burst to fire at every receiver", WAIT, || {
        !slack(&slack_hook, "FIRING").is_empty()
            && !mails(&smtp, "FIRING").is_empty()
            && alertmanager(&am_hook).iter().any(|s| s == "firing")
    });
    let since = listed_firing(&pg).expect("alerts list shows it firing");

    // A restart while the burst is in the window (4 s): the restarted evaluator keeps the
    // alert firing for a second of its readings (ten intervals), the calls before its first
    // reading unknown to it. A bounded observation: what is asserted is that it lasts.
    let (first_lines, first_stderr) = first.stop();
    let second = Evaluator::start(&rules, &redis, &pg, &[]);
    let restarted = Instant::now();
    while restarted.elapsed() < Duration::from_secs(1) {
        assert_eq!(
            listed_firing(&pg).as_deref(),
            Some(&*since),
            "still the first episode {:?} after the restart",
            restarted.elapsed()
        );
    }
    // More failures in the same window: the restarted evaluator sees the condition hold, and
    // the same episode goes on (a new one would be a second firing message below).
    burst(&redis);

    // Calls stopped: once its whole window holds no burst, it resolves, at every receiver.
    wait_until("the alert to resolve at every receiver", WAIT, || {
        !slack(&slack_hook, "RESOLVED").is_empty()
            && !mails(&smtp, "RESOLVED").is_empty()
            && alertmanager(&am_hook)
                .last()
                .is_some_and(|s| s == "resolved")
    });
    assert_eq!(listed_firing(&pg), None);
    let listed = ok(&["alerts", "list", "--postgres", &pg.url()]);
    let episodes = listed.lines().filter(|l| l.contains(RULE)).count();
    assert_eq!(episodes, 1, "one episode resolved:\n{listed}");
    let (second_lines, second_stderr) = second.stop();

    // Each evaluator's own record: the first fired, the restarted one only resolved.
    let said = |lines: &[Value]| (counted(lines, "firing"), counted(lines, "resolved"));
    assert_eq!(said(&first_lines), (1, 0), "{first_lines:?}");
    assert_eq!(said(&second_lines), (0, 1), "{second_lines:?}");
    // (Beside a note that no history is in PostgreSQL: nothing was drained there.)
    let stderr: Vec<String> = [first_stderr, second_stderr]
        .concat()
        .into_iter()
        .filter(|l| !l.contains("windows start at the first reading"))
        .collect();
    assert!(stderr.is_empty(), "delivery errors: {stderr:?}");

    // Slack: one message firing, one resolved, in its incoming-webhook format.
    let (fired, resolved) = (slack(&slack_hook, "FIRING"), slack(&slack_hook, "RESOLVED"));
    assert_eq!(
        (fired.len(), resolved.len()),
        (1, 1),
        "{:?}",
        slack_hook.bodies()
    );
    assert_eq!(slack_hook.bodies().len(), 2, "{:?}", slack_hook.bodies());
    assert!(
        fired[0].contains("error_rate &gt; 0.2 over 4s"),
        "{}",
        fired[0]
    );
    assert!(fired[0].contains("\n• recv::pay: "), "{}", fired[0]);
    assert!(resolved[0].contains("\n• recv::pay: "), "{}", resolved[0]);

    // Mail: two, firing then resolved, from and to the rules file's addresses.
    let all = smtp.mails();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        (mails(&smtp, "FIRING"), mails(&smtp, "RESOLVED")),
        (vec![all[0].clone()], vec![all[1].clone()])
    );
    for m in &all {
        assert_eq!(m.from, "<alerts@example.com>");
        assert_eq!(m.to, ["<oncall@example.com>"]);
        assert!(m.data.contains("recv::pay: "), "{}", m.data);
    }

    // Alertmanager: the group fired, then resolved; it did not fire again after.
    let statuses = alertmanager(&am_hook);
    let resolved_at = statuses
        .iter()
        .position(|s| s == "resolved")
        .expect("a resolved notification");
    assert!(
        statuses[..resolved_at].iter().all(|s| s == "firing"),
        "{statuses:?}"
    );
    assert!(resolved_at >= 1, "{statuses:?}");
    assert!(
        statuses[resolved_at..].iter().all(|s| s == "resolved"),
        "{statuses:?}"
    );
    let last = am_hook
        .bodies()
        .into_iter()
        .rfind(|b| b["groupLabels"]["alertname"] == RULE)
        .unwrap();
    assert_eq!(
        last["alerts"][0]["labels"]["function"], "recv::pay",
        "{last}"
    );
    assert_eq!(last["alerts"][0]["labels"]["severity"], "page", "{last}");
    assert_eq!(last["alerts"][0]["status"], "resolved", "{last}");
}

#[measured(name = "recv::refund")]
fn refund() -> Result<(), ()> {
    Err(())
}

/// `2026-12-02T07:50:01.123456Z` as a tuple that orders as the instant does (fractions of any
/// length).
fn instant_of(rfc3339: &str) -> (String, f64) {
    let (day, time) = rfc3339.trim_end_matches('Z').split_once('T').unwrap();
    let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    (
        day.to_owned(),
        parts[0] * 3600.0 + parts[1] * 60.0 + parts[2],
    )
}

/// Alertmanager ends an alert that is not posted again: while one fires, `alerts run` posts it
/// every `--resend-delay`, each post ending it four delays later, so it stays active there.
#[test]
fn alertmanager_is_told_again_while_an_alert_fires() {
    fnmetrics_test_support::own_process!();
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    let hook = Webhook::start();
    let am = AlertmanagerServer::start(hook.url());
    let dir = TempDir::new("alerts-resend");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "[[rule]]\nname = \"refund-errors\"\nfunctions = \"recv::refund\"\n\
             when = \"errors > 0\"\nwindow = \"1h\"\nseverity = \"page\"\n\
             [[notify]]\nkind = \"alertmanager\"\nurl = \"{}\"\n",
            am.url()
        ),
    )
    .unwrap();
    let evaluator = Evaluator::start(&rules, &redis, &pg, &["--resend-delay", "1s"]);

    record(&redis, None, || {
        let _ = refund();
    });
    // Where Alertmanager has the alert ending, while it has it.
    let ends = || {
        let (status, body) =
            fnmetrics_test_support::prometheus::http_get(am.addr(), "/api/v2/alerts").ok()?;
        assert_eq!(status, 200, "{body}");
        let alerts: Value = serde_json::from_str(&body).unwrap();
        alerts
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "refund-errors")
            .and_then(|a| a["endsAt"].as_str())
            .map(instant_of)
    };
    wait_until("Alertmanager to have the alert", WAIT, || ends().is_some());
    let end = ends().unwrap();
    wait_until("a post that moves its end on", WAIT, || {
        ends().is_some_and(|e| e > end)
    });
    evaluator.stop();
}
