//! Usage records (SPEC §3): what a host reports, in JSON Lines or CloudEvents batches.
//!
//! A record is validated field by field against the SPEC table; any field not in it is refused
//! by name, because usage records carry counts and money only (privacy). Numbers are read from
//! their literal text: revenue through [`Decimal::parse_json_number`], counts as integers below
//! 2^63. Every problem of a record is reported, each with its byte offset in the input and the
//! field it concerns.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::canonical::push_uint;
use crate::decimal::Decimal;
use crate::ids::{is_model_id, is_party_id, is_record_id, is_region, is_use_case};
use crate::json::{self, JsonValue, Member};
use crate::money::Currency;
use crate::time::Instant;

/// The CloudEvents `type` of a usage record.
pub const CLOUDEVENTS_TYPE: &str = "revshare.usage.v1";

/// A valid usage record; text fields borrow from the input where they can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRecord<'a> {
    pub id: Cow<'a, str>,
    pub host: Cow<'a, str>,
    pub model: Cow<'a, str>,
    pub use_case: Cow<'a, str>,
    pub region: Cow<'a, str>,
    pub time: Instant,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub revenue: Decimal,
    pub currency: Currency,
}

/// One problem of one record: where (byte offset in the line or event), which field, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordProblem {
    pub offset: usize,
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The SPEC §3 fields, in canonical (sorted) order, and what each must be.
const FIELDS: [(&str, &str); 11] = [
    ("currency", "an ISO 4217 code like \"USD\""),
    ("host", "a party id like \"northwind\""),
    ("id", "a record id of 1-128 of A-Z a-z 0-9 . _ : -"),
    ("input_tokens", "an integer from 0 to 2^63 - 1"),
    ("model", "a model id like \"m-70b\""),
    ("output_tokens", "an integer from 0 to 2^63 - 1"),
    ("region", "a region like \"eu\""),
    ("requests", "an integer from 0 to 2^63 - 1"),
    ("revenue", "a decimal string like \"12.50\""),
    ("time", "an RFC 3339 time like \"2026-10-02T10:00:00Z\""),
    ("use_case", "a use case like \"customer_service\""),
];

impl UsageRecord<'_> {
    pub fn into_owned(self) -> UsageRecord<'static> {
        UsageRecord {
            id: Cow::Owned(self.id.into_owned()),
            host: Cow::Owned(self.host.into_owned()),
            model: Cow::Owned(self.model.into_owned()),
            use_case: Cow::Owned(self.use_case.into_owned()),
            region: Cow::Owned(self.region.into_owned()),
            ..self
        }
    }

    /// Tokens in and out.
    pub fn tokens(&self) -> u128 {
        u128::from(self.input_tokens) + u128::from(self.output_tokens)
    }

    /// The RFC 8785 canonical JSON of the record: every value a string (counts may exceed 2^53),
    /// the time in UTC, the revenue normalised (`1.50` is written `1.5`). Two records are the same
    /// record exactly when these bytes are equal.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        self.write_sorted::<true>(out);
    }

    /// The record as a SPEC §3 JSON line (what `settle` and `ingest` read), laid out as its
    /// canonical form is except that the counts are JSON integers: a bundle's `records.jsonl`.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        self.write_sorted::<false>(out);
    }

    /// The members in key order, the counts quoted when `QUOTED` (a constant, so the canonical
    /// form, written once per selected record, pays no branch for the other layout).
    fn write_sorted<const QUOTED: bool>(&self, out: &mut Vec<u8>) {
        // Every text field passed a charset check that excludes `"` and `\\`, so no escaping is
        // needed and this is byte-for-byte what a general RFC 8785 writer produces (tested). It is
        // written by hand because it runs once per selected record.
        let text = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(value);
            out.push(b'"');
        };
        let count = |out: &mut Vec<u8>, key: &str, value: u64| {
            out.extend_from_slice(key.as_bytes());
            if QUOTED {
                out.push(b'"');
            }
            push_uint(out, u128::from(value));
            if QUOTED {
                out.push(b'"');
            }
        };
        text(out, "{\"currency\":\"", self.currency.code().as_bytes());
        text(out, ",\"host\":\"", self.host.as_bytes());
        text(out, ",\"id\":\"", self.id.as_bytes());
        count(out, ",\"input_tokens\":", self.input_tokens);
        text(out, ",\"model\":\"", self.model.as_bytes());
        count(out, ",\"output_tokens\":", self.output_tokens);
        text(out, ",\"region\":\"", self.region.as_bytes());
        count(out, ",\"requests\":", self.requests);
        out.extend_from_slice(b",\"revenue\":\"");
        self.revenue.write_to(out);
        out.extend_from_slice(b"\",\"time\":\"");
        self.time.write_rfc3339(out);
        text(out, "\",\"use_case\":\"", self.use_case.as_bytes());
        out.push(b'}');
    }

    /// SHA-256 of the canonical JSON.
    pub fn digest(&self) -> [u8; 32] {
        let mut buf = Vec::with_capacity(320);
        self.write_canonical(&mut buf);
        Sha256::digest(&buf).into()
    }
}

