//! `fnmetrics`: the command line of the fnmetrics function-metrics pipeline.
//!
//! `fnmetrics --help` lists the commands; `fnmetrics <command> --help` explains one. Install with
//! `cargo install --path cli`.

mod alerts;
mod args;
mod cmd;
mod conn;
mod duration;
mod error;
mod glob;
mod logger;
mod output;
mod stop;
mod svg;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    logger::install();
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{}", e.report());
            ExitCode::from(e.code())
        }
    }
}
