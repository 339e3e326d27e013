//! Per-call overhead of `#[measured]` against the limit baseline and peer crates, in one run.
//!
//! `cargo bench --bench overhead`. After criterion's own report, prints a table of overheads
//! (each variant minus the bare function) and the ratios the project tracks.

mod shared;

use criterion::Criterion;
use metered::{ErrorCount, HitCount, ResponseTime};
use shared::{clock_only, limit, median_ns, work, Overflow, Pair};
use std::hint::black_box;
use std::time::Duration;

const GROUP: &str = "overhead";

#[inline(never)]
fn bare(x: u64) -> Result<u64, Overflow> {
    work(x)
}

#[fnmetrics::measured(name = "bench::measured")]
#[inline(never)]
fn measured(x: u64) -> Result<u64, Overflow> {
    work(x)
}

#[derive(Default, Debug)]
struct MeteredSvc {
    metrics: MeteredSvcMetrics,
}

#[metered::metered(registry = MeteredSvcMetrics)]
impl MeteredSvc {
    #[measure([HitCount, ErrorCount, ResponseTime])]
    #[inline(never)]
    fn call(&self, x: u64) -> Result<u64, Overflow> {
        work(x)
    }
}

static METERED: std::sync::LazyLock<MeteredSvc> = std::sync::LazyLock::new(MeteredSvc::default);

fn metered(x: u64) -> Result<u64, Overflow> {
    METERED.call(x)
}

#[autometrics::autometrics]
#[inline(never)]
fn autometrics(x: u64) -> Result<u64, Overflow> {
    work(x)
}

type Variant = (&'static str, fn(u64) -> Result<u64, Overflow>);

const VARIANTS: [Variant; 6] = [
    ("bare", bare),
    ("clock", clock_only),
    ("limit", limit),
    ("fnmetrics", measured),
    ("metered", metered),
    ("autometrics", autometrics),
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);
    for (name, f) in VARIANTS {
        g.bench_function(format!("1t/{name}"), |b| {
            b.iter(|| f(black_box(12345)));
        });
    }
    let pair = Pair::new();
    for (name, f) in VARIANTS {
        g.bench_function(format!("2t/{name}"), |b| {
            b.iter_custom(|iters| pair.run(iters, f));
        });
    }
    g.finish();
}

fn summary() {
    let get = |t: &str, v: &str| median_ns(GROUP, &format!("{t}_{v}"));
    println!("\nPer-call overhead over the bare function (criterion medians, ns):");
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>10}",
        "variant", "1 thread", "overhead", "2 threads", "overhead"
    );
    let mut over = std::collections::HashMap::new();
    for (name, _) in VARIANTS {
        let (Some(t1), Some(t2)) = (get("1t", name), get("2t", name)) else {
            println!("{name:<12} (no estimate; was the bench filtered?)");
            continue;
        };
        let (b1, b2) = (
            get("1t", "bare").unwrap_or(0.0),
            get("2t", "bare").unwrap_or(0.0),
        );
        let (o1, o2) = ((t1 - b1).max(0.0), (t2 - b2).max(0.0));
        over.insert(name, (o1, o2));
        println!("{name:<12} {t1:>10.2} {o1:>10.2} {t2:>10.2} {o2:>10.2}");
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    if let (Some(&(f1, f2)), Some(&(l1, _)), Some(&(m1, _)), Some(&(a1, _))) = (
        over.get("fnmetrics"),
        over.get("limit"),
        over.get("metered"),
        over.get("autometrics"),
    ) {
        println!(
            "\nfnmetrics overhead / limit overhead        = {:.2}  (goal <= 1.5)",
            ratio(f1, l1)
        );
        println!(
            "metered overhead / fnmetrics overhead      = {:.2}  (goal >= 3)",
            ratio(m1, f1)
        );
        println!(
            "autometrics overhead / fnmetrics overhead  = {:.2}",
            ratio(a1, f1)
        );
        println!(
            "fnmetrics 2-thread / 1-thread overhead     = {:.2}  (goal <= 1.25)",
            ratio(f2, f1)
        );
        if let Some(&(c1, _)) = over.get("clock") {
            println!(
                "fnmetrics overhead above two TSC reads     = {:.2} ns",
                f1 - c1
            );
            println!(
                "metered overhead / two TSC reads           = {:.2}  (the best ratio any timing recorder can have)",
                ratio(m1, c1)
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}
