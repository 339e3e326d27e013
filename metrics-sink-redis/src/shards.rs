//! Stage 1 into a Redis Cluster (`docs/cluster.md` §4–5): the shard count every process agrees
//! on, stored once in the cluster, and one flush into one shard, in one round trip with a `WAIT`
//! for replicas when there are some.

use crate::cluster::Router;
use crate::conn::evalsha;
use crate::layout::{key_slot, Layout};
use crate::options::RedisOptions;
use crate::sink::{flush_args, WriteOutcome, FLUSH_SHARD};
use fnmetrics_core::{Error, ErrorKind, FlushBatch};
use std::fmt::Write as _;
use std::time::Duration;

/// Writes flushes into the shards of a cluster.
#[derive(Debug, Default)]
pub(crate) struct ShardWriter {
    frames: Vec<u8>,
    frame_ends: Vec<usize>,
}

impl ShardWriter {
    /// Applies `batch` in its shard, at most once; with `replicas > 0`, the flush counts as
    /// delivered only once that many replicas of the shard's primary have it (`WAIT`, within
    /// `ack_timeout`, in the same round trip).
    ///
    /// # Errors
    /// The router's errors; [`ErrorKind::Unavailable`] (not unsent: it was applied on the
    /// primary) when fewer replicas acknowledged it: the flusher retries the same batch, which
    /// finds it applied, or applies it on a replica promoted meanwhile.
    pub(crate) fn write(
        &mut self,
        router: &mut Router,
        layout: &Layout,
        opts: &RedisOptions,
        batch: &FlushBatch,
        replicas: usize,
        ack_timeout: Duration,
    ) -> Result<WriteOutcome, Error> {
        let shard = layout.shard_of(&batch.flush_id);
        let list = layout.entries_list(opts, shard);
        let mut cmd = evalsha(&FLUSH_SHARD, 6 + batch.aggregates.len());
        cmd.arg(layout.internal(opts, shard, "flushes"))
            .arg(layout.internal(opts, shard, "shard"))
            .arg(&list)
            .arg(layout.internal(opts, shard, "functions"))
            .arg(layout.internal(opts, shard, "changes"))
            .arg(layout.internal(opts, shard, "version"));
        for a in &batch.aggregates {
            cmd.arg(layout.aggregate_hash(opts, shard, &a.name));
        }
        let mut id = String::with_capacity(32);
        for b in batch.flush_id {
            let _ = write!(id, "{b:02x}");
        }
        cmd.arg(opts.flush_id_ttl.as_secs()).arg(&id);
        flush_args(&mut cmd, batch, &mut self.frames, &mut self.frame_ends);
        let timeout_ms = u64::try_from(ack_timeout.as_millis()).unwrap_or(u64::MAX);
        let what = "cannot write a flush to a Redis Cluster shard";
        let (applied, acked): (i64, usize) = router
            .on_slot(key_slot(list.as_bytes()), what, |c| {
                let run = |c: &mut redis::Connection| -> redis::RedisResult<(i64, usize)> {
                    if replicas == 0 {
                        return Ok((cmd.query(c)?, 0));
                    }
                    redis::pipe()
                        .add_command(cmd.clone())
                        .cmd("WAIT")
                        .arg(replicas)
                        .arg(timeout_ms)
                        .query(c)
                };
                match run(c) {
                    // A node that has not seen the script yet (new, restarted, promoted): it
                    // ran nothing; load it there and go again.
                    Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                        FLUSH_SHARD.load(c)?;
                        run(c)
                    }
                    r => r,
                }
            })
            // The script checks every key before it writes: a wrong type means nothing changed.
            .map_err(|e| match e.kind() {
                ErrorKind::Schema => e.unsent(),
                _ => e,
            })?;
        if acked < replicas {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "a flush reached the primary of shard {shard} but {acked} of its {replicas} \
                     replicas within {ack_timeout:?}; it is sent again (and applied once)"
                ),
            ));
        }
        Ok(if applied == 1 {
            WriteOutcome::Applied
        } else {
            WriteOutcome::AlreadyApplied
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::open_layout;
    use crate::layout::DEFAULT_SHARDS;
    use fnmetrics_core::Snapshot;
    use fnmetrics_test_support::redis_cluster::RedisCluster;

    fn batch(id: u64) -> FlushBatch {
        let mut a = Snapshot::new("app::f");
        a.record(1_000 + id, id.is_multiple_of(4));
        let mut flush_id = [0u8; 16];
        // Spread over the shards as random ids do.
        flush_id[..8].copy_from_slice(&id.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        flush_id[8..].copy_from_slice(&id.to_le_bytes());
        FlushBatch {
            flush_id,
            entries: Vec::new(),
            aggregates: vec![a],
        }
    }

    /// The aggregate `field` of `app::f` summed over the shards, and the shards that have one.
    fn summed(router: &mut Router, layout: &Layout, field: &str) -> (u64, usize) {
        let opts = RedisOptions::default();
        let (mut total, mut shards) = (0, 0);
        for shard in 0..8 {
            let key = layout.aggregate_hash(&opts, shard, "app::f");
            let v: Option<u64> = router
                .on_slot(key_slot(key.as_bytes()), "read", |c| {
                    redis::cmd("HGET").arg(&key).arg(field).query(c)
                })
                .unwrap();
            if let Some(v) = v {
                total += v;
                shards += 1;
            }
        }
        (total, shards)
    }

    #[test]
    fn flushes_spread_over_shards_apply_once_and_survive_a_failover() {
        let mut cluster = RedisCluster::start(3, 1);
        let client = redis::Client::open(cluster.url()).unwrap();
        let mut router =
            Router::connect(&client, Duration::from_secs(2), Duration::from_secs(5)).unwrap();
        let opts = RedisOptions::default();
        let (layout, n) = open_layout(&mut router, &opts, None).unwrap();
        assert_eq!(n, DEFAULT_SHARDS);
        // Every process agrees on the stored count; another one asked for is refused.
        assert_eq!(open_layout(&mut router, &opts, Some(8)).unwrap().1, 8);
        let e = open_layout(&mut router, &opts, Some(16)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");

        let mut w = ShardWriter::default();
        let ack = Duration::from_secs(2);
        for id in 0..40 {
            let b = batch(id);
            assert_eq!(
                w.write(&mut router, &layout, &opts, &b, 1, ack).unwrap(),
                WriteOutcome::Applied
            );
        }
        let (calls, shards) = summed(&mut router, &layout, "calls");
        assert_eq!(calls, 40);
        assert_eq!(shards, 8, "40 flushes reach every shard");
        // A retry applies nothing.
        assert_eq!(
            w.write(&mut router, &layout, &opts, &batch(7), 1, ack)
                .unwrap(),
            WriteOutcome::AlreadyApplied
        );
        // The primary of flush 7's shard dies; its replica (which acknowledged the flush) takes
        // over: the flush is still known there, and new flushes go on.
        let shard = layout.shard_of(&batch(7).flush_id);
        assert_eq!(layout.shards(), n);
        let key = layout.entries_list(&opts, shard);
        let owner = router.primary_of(key_slot(key.as_bytes())).unwrap();
        cluster.kill(owner.rsplit_once(':').unwrap().1.parse().unwrap());
        // The first call finds the old connection closed (maybe sent): the flusher sends the
        // same batch again, as here.
        let retried = (0..5)
            .find_map(
                |_| match w.write(&mut router, &layout, &opts, &batch(7), 0, ack) {
                    Ok(outcome) => Some(outcome),
                    Err(e) => {
                        assert!(e.kind().is_transient(), "{e}");
                        None
                    }
                },
            )
            .expect("the flush reaches the promoted replica");
        assert_eq!(retried, WriteOutcome::AlreadyApplied);
        for id in 40..50 {
            w.write(&mut router, &layout, &opts, &batch(id), 0, ack)
                .unwrap();
        }
        assert_eq!(summed(&mut router, &layout, "calls").0, 50);
    }
}
