//! Request bodies: read within the size limit, and usage bodies parsed into records with the
//! line, column, record id and field of every problem.
//!
//! The formats are the CLI's (SPEC §3), chosen by `Content-Type`: JSON Lines
//! (`application/x-ndjson`, `application/jsonl`), a JSON array of records (`application/json`)
//! and a CloudEvents batch (`application/cloudevents-batch+json`). Each record is parsed by the
//! core's `parse_json_line` or `parse_cloudevent`; arrays are split by the core's
//! `ArraySplitter`, as `revshare ingest` does. Nothing is stored unless every record parses.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt as _;
use revshare_core::json::{ArraySplitter, JsonValue, parse_object};
use revshare_core::usage::{RecordProblem, UsageRecord, parse_cloudevent, parse_json_line};

use crate::problem::{Problem, ProblemItem};

/// How a usage body is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    JsonArray,
    CloudEvents,
}

impl Format {
    /// The format a `Content-Type` names, or 415.
    pub fn of(headers: &HeaderMap) -> Result<Format, Problem> {
        let unsupported = |found: &str| {
            Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "unsupported content type",
                format!(
                    "usage is sent as application/x-ndjson (or application/jsonl), application/json (an array of records) or application/cloudevents-batch+json, not {found}"
                ),
            )
        };
        let Some(value) = headers.get(header::CONTENT_TYPE) else { return Err(unsupported("a body without Content-Type")) };
        let text = value.to_str().map_err(|_| unsupported("a Content-Type that is not ASCII"))?;
        Format::of_media(text).ok_or_else(|| unsupported(&format!("`{text}`")))
    }

    /// The format a media type (`application/x-ndjson; charset=utf-8`) names.
    pub fn of_media(media: &str) -> Option<Format> {
        match media.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "application/x-ndjson" | "application/jsonl" | "application/json-lines" => Some(Format::JsonLines),
            "application/json" => Some(Format::JsonArray),
            "application/cloudevents-batch+json" => Some(Format::CloudEvents),
            _ => None,
        }
    }
}

/// Reads a whole body of at most `max` bytes; a longer one is 413.
pub async fn read(headers: &HeaderMap, body: Body, max: usize, idle: std::time::Duration) -> Result<Bytes, Problem> {
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "the body is too large",
            format!("the body exceeds the limit of {max} bytes; send smaller batches"),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX)) {
        return Err(too_large());
    }
    // Read frame by frame, each within `idle`: a client that stops sending mid-body is answered
    // and let go, not waited for.
    let mut body = http_body_util::Limited::new(body, max);
    let mut bytes = Vec::with_capacity(declared.and_then(|n| usize::try_from(n).ok()).unwrap_or(0).min(max));
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request-timeout",
                    "the body stopped arriving",
                    format!(
                        "nothing of the body arrived for {} s after {} bytes; nothing was stored; send it again",
                        idle.as_secs_f64(),
                        bytes.len()
                    ),
                ));
            }
            Ok(None) => return Ok(Bytes::from(bytes)),
            Ok(Some(frame)) => frame,
        };
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Err(e) => {
                if e.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                return Err(Problem::bad_request(format!("the body could not be read: {e}")));
            }
        }
    }
}

/// A parsed usage body: its records, their digests, and the line each starts on.
pub struct Parsed {
    pub records: Vec<UsageRecord<'static>>,
    /// Each record's SHA-256 as sent, taken here on the request's own thread, so the writer
    /// storing the batch does not.
    pub digests: Vec<[u8; 32]>,
    pub lines: Vec<u64>,
}

/// Where byte offsets are in a body: line and column (in bytes), 1-based. Offsets are mostly
/// asked for in increasing order, so it scans on from the last one: linear in the body.
struct Lines<'a> {
    body: &'a [u8],
    offset: usize,
    line: u64,
    line_start: usize,
}

