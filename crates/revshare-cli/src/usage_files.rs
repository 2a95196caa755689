//! Reading usage files for settlement: streaming, parallel, deduplicated.
//!
//! A JSON Lines file is read in blocks of a few MiB. Each block is cut into pieces at line ends
//! and the pieces are parsed on all cores (validation, fingerprint, and for selected records the
//! canonical form and its SHA-256) into compact, reusable [`PieceOut`]s. Then the `(host, id)`
//! index, sharded by key hash, takes the records of the block — each shard on its own core, in
//! line order, so the first occurrence of a record always wins. Records selected for the agreement
//! and month go into the shard's rollup; the shards' rollups are merged at the end. Memory is one
//! block plus the index: it does not grow with the file beyond the dedup index.
//!
//! A CloudEvents batch is split into events as it streams in ([`ArraySplitter`]), one event at a
//! time.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use rayon::prelude::*;
use revshare_core::agreement::Agreement;
use revshare_core::decimal::Decimal;
use revshare_core::dedup::{DedupIndex, Seen};
use revshare_core::json::ArraySplitter;
use revshare_core::rollup::{GroupRef, Rollup};
use revshare_core::settle::select;
use revshare_core::time::Period;
use revshare_core::usage::{RecordProblem, UsageRecord, parse_cloudevent, parse_json_line};

/// Bytes read at a time.
const BLOCK: usize = 8 << 20;
/// Bytes of a block parsed as one task: small enough that the task's output is reused from the
/// allocator's free lists rather than mapped (and zeroed) afresh each block.
const PIECE: usize = 192 << 10;
/// Location = file index << 40 | line number.
const LINE_BITS: u32 = 40;

/// What settlement needs from the usage files.
pub struct UsageSummary {
    pub rollup: Rollup,
    /// SHA-256 of each selected distinct record's canonical form.
    pub record_digests: Vec<[u8; 32]>,
    /// Resends of selected records.
    pub selected_duplicates: u64,
    /// Records read (all hosts), and resends of the agreement host's records (any month).
    pub records_read: u64,
    pub duplicates: u64,
}

/// A problem in a usage file, located by file, line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    pub file: String,
    pub line: u64,
    pub column: usize,
    pub record: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for InputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(id) = &self.record {
            write!(f, "record {id}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why reading failed: the files could not be read, or their content is invalid.
pub enum ReadError {
    Io(anyhow::Error),
    Invalid(Vec<InputProblem>),
}

/// Which records are settled: the agreement's host, in the month and the effective range.
#[derive(Clone, Copy)]
pub struct Selection<'a> {
    pub agreement: &'a Agreement,
    pub period: Period,
}

/// What parsing one piece of a block produced, in a compact form without borrows, so the same
/// buffers serve block after block (fresh buffers cost page faults and zeroing at this rate).
#[derive(Default)]
struct PieceOut {
    /// The text fields the index and the rollup need, back to back.
    text: String,
    /// The records, one list per index shard (by key hash), each in line order.
    keys: Vec<Vec<Key>>,
    /// Lines are counted from the piece's start while it is parsed (on any core); the absolute
    /// number of its first line is known, and added, only when the block's pieces are joined.
    first_line: u64,
    lines: u64,
    selected: Vec<SelectedRecord>,
    problems: Vec<InputProblem>,
}

/// One record, as the index sees it.
struct Key {
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
    fn clear(&mut self, shards: usize) {
        self.first_line = 0;
        self.lines = 0;
        self.text.clear();
        self.keys.resize_with(shards, Vec::new);
        self.keys.iter_mut().for_each(Vec::clear);
        self.selected.clear();
        self.problems.clear();
    }

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

struct Shard {
    index: DedupIndex,
    rollup: Rollup,
    digests: Vec<[u8; 32]>,
    selected_duplicates: u64,
    duplicates: u64,
    problems: Vec<InputProblem>,
}

/// Reads and settles-ready every usage file. `-` is standard input.
pub fn read_usage(paths: &[PathBuf], selection: Selection<'_>, progress: &ProgressBar) -> Result<UsageSummary, ReadError> {
    let seed = seed();
    // One index shard per core. The shards grow as needed: sizing them up front from the file
    // size measured slower, as a larger table spreads the same keys over more cache lines.
    let shard_count = rayon::current_num_threads().max(1);
    let mut shards: Vec<Shard> = (0..shard_count)
        .map(|_| Shard {
            index: DedupIndex::new(seed),
            rollup: Rollup::new(),
            digests: Vec::new(),
            selected_duplicates: 0,
            duplicates: 0,
            problems: Vec::new(),
        })
        .collect();
    let mut problems = Vec::new();
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let mut records_read = 0u64;
    let mut pool: Vec<PieceOut> = Vec::new();
    for (file_index, path) in paths.iter().enumerate() {
        let mut reader = open(path).map_err(ReadError::Io)?;
        let file_bytes = std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.len());
        let mut ctx = FileContext {
            file_index: u64::try_from(file_index).unwrap_or(0),
            file_bytes,
            names: &names,
            selection,
            progress,
            pool: &mut pool,
        };
        records_read += ctx
            .read_file(&mut *reader, &mut shards, &mut problems)
            .map_err(|e| ReadError::Io(anyhow::anyhow!("cannot read {}: {e}", path.display())))?;
    }
    progress.finish_and_clear();
    let mut summary =
        UsageSummary { rollup: Rollup::new(), record_digests: Vec::new(), selected_duplicates: 0, records_read, duplicates: 0 };
    for shard in shards {
        problems.extend(shard.problems);
        summary.rollup.merge(&shard.rollup).map_err(|e| ReadError::Io(e.into()))?;
        summary.record_digests.extend(shard.digests);
        summary.selected_duplicates += shard.selected_duplicates;
        summary.duplicates += shard.duplicates;
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(ReadError::Invalid(problems))
    }
}

fn open(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(io::stdin()));
    }
    File::open(path).map(|f| Box::new(f) as Box<dyn Read + Send>).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
}

