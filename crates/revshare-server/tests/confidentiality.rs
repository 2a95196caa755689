//! Confidentiality over the real HTTP API (SPEC §7 "the log commits; it does not disclose", §9
//! Access): no answer — status, header or body, bundle file or error message — tells a party
//! anything about an agreement, record, statement, payment, dispute, contribution, key, alias or
//! party it is not entitled to, nor that it exists.
//!
//! The world: two licensors (meridian, aurora), three hosts (nimbus with agreements with both, so
//! one of its usage batches is mixed; stratus with meridian only; cirrus with aurora only), an
//! auditor granted one agreement, an arbiter every agreement names, and the operator; records, a
//! closed month, payments (one posted, one pending), a contribution and disputes in every state for
//! each agreement, keys and aliases; every one of them marked with a distinctive string. Each
//! party's entitlement is written down here, independently of the server's own checks
//! (`auth.rs`): a host its own agreements' things, a licensor its own agreements' things, the
//! auditor its granted agreement's, the arbiter the disputes escalated to it (and so their
//! agreements' ids and statement digests), the operator every party and every grant; a party's
//! record to itself, its counterparties, the auditor and arbiter as above and the operator, its
//! keys to itself (and a host's to the readers of its agreements: bundles carry them, to check
//! its countersignatures).
//!
//! Then every route of `/openapi.json`, and every page of the dashboard (signed in with each
//! token, and signed out), is called with every id of the world (and ids that do not exist) by
//! every token and by none; every write is attempted on others' things; every route of
//! every method is called with a malformed, an unknown and a revoked token (401, nothing
//! changed). Each answer to
//! a token is searched for every marker it must not see — ids, names, amounts, reasons,
//! references, record fields, the bare SHA-256 of every record's and statement's canonical form
//! (hex, base64 and raw), salts, record keys and events of log leaves — except what the request
//! itself sent. Refusals of what exists and of what does not must be the same answer, modulo the
//! id asked for. Every file of every bundle a token can fetch is searched the same way, and a
//! bundle of one agreement must hold nothing of another's records, even from a mixed batch.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use revshare_core::contribution::Contribution;
use revshare_core::dispute::{Actor, ActorRole, State, Transition};
use revshare_core::ids::{AgreementId, ModelId};
use revshare_core::note::SignerKey;
use revshare_core::time::{Instant, Period};
use revshare_core::transparency::{Signed, record_commitment, record_salt, statement_message};
use revshare_core::usage::{UsageRecord, parse_json_line};
use revshare_store::payments::{Payer, payment_entry};
use revshare_store::{IngestMode, Model, Party, Role, Store};
use serde_json::{Value, json};

#[macro_use]
mod common;
use common::*;

api_tests!(no_answer_discloses_what_a_party_is_not_entitled_to, random_calls_never_leak_and_reads_never_write);

// ---------------------------------------------------------------------------------------------
// The world

const LICENSORS: [&str; 2] = ["meridian", "aurora"];
const HOSTS: [&str; 3] = ["nimbus", "stratus", "cirrus"];
const AUDITOR: &str = "ledgerwise";
const ARBITER: &str = "judge";
/// The operator's token (it is no party).
const OPERATOR: &str = revshare_store::OPERATOR;
/// Who calls: each party's token, the operator's, and no token at all.
const CALLERS: [&str; 9] = ["meridian", "aurora", "nimbus", "stratus", "cirrus", AUDITOR, ARBITER, OPERATOR, NONE];
const NONE: &str = "(no token)";
/// The one agreement the operator granted the auditor.
const GRANTED: &str = "mer-two";

/// The dashboard's pages (`revshare_server::dashboard`), each with its parameters (name, where).
/// `format` (`csv`, or left out) asks for a page's CSV download.
const DASHBOARD: [(&str, &[(&str, &str)]); 9] = [
    ("/", &[]),
    ("/statements", &[("format", "query")]),
    ("/statements/{agreement}/{period}", &[("agreement", "path"), ("period", "path"), ("format", "query")]),
    ("/statements/{agreement}/{period}/bundle", &[("agreement", "path"), ("period", "path")]),
    ("/usage", &[("agreement", "query"), ("format", "query")]),
    ("/disputes", &[]),
    ("/disputes/{id}", &[("id", "path")]),
    ("/payments", &[("format", "query")]),
    ("/contributions", &[]),
];

/// Whether a caller is a party (not the operator, not the absence of a token).
fn is_party(caller: &str) -> bool {
    caller != NONE && caller != OPERATOR
}

/// (id, licensor, host, licensed model).
const AGREEMENTS: [(&str, &str, &str, &str); 4] = [
    ("mer-one", "meridian", "nimbus", "mer-small"),
    ("mer-two", "meridian", "stratus", "mer-small"),
    ("aur-one", "aurora", "nimbus", "aur-large"),
    ("aur-two", "aurora", "cirrus", "aur-large"),
];
const NO_AGREEMENT: &str = "mer-nowhere";
const NO_PARTY: &str = "nobody";
const NO_DISPUTE: u64 = 999;

/// Host aliases: (host, alias, model, the record that uses it).
const ALIASES: [(&str, &str, &str, Option<&str>); 4] = [
    ("nimbus", "nimbus-alias-mer", "mer-small", Some("rec-mer-one-2")),
    ("nimbus", "nimbus-alias-aur", "aur-large", Some("rec-aur-one-1")),
    ("nimbus", "nimbus-alias-unused", "mer-small", None),
    ("stratus", "stratus-alias-unused", "mer-small", None),
];

/// The usage batches, each one host's: the records it holds (the first is mixed: meridian's and
/// aurora's records of nimbus).
const BATCHES: [(&str, &[&str]); 5] = [
    ("nimbus", &["rec-mer-one-1", "rec-aur-one-1"]),
    ("nimbus", &["rec-mer-one-2"]),
    ("nimbus", &["rec-aur-one-2"]),
    ("stratus", &["rec-mer-two-1", "rec-mer-two-2"]),
    ("cirrus", &["rec-aur-two-1", "rec-aur-two-2"]),
];

fn october() -> Period {
    Period::parse("2026-10").expect("a month")
}

fn aid(id: &str) -> AgreementId {
    AgreementId::parse(id).expect("an agreement id")
}

fn agreement_toml(id: &str, licensor: &str, host: &str, model: &str) -> String {
    format!(
        r#"# terms-of-{id}: confidential to its parties
id = "{id}"
version = 1
licensor = "{licensor}"
host = "{host}"
currency = "USD"
effective_from = 2026-01-01
effective_to = 2027-01-01
models = ["{model}"]
dispute_window_days = 30
arbiters = ["{ARBITER}"]

[pricing]
basis = "revenue_share"
tier_metric = "tokens"
tier_mode = "graduated"
tier_bounds = []

[pricing.rates]
default = ["0.125"]

[contributions]
pool = "0.02"
points = {{ maintenance = 1, update = 2 }}
"#
    )
}

fn agreement_of(id: &str) -> (&'static str, &'static str, &'static str, &'static str) {
    *AGREEMENTS.iter().find(|a| a.0 == id).unwrap_or_else(|| panic!("no agreement {id} in the world"))
}

/// Record `n` (1 or 2) of an agreement, with its distinctive fields.
fn record_line(agreement: usize, n: usize) -> String {
    let (id, _, host, model) = AGREEMENTS[agreement];
    let record = format!("rec-{id}-{n}");
    let model = ALIASES.iter().find(|a| a.3 == Some(record.as_str())).map_or(model, |a| a.1);
    let use_case = format!("uc_{}", id.replace('-', "_"));
    let revenue = format!("7{agreement}{n}{n}.{}{n}", agreement + 1);
    format!(
        r#"{{"id":"{record}","host":"{host}","model":"{model}","use_case":"{use_case}","region":"rg-{id}","time":"2026-10-0{n}T10:00:00Z","requests":{n}7,"input_tokens":1000,"output_tokens":500,"revenue":"{revenue}","currency":"USD"}}"#
    )
}

