//! `revshare ingest`: usage files into the store, in committed batches.
//!
//! The files are first read once to validate every record ([`Validate`], on every core), so a file
//! with a bad record stores nothing (every problem is listed); `--partial` skips this pass. Then
//! they are read again ([`Ingest`]) and cut into batches of `--batch-size` records for the
//! [`Committer`], a thread of its own that stores batch after batch while the next is read; each
//! batch is one transaction, and its acknowledgement is printed only after it is committed. A
//! batch the store refuses (in atomic mode, any conflict or unknown host or model) stores nothing
//! and stops the run; batches acknowledged before stay stored, and running the same command again
//! completes the ingestion exactly (resends are duplicates).
//!
//! Where the work runs (`store_cmds::ingest` builds the threads; the reasons and measurements are
//! in docs/DECISIONS.md): the second pass parses on half the cores, and each record's SHA-256 as
//! sent is taken there, on the parsing threads, and travels with its batch (`Batch::digests`),
//! so the committing thread, the one every record waits for, need not hash them. The store's own
//! parallel steps run on a rayon pool of their own, so they never queue behind parsing. The
//! hand-over holds one batch, so reading stays at most two batches ahead of the store; stored
//! batches come back to be freed and their buffers reused off the committing thread. The records
//! counted by the first pass (or, with `--partial`, estimated from each file's first block) are
//! announced to the store ([`Store::expect_records`]), so its index makes room for them once.
//!
//! Ctrl-C stops the reading ([`RecordSink::keep_reading`]) instead of the process: in the first
//! pass nothing was stored; in the second, the batches already handed over are committed and
//! acknowledged, the one being filled is dropped, and the command says what is stored and that
//! running it again resumes (exit 130).

use revshare_core::note::SignerKey;
use revshare_core::usage::{RecordProblem, UsageRecord};
use revshare_store::{IngestMode, IngestReport, Store, StoreError};
use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};

use crate::reading::{InputProblem, LINE_BITS, Piece, RecordSink, estimate, place};

/// Only validates: every record is parsed and checked, and counted; nothing is kept. Stops
/// reading once `interrupted` (Ctrl-C) is set.
pub struct Validate<'s> {
    pub interrupted: &'s AtomicBool,
}

impl RecordSink for Validate<'_> {
    /// The valid records of the piece.
    type Piece = u64;

    fn reset(&self, piece: &mut u64) {
        *piece = 0;
    }

    fn accept(&self, _line: u64, _record: UsageRecord<'_>, piece: &mut u64) -> Result<(), RecordProblem> {
        *piece += 1;
        Ok(())
    }

    fn take_block(&mut self, _file: u64, pieces: &mut [Piece<u64>], _problems: &mut Vec<InputProblem>) -> u64 {
        pieces.iter().map(|piece| piece.state).sum()
    }

    fn keep_reading(&self) -> bool {
        !self.interrupted.load(Ordering::Relaxed)
    }
}

/// A batch on its way to the store: its records, their digests as sent (taken on the parsing
/// threads, so the committing thread does not), and where each was read.
pub struct Batch {
    records: Vec<UsageRecord<'static>>,
    digests: Vec<[u8; 32]>,
    locations: Vec<u64>,
}

/// Sets of batch buffers in use at once: the batch being filled, the one handed over and the one
/// being stored.
const BUFFERS: usize = 3;

/// Collects the records read into batches of `batch_size` and hands each to the [`Committer`],
/// which commits on its own thread while the next batch is read. The hand-over holds one batch,
/// so reading stays at most two batches ahead of the store. The committer hands each batch back
/// once stored, and its records are freed here (this thread mostly waits for the parsing
/// threads; the committing thread is the one every record waits for) and its buffers reused.
pub struct Ingest<'s> {
    batch_size: usize,
    pending: Vec<UsageRecord<'static>>,
    digests: Vec<[u8; 32]>,
    locations: Vec<u64>,
    to_store: SyncSender<Batch>,
    /// Batches stored, coming back (in a mutex only so that the sink is `Sync`; one thread uses it).
    spent: Mutex<Receiver<Batch>>,
    /// Set by the committer when it stops: nothing more is sent.
    stopped: &'s AtomicBool,
    /// Set by Ctrl-C: nothing more is read or sent; what was handed over is still stored.
    interrupted: &'s AtomicBool,
    /// Sets of batch buffers made so far (at most [`BUFFERS`] while the committer runs).
    buffers: usize,
    /// Where the records each file is estimated to hold are added, from its first block, for
    /// the committer to announce to the store; `None` when they were counted before (atomic mode).
    estimates: Option<&'s AtomicU64>,
}

