//! Data-driven settlement snapshots (SPEC §4–§6).
//!
//! Each folder `tests/cases/<name>/` is one case: `agreement.toml` (its first line says what the
//! case checks), `usage.jsonl`, an optional `contributions.jsonl`, an optional `models.json` (the
//! derived models' lineage, SPEC §11) and `period.txt` (`YYYY-MM`).
//! The snapshot is the statement as pretty JSON, or `error: …` when settlement refuses the case.
//! A fixture that does not parse, a conflicting resend or a selected record in another currency
//! fails the test instead: only settlement errors are expected results. `tests/settlement_oracle.py` recomputes every case from SPEC with
//! Python fractions, independently of this crate.

use std::path::Path;

use revshare_core::agreement::parse_agreement;
use revshare_core::contribution::parse_contribution_line;
use revshare_core::licence::Lineage;
use revshare_core::settle::{SettleError, settle_records};
use revshare_core::statement::Statement;
use revshare_core::time::Period;
use revshare_core::usage::parse_json_line;

/// The non-blank lines of a case file with their 1-based numbers, in file order or reversed.
fn lines_of(text: &str, reverse: bool) -> Vec<(u64, &str)> {
    let mut lines: Vec<(u64, &str)> = (1u64..).zip(text.lines()).filter(|(_, l)| !l.trim().is_empty()).collect();
    if reverse {
        lines.reverse();
    }
    lines
}

/// Settles one case folder, reading its records (and contributions) in file order or reversed.
fn check(case_dir: &Path, reverse: bool) -> String {
    let case = case_dir.display();
    let read = |name: &str| std::fs::read_to_string(case_dir.join(name)).unwrap_or_else(|e| panic!("{case}/{name}: {e}"));
    let read_optional = |name: &str| if case_dir.join(name).exists() { read(name) } else { String::new() };

    let agreement_text = read("agreement.toml");
    let agreement = parse_agreement("agreement.toml", &agreement_text)
        .unwrap_or_else(|e| panic!("{case}/agreement.toml does not parse:\n{}", e.render_plain()));
    let period = Period::parse(read("period.txt").trim()).unwrap_or_else(|e| panic!("{case}/period.txt: {e}"));

    let usage = read("usage.jsonl");
    let records: Vec<_> = lines_of(&usage, reverse)
        .into_iter()
        .map(|(n, line)| parse_json_line(line.as_bytes()).unwrap_or_else(|p| panic!("{case}/usage.jsonl:{n}: {p:?}")))
        .collect();
    let contributions_text = read_optional("contributions.jsonl");
    let contributions: Vec<_> = lines_of(&contributions_text, reverse)
        .into_iter()
        .map(|(n, line)| parse_contribution_line(line.as_bytes()).unwrap_or_else(|p| panic!("{case}/contributions.jsonl:{n}: {p:?}")))
        .collect();
    let lineage = match read_optional("models.json") {
        text if text.is_empty() => Lineage::default(),
        text => Lineage::from_json("models.json", text.as_bytes()).unwrap_or_else(|e| panic!("{case}/{e}")),
    };
    match settle_records(&agreement, period, &records, &contributions, Vec::new(), &lineage) {
        Ok(statement) => {
            // Golden round trip: the canonical bytes decode to the statement, and only they do.
            let bytes = statement.to_canonical().expect("a statement encodes");
            assert_eq!(Statement::from_canonical(&bytes).as_ref(), Ok(&statement), "{case}: decoding the canonical bytes");
            let pretty = serde_json::to_string_pretty(&statement.to_json().expect("a statement encodes")).expect("a statement serialises");
            assert!(Statement::from_canonical(pretty.as_bytes()).is_err(), "{case}: pretty JSON is not the canonical bytes");
            pretty
        }
        Err(e @ (SettleError::Conflict { .. } | SettleError::Currency { .. })) => panic!("{case}: the fixture is broken: {e}"),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn settlement_cases() {
    insta::glob!("cases/*/agreement.toml", |path| {
        let case_dir = path.parent().expect("agreement.toml lies in a case folder");
        let settled = check(case_dir, false);
        assert_eq!(settled, check(case_dir, true), "{}: the order of the records changed the result", case_dir.display());
        let description =
            std::fs::read_to_string(path).expect("agreement.toml").lines().next().expect("agreement.toml has a first line").to_owned();
        insta::with_settings!({ description => description, omit_expression => true }, {
            insta::assert_snapshot!(settled);
        });
    });
}
