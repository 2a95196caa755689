//! Settlement of one agreement for one calendar month (SPEC §4).
//!
//! Everything is exact rational arithmetic (`BigRational`) until the one rounding per line, half
//! to even, to the currency's minor unit. After that, totals are integer minor units. The work is
//! proportional to the number of groups in the [`Rollup`], never to the number of records, so the
//! same function settles a file, a stored month, or a bundle being verified.

use std::collections::BTreeMap;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Zero};
use sha2::{Digest, Sha256};

use crate::agreement::{Agreement, Basis, Pricing, Scopes, TierMetric, TierMode};
use crate::allocate::largest_remainder;
use crate::canonical;
use crate::contribution::Contribution;
use crate::decimal::{Decimal, pow10};
use crate::ids::{PartyId, same_id};
use crate::licence::Lineage;
use crate::money::{self, AmountOverflow, format_rational};
use crate::rollup::{GroupKey, GroupSums, Rollup, RollupOverflow};
use crate::statement::{Adjustment, Inputs, Line, Statement, TierRow, Tiers, Totals};
use crate::time::{Instant, Period};
use crate::usage::UsageRecord;
use crate::usage_set::UsageSet;

/// Places shown for informational rates and fractions.
const INFO_PLACES: u32 = 10;

/// What a settlement needs besides the agreement.
#[derive(Clone)]
pub struct SettlementInput<'a> {
    pub agreement: &'a Agreement,
    pub period: Period,
    /// The sums of the selected distinct records (see [`select`]).
    pub rollup: &'a Rollup,
    /// [`UsageSet::digest`] of the selected records.
    pub usage_digest: String,
    pub contributions: &'a [Contribution],
    pub adjustments: Vec<Adjustment>,
    /// Which models derive from which (SPEC §11): a model derived from one the agreement lists is
    /// priced at the agreement's rates for derivatives.
    pub lineage: &'a Lineage,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    #[error("agreement {agreement} is not in effect in {period}: it applies from {from}{to}")]
    OutsideEffectiveRange { agreement: String, period: Period, from: Instant, to: String },
    #[error(
        "agreement {agreement} ended at {end}, so {period} closes only as a final true-up of what came after its months closed (records received late, contributions accepted since, disputes decided since); there is nothing to carry"
    )]
    NothingToCarry { agreement: String, period: Period, end: Instant },
    #[error("{}", no_rate_message(.0))]
    NoRate(Vec<(String, u64)>),
    #[error("contribution {id} is of kind `{kind}`, which the agreement does not list; the kinds are: {allowed}")]
    ContributionKind { id: String, kind: String, allowed: String },
    #[error("contribution {id} is by `{party}`, who is neither the licensor nor the host of the agreement")]
    ContributionParty { id: String, party: String },
    #[error(transparent)]
    Overflow(#[from] AmountOverflow),
    #[error(transparent)]
    RollupOverflow(#[from] RollupOverflow),
    #[error("record {id} of host {host} was sent twice with different content; a resend must be identical")]
    Conflict { host: String, id: String },
    #[error("record {id} is in {found} but agreement {agreement} is in {expected}")]
    Currency { id: String, found: String, agreement: String, expected: String },
}

fn no_rate_message(missing: &[(String, u64)]) -> String {
    let list: Vec<String> = missing.iter().map(|(uc, n)| format!("`{uc}` ({n} record{})", if *n == 1 { "" } else { "s" })).collect();
    format!(
        "no rate for use case {} and the agreement has no `default` rate; add {} to [pricing.rates], or a `default`",
        list.join(", "),
        if missing.len() == 1 { "it" } else { "them" }
    )
}

/// Whether a record is selected for the agreement and month (SPEC §4 step 1), and if so, the
/// agreement's scopes it lies in, as one index ([`Agreement::scopes`]: exclusivity, restriction).
pub fn select(agreement: &Agreement, period: Period, record: &UsageRecord<'_>) -> Option<Option<usize>> {
    (same_id(&record.host, agreement.host.as_str()) && period.contains(record.time) && agreement.in_effect_at(record.time))
        .then(|| agreement.scopes(&record.model, &record.use_case, &record.region, record.time))
}

/// The digest of a batch of records (what a host signs and a batch leaf names): SHA-256 over
/// their concatenated SHA-256 digests, sorted ascending, so it does not depend on their order.
/// A statement's `usage_digest` is [`UsageSet::digest`] instead, which the store keeps current as
/// records arrive.
pub fn sorted_digest(record_digests: &mut [[u8; 32]]) -> String {
    record_digests.sort_unstable_by(digest_order);
    let mut hasher = Sha256::new();
    for d in record_digests.iter() {
        hasher.update(d);
    }
    format!("sha256:{}", canonical::hex(&hasher.finalize()))
}

/// The byte order of digests, with most comparisons made on one integer (the first eight bytes,
/// big-endian) instead of a byte-by-byte compare.
pub fn digest_order(a: &[u8; 32], b: &[u8; 32]) -> std::cmp::Ordering {
    let prefix = |d: &[u8; 32]| u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    prefix(a).cmp(&prefix(b)).then_with(|| a.cmp(b))
}

fn integer(n: u128) -> BigRational {
    BigRational::from_integer(BigInt::from(n))
}

fn metric_volume(metric: TierMetric, sums: &GroupSums) -> BigRational {
    match metric {
        TierMetric::Revenue => sums.revenue(),
        TierMetric::Requests => integer(sums.requests),
        TierMetric::InputTokens => integer(sums.input_tokens),
        TierMetric::OutputTokens => integer(sums.output_tokens),
        TierMetric::Tokens => integer(sums.input_tokens) + integer(sums.output_tokens),
    }
}

/// The exact decimal text of a rational whose denominator divides a power of ten (volumes).
fn decimal_text(value: &BigRational) -> String {
    for places in 0..=(2 * crate::decimal::MAX_DIGITS) {
        let scaled = value * BigRational::from_integer(pow10(places));
        if scaled.is_integer() {
            return format_rational(value, places);
        }
    }
    format_rational(value, 2 * crate::decimal::MAX_DIGITS)
}

/// Settles records held in memory: the idempotency rules, selection, rollup, usage digest and
/// settlement in one call. For files of any size the CLI streams into a [`Rollup`] instead; both
/// give the same statement for the same records.
pub fn settle_records(
    agreement: &Agreement,
    period: Period,
    records: &[UsageRecord<'_>],
    contributions: &[Contribution],
    adjustments: Vec<Adjustment>,
    lineage: &Lineage,
) -> Result<Statement, SettleError> {
    let mut index = crate::dedup::DedupIndex::new(0);
    let mut rollup = Rollup::new();
    let mut counted = UsageSet::new();
    for (location, record) in (0u64..).zip(records) {
        let scope = select(agreement, period, record);
        match index.offer(&record.host, &record.id, index.fingerprint(record), location) {
            crate::dedup::Seen::New => {
                if let Some(scope) = scope {
                    if record.currency != agreement.currency {
                        return Err(SettleError::Currency {
                            id: record.id.to_string(),
                            found: record.currency.to_string(),
                            agreement: agreement.id.to_string(),
                            expected: agreement.currency.to_string(),
                        });
                    }
                    rollup.add(record, scope)?;
                    counted.insert(&record.digest());
                }
            }
            crate::dedup::Seen::Duplicate { .. } => {}
            crate::dedup::Seen::Conflict { .. } => {
                return Err(SettleError::Conflict { host: record.host.to_string(), id: record.id.to_string() });
            }
        }
    }
    settle(&SettlementInput { agreement, period, rollup: &rollup, usage_digest: counted.digest(), contributions, adjustments, lineage })
}

/// Every contribution must be of a kind the agreement lists and by one of its two parties. The
/// first refused in id order is named, so the refusal does not depend on the order given.
fn check_contributions(agreement: &Agreement, contributions: &[Contribution]) -> Result<(), SettleError> {
    let mut in_order: Vec<&Contribution> = contributions.iter().collect();
    in_order.sort_by(|a, b| (&a.id, &a.kind, &a.party).cmp(&(&b.id, &b.kind, &b.party)));
    for c in in_order {
        let points = agreement.contributions.as_ref().map(|t| &t.points);
        if !points.is_some_and(|p| p.contains_key(&c.kind)) {
            let allowed = points.map(|p| p.keys().cloned().collect::<Vec<_>>().join(", ")).filter(|s| !s.is_empty());
            return Err(SettleError::ContributionKind {
                id: c.id.clone(),
                kind: c.kind.clone(),
                allowed: allowed.unwrap_or_else(|| "none (the agreement has no [contributions] section)".to_owned()),
            });
        }
        if c.party != agreement.licensor && c.party != agreement.host {
            return Err(SettleError::ContributionParty { id: c.id.clone(), party: c.party.to_string() });
        }
    }
    Ok(())
}

/// (model, use_case, region, exclusive): what a line is of; tuple order is SPEC line order.
type LineKey<'a> = (&'a str, &'a str, &'a str, bool);

/// The groups of a rollup, in key order.
type Groups<'a> = [(&'a GroupKey, &'a GroupSums)];

/// Settles one month. Pure: the same input gives the same statement. Each SPEC §4 step is one
/// function below, in order; every amount they sum is checked ([`AmountOverflow`] names where).
pub fn settle(input: &SettlementInput<'_>) -> Result<Statement, SettleError> {
    let agreement = input.agreement;
    let currency = agreement.currency;
    if let Some(end) = agreement.effective_to.filter(|end| input.period.start() >= *end) {
        return final_true_up(input, end);
    }
    check_in_effect(agreement, input.period)?;
    check_contributions(agreement, input.contributions)?;
    let groups = input.rollup.groups();
    let position = tier_position(&agreement.pricing, &groups);
    let rates = blended_rates(agreement, input.lineage, &position.fractions, &groups)?;
    let (lines, gross) = price_lines(agreement, input.lineage, &rates, &groups)?;
    let usage = minimum_and_cap(agreement, &lines)?;
    let credit = contribution_credit(agreement, input.period, input.contributions, usage.total)?;
    let adjustments = money::sum(input.adjustments.iter().map(|a| a.amount), || "totals.adjustments".to_owned())?;
    let net_payable = money::add(money::sub(usage.total, credit.host, net_at)?, adjustments, net_at)?;

    let mut flags: Vec<String> = lines.iter().flat_map(|l| l.flags.iter().cloned()).collect();
    flags.sort();
    flags.dedup();
    Ok(Statement {
        agreement_id: agreement.id.to_string(),
        agreement_version: agreement.version,
        agreement_digest: agreement.digest(),
        period: input.period,
        currency,
        inputs: Inputs { records: input.rollup.records(), usage_digest: input.usage_digest.clone() },
        tiers: tiers(&agreement.pricing, &position),
        lines,
        adjustments: input.adjustments.clone(),
        totals: Totals {
            gross_revenue: currency.round(&gross).ok_or_else(|| AmountOverflow::at("totals.gross_revenue"))?,
            usage_subtotal: usage.subtotal,
            minimum_true_up: usage.true_up,
            cap_reduction: usage.cap_reduction,
            usage_total: usage.total,
            contribution_pool: credit.pool,
            contribution_allocation: credit.allocation,
            host_credit: credit.host,
            adjustments,
            net_payable,
        },
        flags,
    })
}

/// A month after the agreement's end (SPEC §10): what came after its months closed — their
/// restatements, disputes decided since — carried as adjustment lines of a statement with no
/// usage, no minimum and no pool, flagged `final_true_up`. Nothing to carry is refused, so a month
/// after the end is never finalised empty. No record of such a month is selected.
fn final_true_up(input: &SettlementInput<'_>, end: Instant) -> Result<Statement, SettleError> {
    let agreement = input.agreement;
    if input.adjustments.is_empty() || input.rollup.records() != 0 {
        return Err(SettleError::NothingToCarry { agreement: agreement.id.to_string(), period: input.period, end });
    }
    let pricing = &agreement.pricing;
    let position = tier_position(pricing, &[]);
    let adjustments = money::sum(input.adjustments.iter().map(|a| a.amount), || "totals.adjustments".to_owned())?;
    Ok(Statement {
        agreement_id: agreement.id.to_string(),
        agreement_version: agreement.version,
        agreement_digest: agreement.digest(),
        period: input.period,
        currency: agreement.currency,
        inputs: Inputs { records: 0, usage_digest: input.usage_digest.clone() },
        tiers: tiers(pricing, &position),
        lines: Vec::new(),
        adjustments: input.adjustments.clone(),
        totals: Totals {
            gross_revenue: 0,
            usage_subtotal: 0,
            minimum_true_up: 0,
            cap_reduction: 0,
            usage_total: 0,
            contribution_pool: 0,
            contribution_allocation: Vec::new(),
            host_credit: 0,
            adjustments,
            net_payable: adjustments,
        },
        flags: vec![FINAL_TRUE_UP.to_owned()],
    })
}

/// The flag of a [`final_true_up`] statement.
pub const FINAL_TRUE_UP: &str = "final_true_up";

/// The flag of a line whose model neither the agreement lists nor derives from one it lists.
pub const UNLICENSED_MODEL: &str = "unlicensed_model";

/// The flag of a derived model's line whose id lacks the agreement's `name_prefix`.
pub const NAMING_VIOLATION: &str = "naming_violation";

/// The flag of a line with usage inside a scope the agreement prohibits (SPEC §11).
pub const PROHIBITED_USE: &str = "prohibited_use";

/// The statement's tier section: the bounds and where V fell.
fn tiers(pricing: &Pricing, position: &TierPosition) -> Tiers {
    let rows = (0..position.volumes.len())
        .map(|i| TierRow {
            from: if i == 0 { "0".to_owned() } else { pricing.tier_bounds[i - 1].to_string() },
            to: pricing.tier_bounds.get(i).map(Decimal::to_string),
            volume: decimal_text(&position.volumes[i]),
            fraction: format_rational(&position.fractions[i], INFO_PLACES),
        })
        .collect();
    Tiers {
        metric: pricing.tier_metric,
        mode: pricing.tier_mode,
        bounds: pricing.tier_bounds.iter().map(Decimal::to_string).collect(),
        volume: decimal_text(&position.total),
        tiers: rows,
    }
}

fn net_at() -> String {
    "totals.net_payable".to_owned()
}

/// Step 1's precondition: the agreement applies somewhere in the month.
fn check_in_effect(agreement: &Agreement, period: Period) -> Result<(), SettleError> {
    if agreement.covers(period) {
        return Ok(());
    }
    Err(SettleError::OutsideEffectiveRange {
        agreement: agreement.id.to_string(),
        period,
        from: agreement.effective_from,
        to: agreement.effective_to.map(|t| format!(" until {t}")).unwrap_or_default(),
    })
}

/// Step 2: where the month's volume V falls in the tiers.
struct TierPosition {
    /// V.
    total: BigRational,
    /// The part of V inside each tier.
    volumes: Vec<BigRational>,
    /// fᵢ: the weight of each tier's rate.
    fractions: Vec<BigRational>,
}

fn tier_position(pricing: &Pricing, groups: &Groups<'_>) -> TierPosition {
    let total: BigRational = groups.iter().map(|(_, s)| metric_volume(pricing.tier_metric, s)).fold(BigRational::zero(), |a, b| a + b);
    let bounds: Vec<BigRational> = pricing.tier_bounds.iter().map(Decimal::to_rational).collect();
    let tier_count = bounds.len() + 1;
    let mut volumes = Vec::with_capacity(tier_count);
    let mut lower = BigRational::zero();
    for i in 0..tier_count {
        let above = &total - &lower;
        let inside = match bounds.get(i) {
            Some(upper) => above.clamp(BigRational::zero(), upper - &lower),
            None => above.max(BigRational::zero()),
        };
        volumes.push(inside);
        if let Some(upper) = bounds.get(i) {
            lower = upper.clone();
        }
    }
    let only = |j: usize| (0..tier_count).map(|i| if i == j { BigRational::one() } else { BigRational::zero() }).collect();
    let fractions = match pricing.tier_mode {
        TierMode::Graduated if total.is_zero() => only(0),
        TierMode::Graduated => volumes.iter().map(|v| v / &total).collect(),
        TierMode::Volume => only(bounds.iter().position(|b| total <= *b).unwrap_or(tier_count - 1)),
    };
    TierPosition { total, volumes, fractions }
}

/// What covers a line's model (SPEC §11): the agreement lists it, it derives from a model the
/// agreement lists, or neither (`unlicensed_model`, priced at the base rates).
#[derive(Clone, Copy)]
enum Coverage<'a> {
    Listed,
    Derived(&'a str),
    Unlicensed,
}

fn coverage<'a>(agreement: &'a Agreement, lineage: &Lineage, model: &str) -> Coverage<'a> {
    if agreement.models.iter().any(|m| m.as_str() == model) {
        return Coverage::Listed;
    }
    lineage.base_among(model, &agreement.models).map_or(Coverage::Unlicensed, |base| Coverage::Derived(base.as_str()))
}

