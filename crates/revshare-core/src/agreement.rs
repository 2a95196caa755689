//! Agreement files (SPEC §2).
//!
//! The file is read into TOML's spanned document tree and walked by hand rather than through
//! `#[derive(Deserialize)]`: serde stops at the first error, and a finance engineer fixing an
//! agreement wants every problem of the file at once, each pointing at its line and column with
//! what would be right. The walk collects [`Problem`]s; only a file without any becomes an
//! [`Agreement`], whose fields are then valid by construction.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde_json::{Value, json};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::canonical;
use crate::decimal::Decimal;
use crate::ids::{AgreementId, IdError, ModelId, PartyId, Region, UseCase, is_use_case};
use crate::money::Currency;
use crate::time::{Instant, Period};

/// Days to answer a dispute when the agreement does not say (`dispute_response_days`).
pub const DEFAULT_DISPUTE_RESPONSE_DAYS: u32 = 14;

/// Days after a month ends before it may be closed, when the agreement does not say
/// (`close_after_days`, SPEC §10): late reports arrive first.
pub const DEFAULT_CLOSE_AFTER_DAYS: u32 = 3;

/// The most days an agreement may wait after a month ends before it may be closed.
const MAX_CLOSE_AFTER_DAYS: u64 = 366;

/// A validated agreement between one licensor and one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    pub(crate) id: AgreementId,
    pub(crate) version: u32,
    pub(crate) licensor: PartyId,
    pub(crate) host: PartyId,
    pub(crate) currency: Currency,
    pub(crate) effective_from: Instant,
    pub(crate) effective_to: Option<Instant>,
    pub(crate) models: Vec<ModelId>,
    pub(crate) minimum: Option<Decimal>,
    pub(crate) cap: Option<Decimal>,
    pub(crate) dispute_window_days: u32,
    /// Days a party has to answer a dispute before it escalates by itself (SPEC §8); `None`
    /// when the file does not say, which means [`DEFAULT_DISPUTE_RESPONSE_DAYS`].
    pub(crate) dispute_response_days: Option<u32>,
    pub(crate) mau_threshold: Option<u64>,
    /// Days after a month ends before it may be closed (SPEC §10); `None` when the file does not
    /// say, which means [`DEFAULT_CLOSE_AFTER_DAYS`].
    pub(crate) close_after_days: Option<u32>,
    /// The arbiters who decide this agreement's escalated disputes (SPEC §9); empty when the
    /// file names none (both parties then accept one per dispute).
    pub(crate) arbiters: Vec<PartyId>,
    pub(crate) pricing: Pricing,
    pub(crate) exclusivity: Vec<Exclusivity>,
    pub(crate) contributions: Option<ContributionTerms>,
    /// How derived models are priced (SPEC §11); `None` when the file has no `[derivatives]`,
    /// which means at the base model's rates, with no naming rule.
    pub(crate) derivatives: Option<Derivatives>,
    /// Use cases the agreement prohibits (SPEC §11), anywhere and at any time.
    pub(crate) prohibited_use_cases: Vec<UseCase>,
    /// `[[restrictions]]`: the scopes the agreement prohibits.
    pub(crate) restrictions: Vec<Restriction>,
}

/// Where a record falls among the agreement's scopes, as one index ([`Agreement::scopes`]): what
/// rollups and stored records keep. `None`: in no exclusivity scope and not restricted;
/// `Some(i)` below this: in exclusivity scope `i`; from this on: restricted, and in exclusivity
/// scope `k − RESTRICTED − 1` (or none, at `k = RESTRICTED`). An index written before
/// restrictions existed reads the same.
pub const RESTRICTED: usize = 1 << 16;

/// The most `[[exclusivity]]` scopes an agreement may have, so that [`RESTRICTED`] stays above them.
const MAX_EXCLUSIVITY_SCOPES: usize = 1000;

/// The scopes a record lies in ([`Agreement::scopes`]), read back from their index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scopes {
    /// The exclusivity scope it lies in.
    pub exclusive: Option<usize>,
    /// Whether it lies in a prohibited scope (`prohibited_use`).
    pub restricted: bool,
}

impl Scopes {
    pub fn from_index(index: Option<usize>) -> Scopes {
        match index {
            None => Scopes { exclusive: None, restricted: false },
            Some(i) if i < RESTRICTED => Scopes { exclusive: Some(i), restricted: false },
            Some(i) => Scopes { exclusive: (i - RESTRICTED).checked_sub(1), restricted: true },
        }
    }

    pub fn index(self) -> Option<usize> {
        match (self.exclusive, self.restricted) {
            (exclusive, false) => exclusive,
            (exclusive, true) => Some(RESTRICTED + exclusive.map_or(0, |i| i + 1)),
        }
    }
}

/// A prohibited scope (SPEC §11): usage inside it is settled and flagged `prohibited_use`.
/// `None` lists mean "all"; `from` and `to` bound it in time (half-open), each optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restriction {
    pub(crate) use_cases: Option<Vec<UseCase>>,
    pub(crate) regions: Option<Vec<Region>>,
    pub(crate) models: Option<Vec<ModelId>>,
    pub(crate) from: Option<Instant>,
    pub(crate) to: Option<Instant>,
}

impl Restriction {
    pub fn contains(&self, model: &str, use_case: &str, region: &str, time: Instant) -> bool {
        self.use_cases.as_ref().is_none_or(|u| u.iter().any(|x| x.as_str() == use_case))
            && self.regions.as_ref().is_none_or(|r| r.iter().any(|x| x.as_str() == region))
            && self.models.as_ref().is_none_or(|m| m.iter().any(|x| x.as_str() == model))
            && self.from.is_none_or(|from| from <= time)
            && self.to.is_none_or(|to| time < to)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    RevenueShare,
    PerUnit,
}

/// What the tiers are measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierMetric {
    Revenue,
    Requests,
    InputTokens,
    OutputTokens,
    Tokens,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierMode {
    Graduated,
    Volume,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pricing {
    pub(crate) basis: Basis,
    /// Units of `tier_metric` that a `per_unit` rate pays for; `None` for revenue_share.
    pub(crate) unit: Option<Decimal>,
    pub(crate) tier_metric: TierMetric,
    pub(crate) tier_mode: TierMode,
    pub(crate) tier_bounds: Vec<Decimal>,
    pub(crate) rates: BTreeMap<UseCase, Vec<Decimal>>,
    pub(crate) default_rates: Option<Vec<Decimal>>,
}

/// A scope in which the agreement's host holds exclusive rights; `None` lists mean "all".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exclusivity {
    pub(crate) use_case: UseCase,
    pub(crate) regions: Option<Vec<Region>>,
    pub(crate) models: Option<Vec<ModelId>>,
    pub(crate) from: Instant,
    pub(crate) to: Instant,
    pub(crate) uplift: Decimal,
}

/// `[derivatives]`: the rates of models derived from the agreement's models (SPEC §11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derivatives {
    /// Multiplies the base rates; `None` with rates of their own, or neither (factor 1).
    pub(crate) rate_factor: Option<Decimal>,
    /// `[derivatives.rates]`; a use case it does not list (and no `default` in it) keeps the
    /// base rates.
    pub(crate) rates: BTreeMap<UseCase, Vec<Decimal>>,
    pub(crate) default_rates: Option<Vec<Decimal>>,
    /// The prefix a derived model's id must start with.
    pub(crate) name_prefix: Option<String>,
}

