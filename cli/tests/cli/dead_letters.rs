//! `fnmetrics dead-letters list|requeue|purge`.

use crate::{ok, record};
use fnmetrics::measured;
use fnmetrics::redis::{RedisOptions, RedisQueue};
use fnmetrics_test_support::redis::RedisServer;
use std::time::Duration;

#[measured(name = "dead_letters::work")]
fn work() {}

/// Three undecodable elements set aside by a drainer, as stage 2 does.
fn three_dead_letters(redis: &RedisServer) -> RedisQueue {
    let mut c = redis.client();
    for v in [7u8, 8, 9] {
        redis::cmd("RPUSH")
            .arg("metrics_list")
            .arg(&[v, 1, 2, 3][..])
            .query::<()>(&mut c)
            .unwrap();
    }
    let mut queue = RedisQueue::connect(&redis.url(), RedisOptions::default()).unwrap();
    let claim = queue.claim(100, Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(claim.undecodable.len(), 3);
    queue.ack_with(&claim, &claim.dead_letters()).unwrap();
    queue
}

#[test]
fn dead_letters_are_listed_requeued_and_purged() {
    fnmetrics_test_support::own_process!();
    let redis = RedisServer::start();
    let url = redis.url();
    assert!(ok(&["dead-letters", "list", "--redis", &url]).contains("no dead letters"));
    let mut queue = three_dead_letters(&redis);

    let table = ok(&["dead-letters", "list", "--redis", &url]);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table.contains("undecodable") && table.contains("unknown format version 7"),
        "{table}"
    );
    let limited = ok(&["dead-letters", "list", "--redis", &url, "--limit", "2"]);
    assert!(limited.contains("2 of 3 shown"), "{limited}");
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "dead-letters",
        "list",
        "--redis",
        &url,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(json[0]["kind"], "undecodable");
    assert_eq!(json[0]["payload_bytes"], 4);

    let out = ok(&["dead-letters", "requeue", "--redis", &url, "--limit", "1"]);
    assert!(
        out.contains("re-queued 1 dead letters") && out.contains("2 left"),
        "{out}"
    );
    assert_eq!(queue.dead_letter_counts().unwrap().held, 2);
    let mut c = redis.client();
    let waiting: u64 = redis::cmd("LLEN")
        .arg("metrics_list")
        .query(&mut c)
        .unwrap();
    assert_eq!(waiting, 1, "back on the entry list");

    let out = ok(&["dead-letters", "purge", "--redis", &url]);
    assert!(
        out.contains("purged 2 dead letters") && out.contains("0 left"),
        "{out}"
    );
    assert_eq!(queue.dead_letter_counts().unwrap().held, 0);

    // A rejected real entry shows its function: write one the way a drainer sets it aside.
    record(&redis, None, work);
    let claim = queue.claim(100, Duration::from_secs(60)).unwrap().unwrap();
    let dead: Vec<_> = claim
        .entries
        .iter()
        .map(|e| {
            fnmetrics::redis::DeadLetter::new(
                fnmetrics::redis::DeadLetterKind::Rejected,
                "23514: new row violates check constraint",
                e.encode(),
            )
        })
        .collect();
    // The requeued garbage element came along; drop it into the dead letters too.
    let mut all = claim.dead_letters();
    all.extend(dead);
    queue.ack_with(&claim, &all).unwrap();
    let table = ok(&["dead-letters", "list", "--redis", &url]);
    assert!(
        table
            .lines()
            .any(|l| l.contains("rejected") && l.contains("dead_letters::work")),
        "{table}"
    );
}
