//! The conformance suite: every test runs against a fresh SQLite file and against a fresh
//! PostgreSQL database, through `&mut dyn Store`, so both stores keep one contract.
//!
//! Each PostgreSQL run gets a database of its own (`revshare_testdb`: the machine's server, or
//! `REVSHARE_TEST_PG`), dropped afterwards; a server that cannot be reached fails the test.

use revshare_core::contribution::{Contribution, parse_contribution_line};
use revshare_core::dispute::{Actor, ActorRole, DisputeError, State, Transition};
use revshare_core::ids::{AgreementId, ModelId, PartyId};
use revshare_core::ledger::{Balances, JournalEntry, LedgerError, Party as LedgerParty};
use revshare_core::licence::Lineage;
use revshare_core::merkle::{self, MemoryCells};
use revshare_core::money::Currency;
use revshare_core::note::SignerKey;
use revshare_core::settle::{SettlementInput, settle, settle_records, sorted_digest};
use revshare_core::statement::{AdjustmentKind, Statement};
use revshare_core::time::{Instant, Period};
use revshare_core::transparency::{self, Signed, SignedBatch};
use revshare_core::usage::{UsageRecord, parse_json_line};
use revshare_store::accounts::{self, PaymentQuery, PaymentState, StatementQuery};
use revshare_store::close::{CloseError, close_month};
use revshare_store::payments;
use revshare_store::{
    Attempt, Grain, IngestMode, KeptAnswer, Model, NewDelivery, NewEndpoint, NewStatement, Party, PgStore, ProblemKind, Role, SqliteStore,
    StatementKind, Store, StoreError,
};
use revshare_store::{Batch, LogLeaf, batch_digest};
use revshare_testdb::PgTestDb;

// ---------------------------------------------------------------------------------------------
// Harness

trait TestDb {
    /// Opens the test database (again): a new connection, migrations applied.
    fn open(&self) -> Box<dyn Store + Send>;
    /// Runs SQL on the database behind revshare's back (the script of the database's dialect),
    /// returning the database's error message.
    fn raw(&self, sqlite: &str, postgres: &str) -> Result<(), String>;
}

struct SqliteDb {
    dir: tempfile::TempDir,
}

impl SqliteDb {
    fn new() -> SqliteDb {
        SqliteDb { dir: tempfile::tempdir().expect("a temporary directory") }
    }
}

impl TestDb for SqliteDb {
    fn open(&self) -> Box<dyn Store + Send> {
        Box::new(SqliteStore::open(self.dir.path().join("revshare.sqlite")).expect("the SQLite store opens"))
    }

    fn raw(&self, sqlite: &str, _postgres: &str) -> Result<(), String> {
        let connection = rusqlite::Connection::open(self.dir.path().join("revshare.sqlite")).map_err(|e| e.to_string())?;
        connection.execute_batch(sqlite).map_err(|e| e.to_string())
    }
}

struct PgDb(PgTestDb);

impl PgDb {
    fn new() -> PgDb {
        PgDb(PgTestDb::new("revshare_test"))
    }
}

impl TestDb for PgDb {
    fn open(&self) -> Box<dyn Store + Send> {
        Box::new(PgStore::connect_with(&self.0.config).expect("the PostgreSQL store opens"))
    }

    fn raw(&self, _sqlite: &str, postgres: &str) -> Result<(), String> {
        let message = |e: ::postgres::Error| e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned());
        let mut client = self.0.config.connect(::postgres::NoTls).map_err(message)?;
        client.batch_execute(postgres).map_err(message)
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&super::SqliteDb::new()); } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(&super::PgDb::new()); } )*
        }
    };
}

conformance!(
    migrations_are_idempotent,
    parties_register_once,
    models_and_aliases,
    derived_models_belong_to_their_base_and_settle_under_its_agreement,
    restricted_use_is_settled_and_flagged_also_after_an_amendment,
    the_compliance_report_shows_a_licensor_its_own_findings,
    the_registry_lists_by_id,
    agreement_versions_and_amendments,
    agreement_needs_registered_parties_and_models,
    exclusivity_conflict_names_the_other_agreement,
    one_agreement_per_pair_at_a_time,
    atomic_batch_stores_nothing_on_a_problem,
    partial_batch_stores_the_good_records,
    digests_given_with_a_batch,
    a_group_of_batches_ends_as_the_batches_one_by_one,
    duplicates_compare_by_value,
    mixed_batch_classifies_each_record_in_order,
    conflicts_leave_the_stored_record_untouched,
    currency_must_match_the_agreement,
    aliases_roll_up_under_the_licensed_model,
    daily_usage_sums_each_day,
    idempotent_answers_are_kept_once_per_party,
    webhook_deliveries_are_queued_once_and_kept_until_delivered,
    store_settles_the_worked_example_like_the_core,
    store_settles_generated_usage_like_the_core,
    concurrent_writers_end_as_one_sequential_writer,
    registering_an_agreement_places_earlier_records,
    records_of_a_closed_month_are_late,
    a_preview_is_what_closing_would_finalise_and_writes_nothing,
    a_month_closes_only_once_its_late_reports_had_time,
    after_the_last_month_a_final_true_up_carries_what_came_late,
    a_close_counts_every_record_stored_before_it,
    statements_are_immutable,
    statement_and_entry_are_one_transaction,
    payments_are_posted_once,
    a_payment_posts_when_its_payee_confirms_it,
    reversals_restore_the_balance,
    lists_page_through_statements_and_payments,
    the_journal_read_back_balances_like_memory,
    a_damaged_posting_is_detected_on_read,
    contributions_are_kept_per_agreement,
    only_acceptance_changes_a_stored_contribution,
    store_settles_the_worked_example_with_stored_contributions,
    log_proofs_match_the_core,
    events_are_logged,
    signed_batches_are_checked,
    statements_are_signed_by_known_keys,
    a_deployment_key_is_rotated_only_by_its_predecessor,
    a_party_key_is_its_own_to_register_and_rotate,
    the_log_is_append_only,
    checkpoints_are_kept_once_per_size,
    tokens_are_found_by_hash_and_revoked,
    the_operator_has_tokens_and_grants_are_logged,
    disputes_follow_the_process_and_carry_into_the_next_statement,
    unanswered_disputes_escalate_by_themselves,
    both_sides_accept_an_arbiter_for_a_dispute,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

const AGREEMENT: &str = include_str!("../../../examples/agreement.toml");
const USAGE: &str = include_str!("../../../examples/usage.jsonl");
const CONTRIBUTIONS: &str = include_str!("../../../examples/contributions.jsonl");

fn party(id: &str, role: Role) -> Party {
    Party { id: PartyId::parse(id).expect("a party id"), name: format!("{id} Ltd"), role }
}

fn model(id: &str, owner: &str, derived_from: Option<&str>) -> Model {
    Model {
        id: ModelId::parse(id).expect("a model id"),
        owner: PartyId::parse(owner).expect("a party id"),
        derived_from: derived_from.map(|d| ModelId::parse(d).expect("a model id")),
        registered_by: None,
    }
}

fn pid(id: &str) -> PartyId {
    PartyId::parse(id).expect("a party id")
}

fn mid(id: &str) -> ModelId {
    ModelId::parse(id).expect("a model id")
}

fn aid(id: &str) -> AgreementId {
    AgreementId::parse(id).expect("an agreement id")
}

fn month(text: &str) -> Period {
    Period::parse(text).expect("a month")
}

fn parse_records(text: &str) -> Vec<UsageRecord<'static>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_json_line(l.as_bytes()).unwrap_or_else(|e| panic!("{l}: {e:?}")).into_owned())
        .collect()
}

/// A USD record of northwind with the given varying fields.
fn record(id: &str, model: &str, use_case: &str, region: &str, time: &str, revenue: &str) -> UsageRecord<'static> {
    let line = format!(
        r#"{{"id":"{id}","host":"northwind","model":"{model}","use_case":"{use_case}","region":"{region}","time":"{time}","requests":10,"input_tokens":1000,"output_tokens":500,"revenue":"{revenue}","currency":"USD"}}"#
    );
    parse_records(&line).remove(0)
}

