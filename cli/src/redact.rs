//! Connection strings hold passwords: everything this command prints shows them redacted, by
//! the library's own rules ([`fnmetrics::redact_url`]).

pub(crate) use fnmetrics::redact_url as redact;
