//! Reading usage files: streaming, parallel, and generic over what is done with the records.
//!
//! A JSON Lines file is read in blocks of 8 MiB (`BLOCK`); a reader thread fills the next block
//! while this one is worked on, so reading overlaps parsing. Each block is cut at line ends into
//! pieces of about 192 KiB (`PIECE`), parsed on the threads of the calling rayon pool (every core
//! for `settle`; half of them for `revshare ingest`, whose store has a pool of its own, see
//! `store_cmds.rs`). Each parsed record goes to the [`RecordSink`] on the thread that parsed it,
//! into the piece's own state, so nothing is shared while parsing; when the block is done, the
//! sink takes the pieces in input order ([`RecordSink::take_block`]), so whatever depends on
//! order (which occurrence of a record is first) is decided there. The pieces' buffers are reused
//! block after block. A CloudEvents batch is split into events as it streams in
//! ([`ArraySplitter`]) and parsed on this thread. Memory is one block plus what the sink keeps: it
//! does not grow with the file.
//!
//! Every problem is located here — file, input line number, column, record id, field — so a sink
//! only says what is wrong with a record, not where. A record's input location travels as one
//! `u64`: the file's index above [`LINE_BITS`], its line number below.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use rayon::prelude::*;
use revshare_core::json::ArraySplitter;
use revshare_core::usage::{RecordProblem, UsageRecord, parse_cloudevent, parse_json_line};

/// Bytes read at a time.
const BLOCK: usize = 8 << 20;
/// Bytes of a block parsed as one task: small enough that a piece's state is reused from the
/// allocator's free lists rather than mapped (and zeroed) afresh each block.
const PIECE: usize = 192 << 10;
/// A location is `file index << LINE_BITS | line number`.
pub const LINE_BITS: u32 = 40;

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

/// How many problems of one kind (same file, field and message) are listed one by one; the
/// rest are counted in one line.
pub const SAME_PROBLEM_LISTED: usize = 3;

/// Every problem on its own line, in file and line order, then `closing`. A problem repeated
/// across records (an unregistered host, a currency the agreement is not in) is listed
/// [`SAME_PROBLEM_LISTED`] times, and the rest counted in one line with the lines they are on.
pub fn report(mut problems: Vec<InputProblem>, closing: &str) -> String {
    use std::collections::HashMap;
    use std::fmt::Write as _;
    problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    // A kind of problem: file, field, message.
    type Kind<'p> = (&'p str, Option<&'p str>, &'p str);
    // For each kind: how many, and the lines of those not listed.
    let mut kinds: HashMap<Kind<'_>, (usize, u64, u64)> = HashMap::new();
    let mut text = String::new();
    let mut more: Vec<Kind<'_>> = Vec::new();
    for p in &problems {
        let key = (p.file.as_str(), p.field.as_deref(), p.message.as_str());
        let (seen, first, last) = kinds.entry(key).or_insert((0, p.line, p.line));
        *seen += 1;
        match *seen {
            n if n <= SAME_PROBLEM_LISTED => {
                let _ = writeln!(text, "{p}");
            }
            n => {
                if n == SAME_PROBLEM_LISTED + 1 {
                    *first = p.line;
                    more.push(key);
                }
                *last = p.line;
            }
        }
    }
    for key @ (file, _, message) in more {
        let (seen, first, last) = kinds[&key];
        let hidden = crate::report::counted(u64::try_from(seen - SAME_PROBLEM_LISTED).unwrap_or(u64::MAX), "more record");
        let _ = writeln!(text, "{file}:{first}-{last}: {hidden} with the same problem: {message}");
    }
    let _ = writeln!(text, "{closing}");
    text
}

/// Why reading failed: the files could not be read, or their content is invalid.
pub enum ReadError {
    Io(anyhow::Error),
    Invalid(Vec<InputProblem>),
}

/// What is done with the records read: per record on any core, then per block in order.
pub trait RecordSink: Sync {
    /// What one piece of a block collects; reused block after block.
    type Piece: Default + Send + Sync;

    /// Empties a piece for the next block.
    fn reset(&self, piece: &mut Self::Piece);

    /// Takes one valid record, at a line counted from the start of its piece. A record the sink
    /// refuses (say, in the wrong currency) comes back as a problem, which the reader locates.
    fn accept(&self, line: u64, record: UsageRecord<'_>, piece: &mut Self::Piece) -> Result<(), RecordProblem>;

    /// Takes a block's pieces in order, with the absolute number of each piece's first line and
    /// the file's index (it may move what they collected out). Returns the records taken and adds
    /// any problems.
    fn take_block(&mut self, file: u64, pieces: &mut [Piece<Self::Piece>], problems: &mut Vec<InputProblem>) -> u64;

    /// Called after the first block of a file whose size is known, to size what the sink keeps
    /// ([`estimate`]).
    fn first_block(&mut self, _records: u64, _block_bytes: usize, _file_bytes: u64) {}

    /// Whether to read on, asked before each block: a sink whose consumer stopped, or whose user
    /// pressed Ctrl-C, says no, and the reader returns what it took so far.
    fn keep_reading(&self) -> bool {
        true
    }
}

/// The records a file of `file_bytes` holds at the rate of its first block: a hint for sizing,
/// never a count.
pub fn estimate(records: u64, block_bytes: usize, file_bytes: u64) -> u64 {
    let block_bytes = u128::try_from(block_bytes.max(1)).unwrap_or(1);
    u64::try_from(u128::from(records) * u128::from(file_bytes) / block_bytes).unwrap_or(u64::MAX)
}

/// A piece of a block: the sink's state and where its lines start.
#[derive(Default)]
pub struct Piece<P> {
    pub state: P,
    pub first_line: u64,
    lines: u64,
    problems: Vec<InputProblem>,
}

/// How problems name the files given on the command line (`-` is standard input).
pub fn display_names(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| if p.as_os_str() == "-" { "<standard input>".to_owned() } else { p.display().to_string() }).collect()
}

