//! Any bytes as Merkle proof inputs. Verifying arbitrary sizes, indices and hashes must never
//! panic; and in a log of up to 300 leaves derived from the bytes, every generated inclusion and
//! consistency proof must verify, and must stop verifying when one of its bits is flipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revshare_core::merkle::{self, Hash, MemoryCells};

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<24>() else {
        return;
    };
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&head[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let (a, b, c) = (word(0), word(8), word(16));
    let hashes: Vec<Hash> = rest.chunks_exact(32).map(|h| h.try_into().unwrap_or_default()).collect();
    let leaf = hashes.first().copied().unwrap_or_default();
    let root = hashes.get(1).copied().unwrap_or_default();

    // Arbitrary inputs: errors, never panics.
    let _ = merkle::verify_inclusion(&leaf, a, b, &hashes, &root).map_err(|e| e.to_string());
    let _ = merkle::verify_inclusion(&leaf, a % 1024, b % 1024, &hashes, &root);
    let _ = merkle::verify_consistency(a, b, &leaf, &root, &hashes).map_err(|e| e.to_string());
    let _ = merkle::verify_consistency(a % 1024, b % 1024, &leaf, &root, &hashes);

    // A real log: generated proofs verify.
    let n = 1 + a % 300;
    let leaves: Vec<Hash> = (0..n).map(|i| merkle::leaf_hash(&[rest, &i.to_le_bytes()].concat())).collect();
    let mut log = MemoryCells::from_leaves(&leaves);
    let size = 1 + b % n;
    let index = c % size;
    let old = 1 + (c >> 32) % size;
    let Ok(size_root) = merkle::root(&mut log, size) else {
        panic!("no root at size {size} of {n}");
    };
    let Ok(old_root) = merkle::root(&mut log, old) else {
        panic!("no root at size {old} of {n}");
    };
    let Some(&leaf) = usize::try_from(index).ok().and_then(|i| leaves.get(i)) else {
        panic!("no leaf {index}");
    };
    let flip = usize::from(head[0]);

    match merkle::inclusion_proof(&mut log, index, size) {
        Ok(mut proof) => {
            if let Err(e) = merkle::verify_inclusion(&leaf, index, size, &proof, &size_root) {
                panic!("a generated inclusion proof does not verify: {e}");
            }
            if !proof.is_empty() {
                let k = flip % proof.len();
                proof[k][flip % 32] ^= 1 << (flip % 8);
                assert!(merkle::verify_inclusion(&leaf, index, size, &proof, &size_root).is_err(), "a flipped inclusion proof verifies");
            }
        }
        Err(e) => panic!("no inclusion proof for {index} of {size}: {e}"),
    }
    match merkle::consistency_proof(&mut log, old, size) {
        Ok(mut proof) => {
            if let Err(e) = merkle::verify_consistency(old, size, &old_root, &size_root, &proof) {
                panic!("a generated consistency proof does not verify: {e}");
            }
            if !proof.is_empty() {
                let k = flip % proof.len();
                proof[k][flip % 32] ^= 1 << (flip % 8);
                assert!(
                    merkle::verify_consistency(old, size, &old_root, &size_root, &proof).is_err(),
                    "a flipped consistency proof verifies"
                );
            }
        }
        Err(e) => panic!("no consistency proof from {old} to {size}: {e}"),
    }
});
