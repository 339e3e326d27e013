//! Stage 1: rings → [`Sink`], on the `fnmetrics-flusher` thread.

use super::handover::HeldBaseline;
use super::{first_contact, guarded, Backoff, Command, FlusherConfig, SharedHealth, SharedStats};
use crate::clock::WallClock;
use crate::error::{Error, ErrorKind};
use crate::record::{new_flush_id, EntryRecord, IdGen};
use crate::registry;
use crate::ring::{RawEntry, Rings};
use crate::sink::{FlushBatch, Sink};
use crate::snapshot::Snapshot;
use crossbeam_channel::{select, Receiver, Sender};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Between full flushes (interval, `flush()`, shutdown), aggregates go out at most this often.
const AGGREGATES_EVERY: Duration = Duration::from_secs(1);

/// Entries dropped are reported at most this often.
const DROPS_REPORTED_EVERY: Duration = Duration::from_secs(1);

/// What was said of dropped entries, and when.
struct DropReport {
    reported: u64,
    at: Instant,
}

/// A batch being written, with what it changes once the sink confirms it.
struct InFlight {
    batch: FlushBatch,
    /// The snapshots its aggregate deltas were taken up to: the new baseline once applied.
    baseline: Vec<(usize, Snapshot)>,
    /// When it was first tried.
    since: Instant,
    /// Whether an attempt may have been applied (an error not marked [`Error::unsent`]).
    maybe_applied: bool,
}

pub(super) struct Stage1 {
    cfg: FlusherConfig,
    sink: Box<dyn Sink>,
    rings: Arc<Rings>,
    stats: Arc<SharedStats>,
    health: Arc<SharedHealth>,
    stage2: Option<Sender<()>>,
    ids: IdGen,
    /// Converts the calls' raw end times to `created_at`, re-anchored to the system clock
    /// every [`REANCHOR_EVERY`](crate::clock::REANCHOR_EVERY).
    wall: WallClock,
    raw: Vec<RawEntry>,
    pending: VecDeque<EntryRecord>,
    in_flight: Option<InFlight>,
    names: HashMap<u32, Arc<str>>,
    last_flush: Instant,
    last_aggregates: Instant,
    backoff: Backoff,
    drops: DropReport,
    /// What the sink has confirmed of each metric's aggregates: taken from the process's seat
    /// when the thread starts (see [`handover`](super::handover)); it moves only when the sink
    /// confirmed a write.
    sent: Option<HeldBaseline>,
}

impl Stage1 {
    pub(super) fn new(
        cfg: FlusherConfig,
        sink: Box<dyn Sink>,
        rings: Arc<Rings>,
        stats: Arc<SharedStats>,
        health: Arc<SharedHealth>,
        stage2: Option<Sender<()>>,
    ) -> Stage1 {
        Stage1 {
            backoff: Backoff::new(&cfg),
            cfg,
            sink,
            rings,
            stats,
            health,
            stage2,
            ids: IdGen::new(),
            wall: WallClock::new(),
            raw: Vec::new(),
            pending: VecDeque::new(),
            in_flight: None,
            names: HashMap::new(),
            last_flush: Instant::now(),
            last_aggregates: Instant::now(),
            drops: DropReport {
                reported: 0,
                at: Instant::now(),
            },
            sent: None,
        }
    }

    pub(super) fn run(
        mut self,
        cmd: Receiver<Command>,
        nudge: Receiver<()>,
        first: Sender<Result<(), Error>>,
    ) {
        self.sent = Some(HeldBaseline::take());
        // For `start` to hear a definitive refusal; failing, the entries wait in memory.
        let sink = &mut self.sink;
        first_contact(
            &self.cfg,
            &self.health,
            &first,
            "the sink's connect",
            || sink.connect(),
        );
        // Rings of threads that exit are drained within this period, whatever the interval.
        let tick = self.cfg.flush_interval.min(Duration::from_millis(100));
        loop {
            let mut forced: Option<Sender<Result<(), Error>>> = None;
            select! {
                recv(cmd) -> c => match c {
                    Ok(Command::Flush(ack)) => forced = Some(ack),
                    Ok(Command::Shutdown(deadline)) => return self.shutdown(deadline),
                    Err(_) => return self.shutdown(Instant::now()),
                },
                recv(nudge) -> _ => {},
                default(tick) => {},
            }
            self.collect();
            self.report_drops(false);
            if let Some(ack) = forced {
                self.backoff.retry_at = None;
                let _ = ack.send(self.write_recorded());
                continue;
            }
            let due = self.last_flush.elapsed() >= self.cfg.flush_interval;
            if (due || self.pending.len() >= self.cfg.batch_size)
                && self.backoff.due()
                && let Err(e) = self.write(due)
            {
                self.cfg.report(&e);
            }
        }
    }

