//! The exact text of agreement diagnostics (SPEC §2): every error names the file, line and
//! column, says what is wrong and what would be right. Each case starts from the SPEC example
//! (`examples/agreement.toml`, embedded below) and changes one thing; one case changes three.

use revshare_core::agreement::parse_agreement;

/// The repository's `examples/agreement.toml`, the SPEC's worked example.
const EXAMPLE: &str = include_str!("../../../examples/agreement.toml");

const FILE: &str = "agreement.toml";

/// The example with `edits` applied in turn; each `from` must occur exactly once, so a case
/// cannot silently stop testing what it says when the example changes.
fn edited(edits: &[(&str, &str)]) -> String {
    let mut text = EXAMPLE.to_owned();
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "`{from}` must occur exactly once in the agreement");
        text = text.replacen(from, to, 1);
    }
    text
}

/// The plain rendering of every problem of `text`; panics if it parses.
fn errors(text: &str) -> String {
    match parse_agreement(FILE, text) {
        Ok(_) => panic!("the agreement parsed, but an error was expected:\n{text}"),
        Err(e) => e.render_plain(),
    }
}

fn check(edits: &[(&str, &str)], expected: &str) {
    assert_eq!(errors(&edited(edits)), expected);
}

#[test]
fn the_example_parses() {
    let agreement = parse_agreement(FILE, EXAMPLE).map_err(|e| e.render_plain());
    let agreement = match agreement {
        Ok(a) => a,
        Err(text) => panic!("the SPEC example must parse:\n{text}"),
    };
    assert_eq!(agreement.id().as_str(), "meridian-northwind");
    assert_eq!(agreement.currency().code(), "USD");
    assert_eq!(agreement.exclusivity().len(), 1);
}

#[test]
fn unknown_key_at_the_top_level() {
    check(
        &[("version = 1\n", "version = 1\nowner = \"meridian\"\n")],
        "agreement.toml:5:1: unknown key `owner` in the agreement
  help: the keys allowed here are: id, version, licensor, host, currency, effective_from, effective_to, models, minimum, cap, \
dispute_window_days, dispute_response_days, close_after_days, mau_threshold, arbiters, pricing, exclusivity, contributions, \
derivatives, prohibited_use_cases, restrictions
",
    );
}

#[test]
fn a_response_time_is_at_least_a_day_and_only_changes_the_digest_when_written() {
    check(
        &[("dispute_window_days = 30\n", "dispute_window_days = 30\ndispute_response_days = 0\n")],
        "agreement.toml:13:25: `dispute_response_days` is 0
  help: write a whole number of days from 1
",
    );
    let parsed = |text: &str| parse_agreement(FILE, text).map_err(|e| e.render_plain()).unwrap_or_else(|e| panic!("{e}"));
    let example = parsed(EXAMPLE);
    assert_eq!(example.dispute_response_days(), 14, "the default");
    let written = parsed(&edited(&[("dispute_window_days = 30\n", "dispute_window_days = 30\ndispute_response_days = 14\n")]));
    assert_eq!(written.dispute_response_days(), 14);
    assert_ne!(written.digest(), example.digest(), "saying it is part of what the agreement says");
    assert!(!example.to_canonical_json().to_string().contains("dispute_response_days"), "an agreement that does not say keeps its digest");
}

#[test]
fn a_month_waits_for_late_reports_and_only_changes_the_digest_when_written() {
    check(
        &[("dispute_window_days = 30\n", "dispute_window_days = 30\nclose_after_days = 400\n")],
        "agreement.toml:13:20: `close_after_days` is 400
  help: write a whole number of days from 0 to 366
",
    );
    let parsed = |text: &str| parse_agreement(FILE, text).map_err(|e| e.render_plain()).unwrap_or_else(|e| panic!("{e}"));
    let example = parsed(EXAMPLE);
    let october = revshare_core::time::Period::parse("2026-10").expect("a month");
    assert_eq!(example.close_after_days(), 3, "the default");
    assert_eq!(example.closes_from(october).to_string(), "2026-11-04T00:00:00Z");
    let written = parsed(&edited(&[("dispute_window_days = 30\n", "dispute_window_days = 30\nclose_after_days = 10\n")]));
    assert_eq!(written.closes_from(october).to_string(), "2026-11-11T00:00:00Z");
    assert_ne!(written.digest(), example.digest(), "saying it is part of what the agreement says");
    assert!(!example.to_canonical_json().to_string().contains("close_after_days"), "an agreement that does not say keeps its digest");
}

