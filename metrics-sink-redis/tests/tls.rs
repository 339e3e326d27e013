//! The Redis sink over `rediss://` against real TLS-only `redis-server`s: flushes, claims and
//! reads work; certificates that do not verify, bad CA files and `#insecure` are refused with
//! typed errors; passwords stay out of errors and `Debug`.
#![cfg(feature = "tls")]

use fnmetrics_test_support as support;

use fnmetrics_core::{EntryRecord, Error, ErrorKind, FlushBatch, IdGen, Snapshot};
use fnmetrics_sink_redis::{RedisOptions, RedisQueue, RedisReader, RedisSink, WriteOutcome};
use redis::Commands;
use std::time::Duration;
use support::redis::{RedisServer, TlsFiles};
use support::{free_port, TempDir};

/// Distinctive enough that finding it anywhere in an error means it leaked.
const SECRET: &str = "Zebra-Pw-9137-dont-print";

fn entries(ids: &mut IdGen, n: u64) -> Vec<EntryRecord> {
    (0..n)
        .map(|i| EntryRecord {
            id: ids.next_id(1_700_000_000_000 + i),
            func_name: "app::over_tls".into(),
            execution_time: Duration::from_micros(10 + i),
            error_occurred: i == 0,
            created_at_micros: 1_700_000_000_000_000 + i as i64,
            weight: 1,
            source: Default::default(),
        })
        .collect()
}

fn batch(flush: u8, entries: Vec<EntryRecord>) -> FlushBatch {
    let mut agg = Snapshot::new("app::over_tls");
    for e in &entries {
        agg.record(e.execution_time.as_nanos() as u64, e.error_occurred);
    }
    FlushBatch {
        flush_id: [flush; 16],
        aggregates: vec![agg],
        entries,
    }
}

fn tls_options(server: &RedisServer) -> RedisOptions {
    RedisOptions::default().with_ca_file(server.ca_file())
}

/// The error's Display, Debug and every source's Display and Debug, in one string.
fn everything_said(e: &Error) -> String {
    let mut all = format!("{e}\n{e:?}");
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        all.push_str(&format!("\n{s}\n{s:?}"));
        next = s.source();
    }
    all
}

#[test]
fn sink_reader_and_queue_work_over_tls_only() {
    let server = RedisServer::start_with_tls(None);
    let url = server.tls_url();
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");

    let mut sink = RedisSink::connect(&url, tls_options(&server)).expect("connect over TLS");
    let stored = entries(&mut IdGen::with_instance(1), 25);
    assert_eq!(
        sink.write_batch(&batch(1, stored.clone())).unwrap(),
        WriteOutcome::Applied
    );

    // Read back over TLS by the fixture's own client...
    let mut c = server.client();
    let raw: Vec<Vec<u8>> = c.lrange("metrics_list", 0, -1).unwrap();
    let read: Vec<EntryRecord> = raw
        .iter()
        .flat_map(|b| fnmetrics_sink_redis::wire::decode_element(b).entries)
        .collect();
    assert_eq!(read, stored);
    // ...which is TLS because the server has no plaintext port at all.
    let port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query(&mut c)
        .unwrap();
    assert_eq!(port, ["port", "0"]);
    let tls_port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-port")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        tls_port,
        ["tls-port".to_string(), server.port().to_string()]
    );

    // ...and by the reader and the queue, which share the connection code.
    let mut reader = RedisReader::connect(&url, tls_options(&server)).expect("reader over TLS");
    let got = reader.get("app::over_tls").unwrap().expect("aggregates");
    assert_eq!((got.calls, got.errors), (25, 1));
    assert_eq!(reader.functions().unwrap(), ["app::over_tls"]);
    // get_many keeps the TLS connection (its plain TCP one is for redis:// only).
    let names = ["app::over_tls", "app::missing"].map(String::from);
    assert_eq!(reader.get_many(&names).unwrap(), [Some(got), None]);

    let mut queue = RedisQueue::connect(&url, tls_options(&server)).expect("queue over TLS");
    assert_eq!(queue.pending_len().unwrap(), 25);
    let claim = queue.claim(100, Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(claim.entries, stored);
    queue.ack(&claim).unwrap();
    assert_eq!(queue.pending_len().unwrap(), 0);

    // A retry of the same flush is recognised over TLS too.
    assert_eq!(
        sink.write_batch(&batch(1, stored)).unwrap(),
        WriteOutcome::AlreadyApplied
    );
}

