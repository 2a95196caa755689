//! Ingestion (SPEC §3): one batch, one transaction — or one savepoint of a commit group's.
//!
//! Each record is placed: its host must be a registered host; its model is resolved through the
//! host's aliases to a registered model, whose owner is the licensor; the agreement it falls under
//! is the one in force for that licensor and host at the record time (none is fine: the record is
//! stored and counted as `unmatched`, and rolled up nowhere); a matched record must be in the
//! agreement's currency. Its place is that agreement and the record's month; placing also finds
//! the exclusivity scope it falls in, and whether it is late: its month already closed for the
//! agreement (it is stored, rolled up there and counted `late`, and the next close settles the
//! month again). A model of the licensor that the agreement does not list is still rolled up
//! under it; the statement flags that line `unlicensed_model`.
//!
//! Then each good record's `(host, id)` is looked up in the index of stored records
//! ([`crate::index`], caught up with every committed segment under the write lock): not there,
//! it is new; there with the same fingerprint (the first half of the SHA-256 of the record's
//! canonical form, model resolved), it is a duplicate — counted in its group's rollup, no row; there
//! with another fingerprint, it is a conflict, and the stored record is read to name the fields
//! that differ, and stays as it is. Duplicates and conflicts inside one batch follow the same
//! rule, in batch order, the first occurrence wins: a later occurrence is compared with the first
//! if that one is new, or with the stored record if not.
//!
//! Atomic mode stores nothing if any record is refused or conflicts; partial mode stores the good
//! records. Either way every problem is reported (index in the batch, 0-based; record id; why).
//! The new records are written as one segment per host, licensor, place and lateness
//! ([`crate::segments`]); the batch's log leaf commits to the distinct records it stored or
//! repeated, as sent (a batch that did neither is not logged).
//!
//! [`crate::Store::ingest_group`] stores a commit group: its batches in one transaction, each in
//! a savepoint, in arrival order, each seeing the records of those before it (their new keys are
//! [`Pending`] until the commit). What stays the same across a commit group is done once: the
//! registry is read before its first batch ([`Registry`]: storing usage changes neither the
//! registry nor what is closed), and the stored batches' rollup and usage-set changes are summed
//! in memory and each changed row written once, before the commit. The new keys are added to the
//! index as the commit runs ([`RecordIndex::added_while`]); a report with `stored = true` is
//! durable.
//!
//! Where the work runs: on the threads of the calling rayon pool (the CLI gives the store a pool
//! of its own; the server, one per writer), each record's key is hashed once, and the record is
//! placed (a pure function of the record and the commit group's registry snapshot, read inside the
//! transaction), its digest taken when the caller did not bring it or the host named the model by
//! an alias, and its key looked up in the index, a thousand or more records to a task
//! (`PLACED_PER_TASK`), each task reading the index slots of the keys ahead. Only what depends on
//! order — first occurrences, duplicates and conflicts inside the batch — is decided on one
//! thread, in batch order. The new records' rollup and usage-set changes and their segments are
//! then summed over stretches of the batch on every core (`NEW_PER_TASK`) and merged, the segments
//! encoded on every core and written in key order, and the log leaf's record commitments computed
//! and sorted on every core.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use rayon::prelude::*;

use revshare_core::agreement::Agreement;
use revshare_core::note::VerifierKey;
use revshare_core::settle::{digest_order, sorted_digest};
use revshare_core::transparency::{RECORD_KEY_BYTES, SignedBatch, batch_event, batch_message, record_commitment, record_salt};
use revshare_core::usage::UsageRecord;

use crate::agreements::{Match, latest, place};
use crate::error::StoreError;
use crate::index::{NewKey, Pending, RecordIndex, WARM_AHEAD};
use crate::log::{self, LogLeaf};
use crate::records::{RecordRow, resolved};
use crate::registry::{Model, Resolver, Role, require_role};
use crate::rollups::Deltas;
use crate::segments::{self, NewRecord, Place, RolledUp};
use crate::statements::closed_of_licensor;

