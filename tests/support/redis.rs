//! Throw-away `redis-server`s: each on a free loopback port, with AOF (`appendfsync always`) in
//! its own temporary directory, so a test can stop and restart its server without losing what it
//! accepted.

use super::{find_binary, free_port, wait_until, TempDir};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a server may take to answer PING after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    extra_args: Vec<String>,
    binary: PathBuf,
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

    fn launch(password: Option<&str>, args: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: 0,
            password: password.map(str::to_string),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            binary: find_binary("redis-server", &[], "redis-server"),
            dir: TempDir::new("redis"),
        };
        // A free port can be taken by another test between our probe and redis' bind: then the
        // server exits at once, and we try another port.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
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
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
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
            if let Some(c) = self.child.as_mut() {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    exited = true;
                    return true;
                }
            }
            self.ping()
        });
        if exited {
            self.child = None;
        }
        !exited
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
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

    /// A plain connection, for looking at what the code under test stored.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("cannot connect to the test redis-server")
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