#[test]
fn arbiters_are_party_ids_and_only_change_the_digest_when_named() {
    check(
        &[("dispute_window_days = 30\n", "dispute_window_days = 30\narbiters = [\"Arbitration House\"]\n")],
        "agreement.toml:13:13: `Arbitration House` is not a valid party id: use 1-63 of a-z 0-9 _ - starting with a letter or digit
",
    );
    check(
        &[("dispute_window_days = 30\n", "dispute_window_days = 30\narbiters = []\n")],
        "agreement.toml:13:12: `arbiters` is empty
  help: name at least one, or leave `arbiters` out and accept an arbiter per dispute
",
    );
    let parsed = |text: &str| parse_agreement(FILE, text).map_err(|e| e.render_plain()).unwrap_or_else(|e| panic!("{e}"));
    let example = parsed(EXAMPLE);
    assert!(example.arbiters().is_empty());
    let named = parsed(&edited(&[("dispute_window_days = 30\n", "dispute_window_days = 30\narbiters = [\"arbitration-house\"]\n")]));
    assert_eq!(named.arbiters().iter().map(|a| a.as_str()).collect::<Vec<_>>(), ["arbitration-house"]);
    assert_ne!(named.digest(), example.digest(), "naming arbiters is part of what the agreement says");
    assert!(!example.to_canonical_json().to_string().contains("arbiters"), "an agreement that names none keeps its digest");
}

#[test]
fn unknown_key_in_pricing() {
    check(
        &[("tier_mode = \"graduated\"", "tiers = 3\ntier_mode = \"graduated\"")],
        "agreement.toml:18:1: unknown key `tiers` in [pricing]
  help: the keys allowed here are: basis, unit, tier_metric, tier_mode, tier_bounds, rates
",
    );
}

#[test]
fn unknown_key_in_an_exclusivity_scope() {
    check(
        &[("regions = [\"eu\"]\n", "regions = [\"eu\"]\nhost = \"northwind\"\n")],
        "agreement.toml:31:1: unknown key `host` in exclusivity scope 1
  help: the keys allowed here are: use_case, regions, models, from, to, uplift
",
    );
}

