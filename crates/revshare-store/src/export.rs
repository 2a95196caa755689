//! Statement bundles: the one copy of how `revshare statement export --bundle DIR` and
//! `GET /v1/statements/{agreement}/{period}/bundle` assemble everything needed to check a
//! statement offline (SPEC §7; the files are described on `revshare_core::bundle::Bundle`).
//!
//! [`bundle`] signs and keeps a fresh checkpoint (the caller brings the key and the time, as for
//! [`crate::receipts`]) and proves every leaf the bundle relies on under it: the statement, its
//! agreement version, the contributions logged before it, the usage batches of the records it
//! counted, the two statements of each month it restates, and the keys. Every leaf is shown as
//! its event and salt, from which the verifier recomputes its commitment; each record comes with
//! its salt in its batch, and each batch's file holds its records' commitments, never their bare
//! digests (SPEC §7: the log commits, it does not disclose). The records are those of the month stored before the statement was
//! finalised (a record's batch leaf comes before the statement's leaf; the log orders every
//! write); later ones are late records, which a restatement counts. Consistency is proven from
//! the checkpoints its parties may hold: each batch's receipt carries the first checkpoint that
//! includes the batch, and every bundle of the agreement is exported under a checkpoint recorded
//! for it (`bundle_checkpoints`), from which every later bundle of the agreement carries a proof,
//! so last month's bundle's checkpoint works with `verify --since` (every checkpoint ever kept
//! would grow without bound). Writing the files is the caller's: a directory for the CLI, a tar
//! archive for the server (`Bundle::files`).

use std::collections::BTreeMap;

use revshare_core::bundle::{Bundle, RestatedMonth};
use revshare_core::ids::AgreementId;
use revshare_core::note::SignerKey;
use revshare_core::statement::AdjustmentKind;
use revshare_core::time::{Instant, Period};
use revshare_core::transparency::{RECORD_SALT_BYTES, Signed, b64, record_salt};
use serde_json::{Value, json};

use crate::receipts::{checkpoint, hashes};
use crate::{LogLeaf, SentRecord, Store, StoreError, StoredStatement};

/// Why a bundle could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Boxed: a store error is large, and exports are rare.
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error("{agreement} has no statement {}for {period}; close the month first (`revshare close`)", sequence.map(|n| format!("#{n} ")).unwrap_or_default())]
    NoStatement { agreement: AgreementId, period: Period, sequence: Option<u32> },
    #[error("statement {agreement} {period} #{sequence} was finalised before this store kept a transparency log, so it has no proofs")]
    StatementNotLogged { agreement: AgreementId, period: Period, sequence: u32 },
    #[error("agreement {agreement} version {version} is not in the log; it was registered before the log")]
    AgreementNotLogged { agreement: AgreementId, version: u32 },
    #[error("a bundle file cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

impl From<StoreError> for ExportError {
    fn from(error: StoreError) -> ExportError {
        ExportError::Store(Box::new(error))
    }
}

/// What a bundle holds, for the caller's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSummary {
    pub agreement: AgreementId,
    pub period: Period,
    pub sequence: u32,
    /// `sha256:` of the statement's canonical bytes.
    pub digest: String,
    /// Records counted (`records.jsonl` lines).
    pub records: usize,
    /// Usage batches of those records (`batches/*.digests`).
    pub batches: usize,
    /// Log leaves proven in `log.json`.
    pub leaves: usize,
    /// The size of the checkpoint the leaves are proven under.
    pub tree_size: u64,
    /// Records stored before the log existed: `verify` reports them as in no batch.
    pub unlogged: u64,
}

