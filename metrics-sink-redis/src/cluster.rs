//! A small slot router for Redis Cluster (`docs/cluster.md` §11): which primary serves each
//! slot, one plain connection per primary, and bounded rules for the cluster's answers.
//!
//! redis-rs' own sync cluster connection retries commands after a timeout on its own (a claim
//! or an acknowledgement could then run twice unnoticed), loads scripts on every node and
//! routes `WAIT` to all primaries; fnmetrics needs to know, for every call, whether it may have
//! run. So this router follows `MOVED`, `ASK` and `TRYAGAIN` (answers that mean the command did
//! not run) and returns everything else to the caller, saying whether the command was sent.

use crate::error::{is_server_error, map_error};
use crate::layout::SLOTS;
use fnmetrics_core::{Error, ErrorKind};
use redis::{Connection, ConnectionAddr, RedisError, RedisResult};
use std::time::{Duration, Instant};

/// Redirects (`MOVED`, `ASK`) one call follows at most.
const MAX_REDIRECTS: usize = 5;

/// A primary: its address, how many replicas `CLUSTER SLOTS` lists for it, and a connection
/// once one is made.
struct Primary {
    host: String,
    port: u16,
    replicas: usize,
    conn: Option<Connection>,
}

/// The slot map and the connections to the primaries.
pub(crate) struct Router {
    /// The URL's connection settings (credentials, TLS); each node's client swaps the address.
    template: redis::ConnectionInfo,
    connect_timeout: Duration,
    io_timeout: Duration,
    /// For each slot, its primary's index in `primaries` (`u16::MAX`: not served).
    slots: Box<[u16]>,
    primaries: Vec<Primary>,
    /// Whether the map may be out of date (a redirect was followed, a node failed): it is read
    /// again at the start of the next call.
    stale: bool,
}

impl std::fmt::Debug for Router {
    // Addresses only: the template holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field(
                "primaries",
                &self
                    .primaries
                    .iter()
                    .map(|p| format!("{}:{}", p.host, p.port))
                    .collect::<Vec<_>>(),
            )
            .field("stale", &self.stale)
            .finish_non_exhaustive()
    }
}

/// What `CLUSTER SLOTS` says: `(first slot, last slot, primary host, port, replicas)`.
type SlotRange = (u16, u16, String, u16, usize);