fn with_host(mut record: UsageRecord<'static>, host: &str) -> UsageRecord<'static> {
    record.host = host.to_owned().into();
    record
}

/// meridian (licensor) with models m-8b and m-70b; hosts northwind and southwind.
fn register_example_parties(store: &mut dyn Store) {
    store.add_party(&party("meridian", Role::Licensor)).expect("add meridian");
    store.add_party(&party("northwind", Role::Host)).expect("add northwind");
    store.add_party(&party("southwind", Role::Host)).expect("add southwind");
    store.add_model(&model("m-8b", "meridian", None)).expect("add m-8b");
    store.add_model(&model("m-70b", "meridian", None)).expect("add m-70b");
}

fn register_example(store: &mut dyn Store) {
    register_example_parties(store);
    store.add_agreement("agreement.toml", AGREEMENT).expect("add the example agreement");
}

/// The example agreement with some lines replaced.
fn edited(text: &str, replacements: &[(&str, &str)]) -> String {
    replacements.iter().fold(text.to_owned(), |t, (from, to)| {
        assert!(t.contains(from), "the fixture has no `{from}`");
        t.replacen(from, to, 1)
    })
}

/// Settles a month from the store, as `revshare close` does; the canonical bytes.
fn settle_from_store(store: &mut dyn Store, id: &str, period: Period, contributions: &[Contribution]) -> Vec<u8> {
    settle_statement(store, id, period, contributions).to_canonical().expect("canonical bytes")
}

/// Settles a month from the store, as `revshare close` does.
fn settle_statement(store: &mut dyn Store, id: &str, period: Period, contributions: &[Contribution]) -> Statement {
    let agreement = store.agreement(&aid(id), None).expect("the agreement");
    let (rollup, _) = store.rollup(&aid(id), period).expect("the rollup");
    let usage_set = store.usage_set(&aid(id), period).expect("the usage set");
    let lineage = store.lineage().expect("the lineage");
    settle(&SettlementInput {
        agreement: &agreement,
        period,
        rollup: &rollup,
        usage_digest: usage_set.digest(),
        contributions,
        adjustments: Vec::new(),
        lineage: &lineage,
    })
    .expect("settles from the store")
}

/// Settles a month from records in memory, with the core alone.
fn settle_in_memory(
    store: &mut dyn Store,
    id: &str,
    period: Period,
    records: &[UsageRecord<'_>],
    contributions: &[Contribution],
) -> Vec<u8> {
    let agreement = store.agreement(&aid(id), None).expect("the agreement");
    let lineage = store.lineage().expect("the lineage");
    let statement = settle_records(&agreement, period, records, contributions, Vec::new(), &lineage).expect("settles in memory");
    statement.to_canonical().expect("canonical bytes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Schema and registry

fn migrations_are_idempotent(db: &dyn TestDb) {
    let mut store = db.open();
    assert_eq!(store.schema_version().expect("version"), 21);
    store.add_party(&party("meridian", Role::Licensor)).expect("add a party");
    drop(store);
    let mut again = db.open();
    assert_eq!(again.schema_version().expect("version"), 21, "opening again applies nothing twice");
    assert_eq!(again.party(&pid("meridian")).expect("read"), Some(party("meridian", Role::Licensor)), "data survives reopening");
    let mut third = db.open();
    assert_eq!(third.schema_version().expect("version"), 21);
}

fn parties_register_once(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    store.add_party(&party("northwind", Role::Host)).expect("add");
    store.add_party(&party("northwind", Role::Host)).expect("the same party again is a no-op");
    let err = store.add_party(&party("northwind", Role::Licensor)).expect_err("same id, other role");
    assert!(matches!(err, StoreError::PartyExists { .. }), "{err}");
    assert!(err.to_string().contains("already registered as host"), "{err}");
    let err = store.add_party(&Party { name: " ".to_owned(), ..party("acme", Role::Auditor) }).expect_err("blank name");
    assert!(matches!(err, StoreError::BadName { .. }), "{err}");
    assert_eq!(store.party(&pid("acme")).expect("read"), None);
    assert!(matches!(Role::parse("admin"), Err(StoreError::BadRole(_))));
    assert_eq!(Role::parse("arbiter").expect("a role"), Role::Arbiter);
}

fn the_registry_lists_by_id(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    assert!(store.parties().expect("parties").is_empty() && store.models().expect("models").is_empty());
    register_example(store);
    store.add_model(&model("m-70b-ft", "meridian", Some("m-70b"))).expect("a derived model");
    let parties: Vec<Party> = store.parties().expect("parties");
    assert_eq!(parties, [party("meridian", Role::Licensor), party("northwind", Role::Host), party("southwind", Role::Host)]);
    let models = store.models().expect("models");
    assert_eq!(models, [model("m-70b", "meridian", None), model("m-70b-ft", "meridian", Some("m-70b")), model("m-8b", "meridian", None)]);
    // The latest version of each agreement.
    store.add_agreement("v2.toml", &edited(AGREEMENT, &[("version = 1", "version = 2")])).expect("an amendment");
    let agreements = store.agreements().expect("agreements");
    assert_eq!(agreements.iter().map(|a| (a.id().as_str(), a.version())).collect::<Vec<_>>(), [("meridian-northwind", 2)]);
    assert_eq!(store.agreements_of_licensor(&pid("meridian")).expect("of meridian"), agreements);
    assert!(store.agreements_of_licensor(&pid("northwind")).expect("of a host").is_empty());
}

fn models_and_aliases(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example_parties(store);
    store.add_model(&model("m-70b", "meridian", None)).expect("the same model again is a no-op");
    store.add_model(&model("m-70b-ft", "meridian", Some("m-70b"))).expect("a derived model");
    assert_eq!(store.model(&mid("m-70b-ft")).expect("read"), Some(model("m-70b-ft", "meridian", Some("m-70b"))));

    let err = store.add_model(&model("m-70b", "meridian", Some("m-8b"))).expect_err("same id, other base");
    assert!(matches!(err, StoreError::ModelExists { .. }), "{err}");
    let err = store.add_model(&model("x-1", "northwind", None)).expect_err("a host owns no models");
    assert!(matches!(err, StoreError::WrongRole { found: Role::Host, expected: Role::Licensor, .. }), "{err}");
    let err = store.add_model(&model("x-1", "nobody", None)).expect_err("unknown owner");
    assert!(matches!(err, StoreError::UnknownParty { .. }), "{err}");
    let err = store.add_model(&model("x-1", "meridian", Some("x-0"))).expect_err("unknown base");
    assert!(matches!(err, StoreError::UnknownModel { .. }), "{err}");

    store.add_alias(&pid("northwind"), &mid("nw-llama"), &mid("m-70b")).expect("an alias");
    store.add_alias(&pid("northwind"), &mid("nw-llama"), &mid("m-70b")).expect("the same alias again");
    let err = store.add_alias(&pid("northwind"), &mid("nw-llama"), &mid("m-8b")).expect_err("re-pointing an alias");
    assert!(matches!(err, StoreError::AliasExists { .. }), "{err}");
    let err = store.add_alias(&pid("meridian"), &mid("mer-llama"), &mid("m-70b")).expect_err("aliases belong to hosts");
    assert!(matches!(err, StoreError::WrongRole { .. }), "{err}");
    let err = store.add_alias(&pid("northwind"), &mid("nw-other"), &mid("m-1t")).expect_err("unknown target");
    assert!(matches!(err, StoreError::UnknownModel { .. }), "{err}");

    assert_eq!(store.resolve_model(&pid("northwind"), "nw-llama").expect("alias"), mid("m-70b"));
    assert_eq!(store.resolve_model(&pid("northwind"), "m-8b").expect("plain"), mid("m-8b"));
    let err = store.resolve_model(&pid("southwind"), "nw-llama").expect_err("another host's alias");
    assert!(matches!(err, StoreError::Unresolved { .. }), "{err}");
    assert!(err.to_string().contains("neither a registered model nor an alias of host `southwind`"), "{err}");
}

fn host_model(id: &str, base: &str, host: &str) -> Model {
    Model { registered_by: Some(pid(host)), ..model(id, "meridian", Some(base)) }
}

/// SPEC §11: a derived model belongs to its base model's licensor at any depth; a host registers
/// its own (and only its records, aliases and derivations may name it); no chain comes back to
/// where it started; the agreement covering the base settles the derived usage on its own line.
fn derived_models_belong_to_their_base_and_settle_under_its_agreement(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example_parties(store);
    store.add_party(&party("aurora", Role::Licensor)).expect("another licensor");
    store.add_party(&party("audit-co", Role::Auditor)).expect("an auditor");
    store.add_model(&model("m-70b-ft", "meridian", Some("m-70b"))).expect("the licensor's fine-tune");
    store.add_model(&host_model("m-70b-nw", "m-70b-ft", "northwind")).expect("a host's distillation of it, depth 2");
    store.add_model(&host_model("m-70b-nw", "m-70b-ft", "northwind")).expect("the same again is a no-op");

    // Another licensor's model, for another owner, from a host or a licensor.
    let err = store.add_model(&model("a-ft", "aurora", Some("m-70b"))).expect_err("aurora deriving from meridian's model");
    assert!(matches!(err, StoreError::DerivedOwner { .. }), "{err}");
    assert!(err.to_string().contains("`aurora` registers derivatives of its own models only"), "{err}");
    let err = store
        .add_model(&Model { owner: pid("aurora"), ..host_model("x-ft", "m-70b", "northwind") })
        .expect_err("a host naming another owner");
    assert!(err.to_string().contains("belongs to `meridian`"), "{err}");
    // No cycle: a base exists before what derives from it, and a model's base never changes.
    let err = store.add_model(&model("m-loop", "meridian", Some("m-loop"))).expect_err("deriving from itself");
    assert!(matches!(err, StoreError::UnknownModel { .. }), "{err}");
    let err = store.add_model(&model("m-70b", "meridian", Some("m-70b-nw"))).expect_err("a base deriving from its derivative");
    assert!(matches!(err, StoreError::ModelExists { .. }), "{err}");
    // A host registers derived models, for itself: another host's model is, to it, not there.
    let err = store.add_model(&Model { registered_by: Some(pid("southwind")), ..model("x-1", "meridian", None) }).expect_err("not derived");
    assert!(matches!(err, StoreError::HostModelNotDerived { .. }), "{err}");
    let err = store.add_model(&host_model("x-2", "m-70b", "audit-co")).expect_err("an auditor registers nothing");
    assert!(matches!(err, StoreError::WrongRole { .. }), "{err}");
    let err = store.add_model(&host_model("sw-ft", "m-70b-nw", "southwind")).expect_err("deriving from northwind's model");
    assert_eq!(err.to_string(), "`m-70b-nw`, the model sw-ft derives from, is not a registered model; register it first");
    let err = store.add_model(&host_model("m-70b-nw", "m-70b", "southwind")).expect_err("northwind's id");
    assert_eq!(err.to_string(), "model `m-70b-nw` is already registered (by another party); use another id for a different model");
    let err = store.add_alias(&pid("southwind"), &mid("sw-70b"), &mid("m-70b-nw")).expect_err("an alias to northwind's model");
    assert!(matches!(err, StoreError::UnknownModel { .. }), "{err}");
    assert!(matches!(store.resolve_model(&pid("southwind"), "m-70b-nw"), Err(StoreError::Unresolved { .. })));
    assert_eq!(store.resolve_model(&pid("northwind"), "m-70b-nw").expect("its own"), mid("m-70b-nw"));
    let pairs = [(mid("m-70b-ft"), mid("m-70b")), (mid("m-70b-nw"), mid("m-70b-ft"))];
    assert_eq!(store.lineage().expect("the lineage"), Lineage::new(pairs).expect("no cycle"));

    // The example agreement, with derivatives at half the rates named m-70b…
    let tail = "points = { maintenance = 1, update = 2, improvement = 5 }\n";
    let terms = format!("{tail}\n[derivatives]\nrate_factor = \"0.5\"\nname_prefix = \"m-70b\"\n");
    store.add_agreement("agreement.toml", &edited(AGREEMENT, &[(tail, &terms)])).expect("the agreement");
    let records = vec![
        record("d-1", "m-70b", "customer_service", "us", "2026-10-05T00:00:00Z", "100.00"),
        record("d-2", "m-70b-nw", "customer_service", "us", "2026-10-06T00:00:00Z", "100.00"),
        record("d-3", "m-70b-ft", "search", "us", "2026-10-07T00:00:00Z", "40.00"),
    ];
    let report = store.ingest(&records, IngestMode::Atomic, None).expect("ingest");
    assert!(report.stored && report.unmatched == 0, "{report:?}");
    let theirs = with_host(record("s-1", "m-70b-nw", "search", "us", "2026-10-06T00:00:00Z", "5.00"), "southwind");
    let refused = store.ingest(std::slice::from_ref(&theirs), IngestMode::Partial, None).expect("ingest");
    assert_eq!(refused.refused, 1, "{refused:?}");
    assert!(refused.problems[0].reason.contains("`m-70b-nw` is neither a registered model"), "{:?}", refused.problems);

    let october = month("2026-10");
    let statement = store.preview(&aid("meridian-northwind"), october).expect("a preview");
    let lines: Vec<(&str, Option<&str>, &str)> =
        statement.lines.iter().map(|l| (l.model.as_str(), l.derived_from.as_deref(), l.blended_rate.as_str())).collect();
    assert_eq!(
        lines,
        [("m-70b", None, "0.2000000000"), ("m-70b-ft", Some("m-70b"), "0.1100000000"), ("m-70b-nw", Some("m-70b"), "0.1000000000"),],
        "each derived model its own line, at half the base rates"
    );
    assert_eq!(
        text(&settle_from_store(store, "meridian-northwind", october, &[])),
        text(&settle_in_memory(store, "meridian-northwind", october, &records, &[]))
    );
}

/// SPEC §11: usage inside a prohibited scope is settled and flagged `prohibited_use`; the records
/// stored before an amendment that restricts them are placed again under the terms now in force.
fn restricted_use_is_settled_and_flagged_also_after_an_amendment(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let records = vec![
        record("p-1", "m-70b", "customer_service", "us", "2026-10-05T00:00:00Z", "100.00"),
        record("p-2", "m-70b", "customer_service", "us", "2026-10-25T00:00:00Z", "100.00"),
        record("p-3", "m-8b", "search", "eu", "2026-10-25T00:00:00Z", "10.00"),
    ];
    store.ingest(&records, IngestMode::Atomic, None).expect("ingest");
    let (id, october) = (aid("meridian-northwind"), month("2026-10"));
    assert!(store.preview(&id, october).expect("a preview").flags.is_empty());
    let restricted = edited(
        AGREEMENT,
        &[
            ("version = 1", "version = 2"),
            ("dispute_window_days = 30\n", "dispute_window_days = 30\nprohibited_use_cases = [\"surveillance\"]\n"),
            ("[contributions]", "[[restrictions]]\nuse_cases = [\"customer_service\"]\nfrom = 2026-10-20\n\n[contributions]"),
        ],
    );
    store.add_agreement("v2.toml", &restricted).expect("the amendment");
    let preview = store.preview(&id, october).expect("a preview");
    let flagged: Vec<(&str, &str, u64, &[String])> =
        preview.lines.iter().map(|l| (l.model.as_str(), l.use_case.as_str(), l.records, l.flags.as_slice())).collect();
    assert_eq!(
        flagged,
        [("m-70b", "customer_service", 2, &["prohibited_use".to_owned()][..]), ("m-8b", "search", 1, &[][..])],
        "one of the line's records is inside the restriction: the line is flagged, and both are settled"
    );
    assert_eq!(preview.flags, ["prohibited_use"]);
    assert_eq!(
        text(&settle_from_store(store, "meridian-northwind", october, &[])),
        text(&settle_in_memory(store, "meridian-northwind", october, &records, &[]))
    );
}

/// SPEC §11: a licensor's report lists its models' usage that no agreement covered (stored, never
/// dropped) and its statements' flagged lines, open or final; another licensor's findings are not
/// in it.
fn the_compliance_report_shows_a_licensor_its_own_findings(db: &dyn TestDb) {
    use revshare_store::compliance::report;
    let mut store = db.open();
    let store = store.as_mut();
    register_example_parties(store);
    store.add_party(&party("aurora", Role::Licensor)).expect("another licensor");
    store.add_model(&model("a-1", "aurora", None)).expect("aurora's model");
    let prohibiting =
        edited(AGREEMENT, &[("dispute_window_days = 30\n", "dispute_window_days = 30\nprohibited_use_cases = [\"surveillance\"]\n")]);
    store.add_agreement("agreement.toml", &prohibiting).expect("the agreement");
    let records = vec![
        record("c-1", "m-70b", "surveillance", "us", "2026-10-05T00:00:00Z", "100.00"),
        record("c-2", "m-70b", "search", "us", "2026-10-05T00:00:00Z", "50.00"),
        with_host(record("c-3", "m-8b", "search", "eu", "2026-10-06T00:00:00Z", "7.005"), "southwind"),
        with_host(record("c-4", "m-8b", "search", "eu", "2026-10-07T00:00:00Z", "1.00"), "southwind"),
        with_host(record("c-5", "m-8b", "search", "eu", "2026-11-07T00:00:00Z", "1.00"), "southwind"),
        record("c-6", "a-1", "search", "us", "2026-10-05T00:00:00Z", "9.00"),
    ];
    let report_of = store.ingest(&records, IngestMode::Atomic, None).expect("ingest");
    assert_eq!(report_of.unmatched, 4, "southwind's three and northwind's a-1 have no agreement: {report_of:?}");
    let (meridian, october) = (pid("meridian"), month("2026-10"));

    let open = report(store, &meridian, october).expect("the report");
    let rows: Vec<String> = open
        .findings
        .iter()
        .map(|f| {
            let agreement = f.agreement.as_deref().unwrap_or("-");
            let standing = f.standing.unwrap_or("-");
            format!("{} {agreement} {} {} {} {} {} {standing}", f.flags.join(","), f.host, f.model, f.use_case, f.records, f.revenue)
        })
        .collect();
    assert_eq!(
        rows,
        [
            "unlicensed_model - southwind m-8b search 2 8.00 -",
            "prohibited_use meridian-northwind northwind m-70b surveillance 1 100.00 open"
        ],
        "October's unlicensed use (revenue 8.005 rounded once, half to even) and the flagged line; not November's, not aurora's"
    );
    let aurora = report(store, &pid("aurora"), october).expect("aurora's report");
    assert_eq!(aurora.findings.iter().map(|f| (f.host.as_str(), f.model.as_str())).collect::<Vec<_>>(), [("northwind", "a-1")]);

    let key = signer("revshare.example", 9);
    store.add_key(None, &key.verifier()).expect("the deployment key");
    close_month(store, &aid("meridian-northwind"), october, &key, day(11, 4)).expect("close october");
    let closed = report(store, &meridian, october).expect("the report");
    assert_eq!(closed.findings[1].standing, Some("final"));
    assert_eq!(closed.findings.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Agreements

fn agreement_versions_and_amendments(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example_parties(store);
    let v1 = store.add_agreement("agreement.toml", AGREEMENT).expect("version 1");
    assert_eq!(v1.version(), 1);
    store.add_agreement("agreement.toml", AGREEMENT).expect("the same version again is a no-op");

    let other_terms = edited(AGREEMENT, &[("minimum = \"500.00\"", "minimum = \"600.00\"")]);
    let err = store.add_agreement("a.toml", &other_terms).expect_err("version 1 with other terms");
    assert!(matches!(err, StoreError::AgreementVersion { .. }), "{err}");
    assert!(err.to_string().contains("an amendment is version 2"), "{err}");

    let v3 = edited(&other_terms, &[("version = 1", "version = 3")]);
    let err = store.add_agreement("a.toml", &v3).expect_err("skipping a version");
    assert!(err.to_string().contains("the latest version is 1, so an amendment is version 2"), "{err}");

    let v2 = edited(&other_terms, &[("version = 1", "version = 2")]);
    let amended = store.add_agreement("a.toml", &v2).expect("an amendment");
    assert_eq!(store.agreement(&aid("meridian-northwind"), None).expect("latest"), amended);
    assert_eq!(store.agreement(&aid("meridian-northwind"), Some(1)).expect("version 1 is kept"), v1);
    assert_eq!(
        store.agreement_parties(&aid("meridian-northwind")).expect("parties"),
        Some((pid("meridian"), pid("northwind"))),
        "read without the terms"
    );
    assert_eq!(store.agreement_parties(&aid("no-such-agreement")).expect("parties"), None);
    let err = store.agreement(&aid("meridian-northwind"), Some(3)).expect_err("no version 3");
    assert_eq!(err.to_string(), "agreement meridian-northwind version 3 is not registered");

    let moved = edited(&v2, &[("version = 2", "version = 3"), ("host = \"northwind\"", "host = \"southwind\"")]);
    let err = store.add_agreement("a.toml", &moved).expect_err("an amendment keeps its parties");
    assert!(err.to_string().contains("keeps the licensor and host"), "{err}");

    let new_at_2 = edited(AGREEMENT, &[("id = \"meridian-northwind\"", "id = \"other\""), ("version = 1", "version = 2")]);
    let err = store.add_agreement("a.toml", &new_at_2).expect_err("a new id starts at 1");
    assert!(err.to_string().contains("a new agreement starts at version 1"), "{err}");

    let err = store.add_agreement("broken.toml", "id = 3").expect_err("not an agreement");
    assert!(matches!(err, StoreError::Agreement(_)), "{err}");
    assert!(err.to_string().contains("broken.toml:1:"), "names the file, line and column: {err}");
}

fn agreement_needs_registered_parties_and_models(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    store.add_party(&party("meridian", Role::Licensor)).expect("add");
    store.add_model(&model("m-8b", "meridian", None)).expect("add");
    store.add_model(&model("m-70b", "meridian", None)).expect("add");
    let err = store.add_agreement("a.toml", AGREEMENT).expect_err("unknown host");
    assert_eq!(err.to_string(), "`northwind`, the host of agreement meridian-northwind, is not a registered party; register it first");

    store.add_party(&party("northwind", Role::Auditor)).expect("add");
    let err = store.add_agreement("a.toml", AGREEMENT).expect_err("the host is an auditor");
    assert!(matches!(err, StoreError::WrongRole { found: Role::Auditor, expected: Role::Host, .. }), "{err}");

    store.add_party(&party("southwind", Role::Host)).expect("add");
    store.add_party(&party("other-lab", Role::Licensor)).expect("add");
    store.add_model(&model("o-1", "other-lab", None)).expect("add");
    let to_southwind = edited(AGREEMENT, &[("host = \"northwind\"", "host = \"southwind\"")]);
    let arbitrated = edited(&to_southwind, &[("dispute_window_days = 30\n", "dispute_window_days = 30\narbiters = [\"judge\"]\n")]);
    let err = store.add_agreement("a.toml", &arbitrated).expect_err("an arbiter no one registered");
    assert_eq!(err.to_string(), "`judge`, an arbiter agreement meridian-northwind names, is not a registered party; register it first");
    let foreign = edited(&to_southwind, &[("models = [\"m-8b\", \"m-70b\"]", "models = [\"m-8b\", \"o-1\"]")]);
    let err = store.add_agreement("a.toml", &foreign).expect_err("another licensor's model");
    assert!(matches!(err, StoreError::ForeignModel { .. }), "{err}");
    let unknown = edited(&to_southwind, &[("models = [\"m-8b\", \"m-70b\"]", "models = [\"m-8b\", \"m-9\"]")]);
    let err = store.add_agreement("a.toml", &unknown).expect_err("unknown model");
    assert!(matches!(err, StoreError::UnknownModel { .. }), "{err}");
    store.add_agreement("a.toml", &to_southwind).expect("with a host and the licensor's models");
}

fn exclusivity_conflict_names_the_other_agreement(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let southwind = edited(
        AGREEMENT,
        &[("id = \"meridian-northwind\"", "id = \"meridian-southwind\""), ("host = \"northwind\"", "host = \"southwind\"")],
    );
    let err = store.add_agreement("southwind.toml", &southwind).expect_err("search in the eu is northwind's");
    match &err {
        StoreError::ExclusivityConflict { id, scope, other, other_version, other_host, other_scope } => {
            assert_eq!((id.as_str(), *scope), ("meridian-southwind", 1));
            assert_eq!((other.as_str(), *other_version, other_host.as_str(), *other_scope), ("meridian-northwind", 1, "northwind", 1));
        }
        other => panic!("expected an exclusivity conflict, got {other}"),
    }
    assert!(err.to_string().contains("overlaps entry 1 of agreement meridian-northwind (version 1, host northwind)"), "{err}");

    let elsewhere = edited(&southwind, &[("regions = [\"eu\"]", "regions = [\"us\"]")]);
    store.add_agreement("southwind.toml", &elsewhere).expect("search in the us does not overlap");
    let later = edited(&southwind, &[("from = 2026-10-15", "from = 2027-01-01"), ("\nto = 2027-01-01", "\nto = 2027-06-01")]);
    let later = edited(&later, &[("version = 1", "version = 2")]);
    store.add_agreement("southwind.toml", &later).expect("an amendment to after northwind's scope ends");
}

fn one_agreement_per_pair_at_a_time(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    // The same host: its exclusivity is its own, but a record could fall under both.
    let overlapping = edited(AGREEMENT, &[("id = \"meridian-northwind\"", "id = \"meridian-northwind-2\"")]);
    let err = store.add_agreement("second.toml", &overlapping).expect_err("two agreements for one pair at once");
    assert!(matches!(err, StoreError::EffectiveOverlap { .. }), "{err}");
    assert!(err.to_string().contains("agreement meridian-northwind (version 1)"), "{err}");
    let after = edited(
        &overlapping,
        &[("effective_from = 2026-01-01", "effective_from = 2027-01-01"), ("effective_to = 2027-01-01", "effective_to = 2028-01-01")],
    );
    store.add_agreement("second.toml", &after).expect("the next agreement starts when the first ends");
}

// ---------------------------------------------------------------------------------------------
// Ingestion

fn atomic_batch_stores_nothing_on_a_problem(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    store.add_party(&party("auditor-1", Role::Auditor)).expect("add");
    let batch = vec![
        record("a1", "m-70b", "search", "eu", "2026-10-02T10:00:00Z", "10"),
        with_host(record("a2", "m-70b", "search", "eu", "2026-10-02T10:00:00Z", "10"), "eastwind"),
        record("a3", "m-1t", "search", "eu", "2026-10-02T10:00:00Z", "10"),
        with_host(record("a4", "m-70b", "search", "eu", "2026-10-02T10:00:00Z", "10"), "auditor-1"),
        record("a5", "m-8b", "search", "eu", "2026-10-03T10:00:00Z", "10"),
    ];
    let report = store.ingest(&batch, IngestMode::Atomic, None).expect("ingest");
    assert!(!report.stored);
    assert_eq!((report.accepted, report.duplicates, report.conflicts, report.refused), (0, 0, 0, 3));
    let problems: Vec<(usize, &str, ProblemKind)> = report.problems.iter().map(|p| (p.index, p.id.as_str(), p.kind)).collect();
    assert_eq!(problems, vec![(1, "a2", ProblemKind::Refused), (2, "a3", ProblemKind::Refused), (3, "a4", ProblemKind::Refused)]);
    assert!(report.problems[0].reason.contains("`eastwind`, the host of the record, is not a registered party"), "{}", report.problems[0]);
    assert!(report.problems[1].reason.contains("model `m-1t` is neither a registered model nor an alias"), "{}", report.problems[1]);
    assert!(
        report.problems[2].reason.contains("`auditor-1`, the host of the record, has role auditor; it must be a host"),
        "{}",
        report.problems[2]
    );

    let october = month("2026-10");
    assert!(store.records(&aid("meridian-northwind"), october).expect("records").is_empty(), "nothing was stored");
    let (rollup, duplicates) = store.rollup(&aid("meridian-northwind"), october).expect("rollup");
    assert_eq!((rollup.records(), duplicates), (0, 0));

    let good: Vec<_> = [0, 4].iter().map(|&i| batch[i].clone()).collect();
    let report = store.ingest(&good, IngestMode::Atomic, None).expect("ingest");
    assert!(report.stored);
    assert_eq!((report.accepted, report.refused, report.problems.len()), (2, 0, 0));
    assert_eq!(
        store.records(&aid("meridian-northwind"), october).expect("records"),
        good,
        "a1 and a5 were not stored by the refused batch"
    );
}

/// Digests taken by the caller where it parsed the records store exactly what the store's own
/// would, an aliased model included (the stored record's digest is of the licensed model); a
/// batch whose digests do not match its records in number is refused and stores nothing.
fn digests_given_with_a_batch(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    store.add_alias(&pid("northwind"), &mid("nw-llama"), &mid("m-70b")).expect("an alias");
    let batch = vec![
        record("d1", "m-70b", "search", "eu", "2026-10-02T10:00:00Z", "10"),
        record("d2", "nw-llama", "search", "eu", "2026-10-02T11:00:00Z", "12.5"),
    ];
    let digests: Vec<[u8; 32]> = batch.iter().map(UsageRecord::digest).collect();
    let short = Batch { records: &batch, digests: Some(&digests[..1]), mode: IngestMode::Atomic, signed: None };
    let err = store.ingest_batch(short).expect_err("one digest for two records");
    assert!(matches!(err, StoreError::Internal { .. }), "{err}");
    assert!(err.to_string().contains("it holds 2 records but 1 digests"), "{err}");
    let october = month("2026-10");
    assert!(store.records(&aid("meridian-northwind"), october).expect("records").is_empty(), "nothing was stored");

    let report =
        store.ingest_batch(Batch { records: &batch, digests: Some(&digests), mode: IngestMode::Atomic, signed: None }).expect("ingest");
    assert!(report.stored && report.accepted == 2, "{report:?}");
    let mut licensed = batch[1].clone();
    licensed.model = "m-70b".into();
    let expected = revshare_core::usage_set::of_digests(&[batch[0].digest(), licensed.digest()]);
    assert_eq!(store.usage_set(&aid("meridian-northwind"), october).expect("usage set"), expected);
    let logged = report.logged.expect("a log leaf");
    let key = store.usage_batch(logged.leaf).expect("the batch").record_key;
    assert_eq!(logged.digest, batch_digest(&batch, &key), "the leaf names the records as sent");
}

fn partial_batch_stores_the_good_records(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let batch = vec![
        record("p1", "m-70b", "search", "eu", "2026-10-02T10:00:00Z", "10"),
        with_host(record("p2", "m-70b", "search", "eu", "2026-10-02T10:00:00Z", "10"), "eastwind"),
        record("p1", "m-70b", "search", "eu", "2026-10-02T10:00:00Z", "11"),
        record("p3", "m-8b", "chat", "us", "2025-06-01T00:00:00Z", "3"),
        record("p1", "m-70b", "search", "eu", "2026-10-02T10:00:00Z", "10.00"),
    ];
    let report = store.ingest(&batch, IngestMode::Partial, None).expect("ingest");
    assert!(report.stored);
    assert_eq!(
        (report.accepted, report.duplicates, report.conflicts, report.refused, report.unmatched),
        (2, 1, 1, 1, 1),
        "p3 lies before the agreement's effective range: stored, unmatched"
    );
    assert_eq!(
        report.problems.iter().map(|p| (p.index, p.kind)).collect::<Vec<_>>(),
        vec![(1, ProblemKind::Refused), (2, ProblemKind::Conflict)]
    );
    assert!(report.problems[1].reason.contains("conflicts with record 0 of this batch"), "{}", report.problems[1]);
    assert!(report.problems[1].reason.contains("revenue: stored `10`, sent `11`"), "{}", report.problems[1]);

    let stored = store.records(&aid("meridian-northwind"), month("2026-10")).expect("records");
    assert_eq!(stored, vec![batch[0].clone()]);
    let (rollup, duplicates) = store.rollup(&aid("meridian-northwind"), month("2026-10")).expect("rollup");
    assert_eq!((rollup.records(), duplicates), (1, 1));
}

/// Group commit: batches stored in one transaction decide and store exactly what they would one
/// by one — each sees the records of those before it, a refused or failing one leaves nothing.
fn a_group_of_batches_ends_as_the_batches_one_by_one(db: &dyn TestDb) {
    let first = vec![
        record("g1", "m-70b", "search", "eu", "2026-10-02T10:00:00Z", "10"),
        record("g2", "m-8b", "content_moderation", "us", "2026-10-03T10:00:00Z", "2.5"),
    ];
    // Conflicts with g1 of the first batch: refused whole.
    let conflicting = vec![
        record("g3", "m-70b", "search", "eu", "2026-10-04T10:00:00Z", "1"),
        record("g1", "m-70b", "search", "eu", "2026-10-02T10:00:00Z", "11"),
    ];
    // A resend of g2 (the first batch's) and a new record.
    let third = vec![
        record("g2", "m-8b", "content_moderation", "us", "2026-10-03T15:30:00+05:30", "2.50"),
        record("g4", "m-70b", "customer_service", "us", "2026-10-05T10:00:00Z", "7"),
    ];
    let stranger = signer("northwind", 8);
    let badly_signed = SignedBatch {
        signed: Signed { key: stranger.verifier().to_text(), signature: stranger.sign(b"something else") },
        record_key: [0; 16],
    };

    let mut grouped = db.open();
    let grouped = grouped.as_mut();
    register_example(grouped);
    let size = grouped.log_size().expect("size");
    let batches = [
        Batch { records: &first, digests: None, mode: IngestMode::Atomic, signed: None },
        Batch { records: &conflicting, digests: None, mode: IngestMode::Atomic, signed: None },
        Batch { records: &first, digests: None, mode: IngestMode::Atomic, signed: Some(&badly_signed) },
        Batch { records: &third, digests: None, mode: IngestMode::Atomic, signed: None },
    ];
    let mut results = grouped.ingest_group(&batches).expect("the group commits");
    assert_eq!(results.len(), 4);
    let signature = results.remove(2).expect_err("a bad signature fails its batch alone");
    assert!(signature.to_string().contains("is not registered for northwind"), "{signature}");
    let reports: Vec<_> = results.into_iter().map(|r| r.expect("a report")).collect();
    assert_eq!(
        reports.iter().map(|r| (r.stored, r.accepted, r.duplicates, r.conflicts)).collect::<Vec<_>>(),
        vec![(true, 2, 0, 0), (false, 0, 0, 1), (true, 1, 1, 0)],
        "the third batch sees the first's records as stored"
    );
    assert!(reports[1].problems[0].reason.contains("conflicts with the stored record"), "{}", reports[1].problems[0]);
    assert!(reports[1].problems[0].reason.contains("revenue: stored `10`, sent `11`"), "{}", reports[1].problems[0]);
    // Leaves in batch order, one per stored batch: as the batches one by one would have them.
    let leaves: Vec<u64> = reports.iter().filter_map(|r| r.logged.as_ref().map(|b| b.leaf)).collect();
    assert_eq!(leaves, vec![size, size + 1]);
    assert_eq!(grouped.log_size().expect("size"), size + 2);
    let id = aid("meridian-northwind");
    let october = month("2026-10");
    let stored = vec![first[0].clone(), first[1].clone(), third[1].clone()];
    assert_eq!(grouped.records(&id, october).expect("records"), stored, "nothing of the refused or failed batches");
    let digests: Vec<[u8; 32]> = stored.iter().map(UsageRecord::digest).collect();
    assert_eq!(grouped.usage_set(&id, october).expect("set"), revshare_core::usage_set::of_digests(&digests));
    let (rollup, duplicates) = grouped.rollup(&id, october).expect("rollup");
    assert_eq!((rollup.records(), duplicates), (3, 1));
    // What the group stored is in the index afterwards: a resend is a duplicate.
    let again = grouped.ingest(&third, IngestMode::Atomic, None).expect("ingests");
    assert_eq!((again.accepted, again.duplicates), (0, 2));
}

fn duplicates_compare_by_value(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let first = record("d1", "m-70b", "customer_service", "us", "2026-10-02T15:30:00+05:30", "1.50");
    let report = store.ingest(std::slice::from_ref(&first), IngestMode::Atomic, None).expect("ingest");
    assert_eq!((report.accepted, report.duplicates), (1, 0));

    let same = record("d1", "m-70b", "customer_service", "us", "2026-10-02T10:00:00Z", "1.5");
    let same_again = record("d1", "m-70b", "customer_service", "us", "2026-10-02T10:00:00.000Z", "1.500000");
    let report = store.ingest(&[same.clone(), same_again], IngestMode::Atomic, None).expect("ingest");
    assert!(report.stored);
    assert_eq!((report.accepted, report.duplicates, report.conflicts), (0, 2, 0), "{:?}", report.problems);
    // A batch of resends only is logged (its sender holds a receipt) but keeps no commitment per
    // record: no bundle holds a record of it.
    let resent = report.logged.expect("logged").leaf;
    assert!(store.usage_batch(resent).expect("the batch").commitments.is_empty(), "a resend costs no stored digest");

    let fresh = record("d2", "m-70b", "customer_service", "us", "2026-10-03T00:00:00Z", "2");
    let report = store.ingest(&[fresh.clone(), fresh.clone(), same.clone()], IngestMode::Atomic, None).expect("ingest");
    assert_eq!((report.accepted, report.duplicates), (1, 2), "a resend inside the batch is a duplicate too");
    // A batch that stores a record keeps every commitment its logged digest covers.
    assert_eq!(store.usage_batch(report.logged.expect("logged").leaf).expect("the batch").commitments.len(), 2);

    let (rollup, duplicates) = store.rollup(&aid("meridian-northwind"), month("2026-10")).expect("rollup");
    assert_eq!((rollup.records(), duplicates), (2, 4));
    let stored = store.records(&aid("meridian-northwind"), month("2026-10")).expect("records");
    assert_eq!(stored, vec![same, fresh], "stored by value: the UTC instant and the normalised revenue");
    assert_eq!(stored[0].time, Instant::parse_rfc3339("2026-10-02T10:00:00Z").expect("time"));
}

/// A batch mixing new records, resends and conflicts of stored records and of earlier records of
/// the batch, and refused records: each is classified as if the batch were stored one record at a
/// time, in order (PostgreSQL sends the batch in bulk statements).
fn mixed_batch_classifies_each_record_in_order(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let s1 = record("s1", "m-70b", "search", "us", "2026-10-02T10:00:00Z", "1");
    let s2 = record("s2", "m-70b", "search", "us", "2026-10-02T11:00:00Z", "2");
    let s3 = record("s3", "m-70b", "search", "us", "2026-10-02T12:00:00Z", "3");
    let report = store.ingest(&[s1.clone(), s2.clone(), s3.clone()], IngestMode::Atomic, None).expect("ingest");
    assert_eq!(report.accepted, 3);

    let n1 = record("n1", "m-70b", "search", "eu", "2026-10-03T10:00:00Z", "4");
    let n1_changed = record("n1", "m-70b", "search", "eu", "2026-10-03T10:00:00Z", "4.5");
    let unknown = record("n2", "m-unknown", "search", "eu", "2026-10-03T10:00:00Z", "5");
    let n2 = record("n2", "m-70b", "search", "eu", "2026-10-03T11:00:00Z", "5");
    let s2_changed = record("s2", "m-70b", "search", "us", "2026-10-02T11:00:00Z", "2.5");
    let batch = [
        s1.clone(), // 0: duplicate of a stored record
        n1.clone(), // 1: new
        s2_changed, // 2: conflicts with the stored record
        unknown,    // 3: refused, so it is not the first n2
        n1.clone(), // 4: duplicate of record 1
        n1_changed, // 5: conflicts with record 1
        n2.clone(), // 6: new
        s3.clone(), // 7: duplicate of a stored record
        s1.clone(), // 8: duplicate of a stored record, again
        s2.clone(), // 9: duplicate of a stored record
    ];
    let report = store.ingest(&batch, IngestMode::Partial, None).expect("ingest");
    assert!(report.stored);
    assert_eq!((report.accepted, report.duplicates, report.conflicts, report.refused), (2, 5, 2, 1), "{:?}", report.problems);
    let problems: Vec<(usize, ProblemKind)> = report.problems.iter().map(|p| (p.index, p.kind)).collect();
    assert_eq!(problems, vec![(2, ProblemKind::Conflict), (3, ProblemKind::Refused), (5, ProblemKind::Conflict)]);
    assert!(report.problems[0].reason.contains("conflicts with the stored record"), "{}", report.problems[0]);
    assert!(report.problems[0].reason.contains("revenue: stored `2`, sent `2.5`"), "{}", report.problems[0]);
    assert!(report.problems[2].reason.contains("conflicts with record 1 of this batch"), "{}", report.problems[2]);
    assert!(report.problems[2].reason.contains("revenue: stored `4`, sent `4.5`"), "{}", report.problems[2]);

    let stored = store.records(&aid("meridian-northwind"), month("2026-10")).expect("records");
    assert_eq!(stored, vec![n1, n2, s1, s2, s3]);
    let (rollup, duplicates) = store.rollup(&aid("meridian-northwind"), month("2026-10")).expect("rollup");
    assert_eq!((rollup.records(), duplicates), (5, 5));

    let again = store.ingest(&batch, IngestMode::Atomic, None).expect("ingest");
    assert!(!again.stored);
    assert_eq!((again.accepted, again.duplicates, again.conflicts, again.refused), (0, 0, 2, 1));
    let (_, duplicates) = store.rollup(&aid("meridian-northwind"), month("2026-10")).expect("rollup");
    assert_eq!(duplicates, 5, "a refused atomic batch counts no resend");
}

fn conflicts_leave_the_stored_record_untouched(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let original = record("c1", "m-70b", "search", "eu", "2026-10-20T10:00:00Z", "100");
    store.ingest(std::slice::from_ref(&original), IngestMode::Atomic, None).expect("ingest");
    let set_before = store.usage_set(&aid("meridian-northwind"), month("2026-10")).expect("usage set");

    let changed = record("c1", "m-70b", "search", "eu", "2026-10-20T10:00:01Z", "100.01");
    let report = store.ingest(std::slice::from_ref(&changed), IngestMode::Partial, None).expect("ingest");
    assert_eq!((report.accepted, report.conflicts, report.duplicates), (0, 1, 0));
    let reason = &report.problems[0].reason;
    assert!(reason.contains("conflicts with the stored record"), "{reason}");
    assert!(reason.contains("revenue: stored `100`, sent `100.01`"), "{reason}");
    assert!(reason.contains("time: stored 2026-10-20T10:00:00Z, sent 2026-10-20T10:00:01Z"), "{reason}");

    assert_eq!(store.records(&aid("meridian-northwind"), month("2026-10")).expect("records"), vec![original]);
    assert_eq!(store.usage_set(&aid("meridian-northwind"), month("2026-10")).expect("usage set"), set_before);
    let (rollup, duplicates) = store.rollup(&aid("meridian-northwind"), month("2026-10")).expect("rollup");
    assert_eq!((rollup.records(), duplicates), (1, 0));
}

fn currency_must_match_the_agreement(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let mut euro = record("e1", "m-70b", "search", "eu", "2026-10-20T10:00:00Z", "100");
    euro.currency = revshare_core::money::Currency::parse("EUR").expect("a currency");
    let mut euro_elsewhere = with_host(euro.clone(), "southwind");
    euro_elsewhere.id = "e2".into();
    let report = store.ingest(&[euro, euro_elsewhere], IngestMode::Partial, None).expect("ingest");
    assert_eq!((report.accepted, report.refused, report.unmatched), (1, 1, 1), "southwind has no agreement, so any currency is kept");
    assert!(
        report.problems[0].reason.contains("the record is in EUR but agreement meridian-northwind (version 1), which covers it, is in USD"),
        "{}",
        report.problems[0]
    );
}

fn aliases_roll_up_under_the_licensed_model(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    store.add_alias(&pid("northwind"), &mid("nw-70b"), &mid("m-70b")).expect("alias");
    let aliased = record("al1", "nw-70b", "search", "us", "2026-10-02T10:00:00Z", "10");
    let licensed = record("al1", "m-70b", "search", "us", "2026-10-02T10:00:00Z", "10");
    let report = store.ingest(&[aliased, licensed.clone()], IngestMode::Atomic, None).expect("ingest");
    assert_eq!((report.accepted, report.duplicates), (1, 1), "the alias and the licensed id are the same model");
    assert_eq!(store.records(&aid("meridian-northwind"), month("2026-10")).expect("records"), vec![licensed]);
    let (rollup, _) = store.rollup(&aid("meridian-northwind"), month("2026-10")).expect("rollup");
    assert_eq!(rollup.groups().iter().map(|(k, _)| k.model.as_str()).collect::<Vec<_>>(), vec!["m-70b"]);
    // As sent, the record keeps the host's own id, with the licensed model beside it.
    let sent = store.sent_records(&aid("meridian-northwind"), month("2026-10")).expect("sent records");
    let models: Vec<(&str, &str)> = sent.iter().map(|s| (s.record.model.as_ref(), s.model.as_str())).collect();
    assert_eq!(models, vec![("nw-70b", "m-70b")]);
}

fn idempotent_answers_are_kept_once_per_party(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    let at = Instant::parse_rfc3339("2026-11-04T10:00:00Z").expect("an instant");
    let answer = |status: u16, body: &str| KeptAnswer {
        request_digest: [status.to_le_bytes()[0]; 32],
        status,
        headers: vec![("content-type".to_owned(), "application/json".to_owned()), ("location".to_owned(), "/v1/disputes/7".to_owned())],
        body: body.as_bytes().to_vec(),
    };
    assert_eq!(store.kept_answer(&pid("northwind"), "k-1").expect("read"), None);
    assert!(store.keep_answer(&pid("northwind"), "k-1", &answer(201, "{\"id\":7}"), at).expect("keep"));
    assert!(!store.keep_answer(&pid("northwind"), "k-1", &answer(422, "later"), at).expect("keep"), "the first answer stays");
    assert_eq!(store.kept_answer(&pid("northwind"), "k-1").expect("read"), Some(answer(201, "{\"id\":7}")));
    assert_eq!(store.kept_answer(&pid("southwind"), "k-1").expect("read"), None, "a key is its party's own");
    assert!(store.keep_answer(&pid("southwind"), "k-1", &answer(200, "theirs"), at).expect("keep"));
    assert_eq!(store.kept_answer(&pid("northwind"), "k-1").expect("read").map(|a| a.status), Some(201));
}

fn webhook_deliveries_are_queued_once_and_kept_until_delivered(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let at = Instant::parse_rfc3339("2026-11-04T10:00:00Z").expect("an instant");
    let now_ms = at.secs() * 1000;
    let events = vec!["statement.closed".to_owned(), "dispute.opened".to_owned()];
    let northwind = pid("northwind");
    let new = |url, events, secret| NewEndpoint { party: &northwind, url, events, secret, preview_threshold: None };
    let endpoint = store.add_webhook(&new("http://127.0.0.1:9/hook", &events, "whsec_x"), at).expect("an endpoint");
    assert_eq!((endpoint.events.clone(), endpoint.next_leaf, endpoint.disabled), (events.clone(), store.log_size().expect("size"), false));
    let second = store.add_webhook(&new("http://127.0.0.1:9/other", &[], "whsec_y"), at).expect("another");
    assert_eq!(second.id, endpoint.id + 1);
    assert_eq!(store.webhooks(Some(&pid("southwind"))).expect("list"), vec![], "endpoints are their party's own");

    let delivery =
        |id: &str| NewDelivery { event_id: id.to_owned(), event_type: "statement.closed".to_owned(), payload: id.as_bytes().to_vec() };
    let from = endpoint.next_leaf;
    assert!(store.queue_webhook_deliveries(endpoint.id, from, from + 2, &[delivery("evt_1"), delivery("evt_2")], at).expect("queue"));
    // Another pass that read the same leaves queues nothing twice.
    assert!(!store.queue_webhook_deliveries(endpoint.id, from, from + 2, &[delivery("evt_1")], at).expect("queue"));
    let due = store.take_due_deliveries(now_ms, now_ms + 30_000, 10).expect("due");
    assert_eq!(due.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), ["evt_1", "evt_2"]);
    assert_eq!(store.take_due_deliveries(now_ms, now_ms + 30_000, 10).expect("due"), vec![], "held while being tried");
    let failed = Attempt {
        at,
        status: Some(500),
        error: Some("the receiver answered 500".to_owned()),
        delivered: false,
        next_attempt_ms: Some(now_ms + 1000),
    };
    store.record_delivery_attempt(endpoint.id, "evt_1", &failed).expect("an attempt");
    let delivered = Attempt { at, status: Some(204), error: None, delivered: true, next_attempt_ms: None };
    store.record_delivery_attempt(endpoint.id, "evt_2", &delivered).expect("an attempt");
    assert_eq!(store.take_due_deliveries(now_ms + 1000, now_ms + 31_000, 10).expect("due").len(), 1, "the failed one again");
    let log = store.webhook_deliveries(endpoint.id).expect("deliveries");
    assert_eq!(
        log.iter().map(|d| (d.event_id.as_str(), d.attempts, d.last_status, d.delivered_secs.is_some())).collect::<Vec<_>>(),
        [("evt_1", 1, Some(500), false), ("evt_2", 1, Some(204), true)]
    );
    // Removed: only by its party; nothing more is due or queued.
    assert_eq!(store.disable_webhook(&pid("southwind"), endpoint.id).expect("disable"), None);
    assert!(store.disable_webhook(&pid("northwind"), endpoint.id).expect("disable").is_some_and(|e| e.disabled));
    assert_eq!(store.take_due_deliveries(i64::MAX, i64::MAX, 10).expect("due"), vec![]);
    assert!(!store.queue_webhook_deliveries(endpoint.id, from + 2, from + 3, &[delivery("evt_3")], at).expect("queue"));
    assert_eq!(store.webhooks(None).expect("in service").iter().map(|e| e.id).collect::<Vec<_>>(), [second.id]);
}

fn daily_usage_sums_each_day(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let records = [
        record("d1", "m-8b", "search", "us", "2026-10-02T00:00:00Z", "1.5"),
        record("d2", "m-8b", "search", "us", "2026-10-02T23:59:59.999Z", "2.25"),
        record("d3", "m-8b", "search", "us", "2026-10-03T00:00:00Z", "7"),
        record("d4", "m-70b", "search", "us", "2026-10-03T12:00:00Z", "0.1"),
        record("d5", "m-8b", "search", "us", "2026-11-01T00:00:00Z", "3"),
    ];
    let report = store.ingest(&records, IngestMode::Atomic, None).expect("ingest");
    assert_eq!(report.accepted, 5);
    // A resend adds nothing to the sums.
    let report = store.ingest(&records[..1], IngestMode::Atomic, None).expect("resend");
    assert_eq!(report.duplicates, 1);
    let october = |store: &mut dyn Store, grain| {
        let rows = store.usage(&aid("meridian-northwind"), month("2026-10"), month("2026-10"), grain).expect("usage");
        rows.iter().map(|d| (d.date.clone(), d.model.clone(), d.records, d.requests, d.revenue_text())).collect::<Vec<_>>()
    };
    let row = |date: &str, model: &str, records, requests, revenue: &str| {
        (date.to_owned(), model.to_owned(), records, requests, revenue.to_owned())
    };
    assert_eq!(
        october(store, Grain::Day),
        vec![row("2026-10-02", "m-8b", 2, 20, "3.75"), row("2026-10-03", "m-70b", 1, 10, "0.1"), row("2026-10-03", "m-8b", 1, 10, "7")],
        "scales 1 and 2 on one day sum at the larger; the day is UTC"
    );
    assert_eq!(
        october(store, Grain::DayTotal),
        vec![row("2026-10-02", "", 2, 20, "3.75"), row("2026-10-03", "", 2, 20, "7.1")],
        "each day over every model, use case and region"
    );
    assert_eq!(
        october(store, Grain::Month),
        vec![row("2026-10", "m-70b", 1, 10, "0.1"), row("2026-10", "m-8b", 3, 30, "10.75")],
        "the month per model, use case and region"
    );
    let both = store.usage(&aid("meridian-northwind"), month("2026-10"), month("2026-11"), Grain::Day).expect("two months");
    assert_eq!(both.last().map(|d| (d.date.as_str(), d.records)), Some(("2026-11-01", 1)), "the open month is included");
    assert!(matches!(
        store.usage(&aid("meridian-nobody"), month("2026-10"), month("2026-10"), Grain::DayTotal),
        Err(StoreError::UnknownAgreement { .. })
    ));
}

/// The daily rollups of an agreement's month, summed: what its monthly rollup holds.
fn assert_days_sum_to_the_month(store: &mut dyn Store, id: &str, period: Period) {
    let (rollup, _) = store.rollup(&aid(id), period).expect("rollup");
    let mut sum = |grain| {
        let rows = store.usage(&aid(id), period, period, grain).expect("usage");
        rows.iter().fold((0u64, 0u128, 0u128), |(n, r, t), d| (n + d.records, r + d.requests, t + d.input_tokens + d.output_tokens))
    };
    let by_day = sum(Grain::Day);
    assert_eq!(by_day, sum(Grain::DayTotal), "{id} {period}: the day totals are the days summed");
    assert_eq!(by_day, sum(Grain::Month), "{id} {period}: the monthly rows are the days summed");
    let by_group = rollup
        .groups()
        .iter()
        .fold((0u64, 0u128, 0u128), |(n, r, t), (_, g)| (n + g.records, r + g.requests, t + g.input_tokens + g.output_tokens));
    assert_eq!(by_day, by_group, "{id} {period}: the days sum to the month");
}

// ---------------------------------------------------------------------------------------------
// Settling from the store

fn store_settles_the_worked_example_like_the_core(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let records = parse_records(USAGE);
    let contributions: Vec<Contribution> =
        CONTRIBUTIONS.lines().map(|l| parse_contribution_line(l.as_bytes()).expect("a contribution")).collect();
    let report = store.ingest(&records, IngestMode::Atomic, None).expect("ingest");
    assert!(report.stored, "{:?}", report.problems);
    assert_eq!((report.accepted, report.duplicates, report.unmatched), (8, 1, 1));

    let october = month("2026-10");
    let from_store = settle_from_store(store, "meridian-northwind", october, &contributions);
    let in_memory = settle_in_memory(store, "meridian-northwind", october, &records, &contributions);
    assert_eq!(text(&from_store), text(&in_memory));
    assert!(text(&from_store).contains(r#""net_payable":"855.37""#), "{}", text(&from_store));
    assert!(!text(&from_store).contains("duplicates"), "resends are no part of a statement: {}", text(&from_store));

    let november = month("2026-11");
    assert_eq!(
        text(&settle_from_store(store, "meridian-northwind", november, &contributions)),
        text(&settle_in_memory(store, "meridian-northwind", november, &records, &contributions))
    );
}

fn example_contributions() -> Vec<Contribution> {
    CONTRIBUTIONS.lines().map(|l| parse_contribution_line(l.as_bytes()).expect("a contribution")).collect()
}

fn contributions_are_kept_per_agreement(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let id = aid("meridian-northwind");
    let mut given = example_contributions();
    // Added out of order; read back by id.
    given.reverse();
    for c in &given {
        store.add_contribution(&id, c).expect("add a contribution");
    }
    given.reverse();
    assert_eq!(store.contributions(&id).expect("read"), given);
    for c in &given {
        store.add_contribution(&id, c).expect("the same contribution again is a no-op");
    }
    assert_eq!(store.contributions(&id).expect("read"), given);

    // The same id with other content is refused, and the stored one is unchanged.
    let changed = Contribution { description: "something else".to_owned(), ..given[0].clone() };
    let err = store.add_contribution(&id, &changed).expect_err("same id, other content");
    assert!(matches!(err, StoreError::ContributionConflict { .. }), "{err}");
    assert!(err.to_string().contains("contribution c1"), "{err}");
    let withdrawn = Contribution { accepted: false, ..given[0].clone() };
    let err = store.add_contribution(&id, &withdrawn).expect_err("an acceptance is not withdrawn");
    assert!(err.to_string().contains("already accepted"), "{err}");
    let accepted_and_changed = Contribution { accepted: true, kind: "update".to_owned(), ..given[2].clone() };
    let err = store.add_contribution(&id, &accepted_and_changed).expect_err("acceptance with another change");
    assert!(matches!(err, StoreError::ContributionConflict { .. }), "{err}");
    assert_eq!(store.contributions(&id).expect("read"), given);

    // Acceptance: false → true is recorded.
    assert!(!given[2].accepted);
    let accepted = Contribution { accepted: true, ..given[2].clone() };
    store.add_contribution(&id, &accepted).expect("accept c3");
    given[2] = accepted;
    assert_eq!(store.contributions(&id).expect("read"), given);

    // The rules settlement applies: one of the two parties, a listed kind.
    let stranger = Contribution { id: "c9".to_owned(), party: pid("southwind"), ..given[0].clone() };
    let err = store.add_contribution(&id, &stranger).expect_err("not a party of the agreement");
    assert!(matches!(err, StoreError::Contribution(_)), "{err}");
    assert!(err.to_string().contains("contribution c9 is by `southwind`"), "{err}");
    let unlisted = Contribution { id: "c8".to_owned(), kind: "marketing".to_owned(), ..given[0].clone() };
    let err = store.add_contribution(&id, &unlisted).expect_err("a kind the agreement does not list");
    assert!(err.to_string().contains("contribution c8 is of kind `marketing`"), "{err}");
    assert!(err.to_string().contains("improvement, maintenance, update"), "{err}");
    let err = store.add_contribution(&aid("nobody-nowhere"), &given[0]).expect_err("an unknown agreement");
    assert!(matches!(err, StoreError::UnknownAgreement { .. }), "{err}");
    assert!(matches!(store.contributions(&aid("nobody-nowhere")), Err(StoreError::UnknownAgreement { .. })));
    assert_eq!(store.contributions(&id).expect("read"), given, "refusals store nothing");
}

fn only_acceptance_changes_a_stored_contribution(db: &dyn TestDb) {
    let mut store = db.open();
    register_example(store.as_mut());
    let id = aid("meridian-northwind");
    for c in example_contributions() {
        store.add_contribution(&id, &c).expect("add");
    }
    drop(store);
    let sql = "UPDATE contributions SET description = 'edited' WHERE id = 'c1'";
    let err = db.raw(sql, sql).expect_err("a description is never changed");
    assert!(err.contains("never changed, except to accept it"), "{err}");
    let (lite, pg) = ("UPDATE contributions SET accepted = 0 WHERE id = 'c1'", "UPDATE contributions SET accepted = FALSE WHERE id = 'c1'");
    let err = db.raw(lite, pg).expect_err("an acceptance is never withdrawn");
    assert!(err.contains("never changed, except to accept it"), "{err}");
    let sql = "DELETE FROM contributions WHERE id = 'c3'";
    let err = db.raw(sql, sql).expect_err("a contribution is never deleted");
    assert!(err.contains("never deleted"), "{err}");
    let (lite, pg) = ("UPDATE contributions SET accepted = 1 WHERE id = 'c3'", "UPDATE contributions SET accepted = TRUE WHERE id = 'c3'");
    db.raw(lite, pg).expect("acceptance is the one change allowed");
    let mut store = db.open();
    let stored = store.contributions(&id).expect("read");
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|c| c.accepted), "{stored:?}");
    assert_eq!(stored[0].description, "Quantized kernels cut serving latency 30%");
}

fn store_settles_the_worked_example_with_stored_contributions(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let id = aid("meridian-northwind");
    let records = parse_records(USAGE);
    let contributions = example_contributions();
    assert!(store.ingest(&records, IngestMode::Atomic, None).expect("ingest").stored);
    for c in &contributions {
        store.add_contribution(&id, c).expect("add a contribution");
    }
    let stored = store.contributions(&id).expect("read");
    let october = month("2026-10");
    let from_store = settle_from_store(store, "meridian-northwind", october, &stored);
    let in_memory = settle_in_memory(store, "meridian-northwind", october, &records, &contributions);
    assert_eq!(text(&from_store), text(&in_memory));
    assert!(text(&from_store).contains(r#""net_payable":"855.37""#), "{}", text(&from_store));
    assert!(text(&from_store).contains(r#""host_credit":"12.40""#), "{}", text(&from_store));
}

/// A small deterministic generator (xorshift), so a failure names its seed and can be replayed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[usize::try_from(self.below(items.len() as u64)).expect("small")]
    }
}

const GENERATED_V1: &str = r#"
id = "lab-h1"
version = 1
licensor = "lab"
host = "h1"
currency = "EUR"
effective_from = 2026-09-20
effective_to = "2026-12-10T12:00:00Z"
models = ["ma", "mb"]
minimum = "25.00"
dispute_window_days = 30

[pricing]
basis = "revenue_share"
tier_metric = "tokens"
tier_mode = "graduated"
tier_bounds = ["2000000000", "9000000000"]

[pricing.rates]
chat = ["0.20", "0.15", "0.10"]
search = ["0.30", "0.25", "0.2"]
default = ["0.1", "0.1", "0.05"]

[[exclusivity]]
use_case = "search"
regions = ["eu"]
from = 2026-10-01
to = 2026-11-15
uplift = "0.25"

[[exclusivity]]
use_case = "chat"
models = ["mb"]
from = 2026-09-01
to = 2027-01-01
uplift = "0.1"
"#;

/// A record as generation parameters, so a resend can be written differently.
#[derive(Clone)]
struct Draft {
    id: String,
    host: &'static str,
    model: &'static str,
    use_case: &'static str,
    region: &'static str,
    secs: i64,
    nanos: u32,
    counts: [u64; 3],
    mantissa: u64,
    scale: u32,
}

impl Draft {
    fn new(g: &mut Gen, n: usize) -> Draft {
        let start = Instant::parse_rfc3339("2026-09-10T00:00:00Z").expect("time").secs();
        let big = g.below(20) == 0;
        let count = |g: &mut Gen| if big { (1 << 62) / 64 + g.below(1 << 40) } else { g.below(400_000_000) };
        Draft {
            id: format!("r{n}"),
            host: if g.below(10) == 0 { "h2" } else { "h1" },
            model: g.pick(&["ma", "ma", "mb", "mc"]),
            use_case: g.pick(&["chat", "search", "search", "translation"]),
            region: g.pick(&["eu", "us"]),
            secs: start + i64::try_from(g.below(100 * 86_400)).expect("small"),
            nanos: [0, 0, 500_000_000, 123_456_789][usize::try_from(g.below(4)).expect("small")],
            counts: [g.below(10_000), count(g), count(g)],
            mantissa: g.below(100_000_000),
            scale: u32::try_from(g.below(7)).expect("small"),
        }
    }

    /// The record's JSON line, with the time at an offset and the revenue padded with zeros.
    fn line(&self, offset_minutes: i64, padding: usize) -> String {
        let local = Instant::from_parts(self.secs + offset_minutes * 60, self.nanos).to_string();
        let offset = if offset_minutes == 0 {
            "Z".to_owned()
        } else {
            format!("{}{:02}:{:02}", if offset_minutes < 0 { '-' } else { '+' }, offset_minutes.abs() / 60, offset_minutes.abs() % 60)
        };
        let digits = format!("{:0>width$}", self.mantissa, width = usize::try_from(self.scale).expect("small") + 1);
        let (whole, fraction) = digits.split_at(digits.len() - usize::try_from(self.scale).expect("small"));
        let revenue = if fraction.is_empty() && padding == 0 {
            whole.to_owned()
        } else {
            format!("{whole}.{fraction}{}", "0".repeat(padding.max(usize::from(fraction.is_empty()))))
        };
        let [requests, input_tokens, output_tokens] = self.counts;
        format!(
            r#"{{"id":"{}","host":"{}","model":"{}","use_case":"{}","region":"{}","time":"{}{offset}","requests":{requests},"input_tokens":{input_tokens},"output_tokens":{output_tokens},"revenue":"{revenue}","currency":"EUR"}}"#,
            self.id,
            self.host,
            self.model,
            self.use_case,
            self.region,
            local.trim_end_matches('Z'),
        )
    }
}

fn store_settles_generated_usage_like_the_core(db: &dyn TestDb) {
    // Every record sent, all seeds, in order: what the core settles in memory.
    let mut sent: Vec<UsageRecord<'static>> = Vec::new();
    for seed in [0x5eed_0001_u64, 0x5eed_0002, 0x5eed_0003] {
        let mut store = db.open();
        let store = store.as_mut();
        let mut g = Gen(seed);
        if seed == 0x5eed_0001 {
            store.add_party(&party("lab", Role::Licensor)).expect("add");
            store.add_party(&party("h1", Role::Host)).expect("add");
            store.add_party(&party("h2", Role::Host)).expect("add");
            for m in ["ma", "mb", "mc"] {
                store.add_model(&model(m, "lab", None)).expect("add");
            }
            store.add_agreement("generated.toml", GENERATED_V1).expect("agreement");
        }
        // Records are new per seed (ids carry the seed); the agreement is the same one.
        let drafts: Vec<Draft> = (0..300)
            .map(|n| {
                let mut d = Draft::new(&mut g, n);
                d.id = format!("s{seed:x}-{}", d.id);
                d
            })
            .collect();
        let mut lines = Vec::new();
        for (n, draft) in drafts.iter().enumerate() {
            lines.push(draft.line(0, 0));
            if g.below(8) == 0 {
                // A resend of an earlier record, written another way.
                let earlier = &drafts[usize::try_from(g.below(n as u64 + 1)).expect("small")];
                let offset = [-(5 * 60), 330, 14 * 60 - 1][usize::try_from(g.below(3)).expect("small")];
                lines.push(earlier.line(offset, usize::try_from(g.below(3)).expect("small")));
            }
        }
        let records = parse_records(&lines.join("\n"));
        for batch in records.chunks(70) {
            let report = store.ingest(batch, IngestMode::Atomic, None).expect("ingest");
            assert!(report.stored, "seed {seed:#x}: {:?}", report.problems);
        }
        sent.extend(records);
        for m in ["2026-09", "2026-10", "2026-11", "2026-12"].map(month) {
            assert_eq!(
                text(&settle_from_store(store, "lab-h1", m, &[])),
                text(&settle_in_memory(store, "lab-h1", m, &sent, &[])),
                "seed {seed:#x}, {m}"
            );
            assert_days_sum_to_the_month(store, "lab-h1", m);
        }
    }
    // An amendment moves the scopes and rates: the rollups are rebuilt under the new terms.
    let mut store = db.open();
    let store = store.as_mut();
    let v2 = edited(
        GENERATED_V1,
        &[
            ("version = 1", "version = 2"),
            ("regions = [\"eu\"]", "regions = [\"us\"]"),
            ("search = [\"0.30\", \"0.25\", \"0.2\"]", "search = [\"0.31\", \"0.26\", \"0.21\"]"),
        ],
    );
    store.add_agreement("generated-v2.toml", &v2).expect("amendment");
    for m in ["2026-09", "2026-10", "2026-11", "2026-12"].map(month) {
        assert_eq!(
            text(&settle_from_store(store, "lab-h1", m, &[])),
            text(&settle_in_memory(store, "lab-h1", m, &sent, &[])),
            "after the amendment, {m}"
        );
        assert_days_sum_to_the_month(store, "lab-h1", m);
    }
}

fn concurrent_writers_end_as_one_sequential_writer(db: &dyn TestDb) {
    let mut store = db.open();
    register_example(store.as_mut());
    let records: Vec<UsageRecord<'static>> = (0..250)
        .map(|n| {
            let time = format!("2026-10-{:02}T{:02}:00:00Z", 1 + n % 28, n % 24);
            record(
                &format!("cc{n}"),
                ["m-8b", "m-70b"][n % 2],
                ["search", "customer_service"][n % 3 % 2],
                ["eu", "us"][n % 5 % 2],
                &time,
                &format!("{n}.{:02}", n % 97),
            )
        })
        .collect();
    // Four writers at once, each sending 100 records in batches of 10; neighbours share 50.
    let shares: Vec<&[UsageRecord<'static>]> = (0..4).map(|w| &records[w * 50..w * 50 + 100]).collect();
    let writers: Vec<Box<dyn Store + Send>> = (0..4).map(|_| db.open()).collect();
    std::thread::scope(|scope| {
        for (mut writer, share) in writers.into_iter().zip(&shares) {
            scope.spawn(move || {
                for batch in share.chunks(10) {
                    let report = writer.ingest(batch, IngestMode::Atomic, None).expect("ingest");
                    assert!(report.stored && report.problems.is_empty(), "{:?}", report.problems);
                }
            });
        }
    });
    let sent: Vec<UsageRecord<'static>> = shares.concat();
    let october = month("2026-10");
    let (rollup, duplicates) = store.rollup(&aid("meridian-northwind"), october).expect("rollup");
    assert_eq!((rollup.records(), duplicates), (250, 150));
    assert_eq!(
        text(&settle_from_store(store.as_mut(), "meridian-northwind", october, &[])),
        text(&settle_in_memory(store.as_mut(), "meridian-northwind", october, &sent, &[]))
    );
}

fn registering_an_agreement_places_earlier_records(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example_parties(store);
    let records = parse_records(USAGE);
    let report = store.ingest(&records, IngestMode::Atomic, None).expect("ingest");
    assert_eq!((report.accepted, report.unmatched), (8, 8), "no agreement yet");
    store.add_agreement("agreement.toml", AGREEMENT).expect("agreement");
    let october = month("2026-10");
    assert_eq!(store.records(&aid("meridian-northwind"), october).expect("records").len(), 6);
    let (rollup, duplicates) = store.rollup(&aid("meridian-northwind"), october).expect("rollup");
    // A resend is no row: the one acknowledged before the agreement counted in no rollup, and
    // re-placing the records does not invent it (delivery statistics, no part of a statement).
    assert_eq!((rollup.records(), duplicates), (6, 0));
    assert_eq!(
        text(&settle_from_store(store, "meridian-northwind", october, &[])),
        text(&settle_in_memory(store, "meridian-northwind", october, &records, &[]))
    );
}

// ---------------------------------------------------------------------------------------------
// Periods and statements

/// The statement of a month, as bytes with their digest.
struct Settled {
    statement: Statement,
    bytes: Vec<u8>,
    digest: String,
}

impl Settled {
    fn of(store: &mut dyn Store, period: Period) -> Settled {
        let statement = settle_statement(store, "meridian-northwind", period, &[]);
        let bytes = statement.to_canonical().expect("canonical bytes");
        let digest = revshare_core::canonical::digest(&bytes);
        Settled { statement, bytes, digest }
    }

    fn to_finalise<'a>(&'a self, id: &'a AgreementId, kind: StatementKind) -> NewStatement<'a> {
        NewStatement {
            agreement_id: id,
            agreement_version: 1,
            period: self.statement.period,
            kind,
            canonical: &self.bytes,
            digest: &self.digest,
            finalised_at: Instant::from_date(2026, 11, 2).expect("a date"),
        }
    }

    /// The statement's journal entry, as `revshare close` builds it.
    fn entry(&self) -> JournalEntry {
        JournalEntry::for_statement(&self.statement, &pid("meridian"), &pid("northwind")).expect("the statement's entry")
    }
}

/// Closes a month of meridian-northwind: its original statement and journal entry.
fn finalise_original(store: &mut dyn Store, period: Period) -> JournalEntry {
    let settled = Settled::of(store, period);
    let entry = settled.entry();
    store
        .finalise_statement(&settled.to_finalise(&aid("meridian-northwind"), StatementKind::Original), Some(&entry))
        .expect("finalise the original");
    entry
}

/// SPEC §10: a preview is the statement closing the month now would finalise, byte for byte,
/// with running totals while records keep coming; it finalises, books and logs nothing, and a
/// closed month has none.
fn a_preview_is_what_closing_would_finalise_and_writes_nothing(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let (id, october) = (aid("meridian-northwind"), month("2026-10"));
    let key = signer("revshare.example", 9);
    store.add_key(None, &key.verifier()).expect("the deployment key");
    let records = parse_records(USAGE);
    store.ingest(&records[..3], IngestMode::Atomic, None).expect("ingest part of the month");
    let running = store.preview(&id, october).expect("a preview mid-month");
    assert_eq!(running.inputs.records, 3, "running totals");
    store.ingest(&records, IngestMode::Atomic, None).expect("ingest the rest");
    let (size, journal) = (store.log_size().expect("size"), store.journal().expect("journal").len());
    let preview = store.preview(&id, october).expect("a preview");
    assert_eq!((preview.inputs.records, store.log_size().expect("size")), (6, size), "a preview logs nothing");
    let totals = store.running_totals(&id, october).expect("running totals");
    assert_eq!(totals.to_canonical().expect("bytes"), preview.to_canonical().expect("bytes"), "with nothing to adjust, the preview");
    assert!(store.statements(Some(&id)).expect("statements").is_empty(), "nor finalises");
    assert_eq!(store.journal().expect("journal").len(), journal, "nor books");
    let (_, closed) = close_month(store, &id, october, &key, day(11, 4)).expect("close october");
    assert_eq!(preview.to_canonical().expect("bytes"), closed.to_canonical().expect("bytes"), "the preview is the close to come");
    let after = store.preview(&id, october).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(
        after,
        Err(
            "meridian-northwind 2026-10 is already closed and its statement is final; late records are carried into the next month's close"
                .to_owned()
        )
    );
}

/// SPEC §10: a month closes from its end plus `close_after_days` (3 unless the agreement says);
/// an earlier close — a month not ended, a typo for a month years ahead — is refused with the
/// date it is allowed from, and changes nothing.
fn a_month_closes_only_once_its_late_reports_had_time(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let id = aid("meridian-northwind");
    let key = signer("revshare.example", 9);
    store.add_key(None, &key.verifier()).expect("the deployment key");
    store.ingest(&parse_records(USAGE), IngestMode::Atomic, None).expect("ingest");
    let (size, journal) = (store.log_size().expect("size"), store.journal().expect("journal").len());
    let too_early = |store: &mut dyn Store, period: &str, at: Instant| {
        close_month(store, &id, month(period), &key, at).map(|_| ()).map_err(|e| e.to_string()).expect_err("refused")
    };
    assert_eq!(
        too_early(store, "2026-10", Instant::from_parts(day(11, 4).secs() - 1, 0)),
        "meridian-northwind 2026-10 can be closed from 2026-11-04T00:00:00Z: the month ends at 2026-11-01T00:00:00Z and the agreement leaves 3 days for late reports (`close_after_days`); until then `revshare statement preview` shows it as it stands"
    );
    assert!(too_early(store, "2026-12", day(12, 6)).starts_with("meridian-northwind 2026-12 can be closed from 2027-01-04T00:00:00Z"));
    assert_eq!((store.log_size().expect("size"), store.journal().expect("journal").len()), (size, journal), "nothing changed");
    assert!(store.statements(Some(&id)).expect("statements").is_empty());
    close_month(store, &id, month("2026-10"), &key, day(11, 4)).expect("closed the moment it is allowed");

    // An agreement that leaves no days closes as soon as the month has ended.
    let prompt = edited(
        AGREEMENT,
        &[("version = 1\n", "version = 2\n"), ("dispute_window_days = 30\n", "dispute_window_days = 30\nclose_after_days = 0\n")],
    );
    let amended = store.add_agreement("amended.toml", &prompt).expect("an amendment");
    assert_eq!((amended.close_after_days(), amended.closes_from(month("2026-11"))), (0, day(12, 1)));
    close_month(store, &id, month("2026-11"), &key, day(12, 1)).expect("closed at the month's end");
}

/// After an agreement's last month, records of its months received late and disputes decided
/// later close into a final true-up: a statement of a month after the end holding adjustments
/// only, booked like any other. A month after the end with nothing to carry is refused, and the
/// refusal changes nothing.
fn after_the_last_month_a_final_true_up_carries_what_came_late(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example_parties(store);
    let ended = edited(AGREEMENT, &[("effective_to = 2027-01-01", "effective_to = 2026-11-01")]);
    store.add_agreement("agreement.toml", &ended).expect("an agreement whose last month is October");
    let (id, october, november) = (aid("meridian-northwind"), month("2026-10"), month("2026-11"));
    let key = signer("revshare.example", 9);
    store.add_key(None, &key.verifier()).expect("the deployment key");
    store.ingest(&parse_records(USAGE), IngestMode::Atomic, None).expect("ingest");
    let (_, closed) = close_month(store, &id, october, &key, day(11, 4)).expect("close october");

    let nothing = "agreement meridian-northwind ended at 2026-11-01T00:00:00Z, so 2026-11 closes only as a final true-up of what came after its months closed (records received late, contributions accepted since, disputes decided since); there is nothing to carry";
    let (size, journal) = (store.log_size().expect("size"), store.journal().expect("journal").len());
    let refused = close_month(store, &id, november, &key, day(12, 4)).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(refused, Err(nothing.to_owned()));
    assert_eq!(store.preview(&id, november).map(|_| ()).map_err(|e| e.to_string()), Err(nothing.to_owned()));
    assert_eq!((store.log_size().expect("size"), store.journal().expect("journal").len()), (size, journal), "nothing changed");

    // A record of October arrives late; the host disputes a line and the licensor accepts.
    let late = record("late-1", "m-8b", "content_moderation", "us", "2026-10-31T23:00:00Z", "100");
    assert_eq!(store.ingest(&[late.clone(), late], IngestMode::Atomic, None).expect("ingest").late, 1);
    // How October's records arrived, beside its statements: two batches, the late one, a resend.
    let delivery = store.delivery(&id, october).expect("delivery");
    assert_eq!(delivery, revshare_store::Delivery { records: 7, batches: 2, late: 1, resends: 2 });
    store
        .open_dispute(&id, october, None, Some(0), step(State::Open, "northwind", ActorRole::Host, day(11, 10), Some(1_500)))
        .expect("open");
    store.dispute_transition(1, step(State::Accepted, "meridian", ActorRole::Licensor, day(11, 11), Some(1_500))).expect("accept");
    let preview = store.preview(&id, november).expect("a preview of the true-up");
    let (stored, true_up) = close_month(store, &id, november, &key, day(12, 4)).expect("a final true-up");
    assert_eq!(preview.to_canonical().expect("bytes"), true_up.to_canonical().expect("bytes"), "the preview is the close");
    assert_eq!(stored.head.kind, StatementKind::Original);
    assert!(true_up.lines.is_empty() && true_up.inputs.records == 0, "adjustments only");
    assert_eq!(true_up.flags, ["final_true_up"]);
    // No minimum after the end: 100.00 of moderation at 0.10 restates October by 10.00, and the
    // host's accepted claim credits it 15.00.
    let carried: Vec<(AdjustmentKind, &str, i128)> = true_up.adjustments.iter().map(|a| (a.kind, a.reference.as_str(), a.amount)).collect();
    assert_eq!(carried, [(AdjustmentKind::Restatement, "2026-10", 1_000), (AdjustmentKind::Dispute, "dispute:1", -1_500)]);
    assert_eq!((true_up.totals.usage_total, true_up.totals.net_payable), (0, -500));
    let restated = store.statements(Some(&id)).expect("statements").into_iter().find(|s| s.head.period == october && s.head.sequence == 2);
    let restated = restated.expect("October restated").statement().expect("decoded");
    assert_eq!(restated.totals.usage_total - closed.totals.usage_total, 1_000);
    assert_eq!(
        store.dispute(1).expect("read").expect("dispute 1").carried,
        Some(revshare_store::Carried { period: november, sequence: 1, line: 1 })
    );
    assert_eq!(store.journal().expect("journal").len(), journal + 1, "the true-up is booked");
    // Carried once: December has nothing left.
    let december = close_month(store, &id, month("2026-12"), &key, Instant::from_date(2027, 1, 4).expect("a date"));
    assert!(december.is_err_and(|e| e.to_string().contains("there is nothing to carry")));
}

fn records_of_a_closed_month_are_late(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let october = month("2026-10");
    store.ingest(&parse_records(USAGE), IngestMode::Atomic, None).expect("ingest");
    finalise_original(store, october);
    assert_eq!(store.closed_periods(&aid("meridian-northwind")).expect("closed"), vec![october]);

    let late = record("late-1", "m-8b", "content_moderation", "us", "2026-10-31T23:00:00Z", "100");
    let next = record("next-1", "m-8b", "content_moderation", "us", "2026-11-02T00:00:00Z", "100");
    let report = store.ingest(&[late, next], IngestMode::Atomic, None).expect("ingest");
    assert_eq!((report.accepted, report.late), (2, 1));
    let (rollup, _) = store.rollup(&aid("meridian-northwind"), october).expect("rollup");
    assert_eq!(rollup.records(), 7, "a late record is still rolled up, for the restatement");
}

/// A month closed while a host keeps sending its records: each record is either in the statement
/// or late (stored after the statement, for the next close's restatement), never neither — the
/// statement's bundle counts every record logged before the statement, so one counted by
/// neither would make the bundle fail to verify. Eight months, each closed mid-stream.
fn a_close_counts_every_record_stored_before_it(db: &dyn TestDb) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let mut store = db.open();
    register_example(store.as_mut());
    let key = signer("revshare.example", 9);
    store.add_key(None, &key.verifier()).expect("the deployment key");
    let mut writer = db.open();
    for m in 1..=8u32 {
        let period = month(&format!("2026-{m:02}"));
        let (sent, closed) = (AtomicU64::new(0), AtomicBool::new(false));
        let (late, statement) = std::thread::scope(|scope| {
            let (sent, closed, writer) = (&sent, &closed, &mut writer);
            let writing = scope.spawn(move || {
                let (mut late, mut after) = (0, 0);
                for n in 0.. {
                    let time = format!("2026-{m:02}-{:02}T10:00:00Z", 1 + n % 28);
                    let one = record(&format!("w{m}-{n}"), "m-8b", "search", "us", &time, "1.00");
                    let report = writer.ingest(&[one], IngestMode::Atomic, None).expect("ingest");
                    assert_eq!(report.accepted, 1, "{:?}", report.problems);
                    late += report.late;
                    sent.fetch_add(1, Ordering::Release);
                    // A pause, so that the close gets SQLite's write lock between two records.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    // A few more once the month is closed, so some are late.
                    if closed.load(Ordering::Acquire) {
                        after += 1;
                        if after == 3 {
                            break;
                        }
                    }
                }
                late
            });
            while sent.load(Ordering::Acquire) < 3 && !writing.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let closing = close_month(store.as_mut(), &aid("meridian-northwind"), period, &key, day(m + 1, 4));
            closed.store(true, Ordering::Release);
            let late = writing.join().expect("the writer");
            (late, closing.expect("close").1)
        });
        let sent = sent.into_inner();
        assert!(late >= 3, "{period}: the records sent after the close are late ({late})");
        assert_eq!(
            statement.inputs.records + late,
            sent,
            "{period}: {} in the statement, {late} late, {sent} sent",
            statement.inputs.records
        );
    }
}

fn statements_are_immutable(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let id = aid("meridian-northwind");
    let october = month("2026-10");
    store.ingest(&parse_records(USAGE), IngestMode::Atomic, None).expect("ingest");
    let settled = Settled::of(store, october);
    let entry = settled.entry();
    let new = |kind| settled.to_finalise(&id, kind);

    let err = store.finalise_statement(&new(StatementKind::Restatement), None).expect_err("nothing to restate");
    assert!(matches!(err, StoreError::NothingToRestate { .. }), "{err}");
    let saved = store.finalise_statement(&new(StatementKind::Original), Some(&entry)).expect("the original");
    assert_eq!((saved.head.sequence, saved.head.kind), (1, StatementKind::Original));
    let err = store.finalise_statement(&new(StatementKind::Original), Some(&entry)).expect_err("a second original");
    assert!(matches!(err, StoreError::StatementExists { sequence: 1, .. }), "{err}");
    assert!(err.to_string().contains("save a restatement instead"), "{err}");

    let bad_digest = NewStatement { digest: "sha256:00", ..new(StatementKind::Restatement) };
    assert!(matches!(store.finalise_statement(&bad_digest, None), Err(StoreError::StatementDigest { .. })));
    let november = NewStatement { period: month("2026-11"), ..new(StatementKind::Original) };
    let err = store.finalise_statement(&november, Some(&entry)).expect_err("october's bytes saved as november");
    assert!(matches!(err, StoreError::StatementMismatch(_)), "{err}");
    let other_version = NewStatement { agreement_version: 2, ..new(StatementKind::Restatement) };
    assert!(matches!(store.finalise_statement(&other_version, None), Err(StoreError::StatementMismatch(_))));

    let restated = store.finalise_statement(&new(StatementKind::Restatement), None).expect("a restatement");
    assert_eq!((restated.head.sequence, restated.head.kind), (2, StatementKind::Restatement));
    let latest = store.statement(&id, october).expect("read").expect("a statement");
    assert_eq!(latest, restated);
    assert_eq!(latest.canonical, settled.bytes);
    assert_eq!(store.statement(&id, month("2026-11")).expect("read"), None);
    let all = store.statements(None).expect("list");
    assert_eq!(all.iter().map(|s| (s.head.period, s.head.sequence)).collect::<Vec<_>>(), vec![(october, 1), (october, 2)]);
    assert_eq!(store.statements(Some(&id)).expect("list"), all);
    assert_eq!(store.statements(Some(&aid("other"))).expect("list"), vec![]);
    assert_eq!(store.closed_periods(&id).expect("closed"), vec![october]);
    assert_eq!(store.journal().expect("journal"), vec![entry.clone()], "the restatement posted nothing");

    // A close of a month already closed is refused and saves nothing; a close of the next month
    // saves its original with its entry, and restates nothing that did not change.
    let err = store.close(&id, october, day(11, 3)).expect_err("october is closed");
    assert!(matches!(err, CloseError::AlreadyClosed { .. }), "{err}");
    assert_eq!(store.statements(Some(&id)).expect("list"), all, "nothing was saved");
    let november = store.close(&id, month("2026-11"), day(12, 4)).expect("close november");
    assert_eq!((november.original.head.sequence, november.original.head.kind), (1, StatementKind::Original));
    assert!(november.restated.is_empty(), "october did not change");
    assert_eq!(november.original.canonical, Settled::of(store, month("2026-11")).bytes);
    let november_entry = JournalEntry::for_statement(&november.statement, &pid("meridian"), &pid("northwind")).expect("an entry");
    assert_eq!(store.journal().expect("journal"), vec![entry, november_entry], "the original posted its entry");
}

// ---------------------------------------------------------------------------------------------
// The journal

fn usd() -> Currency {
    Currency::parse("USD").expect("a currency")
}

/// A payment under meridian-northwind, from the host unless `from_licensor`.
fn payment(amount_minor: i128, reference: &str, from_licensor: bool) -> JournalEntry {
    let (host, licensor) = (LedgerParty::host(&pid("northwind")), LedgerParty::licensor(&pid("meridian")));
    let (from, to) = if from_licensor { (&licensor, &host) } else { (&host, &licensor) };
    JournalEntry::payment(from, to, &aid("meridian-northwind"), usd(), amount_minor, reference).expect("a payment")
}

/// Who owes whom in USD, summed from the stored journal.
fn owed(store: &mut dyn Store) -> Vec<String> {
    let journal = store.journal().expect("the journal");
    Balances::from_entries(&journal).expect("balances").owed(usd()).iter().map(ToString::to_string).collect()
}

fn owes(amount: &str) -> Vec<String> {
    vec![format!("host northwind owes licensor meridian {amount} USD under meridian-northwind")]
}

/// The example with October ingested and, when `close`, closed.
fn october_example(db: &dyn TestDb, close: bool) -> Box<dyn Store + Send> {
    let mut store = db.open();
    register_example(store.as_mut());
    store.ingest(&parse_records(USAGE), IngestMode::Atomic, None).expect("ingest");
    if close {
        finalise_original(store.as_mut(), month("2026-10"));
    }
    store
}

fn statement_and_entry_are_one_transaction(db: &dyn TestDb) {
    let mut store = october_example(db, false);
    let store = store.as_mut();
    let id = aid("meridian-northwind");
    let october = month("2026-10");
    let settled = Settled::of(store, october);
    let original = settled.to_finalise(&id, StatementKind::Original);

    // An original without its entry, or with an entry that is not its own, leaves nothing.
    let err = store.finalise_statement(&original, None).expect_err("an original posts its entry");
    assert!(matches!(err, StoreError::EntryRequired { .. }), "{err}");
    let mut other = settled.statement.clone();
    other.period = month("2026-09");
    let wrong_month = JournalEntry::for_statement(&other, &pid("meridian"), &pid("northwind")).expect("an entry");
    let err = store.finalise_statement(&original, Some(&wrong_month)).expect_err("another month's entry");
    assert!(err.to_string().contains("not the statement entry `statement:meridian-northwind:2026-10`"), "{err}");
    let mut other = settled.statement.clone();
    other.totals.usage_total += 1;
    other.totals.net_payable += 1;
    let wrong_totals = JournalEntry::for_statement(&other, &pid("meridian"), &pid("northwind")).expect("an entry");
    let err = store.finalise_statement(&original, Some(&wrong_totals)).expect_err("other totals");
    assert!(err.to_string().contains("it posts usage_total 867.78 USD, but the statement says 867.77"), "{err}");
    // This one is refused only when the entry is posted, after the statement row is written:
    // the transaction takes the statement back with it.
    let swapped = JournalEntry::for_statement(&settled.statement, &pid("northwind"), &pid("meridian")).expect("an entry");
    let err = store.finalise_statement(&original, Some(&swapped)).expect_err("the parties are the agreement's");
    assert!(matches!(err, StoreError::Ledger(LedgerError::PartiesChanged { .. })), "{err}");
    assert_eq!(store.statement(&id, october).expect("read"), None);
    assert!(store.closed_periods(&id).expect("closed").is_empty());
    assert!(store.journal().expect("journal").is_empty());

    let entry = settled.entry();
    store.finalise_statement(&original, Some(&entry)).expect("the original and its entry");
    assert!(store.statement(&id, october).expect("read").is_some());
    assert_eq!(store.journal().expect("journal"), vec![entry.clone()]);
    assert_eq!(owed(store), owes("867.77"), "the example without contributions");

    // A restatement posts no entry; a statement's entry is never posted alone, nor reversed.
    let err =
        store.finalise_statement(&settled.to_finalise(&id, StatementKind::Restatement), Some(&entry)).expect_err("a restatement's entry");
    assert!(matches!(err, StoreError::EntryNotAllowed { .. }), "{err}");
    assert_eq!(store.statements(Some(&id)).expect("list").len(), 1);
    let err = store.post_entry(&entry).expect_err("a statement's entry alone");
    assert!(matches!(err, StoreError::StatementEntryAlone { .. }), "{err}");
    let reversal = JournalEntry::reversal(&entry, "undo-october").expect("a reversal");
    let err = store.post_entry(&reversal).expect_err("reversing a statement");
    assert!(matches!(err, StoreError::StatementReversal { .. }), "{err}");
    assert_eq!(store.journal().expect("journal"), vec![entry]);
}

/// SPEC §10: a payment its payer records is pending, in no account, until the payee confirms
/// it; then it posts once. Amounts past the bound are refused with the bound named.
fn a_payment_posts_when_its_payee_confirms_it(db: &dyn TestDb) {
    let mut store = october_example(db, true);
    let store = store.as_mut();
    let before = owed(store);
    let agreement = store.agreement(&aid("meridian-northwind"), None).expect("the agreement");
    let entry = payments::payment_entry(&agreement, "800.00", "wire-1", payments::Payer::Host).expect("an entry");
    store.record_payment(&entry, payments::Payer::Host, 80_000).expect("recorded");
    assert_eq!(owed(store), before, "a pending payment is in no account");
    let pending = store.pending_payments(Some(&aid("meridian-northwind"))).expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].reference.as_str(), pending[0].amount_minor, pending[0].from), ("wire-1", 80_000, payments::Payer::Host));
    let again = store.record_payment(&entry, payments::Payer::Host, 80_000).expect_err("the same reference again");
    assert!(again.to_string().contains("is already posted"), "{again}");
    let e = store.confirm_payment(&aid("meridian-northwind"), "wire-2").expect_err("nothing pending under it");
    assert!(matches!(e, StoreError::NoPendingPayment { .. }), "{e}");
    let posted = store.confirm_payment(&aid("meridian-northwind"), "wire-1").expect("the payee confirms");
    assert_eq!(posted.reference(), "payment:meridian-northwind:wire-1", "posted under its agreement");
    assert_eq!(payments::own_reference(posted.reference()), "wire-1");
    assert_eq!(owed(store), owes("67.77"));
    assert!(store.pending_payments(None).expect("pending").is_empty());
    assert!(store.confirm_payment(&aid("meridian-northwind"), "wire-1").is_err(), "confirmed once");
    let e = store.record_payment(&entry, payments::Payer::Host, 80_000).expect_err("posted already");
    assert!(e.to_string().contains("is already posted"), "{e}");
    // The bound: a trillion of the currency, named.
    let e = payments::payment_entry(&agreement, "9223372036854775808.00", "wire-huge", payments::Payer::Host).expect_err("too much");
    assert!(e.to_string().contains("over the most one payment may be, 1000000000000.00 USD"), "{e}");
    payments::payment_entry(&agreement, "1000000000000.00", "wire-max", payments::Payer::Host).expect("the bound itself");
    // Kept as recorded.
    for (sqlite, postgres) in [
        ("UPDATE pending_payments SET amount_minor = 1", "UPDATE pending_payments SET amount_minor = 1"),
        ("DELETE FROM pending_payments", "DELETE FROM pending_payments"),
    ] {
        let e = db.raw(sqlite, postgres).expect_err("the database refuses");
        assert!(e.contains("pending payment is never"), "{e}");
    }
}

fn payments_are_posted_once(db: &dyn TestDb) {
    let mut store = october_example(db, true);
    let store = store.as_mut();
    let pay = payment(80_000, "pay-1", false);
    store.post_entry(&pay).expect("a payment");
    assert_eq!(owed(store), owes("67.77"));
    let err = store.post_entry(&pay).expect_err("the same payment again");
    assert!(matches!(err, StoreError::Ledger(LedgerError::DuplicateReference { .. })), "{err}");
    assert!(err.to_string().contains("entry `pay-1` is already posted"), "{err}");
    let err = store.post_entry(&payment(5, "statement:meridian-northwind:2026-10", false)).expect_err("the statement's reference");
    assert!(matches!(err, StoreError::Ledger(LedgerError::DuplicateReference { .. })), "{err}");

    // A payment is between the agreement's parties, in its currency, under a registered agreement.
    let southwind = JournalEntry::payment(
        &LedgerParty::host(&pid("southwind")),
        &LedgerParty::licensor(&pid("meridian")),
        &aid("meridian-northwind"),
        usd(),
        5,
        "pay-south",
    )
    .expect("a payment");
    let err = store.post_entry(&southwind).expect_err("another host");
    assert!(err.to_string().contains("but it is between licensor `meridian` and host `northwind`"), "{err}");
    let (host, licensor) = (LedgerParty::host(&pid("northwind")), LedgerParty::licensor(&pid("meridian")));
    let eur = Currency::parse("EUR").expect("a currency");
    let in_euros = JournalEntry::payment(&host, &licensor, &aid("meridian-northwind"), eur, 5, "pay-eur").expect("a payment");
    let err = store.post_entry(&in_euros).expect_err("another currency");
    assert_eq!(
        err.to_string(),
        "entry `pay-eur` posts in EUR, but agreement meridian-northwind is in USD; post its payments and adjustments in USD"
    );
    let unknown = JournalEntry::payment(&host, &licensor, &aid("other"), usd(), 5, "pay-other").expect("a payment");
    assert!(matches!(store.post_entry(&unknown), Err(StoreError::UnknownAgreement { .. })));

    // The licensor pays back: the host's debt grows again.
    let refund = payment(1_000, "refund-1", true);
    store.post_entry(&refund).expect("a refund");
    assert_eq!(owed(store), owes("77.77"));
    let journal = store.journal().expect("journal");
    assert_eq!(
        journal.iter().map(JournalEntry::reference).collect::<Vec<_>>(),
        ["statement:meridian-northwind:2026-10", "pay-1", "refund-1"]
    );
    assert_eq!(&journal[1..], [pay, refund]);
}

/// The statement and payment lists, read a page at a time from what the store keeps beside the
/// statements and the journal, say what applying the journal's payments to the originals oldest
/// month first says; pages of one item each end as the whole list.
fn lists_page_through_statements_and_payments(db: &dyn TestDb) {
    let mut store = october_example(db, true);
    let store = store.as_mut();
    let id = aid("meridian-northwind");
    finalise_original(store, month("2026-11"));
    store.post_entry(&payment(80_000, "pay-1", false)).expect("a payment");
    let second = payment(10_000, "pay-2", false);
    store.post_entry(&second).expect("a payment");
    store.post_entry(&JournalEntry::reversal(&second, "pay-2-reversed").expect("a reversal")).expect("reversed");
    store.post_entry(&payment(1_000, "refund-1", true)).expect("a refund");
    let agreement = store.agreement(&id, None).expect("the agreement");
    let pending = payments::payment_entry(&agreement, "50.00", "wire-1", payments::Payer::Host).expect("an entry");
    store.record_payment(&pending, payments::Payer::Host, 5_000).expect("recorded");

    // The oracle: the journal's payments not reversed, applied one original at a time.
    let journal = store.journal().expect("the journal");
    let reversed: Vec<&str> = journal.iter().filter_map(|e| e.kind().reverses()).collect();
    let mut left: i128 = journal
        .iter()
        .filter(|e| e.kind().as_str() == "payment" && !reversed.contains(&e.reference()))
        .flat_map(|e| e.postings().iter().filter(|p| p.account.key().starts_with("host:") && p.account.key().contains(":payable:")))
        .map(|p| p.amount_minor)
        .sum();
    assert_eq!(left, 79_000, "paid 800.00 and 100.00 (reversed), paid back 10.00");
    let rows = accounts::statements(store, None).expect("the statements");
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let covered = if row.net_payable > 0 { row.net_payable.min(left.max(0)) } else { 0 };
        left -= covered;
        assert_eq!(row.paid, Some((covered, row.net_payable - covered)), "{}", row.head.period);
    }
    assert_eq!(rows[0].paid, Some((79_000, 7_777)), "October's 867.77, 790.00 of it paid");

    let agreements = [id.clone()];
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let query = StatementQuery { agreements: &agreements, from: None, to: None, kind: None, after: after.clone(), limit: 1 };
        let page = store.statement_rows(&query).expect("a page");
        let Some(last) = page.last() else { break };
        after = Some((last.head.agreement_id.clone(), last.head.period, last.head.sequence));
        paged.extend(page.into_iter().map(|row| (row.head, row.paid, row.net_payable)));
    }
    let whole: Vec<_> = rows.iter().map(|row| (row.head.clone(), row.paid, row.net_payable)).collect();
    assert_eq!(paged, whole, "pages of one end as the whole list");
    let november = StatementQuery { agreements: &agreements, from: Some(month("2026-11")), to: None, kind: None, after: None, limit: 10 };
    let page = store.statement_rows(&november).expect("from November");
    assert_eq!(page.iter().map(|row| (row.head.period, row.paid)).collect::<Vec<_>>(), [(month("2026-11"), rows[1].paid)]);

    let whole = accounts::payments(store, None).expect("the payments");
    let seen: Vec<(&str, &str, i128, &str)> =
        whole.iter().map(|p| (p.reference.as_str(), p.from.as_str(), p.amount_minor, p.state.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("pay-1", "host", 80_000, "confirmed"),
            ("pay-2", "host", 10_000, "reversed"),
            ("wire-1", "host", 5_000, "pending"),
            ("refund-1", "licensor", 1_000, "confirmed")
        ],
        "by the reference each is kept under"
    );
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page =
            store.payment_rows(&PaymentQuery { agreements: &agreements, state: None, after: after.clone(), limit: 1 }).expect("a page");
        let Some(last) = page.last() else { break };
        after = Some((last.agreement.clone(), last.stored_reference.clone()));
        paged.extend(page);
    }
    assert_eq!(paged, whole, "pages of one end as the whole list");
    for (state, reference) in [(PaymentState::Pending, "wire-1"), (PaymentState::Reversed, "pay-2")] {
        let page =
            store.payment_rows(&PaymentQuery { agreements: &agreements, state: Some(state), after: None, limit: 10 }).expect("a page");
        assert_eq!(page.iter().map(|p| p.reference.as_str()).collect::<Vec<_>>(), [reference], "{}", state.as_str());
    }
    let other = [aid("other")];
    assert!(store.payment_rows(&PaymentQuery { agreements: &other, state: None, after: None, limit: 10 }).expect("none").is_empty());
}

fn reversals_restore_the_balance(db: &dyn TestDb) {
    let mut store = october_example(db, true);
    let store = store.as_mut();
    let pay = payment(80_000, "pay-1", false);
    store.post_entry(&pay).expect("a payment");
    let reversal = JournalEntry::reversal(&pay, "pay-1-reversed").expect("a reversal");
    store.post_entry(&reversal).expect("the reversal");
    assert_eq!(owed(store), owes("867.77"));

    let twice = JournalEntry::reversal(&pay, "pay-1-reversed-again").expect("a reversal");
    let err = store.post_entry(&twice).expect_err("reversed once only");
    assert!(matches!(err, StoreError::Ledger(LedgerError::AlreadyReversed { .. })), "{err}");
    let never_posted = JournalEntry::reversal(&payment(100, "pay-9", false), "pay-9-reversed").expect("a reversal");
    let err = store.post_entry(&never_posted).expect_err("nothing to reverse");
    assert!(matches!(err, StoreError::Ledger(LedgerError::UnknownOriginal { .. })), "{err}");

    // Reversing the reversal puts the payment back.
    store.post_entry(&JournalEntry::reversal(&reversal, "pay-1-restored").expect("a reversal")).expect("post");
    assert_eq!(owed(store), owes("67.77"));
    assert_eq!(store.journal().expect("journal").len(), 4);
}

fn the_journal_read_back_balances_like_memory(db: &dyn TestDb) {
    let mut store = october_example(db, false);
    let store = store.as_mut();
    let mut memory = vec![finalise_original(store, month("2026-10")), finalise_original(store, month("2026-11"))];
    // Payments both ways, adjustments up and down, and reversals of any of them (reversals
    // included), in a seeded order.
    let mut g = Gen(0x1ed6_e5ee_d001);
    let mut reversible: Vec<JournalEntry> = Vec::new();
    for n in 0..30 {
        let amount = i128::from(g.below(90_000)) + 1;
        let entry = match g.below(6) {
            0 | 1 => payment(amount, &format!("pay-{n}"), false),
            2 => payment(amount / 10 + 1, &format!("refund-{n}"), true),
            3 => JournalEntry::adjustment(
                &pid("meridian"),
                &pid("northwind"),
                &aid("meridian-northwind"),
                usd(),
                if g.below(2) == 0 { amount } else { -amount },
                &format!("adj-{n}"),
                "dispute settled",
            )
            .expect("an adjustment"),
            _ if !reversible.is_empty() => {
                let original = reversible.remove(usize::try_from(g.below(reversible.len() as u64)).expect("small"));
                JournalEntry::reversal(&original, &format!("rev-{n}")).expect("a reversal")
            }
            _ => payment(amount, &format!("pay-{n}"), false),
        };
        store.post_entry(&entry).expect("post");
        reversible.push(entry.clone());
        memory.push(entry);
    }
    // Amounts at the far end of the range are kept exactly.
    let huge = JournalEntry::adjustment(&pid("meridian"), &pid("northwind"), &aid("meridian-northwind"), usd(), i128::MAX / 2, "huge", "")
        .expect("an adjustment");
    store.post_entry(&huge).expect("post");
    memory.push(huge);

    let mut reopened = db.open();
    for journal in [store.journal().expect("journal"), reopened.journal().expect("journal")] {
        assert_eq!(journal, memory);
        let (read_back, in_memory) =
            (Balances::from_entries(&journal).expect("balances"), Balances::from_entries(&memory).expect("balances"));
        assert_eq!(read_back.iter().collect::<Vec<_>>(), in_memory.iter().collect::<Vec<_>>());
        assert_eq!(read_back.owed(usd()), in_memory.owed(usd()));
        let total: i128 = read_back.iter().map(|(_, _, balance)| balance).fold(0, |sum, b| sum.checked_add(b).expect("in range"));
        assert_eq!(total, 0, "balances sum to zero");
    }
}

fn a_damaged_posting_is_detected_on_read(db: &dyn TestDb) {
    let mut store = october_example(db, true);
    let store = store.as_mut();
    store.post_entry(&payment(80_000, "pay-1", false)).expect("a payment");
    let change = "UPDATE postings SET amount_minor = '80001' WHERE line = 0 \
                  AND entry_seq = (SELECT seq FROM journal_entries WHERE reference = 'pay-1')";
    let err = db.raw(change, change).expect_err("the schema refuses changes");
    assert!(err.contains("a posting is never changed"), "{err}");
    let err = db.raw("DELETE FROM journal_entries", "DELETE FROM journal_entries").expect_err("and deletions");
    assert!(err.contains("a journal entry is never"), "{err}");

    // Behind revshare's back, without the trigger.
    db.raw(
        &format!("DROP TRIGGER postings_are_final_u; {change}"),
        &format!("ALTER TABLE postings DISABLE TRIGGER postings_are_final; {change}"),
    )
    .expect("a change behind revshare's back");
    let err = store.journal().expect_err("a damaged journal");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().starts_with("the database holds a journal entry `pay-1` that revshare cannot read (entry `pay-1` does not balance in USD: debits 1600.01, credits 1600.00"),
        "{err}"
    );
    let err = store.post_entry(&payment(100, "pay-2", false)).expect_err("nothing is posted on a damaged journal");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The transparency log

fn signer(name: &str, seed: u8) -> SignerKey {
    SignerKey::from_seed(name, [seed; 32]).expect("a valid key name")
}

fn leaf(i: usize) -> LogLeaf {
    LogLeaf::new("test", format!("test:{i}"), format!("{{\"n\":{i}}}").into_bytes()).expect("a fresh salt")
}

fn log_proofs_match_the_core(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    let mut memory = MemoryCells::new();
    let mut appended = 0usize;
    // Batches of uneven sizes, so subtrees complete inside and across batches.
    for batch in [1usize, 2, 13, 16, 17, 100, 151] {
        let leaves: Vec<LogLeaf> = (appended..appended + batch).map(leaf).collect();
        let first = store.append_leaves(&leaves).expect("append");
        assert_eq!(first, u64::try_from(appended).expect("small"));
        for l in &leaves {
            memory.push(merkle::leaf_hash(&l.data()));
        }
        appended += batch;
    }
    let size = store.log_size().expect("size");
    assert_eq!(size, 300);
    for n in [1u64, 2, 3, 16, 17, 255, 256, 257, 300] {
        let root = store.log_root(n).expect("root");
        assert_eq!(root, merkle::root(&mut memory, n).expect("memory root"), "root at {n}");
        for index in [0, n / 2, n - 1] {
            let proof = store.inclusion_proof(index, n).expect("inclusion proof");
            assert_eq!(proof, merkle::inclusion_proof(&mut memory, index, n).expect("memory proof"));
            let hash = merkle::leaf_hash(&store.log_leaf(index).expect("leaf").data());
            merkle::verify_inclusion(&hash, index, n, &proof, &root).expect("the stored proof verifies");
        }
        for m in [1u64, n / 3 + 1, n] {
            let proof = store.consistency_proof(m, n).expect("consistency proof");
            let old = store.log_root(m).expect("old root");
            merkle::verify_consistency(m, n, &old, &root, &proof).expect("the stored consistency proof verifies");
        }
    }
    let future = store.inclusion_proof(0, 301).expect_err("a size beyond the log");
    assert!(future.to_string().contains("has 300 leaves"), "{future}");
    // A second connection extends the same tree.
    let mut again = db.open();
    let last = leaf(300);
    again.append_leaves(std::slice::from_ref(&last)).expect("append again");
    memory.push(merkle::leaf_hash(&last.data()));
    assert_eq!(again.log_root(301).expect("root"), memory.root());
}

fn events_are_logged(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let agreement = store.log_leaves_of("agreement:meridian-northwind/1").expect("agreement leaves");
    assert_eq!(agreement.len(), 1);
    let (kind, value) = transparency::read_event(&agreement[0].1.event).expect("a typed leaf");
    assert_eq!(kind, "agreement");
    assert_eq!(value["digest"], store.agreement(&aid("meridian-northwind"), Some(1)).expect("agreement").digest());

    let records = parse_records(USAGE);
    let before = store.log_size().expect("size");
    let report = store.ingest(&records, IngestMode::Atomic, None).expect("ingest");
    let logged = report.logged.expect("the batch is logged");
    assert_eq!(logged.leaf, before);
    let stored = store.usage_batch(logged.leaf).expect("the batch");
    assert_eq!(logged.digest, batch_digest(&records, &stored.record_key), "the leaf names the digest of the batch as sent");
    let leaf = store.log_leaf(logged.leaf).expect("leaf");
    let (kind, value) = transparency::read_event(&leaf.event).expect("typed");
    assert_eq!((kind.as_str(), value["digest"].as_str()), ("usage_batch", Some(logged.digest.as_str())));
    // The tree holds the commitment to the event under its salt, not the event.
    assert_eq!(leaf.data(), transparency::commitment(&leaf.salt, &leaf.event));
    let root = store.log_root(logged.leaf + 1).expect("root");
    let proof = store.inclusion_proof(logged.leaf, logged.leaf + 1).expect("proof");
    merkle::verify_inclusion(&merkle::leaf_hash(&leaf.data()), logged.leaf, logged.leaf + 1, &proof, &root).expect("included");
    assert!(merkle::verify_inclusion(&merkle::leaf_hash(&leaf.event), logged.leaf, logged.leaf + 1, &proof, &root).is_err());
    // Salts are fresh for every event.
    let again = LogLeaf::new(&leaf.kind, leaf.subject.clone(), leaf.event.clone()).expect("a salt");
    assert_ne!(again.salt, leaf.salt);
    let mut digests = stored.commitments.clone();
    assert_eq!(stored.digest, logged.digest);
    assert!(digests.windows(2).all(|w| w[0] < w[1]), "the batch's commitments are sorted and distinct");
    assert_eq!(sorted_digest(&mut digests), logged.digest);
    assert_eq!(u64::try_from(digests.len()).expect("small"), logged.records);
    // No record's bare digest is kept: only its commitment under the batch's key.
    assert!(records.iter().all(|r| !digests.contains(&r.digest())));

    // A resend is logged as a batch of its own; a batch refused whole is not logged at all.
    let again = store.ingest(&records[..2], IngestMode::Atomic, None).expect("resend");
    assert!(again.logged.is_some());
    let size = store.log_size().expect("size");
    let mut conflicting = records[0].clone();
    conflicting.requests += 1;
    let refused = store.ingest(&[conflicting], IngestMode::Atomic, None).expect("ingest");
    assert!(!refused.stored && refused.logged.is_none());
    assert_eq!(store.log_size().expect("size"), size, "a refused batch appends nothing");

    // The records as sent carry the batch that stored them.
    let sent = store.sent_records(&aid("meridian-northwind"), month("2026-10")).expect("records");
    assert!(sent.iter().all(|s| s.batch == Some(logged.leaf)));
    let committed = |d: [u8; 32]| transparency::record_commitment(&transparency::record_salt(&stored.record_key, &d), &d);
    assert!(sent.iter().all(|s| digests.contains(&committed(s.record.digest()))), "every counted record is in its batch");
    assert!(sent.iter().all(|s| s.model == s.record.model), "the example's hosts use the licensed ids");
}

fn signed_batches_are_checked(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let host = signer("northwind", 7);
    let stranger = signer("northwind", 8);
    store.add_key(Some(&pid("northwind")), &host.verifier()).expect("register the host's key");
    let records: Vec<_> = parse_records(USAGE).into_iter().filter(|r| r.host == "northwind").collect();
    let record_key = [9u8; 16];
    let sign_under = |key: &SignerKey, records: &[UsageRecord<'_>], record_key: [u8; 16]| SignedBatch {
        signed: Signed {
            key: key.verifier().to_text(),
            signature: key.sign(&transparency::batch_message(&batch_digest(records, &record_key))),
        },
        record_key,
    };
    let sign = |key: &SignerKey, records: &[UsageRecord<'_>]| sign_under(key, records, record_key);
    let size = store.log_size().expect("size");
    let refusals = [
        (sign(&stranger, &records), IngestMode::Atomic, "is not registered for northwind"),
        (
            {
                let mut signed = sign(&host, &records);
                signed.signed.signature[5] ^= 1;
                signed
            },
            IngestMode::Atomic,
            "does not match the batch",
        ),
        (SignedBatch { record_key: [8; 16], ..sign(&host, &records) }, IngestMode::Atomic, "under another record-salt key"),
        (sign(&host, &records[1..]), IngestMode::Atomic, "does not match the batch"),
        (sign(&host, &records), IngestMode::Partial, "stored whole or not at all"),
    ];
    for (signed, mode, message) in refusals {
        let e = store.ingest(&records, mode, Some(&signed)).expect_err("refused");
        assert!(e.to_string().contains(message), "{e}");
        assert_eq!(store.log_size().expect("size"), size, "a refused batch changes nothing");
        assert!(store.sent_records(&aid("meridian-northwind"), month("2026-10")).expect("records").is_empty());
    }
    let all = parse_records(USAGE);
    let e = store.ingest(&all, IngestMode::Atomic, Some(&sign(&host, &all))).expect_err("two hosts");
    assert!(e.to_string().contains("one host's"), "{e}");

    let report = store.ingest(&records, IngestMode::Atomic, Some(&sign(&host, &records))).expect("a signed batch");
    let logged = report.logged.expect("logged");
    let (_, value) = transparency::read_event(&store.log_leaf(logged.leaf).expect("leaf").event).expect("typed");
    let signed = Signed::from_json(&value["signed"]).expect("the leaf holds the host's signature");
    assert!(value.get("record_key").is_none(), "the key that opens the batch's records is not in its event");
    assert_eq!(store.usage_batch(logged.leaf).expect("batch").record_key, record_key, "the batch keeps the host's key");
    host.verifier().verify(&transparency::batch_message(&logged.digest), &signed.signature).expect("it verifies");
}

fn statements_are_signed_by_known_keys(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let deployment = signer("revshare.test/log", 1);
    let host = signer("northwind", 2);
    let licensor = signer("meridian", 3);
    store.add_key(None, &deployment.verifier()).expect("deployment key");
    store.add_key(Some(&pid("northwind")), &host.verifier()).expect("host key");
    store.add_key(Some(&pid("meridian")), &licensor.verifier()).expect("licensor key");
    store.ingest(&parse_records(USAGE), IngestMode::Atomic, None).expect("ingest");
    finalise_original(store, month("2026-10"));
    let statement = store.statement(&aid("meridian-northwind"), month("2026-10")).expect("read").expect("the statement");
    let leaf = statement.head.leaf.expect("a statement has a leaf");
    let (_, value) = transparency::read_event(&store.log_leaf(leaf).expect("leaf").event).expect("typed");
    assert_eq!(value["digest"], statement.head.digest.as_str());

    let sign = |key: &SignerKey, digest: &str| Signed {
        key: key.verifier().to_text(),
        signature: key.sign(&transparency::statement_message(digest)),
    };
    let e = store.sign_statement(&statement, &sign(&licensor, &statement.head.digest)).expect_err("not the deployment's nor the host's");
    assert!(e.to_string().contains("neither the deployment's nor registered for host northwind"), "{e}");
    let e = store.sign_statement(&statement, &sign(&host, "sha256:00")).expect_err("another statement's signature");
    assert!(e.to_string().contains("is not a signature of"), "{e}");
    assert!(store.statement_signatures(&statement).expect("signatures").is_empty());
    store.sign_statement(&statement, &sign(&deployment, &statement.head.digest)).expect("the deployment signs");
    store.sign_statement(&statement, &sign(&host, &statement.head.digest)).expect("the host countersigns");
    store.sign_statement(&statement, &sign(&host, &statement.head.digest)).expect("again: a no-op");
    let signatures = store.statement_signatures(&statement).expect("signatures");
    assert_eq!(signatures.len(), 2);
}

/// The deployment's first key is the operator's to register; every later one only by a rotation
/// the current key signs, logged with that signature. A refused key changes nothing.
fn a_deployment_key_is_rotated_only_by_its_predecessor(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    let (first, second, stranger) = (signer("revshare.test/log", 1), signer("revshare.test/log", 4), signer("revshare.test/log", 5));
    let leaf = store.add_key(None, &first.verifier()).expect("the first key");
    assert_eq!(store.add_key(None, &first.verifier()).expect("again: a no-op"), leaf);
    let size = store.log_size().expect("size");
    let e = store.add_key(None, &second.verifier()).expect_err("a second key without a rotation");
    assert!(e.to_string().contains("by a rotation signed with it"), "{e}");
    let endorse = |by: &SignerKey, named: &SignerKey, new: &SignerKey| Signed {
        key: named.verifier().to_text(),
        signature: by.sign(&transparency::rotation_message(None, &new.verifier().to_text())),
    };
    for (bad, why) in [
        (endorse(&stranger, &first, &second), "does not verify"),
        (endorse(&stranger, &stranger, &second), "must be signed by the current key of the deployment"),
        (endorse(&first, &first, &stranger), "does not verify"),
    ] {
        let e = store.rotate_key(None, &second.verifier(), &bad).expect_err("a bad endorsement");
        assert!(e.to_string().contains(why), "{e}");
    }
    assert_eq!(store.log_size().expect("size"), size, "nothing refused was logged");
    let rotation = endorse(&first, &first, &second);
    let leaf = store.rotate_key(None, &second.verifier(), &rotation).expect("the current key signs");
    let (_, value) = transparency::read_event(&store.log_leaf(leaf).expect("leaf").event).expect("typed");
    assert_eq!(value["replaces"], first.verifier().to_text().as_str());
    assert_eq!(value["signature"], transparency::b64(&rotation.signature).as_str());
    // The next rotation is the new key's to sign.
    let e = store.rotate_key(None, &stranger.verifier(), &endorse(&first, &first, &stranger)).expect_err("the old key");
    assert!(e.to_string().contains("must be signed by the current key of the deployment"), "{e}");
}

/// A party's first key is registered by the operator, or by the party with a proof that it holds
/// the private half; every later one only by a rotation its current key signs. A replaced key
/// signs nothing more. A refused key changes nothing.
fn a_party_key_is_its_own_to_register_and_rotate(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    let (first, second, stranger) = (signer("northwind", 11), signer("northwind", 12), signer("northwind", 13));
    let southwind = signer("southwind", 14);
    store.add_key(Some(&pid("northwind")), &first.verifier()).expect("the operator registers a first key");
    let size = store.log_size().expect("size");
    let e = store.add_key(Some(&pid("northwind")), &second.verifier()).expect_err("a second key without a rotation");
    assert!(e.to_string().contains("by a rotation signed with it"), "{e}");
    let possession = |key: &SignerKey, party: &str| key.sign(&transparency::registration_message(party, &key.verifier().to_text()));
    let e = store.register_own_key(&pid("northwind"), &second.verifier(), &possession(&second, "northwind")).expect_err("has one");
    assert!(e.to_string().contains("by a rotation signed with it"), "{e}");
    let e = store.register_own_key(&pid("southwind"), &southwind.verifier(), &possession(&stranger, "southwind")).expect_err("no proof");
    assert!(e.to_string().contains("proof of possession does not verify"), "{e}");
    let e =
        store.register_own_key(&pid("southwind"), &southwind.verifier(), &possession(&southwind, "northwind")).expect_err("for another");
    assert!(e.to_string().contains("proof of possession does not verify"), "{e}");
    assert_eq!(store.log_size().expect("size"), size, "nothing refused was logged");
    let proof = possession(&southwind, "southwind");
    let leaf = store.register_own_key(&pid("southwind"), &southwind.verifier(), &proof).expect("the party registers its own");
    let (_, value) = transparency::read_event(&store.log_leaf(leaf).expect("leaf").event).expect("typed");
    assert_eq!(value["proof"], transparency::b64(&proof).as_str(), "the leaf carries the proof");

    let endorse = |by: &SignerKey, named: &SignerKey, new: &SignerKey| Signed {
        key: named.verifier().to_text(),
        signature: by.sign(&transparency::rotation_message(Some("northwind"), &new.verifier().to_text())),
    };
    let size = store.log_size().expect("size");
    for bad in [endorse(&stranger, &first, &second), endorse(&second, &second, &second)] {
        let e = store.rotate_key(Some(&pid("northwind")), &second.verifier(), &bad).expect_err("a bad endorsement");
        assert!(e.to_string().contains("must be signed by the current key of party northwind"), "{e}");
    }
    // A rotation message for the deployment is not one for the party.
    let deployment_style = Signed {
        key: first.verifier().to_text(),
        signature: first.sign(&transparency::rotation_message(None, &second.verifier().to_text())),
    };
    assert!(store.rotate_key(Some(&pid("northwind")), &second.verifier(), &deployment_style).is_err());
    assert_eq!(store.log_size().expect("size"), size, "nothing refused was logged");
    let rotation = endorse(&first, &first, &second);
    let leaf = store.rotate_key(Some(&pid("northwind")), &second.verifier(), &rotation).expect("the current key signs");
    let (_, value) = transparency::read_event(&store.log_leaf(leaf).expect("leaf").event).expect("typed");
    assert_eq!((value["party"].as_str(), value["replaces"].as_str()), (Some("northwind"), Some(first.verifier().to_text().as_str())));

    // The replaced key signs no new batch; the current one does.
    let records: Vec<_> = parse_records(USAGE).into_iter().filter(|r| r.host == "northwind").collect();
    let sign = |key: &SignerKey| {
        let record_key = [5u8; 16];
        let digest = batch_digest(&records, &record_key);
        SignedBatch {
            signed: Signed { key: key.verifier().to_text(), signature: key.sign(&transparency::batch_message(&digest)) },
            record_key,
        }
    };
    let e = store.ingest(&records, IngestMode::Atomic, Some(&sign(&first))).expect_err("a replaced key");
    assert!(e.to_string().contains("was replaced by"), "{e}");
    store.ingest(&records, IngestMode::Atomic, Some(&sign(&second))).expect("the current key");
}

fn the_log_is_append_only(db: &dyn TestDb) {
    let mut store = db.open();
    store.append_leaves(&[leaf(0), leaf(1)]).expect("append");
    for (sqlite, postgres) in [
        ("UPDATE log_leaves SET data = x'00' WHERE idx = 0", "UPDATE log_leaves SET data = '\\x00' WHERE idx = 0"),
        ("DELETE FROM log_leaves WHERE idx = 1", "DELETE FROM log_leaves WHERE idx = 1"),
    ] {
        let e = db.raw(sqlite, postgres).expect_err("the database refuses");
        assert!(e.contains("append-only"), "{e}");
    }
}

fn checkpoints_are_kept_once_per_size(db: &dyn TestDb) {
    let mut store = db.open();
    store.append_leaves(&[leaf(0)]).expect("append");
    store.add_checkpoint(1, "first\n").expect("keep");
    store.add_checkpoint(1, "second\n").expect("a second one of the same size is ignored");
    assert_eq!(store.checkpoints().expect("read"), vec![(1, "first\n".to_owned())]);
    assert_eq!(store.checkpoint_including(0).expect("read"), Some((1, "first\n".to_owned())));
    assert_eq!(store.checkpoint_including(1).expect("read"), None, "no kept checkpoint has leaf 1 yet");
    let e = store.add_checkpoint(2, "future\n").expect_err("a size the log has not reached");
    assert!(e.to_string().contains("in its future"), "{e}");
}

fn tokens_are_found_by_hash_and_revoked(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example_parties(store);
    store.add_party(&party("ledgerwise", Role::Auditor)).expect("add an auditor");
    let hash = [7u8; 32];
    assert_eq!(store.token_by_hash(&hash).expect("look up"), None, "no token yet");

    let wrong = store.add_token("t1", &pid("northwind"), Role::Auditor, &hash);
    assert!(matches!(wrong, Err(StoreError::WrongRole { .. })), "a host's token cannot be an auditor's: {wrong:?}");
    let unknown = store.add_token("t1", &pid("nobody"), Role::Host, &hash);
    assert!(matches!(unknown, Err(StoreError::UnknownParty { .. })), "{unknown:?}");
    let bad_id = store.add_token("T 1", &pid("northwind"), Role::Host, &hash);
    assert!(matches!(bad_id, Err(StoreError::BadTokenId(_))), "{bad_id:?}");
    assert_eq!(store.token_by_hash(&hash).expect("look up"), None, "refused tokens leave nothing behind");

    store.add_token("t1", &pid("northwind"), Role::Host, &hash).expect("add a host token");
    store.add_token("t2", &pid("ledgerwise"), Role::Auditor, &[8u8; 32]).expect("add an auditor token");
    let found = store.token_by_hash(&hash).expect("look up").expect("the token is found by its hash");
    assert_eq!(
        (found.id.as_str(), found.party.as_str(), found.role, found.hash, found.revoked),
        ("t1", "northwind", Role::Host, hash, false)
    );
    assert!(
        matches!(store.add_token("t1", &pid("northwind"), Role::Host, &[9u8; 32]), Err(StoreError::TokenExists { .. })),
        "ids are unique"
    );
    assert!(
        matches!(store.add_token("t3", &pid("northwind"), Role::Host, &hash), Err(StoreError::TokenExists { .. })),
        "hashes are unique"
    );

    let revoked = store.revoke_token("t1").expect("revoke");
    assert!(revoked.revoked);
    assert!(store.token_by_hash(&hash).expect("look up").expect("still there").revoked, "a revoked token is kept, revoked");
    assert!(store.revoke_token("t1").expect("revoke again").revoked, "revoking again is a no-op");
    assert!(!store.token_by_hash(&[8u8; 32]).expect("look up").expect("t2").revoked, "other tokens are untouched");
    assert!(matches!(store.revoke_token("t9"), Err(StoreError::UnknownToken { .. })));

    let unrevoke = db.raw("UPDATE tokens SET revoked = 0 WHERE id = 't1'", "UPDATE tokens SET revoked = false WHERE id = 't1'");
    assert!(unrevoke.is_err_and(|e| e.contains("never changed")), "a revoked token stays revoked");
    let delete = db.raw("DELETE FROM tokens WHERE id = 't2'", "DELETE FROM tokens WHERE id = 't2'");
    assert!(delete.is_err_and(|e| e.contains("never deleted")), "tokens are never deleted");
}

/// The operator's tokens act for no party; auditors' grants are logged, listed, revoked once and
/// never deleted.
fn the_operator_has_tokens_and_grants_are_logged(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    register_example(store);
    store.add_party(&party("ledgerwise", Role::Auditor)).expect("add an auditor");
    let operator = PartyId::parse(revshare_store::OPERATOR).expect("the operator's id");
    store.add_token("ops", &operator, Role::Operator, &[5u8; 32]).expect("an operator token");
    let found = store.token_by_hash(&[5u8; 32]).expect("look up").expect("found");
    assert_eq!((found.party.as_str(), found.role, found.revoked), ("operator", Role::Operator, false));
    assert!(matches!(store.add_token("ops-2", &pid("northwind"), Role::Operator, &[6u8; 32]), Err(StoreError::OperatorIsNoParty)));
    assert!(
        matches!(store.add_token("ops", &pid("northwind"), Role::Host, &[6u8; 32]), Err(StoreError::TokenExists { .. })),
        "one id space"
    );
    assert!(matches!(store.add_party(&party("operator", Role::Host)), Err(StoreError::OperatorIsNoParty)), "no party takes its name");
    assert!(store.revoke_token("ops").expect("revoke").revoked);
    assert!(store.token_by_hash(&[5u8; 32]).expect("look up").expect("kept").revoked);

    let agreement = AgreementId::parse("meridian-northwind").expect("an id");
    let not_auditor = store.grant(&pid("northwind"), &agreement);
    assert!(matches!(not_auditor, Err(StoreError::WrongRole { .. })), "{not_auditor:?}");
    let unknown = store.grant(&pid("ledgerwise"), &AgreementId::parse("meridian-nowhere").expect("an id"));
    assert!(matches!(unknown, Err(StoreError::UnknownAgreement { .. })), "{unknown:?}");
    let size = store.log_size().expect("size");
    let grant = store.grant(&pid("ledgerwise"), &agreement).expect("a grant");
    assert_eq!((grant.granted_leaf, grant.revoked_leaf), (size, None), "logged as the next leaf");
    assert_eq!(store.grant(&pid("ledgerwise"), &agreement).expect("again"), grant, "a grant in force is not made twice");
    let leaf = store.log_leaf(size).expect("the leaf");
    assert_eq!(leaf.kind, "grant");
    assert_eq!(
        String::from_utf8_lossy(&leaf.event),
        r#"{"action":"grant","agreement":"meridian-northwind","auditor":"ledgerwise","type":"grant"}"#
    );
    let revoked = store.revoke_grant(&pid("ledgerwise"), &agreement).expect("revoked");
    assert_eq!(revoked.revoked_leaf, Some(size + 1));
    assert!(matches!(store.revoke_grant(&pid("ledgerwise"), &agreement), Err(StoreError::NoGrant { .. })));
    let again = store.grant(&pid("ledgerwise"), &agreement).expect("granted again");
    assert_eq!(again.granted_leaf, size + 2);
    assert_eq!(store.grants(Some(&agreement), None).expect("list"), vec![revoked, again.clone()]);
    assert_eq!(store.grants(None, Some(&pid("northwind"))).expect("list"), Vec::new());
    let changed = db.raw("UPDATE grants SET agreement_id = 'x'", "UPDATE grants SET agreement_id = 'x'");
    assert!(changed.is_err_and(|e| e.contains("never changed")), "a grant is only ever revoked");
    let deleted = db.raw("DELETE FROM grants", "DELETE FROM grants");
    assert!(deleted.is_err_and(|e| e.contains("never deleted")));
}

// ---------------------------------------------------------------------------------------------
// Disputes

fn day(month: u32, day: u32) -> Instant {
    Instant::from_date(2026, month, day).expect("a date")
}

fn step(state: State, party: &str, role: ActorRole, at: Instant, amount: Option<i128>) -> Transition {
    Transition {
        state,
        actor: Actor { party: party.to_owned(), role },
        at,
        reason: format!("{party} says so"),
        amount,
        evidence: vec![],
        arbiter: None,
    }
}

/// The example, naming `judge` its arbiter, with October ingested and closed; the deployment's key.
fn closed_october(store: &mut dyn Store) -> SignerKey {
    register_example_parties(store);
    store.add_party(&party("judge", Role::Arbiter)).expect("add the arbiter");
    let named = edited(AGREEMENT, &[("dispute_window_days = 30\n", "dispute_window_days = 30\narbiters = [\"judge\"]\n")]);
    store.add_agreement("agreement.toml", &named).expect("the example, naming its arbiter");
    store.ingest(&parse_records(USAGE), IngestMode::Atomic, None).expect("ingest");
    let key = signer("revshare.example", 9);
    store.add_key(None, &key.verifier()).expect("the deployment key");
    close_month(store, &aid("meridian-northwind"), month("2026-10"), &key, day(11, 4)).expect("close october");
    key
}

fn disputes_follow_the_process_and_carry_into_the_next_statement(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    let key = closed_october(store);
    let id = aid("meridian-northwind");
    let october = month("2026-10");

    // Refusals change nothing.
    let size = store.log_size().expect("size");
    let outsider = store.open_dispute(&id, october, None, None, step(State::Open, "southwind", ActorRole::Host, day(11, 3), Some(100)));
    assert!(matches!(outsider, Err(StoreError::Dispute(DisputeError::NotAllowed { .. }))), "{outsider:?}");
    let late = store.open_dispute(&id, october, None, None, step(State::Open, "northwind", ActorRole::Host, day(12, 4), Some(100)));
    assert_eq!(
        late.map(|_| ()).map_err(|e| e.to_string()),
        Err("statement meridian-northwind 2026-10 #1 can no longer be disputed: its dispute window of 30 days closed at 2026-12-04T00:00:00Z".to_owned())
    );
    let no_line = store.open_dispute(&id, october, None, Some(99), step(State::Open, "northwind", ActorRole::Host, day(11, 3), Some(100)));
    assert!(matches!(no_line, Err(StoreError::Dispute(DisputeError::NoSuchLine { line: 99, .. }))), "{no_line:?}");
    let no_statement =
        store.open_dispute(&id, month("2026-09"), None, None, step(State::Open, "northwind", ActorRole::Host, day(11, 3), Some(1)));
    assert!(matches!(no_statement, Err(StoreError::NoStatement { .. })), "{no_statement:?}");
    assert_eq!(store.log_size().expect("size"), size, "refused disputes log nothing");
    assert!(store.disputes(None).expect("disputes").is_empty());

    // The host disputes a line and the licensor accepts; the licensor disputes the whole
    // statement, the host counters and the licensor takes the offer; a third is rejected,
    // escalated and decided by an arbiter.
    let host_claim = store
        .open_dispute(&id, october, None, Some(0), step(State::Open, "northwind", ActorRole::Host, day(11, 3), Some(1_500)))
        .expect("open");
    assert_eq!((host_claim.dispute.id, host_claim.dispute.state()), (1, State::Open));
    let accepted =
        store.dispute_transition(1, step(State::Accepted, "meridian", ActorRole::Licensor, day(11, 4), Some(1_500))).expect("accept");
    assert_eq!(accepted.dispute.resolution(), Some(-1_500), "a host's claim is credited to the host");
    store
        .open_dispute(&id, october, Some(1), None, step(State::Open, "meridian", ActorRole::Licensor, day(11, 3), Some(10_000)))
        .expect("open");
    let wrong_side = store.dispute_transition(2, step(State::Countered, "meridian", ActorRole::Licensor, day(11, 4), Some(5_000)));
    assert!(matches!(wrong_side, Err(StoreError::Dispute(DisputeError::NotAllowed { .. }))), "the opener does not counter itself");
    store.dispute_transition(2, step(State::Countered, "northwind", ActorRole::Host, day(11, 4), Some(4_000))).expect("counter");
    store.dispute_transition(2, step(State::Accepted, "meridian", ActorRole::Licensor, day(11, 5), Some(4_000))).expect("take the offer");
    store.open_dispute(&id, october, None, None, step(State::Open, "northwind", ActorRole::Host, day(11, 6), Some(900))).expect("open");
    store.dispute_transition(3, step(State::Rejected, "meridian", ActorRole::Licensor, day(11, 7), None)).expect("reject");
    store.dispute_transition(3, step(State::Escalated, "northwind", ActorRole::Host, day(11, 8), None)).expect("escalate");
    let decided = store.dispute_transition(3, step(State::Decided, "judge", ActorRole::Arbiter, day(11, 9), Some(300))).expect("decide");
    assert_eq!(
        decided.dispute.history.iter().map(|t| t.state).collect::<Vec<_>>(),
        [State::Open, State::Rejected, State::Escalated, State::Decided]
    );
    let unknown = store.dispute_transition(9, step(State::Accepted, "meridian", ActorRole::Licensor, day(11, 9), Some(1)));
    assert!(matches!(unknown, Err(StoreError::UnknownDispute { id: 9 })));
    assert_eq!(store.dispute(u64::MAX).expect("an id beyond any stored one is simply unknown"), None);
    assert_eq!(store.dispute_parties(3).expect("parties"), Some((id.clone(), pid("meridian"), pid("northwind"))));
    assert_eq!(store.dispute_parties(9).expect("parties"), None);

    // Every transition is a leaf, and the stored history reads back as it was given.
    assert_eq!(store.log_leaves_of("dispute:3").expect("leaves").len(), 4);
    let (kind, leaf) = transparency::read_event(&store.log_leaves_of("dispute:2").expect("leaves")[1].1.event).expect("typed");
    assert_eq!(
        (kind.as_str(), leaf["transition"]["state"].as_str(), leaf["transition"]["amount"].as_str()),
        ("dispute", Some("countered"), Some("40.00"))
    );
    let again = db.open().dispute(3).expect("read").expect("dispute 3");
    assert_eq!(again, decided);

    // November's statement carries the three resolutions; December's none of them again.
    let (_, november) = close_month(store, &id, month("2026-11"), &key, day(12, 4)).expect("close november");
    let carried: Vec<(String, i128)> = november.adjustments.iter().map(|a| (a.reference.clone(), a.amount)).collect();
    assert_eq!(carried, [("dispute:1".to_owned(), -1_500), ("dispute:2".to_owned(), 4_000), ("dispute:3".to_owned(), -300)]);
    assert_eq!(november.totals.adjustments, 2_200);
    // Each dispute says where its adjustment went: the statement and its line.
    let carried: Vec<Option<revshare_store::Carried>> =
        store.disputes(Some(&id)).expect("disputes").into_iter().map(|d| d.carried).collect();
    let line = |line| Some(revshare_store::Carried { period: month("2026-11"), sequence: 1, line });
    assert_eq!(carried, [line(0), line(1), line(2)]);
    assert_eq!(
        store.dispute(3).expect("read").expect("dispute 3").to_json()["carried_by"],
        serde_json::json!({"period": "2026-11", "sequence": 1, "line": 2})
    );
    let (_, december) =
        close_month(store, &id, month("2026-12"), &key, Instant::from_date(2027, 1, 4).expect("a date")).expect("close december");
    assert!(december.adjustments.is_empty(), "a dispute is carried once");

    let change = db.raw(
        "UPDATE dispute_transitions SET amount = 1 WHERE dispute_id = 1",
        "UPDATE dispute_transitions SET amount = 1 WHERE dispute_id = 1",
    );
    assert!(change.is_err_and(|e| e.contains("never changed")), "transitions are append-only");
}

fn both_sides_accept_an_arbiter_for_a_dispute(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    closed_october(store);
    store.add_party(&party("sage", Role::Arbiter)).expect("add an arbiter the agreement does not name");
    let id = aid("meridian-northwind");
    store
        .open_dispute(&id, month("2026-10"), None, None, step(State::Open, "northwind", ActorRole::Host, day(11, 3), Some(700)))
        .expect("open");
    store.dispute_transition(1, step(State::Rejected, "meridian", ActorRole::Licensor, day(11, 4), None)).expect("reject");
    let naming = |party: &str, role, at, arbiter: &str| Transition {
        arbiter: Some(PartyId::parse(arbiter).expect("a party id")),
        ..step(State::Escalated, party, role, at, None)
    };
    // Only a registered arbiter can be named, and a party that is not one is told alike whether it exists.
    let size = store.log_size().expect("size");
    for stranger in ["southwind", "nobody"] {
        let refused = store.dispute_transition(1, naming("northwind", ActorRole::Host, day(11, 5), stranger)).map_err(|e| e.to_string());
        assert_eq!(
            refused.err(),
            Some(format!("`{stranger}` is not a registered arbiter; name a party the operator registered as an arbiter"))
        );
    }
    assert_eq!(store.log_size().expect("size"), size, "refusals log nothing");
    store.dispute_transition(1, naming("northwind", ActorRole::Host, day(11, 5), "sage")).expect("the host escalates, naming sage");
    let early = store.dispute_transition(1, step(State::Decided, "sage", ActorRole::Arbiter, day(11, 6), Some(100)));
    assert!(matches!(early, Err(StoreError::Dispute(DisputeError::NotAllowed { .. }))), "one side's word is not enough: {early:?}");
    let accepted = store.dispute_transition(1, naming("meridian", ActorRole::Licensor, day(11, 6), "sage")).expect("the licensor agrees");
    assert_eq!(accepted.dispute.accepted_arbiter().map(PartyId::as_str), Some("sage"));
    let decided =
        store.dispute_transition(1, step(State::Decided, "sage", ActorRole::Arbiter, day(11, 7), Some(200))).expect("sage decides");
    assert_eq!(decided.dispute.resolution(), Some(-200));
    // The naming is stored and logged as given.
    assert_eq!(db.open().dispute(1).expect("read").expect("dispute 1"), decided);
    let leaves = store.log_leaves_of("dispute:1").expect("leaves");
    let named: Vec<Option<String>> = leaves
        .iter()
        .map(|(_, leaf)| transparency::read_event(&leaf.event).and_then(|(_, v)| v["transition"]["arbiter"].as_str().map(str::to_owned)))
        .collect();
    assert_eq!(named, [None, None, Some("sage".to_owned()), Some("sage".to_owned()), None]);
}

fn unanswered_disputes_escalate_by_themselves(db: &dyn TestDb) {
    let mut store = db.open();
    let store = store.as_mut();
    closed_october(store);
    let id = aid("meridian-northwind");
    store
        .open_dispute(&id, month("2026-10"), None, None, step(State::Open, "northwind", ActorRole::Host, day(11, 3), Some(500)))
        .expect("open");
    assert_eq!(store.escalate_disputes(day(11, 16)).expect("escalate"), 0, "not yet: 14 days run to the 17th");
    // A late answer is refused, and changes nothing.
    let late = store.dispute_transition(1, step(State::Accepted, "meridian", ActorRole::Licensor, day(11, 18), Some(500)));
    assert!(matches!(late, Err(StoreError::Dispute(DisputeError::Late { .. }))), "{late:?}");
    assert_eq!(store.log_leaves_of("dispute:1").expect("leaves").len(), 1);
    assert_eq!(store.escalate_disputes(day(11, 20)).expect("escalate"), 1);
    assert_eq!(store.escalate_disputes(day(11, 21)).expect("escalate"), 0, "once");
    let stored = store.dispute(1).expect("read").expect("dispute 1");
    let last = stored.dispute.history.last().expect("a transition");
    assert_eq!((last.state, last.actor.role, last.at), (State::Escalated, ActorRole::Deployment, day(11, 17)), "dated at the deadline");
    assert_eq!(store.log_leaves_of("dispute:1").expect("leaves").len(), 2);
    store.dispute_transition(1, step(State::Decided, "judge", ActorRole::Arbiter, day(11, 25), Some(500))).expect("decide");

    // A counter-offer not answered in time escalates too; a decided dispute is left alone.
    store
        .open_dispute(&id, month("2026-10"), None, None, step(State::Open, "meridian", ActorRole::Licensor, day(11, 19), Some(800)))
        .expect("open");
    store.dispute_transition(2, step(State::Countered, "northwind", ActorRole::Host, day(11, 20), Some(300))).expect("counter");
    assert_eq!(store.escalate_disputes(day(12, 10)).expect("escalate"), 1);
    let countered = store.dispute(2).expect("read").expect("dispute 2");
    assert_eq!(countered.dispute.history.last().map(|t| (t.state, t.at)), Some((State::Escalated, day(12, 4))));
    assert_eq!(store.dispute(1).expect("read").expect("dispute 1").dispute.state(), State::Decided);
}
