//! The drainer on in-memory fakes: held claims, hand-back, lanes, writer splits, failing parts,
//! takeovers after a lease, refused rows. No server and no process-wide lock: these run in
//! parallel.

use super::fake::{entry, id_of, Element, MemQueue, MemStore};
use super::Drainer;
use crate::sink::DrainOutcome;
use std::time::Duration;

type D = Drainer<MemQueue, MemStore>;

fn drainer(q: &MemQueue, s: &MemStore) -> D {
    Drainer::new(q.clone(), s.clone()).maintain_every(None)
}

#[test]
fn everything_is_stored_once_and_garbage_is_set_aside() {
    let q = MemQueue::with_entries("f", 10);
    q.state()
        .list
        .insert(4, Element::Garbage("unknown version 9"));
    let s = MemStore::default();
    let done = drainer(&q, &s).claim_size(3).drain_all().unwrap();
    assert_eq!(done.moved, 10);
    assert_eq!(done.dead_lettered, 1);
    assert_eq!(s.stored(), 10);
    let st = q.state();
    assert!(st.list.is_empty() && st.claims.is_empty());
    assert_eq!(st.dead, vec![("unknown version 9".to_owned(), None)]);
}

#[test]
fn a_batch_whose_write_failed_is_held_and_tried_first() {
    let q = MemQueue::with_entries("f", 10);
    let s = MemStore::default();
    let mut d = drainer(&q, &s).claim_size(4);
    s.state().fail_writes = 1;
    assert!(d.drain_once().is_err());
    assert_eq!(
        q.listed(),
        (5..=10).collect::<Vec<_>>(),
        "one claim of 4 taken"
    );
    // The next call writes the held claim, without claiming anew.
    let o = d.drain_once().unwrap();
    assert_eq!(o.moved, 4);
    assert_eq!(q.listed(), (5..=10).collect::<Vec<_>>());
    assert!(q.state().claims.is_empty());
    assert_eq!(d.drain_all().unwrap().moved, 6);
    assert_eq!(s.stored(), 10);
}

#[test]
fn a_failed_acknowledgement_keeps_the_claim_and_the_rewrite_dedupes() {
    let q = MemQueue::with_entries("f", 5);
    let s = MemStore::default();
    let mut d = drainer(&q, &s);
    q.state().fail_acks = 1;
    assert!(d.drain_once().is_err());
    assert_eq!(s.stored(), 5, "written before the ack failed");
    assert_eq!(d.drain_once().unwrap().moved, 5);
    assert!(s.state().rows.values().all(|&n| n == 2), "written twice");
    assert_eq!(s.stored(), 5);
    assert!(q.state().claims.is_empty());
}

#[test]
fn hand_back_puts_the_claim_back_at_the_head_in_order() {
    let q = MemQueue::with_entries("f", 10);
    let s = MemStore::default();
    let mut d = drainer(&q, &s).claim_size(4);
    s.state().fail_writes = 1;
    assert!(d.drain_once().is_err());
    assert_eq!(d.hand_back().unwrap(), 4);
    assert_eq!(q.listed(), (1..=10).collect::<Vec<_>>());
    assert!(q.state().claims.is_empty());
    assert_eq!(d.hand_back().unwrap(), 0, "nothing held any more");
}

#[test]
fn a_hand_back_that_fails_keeps_the_claim_for_later() {
    let q = MemQueue::with_entries("f", 3);
    let s = MemStore::default();
    let mut d = drainer(&q, &s);
    s.state().fail_writes = 1;
    q.state().fail_releases = 1;
    assert!(d.drain_once().is_err());
    assert!(d.hand_back().is_err());
    assert_eq!(d.hand_back().unwrap(), 3);
    assert_eq!(q.listed(), vec![1, 2, 3]);
}

