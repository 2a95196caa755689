//! Exact non-negative decimals.
//!
//! Every decimal revshare reads (revenue, rates, bounds, uplift, pool, minimum, cap) is
//! non-negative, so the type has no sign. A value is kept normalised — no trailing fractional
//! zeros — so that equality is equality of numbers (`1.5 == 1.50`, SPEC §3) and the canonical text
//! is unique. Limits: at most 28 significant digits and at most 28 decimal places; both make every
//! value fit a `u128` mantissa below 10^28, which is what lets [`crate::rollup`] sum millions of
//! them in plain integers without overflow.

use std::fmt;

use num_bigint::BigInt;
use num_rational::BigRational;

/// The most significant digits (and decimal places) a decimal may have.
pub const MAX_DIGITS: u32 = 28;

/// A non-negative exact decimal: `mantissa × 10^-scale`, normalised.
/// Equality is structural, which is numeric because values are normalised; order is numeric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    mantissa: u128,
    scale: u8,
}

/// Why a text is not a decimal; the message says what would be right.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("`{0}` is not a decimal number; write digits with an optional fraction, like \"12.50\"")]
    Syntax(String),
    #[error("`{0}` is negative; it must be zero or more")]
    Negative(String),
    #[error("`{0}` has more than 28 significant digits")]
    TooManyDigits(String),
    #[error("`{0}` has more than 28 decimal places")]
    TooManyPlaces(String),
}

impl Decimal {
    pub const ZERO: Decimal = Decimal { mantissa: 0, scale: 0 };
    pub const ONE: Decimal = Decimal { mantissa: 1, scale: 0 };

