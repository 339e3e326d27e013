//! Connection strings hold passwords: everything this command prints shows them redacted.
//!
//! The same rules as the `fnmetrics` crate's (private) `secret` module: in a URL, what stands
//! between the user's `:` and the `@` of the authority becomes `***`, and so does a `password=`
//! query parameter or libpq `key=value` pair.

/// `url` with its password replaced by `***`.
pub(crate) fn redact(s: &str) -> String {
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
    use super::redact;

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
