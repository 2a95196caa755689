//! The HTTP API end to end: a real server on port 0 over a fresh store, a real HTTP client.
//! Every test runs on a fresh SQLite file and on a fresh PostgreSQL database (at
//! `host=127.0.0.1 user=postgres`, or `REVSHARE_TEST_PG`; each test creates and drops its own,
//! and fails, never skips, when there is no server).

use std::sync::Arc;

use revshare_core::canonical;
use revshare_core::dispute::{Actor, ActorRole, State, Transition};
use revshare_core::ids::{AgreementId, ModelId};
use revshare_core::ledger::JournalEntry;
use revshare_core::licence::Lineage;
use revshare_core::merkle::{self, Hash};
use revshare_core::note::{Checkpoint, SignerKey, open_note};
use revshare_core::settle::{SettlementInput, settle};
use revshare_core::time::{Instant, Period};
use revshare_core::transparency::{Salt, Signed, b64, batch_message, commitment, from_b64, receipt_message};
use revshare_core::usage::{UsageRecord, parse_json_line};
use revshare_server::{Config, OpenStore, Timeouts, auth};
use revshare_store::{IngestMode, Model, NewStatement, OPERATOR, Party, PgStore, Role, StatementKind, Store, batch_digest};
use serde_json::{Value, json};

#[macro_use]
mod common;
use common::*;

api_tests!(
    a_batch_gets_a_receipt_that_verifies,
    every_format_is_read_and_resends_are_duplicates,
    refused_calls_change_nothing,
    concurrent_identical_batches_are_stored_once,
    a_conflicting_resend_names_the_stored_record,
    bad_records_are_listed_with_line_field_and_record,
    an_oversized_body_is_413,
    tokens_must_be_known_and_unrevoked,
    the_dashboard_signs_in_and_its_forms_do_what_the_api_does,
    csv_answers_read_back_as_their_json,
    signed_batches_are_checked,
    a_party_registers_and_rotates_its_own_keys,
    requests_over_the_rate_limit_are_429,
    shutdown_finishes_the_request_in_flight,
    slow_clients_are_answered_and_cut_off,
    a_licensor_closes_a_month_once_and_its_host_countersigns,
    a_licensor_registers_its_agreements_and_problems_are_located,
    each_side_records_its_own_payments,
    the_registry_is_written_by_its_owners_and_read_in_scope,
    a_licensor_registers_agreements_as_json_and_problems_name_the_field,
    a_bundle_fetched_over_http_verifies_offline,
    the_docs_page_and_its_assets_are_served_offline,
    disputes_move_by_their_parties_and_others_see_nothing,
    reading_an_overdue_dispute_writes_nothing,
    the_operator_grants_auditors_and_both_parties_see_it,
    a_party_records_its_contributions_and_the_other_accepts_them,
    an_arbiter_both_sides_name_reads_and_decides_the_dispute,
    a_preview_is_the_close_to_come_for_the_two_parties,
    the_usage_summary_is_what_the_preview_bills,
    an_idempotency_key_replays_the_first_answer,
    lists_page_filter_and_stay_in_scope,
    webhooks_are_signed_retried_and_survive_a_restart,
    a_host_lists_its_batches_and_their_receipts,
    a_licensor_reads_its_compliance_report_and_no_one_else_does,
    payments_waiting_and_deadlines_near_are_told_once,
    every_post_replays_its_first_answer_and_refuses_another_request,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

/// The repository's example agreement, naming `judge` its arbiter.
static AGREEMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("../../../examples/agreement.toml").replacen(
        "dispute_window_days = 30\n",
        "dispute_window_days = 30\narbiters = [\"judge\"]\n",
        1,
    )
});
const USAGE: &str = include_str!("../../../examples/usage.jsonl");

fn agreement_id() -> AgreementId {
    AgreementId::parse("meridian-northwind").expect("an agreement id")
}

fn october() -> Period {
    Period::parse("2026-10").expect("a month")
}

/// The worked example's northwind lines, as JSON Lines.
fn northwind_lines() -> String {
    USAGE.lines().filter(|l| l.contains("\"host\":\"northwind\"")).map(|l| format!("{l}\n")).collect()
}

fn parse_lines(text: &str) -> Vec<UsageRecord<'static>> {
    text.lines().map(|l| parse_json_line(l.as_bytes()).expect("a record").into_owned()).collect()
}

/// A northwind record like the example's, with its own id.
fn northwind_record(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","host":"northwind","model":"m-8b","use_case":"search","region":"us","time":"2026-10-12T10:00:00Z","requests":10,"input_tokens":1000,"output_tokens":500,"revenue":"1.50","currency":"USD"}}"#
    )
}

/// Tokens of every kind of caller.
struct Tokens {
    northwind: String,
    southwind: String,
    meridian: String,
    aurora: String,
    auditor: String,
    arbiter: String,
    operator: String,
}

/// meridian (licensor) and its agreement with northwind, which names `judge` its arbiter and
/// which the auditor `ledgerwise` is granted; southwind (another host), aurora (another
/// licensor); a token for each, and one for the operator.
fn register(store: &mut dyn Store) -> Tokens {
    for (id, role) in [
        ("meridian", Role::Licensor),
        ("aurora", Role::Licensor),
        ("northwind", Role::Host),
        ("southwind", Role::Host),
        ("ledgerwise", Role::Auditor),
        ("judge", Role::Arbiter),
    ] {
        store.add_party(&Party { id: pid(id), name: format!("{id} Ltd"), role }).expect("add a party");
    }
    for id in ["m-8b", "m-70b"] {
        store
            .add_model(&Model {
                id: ModelId::parse(id).expect("a model id"),
                owner: pid("meridian"),
                derived_from: None,
                registered_by: None,
            })
            .expect("add a model");
    }
    store.add_key(None, &deployment_key().verifier()).expect("register the deployment key");
    store.add_agreement("agreement.toml", &AGREEMENT).expect("add the agreement");
    store.grant(&pid("ledgerwise"), &agreement_id()).expect("grant the auditor the agreement");
    Tokens {
        northwind: add_token(store, "northwind", Role::Host, "northwind"),
        southwind: add_token(store, "southwind", Role::Host, "southwind"),
        meridian: add_token(store, "meridian", Role::Licensor, "meridian"),
        aurora: add_token(store, "aurora", Role::Licensor, "aurora"),
        auditor: add_token(store, "ledgerwise", Role::Auditor, "ledgerwise"),
        arbiter: add_token(store, "judge", Role::Arbiter, "judge"),
        operator: add_token(store, OPERATOR, Role::Operator, "operator"),
    }
}

/// [`register`], and northwind's October usage ingested.
fn register_with_october(store: &mut dyn Store) -> Tokens {
    let tokens = register(store);
    store.ingest(&parse_lines(&northwind_lines()), IngestMode::Atomic, None).expect("ingest");
    tokens
}

/// Closes October of meridian-northwind as `revshare close` does: settle with the core, finalise
/// the statement with its journal entry.
fn close_october(store: &mut dyn Store) -> Vec<u8> {
    let id = agreement_id();
    let agreement = store.agreement(&id, None).expect("the agreement");
    let (rollup, _) = store.rollup(&id, october()).expect("the rollup");
    let usage_set = store.usage_set(&id, october()).expect("the usage set");
    let statement = settle(&SettlementInput {
        agreement: &agreement,
        period: october(),
        rollup: &rollup,
        usage_digest: usage_set.digest(),
        contributions: &[],
        adjustments: Vec::new(),
        lineage: &Lineage::default(),
    })
    .expect("settles");
    let bytes = statement.to_canonical().expect("canonical bytes");
    let digest = canonical::digest(&bytes);
    let entry = JournalEntry::for_statement(&statement, &pid("meridian"), &pid("northwind")).expect("the entry");
    let new = NewStatement {
        agreement_id: &id,
        agreement_version: 1,
        period: october(),
        kind: StatementKind::Original,
        canonical: &bytes,
        digest: &digest,
        finalised_at: Instant::from_date(2026, 11, 2).expect("a date"),
    };
    store.finalise_statement(&new, Some(&entry)).expect("finalise");
    bytes
}

/// What a refused call must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    log_size: u64,
    root: Hash,
    records: Vec<UsageRecord<'static>>,
    statements: Vec<(String, u32, String)>,
    journal: usize,
    checkpoints: Vec<(u64, String)>,
    signatures: Vec<Vec<String>>,
    agreement_version: u32,
    registry: Registry,
}

/// The registry entries the refused calls try to write or change.
#[derive(Debug, PartialEq)]
struct Registry {
    parties: Vec<Option<Party>>,
    models: Vec<Option<Model>>,
    aliases: Vec<Option<ModelId>>,
}

/// Parties, models and aliases that the refused calls of `refused_calls_change_nothing` name.
const REFUSED_PARTIES: [&str; 4] = ["northwind", "meridian", "intruder", "newlicensor"];
const REFUSED_MODELS: [&str; 3] = ["m-8b", "m-foreign", "m-8b-ft"];
const REFUSED_ALIASES: [(&str, &str); 3] = [("northwind", "nw-8b"), ("southwind", "nw-8b"), ("northwind", "nw-70b")];

fn registry(store: &mut dyn Store) -> Registry {
    Registry {
        parties: REFUSED_PARTIES.iter().map(|id| store.party(&pid(id)).expect("a party")).collect(),
        models: REFUSED_MODELS.iter().map(|id| store.model(&ModelId::parse(id).expect("a model id")).expect("a model")).collect(),
        aliases: REFUSED_ALIASES
            .iter()
            .map(|(host, name)| {
                let alias = store.resolve_model(&pid(host), name).ok();
                alias.filter(|model| model.as_str() != *name)
            })
            .collect(),
    }
}

fn snapshot(store: &mut dyn Store) -> Snapshot {
    let log_size = store.log_size().expect("log size");
    Snapshot {
        log_size,
        root: store.log_root(log_size).expect("log root"),
        records: store.records(&agreement_id(), october()).expect("records"),
        statements: store
            .statements(None)
            .expect("statements")
            .into_iter()
            .map(|s| (s.head.period.to_string(), s.head.sequence, s.head.digest))
            .collect(),
        journal: store.journal().expect("journal").len(),
        checkpoints: store.checkpoints().expect("checkpoints"),
        signatures: store
            .statements(None)
            .expect("statements")
            .iter()
            .map(|s| store.statement_signatures(s).expect("signatures").into_iter().map(|signed| signed.key).collect())
            .collect(),
        agreement_version: store.agreement(&agreement_id(), None).expect("the agreement").version(),
        registry: registry(store),
    }
}

/// The example agreement amended: version 2, a higher minimum.
fn amendment() -> String {
    AGREEMENT.replace("version = 1", "version = 2").replace("minimum = \"500.00\"", "minimum = \"600.00\"")
}

/// A host key registered for northwind, and its signature of a statement digest, as the body of
/// `POST /v1/statements/{agreement}/{period}/signatures`.
fn host_key() -> SignerKey {
    SignerKey::from_seed("northwind", [7; 32]).expect("a host key")
}

fn countersignature(key: &SignerKey, digest: &str) -> Value {
    let signature = key.sign(&revshare_core::transparency::statement_message(digest));
    json!({"key": key.verifier().to_text(), "signature": revshare_core::transparency::b64(&signature)})
}

// ---------------------------------------------------------------------------------------------
// Tests

fn a_batch_gets_a_receipt_that_verifies(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        assert_eq!(api.get("/healthz", None).await.json()["status"], "ok");
        let served = api.get("/openapi.json", None).await.json();
        let generated: Value = serde_json::from_str(&revshare_server::openapi().to_json().expect("JSON")).expect("the document");
        assert_eq!(served, generated, "the served OpenAPI document is the generated one");
        let reply = api.post_usage(&tokens.northwind, "application/x-ndjson", &northwind_lines()).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.bytes));
        let body = reply.json();
        // The example repeats one record: 7 are new, the repeat is acknowledged as a duplicate.
        assert_eq!((body["accepted"].as_u64(), body["duplicates"].as_u64()), (Some(7), Some(1)), "{body}");

        // The receipt's checkpoint is signed by the deployment key, and its proof puts the
        // batch's leaf in that tree.
        let receipt = &body["receipt"];
        let note = receipt["checkpoint"].as_str().expect("a checkpoint");
        let opened = open_note(note, &[deployment_key().verifier()]).expect("the checkpoint verifies with the deployment key");
        let checkpoint = Checkpoint::parse(&opened.text).expect("a checkpoint");
        assert_eq!(checkpoint.extensions, vec![format!("time {}", clock())]);
        assert_eq!(receipt["tree_size"].as_u64(), Some(checkpoint.size));
        let index = receipt["leaf"]["index"].as_u64().expect("the leaf index");
        let event = receipt["leaf"]["event"].as_str().expect("the leaf's event");
        let salt: Salt = b64_bytes(&receipt["leaf"]["salt"]).try_into().expect("a 32-byte salt");
        let proof: Vec<Hash> = receipt["inclusion_proof"]
            .as_array()
            .expect("a proof")
            .iter()
            .map(|h| from_b64(h.as_str().expect("base64")).and_then(|b| Hash::try_from(b).ok()).expect("a hash"))
            .collect();
        merkle::verify_inclusion(
            &merkle::leaf_hash(&commitment(&salt, event.as_bytes())),
            index,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )
        .expect("the inclusion proof verifies");
        // The receipt itself is signed by the deployment over its canonical bytes.
        let mut unsigned = receipt.clone();
        let signed = unsigned.as_object_mut().and_then(|m| m.remove("signed")).expect("a signature");
        let signed = Signed::from_json(&signed).expect("a signature object");
        let message = receipt_message(&canonical::to_canonical(&unsigned).expect("canonical"));
        deployment_key().verifier().verify(&message, &signed.signature).expect("the receipt's signature verifies");
        let record_key = b64_bytes(&receipt["batch"]["record_key"]).try_into().expect("a 16-byte key");
        let digest = batch_digest(&parse_lines(&northwind_lines()), &record_key);
        assert_eq!(receipt["batch"]["digest"], digest, "the batch digest is the store's, under the key the receipt gives the host");

        // The log serves the same proof, and the consistency of the tree with an earlier one.
        let proved = api.get(&format!("/v1/log/inclusion?leaf={index}&size={}", checkpoint.size), Some(&tokens.northwind)).await.json();
        assert_eq!(proved["inclusion_proof"], receipt["inclusion_proof"]);
        let fresh = api.get("/v1/log/checkpoint", Some(&tokens.southwind)).await;
        assert_eq!((fresh.status, fresh.content_type.as_str()), (200, "text/plain; charset=utf-8"));
        let fresh = String::from_utf8(fresh.bytes).expect("text");
        open_note(&fresh, &[deployment_key().verifier()]).expect("a fresh checkpoint verifies");
        let consistency = api.get(&format!("/v1/log/consistency?from=1&to={}", checkpoint.size), Some(&tokens.meridian)).await;
        assert_eq!(consistency.status, 200);
        assert_eq!(consistency.json()["to_root"].as_str(), Some(revshare_core::transparency::b64(&checkpoint.root).as_str()));
        let beyond = api.get(&format!("/v1/log/inclusion?leaf={}", checkpoint.size + 5), Some(&tokens.auditor)).await.problem(400);
        assert!(beyond["detail"].as_str().is_some_and(|d| d.contains("is not in the tree")), "{beyond}");

        // A leaf's event only to those it concerns: the batch to its host and to the licensor of
        // its records, the agreement to its parties, the deployment's key to everyone. To anyone
        // else the leaf is not there, and the answer names nothing of it.
        for (leaf, token, readable) in [
            (index, &tokens.northwind, true),
            (index, &tokens.southwind, false),
            (index, &tokens.meridian, true),
            (index, &tokens.aurora, false),
            (1, &tokens.meridian, true),
            (1, &tokens.northwind, true),
            (1, &tokens.aurora, false),
            (1, &tokens.southwind, false),
            (0, &tokens.southwind, true),
        ] {
            let reply = api.get(&format!("/v1/log/inclusion?leaf={leaf}"), Some(token)).await;
            if readable {
                assert_eq!(reply.status, 200, "leaf {leaf}: {}", String::from_utf8_lossy(&reply.bytes));
                // The event and its salt are what the tree commits to.
                let answer = reply.json();
                let salt: Salt = b64_bytes(&answer["salt"]).try_into().expect("a 32-byte salt");
                let committed = commitment(&salt, answer["event"].as_str().expect("the event").as_bytes());
                assert_eq!(b64_bytes(&answer["commitment"]), committed);
                let proof: Vec<Hash> = answer["inclusion_proof"]
                    .as_array()
                    .expect("a proof")
                    .iter()
                    .map(|h| b64_bytes(h).try_into().expect("a hash"))
                    .collect();
                let (size, root) = (answer["tree_size"].as_u64().expect("size"), b64_bytes(&answer["root"]).try_into().expect("root"));
                merkle::verify_inclusion(&merkle::leaf_hash(&committed), leaf, size, &proof, &root).expect("the event is in the tree");
                continue;
            }
            let text = String::from_utf8_lossy(&reply.bytes).into_owned();
            let problem = reply.problem(404);
            assert_eq!(problem["detail"], format!("there is no log leaf {leaf} that this token may read"), "{problem}");
            assert!(!text.contains("northwind") && !text.contains("meridian"), "leaf {leaf}: {text}");
        }

        // Every answer, authenticated or refused, a problem or not, is neither cached nor sniffed.
        let protected = (Some("no-store".to_owned()), Some("nosniff".to_owned()));
        for (path, token) in [
            ("/v1/balances", Some(tokens.meridian.as_str())),
            ("/v1/balances", None),
            ("/v1/log/inclusion?leaf=1", Some(tokens.aurora.as_str())),
            ("/no/such/route", None),
            ("/healthz", None),
        ] {
            assert_eq!(api.get(path, token).await.protections, protected, "{path}");
        }
        // A path that does not decode is a problem too, never plain text.
        let undecodable = api.get("/v1/statements/%FF/2026-10", Some(&tokens.meridian)).await;
        assert_eq!((undecodable.content_type.as_str(), undecodable.protections.clone()), ("application/problem+json", protected.clone()));
        let problem = undecodable.problem(400);
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{problem}");
        // A method a route does not answer is a problem, naming what the route answers.
        let wrong = api.send(reqwest::Method::DELETE, "/v1/balances", Some(&tokens.meridian), None, Vec::new()).await;
        assert_eq!(wrong.content_type, "application/problem+json");
        assert_eq!(wrong.protections, protected);
        let problem = wrong.problem(405);
        assert_eq!(problem["detail"], "this route does not answer DELETE; it answers GET, HEAD", "{problem}");

        // Metrics count the records and time the routes by pattern (the recorder is the process's:
        // other tests add to the counts).
        let metrics = String::from_utf8(api.get("/metrics", None).await.bytes).expect("text");
        let accepted = metrics
            .lines()
            .find_map(|l| l.strip_prefix("revshare_usage_records_total{outcome=\"accepted\"} "))
            .and_then(|n| n.trim().parse::<u64>().ok());
        assert!(accepted.is_some_and(|n| n >= 7), "accepted records are counted: {metrics}");
        assert!(metrics.contains("route=\"/v1/usage\""), "{metrics}");
        assert!(metrics.contains("route=\"/v1/log/inclusion\""), "{metrics}");
        // Made-up methods and paths fold into one label each: no client adds series at will.
        let probe = reqwest::Method::from_bytes(b"PROBEXXXX").expect("a method token");
        assert_eq!(api.send(probe, "/no/such/route-123", None, None, Vec::new()).await.status, 404);
        let metrics = String::from_utf8(api.get("/metrics", None).await.bytes).expect("text");
        assert!(!metrics.contains("PROBEXXXX") && !metrics.contains("route-123"), "{metrics}");
        assert!(metrics.contains("method=\"other\""), "{metrics}");
        assert!(!metrics.contains("northwind"), "no party in the metrics");
        api.stop().await;
    });
    let mut store = open(db);
    assert_eq!(store.records(&agreement_id(), october()).expect("records").len(), 6, "the batch is in the store (e7 is November's)");
}

