//! Delivering a notification to one receiver of a rules file ([`Notify`]): a JSON webhook, a
//! Slack incoming webhook, mail over SMTP, or a Prometheus Alertmanager (its `/api/v2/alerts`,
//! so that its routing, grouping and silences apply).
//!
//! Every request has a timeout. A failure that may pass (a connection error, a timeout, HTTP
//! 5xx or 429, a transient SMTP reply) is retried with a doubling backoff; one that will not
//! (any other HTTP 4xx, a permanent SMTP reply, a bad address) is returned at once.
//!
//! HTTPS and STARTTLS check certificates against the system's roots, as the PostgreSQL
//! connections do. Mail goes over plain SMTP, upgraded with STARTTLS when the server offers
//! it; there is no SMTP authentication: the rules file names a relay that accepts the sender.

use super::rules::Notify;
use crate::duration::rfc3339;
use fnmetrics::redact_url;
use serde::Serialize;
use serde_json::{json, Value};
use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Whether a notification says that alerts started or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// The rule holds for the alerts.
    Firing,
    /// It no longer does.
    Resolved,
}

impl Status {
    /// `firing` or `resolved`, as in the webhook's JSON.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert of a notification: a function (or none, for the pipeline's health metrics) for
/// which the rule holds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Alert {
    /// The function, `None` for a metric about no function.
    pub(crate) function: Option<String>,
    /// The metric's value (durations in seconds).
    pub(crate) value: f64,
    /// When the rule started to hold for it.
    pub(crate) started_at: SystemTime,
}

/// What is delivered: the alerts of one rule that fired, or resolved, together.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Notification {
    /// Firing or resolved.
    pub(crate) status: Status,
    /// The rule's name.
    pub(crate) rule: String,
    /// The rule's severity.
    pub(crate) severity: String,
    /// One line saying what holds, e.g. `error_rate > 0.05 over 5m`.
    pub(crate) summary: String,
    /// The functions it holds for (at least one).
    pub(crate) alerts: Vec<Alert>,
    /// For Alertmanager: when the alerts end if not sent again. `None`: now for resolved
    /// alerts, Alertmanager's `resolve_timeout` for firing ones.
    pub(crate) ends_at: Option<SystemTime>,
}

/// How hard delivery tries.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    /// Of every request (connecting, sending, the answer); for SMTP, of every command.
    pub(crate) timeout: Duration,
    /// Tries in all, 1 for no retry.
    pub(crate) attempts: u32,
    /// The wait before the first retry, doubled before each next one.
    pub(crate) first_backoff: Duration,
}

impl Default for Delivery {
    /// 5 s a request, 4 attempts, 200 ms then 400 ms then 800 ms between them.
    fn default() -> Delivery {
        Delivery {
            timeout: Duration::from_secs(5),
            attempts: 4,
            first_backoff: Duration::from_millis(200),
        }
    }
}

/// A notification that did not reach its receiver.
#[derive(Debug)]
pub(crate) struct DeliveryError {
    /// `webhook http://..` (password redacted), `email smtp://host:port`, ...
    receiver: String,
    /// How many tries were made.
    attempts: u32,
    reason: Reason,
}

/// Why the last try failed.
#[derive(Debug)]
enum Reason {
    /// The receiver answered with this HTTP status (not 2xx), and the start of its body.
    Status(u16, String),
    /// The request failed: no connection, a timeout, a bad URL, ...
    Http(ureq::Error),
    /// An address of the email receiver is not one.
    Address(String, lettre::address::AddressError),
    /// The mail could not be built.
    Message(lettre::error::Error),
    /// The SMTP exchange failed.
    Smtp(lettre::transport::smtp::Error),
}

impl Reason {
    /// Whether trying again may help.
    fn retryable(&self) -> bool {
        match self {
            Reason::Status(code, _) => *code >= 500 || *code == 429,
            Reason::Http(e) => matches!(
                e,
                ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::HostNotFound
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::Protocol(_)
            ),
            Reason::Address(..) | Reason::Message(_) => false,
            Reason::Smtp(e) => !e.is_permanent() && !e.is_client() && !e.is_tls(),
        }
    }
}

