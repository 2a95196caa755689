//! Property tests of the settlement invariants, with an independent exact oracle.
//!
//! The oracle re-derives every line amount from SPEC §4 record by record with big rationals —
//! no rollup, no grouping by scope, its own exclusivity test and its own half-even rounding —
//! so a mistake in the optimised path (per-scale sums, merged scopes, tier maths) shows up as a
//! disagreement. proptest prints the failing case and its seed.

use std::borrow::Cow;
use std::collections::BTreeMap;

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Zero};
use proptest::prelude::*;
use revshare_core::agreement::{Agreement, parse_agreement};
use revshare_core::allocate::largest_remainder;
use revshare_core::canonical;
use revshare_core::decimal::Decimal;
use revshare_core::ids::PartyId;
use revshare_core::licence::Lineage;
use revshare_core::money::Currency;
use revshare_core::settle::settle_records;
use revshare_core::statement::Statement;
use revshare_core::time::{Instant, Period};
use revshare_core::usage::UsageRecord;

const USE_CASES: [&str; 3] = ["search", "customer_service", "translation"];
const MODELS: [&str; 2] = ["m-8b", "m-70b"];
const REGIONS: [&str; 2] = ["us", "eu"];
/// 2026-10-01T00:00:00Z and the month's length in seconds.
const OCT_START: i64 = 1_790_812_800;
const OCT_SECS: i64 = 31 * 86_400;

#[derive(Debug, Clone)]
struct Terms {
    per_unit: bool,
    metric: &'static str,
    volume_mode: bool,
    bounds: Vec<u64>,
    /// rates in ten-thousandths, per use case, per tier
    rates: Vec<Vec<u32>>,
    with_default: bool,
    uplift_pct: u32,
    currency: &'static str,
    minimum: Option<u32>,
    cap: Option<u32>,
}

#[derive(Debug, Clone)]
struct Rec {
    other_host: bool,
    model: usize,
    use_case: usize,
    region: usize,
    /// seconds from the start of October; may fall outside it
    offset: i64,
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    revenue_mantissa: u64,
    revenue_scale: u32,
}

fn terms() -> impl Strategy<Value = Terms> {
    (
        any::<bool>(),
        prop::sample::select(vec!["revenue", "requests", "input_tokens", "output_tokens", "tokens"]),
        any::<bool>(),
        prop::collection::btree_set(1u64..5_000, 0..3),
        any::<bool>(),
        0u32..60,
        prop::sample::select(vec!["USD", "JPY", "BHD"]),
        prop::option::of(0u32..5_000),
        prop::option::of(0u32..20_000),
    )
        .prop_flat_map(|(per_unit, metric, volume_mode, bounds, with_default, uplift_pct, currency, minimum, cap)| {
            let tiers = bounds.len() + 1;
            let metric = if per_unit && metric == "revenue" { "tokens" } else { metric };
            let rate_limit = if per_unit { 50_000u32 } else { 10_001 };
            prop::collection::vec(prop::collection::vec(0u32..rate_limit, tiers), 3).prop_map(move |rates| Terms {
                per_unit,
                metric,
                volume_mode,
                bounds: bounds.iter().copied().collect(),
                rates,
                with_default,
                uplift_pct,
                currency,
                minimum,
                cap: cap.map(|c| c.max(minimum.unwrap_or(0))),
            })
        })
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        prop::bool::weighted(0.1),
        0..2usize,
        0..3usize,
        0..2usize,
        -86_400i64..OCT_SECS + 86_400,
        0u64..400,
        0u64..3_000,
        0u64..3_000,
        0u64..100_000,
        0u32..5,
    )
        .prop_map(
            |(other_host, model, use_case, region, offset, requests, input_tokens, output_tokens, revenue_mantissa, revenue_scale)| Rec {
                other_host,
                model,
                use_case,
                region,
                offset,
                requests,
                input_tokens,
                output_tokens,
                revenue_mantissa,
                revenue_scale,
            },
        )
}