/// What a segment's records share: host, licensor, where they are rolled up, lateness.
type SegmentKey<'a> = (&'a str, &'a str, RolledUp<'a>, bool);
use crate::sql::Sql;

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
    /// [`batch_digest`]: over the commitments of its distinct records as sent.
    pub digest: String,
    /// Its distinct records.
    pub records: u64,
    /// Its record-salt key ([`revshare_core::transparency::record_salt`]): the sender's, for its
    /// receipt.
    pub record_key: [u8; RECORD_KEY_BYTES],
}

/// What a stored batch leaves for its group: the changes to rollups and usage sets, written once
/// for the group; and for the index, added as the group commits, the keys of its new records,
/// the batch's leaf, and the last segment written.
#[derive(Default)]
pub(crate) struct Added<'b> {
    pub deltas: Deltas<'static>,
    pub batch: i64,
    pub keys: Vec<NewKey<'b>>,
    pub last_segment: i64,
}

/// What the registry says about a group's batches, read before any of their records is placed:
/// per distinct (host, reported model) pair, the licensed model or why the pair's records are
/// refused; the latest agreements of each licensor met; the closed months of those agreements.
/// Storing usage changes none of it, so it is read once for the group. Placing a record is then
/// pure, so a batch's records are placed on every core.
pub(crate) struct Registry<'b> {
    /// Per pair, the model (or why its records are refused).
    models: HashMap<(&'b str, &'b str), Resolved, RandomState>,
    /// Licensor → the latest versions of its agreements.
    agreements: HashMap<String, Vec<Agreement>, RandomState>,
    /// Agreement → its months already closed.
    closed: HashMap<String, Vec<String>, RandomState>,
}

/// The licensed model a (host, reported model) pair resolves to, or why its records are refused.
type Resolved = Result<Model, String>;

/// Where a checked record goes.
struct Placed<'r> {
    /// The licensed model.
    model: &'r str,
    licensor: &'r str,
    at: Option<Match<'r>>,
    late: bool,
}

