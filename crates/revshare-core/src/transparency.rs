//! What the transparency log holds (SPEC §7), and the messages parties sign.
//!
//! Every event is the RFC 8785 canonical JSON of one thing that happened, with a `type` member
//! saying what it is: an accepted usage batch, an agreement version, a finalised statement, a
//! contribution's state, a dispute transition, a journal entry, a registered public key. The
//! builders here are the only way events are made, by the store when it records one and by
//! `verify` when it checks one, so both read the same bytes. An event names what it logs by
//! digest (`sha256:`), never by copying it, except a contribution, which is small and whose state
//! at a given moment settlement needs.
//!
//! **The log commits; it does not disclose.** A leaf's data is not the event but
//! [`commitment`]: SHA-256 over a domain tag, a fresh random salt of [`SALT_BYTES`] and the event.
//! The tree, its checkpoints and proofs then say how many events there are and nothing else; the
//! event and its salt are handed only to the parties entitled to it, who recompute the
//! commitment and check it against the tree. The records of a usage batch are committed the same
//! way, one by one ([`record_commitment`]), with salts derived from a key per batch
//! ([`record_salt`]): a bundle shows the commitments of a mixed batch's other records, which
//! confirm no guess, and the salts of its own agreement's records only.
//!
//! Signed messages carry a first line naming what they are (`revshare usage batch v2`, …), so a
//! signature made for one purpose can never be presented as another.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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

/// The bytes of an event's salt: 256 random bits, drawn afresh for every event.
pub const SALT_BYTES: usize = 32;

/// An event's salt.
pub type Salt = [u8; SALT_BYTES];

/// The leaf data that commits to an event: SHA-256 of `revshare event v1\n`, the salt and the
/// event's canonical bytes. Without the salt it confirms no guess of the event; with it, anyone
/// holding the event checks it against the log.
pub fn commitment(salt: &Salt, event: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(b"revshare event v1\n");
    hasher.update(salt);
    hasher.update(event);
    hasher.finalize().into()
}

/// The bytes of a batch's record-salt key (128 bits).
pub const RECORD_KEY_BYTES: usize = 16;

/// The bytes of one record's salt (128 bits).
pub const RECORD_SALT_BYTES: usize = 16;

/// A record's salt in its batch: the first 16 bytes of SHA-256 of `rs-salt`, the batch's key and
/// the record's digest as sent. One input block: deriving costs one compression per record. The
/// salt of one record says nothing of the key, so handing it out opens that record only.
pub fn record_salt(key: &[u8; RECORD_KEY_BYTES], digest: &[u8; 32]) -> [u8; RECORD_SALT_BYTES] {
    let mut input = [0u8; 7 + RECORD_KEY_BYTES + 32];
    input[..7].copy_from_slice(b"rs-salt");
    input[7..7 + RECORD_KEY_BYTES].copy_from_slice(key);
    input[7 + RECORD_KEY_BYTES..].copy_from_slice(digest);
    let hash: [u8; 32] = Sha256::digest(input).into();
    let mut salt = [0u8; RECORD_SALT_BYTES];
    salt.copy_from_slice(&hash[..RECORD_SALT_BYTES]);
    salt
}

/// A record's commitment in its batch: SHA-256 of `rs-rec1`, its salt and its digest as sent
/// (one input block). A batch's digest is [`crate::settle::sorted_digest`] over these.
pub fn record_commitment(salt: &[u8; RECORD_SALT_BYTES], digest: &[u8; 32]) -> [u8; 32] {
    let mut input = [0u8; 7 + RECORD_SALT_BYTES + 32];
    input[..7].copy_from_slice(b"rs-rec1");
    input[7..7 + RECORD_SALT_BYTES].copy_from_slice(salt);
    input[7 + RECORD_SALT_BYTES..].copy_from_slice(digest);
    Sha256::digest(input).into()
}

/// The digest of a usage batch under its record-salt key: [`crate::settle::sorted_digest`] over
/// the [`record_commitment`]s of its distinct records' digests as sent. What a host signs
/// ([`batch_message`]) and the batch's event names.
pub fn batch_digest(key: &[u8; RECORD_KEY_BYTES], sent: &[[u8; 32]]) -> String {
    let mut commitments: Vec<[u8; 32]> = sent.iter().map(|digest| record_commitment(&record_salt(key, digest), digest)).collect();
    commitments.sort_unstable_by(crate::settle::digest_order);
    commitments.dedup();
    crate::settle::sorted_digest(&mut commitments)
}

