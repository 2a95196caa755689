//! Ingestion (SPEC §3): one batch, one transaction.
//!
//! Each record is checked in order: its host must be a registered host; its model is resolved
//! through the host's aliases to a registered model, whose owner is the licensor; the agreement
//! it falls under is the one in force for that licensor and host at the record time (none is
//! fine: the record is stored and counted as `unmatched`, and rolled up nowhere); a matched record
//! must be in the agreement's currency. A model of the licensor that the agreement does not list
//! is still rolled up under it; the statement flags that line `unlicensed_model`.
//!
//! Then the records are inserted with `ON CONFLICT (host, id) DO NOTHING` — the primary key makes
//! dedup permanent — and only for those where that changes nothing is the stored record read and
//! compared by value: equal is a duplicate (counted, its resend count raised), different is a
//! conflict naming the differing fields, and the stored record stays as it is. Duplicates and
//! conflicts inside one batch follow the same rule, the first occurrence wins: only the first
//! good occurrence of each `(host, id)` is sent, and a later one is compared with it if it was
//! inserted, or with the stored record if not. The inserts and the reads are each one statement
//! per batch on PostgreSQL (`records::insert_many`, `records::stored_many`), where a statement is
//! a network round trip, and one per record on SQLite.
//!
//! Atomic mode stores nothing if any record is refused or conflicts; partial mode stores the good
//! records. Either way every problem is reported (index in the batch, 0-based; record id; why).
//! Rollup changes are summed in memory and written once per group at the end of the batch, and
//! the caller commits before returning: a report with `stored = true` is durable.

use std::collections::HashMap;

use revshare_core::agreement::Agreement;
use revshare_core::note::VerifierKey;
use revshare_core::settle::sorted_digest;
use revshare_core::transparency::{Signed, batch_leaf, batch_message};
use revshare_core::usage::UsageRecord;

use crate::agreements::{Match, latest_of_licensor, place};
use crate::error::StoreError;
use crate::log::{self, LogLeaf};
use crate::records::{self, NewRecord, RecordRow, resolved};
use crate::registry::{Model, Role, require_role, resolve};
use crate::rollups::Deltas;
use crate::sql::Sql;
use crate::statements::closed;

/// Whether a batch with a bad record stores its good records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestMode {
    /// All or nothing: a batch with any refused or conflicting record stores nothing.
    Atomic,
    /// The good records are stored; each bad one is reported.
    Partial,
}

/// Why a record was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The record cannot be accepted (unknown host or model, wrong currency, …).
    Refused,
    /// A different record with the same `(host, id)` came first.
    Conflict,
}

/// One record that was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestProblem {
    /// Position in the batch, from 0.
    pub index: usize,
    pub host: String,
    pub id: String,
    pub kind: ProblemKind,
    pub reason: String,
}

impl std::fmt::Display for IngestProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {} of host {} (batch index {}): {}", self.id, self.host, self.index, self.reason)
    }
}

/// What a batch did. When `stored` is false (an atomic batch with problems) nothing was stored
/// and `accepted`, `duplicates`, `unmatched` and `late` are 0; `conflicts`, `refused` and
/// `problems` say why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Whether the batch's good records were committed.
    pub stored: bool,
    /// New records stored.
    pub accepted: u64,
    /// Identical resends of stored records (acknowledged, nothing changed).
    pub duplicates: u64,
    pub conflicts: u64,
    pub refused: u64,
    /// Accepted records that no agreement covers (stored, rolled up nowhere).
    pub unmatched: u64,
    /// Accepted records of a month already closed for their agreement (stored, flagged, rolled up).
    pub late: u64,
    pub problems: Vec<IngestProblem>,
    /// The batch's leaf in the transparency log, when it stored or repeated any record.
    pub logged: Option<LoggedBatch>,
}

/// A usage batch as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedBatch {
    /// Its leaf index.
    pub leaf: u64,
    /// [`sorted_digest`] over the distinct SHA-256 digests of its records as sent.
    pub digest: String,
    /// Its distinct records.
    pub records: u64,
}

