//! Borrowed arguments and results: elided, named and bounded lifetimes, and a result borrowed
//! through `&mut self`.
#![deny(warnings)]

use fnmetrics::measured;
use std::borrow::Cow;

struct Doc {
    title: String,
    words: Vec<String>,
}

struct Slice<'a>(&'a str);

impl Doc {
    #[measured]
    fn title(&self) -> &str {
        &self.title
    }

    #[measured]
    fn first_word_mut(&mut self) -> Option<&mut String> {
        self.words.first_mut()
    }

    #[measured]
    fn slice(&self) -> Slice<'_> {
        Slice(&self.title[..1])
    }

    // Elision picks `&self`'s lifetime for the result, not `other`'s.
    #[measured]
    fn title_or(&self, other: &str) -> &str {
        if self.title.is_empty() {
            return "untitled";
        }
        let _ = other;
        &self.title
    }

    #[measured]
    fn longer<'a>(&'a self, other: &'a str) -> &'a str {
        if other.len() > self.title.len() {
            return other;
        }
        &self.title
    }
}

#[measured]
fn first<'a, 'b: 'a>(a: &'a str, _b: &'b str) -> &'a str {
    a.split(' ').next().unwrap_or(a)
}

#[measured]
fn normalise(input: &str) -> Cow<'_, str> {
    if input.contains(' ') {
        Cow::Owned(input.replace(' ', "_"))
    } else {
        Cow::Borrowed(input)
    }
}

#[measured]
fn last_mut<T>(items: &mut [T]) -> Option<&mut T> {
    items.last_mut()
}

#[measured]
fn forever(s: &'static str) -> &'static str {
    s
}

fn main() {
    let mut doc = Doc {
        title: "Title".to_owned(),
        words: vec!["a".to_owned()],
    };
    assert_eq!(doc.title(), "Title");
    doc.first_word_mut().unwrap().push('b');
    assert_eq!(doc.words[0], "ab");
    assert_eq!(doc.slice().0, "T");
    let title = {
        let other = String::from("other");
        doc.title_or(&other)
    };
    assert_eq!(title, "Title");
    assert_eq!(doc.longer("a much longer title"), "a much longer title");
    assert_eq!(first("a b", "c"), "a");
    assert_eq!(normalise("a b"), "a_b");
    let mut items = [1, 2];
    *last_mut(&mut items).unwrap() = 3;
    assert_eq!(items, [1, 3]);
    assert_eq!(forever("x"), "x");
    let m = fnmetrics::get(concat!(module_path!(), "::Doc::first_word_mut")).unwrap();
    assert_eq!(m.calls, 1);
}