impl Router {
    /// A router that reads the slot map from the node of `client` (a node of the cluster).
    ///
    /// # Errors
    /// The node cannot be reached, or its map leaves slots unserved ([`ErrorKind::Unavailable`]:
    /// a cluster that is still forming, or lost a primary).
    pub(crate) fn connect(
        client: &redis::Client,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Router, Error> {
        let mut router = Router {
            template: client.get_connection_info().clone(),
            connect_timeout,
            io_timeout,
            slots: vec![u16::MAX; usize::from(SLOTS)].into_boxed_slice(),
            primaries: Vec::new(),
            stale: true,
        };
        let (host, port) = match &router.template.addr {
            ConnectionAddr::Tcp(h, p)
            | ConnectionAddr::TcpTls {
                host: h, port: p, ..
            } => (h.clone(), *p),
            ConnectionAddr::Unix(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    "a Redis Cluster is reached over TCP, not a unix socket",
                ))
            }
        };
        let mut seed = router
            .open(&host, port)
            .map_err(|e| map_error(e, "cannot connect to Redis").unsent())?;
        let ranges = read_slots(&mut seed, &host)
            .map_err(|e| map_error(e, "cannot read the cluster's slots"))?;
        router.install(ranges);
        router.check_covered()?;
        Ok(router)
    }

    /// The primaries' addresses (`host:port`) and replica counts, in slot order.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn primaries(&self) -> Vec<(String, usize)> {
        self.primaries
            .iter()
            .map(|p| (format!("{}:{}", p.host, p.port), p.replicas))
            .collect()
    }

    /// How many replicas the primary serving `slot` has, as `CLUSTER SLOTS` listed them.
    pub(crate) fn replicas_of_slot(&self, slot: u16) -> usize {
        self.slots
            .get(usize::from(slot))
            .and_then(|&i| self.primaries.get(usize::from(i)))
            .map_or(0, |p| p.replicas)
    }

    /// The address of the primary that serves `slot`, as the map says now.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn primary_of(&self, slot: u16) -> Option<String> {
        let i = *self.slots.get(usize::from(slot))?;
        self.primaries
            .get(usize::from(i))
            .map(|p| format!("{}:{}", p.host, p.port))
    }

    /// Runs `f` on the primary serving `slot`, following the cluster's redirects: `MOVED` (the
    /// slot has a new owner: the map is updated), `ASK` (the slot is migrating: once on the
    /// target, after `ASKING`) and `TRYAGAIN` (keys in mid-migration: again after a short
    /// wait), within `io_timeout` in all. None of these ran the command, so following them is
    /// safe. Other errors are returned as they are, [`Error::unsent`] when nothing was sent
    /// (no connection could be made; the cluster said it is down or the node is a replica).
    pub(crate) fn on_slot<T>(
        &mut self,
        slot: u16,
        what: &str,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, Error> {
        let deadline = Instant::now() + self.io_timeout;
        if self.stale {
            // Best effort: a node that answers gives the new map; if none does, the old map
            // still routes, and the call says what failed.
            let _ = self.refresh();
        }
        let mut target = self.owner(slot)?;
        let mut asking = false;
        let mut wait = Duration::from_millis(10);
        for _ in 0..=MAX_REDIRECTS + 20 {
            let conn = match self.connection(target) {
                Ok(c) => c,
                Err(e) => {
                    // Not sent: the owner may have changed (a failover); look again once.
                    self.stale = true;
                    let before = target;
                    if self.refresh().is_ok() {
                        target = self.owner(slot)?;
                        if target != before {
                            continue;
                        }
                    }
                    return Err(map_error(e, what).unsent());
                }
            };
            let result = if asking {
                redis::cmd("ASKING")
                    .query::<()>(conn)
                    .and_then(|()| f(conn))
            } else {
                f(conn)
            };
            asking = false;
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match e.kind() {
                redis::ErrorKind::Moved => {
                    let Some((addr, moved_slot)) = redirect(&e) else {
                        return Err(map_error(e, what).unsent());
                    };
                    self.stale = true;
                    let i = self.primary_at(&addr.0, addr.1);
                    if let Some(s) = self.slots.get_mut(usize::from(moved_slot)) {
                        *s = i;
                    }
                    target = i;
                }
                redis::ErrorKind::Ask => {
                    let Some((addr, _)) = redirect(&e) else {
                        return Err(map_error(e, what).unsent());
                    };
                    target = self.primary_at(&addr.0, addr.1);
                    asking = true;
                }
                redis::ErrorKind::TryAgain if Instant::now() + wait < deadline => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_millis(200));
                }
                redis::ErrorKind::TryAgain
                | redis::ErrorKind::ClusterDown
                | redis::ErrorKind::MasterDown
                | redis::ErrorKind::ReadOnly => {
                    self.stale = true;
                    return Err(map_error(e, what).unsent());
                }
                _ => {
                    if !is_server_error(&e) {
                        // Maybe sent, maybe run: this connection's next reply could be a late one.
                        self.drop_connection(target);
                        self.stale = true;
                    }
                    return Err(map_error(e, what));
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("{what}: the cluster kept redirecting slot {slot}"),
        )
        .unsent())
    }

    /// Runs `f` on every primary's connection, in slot order (for reads that span the cluster:
    /// the function sets, `CONFIG GET`).
    pub(crate) fn on_each_primary<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<Vec<T>, Error> {
        if self.stale {
            let _ = self.refresh();
        }
        let mut out = Vec::with_capacity(self.primaries.len());
        for i in 0..self.primaries.len() {
            let i = u16::try_from(i).unwrap_or(u16::MAX);
            let conn = self
                .connection(i)
                .map_err(|e| map_error(e, what).unsent())?;
            match f(conn) {
                Ok(v) => out.push(v),
                Err(e) => {
                    if !is_server_error(&e) {
                        self.drop_connection(i);
                        self.stale = true;
                    }
                    return Err(map_error(e, what));
                }
            }
        }
        Ok(out)
    }

    /// Reads the map again from any primary that answers; the old map stays if none does.
    fn refresh(&mut self) -> Result<(), Error> {
        let mut last = None;
        for i in 0..self.primaries.len() {
            let i = u16::try_from(i).unwrap_or(u16::MAX);
            let host = self.primaries[usize::from(i)].host.clone();
            let read = self.connection(i).and_then(|c| read_slots(c, &host));
            match read {
                Ok(ranges) => {
                    self.install(ranges);
                    return self.check_covered();
                }
                Err(e) => {
                    self.drop_connection(i);
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) => map_error(e, "cannot read the cluster's slots"),
            None => Error::new(ErrorKind::Unavailable, "no primary of the cluster is known"),
        })
    }

    /// Takes `ranges` as the map, keeping the connections to primaries that stay primaries.
    fn install(&mut self, ranges: Vec<SlotRange>) {
        let mut old: Vec<Primary> = std::mem::take(&mut self.primaries);
        self.slots.fill(u16::MAX);
        for (first, last, host, port, replicas) in ranges {
            let i = self.primary_in(&mut old, &host, port, replicas);
            for s in first..=last.min(SLOTS - 1) {
                self.slots[usize::from(s)] = i;
            }
        }
        self.stale = false;
    }

    /// The index of the primary at `host:port`, taken from `old` (with its connection) or new.
    fn primary_in(
        &mut self,
        old: &mut Vec<Primary>,
        host: &str,
        port: u16,
        replicas: usize,
    ) -> u16 {
        if let Some(i) = self
            .primaries
            .iter()
            .position(|p| p.host == host && p.port == port)
        {
            self.primaries[i].replicas = self.primaries[i].replicas.max(replicas);
            return u16::try_from(i).unwrap_or(u16::MAX);
        }
        let p = match old.iter().position(|p| p.host == host && p.port == port) {
            Some(at) => {
                let mut p = old.swap_remove(at);
                p.replicas = replicas;
                p
            }
            None => Primary {
                host: host.to_owned(),
                port,
                replicas,
                conn: None,
            },
        };
        self.primaries.push(p);
        u16::try_from(self.primaries.len() - 1).unwrap_or(u16::MAX)
    }

    /// The index of the node at `host:port` (a redirect's target), added if it is new.
    fn primary_at(&mut self, host: &str, port: u16) -> u16 {
        let mut none = Vec::new();
        self.primary_in(&mut none, host, port, 0)
    }

    /// `Unavailable` unless every slot has a primary.
    fn check_covered(&self) -> Result<(), Error> {
        match self.slots.iter().position(|&i| i == u16::MAX) {
            None => Ok(()),
            Some(s) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("the Redis Cluster serves no slot {s} yet (forming, or a primary is lost)"),
            )
            .unsent()),
        }
    }

    fn owner(&self, slot: u16) -> Result<u16, Error> {
        match self.slots.get(usize::from(slot)) {
            Some(&i) if i != u16::MAX => Ok(i),
            _ => Err(Error::new(
                ErrorKind::Unavailable,
                format!("no primary of the Redis Cluster serves slot {slot}"),
            )
            .unsent()),
        }
    }

    /// The connection to primary `i`, made (with the timeouts) if there is none.
    fn connection(&mut self, i: u16) -> RedisResult<&mut Connection> {
        let (host, port) = {
            let p = &self.primaries[usize::from(i)];
            (p.host.clone(), p.port)
        };
        if self.primaries[usize::from(i)].conn.is_none() {
            let c = self.open(&host, port)?;
            self.primaries[usize::from(i)].conn = Some(c);
        }
        self.primaries[usize::from(i)]
            .conn
            .as_mut()
            .ok_or_else(|| RedisError::from((redis::ErrorKind::IoError, "no connection")))
    }

    fn drop_connection(&mut self, i: u16) {
        if let Some(p) = self.primaries.get_mut(usize::from(i)) {
            p.conn = None;
        }
    }

    /// A connection to `host:port` with the URL's credentials and TLS settings.
    fn open(&self, host: &str, port: u16) -> RedisResult<Connection> {
        let mut info = self.template.clone();
        info.addr = match info.addr {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        let c = redis::Client::open(info)?.get_connection_with_timeout(self.connect_timeout)?;
        c.set_read_timeout(Some(self.io_timeout))?;
        c.set_write_timeout(Some(self.io_timeout))?;
        Ok(c)
    }
}

