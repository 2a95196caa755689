//! Offline verification of statement bundles (`revshare_core::bundle`): a bundle built with the
//! real builders verifies clean, flipping one byte of any part of it is reported, naming the
//! part, and nothing a bundle brings (keys, key leaves, checkpoints) stands in for what the
//! verifier holds: forged bundles that agree with themselves are refused, each saying why.

use revshare_core::agreement::parse_agreement;
use revshare_core::bundle::{Anchor, Bundle, Finding, Report, RestatedMonth, VerifyOptions, verify};
use revshare_core::contribution::{Contribution, parse_contribution_line};
use revshare_core::licence::Lineage;
use revshare_core::merkle::{self, Hash, MemoryCells, leaf_hash};
use revshare_core::note::{Checkpoint, SignerKey, VerifierKey, sign_note};
use revshare_core::settle::{settle_records, sorted_digest};
use revshare_core::statement::{Statement, restatement};
use revshare_core::time::Period;
use revshare_core::transparency::{
    self, KeyOrigin, RECORD_KEY_BYTES, SALT_BYTES, Salt, Signed, b64, batch_message, commitment, record_commitment, record_salt,
    statement_message,
};
use revshare_core::usage::{UsageRecord, parse_json_line};
use serde_json::{Value, json};

const AGREEMENT: &str = r#"
id = "meridian-northwind"
version = 2
licensor = "meridian"
host = "northwind"
currency = "USD"
effective_from = 2026-01-01
models = ["m-8b", "m-70b"]
minimum = "10.00"
dispute_window_days = 30

[pricing]
basis = "revenue_share"
tier_metric = "revenue"
tier_mode = "graduated"
tier_bounds = ["1000"]

[pricing.rates]
customer_service = ["0.20", "0.15"]
search           = ["0.10", "0.08"]
default          = ["0.05", "0.04"]

[[exclusivity]]
use_case = "search"
regions = ["eu"]
from = 2026-10-15
to = 2027-01-01
uplift = "0.25"

[contributions]
pool = "0.02"
points = { maintenance = 1, improvement = 5 }
"#;

const AGREEMENT_ID: &str = "meridian-northwind";
const PERIOD: &str = "2026-10";
const ORIGIN: &str = "log.example";

/// The records the statement counts, as the host sent them (r-2 names the host's own model id).
const RECORDS: [&str; 5] = [
    r#"{"id":"r-1","host":"northwind","model":"m-70b","use_case":"customer_service","region":"us","time":"2026-10-02T10:00:00Z","requests":100,"input_tokens":1000,"output_tokens":500,"revenue":"600.00","currency":"USD"}"#,
    r#"{"id":"r-2","host":"northwind","model":"nw-llama-70b","use_case":"customer_service","region":"us","time":"2026-10-05T08:00:00Z","requests":40,"input_tokens":400,"output_tokens":100,"revenue":"250.5","currency":"USD"}"#,
    r#"{"id":"r-3","host":"northwind","model":"m-70b","use_case":"search","region":"eu","time":"2026-10-20T23:59:59Z","requests":75,"input_tokens":700,"output_tokens":300,"revenue":"300","currency":"USD"}"#,
    r#"{"id":"r-4","host":"northwind","model":"m-8b","use_case":"search","region":"us","time":"2026-10-11T00:00:00.250Z","requests":9,"input_tokens":90,"output_tokens":10,"revenue":"99.99","currency":"USD"}"#,
    r#"{"id":"r-5","host":"northwind","model":"m-8b","use_case":"translation","region":"apac","time":"2026-10-15T12:00:00+02:00","requests":4,"input_tokens":40,"output_tokens":4,"revenue":"40","currency":"USD"}"#,
];

/// A record of September, in the first batch but not counted by October's statement.
/// It came late: September, closed without it, was restated, and October carries the difference.
const SEPTEMBER: &str = r#"{"id":"r-0","host":"northwind","model":"m-70b","use_case":"search","region":"us","time":"2026-09-30T23:00:00Z","requests":1,"input_tokens":1,"output_tokens":1,"revenue":"500","currency":"USD"}"#;

const ALIASES: &str = r#"{"northwind":{"nw-llama-70b":"m-70b"}}"#;

fn contribution(line: &str) -> Contribution {
    parse_contribution_line(line.as_bytes()).unwrap()
}

/// Everything a bundle is made of, kept in typed form so a test can change one part and write
/// the bundle again.
struct Fixture {
    deployment: SignerKey,
    /// The deployment key's public half, as a verifier obtained it.
    trusted: VerifierKey,
    host: SignerKey,
    statement: Vec<u8>,
    agreement: String,
    records: Vec<u8>,
    /// records.salts.
    salts: Vec<u8>,
    aliases: Vec<u8>,
    /// Every leaf's event, in order (each committed under [`salt_of`] its index).
    leaves: Vec<Vec<u8>>,
    /// The leaves log.json lists, with their inclusion proofs at the checkpoint's size.
    listed: Vec<(u64, Vec<Hash>)>,
    checkpoint: String,
    /// A checkpoint of the log at [`EARLIER`] leaves, and the consistency proof from it.
    earlier: String,
    consistency: Vec<Hash>,
    keys: Value,
    signatures: Vec<Signed>,
    batches: Vec<(u64, Vec<u8>)>,
    restated: Vec<RestatedMonth>,
}

/// The size of the earlier checkpoint.
const EARLIER: u64 = 6;
/// The leaf indexes of the two batches, September's two statements and the statement.
const BATCH_A: u64 = 3;
const BATCH_B: u64 = 8;
const SEPTEMBER_BEFORE: u64 = 9;
const SEPTEMBER_AFTER: u64 = 10;
const STATEMENT_LEAF: u64 = 11;

fn signer(name: &str, seed: u8) -> SignerKey {
    SignerKey::from_seed(name, [seed; 32]).unwrap()
}

fn checkpoint_note(signer: &SignerKey, cells: &MemoryCells) -> String {
    let body = Checkpoint {
        origin: ORIGIN.to_owned(),
        size: cells.size(),
        root: cells.root(),
        extensions: vec!["time 2026-11-01T00:00:00Z".to_owned()],
    }
    .body();
    sign_note(&body, &[signer]).unwrap()
}

