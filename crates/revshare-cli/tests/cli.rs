//! The real `revshare` binary, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn revshare(args: &[&str]) -> Output {
    Command::cargo_bin("revshare").expect("the revshare binary is built").args(args).output().expect("revshare runs")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn settle_example(usage: &Path, format: &str) -> Output {
    let ex = examples();
    revshare(&[
        "settle",
        "--agreement",
        &ex.join("agreement.toml").display().to_string(),
        "--usage",
        &usage.display().to_string(),
        "--contributions",
        &ex.join("contributions.jsonl").display().to_string(),
        "--period",
        "2026-10",
        "--format",
        format,
    ])
}

#[test]
fn settles_the_worked_example() {
    let out = settle_example(&examples().join("usage.jsonl"), "json");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let statement: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the statement is JSON");
    let amounts: Vec<&str> = statement["lines"].as_array().into_iter().flatten().filter_map(|l| l["amount"].as_str()).collect();
    assert_eq!(amounts, ["183.11", "80.12", "106.94", "445.60", "0.00", "52.00"]);
    assert_eq!(statement["totals"]["net_payable"], "855.37");
    assert_eq!(statement["inputs"]["records"], 6);
    assert!(statement["inputs"].get("duplicates").is_none(), "resends are no part of a statement");
    // Quiet when not on a terminal: no progress bar in the output.
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn cloudevents_and_json_lines_give_the_same_bytes() {
    let lines = settle_example(&examples().join("usage.jsonl"), "json");
    let events = settle_example(&examples().join("usage.cloudevents.json"), "json");
    assert!(events.status.success(), "{}", text(&events.stderr));
    assert_eq!(lines.stdout, events.stdout);
}

#[test]
fn reads_standard_input() {
    let ex = examples();
    let usage = std::fs::read(ex.join("usage.jsonl")).expect("example usage");
    let out = Command::cargo_bin("revshare")
        .expect("binary")
        .args(["settle", "--agreement", &ex.join("agreement.toml").display().to_string(), "--usage", "-", "--period", "2026-10"])
        .args(["--contributions", &ex.join("contributions.jsonl").display().to_string(), "--format", "json"])
        .write_stdin(usage)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, settle_example(&ex.join("usage.jsonl"), "json").stdout);
}

#[test]
fn the_table_shows_lines_and_totals() {
    let out = settle_example(&examples().join("usage.jsonl"), "table");
    let table = text(&out.stdout);
    assert!(out.status.success());
    for expected in [
        "Statement meridian-northwind v1",
        "445.60",
        "net payable",
        "855.37",
        "allocated to northwind",
        "12.40",
        "0.25",
        "statement digest: sha256:",
    ] {
        assert!(table.contains(expected), "missing {expected} in:\n{table}");
    }
    // The table's statement digest is the digest of the JSON statement's bytes.
    let json = settle_example(&examples().join("usage.jsonl"), "json").stdout;
    let digest = format!("sha256:{}", sha256_hex(&json[..json.len() - 1]));
    assert!(table.contains(&digest), "{digest} not in:\n{table}");
}

#[test]
fn a_bad_agreement_lists_every_problem_with_its_place_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    let good = std::fs::read_to_string(examples().join("agreement.toml")).expect("example");
    std::fs::write(&path, good.replace("\"0.02\"", "0.02").replace("currency = \"USD\"", "currency = \"USX\"")).expect("write");
    let out = revshare(&["agreement", "check", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("2 problems in the agreement"), "{err}");
    assert!(err.contains("bad.toml:7:12"), "{err}");
    assert!(err.contains("`USX` is not an ISO 4217 currency code"), "{err}");
    assert!(err.contains("write it as a string: \"0.02\""), "{err}");
}

#[test]
fn agreement_check_accepts_a_good_file() {
    let out = revshare(&["agreement", "check", &examples().join("agreement.toml").display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok:"));
}

#[test]
fn wrong_usage_exits_2() {
    let out = revshare(&["settle", "--agreement", "a.toml", "--usage", "u.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--period"));
}

#[test]
fn bad_records_are_all_listed_with_line_column_record_and_nothing_is_settled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let usage = dir.path().join("usage.jsonl");
    let good = std::fs::read_to_string(examples().join("usage.jsonl")).expect("example");
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[0] = lines[0].replace("\"requests\":120000", "\"requests\":-1");
    lines[2] = lines[2].replace("\"region\":\"eu\"", "\"region\":\"eu\",\"prompt\":\"hi\"");
    lines[5] = lines[5].replace("\"revenue\":\"450.000000\"", "\"revenue\":\"451.00\""); // conflicts with nothing yet
    lines.push(lines[5].replace("\"revenue\":\"451.00\"", "\"revenue\":\"452.00\"")); // a conflicting resend
    std::fs::write(&usage, lines.join("\n")).expect("write");
    let out = settle_example(&usage, "json");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    let name = usage.display().to_string();
    assert!(err.contains(&format!("{name}:1:132: record e1: field `requests` is -1; it must be an integer from 0 to 2^63 - 1")), "{err}");
    assert!(err.contains(&format!("{name}:3:81: record e3: unknown field `prompt`")), "{err}");
    assert!(
        err.contains(&format!("{name}:10:1: record e6: conflicts with the record of host northwind with the same id at {name}:6")),
        "{err}"
    );
    assert!(err.contains("3 problems in the usage; nothing was settled"), "{err}");
}

#[test]
fn a_line_longer_than_a_read_block_is_read_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let usage = dir.path().join("usage.jsonl");
    let good = std::fs::read_to_string(examples().join("usage.jsonl")).expect("example");
    let huge =
        good.lines().next().unwrap_or_default().replace("\"currency\"", &format!("\"prompt\":\"{}\",\"currency\"", "x".repeat(10 << 20)));
    std::fs::write(&usage, format!("{good}{huge}\n")).expect("write");
    let out = settle_example(&usage, "json");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(":10:") && err.contains("unknown field `prompt`"), "{}", &err[..err.len().min(500)]);
}

