//! `fnmetrics forget GLOB [--yes]`: remove functions' aggregates and names from Redis.

use crate::args::{ForgetArgs, Servers};
use crate::conn::{self, redis_error};
use crate::error::CliResult;
use crate::glob::Glob;
use crate::output::print;

pub(crate) fn run(s: &Servers, a: &ForgetArgs) -> CliResult<u8> {
    let glob = Glob::new(&a.glob)?;
    let url = s.redis_url()?;
    let mut reader = conn::reader(s)?;
    let names: Vec<String> = reader
        .functions()
        .map_err(|e| redis_error(url, "cannot list the functions", e))?
        .into_iter()
        .filter(|n| glob.matches(n))
        .collect();
    if names.is_empty() {
        print(&format!("no function in Redis matches `{}`\n", a.glob))?;
        return Ok(0);
    }
    if !a.yes {
        let mut text = format!(
            "would remove {} functions (run with --yes to remove them):\n",
            names.len()
        );
        for n in &names {
            text.push_str(&format!("  {n}\n"));
        }
        print(&text)?;
        return Ok(0);
    }
    let mut text = String::new();
    for n in &names {
        reader
            .forget(std::slice::from_ref(n))
            .map_err(|e| redis_error(url, &format!("cannot remove `{n}`"), e))?;
        text.push_str(&format!("removed {n}\n"));
    }
    text.push_str(&format!(
        "removed {} functions' aggregates; a process that still measures one brings it back with \
         its next flush\n",
        names.len()
    ));
    print(&text)?;
    Ok(0)
}
