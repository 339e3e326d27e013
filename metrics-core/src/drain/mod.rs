//! Stage 2 as a piece of its own: a [`Drainer`] claims a batch from a [`ClaimQueue`] (Redis in
//! production), writes it to a [`BatchStore`] (PostgreSQL) and acknowledges it, so that a crash
//! at any point loses nothing and doubles nothing: an unacknowledged claim's lease runs out and
//! another drainer takes it over, and the store ignores ids it already has.
//!
//! The drainer holds the orchestration (held claims, hand-back, lanes, parallel writers, dead
//! letters for refused rows, the maintenance thread); the two traits hold the I/O. The unit
//! tests of this module run it on in-memory fakes of both.

mod drainer;
#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use drainer::Drainer;

use crate::error::Error;
use crate::record::EntryRecord;
use crate::sink::Canceller;
use std::time::Duration;

/// Where stage 2 takes its batches from: a queue of entries whose batches are claimed with a
/// lease, acknowledged once stored, and handed back when they could not be.
///
/// A claim that is neither acknowledged nor handed back (the process crashed) is taken over by
/// the next [`claim`](ClaimQueue::claim) of any drainer once its lease has run out.
///
/// ```
/// use fnmetrics::sink::{Acked, ClaimQueue, Claimed, EntryRecord, RefusedRow};
/// use fnmetrics::Error;
/// use std::time::Duration;
///
/// /// A queue that never holds anything.
/// struct Empty;
/// struct NoClaim;
/// impl Claimed for NoClaim {
///     fn entries(&self) -> &[EntryRecord] { &[] }
/// }
/// impl ClaimQueue for Empty {
///     type Claim = NoClaim;
///     fn claim(&mut self, _: usize, _: Duration) -> Result<Option<NoClaim>, Error> { Ok(None) }
///     fn ack(&mut self, _: &NoClaim, _: &[RefusedRow]) -> Result<Acked, Error> {
///         Ok(Acked::new(true, 0))
///     }
///     fn release(&mut self, _: &NoClaim) -> Result<bool, Error> { Ok(true) }
///     fn lane(&self, _: usize, _: usize) -> Empty { Empty }
/// }
/// ```
pub trait ClaimQueue: Send + 'static {
    /// A claimed batch.
    type Claim: Claimed;

    /// Claims a batch of at most `max` entries (at least one element), atomically, for
    /// `lease`: a claim whose lease has run out first, taken over, otherwise new entries.
    /// `None` when there is nothing to claim.
    ///
    /// # Errors
    /// The queue could not be asked; nothing was claimed, or what was is taken over after its
    /// lease.
    fn claim(&mut self, max: usize, lease: Duration) -> Result<Option<Self::Claim>, Error>;

    /// Removes `claim` once its entries are stored, and sets aside as dead letters, in the same
    /// atomic step, what in it could not be decoded and the entries of `refused` (indexes into
    /// [`Claimed::entries`], with the store's reasons). If the claim is gone (another drainer
    /// took it over and acknowledged it), nothing is set aside and
    /// [`removed`](Acked::removed) is false.
    ///
    /// # Errors
    /// The queue could not be told; the claim stays, and is acknowledged again later (the
    /// store dedupes the second write).
    fn ack(&mut self, claim: &Self::Claim, refused: &[RefusedRow]) -> Result<Acked, Error>;

    /// Hands `claim` back, so that the next claim of any drainer takes its entries at once
    /// instead of after the lease; a claim another drainer took over is left alone. Whether
    /// this call handed it back.
    ///
    /// # Errors
    /// The queue could not be told; the claim is taken over after its lease.
    fn release(&mut self, claim: &Self::Claim) -> Result<bool, Error>;

    /// Another queue on the same store, not connected yet, for lane `lane` of `lanes` of one
    /// drainer ([`Drainer::lanes`]): a queue whose store is split (a Redis Cluster's shards)
    /// starts the lane's claims at another part.
    fn lane(&self, lane: usize, lanes: usize) -> Self
    where
        Self: Sized;

    /// Connects now if not connected: a no-op while connected. The drainer calls it at
    /// [`Drainer::connect`]; every other call connects by itself too. The default does
    /// nothing.
    ///
    /// # Errors
    /// What connecting met.
    fn connect(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A batch claimed from a [`ClaimQueue`].
///
/// ```
/// use fnmetrics::sink::{Claimed, EntryRecord};
/// struct Batch(Vec<EntryRecord>);
/// impl Claimed for Batch {
///     fn entries(&self) -> &[EntryRecord] { &self.0 }
/// }
/// assert_eq!(Batch(vec![]).undecodable(), 0);
/// ```
pub trait Claimed: Send {
    /// The claimed entries, oldest first.
    fn entries(&self) -> &[EntryRecord];

    /// How many elements of the claim could not be decoded: set aside as dead letters when the
    /// claim is acknowledged. The default: none.
    fn undecodable(&self) -> usize {
        0
    }
}

/// Where stage 2 stores batches: a database that writes a batch in one transaction, skipping
/// ids it already has, and says which rows it refused for good.
///
/// ```
/// use fnmetrics::sink::{BatchStore, EntryRecord, Written};
/// use fnmetrics::Error;
///
/// /// A store that keeps nothing.
/// struct Discard;
/// impl BatchStore for Discard {
///     fn write(&mut self, entries: &[EntryRecord]) -> Result<Written, Error> {
///         Ok(Written { inserted: entries.len() as u64, refused: vec![] })
///     }
///     fn another(&self) -> Discard { Discard }
/// }
/// ```
pub trait BatchStore: Send + 'static {
    /// Writes `entries` in one transaction; an entry whose id is stored already is skipped.
    /// Rows refused for good (a value the database rejects) are left out and named in
    /// [`Written::refused`], the rest is stored.
    ///
    /// # Errors
    /// Nothing or everything was stored; the drainer writes the batch again later.
    fn write(&mut self, entries: &[EntryRecord]) -> Result<Written, Error>;

    /// Another connection to the same store, not connected yet: for the parallel writers of
    /// one claim ([`Drainer::writers`]), lanes and maintenance.
    fn another(&self) -> Self
    where
        Self: Sized;

    /// Connects (and sets the schema up) now if not connected: a no-op while connected. The
    /// drainer calls it before each new claim, so that a batch is claimed only when it can be
    /// written. The default does nothing.
    ///
    /// # Errors
    /// What connecting met.
    fn connect(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// A handle that cancels this connection's statement in progress from another thread
    /// (the flusher's shutdown deadline). `None` (the default): writes end on their own
    /// timeouts.
    fn canceller(&self) -> Option<Canceller> {
        None
    }

    /// Housekeeping the drainer runs now and then on a connection of its own
    /// ([`Drainer::maintain_every`]): for PostgreSQL, the partitions of the coming days made
    /// and those past retention dropped. The default does nothing.
    ///
    /// # Errors
    /// What it met; logged, and the next run tries again. [`Superseded`] stops the runs.
    ///
    /// [`Superseded`]: crate::ErrorKind::Superseded
    fn maintain(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// What [`BatchStore::write`] stored.
///
/// ```
/// let w = fnmetrics::sink::Written::default();
/// assert_eq!((w.inserted, w.refused.len()), (0, 0));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows stored by this write (entries stored before are skipped, not counted).
    pub inserted: u64,
    /// Rows refused for good, by their index in the written slice.
    pub refused: Vec<RefusedRow>,
}

/// An entry a [`BatchStore`] refused for good, and why.
///
/// ```
/// let r = fnmetrics::sink::RefusedRow { index: 3, reason: "22P02: bad value".into() };
/// assert_eq!(r.index, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedRow {
    /// The entry's index in the slice given to [`BatchStore::write`] (in the claim's entries,
    /// in what the drainer gives [`ClaimQueue::ack`]).
    pub index: usize,
    /// The store's reason, for the dead letter.
    pub reason: String,
}

/// What [`ClaimQueue::ack`] did.
///
/// ```
/// let a = fnmetrics::sink::Acked::default();
/// assert!(!a.removed && a.dead_letters_evicted == 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Acked {
    /// This call removed the claim (and set its dead letters aside); `false` if it was already
    /// gone, acknowledged by a drainer that took it over.
    pub removed: bool,
    /// Older dead letters evicted because the dead-letter list was full.
    pub dead_letters_evicted: u64,
}

impl Acked {
    /// An acknowledgement: whether it removed the claim, and how many older dead letters it
    /// evicted.
    ///
    /// ```
    /// let a = fnmetrics::sink::Acked::new(true, 2);
    /// assert!(a.removed);
    /// ```
    pub fn new(removed: bool, dead_letters_evicted: u64) -> Acked {
        Acked {
            removed,
            dead_letters_evicted,
        }
    }
}