impl<'a> Lines<'a> {
    fn new(body: &'a [u8]) -> Lines<'a> {
        Lines { body, offset: 0, line: 1, line_start: 0 }
    }

    fn locate(&mut self, offset: usize) -> (u64, u64) {
        let offset = offset.min(self.body.len());
        if offset < self.offset {
            (self.offset, self.line, self.line_start) = (0, 1, 0);
        }
        for (i, &b) in self.body[self.offset..offset].iter().enumerate() {
            if b == b'\n' {
                self.line += 1;
                self.line_start = self.offset + i + 1;
            }
        }
        self.offset = offset;
        (self.line, u64::try_from(offset - self.line_start + 1).unwrap_or(u64::MAX))
    }
}

/// The id of a record that did not parse, if it has a readable one.
fn record_id_of(text: &[u8]) -> Option<String> {
    let members = parse_object(text).ok()?;
    members.into_iter().find(|m| m.key == "id").and_then(|m| match m.value {
        JsonValue::String(s) if revshare_core::ids::is_record_id(&s) => Some(s.into_owned()),
        _ => None,
    })
}

/// Parses a usage body; every problem, located, if any record is bad.
pub fn parse(format: Format, body: &[u8]) -> Result<Parsed, Vec<ProblemItem>> {
    let mut lines = Lines::new(body);
    let mut parsed = Parsed { records: Vec::new(), digests: Vec::new(), lines: Vec::new() };
    let mut problems = Vec::new();
    let mut take = |start: usize, text: &[u8], result: Result<UsageRecord<'_>, Vec<RecordProblem>>| match result {
        Ok(record) => {
            parsed.digests.push(record.digest());
            parsed.records.push(record.into_owned());
            parsed.lines.push(lines.locate(start).0);
        }
        Err(found) => {
            let record = record_id_of(text);
            for p in found {
                let (line, column) = lines.locate(start + p.offset);
                problems.push(ProblemItem {
                    line: Some(line),
                    column: Some(column),
                    record: record.clone(),
                    field: p.field,
                    message: p.message,
                });
            }
        }
    };
    match format {
        Format::JsonLines => {
            let mut start = 0;
            for raw in body.split(|&b| b == b'\n') {
                let text = raw.strip_suffix(b"\r").unwrap_or(raw);
                if !text.iter().all(u8::is_ascii_whitespace) {
                    take(start, text, parse_json_line(text));
                }
                start += raw.len() + 1;
            }
        }
        Format::JsonArray | Format::CloudEvents => {
            let mut splitter = ArraySplitter::default();
            let mut ranges = Vec::new();
            let first = body.iter().position(|b| !b.is_ascii_whitespace());
            let fed = match first.map(|i| body[i]) {
                Some(b'[') => splitter.feed(body, &mut ranges).and_then(|()| splitter.finish()),
                _ => Err(revshare_core::json::JsonError {
                    offset: first.unwrap_or(0),
                    message: "expected a JSON array, starting with `[`".to_owned(),
                }),
            };
            for range in ranges {
                let text = &body[range.clone()];
                let result = if format == Format::CloudEvents { parse_cloudevent(text) } else { parse_json_line(text) };
                take(range.start, text, result);
            }
            if let Err(e) = fed {
                let (line, column) = lines.locate(e.offset);
                problems.push(ProblemItem {
                    line: Some(line),
                    column: Some(column),
                    record: None,
                    field: None,
                    message: format!("not a valid batch: {}", e.message),
                });
            }
        }
    }
    if problems.is_empty() && parsed.records.is_empty() {
        problems.push(ProblemItem { message: "the body holds no records".to_owned(), ..ProblemItem::default() });
    }
    if problems.is_empty() { Ok(parsed) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"a1","host":"northwind","model":"m-8b","use_case":"search","region":"us","time":"2026-10-02T10:00:00Z","requests":1,"input_tokens":2,"output_tokens":3,"revenue":"1.50","currency":"USD"}"#;

    #[test]
    fn records_of_an_array_start_on_their_lines_and_problems_point_at_the_field() {
        let bad = GOOD.replace("\"a1\"", "\"a2\"").replace("\"1.50\"", "\"x\"");
        let body = format!("[\n  {GOOD},\n  {GOOD}\n,\n{bad}]\n")
            .replace("\"a1\",\"host\":\"northwind\",\"model\":\"m-8b\"", "\"a1\",\n\"host\":\"northwind\",\"model\":\"m-8b\"");
        // Lines: `[`, the first record (two lines), the second (two), `,`, the bad record.
        let problems = parse(Format::JsonArray, body.as_bytes()).err().unwrap_or_default();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problem = &problems[0];
        assert_eq!((problem.line, problem.record.as_deref(), problem.field.as_deref()), (Some(7), Some("a2"), Some("revenue")));
        let column = bad.find("\"revenue\"").map(|c| u64::try_from(c).unwrap_or(0));
        assert!(problem.column.is_some_and(|c| column.is_some_and(|at| c > at)), "the column points into the record: {problem:?}");

        let good = format!("[\n{GOOD},\n\n{}]", GOOD.replace("\"a1\"", "\"a3\""));
        let parsed = parse(Format::JsonArray, good.as_bytes()).map(|p| p.lines).unwrap_or_default();
        assert_eq!(parsed, vec![2, 4], "each record is numbered by the line it starts on");
    }

    #[test]
    fn an_unfinished_batch_and_an_empty_one_are_refused() {
        let unfinished = format!("[{GOOD}");
        let problems = parse(Format::CloudEvents, unfinished.as_bytes()).err().unwrap_or_default();
        assert!(problems.iter().any(|p| p.message.contains("before its closing")), "{problems:?}");
        let empty = parse(Format::JsonLines, b"\n \n").err().unwrap_or_default();
        assert_eq!(empty.iter().map(|p| p.message.as_str()).collect::<Vec<_>>(), ["the body holds no records"]);
    }
}
