//! The idempotency index: `(host, id)` identifies a record (SPEC §3).
//!
//! The index keeps, per key, the first location the record was seen at and a 128-bit fingerprint
//! of its content ([`DedupIndex::fingerprint`], a keyed hash of the normalised field values, so
//! `1.50` and `1.5`, or the same instant at two offsets, agree). A record seen again is a
//! duplicate when the fingerprints agree and a conflict otherwise. The fingerprint is not a
//! cryptographic digest: its key is secret to the process, and a stored system of record (which
//! must never merge two different records) compares the stored fields instead.
//!
//! Keys are stored exactly, so two different ids never merge. The table is open addressing with
//! linear probing over 16-byte slots (key hash, arena offset), kept at most 5/8 full: a new key
//! costs one cache miss, where a general-purpose map spends two (control bytes, then the entry),
//! and small slots keep the table's pages few — at ten million records those misses are most of
//! the work. The fingerprint, the first location and the key text sit in one append-only arena,
//! read only when a slot's full 64-bit hash matches. Growing rehashes from the stored hashes,
//! never touching the arena.
//!
//! The hasher's seed comes from the caller, which keeps this module free of randomness while
//! letting the edge pick a random seed against hash flooding.

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

/// A slot of the table; `hash == 0` marks it empty (a real hash of 0 is stored as 1).
#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u64,
    /// Where this key's `[fingerprint: 16][location: u64 LE][key length: u8][host 0xff id]`
    /// starts in the arena.
    at: usize,
}

/// Maps `(host, id)` to the first location and fingerprint.
pub struct DedupIndex {
    slots: Vec<Slot>,
    len: usize,
    arena: Vec<u8>,
    hasher: foldhash::quality::FixedState,
}

impl DedupIndex {
    pub fn new(seed: u64) -> DedupIndex {
        DedupIndex { slots: Vec::new(), len: 0, arena: Vec::new(), hasher: foldhash::quality::FixedState::with_seed(seed) }
    }

    /// Makes room for `more` keys, so a caller that can estimate its input avoids regrowing.
    pub fn reserve(&mut self, more: usize) {
        self.grow_to(self.len.saturating_add(more));
        self.arena.reserve(more.saturating_mul(48));
    }