fn every_format_is_read_and_resends_are_duplicates(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let lines = northwind_lines();
        let first = api.post_usage(&tokens.northwind, "application/jsonl", &lines).await.json();
        assert_eq!(first["accepted"], 7);
        let array = format!("[{}]", lines.lines().collect::<Vec<_>>().join(",\n"));
        let again = api.post_usage(&tokens.northwind, "application/json; charset=utf-8", &array).await;
        assert_eq!(again.status, 200, "{}", String::from_utf8_lossy(&again.bytes));
        assert_eq!(
            (again.json()["accepted"].as_u64(), again.json()["duplicates"].as_u64()),
            (Some(0), Some(8)),
            "a resend is acknowledged and counted"
        );
        let events = json!([{
            "specversion": "1.0", "id": "ce-1", "source": "//northwind/billing", "type": "revshare.usage.v1",
            "time": "2026-10-03T10:00:00Z",
            "data": {"host": "northwind", "model": "m-8b", "use_case": "search", "region": "us", "requests": 1,
                     "input_tokens": 10, "output_tokens": 5, "revenue": "0.10", "currency": "USD"}
        }]);
        let cloud = api.post_usage(&tokens.northwind, "application/cloudevents-batch+json", &events.to_string()).await.json();
        assert_eq!(cloud["accepted"], 1, "{cloud}");
        let southwind: String = USAGE.lines().filter(|l| l.contains("\"host\":\"southwind\"")).collect();
        let theirs = api.post_usage(&tokens.southwind, "application/x-ndjson", &southwind).await.json();
        assert_eq!(
            (theirs["accepted"].as_u64(), theirs["unmatched"].as_u64()),
            (Some(1), Some(1)),
            "a host reports its own usage: {theirs}"
        );
        let text = api.post_usage(&tokens.northwind, "text/plain", &lines).await.problem(415);
        assert!(text["detail"].as_str().is_some_and(|d| d.contains("application/x-ndjson")), "{text}");
        api.stop().await;
    });
    assert_eq!(open(db).records(&agreement_id(), october()).expect("records").len(), 7, "October: six of the example and one event");
}

/// Northwind's claim of 5.00 on October's statement, made at `at`.
fn host_claim(at: Instant) -> Transition {
    Transition {
        state: State::Open,
        actor: Actor { party: "northwind".to_owned(), role: ActorRole::Host },
        at,
        reason: "a test tenant".to_owned(),
        amount: Some(500),
        evidence: vec![],
        arbiter: None,
    }
}

fn refused_calls_change_nothing(db: &dyn TestDb) {
    let (tokens, canonical, revoked) = {
        let mut store = open(db);
        let tokens = register_with_october(store.as_mut());
        let revoked = add_token(store.as_mut(), "ledgerwise", Role::Auditor, "revoked");
        store.revoke_token(&auth::id_of(&auth::hash(&revoked))).expect("revoke");
        let canonical = close_october(store.as_mut());
        store.open_dispute(&agreement_id(), october(), None, None, host_claim(clock())).expect("dispute 1");
        (tokens, canonical, revoked)
    };
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let before = api.with_store(|store| snapshot(store)).await;
        let new_record = northwind_record("e99");

        // Only the host writes its usage: every other token is refused, naming the record.
        for token in [&tokens.southwind, &tokens.meridian, &tokens.aurora, &tokens.auditor, &tokens.arbiter] {
            let reply = api.post_usage(token, "application/x-ndjson", &new_record).await;
            let problem = reply.problem(403);
            if token == &tokens.southwind {
                assert_eq!(problem["errors"][0]["record"], "e99", "{problem}");
                assert_eq!(problem["errors"][0]["line"], 1);
                assert_eq!(problem["errors"][0]["field"], "host");
            } else {
                assert!(problem["detail"].as_str().is_some_and(|d| d.contains("only a host may report usage")), "{problem}");
            }
        }

        // A JSON route takes JSON only: text, a form or no Content-Type is 415, before the body
        // is read, and names what to send.
        let payment = json!({"agreement": "meridian-northwind", "amount": "1.00", "reference": "wire-415"}).to_string().into_bytes();
        for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
            let reply = api.send(reqwest::Method::POST, "/v1/payments", Some(&tokens.northwind), content_type, payment.clone()).await;
            let problem = reply.problem(415);
            assert!(problem["detail"].as_str().is_some_and(|d| d.contains("`Content-Type: application/json`")), "{problem}");
        }
        let party = json!({"id": "westwind", "name": "W", "role": "host"}).to_string().into_bytes();
        api.send(reqwest::Method::POST, "/v1/parties", Some(&tokens.operator), Some("text/plain"), party).await.problem(415);

        // Another party's agreement is not found, exactly like one that does not exist.
        let missing = api.get("/v1/statements/meridian-nowhere/2026-10", Some(&tokens.southwind)).await.problem(404);
        for token in [&tokens.southwind, &tokens.aurora] {
            let theirs = api.get("/v1/statements/meridian-northwind/2026-10", Some(token)).await.problem(404);
            assert_eq!(
                theirs["detail"].as_str().map(|d| d.replace("meridian-northwind", "X")),
                missing["detail"].as_str().map(|d| d.replace("meridian-nowhere", "X")),
                "a refusal does not reveal that the agreement exists"
            );
            api.get("/v1/statements?agreement=meridian-northwind", Some(token)).await.problem(404);
            api.get("/v1/agreements/meridian-northwind", Some(token)).await.problem(404);
            let listed = api.get("/v1/statements", Some(token)).await.json();
            assert_eq!(listed, json!({"items": [], "next_cursor": null}), "no statement of others is listed");
            let balances = api.get("/v1/balances", Some(token)).await.json();
            assert_eq!(balances["balances"], json!([]), "no balance of others is shown");
        }

        // The writes of the CLI: each refused for every role but the one party allowed, on another
        // party's agreement (a foreign agreement is not found, as for the reads).
        let digest = api.with_store(|store| store.statement(&agreement_id(), october()).expect("read").expect("closed").head.digest).await;
        let foreign_key = SignerKey::from_seed("southwind", [8; 32]).expect("a key");
        let signature = countersignature(&foreign_key, &digest);
        let signatures = "/v1/statements/meridian-northwind/2026-10/signatures";
        api.post_json(signatures, &tokens.southwind, &signature).await.problem(404);
        for token in [&tokens.meridian, &tokens.aurora, &tokens.auditor, &tokens.arbiter] {
            api.post_json(signatures, token, &signature).await.problem(403);
        }
        for token in [&tokens.aurora, &tokens.northwind, &tokens.southwind, &tokens.auditor, &tokens.arbiter] {
            let reply =
                api.send(reqwest::Method::POST, "/v1/agreements", Some(token), Some("application/toml"), amendment().into_bytes()).await;
            reply.problem(403);
        }
        let close = json!({"agreement": "meridian-northwind", "period": "2026-11"});
        api.post_json("/v1/close", &tokens.aurora, &close).await.problem(404);
        for token in [&tokens.northwind, &tokens.southwind, &tokens.auditor, &tokens.arbiter] {
            api.post_json("/v1/close", token, &close).await.problem(403);
        }
        // A payment is its agreement's parties' to record (the payer's pends, the payee's posts).
        for from in ["host", "licensor"] {
            let payment =
                json!({"agreement": "meridian-northwind", "amount": "10.00", "reference": format!("refused-{from}"), "from": from});
            for token in [&tokens.southwind, &tokens.aurora] {
                api.post_json("/v1/payments", token, &payment).await.problem(404);
            }
            for token in [&tokens.auditor, &tokens.arbiter] {
                api.post_json("/v1/payments", token, &payment).await.problem(403);
            }
        }
        let confirmation = json!({"agreement": "meridian-northwind", "reference": "refused-host"});
        api.post_json("/v1/payments/confirmations", &tokens.southwind, &confirmation).await.problem(404);
        api.post_json("/v1/payments/confirmations", &tokens.meridian, &confirmation).await.problem(404);

        // The registry: parties are the operator's to register, models each licensor's own,
        // aliases each host's own; another party's is refused, naming the field. The operator
        // registers, and changes nothing registered.
        let party = json!({"id": "intruder", "name": "Intruder", "role": "host"});
        for token in [&tokens.northwind, &tokens.southwind, &tokens.meridian, &tokens.aurora, &tokens.auditor, &tokens.arbiter] {
            api.post_json("/v1/parties", token, &party).await.problem(403);
        }
        let changed = json!({"id": "northwind", "name": "Not Northwind", "role": "host"});
        let conflict = api.post_json("/v1/parties", &tokens.operator, &changed).await.problem(409);
        assert_eq!(conflict["errors"][0]["field"], "id", "{conflict}");
        // Nor does the operator write anything of an agreement, or read it.
        for (path, body) in [
            ("/v1/usage", json!({})),
            ("/v1/close", json!({"agreement": "meridian-northwind", "period": "2026-10"})),
            ("/v1/models", json!({"id": "m-ops", "owner": "meridian"})),
        ] {
            let reply = api.post_json(path, &tokens.operator, &body).await;
            assert!(matches!(reply.status, 403 | 404 | 415), "{path}: {}", String::from_utf8_lossy(&reply.bytes));
        }
        let model = json!({"id": "m-foreign", "owner": "meridian"});
        for token in [&tokens.auditor, &tokens.arbiter] {
            api.post_json("/v1/models", token, &model).await.problem(403);
        }
        for token in [&tokens.northwind, &tokens.southwind] {
            let underived = api.post_json("/v1/models", token, &model).await.problem(400);
            assert_eq!(underived["errors"][0]["field"], "derived_from", "a host registers derived models only: {underived}");
        }
        let foreign = api.post_json("/v1/models", &tokens.aurora, &model).await.problem(403);
        assert_eq!(foreign["errors"][0]["field"], "owner", "{foreign}");
        let changed = api.post_json("/v1/models", &tokens.aurora, &json!({"id": "m-8b", "derived_from": "m-70b"})).await.problem(409);
        assert_eq!(changed["errors"][0]["field"], "id", "another licensor's model is not changed: {changed}");
        let derived = api.post_json("/v1/models", &tokens.meridian, &json!({"id": "m-8b-ft", "derived_from": "m-nowhere"})).await;
        let nowhere = derived.problem(422);
        assert_eq!(nowhere["errors"][0]["field"], "derived_from");
        let foreign = api.post_json("/v1/models", &tokens.aurora, &json!({"id": "a-ft", "derived_from": "m-70b"})).await.problem(422);
        assert_eq!(foreign["errors"][0]["field"], "owner", "a licensor derives from its own models only: {foreign}");
        // SPEC §11: a host registers its fine-tune; it is meridian's, and northwind's alone to name.
        let tune = json!({"id": "m-70b-nw", "derived_from": "m-70b"});
        let created = api.post_json("/v1/models", &tokens.northwind, &tune).await;
        assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.bytes));
        assert_eq!(created.json(), json!({"id": "m-70b-nw", "owner": "meridian", "derived_from": "m-70b"}));
        for token in [&tokens.northwind, &tokens.meridian, &tokens.operator] {
            assert_eq!(api.get("/v1/models/m-70b-nw", Some(token)).await.json()["owner"], "meridian");
        }
        let no_model = api.get("/v1/models/m-nowhere", Some(&tokens.southwind)).await.problem(404);
        for token in [&tokens.southwind, &tokens.aurora] {
            let hidden = api.get("/v1/models/m-70b-nw", Some(token)).await.problem(404);
            assert_eq!(
                hidden["detail"].as_str().map(|d| d.replace("m-70b-nw", "X")),
                no_model["detail"].as_str().map(|d| d.replace("m-nowhere", "X"))
            );
        }
        let theirs = api.post_json("/v1/models", &tokens.southwind, &json!({"id": "sw-ft", "derived_from": "m-70b-nw"})).await.problem(422);
        let unknown =
            api.post_json("/v1/models", &tokens.southwind, &json!({"id": "sw-ft", "derived_from": "m-nowhere"})).await.problem(422);
        assert_eq!(
            theirs["detail"].as_str().map(|d| d.replace("m-70b-nw", "X")),
            unknown["detail"].as_str().map(|d| d.replace("m-nowhere", "X"))
        );
        let taken = api.post_json("/v1/models", &tokens.southwind, &tune).await.problem(409);
        assert!(!taken.to_string().contains("northwind"), "another host's model is not described: {taken}");
        let alias = json!({"host_model": "sw-70b", "model": "m-70b-nw"});
        assert_eq!(api.post_json("/v1/aliases", &tokens.southwind, &alias).await.problem(422)["errors"][0]["field"], "model");
        let alias = json!({"host": "northwind", "host_model": "nw-8b", "model": "m-8b"});
        for token in [&tokens.meridian, &tokens.aurora, &tokens.auditor, &tokens.arbiter] {
            api.post_json("/v1/aliases", token, &alias).await.problem(403);
        }
        let theirs = api.post_json("/v1/aliases", &tokens.southwind, &alias).await.problem(403);
        assert_eq!(theirs["errors"][0]["field"], "host", "{theirs}");
        let unknown = api.post_json("/v1/aliases", &tokens.northwind, &json!({"host_model": "nw-70b", "model": "m-nowhere"})).await;
        assert_eq!(unknown.problem(422)["errors"][0]["field"], "model");
        // A party record: another host's is not found, exactly as one that does not exist.
        let nowhere = api.get("/v1/parties/nowhere", Some(&tokens.southwind)).await.problem(404);
        let hidden = api.get("/v1/parties/northwind", Some(&tokens.southwind)).await.problem(404);
        assert_eq!(
            hidden["detail"].as_str().map(|d| d.replace("northwind", "X")),
            nowhere["detail"].as_str().map(|d| d.replace("nowhere", "X")),
            "a refusal does not reveal that the party exists"
        );
        // An agreement as JSON, of another licensor or by another role.
        let as_json = serde_json::to_vec(&agreement_json(2)).expect("JSON");
        for token in [&tokens.aurora, &tokens.northwind, &tokens.southwind, &tokens.auditor, &tokens.arbiter] {
            api.send(reqwest::Method::POST, "/v1/agreements", Some(token), Some("application/json"), as_json.clone()).await.problem(403);
        }
        // The bundle: not found for others, before a checkpoint is written.
        for token in [&tokens.southwind, &tokens.aurora] {
            api.get("/v1/statements/meridian-northwind/2026-10/bundle", Some(token)).await.problem(404);
        }

        // Disputes: another party's is not found; an auditor or an arbiter opens none; only the
        // side whose turn it is answers (here the licensor, which is not asked).
        let claim = json!({"agreement": "meridian-northwind", "period": "2026-10", "amount": "1.00", "reason": "x"});
        let answer = json!({"action": "accept", "reason": "x"});
        let moves = "/v1/disputes/1/transitions";
        for token in [&tokens.southwind, &tokens.aurora] {
            api.post_json("/v1/disputes", token, &claim).await.problem(404);
            api.post_json(moves, token, &answer).await.problem(404);
            api.get("/v1/disputes/1", Some(token)).await.problem(404);
            api.get("/v1/disputes?agreement=meridian-northwind", Some(token)).await.problem(404);
            assert_eq!(api.get("/v1/disputes", Some(token)).await.json()["items"], json!([]), "no dispute of others is listed");
        }
        for token in [&tokens.auditor, &tokens.arbiter] {
            api.post_json("/v1/disputes", token, &claim).await.problem(403);
        }
        for token in [&tokens.northwind, &tokens.auditor] {
            api.post_json(moves, token, &answer).await.problem(403);
        }
        // The agreement's arbiter sees a dispute only once it is escalated (to it).
        api.post_json(moves, &tokens.arbiter, &answer).await.problem(404);
        api.get("/v1/disputes/1", Some(&tokens.arbiter)).await.problem(404);
        assert_eq!(api.get("/v1/disputes", Some(&tokens.arbiter)).await.json()["items"], json!([]));

        for (path, body) in [
            ("/v1/disputes", &claim),
            (moves, &answer),
            (signatures, &signature),
            ("/v1/close", &close),
            ("/v1/payments", &json!({"agreement": "meridian-northwind", "amount": "10.00", "reference": "refused-1", "from": "host"})),
            ("/v1/parties", &party),
            ("/v1/models", &model),
            ("/v1/aliases", &alias),
        ] {
            for token in [None, Some(unknown_token()), Some(revoked.clone())] {
                let reply =
                    api.send(reqwest::Method::POST, path, token.as_deref(), Some("application/json"), body.to_string().into_bytes()).await;
                reply.problem(401);
            }
        }

        // Without a valid token, every route is refused (the checkpoint would write).
        let unknown = auth::encode(&[1; 32]);
        for path in [
            "/v1/statements",
            "/v1/statements/meridian-northwind/2026-10",
            "/v1/agreements/meridian-northwind",
            "/v1/balances",
            "/v1/log/checkpoint",
            "/v1/log/inclusion?leaf=0",
            "/v1/log/consistency?from=1",
            "/v1/statements/meridian-northwind/2026-10/bundle",
            "/v1/parties/northwind",
            "/v1/models/m-8b",
            "/v1/disputes",
            "/v1/disputes/1",
        ] {
            for token in [None, Some(unknown.as_str()), Some(revoked.as_str())] {
                api.get(path, token).await.problem(401);
            }
        }
        for token in [None, Some(unknown.as_str()), Some(revoked.as_str())] {
            let reply =
                api.send(reqwest::Method::POST, "/v1/usage", token, Some("application/x-ndjson"), new_record.clone().into_bytes()).await;
            reply.problem(401);
        }

        let after = api.with_store(|store| snapshot(store)).await;
        assert_eq!(before, after, "refused calls change nothing");

        // The parties of the agreement and the auditor granted it read the statement's bytes;
        // the arbiter (no dispute escalated to it) and the operator do not.
        for token in [&tokens.arbiter, &tokens.operator] {
            api.get("/v1/statements/meridian-northwind/2026-10", Some(token)).await.problem(404);
            assert_eq!(api.get("/v1/balances", Some(token)).await.json()["balances"], json!([]));
        }
        for token in [&tokens.northwind, &tokens.meridian, &tokens.auditor] {
            let reply = api.get("/v1/statements/meridian-northwind/2026-10", Some(token)).await;
            assert_eq!((reply.status, reply.content_type.as_str()), (200, "application/json"));
            assert_eq!(reply.bytes, canonical, "the statement's canonical bytes");
            let listed = api.get("/v1/statements?agreement=meridian-northwind", Some(token)).await.json();
            assert_eq!(listed["items"][0]["period"], "2026-10", "{listed}");
            let balances = api.get("/v1/balances", Some(token)).await.json();
            assert_eq!(balances["balances"][0]["debtor"]["party"], "northwind", "{balances}");
            let agreement = api.get("/v1/agreements/meridian-northwind", Some(token)).await.json();
            assert_eq!((agreement["version"].as_u64(), agreement["source"].as_str()), (Some(1), Some(AGREEMENT.as_str())), "{agreement}");
        }
        api.stop().await;
    });
}