fn pretty(value: &Value) -> Result<Vec<u8>, ExportError> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Assembles the bundle of an agreement's month: its latest statement, or statement `sequence`
/// (1 the original, then its restatements). Signs and keeps a checkpoint at `now` with `key`.
pub fn bundle<S: Store + ?Sized>(
    store: &mut S,
    key: &SignerKey,
    agreement: &AgreementId,
    period: Period,
    sequence: Option<u32>,
    now: Instant,
) -> Result<(Bundle, BundleSummary), ExportError> {
    let found = match sequence {
        Some(n) => store.statement_by_sequence(agreement, period, n)?,
        None => store.statement(agreement, period)?,
    };
    let statement = found.ok_or_else(|| ExportError::NoStatement { agreement: agreement.clone(), period, sequence })?;
    let Some(statement_leaf) = statement.head.leaf else {
        return Err(ExportError::StatementNotLogged { agreement: agreement.clone(), period, sequence: statement.head.sequence });
    };
    let id = statement.head.agreement_id.clone();
    let version = statement.head.agreement_version;
    let (size, _, note) = checkpoint(store, key, now)?;
    store.add_bundle_checkpoint(&id, size)?;

    // The leaves the bundle proves: the statement, its agreement version, the contributions
    // logged before it, the batches of its records and the keys.
    let mut leaves: BTreeMap<u64, LogLeaf> = BTreeMap::new();
    leaves.insert(statement_leaf, store.log_leaf(statement_leaf)?);
    let agreement_leaves = store.log_leaves_of(&format!("agreement:{id}/{version}"))?;
    let Some((agreement_leaf, leaf)) = agreement_leaves.into_iter().next() else {
        return Err(ExportError::AgreementNotLogged { agreement: id, version });
    };
    leaves.insert(agreement_leaf, leaf);
    for (index, leaf) in store.log_leaves_of(&format!("contributions:{id}"))? {
        if index < statement_leaf {
            leaves.insert(index, leaf);
        }
    }
    // The transitions of each dispute the statement carries, as logged before it.
    let adjustments = statement.statement()?.adjustments;
    for adjustment in adjustments.iter().filter(|a| a.dispute().is_some()) {
        for (index, leaf) in store.log_leaves_of(&adjustment.reference)? {
            if index < statement_leaf {
                leaves.insert(index, leaf);
            }
        }
    }
    // The two statements each restatement adjustment compares: the restatement finalised with
    // the statement (the month's last logged before it) and the one it replaced. A month whose
    // statements predate the log has none to prove; `verify` says so.
    let mut restated = Vec::new();
    let finalised = store.statements(Some(&id))?;
    for adjustment in adjustments.iter().filter(|a| a.kind == AdjustmentKind::Restatement) {
        let month = |s: &&StoredStatement| s.head.period.to_string() == adjustment.reference;
        let after =
            finalised.iter().filter(month).filter(|s| s.head.leaf.is_some_and(|l| l < statement_leaf)).max_by_key(|s| s.head.sequence);
        let before = after.and_then(|after| finalised.iter().filter(month).find(|s| s.head.sequence + 1 == after.head.sequence));
        let (Some(before), Some(after)) = (before, after) else { continue };
        for leaf in [before.head.leaf, after.head.leaf].into_iter().flatten() {
            leaves.insert(leaf, store.log_leaf(leaf)?);
        }
        restated.push(RestatedMonth {
            period: adjustment.reference.clone(),
            before: before.canonical.clone(),
            after: after.canonical.clone(),
        });
    }
    let agreement_text = store.agreement_source(&id, version)?;

    let mut records = store.sent_records(&id, period)?;
    records.retain(|r| r.batch.is_none_or(|b| b < statement_leaf));
    let mut batches: Vec<u64> = records.iter().filter_map(|r| r.batch).collect();
    batches.sort_unstable();
    batches.dedup();
    // Each batch's file of record commitments (the other records of a mixed batch are there only
    // as commitments), and its record-salt key, which stays here: the bundle gets the salts of
    // its own records only.
    let mut batch_files = Vec::with_capacity(batches.len());
    let mut record_keys = BTreeMap::new();
    for &batch in &batches {
        let stored = store.usage_batch(batch)?;
        batch_files.push((batch, stored.commitments.concat()));
        record_keys.insert(batch, stored.record_key);
        leaves.insert(batch, store.log_leaf(batch)?);
    }
    let mut lines = Vec::with_capacity(records.len() * 200);
    let mut salts = Vec::with_capacity(records.len() * RECORD_SALT_BYTES);
    let mut unlogged = 0u64;
    let mut aliases: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for SentRecord { batch, record, model } in &records {
        record.write_json_line(&mut lines);
        lines.push(b'\n');
        let digest = record.digest();
        match batch.and_then(|b| record_keys.get(&b)) {
            Some(key) => salts.extend_from_slice(&record_salt(key, &digest)),
            None => {
                unlogged += 1;
                salts.extend_from_slice(&[0; RECORD_SALT_BYTES]);
            }
        }
        if record.model != model.as_str() {
            aliases.entry(record.host.to_string()).or_default().insert(record.model.to_string(), model.clone());
        }
    }

    // The lineage of the derived models the records name: what their lines were priced by.
    let lineage = store.lineage()?.chains_of(records.iter().map(|r| r.model.as_str()));
    let host = store.agreement(&id, Some(version))?.host().clone();
    let mut deployment_keys = Vec::new();
    let mut host_keys = Vec::new();
    for registered in store.keys()? {
        match registered.party.as_deref() {
            None => deployment_keys.push(registered.key.to_text()),
            Some(party) if party == host.as_str() => host_keys.push(registered.key.to_text()),
            Some(_) => continue,
        }
        leaves.insert(registered.leaf, store.log_leaf(registered.leaf)?);
    }

    let mut proven = Vec::with_capacity(leaves.len());
    for (index, leaf) in &leaves {
        let proof = store.inclusion_proof(*index, size)?;
        let (event, salt) = (String::from_utf8_lossy(&leaf.event), b64(&leaf.salt));
        proven.push(json!({ "index": index, "event": event, "salt": salt, "proof": hashes(&proof) }));
    }
    // The checkpoints its parties may hold: each batch's receipt's, and every earlier bundle's of
    // the agreement (last month's, say).
    let mut held: BTreeMap<u64, String> = BTreeMap::new();
    for &batch in &batches {
        if let Some((from, note)) = store.checkpoint_including(batch)?.filter(|(from, _)| *from < size) {
            held.insert(from, note);
        }
    }
    held.extend(store.bundle_checkpoints(&id)?.into_iter().filter(|(from, _)| *from > 0 && *from < size));
    let mut consistency = Vec::new();
    for (from, from_note) in held {
        consistency.push(json!({ "from": from_note, "proof": hashes(&store.consistency_proof(from, size)?) }));
    }
    let signatures: Vec<Value> = store.statement_signatures(&statement)?.iter().map(Signed::to_json).collect();

    let summary = BundleSummary {
        agreement: id,
        period,
        sequence: statement.head.sequence,
        digest: statement.head.digest.clone(),
        records: records.len(),
        batches: batches.len(),
        leaves: leaves.len(),
        tree_size: size,
        unlogged,
    };
    let bundle = Bundle {
        statement: statement.canonical,
        agreement: agreement_text,
        records: lines,
        salts,
        aliases: pretty(&json!(aliases))?,
        models: pretty(&lineage.to_json())?,
        log: pretty(&json!({ "checkpoint": note, "leaves": proven, "consistency": consistency }))?,
        keys: pretty(&json!({ "deployment": deployment_keys, "host": host_keys }))?,
        signatures: pretty(&Value::Array(signatures))?,
        batches: batch_files,
        restated,
    };
    Ok((bundle, summary))
}
