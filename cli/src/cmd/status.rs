//! `fnmetrics status`: the pipeline's health, from Redis.

use crate::args::{RecordFormat, Servers, StatusArgs};
use crate::conn::{self, raw_redis_error};
use crate::duration::{human_span, utc};
use crate::error::CliResult;
use crate::output::{json, print};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// Age of the oldest entry at the head of the entry list, seconds (`null`: none waiting).
    drain_lag_seconds: Option<f64>,
}

pub(crate) fn run(s: &Servers, a: &StatusArgs) -> CliResult<u8> {
    let url = s.redis_url()?;
    let mut queue = conn::queue(s)?;
    let entries_waiting = queue
        .pending_len()
        .map_err(|e| conn::redis_error(url, "cannot count the waiting entries", e))?;
    let dead = queue
        .dead_letter_counts()
        .map_err(|e| conn::redis_error(url, "cannot count the dead letters", e))?;
    let mut c = conn::raw_redis(s)?;
    let claims = s.internal_key("claims");
    let (server_secs, server_micros): (u64, u64) = redis::cmd("TIME")
        .query(&mut c)
        .map_err(|e| raw_redis_error(url, "cannot read the server time", e))?;
    let now_ms = server_secs * 1000 + server_micros / 1000;
    let (claims_held, claims_expired, functions, head): (u64, u64, u64, Option<Vec<u8>>) =
        redis::pipe()
            .zcard(&claims)
            .zcount(&claims, "-inf", now_ms)
            .scard(s.internal_key("functions"))
            .lindex(s.entries_key(), 0)
            .query(&mut c)
            .map_err(|e| raw_redis_error(url, "cannot read the claims and the entry list", e))?;
    let oldest_micros = head.and_then(|b| {
        fnmetrics::redis::decode_element(&b)
            .entries
            .iter()
            .map(|e| e.created_at_micros)
            .min()
    });
    let now_micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let st = Status {
        entries_waiting,
        claims_held,
        claims_expired,
        dead_letters: dead.held,
        dead_letters_evicted: dead.evicted,
        functions,
        drain_lag_seconds: oldest_micros.map(|m| (now_micros - m).max(0) as f64 / 1e6),
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
                 functions:        {}\n",
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
            )
        }
    };
    print(&text)?;
    Ok(0)
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
