//! The usage-set element on AVX2: the same 2,048 bytes as the `blake3` crate's XOF, computed eight
//! output blocks at a time.
//!
//! An element is 32 BLAKE3 output blocks of one root compression: the same chaining value (the key)
//! and message block (the record digest), only the block counter differs. The `blake3` crate
//! computes several such blocks at once only with AVX-512 (`xof_many`); elsewhere it runs its
//! one-block SSE4.1 compression 32 times, the largest single cost of ingesting a record on a machine
//! without AVX-512. Here each of the 16 state words is a vector holding that word for eight
//! counters, so four passes of the compression produce the 32 blocks. The intrinsics are `pulp`'s
//! safe wrappers, run under its runtime-checked AVX2 token; the tests hold this to the crate's
//! output.

use core::arch::x86_64::__m256i;

use pulp::x86::V3;

use super::STATE_BYTES;

/// BLAKE3's initialisation vector (the first four words start the state's third row).
const IV: [u32; 4] = [0x6A09_E667, 0xBB67_AE85, 0x3C6E_F372, 0xA54F_F53A];
/// The message-word permutation applied between rounds.
const PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
/// Flags of a keyed hash's root output from one block: CHUNK_START | CHUNK_END | ROOT | KEYED_HASH.
const FLAGS: u32 = 1 | 2 | 8 | 16;
/// The message block's length: a record digest.
const BLOCK_LEN: u32 = 32;

/// The AVX2 token, when this machine has AVX2 and the `blake3` crate would not use AVX-512
/// (where its own multi-block XOF is the faster one).
pub(super) fn available() -> Option<V3> {
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") {
        return None;
    }
    V3::try_new()
}

/// The first [`STATE_BYTES`] of BLAKE3's keyed XOF of `message` (32 bytes, one block) under `key`.
pub(super) fn element(simd: V3, key: &[u8; 32], message: &[u8; 32]) -> [u8; STATE_BYTES] {
    let mut out = [0u8; STATE_BYTES];
    simd.vectorize(Element { simd, key, message, out: &mut out });
    out
}

/// The work `V3::vectorize` runs with AVX2 enabled; everything it calls is inlined into it.
struct Element<'a> {
    simd: V3,
    key: &'a [u8; 32],
    message: &'a [u8; 32],
    out: &'a mut [u8; STATE_BYTES],
}

impl pulp::NullaryFnOnce for Element<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Element { simd: s, key, message, out } = self;
        let cv = words(key);
        let digest = words(message);
        let block: [u32; 16] = std::array::from_fn(|i| digest.get(i).copied().unwrap_or(0));
        // The message words of each of the seven rounds, shared by every pass.
        let mut rounds = [[splat(s, 0); 16]; 7];
        let mut m = block;
        for round in &mut rounds {
            *round = m.map(|word| splat(s, word));
            m = PERMUTATION.map(|i| m[i]);
        }
        let lanes: __m256i = pulp::cast([0u32, 1, 2, 3, 4, 5, 6, 7]);
        // Four passes of eight 64-byte output blocks; `first` is the counter of a pass's first.
        for (first, blocks) in (0u32..).step_by(8).zip(out.chunks_exact_mut(8 * 64)) {
            let mut v = [splat(s, 0); 16];
            for i in 0..8 {
                v[i] = splat(s, cv[i]);
            }
            for (i, iv) in IV.iter().enumerate() {
                v[8 + i] = splat(s, *iv);
            }
            // The counter's low word per lane; its high word, v[13], stays 0.
            v[12] = add(s, lanes, splat(s, first));
            v[14] = splat(s, BLOCK_LEN);
            v[15] = splat(s, FLAGS);
            for m in &rounds {
                g(s, &mut v, [0, 4, 8, 12], m[0], m[1]);
                g(s, &mut v, [1, 5, 9, 13], m[2], m[3]);
                g(s, &mut v, [2, 6, 10, 14], m[4], m[5]);
                g(s, &mut v, [3, 7, 11, 15], m[6], m[7]);
                g(s, &mut v, [0, 5, 10, 15], m[8], m[9]);
                g(s, &mut v, [1, 6, 11, 12], m[10], m[11]);
                g(s, &mut v, [2, 7, 8, 13], m[12], m[13]);
                g(s, &mut v, [3, 4, 9, 14], m[14], m[15]);
            }
            // The XOF's output words: the first half of the state folded with the second, then
            // the second with the chaining value; transposed to one vector per output block.
            let low = transpose(s, std::array::from_fn(|i| xor(s, v[i], v[i + 8])));
            let high = transpose(s, std::array::from_fn(|i| xor(s, v[i + 8], splat(s, cv[i]))));
            for ((block, low), high) in blocks.chunks_exact_mut(64).zip(low).zip(high) {
                let (first_half, second_half) = block.split_at_mut(32);
                first_half.copy_from_slice(&pulp::cast::<__m256i, [u8; 32]>(low));
                second_half.copy_from_slice(&pulp::cast::<__m256i, [u8; 32]>(high));
            }
        }
    }
}

/// Little-endian words.
#[inline(always)]
fn words(bytes: &[u8; 32]) -> [u32; 8] {
    std::array::from_fn(|i| u32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]))
}

