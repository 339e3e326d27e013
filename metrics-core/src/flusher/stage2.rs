//! Stage 2: runs the [`Drain`] on the `fnmetrics-drain` thread, after each write of stage 1 and
//! at least every `flush_interval`, until it has nothing left to move.

use super::{
    copy_error, first_contact, guarded, Backoff, Command, FlusherConfig, SharedHealth, SharedStats,
};
use crate::error::{Error, ErrorKind};
use crate::sink::Drain;
use crossbeam_channel::{select, Receiver, Sender};
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::Instant;

pub(super) struct Stage2 {
    cfg: FlusherConfig,
    drain: Box<dyn Drain>,
    stats: Arc<SharedStats>,
    health: Arc<SharedHealth>,
    backoff: Backoff,
    /// Callers of `flush()` waiting for stage 2 to run dry.
    waiting: Vec<Sender<Result<(), Error>>>,
    /// Set by `Shutdown`: finish by then.
    deadline: Option<Instant>,
    /// While the store is laid out by a newer fnmetrics ([`ErrorKind::Superseded`]): this stage
    /// leaves the work to newer drainers, and looks again at this time.
    superseded_until: Option<Instant>,
}

/// How often a superseded stage 2 looks whether it may drain again.
const SUPERSEDED_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

impl Stage2 {
    pub(super) fn new(
        cfg: FlusherConfig,
        drain: Box<dyn Drain>,
        stats: Arc<SharedStats>,
        health: Arc<SharedHealth>,
    ) -> Stage2 {
        Stage2 {
            backoff: Backoff::new(&cfg),
            cfg,
            drain,
            stats,
            health,
            waiting: Vec::new(),
            deadline: None,
            superseded_until: None,
        }
    }

    pub(super) fn run(
        mut self,
        cmd: Receiver<Command>,
        nudge: Receiver<()>,
        first: Sender<Result<(), Error>>,
    ) {
        // A later stage 2 waits until one still stuck in a batch has ended (see `handover`).
        let _one = super::handover::Draining::start();
        // The first contact (PostgreSQL: connect and migrate), for `start` to hear a definitive
        // refusal. Failing, the stage goes on: each batch connects by itself.
        let drain = &mut self.drain;
        if !first_contact(
            &self.cfg,
            &self.health,
            &first,
            "the drain's connect",
            || drain.connect(),
        ) {
            self.backoff.failed();
            if self.health.get().last_error_kind == Some(ErrorKind::Superseded) {
                // Reported by the first contact: look again in a while, quietly.
                self.superseded_until = Some(Instant::now() + SUPERSEDED_RECHECK);
            }
        }
        let interval = self.cfg.flush_interval;
        loop {
            select! {
                recv(cmd) -> c => self.take(c.ok()),
                recv(nudge) -> _ => {},
                default(interval) => {},
            }
            let forced = !self.waiting.is_empty() || self.deadline.is_some();
            let superseded = self.superseded_until.is_some_and(|t| Instant::now() < t);
            if superseded {
                // Newer drainers move the entries: a flush is done once stage 1 delivered.
                for ack in self.waiting.drain(..) {
                    let _ = ack.send(Ok(()));
                }
            } else if forced || self.backoff.due() {
                let result = match self.run_dry(&cmd) {
                    // Newer drainers move the entries: said once, not at every look, and a
                    // flush is done once stage 1 delivered.
                    Err(e) if e.kind() == ErrorKind::Superseded => {
                        if self.superseded_until.is_none() {
                            self.cfg.report(&e);
                        }
                        self.superseded_until = Some(Instant::now() + SUPERSEDED_RECHECK);
                        Ok(())
                    }
                    result => {
                        self.superseded_until = None;
                        if let Err(e) = &result {
                            self.cfg.report(e);
                        }
                        result
                    }
                };
                for ack in self.waiting.drain(..) {
                    let _ = ack.send(result.as_ref().map(|_| ()).map_err(copy_error));
                }
            }
            if self.deadline.is_some() {
                self.hand_back();
                return;
            }
        }
    }

    /// Gives back what the drain still holds, so that the next drainer moves it at once.
    fn hand_back(&mut self) {
        let drain = &mut self.drain;
        match guarded("the drain's hand-back", || drain.hand_back()) {
            Ok(n) => {
                self.stats.entries_handed_back.fetch_add(n, Relaxed);
            }
            Err(e) => self.cfg.report(&e),
        }
    }

    /// Takes a command (`None`: the flusher is gone, stop now).
    fn take(&mut self, c: Option<Command>) {
        match c {
            Some(Command::Flush(ack)) => self.waiting.push(ack),
            Some(Command::Shutdown(deadline)) => self.deadline = Some(deadline),
            None => self.deadline = Some(Instant::now()),
        }
    }

    /// Drains until there is nothing left, an error, or the deadline. Between batches it takes
    /// new commands, so a shutdown is seen even during a long backlog.
    fn run_dry(&mut self, cmd: &Receiver<Command>) -> Result<(), Error> {
        let mut round = 0u64;
        loop {
            round += 1;
            while let Ok(c) = cmd.try_recv() {
                self.take(Some(c));
            }
            if let Some(d) = self.deadline
                && Instant::now() >= d
            {
                if round == 1 {
                    // No time was left at all (a start that failed, or a stage 1 that took
                    // it all): nothing was tried, so there is nothing to say.
                    return Ok(());
                }
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "stage 2 stopped at the shutdown deadline; what it did not move waits \
                     in the stage-1 store for the next drainer",
                ));
            }
            let drain = &mut self.drain;
            match guarded("the drain", || drain.drain_once()) {
                Ok(o) if o.is_idle() => {
                    self.health.succeeded();
                    self.backoff.succeeded();
                    return Ok(());
                }
                Ok(o) => {
                    self.stats.entries_drained.fetch_add(o.moved, Relaxed);
                    self.stats.dead_letters.fetch_add(o.dead_lettered, Relaxed);
                    self.stats
                        .dead_letters_evicted
                        .fetch_add(o.dead_letters_evicted, Relaxed);
                    self.health.succeeded();
                    self.backoff.succeeded();
                }
                Err(e) => {
                    self.health.failed(&e);
                    self.stats.failed_drains.fetch_add(1, Relaxed);
                    self.backoff.failed();
                    // Not kept for a retry of our own: another drainer, whose connection may
                    // work, can move it now.
                    self.hand_back();
                    return Err(e);
                }
            }
        }
    }
}