fn concurrent_identical_batches_are_stored_once(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    let batch: String = (0..50).map(|i| format!("{}\n", northwind_record(&format!("c{i}")))).collect();
    run(async {
        let api = Arc::new(Api::start(db, 1 << 20).await);
        let mut clients = Vec::new();
        for _ in 0..8 {
            let (api, token, batch) = (Arc::clone(&api), tokens.northwind.clone(), batch.clone());
            clients.push(tokio::spawn(async move { api.post_usage(&token, "application/x-ndjson", &batch).await.json() }));
        }
        let mut accepted = Vec::new();
        for client in clients {
            let body = client.await.expect("a client");
            assert!(body["receipt"].is_object(), "every client is acknowledged with a receipt: {body}");
            accepted.push((body["accepted"].as_u64().expect("accepted"), body["duplicates"].as_u64().expect("duplicates")));
        }
        accepted.sort_unstable();
        assert_eq!(accepted, [vec![(0, 50); 7], vec![(50, 0)]].concat(), "one client stores the batch, the others are told it was there");
        let api = Arc::into_inner(api).expect("the clients are done");
        api.stop().await;
    });
    assert_eq!(open(db).records(&agreement_id(), october()).expect("records").len(), 50, "each record is stored once");
}

fn a_conflicting_resend_names_the_stored_record(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let lines = northwind_lines();
        assert_eq!(api.post_usage(&tokens.northwind, "application/x-ndjson", &lines).await.status, 200);
        let before = api.with_store(|store| snapshot(store)).await;
        let changed = format!("{}{}", northwind_record("new-1"), "\n") + &lines.replacen("\"1080.000000\"", "\"1080.50\"", 1);
        let problem = api.post_usage(&tokens.northwind, "application/x-ndjson", &changed).await.problem(409);
        let errors = problem["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), 1, "{problem}");
        assert_eq!((errors[0]["record"].as_str(), errors[0]["line"].as_u64()), (Some("e1"), Some(2)), "{problem}");
        assert!(errors[0]["message"].as_str().is_some_and(|m| m.contains("revenue")), "the differing field is named: {problem}");
        let after = api.with_store(|store| snapshot(store)).await;
        assert_eq!(before, after, "a conflicting batch stores nothing, not even its good records");
        api.stop().await;
    });
}

fn bad_records_are_listed_with_line_field_and_record(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let before = api.with_store(|store| snapshot(store)).await;
        let body = format!(
            "{}\n\n{}\n{}\n",
            northwind_record("ok-1"),
            northwind_record("bad-1").replace("\"1.50\"", "\"lots\""),
            northwind_record("bad-2").replace("\"currency\"", "\"prompt\":\"hello\",\"currency\"")
        );
        let problem = api.post_usage(&tokens.northwind, "application/x-ndjson", &body).await.problem(400);
        let errors = problem["errors"].as_array().expect("errors");
        let found: Vec<(u64, &str, &str)> = errors
            .iter()
            .map(|e| (e["line"].as_u64().unwrap_or(0), e["record"].as_str().unwrap_or(""), e["field"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(found, vec![(3, "bad-1", "revenue"), (4, "bad-2", "prompt")], "{problem}");
        let array = api.post_usage(&tokens.northwind, "application/json", "{\"not\": \"an array\"}").await.problem(400);
        assert!(array["errors"][0]["message"].as_str().is_some_and(|m| m.contains("JSON array")), "{array}");
        let empty = api.post_usage(&tokens.northwind, "application/x-ndjson", "\n").await.problem(400);
        assert!(empty["errors"][0]["message"].as_str().is_some_and(|m| m.contains("no records")), "{empty}");
        let after = api.with_store(|store| snapshot(store)).await;
        assert_eq!(before, after);
        api.stop().await;
    });
}

fn an_oversized_body_is_413(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1024).await;
        let before = api.with_store(|store| snapshot(store)).await;
        let batch: String = (0..10).map(|i| format!("{}\n", northwind_record(&format!("big-{i}")))).collect();
        assert!(batch.len() > 1024);
        let problem = api.post_usage(&tokens.northwind, "application/x-ndjson", &batch).await.problem(413);
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains("1024 bytes")), "{problem}");

        // Without a Content-Length (chunked), the limit holds while the body is read.
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let address = api.base.trim_start_matches("http://").to_owned();
            let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
            let head = format!(
                "POST /v1/usage HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-ndjson\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{batch}\r\n0\r\n\r\n",
                tokens.northwind,
                batch.len()
            );
            stream.write_all(head.as_bytes()).await.expect("send");
            let mut response = String::new();
            stream.read_to_string(&mut response).await.expect("the response");
            assert!(response.starts_with("HTTP/1.1 413"), "{response}");
            assert!(response.contains("application/problem+json"), "{response}");
        }
        assert_eq!(api.post_usage(&tokens.northwind, "application/x-ndjson", &northwind_record("small")).await.status, 200);
        let after = api.with_store(|store| snapshot(store)).await;
        assert_eq!(after.records.len(), before.records.len() + 1, "only the small batch is stored");
        api.stop().await;
    });
}

fn tokens_must_be_known_and_unrevoked(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let none = api.get("/v1/balances", None).await.problem(401);
        assert!(none["detail"].as_str().is_some_and(|d| d.contains("no Authorization header")), "{none}");
        let basic = api.send(reqwest::Method::GET, "/v1/balances", None, None, Vec::new()).await;
        assert_eq!(basic.status, 401);
        let foreign = api.get("/v1/balances", Some("abc")).await.problem(401);
        assert!(foreign["detail"].as_str().is_some_and(|d| d.contains("not a revshare token")), "{foreign}");
        let unknown = api.get("/v1/balances", Some(&auth::encode(&[9; 32]))).await.problem(401);
        assert!(unknown["detail"].as_str().is_some_and(|d| d.contains("not known")), "{unknown}");
        assert_eq!(api.get("/v1/balances", Some(&tokens.meridian)).await.status, 200);
        let id = auth::id_of(&auth::hash(&tokens.meridian));
        api.with_store(move |store| store.revoke_token(&id).expect("revoke")).await;
        let revoked = api.get("/v1/balances", Some(&tokens.meridian)).await.problem(401);
        assert!(revoked["detail"].as_str().is_some_and(|d| d.contains("revoked")), "{revoked}");
        assert_eq!(api.get("/v1/balances", Some(&tokens.auditor)).await.status, 200, "other tokens still work");
        api.stop().await;
    });
}

/// The bytes of a base64 JSON string.
#[track_caller]
fn b64_bytes(value: &Value) -> Vec<u8> {
    value.as_str().and_then(from_b64).unwrap_or_else(|| panic!("base64 text, not {value}"))
}

fn signed_batches_are_checked(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    let host_key = SignerKey::from_seed("northwind", [7; 32]).expect("a host key");
    open(db).add_key(Some(&pid("northwind")), &host_key.verifier()).expect("register the host's key");
    let lines = northwind_lines();
    let record_key = [3u8; 16];
    let digest = batch_digest(&parse_lines(&lines), &record_key);
    let signature = b64(&host_key.sign(&batch_message(&digest)));
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let send = |signature: String, key: Option<[u8; 16]>| {
            let mut request = api
                .client
                .post(format!("{}/v1/usage", api.base))
                .header("authorization", format!("Bearer {}", tokens.northwind))
                .header("content-type", "application/x-ndjson")
                .header("revshare-signature", format!("{} {signature}", host_key.verifier().to_text()))
                .body(lines.clone());
            if let Some(key) = key {
                request = request.header("revshare-record-key", b64(&key));
            }
            async move { request.send().await.expect("an answer") }
        };
        let forged = send(b64(&host_key.sign(b"something else")), Some(record_key)).await;
        assert_eq!(forged.status(), 422, "a wrong signature is refused");
        let other_key = send(signature.clone(), Some([4u8; 16])).await;
        assert_eq!(other_key.status(), 422, "a signature under another record-salt key is refused");
        let keyless = send(signature.clone(), None).await;
        assert_eq!(keyless.status(), 400, "a signature needs its record-salt key");
        let text = keyless.text().await.expect("a body");
        assert!(text.contains("Revshare-Record-Key"), "{text}");
        let good = send(signature, Some(record_key)).await;
        assert_eq!(good.status(), 200);
        api.stop().await;
    });
    assert_eq!(open(db).records(&agreement_id(), october()).expect("records").len(), 6);
}

fn a_party_registers_and_rotates_its_own_keys(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    let (first, second) = (SignerKey::from_seed("alpha", [21; 32]).expect("a key"), SignerKey::from_seed("beta", [22; 32]).expect("a key"));
    let (first_text, second_text) = (first.verifier().to_text(), second.verifier().to_text());
    let proof =
        |key: &SignerKey, party: &str| b64(&key.sign(&revshare_core::transparency::registration_message(party, &key.verifier().to_text())));
    let rotation = |by: &SignerKey, new: &str| json!({ "key": by.verifier().to_text(), "signature": b64(&by.sign(&revshare_core::transparency::rotation_message(Some("northwind"), new))) });
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let before = api.with_store(|store| snapshot(store)).await;
        // Refused, each changing nothing: a proof by another key, a proof for another party,
        // both members, neither.
        for (body, status, says) in [
            (json!({ "key": first_text, "proof": proof(&second, "northwind") }), 422, "proof of possession does not verify"),
            (json!({ "key": first_text, "proof": proof(&first, "southwind") }), 422, "proof of possession does not verify"),
            (
                json!({ "key": first_text, "proof": proof(&first, "northwind"), "rotation": rotation(&first, &second_text) }),
                400,
                "one of the two",
            ),
            (json!({ "key": first_text }), 400, "one of the two"),
        ] {
            let reply = api.post_json("/v1/keys", &tokens.northwind, &body).await;
            let problem = reply.problem(status);
            assert!(problem["detail"].as_str().is_some_and(|d| d.contains(says)), "{problem}");
        }
        assert_eq!(api.with_store(|store| snapshot(store)).await, before, "a refused key changes nothing");
        let registered =
            api.post_json("/v1/keys", &tokens.northwind, &json!({ "key": first_text, "proof": proof(&first, "northwind") })).await;
        assert_eq!(registered.status, 200, "{}", String::from_utf8_lossy(&registered.bytes));
        assert_eq!(registered.json()["key"], first_text.as_str());
        // A second first key is refused: a later key is a rotation signed by the current one.
        let again =
            api.post_json("/v1/keys", &tokens.northwind, &json!({ "key": second_text, "proof": proof(&second, "northwind") })).await;
        assert!(again.problem(422)["detail"].as_str().is_some_and(|d| d.contains("by a rotation signed with it")));
        let forged =
            api.post_json("/v1/keys", &tokens.northwind, &json!({ "key": second_text, "rotation": rotation(&second, &second_text) })).await;
        forged.problem(422);
        let rotated =
            api.post_json("/v1/keys", &tokens.northwind, &json!({ "key": second_text, "rotation": rotation(&first, &second_text) })).await;
        assert_eq!(rotated.status, 200, "{}", String::from_utf8_lossy(&rotated.bytes));
        assert_eq!(rotated.json()["replaces"], first_text.as_str());
        // Another party cannot register the host's key as its own, nor learn whose it is.
        let taken =
            api.post_json("/v1/keys", &tokens.southwind, &json!({ "key": second_text, "proof": proof(&second, "southwind") })).await;
        let text = String::from_utf8_lossy(&taken.bytes).into_owned();
        taken.problem(422);
        assert!(!text.contains("northwind"), "{text}");
        // The host's own key history; the other host sees none of it.
        let own = api.get("/v1/keys", Some(&tokens.northwind)).await.json();
        let mine: Vec<&Value> = own["items"].as_array().expect("keys").iter().filter(|k| k["party"] == "northwind").collect();
        assert_eq!(mine.len(), 2);
        assert_eq!(mine[1]["replaces"], first_text.as_str());
        let theirs = api.get("/v1/keys", Some(&tokens.southwind)).await;
        assert!(!String::from_utf8_lossy(&theirs.bytes).contains("northwind"), "another party's keys are not shown");
        // The replaced key signs no new batch.
        let lines = northwind_record("after-rotation");
        let record_key = [6u8; 16];
        let digest = batch_digest(&parse_lines(&lines), &record_key);
        for (key, status) in [(&first, 422), (&second, 200)] {
            let reply = api
                .client
                .post(format!("{}/v1/usage", api.base))
                .header("authorization", format!("Bearer {}", tokens.northwind))
                .header("content-type", "application/x-ndjson")
                .header("revshare-signature", format!("{} {}", key.verifier().to_text(), b64(&key.sign(&batch_message(&digest)))))
                .header("revshare-record-key", b64(&record_key))
                .body(lines.clone())
                .send()
                .await
                .expect("an answer");
            assert_eq!(reply.status(), status);
        }
        api.stop().await;
    });
}

fn requests_over_the_rate_limit_are_429(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        // 1 a second: a burst of 1, then one a second. Two requests in a row take far less than
        // a second, so the second is over.
        let api = Api::start_limited(db, 1 << 20, 1).await;
        let before = api.with_store(|store| snapshot(store)).await;
        assert_eq!(api.get("/v1/balances", Some(&tokens.northwind)).await.status, 200);
        let over = api.post_usage(&tokens.northwind, "application/x-ndjson", &northwind_record("limited")).await;
        let problem = over.problem(429);
        assert_eq!(over.retry_after.as_deref(), Some("1"), "{problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains("rate limit")), "{problem}");
        assert_eq!(api.get("/v1/balances", Some(&tokens.auditor)).await.status, 200, "other tokens have their own limit");
        // Unknown tokens are limited by the client's address: the second in a row is refused
        // before the store is asked. Telling a good token from a bad one needs that lookup, so
        // the address waits out its Retry-After whatever it sends.
        let unknown = "rs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        api.get("/v1/balances", Some(unknown)).await.problem(401);
        for token in [unknown, tokens.southwind.as_str()] {
            let refused = api.get("/v1/balances", Some(token)).await;
            assert_eq!(refused.retry_after.as_deref(), Some("1"));
            let problem = refused.problem(429);
            assert!(problem["detail"].as_str().is_some_and(|d| d.contains("unknown or revoked token from this address")), "{problem}");
        }
        let after = api.with_store(|store| snapshot(store)).await;
        assert_eq!(before, after, "a refused request stores nothing");
        api.stop().await;
    });
}

fn shutdown_finishes_the_request_in_flight(db: &dyn TestDb) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let tokens = register(open(db).as_mut());
    let body = northwind_lines();
    run(async {
        let Api { base, stop, done, .. } = Api::start(db, 1 << 20).await;
        let address = base.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
        let mut stream = BufReader::new(stream);
        // `Expect: 100-continue`: the server says `100 Continue` when the handler starts reading
        // the body, so the request is known to be in flight before the shutdown begins.
        let head = format!(
            "POST /v1/usage HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-ndjson\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            tokens.northwind,
            body.len()
        );
        stream.get_mut().write_all(head.as_bytes()).await.expect("send the head");
        let mut line = String::new();
        stream.read_line(&mut line).await.expect("read");
        assert!(line.starts_with("HTTP/1.1 100"), "the handler reads the body: {line}");
        stream.read_line(&mut line).await.expect("the blank line after 100 Continue");

        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        stream.get_mut().write_all(body.as_bytes()).await.expect("send the body after the shutdown began");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("the response");
        assert!(response.starts_with("HTTP/1.1 200"), "the request in flight is finished: {response}");
        assert!(response.contains("\"accepted\":7"), "{response}");
        if let Some(done) = done {
            done.await.expect("the server task").expect("the server stops cleanly after the request");
        }
        assert!(tokio::net::TcpStream::connect(&address).await.is_err(), "no new connections after the shutdown");
    });
    assert_eq!(open(db).records(&agreement_id(), october()).expect("records").len(), 6, "what was acknowledged is stored");
}

/// A client that stops sending mid-head is let go after the head's timeout, and one that stops
/// mid-body gets 408 after the body's idle timeout (1 s each in these tests), nothing stored; one that keeps trickling its body is cut off once the shutdown's grace
/// (2 s here) is over, and the server stops; nothing of it is stored.
fn slow_clients_are_answered_and_cut_off(db: &dyn TestDb) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let tokens = register(open(db).as_mut());
    let body = northwind_lines();
    let before = snapshot(open(db).as_mut());
    run(async {
        let Api { base, stop, done, .. } = Api::start(db, 1 << 20).await;
        let address = base.trim_start_matches("http://").to_owned();
        let head = format!(
            "POST /v1/usage HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-ndjson\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            tokens.northwind,
            body.len()
        );
        // Half a head, then nothing: the connection is closed after the head's timeout.
        let mut headless = tokio::net::TcpStream::connect(&address).await.expect("connect");
        headless
            .write_all(format!("POST /v1/usage HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bea").as_bytes())
            .await
            .expect("half a head");
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), headless.read_to_end(&mut answer))
            .await
            .expect("let go, not left waiting")
            .expect("the connection ends");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "after about the head's timeout: {:?}", started.elapsed());

        // Half a body, then nothing.
        let mut stalled = tokio::net::TcpStream::connect(&address).await.expect("connect");
        stalled.write_all(head.as_bytes()).await.expect("the head");
        stalled.write_all(&body.as_bytes()[..body.len() / 2]).await.expect("half the body");
        let started = std::time::Instant::now();
        let mut response = String::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), stalled.read_to_string(&mut response))
            .await
            .expect("answered, not left waiting")
            .expect("the response");
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains("nothing was stored"), "{response}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "after about the idle timeout: {:?}", started.elapsed());

        // A body trickled a byte at a time, never pausing long enough for the idle timeout.
        let mut trickling = tokio::net::TcpStream::connect(&address).await.expect("connect");
        trickling.write_all(head.as_bytes()).await.expect("the head");
        let bytes = body.clone().into_bytes();
        let trickle = tokio::spawn(async move {
            for byte in bytes.iter().take(bytes.len() - 1) {
                if trickling.write_all(std::slice::from_ref(byte)).await.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let stopping = std::time::Instant::now();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(done) = done {
            tokio::time::timeout(std::time::Duration::from_secs(10), done)
                .await
                .expect("the server stops after its grace period, whatever the client does")
                .expect("the server task")
                .expect("served");
        }
        let took = stopping.elapsed();
        assert!(took >= std::time::Duration::from_millis(1_500) && took < std::time::Duration::from_secs(6), "{took:?}");
        trickle.abort();
    });
    assert_eq!(snapshot(open(db).as_mut()), before, "nothing of either is stored");
}

