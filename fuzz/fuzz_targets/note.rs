//! Any bytes as a signed note, a checkpoint, a verifier key and a signer key: nothing may panic.
//!
//! Round trips hold for whatever parses: a checkpoint's `body()` is the text it was read from,
//! a parsed key reads back from its `to_text()`, and a text that `sign_note` accepts opens again
//! with the signer's verifier key to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revshare_core::note::{Checkpoint, NoteError, SignerKey, VerifierKey, open_note, sign_note};

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = VerifierKey::parse(text) {
        assert_eq!(VerifierKey::parse(&key.to_text()).as_ref(), Ok(&key), "a verifier key does not read back");
    }
    if let Ok(key) = SignerKey::parse(text) {
        assert_eq!(SignerKey::parse(&key.to_text()).map(|k| k.verifier()), Ok(key.verifier()), "a signer key does not read back");
    }
    if let Ok(checkpoint) = Checkpoint::parse(text) {
        assert_eq!(checkpoint.body(), text, "a checkpoint's body is not the text it was read from");
    }
    let Ok(peter) = VerifierKey::parse(PETER_VKEY) else {
        panic!("the reference key does not parse");
    };
    match open_note(text, &[peter]) {
        Ok(note) => {
            assert!(!note.verified.is_empty(), "a note opened without a verified signature");
            assert!(note.text.ends_with('\n') && text.starts_with(&note.text), "the text is not the start of the note");
            let _ = Checkpoint::parse(&note.text);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let Ok(signer) = SignerKey::from_seed("fuzz.example/signer", [7; 32]) else {
        panic!("a fixed signer key is refused");
    };
    match sign_note(text, &[&signer]) {
        Ok(signed) => match open_note(&signed, &[signer.verifier()]) {
            Ok(note) => assert_eq!(note.text, text, "a signed note opens to another text"),
            Err(e) => panic!("a note sign_note made does not open: {e}\n{signed:?}"),
        },
        Err(NoteError::TooLong { .. } | NoteError::Control { .. } | NoteError::EmptyText | NoteError::TextEnd { .. }) => {}
        Err(e) => panic!("sign_note refused a text for an unexpected reason: {e}"),
    }
});
