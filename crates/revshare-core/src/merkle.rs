//! RFC 6962 / RFC 9162 Merkle tree maths over persisted cells.
//!
//! The tree is exactly RFC 9162 §2.1.1: `MTH({}) = SHA-256()`, `MTH({d}) = SHA-256(0x00 ‖ d)` and
//! `MTH(D[n]) = SHA-256(0x01 ‖ MTH(D[0:k]) ‖ MTH(D[k:n]))` with `k` the largest power of two below
//! `n`. Inclusion proofs are RFC 9162 §2.1.3.1 `PATH(m, D[n])`, consistency proofs RFC 9162 §2.1.4.1
//! `PROOF(m, D[n])`, and the verifiers are the bit-twiddling algorithms of §2.1.3.2 and §2.1.4.2.
//!
//! Storage keeps a [`Cell`] (the hash of a complete subtree) only at level 0 (the leaf hashes)
//! and at every level that is a multiple of [`STRIDE`]: about `n / 15` extra rows for `n` leaves.
//! Every hash a proof needs is the hash of a range of leaves that splits into complete subtrees;
//! a complete subtree at level `l` is folded from at most `2^(STRIDE - 1)` stored cells at level
//! `l - l % STRIDE`. Which cells a proof needs depends only on the sizes and the index, never on
//! hash values, so every function here first lists all the cells it needs, asks the
//! [`CellSource`] for them in one batched call, and then computes.
//!
//! Consistency from an empty tree: RFC 6962 §2.1.2 and RFC 9162 §2.1.4 define `PROOF(m, D[n])`
//! only for `0 < m`; a proof "from size 0" would be empty and would prove nothing, so asking for
//! one (or verifying one) is an error here rather than a vacuous success. For `m == n` the proof
//! is empty and verification checks that the two roots are equal.

use crate::canonical::hex;
use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// RFC 9162 §2.1.1 leaf hash: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// RFC 9162 §2.1.1 interior node hash: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
    0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Levels that storage keeps: 0 (leaf hashes) and every multiple of STRIDE.
pub const STRIDE: u32 = 4;

/// The most stored cells one complete subtree is folded from: `2^(STRIDE - 1)`.
const MAX_FOLD: usize = 1 << (STRIDE - 1);

/// Hash of the complete subtree at `level` covering leaves [index << level, (index + 1) << level).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    /// Height above the leaves: 0 is a leaf hash, `l` covers `2^l` leaves.
    pub level: u32,
    /// Position among the subtrees of this level, counted from the left.
    pub index: u64,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cell (level {}, index {})", self.level, self.index)
    }
}

/// What proofs need from storage: the hashes of stored cells (level % STRIDE == 0), in the order asked,
/// in ONE batched lookup (the store answers with one SQL query).
pub trait CellSource {
    /// Why a lookup failed (a database error, a missing cell).
    type Error;
    /// The hashes of `wanted`, one per cell and in the same order. Every wanted cell has
    /// `level % STRIDE == 0` and lies inside the tree size the caller was asked about.
    fn cells(&mut self, wanted: &[Cell]) -> Result<Vec<Hash>, Self::Error>;
}

/// Why a root, a proof or a frontier could not be computed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    /// The cell source failed.
    #[error("reading stored Merkle cells failed: {0}")]
    Source(#[source] E),
    /// The cell source answered with the wrong number of hashes.
    #[error("the Merkle cell store answered {got} hashes for {asked} cells; it must answer one hash per cell, in order")]
    SourceAnswer {
        /// How many cells were asked for.
        asked: usize,
        /// How many hashes came back.
        got: usize,
    },
    /// An inclusion proof was asked for a leaf outside the tree.
    #[error("no inclusion proof for leaf {index} in a tree of size {size}: the leaf index must be below the size")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("no consistency proof from size {old_size} to size {new_size}: the old size must not exceed the new size")]
    SizeOrder {
        /// The old (first) tree size.
        old_size: u64,
        /// The new (second) tree size.
        new_size: u64,
    },
    /// A consistency proof was asked from the empty tree.
    #[error("no consistency proof from size 0 to size {new_size}: consistency from an empty tree proves nothing; ask for size ≥ 1")]
    FromEmpty {
        /// The new (second) tree size.
        new_size: u64,
    },
}

