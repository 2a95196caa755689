//! C2SP signed notes (<https://c2sp.org/signed-note>), their Ed25519 keys in the
//! `golang.org/x/mod/sumdb/note` text formats, and C2SP tlog checkpoints
//! (<https://c2sp.org/tlog-checkpoint>).
//!
//! A note is a UTF-8 text ending in a newline, a blank line, and one line per signature:
//! `— <key name> <base64(key id ‖ signature)>` (em dash U+2014, space). The key id of an Ed25519
//! key is the first four bytes (big-endian) of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`.
//! Keys are written `name+hhhhhhhh+base64(0x01 ‖ public key)` (verifier) and
//! `PRIVATE+KEY+name+hhhhhhhh+base64(0x01 ‖ seed)` (signer).
//!
//! Opening a note follows the specification and the Go reference: signatures by unknown keys are
//! reported, not checked; a signature by a known key (same name and key id) must verify or the
//! whole note is refused; at least one must verify. Unlike the Go reference, every signature line
//! by a known key is checked, not only its first one. Signatures use `verify_strict` (no small
//! order keys or `R` values) and keys must be canonical encodings of points that are not of small
//! order.

use crate::merkle::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

/// The signature type byte of Ed25519 keys (C2SP signed-note).
pub const ALG_ED25519: u8 = 0x01;
/// The most signature lines a note may have (the Go reference's limit).
pub const MAX_SIGNATURES: usize = 100;
/// The most bytes a note (text and signatures) may have.
pub const MAX_NOTE_LEN: usize = 1 << 20;
/// How a signer key's text starts.
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";
/// How a signature line starts: em dash, space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// What a signature line looks like, for error messages.
const SIGNATURE_SHAPE: &str = "`— <key name> <base64 signature>` (em dash U+2014, space, key name, space, signature)";

/// Why a key could not be made or read. Messages never include secret key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key name is empty or has a `+` or whitespace.
    #[error("key name {name:?} is not valid: a key name must be non-empty, with no `+` and no whitespace")]
    Name {
        /// The name as given.
        name: String,
    },
    /// A verifier key's text does not have the three `+`-separated parts.
    #[error("{shown:?} is not a verifier key: expected `<name>+<key id: 8 hex digits>+<base64 of 0x01 ‖ 32-byte public key>`")]
    VerifierShape {
        /// The text (public), shortened.
        shown: String,
    },
    /// A signer key's text does not have its parts (the text is not repeated: it may be secret).
    #[error("not a signer key: expected `PRIVATE+KEY+<name>+<key id: 8 hex digits>+<base64 of 0x01 ‖ 32-byte seed>`; {problem}")]
    SignerShape {
        /// What is missing.
        problem: &'static str,
    },
    /// A signer key was given where a verifier key belongs.
    #[error("this is a signer key (it starts with `PRIVATE+KEY+`) and is secret; give the verifier key `<name>+<key id>+<base64>` instead")]
    IsSignerKey,
    /// The key id is not 8 hex digits.
    #[error("key id {found:?} is not valid: expected 8 hexadecimal digits")]
    KeyId {
        /// The key id text.
        found: String,
    },
    /// The key material is not base64.
    #[error("the key material after the key id is not standard padded base64 (RFC 4648 §4, no whitespace)")]
    Base64,
    /// The decoded key has the wrong length.
    #[error("the key material decodes to {found} bytes; an Ed25519 key is 33: the algorithm byte 0x01 and 32 key bytes")]
    Length {
        /// Decoded bytes.
        found: usize,
    },
    /// The algorithm byte is not Ed25519's.
    #[error("the key's algorithm byte is 0x{found:02x}; only 0x01 (Ed25519) is supported")]
    Algorithm {
        /// The algorithm byte found.
        found: u8,
    },
    /// The key id does not belong to the name and key.
    #[error(
        "key id {stated:08x} does not belong to this key: for name {name:?} and this key it is {computed:08x} (SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4])"
    )]
    IdMismatch {
        /// The key name.
        name: String,
        /// The key id written in the text.
        stated: u32,
        /// The key id of the name and key.
        computed: u32,
    },
    /// The public key is not a usable Ed25519 key.
    #[error("the public key is not usable for Ed25519: {reason}")]
    PublicKey {
        /// Why.
        reason: &'static str,
    },
}