/// A parsed table of rates per use case, and `default`.
#[derive(Default)]
struct RateTable {
    rates: BTreeMap<UseCase, Vec<Decimal>>,
    default_rates: Option<Vec<Decimal>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContributionTerms {
    pub(crate) pool: Decimal,
    pub(crate) points: BTreeMap<String, u64>,
}

impl TierMetric {
    const ALL: [TierMetric; 5] =
        [TierMetric::Revenue, TierMetric::Requests, TierMetric::InputTokens, TierMetric::OutputTokens, TierMetric::Tokens];

    pub fn name(&self) -> &'static str {
        match self {
            TierMetric::Revenue => "revenue",
            TierMetric::Requests => "requests",
            TierMetric::InputTokens => "input_tokens",
            TierMetric::OutputTokens => "output_tokens",
            TierMetric::Tokens => "tokens",
        }
    }

    /// The metric written `name` (as [`Self::name`] writes it).
    pub fn from_name(name: &str) -> Option<TierMetric> {
        TierMetric::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl TierMode {
    pub fn name(&self) -> &'static str {
        match self {
            TierMode::Graduated => "graduated",
            TierMode::Volume => "volume",
        }
    }

    /// The mode written `name` (as [`Self::name`] writes it).
    pub fn from_name(name: &str) -> Option<TierMode> {
        [TierMode::Graduated, TierMode::Volume].into_iter().find(|m| m.name() == name)
    }
}

impl Agreement {
    pub fn id(&self) -> &AgreementId {
        &self.id
    }
    pub fn version(&self) -> u32 {
        self.version
    }
    pub fn licensor(&self) -> &PartyId {
        &self.licensor
    }
    pub fn host(&self) -> &PartyId {
        &self.host
    }
    /// Days after a statement is finalised during which either party may dispute it.
    pub fn dispute_window_days(&self) -> u32 {
        self.dispute_window_days
    }

    /// Days a party has to answer a dispute (or a counter-offer) before it escalates by itself.
    pub fn dispute_response_days(&self) -> u32 {
        self.dispute_response_days.unwrap_or(DEFAULT_DISPUTE_RESPONSE_DAYS)
    }

    /// Days after a month ends before it may be closed.
    pub fn close_after_days(&self) -> u32 {
        self.close_after_days.unwrap_or(DEFAULT_CLOSE_AFTER_DAYS)
    }

    /// From when `period` may be closed: its end plus [`Self::close_after_days`].
    pub fn closes_from(&self, period: Period) -> Instant {
        period.end_exclusive().plus_days(self.close_after_days())
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }
    pub fn models(&self) -> &[ModelId] {
        &self.models
    }

    /// The arbiters the agreement names (`arbiters`), in the order written.
    pub fn arbiters(&self) -> &[PartyId] {
        &self.arbiters
    }
    pub fn effective_from(&self) -> Instant {
        self.effective_from
    }
    pub fn effective_to(&self) -> Option<Instant> {
        self.effective_to
    }
    pub fn exclusivity(&self) -> &[Exclusivity] {
        &self.exclusivity
    }
    /// The use cases the pricing names a rate for, sorted.
    pub fn rated_use_cases(&self) -> impl Iterator<Item = &str> {
        self.pricing.rates.keys().map(UseCase::as_str)
    }
    /// Whether use cases the pricing does not name are priced (`default` rates), or refused.
    pub fn has_default_rates(&self) -> bool {
        self.pricing.default_rates.is_some()
    }
    pub fn tier_metric(&self) -> TierMetric {
        self.pricing.tier_metric
    }
    /// The contribution kinds the agreement's `[contributions]` section lists, sorted (none
    /// without the section).
    pub fn contribution_kinds(&self) -> impl Iterator<Item = &str> {
        self.contributions.iter().flat_map(|t| t.points.keys().map(String::as_str))
    }

    /// Whether the agreement is in effect for at least part of the month.
    pub fn covers(&self, period: Period) -> bool {
        self.effective_from < period.end_exclusive() && self.effective_to.is_none_or(|to| period.start() < to)
    }

    /// Whether a record time lies in [effective_from, effective_to).
    pub fn in_effect_at(&self, time: Instant) -> bool {
        self.effective_from <= time && self.effective_to.is_none_or(|to| time < to)
    }

    /// The index of the exclusivity scope holding a record, if any (scopes never overlap).
    /// Where a record falls: the exclusivity scope it lies in, and whether it is restricted
    /// (SPEC §11), as one index ([`Scopes`]).
    pub fn scopes(&self, model: &str, use_case: &str, region: &str, time: Instant) -> Option<usize> {
        let exclusive = self.exclusivity.iter().position(|s| s.contains(model, use_case, region, time));
        let restricted = self.prohibited_use_cases.iter().any(|u| u.as_str() == use_case)
            || self.restrictions.iter().any(|r| r.contains(model, use_case, region, time));
        Scopes { exclusive, restricted }.index()
    }

