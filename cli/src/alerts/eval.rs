//! Evaluating the rules on what the fleet records: readings of the Redis aggregates (and the
//! pipeline's health) taken every interval, the value of each rule's metric over its window
//! from the deltas between the newest reading and the one a window before it, and each alert's
//! state: pending while its condition holds for less than `for`, firing after, resolved when
//! it stops holding.
//!
//! Pure logic on readings given to it, with their times: the command that reads Redis, keeps
//! state in PostgreSQL and delivers notifications builds on it.

use super::rules::{Metric, Rule, Rules};
use fnmetrics::Snapshot;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

/// The pipeline's health in a reading (what `fnmetrics status` shows).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Health {
    /// Entries waiting for stage 2.
    pub(crate) backlog: u64,
    /// The age of the oldest waiting entry, seconds (0 with none waiting).
    pub(crate) drain_lag: f64,
    /// Dead letters held.
    pub(crate) dead_letters: u64,
}

/// One reading of the fleet: when it was taken, every function's fleet-wide aggregates, and the
/// pipeline's health.
#[derive(Clone, Debug)]
pub(crate) struct Reading {
    pub(crate) at: SystemTime,
    pub(crate) fleet: HashMap<String, Snapshot>,
    pub(crate) health: Health,
}

/// An alert: a rule, and the function it is about (`None` for a rule on the pipeline's health).
pub(crate) type AlertKey = (String, Option<String>);

/// Where an alert is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// The condition holds since `since`, not yet for the rule's `for`.
    Pending { since: SystemTime },
    /// Firing since `since` (when the condition started to hold), at `value`.
    Firing { since: SystemTime, value: f64 },
}

/// What changed in a step.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Transition {
    /// The condition held for the rule's `for`: the alert fires.
    Fired {
        key: AlertKey,
        value: f64,
        since: SystemTime,
    },
    /// A firing alert's condition stopped holding.
    Resolved {
        key: AlertKey,
        value: f64,
        since: SystemTime,
    },
}

/// The rules, the readings their windows need, and the alerts' states.
#[derive(Debug)]
pub(crate) struct Evaluator {
    rules: Rules,
    readings: VecDeque<Reading>,
    /// The longest window: readings older than that (but the one just before it) are dropped.
    keep: Duration,
    phases: HashMap<AlertKey, Phase>,
}

impl Evaluator {
    pub(crate) fn new(rules: Rules) -> Evaluator {
        let keep = rules
            .rules
            .iter()
            .map(|r| r.window)
            .max()
            .unwrap_or_default();
        Evaluator {
            rules,
            readings: VecDeque::new(),
            keep,
            phases: HashMap::new(),
        }
    }

    /// The rules evaluated.
    pub(crate) fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Takes alerts that fire already (kept from before a restart): they resolve, rather than
    /// fire again, as their conditions say.
    pub(crate) fn restore(
        &mut self,
        firing: impl IntoIterator<Item = (AlertKey, f64, SystemTime)>,
    ) {
        for (key, value, since) in firing {
            self.phases.insert(key, Phase::Firing { since, value });
        }
    }