impl DeliveryError {
    /// Whether the failure may pass: a later delivery of the same notification may succeed.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn retryable(&self) -> bool {
        self.reason.retryable()
    }

    /// The receiver, as it may be shown (`webhook URL` with its password redacted, ...).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn receiver(&self) -> &str {
        &self.receiver
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot deliver to {}", self.receiver)?;
        if self.attempts > 1 {
            write!(f, " ({} attempts)", self.attempts)?;
        }
        match &self.reason {
            Reason::Status(code, body) if body.is_empty() => write!(f, ": HTTP {code}"),
            Reason::Status(code, body) => write!(f, ": HTTP {code}: {body}"),
            Reason::Address(address, _) => write!(f, ": bad address `{address}`"),
            _ => Ok(()),
        }
    }
}

impl StdError for DeliveryError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.reason {
            Reason::Status(..) => None,
            Reason::Http(e) => Some(e),
            Reason::Address(_, e) => Some(e),
            Reason::Message(e) => Some(e),
            Reason::Smtp(e) => Some(e),
        }
    }
}

/// The most of an error answer's body kept for the message.
const BODY_SHOWN: usize = 200;

impl Delivery {
    /// Delivers `n` to `to`, retrying what may pass.
    pub(crate) fn deliver(&self, to: &Notify, n: &Notification) -> Result<(), DeliveryError> {
        match to {
            Notify::Webhook { url } => self.post(to, url, webhook_json(n)),
            Notify::Slack { url } => self.post(to, url, slack_json(n).to_string()),
            Notify::Alertmanager { url } => {
                let url = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
                let alerts = alertmanager_json(n, SystemTime::now());
                self.post(to, &url, alerts.to_string())
            }
            Notify::Email {
                smtp_host,
                smtp_port,
                from,
                to: recipients,
            } => {
                let fail = |reason| DeliveryError {
                    receiver: receiver(to),
                    attempts: 1,
                    reason,
                };
                let mail = email(n, from, recipients).map_err(fail)?;
                let tls = lettre::transport::smtp::client::TlsParameters::new(smtp_host.clone())
                    .map_err(|e| fail(Reason::Smtp(e)))?;
                let mailer = lettre::SmtpTransport::builder_dangerous(smtp_host)
                    .port(*smtp_port)
                    .timeout(Some(self.timeout))
                    .tls(lettre::transport::smtp::client::Tls::Opportunistic(tls))
                    .build();
                self.retrying(to, || {
                    use lettre::Transport;
                    mailer.send(&mail).map(drop).map_err(Reason::Smtp)
                })
            }
        }
    }

    /// POSTs `body`, JSON, to `url`; any 2xx answer is success.
    fn post(&self, to: &Notify, url: &str, body: String) -> Result<(), DeliveryError> {
        let mut config = ureq::Agent::config_builder();
        if url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("https:"))
        {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(root_certs())
                    .build(),
            );
        }
        let agent: ureq::Agent = config
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("fnmetrics/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        self.retrying(to, || {
            let mut answer = agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(&body)
                .map_err(http_reason)?;
            let code = answer.status().as_u16();
            if (200..300).contains(&code) {
                return Ok(());
            }
            let text = answer
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .unwrap_or_default();
            let text: String = text.trim().chars().take(BODY_SHOWN).collect();
            Err(Reason::Status(code, text))
        })
    }

    /// Runs `once` until it succeeds, fails for good or was tried `attempts` times, sleeping
    /// the backoff between tries.
    fn retrying(
        &self,
        to: &Notify,
        mut once: impl FnMut() -> Result<(), Reason>,
    ) -> Result<(), DeliveryError> {
        let mut backoff = self.first_backoff;
        let mut attempts = 1;
        loop {
            match once() {
                Ok(()) => return Ok(()),
                Err(reason) if reason.retryable() && attempts < self.attempts => {
                    std::thread::sleep(backoff);
                    backoff = backoff.saturating_mul(2);
                    attempts += 1;
                }
                Err(reason) => {
                    return Err(DeliveryError {
                        receiver: receiver(to),
                        attempts,
                        reason,
                    })
                }
            }
        }
    }
}

/// The system's root certificates, as for PostgreSQL (a team's Alertmanager may have a
/// certificate from its own CA), or Mozilla's when the system has none.
fn root_certs() -> ureq::tls::RootCerts {
    let certs: Vec<_> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c).to_owned())
        .collect();
    if certs.is_empty() {
        ureq::tls::RootCerts::WebPki
    } else {
        ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs))
    }
}