    /// The canonical JSON form of the agreement: what its digest is taken over, so that the
    /// digest depends on what the agreement says, not on how its TOML is laid out.
    pub fn to_canonical_json(&self) -> Value {
        let decimals = |v: &[Decimal]| v.iter().map(|d| Value::String(d.to_string())).collect::<Vec<_>>();
        let rates: serde_json::Map<String, Value> = self
            .pricing
            .rates
            .iter()
            .map(|(k, v)| (k.to_string(), Value::Array(decimals(v))))
            .chain(self.pricing.default_rates.iter().map(|v| ("default".to_owned(), Value::Array(decimals(v)))))
            .collect();
        let exclusivity: Vec<Value> = self
            .exclusivity
            .iter()
            .map(|s| {
                json!({
                    "use_case": s.use_case.as_str(),
                    "regions": s.regions.as_ref().map(|r| r.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
                    "models": s.models.as_ref().map(|m| m.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
                    "from": s.from.to_string(),
                    "to": s.to.to_string(),
                    "uplift": s.uplift.to_string(),
                })
            })
            .collect();
        let mut form = json!({
            "id": self.id.as_str(),
            "version": self.version,
            "licensor": self.licensor.as_str(),
            "host": self.host.as_str(),
            "currency": self.currency.code(),
            "effective_from": self.effective_from.to_string(),
            "effective_to": self.effective_to.map(|t| t.to_string()),
            "models": self.models.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            "minimum": self.minimum.map(|d| d.to_string()),
            "cap": self.cap.map(|d| d.to_string()),
            "dispute_window_days": self.dispute_window_days,
            "mau_threshold": self.mau_threshold.map(|m| m.to_string()),
            "pricing": {
                "basis": match self.pricing.basis { Basis::RevenueShare => "revenue_share", Basis::PerUnit => "per_unit" },
                "unit": self.pricing.unit.map(|d| d.to_string()),
                "tier_metric": self.pricing.tier_metric.name(),
                "tier_mode": self.pricing.tier_mode.name(),
                "tier_bounds": decimals(&self.pricing.tier_bounds),
                "rates": rates,
            },
            "exclusivity": exclusivity,
            "contributions": self.contributions.as_ref().map(|c| json!({
                "pool": c.pool.to_string(),
                "points": c.points.iter().map(|(k, v)| (k.clone(), Value::String(v.to_string()))).collect::<serde_json::Map<_, _>>(),
            })),
        });
        // Only when written: an agreement that does not say keeps the digest it always had.
        if let (false, Some(map)) = (self.arbiters.is_empty(), form.as_object_mut()) {
            map.insert("arbiters".to_owned(), self.arbiters.iter().map(|a| Value::String(a.as_str().to_owned())).collect());
        }
        if let (Some(days), Some(map)) = (self.dispute_response_days, form.as_object_mut()) {
            map.insert("dispute_response_days".to_owned(), Value::from(days));
        }
        if let (Some(days), Some(map)) = (self.close_after_days, form.as_object_mut()) {
            map.insert("close_after_days".to_owned(), Value::from(days));
        }
        if let (Some(d), Some(map)) = (&self.derivatives, form.as_object_mut()) {
            let rates: serde_json::Map<String, Value> = d
                .rates
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Array(decimals(v))))
                .chain(d.default_rates.iter().map(|v| ("default".to_owned(), Value::Array(decimals(v)))))
                .collect();
            let derivatives = json!({
                "rate_factor": d.rate_factor.map(|f| f.to_string()),
                "rates": rates,
                "name_prefix": d.name_prefix.as_deref(),
            });
            map.insert("derivatives".to_owned(), derivatives);
        }
        if let (false, Some(map)) = (self.prohibited_use_cases.is_empty(), form.as_object_mut()) {
            map.insert("prohibited_use_cases".to_owned(), self.prohibited_use_cases.iter().map(|u| Value::String(u.to_string())).collect());
        }
        if let (false, Some(map)) = (self.restrictions.is_empty(), form.as_object_mut()) {
            let names = |list: Option<Vec<&str>>| list.map(|l| l.into_iter().map(|x| Value::String(x.to_owned())).collect::<Vec<_>>());
            let restrictions: Vec<Value> = self
                .restrictions
                .iter()
                .map(|r| {
                    json!({
                        "use_cases": names(r.use_cases.as_ref().map(|l| l.iter().map(UseCase::as_str).collect())),
                        "regions": names(r.regions.as_ref().map(|l| l.iter().map(Region::as_str).collect())),
                        "models": names(r.models.as_ref().map(|l| l.iter().map(ModelId::as_str).collect())),
                        "from": r.from.map(|t| t.to_string()),
                        "to": r.to.map(|t| t.to_string()),
                    })
                })
                .collect();
            map.insert("restrictions".to_owned(), Value::Array(restrictions));
        }
        form
    }

    /// `sha256:` of the canonical JSON form.
    pub fn digest(&self) -> String {
        // The canonical form holds only strings and small integers, so it always canonicalises.
        canonical::to_canonical(&self.to_canonical_json()).map(|b| canonical::digest(&b)).unwrap_or_default()
    }
}

impl Exclusivity {
    /// The regions the scope names (`None`: every region).
    pub fn regions(&self) -> Option<impl Iterator<Item = &str>> {
        self.regions.as_ref().map(|r| r.iter().map(Region::as_str))
    }

    pub fn contains(&self, model: &str, use_case: &str, region: &str, time: Instant) -> bool {
        self.use_case.as_str() == use_case
            && self.from <= time
            && time < self.to
            && self.regions.as_ref().is_none_or(|r| r.iter().any(|x| x.as_str() == region))
            && self.models.as_ref().is_none_or(|m| m.iter().any(|x| x.as_str() == model))
    }

    /// Whether two scopes share a use case, a region, a model and an instant.
    pub fn overlaps(&self, other: &Exclusivity) -> bool {
        fn lists_meet<T: PartialEq>(a: &Option<Vec<T>>, b: &Option<Vec<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => a.iter().any(|x| b.contains(x)),
                _ => true,
            }
        }
        self.use_case == other.use_case
            && self.from < other.to
            && other.from < self.to
            && lists_meet(&self.regions, &other.regions)
            && lists_meet(&self.models, &other.models)
    }

    pub fn uplift(&self) -> Decimal {
        self.uplift
    }
}

/// One problem in an agreement file, at a byte span.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct Problem {
    pub message: String,
    #[label("{label}")]
    pub span: SourceSpan,
    pub label: String,
    #[help]
    pub help: Option<String>,
}

/// Every problem of one agreement file.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{name}: {count} problem{s} in the agreement", count = problems.len(), s = if problems.len() == 1 { "" } else { "s" })]
pub struct AgreementErrors {
    name: String,
    #[source_code]
    source_code: NamedSource<String>,
    #[related]
    pub problems: Vec<Problem>,
}

impl AgreementErrors {
    /// `file:line:column: message` lines with their help, one problem after another: the form
    /// for logs, tests and anything that is not a terminal.
    pub fn render_plain(&self) -> String {
        let text = self.source_code.inner();
        let mut out = String::new();
        for p in &self.problems {
            let (line, column) = line_column(text, p.span.offset());
            let _ = writeln!(out, "{}:{line}:{column}: {}", self.name, p.message);
            if let Some(help) = &p.help {
                let _ = writeln!(out, "  help: {help}");
            }
        }
        out
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Parses and validates an agreement file. `name` is how errors name the file.
pub fn parse_agreement(name: &str, text: &str) -> Result<Agreement, AgreementErrors> {
    let mut walk = Walk { problems: Vec::new() };
    let agreement = match DeTable::parse(text) {
        Ok(root) => walk.agreement(&root),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            walk.problem(span, e.message().trim_end().to_owned(), "not valid TOML here", Some("fix the TOML syntax".to_owned()));
            None
        }
    };
    match agreement {
        Some(a) if walk.problems.is_empty() => Ok(a),
        _ => {
            let mut problems = walk.problems;
            problems.sort_by_key(|p| p.span.offset());
            Err(AgreementErrors { name: name.to_owned(), source_code: NamedSource::new(name, text.to_owned()), problems })
        }
    }
}

type Entry<'t, 'i> = (&'t Spanned<Cow<'i, str>>, &'t Spanned<DeValue<'i>>);

struct Walk {
    problems: Vec<Problem>,
}

impl Walk {
    fn problem(&mut self, span: Range<usize>, message: String, label: &str, help: Option<String>) {
        let span = SourceSpan::from(span.start..span.end.max(span.start));
        self.problems.push(Problem { message, span, label: label.to_owned(), help });
    }

