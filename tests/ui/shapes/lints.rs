//! One-line bodies, the shape users write most and lints look at hardest: no lint may fire in
//! user code because of the attribute (a one-line async body used to get `unused_braces`, whose
//! suggested fix does not compile). Compiled with and without `#[measured]`, with `-D warnings`,
//! and by clippy (tests/shapes_lint.rs).
#![deny(warnings)]

use fnmetrics::measured;

#[derive(Debug)]
pub(crate) struct Declined;

#[measured]
async fn one_line_result(x: bool) -> Result<u8, Declined> {
    if x {
        Err(Declined)
    } else {
        Ok(1)
    }
}

#[measured]
async fn one_line_value() -> u8 {
    1
}

#[measured]
async fn one_line_unit() {}

#[measured(sample = 64)]
async fn one_line_sampled(x: u64) -> u64 {
    x + 1
}

#[measured]
fn sync_one_line(x: u8) -> u8 {
    x + 1
}

#[measured(sample = 8)]
fn sync_sampled(x: bool) -> Result<(), Declined> {
    if x {
        Err(Declined)
    } else {
        Ok(())
    }
}

struct Counter(u64);

#[measured(sample = 4)]
impl Counter {
    fn bump(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
    async fn get(&self) -> u64 {
        self.0
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

pub(crate) fn main() {
    assert!(block_on(one_line_result(true)).is_err());
    assert_eq!(block_on(one_line_value()), 1);
    block_on(one_line_unit());
    assert_eq!(block_on(one_line_sampled(1)), 2);
    assert_eq!(sync_one_line(1), 2);
    assert!(sync_sampled(true).is_err());
    let mut c = Counter(0);
    assert_eq!(c.bump(), 1);
    assert_eq!(block_on(c.get()), 1);
}