/// Registry look-ups of one batch, each made once.
#[derive(Default)]
struct Lookups {
    /// Host id → why it cannot report usage, if it cannot.
    hosts: HashMap<String, Option<String>>,
    /// Host → reported model → the licensed model, or why there is none.
    models: HashMap<String, HashMap<String, Result<Model, String>>>,
    /// Licensor → the latest versions of its agreements.
    agreements: HashMap<String, Vec<Agreement>>,
    /// (agreement, month) → closed.
    closed: HashMap<(String, String), bool>,
}

/// Where a checked record goes.
struct Placed {
    model: String,
    at: Option<Match>,
    late: bool,
}

impl Lookups {
    /// Checks a record against the registry: `Ok(Err(reason))` refuses it.
    fn place(&mut self, sql: &mut impl Sql, record: &UsageRecord<'_>) -> Result<Result<Placed, String>, StoreError> {
        let host = record.host.as_ref();
        let host_problem = match self.hosts.get(host) {
            Some(problem) => problem.clone(),
            None => {
                let problem = match require_role(sql, host, Role::Host, "the host of the record") {
                    Ok(_) => None,
                    Err(e @ (StoreError::UnknownParty { .. } | StoreError::WrongRole { .. })) => Some(e.to_string()),
                    Err(e) => return Err(e),
                };
                self.hosts.insert(host.to_owned(), problem.clone());
                problem
            }
        };
        if let Some(problem) = host_problem {
            return Ok(Err(problem));
        }
        let models = self.models.entry(host.to_owned()).or_default();
        let model = match models.get(record.model.as_ref()) {
            Some(found) => found.clone(),
            None => {
                let found = resolve(sql, host, &record.model)?
                    .ok_or_else(|| StoreError::Unresolved { host: host.to_owned(), model: record.model.to_string() }.to_string());
                models.insert(record.model.to_string(), found.clone());
                found
            }
        };
        let model = match model {
            Ok(model) => model,
            Err(reason) => return Ok(Err(reason)),
        };
        let licensor = model.owner.as_str();
        if !self.agreements.contains_key(licensor) {
            let latest = latest_of_licensor(sql, licensor)?;
            self.agreements.insert(licensor.to_owned(), latest);
        }
        let agreements = self.agreements.get(licensor).map_or(&[][..], Vec::as_slice);
        let placed = match place(agreements, &resolved(record, model.id.as_str())) {
            None => None,
            Some((agreement, _)) if agreement.currency() != record.currency => {
                return Ok(Err(format!(
                    "the record is in {} but agreement {} (version {}), which covers it, is in {}; report it in {}",
                    record.currency,
                    agreement.id(),
                    agreement.version(),
                    agreement.currency(),
                    agreement.currency()
                )));
            }
            Some((_, at)) => Some(at),
        };
        let late = match &placed {
            None => false,
            Some(at) => {
                let key = (at.agreement_id.clone(), at.month.clone());
                match self.closed.get(&key) {
                    Some(closed) => *closed,
                    None => {
                        let is_closed = closed(sql, &at.agreement_id, &at.month)?;
                        self.closed.insert(key, is_closed);
                        is_closed
                    }
                }
            }
        };
        Ok(Ok(Placed { model: model.id.to_string(), at: placed, late }))
    }
}

