//! Connection strings hold passwords: [`Url`] keeps one and shows it only redacted.
//!
//! There is one redaction, [`redact_url`], and it parses rather than splits: URLs with the `url`
//! crate (a password may hold `@`, `:`, `/` or `%40`), libpq `key=value` strings with a tokenizer
//! that follows libpq's own rules (quoted values, `\` escapes, spaces around `=`). What it cannot
//! parse it hides rather than echoes.

use std::fmt;

/// What stands in for a password.
const HIDDEN: &str = "***";

/// A Redis or PostgreSQL connection string. `Debug` and [`Url::redacted`] replace the password
/// with `***`; only [`Url::expose`] gives the original, for the client that connects.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Url(String);

impl Url {
    // URLs are given only with the `redis` feature (the builder's setters need it).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn new(s: String) -> Url {
        Url(s)
    }

    /// The original string, to hand to a client library. Never log it.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The string with its password replaced by `***`, as [`redact_url`] does.
    pub(crate) fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

/// `s`, a Redis or PostgreSQL connection string, with its password replaced by `***`: in a URL
/// (`redis://`, `rediss://`, `postgres://`, `postgresql://`, any `scheme://`), the password of
/// the user and a `password=` (or redis-rs's `pass=`) query parameter; in a libpq `key=value`
/// string, the `password` value, quoted or not. For messages and logs of tools built on
/// fnmetrics (its own errors and `Debug` output never hold a password).
///
/// A string that does not parse is hidden rather than shown: a URL keeps its scheme and what
/// follows its last `@` (or nothing), a `key=value` string what comes before the pair that does
/// not parse.
///
/// ```
/// assert_eq!(
///     fnmetrics::redact_url("postgres://app:s3cret@db:5432/metrics"),
///     "postgres://app:***@db:5432/metrics"
/// );
/// assert_eq!(
///     fnmetrics::redact_url("redis://:p@ss:w0rd@cache:6379/0"),
///     "redis://:***@cache:6379/0"
/// );
/// assert_eq!(
///     fnmetrics::redact_url("host=db password='my secret' dbname=metrics"),
///     "host=db password=*** dbname=metrics"
/// );
/// ```
pub fn redact_url(s: &str) -> String {
    match scheme_end(s) {
        Some(end) => redact_uri(s).unwrap_or_else(|| redact_unparsed_uri(s, end)),
        None => redact_key_values(s),
    }
}

/// Where `://` ends when `s` (after leading spaces) starts with `scheme://`.
fn scheme_end(s: &str) -> Option<usize> {
    let start = s.len() - s.trim_start().len();
    let rest = &s[start..];
    let colon = rest.find("://")?;
    let scheme = &rest[..colon];
    let mut chars = scheme.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    ok.then_some(start + colon + 3)
}

/// A password key, in a `key=value` string or a URL's query. Spellings other than `password`
/// (`PASSWORD`, redis-rs's `pass`, a misspelt `passwd`) are hidden too: the client rejects them
/// anyway, and hiding them costs nothing. `passfile` names a file and is shown.
fn is_password_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("pass") && key != "passfile"
}

/// A URL parsed by the `url` crate, its password and password query parameters replaced; `None`
/// when it does not parse, or parses in a way that may have misplaced the password.
fn redact_uri(s: &str) -> Option<String> {
    let mut url = url::Url::parse(s).ok()?;
    // A password with a raw `/`, `?` or `#` ends the authority early: the `@` meant to close
    // the user info is then found later, and what the parser took for a host, port or path
    // holds part of the password.
    if url[url::Position::AfterPort..].contains('@') {
        return None;
    }
    if url.password().is_some() {
        url.set_password(Some(HIDDEN)).ok()?;
    }
    if let Some(query) = url.query() {
        let query = redact_query(query);
        url.set_query(Some(&query));
    }
    Some(url.into())
}

