//! Instants and calendar months, without a clock.
//!
//! An [`Instant`] is a UTC point in time with nanosecond precision (seconds since the Unix epoch
//! and nanoseconds), so two record times compare as instants whatever offset they were written
//! with (SPEC §3). RFC 3339 parsing is strict and written here rather than taken from a date
//! library, because the grammar is small and the accepted set must be exactly RFC 3339: an offset
//! is required, seconds are required, leap seconds (`:60`) are refused.

use std::fmt;

/// A UTC instant: seconds since 1970-01-01T00:00:00Z and nanoseconds within the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instant {
    secs: i64,
    nanos: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("`{0}` is not an RFC 3339 time; write it like \"2026-10-02T10:00:00Z\" or \"2026-10-02T15:30:00+05:30\"")]
    Syntax(String),
    #[error("`{0}` has no UTC offset; add \"Z\" or an offset like \"+05:30\"")]
    NoOffset(String),
    #[error("`{0}` is not a real calendar time (month, day, hour, minute or second out of range)")]
    Range(String),
    #[error("`{0}` is not a month; write it as YYYY-MM, like \"2026-10\"")]
    Period(String),
}

/// Seconds in a day (UTC has no leap seconds here).
const DAY_SECS: i64 = 86_400;

impl Instant {
    /// `days` whole days later (saturating at the end of time).
    pub fn plus_days(self, days: u32) -> Instant {
        Instant::from_parts(self.secs().saturating_add(i64::from(days).saturating_mul(DAY_SECS)), self.nanos())
    }

    pub const fn from_parts(secs: i64, nanos: u32) -> Instant {
        Instant { secs, nanos }
    }

    /// Midnight UTC at the start of a calendar date.
    pub fn from_date(year: i32, month: u32, day: u32) -> Option<Instant> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Instant { secs: days_from_civil(year, month, day) * 86_400, nanos: 0 })
    }

    /// A date and time of day at a UTC offset in minutes.
    pub fn from_civil(
        (year, month, day): (i32, u32, u32),
        (hour, minute, second, nanos): (u32, u32, u32, u32),
        offset_minutes: i32,
    ) -> Option<Instant> {
        let midnight = Instant::from_date(year, month, day)?;
        if hour > 23 || minute > 59 || second > 59 || nanos > 999_999_999 || offset_minutes.abs() >= 24 * 60 {
            return None;
        }
        let secs = midnight.secs + i64::from(hour * 3600 + minute * 60 + second) - i64::from(offset_minutes) * 60;
        Some(Instant { secs, nanos })
    }

    /// Parses an RFC 3339 date-time with a required offset, normalised to UTC.
    pub fn parse_rfc3339(text: &str) -> Result<Instant, TimeError> {
        match Self::parse_utc_seconds(text) {
            Some(t) => Ok(t),
            None => Self::parse_rfc3339_general(text),
        }
    }

    /// The common form `YYYY-MM-DDTHH:MM:SSZ` in one pass; `None` sends anything else to the
    /// general parser. Same results.
    fn parse_utc_seconds(text: &str) -> Option<Instant> {
        let b = text.as_bytes();
        if b.len() != 20 || b[19] != b'Z' || b[10] != b'T' || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let two = |i: usize| -> Option<u32> {
            let (h, l) = (b[i].wrapping_sub(b'0'), b[i + 1].wrapping_sub(b'0'));
            (h < 10 && l < 10).then(|| u32::from(h) * 10 + u32::from(l))
        };
        let year = two(0)? * 100 + two(2)?;
        if year == 0 || year == 9999 {
            return None; // the range check at the ends of time is the general parser's
        }
        Instant::from_civil((i32::try_from(year).ok()?, two(5)?, two(8)?), (two(11)?, two(14)?, two(17)?, 0), 0)
    }

    fn parse_rfc3339_general(text: &str) -> Result<Instant, TimeError> {
        let syntax = || TimeError::Syntax(text.to_owned());
        let b = text.as_bytes();
        if b.len() < 19 {
            return Err(syntax());
        }
        let num = |range: std::ops::Range<usize>| -> Result<u32, TimeError> {
            b[range].iter().try_fold(0u32, |acc, d| if d.is_ascii_digit() { Ok(acc * 10 + u32::from(d - b'0')) } else { Err(syntax()) })
        };
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
            return Err(syntax());
        }
        let year = i32::try_from(num(0..4)?).map_err(|_| syntax())?;
        let (month, day, hour, minute, second) = (num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
        let mut at = 19;
        let mut nanos = 0u32;
        if b.get(at) == Some(&b'.') {
            let start = at + 1;
            let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
            if end == start || end - start > 9 {
                return Err(syntax());
            }
            nanos = num(start..end)? * 10u32.pow(u32::try_from(9 - (end - start)).map_err(|_| syntax())?);
            at = end;
        }
        let offset_minutes = match &b[at..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (num(at + 1..at + 3)?, num(at + 4..at + 6)?);
                if h > 23 || m > 59 {
                    return Err(TimeError::Range(text.to_owned()));
                }
                let minutes = i32::try_from(h * 60 + m).map_err(|_| syntax())?;
                if *sign == b'-' { -minutes } else { minutes }
            }
            [] => return Err(TimeError::NoOffset(text.to_owned())),
            _ => return Err(syntax()),
        };
        // The UTC instant must itself be writable in RFC 3339: years 0000 to 9999 (an offset can
        // push `0000-01-01T00:00:00+00:01` out of them).
        Instant::from_civil((year, month, day), (hour, minute, second, nanos), offset_minutes)
            .filter(|t| !(year == 0 || year == 9999) || (0..=9999).contains(&t.date().0))
            .ok_or_else(|| TimeError::Range(text.to_owned()))
    }

    pub fn secs(&self) -> i64 {
        self.secs
    }

    pub fn nanos(&self) -> u32 {
        self.nanos
    }

    /// The UTC calendar date of this instant.
    pub fn date(&self) -> (i32, u32, u32) {
        civil_from_days(self.secs.div_euclid(86_400))
    }
}