/// Parses one JSON Lines record.
///
/// Well-formed records — every field once, no escapes — take a fast path that reads the fields
/// straight into the record; anything else (including every invalid record) goes through the
/// general reader, which produces the located problems. Both accept exactly the same records
/// with the same values (a property test and a fuzz target hold them to it).
pub fn parse_json_line(line: &[u8]) -> Result<UsageRecord<'_>, Vec<RecordProblem>> {
    match fast_json_line(line) {
        Some(record) => Ok(record),
        None => parse_json_line_generic(line),
    }
}

/// [`parse_json_line`] without the fast path: for tests and fuzzing, which hold the two to agree.
pub fn parse_json_line_generic(line: &[u8]) -> Result<UsageRecord<'_>, Vec<RecordProblem>> {
    let mut builder = Builder::default();
    json::visit_object(line, |member| builder.field(member, None)).map_err(|e| vec![syntax_problem(e)])?;
    builder.finish(0)
}

/// The fast path of [`parse_json_line`]: `None` whenever anything is unusual.
fn fast_json_line(line: &[u8]) -> Option<UsageRecord<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    let b = text.as_bytes();
    let mut at = 0;
    let skip_ws = |at: &mut usize| {
        while matches!(b.get(*at), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            *at += 1;
        }
    };
    // A string without escapes or control characters, starting at `at` (the opening quote).
    let string = |at: &mut usize| -> Option<&str> {
        if b.get(*at) != Some(&b'"') {
            return None;
        }
        let start = *at + 1;
        let len = b[start..].iter().position(|c| *c == b'"' || *c == b'\\' || *c < 0x20)?;
        if b[start + len] != b'"' {
            return None;
        }
        *at = start + len + 1;
        Some(&text[start..start + len])
    };
    // A string of one id class, read and checked in one pass (the same rules as `ids::is_*`:
    // the class, the length, and for some the first character).
    let id = |at: &mut usize, class: u8, max: usize, first: fn(u8) -> bool| -> Option<&str> {
        if b.get(*at) != Some(&b'"') {
            return None;
        }
        let start = *at + 1;
        let mut end = start;
        while let Some(&c) = b.get(end) {
            if CLASS[usize::from(c)] & class == 0 {
                break;
            }
            end += 1;
        }
        let len = end - start;
        if b.get(end) != Some(&b'"') || len == 0 || len > max || !first(b[start]) {
            return None;
        }
        *at = end + 1;
        Some(&text[start..end])
    };
    let any = |_: u8| true;
    let lower_or_digit = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let number = |at: &mut usize| -> &str {
        let start = *at;
        while matches!(b.get(*at), Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')) {
            *at += 1;
        }
        &text[start..*at]
    };
    // A JSON integer below 2^63 (no sign, fraction, exponent or leading zero).
    let count = |at: &mut usize| -> Option<u64> {
        let start = *at;
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = b.get(*at) {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            *at += 1;
        }
        let len = *at - start;
        let well_formed = len > 0 && (len == 1 || b[start] != b'0') && !matches!(b.get(*at), Some(b'.' | b'e' | b'E'));
        (well_formed && n < 1 << 63).then_some(n)
    };
    skip_ws(&mut at);
    if b.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let mut seen = 0u16;
    let mut fields_read = 0usize;
    let (mut record_id, mut host, mut model, mut use_case, mut region) = (None, None, None, None, None);
    let (mut time, mut requests, mut input_tokens, mut output_tokens, mut revenue, mut currency) = (None, None, None, None, None, None);
    loop {
        skip_ws(&mut at);
        // Writers emit fields in one order, nearly always the SPEC's: try the key that order
        // expects next with one comparison before reading the key in general.
        let expected = COMMON_ORDER.get(fields_read);
        fields_read += 1;
        let index = match expected {
            Some(key) if key.is_at(b, at) => {
                at += key.quoted.len();
                key.index
            }
            _ => field_index(string(&mut at)?)?,
        };
        if seen & (1 << index) != 0 {
            return None;
        }
        seen |= 1 << index;
        skip_ws(&mut at);
        if b.get(at) != Some(&b':') {
            return None;
        }
        at += 1;
        skip_ws(&mut at);
        // Indexes into FIELDS: currency, host, id, input_tokens, model, output_tokens, region,
        // requests, revenue, time, use_case.
        match index {
            0 => currency = Some(Currency::parse(string(&mut at)?).ok()?),
            1 => host = Some(id(&mut at, PARTY_ID, 63, lower_or_digit)?),
            2 => record_id = Some(id(&mut at, RECORD_ID, 128, any)?),
            3 => input_tokens = Some(count(&mut at)?),
            4 => model = Some(id(&mut at, MODEL_ID, 63, lower_or_digit)?),
            5 => output_tokens = Some(count(&mut at)?),
            6 => region = Some(id(&mut at, REGION, 32, any)?),
            7 => requests = Some(count(&mut at)?),
            8 if b.get(at) == Some(&b'"') => revenue = Some(Decimal::parse(string(&mut at)?).ok()?),
            8 => revenue = Some(Decimal::parse_json_number(number(&mut at)).ok()?),
            // The common `"YYYY-MM-DDTHH:MM:SSZ"` needs no scan for its closing quote.
            9 if b.get(at) == Some(&b'"') && b.get(at + 21) == Some(&b'"') => {
                time = Some(Instant::parse_rfc3339(text.get(at + 1..at + 21)?).ok()?);
                at += 22;
            }
            9 => time = Some(Instant::parse_rfc3339(string(&mut at)?).ok()?),
            _ => use_case = Some(id(&mut at, USE_CASE, 64, |c: u8| c.is_ascii_lowercase())?),
        }
        skip_ws(&mut at);
        match b.get(at) {
            Some(b',') => at += 1,
            Some(b'}') => break,
            _ => return None,
        }
    }
    at += 1;
    skip_ws(&mut at);
    if at != b.len() {
        return None;
    }
    Some(UsageRecord {
        id: Cow::Borrowed(record_id?),
        host: Cow::Borrowed(host?),
        model: Cow::Borrowed(model?),
        use_case: Cow::Borrowed(use_case?),
        region: Cow::Borrowed(region?),
        time: time?,
        requests: requests?,
        input_tokens: input_tokens?,
        output_tokens: output_tokens?,
        revenue: revenue?,
        currency: currency?,
    })
}

