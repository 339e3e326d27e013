//! `fnmetrics html`: one self-contained HTML file (inline CSS and SVG; no script, no network)
//! with a summary table and, per function, charts over time of calls/s, error rate, p50 and p99.

use crate::args::{HtmlArgs, Servers, SortKey};
use crate::cmd::report::{self, FnStats};
use crate::conn::{self, postgres_error};
use crate::duration::{human_ns, human_span, utc};
use crate::error::{CliError, CliResult};
use crate::glob;
use crate::output::{html_escape as escape, percent, print};
use crate::svg::{Chart, Series};
use fnmetrics::postgres::{Point, Query};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// About this many points per chart.
const BUCKETS: usize = 60;

/// One function's numbers in each time bucket (`None`: no call in it).
#[derive(Debug, Default)]
struct Buckets {
    calls: Vec<u64>,
    errors: Vec<u64>,
    p50_ns: Vec<Option<f64>>,
    p99_ns: Vec<Option<f64>>,
}

/// The window and its points, in seconds since the Unix epoch: the summary covers
/// `[from, to)`, the charts `count` points of `width` from `start` (whole minutes or hours when
/// the step is, so that they come from the rollups).
#[derive(Clone, Copy, Debug)]
struct Window {
    from: f64,
    to: f64,
    start: f64,
    width: f64,
    count: usize,
}

pub(crate) fn run(s: &Servers, a: &HtmlArgs) -> CliResult<u8> {
    let glob = glob::optional(a.func.as_deref())?;
    let url = s.postgres_url()?;
    let mut reader = conn::postgres_reader(s)?;
    let to = SystemTime::now();
    let from = to.checked_sub(a.since).unwrap_or(UNIX_EPOCH);
    let names = report::functions(&mut reader, url, glob.as_ref())?;
    let mut summary = report::query(&mut reader, url, &names, None, from, to)?;
    report::sort(&mut summary, SortKey::Calls);
    let step = step(a.since);
    let series = reader
        .series(&Query::functions(&names).between(from, to).every(step))
        .map_err(|e| postgres_error(url, "cannot read the charts' series", e))?;
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let first = series
        .first()
        .map(|(_, p)| p.as_slice())
        .unwrap_or_default();
    let w = Window {
        from: secs(from),
        to: secs(to),
        start: first.first().map_or(secs(from), |p| secs(p.start)),
        // The reader may round the step up (past a table's retention): the points say.
        width: match first {
            [p, q, ..] => secs(q.start) - secs(p.start),
            _ => step.as_secs_f64(),
        },
        count: first.len(),
    };
    let buckets: BTreeMap<String, Buckets> = series
        .into_iter()
        .map(|(name, points)| (name, Buckets::new(&points)))
        .collect();
    let title = match &a.func {
        Some(g) => format!("fnmetrics: {g}, last {}", human_span(a.since)),
        None => format!("fnmetrics: last {}", human_span(a.since)),
    };
    let html = page(&title, w, &summary, &buckets);
    std::fs::write(&a.output, html).map_err(|e| {
        CliError::caused(format!("cannot write {}", a.output.display()), e)
            .hint("check that the directory exists and is writable")
    })?;
    print(&format!(
        "wrote {} ({} functions, {} charts)\n",
        a.output.display(),
        summary.len(),
        summary.len() * 3
    ))?;
    Ok(0)
}

/// About `since / BUCKETS`, in whole seconds; whole minutes from a minute on and whole hours
/// from an hour on, so that the points come from the minute or hourly rollup.
fn step(since: Duration) -> Duration {
    let secs = (since.as_secs_f64() / BUCKETS as f64).ceil().max(1.0) as u64;
    let unit = match secs {
        0..60 => 1,
        60..3600 => 60,
        _ => 3600,
    };
    Duration::from_secs(secs.div_ceil(unit) * unit)
}

impl Buckets {
    fn new(points: &[Point]) -> Buckets {
        let ns = |d: Duration| d.as_secs_f64() * 1e9;
        let with_calls = |p: &Point, v: f64| (p.calls > 0).then_some(v);
        Buckets {
            calls: points.iter().map(|p| p.calls).collect(),
            errors: points.iter().map(|p| p.errors).collect(),
            p50_ns: points.iter().map(|p| with_calls(p, ns(p.p50))).collect(),
            p99_ns: points.iter().map(|p| with_calls(p, ns(p.p99))).collect(),
        }
    }
}

fn page(
    title: &str,
    w: Window,
    summary: &[FnStats],
    buckets: &BTreeMap<String, Buckets>,
) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
:root {{ color-scheme: light; }}
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937;
       background: #f8fafc; margin: 0; padding: 24px 32px 48px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }}
h2 {{ font-size: 16px; margin: 32px 0 8px; font-family: ui-monospace, "SFMono-Regular", Menlo, monospace;
      word-break: break-all; }}