impl Instant {
    /// Appends RFC 3339 in UTC with `Z`, and only as many fraction digits as needed (none, 3, 6
    /// or 9). Written by hand: it runs once per selected record.
    pub fn write_rfc3339(&self, out: &mut Vec<u8>) {
        fn two(out: &mut Vec<u8>, value: u32) {
            out.extend_from_slice(&[b'0' + digit(value / 10), b'0' + digit(value % 10)]);
        }
        fn digit(value: u32) -> u8 {
            u8::try_from(value % 10).unwrap_or(0)
        }
        let (y, mo, d) = self.date();
        let year = u32::try_from(y).unwrap_or(0); // parsing keeps years within 0000-9999
        let in_day = u32::try_from(self.secs.rem_euclid(86_400)).unwrap_or(0);
        two(out, year / 100);
        two(out, year % 100);
        out.push(b'-');
        two(out, mo);
        out.push(b'-');
        two(out, d);
        out.push(b'T');
        two(out, in_day / 3600);
        out.push(b':');
        two(out, in_day % 3600 / 60);
        out.push(b':');
        two(out, in_day % 60);
        let (value, width) = match self.nanos {
            0 => (0, 0),
            n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
            n if n % 1_000 == 0 => (n / 1_000, 6),
            n => (n, 9),
        };
        if width > 0 {
            out.push(b'.');
            for i in (0..width).rev() {
                out.push(b'0' + digit(value / 10u32.pow(i)));
            }
        }
        out.push(b'Z');
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(32);
        self.write_rfc3339(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// A calendar month in UTC: the settlement period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Period, TimeError> {
        let bad = || TimeError::Period(text.to_owned());
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let (year, month) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Period { year, month })
    }

    pub fn year(&self) -> i32 {
        self.year
    }

    pub fn month(&self) -> u32 {
        self.month
    }

    /// The first instant of the month.
    pub fn start(&self) -> Instant {
        Instant { secs: days_from_civil(self.year, self.month, 1) * 86_400, nanos: 0 }
    }

    /// The first instant of the next month (the period is half-open).
    pub fn end_exclusive(&self) -> Instant {
        self.next().start()
    }

    pub fn next(&self) -> Period {
        if self.month == 12 { Period { year: self.year + 1, month: 1 } } else { Period { year: self.year, month: self.month + 1 } }
    }

    pub fn previous(&self) -> Period {
        if self.month == 1 { Period { year: self.year - 1, month: 12 } } else { Period { year: self.year, month: self.month - 1 } }
    }

    /// The month an instant falls in.
    pub fn of(instant: Instant) -> Period {
        let (year, month, _) = instant.date();
        Period { year, month }
    }

