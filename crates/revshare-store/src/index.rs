//! The `(host, id)` idempotency index of stored records, in memory.
//!
//! Dedup is permanent (SPEC §3), so every ingest asks, per record, whether its `(host, id)` was
//! stored before and with which fingerprint. The answer is the core's [`DedupIndex`] over every
//! stored record, loaded from the segments' `keys` column ([`crate::segments`]) the first time a
//! store ingests and kept current after each commit. Several processes (or connections) may write
//! one database: each index remembers the last segment it has seen, and an ingest, holding the
//! write lock, first reads the segments written since (`catch_up`) — so every decision is made
//! against every committed record, exactly as a primary key would make it.
//!
//! An ingest looks keys up without changing the index, and its new keys are added only while
//! its transaction commits ([`RecordIndex::added_while`]), with the index's lock held until the
//! commit has returned: nobody sees them before, and a failed commit empties the index, which the
//! next ingest reads back from the segments. So a refused or failed batch leaves no trace here
//! either. A key offered again with the same fingerprint (a segment replaced by re-placement)
//! changes nothing.
//!
//! The keys are spread over [`SHARDS`] tables by their hash, so a committed batch's keys are
//! added on every core, each table taking its own keys in batch order; a key is only ever in its
//! hash's table, so the answer for each key is the one a single table would give. The hash is
//! taken once per record, where the batch is placed, and serves the look-up, the repeats inside
//! the batch and the addition. Adding runs with the write lock held, so it is on every writer's
//! path; it runs on the other cores while the commit mostly waits (for the disk or the server)
//! and the writer helps once its commit returns (a batch of fewer than `SHARDED_FROM` new keys is
//! added on one thread: handing it out would cost more). The tables fill at the same rate, so
//! after a batch at most one of them starts growing ahead of time ([`DedupIndex::grow_early`]),
//! and no batch waits for all sixteen to grow at once; a table grows a little on every offer
//! (`revshare_core::dedup`). A caller that knows how many records are coming
//! ([`crate::Store::expect_records`]) has the tables sized for them once, before the first
//! batch, and they do not grow at all. The connections of one process that write one database
//! share its index ([`SharedIndex`]).
//!
//! A stored record's location in the index is its batch's log leaf, which re-placement keeps,
//! so the record can be found again (`segments::find`) to name the fields of a conflict.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use foldhash::fast::RandomState;
use rayon::prelude::*;

use revshare_core::dedup::{DedupIndex, Seen};

use crate::error::StoreError;
use crate::segments;
use crate::sql::Sql;

/// Keys stored by the earlier batches of a group, not committed yet and so not in the index.
pub(crate) type Pending<'b> = HashMap<(&'b str, &'b str), ([u8; 16], i64), RandomState>;

/// The index of one database, shared by the stores (connections) of a process that write it.
pub type SharedIndex = Arc<Mutex<RecordIndex>>;

/// How many tables the keys are spread over: enough that every core has tables to fill and that
/// one table's growth is a small part of the whole.
const SHARDS: usize = 16;

/// Keys whose first slots are read together before they are looked up ([`RecordIndex::warm`]) or
/// added ([`DedupIndex::warm`]).
pub(crate) const WARM_AHEAD: usize = 16;

/// Fewer new keys than this are added on one thread.
const SHARDED_FROM: usize = 16_384;

/// A new key for [`RecordIndex::added`]: its hash ([`RecordIndex::hash`]), host, id and fingerprint.
pub(crate) type NewKey<'a> = (u64, &'a str, &'a str, [u8; 16]);

/// Stored keys, and how far into the segments they go.
pub struct RecordIndex {
    /// Key `k` is in table `shard(hash(k))`; every table has the same hasher.
    shards: Vec<DedupIndex>,
    /// The last segment id read into the tables.
    seen: i64,
    /// New keys announced by [`Self::expect`], to make room for once the index is caught up.
    expected: usize,
}

impl Default for RecordIndex {
    fn default() -> RecordIndex {
        RecordIndex::new()
    }
}

/// A batch location for the index (`u64`) from a batch column (`-1` before the log existed).
fn location(batch: i64) -> u64 {
    u64::try_from(batch).unwrap_or(u64::MAX)
}

/// The batch column of an index location.
fn batch_of(location: u64) -> i64 {
    i64::try_from(location).unwrap_or(-1)
}

/// The table of a key's hash: its high bits, as the tables use the low ones to place the key.
fn shard(hash: u64) -> usize {
    usize::try_from(hash >> 60).unwrap_or(0) % SHARDS
}

impl RecordIndex {
    /// An index that has read nothing yet; the first ingest loads it.
    pub fn new() -> RecordIndex {
        // A random seed (the std library's per-process keys) against crafted ids flooding a bucket.
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        RecordIndex { shards: (0..SHARDS).map(|_| DedupIndex::new(seed)).collect(), seen: 0, expected: 0 }
    }

