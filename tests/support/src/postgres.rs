//! The PostgreSQL half of the fixture: a throw-away cluster (`initdb` + `postgres`) on a free
//! loopback port, in a temporary directory.
//!
//! PostgreSQL refuses to run as root; when the tests run as root, `initdb` and `postgres` run as
//! the `postgres` user (set with `CommandExt::uid`/`gid`, so the child we keep and signal is the
//! postmaster itself, not a `runuser` wrapper).

use super::{find_binary, free_port, wait_until, TempDir};
use postgres::{Client, NoTls};
use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start or stop.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A running throw-away PostgreSQL server with a database `fnmetrics`. Dropping it stops the
/// server (also when a test panics) and removes its directory.
#[derive(Debug)]
pub struct PostgresServer {
    bin_dir: PathBuf,
    port: u16,
    /// Extra `-c name=value` settings of the postmaster.
    settings: Vec<String>,
    /// With TLS: the PEM file of the CA that signed the server's certificate.
    ca_file: Option<PathBuf>,
    /// `(uid, gid)` of the `postgres` user when we run as root.
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
    /// Declared last: removed after `Drop::drop` stopped the server.
    dir: TempDir,
}

impl PostgresServer {
    /// Creates a cluster, starts it on a free port and creates the database `fnmetrics`.
    pub fn start() -> PostgresServer {
        PostgresServer::start_inner(false)
    }

    /// As [`PostgresServer::start`], with `ssl=on` and a server certificate for `localhost` and
    /// `127.0.0.1` signed by a throw-away CA ([`PostgresServer::ca_file`]). Plaintext
    /// connections are still accepted (`sslmode=disable`).
    pub fn start_with_tls() -> PostgresServer {
        PostgresServer::start_inner(true)
    }

    /// The PEM file of the CA that signed the server's certificate (TLS servers only).
    pub fn ca_file(&self) -> &Path {
        self.ca_file.as_deref().expect("not a TLS server")
    }

