//! The idempotency index: `(host, id)` identifies a record (SPEC §3).
//!
//! The index keeps, per key, the first location the record was seen at and a 128-bit fingerprint
//! of its content, given by the caller: [`DedupIndex::fingerprint`] (a keyed hash of the
//! normalised field values, so `1.50` and `1.5`, or the same instant at two offsets, agree), or,
//! where the record's SHA-256 is computed anyway (`settle`'s selected records, the store), the
//! first half of that digest. A record seen again is a
//! duplicate when the fingerprints agree and a conflict otherwise. The fingerprint is not a
//! cryptographic digest: its key is secret to the process, and a stored system of record (which
//! must never merge two different records) compares the stored fields instead.
//!
//! Keys are stored exactly, so two different ids never merge. The table is open addressing with
//! linear probing over 16-byte slots (key hash, arena offset), kept at most 5/8 full: a new key
//! costs one cache miss, where a general-purpose map spends two (control bytes, then the entry),
//! and small slots keep the table's pages few — at ten million records those misses are most of
//! the work. The fingerprint, the first location and the key text sit in an append-only arena of
//! fixed-size chunks, read only when a slot's full 64-bit hash matches. Growing rehashes from the
//! stored hashes, never touching the arena, and the arena grows by a chunk, never copying.
//!
//! Growth is incremental: when the table reaches 5/8 full, a table twice its size is allocated
//! and every later offer moves the next [`MOVE_PER_OFFER`] slots of the old one across, so no
//! single offer pays for rehashing the whole index (growing all at once paused a server's ingest
//! for up to a quarter of a second at three million keys, `docs/BENCHMARKS.md`). The move runs
//! cyclically from an empty slot and stops at one, so no probe chain is split between the tables:
//! a key whose home slot in the old table has moved is in the new table; one whose home is still
//! to move is looked for in the old table first. A new key whose probe in the old table ends in
//! the part still to move goes there, to be moved later (one whose probe runs past that part goes
//! to the new table), so the new table's pages are first touched in the order of the move, a few
//! per thousand offers, rather than all at once by keys landing anywhere in it (each fresh page
//! costs the system a fault and zeroing). [`DedupIndex::reserve`] grows at once.
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

/// A slot of the table: (key hash, where the key's entry starts in the [`Arena`]). A hash of 0
/// marks the slot empty (a real hash of 0 is stored as 1). A tuple rather than a struct, so a new
/// table is allocated zeroed (pages the system hands over lazily) instead of written slot by slot,
/// which took 45–65 ms for a 128 MiB table under mimalloc.
type Slot = (u64, usize);

/// Entries `[fingerprint: 16][location: u64 LE][key length: u16 LE][host 0xff id]`, appended to
/// chunks of [`CHUNK`] bytes; an entry never straddles two. A key is far shorter than 64 KiB (ids
/// are at most 128 bytes, party ids 63); a longer one would be cut there.
#[derive(Default)]
struct Arena {
    chunks: Vec<Vec<u8>>,
}

/// An arena chunk's size: a power of two, so an offset splits into chunk and position by shifts.
const CHUNK: usize = 1 << 20;