/// Why a signature does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature is not 64 bytes.
    #[error("an Ed25519 signature is 64 bytes; this one is {found}")]
    Length {
        /// The signature's length.
        found: usize,
    },
    /// The signature does not verify.
    #[error("the signature does not verify with key {key}: the message was changed or another key signed it")]
    Invalid {
        /// `name+keyid` of the key.
        key: String,
    },
}

/// Why a note could not be signed or opened, or a checkpoint read. Lines count from 1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note (or text) is too large.
    #[error("the note is {len} bytes; at most {max} are accepted")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A control character other than newline.
    #[error("line {line}: control character U+{code:04X}; a note may contain no control characters other than newline (U+000A)")]
    Control {
        /// The line it is on.
        line: usize,
        /// Its code point.
        code: u32,
    },
    /// The text is empty.
    #[error("the text is empty; a note's text is one or more lines, each ending in a newline (U+000A)")]
    EmptyText,
    /// The text does not end in a newline.
    #[error("line {line}: the text does not end in a newline (U+000A); a note's text must")]
    TextEnd {
        /// The last line.
        line: usize,
    },
    /// No blank line separates the text from signatures.
    #[error(
        "the note has no blank line before its signatures; a signed note is its text (ending in a newline), a blank line, then one line {SIGNATURE_SHAPE} per signature"
    )]
    NoSeparator,
    /// Nothing follows the blank line.
    #[error(
        "line {line}: the blank line separating the text from the signatures is the last line; at least one signature line {SIGNATURE_SHAPE} must follow"
    )]
    NoSignatures {
        /// The blank line.
        line: usize,
    },
    /// The last signature line has no newline.
    #[error("line {line}: the last signature line does not end in a newline (U+000A)")]
    SignatureEnd {
        /// The last line.
        line: usize,
    },
    /// A line after the blank line is not a signature line.
    #[error("line {line}: {found:?} is not a signature line; expected {SIGNATURE_SHAPE}")]
    SignatureLine {
        /// The line.
        line: usize,
        /// Its text, shortened.
        found: String,
    },
    /// A signature line's key name is not valid.
    #[error("line {line}: {name:?} is not a key name; a key name is non-empty, with no `+` and no whitespace")]
    KeyName {
        /// The line.
        line: usize,
        /// The name, shortened.
        name: String,
    },
    /// A signature is not base64.
    #[error("line {line}: the signature by {name} is not standard padded base64 (RFC 4648 §4)")]
    SignatureBase64 {
        /// The line.
        line: usize,
        /// The key name.
        name: String,
    },
    /// A signature is too short to hold a key id and a signature.
    #[error("line {line}: the signature by {name} decodes to {len} bytes; it needs a 4-byte key id and at least one signature byte")]
    SignatureShort {
        /// The line.
        line: usize,
        /// The key name.
        name: String,
        /// Decoded bytes.
        len: usize,
    },
    /// Too many signatures.
    #[error("line {line}: signature number {}; a note may have at most {max} signatures", .max + 1)]
    TooManySignatures {
        /// The line of the first signature over the limit (0 when signing).
        line: usize,
        /// The limit.
        max: usize,
    },
    /// A signature by a known key does not verify.
    #[error(
        "line {line}: the signature by known key {key} does not verify; the note was changed after signing, or another key with this name and id signed it"
    )]
    BadSignature {
        /// The line.
        line: usize,
        /// `name+keyid`.
        key: String,
    },
    /// Two different known keys share a name and key id.
    #[error("line {line}: two different known keys are {key}; each name and key id must identify one key")]
    AmbiguousKey {
        /// The line of the signature that matched both.
        line: usize,
        /// `name+keyid`.
        key: String,
    },
    /// No signature is by a known key.
    #[error("no signature is by a known key: the note is signed by {}; add the signer's verifier key to the known keys", .signers.join(", "))]
    Unverified {
        /// `name+keyid` of each signer.
        signers: Vec<String>,
    },
    /// `sign_note` was given no signers.
    #[error("a note needs at least one signature; give at least one signer key")]
    NoSigners,
    /// A checkpoint has fewer than three lines.
    #[error("a checkpoint has at least 3 lines (origin, tree size, root hash); this text has {found}")]
    CheckpointLines {
        /// Lines found.
        found: usize,
    },
    /// A checkpoint's origin is empty.
    #[error("line 1: the checkpoint origin is empty; it names the log, e.g. `example.com/log`")]
    Origin,
    /// A checkpoint's size is not a canonical decimal.
    #[error("line 2: {found:?} is not a tree size; expected a decimal number below 2^64 without leading zeros (`0` for the empty tree)")]
    Size {
        /// The line, shortened.
        found: String,
    },
    /// A checkpoint's root is not base64 of 32 bytes.
    #[error("line 3: {found:?} is not a root hash; expected the standard padded base64 of 32 bytes (44 characters ending in `=`)")]
    Root {
        /// The line, shortened.
        found: String,
    },
    /// A checkpoint extension line is empty.
    #[error("line {line}: empty extension line; the lines after the root hash must be non-empty")]
    Extension {
        /// The line.
        line: usize,
    },
}

