//! Printing statements: the canonical JSON, or tables for people.

use std::fmt::Write as _;
use std::io::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use revshare_core::agreement::Agreement;
use revshare_core::statement::Statement;

use crate::settle_sink::UsageSummary;

/// Writes the statement's canonical RFC 8785 bytes and a newline.
pub fn print_json(statement: &Statement) {
    match statement.to_canonical() {
        Ok(bytes) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&bytes);
            let _ = out.write_all(b"\n");
        }
        Err(e) => eprintln!("error: {e}"),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    t
}

fn right_align(t: &mut Table, from: usize) {
    for i in from..t.column_count() {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// The statement as tables: inputs, tiers, lines, totals, flags.
pub fn statement_table(agreement: &Agreement, s: &Statement, summary: &UsageSummary) -> String {
    let money = |minor: i128| s.currency.format(minor);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Statement {} v{} · {} and {} · {} · {}",
        s.agreement_id,
        s.agreement_version,
        agreement.licensor(),
        agreement.host(),
        s.period,
        s.currency
    );
    let _ = writeln!(
        out,
        "records: {} selected, {} duplicates ignored ({} read from all hosts; {} resends of {}'s records in any month)\nusage digest: {}\nagreement digest: {}\nstatement digest: {}",
        s.inputs.records,
        s.inputs.duplicates,
        summary.records_read,
        summary.duplicates,
        agreement.host(),
        s.inputs.usage_digest,
        s.agreement_digest,
        s.digest().unwrap_or_else(|e| e.to_string())
    );
    let _ = writeln!(out, "\nTiers ({}, {}), V = {}", s.tiers.metric, s.tiers.mode, s.tiers.volume);
    let mut tiers = table(&["tier", "from", "to", "volume", "fraction"]);
    for (i, t) in s.tiers.tiers.iter().enumerate() {
        tiers.add_row(vec![
            (i + 1).to_string(),
            t.from.clone(),
            t.to.clone().unwrap_or_else(|| "∞".to_owned()),
            t.volume.clone(),
            t.fraction.clone(),
        ]);
    }
    right_align(&mut tiers, 1);
    let _ = writeln!(out, "{tiers}");
    let mut lines = table(&["model", "use case", "region", "excl.", "records", "revenue", "volume", "rate", "uplift", "amount", "flags"]);
    for l in &s.lines {
        lines.add_row(vec![
            l.model.clone(),
            l.use_case.clone(),
            l.region.clone(),
            if l.exclusive { "yes".to_owned() } else { String::new() },
            l.records.to_string(),
            money(l.revenue),
            l.volume.clone(),
            l.blended_rate.clone(),
            l.uplift.clone().unwrap_or_default(),
            money(l.amount),
            l.flags.join(", "),
        ]);
    }
    right_align(&mut lines, 4);
    let _ = writeln!(out, "\nLines\n{lines}");
    let t = &s.totals;
    let mut totals = table(&["total", s.currency.code()]);
    let mut row = |name: &str, minor: i128| {
        totals.add_row(vec![name.to_owned(), money(minor)]);
    };
    row("gross revenue", t.gross_revenue);
    row("usage subtotal", t.usage_subtotal);
    row("minimum true-up", t.minimum_true_up);
    row("cap reduction", t.cap_reduction);
    row("usage total", t.usage_total);
    row("contribution pool", t.contribution_pool);
    for (party, amount) in &t.contribution_allocation {
        row(&format!("  allocated to {party}"), *amount);
    }
    row("host credit", t.host_credit);
    for a in &s.adjustments {
        row(&format!("  adjustment {} {}", a.kind, a.reference), a.amount);
    }
    row("adjustments", t.adjustments);
    row("net payable", t.net_payable);
    right_align(&mut totals, 1);
    let _ = writeln!(out, "\nTotals\n{totals}");
    let _ = writeln!(out, "flags: {}", if s.flags.is_empty() { "none".to_owned() } else { s.flags.join(", ") });
    out
}
