//! `fnmetrics migrate [--check]`.

use crate::{expect, ok};
use fnmetrics_test_support::postgres::PostgresServer;

#[test]
fn migrate_check_fails_before_and_passes_after() {
    let pg = PostgresServer::start();
    let url = pg.url();
    let before = expect(1, &["migrate", "--check", "--postgres", &url]);
    assert!(
        before.contains("schema missing") && before.contains("fnmetrics migrate"),
        "{before}"
    );
    // --check changed nothing.
    expect(1, &["migrate", "--check", "--postgres", &url]);
    // Reading before the migration says what to do.
    let out = crate::run(&["report", "--postgres", &url]);
    let err = crate::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("run `fnmetrics migrate`"), "{err}");

    let done = ok(&["migrate", "--postgres", &url]);
    assert!(done.contains("tables created; schema current"), "{done}");
    let after = ok(&["migrate", "--check", "--postgres", &url]);
    assert!(
        after.contains("schema current") && after.contains("version 2"),
        "{after}"
    );
    // Idempotent.
    let again = ok(&["migrate", "--postgres", &url]);
    assert!(again.starts_with("schema current"), "{again}");

    // Another table name is its own schema.
    expect(
        1,
        &[
            "migrate",
            "--check",
            "--postgres",
            &url,
            "--table",
            "other_metrics",
        ],
    );
    expect(2, &["migrate", "--postgres", &url, "--table", "bad-name"]);
}
