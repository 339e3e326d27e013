//! A throw-away Prometheus Alertmanager (the Debian package `prometheus-alertmanager`): its own
//! config and storage in a temporary directory, on a free loopback port, clustering off, sending
//! every alert to one webhook.

use super::prometheus::http_get;
use super::{find_binary, free_port, wait_until, TempDir};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long Alertmanager may take to be ready after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `prometheus-alertmanager` whose one receiver, `hook`, is a webhook (resolved
/// alerts sent too), grouping by `alertname` with a 100 ms `group_wait` and a 1 s
/// `group_interval`. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct AlertmanagerServer {
    child: Child,
    port: u16,
    // Declared last: dropped after the child is killed.
    dir: TempDir,
}

impl AlertmanagerServer {
    /// Starts Alertmanager sending to `webhook_url` and waits until it is ready (`/-/ready`).
    /// Panics saying `apt-get install prometheus-alertmanager` when the binary is missing.
    pub fn start(webhook_url: &str) -> AlertmanagerServer {
        let binary = find_binary("prometheus-alertmanager", &[], "prometheus-alertmanager");
        let dir = TempDir::new("alertmanager");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: hook\n  group_by: ['alertname']\n  group_wait: 100ms\n  \
                 group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: hook\n    webhook_configs:\n      \
                 - url: '{webhook_url}'\n        send_resolved: true\n"
            ),
        )
        .expect("cannot write alertmanager.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty: no gossip with peers (and no port of its own for it).
            .arg("--cluster.listen-address=")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("cannot start prometheus-alertmanager");
        let mut server = AlertmanagerServer { child, port, dir };
        let mut exited = None;
        wait_until("alertmanager to be ready", START_TIMEOUT, || {
            if let Ok(Some(st)) = server.child.try_wait() {
                exited = Some(st);
                return true;
            }
            matches!(http_get(server.addr(), "/-/ready"), Ok((200, _)))
        });
        if let Some(st) = exited {
            panic!("alertmanager exited ({st}):\n{}", server.log());
        }
        server
    }

    /// Where its HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for AlertmanagerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
