//! The exact problems reported for bad usage records (SPEC §3): each names the byte offset in
//! the line (or event), the field, what is wrong and what would be right. Each case starts from a
//! good record and changes one thing.

use revshare_core::usage::{RecordProblem, UsageRecord, parse_cloudevent, parse_json_line};

/// `examples/usage.jsonl`, first line.
const LINE: &str = r#"{"id":"e1","host":"northwind","model":"m-70b","use_case":"customer_service","region":"us","time":"2026-10-02T10:00:00Z","requests":120000,"input_tokens":900000000,"output_tokens":300000000,"revenue":"1080.000000","currency":"USD"}"#;

/// `examples/usage.cloudevents.json`, first event, compacted.
const EVENT: &str = r#"{"specversion":"1.0","id":"e1","source":"//northwind/billing","type":"revshare.usage.v1","time":"2026-10-02T10:00:00Z","datacontenttype":"application/json","data":{"host":"northwind","model":"m-70b","use_case":"customer_service","region":"us","requests":120000,"input_tokens":900000000,"output_tokens":300000000,"revenue":"1080.000000","currency":"USD"}}"#;

/// `text` with `from` (which must occur exactly once) replaced by `to`.
fn edited(text: &str, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(text.matches(from).count(), 1, "`{from}` must occur exactly once");
    text.replacen(from, to, 1).into_bytes()
}

/// The byte offset of `needle` (which must occur exactly once) in `input`.
fn at(input: &[u8], needle: &str) -> usize {
    let n = needle.as_bytes();
    let hits: Vec<usize> = input.windows(n.len()).enumerate().filter(|(_, w)| *w == n).map(|(i, _)| i).collect();
    assert_eq!(hits.len(), 1, "`{needle}` must occur exactly once");
    hits[0]
}

fn problem(offset: usize, field: Option<&str>, message: &str) -> RecordProblem {
    RecordProblem { offset, field: field.map(str::to_owned), message: message.to_owned() }
}

fn problems(result: Result<UsageRecord<'_>, Vec<RecordProblem>>) -> Vec<RecordProblem> {
    match result {
        Ok(record) => panic!("the input parsed, but problems were expected: {record:?}"),
        Err(problems) => problems,
    }
}

fn line_problems(line: &[u8]) -> Vec<RecordProblem> {
    problems(parse_json_line(line))
}

fn event_problems(event: &[u8]) -> Vec<RecordProblem> {
    problems(parse_cloudevent(event))
}

const COUNT_RULE: &str = "it must be an integer from 0 to 2^63 - 1";

#[test]
fn the_examples_parse() {
    let line = parse_json_line(LINE.as_bytes()).map(|r| r.digest());
    let event = parse_cloudevent(EVENT.as_bytes()).map(|r| r.digest());
    assert!(line.is_ok());
    assert_eq!(line, event, "the same record as a line and as an event");
}

