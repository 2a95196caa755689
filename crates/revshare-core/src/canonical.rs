//! Canonical JSON (RFC 8785, JCS) and `sha256:` digests.
//!
//! Whatever revshare hashes or signs is first written here, so a change of a serde attribute or of
//! serde_json's defaults can never silently change a digest (the golden tests below pin the bytes).
//! revshare's canonical documents hold only strings, booleans, null, objects, arrays and integers
//! below 2^53; big counts and all money are strings. So numbers never need the ECMAScript
//! double formatting of RFC 8785 §3.2.2.3: a number that is not such an integer is refused.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The largest integer every JSON reader represents exactly (2^53 − 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` cannot be canonicalised: only integers of magnitude below 2^53 are allowed; write it as a string")]
pub struct CanonicalError(pub String);

/// The RFC 8785 bytes of a JSON value.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let safe = n
                .as_u64()
                .filter(|v| *v <= MAX_SAFE_INTEGER)
                .map(|v| v.to_string())
                .or_else(|| n.as_i64().filter(|v| v.unsigned_abs() <= MAX_SAFE_INTEGER).map(|v| v.to_string()));
            out.extend_from_slice(safe.ok_or_else(|| CanonicalError(n.to_string()))?.as_bytes());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| member_order(a.0, b.0));
            out.push(b'{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// RFC 8785 §3.2.3: members are sorted by the UTF-16 code units of their names.
fn member_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Writes RFC 8785 bytes straight from typed values, for a document written and checked often
/// (a statement): no `Value` is built. The caller gives each object's members in their sorted
/// order; the document's tests check its bytes against [`to_canonical`] of the same bytes parsed.
pub struct Writer {
    out: Vec<u8>,
    /// Whether the next value or member opens its array or object (takes no comma).
    first: bool,
}

impl Default for Writer {
    fn default() -> Writer {
        Writer { out: Vec::with_capacity(1024), first: true }
    }
}

impl Writer {
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    fn separate(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// An object whose members `members` writes, each [`Self::key`] then its value.
    pub fn object(&mut self, members: impl FnOnce(&mut Writer) -> Result<(), CanonicalError>) -> Result<(), CanonicalError> {
        self.enclosed(b'{', b'}', members)
    }

    /// An array whose items `items` writes.
    pub fn array(&mut self, items: impl FnOnce(&mut Writer) -> Result<(), CanonicalError>) -> Result<(), CanonicalError> {
        self.enclosed(b'[', b']', items)
    }

    fn enclosed(
        &mut self,
        open: u8,
        close: u8,
        inside: impl FnOnce(&mut Writer) -> Result<(), CanonicalError>,
    ) -> Result<(), CanonicalError> {
        self.separate();
        self.out.push(open);
        self.first = true;
        inside(self)?;
        self.out.push(close);
        self.first = false;
        Ok(())
    }

    /// A member's name; its value follows.
    pub fn key(&mut self, name: &str) {
        self.separate();
        write_string(name, &mut self.out);
        self.out.push(b':');
        self.first = true;
    }

    pub fn string(&mut self, text: &str) {
        self.separate();
        write_string(text, &mut self.out);
    }

    pub fn strings(&mut self, texts: &[String]) -> Result<(), CanonicalError> {
        self.array(|w| {
            texts.iter().for_each(|t| w.string(t));
            Ok(())
        })
    }

    /// A string, or `null` for `None`.
    pub fn optional_string(&mut self, text: Option<&str>) {
        match text {
            Some(text) => self.string(text),
            None => {
                self.separate();
                self.out.extend_from_slice(b"null");
            }
        }
    }

    /// A count that may pass 2^53, as a decimal string.
    pub fn count(&mut self, n: u128) {
        self.separate();
        self.out.push(b'"');
        push_uint(&mut self.out, n);
        self.out.push(b'"');
    }

    pub fn boolean(&mut self, value: bool) {
        self.separate();
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// A whole number, below 2^53 as every JSON reader holds it exactly.
    pub fn integer(&mut self, n: u64) -> Result<(), CanonicalError> {
        if n > MAX_SAFE_INTEGER {
            return Err(CanonicalError(n.to_string()));
        }
        self.separate();
        push_uint(&mut self.out, u128::from(n));
        Ok(())
    }

    /// Members named by arbitrary text (not fixed names in their order), sorted as RFC 8785
    /// §3.2.3 sorts them.
    pub fn sorted_members<'m>(&mut self, members: impl IntoIterator<Item = (&'m str, String)>) -> Result<(), CanonicalError> {
        let mut members: Vec<(&str, String)> = members.into_iter().collect();
        members.sort_by(|a, b| member_order(a.0, b.0));
        self.object(|w| {
            for (name, value) in &members {
                w.key(name);
                w.string(value);
            }
            Ok(())
        })
    }
}

/// RFC 8785 §3.2.2.2: the ECMAScript JSON.stringify escaping.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    // Nearly every string (ids, amounts, digests) needs no escape: copied whole.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if u32::from(c) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes()),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Appends the decimal digits of an unsigned integer (the hot paths avoid `fmt`). Values that fit
/// 64 bits, nearly all of them, skip the slow 128-bit division.
pub fn push_uint(out: &mut Vec<u8>, n: u128) {
    let mut digits = [0u8; 39];
    let mut at = digits.len();
    let mut push = |d: u8| {
        at -= 1;
        digits[at] = b'0' + d;
    };
    match u64::try_from(n) {
        Ok(mut small) => loop {
            push(u8::try_from(small % 10).unwrap_or(0));
            small /= 10;
            if small == 0 {
                break;
            }
        },
        Err(_) => {
            let mut big = n;
            loop {
                push(u8::try_from(big % 10).unwrap_or(0));
                big /= 10;
                if big == 0 {
                    break;
                }
            }
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `sha256:<lowercase hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        to_canonical(v).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn golden_bytes() {
        let v = json!({"b": [1, "two", true, null], "a": {"z": "\u{1}\n\"é€", "y": -3}, "": 0});
        assert_eq!(canon(&v), "{\"\":0,\"a\":{\"y\":-3,\"z\":\"\\u0001\\n\\\"é€\"},\"b\":[1,\"two\",true,null]}");
    }

    #[test]
    fn sorts_by_utf16_code_units() {
        // RFC 8785 §3.2.3's example: U+FB33 sorts after U+1F600 in UTF-16 but before it in UTF-8.
        let v = json!({"\u{fb33}": 1, "\u{1f600}": 2, "\r": 3, "1": 4});
        assert_eq!(canon(&v), "{\"\\r\":3,\"1\":4,\"\u{1f600}\":2,\"\u{fb33}\":1}");
    }

    #[test]
    fn refuses_unsafe_numbers() {
        assert_eq!(canon(&json!(9_007_199_254_740_991u64)), "9007199254740991");
        assert!(canon(&json!(9_007_199_254_740_992u64)).contains("cannot be canonicalised"));
        assert!(canon(&json!(0.5)).contains("cannot be canonicalised"));
    }

    #[test]
    fn digests_are_prefixed_sha256() {
        assert_eq!(digest(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
