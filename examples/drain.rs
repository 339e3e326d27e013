//! A standalone stage-2 drainer: moves entries from Redis into PostgreSQL, for fleets that run
//! dedicated drainers (start the applications' flushers with `.run_drain(false)`). Any number can
//! run against one Redis; each batch is claimed by one of them.
//!
//! ```text
//! cargo run --example drain -- redis://127.0.0.1/ postgres://postgres@127.0.0.1/metrics [--once]
//! ```
//! The URLs may also come from `FNMETRICS_REDIS_URL` and `FNMETRICS_POSTGRES_URL`. With `--once`
//! it drains what is there and exits; otherwise it polls every second until killed.

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let mut urls = args.iter().filter(|a| !a.starts_with("--")).cloned();
    let redis = urls
        .next()
        .or_else(|| std::env::var("FNMETRICS_REDIS_URL").ok())
        .ok_or("usage: drain REDIS_URL POSTGRES_URL [--once] (or set FNMETRICS_REDIS_URL)")?;
    let postgres = urls
        .next()
        .or_else(|| std::env::var("FNMETRICS_POSTGRES_URL").ok())
        .ok_or("usage: drain REDIS_URL POSTGRES_URL [--once] (or set FNMETRICS_POSTGRES_URL)")?;

    let mut drainer =
        fnmetrics::Drainer::connect(&redis, Default::default(), &postgres, Default::default())?;
    let mut backoff = Duration::from_millis(100);
    loop {
        match drainer.drain_all() {
            Ok(done) => {
                if !done.is_idle() {
                    println!(
                        "saved {} entries, set {} aside as dead letters",
                        done.moved, done.dead_lettered
                    );
                }
                backoff = Duration::from_millis(100);
                if once {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                eprintln!("drain: {e} (retrying in {backoff:?})");
                if once {
                    return Err(e.into());
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
