//! Currencies, minor units and the one rounding rule.
//!
//! Amounts are integers of the currency's minor unit (`i128`, signed so that adjustments and
//! reversals can be negative). The only place an exact value becomes an amount is
//! [`round_half_even`]: the remainder goes to the nearest minor unit, and an exact half goes to the
//! even neighbour (banker's rounding), as SPEC §4 requires.

use std::fmt;
use std::str::FromStr;

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive};

use crate::decimal::{Decimal, pow10};

/// An ISO 4217 currency with its minor unit (USD 2, JPY 0, BHD 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    minor_units: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    #[error("`{0}` is not an ISO 4217 currency code; use a code such as \"USD\", \"EUR\" or \"JPY\"")]
    Unknown(String),
    #[error("`{0}` has no minor unit (a precious metal or testing code); use a national currency")]
    NoMinorUnit(String),
}

impl Currency {
    pub fn parse(code: &str) -> Result<Currency, CurrencyError> {
        let bytes = code.as_bytes();
        let slot = match bytes {
            [a @ b'A'..=b'Z', b @ b'A'..=b'Z', c @ b'A'..=b'Z'] => table_index(*a, *b, *c),
            _ => return Err(CurrencyError::Unknown(code.to_owned())),
        };
        match minor_unit_table()[slot] {
            UNKNOWN => Err(CurrencyError::Unknown(code.to_owned())),
            NO_MINOR_UNIT => Err(CurrencyError::NoMinorUnit(code.to_owned())),
            units => Ok(Currency { code: [bytes[0], bytes[1], bytes[2]], minor_units: units }),
        }
    }

    pub fn code(&self) -> &str {
        // The code came from a validated ASCII string.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Digits after the decimal point in this currency's amounts.
    pub fn minor_units(&self) -> u8 {
        self.minor_units
    }

    /// Formats an amount in minor units with exactly the minor-unit digits: `-12.30`, `1500` (JPY).
    pub fn format(&self, minor: i128) -> String {
        format_scaled(minor, u32::from(self.minor_units))
    }

    /// Converts a decimal to minor units when it has no more places than the currency allows.
    pub fn to_minor(&self, value: &Decimal) -> Option<i128> {
        if u32::from(value.scale()) > u32::from(self.minor_units) {
            return None;
        }
        let factor = 10i128.checked_pow(u32::from(self.minor_units - value.scale()))?;
        i128::try_from(value.mantissa()).ok()?.checked_mul(factor)
    }

    /// Reads an amount exactly as [`Self::format`] writes it (`-12.30`; `1500` in JPY): exactly
    /// the minor-unit digits, no `+`, no `-0.00`.
    pub fn read(&self, text: &str) -> Option<i128> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(digits) => (true, digits),
            None => (false, text),
        };
        let minor = self.to_minor(&Decimal::parse(digits).ok()?)?;
        let minor = if negative { minor.checked_neg()? } else { minor };
        (self.format(minor) == text).then_some(minor)
    }

    /// Reads an amount written in this currency (`800.00`; `1500` in JPY) as minor units, exactly:
    /// more places than the currency has are refused, never rounded. `what` names the amount in
    /// the message (`the amount paid`).
    pub fn parse_amount(&self, text: &str, what: &str) -> Result<i128, String> {
        let amount = Decimal::parse(text).map_err(|e| e.to_string())?;
        let (places, allowed) = (amount.scale(), self.minor_units);
        if places > allowed {
            let rule = match allowed {
                0 => format!("none; write {what} as a whole number"),
                n => format!("at most {n}; write {what} with at most {n} decimal place{}", if n == 1 { "" } else { "s" }),
            };
            return Err(format!("the amount `{text}` has {places} decimal places, but a {self} amount has {rule}"));
        }
        self.to_minor(&amount).ok_or_else(|| format!("the amount `{text}` is too large to record"))
    }

    /// Rounds an exact value of this currency to minor units, half to even; `None` past 38 digits.
    pub fn round(&self, exact: &BigRational) -> Option<i128> {
        round_half_even(exact, u32::from(self.minor_units))
    }
}

const UNKNOWN: u8 = u8::MAX;
const NO_MINOR_UNIT: u8 = u8::MAX - 1;