/// Reads every file into the sink; `-` is standard input. `names` are how problems name the
/// files ([`display_names`]). Returns the records read, or every problem found (in no
/// particular order).
pub fn read_files<S: RecordSink>(paths: &[PathBuf], names: &[String], sink: &mut S, progress: &ProgressBar) -> Result<u64, ReadError> {
    let mut problems = Vec::new();
    let mut records = 0u64;
    let mut pool: Vec<Piece<S::Piece>> = Vec::new();
    for (file_index, path) in paths.iter().enumerate() {
        if !sink.keep_reading() {
            break;
        }
        let mut reader = open(path).map_err(ReadError::Io)?;
        let file_bytes = std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.len());
        let mut file = FileReader { file_index: u64::try_from(file_index).unwrap_or(0), file_bytes, names, progress, pool: &mut pool };
        records += file
            .read(&mut *reader, sink, &mut problems)
            .map_err(|e| ReadError::Io(anyhow::anyhow!("cannot read {}: {e}", path.display())))?;
    }
    progress.finish_and_clear();
    if problems.is_empty() { Ok(records) } else { Err(ReadError::Invalid(problems)) }
}

/// The name of the file a location is in, and its line.
pub fn place(names: &[String], location: u64) -> (String, u64) {
    let file = names.get(usize::try_from(location >> LINE_BITS).unwrap_or(usize::MAX)).cloned().unwrap_or_default();
    (file, location & ((1 << LINE_BITS) - 1))
}

fn open(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(io::stdin()));
    }
    File::open(path).map(|f| Box::new(f) as Box<dyn Read + Send>).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
}

struct FileReader<'a, P> {
    file_index: u64,
    /// The file's size, when it is a file (not standard input).
    file_bytes: Option<u64>,
    names: &'a [String],
    progress: &'a ProgressBar,
    /// Pieces, reused block after block.
    pool: &'a mut Vec<Piece<P>>,
}

