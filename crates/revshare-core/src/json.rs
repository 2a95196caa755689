//! A small borrowed JSON reader for usage records.
//!
//! Why not `serde_json`: a usage record's numbers must be read from their exact text (a revenue of
//! `0.1` is one tenth, not the nearest binary float), every field must be checked by name for
//! privacy (SPEC §3), an error must carry its byte offset, and the reader sits on the hot path of
//! settling ten million records. This reader keeps strings borrowed unless they contain escapes,
//! keeps numbers as their literal text, and reports the offset of every problem. It accepts exactly
//! RFC 8259 JSON.

use std::borrow::Cow;

/// The most nesting a record may have; records are flat, so this only bounds hostile input.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub enum JsonValue<'a> {
    String(Cow<'a, str>),
    /// The exact literal text of a number.
    Number(&'a str),
    Bool(bool),
    Null,
    Object(Vec<Member<'a>>),
    Array(Vec<JsonValue<'a>>),
}

impl JsonValue<'_> {
    /// The JSON type name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            JsonValue::String(_) => "a string",
            JsonValue::Number(_) => "a number",
            JsonValue::Bool(_) => "a boolean",
            JsonValue::Null => "null",
            JsonValue::Object(_) => "an object",
            JsonValue::Array(_) => "an array",
        }
    }
}

/// One `"key": value` of an object, with the byte offsets of the key and of the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Member<'a> {
    pub key: Cow<'a, str>,
    pub key_offset: usize,
    pub value: JsonValue<'a>,
    pub value_offset: usize,
}

/// A syntax error at a byte offset of the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JsonError {
    pub offset: usize,
    pub message: String,
}

/// Parses a whole input that must be exactly one JSON object (surrounding whitespace allowed).
pub fn parse_object(input: &[u8]) -> Result<Vec<Member<'_>>, JsonError> {
    let mut members = Vec::with_capacity(12);
    visit_object(input, |m| members.push(m))?;
    Ok(members)
}

/// Like [`parse_object`], but hands each top-level member to `visit` as it is read, so the hot
/// path builds no list.
pub fn visit_object<'a>(input: &'a [u8], mut visit: impl FnMut(Member<'a>)) -> Result<(), JsonError> {
    // Validating the UTF-8 of the whole input once lets every string be a plain slice.
    let text = std::str::from_utf8(input)
        .map_err(|e| JsonError { offset: e.valid_up_to(), message: "invalid UTF-8: a record must be UTF-8 text".to_owned() })?;
    let mut reader = Reader { text, input, at: 0 };
    reader.skip_ws();
    if reader.peek() != Some(b'{') {
        return Err(reader.error(match reader.peek() {
            None => "the line is empty; expected a JSON object".to_owned(),
            Some(_) => "expected a JSON object starting with `{`".to_owned(),
        }));
    }
    reader.members(0, &mut visit)?;
    reader.skip_ws();
    if reader.at < input.len() {
        return Err(reader.error("unexpected text after the end of the object".to_owned()));
    }
    Ok(())
}