/// The rates of a use case, one per tier, and the factor on them: for a derived model, its own
/// (`[derivatives.rates]`: the use case, else its `default`) or, where those do not say, the base
/// rates times `rate_factor` (1 when absent); otherwise `[pricing.rates]`: the use case, else
/// `default`.
fn tier_rates<'a>(agreement: &'a Agreement, use_case: &str, derived: bool) -> Option<(&'a [Decimal], Option<Decimal>)> {
    let pricing = &agreement.pricing;
    let find = |rates: &'a BTreeMap<crate::ids::UseCase, Vec<Decimal>>, default: &'a Option<Vec<Decimal>>| {
        rates.iter().find(|(k, _)| k.as_str() == use_case).map(|(_, r)| r.as_slice()).or(default.as_deref())
    };
    let base = || find(&pricing.rates, &pricing.default_rates);
    match agreement.derivatives.as_ref().filter(|_| derived) {
        Some(d) => find(&d.rates, &d.default_rates).map(|own| (own, None)).or_else(|| base().map(|r| (r, d.rate_factor))),
        None => base().map(|r| (r, None)),
    }
}

/// Step 3a: each use case's blended rate Σ fᵢ·r(u, i), for base and for derived models. Every
/// use case needs a rate.
fn blended_rates<'a>(
    agreement: &Agreement,
    lineage: &Lineage,
    fractions: &[BigRational],
    groups: &Groups<'a>,
) -> Result<BTreeMap<(&'a str, bool), BigRational>, SettleError> {
    let mut missing: BTreeMap<String, u64> = BTreeMap::new();
    let mut blended: BTreeMap<(&str, bool), BigRational> = BTreeMap::new();
    for (key, sums) in groups {
        let uc = key.use_case.as_str();
        let derived = matches!(coverage(agreement, lineage, &key.model), Coverage::Derived(_));
        if let Some(n) = missing.get_mut(uc) {
            *n = n.saturating_add(sums.records);
            continue;
        }
        if blended.contains_key(&(uc, derived)) {
            continue;
        }
        match tier_rates(agreement, uc, derived) {
            Some((rates, factor)) => {
                let rate = fractions.iter().zip(rates).fold(BigRational::zero(), |acc, (f, r)| acc + f * r.to_rational());
                blended.insert((uc, derived), factor.map_or_else(|| rate.clone(), |k| &rate * k.to_rational()));
            }
            None => {
                missing.insert(uc.to_owned(), sums.records);
            }
        }
    }
    if !missing.is_empty() {
        return Err(SettleError::NoRate(missing.into_iter().collect()));
    }
    Ok(blended)
}