impl<P: Default + Send + Sync> FileReader<'_, P> {
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

    /// Hands one parsed record to the sink, or records its problems.
    fn accept<S: RecordSink<Piece = P>>(
        &self,
        sink: &S,
        line: u64,
        text: &[u8],
        parsed: Result<UsageRecord<'_>, Vec<RecordProblem>>,
        piece: &mut Piece<P>,
    ) {
        let found = match parsed {
            Ok(record) => {
                // Kept to name the record if the sink refuses it: borrowed, so no copy per record.
                let id = record.id.clone();
                match sink.accept(line, record, &mut piece.state) {
                    Ok(()) => return,
                    Err(mut problem) => {
                        // A sink names the field; find it in the text to point at it.
                        if let (0, Some(field)) = (problem.offset, &problem.field) {
                            problem.offset = memchr::memmem::find(text, format!("\"{field}\"").as_bytes()).unwrap_or(0);
                        }
                        return piece.problems.push(self.problem(line, text, Some(id.into_owned()), problem));
                    }
                }
            }
            Err(found) => found,
        };
        let id = record_id_of(text);
        let located: Vec<InputProblem> = found.into_iter().map(|p| self.problem(line, text, id.clone(), p)).collect();
        piece.problems.extend(located);
    }

    /// Reads one file; returns the records in it.
    fn read<S: RecordSink<Piece = P>>(
        &mut self,
        reader: &mut (dyn Read + Send),
        sink: &mut S,
        problems: &mut Vec<InputProblem>,
    ) -> io::Result<u64> {
        let mut buf: Vec<u8> = Vec::with_capacity(BLOCK + (64 << 10));
        // The first non-blank byte tells JSON Lines (`{`) from a CloudEvents batch (`[`).
        let mut eof = false;
        while !eof && buf.iter().all(u8::is_ascii_whitespace) {
            let target = buf.len() + BLOCK;
            eof = fill(reader, &mut buf, target)?;
        }
        match buf.iter().find(|b| !b.is_ascii_whitespace()) {
            None => Ok(0),
            Some(b'[') => self.read_cloudevents(reader, buf, eof, sink, problems),
            Some(_) => self.read_json_lines(reader, buf, eof, sink, problems),
        }
    }

    /// Reads JSON Lines block by block. A reader thread fills the next block while this one is
    /// parsed, so reading from disk or the page cache overlaps the work.
    fn read_json_lines<S: RecordSink<Piece = P>>(
        &mut self,
        reader: &mut (dyn Read + Send),
        first: Vec<u8>,
        eof: bool,
        sink: &mut S,
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
                if !sink.keep_reading() {
                    return Ok(records);
                }
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
                let (lines, taken) = self.process_lines(&buf[..cut], next_line, sink, problems);
                if let (1, false, Some(file_bytes)) = (next_line, eof, self.file_bytes) {
                    sink.first_block(taken, cut, file_bytes);
                }
                next_line += lines;
                records += taken;
                self.progress.inc(u64::try_from(cut).unwrap_or(0));
                if eof {
                    return Ok(records);
                }
                spare = buf;
                current = next()?;
            }
        })
    }

    /// Parses a block of whole lines on all cores and hands it to the sink.
    /// Returns the lines in the block and the records taken.
    fn process_lines<S: RecordSink<Piece = P>>(
        &mut self,
        block: &[u8],
        first_line: u64,
        sink: &mut S,
        problems: &mut Vec<InputProblem>,
    ) -> (u64, u64) {
        let ranges = split_pieces(block, PIECE);
        let mut pieces = std::mem::take(self.pool);
        pieces.resize_with(pieces.len().max(ranges.len()), Piece::default);
        let (this, shared) = (&*self, &*sink);
        pieces[..ranges.len()].par_iter_mut().zip(ranges.par_iter()).for_each(|(piece, range)| {
            shared.reset(&mut piece.state);
            piece.problems.clear();
            piece.lines = 0;
            let text = &block[range.clone()];
            let ends = memchr::memchr_iter(b'\n', text).chain((text.last() != Some(&b'\n')).then_some(text.len()));
            let mut from = 0;
            for (line, end) in (0..).zip(ends) {
                let raw = &text[from..end];
                let record = raw.strip_suffix(b"\r").unwrap_or(raw);
                if !record.iter().all(u8::is_ascii_whitespace) {
                    this.accept(shared, line, record, parse_json_line(record), piece);
                }
                from = end + 1;
                piece.lines = line + 1;
            }
        });
        let mut next_line = first_line;
        for piece in &mut pieces[..ranges.len()] {
            piece.first_line = next_line;
            problems.extend(piece.problems.drain(..).map(|mut p| {
                p.line += next_line;
                p
            }));
            next_line += piece.lines;
        }
        let taken = sink.take_block(self.file_index, &mut pieces[..ranges.len()], problems);
        *self.pool = pieces;
        (next_line - first_line, taken)
    }

    fn read_cloudevents<S: RecordSink<Piece = P>>(
        &mut self,
        reader: &mut dyn Read,
        mut buf: Vec<u8>,
        mut eof: bool,
        sink: &mut S,
        problems: &mut Vec<InputProblem>,
    ) -> io::Result<u64> {
        let mut splitter = ArraySplitter::default();
        let mut base = 0usize; // absolute offset of buf[0]
        let mut fed = 0usize; // bytes of buf the splitter has seen
        let mut line_at_base = 1u64;
        let mut records = 0u64;
        let mut ranges: Vec<Range<usize>> = Vec::new();
        loop {
            if !sink.keep_reading() {
                return Ok(records);
            }
            let fed_result = splitter.feed(&buf[fed..], &mut ranges);
            fed = buf.len();
            let mut pieces = std::mem::take(self.pool);
            pieces.resize_with(pieces.len().max(1), Piece::default);
            let piece = &mut pieces[0];
            sink.reset(&mut piece.state);
            piece.problems.clear();
            piece.first_line = 0; // events carry absolute line numbers
            let mut line = line_at_base;
            let mut counted_to = 0;
            for range in ranges.drain(..) {
                let (start, end) = (range.start - base, range.end - base);
                line += count_lines(&buf[counted_to..start]);
                counted_to = start;
                let event = &buf[start..end];
                self.accept(&*sink, line, event, parse_cloudevent(event), piece);
            }
            problems.append(&mut piece.problems);
            records += sink.take_block(self.file_index, &mut pieces[..1], problems);
            *self.pool = pieces;
            if let Err(e) = fed_result.and_then(|()| if eof { splitter.finish() } else { Ok(()) }) {
                let at = e.offset.saturating_sub(base).min(buf.len());
                let line = line_at_base + count_lines(&buf[..at]);
                let message = format!("not a valid CloudEvents batch: {}", e.message);
                problems.push(InputProblem { file: self.file_name(), line, column: 1, record: None, field: None, message });
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

/// The record's id, if the text has a readable one, to name it in errors.
fn record_id_of(text: &[u8]) -> Option<String> {
    let members = revshare_core::json::parse_object(text).ok()?;
    members.into_iter().find(|m| m.key == "id").and_then(|m| match m.value {
        revshare_core::json::JsonValue::String(s) if revshare_core::ids::is_record_id(&s) => Some(s.into_owned()),
        _ => None,
    })
}
