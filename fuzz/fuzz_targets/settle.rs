//! Any bytes as an agreement's terms and a month of records and contributions, settled.
//!
//! The first bytes choose the terms (basis, tier metric and mode, bounds, rates, minimum, cap,
//! exclusivity uplift, contribution pool); every following 16 bytes are one record (host, id from
//! a small range so that resends and conflicts occur, model, use case, region, time, counts up to
//! 2^63 − 1, revenue up to 18 digits at any scale) or, when its first byte says so, a
//! contribution. Checks: settlement never panics; the result does not depend on the order of the
//! records (reversed: the same bytes, or both refused alike); a statement's allocation sums to its
//! pool, its totals add up, and it decodes from its canonical bytes to itself.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use revshare_core::agreement::parse_agreement;
use revshare_core::contribution::parse_contribution_line;
use revshare_core::decimal::Decimal;
use revshare_core::money::Currency;
use revshare_core::ids::ModelId;
use revshare_core::licence::Lineage;
use revshare_core::settle::{SettleError, settle_records};
use revshare_core::statement::Statement;
use revshare_core::time::{Instant, Period};
use revshare_core::usage::UsageRecord;

const MODELS: [&str; 4] = ["m-8b", "m-70b", "x-unlicensed", "m-70b-ft"];
const USE_CASES: [&str; 3] = ["search", "customer_service", "moderation"];
const REGIONS: [&str; 2] = ["eu", "us"];
const KINDS: [&str; 3] = ["maintenance", "update", "improvement"];
/// 2026-10-01T00:00:00Z.
const OCTOBER: i64 = 1_790_812_800;
const DAY: i64 = 86_400;

/// Reads bytes as numbers, zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    fn u64(&mut self, n: usize) -> u64 {
        (0..n).fold(0u64, |acc, _| (acc << 8) | u64::from(self.byte()))
    }
}

fn rate(b: u8) -> String {
    format!("0.{:02}", b % 100)
}

