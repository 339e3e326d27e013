//! `fnmetrics forget GLOB [--yes]`.

use crate::{ok, record, record_with_prefix};
use fnmetrics::measured;
use fnmetrics::redis::{RedisOptions, RedisReader};
use fnmetrics_test_support::redis::RedisServer;

#[measured(name = "forget::old::a")]
fn a() {}
#[measured(name = "forget::old::b")]
fn b() {}
#[measured(name = "forget::keep")]
fn keep() {}

#[test]
fn forget_lists_without_yes_and_removes_with_it() {
    fnmetrics_test_support::own_process!();
    let redis = RedisServer::start();
    let url = redis.url();
    record(&redis, None, || {
        a();
        b();
        keep();
    });
    let names = || {
        RedisReader::connect(&url, RedisOptions::default())
            .unwrap()
            .functions()
            .unwrap()
    };
    assert!(names().contains(&"forget::old::a".to_owned()));

    let dry = ok(&["forget", "forget::old::*", "--redis", &url]);
    assert!(dry.contains("would remove 2 functions"), "{dry}");
    assert!(
        dry.contains("forget::old::a") && dry.contains("forget::old::b"),
        "{dry}"
    );
    assert!(!dry.contains("forget::keep"), "{dry}");
    assert!(
        names().contains(&"forget::old::a".to_owned()),
        "a dry run removes nothing"
    );

    let done = ok(&["forget", "forget::old::*", "--yes", "--redis", &url]);
    assert!(
        done.contains("removed forget::old::a") && done.contains("removed forget::old::b"),
        "{done}"
    );
    let left = names();
    assert!(
        !left.iter().any(|n| n.starts_with("forget::old::")),
        "{left:?}"
    );
    assert!(left.contains(&"forget::keep".to_owned()));
    let mut c = redis.client();
    let exists: u64 = redis::cmd("EXISTS")
        .arg("app:metrics:forget::old::a")
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, 0, "the aggregate hash is gone");
    let kept: u64 = redis::cmd("EXISTS")
        .arg("app:metrics:forget::keep")
        .query(&mut c)
        .unwrap();
    assert_eq!(kept, 1);

    assert!(ok(&["forget", "forget::old::*", "--redis", &url]).contains("no function"));
}

#[measured(name = "forget::prefixed")]
fn prefixed() {}

#[test]
fn key_prefix_reaches_every_key_status_and_forget_use() {
    fnmetrics_test_support::own_process!();
    let redis = RedisServer::start();
    let url = redis.url();
    record_with_prefix(&redis, None, "{shop}:", || {
        for _ in 0..5 {
            prefixed();
        }
    });
    let args = |extra: &[&str]| {
        let mut v = vec!["--redis", url.as_str(), "--key-prefix", "{shop}:"];
        v.extend_from_slice(extra);
        ok(&v)
    };
    let st: serde_json::Value =
        serde_json::from_str(&args(&["status", "--format", "json"])).unwrap();
    assert_eq!(st["entries_waiting"], 5, "{st:#}");
    assert!(st["drain_lag_seconds"].is_number(), "{st:#}");
    // Without the prefix there is nothing.
    let bare: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--redis", &url, "--format", "json"])).unwrap();
    assert_eq!(bare["entries_waiting"], 0);

    assert!(args(&["top", "--once"]).contains("forget::prefixed"));
    assert!(args(&["forget", "forget::prefixed", "--yes"]).contains("removed forget::prefixed"));
    let mut c = redis.client();
    let exists: u64 = redis::cmd("EXISTS")
        .arg("{shop}:app:metrics:forget::prefixed")
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, 0);
    let member: u64 = redis::cmd("SISMEMBER")
        .arg("{shop}:fnmetrics:functions")
        .arg("forget::prefixed")
        .query(&mut c)
        .unwrap();
    assert_eq!(member, 0);
}