fn a_licensor_closes_a_month_once_and_its_host_countersigns(db: &dyn TestDb) {
    let tokens = {
        let mut store = open(db);
        let tokens = register_with_october(store.as_mut());
        store.add_key(Some(&pid("northwind")), &host_key().verifier()).expect("register the host's key");
        tokens
    };
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let close = json!({"agreement": "meridian-northwind", "period": "2026-10"});
        let reply = api.post_json("/v1/close", &tokens.meridian, &close).await;
        assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.bytes));
        assert_eq!(reply.header("location"), Some("/v1/statements/meridian-northwind/2026-10"));
        let closed = reply.json();
        assert_eq!(
            (closed["period"].as_str(), closed["sequence"].as_u64(), closed["kind"].as_str()),
            (Some("2026-10"), Some(1), Some("original"))
        );
        let digest = closed["digest"].as_str().expect("a digest").to_owned();
        let again = api.post_json("/v1/close", &tokens.meridian, &close).await.problem(409);
        assert!(again["detail"].as_str().is_some_and(|d| d.contains("already closed")), "{again}");
        let bad_month =
            api.post_json("/v1/close", &tokens.meridian, &json!({"agreement": "meridian-northwind", "period": "October"})).await;
        bad_month.problem(400);

        let signatures = "/v1/statements/meridian-northwind/2026-10/signatures";
        let forged = countersignature(&host_key(), "sha256:0000");
        let refused = api.post_json(signatures, &tokens.northwind, &forged).await.problem(422);
        assert_eq!(refused["type"], "urn:revshare:problem:signature-refused", "{refused}");
        api.post_json(signatures, &tokens.northwind, &json!({"key": "k"})).await.problem(400);
        let signed = api.post_json(signatures, &tokens.northwind, &countersignature(&host_key(), &digest)).await;
        assert_eq!(signed.status, 200, "{}", String::from_utf8_lossy(&signed.bytes));
        assert_eq!(signed.json()["key"].as_str(), Some(host_key().verifier().to_text().as_str()));
        api.stop().await;
    });
    let mut store = open(db);
    let stored = store.statement(&agreement_id(), october()).expect("read").expect("the month is closed");
    let keys: Vec<String> = store.statement_signatures(&stored).expect("signatures").into_iter().map(|s| s.key).collect();
    let mut expected = vec![deployment_key().verifier().to_text(), host_key().verifier().to_text()];
    expected.sort();
    assert_eq!(keys, expected, "signed by the deployment on close and countersigned by the host");
    assert_eq!(store.journal().expect("journal").len(), 1, "the statement's entry is posted once");
}

fn a_licensor_registers_its_agreements_and_problems_are_located(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let post = |text: String, content_type: &'static str| {
            api.send(reqwest::Method::POST, "/v1/agreements", Some(&tokens.meridian), Some(content_type), text.into_bytes())
        };
        let registered = post(amendment(), "application/toml").await;
        assert_eq!(registered.status, 201, "{}", String::from_utf8_lossy(&registered.bytes));
        assert_eq!(registered.header("location"), Some("/v1/agreements/meridian-northwind"));
        let view = registered.json();
        assert_eq!((view["id"].as_str(), view["version"].as_u64()), (Some("meridian-northwind"), Some(2)), "{view}");
        assert_eq!(view["source"].as_str(), Some(amendment().as_str()));

        let broken = AGREEMENT.replace("version = 1", "version = 3").replace("currency = \"USD\"", "currency = 12");
        let problem = post(broken, "application/toml").await.problem(400);
        let errors = problem["errors"].as_array().expect("errors");
        assert!(!errors.is_empty(), "{problem}");
        assert!(errors.iter().all(|e| e["line"].is_u64() && e["column"].is_u64()), "each problem is located: {problem}");
        assert!(errors.iter().any(|e| e["line"] == 7), "the currency's line: {problem}");
        post(amendment(), "text/plain").await.problem(415);
        api.stop().await;
    });
    assert_eq!(open(db).agreement(&agreement_id(), None).expect("the agreement").version(), 2, "only the amendment is stored");
}

fn each_side_records_its_own_payments(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let payment = |amount: &str, reference: &str, from: &str| json!({"agreement": "meridian-northwind", "amount": amount, "reference": reference, "from": from});
        let confirm = |reference: &str| json!({"agreement": "meridian-northwind", "reference": reference});
        // Recorded by the payer: pending, shown apart, in no balance. The payer is the token's
        // party unless the body names another.
        let by_token = json!({"agreement": "meridian-northwind", "amount": "100.00", "reference": "wire-1"});
        let paid = api.post_json("/v1/payments", &tokens.northwind, &by_token).await;
        assert_eq!(paid.status, 201, "{}", String::from_utf8_lossy(&paid.bytes));
        assert_eq!(paid.header("location"), Some("/v1/payments/meridian-northwind/wire-1"));
        assert_eq!((paid.json()["reference"].as_str(), paid.json()["state"].as_str()), (Some("wire-1"), Some("pending")));
        let balances = api.get("/v1/balances", Some(&tokens.northwind)).await.json();
        assert_eq!(balances["balances"], json!([]), "{balances}");
        assert_eq!(balances["pending"][0]["reference"], "wire-1", "{balances}");
        assert_eq!((balances["pending"][0]["amount"].as_str(), balances["pending"][0]["from"].as_str()), (Some("100.00"), Some("host")));
        assert_eq!(api.get("/v1/balances", Some(&tokens.southwind)).await.json()["pending"], json!([]), "another host sees none");
        // The payer cannot confirm its own payment; the payee does, once.
        let own = api.post_json("/v1/payments/confirmations", &tokens.northwind, &confirm("wire-1")).await.problem(403);
        assert!(own["detail"].as_str().is_some_and(|d| d.contains("the licensor confirms a payment from the host")), "{own}");
        let posted = api.post_json("/v1/payments/confirmations", &tokens.meridian, &confirm("wire-1")).await;
        assert_eq!(posted.status, 200, "{}", String::from_utf8_lossy(&posted.bytes));
        assert_eq!(posted.json()["state"], "posted");
        api.post_json("/v1/payments/confirmations", &tokens.meridian, &confirm("wire-1")).await.problem(404);
        // The licensor pays back; the host confirms.
        let back = api
            .post_json(
                "/v1/payments",
                &tokens.meridian,
                &json!({"agreement": "meridian-northwind", "amount": "40.00", "reference": "wire-2"}),
            )
            .await;
        assert_eq!(back.json()["state"], "pending");
        assert_eq!(api.post_json("/v1/payments/confirmations", &tokens.northwind, &confirm("wire-2")).await.status, 200);
        // Recorded by the payee itself: posted at once.
        let direct = api.post_json("/v1/payments", &tokens.meridian, &payment("5.00", "wire-3", "host")).await;
        assert_eq!(direct.json()["state"], "posted");
        let twice = api.post_json("/v1/payments", &tokens.northwind, &payment("100.00", "wire-1", "host")).await;
        assert_eq!(twice.status, 422, "a reference is recorded once: {}", String::from_utf8_lossy(&twice.bytes));
        let places = api.post_json("/v1/payments", &tokens.northwind, &payment("1.001", "wire-4", "host")).await.problem(400);
        assert!(places["detail"].as_str().is_some_and(|d| d.contains("decimal places")), "{places}");
        let huge =
            api.post_json("/v1/payments", &tokens.northwind, &payment("9223372036854775808.00", "wire-5", "host")).await.problem(400);
        assert!(huge["detail"].as_str().is_some_and(|d| d.contains("1000000000000.00 USD")), "the bound is named: {huge}");
        api.post_json("/v1/payments", &tokens.northwind, &json!({"agreement": "meridian-northwind"})).await.problem(400);
        let balances = api.get("/v1/balances", Some(&tokens.auditor)).await.json();
        assert_eq!(balances["balances"][0]["debtor"]["party"], "meridian", "{balances}");
        assert_eq!(balances["balances"][0]["amount"], "65.00", "{balances}");
        assert_eq!(balances["pending"], json!([]), "{balances}");
        api.stop().await;
    });
    assert_eq!(open(db).journal().expect("journal").len(), 3);
}

fn the_dashboard_signs_in_and_its_forms_do_what_the_api_does(db: &dyn TestDb) {
    let tokens = register_with_october(open(db).as_mut());
    close_october(open(db).as_mut());
    let statement = open(db).statement(&agreement_id(), october()).expect("read").expect("October's statement");
    let net = statement.statement().expect("decodes").totals.net_payable;
    let shown = revshare_core::text::grouped(&revshare_core::money::Currency::parse("USD").expect("USD").format(net));
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let text = |reply: &Reply| String::from_utf8_lossy(&reply.bytes).into_owned();
        let location =
            |reply: &Reply| reply.headers.iter().find(|(n, _)| n == "location").map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        // Signed out, every page sends to the sign-in form.
        let signed_out = api.page("/statements", None).await;
        assert_eq!((signed_out.status, location(&signed_out).as_deref()), (303, Some("/signin")));
        // The sign-in form: its own token, then a known, unrevoked bearer token.
        let form = api.page("/signin", None).await;
        let (cookie, csrf) = (form.cookie("rs_signin").expect("a cookie"), form.csrf().expect("a form token"));
        let set = form.headers.iter().find(|(n, _)| n == "set-cookie").map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        assert!(set.is_some_and(|c| c.contains("HttpOnly") && c.contains("SameSite=Strict")));
        let signin_cookie = format!("rs_signin={cookie}");
        let forged = api.form("/signin", &signin_cookie, &[("token", &tokens.northwind)], None).await;
        assert_eq!(forged.status, 403, "no form token: {}", text(&forged));
        let unknown = api.form("/signin", &signin_cookie, &[("csrf", &csrf), ("token", &unknown_token())], None).await;
        assert_eq!(unknown.status, 401);
        assert!(text(&unknown).contains("not known here") && unknown.cookie("rs_session").is_none());
        let host = api.sign_in(&tokens.northwind).await;
        let licensor = api.sign_in(&tokens.meridian).await;

        // Pages show the caller's own: October's statement with its money, its lines, its usage.
        let statements = api.page("/statements", Some(&host)).await;
        assert_eq!(statements.status, 200, "{}", text(&statements));
        assert!(text(&statements).contains(&format!("{shown} USD")), "the net payable {shown} is listed");
        let page = api.page("/statements/meridian-northwind/2026-10", Some(&host)).await;
        assert!(page.status == 200 && text(&page).contains("<svg role=\"img\"") && text(&page).contains("Net payable"), "{}", text(&page));
        assert!(page.headers.iter().any(|(n, v)| n == "content-security-policy" && v.starts_with(b"default-src 'none'")));
        let usage = api.page("/usage?agreement=meridian-northwind&from=2026-10&to=2026-10", Some(&host)).await;
        assert!(usage.status == 200 && text(&usage).contains("2026-10-"), "{}", text(&usage));
        for path in ["/", "/disputes", "/payments", "/contributions"] {
            assert_eq!(api.page(path, Some(&licensor)).await.status, 200, "{path}");
        }
        // The same as CSV downloads: the statements with their money, the lines, the daily usage.
        let listed = csv_rows(&api.page("/statements?format=csv", Some(&host)).await);
        assert_eq!(
            listed.iter().map(|r| (r["agreement"].as_str(), r["period"].as_str())).collect::<Vec<_>>(),
            [("meridian-northwind", "2026-10")]
        );
        assert_eq!(listed[0]["net_payable"], revshare_core::money::Currency::parse("USD").expect("USD").format(net));
        let lines = csv_rows(&api.page("/statements/meridian-northwind/2026-10?format=csv", Some(&host)).await);
        assert_eq!(lines.len(), statement.statement().expect("decodes").lines.len());
        let days = csv_rows(&api.page("/usage?agreement=meridian-northwind&from=2026-10&to=2026-10&format=csv", Some(&host)).await);
        let records: u64 = days.iter().map(|d| d["records"].parse::<u64>().expect("a count")).sum();
        assert_eq!(records, statement.statement().expect("decodes").inputs.records, "the days hold the month's records");
        assert!(days.iter().all(|d| d["date"].starts_with("2026-10-") && d["currency"] == "USD"));
        let southwind = api.sign_in(&tokens.southwind).await;
        assert_eq!(api.page("/usage?agreement=meridian-northwind&format=csv", Some(&southwind)).await.status, 404);
        assert_eq!(api.page("/statements/meridian-northwind/2026-10", Some(&southwind)).await.status, 404);
        assert!(!text(&api.page("/statements", Some(&southwind)).await).contains("meridian-northwind"));

        // A form without its token, with another session's, or from another site: refused, nothing changes.
        let host_csrf = api.page("/payments", Some(&host)).await.csrf().expect("the page's form token");
        let licensor_csrf = api.page("/payments", Some(&licensor)).await.csrf().expect("the page's form token");
        let payment = [("agreement", "meridian-northwind"), ("amount", "12.50"), ("reference", "wire-9"), ("from", "host")];
        let before = api.with_store(|store| snapshot(store)).await;
        for (fields, origin) in [
            (payment.to_vec(), None),
            ([payment.as_slice(), &[("csrf", licensor_csrf.as_str())]].concat(), None),
            ([payment.as_slice(), &[("csrf", host_csrf.as_str())]].concat(), Some("http://evil.example")),
        ] {
            assert_eq!(api.form("/payments", &host, &fields, origin).await.status, 403);
        }
        assert_eq!(api.with_store(|store| snapshot(store)).await, before, "refused forms change nothing");

        // The host records a payment, the licensor confirms it: as the API would.
        let recorded = api.form("/payments", &host, &[payment.as_slice(), &[("csrf", host_csrf.as_str())]].concat(), None).await;
        assert_eq!((recorded.status, location(&recorded).as_deref()), (303, Some("/payments?done=payment-recorded")));
        let listed = text(&api.page("/payments?done=payment-recorded", Some(&host)).await);
        assert!(listed.contains("The payment is recorded.") && listed.contains("wire-9"), "{listed}");
        let twice = api.form("/payments", &host, &[payment.as_slice(), &[("csrf", host_csrf.as_str())]].concat(), None).await;
        assert_eq!(twice.status, 422, "the API's refusal, as a page");
        assert!(text(&twice).contains("already"), "{}", text(&twice));
        let confirm = [("agreement", "meridian-northwind"), ("reference", "wire-9"), ("csrf", licensor_csrf.as_str())];
        let own = api
            .form(
                "/payments/confirm",
                &host,
                &[("agreement", "meridian-northwind"), ("reference", "wire-9"), ("csrf", host_csrf.as_str())],
                None,
            )
            .await;
        assert_eq!(own.status, 403, "the payer does not confirm its own payment");
        assert_eq!(api.form("/payments/confirm", &licensor, &confirm, None).await.status, 303);
        let balances = api.get("/v1/balances", Some(&tokens.meridian)).await.json();
        assert_eq!(balances["pending"], json!([]), "{balances}");

        // Signing out ends the session; a revoked token ends its sessions.
        assert_eq!(api.form("/signout", &host, &[("csrf", host_csrf.as_str())], None).await.status, 303);
        assert_eq!(api.page("/payments", Some(&host)).await.status, 303);
        let meridian = auth::id_of(&auth::hash(&tokens.meridian));
        api.with_store(move |store| store.revoke_token(&meridian).map(|_| ()).map_err(|e| e.to_string())).await.expect("revoked");
        assert_eq!(api.page("/payments", Some(&licensor)).await.status, 303);
        api.stop().await;
    });
}

/// A CSV answer's rows, each a map from column to field.
fn csv_rows(reply: &Reply) -> Vec<std::collections::BTreeMap<String, String>> {
    assert!(reply.content_type.starts_with("text/csv"), "{} {}", reply.content_type, String::from_utf8_lossy(&reply.bytes));
    let mut reader = csv::Reader::from_reader(reply.bytes.as_slice());
    let columns: Vec<String> = reader.headers().expect("a header row").iter().map(str::to_owned).collect();
    reader.records().map(|record| columns.iter().cloned().zip(record.expect("a row").iter().map(str::to_owned)).collect()).collect()
}

/// A JSON value as its CSV field.
fn field(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect::<Vec<_>>().join(";"),
        other => other.to_string(),
    }
}

/// Each CSV row equals the JSON item at the same place, column by column (`a.b` nested).
fn assert_csv_is_json(csv: &[std::collections::BTreeMap<String, String>], json: &[Value], what: &str) {
    assert_eq!(csv.len(), json.len(), "{what}: as many rows as items");
    assert!(!json.is_empty(), "{what}: something to compare");
    for (row, item) in csv.iter().zip(json) {
        for (column, text) in row {
            let value = column.split('.').fold(item, |v, name| &v[name]);
            assert_eq!(text, &field(value), "{what}: {column} of {item}");
        }
    }
}

/// SPEC §11: `GET /v1/compliance` answers a licensor its own findings (the southwind record no
/// agreement covers), as JSON or CSV; any other token is refused, and another licensor sees none
/// of them.
fn a_licensor_reads_its_compliance_report_and_no_one_else_does(db: &dyn TestDb) {
    let tokens = {
        let mut store = open(db);
        let tokens = register_with_october(store.as_mut());
        let southwind: String = USAGE.lines().filter(|l| l.contains("\"host\":\"southwind\"")).map(|l| format!("{l}\n")).collect();
        let report = store.as_mut().ingest(&parse_lines(&southwind), IngestMode::Atomic, None).expect("ingest");
        assert_eq!(report.unmatched, 1, "{report:?}");
        tokens
    };
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let report = api.get("/v1/compliance?period=2026-10", Some(&tokens.meridian)).await.json();
        assert_eq!(report["licensor"], "meridian");
        let findings = report["findings"].as_array().expect("findings");
        assert_eq!(findings.len(), 1, "{report}");
        assert_eq!(findings[0]["flags"], json!(["unlicensed_model"]));
        assert_eq!((findings[0]["host"].as_str(), findings[0]["agreement"].is_null()), (Some("southwind"), true));
        let headers = [("authorization", format!("Bearer {}", tokens.meridian)), ("accept", "text/csv".to_owned())];
        let csv = api.send_with(&api.client, reqwest::Method::GET, "/v1/compliance?period=2026-10", &headers, None, Vec::new()).await;
        let text = String::from_utf8_lossy(&csv.bytes).into_owned();
        assert!(text.starts_with("flags,agreement,host,model,use_case,region,standing,currency,records,"), "{text}");
        assert!(text.contains("unlicensed_model,,southwind,"), "{text}");
        for token in [&tokens.northwind, &tokens.southwind, &tokens.auditor, &tokens.arbiter, &tokens.operator] {
            api.get("/v1/compliance?period=2026-10", Some(token)).await.problem(403);
        }
        let others = api.get("/v1/compliance?period=2026-10", Some(&tokens.aurora)).await.json();
        assert_eq!(others["findings"], json!([]), "another licensor learns nothing of meridian's hosts: {others}");
        api.get("/v1/compliance?period=2026-10&host=southwind", Some(&tokens.meridian)).await.problem(400);
        api.get("/v1/compliance", Some(&tokens.meridian)).await.problem(400);
        api.get("/v1/compliance?period=2026-13", Some(&tokens.meridian)).await.problem(400);
    });
}