/// A ureq error, without a URL it may hold (its password would show).
fn http_reason(e: ureq::Error) -> Reason {
    match e {
        ureq::Error::BadUri(uri) => Reason::Http(ureq::Error::BadUri(redact_url(&uri))),
        e => Reason::Http(e),
    }
}

/// How `to` is named in errors: its kind and where, passwords redacted.
fn receiver(to: &Notify) -> String {
    match to {
        Notify::Webhook { url } | Notify::Slack { url } | Notify::Alertmanager { url } => {
            format!("{} {}", to.kind(), redact_url(url))
        }
        Notify::Email {
            smtp_host,
            smtp_port,
            ..
        } => format!("email smtp://{smtp_host}:{smtp_port}"),
    }
}

/// The generic webhook's body, its keys in this order.
#[derive(Serialize)]
struct WebhookBody<'a> {
    status: &'static str,
    rule: &'a str,
    severity: &'a str,
    summary: &'a str,
    alerts: Vec<WebhookAlert<'a>>,
}

/// One alert of [`WebhookBody`]; `function` is `null` for none.
#[derive(Serialize)]
struct WebhookAlert<'a> {
    function: Option<&'a str>,
    value: f64,
    started_at: String,
}

/// The generic webhook's body: `{"status", "rule", "severity", "summary", "alerts":
/// [{"function", "value", "started_at"}]}`.
fn webhook_json(n: &Notification) -> String {
    let body = WebhookBody {
        status: n.status.as_str(),
        rule: &n.rule,
        severity: &n.severity,
        summary: &n.summary,
        alerts: n
            .alerts
            .iter()
            .map(|a| WebhookAlert {
                function: a.function.as_deref(),
                value: a.value,
                started_at: rfc3339(a.started_at),
            })
            .collect(),
    };
    serde_json::to_string(&body).expect("plain data serializes")
}

/// `FIRING checkout-errors (page)`: the subject of mails, the head of Slack messages.
fn headline(n: &Notification) -> String {
    let status = n.status.as_str().to_ascii_uppercase();
    format!("{status} {} ({})", n.rule, n.severity)
}

/// One line per alert: `checkout: 0.12 since 2026-12-02T05:34:46Z`.
fn alert_lines(n: &Notification) -> impl Iterator<Item = String> + '_ {
    n.alerts.iter().map(|a| {
        format!(
            "{}: {} since {}",
            a.function.as_deref().unwrap_or("(no function)"),
            a.value,
            rfc3339(a.started_at)
        )
    })
}

/// A Slack incoming webhook's body: `{"text": ..}`, the headline, the summary and a line per
/// alert.
fn slack_json(n: &Notification) -> Value {
    // Slack reads `&`, `<` and `>` as markup: escaped as its docs say.
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut text = format!(
        "*[fnmetrics] {}*: {}",
        escape(&headline(n)),
        escape(&n.summary)
    );
    for line in alert_lines(n) {
        text.push_str("\n• ");
        text.push_str(&escape(&line));
    }
    json!({ "text": text })
}

/// Alertmanager's `POST /api/v2/alerts` body: one alert per function, told apart by its
/// `function` label. Resolved alerts end `now`; firing ones at `ends_at` or, without it, when
/// Alertmanager's `resolve_timeout` says (so they must be sent again while they fire).
fn alertmanager_json(n: &Notification, now: SystemTime) -> Value {
    let ends_at = match n.status {
        Status::Resolved => Some(n.ends_at.unwrap_or(now)),
        Status::Firing => n.ends_at,
    };
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            let mut labels = json!({
                "alertname": n.rule,
                "severity": n.severity,
                "source": "fnmetrics",
            });
            if let Some(f) = &a.function {
                labels["function"] = json!(f);
            }
            let mut alert = json!({
                "labels": labels,
                "annotations": { "summary": n.summary, "value": a.value.to_string() },
                "startsAt": rfc3339(a.started_at),
            });
            if let Some(end) = ends_at {
                alert["endsAt"] = json!(rfc3339(end));
            }
            alert
        })
        .collect();
    Value::Array(alerts)
}

