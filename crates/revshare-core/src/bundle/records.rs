//! Reading `records.jsonl` in parts on scoped threads: each line parsed (the bundle's key-order
//! layout directly), digested once (its canonical form hashed without being written out), its
//! model mapped, selected and summed; its order and batch checked (its digest committed under its
//! salt from `records.salts`, and found in a batch file).

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::agreement::Agreement;
use crate::canonical;
use crate::decimal::Decimal;
use crate::ids::{is_model_id, is_party_id, is_record_id, is_region, is_use_case};
use crate::money::Currency;
use crate::rollup::Rollup;
use crate::settle::{digest_order, select};
use crate::time::{Instant, Period};
use crate::transparency::{RECORD_SALT_BYTES, record_commitment};
use crate::usage::{UsageRecord, parse_json_line};
use crate::usage_set::UsageSet;

use super::batches::BatchDigests;
use super::recompute::{Aliases, ModelAliases};
use super::{MAX_FINDINGS_PER_CATEGORY, SALTS_FILE, problems_text, shorten};

/// How many bytes of records.jsonl one part holds, at least (the last part may be smaller).
pub const PART_BYTES: usize = 4 << 20;
/// The most parts records.jsonl is read in.
pub(super) const MAX_PARTS: usize = 16;

/// Cuts records.jsonl after line ends into about equal parts of at least [`PART_BYTES`].
pub(super) fn split_parts(bytes: &[u8]) -> Vec<&[u8]> {
    let count = (bytes.len() / PART_BYTES).clamp(1, MAX_PARTS);
    let mut parts = Vec::with_capacity(count);
    let mut start = 0;
    for i in 1..count {
        let target = (bytes.len() / count).saturating_mul(i).max(start);
        let cut = bytes.get(target..).and_then(|rest| rest.iter().position(|&b| b == b'\n')).map_or(bytes.len(), |at| target + at + 1);
        parts.push(&bytes[start..cut]);
        start = cut;
    }
    parts.push(&bytes[start..]);
    parts
}

/// What every part of records.jsonl is read against.
pub(super) struct PartContext<'a> {
    pub(super) batches: &'a BatchDigests,
    /// records.salts: [`RECORD_SALT_BYTES`] per line of records.jsonl.
    pub(super) salts: &'a [u8],
    pub(super) aliases: &'a Aliases,
    /// The agreement and period, when both are known: records are then selected and summed.
    pub(super) settling: Option<(&'a Agreement, Period)>,
}

/// A part of records.jsonl, read.
pub(super) struct PartOutcome<'a> {
    /// Lines in the part.
    pub(super) lines: u64,
    /// Whether each line (from line 1) has a problem.
    pub(super) flagged: Vec<bool>,
    /// The first [`MAX_FINDINGS_PER_CATEGORY`] problems by line: line in the part (from 1), expected, found.
    pub(super) findings: Vec<(u64, String, String)>,
    /// Every problem, listed or not.
    pub(super) problems: usize,
    pub(super) rollup: Rollup,
    /// The usage set of the counted records (their canonical forms with the licensed model).
    pub(super) counted: UsageSet,
    /// The first record that parsed: its line and (host, id).
    pub(super) first: Option<(u64, RecordKey<'a>)>,
    /// The last record that parsed: (host, id).
    pub(super) last: Option<RecordKey<'a>>,
}

impl PartOutcome<'_> {
    pub(super) fn problem(&mut self, line: u64, expected: String, found: String) {
        self.problems += 1;
        self.flag(line);
        if self.findings.len() < MAX_FINDINGS_PER_CATEGORY {
            self.findings.push((line, expected, found));
        }
    }

    pub(super) fn flag(&mut self, line: u64) {
        if let Some(flag) = usize::try_from(line).ok().and_then(|l| self.flagged.get_mut(l.wrapping_sub(1))) {
            *flag = true;
        }
    }

    /// Records without a problem.
    pub(super) fn good(&self) -> u64 {
        u64::try_from(self.flagged.iter().filter(|f| !**f).count()).unwrap_or(0)
    }
}

