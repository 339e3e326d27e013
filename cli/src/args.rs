//! The command line: every command, flag and its help text (clap derive).

use crate::duration::parse_duration;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Function metrics from the command line: move entries from Redis to PostgreSQL, read reports,
/// watch the fleet live, and look after the pipeline.
///
/// URLs come from --redis / --postgres or FNMETRICS_REDIS_URL / FNMETRICS_POSTGRES_URL.
/// Passwords in them are never printed.
///
/// Exit status: 0 success, 1 a runtime failure (a server unreachable, a query failed, `migrate
/// --check` found the schema out of date), 2 a usage error.
#[derive(Debug, Parser)]
#[command(name = "fnmetrics", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) servers: Servers,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the servers are; accepted before or after the command.
#[derive(Debug, Args)]
pub(crate) struct Servers {
    /// The Redis URL.
    #[arg(
        help = "Redis URL (redis://[user:password@]host:port/db, or rediss:// for TLS)",
        long,
        env = "FNMETRICS_REDIS_URL",
        global = true,
        help_heading = "Connection",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) redis: Option<String>,
    /// The PostgreSQL URL.
    #[arg(
        help = "PostgreSQL URL (postgres://user[:password]@host:port/database?sslmode=...)",
        long,
        env = "FNMETRICS_POSTGRES_URL",
        global = true,
        help_heading = "Connection",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) postgres: Option<String>,
    /// Put in front of every Redis key, as the flushers' `.key_prefix(..)`.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        default_value = "",
        value_name = "PREFIX"
    )]
    pub(crate) key_prefix: String,
    /// The PostgreSQL entry table, as the flushers' `.table(..)`.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        default_value = "metrics",
        value_name = "NAME"
    )]
    pub(crate) table: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Move entries from Redis into PostgreSQL (a standalone stage 2) until stopped.
    ///
    /// Any number of drainers may run against one Redis; each batch is claimed by one of them.
    /// SIGINT or SIGTERM stops it cleanly between batches (exit status 0).
    Drain(DrainArgs),
    /// Create or upgrade the PostgreSQL schema (idempotent), or check it with --check.
    Migrate(MigrateArgs),
    /// Per-function calls, errors and latency over a time window, from PostgreSQL.
    Report(ReportArgs),
    /// A live view of the fleet from the Redis aggregates: calls/s, errors/s, p50, p99.
    Top(TopArgs),
    /// Pipeline health from Redis: entries waiting, claims held, dead letters, drain lag,
    /// aggregate hashes that do not decode.
    Status(StatusArgs),
    /// List, re-queue or purge the entries stage 2 set aside.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Remove functions' aggregates and names from Redis (a dry run without --yes).
    ///
    /// A process that still measures a removed function brings it back with its next flush.
    Forget(ForgetArgs),
    /// Write a self-contained HTML report with charts over time, from PostgreSQL.
    Html(HtmlArgs),
    /// Serve the fleet-wide aggregates from Redis to Prometheus on http://ADDR/metrics.
    ///
    /// Redis is read on every scrape (a scrape that cannot read it is answered with status 503).
    /// SIGINT or SIGTERM stops it cleanly (exit status 0).
    Serve(ServeArgs),
    /// Alert rules from a TOML file: check it, or export it as Prometheus alerting rules.
    ///
    /// The file holds [[rule]] tables (name, functions, when, window, for, min_calls,
    /// severity) and [[notify]] tables (kind = webhook, slack, email or alertmanager); see
    /// cli/README.md. Mistakes are printed as FILE:LINE:COLUMN: message (exit status 1).
    #[command(subcommand)]
    Alerts(AlertsCommand),
}

#[derive(Debug, Args)]
pub(crate) struct DrainArgs {
    /// Drain what is waiting now, then exit.
    #[arg(long)]
    pub(crate) once: bool,
    /// The most entries one claim takes.
    #[arg(long, default_value_t = 50_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) batch: u64,
    /// How long a claim is this drainer's before another may take it over (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) lease: Duration,
    /// How long to wait when nothing is waiting, before looking again.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) poll: Duration,
    /// PostgreSQL connections that write a claim at once, a part each (a server with several
    /// cores stores a claim sooner; 1: one connection).
    #[arg(long, default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) writers: u64,
    /// Claims worked on at once, each with its own connections (on a Redis Cluster, shards of
    /// different primaries drained in parallel; give the number of primaries).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) lanes: u64,
    /// Also evaluate these alert rules (as `fnmetrics alerts run`, every second), on a thread
    /// of its own.
    #[arg(long, value_name = "FILE")]
    pub(crate) rules: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// Only report whether the schema is current; exit status 1 if it is not.
    #[arg(long)]
    pub(crate) check: bool,
}

/// Output formats of the reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for a person.
    Table,
    /// A JSON document, for scripts.
    Json,
    /// Comma-separated values with a header line.
    Csv,
}