#[inline(always)]
fn splat(s: V3, word: u32) -> __m256i {
    s.avx._mm256_set1_epi32(word.cast_signed())
}

#[inline(always)]
fn add(s: V3, a: __m256i, b: __m256i) -> __m256i {
    s.avx2._mm256_add_epi32(a, b)
}

#[inline(always)]
fn xor(s: V3, a: __m256i, b: __m256i) -> __m256i {
    s.avx2._mm256_xor_si256(a, b)
}

/// Rotations right by 16 and 8 are byte shuffles; by 12 and 7, two shifts.
#[inline(always)]
fn rotate_16(s: V3, x: __m256i) -> __m256i {
    let bytes: __m256i = pulp::cast([[2u8, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13]; 2]);
    s.avx2._mm256_shuffle_epi8(x, bytes)
}

#[inline(always)]
fn rotate_8(s: V3, x: __m256i) -> __m256i {
    let bytes: __m256i = pulp::cast([[1u8, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12]; 2]);
    s.avx2._mm256_shuffle_epi8(x, bytes)
}

#[inline(always)]
fn rotate_12(s: V3, x: __m256i) -> __m256i {
    s.avx2._mm256_or_si256(s.avx2._mm256_srli_epi32::<12>(x), s.avx2._mm256_slli_epi32::<20>(x))
}

#[inline(always)]
fn rotate_7(s: V3, x: __m256i) -> __m256i {
    s.avx2._mm256_or_si256(s.avx2._mm256_srli_epi32::<7>(x), s.avx2._mm256_slli_epi32::<25>(x))
}

/// BLAKE3's quarter-round G on the state words `[a, b, c, d]` with message words `x`, `y`.
#[inline(always)]
fn g(s: V3, v: &mut [__m256i; 16], [a, b, c, d]: [usize; 4], x: __m256i, y: __m256i) {
    v[a] = add(s, add(s, v[a], v[b]), x);
    v[d] = rotate_16(s, xor(s, v[d], v[a]));
    v[c] = add(s, v[c], v[d]);
    v[b] = rotate_12(s, xor(s, v[b], v[c]));
    v[a] = add(s, add(s, v[a], v[b]), y);
    v[d] = rotate_8(s, xor(s, v[d], v[a]));
    v[c] = add(s, v[c], v[d]);
    v[b] = rotate_7(s, xor(s, v[b], v[c]));
}

/// Eight vectors of word i for lanes 0..8 to eight vectors of lane l's words 0..8.
#[inline(always)]
fn transpose(s: V3, rows: [__m256i; 8]) -> [__m256i; 8] {
    let a = s.avx2;
    // Rows 2k and 2k + 1 interleaved: words 0, 1, 4, 5 of both (even i), words 2, 3, 6, 7 (odd i).
    let pairs: [__m256i; 8] = std::array::from_fn(|i| {
        let (x, y) = (rows[i & !1], rows[i | 1]);
        if i % 2 == 0 { a._mm256_unpacklo_epi32(x, y) } else { a._mm256_unpackhi_epi32(x, y) }
    });
    // Four rows' words of lanes l and l + 4 (l = i % 4): rows 0..4 for i < 4, rows 4..8 after.
    let quads: [__m256i; 8] = std::array::from_fn(|i| {
        let first = i / 4 * 4 + i % 4 / 2;
        let (x, y) = (pairs[first], pairs[first + 2]);
        if i % 2 == 0 { a._mm256_unpacklo_epi64(x, y) } else { a._mm256_unpackhi_epi64(x, y) }
    });
    // Lane l: the 128-bit halves of quads l % 4 and l % 4 + 4 holding it (low for l < 4).
    std::array::from_fn(|l| {
        let (x, y) = (quads[l % 4], quads[l % 4 + 4]);
        if l < 4 { a._mm256_permute2x128_si256::<0x20>(x, y) } else { a._mm256_permute2x128_si256::<0x31>(x, y) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_the_crate(key: &[u8; 32], message: &[u8; 32]) -> [u8; STATE_BYTES] {
        let mut bytes = [0u8; STATE_BYTES];
        blake3::Hasher::new_keyed(key).update(message).finalize_xof().fill(&mut bytes);
        bytes
    }

    /// Every x86-64 machine this is built for has AVX2; where one does not, this test says so.
    #[test]
    fn eight_blocks_at_a_time_give_the_crates_bytes() {
        let simd = V3::try_new();
        assert!(simd.is_some(), "this machine has no AVX2, so the AVX2 element cannot be checked here");
        let Some(simd) = simd else { return };
        let mut key = *super::super::KEY;
        let mut message = [0u8; 32];
        for n in 0..2_000u32 {
            // Messages and keys that vary in every word, plus all zeros and all ones.
            let fill = n.wrapping_mul(0x9E37_79B9).to_le_bytes();
            for (i, byte) in message.iter_mut().enumerate() {
                *byte = fill[i % 4] ^ u8::try_from(i).unwrap_or(0);
            }
            match n {
                0 => message = [0; 32],
                1 => message = [0xFF; 32],
                _ => {}
            }
            if n % 500 == 499 {
                key = message;
            }
            assert_eq!(element(simd, &key, &message), by_the_crate(&key, &message), "message {message:?} under key {key:?}");
        }
    }
}
