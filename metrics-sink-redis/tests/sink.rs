//! The Redis sink against real `redis-server`s: stage 1 flushes, the stage-2 queue, fleet-wide
//! reads, and what happens when the server refuses, is missing or restarts.

use fnmetrics_test_support as support;

use fnmetrics_core::{
    EntryRecord, ErrorKind, FlushBatch, Histogram, IdGen, Sink, Snapshot, Source,
};
use fnmetrics_sink_redis::{
    ChangeCursor, DeadLetterKind, RedisOptions, RedisQueue, RedisReader, RedisSink, WriteOutcome,
};
use redis::Commands;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::redis::RedisServer;
use support::wait_until;

const NAMES: [&str; 3] = [
    "app::load_user",
    "app::checkout",
    "app::a name with spaces ✓",
];

/// `n` entries spread over [`NAMES`], with call times that cover many histogram buckets.
fn entries(ids: &mut IdGen, n: usize, seed: u64) -> Vec<EntryRecord> {
    (0..n)
        .map(|i| {
            let i = i as u64 + seed * 1_000_003;
            EntryRecord {
                id: ids.next_id(1_700_000_000_000 + i),
                func_name: NAMES[(i % 3) as usize].into(),
                execution_time: Duration::from_nanos(1 + (i * 7919) % 5_000_000),
                error_occurred: i.is_multiple_of(7),
                created_at_micros: 1_700_000_000_000_000 + i as i64,
                weight: 1,
                source: Default::default(),
            }
        })
        .collect()
}

/// The aggregate deltas of `entries`, per function, as the flusher would make them.
fn deltas(entries: &[EntryRecord]) -> Vec<Snapshot> {
    let mut by: BTreeMap<&str, Snapshot> = BTreeMap::new();
    for e in entries {
        by.entry(&e.func_name)
            .or_insert_with(|| Snapshot::new(&e.func_name))
            .record(e.execution_time.as_nanos() as u64, e.error_occurred);
    }
    by.into_values().collect()
}

fn batch(flush: u8, entries: Vec<EntryRecord>) -> FlushBatch {
    FlushBatch {
        flush_id: [flush; 16],
        aggregates: deltas(&entries),
        entries,
    }
}

fn sink(server: &RedisServer) -> RedisSink {
    RedisSink::connect(&server.url(), RedisOptions::default()).expect("connect")
}

fn stored_entries(server: &RedisServer, key: &str) -> Vec<EntryRecord> {
    let raw: Vec<Vec<u8>> = server.client().lrange(key, 0, -1).unwrap();
    raw.iter()
        .flat_map(|b| fnmetrics_sink_redis::wire::decode_element(b).entries)
        .collect()
}

/// What the aggregates of `entries` read back should be, per function.
fn expected(entries: &[EntryRecord], name: &str) -> (u64, u64, u64, u64, u64, Histogram) {
    let mut h = Histogram::new();
    let (mut calls, mut errors, mut total, mut min, mut max) = (0, 0, 0u64, u64::MAX, 0);
    for e in entries.iter().filter(|e| &*e.func_name == name) {
        let ns = e.execution_time.as_nanos() as u64;
        calls += 1;
        errors += u64::from(e.error_occurred);
        total += ns;
        min = min.min(ns);
        max = max.max(ns);
        h.record(e.execution_time);
    }
    (calls, errors, total, min, max, h)
}

fn assert_aggregates(reader: &mut RedisReader, entries: &[EntryRecord]) {
    for name in NAMES {
        let (calls, errors, total, min, max, h) = expected(entries, name);
        let got = reader.get(name).unwrap().expect("aggregates stored");
        assert_eq!(got.name, name);
        assert_eq!(got.calls, calls, "{name}");
        assert_eq!(got.errors, errors, "{name}");
        assert_eq!((got.panics, got.cancelled, got.dropped_entries), (0, 0, 0));
        assert_eq!(got.total_ns, total, "{name}");
        assert_eq!(got.min(), Duration::from_nanos(min), "{name}");
        assert_eq!(got.max(), Duration::from_nanos(max), "{name}");
        assert_eq!(got.histogram(), &h, "{name}");
    }
}

