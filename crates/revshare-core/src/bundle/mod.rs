//! Offline verification of a statement bundle (SPEC §7, `revshare verify`).
//!
//! A bundle is what `revshare statement export --bundle DIR` writes so that anyone — the host, an
//! auditor, an arbiter — can check one statement with nothing but the bundle: the statement, the
//! agreement it applies, the records it counted as their hosts sent them with their salts, the
//! host's model aliases, the log's events that commit the deployment to all of these (each with
//! its salt and its proof under a signed checkpoint), the keys, the statement's signatures, and
//! the record commitments of every usage batch a counted record was accepted in, and the
//! statements of every month it restates. [`verify`] checks every digest, signature and proof
//! and recomputes the statement from the records, byte for byte.
//!
//! It does not stop at the first problem: every check that can still run on what is left runs,
//! and each problem becomes a [`Finding`] saying where it is, what was expected and what was
//! found. Checks whose input is missing (no checkpoint, an agreement that does not parse) are
//! skipped, their cause already reported.
//!
//! Adjustments are checked, not taken as given. A restatement adjustment must be
//! [`crate::statement::restatement`] of the restated month's two statements, which the bundle
//! holds in `restated/<period>/` with their log leaves (`restated`); how the later of them follows
//! from its records is its own bundle's to prove. A dispute adjustment must be what the dispute's
//! logged transitions, which the bundle holds, resolve to under the rules of [`crate::dispute`].
//! (How often records were resent is no part of a statement, SPEC §6: the bundle holds each
//! record once, and so does the statement.)
//!
//! Records are read once. `records.jsonl` is cut at line ends into parts of a few megabytes,
//! each read on its own scoped thread: every line is parsed (its canonical form directly, any
//! other SPEC §3 line through [`parse_json_line`]), its digest as sent taken once (from the line
//! itself when the line is the canonical form), its model mapped through the aliases, and the
//! record selected and added to the part's [`Rollup`]. Batch membership is checked by committing
//! each record's digest with its salt from records.salts, sorting each part's commitments and
//! walking them along the sorted batch files (random lookups in a large table would each miss the
//! cache). The parts' rollups merge into one (sums do not depend on
//! order) and settlement runs on it exactly as [`crate::settle::settle_records`] does (selection,
//! rollup, usage digest, [`settle`]) but without its idempotency index: the bundle's records must
//! be strictly ascending by `(host, id)`, which is checked, across parts too, and rules out
//! resends. How the file is cut depends only on its size, and the report does not depend on it.
//! The threads are the one exception to the core's single-threaded style: they are scoped, do no
//! IO, and exist so that verifying a month is as fast as settling it.
//!
//! The checks live in modules named by what they check: `keys` (keys.json and the statement's
//! signatures), `log` (log.json, the checkpoint and the leaves' inclusion proofs), `consistency`
//! (earlier checkpoints), `anchor` (which deployment keys the verifier's own trust reaches),
//! `statement` (the statement and agreement against their leaves, and the recomputed statement
//! compared with the bundle's), `batches` (batch digest files and signatures), `records` (reading
//! records.jsonl in parts), `recompute` (aliases, models, contributions, disputes, the recomputation) and
//! `restated` (restatement adjustments against the restated months' statements).

mod anchor;
mod batches;
mod consistency;
mod keys;
mod log;
mod recompute;
mod records;
mod restated;
mod statement;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::note::VerifierKey;
use crate::text::printable;
pub(crate) use crate::text::shorten;
use crate::usage::RecordProblem;

pub use self::anchor::Anchor;
use self::keys::Keys;
use self::recompute::Recompute;
pub use self::records::PART_BYTES;

/// How many findings of one category are listed (the records' problems, the log's, the
/// recomputed statement's lines, …); the rest are counted in one last finding of the category.
pub const MAX_FINDINGS_PER_CATEGORY: usize = 100;

/// The most characters of one finding's `what`, `expected` or `found`; a longer text is cut.
pub const MAX_FINDING_CHARS: usize = 400;

