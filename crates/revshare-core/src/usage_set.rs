//! The usage digest of a statement: an order-independent, incremental hash of the set of records
//! it counts.
//!
//! A statement names the records it settled by `inputs.usage_digest`. Anyone holding the records
//! recomputes it, so it must not depend on their order; and the store must keep it current as
//! records arrive, so that closing a month reads one value instead of every record. A sorted
//! hash has the first property and not the second. This is a lattice hash, LtHash16 (Bellare and
//! Micciancio's construction, with the parameters of Lewi et al., "Securing Update Propagation
//! with Homomorphic Hashing", 2019): a record's element is 1,024 16-bit lanes, the BLAKE3 XOF of
//! its SHA-256 digest under a fixed key; the set's state is the lane-wise sum modulo 2^16 of its
//! records' elements. Adding is commutative and removing is subtracting, so the state of a month
//! is the sum of its batches' states, in any order, on any number of threads. Finding two
//! different sets with one state is a short-vector problem in a lattice of dimension 1,024
//! (about 200 bits of security in that paper's analysis).
//!
//! The digest written in a statement is `lthash16:` and the SHA-256 of the state's 2,048 bytes
//! (lanes little-endian, in order). The empty set's state is all zeros.
//!
//! The set is of distinct records: callers add a record once, when it is first counted (the
//! idempotency index decides that), and remove it if it stops being counted.

use sha2::{Digest, Sha256};

use crate::canonical;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Lanes of a state.
pub const LANES: usize = 1024;
/// Bytes of a state as stored ([`UsageSet::to_bytes`]).
pub const STATE_BYTES: usize = 2 * LANES;
/// The BLAKE3 key that makes these elements revshare's usage-set elements (32 ASCII bytes).
const KEY: &[u8; 32] = b"revshare usage set lthash16 v1.0";

/// The lattice-hash state of a set of records.
#[derive(Clone, PartialEq, Eq)]
pub struct UsageSet {
    lanes: Box<[u16; LANES]>,
}

impl Default for UsageSet {
    fn default() -> UsageSet {
        UsageSet::new()
    }
}

impl std::fmt::Debug for UsageSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UsageSet({})", self.digest())
    }
}

/// A record's element: the BLAKE3 XOF of its digest under [`KEY`], [`STATE_BYTES`] long; eight
/// output blocks at a time where the machine has AVX2 and not AVX-512 ([`avx2`]).
fn element(record_digest: &[u8; 32]) -> [u8; STATE_BYTES] {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = avx2::available() {
        return avx2::element(simd, KEY, record_digest);
    }
    let mut bytes = [0u8; STATE_BYTES];
    blake3::Hasher::new_keyed(KEY).update(record_digest).finalize_xof().fill(&mut bytes);
    bytes
}

/// The lanes of an element or a stored state.
fn lanes(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes.chunks_exact(2).map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
}

impl UsageSet {
    /// The empty set.
    pub fn new() -> UsageSet {
        UsageSet { lanes: Box::new([0; LANES]) }
    }

    /// Adds a record, by its SHA-256 digest ([`crate::usage::UsageRecord::digest`]).
    pub fn insert(&mut self, record_digest: &[u8; 32]) {
        for (lane, add) in self.lanes.iter_mut().zip(lanes(&element(record_digest))) {
            *lane = lane.wrapping_add(add);
        }
    }

    /// Removes a record added before.
    pub fn remove(&mut self, record_digest: &[u8; 32]) {
        for (lane, sub) in self.lanes.iter_mut().zip(lanes(&element(record_digest))) {
            *lane = lane.wrapping_sub(sub);
        }
    }

    /// Adds every record of another (disjoint) set.
    pub fn union(&mut self, other: &UsageSet) {
        for (lane, add) in self.lanes.iter_mut().zip(other.lanes.iter()) {
            *lane = lane.wrapping_add(*add);
        }
    }