fn rate_text(r: u32) -> String {
    format!("{}.{:04}", r / 10_000, r % 10_000)
}

/// The agreement TOML for some terms: use cases 0 and 1 always priced, 2 only through `default`
/// when `with_default` (else records of use case 2 are not generated).
fn agreement_toml(t: &Terms) -> String {
    let list = |v: &[u32]| v.iter().map(|r| format!("\"{}\"", rate_text(*r))).collect::<Vec<_>>().join(", ");
    let minor = Currency::parse(t.currency).map(|c| c.minor_units()).unwrap_or(2);
    let money = |n: u32| if minor == 0 { n.to_string() } else { format!("{n}.{}", "0".repeat(usize::from(minor))) };
    let mut s = format!(
        "id = \"lic-h\"\nversion = 1\nlicensor = \"lic\"\nhost = \"h\"\ncurrency = \"{}\"\neffective_from = 2026-01-01\nmodels = [\"m-8b\"]\ndispute_window_days = 30\n",
        t.currency
    );
    if let Some(m) = t.minimum {
        s += &format!("minimum = \"{}\"\n", money(m));
    }
    if let Some(c) = t.cap {
        s += &format!("cap = \"{}\"\n", money(c));
    }
    s += &format!(
        "[pricing]\nbasis = \"{}\"\n{}tier_metric = \"{}\"\ntier_mode = \"{}\"\ntier_bounds = [{}]\n[pricing.rates]\n",
        if t.per_unit { "per_unit" } else { "revenue_share" },
        if t.per_unit { "unit = \"1000\"\n" } else { "" },
        t.metric,
        if t.volume_mode { "volume" } else { "graduated" },
        t.bounds.iter().map(|b| format!("\"{b}\"")).collect::<Vec<_>>().join(", ")
    );
    s += &format!("search = [{}]\ncustomer_service = [{}]\n", list(&t.rates[0]), list(&t.rates[1]));
    if t.with_default {
        s += &format!("default = [{}]\n", list(&t.rates[2]));
    }
    s += &format!(
        "[[exclusivity]]\nuse_case = \"search\"\nregions = [\"eu\"]\nfrom = 2026-10-15\nto = 2026-10-25T12:00:00Z\nuplift = \"{}.{:02}\"\n",
        t.uplift_pct / 100,
        t.uplift_pct % 100
    );
    s
}

fn record(i: usize, r: &Rec, t: &Terms, currency: Currency) -> UsageRecord<'static> {
    let use_case = if t.with_default { r.use_case } else { r.use_case % 2 };
    let revenue = Decimal::parse_json_number(&format!("{}e-{}", r.revenue_mantissa, r.revenue_scale)).unwrap_or(Decimal::ZERO);
    UsageRecord {
        id: Cow::Owned(format!("r{i}")),
        host: Cow::Borrowed(if r.other_host { "other" } else { "h" }),
        model: Cow::Borrowed(MODELS[r.model]),
        use_case: Cow::Borrowed(USE_CASES[use_case]),
        region: Cow::Borrowed(REGIONS[r.region]),
        time: Instant::from_parts(OCT_START + r.offset, 0),
        requests: r.requests,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        revenue,
        currency,
    }
}

fn setup(t: &Terms, recs: &[Rec]) -> (Agreement, Vec<UsageRecord<'static>>) {
    let agreement = parse_agreement("generated.toml", &agreement_toml(t))
        .unwrap_or_else(|e| panic!("generated agreement is invalid:\n{}\n{}", agreement_toml(t), e.render_plain()));
    let currency = agreement.currency();
    let records = recs.iter().enumerate().map(|(i, r)| record(i, r, t, currency)).collect();
    (agreement, records)
}

fn october() -> Period {
    Period::parse("2026-10").unwrap_or_else(|e| panic!("{e}"))
}

fn q(n: u128) -> BigRational {
    BigRational::from_integer(BigInt::from(n))
}

fn dec(text: &str) -> BigRational {
    Decimal::parse(text).map(|d| d.to_rational()).unwrap_or_else(|e| panic!("{e}"))
}

