//! Connection strings hold passwords: [`Url`] keeps one and shows it only redacted.

use std::fmt;

/// A Redis or PostgreSQL connection string. `Debug` and [`Url::redacted`] replace the password
/// with `***`; only [`Url::expose`] gives the original, for the client that connects.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Url(String);

impl Url {
    pub(crate) fn new(s: String) -> Url {
        Url(s)
    }

    /// The original string, to hand to a client library. Never log it.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The string with its password replaced by `***`: in a URL, what stands between the user's
    /// `:` and the `@` of the authority; in a libpq `key=value` string, the `password` value.
    pub(crate) fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

/// `s`, a Redis or PostgreSQL connection string, with its password replaced by `***`: in a URL,
/// what stands between the user's `:` and the `@` of the authority, and a `password=` query
/// parameter; in a libpq `key=value` string, the `password` value. For messages and logs of
/// tools built on fnmetrics (its own errors and `Debug` output never hold a password).
///
/// ```
/// assert_eq!(
///     fnmetrics::redact_url("postgres://app:s3cret@db:5432/metrics"),
///     "postgres://app:***@db:5432/metrics"
/// );
/// assert_eq!(fnmetrics::redact_url("host=db password=s3cret"), "host=db password=***");
/// ```
pub fn redact_url(s: &str) -> String {
    if let Some(scheme_end) = s.find("://") {
        let rest = &s[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            let mut out = String::with_capacity(s.len());
            out.push_str(&s[..scheme_end + 3]);
            out.push_str(&shown);
            out.push_str(&rest[at..]);
            return redact_query(out);
        }
        return redact_query(s.to_owned());
    }
    // libpq key=value form.
    s.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `password=` query parameter (PostgreSQL URLs allow one) becomes `password=***`.
fn redact_query(url: String) -> String {
    let Some(q) = url.find('?') else { return url };
    let (base, query) = url.split_at(q + 1);
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{base}{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_url as redact;

    #[test]
    fn passwords_are_redacted_in_every_spelling() {
        for (url, want) in [
            ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
            ("rediss://user:hunter2@h/", "rediss://user:***@h/"),
            ("redis://h:6379/", "redis://h:6379/"),
            ("redis://user@h/", "redis://user@h/"),
            (
                "postgres://u:p%40ss@h/db?sslmode=require",
                "postgres://u:***@h/db?sslmode=require",
            ),
            (
                "postgres://u@h/db?password=hunter2&x=1",
                "postgres://u@h/db?password=***&x=1",
            ),
            (
                "host=h user=u password=hunter2 dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            ("redis://:a@b@h/", "redis://:***@h/"),
        ] {
            assert_eq!(redact(url), want, "{url}");
        }
    }
}