#[test]
fn duplicates_across_files_are_counted_once() {
    let ex = examples();
    let one = ex.join("usage.jsonl").display().to_string();
    let out = revshare(&[
        "settle",
        "--agreement",
        &ex.join("agreement.toml").display().to_string(),
        "--usage",
        &one,
        &one,
        "--period",
        "2026-10",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let statement: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(statement["inputs"]["records"], 6);
    // e2 twice in the first file, then all seven selected lines of the second file again: the
    // same statement as the first file alone, byte for byte (SPEC §6).
    let agreement = ex.join("agreement.toml").display().to_string();
    let once = revshare(&["settle", "--agreement", &agreement, "--usage", &one, "--period", "2026-10", "--format", "json"]);
    assert_eq!(text(&out.stdout), text(&once.stdout), "resends change nothing");
}

#[test]
fn the_generator_is_deterministic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let generate = |seed: &str, name: &str| {
        let path = dir.path().join(name);
        let out = revshare(&["gen", "usage", "--records", "2000", "--seed", seed, "--out", &path.display().to_string()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::read(path).expect("generated file")
    };
    let (a, b, c) = (generate("7", "a.jsonl"), generate("7", "b.jsonl"), generate("8", "c.jsonl"));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.iter().filter(|b| **b == b'\n').count(), 2000);
    // Every generated line is a valid record.
    for line in a.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        assert!(revshare_core::usage::parse_json_line(line).is_ok(), "{}", text(line));
    }
}

#[test]
fn the_demo_prints_three_statements() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = revshare(&["demo", "--dir", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for host in ["meridian-northwind", "meridian-eastwater", "meridian-westfield"] {
        assert!(shown.contains(&format!("Statement {host}")), "{shown}");
    }
    // eastwater is lifted to its minimum, westfield trimmed to its cap, northwind earns a credit.
    let totals = |host: &str, row: &str| {
        let at = shown.find(&format!("Statement meridian-{host}")).expect("statement shown");
        let line = shown[at..].lines().find(|l| l.contains(row)).expect("row shown").to_owned();
        line.split('┆').nth(1).map(|v| v.trim_matches(|c: char| c == '│' || c.is_whitespace()).to_owned()).unwrap_or_default()
    };
    assert_ne!(totals("eastwater", "minimum true-up"), "0.00");
    assert_eq!(totals("westfield", "usage total"), "3,500.00");
    // Lines are numbered as `dispute open --line` names them, from 0.
    let numbers: Vec<&str> = shown
        .lines()
        .skip_while(|l| !l.starts_with("Lines ("))
        .filter(|l| l.starts_with('│') && !l.contains("model"))
        .map_while(|l| l.trim_start_matches('│').split('┆').next().map(str::trim))
        .take(3)
        .collect();
    assert_eq!(numbers, ["0", "1", "2"], "{shown}");
    assert_ne!(totals("northwind", "host credit"), "0.00");
}

#[test]
fn the_generator_writes_an_agreements_records_whole_or_not_at_all() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agreement = examples().join("agreement.toml").display().to_string();
    let generate = |period: &str, seed: &str, name: &str| {
        let path = dir.path().join(name).display().to_string();
        let args = ["gen", "usage", "--records", "3000", "--agreement", &agreement, "--period", period, "--seed", seed, "--out", &path];
        (revshare(&args), path)
    };
    let (out, october) = generate("2026-10", "42", "october.jsonl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Off a terminal, one summary line.
    let summary = text(&out.stdout);
    assert!(
        summary.starts_with("wrote 3000 records (") && summary.ends_with(&format!("of northwind in 2026-10 to {october}\n")),
        "{summary}"
    );
    let lines = std::fs::read(&october).expect("the file");
    let records: Vec<_> = lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| revshare_core::usage::parse_json_line(l).expect("a record"))
        .collect();
    assert_eq!(records.len(), 3000);
    for r in &records {
        assert_eq!((r.host.as_ref(), r.currency.code()), ("northwind", "USD"));
        assert!(["m-8b", "m-70b"].contains(&r.model.as_ref()), "{}", r.model);
    }
    // The exclusive region is drawn too, and a use case billed at the default rate.
    assert!(records.iter().any(|r| r.region == "eu" && r.use_case == "search"));
    assert!(records.iter().any(|r| r.use_case == "recommendations"));
    // Settled under the agreement, every distinct record counts.
    let ids: std::collections::BTreeSet<&str> = records.iter().map(|r| r.id.as_ref()).collect();
    let settled = revshare(&["settle", "--agreement", &agreement, "--usage", &october, "--period", "2026-10", "--format", "json"]);
    assert!(settled.status.success(), "{}", text(&settled.stderr));
    let statement: serde_json::Value = serde_json::from_slice(&settled.stdout).expect("JSON");
    let counted: u64 = statement["lines"].as_array().expect("lines").iter().map(|l| l["records"].as_u64().expect("records")).sum();
    assert_eq!(counted, u64::try_from(ids.len()).expect("count"));
    // Another month or another seed shares no id with it.
    for (period, seed, name) in [("2026-11", "42", "november.jsonl"), ("2026-10", "43", "other-seed.jsonl")] {
        let (out, path) = generate(period, seed, name);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let other = std::fs::read(&path).expect("the file");
        let shared = other
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter(|l| ids.contains(revshare_core::usage::parse_json_line(l).expect("a record").id.as_ref()))
            .count();
        assert_eq!(shared, 0, "{name}");
    }
    // A month the agreement does not cover is refused, and writes nothing.
    let (out, path) = generate("2027-02", "42", "after.jsonl");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: agreement meridian-northwind is not in effect in 2027-02 (from 2026-01-01T00:00:00Z until 2027-01-01T00:00:00Z); pass --period with a month it covers\n"
    );
    assert!(!Path::new(&path).exists());
    assert_eq!(std::fs::read_dir(dir.path()).expect("the folder").count(), 3, "no file left behind");
}

