//! In-memory fakes of [`ClaimQueue`] and [`BatchStore`] for the drainer's unit tests: the same
//! contract as Redis and PostgreSQL (leases taken over by the next claim once they ran out,
//! release only by the holder, an acknowledgement that sets dead letters aside atomically, a
//! store that dedupes by id and refuses rows), with a clock the test moves and faults it stages.

use super::{Acked, BatchStore, ClaimQueue, Claimed, RefusedRow, Written};
use crate::error::{Error, ErrorKind};
use crate::record::{EntryRecord, Source};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What a queue holds: an entry, or bytes that do not decode.
#[derive(Clone, Debug)]
pub(super) enum Element {
    Entry(EntryRecord),
    Garbage(&'static str),
}

#[derive(Default)]
pub(super) struct QueueState {
    pub(super) list: VecDeque<Element>,
    /// Claims by id: their elements and lease deadline (ms on the fake clock).
    pub(super) claims: HashMap<u64, (Vec<Element>, u64)>,
    /// Dead letters: the reason and, for an entry, its id.
    pub(super) dead: Vec<(String, Option<[u8; 16]>)>,
    pub(super) now_ms: u64,
    next_claim: u64,
    /// How many claims were taken over after their lease.
    pub(super) takeovers: u64,
    /// Calls to fail next, by operation.
    pub(super) fail_acks: usize,
    pub(super) fail_releases: usize,
    pub(super) fail_claims: usize,
}

/// A queue; lanes share its state.
#[derive(Clone, Default)]
pub(super) struct MemQueue(pub(super) Arc<Mutex<QueueState>>);

pub(super) struct MemClaim {
    id: u64,
    entries: Vec<EntryRecord>,
    undecodable: usize,
    lease_until: u64,
}

impl Claimed for MemClaim {
    fn entries(&self) -> &[EntryRecord] {
        &self.entries
    }
    fn undecodable(&self) -> usize {
        self.undecodable
    }
}

fn down(what: &str) -> Error {
    Error::new(ErrorKind::Unavailable, format!("staged fault: {what}"))
}

impl MemQueue {
    /// A queue holding `n` entries of `func`, ids 1..=n in order.
    pub(super) fn with_entries(func: &str, n: u64) -> MemQueue {
        let q = MemQueue::default();
        q.push(func, 1..=n);
        q
    }