impl<'b> Registry<'b> {
    /// Reads what the batches' distinct (host, reported model) pairs need.
    pub(crate) fn read(sql: &mut impl Sql, batches: &[Batch<'b>]) -> Result<Registry<'b>, StoreError> {
        let mut pairs = HashSet::<(&str, &str), RandomState>::default();
        for batch in batches {
            let of_batch = batch
                .records
                .par_iter()
                .with_min_len(4096)
                .fold(HashSet::<(&str, &str), RandomState>::default, |mut pairs, r| {
                    pairs.insert((&r.host, &r.model));
                    pairs
                })
                .reduce(HashSet::default, |mut all, part| {
                    all.extend(part);
                    all
                });
            pairs.extend(of_batch);
        }
        let mut pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        pairs.sort_unstable();
        let mut registry = Registry { models: HashMap::default(), agreements: HashMap::default(), closed: HashMap::default() };
        // Per host: why its records are refused, if they are.
        let mut hosts: HashMap<&str, Option<String>, RandomState> = HashMap::default();
        let mut resolver = Resolver::default();
        for (host, reported) in pairs {
            let host_problem = match hosts.get(host) {
                Some(known) => known.clone(),
                None => {
                    let problem = match require_role(sql, host, Role::Host, "the host of the record") {
                        Ok(_) => None,
                        Err(e @ (StoreError::UnknownParty { .. } | StoreError::WrongRole { .. })) => Some(e.to_string()),
                        Err(e) => return Err(e),
                    };
                    hosts.insert(host, problem.clone());
                    problem
                }
            };
            let model = match host_problem {
                Some(problem) => Err(problem),
                None => resolver
                    .resolve(sql, host, reported)?
                    .ok_or_else(|| StoreError::Unresolved { host: host.to_owned(), model: reported.to_owned() }.to_string()),
            };
            if let Ok(model) = &model
                && !registry.agreements.contains_key(model.owner.as_str())
            {
                for (agreement_id, month) in closed_of_licensor(sql, model.owner.as_str())? {
                    registry.closed.entry(agreement_id).or_default().push(month);
                }
                registry.agreements.insert(model.owner.to_string(), latest(sql, Some(model.owner.as_str()))?);
            }
            registry.models.insert((host, reported), model);
        }
        Ok(registry)
    }

    /// Checks a record against the registry: `Ok(Err(reason))` refuses it.
    fn place(&self, record: &'b UsageRecord<'b>) -> Result<Result<Placed<'_>, String>, StoreError> {
        let model = match self.models.get(&(&*record.host, &*record.model)) {
            Some(Ok(model)) => model,
            Some(Err(reason)) => return Ok(Err(reason.clone())),
            None => {
                return Err(StoreError::Corrupt {
                    what: format!("record {} of host {}", record.id, record.host),
                    detail: "its model was not looked up with the rest of its batch".to_owned(),
                });
            }
        };
        let licensor = model.owner.as_str();
        let agreements = self.agreements.get(licensor).map_or(&[][..], Vec::as_slice);
        let at = match place(agreements, &resolved(record, model.id.as_str())) {
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
        let late =
            at.is_some_and(|at| self.closed.get(at.agreement_id).is_some_and(|months| months.iter().any(|m| m == at.month.as_str())));
        Ok(Ok(Placed { model: model.id.as_str(), licensor, at, late }))
    }
}

/// The digest of a batch of records as sent under its record-salt key
/// ([`revshare_core::transparency::batch_digest`]): what a host signs ([`batch_message`]) and the
/// log's batch event names.
pub fn batch_digest(records: &[UsageRecord<'_>], key: &[u8; RECORD_KEY_BYTES]) -> String {
    revshare_core::transparency::batch_digest(key, &records.iter().map(UsageRecord::digest).collect::<Vec<_>>())
}

/// A signed batch must be one host's, whole (atomic), and signed by a key registered for that
/// host over the batch's digest.
fn check_signed(
    sql: &mut impl Sql,
    batch: &[UsageRecord<'_>],
    sent: &[[u8; 32]],
    mode: IngestMode,
    SignedBatch { signed, record_key }: &SignedBatch,
) -> Result<(), StoreError> {
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
    crate::keys::require_current(sql, host, &key, "sign batches")?;
    let digest = revshare_core::transparency::batch_digest(record_key, sent);
    key.verify(&batch_message(&digest), &signed.signature).map_err(|e| {
        StoreError::Signature(format!(
            "the signature by {} does not match the batch (digest {digest} under the record-salt key sent with it): {e}; the batch \
             was changed after it was signed, signed under another record-salt key, or signed by another key",
            key.name()
        ))
    })
}

/// A good record of the batch: where it goes (the licensed model among it) and the SHA-256 of
/// its resolved form (the record with the licensed model).
struct Checked<'b> {
    placed: Placed<'b>,
    digest: [u8; 32],
    /// The hash of its `(host, id)` ([`RecordIndex::hash`]), for the index and for finding
    /// repeats inside the batch.
    key_hash: u64,
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
    /// Each record's SHA-256 as sent ([`UsageRecord::digest`]), in the order of `records`, when
    /// the caller took them where it parsed the records, off the writer's path; `None`, and the
    /// store takes them.
    pub digests: Option<&'a [[u8; 32]]>,
    pub mode: IngestMode,
    /// The host's signature over [`batch_digest`] and the record-salt key it chose, if the batch
    /// is signed; an unsigned batch's key is drawn fresh.
    pub signed: Option<&'a SignedBatch>,
}

/// Records placed and looked up as one task: fewer, and a task handed to another thread costs
/// more than it saves.
const PLACED_PER_TASK: usize = 1024;

/// New records summed as one task ([`NewParts`]).
const NEW_PER_TASK: usize = 8192;

/// The new records' rollup and usage-set changes and their segments (records in batch order),
/// summed over a stretch of the batch.
#[derive(Default)]
struct NewParts<'a> {
    deltas: Deltas<'a>,
    segments: HashMap<SegmentKey<'a>, Vec<NewRecord<'a>>, RandomState>,
}

impl<'a> NewParts<'a> {
    fn add(mut self, batch: &'a [UsageRecord<'a>], i: usize, good: &'a Checked<'a>) -> Result<NewParts<'a>, StoreError> {
        let at = good.placed.at.as_ref();
        if let Some(at) = at {
            self.deltas.record(at, good.placed.model, &batch[i], &good.digest)?;
        }
        self.segments
            .entry((&batch[i].host, good.placed.licensor, at.map(|m| (m.agreement_id, m.month.as_str())), good.placed.late))
            .or_default()
            .push(NewRecord {
                record: &batch[i],
                model: good.placed.model,
                reported_model: &batch[i].model,
                scope: at.and_then(|m| m.scope),
                fingerprint: segments::fingerprint(&good.digest),
            });
        Ok(self)
    }
}