/// Why a proof does not verify. Every message says what was expected and what was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The leaf index is not inside the tree.
    #[error("inclusion proof for leaf {index} of {size}: the leaf index must be below the tree size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The inclusion proof has the wrong number of hashes.
    #[error("inclusion proof for leaf {index} of {size} has {found} hashes; a proof at this size needs {expected}")]
    InclusionLength {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
        /// Hashes in the proof.
        found: usize,
        /// Hashes a proof for this index and size has.
        expected: usize,
    },
    /// The inclusion proof leads to another root.
    #[error("inclusion proof for leaf {index} of {size} leads to root {}; the expected root is {}", hex(.computed), hex(.expected))]
    InclusionRoot {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
        /// The root the caller expects.
        expected: Hash,
        /// The root the leaf and the proof lead to.
        computed: Hash,
    },
    /// The old size is larger than the new size.
    #[error("consistency proof from size {old_size} to size {new_size}: the old size must not exceed the new size")]
    SizeOrder {
        /// The old tree size.
        old_size: u64,
        /// The new tree size.
        new_size: u64,
    },
    /// The old tree is empty.
    #[error("consistency proof from size 0 to size {new_size}: consistency from an empty tree proves nothing; ask for size ≥ 1")]
    FromEmpty {
        /// The new tree size.
        new_size: u64,
    },
    /// The consistency proof has the wrong number of hashes.
    #[error("consistency proof from size {old_size} to size {new_size} has {found} hashes; a proof between these sizes needs {expected}")]
    ConsistencyLength {
        /// The old tree size.
        old_size: u64,
        /// The new tree size.
        new_size: u64,
        /// Hashes in the proof.
        found: usize,
        /// Hashes a proof between these sizes has.
        expected: usize,
    },
    /// Two trees of the same size have different roots.
    #[error("consistency of two trees of size {size}: their roots must be equal, but the old root is {} and the new root is {}", hex(.old_root), hex(.new_root))]
    SameSizeRoots {
        /// The size of both trees.
        size: u64,
        /// The old root.
        old_root: Hash,
        /// The new root.
        new_root: Hash,
    },
    /// The consistency proof does not lead to the old root.
    #[error("consistency proof from size {old_size} to size {new_size} leads to old root {}; the expected old root is {}", hex(.computed), hex(.expected))]
    OldRoot {
        /// The old tree size.
        old_size: u64,
        /// The new tree size.
        new_size: u64,
        /// The old root the caller expects.
        expected: Hash,
        /// The old root the proof leads to.
        computed: Hash,
    },
    /// The consistency proof does not lead to the new root.
    #[error("consistency proof from size {old_size} to size {new_size} leads to new root {}; the expected new root is {}", hex(.computed), hex(.expected))]
    NewRoot {
        /// The old tree size.
        old_size: u64,
        /// The new tree size.
        new_size: u64,
        /// The new root the caller expects.
        expected: Hash,
        /// The new root the proof leads to.
        computed: Hash,
    },
}

/// The largest power of two strictly below `n`; `n` must be at least 2.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `x >> s` that is 0 instead of overflowing when `s ≥ 64`.
fn shr(x: u64, s: u32) -> u64 {
    x.checked_shr(s).unwrap_or(0)
}

/// The bit length of `x` (Go's `bits.Len64`).
fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The complete subtrees `(level, index)` that leaves `[start, end)` split into, left to right
/// (greedy: the largest aligned subtree that fits, at each step).
fn complete_parts(start: u64, end: u64) -> impl Iterator<Item = (u32, u64)> {
    let mut at = start;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let level = at.trailing_zeros().min(63 - (end - at).leading_zeros());
        let part = (level, at >> level);
        at += 1u64 << level;
        Some(part)
    })
}

/// The stored cells a complete subtree is folded from: `2^(level % STRIDE)` consecutive cells at
/// level `level - level % STRIDE`.
fn stored_cells(level: u32, index: u64) -> impl Iterator<Item = Cell> {
    let extra = level % STRIDE;
    let base = level - extra;
    let first = index << extra;
    (0..(1u64 << extra)).map(move |i| Cell { level: base, index: first + i })
}