/// Parses one event of a CloudEvents batch (its bytes, from `{` to `}`).
pub fn parse_cloudevent(event: &[u8]) -> Result<UsageRecord<'_>, Vec<RecordProblem>> {
    let members = json::parse_object(event).map_err(|e| vec![syntax_problem(e)])?;
    let mut builder = Builder::default();
    let mut seen_envelope: Vec<&'static str> = Vec::new();
    for member in members {
        let offset = member.key_offset;
        let key = member.key.as_ref();
        let name = ["specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "subject", "data"]
            .into_iter()
            .find(|k| *k == key);
        let Some(name) = name else {
            let message = if FIELDS.iter().any(|(field, _)| *field == key) {
                format!("`{key}` belongs in `data`: of the record's fields only `id` and `time` are CloudEvents attributes")
            } else {
                format!(
                    "unknown CloudEvents attribute `{key}`: extension attributes are refused, as usage events carry counts and money only; \
                     the attributes are specversion, id, source, type, time, datacontenttype, dataschema, subject and data"
                )
            };
            builder.problem(offset, Some(key), message);
            continue;
        };
        if seen_envelope.contains(&name) {
            builder.problem(offset, Some(name), format!("attribute `{name}` appears twice"));
            continue;
        }
        seen_envelope.push(name);
        let expect_string = |value: &JsonValue<'_>| matches!(value, JsonValue::String(_));
        match name {
            "id" | "time" => builder.field(member, None),
            "specversion" => {
                if member.value != JsonValue::String(Cow::Borrowed("1.0")) {
                    builder.problem(member.value_offset, Some(name), "`specversion` must be \"1.0\"".to_owned());
                }
            }
            "type" => {
                if member.value != JsonValue::String(Cow::Borrowed(CLOUDEVENTS_TYPE)) {
                    builder.problem(member.value_offset, Some(name), format!("`type` must be \"{CLOUDEVENTS_TYPE}\""));
                }
            }
            "datacontenttype" => {
                if member.value != JsonValue::String(Cow::Borrowed("application/json")) {
                    builder.problem(
                        member.value_offset,
                        Some(name),
                        "`datacontenttype` must be \"application/json\" when present".to_owned(),
                    );
                }
            }
            "data" => match member.value {
                JsonValue::Object(fields) => {
                    for field in fields {
                        if matches!(field.key.as_ref(), "id" | "time") {
                            let key = field.key.to_string();
                            builder.problem(
                                field.key_offset,
                                Some(&format!("data.{key}")),
                                format!("`data.{key}` is not allowed: the record's `{key}` is the event's own `{key}` attribute; leave it out of `data`"),
                            );
                        } else {
                            builder.field(field, Some("data."));
                        }
                    }
                }
                other => builder.problem(member.value_offset, Some(name), format!("`data` must be an object, not {}", other.kind())),
            },
            _ => {
                if !expect_string(&member.value) {
                    builder.problem(member.value_offset, Some(name), format!("`{name}` must be a string"));
                }
            }
        }
    }
    let required = [
        ("specversion", "\"1.0\""),
        ("source", "a string naming where the event comes from, like \"//northwind/billing\""),
        ("type", "\"revshare.usage.v1\""),
        ("data", "an object holding the record's fields other than id and time"),
    ];
    for (attribute, want) in required {
        if !seen_envelope.contains(&attribute) {
            builder.problem(0, Some(attribute), format!("missing CloudEvents attribute `{attribute}`: it must be {want}"));
        }
    }
    builder.finish(0)
}

