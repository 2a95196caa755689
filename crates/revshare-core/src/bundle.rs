//! Offline verification of a statement bundle (SPEC §7, `revshare verify`).
//!
//! A bundle is what `revshare statement export --bundle DIR` writes so that anyone — the host, an
//! auditor, an arbiter — can check one statement with nothing but the bundle: the statement, the
//! agreement it applies, the records it counted as their hosts sent them, the host's model
//! aliases, the log entries that commit the deployment to all of these with their proofs under a
//! signed checkpoint, the keys, the statement's signatures, and the record digests of every usage
//! batch a counted record was accepted in. [`verify`] checks every digest, signature and proof and
//! recomputes the statement from the records, byte for byte.
//!
//! It does not stop at the first problem: every check that can still run on what is left runs,
//! and each problem becomes a [`Finding`] saying where it is, what was expected and what was
//! found. Checks whose input is missing (no checkpoint, an agreement that does not parse) are
//! skipped, their cause already reported.
//!
//! What is taken as given, because the bundle cannot prove it: the amounts of restatement
//! adjustments (the restated month has a bundle of its own) and `inputs.duplicates` (resends
//! the deployment ignored; the bundle holds each record once). Both are read back from
//! `statement.json` and fed into the recomputation, so a changed amount still changes the totals
//! it feeds — and every other member must then agree. A dispute adjustment is not taken as
//! given: the bundle holds the dispute's logged transitions, which must follow the rules of
//! [`crate::dispute`] and resolve to exactly the amount carried.
//!
//! Records are read once. `records.jsonl` is cut at line ends into parts of a few megabytes,
//! each read on its own scoped thread: every line is parsed (its canonical form directly, any
//! other SPEC §3 line through [`parse_json_line`]), its digest as sent taken once (from the line
//! itself when the line is the canonical form), its model mapped through the aliases, and the
//! record selected and added to the part's [`Rollup`]. Batch membership is checked by sorting each
//! part's digests and walking them along the sorted batch digests (random lookups in a large
//! table would each miss the cache). The parts' rollups merge into one (sums do not depend on
//! order) and settlement runs on it exactly as [`crate::settle::settle_records`] does (selection,
//! rollup, usage digest, [`settle`]) but without its idempotency index: the bundle's records must
//! be strictly ascending by `(host, id)`, which is checked, across parts too, and rules out
//! resends. How the file is cut depends only on its size, and the report does not depend on it.
//! The threads are the one exception to the core's single-threaded style: they are scoped, do no
//! IO, and exist so that verifying a month is as fast as settling it.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::agreement::{Agreement, parse_agreement};
use crate::canonical;
use crate::contribution::{Contribution, parse_contribution_line};
use crate::decimal::Decimal;
use crate::dispute::{Dispute, State, Subject, Terms, transition_from_json};
use crate::ids::{is_model_id, is_party_id, is_record_id, is_region, is_use_case};
use crate::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use crate::money::Currency;
use crate::note::{Checkpoint, VerifierKey, open_note};
use crate::rollup::Rollup;
use crate::settle::{SettlementInput, digest_order, select, settle, sorted_digest};
use crate::statement::Adjustment;
use crate::time::{Instant, Period};
use crate::transparency::{Signed, batch_message, hash_from_b64, read_leaf, statement_message};
use crate::usage::{RecordProblem, UsageRecord, parse_json_line};
use crate::usage_set::UsageSet;

/// How many problems of single records are listed; the rest are counted in one last finding.
pub const MAX_RECORD_FINDINGS: usize = 100;

/// The files of a statement bundle, as read from its directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bundle {
    /// `statement.json`: the statement's RFC 8785 canonical bytes ([`crate::statement::Statement::to_canonical`]).
    pub statement: Vec<u8>,
    /// `agreement.toml`: the TOML text of the agreement version the statement applies.
    pub agreement: String,
    /// `records.jsonl`: the records the statement counted, as their hosts sent them, one per line,
    /// each in its canonical form ([`crate::usage::UsageRecord::write_canonical`]; a SPEC §3 JSON
    /// line is read too), sorted by `(host, id)` ascending, each once. A record's digest is always
    /// that of its canonical form.
    pub records: Vec<u8>,
    /// `aliases.json`: `{"<host>": {"<host's model id>": "<licensed model id>"}}`, how reported
    /// model ids map to licensed ones (`{}` if none).
    pub aliases: Vec<u8>,
    /// `log.json`: `{"checkpoint": "<signed note>", "leaves": [{"index", "data", "proof"}],
    /// "consistency": [{"from": "<signed note>", "proof"}]}`; every leaf's proof is an RFC 6962
    /// inclusion proof at the checkpoint's size, hashes in base64.
    pub log: Vec<u8>,
    /// `keys.json`: `{"deployment": ["<verifier key>", …], "host": ["<verifier key>", …]}`.
    pub keys: Vec<u8>,
    /// `signatures.json`: `[{"key": "<verifier key>", "signature": "<base64>"}]`, signatures of
    /// [`statement_message`] of the statement's digest ([`Signed::to_json`] form).
    pub signatures: Vec<u8>,
    /// `batches/<leaf>.digests`: for each usage-batch leaf, the concatenated 32-byte SHA-256
    /// digests of the batch's distinct records as sent, sorted ascending.
    pub batches: Vec<(u64, Vec<u8>)>,
}

impl Bundle {
    /// The bundle's files as (path relative to the bundle's directory, bytes), in a fixed order:
    /// the one list of names that `revshare statement export --bundle` writes to a directory and
    /// `GET /v1/statements/{agreement}/{period}/bundle` puts in a tar archive. Paths use `/`.
    pub fn files(&self) -> Vec<(String, &[u8])> {
        let mut files: Vec<(String, &[u8])> = vec![
            ("statement.json".to_owned(), &self.statement),
            ("agreement.toml".to_owned(), self.agreement.as_bytes()),
            ("records.jsonl".to_owned(), &self.records),
            ("aliases.json".to_owned(), &self.aliases),
            ("log.json".to_owned(), &self.log),
            ("keys.json".to_owned(), &self.keys),
            ("signatures.json".to_owned(), &self.signatures),
        ];
        files.extend(self.batches.iter().map(|(leaf, digests)| (format!("{BATCHES_DIR}/{leaf}.digests"), digests.as_slice())));
        files
    }
}

/// The folder of a bundle that holds `<leaf>.digests` files.
pub const BATCHES_DIR: &str = "batches";

/// What [`verify`] is told besides the bundle.
///
/// Without either option a bundle can only show that it agrees with itself: its keys come from
/// `keys.json`. What anchors it to the real deployment is a key obtained some other way
/// (`trusted`), or a checkpoint seen earlier (`since`), which must open with the bundle's
/// deployment keys and be a prefix of the bundle's log.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions<'a> {
    /// A signed checkpoint seen earlier: the bundle's log must be an extension of it.
    pub since: Option<&'a str>,
    /// The deployment key the verifier trusts: the checkpoint must be signed by it, and it must be
    /// one of `keys.json`'s deployment keys.
    pub trusted: Option<&'a VerifierKey>,
}

/// One problem: where, what was expected, what was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: expected {expected}, found {found}")]
pub struct Finding {
    /// Where: a file (`statement.json`), a line (`records.jsonl:1234`), a log leaf
    /// (`log.json leaf 17 (usage_batch)`), or a member of the recomputed statement
    /// (`line 3 (m-70b customer_service us-east) amount`, `totals.net_payable`).
    pub what: String,
    /// What a good bundle has there.
    pub expected: String,
    /// What this bundle has there.
    pub found: String,
}

/// How much of the bundle was checked and found right.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Records without a problem: they parse, are in order, are in a batch and are counted.
    pub records: u64,
    /// Batch digest files that match their usage-batch leaves.
    pub batches: u64,
    /// Usage-batch leaves whose host signature verified.
    pub signed_batches: u64,
    /// Log leaves whose inclusion proof verified under the checkpoint.
    pub leaves: u64,
    /// Statement signatures that verified (the deployment's and the host's).
    pub signatures: u64,
    /// Whether a host key countersigned the statement (a verified host signature).
    pub countersigned: bool,
    /// Contributions the recomputation counted with (their last logged state before the statement).
    pub contributions: u64,
    /// Dispute adjustments whose logged transitions follow the rules and resolve to the amount carried.
    pub disputes: u64,
    /// Consistency proofs in `log.json` that verified.
    pub consistency: u64,
    /// The checkpoint's tree size, when the checkpoint opened.
    pub log_size: Option<u64>,
    /// Whether the recomputed statement equals `statement.json` byte for byte.
    pub recomputed: bool,
}

/// The outcome of [`verify`]: every finding, and what was checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Every problem found, in the order of the checks (record problems by line).
    pub findings: Vec<Finding>,
    /// What was checked and found right.
    pub checked: Checked,
}