impl<'s> Ingest<'s> {
    pub fn new(
        batch_size: usize,
        to_store: SyncSender<Batch>,
        spent: Receiver<Batch>,
        stopped: &'s AtomicBool,
        interrupted: &'s AtomicBool,
        estimates: Option<&'s AtomicU64>,
    ) -> Ingest<'s> {
        let batch_size = batch_size.max(1);
        Ingest {
            batch_size,
            pending: Vec::with_capacity(batch_size),
            digests: Vec::with_capacity(batch_size),
            locations: Vec::with_capacity(batch_size),
            buffers: 1,
            to_store,
            spent: Mutex::new(spent),
            stopped,
            interrupted,
            estimates,
        }
    }

    /// Hands the pending records over as one batch.
    pub fn flush(&mut self) {
        if self.pending.is_empty() || !self.keep_reading() {
            self.pending.clear();
            self.digests.clear();
            self.locations.clear();
            return;
        }
        // The next batch fills the buffers of one already stored: once there are enough to keep
        // the store busy, by waiting for one to come back (sending would wait as long), as fresh
        // buffers cost the system zeroed pages (~1 ms per MiB on a VM) on this thread.
        let back = self.spent.get_mut().ok().and_then(|spent| {
            if self.buffers < BUFFERS {
                return spent.try_recv().ok();
            }
            loop {
                match spent.recv_timeout(std::time::Duration::from_millis(5)) {
                    Ok(batch) => return Some(batch),
                    Err(RecvTimeoutError::Timeout) if !self.stopped.load(Ordering::Acquire) => {}
                    Err(_) => return None,
                }
            }
        });
        let Batch { mut records, mut digests, mut locations } = back.unwrap_or_else(|| {
            self.buffers += 1;
            Batch {
                records: Vec::with_capacity(self.batch_size),
                digests: Vec::with_capacity(self.batch_size),
                locations: Vec::with_capacity(self.batch_size),
            }
        });
        records.clear();
        digests.clear();
        locations.clear();
        std::mem::swap(&mut records, &mut self.pending);
        std::mem::swap(&mut digests, &mut self.digests);
        std::mem::swap(&mut locations, &mut self.locations);
        // A committer that has stopped no longer receives; what it stopped on is its report.
        let _ = self.to_store.send(Batch { records, digests, locations });
    }
}

pub enum StopReason {
    Refused(Vec<InputProblem>),
    Store(StoreError),
    /// The batch was committed but its receipt could not be made or written.
    Receipt(String),
}

/// How batches are signed and acknowledged.
pub struct Signing {
    pub deployment: SignerKey,
    pub host_key: Option<SignerKey>,
    pub receipts: Option<std::fs::File>,
}

/// Commits batches in the order read, one transaction each, and acknowledges each only after its
/// commit. A batch the store refuses (in atomic mode, any conflict or unknown host or model)
/// stores nothing and stops it; batches acknowledged before stay stored.
pub struct Committer<'a> {
    store: &'a mut (dyn Store + Send),
    mode: IngestMode,
    names: Vec<String>,
    pub totals: IngestReport,
    pub batches: u64,
    /// Set when a batch was refused or the store failed: nothing more is committed.
    pub stopped: Option<StopReason>,
    /// Tells the reader to stop sending.
    stop: &'a AtomicBool,
    /// Records announced and not yet passed on to the store ([`Store::expect_records`]): the
    /// count of the validation pass, or the reader's estimates.
    announced: &'a AtomicU64,
    /// Signs each committed batch's checkpoint and receipt.
    deployment: SignerKey,
    /// The host's key, when batches are sent signed (`--sign`).
    host_key: Option<SignerKey>,
    /// Where each batch's receipt goes (`--receipts`), one JSON object a line.
    receipts: Option<std::io::BufWriter<std::fs::File>>,
    /// Where stored batches go back to, to be freed and reused off this thread.
    spent: Sender<Batch>,
}