#[test]
fn a_drainer_dropped_with_a_batch_hands_it_back() {
    let q = MemQueue::with_entries("f", 6);
    let s = MemStore::default();
    let mut d = drainer(&q, &s).lanes(2).claim_size(3);
    s.state().fail_writes = 2;
    assert!(d.drain_once().is_err());
    assert!(q.state().claims.len() == 2, "each lane holds a claim");
    drop(d);
    assert!(q.state().claims.is_empty());
    let mut back = q.listed();
    back.sort_unstable();
    assert_eq!(back, (1..=6).collect::<Vec<_>>());
}

#[test]
fn lanes_drain_side_by_side_and_every_entry_lands_once() {
    let q = MemQueue::with_entries("f", 30_000);
    let s = MemStore::default();
    let mut d = drainer(&q, &s).lanes(3).claim_size(1_000);
    let done = d.drain_all().unwrap();
    assert_eq!(done.moved, 30_000);
    assert_eq!(s.stored(), 30_000);
    assert!(s.state().rows.values().all(|&n| n == 1));
    let conns: std::collections::HashSet<usize> = s.state().writes.iter().map(|w| w.0).collect();
    assert_eq!(conns.len(), 3, "one store connection a lane");
}

#[test]
fn what_lanes_moved_in_a_call_another_lane_failed_is_counted_next_time() {
    let q = MemQueue::with_entries("f", 9_000);
    let s = MemStore::default();
    let mut d = drainer(&q, &s).lanes(3).claim_size(1_000);
    // The second lane's connection fails: the call errs, the others' work is carried.
    let failing = 2;
    s.state().failing.insert(failing);
    let mut moved = 0;
    let mut errors = 0;
    for _ in 0..3 {
        match d.drain_once() {
            Ok(o) => moved += o.moved,
            Err(_) => errors += 1,
        }
    }
    assert_eq!(errors, 3);
    s.state().failing.clear();
    moved += d.drain_all().unwrap().moved;
    assert_eq!(
        moved, 9_000,
        "every entry counted once, none lost with the failed calls"
    );
    assert_eq!(s.stored(), 9_000);
}

#[test]
fn writers_split_a_claim_into_parts_on_connections_of_their_own() {
    let q = MemQueue::with_entries("f", 6_000);
    let s = MemStore::default();
    let mut d = drainer(&q, &s).writers(3).claim_size(6_000);
    assert_eq!(d.drain_once().unwrap().moved, 6_000);
    let mut writes = s.state().writes.clone();
    writes.sort_unstable();
    assert_eq!(writes, vec![(0, 2_000), (1, 2_000), (2, 2_000)]);
}

#[test]
fn a_small_claim_is_not_split() {
    let q = MemQueue::with_entries("f", 1_500);
    let s = MemStore::default();
    let mut d = drainer(&q, &s).writers(3);
    assert_eq!(d.drain_once().unwrap().moved, 1_500);
    assert_eq!(s.state().writes, vec![(0, 1_500)]);
}

#[test]
fn a_part_that_fails_goes_again_on_the_first_connection() {
    let q = MemQueue::with_entries("f", 4_000);
    let s = MemStore::default();
    let mut d = drainer(&q, &s).writers(2);
    s.state().failing.insert(1);
    assert_eq!(d.drain_once().unwrap().moved, 4_000);
    assert_eq!(s.state().writes, vec![(0, 2_000), (0, 2_000)]);
    assert_eq!(s.stored(), 4_000);
}

#[test]
fn a_part_that_fails_twice_fails_the_claim_which_is_held() {
    let q = MemQueue::with_entries("f", 4_000);
    let s = MemStore::default();
    let mut d = drainer(&q, &s).writers(2);
    s.state().failing.insert(1);
    s.state().fail_writes = 2; // the first part, then its second try
    assert!(d.drain_once().is_err());
    assert_eq!(q.state().claims.len(), 1);
    assert_eq!(d.drain_once().unwrap().moved, 4_000);
    assert_eq!(s.stored(), 4_000);
}

