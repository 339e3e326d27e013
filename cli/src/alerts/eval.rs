//! Evaluating the rules on what the fleet records: readings of the Redis aggregates (and the
//! pipeline's health) taken every interval, the value of each rule's metric over its window
//! from the deltas between the newest reading and the one a window before it, and each alert's
//! state: pending while its condition holds for less than `for`, firing after, resolved when
//! it stops holding.
//!
//! Built to follow a large fleet every second at little cost (`cargo bench -p fnmetrics-cli
//! --bench alerts`):
//! - a reading need only hold the functions that changed since the one before (Redis' change
//!   log, `RedisReader::changed`); each function keeps the values it had, each stamped with the
//!   reading it was first seen at, so one that does not change costs one entry;
//! - each metric's value over each window is kept per function and computed again only when
//!   it may have moved: the function has a new entry, or the window's base passed one of its
//!   entries; the rules of one metric and window share it;
//! - a rule looks again only at the functions whose values moved and at its pending alerts
//!   (every function it matches for rates, which move with the span, after a complete reading,
//!   and when a whole window is first seen);
//! - readings older than 16 intervals are thinned, so that each is at least 1/16 of its age
//!   from the next: a window's base is the newest reading at or before its start, at most 1/16
//!   of the window earlier (the rates divide by the span actually covered).
//!
//! Right after its first reading, an evaluator takes what PostgreSQL holds of the longest
//! window before it (`backfill`: minutes, or hours past 2 h), so that its windows are whole at
//! once rather than after a window's time; a firing alert still resolves only over a window of
//! its own readings (the newest calls before it started may not be drained yet).
//!
//! Pure logic on readings given to it, with their times: the command that reads Redis, keeps
//! state in PostgreSQL and delivers notifications builds on it.

use super::rules::{Metric, Rules};
use fnmetrics::histogram::{bucket_low, bucket_width};
use fnmetrics::{Histogram, Snapshot};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::time::{Duration, SystemTime};

/// The pipeline's health in a reading (what `fnmetrics status` shows).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct PipelineHealth {
    /// Entries waiting for stage 2.
    pub(crate) backlog: u64,
    /// The age of the oldest waiting entry, seconds (0 with none waiting).
    pub(crate) drain_lag: f64,
    /// Dead letters held.
    pub(crate) dead_letters: u64,
}

/// One reading of the fleet: when it was taken, fleet-wide aggregates, and the pipeline's
/// health.
#[derive(Clone, Debug)]
pub(crate) struct Reading {
    pub(crate) at: SystemTime,
    /// The functions read: every one (`complete`), or at least those that changed since the
    /// reading before.
    pub(crate) fleet: Vec<Snapshot>,
    /// Whether `fleet` holds every function: those it lacks are gone (forgotten).
    pub(crate) complete: bool,
    pub(crate) health: PipelineHealth,
}

/// What PostgreSQL holds of a function over one step of time before the first reading (a
/// point of a series).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Past {
    pub(crate) start: SystemTime,
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) mean: Duration,
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

/// A function as seen so far.
#[derive(Debug)]
struct Function {
    name: String,
    /// The aggregates it had, oldest first, each with the reading it was first seen at (and
    /// held until the next entry's); the name left empty. Entries no kept reading needs are
    /// dropped.
    seen: VecDeque<(SystemTime, Snapshot)>,
    /// In the newest reading (a function forgotten in Redis is not).
    present: bool,
}

/// The rules, the readings their windows need, and the alerts' states.
#[derive(Debug)]
pub(crate) struct Evaluator {
    rules: Rules,
    /// Whether any rule needs histograms (p50, p99): without, they are not kept.
    quantiles: bool,
    /// The times of the readings kept, oldest first (thinned with age, see the module), and
    /// of the times PostgreSQL filled in before the first ([`backfill`](Self::backfill)).
    times: VecDeque<SystemTime>,
    /// When the first reading was taken.
    first: Option<SystemTime>,
    /// The longest window.
    keep: Duration,
    functions: Vec<Function>,
    index: HashMap<String, usize>,
    /// Per rule, the functions (indexes) its glob matches.
    members: Vec<Vec<usize>>,
    /// Per rule, each function's alert (by index).
    phases: Vec<Vec<Option<Phase>>>,
    /// Per rule, the alert of a rule on the pipeline's health.
    health_phases: Vec<Option<Phase>>,
    /// Per window, each function's value of each metric over it (rules share them).
    memo: Vec<Memo>,
    /// A buffer for pruning.
    keep_buffer: Vec<bool>,
    /// Functions with an entry added in this step.
    pushed: Vec<usize>,
    /// The functions with an entry at each reading's time.
    entries_at: BTreeMap<SystemTime, Vec<usize>>,
    /// Per rule, whether each function is a member.
    is_member: Vec<Vec<bool>>,
    /// Per rule, the functions whose alerts are pending.
    pending: Vec<BTreeSet<usize>>,
    /// Per rule, whether the next step looks at every function it matches.
    full: Vec<bool>,
    /// Per rule, whether the last step saw a whole window.
    was_whole: Vec<bool>,
    /// Per rule, functions its restored alerts are about that its glob does not match.
    orphans: Vec<Vec<usize>>,
    /// Per rule, its window's index in `memo` and its metric's among the window's.
    group: Vec<(usize, usize)>,
}