#[test]
fn a_toml_float_rate_is_refused_with_the_string_to_write() {
    check(
        &[(r#"["0.20", "0.17", "0.15"]"#, r#"["0.20", "0.17", 0.15]"#)],
        r#"agreement.toml:22:39: `0.15` is a TOML float; binary floats are never used for money or rates
  help: write it as a string: "0.15"
"#,
    );
}

#[test]
fn a_toml_float_amount_keeps_its_written_digits() {
    check(
        &[(r#"minimum = "500.00""#, "minimum = 500.00")],
        r#"agreement.toml:11:11: `500.00` is a TOML float; binary floats are never used for money or rates
  help: write it as a string: "500.00"
"#,
    );
}

#[test]
fn tier_bounds_must_increase() {
    check(
        &[(r#"["1000000000", "5000000000"]"#, r#"["5000000000", "5000000000"]"#)],
        "agreement.toml:19:30: tier bound 2 (5000000000) is not greater than bound 1 (5000000000)
  help: tier_bounds must be strictly increasing upper bounds
",
    );
}

#[test]
fn derivatives_take_a_factor_or_rates_of_their_own_and_only_change_the_digest_when_written() {
    let tail = "points = { maintenance = 1, update = 2, improvement = 5 }\n";
    check(
        &[(tail, &format!("{tail}\n[derivatives]\nname_prefix = \"Llama\"\n\n[derivatives.rates]\nsearch = [\"0.1\"]\n"))],
        "agreement.toml:40:15: `name_prefix` \"Llama\" cannot start a model id
  help: a model id is a-z 0-9 _ - . starting with a letter or digit: for example name_prefix = \"llama\"
agreement.toml:43:10: `search` has 1 rate but the agreement has 3 tiers
  help: give one rate per tier: tier_bounds has 2 bounds, so 3 rates
",
    );
    check(
        &[(
            tail,
            &format!(
                "{tail}\n[derivatives]\nrate_factor = \"0.8\"\nmodels = [\"m-8b\"]\n\n[derivatives.rates]\nsearch = [\"0.1\", \"0.1\", \"0.1\"]\n"
            ),
        )],
        "agreement.toml:40:15: [derivatives] has both `rate_factor` and `rates`
  help: give a rate_factor that multiplies the base rates, or [derivatives.rates] of their own, not both
agreement.toml:41:1: unknown key `models` in [derivatives]
  help: the keys allowed here are: rate_factor, rates, name_prefix
",
    );
    let parsed = |text: &str| parse_agreement(FILE, text).map_err(|e| e.render_plain()).unwrap_or_else(|e| panic!("{e}"));
    let example = parsed(EXAMPLE);
    let written = parsed(&edited(&[(tail, &format!("{tail}\n[derivatives]\nrate_factor = \"0.8\"\nname_prefix = \"m-70b\"\n"))]));
    assert_ne!(written.digest(), example.digest(), "saying it is part of what the agreement says");
    assert!(!example.to_canonical_json().to_string().contains("derivatives"), "an agreement that does not say keeps its digest");
}

#[test]
fn restrictions_name_what_they_restrict_and_only_change_the_digest_when_written() {
    let tail = "points = { maintenance = 1, update = 2, improvement = 5 }\n";
    check(
        &[
            ("dispute_window_days = 30\n", "dispute_window_days = 30\nprohibited_use_cases = [\"Surveillance\"]\n"),
            (
                tail,
                &format!(
                    "{tail}\n[[restrictions]]\nfrom = 2026-11-01\nto = 2026-10-01\n\n[[restrictions]]\nregions = [\"cn\"]\nuntil = 2027-01-01\n"
                ),
            ),
        ],
        "agreement.toml:13:25: `Surveillance` is not a valid use case: use a-z 0-9 _ starting with a letter, like \"customer_service\"
agreement.toml:40:1: restriction 1 names no use case, region or model, so it would restrict everything
  help: name the use_cases, regions or models it restricts, for example use_cases = [\"surveillance\"]
agreement.toml:42:6: `to` (2026-10-01T00:00:00Z) is not after `from` (2026-11-01T00:00:00Z)
  help: a restriction applies in the half-open interval [from, to)
agreement.toml:46:1: unknown key `until` in restriction 2
  help: the keys allowed here are: use_cases, regions, models, from, to
",
    );
    let parsed = |text: &str| parse_agreement(FILE, text).map_err(|e| e.render_plain()).unwrap_or_else(|e| panic!("{e}"));
    let example = parsed(EXAMPLE);
    let written = parsed(&edited(&[(tail, &format!("{tail}\n[[restrictions]]\nuse_cases = [\"search\"]\nregions = [\"cn\"]\n"))]));
    assert_ne!(written.digest(), example.digest(), "saying it is part of what the agreement says");
    let canonical = example.to_canonical_json().to_string();
    assert!(!canonical.contains("restrictions") && !canonical.contains("prohibited"), "an agreement that does not say keeps its digest");
}

#[test]
fn a_rate_list_needs_one_rate_per_tier() {
    check(
        &[(r#"["0.22", "0.20", "0.18"]"#, r#"["0.22", "0.20"]"#)],
        "agreement.toml:24:22: `search` has 2 rates but the agreement has 3 tiers
  help: give one rate per tier: tier_bounds has 2 bounds, so 3 rates
",
    );
}

#[test]
fn a_revenue_share_rate_above_one() {
    check(
        &[(r#"["0.22", "0.20", "0.18"]"#, r#"["0.22", "1.20", "0.18"]"#)],
        r#"agreement.toml:24:31: rate 1.2 of `search` is outside [0, 1]
  help: a revenue_share rate is a fraction of revenue: "0.15" means 15%
"#,
    );
}

#[test]
fn a_negative_rate() {
    check(
        &[(r#"["0.22", "0.20", "0.18"]"#, r#"["0.22", "-0.20", "0.18"]"#)],
        r#"agreement.toml:24:31: `search`: `-0.20` is negative; it must be zero or more
  help: for example search = ["0.20"]
"#,
    );
}

#[test]
fn per_unit_needs_a_unit() {
    // Reported at the [pricing] header: the key is absent, the section is where it belongs.
    check(
        &[(r#"basis = "revenue_share""#, r#"basis = "per_unit""#)],
        r#"agreement.toml:15:1: basis = "per_unit" needs `unit`
  help: add unit = "1000000": rates are money per that many units of tier_metric
"#,
    );
}

#[test]
fn per_unit_cannot_be_tiered_on_revenue() {
    check(
        &[
            (r#"basis = "revenue_share""#, "basis = \"per_unit\"\nunit = \"1000000\""),
            (r#"tier_metric = "tokens""#, r#"tier_metric = "revenue""#),
        ],
        r#"agreement.toml:18:15: basis = "per_unit" cannot use tier_metric = "revenue"
  help: price revenue with basis = "revenue_share", or choose requests, input_tokens, output_tokens or tokens
"#,
    );
}

#[test]
fn unknown_currency() {
    check(
        &[(r#"currency = "USD""#, r#"currency = "USX""#)],
        r#"agreement.toml:7:12: `USX` is not an ISO 4217 currency code; use a code such as "USD", "EUR" or "JPY"
"#,
    );
}

#[test]
fn effective_to_must_be_after_effective_from() {
    check(
        &[("effective_to = 2027-01-01", "effective_to = 2025-07-01")],
        "agreement.toml:9:16: effective_to (2025-07-01T00:00:00Z) is not after effective_from (2026-01-01T00:00:00Z)
  help: effective_to is the first instant the agreement no longer applies; it must be later than effective_from
",
    );
}

#[test]
fn an_exclusivity_scope_must_end_after_it_starts() {
    check(
        &[("\nto = 2027-01-01", "\nto = 2026-10-15")],
        "agreement.toml:32:6: `to` (2026-10-15T00:00:00Z) is not after `from` (2026-10-15T00:00:00Z)
  help: a scope is the half-open interval [from, to)
",
    );
}

#[test]
fn a_string_date_that_is_not_a_date() {
    check(
        &[("from = 2026-10-15", r#"from = "2026-02-30""#)],
        r#"agreement.toml:31:8: `from` = "2026-02-30" is not a date or an RFC 3339 time
  help: write a date like 2026-10-15 or an RFC 3339 time like 2026-10-15T00:00:00Z
"#,
    );
}

#[test]
fn cap_below_minimum() {
    check(
        &[(r#"minimum = "500.00""#, "minimum = \"500.00\"\ncap = \"100.00\"")],
        "agreement.toml:12:7: cap 100 is below minimum 500
  help: the cap limits what the licensor receives and must be at least the minimum
",
    );
}

#[test]
fn overlapping_exclusivity_scopes() {
    let second = "uplift = \"0.25\"\n\n[[exclusivity]]\nuse_case = \"search\"\nregions = [\"us\", \"eu\"]\nfrom = 2026-12-01\nto = 2027-01-01\nuplift = \"0.10\"\n";
    check(
        &[("uplift = \"0.25\"\n", second)],
        "agreement.toml:35:1: exclusivity scope 2 overlaps scope 1 (same use case, and regions, models and time meet)
  help: scopes of one agreement must not overlap: narrow the regions, models or dates
",
    );
}

#[test]
fn exclusivity_for_a_use_case_without_a_rate() {
    check(
        &[("default            = [\"0.20\", \"0.18\", \"0.16\"]\n", ""), (r#"use_case = "search""#, r#"use_case = "translation""#)],
        "agreement.toml:28:12: exclusivity for use case `translation`, which has no rate and there is no `default`
  help: add `translation` to [pricing.rates], or a `default` rate
",
    );
}

#[test]
fn a_missing_required_key() {
    // A missing key has no place of its own; it is reported at the start of its table.
    check(
        &[("host = \"northwind\"\n", "")],
        r#"agreement.toml:1:1: missing key `host` in the agreement
  help: add host = "northwind"
"#,
    );
}

#[test]
fn a_toml_syntax_error() {
    check(
        &[(r#"licensor = "meridian""#, r#"licensor = "meridian"#)],
        "agreement.toml:5:21: invalid basic string, expected `\"`
  help: fix the TOML syntax
",
    );
}

#[test]
fn three_problems_are_reported_at_once_in_file_order() {
    // Listed bottom-up on purpose: the report is in file order, not in the order found.
    check(
        &[
            ("\nto = 2027-01-01", "\nto = 2026-01-01"),
            (r#"["0.20", "0.17", "0.15"]"#, r#"["0.20", "0.17", 0.15]"#),
            ("dispute_window_days = 30", "dispute_window_days = 30\ndispute_window = 30"),
        ],
        r#"agreement.toml:13:1: unknown key `dispute_window` in the agreement
  help: the keys allowed here are: id, version, licensor, host, currency, effective_from, effective_to, models, minimum, cap, dispute_window_days, dispute_response_days, close_after_days, mau_threshold, arbiters, pricing, exclusivity, contributions, derivatives, prohibited_use_cases, restrictions
agreement.toml:23:39: `0.15` is a TOML float; binary floats are never used for money or rates
  help: write it as a string: "0.15"
agreement.toml:33:6: `to` (2026-01-01T00:00:00Z) is not after `from` (2026-10-15T00:00:00Z)
  help: a scope is the half-open interval [from, to)
"#,
    );
}
