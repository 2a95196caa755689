//! The settle path's use of the records: idempotency, selection and exact sums.
//!
//! Records of other hosts are only validated (the reader does that): the statement does not
//! depend on them. Each record of the agreement's host gets a compact, borrow-free entry in its
//! piece (so the piece's buffers serve block after block), with its key's hash and its
//! fingerprint — the first half of its SHA-256 when it is selected for the agreement and month
//! (the digest the usage set needs anyway), else the index's keyed hash; identical records are
//! selected alike, so a resend always meets the same kind of fingerprint. Selected records also
//! carry what the rollup and the usage digest need. All of this runs on the parsing threads.
//!
//! Then the `(host, id)` index takes the block. It is one shard per thread of the pool, each
//! holding the keys whose hash names it, so each shard sees every occurrence of its keys; the
//! shards run on every core at once, each in input order, so the first occurrence of a record
//! always wins. A selected new record goes into its shard's rollup and usage set. The shards are
//! sized for the whole file at the rate of its first block, so they need not double their way up
//! (an estimate: they still grow past it). Rollups and usage sets are sums, so merging the
//! shards' at the end gives the same result however the records were split between shards and
//! threads. The hasher is seeded at random per run, so crafted ids cannot flood one bucket.

use std::path::PathBuf;

use indicatif::ProgressBar;
use rayon::prelude::*;
use revshare_core::agreement::Agreement;
use revshare_core::decimal::Decimal;
use revshare_core::dedup::{DedupIndex, Seen};
use revshare_core::ids::same_id;
use revshare_core::rollup::{GroupRef, Rollup};
use revshare_core::settle::select;
use revshare_core::time::Period;
use revshare_core::usage::{RecordProblem, UsageRecord};
use revshare_core::usage_set::UsageSet;

use crate::reading::{InputProblem, LINE_BITS, Piece, ReadError, RecordSink, display_names, place, read_files};

/// What settlement needs from the usage files.
pub struct UsageSummary {
    pub rollup: Rollup,
    /// The usage set of the selected distinct records.
    pub counted: UsageSet,
    /// Records read (all hosts), and resends of the agreement host's records (any month).
    pub records_read: u64,
    pub duplicates: u64,
}

/// Reads every usage file for the settlement of `agreement` in `period`.
pub fn read_usage(paths: &[PathBuf], agreement: &Agreement, period: Period, progress: &ProgressBar) -> Result<UsageSummary, ReadError> {
    let seed = seed();
    // One index shard per core. The shards grow as needed, sized after the first block.
    let shards = (0..rayon::current_num_threads().max(1))
        .map(|_| Shard {
            index: DedupIndex::new(seed),
            rollup: Rollup::new(),
            counted: UsageSet::new(),
            duplicates: 0,
            problems: Vec::new(),
        })
        .collect();
    let names = display_names(paths);
    let mut sink = SettleSink { agreement, period, hasher: DedupIndex::new(seed), shards, names: names.clone() };
    let read = read_files(paths, &names, &mut sink, progress);
    // Conflicts are found by the shards: they join the problems the reader found, if any.
    let mut problems: Vec<InputProblem> = sink.shards.iter_mut().flat_map(|s| s.problems.drain(..)).collect();
    let records_read = match read {
        Ok(records) if problems.is_empty() => records,
        Ok(_) => return Err(ReadError::Invalid(sorted(problems))),
        Err(ReadError::Invalid(found)) => {
            problems.extend(found);
            return Err(ReadError::Invalid(sorted(problems)));
        }
        Err(other) => return Err(other),
    };
    let mut summary = UsageSummary { rollup: Rollup::new(), counted: UsageSet::new(), records_read, duplicates: 0 };
    for shard in sink.shards {
        summary.rollup.merge(&shard.rollup).map_err(|e| ReadError::Io(e.into()))?;
        summary.counted.union(&shard.counted);
        summary.duplicates += shard.duplicates;
    }
    Ok(summary)
}

fn sorted(mut problems: Vec<InputProblem>) -> Vec<InputProblem> {
    problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    problems
}

/// A random seed for the index's hasher, so crafted ids cannot flood one bucket.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// How many keys ahead the index's slots are read, in batches of this many (see
/// [`DedupIndex::warm`]).
const WARM_AHEAD: usize = 16;

struct SettleSink<'a> {
    agreement: &'a Agreement,
    period: Period,
    /// Hashes keys and fingerprints while pieces are parsed (same seed as the shards).
    hasher: DedupIndex,
    shards: Vec<Shard>,
    names: Vec<String>,
}

struct Shard {
    index: DedupIndex,
    rollup: Rollup,
    counted: UsageSet,
    duplicates: u64,
    problems: Vec<InputProblem>,
}

/// What one piece collects, without borrows so its buffers are reused.
#[derive(Default)]
pub struct PieceOut {
    /// The text fields the index and the rollup need, back to back.
    text: String,
    /// The host's records, one list per index shard (by key hash), each in line order.
    keys: Vec<Vec<Key>>,
    selected: Vec<SelectedRecord>,
}

/// One record, as the index sees it.
struct Key {
    /// counted from the start of the piece
    line: u64,
    hash: u64,
    fingerprint: [u8; 16],
    /// host then id, in `PieceOut::text`
    text_at: usize,
    host_len: usize,
    id_len: usize,
    /// index into `PieceOut::selected`, for records selected for the agreement and month
    selected: Option<usize>,
}

/// What the rollup and the usage digest need of a selected record.
struct SelectedRecord {
    /// model, use case, region, in `PieceOut::text`
    text_at: usize,
    lens: [usize; 3],
    scope: Option<usize>,
    counts: [u64; 3],
    revenue: Decimal,
    digest: [u8; 32],
}

