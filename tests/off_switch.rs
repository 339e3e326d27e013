//! The off switches: `fnmetrics::set_enabled(false)` at run time, the `disabled` feature at compile
//! time (`cargo test --features disabled --test off_switch`).
//!
//! A binary of its own: the run-time switch is process-wide, so turning it off beside other tests
//! would lose their records.

use fnmetrics::measured;
use std::future::Future;

#[measured]
fn sync_call(fail: bool) -> Result<(), String> {
    if fail {
        return Err("failed".to_owned());
    }
    Ok(())
}

#[measured]
async fn async_call() -> u8 {
    1
}

#[measured]
#[allow(clippy::manual_async_fn)] // With `disabled`, this is the function as written.
fn future_call() -> impl Future<Output = u8> {
    async { 2 }
}

fn call_all() {
    sync_call(false).unwrap();
    sync_call(true).unwrap_err();
    assert_eq!(pollster::block_on(async_call()), 1);
    assert_eq!(pollster::block_on(future_call()), 2);
}

fn calls(function: &str) -> Option<u64> {
    fnmetrics::get(&format!("{}::{function}", module_path!())).map(|m| m.calls)
}

#[cfg(not(feature = "disabled"))]
#[test]
fn recording_stops_while_switched_off_at_run_time() {
    assert!(fnmetrics::is_enabled());
    call_all();
    fnmetrics::set_enabled(false);
    assert!(!fnmetrics::is_enabled());
    call_all();
    fnmetrics::set_enabled(true);
    let m = fnmetrics::get(concat!(module_path!(), "::sync_call")).unwrap();
    assert_eq!((m.calls, m.errors), (2, 1));
    assert_eq!(calls("async_call"), Some(1));
    assert_eq!(calls("future_call"), Some(1));

    call_all();
    assert_eq!(calls("sync_call"), Some(4));
}

#[cfg(feature = "disabled")]
#[test]
fn the_disabled_feature_leaves_functions_as_written() {
    assert!(fnmetrics::is_enabled());
    call_all();
    for function in ["sync_call", "async_call", "future_call"] {
        assert_eq!(calls(function), None, "{function}");
    }
    // The future is the body's own: nothing wraps it.
    let bare = async { 2u8 };
    assert_eq!(
        std::mem::size_of_val(&future_call()),
        std::mem::size_of_val(&bare)
    );
}