/// A record's (host, id).
pub(super) type RecordKey<'a> = (Cow<'a, str>, Cow<'a, str>);

pub(super) fn order_expected(host: &str, id: &str) -> String {
    format!("a record after ({host}, {id}): records sorted by (host, id), each once")
}

/// How many lines a part of records.jsonl holds, as [`read_part`] reads them: one per newline,
/// and one more for text after the last.
pub(super) fn count_lines(bytes: &[u8]) -> u64 {
    let newlines = memchr::memchr_iter(b'\n', bytes).count();
    let tail = usize::from(!bytes.is_empty() && !bytes.ends_with(b"\n"));
    u64::try_from(newlines + tail).unwrap_or(u64::MAX)
}

/// Reads one part of records.jsonl, whose first line is line `before + 1` of the file: each line
/// is parsed and digested once, its model mapped through the aliases, and the record selected
/// and summed; at the end the part's record commitments are sorted and looked up in the batches.
pub(super) fn read_part<'a>(bytes: &'a [u8], before: u64, cx: &PartContext<'a>) -> PartOutcome<'a> {
    let expected_records = bytes.len() / 200;
    let mut reader = PartReader {
        cx,
        before,
        out: PartOutcome {
            lines: 0,
            flagged: Vec::with_capacity(expected_records),
            findings: Vec::new(),
            problems: 0,
            rollup: Rollup::new(),
            counted: UsageSet::new(),
            first: None,
            last: None,
        },
        sent: Vec::with_capacity(expected_records),
        canonical_form: Vec::with_capacity(512),
        host_aliases: None,
    };
    match std::str::from_utf8(bytes) {
        // The usual case: the whole part is text, read record after record.
        Ok(mut rest) => {
            while !rest.is_empty() {
                let (read, next) = read_record(rest);
                rest = next;
                reader.take(read);
            }
        }
        // Some line is not UTF-8: read line by line, naming it.
        Err(_) => {
            let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            for line in body.split(|&b| b == b'\n') {
                match std::str::from_utf8(line) {
                    Ok(line) => reader.take(read_record(line).0),
                    Err(e) => reader.take(Err(format!("a line that is not UTF-8 (at byte {})", e.valid_up_to() + 1))),
                }
            }
        }
    }
    reader.finish()
}

/// Reads the records of a part, one after another.
pub(super) struct PartReader<'a, 'c> {
    pub(super) cx: &'c PartContext<'a>,
    /// Lines of the file before the part.
    pub(super) before: u64,
    pub(super) out: PartOutcome<'a>,
    /// Every record's commitment (its digest as sent under its salt), with its line: looked up
    /// in the batches at the end.
    pub(super) sent: Vec<([u8; 32], u64)>,
    /// A buffer for canonical forms.
    pub(super) canonical_form: Vec<u8>,
    /// The aliases of the current host (records come sorted by host).
    pub(super) host_aliases: Option<(Cow<'a, str>, Option<&'a ModelAliases>)>,
}

