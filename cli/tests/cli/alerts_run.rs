//! `fnmetrics alerts run` in real processes against real servers: an error burst fires one
//! notification and resolves once, with two evaluators at once and across a restart; an
//! absence rule fires when calls stop; a silenced rule sends nothing; `alerts list` shows it.

use crate::{fnmetrics, kill, ok, record, wait_exit, WAIT};
use fnmetrics::measured;
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use fnmetrics_test_support::webhook::Webhook;
use fnmetrics_test_support::{wait_until, TempDir};
use parking_lot::Mutex;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;

#[measured(name = "run::pay")]
fn pay(fail: bool) -> Result<(), ()> {
    if fail {
        Err(())
    } else {
        Ok(())
    }
}

#[measured(name = "run::tick")]
fn tick() {}

const RULES: &str = r#"
[[rule]]
name = "pay-errors"
functions = "run::pay"
when = "error_rate > 0.2"
window = "2s"
min_calls = 5
severity = "page"

[[rule]]
name = "tick-quiet"
functions = "run::tick"
when = "calls_per_s < 0.5"
window = "1s"
severity = "ticket"

[[notify]]
kind = "webhook"
url = "WEBHOOK"
"#;

/// An evaluator whose notifications (JSON lines) are collected into `lines`, once it says it
/// has its first reading (what happens from then on is seen).
fn evaluator(
    rules: &std::path::Path,
    redis: &RedisServer,
    pg: &PostgresServer,
    lines: &Arc<Mutex<Vec<serde_json::Value>>>,
) -> Child {
    let mut child = fnmetrics()
        .args(["alerts", "run", "--interval", "100ms", "--rules"])
        .arg(rules)
        .args(["--redis", &redis.url(), "--postgres", &pg.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("alerts run starts");
    let out = BufReader::new(child.stdout.take().unwrap());
    let lines = Arc::clone(lines);
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            lines
                .lock()
                .push(serde_json::from_str(&line).expect("a JSON line"));
        }
    });
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first)
        .expect("the evaluator says it runs");
    assert!(first.contains("evaluating 2 rules every 100ms"), "{first}");
    // The rest of stderr is drained, so that the evaluator never blocks on it.
    std::thread::spawn(move || for _ in err.lines().map_while(Result::ok) {});
    child
}

fn count(lines: &Mutex<Vec<serde_json::Value>>, status: &str, rule: &str) -> usize {
    counted(&lines.lock(), status, rule)
}

fn counted(lines: &[serde_json::Value], status: &str, rule: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["status"] == status && l["rule"] == rule)
        .count()
}

fn stop(mut child: Child) {
    kill(child.id(), "TERM");
    assert!(wait_exit(&mut child, WAIT).success());
}

