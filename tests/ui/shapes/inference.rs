//! Bodies whose type comes from the declared return type: the attribute must not change what the
//! compiler infers. Compiled with and without `#[measured]`.
#![deny(warnings)]
#![allow(clippy::unused_unit)]
// `?` converting an error through the return type is the shape under test.
#![allow(clippy::unnecessary_fallible_conversions)]

use fnmetrics::measured;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

struct Client;

impl Client {
    fn call<R: Default>(&self, _method: &str) -> R {
        R::default()
    }

    #[measured]
    fn ping(&self) {
        self.call("ping")
    }

    #[measured]
    fn count(&self) -> u64 {
        self.call("count")
    }

    #[measured]
    fn words(&self) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(async move { ["a", "b"].iter().map(|s| s.to_string()).collect() })
    }

    #[measured]
    async fn ping_async(&self) {
        self.call("ping")
    }
}

#[measured]
fn defaulted() -> HashMap<String, u32> {
    Default::default()
}

#[measured]
fn converted(n: u8) -> u64 {
    n.into()
}

#[measured]
fn converted_result(n: u8) -> Result<u64, std::num::TryFromIntError> {
    Ok(u16::try_from(n)?.into())
}

#[measured]
fn collected(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[measured]
fn collected_result(items: &[&str]) -> Result<Vec<u32>, std::num::ParseIntError> {
    items.iter().map(|s| s.parse()).collect()
}

#[measured]
async fn defaulted_async() -> HashMap<String, u32> {
    Default::default()
}

#[measured]
async fn converted_async(n: u8) -> u64 {
    n.into()
}

#[measured]
async fn collected_async(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[measured]
fn parsed(s: &str) -> Result<u32, std::num::ParseIntError> {
    s.parse()
}

#[measured]
async fn parsed_async(s: &str) -> Result<u32, std::num::ParseIntError> {
    s.parse()
}

#[measured]
fn unit_tail() -> () {
    Default::default()
}

#[measured]
fn future_default() -> impl Future<Output = u32> {
    async { Default::default() }
}

pub(crate) fn main() {
    let client = Client;
    client.ping();
    assert_eq!(client.count(), 0);
    assert_eq!(pollster::block_on(client.words()), ["a", "b"]);
    pollster::block_on(client.ping_async());
    assert!(defaulted().is_empty());
    assert_eq!(converted(1), 1);
    assert_eq!(converted_result(1).unwrap(), 1);
    assert_eq!(collected(2), [0, 1]);
    assert!(collected_result(&["1", "x"]).is_err());
    assert!(pollster::block_on(defaulted_async()).is_empty());
    assert_eq!(pollster::block_on(converted_async(2)), 2);
    assert_eq!(pollster::block_on(collected_async(1)), [0]);
    assert_eq!(parsed("3").unwrap(), 3);
    assert!(pollster::block_on(parsed_async("x")).is_err());
    unit_tail();
    assert_eq!(pollster::block_on(future_default()), 0);
}
