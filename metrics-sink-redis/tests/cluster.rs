//! Against a real, throw-away Redis Cluster (3 primaries, a replica each): flushes spread over
//! hash-tagged shards, read back whole from any node, claimed and acknowledged shard by shard;
//! and the settings a cluster cannot take, refused with errors that name it.

use fnmetrics_core::{EntryRecord, ErrorKind, FlushBatch, IdGen, Sink, Snapshot};
use fnmetrics_sink_redis::{
    key_slot, ChangeCursor, ClusterMode, RedisOptions, RedisQueue, RedisReader, RedisSink,
};
use fnmetrics_test_support::redis_cluster::RedisCluster;
use std::time::Duration;

/// A flush of `n` entries of `name` (calls counted in its aggregate), id from `seq`.
fn flush(ids: &mut IdGen, seq: u64, name: &str, n: usize) -> FlushBatch {
    let mut delta = Snapshot::new(name);
    let entries: Vec<EntryRecord> = (0..n)
        .map(|i| {
            delta.record(1_000 + i as u64, i % 5 == 0);
            EntryRecord {
                id: ids.next_id(1_700_000_000_000 + seq),
                func_name: name.into(),
                execution_time: Duration::from_nanos(1_000 + i as u64),
                error_occurred: i % 5 == 0,
                created_at_micros: 1_700_000_000_000_000 + i as i64,
                weight: 1,
                source: Default::default(),
            }
        })
        .collect();
    let mut flush_id = ids.next_id(seq);
    flush_id[..8].copy_from_slice(&seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    FlushBatch {
        flush_id,
        entries,
        aggregates: vec![delta],
    }
}

#[test]
fn a_cluster_takes_flushes_over_its_shards_and_gives_them_back_whole() {
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

    // 30 flushes of 100 entries through one node.
    let urls = cluster.urls();
    let mut sink = RedisSink::connect(&urls[0], RedisOptions::default()).unwrap();
    let mut ids = IdGen::with_instance(4);
    let batches: Vec<FlushBatch> = (0..30).map(|s| flush(&mut ids, s, "c::f", 100)).collect();
    for b in &batches {
        sink.write(b).unwrap();
    }
    // A retry applies nothing.
    sink.write(&batches[3]).unwrap();
    // Read from another node: the shards' shares add up.
    let mut reader = RedisReader::connect(&urls[2], RedisOptions::default()).unwrap();
    assert_eq!(reader.functions().unwrap(), ["c::f"]);
    // The change log of every shard: c::f once, then nothing until a flush touches it again.
    let mut cursor = ChangeCursor::default();
    assert_eq!(reader.changed(&mut cursor).unwrap(), ["c::f"]);
    assert!(reader.changed(&mut cursor).unwrap().is_empty());
    let mut g = flush(&mut ids, 99, "c::g", 1);
    g.entries.clear();
    sink.write(&g).unwrap();
    assert_eq!(reader.changed(&mut cursor).unwrap(), ["c::g"]);
    assert_eq!(reader.forget(&["c::g".to_owned()]).unwrap(), 1);
    let f = reader.get("c::f").unwrap().expect("c::f");
    assert_eq!((f.calls, f.errors), (3_000, 600));
    assert_eq!(f.histogram().count(), 3_000);
    // get_many sums the shards too (a cluster keeps the shard path, not one plain connection).
    let names = ["c::f", "c::g"].map(String::from);
    assert_eq!(reader.get_many(&names).unwrap(), [Some(f), None]);

    // Claimed shard by shard, every entry once.
    let mut queue = RedisQueue::connect(&urls[4], RedisOptions::default()).unwrap();
    assert_eq!(queue.pending_len().unwrap(), 3_000);
    let mut seen = std::collections::BTreeSet::new();
    let mut shards = std::collections::BTreeSet::new();
    while let Some(claim) = queue.claim(1_000, Duration::from_secs(30)).unwrap() {
        shards.insert(claim.shard);
        for e in &claim.entries {
            assert!(seen.insert(e.id), "an entry claimed twice");
        }
        assert!(queue.ack(&claim).unwrap());
    }
    assert_eq!(seen.len(), 3_000);
    assert!(shards.len() >= 6, "claims came from {shards:?}");
    assert_eq!(queue.pending_len().unwrap(), 0);
    let o = queue.overview().unwrap();
    assert_eq!((o.entries_waiting, o.functions, o.claims_held), (0, 1, 0));
    // Forgotten in every shard.
    assert_eq!(reader.forget(&["c::f".to_owned()]).unwrap(), 1);
    assert!(reader.get("c::f").unwrap().is_none());
}

#[test]
fn what_a_cluster_cannot_take_is_refused_naming_the_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let check = |e: fnmetrics_core::Error, says: &str| {
        assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
        assert!(e.kind().fails_start());
        let text = e.to_string();
        assert!(
            text.contains("Redis Cluster") && text.contains(says),
            "{text}"
        );
    };
    let standalone = RedisOptions::default().with_cluster(ClusterMode::Standalone);
    check(
        RedisSink::connect(&url, standalone.clone()).unwrap_err(),
        "Standalone",
    );
    check(
        RedisQueue::connect(&url, standalone.clone()).unwrap_err(),
        "Standalone",
    );
    check(
        RedisReader::connect(&url, standalone).unwrap_err(),
        "Standalone",
    );
    check(
        RedisSink::connect(&url, RedisOptions::default().with_key_prefix("{app}:")).unwrap_err(),
        "brace",
    );
    check(
        RedisSink::connect(&format!("{url}3"), RedisOptions::default()).unwrap_err(),
        "database",
    );
    // Replicas required where there are none: applied on the primary, but not delivered (the
    // flusher retries it, and it is applied once); none required: delivered.
    let mut ids = IdGen::with_instance(8);
    let b = flush(&mut ids, 1, "c::acked", 3);
    let mut strict =
        RedisSink::connect(&url, RedisOptions::default().with_replica_acks(1)).unwrap();
    let e = strict.write(&b).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(!e.is_unsent() && e.to_string().contains("replicas"), "{e}");
    let mut lax = RedisSink::connect(&url, RedisOptions::default().with_replica_acks(0)).unwrap();
    lax.write(&b).unwrap();
    let f = RedisReader::connect(&url, RedisOptions::default())
        .unwrap()
        .get("c::acked")
        .unwrap()
        .expect("applied");
    assert_eq!(f.calls, 3, "applied once");
    // The first process decided the shard count; another one is refused.
    RedisSink::connect(&url, RedisOptions::default().with_shards(8)).unwrap();
    check(
        RedisSink::connect(&url, RedisOptions::default().with_shards(4)).unwrap_err(),
        "shards",
    );
}

