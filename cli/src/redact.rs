//! Connection strings hold passwords: everything this command prints shows them redacted, by
//! the library's own rules ([`fnmetrics::redact_url`]).

pub(crate) use fnmetrics::redact_url as redact;

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