/// The cells to fetch for the hashes of a list of leaf ranges, and how to fold them back.
struct Plan {
    ranges: Vec<(u64, u64)>,
    cells: Vec<Cell>,
}

impl Plan {
    fn new(ranges: Vec<(u64, u64)>) -> Self {
        let mut cells = Vec::with_capacity(ranges.len() * 4);
        for &(start, end) in &ranges {
            for (level, index) in complete_parts(start, end) {
                cells.extend(stored_cells(level, index));
            }
        }
        Plan { ranges, cells }
    }

    /// Fetches the cells (one call) and computes `MTH` of every range, in order.
    fn run<S: CellSource>(self, src: &mut S) -> Result<Vec<Hash>, ProofError<S::Error>> {
        let answer = if self.cells.is_empty() { Vec::new() } else { src.cells(&self.cells).map_err(ProofError::Source)? };
        let mismatch = ProofError::SourceAnswer { asked: self.cells.len(), got: answer.len() };
        if answer.len() != self.cells.len() {
            return Err(mismatch);
        }
        let mut fetched = answer.iter();
        let mut out = Vec::with_capacity(self.ranges.len());
        for &(start, end) in &self.ranges {
            let mut parts = Vec::with_capacity(8);
            for (level, _) in complete_parts(start, end) {
                parts.push(
                    fold(level % STRIDE, &mut fetched).ok_or(ProofError::SourceAnswer { asked: self.cells.len(), got: answer.len() })?,
                );
            }
            // MTH of a range that splits into complete subtrees c1 > c2 > … is c1 ⊕ (c2 ⊕ (… ⊕ ck)).
            let mut parts = parts.into_iter().rev();
            let Some(last) = parts.next() else {
                return Err(mismatch);
            };
            out.push(parts.fold(last, |acc, left| node_hash(&left, &acc)));
        }
        Ok(out)
    }
}

/// Folds `2^extra` consecutive stored cells pairwise into the hash of their complete subtree.
fn fold<'a>(extra: u32, fetched: &mut impl Iterator<Item = &'a Hash>) -> Option<Hash> {
    let mut buf = [[0u8; 32]; MAX_FOLD];
    let mut n = 1usize << extra;
    for slot in buf.iter_mut().take(n) {
        *slot = *fetched.next()?;
    }
    while n > 1 {
        for j in 0..n / 2 {
            buf[j] = node_hash(&buf[2 * j], &buf[2 * j + 1]);
        }
        n /= 2;
    }
    Some(buf[0])
}

/// RFC 9162 §2.1.1 `MTH(D[0:size])` from stored cells (one `cells()` call; none for size 0).
pub fn root<S: CellSource>(src: &mut S, size: u64) -> Result<Hash, ProofError<S::Error>> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    let hashes = Plan::new(vec![(0, size)]).run(src)?;
    hashes.into_iter().next().ok_or(ProofError::SourceAnswer { asked: 1, got: 0 })
}

/// The leaf ranges of RFC 9162 §2.1.3.1 `PATH(index, D[size])`, bottom up. Requires `index < size`.
fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let (mut lo, mut hi) = (0u64, size);
    let mut out = Vec::with_capacity(64);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
        }
    }
    out.reverse();
    out
}

/// The leaf ranges of RFC 9162 §2.1.4.1 `PROOF(old_size, D[new_size])`. Requires `0 < old_size < new_size`.
fn consistency_ranges(old_size: u64, new_size: u64) -> Vec<(u64, u64)> {
    let (mut lo, mut hi, mut m) = (0u64, new_size, old_size);
    let mut complete = true; // SUBPROOF's `b`: the old tree is still a left edge of the new one
    let mut descent = Vec::with_capacity(64);
    let mut out = Vec::with_capacity(65);
    loop {
        if m == hi - lo {
            if !complete {
                out.push((lo, hi));
            }
            break;
        }
        let k = split_point(hi - lo);
        if m <= k {
            descent.push((lo + k, hi));
            hi = lo + k;
        } else {
            descent.push((lo, lo + k));
            lo += k;
            m -= k;
            complete = false;
        }
    }
    out.extend(descent.into_iter().rev());
    out
}