#[test]
fn notifications_are_sent_once_across_evaluators_restarts_and_silences() {
    fnmetrics_test_support::own_process!();
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    let dir = TempDir::new("alerts-run");
    let rules = dir.path().join("rules.toml");
    let hook = Webhook::start();
    std::fs::write(&rules, RULES.replace("WEBHOOK", hook.url())).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let a = evaluator(&rules, &redis, &pg, &lines);
    let b = evaluator(&rules, &redis, &pg, &lines);

    // Healthy calls, then a burst of failures: one firing notification from the two.
    record(&redis, None, || {
        for _ in 0..50 {
            let _ = pay(false);
        }
    });
    record(&redis, None, || {
        for i in 0..40 {
            let _ = pay(i % 4 != 0);
        }
    });
    wait_until("the burst to fire", WAIT, || {
        count(&lines, "firing", "pay-errors") >= 1
    });
    let fired = lines
        .lock()
        .iter()
        .find(|l| l["rule"] == "pay-errors")
        .cloned()
        .unwrap();
    assert_eq!(fired["severity"], "page");
    assert_eq!(fired["alerts"][0]["function"], "run::pay");
    assert!(
        fired["alerts"][0]["value"].as_f64().unwrap() > 0.2,
        "{fired}"
    );
    let listed = ok(&["alerts", "list", "--postgres", &pg.url()]);
    assert!(listed.contains("pay-errors run::pay"), "{listed}");
    // No more calls: once the window has no burst, resolved once.
    wait_until("the burst to resolve", WAIT, || {
        count(&lines, "resolved", "pay-errors") >= 1
    });
    // Both evaluators ran all along: still one of each.
    assert_eq!(count(&lines, "firing", "pay-errors"), 1);
    assert_eq!(count(&lines, "resolved", "pay-errors"), 1);

    // The absence rule: calls, then none.
    record(&redis, None, || {
        for _ in 0..20 {
            tick();
        }
    });
    wait_until("the absence to fire", WAIT, || {
        count(&lines, "firing", "tick-quiet") >= 1
    });

    // A restart while the absence fires: nothing sent again.
    stop(a);
    let a = evaluator(&rules, &redis, &pg, &lines);
    // A second burst fires again, once (it is a new episode).
    record(&redis, None, || {
        for i in 0..40 {
            let _ = pay(i % 4 != 0);
        }
    });
    wait_until("the second burst to fire", WAIT, || {
        count(&lines, "firing", "pay-errors") >= 2
    });
    wait_until("the second burst to resolve", WAIT, || {
        count(&lines, "resolved", "pay-errors") >= 2
    });
    assert_eq!(
        count(&lines, "firing", "tick-quiet"),
        1,
        "no repeat after the restart"
    );

    // Silenced: a third burst fires in the state, but nothing is sent.
    ok(&[
        "alerts",
        "silence",
        "pay-errors",
        "--for",
        "1h",
        "--postgres",
        &pg.url(),
    ]);
    record(&redis, None, || {
        for i in 0..40 {
            let _ = pay(i % 4 != 0);
        }
    });
    wait_until("the silenced burst to be recorded", WAIT, || {
        ok(&["alerts", "list", "--postgres", &pg.url()]).contains("pay-errors run::pay")
    });
    wait_until("the silenced burst to resolve", WAIT, || {
        !ok(&["alerts", "list", "--postgres", &pg.url()])
            .split("resolved")
            .next()
            .unwrap_or_default()
            .contains("pay-errors")
    });
    assert_eq!(count(&lines, "firing", "pay-errors"), 2);
    assert_eq!(count(&lines, "resolved", "pay-errors"), 2);
    stop(a);
    stop(b);
    // The webhook got each notification once, as the JSON the issue gives.
    wait_until("the webhook to get every notification", WAIT, || {
        hook.bodies().len() >= 5
    });
    assert_eq!(counted(&hook.bodies(), "firing", "pay-errors"), 2);
    assert_eq!(counted(&hook.bodies(), "resolved", "pay-errors"), 2);
    assert_eq!(counted(&hook.bodies(), "firing", "tick-quiet"), 1);
    let body = hook
        .bodies()
        .iter()
        .find(|b| b["rule"] == "pay-errors")
        .cloned()
        .unwrap();
    assert_eq!(body["severity"], "page");
    assert_eq!(body["alerts"][0]["function"], "run::pay");
    assert!(
        body["alerts"][0]["started_at"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "{body}"
    );
}

/// `fnmetrics drain --rules` evaluates them beside draining: a burst reaches the webhook.
#[test]
fn drain_evaluates_the_rules_it_is_given() {
    fnmetrics_test_support::own_process!();
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    let dir = TempDir::new("drain-rules");
    let rules = dir.path().join("rules.toml");
    let hook = Webhook::start();
    std::fs::write(&rules, RULES.replace("WEBHOOK", hook.url())).unwrap();
    let mut drain = fnmetrics()
        .args(["drain", "--poll", "100ms", "--rules"])
        .arg(&rules)
        .args(["--redis", &redis.url(), "--postgres", &pg.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drain starts");
    // Once the evaluator has its first reading.
    let mut err = BufReader::new(drain.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "drain ended");
        if line.contains("evaluating 2 rules") {
            break;
        }
    }
    std::thread::spawn(move || for _ in err.lines().map_while(Result::ok) {});
    record(&redis, None, || {
        for i in 0..40 {
            let _ = pay(i % 4 != 0);
        }
    });
    wait_until("the webhook to get the burst", WAIT, || {
        counted(&hook.bodies(), "firing", "pay-errors") == 1
    });
    stop(drain);
}

/// A stop waits for the deliveries under way: the notification was claimed in PostgreSQL, so
/// no evaluator would send it again. The receiver fails the first attempt; the evaluator is
/// stopped as soon as that attempt arrives, and the retry still comes before it exits.
#[test]
fn a_stop_waits_for_deliveries_under_way() {
    fnmetrics_test_support::own_process!();
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    let dir = TempDir::new("alerts-stop");
    let rules = dir.path().join("rules.toml");
    let hook = Webhook::failing_first(1);
    std::fs::write(&rules, RULES.replace("WEBHOOK", hook.url())).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let a = evaluator(&rules, &redis, &pg, &lines);
    record(&redis, None, || {
        for i in 0..40 {
            let _ = pay(i % 4 != 0);
        }
    });
    wait_until("the first attempt", WAIT, || !hook.bodies().is_empty());
    stop(a);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1]["status"], "firing");
}

#[measured(name = "run::nightly")]
fn nightly() {}

/// A window longer than the evaluator has seen reaches back into PostgreSQL: a function called
/// before the evaluator started is not "quiet" at its start, as it would be on its own
/// readings (no calls in its first 100 ms).
#[test]
fn windows_longer_than_the_evaluator_has_seen_come_from_postgres() {
    fnmetrics_test_support::own_process!();
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    let dir = TempDir::new("alerts-history");
    let rules = dir.path().join("rules.toml");
    let hook = Webhook::start();
    std::fs::write(
        &rules,
        format!(
            "[[rule]]\nname = \"nightly-quiet\"\nfunctions = \"run::nightly\"\n\
             when = \"calls_per_s < 0.0001\"\nwindow = \"1h\"\nseverity = \"ticket\"\n\
             [[rule]]\nname = \"pay-errors\"\nfunctions = \"run::pay\"\n\
             when = \"errors > 0\"\nwindow = \"1h\"\nseverity = \"page\"\n\
             [[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url()
        ),
    )
    .unwrap();
    // Called once, into Redis and PostgreSQL, before any evaluator runs.
    record(&redis, Some(&pg), nightly);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let a = evaluator(&rules, &redis, &pg, &lines);
    // Readings go by: a failure recorded now fires several readings later.
    record(&redis, None, || {
        let _ = pay(true);
    });
    wait_until("the failure to fire", WAIT, || {
        count(&lines, "firing", "pay-errors") == 1
    });
    // One call in the hour: 1/3600 a second, not under 1/10000.
    assert_eq!(
        count(&lines, "firing", "nightly-quiet"),
        0,
        "{:?}",
        lines.lock()
    );
    stop(a);
}