    /// A new index to share between stores of one database.
    pub fn shared() -> SharedIndex {
        Arc::new(Mutex::new(RecordIndex::new()))
    }

    /// The hash of a key, randomly seeded: what [`Self::get`] and [`Self::added`] take, and good
    /// for any table of the keys of a batch.
    pub(crate) fn hash(&self, host: &str, id: &str) -> u64 {
        self.shards[0].hash_key(host, id)
    }

    /// Reads the segments committed since the last one seen. Called with the write lock held.
    pub(crate) fn catch_up(&mut self, sql: &mut impl Sql) -> Result<(), StoreError> {
        let (shards, seen) = (&mut self.shards, &mut self.seen);
        segments::keys_after(sql, *seen, &mut |segment, host, batch, bytes| {
            for (id, fingerprint) in segments::keys(segment, bytes)? {
                let hash = shards[0].hash_key(host, id);
                if let Seen::Conflict { .. } = shards[shard(hash)].offer_hashed(hash, host, id, fingerprint, location(batch)) {
                    return Err(StoreError::Corrupt {
                        what: format!("record {id} of host {host}"),
                        detail: format!("segment {segment} holds it with values other than those stored before"),
                    });
                }
            }
            *seen = segment;
            Ok(())
        })
    }

    /// Announces about `keys` new keys to come ([`crate::Store::expect_records`]): the next
    /// ingest, once caught up, makes room for them at once.
    pub(crate) fn expect(&mut self, keys: usize) {
        self.expected = keys;
    }

    /// Makes room for the keys announced, if any. Called after [`Self::catch_up`], so the room
    /// is on top of every stored key. Each table takes its share without growing, even early
    /// ([`DedupIndex::reserve_room`]): it is allocated once, where growing to the same size by
    /// doubling allocates and fills every smaller table on the way.
    pub(crate) fn make_room(&mut self) {
        let each = std::mem::take(&mut self.expected).div_ceil(SHARDS);
        if each > 0 {
            self.shards.par_iter_mut().for_each(|table| table.reserve_room(each));
        }
    }

    /// The fingerprint and batch of a stored record, by the key's [`Self::hash`]: committed, or
    /// stored by an earlier batch of the group (`pending`).
    pub(crate) fn get(&self, pending: &Pending<'_>, hash: u64, host: &str, id: &str) -> Option<([u8; 16], i64)> {
        if let Some(found) = pending.get(&(host, id)) {
            return Some(*found);
        }
        self.shards[shard(hash)].get_hashed(hash, host, id).map(|(fingerprint, at)| (fingerprint, batch_of(at)))
    }

    /// Reads the first table slots of keys about to be looked up, by their [`Self::hash`], in
    /// loads that do not wait for each other ([`DedupIndex::warm`]).
    pub(crate) fn warm(&self, hashes: impl Iterator<Item = u64>) {
        for hash in hashes {
            self.shards[shard(hash)].warm(std::iter::once(hash));
        }
    }

