//! Throw-away `redis-server`s: each on a free loopback port, with AOF (`appendfsync always`) in
//! its own temporary directory, so a test can stop and restart its server without losing what it
//! accepted. [`RedisServer::start_with_tls`] serves TLS only, on a certificate of a CA made for
//! the test.

use super::{find_binary, free_port, wait_until, TempDir};
#[cfg(feature = "tls")]
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a server may take to answer PING after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running throw-away `redis-server` (AOF on) on a free loopback port. Dropping it stops the
/// server and removes its directory.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    extra_args: Vec<String>,
    binary: PathBuf,
    #[cfg(feature = "tls")]
    tls: Option<TlsFiles>,
    // Declared last: dropped after the child is killed.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server without a password.
    pub fn start() -> RedisServer {
        RedisServer::launch(None, &[])
    }

    /// Starts a server that requires `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> RedisServer {
        RedisServer::launch(Some(password), &[])
    }

    /// Starts a server with extra `redis-server` arguments, which override the fixture's
    /// (`&["--appendfsync", "everysec"]`, say).
    pub fn start_with_args(args: &[&str]) -> RedisServer {
        RedisServer::launch(None, args)
    }

    /// Starts a server that speaks TLS only (`--port 0`: no plaintext port), on a server
    /// certificate for `localhost` and `127.0.0.1` signed by a CA made for this server
    /// ([`ca_file`](Self::ca_file)); clients need no certificate. With `password`, it also
    /// requires that password.
    #[cfg(feature = "tls")]
    pub fn start_with_tls(password: Option<&str>) -> RedisServer {
        let mut server = RedisServer::new(password, &[]);
        server.tls = Some(TlsFiles::write(server.dir.path()));
        server.start_on_free_port()
    }

    /// Starts a node for a Redis Cluster (`cluster-enabled yes`, its `nodes.conf` in its own
    /// directory) on a free port whose cluster bus port (the port + 10 000) is free too, with
    /// `args` after the fixture's (see [`RedisCluster`](crate::redis_cluster::RedisCluster)).
    pub fn start_cluster_node(args: &[&str]) -> RedisServer {
        let mut all = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ];
        all.extend_from_slice(args);
        let mut server = RedisServer::new(None, &all);
        for _ in 0..20 {
            let port = free_port();
            let bus_free =
                port < 55_536 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
            if !bus_free {
                continue;
            }
            server.port = port;
            if server.spawn() {
                return server;
            }
        }
        panic!(
            "no cluster node started after 20 tries; log:\n{}",
            server.log()
        );
    }

    fn launch(password: Option<&str>, args: &[&str]) -> RedisServer {
        RedisServer::new(password, args).start_on_free_port()
    }

    fn new(password: Option<&str>, args: &[&str]) -> RedisServer {
        RedisServer {
            child: None,
            port: 0,
            password: password.map(str::to_string),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            binary: find_binary("redis-server", &[], "redis-server"),
            #[cfg(feature = "tls")]
            tls: None,
            dir: TempDir::new("redis"),
        }
    }

    fn start_on_free_port(mut self) -> RedisServer {
        let server = &mut self;
        // A free port can be taken by another test between our probe and redis' bind: then the
        // server exits at once, and we try another port.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return self;
            }
        }
        panic!(
            "redis-server did not start after 5 tries; log:\n{}",
            server.log()
        );
    }

    /// Spawns the server on `self.port` and waits until it answers PING; false if it exited.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(&self.binary);
        match self.tls_files() {
            None => cmd.arg("--port").arg(self.port.to_string()),
            #[cfg(feature = "tls")]
            Some(tls) => cmd
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--tls-auth-clients", "no"]),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", ""])
            .args(["--daemonize", "no"])
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        cmd.args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("cannot spawn redis-server");
        self.child = Some(child);
        let mut exited = false;
        wait_until("redis-server to answer PING", START_TIMEOUT, || {
            if let Some(c) = self.child.as_mut()
                && matches!(c.try_wait(), Ok(Some(_)))
            {
                exited = true;
                return true;
            }
            self.ping()
        });
        if exited {
            self.child = None;
        }
        !exited
    }

    fn ping(&self) -> bool {
        let Some(client) = self.redis_client() else {
            return false;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
        matches!(redis::cmd("PING").query::<String>(&mut c), Ok(s) if s == "PONG")
    }

    /// `redis://[:password@]127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// The URL without the password (for auth tests).
    pub fn url_without_password(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: no shutdown save; with `appendfsync always` every reply it
    /// sent is on disk) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server if it runs, then starts it again on the same port and directory (so the
    /// AOF is replayed) and waits until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        // The port was ours a moment ago; retry briefly in case the kernel is slow to free it.
        for _ in 0..5 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on port {}; log:\n{}",
            self.port,
            self.log()
        );
    }

    /// A plain connection (over TLS for a TLS server), for looking at what the code under test
    /// stored.
    pub fn client(&self) -> redis::Connection {
        self.redis_client()
            .expect("cannot make a client for the test redis-server")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("cannot connect to the test redis-server")
    }

    /// A client for this server: over TLS, trusting its CA, if it serves TLS.
    fn redis_client(&self) -> Option<redis::Client> {
        match self.tls_files() {
            None => redis::Client::open(self.url()).ok(),
            #[cfg(feature = "tls")]
            Some(tls) => {
                // As the sink does: rustls needs a crypto provider chosen.
                // ring on purpose (aws-lc-rs needs cmake and nasm to build); rustls 0.23.48 deprecates
                // its provider for lacking post-quantum key exchange, and offers no other ring one.
                #[allow(deprecated)]
                let _ = rustls::crypto::ring::default_provider().install_default();
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(&tls.ca).ok()?),
                };
                redis::Client::build_with_tls(self.tls_url(), certs).ok()
            }
        }
    }

    #[cfg(feature = "tls")]
    fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    #[cfg(not(feature = "tls"))]
    fn tls_files(&self) -> Option<std::convert::Infallible> {
        None
    }

    /// `rediss://[:password@]127.0.0.1:<port>/`, for a server started with
    /// [`start_with_tls`](Self::start_with_tls).
    #[cfg(feature = "tls")]
    pub fn tls_url(&self) -> String {
        match &self.password {
            Some(p) => format!("rediss://:{p}@127.0.0.1:{}/", self.port),
            None => format!("rediss://127.0.0.1:{}/", self.port),
        }
    }

    /// The PEM file of the CA that signed this TLS server's certificate.
    #[cfg(feature = "tls")]
    pub fn ca_file(&self) -> &Path {
        &self
            .tls
            .as_ref()
            .expect("not a TLS server: start it with RedisServer::start_with_tls")
            .ca
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// PEM files of a CA made for one test and, signed by it, a server certificate and key for
/// `localhost` and `127.0.0.1`.
#[cfg(feature = "tls")]
#[derive(Debug)]
pub struct TlsFiles {
    /// The CA's certificate.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's key.
    pub key: PathBuf,
}

#[cfg(feature = "tls")]
impl TlsFiles {
    /// Makes a fresh CA and server certificate and writes `ca.pem`, `server.pem` and
    /// `server.key` into `dir`. Another call makes another CA, which the first server's
    /// certificate does not chain to.
    pub fn write(dir: &Path) -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: two CAs of one name make a signature error instead of an unknown
        // issuer.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("fnmetrics test CA {} {n}", std::process::id());
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

        let mut server =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = server.signed_by(&key, &*ca).unwrap();

        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        std::fs::write(&files.ca, ca.pem()).unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}