impl<'a> PartReader<'a, '_> {
    /// Takes the next line's record: digests it, checks its order, maps its model, selects and
    /// sums it.
    pub(super) fn take(&mut self, read: Result<Read<'a>, String>) {
        let out = &mut self.out;
        out.lines += 1;
        out.flagged.push(false);
        let line = out.lines;
        let read = match read {
            Ok(read) => read,
            Err(found) => {
                out.problem(line, "a usage record (SPEC §3) in its canonical key order".to_owned(), found);
                return;
            }
        };
        let sent = read.digest(&mut self.canonical_form);
        let mut record = read.record;
        let salt = salt_of(self.cx.salts, self.before + line);
        self.sent.push((record_commitment(&salt, &sent), line));
        if let Some((host, id)) = &out.last
            && (record.host.as_bytes(), record.id.as_bytes()) <= (host.as_bytes(), id.as_bytes())
        {
            let expected = order_expected(host, id);
            out.problem(line, expected, format!("({}, {})", record.host, record.id));
        }
        // Map the reported model to the licensed one.
        let mut mapped = false;
        if !self.cx.aliases.is_empty() {
            if self.host_aliases.as_ref().is_none_or(|(h, _)| *h != record.host) {
                self.host_aliases = Some((record.host.clone(), self.cx.aliases.get(record.host.as_ref())));
            }
            if let Some(licensed) = self.host_aliases.as_ref().and_then(|(_, map)| map.and_then(|m| m.get(record.model.as_ref()))) {
                record.model = Cow::Borrowed(licensed.as_str());
                mapped = true;
            }
        }
        if let Some((agreement, period)) = self.cx.settling {
            match select(agreement, period, &record) {
                None => {
                    let expected = format!(
                        "a record of host {} in {period} while the agreement is in effect (the statement counts only those)",
                        agreement.host()
                    );
                    out.problem(line, expected, format!("host {} at {}", record.host, record.time));
                }
                Some(_) if record.currency != agreement.currency() => {
                    out.problem(line, format!("currency {}", agreement.currency()), record.currency.to_string());
                }
                Some(scope) => {
                    if let Err(e) = out.rollup.add(&record, scope) {
                        out.problem(line, "sums that fit".to_owned(), e.to_string());
                    }
                    // The statement's usage digest is over the records as counted: with the licensed model.
                    out.counted.insert(&if mapped {
                        self.canonical_form.clear();
                        record.write_canonical(&mut self.canonical_form);
                        Sha256::digest(&self.canonical_form).into()
                    } else {
                        sent
                    });
                }
            }
        }
        let key = (record.host, record.id);
        if out.first.is_none() {
            out.first = Some((line, key.clone()));
        }
        out.last = Some(key);
    }

    /// Reports the records in no batch.
    pub(super) fn finish(mut self) -> PartOutcome<'a> {
        let out = &mut self.out;
        self.sent.sort_unstable_by(|a, b| digest_order(&a.0, &b.0));
        let mut missing = self.cx.batches.missing(&self.sent);
        if !missing.is_empty() {
            missing.sort_unstable_by_key(|(_, line)| *line);
            out.problems += missing.len();
            for (i, (commitment, line)) in missing.into_iter().enumerate() {
                out.flag(line);
                if i < MAX_FINDINGS_PER_CATEGORY {
                    let expected = format!(
                        "a record whose commitment under its salt in {SALTS_FILE} ({}) is in a batch's digest file",
                        canonical::hex(&commitment)
                    );
                    out.findings.push((line, expected, "a record in no batch".to_owned()));
                }
            }
            // Problems came in two passes: keep the first ones by line.
            out.findings.sort_by_key(|(line, ..)| *line);
            out.findings.truncate(MAX_FINDINGS_PER_CATEGORY);
        }
        self.out
    }
}

/// The salt of `line` (from 1) in records.salts; zeros where the file has none (its length is a
/// finding of its own, and the record's commitment is then in no batch).
fn salt_of(salts: &[u8], line: u64) -> [u8; RECORD_SALT_BYTES] {
    let at = usize::try_from(line.saturating_sub(1)).ok().and_then(|i| i.checked_mul(RECORD_SALT_BYTES));
    at.and_then(|at| salts.get(at..at.checked_add(RECORD_SALT_BYTES)?))
        .and_then(|salt| <[u8; RECORD_SALT_BYTES]>::try_from(salt).ok())
        .unwrap_or_default()
}

/// How a canonical line starts.
pub(super) const CANONICAL_START: &str = "{\"currency\":\"";

/// A record read from its line.
pub(super) struct Read<'a> {
    pub(super) record: UsageRecord<'a>,
    /// The line, without its newline.
    pub(super) line: &'a str,
    /// Whether the line is exactly the record's canonical form.
    pub(super) canonical: bool,
    /// Where the line is the canonical form but for its counts written as integers (the bundle's
    /// layout): the byte ranges of the three counts, in order, to be quoted.
    pub(super) unquoted: Option<[(usize, usize); 3]>,
}

