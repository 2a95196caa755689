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
//! The index is only ever added to after a commit: an ingest looks keys up without changing the
//! index, and its new keys are added once its transaction has committed ([`RecordIndex::added`]),
//! so a refused or failed batch leaves no trace here either. A key offered again with the same
//! fingerprint (a segment replaced by re-placement) changes nothing.
//!
//! A stored record's location in the index is its batch's log leaf, which re-placement keeps,
//! so the record can be found again (`segments::find`) to name the fields of a conflict.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use foldhash::fast::RandomState;

use revshare_core::dedup::{DedupIndex, Seen};

use crate::error::StoreError;
use crate::segments;
use crate::sql::Sql;

/// Keys stored by the earlier batches of a group, not committed yet and so not in the index.
pub(crate) type Pending<'b> = HashMap<(&'b str, &'b str), ([u8; 16], i64), RandomState>;

/// The index of one database, shared by the stores (connections) of a process that write it.
pub type SharedIndex = Arc<Mutex<RecordIndex>>;

/// Stored keys, and how far into the segments they go.
pub struct RecordIndex {
    keys: DedupIndex,
    /// The last segment id read into `keys`.
    seen: i64,
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

impl RecordIndex {
    /// An index that has read nothing yet; the first ingest loads it.
    pub fn new() -> RecordIndex {
        // A random seed (the std library's per-process keys) against crafted ids flooding a bucket.
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        RecordIndex { keys: DedupIndex::new(seed), seen: 0 }
    }

    /// A new index to share between stores of one database.
    pub fn shared() -> SharedIndex {
        Arc::new(Mutex::new(RecordIndex::new()))
    }

    /// Reads the segments committed since the last one seen. Called with the write lock held.
    pub(crate) fn catch_up(&mut self, sql: &mut impl Sql) -> Result<(), StoreError> {
        let (keys, seen) = (&mut self.keys, &mut self.seen);
        segments::keys_after(sql, *seen, &mut |segment, host, batch, bytes| {
            for (id, fingerprint) in segments::keys(segment, bytes)? {
                if let Seen::Conflict { .. } = keys.offer(host, id, fingerprint, location(batch)) {
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

    /// The fingerprint and batch of a stored record: committed, or stored by an earlier batch of
    /// the group (`pending`).
    pub(crate) fn get(&self, pending: &Pending<'_>, host: &str, id: &str) -> Option<([u8; 16], i64)> {
        if let Some(found) = pending.get(&(host, id)) {
            return Some(*found);
        }
        self.keys.get(host, id).map(|(fingerprint, at)| (fingerprint, batch_of(at)))
    }

    /// Adds a committed batch's new records (host, id, fingerprint), stored in segments up to
    /// `last_segment`.
    pub(crate) fn added(&mut self, batch: i64, records: &[(&str, &str, [u8; 16])], last_segment: i64) {
        for &(host, id, fingerprint) in records {
            self.keys.offer(host, id, fingerprint, location(batch));
        }
        self.seen = self.seen.max(last_segment);
    }
}
