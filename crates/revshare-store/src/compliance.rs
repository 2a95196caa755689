//! A licensor's compliance report for a month (SPEC §11): what its hosts did with its models
//! outside what their agreements allow, so that its licensing and legal teams see it in one place.
//!
//! - **Unlicensed use**: records of the licensor's models whose host had no agreement with the
//!   licensor in force at the record's time. Such a record is stored (never dropped) and rolled
//!   up nowhere (`unmatched`); the report reads them from their segments and sums them per host,
//!   model, use case, region and currency, revenue exact until rounded once for display.
//! - **Flagged lines**: every line of the month's statement of each of the licensor's agreements
//!   that carries a flag (`unlicensed_model`, `naming_violation`, `prohibited_use`) — the final
//!   statement when the month is closed, else the running totals of the open month (settled from
//!   the rollups, as the preview is).
//!
//! It is the licensor's: the server answers it to the licensor's tokens only; it names the
//! licensor's own hosts and agreements and nothing of another licensor's.

use std::collections::BTreeMap;

use revshare_core::ids::PartyId;
use revshare_core::money::Currency;
use revshare_core::rollup::Rollup;
use revshare_core::settle::UNLICENSED_MODEL;
use revshare_core::statement::Statement;
use revshare_core::time::Period;
use revshare_core::usage::UsageRecord;

use crate::close::CloseError;
use crate::{Store, StoreError};

/// One finding: a host's use of one of the licensor's models, in one use case and region, that
/// no agreement covered (`flags` `["unlicensed_model"]`, no agreement), or a flagged line of an
/// agreement's statement for the month. What the CLI lists and the API answers, member for member.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The line's flags, or `["unlicensed_model"]` for usage outside every agreement.
    pub flags: Vec<String>,
    /// The agreement whose statement carries the line; `None` for usage outside every agreement.
    pub agreement: Option<String>,
    pub host: String,
    pub model: String,
    pub use_case: String,
    pub region: String,
    /// `final` (the month's statement) or `open` (the month's running totals so far); `None` for
    /// usage outside every agreement.
    pub standing: Option<&'static str>,
    pub currency: String,
    pub records: u64,
    /// Requests and tokens, as decimal strings (they can pass 2^53).
    pub requests: String,
    pub input_tokens: String,
    pub output_tokens: String,
    /// The revenue, rounded once (half to even) to the currency's minor unit.
    pub revenue: String,
    /// What the line owes the licensor; `None` for usage outside every agreement.
    pub amount: Option<String>,
}

/// The members of a [`Finding`], in order: the CSV columns of the CLI's and the API's report.
pub const FINDING_MEMBERS: &[&str] = &[
    "flags",
    "agreement",
    "host",
    "model",
    "use_case",
    "region",
    "standing",
    "currency",
    "records",
    "requests",
    "input_tokens",
    "output_tokens",
    "revenue",
    "amount",
];

/// The report of one licensor's month: usage outside every agreement first (by host, model, use
/// case, region, currency), then the flagged lines (by agreement, in statement order).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ComplianceReport {
    pub licensor: String,
    pub period: String,
    pub findings: Vec<Finding>,
}

/// Sums the unmatched records of a licensor's models that lie in `period` into findings.
pub(crate) fn unlicensed<'r>(records: impl Iterator<Item = &'r UsageRecord<'r>>, period: Period) -> Result<Vec<Finding>, StoreError> {
    let mut rollups: BTreeMap<(String, Currency), Rollup> = BTreeMap::new();
    for record in records.filter(|r| period.contains(r.time)) {
        rollups.entry((record.host.to_string(), record.currency)).or_default().add(record, None)?;
    }
    let mut out = Vec::new();
    for ((host, currency), rollup) in rollups {
        for (key, sums) in rollup.groups() {
            let revenue = currency.round(&sums.revenue()).ok_or_else(|| StoreError::Corrupt {
                what: format!("the unlicensed usage of {} by {host}", key.model),
                detail: "its revenue outgrew an amount".to_owned(),
            })?;
            out.push(Finding {
                flags: vec![UNLICENSED_MODEL.to_owned()],
                agreement: None,
                host: host.clone(),
                model: key.model.clone(),
                use_case: key.use_case.clone(),
                region: key.region.clone(),
                standing: None,
                currency: currency.code().to_owned(),
                records: sums.records,
                requests: sums.requests.to_string(),
                input_tokens: sums.input_tokens.to_string(),
                output_tokens: sums.output_tokens.to_string(),
                revenue: currency.format(revenue),
                amount: None,
            });
        }
    }
    Ok(out)
}

/// The compliance report of `licensor`'s month `period`.
pub fn report<S: Store + ?Sized>(store: &mut S, licensor: &PartyId, period: Period) -> Result<ComplianceReport, CloseError> {
    let mut findings = store.unlicensed_usage(licensor, period)?;
    for agreement in store.agreements_of_licensor(licensor)? {
        let id = agreement.id();
        let (standing, statement) = match store.statement(id, period)? {
            Some(stored) => {
                let statement = Statement::from_canonical(&stored.canonical)
                    .map_err(|e| CloseError::Corrupt(format!("the statement of {id} for {period}: {e}")))?;
                ("final", statement)
            }
            None if agreement.covers(period) => ("open", store.running_totals(id, period)?),
            None => continue,
        };
        let currency = statement.currency;
        findings.extend(statement.lines.into_iter().filter(|l| !l.flags.is_empty()).map(|line| Finding {
            flags: line.flags,
            agreement: Some(id.to_string()),
            host: agreement.host().to_string(),
            model: line.model,
            use_case: line.use_case,
            region: line.region,
            standing: Some(standing),
            currency: currency.code().to_owned(),
            records: line.records,
            requests: line.requests.to_string(),
            input_tokens: line.input_tokens.to_string(),
            output_tokens: line.output_tokens.to_string(),
            revenue: currency.format(line.revenue),
            amount: Some(currency.format(line.amount)),
        }));
    }
    Ok(ComplianceReport { licensor: licensor.to_string(), period: period.to_string(), findings })
}