    fn start_inner(tls: bool) -> PostgresServer {
        let initdb = find_binary("initdb", &pg_bin_dirs(), "postgresql");
        // `postgres` must be the same version as `initdb`: take it from the same directory.
        let bin_dir = initdb
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .expect("initdb has no parent directory");
        let dir = TempDir::new("postgres");
        let run_as = is_root().then(postgres_user_ids);
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("cannot chown the temp dir to the postgres user");
        }
        let data = dir.path().join("data");
        let out = command(&bin_dir.join("initdb"), run_as)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(dir.path())
            .output()
            .expect("cannot run initdb");
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut settings = Vec::new();
        let mut ca_file = None;
        if tls {
            let ca = TestCa::new("fnmetrics test CA");
            let (cert, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
            let (cert_path, key_path) =
                (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::write(&cert_path, cert).expect("cannot write the server certificate");
            std::fs::write(&key_path, key).expect("cannot write the server key");
            for path in [&cert_path, &key_path] {
                // PostgreSQL refuses a key that others can read.
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .expect("cannot chmod the TLS files");
                if let Some((uid, gid)) = run_as {
                    std::os::unix::fs::chown(path, Some(uid), Some(gid))
                        .expect("cannot chown the TLS files to the postgres user");
                }
            }
            let path = dir.path().join("ca.pem");
            std::fs::write(&path, ca.pem()).expect("cannot write the CA file");
            ca_file = Some(path);
            settings.push("ssl=on".to_owned());
            settings.push(format!("ssl_cert_file={}", cert_path.display()));
            settings.push(format!("ssl_key_file={}", key_path.display()));
        }
        let mut server = PostgresServer {
            bin_dir,
            port: 0,
            settings,
            ca_file,
            run_as,
            child: None,
            dir,
        };
        // Another process may take the free port before postgres binds it: try a few ports.
        let mut attempt = 0;
        loop {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("could not bind") => attempt += 1,
                Err(log) => panic!("postgres did not start:\n{log}"),
            }
        }
        server
            .admin_client()
            .batch_execute("CREATE DATABASE fnmetrics")
            .expect("cannot create the database fnmetrics");
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/fnmetrics`.
    pub fn url(&self) -> String {
        self.url_for("fnmetrics")
    }

    /// The URL of another database on this server, as the `postgres` role.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server's binaries (`psql` is there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A client connected to the `fnmetrics` database.
    pub fn client(&self) -> Client {
        Client::connect(&self.url(), NoTls).expect("cannot connect to the test PostgreSQL")
    }

    /// How many rows the raw table `metrics` of the `fnmetrics` database holds: the entries
    /// stored, each once (tests of exactly-once count rows, not the weights a read sums).
    /// 0 before a drainer made the table. It may be called inside a tokio runtime.
    pub fn raw_rows(&self) -> u64 {
        self.count("SELECT count(*) FROM metrics", None)
    }

    /// How many rows of the raw table `metrics` are of function `func_name` (compared as
    /// stored: no name is rewritten). 0 before a drainer made the table. It may be called
    /// inside a tokio runtime.
    pub fn raw_rows_of(&self, func_name: &str) -> u64 {
        self.count(
            "SELECT count(*) FROM metrics WHERE func_name = $1",
            Some(func_name),
        )
    }

    /// The `count(*)` that `sql` (with `$1` = `name`, if any) returns on table `metrics`; 0
    /// while there is no such table. On a thread of its own: the sync client panics when it
    /// blocks inside a tokio runtime.
    fn count(&self, sql: &str, name: Option<&str>) -> u64 {
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut client = self.client();
                let exists: bool = client
                    .query_one("SELECT to_regclass('metrics') IS NOT NULL", &[])
                    .and_then(|r| r.try_get(0))
                    .expect("cannot look the table metrics up");
                if !exists {
                    return 0;
                }
                let row = match name {
                    Some(name) => client.query_one(sql, &[&name]),
                    None => client.query_one(sql, &[]),
                };
                let n: i64 = row
                    .and_then(|r| r.try_get(0))
                    .unwrap_or_else(|e| panic!("cannot count the rows ({sql}): {e}"));
                u64::try_from(n).expect("a negative count")
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// A client connected to the `postgres` database.
    pub fn admin_client(&self) -> Client {
        Client::connect(&self.url_for("postgres"), NoTls)
            .expect("cannot connect to the test PostgreSQL")
    }

    /// Stops the server (fast shutdown: clients are disconnected) and waits until it is gone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGINT is PostgreSQL's "fast" shutdown.
        let signalled = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while signalled && Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again, with the same data and port, and waits until it accepts
    /// connections.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn_and_wait() {
            panic!("postgres did not restart:\n{log}");
        }
    }

    /// Spawns the postmaster on `self.port` and waits until it accepts connections; on failure,
    /// returns the server log.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("postgres.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("cannot open the postgres log");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log.try_clone().expect("cannot clone the log file handle");
        let child = command(&self.bin_dir.join("postgres"), self.run_as)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("cannot spawn postgres");
        let child = self.child.insert(child);

        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2));
        let mut exited: Option<ExitStatus> = None;
        wait_until("PostgreSQL to accept connections", STARTUP_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            config.connect(NoTls).is_ok()
        });
        match exited {
            None => Ok(()),
            Some(status) => {
                self.child = None;
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let new = text.get(log_start as usize..).unwrap_or(&text);
                Err(format!("postgres exited with {status}; its log:\n{new}"))
            }
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throw-away certificate authority (rcgen): signs server certificates for TLS tests.
#[allow(missing_debug_implementations)] // rcgen's issuer has no `Debug`.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA, named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("cannot make a CA key");
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, key).expect("cannot make a CA certificate");
        TestCa { issuer }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (host names or IP addresses) signed by this CA, and its
    /// key: `(certificate PEM, key PEM)`.
    pub fn server_cert(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("server cert params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fnmetrics test server");
        let key = rcgen::KeyPair::generate().expect("cannot make a server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("cannot sign the server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// A command for a PostgreSQL binary, run as the `postgres` user when `run_as` is set.
fn command(binary: &Path, run_as: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(binary);
    if let Some((uid, gid)) = run_as {
        // std drops the supplementary groups (setgroups(0)) when it changes the uid as root.
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Where Debian puts the server binaries: `/usr/lib/postgresql/<version>/bin`, newest first,
/// with 15 (the version this project is tested with) first of all.
fn pg_bin_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/lib/postgresql/15/bin")];
    let mut others: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    others.sort_by_key(|o| std::cmp::Reverse(o.0));
    dirs.extend(others.into_iter().map(|(_, d)| d));
    dirs
}

/// Whether this process runs as root (`/proc/self` belongs to the process's effective uid).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of the `postgres` user, from `/etc/passwd`.
fn postgres_user_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0] != "postgres" {
                return None;
            }
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        })
        .expect(
            "running as root needs a `postgres` user to run PostgreSQL as \
             (installing the Debian package `postgresql` creates it)",
        )
}
