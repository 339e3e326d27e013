//! Function-name globs: `*` any run of characters (`::` included), `?` one character, `[abc]`,
//! `[a-z]` and `[!abc]` one character of a set, `\x` the character `x`.

use crate::error::CliError;

/// A parsed glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob {
    pattern: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Char(char),
    Any,
    One,
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parses `pattern`; an unclosed `[` is a usage error.
    pub(crate) fn new(pattern: &str) -> Result<Glob, CliError> {
        let mut parts = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            parts.push(match c {
                '*' => {
                    // `**` is `*`.
                    if parts.last() == Some(&Part::Any) {
                        continue;
                    }
                    Part::Any
                }
                '?' => Part::One,
                '\\' => Part::Char(chars.next().unwrap_or('\\')),
                '[' => {
                    let negated = chars.next_if(|&c| c == '!' || c == '^').is_some();
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(c) = chars.next() else {
                            return Err(CliError::usage(format!(
                                "invalid glob `{pattern}`: a `[` is not closed (write `\\[` for \
                                 the character itself)"
                            )));
                        };
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        if chars.peek() == Some(&'-') {
                            let mut ahead = chars.clone();
                            ahead.next();
                            if let Some(&hi) = ahead.peek().filter(|&&h| h != ']') {
                                chars.next();
                                chars.next();
                                ranges.push((c, hi));
                                continue;
                            }
                        }
                        ranges.push((c, c));
                    }
                    Part::Set { negated, ranges }
                }
                c => Part::Char(c),
            });
        }
        Ok(Glob {
            pattern: pattern.to_owned(),
            parts,
        })
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The one name the glob matches when it has no `*`, `?` or set (escapes resolved).
    pub(crate) fn literal(&self) -> Option<String> {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Char(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// The same language as an RE2 regular expression (Prometheus' `=~`), anchored with `^` and
    /// `$`: `*` is `.*`, `?` is `.`, sets are kept (`[!a]` is `[^a]`), and every other
    /// character stands for itself (regex metacharacters escaped).
    pub(crate) fn to_regex(&self) -> String {
        let mut re = String::from("^");
        for part in &self.parts {
            match part {
                Part::Char(c) => push_regex_char(&mut re, *c),
                Part::Any => re.push_str(".*"),
                Part::One => re.push('.'),
                Part::Set { negated, ranges } => {
                    re.push('[');
                    if *negated {
                        re.push('^');
                    }
                    for &(lo, hi) in ranges {
                        push_regex_char(&mut re, lo);
                        if hi != lo {
                            re.push('-');
                            push_regex_char(&mut re, hi);
                        }
                    }
                    re.push(']');
                }
            }
        }
        re.push('$');
        re
    }

    /// Whether `name` matches the whole glob.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // Iterative matching with one backtrack point for the last `*`.
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.parts.get(p) {
                Some(Part::Any) => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                Some(part) if part.matches_one(name[n]) => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            }
        }
        self.parts[p..].iter().all(|x| *x == Part::Any)
    }
}

impl Part {
    fn matches_one(&self, c: char) -> bool {
        match self {
            Part::Char(x) => *x == c,
            Part::One => true,
            Part::Any => false,
            Part::Set { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// Pushes `c` as a regex that matches only `c` (in a set too).
fn push_regex_char(re: &mut String, c: char) {
    if "\\.+*?()|[]{}^$-".contains(c) {
        re.push('\\');
    }
    re.push(c);
}

/// Parses an optional `--fn` glob.
pub(crate) fn optional(pattern: Option<&str>) -> Result<Option<Glob>, CliError> {
    pattern.map(Glob::new).transpose()
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(p: &str, n: &str) -> bool {
        Glob::new(p).unwrap().matches(n)
    }

    #[test]
    fn stars_questions_and_sets() {
        assert!(m("app::*", "app::db::load"));
        assert!(m("*load*", "app::db::load_user"));
        assert!(!m("app::*", "other::f"));
        assert!(m("app::db::?oad", "app::db::load"));
        assert!(m("app::[dr]b::*", "app::db::x"));
        assert!(!m("app::[!d]b::*", "app::db::x"));
        assert!(m("f[0-9]", "f7"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
        assert!(m("<Vec<u8> as Summary>::\\*", "<Vec<u8> as Summary>::*"));
        assert!(m("checkout", "checkout"));
        assert!(!m("checkout", "checkout2"));
    }

    #[test]
    fn regexes_match_what_the_glob_matches() {
        let re = |p: &str| Glob::new(p).unwrap().to_regex();
        assert_eq!(re("*::checkout"), "^.*::checkout$");
        assert_eq!(re("app::db::?oad"), "^app::db::.oad$");
        assert_eq!(re("f[0-9a]"), "^f[0-9a]$");
        assert_eq!(re("f[!x-]"), "^f[^x\\-]$");
        assert_eq!(
            re("<Vec<u8> as S>::f(x).y+z|w$^{1}"),
            "^<Vec<u8> as S>::f\\(x\\)\\.y\\+z\\|w\\$\\^\\{1\\}$"
        );
        assert_eq!(re("a\\*b"), "^a\\*b$");
    }

    #[test]
    fn literals_are_the_one_name() {
        let lit = |p: &str| Glob::new(p).unwrap().literal();
        assert_eq!(lit("shop::checkout").as_deref(), Some("shop::checkout"));
        assert_eq!(lit("a\\*b").as_deref(), Some("a*b"));
        assert_eq!(lit("shop::*"), None);
        assert_eq!(lit("f[ab]"), None);
    }

    #[test]
    fn unclosed_set_is_a_usage_error() {
        assert_eq!(Glob::new("app::[ab").unwrap_err().code(), 2);
    }
}