#[test]
fn an_interrupted_generator_leaves_no_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.jsonl");
    let bin = assert_cmd::cargo::cargo_bin("revshare");
    let child = std::process::Command::new(bin)
        .args(["gen", "usage", "--records", "1000000000", "--out", &path.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("revshare runs");
    // Once the temporary file beside it is growing, Ctrl-C.
    let growing = || std::fs::read_dir(dir.path()).expect("the folder").flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 0));
    let waited = std::time::Instant::now();
    while !growing() {
        assert!(waited.elapsed() < std::time::Duration::from_secs(60), "the generator never started writing");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill runs").success());
    let out = child.wait_with_output().expect("it ends");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), format!("interrupted: {} was not written\n", path.display()));
    assert_eq!(std::fs::read_dir(dir.path()).expect("the folder").count(), 0, "no partial or temporary file");
}

#[test]
fn a_database_that_cannot_be_reached_is_named_without_its_password() {
    let refused = revshare(&["--database", "postgres://alice:s3cret@127.0.0.1:1/ledger?connect_timeout=2", "balances"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = text(&refused.stderr);
    assert!(said.starts_with("error: cannot connect to PostgreSQL at 127.0.0.1:1, database ledger, user alice: "), "{said}");
    assert!(!said.contains("s3cret"), "{said}");
    let unparsable = revshare(&["--database", "http://s3cret@somewhere", "balances"]);
    let said = text(&unparsable.stderr);
    assert!(said.starts_with("error: the database setting is not a PostgreSQL connection string ("), "{said}");
    assert!(said.contains("write postgres://USER@HOST:PORT/DATABASE") && !said.contains("s3cret"), "{said}");
}

/// A statement's lines as CSV: one row a line, numbered, with the members the JSON has.
#[test]
fn a_statements_lines_as_csv() {
    let ex = examples();
    let (agreement, usage) = (ex.join("agreement.toml").display().to_string(), ex.join("usage.jsonl").display().to_string());
    let settle =
        |format: &str| revshare(&["settle", "--agreement", &agreement, "--usage", &usage, "--period", "2026-10", "--format", format]);
    let statement: serde_json::Value = serde_json::from_slice(&settle("json").stdout).expect("JSON");
    let csv = settle("csv");
    assert!(csv.status.success(), "{}", text(&csv.stderr));
    let mut reader = csv::Reader::from_reader(csv.stdout.as_slice());
    let header: Vec<String> = reader.headers().expect("a header").iter().map(str::to_owned).collect();
    assert_eq!(&header[..4], ["line", "model", "use_case", "region"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a row")).collect();
    let lines = statement["lines"].as_array().expect("lines");
    assert_eq!(rows.len(), lines.len());
    let column = |name: &str| header.iter().position(|h| h == name).expect("a column");
    for (n, (row, line)) in rows.iter().zip(lines).enumerate() {
        assert_eq!(row[column("line")], n.to_string());
        for member in ["model", "use_case", "region", "revenue", "amount", "volume", "blended_rate"] {
            assert_eq!(Some(&row[column(member)]), line[member].as_str(), "line {n} {member}");
        }
        assert_eq!(row[column("currency")], *"USD");
    }
}