/// The first 60 characters of untrusted text, printable, for error messages.
fn shorten(text: &str) -> String {
    crate::text::printable(text, 60)
}

/// C2SP key name rules: non-empty, no `+`, no (Unicode) whitespace.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`, big-endian.
fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALG_ED25519]);
    hasher.update(public);
    let digest: [u8; 32] = hasher.finalize().into();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Splits `name+hhhhhhhh+base64` into its checked name, key id and decoded 32 key bytes (after the
/// algorithm byte).
fn parse_key_parts(name: &str, id_hex: &str, material: &str) -> Result<(u32, [u8; 32]), KeyError> {
    if !valid_name(name) {
        return Err(KeyError::Name { name: shorten(name) });
    }
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::KeyId { found: shorten(id_hex) });
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| KeyError::KeyId { found: shorten(id_hex) })?;
    let bytes = STANDARD.decode(material).map_err(|_| KeyError::Base64)?;
    match bytes.split_first() {
        None => Err(KeyError::Length { found: 0 }),
        Some((&alg, _)) if alg != ALG_ED25519 => Err(KeyError::Algorithm { found: alg }),
        Some((_, key)) => <[u8; 32]>::try_from(key).map(|key| (id, key)).map_err(|_| KeyError::Length { found: bytes.len() }),
    }
}

/// A public key as a verifier: a curve point, canonically encoded, not of small order.
fn verifying_key(public: &[u8; 32]) -> Result<VerifyingKey, KeyError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| KeyError::PublicKey { reason: "the 32 bytes are not a point on the curve" })?;
    if key.to_edwards().compress().to_bytes() != *public {
        return Err(KeyError::PublicKey { reason: "the point is not canonically encoded" });
    }
    if key.is_weak() {
        return Err(KeyError::PublicKey { reason: "the point has small order (a weak key)" });
    }
    Ok(key)
}

/// A named Ed25519 signing key. `Debug` shows the name and key id, never the secret.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    id: u32,
    key: SigningKey,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerKey").field("name", &self.name).field("key_id", &format_args!("{:08x}", self.id)).finish_non_exhaustive()
    }
}

