//! Async functions and methods: `?`, early `return` with a coercion, borrowed results, `Send`
//! futures.
#![deny(warnings)]

use fnmetrics::measured;
use std::error::Error;
use std::fmt::Display;

#[measured]
async fn parse(input: &str) -> Result<u32, Box<dyn Error + Send + Sync>> {
    let n: u32 = input.trim().parse()?;
    if n == 0 {
        return Err("zero".into());
    }
    Ok(n)
}

#[measured]
async fn pick(flag: bool) -> Box<dyn Display + Send> {
    if flag {
        return Box::new(1u8);
    }
    Box::new("two")
}

#[measured]
async fn no_return_type(log: &mut Vec<&'static str>) {
    if log.is_empty() {
        log.push("first");
        return;
    }
    log.push("again");
}

struct Counter {
    hits: Vec<u32>,
}

impl Counter {
    #[measured]
    async fn first_mut(&mut self) -> &mut u32 {
        &mut self.hits[0]
    }

    #[measured]
    async fn consume(self) -> usize {
        self.hits.len()
    }
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

fn main() {
    assert_eq!(pollster::block_on(assert_send(parse("7"))).unwrap(), 7);
    assert!(pollster::block_on(parse("0")).is_err());
    assert!(pollster::block_on(parse("x")).is_err());
    assert_eq!(pollster::block_on(pick(true)).to_string(), "1");
    assert_eq!(pollster::block_on(pick(false)).to_string(), "two");
    let mut log = Vec::new();
    pollster::block_on(no_return_type(&mut log));
    pollster::block_on(no_return_type(&mut log));
    assert_eq!(log, ["first", "again"]);
    let mut counter = Counter { hits: vec![1] };
    *pollster::block_on(counter.first_mut()) += 1;
    assert_eq!(pollster::block_on(assert_send(counter.consume())), 1);

    let m = fnmetrics::get(concat!(module_path!(), "::parse")).unwrap();
    assert_eq!((m.calls, m.errors, m.cancelled), (3, 2, 0));
    let m = fnmetrics::get(concat!(module_path!(), "::Counter::first_mut")).unwrap();
    assert_eq!(m.calls, 1);
}
