//! `fnmetrics report` reads PostgreSQL's `metrics` table: exact counts in JSON and CSV, a table
//! for people.

use crate::{ok, record};
use fnmetrics::measured;
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use std::hint::black_box;

#[derive(Debug)]
struct Declined;

#[measured(name = "report::checkout")]
fn checkout(i: u64) -> Result<u64, Declined> {
    let v = (0..200 + i % 50).fold(0u64, |a, x| black_box(a ^ x));
    if i.is_multiple_of(5) {
        Err(Declined)
    } else {
        Ok(v)
    }
}

#[measured(name = "report::load_user")]
fn load_user(i: u64) -> u64 {
    black_box(i * 3)
}

#[measured(name = "other::ping")]
fn ping() {}

#[test]
fn report_counts_exactly_in_json_csv_and_table() {
    fnmetrics_test_support::own_process!();
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    record(&redis, Some(&pg), || {
        for i in 0..100 {
            let _ = checkout(i);
        }
        for i in 0..40 {
            load_user(i);
        }
        for _ in 0..7 {
            ping();
        }
    });
    let url = pg.url();

    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "report",
        "--postgres",
        &url,
        "--fn",
        "report::*",
        "--sort",
        "calls",
        "--format",
        "json",
    ]))
    .unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json:#}");
    assert_eq!(rows[0]["function"], "report::checkout");
    assert_eq!(rows[0]["calls"], 100);
    assert_eq!(rows[0]["errors"], 20);
    assert_eq!(rows[1]["function"], "report::load_user");
    assert_eq!(
        (rows[1]["calls"].as_u64(), rows[1]["errors"].as_u64()),
        (Some(40), Some(0))
    );
    for r in rows {
        let ns = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
        assert!(
            ns("p50_ns") <= ns("p99_ns") && ns("p99_ns") <= ns("max_ns"),
            "{r}"
        );
        assert!(ns("mean_ns") > 0 && ns("mean_ns") <= ns("max_ns"), "{r}");
    }

    let csv = ok(&[
        "report",
        "--postgres",
        &url,
        "--sort",
        "errors",
        "--format",
        "csv",
    ]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "function,calls,errors,mean_ns,p50_ns,p99_ns,max_ns"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[1].starts_with("report::checkout,100,20,"), "{csv}");
    assert!(
        lines.iter().any(|l| l.starts_with("other::ping,7,0,")),
        "{csv}"
    );

    let table = ok(&["report", "--postgres", &url, "--since", "30m"]);
    let header = table.lines().next().unwrap();
    for col in [
        "function", "calls", "errors", "error%", "mean", "p50", "p99", "max",
    ] {
        assert!(header.contains(col), "{table}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("report::checkout"))
        .unwrap();
    assert!(row.contains("  100  ") && row.contains("20.0%"), "{table}");
    assert!(
        row.contains(" ns") || row.contains(" µs") || row.contains(" ms"),
        "{table}"
    );
    // Columns line up: every line is as wide as the header or narrower, and the calls column
    // ends at the same place.
    let end = header.find("calls").unwrap() + "calls".len();
    for l in table.lines().skip(1) {
        assert!(l[..end].ends_with(|c: char| c.is_ascii_digit()), "{table}");
    }

    let none = ok(&["report", "--postgres", &url, "--fn", "nothing::*"]);
    assert!(none.contains("no calls recorded"), "{none}");
    // The environment gives the URL too.
    let out = crate::fnmetrics()
        .args(["report", "--format", "json", "--fn", "other::ping"])
        .env("FNMETRICS_POSTGRES_URL", &url)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["calls"], 7);
    // One service's calls: the recording process named itself `shop`.
    let shop: serde_json::Value = serde_json::from_str(&ok(&[
        "report",
        "--postgres",
        &url,
        "--service",
        "shop",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(shop.as_array().map(Vec::len), Some(3), "{shop:#}");
    let other = ok(&["report", "--postgres", &url, "--service", "billing"]);
    assert!(
        other.contains("no calls recorded") && other.contains("in service `billing`"),
        "{other}"
    );
}
