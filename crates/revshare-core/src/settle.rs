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

use crate::agreement::{Agreement, Basis, TierMetric, TierMode};
use crate::allocate::largest_remainder;
use crate::canonical;
use crate::contribution::Contribution;
use crate::decimal::{Decimal, pow10};
use crate::ids::{PartyId, same_id};
use crate::money::{AmountOverflow, format_rational};
use crate::rollup::{GroupSums, Rollup, RollupOverflow};
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
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    #[error("agreement {agreement} is not in effect in {period}: it applies from {from}{to}")]
    OutsideEffectiveRange { agreement: String, period: Period, from: Instant, to: String },
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
/// exclusivity scope it lies in.
pub fn select(agreement: &Agreement, period: Period, record: &UsageRecord<'_>) -> Option<Option<usize>> {
    (same_id(&record.host, agreement.host.as_str()) && period.contains(record.time) && agreement.in_effect_at(record.time))
        .then(|| agreement.exclusive_scope(&record.model, &record.use_case, &record.region, record.time))
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
    settle(&SettlementInput { agreement, period, rollup: &rollup, usage_digest: counted.digest(), contributions, adjustments })
}

/// Every contribution must be of a kind the agreement lists and by one of its two parties.
fn check_contributions(agreement: &Agreement, contributions: &[Contribution]) -> Result<(), SettleError> {
    for c in contributions {
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

/// Settles one month. Pure: the same input gives the same statement.
pub fn settle(input: &SettlementInput<'_>) -> Result<Statement, SettleError> {
    let agreement = input.agreement;
    let pricing = &agreement.pricing;
    let currency = agreement.currency;
    if !agreement.covers(input.period) {
        return Err(SettleError::OutsideEffectiveRange {
            agreement: agreement.id.to_string(),
            period: input.period,
            from: agreement.effective_from,
            to: agreement.effective_to.map(|t| format!(" until {t}")).unwrap_or_default(),
        });
    }
    check_contributions(agreement, input.contributions)?;
    let groups = input.rollup.groups();

    // Step 2: tier position.
    let metric = pricing.tier_metric;
    let total_volume: BigRational = groups.iter().map(|(_, s)| metric_volume(metric, s)).fold(BigRational::zero(), |a, b| a + b);
    let bounds: Vec<BigRational> = pricing.tier_bounds.iter().map(Decimal::to_rational).collect();
    let tier_count = bounds.len() + 1;
    let mut tier_volumes = Vec::with_capacity(tier_count);
    let mut lower = BigRational::zero();
    for i in 0..tier_count {
        let above = &total_volume - &lower;
        let inside = match bounds.get(i) {
            Some(upper) => above.clamp(BigRational::zero(), upper - &lower),
            None => above.max(BigRational::zero()),
        };
        tier_volumes.push(inside);
        if let Some(upper) = bounds.get(i) {
            lower = upper.clone();
        }
    }
    let fractions: Vec<BigRational> = match pricing.tier_mode {
        TierMode::Graduated if total_volume.is_zero() => {
            (0..tier_count).map(|i| if i == 0 { BigRational::one() } else { BigRational::zero() }).collect()
        }
        TierMode::Graduated => tier_volumes.iter().map(|v| v / &total_volume).collect(),
        TierMode::Volume => {
            let j = bounds.iter().position(|b| total_volume <= *b).unwrap_or(tier_count - 1);
            (0..tier_count).map(|i| if i == j { BigRational::one() } else { BigRational::zero() }).collect()
        }
    };

    // Step 3: lines. Every use case needs a rate.
    let mut missing: BTreeMap<String, u64> = BTreeMap::new();
    let mut blended: BTreeMap<&str, BigRational> = BTreeMap::new();
    for (key, sums) in &groups {
        let uc = key.use_case.as_str();
        if blended.contains_key(uc) || missing.contains_key(uc) {
            if let Some(n) = missing.get_mut(uc) {
                *n += sums.records;
            }
            continue;
        }
        let rates = pricing.rates.iter().find(|(k, _)| k.as_str() == uc).map(|(_, r)| r).or(pricing.default_rates.as_ref());
        match rates {
            Some(rates) => {
                let rate = fractions.iter().zip(rates).fold(BigRational::zero(), |acc, (f, r)| acc + f * r.to_rational());
                blended.insert(uc, rate);
            }
            None => {
                missing.insert(uc.to_owned(), sums.records);
            }
        }
    }
    if !missing.is_empty() {
        return Err(SettleError::NoRate(missing.into_iter().collect()));
    }

    let unit = pricing.unit.map_or_else(BigRational::one, |u| u.to_rational());
    // A line gathers the groups of one (model, use_case, region, exclusive): several exclusivity
    // scopes (each with its uplift) may feed one exclusive line. BTreeMap order is SPEC order.
    let mut line_groups: BTreeMap<LineKey<'_>, Vec<(Option<usize>, &GroupSums)>> = BTreeMap::new();
    for (key, sums) in &groups {
        line_groups
            .entry((key.model.as_str(), key.use_case.as_str(), key.region.as_str(), key.scope.is_some()))
            .or_default()
            .push((key.scope, sums));
    }
    let mut lines: Vec<Line> = Vec::with_capacity(line_groups.len());
    let mut gross = BigRational::zero();
    for ((model, use_case, region, exclusive), parts) in line_groups {
        let rate = blended.get(use_case).cloned().unwrap_or_else(BigRational::zero);
        let mut total = GroupSums::default();
        let (mut base_sum, mut uplifted_sum) = (BigRational::zero(), BigRational::zero());
        let mut uplifts: Vec<Decimal> = Vec::new();
        for (scope, sums) in parts {
            total.merge(sums)?;
            let base = match pricing.basis {
                Basis::RevenueShare => sums.revenue(),
                Basis::PerUnit => metric_volume(metric, sums) / &unit,
            };
            let uplift = scope.and_then(|i| agreement.exclusivity.get(i)).map(|s| s.uplift);
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
        if !agreement.models.iter().any(|m| m.as_str() == model) {
            flags.push("unlicensed_model".to_owned());
        }
        lines.push(Line {
            model: model.to_owned(),
            use_case: use_case.to_owned(),
            region: region.to_owned(),
            exclusive,
            records: total.records,
            requests: total.requests,
            input_tokens: total.input_tokens,
            output_tokens: total.output_tokens,
            revenue: currency.round(&revenue)?,
            volume: decimal_text(&metric_volume(metric, &total)),
            blended_rate: format_rational(&rate, INFO_PLACES),
            uplift,
            amount: currency.round(&exact)?,
            flags,
        });
    }

    // Step 4: minimum and cap.
    let subtotal: i128 = lines.iter().map(|l| l.amount).sum();
    let minimum = agreement.minimum.and_then(|m| currency.to_minor(&m)).unwrap_or(0);
    let true_up = (minimum - subtotal).max(0);
    let cap_reduction = agreement.cap.and_then(|c| currency.to_minor(&c)).map_or(0, |cap| (subtotal + true_up - cap).max(0));
    let usage_total = subtotal + true_up - cap_reduction;

    // Step 5: contributions.
    let counted: Vec<&Contribution> = input.contributions.iter().filter(|c| c.counts_in(input.period)).collect();
    let (pool, allocation) = match (&agreement.contributions, counted.is_empty()) {
        (Some(terms), false) => {
            let pool = currency.round(
                &(terms.pool.to_rational() * BigRational::from_integer(BigInt::from(usage_total))
                    / BigRational::from_integer(pow10(u32::from(currency.minor_units())))),
            )?;
            let mut points: BTreeMap<PartyId, u64> = BTreeMap::new();
            for c in &counted {
                *points.entry(c.party.clone()).or_default() += terms.points.get(&c.kind).copied().unwrap_or(0);
            }
            let weights: Vec<(PartyId, u64)> = points.into_iter().collect();
            (pool, largest_remainder(pool, &weights))
        }
        _ => (0, Vec::new()),
    };
    let host_credit = allocation.iter().find(|(p, _)| *p == agreement.host).map_or(0, |(_, a)| *a);
    let adjustments_total: i128 = input.adjustments.iter().map(|a| a.amount).sum();
    let net_payable = usage_total - host_credit + adjustments_total;

    let mut flags: Vec<String> = lines.iter().flat_map(|l| l.flags.iter().cloned()).collect();
    flags.sort();
    flags.dedup();

    let tier_rows = (0..tier_count)
        .map(|i| TierRow {
            from: if i == 0 { "0".to_owned() } else { pricing.tier_bounds[i - 1].to_string() },
            to: pricing.tier_bounds.get(i).map(Decimal::to_string),
            volume: decimal_text(&tier_volumes[i]),
            fraction: format_rational(&fractions[i], INFO_PLACES),
        })
        .collect();

    Ok(Statement {
        agreement_id: agreement.id.to_string(),
        agreement_version: agreement.version,
        agreement_digest: agreement.digest(),
        period: input.period,
        currency,
        inputs: Inputs { records: input.rollup.records(), usage_digest: input.usage_digest.clone() },
        tiers: Tiers {
            metric: metric.name(),
            mode: match pricing.tier_mode {
                TierMode::Graduated => "graduated",
                TierMode::Volume => "volume",
            },
            bounds: pricing.tier_bounds.iter().map(Decimal::to_string).collect(),
            volume: decimal_text(&total_volume),
            tiers: tier_rows,
        },
        lines,
        adjustments: input.adjustments.clone(),
        totals: Totals {
            gross_revenue: currency.round(&gross)?,
            usage_subtotal: subtotal,
            minimum_true_up: true_up,
            cap_reduction,
            usage_total,
            contribution_pool: pool,
            contribution_allocation: allocation,
            host_credit,
            adjustments: adjustments_total,
            net_payable,
        },
        flags,
    })
}