fn record(id: &str) -> UsageRecord<'static> {
    let (agreement, n) = AGREEMENTS
        .iter()
        .enumerate()
        .flat_map(|(i, _)| [(i, 1), (i, 2)])
        .find(|(i, n)| format!("rec-{}-{n}", AGREEMENTS[*i].0) == id)
        .unwrap_or_else(|| panic!("no record {id} in the world"));
    parse_json_line(record_line(agreement, n).as_bytes()).expect("a record").into_owned()
}

fn key_of(party: &str) -> SignerKey {
    let seed = seed_of(&format!("key of {party}"));
    SignerKey::from_seed(party, seed).expect("a key")
}

fn at(seconds: i64) -> Instant {
    Instant::from_parts(clock().secs() + seconds, 0)
}

fn transition(state: State, party: &str, role: ActorRole, seconds: i64, reason: &str, amount: Option<i128>) -> Transition {
    let evidence = vec![format!("evidence-{reason}")];
    Transition {
        state,
        actor: Actor { party: party.to_owned(), role },
        at: at(seconds),
        reason: reason.to_owned(),
        amount,
        evidence,
        arbiter: None,
    }
}

/// A dispute's agreement, final state and steps (who, to which state, amount in cents).
type DisputePlan = (&'static str, &'static str, Vec<(&'static str, State, Option<i128>)>);

/// Disputes in every state, by id (from 1): (agreement, final state, transitions as (who, state,
/// amount in cents)).
fn disputes() -> Vec<DisputePlan> {
    vec![
        ("mer-one", "open", vec![("nimbus", State::Open, Some(9101))]),
        ("mer-two", "countered", vec![("stratus", State::Open, Some(9202)), ("meridian", State::Countered, Some(5202))]),
        ("aur-one", "accepted", vec![("nimbus", State::Open, Some(9303)), ("aurora", State::Accepted, Some(9303))]),
        ("aur-two", "rejected", vec![("aurora", State::Open, Some(9404)), ("cirrus", State::Rejected, None)]),
        (
            "mer-one",
            "escalated",
            vec![("nimbus", State::Open, Some(9505)), ("meridian", State::Rejected, None), ("nimbus", State::Escalated, None)],
        ),
        (
            "aur-two",
            "decided",
            vec![
                ("aurora", State::Open, Some(9606)),
                ("cirrus", State::Rejected, None),
                ("aurora", State::Escalated, None),
                (ARBITER, State::Decided, Some(4606)),
            ],
        ),
    ]
}

fn cents(amount: i128) -> String {
    format!("{}.{:02}", amount / 100, amount % 100)
}

/// Registers the world through the store, as the CLI does; returns each caller's token.
fn build(store: &mut dyn Store) -> BTreeMap<&'static str, String> {
    let mut parties: Vec<(&str, Role)> = LICENSORS.iter().map(|l| (*l, Role::Licensor)).collect();
    parties.extend(HOSTS.iter().map(|h| (*h, Role::Host)));
    parties.extend([(AUDITOR, Role::Auditor), (ARBITER, Role::Arbiter)]);
    store.add_key(None, &deployment_key().verifier()).expect("the deployment key");
    let mut tokens = BTreeMap::new();
    for (id, role) in &parties {
        store.add_party(&Party { id: pid(id), name: format!("secret-name-{id}"), role: *role }).expect("a party");
        tokens.insert(*id, add_token(store, id, *role, &format!("token of {id}")));
        if matches!(role, Role::Licensor | Role::Host) {
            store.add_key(Some(&pid(id)), &key_of(id).verifier()).expect("a party's key");
        }
    }
    for (id, owner) in [("mer-small", "meridian"), ("aur-large", "aurora")] {
        store
            .add_model(&Model { id: ModelId::parse(id).expect("a model id"), owner: pid(owner), derived_from: None, registered_by: None })
            .expect("a model");
    }
    for (host, alias, model, _) in ALIASES {
        let (alias, model) = (ModelId::parse(alias).expect("an alias"), ModelId::parse(model).expect("a model"));
        store.add_alias(&pid(host), &alias, &model).expect("an alias");
    }
    for (id, licensor, host, model) in AGREEMENTS {
        store.add_agreement("agreement.toml", &agreement_toml(id, licensor, host, model)).expect("an agreement");
        let contribution = Contribution {
            id: format!("contrib-{id}"),
            party: pid(host),
            kind: "maintenance".to_owned(),
            date: Instant::from_date(2026, 10, 5).expect("a date"),
            description: format!("desc-contrib-{id}"),
            evidence: Some(format!("https://evidence.example/contrib-evidence-{id}")),
            accepted: true,
        };
        store.add_contribution(&aid(id), &contribution).expect("a contribution");
    }
    store.grant(&pid(AUDITOR), &aid(GRANTED)).expect("the auditor's grant");
    tokens.insert(OPERATOR, add_token(store, OPERATOR, Role::Operator, "token of the operator"));
    for (_, records) in BATCHES {
        let records: Vec<UsageRecord<'static>> = records.iter().map(|r| record(r)).collect();
        let report = store.ingest(&records, IngestMode::Atomic, None).expect("a batch");
        assert_eq!(report.accepted, records.len() as u64, "every record of the batch is stored");
    }
    for (i, (id, ..)) in AGREEMENTS.iter().enumerate() {
        revshare_store::close::close_month(store, &aid(id), october(), &deployment_key(), clock()).expect("October closes");
        let agreement = store.agreement(&aid(id), None).expect("the agreement");
        let amount = format!("6{i}0{i}.37");
        let entry = payment_entry(&agreement, &amount, &format!("ref-{id}-1"), Payer::Host).expect("a payment");
        store.post_entry(&entry).expect("the payment is posted");
        // And one the host recorded that the licensor has not confirmed: pending.
        let pending = payment_entry(&agreement, &format!("7{i}0{i}.41"), &format!("pending-ref-{id}"), Payer::Host).expect("a payment");
        let minor = revshare_store::payments::parse_amount(agreement.currency(), &format!("7{i}0{i}.41")).expect("an amount");
        store.record_payment(&pending, Payer::Host, minor).expect("the payment is pending");
    }
    // The host of mer-one (nimbus) countersigns its statement.
    let statement = store.statement(&aid("mer-one"), october()).expect("read").expect("closed");
    let signature = key_of("nimbus").sign(&statement_message(&statement.head.digest));
    store.sign_statement(&statement, &Signed { key: key_of("nimbus").verifier().to_text(), signature }).expect("countersigned");
    let mut seconds = 10;
    for (n, (agreement, end, steps)) in disputes().into_iter().enumerate() {
        let number = n + 1;
        let mut id = None;
        for (who, state, amount) in steps {
            seconds += 10;
            let role = if who == ARBITER {
                ActorRole::Arbiter
            } else if LICENSORS.contains(&who) {
                ActorRole::Licensor
            } else {
                ActorRole::Host
            };
            let reason = format!("reason-{agreement}-d{number}-{state:?}").to_lowercase();
            let step = transition(state, who, role, seconds, &reason, amount);
            let stored = match id {
                None => store.open_dispute(&aid(agreement), october(), None, None, step).expect("a dispute opens"),
                Some(id) => store.dispute_transition(id, step).unwrap_or_else(|e| panic!("dispute {number}, {state:?} by {who}: {e}")),
            };
            id = Some(stored.dispute.id);
        }
        assert_eq!(id, Some(number as u64), "disputes are numbered from 1");
        let stored = store.dispute(number as u64).expect("read").expect("the dispute");
        assert_eq!(stored.effective(clock()).to_json()["state"], end, "dispute {number}");
    }
    tokens
}

// ---------------------------------------------------------------------------------------------
// Entitlements and the secrets they imply

/// What a token may read of an agreement: its parties, and the auditor if it was granted it.
fn readers_of_agreement(id: &str) -> BTreeSet<&'static str> {
    let (_, licensor, host, _) = agreement_of(id);
    let mut readers = BTreeSet::from([licensor, host]);
    if id == GRANTED {
        readers.insert(AUDITOR);
    }
    readers
}