/// The `(host, port)` and slot of a `MOVED` or `ASK` answer.
fn redirect(e: &RedisError) -> Option<((String, u16), u16)> {
    let (addr, slot) = e.redirect_node()?;
    let (host, port) = addr.rsplit_once(':')?;
    Some(((host.to_owned(), port.parse().ok()?), slot))
}

/// `CLUSTER SLOTS` of `conn`'s node; a primary listed without a host (`""` or `"?"`: the node
/// does not know its own address) is that node, at `seed_host`.
fn read_slots(conn: &mut Connection, seed_host: &str) -> RedisResult<Vec<SlotRange>> {
    let value: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(conn)?;
    Ok(parse_slots(&value, seed_host))
}

fn parse_slots(value: &redis::Value, seed_host: &str) -> Vec<SlotRange> {
    use redis::Value;
    let int = |v: &Value| match v {
        Value::Int(i) => u16::try_from(*i).ok(),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let Value::Array(ranges) = value else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|r| {
            let Value::Array(r) = r else { return None };
            let (first, last) = (int(r.first()?)?, int(r.get(1)?)?);
            let Value::Array(primary) = r.get(2)? else {
                return None;
            };
            let host = text(primary.first()?)?;
            let host = if host.is_empty() || host == "?" {
                seed_host.to_owned()
            } else {
                host
            };
            let port = int(primary.get(1)?)?;
            Some((first, last, host, port, r.len().saturating_sub(3)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn cluster_slots_are_read_with_their_primaries_and_replicas() {
        let v = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node("", 7001)]),
            Value::SimpleString("junk".into()),
        ]);
        assert_eq!(
            parse_slots(&v, "seed"),
            vec![
                (0, 5460, "10.0.0.1".to_owned(), 7000, 1),
                (5461, 16383, "seed".to_owned(), 7001, 0),
            ]
        );
    }

    #[test]
    fn redirects_name_their_node_and_slot() {
        let e = RedisError::from((
            redis::ErrorKind::Moved,
            "An error was signalled by the server",
            "3999 127.0.0.1:6381".to_owned(),
        ));
        assert_eq!(redirect(&e), Some((("127.0.0.1".to_owned(), 6381), 3999)));
    }

    /// A key of `slot`.
    fn key_in(slot: u16) -> String {
        (0u32..)
            .map(|n| format!("k{n}"))
            .find(|k| crate::layout::key_slot(k.as_bytes()) == slot)
            .unwrap_or_default()
    }

    fn set(router: &mut Router, key: &str, value: &str) -> Result<(), Error> {
        let slot = crate::layout::key_slot(key.as_bytes());
        router.on_slot(slot, "cannot SET", |c| {
            redis::cmd("SET").arg(key).arg(value).query::<()>(c)
        })
    }

    fn get_on(port: u16, key: &str, asking: bool) -> Option<String> {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        if asking {
            redis::cmd("ASKING").query::<()>(&mut c).unwrap();
        }
        redis::cmd("GET").arg(key).query(&mut c).unwrap()
    }

    fn on_node(port: u16, args: &[&str]) {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query::<()>(&mut c).unwrap();
    }

    #[test]
    fn the_router_routes_by_slot_and_follows_moved_and_ask_on_a_real_cluster() {
        use fnmetrics_test_support::redis_cluster::RedisCluster;
        let cluster = RedisCluster::start(3, 0);
        let client = redis::Client::open(cluster.url()).unwrap();
        let mut router =
            Router::connect(&client, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
        assert_eq!(router.primaries().len(), 3);
        // Every key on the primary that serves its slot.
        for n in 0..60 {
            let key = format!("key{n}");
            set(&mut router, &key, "v").unwrap();
            let slot = crate::layout::key_slot(key.as_bytes());
            let owner = router.primary_of(slot).unwrap();
            let port: u16 = owner.rsplit_once(':').unwrap().1.parse().unwrap();
            assert_eq!(get_on(port, &key, false).as_deref(), Some("v"), "{key}");
        }
        let masters = cluster.masters();
        let owner_of = |slot: u16| {
            masters
                .iter()
                .find(|m| m.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
                .unwrap()
                .clone()
        };
        // MOVED: an empty slot given to another primary behind the router's back.
        let moved = 100;
        let (from, to) = (owner_of(moved), owner_of(16_000));
        assert_ne!(from.id, to.id);
        for m in [&to, &from] {
            on_node(
                m.port,
                &["CLUSTER", "SETSLOT", &moved.to_string(), "NODE", &to.id],
            );
        }
        let key = key_in(moved);
        set(&mut router, &key, "moved").unwrap();
        assert_eq!(get_on(to.port, &key, false).as_deref(), Some("moved"));
        assert_eq!(
            router.primary_of(moved),
            Some(format!("127.0.0.1:{}", to.port))
        );
        // ASK: a slot migrating to another primary; a key not on the source goes to the target.
        let asked = 6_000;
        let (from, to) = (owner_of(asked), owner_of(100));
        assert_ne!(from.id, to.id);
        on_node(
            to.port,
            &[
                "CLUSTER",
                "SETSLOT",
                &asked.to_string(),
                "IMPORTING",
                &from.id,
            ],
        );
        on_node(
            from.port,
            &[
                "CLUSTER",
                "SETSLOT",
                &asked.to_string(),
                "MIGRATING",
                &to.id,
            ],
        );
        let key = key_in(asked);
        set(&mut router, &key, "asked").unwrap();
        assert_eq!(get_on(to.port, &key, true).as_deref(), Some("asked"));
        // The map does not follow an ASK: the slot is still the source's.
        assert_eq!(
            router.primary_of(asked),
            Some(format!("127.0.0.1:{}", from.port))
        );
        // Every primary, once each: their keys add up.
        let sizes = router
            .on_each_primary("cannot count keys", |c| {
                redis::cmd("DBSIZE").query::<u64>(c)
            })
            .unwrap();
        assert_eq!(sizes.len(), 3);
        assert_eq!(sizes.iter().sum::<u64>(), 62);
    }

    #[test]
    fn after_a_failover_the_router_finds_the_promoted_replica() {
        use fnmetrics_test_support::redis_cluster::RedisCluster;
        let mut cluster = RedisCluster::start(3, 1);
        let client = redis::Client::open(cluster.url()).unwrap();
        let mut router =
            Router::connect(&client, Duration::from_secs(2), Duration::from_secs(5)).unwrap();
        let slot = 8_000;
        let key = key_in(slot);
        set(&mut router, &key, "before").unwrap();
        let owner = router.primary_of(slot).unwrap();
        let port: u16 = owner.rsplit_once(':').unwrap().1.parse().unwrap();
        cluster.kill(port);
        // The first call goes out on the old connection and finds it closed: it may have run,
        // so it is not sent again here (the caller retries: a flush by its id, at most once).
        let e = set(&mut router, &key, "after").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(!e.is_unsent(), "{e}");
        // The next reads the map again and goes to the replica that took the primary's place.
        set(&mut router, &key, "after").unwrap();
        let now = router.primary_of(slot).unwrap();
        assert_ne!(now, owner);
        let new_port: u16 = now.rsplit_once(':').unwrap().1.parse().unwrap();
        assert_eq!(get_on(new_port, &key, false).as_deref(), Some("after"));
    }
}
