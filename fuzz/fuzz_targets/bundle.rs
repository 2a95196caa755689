//! Any bytes as a statement bundle. `bundle::verify` reads everything a bundle holds as untrusted
//! input: it must never panic, must give the same report twice, must never call a bundle anchored
//! when the verifier holds nothing, and every finding it writes must be safe to print (no control
//! characters, no part longer than the bound).
#![no_main]

use libfuzzer_sys::fuzz_target;
use revshare_core::bundle::{Bundle, MAX_FINDING_CHARS, RestatedMonth, VerifyOptions, verify};
use revshare_core::note::SignerKey;

fuzz_target!(|data: &[u8]| {
    // The files, separated by 0xFF (which UTF-8 never holds): statement, agreement, records,
    // the records' salts in hex, aliases, log, keys, signatures, two batch files in hex (binary
    // salts and commitments would hold the separator), a restated month's period and its two
    // statements, then a checkpoint note the verifier holds.
    let mut parts = data.split(|&b| b == 0xFF);
    let mut next = || parts.next().unwrap_or_default().to_vec();
    let bundle = Bundle {
        statement: next(),
        agreement: String::from_utf8_lossy(&next()).into_owned(),
        records: next(),
        salts: from_hex(&next()),
        aliases: next(),
        log: next(),
        keys: next(),
        signatures: next(),
        batches: (0u64..).zip(std::iter::from_fn(|| Some(from_hex(&next()))).take(2)).collect(),
        restated: vec![RestatedMonth { period: String::from_utf8_lossy(&next()).into_owned(), before: next(), after: next() }],
        // Last, so the seeds written before it keep their meaning; none is no lineage.
        models: Some(next()).filter(|m| !m.is_empty()).unwrap_or_else(|| b"[]".to_vec()),
    };
    let alone = verify(&bundle, &VerifyOptions::default());
    assert!(!alone.ok(), "nothing held, nothing anchored");
    assert_eq!(alone, verify(&bundle, &VerifyOptions::default()), "the same bundle, the same report");
    let key = SignerKey::from_seed("revshare.local/log", [7; 32]).map(|k| k.verifier());
    if let Ok(key) = key {
        let note = String::from_utf8_lossy(&next()).into_owned();
        let options = VerifyOptions { trusted: std::slice::from_ref(&key), since: Some(&note), consistency: Some(&note) };
        let report = verify(&bundle, &options);
        for finding in alone.findings.iter().chain(&report.findings) {
            for part in [&finding.what, &finding.expected, &finding.found] {
                assert!(!part.chars().any(char::is_control), "a control character in {part:?}");
                assert!(part.chars().count() <= MAX_FINDING_CHARS + 1, "{} characters", part.chars().count());
            }
        }
    }
});

/// Pairs of hex digits as bytes; anything else is skipped.
fn from_hex(text: &[u8]) -> Vec<u8> {
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    text.chunks_exact(2).filter_map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}