/// Whether an agreement has a dispute escalated to the arbiter (every agreement names it).
fn arbitrated(id: &str) -> bool {
    disputes().iter().any(|(agreement, end, _)| *agreement == id && matches!(*end, "escalated" | "decided"))
}

/// Who may read dispute `number` (from 1): the readers of its agreement, and the arbiter once it
/// is escalated.
fn readers_of_dispute(number: usize) -> BTreeSet<&'static str> {
    let (agreement, end, _) = &disputes()[number - 1];
    let mut readers = readers_of_agreement(agreement);
    if matches!(*end, "escalated" | "decided") {
        readers.insert(ARBITER);
    }
    readers
}

/// Who may read a party's record: itself, its counterparties, the auditor for the parties of
/// its granted agreement, the arbiter for the parties of the disputes escalated to it, and the
/// operator, who registers them all.
fn readers_of_party(party: &str) -> BTreeSet<&'static str> {
    let mut readers = BTreeSet::from([OPERATOR]);
    readers.extend(CALLERS.iter().copied().filter(|c| *c == party));
    for (id, licensor, host, _) in AGREEMENTS {
        if licensor == party {
            readers.insert(host);
        }
        if host == party {
            readers.insert(licensor);
        }
        if licensor == party || host == party {
            if id == GRANTED {
                readers.insert(AUDITOR);
            }
            if arbitrated(id) {
                readers.insert(ARBITER);
            }
        }
    }
    readers
}

/// A marker some callers must never be shown.
struct Secret {
    what: String,
    /// Texts searched in answers as text.
    texts: Vec<String>,
    /// Bytes searched in answers as bytes.
    raw: Vec<Vec<u8>>,
    readers: BTreeSet<&'static str>,
    /// The agreement it belongs to, if any: a bundle of another agreement must not hold it.
    agreement: Option<&'static str>,
}

impl Secret {
    fn text(what: String, text: String, readers: &BTreeSet<&'static str>, agreement: Option<&'static str>) -> Secret {
        Secret { what, texts: vec![text], raw: Vec::new(), readers: readers.clone(), agreement }
    }