/// The files of a statement bundle, as read from its directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bundle {
    /// `statement.json`: the statement's RFC 8785 canonical bytes ([`crate::statement::Statement::to_canonical`]).
    pub statement: Vec<u8>,
    /// `agreement.toml`: the TOML text of the agreement version the statement applies.
    pub agreement: String,
    /// `records.jsonl`: the records the statement counted, as their hosts sent them, one per line,
    /// each a SPEC §3 usage line in the canonical form's key order, counts as JSON integers
    /// ([`crate::usage::UsageRecord::write_json_line`]: what `settle` reads; canonical-form lines
    /// and any other SPEC §3 line are read too), sorted by `(host, id)` ascending, each once. A
    /// record's digest is always that of its canonical form.
    pub records: Vec<u8>,
    /// `aliases.json`: `{"<host>": {"<host's model id>": "<licensed model id>"}}`, how reported
    /// model ids map to licensed ones (`{}` if none).
    pub aliases: Vec<u8>,
    /// `models.json`: the lineage of the derived models the statement's lines name, as
    /// [`crate::licence::Lineage::to_json`] writes it (`[]` if none).
    pub models: Vec<u8>,
    /// `records.salts`: each record's salt in its batch ([`crate::transparency::record_salt`]),
    /// [`crate::transparency::RECORD_SALT_BYTES`] bytes per line of records.jsonl, in its order.
    pub salts: Vec<u8>,
    /// `log.json`: `{"checkpoint": "<signed note>", "leaves": [{"index", "event", "salt",
    /// "proof"}], "consistency": [{"from": "<signed note>", "proof"}]}`: each leaf's event (its
    /// canonical JSON text) and salt (base64), whose [`crate::transparency::commitment`] is the
    /// leaf's data; every leaf's proof is an RFC 6962 inclusion proof at the checkpoint's size,
    /// hashes in base64.
    pub log: Vec<u8>,
    /// `keys.json`: `{"deployment": ["<verifier key>", …], "host": ["<verifier key>", …]}`.
    pub keys: Vec<u8>,
    /// `signatures.json`: `[{"key": "<verifier key>", "signature": "<base64>"}]`, signatures of
    /// [`statement_message`] of the statement's digest ([`Signed::to_json`] form).
    pub signatures: Vec<u8>,
    /// `batches/<leaf>.digests`: for each usage-batch leaf, the concatenated 32-byte
    /// [`crate::transparency::record_commitment`]s of the batch's distinct records as sent, sorted
    /// ascending: the other records of a mixed batch are there only as salted commitments.
    pub batches: Vec<(u64, Vec<u8>)>,
    /// `restated/<period>/before.json` and `after.json`: for each restatement adjustment of the
    /// statement, the restated month's statement as it stood before and the restatement that
    /// replaced it (canonical bytes, each logged in a statement leaf of log.json), by period.
    pub restated: Vec<RestatedMonth>,
}

/// A restated month's two statements, as a restatement adjustment compares them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestatedMonth {
    /// The month, `2026-10`: the adjustment's reference and the folder's name.
    pub period: String,
    /// `before.json`: the month's statement as it stood when the statement's month closed.
    pub before: Vec<u8>,
    /// `after.json`: the restatement finalised with the statement.
    pub after: Vec<u8>,
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
            (SALTS_FILE.to_owned(), &self.salts),
            ("aliases.json".to_owned(), &self.aliases),
            ("models.json".to_owned(), &self.models),
            ("log.json".to_owned(), &self.log),
            ("keys.json".to_owned(), &self.keys),
            ("signatures.json".to_owned(), &self.signatures),
        ];
        files.extend(self.batches.iter().map(|(leaf, digests)| (format!("{BATCHES_DIR}/{leaf}.digests"), digests.as_slice())));
        for month in &self.restated {
            files.push((format!("{RESTATED_DIR}/{}/before.json", month.period), month.before.as_slice()));
            files.push((format!("{RESTATED_DIR}/{}/after.json", month.period), month.after.as_slice()));
        }
        files
    }
}

/// The file of a bundle that holds the records' salts.
pub const SALTS_FILE: &str = "records.salts";

/// The folder of a bundle that holds `<leaf>.digests` files.
pub const BATCHES_DIR: &str = "batches";

/// The folder of a bundle that holds a `<period>/` folder per restated month.
pub const RESTATED_DIR: &str = "restated";