    /// Parses the plain decimal text used in agreement files and decimal strings of usage
    /// records: `digits[.digits]`, no sign, no exponent, no separators.
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        match Self::parse_short(text) {
            Some(d) => Ok(d),
            None => Self::parse_parts(text, text, false),
        }
    }

    /// One pass over a short plain decimal (at most 19 characters, like nearly every revenue);
    /// `None` sends anything else, valid or not, to the general parser. Same results.
    fn parse_short(text: &str) -> Option<Decimal> {
        let b = text.as_bytes();
        // 19 characters hold at most 19 digits, which a u64 always fits.
        if b.is_empty() || b.len() > 19 {
            return None;
        }
        let mut mantissa: u64 = 0;
        let mut point = None;
        for (i, &c) in b.iter().enumerate() {
            match c {
                b'0'..=b'9' => mantissa = mantissa * 10 + u64::from(c - b'0'),
                b'.' if point.is_none() && i > 0 && i + 1 < b.len() => point = Some(i),
                _ => return None,
            }
        }
        let mut scale = point.map_or(0, |p| b.len() - p - 1);
        while scale > 0 && mantissa.is_multiple_of(10) {
            mantissa /= 10;
            scale -= 1;
        }
        Some(Decimal { mantissa: u128::from(mantissa), scale: u8::try_from(scale).ok()? })
    }

    /// Parses the exact text of a JSON number (RFC 8259 grammar, exponent allowed), never
    /// through a binary float.
    pub fn parse_json_number(text: &str) -> Result<Decimal, DecimalError> {
        Self::parse_parts(text, text, true)
    }

    fn parse_parts(original: &str, text: &str, allow_exponent: bool) -> Result<Decimal, DecimalError> {
        let syntax = || DecimalError::Syntax(original.to_owned());
        let bytes = text.as_bytes();
        if bytes.first() == Some(&b'-') {
            // Still check the rest is a number, so "-abc" reads as a syntax error.
            Self::parse_parts(original, &text[1..], allow_exponent)?;
            return Err(DecimalError::Negative(original.to_owned()));
        }
        let (number, exponent) = match text.find(['e', 'E']) {
            Some(at) if allow_exponent => {
                let exp_text = &text[at + 1..];
                let digits = exp_text.strip_prefix(['+', '-']).unwrap_or(exp_text);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                // An exponent beyond ±10^6 cannot give a valid decimal anyway.
                let magnitude: i64 = if digits.len() > 7 { 10_000_000 } else { digits.parse().map_err(|_| syntax())? };
                let exponent = if exp_text.starts_with('-') { -magnitude } else { magnitude };
                (&text[..at], exponent)
            }
            _ => (text, 0),
        };
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (number, None),
        };
        let digits_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok(int_part) || frac_part.is_some_and(|f| !digits_ok(f)) {
            return Err(syntax());
        }
        if allow_exponent && int_part.len() > 1 && int_part.starts_with('0') {
            return Err(syntax()); // JSON forbids leading zeros
        }
        let frac_part = frac_part.unwrap_or("").trim_end_matches('0');
        // All digits as one integer without leading zeros, and the power of ten that scales it.
        let int_digits = int_part.trim_start_matches('0');
        let frac_digits = if int_digits.is_empty() { frac_part.trim_start_matches('0') } else { frac_part };
        let mut scale = i64::try_from(frac_part.len()).map_err(|_| syntax())? - exponent;
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Ok(Decimal::ZERO);
        }
        // Trailing zeros of the integer digits (only when there is no fraction) go to the scale.
        let (int_digits, zeros) = if frac_digits.is_empty() {
            let trimmed = int_digits.trim_end_matches('0');
            (trimmed, int_digits.len() - trimmed.len())
        } else {
            (int_digits, 0)
        };
        scale -= i64::try_from(zeros).map_err(|_| syntax())?;
        let significant = int_digits.len() + frac_digits.len();
        // Significant digits include the trailing zeros of an integer (1e30 has 31).
        let total_digits = i64::try_from(significant).map_err(|_| syntax())? + (-scale).max(0);
        if total_digits > i64::from(MAX_DIGITS) {
            return Err(DecimalError::TooManyDigits(original.to_owned()));
        }
        if scale > i64::from(MAX_DIGITS) {
            return Err(DecimalError::TooManyPlaces(original.to_owned()));
        }
        // At most 28 digits in all, so none of this can overflow a u128.
        let mut mantissa: u128 = 0;
        for d in int_digits.bytes().chain(frac_digits.bytes()) {
            mantissa = mantissa * 10 + u128::from(d - b'0');
        }
        while scale < 0 {
            mantissa *= 10;
            scale += 1;
        }
        let scale = u8::try_from(scale).map_err(|_| syntax())?;
        Ok(Decimal { mantissa, scale })
    }

    /// Builds a decimal from an integer count (token volumes, bounds).
    pub fn from_u128(value: u128) -> Result<Decimal, DecimalError> {
        Decimal::parse(&value.to_string())
    }

    /// The decimal `mantissa × 10^-scale` as [`Decimal::mantissa`] and [`Decimal::scale`] give
    /// it: `None` unless it is normalised (no trailing fractional zero; zero has scale 0) and
    /// within 28 digits and places. For values read back from storage.
    pub fn from_parts(mantissa: u128, scale: u8) -> Option<Decimal> {
        let normalised = if mantissa == 0 { scale == 0 } else { scale == 0 || !mantissa.is_multiple_of(10) };
        let fits = u32::from(scale) <= MAX_DIGITS && mantissa < 10u128.pow(MAX_DIGITS);
        (normalised && fits).then_some(Decimal { mantissa, scale })
    }

    /// The digits, as an integer; the value is `mantissa() × 10^-scale()`.
    pub fn mantissa(&self) -> u128 {
        self.mantissa
    }

    /// Decimal places of the normalised value (0..=28).
    pub fn scale(&self) -> u8 {
        self.scale
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The exact value as a rational.
    pub fn to_rational(&self) -> BigRational {
        BigRational::new(BigInt::from(self.mantissa), pow10(u32::from(self.scale)))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Bring both to the larger scale; fall back to rationals if that overflows u128.
        let scale = self.scale.max(other.scale);
        let widen = |d: &Decimal| 10u128.checked_pow(u32::from(scale - d.scale)).and_then(|f| d.mantissa.checked_mul(f));
        match (widen(self), widen(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.to_rational().cmp(&other.to_rational()),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// 10^n as a big integer.
pub fn pow10(n: u32) -> BigInt {
    num_traits::pow(BigInt::from(10u8), usize::try_from(n).unwrap_or(usize::MAX))
}

impl Decimal {
    /// Appends the canonical text: no exponent, no trailing fractional zeros, `0` for zero.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        crate::canonical::push_uint(out, self.mantissa);
        let scale = usize::from(self.scale);
        if scale == 0 {
            return;
        }
        let digits = out.len() - start;
        if digits <= scale {
            // 0.000ddd: pad with zeros in front of the digits.
            let pad = scale - digits + 1;
            out.splice(start..start, std::iter::repeat_n(b'0', pad));
        }
        let point = out.len() - scale;
        out.insert(point, b'.');
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(32);
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parts_takes_only_normalised_values() {
        assert_eq!(Decimal::from_parts(15, 1), Decimal::parse("1.5").ok());
        assert_eq!(Decimal::from_parts(0, 0), Some(Decimal::ZERO));
        assert_eq!(Decimal::from_parts(150, 2), None, "1.50 is written 1.5");
        assert_eq!(Decimal::from_parts(0, 3), None, "zero has scale 0");
        assert_eq!(Decimal::from_parts(1, 29), None, "at most 28 places");
        assert_eq!(Decimal::from_parts(10u128.pow(28), 0), None, "at most 28 digits");
        assert_eq!(Decimal::from_parts(10u128.pow(28) - 1, 0).map(|d| d.mantissa()), Some(10u128.pow(28) - 1));
    }

    fn p(s: &str) -> String {
        Decimal::parse(s).map(|d| d.to_string()).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(p("1.50"), "1.5");
        assert_eq!(p("0"), "0");
        assert_eq!(p("000.000"), "0");
        assert_eq!(p("1080.000000"), "1080");
        assert_eq!(p("0.0015"), "0.0015");
        assert_eq!(p("100"), "100");
        assert_eq!(Decimal::parse("1.5"), Decimal::parse("1.50"));
    }

    #[test]
    fn the_short_path_agrees_with_the_general_one() {
        for text in [
            "0",
            "0.0",
            "00.50",
            "3.111876",
            "1080.000000",
            "1000",
            "9999999999999999999",
            "0.0000000000000000001",
            "12.",
            ".5",
            "1..2",
            "1e5",
            "-1",
            "99999999999999999999",
        ] {
            let general = Decimal::parse_parts(text, text, false).ok();
            assert_eq!(Decimal::parse(text).ok(), general, "{text}");
            if let Some(short) = Decimal::parse_short(text) {
                assert_eq!(Some(short), general, "{text}");
            }
        }
    }

    #[test]
    fn orders_by_value() {
        let d = |s| Decimal::parse(s).unwrap_or(Decimal::ZERO);
        assert!(d("0.20") < d("1"));
        assert!(d("2") > d("1.999999999999999999999999999"));
        assert!(d("1234567890123456789012345678") > d("0.0000000000000000000000000001"));
        assert_eq!(d("0.5").cmp(&d("0.50")), std::cmp::Ordering::Equal);
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        assert_eq!(p("1e5"), "`1e5` is not a decimal number; write digits with an optional fraction, like \"12.50\"");
        assert_eq!(p(".5"), "`.5` is not a decimal number; write digits with an optional fraction, like \"12.50\"");
        assert_eq!(p("5."), "`5.` is not a decimal number; write digits with an optional fraction, like \"12.50\"");
        assert_eq!(p("-1"), "`-1` is negative; it must be zero or more");
        assert_eq!(p(""), "`` is not a decimal number; write digits with an optional fraction, like \"12.50\"");
    }

    #[test]
    fn limits_digits_and_places() {
        assert_eq!(p("1234567890123456789012345678"), "1234567890123456789012345678");
        assert_eq!(p("12345678901234567890123456789"), "`12345678901234567890123456789` has more than 28 significant digits");
        assert_eq!(p("0.0000000000000000000000000001"), "0.0000000000000000000000000001");
        assert_eq!(p("0.00000000000000000000000000001"), "`0.00000000000000000000000000001` has more than 28 decimal places");
        assert_eq!(p("1.000000000000000000000000000000000"), "1");
    }

    #[test]
    fn json_numbers_are_read_exactly() {
        let j = |s: &str| Decimal::parse_json_number(s).map(|d| d.to_string()).unwrap_or_else(|e| e.to_string());
        assert_eq!(j("1.5e3"), "1500");
        assert_eq!(j("25E-1"), "2.5");
        assert_eq!(j("0.1"), "0.1");
        assert_eq!(j("1e400"), "`1e400` has more than 28 significant digits");
        assert_eq!(j("1e-400"), "`1e-400` has more than 28 decimal places");
        assert_eq!(j("01"), "`01` is not a decimal number; write digits with an optional fraction, like \"12.50\"");
        assert_eq!(j("-0.5"), "`-0.5` is negative; it must be zero or more");
    }
}
