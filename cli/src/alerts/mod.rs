//! Alert rules: a TOML rules file ([`rules`]) checked with line and column, its export as
//! Prometheus alerting rules ([`prometheus`]), evaluating the rules ([`eval`]), and delivering
//! notifications to receivers ([`deliver`]).

pub(crate) mod deliver;
pub(crate) mod eval;
pub(crate) mod prometheus;
pub(crate) mod rules;
pub(crate) mod state;

use crate::error::{CliError, CliResult};
use rules::{Diagnostic, Rules};
use std::path::Path;

/// Reads and checks the rules file at `path`: the rules, or every mistake in it. Only a file
/// that cannot be read is an error.
pub(crate) fn load(path: &Path) -> CliResult<Result<Rules, Vec<Diagnostic>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::caused(format!("cannot read {}", path.display()), e))?;
    Ok(rules::parse(&text))
}

/// Prints every mistake as `FILE:LINE:COLUMN: message` on stderr and returns the error that
/// ends the command (exit status 1).
pub(crate) fn invalid(path: &Path, diagnostics: &[Diagnostic]) -> CliError {
    let file = path.display();
    for d in diagnostics {
        eprintln!("{file}:{d}");
    }
    let n = diagnostics.len();
    CliError::runtime(format!(
        "{file} is not a valid rules file ({n} {})",
        if n == 1 { "error" } else { "errors" }
    ))
}
