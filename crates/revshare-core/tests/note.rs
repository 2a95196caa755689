//! Signed notes, note keys and checkpoints against the reference vectors of the Go implementation
//! and the C2SP examples, plus round trips, tampering and refusals.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use revshare_core::merkle::{self, MemoryCells};
use revshare_core::note::{self, Checkpoint, KeyError, MAX_SIGNATURES, Note, NoteError, SignatureError, SignerKey, VerifierKey};

// ---------------------------------------------------------------------------------------------
// golang.org/x/mod, sumdb/note/note_test.go (TestNewVerifier, TestNewSigner, TestSign, TestOpen).
// ---------------------------------------------------------------------------------------------

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter() -> VerifierKey {
    VerifierKey::parse(PETER_VKEY).unwrap()
}

fn enoch() -> VerifierKey {
    VerifierKey::parse(ENOCH_VKEY).unwrap()
}

fn note_of(sigs: &[&str]) -> String {
    format!("{TEXT}\n{}", sigs.concat())
}

#[test]
fn go_reference_keys() {
    let v = peter();
    assert_eq!(v.name(), "PeterNeumann");
    assert_eq!(v.key_id(), 0xc74f20a3);
    assert_eq!(v.to_text(), PETER_VKEY);
    let s = SignerKey::parse(PETER_SKEY).unwrap();
    assert_eq!(s.name(), "PeterNeumann");
    assert_eq!(s.key_id(), 0xc74f20a3);
    assert_eq!(s.to_text(), PETER_SKEY);
    assert_eq!(s.verifier(), v);
    assert_eq!(enoch().key_id(), 0xaf0cfe78);
}

#[test]
fn go_reference_signature_is_reproduced_byte_for_byte() {
    let signer = SignerKey::parse(PETER_SKEY).unwrap();
    assert_eq!(note::sign_note(TEXT, &[&signer]).unwrap(), note_of(&[PETER_SIG]));
}

#[test]
fn go_reference_manglings_are_refused() {
    // TestNewVerifier / TestNewSigner: every proper substring and every byte + 1 is refused.
    for key in [PETER_VKEY, PETER_SKEY] {
        let parse = |text: &str| if key == PETER_VKEY { VerifierKey::parse(text).map(|_| ()) } else { SignerKey::parse(text).map(|_| ()) };
        assert!(parse(key).is_ok());
        for i in 0..=key.len() {
            for j in i + 1..=key.len() {
                if (i, j) != (0, key.len()) {
                    assert!(parse(&key[i..j]).is_err(), "{:?} was accepted", &key[i..j]);
                }
            }
        }
        let mut b = key.as_bytes().to_vec();
        for i in 0..b.len() {
            b[i] += 1;
            let mangled = String::from_utf8(b.clone()).unwrap();
            assert!(parse(&mangled).is_err(), "{mangled:?} was accepted");
            b[i] -= 1;
        }
    }
    // Wrong length key and unknown algorithm, each with an adjusted key id.
    // (Go's lenient base64 reads `BADKEY==` as 4 bytes; the strict decoder here refuses the
    // non-zero padding bits of `Y==` first.)
    let err = VerifierKey::parse("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==").unwrap_err();
    assert_eq!(err, KeyError::Base64);
    let short = format!("PeterNeumann+c74f20a3+{}", STANDARD.encode([[1u8].as_slice(), &[7; 31]].concat()));
    let err = VerifierKey::parse(&short).unwrap_err();
    assert_eq!(err, KeyError::Length { found: 32 });
    assert_eq!(err.to_string(), "the key material decodes to 32 bytes; an Ed25519 key is 33: the algorithm byte 0x01 and 32 key bytes");
    let long = format!("PeterNeumann+c74f20a3+{}", STANDARD.encode([[1u8].as_slice(), &[7; 37]].concat()));
    assert_eq!(VerifierKey::parse(&long).unwrap_err(), KeyError::Length { found: 38 });
    assert_eq!(VerifierKey::parse("PeterNeumann+c74f20a3+").unwrap_err(), KeyError::Length { found: 0 });
    let err = VerifierKey::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap_err();
    assert_eq!(err, KeyError::Algorithm { found: 0x65 });
    assert_eq!(err.to_string(), "the key's algorithm byte is 0x65; only 0x01 (Ed25519) is supported");
}