    /// Reports keys of `table` not in `allowed`, naming the table.
    fn known_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        for (key, _) in table.iter() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                self.problem(
                    key.span(),
                    format!("unknown key `{}` in {context}", key.get_ref()),
                    "unknown key",
                    Some(format!("the keys allowed here are: {}", allowed.join(", "))),
                );
            }
        }
    }

    fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<Entry<'t, 'i>> {
        table.iter().find(|(k, _)| k.get_ref() == key)
    }

    fn missing(&mut self, at: &Range<usize>, key: &str, context: &str, example: &str) {
        self.problem(
            at.start..at.start,
            format!("missing key `{key}` in {context}"),
            "required key missing",
            Some(format!("add {key} = {example}")),
        );
    }

    fn wrong_type(&mut self, key: &Spanned<Cow<'_, str>>, value: &Spanned<DeValue<'_>>, want: &str, example: &str) {
        let help = match value.get_ref() {
            DeValue::Float(f) => format!("write it as a string: \"{}\" (binary floats are never used for money or rates)", f.as_str()),
            _ => format!("for example {} = {example}", key.get_ref()),
        };
        let found = type_name(value.get_ref());
        self.problem(value.span(), format!("`{}` must be {want}, not {found}", key.get_ref()), "wrong type", Some(help));
    }

    fn string<'t>(
        &mut self,
        table: &'t DeTable<'_>,
        at: &Range<usize>,
        key: &str,
        context: &str,
        example: &str,
    ) -> Option<(&'t str, Range<usize>)> {
        match Self::get(table, key) {
            None => {
                self.missing(at, key, context, example);
                None
            }
            Some((_, v)) => match v.get_ref() {
                DeValue::String(s) => Some((s.as_ref(), v.span())),
                _ => {
                    let k = Self::get(table, key).map(|(k, _)| k);
                    if let Some(k) = k {
                        self.wrong_type(k, v, "a string", example);
                    }
                    None
                }
            },
        }
    }

    fn id<T>(&mut self, parsed: Result<T, IdError>, span: Range<usize>) -> Option<T> {
        parsed.map_err(|e| self.problem(span, e.to_string(), "invalid id", None)).ok()
    }

    /// A decimal written as a string or an integer; a float is refused with the fix.
    fn decimal_value(&mut self, key: &Spanned<Cow<'_, str>>, value: &Spanned<DeValue<'_>>, example: &str) -> Option<Decimal> {
        let text = match value.get_ref() {
            DeValue::String(s) => s.as_ref().to_owned(),
            DeValue::Integer(i) if i.radix() == 10 => i.as_str().replace('_', ""),
            DeValue::Float(f) => {
                self.problem(
                    value.span(),
                    format!("`{}` is a TOML float; binary floats are never used for money or rates", f.as_str()),
                    "TOML float",
                    Some(format!("write it as a string: \"{}\"", f.as_str())),
                );
                return None;
            }
            _ => {
                self.wrong_type(key, value, "a decimal string", example);
                return None;
            }
        };
        Decimal::parse(&text)
            .map_err(|e| {
                let help = Some(format!("for example {} = {example}", key.get_ref()));
                self.problem(value.span(), format!("`{}`: {e}", key.get_ref()), "not a valid decimal", help)
            })
            .ok()
    }

    fn decimal(&mut self, table: &DeTable<'_>, key: &str, example: &str) -> Option<(Decimal, Range<usize>)> {
        let (k, v) = Self::get(table, key)?;
        self.decimal_value(k, v, example).map(|d| (d, v.span()))
    }

    fn integer(&mut self, table: &DeTable<'_>, key: &str, example: &str) -> Option<(u64, Range<usize>)> {
        let (k, v) = Self::get(table, key)?;
        match v.get_ref() {
            DeValue::Integer(i) => match u64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                Ok(n) => Some((n, v.span())),
                Err(_) => {
                    self.problem(
                        v.span(),
                        format!("`{key}` must be a whole number of zero or more"),
                        "not a non-negative integer",
                        Some(format!("for example {key} = {example}")),
                    );
                    None
                }
            },
            _ => {
                self.wrong_type(k, v, "an integer", example);
                None
            }
        }
    }

    /// A date or time: a TOML date (midnight UTC), a TOML offset date-time, or the same as a string.
    fn instant(&mut self, table: &DeTable<'_>, key: &str) -> Option<(Instant, Range<usize>)> {
        let (k, v) = Self::get(table, key)?;
        let help = Some("write a date like 2026-10-15 or an RFC 3339 time like 2026-10-15T00:00:00Z".to_owned());
        let parsed = match v.get_ref() {
            DeValue::Datetime(dt) => {
                datetime_instant(dt).ok_or_else(|| format!("`{key}` = {dt} is not a UTC date or a time with an offset"))
            }
            DeValue::String(s) => parse_date_or_time(s).ok_or_else(|| format!("`{key}` = \"{s}\" is not a date or an RFC 3339 time")),
            _ => {
                self.wrong_type(k, v, "a date", "2026-10-15");
                return None;
            }
        };
        parsed.map(|i| (i, v.span())).map_err(|m| self.problem(v.span(), m, "bad date", help)).ok()
    }

    /// An optional list of ids: `Some(None)` when absent (all), `None` when it is wrong.
    fn optional_ids<T>(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        parse: fn(&str) -> Result<T, IdError>,
        example: &str,
    ) -> Option<Option<Vec<T>>> {
        match Self::get(table, key) {
            Some(_) => self.id_list(table, key, parse, example).map(|(ids, _)| Some(ids)),
            None => Some(None),
        }
    }

    /// A list of ids.
    fn id_list<T>(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        parse: fn(&str) -> Result<T, IdError>,
        example: &str,
    ) -> Option<(Vec<T>, Range<usize>)> {
        let (k, v) = Self::get(table, key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(k, v, "a list of strings", example);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match item.get_ref() {
                DeValue::String(s) => match parse(s) {
                    Ok(id) => out.push(id),
                    Err(e) => {
                        ok = false;
                        self.problem(item.span(), e.to_string(), "invalid id", None);
                    }
                },
                other => {
                    ok = false;
                    self.problem(
                        item.span(),
                        format!("items of `{key}` must be strings, not {}", type_name(other)),
                        "wrong type",
                        Some(format!("for example {key} = {example}")),
                    );
                }
            }
        }
        if out.is_empty() && ok {
            self.problem(
                v.span(),
                format!("`{key}` is empty"),
                "empty list",
                Some(if key == "arbiters" {
                    "name at least one, or leave `arbiters` out and accept an arbiter per dispute".to_owned()
                } else {
                    format!("list at least one, or leave `{key}` out to mean all")
                }),
            );
            return None;
        }
        ok.then_some((out, v.span()))
    }

    fn agreement(&mut self, root: &Spanned<DeTable<'_>>) -> Option<Agreement> {
        const KEYS: &[&str] = &[
            "id",
            "version",
            "licensor",
            "host",
            "currency",
            "effective_from",
            "effective_to",
            "models",
            "minimum",
            "cap",
            "dispute_window_days",
            "dispute_response_days",
            "close_after_days",
            "mau_threshold",
            "arbiters",
            "pricing",
            "exclusivity",
            "contributions",
            "derivatives",
            "prohibited_use_cases",
            "restrictions",
        ];
        let at = root.span();
        let table = root.get_ref();
        self.known_keys(table, KEYS, "the agreement");
        let ctx = "the agreement";

        let id = self.string(table, &at, "id", ctx, "\"licensor-host\"").and_then(|(s, sp)| self.id(AgreementId::parse(s), sp));
        let version = match self.integer(table, "version", "1") {
            Some((0, sp)) => {
                self.problem(
                    sp,
                    "`version` must be 1 or more".to_owned(),
                    "version 0",
                    Some("the first version is 1; each amendment adds one".to_owned()),
                );
                None
            }
            Some((v, sp)) => u32::try_from(v).map_err(|_| self.problem(sp, "`version` is too large".to_owned(), "too large", None)).ok(),
            None if Self::get(table, "version").is_none() => {
                self.missing(&at, "version", ctx, "1");
                None
            }
            None => None,
        };
        let licensor = self.string(table, &at, "licensor", ctx, "\"meridian\"").and_then(|(s, sp)| self.id(PartyId::parse(s), sp));
        let host_entry = self.string(table, &at, "host", ctx, "\"northwind\"");
        let host = host_entry.clone().and_then(|(s, sp)| self.id(PartyId::parse(s), sp));
        if let (Some(l), Some(h), Some((_, sp))) = (&licensor, &host, &host_entry)
            && l == h
        {
            self.problem(
                sp.clone(),
                "the host and the licensor are the same party".to_owned(),
                "same as licensor",
                Some("an agreement is between a licensor and a different host".to_owned()),
            );
        }
        let currency = self
            .string(table, &at, "currency", ctx, "\"USD\"")
            .and_then(|(s, sp)| Currency::parse(s).map_err(|e| self.problem(sp, e.to_string(), "unknown currency", None)).ok());
        let effective_from = self.instant(table, "effective_from");
        if Self::get(table, "effective_from").is_none() {
            self.missing(&at, "effective_from", ctx, "2026-01-01");
        }
        let effective_to = self.instant(table, "effective_to");
        if let (Some((from, _)), Some((to, sp))) = (&effective_from, &effective_to)
            && to <= from
        {
            self.problem(
                sp.clone(),
                format!("effective_to ({to}) is not after effective_from ({from})"),
                "not after effective_from",
                Some("effective_to is the first instant the agreement no longer applies; it must be later than effective_from".to_owned()),
            );
        }
        let models = self.id_list(table, "models", ModelId::parse, "[\"m-8b\", \"m-70b\"]").map(|(m, _)| m);
        if Self::get(table, "models").is_none() {
            self.missing(&at, "models", ctx, "[\"m-8b\", \"m-70b\"]");
        }
        let minimum = self.decimal(table, "minimum", "\"500.00\"");
        let cap = self.decimal(table, "cap", "\"10000.00\"");
        for (name, value) in [("minimum", &minimum), ("cap", &cap)] {
            if let (Some((d, sp)), Some(c)) = (value, &currency)
                && c.to_minor(d).is_none()
            {
                self.problem(
                    sp.clone(),
                    format!("`{name}` {d} has more decimal places than {c} allows ({})", c.minor_units()),
                    "too many decimal places",
                    Some(format!("write {name} in whole minor units of {c}")),
                );
            }
        }
        if let (Some((min, _)), Some((cap_value, sp))) = (&minimum, &cap)
            && cap_value < min
        {
            self.problem(
                sp.clone(),
                format!("cap {cap_value} is below minimum {min}"),
                "below the minimum",
                Some("the cap limits what the licensor receives and must be at least the minimum".to_owned()),
            );
        }
        let dispute_window_days = match self.integer(table, "dispute_window_days", "30") {
            Some((d, sp)) => {
                u32::try_from(d).map_err(|_| self.problem(sp, "`dispute_window_days` is too large".to_owned(), "too large", None)).ok()
            }
            None => {
                if Self::get(table, "dispute_window_days").is_none() {
                    self.missing(&at, "dispute_window_days", ctx, "30");
                }
                None
            }
        };
        let dispute_response_days = self.integer(table, "dispute_response_days", "14").and_then(|(d, sp)| match u32::try_from(d) {
            Ok(d) if d >= 1 => Some(d),
            _ => {
                self.problem(
                    sp,
                    format!("`dispute_response_days` is {d}"),
                    "out of range",
                    Some("write a whole number of days from 1".to_owned()),
                );
                None
            }
        });
        let close_after_days = self.integer(table, "close_after_days", "3").and_then(|(d, sp)| match u32::try_from(d) {
            Ok(d) if u64::from(d) <= MAX_CLOSE_AFTER_DAYS => Some(d),
            _ => {
                self.problem(
                    sp,
                    format!("`close_after_days` is {d}"),
                    "out of range",
                    Some(format!("write a whole number of days from 0 to {MAX_CLOSE_AFTER_DAYS}")),
                );
                None
            }
        });
        let mau_threshold = self.integer(table, "mau_threshold", "700000000").map(|(m, _)| m);
        let arbiters = match Self::get(table, "arbiters") {
            Some(_) => self.id_list(table, "arbiters", PartyId::parse, "[\"arbitration-house\"]").map(|(a, _)| a),
            None => Some(Vec::new()),
        };

        let pricing = match Self::get(table, "pricing") {
            Some((_, v)) => match v.get_ref() {
                DeValue::Table(t) => self.pricing(t, v.span()),
                _ => {
                    self.problem(
                        v.span(),
                        "`pricing` must be a table".to_owned(),
                        "not a table",
                        Some("write it as a [pricing] section".to_owned()),
                    );
                    None
                }
            },
            None => {
                self.missing(&at, "pricing", ctx, "{ basis = \"revenue_share\", … } (a [pricing] section)");
                None
            }
        };
        let exclusivity = self.exclusivity(table, pricing.as_ref());
        let contributions = match Self::get(table, "contributions") {
            Some((_, v)) => match v.get_ref() {
                DeValue::Table(t) => self.contributions(t, v.span()),
                _ => {
                    self.problem(
                        v.span(),
                        "`contributions` must be a table".to_owned(),
                        "not a table",
                        Some("write it as a [contributions] section".to_owned()),
                    );
                    None
                }
            },
            None => None,
        };
        let contributions_ok = Self::get(table, "contributions").is_none() || contributions.is_some();
        let derivatives = self.derivatives(table, pricing.as_ref());
        let restrictions = self.restrictions(table);

        Some(Agreement {
            id: id?,
            version: version?,
            licensor: licensor?,
            host: host?,
            currency: currency?,
            effective_from: effective_from?.0,
            effective_to: match (Self::get(table, "effective_to"), effective_to) {
                (None, _) => None,
                (Some(_), parsed) => Some(parsed?.0),
            },
            models: models?,
            minimum: minimum.map(|m| m.0),
            cap: cap.map(|c| c.0),
            dispute_window_days: dispute_window_days?,
            dispute_response_days,
            close_after_days,
            mau_threshold,
            arbiters: arbiters?,
            pricing: pricing?,
            exclusivity: exclusivity?,
            contributions: if contributions_ok { contributions } else { None },
            derivatives: derivatives?,
            prohibited_use_cases: restrictions.as_ref()?.0.clone(),
            restrictions: restrictions?.1,
        })
    }

    fn pricing(&mut self, table: &DeTable<'_>, at: Range<usize>) -> Option<Pricing> {
        const KEYS: &[&str] = &["basis", "unit", "tier_metric", "tier_mode", "tier_bounds", "rates"];
        let ctx = "[pricing]";
        self.known_keys(table, KEYS, ctx);
        let basis = self.string(table, &at, "basis", ctx, "\"revenue_share\"").and_then(|(s, sp)| match s {
            "revenue_share" => Some(Basis::RevenueShare),
            "per_unit" => Some(Basis::PerUnit),
            other => {
                self.problem(
                    sp,
                    format!("unknown basis `{other}`"),
                    "unknown basis",
                    Some(
                        "use \"revenue_share\" (rates are fractions of revenue) or \"per_unit\" (money per `unit` of tier_metric)"
                            .to_owned(),
                    ),
                );
                None
            }
        });
        let tier_metric = self.string(table, &at, "tier_metric", ctx, "\"tokens\"").and_then(|(s, sp)| match TierMetric::from_name(s) {
            Some(metric) => Some(metric),
            None => {
                let other = s;
                self.problem(
                    sp,
                    format!("unknown tier_metric `{other}`"),
                    "unknown metric",
                    Some("use one of revenue, requests, input_tokens, output_tokens, tokens".to_owned()),
                );
                None
            }
        });
        let tier_mode = self.string(table, &at, "tier_mode", ctx, "\"graduated\"").and_then(|(s, sp)| match TierMode::from_name(s) {
            Some(mode) => Some(mode),
            None => {
                let other = s;
                self.problem(
                    sp,
                    format!("unknown tier_mode `{other}`"),
                    "unknown mode",
                    Some(
                        "use \"graduated\" (each tier's rate on the part inside it) or \"volume\" (one tier's rate on everything)"
                            .to_owned(),
                    ),
                );
                None
            }
        });
        let unit = self.decimal(table, "unit", "\"1000000\"");
        match (basis, &unit) {
            (Some(Basis::PerUnit), None) if Self::get(table, "unit").is_none() => self.problem(
                at.start..at.start,
                "basis = \"per_unit\" needs `unit`".to_owned(),
                "unit missing",
                Some("add unit = \"1000000\": rates are money per that many units of tier_metric".to_owned()),
            ),
            (Some(Basis::PerUnit), Some((u, sp))) if u.is_zero() => {
                self.problem(
                    sp.clone(),
                    "`unit` must be more than zero".to_owned(),
                    "zero unit",
                    Some("for example unit = \"1000000\"".to_owned()),
                );
            }
            (Some(Basis::RevenueShare), Some((_, sp))) => self.problem(
                sp.clone(),
                "`unit` only applies to basis = \"per_unit\"".to_owned(),
                "not used by revenue_share",
                Some("remove `unit`, or set basis = \"per_unit\"".to_owned()),
            ),
            _ => {}
        }
        if let (Some(Basis::PerUnit), Some(TierMetric::Revenue)) = (basis, tier_metric) {
            let sp = Self::get(table, "tier_metric").map_or(at.clone(), |(_, v)| v.span());
            self.problem(
                sp,
                "basis = \"per_unit\" cannot use tier_metric = \"revenue\"".to_owned(),
                "per_unit on revenue",
                Some("price revenue with basis = \"revenue_share\", or choose requests, input_tokens, output_tokens or tokens".to_owned()),
            );
        }

        // Bounds: strictly increasing, positive.
        let mut bounds_ok = true;
        let mut tier_bounds = Vec::new();
        if let Some((k, v)) = Self::get(table, "tier_bounds") {
            match v.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        match self.decimal_value(k, item, "[\"1000000000\"]") {
                            Some(b) => {
                                if b.is_zero() {
                                    bounds_ok = false;
                                    self.problem(
                                        item.span(),
                                        format!("tier bound {} is zero; bounds must be positive", i + 1),
                                        "zero bound",
                                        Some("each bound is the upper end of a tier, so the first must be more than zero".to_owned()),
                                    );
                                } else if let Some(prev) = tier_bounds.last().filter(|p| **p >= b) {
                                    bounds_ok = false;
                                    self.problem(
                                        item.span(),
                                        format!("tier bound {} ({b}) is not greater than bound {} ({prev})", i + 1, i),
                                        "not increasing",
                                        Some("tier_bounds must be strictly increasing upper bounds".to_owned()),
                                    );
                                }
                                tier_bounds.push(b);
                            }
                            None => bounds_ok = false,
                        }
                    }
                }
                _ => {
                    bounds_ok = false;
                    self.wrong_type(k, v, "a list of decimal strings", "[\"1000000000\", \"5000000000\"]");
                }
            }
        } else {
            self.missing(&at, "tier_bounds", ctx, "[] (one tier) or [\"1000000000\"] (two tiers)");
            bounds_ok = false;
        }

        // Rates: one per tier for each use case, in [0, 1] for revenue_share.
        let rate_table = match Self::get(table, "rates") {
            None => {
                self.missing(&at, "rates", ctx, "{ customer_service = [\"0.20\"] } (a [pricing.rates] section)");
                None
            }
            Some((_, v)) => self.rate_table(v, "[pricing.rates]", basis, bounds_ok.then_some(tier_bounds.len() + 1)),
        };
        let rates_ok = rate_table.is_some();
        let RateTable { rates, default_rates } = rate_table.unwrap_or_default();
        if !(bounds_ok && rates_ok) {
            return None;
        }
        Some(Pricing {
            basis: basis?,
            unit: unit.map(|u| u.0),
            tier_metric: tier_metric?,
            tier_mode: tier_mode?,
            tier_bounds,
            rates,
            default_rates,
        })
    }

    /// A table of rates (`[pricing.rates]`, `[derivatives.rates]`): for each use case (or
    /// `default`), one rate per tier (`tiers`, when the bounds parsed), in [0, 1] for
    /// revenue_share. `None` when anything in it is wrong, each problem reported.
    fn rate_table(&mut self, v: &Spanned<DeValue<'_>>, section: &str, basis: Option<Basis>, tiers: Option<usize>) -> Option<RateTable> {
        let DeValue::Table(t) = v.get_ref() else {
            self.problem(v.span(), "`rates` must be a table".to_owned(), "not a table", Some(format!("write it as a {section} section")));
            return None;
        };
        let mut table = RateTable::default();
        let mut ok = true;
        for (key, value) in t.iter() {
            let name = key.get_ref().as_ref();
            if name != "default" && !is_use_case(name) {
                ok = false;
                self.problem(
                    key.span(),
                    format!("`{name}` is not a valid use case name"),
                    "invalid use case",
                    Some("use a-z 0-9 _ starting with a letter, like customer_service; or `default` for use cases not listed".to_owned()),
                );
                continue;
            }
            let DeValue::Array(items) = value.get_ref() else {
                ok = false;
                self.wrong_type(key, value, "a list of rates, one per tier", "[\"0.20\", \"0.17\"]");
                continue;
            };
            let mut list = Vec::new();
            for item in items {
                match self.decimal_value(key, item, "[\"0.20\"]") {
                    Some(r) => {
                        if basis == Some(Basis::RevenueShare) && r > Decimal::ONE {
                            ok = false;
                            self.problem(
                                item.span(),
                                format!("rate {r} of `{name}` is outside [0, 1]"),
                                "above 1",
                                Some("a revenue_share rate is a fraction of revenue: \"0.15\" means 15%".to_owned()),
                            );
                        }
                        list.push(r);
                    }
                    None => ok = false,
                }
            }
            if let Some(tiers) = tiers.filter(|tiers| list.len() != *tiers && items.len() == list.len()) {
                ok = false;
                let plural = |n: usize| if n == 1 { "" } else { "s" };
                self.problem(
                    value.span(),
                    format!("`{name}` has {} rate{} but the agreement has {tiers} tier{}", list.len(), plural(list.len()), plural(tiers)),
                    "wrong number of rates",
                    Some(format!(
                        "give one rate per tier: tier_bounds has {} bound{}, so {tiers} rate{}",
                        tiers - 1,
                        plural(tiers - 1),
                        plural(tiers)
                    )),
                );
            }
            if name == "default" {
                table.default_rates = Some(list);
            } else if let Ok(uc) = UseCase::parse(name) {
                table.rates.insert(uc, list);
            }
        }
        if t.is_empty() {
            ok = false;
            self.problem(
                v.span(),
                format!("{section} lists no use case"),
                "no rates",
                Some("add at least one, like customer_service = [\"0.20\"], or default = [...]".to_owned()),
            );
        }
        ok.then_some(table)
    }

    /// `[derivatives]` (SPEC §11): how models derived from the agreement's models are priced —
    /// a `rate_factor` on the base rates or `rates` of their own (not both) — and the prefix
    /// their ids must start with.
    fn derivatives(&mut self, root: &DeTable<'_>, pricing: Option<&Pricing>) -> Option<Option<Derivatives>> {
        const KEYS: &[&str] = &["rate_factor", "rates", "name_prefix"];
        let ctx = "[derivatives]";
        let Some((k, v)) = Self::get(root, "derivatives") else { return Some(None) };
        let DeValue::Table(table) = v.get_ref() else {
            self.wrong_type(k, v, "a table", "{ rate_factor = \"0.8\" } (a [derivatives] section)");
            return None;
        };
        self.known_keys(table, KEYS, ctx);
        let rate_factor = self.decimal(table, "rate_factor", "\"0.8\"");
        let mut ok = Self::get(table, "rate_factor").is_none() || rate_factor.is_some();
        let rates = Self::get(table, "rates").map(|(_, v)| {
            let tiers = pricing.map(|p| p.tier_bounds.len() + 1);
            self.rate_table(v, "[derivatives.rates]", pricing.map(|p| p.basis), tiers)
        });
        if let (Some((_, sp)), Some(_)) = (&rate_factor, &rates) {
            ok = false;
            self.problem(
                sp.clone(),
                "[derivatives] has both `rate_factor` and `rates`".to_owned(),
                "choose one",
                Some("give a rate_factor that multiplies the base rates, or [derivatives.rates] of their own, not both".to_owned()),
            );
        }
        let name_prefix = match Self::get(table, "name_prefix") {
            None => None,
            Some((key, value)) => match value.get_ref() {
                DeValue::String(text) if ModelId::parse(text).is_ok() => Some(text.to_string()),
                DeValue::String(text) => {
                    ok = false;
                    self.problem(
                        value.span(),
                        format!("`name_prefix` \"{text}\" cannot start a model id"),
                        "not a model id prefix",
                        Some("a model id is a-z 0-9 _ - . starting with a letter or digit: for example name_prefix = \"llama\"".to_owned()),
                    );
                    None
                }
                _ => {
                    ok = false;
                    self.wrong_type(key, value, "a string", "\"llama\"");
                    None
                }
            },
        };
        let RateTable { rates, default_rates } = match rates {
            Some(table) => table?,
            None => RateTable::default(),
        };
        if !ok {
            return None;
        }
        Some(Some(Derivatives { rate_factor: rate_factor.map(|(f, _)| f), rates, default_rates, name_prefix }))
    }

    /// The tables of an array of tables (`[[exclusivity]]`): each with its number (from 1), the
    /// name problems call it by (`{noun} {n}`), the table and its span; its keys checked against
    /// `keys`. No key is no tables; `None` when the key is not a list. An item that is not a table
    /// is reported and left out, and clears `ok`.
    #[allow(clippy::type_complexity, reason = "one use of the shape, named in the doc")]
    fn tables<'t, 'i>(
        &mut self,
        root: &'t DeTable<'i>,
        key: &str,
        noun: &str,
        keys: &[&str],
        ok: &mut bool,
    ) -> Option<Vec<(usize, String, &'t DeTable<'i>, Range<usize>)>> {
        let Some((k, v)) = Self::get(root, key) else { return Some(Vec::new()) };
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(k, v, &format!("a list of [[{key}]] tables"), &format!("[[{key}]]"));
            return None;
        };
        let mut tables = Vec::with_capacity(items.len());
        for (n, item) in (1..).zip(items.iter()) {
            let DeValue::Table(t) = item.get_ref() else {
                *ok = false;
                self.problem(
                    item.span(),
                    format!("each {noun} must be a table"),
                    "not a table",
                    Some(format!("write each {noun} as a [[{key}]] section")),
                );
                continue;
            };
            let ctx = format!("{noun} {n}");
            self.known_keys(t, keys, &ctx);
            tables.push((n, ctx, t, item.span()));
        }
        Some(tables)
    }

    /// Whether `[from, to)` is an interval (either may be absent); if not, the problem is reported
    /// at `to` with `help`.
    fn half_open(&mut self, from: &Option<(Instant, Range<usize>)>, to: &Option<(Instant, Range<usize>)>, help: &str) -> bool {
        let (Some((from, _)), Some((to, at))) = (from, to) else { return true };
        if to > from {
            return true;
        }
        self.problem(at.clone(), format!("`to` ({to}) is not after `from` ({from})"), "not after from", Some(help.to_owned()));
        false
    }

    fn exclusivity(&mut self, root: &DeTable<'_>, pricing: Option<&Pricing>) -> Option<Vec<Exclusivity>> {
        const KEYS: &[&str] = &["use_case", "regions", "models", "from", "to", "uplift"];
        let mut ok = true;
        let tables = self.tables(root, "exclusivity", "exclusivity scope", KEYS, &mut ok)?;
        if tables.len() > MAX_EXCLUSIVITY_SCOPES {
            ok = false;
            self.problem(
                Self::get(root, "exclusivity").map_or(0..0, |(_, v)| v.span()),
                format!("{} exclusivity scopes; an agreement has at most {MAX_EXCLUSIVITY_SCOPES}", tables.len()),
                "too many scopes",
                Some("merge scopes that share a use case: a scope may name several regions and models".to_owned()),
            );
        }
        let mut scopes: Vec<(Exclusivity, Range<usize>)> = Vec::new();
        for (n, ctx, t, at) in tables {
            let use_case = self.string(t, &at, "use_case", &ctx, "\"search\"").and_then(|(s, sp)| {
                let uc = self.id(UseCase::parse(s), sp.clone())?;
                if let Some(p) = pricing
                    && !p.rates.contains_key(&uc)
                    && p.default_rates.is_none()
                {
                    self.problem(
                        sp,
                        format!("exclusivity for use case `{uc}`, which has no rate and there is no `default`"),
                        "no rate",
                        Some(format!("add `{uc}` to [pricing.rates], or a `default` rate")),
                    );
                    return None;
                }
                Some(uc)
            });
            let regions = self.optional_ids(t, "regions", Region::parse, "[\"eu\"]");
            let models = self.optional_ids(t, "models", ModelId::parse, "[\"m-70b\"]");
            let from = self.instant(t, "from");
            let to = self.instant(t, "to");
            for (key, value) in [("from", &from), ("to", &to)] {
                if value.is_none() && Self::get(t, key).is_none() {
                    self.missing(&at, key, &ctx, "2026-10-15");
                }
            }
            ok &= self.half_open(&from, &to, "a scope is the half-open interval [from, to)");
            let uplift = self.decimal(t, "uplift", "\"0.25\"");
            if uplift.is_none() && Self::get(t, "uplift").is_none() {
                self.missing(&at, "uplift", &ctx, "\"0.25\"");
            }
            match (use_case, regions, models, from, to, uplift) {
                (Some(use_case), Some(regions), Some(models), Some((from, _)), Some((to, _)), Some((uplift, _))) => {
                    let scope = Exclusivity { use_case, regions, models, from, to, uplift };
                    if let Some(other) = scopes.iter().position(|(s, _)| s.overlaps(&scope)) {
                        ok = false;
                        self.problem(
                            at.clone(),
                            format!(
                                "exclusivity scope {} overlaps scope {} (same use case, and regions, models and time meet)",
                                n,
                                other + 1
                            ),
                            "overlapping scope",
                            Some("scopes of one agreement must not overlap: narrow the regions, models or dates".to_owned()),
                        );
                    }
                    scopes.push((scope, at));
                }
                _ => ok = false,
            }
        }
        ok.then(|| scopes.into_iter().map(|(s, _)| s).collect())
    }

    /// `prohibited_use_cases` and `[[restrictions]]` (SPEC §11): scopes whose usage is settled
    /// and flagged `prohibited_use`. A restriction names at least one of use cases, regions and
    /// models (absent: all); `from` and `to` (each optional) bound it in time, half-open.
    fn restrictions(&mut self, root: &DeTable<'_>) -> Option<(Vec<UseCase>, Vec<Restriction>)> {
        const KEYS: &[&str] = &["use_cases", "regions", "models", "from", "to"];
        let prohibited =
            self.optional_ids(root, "prohibited_use_cases", UseCase::parse, "[\"surveillance\"]").map(Option::unwrap_or_default);
        let mut ok = true;
        let mut restrictions = Vec::new();
        for (_, ctx, t, at) in self.tables(root, "restrictions", "restriction", KEYS, &mut ok)? {
            let use_cases = self.optional_ids(t, "use_cases", UseCase::parse, "[\"surveillance\"]");
            let regions = self.optional_ids(t, "regions", Region::parse, "[\"eu\"]");
            let models = self.optional_ids(t, "models", ModelId::parse, "[\"m-70b\"]");
            let from = self.instant(t, "from");
            let to = self.instant(t, "to");
            let times_ok = (Self::get(t, "from").is_none() || from.is_some()) && (Self::get(t, "to").is_none() || to.is_some());
            ok &= self.half_open(&from, &to, "a restriction applies in the half-open interval [from, to)");
            if ["use_cases", "regions", "models"].iter().all(|key| Self::get(t, key).is_none()) {
                ok = false;
                self.problem(
                    at.clone(),
                    format!("{ctx} names no use case, region or model, so it would restrict everything"),
                    "restricts everything",
                    Some("name the use_cases, regions or models it restricts, for example use_cases = [\"surveillance\"]".to_owned()),
                );
            }
            match (use_cases, regions, models, times_ok) {
                (Some(use_cases), Some(regions), Some(models), true) => {
                    restrictions.push(Restriction { use_cases, regions, models, from: from.map(|(f, _)| f), to: to.map(|(t, _)| t) })
                }
                _ => ok = false,
            }
        }
        match (prohibited, ok) {
            (Some(prohibited), true) => Some((prohibited, restrictions)),
            _ => None,
        }
    }

    fn contributions(&mut self, table: &DeTable<'_>, at: Range<usize>) -> Option<ContributionTerms> {
        let ctx = "[contributions]";
        self.known_keys(table, &["pool", "points"], ctx);
        let pool = self.decimal(table, "pool", "\"0.02\"");
        if let Some((p, sp)) = &pool {
            if *p > Decimal::ONE {
                self.problem(
                    sp.clone(),
                    format!("pool {p} is outside [0, 1]"),
                    "above 1",
                    Some("the pool is a fraction of usage_total: \"0.02\" means 2%".to_owned()),
                );
            }
        } else if Self::get(table, "pool").is_none() {
            self.missing(&at, "pool", ctx, "\"0.02\"");
        }
        let mut points = BTreeMap::new();
        let mut ok = true;
        match Self::get(table, "points") {
            None => {
                ok = false;
                self.missing(&at, "points", ctx, "{ maintenance = 1, update = 2, improvement = 5 }");
            }
            Some((k, v)) => match v.get_ref() {
                DeValue::Table(t) => {
                    for (kind, value) in t.iter() {
                        let name = kind.get_ref().as_ref();
                        if !is_use_case(name) {
                            ok = false;
                            self.problem(
                                kind.span(),
                                format!("`{name}` is not a valid contribution kind"),
                                "invalid kind",
                                Some("use a-z 0-9 _ starting with a letter, like maintenance".to_owned()),
                            );
                        }
                        match value.get_ref() {
                            DeValue::Integer(i) => match i.as_str().parse::<u64>() {
                                Ok(n) if n > 0 => {
                                    points.insert(name.to_owned(), n);
                                }
                                _ => {
                                    ok = false;
                                    self.problem(
                                        value.span(),
                                        format!("points for `{name}` must be a positive integer"),
                                        "not positive",
                                        Some(format!("for example {name} = 1")),
                                    );
                                }
                            },
                            _ => {
                                ok = false;
                                self.wrong_type(kind, value, "a positive integer", "1");
                            }
                        }
                    }
                }
                _ => {
                    ok = false;
                    self.wrong_type(k, v, "a table of kind = points", "{ maintenance = 1 }");
                }
            },
        }
        match (pool, ok) {
            (Some((pool, _)), true) if pool <= Decimal::ONE => Some(ContributionTerms { pool, points }),
            _ => None,
        }
    }
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// A TOML date (midnight UTC) or offset date-time as an instant; local times are ambiguous.
fn datetime_instant(dt: &toml::value::Datetime) -> Option<Instant> {
    let date = dt.date?;
    let (y, m, d) = (i32::from(date.year), u32::from(date.month), u32::from(date.day));
    match (dt.time, dt.offset) {
        (None, None) => Instant::from_date(y, m, d),
        (Some(t), Some(offset)) => {
            let minutes = match offset {
                toml::value::Offset::Z => 0,
                toml::value::Offset::Custom { minutes } => i32::from(minutes),
            };
            let time = (u32::from(t.hour), u32::from(t.minute), u32::from(t.second.unwrap_or(0)), t.nanosecond.unwrap_or(0));
            Instant::from_civil((y, m, d), time, minutes)
        }
        _ => None,
    }
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time, from a string.
pub fn parse_date_or_time(text: &str) -> Option<Instant> {
    if text.len() == 10 {
        let b = text.as_bytes();
        if b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |s: &str| s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse::<u32>().ok()).flatten();
        let (y, m, d) = (num(&text[0..4])?, num(&text[5..7])?, num(&text[8..10])?);
        return Instant::from_date(i32::try_from(y).ok()?, m, d);
    }
    Instant::parse_rfc3339(text).ok()
}