impl Report {
    /// Whether the bundle verified without a single finding.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verifies a statement bundle offline. Pure: the same bundle and options give the same report.
///
/// The checks, in order: the keys; the checkpoint's signature by a deployment key (the trusted
/// one if pinned); every leaf's inclusion proof, with exactly one statement and one agreement
/// leaf; the statement's digest and its agreement and period against those leaves; the statement
/// signatures (at least one by a deployment key); the agreement's digest; every batch digest file
/// against its leaf and every batch signature; every record (it parses, is in order, is in a
/// batch, is counted) and the recomputed statement against `statement.json`; and, with
/// [`VerifyOptions::since`], the log's consistency with that earlier checkpoint.
pub fn verify(bundle: &Bundle, options: &VerifyOptions<'_>) -> Report {
    let mut run = Run::default();
    // 1. Keys.
    let keys = run.keys(&bundle.keys, options.trusted);
    // 2. The checkpoint (log.json is read here, its leaves checked in step 3).
    let log = run.log_json(&bundle.log);
    let checkpoint = log.as_ref().and_then(|log| log.checkpoint.as_deref()).and_then(|note| run.checkpoint(note, &keys, options.trusted));
    run.checked.log_size = checkpoint.as_ref().map(|c| c.size);
    // 3. Leaves.
    let leaves = run.leaves(log.as_ref(), checkpoint.as_ref());
    run.key_leaves(&keys, &leaves);
    // 4. The statement against its leaf and the agreement leaf.
    let statement = run.statement(&bundle.statement, &leaves);
    // 5. Statement signatures.
    run.signatures(&bundle.signatures, &statement.digest, &keys);
    // 6. The agreement.
    let agreement = run.agreement(&bundle.agreement, &leaves, statement.value.as_ref());
    // 7. Batches.
    let batches = run.batches(&bundle.batches, &leaves, &keys);
    // 8. Records and the recomputed statement.
    let aliases = run.aliases(&bundle.aliases);
    let contributions = run.contributions(&leaves);
    run.records_and_recompute(bundle, &batches, &aliases, agreement.as_ref(), &statement, &contributions);
    // 8b. Each dispute adjustment against the dispute's logged transitions.
    if let (Some(value), Some(agreement)) = (&statement.value, &agreement) {
        run.disputes(value, &leaves, agreement);
    }
    // 9. Consistency with an earlier checkpoint.
    if let Some(log) = &log {
        run.consistency(log, checkpoint.as_ref(), &keys, options.since);
    }
    Report { findings: run.findings, checked: run.checked }
}

// ---------------------------------------------------------------------------------------------
// The run: findings and counts.

#[derive(Default)]
struct Run {
    findings: Vec<Finding>,
    checked: Checked,
    /// Record problems so far, listed or not: only the first [`MAX_RECORD_FINDINGS`] are listed.
    record_findings: usize,
}

impl Run {
    fn find(&mut self, what: impl Into<String>, expected: impl Into<String>, found: impl Into<String>) {
        self.findings.push(Finding { what: what.into(), expected: expected.into(), found: found.into() });
    }

