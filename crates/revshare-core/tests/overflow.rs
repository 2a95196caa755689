//! Settlement at the edges of its numbers: 28-digit decimals (the largest a rate or revenue may
//! have) and counts at 2^63 − 1 (the largest a record may report). Sums past what a statement
//! holds are refused with the place they arose, never wrapped or clamped; sums below it are exact.

use revshare_core::agreement::parse_agreement;
use revshare_core::licence::Lineage;
use revshare_core::money::AmountOverflow;
use revshare_core::settle::{SettleError, settle_records};
use revshare_core::statement::Statement;
use revshare_core::time::Period;
use revshare_core::usage::{UsageRecord, parse_json_line};

const MAX_COUNT: u64 = 9_223_372_036_854_775_807; // 2^63 − 1
const DIGITS_28: &str = "9999999999999999999999999999";

/// A per-token agreement (unit 1, one tier) with `rate` for every use case.
fn per_token(rate: &str) -> String {
    format!(
        "id = \"lic-h\"\nversion = 1\nlicensor = \"lic\"\nhost = \"h\"\ncurrency = \"USD\"\neffective_from = 2026-01-01\n\
         dispute_window_days = 30\nmodels = [\"m-8b\"]\n[pricing]\nbasis = \"per_unit\"\nunit = \"1\"\ntier_metric = \"input_tokens\"\n\
         tier_mode = \"graduated\"\ntier_bounds = []\n[pricing.rates]\ndefault = [\"{rate}\"]\n"
    )
}

fn revenue_share(rate: &str) -> String {
    per_token(rate).replace("basis = \"per_unit\"\nunit = \"1\"\n", "basis = \"revenue_share\"\n")
}

fn line(id: &str, region: &str, input_tokens: u64, revenue: &str) -> String {
    format!(
        r#"{{"id":"{id}","host":"h","model":"m-8b","use_case":"search","region":"{region}","time":"2026-10-02T10:00:00Z","requests":{MAX_COUNT},"input_tokens":{input_tokens},"output_tokens":{MAX_COUNT},"revenue":"{revenue}","currency":"USD"}}"#
    )
}

fn settle(agreement: &str, lines: &[String]) -> Result<Statement, SettleError> {
    let agreement = parse_agreement("edge.toml", agreement).unwrap_or_else(|e| panic!("{}", e.render_plain()));
    let records: Vec<UsageRecord<'_>> =
        lines.iter().map(|l| parse_json_line(l.as_bytes()).unwrap_or_else(|p| panic!("{l}: {p:?}"))).collect();
    let october = Period::parse("2026-10").unwrap_or_else(|e| panic!("{e}"));
    settle_records(&agreement, october, &records, &[], Vec::new(), &Lineage::default())
}

#[test]
fn counts_at_2_pow_63_sum_exactly_and_round_trip() {
    let lines: Vec<String> = (0..3).map(|i| line(&format!("r{i}"), "eu", MAX_COUNT, "1.00")).collect();
    let statement = settle(&revenue_share("0.5"), &lines).unwrap_or_else(|e| panic!("{e}"));
    let sum = 3 * u128::from(MAX_COUNT);
    let l = &statement.lines[0];
    assert_eq!((l.requests, l.input_tokens, l.output_tokens), (sum, sum, sum));
    assert_eq!(l.volume, sum.to_string());
    assert_eq!(statement.tiers.volume, "27670116110564327421");
    assert_eq!(statement.totals.usage_total, 150); // 0.5 × 3.00 USD
    let bytes = statement.to_canonical().unwrap_or_default();
    assert!(String::from_utf8_lossy(&bytes).contains(r#""input_tokens":"27670116110564327421""#));
    assert_eq!(Statement::from_canonical(&bytes).as_ref(), Ok(&statement));
    // Bytes that are not the canonical ones are refused, naming the member.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let refused = |text: String| Statement::from_canonical(text.as_bytes()).map_err(|e| e.to_string());
    assert_eq!(
        refused(text.replace(r#""usage_total":"1.50""#, r#""usage_total":"1.5""#)),
        Err("statement member `totals.usage_total`: expected an amount in USD with exactly 2 decimal places, found \"1.5\"".to_owned())
    );
    assert_eq!(
        refused(
            text.replace(r#""kind":"#, r#""kinds":"#)
                .replace(r#""adjustments":[]"#, r#""adjustments":[{"kind":"refund","reference":"x","description":"","amount":"1.00"}]"#)
        ),
        Err("statement member `adjustments[0].kind`: expected \"restatement\" or \"dispute\", found \"refund\"".to_owned())
    );
    assert!(refused(text.replace(r#""currency":"USD","#, r#""currency":"USD","extra":1,"#)).is_err_and(|e| e.contains("canonical bytes")));
}

#[test]
fn a_28_digit_rate_past_38_digits_is_refused_naming_its_line() {
    // 10^12 tokens at (10^28 − 1) USD each: about 10^40 USD, past 38 digits of cents.
    let lines = [line("r0", "eu", 1_000_000_000_000, "1.00")];
    let err = settle(&per_token(DIGITS_28), &lines).map(|s| s.totals.net_payable);
    assert_eq!(err, Err(SettleError::Overflow(AmountOverflow::at("line 0 (m-8b, search, eu)"))));
    let message = err.map_err(|e| e.to_string()).unwrap_err();
    assert!(message.starts_with("line 0 (m-8b, search, eu) exceeds 38 digits"), "{message}");
}

#[test]
fn the_largest_28_digit_revenue_settles_exactly() {
    // 10^28 − 1 USD at 100%: 10^30 − 100 minor units, well inside 38 digits.
    let statement = settle(&revenue_share("1"), &[line("r0", "eu", 1, DIGITS_28)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(statement.totals.usage_total, 999_999_999_999_999_999_999_999_999_900);
    assert_eq!(statement.totals.gross_revenue, statement.totals.usage_total);
}

#[test]
fn lines_that_fit_but_whose_sum_does_not_are_refused_at_the_subtotal() {
    // Each line: 10^9 tokens × 10^27 USD = 10^36 USD = 10^38 minor units (fits in an i128, whose
    // largest is 1.7 × 10^38); two of them do not.
    let rate = "1000000000000000000000000000";
    let one = settle(&per_token(rate), &[line("r0", "eu", 1_000_000_000, "1.00")]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.totals.usage_subtotal, 10i128.pow(38));
    let two = [line("r0", "eu", 1_000_000_000, "1.00"), line("r1", "us", 1_000_000_000, "1.00")];
    assert_eq!(
        settle(&per_token(rate), &two).map(|s| s.totals.net_payable),
        Err(SettleError::Overflow(AmountOverflow::at("totals.usage_subtotal")))
    );
}

#[test]
fn a_line_past_38_digits_at_2_pow_63_tokens_is_refused() {
    let err = settle(&per_token(DIGITS_28), &[line("r0", "eu", MAX_COUNT, "1.00")]).map(|s| s.totals.net_payable);
    assert_eq!(err, Err(SettleError::Overflow(AmountOverflow::at("line 0 (m-8b, search, eu)"))));
}