#[test]
fn key_refusals_say_what_is_wrong() {
    let err = VerifierKey::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T!").unwrap_err();
    assert_eq!(err, KeyError::Base64);
    assert!(err.to_string().contains("not standard padded base64"));
    let err = VerifierKey::parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap_err();
    assert_eq!(err, KeyError::IdMismatch { name: "PeterNeumann".into(), stated: 0xc74f20a4, computed: 0xc74f20a3 });
    assert!(
        err.to_string().starts_with("key id c74f20a4 does not belong to this key: for name \"PeterNeumann\" and this key it is c74f20a3")
    );
    let err = VerifierKey::parse("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap_err();
    assert_eq!(err.to_string(), "key id \"c74f20a\" is not valid: expected 8 hexadecimal digits");
    let err = VerifierKey::parse("PeterNeumann").unwrap_err();
    assert!(err.to_string().contains("is not a verifier key: expected `<name>+<key id: 8 hex digits>+"), "{err}");
    assert_eq!(VerifierKey::parse(PETER_SKEY).unwrap_err(), KeyError::IsSignerKey);
    assert!(matches!(SignerKey::parse(PETER_VKEY), Err(KeyError::SignerShape { .. })));
    assert!(matches!(
        VerifierKey::parse("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(KeyError::Name { .. })
    ));
    assert!(matches!(SignerKey::from_seed("", [7; 32]), Err(KeyError::Name { .. })));
    assert!(matches!(SignerKey::from_seed("a+b", [7; 32]), Err(KeyError::Name { .. })));
    assert!(matches!(SignerKey::from_seed("a\u{a0}b", [7; 32]), Err(KeyError::Name { .. })));
    // A public key of small order (the identity point) is refused.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(matches!(VerifierKey::new("weak", identity), Err(KeyError::PublicKey { .. })));
}

#[test]
fn signer_errors_and_debug_never_show_the_secret() {
    let s = SignerKey::parse(PETER_SKEY).unwrap();
    let debug = format!("{s:?}");
    assert!(debug.contains("PeterNeumann") && debug.contains("c74f20a3"), "{debug}");
    assert!(!debug.contains("AYEKFALV") && !debug.contains("secret"), "{debug}");
    let material = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    for bad in ["PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "PRIVATE+KEY+AYEKFALVFGyNhPJEMzD1QIDr"] {
        let err = SignerKey::parse(bad).unwrap_err();
        assert!(!err.to_string().contains(&material[..8]), "{err}");
        assert!(!format!("{err:?}").contains(&material[..8]), "{err:?}");
    }
}

#[test]
fn go_reference_open() {
    // One signature verified, one by an unknown key.
    let n = note::open_note(&note_of(&[PETER_SIG, ENOCH_SIG]), &[peter()]).unwrap();
    assert_eq!(n, Note { text: TEXT.into(), verified: vec!["PeterNeumann".into()], others: vec![("EnochRoot".into(), 0xaf0cfe78)] });
    // Both verified.
    let n = note::open_note(&note_of(&[PETER_SIG, ENOCH_SIG]), &[peter(), enoch()]).unwrap();
    assert_eq!(n.verified, ["PeterNeumann", "EnochRoot"]);
    assert!(n.others.is_empty());
    // Neither known.
    let err = note::open_note(&note_of(&[PETER_SIG, ENOCH_SIG]), &[]).unwrap_err();
    assert_eq!(err, NoteError::Unverified { signers: vec!["PeterNeumann+c74f20a3".into(), "EnochRoot+af0cfe78".into()] });
    assert_eq!(
        err.to_string(),
        "no signature is by a known key: the note is signed by PeterNeumann+c74f20a3, EnochRoot+af0cfe78; add the signer's verifier key to the known keys"
    );
    // The same key twice in the known list is one key.
    assert!(note::open_note(&note_of(&[ENOCH_SIG]), &[enoch(), peter(), enoch()]).is_ok());
    // Too many signatures.
    let many = note_of(&vec![PETER_SIG; MAX_SIGNATURES + 1]);
    assert_eq!(note::open_note(&many, &[peter()]), Err(NoteError::TooManySignatures { line: 4 + MAX_SIGNATURES, max: MAX_SIGNATURES }));
    assert_eq!(note::open_note(&many, &[]), Err(NoteError::TooManySignatures { line: 4 + MAX_SIGNATURES, max: MAX_SIGNATURES }));
    assert!(note::open_note(&note_of(&vec![PETER_SIG; MAX_SIGNATURES]), &[peter()]).is_ok());
    // Invalid signature by a known key.
    let bad_peter = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    let err = note::open_note(&note_of(&[&bad_peter]), &[peter()]).unwrap_err();
    assert_eq!(err, NoteError::BadSignature { line: 4, key: "PeterNeumann+c74f20a3".into() });
    assert!(err.to_string().starts_with("line 4: the signature by known key PeterNeumann+c74f20a3 does not verify"));
    // Repeated signatures are reported once; an unknown key's signatures are not checked.
    let bad_enoch = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
    let n = note::open_note(&note_of(&[PETER_SIG, PETER_SIG, ENOCH_SIG, ENOCH_SIG, &bad_enoch]), &[peter()]).unwrap();
    assert_eq!(n.verified, ["PeterNeumann"]);
    assert_eq!(n.others, [("EnochRoot".to_string(), 0xaf0cfe78)]);
    // Every signature line by a known key is checked, not only the first.
    assert!(matches!(note::open_note(&note_of(&[PETER_SIG, &bad_peter]), &[peter()]), Err(NoteError::BadSignature { line: 5, .. })));
}

#[test]
fn go_reference_malformed_notes() {
    let peter_line = PETER_SIG.trim_end_matches('\n');
    let cases: [(String, NoteError); 6] = [
        (TEXT.to_string(), NoteError::NoSeparator),
        (format!("{TEXT}\n"), NoteError::NoSignatures { line: 3 }),
        (format!("{TEXT}\n{peter_line}"), NoteError::SignatureEnd { line: 4 }),
        (format!("\x01{TEXT}\n{PETER_SIG}"), NoteError::Control { line: 1, code: 1 }),
        (
            format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
            NoteError::SignatureBase64 { line: 4, name: "Bad".into() },
        ),
        (format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"), NoteError::SignatureLine { line: 5, found: "Unexpected line.".into() }),
    ];
    for (msg, want) in cases {
        assert_eq!(note::open_note(&msg, &[peter()]), Err(want), "{msg:?}");
    }
    let err = note::open_note(&format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"), &[peter()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 5: \"Unexpected line.\" is not a signature line; expected `— <key name> <base64 signature>` (em dash U+2014, space, key name, space, signature)"
    );
    let err = note::open_note(&format!("{TEXT}\n— PeterNeumann AAAA\n"), &[peter()]).unwrap_err();
    assert_eq!(err, NoteError::SignatureShort { line: 4, name: "PeterNeumann".into(), len: 3 });
    let err = note::open_note(&format!("{TEXT}\n— +x AAAAAAAA\n"), &[peter()]).unwrap_err();
    assert_eq!(err, NoteError::KeyName { line: 4, name: "+x".into() });
    let err = note::open_note(&format!("a\nb\tc\n\n{PETER_SIG}"), &[peter()]).unwrap_err();
    assert_eq!(err.to_string(), "line 2: control character U+0009; a note may contain no control characters other than newline (U+000A)");
}

#[test]
fn tampering_with_any_byte_is_detected() {
    let signed = note_of(&[PETER_SIG]);
    let mut bytes = signed.clone().into_bytes();
    for i in 0..bytes.len() {
        for flip in [0x01, 0x20] {
            bytes[i] ^= flip;
            if let Ok(tampered) = std::str::from_utf8(&bytes) {
                assert!(note::open_note(tampered, &[peter()]).is_err(), "byte {i} ^ {flip:#x} went unnoticed: {tampered:?}");
            }
            bytes[i] ^= flip;
        }
    }
    assert!(note::open_note(&signed, &[peter()]).is_ok());
}

#[test]
fn round_trips() {
    let alice = SignerKey::from_seed("example.com/alice", [1; 32]).unwrap();
    let bob = SignerKey::from_seed("example.com/bob", [2; 32]).unwrap();
    assert_eq!(SignerKey::parse(&alice.to_text()).unwrap().to_text(), alice.to_text());
    assert_eq!(VerifierKey::parse(&alice.verifier().to_text()).unwrap(), alice.verifier());
    let vk = alice.verifier();
    assert_eq!(VerifierKey::new(vk.name(), vk.public_key()).unwrap(), vk);

    let sig = alice.sign(b"hello");
    assert_eq!(alice.verifier().verify(b"hello", &sig), Ok(()));
    assert_eq!(
        alice.verifier().verify(b"hellO", &sig),
        Err(SignatureError::Invalid { key: format!("example.com/alice+{:08x}", alice.key_id()) })
    );
    assert_eq!(alice.verifier().verify(b"hello", &sig[..63]), Err(SignatureError::Length { found: 63 }));

    for text in ["x\n", "\n", "a\n\nb\n", "a\n\n", "— x y\n", "ünïcödé ✓\n"] {
        let signed = note::sign_note(text, &[&alice, &bob]).unwrap();
        let opened = note::open_note(&signed, &[bob.verifier()]).unwrap();
        assert_eq!(opened.text, text);
        assert_eq!(opened.verified, ["example.com/bob"]);
        assert_eq!(opened.others, [("example.com/alice".to_string(), alice.key_id())]);
    }
    assert_eq!(note::sign_note("no newline", &[&alice]), Err(NoteError::TextEnd { line: 1 }));
    assert_eq!(note::sign_note("", &[&alice]), Err(NoteError::EmptyText));
    assert_eq!(note::sign_note("a\rb\n", &[&alice]), Err(NoteError::Control { line: 1, code: 13 }));
    assert_eq!(note::sign_note("a\n", &[]), Err(NoteError::NoSigners));
}

// ---------------------------------------------------------------------------------------------
// Checkpoints. The example is from C2SP/C2SP, tlog-checkpoint.md; the signed-note example (with a
// blank line inside its text) from C2SP/C2SP, signed-note.md. Their keys are not published, so
// they open as notes signed by unknown keys.
// ---------------------------------------------------------------------------------------------

const C2SP_CHECKPOINT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
const C2SP_NOTE: &str = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";

#[test]
fn c2sp_examples() {
    let err = note::open_note(C2SP_CHECKPOINT, &[peter()]).unwrap_err();
    assert_eq!(err, NoteError::Unverified { signers: vec!["example.com/behind-the-sofa+033de0ae".into()] });
    let err = note::open_note(C2SP_NOTE, &[]).unwrap_err();
    assert_eq!(err, NoteError::Unverified { signers: vec!["quasimodo.example/salvatore+367ba04b".into()] });

    let body = &C2SP_CHECKPOINT[..C2SP_CHECKPOINT.find("\n\n").unwrap() + 1];
    let cp = Checkpoint::parse(body).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(revshare_core::canonical::hex(&cp.root), "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62");
    assert!(cp.extensions.is_empty());
    assert_eq!(cp.body(), body);
}

#[test]
fn signed_checkpoint_of_a_log() {
    let leaves: Vec<_> = (0u32..37).map(|i| merkle::leaf_hash(&i.to_be_bytes())).collect();
    let log = MemoryCells::from_leaves(&leaves);
    let key = SignerKey::from_seed("revshare.example/log", [9; 32]).unwrap();
    let cp = Checkpoint { origin: "revshare.example/log".into(), size: log.size(), root: log.root(), extensions: vec!["ext one".into()] };
    let signed = note::sign_note(&cp.body(), &[&key]).unwrap();
    let opened = note::open_note(&signed, &[key.verifier()]).unwrap();
    assert_eq!(Checkpoint::parse(&opened.text).unwrap(), cp);
    let empty = Checkpoint { origin: "o".into(), size: 0, root: merkle::EMPTY_ROOT, extensions: vec![] };
    assert_eq!(Checkpoint::parse(&empty.body()).unwrap(), empty);
}

#[test]
fn checkpoint_refusals() {
    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    let cases: Vec<(String, NoteError)> = vec![
        ("origin\n5\n".into(), NoteError::CheckpointLines { found: 2 }),
        (format!("\n5\n{root}\n"), NoteError::Origin),
        (format!("o\n05\n{root}\n"), NoteError::Size { found: "05".into() }),
        (format!("o\n+5\n{root}\n"), NoteError::Size { found: "+5".into() }),
        (format!("o\n-1\n{root}\n"), NoteError::Size { found: "-1".into() }),
        (format!("o\n\n{root}\n"), NoteError::Size { found: "".into() }),
        (format!("o\n18446744073709551616\n{root}\n"), NoteError::Size { found: "18446744073709551616".into() }),
        ("o\n5\nAAAA\n".into(), NoteError::Root { found: "AAAA".into() }),
        (
            "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".into(),
            NoteError::Root { found: "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I".into() },
        ),
        (format!("o\n5\n{root}\next\n\n"), NoteError::Extension { line: 5 }),
        (format!("o\n5\n{root}"), NoteError::TextEnd { line: 3 }),
        (format!("o\n5\n{root}\n\x7f\x1b\n"), NoteError::Control { line: 4, code: 0x1b }),
    ];
    for (text, want) in cases {
        assert_eq!(Checkpoint::parse(&text), Err(want), "{text:?}");
    }
    assert_eq!(
        Checkpoint::parse("o\n05\nAAAA\n").unwrap_err().to_string(),
        "line 2: \"05\" is not a tree size; expected a decimal number below 2^64 without leading zeros (`0` for the empty tree)"
    );
    assert_eq!(Checkpoint::parse(&format!("o\n18446744073709551615\n{root}\n")).unwrap().size, u64::MAX);
}
