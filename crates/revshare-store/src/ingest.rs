//! Ingestion (SPEC §3): one batch, one transaction.
//!
//! Each record is checked in order: its host must be a registered host; its model is resolved
//! through the host's aliases to a registered model, whose owner is the licensor; the agreement
//! it falls under is the one in force for that licensor and host at the record time (none is
//! fine: the record is stored and counted as `unmatched`, and rolled up nowhere); a matched record
//! must be in the agreement's currency. A model of the licensor that the agreement does not list
//! is still rolled up under it; the statement flags that line `unlicensed_model`.
//!
//! Then each good record's `(host, id)` is looked up in the index of stored records
//! ([`crate::index`], caught up with every committed segment under the write lock): not there,
//! it is new; there with the same fingerprint (the stored record's values, compared through the
//! SHA-256 of their canonical form), it is a duplicate — counted, its resend count raised; there
//! with another fingerprint, it is a conflict, and the stored record is read to name the fields
//! that differ, and stays as it is. Duplicates and conflicts inside one batch follow the same
//! rule, the first occurrence wins: a later occurrence is compared with the first if that one is
//! new, or with the stored record if not.
//!
//! Atomic mode stores nothing if any record is refused or conflicts; partial mode stores the good
//! records. Either way every problem is reported (index in the batch, 0-based; record id; why).
//! The new records are written as one segment per host, licensor, place and lateness
//! ([`crate::segments`]); rollup and usage-set changes are summed in memory and written once per
//! group at the end of the batch; the caller commits before returning, and only then adds the new
//! keys to the index: a report with `stored = true` is durable.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use foldhash::fast::RandomState;
use rayon::prelude::*;

use revshare_core::agreement::Agreement;
use revshare_core::note::VerifierKey;
use revshare_core::settle::sorted_digest;
use revshare_core::transparency::{Signed, batch_leaf, batch_message};
use revshare_core::usage::UsageRecord;
use revshare_core::usage_set::UsageSet;

use crate::agreements::{Match, latest_of_licensor, place};
use crate::error::StoreError;
use crate::index::{Pending, RecordIndex};
use crate::log::{self, LogLeaf};
use crate::records::{RecordRow, resolved};
use crate::registry::{Model, Role, require_role, resolve};
use crate::rollups::Deltas;
use crate::segments::{self, NewRecord, Place, RolledUp};

/// What a segment's records share: host, licensor, where they are rolled up, lateness.
type SegmentKey<'a> = (&'a str, &'a str, RolledUp<'a>, bool);
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

/// What the index learns once the batch has committed: its new records (position in the batch
/// and fingerprint), the batch's leaf, and the last segment written.
#[derive(Default)]
pub(crate) struct Added {
    pub batch: i64,
    pub records: Vec<(usize, [u8; 16])>,
    pub last_segment: i64,
}

/// Registry look-ups of one batch, each made once.
#[derive(Default)]
struct Lookups {
    /// Host id → why it cannot report usage, if it cannot.
    hosts: HashMap<String, Option<String>, RandomState>,
    /// Host → reported model → the licensed model, or why there is none.
    models: HashMap<String, HashMap<String, Result<Model, String>, RandomState>, RandomState>,
    /// Licensor → the latest versions of its agreements.
    agreements: HashMap<String, Vec<Agreement>, RandomState>,
    /// (agreement, month, closed): a batch spans a few, so a list is searched without allocating.
    closed: Vec<(String, String, bool)>,
}

/// Where a checked record goes.
struct Placed {
    model: String,
    licensor: String,
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
        if !self.models.contains_key(host) {
            self.models.insert(host.to_owned(), HashMap::default());
        }
        let models = self.models.get_mut(host).ok_or_else(|| StoreError::Log("the host's models were just added".to_owned()))?;
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
            Some(at) => match self.closed.iter().find(|(a, m, _)| *a == at.agreement_id && *m == at.month) {
                Some((_, _, closed)) => *closed,
                None => {
                    let is_closed = closed(sql, &at.agreement_id, &at.month)?;
                    self.closed.push((at.agreement_id.clone(), at.month.clone(), is_closed));
                    is_closed
                }
            },
        };
        Ok(Ok(Placed { model: model.id.to_string(), licensor: licensor.to_owned(), at: placed, late }))
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

