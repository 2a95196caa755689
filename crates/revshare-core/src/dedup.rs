//! The idempotency index: `(host, id)` identifies a record (SPEC §3).
//!
//! The index keeps, per key, the first location the record was seen at and a 128-bit fingerprint
//! of its content ([`DedupIndex::fingerprint`], a keyed hash of the normalised field values, so
//! `1.50` and `1.5`, or the same instant at two offsets, agree). A record seen again is a
//! duplicate when the fingerprints agree and a conflict otherwise. The fingerprint is not a
//! cryptographic digest: its key is secret to the process, and a stored system of record (which
//! must never merge two different records) compares the stored fields instead. Keys are stored exactly (in one arena, not as
//! hashes), so two different ids never merge; memory is about 50 bytes a record plus the key text.
//!
//! The hasher's seed comes from the caller, which keeps this module free of randomness while
//! letting the edge pick a random seed against hash flooding.

use hashbrown::HashTable;

use crate::usage::UsageRecord;

/// What the index says about a record offered to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time: the record is kept.
    New,
    /// The same record was seen first at `first`.
    Duplicate { first: u64 },
    /// A different record with the same `(host, id)` was seen first at `first`.
    Conflict { first: u64 },
}

#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    key_start: usize,
    key_len: u32,
    fingerprint: [u8; 16],
    location: u64,
}

/// Maps `(host, id)` to the first location and fingerprint.
pub struct DedupIndex {
    table: HashTable<Entry>,
    keys: Vec<u8>,
    hasher: foldhash::quality::FixedState,
}

impl DedupIndex {
    pub fn new(seed: u64) -> DedupIndex {
        DedupIndex { table: HashTable::new(), keys: Vec::new(), hasher: foldhash::quality::FixedState::with_seed(seed) }
    }

    /// A 128-bit keyed hash of everything a record says, by value.
    pub fn fingerprint(&self, record: &UsageRecord<'_>) -> [u8; 16] {
        use std::hash::{BuildHasher, Hash, Hasher};
        let content = (
            (&*record.host, &*record.id, &*record.model, &*record.use_case, &*record.region),
            (record.time, record.requests, record.input_tokens, record.output_tokens),
            (record.revenue, record.currency),
        );

        let mut high = self.hasher.build_hasher();
        high.write_u8(0x5a); // a different stream for the other half
        content.hash(&mut high);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.hasher.hash_one(content).to_le_bytes());
        out[8..].copy_from_slice(&high.finish().to_le_bytes());
        out
    }

    /// The hash of a key, for callers that shard keys over several indexes.
    pub fn hash_key(&self, host: &str, id: &str) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.hasher.build_hasher();
        h.write(host.as_bytes());
        h.write_u8(0xff); // cannot occur in UTF-8, so ("ab","c") and ("a","bc") differ
        h.write(id.as_bytes());
        h.finish()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Offers a record; `location` is what a later duplicate or conflict will name (a line).
    pub fn offer(&mut self, host: &str, id: &str, fingerprint: [u8; 16], location: u64) -> Seen {
        let hash = self.hash_key(host, id);
        self.offer_hashed(hash, host, id, fingerprint, location)
    }

    /// [`Self::offer`] with the hash from [`Self::hash_key`] of an index with the same seed.
    pub fn offer_hashed(&mut self, hash: u64, host: &str, id: &str, fingerprint: [u8; 16], location: u64) -> Seen {
        let keys = &self.keys;
        // The full hash first: the key text lives elsewhere in memory, so look at it only for a
        // real candidate. One probe serves both the lookup and the insert.
        let key_matches = |e: &Entry| {
            e.hash == hash && {
                let stored = stored_key(keys, e);
                stored.len() == host.len() + 1 + id.len()
                    && stored[..host.len()] == *host.as_bytes()
                    && stored[host.len()] == 0xff
                    && stored[host.len() + 1..] == *id.as_bytes()
            }
        };
        match self.table.entry(hash, key_matches, |e| e.hash) {
            hashbrown::hash_table::Entry::Occupied(found) => {
                let entry = found.get();
                if entry.fingerprint == fingerprint {
                    Seen::Duplicate { first: entry.location }
                } else {
                    Seen::Conflict { first: entry.location }
                }
            }
            hashbrown::hash_table::Entry::Vacant(slot) => {
                let key_start = self.keys.len();
                let key_len = u32::try_from(host.len() + 1 + id.len()).unwrap_or(u32::MAX);
                slot.insert(Entry { hash, key_start, key_len, fingerprint, location });
                self.keys.extend_from_slice(host.as_bytes());
                self.keys.push(0xff);
                self.keys.extend_from_slice(id.as_bytes());
                Seen::New
            }
        }
    }
}

fn stored_key<'k>(keys: &'k [u8], e: &Entry) -> &'k [u8] {
    let len = usize::try_from(e.key_len).unwrap_or(usize::MAX);
    keys.get(e.key_start..e.key_start.saturating_add(len)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_conflicts() {
        let mut index = DedupIndex::new(7);
        assert_eq!(index.offer("h1", "a", [1; 16], 1), Seen::New);
        assert_eq!(index.offer("h2", "a", [2; 16], 2), Seen::New);
        assert_eq!(index.offer("h1", "a", [1; 16], 3), Seen::Duplicate { first: 1 });
        assert_eq!(index.offer("h1", "a", [9; 16], 4), Seen::Conflict { first: 1 });
        assert_eq!(index.offer("h1a", "", [1; 16], 5), Seen::New);
        assert_eq!(index.len(), 3);
        // Growth keeps every key findable.
        for i in 0..10_000u64 {
            assert_eq!(index.offer("h3", &i.to_string(), [0; 16], i), Seen::New);
        }
        for i in 0..10_000u64 {
            assert_eq!(index.offer("h3", &i.to_string(), [0; 16], 0), Seen::Duplicate { first: i });
        }
    }
}