/// The values of the metrics of one window, per function (by index): the base entry is
/// found once for all of them.
#[derive(Debug)]
struct Memo {
    window: Duration,
    metrics: Vec<Metric>,
    /// Function `i`'s value of metric `k` at `i * metrics.len() + k`.
    slots: Vec<WindowValue>,
    /// Whether a rule of this window matches each function.
    wanted: Vec<bool>,
    /// The base the slots are computed from (`None`: not yet).
    base: Option<SystemTime>,
    /// The functions whose slots were computed in the last step.
    fresh: Vec<usize>,
}

/// A function's value over a window.
#[derive(Clone, Copy, Debug, Default)]
struct WindowValue {
    /// The metric's value (calls per second: the calls, divided by the span when read).
    value: f64,
    /// The calls in the window.
    calls: u64,
}

/// Readings are thinned so that each is at least this fraction of its age from the next.
const THIN: u32 = 16;

impl Evaluator {
    pub(crate) fn new(rules: Rules) -> Evaluator {
        let keep = rules
            .rules
            .iter()
            .map(|r| r.window)
            .max()
            .unwrap_or_default();
        let quantiles = rules
            .rules
            .iter()
            .any(|r| matches!(r.when.metric, Metric::P50 | Metric::P99));
        let n = rules.rules.len();
        let mut memo: Vec<Memo> = Vec::new();
        let mut group = Vec::with_capacity(n);
        for rule in &rules.rules {
            let (metric, window) = (rule.when.metric, rule.window);
            if metric.is_health() {
                group.push((usize::MAX, 0));
                continue;
            }
            let w = memo
                .iter()
                .position(|m| m.window == window)
                .unwrap_or_else(|| {
                    memo.push(Memo {
                        window,
                        metrics: Vec::new(),
                        slots: Vec::new(),
                        wanted: Vec::new(),
                        base: None,
                        fresh: Vec::new(),
                    });
                    memo.len() - 1
                });
            let m = &mut memo[w];
            let k = m
                .metrics
                .iter()
                .position(|&x| x == metric)
                .unwrap_or_else(|| {
                    m.metrics.push(metric);
                    m.metrics.len() - 1
                });
            group.push((w, k));
        }
        Evaluator {
            rules,
            quantiles,
            times: VecDeque::new(),
            first: None,
            keep,
            functions: Vec::new(),
            index: HashMap::new(),
            members: vec![Vec::new(); n],
            phases: vec![Vec::new(); n],
            health_phases: vec![None; n],
            memo,
            keep_buffer: Vec::new(),
            pushed: Vec::new(),
            entries_at: BTreeMap::new(),
            is_member: vec![Vec::new(); n],
            pending: vec![BTreeSet::new(); n],
            full: vec![true; n],
            was_whole: vec![false; n],
            orphans: vec![Vec::new(); n],
            group,
        }
    }

    /// The rules evaluated.
    pub(crate) fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The index of function `name`, known from now on (not present until a reading has it).
    fn intern(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.functions.len();
        self.functions.push(Function {
            name: name.to_owned(),
            seen: VecDeque::new(),
            present: false,
        });
        self.index.insert(name.to_owned(), i);
        for m in &mut self.memo {
            m.slots
                .extend(std::iter::repeat_n(WindowValue::default(), m.metrics.len()));
            m.wanted.push(false);
        }
        for (r, rule) in self.rules.rules.iter().enumerate() {
            self.phases[r].push(None);
            let member = !rule.when.metric.is_health() && rule.functions.matches(name);
            if member {
                self.members[r].push(i);
                self.memo[self.group[r].0].wanted[i] = true;
            }
            self.is_member[r].push(member);
        }
        i
    }