#[test]
fn flush_stores_entries_and_exact_aggregates() {
    let server = RedisServer::start();
    let mut sink = sink(&server);
    let mut reader = RedisReader::connect(&server.url(), RedisOptions::default()).unwrap();
    let mut ids = IdGen::with_instance(1);

    // More than 1000 entries: the script pushes them in chunks.
    let first = entries(&mut ids, 2345, 0);
    assert_eq!(
        sink.write_batch(&batch(1, first.clone())).unwrap(),
        WriteOutcome::Applied
    );
    assert_eq!(stored_entries(&server, "metrics_list"), first);
    assert_aggregates(&mut reader, &first);

    // A second flush adds to the counts and histograms and keeps min/max across flushes.
    let second = entries(&mut ids, 999, 1);
    sink.write(&batch(2, second.clone())).unwrap();
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_eq!(stored_entries(&server, "metrics_list"), all);
    assert_aggregates(&mut reader, &all);

    let mut names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    names.sort();
    assert_eq!(reader.functions().unwrap(), names);
    assert_eq!(reader.get("app::never_called").unwrap(), None);

    // `get_many` answers as `get` does, in order, across its 1 000-a-round-trip chunks.
    let many: Vec<String> = (0..2_500)
        .map(|i| match i % 997 {
            0..=2 => NAMES[i % 997].to_owned(),
            _ => format!("app::never_called_{i}"),
        })
        .collect();
    let got = reader.get_many(&many).unwrap();
    assert_eq!(got.len(), many.len());
    assert_eq!(got.iter().flatten().count(), 9);
    for (name, m) in many.iter().zip(&got) {
        assert_eq!(m, &reader.get(name).unwrap(), "{name}");
    }
}

#[test]
fn keys_follow_the_options() {
    let server = RedisServer::start();
    let opts = RedisOptions::default()
        .with_key_prefix("p:")
        .with_entries_key("calls")
        .with_aggregate_prefix("agg:");
    let mut sink = RedisSink::connect(&server.url(), opts.clone()).unwrap();
    let batch = batch(1, entries(&mut IdGen::with_instance(2), 10, 0));
    sink.write(&batch).unwrap();

    let mut c = server.client();
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    keys.sort();
    let flush_key = format!("p:fnmetrics:flush:{}", "01".repeat(16));
    let mut want = vec![
        "p:calls".to_string(),
        "p:fnmetrics:functions".to_string(),
        "p:fnmetrics:changes".to_string(),
        "p:fnmetrics:version".to_string(),
        flush_key.clone(),
    ];
    want.extend(NAMES.iter().map(|n| format!("p:agg:{n}")));
    want.sort();
    assert_eq!(keys, want);
    let ttl: i64 = c.ttl(&flush_key).unwrap();
    assert!((3_500..=3_600).contains(&ttl), "ttl {ttl}");

    let mut reader = RedisReader::connect(&server.url(), opts).unwrap();
    assert_aggregates(&mut reader, &batch.entries);
}

#[test]
fn the_change_log_names_what_each_flush_touched_once() {
    let server = RedisServer::start();
    let mut sink = sink(&server);
    let mut reader = RedisReader::connect(&server.url(), RedisOptions::default()).unwrap();
    let mut ids = IdGen::with_instance(3);
    let mut cursor = ChangeCursor::default();
    assert!(reader.changed(&mut cursor).unwrap().is_empty());
    sink.write(&batch(1, entries(&mut ids, 30, 0))).unwrap();
    let mut all: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    all.sort();
    assert_eq!(reader.changed(&mut cursor).unwrap(), all);
    assert!(reader.changed(&mut cursor).unwrap().is_empty());
    // Two flushes, one function each: both named, once; a retried flush changes nothing.
    let one = |flush: u8, name: &str| {
        let mut b = batch(flush, entries(&mut IdGen::with_instance(4), 3, 0));
        b.aggregates.retain(|a| a.name == name);
        b
    };
    sink.write(&one(2, NAMES[0])).unwrap();
    sink.write(&one(3, NAMES[1])).unwrap();
    assert_eq!(
        sink.write_batch(&one(3, NAMES[1])).unwrap(),
        WriteOutcome::AlreadyApplied
    );
    let mut two = vec![NAMES[0].to_owned(), NAMES[1].to_owned()];
    two.sort();
    assert_eq!(reader.changed(&mut cursor).unwrap(), two);
    assert!(reader.changed(&mut cursor).unwrap().is_empty());
    // A new cursor sees every function; a forgotten one leaves the log.
    assert_eq!(reader.forget(&[NAMES[2].to_owned()]).unwrap(), 1);
    assert_eq!(reader.changed(&mut ChangeCursor::default()).unwrap(), two);
    // The data lost (its version back to 1): the old cursor reads the new log whole.
    let _: () = redis::cmd("FLUSHALL").query(&mut server.client()).unwrap();
    sink.write(&one(9, NAMES[2])).unwrap();
    assert_eq!(reader.changed(&mut cursor).unwrap(), [NAMES[2]]);
    assert!(reader.changed(&mut cursor).unwrap().is_empty());
}

