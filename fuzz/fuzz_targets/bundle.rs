//! Any bytes as a statement bundle. `bundle::verify` reads everything a bundle holds as untrusted
//! input: it must never panic, must give the same report twice, must never call a bundle anchored
//! when the verifier holds nothing, and every finding it writes must be safe to print (no control
//! characters, no part longer than the bound).
#![no_main]

use libfuzzer_sys::fuzz_target;
use revshare_core::bundle::{Bundle, MAX_FINDING_CHARS, VerifyOptions, verify};
use revshare_core::note::SignerKey;

fuzz_target!(|data: &[u8]| {
    // The files, separated by 0xFF (which UTF-8 never holds): statement, agreement, records,
    // aliases, log, keys, signatures, then batch digest files.
    let mut parts = data.split(|&b| b == 0xFF);
    let mut next = || parts.next().unwrap_or_default().to_vec();
    let bundle = Bundle {
        statement: next(),
        agreement: String::from_utf8_lossy(&next()).into_owned(),
        records: next(),
        aliases: next(),
        log: next(),
        keys: next(),
        signatures: next(),
        batches: (0u64..).zip(std::iter::from_fn(|| Some(next())).take(2)).collect(),
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