impl PieceOut {
    fn push_text(&mut self, parts: &[&str]) -> usize {
        let at = self.text.len();
        parts.iter().for_each(|p| self.text.push_str(p));
        at
    }

    fn host_id(&self, key: &Key) -> (&str, &str) {
        let host_end = key.text_at + key.host_len;
        (&self.text[key.text_at..host_end], &self.text[host_end..host_end + key.id_len])
    }

    fn group(&self, record: &SelectedRecord) -> GroupRef<'_> {
        let [m, u, r] = record.lens;
        let at = record.text_at;
        GroupRef {
            model: &self.text[at..at + m],
            use_case: &self.text[at + m..at + m + u],
            region: &self.text[at + m + u..at + m + u + r],
            scope: record.scope,
        }
    }
}

impl RecordSink for SettleSink<'_> {
    type Piece = PieceOut;

    fn reset(&self, piece: &mut PieceOut) {
        piece.text.clear();
        piece.keys.resize_with(self.shards.len(), Vec::new);
        piece.keys.iter_mut().for_each(Vec::clear);
        piece.selected.clear();
    }

    fn accept(&self, line: u64, record: UsageRecord<'_>, out: &mut PieceOut) -> Result<(), RecordProblem> {
        let agreement = self.agreement;
        // Records of other hosts are validated, and that is all: this statement does not depend
        // on them, and their idempotency is their own agreements' (and the store's) business.
        if !same_id(&record.host, agreement.host().as_str()) {
            return Ok(());
        }
        let scope = select(agreement, self.period, &record);
        if scope.is_some() && record.currency != agreement.currency() {
            let message =
                format!("field `currency` is {} but agreement {} is in {}", record.currency, agreement.id(), agreement.currency());
            return Err(RecordProblem { offset: 0, field: Some("currency".to_owned()), message });
        }
        let digest = scope.map(|_| record.digest());
        // A selected record's fingerprint is the first half of its SHA-256, already at hand; the
        // others get the keyed hash. Identical records are selected alike, so a resend always
        // meets the same kind of fingerprint, and different records differ either way.
        let fingerprint = match &digest {
            Some(d) => {
                let mut f = [0u8; 16];
                f.copy_from_slice(&d[..16]);
                f
            }
            None => self.hasher.fingerprint(&record),
        };
        let selected = scope.zip(digest).map(|(scope, digest)| {
            let text_at = out.push_text(&[&record.model, &record.use_case, &record.region]);
            out.selected.push(SelectedRecord {
                text_at,
                lens: [record.model.len(), record.use_case.len(), record.region.len()],
                scope,
                counts: [record.requests, record.input_tokens, record.output_tokens],
                revenue: record.revenue,
                digest,
            });
            out.selected.len() - 1
        });
        let text_at = out.push_text(&[&record.host, &record.id]);
        let hash = self.hasher.hash_key(&record.host, &record.id);
        let shard = usize::try_from(hash % u64::try_from(out.keys.len()).unwrap_or(1)).unwrap_or(0);
        out.keys[shard].push(Key { line, hash, fingerprint, text_at, host_len: record.host.len(), id_len: record.id.len(), selected });
        Ok(())
    }

    /// Offers the block's records to the sharded index, each shard on its own core and in line
    /// order.
    fn take_block(&mut self, file: u64, pieces: &mut [Piece<PieceOut>], _problems: &mut Vec<InputProblem>) -> u64 {
        let pieces = &*pieces;
        let offered = pieces.iter().flat_map(|p| &p.state.keys).map(|k| u64::try_from(k.len()).unwrap_or(0)).sum();
        let names = &self.names;
        let file_name = names.get(usize::try_from(file).unwrap_or(usize::MAX)).cloned().unwrap_or_default();
        self.shards.par_iter_mut().enumerate().for_each(|(k, shard)| {
            for piece in pieces {
                let out = &piece.state;
                let keys = &out.keys[k];
                for (n, key) in keys.iter().enumerate() {
                    if n % WARM_AHEAD == 0 {
                        shard.index.warm(keys.iter().skip(n + WARM_AHEAD).take(WARM_AHEAD).map(|k| k.hash));
                    }
                    let (host, id) = out.host_id(key);
                    let line = piece.first_line + key.line;
                    let problem = |message: String| InputProblem { file: file_name.clone(), line, column: 1, record: Some(id.to_owned()), field: None, message };
                    match shard.index.offer_hashed(key.hash, host, id, key.fingerprint, file << LINE_BITS | line) {
                        Seen::New => {
                            if let Some(record) = key.selected.and_then(|i| out.selected.get(i)) {
                                if let Err(e) = shard.rollup.add_values(out.group(record), record.counts, record.revenue) {
                                    shard.problems.push(problem(e.to_string()));
                                }
                                shard.counted.insert(&record.digest);
                            }
                        }
                        Seen::Duplicate { .. } => shard.duplicates += 1,
                        Seen::Conflict { first } => {
                            let (first_file, first_line) = place(names, first);
                            shard.problems.push(problem(format!(
                                "conflicts with the record of host {host} with the same id at {first_file}:{first_line}: a resend must be identical; correct one of them or give it a new id"
                            )));
                        }
                    }
                }
            }
        });
        offered
    }

    /// Sizes the index for the whole file at the rate of the first block, so the tables grow
    /// once instead of doubling their way up (each doubling rehashes every key).
    fn first_block(&mut self, records: u64, block_bytes: usize, file_bytes: u64) {
        let expected = crate::reading::estimate(records, block_bytes, file_bytes);
        let per_shard = usize::try_from(expected / u64::try_from(self.shards.len().max(1)).unwrap_or(1)).unwrap_or(0);
        self.shards.par_iter_mut().for_each(|shard| {
            shard.index.reserve(per_shard + per_shard / 16);
        });
    }
}
