//! `impl Trait` in argument and return position, also nested in the return type and in async
//! functions.
#![deny(warnings)]

use fnmetrics::measured;
use std::fmt::Display;

#[measured]
fn apply(f: impl Fn(u32) -> u32, x: u32) -> u32 {
    f(x)
}

#[measured]
fn evens(limit: u32) -> impl Iterator<Item = u32> {
    (0..limit).filter(|n| n % 2 == 0)
}

#[measured]
fn borrowed_iter(items: &[u8]) -> impl Iterator<Item = &u8> + '_ {
    items.iter().rev()
}

#[measured]
fn parse_display(input: &str) -> Result<impl Display, std::num::ParseIntError> {
    let n: i64 = input.parse()?;
    Ok(n * 2)
}

#[measured]
fn boxed_adder(n: u32) -> Box<impl Fn(u32) -> u32> {
    Box::new(move |x| x + n)
}

#[measured]
fn diverging_impl() -> impl Display {
    if true {
        return "early";
    }
    "late"
}

#[measured]
async fn async_impl(n: u32) -> impl Display {
    n + 1
}

#[measured]
async fn async_result_impl(input: &str) -> Result<impl Display, std::num::ParseIntError> {
    let n: u8 = input.parse()?;
    Ok(n)
}

fn main() {
    assert_eq!(apply(|x| x * 3, 2), 6);
    assert_eq!(evens(5).collect::<Vec<_>>(), vec![0, 2, 4]);
    assert_eq!(
        borrowed_iter(&[1, 2]).copied().collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(parse_display("21").unwrap().to_string(), "42");
    assert!(parse_display("x").is_err());
    assert_eq!(boxed_adder(1)(1), 2);
    assert_eq!(diverging_impl().to_string(), "early");
    assert_eq!(pollster::block_on(async_impl(1)).to_string(), "2");
    assert!(pollster::block_on(async_result_impl("300")).is_err());

    // The error is seen through `Result<impl Display, _>` too.
    let m = fnmetrics::get(concat!(module_path!(), "::parse_display")).unwrap();
    assert_eq!((m.calls, m.errors), (2, 1));
    let m = fnmetrics::get(concat!(module_path!(), "::async_result_impl")).unwrap();
    assert_eq!((m.calls, m.errors), (1, 1));
}