fn csv_answers_read_back_as_their_json(db: &dyn TestDb) {
    let tokens = register_with_october(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let close = json!({"agreement": "meridian-northwind", "period": "2026-10"});
        assert_eq!(api.post_json("/v1/close", &tokens.meridian, &close).await.status, 201);
        let claim = json!({"agreement": "meridian-northwind", "period": "2026-10", "line": 0, "amount": "10.00", "reason": "=1+1 a formula", "evidence": ["sha256:ab"]});
        assert_eq!(api.post_json("/v1/disputes", &tokens.northwind, &claim).await.status, 201);
        let contribution = json!({"agreement": "meridian-northwind", "contribution": {"id": "c-9", "party": "northwind", "kind": "maintenance", "date": "2026-10-12", "description": "patched, \"quoted\""}});
        assert_eq!(api.post_json("/v1/contributions", &tokens.northwind, &contribution).await.status, 201);
        let paid = json!({"agreement": "meridian-northwind", "amount": "1.00", "reference": "w-1", "from": "host"});
        assert_eq!(api.post_json("/v1/payments", &tokens.meridian, &paid).await.status, 201);
        let as_csv = |path: &'static str, token: &str| {
            let headers = [("authorization", format!("Bearer {token}")), ("accept", "text/csv".to_owned())];
            let api = &api;
            async move { api.send_with(&api.client, reqwest::Method::GET, path, &headers, None, Vec::new()).await }
        };
        for (path, list) in [
            ("/v1/statements", Some("items")),
            ("/v1/balances", Some("balances")),
            ("/v1/disputes", Some("items")),
            ("/v1/contributions?agreement=meridian-northwind", Some("items")),
            ("/v1/payments", Some("items")),
            ("/v1/agreements", Some("items")),
            ("/v1/keys", Some("items")),
        ] {
            let json = api.get(path, Some(&tokens.northwind)).await.json();
            let items = list.map_or(&json, |member| &json[member]).as_array().cloned().unwrap_or_default();
            assert_csv_is_json(&csv_rows(&as_csv(path, &tokens.northwind).await), &items, path);
        }
        // A statement's lines, numbered, with the statement's digest; a dispute's history.
        let statement = api.get("/v1/statements/meridian-northwind/2026-10", Some(&tokens.northwind)).await;
        let lines = as_csv("/v1/statements/meridian-northwind/2026-10", &tokens.northwind).await;
        assert_eq!(
            lines.headers.iter().find(|(n, _)| n == "revshare-statement-digest"),
            statement.headers.iter().find(|(n, _)| n == "revshare-statement-digest")
        );
        let json_lines: Vec<Value> = statement.json()["lines"].as_array().expect("lines").clone();
        let rows = csv_rows(&lines);
        assert_eq!(
            rows.iter().map(|r| r["line"].clone()).collect::<Vec<_>>(),
            (0..json_lines.len()).map(|n| n.to_string()).collect::<Vec<_>>()
        );
        let members: Vec<Vec<(String, String)>> = rows
            .iter()
            .map(|r| r.iter().filter(|(c, _)| *c != "line" && *c != "currency").map(|(c, v)| (c.clone(), v.clone())).collect())
            .collect();
        for (row, line) in members.iter().zip(&json_lines) {
            for (column, text) in row {
                assert_eq!(text, &field(&line[column]), "line member {column}");
            }
        }
        let history = csv_rows(&as_csv("/v1/disputes/1", &tokens.northwind).await);
        assert_eq!(history.len(), 1);
        assert_eq!((history[0]["state"].as_str(), history[0]["reason"].as_str()), ("open", "'=1+1 a formula"), "a formula is not run");
        // Without the header, JSON; another host's CSV is the same refusal as its JSON.
        assert!(api.get("/v1/disputes/1", Some(&tokens.northwind)).await.content_type.starts_with("application/json"));
        as_csv("/v1/disputes/1", &tokens.southwind).await.problem(404);
        api.stop().await;
    });
}

/// The example agreement (`AGREEMENT`) as JSON, at `version` (2: the amendment's minimum).
fn agreement_json(version: u32) -> Value {
    json!({
        "id": "meridian-northwind", "version": version, "licensor": "meridian", "host": "northwind", "currency": "USD",
        "effective_from": "2026-01-01", "effective_to": "2027-01-01", "models": ["m-8b", "m-70b"],
        "minimum": if version == 1 { "500.00" } else { "600.00" }, "dispute_window_days": 30, "mau_threshold": 700_000_000,
        "arbiters": ["judge"],
        "pricing": {
            "basis": "revenue_share", "tier_metric": "tokens", "tier_mode": "graduated", "tier_bounds": ["1000000000", "5000000000"],
            "rates": {
                "customer_service": ["0.20", "0.17", "0.15"], "content_moderation": ["0.10", "0.10", "0.10"],
                "search": ["0.22", "0.20", "0.18"], "accessibility": ["0", "0", "0"], "default": ["0.20", "0.18", "0.16"]
            }
        },
        "exclusivity": [{"use_case": "search", "regions": ["eu"], "from": "2026-10-15", "to": "2027-01-01", "uplift": "0.25"}],
        "contributions": {"pool": "0.02", "points": {"maintenance": 1, "update": 2, "improvement": 5}}
    })
}

fn the_registry_is_written_by_its_owners_and_read_in_scope(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        // The operator registers a party; again with the same values is a no-op. No party
        // registers parties, and no one takes the operator's name.
        let eastwind = json!({"id": "eastwind", "name": "Eastwind Cloud", "role": "host"});
        for _ in 0..2 {
            let reply = api.post_json("/v1/parties", &tokens.operator, &eastwind).await;
            assert_eq!(
                (reply.status, reply.header("location")),
                (201, Some("/v1/parties/eastwind")),
                "{}",
                String::from_utf8_lossy(&reply.bytes)
            );
            assert_eq!(reply.json(), json!({"id": "eastwind", "name": "Eastwind Cloud", "role": "host", "keys": []}));
        }
        for token in [&tokens.meridian, &tokens.northwind, &tokens.auditor, &tokens.arbiter] {
            let refused =
                api.post_json("/v1/parties", token, &json!({"id": "zephyr", "name": "Zephyr", "role": "host"})).await.problem(403);
            assert!(refused["detail"].as_str().is_some_and(|d| d.contains("only the operator may register a party")), "{refused}");
        }
        let licensor = json!({"id": "borealis", "name": "Borealis Labs", "role": "licensor"});
        assert_eq!(api.post_json("/v1/parties", &tokens.operator, &licensor).await.status, 201, "the operator registers licensors too");
        let reserved = api.post_json("/v1/parties", &tokens.operator, &json!({"id": "operator", "name": "Ops", "role": "host"})).await;
        assert_eq!(reserved.problem(400)["errors"][0]["field"], "id");
        let role = api.post_json("/v1/parties", &tokens.operator, &json!({"id": "ops", "name": "Ops", "role": "operator"})).await;
        assert_eq!(role.problem(400)["errors"][0]["field"], "role");
        // Every field at fault is named at once.
        let bad = json!({"id": "Not An Id", "role": "king", "colour": "red"});
        let problem = api.post_json("/v1/parties", &tokens.operator, &bad).await.problem(400);
        let mut fields: Vec<&str> = problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["colour", "id", "name", "role"], "{problem}");
        let name = api.post_json("/v1/parties", &tokens.operator, &json!({"id": "westwind", "name": " ", "role": "auditor"})).await;
        assert_eq!(name.problem(400)["errors"][0]["field"], "name");
        api.post_json("/v1/parties", &tokens.operator, &json!(["not", "an", "object"])).await.problem(400);

        // A party is read by itself, its counterparties, an auditor granted an agreement of its,
        // and the operator; its keys by itself. An arbiter reads disputes, not parties.
        api.with_store(|store| store.add_key(Some(&pid("northwind")), &host_key().verifier()).expect("a key")).await;
        for token in [&tokens.northwind, &tokens.meridian, &tokens.auditor, &tokens.operator] {
            let party = api.get("/v1/parties/northwind", Some(token)).await;
            assert_eq!(party.status, 200, "{}", String::from_utf8_lossy(&party.bytes));
            let keys = if token == &tokens.northwind { json!([host_key().verifier().to_text()]) } else { json!([]) };
            assert_eq!(party.json()["keys"], keys, "a party's keys are its own to see");
        }
        api.get("/v1/parties/northwind", Some(&tokens.arbiter)).await.problem(404);
        api.get("/v1/parties/southwind", Some(&tokens.auditor)).await.problem(404);
        assert_eq!(api.get("/v1/parties/meridian", Some(&tokens.northwind)).await.json()["id"], "meridian", "its licensor");
        // A licensor with no agreement with the host, and a host with none with the licensor.
        api.get("/v1/parties/northwind", Some(&tokens.aurora)).await.problem(404);
        api.get("/v1/parties/aurora", Some(&tokens.northwind)).await.problem(404);
        // The key history: the deployment's keys for everyone, each party's own keys to itself.
        let keys_of = |listed: Value| -> Vec<String> {
            listed["items"].as_array().expect("keys").iter().map(|k| k["key"].as_str().expect("a key").to_owned()).collect()
        };
        let deployment = deployment_key().verifier().to_text();
        let own = api.get("/v1/keys", Some(&tokens.northwind)).await.json();
        assert_eq!(keys_of(own.clone()), [deployment.clone(), host_key().verifier().to_text()], "{own}");
        assert_eq!(own["items"][0]["party"], Value::Null);
        let other = api.get("/v1/keys", Some(&tokens.southwind)).await;
        assert_eq!(keys_of(other.json()), [deployment]);
        assert!(!String::from_utf8_lossy(&other.bytes).contains("northwind"), "another host's key is not shown");
        api.get("/v1/parties/eastwind", Some(&tokens.northwind)).await.problem(404);
        api.get("/v1/parties/Not%20An%20Id", Some(&tokens.auditor)).await.problem(400);

        // A licensor registers its own models, derived or not; any token reads them.
        let model = json!({"id": "m-8b-chat", "derived_from": "m-8b"});
        let registered = api.post_json("/v1/models", &tokens.meridian, &model).await;
        assert_eq!(
            (registered.status, registered.header("location")),
            (201, Some("/v1/models/m-8b-chat")),
            "{}",
            String::from_utf8_lossy(&registered.bytes)
        );
        let expected = json!({"id": "m-8b-chat", "owner": "meridian", "derived_from": "m-8b"});
        assert_eq!(registered.json(), expected);
        for token in [&tokens.southwind, &tokens.aurora, &tokens.auditor] {
            assert_eq!(api.get("/v1/models/m-8b-chat", Some(token)).await.json(), expected);
        }
        api.get("/v1/models/m-nowhere", Some(&tokens.northwind)).await.problem(404);
        let owner = api.post_json("/v1/models", &tokens.meridian, &json!({"id": "m-1", "owner": 7})).await.problem(400);
        assert_eq!(owner["errors"][0]["field"], "owner", "{owner}");

        // A host maps its own model id to a licensed model, and reports usage under it.
        let alias = json!({"host_model": "nw-chat", "model": "m-8b-chat"});
        let reply = api.post_json("/v1/aliases", &tokens.northwind, &alias).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.bytes));
        assert_eq!(reply.json(), json!({"host": "northwind", "host_model": "nw-chat", "model": "m-8b-chat"}));
        let moved = api.post_json("/v1/aliases", &tokens.northwind, &json!({"host_model": "nw-chat", "model": "m-70b"})).await;
        assert_eq!(moved.problem(409)["errors"][0]["field"], "host_model", "an alias never changes");
        let missing = api.post_json("/v1/aliases", &tokens.northwind, &json!({"model": "m-70b"})).await.problem(400);
        assert_eq!(missing["errors"][0]["field"], "host_model", "{missing}");
        api.stop().await;
    });
    let mut store = open(db);
    assert_eq!(store.resolve_model(&pid("northwind"), "nw-chat").expect("resolved").as_str(), "m-8b-chat");
    assert_eq!(store.party(&pid("eastwind")).expect("read").map(|p| p.role), Some(Role::Host));
}

fn a_licensor_registers_agreements_as_json_and_problems_name_the_field(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let post = |body: Value| {
            api.send(
                reqwest::Method::POST,
                "/v1/agreements",
                Some(&tokens.meridian),
                Some("application/json"),
                body.to_string().into_bytes(),
            )
        };
        // A float is refused as in TOML, naming the field and what would be right.
        let mut floats = agreement_json(2);
        floats["pricing"]["rates"]["search"][1] = json!(0.2);
        floats["contributions"]["pool"] = json!(2e-2);
        let problem = post(floats).await.problem(400);
        let errors = problem["errors"].as_array().expect("errors");
        let fields: Vec<&str> = errors.iter().filter_map(|e| e["field"].as_str()).collect();
        assert_eq!(fields, ["contributions.pool", "pricing.rates.search[1]"], "{problem}");
        assert!(errors.iter().all(|e| e["message"].as_str().is_some_and(|m| m.contains("write it as a string"))), "{problem}");
        // The core's own problems name the field too, and where it is in the body.
        let mut invalid = agreement_json(2);
        invalid["pricing"]["tier_mode"] = json!("sideways");
        invalid["colour"] = json!("red");
        let problem = post(invalid).await.problem(400);
        let fields: Vec<&str> = problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
        assert!(fields.contains(&"colour") && fields.contains(&"pricing.tier_mode"), "{problem}");
        assert!(problem["errors"].as_array().expect("errors").iter().all(|e| e["line"].is_u64()), "{problem}");

        // The amendment as JSON is the amendment as TOML: same digest; what is stored is TOML.
        let registered = post(agreement_json(2)).await;
        assert_eq!(registered.status, 201, "{}", String::from_utf8_lossy(&registered.bytes));
        let view = registered.json();
        let toml = revshare_core::agreement::parse_agreement("amendment.toml", &amendment()).expect("the amendment parses");
        assert_eq!((view["version"].as_u64(), view["digest"].as_str()), (Some(2), Some(toml.digest().as_str())), "{view}");
        let source = view["source"].as_str().expect("the source");
        assert!(source.starts_with("# registered as application/json"), "{source}");
        let served = api.get("/v1/agreements/meridian-northwind", Some(&tokens.northwind)).await.json();
        assert_eq!(served["source"].as_str(), Some(source), "the stored source is the TOML conversion");
        api.stop().await;
    });
    assert_eq!(open(db).agreement(&agreement_id(), None).expect("the agreement").version(), 2, "only the valid amendment is stored");
}