impl SignerKey {
    /// The signer of `name` with this Ed25519 seed (the 32-byte RFC 8032 private key).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::Name { name: shorten(name) });
        }
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(SignerKey { name: name.to_string(), id, key })
    }

    /// Reads `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`, checking the key id.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let rest = text.strip_prefix(PRIVATE_PREFIX).ok_or(KeyError::SignerShape { problem: "it does not start with `PRIVATE+KEY+`" })?;
        let (name, rest) = rest.split_once('+').ok_or(KeyError::SignerShape { problem: "there is no `+` after the name" })?;
        let (id_hex, material) = rest.split_once('+').ok_or(KeyError::SignerShape { problem: "there is no `+` after the key id" })?;
        let (stated, seed) = parse_key_parts(name, id_hex, material)?;
        let signer = SignerKey::from_seed(name, seed)?;
        if signer.id != stated {
            return Err(KeyError::IdMismatch { name: name.to_string(), stated, computed: signer.id });
        }
        Ok(signer)
    }

    /// `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`: secret.
    pub fn to_text(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(ALG_ED25519);
        material.extend_from_slice(self.key.as_bytes());
        format!("{PRIVATE_PREFIX}{}+{:08x}+{}", self.name, self.id, STANDARD.encode(&material))
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The Ed25519 signature of `msg` (deterministic, RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

/// A named Ed25519 public key.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// The verifier of `name` with this 32-byte Ed25519 public key.
    pub fn new(name: &str, public: [u8; 32]) -> Result<Self, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::Name { name: shorten(name) });
        }
        let key = verifying_key(&public)?;
        Ok(VerifierKey { name: name.to_string(), id: key_id(name, &public), key })
    }

    /// Reads `<name>+<key id>+<base64(0x01 ‖ public key)>`, checking the key id.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.starts_with(PRIVATE_PREFIX) {
            return Err(KeyError::IsSignerKey);
        }
        let shape = || KeyError::VerifierShape { shown: shorten(text) };
        let (name, rest) = text.split_once('+').ok_or_else(shape)?;
        let (id_hex, material) = rest.split_once('+').ok_or_else(shape)?;
        let (stated, public) = parse_key_parts(name, id_hex, material)?;
        let verifier = VerifierKey::new(name, public)?;
        if verifier.id != stated {
            return Err(KeyError::IdMismatch { name: name.to_string(), stated, computed: verifier.id });
        }
        Ok(verifier)
    }

    /// `<name>+<key id>+<base64(0x01 ‖ public key)>`.
    pub fn to_text(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(ALG_ED25519);
        material.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(&material))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id: `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`, big-endian.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Checks an Ed25519 signature of `msg` with `verify_strict`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
        let bytes = <[u8; 64]>::try_from(sig).map_err(|_| SignatureError::Length { found: sig.len() })?;
        self.key
            .verify_strict(msg, &Signature::from_bytes(&bytes))
            .map_err(|_| SignatureError::Invalid { key: format!("{}+{:08x}", self.name, self.id) })
    }
}

/// Checks what every note text must be: non-empty, at most [`MAX_NOTE_LEN`] bytes, no control
/// characters but newline, ending in a newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.len() > MAX_NOTE_LEN {
        return Err(NoteError::TooLong { len: text.len(), max: MAX_NOTE_LEN });
    }
    check_controls(text)?;
    if text.is_empty() {
        return Err(NoteError::EmptyText);
    }
    if !text.ends_with('\n') {
        return Err(NoteError::TextEnd { line: text.split('\n').count() });
    }
    Ok(())
}

fn check_controls(text: &str) -> Result<(), NoteError> {
    let mut line = 1;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        } else if u32::from(c) < 0x20 {
            return Err(NoteError::Control { line, code: u32::from(c) });
        }
    }
    Ok(())
}

/// Signs `text` (a UTF-8 text ending in a newline) with each signer, in order: the text, a blank
/// line, and one signature line per signer.
pub fn sign_note(text: &str, signers: &[&SignerKey]) -> Result<String, NoteError> {
    check_text(text)?;
    if signers.is_empty() {
        return Err(NoteError::NoSigners);
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures { line: 0, max: MAX_SIGNATURES });
    }
    let mut note = String::with_capacity(text.len() + 1 + signers.len() * 110);
    note.push_str(text);
    note.push('\n');
    for signer in signers {
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&signer.id.to_be_bytes());
        blob.extend_from_slice(&signer.sign(text.as_bytes()));
        note.push_str(SIGNATURE_PREFIX);
        note.push_str(&signer.name);
        note.push(' ');
        note.push_str(&STANDARD.encode(&blob));
        note.push('\n');
    }
    if note.len() > MAX_NOTE_LEN {
        return Err(NoteError::TooLong { len: note.len(), max: MAX_NOTE_LEN });
    }
    Ok(note)
}

/// An opened note: its text, who verifiably signed it, and who else signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The text, ending in a newline (the separating blank line is not part of it).
    pub text: String,
    /// Names of the known keys whose signatures verified, each once, in note order.
    pub verified: Vec<String>,
    /// `(name, key id)` of signatures by unknown keys, each once, in note order: not checked.
    pub others: Vec<(String, u32)>,
}

