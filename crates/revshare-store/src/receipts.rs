//! Signed checkpoints, receipts and proofs: what the deployment signs and proves about its log,
//! the one copy `revshare log …` and `GET /v1/log/…` both answer with. The signing key and the
//! time are the caller's (the CLI's or the server's), so both sign the same way.

use revshare_core::merkle::Hash;
use revshare_core::note::{Checkpoint, SignerKey, sign_note};
use revshare_core::time::Instant;
use revshare_core::transparency::{Signed, b64, receipt_message};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{LoggedBatch, Store, StoreError};

/// Signs and keeps a checkpoint of the log as it is now: (size, root, signed note). The note's
/// one extension line is `time <now>`. Kept, so that later bundles can carry consistency proofs
/// from it: what a receipt, a close or a bundle hands out.
pub fn checkpoint<S: Store + ?Sized>(store: &mut S, key: &SignerKey, now: Instant) -> Result<(u64, Hash, String), StoreError> {
    let (size, root, note) = sign_checkpoint(store, key, now)?;
    store.add_checkpoint(size, &note)?;
    Ok((size, root, note))
}

/// [`checkpoint`] signed and not kept: what a read hands out (`GET /v1/log/checkpoint`, a proof's
/// fresh checkpoint), which must change nothing. A party that keeps one fetches a consistency
/// proof from it when it needs one.
pub fn sign_checkpoint<S: Store + ?Sized>(store: &mut S, key: &SignerKey, now: Instant) -> Result<(u64, Hash, String), StoreError> {
    let size = store.log_size()?;
    let root = store.log_root(size)?;
    let body = Checkpoint { origin: key.name().to_owned(), size, root, extensions: vec![format!("time {now}")] }.body();
    let note = sign_note(&body, &[key]).map_err(|e| StoreError::Log(format!("the checkpoint cannot be signed: {e}")))?;
    Ok((size, root, note))
}

/// Hashes as base64 text, the form proofs take in JSON.
pub fn hashes(proof: &[Hash]) -> Vec<String> {
    proof.iter().map(|h| b64(h)).collect()
}

/// A signed receipt for a committed usage batch, for whoever sent it: the batch (with its
/// record-salt key, which opens every record of it: the sender's own), its leaf's event and salt,
/// a fresh checkpoint and the leaf's inclusion proof at the checkpoint's size, signed by the deployment over
/// `revshare receipt v1\n` + the receipt's canonical bytes without `signed`.
pub fn receipt<S: Store + ?Sized>(store: &mut S, key: &SignerKey, now: Instant, batch: &LoggedBatch) -> Result<Value, StoreError> {
    let checkpoint = checkpoint(store, key, now)?;
    receipt_under(store, key, &checkpoint, batch)
}

/// [`receipt`] under a checkpoint already signed and kept ([`checkpoint`]) that includes the
/// batch's leaf: one checkpoint for the batches of a group commit.
pub fn receipt_under<S: Store + ?Sized>(
    store: &mut S,
    key: &SignerKey,
    (size, _, note): &(u64, Hash, String),
    batch: &LoggedBatch,
) -> Result<Value, StoreError> {
    let size = *size;
    let leaf = store.log_leaf(batch.leaf)?;
    let proof = store.inclusion_proof(batch.leaf, size)?;
    let mut receipt = json!({
        "type": "receipt",
        "batch": { "digest": batch.digest, "records": batch.records, "record_key": b64(&batch.record_key) },
        "leaf": { "index": batch.leaf, "event": String::from_utf8_lossy(&leaf.event), "salt": b64(&leaf.salt) },
        "tree_size": size,
        "inclusion_proof": hashes(&proof),
        "checkpoint": note,
    });
    let unsigned =
        revshare_core::canonical::to_canonical(&receipt).map_err(|e| StoreError::Log(format!("a receipt cannot be encoded: {e}")))?;
    let signature = key.sign(&receipt_message(&unsigned));
    if let Some(map) = receipt.as_object_mut() {
        map.insert("signed".to_owned(), Signed { key: key.verifier().to_text(), signature }.to_json());
    }
    Ok(receipt)
}