fn table_index(a: u8, b: u8, c: u8) -> usize {
    (usize::from(a - b'A') * 26 + usize::from(b - b'A')) * 26 + usize::from(c - b'A')
}

/// Minor units of every three-letter code, from ISO 4217 (the `iso_currency` crate), looked up
/// once: usage records name their currency on every line, and a 26³ table answers in one load.
fn minor_unit_table() -> &'static [u8; 26 * 26 * 26] {
    static TABLE: std::sync::OnceLock<[u8; 26 * 26 * 26]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [UNKNOWN; 26 * 26 * 26];
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                for c in b'A'..=b'Z' {
                    let code = [a, b, c];
                    let Some(iso) = std::str::from_utf8(&code).ok().and_then(iso_currency::Currency::from_code) else { continue };
                    table[table_index(a, b, c)] = iso.exponent().and_then(|e| u8::try_from(e).ok()).unwrap_or(NO_MINOR_UNIT);
                }
            }
        }
        table
    })
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

/// An amount too large for the 38 digits a statement's amounts hold (`i128` minor units), named
/// by where it arose (`line 2 (m-70b, search, eu)`, `totals.net_payable`). No real statement
/// reaches it; settlement refuses rather than wrap or clamp.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{at} exceeds 38 digits, the largest amount a statement holds; check the records and adjustments summed there")]
pub struct AmountOverflow {
    pub at: String,
}

impl AmountOverflow {
    pub fn at(at: impl Into<String>) -> AmountOverflow {
        AmountOverflow { at: at.into() }
    }
}

/// Rounds `exact × 10^places` to the nearest integer, an exact half to the even neighbour;
/// `None` when that does not fit in an `i128`.
pub fn round_half_even(exact: &BigRational, places: u32) -> Option<i128> {
    let scaled = exact * BigRational::from_integer(pow10(places));
    round_rational_half_even(&scaled).to_i128()
}

/// `a + b`, or an [`AmountOverflow`] naming `at`.
pub fn add(a: i128, b: i128, at: impl FnOnce() -> String) -> Result<i128, AmountOverflow> {
    a.checked_add(b).ok_or_else(|| AmountOverflow::at(at()))
}

/// `a − b`, or an [`AmountOverflow`] naming `at`.
pub fn sub(a: i128, b: i128, at: impl FnOnce() -> String) -> Result<i128, AmountOverflow> {
    a.checked_sub(b).ok_or_else(|| AmountOverflow::at(at()))
}

/// The sum of `amounts`, or an [`AmountOverflow`] naming `at`.
pub fn sum(amounts: impl IntoIterator<Item = i128>, at: impl Fn() -> String) -> Result<i128, AmountOverflow> {
    amounts.into_iter().try_fold(0i128, |total, a| add(total, a, &at))
}

/// The nearest integer to `value`, an exact half to the even one.
pub fn round_rational_half_even(value: &BigRational) -> BigInt {
    let (numer, denom) = (value.numer(), value.denom());
    // floor division, then decide on the remainder: denominators are always positive here.
    let (quotient, remainder) = numer.div_mod_floor(denom);
    let twice = &remainder * 2u8;
    match twice.cmp(denom) {
        std::cmp::Ordering::Less => quotient,
        std::cmp::Ordering::Greater => quotient + 1u8,
        std::cmp::Ordering::Equal => {
            if quotient.is_even() {
                quotient
            } else {
                quotient + 1u8
            }
        }
    }
}

/// Formats `value × 10^-places` with exactly `places` fraction digits.
pub fn format_scaled(value: i128, places: u32) -> String {
    with_point(value < 0, value.unsigned_abs().to_string(), places)
}

/// Formats `value × 10^-places` (a sum of magnitudes, up to `u128`) with exactly `places`
/// fraction digits.
pub fn format_unsigned_scaled(value: u128, places: u32) -> String {
    with_point(false, value.to_string(), places)
}

/// Formats an exact rational with `places` fraction digits, rounded half to even; used for
/// information only (blended rates, fractions), never for amounts.
pub fn format_rational(value: &BigRational, places: u32) -> String {
    let scaled = value * BigRational::from_integer(pow10(places));
    let rounded = round_rational_half_even(&scaled);
    with_point(rounded.is_negative(), rounded.abs().to_string(), places)
}