/// A random seed for the index's hasher, so crafted ids cannot flood one bucket.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

struct FileContext<'a> {
    file_index: u64,
    /// The file's size, when it is a file (not standard input).
    file_bytes: Option<u64>,
    names: &'a [String],
    selection: Selection<'a>,
    progress: &'a ProgressBar,
    /// Piece outputs, reused block after block.
    pool: &'a mut Vec<PieceOut>,
}

impl FileContext<'_> {
    fn file_name(&self) -> String {
        self.names.get(usize::try_from(self.file_index).unwrap_or(usize::MAX)).cloned().unwrap_or_default()
    }

    /// Locates a problem at a byte offset of a record's text that starts on `line`.
    fn problem(&self, line: u64, text: &[u8], record: Option<String>, p: RecordProblem) -> InputProblem {
        let before = &text[..p.offset.min(text.len())];
        let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        InputProblem { file: self.file_name(), line: line + count_lines(before), column, record, field: p.field, message: p.message }
    }

    /// Reads one file; returns the number of records in it.
    fn read_file(&mut self, reader: &mut (dyn Read + Send), shards: &mut [Shard], problems: &mut Vec<InputProblem>) -> io::Result<u64> {
        let mut buf: Vec<u8> = Vec::with_capacity(BLOCK + (64 << 10));
        // The first non-blank byte tells JSON Lines (`{`) from a CloudEvents batch (`[`).
        let mut eof = false;
        while !eof && buf.iter().all(u8::is_ascii_whitespace) {
            let target = buf.len() + BLOCK;
            eof = fill(reader, &mut buf, target)?;
        }
        match buf.iter().find(|b| !b.is_ascii_whitespace()) {
            None => Ok(0),
            Some(b'[') => self.read_cloudevents(reader, buf, eof, shards, problems),
            Some(_) => self.read_json_lines(reader, buf, eof, shards, problems),
        }
    }

    /// Reads JSON Lines block by block. A reader thread fills the next block while this one is
    /// parsed, so reading from disk or the page cache overlaps the work.
    fn read_json_lines(
        &mut self,
        reader: &mut (dyn Read + Send),
        first: Vec<u8>,
        eof: bool,
        shards: &mut [Shard],
        problems: &mut Vec<InputProblem>,
    ) -> io::Result<u64> {
        std::thread::scope(|scope| {
            let (to_reader, requests) = std::sync::mpsc::channel::<(Vec<u8>, usize)>();
            let (to_main, filled) = std::sync::mpsc::channel::<io::Result<(Vec<u8>, bool)>>();
            scope.spawn(move || {
                for (mut buf, target) in requests {
                    let result = fill(reader, &mut buf, target).map(|eof| (buf, eof));
                    if to_main.send(result).is_err() {
                        break;
                    }
                }
            });
            let next = || filled.recv().map_err(|_| io::Error::other("the reader thread stopped"))?;
            let mut current = (first, eof);
            let mut spare: Vec<u8> = Vec::with_capacity(BLOCK + (64 << 10));
            let mut next_line = 1u64;
            let mut records = 0u64;
            loop {
                let (buf, eof) = current;
                // Up to the last complete line, or everything at the end of the file.
                let cut = if eof { buf.len() } else { memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1) };
                if cut == 0 && !eof {
                    // One line longer than a block: read on until it ends.
                    let target = buf.len() * 2;
                    let _ = to_reader.send((buf, target));
                    current = next()?;
                    continue;
                }
                if !eof {
                    // The reader fills the spare buffer after the unfinished last line.
                    spare.clear();
                    spare.extend_from_slice(&buf[cut..]);
                    let _ = to_reader.send((std::mem::take(&mut spare), BLOCK));
                }
                let (lines, offered) = self.process_lines(&buf[..cut], next_line, shards, problems);
                if next_line == 1 && !eof {
                    self.reserve_for_file(offered, cut, shards);
                }
                next_line += lines;
                records += offered;
                self.progress.inc(u64::try_from(cut).unwrap_or(0));
                if eof {
                    return Ok(records);
                }
                spare = buf;
                current = next()?;
            }
        })
    }

    /// After the first block, sizes the index for the whole file at the rate of that block, so
    /// the tables grow once instead of doubling their way up (each doubling rehashes every key).
    fn reserve_for_file(&self, offered: u64, block_bytes: usize, shards: &mut [Shard]) {
        let Some(file_bytes) = self.file_bytes else { return };
        let expected = u128::from(offered) * u128::from(file_bytes) / u128::try_from(block_bytes.max(1)).unwrap_or(1);
        let per_shard = usize::try_from(expected / u128::try_from(shards.len().max(1)).unwrap_or(1)).unwrap_or(0);
        shards.par_iter_mut().for_each(|shard| {
            shard.index.reserve(per_shard + per_shard / 16);
            shard.digests.reserve(per_shard + per_shard / 16);
        });
    }

    /// Parses a block of whole lines on all cores and offers its records to the index.
    /// Returns the lines in the block and the records offered.
    fn process_lines(&mut self, block: &[u8], first_line: u64, shards: &mut [Shard], problems: &mut Vec<InputProblem>) -> (u64, u64) {
        let pieces = split_pieces(block, PIECE);
        let mut outs = std::mem::take(self.pool);
        outs.resize_with(outs.len().max(pieces.len()), PieceOut::default);
        let this = &*self;
        let index = &shards[0].index;
        let shard_count = shards.len();
        outs[..pieces.len()].par_iter_mut().zip(pieces.par_iter()).for_each(|(out, range)| {
            out.clear(shard_count);
            let piece = &block[range.clone()];
            let ends = memchr::memchr_iter(b'\n', piece).chain((piece.last() != Some(&b'\n')).then_some(piece.len()));
            let mut from = 0;
            for (line, end) in (0..).zip(ends) {
                let raw = &piece[from..end];
                let text = raw.strip_suffix(b"\r").unwrap_or(raw);
                if !text.iter().all(u8::is_ascii_whitespace) {
                    this.accept(line, text, parse_json_line(text), index, out);
                }
                from = end + 1;
                out.lines = line + 1;
            }
        });
        let mut next_line = first_line;
        for out in &mut outs[..pieces.len()] {
            out.first_line = next_line;
            out.problems.iter_mut().for_each(|p| p.line += next_line);
            next_line += out.lines;
        }
        let records = self.offer(&outs[..pieces.len()], shards, problems);
        *self.pool = outs;
        (next_line - first_line, records)
    }

    fn read_cloudevents(
        &mut self,
        reader: &mut dyn Read,
        mut buf: Vec<u8>,
        mut eof: bool,
        shards: &mut [Shard],
        problems: &mut Vec<InputProblem>,
    ) -> io::Result<u64> {
        let mut splitter = ArraySplitter::default();
        let mut base = 0usize; // absolute offset of buf[0]
        let mut fed = 0usize; // bytes of buf the splitter has seen
        let mut line_at_base = 1u64;
        let mut records = 0u64;
        let mut ranges: Vec<Range<usize>> = Vec::new();
        loop {
            let fed_result = splitter.feed(&buf[fed..], &mut ranges);
            fed = buf.len();
            let mut outs = std::mem::take(self.pool);
            outs.resize_with(outs.len().max(1), PieceOut::default);
            outs[0].clear(shards.len());
            let mut line = line_at_base;
            let mut counted_to = 0;
            for range in ranges.drain(..) {
                let (start, end) = (range.start - base, range.end - base);
                line += count_lines(&buf[counted_to..start]);
                counted_to = start;
                let event = &buf[start..end];
                self.accept(line, event, parse_cloudevent(event), &shards[0].index, &mut outs[0]);
            }
            records += self.offer(&outs[..1], shards, problems);
            *self.pool = outs;
            if let Err(e) = fed_result.and_then(|()| if eof { splitter.finish() } else { Ok(()) }) {
                let at = e.offset.saturating_sub(base).min(buf.len());
                let line = line_at_base + count_lines(&buf[..at]);
                problems.push(InputProblem {
                    file: self.file_name(),
                    line,
                    column: 1,
                    record: None,
                    field: None,
                    message: format!("not a valid CloudEvents batch: {}", e.message),
                });
                return Ok(records);
            }
            if eof {
                return Ok(records);
            }
            // Keep only the event still being read.
            let consumed = splitter.pending_start().map_or(buf.len(), |s| s - base);
            line_at_base += count_lines(&buf[..consumed]);
            self.progress.inc(u64::try_from(consumed).unwrap_or(0));
            buf.drain(..consumed);
            base += consumed;
            fed -= consumed;
            let target = buf.len() + BLOCK;
            eof = fill(reader, &mut buf, target)?;
        }
    }

    /// Checks a parsed record against the selection and queues it for the index.
    fn accept(&self, line: u64, text: &[u8], parsed: Result<UsageRecord<'_>, Vec<RecordProblem>>, index: &DedupIndex, out: &mut PieceOut) {
        let record = match parsed {
            Ok(record) => record,
            Err(found) => {
                let id = record_id_of(text);
                let problems: Vec<InputProblem> = found.into_iter().map(|p| self.problem(line, text, id.clone(), p)).collect();
                out.problems.extend(problems);
                return;
            }
        };
        let Selection { agreement, period } = self.selection;
        // Records of other hosts are validated, and that is all: this statement does not depend
        // on them, and their idempotency is their own agreements' (and the store's) business.
        if !revshare_core::ids::same_id(&record.host, agreement.host().as_str()) {
            return;
        }
        let scope = select(agreement, period, &record);
        if scope.is_some() && record.currency != agreement.currency() {
            let message =
                format!("field `currency` is {} but agreement {} is in {}", record.currency, agreement.id(), agreement.currency());
            let offset = find_field(text, "currency");
            let problem = self.problem(
                line,
                text,
                Some(record.id.to_string()),
                RecordProblem { offset, field: Some("currency".to_owned()), message },
            );
            out.problems.push(problem);
            return;
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
            None => index.fingerprint(&record),
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
        let hash = index.hash_key(&record.host, &record.id);
        let shard = usize::try_from(hash % u64::try_from(out.keys.len()).unwrap_or(1)).unwrap_or(0);
        out.keys[shard].push(Key { line, hash, fingerprint, text_at, host_len: record.host.len(), id_len: record.id.len(), selected });
    }

    /// Offers parsed records to the sharded index, each shard on its own core and in line order.
    /// Returns how many records were offered.
    fn offer(&self, outs: &[PieceOut], shards: &mut [Shard], problems: &mut Vec<InputProblem>) -> u64 {
        let mut offered = 0u64;
        for out in outs {
            problems.extend(out.problems.iter().cloned());
            offered += out.keys.iter().map(|k| u64::try_from(k.len()).unwrap_or(0)).sum::<u64>();
        }
        let file_bits = self.file_index << LINE_BITS;
        shards.par_iter_mut().enumerate().for_each(|(k, shard)| {
            for out in outs {
                for key in &out.keys[k] {
                    let (host, id) = out.host_id(key);
                    let line = out.first_line + key.line;
                    match shard.index.offer_hashed(key.hash, host, id, key.fingerprint, file_bits | line) {
                        Seen::New => {
                            if let Some(record) = key.selected.and_then(|i| out.selected.get(i)) {
                                if let Err(e) = shard.rollup.add_values(out.group(record), record.counts, record.revenue) {
                                    let problem = InputProblem { file: self.file_name(), line, column: 1, record: Some(id.to_owned()), field: None, message: e.to_string() };
                                    shard.problems.push(problem);
                                }
                                shard.digests.push(record.digest);
                            }
                        }
                        Seen::Duplicate { .. } => {
                            shard.duplicates += 1;
                            shard.selected_duplicates += u64::from(key.selected.is_some());
                        }
                        Seen::Conflict { first } => {
                            let file = self.names.get(usize::try_from(first >> LINE_BITS).unwrap_or(usize::MAX)).cloned().unwrap_or_default();
                            let first_line = first & ((1 << LINE_BITS) - 1);
                            let message = format!(
                                "conflicts with the record of host {host} with the same id at {file}:{first_line}: a resend must be identical; correct one of them or give it a new id"
                            );
                            shard.problems.push(InputProblem { file: self.file_name(), line, column: 1, record: Some(id.to_owned()), field: None, message });
                        }
                    }
                }
            }
        });
        offered
    }
}

