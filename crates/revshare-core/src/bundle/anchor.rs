//! Trust anchors (SPEC §7): which deployment keys the verifier's own trust reaches.
//!
//! A bundle brings its keys (`keys.json`) and the log's key leaves, and none of them is trusted
//! because the bundle says so: whoever forges a bundle writes those too. Trust starts from what
//! the verifier holds — keys it names ([`super::VerifyOptions::trusted`], `--trust`) and the keys
//! logged before a checkpoint it kept ([`super::VerifyOptions::since`], once that checkpoint is
//! proven to be a prefix of the bundle's log) — and follows the deployment's rotation leaves in
//! log order, each taken only when signed by the key it replaces
//! ([`crate::transparency::rotation_message`]). The bundle's checkpoint and the statement's
//! deployment signature must be by a key so reached. Without anything the verifier holds, every
//! other check still runs against the keys the bundle lists, and the report says it is not
//! anchored, which is not a pass.

use serde_json::Value;

use crate::note::{Checkpoint, VerifierKey};
use crate::transparency::{from_b64, rotation_message};

use super::keys::Keys;
use super::log::{Leaf, Leaves};
use super::{Run, show};

/// What a report's result rests on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Anchor {
    /// Nothing the verifier holds was given, or it reaches no key that signed the checkpoint: the
    /// bundle was checked only against the keys it brings, which shows that it agrees with itself
    /// and nothing more.
    #[default]
    NotAnchored,
    /// The checkpoint is signed by `key`, which the verifier's trust reaches as `how` says.
    Anchored {
        /// The deployment key's text.
        key: String,
        /// How it is trusted: named, logged before the kept checkpoint, or rotated to.
        how: String,
    },
}

/// A deployment key the verifier's trust reaches, and how.
struct Reached {
    key: VerifierKey,
    how: String,
}

impl Run {
    /// The deployment keys the verifier's trust reaches, and the anchor: the first of them that
    /// signed the checkpoint (`signers`; `None` when the checkpoint did not open, which is
    /// reported already). With nothing given (`anchored` false) the keys are those the bundle
    /// lists, and the report is not anchored.
    pub(super) fn anchor(
        &mut self,
        listed: &Keys,
        leaves: &Leaves,
        trusted: &[VerifierKey],
        since: Option<&Checkpoint>,
        anchored: bool,
        signers: Option<&[VerifierKey]>,
    ) -> (Vec<VerifierKey>, Anchor) {
        if !anchored {
            return (listed.deployment.clone(), Anchor::NotAnchored);
        }
        let mut reached: Vec<Reached> =
            trusted.iter().map(|key| Reached { key: key.clone(), how: "named with --trust".to_owned() }).collect();
        let mut refused: Vec<(String, String)> = Vec::new();
        let mut deployment: Vec<&Leaf> =
            leaves.keys.iter().filter(|leaf| leaf.proven && leaf.value.get("party") == Some(&Value::Null)).collect();
        deployment.sort_by_key(|leaf| leaf.index);
        for leaf in deployment {
            let Some(text) = leaf.str("key") else { continue };
            let Ok(key) = VerifierKey::parse(text) else { continue };
            if reached.iter().any(|r| r.key == key) {
                continue;
            }
            if let Some(since) = since.filter(|since| leaf.index < since.size) {
                let how = format!("logged at leaf {}, before the kept checkpoint of size {}", leaf.index, since.size);
                reached.push(Reached { key, how });
                continue;
            }
            match rotation(leaf, text, &reached) {
                Ok(how) => reached.push(Reached { key, how }),
                Err(why) => refused.push((text.to_owned(), why)),
            }
        }
        let Some(signers) = signers else {
            return (reached.into_iter().map(|r| r.key).collect(), Anchor::NotAnchored);
        };
        let anchor = match signers.iter().find_map(|signer| reached.iter().find(|r| r.key == *signer)) {
            Some(found) => Anchor::Anchored { key: found.key.to_text(), how: found.how.clone() },
            None => {
                let names: Vec<String> = reached.iter().map(|r| r.key.to_text()).collect();
                let expected = format!(
                    "a checkpoint signed by a deployment key the verifier trusts ({}): named with --trust, logged before the \
                     --since checkpoint, or rotated to from one of those by a leaf signed with the key it replaces",
                    if names.is_empty() { "none reached".to_owned() } else { names.join(", ") }
                );
                let found = match signers.first() {
                    None => "no signature by any key the bundle lists or the verifier trusts".to_owned(),
                    Some(signer) => {
                        let text = signer.to_text();
                        let why = refused
                            .iter()
                            .find(|(key, _)| *key == text)
                            .map_or_else(|| "a key registered by no deployment key leaf of log.json".to_owned(), |(_, why)| why.clone());
                        format!("signed by {text}: {why}")
                    }
                };
                self.find("log.json checkpoint", expected, found);
                Anchor::NotAnchored
            }
        };
        (reached.into_iter().map(|r| r.key).collect(), anchor)
    }
}

/// Whether a deployment key leaf is a rotation from a reached key, signed by it: how, or why not.
fn rotation(leaf: &Leaf, text: &str, reached: &[Reached]) -> Result<String, String> {
    let index = leaf.index;
    let Some(old) = leaf.str("replaces") else {
        return Err(format!(
            "leaf {index} registers it as a first key, which is trusted only when named with --trust or logged before the --since checkpoint"
        ));
    };
    let Some(from) = reached.iter().find(|r| r.key.to_text() == old) else {
        return Err(format!("leaf {index} rotates to it from {old}, a key the verifier's trust does not reach"));
    };
    let signature = leaf.value.get("signature").and_then(Value::as_str).and_then(from_b64);
    match signature {
        None => Err(format!(
            "leaf {index} rotates to it from {old} without that key's signature (found {})",
            show(leaf.value.get("signature").unwrap_or(&Value::Null))
        )),
        Some(signature) => match from.key.verify(&rotation_message(None, text), &signature) {
            Ok(()) => Ok(format!("rotated to at leaf {index}, signed by {old}")),
            Err(e) => Err(format!("leaf {index} rotates to it from {old}, and its signature does not verify with that key: {e}")),
        },
    }
}