    /// Moves entries from the rings into `pending`, as many as `max_pending_entries` leaves
    /// room for: the rest waits in the rings, and once those are full, new entries are dropped
    /// (and counted) where they are made, which costs a call less than keeping them.
    fn collect(&mut self) {
        let room = self
            .cfg
            .max_pending_entries
            .saturating_sub(self.pending.len() + self.in_flight_len());
        self.raw.clear();
        self.rings.drain(&mut self.raw, room);
        // Before converting, and whether or not there is anything to convert: the anchors must
        // keep up while entries wait in the rings.
        self.wall.refresh();
        for i in 0..self.raw.len() {
            let raw = self.raw[i];
            let Some(name) = self.name(raw.metric) else {
                continue;
            };
            let unix_nanos = self.wall.to_unix_nanos(raw.end_raw);
            let micros = i64::try_from(unix_nanos / 1_000).unwrap_or(i64::MAX);
            let ms = u64::try_from(unix_nanos / 1_000_000).unwrap_or(u64::MAX);
            self.pending.push_back(EntryRecord {
                id: self.ids.next_id(ms),
                func_name: name,
                execution_time: Duration::from_nanos(raw.nanos),
                error_occurred: raw.outcome.is_error(),
                created_at_micros: micros,
                weight: raw.weight,
                source: self.cfg.source.clone(),
            });
        }
        self.publish_held();
    }

    /// Reports entries dropped since the last report, at most once a second: one error with the
    /// count, through `on_error` and `log`.
    /// `now`: whatever the time since the last report (at shutdown).
    fn report_drops(&mut self, now: bool) {
        if !now && self.drops.at.elapsed() < DROPS_REPORTED_EVERY {
            return;
        }
        let total = self.rings.dropped();
        if total <= self.drops.reported {
            return;
        }
        let n = total - self.drops.reported;
        let secs = self.drops.at.elapsed().as_secs_f64();
        self.drops = DropReport {
            reported: total,
            at: Instant::now(),
        };
        self.cfg.report(&Error::new(
            ErrorKind::Overloaded,
            format!(
                "{n} per-call entries dropped in the last {secs:.1} s ({total} since the flusher \
                 started): calls made entries faster than stage 1 wrote them, and \
                 max_pending_entries ({}) was reached. Every call is still counted in the \
                 aggregates; raise max_pending_entries or batch_size, or make fewer entries \
                 (EntryMode::ErrorsOnly)",
                self.cfg.max_pending_entries
            ),
        ));
    }

    fn in_flight_len(&self) -> usize {
        self.in_flight.as_ref().map_or(0, |f| f.batch.entries.len())
    }

    fn publish_held(&self) {
        let held = (self.pending.len() + self.in_flight_len()) as u64;
        self.stats.held_entries.store(held, Relaxed);
    }

    fn name(&mut self, metric: u32) -> Option<Arc<str>> {
        if let Some(n) = self.names.get(&metric) {
            return Some(n.clone());
        }
        let n: Arc<str> = registry::metric(metric)?.name.into();
        self.names.insert(metric, n.clone());
        Some(n)
    }

    /// The aggregate deltas since what the sink confirmed, and the snapshots they lead to.
    fn deltas(sent: &HeldBaseline) -> (Vec<Snapshot>, Vec<(usize, Snapshot)>) {
        let mut out = Vec::new();
        let mut baseline = Vec::new();
        registry::with_scratch(|scratch| {
            for (id, m) in registry::all_metrics().into_iter().enumerate() {
                let now = m.snapshot(scratch);
                let before = sent.get(id);
                if before == Some(&now) {
                    continue;
                }
                // Whatever changed is sent, errors alone included: a snapshot read while calls
                // run may see a call's count before its error (or after), and the next delta
                // must carry the difference, or it is lost for good.
                out.push(now.delta_since(before));
                baseline.push((id, now));
            }
        });
        (out, baseline)
    }