impl Read<'_> {
    /// SHA-256 of the record's canonical form: the line's own bytes when it is that form, or
    /// with its counts quoted, without writing it out.
    fn digest(&self, buffer: &mut Vec<u8>) -> [u8; 32] {
        if self.canonical {
            return Sha256::digest(self.line.as_bytes()).into();
        }
        let Some(counts) = self.unquoted else {
            buffer.clear();
            self.record.write_canonical(buffer);
            return Sha256::digest(buffer.as_slice()).into();
        };
        let line = self.line.as_bytes();
        let mut hasher = Sha256::new();
        let mut from = 0;
        for (start, end) in counts {
            hasher.update(line.get(from..start).unwrap_or_default());
            hasher.update(b"\"");
            hasher.update(line.get(start..end).unwrap_or_default());
            hasher.update(b"\"");
            from = end;
        }
        hasher.update(line.get(from..).unwrap_or_default());
        hasher.finalize().into()
    }
}

/// Reads the record at the start of `rest` and returns it with what follows its line: a record
/// in key order (the bundle's layout, or the canonical form), or else any SPEC §3 JSON line
/// (which is what [`parse_json_line`] reads). `Err` says what is wrong.
pub(super) fn read_record(rest: &str) -> (Result<Read<'_>, String>, &str) {
    let canonical = match parse_canonical(rest) {
        Ok((read, next)) => return (Ok(read), next),
        Err(problem) => problem,
    };
    let (line, next) = rest.split_once('\n').unwrap_or((rest, ""));
    if line.is_empty() {
        return (Err("an empty line".to_owned()), next);
    }
    let read = parse_json_line(line.as_bytes())
        .map(|record| Read { record, line, canonical: false, unquoted: None })
        .map_err(|problems| shorten(&if line.starts_with(CANONICAL_START) { canonical } else { problems_text(&problems) }, 400));
    (read, next)
}

/// The eight bytes at `at`, little-endian, if there are eight.
pub(super) fn word(bytes: &[u8], at: usize) -> Option<u64> {
    bytes.get(at..at.checked_add(8)?).and_then(|w| <[u8; 8]>::try_from(w).ok()).map(u64::from_le_bytes)
}

/// `text` without `prefix`, compared eight bytes at a time (a `memcmp` call costs more than
/// these few bytes).
pub(super) fn strip_ascii<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let (t, p) = (text.as_bytes(), prefix.as_bytes());
    if t.len() < p.len() {
        return None;
    }
    let mut at = 0;
    while let (Some(a), Some(b)) = (word(t, at), word(p, at)) {
        if a != b {
            return None;
        }
        at += 8;
    }
    let tail = p.get(at..).unwrap_or_default();
    (t.get(at..at + tail.len()) == Some(tail)).then(|| text.get(p.len()..)).flatten()
}

/// The index of the first `"` or newline in `bytes`, eight bytes at a time: a byte is found where
/// `x - 0x01…` borrows into a byte of `x` that was zero, with `x` the word xor the byte sought
/// (the lowest such byte is always exact).
pub(super) fn quote_or_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = 0;
    while let Some(w) = word(bytes, at) {
        let found = zero_byte(w ^ (ONES * u64::from(b'"'))) | zero_byte(w ^ (ONES * u64::from(b'\n')));
        if found != 0 {
            return usize::try_from(found.trailing_zeros() / 8).ok().map(|i| at + i);
        }
        at += 8;
    }
    bytes.get(at..)?.iter().position(|&b| b == b'"' || b == b'\n').map(|i| at + i)
}