/// Step 3b: the lines, each one rounding of its exact amount; and the exact gross revenue.
fn price_lines(
    agreement: &Agreement,
    lineage: &Lineage,
    rates: &BTreeMap<(&str, bool), BigRational>,
    groups: &Groups<'_>,
) -> Result<(Vec<Line>, BigRational), SettleError> {
    let pricing = &agreement.pricing;
    let currency = agreement.currency;
    let unit = pricing.unit.map_or_else(BigRational::one, |u| u.to_rational());
    // A line gathers the groups of one (model, use_case, region, exclusive): several exclusivity
    // scopes (each with its uplift) may feed one exclusive line, restricted records or not.
    // BTreeMap order is SPEC order.
    let mut line_groups: BTreeMap<LineKey<'_>, Vec<(Scopes, &GroupSums)>> = BTreeMap::new();
    for (key, sums) in groups {
        let scopes = Scopes::from_index(key.scope);
        line_groups
            .entry((key.model.as_str(), key.use_case.as_str(), key.region.as_str(), scopes.exclusive.is_some()))
            .or_default()
            .push((scopes, sums));
    }
    let mut lines: Vec<Line> = Vec::with_capacity(line_groups.len());
    let mut gross = BigRational::zero();
    for ((model, use_case, region, exclusive), parts) in line_groups {
        let index = lines.len();
        let at = || format!("line {index} ({model}, {use_case}, {region}{})", if exclusive { ", exclusive" } else { "" });
        let coverage = coverage(agreement, lineage, model);
        let derived_from = match coverage {
            Coverage::Derived(base) => Some(base.to_owned()),
            Coverage::Listed | Coverage::Unlicensed => None,
        };
        // `blended_rates` priced every use case of the groups, or refused.
        let rate = rates.get(&(use_case, derived_from.is_some())).cloned().unwrap_or_else(BigRational::zero);
        let mut total = GroupSums::default();
        let (mut base_sum, mut uplifted_sum) = (BigRational::zero(), BigRational::zero());
        let mut uplifts: Vec<Decimal> = Vec::new();
        let restricted = parts.iter().any(|(scopes, _)| scopes.restricted);
        for (scopes, sums) in parts {
            total.merge(sums).map_err(|_| AmountOverflow::at(at()))?;
            let base = match pricing.basis {
                Basis::RevenueShare => sums.revenue(),
                Basis::PerUnit => metric_volume(pricing.tier_metric, sums) / &unit,
            };
            let uplift = scopes.exclusive.and_then(|i| agreement.exclusivity.get(i)).map(|s| s.uplift);
            uplifted_sum += &base * (BigRational::one() + uplift.map_or_else(BigRational::zero, |u| u.to_rational()));
            base_sum += base;
            if let Some(u) = uplift.filter(|u| !uplifts.contains(u)) {
                uplifts.push(u);
            }
        }
        let exact = &uplifted_sum * &rate;
        let revenue = total.revenue();
        gross += &revenue;
        let uplift = exclusive.then(|| match uplifts.as_slice() {
            [single] => single.to_string(),
            // Scopes with different uplifts met in one line: show the effective uplift.
            _ if base_sum.is_zero() => "0".to_owned(),
            _ => format_rational(&(&uplifted_sum / &base_sum - BigRational::one()), INFO_PLACES),
        });
        let mut flags = Vec::new();
        match coverage {
            Coverage::Unlicensed => flags.push(UNLICENSED_MODEL.to_owned()),
            Coverage::Derived(_) => {
                let prefix = agreement.derivatives.as_ref().and_then(|d| d.name_prefix.as_deref());
                if prefix.is_some_and(|p| !model.starts_with(p)) {
                    flags.push(NAMING_VIOLATION.to_owned());
                }
            }
            Coverage::Listed => {}
        }
        if restricted {
            flags.push(PROHIBITED_USE.to_owned());
        }
        let (revenue, amount) = match (currency.round(&revenue), currency.round(&exact)) {
            (Some(revenue), Some(amount)) => (revenue, amount),
            _ => return Err(AmountOverflow::at(at()).into()),
        };
        lines.push(Line {
            model: model.to_owned(),
            use_case: use_case.to_owned(),
            region: region.to_owned(),
            exclusive,
            derived_from,
            records: total.records,
            requests: total.requests,
            input_tokens: total.input_tokens,
            output_tokens: total.output_tokens,
            revenue,
            volume: decimal_text(&metric_volume(pricing.tier_metric, &total)),
            blended_rate: format_rational(&rate, INFO_PLACES),
            uplift,
            amount,
            flags,
        });
    }
    Ok((lines, gross))
}