/// Decides and writes one batch of a group, whose `registry` has been read. Its rollup and
/// usage-set changes are left to the group to write ([`Added::deltas`]).
pub(crate) fn ingest<'b>(
    sql: &mut impl Sql,
    index: &RecordIndex,
    pending: &Pending<'_>,
    registry: &Registry<'b>,
    Batch { records: batch, digests, mode, signed }: Batch<'b>,
) -> Result<(IngestReport, Added<'b>), StoreError> {
    let sent: Cow<'_, [[u8; 32]]> = match digests {
        Some(digests) if digests.len() == batch.len() => Cow::Borrowed(digests),
        Some(digests) => {
            return Err(StoreError::Internal {
                action: "take a batch".to_owned(),
                detail: format!("it holds {} records but {} digests", batch.len(), digests.len()),
            });
        }
        None => Cow::Owned(batch.par_iter().map(UsageRecord::digest).collect()),
    };
    debug_assert!(
        digests.is_none_or(|given| batch.iter().zip(given).all(|(record, digest)| record.digest() == *digest)),
        "a digest given is not its record's"
    );
    if let Some(signed) = signed {
        check_signed(sql, batch, &sent, mode, signed)?;
    }
    // The key the batch's record salts derive from: the host's, which its signature covers, or fresh.
    let record_key = match signed {
        Some(signed) => signed.record_key,
        None => log::fresh()?,
    };
    // Writers are serialised, so the batch's leaf is the next one.
    let leaf = log::size(sql)?;
    let leaf_column = i64::try_from(leaf).map_err(|_| StoreError::Log(format!("the log is full at {leaf} leaves")))?;
    // Every record is placed, digested and looked up in the index on every core, a thousand or
    // more to a task. A store failure while placing (there is none short of a bug) stops the
    // batch; it is kept aside so the records are collected straight into place.
    let failed = OnceLock::new();
    // Keys are the hosts' own: the index's hasher is randomly seeded, so crafted ids cannot
    // flood a bucket, here or there. They are hashed first, so that each lookup can have the
    // table slots of the keys a few places on read while it works: most lookups are a cache miss.
    let hashes: Vec<u64> = batch.par_iter().with_min_len(PLACED_PER_TASK).map(|r| index.hash(&r.host, &r.id)).collect();
    let checked: Vec<Result<Checked<'_>, String>> = batch
        .par_iter()
        .zip(sent.par_iter())
        .zip(hashes.par_iter())
        .enumerate()
        .with_min_len(PLACED_PER_TASK)
        .map(|(i, ((record, sent), &key_hash))| {
            if i % WARM_AHEAD == 0 {
                index.warm(hashes.iter().skip(i + WARM_AHEAD).take(WARM_AHEAD).copied());
            }
            match registry.place(record) {
                Ok(placed) => placed.map(|placed| {
                    // The licensed model is the one sent unless the host named it by an alias.
                    let digest = if placed.model == record.model { *sent } else { resolved(record, placed.model).digest() };
                    let stored = index.get(pending, key_hash, &record.host, &record.id);
                    Checked { placed, digest, key_hash, stored }
                }),
                Err(e) => {
                    let _ = failed.set(e);
                    Err(String::new())
                }
            }
        })
        .collect();
    if let Some(e) = failed.into_inner() {
        return Err(e);
    }

    let mut report = IngestReport::default();
    // Per `(host, id)` met in the batch: its hash, the position of its first good occurrence,
    // and what that one is.
    let mut firsts: HashTable<(u64, usize, First)> = HashTable::with_capacity(batch.len());
    let mut new: Vec<usize> = Vec::with_capacity(batch.len());
    let mut duplicates: Vec<usize> = Vec::new();
    // The SHA-256 digests, as sent, of the records the batch stores or repeats.
    let mut logged: Vec<[u8; 32]> = Vec::with_capacity(batch.len());
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
        let sent_digest = sent[i];
        let mine = segments::fingerprint(&good.digest);
        let key = (record.host.as_ref(), record.id.as_ref());
        let same_key =
            |&(hash, at, _): &(u64, usize, First)| hash == good.key_hash && batch[at].host == record.host && batch[at].id == record.id;
        let first = match firsts.find(good.key_hash, same_key) {
            Some(&(_, _, first)) => first,
            None => {
                let first = match good.stored {
                    Some((fingerprint, stored_batch)) => First::Stored(fingerprint, stored_batch),
                    None => First::New(i),
                };
                firsts.insert_unique(good.key_hash, (good.key_hash, i, first), |&(hash, _, _)| hash);
                first
            }
        };
        // What this record meets: itself (new), an earlier record of this batch, or the stored one.
        let same = match first {
            First::New(at) if at == i => {
                new.push(i);
                logged.push(sent_digest);
                report.accepted += 1;
                report.unmatched += u64::from(good.placed.at.is_none());
                report.late += u64::from(good.placed.late);
                continue;
            }
            First::New(at) => checked[at].as_ref().ok().map(|first| segments::fingerprint(&first.digest)) == Some(mine),
            First::Stored(fingerprint, _) => fingerprint == mine,
        };
        if same {
            logged.push(sent_digest);
            report.duplicates += 1;
            duplicates.push(i);
            continue;
        }
        let (differences, first_name) = match first {
            First::New(at) => {
                let first = checked[at].as_ref().map_err(|_| corrupt_first(record))?;
                let (first_record, this) = (resolved(&batch[at], first.placed.model), resolved(record, good.placed.model));
                (RecordRow::new(&first_record).differences(&RecordRow::new(&this)), format!("record {at} of this batch"))
            }
            First::Stored(_, stored_batch) => {
                let (stored, _) = segments::find(sql, key.0, key.1, stored_batch)?.ok_or_else(|| corrupt_first(record))?;
                (
                    RecordRow::new(&stored.record).differences(&RecordRow::new(&resolved(record, good.placed.model))),
                    "the stored record".to_owned(),
                )
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

    // The new records' rollups, usage sets and segments, summed on every core over stretches
    // of the batch; one segment per host, licensor, place and lateness, its records in batch
    // order.
    let parts = new
        .par_chunks(NEW_PER_TASK)
        .map(|chunk| {
            chunk.iter().try_fold(NewParts::default(), |parts, &i| match &checked[i] {
                Ok(good) => parts.add(batch, i, good),
                Err(_) => Ok(parts),
            })
        })
        .collect::<Vec<_>>();
    let mut parts = parts.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut deltas = Deltas::default();
    for part in &mut parts {
        deltas.merge(std::mem::take(&mut part.deltas))?;
    }
    for &i in &duplicates {
        if let Ok(Checked { placed: Placed { at: Some(at), model, .. }, .. }) = &checked[i] {
            deltas.duplicates(at, model, &batch[i], 1)?;
        }
    }
    // Each segment's records are the stretches' records of its key, in stretch order: read from
    // where the stretches put them rather than copied into one list.
    let mut keys: Vec<SegmentKey<'_>> = parts.iter().flat_map(|part| part.segments.keys().copied()).collect();
    keys.sort_unstable();
    keys.dedup();
    let groups: Vec<(SegmentKey<'_>, Vec<&[NewRecord<'_>]>)> =
        keys.into_iter().map(|key| (key, parts.iter().filter_map(|part| part.segments.get(&key).map(Vec::as_slice)).collect())).collect();
    // Encoded on every core, written in key order.
    let encoded: Vec<(Vec<u8>, Vec<u8>)> = groups.par_iter().map(|(_, records)| segments::encode(records)).collect();
    let mut last_segment = 0;
    for (((host, licensor, rolled_up, late), records), (keys, data)) in groups.iter().zip(&encoded) {
        let count = records.iter().map(|part| part.len()).sum();
        let place = Place {
            host: (*host).to_owned(),
            licensor: (*licensor).to_owned(),
            rolled_up: rolled_up.map(|(a, m)| (a.to_owned(), m.to_owned())),
            late: *late,
            batch: leaf_column,
        };
        last_segment = segments::write_encoded(sql, &place, count, keys, data)?;
    }
    report.logged = log_batch(sql, leaf, logged, record_key, signed, !new.is_empty())?;
    report.stored = true;
    let mut keys = Vec::with_capacity(new.len());
    keys.extend(new.iter().filter_map(|&i| {
        let record = &batch[i];
        checked[i].as_ref().ok().map(|good| (good.key_hash, record.host.as_ref(), record.id.as_ref(), segments::fingerprint(&good.digest)))
    }));
    Ok((report, Added { deltas: deltas.into_owned(), batch: leaf_column, keys, last_segment }))
}

