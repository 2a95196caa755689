//! `log.json`: its shape, the checkpoint, and every leaf's inclusion proof under it: a leaf's
//! data is the commitment to its event under its salt, both of which the bundle discloses.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::merkle::{Hash, leaf_hash, verify_inclusion};
use crate::note::{Checkpoint, VerifierKey, open_note};
use crate::transparency::{SALT_BYTES, Salt, commitment, from_b64, hash_from_b64, read_event};

use super::keys::Keys;
use super::{Run, kind_of, shorten, show, str_member};

pub(super) struct LogJson {
    /// `None` when missing (already a finding).
    pub(super) checkpoint: Option<String>,
    pub(super) leaves: Vec<RawLeaf>,
    pub(super) consistency: Vec<RawConsistency>,
}

pub(super) struct RawLeaf {
    pub(super) index: u64,
    /// The event's canonical JSON text.
    pub(super) event: String,
    /// `None` when it is not base64 of [`SALT_BYTES`] bytes (already a finding).
    pub(super) salt: Option<Salt>,
    /// `None` when a proof hash is not base64 of 32 bytes (already a finding).
    pub(super) proof: Option<Vec<Hash>>,
}

pub(super) struct RawConsistency {
    pub(super) from: String,
    pub(super) proof: Option<Vec<Hash>>,
}

pub(super) const LOG_SHAPE: &str = r#"a JSON object {"checkpoint": "<signed note>", "leaves": [{"index", "event", "salt", "proof"}, …], "consistency": [{"from", "proof"}, …]}"#;

impl Run {
    /// Reads a proof: an array of base64 hashes.
    pub(super) fn proof(&mut self, what: &str, value: Option<&Value>) -> Option<Vec<Hash>> {
        let Some(Value::Array(items)) = value else {
            self.find(what, "`proof`: an array of base64 hashes", value.map_or("no `proof`", kind_of));
            return None;
        };
        let mut proof = Vec::with_capacity(items.len());
        let mut good = true;
        for (i, item) in items.iter().enumerate() {
            match item.as_str().and_then(hash_from_b64) {
                Some(hash) => proof.push(hash),
                None => {
                    self.find(format!("{what} proof[{i}]"), "a base64 SHA-256 hash (32 bytes)", shorten(&show(item), 80));
                    good = false;
                }
            }
        }
        good.then_some(proof)
    }

    pub(super) fn log_json(&mut self, bytes: &[u8]) -> Option<LogJson> {
        let value = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                self.find("log.json", LOG_SHAPE, kind_of(&other));
                return None;
            }
            Err(e) => {
                self.find("log.json", LOG_SHAPE, format!("not valid JSON: {e}"));
                return None;
            }
        };
        for key in value.keys().filter(|k| !matches!(k.as_str(), "checkpoint" | "leaves" | "consistency")) {
            self.find("log.json", "members `checkpoint`, `leaves` and `consistency` only", format!("member `{key}`"));
        }
        let checkpoint = match value.get("checkpoint") {
            Some(Value::String(s)) => Some(s.clone()),
            other => {
                self.find("log.json checkpoint", "the checkpoint's signed note text", other.map_or("no `checkpoint`", kind_of));
                None
            }
        };
        let mut leaves = Vec::new();
        match value.get("leaves") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let what = format!("log.json leaves[{i}]");
                    let index = item.get("index").and_then(Value::as_u64);
                    let event = str_member(item, "event");
                    let (Some(index), Some(event)) = (index, event) else {
                        self.find(
                            what,
                            r#"{"index": <leaf index>, "event": "<event JSON>", "salt": "<base64>", "proof": [...]}"#,
                            shorten(&item.to_string(), 120),
                        );
                        continue;
                    };
                    let salt = str_member(item, "salt").and_then(from_b64).and_then(|bytes| Salt::try_from(bytes.as_slice()).ok());
                    if salt.is_none() {
                        let found = item.get("salt").map_or_else(|| "no `salt`".to_owned(), |s| shorten(&show(s), 80));
                        self.find(format!("log.json leaf {index} salt"), format!("the event's salt: {SALT_BYTES} bytes in base64"), found);
                    }
                    let proof = self.proof(&format!("log.json leaf {index}"), item.get("proof"));
                    leaves.push(RawLeaf { index, event: event.to_owned(), salt, proof });
                }
            }
            other => self.find("log.json leaves", "an array of leaves", other.map_or("no `leaves`", kind_of)),
        }
        let mut consistency = Vec::new();
        match value.get("consistency") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let what = format!("log.json consistency[{i}]");
                    let Some(from) = str_member(item, "from") else {
                        self.find(what, r#"{"from": "<signed note>", "proof": [...]}"#, shorten(&item.to_string(), 120));
                        continue;
                    };
                    let proof = self.proof(&what, item.get("proof"));
                    consistency.push(RawConsistency { from: from.to_owned(), proof });
                }
            }
            None => {}
            Some(other) => self.find("log.json consistency", "an array of consistency proofs", kind_of(other)),
        }
        Some(LogJson { checkpoint, leaves, consistency })
    }

    /// Opens a signed checkpoint note with `known` keys and reads its body.
    pub(super) fn open_checkpoint(
        &mut self,
        what: &str,
        note: &str,
        known: &[VerifierKey],
        signer: &str,
    ) -> Option<(Checkpoint, Vec<String>)> {
        let opened = match open_note(note, known) {
            Ok(opened) => opened,
            Err(e) => {
                self.find(what, format!("a checkpoint signed by {signer}"), e.to_string());
                return None;
            }
        };
        match Checkpoint::parse(&opened.text) {
            Ok(checkpoint) => Some((checkpoint, opened.verified)),
            Err(e) => {
                self.find(what, "a checkpoint body: origin, size, base64 root, extension lines", e.to_string());
                None
            }
        }
    }

    /// Opens the bundle's checkpoint with every key the bundle lists or the verifier trusts, and
    /// returns it with the keys whose signatures on it verified (the anchor decides which count).
    pub(super) fn checkpoint(&mut self, note: &str, keys: &Keys, trusted: &[VerifierKey]) -> Option<(Checkpoint, Vec<VerifierKey>)> {
        let mut known = keys.deployment.clone();
        known.extend(trusted.iter().filter(|key| !keys.deployment.contains(key)).cloned());
        let signer = "a deployment key of keys.json or one named with --trust";
        if known.is_empty() {
            self.find("log.json checkpoint", format!("a checkpoint signed by {signer}"), "no deployment key to check it with");
            return None;
        }
        let (checkpoint, verified) = self.open_checkpoint("log.json checkpoint", note, &known, signer)?;
        if !verified.contains(&checkpoint.origin) {
            self.find(
                "log.json checkpoint origin",
                format!("the name of the key that signed it ({})", verified.join(", ")),
                &checkpoint.origin,
            );
        }
        let signers = known.into_iter().filter(|key| open_note(note, std::slice::from_ref(key)).is_ok()).collect();
        Some((checkpoint, signers))
    }
}