/// RFC 9162 §2.1.3.1 inclusion proof `PATH(index, D[size])` from stored cells (one `cells()` call).
pub fn inclusion_proof<S: CellSource>(src: &mut S, index: u64, size: u64) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    Plan::new(inclusion_ranges(index, size)).run(src)
}

/// RFC 9162 §2.1.4.1 consistency proof `PROOF(old_size, D[new_size])` from stored cells (at most
/// one `cells()` call). Empty when the sizes are equal; an error from size 0 (see the module doc).
pub fn consistency_proof<S: CellSource>(src: &mut S, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old_size > new_size {
        return Err(ProofError::SizeOrder { old_size, new_size });
    }
    if old_size == 0 {
        return Err(ProofError::FromEmpty { new_size });
    }
    if old_size == new_size {
        return Ok(Vec::new());
    }
    Plan::new(consistency_ranges(old_size, new_size)).run(src)
}

/// How many hashes `PATH(index, D[size])` has. Requires `index < size`.
fn inclusion_len(index: u64, size: u64) -> usize {
    let inner = bit_len(index ^ (size - 1));
    let border = shr(index, inner).count_ones();
    to_usize(inner + border)
}

/// How many hashes `PROOF(old_size, D[new_size])` has. Requires `0 < old_size < new_size`.
fn consistency_len(old_size: u64, new_size: u64) -> usize {
    let inner = bit_len((old_size - 1) ^ (new_size - 1));
    let border = shr(old_size - 1, inner).count_ones();
    let shift = old_size.trailing_zeros();
    let seed = if old_size.is_power_of_two() { 0 } else { 1 };
    to_usize(seed + inner.saturating_sub(shift) + border)
}

/// Verifies an inclusion proof with the RFC 9162 §2.1.3.2 algorithm: `leaf` (a leaf hash) is at
/// `index` in the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_len(index, size);
    let length_error = VerifyError::InclusionLength { index, size, found: proof.len(), expected };
    if proof.len() != expected {
        return Err(length_error);
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(length_error);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(length_error);
    }
    if r != *root {
        return Err(VerifyError::InclusionRoot { index, size, expected: *root, computed: r });
    }
    Ok(())
}

/// Verifies a consistency proof with the RFC 9162 §2.1.4.2 algorithm: the tree of `old_size`
/// leaves with root `old_root` is a prefix of the tree of `new_size` leaves with root `new_root`.
/// Equal sizes need an empty proof and equal roots; size 0 is refused (see the module doc).
pub fn verify_consistency(old_size: u64, new_size: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::SizeOrder { old_size, new_size });
    }
    if old_size == 0 {
        return Err(VerifyError::FromEmpty { new_size });
    }
    let expected = if old_size == new_size { 0 } else { consistency_len(old_size, new_size) };
    let length_error = VerifyError::ConsistencyLength { old_size, new_size, found: proof.len(), expected };
    if proof.len() != expected {
        return Err(length_error);
    }
    if old_size == new_size {
        if old_root != new_root {
            return Err(VerifyError::SameSizeRoots { size: old_size, old_root: *old_root, new_root: *new_root });
        }
        return Ok(());
    }
    // Step 2: a power-of-two old tree is itself the first node of the path.
    let seed: &[Hash] = if old_size.is_power_of_two() { std::slice::from_ref(old_root) } else { &[] };
    let mut path = seed.iter().chain(proof);
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let Some(first) = path.next() else {
        return Err(length_error);
    };
    let (mut fr, mut sr) = (*first, *first);
    for c in path {
        if snode == 0 {
            return Err(length_error);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(length_error);
    }
    if fr != *old_root {
        return Err(VerifyError::OldRoot { old_size, new_size, expected: *old_root, computed: fr });
    }
    if sr != *new_root {
        return Err(VerifyError::NewRoot { old_size, new_size, expected: *new_root, computed: sr });
    }
    Ok(())
}

