//! Snapshots of what people read: help pages and tables. A change to a help text or a table's
//! layout shows here as a diff to review (`cargo insta review`, or `INSTA_UPDATE=always` and read
//! the diff); the snapshots are in `tests/snapshots/`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// What `revshare ARGS` prints, with the examples folder written as `EXAMPLES`.
fn stdout(args: &[&str]) -> String {
    let output = Command::cargo_bin("revshare").expect("the binary").env("NO_COLOR", "1").args(args).output().expect("runs");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).replace(&examples().display().to_string(), "EXAMPLES")
}

#[test]
fn help_pages() {
    for command in [
        &["--help"][..],
        &["statement", "list", "--help"],
        &["dispute", "open", "--help"],
        &["payment", "record", "--help"],
        &["usage", "--help"],
        &["demo", "--help"],
        &["ingest", "--help"],
        &["batch", "sign", "--help"],
    ] {
        let name = command.iter().filter(|a| !a.starts_with('-')).copied().collect::<Vec<_>>().join("-");
        insta::assert_snapshot!(format!("help-{}", if name.is_empty() { "revshare" } else { &name }), stdout(command));
    }
}

#[test]
fn the_worked_example_as_a_table() {
    let ex = examples();
    let (agreement, usage, contributions) = (ex.join("agreement.toml"), ex.join("usage.jsonl"), ex.join("contributions.jsonl"));
    let table = stdout(&[
        "settle",
        "--agreement",
        &agreement.display().to_string(),
        "--usage",
        &usage.display().to_string(),
        "--contributions",
        &contributions.display().to_string(),
        "--period",
        "2026-10",
    ]);
    insta::assert_snapshot!("settle-table", table);
    for line in table.lines() {
        assert!(line.chars().count() <= 100, "tables fit 100 columns: {line}");
    }
}