#[test]
fn sink_reconnects_over_tls_after_a_restart() {
    let mut server = RedisServer::start_with_tls(None);
    let mut sink = RedisSink::connect(&server.tls_url(), tls_options(&server)).unwrap();
    let mut ids = IdGen::with_instance(2);
    sink.write_batch(&batch(1, entries(&mut ids, 3))).unwrap();
    server.restart();
    // The first call after the restart may fail on the old connection; the CA is kept, so a
    // new TLS connection is made without reading the file again.
    let b = batch(2, entries(&mut ids, 4));
    let outcome = sink.write_batch(&b).or_else(|e| {
        assert!(e.kind().is_transient(), "{e:?}");
        sink.write_batch(&b)
    });
    assert_eq!(outcome.unwrap(), WriteOutcome::Applied);
    // Two flushes, one frame each, 7 entries in all.
    let mut queue = RedisQueue::connect(&server.tls_url(), tls_options(&server)).unwrap();
    assert_eq!(queue.pending_len().unwrap(), 7);
}

#[test]
fn a_plaintext_url_does_not_reach_a_tls_only_server() {
    let server = RedisServer::start_with_tls(None);
    let opts = RedisOptions::default().with_connect_timeout(Duration::from_secs(2));
    let e = RedisSink::connect(&server.url(), opts.with_io_timeout(Duration::from_secs(2)))
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{e:?}"
    );
}