    /// Writes batches: while `batch_size` entries are pending, or, if `all`, until nothing is.
    fn write(&mut self, all: bool) -> Result<(), Error> {
        loop {
            if self.in_flight.is_none() && !self.next_batch(all) {
                self.last_flush = Instant::now();
                return Ok(());
            }
            self.expire_uncertain();
            let Some(f) = self.in_flight.as_mut() else {
                continue;
            };
            let sink = &mut self.sink;
            match guarded("the sink's write", || sink.write(&f.batch)) {
                Ok(()) => {
                    self.health.succeeded();
                    let f = self.in_flight.take().expect("a batch is in flight");
                    self.confirmed(f);
                    self.backoff.succeeded();
                    self.last_flush = Instant::now();
                    if let Some(s2) = &self.stage2 {
                        let _ = s2.try_send(());
                    }
                    if self.pending.is_empty() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    f.maybe_applied |= !e.is_unsent();
                    self.health.failed(&e);
                    self.stats.failed_writes.fetch_add(1, Relaxed);
                    self.backoff.failed();
                    self.last_flush = Instant::now();
                    return Err(e);
                }
            }
        }
    }

    /// Writes everything recorded up to now: what is pending, then what the rings still hold
    /// beyond `max_pending_entries` (entries recorded meanwhile are the next flush's).
    fn write_recorded(&mut self) -> Result<(), Error> {
        let mut left = self.rings.backlog();
        loop {
            self.write(true)?;
            if left == 0 {
                return Ok(());
            }
            self.collect();
            if self.raw.is_empty() {
                return Ok(());
            }
            left = left.saturating_sub(self.raw.len() as u64);
        }
    }

    /// Builds the next batch from `pending` if there is enough (or, with `all`, anything) to
    /// send; false if there is nothing to send.
    fn next_batch(&mut self, all: bool) -> bool {
        if !all && self.pending.len() < self.cfg.batch_size {
            return false;
        }
        let n = self.pending.len().min(self.cfg.batch_size);
        let entries: Vec<EntryRecord> = self.pending.drain(..n).collect();
        // Summing every function's counters is the flusher's costliest step: do it for the last
        // batch of a full flush, and at most once a second in between.
        let last = all && self.pending.is_empty();
        let (aggregates, baseline) = if last || self.last_aggregates.elapsed() >= AGGREGATES_EVERY {
            self.last_aggregates = Instant::now();
            Self::deltas(self.sent.get_or_insert_with(HeldBaseline::take))
        } else {
            (Vec::new(), Vec::new())
        };
        if entries.is_empty() && aggregates.is_empty() {
            return false;
        }
        self.in_flight = Some(InFlight {
            batch: FlushBatch {
                flush_id: new_flush_id(),
                entries,
                aggregates,
            },
            baseline,
            since: Instant::now(),
            maybe_applied: false,
        });
        true
    }

    /// The sink applied `f`: count it and move the aggregate baseline.
    fn confirmed(&mut self, f: InFlight) {
        self.stats.flushes.fetch_add(1, Relaxed);
        self.stats
            .entries_written
            .fetch_add(f.batch.entries.len() as u64, Relaxed);
        self.move_baseline(f.baseline);
        self.publish_held();
    }

    /// Moves the aggregate baseline to what a batch's deltas were taken up to.
    fn move_baseline(&mut self, to: Vec<(usize, Snapshot)>) {
        if let Some(sent) = self.sent.as_mut() {
            for (id, snap) in to {
                sent.set(id, snap);
            }
        }
    }