/// Step 4: the minimum and the cap.
struct UsageTotals {
    subtotal: i128,
    true_up: i128,
    cap_reduction: i128,
    total: i128,
}

fn minimum_and_cap(agreement: &Agreement, lines: &[Line]) -> Result<UsageTotals, AmountOverflow> {
    let currency = agreement.currency;
    let subtotal = money::sum(lines.iter().map(|l| l.amount), || "totals.usage_subtotal".to_owned())?;
    // Agreement parsing refuses a minimum or cap with more places than the currency has.
    let in_minor =
        |value: Option<Decimal>, at: &str| value.map(|v| currency.to_minor(&v).ok_or_else(|| AmountOverflow::at(at))).transpose();
    let minimum = in_minor(agreement.minimum, "the agreement's minimum")?.unwrap_or(0);
    let true_up = money::sub(minimum, subtotal, || "totals.minimum_true_up".to_owned())?.max(0);
    let lifted = money::add(subtotal, true_up, || "totals.usage_total".to_owned())?;
    let cap_reduction = match in_minor(agreement.cap, "the agreement's cap")? {
        Some(cap) => money::sub(lifted, cap, || "totals.cap_reduction".to_owned())?.max(0),
        None => 0,
    };
    Ok(UsageTotals { subtotal, true_up, cap_reduction, total: lifted - cap_reduction })
}