impl Arena {
    /// Appends an entry and returns where it starts.
    fn push(&mut self, fingerprint: &[u8; 16], location: u64, host: &str, id: &str) -> usize {
        let key_len = u16::try_from(host.len() + 1 + id.len()).unwrap_or(u16::MAX);
        let size = 26 + usize::from(key_len);
        if self.chunks.last().is_none_or(|chunk| chunk.len() + size > CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[index];
        let at = index * CHUNK + chunk.len();
        chunk.extend_from_slice(fingerprint);
        chunk.extend_from_slice(&location.to_le_bytes());
        chunk.extend_from_slice(&key_len.to_le_bytes());
        chunk.extend_from_slice(host.as_bytes());
        chunk.push(0xff);
        chunk.extend_from_slice(id.as_bytes());
        chunk.truncate(at % CHUNK + size);
        at
    }

    /// The entry at `at`: fingerprint, first location, host and id.
    fn entry(&self, at: usize) -> ([u8; 16], u64, &[u8], &[u8]) {
        let chunk = self.chunks.get(at / CHUNK).map_or(&[][..], Vec::as_slice);
        let entry = chunk.get(at % CHUNK..).unwrap_or_default();
        let mut fingerprint = [0u8; 16];
        let mut location = [0u8; 8];
        if let (Some(f), Some(l)) = (entry.get(..16), entry.get(16..24)) {
            fingerprint.copy_from_slice(f);
            location.copy_from_slice(l);
        }
        let len = entry.get(24..26).map_or(0, |l| usize::from(u16::from_le_bytes([l[0], l[1]])));
        let key = entry.get(26..26 + len).unwrap_or_default();
        let (host, id) = match key.iter().position(|b| *b == 0xff) {
            Some(split) => (&key[..split], &key[split + 1..]),
            None => (key, &[][..]),
        };
        (fingerprint, u64::from_le_bytes(location), host, id)
    }
}

/// Old slots moved to the new table per offer while the index grows: two cache lines of the old
/// table. So the move ends within an eighth of the old table's size in offers, and with a table
/// growing at 5/8 full into one twice its size, the new one is then at most 3/8 full and the old
/// one, which takes the keys whose chains end in its unmoved part, at most 3/4.
const MOVE_PER_OFFER: usize = 8;

/// Maps `(host, id)` to the first location and fingerprint.
pub struct DedupIndex {
    slots: Vec<Slot>,
    /// The smaller table whose keys are being moved into `slots`, while the index grows.
    growing: Option<Move>,
    len: usize,
    arena: Arena,
    hasher: foldhash::quality::FixedState,
}

/// An old table and how far its slots have been moved into the new one.
struct Move {
    slots: Vec<Slot>,
    /// An empty slot, where the move started.
    start: usize,
    /// How many slots from `start` on (cyclically) have been moved; the slot after them is empty,
    /// unless all have.
    moved: usize,
}

impl Move {
    /// Whether slot `at` of the old table is in the part still to move.
    fn holds(&self, at: usize) -> bool {
        let size = self.slots.len();
        (at + size - self.start) % size >= self.moved
    }
}

impl DedupIndex {
    pub fn new(seed: u64) -> DedupIndex {
        DedupIndex {
            slots: Vec::new(),
            growing: None,
            len: 0,
            arena: Arena::default(),
            hasher: foldhash::quality::FixedState::with_seed(seed),
        }
    }

    /// Makes room for `more` keys at once, so a caller that can estimate its input avoids growing
    /// while it offers.
    pub fn reserve(&mut self, more: usize) {
        self.move_slots(usize::MAX);
        let keys = self.len.saturating_add(more);
        if capacity(self.slots.len()) < keys {
            self.start_growing(keys.saturating_mul(8) / 5 + 1);
            self.move_slots(usize::MAX);
        }
    }

    /// How many more keys the index takes before it next grows (early, [`Self::grow_early`], or
    /// full).
    pub fn room(&self) -> usize {
        (capacity(self.slots.len()) / 8 * 7).saturating_sub(self.len)
    }

    /// Makes [`Self::room`] for at least `more` keys at once: a caller that grows early and can
    /// count what is coming allocates its table once, for every key held and to come.
    pub fn reserve_room(&mut self, more: usize) {
        let keys = self.len.saturating_add(more);
        // A capacity of `keys * 8 / 7` and a little over keeps `keys` below 7/8 of it, whatever
        // the rounding.
        self.reserve((keys.saturating_mul(8) / 7).saturating_add(8).saturating_sub(self.len));
    }

    /// Starts growing now if the table is past 7/8 of the fill at which it would (and is not
    /// growing already); whether it did. A caller holding many tables, which fill at the same
    /// rate and so would all grow at once, grows them one at a time ahead of that moment: each
    /// growth allocates a table (zeroing its memory when the allocator hands back used pages),
    /// and paid all at once that is one long pause.
    pub fn grow_early(&mut self) -> bool {
        if self.growing.is_some() || self.slots.is_empty() || self.len < capacity(self.slots.len()) / 8 * 7 {
            return false;
        }
        self.start_growing(self.slots.len() * 2);
        true
    }