    /// A finding about one record line, listed only among the first [`MAX_RECORD_FINDINGS`].
    fn record(&mut self, line: u64, expected: impl Into<String>, found: impl Into<String>) {
        self.record_findings += 1;
        if self.record_findings <= MAX_RECORD_FINDINGS {
            self.find(format!("records.jsonl:{line}"), expected, found);
        }
    }
}

/// Shortens text shown in a finding to at most `max` characters.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A JSON value as a finding shows it: strings bare, anything else as compact JSON.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn str_member<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

fn problems_text(problems: &[RecordProblem]) -> String {
    problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ")
}

// ---------------------------------------------------------------------------------------------
// 1. Keys.

/// The keys of keys.json that parsed, by role.
#[derive(Default)]
struct Keys {
    deployment: Vec<VerifierKey>,
    host: Vec<VerifierKey>,
}

impl Keys {
    fn role_of(&self, key: &VerifierKey) -> Option<Role> {
        if self.deployment.contains(key) {
            Some(Role::Deployment)
        } else if self.host.contains(key) {
            Some(Role::Host)
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Deployment,
    Host,
}

const KEYS_SHAPE: &str = r#"a JSON object {"deployment": ["<verifier key>", …], "host": ["<verifier key>", …]}"#;
const KEY_SHAPE: &str = "a verifier key `<name>+<key id>+<base64 of 0x01 ‖ public key>`";

impl Run {
    fn keys(&mut self, bytes: &[u8], trusted: Option<&VerifierKey>) -> Keys {
        let mut keys = Keys::default();
        match serde_json::from_slice::<Value>(bytes) {
            Err(e) => self.find("keys.json", KEYS_SHAPE, format!("not valid JSON: {e}")),
            Ok(Value::Object(members)) => {
                for (role, value) in &members {
                    let list = match role.as_str() {
                        "deployment" => &mut keys.deployment,
                        "host" => &mut keys.host,
                        other => {
                            self.find("keys.json", "members `deployment` and `host` only", format!("member `{other}`"));
                            continue;
                        }
                    };
                    let Value::Array(items) = value else {
                        self.find(format!("keys.json {role}"), "an array of verifier keys", kind_of(value));
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        let what = format!("keys.json {role}[{i}]");
                        match item.as_str().map(VerifierKey::parse) {
                            None => self.find(what, KEY_SHAPE, kind_of(item)),
                            Some(Err(e)) => self.find(what, KEY_SHAPE, e.to_string()),
                            Some(Ok(key)) if list.contains(&key) => self.find(what, "each key once", format!("{} again", key.to_text())),
                            Some(Ok(key)) => list.push(key),
                        }
                    }
                }
            }
            Ok(other) => self.find("keys.json", KEYS_SHAPE, kind_of(&other)),
        }
        if keys.deployment.is_empty() {
            self.find("keys.json deployment", "at least one deployment key", "none");
        }
        if let Some(trusted) = trusted
            && !keys.deployment.contains(trusted)
        {
            let listed: Vec<String> = keys.deployment.iter().map(VerifierKey::to_text).collect();
            let found = if listed.is_empty() { "no deployment key".to_owned() } else { listed.join(", ") };
            self.find("keys.json deployment", format!("the trusted key {}", trusted.to_text()), found);
        }
        keys
    }
}

// ---------------------------------------------------------------------------------------------
// log.json and 2. the checkpoint.

struct LogJson {
    /// `None` when missing (already a finding).
    checkpoint: Option<String>,
    leaves: Vec<RawLeaf>,
    consistency: Vec<RawConsistency>,
}

struct RawLeaf {
    index: u64,
    data: String,
    /// `None` when a proof hash is not base64 of 32 bytes (already a finding).
    proof: Option<Vec<Hash>>,
}

struct RawConsistency {
    from: String,
    proof: Option<Vec<Hash>>,
}

const LOG_SHAPE: &str =
    r#"a JSON object {"checkpoint": "<signed note>", "leaves": [{"index", "data", "proof"}, …], "consistency": [{"from", "proof"}, …]}"#;

impl Run {
    /// Reads a proof: an array of base64 hashes.
    fn proof(&mut self, what: &str, value: Option<&Value>) -> Option<Vec<Hash>> {
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

    fn log_json(&mut self, bytes: &[u8]) -> Option<LogJson> {
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
                    let data = str_member(item, "data");
                    let (Some(index), Some(data)) = (index, data) else {
                        self.find(
                            what,
                            r#"{"index": <leaf index>, "data": "<leaf JSON>", "proof": [...]}"#,
                            shorten(&item.to_string(), 120),
                        );
                        continue;
                    };
                    let proof = self.proof(&format!("log.json leaf {index}"), item.get("proof"));
                    leaves.push(RawLeaf { index, data: data.to_owned(), proof });
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
    fn open_checkpoint(&mut self, what: &str, note: &str, known: &[VerifierKey], signer: &str) -> Option<(Checkpoint, Vec<String>)> {
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

    fn checkpoint(&mut self, note: &str, keys: &Keys, trusted: Option<&VerifierKey>) -> Option<Checkpoint> {
        let (known, signer) = match trusted {
            Some(key) => (vec![key.clone()], format!("the trusted key {}+{:08x}", key.name(), key.key_id())),
            None => (keys.deployment.clone(), "a deployment key of keys.json".to_owned()),
        };
        if known.is_empty() {
            self.find("log.json checkpoint", format!("a checkpoint signed by {signer}"), "no deployment key to check it with");
            return None;
        }
        let (checkpoint, verified) = self.open_checkpoint("log.json checkpoint", note, &known, &signer)?;
        if !verified.contains(&checkpoint.origin) {
            self.find(
                "log.json checkpoint origin",
                format!("the name of the key that signed it ({})", verified.join(", ")),
                &checkpoint.origin,
            );
        }
        Some(checkpoint)
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Leaves.

/// A log leaf read back: its index and JSON.
struct Leaf {
    index: u64,
    value: Value,
}

impl Leaf {
    fn what(&self, kind: &str) -> String {
        format!("log.json leaf {} ({kind})", self.index)
    }

    fn str(&self, key: &str) -> Option<&str> {
        str_member(&self.value, key)
    }
}

#[derive(Default)]
struct Leaves {
    statement: Option<Leaf>,
    agreement: Option<Leaf>,
    batches: BTreeMap<u64, Leaf>,
    contributions: Vec<Leaf>,
    disputes: Vec<Leaf>,
    keys: Vec<Leaf>,
    /// Every leaf's index and type, to name a leaf of the wrong type.
    kinds: BTreeMap<u64, String>,
}

impl Run {
    fn leaves(&mut self, log: Option<&LogJson>, checkpoint: Option<&Checkpoint>) -> Leaves {
        let mut leaves = Leaves::default();
        let (mut statements, mut agreements) = (Vec::new(), Vec::new());
        for raw in log.map_or(&[][..], |l| l.leaves.as_slice()) {
            let read = read_leaf(raw.data.as_bytes());
            let kind = read.as_ref().map_or("unreadable", |(kind, _)| kind.as_str()).to_owned();
            let what = format!("log.json leaf {} ({kind})", raw.index);
            if leaves.kinds.contains_key(&raw.index) {
                self.find(what, "each leaf once", "this leaf index again");
                continue;
            }
            leaves.kinds.insert(raw.index, kind.clone());
            if let (Some(proof), Some(checkpoint)) = (&raw.proof, checkpoint) {
                let hash = leaf_hash(raw.data.as_bytes());
                match verify_inclusion(&hash, raw.index, checkpoint.size, proof, &checkpoint.root) {
                    Ok(()) => self.checked.leaves += 1,
                    Err(e) => self.find(&what, format!("an inclusion proof at the checkpoint's size {}", checkpoint.size), e.to_string()),
                }
            }
            let Some((_, value)) = read else {
                self.find(what, "a leaf's canonical JSON with a `type` member", shorten(&raw.data, 120));
                continue;
            };
            let leaf = Leaf { index: raw.index, value };
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
        for (kind, list, slot) in [("statement", statements, &mut leaves.statement), ("agreement", agreements, &mut leaves.agreement)] {
            if list.len() != 1 {
                let found = list.iter().map(|l| l.index.to_string()).collect::<Vec<_>>().join(", ");
                let found = if found.is_empty() { "none".to_owned() } else { format!("{} (leaves {found})", list.len()) };
                self.find("log.json", format!("exactly one {kind} leaf"), found);
            }
            *slot = list.into_iter().next();
        }
        leaves
    }

    /// Every key of keys.json must be registered by a logged `key` leaf: the deployment's with
    /// party null, a host's with the agreement's host as party.
    fn key_leaves(&mut self, keys: &Keys, leaves: &Leaves) {
        let host = leaves.agreement.as_ref().and_then(|l| l.str("host"));
        for (role, list) in [("deployment", &keys.deployment), ("host", &keys.host)] {
            for (i, key) in list.iter().enumerate() {
                let text = key.to_text();
                let logged: Vec<&Leaf> = leaves.keys.iter().filter(|l| l.str("key") == Some(text.as_str())).collect();
                let party_ok = |leaf: &&Leaf| match (role, leaf.value.get("party")) {
                    ("deployment", Some(Value::Null)) => true,
                    ("host", Some(Value::String(p))) => host.is_none_or(|h| h == p),
                    _ => false,
                };
                if !logged.iter().any(party_ok) {
                    let expected = match (role, host) {
                        ("deployment", _) => "a `key` leaf in log.json registering it for the deployment (party null)".to_owned(),
                        (_, Some(host)) => format!("a `key` leaf in log.json registering it for host {host}"),
                        (_, None) => "a `key` leaf in log.json registering it for the host".to_owned(),
                    };
                    let found = match logged.first() {
                        None => "none".to_owned(),
                        Some(leaf) => format!(
                            "leaf {} registering it for party {}",
                            leaf.index,
                            show(leaf.value.get("party").unwrap_or(&Value::Null))
                        ),
                    };
                    self.find(format!("keys.json {role}[{i}]"), expected, found);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. The statement.

struct StatementFile {
    /// `sha256:` of statement.json's bytes.
    digest: String,
    value: Option<Value>,
}

impl Run {
    fn statement(&mut self, bytes: &[u8], leaves: &Leaves) -> StatementFile {
        let digest = canonical::digest(bytes);
        if let Some(leaf) = &leaves.statement {
            let logged = leaf.str("digest").unwrap_or("");
            if logged != digest {
                self.find("statement.json", format!("digest {logged} (log.json leaf {})", leaf.index), &digest);
            }
        }
        let value = match serde_json::from_slice::<Value>(bytes) {
            Ok(value @ Value::Object(_)) => Some(value),
            Ok(other) => {
                self.find("statement.json", "a statement (a JSON object)", kind_of(&other));
                None
            }
            Err(e) => {
                self.find("statement.json", "a statement (a JSON object)", format!("not valid JSON: {e}"));
                None
            }
        };
        if let Some(value) = &value {
            // (statement.json member path, the leaf, the leaf's member it must equal)
            let checks: [(&[&str], Option<&Leaf>, &str); 4] = [
                (&["agreement", "id"], leaves.statement.as_ref(), "agreement"),
                (&["period"], leaves.statement.as_ref(), "period"),
                (&["agreement", "id"], leaves.agreement.as_ref(), "id"),
                (&["agreement", "version"], leaves.agreement.as_ref(), "version"),
            ];
            for (path, leaf, member) in checks {
                let Some(leaf) = leaf else { continue };
                let logged = leaf.value.get(member).unwrap_or(&Value::Null);
                let found = path.iter().try_fold(value, |v, key| v.get(*key)).unwrap_or(&Value::Null);
                if logged != found {
                    let kind = leaf.str("type").unwrap_or("");
                    self.find(format!("statement.json {}", path.join(".")), format!("{} ({})", show(logged), leaf.what(kind)), show(found));
                }
            }
        }
        StatementFile { digest, value }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Statement signatures.

const SIGNATURES_SHAPE: &str = r#"[{"key": "<verifier key>", "signature": "<base64 of 64 bytes>"}, …]"#;

impl Run {
    fn signatures(&mut self, bytes: &[u8], digest: &str, keys: &Keys) {
        let items = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Array(items)) => items,
            Ok(other) => {
                self.find("signatures.json", SIGNATURES_SHAPE, kind_of(&other));
                Vec::new()
            }
            Err(e) => {
                self.find("signatures.json", SIGNATURES_SHAPE, format!("not valid JSON: {e}"));
                Vec::new()
            }
        };
        let message = statement_message(digest);
        let mut deployment = 0u64;
        for (i, item) in items.iter().enumerate() {
            let what = format!("signatures.json[{i}]");
            let Some(signed) = Signed::from_json(item) else {
                self.find(what, r#"{"key": "<verifier key>", "signature": "<base64 of 64 bytes>"}"#, shorten(&item.to_string(), 160));
                continue;
            };
            let key = match VerifierKey::parse(&signed.key) {
                Ok(key) => key,
                Err(e) => {
                    self.find(what, KEY_SHAPE, e.to_string());
                    continue;
                }
            };
            let Some(role) = keys.role_of(&key) else {
                self.find(what, "a signature by a key of keys.json", format!("a signature by {}", signed.key));
                continue;
            };
            match key.verify(&message, &signed.signature) {
                Ok(()) => {
                    self.checked.signatures += 1;
                    match role {
                        Role::Deployment => deployment += 1,
                        Role::Host => self.checked.countersigned = true,
                    }
                }
                Err(e) => self.find(what, format!("a signature of the statement (digest {digest}) by {}", signed.key), e.to_string()),
            }
        }
        if deployment == 0 {
            self.find("signatures.json", "a valid signature of the statement by a deployment key", "none");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. The agreement.

impl Run {
    fn agreement(&mut self, text: &str, leaves: &Leaves, statement: Option<&Value>) -> Option<Agreement> {
        let agreement = match parse_agreement("agreement.toml", text) {
            Ok(agreement) => agreement,
            Err(e) => {
                let problems = e.render_plain().lines().filter(|l| !l.starts_with("  help:")).collect::<Vec<_>>().join("; ");
                self.find("agreement.toml", "a valid agreement (SPEC §2)", problems);
                return None;
            }
        };
        let digest = agreement.digest();
        if let Some(leaf) = &leaves.agreement {
            let logged = leaf.str("digest").unwrap_or("");
            if logged != digest {
                self.find("agreement.toml", format!("digest {logged} ({})", leaf.what("agreement")), &digest);
            }
            let source = crate::canonical::digest(text.as_bytes());
            let logged = leaf.str("source").unwrap_or("");
            if logged != source {
                self.find("agreement.toml", format!("text digest {logged} ({}): the text as registered", leaf.what("agreement")), &source);
            }
            let members = [
                ("id", Value::from(agreement.id().as_str())),
                ("version", Value::from(agreement.version())),
                ("licensor", Value::from(agreement.licensor().as_str())),
                ("host", Value::from(agreement.host().as_str())),
            ];
            for (member, value) in members {
                let logged = leaf.value.get(member).unwrap_or(&Value::Null);
                if *logged != value {
                    self.find(format!("{} {member}", leaf.what("agreement")), format!("{} (agreement.toml)", show(&value)), show(logged));
                }
            }
        }
        if let Some(found) = statement.and_then(|s| s.get("agreement")).and_then(|a| a.get("digest"))
            && found.as_str() != Some(digest.as_str())
        {
            self.find("statement.json agreement.digest", format!("{digest} (agreement.toml)"), show(found));
        }
        Some(agreement)
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Batches.

/// Sorts digests ascending (the order [`sorted_digest`] hashes them in, which then finds them sorted).
fn sort_digests(digests: &mut [[u8; 32]]) {
    digests.sort_unstable_by(digest_order);
}

/// How many ranges of digest space (by the first byte's top bits) sorted digests are merged in,
/// each on its own thread.
const RANGES: u8 = 16;

fn range_of(digest: &[u8; 32]) -> u8 {
    digest[0] >> 4
}

/// Merges runs of sorted digests into one sorted list: digest space is cut into [`RANGES`]
/// ranges and each range's pieces of every run are merged on their own thread, into their own
/// part of the output.
fn merge_runs(runs: &[&[[u8; 32]]]) -> Vec<[u8; 32]> {
    let total = runs.iter().map(|run| run.len()).sum();
    if runs.len() < 2 || total < 1 << 16 {
        let mut all = runs.concat();
        all.sort_by(digest_order);
        return all;
    }
    // bounds[i][r]: where range r starts in run i.
    let bounds: Vec<Vec<usize>> = runs.iter().map(|run| (0..=RANGES).map(|r| run.partition_point(|d| range_of(d) < r)).collect()).collect();
    let piece = |run: usize, range: usize| -> &[[u8; 32]] {
        let (from, to) = (bounds[run][range], bounds[run][range + 1]);
        runs[run].get(from..to).unwrap_or_default()
    };
    let mut out = vec![[0u8; 32]; total];
    let mut slices = Vec::with_capacity(usize::from(RANGES));
    let mut rest = out.as_mut_slice();
    for range in 0..usize::from(RANGES) {
        let size = (0..runs.len()).map(|run| piece(run, range).len()).sum();
        let (slice, after) = rest.split_at_mut(size);
        slices.push((range, slice));
        rest = after;
    }
    let fill = |range: usize, slice: &mut [[u8; 32]]| {
        let mut at = 0;
        for run in 0..runs.len() {
            let part = piece(run, range);
            slice[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        // Sorted pieces one after another: the stable sort merges them.
        slice.sort_by(digest_order);
    };
    std::thread::scope(|scope| {
        for (range, slice) in slices {
            scope.spawn(move || fill(range, slice));
        }
    });
    out
}

/// Every record digest of every batch file, sorted.
struct BatchDigests {
    sorted: Vec<[u8; 32]>,
}

impl BatchDigests {
    /// The entries of `wanted` (sorted by digest) whose digest is in no batch, by walking both
    /// sorted lists once, galloping over the batch digests: no random lookups, which on a large
    /// bundle would each miss the cache.
    fn missing(&self, wanted: &[([u8; 32], u64)]) -> Vec<([u8; 32], u64)> {
        let mut missing = Vec::new();
        let mut rest = self.sorted.as_slice();
        for entry @ (digest, _) in wanted {
            let mut bound = 1;
            while rest.get(bound).is_some_and(|d| digest_order(d, digest) == Ordering::Less) {
                bound = bound.saturating_mul(2);
            }
            // Everything past `bound` is at least `digest`, so the first digest not below it is here.
            let window = rest.get(..bound.saturating_add(1).min(rest.len())).unwrap_or_default();
            let at = window.partition_point(|d| digest_order(d, digest) == Ordering::Less);
            rest = rest.get(at..).unwrap_or_default();
            if rest.first() != Some(digest) {
                missing.push(*entry);
            }
        }
        missing
    }
}

/// One batch file, read: its digests sorted, where they were first out of order, and its usage
/// digest.
struct BatchFile {
    digests: Vec<[u8; 32]>,
    /// The first digest (0-based) not above the one before it, and the two digests.
    unordered: Option<(usize, [u8; 32], [u8; 32])>,
    digest: String,
}

fn read_batch_file(bytes: &[u8]) -> BatchFile {
    let mut digests: Vec<[u8; 32]> = bytes.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).collect();
    let unordered =
        digests.windows(2).position(|w| digest_order(&w[0], &w[1]) != Ordering::Less).map(|i| (i + 1, digests[i], digests[i + 1]));
    if unordered.is_some() {
        sort_digests(&mut digests);
    }
    let digest = sorted_digest(&mut digests);
    BatchFile { digests, unordered, digest }
}

/// Reads batch files on up to [`MAX_PARTS`] threads, in groups of about equal size.
fn read_batch_files<'f>(files: &[&'f [u8]]) -> Vec<BatchFile> {
    let total: usize = files.iter().map(|f| f.len()).sum();
    if total < PART_BYTES {
        return files.iter().map(|f| read_batch_file(f)).collect();
    }
    let per_group = total.div_ceil(MAX_PARTS).max(1);
    let mut groups: Vec<&[&'f [u8]]> = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, file) in files.iter().enumerate() {
        size += file.len();
        if size >= per_group {
            groups.push(&files[start..=i]);
            (start, size) = (i + 1, 0);
        }
    }
    groups.push(&files[start..]);
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            groups.iter().map(|group| scope.spawn(move || group.iter().map(|f| read_batch_file(f)).collect::<Vec<_>>())).collect();
        // A thread that failed is read again here.
        handles
            .into_iter()
            .zip(&groups)
            .flat_map(|(h, group)| h.join().unwrap_or_else(|_| group.iter().map(|f| read_batch_file(f)).collect()))
            .collect()
    })
}

impl Run {
    fn batches(&mut self, files: &[(u64, Vec<u8>)], leaves: &Leaves, keys: &Keys) -> BatchDigests {
        let mut seen = BTreeSet::new();
        let mut readable = Vec::with_capacity(files.len());
        for (index, bytes) in files {
            let what = format!("batches/{index}.digests");
            if !seen.insert(*index) {
                self.find(what, "one digest file per batch", "this batch's file again");
                continue;
            }
            let leaf = leaves.batches.get(index);
            if leaf.is_none() {
                let found = leaves.kinds.get(index).map_or_else(|| "no leaf of that index".to_owned(), |k| format!("a {k} leaf"));
                self.find(&what, format!("a usage_batch leaf {index} in log.json"), found);
            }
            if !bytes.len().is_multiple_of(32) {
                self.find(what, "a whole number of 32-byte digests", format!("{} bytes", bytes.len()));
                continue;
            }
            readable.push((*index, what, leaf, bytes.as_slice()));
        }
        let read = read_batch_files(&readable.iter().map(|(.., bytes)| *bytes).collect::<Vec<_>>());
        for ((_, what, leaf, _), file) in readable.iter().zip(&read) {
            let mut good = leaf.is_some();
            if let Some((i, a, b)) = &file.unordered {
                let (a, b) = (canonical::hex(a), canonical::hex(b));
                self.find(what, "digests strictly ascending", format!("digest {} ({b}) after {a}", i + 1));
                good = false;
            }
            let count = u64::try_from(file.digests.len()).unwrap_or(u64::MAX);
            if let Some(leaf) = leaf {
                let logged = leaf.str("digest").unwrap_or("");
                if logged != file.digest {
                    self.find(what, format!("batch digest {logged} ({})", leaf.what("usage_batch")), &file.digest);
                    good = false;
                }
                let records = leaf.value.get("records").and_then(Value::as_u64);
                if records != Some(count) {
                    let logged = records.map_or_else(|| "?".to_owned(), |n| n.to_string());
                    self.find(what, format!("{logged} digests ({})", leaf.what("usage_batch")), format!("{count} digests"));
                    good = false;
                }
            }
            if good {
                self.checked.batches += 1;
            }
        }
        for leaf in leaves.batches.values() {
            if !seen.contains(&leaf.index) {
                self.find(leaf.what("usage_batch"), format!("its digest file batches/{}.digests in the bundle", leaf.index), "none");
            }
            self.batch_signature(leaf, keys);
        }
        // A file with problems still counts for its records: the finding names the file, and a
        // record is then reported only when its own digest is missing.
        BatchDigests { sorted: merge_runs(&read.iter().map(|f| f.digests.as_slice()).collect::<Vec<_>>()) }
    }

    /// A signed batch leaf's signature must verify with a host key of keys.json.
    fn batch_signature(&mut self, leaf: &Leaf, keys: &Keys) {
        let Some(value) = leaf.value.get("signed") else { return };
        let what = format!("{} signed", leaf.what("usage_batch"));
        let Some(signed) = Signed::from_json(value) else {
            self.find(what, r#"{"key": "<verifier key>", "signature": "<base64 of 64 bytes>"}"#, shorten(&value.to_string(), 160));
            return;
        };
        let key = match VerifierKey::parse(&signed.key) {
            Ok(key) => key,
            Err(e) => {
                self.find(what, KEY_SHAPE, e.to_string());
                return;
            }
        };
        if !keys.host.contains(&key) {
            self.find(what, "a signature by a host key of keys.json", format!("a signature by {}", signed.key));
            return;
        }
        let digest = leaf.str("digest").unwrap_or("");
        match key.verify(&batch_message(digest), &signed.signature) {
            Ok(()) => self.checked.signed_batches += 1,
            Err(e) => self.find(what, format!("the host's signature of batch digest {digest}"), e.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Records, contributions and the recomputed statement.

/// A small map keyed by text, hashed fast (its keys are few: hosts, and their model ids).
type TextMap<V> = HashMap<String, V, foldhash::quality::FixedState>;
/// One host's aliases: host's model id → licensed model id.
type ModelAliases = TextMap<String>;
/// Every host's aliases.
type Aliases = TextMap<ModelAliases>;

const ALIASES_SHAPE: &str = r#"a JSON object {"<host>": {"<host's model id>": "<licensed model id>"}}"#;

impl Run {
    fn aliases(&mut self, bytes: &[u8]) -> Aliases {
        let mut aliases = Aliases::default();
        let members = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(members)) => members,
            Ok(other) => {
                self.find("aliases.json", ALIASES_SHAPE, kind_of(&other));
                return aliases;
            }
            Err(e) => {
                self.find("aliases.json", ALIASES_SHAPE, format!("not valid JSON: {e}"));
                return aliases;
            }
        };
        for (host, map) in members {
            let Value::Object(map) = map else {
                self.find(format!("aliases.json {host}"), "an object of host model id → licensed model id", kind_of(&map));
                continue;
            };
            let mut entries = ModelAliases::default();
            for (reported, licensed) in map {
                match licensed {
                    Value::String(licensed) if is_model_id(&licensed) => {
                        entries.insert(reported, licensed);
                    }
                    other => self.find(
                        format!("aliases.json {host} {reported}"),
                        "a licensed model id like \"m-70b\"",
                        shorten(&show(&other), 80),
                    ),
                }
            }
            aliases.insert(host, entries);
        }
        aliases
    }

    /// The contributions of the statement's agreement as of the statement: the last state of each
    /// one among the contribution leaves logged before the statement leaf.
    fn contributions(&mut self, leaves: &Leaves) -> Vec<Contribution> {
        let Some(statement) = &leaves.statement else { return Vec::new() };
        let agreement = statement.str("agreement");
        let mut ordered: Vec<&Leaf> =
            leaves.contributions.iter().filter(|l| l.index < statement.index && l.str("agreement") == agreement).collect();
        ordered.sort_by_key(|l| l.index);
        let mut latest: BTreeMap<String, Contribution> = BTreeMap::new();
        for leaf in ordered {
            let what = leaf.what("contribution");
            let Some(value) = leaf.value.get("contribution") else {
                self.find(what, "a `contribution` member", "none");
                continue;
            };
            let line = serde_json::to_vec(value).unwrap_or_default();
            match parse_contribution_line(&line) {
                Ok(c) => {
                    latest.insert(c.id.clone(), c);
                }
                Err(problems) => self.find(what, "a contribution (SPEC §5)", problems_text(&problems)),
            }
        }
        self.checked.contributions = u64::try_from(latest.len()).unwrap_or(u64::MAX);
        latest.into_values().collect()
    }

    /// A dispute adjustment must be what the dispute's transitions, logged before the statement,
    /// resolve to under the rules (`crate::dispute`): every step after the opening allowed, the
    /// last an acceptance or a decision, and its amount the one carried. (Whether the opening was
    /// within the window needs the disputed statement's finalisation time, which the bundle does
    /// not hold; the deployment checked it when it logged the opening.)
    fn disputes(&mut self, statement: &Value, leaves: &Leaves, agreement: &Agreement) {
        let Some(statement_leaf) = leaves.statement.as_ref().map(|l| l.index) else { return };
        let terms = Terms::of(agreement);
        let items = statement.get("adjustments").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for (i, item) in items.iter().enumerate().filter(|(_, a)| str_member(a, "kind") == Some("dispute")) {
            let reference = str_member(item, "reference").unwrap_or_default();
            let what = format!("statement.json adjustments[{i}] ({reference})");
            let Some(id) = reference.strip_prefix("dispute:").and_then(|n| n.parse::<u64>().ok()) else {
                self.find(what, "a reference `dispute:<id>`", reference);
                continue;
            };
            let Some(carried) = str_member(item, "amount").and_then(|a| parse_money(a, terms.currency)) else { continue };
            let mut logged: Vec<&Leaf> = leaves
                .disputes
                .iter()
                .filter(|l| l.index < statement_leaf && l.value.get("dispute").and_then(Value::as_u64) == Some(id))
                .collect();
            logged.sort_by_key(|l| l.index);
            let Some(first) = logged.first() else {
                self.find(what, format!("the transitions of dispute {id} in log.json, logged before the statement"), "none");
                continue;
            };
            let subject = Subject {
                agreement: agreement.id().clone(),
                period: Period::parse(first.str("period").unwrap_or_default()).unwrap_or(Period::of(Instant::from_parts(0, 0))),
                sequence: first.value.get("sequence").and_then(Value::as_u64).and_then(|s| u32::try_from(s).ok()).unwrap_or(0),
                digest: first.str("statement").unwrap_or_default().to_owned(),
                line: first.value.get("line").and_then(Value::as_u64).and_then(|l| u32::try_from(l).ok()),
            };
            let mut dispute = Dispute { id, subject, history: Vec::new() };
            let mut good = true;
            for leaf in &logged {
                let leaf_what = leaf.what("dispute");
                if leaf.str("agreement") != Some(agreement.id().as_str()) {
                    self.find(leaf_what, format!("a dispute of agreement {}", agreement.id()), leaf.str("agreement").unwrap_or("none"));
                    good = false;
                    break;
                }
                let Some(transition) = leaf.value.get("transition").and_then(|t| transition_from_json(t, terms.currency)) else {
                    self.find(
                        leaf_what,
                        "a transition {state, party, role, at, reason, amount, evidence}",
                        shorten(&leaf.value.to_string(), 160),
                    );
                    good = false;
                    break;
                };
                let allowed = if dispute.history.is_empty() {
                    (transition.state == State::Open).then_some(()).ok_or_else(|| "a first transition that is not `open`".to_owned())
                } else {
                    dispute.check(&terms, &transition).map_err(|e| e.to_string())
                };
                if let Err(e) = allowed {
                    self.find(leaf_what, format!("a step of dispute {id} that the rules allow"), e);
                    good = false;
                    break;
                }
                dispute.history.push(transition);
            }
            if !good {
                continue;
            }
            match dispute.resolution() {
                Some(amount) if amount == carried => self.checked.disputes += 1,
                resolved => self.find(
                    what,
                    match resolved {
                        Some(amount) => {
                            format!("{} {}, what dispute {id} resolved to", terms.currency.format(amount), terms.currency.code())
                        }
                        None => format!("no adjustment: dispute {id} is {} in the log", dispute.state()),
                    },
                    format!("{} {}", terms.currency.format(carried), terms.currency.code()),
                ),
            }
        }
    }

    /// Reads the statement's adjustments back (their amounts are taken as given).
    fn adjustments(&mut self, statement: &Value, currency: Currency) -> Option<Vec<Adjustment>> {
        let Some(items) = statement.get("adjustments").and_then(Value::as_array) else {
            self.find("statement.json adjustments", "an array of adjustments", statement.get("adjustments").map_or("none", kind_of));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut good = true;
        for (i, item) in items.iter().enumerate() {
            let text = |key: &str| str_member(item, key).map(str::to_owned);
            let amount = str_member(item, "amount").and_then(|a| parse_money(a, currency));
            match (text("kind"), text("reference"), text("description"), amount) {
                (Some(kind), Some(reference), Some(description), Some(amount)) => {
                    out.push(Adjustment { kind, reference, description, amount })
                }
                _ => {
                    let expected = format!(
                        r#"{{"kind", "reference", "description": strings, "amount": money in {} with exactly {} decimals}}"#,
                        currency.code(),
                        currency.minor_units()
                    );
                    self.find(format!("statement.json adjustments[{i}]"), expected, shorten(&item.to_string(), 160));
                    good = false;
                }
            }
        }
        good.then_some(out)
    }

    fn records_and_recompute(
        &mut self,
        bundle: &Bundle,
        batches: &BatchDigests,
        aliases: &Aliases,
        agreement: Option<&Agreement>,
        statement: &StatementFile,
        contributions: &[Contribution],
    ) {
        let period = statement.value.as_ref().map(|s| match str_member(s, "period").map(Period::parse) {
            Some(Ok(period)) => Some(period),
            other => {
                let found = other.map_or("none".to_owned(), |_| show(s.get("period").unwrap_or(&Value::Null)));
                self.find("statement.json period", "a period like \"2026-10\"", found);
                None
            }
        });
        let settling = match (agreement, period.flatten()) {
            (Some(agreement), Some(period)) => Some((agreement, period)),
            _ => None,
        };
        let (rollup, counted) = self.records(&bundle.records, &PartContext { batches, aliases, settling });

        let (Some((agreement, period)), Some(value)) = (settling, statement.value.as_ref()) else { return };
        let Some(adjustments) = self.adjustments(value, agreement.currency()) else { return };
        let duplicates = value.get("inputs").and_then(|i| i.get("duplicates")).and_then(Value::as_u64).unwrap_or(0);

        let input =
            SettlementInput { agreement, period, rollup: &rollup, duplicates, usage_digest: counted.digest(), contributions, adjustments };
        let recomputed = match settle(&input) {
            Ok(recomputed) => recomputed,
            Err(e) => {
                self.find("statement.json", "a statement recomputed from the bundle's records", format!("settlement failed: {e}"));
                return;
            }
        };
        match recomputed.to_canonical() {
            Ok(bytes) if bytes == bundle.statement => self.checked.recomputed = true,
            Ok(_) => {
                let before = self.findings.len();
                diff_statement(self, &recomputed.to_json(), value);
                if self.findings.len() == before {
                    self.find("statement.json", "the statement's RFC 8785 canonical bytes", "the same members written differently");
                }
            }
            Err(e) => self.find("statement.json", "a statement recomputed from the bundle's records", format!("it cannot be encoded: {e}")),
        }
    }

    /// Reads records.jsonl in parts, each on its own scoped thread, and merges the parts in
    /// order: the findings (with their line numbers), the order across part boundaries, the
    /// rollups and the counted digests. The parts are cut at line ends every [`PART_BYTES`]
    /// bytes, whatever the machine, and the merged result does not depend on the cut.
    fn records<'a>(&mut self, bytes: &'a [u8], cx: &PartContext<'a>) -> (Rollup, UsageSet) {
        let parts = split_parts(bytes);
        let outcomes: Vec<Option<PartOutcome<'a>>> = if parts.len() == 1 {
            parts.iter().map(|part| Some(read_part(part, cx))).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = parts.iter().map(|part| scope.spawn(move || read_part(part, cx))).collect();
                handles.into_iter().map(|handle| handle.join().ok()).collect()
            })
        };
        let mut rollup = Rollup::new();
        let mut counted = UsageSet::new();
        let mut lines_before = 0u64;
        let mut last: Option<RecordKey<'a>> = None;
        for outcome in outcomes {
            let Some(mut outcome) = outcome else {
                self.find("records.jsonl", "every record read", format!("a part after line {lines_before} could not be read"));
                continue;
            };
            // The order across the cut: the part's first record must follow the last one before.
            let broken = match (&last, &outcome.first) {
                (Some((host, id)), Some((line, (first_host, first_id))))
                    if (first_host.as_bytes(), first_id.as_bytes()) <= (host.as_bytes(), id.as_bytes()) =>
                {
                    Some((*line, order_expected(host, id), format!("({first_host}, {first_id})")))
                }
                _ => None,
            };
            if let Some((line, expected, found)) = broken {
                outcome.problems += 1;
                outcome.flag(line);
                outcome.findings.push((line, expected, found));
                outcome.findings.sort_by_key(|(line, ..)| *line);
                outcome.findings.truncate(MAX_RECORD_FINDINGS);
            }
            self.checked.records += outcome.good();
            let hidden = outcome.problems - outcome.findings.len();
            for (line, expected, found) in outcome.findings {
                self.record(lines_before + line, expected, found);
            }
            self.record_findings += hidden;
            if let Err(e) = rollup.merge(&outcome.rollup) {
                self.find("records.jsonl", "sums that fit", e.to_string());
            }
            counted.union(&outcome.counted);
            lines_before += outcome.lines;
            if outcome.last.is_some() {
                last = outcome.last;
            }
        }
        if self.record_findings > MAX_RECORD_FINDINGS {
            let more = self.record_findings - MAX_RECORD_FINDINGS;
            self.find(
                "records.jsonl",
                "no more problems",
                format!("{more} more problems, not listed (the first {MAX_RECORD_FINDINGS} are)"),
            );
        }
        (rollup, counted)
    }
}

/// How many bytes of records.jsonl one part holds, at least (the last part may be smaller).
pub const PART_BYTES: usize = 4 << 20;
/// The most parts records.jsonl is read in.
const MAX_PARTS: usize = 16;

/// Cuts records.jsonl after line ends into about equal parts of at least [`PART_BYTES`].
fn split_parts(bytes: &[u8]) -> Vec<&[u8]> {
    let count = (bytes.len() / PART_BYTES).clamp(1, MAX_PARTS);
    let mut parts = Vec::with_capacity(count);
    let mut start = 0;
    for i in 1..count {
        let target = (bytes.len() / count).saturating_mul(i).max(start);
        let cut = bytes.get(target..).and_then(|rest| rest.iter().position(|&b| b == b'\n')).map_or(bytes.len(), |at| target + at + 1);
        parts.push(&bytes[start..cut]);
        start = cut;
    }
    parts.push(&bytes[start..]);
    parts
}

/// What every part of records.jsonl is read against.
struct PartContext<'a> {
    batches: &'a BatchDigests,
    aliases: &'a Aliases,
    /// The agreement and period, when both are known: records are then selected and summed.
    settling: Option<(&'a Agreement, Period)>,
}

/// A part of records.jsonl, read.
struct PartOutcome<'a> {
    /// Lines in the part.
    lines: u64,
    /// Whether each line (from line 1) has a problem.
    flagged: Vec<bool>,
    /// The first [`MAX_RECORD_FINDINGS`] problems by line: line in the part (from 1), expected, found.
    findings: Vec<(u64, String, String)>,
    /// Every problem, listed or not.
    problems: usize,
    rollup: Rollup,
    /// The usage set of the counted records (their canonical forms with the licensed model).
    counted: UsageSet,
    /// The first record that parsed: its line and (host, id).
    first: Option<(u64, RecordKey<'a>)>,
    /// The last record that parsed: (host, id).
    last: Option<RecordKey<'a>>,
}

impl PartOutcome<'_> {
    fn problem(&mut self, line: u64, expected: String, found: String) {
        self.problems += 1;
        self.flag(line);
        if self.findings.len() < MAX_RECORD_FINDINGS {
            self.findings.push((line, expected, found));
        }
    }

    fn flag(&mut self, line: u64) {
        if let Some(flag) = usize::try_from(line).ok().and_then(|l| self.flagged.get_mut(l.wrapping_sub(1))) {
            *flag = true;
        }
    }

    /// Records without a problem.
    fn good(&self) -> u64 {
        u64::try_from(self.flagged.iter().filter(|f| !**f).count()).unwrap_or(0)
    }
}

/// A record's (host, id).
type RecordKey<'a> = (Cow<'a, str>, Cow<'a, str>);

fn order_expected(host: &str, id: &str) -> String {
    format!("a record after ({host}, {id}): records sorted by (host, id), each once")
}

/// Reads one part of records.jsonl: each line is parsed and digested once, its model mapped
/// through the aliases, and the record selected and summed; at the end the part's digests are
/// sorted and looked up in the batches.
fn read_part<'a>(bytes: &'a [u8], cx: &PartContext<'a>) -> PartOutcome<'a> {
    let expected_records = bytes.len() / 200;
    let mut reader = PartReader {
        cx,
        out: PartOutcome {
            lines: 0,
            flagged: Vec::with_capacity(expected_records),
            findings: Vec::new(),
            problems: 0,
            rollup: Rollup::new(),
            counted: UsageSet::new(),
            first: None,
            last: None,
        },
        sent: Vec::with_capacity(expected_records),
        canonical_form: Vec::with_capacity(512),
        host_aliases: None,
    };
    match std::str::from_utf8(bytes) {
        // The usual case: the whole part is text, read record after record.
        Ok(mut rest) => {
            while !rest.is_empty() {
                let (read, next) = read_record(rest);
                rest = next;
                reader.take(read);
            }
        }
        // Some line is not UTF-8: read line by line, naming it.
        Err(_) => {
            let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            for line in body.split(|&b| b == b'\n') {
                match std::str::from_utf8(line) {
                    Ok(line) => reader.take(read_record(line).0),
                    Err(e) => reader.take(Err(format!("a line that is not UTF-8 (at byte {})", e.valid_up_to() + 1))),
                }
            }
        }
    }
    reader.finish()
}

/// Reads the records of a part, one after another.
struct PartReader<'a, 'c> {
    cx: &'c PartContext<'a>,
    out: PartOutcome<'a>,
    /// Every record's digest as sent, with its line: looked up in the batches at the end.
    sent: Vec<([u8; 32], u64)>,
    /// A buffer for canonical forms.
    canonical_form: Vec<u8>,
    /// The aliases of the current host (records come sorted by host).
    host_aliases: Option<(Cow<'a, str>, Option<&'a ModelAliases>)>,
}

impl<'a> PartReader<'a, '_> {
    /// Takes the next line's record: digests it, checks its order, maps its model, selects and
    /// sums it.
    fn take(&mut self, read: Result<Read<'a>, String>) {
        let out = &mut self.out;
        out.lines += 1;
        out.flagged.push(false);
        let line = out.lines;
        let Read { mut record, line: text, canonical } = match read {
            Ok(read) => read,
            Err(found) => {
                out.problem(line, "a usage record (SPEC §3) in its canonical form".to_owned(), found);
                return;
            }
        };
        // The digest of the record's canonical form: the line itself when it is that form.
        let sent: [u8; 32] = if canonical {
            Sha256::digest(text.as_bytes()).into()
        } else {
            self.canonical_form.clear();
            record.write_canonical(&mut self.canonical_form);
            Sha256::digest(&self.canonical_form).into()
        };
        self.sent.push((sent, line));
        if let Some((host, id)) = &out.last
            && (record.host.as_bytes(), record.id.as_bytes()) <= (host.as_bytes(), id.as_bytes())
        {
            let expected = order_expected(host, id);
            out.problem(line, expected, format!("({}, {})", record.host, record.id));
        }
        // Map the reported model to the licensed one.
        let mut mapped = false;
        if !self.cx.aliases.is_empty() {
            if self.host_aliases.as_ref().is_none_or(|(h, _)| *h != record.host) {
                self.host_aliases = Some((record.host.clone(), self.cx.aliases.get(record.host.as_ref())));
            }
            if let Some(licensed) = self.host_aliases.as_ref().and_then(|(_, map)| map.and_then(|m| m.get(record.model.as_ref()))) {
                record.model = Cow::Borrowed(licensed.as_str());
                mapped = true;
            }
        }
        if let Some((agreement, period)) = self.cx.settling {
            match select(agreement, period, &record) {
                None => {
                    let expected = format!(
                        "a record of host {} in {period} while the agreement is in effect (the statement counts only those)",
                        agreement.host()
                    );
                    out.problem(line, expected, format!("host {} at {}", record.host, record.time));
                }
                Some(_) if record.currency != agreement.currency() => {
                    out.problem(line, format!("currency {}", agreement.currency()), record.currency.to_string());
                }
                Some(scope) => {
                    if let Err(e) = out.rollup.add(&record, scope) {
                        out.problem(line, "sums that fit".to_owned(), e.to_string());
                    }
                    // The statement's usage digest is over the records as counted: with the licensed model.
                    out.counted.insert(&if mapped {
                        self.canonical_form.clear();
                        record.write_canonical(&mut self.canonical_form);
                        Sha256::digest(&self.canonical_form).into()
                    } else {
                        sent
                    });
                }
            }
        }
        let key = (record.host, record.id);
        if out.first.is_none() {
            out.first = Some((line, key.clone()));
        }
        out.last = Some(key);
    }

    /// Reports the records in no batch.
    fn finish(mut self) -> PartOutcome<'a> {
        let out = &mut self.out;
        self.sent.sort_unstable_by(|a, b| digest_order(&a.0, &b.0));
        let mut missing = self.cx.batches.missing(&self.sent);
        if !missing.is_empty() {
            missing.sort_unstable_by_key(|(_, line)| *line);
            out.problems += missing.len();
            for (i, (digest, line)) in missing.into_iter().enumerate() {
                out.flag(line);
                if i < MAX_RECORD_FINDINGS {
                    let expected = format!("a record whose digest ({}) is in a batch's digest file", canonical::hex(&digest));
                    out.findings.push((line, expected, "a record in no batch".to_owned()));
                }
            }
            // Problems came in two passes: keep the first ones by line.
            out.findings.sort_by_key(|(line, ..)| *line);
            out.findings.truncate(MAX_RECORD_FINDINGS);
        }
        self.out
    }
}

/// How a canonical line starts.
const CANONICAL_START: &str = "{\"currency\":\"";

/// A record read from its line.
struct Read<'a> {
    record: UsageRecord<'a>,
    /// The line, without its newline.
    line: &'a str,
    /// Whether the line is exactly the record's canonical form.
    canonical: bool,
}

/// Reads the record at the start of `rest` and returns it with what follows its line: a
/// record's canonical form, or else any SPEC §3 JSON line (which is what [`parse_json_line`]
/// reads; the canonical form's counts are strings, which it refuses). `Err` says what is wrong.
fn read_record(rest: &str) -> (Result<Read<'_>, String>, &str) {
    let canonical = match parse_canonical(rest) {
        Ok((read, next)) => return (Ok(read), next),
        Err(problem) => problem,
    };
    let (line, next) = rest.split_once('\n').unwrap_or((rest, ""));
    if line.is_empty() {
        return (Err("an empty line".to_owned()), next);
    }
    let read = parse_json_line(line.as_bytes())
        .map(|record| Read { record, line, canonical: false })
        .map_err(|problems| shorten(&if line.starts_with(CANONICAL_START) { canonical } else { problems_text(&problems) }, 400));
    (read, next)
}

/// The eight bytes at `at`, little-endian, if there are eight.
fn word(bytes: &[u8], at: usize) -> Option<u64> {
    bytes.get(at..at.checked_add(8)?).and_then(|w| <[u8; 8]>::try_from(w).ok()).map(u64::from_le_bytes)
}

/// `text` without `prefix`, compared eight bytes at a time (a `memcmp` call costs more than
/// these few bytes).
fn strip_ascii<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let (t, p) = (text.as_bytes(), prefix.as_bytes());
    if t.len() < p.len() {
        return None;
    }
    let mut at = 0;
    while let (Some(a), Some(b)) = (word(t, at), word(p, at)) {
        if a != b {
            return None;
        }
        at += 8;
    }
    let tail = p.get(at..).unwrap_or_default();
    (t.get(at..at + tail.len()) == Some(tail)).then(|| text.get(p.len()..)).flatten()
}

/// The index of the first `"` or newline in `bytes`, eight bytes at a time: a byte is found where
/// `x - 0x01…` borrows into a byte of `x` that was zero, with `x` the word xor the byte sought
/// (the lowest such byte is always exact).
fn quote_or_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = 0;
    while let Some(w) = word(bytes, at) {
        let found = zero_byte(w ^ (ONES * u64::from(b'"'))) | zero_byte(w ^ (ONES * u64::from(b'\n')));
        if found != 0 {
            return usize::try_from(found.trailing_zeros() / 8).ok().map(|i| at + i);
        }
        at += 8;
    }
    bytes.get(at..)?.iter().position(|&b| b == b'"' || b == b'\n').map(|i| at + i)
}

/// Takes `<prefix><value>"` off the front of `rest`: one member of a canonical record.
fn canonical_member<'a>(rest: &mut &'a str, prefix: &str, field: &str) -> Result<&'a str, String> {
    let after = strip_ascii(rest, prefix).ok_or_else(|| format!("no `{prefix}` where the canonical form has field `{field}`"))?;
    let bytes = after.as_bytes();
    let end = quote_or_newline(bytes).unwrap_or(bytes.len());
    // `end` is at an ASCII quote, so both slices are on character boundaries.
    let (Some(b'"'), Some(value), Some(next)) = (bytes.get(end), after.get(..end), after.get(end + 1..)) else {
        return Err(format!("field `{field}` without its closing quote"));
    };
    *rest = next;
    Ok(value)
}

/// A count of a canonical record: a decimal string below 2^63 without leading zeros.
fn canonical_count(text: &str, field: &str) -> Result<u64, String> {
    let b = text.as_bytes();
    let mut n: Option<u64> = (!b.is_empty() && (b.len() == 1 || b[0] != b'0')).then_some(0);
    for &c in b {
        n = n.filter(|_| c.is_ascii_digit()).and_then(|n| n.checked_mul(10)).and_then(|n| n.checked_add(u64::from(c - b'0')));
    }
    n.filter(|&n| n < 1 << 63)
        .ok_or_else(|| format!("field `{field}` is \"{}\"; it must be an integer from 0 to 2^63 - 1, as a string", shorten(text, 40)))
}

/// Whether decimal text is [`Decimal::write_to`]'s: no leading zeros, no trailing fractional
/// zeros, no point without a fraction.
fn canonical_decimal(text: &str) -> bool {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && (whole == "0" || !whole.starts_with('0')) && fraction.is_none_or(|f| digits(f) && !f.ends_with('0'))
}

/// Whether a time that parsed is [`Instant::write_rfc3339`]'s text: here only the common
/// `YYYY-MM-DDTHH:MM:SSZ` is recognised; any other form is written out to be sure.
fn canonical_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20 && b[10] == b'T' && b[19] == b'Z'
}

/// Reads exactly the layout [`crate::usage::UsageRecord::write_canonical`] writes, then a newline
/// or the end, at the start of `text`, checking each value as SPEC §3 does; returns the record
/// and what follows its line. Faster than the general reader, which refuses counts as strings.
fn parse_canonical(text: &str) -> Result<(Read<'_>, &str), String> {
    let mut rest = text;
    let mut member = |prefix: &str, field: &str| canonical_member(&mut rest, prefix, field);
    let currency = member("{\"currency\":\"", "currency")?;
    let host = member(",\"host\":\"", "host")?;
    let id = member(",\"id\":\"", "id")?;
    let input_tokens = member(",\"input_tokens\":\"", "input_tokens")?;
    let model = member(",\"model\":\"", "model")?;
    let output_tokens = member(",\"output_tokens\":\"", "output_tokens")?;
    let region = member(",\"region\":\"", "region")?;
    let requests = member(",\"requests\":\"", "requests")?;
    let revenue = member(",\"revenue\":\"", "revenue")?;
    let time = member(",\"time\":\"", "time")?;
    let use_case = member(",\"use_case\":\"", "use_case")?;
    let next = match strip_ascii(rest, "}") {
        Some("") => "",
        Some(after) if after.starts_with('\n') => after.get(1..).unwrap_or(""),
        _ => return Err(format!("{} after field `use_case`, where the canonical form ends with `}}`", shorten(rest, 40))),
    };
    let taken = text.get(..text.len() - next.len()).unwrap_or(text);
    let line = taken.strip_suffix('\n').unwrap_or(taken);
    let bad = |field: &str, value: &str, rule: &str| format!("field `{field}` is \"{}\"; it must be {rule}", shorten(value, 40));
    let checks = [
        (is_party_id(host), "host", host, "a party id like \"northwind\""),
        (is_record_id(id), "id", id, "a record id of 1-128 of A-Z a-z 0-9 . _ : -"),
        (is_model_id(model), "model", model, "a model id like \"m-70b\""),
        (is_region(region), "region", region, "a region like \"eu\""),
        (is_use_case(use_case), "use_case", use_case, "a use case like \"customer_service\""),
    ];
    if let Some((_, field, value, rule)) = checks.iter().find(|(ok, ..)| !ok) {
        return Err(bad(field, value, rule));
    }
    let record = UsageRecord {
        id: Cow::Borrowed(id),
        host: Cow::Borrowed(host),
        model: Cow::Borrowed(model),
        use_case: Cow::Borrowed(use_case),
        region: Cow::Borrowed(region),
        time: Instant::parse_rfc3339(time).map_err(|e| format!("field `time`: {e}"))?,
        requests: canonical_count(requests, "requests")?,
        input_tokens: canonical_count(input_tokens, "input_tokens")?,
        output_tokens: canonical_count(output_tokens, "output_tokens")?,
        revenue: Decimal::parse(revenue).map_err(|e| format!("field `revenue`: {e}"))?,
        currency: Currency::parse(currency).map_err(|e| format!("field `currency`: {e}"))?,
    };
    // The currency, ids and counts are canonical once read; the revenue and time may not be.
    let canonical = canonical_decimal(revenue) && canonical_time(time);
    Ok((Read { record, line, canonical }, next))
}

/// Reads a money amount with exactly the currency's minor-unit digits, possibly negative.
fn parse_money(text: &str, currency: Currency) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let minor = currency.to_minor(&Decimal::parse(digits).ok()?)?;
    let minor = if negative { minor.checked_neg()? } else { minor };
    (currency.format(minor) == text).then_some(minor)
}

/// Reports every member where the recomputed statement and statement.json differ. Lines are
/// matched by (model, use_case, region, exclusive) and named by their place in statement.json.
fn diff_statement(run: &mut Run, recomputed: &Value, found: &Value) {
    let (Value::Object(expected), Value::Object(found)) = (recomputed, found) else { return };
    for key in member_names(expected, found) {
        match (expected.get(&key), found.get(&key)) {
            (Some(Value::Array(a)), Some(Value::Array(b))) if key == "lines" => diff_lines(run, a, b),
            (a, b) => diff_value(run, &key, a, b),
        }
    }
}

/// The member names of two objects, each once, sorted.
fn member_names(a: &Map<String, Value>, b: &Map<String, Value>) -> Vec<String> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names.into_iter().cloned().collect()
}

fn diff_value(run: &mut Run, path: &str, expected: Option<&Value>, found: Option<&Value>) {
    let recomputed =
        |v: Option<&Value>| v.map_or_else(|| "no such member (recomputed)".to_owned(), |v| format!("{} (recomputed)", show(v)));
    let stated = |v: Option<&Value>| v.map_or_else(|| "no such member (statement)".to_owned(), |v| format!("{} (statement)", show(v)));
    match (expected, found) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for key in member_names(a, b) {
                diff_value(run, &format!("{path}.{key}"), a.get(&key), b.get(&key));
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() && a.iter().chain(b).all(Value::is_object) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_value(run, &format!("{path}[{i}]"), Some(x), Some(y));
            }
        }
        (a, b) if a != b => run.find(path, recomputed(a), stated(b)),
        _ => {}
    }
}

/// `(m-70b customer_service us)`, `(m-70b search eu exclusive)`.
fn line_label(line: &Value) -> String {
    let part = |key: &str| str_member(line, key).unwrap_or("?").to_owned();
    let exclusive = if line.get("exclusive") == Some(&Value::Bool(true)) { " exclusive" } else { "" };
    format!("({} {} {}{exclusive})", part("model"), part("use_case"), part("region"))
}

fn line_summary(line: &Value) -> String {
    let member = |key: &str| line.get(key).map_or_else(|| "?".to_owned(), show);
    format!("a line of {} records, amount {}", member("records"), member("amount"))
}

fn diff_lines(run: &mut Run, expected: &[Value], found: &[Value]) {
    let by_label = |lines: &[Value]| -> BTreeMap<String, usize> { lines.iter().enumerate().map(|(i, l)| (line_label(l), i)).collect() };
    let (want, have) = (by_label(expected), by_label(found));
    for (label, &i) in &have {
        let name = format!("line {} {label}", i + 1);
        match want.get(label) {
            Some(&j) => {
                if let (Some(Value::Object(a)), Some(Value::Object(b))) = (expected.get(j), found.get(i)) {
                    for key in member_names(a, b) {
                        diff_value(run, &format!("{name} {key}"), a.get(&key), b.get(&key));
                    }
                }
            }
            None => {
                run.find(name, "no such line (recomputed)", format!("{} (statement)", found.get(i).map_or_else(String::new, line_summary)))
            }
        }
    }
    for (label, &j) in &want {
        if !have.contains_key(label) {
            let summary = expected.get(j).map_or_else(String::new, line_summary);
            run.find(format!("line {label}"), format!("{summary} (recomputed)"), "no such line (statement)");
        }
    }
    if want.len() == have.len() && want.keys().eq(have.keys()) && want.values().ne(have.values()) {
        run.find("lines", "lines in (model, use_case, region, exclusive) order (recomputed)", "another order (statement)");
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Consistency.

impl Run {
    fn consistency(&mut self, log: &LogJson, checkpoint: Option<&Checkpoint>, keys: &Keys, since: Option<&str>) {
        let signer = "a deployment key of keys.json";
        // Every consistency proof in the bundle is checked; `since` then needs one from its size.
        let mut proven: Vec<(u64, Hash)> = Vec::new();
        for (i, entry) in log.consistency.iter().enumerate() {
            let what = format!("log.json consistency[{i}]");
            let Some((from, _)) = self.open_checkpoint(&what, &entry.from, &keys.deployment, signer) else { continue };
            let (Some(proof), Some(to)) = (&entry.proof, checkpoint) else { continue };
            match verify_consistency(from.size, to.size, &from.root, &to.root, proof) {
                Ok(()) => {
                    self.checked.consistency += 1;
                    proven.push((from.size, from.root));
                }
                Err(e) => self.find(what, format!("a consistency proof from size {} to size {}", from.size, to.size), e.to_string()),
            }
        }
        let Some(since) = since else { return };
        let Some((old, _)) = self.open_checkpoint("since checkpoint", since, &keys.deployment, signer) else { return };
        let Some(new) = checkpoint else { return };
        if old.origin != new.origin {
            self.find("since checkpoint origin", format!("{} (the bundle's log)", new.origin), &old.origin);
        }
        if old.size > new.size {
            self.find("since checkpoint", format!("a size at most the bundle's checkpoint size {}", new.size), old.size.to_string());
        } else if old.size == new.size {
            if old.root != new.root {
                let (a, b) = (crate::transparency::b64(&new.root), crate::transparency::b64(&old.root));
                self.find(
                    "since checkpoint",
                    format!("root {a} of the bundle's checkpoint at the same size {}", new.size),
                    format!("root {b}"),
                );
            }
        } else if old.size > 0 && !proven.contains(&(old.size, old.root)) {
            // Nothing proven from that tree: maybe the bundle holds a proof from another tree of
            // that size (a rewritten log); show why it fails.
            let other = log.consistency.iter().find_map(|entry| {
                let opened = open_note(&entry.from, &keys.deployment).ok()?;
                let from = Checkpoint::parse(&opened.text).ok()?;
                (from.size == old.size).then_some((from, entry.proof.clone()))
            });
            match other {
                None => self.find(
                    "log.json consistency",
                    format!("a consistency proof from the since checkpoint (size {}) to size {}", old.size, new.size),
                    format!("no consistency proof from size {} in the bundle", old.size),
                ),
                Some((from, proof)) => {
                    let why = proof
                        .map(|p| verify_consistency(old.size, new.size, &old.root, &new.root, &p))
                        .and_then(Result::err)
                        .map_or_else(String::new, |e| format!(": {e}"));
                    self.find(
                        "since checkpoint",
                        format!("the root of the bundle's log at size {} ({})", old.size, crate::transparency::b64(&from.root)),
                        format!("root {}, which the bundle's log does not extend{why}", crate::transparency::b64(&old.root)),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_quotes_and_newlines_like_a_byte_loop() {
        let texts = [
            "",
            "\"",
            "abc",
            "abcdefgh\"",
            "abcdefghijklmnop",
            "ab\ncd\"",
            "0123456789abcdef\"x",
            "é\"",
            "\u{80}\u{80}\u{80}\u{80}\"",
            "x\u{22}",
        ];
        for text in texts {
            let bytes = text.as_bytes();
            for start in 0..bytes.len() {
                let slice = &bytes[start..];
                assert_eq!(quote_or_newline(slice), slice.iter().position(|&b| b == b'"' || b == b'\n'), "{text:?} from {start}");
            }
        }
    }

    #[test]
    fn strips_prefixes_exactly() {
        assert_eq!(strip_ascii(",\"output_tokens\":\"12\"", ",\"output_tokens\":\""), Some("12\""));
        assert_eq!(strip_ascii(",\"output_tokenz\":\"12\"", ",\"output_tokens\":\""), None);
        assert_eq!(strip_ascii(",\"out", ",\"output_tokens\":\""), None);
        assert_eq!(strip_ascii("}", "}"), Some(""));
        assert_eq!(strip_ascii("{\"currency\":\"USD\"", "{\"currency\":\""), Some("USD\""));
    }

    /// Canonical-layout lines, some with values not in canonical form: the fast check may say
    /// "canonical" only when the line is the record's canonical form (it leaves rarer canonical
    /// forms, like times with fractions, to the writer).
    #[test]
    fn the_canonical_reader_agrees_with_the_canonical_writer() {
        let layout = |revenue: &str, time: &str, requests: &str| {
            format!(
                r#"{{"currency":"USD","host":"northwind","id":"r-1","input_tokens":"10","model":"m-70b","output_tokens":"0","region":"eu","requests":"{requests}","revenue":"{revenue}","time":"{time}","use_case":"search"}}"#
            )
        };
        let cases = [
            ("1.5", "2026-10-02T10:00:00Z", "7", true),
            ("0", "2026-10-02T10:00:00Z", "0", true),
            ("0.05", "2026-10-02T10:00:00Z", "7", true),
            ("120", "2026-10-02T10:00:00Z", "7", true),
            ("1.50", "2026-10-02T10:00:00Z", "7", false),
            ("01.5", "2026-10-02T10:00:00Z", "7", false),
            ("0.0", "2026-10-02T10:00:00Z", "7", false),
            ("1.5", "2026-10-02T10:00:00.250Z", "7", false), // canonical, but not recognised as such
            ("1.5", "2026-10-02T10:00:00.000Z", "7", false),
            ("1.5", "2026-10-02T12:00:00+02:00", "7", false),
        ];
        for (revenue, time, requests, canonical) in cases {
            let line = layout(revenue, time, requests);
            let read = parse_canonical(&line).map(|(read, _)| read);
            assert!(read.is_ok(), "{line}: {:?}", read.err());
            if let Ok(read) = read {
                let mut written = Vec::new();
                read.record.write_canonical(&mut written);
                assert_eq!(read.canonical, canonical, "{line}");
                assert!(!read.canonical || written == line.as_bytes(), "{line}");
            }
        }
        // Counts are strings without leading zeros, below 2^63.
        for requests in ["07", "", "-1", "9223372036854775808", "1.0"] {
            assert!(parse_canonical(&layout("1", "2026-10-02T10:00:00Z", requests)).is_err(), "{requests}");
        }
        assert!(parse_canonical(&layout("1", "2026-10-02T10:00:00Z", "9223372036854775807")).is_ok());
    }

    #[test]
    fn reads_canonical_and_json_lines_and_names_what_is_wrong() {
        let canonical = r#"{"currency":"USD","host":"northwind","id":"r-1","input_tokens":"10","model":"m-70b","output_tokens":"0","region":"eu","requests":"7","revenue":"1.5","time":"2026-10-02T10:00:00Z","use_case":"search"}"#;
        let json = r#"{"id":"r-2","host":"northwind","model":"m-70b","use_case":"search","region":"eu","time":"2026-10-02T10:00:00Z","requests":7,"input_tokens":10,"output_tokens":0,"revenue":"1.5","currency":"USD"}"#;
        let text = format!("{canonical}\n{json}\n\n{}\n", canonical.replace("northwind", "North wind"));
        let mut rest = text.as_str();
        let mut results = Vec::new();
        while !rest.is_empty() {
            let (read, next) = read_record(rest);
            results.push(read.map(|r| (r.record.id.into_owned(), r.canonical)));
            rest = next;
        }
        assert_eq!(results.len(), 4);
        assert_eq!(results[0], Ok(("r-1".to_owned(), true)));
        assert_eq!(results[1], Ok(("r-2".to_owned(), false)));
        assert_eq!(results[2], Err("an empty line".to_owned()));
        assert!(results[3].as_ref().is_err_and(|e| e.contains("field `host`")), "{:?}", results[3]);
    }

    fn digest(i: u32) -> [u8; 32] {
        Sha256::digest(i.to_le_bytes()).into()
    }

    #[test]
    fn merges_sorted_runs_on_threads_into_one_sorted_list() {
        // Enough digests for the threaded merge; runs of different sizes, one empty, repeats.
        let mut runs: Vec<Vec<[u8; 32]>> =
            vec![(0..40_000).map(digest).collect(), (30_000..70_000).map(digest).collect(), Vec::new(), (5..9).map(digest).collect()];
        for run in &mut runs {
            sort_digests(run);
        }
        let merged = merge_runs(&runs.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let mut expected = runs.concat();
        expected.sort_unstable();
        assert_eq!(merged, expected);
    }

    #[test]
    fn finds_the_digests_in_no_batch() {
        let mut batch: Vec<[u8; 32]> = (0..1000).map(digest).collect();
        sort_digests(&mut batch);
        let batches = BatchDigests { sorted: batch };
        let mut wanted: Vec<([u8; 32], u64)> =
            (990..1010).map(|i| (digest(i), u64::from(i))).chain([(digest(3), 3), (digest(3), 4)]).collect();
        wanted.sort_unstable_by(|a, b| digest_order(&a.0, &b.0));
        let mut missing: Vec<u64> = batches.missing(&wanted).into_iter().map(|(_, line)| line).collect();
        missing.sort_unstable();
        assert_eq!(missing, (1000..1010).collect::<Vec<_>>());
        assert_eq!(BatchDigests { sorted: Vec::new() }.missing(&wanted).len(), wanted.len());
    }

    #[test]
    fn cuts_records_at_line_ends() {
        let line = "x".repeat(99) + "\n";
        let text = line.repeat(100_000);
        let parts = split_parts(text.as_bytes());
        assert_eq!(parts.len(), text.len() / PART_BYTES);
        assert!(parts.iter().all(|p| p.ends_with(b"\n") && p.len() % 100 == 0));
        assert_eq!(parts.concat(), text.as_bytes());
        assert_eq!(split_parts(b"").len(), 1);
        assert_eq!(split_parts(b"no newline").concat(), b"no newline");
    }

    #[test]
    fn reads_money_with_exactly_the_minor_digits() {
        let usd = Currency::parse("USD").ok();
        let jpy = Currency::parse("JPY").ok();
        assert_eq!(usd.and_then(|c| parse_money("-12.30", c)), Some(-1230));
        assert_eq!(usd.and_then(|c| parse_money("0.00", c)), Some(0));
        assert_eq!(usd.and_then(|c| parse_money("12.3", c)), None);
        assert_eq!(usd.and_then(|c| parse_money("-0.00", c)), None);
        assert_eq!(jpy.and_then(|c| parse_money("1500", c)), Some(1500));
        assert_eq!(jpy.and_then(|c| parse_money("1500.0", c)), None);
    }
}
