//! The batch digest files against their usage-batch leaves, and the hosts' batch signatures.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::Value;

use crate::canonical;
use crate::note::VerifierKey;
use crate::settle::{digest_order, sorted_digest};
use crate::transparency::{Signed, batch_message};

use super::keys::{KEY_SHAPE, Keys};
use super::log::{Leaf, Leaves};
use super::records::{MAX_PARTS, PART_BYTES};
use super::{Run, shorten};

/// Sorts digests ascending (the order [`sorted_digest`] hashes them in, which then finds them sorted).
pub(super) fn sort_digests(digests: &mut [[u8; 32]]) {
    digests.sort_unstable_by(digest_order);
}

/// How many ranges of digest space (by the first byte's top bits) sorted digests are merged in,
/// each on its own thread.
pub(super) const RANGES: u8 = 16;

pub(super) fn range_of(digest: &[u8; 32]) -> u8 {
    digest[0] >> 4
}

/// Merges runs of sorted digests into one sorted list: digest space is cut into [`RANGES`]
/// ranges and each range's pieces of every run are merged on their own thread, into their own
/// part of the output.
pub(super) fn merge_runs(runs: &[&[[u8; 32]]]) -> Vec<[u8; 32]> {
    let total = runs.iter().map(|run| run.len()).sum();
    if runs.len() < 2 || total < 1 << 16 {
        let mut all = runs.concat();
        all.sort_by(digest_order);
        return all;
    }
    // bounds[i][r]: where range r starts in run i.
    let bounds: Vec<Vec<usize>> = runs.iter().map(|run| (0..=RANGES).map(|r| run.partition_point(|d| range_of(d) < r)).collect()).collect();
    let piece = |run: usize, range: usize| -> &[[u8; 32]] {
        let (from, to) = (bounds[run][range], bounds[run][range + 1]);
        runs[run].get(from..to).unwrap_or_default()
    };
    let mut out = vec![[0u8; 32]; total];
    let mut slices = Vec::with_capacity(usize::from(RANGES));
    let mut rest = out.as_mut_slice();
    for range in 0..usize::from(RANGES) {
        let size = (0..runs.len()).map(|run| piece(run, range).len()).sum();
        let (slice, after) = rest.split_at_mut(size);
        slices.push((range, slice));
        rest = after;
    }
    let fill = |range: usize, slice: &mut [[u8; 32]]| {
        let mut at = 0;
        for run in 0..runs.len() {
            let part = piece(run, range);
            slice[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        // Sorted pieces one after another: the stable sort merges them.
        slice.sort_by(digest_order);
    };
    std::thread::scope(|scope| {
        for (range, slice) in slices {
            scope.spawn(move || fill(range, slice));
        }
    });
    out
}

/// Every record digest of every batch file, sorted.
pub(super) struct BatchDigests {
    pub(super) sorted: Vec<[u8; 32]>,
}

impl BatchDigests {
    /// The entries of `wanted` (sorted by digest) whose digest is in no batch, by walking both
    /// sorted lists once, galloping over the batch digests: no random lookups, which on a large
    /// bundle would each miss the cache.
    pub(super) fn missing(&self, wanted: &[([u8; 32], u64)]) -> Vec<([u8; 32], u64)> {
        let mut missing = Vec::new();
        let mut rest = self.sorted.as_slice();
        for entry @ (digest, _) in wanted {
            let mut bound = 1;
            while rest.get(bound).is_some_and(|d| digest_order(d, digest) == Ordering::Less) {
                bound = bound.saturating_mul(2);
            }
            // Everything past `bound` is at least `digest`, so the first digest not below it is here.
            let window = rest.get(..bound.saturating_add(1).min(rest.len())).unwrap_or_default();
            let at = window.partition_point(|d| digest_order(d, digest) == Ordering::Less);
            rest = rest.get(at..).unwrap_or_default();
            if rest.first() != Some(digest) {
                missing.push(*entry);
            }
        }
        missing
    }
}

/// One batch file, read: its digests sorted, where they were first out of order, and its usage
/// digest.
pub(super) struct BatchFile {
    pub(super) digests: Vec<[u8; 32]>,
    /// The first digest (0-based) not above the one before it, and the two digests.
    pub(super) unordered: Option<(usize, [u8; 32], [u8; 32])>,
    pub(super) digest: String,
}

pub(super) fn read_batch_file(bytes: &[u8]) -> BatchFile {
    let mut digests: Vec<[u8; 32]> = bytes.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).collect();
    let unordered =
        digests.windows(2).position(|w| digest_order(&w[0], &w[1]) != Ordering::Less).map(|i| (i + 1, digests[i], digests[i + 1]));
    if unordered.is_some() {
        sort_digests(&mut digests);
    }
    let digest = sorted_digest(&mut digests);
    BatchFile { digests, unordered, digest }
}

/// Reads batch files on up to [`MAX_PARTS`] threads, in groups of about equal size.
pub(super) fn read_batch_files<'f>(files: &[&'f [u8]]) -> Vec<BatchFile> {
    let total: usize = files.iter().map(|f| f.len()).sum();
    if total < PART_BYTES {
        return files.iter().map(|f| read_batch_file(f)).collect();
    }
    let per_group = total.div_ceil(MAX_PARTS).max(1);
    let mut groups: Vec<&[&'f [u8]]> = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, file) in files.iter().enumerate() {
        size += file.len();
        if size >= per_group {
            groups.push(&files[start..=i]);
            (start, size) = (i + 1, 0);
        }
    }
    groups.push(&files[start..]);
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            groups.iter().map(|group| scope.spawn(move || group.iter().map(|f| read_batch_file(f)).collect::<Vec<_>>())).collect();
        // A thread that failed is read again here.
        handles
            .into_iter()
            .zip(&groups)
            .flat_map(|(h, group)| h.join().unwrap_or_else(|_| group.iter().map(|f| read_batch_file(f)).collect()))
            .collect()
    })
}

