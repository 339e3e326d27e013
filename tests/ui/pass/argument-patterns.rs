//! Arguments bound by patterns, `mut` and `_` arguments, and the function's inner attributes,
//! which still apply to the whole body.
#![deny(warnings)]

use fnmetrics::measured;

struct Point {
    x: i32,
    y: i32,
}

struct Meters(f64);

#[measured]
fn manhattan(Point { x, y }: Point, (dx, dy): (i32, i32)) -> i32 {
    (x + dx).abs() + (y + dy).abs()
}

#[measured]
fn double(Meters(m): Meters, _: &str, mut count: u32) -> f64 {
    count += 1;
    m * f64::from(count)
}

#[measured]
fn push_twice(mut items: Vec<u8>, mut next: impl FnMut() -> u8) -> Vec<u8> {
    items.push(next());
    items.push(next());
    items
}

#[measured]
fn inner_attributes() -> u8 {
    #![allow(unused_variables)]
    let unused = 1;
    2
}

fn main() {
    assert_eq!(manhattan(Point { x: 1, y: -2 }, (1, 0)), 4);
    assert_eq!(double(Meters(1.5), "ignored", 1), 3.0);
    let mut n = 0;
    assert_eq!(
        push_twice(Vec::new(), || {
            n += 1;
            n
        }),
        [1, 2]
    );
    assert_eq!(inner_attributes(), 2);
    for name in ["manhattan", "double", "push_twice", "inner_attributes"] {
        let name = format!("{}::{name}", module_path!());
        assert_eq!(fnmetrics::get(&name).map(|m| m.calls), Some(1), "{name}");
    }
}
