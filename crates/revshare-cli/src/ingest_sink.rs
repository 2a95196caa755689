//! `revshare ingest`: usage files into the store, in committed batches.
//!
//! The files are first read once to validate every record, so a file with a bad line stores
//! nothing (every problem is listed). Then they are read again and sent to the store in batches
//! of `--batch-size` records; each batch is one transaction, and its acknowledgement is printed
//! only after it is committed. A batch the store refuses (in atomic mode, any conflict or unknown
//! host or model) stores nothing and stops the run; batches acknowledged before stay stored, and
//! running the same command again completes the ingestion exactly (resends are duplicates).

use revshare_core::note::SignerKey;
use revshare_core::usage::{RecordProblem, UsageRecord};
use revshare_store::{IngestMode, IngestReport, Store, StoreError};
use std::io::Write as _;

use crate::reading::{InputProblem, LINE_BITS, Piece, RecordSink, place};

/// Only validates: every record is parsed and checked, nothing is kept.
pub struct Validate;

impl RecordSink for Validate {
    type Piece = ();

    fn reset(&self, _piece: &mut ()) {}

    fn accept(&self, _line: u64, _record: UsageRecord<'_>, _piece: &mut ()) -> Result<(), RecordProblem> {
        Ok(())
    }

    fn take_block(&mut self, _file: u64, _pieces: &[Piece<()>], _problems: &mut Vec<InputProblem>) -> u64 {
        0
    }
}

/// Sends records to the store in batches.
pub struct Ingest<'a> {
    /// Behind a mutex only so the sink can be shared with the parsing threads, which never use it.
    store: std::sync::Mutex<&'a mut (dyn Store + Send)>,
    pub mode: IngestMode,
    pub batch_size: usize,
    pub names: Vec<String>,
    /// Records waiting for the next batch, and their locations.
    pending: Vec<UsageRecord<'static>>,
    locations: Vec<u64>,
    pub totals: IngestReport,
    pub batches: u64,
    /// Set when a batch was refused or the store failed: nothing more is sent.
    pub stopped: Option<StopReason>,
    /// Signs each committed batch's checkpoint and receipt.
    deployment: SignerKey,
    /// The host's key, when batches are sent signed (`--sign`).
    host_key: Option<SignerKey>,
    /// Where each batch's receipt goes (`--receipts`), one JSON object a line.
    receipts: Option<std::io::BufWriter<std::fs::File>>,
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

impl<'a> Ingest<'a> {
    pub fn new(store: &'a mut (dyn Store + Send), mode: IngestMode, batch_size: usize, names: Vec<String>, signing: Signing) -> Ingest<'a> {
        Ingest {
            deployment: signing.deployment,
            host_key: signing.host_key,
            receipts: signing.receipts.map(std::io::BufWriter::new),
            store: std::sync::Mutex::new(store),
            mode,
            batch_size: batch_size.max(1),
            names,
            pending: Vec::new(),
            locations: Vec::new(),
            totals: IngestReport::default(),
            batches: 0,
            stopped: None,
        }
    }

    /// Sends the pending records as one batch and acknowledges it once committed.
    pub fn flush(&mut self) {
        if self.pending.is_empty() || self.stopped.is_some() {
            return;
        }
        let records = std::mem::take(&mut self.pending);
        let locations = std::mem::take(&mut self.locations);
        let signed = self.host_key.as_ref().map(|key| crate::log_cmds::sign_batch(key, &records));
        let store: &mut (dyn Store + Send) = match self.store.get_mut() {
            Ok(store) => &mut **store,
            Err(poisoned) => &mut **poisoned.into_inner(),
        };
        let stored = store.ingest(&records, self.mode, signed.as_ref());
        let report = match stored {
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
                let receipt = revshare_store::receipts::receipt(store, &self.deployment, crate::log_cmds::now(), batch);
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
    type Piece = Vec<(u64, UsageRecord<'static>)>;

    fn reset(&self, piece: &mut Self::Piece) {
        piece.clear();
    }

    fn accept(&self, line: u64, record: UsageRecord<'_>, piece: &mut Self::Piece) -> Result<(), RecordProblem> {
        piece.push((line, record.into_owned()));
        Ok(())
    }

    fn take_block(&mut self, file: u64, pieces: &[Piece<Self::Piece>], _problems: &mut Vec<InputProblem>) -> u64 {
        let mut taken = 0;
        for piece in pieces {
            for (line, record) in &piece.state {
                self.pending.push(record.clone());
                self.locations.push(file << LINE_BITS | (piece.first_line + line));
                taken += 1;
                if self.pending.len() >= self.batch_size {
                    self.flush();
                }
            }
        }
        taken
    }
}