    /// Makes room for one more key: moves the next slots of a growing index, or starts growing
    /// when the table is full.
    fn make_room(&mut self) {
        if self.growing.is_some() {
            self.move_slots(MOVE_PER_OFFER);
        }
        if capacity(self.slots.len()) <= self.len {
            // Only an index that was not growing gets here (a move ends well before the new table
            // fills); finishing one first keeps that true whatever the constants.
            self.move_slots(usize::MAX);
            self.start_growing(self.slots.len() * 2);
        }
    }

    /// Puts a table of at least `slots` slots in place; the current one becomes the one to move.
    fn start_growing(&mut self, slots: usize) {
        let size = slots.next_power_of_two().max(64);
        let old = std::mem::replace(&mut self.slots, vec![(0, 0); size]);
        // A table is never full, so an empty slot exists; an empty table has nothing to move.
        if let Some(start) = old.iter().position(|s| s.0 == 0) {
            self.growing = Some(Move { slots: old, start, moved: 0 });
        }
    }

    /// Moves at least `count` slots of the old table (or all that are left) into the new one, and
    /// on to the next empty slot.
    fn move_slots(&mut self, count: usize) {
        let Some(growing) = &mut self.growing else {
            return;
        };
        let (size, mask) = (growing.slots.len(), self.slots.len() - 1);
        let mut done = 0;
        while growing.moved < size {
            let slot = growing.slots[(growing.start + growing.moved) % size];
            if slot.0 == 0 && done >= count {
                break;
            }
            if slot.0 != 0 {
                let mut i = bucket(slot.0, mask);
                while self.slots[i].0 != 0 {
                    i = (i + 1) & mask;
                }
                self.slots[i] = slot;
            }
            growing.moved += 1;
            done += 1;
        }
        if growing.moved == size {
            self.growing = None;
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
        let touched = hashes.fold(0u64, |acc, hash| {
            let hash = hash.max(1);
            let old = self.growing.as_ref().map_or(0, |growing| {
                let home = bucket(hash, growing.slots.len() - 1);
                if growing.holds(home) { growing.slots[home].0 } else { 0 }
            });
            acc ^ old ^ self.slots[bucket(hash, mask)].0
        });
        std::hint::black_box(touched);
    }

    /// [`Self::offer`] with the hash from [`Self::hash_key`] of an index with the same seed.
    pub fn offer_hashed(&mut self, hash: u64, host: &str, id: &str, fingerprint: [u8; 16], location: u64) -> Seen {
        let hash = hash.max(1);
        self.make_room();
        let vacant = match self.find(hash, host, id) {
            Ok(at) => {
                let (stored, first, ..) = self.arena.entry(at);
                return if stored == fingerprint { Seen::Duplicate { first } } else { Seen::Conflict { first } };
            }
            Err(vacant) => vacant,
        };
        let slot = (hash, self.arena.push(&fingerprint, location, host, id));
        match (vacant, &mut self.growing) {
            (Vacant::Old(i), Some(growing)) => growing.slots[i] = slot,
            (Vacant::New(i), _) | (Vacant::Old(i), None) => self.slots[i] = slot,
        }
        self.len += 1;
        Seen::New
    }

    /// The fingerprint and first location of a key, without offering it.
    pub fn get(&self, host: &str, id: &str) -> Option<([u8; 16], u64)> {
        self.get_hashed(self.hash_key(host, id), host, id)
    }

    /// [`Self::get`] with the hash from [`Self::hash_key`] of an index with the same seed.
    pub fn get_hashed(&self, hash: u64, host: &str, id: &str) -> Option<([u8; 16], u64)> {
        if self.slots.is_empty() {
            return None;
        }
        let at = self.find(hash.max(1), host, id).ok()?;
        let (fingerprint, first, ..) = self.arena.entry(at);
        Some((fingerprint, first))
    }

    /// Where a key's entry starts in the arena (`Ok`), or the empty slot it would take (`Err`).
    /// A table always has an empty slot: the new one is at most 3/8 full, the old one 3/4.
    fn find(&self, hash: u64, host: &str, id: &str) -> Result<usize, Vacant> {
        if let Some(growing) = &self.growing
            && growing.holds(bucket(hash, growing.slots.len() - 1))
        {
            match probe(&growing.slots, &self.arena, hash, host, id) {
                Ok(at) => return Ok(at),
                // The key would go into the old table, so it was never put into the new one.
                Err(i) if growing.holds(i) => return Err(Vacant::Old(i)),
                Err(_) => {}
            }
        }
        probe(&self.slots, &self.arena, hash, host, id).map_err(Vacant::New)
    }
}

/// Where a new key goes: an empty slot of the old table (growing) or of the current one.
#[derive(Clone, Copy)]
enum Vacant {
    Old(usize),
    New(usize),
}

/// [`DedupIndex::find`] in one table.
fn probe(slots: &[Slot], arena: &Arena, hash: u64, host: &str, id: &str) -> Result<usize, usize> {
    let mask = slots.len() - 1;
    let mut i = bucket(hash, mask);
    loop {
        let (slot_hash, at) = slots[i];
        if slot_hash == 0 {
            return Err(i);
        }
        if slot_hash == hash {
            let (_, _, stored_host, stored_id) = arena.entry(at);
            if stored_host == host.as_bytes() && stored_id == id.as_bytes() {
                return Ok(at);
            }
        }
        i = (i + 1) & mask;
    }
}

/// How many keys a table of `slots` slots holds under the 5/8 load limit.
fn capacity(slots: usize) -> usize {
    slots / 8 * 5
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

    #[test]
    fn room_made_is_taken_without_growing_even_early() {
        // Over small and large indexes, and few or many keys to come: the room is there, and
        // taking it grows nothing, early or full.
        for (held, more) in [(0, 1), (0, 5_000), (1_000, 39_000), (30_000, 1_000), (35_000, 5_000), (30_000, 30_000), (100, 0)] {
            let mut index = DedupIndex::new(11);
            for i in 0..held {
                assert_eq!(index.offer("h", &format!("k{i}"), [1; 16], 0), Seen::New);
            }
            index.reserve_room(more);
            assert!(index.room() >= more, "{held} held: room {} for {more}", index.room());
            let slots = index.slots.len();
            for i in held..held + more {
                assert_eq!(index.offer("h", &format!("k{i}"), [1; 16], 0), Seen::New);
                assert!(!index.grow_early(), "{held} held, {more} to come: grew early at {i}");
            }
            assert_eq!((index.slots.len(), index.growing.is_none()), (slots, true), "{held} held, {more} to come");
        }
    }

    #[test]
    fn keys_stay_findable_while_the_table_grows() {
        let mut index = DedupIndex::new(3);
        let mut moves = 0;
        for i in 0..50_000u64 {
            assert_eq!(index.offer("h", &i.to_string(), [1; 16], i), Seen::New);
            if let Some(growing) = &index.growing {
                moves += usize::from(growing.moved == 0);
                // Mid-move, old keys, new keys and absent keys are all answered right.
                for j in [0, i / 3, i / 2, i] {
                    assert_eq!(index.get("h", &j.to_string()), Some(([1; 16], j)), "key {j} after {i}");
                }
                assert_eq!(index.get("h", &(i + 1).to_string()), None);
            }
            // A growth moves a few slots per offer, so it ends long before the next one begins.
            assert!(index.len() <= capacity(index.slots.len()));
        }
        assert!(moves >= 8, "50,000 keys grow the table from 64 slots several times ({moves})");
        // Grown early, at 7/8 of the usual fill, it keeps every key and is not grown again mid-move.
        let mut index = DedupIndex::new(5);
        let mut early = 0;
        for i in 0..50_000u64 {
            assert_eq!(index.offer("h", &i.to_string(), [1; 16], i), Seen::New);
            let (slots, was_growing) = (index.slots.len(), index.growing.is_some());
            if index.grow_early() {
                early += 1;
                assert!(!was_growing && index.len() >= capacity(slots) / 8 * 7 && index.len() < capacity(slots));
                assert_eq!(index.slots.len(), slots * 2);
            }
            assert_eq!(index.get("h", &(i / 2).to_string()), Some(([1; 16], i / 2)));
        }
        assert!(early >= 8, "every growth past 64 slots came early ({early})");
        assert!((0..50_000u64).all(|i| index.get("h", &i.to_string()) == Some(([1; 16], i))));
        for i in (0..50_000u64).step_by(7) {
            assert_eq!(index.offer("h", &i.to_string(), [2; 16], 0), Seen::Conflict { first: i });
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