/// Step 5: the contribution pool, its split by points, and the host's part.
struct Credit {
    pool: i128,
    allocation: Vec<(PartyId, i128)>,
    host: i128,
}

fn contribution_credit(
    agreement: &Agreement,
    period: Period,
    contributions: &[Contribution],
    usage_total: i128,
) -> Result<Credit, AmountOverflow> {
    let currency = agreement.currency;
    let counted: Vec<&Contribution> = contributions.iter().filter(|c| c.counts_in(period)).collect();
    let (Some(terms), false) = (&agreement.contributions, counted.is_empty()) else {
        return Ok(Credit { pool: 0, allocation: Vec::new(), host: 0 });
    };
    let exact = terms.pool.to_rational() * BigRational::from_integer(BigInt::from(usage_total))
        / BigRational::from_integer(pow10(u32::from(currency.minor_units())));
    let pool = currency.round(&exact).ok_or_else(|| AmountOverflow::at("totals.contribution_pool"))?;
    let mut points: BTreeMap<PartyId, u64> = BTreeMap::new();
    for c in &counted {
        // `check_contributions` found every kind in the terms.
        let earned = terms.points.get(&c.kind).copied().unwrap_or(0);
        let slot = points.entry(c.party.clone()).or_default();
        *slot = slot.checked_add(earned).ok_or_else(|| AmountOverflow::at(format!("the points of {}", c.party)))?;
    }
    let weights: Vec<(PartyId, u64)> = points.into_iter().collect();
    let allocation = largest_remainder(pool, &weights, "totals.contribution_allocation")?;
    let host = allocation.iter().find(|(p, _)| *p == agreement.host).map_or(0, |(_, a)| *a);
    Ok(Credit { pool, allocation, host })
}