#[test]
fn an_aggregate_that_is_not_ours_is_a_typed_error_not_a_panic_or_a_guess() {
    let server = RedisServer::start();
    let mut c = server.client();
    let _: () = c
        .hset_multiple(
            "app:metrics:good",
            &[("calls", "3"), ("errors", "1"), ("b40", "3")],
        )
        .unwrap();
    let _: () = c.hset("app:metrics:bad", "calls", "three").unwrap();
    let _: () = c.set("app:metrics:string", "x").unwrap();
    let mut reader = RedisReader::connect(&server.url(), RedisOptions::default()).unwrap();
    let good = reader.get("good").unwrap().expect("good");
    assert_eq!(
        (good.calls, good.errors, good.histogram().count()),
        (3, 1, 3)
    );
    assert!(reader.get("missing").unwrap().is_none());
    let e = reader.get("bad").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains("three"), "{e}");
    let e = reader.get("string").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema, "{e}");
    let names = ["good", "missing"].map(String::from);
    let many = reader.get_many(&names).unwrap();
    assert_eq!(many[0].as_ref().map(|m| m.calls), Some(3));
    assert!(many[1].is_none());
    // Among others, a hash that does not decode is skipped (tests/reader.rs).
    let names = ["good", "bad"].map(String::from);
    let many = reader.get_many(&names).unwrap();
    assert_eq!(many[0].as_ref().map(|m| m.calls), Some(3));
    assert!(many[1].is_none());
    assert_eq!(reader.skipped(), 1);
}

#[test]
fn a_cluster_node_serving_no_slots_is_a_transient_error_naming_the_cluster() {
    // A node with cluster mode on, not (yet) in a cluster: nothing is served.
    let node = RedisServer::start_with_args(&["--cluster-enabled", "yes"]);
    let e = RedisSink::connect(&node.url(), RedisOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("Redis Cluster"), "{e}");
    // Told to want a standalone Redis, it refuses for good.
    let standalone =
        RedisOptions::default().with_cluster(fnmetrics_sink_redis::ClusterMode::Standalone);
    for e in [
        RedisSink::connect(&node.url(), standalone.clone()).unwrap_err(),
        RedisQueue::connect(&node.url(), standalone.clone()).unwrap_err(),
        RedisReader::connect(&node.url(), standalone).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("Redis Cluster") && text.contains(&format!("127.0.0.1:{}", node.port())),
            "{text}"
        );
    }
    // A standalone server is not a cluster.
    let alone = RedisServer::start();
    RedisSink::connect(&alone.url(), RedisOptions::default()).unwrap();
}

#[test]
fn the_overview_counts_what_waits_and_forget_removes_functions_whole() {
    let server = RedisServer::start();
    let mut ids = IdGen::with_instance(3);
    let mut queue = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();
    let empty = queue.overview().unwrap();
    assert_eq!((empty.entries_waiting, empty.drain_lag), (0, None));
    let mut s = sink(&server);
    s.write(&batch(1, entries(&mut ids, 30, 0))).unwrap();
    s.write(&batch(2, entries(&mut ids, 20, 1))).unwrap();
    // One frame claimed, with a lease of a millisecond: held, then expired.
    let claim = queue
        .claim(1, Duration::from_millis(1))
        .unwrap()
        .expect("a claim");
    assert_eq!(claim.entries.len(), 30);
    wait_until("the lease to run out", Duration::from_secs(10), || {
        queue.overview().unwrap().claims_expired == 1
    });
    let o = queue.overview().unwrap();
    assert_eq!(o.entries_waiting, 50);
    assert_eq!((o.claims_held, o.claims_expired), (1, 1));
    assert_eq!(o.functions, 3);
    assert_eq!(o.dead_letters.held, 0);
    // The head of the list is the second flush; its entries are from 2023: a long lag.
    assert_eq!(
        o.oldest_waiting_micros,
        Some(1_700_000_000_000_000 + 1_000_003)
    );
    assert!(o.drain_lag.unwrap() > Duration::from_secs(86_400 * 300));

    let mut reader = RedisReader::connect(&server.url(), RedisOptions::default()).unwrap();
    let gone = vec![NAMES[0].to_owned(), "never::there".to_owned()];
    assert_eq!(reader.forget(&gone).unwrap(), 1);
    assert!(reader.get(NAMES[0]).unwrap().is_none());
    assert_eq!(reader.functions().unwrap().len(), 2);
    assert!(!reader.functions().unwrap().contains(&NAMES[0].to_owned()));
}

