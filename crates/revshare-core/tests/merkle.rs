//! The Merkle tree maths against published RFC 6962 vectors, a naive recursive RFC 9162
//! implementation written here, and ct-merkle as an independent oracle.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;

use proptest::prelude::*;
use revshare_core::merkle::{
    self, Cell, CellSource, EMPTY_ROOT, Frontier, Hash, MemoryCells, MissingCell, ProofError, STRIDE, VerifyError, leaf_hash, node_hash,
};

fn h(hex: &str) -> Hash {
    assert_eq!(hex.len(), 64, "{hex}");
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// RFC 6962 reference vectors, from github.com/transparency-dev/merkle, proof/verify_test.go
// (`leaves`, `roots`, `inclusionProofs`, `consistencyProofs`; the same vectors as
// google/certificate-transparency's merkle_tree_test). In `inclusionProofs` the leaf is 1-based.
// ---------------------------------------------------------------------------------------------

const LEAVES: [&str; 8] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (1-based leaf, tree size, proof).
const INCLUSION: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof).
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn reference_log() -> MemoryCells {
    MemoryCells::from_leaves(&LEAVES.iter().map(|l| leaf_hash(&bytes(l))).collect::<Vec<_>>())
}

#[test]
fn empty_root_is_sha256_of_nothing() {
    assert_eq!(EMPTY_ROOT, h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    assert_eq!(Frontier::new().root(), EMPTY_ROOT);
    assert_eq!(merkle::root(&mut MemoryCells::new(), 0), Ok(EMPTY_ROOT));
}

#[test]
fn reference_roots() {
    let mut log = reference_log();
    for (size, want) in (1u64..).zip(ROOTS) {
        assert_eq!(merkle::root(&mut log, size).unwrap(), h(want), "root at size {size}");
        assert_eq!(Frontier::load(&mut log, size).unwrap().root(), h(want), "frontier root at size {size}");
    }
    assert_eq!(log.root(), h(ROOTS[7]));
}

#[test]
fn reference_inclusion_proofs() {
    let mut log = reference_log();
    for (leaf, size, proof) in INCLUSION {
        let index = leaf - 1;
        let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(merkle::inclusion_proof(&mut log, index, size).unwrap(), want, "proof for {index} at {size}");
        let leaf_hash = leaf_hash(&bytes(LEAVES[usize::try_from(index).unwrap()]));
        let root = h(ROOTS[usize::try_from(size - 1).unwrap()]);
        merkle::verify_inclusion(&leaf_hash, index, size, &want, &root).unwrap();
    }
}

#[test]
fn reference_consistency_proofs() {
    let mut log = reference_log();
    for (old, new, proof) in CONSISTENCY {
        let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(merkle::consistency_proof(&mut log, old, new).unwrap(), want, "proof {old} → {new}");
        let old_root = h(ROOTS[usize::try_from(old - 1).unwrap()]);
        let new_root = h(ROOTS[usize::try_from(new - 1).unwrap()]);
        merkle::verify_consistency(old, new, &old_root, &new_root, &want).unwrap();
        if old < new {
            // transparency-dev's probes: swapped roots, truncated, extended, each bit-flipped element.
            assert!(merkle::verify_consistency(old, new, &new_root, &old_root, &want).is_err());
            assert!(merkle::verify_consistency(old, new, &old_root, &new_root, &want[..want.len() - 1]).is_err());
            assert!(merkle::verify_consistency(old, new, &old_root, &new_root, &[want.clone(), vec![old_root]].concat()).is_err());
            assert!(merkle::verify_consistency(old, new, &old_root, &new_root, &[]).is_err());
            for i in 0..want.len() {
                let mut bad = want.clone();
                bad[i][0] ^= 16;
                assert!(merkle::verify_consistency(old, new, &old_root, &new_root, &bad).is_err(), "flipped element {i}");
            }
        }
    }
}

#[test]
fn verify_errors_say_what_was_expected() {
    let mut log = reference_log();
    let root = h(ROOTS[7]);
    let leaf = leaf_hash(&bytes(LEAVES[5]));
    let proof = merkle::inclusion_proof(&mut log, 5, 8).unwrap();
    assert_eq!(
        merkle::verify_inclusion(&leaf, 5, 8, &proof[..2], &root).unwrap_err().to_string(),
        "inclusion proof for leaf 5 of 8 has 2 hashes; a proof at this size needs 3"
    );
    assert_eq!(merkle::verify_inclusion(&leaf, 8, 8, &proof, &root).unwrap_err(), VerifyError::IndexOutOfRange { index: 8, size: 8 });
    let wrong = merkle::verify_inclusion(&leaf, 5, 8, &proof, &EMPTY_ROOT).unwrap_err().to_string();
    assert_eq!(
        wrong,
        format!(
            "inclusion proof for leaf 5 of 8 leads to root {}; the expected root is e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ROOTS[7]
        )
    );
    let err = merkle::verify_consistency(9, 8, &root, &root, &[]).unwrap_err();
    assert_eq!(err.to_string(), "consistency proof from size 9 to size 8: the old size must not exceed the new size");
    let err = merkle::verify_consistency(0, 8, &EMPTY_ROOT, &root, &[]).unwrap_err();
    assert!(err.to_string().contains("consistency from an empty tree proves nothing; ask for size ≥ 1"), "{err}");
    let err = merkle::verify_consistency(8, 8, &h(ROOTS[6]), &root, &[]).unwrap_err();
    assert!(matches!(err, VerifyError::SameSizeRoots { size: 8, .. }), "{err}");
    let err = merkle::verify_consistency(8, 8, &root, &root, &[root]).unwrap_err();
    assert_eq!(err.to_string(), "consistency proof from size 8 to size 8 has 1 hashes; a proof between these sizes needs 0");
    let proof = merkle::consistency_proof(&mut log, 6, 8).unwrap();
    let err = merkle::verify_consistency(6, 8, &h(ROOTS[4]), &root, &proof).unwrap_err();
    assert!(err.to_string().starts_with("consistency proof from size 6 to size 8 leads to old root "), "{err}");
    assert!(err.to_string().ends_with(&format!("; the expected old root is {}", ROOTS[4])), "{err}");
    let err = merkle::verify_consistency(6, 8, &h(ROOTS[5]), &EMPTY_ROOT, &proof).unwrap_err();
    assert!(err.to_string().contains(&format!("leads to new root {}", ROOTS[7])), "{err}");
}

#[test]
fn proof_errors() {
    let mut log = reference_log();
    assert_eq!(merkle::inclusion_proof(&mut log, 8, 8), Err(ProofError::IndexOutOfRange { index: 8, size: 8 }));
    assert_eq!(merkle::consistency_proof(&mut log, 5, 4), Err(ProofError::SizeOrder { old_size: 5, new_size: 4 }));
    let err = merkle::consistency_proof(&mut log, 0, 4).unwrap_err();
    assert_eq!(err, ProofError::FromEmpty { new_size: 4 });
    assert!(err.to_string().contains("ask for size ≥ 1"));
    assert_eq!(merkle::consistency_proof(&mut log, 4, 4), Ok(vec![]));
    // Past the stored leaves, the source reports the missing cell.
    assert!(matches!(merkle::root(&mut log, 9), Err(ProofError::Source(MissingCell(Cell { level: 0, index: 8 })))));

    struct Short;
    impl CellSource for Short {
        type Error = Infallible;
        fn cells(&mut self, _: &[Cell]) -> Result<Vec<Hash>, Infallible> {
            Ok(vec![EMPTY_ROOT])
        }
    }
    let err = merkle::root(&mut Short, 3).unwrap_err();
    assert_eq!(err, ProofError::SourceAnswer { asked: 3, got: 1 });
    assert!(err.to_string().contains("answered 1 hashes for 3 cells"));
}

#[test]
fn every_proof_is_one_batched_lookup() {
    let leaves: Vec<Hash> = (0u32..1000).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut log = MemoryCells::from_leaves(&leaves);
    let mut calls = 0;
    for size in [1u64, 2, 17, 255, 256, 257, 999, 1000] {
        merkle::root(&mut log, size).unwrap();
        Frontier::load(&mut log, size).unwrap();
        calls += 2;
        assert_eq!(log.lookups(), calls, "size {size}");
        let proof = merkle::inclusion_proof(&mut log, size / 2, size).unwrap();
        calls += u64::from(!proof.is_empty());
        assert_eq!(log.lookups(), calls, "inclusion at size {size}");
        let proof = merkle::consistency_proof(&mut log, size.div_ceil(2), size).unwrap();
        calls += u64::from(!proof.is_empty());
        assert_eq!(log.lookups(), calls, "consistency to size {size}");
    }
    // Nothing to fetch, no lookup.
    merkle::root(&mut log, 0).unwrap();
    Frontier::load(&mut log, 0).unwrap();
    merkle::inclusion_proof(&mut log, 0, 1).unwrap();
    assert_eq!(log.lookups(), calls);
}

/// A source for huge trees: any stored cell's hash is made up (proofs are not consistent with
/// each other, but the work and the cells asked for are real).
struct Synthetic {
    asked: usize,
}

impl CellSource for Synthetic {
    type Error = Infallible;
    fn cells(&mut self, wanted: &[Cell]) -> Result<Vec<Hash>, Infallible> {
        self.asked += wanted.len();
        Ok(wanted
            .iter()
            .map(|c| {
                assert_eq!(c.level % STRIDE, 0, "asked for an unstored {c:?}");
                leaf_hash(&[c.level.to_be_bytes().as_slice(), &c.index.to_be_bytes()].concat())
            })
            .collect())
    }
}

#[test]
fn proofs_at_ten_million_leaves_read_few_cells() {
    let size = 10_000_000u64;
    for index in [0, 1, 4_999_999, 9_999_998, 9_999_999, 8_388_607, 8_388_608] {
        let mut src = Synthetic { asked: 0 };
        let proof = merkle::inclusion_proof(&mut src, index, size).unwrap();
        assert!(src.asked <= 24 * 8, "{} cells for leaf {index}", src.asked);
        assert!(proof.len() <= 24);
    }
    for old in [1, 2, 3, 1000, 8_388_608, 9_999_999] {
        let mut src = Synthetic { asked: 0 };
        merkle::consistency_proof(&mut src, old, size).unwrap();
        assert!(src.asked <= 48 * 8, "{} cells for {old} → {size}", src.asked);
    }
    let mut src = Synthetic { asked: 0 };
    merkle::root(&mut src, size).unwrap();
    assert!(src.asked <= 64, "{} cells for the root", src.asked);
}

#[test]
fn push_persists_exactly_the_stride_cells() {
    let mut frontier = Frontier::new();
    let mut persisted = Vec::new();
    let n = 5000u64;
    for i in 0..n {
        frontier.push(leaf_hash(&i.to_be_bytes()), |cell, hash| persisted.push((cell, hash)));
    }
    let got: Vec<Cell> = persisted.iter().map(|(c, _)| *c).collect();
    let mut want = Vec::new();
    for level in (STRIDE..64).step_by(usize::try_from(STRIDE).unwrap()) {
        for index in 0..(n >> level) {
            want.push(Cell { level, index });
        }
    }
    assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), want.iter().copied().collect::<BTreeSet<_>>());
    assert_eq!(got.len(), want.len(), "each cell persisted once");
    // Every persisted hash is the subtree's MTH.
    let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut naive = Naive::new(&leaves);
    for (cell, hash) in persisted {
        let start = usize::try_from(cell.index << cell.level).unwrap();
        assert_eq!(hash, naive.mth(start, start + (1 << cell.level)), "{cell:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// A naive RFC 9162 §2.1 implementation (recursive, straight from the definitions) as an oracle.
// ---------------------------------------------------------------------------------------------

struct Naive<'a> {
    leaves: &'a [Hash],
    memo: HashMap<(usize, usize), Hash>,
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

impl<'a> Naive<'a> {
    fn new(leaves: &'a [Hash]) -> Self {
        Naive { leaves, memo: HashMap::new() }
    }

    /// MTH(D[lo:hi]).
    fn mth(&mut self, lo: usize, hi: usize) -> Hash {
        match hi - lo {
            0 => EMPTY_ROOT,
            1 => self.leaves[lo],
            n => {
                if let Some(h) = self.memo.get(&(lo, hi)) {
                    return *h;
                }
                let k = split(n);
                let h = node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi));
                self.memo.insert((lo, hi), h);
                h
            }
        }
    }

    /// PATH(m, D[lo:hi]).
    fn path(&mut self, m: usize, lo: usize, hi: usize) -> Vec<Hash> {
        let n = hi - lo;
        if n <= 1 {
            return vec![];
        }
        let k = split(n);
        if m < k {
            let mut p = self.path(m, lo, lo + k);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.path(m - k, lo + k, hi);
            p.push(self.mth(lo, lo + k));
            p
        }
    }

    /// SUBPROOF(m, D[lo:hi], b).
    fn subproof(&mut self, m: usize, lo: usize, hi: usize, b: bool) -> Vec<Hash> {
        let n = hi - lo;
        if m == n {
            return if b { vec![] } else { vec![self.mth(lo, hi)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = self.subproof(m, lo, lo + k, b);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.subproof(m - k, lo + k, hi, false);
            p.push(self.mth(lo, lo + k));
            p
        }
    }
}

#[test]
fn naive_oracle_matches_the_reference_vectors() {
    let leaves: Vec<Hash> = LEAVES.iter().map(|l| leaf_hash(&bytes(l))).collect();
    let mut naive = Naive::new(&leaves);
    for (size, want) in (1..).zip(ROOTS) {
        assert_eq!(naive.mth(0, size), h(want));
    }
    for (leaf, size, proof) in INCLUSION {
        let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(naive.path(usize::try_from(leaf - 1).unwrap(), 0, usize::try_from(size).unwrap()), want);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties over random logs.
// ---------------------------------------------------------------------------------------------

type CtTree = ct_merkle::mem_backed_tree::MemoryBackedTree<sha2::Sha256, Vec<u8>>;

fn hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes.chunks(32).map(|c| Hash::try_from(c).unwrap()).collect()
}

/// Sizes to check for a log of `n` leaves: all when few, else a sample (always 1 and `n`).
fn sizes(n: u64, picks: &[u64]) -> BTreeSet<u64> {
    if n <= 40 {
        return (1..=n).collect();
    }
    let mut out: BTreeSet<u64> = picks.iter().map(|p| 1 + p % n).collect();
    out.extend([1, 2, n / 2, n - 1, n]);
    out.extend((0..6).map(|i| 1u64 << (4 * i)).filter(|s| *s <= n));
    out
}

fn indices(size: u64, picks: &[u64]) -> BTreeSet<u64> {
    if size <= 48 {
        return (0..size).collect();
    }
    let mut out: BTreeSet<u64> = picks.iter().map(|p| p % size).collect();
    out.extend([0, 1, size / 2, size - 2, size - 1]);
    out
}

fn check_log(n: u64, seed: u64, picks: &[u64]) {
    let data: Vec<Vec<u8>> = (0..n).map(|i| format!("leaf {i} of log {seed}").into_bytes()).collect();
    let leaves: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
    let mut naive = Naive::new(&leaves);

    // Frontier: pushed, loaded and naive agree at every size.
    let mut log = MemoryCells::new();
    let mut frontier = Frontier::new();
    for size in 0..=n {
        assert_eq!(Frontier::load(&mut log, size).unwrap(), frontier, "frontier at size {size}");
        assert_eq!(frontier.root(), naive.mth(0, usize::try_from(size).unwrap()), "root at size {size}");
        if size < n {
            let leaf = leaves[usize::try_from(size).unwrap()];
            log.push(leaf);
            frontier.push(leaf, |_, _| {});
        }
    }

    let mut ct = CtTree::new();
    for d in &data {
        ct.push(d.clone());
    }
    assert_eq!(ct.root().as_bytes().as_slice(), merkle::root(&mut log, n).unwrap().as_slice(), "ct-merkle root");

    let roots: HashMap<u64, Hash> = (0..=n).map(|s| (s, naive.mth(0, usize::try_from(s).unwrap()))).collect();
    for size in sizes(n, picks) {
        let root = merkle::root(&mut log, size).unwrap();
        assert_eq!(root, roots[&size]);
        for index in indices(size, picks) {
            let i = usize::try_from(index).unwrap();
            let leaf = leaves[i];
            let proof = merkle::inclusion_proof(&mut log, index, size).unwrap();
            assert_eq!(proof, naive.path(i, 0, usize::try_from(size).unwrap()), "PATH({index}, D[{size}])");
            if size == n {
                assert_eq!(hashes(ct.prove_inclusion(i).as_bytes()), proof, "ct-merkle inclusion {index} of {size}");
            }
            merkle::verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
            // Wrong leaf, wrong index, wrong size (with that size's root), flipped bytes.
            let other = leaves[(i + 1) % leaves.len()];
            if other != leaf {
                assert!(merkle::verify_inclusion(&other, index, size, &proof, &root).is_err());
            }
            for wrong in [index.wrapping_sub(1), index + 1, index ^ 2] {
                if wrong != index {
                    assert!(merkle::verify_inclusion(&leaf, wrong, size, &proof, &root).is_err(), "index {wrong} for {index} of {size}");
                }
            }
            // (Only sizes this log has: a proof checked against its own root at a larger claimed
            // size may pass when the path has the same shape, which is harmless.)
            for wrong in [size - 1, size + 1, size * 2] {
                if wrong != size && wrong > 0 && wrong <= n {
                    let wrong_root = roots[&wrong];
                    assert!(
                        merkle::verify_inclusion(&leaf, index, wrong, &proof, &wrong_root).is_err(),
                        "size {wrong} for {index} of {size}"
                    );
                }
            }
            for k in 0..proof.len() {
                let mut bad = proof.clone();
                bad[k][usize::try_from(index).unwrap() % 32] ^= 1;
                assert!(merkle::verify_inclusion(&leaf, index, size, &bad, &root).is_err());
            }
            if let Some(last) = proof.last() {
                assert!(merkle::verify_inclusion(&leaf, index, size, &[proof.as_slice(), &[*last]].concat(), &root).is_err());
            }
        }
    }

    let checked = sizes(n, picks);
    for &new in &checked {
        for &old in checked.iter().filter(|&&m| m <= new) {
            let (old_root, new_root) = (roots[&old], roots[&new]);
            let proof = merkle::consistency_proof(&mut log, old, new).unwrap();
            let want =
                if old == new { vec![] } else { naive.subproof(usize::try_from(old).unwrap(), 0, usize::try_from(new).unwrap(), true) };
            assert_eq!(proof, want, "PROOF({old}, D[{new}])");
            if new == n && old < n {
                let ct_proof = ct.prove_consistency(usize::try_from(n - old).unwrap());
                assert_eq!(hashes(ct_proof.as_bytes()), proof, "ct-merkle consistency {old} → {new}");
            }
            merkle::verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
            if old < new {
                assert!(merkle::verify_consistency(old, new, &new_root, &old_root, &proof).is_err());
                assert!(merkle::verify_consistency(old, new, &roots[&(old - 1)], &new_root, &proof).is_err());
                for k in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[k][31] ^= 0x80;
                    assert!(merkle::verify_consistency(old, new, &old_root, &new_root, &bad).is_err(), "flip {k} in {old} → {new}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_logs(n in prop_oneof![1u64..=70, 70u64..=3000], seed in any::<u64>(), picks in prop::collection::vec(any::<u64>(), 6)) {
        check_log(n, seed, &picks);
    }
}