/// The first occurrence of a record could not be read back: the index and the segments disagree.
fn corrupt_first(record: &UsageRecord<'_>) -> StoreError {
    StoreError::Corrupt {
        what: format!("record {} of host {}", record.id, record.host),
        detail: "the index has it, but it cannot be read back".to_owned(),
    }
}

/// Appends the batch's leaf (when it stored or repeated anything: `digests` are of those
/// records, as sent) and keeps its record commitments under `key`.
fn log_batch(
    sql: &mut impl Sql,
    leaf: u64,
    digests: Vec<[u8; 32]>,
    key: [u8; RECORD_KEY_BYTES],
    signed: Option<&SignedBatch>,
    stores_records: bool,
) -> Result<Option<LoggedBatch>, StoreError> {
    let mut commitments: Vec<[u8; 32]> =
        digests.par_iter().with_min_len(4096).map(|digest| record_commitment(&record_salt(&key, digest), digest)).collect();
    // In the order `sorted_digest` hashes them, which then finds them sorted; most comparisons
    // are of one integer, not bytes.
    commitments.par_sort_unstable_by(digest_order);
    commitments.dedup();
    if commitments.is_empty() {
        return Ok(None);
    }
    let digest = sorted_digest(&mut commitments);
    let records = u64::try_from(commitments.len()).unwrap_or(u64::MAX);
    let event = batch_event(&digest, records, signed.map(|s| &s.signed)).map_err(|e| StoreError::Log(e.to_string()))?;
    let appended = log::append(sql, &[LogLeaf::new("usage_batch", "batch".to_owned(), event)?])?;
    if appended != leaf {
        return Err(StoreError::Log(format!("the batch's leaf is {appended}, not {leaf}: another writer appended in between")));
    }
    // A batch that stored no record (resends only) keeps no commitments: no bundle holds a record
    // of it, so none needs them, and a replay grows nothing but the log.
    log::store_batch(sql, leaf, &digest, if stores_records { &commitments } else { &[] }, &key)?;
    Ok(Some(LoggedBatch { leaf, digest, records, record_key: key }))
}
