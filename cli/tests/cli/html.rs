//! `fnmetrics html`: a self-contained file whose charts a real browser (headless Chromium) draws.

use crate::{ok, record, wait_exit};
use fnmetrics::measured;
use fnmetrics_test_support::postgres::PostgresServer;
use fnmetrics_test_support::redis::RedisServer;
use fnmetrics_test_support::TempDir;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[measured(name = "html::<Cart as Checkout>::pay")]
fn pay(i: u64) -> Result<u64, String> {
    let v = (0..100 + i % 300).fold(0u64, |a, x| black_box(a ^ x));
    if i.is_multiple_of(7) {
        Err("declined".into())
    } else {
        Ok(v)
    }
}

#[measured(name = "html::load")]
fn load(i: u64) -> u64 {
    black_box(i + 1)
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|b| d.join(b)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium was not found: install Debian's chromium package (apt-get install \
                 chromium), or run scripts/test, which installs it"
            )
        })
}

/// Renders `html` with headless Chromium into a PNG and returns its path.
fn screenshot(html: &Path, dir: &Path) -> PathBuf {
    let png = dir.join("report.png");
    let profile = dir.join("chromium-profile");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,2000")
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let st = wait_exit(&mut child, Duration::from_secs(60));
    assert!(st.success(), "chromium: {st:?}");
    assert!(png.is_file(), "chromium wrote no screenshot");
    png
}

/// (pixels that are not white, pixels of a saturated colour: the chart lines and dots).
fn count_pixels(png: &Path) -> (usize, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let (mut not_white, mut coloured) = (0, 0);
    for px in buf[..info.buffer_size()].chunks(channels) {
        let (r, g, b) = (px[0] as i32, px[1] as i32, px[2] as i32);
        if r < 240 || g < 240 || b < 240 {
            not_white += 1;
        }
        if r.max(g).max(b) - r.min(g).min(b) > 80 {
            coloured += 1;
        }
    }
    (not_white, coloured)
}

#[test]
fn html_report_is_self_contained_and_renders_its_charts() {
    fnmetrics_test_support::own_process!();
    let (redis, pg) = (RedisServer::start(), PostgresServer::start());
    record(&redis, Some(&pg), || {
        for i in 0..700 {
            let _ = pay(i);
            load(i);
        }
    });
    let dir = TempDir::new("cli-html");
    let file = dir.path().join("report.html");
    let out = ok(&[
        "html",
        "--postgres",
        &pg.url(),
        "--since",
        "2m",
        "--fn",
        "html::*",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.contains("2 functions, 6 charts"), "{out}");
    let html = std::fs::read_to_string(&file).unwrap();

    // Self-contained: no script, nothing fetched.
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(!html.contains("src="), "nothing loaded");
    assert!(!html.contains("<link"), "no stylesheet fetched");
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count()
    );
    // A summary table with both functions, names escaped.
    assert!(
        html.contains("html::&lt;Cart as Checkout&gt;::pay"),
        "escaped name"
    );
    assert!(html.contains("<table>") && html.contains("<td><a href=\"#f"));
    assert!(html.contains("<title>fnmetrics: html::*, last 2m</title>"));
    // Three charts per function, each an <svg> with line data, axes labelled with units.
    let svgs: Vec<&str> = html.split("<svg").skip(1).collect();
    assert_eq!(svgs.len(), 6, "one <svg> per chart");
    for svg in &svgs {
        let svg = &svg[..svg.find("</svg>").expect("closed")];
        assert!(svg.contains("<path d=\"M"), "line data in {svg}");
        assert!(svg.contains(">time (UTC)</text>"));
    }
    for label in [
        ">calls/s</text>",
        ">% of calls</text>",
        ">Latency</text>",
        ">p99</text>",
    ] {
        assert!(html.contains(label), "{label}");
    }
    assert!(
        ["ns", "µs", "ms"]
            .iter()
            .any(|u| html.contains(&format!(">{u}</text>"))),
        "a latency unit"
    );

    let png = screenshot(&file, dir.path());
    let (not_white, coloured) = count_pixels(&png);
    assert!(
        not_white > 20_000,
        "the page is blank: {not_white} non-white pixels"
    );
    assert!(
        coloured > 500,
        "no chart lines drawn: {coloured} coloured pixels"
    );
}