    pub fn contains(&self, instant: Instant) -> bool {
        self.start() <= instant && instant < self.end_exclusive()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // The ranges are bounded by construction: month 1..=12, day 1..=31.
    (i32::try_from(year).unwrap_or(i32::MAX), u32::try_from(month).unwrap_or(1), u32::try_from(day).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> String {
        Instant::parse_rfc3339(s).map(|i| i.to_string()).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn parses_rfc3339_and_normalises_to_utc() {
        assert_eq!(t("2026-10-02T10:00:00Z"), "2026-10-02T10:00:00Z");
        assert_eq!(t("2026-11-01T02:30:00+05:30"), "2026-10-31T21:00:00Z");
        assert_eq!(t("2026-10-31T23:59:59.999Z"), "2026-10-31T23:59:59.999Z");
        assert_eq!(t("2026-10-31T23:59:59.999000Z"), "2026-10-31T23:59:59.999Z");
        assert_eq!(t("2026-10-31T20:00:00-04:00"), "2026-11-01T00:00:00Z");
        assert_eq!(t("2024-02-29T00:00:00.000000001Z"), "2024-02-29T00:00:00.000000001Z");
        assert_eq!(t("1969-12-31T23:59:59Z"), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn the_short_path_agrees_with_the_general_one() {
        for text in [
            "2026-10-02T10:00:00Z",
            "2024-02-29T23:59:59Z",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-10-02T24:00:00Z",
            "2026-10-02t10:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2026-10-0xT10:00:00Z",
        ] {
            let general = Instant::parse_rfc3339_general(text).ok();
            assert_eq!(Instant::parse_rfc3339(text).ok(), general, "{text}");
            if let Some(short) = Instant::parse_utc_seconds(text) {
                assert_eq!(Some(short), general, "{text}");
            }
        }
    }

    #[test]
    fn refuses_what_rfc3339_refuses() {
        assert_eq!(t("2026-10-02T10:00:00"), "`2026-10-02T10:00:00` has no UTC offset; add \"Z\" or an offset like \"+05:30\"");
        assert!(t("2026-10-02").starts_with("`2026-10-02` is not an RFC 3339 time"));
        assert!(t("2026-10-02T10:00Z").starts_with("`2026-10-02T10:00Z` is not an RFC 3339 time"));
        assert!(t("2025-02-29T00:00:00Z").starts_with("`2025-02-29T00:00:00Z` is not a real calendar time"));
        assert!(t("2026-10-02T23:59:60Z").starts_with("`2026-10-02T23:59:60Z` is not a real calendar time"));
        assert!(t("2026-10-02T10:00:00.Z").starts_with("`2026-10-02T10:00:00.Z` is not an RFC 3339 time"));
        // Found by fuzzing: an offset must not move the UTC instant out of years 0000-9999.
        assert!(t("0000-01-01T00:00:00+00:01").starts_with("`0000-01-01T00:00:00+00:01` is not a real calendar time"));
        assert!(t("9999-12-31T23:59:59-00:01").starts_with("`9999-12-31T23:59:59-00:01` is not a real calendar time"));
        assert_eq!(t("0000-01-01T00:00:00Z"), "0000-01-01T00:00:00Z");
        assert_eq!(t("9999-12-31T23:59:59.999999999Z"), "9999-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn periods_are_half_open_months() {
        let p = Period::parse("2026-12").ok();
        assert_eq!(p.map(|p| p.next().to_string()), Some("2027-01".to_owned()));
        assert_eq!(p.map(|p| p.end_exclusive().to_string()), Some("2027-01-01T00:00:00Z".to_owned()));
        assert_eq!(
            Period::parse("2026-13").map_err(|e| e.to_string()),
            Err("`2026-13` is not a month; write it as YYYY-MM, like \"2026-10\"".to_owned())
        );
        let last = Instant::parse_rfc3339("2026-10-31T23:59:59.999Z").ok();
        let oct = Period::parse("2026-10").ok();
        assert_eq!(oct.zip(last).map(|(p, i)| p.contains(i)), Some(true));
        assert_eq!(oct.map(|p| p.contains(p.end_exclusive())), Some(false));
    }

    #[test]
    fn civil_round_trip() {
        for days in -800_000..800_000i64 {
            if days % 997 == 0 {
                let (y, m, d) = civil_from_days(days);
                assert_eq!(days_from_civil(y, m, d), days);
            }
        }
    }
}