/// How `report` orders its rows (largest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SortKey {
    /// The 99th percentile of the call time.
    P99,
    /// The number of failed calls.
    Errors,
    /// The number of calls.
    Calls,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The window: from this long ago until now (e.g. 15m, 1h, 24h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) since: Duration,
    /// Only functions whose name matches this glob (`*`, `?`, `[abc]`; e.g. 'app::db::*').
    #[arg(long = "fn", value_name = "GLOB")]
    pub(crate) func: Option<String>,
    /// Order of the rows, largest first.
    #[arg(long, value_enum, default_value_t = SortKey::P99)]
    pub(crate) sort: SortKey,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Only one service's calls (the name its processes gave `.service(..)` on the flusher
    /// builder; by default their binary's name).
    #[arg(long, value_name = "SERVICE")]
    pub(crate) service: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Time between refreshes; rates are over this interval.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) interval: Duration,
    /// Print the totals once and exit.
    #[arg(long)]
    pub(crate) once: bool,
    /// Only functions whose name matches this glob.
    #[arg(long = "fn", value_name = "GLOB")]
    pub(crate) func: Option<String>,
}

/// Output formats of commands with a single record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RecordFormat {
    /// Lines for a person.
    Table,
    /// A JSON object, for scripts.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = RecordFormat::Table)]
    pub(crate) format: RecordFormat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeadLettersCommand {
    /// Show dead letters, oldest first.
    List(DeadLettersList),
    /// Put dead letters back on the entry list for stage 2 to try again (after fixing the cause).
    Requeue(DeadLettersLimit),
    /// Remove dead letters for good.
    Purge(DeadLettersLimit),
}

#[derive(Debug, Args)]
pub(crate) struct DeadLettersList {
    /// The most dead letters to show.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub(crate) limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RecordFormat::Table)]
    pub(crate) format: RecordFormat,
}

#[derive(Debug, Args)]
pub(crate) struct DeadLettersLimit {
    /// The most dead letters to move, oldest first.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub(crate) limit: usize,
}

#[derive(Debug, Args)]
pub(crate) struct ForgetArgs {
    /// Functions whose name matches this glob (`*`, `?`, `[abc]`).
    #[arg(value_name = "GLOB")]
    pub(crate) glob: String,
    /// Remove them; without it, only list what would be removed.
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct HtmlArgs {
    /// The window: from this long ago until now (e.g. 1h, 24h, 7d).
    #[arg(long, default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) since: Duration,
    /// Only functions whose name matches this glob.
    #[arg(long = "fn", value_name = "GLOB")]
    pub(crate) func: Option<String>,
    /// The file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where to listen for Prometheus scrapes (e.g. 127.0.0.1:9187, 0.0.0.0:9187; port 0 picks
    /// a free port, printed on start).
    #[arg(long, value_name = "ADDR", required = true)]
    pub(crate) prometheus: String,
    /// Only functions whose name matches this glob.
    #[arg(long = "fn", value_name = "GLOB")]
    pub(crate) func: Option<String>,
    /// The longest one Redis read of a scrape may wait (Prometheus' own scrape timeout is 10s
    /// by default).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AlertsCommand {
    /// Check a rules file: one line per rule (and per notify target) when it is valid; every
    /// mistake as FILE:LINE:COLUMN: message, and exit status 1, when it is not.
    Check(AlertsCheck),
    /// Write the rules as a Prometheus rule file over the fnmetrics_* series (one group,
    /// `fnmetrics`, one alerting rule per rule).
    ///
    /// p50 and p99 come from histogram_quantile over the power-of-two `le` buckets: within a
    /// factor of 2, not fnmetrics' 1.6 %. Rules over the pipeline's health (backlog,
    /// drain_lag, dead_letters) have no Prometheus series yet: they are left out with a
    /// warning on stderr.
    ExportPrometheus(AlertsExport),
    /// Evaluate the rules continuously on the fleet's aggregates in Redis (and the pipeline's
    /// health), keep the alerts' state in PostgreSQL, and notify: one JSON line a notification
    /// on standard output. Several evaluators at once send one notification; a restarted one
    /// neither repeats nor forgets. SIGINT or SIGTERM stops it.
    Run(AlertsRun),
    /// What fires now, and what resolved in the last 24 hours.
    List(AlertsList),
    /// Hold back a rule's notifications for a while.
    Silence(AlertsSilence),
}

#[derive(Debug, Args)]
pub(crate) struct AlertsRun {
    /// The rules file (TOML).
    #[arg(long, value_name = "FILE")]
    pub(crate) rules: PathBuf,
    /// Time between evaluations.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) interval: Duration,
    /// A firing alert is notified again after this long.
    #[arg(long, default_value = "4h", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) repeat: Duration,
    /// How often firing alerts are posted again to `alertmanager` targets, which end an alert
    /// that is not (each post says it ends after four of these).
    #[arg(long, default_value = "1m", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) resend_delay: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct AlertsList {}

#[derive(Debug, Args)]
pub(crate) struct AlertsSilence {
    /// The rule's name.
    #[arg(value_name = "RULE")]
    pub(crate) rule: String,
    /// How long (e.g. 30m, 2h); 0s ends a silence.
    #[arg(long = "for", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) for_: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct AlertsCheck {
    /// The rules file (TOML).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct AlertsExport {
    /// The rules file (TOML).
    #[arg(value_name = "RULES")]
    pub(crate) rules: PathBuf,
    /// The Prometheus rule file to write (`-`: standard output).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: PathBuf,
}
