//! The commands over a real Redis Cluster (3 primaries): they read every shard.

use crate::ok;
use fnmetrics::redis::{RedisOptions, RedisSink};
use fnmetrics::sink::{FlushBatch, IdGen, Sink};
use fnmetrics::Snapshot;
use fnmetrics_test_support::redis_cluster::RedisCluster;

#[test]
fn status_top_forget_and_dead_letters_read_every_shard() {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let mut sink = RedisSink::connect(&url, RedisOptions::default()).unwrap();
    let mut ids = IdGen::with_instance(21);
    // 24 flushes of two functions' aggregates, spread over the shards by their ids.
    for f in 0..24u64 {
        let mut a = Snapshot::new("shards::a");
        a.record(1_000, f.is_multiple_of(4));
        let mut b = Snapshot::new("shards::b");
        b.record(2_000, false);
        sink.write(&FlushBatch {
            flush_id: ids.next_id(f),
            entries: Vec::new(),
            aggregates: vec![a, b],
        })
        .unwrap();
    }
    let top = ok(&["top", "--once", "--redis", &url, "--fn", "shards::*"]);
    let row = |name: &str| -> Vec<String> {
        top.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in\n{top}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("shards::a")[1..3], ["24", "6"], "{top}");
    assert_eq!(row("shards::b")[1..3], ["24", "0"], "{top}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--redis", &url, "--format", "json"])).unwrap();
    assert_eq!(status["functions"], 2, "{status:#}");
    assert_eq!(status["entries_waiting"], 0, "{status:#}");
    let dead = ok(&["dead-letters", "list", "--redis", &url]);
    assert!(!dead.contains("error"), "{dead}");
    let gone = ok(&["forget", "shards::b", "--yes", "--redis", &url]);
    assert!(gone.contains("removed shards::b"), "{gone}");
    let top = ok(&["top", "--once", "--redis", &url, "--fn", "shards::*"]);
    assert!(
        !top.contains("shards::b") && top.contains("shards::a"),
        "{top}"
    );
}