/// A host's signature of a usage batch ([`batch_message`] of [`batch_digest`]) and the
/// record-salt key it chose for the batch, which the signature covers through the digest. The
/// key is a secret between the host and the deployment: it opens every record of the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedBatch {
    pub signed: Signed,
    pub record_key: [u8; RECORD_KEY_BYTES],
}

/// What a host signs for a usage batch: its digest ([`crate::settle::sorted_digest`] over the
/// [`record_commitment`]s of the distinct records as sent, under the batch's record-salt key).
pub fn batch_message(digest: &str) -> Vec<u8> {
    format!("revshare usage batch v2\n{digest}\n").into_bytes()
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

/// An accepted usage batch: its digest, how many distinct records it holds, and the host's
/// signature when it signed it. Not its hosts: a bundle shows the batch to the parties of every
/// agreement with a record in it.
pub fn batch_event(digest: &str, records: u64, signed: Option<&Signed>) -> Result<Vec<u8>, CanonicalError> {
    let mut leaf = json!({ "type": "usage_batch", "digest": digest, "records": records });
    if let (Some(signed), Some(map)) = (signed, leaf.as_object_mut()) {
        map.insert("signed".to_owned(), signed.to_json());
    }
    canonical::to_canonical(&leaf)
}

/// An agreement version: its parties, the digest of its meaning (`Agreement::digest`, which
/// statements name) and `source`, the digest of the TOML text as registered, so that not one byte
/// of the text (a comment included) can change unnoticed.
pub fn agreement_event(id: &str, version: u32, licensor: &str, host: &str, digest: &str, source: &str) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&json!({
        "type": "agreement", "id": id, "version": version, "licensor": licensor, "host": host, "digest": digest, "source": source,
    }))
}

/// A finalised statement (`kind` original or restatement; `sequence` from 1).
pub fn statement_event(agreement: &str, period: &str, sequence: u32, kind: &str, digest: &str) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&json!({
        "type": "statement", "agreement": agreement, "period": period, "sequence": sequence, "kind": kind, "digest": digest,
    }))
}

/// A contribution to an agreement as recorded, or as accepted: the whole contribution.
pub fn contribution_event(agreement: &str, contribution: &Contribution) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&json!({ "type": "contribution", "agreement": agreement, "contribution": contribution.to_json() }))
}

/// A dispute transition (SPEC §8): the dispute, what it questions, and the transition whole
/// (who, when, why, amount, evidence).
pub fn dispute_event(dispute: u64, subject: &Subject, transition: &Transition, currency: Currency) -> Result<Vec<u8>, CanonicalError> {
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
pub fn journal_event(reference: &str, kind: &str, agreement: &str, postings_digest: &str) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&json!({
        "type": "journal_entry", "reference": reference, "kind": kind, "agreement": agreement, "postings": postings_digest,
    }))
}

/// An auditor's grant to read an agreement (SPEC §9), or its revocation (`action` `grant` or
/// `revoke`): logged so that both parties of the agreement can see who may read it.
pub fn grant_event(agreement: &str, auditor: &str, action: &str) -> Result<Vec<u8>, CanonicalError> {
    canonical::to_canonical(&json!({ "type": "grant", "agreement": agreement, "auditor": auditor, "action": action }))
}

/// What the key being replaced signs when a key is rotated: whose key (empty for the
/// deployment's) and the new key's text. A rotation leaf carries this signature, so a verifier
/// who trusts the old key can follow the chain to the new one, and no one without the old private
/// key can add a key that a verifier would follow.
pub fn rotation_message(party: Option<&str>, new_key: &str) -> Vec<u8> {
    format!("revshare key rotation v1\n{}\n{new_key}\n", party.unwrap_or("")).into_bytes()
}

/// What a party signs with a new key to register it as its first (proof of possession): whose
/// key and the key's text. No one can register a key as a party's without its private half.
pub fn registration_message(party: &str, key: &str) -> Vec<u8> {
    format!("revshare key registration v1\n{party}\n{key}\n").into_bytes()
}