#[test]
fn refused_rows_become_dead_letters_indexed_into_the_claim() {
    let q = MemQueue::default();
    q.push("f", 1..=2_000);
    q.push("bad", [2_001, 2_002]);
    q.push("f", 2_003..=3_000);
    q.push("bad", [3_001]);
    let s = MemStore::default();
    s.state().refuse.insert("bad".into());
    let mut d = drainer(&q, &s).writers(2).claim_size(10_000);
    let o = d.drain_once().unwrap();
    assert_eq!(o.moved, 2_998);
    assert_eq!(o.dead_lettered, 3);
    let dead: Vec<_> = q.state().dead.iter().map(|(_, id)| id.unwrap()).collect();
    let ids: Vec<u64> = dead
        .iter()
        .map(|id| u64::from_be_bytes(id[8..].try_into().unwrap()))
        .collect();
    assert_eq!(
        ids,
        vec![2_001, 2_002, 3_001],
        "the second part's rows, by their ids"
    );
    assert!(q.state().dead.iter().all(|(why, _)| why == "refused: bad"));
    assert_eq!(s.stored(), 2_998);
}

#[test]
fn a_claim_taken_over_after_its_lease_is_counted_by_the_drainer_that_acknowledged_it() {
    let q = MemQueue::with_entries("f", 5);
    let s = MemStore::default();
    let lease = Duration::from_secs(60);
    let mut a = drainer(&q, &s).lease(lease);
    let mut b = drainer(&q, &s).lease(lease);
    // A claims, then its ack fails: it holds a claim whose rows are written.
    q.state().fail_acks = 1;
    assert!(a.drain_once().is_err());
    // Before the lease runs out, B finds nothing.
    assert!(b.drain_once().unwrap().is_idle());
    q.state().now_ms += 60_000;
    let by_b = b.drain_all().unwrap();
    assert_eq!(by_b.moved, 5);
    assert_eq!(q.state().takeovers, 1);
    // A tries its held claim again: written (deduped), but B removed it.
    let by_a = a.drain_once().unwrap();
    assert_eq!(
        by_a,
        DrainOutcome {
            taken_over: 1,
            ..DrainOutcome::default()
        }
    );
    assert_eq!(s.stored(), 5);
}

#[test]
fn a_claim_taken_over_is_not_handed_back_by_its_first_holder() {
    let q = MemQueue::with_entries("f", 5);
    let s = MemStore::default();
    let mut a = drainer(&q, &s);
    s.state().fail_writes = 1;
    assert!(a.drain_once().is_err());
    q.state().now_ms += 60_000;
    // B takes it over and holds it (its write fails too).
    let mut b = drainer(&q, &s);
    s.state().fail_writes = 1;
    assert!(b.drain_once().is_err());
    assert_eq!(a.hand_back().unwrap(), 0, "no longer A's");
    assert!(q.listed().is_empty());
    assert_eq!(b.hand_back().unwrap(), 5);
    assert_eq!(q.listed(), vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_claim_that_fails_is_not_taken_without_the_store() {
    // The store is asked first: while it cannot connect, nothing is claimed.
    struct Down;
    impl super::BatchStore for Down {
        fn write(&mut self, _: &[crate::EntryRecord]) -> Result<super::Written, crate::Error> {
            unreachable!("nothing is claimed while the store is down")
        }
        fn another(&self) -> Down {
            Down
        }
        fn connect(&mut self) -> Result<(), crate::Error> {
            Err(crate::Error::new(crate::ErrorKind::Unavailable, "down"))
        }
    }
    let q = MemQueue::with_entries("f", 3);
    let mut d = Drainer::new(q.clone(), Down).maintain_every(None);
    assert!(d.drain_once().is_err());
    assert_eq!(q.listed(), vec![1, 2, 3]);
    assert!(q.state().claims.is_empty());
}

#[test]
fn maintenance_runs_on_a_connection_of_its_own() {
    let q = MemQueue::with_entries("f", 1);
    let s = MemStore::default();
    let mut d = Drainer::new(q, s.clone()).maintain_every(Some(Duration::from_secs(3600)));
    d.drain_all().unwrap();
    // The thread runs once at start; wait for it (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.state().maintained == 0 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(s.state().maintained, 1);
}

#[test]
fn fake_entries_round_trip_their_ids() {
    assert_eq!(id_of(&entry("f", 42)), 42);
}
