//! A throw-away Redis Cluster: `masters` primaries with `replicas` replicas each, every node a
//! [`RedisServer`] of the fixture (AOF on, its own directory, a free loopback port), made into a
//! cluster by `redis-cli --cluster create` (Debian package `redis-tools`), and torn down when
//! dropped.

use super::{find_binary, wait_until};
use crate::redis::RedisServer;
use std::process::Command;
use std::time::Duration;

/// How long the nodes may take to agree on the slots after `--cluster create`.
const CONVERGE: Duration = Duration::from_secs(60);

/// One node as `CLUSTER NODES` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its cluster node id.
    pub id: String,
    /// The id of its primary, for a replica; `None` for a primary.
    pub replica_of: Option<String>,
    /// Slot ranges it serves (primaries), inclusive.
    pub slots: Vec<(u16, u16)>,
}

/// A running cluster. Dropping it stops every node and removes their directories.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` primaries (at least 3, as `redis-cli --cluster create` requires) with
    /// `replicas` replicas each, and waits until every node sees all 16 384 slots served and
    /// every replica is in sync with its primary.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        assert!(
            masters >= 3,
            "redis-cli --cluster create needs 3 primaries or more"
        );
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start_cluster_node(&[]))
            .collect();
        let cli = find_binary("redis-cli", &[], "redis-tools");
        let out = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every running node says `cluster_state:ok` with all slots served and knows
    /// every other node, and every replica's link to its primary is up.
    pub fn wait_until_ok(&self) {
        let total = self.nodes.len();
        wait_until("the cluster to agree on all 16384 slots", CONVERGE, || {
            self.nodes.iter().all(|n| {
                let mut c = n.client();
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut c)
                    .unwrap_or_default();
                let known = Self::read_nodes(&mut c).len();
                let role: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut c)
                    .unwrap_or_default();
                let synced = role.contains("role:master") || role.contains("master_link_status:up");
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && known == total
                    && synced
            })
        });
    }

    /// The URL of the first node (a primary when the cluster was made).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// `redis://127.0.0.1:<port>/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Every node, as a running node sees them.
    pub fn nodes(&self) -> Vec<Node> {
        let mut c = self.nodes[0].client();
        Self::read_nodes(&mut c)
    }

    /// The primaries.
    pub fn masters(&self) -> Vec<Node> {
        self.nodes()
            .into_iter()
            .filter(|n| n.replica_of.is_none())
            .collect()
    }

    /// The fixture's server on `port`.
    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Kills the node on `port` (SIGKILL) and, if it was a primary with a replica, waits until
    /// a survivor shows a replica promoted in its place and the cluster serves every slot again.
    pub fn kill(&mut self, port: u16) {
        let before = self.nodes();
        let was = before.iter().find(|n| n.port == port).cloned();
        self.server(port).stop();
        let Some(was) = was.filter(|n| n.replica_of.is_none()) else {
            return;
        };
        if !before
            .iter()
            .any(|n| n.replica_of.as_deref() == Some(was.id.as_str()))
        {
            return;
        }
        let survivor = self
            .nodes
            .iter()
            .find(|n| n.port() != port)
            .expect("another node");
        wait_until(
            "a replica to take the killed primary's place",
            CONVERGE,
            || {
                let mut c = survivor.client();
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut c)
                    .unwrap_or_default();
                let nodes = Self::read_nodes(&mut c);
                let promoted = nodes.iter().any(|n| {
                    n.replica_of.is_none()
                        && n.port != port
                        && was.slots.iter().all(|s| n.slots.contains(s))
                });
                promoted && info.contains("cluster_state:ok")
            },
        );
        // Every other node agrees before the test goes on.
        wait_until(
            "every node to see the cluster whole again",
            CONVERGE,
            || {
                self.nodes.iter().filter(|n| n.port() != port).all(|n| {
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query(&mut n.client())
                        .unwrap_or_default();
                    info.contains("cluster_state:ok")
                })
            },
        );
    }

    /// Starts moving `slots` slots from the primary `from` to the primary `to` (node ids) with
    /// `redis-cli --cluster reshard`, keys and all; returns the running command, so that a test
    /// can go on writing meanwhile, then wait for it ([`RedisCluster::finish_reshard`]).
    pub fn start_reshard(&self, from: &str, to: &str, slots: u16) -> std::process::Child {
        let cli = find_binary("redis-cli", &[], "redis-tools");
        Command::new(cli)
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{}", self.nodes[0].port()))
            .args(["--cluster-from", from, "--cluster-to", to])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .args(["--cluster-pipeline", "100"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("redis-cli runs")
    }

    /// Waits for a reshard to end (panicking if it failed) and for the nodes to agree again.
    pub fn finish_reshard(&self, mut child: std::process::Child) {
        let status = child.wait().expect("redis-cli reshard");
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        assert!(
            status.success(),
            "redis-cli --cluster reshard failed: {err}"
        );
        self.wait_until_ok();
    }

    fn read_nodes(c: &mut redis::Connection) -> Vec<Node> {
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(c)
            .unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                // <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
                let port = f
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let replica_of = match *f.get(3)? {
                    "-" => None,
                    id => Some(id.to_owned()),
                };
                let slots = f
                    .iter()
                    .skip(8)
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| match s.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => s.parse().ok().map(|x| (x, x)),
                    })
                    .collect();
                Some(Node {
                    port,
                    id: f.first()?.to_string(),
                    replica_of,
                    slots,
                })
            })
            .collect()
    }
}