    /// Adds a committed batch's new records, stored in segments up to `last_segment`: each table
    /// its own keys, in batch order, the tables on every core.
    pub(crate) fn added(&mut self, batch: i64, records: &[NewKey<'_>], last_segment: i64) {
        let mut by_shard: Vec<Vec<&NewKey<'_>>> = vec![Vec::new(); SHARDS];
        for key in records {
            by_shard[shard(key.0)].push(key);
        }
        // A few thousand keys are added quicker on one thread than handed out.
        let tables_per_task = if records.len() < SHARDED_FROM { SHARDS } else { 1 };
        self.shards.par_iter_mut().zip(by_shard).with_min_len(tables_per_task).for_each(|(table, keys)| {
            for (n, &&(hash, host, id, fingerprint)) in keys.iter().enumerate() {
                if n % WARM_AHEAD == 0 {
                    table.warm(keys.iter().skip(n + WARM_AHEAD).take(WARM_AHEAD).map(|k| k.0));
                }
                table.offer_hashed(hash, host, id, fingerprint, location(batch));
            }
        });
        // The tables fill at the same rate; one a batch grows ahead of time, so their growths
        // (each a fresh table of zeroed memory: 64 MiB for the sixteen at a million keys) come
        // batch after batch instead of together in one batch that would wait for all of them.
        let _grown = self.shards.iter_mut().any(DedupIndex::grow_early);
        self.seen = self.seen.max(last_segment);
    }

    /// Runs `commit`, which commits `batches` (each its batch, new keys and last segment, as
    /// [`Self::added`] takes them), and adds their keys meanwhile on the other cores: the commit
    /// mostly waits, for the disk or the server. Nobody sees the keys before this returns, as
    /// the caller holds the index's lock; if the commit fails, the index starts again empty, and
    /// the next ingest reads it back from the segments, which are the truth.
    pub(crate) fn added_while<E>(
        &mut self,
        batches: &[(i64, &[NewKey<'_>], i64)],
        commit: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        let index = &mut *self;
        let committed = rayon::in_place_scope(|scope| {
            scope.spawn(|_| {
                for &(batch, keys, last_segment) in batches {
                    index.added(batch, keys, last_segment);
                }
            });
            commit()
        });
        if committed.is_err() {
            *self = RecordIndex::new();
        }
        committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids `{prefix}0`, `{prefix}1`, …
    fn numbered(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|i| format!("{prefix}{i}")).collect()
    }

    /// Host h1's keys of `ids`, each with the same fingerprint.
    fn keys_of<'a>(index: &RecordIndex, ids: &'a [String], fingerprint: u8) -> Vec<NewKey<'a>> {
        ids.iter().map(|id| (index.hash("h1", id), "h1", id.as_str(), [fingerprint; 16])).collect()
    }

    #[test]
    fn keys_added_over_the_tables_are_found_with_their_batch() {
        let mut index = RecordIndex::new();
        let ids = numbered("r", 20_000);
        let keys = keys_of(&index, &ids, 1);
        let pending = Pending::default();
        assert_eq!(index.get(&pending, keys[0].0, "h1", "r0"), None);
        index.added(7, &keys[..10_000], 3);
        index.added(8, &keys[10_000..], 5);
        assert_eq!(index.seen, 5);
        // Every table took some of the keys, and each key is found, with the batch that stored it.
        assert!(index.shards.iter().all(|table| !table.is_empty()), "keys are spread over every table");
        assert_eq!(index.shards.iter().map(DedupIndex::len).sum::<usize>(), 20_000);
        for (n, &(hash, host, id, _)) in keys.iter().enumerate() {
            assert_eq!(index.get(&pending, hash, host, id), Some(([1; 16], if n < 10_000 { 7 } else { 8 })), "{id}");
        }
        // Another host's record with the same id is another key.
        assert_eq!(index.get(&pending, index.hash("h2", "r0"), "h2", "r0"), None);
        // A key added again (a segment re-placed) keeps its first batch; a pending key wins.
        index.added(9, &keys[..1], 6);
        assert_eq!(index.get(&pending, keys[0].0, "h1", "r0"), Some(([1; 16], 7)));
        let pending: Pending<'_> = [(("h1", "r0"), ([2; 16], 10))].into_iter().collect();
        assert_eq!(index.get(&pending, keys[0].0, "h1", "r0"), Some(([2; 16], 10)));
    }

    #[test]
    fn keys_added_while_committing_stay_only_if_the_commit_does() {
        let mut index = RecordIndex::new();
        let ids = numbered("r", 20_000);
        let keys = keys_of(&index, &ids, 1);
        let pending = Pending::default();
        let committed: Result<(), &str> = index.added_while(&[(3, &keys[..10_000], 4), (5, &keys[10_000..], 6)], || Ok(()));
        assert_eq!(committed, Ok(()));
        assert_eq!(index.seen, 6);
        assert!(keys.iter().all(|&(hash, host, id, _)| index.get(&pending, hash, host, id).is_some()));
        // A commit that fails leaves an index that knows nothing, not one that knows keys the
        // database does not hold: the next ingest reads it all back from the segments.
        let more = numbered("s", 100);
        let lost = keys_of(&index, &more, 2);
        let failed = index.added_while(&[(7, &lost, 8)], || Err("the disk is full"));
        assert_eq!(failed, Err("the disk is full"));
        assert_eq!((index.seen, index.shards.iter().map(DedupIndex::len).sum::<usize>()), (0, 0));
        assert!(lost.iter().all(|&(_, host, id, _)| index.get(&pending, index.hash(host, id), host, id).is_none()));
    }

    #[test]
    fn keys_announced_are_taken_without_growing() {
        let mut index = RecordIndex::new();
        let ids = numbered("r", 40_000);
        let keys = keys_of(&index, &ids, 1);
        index.added(1, &keys[..1_000], 1);
        let room = |index: &RecordIndex| index.shards.iter().map(DedupIndex::room).collect::<Vec<_>>();
        assert!(room(&index).iter().sum::<usize>() < 39_000, "a small index has no room for the rest yet");
        index.expect(39_000);
        index.make_room();
        let before = room(&index);
        // Every table can take its share of the keys, and taking them grows none: each table's
        // room shrinks by exactly the keys it took.
        index.added(2, &keys[1_000..], 2);
        let after = room(&index);
        let mut taken = [0usize; SHARDS];
        for key in &keys[1_000..] {
            taken[shard(key.0)] += 1;
        }
        for (table, ((before, after), taken)) in before.iter().zip(&after).zip(taken).enumerate() {
            assert_eq!(*before, after + taken, "table {table} grew");
        }
        assert_eq!(index.expected, 0, "the room is made once");
        let pending = Pending::default();
        assert!(keys.iter().all(|&(hash, host, id, _)| index.get(&pending, hash, host, id).is_some()));
    }
}
