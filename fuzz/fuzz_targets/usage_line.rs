//! Any bytes as one JSON Lines usage record. A record that parses must survive a round trip
//! through its canonical form as the same record with the same digest: canonical form → input
//! line → record.
//!
//! The canonical form writes counts as strings (they may exceed 2^53) while an input line must
//! write them as JSON integers (SPEC §3), so the canonical bytes are turned back into an input
//! line by unquoting the three counts; everything else is fed back as written.
//!
//! It also holds the fast path of `parse_json_line` to the general reader: both must accept the
//! same lines with the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revshare_core::json::{JsonValue, parse_object};
use revshare_core::usage::{parse_json_line, parse_json_line_generic};

fuzz_target!(|data: &[u8]| {
    assert_eq!(parse_json_line(data).ok(), parse_json_line_generic(data).ok(), "the fast path and the general reader disagree");
    let Ok(record) = parse_json_line(data) else {
        return;
    };
    let mut canonical = Vec::new();
    record.write_canonical(&mut canonical);
    let members = match parse_object(&canonical) {
        Ok(m) => m,
        Err(e) => panic!("the canonical form is not JSON ({e} at {}): {}", e.offset, String::from_utf8_lossy(&canonical)),
    };
    let mut line = String::from("{");
    for (i, member) in members.iter().enumerate() {
        let JsonValue::String(value) = &member.value else {
            panic!("canonical member `{}` is not a string: {}", member.key, String::from_utf8_lossy(&canonical));
        };
        if i > 0 {
            line.push(',');
        }
        match member.key.as_ref() {
            "requests" | "input_tokens" | "output_tokens" => line.push_str(&format!("\"{}\":{value}", member.key)),
            _ => line.push_str(&format!("\"{}\":\"{value}\"", member.key)),
        }
    }
    line.push('}');
    match parse_json_line(line.as_bytes()) {
        Ok(again) => {
            // Equal digests alone would miss two different records sharing one canonical form.
            assert_eq!(record, again, "the round trip changed the record; canonical: {}", String::from_utf8_lossy(&canonical));
            assert_eq!(record.digest(), again.digest(), "the round trip changed the digest");
        }
        Err(problems) => panic!(
            "the canonical form does not parse back:\n  canonical: {}\n  problems:  {:?}",
            String::from_utf8_lossy(&canonical),
            problems
        ),
    }
});