    /// Removes every record of a subset.
    pub fn subtract(&mut self, other: &UsageSet) {
        for (lane, sub) in self.lanes.iter_mut().zip(other.lanes.iter()) {
            *lane = lane.wrapping_sub(*sub);
        }
    }

    /// The state as stored: lanes little-endian, in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.lanes.iter().flat_map(|lane| lane.to_le_bytes()).collect()
    }

    /// A state from [`UsageSet::to_bytes`]; `None` unless it is exactly [`STATE_BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Option<UsageSet> {
        if bytes.len() != STATE_BYTES {
            return None;
        }
        let mut set = UsageSet::new();
        for (lane, stored) in set.lanes.iter_mut().zip(lanes(bytes)) {
            *lane = stored;
        }
        Some(set)
    }

    /// The statement's `usage_digest`: `lthash16:` and the SHA-256 of the state's bytes.
    pub fn digest(&self) -> String {
        format!("lthash16:{}", canonical::hex(&Sha256::digest(self.to_bytes())))
    }
}

/// The usage set of records given by their digests (each counted once).
pub fn of_digests<'a>(digests: impl IntoIterator<Item = &'a [u8; 32]>) -> UsageSet {
    let mut set = UsageSet::new();
    for digest in digests {
        set.insert(digest);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> [u8; 32] {
        let mut digest = [0u8; 32];
        digest[0] = n;
        digest[31] = n.wrapping_mul(7);
        digest
    }

    #[test]
    fn order_and_grouping_do_not_matter() {
        let forward = of_digests(&[d(1), d(2), d(3), d(4)]);
        let backward = of_digests(&[d(4), d(3), d(2), d(1)]);
        let mut halves = of_digests(&[d(3), d(1)]);
        halves.union(&of_digests(&[d(2), d(4)]));
        assert_eq!(forward, backward);
        assert_eq!(forward, halves);
        assert_eq!(forward.digest(), halves.digest());
    }

    #[test]
    fn removing_undoes_adding() {
        let mut set = of_digests(&[d(1), d(2)]);
        set.insert(&d(9));
        set.remove(&d(9));
        assert_eq!(set, of_digests(&[d(2), d(1)]));
        set.subtract(&of_digests(&[d(1), d(2)]));
        assert_eq!(set, UsageSet::new());
    }

    #[test]
    fn different_sets_differ() {
        let one = of_digests(&[d(1)]);
        assert_ne!(one, UsageSet::new());
        assert_ne!(one, of_digests(&[d(2)]));
        // A set is not a multiset of its members' count: adding a record twice is not once.
        assert_ne!(of_digests(&[d(1), d(1)]), one);
    }

    #[test]
    fn bytes_round_trip_and_are_checked() {
        let set = of_digests(&[d(5), d(6)]);
        let bytes = set.to_bytes();
        assert_eq!(bytes.len(), STATE_BYTES);
        assert_eq!(UsageSet::from_bytes(&bytes), Some(set));
        assert_eq!(UsageSet::from_bytes(&bytes[1..]), None);
    }

    /// Golden values, computed independently (Python's `blake3` package and `hashlib`): the
    /// element function and the digest text are a format both sides of a statement compute.
    #[test]
    fn golden_digests() {
        assert_eq!(UsageSet::new().digest(), format!("lthash16:{}", canonical::hex(&Sha256::digest([0u8; STATE_BYTES]))));
        assert_eq!(of_digests(&[[0u8; 32]]).to_bytes(), element(&[0u8; 32]).to_vec());
        assert_eq!(of_digests(&[[0u8; 32]]).digest(), "lthash16:91d7f1c70d0502e318f3d3fee92a43c766d0929600b10fa5c0a0d10e56e5b19c");
        assert_eq!(
            of_digests(&[[1u8; 32], [0u8; 32]]).digest(),
            "lthash16:d5068be4f7983453c60f2bb3bf5f9241ef54564958ee791073703121f2959be2"
        );
    }
}