/// Canonical lines sorted by (host, id), and the batch digest files' sorted digests as sent.
fn canonical_lines(records: &[UsageRecord<'_>]) -> Vec<u8> {
    let mut sorted: Vec<&UsageRecord<'_>> = records.iter().collect();
    sorted.sort_by(|a, b| (a.host.as_ref(), a.id.as_ref()).cmp(&(b.host.as_ref(), b.id.as_ref())));
    let mut out = Vec::new();
    for record in sorted {
        record.write_canonical(&mut out);
        out.push(b'\n');
    }
    out
}

/// A batch under its record-salt key: its digest, its count and its file of sorted commitments.
fn batch(records: &[&UsageRecord<'_>], key: &[u8; RECORD_KEY_BYTES]) -> (String, u64, Vec<u8>) {
    let mut commitments: Vec<[u8; 32]> = records.iter().map(|r| commit(key, r)).collect();
    commitments.sort_unstable();
    commitments.dedup();
    let digest = sorted_digest(&mut commitments);
    (digest, u64::try_from(commitments.len()).unwrap(), commitments.concat())
}

fn commit(key: &[u8; RECORD_KEY_BYTES], record: &UsageRecord<'_>) -> [u8; 32] {
    let digest = record.digest();
    record_commitment(&record_salt(key, &digest), &digest)
}

/// The record-salt keys of the two batches.
const KEY_A: [u8; RECORD_KEY_BYTES] = [0xa1; RECORD_KEY_BYTES];
const KEY_B: [u8; RECORD_KEY_BYTES] = [0xb2; RECORD_KEY_BYTES];

/// The salt of leaf `index`'s event: fixed, so that a test can rebuild the tree.
fn salt_of(index: usize) -> Salt {
    let mut salt = [0x5a; SALT_BYTES];
    salt[..8].copy_from_slice(&u64::try_from(index).unwrap().to_le_bytes());
    salt
}

/// The leaf hashes of a log's events, each committed under [`salt_of`] its index.
fn hashed(events: &[Vec<u8>]) -> Vec<Hash> {
    events.iter().enumerate().map(|(i, event)| leaf_hash(&commitment(&salt_of(i), event))).collect()
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::build(&RECORDS.iter().map(|l| parse_json_line(l.as_bytes()).unwrap()).collect::<Vec<_>>(), |_| {})
    }

    /// Builds the bundle of October's statement over `sent` (split into two batches, the second
    /// signed by the host); `tweak` changes the statement before it is logged and signed.
    fn build(sent: &[UsageRecord<'_>], tweak: impl FnOnce(&mut Statement)) -> Fixture {
        let deployment = signer(ORIGIN, 1);
        let host = signer("northwind", 2);
        let agreement = parse_agreement("agreement.toml", AGREEMENT).unwrap();
        let period = Period::parse(PERIOD).unwrap();

        // The records as counted: the host's model ids mapped to licensed ones.
        let counted: Vec<UsageRecord<'_>> = sent
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if r.model == "nw-llama-70b" {
                    r.model = "m-70b".into();
                }
                r
            })
            .collect();

        let c1_recorded = contribution(
            r#"{"id":"c1","party":"northwind","kind":"improvement","date":"2026-10-12","description":"faster kernels","accepted":false}"#,
        );
        let c1 = Contribution { accepted: true, ..c1_recorded.clone() };
        let c2 = contribution(
            r#"{"id":"c2","party":"meridian","kind":"maintenance","date":"2026-10-20","description":"safety fix","accepted":true}"#,
        );
        let other =
            contribution(r#"{"id":"c9","party":"meridian","kind":"update","date":"2026-10-20","description":"other","accepted":true}"#);
        let late =
            contribution(r#"{"id":"c3","party":"meridian","kind":"improvement","date":"2026-10-21","description":"late","accepted":true}"#);
        // September as it closed (no record: the minimum), and restated with its late record.
        let september = parse_json_line(SEPTEMBER.as_bytes()).unwrap();
        let september_period = Period::parse("2026-09").unwrap();
        let before = settle_records(&agreement, september_period, &[], &[], Vec::new(), &Lineage::default()).unwrap();
        let after =
            settle_records(&agreement, september_period, std::slice::from_ref(&september), &[], Vec::new(), &Lineage::default()).unwrap();
        let adjustments = vec![restatement(&before, &after).unwrap().expect("September changed")];
        let restated = vec![RestatedMonth {
            period: "2026-09".to_owned(),
            before: before.to_canonical().unwrap(),
            after: after.to_canonical().unwrap(),
        }];
        let digest_of = revshare_core::canonical::digest;
        let restated_digests = (digest_of(&restated[0].before), digest_of(&restated[0].after));
        let mut statement =
            settle_records(&agreement, period, &counted, &[c1.clone(), c2.clone()], adjustments, &Lineage::default()).unwrap();
        tweak(&mut statement);
        let statement = statement.to_canonical().unwrap();
        let digest = revshare_core::canonical::digest(&statement);

        // Two batches: the first also holds the September record, the second is signed by the host.
        let half = sent.len().div_ceil(2);
        let first: Vec<&UsageRecord<'_>> = sent[..half].iter().chain([&september]).collect();
        let second: Vec<&UsageRecord<'_>> = sent[half..].iter().collect();
        let (digest_a, count_a, file_a) = batch(&first, &KEY_A);
        let (digest_b, count_b, file_b) = batch(&second, &KEY_B);
        // Each record's salt, in the order of records.jsonl.
        let mut keyed: Vec<(&UsageRecord<'_>, &[u8; RECORD_KEY_BYTES])> =
            sent[..half].iter().map(|r| (r, &KEY_A)).chain(sent[half..].iter().map(|r| (r, &KEY_B))).collect();
        keyed.sort_by(|(a, _), (b, _)| (a.host.as_ref(), a.id.as_ref()).cmp(&(b.host.as_ref(), b.id.as_ref())));
        let salts: Vec<u8> = keyed.iter().flat_map(|(r, key)| record_salt(key, &r.digest())).collect();
        let signed_b = Signed { key: host.verifier().to_text(), signature: host.sign(&batch_message(&digest_b)) };

        let leaves: Vec<Vec<u8>> = vec![
            transparency::key_event(None, &deployment.verifier().to_text(), KeyOrigin::Operator).unwrap(),
            transparency::key_event(Some("northwind"), &host.verifier().to_text(), KeyOrigin::Operator).unwrap(),
            transparency::agreement_event(
                AGREEMENT_ID,
                2,
                "meridian",
                "northwind",
                &agreement.digest(),
                &revshare_core::canonical::digest(AGREEMENT.as_bytes()),
            )
            .unwrap(),
            transparency::batch_event(&digest_a, count_a, None).unwrap(),
            transparency::contribution_event(AGREEMENT_ID, &c1_recorded).unwrap(),
            transparency::contribution_event(AGREEMENT_ID, &c1).unwrap(),
            transparency::contribution_event(AGREEMENT_ID, &c2).unwrap(),
            transparency::contribution_event("meridian-westwind", &other).unwrap(),
            transparency::batch_event(&digest_b, count_b, Some(&signed_b)).unwrap(),
            transparency::statement_event(AGREEMENT_ID, "2026-09", 1, "original", &restated_digests.0).unwrap(),
            transparency::statement_event(AGREEMENT_ID, "2026-09", 2, "restatement", &restated_digests.1).unwrap(),
            transparency::statement_event(AGREEMENT_ID, PERIOD, 1, "original", &digest).unwrap(),
            transparency::contribution_event(AGREEMENT_ID, &late).unwrap(),
            transparency::journal_event("statement:meridian-northwind/2026-10/1", "statement", AGREEMENT_ID, "sha256:00").unwrap(),
        ];
        let mut cells = MemoryCells::new();
        let mut earlier = String::new();
        for hash in hashed(&leaves) {
            cells.push(hash);
            if cells.size() == EARLIER {
                earlier = checkpoint_note(&deployment, &cells);
            }
        }
        let size = cells.size();
        let checkpoint = checkpoint_note(&deployment, &cells);
        // Every leaf but the journal entry is listed.
        let listed = (0..size - 1).map(|i| (i, merkle::inclusion_proof(&mut cells, i, size).unwrap())).collect();
        let consistency = merkle::consistency_proof(&mut cells, EARLIER, size).unwrap();

        let message = statement_message(&digest);
        let signatures = vec![
            Signed { key: deployment.verifier().to_text(), signature: deployment.sign(&message) },
            Signed { key: host.verifier().to_text(), signature: host.sign(&message) },
        ];
        let keys = json!({ "deployment": [deployment.verifier().to_text()], "host": [host.verifier().to_text()] });
        Fixture {
            statement,
            agreement: AGREEMENT.to_owned(),
            records: canonical_lines(sent),
            salts,
            aliases: ALIASES.as_bytes().to_vec(),
            leaves,
            listed,
            checkpoint,
            earlier,
            consistency,
            keys,
            signatures,
            batches: vec![(BATCH_A, file_a), (BATCH_B, file_b)],
            restated,
            trusted: deployment.verifier(),
            deployment,
            host,
        }
    }

    fn log_json(&self) -> Vec<u8> {
        let leaves: Vec<Value> = self
            .listed
            .iter()
            .map(|(i, proof)| {
                let at = usize::try_from(*i).unwrap();
                let event = String::from_utf8(self.leaves[at].clone()).unwrap();
                let proof: Vec<String> = proof.iter().map(|h| b64(h)).collect();
                json!({ "index": i, "event": event, "salt": b64(&salt_of(at)), "proof": proof })
            })
            .collect();
        let consistency = json!([{ "from": self.earlier, "proof": self.consistency.iter().map(|h| b64(h)).collect::<Vec<_>>() }]);
        serde_json::to_vec(&json!({ "checkpoint": self.checkpoint, "leaves": leaves, "consistency": consistency })).unwrap()
    }

    fn bundle(&self) -> Bundle {
        Bundle {
            statement: self.statement.clone(),
            agreement: self.agreement.clone(),
            records: self.records.clone(),
            salts: self.salts.clone(),
            aliases: self.aliases.clone(),
            models: b"[]".to_vec(),
            log: self.log_json(),
            keys: serde_json::to_vec(&self.keys).unwrap(),
            signatures: serde_json::to_vec(&self.signatures.iter().map(Signed::to_json).collect::<Vec<_>>()).unwrap(),
            batches: self.batches.clone(),
            restated: self.restated.clone(),
        }
    }

    /// Verifies the bundle trusting the deployment's first key, as a verifier handed it would.
    fn verify(&self) -> Report {
        verify(&self.bundle(), &self.trusting())
    }

    /// Options naming the deployment's first key with `--trust`.
    fn trusting(&self) -> VerifyOptions<'_> {
        VerifyOptions { trusted: std::slice::from_ref(&self.trusted), ..VerifyOptions::default() }
    }
}

fn whats(report: &Report) -> Vec<&str> {
    report.findings.iter().map(|f| f.what.as_str()).collect()
}

/// Asserts that some finding's `what` starts with `prefix`.
#[track_caller]
fn assert_names(report: &Report, prefix: &str) {
    assert!(report.findings.iter().any(|f| f.what.starts_with(prefix)), "no finding on `{prefix}` among:\n{:#?}", report.findings);
}

/// Flips the lowest bit of the byte right after the first occurrence of `after`.
fn flip_after(bytes: &mut [u8], after: &str) {
    let at = bytes.windows(after.len()).position(|w| w == after.as_bytes()).unwrap() + after.len();
    bytes[at] ^= 1;
}

#[test]
fn a_built_bundle_verifies_clean() {
    let fixture = Fixture::new();
    let report = fixture.verify();
    assert!(report.ok(), "{:#?}", report.findings);
    let checked = &report.checked;
    assert_eq!(checked.records, 5);
    assert_eq!(checked.batches, 2);
    assert_eq!(checked.signed_batches, 1);
    assert_eq!(checked.leaves, 13);
    assert_eq!(checked.signatures, 2);
    assert!(checked.countersigned);
    // c1 (its accepted state) and c2; the other agreement's and the later one are not counted.
    assert_eq!(checked.contributions, 2);
    assert_eq!(checked.consistency, 1);
    assert_eq!(checked.log_size, Some(14));
    assert!(checked.recomputed);
    assert_eq!(checked.restatements, 1);
}

#[test]
fn pinning_the_deployment_key() {
    let fixture = Fixture::new();
    let report = fixture.verify();
    assert!(report.ok(), "{:#?}", report.findings);
    assert_eq!(report.anchor, Anchor::Anchored { key: fixture.trusted.to_text(), how: "named with --trust".to_owned() });

    // A key that signed nothing here: the deployment's key in the log is a first key the
    // verifier's trust does not reach.
    let stranger = signer(ORIGIN, 9).verifier();
    let report = verify(&fixture.bundle(), &VerifyOptions { trusted: std::slice::from_ref(&stranger), ..VerifyOptions::default() });
    assert!(!report.anchored());
    assert_eq!(whats(&report), ["log.json checkpoint", "signatures.json[0]", "signatures.json"], "{:#?}", report.findings);
    assert!(report.findings[0].found.contains("leaf 0 registers it as a first key"), "{}", report.findings[0]);
}

#[test]
fn a_changed_statement_is_named() {
    let fixture = Fixture::new();
    let mut bundle = fixture.bundle();
    flip_after(&mut bundle.statement, r#""net_payable":""#);
    let report = verify(&bundle, &fixture.trusting());
    assert_names(&report, "statement.json");
    assert_names(&report, "signatures.json[0]");
    assert_names(&report, "totals.net_payable");
}

#[test]
fn a_changed_agreement_is_named() {
    let fixture = Fixture::new();
    let mut bundle = fixture.bundle();
    let mut text = bundle.agreement.into_bytes();
    flip_after(&mut text, r#"customer_service = ["0."#);
    bundle.agreement = String::from_utf8(text).unwrap();
    let report = verify(&bundle, &fixture.trusting());
    assert_names(&report, "agreement.toml");
    assert_names(&report, "statement.json agreement.digest");
}

#[test]
fn a_changed_comment_in_the_agreement_is_named() {
    let fixture = Fixture::new();
    let mut bundle = fixture.bundle();
    // Whitespace changes nothing the agreement means, but the text is not the one registered.
    bundle.agreement = bundle.agreement.replacen("version = 2", "version  = 2", 1);
    let report = verify(&bundle, &fixture.trusting());
    assert_names(&report, "agreement.toml");
    assert!(report.findings.iter().all(|f| f.what == "agreement.toml"), "only the text differs: {:?}", report.findings);
}

#[test]
fn a_changed_record_is_named() {
    let fixture = Fixture::new();
    let mut bundle = fixture.bundle();
    flip_after(&mut bundle.records, r#""revenue":""#);
    let report = verify(&bundle, &fixture.trusting());
    // r-1's digest is in no batch now, and its line's amount changes.
    assert_names(&report, "records.jsonl:1");
    assert_names(&report, "line 1 (m-70b customer_service us)");
    assert_names(&report, "inputs.usage_digest");
    assert_eq!(report.checked.records, 4);
}

#[test]
fn a_broken_lineage_is_named() {
    let fixture = Fixture::new();
    let mut bundle = fixture.bundle();
    bundle.models = br#"[{"id": "m-70b", "derived_from": "m-70b"}]"#.to_vec();
    let report = verify(&bundle, &fixture.trusting());
    assert_names(&report, "models.json");
    assert!(report.findings.iter().any(|f| f.what == "models.json" && f.found.contains("derives from itself")), "{report:?}");
}

#[test]
fn changed_aliases_are_named() {
    let fixture = Fixture::new();
    let mut bundle = fixture.bundle();
    bundle.aliases[0] ^= 1;
    let report = verify(&bundle, &fixture.trusting());
    assert_names(&report, "aliases.json");

    // A valid alias to another model moves r-2 into a line of its own.
    let mut bundle = fixture.bundle();
    flip_after(&mut bundle.aliases, r#""nw-llama-70b":"m-"#);
    let report = verify(&bundle, &fixture.trusting());
    assert_names(&report, "line (m-60b customer_service us)");
    assert_names(&report, "line 1 (m-70b customer_service us) records");
}

#[test]
fn a_changed_proof_hash_is_named() {
    let mut fixture = Fixture::new();
    let (_, proof) = fixture.listed.iter_mut().find(|(i, _)| *i == BATCH_B).unwrap();
    proof[0][0] ^= 1;
    let report = fixture.verify();
    assert_eq!(whats(&report), ["log.json leaf 8 (usage_batch)"], "{:#?}", report.findings);
    assert!(report.findings[0].expected.contains("inclusion proof"));
}

#[test]
fn a_changed_checkpoint_is_named() {
    let mut fixture = Fixture::new();
    let mut note = fixture.checkpoint.clone().into_bytes();
    flip_after(&mut note, "log.example\n");
    fixture.checkpoint = String::from_utf8(note).unwrap();
    let report = fixture.verify();
    assert_names(&report, "log.json checkpoint");
    // Without a checkpoint no proof can be checked, and nothing else is wrong.
    assert_eq!(whats(&report), ["log.json checkpoint"], "{:#?}", report.findings);
    assert_eq!(report.checked.leaves, 0);
}

#[test]
fn a_changed_signature_is_named() {
    let mut fixture = Fixture::new();
    fixture.signatures[0].signature[0] ^= 1;
    let report = fixture.verify();
    assert_eq!(whats(&report), ["signatures.json[0]", "signatures.json"], "{:#?}", report.findings);
    assert!(report.checked.countersigned);

    // A host signature alone is not enough.
    let mut fixture = Fixture::new();
    fixture.signatures.remove(0);
    let report = fixture.verify();
    assert_eq!(whats(&report), ["signatures.json"], "{:#?}", report.findings);
}

#[test]
fn a_changed_batch_file_is_named() {
    let mut fixture = Fixture::new();
    // The second digest of the second batch.
    fixture.batches[1].1[32] ^= 1;
    let report = fixture.verify();
    assert_names(&report, "batches/8.digests");
    // The record of that digest is now in no batch.
    assert_names(&report, "records.jsonl:");

    let mut fixture = Fixture::new();
    fixture.batches.remove(0);
    let report = fixture.verify();
    assert_names(&report, "log.json leaf 3 (usage_batch)");
    assert_names(&report, "records.jsonl:1");
}

#[test]
fn a_changed_batch_signature_is_named() {
    let mut fixture = Fixture::new();
    let leaf = &mut fixture.leaves[usize::try_from(BATCH_B).unwrap()];
    let mut value: Value = serde_json::from_slice(leaf).unwrap();
    value["signed"]["key"] = json!(fixture.deployment.verifier().to_text());
    *leaf = revshare_core::canonical::to_canonical(&value).unwrap();
    let report = fixture.verify();
    // The leaf no longer has its logged hash, and the signature is not by a host key.
    assert_names(&report, "log.json leaf 8 (usage_batch)");
    assert_names(&report, "log.json leaf 8 (usage_batch) signed");
}

#[test]
fn changed_keys_are_named() {
    let mut fixture = Fixture::new();
    let mut text = fixture.host.verifier().to_text().into_bytes();
    flip_after(&mut text, "northwind+");
    fixture.keys["host"][0] = json!(String::from_utf8(text).unwrap());
    let report = fixture.verify();
    assert_names(&report, "keys.json host[0]");
    // The host's countersignature is by a key not in keys.json now.
    assert_names(&report, "signatures.json[1]");

    let mut fixture = Fixture::new();
    let mut text = fixture.deployment.verifier().to_text().into_bytes();
    flip_after(&mut text, "log.example+");
    fixture.keys["deployment"][0] = json!(String::from_utf8(text).unwrap());
    // Trusting the key, the checkpoint still opens; checked against the bundle's keys only, it
    // has no key left to open with.
    let report = fixture.verify();
    assert_names(&report, "keys.json deployment[0]");
    assert_names(&report, "keys.json deployment");
    let report = verify(&fixture.bundle(), &VerifyOptions::default());
    assert_names(&report, "log.json checkpoint");

    // A key that parses but was never logged.
    let mut fixture = Fixture::new();
    fixture.keys["host"] = json!([fixture.host.verifier().to_text(), signer("northwind", 7).verifier().to_text()]);
    let report = fixture.verify();
    assert_eq!(whats(&report), ["keys.json host[1]"], "{:#?}", report.findings);
}

#[test]
fn records_out_of_order_are_named() {
    let fixture = Fixture::new();
    let mut bundle = fixture.bundle();
    let mut lines: Vec<&[u8]> = bundle.records.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    lines.swap(1, 2);
    let records = lines.join(&b'\n');
    bundle.records = records;
    // Their salts go with them.
    let salt = transparency::RECORD_SALT_BYTES;
    let (left, right) = bundle.salts.split_at_mut(2 * salt);
    left[salt..].swap_with_slice(&mut right[..salt]);
    let report = verify(&bundle, &fixture.trusting());
    assert_eq!(whats(&report), ["records.jsonl:3"], "{:#?}", report.findings);

    // Lines that moved without their salts are in no batch.
    let mut moved = bundle.clone();
    moved.salts = fixture.salts.clone();
    let report = verify(&moved, &fixture.trusting());
    assert_eq!(whats(&report), ["records.jsonl:2", "records.jsonl:3", "records.jsonl:3"], "{:#?}", report.findings);
    assert_eq!(report.findings[0].found, "a record in no batch");

    // A record sent twice is a resend the bundle must not hold.
    let mut bundle = fixture.bundle();
    let first = bundle.records.split(|&b| b == b'\n').next().unwrap().to_vec();
    bundle.records.extend_from_slice(&first);
    bundle.records.push(b'\n');
    bundle.salts.extend_from_slice(&fixture.salts[..transparency::RECORD_SALT_BYTES]);
    let report = verify(&bundle, &fixture.trusting());
    assert_names(&report, "records.jsonl:6");
    assert_names(&report, "inputs.records");
}

#[test]
fn a_wrong_amount_signed_and_logged_is_found_by_recomputation() {
    let fixture = Fixture::build(&RECORDS.iter().map(|l| parse_json_line(l.as_bytes()).unwrap()).collect::<Vec<_>>(), |s| {
        s.lines[0].amount -= 1;
    });
    let report = fixture.verify();
    let expected = Fixture::new();
    let right: Value = serde_json::from_slice(&expected.statement).unwrap();
    let amount = right["lines"][0]["amount"].as_str().unwrap().to_owned();
    let wrong: Value = serde_json::from_slice(&fixture.statement).unwrap();
    let found = wrong["lines"][0]["amount"].as_str().unwrap().to_owned();
    assert_eq!(
        report.findings,
        [Finding {
            what: "line 1 (m-70b customer_service us) amount".to_owned(),
            expected: format!("{amount} (recomputed)"),
            found: format!("{found} (statement)"),
        }]
    );
    assert_eq!(
        report.findings[0].to_string(),
        format!("line 1 (m-70b customer_service us) amount: expected {amount} (recomputed), found {found} (statement)")
    );
    assert!(!report.checked.recomputed);
}

#[test]
fn a_restatement_must_be_its_months_difference() {
    let records: Vec<UsageRecord<'_>> = RECORDS.iter().map(|l| parse_json_line(l.as_bytes()).unwrap()).collect();
    let fixture = Fixture::new();
    assert_eq!(fixture.verify().checked.restatements, 1);
    let right: Value = serde_json::from_slice(&fixture.statement).unwrap();
    let right = right["adjustments"][0]["amount"].as_str().unwrap().to_owned();
    let what = "statement.json adjustments[0] (2026-09)";

    // Another amount, its totals following from it, signed and logged by the deployment: the
    // recomputation agrees with the totals, but not the restated month.
    let fixture = Fixture::build(&records, |s| {
        s.adjustments[0].amount = -1234;
        s.totals.adjustments = -1234;
        s.totals.net_payable = s.totals.usage_total - s.totals.host_credit - 1234;
    });
    let report = fixture.verify();
    assert_eq!(
        report.findings,
        [Finding {
            what: format!("{what} amount"),
            expected: format!("{right} (restated/2026-09: after.json's usage less before.json's)"),
            found: "-12.34".to_owned(),
        }]
    );
    assert_eq!(report.checked.restatements, 0);

    // Totals must follow from the amount too.
    let fixture = Fixture::build(&records, |s| s.adjustments[0].amount = -1234);
    assert_eq!(whats(&fixture.verify()), ["totals.adjustments", "totals.net_payable", &format!("{what} amount")]);

    // The restated month left out: the adjustment has nothing to be checked against, and the
    // month's leaves are there for nothing.
    let fixture = Fixture::new();
    let mut bundle = fixture.bundle();
    bundle.restated.clear();
    let report = verify(&bundle, &fixture.trusting());
    let (before_leaf, after_leaf) =
        (format!("log.json leaf {SEPTEMBER_BEFORE} (statement)"), format!("log.json leaf {SEPTEMBER_AFTER} (statement)"));
    assert_eq!(whats(&report), [what, &before_leaf, &after_leaf], "{:#?}", report.findings);
    assert_eq!(report.findings[0].expected, "the statements it compares, in restated/2026-09/before.json and after.json");

    // The two statements swapped: the later is not the restatement logged after the earlier.
    let mut bundle = fixture.bundle();
    let month = &mut bundle.restated[0];
    std::mem::swap(&mut month.before, &mut month.after);
    let report = verify(&bundle, &fixture.trusting());
    assert_eq!(whats(&report), [format!("restated/2026-09/after.json ({before_leaf})")], "{:#?}", report.findings);

    // A statement the log does not hold (September's restated usage made larger): named, and
    // the leaf it should have matched is unused.
    let mut bundle = fixture.bundle();
    let mut after = Statement::from_canonical(&bundle.restated[0].after).unwrap();
    after.totals.usage_total += 100;
    bundle.restated[0].after = after.to_canonical().unwrap();
    let report = verify(&bundle, &fixture.trusting());
    assert_eq!(whats(&report), ["restated/2026-09/after.json", &after_leaf], "{:#?}", report.findings);
    assert!(report.findings[0].found.ends_with("in no statement leaf of log.json"), "{}", report.findings[0]);

    // A month the statement does not restate: named.
    let mut bundle = fixture.bundle();
    bundle.restated.push(RestatedMonth { period: "2026-08".to_owned(), ..bundle.restated[0].clone() });
    let report = verify(&bundle, &fixture.trusting());
    assert_eq!(whats(&report), ["restated"], "{:#?}", report.findings);
    assert_eq!(report.findings[0].found, "restated/2026-08/");
}

#[test]
fn since_an_earlier_checkpoint() {
    let fixture = Fixture::new();
    let bundle = fixture.bundle();
    let report = verify(&bundle, &VerifyOptions { since: Some(&fixture.earlier), ..VerifyOptions::default() });
    assert!(report.ok(), "{:#?}", report.findings);
    // The bundle's own checkpoint is trivially consistent with itself.
    let report = verify(&bundle, &VerifyOptions { since: Some(&fixture.checkpoint), ..VerifyOptions::default() });
    assert!(report.ok(), "{:#?}", report.findings);

    // A checkpoint of a size the bundle has no proof from.
    let mut cells = MemoryCells::from_leaves(&hashed(&fixture.leaves[..4]));
    let four = checkpoint_note(&fixture.deployment, &cells);
    let report = verify(&bundle, &VerifyOptions { since: Some(&four), ..VerifyOptions::default() });
    assert_eq!(whats(&report)[0], "log.json consistency", "{:#?}", report.findings);
    assert!(report.findings[0].found.starts_with("no consistency proof from size 4 in the bundle; fetch one"), "{}", report.findings[0]);
    assert!(!report.anchored(), "an unproven kept checkpoint anchors nothing");

    // A checkpoint of a log that was rewritten: same size as the earlier one, another leaf.
    cells.push(hashed(&fixture.leaves[..5])[4]);
    cells.push(leaf_hash(b"{\"type\":\"contribution\",\"rewritten\":true}"));
    assert_eq!(cells.size(), EARLIER);
    let rewritten = checkpoint_note(&fixture.deployment, &cells);
    let report = verify(&bundle, &VerifyOptions { since: Some(&rewritten), ..VerifyOptions::default() });
    assert_eq!(whats(&report)[0], "since checkpoint", "{:#?}", report.findings);
    assert!(report.findings[0].found.contains("does not extend"), "{}", report.findings[0]);

    // A since checkpoint signed by a key that is not the deployment's.
    let stranger = signer(ORIGIN, 9);
    let foreign = checkpoint_note(&stranger, &cells);
    let report = verify(&bundle, &VerifyOptions { since: Some(&foreign), ..VerifyOptions::default() });
    assert_eq!(whats(&report)[0], "since checkpoint", "{:#?}", report.findings);
    assert!(!report.anchored());
}

#[test]
fn a_bad_consistency_proof_in_the_bundle_is_named() {
    let mut fixture = Fixture::new();
    fixture.consistency[0][31] ^= 1;
    let report = verify(&fixture.bundle(), &VerifyOptions { since: Some(&fixture.earlier), ..VerifyOptions::default() });
    assert_names(&report, "log.json consistency[0]");
    assert_names(&report, "since checkpoint");
}

#[test]
fn missing_leaves_are_named() {
    let mut fixture = Fixture::new();
    fixture.listed.retain(|(i, _)| *i != STATEMENT_LEAF && *i != 2);
    let report = fixture.verify();
    let findings: Vec<String> = report.findings.iter().map(Finding::to_string).collect();
    assert!(findings.contains(&"log.json: expected the statement's leaf (a statement of 2026-10), found none".to_owned()), "{findings:#?}");
    assert!(findings.contains(&"log.json: expected exactly one agreement leaf, found none".to_owned()), "{findings:#?}");
    // The host key's leaf cannot be matched to the agreement's host without the agreement leaf,
    // but it is still found.
    assert!(!whats(&report).contains(&"keys.json host[0]"), "{findings:#?}");
}

#[test]
fn many_bad_records_are_listed_up_to_a_limit() {
    let fixture = Fixture::new();
    let mut bundle = fixture.bundle();
    bundle.records = b"{}\n".repeat(150);
    let report = verify(&bundle, &fixture.trusting());
    let records = report.findings.iter().filter(|f| f.what.starts_with("records.jsonl:")).count();
    assert_eq!(records, revshare_core::bundle::MAX_FINDINGS_PER_CATEGORY);
    let last = report.findings.iter().find(|f| f.what == "records.jsonl").unwrap();
    assert!(last.found.starts_with("50 more problems"), "{last}");
}

#[test]
fn every_category_of_finding_is_capped() {
    // 150 bad keys and 150 bad log leaves: each category lists 100 and counts the rest.
    let mut fixture = Fixture::new();
    fixture.keys["host"] = json!(vec!["not a key"; 150]);
    let mut bundle = fixture.bundle();
    let mut log: Value = serde_json::from_slice(&bundle.log).unwrap();
    log["leaves"].as_array_mut().unwrap().extend(std::iter::repeat_n(json!({"index": "x"}), 150));
    bundle.log = serde_json::to_vec(&log).unwrap();
    let report = verify(&bundle, &fixture.trusting());
    let max = revshare_core::bundle::MAX_FINDINGS_PER_CATEGORY;
    for category in ["keys.json", "log.json"] {
        let listed = report.findings.iter().filter(|f| f.what.starts_with(category) && !f.found.contains("more problems")).count();
        assert_eq!(listed, max, "{category}");
        let rest = report.findings.iter().find(|f| f.what == category && f.found.contains("more problems"));
        // keys.json: the 150 keys; log.json: the 150 leaves, and the agreement and statement leaves
        // that cannot be matched as the only ones of their kind are still found.
        assert!(
            rest.is_some_and(|f| f.found.ends_with(&format!("more problems, not listed (the first {max} are)"))),
            "{category}: {rest:?}"
        );
        let more: usize = rest.unwrap().found.split(' ').next().unwrap().parse().unwrap();
        assert!(more >= 150 - max, "{category}: {more}");
    }
}

#[test]
fn untrusted_text_is_escaped_and_shortened() {
    // A record id that would clear a terminal and print a green "verified", and a very long one.
    let fixture = Fixture::new();
    let mut bundle = fixture.bundle();
    let clearing = concat!(r#"{"id":"\u001b[2J\u001b[1;32m verified \u202e","host":"northwind"}"#, "\n");
    let long = format!("{{\"id\":\"{}\"}}\n", "x".repeat(5000));
    bundle.records = format!("{clearing}{long}").into_bytes();
    let report = verify(&bundle, &fixture.trusting());
    assert!(!report.ok());
    for finding in &report.findings {
        let text = finding.to_string();
        assert!(!text.contains(['\u{1b}', '\u{202e}']), "raw control text in {text:?}");
        for part in [&finding.what, &finding.expected, &finding.found] {
            assert!(part.chars().count() <= revshare_core::bundle::MAX_FINDING_CHARS + 1, "{part:?}");
        }
    }
    let first = report.findings.iter().find(|f| f.what == "records.jsonl:1").expect("a finding on line 1");
    assert!(first.found.contains("\\u{1b}[2J") || first.expected.contains("\\u{1b}[2J"), "{first:?}");
}

#[test]
fn a_secret_key_in_keys_json_is_refused_without_repeating_it() {
    // keys.json never needs secrets: a signer key there is refused, and not repeated.
    let mut fixture = Fixture::new();
    fixture.keys["host"][0] = json!(fixture.host.to_text());
    let report = fixture.verify();
    let finding = report.findings.iter().find(|f| f.what == "keys.json host[0]").unwrap();
    assert!(!finding.found.contains(&fixture.host.to_text()), "{finding}");
    assert!(VerifierKey::parse(&fixture.host.verifier().to_text()).is_ok());
}

/// Records of equal length: `n` of them, in canonical form (`p-00000000` …).
fn equal_length_records(n: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"p-{i:08}","host":"northwind","model":"m-70b","use_case":"{}","region":"us","time":"2026-10-{:02}T{:02}:00:00Z","requests":{},"input_tokens":{},"output_tokens":{},"revenue":"{}.{}{}","currency":"USD"}}"#,
                if i % 2 == 0 { "search" } else { "coding" },
                1 + i % 28,
                10 + i % 14,
                1000 + i % 9000,
                100_000 + i % 900_000,
                10_000 + i % 90_000,
                1 + i % 9,
                i / 9 % 10,
                1 + i / 90 % 9
            )
        })
        .collect()
}

#[test]
fn a_bundle_read_in_parts() {
    // Enough records for records.jsonl to be read in two parts.
    let lines = equal_length_records(40_000);
    let sent: Vec<UsageRecord<'_>> = lines.iter().map(|l| parse_json_line(l.as_bytes()).unwrap()).collect();
    let fixture = Fixture::build(&sent, |_| {});
    let bundle = fixture.bundle();
    let report = verify(&bundle, &fixture.trusting());
    assert!(report.ok(), "{:#?}", report.findings);
    assert_eq!(report.checked.records, 40_000);
    assert!(report.checked.recomputed);

    // Where the second part starts, by the rule records.jsonl is cut by.
    let len = bundle.records.len();
    assert_eq!(len / revshare_core::bundle::PART_BYTES, 2, "the test needs two parts");
    let line_len = bundle.records.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(len % line_len, 0, "the lines must all have one length");
    let cut = len / 2 + bundle.records[len / 2..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let first_part_lines = cut / line_len;

    // Swap the last line of the first part with the first line of the second: the order is
    // broken across the parts, at the second part's first line.
    let mut swapped = bundle.clone();
    let (a, b) = ((first_part_lines - 1) * line_len, first_part_lines * line_len);
    let (left, right) = swapped.records.split_at_mut(b);
    left[a..].swap_with_slice(&mut right[..line_len]);
    // Their salts go with them.
    let salt = transparency::RECORD_SALT_BYTES;
    let (left, right) = swapped.salts.split_at_mut(first_part_lines * salt);
    left[(first_part_lines - 1) * salt..].swap_with_slice(&mut right[..salt]);
    let report = verify(&swapped, &fixture.trusting());
    assert_eq!(whats(&report), [format!("records.jsonl:{}", first_part_lines + 1)], "{:#?}", report.findings);
    assert_eq!(report.checked.records, 39_999);

    // A bad line in the second part is named by its line in the whole file.
    let mut broken = bundle.clone();
    let at = (39_000 * line_len) + 2;
    broken.records[at] = b'X';
    let report = verify(&broken, &fixture.trusting());
    assert_names(&report, "records.jsonl:39001");
}

// ---------------------------------------------------------------------------------------------
// Trust anchors (SPEC §7): nothing the bundle brings stands in for what the verifier holds.

impl Fixture {
    /// The log extended by `extra` leaves, as a forger (or an honest rotation) would: every leaf
    /// listed with its proof at the new size, the checkpoint signed by `signer`, and the old
    /// checkpoint carried with its consistency proof to the new one. Returns the old checkpoint.
    fn extend(&mut self, extra: Vec<Vec<u8>>, signer: &SignerKey) -> String {
        let old = std::mem::take(&mut self.checkpoint);
        let old_size = u64::try_from(self.leaves.len()).unwrap();
        self.leaves.extend(extra);
        let mut cells = MemoryCells::from_leaves(&hashed(&self.leaves));
        let size = cells.size();
        self.checkpoint = checkpoint_note(signer, &cells);
        self.listed = (0..size).map(|i| (i, merkle::inclusion_proof(&mut cells, i, size).unwrap())).collect();
        self.consistency = merkle::consistency_proof(&mut cells, old_size, size).unwrap();
        self.earlier = old.clone();
        old
    }

    /// Lists a deployment key in keys.json and signs the statement with it.
    fn sign_as_deployment(&mut self, key: &SignerKey) {
        self.keys["deployment"].as_array_mut().unwrap().push(json!(key.verifier().to_text()));
        let digest = revshare_core::canonical::digest(&self.statement);
        self.signatures.push(Signed { key: key.verifier().to_text(), signature: key.sign(&statement_message(&digest)) });
    }
}

/// A deployment key leaf that rotates `from` to `to`, signed by `by`.
fn rotation_leaf(from: &SignerKey, to: &SignerKey, by: &SignerKey) -> Vec<u8> {
    let new = to.verifier().to_text();
    let endorsement = Signed { key: from.verifier().to_text(), signature: by.sign(&transparency::rotation_message(None, &new)) };
    transparency::key_event(None, &new, KeyOrigin::Rotation(&endorsement)).unwrap()
}

/// The finding on the bundle's checkpoint, which must be there.
#[track_caller]
fn checkpoint_finding(report: &Report) -> &Finding {
    assert!(!report.anchored());
    report
        .findings
        .iter()
        .find(|f| f.what == "log.json checkpoint")
        .unwrap_or_else(|| panic!("no checkpoint finding in {:#?}", report.findings))
}

#[test]
fn a_bundle_checked_only_against_its_own_keys_is_not_anchored() {
    let fixture = Fixture::new();
    let report = verify(&fixture.bundle(), &VerifyOptions::default());
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert_eq!(report.anchor, Anchor::NotAnchored);
    assert!(!report.ok(), "agreeing with itself is not a pass");
    assert!(report.checked.recomputed);
}

#[test]
fn a_self_registered_deployment_key_is_refused() {
    // The forgery of the issue: the genuine log up to a real checkpoint, then a key leaf
    // registering a new "deployment" key, and a checkpoint and statement signature by that key,
    // with a consistency proof from the genuine checkpoint.
    let mut fixture = Fixture::new();
    let forger = signer(ORIGIN, 66);
    let leaf = transparency::key_event(None, &forger.verifier().to_text(), KeyOrigin::Operator).unwrap();
    let genuine = fixture.extend(vec![leaf], &forger);
    fixture.sign_as_deployment(&forger);
    let bundle = fixture.bundle();

    // Kept checkpoint: the key leaf is after it.
    let report = verify(&bundle, &VerifyOptions { since: Some(&genuine), ..VerifyOptions::default() });
    let finding = checkpoint_finding(&report);
    assert!(finding.found.starts_with(&format!("signed by {}", forger.verifier().to_text())), "{finding}");
    assert!(finding.found.contains("leaf 14 registers it as a first key"), "{finding}");
    // A trusted key: the forger's key is no rotation of it.
    let report = verify(&bundle, &fixture.trusting());
    assert!(checkpoint_finding(&report).found.contains("leaf 14 registers it as a first key"), "{:#?}", report.findings);
    // Without either, the forgery agrees with itself, and that is all that is said for it.
    let report = verify(&bundle, &VerifyOptions::default());
    assert!(report.findings.is_empty() && !report.ok(), "{:#?}", report.findings);
}

#[test]
fn a_rotation_not_signed_by_its_predecessor_is_refused() {
    let mut fixture = Fixture::new();
    let forger = signer(ORIGIN, 66);
    // Names the genuine key as the one replaced, but signs the rotation with the new key itself.
    let leaf = rotation_leaf(&fixture.deployment, &forger, &forger);
    fixture.extend(vec![leaf], &forger);
    fixture.sign_as_deployment(&forger);
    let report = fixture.verify();
    let finding = checkpoint_finding(&report);
    assert!(finding.found.contains("its signature does not verify with that key"), "{finding}");

    // A rotation from a key nobody trusts: the chain does not reach it.
    let mut fixture = Fixture::new();
    let (other, forger) = (signer(ORIGIN, 65), signer(ORIGIN, 66));
    fixture.extend(vec![rotation_leaf(&other, &forger, &other)], &forger);
    fixture.sign_as_deployment(&forger);
    let report = fixture.verify();
    assert!(checkpoint_finding(&report).found.contains("a key the verifier's trust does not reach"), "{:#?}", report.findings);
}

#[test]
fn a_chain_of_signed_rotations_is_followed() {
    let mut fixture = Fixture::new();
    let (second, third) = (signer(ORIGIN, 21), signer(ORIGIN, 22));
    let leaves = vec![rotation_leaf(&fixture.deployment, &second, &fixture.deployment), rotation_leaf(&second, &third, &second)];
    let genuine = fixture.extend(leaves, &third);
    for key in [&second, &third] {
        fixture.keys["deployment"].as_array_mut().unwrap().push(json!(key.verifier().to_text()));
    }
    let report = fixture.verify();
    assert!(report.ok(), "{:#?}", report.findings);
    let how = format!("rotated to at leaf 15, signed by {}", second.verifier().to_text());
    assert_eq!(report.anchor, Anchor::Anchored { key: third.verifier().to_text(), how });
    // From a kept checkpoint: the first key is in the log before it, and the chain follows.
    let report = verify(&fixture.bundle(), &VerifyOptions { since: Some(&genuine), ..VerifyOptions::default() });
    assert!(report.ok(), "{:#?}", report.findings);
    // Trust follows rotations forward only: trusting the last key anchors the checkpoint, but the
    // statement, signed before the rotations, is by a key that trust does not reach.
    let third_public = third.verifier();
    let report = verify(&fixture.bundle(), &VerifyOptions { trusted: std::slice::from_ref(&third_public), ..VerifyOptions::default() });
    assert!(report.anchored());
    assert_eq!(whats(&report), ["signatures.json[0]", "signatures.json"], "{:#?}", report.findings);
}

#[test]
fn a_checkpoint_of_another_log_or_a_split_view_anchors_nothing() {
    let fixture = Fixture::new();
    let bundle = fixture.bundle();
    let cells = MemoryCells::from_leaves(&hashed(&fixture.leaves));
    // Another log's checkpoint, signed by the same key.
    let body = Checkpoint { origin: "other.example".to_owned(), size: cells.size(), root: cells.root(), extensions: Vec::new() }.body();
    let other = sign_note(&body, &[&fixture.deployment]).unwrap();
    let report = verify(&bundle, &VerifyOptions { since: Some(&other), ..VerifyOptions::default() });
    assert_eq!(whats(&report)[0], "since checkpoint origin", "{:#?}", report.findings);
    checkpoint_finding(&report);
    // A split view: a checkpoint of the same size as the bundle's, over another last leaf.
    let mut leaves: Vec<Hash> = hashed(&fixture.leaves);
    *leaves.last_mut().unwrap() = leaf_hash(b"{\"type\":\"journal_entry\",\"other\":true}");
    let split = checkpoint_note(&fixture.deployment, &MemoryCells::from_leaves(&leaves));
    let report = verify(&bundle, &VerifyOptions { since: Some(&split), ..VerifyOptions::default() });
    assert_eq!(whats(&report)[0], "since checkpoint", "{:#?}", report.findings);
    assert!(report.findings[0].expected.contains("at the same size 14"), "{}", report.findings[0]);
    checkpoint_finding(&report);
}

#[test]
fn swapped_keys_are_named() {
    let mut fixture = Fixture::new();
    fixture.keys = json!({ "deployment": [fixture.host.verifier().to_text()], "host": [fixture.deployment.verifier().to_text()] });
    let report = fixture.verify();
    assert!(!report.ok());
    assert_names(&report, "keys.json deployment[0]");
    assert_names(&report, "keys.json host[0]");
}

#[test]
fn a_kept_checkpoint_with_a_fetched_consistency_proof() {
    let fixture = Fixture::new();
    let bundle = fixture.bundle();
    let mut cells = MemoryCells::from_leaves(&hashed(&fixture.leaves));
    let size = cells.size();
    let four = checkpoint_note(&fixture.deployment, &MemoryCells::from_leaves(&hashed(&fixture.leaves[..4])));
    let proof = |from: u64, to: u64, cells: &mut MemoryCells| {
        let hashes: Vec<String> = merkle::consistency_proof(cells, from, to).unwrap().iter().map(|h| b64(h)).collect();
        let root = |n: u64| b64(&MemoryCells::from_leaves(&hashed(&fixture.leaves[..usize::try_from(n).unwrap()])).root());
        json!({ "from": from, "to": to, "from_root": root(from), "to_root": root(to), "consistency_proof": hashes }).to_string()
    };
    // What `revshare log consistency --from 4 --to 12` prints.
    let fetched = proof(4, size, &mut cells);
    let report = verify(&bundle, &VerifyOptions { since: Some(&four), consistency: Some(&fetched), ..VerifyOptions::default() });
    assert!(report.ok(), "{:#?}", report.findings);
    // A proof to another size is named, and anchors nothing.
    let wrong = proof(4, size - 1, &mut cells);
    let report = verify(&bundle, &VerifyOptions { since: Some(&four), consistency: Some(&wrong), ..VerifyOptions::default() });
    assert_eq!(whats(&report)[0], "--consistency to", "{:#?}", report.findings);
    checkpoint_finding(&report);
}

#[test]
fn host_keys_follow_their_chain() {
    let deployment = signer(ORIGIN, 1);
    // A second host key that no rotation signed (the operator registering a key of its own for
    // the host) is named.
    let mut fixture = Fixture::new();
    let stranger = signer("northwind", 40);
    let leaf = transparency::key_event(Some("northwind"), &stranger.verifier().to_text(), KeyOrigin::Operator).unwrap();
    fixture.extend(vec![leaf], &deployment);
    let report = fixture.verify();
    let finding = report.findings.iter().find(|f| f.what == "log.json leaf 14 (key)").expect("the unsigned key is named");
    assert_eq!(finding.found, "a second first key");
    assert!(finding.expected.contains("signed by the key it replaces"), "{finding}");

    // A rotation signed by the host's key is followed.
    let mut fixture = Fixture::new();
    let next = signer("northwind", 41);
    let message = transparency::rotation_message(Some("northwind"), &next.verifier().to_text());
    let endorsement = Signed { key: fixture.host.verifier().to_text(), signature: fixture.host.sign(&message) };
    let leaf = transparency::key_event(Some("northwind"), &next.verifier().to_text(), KeyOrigin::Rotation(&endorsement)).unwrap();
    fixture.extend(vec![leaf], &deployment);
    fixture.keys["host"].as_array_mut().unwrap().push(json!(next.verifier().to_text()));
    let report = fixture.verify();
    assert!(report.ok(), "{:#?}", report.findings);

    // The same rotation signed by the new key itself is not.
    let mut fixture = Fixture::new();
    let forged = Signed { key: fixture.host.verifier().to_text(), signature: next.sign(&message) };
    let leaf = transparency::key_event(Some("northwind"), &next.verifier().to_text(), KeyOrigin::Rotation(&forged)).unwrap();
    fixture.extend(vec![leaf], &deployment);
    let report = fixture.verify();
    let finding = report.findings.iter().find(|f| f.what == "log.json leaf 14 (key)").expect("the forged rotation is named");
    assert_eq!(finding.found, "a signature that does not verify with that key");
}

#[test]
fn a_first_host_key_with_a_proof_of_possession_is_checked() {
    let host = signer("northwind", 2);
    let text = host.verifier().to_text();
    let proof = host.sign(&transparency::registration_message("northwind", &text));
    // The fixture's host key, registered by the host itself.
    let mut fixture = Fixture::new();
    fixture.leaves[1] = transparency::key_event(Some("northwind"), &text, KeyOrigin::Possession(&proof)).unwrap();
    let deployment = signer(ORIGIN, 1);
    // The log re-signed over the changed leaf, with no earlier checkpoint to be consistent with.
    let resign = |fixture: &mut Fixture| {
        fixture.extend(Vec::new(), &deployment);
        fixture.earlier = fixture.checkpoint.clone();
        fixture.consistency = Vec::new();
    };
    resign(&mut fixture);
    let report = fixture.verify();
    assert!(report.ok(), "{:#?}", report.findings);
    // A proof made by another key does not verify.
    let other = signer("northwind", 9).sign(&transparency::registration_message("northwind", &text));
    fixture.leaves[1] = transparency::key_event(Some("northwind"), &text, KeyOrigin::Possession(&other)).unwrap();
    resign(&mut fixture);
    let report = fixture.verify();
    let finding = report.findings.iter().find(|f| f.what == "log.json leaf 1 (key)").expect("the bad proof is named");
    assert_eq!(finding.found, "a proof that does not verify");
}