/// `query` (`a=1&password=x`) with the value of each password parameter replaced by `***`.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            // The key as a client reads it: `p%61ss` is `pass`.
            let decoded = url::form_urlencoded::parse(pair.as_bytes()).next();
            match (decoded, pair.split_once('=')) {
                (Some((key, _)), Some((raw_key, _))) if is_password_key(&key) => {
                    format!("{raw_key}={HIDDEN}")
                }
                _ => pair.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A `scheme://` string the `url` crate cannot parse: the scheme, `***`, then what follows the
/// last `@` (the host and the rest, password query parameters hidden); with no `@` there is no
/// telling what the rest holds, and only the scheme is kept.
fn redact_unparsed_uri(s: &str, scheme_end: usize) -> String {
    let scheme = &s[..scheme_end];
    let rest = &s[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return format!("{scheme}{HIDDEN}");
    };
    let tail = &rest[at..];
    let tail = match tail.split_once('?') {
        Some((before, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let mut t = format!("{before}?{}", redact_query(query));
            if let Some(f) = fragment {
                t.push('#');
                t.push_str(f);
            }
            t
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{HIDDEN}{tail}")
}

/// A libpq `key=value` string re-emitted with each password value (quotes included) replaced by
/// `***`; from the first pair that does not parse on, `***`.
///
/// libpq's rules (`conninfo_parse`), which `postgres::Config` follows too: pairs separated by
/// white space; white space allowed around `=`; a value is either single-quoted, where `\'` and
/// `\\` (a `\` before any character) stand for the character, or runs to the next white space,
/// with the same `\` escape.
fn redact_key_values(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut t = Tokens { s, at: 0 };
    loop {
        let pair_start = t.at;
        t.skip_space();
        if t.at == s.len() {
            out.push_str(&s[pair_start..]);
            return out;
        }
        let Some(pair) = t.pair() else {
            out.push_str(&s[pair_start..t.at_space_end(pair_start)]);
            out.push_str(HIDDEN);
            return out;
        };
        if is_password_key(&s[pair.key.clone()]) {
            out.push_str(&s[pair_start..pair.value.start]);
            out.push_str(HIDDEN);
        } else {
            out.push_str(&s[pair_start..pair.value.end]);
        }
    }
}

/// A cursor over a `key=value` string, at a char boundary.
struct Tokens<'a> {
    s: &'a str,
    at: usize,
}

/// Byte ranges of one `key = value` pair; the value's includes its quotes.
struct Pair {
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

impl Tokens<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.at..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Where the white space that starts at `from` ends.
    fn at_space_end(&self, from: usize) -> usize {
        let rest = &self.s[from..];
        from + (rest.len() - rest.trim_start().len())
    }

    /// One pair, white space before it skipped; `None` if it does not parse (no key, no `=`,
    /// an unterminated quote).
    fn pair(&mut self) -> Option<Pair> {
        let key_start = self.at;
        while self.peek().is_some_and(|c| c != '=' && !c.is_whitespace()) {
            self.bump();
        }
        let key = key_start..self.at;
        self.skip_space();
        if key.is_empty() || self.bump() != Some('=') {
            return None;
        }
        self.skip_space();
        let value_start = self.at;
        if self.peek() == Some('\'') {
            self.bump();
            loop {
                match self.bump()? {
                    '\\' => {
                        self.bump()?;
                    }
                    '\'' => break,
                    _ => {}
                }
            }
        } else {
            while let Some(c) = self.peek() {
                if c.is_whitespace() {
                    break;
                }
                self.bump();
                if c == '\\' {
                    self.bump();
                }
            }
        }
        Some(Pair {
            key,
            value: value_start..self.at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url as redact;

    /// (input, the password in it, what is shown).
    const CASES: &[(&str, &str, &str)] = &[
        // URLs.
        (
            "redis://:hunter2@h:6379/0",
            "hunter2",
            "redis://:***@h:6379/0",
        ),
        (
            "rediss://user:hunter2@h/",
            "hunter2",
            "rediss://user:***@h/",
        ),
        (
            "postgres://u:p%40ss@h/db?sslmode=require",
            "p%40ss",
            "postgres://u:***@h/db?sslmode=require",
        ),
        (
            "postgresql://app:s3cr@t@db:5432/metrics",
            "s3cr@t",
            "postgresql://app:***@db:5432/metrics",
        ),
        ("redis://:a@b@h/", "a@b", "redis://:***@h/"),
        ("redis://u:pa:ss:wd@h:1/", "pa:ss:wd", "redis://u:***@h:1/"),
        ("redis://u:pa/sswd@h:1/", "pa/sswd", "redis://***@h:1/"),
        ("redis://u:12#34@h:1/", "12#34", "redis://***@h:1/"),
        ("redis://u:12?34@h:1/", "12?34", "redis://***@h:1/"),
        (
            "postgres://u@h/db?password=hunter2&x=1",
            "hunter2",
            "postgres://u@h/db?password=***&x=1",
        ),
        (
            "postgres://u@h/db?x=1&PASSWORD=hunter2",
            "hunter2",
            "postgres://u@h/db?x=1&PASSWORD=***",
        ),
        (
            "postgres://u@h/db?p%61ssword=hunter2",
            "hunter2",
            "postgres://u@h/db?p%61ssword=***",
        ),
        (
            "redis+unix:///run/redis.sock?db=1&pass=hunter2",
            "hunter2",
            "redis+unix:///run/redis.sock?db=1&pass=***",
        ),
        // Multi-host URLs are not parsed by `url`: the user info and the rest are hidden.
        (
            "postgres://u:hunter2@h1:5432,h2:5432/db?password=hunter2",
            "hunter2",
            "postgres://***@h1:5432,h2:5432/db?password=***",
        ),
        ("postgres://u:hunter2", "hunter2", "postgres://***"),
        // libpq key=value.
        (
            "host=h user=u password=hunter2 dbname=d",
            "hunter2",
            "host=h user=u password=*** dbname=d",
        ),
        (
            "host=127.0.0.1 port=1 password='Sup3r Secret9' dbname=x",
            "Secret9",
            "host=127.0.0.1 port=1 password=*** dbname=x",
        ),
        (
            r"host=h password='it\'s a secret' dbname=d",
            "secret",
            "host=h password=*** dbname=d",
        ),
        (
            r"password='back\\slash \\' host=h",
            "slash",
            "password=*** host=h",
        ),
        (
            "host = h  password =  'two words'\tdbname= d",
            "words",
            "host = h  password =  ***\tdbname= d",
        ),
        (
            r"password=unquoted\ space host=h",
            "space",
            "password=*** host=h",
        ),
        (
            "password='q1'host=h PASSWORD=q2",
            "q",
            "password=***host=h PASSWORD=***",
        ),
        ("password= hunter2", "hunter2", "password= ***"),
        ("  password=hunter2  ", "hunter2", "  password=***  "),
        ("host=h password=", "", "host=h password=***"),
        // What does not parse is hidden from where it stops parsing.
        (
            "host=h password='unterminated secret",
            "secret",
            "host=h ***",
        ),
        ("host=h port password=hunter2", "hunter2", "host=h ***"),
        ("=hunter2 host=h", "hunter2", "***"),
        ("hunter2", "hunter2", "***"),
    ];

    #[test]
    fn passwords_are_redacted_in_every_spelling() {
        for &(input, password, want) in CASES {
            let shown = redact(input);
            assert_eq!(shown, want, "{input}");
            if !password.is_empty() {
                assert!(!shown.contains(password), "{input}: {shown}");
            }
        }
    }

    #[test]
    fn strings_without_a_password_are_shown_whole() {
        for s in [
            "redis://h:6379/",
            "redis://user@h/",
            "rediss://h:6380/2",
            "postgres://u@h:5432/db?sslmode=require&application_name=a%40b",
            "postgresql://h/db",
            "redis+unix:///run/redis.sock?db=1",
            "http://127.0.0.1:9099/hook",
            "host=h port=5432 user=u dbname=d",
            "host=h passfile=/home/u/.pgpass",
            "application_name='a b' host=h",
            "",
        ] {
            assert_eq!(redact(s), s);
        }
    }
}
