//! The function's own code is compiled as written: `use` declarations in the body, names that
//! clash with what the expansion uses, items in the body. Compiled with and without `#[measured]`.
#![deny(warnings)]
// A labelled loop left by `break 'outer` is the shape under test.
#![allow(clippy::never_loop)]

use fnmetrics::measured;

#[allow(dead_code)]
enum Value {
    String(String),
    Number(u64),
    Bool(bool),
}

#[measured]
fn render(v: Value) -> String {
    use Value::*;
    match v {
        String(s) => s,
        Number(n) => n.to_string(),
        Bool(b) => b.to_string(),
    }
}

#[measured]
async fn render_async(v: Value) -> String {
    use Value::*;
    match v {
        String(s) => s,
        Number(n) => n.to_string(),
        Bool(b) => b.to_string(),
    }
}

mod shadow {
    #[allow(dead_code)]
    pub(crate) enum Kind {
        Result,
        Option,
        Vec,
    }
}

#[measured]
async fn shadowed_result(fail: bool) -> Result<u8, String> {
    #[allow(unused_imports)]
    use shadow::Kind::*;
    if fail {
        return Err("no".to_owned());
    }
    Ok(1)
}

#[measured]
async fn items_in_body() -> u32 {
    const BASE: u32 = 40;
    fn helper() -> u32 {
        2
    }
    struct Local(u32);
    Local(BASE + helper()).0
}

#[measured]
fn labelled(limit: u32) -> u32 {
    let mut n = 0;
    'outer: loop {
        loop {
            n += 1;
            if n >= limit {
                break 'outer n;
            }
        }
    }
}

#[measured]
fn named_like_the_expansion(
    __fnmetrics_guard: u32,
    __fnmetrics_ret: u32,
    __fnmetrics_body: u32,
) -> u32 {
    __fnmetrics_guard + __fnmetrics_ret + __fnmetrics_body
}

#[measured]
#[allow(clippy::needless_return)]
fn nested_closures_return(items: &[u32]) -> Option<u32> {
    let double = |n: u32| -> u32 {
        return n * 2;
    };
    for &n in items {
        if n > 2 {
            return Some(double(n));
        }
    }
    None
}

pub(crate) fn main() {
    assert_eq!(render(Value::String("s".into())), "s");
    assert_eq!(pollster::block_on(render_async(Value::Number(1))), "1");
    assert!(pollster::block_on(shadowed_result(true)).is_err());
    assert_eq!(pollster::block_on(items_in_body()), 42);
    assert_eq!(labelled(3), 3);
    assert_eq!(named_like_the_expansion(1, 2, 3), 6);
    assert_eq!(nested_closures_return(&[1, 3]), Some(6));
}