/// A leaf and its RFC 6962 inclusion proof (hashes in base64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InclusionProof {
    #[cfg_attr(feature = "openapi", schema(example = 5))]
    pub index: u64,
    #[cfg_attr(feature = "openapi", schema(example = 12))]
    pub tree_size: u64,
    pub root: String,
    pub kind: String,
    /// The event's canonical JSON text.
    pub event: String,
    /// The event's salt, in base64: the leaf's data is `revshare_core::transparency::commitment`
    /// of the two.
    pub salt: String,
    /// The leaf's data, in base64.
    pub commitment: String,
    pub inclusion_proof: Vec<String>,
    /// The fresh checkpoint signed for this proof, when `size` was not given.
    pub checkpoint: Option<String>,
}

/// The RFC 6962 consistency proof between two tree sizes (hashes in base64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyProof {
    #[cfg_attr(feature = "openapi", schema(example = 8))]
    pub from: u64,
    #[cfg_attr(feature = "openapi", schema(example = 12))]
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    pub consistency_proof: Vec<String>,
    /// The fresh checkpoint signed for this proof, when `to` was not given.
    pub checkpoint: Option<String>,
}

/// Why a proof could not be given.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// Sizes or indexes outside the log: the caller's mistake, said with what would be right.
    #[error("{0}")]
    Range(String),
    /// Boxed: a store error is large, and proofs are asked for one at a time.
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for ProofError {
    fn from(error: StoreError) -> ProofError {
        ProofError::Store(Box::new(error))
    }
}

/// The tree size a proof is given at: `size`, or (none) a fresh checkpoint's, which is signed
/// with `key` at `now` and returned.
fn proof_size<S: Store + ?Sized>(
    store: &mut S,
    key: &SignerKey,
    now: Instant,
    size: Option<u64>,
) -> Result<(u64, Option<String>), ProofError> {
    let current = store.log_size()?;
    match size {
        Some(size) if size > current => Err(ProofError::Range(format!("the log has {current} leaves; there is no tree of {size}"))),
        Some(size) => Ok((size, None)),
        None => {
            let (size, _, note) = sign_checkpoint(store, key, now)?;
            Ok((size, Some(note)))
        }
    }
}

/// Leaf `index` and its inclusion proof in the tree of `size` leaves (default: a fresh
/// checkpoint's, included).
pub fn inclusion<S: Store + ?Sized>(
    store: &mut S,
    key: &SignerKey,
    now: Instant,
    index: u64,
    size: Option<u64>,
) -> Result<InclusionProof, ProofError> {
    let (size, checkpoint) = proof_size(store, key, now, size)?;
    if index >= size {
        return Err(ProofError::Range(format!("leaf {index} is not in the tree of {size} leaves")));
    }
    let leaf = store.log_leaf(index)?;
    let proof = store.inclusion_proof(index, size)?;
    Ok(InclusionProof {
        index,
        tree_size: size,
        root: b64(&store.log_root(size)?),
        commitment: b64(&leaf.data()),
        kind: leaf.kind,
        event: String::from_utf8_lossy(&leaf.event).into_owned(),
        salt: b64(&leaf.salt),
        inclusion_proof: hashes(&proof),
        checkpoint,
    })
}

/// The proof that the tree of `to` leaves (default: a fresh checkpoint's, included) extends the
/// tree of `from` leaves.
pub fn consistency<S: Store + ?Sized>(
    store: &mut S,
    key: &SignerKey,
    now: Instant,
    from: u64,
    to: Option<u64>,
) -> Result<ConsistencyProof, ProofError> {
    let (to, checkpoint) = proof_size(store, key, now, to)?;
    if from == 0 || from > to {
        return Err(ProofError::Range(format!("`from` must be between 1 and {to}, not {from}")));
    }
    let proof = store.consistency_proof(from, to)?;
    Ok(ConsistencyProof {
        from,
        to,
        from_root: b64(&store.log_root(from)?),
        to_root: b64(&store.log_root(to)?),
        consistency_proof: hashes(&proof),
        checkpoint,
    })
}
