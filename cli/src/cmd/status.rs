//! `fnmetrics status`: the pipeline's health, from Redis.

use crate::args::{RecordFormat, Servers, StatusArgs};
use crate::conn;
use crate::duration::{human_span, utc};
use crate::error::CliResult;
use crate::output::{json, print};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
struct Status {
    /// Entries waiting for stage 2: in the entry list and in claims.
    entries_waiting: u64,
    /// Claims drainers hold (being written to PostgreSQL, or left by a drainer that died).
    claims_held: u64,
    /// Of those, claims whose lease ran out: the next drain takes them over.
    claims_expired: u64,
    /// Dead letters held.
    dead_letters: u64,
    /// Dead letters evicted because the list was full.
    dead_letters_evicted: u64,
    /// Functions with aggregates in Redis.
    functions: u64,
    /// Aggregate hashes that do not decode (a field that is not a number, left by a foreign or
    /// buggy writer): `top`, `serve` and `alerts` skip them and read the other functions.
    undecodable_hashes: u64,
    /// Age of the oldest entry at the head of the entry list, seconds (`null`: none waiting).
    drain_lag_seconds: Option<f64>,
}

pub(crate) fn run(s: &Servers, a: &StatusArgs) -> CliResult<u8> {
    let url = s.redis_url()?;
    let mut queue = conn::queue(s)?;
    let o = queue
        .overview()
        .map_err(|e| conn::redis_error(url, "cannot read the pipeline's state", e))?;
    let oldest_micros = o.oldest_waiting_micros;
    let undecodable_hashes = undecodable_hashes(s, url)?;
    let st = Status {
        entries_waiting: o.entries_waiting,
        claims_held: o.claims_held,
        claims_expired: o.claims_expired,
        dead_letters: o.dead_letters.held,
        dead_letters_evicted: o.dead_letters.evicted,
        functions: o.functions,
        undecodable_hashes,
        drain_lag_seconds: o.drain_lag.map(|d| d.as_secs_f64()),
    };
    let text = match a.format {
        RecordFormat::Json => json(&st)?,
        RecordFormat::Table => {
            let lag = match (st.drain_lag_seconds, oldest_micros) {
                (Some(l), Some(m)) => format!(
                    "{} (oldest waiting entry from {} UTC)",
                    lag_text(l),
                    utc(m as f64 / 1e6)
                ),
                _ => "none (nothing waiting in the entry list)".into(),
            };
            format!(
                "entries waiting:  {}\n\
                 claims held:      {}{}\n\
                 dead letters:     {}{}\n\
                 drain lag:        {lag}\n\
                 functions:        {}{}\n",
                st.entries_waiting,
                st.claims_held,
                if st.claims_expired > 0 {
                    format!(" ({} expired, to be taken over)", st.claims_expired)
                } else {
                    String::new()
                },
                st.dead_letters,
                if st.dead_letters_evicted > 0 {
                    format!(" ({} evicted: the list was full)", st.dead_letters_evicted)
                } else {
                    String::new()
                },
                st.functions,
                match st.undecodable_hashes {
                    0 => String::new(),
                    1 => " (1 hash does not decode: skipped by top, serve and alerts)".into(),
                    n => format!(" ({n} hashes do not decode: skipped by top, serve and alerts)"),
                },
            )
        }
    };
    print(&text)?;
    Ok(0)
}

/// How many aggregate hashes do not decode: every function is read once to tell.
fn undecodable_hashes(s: &Servers, url: &str) -> CliResult<u64> {
    let mut reader = conn::reader(s)?;
    let read = |reader: &mut fnmetrics::redis::RedisReader| {
        let names = reader.functions()?;
        reader.get_many(&names)
    };
    read(&mut reader).map_err(|e| conn::redis_error(url, "cannot read aggregates", e))?;
    Ok(reader.skipped())
}

fn lag_text(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1e3)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        human_span(Duration::from_secs_f64(secs))
    }
}
