//! `RedisReader::get_many` against real `redis-server`s. At a `redis://` address it reads on a
//! plain TCP connection of its own; `get` (and `get_many` at a `redis+unix://` address) read
//! through redis-rs. Both must give the same snapshots and the same errors, with a password, in
//! another database, on big hashes, and when the server is killed or stops answering.

use fnmetrics_test_support as support;

use fnmetrics_core::{ErrorKind, FlushBatch, Sink, Snapshot};
use fnmetrics_sink_redis::{RedisOptions, RedisReader, RedisSink};
use redis::Commands;
use std::time::{Duration, Instant};
use support::redis::RedisServer;
use support::TempDir;

/// Aggregates of `n` functions `app::f<i>`, a few calls each over a spread of call times.
fn flush(url: &str, opts: &RedisOptions, n: usize, flush: u8) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("app::f{i}")).collect();
    let aggregates = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut s = Snapshot::new(name);
            for c in 0..(3 + i as u64 % 20) {
                s.record(
                    1 + (c * 7_919 + i as u64 * 104_729) % 50_000_000,
                    c % 5 == 0,
                );
            }
            s
        })
        .collect();
    let mut sink = RedisSink::connect(url, opts.clone()).expect("sink connects");
    sink.write(&FlushBatch {
        flush_id: [flush; 16],
        entries: Vec::new(),
        aggregates,
    })
    .expect("flush");
    names
}

/// What `get` (redis-rs, one command a name) reads for each of `names`.
fn one_by_one(reader: &mut RedisReader, names: &[String]) -> Vec<Option<Snapshot>> {
    names.iter().map(|n| reader.get(n).unwrap()).collect()
}

/// A server that also listens on a unix socket, and the `redis+unix://` URL of that socket:
/// there `get_many` reads through redis-rs.
fn server_with_socket(dir: &TempDir) -> (RedisServer, String) {
    let socket = dir.path().join("redis.sock");
    let server = RedisServer::start_with_args(&["--unixsocket", socket.to_str().unwrap()]);
    (server, format!("redis+unix://{}", socket.display()))
}

#[test]
fn get_many_reads_what_redis_rs_reads_for_every_shape_of_hash() {
    let dir = TempDir::new("reader-same");
    let (server, unix) = server_with_socket(&dir);
    let opts = RedisOptions::default().with_key_prefix("p:");
    let mut names = flush(&server.url(), &opts, 50, 1);
    let mut c = server.client();
    let odd: &[(&str, &[(&str, &str)])] = &[
        // A newer version's fields, a field named `b`, bucket indexes past the histogram (the
        // last bucket takes them) and past u16 (skipped), leading zeros, u64::MAX.
        (
            "odd::fields",
            &[
                ("calls", "0007"),
                ("a_newer_field", "3"),
                ("b", "4"),
                ("b1279", "1"),
                ("b5000", "2"),
                ("b65536", "9"),
                ("b0", "1"),
                ("min_ns", "18446744073709551615"),
            ],
        ),
        (
            "odd::only_buckets",
            &[("b3", "1"), ("b2", "1"), ("b1", "1")],
        ),
        ("odd::zero", &[("calls", "0")]),
    ];
    for (name, fields) in odd {
        let _: () = c
            .hset_multiple(format!("p:app:metrics:{name}"), fields)
            .unwrap();
        names.push(name.to_string());
    }
    names.push("odd::missing".into());
    names.push("app::f3".into());

    let mut fast = RedisReader::connect(&server.url(), opts.clone()).unwrap();
    let mut through_redis_rs = RedisReader::connect(&unix, opts).unwrap();
    let got = fast.get_many(&names).unwrap();
    assert_eq!(got.len(), names.len());
    assert_eq!(got.iter().flatten().count(), names.len() - 1);
    assert_eq!(got, through_redis_rs.get_many(&names).unwrap());
    assert_eq!(got, one_by_one(&mut fast, &names));
    let f = got[50].as_ref().unwrap();
    assert_eq!((f.calls, f.min_ns, f.histogram().count()), (7, u64::MAX, 4));
    assert!(fast.get_many(&[]).unwrap().is_empty());
}