    /// Ensures `keys` keys fit under the 5/8 load limit.
    fn grow_to(&mut self, keys: usize) {
        let needed = keys.saturating_mul(8) / 5 + 1;
        if needed <= self.slots.len() {
            return;
        }
        let size = needed.next_power_of_two().max(64);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        let mask = size - 1;
        for slot in old.into_iter().filter(|s| s.hash != 0) {
            let mut i = bucket(slot.hash, mask);
            while self.slots[i].hash != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
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
        hash_parts(&self.hasher, host.as_bytes(), id.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offers a record; `location` is what a later duplicate or conflict will name (a line).
    pub fn offer(&mut self, host: &str, id: &str, fingerprint: [u8; 16], location: u64) -> Seen {
        let hash = self.hash_key(host, id);
        self.offer_hashed(hash, host, id, fingerprint, location)
    }

    /// Reads the first slot each of `hashes` will probe, so that a caller about to offer those
    /// keys pays their cache misses together rather than one after another: these loads do not
    /// depend on each other, so the processor overlaps them, where the probes of `offer` wait
    /// on one miss at a time. Safe code has no prefetch instruction; a batch of plain loads is
    /// the next best thing.
    pub fn warm(&self, hashes: impl Iterator<Item = u64>) {
        let Some(mask) = self.slots.len().checked_sub(1) else {
            return;
        };
        let touched = hashes.fold(0u64, |acc, hash| acc ^ self.slots[bucket(hash.max(1), mask)].hash);
        std::hint::black_box(touched);
    }

    /// [`Self::offer`] with the hash from [`Self::hash_key`] of an index with the same seed.
    pub fn offer_hashed(&mut self, hash: u64, host: &str, id: &str, fingerprint: [u8; 16], location: u64) -> Seen {
        let hash = hash.max(1);
        self.grow_to(self.len + 1);
        let i = match self.probe(hash, host, id) {
            Ok(at) => {
                let first = stored_location(&self.arena, at);
                let same = self.arena.get(at..at + 16) == Some(&fingerprint[..]);
                return if same { Seen::Duplicate { first } } else { Seen::Conflict { first } };
            }
            Err(empty) => empty,
        };
        self.slots[i] = Slot { hash, at: self.arena.len() };
        self.len += 1;
        // Ids are at most 128 bytes and hosts 63, so the length fits a byte.
        let key_len = u8::try_from(host.len() + 1 + id.len()).unwrap_or(u8::MAX);
        self.arena.extend_from_slice(&fingerprint);
        self.arena.extend_from_slice(&location.to_le_bytes());
        self.arena.push(key_len);
        self.arena.extend_from_slice(host.as_bytes());
        self.arena.push(0xff);
        self.arena.extend_from_slice(id.as_bytes());
        Seen::New
    }

    /// The fingerprint and first location of a key, without offering it.
    pub fn get(&self, host: &str, id: &str) -> Option<([u8; 16], u64)> {
        if self.slots.is_empty() {
            return None;
        }
        let at = self.probe(self.hash_key(host, id).max(1), host, id).ok()?;
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(self.arena.get(at..at + 16)?);
        Some((fingerprint, stored_location(&self.arena, at)))
    }

    /// Where a key's entry starts in the arena (`Ok`), or the empty slot it would take (`Err`).
    /// The table must have a slot (it is never full: at most 5/8 of it is used).
    fn probe(&self, hash: u64, host: &str, id: &str) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = bucket(hash, mask);
        loop {
            let slot = self.slots[i];
            if slot.hash == 0 {
                return Err(i);
            }
            if slot.hash == hash {
                let (stored_host, stored_id) = stored_key(&self.arena, slot.at);
                if stored_host == host.as_bytes() && stored_id == id.as_bytes() {
                    return Ok(slot.at);
                }
            }
            i = (i + 1) & mask;
        }
    }
}

/// The first slot to probe: the hash's low bits (foldhash mixes every bit into them).
fn bucket(hash: u64, mask: usize) -> usize {
    usize::try_from(hash & u64::try_from(mask).unwrap_or(u64::MAX)).unwrap_or(0)
}

fn hash_parts(hasher: &foldhash::quality::FixedState, host: &[u8], id: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = hasher.build_hasher();
    h.write(host);
    h.write_u8(0xff); // cannot occur in UTF-8, so ("ab","c") and ("a","bc") differ
    h.write(id);
    h.finish()
}

/// The host and id stored for an entry.
fn stored_key(arena: &[u8], at: usize) -> (&[u8], &[u8]) {
    let len = arena.get(at + 24).map_or(0, |l| usize::from(*l));
    let key = arena.get(at + 25..at + 25 + len).unwrap_or_default();
    match key.iter().position(|b| *b == 0xff) {
        Some(split) => (&key[..split], &key[split + 1..]),
        None => (key, &[]),
    }
}

fn stored_location(arena: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(arena.get(at + 16..at + 24).unwrap_or(&[0; 8]));
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_conflicts() {
        let mut index = DedupIndex::new(7);
        assert_eq!(index.get("h1", "a"), None, "an empty index finds nothing");
        // Warming reads only, and an empty table has nothing to read.
        index.warm([0, 1, u64::MAX].into_iter());
        assert_eq!(index.offer("h1", "a", [1; 16], 1), Seen::New);
        index.warm([0, index.hash_key("h1", "a"), u64::MAX].into_iter());
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

    proptest::proptest! {
        /// The table agrees with a plain map on any sequence of offers, through growth.
        #[test]
        fn behaves_like_a_map(offers in proptest::collection::vec((0u8..3, 0u16..400, 0u8..3), 0..3000), reserve in 0usize..500) {
            let mut index = DedupIndex::new(42);
            index.reserve(reserve);
            let mut model: std::collections::HashMap<(u8, u16), ([u8; 16], u64)> = std::collections::HashMap::new();
            for (location, (host, id, content)) in (0u64..).zip(offers) {
                let fingerprint = [content; 16];
                let (h, r) = (format!("h{host}"), format!("r{id}"));
                proptest::prop_assert_eq!(index.get(&h, &r), model.get(&(host, id)).copied());
                let got = index.offer(&h, &r, fingerprint, location);
                let want = match model.get(&(host, id)) {
                    None => {
                        model.insert((host, id), (fingerprint, location));
                        Seen::New
                    }
                    Some((f, first)) if *f == fingerprint => Seen::Duplicate { first: *first },
                    Some((_, first)) => Seen::Conflict { first: *first },
                };
                proptest::prop_assert_eq!(got, want);
            }
            proptest::prop_assert_eq!(index.len(), model.len());
        }
    }
}