    /// A batch that may have been applied must not be sent again once the sink may have
    /// forgotten its flush id. Its entries are safe to send again under a new id (they carry
    /// their own ids, which stage 2 dedupes), its aggregates are not: they are not sent again,
    /// their calls are counted as uncertain and reported, and the baseline moves past them.
    fn expire_uncertain(&mut self) {
        let Some(ttl) = self.sink.flush_id_ttl() else {
            return;
        };
        let Some(f) = self.in_flight.as_mut() else {
            return;
        };
        // A retry must reach the sink while it still remembers the id, with room for one
        // attempt's I/O and clock skew.
        let margin = (ttl / 10).max(Duration::from_secs(1)).min(ttl / 2);
        if !f.maybe_applied || f.since.elapsed() + margin < ttl {
            return;
        }
        let calls: u64 = f
            .batch
            .aggregates
            .iter()
            .map(|a| a.calls + a.cancelled)
            .sum();
        f.batch.flush_id = new_flush_id();
        f.batch.aggregates.clear();
        f.since = Instant::now();
        f.maybe_applied = false;
        let baseline = std::mem::take(&mut f.baseline);
        self.move_baseline(baseline);
        if calls > 0 {
            self.stats.uncertain_calls.fetch_add(calls, Relaxed);
            self.cfg.report(&Error::new(
                ErrorKind::Timeout,
                format!(
                    "a flush kept failing for longer than the sink remembers flush ids \
                     ({ttl:?}) after an attempt that may have been applied: its entries are \
                     sent again under a new id, and the aggregate deltas of {calls} calls are \
                     not (they may or may not have been counted)"
                ),
            ));
        }
    }

    /// Writes what is pending until done or `deadline`; what is still unwritten then is
    /// counted as dropped and reported. A write in progress at the deadline finishes (bounded
    /// by the sink's own I/O timeout) before this returns.
    fn shutdown(mut self, deadline: Instant) {
        loop {
            self.collect();
            self.backoff.retry_at = None;
            match self.write(true) {
                // Done once the rings hold nothing more either (no new entries come: the rings
                // are closed).
                Ok(()) if self.rings.backlog() == 0 => break,
                Ok(()) => {}
                Err(e) => {
                    self.cfg.report(&e);
                    let left = deadline.saturating_duration_since(Instant::now());
                    let wait = self.backoff.current.min(left);
                    if wait.is_zero() {
                        break;
                    }
                    std::thread::sleep(wait);
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        self.report_drops(true);
        self.count_undelivered();
    }

    /// Counts every entry still held as dropped, per function too (a later flusher of this
    /// process sends that count with the aggregates), and reports the loss.
    fn count_undelivered(&mut self) {
        let mut lost = 0u64;
        let in_flight = self.in_flight.take().map(|f| f.batch.entries);
        for e in in_flight
            .into_iter()
            .flatten()
            .chain(self.pending.drain(..))
        {
            lost += 1;
            if let Some(m) = registry::lookup(&e.func_name) {
                m.count_dropped(1);
            }
        }
        // And what never left the rings.
        self.raw.clear();
        self.rings.drain(&mut self.raw, usize::MAX);
        for raw in &self.raw {
            lost += 1;
            if let Some(m) = registry::metric(raw.metric) {
                m.count_dropped(1);
            }
        }
        self.publish_held();
        if lost > 0 {
            self.stats.dropped_entries.fetch_add(lost, Relaxed);
            self.cfg.report(&Error::new(
                ErrorKind::Timeout,
                format!(
                    "shutdown timeout: {lost} entries were not written; they are counted as \
                     dropped (the aggregates still count their calls)"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a snapshot taken mid-call had the calls but not all their errors; the delta
    /// that brought the missing errors (no new call) was taken for empty and never sent, so
    /// Redis kept 7602 errors of 8000 (seen in `two_processes_flushing_and_draining_...`).
    #[test]
    fn a_delta_of_errors_alone_is_sent() {
        let id = registry::register("flusher::stage1::errors_alone") as usize;
        let m = registry::metric(id as u32).unwrap();
        let t = crate::clock::raw_now();
        registry::record(id as u32, 1, t, t + 100, crate::outcome::Outcome::Error);
        let now = registry::with_scratch(|s| m.snapshot(s));
        let mut behind = now.clone();
        behind.errors -= 1;
        let mut sent = HeldBaseline::detached();
        sent.set(id, behind);
        let (deltas, _) = Stage1::deltas(&sent);
        let d = deltas
            .iter()
            .find(|d| d.name == "flusher::stage1::errors_alone")
            .expect("the errors are sent");
        assert_eq!((d.calls, d.errors), (0, 1));
    }
}