/// Takes `<prefix><value>"` off the front of `rest`: one member of a canonical record.
pub(super) fn canonical_member<'a>(rest: &mut &'a str, prefix: &str, field: &str) -> Result<&'a str, String> {
    let after = strip_ascii(rest, prefix).ok_or_else(|| format!("no `{prefix}` where the canonical form has field `{field}`"))?;
    let bytes = after.as_bytes();
    let end = quote_or_newline(bytes).unwrap_or(bytes.len());
    // `end` is at an ASCII quote, so both slices are on character boundaries.
    let (Some(b'"'), Some(value), Some(next)) = (bytes.get(end), after.get(..end), after.get(end + 1..)) else {
        return Err(format!("field `{field}` without its closing quote"));
    };
    *rest = next;
    Ok(value)
}

/// Takes `<prefix><count>` off the front of `rest`: a count written as a JSON integer (a bundle's
/// records, [`UsageRecord::write_json_line`]) or as a string (the canonical form). Returns its
/// digits and whether it was quoted.
pub(super) fn count_member<'a>(rest: &mut &'a str, prefix: &str, field: &str) -> Result<(&'a str, bool), String> {
    let after = strip_ascii(rest, prefix).ok_or_else(|| format!("no `{prefix}` where a record in key order has field `{field}`"))?;
    if after.starts_with('"') {
        *rest = after.get(1..).unwrap_or_default();
        return canonical_member(rest, "", field).map(|digits| (digits, true));
    }
    let end = after.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(after.len());
    let (digits, next) = after.split_at(end);
    *rest = next;
    Ok((digits, false))
}

/// A count of a record in key order: a decimal integer below 2^63 without leading zeros.
pub(super) fn canonical_count(text: &str, field: &str) -> Result<u64, String> {
    let b = text.as_bytes();
    let mut n: Option<u64> = (!b.is_empty() && (b.len() == 1 || b[0] != b'0')).then_some(0);
    for &c in b {
        n = n.filter(|_| c.is_ascii_digit()).and_then(|n| n.checked_mul(10)).and_then(|n| n.checked_add(u64::from(c - b'0')));
    }
    n.filter(|&n| n < 1 << 63).ok_or_else(|| format!("field `{field}` is {}; it must be an integer from 0 to 2^63 - 1", shorten(text, 40)))
}

/// Whether decimal text is [`Decimal::write_to`]'s: no leading zeros, no trailing fractional
/// zeros, no point without a fraction.
pub(super) fn canonical_decimal(text: &str) -> bool {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && (whole == "0" || !whole.starts_with('0')) && fraction.is_none_or(|f| digits(f) && !f.ends_with('0'))
}

/// Whether a time that parsed is [`Instant::write_rfc3339`]'s text: here only the common
/// `YYYY-MM-DDTHH:MM:SSZ` is recognised; any other form is written out to be sure.
pub(super) fn canonical_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20 && b[10] == b'T' && b[19] == b'Z'
}