.sub {{ color: #64748b; margin: 0 0 20px; }}
table {{ border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px #0001; }}
th, td {{ padding: 6px 12px; border-bottom: 1px solid #e2e8f0; text-align: right; white-space: nowrap; }}
th {{ background: #f1f5f9; font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .03em;
      color: #475569; }}
td:first-child, th:first-child {{ text-align: left; font-family: ui-monospace, Menlo, monospace; }}
td a {{ color: #1d4ed8; text-decoration: none; }}
.err {{ color: #b91c1c; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; }}
.chart {{ background: #fff; box-shadow: 0 1px 2px #0001; border-radius: 6px; padding: 8px; }}
.chart svg {{ width: 100%; height: auto; display: block; }}
.empty {{ color: #64748b; }}
footer {{ margin-top: 40px; color: #94a3b8; font-size: 12px; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="sub">{} to {} UTC &middot; {} per point &middot; {} functions</p>
"#,
        utc(w.from),
        utc(w.to),
        human_span(Duration::from_secs_f64(w.width)),
        summary.len(),
    );
    if summary.is_empty() {
        h.push_str("<p class=\"empty\">No calls recorded in this window.</p>\n");
    } else {
        h.push_str(
            "<table>\n<tr><th>function</th><th>calls</th><th>calls/s</th><th>errors</th>\
             <th>error %</th><th>mean</th><th>p50</th><th>p99</th><th>max</th></tr>\n",
        );
        let secs = w.to - w.from;
        for (i, r) in summary.iter().enumerate() {
            let _ = writeln!(
                h,
                "<tr><td><a href=\"#f{i}\">{}</a></td><td>{}</td><td>{:.2}</td><td{}>{}</td>\
                 <td{}>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.function),
                r.calls,
                r.calls as f64 / secs,
                if r.errors > 0 { " class=\"err\"" } else { "" },
                r.errors,
                if r.errors > 0 { " class=\"err\"" } else { "" },
                percent(r.errors as f64, r.calls as f64),
                human_ns(r.mean_ns as f64),
                human_ns(r.p50_ns as f64),
                human_ns(r.p99_ns as f64),
                human_ns(r.max_ns as f64),
            );
        }
        h.push_str("</table>\n");
    }
    let times: Vec<f64> = (0..w.count)
        .map(|i| w.start + (i as f64 + 0.5) * w.width)
        .collect();
    for (i, r) in summary.iter().enumerate() {
        let Some(b) = buckets.get(&r.function) else {
            continue;
        };
        let _ = writeln!(
            h,
            "<h2 id=\"f{i}\">{}</h2>\n<div class=\"charts\">",
            escape(&r.function)
        );
        let rate: Vec<Option<f64>> = b.calls.iter().map(|&c| Some(c as f64 / w.width)).collect();
        let error_pct: Vec<Option<f64>> = b
            .calls
            .iter()
            .zip(&b.errors)
            .map(|(&c, &e)| (c > 0).then(|| 100.0 * e as f64 / c as f64))
            .collect();
        let top = b.p99_ns.iter().flatten().fold(0f64, |a, &x| a.max(x));
        let (unit, div) = latency_unit(top);
        let scale = |v: &[Option<f64>]| v.iter().map(|x| x.map(|x| x / div)).collect::<Vec<_>>();
        let charts = [
            Chart {
                title: "Throughput".into(),
                y_label: "calls/s".into(),
                times: &times,
                series: vec![Series::new("calls/s", "#2563eb", rate)],
                y_max: None,
            },
            Chart {
                title: "Error rate".into(),
                y_label: "% of calls".into(),
                times: &times,
                series: vec![Series::new("error %", "#dc2626", error_pct)],
                y_max: Some(100.0),
            },
            Chart {
                title: "Latency".into(),
                y_label: unit.into(),
                times: &times,
                series: vec![
                    Series::new("p50", "#0d9488", scale(&b.p50_ns)),
                    Series::new("p99", "#7c3aed", scale(&b.p99_ns)),
                ],
                y_max: None,
            },
        ];
        for c in &charts {
            let _ = writeln!(h, "<div class=\"chart\">{}</div>", c.render());
        }
        h.push_str("</div>\n");
    }
    let _ = write!(
        h,
        "<footer>Generated by fnmetrics {} from PostgreSQL (rollups and raw rows). Times in UTC.</footer>\n\
         </body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    h
}

/// The unit to show latencies up to `max_ns` in, and its size in nanoseconds.
fn latency_unit(max_ns: f64) -> (&'static str, f64) {
    if max_ns < 1e3 {
        ("ns", 1.0)
    } else if max_ns < 1e6 {
        ("µs", 1e3)
    } else if max_ns < 1e9 {
        ("ms", 1e6)
    } else {
        ("s", 1e9)
    }
}
