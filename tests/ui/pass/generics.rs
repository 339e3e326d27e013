//! Generic functions and methods: type, lifetime and const parameters, where clauses. Every
//! instantiation shares one name.
#![deny(warnings)]

use fnmetrics::measured;
use std::fmt::Debug;

#[measured]
fn largest<T: PartialOrd + Copy>(items: &[T]) -> Option<T> {
    let mut best = *items.first()?;
    for &item in items {
        if item > best {
            best = item;
        }
    }
    Some(best)
}

#[measured]
fn parse_all<T, E>(inputs: &[&str]) -> Result<Vec<T>, E>
where
    T: std::str::FromStr<Err = E>,
    E: Debug,
{
    inputs.iter().map(|s| s.parse()).collect()
}

#[measured]
fn sum_array<const N: usize>(values: [u32; N]) -> u32 {
    values.iter().sum()
}

struct Stack<T> {
    items: Vec<T>,
}

impl<T: Clone> Stack<T>
where
    T: Debug,
{
    #[measured]
    fn push(&mut self, item: T) {
        self.items.push(item);
    }

    #[measured]
    fn peek_or<U: Into<T>>(&self, fallback: U) -> T {
        self.items
            .last()
            .cloned()
            .unwrap_or_else(|| fallback.into())
    }
}

fn main() {
    assert_eq!(largest(&[1, 5, 3]), Some(5));
    assert_eq!(largest(&[1.5, 0.5]), Some(1.5));
    assert_eq!(largest::<u8>(&[]), None);
    let m = fnmetrics::get(concat!(module_path!(), "::largest")).unwrap();
    assert_eq!((m.calls, m.errors), (3, 0));

    assert_eq!(parse_all::<u8, _>(&["1", "2"]).unwrap(), vec![1, 2]);
    assert!(parse_all::<i64, _>(&["x"]).is_err());
    let m = fnmetrics::get(concat!(module_path!(), "::parse_all")).unwrap();
    assert_eq!((m.calls, m.errors), (2, 1));

    assert_eq!(sum_array([1, 2, 3]), 6);
    assert_eq!(sum_array([1; 10]), 10);
    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::sum_array"))
            .unwrap()
            .calls,
        2
    );

    let mut numbers = Stack { items: vec![1u64] };
    numbers.push(2);
    assert_eq!(numbers.peek_or(0u8), 2);
    let mut words = Stack::<String> { items: Vec::new() };
    words.push("a".to_owned());
    assert_eq!(words.peek_or("none"), "a");
    // `Stack<u64>` and `Stack<String>` share the names `<module>::Stack::push` and `::peek_or`.
    let m = fnmetrics::get(concat!(module_path!(), "::Stack::push")).unwrap();
    assert_eq!(m.calls, 2);
    assert_eq!(
        fnmetrics::get(concat!(module_path!(), "::Stack::peek_or"))
            .unwrap()
            .calls,
        2
    );
}
