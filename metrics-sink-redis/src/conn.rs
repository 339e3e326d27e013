//! The transport under the sink, the queue and the reader: Redis as shards. A single Redis is
//! a cluster of one shard, served by one lazily re-made connection; a Redis Cluster's shard `s`
//! is served by the primary of its hash slot, through the router (`cluster.rs`). Callers say
//! "run this on shard `s`" ([`Conn::run_on`], [`Conn::eval_on`], [`Conn::read_aggregates`]) and
//! never which of the two they talk to.

use crate::aggregates::{decode, Fleet};
use crate::cluster::Router;
use crate::error::{is_server_error, map_error};
use crate::hgetall::{HgetallConn, ReadError, PIPELINE};
use crate::layout::{key_slot, Layout, DEFAULT_SHARDS, LAYOUT_VERSION};
use crate::options::{ClusterMode, RedisOptions};
use fnmetrics_core::{Error, ErrorKind};
use redis::{Cmd, Connection, FromRedisValue, Script};

/// A client, its current connection (if any) and the scripts it uses.
pub(crate) struct Conn {
    client: redis::Client,
    conn: Option<Connection>,
    pub(crate) opts: RedisOptions,
    scripts: &'static [&'static Script],
    /// How keys are named: the single-node names, or a cluster's shards.
    layout: Layout,
    /// The slot router, on a Redis Cluster (then `conn` stays `None`).
    router: Option<Router>,
    /// A plain TCP connection of its own for [`Conn::read_aggregates`] on a single Redis at a
    /// `redis://` address (made on first use, dropped on an I/O error or a timeout).
    hgetall: Option<HgetallConn>,
}

impl std::fmt::Debug for Conn {
    // The URL may hold a password: show only the address and the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `host:port` by Display: the Debug of a TLS address dumps its whole root store.
        let addr = &self.client.get_connection_info().addr;
        f.debug_struct("Conn")
            .field("addr", &format_args!("{addr}"))
            .field("tls", &matches!(addr, redis::ConnectionAddr::TcpTls { .. }))
            .field("connected", &self.conn.is_some())
            .field("opts", &self.opts)
            .finish()
    }
}