impl<'a> Committer<'a> {
    pub fn new(
        store: &'a mut (dyn Store + Send),
        mode: IngestMode,
        names: Vec<String>,
        signing: Signing,
        stop: &'a AtomicBool,
        announced: &'a AtomicU64,
        spent: Sender<Batch>,
    ) -> Committer<'a> {
        Committer {
            deployment: signing.deployment,
            host_key: signing.host_key,
            receipts: signing.receipts.map(std::io::BufWriter::new),
            store,
            mode,
            names,
            totals: IngestReport::default(),
            batches: 0,
            stopped: None,
            stop,
            announced,
            spent,
        }
    }

    /// Commits every batch received until the reader is done or a batch stops it.
    pub fn run(mut self, batches: Receiver<Batch>) -> Committer<'a> {
        for batch in batches {
            self.commit(batch);
            if self.stopped.is_some() {
                self.stop.store(true, Ordering::Release);
                break;
            }
        }
        self
    }

    /// Sends one batch to the store and acknowledges it once committed.
    fn commit(&mut self, batch: Batch) {
        let records = self.announced.swap(0, Ordering::Relaxed);
        if records > 0 {
            self.store.expect_records(records);
        }
        self.store_batch(&batch);
        // The reader may have finished; then the batch is freed here.
        let _ = self.spent.send(batch);
    }

    fn store_batch(&mut self, Batch { records, digests, locations }: &Batch) {
        let signed = match self.host_key.as_ref().map(|key| crate::log_cmds::sign_batch(key, records)).transpose() {
            Ok(signed) => signed,
            Err(e) => {
                self.stopped = Some(StopReason::Store(StoreError::Signature(e)));
                return;
            }
        };
        let batch = revshare_store::Batch { records, digests: Some(digests), mode: self.mode, signed: signed.as_ref() };
        let report = match self.store.ingest_batch(batch) {
            Ok(report) => report,
            Err(e) => {
                self.stopped = Some(StopReason::Store(e));
                return;
            }
        };
        self.batches += 1;
        let located: Vec<InputProblem> = report
            .problems
            .iter()
            .map(|p| {
                let (file, line) = locations.get(p.index).map_or_else(|| (String::new(), 0), |location| place(&self.names, *location));
                InputProblem { file, line, column: 1, record: Some(p.id.clone()), field: None, message: p.reason.clone() }
            })
            .collect();
        let (file, first) = locations.first().map_or_else(|| (String::new(), 0), |l| place(&self.names, *l));
        let last = locations.last().map_or(0, |l| place(&self.names, *l).1);
        if report.stored {
            // The receipt, and the acknowledgement: only now, after the commit.
            let leaf = report.logged.as_ref().map(|b| format!(", log leaf {}", b.leaf)).unwrap_or_default();
            if let Some(batch) = &report.logged {
                let receipt = revshare_store::receipts::receipt(self.store, &self.deployment, crate::log_cmds::now(), batch);
                let written = match (receipt, self.receipts.as_mut()) {
                    (Ok(receipt), Some(out)) => writeln!(out, "{receipt}").and_then(|()| out.flush()).map_err(|e| e.to_string()),
                    (Ok(_), None) => Ok(()),
                    (Err(e), _) => Err(e.to_string()),
                };
                if let Err(e) = written {
                    self.stopped =
                        Some(StopReason::Receipt(format!("batch {} was committed{leaf}, but its receipt failed: {e}", self.batches)));
                }
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "batch {} committed: {}:{}-{}: accepted {}, duplicates {}, conflicts {}, refused {}{}{leaf}",
                self.batches,
                file,
                first,
                last,
                report.accepted,
                report.duplicates,
                report.conflicts,
                report.refused,
                if report.late > 0 { format!(", late {}", report.late) } else { String::new() }
            );
            let _ = out.flush();
            for problem in &located {
                let _ = writeln!(std::io::stderr(), "{problem}");
            }
            add(&mut self.totals, &report);
        } else {
            self.totals.conflicts += report.conflicts;
            self.totals.refused += report.refused;
            self.stopped = Some(StopReason::Refused(located));
        }
    }
}

