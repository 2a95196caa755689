//! Usage records (SPEC §3): what a host reports, in JSON Lines or CloudEvents batches.
//!
//! A record is validated field by field against the SPEC table; any field not in it is refused
//! by name, because usage records carry counts and money only (privacy). Numbers are read from
//! their literal text: revenue through [`Decimal::parse_json_number`], counts as integers below
//! 2^63. Every problem of a record is reported, each with its byte offset in the input and the
//! field it concerns.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

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
        use std::io::Write;
        // Every text field passed a charset check that excludes `"` and `\`, so no escaping is
        // needed and this is byte-for-byte what a general RFC 8785 writer produces (tested).
        let _ = write!(
            out,
            r#"{{"currency":"{}","host":"{}","id":"{}","input_tokens":"{}","model":"{}","output_tokens":"{}","region":"{}","requests":"{}","revenue":"{}","time":"{}","use_case":"{}"}}"#,
            self.currency,
            self.host,
            self.id,
            self.input_tokens,
            self.model,
            self.output_tokens,
            self.region,
            self.requests,
            self.revenue,
            self.time,
            self.use_case
        );
    }

    /// SHA-256 of the canonical JSON.
    pub fn digest(&self) -> [u8; 32] {
        let mut buf = Vec::with_capacity(320);
        self.write_canonical(&mut buf);
        Sha256::digest(&buf).into()
    }
}

/// Parses one JSON Lines record.
pub fn parse_json_line(line: &[u8]) -> Result<UsageRecord<'_>, Vec<RecordProblem>> {
    let members = json::parse_object(line).map_err(|e| vec![syntax_problem(e)])?;
    let mut builder = Builder::default();
    for member in members {
        builder.field(member, None);
    }
    builder.finish(0)
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
            builder.problem(
                offset,
                Some(key),
                format!(
                    "unknown CloudEvents attribute `{key}`: usage events carry counts and money only; put the record's fields in `data`"
                ),
            );
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
                                format!("`data.{key}` is not allowed: a CloudEvent's `{key}` is the record's"),
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
    for required in ["specversion", "source", "type", "data"] {
        if !seen_envelope.contains(&required) {
            builder.problem(0, Some(required), format!("missing CloudEvents attribute `{required}`"));
        }
    }
    builder.finish(0)
}

fn syntax_problem(e: json::JsonError) -> RecordProblem {
    RecordProblem { offset: e.offset, field: None, message: format!("not valid JSON: {}", e.message) }
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
        let Some(index) = FIELDS.iter().position(|(name, _)| *name == key) else {
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
                    return bad(self, format!("is \"{}\"", text.escape_debug()));
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