impl Conn {
    /// Parses `url`, connects, PINGs and loads `scripts`.
    pub(crate) fn connect(
        url: &str,
        opts: RedisOptions,
        scripts: &'static [&'static Script],
    ) -> Result<Conn, Error> {
        let mut conn = Conn::new(url, opts, scripts)?;
        conn.ensure()?;
        Ok(conn)
    }

    /// Parses `url` and checks the options; connects on first use.
    pub(crate) fn new(
        url: &str,
        opts: RedisOptions,
        scripts: &'static [&'static Script],
    ) -> Result<Conn, Error> {
        opts.validate()?;
        let client = client(url, &opts)?;
        Ok(Conn {
            client,
            conn: None,
            opts,
            scripts,
            layout: Layout::Single,
            router: None,
            hgetall: None,
        })
    }

    /// Another connection to the same server with the same options, not connected yet.
    pub(crate) fn another(&self) -> Conn {
        Conn {
            client: self.client.clone(),
            conn: None,
            opts: self.opts.clone(),
            scripts: self.scripts,
            layout: Layout::Single,
            router: None,
            hgetall: None,
        }
    }

    /// Connects now if there is no connection (connected, PINGed, scripts loaded; on a Redis
    /// Cluster: its slots read and its layout agreed on).
    pub(crate) fn ensure(&mut self) -> Result<(), Error> {
        if self.conn.is_some() || self.router.is_some() {
            return Ok(());
        }
        match self.establish()? {
            Established::Single(c) => self.conn = Some(c),
            Established::Cluster => self.connect_cluster()?,
        }
        Ok(())
    }

    /// The open connection to a single Redis, or a new one.
    fn connection(&mut self) -> Result<&mut Connection, Error> {
        self.ensure()?;
        self.conn.as_mut().ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "no connection to a single Redis (this is a Redis Cluster)",
            )
        })
    }

    /// Connects, PINGs and loads the scripts. A TLS handshake (`rediss://`) happens on the
    /// first write, so a certificate that does not verify fails here, not in
    /// `get_connection_with_timeout`.
    ///
    /// A node of a Redis Cluster is used as one ([`Established::Cluster`]), or refused with
    /// [`ErrorKind::InvalidConfig`] under [`ClusterMode::Standalone`] (which fails a flusher's
    /// `start()`), or when it runs a Redis older than 7.0.
    fn establish(&self) -> Result<Established, Error> {
        let fail = |e| map_error(e, "cannot connect to Redis");
        let mut c = self
            .client
            .get_connection_with_timeout(self.opts.connect_timeout)
            .map_err(|e| {
                // redis-rs selects the URL's database while connecting.
                if e.to_string()
                    .contains("SELECT is not allowed in cluster mode")
                {
                    self.cluster_refused(
                        "and the URL names a database other than 0, which a cluster does not have",
                    )
                } else {
                    fail(e)
                }
            })?;
        c.set_read_timeout(Some(self.opts.io_timeout))
            .map_err(fail)?;
        c.set_write_timeout(Some(self.opts.io_timeout))
            .map_err(fail)?;
        redis::cmd("PING").query::<()>(&mut c).map_err(fail)?;
        if is_cluster_node(&mut c).map_err(fail)? {
            if self.opts.cluster == ClusterMode::Standalone {
                return Err(self.cluster_refused(
                    "and ClusterMode::Standalone asks for a standalone Redis: give the URL of \
                     one, or leave the cluster mode at Auto",
                ));
            }
            let version = server_major_version(&mut c).map_err(fail)?;
            if version.is_some_and(|v| v < 7) {
                return Err(self.cluster_refused(
                    "and runs Redis older than 7.0, which fnmetrics needs in cluster mode (it \
                     replicates scripts by their effects, and counts them for WAIT): upgrade it",
                ));
            }
            return Ok(Established::Cluster);
        }
        for s in self.scripts {
            s.load(&mut c).map_err(fail)?;
        }
        Ok(Established::Single(c))
    }

    /// An [`ErrorKind::InvalidConfig`] that names the cluster and says `why`.
    fn cluster_refused(&self, why: &str) -> Error {
        Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "the Redis server at {} is a node of a Redis Cluster (cluster_enabled:1) {why}",
                self.client.get_connection_info().addr
            ),
        )
    }

    /// Reads the cluster's slots and agrees on its layout (the stored shard count).
    fn connect_cluster(&mut self) -> Result<(), Error> {
        if self.opts.key_prefix.contains(['{', '}']) {
            return Err(self.cluster_refused(
                "and the key prefix holds a brace: its hash tag would put every shard in one \
                 slot; use a prefix without { or }",
            ));
        }
        if self.client.get_connection_info().redis.db != 0 {
            return Err(self.cluster_refused(
                "and the URL names a database other than 0, which a cluster does not have",
            ));
        }
        let mut router = Router::connect(
            &self.client,
            self.opts.connect_timeout,
            self.opts.io_timeout,
        )?;
        let (layout, _) = open_layout(&mut router, &self.opts, self.opts.shards)?;
        self.layout = layout;
        self.router = Some(router);
        Ok(())
    }

    /// The router, on a Redis Cluster (for tests that look at the topology).
    #[cfg(test)]
    pub(crate) fn router(&mut self) -> Option<&mut Router> {
        self.router.as_mut()
    }

    /// How keys are named (the single-node names until a cluster is found).
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The shards keys are spread over: 1 on a single Redis.
    pub(crate) fn shards(&self) -> u16 {
        self.layout.shards()
    }

    /// How many replicas the primary of `shard` has, on a Redis Cluster (as `CLUSTER SLOTS`
    /// listed them); `None` on a single Redis, whose replicas are not looked for.
    pub(crate) fn replicas(&self, shard: u16) -> Option<usize> {
        let router = self.router.as_ref()?;
        let slot = key_slot(self.layout.entries_list(&self.opts, shard).as_bytes());
        Some(router.replicas_of_slot(slot))
    }

    /// Runs `f` where the keys of `shard` live: the connection on a single Redis, the primary
    /// serving the shard's slot on a cluster (see [`Router::on_slot`]). On a single Redis, an
    /// error the server did not send (I/O, timeout, a broken reply) drops the connection, so
    /// the next call starts afresh instead of reading a late reply to an old command (the
    /// router does the same with its connections).
    pub(crate) fn run_on<T>(
        &mut self,
        shard: u16,
        what: &str,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        // No connection: nothing was sent.
        self.ensure().map_err(Error::unsent)?;
        if self.router.is_some() {
            let slot = key_slot(self.layout.entries_list(&self.opts, shard).as_bytes());
            if let Some(r) = self.router.as_mut() {
                return r.on_slot(slot, what, f);
            }
        }
        let c = self.connection().map_err(Error::unsent)?;
        f(c).map_err(|e| {
            if !is_server_error(&e) {
                self.conn = None;
            }
            map_error(e, what)
        })
    }

    /// EVALSHA `cmd` (built by [`evalsha`]) where the keys of `shard` live; on NOSCRIPT (a
    /// restarted or flushed server, a node that has not run it yet) loads `script` there and
    /// tries once more. NOSCRIPT means nothing ran, so the retry is safe.
    pub(crate) fn eval_on<T: FromRedisValue>(
        &mut self,
        shard: u16,
        what: &str,
        script: &Script,
        cmd: &Cmd,
    ) -> Result<T, Error> {
        self.run_on(shard, what, |c| with_script(c, script, |c| cmd.query(c)))
    }

    /// Runs `f` once on each server: every primary of a cluster, the one Redis otherwise.
    pub(crate) fn on_each_primary<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<Vec<T>, Error> {
        self.ensure().map_err(Error::unsent)?;
        match self.router.as_mut() {
            Some(r) => r.on_each_primary(what, f),
            None => self.run_on(0, what, &mut f).map(|v| vec![v]),
        }
    }

    /// The shares `shard` holds of the aggregates of `names`, into `fleet` (the reply to
    /// `names[i]` at `i`): `HGETALL`s pipelined [`PIPELINE`] a round trip. With `fast`, on a
    /// single Redis at a `redis://` address, they go over a plain TCP connection of their own
    /// (`hgetall.rs`: the same snapshots and errors as through redis-rs, at a fraction of the
    /// CPU); otherwise through redis-rs.
    ///
    /// A share that does not decode goes to [`Fleet::undecodable`]; an error reply (`WRONGTYPE`)
    /// fails the read, after its round trip was read whole.
    pub(crate) fn read_aggregates(
        &mut self,
        shard: u16,
        names: &[String],
        fleet: &mut Fleet<'_>,
        fast: bool,
    ) -> Result<(), Error> {
        const WHAT: &str = "cannot read aggregates from Redis";
        self.ensure().map_err(Error::unsent)?;
        let keys = self.layout.aggregates(&self.opts, shard);
        let plain_tcp = matches!(
            self.client.get_connection_info().addr,
            redis::ConnectionAddr::Tcp(..)
        );
        if fast && plain_tcp && self.router.is_none() {
            let conn = match &mut self.hgetall {
                Some(c) => c,
                None => {
                    let c = HgetallConn::connect(self.client.get_connection_info(), &self.opts)
                        .map_err(Error::unsent)?;
                    self.hgetall.insert(c)
                }
            };
            return match conn.read(&keys, names, fleet) {
                Ok(()) => Ok(()),
                Err(ReadError::Answered(e)) => Err(e),
                Err(ReadError::Broken(e)) => {
                    self.hgetall = None;
                    Err(e)
                }
            };
        }
        // Big pipelines: Redis answers while the replies already read are parsed here.
        for (c, chunk) in names.chunks(PIPELINE).enumerate() {
            let hashes: Vec<String> = chunk.iter().map(|n| keys.key(n)).collect();
            let mut pipe = redis::pipe();
            for key in &hashes {
                pipe.cmd("HGETALL").arg(key);
            }
            let replies: Vec<redis::Value> = self.run_on(shard, WHAT, |c| pipe.query(c))?;
            for (i, ((name, key), reply)) in chunk.iter().zip(&hashes).zip(&replies).enumerate() {
                let at = c * PIPELINE + i;
                match decode(name, key, reply) {
                    Ok(share) => fleet.share(at, share),
                    Err(e) => fleet.undecodable(at, key, e),
                }
            }
        }
        Ok(())
    }
}