impl Run {
    pub(super) fn batches(&mut self, files: &[(u64, Vec<u8>)], leaves: &Leaves, keys: &Keys) -> BatchDigests {
        let mut seen = BTreeSet::new();
        let mut readable = Vec::with_capacity(files.len());
        for (index, bytes) in files {
            let what = format!("batches/{index}.digests");
            if !seen.insert(*index) {
                self.find(what, "one digest file per batch", "this batch's file again");
                continue;
            }
            let leaf = leaves.batches.get(index);
            if leaf.is_none() {
                let found = leaves.kinds.get(index).map_or_else(|| "no leaf of that index".to_owned(), |k| format!("a {k} leaf"));
                self.find(&what, format!("a usage_batch leaf {index} in log.json"), found);
            }
            if !bytes.len().is_multiple_of(32) {
                self.find(what, "a whole number of 32-byte digests", format!("{} bytes", bytes.len()));
                continue;
            }
            readable.push((*index, what, leaf, bytes.as_slice()));
        }
        let read = read_batch_files(&readable.iter().map(|(.., bytes)| *bytes).collect::<Vec<_>>());
        for ((_, what, leaf, _), file) in readable.iter().zip(&read) {
            let mut good = leaf.is_some();
            if let Some((i, a, b)) = &file.unordered {
                let (a, b) = (canonical::hex(a), canonical::hex(b));
                self.find(what, "digests strictly ascending", format!("digest {} ({b}) after {a}", i + 1));
                good = false;
            }
            let count = u64::try_from(file.digests.len()).unwrap_or(u64::MAX);
            if let Some(leaf) = leaf {
                let logged = leaf.str("digest").unwrap_or("");
                if logged != file.digest {
                    self.find(what, format!("batch digest {logged} ({})", leaf.what("usage_batch")), &file.digest);
                    good = false;
                }
                let records = leaf.value.get("records").and_then(Value::as_u64);
                if records != Some(count) {
                    let logged = records.map_or_else(|| "?".to_owned(), |n| n.to_string());
                    self.find(what, format!("{logged} digests ({})", leaf.what("usage_batch")), format!("{count} digests"));
                    good = false;
                }
            }
            if good {
                self.checked.batches += 1;
            }
        }
        for leaf in leaves.batches.values() {
            if !seen.contains(&leaf.index) {
                self.find(leaf.what("usage_batch"), format!("its digest file batches/{}.digests in the bundle", leaf.index), "none");
            }
            self.batch_signature(leaf, keys);
        }
        // A file with problems still counts for its records: the finding names the file, and a
        // record is then reported only when its own digest is missing.
        BatchDigests { sorted: merge_runs(&read.iter().map(|f| f.digests.as_slice()).collect::<Vec<_>>()) }
    }

    /// A signed batch leaf's signature must verify with a host key of keys.json.
    pub(super) fn batch_signature(&mut self, leaf: &Leaf, keys: &Keys) {
        let Some(value) = leaf.value.get("signed") else { return };
        let what = format!("{} signed", leaf.what("usage_batch"));
        let Some(signed) = Signed::from_json(value) else {
            self.find(what, r#"{"key": "<verifier key>", "signature": "<base64 of 64 bytes>"}"#, shorten(&value.to_string(), 160));
            return;
        };
        let key = match VerifierKey::parse(&signed.key) {
            Ok(key) => key,
            Err(e) => {
                self.find(what, KEY_SHAPE, e.to_string());
                return;
            }
        };
        if !keys.host.contains(&key) {
            self.find(what, "a signature by a host key of keys.json", format!("a signature by {}", signed.key));
            return;
        }
        let digest = leaf.str("digest").unwrap_or("");
        match key.verify(&batch_message(digest), &signed.signature) {
            Ok(()) => self.checked.signed_batches += 1,
            Err(e) => self.find(what, format!("the host's signature of batch digest {digest}"), e.to_string()),
        }
    }
}