    /// The alerts firing now, with their values and since when.
    #[cfg(test)]
    pub(crate) fn firing(&self) -> Vec<(AlertKey, f64, SystemTime)> {
        let mut out: Vec<_> = self
            .phases
            .iter()
            .filter_map(|(k, p)| match p {
                Phase::Firing { since, value } => Some((k.clone(), *value, *since)),
                Phase::Pending { .. } => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Takes `reading` (newer than the last) and returns what fired and what resolved.
    pub(crate) fn step(&mut self, reading: Reading) -> Vec<Transition> {
        let now = reading.at;
        self.readings.push_back(reading);
        // Keep the newest reading at or before `now - keep`: the base of the longest window.
        while self.readings.len() > 2
            && self.readings[1]
                .at
                .checked_add(self.keep)
                .is_some_and(|t| t <= now)
        {
            self.readings.pop_front();
        }
        let mut holding: HashMap<AlertKey, f64> = HashMap::new();
        // Rules with values now: only their alerts can resolve (a first reading has no deltas,
        // which says nothing about what fires).
        let mut evaluated = std::collections::HashSet::new();
        for rule in &self.rules.rules {
            if rule.when.metric.is_health() || self.readings.len() >= 2 {
                evaluated.insert(rule.name.clone());
            }
            for (function, value, calls) in values(&self.readings, rule) {
                let enough = rule.when.metric.is_health() || calls >= rule.min_calls;
                if enough && rule.when.op.holds(value, rule.when.threshold) {
                    holding.insert((rule.name.clone(), function), value);
                }
            }
        }
        let mut out = Vec::new();
        // Alerts whose condition stopped holding: resolved if firing, forgotten if pending.
        let gone: Vec<AlertKey> = self
            .phases
            .keys()
            .filter(|k| evaluated.contains(&k.0) && !holding.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(Phase::Firing { since, value }) = self.phases.remove(&key) {
                out.push(Transition::Resolved { key, value, since });
            }
        }
        for (key, value) in holding {
            let for_ = self
                .rules
                .rules
                .iter()
                .find(|r| r.name == key.0)
                .map_or(Duration::ZERO, |r| r.for_);
            let phase = self
                .phases
                .entry(key.clone())
                .or_insert(Phase::Pending { since: now });
            match *phase {
                Phase::Pending { since } => {
                    let held = now.duration_since(since).unwrap_or_default();
                    if held >= for_ {
                        *phase = Phase::Firing { since, value };
                        out.push(Transition::Fired { key, value, since });
                    }
                }
                Phase::Firing { since, .. } => *phase = Phase::Firing { since, value },
            }
        }
        out.sort_by(|a, b| key_of(a).cmp(key_of(b)));
        out
    }
}

fn key_of(t: &Transition) -> &AlertKey {
    match t {
        Transition::Fired { key, .. } | Transition::Resolved { key, .. } => key,
    }
}

/// The base reading of a window ending at the newest reading: the newest one at or before
/// `window` earlier, or the oldest there is (a window not yet seen whole).
fn base(readings: &VecDeque<Reading>, window: Duration) -> Option<&Reading> {
    let newest = readings.back()?;
    let start = newest.at.checked_sub(window)?;
    readings
        .iter()
        .rev()
        .find(|r| r.at <= start)
        .or_else(|| readings.front())
}

/// Each value of `rule`'s metric over its window: `(function, value, calls in the window)` for
/// each function matching its glob in the newest reading (one `None` row for a health rule).
fn values(readings: &VecDeque<Reading>, rule: &Rule) -> Vec<(Option<String>, f64, u64)> {
    let (Some(now), Some(then)) = (readings.back(), base(readings, rule.window)) else {
        return Vec::new();
    };
    let metric = rule.when.metric;
    if metric.is_health() {
        let h = now.health;
        let v = match metric {
            Metric::Backlog => h.backlog as f64,
            Metric::DrainLag => h.drain_lag,
            _ => h.dead_letters as f64,
        };
        return vec![(None, v, 0)];
    }
    if std::ptr::eq(now, then) {
        // One reading: no deltas yet (a rate of zero now would be no rate at all).
        return Vec::new();
    }
    // The seconds the window covers (at least one interval's worth, never zero).
    let span = now
        .at
        .duration_since(then.at)
        .unwrap_or_default()
        .as_secs_f64()
        .max(1e-3);
    let mut out: Vec<_> = now
        .fleet
        .iter()
        .filter(|(name, _)| rule.functions.matches(name))
        .map(|(name, snap)| {
            let d = snap.delta_since(then.fleet.get(name));
            let secs = |x: Duration| x.as_secs_f64();
            let v = match metric {
                Metric::ErrorRate if d.calls == 0 => 0.0,
                Metric::ErrorRate => d.errors as f64 / d.calls as f64,
                Metric::CallsPerS => d.calls as f64 / span,
                Metric::Errors => d.errors as f64,
                Metric::Panics => d.panics as f64,
                Metric::Dropped => d.dropped_entries as f64,
                Metric::Mean => secs(d.mean()),
                Metric::P50 => secs(d.quantile(0.5)),
                Metric::P99 => secs(d.quantile(0.99)),
                Metric::Backlog | Metric::DrainLag | Metric::DeadLetters => 0.0,
            };
            (Some(name.clone()), v, d.calls)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::parse;
    use std::time::UNIX_EPOCH;

    fn rules(body: &str) -> Rules {
        let text = format!("{body}\n[[notify]]\nkind = \"webhook\"\nurl = \"http://h/\"\n");
        parse(&text).unwrap_or_else(|d| panic!("{d:?}"))
    }

    /// The fleet after `calls` calls of `name`, `errors` of them failed, each 1 ms.
    fn fleet(name: &str, calls: u64, errors: u64) -> HashMap<String, Snapshot> {
        let mut s = Snapshot::new(name);
        for i in 0..calls {
            s.record(1_000_000, i < errors);
        }
        HashMap::from([(name.to_owned(), s)])
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn reading(secs: u64, fleet: HashMap<String, Snapshot>) -> Reading {
        Reading {
            at: at(secs),
            fleet,
            health: Health::default(),
        }
    }

    fn key(rule: &str, f: &str) -> AlertKey {
        (rule.to_owned(), Some(f.to_owned()))
    }

    #[test]
    fn an_error_burst_fires_after_for_and_resolves_once() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"errs\"\nfunctions = \"app::*\"\nwhen = \"error_rate > 0.1\"\n\
             window = \"10s\"\nfor = \"2s\"\nmin_calls = 5\nseverity = \"page\"",
        ));
        // Healthy: 100 calls a second, none failing.
        let (mut calls, mut errors) = (0, 0);
        let mut out = Vec::new();
        for s in 0..10 {
            calls += 100;
            out.extend(e.step(reading(s, fleet("app::pay", calls, errors))));
        }
        assert!(out.is_empty(), "{out:?}");
        // A burst: every call fails from second 10 to 13.
        for s in 10..14 {
            calls += 100;
            errors += 100;
            out.extend(e.step(reading(s, fleet("app::pay", calls, errors))));
        }
        // Over the last 10 s: 0.1 at 10 (not above), 0.2 at 11: pending, firing at 13.
        assert_eq!(out.len(), 1, "{out:?}");
        let Transition::Fired {
            key: k,
            since,
            value,
        } = &out[0]
        else {
            panic!("{out:?}")
        };
        assert_eq!((k, *since), (&key("errs", "app::pay"), at(11)));
        assert!(*value > 0.1, "{value}");
        assert_eq!(e.firing().len(), 1);
        // Recovered: no more errors; once the window no longer holds the burst, resolved once.
        out.clear();
        for s in 14..40 {
            calls += 100;
            out.extend(e.step(reading(s, fleet("app::pay", calls, errors))));
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            matches!(&out[0], Transition::Resolved { key: k, .. } if *k == key("errs", "app::pay"))
        );
        assert!(e.firing().is_empty());
    }

    #[test]
    fn a_restored_alert_resolves_rather_than_firing_again() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"errs\"\nfunctions = \"*\"\nwhen = \"errors > 0\"\n\
             window = \"5s\"\nseverity = \"page\"",
        ));
        e.restore([(key("errs", "f"), 3.0, at(0))]);
        // A first reading says nothing: still firing.
        assert!(e.step(reading(10, fleet("f", 10, 3))).is_empty());
        assert_eq!(e.firing().len(), 1);
        // Errors go on: still firing, not fired again.
        assert!(e.step(reading(11, fleet("f", 20, 5))).is_empty());
        // None in the window any more: resolved.
        let mut out = Vec::new();
        for s in 12..20 {
            out.extend(e.step(reading(s, fleet("f", 20 + s, 5))));
        }
        assert!(matches!(&out[..], [Transition::Resolved { .. }]), "{out:?}");
    }