fn syntax_problem(e: json::JsonError) -> RecordProblem {
    RecordProblem { offset: e.offset, field: None, message: format!("not valid JSON: {}", e.message) }
}

/// A value quoted for a message: escaped, and cut after 40 characters so that a huge bad value
/// does not make a huge message.
fn quoted(text: &str) -> String {
    let count = text.chars().count();
    if count <= 40 {
        return format!("\"{}\"", text.escape_debug());
    }
    let head: String = text.chars().take(40).collect();
    format!("\"{}…\" ({count} characters)", head.escape_debug())
}

/// The order of the SPEC's table, which generators and the examples follow.
const COMMON_ORDER: [ExpectedKey; 11] = [
    ExpectedKey::new(2, b"\"id\""),
    ExpectedKey::new(1, b"\"host\""),
    ExpectedKey::new(4, b"\"model\""),
    ExpectedKey::new(10, b"\"use_case\""),
    ExpectedKey::new(6, b"\"region\""),
    ExpectedKey::new(9, b"\"time\""),
    ExpectedKey::new(7, b"\"requests\""),
    ExpectedKey::new(3, b"\"input_tokens\""),
    ExpectedKey::new(5, b"\"output_tokens\""),
    ExpectedKey::new(8, b"\"revenue\""),
    ExpectedKey::new(0, b"\"currency\""),
];

/// A quoted key the fast path expects next, compared as one 16-byte word: every quoted field
/// name is at most 16 bytes, and a word compare costs less than a `memcmp` call or a byte loop.
struct ExpectedKey {
    /// index into [`FIELDS`]
    index: usize,
    quoted: &'static [u8],
    /// the quoted key's bytes, little-endian, and the mask of the bytes it covers
    word: u128,
    mask: u128,
}

impl ExpectedKey {
    #[allow(clippy::as_conversions)] // widening a byte in const context, where `From` is not available
    const fn new(index: usize, quoted: &'static [u8]) -> ExpectedKey {
        assert!(quoted.len() <= 16);
        let (mut word, mut mask, mut i) = (0u128, 0u128, 0);
        while i < quoted.len() {
            word |= (quoted[i] as u128) << (8 * i);
            mask |= 0xff << (8 * i);
            i += 1;
        }
        ExpectedKey { index, quoted, word, mask }
    }

    /// Whether `b` holds this key at `at`.
    fn is_at(&self, b: &[u8], at: usize) -> bool {
        match b.get(at..at + 16).and_then(|w| <[u8; 16]>::try_from(w).ok()) {
            Some(window) => (u128::from_le_bytes(window) ^ self.word) & self.mask == 0,
            None => b.get(at..at + self.quoted.len()) == Some(self.quoted),
        }
    }
}

