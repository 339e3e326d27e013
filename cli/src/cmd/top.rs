//! `fnmetrics top`: a live view of the fleet from the Redis aggregates.

use crate::args::{Servers, TopArgs};
use crate::cmd::serve::Fleet;
use crate::conn::redis_error;
use crate::duration::{human_ns, human_span, utc};
use crate::error::CliResult;
use crate::glob::{self, Glob};
use crate::output::{percent, print, Table};
use crate::stop::Stop;
use fnmetrics::redact_url;
use fnmetrics::Snapshot;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub(crate) fn run(s: &Servers, a: &TopArgs) -> CliResult<u8> {
    let glob = glob::optional(a.func.as_deref())?;
    let url = s.redis_url()?;
    let mut reader = Fleet::connect(url, s.redis_options())
        .map_err(|e| redis_error(url, "cannot connect to Redis", e))?;
    let read = |reader: &mut Fleet| {
        read_all(reader, glob.as_ref()).map_err(|e| redis_error(url, "cannot read aggregates", e))
    };
    if a.once {
        print(&totals(&read(&mut reader)?))?;
        return Ok(0);
    }

    let stop = Stop::install()?;
    let tty = std::io::stdout().is_terminal();
    let mut before = read(&mut reader)?;
    let mut at = Instant::now();
    let header = |what: &str, n: usize| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        format!(
            "fnmetrics top: Redis at {}, {n} functions, {what}, {} UTC (Ctrl-C to quit)\n\n",
            redact_url(url),
            utc(now)
        )
    };
    let show = |text: String| {
        // On a terminal: clear the screen and draw from the top left corner.
        print(&if tty {
            format!("\x1b[H\x1b[2J{text}")
        } else {
            format!("{text}\n")
        })
    };
    show(header("totals so far; rates from the next refresh", before.len()) + &totals(&before))?;
    while !stop.sleep(a.interval) {
        let now = match read(&mut reader) {
            Ok(now) => now,
            // A live view rides out a server that goes away: say so, and try again next time.
            Err(e) => {
                show(header("cannot read Redis", before.len()) + &e.report() + "\n")?;
                continue;
            }
        };
        let secs = at.elapsed().as_secs_f64();
        at = Instant::now();
        let what = format!("rates over the last {}", human_span(a.interval));
        show(header(&what, now.len()) + &rates(&now, &before, secs))?;
        before = now;
    }
    Ok(0)
}

/// Every matching function's fleet-wide snapshot, by name (pipelined, as a scrape of `serve`
/// reads them).
fn read_all(
    reader: &mut Fleet,
    glob: Option<&Glob>,
) -> Result<HashMap<String, Snapshot>, fnmetrics::Error> {
    Ok(reader
        .read(glob)?
        .into_iter()
        .map(|m| (m.name.clone(), m))
        .collect())
}

fn quantile_ns(m: &Snapshot, q: f64) -> String {
    if m.calls == 0 {
        "-".into()
    } else {
        human_ns(m.quantile(q).as_nanos() as f64)
    }
}

/// The totals since the aggregates were created, most calls first.
fn totals(all: &HashMap<String, Snapshot>) -> String {
    if all.is_empty() {
        return "no functions in Redis yet\n".into();
    }
    let mut v: Vec<&Snapshot> = all.values().collect();
    v.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.name.cmp(&b.name)));
    let mut t = Table::new(&[
        "function", "calls", "errors", "error%", "mean", "p50", "p99", "max",
    ]);
    for m in v {
        t.row(vec![
            m.name.clone(),
            m.calls.to_string(),
            m.errors.to_string(),
            percent(m.errors as f64, m.calls as f64),
            if m.calls == 0 {
                "-".into()
            } else {
                human_ns(m.mean().as_nanos() as f64)
            },
            quantile_ns(m, 0.5),
            quantile_ns(m, 0.99),
            if m.calls == 0 {
                "-".into()
            } else {
                human_ns(m.max().as_nanos() as f64)
            },
        ]);
    }
    t.render()
}

/// What happened between two reads `secs` apart, most calls per second first.
fn rates(now: &HashMap<String, Snapshot>, before: &HashMap<String, Snapshot>, secs: f64) -> String {
    if now.is_empty() {
        return "no functions in Redis yet\n".into();
    }
    let secs = secs.max(1e-3);
    let mut v: Vec<Snapshot> = now
        .iter()
        .map(|(name, m)| m.delta_since(before.get(name)))
        .collect();
    v.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.name.cmp(&b.name)));
    let mut t = Table::new(&["function", "calls/s", "errors/s", "error%", "p50", "p99"]);
    for d in &v {
        t.row(vec![
            d.name.clone(),
            format!("{:.1}", d.calls as f64 / secs),
            format!("{:.1}", d.errors as f64 / secs),
            percent(d.errors as f64, d.calls as f64),
            quantile_ns(d, 0.5),
            quantile_ns(d, 0.99),
        ]);
    }
    t.render()
}