/// Opens a signed note: checks its form and every signature by a key in `known` (matched by
/// name and key id). Fails if any such signature does not verify, or if none is there.
pub fn open_note(note: &str, known: &[VerifierKey]) -> Result<Note, NoteError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(NoteError::TooLong { len: note.len(), max: MAX_NOTE_LEN });
    }
    check_controls(note)?;
    let split = note.rfind("\n\n").ok_or(NoteError::NoSeparator)?;
    let text = &note[..split + 1];
    let signatures = &note[split + 2..];
    // The blank line is line `blank`; signature lines follow it.
    let blank = text.matches('\n').count() + 1;
    if signatures.is_empty() {
        return Err(NoteError::NoSignatures { line: blank });
    }
    let Some(signatures) = signatures.strip_suffix('\n') else {
        return Err(NoteError::SignatureEnd { line: blank + signatures.split('\n').count() });
    };
    let mut opened = Note { text: text.to_string(), verified: Vec::new(), others: Vec::new() };
    for (i, sig_line) in signatures.split('\n').enumerate() {
        let line = blank + 1 + i;
        if i >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { line, max: MAX_SIGNATURES });
        }
        let bad_line = || NoteError::SignatureLine { line, found: shorten(sig_line) };
        let rest = sig_line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(bad_line)?;
        let (name, b64) = rest.split_once(' ').ok_or_else(bad_line)?;
        if !valid_name(name) {
            return Err(NoteError::KeyName { line, name: shorten(name) });
        }
        let blob = STANDARD.decode(b64).map_err(|_| NoteError::SignatureBase64 { line, name: name.to_string() })?;
        let (id, sig) = match blob.split_first_chunk::<4>() {
            Some((id, sig)) if !sig.is_empty() => (u32::from_be_bytes(*id), sig),
            _ => return Err(NoteError::SignatureShort { line, name: name.to_string(), len: blob.len() }),
        };
        let key_name = || format!("{name}+{id:08x}");
        let mut matching = known.iter().filter(|k| k.name == name && k.id == id);
        let Some(key) = matching.next() else {
            if !opened.others.iter().any(|(n, i)| n == name && *i == id) {
                opened.others.push((name.to_string(), id));
            }
            continue;
        };
        if matching.any(|other| other.key != key.key) {
            return Err(NoteError::AmbiguousKey { line, key: key_name() });
        }
        key.verify(text.as_bytes(), sig).map_err(|_| NoteError::BadSignature { line, key: key_name() })?;
        if !opened.verified.iter().any(|n| n == name) {
            opened.verified.push(name.to_string());
        }
    }
    if opened.verified.is_empty() {
        return Err(NoteError::Unverified { signers: opened.others.iter().map(|(n, i)| format!("{n}+{i:08x}")).collect() });
    }
    Ok(opened)
}

/// A C2SP tlog checkpoint: the note text naming a log's tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity (line 1), e.g. `example.com/log`.
    pub origin: String,
    /// The number of leaves (line 2).
    pub size: u64,
    /// The RFC 6962 root at `size` (line 3, base64).
    pub root: Hash,
    /// Extension lines, opaque, each non-empty (no newline).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: origin, size, base64 root and extension lines, each ending in a newline.
    /// Only a checkpoint whose origin and extensions are non-empty single lines without control
    /// characters gives a body that [`Checkpoint::parse`] reads back.
    pub fn body(&self) -> String {
        let mut body = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root));
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        body
    }

    /// Reads a checkpoint from a note text (as [`Note::text`] gives it: ending in a newline).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        check_text(text)?;
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(NoteError::CheckpointLines { found: lines.len() });
        };
        if origin.is_empty() {
            return Err(NoteError::Origin);
        }
        let size_error = || NoteError::Size { found: shorten(size) };
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(size_error());
        }
        let size: u64 = size.parse().map_err(|_| size_error())?;
        let root_error = || NoteError::Root { found: shorten(root) };
        let root = STANDARD.decode(root).map_err(|_| root_error()).and_then(|bytes| Hash::try_from(bytes).map_err(|_| root_error()))?;
        if let Some(i) = extensions.iter().position(|e| e.is_empty()) {
            return Err(NoteError::Extension { line: i + 4 });
        }
        Ok(Checkpoint { origin: origin.to_string(), size, root, extensions: extensions.iter().map(|e| e.to_string()).collect() })
    }
}
