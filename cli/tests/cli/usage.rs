//! Usage errors exit 2, unreachable servers exit 1 naming the server, and no password is printed.

use crate::{expect, fnmetrics, ok, run, text};

#[test]
fn every_command_has_help() {
    let top = ok(&["--help"]);
    for cmd in [
        "drain",
        "migrate",
        "report",
        "top",
        "status",
        "dead-letters",
        "forget",
        "html",
        "serve",
        "alerts",
    ] {
        assert!(top.contains(cmd), "{cmd} in\n{top}");
        let help = ok(&[cmd, "--help"]);
        assert!(help.contains("Usage: fnmetrics"), "{cmd}:\n{help}");
    }
    let report = ok(&["report", "--help"]);
    assert!(report.contains("--service"), "{report}");
    assert!(report.contains("Only one service's calls"), "{report}");
    assert!(ok(&["drain", "--help"]).contains("SIGTERM"));
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    for args in [
        &["frobnicate"][..],
        &["report", "--since", "soon"],
        &["report", "--sort", "name"],
        &["report", "--format", "xml"],
        &["drain", "--batch", "0"],
        &["forget"],
        &["html", "--since", "1h"],
    ] {
        expect(2, args);
    }
    // A missing URL says where to put one.
    let out = run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("no Redis URL") && err.contains("FNMETRICS_REDIS_URL"),
        "{err}"
    );
    let out = run(&[
        "report",
        "--postgres",
        "postgres://u@127.0.0.1:1/db",
        "--fn",
        "a[b",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not closed"));
    let out = run(&[
        "report",
        "--postgres",
        "postgres://u@127.0.0.1:1/db",
        "--service",
        "shop",
    ]);
    // A service is a filter, not a usage error: the server is what fails here.
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot connect to PostgreSQL"));
    let out = run(&["report", "--since", "soon"]);
    assert!(
        text(&out.stderr).contains("e.g. 250ms, 30s"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_unreachable_server_exits_1_naming_it_without_the_password() {
    let port = fnmetrics_test_support::free_port();
    let redis = format!("redis://:hunter2@127.0.0.1:{port}/");
    for args in [
        vec!["status", "--redis", &redis],
        vec!["top", "--once", "--redis", &redis],
        vec!["dead-letters", "list", "--redis", &redis],
    ] {
        let out = run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("Redis at redis://:***@127.0.0.1:{port}/")),
            "{err}"
        );
        assert!(err.contains("caused by:") && err.contains("hint:"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    let pg = format!("postgres://fn:hunter2@127.0.0.1:{port}/metrics");
    for args in [
        vec!["report", "--postgres", &pg],
        vec!["migrate", "--postgres", &pg],
        vec!["migrate", "--check", "--postgres", &pg],
    ] {
        let out = run(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "PostgreSQL at postgres://fn:***@127.0.0.1:{port}/metrics"
            )),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
    // From the environment too.
    let out = fnmetrics()
        .args(["drain", "--once"])
        .env("FNMETRICS_REDIS_URL", &redis)
        .env("FNMETRICS_POSTGRES_URL", &pg)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Redis at redis://:***@"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn a_quoted_password_with_a_space_in_a_key_value_url_is_never_printed() {
    let out = run(&[
        "report",
        "--postgres",
        "host=127.0.0.1 port=1 password='Sup3r Secret9' dbname=x",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("password=***"), "{err}");
    assert!(!err.contains("Sup3r") && !err.contains("Secret9"), "{err}");
}