/// Unpacks a tar archive into `dir` and reads it back as a bundle, as `revshare verify` does.
fn unpack_bundle(archive: &[u8], dir: &std::path::Path) -> revshare_core::bundle::Bundle {
    let mut entries = tar::Archive::new(archive);
    for entry in entries.entries().expect("a tar archive") {
        let entry = entry.expect("an entry");
        let header = entry.header();
        let mode = header.mode().expect("a mode");
        assert_eq!(header.mtime().expect("an mtime"), 0, "deterministic headers");
        assert!(mode == 0o644 || (mode == 0o755 && header.entry_type().is_dir()), "mode {mode:o}");
    }
    tar::Archive::new(archive).unpack(dir).expect("unpacks");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut batches: Vec<(u64, Vec<u8>)> = std::fs::read_dir(dir.join("batches"))
        .expect("batches/")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let leaf = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).expect("LEAF.digests");
            (leaf, std::fs::read(&path).expect("read"))
        })
        .collect();
    batches.sort_by_key(|(leaf, _)| *leaf);
    let restated = match std::fs::read_dir(dir.join("restated")) {
        Ok(months) => months
            .map(|entry| {
                let month = entry.expect("an entry").path();
                let read = |name: &str| std::fs::read(month.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
                let period = month.file_name().and_then(|n| n.to_str()).expect("a period").to_owned();
                revshare_core::bundle::RestatedMonth { period, before: read("before.json"), after: read("after.json") }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    revshare_core::bundle::Bundle {
        statement: read("statement.json"),
        agreement: String::from_utf8(read("agreement.toml")).expect("UTF-8"),
        records: read("records.jsonl"),
        salts: read("records.salts"),
        aliases: read("aliases.json"),
        models: read("models.json"),
        log: read("log.json"),
        keys: read("keys.json"),
        signatures: read("signatures.json"),
        batches,
        restated,
    }
}

fn a_bundle_fetched_over_http_verifies_offline(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    let dir = tempfile::tempdir().expect("a temporary directory");
    run(async {
        let api = Api::start(db, 1 << 20).await;
        assert_eq!(api.post_usage(&tokens.northwind, "application/x-ndjson", &northwind_lines()).await.status, 200);
        let close = json!({"agreement": "meridian-northwind", "period": "2026-10"});
        assert_eq!(api.post_json("/v1/close", &tokens.meridian, &close).await.status, 201);
        let path = "/v1/statements/meridian-northwind/2026-10/bundle";

        let reply = api.get(path, Some(&tokens.northwind)).await;
        assert_eq!((reply.status, reply.content_type.as_str()), (200, "application/x-tar"), "{}", String::from_utf8_lossy(&reply.bytes));
        let bundle = unpack_bundle(&reply.bytes, dir.path());
        let trusted = deployment_key().verifier();
        let options = revshare_core::bundle::VerifyOptions { trusted: std::slice::from_ref(&trusted), ..Default::default() };
        let report = revshare_core::bundle::verify(&bundle, &options);
        assert!(report.ok(), "the bundle verifies: {:?}", report.findings);
        assert_eq!(report.checked.records, 6, "October's records");
        let stored = api.with_store(|store| store.statement(&agreement_id(), october()).expect("read").expect("closed")).await;
        assert_eq!(bundle.statement, stored.canonical, "the stored statement");
        // Its index: each file of the archive, with its size and SHA-256.
        let headers = [("authorization", format!("Bearer {}", tokens.northwind)), ("accept", "application/json".to_owned())];
        let index = api.send_with(&api.client, reqwest::Method::GET, path, &headers, None, Vec::new()).await.json();
        assert_eq!(index["statement_digest"].as_str(), Some(stored.head.digest.as_str()));
        assert_eq!((index["records"].as_u64(), index["sequence"].as_u64()), (Some(6), Some(1)));
        let files: Vec<(String, u64, String)> = index["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap_or("").to_owned(),
                    f["bytes"].as_u64().unwrap_or(0),
                    f["sha256"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let unpacked: Vec<(String, u64, String)> = bundle
            .files()
            .into_iter()
            .map(|(path, bytes)| (path, u64::try_from(bytes.len()).expect("a size"), revshare_core::canonical::digest(bytes)))
            .filter(|(path, ..)| path != "log.json")
            .collect();
        let listed: Vec<(String, u64, String)> = files.iter().filter(|(path, ..)| path != "log.json").cloned().collect();
        assert_eq!(listed, unpacked, "the index lists the archive's files (the log's checkpoint is signed afresh per request)");
        assert!(files.iter().any(|(path, ..)| path == "log.json"), "and the log");
        assert_eq!(
            files.iter().find(|(p, ..)| p == "statement.json").map(|f| f.2.clone()),
            Some(stored.head.digest.clone()),
            "statement.json is the statement"
        );
        // The same archive for every reader of the agreement, and by sequence.
        for token in [&tokens.meridian, &tokens.auditor] {
            assert_eq!(api.get(&format!("{path}?sequence=1"), Some(token)).await.status, 200);
        }
        // An arbiter reads disputes escalated to it, not statements; the operator reads none.
        for token in [&tokens.arbiter, &tokens.operator] {
            api.get(path, Some(token)).await.problem(404);
        }
        api.get(&format!("{path}?sequence=2"), Some(&tokens.northwind)).await.problem(404);
        api.get(&format!("{path}?sequence=first"), Some(&tokens.northwind)).await.problem(400);
        api.get("/v1/statements/meridian-northwind/2026-11/bundle", Some(&tokens.northwind)).await.problem(404);
        // A host of another agreement: not found, as the statement is.
        api.get(path, Some(&tokens.southwind)).await.problem(404);
        api.stop().await;
    });
}

fn the_docs_page_and_its_assets_are_served_offline(db: &dyn TestDb) {
    register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let page = api.get("/docs/", None).await;
        assert_eq!(page.status, 200);
        assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
        let html = String::from_utf8(page.bytes).expect("text");
        assert!(html.contains("swagger-ui"), "{html}");
        assert_eq!(api.get("/docs", None).await.status, 200, "/docs redirects to /docs/");
        // Every script and stylesheet the page names is served from the binary.
        let assets: Vec<&str> = html
            .split(['"', '\''])
            .filter(|s| s.starts_with("./") && (s.ends_with(".js") || s.ends_with(".css")))
            .map(|s| s.trim_start_matches("./"))
            .collect();
        assert!(assets.len() >= 3, "{html}");
        for asset in &assets {
            let reply = api.get(&format!("/docs/{asset}"), None).await;
            assert_eq!(reply.status, 200, "{asset}");
            assert!(!reply.bytes.is_empty(), "{asset}");
        }
        let initializer = api.get("/docs/swagger-initializer.js", None).await;
        assert!(String::from_utf8_lossy(&initializer.bytes).contains("/openapi.json"), "the UI reads the served document");
        api.stop().await;
    });
}

fn disputes_move_by_their_parties_and_others_see_nothing(db: &dyn TestDb) {
    let tokens = register_with_october(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let close = json!({"agreement": "meridian-northwind", "period": "2026-10"});
        assert_eq!(api.post_json("/v1/close", &tokens.meridian, &close).await.status, 201);
        let claim = json!({"agreement": "meridian-northwind", "period": "2026-10", "line": 0, "amount": "10.00", "reason": "a test tenant", "evidence": ["sha256:ab"]});

        // Refused, and nothing changes: another host or licensor finds nothing; an auditor or an
        // arbiter does not open disputes; a body with an unknown field or a bad amount.
        let before = api.with_store(|store| store.log_size().expect("size")).await;
        api.post_json("/v1/disputes", &tokens.southwind, &claim).await.problem(404);
        api.post_json("/v1/disputes", &tokens.aurora, &claim).await.problem(404);
        api.post_json("/v1/disputes", &tokens.auditor, &claim).await.problem(403);
        api.post_json("/v1/disputes", &tokens.arbiter, &claim).await.problem(403);
        let mut unknown = claim.clone();
        unknown["prompt"] = json!("hi");
        let problem = api.post_json("/v1/disputes", &tokens.northwind, &unknown).await.problem(400);
        assert!(problem["errors"][0]["message"].as_str().is_some_and(|m| m.contains("unknown field `prompt`")), "{problem}");
        let mut cents = claim.clone();
        cents["amount"] = json!("1.001");
        let problem = api.post_json("/v1/disputes", &tokens.northwind, &cents).await.problem(422);
        assert!(
            problem["detail"].as_str().is_some_and(|d| d.contains("`amount` cannot be read; the amount `1.001` has 3 decimal places")),
            "{problem}"
        );
        assert_eq!(api.with_store(|store| store.log_size().expect("size")).await, before, "refusals log nothing");

        // The host opens; the licensor counters; the host takes the offer.
        let opened = api.post_json("/v1/disputes", &tokens.northwind, &claim).await;
        assert_eq!(opened.status, 201, "{}", String::from_utf8_lossy(&opened.bytes));
        assert_eq!((opened.json()["id"].as_u64(), opened.json()["state"].as_str()), (Some(1), Some("open")));
        api.get("/v1/disputes/1", Some(&tokens.southwind)).await.problem(404);
        api.get("/v1/disputes/1", Some(&tokens.aurora)).await.problem(404);
        assert_eq!(api.get("/v1/disputes/1", Some(&tokens.auditor)).await.status, 200);
        assert_eq!(api.get("/v1/disputes", Some(&tokens.southwind)).await.json()["items"], json!([]));
        api.get("/v1/disputes?agreement=meridian-northwind", Some(&tokens.southwind)).await.problem(404);
        let moves = "/v1/disputes/1/transitions";
        let own = api.post_json(moves, &tokens.northwind, &json!({"action": "accept", "reason": "mine"})).await.problem(403);
        assert!(own["detail"].as_str().is_some_and(|d| d.contains("only the licensor answers a dispute the host opened")), "{own}");
        api.post_json(moves, &tokens.southwind, &json!({"action": "reject", "reason": "x"})).await.problem(404);
        let countered =
            api.post_json(moves, &tokens.meridian, &json!({"action": "counter", "amount": "4.00", "reason": "part of it"})).await;
        assert_eq!(countered.json()["state"], "countered", "{}", String::from_utf8_lossy(&countered.bytes));
        let accepted = api.post_json(moves, &tokens.northwind, &json!({"action": "accept", "reason": "fair"})).await.json();
        assert_eq!((accepted["state"].as_str(), accepted["adjustment"].as_str()), (Some("accepted"), Some("-4.00")));
        api.post_json(moves, &tokens.meridian, &json!({"action": "reject", "reason": "changed my mind"})).await.problem(409);

        // The licensor's claim is rejected, escalated and decided by the arbiter.
        let mut licensor_claim = claim.clone();
        licensor_claim["amount"] = json!("2.50");
        assert_eq!(api.post_json("/v1/disputes", &tokens.meridian, &licensor_claim).await.status, 201);
        let moves = "/v1/disputes/2/transitions";
        api.post_json(moves, &tokens.northwind, &json!({"action": "reject", "reason": "the records are right"})).await;
        api.post_json(moves, &tokens.meridian, &json!({"action": "escalate", "reason": "we disagree"})).await;
        api.post_json(moves, &tokens.auditor, &json!({"action": "decide", "amount": "1.00", "reason": "x"})).await.problem(403);
        let decided =
            api.post_json(moves, &tokens.arbiter, &json!({"action": "decide", "amount": "1.00", "reason": "half-way"})).await.json();
        assert_eq!((decided["state"].as_str(), decided["adjustment"].as_str()), (Some("decided"), Some("1.00")));
        assert_eq!(api.get("/v1/disputes", Some(&tokens.meridian)).await.json()["items"].as_array().map(Vec::len), Some(2));

        // Both resolutions are carried into November's statement.
        let november = json!({"agreement": "meridian-northwind", "period": "2026-11"});
        let (size, journal) = api.with_store(|store| (store.log_size().expect("size"), store.journal().expect("journal").len())).await;
        let early = api.post_json("/v1/close", &tokens.meridian, &november).await.problem(409);
        assert_eq!(
            early["detail"],
            "meridian-northwind 2026-11 can be closed from 2026-12-04T00:00:00Z: the month ends at 2026-12-01T00:00:00Z and the agreement leaves 3 days for late reports (`close_after_days`); until then `revshare statement preview` shows it as it stands"
        );
        let after = api.with_store(|store| (store.log_size().expect("size"), store.journal().expect("journal").len())).await;
        assert_eq!(after, (size, journal), "a close refused as early changes nothing");
        // Closed once allowed, as the licensor would on December 4th.
        let allowed = Instant::from_date(2026, 12, 4).expect("a date");
        api.with_store(move |store| {
            revshare_store::close::close_month(
                store,
                &agreement_id(),
                Period::parse("2026-11").expect("a month"),
                &deployment_key(),
                allowed,
            )
            .expect("November closes")
        })
        .await;
        let statement = api.get("/v1/statements/meridian-northwind/2026-11", Some(&tokens.northwind)).await.json();
        let carried: Vec<(&str, &str)> = statement["adjustments"]
            .as_array()
            .expect("adjustments")
            .iter()
            .filter_map(|a| Some((a["reference"].as_str()?, a["amount"].as_str()?)))
            .collect();
        assert_eq!(carried, [("dispute:1", "-4.00"), ("dispute:2", "1.00")]);
        let second = api.get("/v1/disputes/2", Some(&tokens.northwind)).await.json();
        assert_eq!(second["carried_by"], json!({"period": "2026-11", "sequence": 1, "line": 1}), "where its adjustment went");
        api.stop().await;
    });
}

/// An arbiter the agreement does not name reads and decides a dispute once both sides named it,
/// and not before: one side's word is not enough.
fn an_arbiter_both_sides_name_reads_and_decides_the_dispute(db: &dyn TestDb) {
    let (tokens, sage) = {
        let mut store = open(db);
        let tokens = register(store.as_mut());
        store.add_party(&Party { id: pid("sage"), name: "Sage Arbitration".to_owned(), role: Role::Arbiter }).expect("add an arbiter");
        store.ingest(&parse_lines(&northwind_lines()), IngestMode::Atomic, None).expect("ingest");
        let sage = add_token(store.as_mut(), "sage", Role::Arbiter, "sage");
        (tokens, sage)
    };
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let close = json!({"agreement": "meridian-northwind", "period": "2026-10"});
        assert_eq!(api.post_json("/v1/close", &tokens.meridian, &close).await.status, 201);
        let claim = json!({"agreement": "meridian-northwind", "period": "2026-10", "amount": "6.00", "reason": "a test tenant"});
        assert_eq!(api.post_json("/v1/disputes", &tokens.northwind, &claim).await.status, 201);
        let moves = "/v1/disputes/1/transitions";
        api.post_json(moves, &tokens.meridian, &json!({"action": "reject", "reason": "the records are right"})).await.json();
        let naming = |reason: &str, arbiter: &str| json!({"action": "escalate", "reason": reason, "arbiter": arbiter});

        // A party that is not an arbiter is refused alike whether it exists; nothing is logged.
        let before = api.with_store(|store| store.log_size().expect("size")).await;
        for stranger in ["southwind", "nobody"] {
            let problem = api.post_json(moves, &tokens.northwind, &naming("to them", stranger)).await.problem(422);
            assert_eq!(
                problem["detail"],
                format!("`{stranger}` is not a registered arbiter; name a party the operator registered as an arbiter")
            );
        }
        assert_eq!(api.with_store(|store| store.log_size().expect("size")).await, before);

        let escalated = api.post_json(moves, &tokens.northwind, &naming("an independent view", "sage")).await.json();
        assert_eq!((escalated["state"].as_str(), escalated["arbiter"].as_str()), (Some("escalated"), None));
        assert_eq!(escalated["history"][2]["arbiter"], "sage");
        // Named by one side only: sage finds nothing, and decides nothing.
        api.get("/v1/disputes/1", Some(&sage)).await.problem(404);
        assert_eq!(api.get("/v1/disputes", Some(&sage)).await.json()["items"], json!([]));
        let decide = json!({"action": "decide", "amount": "3.00", "reason": "half each"});
        api.post_json(moves, &sage, &decide).await.problem(404);
        // The licensor names it too; the auditor cannot.
        api.post_json(moves, &tokens.auditor, &naming("me too", "sage")).await.problem(403);
        let agreed = api.post_json(moves, &tokens.meridian, &naming("agreed", "sage")).await.json();
        assert_eq!((agreed["state"].as_str(), agreed["arbiter"].as_str()), (Some("escalated"), Some("sage")));
        assert_eq!(api.get("/v1/disputes/1", Some(&sage)).await.json()["arbiter"], "sage");
        assert_eq!(api.get("/v1/disputes", Some(&sage)).await.json()["items"].as_array().map(Vec::len), Some(1));
        // Nothing else of the agreement opens to it.
        api.get("/v1/agreements/meridian-northwind", Some(&sage)).await.problem(404);
        api.get("/v1/statements/meridian-northwind/2026-10", Some(&sage)).await.problem(404);
        let decided = api.post_json(moves, &sage, &decide).await.json();
        assert_eq!((decided["state"].as_str(), decided["adjustment"].as_str()), (Some("decided"), Some("-3.00")));
        api.stop().await;
    });
}

/// SPEC §10: either party previews the open month — what closing it now would finalise — and
/// nothing is written; others find nothing, an auditor is told previews are not for it.
fn a_preview_is_the_close_to_come_for_the_two_parties(db: &dyn TestDb) {
    let tokens = register_with_october(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let path = "/v1/statements/meridian-northwind/2026-10/preview";
        let before = api.with_store(|store| (store.log_size().expect("size"), store.journal().expect("journal").len())).await;
        let licensors = api.get(path, Some(&tokens.meridian)).await.json();
        let hosts = api.get(path, Some(&tokens.northwind)).await.json();
        assert_eq!(licensors, hosts, "both parties see the same month");
        assert_eq!((licensors["preview"].as_bool(), licensors["statement"]["inputs"]["records"].as_u64()), (Some(true), Some(6)));
        for token in [&tokens.southwind, &tokens.aurora, &tokens.arbiter, &tokens.operator] {
            api.get(path, Some(token)).await.problem(404);
        }
        let auditor = api.get(path, Some(&tokens.auditor)).await.problem(403);
        assert!(auditor["detail"].as_str().is_some_and(|d| d.contains("a preview is for the agreement's licensor and host")), "{auditor}");
        // How the records arrived is beside the statement, never in it: the example's resend.
        let delivery = json!({"agreement": "meridian-northwind", "period": "2026-10", "records": 6, "batches": 1, "late": 0, "resends": 1});
        assert_eq!(licensors["delivery"], delivery);
        let stats = "/v1/statements/meridian-northwind/2026-10/delivery";
        for token in [&tokens.meridian, &tokens.northwind, &tokens.auditor] {
            assert_eq!(api.get(stats, Some(token)).await.json(), delivery, "whoever reads the statements reads how records arrived");
        }
        for token in [&tokens.southwind, &tokens.aurora, &tokens.arbiter, &tokens.operator] {
            api.get(stats, Some(token)).await.problem(404);
        }
        let after = api.with_store(|store| (store.log_size().expect("size"), store.journal().expect("journal").len())).await;
        assert_eq!(after, before, "a preview logs and books nothing");
        api.get("/v1/statements/meridian-northwind/2026-10", Some(&tokens.meridian)).await.problem(404);

        let close = json!({"agreement": "meridian-northwind", "period": "2026-10"});
        assert_eq!(api.post_json("/v1/close", &tokens.meridian, &close).await.status, 201);
        let closed = api.get("/v1/statements/meridian-northwind/2026-10", Some(&tokens.northwind)).await.json();
        assert_eq!(closed, licensors["statement"], "the preview was the close to come");
        let refused = api.get(path, Some(&tokens.northwind)).await.problem(409);
        assert!(refused["detail"].as_str().is_some_and(|d| d.contains("is already closed and its statement is final")), "{refused}");
        api.stop().await;
    });
}

fn the_usage_summary_is_what_the_preview_bills(db: &dyn TestDb) {
    let tokens = register_with_october(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let preview = api.get("/v1/statements/meridian-northwind/2026-10/preview", Some(&tokens.northwind)).await.json();
        let statement = &preview["statement"];
        let summary = |query: &str, token: &str| {
            let path = format!("/v1/usage/summary?agreement=meridian-northwind&from=2026-10&to=2026-10{query}");
            let api = &api;
            let token = token.to_owned();
            async move { api.get(&path, Some(&token)).await }
        };
        let count = |v: &Value, member: &str| v[member].as_str().and_then(|t| t.parse::<u128>().ok()).expect("a count as text");
        // The month in total, and per day: the preview's records and requests.
        let month = summary("&interval=month", &tokens.northwind).await.json();
        assert_eq!((month["currency"].as_str(), month["interval"].as_str()), (Some("USD"), Some("month")));
        let items = month["items"].as_array().expect("items");
        assert_eq!(items.len(), 1, "{month}");
        assert_eq!((items[0]["date"].as_str(), items[0]["records"].as_u64()), (Some("2026-10"), statement["inputs"]["records"].as_u64()));
        assert!(items[0].get("model").is_none(), "not grouped by model: {month}");
        let lines = statement["lines"].as_array().expect("lines");
        let billed: u128 = lines.iter().map(|l| count(l, "requests")).sum();
        assert_eq!(count(&items[0], "requests"), billed);
        let days = summary("", &tokens.northwind).await.json();
        let day_items = days["items"].as_array().expect("items");
        assert!(day_items.len() > 1 && day_items.iter().all(|d| d["date"].as_str().is_some_and(|t| t.starts_with("2026-10-"))), "{days}");
        assert_eq!(
            day_items.iter().map(|d| d["records"].as_u64().unwrap_or(0)).sum::<u64>(),
            statement["inputs"]["records"].as_u64().unwrap_or(0)
        );
        // By model, use case and region: the preview's lines, summed over exclusivity.
        let grouped = summary("&interval=month&group_by=model,use_case,region", &tokens.meridian).await.json();
        let mut by_line: std::collections::BTreeMap<(String, String, String), u128> = std::collections::BTreeMap::new();
        for line in lines {
            let key = (field(&line["model"]), field(&line["use_case"]), field(&line["region"]));
            *by_line.entry(key).or_default() += count(line, "input_tokens");
        }
        let by_item: std::collections::BTreeMap<(String, String, String), u128> = grouped["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| ((field(&i["model"]), field(&i["use_case"]), field(&i["region"])), count(i, "input_tokens")))
            .collect();
        assert_eq!(by_item, by_line);
        assert_eq!(grouped["group_by"], json!(["model", "use_case", "region"]));
        // Whoever reads the agreement reads its usage; CSV says what JSON says.
        assert_eq!(summary("&interval=month", &tokens.auditor).await.json(), month);
        for token in [&tokens.southwind, &tokens.aurora, &tokens.arbiter, &tokens.operator] {
            summary("", token).await.problem(404);
        }
        let headers = [("authorization", format!("Bearer {}", tokens.northwind)), ("accept", "text/csv".to_owned())];
        let path = "/v1/usage/summary?agreement=meridian-northwind&from=2026-10&to=2026-10&group_by=region";
        let csv = api.send_with(&api.client, reqwest::Method::GET, path, &headers, None, Vec::new()).await;
        let json = api.get(path, Some(&tokens.northwind)).await.json();
        assert_csv_is_json(&csv_rows(&csv), json["items"].as_array().expect("items"), "usage by region");
        // Unknown parameters, names and intervals are refused, naming them.
        for (query, named) in [("&limit=1", "`limit`"), ("&group_by=customer", "`customer`"), ("&interval=week", "`week`")] {
            let refused = summary(query, &tokens.northwind).await.problem(400);
            assert!(refused["detail"].as_str().is_some_and(|d| d.contains(named)), "{query}: {refused}");
        }
        let long = api.get("/v1/usage/summary?agreement=meridian-northwind&from=2025-01&to=2026-10", Some(&tokens.northwind)).await;
        assert!(long.problem(400)["detail"].as_str().is_some_and(|d| d.contains("more than 12 months")));
        api.stop().await;
    });
}