#[test]
fn big_hashes_of_thousands_of_buckets_are_read_whole() {
    let dir = TempDir::new("reader-big");
    let (server, unix) = server_with_socket(&dir);
    let mut c = server.client();
    let mut names = Vec::new();
    let mut expected = Vec::new();
    for f in 0..20u64 {
        let name = format!("big::f{f}");
        let mut m = Snapshot::new(&name);
        let mut fields = vec![("calls".to_string(), 5_000.to_string())];
        // Every bucket and some past the last: a hash far beyond Redis' listpack encoding, so
        // its fields come back in no particular order.
        for i in 0..3_000u64 {
            let n = 1 + (i * 31 + f) % 1_000;
            fields.push((format!("b{i}"), n.to_string()));
            m.histogram_mut().add_to_bucket(i as usize, n);
        }
        m.calls = 5_000;
        let _: () = c
            .hset_multiple(format!("app:metrics:{name}"), &fields)
            .unwrap();
        names.push(name);
        expected.push(Some(m));
    }
    let mut fast = RedisReader::connect(&server.url(), RedisOptions::default()).unwrap();
    let got = fast.get_many(&names).unwrap();
    assert!(got == expected, "the big hashes differ");
    let mut through_redis_rs = RedisReader::connect(&unix, RedisOptions::default()).unwrap();
    assert!(got == through_redis_rs.get_many(&names).unwrap());
}

#[test]
fn more_names_than_one_round_trip_holds_come_back_in_order() {
    let server = RedisServer::start();
    let opts = RedisOptions::default();
    let present = flush(&server.url(), &opts, 300, 1);
    // 25 000 names, three round trips of 10 000, the flushed ones spread over all three.
    let names: Vec<String> = (0..25_000)
        .map(|i| match i % 83 {
            0 => present[(i / 83) % present.len()].clone(),
            _ => format!("app::missing{i}"),
        })
        .collect();
    let mut reader = RedisReader::connect(&server.url(), opts).unwrap();
    let got = reader.get_many(&names).unwrap();
    assert_eq!(got.len(), names.len());
    for (i, (name, m)) in names.iter().zip(&got).enumerate() {
        assert_eq!(m.is_some(), i % 83 == 0, "{i}");
        if let Some(m) = m {
            assert_eq!(&m.name, name);
        }
    }
    let sample: Vec<String> = names.iter().step_by(83).take(40).cloned().collect();
    let step: Vec<Option<Snapshot>> = got.iter().step_by(83).take(40).cloned().collect();
    assert_eq!(step, one_by_one(&mut reader, &sample));
}

#[test]
fn a_password_protected_server_is_read_with_the_url_s_user_and_password() {
    let server = RedisServer::start_with_password("s3cret");
    let opts = RedisOptions::default();
    let names = flush(&server.url(), &opts, 20, 1);
    let mut reader = RedisReader::connect(&server.url(), opts.clone()).unwrap();
    let got = reader.get_many(&names).unwrap();
    assert_eq!(got.iter().flatten().count(), 20);
    assert_eq!(got, one_by_one(&mut reader, &names));

    // An ACL user: AUTH with the user name.
    let mut c = server.client();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "reader", "on", ">pa55word", "~*", "+@all"][..])
        .query(&mut c)
        .unwrap();
    let url = format!("redis://reader:pa55word@127.0.0.1:{}/", server.port());
    let mut as_user = RedisReader::connect(&url, opts).unwrap();
    assert_eq!(as_user.get_many(&names).unwrap(), got);
}

#[test]
fn a_password_changed_under_a_reader_is_auth_and_never_shown() {
    let server = RedisServer::start_with_password("0ld-s3cret");
    let opts = RedisOptions::default();
    let names = flush(&server.url(), &opts, 3, 1);
    // The reader's redis-rs connection is made and authenticated; its own is made on first use.
    let mut reader = RedisReader::connect(&server.url(), opts).unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "n3w-s3cret"][..])
        .query(&mut server.client())
        .unwrap();
    let e = reader.get_many(&names).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");
    assert!(e.is_unsent(), "{e:?}");
    let mut chain = format!("{e} {e:?} {reader:?}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!chain.contains("0ld-s3cret"), "{chain}");
    assert!(!chain.contains("n3w-s3cret"), "{chain}");
}