/// Runs `f`; on NOSCRIPT (the server does not know `script`: nothing ran) loads `script` and
/// runs `f` once more.
pub(crate) fn with_script<T>(
    c: &mut Connection,
    script: &Script,
    mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
) -> redis::RedisResult<T> {
    match f(c) {
        Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
            script.load(c)?;
            f(c)
        }
        r => r,
    }
}

/// The cluster's layout: the shard count stored in it, or `wanted` (else [`DEFAULT_SHARDS`])
/// stored now if none is (the first process to come decides, atomically).
///
/// # Errors
/// [`ErrorKind::Superseded`] for a layout of a newer fnmetrics; [`ErrorKind::InvalidConfig`]
/// when `wanted` differs from the stored count; the router's errors.
pub(crate) fn open_layout(
    router: &mut Router,
    opts: &RedisOptions,
    wanted: Option<u16>,
) -> Result<(Layout, u16), Error> {
    let key = Layout::record(opts);
    let n = wanted.unwrap_or(DEFAULT_SHARDS).max(1);
    let (version, shards): (i64, i64) = router.on_slot(
        key_slot(key.as_bytes()),
        "cannot read the cluster layout",
        |c| {
            let (_, _, version, shards): ((), (), i64, i64) = redis::pipe()
                .hset_nx(&key, "version", LAYOUT_VERSION)
                .hset_nx(&key, "shards", n)
                .hget(&key, "version")
                .hget(&key, "shards")
                .query(c)?;
            Ok((version, shards))
        },
    )?;
    if version > LAYOUT_VERSION {
        return Err(Error::new(
            ErrorKind::Superseded,
            format!(
                "the Redis Cluster holds fnmetrics layout version {version}, newer than this \
                 build's {LAYOUT_VERSION}: upgrade fnmetrics"
            ),
        ));
    }
    let stored = u16::try_from(shards)
        .ok()
        .filter(|&s| s >= 1)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Schema,
                format!("the cluster layout `{key}` says {shards} shards"),
            )
        })?;
    if wanted.is_some_and(|w| w != stored) {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "the Redis Cluster is laid out in {stored} shards, not the {n} asked for: every \
                 process must use the same count (leave it unset to use the stored one)"
            ),
        ));
    }
    Ok((Layout::cluster(stored), stored))
}

