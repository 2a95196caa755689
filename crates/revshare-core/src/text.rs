//! Text from outside — a bundle's contents, another party's dispute reason, a key name — as it is
//! shown on a terminal or a page: cut to a length, and with nothing in it that could take over the
//! display. Pure functions of their input.

/// At most `max` characters of `text`, with `…` after a cut.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Whether a character could change how a terminal or a page shows text: control characters
/// (C0, DEL, C1) and the Unicode controls that reorder or hide text (bidirectional overrides and
/// isolates, zero-width marks, the byte-order mark).
fn hides_or_moves(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `text` cut to `max` characters ([`shorten`]) with every character that could move a
/// terminal's cursor, clear or colour it, or make text read otherwise than it is, written as a
/// `\u{…}` escape: safe to print, and still saying exactly what was there.
pub fn printable(text: &str, max: usize) -> String {
    let short = shorten(text, max);
    if !short.contains(hides_or_moves) {
        return short;
    }
    let mut out = String::with_capacity(short.len() + 16);
    for c in short.chars() {
        if hides_or_moves(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A number as a table shows it, its integer part in groups of three: `3917107.48` →
/// `3,917,107.48`, `-1200` → `-1,200`. Anything that is not a plain decimal is left as it is.
/// For people (tables, pages); JSON and CSV carry numbers as the statement writes them.
pub fn grouped(number: &str) -> String {
    let (sign, rest) = number.strip_prefix('-').map_or(("", number), |rest| ("-", rest));
    let (whole, fraction) = rest.split_once('.').map_or((rest, None), |(w, f)| (w, Some(f)));
    let plain = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !plain(whole) || fraction.is_some_and(|f| !plain(f)) {
        return number.to_owned();
    }
    let mut out = String::with_capacity(number.len() + whole.len() / 3);
    out.push_str(sign);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_long_text_cut() {
        assert_eq!(printable("\u{1b}[2J\u{1b}[1;32m verified", 100), "\\u{1b}[2J\\u{1b}[1;32m verified");
        assert_eq!(printable("abc\u{202e}def\u{200b}\n\u{85}", 100), "abc\\u{202e}def\\u{200b}\\u{a}\\u{85}");
        assert_eq!(printable("plain, ünïcode ✓", 100), "plain, ünïcode ✓");
        assert_eq!(printable(&"x".repeat(10), 4), "xxxx…");
        assert_eq!(printable("ab\u{1b}cd", 3), "ab\\u{1b}…");
    }

    #[test]
    fn table_numbers_are_grouped_by_thousands() {
        let cases =
            [("3917107.48", "3,917,107.48"), ("-1200", "-1,200"), ("999", "999"), ("1000.000001", "1,000.000001"), ("0.25", "0.25")];
        for (plain, shown) in cases {
            assert_eq!(grouped(plain), shown);
        }
        for untouched in ["", "-", "1.", "∞", "1e5", "12a", "sha256:12345"] {
            assert_eq!(grouped(untouched), untouched);
        }
    }
}
