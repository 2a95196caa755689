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
            // RFC 8785 §3.2.3: members sorted by the UTF-16 code units of their names.
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
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

/// RFC 8785 §3.2.2.2: the ECMAScript JSON.stringify escaping.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
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