/// The right edge of a tree: the hashes of the complete subtrees of the binary decomposition of `size`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, the largest (leftmost) subtree first.
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// Rebuilds the frontier of the tree of `size` leaves from stored cells (one `cells()` call;
    /// none for size 0).
    pub fn load<S: CellSource>(src: &mut S, size: u64) -> Result<Self, ProofError<S::Error>> {
        let ranges: Vec<(u64, u64)> = complete_parts(0, size).map(|(level, index)| (index << level, (index + 1) << level)).collect();
        let hashes = if ranges.is_empty() { Vec::new() } else { Plan::new(ranges).run(src)? };
        Ok(Frontier { size, hashes })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree's root (`MTH`); [`EMPTY_ROOT`] when size 0.
    pub fn root(&self) -> Hash {
        let mut right_to_left = self.hashes.iter().rev();
        match right_to_left.next() {
            None => EMPTY_ROOT,
            Some(last) => right_to_left.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    /// Appends one leaf hash; returns (via the callback) every complete subtree this append finished whose
    /// level is a positive multiple of STRIDE — exactly the cells storage must persist besides the leaf hash.
    ///
    /// A tree of `u64::MAX` leaves is full: pushing onto it changes nothing.
    pub fn push(&mut self, leaf: Hash, mut persist: impl FnMut(Cell, Hash)) {
        let Some(new_size) = self.size.checked_add(1) else {
            return;
        };
        let mut carry = leaf;
        let mut level = 0u32;
        while shr(self.size, level) & 1 == 1 {
            let Some(left) = self.hashes.pop() else {
                break;
            };
            carry = node_hash(&left, &carry);
            level += 1;
            if level.is_multiple_of(STRIDE) {
                persist(Cell { level, index: shr(new_size, level) - 1 }, carry);
            }
        }
        self.hashes.push(carry);
        self.size = new_size;
    }
}

/// A stored cell that a [`MemoryCells`] does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no stored {0}: only levels that are multiples of {STRIDE} and complete subtrees of the leaves pushed so far are stored")]
pub struct MissingCell(pub Cell);

/// An in-memory [`CellSource`]: leaves pushed through a [`Frontier`], keeping exactly the cells a
/// store keeps (level 0 and every positive multiple of [`STRIDE`]). For tests and tools.
#[derive(Clone, Debug, Default)]
pub struct MemoryCells {
    frontier: Frontier,
    /// `levels[j]` holds the cells at level `j * STRIDE`, by index.
    levels: Vec<Vec<Hash>>,
    lookups: u64,
}

impl MemoryCells {
    /// An empty log.
    pub fn new() -> Self {
        MemoryCells::default()
    }

    /// A log of these leaf hashes, in order.
    pub fn from_leaves(leaves: &[Hash]) -> Self {
        let mut cells = MemoryCells::new();
        for leaf in leaves {
            cells.push(*leaf);
        }
        cells
    }

    /// Appends one leaf hash, storing it and every stride-level cell it completes.
    pub fn push(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        if levels.is_empty() {
            levels.push(Vec::new());
        }
        if let Some(leaves) = levels.first_mut() {
            leaves.push(leaf);
        }
        self.frontier.push(leaf, |cell, hash| {
            let row = to_usize(cell.level / STRIDE);
            while levels.len() <= row {
                levels.push(Vec::new());
            }
            if let Some(cells) = levels.get_mut(row) {
                cells.push(hash);
            }
        });
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root of the whole log.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The frontier of the whole log.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// How many `cells()` calls this source has answered (to check that work is batched).
    pub fn lookups(&self) -> u64 {
        self.lookups
    }

    fn cell(&self, cell: Cell) -> Option<Hash> {
        if !cell.level.is_multiple_of(STRIDE) {
            return None;
        }
        let row = self.levels.get(to_usize(cell.level / STRIDE))?;
        row.get(usize::try_from(cell.index).ok()?).copied()
    }
}

impl CellSource for MemoryCells {
    type Error = MissingCell;

    fn cells(&mut self, wanted: &[Cell]) -> Result<Vec<Hash>, MissingCell> {
        self.lookups += 1;
        wanted.iter().map(|&c| self.cell(c).ok_or(MissingCell(c))).collect()
    }
}
