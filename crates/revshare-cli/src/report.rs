//! Printing statements: the canonical JSON, or tables for people.

use std::fmt::Write as _;
use std::io::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use revshare_core::agreement::Agreement;
use revshare_core::statement::Statement;
use revshare_core::text::grouped;
use serde_json::Value;

use crate::settle_sink::UsageSummary;

/// Prints a statement: its canonical RFC 8785 bytes and a newline, its lines as CSV, or the
/// tables `table` writes.
pub fn print_statement(
    statement: &Statement,
    format: crate::Format,
    table: impl FnOnce() -> Result<String, crate::Failure>,
) -> Result<(), crate::Failure> {
    match format {
        crate::Format::Json => {
            let bytes = statement.to_canonical().map_err(|e| crate::Failure::Other(e.into()))?;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes).and_then(|()| out.write_all(b"\n")).map_err(|e| crate::Failure::Other(e.into()))
        }
        crate::Format::Csv => print_lines_csv(statement),
        crate::Format::Table => {
            print!("{}", table()?);
            Ok(())
        }
    }
}

/// A table in the style of every table revshare prints.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    t
}

/// Right-aligns the columns from `from` on (amounts and counts).
pub fn right_align(t: &mut Table, from: usize) {
    for i in from..t.column_count() {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// A rate written with more places, rounded half to even to `places` for a table; text that is
/// not a decimal is left as it is.
fn rate_places(rate: &str, places: u32) -> String {
    revshare_core::decimal::Decimal::parse(rate)
        .map_or_else(|_| rate.to_owned(), |d| revshare_core::money::format_rational(&d.to_rational(), places))
}

/// The statement as tables — inputs, tiers, lines, totals, flags — from its canonical bytes, so
/// a statement settled now and one read back from the store print alike. `context` is printed
/// under the title (who the parties are, what was read).
pub fn statement_table(canonical: &[u8], context: &str) -> String {
    let s: Value = serde_json::from_slice(canonical).unwrap_or_default();
    let text = |v: &Value| match v {
        Value::String(t) => t.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let list = |v: &Value| v.as_array().map(|a| a.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    let mut out = String::new();
    let agreement = &s["agreement"];
    let _ = writeln!(
        out,
        "Statement {} v{} · {} · {}",
        text(&agreement["id"]),
        text(&agreement["version"]),
        text(&s["period"]),
        text(&s["currency"])
    );
    let _ = writeln!(out, "{context}");
    let _ = writeln!(
        out,
        "records: {} selected\nusage digest: {}\nagreement digest: {}\nstatement digest: {}",
        grouped(&text(&s["inputs"]["records"])),
        text(&s["inputs"]["usage_digest"]),
        text(&agreement["digest"]),
        revshare_core::canonical::digest(canonical)
    );
    let tiers_of = &s["tiers"];
    let _ =
        writeln!(out, "\nTiers ({}, {}), V = {}", text(&tiers_of["metric"]), text(&tiers_of["mode"]), grouped(&text(&tiers_of["volume"])));
    let mut tiers = table(&["tier", "from", "to", "volume", "fraction"]);
    for (i, t) in tiers_of["tiers"].as_array().into_iter().flatten().enumerate() {
        let to = if t["to"].is_null() { "∞".to_owned() } else { grouped(&text(&t["to"])) };
        tiers.add_row(vec![(i + 1).to_string(), grouped(&text(&t["from"])), to, grouped(&text(&t["volume"])), text(&t["fraction"])]);
    }
    right_align(&mut tiers, 1);
    let _ = writeln!(out, "{tiers}");
    // Each line's number is its index, as `dispute open --line` and the API name it. To fit 100
    // columns the table leaves out each line's tier volume (the JSON and CSV have it), shows an
    // exclusive line's uplift in its `excl.` column and the blended rate to four places, and has
    // a flags column only when a line has flags.
    let rows: Vec<&Value> = s["lines"].as_array().into_iter().flatten().collect();
    let flagged = rows.iter().any(|l| l["flags"].as_array().is_some_and(|f| !f.is_empty()));
    let mut headings = vec!["line", "model", "use case", "region", "excl.", "records", "revenue", "rate", "amount"];
    if flagged {
        headings.push("flags");
    }
    let mut lines = table(&headings);
    for (n, l) in rows.iter().enumerate() {
        let exclusive = match (&l["exclusive"], &l["uplift"]) {
            (Value::Bool(true), Value::String(uplift)) => format!("+{uplift}"),
            (Value::Bool(true), _) => "yes".to_owned(),
            _ => String::new(),
        };
        // A derived model's line names the agreement's model it was priced under (SPEC §11).
        let model = match &l["derived_from"] {
            Value::String(base) => format!("{} (of {base})", text(&l["model"])),
            _ => text(&l["model"]),
        };
        let mut row = vec![
            n.to_string(),
            model,
            text(&l["use_case"]),
            text(&l["region"]),
            exclusive,
            grouped(&text(&l["records"])),
            grouped(&text(&l["revenue"])),
            rate_places(&text(&l["blended_rate"]), 4),
            grouped(&text(&l["amount"])),
        ];
        if flagged {
            row.push(list(&l["flags"]));
        }
        lines.add_row(row);
    }
    right_align(&mut lines, 5);
    if flagged {
        // The flags are words, not figures.
        if let Some(c) = lines.column_mut(9) {
            c.set_cell_alignment(CellAlignment::Left);
        }
    }
    let _ = writeln!(out, "\nLines (`dispute open --line N` names one by its number)\n{lines}");
    let t = &s["totals"];
    let mut totals = table(&["total", &text(&s["currency"])]);
    let mut row = |name: &str, amount: &Value| {
        totals.add_row(vec![name.to_owned(), grouped(&text(amount))]);
    };
    row("gross revenue", &t["gross_revenue"]);
    row("usage subtotal", &t["usage_subtotal"]);
    row("minimum true-up", &t["minimum_true_up"]);
    row("cap reduction", &t["cap_reduction"]);
    row("usage total", &t["usage_total"]);
    row("contribution pool", &t["contribution_pool"]);
    for (party, amount) in t["contribution_allocation"].as_object().into_iter().flatten() {
        row(&format!("  allocated to {party}"), amount);
    }
    row("host credit", &t["host_credit"]);
    for a in s["adjustments"].as_array().into_iter().flatten() {
        let origin = match (a["kind"].as_str(), a["reference"].as_str()) {
            (Some("dispute"), Some(reference)) => format!("dispute {}", reference.trim_start_matches("dispute:")),
            (Some("restatement"), Some(period)) => format!("{period} restated"),
            _ => format!("{} {}", text(&a["kind"]), text(&a["reference"])),
        };
        row(&format!("  adjustment: {origin}"), &a["amount"]);
    }
    row("adjustments", &t["adjustments"]);
    row("net payable", &t["net_payable"]);
    right_align(&mut totals, 1);
    let _ = writeln!(out, "\nTotals\n{totals}");
    let flags = list(&s["flags"]);
    let _ = writeln!(out, "flags: {}", if flags.is_empty() { "none" } else { &flags });
    out
}

/// The table of a statement settled from files.
pub fn settled_table(agreement: &Agreement, s: &Statement, summary: &UsageSummary) -> String {
    let context = format!(
        "{} and {}; {} read from all hosts, {} of {}'s records in any month",
        agreement.licensor(),
        agreement.host(),
        counted(summary.records_read, "record"),
        counted(summary.duplicates, "resend"),
        agreement.host()
    );
    match s.to_canonical() {
        Ok(bytes) => statement_table(&bytes, &context),
        Err(e) => format!("error: {e}\n"),
    }
}

/// `1 record`, `2 records`, `3 parties`: a count and its noun (English plurals of the regular
/// kinds only).
pub fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        return format!("{n} {noun}");
    }
    match noun.strip_suffix('y').filter(|stem| !stem.ends_with(['a', 'e', 'o', 'u'])) {
        Some(stem) => format!("{n} {stem}ies"),
        None => format!("{n} {noun}s"),
    }
}

/// A statement's lines as CSV (`revshare_core::spreadsheet::statement_lines`).
pub fn print_lines_csv(statement: &Statement) -> Result<(), crate::Failure> {
    let bytes = revshare_core::spreadsheet::statement_lines(statement).map_err(|e| anyhow::anyhow!("cannot write CSV: {e}"))?;
    std::io::stdout().write_all(&bytes).map_err(|e| crate::Failure::Other(anyhow::anyhow!("cannot write CSV: {e}")))
}

/// Writes `rows` (JSON objects) to standard output as CSV with the `members` as columns
/// (`revshare_core::spreadsheet::csv`).
pub fn write_csv(members: &[&str], rows: impl Iterator<Item = Value>) -> Result<(), crate::Failure> {
    let failed = |e: std::io::Error| crate::Failure::Other(anyhow::anyhow!("cannot write CSV: {e}"));
    let bytes = revshare_core::spreadsheet::csv(members, rows).map_err(failed)?;
    std::io::stdout().write_all(&bytes).map_err(failed)
}
