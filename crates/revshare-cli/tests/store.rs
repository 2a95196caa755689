//! The system of record through the real binary: registration, ingestion, close and
//! restatement, payments and balances, crash safety under SIGKILL, and concurrent ingesters — on
//! the embedded SQLite store, and on PostgreSQL (a fresh database per test; PostgreSQL must be
//! running).

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use proptest::prelude::*;
use revshare_testdb::PgTestDb;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Where a test's store is: a data folder, or a PostgreSQL database dropped at the end.
struct TestStore {
    dir: tempfile::TempDir,
    pg: Option<PgTestDb>,
}

impl TestStore {
    fn sqlite() -> TestStore {
        TestStore { dir: tempfile::tempdir().expect("temp dir"), pg: None }
    }

    fn postgres(tag: &str) -> TestStore {
        TestStore { dir: tempfile::tempdir().expect("temp dir"), pg: Some(PgTestDb::new(&format!("revshare_cli_{tag}"))) }
    }

    fn command(&self, args: &[&str]) -> Process {
        let mut cmd = Process::cargo_bin("revshare").expect("the revshare binary");
        cmd.env_remove("REVSHARE_DATA").env_remove("REVSHARE_DATABASE_URL").arg("--data").arg(self.dir.path().join("data"));
        if let Some(db) = &self.pg {
            cmd.arg("--database").arg(db.url());
        }
        cmd.args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("revshare runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "revshare {args:?} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    /// A licensor with three models, hosts h1..h3, and an agreement for h1.
    fn register(&self) {
        self.ok(&["init"]);
        self.ok(&["party", "add", "lic", "--name", "Licensor", "--role", "licensor"]);
        for host in ["h1", "h2", "h3", "northwind", "southwind"] {
            self.ok(&["party", "add", host, "--name", host, "--role", "host"]);
        }
        for model in ["m-8b", "m-70b", "m-405b"] {
            self.ok(&["model", "add", model, "--owner", "lic"]);
        }
        let agreement = self.dir.path().join("h1.toml");
        std::fs::write(
            &agreement,
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/agreement-h1.toml")).expect("bench agreement"),
        )
        .expect("write");
        self.ok(&["agreement", "add", &agreement.display().to_string()]);
    }

    /// The SPEC's worked example: meridian, its hosts and models, the agreement with northwind,
    /// and the example usage ingested.
    fn register_worked_example(&self) {
        self.register_agreement_example(&examples().join("agreement.toml").display().to_string(), &[]);
    }

    /// The worked example, its agreement naming `arbiter` the arbiter of its disputes.
    fn register_worked_example_naming(&self, arbiter: &str) {
        let text = std::fs::read_to_string(examples().join("agreement.toml")).expect("the example agreement");
        let named = text.replacen("dispute_window_days = 30\n", &format!("dispute_window_days = 30\narbiters = [\"{arbiter}\"]\n"), 1);
        std::fs::write(self.path("agreement.toml"), named).expect("the agreement is written");
        self.register_agreement_example(&self.path("agreement.toml"), &[arbiter]);
    }

    /// A fresh store with meridian (licensor) and its models m-8b and m-70b, and the hosts
    /// northwind and southwind.
    fn register_meridian(&self) {
        self.ok(&["init"]);
        self.ok(&["party", "add", "meridian", "--name", "Meridian", "--role", "licensor"]);
        for host in ["northwind", "southwind"] {
            self.ok(&["party", "add", host, "--name", host, "--role", "host"]);
        }
        for model in ["m-8b", "m-70b"] {
            self.ok(&["model", "add", model, "--owner", "meridian"]);
        }
    }

    fn register_agreement_example(&self, agreement: &str, arbiters: &[&str]) {
        self.register_meridian();
        for arbiter in arbiters {
            self.ok(&["party", "add", arbiter, "--name", "Arbitration Ltd", "--role", "arbiter"]);
        }
        self.ok(&["agreement", "add", agreement]);
        let ingested = self.ok(&["ingest", &examples().join("usage.jsonl").display().to_string()]);
        assert!(ingested.contains("accepted 8, duplicates 1, conflicts 0, refused 0"), "{ingested}");
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `records` usage lines of host h1 (no resends), deterministically.
fn usage(store: &TestStore, name: &str, records: u64, seed: u64) -> String {
    let path = store.path(name);
    store.ok(&[
        "gen",
        "usage",
        "--records",
        &records.to_string(),
        "--seed",
        &seed.to_string(),
        "--hosts",
        "h1",
        "--dup-rate",
        "0",
        "--out",
        &path,
    ]);
    path
}

/// Offline `revshare settle` of October, as canonical JSON.
fn settle_json(store: &TestStore, agreement: &str, usage: &str, contributions: Option<&str>) -> String {
    let mut args = vec!["settle", "--agreement", agreement, "--usage", usage, "--period", "2026-10", "--format", "json"];
    if let Some(contributions) = contributions {
        args.extend(["--contributions", contributions]);
    }
    store.ok(&args)
}

fn close_json(store: &TestStore, period: &str) -> String {
    store.ok(&["close", "--agreement", "bench-h1", "--period", period, "--format", "json"])
}

#[test]
fn the_worked_example_through_the_store() {
    let store = TestStore::sqlite();
    store.register_worked_example();
    // The same file again changes nothing: every record is a duplicate.
    let again = store.ok(&["ingest", &examples().join("usage.cloudevents.json").display().to_string()]);
    assert!(again.contains("accepted 0, duplicates 9"), "{again}");
    // The open month previewed: what the close below finalises, marked, and nothing stored.
    let month = ["--agreement", "meridian-northwind", "--period", "2026-10"];
    let preview: serde_json::Value =
        serde_json::from_str(&store.ok(&[&["statement", "preview"][..], &month, &["--format", "json"]].concat())).expect("JSON");
    assert_eq!(preview["preview"], true);
    assert_eq!(preview["delivery"]["records"], 6, "{preview}");
    let table = store.ok(&[&["statement", "preview"][..], &month].concat());
    assert!(table.contains("PREVIEW as of") && table.contains("not final, not signed, nothing booked"), "{table}");
    assert!(!store.ok(&["statement", "list"]).contains("meridian-northwind"), "a preview finalises nothing");
    // A typo for a month years ahead books nothing: a month closes only once it has ended and
    // its late reports had time to arrive (this holds until June 2031).
    let typo = store.run(&["close", "--agreement", "meridian-northwind", "--period", "2031-05"]);
    assert_eq!(typo.status.code(), Some(1));
    assert!(
        text(&typo.stderr)
            .contains("meridian-northwind 2031-05 can be closed from 2031-06-04T00:00:00Z: the month ends at 2031-06-01T00:00:00Z"),
        "{}",
        text(&typo.stderr)
    );
    let statement: serde_json::Value =
        serde_json::from_str(&store.ok(&["close", "--agreement", "meridian-northwind", "--period", "2026-10", "--format", "json"]))
            .expect("JSON");
    let amounts: Vec<&str> = statement["lines"].as_array().into_iter().flatten().filter_map(|l| l["amount"].as_str()).collect();
    assert_eq!(amounts, ["183.11", "80.12", "106.94", "445.60", "0.00", "52.00"]);
    assert_eq!(preview["statement"], statement, "the preview was the close to come");
    let closed = store.run(&[&["statement", "preview"][..], &month].concat());
    assert!(text(&closed.stderr).contains("is already closed and its statement is final"), "{}", text(&closed.stderr));
    // Closed is final.
    let twice = store.run(&["close", "--agreement", "meridian-northwind", "--period", "2026-10"]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(text(&twice.stderr).contains("already closed"), "{}", text(&twice.stderr));
    let shown = store.ok(&["statement", "show", "--agreement", "meridian-northwind", "--period", "2026-10", "--format", "json"]);
    assert_eq!(shown.trim(), serde_json::to_string(&statement).map(|_| shown.trim().to_owned()).unwrap_or_default());
    // The table says how the records arrived, beside the statement: the example's resend, then
    // its 7 lines of the agreement's month sent again (the CloudEvents file).
    let table = store.ok(&["statement", "show", "--agreement", "meridian-northwind", "--period", "2026-10"]);
    assert!(
        table
            .contains("delivery, not part of the statement: 6 records stored in 1 batch, 0 of them late; 8 identical resends acknowledged"),
        "{table}"
    );
}

#[test]
fn the_worked_example_closes_with_its_stored_contributions() {
    let store = TestStore::sqlite();
    store.register_worked_example();
    let contributions = examples().join("contributions.jsonl").display().to_string();
    let added = store.ok(&["contribution", "add", "--agreement", "meridian-northwind", &contributions]);
    assert!(added.contains("recorded 3 contributions to agreement meridian-northwind"), "{added}");
    store.ok(&["contribution", "add", "--agreement", "meridian-northwind", &contributions]);
    // A bad line is reported with file, line and column; a contribution the agreement does not
    // admit is refused, naming it.
    let bad = store.path("bad.jsonl");
    std::fs::write(
        &bad,
        "\n{\"id\":\"c9\",\"party\":\"northwind\",\"kind\":\"update\",\"date\":\"2026-10-40\",\"description\":\"x\",\"accepted\":true}\n",
    )
    .expect("write");
    let out = store.run(&["contribution", "add", "--agreement", "meridian-northwind", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bad.jsonl:2:") && text(&out.stderr).contains("field `date`"), "{}", text(&out.stderr));
    std::fs::write(
        &bad,
        "{\"id\":\"c9\",\"party\":\"southwind\",\"kind\":\"update\",\"date\":\"2026-10-20\",\"description\":\"x\",\"accepted\":true}\n",
    )
    .expect("write");
    let out = store.run(&["contribution", "add", "--agreement", "meridian-northwind", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("contribution c9 is by `southwind`"), "{}", text(&out.stderr));

    let statement: serde_json::Value =
        serde_json::from_str(&store.ok(&["close", "--agreement", "meridian-northwind", "--period", "2026-10", "--format", "json"]))
            .expect("JSON");
    assert_eq!(statement["totals"]["net_payable"], "855.37", "{statement}");
    assert_eq!(statement["totals"]["host_credit"], "12.40", "{statement}");
    // The same as settling the files.
    let agreement = examples().join("agreement.toml").display().to_string();
    let from_files = settle_json(&store, &agreement, &examples().join("usage.jsonl").display().to_string(), Some(&contributions));
    let from_files: serde_json::Value = serde_json::from_str(&from_files).expect("JSON");
    assert_eq!(statement, from_files);
}

#[test]
fn a_conflicting_resend_is_refused_and_the_stored_record_untouched() {
    let store = TestStore::sqlite();
    store.register();
    let file = usage(&store, "u.jsonl", 50, 1);
    store.ok(&["ingest", &file]);
    let lines = std::fs::read_to_string(&file).expect("usage");
    let first = lines.lines().next().expect("a line");
    let changed = first.replacen("\"requests\":", "\"requests\":1", 1);
    let conflict = store.path("conflict.jsonl");
    std::fs::write(&conflict, format!("{changed}\n")).expect("write");
    let out = store.run(&["ingest", &conflict]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("conflict.jsonl:1:1: record h1-2026-10-1-0000000000:") && err.contains("requests"), "{err}");
    // The month still settles to what the first file says.
    let expected = {
        let fresh = TestStore::sqlite();
        fresh.register();
        fresh.ok(&["ingest", &file]);
        close_json(&fresh, "2026-10")
    };
    assert_eq!(close_json(&store, "2026-10"), expected);
}

#[test]
fn a_late_record_is_carried_into_the_next_month_as_a_restatement() {
    let store = TestStore::sqlite();
    store.register();
    let october = usage(&store, "oct.jsonl", 300, 2);
    store.ok(&["ingest", &october]);
    let closed: serde_json::Value = serde_json::from_str(&close_json(&store, "2026-10")).expect("JSON");
    // A record for October arrives after October closed.
    let late = store.path("late.jsonl");
    std::fs::write(&late, r#"{"id":"late-1","host":"h1","model":"m-70b","use_case":"search","region":"us","time":"2026-10-31T12:00:00Z","requests":10,"input_tokens":1000,"output_tokens":1000,"revenue":"100.00","currency":"USD"}"#.to_owned() + "\n").expect("write");
    let ingested = store.ok(&["ingest", &late]);
    assert!(ingested.contains("late 1"), "{ingested}");
    let november: serde_json::Value = serde_json::from_str(&close_json(&store, "2026-11")).expect("JSON");
    let restated: serde_json::Value =
        serde_json::from_str(&store.ok(&["statement", "show", "--agreement", "bench-h1", "--period", "2026-10", "--format", "json"]))
            .expect("JSON");
    let minor = |v: &serde_json::Value| -> i64 { v.as_str().unwrap_or("0").replace('.', "").parse().unwrap_or(0) };
    let difference = minor(&restated["totals"]["usage_total"]) - minor(&closed["totals"]["usage_total"]);
    // 100.00 of search revenue in tier 1 at 0.22: the usage total moves by exactly 22.00.
    assert_eq!(difference, 2200);
    let adjustments = november["adjustments"].as_array().cloned().unwrap_or_default();
    assert_eq!(adjustments.len(), 1, "{november}");
    assert_eq!(adjustments[0]["reference"], "2026-10");
    assert_eq!(minor(&adjustments[0]["amount"]), difference);
    assert_eq!(minor(&november["totals"]["net_payable"]), difference);
    let listed = store.ok(&["statement", "list", "--agreement", "bench-h1"]);
    assert!(listed.contains("restatement") && listed.contains("original"), "{listed}");
    // Each statement's bundle holds the records it counted: the original not the late record,
    // the restatement with it; both verify.
    for (sequence, records) in [("1", "300 records"), ("2", "301 records")] {
        let dir = store.path(&format!("bundle-{sequence}"));
        let args = ["statement", "export", "--agreement", "bench-h1", "--period", "2026-10", "--sequence", sequence, "--bundle", &dir];
        let wrote = store.ok(&args);
        assert!(wrote.contains(records), "{wrote}");
        let (ok, output) = verify(Path::new(&dir), &["--trust", &deployment_public(&store)]);
        assert!(ok, "statement #{sequence}: {output}");
    }
    // November's bundle holds October's two statements, and its adjustment is their difference.
    let dir = store.path("bundle-november");
    store.ok(&["statement", "export", "--agreement", "bench-h1", "--period", "2026-11", "--bundle", &dir]);
    for (file, sequence) in [("before.json", "1"), ("after.json", "2")] {
        let out = store.path(&format!("october-{sequence}.json"));
        store.ok(&["statement", "export", "--agreement", "bench-h1", "--period", "2026-10", "--sequence", sequence, "--out", &out]);
        let bundled = std::fs::read(Path::new(&dir).join("restated/2026-10").join(file)).expect(file);
        assert_eq!(bundled, std::fs::read(&out).expect("the exported statement"), "{file} is October's statement #{sequence}");
    }
    let (ok, output) = verify(Path::new(&dir), &["--trust", &deployment_public(&store)]);
    assert!(ok && output.contains("1 restatement(s) equal to their month's logged statements' difference"), "{output}");
    // The restatement posted nothing; November's entry carries the difference, so the ledger
    // holds October as first closed plus November.
    let owed = minor(&closed["totals"]["net_payable"]) + minor(&november["totals"]["net_payable"]);
    let row = balance_row(&store, "bench-h1");
    assert!(row.ends_with(&format!("┆ {}.{:02} │", owed / 100, owed % 100)), "{row}");
}

/// After the agreement's last month, a late record closes into a final true-up: adjustments
/// only, booked, and its bundle verifies like any statement's.
#[test]
fn after_the_last_month_a_late_record_closes_into_a_final_true_up() {
    let store = TestStore::sqlite();
    let text = std::fs::read_to_string(examples().join("agreement.toml")).expect("the example agreement");
    let ended = text.replacen("effective_to = 2027-01-01", "effective_to = 2026-11-01", 1);
    std::fs::write(store.path("agreement.toml"), ended).expect("the agreement is written");
    store.register_agreement_example(&store.path("agreement.toml"), &[]);
    let id = "meridian-northwind";
    store.ok(&["close", "--agreement", id, "--period", "2026-10"]);
    let nothing = store.run(&["close", "--agreement", id, "--period", "2026-11"]);
    assert!(!nothing.status.success() && String::from_utf8_lossy(&nothing.stderr).contains("there is nothing to carry"), "{nothing:?}");
    let late = store.path("late.jsonl");
    std::fs::write(&late, r#"{"id":"late-1","host":"northwind","model":"m-8b","use_case":"content_moderation","region":"us","time":"2026-10-31T23:00:00Z","requests":1,"input_tokens":1,"output_tokens":1,"revenue":"100","currency":"USD"}"#.to_owned() + "\n").expect("write");
    assert!(store.ok(&["ingest", &late]).contains("late 1"));
    let true_up: serde_json::Value =
        serde_json::from_str(&store.ok(&["close", "--agreement", id, "--period", "2026-11", "--format", "json"])).expect("JSON");
    assert_eq!(true_up["flags"], serde_json::json!(["final_true_up"]), "{true_up}");
    assert_eq!(true_up["lines"], serde_json::json!([]));
    assert_eq!(true_up["adjustments"][0]["reference"], "2026-10");
    assert_eq!((true_up["totals"]["adjustments"].as_str(), true_up["totals"]["net_payable"].as_str()), (Some("10.00"), Some("10.00")));
    let dir = store.path("true-up");
    store.ok(&["statement", "export", "--agreement", id, "--period", "2026-11", "--bundle", &dir]);
    let (ok, output) = verify(Path::new(&dir), &["--trust", &deployment_public(&store)]);
    assert!(ok && output.contains("recomputes byte for byte from 0 records"), "{output}");
}

/// The row of `revshare balances` for an agreement, or what it printed instead.
/// The agreement's row of the balances (who owes whom: a host and a licensor), not a pending
/// payment's (one side only).
fn balance_row(store: &TestStore, agreement: &str) -> String {
    let out = store.ok(&["balances"]);
    let owed = |l: &&str| l.contains(agreement) && l.contains(" host ") && l.contains(" licensor ");
    out.lines().find(owed).map_or(out.clone(), |l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn payments_and_balances(store: &TestStore) {
    store.register_worked_example();
    assert_eq!(store.ok(&["balances"]).trim(), "nobody owes anything");
    // Closing posts the statement's entry: 867.77, the worked example without contributions
    // (the store keeps none yet, so there is no host credit).
    let closed = store.ok(&["close", "--agreement", "meridian-northwind", "--period", "2026-10"]);
    assert!(closed.contains("867.77"), "{closed}");
    let owes = |amount: &str| format!("│ USD ┆ host northwind ┆ licensor meridian ┆ meridian-northwind ┆ {amount} │");
    assert_eq!(balance_row(store, "meridian-northwind"), owes("867.77"));
    assert!(store.ok(&["balances", "--currency", "EUR"]).contains("nobody owes anything in EUR"));

    // Recorded by the payer: pending, shown apart, in no balance until the payee confirms it.
    let paid = store.ok(&["payment", "record", "--agreement", "meridian-northwind", "--amount", "800.00", "--reference", "wire-0042"]);
    assert!(
        paid.contains("pending `wire-0042`: payment from host northwind to licensor meridian under meridian-northwind: 800.00 USD"),
        "{paid}"
    );
    assert_eq!(balance_row(store, "meridian-northwind"), owes("867.77"));
    let balances = store.ok(&["balances"]);
    assert!(balances.contains("pending, in no balance until the payee confirms") && balances.contains("wire-0042"), "{balances}");
    let confirmed = store.ok(&["payment", "confirm", "--agreement", "meridian-northwind", "--reference", "wire-0042"]);
    assert!(confirmed.contains("posted `wire-0042`"), "{confirmed}");
    assert_eq!(balance_row(store, "meridian-northwind"), owes("67.77"));
    assert!(!store.ok(&["balances"]).contains("pending"), "confirmed once, pending no more");
    let twice = store.run(&["payment", "confirm", "--agreement", "meridian-northwind", "--reference", "wire-0042"]);
    assert!(text(&twice.stderr).contains("has no pending payment `wire-0042`"), "{}", text(&twice.stderr));
    let again = store.run(&["payment", "record", "--agreement", "meridian-northwind", "--amount", "800.00", "--reference", "wire-0042"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("entry `wire-0042` is already posted"), "{}", text(&again.stderr));

    store.ok(&["payment", "reverse", "--reference", "wire-0042", "--as", "wire-0042-returned"]);
    assert_eq!(balance_row(store, "meridian-northwind"), owes("867.77"));
    // Recorded for the payee, who says it was received: posted at once.
    let direct =
        store.ok(&["payment", "record", "--agreement", "meridian-northwind", "--amount", "7.77", "--reference", "wire-0050", "--by-payee"]);
    assert!(direct.contains("posted `wire-0050`"), "{direct}");
    assert_eq!(balance_row(store, "meridian-northwind"), owes("860.00"));
    let huge = store.run(&[
        "payment",
        "record",
        "--agreement",
        "meridian-northwind",
        "--amount",
        "9223372036854775808.00",
        "--reference",
        "wire-0051",
    ]);
    assert!(text(&huge.stderr).contains("over the most one payment may be, 1000000000000.00 USD"), "{}", text(&huge.stderr));

    let cents = store.run(&["payment", "record", "--agreement", "meridian-northwind", "--amount", "800.001", "--reference", "wire-0043"]);
    assert_eq!(cents.status.code(), Some(1));
    assert_eq!(
        text(&cents.stderr),
        "error: the amount `800.001` has 3 decimal places, but a USD amount has at most 2; write the amount paid with at most 2 decimal places\n"
    );
    assert_eq!(balance_row(store, "meridian-northwind"), owes("860.00"), "the refused payment changed nothing");
    let reversed = store.run(&["payment", "reverse", "--reference", "wire-0043", "--as", "x"]);
    assert!(text(&reversed.stderr).contains("the journal has no entry `wire-0043`"), "{}", text(&reversed.stderr));
}

#[test]
fn payments_and_balances_sqlite() {
    payments_and_balances(&TestStore::sqlite());
}

#[test]
fn payments_and_balances_postgres() {
    payments_and_balances(&TestStore::postgres("ledger"));
}

/// The stored records' ids, through the store API, for the crash test.
fn stored_ids(store: &TestStore) -> Vec<String> {
    use revshare_store::Store;
    let mut db: Box<dyn Store> = match &store.pg {
        Some(pg) => Box::new(revshare_store::PgStore::connect_with(&pg.config).expect("connect")),
        None => Box::new(revshare_store::SqliteStore::open(store.dir.path().join("data/revshare.db")).expect("open")),
    };
    let id = revshare_core::ids::AgreementId::parse("bench-h1").expect("id");
    let period = revshare_core::time::Period::parse("2026-10").expect("period");
    let mut ids: Vec<String> = db.records(&id, period).expect("records").into_iter().map(|r| r.id.into_owned()).collect();
    ids.sort();
    ids
}

/// The records acknowledged as new by the `batch N committed` lines of an ingest's output.
fn acknowledged(stdout: &str) -> u64 {
    let accepted = |line: &str| line.split("accepted ").nth(1)?.split(',').next()?.trim().parse::<u64>().ok();
    stdout.lines().filter(|l| l.starts_with("batch ")).map(|line| accepted(line).unwrap_or(0)).sum()
}

/// The registry and the journal, listed: tables for people, JSON for programs.
#[test]
fn parties_models_agreements_and_the_journal_are_listed() {
    let store = TestStore::sqlite();
    store.register();
    let json = |args: &[&str]| -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["--format", "json"]);
        serde_json::from_str(&store.ok(&args)).expect("JSON")
    };
    let parties = json(&["party", "list"]);
    let ids: Vec<&str> = parties.as_array().expect("an array").iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, ["h1", "h2", "h3", "lic", "northwind", "southwind"]);
    assert_eq!(parties[3], serde_json::json!({"id": "lic", "name": "Licensor", "role": "licensor"}));
    let table = store.ok(&["party", "list"]);
    assert!(table.contains("Licensor") && table.ends_with("6 parties\n"), "{table}");
    let models = json(&["model", "list"]);
    assert_eq!(models[0], serde_json::json!({"id": "m-405b", "owner": "lic", "derived_from": null, "registered_by": null}));
    let agreements = json(&["agreement", "list"]);
    assert_eq!((agreements[0]["id"].as_str(), agreements[0]["version"].as_u64()), (Some("bench-h1"), Some(1)), "{agreements}");
    assert!(store.ok(&["agreement", "list"]).contains("bench-h1"));
    assert_eq!(store.ok(&["journal"]), "0 entries, each balanced\n");
    // A closed month posts one entry, whose postings balance.
    let october = usage(&store, "oct.jsonl", 200, 4);
    store.ok(&["ingest", &october]);
    close_json(&store, "2026-10");
    let journal = json(&["journal"]);
    let entries = journal.as_array().expect("an array");
    assert_eq!(entries.len(), 1, "{journal}");
    assert_eq!(entries[0]["agreement"], "bench-h1");
    let minor = |v: &serde_json::Value| -> i64 { v.as_str().unwrap_or("0").replace('.', "").parse().unwrap_or(0) };
    let postings = entries[0]["postings"].as_array().expect("postings");
    assert!(postings.len() >= 2 && postings.iter().map(|p| minor(&p["amount"])).sum::<i64>() == 0, "{journal}");
    let table = store.ok(&["journal"]);
    assert!(table.contains("bench-h1") && table.ends_with("1 entry, each balanced\n"), "{table}");
    // Payments: pending, then posted in order, a reversed one marked.
    store.ok(&["payment", "record", "--agreement", "bench-h1", "--amount", "10.00", "--reference", "p-1"]);
    store.ok(&["payment", "record", "--agreement", "bench-h1", "--amount", "5.00", "--reference", "p-2", "--by-payee"]);
    store.ok(&["payment", "reverse", "--reference", "p-2", "--as", "r-2"]);
    let states = |listed: serde_json::Value| -> Vec<(String, String, String)> {
        listed
            .as_array()
            .expect("an array")
            .iter()
            .map(|p| {
                (
                    p["reference"].as_str().unwrap_or("").to_owned(),
                    p["amount"].as_str().unwrap_or("").to_owned(),
                    p["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let owned =
        |rows: &[(&str, &str, &str)]| rows.iter().map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned())).collect::<Vec<_>>();
    assert_eq!(states(json(&["payment", "list"])), owned(&[("p-1", "10.00", "pending"), ("p-2", "5.00", "reversed")]));
    store.ok(&["payment", "confirm", "--agreement", "bench-h1", "--reference", "p-1"]);
    let listed = json(&["payment", "list", "--agreement", "bench-h1"]);
    assert_eq!(states(listed.clone()), owned(&[("p-1", "10.00", "confirmed"), ("p-2", "5.00", "reversed")]), "by reference");
    assert_eq!(listed[0]["from"], "host");
    assert_eq!(store.ok(&["payment", "list", "--agreement", "other-agreement"]), "0 payments\n");
    // October's statement: what the confirmed payment (not the reversed one) covers of it.
    let statements = json(&["statement", "list"]);
    let october = &statements[0];
    let net = minor(&october["net_payable"]);
    assert!(net > 1_000, "{october}");
    assert_eq!((minor(&october["paid"]), minor(&october["outstanding"])), (1_000, net - 1_000), "{october}");
    assert_eq!((october["kind"].as_str(), october["countersigned"].as_bool()), (Some("original"), Some(false)), "{october}");
    assert!(october["closed_on"].as_str().is_some_and(|d| d.len() == 10), "{october}");
    let table = store.ok(&["statement", "list"]);
    assert!(
        table.contains(&format!("{}.{:02} USD", (net - 1_000) / 100, (net - 1_000) % 100)) && table.ends_with("1 statement\n"),
        "{table}"
    );
    // CSV (RFC 4180, a header row) read back is the JSON: its members as columns, as text.
    let owed = json(&["balances"]);
    assert_eq!((owed[0]["debtor"].as_str(), owed[0]["creditor"].as_str()), (Some("host h1"), Some("licensor lic")), "{owed}");
    assert_eq!(minor(&owed[0]["amount"]), net - 1_000, "{owed}");
    let usage: &[&str] = &["usage", "--agreement", "bench-h1", "--from", "2026-10"];
    let days = json(usage);
    let records: u64 = days.as_array().expect("rows").iter().map(|d| d["records"].as_u64().expect("a count")).sum();
    let closed = json(&["statement", "show", "--agreement", "bench-h1", "--period", "2026-10"]);
    assert_eq!(Some(records), closed["inputs"]["records"].as_u64(), "the days hold the month's records");
    assert!(store.ok(usage).contains("2026-10-"), "a table of days");
    let lists: [&[&str]; 7] = [
        &["party", "list"],
        &["model", "list"],
        &["agreement", "list"],
        &["payment", "list"],
        &["statement", "list"],
        &["balances"],
        usage,
    ];
    for list in lists {
        let rows = json(list);
        let csv = {
            let mut args = list.to_vec();
            args.extend(["--format", "csv"]);
            store.ok(&args)
        };
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let columns: Vec<String> = reader.headers().expect("a header").iter().map(str::to_owned).collect();
        let read: Vec<Vec<String>> = reader.records().map(|r| r.expect("a record").iter().map(str::to_owned).collect()).collect();
        let expected: Vec<Vec<String>> = rows
            .as_array()
            .expect("an array")
            .iter()
            .map(|row| {
                assert_eq!(row.as_object().expect("an object").len(), columns.len(), "{list:?}: every member is a column");
                columns
                    .iter()
                    .map(|c| match &row[c] {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        assert!(!read.is_empty(), "{list:?}");
        assert_eq!(read, expected, "{list:?}");
    }
    let journal_csv = store.ok(&["journal", "--format", "csv"]);
    let postings: usize =
        json(&["journal"]).as_array().expect("entries").iter().map(|e| e["postings"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(csv::Reader::from_reader(journal_csv.as_bytes()).records().count(), postings, "{journal_csv}");
}

/// A problem every record of a batch has is listed a few times and counted, not repeated
/// thousands of times; the closing says what was not stored.
#[test]
fn a_problem_of_every_record_is_listed_once_and_counted() {
    let store = TestStore::sqlite();
    store.register();
    let path = store.path("stranger.jsonl");
    store.ok(&["gen", "usage", "--records", "3000", "--hosts", "stranger", "--dup-rate", "0", "--out", &path]);
    let out = store.run(&["ingest", &path, "--batch-size", "1000"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let problem = "`stranger`, the host of the record, is not a registered party; register it first";
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 6, "{err}");
    for (i, line) in lines[..3].iter().enumerate() {
        assert_eq!(*line, format!("{path}:{}:1: record stranger-2026-10-42-{i:010}: {problem}", i + 1));
    }
    assert_eq!(lines[3], format!("{path}:4-1000: 997 more records with the same problem: {problem}"));
    assert!(lines[4].starts_with("ingested 1 batch: accepted 0,"), "{err}");
    assert!(lines[5].contains("nothing of it, and nothing of the input after it, was stored"), "{err}");
}

/// Ctrl-C during an ingest: it stops reading, what it handed to the store is stored, it says
/// so and how to resume (exit 130), and the same command run again stores exactly the rest.
#[test]
fn ctrl_c_during_ingest_says_what_is_stored_and_a_rerun_resumes() {
    use std::io::BufRead as _;
    let store = TestStore::sqlite();
    store.register();
    let total = 100_000u64;
    let file = usage(&store, "big.jsonl", total, 5);
    let mut child =
        store.command(&["ingest", &file, "--batch-size", "500"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The first acknowledgement: the second pass is storing; then Ctrl-C.
    let first = lines.next().expect("a line").expect("text");
    assert!(first.starts_with("batch 1 committed"), "{first}");
    let pid = child.id().to_string();
    assert!(Process::new("kill").args(["-INT", &pid]).status().expect("kill runs").success());
    let acknowledged = 1 + lines.map_while(Result::ok).filter(|l| l.starts_with("batch ")).count();
    let out = child.wait_with_output().expect("it ends");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains(
            "interrupted: the batches counted above are stored, the rest of the input was not read; run the same command again to resume"
        ),
        "{err}"
    );
    let summary = err.lines().next().expect("the summary");
    let accepted: u64 = summary.split("accepted ").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).expect("a count");
    assert!(summary.starts_with(&format!("ingested {acknowledged} batches: accepted {accepted},")), "{summary}");
    assert!(accepted < total, "stopped before the end: {summary}");
    // Run again: the rest is stored, what was stored comes back as duplicates.
    let again = store.ok(&["ingest", &file]);
    assert!(again.contains(&format!("accepted {}, duplicates {accepted},", total - accepted)), "{again}");
}

/// `fresh` makes a store of the kind under test: the uninterrupted run that times the kills runs
/// on one of the same kind, so the kills fall within that store's own timing.
fn crash_safety(fresh: impl Fn() -> TestStore) {
    let store = &fresh();
    store.register();
    let total = 60_000u64;
    let batch = 2_000u64;
    let file = usage(store, "big.jsonl", total, 3);
    let all_ids: Vec<String> =
        std::fs::read_to_string(&file).expect("usage").lines().map(|l| l.split('"').nth(3).unwrap_or_default().to_owned()).collect();
    // One uninterrupted run, timed to its first commit and to its end: the kills below fall
    // anywhere within that time (every other one between the first commit and the end), so they
    // hit the validation pass, the commits and everything between, however fast this machine is
    // and however short the storing part of a run has become.
    let (sequential, first_commit, duration) = {
        use std::io::BufRead as _;
        let fresh = fresh();
        fresh.register();
        let started = std::time::Instant::now();
        let mut child =
            fresh.command(&["ingest", &file, "--batch-size", &batch.to_string()]).stdout(Stdio::piped()).spawn().expect("spawn");
        let lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut first_commit = None;
        for line in lines {
            if line.expect("a line").starts_with("batch ") && first_commit.is_none() {
                first_commit = Some(started.elapsed());
            }
        }
        assert!(child.wait().expect("wait").success(), "the uninterrupted ingest failed");
        let duration = started.elapsed();
        (close_json(&fresh, "2026-10"), first_commit.expect("a batch was committed"), duration)
    };
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let span = millis(duration).max(50);
    let storing_from = millis(first_commit).min(span - 10);
    // A seeded sequence of kill delays; printed so a failure can be replayed.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut killed_while_storing = 0u32;
    for round in 0..20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = Duration::from_millis(if round % 2 == 0 { 10 + state % span } else { storing_from + state % (span - storing_from) });
        let mut child = store
            .command(&["ingest", &file, "--batch-size", &batch.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().expect("wait");
        // Every batch acknowledged before the kill is stored; nothing is stored but whole
        // batches, which are a prefix of the file (each run starts from its beginning).
        let stored = stored_ids(store);
        let count = u64::try_from(stored.len()).unwrap_or(0);
        assert!(
            count % batch == 0 || count == total,
            "round {round} (kill after {delay:?}): {count} records stored, not whole batches of {batch}"
        );
        let mut prefix: Vec<String> = all_ids[..stored.len()].to_vec();
        prefix.sort();
        assert_eq!(stored, prefix, "round {round}: the stored records are not the file's first {count}");
        let stdout = text(&out.stdout);
        let acked_new = acknowledged(&stdout);
        assert!(acked_new <= count, "round {round}: {acked_new} records acknowledged as new but only {count} stored");
        // Killed after acknowledging a batch (new records or resends: once a run has stored the
        // whole file, the later ones store nothing new but commit batch after batch all the same).
        killed_while_storing += u32::from(!out.status.success() && stdout.lines().any(|l| l.starts_with("batch ")));
    }
    assert!(killed_while_storing > 0, "no kill fell between the first commit and the last (kills spread over {span} ms)");
    // A run to the end completes to exactly what one uninterrupted run gives, byte for byte: a
    // statement depends on the distinct records only, never on the resends the kills caused
    // (SPEC §6).
    store.ok(&["ingest", &file, "--batch-size", &batch.to_string()]);
    assert_eq!(stored_ids(store).len(), all_ids.len());
    assert!(close_json(store, "2026-10") == sequential, "the interrupted runs settle differently from one uninterrupted run");
}

/// How one delivery of the file goes in [`any_deliveries_then_a_close_give_the_bytes_of_settle`].
#[derive(Clone, Debug)]
enum Delivery {
    /// Lines `from..to` of the file (a retry, or a part overlapping others), in batches of `batch`.
    Part { from: usize, to: usize, batch: usize },
    /// The whole file in batches of `batch`, the ingest killed with SIGKILL after `after_ms`.
    Killed { batch: usize, after_ms: u64 },
}

const DELIVERED_LINES: usize = 12_000;

fn delivery() -> impl Strategy<Value = Delivery> {
    prop_oneof![
        (0..DELIVERED_LINES, 0..DELIVERED_LINES, 1usize..3_000).prop_map(|(a, b, batch)| Delivery::Part {
            from: a.min(b),
            to: a.max(b) + 1,
            batch
        }),
        (1usize..1_000, 0u64..800).prop_map(|(batch, after_ms)| Delivery::Killed { batch, after_ms }),
    ]
}

/// The file the deliveries deliver: h1's records (the agreement's host) and h2's, 2% of lines
/// resending an earlier record.
fn delivered_file() -> &'static (tempfile::TempDir, String) {
    static FILE: std::sync::OnceLock<(tempfile::TempDir, String)> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("usage.jsonl").display().to_string();
        let lines = DELIVERED_LINES.to_string();
        let generated = TestStore::sqlite().run(&[
            "gen",
            "usage",
            "--records",
            &lines,
            "--seed",
            "11",
            "--hosts",
            "h1,h2",
            "--dup-rate",
            "0.02",
            "--out",
            &path,
        ]);
        assert!(generated.status.success(), "{}", text(&generated.stderr));
        (dir, path)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5, failure_persistence: None, ..ProptestConfig::default() })]

    /// SPEC §6: whatever way a file reaches the store — retried parts, overlapping batches, runs
    /// killed with SIGKILL mid-ingest and run again — closing the month gives exactly the bytes
    /// of offline `settle` on the file, and the bundle's records settle to them too.
    #[test]
    fn any_deliveries_then_a_close_give_the_bytes_of_settle(deliveries in prop::collection::vec(delivery(), 1..5)) {
        let (_dir, file) = delivered_file();
        let lines: Vec<String> = std::fs::read_to_string(file).expect("usage").lines().map(str::to_owned).collect();
        let store = TestStore::sqlite();
        store.register();
        for (n, delivery) in deliveries.iter().enumerate() {
            match *delivery {
                Delivery::Part { from, to, batch } => {
                    let part = store.path(&format!("part-{n}.jsonl"));
                    std::fs::write(&part, lines[from..to.min(lines.len())].join("\n") + "\n").expect("write");
                    store.ok(&["ingest", &part, "--batch-size", &batch.to_string()]);
                }
                Delivery::Killed { batch, after_ms } => {
                    let mut child = store
                        .command(&["ingest", file, "--batch-size", &batch.to_string()])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("spawn");
                    std::thread::sleep(Duration::from_millis(after_ms));
                    let _ = child.kill(); // SIGKILL
                    child.wait().expect("wait");
                }
            }
        }
        // The host's last delivery: the whole file again, to the end.
        store.ok(&["ingest", file, "--batch-size", "5000"]);
        let agreement = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/agreement-h1.toml").display().to_string();
        let offline = settle_json(&store, &agreement, file, None);
        let closed = close_json(&store, "2026-10");
        prop_assert_eq!(&closed, &offline, "the store's statement is not offline settle's");
        let bundle = store.path("bundle");
        store.ok(&["statement", "export", "--agreement", "bench-h1", "--period", "2026-10", "--bundle", &bundle]);
        let records = Path::new(&bundle).join("records.jsonl").display().to_string();
        let from_bundle = settle_json(&store, &agreement, &records, None);
        prop_assert_eq!(&from_bundle, &offline, "the bundle's records settle differently");
    }
}

#[test]
fn acknowledged_batches_survive_sigkill_sqlite() {
    crash_safety(TestStore::sqlite);
}

#[test]
fn acknowledged_batches_survive_sigkill_postgres() {
    crash_safety(|| TestStore::postgres("crash"));
}

fn concurrent_ingesters(store: &TestStore) {
    store.register();
    let file = usage(store, "all.jsonl", 8_000, 4);
    let lines: Vec<String> = std::fs::read_to_string(&file).expect("usage").lines().map(str::to_owned).collect();
    // Four overlapping quarters: each ingester also sends half of its neighbour's records.
    let quarter = lines.len() / 4;
    let parts: Vec<String> = (0..4)
        .map(|i| {
            let end = (quarter * (i + 1) + quarter / 2).min(lines.len());
            let path = store.path(&format!("part{i}.jsonl"));
            std::fs::write(&path, lines[quarter * i..end].join("\n") + "\n").expect("write");
            path
        })
        .collect();
    let children: Vec<_> = parts
        .iter()
        .map(|p| store.command(&["ingest", p, "--batch-size", "500"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn"))
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "an ingester failed: {}", text(&out.stderr));
    }
    // The same four files one after the other: the same records, the same resends.
    let sequential = {
        let fresh = TestStore::sqlite();
        fresh.register();
        for part in &parts {
            fresh.ok(&["ingest", part]);
        }
        close_json(&fresh, "2026-10")
    };
    assert!(close_json(store, "2026-10") == sequential, "the concurrent run settles differently from the sequential one");
}

#[test]
fn four_concurrent_ingesters_end_as_one_sequential_run_sqlite() {
    concurrent_ingesters(&TestStore::sqlite());
}

#[test]
fn four_concurrent_ingesters_end_as_one_sequential_run_postgres() {
    concurrent_ingesters(&TestStore::postgres("concurrent"));
}

#[test]
fn each_bad_input_gets_its_own_clear_error_and_stores_nothing() {
    let store = TestStore::sqlite();
    store.register();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let huge = store.path("ten_mb_line.jsonl");
    let good = std::fs::read_to_string(corpus.join("prompt_field.jsonl")).expect("corpus").lines().next().unwrap_or_default().to_owned();
    let ten_mb =
        good.replace("\"currency\":\"USD\"", &format!("\"currency\":\"USD\",\"notes\":\"{}\"", "x".repeat(10 << 20))).replace("c-0", "c-1");
    std::fs::write(&huge, format!("{good}\n{ten_mb}\n")).expect("write");
    let cases: [(String, &str); 11] = [
        (
            corpus.join("truncated.jsonl").display().to_string(),
            ":2:81: not valid JSON: the input ends where `:` after the field name should be (a truncated line?)",
        ),
        (
            corpus.join("wrong_type.jsonl").display().to_string(),
            ":2:116: record c-1: field `requests` is a string; it must be an integer from 0 to 2^63 - 1",
        ),
        (
            corpus.join("huge_exponent.jsonl").display().to_string(),
            ":2:169: record c-1: field `revenue`: `1e400` has more than 28 significant digits",
        ),
        (
            corpus.join("negative_tokens.jsonl").display().to_string(),
            ":2:134: record c-1: field `input_tokens` is -1; it must be an integer from 0 to 2^63 - 1",
        ),
        (
            corpus.join("two_pow_63.jsonl").display().to_string(),
            ":2:155: record c-1: field `output_tokens` is 9223372036854775808; it must be an integer from 0 to 2^63 - 1",
        ),
        (corpus.join("invalid_utf8.jsonl").display().to_string(), ":2:56: not valid JSON: invalid UTF-8: a record must be UTF-8 text"),
        (
            corpus.join("prompt_field.jsonl").display().to_string(),
            ":2:193: record c-1: unknown field `prompt`: usage records carry counts and money only",
        ),
        (huge.clone(), ":2:193: record c-1: unknown field `notes`: usage records carry counts and money only"),
        (corpus.join("currency_mismatch.jsonl").display().to_string(), ":2:1: record c-1: "),
        (corpus.join("unknown_host.jsonl").display().to_string(), ":2:1: record c-1: "),
        (corpus.join("unknown_model.jsonl").display().to_string(), ":2:1: record c-1: "),
    ];
    for (file, expected) in &cases {
        let out = store.run(&["ingest", file]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains(&format!("{file}{expected}")), "{file}: expected `{expected}` in:\n{}", &err[..err.len().min(2000)]);
        assert!(stored_ids(&store).is_empty(), "{file}: something was stored");
    }
    // What the store refuses says which field and why, naming the value it found.
    let store_refusals = [("currency_mismatch.jsonl", "EUR"), ("unknown_host.jsonl", "h9"), ("unknown_model.jsonl", "m-999b")];
    for (file, named) in store_refusals {
        let err = text(&store.run(&["ingest", &corpus.join(file).display().to_string()]).stderr);
        assert!(
            err.contains(named) && err.contains("refused whole: nothing of it, and nothing of the input after it, was stored"),
            "{file}: {err}"
        );
    }
}

#[test]
fn partial_mode_stores_the_good_records_and_reports_each_bad_one() {
    let store = TestStore::sqlite();
    store.register();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mixed = store.path("mixed.jsonl");
    let lines = [
        std::fs::read_to_string(corpus.join("negative_tokens.jsonl")).expect("corpus"),
        std::fs::read_to_string(corpus.join("unknown_host.jsonl"))
            .expect("corpus")
            .lines()
            .nth(1)
            .unwrap_or_default()
            .replace("c-1", "c-2"),
    ];
    std::fs::write(&mixed, lines.join("") + "\n").expect("write");
    let out = store.run(&["ingest", "--partial", &mixed]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(":2:134: record c-1: field `input_tokens` is -1"), "{err}");
    assert!(err.contains(":3:1: record c-2: `h9`, the host of the record, is not a registered party"), "{err}");
    assert!(err.contains("1 invalid record; the valid records were stored"), "{err}");
    assert_eq!(stored_ids(&store), vec!["c-0".to_owned()]);
}

#[test]
fn standard_input_is_ingested_and_named_in_problems() {
    let store = TestStore::sqlite();
    store.register();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let bad = std::fs::read(corpus.join("prompt_field.jsonl")).expect("corpus");
    let out = assert_cmd::Command::from_std(store.command(&["ingest", "-"])).write_stdin(bad.clone()).output().expect("runs");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("<standard input>:2:193: record c-1: unknown field `prompt`"), "{err}");
    assert!(stored_ids(&store).is_empty());
    let good = bad.split(|b| *b == b'\n').next().unwrap_or_default().to_vec();
    let out = assert_cmd::Command::from_std(store.command(&["ingest", "-"])).write_stdin(good).output().expect("runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(stored_ids(&store), vec!["c-0".to_owned()]);
}

// ---------------------------------------------------------------------------------------------
// Verifiable statements: keys, signed batches, receipts, bundles and `verify`

const AGREEMENT_ID: &str = "meridian-northwind";

/// The worked example with northwind's records sent signed by northwind's registered key and
/// their receipts kept, the month closed and countersigned, and its bundle exported to `bundle`.
fn signed_example(store: &TestStore) -> PathBuf {
    store.register_meridian();
    store.ok(&["agreement", "add", &examples().join("agreement.toml").display().to_string()]);
    let key = store.path("northwind.key");
    let public = store.ok(&["keys", "generate", "--name", "northwind", "--out", &key]);
    assert!(public.starts_with("northwind+") && !public.contains("PRIVATE"), "only the public key is printed: {public}");
    store.ok(&["party", "key", "--party", "northwind", &format!("{key}.pub")]);
    let usage = std::fs::read_to_string(examples().join("usage.jsonl")).expect("example usage");
    let (northwind, southwind): (Vec<&str>, Vec<&str>) = usage.lines().partition(|l| l.contains("\"northwind\""));
    std::fs::write(store.path("northwind.jsonl"), northwind.join("\n") + "\n").expect("write");
    std::fs::write(store.path("southwind.jsonl"), southwind.join("\n") + "\n").expect("write");
    let receipts = store.path("receipts.jsonl");
    let ack = store.ok(&["ingest", &store.path("northwind.jsonl"), "--sign", &key, "--receipts", &receipts]);
    assert!(ack.contains("accepted 7, duplicates 1") && ack.contains("log leaf"), "{ack}");
    store.ok(&["ingest", &store.path("southwind.jsonl"), "--receipts", &receipts]);
    store.ok(&["contribution", "add", "--agreement", AGREEMENT_ID, &examples().join("contributions.jsonl").display().to_string()]);
    store.ok(&["close", "--agreement", AGREEMENT_ID, "--period", "2026-10"]);
    store.ok(&["statement", "sign", "--agreement", AGREEMENT_ID, "--period", "2026-10", "--key", &key]);
    let bundle = store.dir.path().join("bundle");
    store.ok(&["statement", "export", "--agreement", AGREEMENT_ID, "--period", "2026-10", "--bundle", &bundle.display().to_string()]);
    bundle
}

/// Runs `revshare verify` (no store involved) and returns (success, stdout + stderr).
fn verify(bundle: &Path, extra: &[&str]) -> (bool, String) {
    let out = Process::cargo_bin("revshare")
        .expect("the revshare binary")
        .env_remove("REVSHARE_DATA")
        .env_remove("REVSHARE_DATABASE_URL")
        .arg("verify")
        .arg(bundle)
        .args(extra)
        .output()
        .expect("revshare verify runs");
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("list") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// The deployment's public key file `init` wrote: what a verifier is handed.
fn deployment_public(store: &TestStore) -> String {
    store.dir.path().join("data/deployment.key.pub").display().to_string()
}

fn bundle_verifies(store: &TestStore) {
    let bundle = signed_example(store);
    // Checked against its own keys only, a bundle is not anchored: not a pass.
    let (ok, output) = verify(&bundle, &[]);
    assert!(!ok && output.contains("not anchored") && !output.contains("mismatch"), "{output}");
    let (ok, output) = verify(&bundle, &["--trust", &deployment_public(store)]);
    assert!(ok, "{output}");
    assert!(output.contains("anchored to") && output.contains("(named with --trust)"), "{output}");
    assert!(output.contains("recomputes byte for byte from 6 records in 1 logged batches (1 signed by the host)"), "{output}");
    assert!(output.contains("countersigned by the host"), "{output}");
    // The statement in the bundle is the stored one.
    let stored = store.ok(&["statement", "show", "--agreement", AGREEMENT_ID, "--period", "2026-10", "--format", "json"]);
    let statement = std::fs::read_to_string(bundle.join("statement.json")).expect("read");
    assert_eq!(statement.trim(), stored.trim());
    // Its records are usage lines: offline `settle` on them (with the month's contributions)
    // gives the statement's bytes.
    let at = |name: &str| bundle.join(name).display().to_string();
    let contributions = examples().join("contributions.jsonl").display().to_string();
    let settled = settle_json(store, &at("agreement.toml"), &at("records.jsonl"), Some(&contributions));
    assert_eq!(settled.trim(), statement.trim());
}

#[test]
fn a_bundle_verifies_offline_sqlite() {
    bundle_verifies(&TestStore::sqlite());
}

#[test]
fn a_bundle_verifies_offline_postgres() {
    bundle_verifies(&TestStore::postgres("bundle"));
}

/// SPEC §11 end to end: a host registers a fine-tune of a licensed model; its usage closes as its
/// own line under the agreement covering the base, at the agreement's rates for derivatives; the
/// bundle carries the lineage, verifies, and settles offline to the same bytes; another host can
/// neither report usage of it nor see it in the list of models.
#[test]
fn a_hosts_fine_tune_settles_under_the_base_models_agreement() {
    let store = TestStore::sqlite();
    store.register_meridian();
    let registered = store.ok(&["model", "add", "m-70b-nw-support", "--derived-from", "m-70b", "--host", "northwind"]);
    assert_eq!(registered.trim(), "model m-70b-nw-support of meridian registered, registered by northwind");
    let refused = store.run(&["model", "add", "sw-tune", "--derived-from", "m-70b-nw-support", "--host", "southwind"]);
    assert!(
        !refused.status.success()
            && text(&refused.stderr).contains("`m-70b-nw-support`, the model sw-tune derives from, is not a registered model"),
        "{}",
        text(&refused.stderr)
    );
    let example = std::fs::read_to_string(examples().join("agreement.toml")).expect("the example agreement");
    let tail = "points = { maintenance = 1, update = 2, improvement = 5 }\n";
    let terms = example.replacen(tail, &format!("{tail}\n[derivatives]\nrate_factor = \"0.5\"\nname_prefix = \"m-70b\"\n"), 1);
    std::fs::write(store.path("agreement.toml"), terms).expect("write");
    store.ok(&["agreement", "add", &store.path("agreement.toml")]);
    let usage = concat!(
        r#"{"id":"f-1","host":"northwind","model":"m-70b","use_case":"search","region":"us","time":"2026-10-03T00:00:00Z","requests":1,"input_tokens":100,"output_tokens":100,"revenue":"1000.00","currency":"USD"}"#,
        "\n",
        r#"{"id":"f-2","host":"northwind","model":"m-70b-nw-support","use_case":"search","region":"us","time":"2026-10-04T00:00:00Z","requests":1,"input_tokens":100,"output_tokens":100,"revenue":"1000.00","currency":"USD"}"#,
        "\n",
    );
    std::fs::write(store.path("usage.jsonl"), usage).expect("write");
    store.ok(&["ingest", &store.path("usage.jsonl")]);
    let theirs = r#"{"id":"s-1","host":"southwind","model":"m-70b-nw-support","use_case":"search","region":"us","time":"2026-10-04T00:00:00Z","requests":1,"input_tokens":1,"output_tokens":1,"revenue":"1.00","currency":"USD"}"#;
    std::fs::write(store.path("southwind.jsonl"), format!("{theirs}\n")).expect("write");
    let refused = store.run(&["ingest", &store.path("southwind.jsonl")]);
    assert!(
        !refused.status.success() && text(&refused.stderr).contains("neither a registered model nor an alias of host `southwind`"),
        "{}",
        text(&refused.stderr)
    );

    store.ok(&["close", "--agreement", AGREEMENT_ID, "--period", "2026-10"]);
    let statement: serde_json::Value =
        serde_json::from_str(&store.ok(&["statement", "show", "--agreement", AGREEMENT_ID, "--period", "2026-10", "--format", "json"]))
            .expect("JSON");
    let lines: Vec<(&str, Option<&str>, &str)> = statement["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| (l["model"].as_str().expect("model"), l["derived_from"].as_str(), l["amount"].as_str().expect("amount")))
        .collect();
    assert_eq!(lines, [("m-70b", None, "220.00"), ("m-70b-nw-support", Some("m-70b"), "110.00")], "half the base rate");
    let table = store.ok(&["statement", "show", "--agreement", AGREEMENT_ID, "--period", "2026-10"]);
    assert!(table.contains("m-70b-nw-support (of m-70b)"), "the table names the base:\n{table}");

    let bundle = store.dir.path().join("bundle");
    store.ok(&["statement", "export", "--agreement", AGREEMENT_ID, "--period", "2026-10", "--bundle", &bundle.display().to_string()]);
    let lineage: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("models.json")).expect("models.json")).expect("JSON");
    assert_eq!(lineage, serde_json::json!([{"id": "m-70b-nw-support", "derived_from": "m-70b"}]));
    let (ok, output) = verify(&bundle, &["--trust", &deployment_public(&store)]);
    assert!(ok && output.contains("recomputes byte for byte"), "{output}");
    let at = |name: &str| bundle.join(name).display().to_string();
    let offline = store.ok(&[
        "settle",
        "--agreement",
        &at("agreement.toml"),
        "--usage",
        &at("records.jsonl"),
        "--models",
        &at("models.json"),
        "--period",
        "2026-10",
        "--format",
        "json",
    ]);
    assert_eq!(offline.trim(), std::fs::read_to_string(bundle.join("statement.json")).expect("read").trim());
    // Without the lineage the fine-tune is a model the agreement does not cover.
    let unaware = settle_json(&store, &at("agreement.toml"), &at("records.jsonl"), None);
    assert!(unaware.contains("unlicensed_model"), "{unaware}");
    // A lineage the statement was not priced by is found out.
    std::fs::write(bundle.join("models.json"), "[]").expect("write");
    let (ok, output) = verify(&bundle, &["--trust", &deployment_public(&store)]);
    assert!(!ok && output.contains("(m-70b-nw-support search us) derived_from"), "{output}");
}

#[test]
fn every_tampered_byte_of_a_bundle_fails_verification_and_is_named() {
    let store = TestStore::sqlite();
    let bundle = signed_example(&store);
    let batch = std::fs::read_dir(bundle.join("batches")).expect("batches").next().expect("one batch").expect("entry").path();
    let batch = format!("batches/{}", batch.file_name().expect("name").to_string_lossy());
    // Each file, and what a finding about it is called.
    let files: [(&str, &[&str]); 9] = [
        ("statement.json", &["statement"]),
        ("agreement.toml", &["agreement"]),
        ("records.jsonl", &["records.jsonl"]),
        ("aliases.json", &["aliases.json"]),
        ("log.json", &["log.json", "checkpoint"]),
        ("keys.json", &["keys.json", "key"]),
        ("signatures.json", &["signatures.json", "signature"]),
        (batch.as_str(), &["batches/", "batch"]),
        ("records.jsonl", &["records.jsonl"]),
    ];
    let mut runs = 0;
    for (name, called) in files {
        let original = std::fs::read(bundle.join(name)).expect("read");
        // About 24 positions spread over the file, first and last bytes included.
        let step = (original.len() / 23).max(1);
        let positions: Vec<usize> = (0..original.len()).step_by(step).chain([original.len() - 1]).collect();
        for at in positions {
            let tampered_dir = store.dir.path().join(format!("tampered-{runs}"));
            copy_dir(&bundle, &tampered_dir);
            let mut bytes = original.clone();
            bytes[at] ^= 0x01;
            std::fs::write(tampered_dir.join(name), &bytes).expect("write");
            let (ok, output) = verify(&tampered_dir, &["--trust", &deployment_public(&store)]);
            assert!(!ok, "changing byte {at} of {name} went unnoticed:\n{output}");
            assert!(
                called.iter().any(|c| output.contains(c)),
                "changing byte {at} of {name} is reported without naming it ({called:?}):\n{output}"
            );
            std::fs::remove_dir_all(&tampered_dir).expect("clean up");
            runs += 1;
        }
    }
    assert!(runs > 150, "{runs} tampered bundles checked");
}

#[test]
fn receipts_prove_what_each_host_reported() {
    use revshare_core::merkle::{leaf_hash, verify_inclusion};
    use revshare_core::note::{Checkpoint, VerifierKey, open_note};
    use revshare_core::transparency::{Salt, Signed, commitment, from_b64, hash_from_b64, receipt_message};
    let store = TestStore::sqlite();
    let bundle = signed_example(&store);
    let keys: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("keys.json")).expect("keys")).expect("JSON");
    let deployment = VerifierKey::parse(keys["deployment"][0].as_str().expect("a key")).expect("the deployment key");
    let receipts = std::fs::read_to_string(store.path("receipts.jsonl")).expect("receipts");
    let files = ["northwind.jsonl", "southwind.jsonl"];
    assert_eq!(receipts.lines().count(), files.len(), "one receipt per committed batch");
    for (line, file) in receipts.lines().zip(files) {
        let mut receipt: serde_json::Value = serde_json::from_str(line).expect("a JSON receipt");
        // The receipt is signed by the deployment over its canonical form without the signature.
        let signed = Signed::from_json(&receipt["signed"]).expect("signed");
        receipt.as_object_mut().expect("an object").remove("signed");
        let unsigned = revshare_core::canonical::to_canonical(&receipt).expect("canonical");
        deployment.verify(&receipt_message(&unsigned), &signed.signature).expect("the receipt's signature verifies");
        // Its checkpoint is signed, and its leaf is in the tree the checkpoint commits to.
        let note = open_note(receipt["checkpoint"].as_str().expect("a note"), std::slice::from_ref(&deployment)).expect("signed note");
        let checkpoint = Checkpoint::parse(&note.text).expect("a checkpoint");
        let event = receipt["leaf"]["event"].as_str().expect("the leaf's event");
        let salt: Salt = from_b64(receipt["leaf"]["salt"].as_str().expect("its salt")).expect("b64").try_into().expect("32 bytes");
        let proof: Vec<_> = receipt["inclusion_proof"]
            .as_array()
            .expect("proof")
            .iter()
            .map(|h| hash_from_b64(h.as_str().expect("b64")).expect("hash"))
            .collect();
        let index = receipt["leaf"]["index"].as_u64().expect("index");
        verify_inclusion(&leaf_hash(&commitment(&salt, event.as_bytes())), index, checkpoint.size, &proof, &checkpoint.root)
            .expect("the inclusion proof verifies");
        // And the leaf names the digest of exactly what the host sent, under the batch's
        // record-salt key, which the receipt gives the host.
        let sent = std::fs::read_to_string(store.path(file)).expect("sent");
        let records: Vec<_> = sent.lines().map(|l| revshare_core::usage::parse_json_line(l.as_bytes()).expect("a record")).collect();
        let key = from_b64(receipt["batch"]["record_key"].as_str().expect("the record key")).expect("b64");
        let digest = revshare_store::batch_digest(&records, &key.try_into().expect("16 bytes"));
        assert_eq!(receipt["batch"]["digest"].as_str(), Some(digest.as_str()));
        assert!(event.contains(&digest), "{event}");
    }
}

#[test]
fn a_batch_signed_with_an_unregistered_key_is_refused_and_stores_nothing() {
    let store = TestStore::sqlite();
    store.register_worked_example();
    let before = store.ok(&["log", "checkpoint"]);
    let key = store.path("stranger.key");
    store.ok(&["keys", "generate", "--name", "northwind", "--out", &key]);
    let usage = std::fs::read_to_string(examples().join("usage.jsonl")).expect("usage");
    let mut fresh: Vec<String> =
        usage.lines().filter(|l| l.contains("\"northwind\"")).map(|l| l.replace("\"id\":\"e", "\"id\":\"x")).collect();
    fresh.push(String::new());
    std::fs::write(store.path("fresh.jsonl"), fresh.join("\n")).expect("write");
    let out = store.run(&["ingest", &store.path("fresh.jsonl"), "--sign", &key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not registered for northwind"), "{}", text(&out.stderr));
    let after = store.ok(&["log", "checkpoint"]);
    assert_eq!(before.lines().nth(1), after.lines().nth(1), "the log did not grow");
    use revshare_store::Store;
    let mut db = revshare_store::SqliteStore::open(store.dir.path().join("data/revshare.db")).expect("open");
    let id = revshare_core::ids::AgreementId::parse(AGREEMENT_ID).expect("id");
    let records = db.records(&id, revshare_core::time::Period::parse("2026-10").expect("period")).expect("records");
    assert!(!records.is_empty() && !records.iter().any(|r| r.id.starts_with('x')), "no record of the refused batch was stored");
}

#[test]
fn keys_are_private_and_rotation_keeps_old_statements_verifiable() {
    use std::os::unix::fs::PermissionsExt as _;
    let store = TestStore::sqlite();
    let bundle = signed_example(&store);
    for key in [store.dir.path().join("data/deployment.key"), store.dir.path().join("northwind.key")] {
        let mode = std::fs::metadata(&key).expect("key file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is readable by its owner only", key.display());
    }
    let before = std::fs::read_to_string(store.dir.path().join("data/deployment.key")).expect("key");
    let rotated = store.ok(&["keys", "rotate"]);
    assert!(rotated.contains("replaces"), "{rotated}");
    assert_ne!(std::fs::read_to_string(store.dir.path().join("data/deployment.key")).expect("key"), before);
    // A bundle exported after the rotation carries both keys and still verifies.
    let again = store.dir.path().join("bundle-after-rotation");
    store.ok(&["statement", "export", "--agreement", AGREEMENT_ID, "--period", "2026-10", "--bundle", &again.display().to_string()]);
    // Trust follows rotations forward: the new key alone does not vouch for the statement the
    // old key signed before the rotation.
    let (ok, output) = verify(&again, &["--trust", &deployment_public(&store)]);
    assert!(!ok && output.contains("signatures.json: expected a valid signature of the statement by a trusted deployment key"), "{output}");
    let keys: serde_json::Value = serde_json::from_slice(&std::fs::read(again.join("keys.json")).expect("keys")).expect("JSON");
    assert_eq!(keys["deployment"].as_array().map(Vec::len), Some(2));
    // Trusting the old key: the new checkpoint's key is reached by the rotation it signed.
    let old_public = store.path("old.pub");
    let old_key = revshare_core::note::SignerKey::parse(before.trim()).expect("the old key");
    std::fs::write(&old_public, old_key.verifier().to_text()).expect("write");
    let (ok, output) = verify(&again, &["--trust", &old_public]);
    assert!(ok && output.contains("rotated to at leaf"), "{output}");
    let (ok, output) = verify(&bundle, &["--trust", &old_public]);
    assert!(ok, "the bundle from before the rotation verifies with the old key: {output}");
}

#[test]
fn a_log_rewritten_behind_a_checkpoint_fails_the_consistency_check() {
    let store = TestStore::sqlite();
    let bundle = signed_example(&store);
    // A checkpoint the host kept: the one in northwind's receipt (the first line).
    let receipts = std::fs::read_to_string(store.path("receipts.jsonl")).expect("receipts");
    let last: serde_json::Value = serde_json::from_str(receipts.lines().next().expect("a receipt")).expect("JSON");
    let seen = store.path("seen.checkpoint");
    std::fs::write(&seen, last["checkpoint"].as_str().expect("note")).expect("write");
    let (ok, output) = verify(&bundle, &["--since", &seen]);
    assert!(ok, "the honest log extends the checkpoint: {output}");

    // The same deployment key over a different history: the same checkpoint sizes, other roots.
    let other = TestStore::sqlite();
    let key = store.dir.path().join("data/deployment.key").display().to_string();
    let rewritten = {
        let run = |args: &[&str]| {
            let mut all = vec!["--signing-key", key.as_str()];
            all.extend_from_slice(args);
            other.ok(&all)
        };
        run(&["init"]);
        run(&["party", "add", "meridian", "--name", "Meridian", "--role", "licensor"]);
        run(&["party", "add", "northwind", "--name", "northwind", "--role", "host"]);
        run(&["party", "add", "southwind", "--name", "southwind", "--role", "host"]);
        for model in ["m-8b", "m-70b"] {
            run(&["model", "add", model, "--owner", "meridian"]);
        }
        run(&["agreement", "add", &examples().join("agreement.toml").display().to_string()]);
        let usage = std::fs::read_to_string(examples().join("usage.jsonl")).expect("usage");
        let fewer: Vec<&str> = usage.lines().filter(|l| !l.contains("\"e2\"")).collect();
        std::fs::write(other.path("fewer.jsonl"), fewer.join("\n") + "\n").expect("write");
        run(&["ingest", &other.path("fewer.jsonl")]);
        run(&["contribution", "add", "--agreement", AGREEMENT_ID, &examples().join("contributions.jsonl").display().to_string()]);
        run(&["close", "--agreement", AGREEMENT_ID, "--period", "2026-10"]);
        let dir = other.dir.path().join("bundle");
        run(&["statement", "export", "--agreement", AGREEMENT_ID, "--period", "2026-10", "--bundle", &dir.display().to_string()]);
        dir
    };
    let (ok, output) = verify(&rewritten, &[]);
    assert!(
        !ok && output.contains("not anchored") && !output.contains("mismatch"),
        "on its own the rewritten log is well formed: {output}"
    );
    let (ok, output) = verify(&rewritten, &["--since", &seen]);
    assert!(!ok && output.contains("since checkpoint"), "{output}");
}

#[test]
fn log_proofs_printed_by_the_cli_verify() {
    use revshare_core::merkle::{leaf_hash, verify_consistency, verify_inclusion};
    use revshare_core::transparency::{Salt, b64, commitment, from_b64, hash_from_b64};
    let store = TestStore::sqlite();
    store.register_worked_example();
    let hashes = |v: &serde_json::Value| -> Vec<[u8; 32]> {
        v.as_array().expect("hashes").iter().map(|h| hash_from_b64(h.as_str().expect("b64")).expect("hash")).collect()
    };
    let proved: serde_json::Value = serde_json::from_str(&store.ok(&["log", "prove", "--leaf", "1"])).expect("JSON");
    let root = hash_from_b64(proved["root"].as_str().expect("root")).expect("hash");
    let size = proved["tree_size"].as_u64().expect("size");
    let event = proved["event"].as_str().expect("the event");
    let salt: Salt = from_b64(proved["salt"].as_str().expect("salt")).expect("b64").try_into().expect("32 bytes");
    let data = commitment(&salt, event.as_bytes());
    assert_eq!(proved["commitment"].as_str(), Some(b64(&data).as_str()));
    verify_inclusion(&leaf_hash(&data), 1, size, &hashes(&proved["inclusion_proof"]), &root).expect("inclusion");
    let consistent: serde_json::Value = serde_json::from_str(&store.ok(&["log", "consistency", "--from", "2"])).expect("JSON");
    let (old, new) = (
        hash_from_b64(consistent["from_root"].as_str().expect("b64")).expect("hash"),
        hash_from_b64(consistent["to_root"].as_str().expect("b64")).expect("hash"),
    );
    let to = consistent["to"].as_u64().expect("to");
    verify_consistency(2, to, &old, &new, &hashes(&consistent["consistency_proof"])).expect("consistency");
    let beyond = store.run(&["log", "prove", "--leaf", "1000"]);
    assert_eq!(beyond.status.code(), Some(1));
    assert!(text(&beyond.stderr).contains("leaf 1000 is not in the tree of 3 leaves"), "{}", text(&beyond.stderr));
}

#[test]
fn disputes_are_answered_decided_and_carried_into_the_next_statement() {
    let store = TestStore::sqlite();
    store.register_worked_example_naming("judge");
    store.ok(&["party", "add", "audit", "--name", "Audit LLP", "--role", "auditor"]);
    store.ok(&["close", "--agreement", "meridian-northwind", "--period", "2026-10"]);
    let month = ["--agreement", "meridian-northwind", "--period", "2026-10"];
    let open = |by: &str, amount: &str, extra: &[&str]| {
        let mut args = vec!["dispute", "open"];
        args.extend(month);
        args.extend(["--by", by, "--amount", amount, "--reason", "the line counts a test tenant", "--evidence", "sha256:ab"]);
        args.extend(extra);
        store.run(&args)
    };
    // Refused: an auditor, an amount with too many places, a line that is not there.
    for (by, amount, extra, says) in [
        ("audit", "1.00", &[][..], "`audit` is an auditor; disputes are opened and answered by the licensor or the host"),
        ("northwind", "1.001", &[][..], "the amount `1.001` has 3 decimal places, but a USD amount has at most 2"),
        ("northwind", "1.00", &["--line", "40"][..], "has 6 lines, so there is no line 40; lines are numbered from 0"),
    ] {
        let out = open(by, amount, extra);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
    let opened = open("northwind", "10.00", &["--line", "0"]);
    assert!(
        opened.status.success()
            && text(&opened.stdout).contains("dispute 1 of statement meridian-northwind 2026-10 #1 line 0: open, claiming 10.00 USD"),
        "{}{}",
        text(&opened.stdout),
        text(&opened.stderr)
    );
    let countered =
        store.ok(&["dispute", "counter", "1", "--by", "meridian", "--amount", "4.00", "--reason", "only part of it was a test tenant"]);
    assert!(countered.starts_with("dispute 1 of statement meridian-northwind 2026-10 #1 line 0: countered\n"), "{countered}");
    let accepted = store.ok(&["dispute", "accept", "1", "--by", "northwind", "--reason", "fair"]);
    assert!(accepted.contains("adjustment of -4.00 USD in the next statement closed"), "{accepted}");
    assert!(open("meridian", "2.50", &[]).status.success());
    let wrong = store.run(&["dispute", "decide", "2", "--by", "judge", "--amount", "1.00", "--reason", "x"]);
    assert!(
        text(&wrong.stderr)
            .contains("dispute 2 is open, so it cannot be decided; an open dispute can be accepted or rejected or countered or escalated"),
        "{}",
        text(&wrong.stderr)
    );
    store.ok(&["dispute", "reject", "2", "--by", "northwind", "--reason", "the records are right"]);
    store.ok(&["dispute", "escalate", "2", "--by", "meridian", "--reason", "we disagree"]);
    store.ok(&[
        "dispute",
        "decide",
        "2",
        "--by",
        "judge",
        "--amount",
        "1.00",
        "--reason",
        "half-way, rounded down",
        "--evidence",
        "https://arb.example/d2",
    ]);
    // A third is decided by an arbiter the agreement does not name, once both sides named it.
    store.ok(&["party", "add", "sage", "--name", "Sage Arbitration", "--role", "arbiter"]);
    assert!(open("northwind", "3.00", &[]).status.success());
    store.ok(&["dispute", "reject", "3", "--by", "meridian", "--reason", "no"]);
    store.ok(&["dispute", "escalate", "3", "--by", "northwind", "--reason", "to sage", "--arbiter", "sage"]);
    let early = store.run(&["dispute", "decide", "3", "--by", "sage", "--amount", "1.00", "--reason", "x"]);
    assert!(
        text(&early.stderr).contains("one both sides accepted for the dispute, decides an escalated dispute (judge)"),
        "{}",
        text(&early.stderr)
    );
    let agreed = store.ok(&["dispute", "escalate", "3", "--by", "meridian", "--reason", "sage is fine", "--arbiter", "sage"]);
    assert!(agreed.contains("both sides accepted sage as its arbiter"), "{agreed}");
    store.ok(&["dispute", "decide", "3", "--by", "sage", "--amount", "2.00", "--reason", "mostly right"]);
    let shown = store.ok(&["dispute", "show", "3"]);
    assert!(shown.contains("meridian (licensor), naming sage"), "{shown}");
    let listed = store.ok(&["dispute", "list"]);
    assert!(listed.contains("accepted") && listed.contains("decided") && listed.contains("3 disputes"), "{listed}");
    // As CSV, a row a dispute: the states and amounts of the JSON list.
    let as_json: serde_json::Value = serde_json::from_str(&store.ok(&["dispute", "list", "--format", "json"])).expect("JSON");
    let csv = store.ok(&["dispute", "list", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().expect("a header").clone();
    let (state, adjustment) =
        (header.iter().position(|h| h == "state").expect("state"), header.iter().position(|h| h == "adjustment").expect("adjustment"));
    let rows: Vec<(String, String)> =
        reader.records().map(|r| r.expect("a row")).map(|r| (r[state].to_owned(), r[adjustment].to_owned())).collect();
    let expected: Vec<(String, String)> = as_json
        .as_array()
        .expect("an array")
        .iter()
        .map(|d| (d["state"].as_str().unwrap_or("").to_owned(), d["adjustment"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(rows, expected, "{csv}");
    assert_eq!(rows.len(), 3);
    // A dispute's history as CSV: a row a step, with its reason as written.
    let history = store.ok(&["dispute", "show", "1", "--format", "csv"]);
    let steps: Vec<csv::StringRecord> = csv::Reader::from_reader(history.as_bytes()).records().map(|r| r.expect("a step")).collect();
    assert_eq!(steps.iter().map(|s| s[1].to_owned()).collect::<Vec<_>>(), ["open", "countered", "accepted"], "{history}");
    assert_eq!(&steps[1][7], "only part of it was a test tenant");
    let shown: serde_json::Value = serde_json::from_str(&store.ok(&["dispute", "show", "2", "--format", "json"])).expect("JSON");
    let states: Vec<&str> = shown["history"].as_array().expect("history").iter().filter_map(|t| t["state"].as_str()).collect();
    assert_eq!(states, ["open", "rejected", "escalated", "decided"]);
    assert_eq!((shown["adjustment"].as_str(), shown["history"][3]["party"].as_str()), (Some("1.00"), Some("judge")));

    // October's bundle, whose checkpoint the host keeps.
    let october = store.path("october");
    store.ok(&["statement", "export", "--agreement", "meridian-northwind", "--period", "2026-10", "--bundle", &october]);
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&october).join("log.json")).expect("log.json")).expect("JSON");
    let kept = store.path("october.checkpoint");
    std::fs::write(&kept, log["checkpoint"].as_str().expect("a checkpoint")).expect("write");

    let november: serde_json::Value =
        serde_json::from_str(&store.ok(&["close", "--agreement", "meridian-northwind", "--period", "2026-11", "--format", "json"]))
            .expect("JSON");
    let carried: Vec<(&str, &str)> = november["adjustments"]
        .as_array()
        .expect("adjustments")
        .iter()
        .filter_map(|a| Some((a["reference"].as_str()?, a["amount"].as_str()?)))
        .collect();
    assert_eq!(carried, [("dispute:1", "-4.00"), ("dispute:2", "1.00"), ("dispute:3", "-2.00")]);
    assert_eq!(november["totals"]["adjustments"], "-5.00");
    let shown = store.ok(&["dispute", "show", "3"]);
    assert!(shown.contains("adjustment of -2.00 USD, carried by statement meridian-northwind 2026-11 #1 (adjustments[2])"), "{shown}");
    assert!(store.ok(&["dispute", "list"]).contains("2026-11 #1 [1]"), "the list says where each adjustment went");

    // November's bundle proves how each amount came about; without a dispute's logged steps it
    // does not verify, naming the adjustment.
    let dir = store.path("november");
    store.ok(&["statement", "export", "--agreement", "meridian-northwind", "--period", "2026-11", "--bundle", &dir]);
    let (ok, output) = verify(Path::new(&dir), &["--trust", &deployment_public(&store)]);
    assert!(ok && output.contains("3 dispute adjustment(s) resolved as logged"), "{output}");
    // What the host kept from last month anchors this month's bundle on its own.
    let (ok, output) = verify(Path::new(&dir), &["--since", &kept]);
    assert!(ok && output.contains("before the kept checkpoint"), "{output}");
    let log_file = Path::new(&dir).join("log.json");
    let mut log: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&log_file).expect("log.json")).expect("JSON");
    let leaves = log["leaves"].as_array_mut().expect("leaves");
    let decision = leaves
        .iter()
        .position(|l| l["event"].as_str().is_some_and(|d| d.contains(r#""state":"decided""#)))
        .expect("the decision is bundled");
    leaves.remove(decision);
    std::fs::write(&log_file, serde_json::to_vec_pretty(&log).expect("JSON")).expect("write");
    let (ok, output) = verify(Path::new(&dir), &["--trust", &deployment_public(&store)]);
    assert!(!ok, "{output}");
    assert!(
        output.contains(
            "mismatch: statement.json adjustments[1] (dispute:2): expected no adjustment: dispute 2 is escalated in the log, found 1.00 USD"
        ),
        "{output}"
    );
}

#[test]
fn another_partys_words_are_shown_escaped() {
    // A host's dispute reason that would clear the licensor's terminal and print a green line.
    let store = TestStore::sqlite();
    store.register_worked_example();
    store.ok(&["close", "--agreement", AGREEMENT_ID, "--period", "2026-10"]);
    let reason = "\u{1b}[2J\u{1b}[1;32m all settled \u{202e}";
    store.ok(&[
        "dispute",
        "open",
        "--agreement",
        AGREEMENT_ID,
        "--period",
        "2026-10",
        "--by",
        "northwind",
        "--amount",
        "1.00",
        "--reason",
        reason,
    ]);
    let shown = store.ok(&["dispute", "show", "1"]);
    assert!(!shown.contains('\u{1b}') && !shown.contains('\u{202e}'), "{shown:?}");
    assert!(shown.contains("\\u{1b}[2J\\u{1b}[1;32m all settled \\u{202e}"), "{shown}");
    // In a CSV export, words that a spreadsheet would run as a formula are not run.
    store.ok(&["dispute", "counter", "1", "--by", "meridian", "--amount", "0.50", "--reason", "=HYPERLINK(\"http://x\",\"ok\")"]);
    let history = store.ok(&["dispute", "show", "1", "--format", "csv"]);
    let reasons: Vec<String> = csv::Reader::from_reader(history.as_bytes()).records().map(|r| r.expect("a step")[7].to_owned()).collect();
    assert_eq!(reasons[1], "'=HYPERLINK(\"http://x\",\"ok\")", "{history}");
    assert_eq!(reasons[0], reason, "CSV carries other words as written");
}
