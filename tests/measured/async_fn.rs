//! `async fn`: outcomes, times, `#[async_trait]` methods.

use crate::{counts, MyErr, YieldOnce};
use fnmetrics::measured;
use std::time::Duration;

#[measured]
async fn async_fallible(fail: bool) -> Result<u8, MyErr> {
    YieldOnce::default().await;
    if fail {
        return Err(MyErr);
    }
    Ok(1)
}

#[measured]
async fn async_explode() -> u8 {
    panic!("async boom")
}

#[test]
fn async_outcomes_are_counted() {
    assert_eq!(pollster::block_on(async_fallible(false)), Ok(1));
    assert_eq!(pollster::block_on(async_fallible(true)), Err(MyErr));
    assert_eq!(counts(&metrics!("async_fallible")), (2, 1, 0, 0));

    assert!(std::panic::catch_unwind(|| pollster::block_on(async_explode())).is_err());
    assert_eq!(counts(&metrics!("async_explode")), (1, 1, 1, 0));
}

/// Pending on the first poll, ready on the second.

#[measured]
async fn nap_async(millis: u64) {
    std::thread::sleep(Duration::from_millis(millis));
}

#[test]
fn async_call_times_cover_the_body() {
    pollster::block_on(nap_async(5));
    assert!(metrics!("nap_async").min() >= Duration::from_millis(5));
}

mod async_trait_methods {
    use super::{MyErr, YieldOnce};
    use async_trait::async_trait;
    use fnmetrics::measured;

    #[async_trait]
    pub(crate) trait Fetch {
        async fn fetch(&self, fail: bool) -> Result<u8, MyErr>;
    }

    pub(crate) struct Client;

    #[async_trait]
    impl Fetch for Client {
        #[measured]
        async fn fetch(&self, fail: bool) -> Result<u8, MyErr> {
            YieldOnce::default().await;
            if fail {
                return Err(MyErr);
            }
            Ok(1)
        }
    }
}

#[test]
fn async_trait_methods_are_measured_inside_their_future() {
    use async_trait_methods::{Client, Fetch};
    assert_eq!(pollster::block_on(Client.fetch(false)), Ok(1));
    assert_eq!(pollster::block_on(Client.fetch(true)), Err(MyErr));

    // Cancelled mid-await: the guard lives in the boxed future.
    let mut future = Client.fetch(false);
    assert!(crate::poll_once(&mut future).is_pending());
    drop(future);

    let m = metrics!("async_trait_methods::<Client as Fetch>::fetch");
    assert_eq!(counts(&m), (2, 1, 0, 1));
}