/// Reads exactly the layout [`UsageRecord::write_json_line`] writes (or, with its counts quoted,
/// [`UsageRecord::write_canonical`]), then a newline or the end, at the start of `text`, checking
/// each value as SPEC §3 does; returns the record and what follows its line. Faster than the
/// general reader, which takes any member order.
pub(super) fn parse_canonical(text: &str) -> Result<(Read<'_>, &str), String> {
    let mut rest = text;
    let currency = canonical_member(&mut rest, "{\"currency\":\"", "currency")?;
    let host = canonical_member(&mut rest, ",\"host\":\"", "host")?;
    let id = canonical_member(&mut rest, ",\"id\":\"", "id")?;
    // Where the member just read ends, in `text`.
    let end = |rest: &str| text.len() - rest.len();
    let (input_tokens, quoted_input) = count_member(&mut rest, ",\"input_tokens\":", "input_tokens")?;
    let input_end = end(rest);
    let model = canonical_member(&mut rest, ",\"model\":\"", "model")?;
    let (output_tokens, quoted_output) = count_member(&mut rest, ",\"output_tokens\":", "output_tokens")?;
    let output_end = end(rest);
    let region = canonical_member(&mut rest, ",\"region\":\"", "region")?;
    let (requests, quoted_requests) = count_member(&mut rest, ",\"requests\":", "requests")?;
    let requests_end = end(rest);
    let revenue = canonical_member(&mut rest, ",\"revenue\":\"", "revenue")?;
    let time = canonical_member(&mut rest, ",\"time\":\"", "time")?;
    let use_case = canonical_member(&mut rest, ",\"use_case\":\"", "use_case")?;
    let next = match strip_ascii(rest, "}") {
        Some("") => "",
        Some(after) if after.starts_with('\n') => after.get(1..).unwrap_or(""),
        _ => return Err(format!("{} after field `use_case`, where the canonical form ends with `}}`", shorten(rest, 40))),
    };
    let taken = text.get(..text.len() - next.len()).unwrap_or(text);
    let line = taken.strip_suffix('\n').unwrap_or(taken);
    let bad = |field: &str, value: &str, rule: &str| format!("field `{field}` is \"{}\"; it must be {rule}", shorten(value, 40));
    let checks = [
        (is_party_id(host), "host", host, "a party id like \"northwind\""),
        (is_record_id(id), "id", id, "a record id of 1-128 of A-Z a-z 0-9 . _ : -"),
        (is_model_id(model), "model", model, "a model id like \"m-70b\""),
        (is_region(region), "region", region, "a region like \"eu\""),
        (is_use_case(use_case), "use_case", use_case, "a use case like \"customer_service\""),
    ];
    if let Some((_, field, value, rule)) = checks.iter().find(|(ok, ..)| !ok) {
        return Err(bad(field, value, rule));
    }
    let record = UsageRecord {
        id: Cow::Borrowed(id),
        host: Cow::Borrowed(host),
        model: Cow::Borrowed(model),
        use_case: Cow::Borrowed(use_case),
        region: Cow::Borrowed(region),
        time: Instant::parse_rfc3339(time).map_err(|e| format!("field `time`: {e}"))?,
        requests: canonical_count(requests, "requests")?,
        input_tokens: canonical_count(input_tokens, "input_tokens")?,
        output_tokens: canonical_count(output_tokens, "output_tokens")?,
        revenue: Decimal::parse(revenue).map_err(|e| format!("field `revenue`: {e}"))?,
        currency: Currency::parse(currency).map_err(|e| format!("field `currency`: {e}"))?,
    };
    // The currency, ids and counts are canonical once read (quoted, or to be quoted); the revenue
    // and time may not be.
    let rest_canonical = canonical_decimal(revenue) && canonical_time(time);
    let unquoted = (rest_canonical && !quoted_input && !quoted_output && !quoted_requests).then(|| {
        let span = |digits: &str, end: usize| (end - digits.len(), end);
        [span(input_tokens, input_end), span(output_tokens, output_end), span(requests, requests_end)]
    });
    let canonical = rest_canonical && quoted_input && quoted_output && quoted_requests;
    Ok((Read { record, line, canonical, unquoted }, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::batches::{merge_runs, sort_digests};

    #[test]
    pub(super) fn finds_quotes_and_newlines_like_a_byte_loop() {
        let texts = [
            "",
            "\"",
            "abc",
            "abcdefgh\"",
            "abcdefghijklmnop",
            "ab\ncd\"",
            "0123456789abcdef\"x",
            "é\"",
            "\u{80}\u{80}\u{80}\u{80}\"",
            "x\u{22}",
        ];
        for text in texts {
            let bytes = text.as_bytes();
            for start in 0..bytes.len() {
                let slice = &bytes[start..];
                assert_eq!(quote_or_newline(slice), slice.iter().position(|&b| b == b'"' || b == b'\n'), "{text:?} from {start}");
            }
        }
    }

    #[test]
    pub(super) fn strips_prefixes_exactly() {
        assert_eq!(strip_ascii(",\"output_tokens\":\"12\"", ",\"output_tokens\":\""), Some("12\""));
        assert_eq!(strip_ascii(",\"output_tokenz\":\"12\"", ",\"output_tokens\":\""), None);
        assert_eq!(strip_ascii(",\"out", ",\"output_tokens\":\""), None);
        assert_eq!(strip_ascii("}", "}"), Some(""));
        assert_eq!(strip_ascii("{\"currency\":\"USD\"", "{\"currency\":\""), Some("USD\""));
    }

    /// Canonical-layout lines, some with values not in canonical form: the fast check may say
    /// "canonical" only when the line is the record's canonical form (it leaves rarer canonical
    /// forms, like times with fractions, to the writer).
    #[test]
    pub(super) fn the_canonical_reader_agrees_with_the_canonical_writer() {
        let layout = |revenue: &str, time: &str, requests: &str| {
            format!(
                r#"{{"currency":"USD","host":"northwind","id":"r-1","input_tokens":"10","model":"m-70b","output_tokens":"0","region":"eu","requests":"{requests}","revenue":"{revenue}","time":"{time}","use_case":"search"}}"#
            )
        };
        let cases = [
            ("1.5", "2026-10-02T10:00:00Z", "7", true),
            ("0", "2026-10-02T10:00:00Z", "0", true),
            ("0.05", "2026-10-02T10:00:00Z", "7", true),
            ("120", "2026-10-02T10:00:00Z", "7", true),
            ("1.50", "2026-10-02T10:00:00Z", "7", false),
            ("01.5", "2026-10-02T10:00:00Z", "7", false),
            ("0.0", "2026-10-02T10:00:00Z", "7", false),
            ("1.5", "2026-10-02T10:00:00.250Z", "7", false), // canonical, but not recognised as such
            ("1.5", "2026-10-02T10:00:00.000Z", "7", false),
            ("1.5", "2026-10-02T12:00:00+02:00", "7", false),
        ];
        for (revenue, time, requests, canonical) in cases {
            let line = layout(revenue, time, requests);
            let read = parse_canonical(&line).map(|(read, _)| read);
            assert!(read.is_ok(), "{line}: {:?}", read.err());
            if let Ok(read) = read {
                let mut written = Vec::new();
                read.record.write_canonical(&mut written);
                assert_eq!(read.canonical, canonical, "{line}");
                assert!(!read.canonical || written == line.as_bytes(), "{line}");
            }
        }
        // Counts are strings without leading zeros, below 2^63.
        for requests in ["07", "", "-1", "9223372036854775808", "1.0"] {
            assert!(parse_canonical(&layout("1", "2026-10-02T10:00:00Z", requests)).is_err(), "{requests}");
        }
        assert!(parse_canonical(&layout("1", "2026-10-02T10:00:00Z", "9223372036854775807")).is_ok());
    }

    /// A bundle's records are JSON lines in key order, counts as integers: the fast reader takes
    /// them (not as canonical bytes), and they are what `write_json_line` writes and what the
    /// general reader (`settle`'s) reads as the same record.
    #[test]
    pub(super) fn the_fast_reader_takes_the_bundle_layout() {
        let line = r#"{"currency":"USD","host":"northwind","id":"r-1","input_tokens":10,"model":"m-70b","output_tokens":0,"region":"eu","requests":9223372036854775807,"revenue":"1.5","time":"2026-10-02T10:00:00Z","use_case":"search"}"#;
        let read = parse_canonical(line).map(|(read, _)| read);
        assert!(read.as_ref().is_ok_and(|r| !r.canonical), "{:?}", read.as_ref().err());
        if let Ok(read) = read {
            let mut written = Vec::new();
            read.record.write_json_line(&mut written);
            assert_eq!(written, line.as_bytes());
            assert_eq!(parse_json_line(line.as_bytes()).ok().map(|r| r.digest()), Some(read.record.digest()));
            assert!(read.unquoted.is_some(), "the counts are quoted in place");
            assert_eq!(read.digest(&mut Vec::new()), read.record.digest());
        }
        for bad in [r#""requests":07,"#, r#""requests":,"#, r#""requests":-1,"#, r#""requests":9223372036854775808,"#, r#""requests":1.0,"#]
        {
            let line = line.replace(r#""requests":9223372036854775807,"#, bad);
            assert!(parse_canonical(&line).is_err(), "{line}");
        }
    }

    #[test]
    pub(super) fn reads_canonical_and_json_lines_and_names_what_is_wrong() {
        let canonical = r#"{"currency":"USD","host":"northwind","id":"r-1","input_tokens":"10","model":"m-70b","output_tokens":"0","region":"eu","requests":"7","revenue":"1.5","time":"2026-10-02T10:00:00Z","use_case":"search"}"#;
        let json = r#"{"id":"r-2","host":"northwind","model":"m-70b","use_case":"search","region":"eu","time":"2026-10-02T10:00:00Z","requests":7,"input_tokens":10,"output_tokens":0,"revenue":"1.5","currency":"USD"}"#;
        let text = format!("{canonical}\n{json}\n\n{}\n", canonical.replace("northwind", "North wind"));
        let mut rest = text.as_str();
        let mut results = Vec::new();
        while !rest.is_empty() {
            let (read, next) = read_record(rest);
            results.push(read.map(|r| (r.record.id.into_owned(), r.canonical)));
            rest = next;
        }
        assert_eq!(results.len(), 4);
        assert_eq!(results[0], Ok(("r-1".to_owned(), true)));
        assert_eq!(results[1], Ok(("r-2".to_owned(), false)));
        assert_eq!(results[2], Err("an empty line".to_owned()));
        assert!(results[3].as_ref().is_err_and(|e| e.contains("field `host`")), "{:?}", results[3]);
    }

    pub(super) fn digest(i: u32) -> [u8; 32] {
        Sha256::digest(i.to_le_bytes()).into()
    }

    #[test]
    pub(super) fn merges_sorted_runs_on_threads_into_one_sorted_list() {
        // Enough digests for the threaded merge; runs of different sizes, one empty, repeats.
        let mut runs: Vec<Vec<[u8; 32]>> =
            vec![(0..40_000).map(digest).collect(), (30_000..70_000).map(digest).collect(), Vec::new(), (5..9).map(digest).collect()];
        for run in &mut runs {
            sort_digests(run);
        }
        let merged = merge_runs(&runs.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let mut expected = runs.concat();
        expected.sort_unstable();
        assert_eq!(merged, expected);
    }

    #[test]
    pub(super) fn finds_the_digests_in_no_batch() {
        let mut batch: Vec<[u8; 32]> = (0..1000).map(digest).collect();
        sort_digests(&mut batch);
        let batches = BatchDigests { sorted: batch };
        let mut wanted: Vec<([u8; 32], u64)> =
            (990..1010).map(|i| (digest(i), u64::from(i))).chain([(digest(3), 3), (digest(3), 4)]).collect();
        wanted.sort_unstable_by(|a, b| digest_order(&a.0, &b.0));
        let mut missing: Vec<u64> = batches.missing(&wanted).into_iter().map(|(_, line)| line).collect();
        missing.sort_unstable();
        assert_eq!(missing, (1000..1010).collect::<Vec<_>>());
        assert_eq!(BatchDigests { sorted: Vec::new() }.missing(&wanted).len(), wanted.len());
    }

    #[test]
    pub(super) fn cuts_records_at_line_ends() {
        let line = "x".repeat(99) + "\n";
        let text = line.repeat(100_000);
        let parts = split_parts(text.as_bytes());
        assert_eq!(parts.len(), text.len() / PART_BYTES);
        assert!(parts.iter().all(|p| p.ends_with(b"\n") && p.len() % 100 == 0));
        assert_eq!(parts.concat(), text.as_bytes());
        assert_eq!(split_parts(b"").len(), 1);
        assert_eq!(split_parts(b"no newline").concat(), b"no newline");
    }
}
