//! The statement (SPEC §6): what settlement produces, and its one canonical encoding.
//!
//! Money is kept in minor units (`i128`) and written as strings with exactly the currency's
//! minor-unit digits. Counts that may exceed 2^53 (tokens, requests, volumes) are strings, so
//! the RFC 8785 bytes are exact in every JSON reader. Record counts are numbers.

use serde_json::{Map, Value, json};

use crate::canonical::{self, CanonicalError};
use crate::ids::PartyId;
use crate::money::Currency;
use crate::time::Period;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub agreement_id: String,
    pub agreement_version: u32,
    pub agreement_digest: String,
    pub period: Period,
    pub currency: Currency,
    pub inputs: Inputs,
    pub tiers: Tiers,
    pub lines: Vec<Line>,
    pub adjustments: Vec<Adjustment>,
    pub totals: Totals,
    pub flags: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// Distinct records selected.
    pub records: u64,
    /// `sha256:` over the sorted SHA-256 digests of the selected records' canonical forms.
    pub usage_digest: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tiers {
    pub metric: &'static str,
    pub mode: &'static str,
    pub bounds: Vec<String>,
    /// V, the exact total of the tier metric.
    pub volume: String,
    pub tiers: Vec<TierRow>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierRow {
    pub from: String,
    /// `None` for the last, unbounded tier.
    pub to: Option<String>,
    /// The part of V inside this tier.
    pub volume: String,
    /// fᵢ to 10 places, for information.
    pub fraction: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub model: String,
    pub use_case: String,
    pub region: String,
    pub exclusive: bool,
    pub records: u64,
    pub requests: u128,
    pub input_tokens: u128,
    pub output_tokens: u128,
    /// The line's revenue, rounded half to even for information.
    pub revenue: i128,
    /// The line's exact tier-metric volume.
    pub volume: String,
    /// Σ fᵢ·r(u, i) to 10 places, for information.
    pub blended_rate: String,
    /// The exclusivity uplift applied (exclusive lines only), for information.
    pub uplift: Option<String>,
    pub amount: i128,
    pub flags: Vec<String>,
}

/// A correction carried into a statement: a restated month or a resolved dispute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjustment {
    pub kind: String,
    pub reference: String,
    pub description: String,
    pub amount: i128,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub gross_revenue: i128,
    pub usage_subtotal: i128,
    pub minimum_true_up: i128,
    pub cap_reduction: i128,
    pub usage_total: i128,
    pub contribution_pool: i128,
    pub contribution_allocation: Vec<(PartyId, i128)>,
    pub host_credit: i128,
    pub adjustments: i128,
    pub net_payable: i128,
}

impl Statement {
    pub fn to_json(&self) -> Value {
        let money = |minor: i128| Value::String(self.currency.format(minor));
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                json!({
                    "model": l.model,
                    "use_case": l.use_case,
                    "region": l.region,
                    "exclusive": l.exclusive,
                    "records": l.records,
                    "requests": l.requests.to_string(),
                    "input_tokens": l.input_tokens.to_string(),
                    "output_tokens": l.output_tokens.to_string(),
                    "revenue": money(l.revenue),
                    "volume": l.volume,
                    "blended_rate": l.blended_rate,
                    "uplift": l.uplift,
                    "amount": money(l.amount),
                    "flags": l.flags,
                })
            })
            .collect();
        let tiers: Vec<Value> =
            self.tiers.tiers.iter().map(|t| json!({"from": t.from, "to": t.to, "volume": t.volume, "fraction": t.fraction})).collect();
        let adjustments: Vec<Value> = self
            .adjustments
            .iter()
            .map(|a| json!({"kind": a.kind, "reference": a.reference, "description": a.description, "amount": money(a.amount)}))
            .collect();
        let allocation: Map<String, Value> = self.totals.contribution_allocation.iter().map(|(p, a)| (p.to_string(), money(*a))).collect();
        let t = &self.totals;
        json!({
            "agreement": {"id": self.agreement_id, "version": self.agreement_version, "digest": self.agreement_digest},
            "period": self.period.to_string(),
            "currency": self.currency.code(),
            "inputs": {"records": self.inputs.records, "usage_digest": self.inputs.usage_digest},
            "tiers": {"metric": self.tiers.metric, "mode": self.tiers.mode, "bounds": self.tiers.bounds, "volume": self.tiers.volume, "tiers": tiers},
            "lines": lines,
            "adjustments": adjustments,
            "totals": {
                "gross_revenue": money(t.gross_revenue),
                "usage_subtotal": money(t.usage_subtotal),
                "minimum_true_up": money(t.minimum_true_up),
                "cap_reduction": money(t.cap_reduction),
                "usage_total": money(t.usage_total),
                "contribution_pool": money(t.contribution_pool),
                "contribution_allocation": allocation,
                "host_credit": money(t.host_credit),
                "adjustments": money(t.adjustments),
                "net_payable": money(t.net_payable),
            },
            "flags": self.flags,
        })
    }

    /// The statement's RFC 8785 bytes: the same inputs give the same bytes.
    pub fn to_canonical(&self) -> Result<Vec<u8>, CanonicalError> {
        canonical::to_canonical(&self.to_json())
    }

    /// `sha256:` of the canonical bytes.
    pub fn digest(&self) -> Result<String, CanonicalError> {
        self.to_canonical().map(|b| canonical::digest(&b))
    }
}