/// Reads until `buf` holds at least `target` bytes or the input ends; true at the end.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>, target: usize) -> io::Result<bool> {
    // `read_to_end` on a `take` reads into the spare capacity without zeroing it first.
    let want = target.saturating_sub(buf.len());
    buf.reserve(want);
    let got = reader.take(u64::try_from(want).unwrap_or(u64::MAX)).read_to_end(buf)?;
    Ok(got < want)
}

fn count_lines(bytes: &[u8]) -> u64 {
    u64::try_from(memchr::memchr_iter(b'\n', bytes).count()).unwrap_or(0)
}

/// Cuts a block of whole lines into pieces of about `size` bytes at line ends.
fn split_pieces(block: &[u8], size: usize) -> Vec<Range<usize>> {
    let mut pieces = Vec::with_capacity(block.len() / size + 1);
    let mut start = 0;
    while start < block.len() {
        let target = (start + size).min(block.len());
        let end =
            if target == block.len() { target } else { memchr::memchr(b'\n', &block[target..]).map_or(block.len(), |i| target + i + 1) };
        pieces.push(start..end);
        start = end;
    }
    pieces
}

/// Where `"name"` first appears in a record's text (for pointing at a field), else 0.
fn find_field(text: &[u8], name: &str) -> usize {
    let needle = format!("\"{name}\"");
    memchr::memmem::find(text, needle.as_bytes()).unwrap_or(0)
}

/// The record's id, if the text has a readable one, to name it in errors.
fn record_id_of(text: &[u8]) -> Option<String> {
    let members = revshare_core::json::parse_object(text).ok()?;
    members.into_iter().find(|m| m.key == "id").and_then(|m| match m.value {
        revshare_core::json::JsonValue::String(s) if revshare_core::ids::is_record_id(&s) => Some(s.into_owned()),
        _ => None,
    })
}
