//! `fnmetrics drain`: the standalone stage 2, `fnmetrics::Drainer` in a loop.

use crate::args::{DrainArgs, Servers};
use crate::cmd::alerts;
use crate::error::{CliError, CliResult};
use crate::stop::Stop;
use fnmetrics::postgres::PostgresSink;
use fnmetrics::redact_url;
use fnmetrics::redis::RedisQueue;
use fnmetrics::sink::DrainOutcome;
use fnmetrics::{Drainer, ErrorKind};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The longest wait between retries after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub(crate) fn run(s: &Servers, a: &DrainArgs) -> CliResult<u8> {
    // Rules are checked before anything runs: a mistake is a usage error now, not a thread
    // that ends later.
    let rules = a.rules.as_deref().map(alerts::checked_rules).transpose()?;
    let stop = Stop::install()?;
    // The signals set the flag on this thread; the drainer's server calls run undisturbed.
    stop.shielded(|| {
        std::thread::scope(|scope| {
            if let Some(rules) = rules {
                let stop = stop.clone();
                scope.spawn(move || {
                    let every = alerts::Every::default();
                    if let Err(e) = alerts::evaluate_until(s, rules, every, &stop) {
                        eprintln!("{}", e.report());
                        eprintln!("fnmetrics drain: alert evaluation stopped; draining goes on");
                    }
                });
            }
            drain(s, a, &stop)
        })
    })
}

fn drain(s: &Servers, a: &DrainArgs, stop: &Stop) -> CliResult<u8> {
    let (redis_url, postgres_url) = (s.redis_url()?, s.postgres_url()?);
    let postgres_options = s.postgres_options()?;
    let mut drainer = RedisQueue::new(redis_url, s.redis_options())
        .and_then(|q| Drainer::connect(q, PostgresSink::new(postgres_url, postgres_options)?))
        .map_err(|e| connect_error(redis_url, postgres_url, e))?
        .claim_size(usize::try_from(a.batch).unwrap_or(usize::MAX))
        .lease(a.lease)
        .writers(usize::try_from(a.writers).unwrap_or(1))
        .lanes(usize::try_from(a.lanes).unwrap_or(1));

    let mut progress = Progress::new();
    let mut backoff = Duration::from_millis(100);
    // Between `drain_once` calls the drainer holds no claim (a failed batch is handed back at
    // once, and dropping the drainer hands back what a failed hand-back left), so stopping there
    // abandons nothing.
    while !stop.requested() {
        match drainer.drain_once() {
            Ok(o) if o.is_idle() => {
                progress.show(true);
                if a.once {
                    break;
                }
                stop.sleep(a.poll);
            }
            Ok(o) => {
                backoff = Duration::from_millis(100);
                progress.add(&o);
                progress.show(false);
            }
            Err(e) => {
                // Back to Redis for any drainer (ours included, after the backoff); if Redis
                // cannot be told now, the drainer keeps the batch and retries it first.
                let _ = drainer.hand_back();
                let err = CliError::caused("cannot move a batch", e);
                if a.once {
                    progress.finish();
                    return Err(err.hint(
                        "nothing is lost: the batch stays in Redis and is retried by the next \
                         drain",
                    ));
                }
                progress.clear_line();
                eprintln!("{} (retrying in {backoff:?})", err.report());
                stop.sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    progress.finish();
    Ok(0)
}

/// A connection error names the server it came from: the two URLs are tried in order, so try
/// Redis alone to tell.
fn connect_error(redis_url: &str, postgres_url: &str, e: fnmetrics::Error) -> CliError {
    let text = e.message();
    if text.contains("Redis") {
        crate::conn::redis_error(redis_url, "cannot connect to Redis", e)
    } else if text.contains("PostgreSQL") || e.kind() == ErrorKind::Schema {
        crate::conn::postgres_error(postgres_url, "cannot connect to PostgreSQL", e)
    } else {
        CliError::caused(
            format!(
                "cannot connect to Redis at {} or PostgreSQL at {}",
                redact_url(redis_url),
                redact_url(postgres_url)
            ),
            e,
        )
    }
}

/// The progress line on stderr: rewritten in place on a terminal, a line every few seconds
/// otherwise.
struct Progress {
    start: Instant,
    total: DrainOutcome,
    tty: bool,
    last_shown: Option<Instant>,
    shown_total: u64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            start: Instant::now(),
            total: DrainOutcome::default(),
            tty: std::io::stderr().is_terminal(),
            last_shown: None,
            shown_total: u64::MAX,
        }
    }

    fn add(&mut self, o: &DrainOutcome) {
        self.total.moved += o.moved;
        self.total.dead_lettered += o.dead_lettered;
        self.total.dead_letters_evicted += o.dead_letters_evicted;
        self.total.taken_over += o.taken_over;
    }

    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let t = &self.total;
        format!(
            "drain: {} entries moved ({:.0}/s), {} dead letters, {} claims taken over by others, {:.0}s",
            t.moved,
            t.moved as f64 / secs,
            t.dead_lettered,
            t.taken_over,
            secs
        )
    }

    /// Shows the line if it is due: on a terminal at most 10 times a second; otherwise every 5
    /// seconds while there is news, and when the drainer goes idle.
    fn show(&mut self, idle: bool) {
        let due = |every: Duration| self.last_shown.is_none_or(|t| t.elapsed() >= every);
        let news = self.total.moved + self.total.dead_lettered != self.shown_total;
        if self.tty {
            if due(Duration::from_millis(100)) || (idle && news) {
                eprint!("\r\x1b[K{}", self.line());
                let _ = std::io::stderr().flush();
                self.mark();
            }
        } else if news && (idle || due(Duration::from_secs(5))) {
            eprintln!("{}", self.line());
            self.mark();
        }
    }

    fn mark(&mut self) {
        self.last_shown = Some(Instant::now());
        self.shown_total = self.total.moved + self.total.dead_lettered;
    }

    fn clear_line(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }

    fn finish(&mut self) {
        self.clear_line();
        eprintln!("{} (stopped)", self.line());
    }
}