/// What connecting found: a single Redis (its connection), or a node of a cluster.
enum Established {
    Single(Connection),
    Cluster,
}

/// The major version in `INFO server` (`redis_version:7.0.15`), if it says one.
fn server_major_version(c: &mut Connection) -> redis::RedisResult<Option<u32>> {
    let info: String = match redis::cmd("INFO").arg("server").query(c) {
        Ok(info) => info,
        Err(e) if is_server_error(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(major_version(&info))
}

/// The major version an `INFO server` reply gives (`redis_version:7.0.15` → 7).
fn major_version(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
}

/// Whether the server says `cluster_enabled:1` in `INFO cluster`. A server that refuses `INFO`
/// (renamed away, or denied by an ACL) is taken for a standalone one, as it was before.
fn is_cluster_node(c: &mut Connection) -> redis::RedisResult<bool> {
    match redis::cmd("INFO").arg("cluster").query::<String>(c) {
        Ok(info) => Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1")),
        Err(e) if is_server_error(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The client for `url`: a `rediss://` URL with `#insecure` is refused, and one with
/// [`RedisOptions::ca_file`] trusts that file's CAs instead of the system's roots.
fn client(url: &str, opts: &RedisOptions) -> Result<redis::Client, Error> {
    use redis::{ConnectionAddr, IntoConnectionInfo};
    // redis-rs errors about a URL never quote it, so the password stays out of the message.
    let info = url
        .into_connection_info()
        .map_err(|e| Error::with_source(ErrorKind::InvalidUrl, "invalid Redis URL", e))?;
    let ConnectionAddr::TcpTls { host, insecure, .. } = &info.addr else {
        #[cfg(feature = "tls")]
        if opts.ca_file.is_some() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "ca_file is set but the Redis URL is not rediss:// (the connection would not \
                 use TLS)",
            ));
        }
        return redis::Client::open(info)
            .map_err(|e| Error::with_source(ErrorKind::InvalidUrl, "invalid Redis URL", e));
    };
    if *insecure {
        return Err(Error::new(
            ErrorKind::InvalidUrl,
            "a rediss:// URL with #insecure would not check the server's certificate, which \
             fnmetrics refuses; trust a private CA with RedisOptions::with_ca_file instead",
        ));
    }
    #[cfg(feature = "tls")]
    {
        tls::install_crypto_provider();
        tls::check_host(host)?;
        if let Some(path) = &opts.ca_file {
            let pem = tls::read_ca_file(path)?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            // The file was checked above, so this fails only on what redis-rs adds later.
            return redis::Client::build_with_tls(info, certs).map_err(|e| {
                Error::with_source(
                    ErrorKind::InvalidConfig,
                    format!("cannot use the CA file {}", path.display()),
                    e,
                )
            });
        }
    }
    #[cfg(not(feature = "tls"))]
    let _ = (host, opts);
    redis::Client::open(info)
        .map_err(|e| Error::with_source(ErrorKind::InvalidUrl, "invalid Redis URL", e))
}

#[cfg(feature = "tls")]
mod tls {
    use fnmetrics_core::{Error, ErrorKind};
    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::path::Path;
    use std::sync::OnceLock;

    /// Makes ring the process's rustls provider unless one is installed already: rustls panics
    /// when it cannot pick one (none installed, and both ring and aws-lc-rs compiled in by
    /// other crates).
    pub(super) fn install_crypto_provider() {
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            // Err: another provider was installed first, which is as good.
            // ring on purpose (aws-lc-rs needs cmake and nasm to build); rustls 0.23.48 deprecates
            // its provider for lacking post-quantum key exchange, and offers no other ring one.
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
    }

    /// The host of a `rediss://` URL must be a DNS name or an IP address, to be checked
    /// against the certificate.
    pub(super) fn check_host(host: &str) -> Result<(), Error> {
        ServerName::try_from(host).map(drop).map_err(|e| {
            Error::with_source(
                ErrorKind::InvalidUrl,
                "the host of a rediss:// URL must be a DNS name or an IP address",
                e,
            )
        })
    }

    /// The PEM bytes of `path`, checked to hold at least one CA certificate that rustls accepts
    /// as a trust anchor.
    pub(super) fn read_ca_file(path: &Path) -> Result<Vec<u8>, Error> {
        let bad = |why: &str| format!("the Redis CA file {} {why}", path.display());
        let pem = std::fs::read(path)
            .map_err(|e| Error::with_source(ErrorKind::InvalidConfig, bad("cannot be read"), e))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                Error::with_source(
                    ErrorKind::InvalidConfig,
                    bad("is not valid PEM"),
                    PemError::from(&e),
                )
            })?;
            roots.add(cert).map_err(|e| {
                Error::with_source(
                    ErrorKind::InvalidConfig,
                    bad("holds a certificate that is not a usable CA certificate"),
                    e,
                )
            })?;
        }
        if roots.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                bad("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
            ));
        }
        Ok(pem)
    }

    /// What was wrong with the PEM, without the bytes that some [`pem::Error`]s quote.
    #[derive(Debug)]
    pub(super) struct PemError(&'static str);

    impl From<&pem::Error> for PemError {
        fn from(e: &pem::Error) -> PemError {
            PemError(match e {
                pem::Error::MissingSectionEnd { .. } => "a section has no END line",
                pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
                pem::Error::Base64Decode(_) => "a section is not valid base64",
                pem::Error::SectionTooLarge => "a section is too large",
                _ => "the file cannot be read as PEM",
            })
        }
    }

    impl std::fmt::Display for PemError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for PemError {}
}

/// `EVALSHA <sha> <numkeys>`; the caller adds the keys and arguments.
pub(crate) fn evalsha(script: &Script, numkeys: usize) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(numkeys);
    cmd
}

#[cfg(test)]
mod tests {
    use super::major_version;

    #[test]
    fn the_major_version_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:6.2.14\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(major_version(info), Some(6));
        assert_eq!(major_version("redis_version:7.0.15\n"), Some(7));
        assert_eq!(major_version("# Server\nos:Linux\n"), None);
    }
}