fn agreement_text(b: &mut Bytes<'_>) -> String {
    let flags = b.byte();
    let per_unit = flags & 1 == 1;
    let metric = ["revenue", "requests", "input_tokens", "output_tokens", "tokens"][usize::from(b.byte() % 5)];
    let volume_mode = flags & 2 == 2;
    let bounds: Vec<String> = match b.byte() % 3 {
        0 => Vec::new(),
        1 => vec![format!("\"{}\"", 1 + b.u64(3))],
        _ => {
            let low = 1 + b.u64(2);
            vec![format!("\"{low}\""), format!("\"{}\"", low + 1 + b.u64(4))]
        }
    };
    let tiers = bounds.len() + 1;
    let rates = |b: &mut Bytes<'_>| (0..tiers).map(|_| format!("\"{}\"", rate(b.byte()))).collect::<Vec<_>>().join(", ");
    let mut text = String::from(
        "id = \"lic-h\"\nversion = 1\nlicensor = \"lic\"\nhost = \"h\"\ncurrency = \"USD\"\neffective_from = 2026-01-01\n\
         models = [\"m-8b\", \"m-70b\"]\ndispute_window_days = 30\n",
    );
    let minimum = (flags & 4 == 4).then(|| b.u64(3));
    if let Some(m) = minimum {
        text += &format!("minimum = \"{m}.00\"\n");
    }
    if flags & 8 == 8 {
        text += &format!("cap = \"{}.00\"\n", minimum.unwrap_or(0) + b.u64(4));
    }
    text += &format!(
        "[pricing]\nbasis = \"{}\"\n{}tier_metric = \"{metric}\"\ntier_mode = \"{}\"\ntier_bounds = [{}]\n[pricing.rates]\n",
        if per_unit { "per_unit" } else { "revenue_share" },
        if per_unit { "unit = \"1000\"\n" } else { "" },
        if volume_mode { "volume" } else { "graduated" },
        bounds.join(", "),
    );
    text += &format!("search = [{}]\ncustomer_service = [{}]\n", rates(b), rates(b));
    if flags & 16 == 16 {
        text += &format!("default = [{}]\n", rates(b));
    }
    if flags & 32 == 32 {
        text += &format!(
            "[[exclusivity]]\nuse_case = \"search\"\nregions = [\"eu\"]\nfrom = 2026-10-10\nto = 2026-10-20\nuplift = \"{}\"\n",
            rate(b.byte())
        );
    }
    if flags & 64 == 64 {
        text += &format!("[contributions]\npool = \"{}\"\npoints = {{ maintenance = 1, update = 2, improvement = 5 }}\n", rate(b.byte()));
    }
    if flags & 128 == 128 {
        text += &format!("[derivatives]\nrate_factor = \"{}\"\nname_prefix = \"m-8b\"\n", rate(b.byte()));
    }
    text
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let text = agreement_text(&mut b);
    let Ok(agreement) = parse_agreement("fuzz.toml", &text) else { return };
    let Ok(usd) = Currency::parse("USD") else { return };
    let Ok(period) = Period::parse("2026-10") else { return };
    let mut records = Vec::new();
    let mut contributions = Vec::new();
    while !b.0.is_empty() {
        let kind = b.byte();
        if kind == 0xC0 {
            let line = format!(
                r#"{{"id":"c{}","party":"{}","kind":"{}","date":"2026-10-{:02}","description":"","accepted":{}}}"#,
                b.byte() % 4,
                if b.byte() % 2 == 0 { "h" } else { "lic" },
                KINDS[usize::from(b.byte() % 3)],
                1 + b.byte() % 28,
                b.byte() % 4 != 0
            );
            if let Ok(c) = parse_contribution_line(line.as_bytes()) {
                contributions.push(c);
            }
            continue;
        }
        let scale = u32::from(b.byte() % 12);
        let mantissa = b.u64(2) * u64::from(b.byte());
        let Ok(revenue) = Decimal::parse_json_number(&format!("{mantissa}e-{scale}")) else { continue };
        records.push(UsageRecord {
            id: Cow::Owned(format!("r{}", kind % 16)),
            host: Cow::Borrowed(if kind & 0x80 == 0 { "h" } else { "other" }),
            model: Cow::Borrowed(MODELS[usize::from(b.byte() % 4)]),
            use_case: Cow::Borrowed(USE_CASES[usize::from(b.byte() % 3)]),
            region: Cow::Borrowed(REGIONS[usize::from(b.byte() % 2)]),
            // Mostly in October, some either side of it.
            time: Instant::from_parts(OCTOBER - 3 * DAY + i64::try_from(b.u64(3) % (37 * 86_400)).unwrap_or(0), 0),
            requests: b.u64(2),
            input_tokens: if b.byte() == 0xFF { (1 << 63) - 1 } else { b.u64(3) },
            output_tokens: b.u64(3),
            revenue,
            currency: usd,
        });
    }
    // m-70b-ft is a fine-tune of m-70b.
    let (Ok(fine_tune), Ok(base)) = (ModelId::parse("m-70b-ft"), ModelId::parse("m-70b")) else { return };
    let Ok(lineage) = Lineage::new([(fine_tune, base)]) else { return };
    let forward = settle_records(&agreement, period, &records, &contributions, Vec::new(), &lineage);
    records.reverse();
    contributions.reverse();
    let backward = settle_records(&agreement, period, &records, &contributions, Vec::new(), &lineage);
    let statement = match (forward, backward) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.to_canonical().ok(), b.to_canonical().ok(), "the order of the records changed the statement");
            a
        }
        // Which of two conflicting records is named depends on which came first.
        (Err(SettleError::Conflict { .. }), Err(SettleError::Conflict { .. })) => return,
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "the order of the records changed the refusal");
            return;
        }
        (a, b) => panic!("one order settles and the other does not: {a:?} / {b:?}"),
    };
    let t = &statement.totals;
    let parts: i128 = t.contribution_allocation.iter().map(|(_, a)| a).sum();
    assert_eq!(parts, if t.contribution_allocation.is_empty() { 0 } else { t.contribution_pool }, "the parts are not the pool");
    assert_eq!(t.usage_total, t.usage_subtotal + t.minimum_true_up - t.cap_reduction);
    assert_eq!(t.net_payable, t.usage_total - t.host_credit + t.adjustments);
    assert_eq!(statement.lines.iter().map(|l| l.amount).sum::<i128>(), t.usage_subtotal);
    for line in &statement.lines {
        let derived = line.model == "m-70b-ft";
        assert_eq!(line.derived_from.as_deref(), derived.then_some("m-70b"), "the derived line names its base, and only it");
        assert_eq!(line.flags.iter().any(|f| f == "naming_violation"), derived && text.contains("name_prefix"), "the naming rule");
    }
    let bytes = statement.to_canonical().unwrap_or_default();
    assert_eq!(Statement::from_canonical(&bytes).as_ref(), Ok(&statement), "the canonical bytes do not decode to the statement");
});
