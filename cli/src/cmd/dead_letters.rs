//! `fnmetrics dead-letters list|requeue|purge`.

use crate::args::{DeadLettersCommand, RecordFormat, Servers};
use crate::conn::{self, redis_error};
use crate::duration::utc;
use crate::error::CliResult;
use crate::output::{json, print, Table};
use fnmetrics::redis::{DeadLetter, DeadLetterKind};
use serde::Serialize;
use std::time::UNIX_EPOCH;

#[derive(Debug, Serialize)]
struct Shown {
    at: String,
    kind: &'static str,
    reason: String,
    function: Option<String>,
    payload_bytes: usize,
}

pub(crate) fn run(s: &Servers, c: &DeadLettersCommand) -> CliResult<u8> {
    let url = s.redis_url()?;
    let mut queue = conn::queue(s)?;
    let limit = match c {
        DeadLettersCommand::List(a) => a.limit,
        DeadLettersCommand::Requeue(a) | DeadLettersCommand::Purge(a) => a.limit,
    };
    let letters = queue
        .dead_letters(0, limit)
        .map_err(|e| redis_error(url, "cannot read the dead letters", e))?;
    let held = queue
        .dead_letter_counts()
        .map_err(|e| redis_error(url, "cannot count the dead letters", e))?
        .held;
    match c {
        DeadLettersCommand::List(a) => {
            let shown: Vec<Shown> = letters.iter().map(shown).collect();
            let text = match a.format {
                RecordFormat::Json => json(&shown)?,
                RecordFormat::Table if shown.is_empty() => "no dead letters\n".into(),
                RecordFormat::Table => {
                    let mut t = Table::new(&["set aside (UTC)", "kind", "function", "reason"]);
                    for d in &shown {
                        t.row(vec![
                            d.at.clone(),
                            d.kind.into(),
                            d.function.clone().unwrap_or_else(|| "-".into()),
                            d.reason.clone(),
                        ]);
                    }
                    let mut text = t.render();
                    if held > shown.len() as u64 {
                        text.push_str(&format!(
                            "({} of {held} shown; --limit N shows more)\n",
                            shown.len()
                        ));
                    }
                    text
                }
            };
            print(&text)?;
        }
        DeadLettersCommand::Requeue(_) => {
            let n = queue
                .requeue_dead_letters(&letters)
                .map_err(|e| redis_error(url, "cannot re-queue the dead letters", e))?;
            print(&format!(
                "re-queued {n} dead letters for stage 2 ({} left)\n",
                held.saturating_sub(n)
            ))?;
        }
        DeadLettersCommand::Purge(_) => {
            let n = queue
                .purge_dead_letters(&letters)
                .map_err(|e| redis_error(url, "cannot purge the dead letters", e))?;
            print(&format!(
                "purged {n} dead letters ({} left)\n",
                held.saturating_sub(n)
            ))?;
        }
    }
    Ok(0)
}

fn shown(d: &DeadLetter) -> Shown {
    let at =
        d.at.duration_since(UNIX_EPOCH)
            .map_or(0.0, |t| t.as_secs_f64());
    Shown {
        at: utc(at),
        kind: match d.kind {
            DeadLetterKind::Undecodable => "undecodable",
            DeadLetterKind::Rejected => "rejected",
            _ => "other",
        },
        reason: d.reason.clone(),
        function: d.entry().map(|e| e.func_name.to_string()),
        payload_bytes: d.payload.len(),
    }
}