#[test]
fn min_and_max_are_exact_above_2_pow_53() {
    // Lua numbers are doubles: 2^53 + 1 and 2^53 + 2 are the same double.
    let server = RedisServer::start();
    let mut sink = sink(&server);
    let mut reader = RedisReader::connect(&server.url(), RedisOptions::default()).unwrap();
    let base = 1u64 << 53;
    let delta = |min_ns: u64, max_ns: u64| {
        let mut d = Snapshot::new("big");
        (d.calls, d.total_ns, d.min_ns, d.max_ns) = (1, 5, min_ns, max_ns);
        d.histogram_mut().add_to_bucket(3, 1);
        d
    };
    let write = |sink: &mut RedisSink, id: u8, d: Snapshot| {
        let b = FlushBatch {
            flush_id: [id; 16],
            entries: vec![],
            aggregates: vec![d],
        };
        sink.write(&b).unwrap();
    };
    write(&mut sink, 1, delta(base + 2, base + 1));
    write(&mut sink, 2, delta(base + 1, base + 2));
    write(&mut sink, 3, delta(base + 3, u64::MAX - 1));
    // No calls yet in this process: min_ns is u64::MAX and must be ignored.
    write(&mut sink, 4, delta(u64::MAX, 0));
    let got = reader.get("big").unwrap().unwrap();
    assert_eq!(got.min(), Duration::from_nanos(base + 1));
    assert_eq!(got.max(), Duration::from_nanos(u64::MAX - 1));
    assert_eq!(got.calls, 4);
    assert_eq!(got.total_ns, 20);
    assert_eq!(got.histogram().bucket(3), 4);
}

#[test]
fn total_saturates_instead_of_failing_the_flush() {
    let server = RedisServer::start();
    let mut sink = sink(&server);
    let mut reader = RedisReader::connect(&server.url(), RedisOptions::default()).unwrap();
    let mut d = deltas(&entries(&mut IdGen::with_instance(3), 1, 0)).remove(0);
    d.total_ns = i64::MAX as u64 - 10;
    let name = d.name.to_string();
    for id in 1..=2 {
        let b = FlushBatch {
            flush_id: [id; 16],
            entries: vec![],
            aggregates: vec![d.clone()],
        };
        sink.write(&b).unwrap();
    }
    let got = reader.get(&name).unwrap().unwrap();
    assert_eq!(got.total_ns, i64::MAX as u64);
    assert_eq!(got.calls, 2);
}

#[test]
fn a_retried_flush_changes_nothing() {
    let server = RedisServer::start();
    let mut sink = sink(&server);
    let mut reader = RedisReader::connect(&server.url(), RedisOptions::default()).unwrap();
    let b = batch(7, entries(&mut IdGen::with_instance(4), 1500, 0));
    assert_eq!(sink.write_batch(&b).unwrap(), WriteOutcome::Applied);
    // The retry comes on a fresh connection, as after a timeout.
    let mut other = RedisSink::connect(&server.url(), RedisOptions::default()).unwrap();
    assert_eq!(other.write_batch(&b).unwrap(), WriteOutcome::AlreadyApplied);
    other.write(&b).unwrap();
    assert_eq!(stored_entries(&server, "metrics_list"), b.entries);
    assert_aggregates(&mut reader, &b.entries);
}

