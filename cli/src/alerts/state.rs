//! Alert state kept in PostgreSQL, so that evaluators that run at once send one notification,
//! and one that restarts neither sends again nor forgets what fires.
//!
//! One row per alert episode in `fnmetrics_alerts`; at most one *firing* row per alert (rule
//! and function: a partial unique index), so of several evaluators that see an alert fire, the
//! one whose `INSERT` lands sends the notification, and of those that see it resolve, the one
//! whose `UPDATE` turns it resolved sends that. Repeats and notifications held back by a silence
//! are claimed the same way (`notified_at`). Silences are rows of `fnmetrics_alert_silences`.

use postgres::Client;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// Creates the tables if they are missing.
pub(crate) fn ensure_tables(c: &mut Client) -> Result<(), postgres::Error> {
    // One evaluator at a time: two `CREATE TABLE IF NOT EXISTS` at once can both try.
    let mut tx = c.transaction()?;
    tx.batch_execute("SELECT pg_advisory_xact_lock(hashtext('fnmetrics_alerts'))")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS fnmetrics_alerts (
             rule text NOT NULL,
             function text NOT NULL,          -- '' for a rule on the pipeline's health
             severity text NOT NULL,
             started_at timestamptz NOT NULL,
             value double precision NOT NULL,
             state text NOT NULL CHECK (state IN ('firing', 'resolved')),
             resolved_at timestamptz,
             notified_at timestamptz,         -- the last firing notification sent
             PRIMARY KEY (rule, function, started_at)
         );
         CREATE UNIQUE INDEX IF NOT EXISTS fnmetrics_alerts_one_firing
             ON fnmetrics_alerts (rule, function) WHERE state = 'firing';
         CREATE TABLE IF NOT EXISTS fnmetrics_alert_silences (
             rule text PRIMARY KEY,
             until timestamptz NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now()
         );",
    )?;
    tx.commit()
}

/// A firing alert as stored.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stored {
    pub(crate) rule: String,
    pub(crate) function: Option<String>,
    pub(crate) value: f64,
    pub(crate) started_at: SystemTime,
}

fn function_column(f: Option<&str>) -> &str {
    f.unwrap_or("")
}

fn function_of(column: String) -> Option<String> {
    (!column.is_empty()).then_some(column)
}

/// A row of (rule, function, value, started_at, ..) as a [`Stored`].
fn stored(r: &postgres::Row) -> Result<Stored, postgres::Error> {
    Ok(Stored {
        rule: r.try_get(0)?,
        function: function_of(r.try_get(1)?),
        value: r.try_get(2)?,
        started_at: r.try_get(3)?,
    })
}

/// An alert that fires, to record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fired<'a> {
    pub(crate) rule: &'a str,
    pub(crate) function: Option<&'a str>,
    pub(crate) severity: &'a str,
    pub(crate) value: f64,
    pub(crate) since: SystemTime,
}

/// Records that `alerts` fire, in one statement; returns how many this call recorded (an alert
/// firing already was recorded by another evaluator, or by this one before a restart).
pub(crate) fn fired(c: &mut Client, alerts: &[Fired]) -> Result<u64, postgres::Error> {
    if alerts.is_empty() {
        return Ok(0);
    }
    let rules: Vec<&str> = alerts.iter().map(|a| a.rule).collect();
    let functions: Vec<&str> = alerts.iter().map(|a| function_column(a.function)).collect();
    let severities: Vec<&str> = alerts.iter().map(|a| a.severity).collect();
    let since: Vec<SystemTime> = alerts.iter().map(|a| a.since).collect();
    let values: Vec<f64> = alerts.iter().map(|a| a.value).collect();
    c.execute(
        "INSERT INTO fnmetrics_alerts (rule, function, severity, started_at, value, state)
         SELECT r, f, s, t, v, 'firing'
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[])
              AS x(r, f, s, t, v)
         ON CONFLICT DO NOTHING",
        &[&rules, &functions, &severities, &since, &values],
    )
}

/// Records that `alerts` (rule, function) resolved, in one statement; returns those this call
/// turned resolved (this evaluator notifies them).
pub(crate) fn resolved(
    c: &mut Client,
    alerts: &[(&str, Option<&str>)],
) -> Result<Vec<(String, Option<String>)>, postgres::Error> {
    if alerts.is_empty() {
        return Ok(Vec::new());
    }
    let rules: Vec<&str> = alerts.iter().map(|a| a.0).collect();
    let functions: Vec<&str> = alerts.iter().map(|a| function_column(a.1)).collect();
    let rows = c.query(
        "UPDATE fnmetrics_alerts a SET state = 'resolved', resolved_at = now()
         FROM unnest($1::text[], $2::text[]) AS x(r, f)
         WHERE a.rule = x.r AND a.function = x.f AND a.state = 'firing'
         RETURNING a.rule, a.function",
        &[&rules, &functions],
    )?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, function_of(r.try_get(1)?))))
        .collect()
}