/// Byte classes of the id charsets, as bit flags, for the fast path's one-pass scans.
#[allow(clippy::as_conversions)] // `as u8` of a loop index below 256, in const context
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8; // const context: the index is below 256
        let lower_digit = b.is_ascii_lowercase() || b.is_ascii_digit();
        let mut f = 0;
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b':' || b == b'-' {
            f |= RECORD_ID;
        }
        if lower_digit || b == b'_' || b == b'-' {
            f |= PARTY_ID;
        }
        if lower_digit || b == b'_' || b == b'-' || b == b'.' {
            f |= MODEL_ID;
        }
        if lower_digit || b == b'_' {
            f |= USE_CASE;
        }
        if lower_digit || b == b'-' {
            f |= REGION;
        }
        t[c] = f;
        c += 1;
    }
    t
};
const RECORD_ID: u8 = 1;
const PARTY_ID: u8 = 2;
const MODEL_ID: u8 = 4;
const USE_CASE: u8 = 8;
const REGION: u8 = 16;

/// The position of a field name in [`FIELDS`].
fn field_index(key: &str) -> Option<usize> {
    Some(match key {
        "currency" => 0,
        "host" => 1,
        "id" => 2,
        "input_tokens" => 3,
        "model" => 4,
        "output_tokens" => 5,
        "region" => 6,
        "requests" => 7,
        "revenue" => 8,
        "time" => 9,
        "use_case" => 10,
        _ => return None,
    })
}

#[derive(Default)]
struct Builder<'a> {
    problems: Vec<RecordProblem>,
    id: Option<Cow<'a, str>>,
    host: Option<Cow<'a, str>>,
    model: Option<Cow<'a, str>>,
    use_case: Option<Cow<'a, str>>,
    region: Option<Cow<'a, str>>,
    time: Option<Instant>,
    requests: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    revenue: Option<Decimal>,
    currency: Option<Currency>,
    seen: u16,
}

impl<'a> Builder<'a> {
    fn problem(&mut self, offset: usize, field: Option<&str>, message: String) {
        self.problems.push(RecordProblem { offset, field: field.map(str::to_owned), message });
    }

    fn field(&mut self, member: Member<'a>, prefix: Option<&str>) {
        let Member { key, key_offset, value, value_offset } = member;
        let Some(index) = field_index(&key) else {
            let shown = format!("{}{key}", prefix.unwrap_or(""));
            self.problem(
                key_offset,
                Some(&shown),
                format!("unknown field `{shown}`: usage records carry counts and money only, never content or user identifiers; the fields are {}", FIELDS.map(|f| f.0).join(", ")),
            );
            return;
        };
        let (name, want) = FIELDS[index];
        if self.seen & (1 << index) != 0 {
            self.problem(key_offset, Some(name), format!("field `{name}` appears twice"));
            return;
        }
        self.seen |= 1 << index;
        let bad =
            |this: &mut Self, what: String| this.problem(value_offset, Some(name), format!("field `{name}` {what}; it must be {want}"));
        match name {
            "requests" | "input_tokens" | "output_tokens" => {
                let JsonValue::Number(text) = value else {
                    return bad(self, format!("is {}", value.kind()));
                };
                let parsed =
                    if text.bytes().all(|b| b.is_ascii_digit()) { text.parse::<u64>().ok().filter(|n| *n < (1 << 63)) } else { None };
                match parsed {
                    Some(n) => *self.count_slot(name) = Some(n),
                    None => bad(self, format!("is {text}")),
                }
            }
            "revenue" => {
                let parsed = match &value {
                    JsonValue::String(s) => Decimal::parse(s),
                    JsonValue::Number(n) => Decimal::parse_json_number(n),
                    other => return bad(self, format!("is {}", other.kind())),
                };
                match parsed {
                    Ok(d) => self.revenue = Some(d),
                    Err(e) => self.problem(value_offset, Some(name), format!("field `revenue`: {e}")),
                }
            }
            _ => {
                let JsonValue::String(text) = value else {
                    return bad(self, format!("is {}", value.kind()));
                };
                let ok = match name {
                    "id" => is_record_id(&text),
                    "host" => is_party_id(&text),
                    "model" => is_model_id(&text),
                    "use_case" => is_use_case(&text),
                    "region" => is_region(&text),
                    "time" => match Instant::parse_rfc3339(&text) {
                        Ok(t) => {
                            self.time = Some(t);
                            return;
                        }
                        Err(e) => {
                            return self.problem(value_offset, Some(name), format!("field `time`: {e}"));
                        }
                    },
                    "currency" => match Currency::parse(&text) {
                        Ok(c) => {
                            self.currency = Some(c);
                            return;
                        }
                        Err(e) => {
                            return self.problem(value_offset, Some(name), format!("field `currency`: {e}"));
                        }
                    },
                    _ => false,
                };
                if !ok {
                    return bad(self, format!("is {}", quoted(&text)));
                }
                *self.text_slot(name) = Some(text);
            }
        }
    }