/// How a key came to be registered, as its event records it.
#[derive(Clone, Copy, Debug)]
pub enum KeyOrigin<'a> {
    /// A first key registered by the operator.
    Operator,
    /// A party's first key, registered by the party: the key's signature of
    /// [`registration_message`].
    Possession(&'a [u8; 64]),
    /// A later key: the replaced key's text and its signature of [`rotation_message`].
    Rotation(&'a Signed),
}

/// A public key registered for a party, or (`party` none) a signing key of the deployment. A
/// rotation names the key it replaces and carries that key's signature of [`rotation_message`]; a
/// first key registered by its party carries its proof of possession (`proof`); a first key
/// registered by the operator has `replaces`, `signature` and `proof` null.
pub fn key_event(party: Option<&str>, key: &str, origin: KeyOrigin<'_>) -> Result<Vec<u8>, CanonicalError> {
    let (replaces, signature, proof) = match origin {
        KeyOrigin::Operator => (None, None, None),
        KeyOrigin::Possession(proof) => (None, None, Some(b64(proof))),
        KeyOrigin::Rotation(signed) => (Some(signed.key.as_str()), Some(b64(&signed.signature)), None),
    };
    canonical::to_canonical(&json!({
        "type": "key", "party": party, "key": key, "replaces": replaces, "signature": signature, "proof": proof,
    }))
}

/// Reads an event back as JSON, with its `type`.
pub fn read_event(data: &[u8]) -> Option<(String, Value)> {
    let value: Value = serde_json::from_slice(data).ok()?;
    let kind = value.get("type")?.as_str()?.to_owned();
    Some((kind, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/INTEGRATING.md's worked example of a batch digest, step by step.
    #[test]
    fn the_documented_batch_digest_example_holds() {
        let line = br#"{"id":"e1","host":"northwind","model":"m-70b","use_case":"customer_service","region":"us","time":"2026-10-02T10:00:00Z","requests":120000,"input_tokens":900000000,"output_tokens":300000000,"revenue":"1080.000000","currency":"USD"}"#;
        let parsed = crate::usage::parse_json_line(line);
        assert!(parsed.is_ok(), "the example record parses");
        let Ok(record) = parsed else { return };
        let mut canonical = Vec::new();
        record.write_canonical(&mut canonical);
        assert_eq!(
            String::from_utf8_lossy(&canonical),
            r#"{"currency":"USD","host":"northwind","id":"e1","input_tokens":"900000000","model":"m-70b","output_tokens":"300000000","region":"us","requests":"120000","revenue":"1080","time":"2026-10-02T10:00:00Z","use_case":"customer_service"}"#
        );
        let digest = record.digest();
        assert_eq!(canonical::hex(&digest), "60c3993cb580d09d9a891092a4d9cc6876ddb1a63a8a3c4aa0467c446ca9690e");
        let key: [u8; RECORD_KEY_BYTES] = std::array::from_fn(|i| u8::try_from(i).unwrap_or(0));
        let salt = record_salt(&key, &digest);
        assert_eq!(canonical::hex(&salt), "f71ea8647e1e23361ae1a958c2903142");
        assert_eq!(canonical::hex(&record_commitment(&salt, &digest)), "2b8804ea19082d3d0f2065b2e363fb6e3e69b020ef06f41d4ed1e765bedcc99c");
        assert_eq!(batch_digest(&key, &[digest]), "sha256:bbe31b5c00fbb4b02ec259d7fdc1e528a4fa4a9e063f1354c8828fa76d9d0943");
    }

    #[test]
    fn leaves_are_canonical_and_typed() {
        let event = batch_event("sha256:ab", 3, None).unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&event), r#"{"digest":"sha256:ab","records":3,"type":"usage_batch"}"#);
        assert_eq!(read_event(&event).map(|(kind, _)| kind).as_deref(), Some("usage_batch"));
    }

    #[test]
    fn commitments_depend_on_salt_and_event() {
        let event = br#"{"type":"key"}"#;
        let (a, b) = ([1u8; SALT_BYTES], [2u8; SALT_BYTES]);
        assert_ne!(commitment(&a, event), commitment(&b, event));
        assert_ne!(commitment(&a, event), commitment(&a, br#"{"type":"kez"}"#));
        assert_eq!(commitment(&a, event), commitment(&a, event));
        let digest = [7u8; 32];
        let (k1, k2) = ([1u8; RECORD_KEY_BYTES], [2u8; RECORD_KEY_BYTES]);
        assert_ne!(record_salt(&k1, &digest), record_salt(&k2, &digest));
        assert_ne!(record_salt(&k1, &digest), record_salt(&k1, &[8u8; 32]));
        let salt = record_salt(&k1, &digest);
        assert_ne!(record_commitment(&salt, &digest), record_commitment(&salt, &[8u8; 32]));
        // The commitment is not the record's bare digest, nor its salted hash under another tag.
        assert_ne!(record_commitment(&salt, &digest), digest);
    }

    #[test]
    fn messages_name_their_purpose() {
        assert_ne!(batch_message("sha256:00"), statement_message("sha256:00"));
        assert!(statement_message("sha256:00").starts_with(b"revshare statement v1\n"));
    }
}
