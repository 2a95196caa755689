//! The bundle's keys (`keys.json`) as claims, each checked against a logged `key` leaf, and
//! the statement's signatures, counted only when by a trusted deployment key or the host's key.

use serde_json::Value;

use crate::note::VerifierKey;
use crate::transparency::{Signed, from_b64, registration_message, rotation_message, statement_message};

use super::log::{Leaf, Leaves};
use super::{Run, kind_of, shorten, show};

/// The keys of keys.json that parsed, by role.
#[derive(Default)]
pub(super) struct Keys {
    pub(super) deployment: Vec<VerifierKey>,
    pub(super) host: Vec<VerifierKey>,
}

impl Keys {
    pub(super) fn role_of(&self, key: &VerifierKey) -> Option<Role> {
        if self.deployment.contains(key) {
            Some(Role::Deployment)
        } else if self.host.contains(key) {
            Some(Role::Host)
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Deployment,
    Host,
}

pub(super) const KEYS_SHAPE: &str = r#"a JSON object {"deployment": ["<verifier key>", …], "host": ["<verifier key>", …]}"#;
pub(super) const KEY_SHAPE: &str = "a verifier key `<name>+<key id>+<base64 of 0x01 ‖ public key>`";

impl Run {
    pub(super) fn keys(&mut self, bytes: &[u8]) -> Keys {
        let mut keys = Keys::default();
        match serde_json::from_slice::<Value>(bytes) {
            Err(e) => self.find("keys.json", KEYS_SHAPE, format!("not valid JSON: {e}")),
            Ok(Value::Object(members)) => {
                for (role, value) in &members {
                    let list = match role.as_str() {
                        "deployment" => &mut keys.deployment,
                        "host" => &mut keys.host,
                        other => {
                            self.find("keys.json", "members `deployment` and `host` only", format!("member `{other}`"));
                            continue;
                        }
                    };
                    let Value::Array(items) = value else {
                        self.find(format!("keys.json {role}"), "an array of verifier keys", kind_of(value));
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        let what = format!("keys.json {role}[{i}]");
                        match item.as_str().map(VerifierKey::parse) {
                            None => self.find(what, KEY_SHAPE, kind_of(item)),
                            Some(Err(e)) => self.find(what, KEY_SHAPE, e.to_string()),
                            Some(Ok(key)) if list.contains(&key) => self.find(what, "each key once", format!("{} again", key.to_text())),
                            Some(Ok(key)) => list.push(key),
                        }
                    }
                }
            }
            Ok(other) => self.find("keys.json", KEYS_SHAPE, kind_of(&other)),
        }
        if keys.deployment.is_empty() {
            self.find("keys.json deployment", "at least one deployment key", "none");
        }
        keys
    }
}

impl Run {
    /// Every key of keys.json must be registered by a logged `key` leaf: the deployment's with
    /// party null, a host's with the agreement's host as party.
    pub(super) fn key_leaves(&mut self, keys: &Keys, leaves: &Leaves) {
        let host = leaves.agreement.as_ref().and_then(|l| l.str("host"));
        for (role, list) in [("deployment", &keys.deployment), ("host", &keys.host)] {
            for (i, key) in list.iter().enumerate() {
                let text = key.to_text();
                let logged: Vec<&Leaf> = leaves.keys.iter().filter(|l| l.str("key") == Some(text.as_str())).collect();
                let party_ok = |leaf: &&Leaf| match (role, leaf.value.get("party")) {
                    ("deployment", Some(Value::Null)) => true,
                    ("host", Some(Value::String(p))) => host.is_none_or(|h| h == p),
                    _ => false,
                };
                if !logged.iter().any(party_ok) {
                    let expected = match (role, host) {
                        ("deployment", _) => "a `key` leaf in log.json registering it for the deployment (party null)".to_owned(),
                        (_, Some(host)) => format!("a `key` leaf in log.json registering it for host {host}"),
                        (_, None) => "a `key` leaf in log.json registering it for the host".to_owned(),
                    };
                    let found = match logged.first() {
                        None => "none".to_owned(),
                        Some(leaf) => format!(
                            "leaf {} registering it for party {}",
                            leaf.index,
                            show(leaf.value.get("party").unwrap_or(&Value::Null))
                        ),
                    };
                    self.find(format!("keys.json {role}[{i}]"), expected, found);
                }
            }
        }
        if let Some(host) = host {
            self.host_key_chain(host, leaves);
        }
    }

    /// The host's keys in log order: the first registered by the operator, or by the host with a
    /// proof of possession (which must verify); every later one a rotation naming the key before
    /// it and signed by it. So no one but the host can add a host key that `verify` counts.
    fn host_key_chain(&mut self, host: &str, leaves: &Leaves) {
        let mut chain: Vec<&Leaf> = leaves.keys.iter().filter(|l| l.str("party") == Some(host)).collect();
        chain.sort_by_key(|l| l.index);
        let mut previous: Option<VerifierKey> = None;
        for leaf in chain {
            let what = leaf.what("key");
            let Some((text, key)) = leaf.str("key").and_then(|t| VerifierKey::parse(t).ok().map(|k| (t, k))) else {
                self.find(what, KEY_SHAPE, shorten(&show(leaf.value.get("key").unwrap_or(&Value::Null)), 120));
                continue;
            };
            let signature = |member: &str| leaf.str(member).and_then(from_b64).and_then(|b| <[u8; 64]>::try_from(b).ok());
            match &previous {
                None => {
                    if leaf.value.get("proof").is_some_and(|p| !p.is_null())
                        && signature("proof").is_none_or(|proof| key.verify(&registration_message(host, text), &proof).is_err())
                    {
                        let expected = format!("a proof of possession: {text}'s signature of its registration for {host}");
                        self.find(what, expected, "a proof that does not verify");
                    }
                }
                Some(before) => {
                    let replaces = leaf.str("replaces");
                    let signed = replaces == Some(before.to_text().as_str())
                        && signature("signature").is_some_and(|sig| before.verify(&rotation_message(Some(host), text), &sig).is_ok());
                    if !signed {
                        let expected = format!("a rotation of host {host}'s key signed by the key it replaces, {}", before.to_text());
                        let found = match replaces {
                            Some(named) if named == before.to_text() => "a signature that does not verify with that key".to_owned(),
                            Some(named) => format!("a key that replaces {}", shorten(named, 120)),
                            None => "a second first key".to_owned(),
                        };
                        self.find(what, expected, found);
                    }
                }
            }
            previous = Some(key);
        }
    }
}

pub(super) const SIGNATURES_SHAPE: &str = r#"[{"key": "<verifier key>", "signature": "<base64 of 64 bytes>"}, …]"#;

impl Run {
    pub(super) fn signatures(&mut self, bytes: &[u8], digest: &str, keys: &Keys) {
        let items = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Array(items)) => items,
            Ok(other) => {
                self.find("signatures.json", SIGNATURES_SHAPE, kind_of(&other));
                Vec::new()
            }
            Err(e) => {
                self.find("signatures.json", SIGNATURES_SHAPE, format!("not valid JSON: {e}"));
                Vec::new()
            }
        };
        let message = statement_message(digest);
        let mut deployment = 0u64;
        for (i, item) in items.iter().enumerate() {
            let what = format!("signatures.json[{i}]");
            let Some(signed) = Signed::from_json(item) else {
                self.find(what, r#"{"key": "<verifier key>", "signature": "<base64 of 64 bytes>"}"#, shorten(&item.to_string(), 160));
                continue;
            };
            let key = match VerifierKey::parse(&signed.key) {
                Ok(key) => key,
                Err(e) => {
                    self.find(what, KEY_SHAPE, e.to_string());
                    continue;
                }
            };
            let Some(role) = keys.role_of(&key) else {
                self.find(
                    what,
                    "a signature by a trusted deployment key or a host key of keys.json",
                    format!("a signature by {}", signed.key),
                );
                continue;
            };
            match key.verify(&message, &signed.signature) {
                Ok(()) => {
                    self.checked.signatures += 1;
                    match role {
                        Role::Deployment => deployment += 1,
                        Role::Host => self.checked.countersigned = true,
                    }
                }
                Err(e) => self.find(what, format!("a signature of the statement (digest {digest}) by {}", signed.key), e.to_string()),
            }
        }
        if deployment == 0 {
            self.find("signatures.json", "a valid signature of the statement by a trusted deployment key", "none");
        }
    }
}
