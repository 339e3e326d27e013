//! Warnings of the fnmetrics library on stderr: the library says through `log`, under the target
//! `fnmetrics`, what it skips or gives up on (an aggregate hash that does not decode, a batch it
//! could not hand back), and a command line has no other logger to show them. Records of other
//! targets (the connection notes of the PostgreSQL crate's modules) stay quiet, as before.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= Level::Warn && m.target() == "fnmetrics"
    }

    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) {
            let level = if r.level() == Level::Error {
                "error"
            } else {
                "warning"
            };
            eprintln!("fnmetrics: {level}: {}", r.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the stderr logger for warnings and errors (once; a second call does nothing).
pub(crate) fn install() {
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(LevelFilter::Warn);
    }
}
