//! `fnmetrics serve --prometheus ADDR`: the fleet-wide aggregates from Redis, in the Prometheus
//! text format, read again on every scrape.

use crate::args::{ServeArgs, Servers};
use crate::conn::redis_error;
use crate::error::{CliError, CliResult};
use crate::glob::{self, Glob};
use crate::output::print;
use crate::stop::Stop;
use fnmetrics::redact_url;
use fnmetrics::redis::{ChangeCursor, RedisOptions, RedisReader};
use fnmetrics::{prometheus, ErrorKind, Snapshot};
use std::time::Duration;

pub(crate) fn run(s: &Servers, a: &ServeArgs) -> CliResult<u8> {
    let glob = glob::optional(a.func.as_deref())?;
    let url = s.redis_url()?.to_owned();
    // Every read and write of a scrape waits at most --timeout.
    let options = s.redis_options().with_io_timeout(a.timeout);
    let mut fleet = Fleet::connect(&url, options)
        .map_err(|e| redis_error(&url, "cannot connect to Redis", e))?;
    // Read once before listening: a Redis that holds something else fails now, not on the
    // first scrape.
    fleet
        .read(glob.as_ref())
        .map_err(|e| redis_error(&url, "cannot read aggregates", e))?;

    let stop = Stop::install()?;
    let scrape_url = url.clone();
    let server = prometheus::serve_with(
        a.prometheus.as_str(),
        Box::new(move || {
            // A failed read is said on stderr and in the 503 answer; the next scrape tries again.
            let all = fleet.read(glob.as_ref()).map_err(|e| {
                let report = redis_error(&scrape_url, "cannot read aggregates", e).report();
                eprintln!("{report}");
                report
            })?;
            Ok(prometheus::render_snapshots(&all))
        }),
    )
    .map_err(|e| {
        CliError::caused(format!("cannot listen on {}", a.prometheus), e)
            .hint("give another --prometheus HOST:PORT (port 0 picks a free one)")
    })?;
    print(&format!(
        "fnmetrics serve: http://{}/metrics, from Redis at {} (Ctrl-C to stop)\n",
        server.local_addr(),
        redact_url(&url)
    ))?;
    while !stop.sleep(Duration::from_secs(3600)) {}
    drop(server);
    Ok(0)
}

/// Reads the fleet-wide snapshot of every function in Redis on two connections at once: parsing
/// the replies is most of a read's time (Redis itself a third), and the two halves are parsed on
/// two cores (`cargo bench -p fnmetrics-cli --bench fleet`).
pub(crate) struct Fleet {
    readers: [RedisReader; 2],
}

/// Below this many functions one connection reads them all.
const SPLIT_FROM: usize = 2_000;

impl Fleet {
    /// Connects both readers.
    pub(crate) fn connect(url: &str, options: RedisOptions) -> Result<Fleet, fnmetrics::Error> {
        Ok(Fleet {
            readers: [
                RedisReader::connect(url, options.clone())?,
                RedisReader::connect(url, options)?,
            ],
        })
    }

    /// Every function whose name matches `glob`, sorted by name.
    pub(crate) fn read(&mut self, glob: Option<&Glob>) -> Result<Vec<Snapshot>, fnmetrics::Error> {
        let names: Vec<String> = self.readers[0]
            .functions()?
            .into_iter()
            .filter(|n| glob.is_none_or(|g| g.matches(n)))
            .collect();
        self.read_names(&names)
    }

    /// The functions whose aggregates changed since `cursor`, sorted by name (see
    /// `RedisReader::changed`), and `cursor` moved past them.
    pub(crate) fn read_changed(
        &mut self,
        cursor: &mut ChangeCursor,
    ) -> Result<Vec<Snapshot>, fnmetrics::Error> {
        let names = self.readers[0].changed(cursor)?;
        self.read_names(&names)
    }

    /// Moves `cursor` past every change so far, reading nothing else.
    pub(crate) fn skip_changes(
        &mut self,
        cursor: &mut ChangeCursor,
    ) -> Result<(), fnmetrics::Error> {
        self.readers[0].changed(cursor).map(drop)
    }

    /// The functions of `names` that have aggregates, in the same order.
    fn read_names(&mut self, names: &[String]) -> Result<Vec<Snapshot>, fnmetrics::Error> {
        let [first, second] = &mut self.readers;
        if names.len() < SPLIT_FROM {
            // Pipelined: thousands of functions in one round trip.
            return Ok(first.get_many(names)?.into_iter().flatten().collect());
        }
        let (a, b) = names.split_at(names.len() / 2);
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| second.get_many(b));
            (first.get_many(a), other.join())
        });
        let b = b.map_err(|_| {
            fnmetrics::Error::new(ErrorKind::Decode, "a thread reading aggregates panicked")
        })?;
        Ok(a?.into_iter().chain(b?).flatten().collect())
    }
}
