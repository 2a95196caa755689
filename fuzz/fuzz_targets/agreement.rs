//! Any bytes: if they are UTF-8, parse them as an agreement file. Parsing and rendering the
//! diagnostics must never panic, whatever the spans of the problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revshare_core::agreement::parse_agreement;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_agreement("fuzz.toml", text) {
        Ok(agreement) => {
            let _ = agreement.digest();
        }
        Err(errors) => {
            assert!(!errors.problems.is_empty(), "an error without a problem");
            let _ = errors.render_plain();
        }
    }
});