#[test]
fn the_same_flush_racing_on_two_connections_applies_once() {
    // Big enough batches that one connection's check often runs while the other's transaction is
    // still being queued: then WATCH makes the second EXEC do nothing, and it finds the flush
    // applied.
    let server = RedisServer::start();
    let url = server.url();
    let mut ids = IdGen::with_instance(12);
    let batches: Vec<FlushBatch> = (0..20u8)
        .map(|f| batch(f, entries(&mut ids, 2000, u64::from(f))))
        .collect();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let outcomes: Vec<Vec<WriteOutcome>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (url, batches, barrier) = (&url, &batches, barrier.clone());
                s.spawn(move || {
                    let mut sink = RedisSink::connect(url, RedisOptions::default()).unwrap();
                    batches
                        .iter()
                        .map(|b| {
                            barrier.wait();
                            sink.write_batch(b).unwrap()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (a, b) in outcomes[0].iter().zip(&outcomes[1]) {
        let applied = [a, b]
            .iter()
            .filter(|o| ***o == WriteOutcome::Applied)
            .count();
        assert_eq!(applied, 1, "{a:?} {b:?}");
    }
    let all: Vec<EntryRecord> = batches.iter().flat_map(|b| b.entries.clone()).collect();
    let mut stored = stored_entries(&server, "metrics_list");
    stored.sort_by_key(|e| e.id);
    let mut want = all.clone();
    want.sort_by_key(|e| e.id);
    assert_eq!(stored, want);
    let mut reader = RedisReader::connect(&url, RedisOptions::default()).unwrap();
    assert_aggregates(&mut reader, &all);
}

#[test]
fn flushed_scripts_are_loaded_again() {
    let server = RedisServer::start();
    let mut sink = sink(&server);
    let mut queue = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();
    let mut c = server.client();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    let b = batch(1, entries(&mut IdGen::with_instance(13), 10, 0));
    assert_eq!(sink.write_batch(&b).unwrap(), WriteOutcome::Applied);
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    assert_eq!(sink.write_batch(&b).unwrap(), WriteOutcome::AlreadyApplied);
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    assert_eq!(queue.pending_len().unwrap(), 10);
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    let claim = queue.claim(100, Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(claim.entries, b.entries);
}

#[test]
fn concurrent_sinks_sum_exactly() {
    let server = RedisServer::start();
    let url = server.url();
    let threads: Vec<_> = (0..2u8)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut sink = RedisSink::connect(&url, RedisOptions::default()).unwrap();
                let mut ids = IdGen::with_instance(100 + u64::from(t));
                let mut all = Vec::new();
                for f in 0..40u8 {
                    let e = entries(&mut ids, 250, u64::from(t) * 1000 + u64::from(f));
                    let mut b = batch(0, e.clone());
                    b.flush_id[0] = t;
                    b.flush_id[1] = f;
                    sink.write(&b).unwrap();
                    all.extend(e);
                }
                all
            })
        })
        .collect();
    let mut all: Vec<EntryRecord> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut stored = stored_entries(&server, "metrics_list");
    assert_eq!(stored.len(), 2 * 40 * 250);
    all.sort_by_key(|e| e.id);
    stored.sort_by_key(|e| e.id);
    assert_eq!(stored, all);
    let mut reader = RedisReader::connect(&url, RedisOptions::default()).unwrap();
    assert_aggregates(&mut reader, &all);
}

#[test]
fn a_wrongly_typed_key_fails_the_flush_before_anything_is_written() {
    let server = RedisServer::start();
    let mut c = server.client();
    let _: () = c.set("metrics_list", "not a list").unwrap();
    let mut sink = sink(&server);
    let b = batch(1, entries(&mut IdGen::with_instance(5), 20, 0));
    let err = sink.write(&b).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema, "{err:?}");
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    keys.sort();
    assert_eq!(keys, ["metrics_list"]);

    // Once fixed, the same flush applies (its id was not used up).
    let _: () = c.del("metrics_list").unwrap();
    assert_eq!(sink.write_batch(&b).unwrap(), WriteOutcome::Applied);
    assert_eq!(stored_entries(&server, "metrics_list"), b.entries);
}