/// What [`verify`] is told besides the bundle: what the verifier holds, which anchors the bundle
/// to the real deployment (SPEC §7, [`anchor`]). Nothing in the bundle can stand in for these.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions<'a> {
    /// A signed checkpoint the verifier kept: the bundle's log must extend it, and the deployment
    /// keys logged before it are trusted.
    pub since: Option<&'a str>,
    /// Deployment keys the verifier obtained on its own (`--trust`).
    pub trusted: &'a [VerifierKey],
    /// A consistency proof the verifier fetched (`revshare log consistency`, `GET
    /// /v1/log/consistency`: `{"from", "to", "from_root", "to_root", "consistency_proof"}`),
    /// from the `since` checkpoint's size to the bundle's checkpoint, for when the bundle carries
    /// none from that size.
    pub consistency: Option<&'a str>,
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
    /// Restatement adjustments equal to the difference of their month's two logged statements.
    pub restatements: u64,
    /// Consistency proofs in `log.json` that verified.
    pub consistency: u64,
    /// The checkpoint's tree size, when the checkpoint opened.
    pub log_size: Option<u64>,
    /// Whether the recomputed statement equals `statement.json` byte for byte.
    pub recomputed: bool,
}

/// The outcome of [`verify`]: every finding, what was checked, and what it rests on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Every problem found, in the order of the checks (record problems by line).
    pub findings: Vec<Finding>,
    /// What was checked and found right.
    pub checked: Checked,
    /// The deployment key the checkpoint is signed by, when the verifier's trust reaches it.
    pub anchor: Anchor,
}

impl Report {
    /// Whether the bundle verified without a single finding, anchored to what the verifier holds.
    pub fn ok(&self) -> bool {
        self.findings.is_empty() && self.anchored()
    }

    /// Whether the checkpoint is signed by a key the verifier's trust reaches.
    pub fn anchored(&self) -> bool {
        matches!(self.anchor, Anchor::Anchored { .. })
    }
}

/// Verifies a statement bundle offline. Pure: the same bundle and options give the same report.
///
/// The checks, in order: the keys; the checkpoint's signature by a key the bundle lists or the
/// verifier trusts; every leaf's inclusion proof, with one agreement leaf and the statement's
/// (its month's last statement leaf); every consistency proof, and the log's consistency with [`VerifyOptions::since`]; the
/// anchor (the checkpoint's signer among the keys the verifier's trust reaches, [`anchor`]); the
/// statement's digest and its agreement and period against those leaves; the statement
/// signatures (at least one by a trusted deployment key); the agreement's digest; every batch
/// digest file against its leaf and every batch signature; every record (it parses, is in order,
/// is in a batch, is counted) and the recomputed statement against `statement.json`; each
/// dispute adjustment against the dispute's logged transitions, each restatement adjustment
/// against its month's two logged statements.
pub fn verify(bundle: &Bundle, options: &VerifyOptions<'_>) -> Report {
    let mut run = Run::default();
    // 1. Keys, as the bundle lists them: claims, until the anchor says which are trusted.
    let listed = run.keys(&bundle.keys);
    // 2. The checkpoint (log.json is read here, its leaves checked in step 3).
    let log = run.log_json(&bundle.log);
    let opened = log.as_ref().and_then(|log| log.checkpoint.as_deref()).and_then(|note| run.checkpoint(note, &listed, options.trusted));
    let (checkpoint, signers) = opened.map_or((None, None), |(checkpoint, signers)| (Some(checkpoint), Some(signers)));
    run.checked.log_size = checkpoint.as_ref().map(|c| c.size);
    // 3. Leaves.
    let period = serde_json::from_slice::<Value>(&bundle.statement).ok().and_then(|s| str_member(&s, "period").map(str::to_owned));
    let leaves = run.leaves(log.as_ref(), checkpoint.as_ref(), period.as_deref());
    run.key_leaves(&listed, &leaves);
    // 4. Consistency with earlier checkpoints, the kept one among them; then the anchor.
    let since = log.as_ref().and_then(|log| run.consistency(log, checkpoint.as_ref(), &listed, options));
    let anchored = !options.trusted.is_empty() || options.since.is_some();
    let (deployment, anchor) = run.anchor(&listed, &leaves, options.trusted, since.as_ref(), anchored, signers.as_deref());
    let keys = Keys { deployment, host: listed.host };
    // 5. The statement against its leaf and the agreement leaf.
    let statement = run.statement(&bundle.statement, &leaves);
    // 6. Statement signatures.
    run.signatures(&bundle.signatures, &statement.digest, &keys);
    // 7. The agreement.
    let agreement = run.agreement(&bundle.agreement, &leaves, statement.value.as_ref());
    // 8. Batches.
    let batches = run.batches(&bundle.batches, &leaves, &keys);
    // 9. Records and the recomputed statement.
    let aliases = run.aliases(&bundle.aliases);
    let lineage = run.lineage(&bundle.models);
    let contributions = run.contributions(&leaves);
    run.records_and_recompute(
        bundle,
        &batches,
        &Recompute { aliases: &aliases, lineage: &lineage, contributions: &contributions },
        agreement.as_ref(),
        &statement,
    );
    // 9b. Each dispute adjustment against the dispute's logged transitions.
    if let (Some(value), Some(agreement)) = (&statement.value, &agreement) {
        run.disputes(value, &leaves, agreement);
    }
    // 9c. Each restatement adjustment against the restated month's two statements.
    if let Some(value) = &statement.value {
        run.restatements(value, &bundle.restated, &leaves);
    }
    run.finish(anchor)
}

