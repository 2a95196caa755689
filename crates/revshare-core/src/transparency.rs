//! What the transparency log holds (SPEC §7), and the messages parties sign.
//!
//! Every leaf is the RFC 8785 canonical JSON of one event, with a `type` member saying what it is:
//! an accepted usage batch, an agreement version, a finalised statement, a contribution's state, a
//! dispute transition, a journal entry, a registered public key. The builders here are the only way leaves are made,
//! by the store when it records an event and by `verify` when it checks one, so both read the
//! same bytes. A leaf names what it logs by digest (`sha256:`), never by copying it, except a
//! contribution, which is small and whose state at a given moment settlement needs.
//!
//! Signed messages carry a first line naming what they are (`revshare usage batch v1`, …), so a
//! signature made for one purpose can never be presented as another.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::canonical::{self, CanonicalError};
use crate::contribution::Contribution;
use crate::dispute::{Subject, Transition, transition_json};
use crate::merkle::Hash;
use crate::money::Currency;

/// Base64 (standard alphabet, padded), the encoding of hashes and signatures in checkpoints,
/// proofs and receipts.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes [`b64`] text.
pub fn from_b64(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// Decodes a base64 hash of exactly 32 bytes.
pub fn hash_from_b64(text: &str) -> Option<Hash> {
    from_b64(text).and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
}

/// A signature on a leaf or statement: the signer's verifier key (`name+id+key` text) and the
/// Ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub key: String,
    pub signature: [u8; 64],
}

impl Signed {
    pub fn to_json(&self) -> Value {
        json!({ "key": self.key, "signature": b64(&self.signature) })
    }

    /// Reads [`Signed::to_json`]'s form.
    pub fn from_json(value: &Value) -> Option<Signed> {
        let key = value.get("key")?.as_str()?.to_owned();
        let signature = from_b64(value.get("signature")?.as_str()?)?;
        Some(Signed { key, signature: <[u8; 64]>::try_from(signature.as_slice()).ok()? })
    }
}

/// What a host signs for a usage batch: its digest ([`crate::settle::sorted_digest`] over the
/// SHA-256 digests of the distinct records as sent).
pub fn batch_message(digest: &str) -> Vec<u8> {
    format!("revshare usage batch v1\n{digest}\n").into_bytes()
}

/// What the deployment signs, and a host countersigns, for a finalised statement.
pub fn statement_message(digest: &str) -> Vec<u8> {
    format!("revshare statement v1\n{digest}\n").into_bytes()
}

/// What the deployment signs for a receipt: its canonical bytes without the signature.
pub fn receipt_message(unsigned_canonical: &[u8]) -> Vec<u8> {
    let mut out = b"revshare receipt v1\n".to_vec();
    out.extend_from_slice(unsigned_canonical);
    out
}

/// An accepted usage batch: its digest, how many distinct records it holds, their hosts, and the
/// host's signature when it signed it.
pub fn batch_leaf(digest: &str, records: u64, hosts: &[&str], signed: Option<&Signed>) -> Result<Vec<u8>, CanonicalError> {
    let mut leaf = json!({ "type": "usage_batch", "digest": digest, "records": records, "hosts": hosts });
    if let (Some(signed), Some(map)) = (signed, leaf.as_object_mut()) {
        map.insert("signed".to_owned(), signed.to_json());
    }
    canonical::to_canonical(&leaf)
}

/// An agreement version: its parties, the digest of its meaning (`Agreement::digest`, which
/// statements name) and `source`, the digest of the TOML text as registered, so that not one byte
/// of the text (a comment included) can change unnoticed.
pub fn agreement_leaf(id: &str, version: u32, licensor: &str, host: &str, digest: &str, source: &str) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&json!({
        "type": "agreement", "id": id, "version": version, "licensor": licensor, "host": host, "digest": digest, "source": source,
    }))
}

/// A finalised statement (`kind` original or restatement; `sequence` from 1).
pub fn statement_leaf(agreement: &str, period: &str, sequence: u32, kind: &str, digest: &str) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&json!({
        "type": "statement", "agreement": agreement, "period": period, "sequence": sequence, "kind": kind, "digest": digest,
    }))
}

/// A contribution to an agreement as recorded, or as accepted: the whole contribution.
pub fn contribution_leaf(agreement: &str, contribution: &Contribution) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&json!({ "type": "contribution", "agreement": agreement, "contribution": contribution.to_json() }))
}

/// A dispute transition (SPEC §8): the dispute, what it questions, and the transition whole
/// (who, when, why, amount, evidence).
pub fn dispute_leaf(dispute: u64, subject: &Subject, transition: &Transition, currency: Currency) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&json!({
        "type": "dispute",
        "dispute": dispute,
        "agreement": subject.agreement.as_str(),
        "period": subject.period.to_string(),
        "sequence": subject.sequence,
        "statement": subject.digest,
        "line": subject.line,
        "transition": transition_json(transition, currency),
    }))
}

/// A journal entry (statement, payment, adjustment, reversal): its reference, kind and the
/// digest of its postings' canonical form.
pub fn journal_leaf(reference: &str, kind: &str, agreement: &str, postings_digest: &str) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&json!({
        "type": "journal_entry", "reference": reference, "kind": kind, "agreement": agreement, "postings": postings_digest,
    }))
}

/// What the key being replaced signs when a key is rotated: whose key (empty for the
/// deployment's) and the new key's text. A rotation leaf carries this signature, so a verifier
/// who trusts the old key can follow the chain to the new one, and no one without the old private
/// key can add a key that a verifier would follow.
pub fn rotation_message(party: Option<&str>, new_key: &str) -> Vec<u8> {
    format!("revshare key rotation v1\n{}\n{new_key}\n", party.unwrap_or("")).into_bytes()
}

/// A public key registered for a party, or (`party` none) a signing key of the deployment. A
/// rotation names the key it replaces and carries that key's signature of
/// [`rotation_message`] (`rotation`: the replaced key's text and signature); a first key has
/// `replaces` and `signature` null.
pub fn key_leaf(party: Option<&str>, key: &str, rotation: Option<&Signed>) -> Result<Vec<u8>, CanonicalError> {
    let (replaces, signature) = match rotation {
        Some(signed) => (Some(signed.key.as_str()), Some(b64(&signed.signature))),
        None => (None, None),
    };
    canonical::to_canonical(&json!({ "type": "key", "party": party, "key": key, "replaces": replaces, "signature": signature }))
}

/// Reads a leaf back as JSON, with its `type`.
pub fn read_leaf(data: &[u8]) -> Option<(String, Value)> {
    let value: Value = serde_json::from_slice(data).ok()?;
    let kind = value.get("type")?.as_str()?.to_owned();
    Some((kind, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_are_canonical_and_typed() {
        let leaf = batch_leaf("sha256:ab", 3, &["northwind"], None).unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&leaf), r#"{"digest":"sha256:ab","hosts":["northwind"],"records":3,"type":"usage_batch"}"#);
        assert_eq!(read_leaf(&leaf).map(|(kind, _)| kind).as_deref(), Some("usage_batch"));
    }

    #[test]
    fn messages_name_their_purpose() {
        assert_ne!(batch_message("sha256:00"), statement_message("sha256:00"));
        assert!(statement_message("sha256:00").starts_with(b"revshare statement v1\n"));
    }
}