    pub(super) fn push(&self, func: &str, ids: impl IntoIterator<Item = u64>) {
        let mut s = self.state();
        for i in ids {
            s.list.push_back(Element::Entry(entry(func, i)));
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, QueueState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ids of the entries in the list, in order.
    pub(super) fn listed(&self) -> Vec<u64> {
        self.state()
            .list
            .iter()
            .filter_map(|e| match e {
                Element::Entry(r) => Some(id_of(r)),
                Element::Garbage(_) => None,
            })
            .collect()
    }
}

impl ClaimQueue for MemQueue {
    type Claim = MemClaim;

    fn claim(&mut self, max: usize, lease: Duration) -> Result<Option<MemClaim>, Error> {
        let mut s = self.state();
        if s.fail_claims > 0 {
            s.fail_claims -= 1;
            return Err(down("claim"));
        }
        let now = s.now_ms;
        let until = now + lease.as_millis() as u64;
        let expired = s
            .claims
            .iter()
            .find(|(_, (_, t))| *t <= now)
            .map(|(id, _)| *id);
        let (id, elements) = match expired {
            Some(id) => {
                s.takeovers += 1;
                let c = s.claims.get_mut(&id).expect("found above");
                c.1 = until;
                (id, c.0.clone())
            }
            None => {
                let mut taken = Vec::new();
                let mut entries = 0;
                while let Some(e) = s.list.front() {
                    let is_entry = matches!(e, Element::Entry(_));
                    if !taken.is_empty() && is_entry && entries >= max {
                        break;
                    }
                    entries += usize::from(is_entry);
                    taken.push(s.list.pop_front().expect("front exists"));
                }
                if taken.is_empty() {
                    return Ok(None);
                }
                s.next_claim += 1;
                let id = s.next_claim;
                s.claims.insert(id, (taken.clone(), until));
                (id, taken)
            }
        };
        let mut claim = MemClaim {
            id,
            entries: Vec::new(),
            undecodable: 0,
            lease_until: until,
        };
        for e in elements {
            match e {
                Element::Entry(r) => claim.entries.push(r),
                Element::Garbage(_) => claim.undecodable += 1,
            }
        }
        Ok(Some(claim))
    }

    fn ack(&mut self, claim: &MemClaim, refused: &[RefusedRow]) -> Result<Acked, Error> {
        let mut s = self.state();
        if s.fail_acks > 0 {
            s.fail_acks -= 1;
            return Err(down("ack"));
        }
        let Some((elements, _)) = s.claims.remove(&claim.id) else {
            return Ok(Acked::new(false, 0));
        };
        for e in elements {
            if let Element::Garbage(why) = e {
                s.dead.push((why.to_owned(), None));
            }
        }
        for r in refused {
            let id = claim.entries[r.index].id;
            s.dead.push((r.reason.clone(), Some(id)));
        }
        Ok(Acked::new(true, 0))
    }

    fn release(&mut self, claim: &MemClaim) -> Result<bool, Error> {
        let mut s = self.state();
        if s.fail_releases > 0 {
            s.fail_releases -= 1;
            return Err(down("release"));
        }
        match s.claims.get(&claim.id) {
            Some((_, until)) if *until == claim.lease_until => {
                let (elements, _) = s.claims.remove(&claim.id).expect("found above");
                for e in elements.into_iter().rev() {
                    s.list.push_front(e);
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn lane(&self, _lane: usize, _lanes: usize) -> MemQueue {
        self.clone()
    }
}

#[derive(Default)]
pub(super) struct StoreState {
    /// Stored rows by id, with how many writes brought each.
    pub(super) rows: HashMap<[u8; 16], u32>,
    /// Every successful write: the connection and how many entries it got.
    pub(super) writes: Vec<(usize, usize)>,
    /// Connections whose writes fail, and how many writes of any connection fail next.
    pub(super) failing: HashSet<usize>,
    pub(super) fail_writes: usize,
    /// Functions whose rows are refused for good.
    pub(super) refuse: HashSet<String>,
    connections: usize,
    pub(super) maintained: u64,
}

/// A store; its connections ([`BatchStore::another`]) share its state.
#[derive(Clone, Default)]
pub(super) struct MemStore {
    pub(super) conn: usize,
    pub(super) shared: Arc<Mutex<StoreState>>,
}

impl MemStore {
    pub(super) fn state(&self) -> MutexGuard<'_, StoreState> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many distinct rows are stored.
    pub(super) fn stored(&self) -> usize {
        self.state().rows.len()
    }
}

impl BatchStore for MemStore {
    fn write(&mut self, entries: &[EntryRecord]) -> Result<Written, Error> {
        let mut s = self.state();
        if s.failing.contains(&self.conn) {
            return Err(down("write on a failing connection"));
        }
        if s.fail_writes > 0 {
            s.fail_writes -= 1;
            return Err(down("write"));
        }
        let mut out = Written::default();
        for (index, e) in entries.iter().enumerate() {
            if s.refuse.contains(&*e.func_name) {
                out.refused.push(RefusedRow {
                    index,
                    reason: format!("refused: {}", e.func_name),
                });
                continue;
            }
            let n = s.rows.entry(e.id).or_default();
            *n += 1;
            out.inserted += u64::from(*n == 1);
        }
        s.writes.push((self.conn, entries.len()));
        Ok(out)
    }

    fn another(&self) -> MemStore {
        let mut s = self.state();
        s.connections += 1;
        MemStore {
            conn: s.connections,
            shared: self.shared.clone(),
        }
    }

    fn maintain(&mut self) -> Result<(), Error> {
        self.state().maintained += 1;
        Ok(())
    }
}

/// An entry of `func` whose id is `i` (big-endian in the last 8 bytes).
pub(super) fn entry(func: &str, i: u64) -> EntryRecord {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&i.to_be_bytes());
    EntryRecord {
        id,
        func_name: func.into(),
        execution_time: Duration::from_micros(i),
        error_occurred: false,
        created_at_micros: 1_700_000_000_000_000,
        weight: 1,
        source: Arc::new(Source::new("test", "")),
    }
}

pub(super) fn id_of(e: &EntryRecord) -> u64 {
    u64::from_be_bytes(e.id[8..].try_into().expect("8 bytes"))
}