#[test]
fn a_database_other_than_0_is_selected() {
    let server = RedisServer::start();
    let opts = RedisOptions::default();
    let db3 = format!("redis://127.0.0.1:{}/3", server.port());
    let names = flush(&db3, &opts, 10, 1);
    let mut reader = RedisReader::connect(&db3, opts.clone()).unwrap();
    let got = reader.get_many(&names).unwrap();
    assert_eq!(got.iter().flatten().count(), 10);
    assert_eq!(got, one_by_one(&mut reader, &names));
    let mut db0 = RedisReader::connect(&server.url(), opts).unwrap();
    assert!(db0.get_many(&names).unwrap().iter().all(Option::is_none));
}

#[test]
fn a_wrongly_typed_key_is_schema_and_the_connection_stays_in_step() {
    let dir = TempDir::new("reader-types");
    let (server, unix) = server_with_socket(&dir);
    let mut c = server.client();
    let _: () = c
        .hset_multiple("app:metrics:good", &[("calls", "3"), ("b40", "3")])
        .unwrap();
    let _: () = c.hset("app:metrics:bad", "calls", "three").unwrap();
    let _: () = c.set("app:metrics:string", "x").unwrap();
    let _: () = c.rpush("app:metrics:list", "x").unwrap();
    let mut fast = RedisReader::connect(&server.url(), RedisOptions::default()).unwrap();
    let mut through_redis_rs = RedisReader::connect(&unix, RedisOptions::default()).unwrap();
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (keys, kind) in [
        // An error reply fails the read, a reply before it that does not decode or not, as
        // through redis-rs, where the pipeline failed before anything was decoded.
        (names(&["good", "bad", "string", "good"]), ErrorKind::Schema),
        (names(&["list"]), ErrorKind::Schema),
    ] {
        let e = fast.get_many(&keys).unwrap_err();
        assert_eq!(e.kind(), kind, "{keys:?}: {e}");
        assert!(!e.is_unsent());
        let theirs = through_redis_rs.get_many(&keys).unwrap_err();
        assert_eq!(theirs.kind(), kind, "{keys:?}: {theirs}");
        assert_eq!(e.to_string(), theirs.to_string());
        // Every reply was read: the next call gets its own.
        let good = fast.get_many(&names(&["good"])).unwrap();
        assert_eq!(good[0].as_ref().map(|m| m.calls), Some(3));
    }
    // A hash that does not decode is skipped by get_many (see below), and an error of get.
    let keys = names(&["good", "bad", "missing"]);
    let got = fast.get_many(&keys).unwrap();
    assert_eq!(
        got.iter().map(|m| m.is_some()).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert_eq!(got, through_redis_rs.get_many(&keys).unwrap());
    let e = fast.get("bad").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains("three"), "{e}");
    assert!(e.to_string().contains("app:metrics:bad"), "{e}");
}

/// The warnings of the `fnmetrics` log target, kept for the tests to read.
static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct KeepWarnings;

impl log::Log for KeepWarnings {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn && m.target() == "fnmetrics"
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let mut w = WARNINGS.lock().unwrap_or_else(|e| e.into_inner());
            w.push(r.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// The warnings so far that hold `text`.
fn warnings_about(text: &str) -> Vec<String> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&KeepWarnings).expect("no other logger");
        log::set_max_level(log::LevelFilter::Warn);
    });
    let w = WARNINGS.lock().unwrap_or_else(|e| e.into_inner());
    w.iter().filter(|m| m.contains(text)).cloned().collect()
}