/// The digest of a batch of records as sent: [`sorted_digest`] over their distinct SHA-256
/// digests — what a host signs ([`batch_message`]) and the log's batch leaf names.
pub fn batch_digest(records: &[UsageRecord<'_>]) -> String {
    let mut digests: Vec<[u8; 32]> = records.iter().map(UsageRecord::digest).collect();
    digests.sort_unstable();
    digests.dedup();
    sorted_digest(&mut digests)
}

/// A signed batch must be one host's, whole (atomic), and signed by a key registered for that
/// host over the batch's digest.
fn check_signed(sql: &mut impl Sql, batch: &[UsageRecord<'_>], mode: IngestMode, signed: &Signed) -> Result<(), StoreError> {
    let refuse = |reason: String| Err(StoreError::Signature(reason));
    if mode == IngestMode::Partial {
        return refuse("a signed batch is stored whole or not at all; ingest it without --partial".to_owned());
    }
    let Some(host) = batch.first().map(|r| r.host.as_ref()) else {
        return refuse("an empty batch has nothing to sign".to_owned());
    };
    if let Some(other) = batch.iter().find(|r| r.host != host) {
        return refuse(format!("a signed batch is one host's, but it holds records of {host} and of {}", other.host));
    }
    let key = VerifierKey::parse(&signed.key).map_err(|e| StoreError::Signature(format!("the batch's key: {e}")))?;
    if !crate::keys::of_party(sql, host)?.iter().any(|k| k == &key) {
        return refuse(format!("key {} is not registered for host {host}; register it with `revshare party key`", signed.key));
    }
    let digest = batch_digest(batch);
    key.verify(&batch_message(&digest), &signed.signature).map_err(|e| {
        StoreError::Signature(format!(
            "the signature by {} does not match the batch (digest {digest}): {e}; the batch was changed after it was signed, or signed by another key",
            key.name()
        ))
    })
}

pub(crate) fn ingest(
    sql: &mut impl Sql,
    batch: &[UsageRecord<'_>],
    mode: IngestMode,
    signed: Option<&Signed>,
) -> Result<IngestReport, StoreError> {
    if let Some(signed) = signed {
        check_signed(sql, batch, mode, signed)?;
    }
    // Writers are serialised, so the batch's leaf is the next one.
    let leaf = log::size(sql)?;
    let leaf_column = i64::try_from(leaf).map_err(|_| StoreError::Log(format!("the log is full at {leaf} leaves")))?;
    // Check every record against the registry (the look-ups only read it, so checking them all
    // before storing any decides the same), and make the rows of the good ones.
    let mut lookups = Lookups::default();
    let placed = batch.iter().map(|record| lookups.place(sql, record)).collect::<Result<Vec<_>, _>>()?;
    let settled: Vec<Option<UsageRecord<'_>>> =
        batch.iter().zip(&placed).map(|(record, placed)| placed.as_ref().ok().map(|placed| resolved(record, &placed.model))).collect();
    let checked: Vec<Result<(&Placed, &UsageRecord<'_>, RecordRow<'_>), String>> = batch
        .iter()
        .zip(&placed)
        .zip(&settled)
        .map(|((record, placed), settled)| match (placed, settled) {
            (Ok(placed), Some(settled)) => RecordRow::new(settled, &record.model).map(|row| (placed, settled, row)),
            (Err(reason), _) => Err(reason.clone()),
            (Ok(_), None) => unreachable!("a placed record is settled"),
        })
        .collect();

    // The first good occurrence of each (host, id) in the batch is sent to be inserted; later
    // ones are classified against it below, as if it had been inserted before them.
    let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
    let mut candidates = Vec::new();
    for (index, record) in batch.iter().enumerate() {
        if checked[index].is_ok() {
            first_of.entry((&record.host, &record.id)).or_insert_with(|| {
                candidates.push(index);
                index
            });
        }
    }
    let new: Vec<NewRecord<'_>> = candidates
        .iter()
        .filter_map(|&i| checked[i].as_ref().ok())
        .map(|(placed, _, row)| NewRecord { row, placed: placed.at.as_ref(), late: placed.late, batch: leaf_column })
        .collect();
    let mut inserted = vec![false; batch.len()];
    for (&index, stored) in candidates.iter().zip(records::insert_many(sql, &new)?) {
        inserted[index] = stored;
    }
    // The stored records that the batch's records with a (host, id) already stored meet.
    let present: Vec<(&str, &str)> =
        candidates.iter().filter(|&&i| !inserted[i]).map(|&i| (batch[i].host.as_ref(), batch[i].id.as_ref())).collect();
    let stored = records::stored_many(sql, &present)?;

    let mut report = IngestReport::default();
    let mut deltas = Deltas::default();
    let mut resends: HashMap<(&str, &str), i64> = HashMap::new();
    // The SHA-256 digests, as sent, of the records the batch stores or repeats.
    let mut logged: Vec<[u8; 32]> = Vec::with_capacity(batch.len());
    let mut hosts: Vec<&str> = Vec::new();
    for (index, record) in batch.iter().enumerate() {
        let problem = |kind, reason| IngestProblem { index, host: record.host.to_string(), id: record.id.to_string(), kind, reason };
        let (placed, settled, row) = match &checked[index] {
            Ok(checked) => checked,
            Err(reason) => {
                report.refused += 1;
                report.problems.push(problem(ProblemKind::Refused, reason.clone()));
                continue;
            }
        };
        if inserted[index] {
            logged.push(row.sent_digest(record));
            hosts.push(&record.host);
            report.accepted += 1;
            report.unmatched += u64::from(placed.at.is_none());
            report.late += u64::from(placed.late);
            if let Some(at) = &placed.at {
                deltas.record(at, settled, row.digest())?;
            }
            continue;
        }
        let key = (record.host.as_ref(), record.id.as_ref());
        // What this record meets: an earlier record of this batch that was inserted, or the
        // record stored before the batch.
        let first = first_of[&key];
        let (first_row, first_placed, first_name) = match &checked[first] {
            Ok((placed, _, row)) if inserted[first] => (row, placed.at.as_ref(), format!("record {first} of this batch")),
            _ => {
                let stored = stored.get(&(key.0.to_owned(), key.1.to_owned())).ok_or_else(|| StoreError::Corrupt {
                    what: format!("record {} of host {}", record.id, record.host),
                    detail: "it is there for the primary key but cannot be read".to_owned(),
                })?;
                (&stored.row, stored.placed.as_ref(), "the stored record".to_owned())
            }
        };
        let differences = first_row.differences(row);
        if differences.is_empty() {
            logged.push(row.sent_digest(record));
            hosts.push(&record.host);
            report.duplicates += 1;
            *resends.entry(key).or_default() += 1;
            if let Some(at) = first_placed {
                deltas.duplicates(at, settled, 1)?;
            }
        } else {
            report.conflicts += 1;
            report.problems.push(problem(
                ProblemKind::Conflict,
                format!(
                    "conflicts with {first_name} with the same host and id ({}); a resend must be identical, so the first is kept and this one refused",
                    differences.join("; ")
                ),
            ));
        }
    }
    if mode == IngestMode::Atomic && !report.problems.is_empty() {
        return Ok(IngestReport { stored: false, accepted: 0, duplicates: 0, unmatched: 0, late: 0, ..report });
    }
    let resends: Vec<(&str, &str, i64)> = resends.into_iter().map(|((host, id), count)| (host, id, count)).collect();
    records::add_resends(sql, &resends)?;
    deltas.write(sql)?;
    report.logged = log_batch(sql, hosts, leaf, logged, signed)?;
    report.stored = true;
    Ok(report)
}

/// Appends the batch's leaf (when it stored or repeated anything: `digests` and `hosts` are of
/// those records) and keeps its record digests.
fn log_batch(
    sql: &mut impl Sql,
    mut hosts: Vec<&str>,
    leaf: u64,
    mut digests: Vec<[u8; 32]>,
    signed: Option<&Signed>,
) -> Result<Option<LoggedBatch>, StoreError> {
    digests.sort_unstable();
    digests.dedup();
    if digests.is_empty() {
        return Ok(None);
    }
    let digest = sorted_digest(&mut digests);
    hosts.sort_unstable();
    hosts.dedup();
    let records = u64::try_from(digests.len()).unwrap_or(u64::MAX);
    let data = batch_leaf(&digest, records, &hosts, signed).map_err(|e| StoreError::Log(e.to_string()))?;
    let appended = log::append(sql, &[LogLeaf::new("usage_batch", "batch".to_owned(), data)])?;
    if appended != leaf {
        return Err(StoreError::Log(format!("the batch's leaf is {appended}, not {leaf}: another writer appended in between")));
    }
    log::store_batch(sql, leaf, &digest, &digests)?;
    Ok(Some(LoggedBatch { leaf, digest, records }))
}
