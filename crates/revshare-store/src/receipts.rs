//! Signed checkpoints and receipts: what the deployment signs about its log. The signing key and
//! the time are the caller's (the CLI's or the server's), so both sign the same way.

use revshare_core::merkle::Hash;
use revshare_core::note::{Checkpoint, SignerKey, sign_note};
use revshare_core::time::Instant;
use revshare_core::transparency::{Signed, b64, receipt_message};
use serde_json::{Value, json};

use crate::{LoggedBatch, Store, StoreError};

/// Signs and keeps a checkpoint of the log as it is now: (size, root, signed note). The note's
/// one extension line is `time <now>`.
pub fn checkpoint<S: Store + ?Sized>(store: &mut S, key: &SignerKey, now: Instant) -> Result<(u64, Hash, String), StoreError> {
    let size = store.log_size()?;
    let root = store.log_root(size)?;
    let body = Checkpoint { origin: key.name().to_owned(), size, root, extensions: vec![format!("time {now}")] }.body();
    let note = sign_note(&body, &[key]).map_err(|e| StoreError::Log(format!("the checkpoint cannot be signed: {e}")))?;
    store.add_checkpoint(size, &note)?;
    Ok((size, root, note))
}

/// Hashes as base64 text, the form proofs take in JSON.
pub fn hashes(proof: &[Hash]) -> Vec<String> {
    proof.iter().map(|h| b64(h)).collect()
}

/// A signed receipt for a committed usage batch: the batch, its leaf, a fresh checkpoint and the
/// leaf's inclusion proof at the checkpoint's size, signed by the deployment over
/// `revshare receipt v1\n` + the receipt's canonical bytes without `signed`.
pub fn receipt<S: Store + ?Sized>(store: &mut S, key: &SignerKey, now: Instant, batch: &LoggedBatch) -> Result<Value, StoreError> {
    let (size, _, note) = checkpoint(store, key, now)?;
    let leaf = store.log_leaf(batch.leaf)?;
    let proof = store.inclusion_proof(batch.leaf, size)?;
    let mut receipt = json!({
        "type": "receipt",
        "batch": { "digest": batch.digest, "records": batch.records },
        "leaf": { "index": batch.leaf, "data": String::from_utf8_lossy(&leaf.data) },
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
