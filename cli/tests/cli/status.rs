//! `fnmetrics status`: entries waiting, claims held, dead letters, drain lag.

use crate::{ok, record};
use fnmetrics::measured;
use fnmetrics::redis::{RedisOptions, RedisQueue};
use fnmetrics_test_support::redis::RedisServer;
use std::time::Duration;

#[measured(name = "status::work")]
fn work() {}

fn status(url: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["status", "--redis", url, "--format", "json"])).unwrap()
}

#[test]
fn status_counts_waiting_entries_claims_and_dead_letters() {
    fnmetrics_test_support::own_process!();
    let redis = RedisServer::start();
    let url = redis.url();
    let empty = status(&url);
    assert_eq!(empty["entries_waiting"], 0);
    assert_eq!(empty["drain_lag_seconds"], serde_json::Value::Null);

    record(&redis, None, || {
        for _ in 0..30 {
            work();
        }
    });
    let s = status(&url);
    assert_eq!(s["entries_waiting"], 30, "{s:#}");
    assert_eq!(s["claims_held"], 0);
    assert_eq!(s["dead_letters"], 0);
    let lag = s["drain_lag_seconds"].as_f64().expect("a lag");
    assert!((0.0..60.0).contains(&lag), "{s:#}");
    assert!(s["functions"].as_u64().unwrap() >= 1);

    // A drainer claims the frame and has not acknowledged it yet: still waiting, one claim.
    let mut queue = RedisQueue::connect(&url, RedisOptions::default()).unwrap();
    let claim = queue.claim(10, Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(claim.entries.len(), 30);
    // Something undecodable is set aside as a dead letter.
    let mut c = redis.client();
    redis::cmd("RPUSH")
        .arg("metrics_list")
        .arg(&[9u8, 9, 9][..])
        .query::<()>(&mut c)
        .unwrap();
    let bad = queue.claim(10, Duration::from_secs(60)).unwrap().unwrap();
    queue.ack_with(&bad, &bad.dead_letters()).unwrap();

    let s = status(&url);
    assert_eq!(s["entries_waiting"], 30, "{s:#}");
    assert_eq!(s["claims_held"], 1, "{s:#}");
    assert_eq!(s["claims_expired"], 0, "{s:#}");
    assert_eq!(s["dead_letters"], 1, "{s:#}");
    assert_eq!(
        s["drain_lag_seconds"],
        serde_json::Value::Null,
        "the list is empty"
    );

    let table = ok(&["status", "--redis", &url]);
    for line in [
        "entries waiting:  30",
        "claims held:      1",
        "dead letters:     1",
    ] {
        assert!(table.contains(line), "{table}");
    }
}

#[test]
fn status_counts_the_hashes_that_do_not_decode() {
    let redis = RedisServer::start();
    let url = redis.url();
    assert_eq!(status(&url)["undecodable_hashes"], 0);
    crate::top::seed_a_good_and_a_bad_hash(&redis);
    let s = status(&url);
    assert_eq!(s["undecodable_hashes"], 1, "{s:#}");
    assert_eq!(s["functions"], 2, "{s:#}");
    let table = ok(&["status", "--redis", &url]);
    assert!(
        table.contains("functions:        2 (1 hash does not decode: skipped"),
        "{table}"
    );
}