fn an_idempotency_key_replays_the_first_answer(db: &dyn TestDb) {
    let tokens = register_with_october(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let post = |path: &'static str, token: &str, key: &str, content_type: &'static str, body: Vec<u8>| {
            let headers = [("authorization", format!("Bearer {token}")), ("idempotency-key", key.to_owned())];
            let api = &api;
            async move { api.send_with(&api.client, reqwest::Method::POST, path, &headers, Some(content_type), body).await }
        };
        let json_body = |value: Value| serde_json::to_vec(&value).expect("JSON");
        let replayed = |reply: &Reply| reply.headers.iter().any(|(n, v)| n == "idempotent-replayed" && v == b"true");
        let payment = json!({"agreement": "meridian-northwind", "amount": "100.00", "reference": "wire-1"});
        // A payment retried with its key: the first answer again, one payment recorded.
        let first = post("/v1/payments", &tokens.northwind, "pay-1", "application/json", json_body(payment.clone())).await;
        assert_eq!(first.status, 201, "{}", String::from_utf8_lossy(&first.bytes));
        let again = post("/v1/payments", &tokens.northwind, "pay-1", "application/json", json_body(payment.clone())).await;
        assert_eq!((again.status, &again.bytes, &again.content_type), (first.status, &first.bytes, &first.content_type));
        assert!(replayed(&again) && !replayed(&first));
        assert_eq!(api.get("/v1/balances", Some(&tokens.northwind)).await.json()["pending"].as_array().map(Vec::len), Some(1));
        // Without the key the same body is a second request: refused as a reference posted once.
        let unkeyed = api.post_json("/v1/payments", &tokens.northwind, &payment).await;
        assert_eq!(unkeyed.status, 422, "{}", String::from_utf8_lossy(&unkeyed.bytes));
        // The same key with another body, or on another route: 409, nothing changes.
        let other = json!({"agreement": "meridian-northwind", "amount": "5.00", "reference": "wire-2"});
        let conflict = post("/v1/payments", &tokens.northwind, "pay-1", "application/json", json_body(other.clone())).await.problem(409);
        assert!(conflict["detail"].as_str().is_some_and(|d| d.contains("another request")), "{conflict}");
        let elsewhere =
            json!({"agreement": "meridian-northwind", "period": "2026-10", "line": 0, "amount": "1.00", "reason": "r", "evidence": []});
        post("/v1/disputes", &tokens.northwind, "pay-1", "application/json", json_body(elsewhere)).await.problem(409);
        // A key is its party's own: another party's same key is a request of its own.
        let theirs = post("/v1/payments", &tokens.meridian, "pay-1", "application/json", json_body(other)).await;
        assert!(theirs.status == 201 && !replayed(&theirs), "{}", String::from_utf8_lossy(&theirs.bytes));
        // A usage batch: the receipt replayed, not a batch of duplicates.
        let usage = northwind_lines().into_bytes();
        let stored = post("/v1/usage", &tokens.northwind, "batch-7", "application/x-ndjson", usage.clone()).await;
        assert_eq!(stored.status, 200, "{}", String::from_utf8_lossy(&stored.bytes));
        let retried = post("/v1/usage", &tokens.northwind, "batch-7", "application/x-ndjson", usage).await;
        assert_eq!((retried.status, &retried.bytes), (200, &stored.bytes));
        assert_eq!(retried.json()["duplicates"], stored.json()["duplicates"], "the first answer, not a second batch's");
        // A created dispute: 201 and its Location again.
        let claim = json!({"agreement": "meridian-northwind", "period": "2026-10", "line": 0, "amount": "1.00", "reason": "r", "evidence": ["sha256:ab"]});
        let close = json!({"agreement": "meridian-northwind", "period": "2026-10"});
        assert_eq!(api.post_json("/v1/close", &tokens.meridian, &close).await.status, 201);
        let opened = post("/v1/disputes", &tokens.northwind, "claim-1", "application/json", json_body(claim.clone())).await;
        let reopened = post("/v1/disputes", &tokens.northwind, "claim-1", "application/json", json_body(claim)).await;
        assert_eq!((opened.status, reopened.status, &reopened.bytes), (201, 201, &opened.bytes));
        let location = |reply: &Reply| reply.headers.iter().find(|(n, _)| n == "location").map(|(_, v)| v.clone());
        assert_eq!(location(&opened), Some(format!("/v1/disputes/{}", opened.json()["id"]).into_bytes()), "201 names what it made");
        assert_eq!(location(&reopened), location(&opened));
        assert_eq!(api.get("/v1/disputes", Some(&tokens.northwind)).await.json()["items"].as_array().map(Vec::len), Some(1), "one dispute");
        // A key that is not one is refused before anything runs.
        post("/v1/payments", &tokens.northwind, "two words", "application/json", json_body(payment)).await.problem(400);
        api.stop().await;
    });
}

/// Pooled connections that the database cut while they sat idle (a restart) cost no request: a
/// connection idle for a while is checked before use, and a dead one is replaced.
#[test]
fn a_connection_cut_while_idle_costs_no_request_postgres() {
    let db = PgDb::new();
    let tokens = register(open(&db).as_mut());
    run(async {
        let api = Api::start(&db, 1 << 20).await;
        for _ in 0..3 {
            assert_eq!(api.get("/v1/balances", Some(&tokens.meridian)).await.status, 200);
        }
        let cut = tokio::task::block_in_place(|| db.cut_connections());
        assert!(cut >= 1, "the server's pooled connection is cut");
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        for token in [&tokens.meridian, &tokens.northwind] {
            let reply = api.get("/v1/balances", Some(token)).await;
            assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.bytes));
        }
        api.stop().await;
    });
}

/// A store that does not answer (PostgreSQL on a port nothing listens on): `/healthz` says so
/// with 503 and `Retry-After`, as does every call that needs the store — a fault, not a bug —
/// while `/livez` still answers for the process.
#[test]
fn a_store_that_does_not_answer_is_503_and_the_process_lives() {
    run(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let base = format!("http://{}", listener.local_addr().expect("the bound address"));
        let open: OpenStore = Arc::new(|| {
            let store = PgStore::connect("postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=2").map_err(Box::new)?;
            Ok(Box::new(store) as Box<dyn Store + Send>)
        });
        let config = Config {
            open,
            key: deployment_key(),
            clock,
            max_body_bytes: 1 << 20,
            max_connections: MAX_CONNECTIONS,
            max_writers: 1,
            rate_limit_per_second: 0,
            timeouts: Timeouts::default(),
            webhooks: revshare_server::webhooks::WebhookConfig::default(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(revshare_server::serve(listener, config, async {
            let _ = stopped.await;
        }));
        let pages = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
        let api = Api { base, client: reqwest::Client::new(), pages, stop: Some(stop), done: Some(done), open: SqliteDb::new().opener() };
        for (path, token) in [("/healthz", None), ("/v1/balances", Some("rs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))] {
            let reply = api.get(path, token).await;
            assert_eq!(reply.retry_after.as_deref(), Some("5"), "{path}");
            let problem = reply.problem(503);
            let detail = if path == "/healthz" {
                "the database is down: the store does not answer; ask again in 5 s (GET /livez: the server itself is up)"
            } else {
                "the store does not answer; nothing was changed; retry in 5 s"
            };
            assert_eq!(problem["detail"], detail, "{path}: {problem}");
        }
        let alive = api.get("/livez", None).await;
        assert_eq!((alive.status, alive.json()), (200, json!({"status": "alive"})));
        api.stop().await;
    });
}

/// A dispute whose answer is overdue reads as escalated, to its parties, and reading it — by
/// them or by anyone else — writes nothing: the writer logs the escalation, before the next move.
fn reading_an_overdue_dispute_writes_nothing(db: &dyn TestDb) {
    let tokens = {
        let mut store = open(db);
        let tokens = register_with_october(store.as_mut());
        close_october(store.as_mut());
        let month_ago = Instant::from_parts(clock().secs() - 30 * 86_400, 0);
        store.open_dispute(&agreement_id(), october(), None, None, host_claim(month_ago)).expect("dispute 1");
        tokens
    };
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let before = api.with_store(|store| snapshot(store)).await;
        for token in [&tokens.southwind, &tokens.aurora] {
            api.get("/v1/disputes/1", Some(token)).await.problem(404);
            assert_eq!(api.get("/v1/disputes", Some(token)).await.json()["items"], json!([]));
        }
        for token in [&tokens.northwind, &tokens.meridian] {
            assert_eq!(api.get("/v1/disputes/1", Some(token)).await.json()["state"], "escalated");
            assert_eq!(api.get("/v1/disputes", Some(token)).await.json()["items"][0]["state"], "escalated");
        }
        assert_eq!(api.with_store(|store| snapshot(store)).await, before, "no read wrote anything");
        assert_eq!(api.with_store(|store| store.dispute(1).expect("read").expect("dispute").dispute.state()).await, State::Open);
        // The arbiter decides: the move logs the escalation first, then the decision.
        let decide = json!({"action": "decide", "amount": "2.00", "reason": "half of it"});
        let decided = api.post_json("/v1/disputes/1/transitions", &tokens.arbiter, &decide).await;
        assert_eq!(decided.status, 200, "{}", String::from_utf8_lossy(&decided.bytes));
        let states: Vec<String> = decided.json()["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|t| t["state"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(states, ["open", "escalated", "decided"]);
        api.stop().await;
    });
}

/// The operator registers an auditor, gives it a token and grants it one agreement: it reads that
/// agreement and nothing else, until the grant is revoked. Grants are logged, listed to both
/// parties of the agreement (and to no one else), and only the operator makes them.
fn the_operator_grants_auditors_and_both_parties_see_it(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let auditor = json!({"id": "clearsight", "name": "Clearsight Audit", "role": "auditor"});
        assert_eq!(api.post_json("/v1/parties", &tokens.operator, &auditor).await.status, 201);
        let created = api.post_json("/v1/tokens", &tokens.operator, &json!({"party": "clearsight"})).await;
        assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.bytes));
        let created = created.json();
        assert_eq!((created["party"].as_str(), created["role"].as_str()), (Some("clearsight"), Some("auditor")));
        let clearsight = created["token"].as_str().expect("the token, shown once").to_owned();
        for token in [&tokens.meridian, &tokens.northwind, &tokens.auditor] {
            api.post_json("/v1/tokens", token, &json!({"party": "clearsight"})).await.problem(403);
        }
        api.post_json("/v1/tokens", &tokens.operator, &json!({"party": "nobody"})).await.problem(422);

        // Before a grant: the agreement is not there for it, as for anyone not entitled.
        let agreement = "/v1/agreements/meridian-northwind";
        api.get(agreement, Some(&clearsight)).await.problem(404);
        let grant = json!({"auditor": "clearsight", "agreement": "meridian-northwind"});
        for token in [&tokens.meridian, &tokens.northwind, &tokens.auditor, &tokens.arbiter] {
            api.post_json("/v1/grants", token, &grant).await.problem(403);
        }
        let to_host =
            api.post_json("/v1/grants", &tokens.operator, &json!({"auditor": "northwind", "agreement": "meridian-northwind"})).await;
        assert!(
            to_host.problem(422)["detail"].as_str().is_some_and(|d| d.ends_with("has role host; it must be an auditor")),
            "only to an auditor"
        );
        api.post_json("/v1/grants", &tokens.operator, &json!({"auditor": "clearsight", "agreement": "meridian-nowhere"}))
            .await
            .problem(404);
        let before = api.with_store(|store| store.log_size().expect("size")).await;
        let granted = api.post_json("/v1/grants", &tokens.operator, &grant).await;
        assert_eq!(granted.status, 201, "{}", String::from_utf8_lossy(&granted.bytes));
        let leaf = granted.json()["granted_leaf"].as_u64().expect("the grant's leaf");
        assert_eq!(leaf, before, "the grant is the log's next leaf");
        let again = api.post_json("/v1/grants", &tokens.operator, &grant).await.json();
        assert_eq!(again["granted_leaf"].as_u64(), Some(leaf), "a grant in force is not made twice");
        assert_eq!(api.with_store(|store| store.log_size().expect("size")).await, before + 1);

        // With it: the agreement, its statements and disputes; not another licensor's or host's.
        assert_eq!(api.get(agreement, Some(&clearsight)).await.status, 200);
        api.get("/v1/parties/southwind", Some(&clearsight)).await.problem(404);
        assert_eq!(api.get("/v1/parties/northwind", Some(&clearsight)).await.status, 200);

        // Both parties see who may read their agreement, in the list and in the log; others do not.
        for token in [&tokens.meridian, &tokens.northwind, &clearsight, &tokens.operator] {
            let listed = api.get("/v1/grants", Some(token)).await.json();
            let auditors: Vec<&str> = listed.as_array().expect("grants").iter().filter_map(|g| g["auditor"].as_str()).collect();
            assert!(auditors.contains(&"clearsight"), "{listed}");
        }
        for token in [&tokens.southwind, &tokens.aurora, &tokens.arbiter] {
            assert_eq!(api.get("/v1/grants", Some(token)).await.json(), json!([]));
            api.get("/v1/grants?agreement=meridian-northwind", Some(token)).await.problem(404);
        }
        // The grant's leaf: its event to the agreement's parties and its auditor only.
        for (token, readable) in
            [(&tokens.northwind, true), (&tokens.meridian, true), (&clearsight, true), (&tokens.southwind, false), (&tokens.aurora, false)]
        {
            let reply = api.get(&format!("/v1/log/inclusion?leaf={leaf}"), Some(token)).await;
            if readable {
                let event = reply.json()["event"].as_str().expect("the event").to_owned();
                assert_eq!(event, r#"{"action":"grant","agreement":"meridian-northwind","auditor":"clearsight","type":"grant"}"#);
            } else {
                reply.problem(404);
            }
        }

        // Revoked: it reads nothing again; the revocation is logged and listed.
        let revoked = api.post_json("/v1/grants/revocations", &tokens.operator, &grant).await;
        assert_eq!(revoked.status, 200, "{}", String::from_utf8_lossy(&revoked.bytes));
        assert_eq!(revoked.json()["revoked_leaf"].as_u64(), Some(leaf + 1));
        api.get(agreement, Some(&clearsight)).await.problem(404);
        api.post_json("/v1/grants/revocations", &tokens.operator, &grant).await.problem(404);
        let listed = api.get("/v1/grants?agreement=meridian-northwind", Some(&tokens.northwind)).await.json();
        assert!(
            listed.as_array().expect("grants").iter().any(|g| g["auditor"] == "clearsight" && g["revoked_leaf"] == leaf + 1),
            "{listed}"
        );

        // The operator is no party: it registers no key of its own.
        let key = json!({"key": host_key().verifier().to_text(), "proof": "AAAA"});
        api.post_json("/v1/keys", &tokens.operator, &key).await.problem(403);

        // The operator revokes a token: it is refused from then on.
        let id = created["id"].as_str().expect("the token's id");
        assert_eq!(api.post_json("/v1/tokens/revocations", &tokens.operator, &json!({"id": id})).await.json()["revoked"], true);
        api.get("/v1/grants", Some(&clearsight)).await.problem(401);
        api.stop().await;
    });
}

/// A host records its own contribution over HTTP; it does not count until the licensor accepts
/// it; neither side records for the other or accepts its own; others see none of it.
fn a_party_records_its_contributions_and_the_other_accepts_them(db: &dyn TestDb) {
    let tokens = register(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let contribution =
            json!({"id": "c-7", "party": "northwind", "kind": "maintenance", "date": "2026-10-12", "description": "patched the tokenizer"});
        let body = json!({"agreement": "meridian-northwind", "contribution": contribution});
        for _ in 0..2 {
            let recorded = api.post_json("/v1/contributions", &tokens.northwind, &body).await;
            assert_eq!(recorded.status, 201, "{}", String::from_utf8_lossy(&recorded.bytes));
            assert_eq!(recorded.json()["accepted"], false);
        }
        // Not for the other party, not accepted by its own party, not by anyone else.
        let theirs = api.post_json("/v1/contributions", &tokens.meridian, &body).await.problem(403);
        assert_eq!(theirs["errors"][0]["field"], "contribution.party", "{theirs}");
        let mut accepted = body.clone();
        accepted["contribution"]["accepted"] = json!(true);
        api.post_json("/v1/contributions", &tokens.northwind, &accepted).await.problem(422);
        let mut unknown = body.clone();
        unknown["contribution"]["kind"] = json!("marketing");
        assert_eq!(api.post_json("/v1/contributions", &tokens.northwind, &unknown).await.status, 422, "a kind the agreement does not list");
        let acceptance = json!({"agreement": "meridian-northwind", "id": "c-7"});
        api.post_json("/v1/contributions/acceptances", &tokens.northwind, &acceptance).await.problem(403);
        for token in [&tokens.southwind, &tokens.aurora] {
            api.post_json("/v1/contributions", token, &body).await.problem(404);
            api.post_json("/v1/contributions/acceptances", token, &acceptance).await.problem(404);
            api.get("/v1/contributions?agreement=meridian-northwind", Some(token)).await.problem(404);
        }
        api.post_json("/v1/contributions/acceptances", &tokens.meridian, &json!({"agreement": "meridian-northwind", "id": "c-9"}))
            .await
            .problem(404);
        // The licensor accepts: it counts from now on.
        let listed = api.get("/v1/contributions?agreement=meridian-northwind", Some(&tokens.meridian)).await.json();
        assert_eq!(listed["items"][0]["accepted"], false, "{listed}");
        let done = api.post_json("/v1/contributions/acceptances", &tokens.meridian, &acceptance).await;
        assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.bytes));
        let stored = api.with_store(|store| store.contributions(&agreement_id()).expect("contributions")).await;
        assert_eq!((stored.len(), stored[0].accepted), (1, true));
        let listed = api.get("/v1/contributions?agreement=meridian-northwind", Some(&tokens.auditor)).await.json();
        assert_eq!(listed["items"][0]["accepted"], true, "the granted auditor reads them: {listed}");
        api.stop().await;
    });
}

