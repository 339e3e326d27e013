//! The commands, one module each.

mod alerts;
mod dead_letters;
mod drain;
mod forget;
mod html;
mod migrate;
mod report;
pub(crate) mod serve;
mod status;
mod top;

use crate::args::{Cli, Command};
use crate::error::CliResult;

/// Runs the command; returns the exit status of a command that ran (0, or 1 for a check that
/// found a problem).
pub(crate) fn run(cli: Cli) -> CliResult<u8> {
    let s = &cli.servers;
    match cli.command {
        Command::Drain(a) => drain::run(s, &a),
        Command::Migrate(a) => migrate::run(s, &a),
        Command::Report(a) => report::run(s, &a),
        Command::Top(a) => top::run(s, &a),
        Command::Status(a) => status::run(s, &a),
        Command::DeadLetters(a) => dead_letters::run(s, &a),
        Command::Forget(a) => forget::run(s, &a),
        Command::Html(a) => html::run(s, &a),
        Command::Serve(a) => serve::run(s, &a),
        Command::Alerts(a) => alerts::run(s, &a),
    }
}