/// Half to even, independently of the crate: nearest integer to `x`, ties to even.
fn half_even(x: &BigRational) -> BigInt {
    let (n, d) = (x.numer(), x.denom());
    let (q, r) = n.div_mod_floor(d);
    let twice: BigInt = r * 2;
    if twice > *d || (twice == *d && q.is_odd()) { q + 1 } else { q }
}

/// SPEC §4 step by step over the raw records: line key → amount in minor units.
fn oracle(t: &Terms, records: &[UsageRecord<'_>], minor_units: u8) -> BTreeMap<(String, String, String, bool), BigInt> {
    let month = (Instant::from_parts(OCT_START, 0), Instant::from_parts(OCT_START + OCT_SECS, 0));
    let selected: Vec<&UsageRecord<'_>> = records.iter().filter(|r| r.host == "h" && month.0 <= r.time && r.time < month.1).collect();
    let metric = |r: &UsageRecord<'_>| match t.metric {
        "revenue" => r.revenue.to_rational(),
        "requests" => q(u128::from(r.requests)),
        "input_tokens" => q(u128::from(r.input_tokens)),
        "output_tokens" => q(u128::from(r.output_tokens)),
        _ => q(u128::from(r.input_tokens) + u128::from(r.output_tokens)),
    };
    let v: BigRational = selected.iter().map(|r| metric(r)).fold(BigRational::zero(), |a, b| a + b);
    let bounds: Vec<BigRational> = t.bounds.iter().map(|b| q(u128::from(*b))).collect();
    let n = bounds.len() + 1;
    let f: Vec<BigRational> = if t.volume_mode {
        let j = (0..n).find(|&i| i == n - 1 || v <= bounds[i]).unwrap_or(n - 1);
        (0..n).map(|i| if i == j { BigRational::one() } else { BigRational::zero() }).collect()
    } else if v.is_zero() {
        (0..n).map(|i| if i == 0 { BigRational::one() } else { BigRational::zero() }).collect()
    } else {
        (0..n)
            .map(|i| {
                let lower = if i == 0 { BigRational::zero() } else { bounds[i - 1].clone() };
                let mut inside = &v - &lower;
                if i < n - 1 && inside > &bounds[i] - &lower {
                    inside = &bounds[i] - &lower;
                }
                if inside < BigRational::zero() {
                    inside = BigRational::zero();
                }
                inside / &v
            })
            .collect()
    };
    let uplift = BigRational::new(BigInt::from(t.uplift_pct), BigInt::from(100));
    let (from, to) = (Instant::from_parts(OCT_START + 14 * 86_400, 0), Instant::from_parts(OCT_START + 24 * 86_400 + 43_200, 0));
    let mut exact: BTreeMap<(String, String, String, bool), BigRational> = BTreeMap::new();
    for r in selected {
        let uc = USE_CASES.iter().position(|u| *u == r.use_case).unwrap_or(0);
        let rate: BigRational =
            f.iter().zip(&t.rates[uc]).map(|(fi, ri)| fi * dec(&rate_text(*ri))).fold(BigRational::zero(), |a, b| a + b);
        let exclusive = r.use_case == "search" && r.region == "eu" && from <= r.time && r.time < to;
        let base = if t.per_unit { metric(r) / q(1000) } else { r.revenue.to_rational() };
        let factor = if exclusive { BigRational::one() + &uplift } else { BigRational::one() };
        *exact.entry((r.model.to_string(), r.use_case.to_string(), r.region.to_string(), exclusive)).or_insert_with(BigRational::zero) +=
            base * factor * rate;
    }
    let scale = BigRational::from_integer(num_traits::pow(BigInt::from(10), usize::from(minor_units)));
    exact.into_iter().map(|(k, x)| (k, half_even(&(x * &scale)))).collect()
}

