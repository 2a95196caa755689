//! Settling from files: load the agreement, read the usage and contributions, call the core.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use revshare_core::agreement::{Agreement, AgreementErrors, parse_agreement};
use revshare_core::contribution::{Contribution, parse_contribution_line};
use revshare_core::licence::Lineage;
use revshare_core::settle::{SettlementInput, settle};
use revshare_core::statement::Statement;
use revshare_core::time::Period;

use crate::Failure;
use crate::reading::{ReadError, report};
use crate::settle_sink::{UsageSummary, read_usage};

/// Renders agreement problems with snippets and carets (colour only on a terminal).
fn render_agreement_errors(errors: &AgreementErrors) -> String {
    let theme =
        if revshare_server::stderr_in_colour() { miette::GraphicalTheme::unicode() } else { miette::GraphicalTheme::unicode_nocolor() };
    let mut out = String::new();
    let _ = miette::GraphicalReportHandler::new_themed(theme).with_context_lines(1).render_report(&mut out, errors);
    out
}

pub fn load_agreement(path: &Path) -> Result<Agreement, Failure> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read agreement {}", path.display()))?;
    parse_agreement(&path.display().to_string(), &text).map_err(|e| Failure::Invalid(render_agreement_errors(&e)))
}

pub fn check_agreements(files: &[PathBuf]) -> Result<(), Failure> {
    let mut failed = String::new();
    for path in files {
        match load_agreement(path) {
            Ok(a) => println!(
                "ok: {} (agreement {} version {}, {} and {}, {})",
                path.display(),
                a.id(),
                a.version(),
                a.licensor(),
                a.host(),
                a.currency()
            ),
            Err(Failure::Invalid(text)) => failed.push_str(&text),
            Err(other) => return Err(other),
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(Failure::Invalid(failed)) }
}

pub fn load_contributions(path: &Path) -> Result<Vec<Contribution>, Failure> {
    let text = std::fs::read(path).with_context(|| format!("cannot read contributions {}", path.display()))?;
    let mut out = Vec::new();
    let mut problems = String::new();
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_contribution_line(line) {
            Ok(c) => out.push(c),
            Err(found) => {
                for p in found {
                    let column = String::from_utf8_lossy(&line[..p.offset.min(line.len())]).chars().count() + 1;
                    let _ = writeln!(problems, "{}:{}:{column}: {}", path.display(), i + 1, p.message);
                }
            }
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(Failure::Invalid(problems)) }
}

/// A byte-counting progress bar on standard error; hidden when that is not a terminal.
pub fn progress_bar(total: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template =
        if total.is_some() { "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}" } else { "{msg} {bytes} {bytes_per_sec}" };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
    bar.set_message(what.to_owned());
    bar
}

/// Reads everything and settles; returns the statement and what was read. `given` names the
/// optional contributions and models (lineage) files.
pub fn settle_command(
    agreement: &Path,
    usage: &[PathBuf],
    given: (Option<&Path>, Option<&Path>),
    period: Period,
) -> Result<(Agreement, Statement, UsageSummary), Failure> {
    let (contributions, models) = given;
    let agreement = load_agreement(agreement)?;
    let contributions = contributions.map(load_contributions).transpose()?.unwrap_or_default();
    let lineage = match models {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read models {}", path.display()))?;
            Lineage::from_json(&path.display().to_string(), &bytes).map_err(|e| Failure::Invalid(format!("error: {e}\n")))?
        }
        None => Lineage::default(),
    };
    let total: Option<u64> = usage.iter().map(|p| std::fs::metadata(p).ok().filter(|m| m.is_file()).map(|m| m.len())).sum();
    let progress = progress_bar(total, "reading usage");
    let summary = match read_usage(usage, &agreement, period, &progress) {
        Ok(s) => s,
        Err(ReadError::Io(e)) => return Err(Failure::Other(e)),
        Err(ReadError::Invalid(problems)) => {
            let closing =
                format!("{} problem{} in the usage; nothing was settled", problems.len(), if problems.len() == 1 { "" } else { "s" });
            return Err(Failure::Invalid(report(problems, &closing)));
        }
    };
    let input = SettlementInput {
        agreement: &agreement,
        period,
        rollup: &summary.rollup,
        usage_digest: summary.counted.digest(),
        contributions: &contributions,
        adjustments: Vec::new(),
        lineage: &lineage,
    };
    let statement = settle(&input).map_err(|e| Failure::Invalid(format!("error: {e}\n")))?;
    Ok((agreement, statement, summary))
}