// ---------------------------------------------------------------------------------------------
// The run: findings and counts.

#[derive(Default)]
struct Run {
    findings: Vec<Finding>,
    checked: Checked,
    /// Findings so far per category ([`category`]), listed or not: only the first
    /// [`MAX_FINDINGS_PER_CATEGORY`] of each are listed.
    counts: BTreeMap<String, usize>,
}

impl Run {
    /// Records a finding. A bundle is untrusted: its text reaches a terminal or a page only
    /// through [`Finding`], so every part is made safe here ([`safe_text`]) whatever built it.
    fn find(&mut self, what: impl Into<String>, expected: impl Into<String>, found: impl Into<String>) {
        let what = what.into();
        let count = self.counts.entry(category(&what).to_owned()).or_default();
        *count += 1;
        if *count <= MAX_FINDINGS_PER_CATEGORY {
            let (expected, found) = (expected.into(), found.into());
            self.findings.push(Finding { what: safe_text(&what), expected: safe_text(&expected), found: safe_text(&found) });
        }
    }

    /// A finding about one record line.
    fn record(&mut self, line: u64, expected: impl Into<String>, found: impl Into<String>) {
        self.find(format!("records.jsonl:{line}"), expected, found);
    }

    /// Counts findings of a category found and not listed elsewhere (a part's records beyond its
    /// own list).
    fn hidden(&mut self, what: &str, n: usize) {
        *self.counts.entry(category(what).to_owned()).or_default() += n;
    }

    /// The report: the findings, then for each category over the limit how many were not listed.
    fn finish(mut self, anchor: Anchor) -> Report {
        for (category, count) in &self.counts {
            if let Some(more) = count.checked_sub(MAX_FINDINGS_PER_CATEGORY).filter(|&more| more > 0) {
                self.findings.push(Finding {
                    what: safe_text(category),
                    expected: "no more problems".to_owned(),
                    found: format!("{more} more problems, not listed (the first {MAX_FINDINGS_PER_CATEGORY} are)"),
                });
            }
        }
        Report { findings: self.findings, checked: self.checked, anchor }
    }
}

/// The category a finding is counted in: its `what` up to the first space, colon, bracket or
/// slash (`records.jsonl:12` → `records.jsonl`, `log.json leaf 7` → `log.json`,
/// `batches/7.digests` → `batches`, `line 3 (…) amount` → `line`).
fn category(what: &str) -> &str {
    what.split([' ', ':', '[', '/']).next().unwrap_or(what)
}

/// Text from a bundle as a finding shows it: [`printable`], at most [`MAX_FINDING_CHARS`]
/// characters, so that no bundle can take over the verifier's terminal or page.
fn safe_text(text: &str) -> String {
    printable(text, MAX_FINDING_CHARS)
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
