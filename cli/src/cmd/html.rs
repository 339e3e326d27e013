//! `fnmetrics html`: a self-contained HTML report with SVG charts over time.

use crate::args::{HtmlArgs, Servers};
use crate::error::{CliError, CliResult};

pub(crate) fn run(_s: &Servers, _a: &HtmlArgs) -> CliResult<u8> {
    Err(CliError::runtime("html: not written yet"))
}