/// A regression test: one hash with a field that is not a number (a foreign or buggy writer's)
/// failed `get_many` whole, and with it `fnmetrics top`, every scrape and the alert evaluator.
#[test]
fn a_hash_that_does_not_decode_is_skipped_counted_and_named_once_and_the_others_are_read() {
    let dir = TempDir::new("reader-skip");
    let (server, unix) = server_with_socket(&dir);
    let opts = RedisOptions::default().with_key_prefix("skip:");
    let mut names = flush(&server.url(), &opts, 3, 1);
    let mut c = server.client();
    let _: () = c
        .hset_multiple(
            "skip:app:metrics:app::bad",
            &[("calls", "banana"), ("errors", "1")],
        )
        .unwrap();
    names.insert(1, "app::bad".to_owned());
    let key = "skip:app:metrics:app::bad";
    assert!(warnings_about(key).is_empty());

    let mut fast = RedisReader::connect(&server.url(), opts.clone()).unwrap();
    let mut through_redis_rs = RedisReader::connect(&unix, opts).unwrap();
    assert_eq!((fast.skipped(), through_redis_rs.skipped()), (0, 0));
    let got = fast.get_many(&names).unwrap();
    assert_eq!(
        got.iter().map(|m| m.is_some()).collect::<Vec<_>>(),
        [true, false, true, true]
    );
    assert_eq!(got[0].as_ref().map(|m| m.name.as_str()), Some("app::f0"));
    let good: Vec<String> = names.iter().filter(|n| *n != "app::bad").cloned().collect();
    let one: Vec<Option<Snapshot>> = one_by_one(&mut fast, &good);
    let read_good: Vec<Option<Snapshot>> = got.iter().filter(|m| m.is_some()).cloned().collect();
    assert_eq!(read_good, one);
    assert_eq!(fast.skipped(), 1);
    assert_eq!(got, through_redis_rs.get_many(&names).unwrap());
    assert_eq!(through_redis_rs.skipped(), 1);

    // Counted each time it is skipped; named once a reader (here two readers).
    assert_eq!(fast.get_many(&names).unwrap(), got);
    assert_eq!(through_redis_rs.get_many(&names).unwrap(), got);
    assert_eq!((fast.skipped(), through_redis_rs.skipped()), (2, 2));
    let warned = warnings_about(key);
    assert_eq!(warned.len(), 2, "{warned:#?}");
    assert!(warned[0].contains("banana"), "{warned:#?}");

    // Asked for alone, it is an error that says why.
    let e = fast.get("app::bad").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains(key), "{e}");
    assert_eq!(fast.skipped(), 2);
}

/// Waits until `server` serves nobody (a `DEBUG SLEEP` runs): a new connection's set-up times out.
fn wait_until_asleep(server: &RedisServer) {
    let client = redis::Client::open(server.url()).unwrap();
    support::wait_until("the server to sleep", Duration::from_secs(10), || {
        client
            .get_connection_with_timeout(Duration::from_millis(100))
            .is_err()
    });
}

#[test]
fn a_server_killed_mid_read_is_unavailable_then_read_again_after_restart() {
    let mut server = RedisServer::start_with_args(&["--enable-debug-command", "yes"]);
    let opts = RedisOptions::default();
    let names = flush(&server.url(), &opts, 30, 1);
    let mut reader = RedisReader::connect(&server.url(), opts).unwrap();
    let before = reader.get_many(&names).unwrap();
    let mut sleeper = server.client();
    let (e, took) = std::thread::scope(|s| {
        // The server sleeps (it serves nobody), the reader waits for its replies, and the
        // server is killed under it.
        s.spawn(move || {
            let _ = redis::cmd("DEBUG")
                .arg(&["SLEEP", "10"][..])
                .query::<()>(&mut sleeper);
        });
        wait_until_asleep(&server);
        let t = Instant::now();
        let read = s.spawn(|| reader.get_many(&names));
        std::thread::sleep(Duration::from_millis(300));
        server.stop();
        (read.join().unwrap().unwrap_err(), t.elapsed())
    });
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    // Woken by the kill, not by the end of the sleep or io_timeout (10 s).
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Down: nothing to connect to.
    let e = reader.get_many(&names).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    assert!(e.is_unsent());
    server.restart();
    assert_eq!(reader.get_many(&names).unwrap(), before);
}

#[test]
fn a_server_that_stops_answering_is_a_timeout_and_its_late_replies_are_never_read() {
    let server = RedisServer::start_with_args(&["--enable-debug-command", "yes"]);
    let opts = RedisOptions::default().with_io_timeout(Duration::from_millis(300));
    let names = flush(&server.url(), &opts, 5, 1);
    let mut reader = RedisReader::connect(&server.url(), opts).unwrap();
    let before = reader.get_many(&names).unwrap();
    let mut sleeper = server.client();
    let sleeping = std::thread::spawn(move || {
        let _: () = redis::cmd("DEBUG")
            .arg(&["SLEEP", "3"][..])
            .query(&mut sleeper)
            .unwrap();
    });
    wait_until_asleep(&server);
    let t = Instant::now();
    let e = reader.get_many(&names[..2]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    sleeping.join().unwrap();
    // A new connection: the replies to the timed-out reads (2 names) are not taken for these.
    assert_eq!(reader.get_many(&names).unwrap(), before);
}