fn with_point(negative: bool, digits: String, places: u32) -> String {
    let sign = if negative { "-" } else { "" };
    let places = usize::try_from(places).unwrap_or(0);
    if places == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = places + 1);
    let (int, frac) = padded.split_at(padded.len() - places);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i64, d: i64) -> BigRational {
        BigRational::new(BigInt::from(n), BigInt::from(d))
    }

    #[test]
    fn minor_units_follow_iso_4217() {
        assert_eq!(Currency::parse("USD").map(|c| c.minor_units()), Ok(2));
        assert_eq!(Currency::parse("JPY").map(|c| c.minor_units()), Ok(0));
        assert_eq!(Currency::parse("BHD").map(|c| c.minor_units()), Ok(3));
        assert_eq!(
            Currency::parse("XAU").map_err(|e| e.to_string()),
            Err("`XAU` has no minor unit (a precious metal or testing code); use a national currency".to_owned())
        );
        assert!(Currency::parse("US").is_err() && Currency::parse("usd").is_err() && Currency::parse("USDD").is_err());
        assert_eq!(
            Currency::parse("USX").map_err(|e| e.to_string()),
            Err("`USX` is not an ISO 4217 currency code; use a code such as \"USD\", \"EUR\" or \"JPY\"".to_owned())
        );
    }

    #[test]
    fn rounds_half_to_even() {
        assert_eq!(round_half_even(&r(5, 1000), 2), Some(0)); // 0.005 -> 0.00
        assert_eq!(round_half_even(&r(15, 1000), 2), Some(2)); // 0.015 -> 0.02
        assert_eq!(round_half_even(&r(25, 1000), 2), Some(2)); // 0.025 -> 0.02
        assert_eq!(round_half_even(&r(2501, 100_000), 2), Some(3));
        assert_eq!(round_half_even(&r(1, 3), 2), Some(33));
        assert_eq!(round_half_even(&r(2, 3), 2), Some(67));
        assert_eq!(round_half_even(&r(-5, 1000), 2), Some(0));
        assert_eq!(round_half_even(&r(-15, 1000), 2), Some(-2));
        assert_eq!(round_half_even(&r(5, 10), 0), Some(0));
        assert_eq!(round_half_even(&r(15, 10), 0), Some(2));
    }

    #[test]
    fn formats_exactly_the_minor_digits() {
        assert_eq!(format_scaled(0, 2), "0.00");
        assert_eq!(format_scaled(5, 2), "0.05");
        assert_eq!(format_scaled(-130, 2), "-1.30");
        assert_eq!(format_scaled(1500, 0), "1500");
        assert_eq!(format_scaled(1, 3), "0.001");
        assert_eq!(format_rational(&r(20, 133), 10), "0.1503759398");
        assert_eq!(format_rational(&r(-1, 3), 2), "-0.33");
    }

    #[test]
    fn converts_decimals_to_minor_units_only_when_exact() {
        let usd = Currency::parse("USD").ok();
        let d = |s| Decimal::parse(s).ok();
        let minor = |s| usd.zip(d(s)).and_then(|(c, v)| c.to_minor(&v));
        assert_eq!(minor("500.00"), Some(50_000));
        assert_eq!(minor("0.1"), Some(10));
        assert_eq!(minor("0.001"), None);
    }

    #[test]
    fn reads_money_with_exactly_the_minor_digits() {
        let usd = Currency::parse("USD").ok();
        let jpy = Currency::parse("JPY").ok();
        assert_eq!(usd.and_then(|c| c.read("-12.30")), Some(-1230));
        assert_eq!(usd.and_then(|c| c.read("0.00")), Some(0));
        assert_eq!(usd.and_then(|c| c.read("12.3")), None);
        assert_eq!(usd.and_then(|c| c.read("-0.00")), None);
        assert_eq!(jpy.and_then(|c| c.read("1500")), Some(1500));
        assert_eq!(jpy.and_then(|c| c.read("1500.0")), None);
    }
}