struct Reader<'a> {
    text: &'a str,
    input: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn error(&self, message: String) -> JsonError {
        JsonError { offset: self.at, message }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), JsonError> {
        self.skip_ws();
        match self.peek() {
            Some(b) if b == byte => {
                self.at += 1;
                Ok(())
            }
            None => Err(self.error(format!("the input ends where {what} should be (a truncated line?)"))),
            Some(_) => Err(self.error(format!("expected {what}"))),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Vec<Member<'a>>, JsonError> {
        let mut members = Vec::new();
        self.members(depth, &mut |m| members.push(m))?;
        Ok(members)
    }

    fn members(&mut self, depth: usize, visit: &mut dyn FnMut(Member<'a>)) -> Result<(), JsonError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nested too deeply".to_owned()));
        }
        self.at += 1; // the `{`
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            let key_offset = self.at;
            match self.peek() {
                Some(b'"') => {}
                // A line cut short (a partial write) is the common case; say so plainly.
                None => return Err(self.error("the input ends where a field name should be".to_owned())),
                Some(_) => return Err(self.error("expected a quoted field name".to_owned())),
            }
            let key = self.string()?;
            self.expect(b':', "`:` after the field name")?;
            self.skip_ws();
            let value_offset = self.at;
            let value = self.value(depth)?;
            visit(Member { key, key_offset, value, value_offset });
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                None => return Err(self.error("the input ends before the object's closing `}`".to_owned())),
                _ => return Err(self.error("expected `,` or `}` after a field".to_owned())),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<JsonValue<'a>, JsonError> {
        match self.peek() {
            Some(b'"') => Ok(JsonValue::String(self.string()?)),
            Some(b'{') => Ok(JsonValue::Object(self.object(depth + 1)?)),
            Some(b'[') => self.array(depth + 1),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", JsonValue::Bool(true)),
            Some(b'f') => self.literal(b"false", JsonValue::Bool(false)),
            Some(b'n') => self.literal(b"null", JsonValue::Null),
            None => Err(self.error("the input ends where a value should be".to_owned())),
            Some(_) => Err(self.error("expected a JSON value".to_owned())),
        }
    }

    fn array(&mut self, depth: usize) -> Result<JsonValue<'a>, JsonError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nested too deeply".to_owned()));
        }
        self.at += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(JsonValue::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(JsonValue::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]` in an array".to_owned())),
            }
        }
    }

    fn literal(&mut self, word: &[u8], value: JsonValue<'a>) -> Result<JsonValue<'a>, JsonError> {
        if self.input[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a JSON value".to_owned()))
        }
    }

    fn number(&mut self) -> Result<JsonValue<'a>, JsonError> {
        let start = self.at;
        let digits = |r: &mut Self| {
            let from = r.at;
            while r.peek().is_some_and(|c| c.is_ascii_digit()) {
                r.at += 1;
            }
            r.at - from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let int_start = self.at;
        let int_len = digits(self);
        if int_len == 0 || (int_len > 1 && self.input[int_start] == b'0') {
            return Err(JsonError { offset: start, message: "malformed number".to_owned() });
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return Err(JsonError { offset: start, message: "malformed number".to_owned() });
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(JsonError { offset: start, message: "malformed number".to_owned() });
            }
        }
        Ok(JsonValue::Number(&self.text[start..self.at]))
    }

    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let open = self.at;
        self.at += 1;
        let start = self.at;
        // Fast path: no escapes.
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    let raw = &self.text[start..self.at];
                    self.at += 1;
                    return Ok(Cow::Borrowed(raw));
                }
                b'\\' => break,
                0..=0x1f => {
                    return Err(self.error("a control character inside a string must be escaped".to_owned()));
                }
                _ => self.at += 1,
            }
        }
        if self.peek().is_none() {
            return Err(JsonError { offset: open, message: "unterminated string".to_owned() });
        }
        // Slow path: decode escapes into an owned buffer.
        let mut out = String::from(&self.text[start..self.at]);
        loop {
            match self.peek() {
                None => {
                    return Err(JsonError { offset: open, message: "unterminated string".to_owned() });
                }
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escaped = match self.peek() {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'/') => b'/',
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => {
                            self.at += 1;
                            out.push(self.unicode_escape()?);
                            continue;
                        }
                        _ => return Err(self.error("invalid escape in a string".to_owned())),
                    };
                    out.push(char::from(escaped));
                    self.at += 1;
                }
                Some(0..=0x1f) => {
                    return Err(self.error("a control character inside a string must be escaped".to_owned()));
                }
                Some(_) => {
                    // Copy one whole character (the text is valid UTF-8).
                    let c = self.text[self.at..].chars().next().unwrap_or('\u{fffd}');
                    out.push(c);
                    self.at += c.len_utf8();
                }
            }
        }
    }

    /// Reads the four hex digits after `\u` (and a low surrogate after a high one).
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hex4 = |r: &mut Self| -> Result<u32, JsonError> {
            let digits = r.input.get(r.at..r.at + 4).ok_or_else(|| r.error("invalid \\u escape".to_owned()))?;
            let text = std::str::from_utf8(digits).map_err(|_| r.error("invalid \\u escape".to_owned()))?;
            let value = u32::from_str_radix(text, 16).map_err(|_| r.error("invalid \\u escape".to_owned()))?;
            r.at += 4;
            Ok(value)
        };
        let first = hex4(self)?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.input[self.at..].starts_with(b"\\u") {
                return Err(self.error("unpaired surrogate in a \\u escape".to_owned()));
            }
            self.at += 2;
            let second = hex4(self)?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("unpaired surrogate in a \\u escape".to_owned()));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("unpaired surrogate in a \\u escape".to_owned()))
    }
}

/// Finds where the elements of a top-level JSON array start and end, incrementally, so that a
/// CloudEvents batch of any size is read one event at a time.
///
/// Feed it bytes; it returns the byte ranges (relative to everything fed so far) of each complete
/// element. It tracks only strings and nesting, which is all that element boundaries need; the
/// elements themselves are checked by [`parse_object`].
#[derive(Debug, Default)]
pub struct ArraySplitter {
    consumed: usize,
    state: SplitState,
    depth: usize,
    in_string: bool,
    escaped: bool,
    element_start: usize,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum SplitState {
    #[default]
    BeforeArray,
    BeforeElement,
    InElement,
    AfterElement,
    Done,
}

impl ArraySplitter {
    /// Feeds the next bytes; pushes the absolute ranges of elements that ended in them.
    pub fn feed(&mut self, bytes: &[u8], elements: &mut Vec<std::ops::Range<usize>>) -> Result<(), JsonError> {
        for (i, &c) in bytes.iter().enumerate() {
            let at = self.consumed + i;
            let error = |message: &str| JsonError { offset: at, message: message.to_owned() };
            let ws = matches!(c, b' ' | b'\t' | b'\n' | b'\r');
            match self.state {
                SplitState::BeforeArray if ws => {}
                SplitState::BeforeArray if c == b'[' => self.state = SplitState::BeforeElement,
                SplitState::BeforeArray => {
                    return Err(error("expected a CloudEvents batch: a JSON array of events"));
                }
                SplitState::BeforeElement | SplitState::AfterElement if ws => {}
                SplitState::BeforeElement | SplitState::AfterElement if c == b']' => self.state = SplitState::Done,
                SplitState::AfterElement if c == b',' => self.state = SplitState::BeforeElement,
                SplitState::AfterElement => {
                    return Err(error("expected `,` or `]` between events"));
                }
                SplitState::BeforeElement if c == b'{' => {
                    self.state = SplitState::InElement;
                    self.element_start = at;
                    self.depth = 1;
                }
                SplitState::BeforeElement => {
                    return Err(error("expected an event: a JSON object starting with `{`"));
                }
                SplitState::InElement => self.step_element(c, at, elements),
                SplitState::Done if ws => {}
                SplitState::Done => {
                    return Err(error("unexpected text after the end of the batch"));
                }
            }
        }
        self.consumed += bytes.len();
        Ok(())
    }

    fn step_element(&mut self, c: u8, at: usize, elements: &mut Vec<std::ops::Range<usize>>) {
        if self.in_string {
            match (self.escaped, c) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return;
        }
        match c {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    elements.push(self.element_start..at + 1);
                    self.state = SplitState::AfterElement;
                }
            }
            _ => {}
        }
    }

    /// The absolute offset where the element being read started, if one is unfinished: bytes
    /// before it are no longer needed.
    pub fn pending_start(&self) -> Option<usize> {
        (self.state == SplitState::InElement).then_some(self.element_start)
    }

    /// Checks the batch was complete when the input ended.
    pub fn finish(&self) -> Result<(), JsonError> {
        match self.state {
            SplitState::Done => Ok(()),
            _ => Err(JsonError { offset: self.consumed, message: "the batch ends before its closing `]`".to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flat_objects_with_exact_numbers() {
        let m = parse_object(br#" {"a":"x","n":0.10,"e":1e400,"b":true,"z":null} "#).unwrap_or_default();
        assert_eq!(m.len(), 5);
        assert_eq!(m[1].value, JsonValue::Number("0.10"));
        assert_eq!(m[2].value, JsonValue::Number("1e400"));
        assert_eq!(m[1].key_offset, 10);
    }

    #[test]
    fn decodes_escapes() {
        let m = parse_object(br#"{"k\u00e9":"a\"b\\c\ud83d\ude00"}"#).unwrap_or_default();
        assert_eq!(m[0].key, "k\u{e9}");
        assert_eq!(m[0].value, JsonValue::String(Cow::Owned("a\"b\\c\u{1F600}".to_owned())));
    }

    #[test]
    fn errors_carry_offsets() {
        let e = |s: &[u8]| parse_object(s).err().map(|e| (e.offset, e.message));
        assert_eq!(e(br#"{"a":1"#), Some((6, "the input ends before the object's closing `}`".to_owned())));
        assert_eq!(e(br#"{"a":1 x"#), Some((7, "expected `,` or `}` after a field".to_owned())));
        assert_eq!(e(br#"{"a":1,"#), Some((7, "the input ends where a field name should be".to_owned())));
        assert_eq!(e(br#"{"a":01}"#), Some((5, "malformed number".to_owned())));
        assert_eq!(e(b"{\"a\":\"\xff\"}"), Some((6, "invalid UTF-8: a record must be UTF-8 text".to_owned())));
        assert_eq!(e(br#"{"a":"x"} x"#), Some((10, "unexpected text after the end of the object".to_owned())));
        assert_eq!(e(b""), Some((0, "the line is empty; expected a JSON object".to_owned())));
        assert_eq!(e(br#"{"a":"x}"#), Some((5, "unterminated string".to_owned())));
        assert_eq!(e(br#"{"a":tru}"#), Some((5, "expected a JSON value".to_owned())));
    }

    #[test]
    fn splits_arrays_in_any_chunking() {
        let text = br#" [ {"a":"}]"}, {"b":[1,{"c":2}]} ,{"d":"\"]"}] "#;
        for chunk in 1..text.len() {
            let mut s = ArraySplitter::default();
            let mut ranges = Vec::new();
            for part in text.chunks(chunk) {
                assert_eq!(s.feed(part, &mut ranges), Ok(()));
            }
            assert_eq!(s.finish(), Ok(()));
            let got: Vec<&[u8]> = ranges.iter().map(|r| &text[r.clone()]).collect();
            assert_eq!(got, vec![&br#"{"a":"}]"}"#[..], &br#"{"b":[1,{"c":2}]}"#[..], &br#"{"d":"\"]"}"#[..]]);
        }
    }
}