/// A good record of the batch: where it goes, its resolved form and that form's SHA-256.
struct Checked<'b> {
    placed: Placed,
    settled: UsageRecord<'b>,
    digest: [u8; 32],
    /// The stored record's fingerprint and batch, when its `(host, id)` is stored.
    stored: Option<([u8; 16], i64)>,
}

/// What the first good occurrence of a `(host, id)` in the batch is, for the later ones.
#[derive(Clone, Copy)]
enum First {
    /// New: this batch stores it (its position).
    New(usize),
    /// Stored before: its fingerprint and batch.
    Stored([u8; 16], i64),
}

/// One batch of a group ([`crate::Store::ingest_group`]).
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    pub records: &'a [UsageRecord<'a>],
    pub mode: IngestMode,
    /// The host's signature over [`batch_digest`], if the batch is signed.
    pub signed: Option<&'a Signed>,
}

pub(crate) fn ingest<'b>(
    sql: &mut impl Sql,
    index: &RecordIndex,
    pending: &Pending<'_>,
    batch: &'b [UsageRecord<'b>],
    mode: IngestMode,
    signed: Option<&Signed>,
) -> Result<(IngestReport, Added), StoreError> {
    if let Some(signed) = signed {
        check_signed(sql, batch, mode, signed)?;
    }
    // Writers are serialised, so the batch's leaf is the next one.
    let leaf = log::size(sql)?;
    let leaf_column = i64::try_from(leaf).map_err(|_| StoreError::Log(format!("the log is full at {leaf} leaves")))?;
    // Check every record against the registry (the look-ups only read it, so checking them all
    // before storing any decides the same).
    let mut lookups = Lookups::default();
    let placed = batch.iter().map(|record| lookups.place(sql, record)).collect::<Result<Vec<_>, _>>()?;
    // The digests, the batch's main work, on every core.
    let checked: Vec<Result<Checked<'_>, String>> = batch
        .par_iter()
        .zip(placed)
        .map(|(record, placed)| {
            placed.map(|placed| {
                let settled = UsageRecord { model: Cow::Owned(placed.model.clone()), ..resolved(record, "") };
                let digest = settled.digest();
                let stored = index.get(pending, &record.host, &record.id);
                Checked { placed, settled, digest, stored }
            })
        })
        .collect();

    let mut report = IngestReport::default();
    let mut deltas = Deltas::default();
    // Keys are the hosts' own: a randomly seeded hasher, so crafted ids cannot flood a bucket.
    let mut firsts: HashMap<(&str, &str), First, RandomState> = HashMap::with_capacity_and_hasher(batch.len(), RandomState::default());
    let mut new: Vec<usize> = Vec::with_capacity(batch.len());
    let mut resends: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    // The SHA-256 digests, as sent, of the records the batch stores or repeats.
    let mut logged: Vec<[u8; 32]> = Vec::with_capacity(batch.len());
    let mut hosts: Vec<&str> = Vec::new();
    for (i, record) in batch.iter().enumerate() {
        let problem = |kind, reason| IngestProblem { index: i, host: record.host.to_string(), id: record.id.to_string(), kind, reason };
        let good = match &checked[i] {
            Ok(good) => good,
            Err(reason) => {
                report.refused += 1;
                report.problems.push(problem(ProblemKind::Refused, reason.clone()));
                continue;
            }
        };
        let sent_digest = if record.model == good.settled.model { good.digest } else { record.digest() };
        let mine = segments::fingerprint(&good.digest);
        let key = (record.host.as_ref(), record.id.as_ref());
        let first = match firsts.get(&key) {
            Some(first) => *first,
            None => {
                let first = match good.stored {
                    Some((fingerprint, stored_batch)) => First::Stored(fingerprint, stored_batch),
                    None => First::New(i),
                };
                firsts.insert(key, first);
                first
            }
        };
        // What this record meets: itself (new), an earlier record of this batch, or the stored one.
        let same = match first {
            First::New(at) if at == i => {
                new.push(i);
                logged.push(sent_digest);
                if hosts.last() != Some(&record.host.as_ref()) {
                    hosts.push(&record.host);
                }
                report.accepted += 1;
                report.unmatched += u64::from(good.placed.at.is_none());
                report.late += u64::from(good.placed.late);
                if let Some(at) = &good.placed.at {
                    deltas.record(at, &good.settled)?;
                }
                continue;
            }
            First::New(at) => checked[at].as_ref().ok().map(|first| segments::fingerprint(&first.digest)) == Some(mine),
            First::Stored(fingerprint, _) => fingerprint == mine,
        };
        if same {
            logged.push(sent_digest);
            if hosts.last() != Some(&record.host.as_ref()) {
                hosts.push(&record.host);
            }
            report.duplicates += 1;
            *resends.entry(key).or_default() += 1;
            if let Some(at) = &good.placed.at {
                deltas.duplicates(at, &good.settled, 1)?;
            }
            continue;
        }
        let (differences, first_name) = match first {
            First::New(at) => {
                let first = checked[at].as_ref().map_err(|_| corrupt_first(record))?;
                (RecordRow::new(&first.settled).differences(&RecordRow::new(&good.settled)), format!("record {at} of this batch"))
            }
            First::Stored(_, stored_batch) => {
                let (stored, _) = segments::find(sql, key.0, key.1, stored_batch)?.ok_or_else(|| corrupt_first(record))?;
                (RecordRow::new(&stored.record).differences(&RecordRow::new(&good.settled)), "the stored record".to_owned())
            }
        };
        report.conflicts += 1;
        report.problems.push(problem(
            ProblemKind::Conflict,
            format!(
                "conflicts with {first_name} with the same host and id ({}); a resend must be identical, so the first is kept and this one refused",
                differences.join("; ")
            ),
        ));
    }
    if mode == IngestMode::Atomic && !report.problems.is_empty() {
        let refused = IngestReport { stored: false, accepted: 0, duplicates: 0, unmatched: 0, late: 0, ..report };
        return Ok((refused, Added::default()));
    }

    // The new records' usage sets per agreement month, summed on every core.
    let sets = new
        .par_iter()
        .with_min_len(4096)
        .fold(HashMap::<(&str, &str), UsageSet, RandomState>::default, |mut sets, &i| {
            if let Ok(Checked { placed: Placed { at: Some(at), .. }, digest, .. }) = &checked[i] {
                sets.entry((at.agreement_id.as_str(), at.month.as_str())).or_default().insert(digest);
            }
            sets
        })
        .reduce(HashMap::default, |mut all, part| {
            for (key, set) in part {
                all.entry(key).or_default().union(&set);
            }
            all
        });
    for ((agreement_id, month), set) in &sets {
        deltas.add_set(agreement_id, month, set);
    }

    // One segment per host, licensor, place and lateness, its records in batch order.
    let mut groups: HashMap<SegmentKey<'_>, Vec<NewRecord<'_>>, RandomState> = HashMap::default();
    for &i in &new {
        let Ok(good) = &checked[i] else { continue };
        let at = good.placed.at.as_ref();
        groups
            .entry((&batch[i].host, &good.placed.licensor, at.map(|m| (m.agreement_id.as_str(), m.month.as_str())), good.placed.late))
            .or_default()
            .push(NewRecord {
                record: &good.settled,
                reported_model: &batch[i].model,
                scope: at.and_then(|m| m.scope),
                fingerprint: segments::fingerprint(&good.digest),
            });
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    // Encoded on every core, written in key order.
    let encoded: Vec<(Vec<u8>, Vec<u8>)> = groups.par_iter().map(|(_, records)| segments::encode(records)).collect();
    let mut last_segment = 0;
    for (((host, licensor, rolled_up, late), records), (keys, data)) in groups.iter().zip(&encoded) {
        let place = Place {
            host: (*host).to_owned(),
            licensor: (*licensor).to_owned(),
            rolled_up: rolled_up.map(|(a, m)| (a.to_owned(), m.to_owned())),
            late: *late,
            batch: leaf_column,
        };
        last_segment = segments::write_encoded(sql, &place, records.len(), keys, data)?;
    }
    let resends: Vec<(&str, &str, i64)> = resends.into_iter().map(|((host, id), count)| (host, id, count)).collect();
    segments::add_resends(sql, &resends)?;
    deltas.write(sql)?;
    report.logged = log_batch(sql, hosts, leaf, logged, signed)?;
    report.stored = true;
    let added = new.iter().filter_map(|&i| checked[i].as_ref().ok().map(|good| (i, segments::fingerprint(&good.digest)))).collect();
    Ok((report, Added { batch: leaf_column, records: added, last_segment }))
}

/// The first occurrence of a record could not be read back: the index and the segments disagree.
fn corrupt_first(record: &UsageRecord<'_>) -> StoreError {
    StoreError::Corrupt {
        what: format!("record {} of host {}", record.id, record.host),
        detail: "the index has it, but it cannot be read back".to_owned(),
    }
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
