//! What a command can fail with: a message saying what failed, its cause chain, a hint saying
//! what to do, and the exit status.

use std::error::Error as StdError;
use std::fmt;

/// Exit status of a runtime failure.
pub(crate) const RUNTIME: u8 = 1;
/// Exit status of a usage error (as clap's own).
pub(crate) const USAGE: u8 = 2;

/// A failed command.
#[derive(Debug)]
pub(crate) struct CliError {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    hint: Option<String>,
    code: u8,
}

/// The result of a command: its exit status on success (0, or 1 for "checked, not fine").
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// A runtime failure (exit status 1).
    pub(crate) fn runtime(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            source: None,
            hint: None,
            code: RUNTIME,
        }
    }

    /// A usage error (exit status 2).
    pub(crate) fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: USAGE,
            ..CliError::runtime(message)
        }
    }

    /// A runtime failure caused by `source`.
    pub(crate) fn caused(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> CliError {
        CliError {
            source: Some(Box::new(source)),
            ..CliError::runtime(message)
        }
    }

    /// Adds what to do about it.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    /// The exit status.
    pub(crate) fn code(&self) -> u8 {
        self.code
    }

    /// `error: ..`, one `caused by: ..` line per source, then the hint.
    pub(crate) fn report(&self) -> String {
        let mut s = format!("error: {}", self.message);
        let mut cur: Option<&(dyn StdError + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static));
        let mut last = self.message.clone();
        while let Some(e) = cur {
            // `{:#}`: an fnmetrics error's own layer only (its `{}` holds the whole chain,
            // which this loop prints a line a cause).
            let text = format!("{e:#}");
            // Some errors repeat their source in their own message: say each thing once.
            if !last.starts_with(&text) && !last.ends_with(&text) {
                s.push_str("\n  caused by: ");
                s.push_str(&text);
            }
            last = text;
            cur = e.source();
        }
        if let Some(h) = &self.hint {
            s.push_str("\n  hint: ");
            s.push_str(h);
        }
        s
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