/// A log leaf read back: its index and JSON, and whether its inclusion proof verified.
pub(super) struct Leaf {
    pub(super) index: u64,
    pub(super) value: Value,
    pub(super) proven: bool,
}

impl Leaf {
    pub(super) fn what(&self, kind: &str) -> String {
        format!("log.json leaf {} ({kind})", self.index)
    }

    pub(super) fn str(&self, key: &str) -> Option<&str> {
        str_member(&self.value, key)
    }
}

#[derive(Default)]
pub(super) struct Leaves {
    /// The bundle's statement: the last statement leaf of statement.json's month.
    pub(super) statement: Option<Leaf>,
    /// Every other statement leaf: the restated months' statements ([`super::restated`]).
    pub(super) earlier_statements: Vec<Leaf>,
    pub(super) agreement: Option<Leaf>,
    pub(super) batches: BTreeMap<u64, Leaf>,
    pub(super) contributions: Vec<Leaf>,
    pub(super) disputes: Vec<Leaf>,
    pub(super) keys: Vec<Leaf>,
    /// Every leaf's index and type, to name a leaf of the wrong type.
    pub(super) kinds: BTreeMap<u64, String>,
}

impl Run {
    /// Reads every leaf and checks its proof; `period` is statement.json's month, when readable.
    pub(super) fn leaves(&mut self, log: Option<&LogJson>, checkpoint: Option<&Checkpoint>, period: Option<&str>) -> Leaves {
        let mut leaves = Leaves::default();
        let (mut statements, mut agreements) = (Vec::new(), Vec::new());
        for raw in log.map_or(&[][..], |l| l.leaves.as_slice()) {
            let read = read_event(raw.event.as_bytes());
            let kind = read.as_ref().map_or("unreadable", |(kind, _)| kind.as_str()).to_owned();
            let what = format!("log.json leaf {} ({kind})", raw.index);
            if leaves.kinds.contains_key(&raw.index) {
                self.find(what, "each leaf once", "this leaf index again");
                continue;
            }
            leaves.kinds.insert(raw.index, kind.clone());
            let mut proven = false;
            if let (Some(proof), Some(salt), Some(checkpoint)) = (&raw.proof, &raw.salt, checkpoint) {
                let hash = leaf_hash(&commitment(salt, raw.event.as_bytes()));
                match verify_inclusion(&hash, raw.index, checkpoint.size, proof, &checkpoint.root) {
                    Ok(()) => {
                        self.checked.leaves += 1;
                        proven = true;
                    }
                    Err(e) => self.find(&what, format!("an inclusion proof at the checkpoint's size {}", checkpoint.size), e.to_string()),
                }
            }
            let Some((_, value)) = read else {
                self.find(what, "an event's canonical JSON with a `type` member", shorten(&raw.event, 120));
                continue;
            };
            let leaf = Leaf { index: raw.index, value, proven };
            match kind.as_str() {
                "statement" => statements.push(leaf),
                "agreement" => agreements.push(leaf),
                "usage_batch" => {
                    leaves.batches.insert(leaf.index, leaf);
                }
                "contribution" => leaves.contributions.push(leaf),
                "dispute" => leaves.disputes.push(leaf),
                "key" => leaves.keys.push(leaf),
                _ => {}
            }
        }
        // The statement's leaf is its month's last (a restated month's statements are of earlier
        // months); without a readable month in statement.json, the last statement leaf.
        statements.sort_by_key(|l| l.index);
        let main = statements.iter().rposition(|l| period.is_none_or(|p| l.str("period") == Some(p)));
        leaves.statement = main.map(|at| statements.remove(at));
        if leaves.statement.is_none() {
            self.find(
                "log.json",
                format!("the statement's leaf{}", period.map(|p| format!(" (a statement of {p})")).unwrap_or_default()),
                "none",
            );
        }
        leaves.earlier_statements = statements;
        if agreements.len() != 1 {
            let found = agreements.iter().map(|l| l.index.to_string()).collect::<Vec<_>>().join(", ");
            let found = if found.is_empty() { "none".to_owned() } else { format!("{} (leaves {found})", agreements.len()) };
            self.find("log.json", "exactly one agreement leaf", found);
        }
        leaves.agreement = agreements.into_iter().next();
        leaves
    }
}
