//! `fnmetrics forget GLOB [--yes]`.

use crate::{ok, record};
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
