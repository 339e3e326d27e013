//! What the writer and the reader share about connections: [`Endpoint`] (the parsed URL with
//! the timeouts applied, the options, the TLS setup) opens sessions; [`is_broken`] tells a
//! connection to drop from one to keep; [`close_off_runtime`] closes one where the sync client
//! can block.

use crate::error::{classify, connect_error, pg_error, Failure};
use crate::options::PostgresOptions;
use crate::runtime::{in_runtime, outside_runtime};
use crate::schema::session_timeouts;
use crate::tls::Tls;
use fnmetrics_core::{Error, ErrorKind};
use postgres::config::{Host, SslMode};
use postgres::Client;
use std::sync::Mutex;
use std::time::Duration;

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// The parsed URL, with the options' TCP settings where it set none. It may hold a
    /// password: never printed.
    pub(crate) config: postgres::Config,
    pub(crate) options: PostgresOptions,
    pub(crate) tls: Tls,
}

impl Endpoint {
    /// Checks the options and parses `url`, without connecting.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] for bad options or CA file, [`ErrorKind::InvalidUrl`] for a
    /// URL that does not parse.
    pub(crate) fn parse(url: &str, options: PostgresOptions) -> Result<Endpoint, Error> {
        options.validate()?;
        let mut config: postgres::Config = url.parse().map_err(|e| {
            Error::with_source(ErrorKind::InvalidUrl, "cannot parse the PostgreSQL URL", e)
        })?;
        apply_tcp_options(&mut config, &options);
        let tls = Tls::new(&options, config.get_ssl_mode() != SslMode::Disable)?;
        Ok(Endpoint {
            config,
            options,
            tls,
        })
    }

    /// Connects, logs how (TLS or not), and sets the session's timeouts; keeps the connection's
    /// cancel token in `cancel`. Returns the client and whether it uses TLS.
    pub(crate) fn open(
        &self,
        cancel: Option<&Mutex<Option<postgres::CancelToken>>>,
    ) -> Result<(Client, bool), Error> {
        let mut client = self
            .config
            .connect(self.tls.clone())
            .map_err(connect_error)?;
        if let Some(cancel) = cancel {
            *cancel.lock().unwrap_or_else(|p| p.into_inner()) = Some(client.cancel_token());
        }
        let tls = self.tls.used();
        log_security(&self.config, tls);
        client
            .batch_execute(&session_timeouts("SET", &self.options))
            .map_err(|e| pg_error("cannot set the PostgreSQL session's timeouts", e))?;
        Ok((client, tls))
    }
}

/// Whether a connection must be dropped after a call that returned `result`: it closed, or the
/// error says to connect again.
pub(crate) fn is_broken<T>(client: &Client, result: &Result<T, postgres::Error>) -> bool {
    client.is_closed() || matches!(result, Err(e) if classify(e) == Failure::Reconnect)
}

/// Drops `conn`: closing the sync client blocks on its own runtime, which panics inside a tokio
/// runtime, so there it is closed on a thread of its own.
pub(crate) fn close_off_runtime<C: Send>(conn: C) {
    if in_runtime() {
        let _ = outside_runtime(move || {
            drop(conn);
            Ok(())
        });
    }
}

/// Logs whether a new connection is TLS or plaintext, and why: never a silent plaintext.
fn log_security(config: &postgres::Config, tls: bool) {
    // Host names only: the URL's password is never logged.
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let hosts = hosts.join(",");
    let unix = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, Host::Unix(_)));
    match (tls, config.get_ssl_mode()) {
        (true, _) => log::info!(
            "fnmetrics: connected to PostgreSQL at {hosts} over TLS (certificate verified)"
        ),
        (false, SslMode::Disable) => {
            log::info!(
                "fnmetrics: connected to PostgreSQL at {hosts} in plaintext (sslmode=disable)"
            )
        }
        (false, _) if unix => {
            log::info!("fnmetrics: connected to PostgreSQL at {hosts} over a Unix socket, no TLS")
        }
        (false, _) => log::warn!(
            "fnmetrics: connected to PostgreSQL at {hosts} in PLAINTEXT: the server does not offer \
             TLS (sslmode=prefer); set sslmode=require to refuse such a server"
        ),
    }
}

/// tokio-postgres's `keepalives_idle` when nothing sets it (2 hours).
const DRIVER_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// The connect timeout, keepalives and TCP user timeout from `options`, where the URL set none.
fn apply_tcp_options(config: &mut postgres::Config, options: &PostgresOptions) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout());
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(options.tcp_user_timeout());
    }
    // `keepalives=0` in the URL turns them off; the driver's getters cannot tell a URL's
    // `keepalives_idle=7200` from its default, so that one value is taken as unset.
    if config.get_keepalives_idle() == DRIVER_KEEPALIVES_IDLE {
        config.keepalives_idle(options.keepalives_idle());
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(options.keepalives_interval());
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(options.keepalives_retries());
    }
}