    /// Bytes (a digest, a salt, a key): as raw bytes, hex and base64 (standard and URL-safe).
    fn bytes(what: String, bytes: &[u8], readers: &BTreeSet<&'static str>, agreement: Option<&'static str>) -> Secret {
        let texts = vec![hex(bytes), STANDARD_NO_PAD.encode(bytes), URL_SAFE_NO_PAD.encode(bytes)];
        Secret { what, texts, raw: vec![bytes.to_vec()], readers: readers.clone(), agreement }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

fn digest_bytes(digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("a sha256: digest, not {digest}"));
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

/// The world as the suite knows it: every secret and who may see it, and which ids are whose.
struct Knowledge {
    secrets: Vec<Secret>,
    /// Each log leaf's readers.
    leaves: Vec<BTreeSet<&'static str>>,
    /// Each dispute's agreement, by id.
    disputes: BTreeMap<u64, &'static str>,
    /// The mixed batch's leaf.
    mixed_batch: u64,
}

fn learn(store: &mut dyn Store) -> Knowledge {
    let mut secrets = Vec::new();
    let only = |allowed: &[&'static str]| -> BTreeSet<&'static str> { allowed.iter().copied().collect() };
    // Parties: ids of hosts, display names, keys.
    for party in LICENSORS.iter().chain(&HOSTS).chain(&[AUDITOR, ARBITER]) {
        let readers = readers_of_party(party);
        secrets.push(Secret::text(format!("the name of {party}"), format!("secret-name-{party}"), &readers, None));
        if HOSTS.contains(party) {
            secrets.push(Secret::text(format!("host {party}'s id"), (*party).to_owned(), &readers, None));
        }
    }
    let mut key_readers: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for party in LICENSORS.iter().chain(&HOSTS) {
        // A host's key is in the bundles of its agreements, for their readers.
        let mut readers = only(&[party]);
        for (id, _, host, _) in AGREEMENTS {
            if host == *party {
                readers.extend(readers_of_agreement(id));
            }
        }
        let text = key_of(party).verifier().to_text();
        secrets.push(Secret::text(format!("{party}'s key"), text.clone(), &readers, None));
        key_readers.insert(text, readers);
    }
    for (host, alias, _, used_by) in ALIASES {
        let (readers, agreement) = match used_by {
            Some(record) => {
                let agreement =
                    AGREEMENTS.iter().find(|a| record.starts_with(&format!("rec-{}-", a.0))).map(|a| a.0).expect("its agreement");
                let mut readers = readers_of_agreement(agreement);
                readers.insert(host);
                (readers, Some(agreement))
            }
            None => (only(&[host]), None),
        };
        secrets.push(Secret::text(format!("{host}'s alias {alias}"), alias.to_owned(), &readers, agreement));
    }
    // Agreements and everything of theirs.
    let dispute_list = disputes();
    for (index, (id, ..)) in AGREEMENTS.iter().enumerate() {
        let readers = readers_of_agreement(id);
        let own = Some(*id);
        // A dispute names its agreement and statement; the grants list names the agreement.
        let mut named = readers.clone();
        if arbitrated(id) {
            named.insert(ARBITER);
        }
        let mut id_readers = named.clone();
        if *id == GRANTED {
            id_readers.insert(OPERATOR);
        }
        secrets.push(Secret::text(format!("agreement {id}"), (*id).to_owned(), &id_readers, own));
        secrets.push(Secret::text(format!("the terms of {id}"), format!("terms-of-{id}"), &readers, own));
        let agreement = store.agreement(&aid(id), None).expect("the agreement");
        secrets.push(Secret::bytes(format!("the digest of agreement {id}"), &digest_bytes(&agreement.digest()), &readers, own));
        let statement = store.statement(&aid(id), october()).expect("read").expect("closed");
        secrets.push(Secret::bytes(format!("the digest of {id}'s statement"), &digest_bytes(&statement.head.digest), &named, own));
        secrets.push(Secret::bytes(format!("the SHA-256 of {id}'s statement"), &sha256(&statement.canonical), &named, own));
        secrets.push(Secret::text(format!("{id}'s use case"), format!("uc_{}", id.replace('-', "_")), &readers, own));
        secrets.push(Secret::text(format!("{id}'s region"), format!("rg-{id}"), &readers, own));
        for n in 1..=2 {
            let record = record(&format!("rec-{id}-{n}"));
            let what = format!("record {}", record.id);
            secrets.push(Secret::text(what.clone(), record.id.to_string(), &readers, own));
            secrets.push(Secret::text(format!("{what}'s revenue"), record.revenue.to_string(), &readers, own));
            secrets.push(Secret::bytes(format!("the bare digest of {what}"), &record.digest(), &readers, own));
            let mut canonical = Vec::new();
            record.write_canonical(&mut canonical);
            assert_eq!(sha256(&canonical), record.digest(), "a record's digest is the SHA-256 of its canonical form");
        }
        secrets.push(Secret::text(format!("{id}'s contribution"), format!("contrib-{id}"), &readers, own));
        secrets.push(Secret::text(format!("{id}'s contribution's description"), format!("desc-contrib-{id}"), &readers, own));
        secrets.push(Secret::text(format!("{id}'s contribution's evidence"), format!("contrib-evidence-{id}"), &readers, own));
        secrets.push(Secret::text(format!("{id}'s payment reference"), format!("ref-{id}-1"), &readers, own));
        secrets.push(Secret::text(format!("{id}'s payment amount"), format!("6{index}0{index}.37"), &readers, own));
        secrets.push(Secret::text(format!("{id}'s pending payment reference"), format!("pending-ref-{id}"), &readers, own));
        secrets.push(Secret::text(format!("{id}'s pending payment amount"), format!("7{index}0{index}.41"), &readers, own));
        for signed in store.statement_signatures(&statement).expect("signatures") {
            secrets.push(Secret::bytes(format!("a signature of {id}'s statement"), &signed.signature, &readers, own));
        }
        for (n, (agreement, _, steps)) in dispute_list.iter().enumerate() {
            if agreement != id {
                continue;
            }
            let what = format!("dispute {} of {id}", n + 1);
            let readers = readers_of_dispute(n + 1);
            for (_, state, amount) in steps {
                let reason = format!("reason-{agreement}-d{}-{state:?}", n + 1).to_lowercase();
                secrets.push(Secret::text(format!("{what}: evidence"), format!("evidence-{reason}"), &readers, own));
                secrets.push(Secret::text(format!("{what}: a reason"), reason, &readers, own));
                if let Some(amount) = amount {
                    secrets.push(Secret::text(format!("{what}: an amount"), cents(*amount), &readers, own));
                }
            }
        }
    }
    // Batches: their record keys (the host's alone), digests, commitments and record salts.
    let size = store.log_size().expect("the log's size");
    let mut batch_leaves = Vec::new();
    for index in 0..size {
        if store.log_leaf(index).expect("a leaf").kind == "usage_batch" {
            batch_leaves.push(index);
        }
    }
    assert_eq!(batch_leaves.len(), BATCHES.len(), "one leaf per batch");
    let mut leaf_readers: BTreeMap<u64, BTreeSet<&'static str>> = BTreeMap::new();
    for (&leaf, (host, records)) in batch_leaves.iter().zip(BATCHES) {
        let stored = store.usage_batch(leaf).expect("the batch");
        let mut readers = only(&[host]);
        for record_id in records {
            let agreement =
                AGREEMENTS.iter().find(|a| record_id.starts_with(&format!("rec-{}-", a.0))).map(|a| a.0).expect("its agreement");
            readers.extend(readers_of_agreement(agreement));
            let record = record(record_id);
            let salt = record_salt(&stored.record_key, &record.digest());
            let agreement_readers = readers_of_agreement(agreement);
            secrets.push(Secret::bytes(format!("the salt of record {record_id}"), &salt, &agreement_readers, Some(agreement)));
            assert!(stored.commitments.contains(&record_commitment(&salt, &record.digest())), "batch {leaf} commits to {record_id}");
        }
        secrets.push(Secret::bytes(format!("the record key of batch {leaf}"), &stored.record_key, &only(&[host]), None));
        secrets.push(Secret::text(format!("the digest of batch {leaf}"), stored.digest.clone(), &readers, None));
        for (i, commitment) in stored.commitments.iter().enumerate() {
            secrets.push(Secret::bytes(format!("commitment {i} of batch {leaf}"), commitment, &readers, None));
        }
        leaf_readers.insert(leaf, readers);
    }
    // Every leaf: its readers, and its salt and event as secrets for anyone else.
    let mut leaves = Vec::new();
    let all: BTreeSet<&'static str> = CALLERS.iter().copied().filter(|c| *c != NONE).collect();
    for index in 0..size {
        let leaf = store.log_leaf(index).expect("a leaf");
        let event: Value = serde_json::from_slice(&leaf.event).expect("an event");
        let (readers, agreement) = match leaf.kind.as_str() {
            "usage_batch" => (leaf_readers[&index].clone(), None),
            "key" => match event["key"].as_str().and_then(|k| key_readers.get(k)) {
                Some(readers) => (readers.clone(), None),
                None => {
                    assert!(event["party"].is_null(), "a key of the world: {event}");
                    (all.clone(), None)
                }
            },
            "agreement" => {
                let id = event["id"].as_str().expect("an id");
                (readers_of_agreement(id), Some(agreement_of(id).0))
            }
            _ => {
                let id = event["agreement"].as_str().unwrap_or_else(|| panic!("leaf {index} names its agreement: {event}"));
                (readers_of_agreement(id), Some(agreement_of(id).0))
            }
        };
        secrets.push(Secret::bytes(format!("the salt of leaf {index}"), &leaf.salt, &readers, agreement));
        let text = String::from_utf8(leaf.event.clone()).expect("UTF-8");
        secrets.push(Secret {
            what: format!("the event of leaf {index}"),
            texts: vec![text],
            raw: Vec::new(),
            readers: readers.clone(),
            agreement,
        });
        leaves.push(readers);
    }
    let disputes = dispute_list.iter().enumerate().map(|(n, d)| (n as u64 + 1, agreement_of(d.0).0)).collect();
    Knowledge { secrets, leaves, disputes, mixed_batch: batch_leaves[0] }
}

// ---------------------------------------------------------------------------------------------
// Answers, and what they must not hold

/// One call and its answer.
struct Call {
    caller: &'static str,
    method: &'static str,
    /// The route as the OpenAPI document names it.
    route: String,
    path: String,
    body: Vec<u8>,
    reply: Reply,
    /// The ids asked for that the caller may not see (or that do not exist), by parameter.
    hidden: Vec<(&'static str, String)>,
}

impl Call {
    fn describe(&self) -> String {
        format!("{} {} {} (as {})", self.method, self.route, self.path, self.caller)
    }

    /// Status, headers but `date` and `content-length`, body.
    fn answer(&self) -> String {
        let mut out = format!("{}\n", self.reply.status);
        for (name, value) in &self.reply.headers {
            if name != "date" && name != "content-length" {
                let _ = writeln!(out, "{name}: {}", String::from_utf8_lossy(value));
            }
        }
        out.push_str(&String::from_utf8_lossy(&self.reply.bytes));
        out
    }
}

/// The secrets a caller must not see.
fn unseen<'a>(knowledge: &'a Knowledge, caller: &str) -> Vec<&'a Secret> {
    knowledge.secrets.iter().filter(|s| !s.readers.contains(caller)).collect()
}

/// Where `needle` is in `haystack`, as text: the first place, with some context.
fn find_text(haystack: &str, needle: &str) -> Option<String> {
    let at = haystack.find(needle)?;
    let mut start = at.saturating_sub(60);
    while !haystack.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + needle.len() + 60).min(haystack.len());
    while !haystack.is_char_boundary(end) {
        end += 1;
    }
    Some(haystack[start..end].to_owned())
}

/// Every leak of `secrets` in `bytes` (as text, and as raw bytes through its hex form); what
/// the request sent is not a leak.
fn leaks(bytes: &[u8], secrets: &[&Secret], sent: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let hexed = hex(bytes);
    let mut found = Vec::new();
    for secret in secrets {
        for needle in &secret.texts {
            if needle.is_empty() || sent.contains(needle.as_str()) {
                continue;
            }
            if let Some(context) = find_text(&text, needle) {
                found.push(format!("{} (`{needle}`) in: …{context}…", secret.what));
            }
        }
        for raw in &secret.raw {
            let needle = hex(raw);
            if hexed.match_indices(&needle).any(|(i, _)| i % 2 == 0) {
                found.push(format!("{} (its raw bytes)", secret.what));
            }
        }
    }
    found
}

/// Replaces whole occurrences of `id` (not inside a longer id or number) with `{name}`.
fn mask(text: &str, id: &str, name: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(id) {
        let before = rest[..at].chars().last().or_else(|| out.chars().last());
        let after = rest[at + id.len()..].chars().next();
        out.push_str(&rest[..at]);
        if word(before) || word(after) {
            out.push_str(id);
        } else {
            let _ = write!(out, "{{{name}}}");
        }
        rest = &rest[at + id.len()..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// The calls

/// The values each parameter is filled with: every id of the world and some that do not exist.
fn values(name: &str, log_size: u64) -> Vec<String> {
    let mut ids: Vec<String> = match name {
        "agreement" => AGREEMENTS.iter().map(|a| a.0.to_owned()).chain([NO_AGREEMENT.to_owned()]).collect(),
        "period" => vec!["2026-10".to_owned(), "2026-09".to_owned()],
        "party" => CALLERS.iter().filter(|c| is_party(c)).map(|c| (*c).to_owned()).chain([NO_PARTY.to_owned()]).collect(),
        "model" => vec!["mer-small".to_owned(), "aur-large".to_owned(), "m-nowhere".to_owned()],
        "id" => (1..=disputes().len() as u64).chain([NO_DISPUTE]).map(|n| n.to_string()).collect(),
        "leaf" => (0..log_size).map(|n| n.to_string()).collect(),
        "from" => vec!["1".to_owned(), (log_size / 2).to_string(), log_size.to_string()],
        "sequence" => vec!["1".to_owned()],
        "contribution" => AGREEMENTS.iter().map(|a| format!("contrib-{}", a.0)).chain(["contrib-nowhere".to_owned()]).collect(),
        "reference" => AGREEMENTS
            .iter()
            .flat_map(|a| [format!("ref-{}-1", a.0), format!("pending-ref-{}", a.0)])
            .chain(["ref-nowhere".to_owned()])
            .collect(),
        "format" => vec!["csv".to_owned()],
        _ => Vec::new(),
    };
    ids.dedup();
    ids
}

/// Whether `caller` may not see the thing a parameter's value names (or it does not exist).
fn hidden(knowledge: &Knowledge, caller: &'static str, name: &str, value: &str) -> bool {
    match name {
        "agreement" => AGREEMENTS.iter().find(|a| a.0 == value).is_none_or(|a| !readers_of_agreement(a.0).contains(caller)),
        "party" => !CALLERS.iter().any(|c| *c == value && is_party(c)) || !readers_of_party(value).contains(caller),
        "id" => value
            .parse::<u64>()
            .ok()
            .filter(|id| knowledge.disputes.contains_key(id))
            .is_none_or(|id| !readers_of_dispute(usize::try_from(id).unwrap_or(usize::MAX)).contains(caller)),
        "leaf" => value.parse::<usize>().ok().and_then(|i| knowledge.leaves.get(i)).is_none_or(|readers| !readers.contains(caller)),
        _ => false,
    }
}

/// The GET requests of a route: every combination of its parameters' values (an optional query
/// parameter also left out), as (path, the values used by name).
fn requests(route: &str, parameters: &[Value], log_size: u64) -> Vec<(String, Vec<(String, String)>)> {
    let mut combinations: Vec<Vec<(String, Option<String>)>> = vec![Vec::new()];
    for parameter in parameters {
        let name = parameter["name"].as_str().expect("a parameter's name");
        let place = parameter["in"].as_str().expect("where a parameter is");
        if place == "header" {
            continue;
        }
        let required = parameter["required"].as_bool().unwrap_or(false) || place == "path";
        let mut choices: Vec<Option<String>> = values(name, log_size).into_iter().map(Some).collect();
        if !required || choices.is_empty() {
            choices.push(None);
        }
        combinations = combinations
            .into_iter()
            .flat_map(|so_far| {
                choices.iter().map(move |choice| {
                    let mut next = so_far.clone();
                    next.push((format!("{place}:{name}"), choice.clone()));
                    next
                })
            })
            .collect();
    }
    combinations
        .into_iter()
        .map(|combination| {
            let mut path = route.to_owned();
            let mut query = Vec::new();
            let mut used = Vec::new();
            for (key, value) in combination {
                let (place, name) = key.split_once(':').expect("place:name");
                let Some(value) = value else { continue };
                if place == "path" {
                    path = path.replace(&format!("{{{name}}}"), &value);
                } else {
                    query.push(format!("{name}={value}"));
                }
                used.push((name.to_owned(), value));
            }
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            (path, used)
        })
        .collect()
}

/// A write attempt: its path, its body, and the hidden ids it names (by parameter).
type Attempt = (String, Value, Vec<(&'static str, String)>);

/// The write attempts of a route for `caller`: on other parties' things (or things that do not
/// exist), each as (path, body, the hidden ids it names).
fn attempts(route: &str, caller: &'static str, knowledge: &Knowledge) -> Vec<Attempt> {
    let foreign: Vec<&str> =
        AGREEMENTS.iter().map(|a| a.0).filter(|id| !readers_of_agreement(id).contains(caller)).chain([NO_AGREEMENT]).collect();
    let hide = |name: &'static str, value: &str| -> Vec<(&'static str, String)> {
        if hidden(knowledge, caller, name, value) { vec![(name, value.to_owned())] } else { Vec::new() }
    };
    let mut out = Vec::new();
    match route {
        "/v1/usage" => {
            for host in HOSTS.iter().filter(|h| **h != caller) {
                let line = record_line(0, 1).replace("\"host\":\"nimbus\"", &format!("\"host\":\"{host}\"")).replace("rec-", "intruder-");
                out.push((route.to_owned(), Value::String(line), Vec::new()));
            }
        }
        "/v1/agreements" => {
            for (id, licensor, host, model) in AGREEMENTS.iter().filter(|a| a.1 != caller) {
                // As its licensor wrote it, and (the id taken by another licensor) as the caller's,
                // with another host: a refusal must not say whose the id is.
                let own = if LICENSORS.contains(&caller) { caller } else { licensor };
                let host = if *host == "nimbus" { "stratus" } else { "nimbus" };
                let model = match caller {
                    "meridian" => "mer-small",
                    "aurora" => "aur-large",
                    _ => model,
                };
                for version in ["version = 1", "version = 2"] {
                    let text =
                        agreement_toml(id, own, host, model).replace("version = 1", version).replace("# terms-of-", "# other-terms-");
                    out.push((route.to_owned(), Value::String(text), Vec::new()));
                }
            }
        }
        "/v1/close" => {
            for id in &foreign {
                out.push((route.to_owned(), json!({"agreement": id, "period": "2026-11"}), hide("agreement", id)));
            }
        }
        "/v1/payments" => {
            for id in &foreign {
                for from in ["host", "licensor"] {
                    let body = json!({"agreement": id, "amount": "1.00", "reference": format!("intruder-{from}"), "from": from});
                    out.push((route.to_owned(), body, hide("agreement", id)));
                }
            }
        }
        "/v1/payments/confirmations" => {
            // Another agreement's pending payment, and a reference pending nowhere.
            for id in &foreign {
                for reference in [format!("pending-ref-{id}"), "no-such-reference".to_owned()] {
                    out.push((route.to_owned(), json!({"agreement": id, "reference": reference}), hide("agreement", id)));
                }
            }
        }
        "/v1/statements/{agreement}/{period}/signatures" => {
            let signer = key_of(if HOSTS.contains(&caller) { caller } else { "nimbus" });
            for id in AGREEMENTS.iter().map(|a| a.0).filter(|id| agreement_of(id).2 != caller).chain([NO_AGREEMENT]) {
                let signature = signer.sign(&statement_message("sha256:00"));
                let body = json!({"key": signer.verifier().to_text(), "signature": revshare_core::transparency::b64(&signature)});
                out.push((format!("/v1/statements/{id}/2026-10/signatures"), body, hide("agreement", id)));
            }
        }
        "/v1/parties" => {
            for party in CALLERS.iter().filter(|c| **c != caller && is_party(c)) {
                let body = json!({"id": party, "name": "An Intruder's Name", "role": "host"});
                out.push((route.to_owned(), body, Vec::new()));
            }
        }
        "/v1/models" => {
            for model in ["mer-small", "aur-large"] {
                out.push((route.to_owned(), json!({"id": model, "derived_from": "aur-large"}), Vec::new()));
            }
        }
        "/v1/aliases" => {
            for host in HOSTS.iter().filter(|h| **h != caller) {
                out.push((route.to_owned(), json!({"host": host, "host_model": "intruder-alias", "model": "mer-small"}), Vec::new()));
            }
        }
        "/v1/disputes" => {
            for id in &foreign {
                let body = json!({"agreement": id, "period": "2026-10", "amount": "1.00", "reason": "intruder"});
                out.push((route.to_owned(), body, hide("agreement", id)));
            }
        }
        "/v1/disputes/{id}/transitions" => {
            for (id, agreement) in knowledge.disputes.iter().map(|(id, a)| (*id, *a)).chain([(NO_DISPUTE, NO_AGREEMENT)]) {
                if agreement != NO_AGREEMENT && readers_of_dispute(usize::try_from(id).unwrap_or(usize::MAX)).contains(caller) {
                    continue;
                }
                let body = json!({"action": "accept", "reason": "intruder"});
                out.push((format!("/v1/disputes/{id}/transitions"), body, vec![("id", id.to_string())]));
            }
        }
        "/v1/keys" => {
            // Another party's key as the caller's own (its proof made with that key), and a
            // rotation of the caller's key signed by another party's: refused, naming no owner.
            let fresh = SignerKey::from_seed("fresh", seed_of(&format!("fresh key of {caller}"))).expect("a key");
            // Licensors and hosts have keys; a key no one registered is anyone's to prove.
            for party in LICENSORS.iter().chain(HOSTS.iter()).filter(|c| **c != caller) {
                let theirs = key_of(party);
                let text = theirs.verifier().to_text();
                let proof = theirs.sign(&revshare_core::transparency::registration_message(caller, &text));
                out.push((route.to_owned(), json!({"key": text, "proof": revshare_core::transparency::b64(&proof)}), Vec::new()));
                let message = revshare_core::transparency::rotation_message(Some(caller), &fresh.verifier().to_text());
                let rotation = json!({"key": text, "signature": revshare_core::transparency::b64(&theirs.sign(&message))});
                out.push((route.to_owned(), json!({"key": fresh.verifier().to_text(), "rotation": rotation}), Vec::new()));
            }
        }
        "/v1/contributions" => {
            let party = if is_party(caller) { caller } else { "nimbus" };
            for id in &foreign {
                let contribution =
                    json!({"id": "intruder-c", "party": party, "kind": "maintenance", "date": "2026-10-05", "description": "intruder"});
                out.push((route.to_owned(), json!({"agreement": id, "contribution": contribution}), hide("agreement", id)));
            }
        }
        "/v1/contributions/acceptances" => {
            for id in &foreign {
                out.push((route.to_owned(), json!({"agreement": id, "id": format!("contrib-{id}")}), hide("agreement", id)));
            }
        }
        // The operator's: refused to every party; the operator's own refusals name what it sent.
        "/v1/tokens" => {
            for party in ["nimbus", NO_PARTY].into_iter().filter(|p| caller != OPERATOR || *p == NO_PARTY) {
                out.push((route.to_owned(), json!({"party": party}), Vec::new()));
            }
        }
        "/v1/tokens/revocations" => {
            let id = if caller == OPERATOR {
                "tok-000000000000".to_owned()
            } else {
                {
                    let token = revshare_server::auth::encode(&seed_of("token of nimbus"));
                    revshare_server::auth::id_of(&revshare_server::auth::hash(&token))
                }
            };
            out.push((route.to_owned(), json!({"id": id}), Vec::new()));
        }
        "/v1/grants" => {
            let grants: Vec<(&str, &str)> = if caller == OPERATOR {
                vec![("nimbus", "mer-one"), (AUDITOR, NO_AGREEMENT)]
            } else {
                AGREEMENTS.iter().map(|a| (AUDITOR, a.0)).collect()
            };
            for (auditor, agreement) in grants {
                out.push((route.to_owned(), json!({"auditor": auditor, "agreement": agreement}), hide("agreement", agreement)));
            }
        }
        "/v1/grants/revocations" => {
            let agreement = if caller == OPERATOR { "mer-one" } else { GRANTED };
            out.push((route.to_owned(), json!({"auditor": AUDITOR, "agreement": agreement}), hide("agreement", agreement)));
        }
        // An endpoint is its party's own; one the deployment does not deliver to is refused.
        "/v1/webhooks" => {
            out.push((route.to_owned(), json!({"url": "http://10.9.9.9/in", "events": ["statement.closed"]}), Vec::new()));
        }
        other => panic!("route {other} takes writes the suite does not attempt: add them"),
    }
    out
}

/// What a refused write must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    log: (u64, revshare_core::merkle::Hash),
    checkpoints: usize,
    records: Vec<Vec<UsageRecord<'static>>>,
    statements: Vec<(String, u32, String, usize)>,
    journal: usize,
    disputes: Vec<Value>,
    contributions: Vec<Vec<Contribution>>,
    parties: Vec<Option<Party>>,
    models: Vec<Option<Model>>,
    aliases: Vec<Option<String>>,
    agreements: Vec<u32>,
}

fn snapshot(store: &mut dyn Store) -> Snapshot {
    let size = store.log_size().expect("size");
    let agreements: Vec<AgreementId> = AGREEMENTS.iter().map(|a| aid(a.0)).collect();
    Snapshot {
        log: (size, store.log_root(size).expect("root")),
        checkpoints: store.checkpoints().expect("checkpoints").len(),
        records: agreements
            .iter()
            .flat_map(|id| [october(), Period::parse("2026-11").expect("a month")].map(|p| store.records(id, p).expect("records")))
            .collect(),
        statements: store
            .statements(None)
            .expect("statements")
            .iter()
            .map(|s| {
                (
                    s.head.agreement_id.to_string(),
                    s.head.sequence,
                    s.head.digest.clone(),
                    store.statement_signatures(s).expect("signatures").len(),
                )
            })
            .collect(),
        journal: store.journal().expect("journal").len(),
        disputes: store.disputes(None).expect("disputes").iter().map(|d| d.to_json()).collect(),
        contributions: agreements.iter().map(|id| store.contributions(id).expect("contributions")).collect(),
        parties: CALLERS.iter().chain(&[NO_PARTY]).filter(|c| is_party(c)).map(|c| store.party(&pid(c)).expect("a party")).collect(),
        models: ["mer-small", "aur-large"].iter().map(|m| store.model(&ModelId::parse(m).expect("an id")).expect("a model")).collect(),
        aliases: HOSTS.iter().map(|h| store.resolve_model(&pid(h), "intruder-alias").ok().map(|m| m.to_string())).collect(),
        agreements: agreements.iter().map(|id| store.agreement(id, None).expect("an agreement").version()).collect(),
    }
}

/// A tar archive's regular files, in memory.
fn tar_files(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut reader = tar::Archive::new(archive);
    for entry in reader.entries().expect("a tar archive") {
        let mut entry = entry.expect("an entry");
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let path = entry.path().expect("a path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("the file");
        files.push((path, bytes));
    }
    files
}

// ---------------------------------------------------------------------------------------------
// The test

/// The world built in a fresh store: each caller's token, and what each may see.
fn world(db: &dyn TestDb) -> (BTreeMap<&'static str, String>, Knowledge) {
    let mut store = open(db);
    let tokens = build(store.as_mut());
    let knowledge = learn(store.as_mut());
    (tokens, knowledge)
}

/// An answer as a leak is looked for in it: its headers, then its body.
fn answer_bytes(reply: &Reply) -> Vec<u8> {
    let mut answer = Vec::new();
    for (name, value) in &reply.headers {
        answer.extend_from_slice(format!("{name}: ").as_bytes());
        answer.extend_from_slice(value);
        answer.push(b'\n');
    }
    answer.extend_from_slice(&reply.bytes);
    answer
}

fn no_answer_discloses_what_a_party_is_not_entitled_to(db: &dyn TestDb) {
    let (tokens, knowledge) = world(db);
    let token = |caller: &str| tokens.get(caller).map(String::as_str);
    let mut failures: Vec<String> = Vec::new();
    let mut bundle_files = 0usize;
    let mut bundles = 0usize;
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let document = api.get("/openapi.json", None).await.json();
        let generated: Value = serde_json::from_str(&revshare_server::openapi().to_json().expect("JSON")).expect("the document");
        assert_eq!(document, generated, "the served document is the one generated without data");
        let log_size = api.with_store(|store| store.log_size().expect("size")).await;
        assert_eq!(knowledge.leaves.len() as u64, log_size);

        // Every GET of the document's routes, and the routes it does not list.
        let paths = document["paths"].as_object().expect("paths");
        let mut calls: Vec<Call> = Vec::new();
        let mut gets =
            vec![("/openapi.json".to_owned(), Vec::new()), ("/metrics".to_owned(), Vec::new()), ("/docs/".to_owned(), Vec::new())];
        for (route, item) in paths {
            if let Some(get) = item.get("get") {
                let parameters = get["parameters"].as_array().cloned().unwrap_or_default();
                for (path, used) in requests(route, &parameters, log_size) {
                    gets.push((format!("{route}\u{0}{path}"), used));
                }
            }
        }
        for caller in CALLERS {
            for (key, used) in &gets {
                let (route, path) = key.split_once('\u{0}').unwrap_or((key.as_str(), key.as_str()));
                let reply = api.get(path, token(caller)).await;
                let hidden = used
                    .iter()
                    .filter(|(name, value)| hidden(&knowledge, caller, name, value))
                    .map(|(name, value)| (names(name), value.clone()))
                    .collect();
                calls.push(Call { caller, method: "GET", route: route.to_owned(), path: path.to_owned(), body: Vec::new(), reply, hidden });
            }
        }
        // Every dashboard page, signed in as each caller with a token (and signed out), with
        // every id: the pages show what the API shows, no more.
        let mut sessions: BTreeMap<&str, Option<String>> = BTreeMap::new();
        for caller in CALLERS {
            let cookie = match token(caller) {
                Some(token) => Some(api.sign_in(token).await),
                None => None,
            };
            sessions.insert(caller, cookie);
        }
        for (route, parameters) in DASHBOARD {
            let parameters: Vec<Value> =
                parameters.iter().map(|(name, place)| json!({"name": name, "in": place, "required": *place == "path"})).collect();
            for (path, used) in requests(route, &parameters, log_size) {
                for caller in CALLERS {
                    let cookie = sessions[caller].as_deref();
                    let reply = api.page(&path, cookie).await;
                    let expected = match cookie {
                        None => Some(303),
                        Some(_) if used.iter().any(|(_, value)| value == "2026-09") => None,
                        // A usage download without an agreement is of the caller's first, if it has one.
                        Some(_) if route == "/usage" && !used.iter().any(|(name, _)| name == "agreement") => None,
                        Some(_) if used.iter().all(|(name, value)| !hidden(&knowledge, caller, name, value)) => Some(200),
                        Some(_) => None,
                    };
                    if expected.is_some_and(|status| status != reply.status) {
                        failures.push(format!("dashboard {path} as {caller}: {} {}", reply.status, String::from_utf8_lossy(&reply.bytes)));
                    }
                    let hidden = used
                        .iter()
                        .filter(|(name, value)| hidden(&knowledge, caller, name, value))
                        .map(|(name, value)| (names(name), value.clone()))
                        .collect();
                    let route = format!("dashboard {route}");
                    calls.push(Call { caller, method: "GET", route, path: path.clone(), body: Vec::new(), reply, hidden });
                }
            }
        }
        let reads = calls.len();

        // Every write, attempted on others' things: refused, and nothing changes.
        let before = api.with_store(|store| snapshot(store)).await;
        let mut writes = 0usize;
        for (route, item) in paths {
            if item.get("post").is_none() {
                continue;
            }
            for caller in CALLERS {
                for (path, body, hidden) in attempts(route, caller, &knowledge) {
                    let (content_type, bytes) = match (route.as_str(), &body) {
                        ("/v1/usage", Value::String(line)) => ("application/x-ndjson", line.clone().into_bytes()),
                        ("/v1/agreements", Value::String(text)) => ("application/toml", text.clone().into_bytes()),
                        _ => ("application/json", body.to_string().into_bytes()),
                    };
                    let reply = api.send(reqwest::Method::POST, &path, token(caller), Some(content_type), bytes.clone()).await;
                    let call = Call { caller, method: "POST", route: route.clone(), path, body: bytes, reply, hidden };
                    if call.reply.status < 400 {
                        failures.push(format!("{}: a write on another's things is not refused: {}", call.describe(), call.answer()));
                    }
                    calls.push(call);
                    writes += 1;
                }
            }
        }
        let after = api.with_store(|store| snapshot(store)).await;
        if before != after {
            failures.push(format!("refused writes changed the store:\nbefore {before:?}\nafter {after:?}"));
        }
        eprintln!("{reads} reads and {writes} refused writes over {} routes, by {} callers", paths.len() + 3, CALLERS.len());

        // Tokens that are no party's (malformed, unknown, revoked): every route of every method
        // is 401 problem+json, which names nothing of the route's things, and nothing changes.
        let revoked = api
            .with_store(|store| {
                let token = add_token(store, "nimbus", Role::Host, "revoked for the test");
                store.revoke_token(&revshare_server::auth::id_of(&revshare_server::auth::hash(&token))).expect("revoked");
                token
            })
            .await;
        let strangers = [("malformed", "not a token".to_owned()), ("unknown", unknown_token()), ("revoked", revoked)];
        let before = api.with_store(|store| snapshot(store)).await;
        let mut denied = 0usize;
        for (route, item) in paths.iter().filter(|(route, _)| route.starts_with("/v1/")) {
            let path = route.split('/').map(|part| if part.starts_with('{') { "1" } else { part }).collect::<Vec<_>>().join("/");
            for method in ["get", "post"].into_iter().filter(|m| item.get(*m).is_some()) {
                for (kind, stranger) in &strangers {
                    let (verb, body) =
                        if method == "get" { (reqwest::Method::GET, Vec::new()) } else { (reqwest::Method::POST, b"{}".to_vec()) };
                    let reply = api.send(verb, &path, Some(stranger), Some("application/json"), body).await;
                    let text = String::from_utf8_lossy(&reply.bytes).into_owned();
                    if reply.status != 401 || reply.content_type != "application/problem+json" {
                        failures.push(format!("{method} {path} with a {kind} token: {} {text}", reply.status));
                    }
                    for leak in leaks(text.as_bytes(), &unseen(&knowledge, NONE), &path) {
                        failures.push(format!("{method} {path} with a {kind} token shows {leak}"));
                    }
                    denied += 1;
                }
            }
        }
        let after = api.with_store(|store| snapshot(store)).await;
        if before != after {
            failures.push(format!("calls with tokens that are no party's changed the store:\nbefore {before:?}\nafter {after:?}"));
        }
        eprintln!("{denied} calls with malformed, unknown or revoked tokens, each 401");

        // No answer holds what its caller may not see, unless the caller sent it.
        for call in &calls {
            let secrets = unseen(&knowledge, call.caller);
            let sent = format!("{}\n{}", call.path, String::from_utf8_lossy(&call.body));
            for leak in leaks(&answer_bytes(&call.reply), &secrets, &sent) {
                failures.push(format!("{} shows {leak}", call.describe()));
            }
        }

        // Refusals of what exists and of what does not are one answer, modulo the id asked for.
        let mut groups: BTreeMap<(String, String, String), Vec<&Call>> = BTreeMap::new();
        for call in calls.iter().filter(|c| !c.hidden.is_empty()) {
            let mut shape = format!("{}\n{}", call.path, String::from_utf8_lossy(&call.body));
            for (name, value) in &call.hidden {
                shape = mask(&shape, value, name);
            }
            groups.entry((call.caller.to_owned(), format!("{} {}", call.method, call.route), shape)).or_default().push(call);
        }
        let mut compared = 0usize;
        for ((caller, route, _), group) in &groups {
            let masked = |call: &Call| call.hidden.iter().fold(call.answer(), |text, (name, value)| mask(&text, value, name));
            let first = masked(group[0]);
            if first.starts_with('2') {
                failures.push(format!("{}: a hidden thing is answered: {first}", group[0].describe()));
            }
            for call in &group[1..] {
                compared += 1;
                let other = masked(call);
                if other != first {
                    failures.push(format!(
                        "{route} as {caller}: refusals differ, so existence shows:\n  {}: {first}\n  {}: {other}",
                        group[0].path, call.path
                    ));
                }
            }
        }
        assert!(compared > 100, "refusals were compared: {compared}");

        // Every bundle file a caller can fetch.
        for call in calls.iter().filter(|c| c.method == "GET" && c.route.ends_with("/bundle") && c.reply.status == 200) {
            bundles += 1;
            let agreement =
                AGREEMENTS.iter().map(|a| a.0).find(|id| call.path.contains(&format!("/{id}/"))).expect("the bundle's agreement");
            let secrets: Vec<&Secret> = knowledge
                .secrets
                .iter()
                .filter(|s| !s.readers.contains(call.caller) || s.agreement.is_some_and(|other| other != agreement))
                .collect();
            let files = tar_files(&call.reply.bytes);
            for (name, bytes) in &files {
                bundle_files += 1;
                for leak in leaks(bytes, &secrets, "") {
                    failures.push(format!("{}: bundle file {name} shows {leak}", call.describe()));
                }
            }
            // records.salts: the salts of the bundle's own records, one per line, and no other.
            let file = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone()).unwrap_or_default();
            let (records, salts) = (file("records.jsonl"), file("records.salts"));
            let lines: Vec<&[u8]> = records.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
            let own: Vec<String> = (1..=2).map(|n| format!("rec-{agreement}-{n}")).collect();
            let ids: Vec<String> = lines
                .iter()
                .map(|l| serde_json::from_slice::<Value>(l).expect("a record")["id"].as_str().expect("an id").to_owned())
                .collect();
            if ids != own || salts.len() != 16 * lines.len() {
                failures.push(format!("{}: records {ids:?} with {} bytes of salts; expected {own:?}", call.describe(), salts.len()));
            }
            if agreement_of(agreement).2 == "nimbus" {
                let mixed = file(&format!("batches/{}.digests", knowledge.mixed_batch));
                if mixed.len() != 64 {
                    failures.push(format!("{}: the mixed batch's file holds {} bytes, not two commitments", call.describe(), mixed.len()));
                }
            }
        }
        assert!(bundles >= 4 * 4, "every reader fetched every agreement's bundle: {bundles}");
        api.stop().await;
    });
    eprintln!("{bundles} bundles, {bundle_files} bundle files checked");
    assert!(failures.is_empty(), "{} confidentiality failure(s):\n{}", failures.len(), failures.join("\n"));
}

/// A parameter's name as `'static`, for [`Call::hidden`].
fn names(name: &str) -> &'static str {
    ["agreement", "party", "id", "leaf"].into_iter().find(|n| *n == name).unwrap_or("value")
}

// ---------------------------------------------------------------------------------------------
// A property: random sequences of calls

/// One call of a random sequence.
#[derive(Clone, Debug)]
enum Action {
    /// A caller reads one of the GET requests.
    Read { caller: usize, request: usize },
    /// An agreement's host reports one more record of its own.
    Ingest { agreement: usize },
    /// An agreement's host records a payment (pending until the licensor confirms it).
    Pay { agreement: usize },
}

/// Any sequence of calls by any callers — reads of every route with every id, among writes of
/// the parties' own (usage, payments) — never shows a caller a marker it may not see, and no read
/// changes the store. The sequences are drawn by proptest; a failure prints the sequence.
fn random_calls_never_leak_and_reads_never_write(db: &dyn TestDb) {
    use proptest::strategy::{Strategy, ValueTree};
    let (tokens, knowledge) = world(db);
    let token = |caller: &str| tokens.get(caller).map(String::as_str);
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let document = api.get("/openapi.json", None).await.json();
        let log_size = api.with_store(|store| store.log_size().expect("size")).await;
        let mut gets: Vec<String> = Vec::new();
        for item in document["paths"].as_object().expect("paths").iter().filter_map(|(route, item)| item.get("get").map(|g| (route, g))) {
            let (route, get) = item;
            let parameters = get["parameters"].as_array().cloned().unwrap_or_default();
            gets.extend(requests(route, &parameters, log_size).into_iter().map(|(path, _)| path));
        }
        let action = proptest::prop_oneof![
            6 => (0..CALLERS.len(), 0..gets.len()).prop_map(|(caller, request)| Action::Read { caller, request }),
            1 => (0..AGREEMENTS.len()).prop_map(|agreement| Action::Ingest { agreement }),
            1 => (0..AGREEMENTS.len()).prop_map(|agreement| Action::Pay { agreement }),
        ];
        let sequences = proptest::collection::vec(action, 10..30);
        let mut runner = proptest::test_runner::TestRunner::default();
        let mut written = 0usize;
        for _ in 0..6 {
            let sequence = sequences.new_tree(&mut runner).expect("a sequence").current();
            for (step, action) in sequence.iter().enumerate() {
                let at = || format!("step {step} of {sequence:?}");
                match *action {
                    Action::Read { caller, request } => {
                        let caller = CALLERS[caller];
                        let path = &gets[request];
                        let before = api.with_store(|store| snapshot(store)).await;
                        let reply = api.get(path, token(caller)).await;
                        let mut after = api.with_store(|store| snapshot(store)).await;
                        if path.split('?').next().is_some_and(|route| route.ends_with("/bundle")) {
                            // A bundle keeps the checkpoint it is exported under, so that the
                            // agreement's later bundles prove consistency from it (DECISIONS).
                            after.checkpoints = before.checkpoints;
                        }
                        assert!(before == after, "GET {path} by {caller} changed the store ({})", at());
                        let leaked = leaks(&answer_bytes(&reply), &unseen(&knowledge, caller), path);
                        assert!(leaked.is_empty(), "GET {path} by {caller} shows {leaked:?} ({})", at());
                    }
                    Action::Ingest { agreement } => {
                        written += 1;
                        let host = AGREEMENTS[agreement].2;
                        let line = record_line(agreement, 1).replace("\"id\":\"rec-", &format!("\"id\":\"prop{written}-rec-"));
                        let reply = api.post_usage(token(host).expect("a host's token"), "application/x-ndjson", &line).await;
                        assert_eq!(reply.status, 200, "{} ({})", String::from_utf8_lossy(&reply.bytes), at());
                    }
                    Action::Pay { agreement } => {
                        written += 1;
                        let (id, _, host, _) = AGREEMENTS[agreement];
                        let body = json!({"agreement": id, "amount": "1.00", "reference": format!("prop-pay-{written}"), "from": "host"});
                        let reply = api.post_json("/v1/payments", token(host).expect("a host's token"), &body).await;
                        assert_eq!(reply.status, 201, "{} ({})", String::from_utf8_lossy(&reply.bytes), at());
                    }
                }
            }
        }
        api.stop().await;
    });
}