#[test]
fn a_certificate_of_another_ca_is_a_non_transient_auth_error() {
    let server = RedisServer::start_with_tls(None);
    let other = TempDir::new("other-ca");
    let other_ca = TlsFiles::write(other.path()).ca;

    let e = RedisSink::connect(
        &server.tls_url(),
        RedisOptions::default().with_ca_file(&other_ca),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");
    assert!(!e.kind().is_transient());
    assert!(e.to_string().contains("TLS"), "{e}");
    // The cause says what rustls found.
    let said = everything_said(&e);
    assert!(said.contains("UnknownIssuer"), "{said}");

    // Without a CA file the system's roots are used, and they do not hold the test CA.
    let e = RedisReader::connect(&server.tls_url(), RedisOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");
    assert!(everything_said(&e).contains("UnknownIssuer"), "{e:?}");
    let e = RedisQueue::connect(&server.tls_url(), RedisOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");
}

#[test]
fn a_certificate_for_another_name_is_an_auth_error() {
    let server = RedisServer::start_with_tls(None);
    // The IPv4-mapped IPv6 address reaches the same 127.0.0.1 listener, but the certificate
    // names `localhost` and `127.0.0.1`, not `::ffff:127.0.0.1`.
    let url = format!("rediss://[::ffff:127.0.0.1]:{}/", server.port());
    let e = RedisSink::connect(&url, tls_options(&server)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");
    assert!(!e.kind().is_transient());
    let said = everything_said(&e);
    assert!(said.contains("NotValidForName"), "{said}");
}

#[test]
fn a_missing_or_non_pem_ca_file_is_invalid_config_naming_the_file() {
    let server = RedisServer::start_with_tls(None);
    let dir = TempDir::new("bad-ca");

    let missing = dir.path().join("no-such-ca.pem");
    let e = RedisSink::connect(
        &server.tls_url(),
        RedisOptions::default().with_ca_file(&missing),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e:?}");
    assert!(e.to_string().contains("no-such-ca.pem"), "{e}");
    assert!(
        std::error::Error::source(&e).is_some(),
        "the io::Error is kept"
    );

    let not_pem = dir.path().join("notes.txt");
    std::fs::write(
        &not_pem,
        "ceci n'est pas un certificat: Walrus-Content-42\n",
    )
    .unwrap();
    let e = RedisSink::connect(
        &server.tls_url(),
        RedisOptions::default().with_ca_file(&not_pem),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e:?}");
    assert!(e.to_string().contains("notes.txt"), "{e}");
    assert!(!everything_said(&e).contains("Walrus"), "{e:?}");

    // A broken PEM section: pem errors quote the bad line, ours do not.
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nWalrus-Content-42!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = RedisSink::connect(
        &server.tls_url(),
        RedisOptions::default().with_ca_file(&broken),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e:?}");
    assert!(e.to_string().contains("broken.pem"), "{e}");
    assert!(!everything_said(&e).contains("Walrus"), "{e:?}");

    // A server key is PEM but no certificate.
    let key_only = TlsFiles::write(dir.path()).key;
    let e = RedisSink::connect(
        &server.tls_url(),
        RedisOptions::default().with_ca_file(&key_only),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e:?}");
    assert!(!e.kind().is_transient());
}

#[test]
fn a_ca_file_needs_a_rediss_url() {
    let server = RedisServer::start();
    let tls = TlsFiles::write(TempDir::new("ca-plain").path());
    let e = RedisSink::connect(&server.url(), RedisOptions::default().with_ca_file(&tls.ca))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e:?}");
    assert!(e.to_string().contains("rediss://"), "{e}");
}

#[test]
fn the_insecure_fragment_is_refused() {
    let server = RedisServer::start_with_tls(None);
    let url = format!("rediss://127.0.0.1:{}/#insecure", server.port());
    for opts in [RedisOptions::default(), tls_options(&server)] {
        let e = RedisSink::connect(&url, opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{e:?}");
        assert!(e.to_string().contains("#insecure"), "{e}");
    }
}

#[test]
fn passwords_stay_out_of_errors_and_debug() {
    let server = RedisServer::start_with_tls(Some("the-right-one"));
    let port = server.port();
    let closed = free_port();

    let cases = [
        // The server refuses the password (over TLS).
        (
            format!("rediss://:{SECRET}@127.0.0.1:{port}/"),
            ErrorKind::Auth,
        ),
        (
            format!("rediss://default:{SECRET}@127.0.0.1:{port}/"),
            ErrorKind::Auth,
        ),
        // Nothing listens.
        (
            format!("redis://:{SECRET}@127.0.0.1:{closed}/"),
            ErrorKind::Unavailable,
        ),
        (
            format!("rediss://user:{SECRET}@127.0.0.1:{closed}/"),
            ErrorKind::Unavailable,
        ),
        // URLs that do not parse.
        (
            format!("rediss://:{SECRET}@127.0.0.1:99999/"),
            ErrorKind::InvalidUrl,
        ),
        (
            format!("rediss://:{SECRET}@127.0.0.1:{port}/#insecure"),
            ErrorKind::InvalidUrl,
        ),
        (
            format!("rediss://:{SECRET}@127.0.0.1:{port}/not-a-db"),
            ErrorKind::InvalidUrl,
        ),
    ];
    for (url, kind) in &cases {
        let opts = if url.starts_with("rediss:") {
            tls_options(&server)
        } else {
            RedisOptions::default()
        };
        let e = RedisSink::connect(url, opts).unwrap_err();
        assert_eq!(e.kind(), *kind, "{url}: {e:?}");
        let said = everything_said(&e);
        assert!(!said.contains(SECRET), "{url} leaked: {said}");
    }

    // A wrong CA with a password in the URL: the TLS error does not carry the URL either.
    let other = TempDir::new("other-ca-pw");
    let other_ca = TlsFiles::write(other.path()).ca;
    let e = RedisSink::connect(
        &format!("rediss://:{SECRET}@127.0.0.1:{port}/"),
        RedisOptions::default().with_ca_file(other_ca),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e:?}");
    assert!(!everything_said(&e).contains(SECRET));

    // Connected with the right password: it is in no Debug.
    let url = server.tls_url();
    assert!(url.contains("the-right-one"));
    let sink = RedisSink::connect(&url, tls_options(&server)).unwrap();
    let reader = RedisReader::connect(&url, tls_options(&server)).unwrap();
    let queue = RedisQueue::connect(&url, tls_options(&server)).unwrap();
    for debug in [
        format!("{sink:?}"),
        format!("{reader:?}"),
        format!("{queue:?}"),
    ] {
        assert!(!debug.contains("the-right-one"), "{debug}");
        assert!(debug.contains(&port.to_string()), "{debug}");
        assert!(debug.contains("tls: true"), "{debug}");
    }
}