/// Claims the firing notifications of `rules` that are due: never sent (just fired, or held
/// back by a silence that ended), or sent longer than `repeat` ago. Returns the alerts claimed,
/// in one query for every rule; none of a rule while it is silenced.
pub(crate) fn claim_due(
    c: &mut Client,
    rules: &[String],
    repeat: Duration,
) -> Result<Vec<Stored>, postgres::Error> {
    let rows = c.query(
        "UPDATE fnmetrics_alerts a SET notified_at = now()
         WHERE rule = ANY($1) AND state = 'firing'
           AND (notified_at IS NULL OR notified_at < now() - make_interval(secs => $2))
           AND NOT EXISTS (SELECT 1 FROM fnmetrics_alert_silences s
                           WHERE s.rule = a.rule AND s.until > now())
         RETURNING rule, function, value, started_at",
        &[&rules, &repeat.as_secs_f64()],
    )?;
    let mut out = rows.iter().map(stored).collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| (&a.rule, &a.function).cmp(&(&b.rule, &b.function)));
    Ok(out)
}

/// The rules silenced now.
pub(crate) fn silenced(c: &mut Client) -> Result<HashSet<String>, postgres::Error> {
    c.query(
        "SELECT rule FROM fnmetrics_alert_silences WHERE until > now()",
        &[],
    )?
    .iter()
    .map(|r| r.try_get(0))
    .collect()
}

/// Silences `rule` for `d` from now (replacing a silence it had).
pub(crate) fn silence(c: &mut Client, rule: &str, d: Duration) -> Result<(), postgres::Error> {
    c.execute(
        "INSERT INTO fnmetrics_alert_silences (rule, until)
         VALUES ($1, now() + make_interval(secs => $2))
         ON CONFLICT (rule) DO UPDATE SET until = EXCLUDED.until, created_at = now()",
        &[&rule, &d.as_secs_f64()],
    )?;
    Ok(())
}

/// Every alert firing now.
pub(crate) fn firing(c: &mut Client) -> Result<Vec<Stored>, postgres::Error> {
    let rows = c.query(
        "SELECT rule, function, value, started_at FROM fnmetrics_alerts
         WHERE state = 'firing' ORDER BY rule, function",
        &[],
    )?;
    rows.iter().map(stored).collect()
}

/// Every alert firing now that was notified and is not silenced (what Alertmanager must be
/// told again to keep).
pub(crate) fn notified_firing(c: &mut Client) -> Result<Vec<Stored>, postgres::Error> {
    let rows = c.query(
        "SELECT rule, function, value, started_at FROM fnmetrics_alerts a
         WHERE state = 'firing' AND notified_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM fnmetrics_alert_silences s
                           WHERE s.rule = a.rule AND s.until > now())
         ORDER BY rule, function",
        &[],
    )?;
    rows.iter().map(stored).collect()
}

/// Alerts resolved since `since`, newest first: `(alert, resolved at)`.
pub(crate) fn resolved_since(
    c: &mut Client,
    since: SystemTime,
) -> Result<Vec<(Stored, SystemTime)>, postgres::Error> {
    let rows = c.query(
        "SELECT rule, function, value, started_at, resolved_at FROM fnmetrics_alerts
         WHERE state = 'resolved' AND resolved_at >= $1 ORDER BY resolved_at DESC LIMIT 100",
        &[&since],
    )?;
    rows.iter()
        .map(|r| Ok((stored(r)?, r.try_get(4)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fnmetrics_test_support::postgres::PostgresServer;

    #[test]
    fn two_evaluators_notify_once_and_a_silence_holds_notifications_back() {
        let pg = PostgresServer::start();
        let (mut a, mut b) = (pg.client(), pg.client());
        ensure_tables(&mut a).unwrap();
        ensure_tables(&mut b).unwrap();
        let t = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let r = ["r".to_owned()];
        // Both see it fire (at slightly different times): one records it.
        let f = |value: f64, since: SystemTime| Fired {
            rule: "r",
            function: Some("f"),
            severity: "page",
            value,
            since,
        };
        let first = fired(&mut a, &[f(0.5, t)]).unwrap();
        let second = fired(&mut b, &[f(0.6, t + Duration::from_millis(3))]).unwrap();
        assert_eq!((first, second), (1, 0));
        // One claims the notification, the other finds nothing due.
        assert_eq!(claim_due(&mut a, &r, hour).unwrap().len(), 1);
        assert!(claim_due(&mut b, &r, hour).unwrap().is_empty());
        assert_eq!(firing(&mut b).unwrap().len(), 1);
        // One resolves it.
        let mine = resolved(&mut b, &[("r", Some("f")), ("other", None)]).unwrap();
        assert_eq!(mine, [("r".to_owned(), Some("f".to_owned()))]);
        assert!(resolved(&mut a, &[("r", Some("f"))]).unwrap().is_empty());
        assert!(firing(&mut a).unwrap().is_empty());
        assert_eq!(
            resolved_since(&mut a, t - hour).unwrap()[0]
                .0
                .function
                .as_deref(),
            Some("f")
        );
        // Silenced: a new episode is recorded, its notification held back until the silence
        // ends.
        silence(&mut a, "r", hour).unwrap();
        assert!(silenced(&mut b).unwrap().contains("r"));
        assert_eq!(fired(&mut a, &[f(0.7, t + hour)]).unwrap(), 1);
        assert!(claim_due(&mut a, &r, hour).unwrap().is_empty());
        silence(&mut a, "r", Duration::ZERO).unwrap();
        assert_eq!(claim_due(&mut b, &r, hour).unwrap().len(), 1);
        // A health rule has no function.
        let lag = Fired {
            rule: "lag",
            function: None,
            ..f(40.0, t)
        };
        assert_eq!(fired(&mut a, &[lag]).unwrap(), 1);
        assert_eq!(
            claim_due(&mut a, &["lag".to_owned()], hour).unwrap()[0].function,
            None
        );
    }
}