/// Every list: one envelope, pages that follow one another by cursor (and `Link`), filters,
/// unknown parameters and bad values refused by name, and nothing of another party's listed.
fn lists_page_filter_and_stay_in_scope(db: &dyn TestDb) {
    let tokens = register_with_october(open(db).as_mut());
    close_october(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        for n in 1..=5 {
            let paid = json!({"agreement": "meridian-northwind", "amount": format!("{n}.00"), "reference": format!("wire-{n}")});
            let reply = api.post_json("/v1/payments", &tokens.northwind, &paid).await;
            assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.bytes));
            let location = reply.header("location").expect("a Location").to_owned();
            assert_eq!(api.get(&location, Some(&tokens.northwind)).await.json()["amount"], format!("{n}.00"));
            api.get(&location, Some(&tokens.southwind)).await.problem(404);
        }
        let contribution = json!({"agreement": "meridian-northwind", "contribution": {"id": "c-1", "party": "northwind", "kind": "maintenance", "date": "2026-10-12", "description": "patched"}});
        let made = api.post_json("/v1/contributions", &tokens.northwind, &contribution).await;
        assert_eq!(made.header("location"), Some("/v1/contributions/meridian-northwind/c-1"));
        assert_eq!(api.get("/v1/contributions/meridian-northwind/c-1", Some(&tokens.meridian)).await.json()["party"], "northwind");
        api.get("/v1/contributions/meridian-northwind/c-1", Some(&tokens.southwind)).await.problem(404);
        api.get("/v1/contributions/meridian-northwind/c-2", Some(&tokens.meridian)).await.problem(404);

        // Pages of two follow one another to the end, by reference, and make up the whole list.
        let whole = api.get("/v1/payments", Some(&tokens.northwind)).await.json();
        assert_eq!(whole["next_cursor"], Value::Null);
        let references: Vec<&str> =
            whole["items"].as_array().expect("items").iter().map(|p| p["reference"].as_str().expect("a reference")).collect();
        assert_eq!(references, ["wire-1", "wire-2", "wire-3", "wire-4", "wire-5"]);
        let mut path = "/v1/payments?limit=2&state=pending".to_owned();
        let mut paged = Vec::new();
        loop {
            let reply = api.get(&path, Some(&tokens.northwind)).await;
            let page = reply.json();
            paged.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) => {
                    let link = reply.header("link").expect("a Link to the next page");
                    assert!(
                        link.contains(&format!("cursor={cursor}")) && link.contains("state=pending") && link.ends_with("rel=\"next\""),
                        "{link}"
                    );
                    path = format!("/v1/payments?limit=2&state=pending&cursor={cursor}");
                }
                None => {
                    assert_eq!(reply.header("link"), None, "the last page links nowhere");
                    break;
                }
            }
        }
        assert_eq!(paged, whole["items"].as_array().expect("items").clone());
        assert_eq!(api.get("/v1/payments?state=confirmed", Some(&tokens.northwind)).await.json()["items"], json!([]));

        // Filters.
        let statements = |query: &'static str| {
            let api = &api;
            let token = tokens.northwind.clone();
            async move { api.get(&format!("/v1/statements{query}"), Some(&token)).await.json()["items"].as_array().expect("items").len() }
        };
        assert_eq!(statements("").await, 1);
        assert_eq!(statements("?from=2026-10&to=2026-10&kind=original").await, 1);
        assert_eq!(statements("?from=2026-11").await, 0);
        assert_eq!(statements("?kind=restatement").await, 0);
        let october = api.get("/v1/statements", Some(&tokens.northwind)).await.json()["items"][0].clone();
        assert_eq!((october["net_payable"].is_string(), october["outstanding"].is_string()), (true, true), "{october}");
        assert_eq!(api.get("/v1/contributions?state=recorded&from=2026-10", Some(&tokens.meridian)).await.json()["items"][0]["id"], "c-1");
        assert_eq!(api.get("/v1/contributions?state=accepted", Some(&tokens.meridian)).await.json()["items"], json!([]));
        let agreements = api.get("/v1/agreements?host=northwind", Some(&tokens.meridian)).await.json();
        assert_eq!(agreements["items"][0]["id"], "meridian-northwind", "{agreements}");
        assert_eq!(api.get("/v1/agreements?host=southwind", Some(&tokens.northwind)).await.json()["items"], json!([]));

        // Refused by name, with what is right.
        let refused = |path: &'static str| {
            let api = &api;
            let token = tokens.northwind.clone();
            async move { api.get(path, Some(&token)).await.problem(400)["detail"].as_str().expect("a detail").to_owned() }
        };
        assert!(refused("/v1/payments?limit=1&period=2026-10").await.contains("no parameter `period`"));
        assert!(refused("/v1/statements?limit=0").await.contains("from 1 to 1000"));
        assert!(refused("/v1/disputes?state=closed").await.contains("`open`"));
        assert!(refused("/v1/contributions?cursor=abc").await.contains("next_cursor"));
        assert!(refused("/v1/statements?from=2026-11&to=2026-10").await.contains("after it ends"));
        assert!(refused("/v1/keys?agreement=meridian-northwind").await.contains("`limit`, `cursor`"));

        // Another host's lists are empty, and naming the agreement is the same 404 as one that
        // does not exist.
        for list in ["/v1/payments", "/v1/statements", "/v1/contributions", "/v1/disputes", "/v1/agreements"] {
            let theirs = api.get(list, Some(&tokens.southwind)).await;
            assert_eq!(theirs.json(), json!({"items": [], "next_cursor": null}), "{list}");
            let named = api.get(&format!("{list}?agreement=meridian-northwind"), Some(&tokens.southwind)).await;
            let unknown = api.get(&format!("{list}?agreement=nowhere-at-all"), Some(&tokens.southwind)).await;
            if list == "/v1/agreements" {
                assert_eq!((named.status, unknown.status), (400, 400), "the agreements list is filtered by party");
                continue;
            }
            let (named, unknown) = (named.problem(404), unknown.problem(404));
            assert_eq!(
                named["detail"].as_str().map(|d| d.replace("meridian-northwind", "X")),
                unknown["detail"].as_str().map(|d| d.replace("nowhere-at-all", "X")),
                "{list}"
            );
        }
        api.stop().await;
    });
}

/// The receiver's check, as docs/INTEGRATING.md writes it: HMAC-SHA256 under the secret of
/// `<t>.<body>`, in hex, is the header's `v1`.
fn signed_by(secret: &str, received: &Received) -> bool {
    use hmac::{KeyInit as _, Mac as _};
    let header = received.headers.get("revshare-signature").expect("a signature header");
    let part = |name: &str| header.split(',').find_map(|p| p.strip_prefix(&format!("{name}="))).expect("a part").to_owned();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("a key");
    mac.update(format!("{}.", part("t")).as_bytes());
    mac.update(&received.body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    expected == part("v1")
}

/// Webhooks: subscribed by a party for itself (loopback or allowed targets only), told only what
/// the party may read, signed, retried until the receiver takes them, and delivered after a
/// restart of the server from the outbox.
fn webhooks_are_signed_retried_and_survive_a_restart(db: &dyn TestDb) {
    let tokens = register_with_october(open(db).as_mut());
    run(async {
        let (northwind_hook, southwind_hook) = (Receiver::start().await, Receiver::start().await);
        let api = Api::start(db, 1 << 20).await;
        let subscribe = |url: &str, events: &[&str]| json!({"url": url, "events": events});
        let outside =
            api.post_json("/v1/webhooks", &tokens.northwind, &subscribe("http://10.1.2.3/in", &["statement.closed"])).await.problem(422);
        assert!(outside["detail"].as_str().is_some_and(|d| d.contains("--webhook-allow")), "{outside}");
        let unknown =
            api.post_json("/v1/webhooks", &tokens.northwind, &subscribe(&northwind_hook.url, &["statement.closd"])).await.problem(400);
        assert!(unknown["detail"].as_str().is_some_and(|d| d.contains("statement.closed")), "{unknown}");
        api.post_json("/v1/webhooks", &tokens.operator, &subscribe(&northwind_hook.url, &["statement.closed"])).await.problem(403);
        let events = ["statement.closed", "payment.confirmed", "dispute.opened"];
        let made = api.post_json("/v1/webhooks", &tokens.northwind, &subscribe(&northwind_hook.url, &events)).await;
        assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.bytes));
        let location = made.header("location").expect("a Location").to_owned();
        let secret = made.json()["secret"].as_str().expect("the secret, once").to_owned();
        assert!(secret.starts_with("whsec_"));
        let read = api.get(&location, Some(&tokens.northwind)).await.json();
        assert_eq!((read.get("secret"), read["url"].as_str()), (None, Some(northwind_hook.url.as_str())), "the secret is shown once");
        api.get(&location, Some(&tokens.southwind)).await.problem(404);
        let theirs = api.post_json("/v1/webhooks", &tokens.southwind, &subscribe(&southwind_hook.url, &events)).await;
        assert_eq!(theirs.status, 201);

        // A month closed: its host is told, signed, within seconds; the other host is not.
        let close = json!({"agreement": "meridian-northwind", "period": "2026-10"});
        assert_eq!(api.post_json("/v1/close", &tokens.meridian, &close).await.status, 201);
        let closed = northwind_hook.delivered("statement.closed", std::time::Duration::from_secs(5)).await;
        assert!(signed_by(&secret, &closed), "the signature checks out: {:?}", closed.headers);
        assert!(!signed_by("whsec_another", &closed));
        let event = closed.json();
        assert_eq!(
            (event["type"].as_str(), event["data"]["agreement"].as_str(), event["data"]["period"].as_str()),
            (Some("statement.closed"), Some("meridian-northwind"), Some("2026-10")),
            "{event}"
        );
        assert_eq!(closed.headers.get("revshare-event-id").map(String::as_str), event["id"].as_str());

        // The receiver fails twice: the same event comes again until it is taken.
        northwind_hook.fail_next(2);
        let paid = json!({"agreement": "meridian-northwind", "amount": "5.00", "reference": "wire-9", "from": "host"});
        assert_eq!(api.post_json("/v1/payments", &tokens.meridian, &paid).await.status, 201);
        let payment = northwind_hook.delivered("payment.confirmed", std::time::Duration::from_secs(5)).await;
        assert_eq!(payment.json()["data"], json!({"agreement": "meridian-northwind", "reference": "wire-9"}));
        let tries: Vec<Received> = northwind_hook
            .got()
            .into_iter()
            .filter(|r| r.headers.get("revshare-event-type").map(String::as_str) == Some("payment.confirmed"))
            .collect();
        assert_eq!(tries.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 500, 204]);
        assert!(tries.iter().all(|r| r.body == payment.body), "every attempt is the same event, byte for byte");
        let log = api.get(&format!("{location}/deliveries"), Some(&tokens.northwind)).await.json();
        let logged = log["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|d| d["event_type"] == "payment.confirmed")
            .expect("the payment's delivery")
            .clone();
        assert_eq!(
            (logged["attempts"].as_u64(), logged["state"].as_str(), logged["last_status"].as_u64()),
            (Some(3), Some("delivered"), Some(204)),
            "{logged}"
        );
        api.get(&format!("{location}/deliveries"), Some(&tokens.southwind)).await.problem(404);

        // Down while the event happens, the server restarts, the receiver comes back: delivered.
        northwind_hook.fail_next(u32::MAX);
        let claim =
            json!({"agreement": "meridian-northwind", "period": "2026-10", "amount": "1.00", "reason": "check", "evidence": ["sha256:ab"]});
        assert_eq!(api.post_json("/v1/disputes", &tokens.northwind, &claim).await.status, 201);
        let start = std::time::Instant::now();
        while !northwind_hook.got().iter().any(|r| r.headers.get("revshare-event-type").map(String::as_str) == Some("dispute.opened")) {
            assert!(start.elapsed() < std::time::Duration::from_secs(5), "no attempt at the dispute's event");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        api.stop().await;
        northwind_hook.fail_next(0);
        let api = Api::start(db, 1 << 20).await;
        let opened = northwind_hook.delivered("dispute.opened", std::time::Duration::from_secs(5)).await;
        assert!(signed_by(&secret, &opened));
        assert!(southwind_hook.got().is_empty(), "another host is told nothing of this agreement: {:?}", southwind_hook.got());

        // Removed: nothing more is delivered; the log stays.
        api.send(reqwest::Method::DELETE, &location, Some(&tokens.southwind), None, Vec::new()).await.problem(404);
        let removed = api.send(reqwest::Method::DELETE, &location, Some(&tokens.northwind), None, Vec::new()).await;
        assert_eq!((removed.status, removed.json()["disabled"].as_bool()), (200, Some(true)));
        let before = northwind_hook.got().len();
        let more = json!({"agreement": "meridian-northwind", "amount": "1.00", "reference": "wire-10", "from": "host"});
        assert_eq!(api.post_json("/v1/payments", &tokens.meridian, &more).await.status, 201);
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(northwind_hook.got().len(), before);
        assert_eq!(api.get("/v1/webhooks", Some(&tokens.northwind)).await.json()["items"][0]["disabled"], true);
        api.stop().await;
    });
}

/// A host's usage batches, paged by leaf, each with its receipt; no one else's, and nothing to
/// anyone else.
fn a_host_lists_its_batches_and_their_receipts(db: &dyn TestDb) {
    let tokens = register_with_october(open(db).as_mut());
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let line = northwind_lines().lines().next().expect("a record").replace(r#""id":"e1""#, r#""id":"late-1""#);
        let sent = api.post_usage(&tokens.northwind, "application/x-ndjson", &line).await;
        assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.bytes));
        let whole = api.get("/v1/usage/batches", Some(&tokens.northwind)).await.json();
        let items = whole["items"].as_array().expect("items").clone();
        assert_eq!(items.len(), 2, "the batch stored before and the one just sent: {whole}");
        assert_eq!(items[1]["digest"], sent.json()["receipt"]["batch"]["digest"]);
        let first = api.get("/v1/usage/batches?limit=1", Some(&tokens.northwind)).await.json();
        assert_eq!(first["items"], json!([items[0]]));
        let cursor = first["next_cursor"].as_str().expect("a next page");
        let second = api.get(&format!("/v1/usage/batches?limit=1&cursor={cursor}"), Some(&tokens.northwind)).await.json();
        assert_eq!((second["items"].clone(), second["next_cursor"].clone()), (json!([items[1]]), Value::Null));
        let receipt_path = items[1]["receipt"].as_str().expect("a receipt link").to_owned();
        let receipt = api.get(&receipt_path, Some(&tokens.northwind)).await.json();
        assert_eq!((receipt["type"].as_str(), &receipt["batch"]), (Some("receipt"), &sent.json()["receipt"]["batch"]), "{receipt}");
        // Another host: no batch listed, and this one's receipt is not found; others may not ask.
        assert_eq!(api.get("/v1/usage/batches", Some(&tokens.southwind)).await.json()["items"], json!([]));
        let theirs = api.get(&receipt_path, Some(&tokens.southwind)).await.problem(404);
        let nowhere = api.get("/v1/usage/batches/99999", Some(&tokens.southwind)).await.problem(404);
        assert_eq!(
            theirs["detail"].as_str().map(|d| d.replace(&receipt_path["/v1/usage/batches/".len()..], "N")),
            nowhere["detail"].as_str().map(|d| d.replace("99999", "N"))
        );
        for token in [&tokens.meridian, &tokens.auditor] {
            api.get("/v1/usage/batches", Some(token)).await.problem(403);
            api.get(&receipt_path, Some(token)).await.problem(403);
        }
        api.get("/v1/usage/batches?cursor=djE6eA", Some(&tokens.northwind)).await.problem(400);
        api.stop().await;
    });
}

/// Events no leaf marks: a payment waiting for its payee, a dispute whose answer is due within a
/// day, the open month's preview over a threshold; each told once, however many passes find it.
fn payments_waiting_and_deadlines_near_are_told_once(db: &dyn TestDb) {
    let tokens = {
        let mut store = open(db);
        let tokens = register_with_october(store.as_mut());
        close_october(store.as_mut());
        let days = store.agreement(&agreement_id(), None).expect("the agreement").dispute_response_days();
        // Opened so long ago that its answer is due in an hour.
        let at = Instant::from_parts(clock().secs() - i64::from(days) * 86_400 + 3_600, 0);
        store.open_dispute(&agreement_id(), october(), None, None, host_claim(at)).expect("dispute 1");
        tokens
    };
    run(async {
        let hook = Receiver::start().await;
        let api = Api::start(db, 1 << 20).await;
        let subscribe = json!({"url": hook.url, "events": ["payment.recorded", "dispute.deadline_near"]});
        assert_eq!(api.post_json("/v1/webhooks", &tokens.meridian, &subscribe).await.status, 201);
        let pay = json!({"agreement": "meridian-northwind", "amount": "7.00", "reference": "wire-p"});
        assert_eq!(api.post_json("/v1/payments", &tokens.northwind, &pay).await.status, 201);
        let waiting = hook.delivered("payment.recorded", std::time::Duration::from_secs(5)).await.json();
        assert_eq!(
            waiting["data"],
            json!({"agreement": "meridian-northwind", "reference": "wire-p", "from": "host", "amount": "7.00", "currency": "USD"})
        );
        let near = hook.delivered("dispute.deadline_near", std::time::Duration::from_secs(5)).await.json();
        assert_eq!((near["data"]["dispute"].as_u64(), near["data"]["state"].as_str()), (Some(1), Some("open")), "{near}");
        // The open month's preview (November, its minimum alone) against two thresholds.
        let (low, high) = (Receiver::start().await, Receiver::start().await);
        let threshold = |url: &str, amount: &str| json!({"url": url, "events": ["preview.threshold_crossed"], "preview_threshold": amount});
        assert_eq!(api.post_json("/v1/webhooks", &tokens.northwind, &threshold(&low.url, "100.00")).await.status, 201);
        assert_eq!(api.post_json("/v1/webhooks", &tokens.northwind, &threshold(&high.url, "1000000.00")).await.status, 201);
        let crossed = low.delivered("preview.threshold_crossed", std::time::Duration::from_secs(5)).await.json();
        assert_eq!(
            (crossed["data"]["period"].as_str(), crossed["data"]["threshold"].as_str(), crossed["data"]["agreement"].as_str()),
            (Some("2026-11"), Some("100.00"), Some("meridian-northwind")),
            "{crossed}"
        );
        let missing = json!({"url": low.url, "events": ["preview.threshold_crossed"]});
        api.post_json("/v1/webhooks", &tokens.northwind, &missing).await.problem(400);
        let stray = json!({"url": low.url, "events": ["statement.closed"], "preview_threshold": "5.00"});
        api.post_json("/v1/webhooks", &tokens.northwind, &stray).await.problem(400);
        api.post_json("/v1/webhooks", &tokens.northwind, &threshold(&low.url, "a lot")).await.problem(400);

        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let kinds: Vec<String> = hook.got().iter().filter_map(|r| r.headers.get("revshare-event-type").cloned()).collect();
        assert_eq!(kinds.len(), 2, "each told once: {kinds:?}");
        assert_eq!(low.got().len(), 1, "a month's crossing is told once");
        assert!(high.got().is_empty(), "a threshold not reached is not told");
        api.stop().await;
    });
}

/// `Idempotency-Key` on every POST the document lists: the same key and request answer the first
/// answer again (a refusal too: it is final), marked replayed; the same key with another body is
/// 409. Each route is called by a party that may use it, with a body it refuses, so nothing is
/// created and the test needs no fixture per route.
fn every_post_replays_its_first_answer_and_refuses_another_request(db: &dyn TestDb) {
    let tokens = register_with_october(open(db).as_mut());
    let document: Value = serde_json::from_str(&revshare_server::openapi().to_json().expect("JSON")).expect("the document");
    run(async {
        let api = Api::start(db, 1 << 20).await;
        let mut routes = 0;
        for (path, item) in document["paths"].as_object().expect("paths") {
            if item.get("post").is_none() || !path.starts_with("/v1/") {
                continue;
            }
            routes += 1;
            let concrete = path.replace("{agreement}", "meridian-northwind").replace("{period}", "2026-10").replace("{id}", "1");
            let token = if ["/v1/tokens", "/v1/tokens/revocations", "/v1/grants", "/v1/grants/revocations", "/v1/parties"]
                .contains(&path.as_str())
            {
                &tokens.operator
            } else {
                &tokens.northwind
            };
            // A key names one request of its party, whatever the route: one key per route here.
            let key = format!("key-{routes}");
            let send = |body: &'static str| {
                let headers = [("authorization", format!("Bearer {token}")), ("idempotency-key", key.clone())];
                let (api, concrete) = (&api, concrete.clone());
                async move {
                    api.send_with(
                        &api.client,
                        reqwest::Method::POST,
                        &concrete,
                        &headers,
                        Some("application/json"),
                        body.as_bytes().to_vec(),
                    )
                    .await
                }
            };
            let first = send(r#"{"refused": true}"#).await;
            assert!(
                (400..500).contains(&first.status) && first.status != 409 && first.status != 429,
                "POST {path}: {} {}",
                first.status,
                String::from_utf8_lossy(&first.bytes)
            );
            let again = send(r#"{"refused": true}"#).await;
            assert_eq!((again.status, &again.bytes), (first.status, &first.bytes), "POST {path}: the first answer again");
            assert_eq!(again.header("idempotent-replayed"), Some("true"), "POST {path}");
            assert_eq!(first.header("idempotent-replayed"), None, "POST {path}");
            let other = send(r#"{"refused": "another"}"#).await;
            assert_eq!(other.status, 409, "POST {path}: another request with the key: {}", String::from_utf8_lossy(&other.bytes));
        }
        assert!(routes >= 19, "every POST of the document is tried ({routes})");
        api.stop().await;
    });
}