#[test]
fn a_truncated_line() {
    let cut = at(LINE.as_bytes(), r#","input_tokens""#);
    assert_eq!(
        line_problems(&LINE.as_bytes()[..cut]),
        vec![problem(cut, None, "not valid JSON: the input ends before the object's closing `}`")]
    );
    assert_eq!(
        line_problems(&LINE.as_bytes()[..cut + 1]),
        vec![problem(cut + 1, None, "not valid JSON: the input ends where a field name should be")]
    );
    assert_eq!(
        line_problems(&LINE.as_bytes()[..cut + r#","input_tokens":"#.len()]),
        vec![problem(cut + 16, None, "not valid JSON: the input ends where a value should be")]
    );
    // Inside a string, the error points at the string's opening quote.
    let cut = at(LINE.as_bytes(), "10:00:00Z");
    assert_eq!(
        line_problems(&LINE.as_bytes()[..cut]),
        vec![problem(at(LINE.as_bytes(), r#""2026-10-02"#), None, "not valid JSON: unterminated string")]
    );
}

#[test]
fn a_string_where_a_count_belongs() {
    let line = edited(LINE, "120000", r#""120000""#);
    assert_eq!(
        line_problems(&line),
        vec![problem(at(&line, r#""120000""#), Some("requests"), &format!("field `requests` is a string; {COUNT_RULE}"))]
    );
}

#[test]
fn a_number_where_a_party_id_belongs() {
    let line = edited(LINE, r#""northwind""#, "42");
    assert_eq!(
        line_problems(&line),
        vec![problem(at(&line, "42"), Some("host"), r#"field `host` is a number; it must be a party id like "northwind""#)]
    );
}

#[test]
fn a_revenue_beyond_28_digits_written_as_an_exponent() {
    let line = edited(LINE, r#""1080.000000""#, "1e400");
    assert_eq!(
        line_problems(&line),
        vec![problem(at(&line, "1e400"), Some("revenue"), "field `revenue`: `1e400` has more than 28 significant digits")]
    );
}

#[test]
fn a_negative_count() {
    let line = edited(LINE, "900000000", "-1");
    assert_eq!(
        line_problems(&line),
        vec![problem(
            at(&line, r#""input_tokens":-1"#) + r#""input_tokens":"#.len(),
            Some("input_tokens"),
            &format!("field `input_tokens` is -1; {COUNT_RULE}")
        )]
    );
}

#[test]
fn a_count_of_two_to_the_63() {
    let line = edited(LINE, "300000000", "9223372036854775808");
    assert_eq!(
        line_problems(&line),
        vec![problem(
            at(&line, "9223372036854775808"),
            Some("output_tokens"),
            &format!("field `output_tokens` is 9223372036854775808; {COUNT_RULE}")
        )]
    );
    // One less is the largest count allowed.
    let line = edited(LINE, "300000000", "9223372036854775807");
    assert_eq!(parse_json_line(&line).map(|r| r.output_tokens), Ok(9_223_372_036_854_775_807));
}

#[test]
fn invalid_utf8_inside_a_string() {
    const MESSAGE: &str = "not valid JSON: invalid UTF-8: a record must be UTF-8 text";
    // The offset is the bad byte itself, in a plain string…
    let mut line = LINE.as_bytes().to_vec();
    let bad = at(&line, "m-70b") + 1;
    line[bad] = 0xff;
    assert_eq!(line_problems(&line), vec![problem(bad, None, MESSAGE)]);
    // …and in a string with escapes.
    let mut line = edited(LINE, "m-70b", r"m\n70b");
    let bad = at(&line, r"m\n70b") + 3;
    line[bad] = 0xff;
    assert_eq!(line_problems(&line), vec![problem(bad, None, MESSAGE)]);
}

#[test]
fn a_prompt_is_refused_by_name() {
    let line = edited(LINE, r#","currency""#, r#","prompt":"hello","currency""#);
    assert_eq!(
        line_problems(&line),
        vec![problem(
            at(&line, r#""prompt""#),
            Some("prompt"),
            "unknown field `prompt`: usage records carry counts and money only, never content or user identifiers; \
             the fields are currency, host, id, input_tokens, model, output_tokens, region, requests, revenue, time, use_case"
        )]
    );
}

#[test]
fn a_field_twice() {
    let line = edited(LINE, r#","currency""#, r#","requests":5,"currency""#);
    assert_eq!(line_problems(&line), vec![problem(at(&line, r#""requests":5"#), Some("requests"), "field `requests` appears twice")]);
}

#[test]
fn a_missing_field() {
    let line = edited(LINE, r#","currency":"USD""#, "");
    assert_eq!(
        line_problems(&line),
        vec![problem(0, Some("currency"), r#"missing field `currency`: it must be an ISO 4217 code like "USD""#)]
    );
}

#[test]
fn a_time_without_an_offset() {
    let line = edited(LINE, "10:00:00Z", "10:00:00");
    assert_eq!(
        line_problems(&line),
        vec![problem(
            at(&line, r#""2026-10-02T"#),
            Some("time"),
            r#"field `time`: `2026-10-02T10:00:00` has no UTC offset; add "Z" or an offset like "+05:30""#
        )]
    );
}

#[test]
fn a_time_on_february_30() {
    let line = edited(LINE, "2026-10-02", "2026-02-30");
    assert_eq!(
        line_problems(&line),
        vec![problem(
            at(&line, r#""2026-02-30"#),
            Some("time"),
            "field `time`: `2026-02-30T10:00:00Z` is not a real calendar time (month, day, hour, minute or second out of range)"
        )]
    );
}

#[test]
fn an_unknown_currency() {
    let line = edited(LINE, r#""USD""#, r#""ABC""#);
    assert_eq!(
        line_problems(&line),
        vec![problem(
            at(&line, r#""ABC""#),
            Some("currency"),
            r#"field `currency`: `ABC` is not an ISO 4217 currency code; use a code such as "USD", "EUR" or "JPY""#
        )]
    );
}

#[test]
fn a_record_id_with_a_space() {
    let line = edited(LINE, r#""e1""#, r#""e 1""#);
    assert_eq!(
        line_problems(&line),
        vec![problem(at(&line, r#""e 1""#), Some("id"), r#"field `id` is "e 1"; it must be a record id of 1-128 of A-Z a-z 0-9 . _ : -"#)]
    );
}

#[test]
fn a_cloudevent_of_another_type() {
    let event = edited(EVENT, "revshare.usage.v1", "com.example.usage");
    assert_eq!(
        event_problems(&event),
        vec![problem(at(&event, r#""com.example.usage""#), Some("type"), r#"`type` must be "revshare.usage.v1""#)]
    );
}

#[test]
fn a_cloudevent_without_source() {
    let event = edited(EVENT, r#""source":"//northwind/billing","#, "");
    assert_eq!(
        event_problems(&event),
        vec![problem(
            0,
            Some("source"),
            r#"missing CloudEvents attribute `source`: it must be a string naming where the event comes from, like "//northwind/billing""#
        )]
    );
}

#[test]
fn a_cloudevent_extension_attribute() {
    let event = edited(
        EVENT,
        r#""datacontenttype""#,
        r#""traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","datacontenttype""#,
    );
    assert_eq!(
        event_problems(&event),
        vec![problem(
            at(&event, r#""traceparent""#),
            Some("traceparent"),
            "unknown CloudEvents attribute `traceparent`: extension attributes are refused, as usage events carry counts and money \
             only; the attributes are specversion, id, source, type, time, datacontenttype, dataschema, subject and data"
        )]
    );
}

#[test]
fn a_record_field_outside_data() {
    let event = edited(EVENT, r#""datacontenttype""#, r#""region":"eu","datacontenttype""#);
    let offset = at(&event, r#""region":"eu""#);
    assert_eq!(
        event_problems(&event),
        vec![problem(
            offset,
            Some("region"),
            "`region` belongs in `data`: of the record's fields only `id` and `time` are CloudEvents attributes"
        )]
    );
}

#[test]
fn a_cloudevent_with_data_id() {
    let event = edited(EVENT, r#""data":{"#, r#""data":{"id":"e1","#);
    assert_eq!(
        event_problems(&event),
        vec![problem(
            at(&event, r#""id":"e1","host""#),
            Some("data.id"),
            "`data.id` is not allowed: the record's `id` is the event's own `id` attribute; leave it out of `data`"
        )]
    );
}

#[test]
fn a_10_mb_prompt_is_refused_by_name_without_echoing_it() {
    let line = format!(r#"{{"prompt":"{}",{}"#, "x".repeat(10 << 20), &LINE[1..]);
    assert_eq!(
        line_problems(line.as_bytes()),
        vec![problem(
            1,
            Some("prompt"),
            "unknown field `prompt`: usage records carry counts and money only, never content or user identifiers; \
             the fields are currency, host, id, input_tokens, model, output_tokens, region, requests, revenue, time, use_case"
        )]
    );
}

#[test]
fn a_10_mb_bad_value_is_quoted_short() {
    let host = "X".repeat(10 << 20);
    let line = edited(LINE, r#""northwind""#, &format!(r#""{host}""#));
    let found = line_problems(&line);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field.as_deref(), Some("host"));
    assert_eq!(
        found[0].message,
        format!("field `host` is \"{}…\" (10485760 characters); it must be a party id like \"northwind\"", "X".repeat(40))
    );
}