/// The mail: subject `[fnmetrics] FIRING rule (severity)`, a text body with the summary and a
/// line per alert.
fn email(n: &Notification, from: &str, to: &[String]) -> Result<lettre::Message, Reason> {
    let mailbox = |s: &str| {
        s.parse::<lettre::message::Mailbox>()
            .map_err(|e| Reason::Address(s.to_owned(), e))
    };
    let mut builder = lettre::Message::builder()
        .from(mailbox(from)?)
        .subject(format!("[fnmetrics] {}", headline(n)));
    for t in to {
        builder = builder.to(mailbox(t)?);
    }
    let mut body = format!("{}\n{}\n\n", headline(n), n.summary);
    for line in alert_lines(n) {
        body.push_str(&line);
        body.push('\n');
    }
    builder
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(Reason::Message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fnmetrics_test_support::alertmanager::AlertmanagerServer;
    use fnmetrics_test_support::smtp::SmtpServer;
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    /// An HTTP server inside the test: answers each request with the next scripted status
    /// (200 once the script is done) and records the bodies it was sent.
    struct Receiver {
        url: String,
        bodies: Arc<Mutex<Vec<String>>>,
    }

    impl Receiver {
        fn start(script: &[u16]) -> Receiver {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
            let bodies = Arc::new(Mutex::new(Vec::new()));
            let mut script: VecDeque<u16> = script.iter().copied().collect();
            let seen = Arc::clone(&bodies);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let status = script.pop_front().unwrap_or(200);
                    answer(conn, status, &seen);
                }
            });
            Receiver { url, bodies }
        }

        fn bodies(&self) -> Vec<String> {
            self.bodies.lock().unwrap().clone()
        }

        fn json(&self) -> Vec<Value> {
            let bodies = self.bodies();
            let parse = |b: &String| serde_json::from_str(b).expect("a JSON body");
            bodies.iter().map(parse).collect()
        }
    }

    /// Reads one request from `conn`, adds its body to `seen` and answers `status`, closing
    /// the connection. (Recorded before the answer: the client sees it once it has its answer.)
    fn answer(conn: TcpStream, status: u16, seen: &Mutex<Vec<String>>) -> Option<()> {
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut reader = BufReader::new(conn);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().ok()?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        seen.lock().unwrap().push(String::from_utf8(body).ok()?);
        let mut conn = reader.into_inner();
        let text = format!("status {status}");
        write!(
            conn,
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
        .ok()
    }

    /// Quick retries for tests.
    fn delivery() -> Delivery {
        Delivery {
            timeout: Duration::from_secs(5),
            attempts: 3,
            first_backoff: Duration::from_millis(10),
        }
    }

    /// `2026-12-02T05:34:46Z` as a time.
    fn at(secs: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn notification(status: Status) -> Notification {
        Notification {
            status,
            rule: "checkout-errors".into(),
            severity: "page".into(),
            summary: "error_rate > 0.05 over 5m".into(),
            alerts: vec![
                Alert {
                    function: Some("shop::checkout".into()),
                    value: 0.125,
                    started_at: at(1_796_189_686),
                },
                Alert {
                    function: None,
                    value: 3.0,
                    started_at: at(1_796_189_700),
                },
            ],
            ends_at: None,
        }
    }

    fn webhook(url: &str) -> Notify {
        Notify::Webhook { url: url.into() }
    }

    #[test]
    fn rfc3339_is_utc_to_the_second() {
        assert_eq!(rfc3339(at(1_796_189_686)), "2026-12-02T05:34:46Z");
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn webhook_body_is_the_documented_json() {
        let hook = Receiver::start(&[]);
        delivery()
            .deliver(&webhook(&hook.url), &notification(Status::Firing))
            .expect("delivered");
        assert_eq!(
            hook.bodies(),
            [concat!(
                r#"{"status":"firing","rule":"checkout-errors","severity":"page","#,
                r#""summary":"error_rate > 0.05 over 5m","alerts":["#,
                r#"{"function":"shop::checkout","value":0.125,"started_at":"2026-12-02T05:34:46Z"},"#,
                r#"{"function":null,"value":3.0,"started_at":"2026-12-02T05:35:00Z"}]}"#
            )]
        );
    }

    #[test]
    fn a_server_error_is_retried() {
        let hook = Receiver::start(&[500, 200]);
        delivery()
            .deliver(&webhook(&hook.url), &notification(Status::Resolved))
            .expect("delivered on the second try");
        let bodies = hook.json();
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        assert_eq!(bodies[0], bodies[1]);
        assert_eq!(bodies[1]["status"], "resolved");
    }

    #[test]
    fn too_many_requests_is_retried_until_the_last_attempt() {
        let hook = Receiver::start(&[429, 503, 502, 200]);
        let err = delivery()
            .deliver(&webhook(&hook.url), &notification(Status::Firing))
            .expect_err("3 attempts, all failed");
        assert_eq!(hook.bodies().len(), 3);
        assert!(err.retryable());
        assert_eq!(
            err.to_string(),
            format!(
                "cannot deliver to webhook {} (3 attempts): HTTP 502: status 502",
                hook.url
            )
        );
    }

    #[test]
    fn a_client_error_is_not_retried() {
        let hook = Receiver::start(&[400, 200]);
        let err = delivery()
            .deliver(&webhook(&hook.url), &notification(Status::Firing))
            .expect_err("400 is final");
        assert_eq!(hook.bodies().len(), 1);
        assert!(!err.retryable());
        assert_eq!(
            err.to_string(),
            format!(
                "cannot deliver to webhook {}: HTTP 400: status 400",
                hook.url
            )
        );
    }

    #[test]
    fn an_error_names_the_receiver_without_its_password() {
        // Nothing listens there: refused at once, retried, then given up.
        let port = fnmetrics_test_support::free_port();
        let url = format!("http://alert:s3cret@127.0.0.1:{port}/hook");
        let err = delivery()
            .deliver(&webhook(&url), &notification(Status::Firing))
            .expect_err("nothing listens");
        assert!(err.retryable());
        let shown = format!("{err} / {:?}", err.source());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            err.receiver(),
            format!("webhook http://alert:***@127.0.0.1:{port}/hook")
        );
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        // Connections are accepted by the kernel (the backlog) and never answered.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let d = Delivery {
            timeout: Duration::from_millis(300),
            attempts: 2,
            first_backoff: Duration::from_millis(10),
        };
        let start = Instant::now();
        let err = d
            .deliver(&webhook(&url), &notification(Status::Firing))
            .expect_err("no answer");
        let elapsed = start.elapsed();
        assert!(err.retryable());
        assert!(
            elapsed >= d.timeout * d.attempts,
            "gave up after {elapsed:?}: {err}"
        );
        assert!(
            elapsed < d.timeout * d.attempts + Duration::from_secs(2),
            "took {elapsed:?}"
        );
        assert!(
            matches!(err.reason, Reason::Http(ureq::Error::Timeout(_))),
            "{err:?}"
        );
        drop(listener);
    }

    #[test]
    fn slack_gets_a_line_per_alert() {
        let hook = Receiver::start(&[]);
        let to = Notify::Slack {
            url: hook.url.clone(),
        };
        delivery()
            .deliver(&to, &notification(Status::Firing))
            .expect("delivered");
        let bodies = hook.json();
        assert_eq!(
            bodies,
            [json!({
                "text": "*[fnmetrics] FIRING checkout-errors (page)*: error_rate &gt; 0.05 over 5m\n\
                         • shop::checkout: 0.125 since 2026-12-02T05:34:46Z\n\
                         • (no function): 3 since 2026-12-02T05:35:00Z"
            })]
        );
    }

    #[test]
    fn alertmanager_alerts_resolve_at_once() {
        let now = at(1_796_190_000);
        let firing = alertmanager_json(&notification(Status::Firing), now);
        assert_eq!(
            firing[0],
            json!({
                "labels": {
                    "alertname": "checkout-errors",
                    "severity": "page",
                    "source": "fnmetrics",
                    "function": "shop::checkout",
                },
                "annotations": { "summary": "error_rate > 0.05 over 5m", "value": "0.125" },
                "startsAt": "2026-12-02T05:34:46Z",
            })
        );
        assert_eq!(firing[1]["labels"].get("function"), None);
        let resolved = alertmanager_json(&notification(Status::Resolved), now);
        assert_eq!(resolved[0]["endsAt"], "2026-12-02T05:40:00Z");
        assert_eq!(resolved[1]["endsAt"], "2026-12-02T05:40:00Z");
    }

    #[test]
    fn email_names_the_rule_and_the_functions() {
        let smtp = SmtpServer::start();
        let to = Notify::Email {
            smtp_host: "127.0.0.1".into(),
            smtp_port: smtp.port(),
            from: "fnmetrics <alerts@example.com>".into(),
            to: vec!["oncall@example.com".into(), "team@example.com".into()],
        };
        delivery()
            .deliver(&to, &notification(Status::Firing))
            .expect("delivered");
        let mails = smtp.mails();
        assert_eq!(mails.len(), 1, "{mails:?}");
        let mail = &mails[0];
        assert_eq!(mail.from, "<alerts@example.com>");
        assert_eq!(mail.to, ["<oncall@example.com>", "<team@example.com>"]);
        assert!(
            mail.data
                .contains("Subject: [fnmetrics] FIRING checkout-errors (page)\r\n"),
            "{}",
            mail.data
        );
        assert!(
            mail.data
                .contains("shop::checkout: 0.125 since 2026-12-02T05:34:46Z"),
            "{}",
            mail.data
        );
    }

    fn email_to(port: u16) -> Notify {
        Notify::Email {
            smtp_host: "127.0.0.1".into(),
            smtp_port: port,
            from: "alerts@example.com".into(),
            to: vec!["oncall@example.com".into()],
        }
    }

    #[test]
    fn a_transient_smtp_reply_is_retried() {
        let smtp = SmtpServer::with_replies(&["451 4.3.0 try again later"]);
        delivery()
            .deliver(&email_to(smtp.port()), &notification(Status::Firing))
            .expect("delivered on the second try");
        // The server keeps a mail before it answers: both tries are there.
        let mails = smtp.mails();
        assert_eq!(mails.len(), 2, "{mails:?}");
        assert!(mails[0].data.is_empty(), "{:?}", mails[0]);
        assert!(mails[1].data.contains("checkout-errors"), "{:?}", mails[1]);
    }

    #[test]
    fn a_permanent_smtp_reply_is_not_retried() {
        let smtp = SmtpServer::with_replies(&["550 5.7.1 relaying denied"]);
        let port = smtp.port();
        let to = email_to(port);
        let err = delivery()
            .deliver(&to, &notification(Status::Firing))
            .expect_err("550 is final");
        assert!(!err.retryable());
        assert_eq!(
            err.to_string(),
            format!("cannot deliver to email smtp://127.0.0.1:{port}")
        );
        assert_eq!(err.attempts, 1);
        let mails = smtp.mails();
        assert_eq!(mails.len(), 1, "{mails:?}");
        assert_eq!(mails[0].from, "<alerts@example.com>");
        assert!(mails[0].data.is_empty(), "{mails:?}");
    }

    #[test]
    fn email_to_a_bad_address_is_not_retried() {
        let to = Notify::Email {
            smtp_host: "127.0.0.1".into(),
            smtp_port: fnmetrics_test_support::free_port(),
            from: "alerts@example.com".into(),
            to: vec!["not an address".into()],
        };
        let err = delivery()
            .deliver(&to, &notification(Status::Firing))
            .expect_err("bad address");
        assert!(!err.retryable());
        assert!(
            err.to_string().ends_with(": bad address `not an address`"),
            "{err}"
        );
    }

    #[test]
    fn alertmanager_routes_firing_then_resolved_alerts_to_its_webhook() {
        let hook = Receiver::start(&[]);
        let am = AlertmanagerServer::start(&hook.url);
        let to = Notify::Alertmanager { url: am.url() };
        let mut n = notification(Status::Firing);
        n.alerts.truncate(1);
        n.alerts[0].started_at = SystemTime::now();
        delivery().deliver(&to, &n).expect("firing delivered");
        let has = |status: &str| {
            hook.json().iter().any(|b| {
                b["status"] == status
                    && b["alerts"][0]["labels"]["alertname"] == "checkout-errors"
                    && b["alerts"][0]["labels"]["function"] == "shop::checkout"
            })
        };
        let wait = |status: &str| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !has(status) {
                assert!(
                    Instant::now() < deadline,
                    "no {status} webhook from Alertmanager; got {:?}\n--- log\n{}",
                    hook.bodies(),
                    am.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait("firing");
        n.status = Status::Resolved;
        delivery().deliver(&to, &n).expect("resolved delivered");
        wait("resolved");
    }
}