#[test]
fn claims_hand_out_each_entry_once_and_ack_removes_them() {
    let server = RedisServer::start();
    let stored = entries(&mut IdGen::with_instance(6), 2500, 0);
    // Three flushes: claims hand out whole flushes (frames), up to the asked-for count.
    let mut s = sink(&server);
    for (i, part) in stored.chunks(1000).enumerate() {
        s.write(&batch(i as u8 + 1, part.to_vec())).unwrap();
    }
    let lease = Duration::from_secs(60);
    let mut q1 = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();
    let mut q2 = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();
    assert_eq!(q1.pending_len().unwrap(), 2500);

    let a = q1.claim(1000, lease).unwrap().unwrap();
    let b = q2.claim(1000, lease).unwrap().unwrap();
    let c = q1.claim(1000, lease).unwrap().unwrap();
    assert_eq!(q2.claim(1000, lease).unwrap(), None);
    assert_eq!(a.entries, stored[..1000]);
    assert_eq!(b.entries, stored[1000..2000]);
    assert_eq!(c.entries, stored[2000..]);
    assert!(a.id != b.id && b.id != c.id && a.id != c.id);
    // Claimed but not acknowledged: still pending.
    assert_eq!(q2.pending_len().unwrap(), 2500);

    q1.ack(&a).unwrap();
    q2.ack(&b).unwrap();
    assert_eq!(q1.pending_len().unwrap(), 500);
    assert!(q1.ack(&c).unwrap());
    assert!(!q1.ack(&c).unwrap(), "twice: nothing happens");
    assert_eq!(q1.pending_len().unwrap(), 0);
    assert_eq!(q1.claim(1000, lease).unwrap(), None);
    let mut conn = server.client();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("fnmetrics:claim*")
        .query(&mut conn)
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn a_flush_of_several_sources_pushes_one_frame_per_run_and_claims_count_their_entries() {
    let server = RedisServer::start();
    let a = Arc::new(Source::new("svc-a", "host-1"));
    let b = Arc::new(Source::new("service-b-é", "h"));
    let mut stored = entries(&mut IdGen::with_instance(9), 2500, 0);
    // 2100 runs of one entry (more frames than one RPUSH of the script takes), then one run of
    // 400.
    for (i, e) in stored.iter_mut().enumerate() {
        e.source = if i < 2100 && i % 2 == 1 { &b } else { &a }.clone();
    }
    let mut s = sink(&server);
    s.write(&batch(1, stored.clone())).unwrap();

    let len: usize = server.client().llen("metrics_list").unwrap();
    assert_eq!(len, 2101);
    let got = stored_entries(&server, "metrics_list");
    assert_eq!(got, stored);
    assert_eq!(&*got[2099].source, &*b);
    let mut q = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();
    assert_eq!(q.pending_len().unwrap(), 2500);
    // Claims take whole frames while their entries (counted past each frame's source) stay
    // below the asked-for count: 2000 one-entry frames, then the rest.
    let lease = Duration::from_secs(60);
    let first = q.claim(2000, lease).unwrap().unwrap();
    assert_eq!(first.entries, stored[..2000]);
    let rest = q.claim(2000, lease).unwrap().unwrap();
    assert_eq!(rest.entries, stored[2000..]);
    assert!(first.undecodable.is_empty() && rest.undecodable.is_empty());
}

#[test]
fn an_expired_claim_is_taken_over_with_the_same_entries() {
    let server = RedisServer::start();
    let stored = entries(&mut IdGen::with_instance(7), 30, 0);
    sink(&server).write(&batch(1, stored.clone())).unwrap();
    let mut dead = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();
    let mut alive = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();

    let first = dead.claim(100, Duration::from_secs(2)).unwrap().unwrap();
    assert_eq!(first.entries, stored);
    // While the lease holds, nobody else gets these entries.
    let started = Instant::now();
    let during = alive.claim(100, Duration::from_secs(60)).unwrap();
    assert!(during.is_none() || started.elapsed() >= Duration::from_secs(2));

    let mut taken = None;
    wait_until("the lease to run out", Duration::from_secs(10), || {
        taken = alive.claim(100, Duration::from_secs(60)).unwrap();
        taken.is_some()
    });
    let taken = taken.unwrap();
    assert_eq!((&taken.id, &taken.entries), (&first.id, &first.entries));
    assert!(taken.lease_until_ms > first.lease_until_ms, "a new lease");
    // The new lease holds.
    assert_eq!(dead.claim(100, Duration::from_secs(60)).unwrap(), None);

    // The first drainer committed after all and acknowledges late; the taker's ack is a no-op.
    assert!(dead.ack(&first).unwrap());
    assert!(!alive.ack(&taken).unwrap());
    assert_eq!(alive.pending_len().unwrap(), 0);
}

#[test]
fn a_claim_handed_back_is_claimed_again_at_once_in_order_and_only_by_its_owner() {
    let server = RedisServer::start();
    let mut ids = IdGen::with_instance(9);
    let (first, second) = (entries(&mut ids, 20, 1), entries(&mut ids, 20, 2));
    let mut s = sink(&server);
    s.write(&batch(1, first.clone())).unwrap();
    s.write(&batch(2, second.clone())).unwrap();
    let mut a = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();
    let mut b = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();

    // A claim of the first frame, handed back: the next claim (with a 60 s lease left on the
    // first) gets the same entries at once, still ahead of the second frame.
    let claimed = a.claim(20, Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(claimed.entries, first);
    assert!(a.release(&claimed).unwrap());
    assert!(
        !a.release(&claimed).unwrap(),
        "gone: a second hand-back does nothing"
    );
    let again = b.claim(40, Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(again.entries, [first.clone(), second.clone()].concat());
    assert_eq!(a.pending_len().unwrap(), 40);

    // A claim taken over after its lease ran out is not the first owner's to hand back.
    b.release(&again).unwrap();
    let short = a.claim(40, Duration::from_millis(50)).unwrap().unwrap();
    let mut taken = None;
    wait_until("the lease to run out", Duration::from_secs(10), || {
        taken = b.claim(40, Duration::from_secs(60)).unwrap();
        taken.is_some()
    });
    let taken = taken.unwrap();
    assert!(!a.release(&short).unwrap(), "taken over: not handed back");
    assert!(b.ack(&taken).unwrap());
    assert_eq!(a.pending_len().unwrap(), 0);
}

#[test]
fn an_undecodable_element_is_set_aside_as_a_dead_letter_and_the_rest_go_on() {
    let server = RedisServer::start();
    let good = entries(&mut IdGen::with_instance(8), 3, 0);
    let mut c = server.client();
    let _: () = c.rpush("metrics_list", [9u8, 1, 2, 3].as_slice()).unwrap();
    sink(&server).write(&batch(1, good.clone())).unwrap();
    let mut q = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();
    let claim = q.claim(10, Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(claim.entries, good);
    assert_eq!(claim.undecodable.len(), 1);
    assert!(
        claim.undecodable[0].reason.contains("version 9"),
        "{:?}",
        claim.undecodable
    );
    assert_eq!(
        q.ack_with(&claim, &claim.dead_letters())
            .unwrap()
            .dead_letters_evicted,
        0
    );
    assert_eq!(q.pending_len().unwrap(), 0);

    let dead = q.dead_letters(0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, DeadLetterKind::Undecodable);
    assert_eq!(dead[0].payload, [9u8, 1, 2, 3]);
    assert_eq!(q.dead_letter_counts().unwrap().held, 1);

    // Re-queued, it is back on the entry list (once, however often it is asked).
    assert_eq!(q.requeue_dead_letters(&dead).unwrap(), 1);
    assert_eq!(q.requeue_dead_letters(&dead).unwrap(), 0);
    assert_eq!(q.dead_letter_counts().unwrap().held, 0);
    let back: Vec<Vec<u8>> = c.lrange("metrics_list", 0, -1).unwrap();
    assert_eq!(back, vec![vec![9u8, 1, 2, 3]]);
}

#[test]
fn the_dead_letter_list_keeps_the_newest_and_counts_what_it_evicts() {
    let server = RedisServer::start();
    let mut c = server.client();
    for i in 0..5u8 {
        let _: () = c.rpush("metrics_list", [9u8, i].as_slice()).unwrap();
    }
    let mut q = RedisQueue::connect(
        &server.url(),
        RedisOptions::default().with_dead_letter_cap(3),
    )
    .unwrap();
    let claim = q.claim(100, Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(claim.undecodable.len(), 5);
    assert_eq!(
        q.ack_with(&claim, &claim.dead_letters())
            .unwrap()
            .dead_letters_evicted,
        2
    );
    let counts = q.dead_letter_counts().unwrap();
    assert_eq!((counts.held, counts.evicted), (3, 2));
    let kept: Vec<Vec<u8>> = q
        .dead_letters(0, 10)
        .unwrap()
        .into_iter()
        .map(|d| d.payload)
        .collect();
    assert_eq!(kept, vec![vec![9u8, 2], vec![9, 3], vec![9, 4]]);
    let oldest = q.dead_letters(0, 1).unwrap();
    assert_eq!(q.purge_dead_letters(&oldest).unwrap(), 1);
    assert_eq!(q.dead_letter_counts().unwrap().held, 2);
}

#[test]
fn an_ack_of_a_claim_taken_over_and_acknowledged_adds_no_dead_letters_twice() {
    let server = RedisServer::start();
    let mut c = server.client();
    let _: () = c.rpush("metrics_list", [9u8].as_slice()).unwrap();
    let mut slow = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();
    let mut fast = RedisQueue::connect(&server.url(), RedisOptions::default()).unwrap();
    let first = slow.claim(10, Duration::from_millis(200)).unwrap().unwrap();
    let mut taken = None;
    wait_until("the lease to run out", Duration::from_secs(10), || {
        taken = fast.claim(10, Duration::from_secs(60)).unwrap();
        taken.is_some()
    });
    let taken = taken.unwrap();
    assert!(
        fast.ack_with(&taken, &taken.dead_letters())
            .unwrap()
            .removed
    );
    assert!(
        !slow
            .ack_with(&first, &first.dead_letters())
            .unwrap()
            .removed
    );
    assert_eq!(fast.dead_letter_counts().unwrap().held, 1);
}

#[test]
fn a_bad_url_is_invalid_url() {
    for url in [
        "not a url",
        "http://127.0.0.1/",
        "redis://127.0.0.1:notaport/",
    ] {
        let err = RedisSink::connect(url, RedisOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{url}: {err:?}");
        assert!(std::error::Error::source(&err).is_some());
    }
}

#[test]
fn nothing_listening_is_unavailable() {
    let url = format!("redis://127.0.0.1:{}/", support::free_port());
    let err = RedisSink::connect(&url, RedisOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    let err = RedisQueue::connect(&url, RedisOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
}

#[test]
fn a_missing_or_wrong_password_is_auth() {
    let server = RedisServer::start_with_password("s3cret");
    let no_password = server.url_without_password();
    let wrong = format!("redis://:wrong@127.0.0.1:{}/", server.port());
    for url in [no_password, wrong] {
        let err = RedisSink::connect(&url, RedisOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{url}: {err:?}");
    }
    let mut sink = RedisSink::connect(&server.url(), RedisOptions::default()).unwrap();
    sink.write(&batch(1, entries(&mut IdGen::with_instance(9), 5, 0)))
        .unwrap();
}

#[test]
fn bad_options_are_invalid_config() {
    let opts = RedisOptions::default().with_io_timeout(Duration::ZERO);
    let err = RedisSink::connect("redis://127.0.0.1/", opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn a_restarted_server_keeps_its_data_and_the_retry_succeeds() {
    let mut server = RedisServer::start();
    let mut sink = sink(&server);
    let mut ids = IdGen::with_instance(10);
    let before = entries(&mut ids, 1200, 0);
    sink.write(&batch(1, before.clone())).unwrap();

    server.stop();
    let after = batch(2, entries(&mut ids, 800, 1));
    for _ in 0..2 {
        // The first attempt finds the old connection broken, the second cannot connect.
        let err = sink.write(&after).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    }

    server.restart();
    // The same sink reconnects and reloads its script (the restarted server has none).
    assert_eq!(sink.write_batch(&after).unwrap(), WriteOutcome::Applied);
    let all: Vec<_> = before.iter().chain(&after.entries).cloned().collect();
    assert_eq!(stored_entries(&server, "metrics_list"), all);
    let mut reader = RedisReader::connect(&server.url(), RedisOptions::default()).unwrap();
    assert_aggregates(&mut reader, &all);
    // The flush id of the first batch survived the restart too.
    assert_eq!(
        sink.write_batch(&batch(1, before)).unwrap(),
        WriteOutcome::AlreadyApplied
    );
}
