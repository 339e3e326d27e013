//! Against a real, throw-away Redis Cluster (3 primaries, a replica each): the fixture makes it,
//! and every fnmetrics connection to any of its nodes is refused at once with an error that
//! names the cluster (support is planned in `docs/cluster.md`).

use fnmetrics_core::ErrorKind;
use fnmetrics_sink_redis::{key_slot, RedisOptions, RedisQueue, RedisReader, RedisSink};
use fnmetrics_test_support::redis_cluster::RedisCluster;

#[test]
fn every_node_of_a_cluster_is_refused_naming_the_cluster() {
    let cluster = RedisCluster::start(3, 1);
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 6);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let slots: u32 = masters
        .iter()
        .flat_map(|m| &m.slots)
        .map(|&(a, b)| u32::from(b - a) + 1)
        .sum();
    assert_eq!(slots, 16_384);
    for m in &masters {
        let replicas = nodes
            .iter()
            .filter(|n| n.replica_of.as_deref() == Some(m.id.as_str()))
            .count();
        assert_eq!(replicas, 1, "{m:?}");
    }
    // Slots as the servers compute them.
    let mut c = redis::Client::open(cluster.url())
        .unwrap()
        .get_connection()
        .unwrap();
    for key in [
        "metrics_list",
        "{fnm-s3-0}metrics_list",
        "app:metrics:app::{odd} name",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "ünïcödé",
    ] {
        let theirs: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .unwrap();
        assert_eq!(key_slot(key.as_bytes()), theirs, "{key}");
    }
    for url in cluster.urls() {
        let errors = [
            RedisSink::connect(&url, RedisOptions::default()).unwrap_err(),
            RedisQueue::connect(&url, RedisOptions::default()).unwrap_err(),
            RedisReader::connect(&url, RedisOptions::default()).unwrap_err(),
        ];
        for e in errors {
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
            assert!(e.to_string().contains("Redis Cluster"), "{e}");
        }
    }
}
