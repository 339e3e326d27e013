//! The flusher over `rediss://`: it takes a CA file, and refuses a server it cannot verify.
#![cfg(all(feature = "redis", feature = "tls"))]

use fnmetrics::ErrorKind;
use fnmetrics_test_support::redis::RedisServer;

#[fnmetrics::measured(name = "tls::through_the_flusher")]
fn through_the_flusher() {}

#[test]
fn the_flusher_takes_a_ca_file_and_refuses_a_server_it_cannot_verify() {
    let server = RedisServer::start_with_tls(None);
    let refused = fnmetrics::Flusher::builder()
        .redis(server.tls_url())
        .start()
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Auth, "{refused:?}");

    let flusher = fnmetrics::Flusher::builder()
        .redis(server.tls_url())
        .ca_file(server.ca_file())
        .on_error(|_| {})
        .start()
        .unwrap();
    for _ in 0..7 {
        through_the_flusher();
    }
    flusher.flush().unwrap();
    let fleet = flusher.fleet("tls::through_the_flusher").unwrap().unwrap();
    assert_eq!(fleet.calls, 7);
    assert_eq!(flusher.stats().entries_written, 7);
}