/// A regression test: one shard's share of a function's aggregates that does not decode (a
/// field that is not a number) failed the fleet read whole.
#[test]
fn a_share_that_does_not_decode_skips_its_function_and_the_others_are_read() {
    let mut cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let mut sink = RedisSink::connect(&url, RedisOptions::default()).unwrap();
    let mut ids = IdGen::with_instance(9);
    for seq in 0..20 {
        sink.write(&flush(&mut ids, seq, "c::good", 2)).unwrap();
        sink.write(&flush(&mut ids, 100 + seq, "c::bad", 2))
            .unwrap();
    }
    // Another writer spoils one share of c::bad.
    let share = cluster
        .masters()
        .iter()
        .find_map(|m| {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("*app:metrics:c::bad")
                .query(&mut cluster.server(m.port).client())
                .unwrap();
            keys.into_iter().next().map(|k| (m.port, k))
        })
        .expect("a share of c::bad");
    let _: () = redis::cmd("HSET")
        .arg(&share.1)
        .arg("calls")
        .arg("banana")
        .query(&mut cluster.server(share.0).client())
        .unwrap();

    let mut reader = RedisReader::connect(&url, RedisOptions::default()).unwrap();
    let names = reader.functions().unwrap();
    assert_eq!(names, ["c::bad", "c::good"]);
    let got = reader.get_many(&names).unwrap();
    assert!(got[0].is_none(), "skipped whole: {:?}", got[0]);
    let good = got[1].as_ref().expect("c::good");
    assert_eq!((good.calls, good.errors), (40, 20));
    assert_eq!(reader.skipped(), 1);
    // Asked for alone, it is an error that names the share.
    let e = reader.get("c::bad").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains(&share.1), "{e}");
    assert_eq!(reader.get("c::good").unwrap().as_ref(), Some(good));
}