    /// Takes alerts that fire already (kept from before a restart): they resolve, rather than
    /// fire again, as their conditions say over a whole window seen from now on.
    pub(crate) fn restore(
        &mut self,
        firing: impl IntoIterator<Item = (AlertKey, f64, SystemTime)>,
    ) {
        for ((rule, function), value, since) in firing {
            let Some(r) = self.rules.rules.iter().position(|x| x.name == rule) else {
                continue;
            };
            let phase = Some(Phase::Firing { since, value });
            match function {
                None => self.health_phases[r] = phase,
                Some(f) => {
                    let i = self.intern(&f);
                    self.phases[r][i] = phase;
                    // Fired under another glob (the rules changed): resolved at the first step
                    // that judges the rule.
                    if !self.is_member[r][i] {
                        self.orphans[r].push(i);
                    }
                }
            }
        }
    }

    /// The alerts firing now, with their values and since when.
    #[cfg(test)]
    pub(crate) fn firing(&self) -> Vec<(AlertKey, f64, SystemTime)> {
        let mut out = Vec::new();
        for (r, rule) in self.rules.rules.iter().enumerate() {
            let of = |p: &Option<Phase>, f: Option<String>| match p {
                Some(Phase::Firing { since, value }) => {
                    Some(((rule.name.clone(), f), *value, *since))
                }
                _ => None,
            };
            out.extend(of(&self.health_phases[r], None));
            for (i, p) in self.phases[r].iter().enumerate() {
                out.extend(of(p, Some(self.functions[i].name.clone())));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Takes `reading` (newer than the last) and returns what fired and what resolved.
    pub(crate) fn step(&mut self, reading: Reading) -> Vec<Transition> {
        let now = reading.at;
        self.first.get_or_insert(now);
        self.times.push_back(now);
        self.thin(now);
        if reading.complete {
            for f in &mut self.functions {
                f.present = false;
            }
        }
        let oldest = self.times[0];
        for mut snap in reading.fleet {
            let i = self.intern(&snap.name);
            snap.name = String::new();
            if self.quantiles {
                // Kept a window long: no room to spare.
                snap.histogram_mut().shrink_to_fit();
            } else {
                *snap.histogram_mut() = Histogram::new();
            }
            let f = &mut self.functions[i];
            f.present = true;
            if f.seen.back().is_none_or(|(_, last)| *last != snap) {
                f.seen.push_back((now, snap));
                // Never more entries than readings kept (one needed each), and a few.
                if f.seen.len() > self.times.len() + 8 {
                    prune(f, &self.times, &mut self.keep_buffer);
                }
                self.pushed.push(i);
            }
            // Entries held only before the oldest reading kept are not needed.
            while f.seen.len() > 1 && f.seen[1].0 <= oldest {
                f.seen.pop_front();
            }
        }
        if !self.pushed.is_empty() {
            self.entries_at.insert(now, self.pushed.clone());
        }

        let mut out = Vec::new();
        let pushed = std::mem::take(&mut self.pushed);
        // A first reading has no deltas: it says nothing about what fires.
        let deltas = self.times.len() >= 2;
        if deltas {
            self.values(&pushed);
        }
        if reading.complete {
            // Functions may have left: every rule looks at every function.
            self.full.iter_mut().for_each(|f| *f = true);
        }
        for (r, rule) in self.rules.rules.iter().enumerate() {
            let metric = rule.when.metric;
            let (op, threshold, for_) = (rule.when.op, rule.when.threshold, rule.for_);
            if metric.is_health() {
                let h = reading.health;
                let v = match metric {
                    Metric::Backlog => h.backlog as f64,
                    Metric::DrainLag => h.drain_lag,
                    _ => h.dead_letters as f64,
                };
                let key = || (rule.name.clone(), None);
                advance(
                    &mut self.health_phases[r],
                    op.holds(v, threshold),
                    v,
                    now,
                    for_,
                    key,
                    &mut out,
                );
                continue;
            }
            if !deltas {
                continue;
            }
            for i in std::mem::take(&mut self.orphans[r]) {
                if let Some(Phase::Firing { since, value }) = self.phases[r][i].take() {
                    let key = (rule.name.clone(), Some(self.functions[i].name.clone()));
                    out.push(Transition::Resolved { key, value, since });
                }
            }
            let (w, k) = self.group[r];
            let memo = &self.memo[w];
            let stride = memo.metrics.len();
            let base = memo.base.unwrap_or(now);
            // Whether this evaluator's own readings cover the whole window (see below).
            let whole = now
                .checked_sub(rule.window)
                .zip(self.first)
                .is_some_and(|(start, first)| first <= start);
            // The seconds the window covers (at least one interval's worth, never zero).
            let span = now
                .duration_since(base)
                .unwrap_or_default()
                .as_secs_f64()
                .max(1e-3);
            // Every function the rule matches, or only those whose values moved and those
            // pending (their `for` runs): a rate moves with the span, a whole window just seen
            // lets firing alerts resolve.
            let todo: Vec<usize> =
                if self.full[r] || metric == Metric::CallsPerS || (whole && !self.was_whole[r]) {
                    self.members[r].clone()
                } else {
                    let mut todo: Vec<usize> = memo
                        .fresh
                        .iter()
                        .copied()
                        .filter(|&i| self.is_member[r][i])
                        .chain(self.pending[r].iter().copied())
                        .collect();
                    todo.sort_unstable();
                    todo.dedup();
                    todo
                };
            self.full[r] = false;
            self.was_whole[r] = whole;
            for i in todo {
                let f = &self.functions[i];
                let slot = memo.slots[i * stride + k];
                let value = match metric {
                    Metric::CallsPerS => slot.calls as f64 / span,
                    _ => slot.value,
                };
                let holds = f.present && slot.calls >= rule.min_calls && op.holds(value, threshold);
                let phase = &mut self.phases[r][i];
                // A firing alert resolves over a whole window of this evaluator's readings
                // only: over a part of one (an evaluator that just started or restarted) the
                // calls before its first reading are unknown, or known from PostgreSQL but for
                // the newest, not drained yet, and the condition may hold over the whole. A
                // function forgotten in Redis is gone at once.
                if !holds && !whole && f.present && matches!(phase, Some(Phase::Firing { .. })) {
                    continue;
                }
                let key = || (rule.name.clone(), Some(f.name.clone()));
                advance(phase, holds, value, now, for_, key, &mut out);
                if matches!(phase, Some(Phase::Pending { .. })) {
                    self.pending[r].insert(i);
                } else {
                    self.pending[r].remove(&i);
                }
            }
        }
        out.sort_by(|a, b| key_of(a).cmp(key_of(b)));
        out
    }

    /// Computes again the values of each metric and window that may have moved since the last
    /// step: of the functions with a new entry (`pushed`), and of those with an entry between
    /// the window's last base and its new one (the base entry changed). The rest keep theirs.
    fn values(&mut self, pushed: &[usize]) {
        let times = &self.times;
        for m in &mut self.memo {
            let base = base_time(times, m.window);
            let mut fresh: Vec<usize> = match m.base {
                None => (0..self.functions.len()).collect(),
                Some(old) => {
                    let (lo, hi) = if old <= base {
                        (old, base)
                    } else {
                        (base, old)
                    };
                    let moved = self
                        .entries_at
                        .range((Bound::Excluded(lo), Bound::Included(hi)))
                        .flat_map(|(_, ids)| ids.iter().copied());
                    pushed.iter().copied().chain(moved).collect()
                }
            };
            fresh.sort_unstable();
            fresh.dedup();
            fresh.retain(|&i| m.wanted[i]);
            let stride = m.metrics.len();
            for &i in &fresh {
                let slots = &mut m.slots[i * stride..(i + 1) * stride];
                slots_of(&self.functions[i], &m.metrics, base, slots);
            }
            m.base = Some(base);
            m.fresh = fresh;
        }
        // Entries at or before the oldest reading kept are never between two bases again.
        let oldest = self.times[0];
        self.entries_at = self.entries_at.split_off(&oldest);
    }

    /// The longest window of a rule on functions, and the functions present that such rules
    /// match: what [`backfill`](Self::backfill) needs from PostgreSQL.
    pub(crate) fn history_wanted(&self) -> Option<(Duration, Vec<String>)> {
        let window = self
            .rules
            .rules
            .iter()
            .filter(|r| !r.when.metric.is_health())
            .map(|r| r.window)
            .max()?;
        let mut matched = vec![false; self.functions.len()];
        for &i in self.members.iter().flatten() {
            matched[i] = true;
        }
        let names = self
            .functions
            .iter()
            .zip(matched)
            .filter(|(f, m)| f.present && *m)
            .map(|(f, _)| f.name.clone())
            .collect();
        Some((window, names))
    }

    /// Makes windows reach back before the first reading (this evaluator just started and has
    /// seen none of them whole) with what PostgreSQL holds: `series` of `step`-long points per
    /// function from `from` on, up to the first reading. A window then counts the calls,
    /// errors and call times of the points that end after its start (whole points: up to one
    /// step more than the window), and what this evaluator read since; quantiles (p50, p99)
    /// cover what it read. Only right after the first step; functions with no points had no
    /// calls then.
    pub(crate) fn backfill(
        &mut self,
        from: SystemTime,
        step: Duration,
        series: Vec<(String, Vec<Past>)>,
    ) {
        if self.times.len() != 1 || step.is_zero() {
            return;
        }
        let first = self.times[0];
        let mut grid = Vec::new();
        let mut t = from;
        while t < first {
            grid.push(t);
            t += step;
        }
        let Some(&start) = grid.first() else {
            return;
        };
        let mut points: HashMap<String, Vec<Past>> = series.into_iter().collect();
        for (i, f) in self.functions.iter_mut().enumerate() {
            if !f.present {
                continue;
            }
            let Some((_, now)) = f.seen.front().cloned() else {
                continue;
            };
            let mut mine = points.remove(&f.name).unwrap_or_default();
            mine.retain(|p| p.calls > 0 && p.start >= start && p.start < first);
            mine.sort_by_key(|p| p.start);
            // The aggregates before the first point: the first reading's, less every point.
            let mut v = now.clone();
            for p in &mine {
                add_point(&mut v, p, false);
            }
            let mut seen = VecDeque::with_capacity(mine.len() + 2);
            seen.push_back((start, v.clone()));
            for p in &mine {
                add_point(&mut v, p, true);
                let end = (p.start + step).min(first);
                match seen.back_mut() {
                    // Two points ending at once (never, on a grid; kept whole anyway).
                    Some(last) if last.0 >= end => last.1 = v.clone(),
                    _ => seen.push_back((end, v.clone())),
                }
            }
            // The first reading's own value, unless the last point ended on it.
            if seen.back().is_some_and(|(t, x)| *t < first && *x != now) {
                seen.push_back((first, now));
            }
            for (t, _) in &seen {
                self.entries_at.entry(*t).or_default().push(i);
            }
            f.seen = seen;
        }
        for (k, t) in grid.into_iter().enumerate() {
            self.times.insert(k, t);
        }
        for m in &mut self.memo {
            m.base = None;
        }
    }

    /// Drops the readings no window needs: those before the newest one at or before the
    /// longest window's start, and, past 16 of them, one of each pair closer together than
    /// 1/16 of its age.
    fn thin(&mut self, now: SystemTime) {
        let t = &mut self.times;
        while t.len() > 2 && t[1].checked_add(self.keep).is_some_and(|x| x <= now) {
            t.pop_front();
        }
        let age = |x: SystemTime| now.duration_since(x).unwrap_or_default();
        let mut i = 1;
        while i + 1 < t.len() {
            let gap = t[i + 1].duration_since(t[i - 1]).unwrap_or_default();
            if gap <= age(t[i]) / THIN {
                t.remove(i);
            } else {
                i += 1;
            }
        }
    }
}

/// Drops the entries of `f` that no kept reading needs: an entry is needed while a reading of
/// `times` falls between its time and the next entry's (and the newest always). `keep` is a
/// buffer.
fn prune(f: &mut Function, times: &VecDeque<SystemTime>, keep: &mut Vec<bool>) {
    keep.clear();
    let n = f.seen.len();
    // Both sorted: walk the readings beside the entries.
    let mut r = 0;
    for j in 0..n {
        while r < times.len() && times[r] < f.seen[j].0 {
            r += 1;
        }
        let needed = j + 1 == n || times.get(r).is_some_and(|t| *t < f.seen[j + 1].0);
        keep.push(needed);
    }
    let mut j = 0;
    f.seen.retain(|_| {
        j += 1;
        keep[j - 1]
    });
}

/// The index of the newest entry at or before `base` in `seen` (sorted by time). Entries
/// before the longest window's base are dropped, so for it the answer is at the front: a few
/// steps from there, then a binary search.
fn base_entry(seen: &VecDeque<(SystemTime, Snapshot)>, base: SystemTime) -> Option<usize> {
    let mut j = None;
    for (k, (t, _)) in seen.iter().enumerate().take(8) {
        if *t > base {
            return j;
        }
        j = Some(k);
    }
    seen.partition_point(|(t, _)| *t <= base).checked_sub(1)
}

/// `f`'s values of `metrics` over a window from `base` to its newest entry, into `out`
/// (calls per second: the calls, the span applied when read): zeros when it has no entry after
/// `base`.
fn slots_of(f: &Function, metrics: &[Metric], base: SystemTime, out: &mut [WindowValue]) {
    match f.seen.back() {
        Some((newest_at, newest)) if *newest_at > base => {
            let then = base_entry(&f.seen, base).map(|a| &f.seen[a].1);
            for (slot, &metric) in out.iter_mut().zip(metrics) {
                let (value, calls) = value_of(metric, newest, then, 1.0);
                *slot = WindowValue { value, calls };
            }
        }
        _ => out.fill(WindowValue::default()),
    }
}

/// Moves an alert on: `holds` says whether its condition holds now, at `value`.
fn advance(
    phase: &mut Option<Phase>,
    holds: bool,
    value: f64,
    now: SystemTime,
    for_: Duration,
    key: impl FnOnce() -> AlertKey,
    out: &mut Vec<Transition>,
) {
    match (*phase, holds) {
        (None, false) => {}
        // Stopped holding: resolved if firing, forgotten if pending.
        (Some(Phase::Pending { .. }), false) => *phase = None,
        (Some(Phase::Firing { since, value }), false) => {
            *phase = None;
            out.push(Transition::Resolved {
                key: key(),
                value,
                since,
            });
        }
        (None, true) | (Some(Phase::Pending { .. }), true) => {
            let since = match *phase {
                Some(Phase::Pending { since }) => since,
                _ => now,
            };
            if now.duration_since(since).unwrap_or_default() >= for_ {
                *phase = Some(Phase::Firing { since, value });
                out.push(Transition::Fired {
                    key: key(),
                    value,
                    since,
                });
            } else {
                *phase = Some(Phase::Pending { since });
            }
        }
        (Some(Phase::Firing { since, .. }), true) => {
            *phase = Some(Phase::Firing { since, value });
        }
    }
}

fn key_of(t: &Transition) -> &AlertKey {
    match t {
        Transition::Fired { key, .. } | Transition::Resolved { key, .. } => key,
    }
}

/// The base of a window ending at the newest reading: the newest reading at or before its
/// start, or the oldest there is (a window not yet seen whole).
fn base_time(times: &VecDeque<SystemTime>, window: Duration) -> SystemTime {
    let newest = times[times.len() - 1];
    let start = newest.checked_sub(window).unwrap_or(times[0]);
    let at = times.partition_point(|t| *t <= start);
    times[at.saturating_sub(1)]
}

/// Adds the calls, errors and call time of `p` to `v` (`add`), or takes them away.
fn add_point(v: &mut Snapshot, p: &Past, add: bool) {
    let total = u64::try_from(p.mean.as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_mul(p.calls);
    let f = |x: &mut u64, d: u64| {
        *x = if add {
            x.saturating_add(d)
        } else {
            x.saturating_sub(d)
        }
    };
    f(&mut v.calls, p.calls);
    f(&mut v.errors, p.errors);
    f(&mut v.timed, p.calls);
    f(&mut v.total_ns, total);
}

/// What a sum gained from `before` to `now` (a sum that went down was reset and counts from
/// zero again).
fn gained(before: u64, now: u64) -> u64 {
    if before <= now {
        now - before
    } else {
        now
    }
}

/// `metric` over a window from `then` (nothing before the window: `None`) to `now`, `span`
/// seconds long: `(value, calls in the window)`.
fn value_of(metric: Metric, now: &Snapshot, then: Option<&Snapshot>, span: f64) -> (f64, u64) {
    let d = |f: fn(&Snapshot) -> u64| gained(then.map_or(0, f), f(now));
    let calls = d(|s| s.calls);
    let v = match metric {
        Metric::ErrorRate if calls == 0 => 0.0,
        Metric::ErrorRate => d(|s| s.errors) as f64 / calls as f64,
        Metric::CallsPerS => calls as f64 / span,
        Metric::Errors => d(|s| s.errors) as f64,
        Metric::Panics => d(|s| s.panics) as f64,
        Metric::Dropped => d(|s| s.dropped_entries) as f64,
        Metric::Mean => match d(|s| s.timed) {
            0 => 0.0,
            timed => d(|s| s.total_ns) as f64 / timed as f64 / 1e9,
        },
        Metric::P50 => quantile_between(then.map(Snapshot::histogram), now.histogram(), 0.5),
        Metric::P99 => quantile_between(then.map(Snapshot::histogram), now.histogram(), 0.99),
        Metric::Backlog | Metric::DrainLag | Metric::DeadLetters => 0.0,
    };
    (v, calls)
}

/// Quantile `q`, in seconds, of what `now` gained over `then`, bucket by bucket, without
/// building the difference (0 when nothing was gained): as `Histogram::quantile` of it.
fn quantile_between(then: Option<&Histogram>, now: &Histogram, q: f64) -> f64 {
    // Both are sorted by bucket: walk `then` beside `now`.
    let gains = || {
        let mut before = then.into_iter().flat_map(Histogram::nonzero).peekable();
        now.nonzero().map(move |(i, c)| {
            while before.next_if(|&(j, _)| j < i).is_some() {}
            let was = before.next_if(|&(j, _)| j == i).map_or(0, |(_, c)| c);
            (i, gained(was, c))
        })
    };
    let total: u64 = gains().map(|(_, c)| c).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, c) in gains() {
        seen += c;
        if seen >= rank {
            return (bucket_low(i) + (bucket_width(i) - 1) / 2) as f64 / 1e9;
        }
    }
    0.0
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
    fn fleet(name: &str, calls: u64, errors: u64) -> Vec<Snapshot> {
        let mut s = Snapshot::new(name);
        for i in 0..calls {
            s.record(1_000_000, i < errors);
        }
        vec![s]
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn reading(secs: u64, fleet: Vec<Snapshot>) -> Reading {
        Reading {
            at: at(secs),
            fleet,
            complete: true,
            health: PipelineHealth::default(),
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

    /// A restarted evaluator resolved a firing alert on its first two readings (no calls in
    /// between: under `min_calls`), then fired it again on the next failures of the same
    /// window: a second firing notification for one episode.
    #[test]
    fn a_restart_resolved_on_a_part_of_the_window_and_fired_again() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"errs\"\nfunctions = \"*\"\nwhen = \"error_rate > 0.2\"\n\
             window = \"30s\"\nmin_calls = 5\nseverity = \"page\"",
        ));
        e.restore([(key("errs", "f"), 0.5, at(0))]);
        let mut out = e.step(reading(10, fleet("f", 100, 50)));
        // No calls for a second: too few to judge, but only a part of the window is seen.
        out.extend(e.step(reading(11, fleet("f", 100, 50))));
        // Failures again, in the same window: the same episode, still firing.
        out.extend(e.step(reading(12, fleet("f", 140, 80))));
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(e.firing().len(), 1);
        // No more calls: resolved once a whole window holds no failure (second 42 or a little
        // later: the readings kept are thinned with age).
        for s in 13..60 {
            let step = e.step(reading(s, fleet("f", 140, 80)));
            if !step.is_empty() {
                assert!(s >= 42, "{s}: {step:?}");
            }
            out.extend(step);
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
        let mut r = reading(0, Vec::new());
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
        assert!(e.step(reading(0, vec![s.clone()])).is_empty());
        // Slow calls now: 10 ms each.
        for _ in 0..1_000 {
            s.record(10_000_000, false);
        }
        let out = e.step(reading(1, vec![s]));
        let [Transition::Fired { value, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        assert!((*value - 0.010).abs() < 0.0002, "{value}");
    }

    #[test]
    fn readings_of_what_changed_keep_the_rest_as_it_was() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"quiet\"\nfunctions = \"app::*\"\nwhen = \"calls_per_s < 0.5\"\n\
             window = \"5s\"\nseverity = \"ticket\"\n\
             [[rule]]\nname = \"errs\"\nfunctions = \"app::*\"\nwhen = \"errors > 0\"\n\
             window = \"5s\"\nseverity = \"page\"",
        ));
        let mut all = fleet("app::busy", 1, 0);
        all.extend(fleet("app::idle", 5, 0));
        assert!(e.step(reading(0, all)).is_empty());
        // From now on only app::busy changes, and only it is in the readings.
        let mut out = Vec::new();
        for s in 1..10 {
            let mut r = reading(s, fleet("app::busy", 1 + s, 0));
            r.complete = false;
            out.extend(e.step(r));
        }
        // app::idle had no calls: the absence rule fires for it alone, at once (no `for`).
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            matches!(&out[0], Transition::Fired { key: k, .. } if *k == key("quiet", "app::idle"))
        );
        // An error of app::idle comes in a reading of what changed: it fires, and the
        // absence resolves.
        let mut r = reading(10, fleet("app::idle", 15, 1));
        r.complete = false;
        let out = e.step(r);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.contains(&Transition::Resolved {
            key: key("quiet", "app::idle"),
            value: 0.0,
            since: at(1),
        }));
        assert!(matches!(&out[0], Transition::Fired { key: k, value, .. }
            if *k == key("errs", "app::idle") && *value == 1.0));
    }

    #[test]
    fn a_forgotten_function_s_alert_resolves() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"errs\"\nfunctions = \"*\"\nwhen = \"errors > 0\"\n\
             window = \"1m\"\nseverity = \"page\"",
        ));
        e.step(reading(0, fleet("f", 1, 0)));
        let out = e.step(reading(1, fleet("f", 2, 1)));
        assert!(matches!(&out[..], [Transition::Fired { .. }]), "{out:?}");
        // A complete reading without it: it is gone.
        let out = e.step(reading(2, Vec::new()));
        assert!(matches!(&out[..], [Transition::Resolved { .. }]), "{out:?}");
    }

    #[test]
    fn long_windows_keep_a_few_readings_and_exact_rates() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"slow\"\nfunctions = \"*\"\nwhen = \"calls_per_s < 9.5\"\n\
             window = \"1h\"\nseverity = \"page\"",
        ));
        let calls = |n: u64| {
            let mut f = Snapshot::new("f");
            f.calls = n;
            vec![f]
        };
        // Two hours of readings a second, 10 calls a second: never below 9.5 a second.
        for s in 0..7_200 {
            assert!(e.step(reading(s, calls(10 * s))).is_empty(), "{s}");
        }
        // 16 readings a doubling of age (ln 2 apart): a hundred and some, not 3 600.
        assert!(e.times.len() < 150, "{} readings kept", e.times.len());
        assert!(
            e.functions[0].seen.len() < 220,
            "{}",
            e.functions[0].seen.len()
        );
        let base = base_time(&e.times, Duration::from_secs(3_600));
        let start = at(7_199) - Duration::from_secs(3_600);
        assert!(base <= start && start.duration_since(base).unwrap() <= Duration::from_secs(225));
        // Calls stop: the rate over the hour falls below 9.5 a second after 1/20 of it.
        let mut fired = None;
        for s in 7_200..9_000 {
            if !e.step(reading(s, calls(10 * 7_199))).is_empty() {
                fired = Some(s);
                break;
            }
        }
        let s = fired.expect("the rule fires");
        assert!((7_380..7_420).contains(&s), "fired at {s}");
    }

    #[test]
    fn quantiles_between_two_histograms_are_those_of_their_difference() {
        let (mut before, mut now) = (Snapshot::new("f"), Snapshot::new("f"));
        for i in 0..500u64 {
            before.record(1_000 + i * 977, false);
            now.record(1_000 + i * 977, false);
        }
        for i in 0..300u64 {
            now.record(50_000 + i * 3_331, false);
        }
        let d = now.delta_since(Some(&before));
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            let want = d.histogram().quantile(q).as_secs_f64();
            let got = quantile_between(Some(before.histogram()), now.histogram(), q);
            assert!((got - want).abs() < 1e-12, "q {q}: {got} != {want}");
        }
        assert_eq!(
            quantile_between(Some(now.histogram()), now.histogram(), 0.5),
            0.0
        );
    }

    #[test]
    fn windows_reach_back_before_the_first_reading_with_what_postgres_holds() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"quiet\"\nfunctions = \"app::*\"\nwhen = \"calls_per_s < 0.005\"\n\
             window = \"10m\"\nseverity = \"ticket\"",
        ));
        let (wanted, names) = (Duration::from_secs(600), vec!["app::f", "app::g"]);
        let mut first = fleet("app::f", 100, 0);
        first.extend(fleet("app::g", 100, 0));
        assert!(e.step(reading(1_030, first)).is_empty());
        let (window, mut present) = e.history_wanted().unwrap();
        present.sort();
        assert_eq!(
            (window, present),
            (wanted, names.iter().map(|n| n.to_string()).collect())
        );
        // PostgreSQL: app::f had 3 calls in each of two minutes before, app::g none.
        let past = |start: u64| Past {
            start: at(start),
            calls: 3,
            errors: 0,
            mean: Duration::from_millis(1),
        };
        e.backfill(
            at(420),
            Duration::from_secs(60),
            vec![("app::f".to_owned(), vec![past(900), past(960)])],
        );
        // At once: 6 calls in the window for app::f (not quiet), none for app::g.
        let out = e.step(reading(1_031, e_fleet()));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            matches!(&out[0], Transition::Fired { key: k, .. } if *k == key("quiet", "app::g"))
        );
        // app::f is quiet once both minutes left its window (not before the first did).
        let mut fired = None;
        for s in 1_032..1_800 {
            if !e.step(reading(s, e_fleet())).is_empty() {
                fired = Some(s);
                break;
            }
        }
        let s = fired.expect("app::f fires");
        assert!((1_560..1_700).contains(&s), "fired at {s}");
    }

    /// The two functions of the backfill test, unchanged since the first reading.
    fn e_fleet() -> Vec<Snapshot> {
        let mut f = fleet("app::f", 100, 0);
        f.extend(fleet("app::g", 100, 0));
        f
    }

    #[test]
    fn an_alert_restored_for_a_function_its_rule_no_longer_matches_resolves() {
        let mut e = Evaluator::new(rules(
            "[[rule]]\nname = \"errs\"\nfunctions = \"app::*\"\nwhen = \"errors > 0\"\n\
             window = \"5s\"\nseverity = \"page\"",
        ));
        e.restore([(key("errs", "old::f"), 2.0, at(0))]);
        assert!(e.step(reading(10, fleet("old::f", 10, 3))).is_empty());
        let out = e.step(reading(11, fleet("old::f", 10, 3)));
        assert!(
            matches!(&out[..], [Transition::Resolved { key: k, .. }] if *k == key("errs", "old::f")),
            "{out:?}"
        );
        assert!(e.firing().is_empty());
    }
}