    #[test]
    fn min_calls_keeps_a_rare_failure_quiet() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"errs\"\nfunctions = \"*\"\nwhen = \"errors >= 1\"\n\
             window = \"1m\"\nmin_calls = 20\nseverity = \"page\"",
        ));
        assert!(e.step(reading(0, fleet("rare", 1, 0))).is_empty());
        assert!(e.step(reading(1, fleet("rare", 2, 1))).is_empty());
        // With calls enough, the same failure fires at once (no `for`).
        let out = e.step(reading(2, fleet("rare", 40, 2)));
        assert!(matches!(&out[..], [Transition::Fired { .. }]), "{out:?}");
    }

    #[test]
    fn a_function_that_stops_being_called_fires_the_absence_rule() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"quiet\"\nfunctions = \"app::tick\"\nwhen = \"calls_per_s < 0.5\"\n\
             window = \"5s\"\nseverity = \"ticket\"",
        ));
        let mut out = Vec::new();
        for s in 0..10 {
            out.extend(e.step(reading(s, fleet("app::tick", s + 1, 0))));
        }
        assert!(out.is_empty(), "{out:?}");
        // No calls from second 10 on: below 0.5/s once the 5 s window holds two calls or less.
        for s in 10..20 {
            out.extend(e.step(reading(s, fleet("app::tick", 10, 0))));
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            matches!(&out[0], Transition::Fired { key: k, .. } if *k == key("quiet", "app::tick"))
        );
    }

    #[test]
    fn health_rules_read_the_pipeline() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"lag\"\nwhen = \"drain_lag > 30s\"\nwindow = \"1m\"\nseverity = \"page\"",
        ));
        let mut r = reading(0, HashMap::new());
        r.health.drain_lag = 5.0;
        assert!(e.step(r.clone()).is_empty());
        r.at = at(1);
        r.health.drain_lag = 45.0;
        let out = e.step(r);
        assert!(
            matches!(&out[..], [Transition::Fired { key, value, .. }] if key.1.is_none() && *value == 45.0),
            "{out:?}"
        );
    }

    #[test]
    fn quantiles_and_means_come_from_the_window_s_histogram() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"slow\"\nfunctions = \"app::q\"\nwhen = \"p99 > 5ms\"\n\
             window = \"10s\"\nseverity = \"page\"",
        ));
        let mut s = Snapshot::new("app::q");
        for _ in 0..1_000 {
            s.record(1_000_000, false);
        }
        assert!(e
            .step(reading(
                0,
                HashMap::from([("app::q".to_owned(), s.clone())])
            ))
            .is_empty());
        // Slow calls now: 10 ms each.
        for _ in 0..1_000 {
            s.record(10_000_000, false);
        }
        let out = e.step(reading(1, HashMap::from([("app::q".to_owned(), s)])));
        let [Transition::Fired { value, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        assert!((*value - 0.010).abs() < 0.0002, "{value}");
    }
}
