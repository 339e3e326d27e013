//! A small shop back-end with measured functions: run it, and read the table it prints.
//!
//! ```text
//! cargo run --example quickstart
//! FNMETRICS_REDIS_URL=redis://127.0.0.1/ FNMETRICS_POSTGRES_URL=postgres://postgres@127.0.0.1/test \
//!     cargo run --example quickstart
//! ```
//! Without the variables everything stays in this process (the embedded default); with them,
//! metrics also go to Redis and then PostgreSQL, and the example reads them back from there.

use fnmetrics::measured;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

#[derive(Debug)]
enum ShopError {
    OutOfStock,
    Declined,
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShopError::OutOfStock => f.write_str("out of stock"),
            ShopError::Declined => f.write_str("card declined"),
        }
    }
}

impl std::error::Error for ShopError {}

/// The shop's own result alias: `#[measured]` sees through it.
type ShopResult<T> = Result<T, ShopError>;

/// Parses an order line like `"sku-17 x3"`.
#[measured]
fn parse_order(line: &str) -> Option<(u32, u32)> {
    let (sku, qty) = line.split_once(" x")?;
    Some((sku.strip_prefix("sku-")?.parse().ok()?, qty.parse().ok()?))
}

struct Inventory {
    stock: Vec<u32>,
}

impl Inventory {
    /// Takes `qty` items of `sku` off the shelf; fails when there are not enough.
    #[measured]
    fn reserve(&mut self, sku: u32, qty: u32) -> ShopResult<u32> {
        let left = &mut self.stock[sku as usize % 64];
        if *left < qty {
            *left += 40; // restock for the next customer
            return Err(ShopError::OutOfStock);
        }
        *left -= qty;
        Ok(*left)
    }
}

/// Prices an order: a little arithmetic, a few microseconds.
#[measured]
fn price(sku: u32, qty: u32) -> u64 {
    let mut cents = u64::from(sku) * 97 + 1_000;
    for _ in 0..(qty * 50) {
        cents = cents.wrapping_mul(6364136223846793005).wrapping_add(1) % 100_000 + 100;
    }
    cents * u64::from(qty)
}

/// A future that is pending once before it is ready, like a network round trip.
struct RoundTrip(bool);

impl Future for RoundTrip {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Charges a card; about one in twenty is declined.
#[measured]
async fn charge_card(order: u64, cents: u64) -> ShopResult<u64> {
    RoundTrip(false).await;
    if order % 20 == 7 {
        return Err(ShopError::Declined);
    }
    Ok(cents)
}

fn checkout(inventory: &mut Inventory, order: u64) -> ShopResult<u64> {
    let line = format!("sku-{} x{}", order % 53, order % 5 + 1);
    let (sku, qty) = parse_order(&line).ok_or(ShopError::OutOfStock)?;
    inventory.reserve(sku, qty)?;
    let cents = price(sku, qty);
    pollster::block_on(charge_card(order, cents))
}

fn main() -> Result<(), fnmetrics::Error> {
    let redis = std::env::var("FNMETRICS_REDIS_URL").ok();
    let postgres = std::env::var("FNMETRICS_POSTGRES_URL").ok();
    let mut builder = fnmetrics::Flusher::builder()
        .batch_size(5_000)
        .flush_interval(Duration::from_secs(1));
    if let Some(url) = &redis {
        builder = builder.redis(url.clone());
    }
    if let Some(url) = &postgres {
        builder = builder.postgres(url.clone());
    }
    #[cfg(feature = "postgres")]
    let started = std::time::SystemTime::now();
    let flusher = builder.start()?;
    println!("mode: {}", flusher.mode());

    let mut inventory = Inventory {
        stock: vec![30; 64],
    };
    let (mut ok, mut failed) = (0u32, 0u32);
    for order in 0..20_000 {
        match checkout(&mut inventory, order) {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    println!("{ok} orders paid, {failed} failed\n");
    flusher.flush()?;

    let local = fnmetrics::snapshot_all();
    print_table("this process", &local);

    #[cfg(feature = "redis")]
    if redis.is_some() {
        print_fleet(&flusher, &local)?;
    }
    #[cfg(feature = "postgres")]
    if postgres.is_some() {
        print_window(&flusher, &local, started)?;
    }
    if redis.is_some() || postgres.is_some() {
        print_next_steps();
    }
    Ok(())
}

/// Where to look next: the `fnmetrics` command reads the same servers, from the same variables.
fn print_next_steps() {
    println!(
        "next, with the same FNMETRICS_REDIS_URL / FNMETRICS_POSTGRES_URL set \
         (cargo install --path cli):\n  \
         fnmetrics report              # per function over the last hour (PostgreSQL)\n  \
         fnmetrics top                 # live calls/s and p99 across processes (Redis)\n  \
         fnmetrics html -o report.html # charts over time (PostgreSQL)"
    );
}

/// Every process that flushed to this Redis, this run and earlier ones.
#[cfg(feature = "redis")]
fn print_fleet(
    flusher: &fnmetrics::Flusher,
    local: &[fnmetrics::Snapshot],
) -> Result<(), fnmetrics::Error> {
    let mut fleet = Vec::new();
    for m in local {
        fleet.extend(flusher.fleet(&m.name)?);
    }
    print_table("fleet-wide (Redis, all runs)", &fleet);
    Ok(())
}

/// What PostgreSQL holds for this run's time window.
#[cfg(feature = "postgres")]
fn print_window(
    flusher: &fnmetrics::Flusher,
    local: &[fnmetrics::Snapshot],
    started: std::time::SystemTime,
) -> Result<(), fnmetrics::Error> {
    let now = std::time::SystemTime::now() + Duration::from_secs(1);
    println!("this run's window (PostgreSQL):");
    println!(
        "{:<34} {:>7} {:>7} {:>10} {:>10} {:>10}",
        "function", "calls", "errors", "mean", "p50", "p99"
    );
    // One read for all of this run's functions (one query a table).
    let names = local.iter().map(|m| &m.name);
    let query = fnmetrics::postgres::Query::functions(names).between(started, now);
    for (name, w) in flusher.window(&query)? {
        println!(
            "{:<34} {:>7} {:>7} {:>10} {:>10} {:>10}",
            name,
            w.calls,
            w.errors,
            fmt(w.mean),
            fmt(w.p50),
            fmt(w.p99)
        );
    }
    Ok(())
}

fn print_table(title: &str, rows: &[fnmetrics::Snapshot]) {
    println!("{title}:");
    println!(
        "{:<34} {:>7} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10}",
        "function", "calls", "errors", "error%", "mean", "p50", "p99", "max"
    );
    for m in rows {
        println!(
            "{:<34} {:>7} {:>7} {:>6.1}% {:>10} {:>10} {:>10} {:>10}",
            m.name,
            m.calls,
            m.errors,
            100.0 * m.error_rate(),
            fmt(m.mean()),
            fmt(m.quantile(0.5)),
            fmt(m.quantile(0.99)),
            fmt(m.max())
        );
    }
    println!();
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}