    fn count_slot(&mut self, name: &str) -> &mut Option<u64> {
        match name {
            "requests" => &mut self.requests,
            "input_tokens" => &mut self.input_tokens,
            _ => &mut self.output_tokens,
        }
    }

    fn text_slot(&mut self, name: &str) -> &mut Option<Cow<'a, str>> {
        match name {
            "id" => &mut self.id,
            "host" => &mut self.host,
            "model" => &mut self.model,
            "use_case" => &mut self.use_case,
            _ => &mut self.region,
        }
    }

    fn finish(mut self, offset: usize) -> Result<UsageRecord<'a>, Vec<RecordProblem>> {
        for (index, (name, want)) in FIELDS.iter().enumerate() {
            if self.seen & (1 << index) == 0 {
                self.problem(offset, Some(name), format!("missing field `{name}`: it must be {want}"));
            }
        }
        match self {
            Builder {
                id: Some(id),
                host: Some(host),
                model: Some(model),
                use_case: Some(use_case),
                region: Some(region),
                time: Some(time),
                requests: Some(requests),
                input_tokens: Some(input_tokens),
                output_tokens: Some(output_tokens),
                revenue: Some(revenue),
                currency: Some(currency),
                ref problems,
                ..
            } if problems.is_empty() => {
                Ok(UsageRecord { id, host, model, use_case, region, time, requests, input_tokens, output_tokens, revenue, currency })
            }
            Builder { problems, .. } => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"e1","host":"northwind","model":"m-70b","use_case":"customer_service","region":"us","time":"2026-10-02T15:30:00+05:30","requests":120000,"input_tokens":900000000,"output_tokens":300000000,"revenue":"1080.000000","currency":"USD"}"#;

    fn problems(line: &str) -> Vec<String> {
        parse_json_line(line.as_bytes()).err().unwrap_or_default().into_iter().map(|p| p.message).collect()
    }

    #[test]
    fn parses_a_record_and_writes_its_canonical_form() {
        let record = parse_json_line(GOOD.as_bytes());
        let mut out = Vec::new();
        if let Ok(r) = &record {
            r.write_canonical(&mut out);
        }
        let text = String::from_utf8_lossy(&out);
        assert_eq!(
            text,
            r#"{"currency":"USD","host":"northwind","id":"e1","input_tokens":"900000000","model":"m-70b","output_tokens":"300000000","region":"us","requests":"120000","revenue":"1080","time":"2026-10-02T10:00:00Z","use_case":"customer_service"}"#
        );
        // The hand-written canonical form equals the general RFC 8785 writer's.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(crate::canonical::to_canonical(&value).ok(), Some(out));
    }

    #[test]
    fn same_values_written_differently_are_the_same_record() {
        let other = GOOD.replace("2026-10-02T15:30:00+05:30", "2026-10-02T10:00:00.000Z").replace("\"1080.000000\"", "1080.0");
        let a = parse_json_line(GOOD.as_bytes()).map(|r| r.digest());
        let b = parse_json_line(other.as_bytes()).map(|r| r.digest());
        assert!(a.is_ok());
        assert_eq!(a, b);
    }

    #[test]
    fn the_fast_path_and_the_general_reader_agree() {
        let variants = [
            GOOD.to_owned(),
            GOOD.replace(',', " ,\t").replace(':', " : "),
            GOOD.replace("\"1080.000000\"", "1.08e3"),
            GOOD.replace("\"1080.000000\"", "1080.0"),
            GOOD.replace("\"e1\"", "\"e\\u0031\""),
            GOOD.replace("120000", "0120000"),
            GOOD.replace("120000", "9223372036854775807"),
            GOOD.replace("120000", "9223372036854775808"),
            GOOD.replace("120000", "1.0"),
            GOOD.replace("\"us\"", "\"US\""),
            GOOD.replace("}", ",\"id\":\"e2\"}"),
            GOOD.replace("}", "} x"),
            GOOD.replace("\"northwind\"", "\"-northwind\""),
            GOOD.replace("\"northwind\"", "\"north.wind\""),
            GOOD.replace("\"m-70b\"", "\".m-70b\""),
            GOOD.replace("\"m-70b\"", "\"m-7.0b\""),
            GOOD.replace("\"customer_service\"", "\"1customer\""),
            GOOD.replace("\"us\"", "\"-us-east-1\""),
            GOOD.replace("\"us\"", "\"\""),
            GOOD.replace("\"e1\"", &format!("\"{}\"", "e".repeat(128))),
            GOOD.replace("\"e1\"", &format!("\"{}\"", "e".repeat(129))),
            GOOD.replace("\"e1\"", "\"E.1:x_y-z\""),
            GOOD.replace("\"e1\"", "\"e 1\""),
            GOOD.replace("2026-10-02T15:30:00+05:30", "2026-10-02T10:00:00Z"),
            GOOD.replace("2026-10-02T15:30:00+05:30", "2026-10-02T10:00:00X"),
            GOOD.replace("2026-10-02T15:30:00+05:30", "2026-10-0210:00:00ZZ"),
            format!("  {GOOD}  "),
            // Keys that share a prefix with the expected one, and an expected key within the
            // last 16 bytes of the line (compared byte by byte).
            GOOD.replace("\"id\"", "\"i\""),
            GOOD.replace("\"host\"", "\"hostname\""),
            GOOD.replace("\"currency\":\"USD\"", "\"currency\":\"USD\",\"id\":\"e2\""),
            GOOD.replace("\"currency\":\"USD\"}", "\"currenc\":1}"),
            GOOD.replace("\"currency\":\"USD\"}", "\"currency\":\"EUR\"}"),
        ];
        for line in variants {
            let fast = fast_json_line(line.as_bytes());
            let generic = parse_json_line_generic(line.as_bytes()).ok();
            if fast.is_some() {
                assert_eq!(fast, generic, "{line}");
            }
            assert_eq!(parse_json_line(line.as_bytes()).ok(), generic, "{line}");
        }
        assert!(fast_json_line(GOOD.as_bytes()).is_some());
    }

    #[test]
    fn an_expected_key_is_found_by_word_or_near_the_end_by_bytes() {
        let key = ExpectedKey::new(2, b"\"id\"");
        assert!(key.is_at(br#"{"id":"e1","host":"h1"}"#, 1));
        assert!(key.is_at(br#"{"id":1}"#, 1)); // fewer than 16 bytes left
        assert!(!key.is_at(br#"{"idx":"e1","host":"h1"}"#, 1));
        assert!(!key.is_at(br#"{"idx":1}"#, 1));
        assert!(!key.is_at(br#"{"i"#, 1));
        let longest = ExpectedKey::new(5, b"\"output_tokens\"");
        assert!(longest.is_at(br#""output_tokens":1}"#, 0));
        assert!(!longest.is_at(br#""output_tokenz":1}"#, 0));
    }

    #[test]
    fn refuses_unknown_fields_by_name() {
        let line = GOOD.replace("\"currency\":\"USD\"", "\"currency\":\"USD\",\"prompt\":\"hello\"");
        assert_eq!(
            problems(&line),
            vec![
                "unknown field `prompt`: usage records carry counts and money only, never content or user identifiers; the fields are currency, host, id, input_tokens, model, output_tokens, region, requests, revenue, time, use_case"
            ]
        );
    }

    #[test]
    fn every_problem_of_a_record_is_reported() {
        let line = GOOD.replace("120000", "-1").replace("900000000", "9223372036854775808").replace("\"USD\"", "\"usd\"");
        assert_eq!(
            problems(&line),
            vec![
                "field `requests` is -1; it must be an integer from 0 to 2^63 - 1",
                "field `input_tokens` is 9223372036854775808; it must be an integer from 0 to 2^63 - 1",
                "field `currency`: `usd` is not an ISO 4217 currency code; use a code such as \"USD\", \"EUR\" or \"JPY\"",
            ]
        );
    }
}