fn add(totals: &mut IngestReport, report: &IngestReport) {
    totals.accepted += report.accepted;
    totals.duplicates += report.duplicates;
    totals.conflicts += report.conflicts;
    totals.refused += report.refused;
    totals.unmatched += report.unmatched;
    totals.late += report.late;
}

impl RecordSink for Ingest<'_> {
    type Piece = Vec<(u64, UsageRecord<'static>, [u8; 32])>;

    fn reset(&self, piece: &mut Self::Piece) {
        piece.clear();
    }

    fn accept(&self, line: u64, record: UsageRecord<'_>, piece: &mut Self::Piece) -> Result<(), RecordProblem> {
        let digest = record.digest();
        piece.push((line, record.into_owned(), digest));
        Ok(())
    }

    fn take_block(&mut self, file: u64, pieces: &mut [Piece<Self::Piece>], _problems: &mut Vec<InputProblem>) -> u64 {
        let mut taken = 0;
        for piece in pieces {
            for (line, record, digest) in piece.state.drain(..) {
                self.pending.push(record);
                self.digests.push(digest);
                self.locations.push(file << LINE_BITS | (piece.first_line + line));
                taken += 1;
                if self.pending.len() >= self.batch_size {
                    self.flush();
                }
            }
        }
        taken
    }

    fn first_block(&mut self, records: u64, block_bytes: usize, file_bytes: u64) {
        if let Some(estimates) = self.estimates {
            estimates.fetch_add(estimate(records, block_bytes, file_bytes), Ordering::Relaxed);
        }
    }

    /// Not once the committer stopped (the rest would go nowhere) or Ctrl-C was pressed.
    fn keep_reading(&self) -> bool {
        !self.stopped.load(Ordering::Acquire) && !self.interrupted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::read_files;

    /// Reads `path` into an ingest sink, each batch handed back as it comes, as the committer
    /// does; returns the records read.
    fn read(path: &std::path::Path, estimates: Option<&AtomicU64>) -> u64 {
        let (stop, interrupted) = (AtomicBool::new(false), AtomicBool::new(false));
        let (to_store, batches) = std::sync::mpsc::sync_channel(1);
        let (spent, back) = std::sync::mpsc::channel();
        let names = vec![path.display().to_string()];
        std::thread::scope(|scope| {
            scope.spawn(move || batches.into_iter().for_each(|batch| drop(spent.send(batch))));
            let mut sink = Ingest::new(10_000, to_store, back, &stop, &interrupted, estimates);
            let read = read_files(&[path.to_path_buf()], &names, &mut sink, &indicatif::ProgressBar::hidden());
            sink.flush();
            read.ok().expect("the file reads")
        })
    }

    #[test]
    fn partial_mode_announces_what_each_file_is_estimated_to_hold() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("usage.jsonl");
        let mut text = String::new();
        // About 20 MiB: a few blocks, so the estimate comes from the first of them.
        for i in 0..90_000 {
            text.push_str(&format!(
                "{{\"id\": \"r-{i}\", \"host\": \"h1\", \"model\": \"m-8b\", \"use_case\": \"search\", \"region\": \"eu\", \"time\": \"2026-10-01T00:00:00Z\", \"requests\": {}, \"input_tokens\": {}, \"output_tokens\": 7, \"revenue\": \"0.{}\", \"currency\": \"USD\"}}\n",
                i % 1000,
                i * 37,
                i % 97
            ));
        }
        std::fs::write(&path, &text).expect("the file is written");

        let announced = AtomicU64::new(0);
        assert_eq!(read(&path, Some(&announced)), 90_000);
        let estimated = announced.load(Ordering::Relaxed);
        assert!((85_500..=94_500).contains(&estimated), "estimated {estimated} records, not about 90,000");
        // A second file adds its own estimate.
        assert_eq!(read(&path, Some(&announced)), 90_000);
        assert_eq!(announced.load(Ordering::Relaxed), 2 * estimated);
    }
}