fn minor_of(text: &str, minor_units: u8) -> BigInt {
    half_even(&(dec(text.trim_start_matches('-')) * BigRational::from_integer(num_traits::pow(BigInt::from(10), usize::from(minor_units)))))
        * if text.starts_with('-') { -1 } else { 1 }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn amounts_equal_the_exact_oracle(t in terms(), recs in prop::collection::vec(rec(), 0..40)) {
        let (agreement, records) = setup(&t, &recs);
        let statement = settle_records(&agreement, october(), &records, &[], Vec::new(), &Lineage::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let minor = agreement.currency().minor_units();
        let got: BTreeMap<_, _> = statement.lines.iter().map(|l| ((l.model.clone(), l.use_case.clone(), l.region.clone(), l.exclusive), BigInt::from(l.amount))).collect();
        prop_assert_eq!(got, oracle(&t, &records, minor));
    }

    #[test]
    fn volume_exactly_on_a_bound_uses_the_lower_tier(t in terms(), pick in any::<prop::sample::Index>(), revenue in 0u64..100_000) {
        prop_assume!(!t.bounds.is_empty());
        let t = Terms { metric: "requests", ..t };
        let bound = t.bounds[pick.index(t.bounds.len())];
        let on_bound = Rec { other_host: false, model: 0, use_case: 0, region: 0, offset: 3_600, requests: bound, input_tokens: 5, output_tokens: 5, revenue_mantissa: revenue, revenue_scale: 2 };
        let (agreement, records) = setup(&t, &[on_bound]);
        let statement = settle_records(&agreement, october(), &records, &[], Vec::new(), &Lineage::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got: BTreeMap<_, _> = statement.lines.iter().map(|l| ((l.model.clone(), l.use_case.clone(), l.region.clone(), l.exclusive), BigInt::from(l.amount))).collect();
        prop_assert_eq!(got, oracle(&t, &records, agreement.currency().minor_units()));
    }

    #[test]
    fn record_order_does_not_change_the_bytes(t in terms(), recs in prop::collection::vec(rec(), 1..40), seed in any::<u64>()) {
        let (agreement, records) = setup(&t, &recs);
        let mut shuffled = records.clone();
        // A seeded Fisher-Yates shuffle.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, usize::try_from(state % (i as u64 + 1)).unwrap_or(0));
        }
        let a = settle_records(&agreement, october(), &records, &[], Vec::new(), &Lineage::default()).map(|s| s.to_canonical());
        let b = settle_records(&agreement, october(), &shuffled, &[], Vec::new(), &Lineage::default()).map(|s| s.to_canonical());
        prop_assert_eq!(a, b);
    }

    #[test]
    /// SPEC §6: a statement depends on the distinct records only, not on how often they came.
    fn resends_change_nothing(t in terms(), recs in prop::collection::vec(rec(), 1..30), picks in prop::collection::vec(any::<prop::sample::Index>(), 1..10)) {
        let (agreement, records) = setup(&t, &recs);
        let mut with_resends = records.clone();
        with_resends.extend(picks.iter().map(|pick| records[pick.index(records.len())].clone()));
        let a = settle_records(&agreement, october(), &records, &[], Vec::new(), &Lineage::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = settle_records(&agreement, october(), &with_resends, &[], Vec::new(), &Lineage::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(a.to_canonical().ok(), b.to_canonical().ok());
    }

    #[test]
    fn totals_add_up(t in terms(), recs in prop::collection::vec(rec(), 0..40)) {
        let (agreement, records) = setup(&t, &recs);
        let s = settle_records(&agreement, october(), &records, &[], Vec::new(), &Lineage::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let minor = agreement.currency().minor_units();
        let tt = &s.totals;
        prop_assert_eq!(s.lines.iter().map(|l| l.amount).sum::<i128>(), tt.usage_subtotal);
        prop_assert!(tt.minimum_true_up >= 0 && tt.cap_reduction >= 0);
        prop_assert_eq!(tt.usage_total, tt.usage_subtotal + tt.minimum_true_up - tt.cap_reduction);
        if let Some(m) = t.minimum { prop_assert!(BigInt::from(tt.usage_total) >= minor_of(&m.to_string(), minor) || t.cap.is_some()); }
        if let Some(c) = t.cap { prop_assert!(BigInt::from(tt.usage_total) <= minor_of(&c.to_string(), minor)); }
        prop_assert_eq!(tt.net_payable, tt.usage_total - tt.host_credit + tt.adjustments);
        // The canonical bytes decode to the same statement.
        let bytes = s.to_canonical();
        prop_assert!(bytes.is_ok());
        prop_assert_eq!(bytes.as_deref().map(Statement::from_canonical).ok(), Some(Ok(s.clone())));
        // The bytes written member by member are RFC 8785's: the same once re-canonicalised.
        let json = s.to_json().unwrap_or_default();
        prop_assert_eq!(canonical::to_canonical(&json).ok(), bytes.ok());
        // The JSON says the same as the values, with exactly the minor digits.
        let subtotal = json["totals"]["usage_subtotal"].as_str().unwrap_or_default().to_owned();
        prop_assert_eq!(subtotal.split('.').nth(1).map_or(0, str::len), usize::from(minor));
        prop_assert_eq!(minor_of(&subtotal, minor), BigInt::from(tt.usage_subtotal));
    }

    #[test]
    fn allocation_sums_to_the_pool_and_stays_within_a_unit(total in 0i128..10_000_000, weights in prop::collection::btree_map("[a-z][a-z0-9]{0,5}", 0u64..50, 1..8)) {
        let weights: Vec<(PartyId, u64)> = weights.into_iter().filter_map(|(p, w)| PartyId::parse(&p).ok().map(|p| (p, w))).collect();
        let parts = largest_remainder(total, &weights, "the pool");
        prop_assert!(parts.is_ok(), "{parts:?}");
        let parts = parts.unwrap_or_default();
        let sum_w: u64 = weights.iter().map(|(_, w)| w).sum();
        if sum_w == 0 {
            prop_assert!(parts.iter().all(|(_, a)| *a == 0));
        } else {
            prop_assert_eq!(parts.iter().map(|(_, a)| a).sum::<i128>(), total);
            for (party, amount) in &parts {
                let w = weights.iter().find(|(p, _)| p == party).map_or(0, |(_, w)| *w);
                let exact = BigRational::new(BigInt::from(total) * BigInt::from(w), BigInt::from(sum_w));
                let diff = BigRational::from_integer(BigInt::from(*amount)) - exact;
                prop_assert!(diff < BigRational::one() && diff > -BigRational::one(), "{party}: {amount}");
            }
        }
    }
}

#[test]
fn the_oracle_agrees_on_an_exact_half() {
    // 0.25 × 0.1 = 0.025 → 0.02 (even) and 0.35 × 0.1 = 0.035 → 0.04 (even).
    assert_eq!(half_even(&dec("2.5")), BigInt::from(2));
    assert_eq!(half_even(&dec("3.5")), BigInt::from(4));
    let t = Terms {
        per_unit: false,
        metric: "requests",
        volume_mode: false,
        bounds: vec![],
        rates: vec![vec![1000], vec![1000], vec![1000]],
        with_default: false,
        uplift_pct: 0,
        currency: "USD",
        minimum: None,
        cap: None,
    };
    let sale = Rec {
        other_host: false,
        model: 0,
        use_case: 0,
        region: 0,
        offset: 10,
        requests: 1,
        input_tokens: 0,
        output_tokens: 0,
        revenue_mantissa: 25,
        revenue_scale: 2,
    };
    let recs = [sale.clone(), Rec { model: 1, revenue_mantissa: 35, ..sale }];
    let (agreement, records) = setup(&t, &recs);
    let s = settle_records(&agreement, october(), &records, &[], Vec::new(), &Lineage::default()).unwrap_or_else(|e| panic!("{e}"));
    let amounts: Vec<i128> = s.lines.iter().map(|l| l.amount).collect();
    assert_eq!(amounts, vec![4, 2]); // m-70b (0.035 → 0.04), then m-8b (0.025 → 0.02)
}
