//! Consistency proofs: those the bundle carries, and the log's consistency with a checkpoint the
//! verifier kept (by one of them, or by a proof it fetched).

use serde_json::Value;

use crate::merkle::{Hash, verify_consistency};
use crate::note::{Checkpoint, open_note};
use crate::transparency::{b64, hash_from_b64};

use super::keys::Keys;
use super::log::LogJson;
use super::{Run, VerifyOptions, shorten, str_member};

impl Run {
    /// Checks every consistency proof the bundle carries and, given a kept checkpoint
    /// (`options.since`), that the bundle's log extends it: by one of those proofs, or by the
    /// proof the verifier fetched (`options.consistency`). Returns the kept checkpoint once proven.
    pub(super) fn consistency(
        &mut self,
        log: &LogJson,
        checkpoint: Option<&Checkpoint>,
        keys: &Keys,
        options: &VerifyOptions<'_>,
    ) -> Option<Checkpoint> {
        let signer = "a deployment key of keys.json";
        let mut known = keys.deployment.clone();
        known.extend(options.trusted.iter().filter(|key| !keys.deployment.contains(key)).cloned());
        // Every consistency proof in the bundle is checked; `since` then needs one from its size.
        let mut proven: Vec<(u64, Hash)> = Vec::new();
        for (i, entry) in log.consistency.iter().enumerate() {
            let what = format!("log.json consistency[{i}]");
            let Some((from, _)) = self.open_checkpoint(&what, &entry.from, &known, signer) else { continue };
            let (Some(proof), Some(to)) = (&entry.proof, checkpoint) else { continue };
            match verify_consistency(from.size, to.size, &from.root, &to.root, proof) {
                Ok(()) => {
                    self.checked.consistency += 1;
                    proven.push((from.size, from.root));
                }
                Err(e) => self.find(what, format!("a consistency proof from size {} to size {}", from.size, to.size), e.to_string()),
            }
        }
        let since = options.since?;
        let (old, _) =
            self.open_checkpoint("since checkpoint", since, &known, "a deployment key of keys.json or one named with --trust")?;
        let new = checkpoint?;
        if old.origin != new.origin {
            self.find("since checkpoint origin", format!("{} (the bundle's log)", new.origin), &old.origin);
            return None;
        }
        if old.size > new.size {
            self.find("since checkpoint", format!("a size at most the bundle's checkpoint size {}", new.size), old.size.to_string());
            return None;
        }
        if old.size == new.size {
            if old.root == new.root {
                return Some(old);
            }
            let (a, b) = (b64(&new.root), b64(&old.root));
            self.find(
                "since checkpoint",
                format!("root {a} of the bundle's checkpoint at the same size {}", new.size),
                format!("root {b}"),
            );
            return None;
        }
        if old.size == 0 || proven.contains(&(old.size, old.root)) {
            return Some(old);
        }
        if let Some(fetched) = options.consistency {
            return self.fetched_consistency(fetched, &old, new).then_some(old);
        }
        // Nothing proven from that tree: maybe the bundle holds a proof from another tree of
        // that size (a rewritten log); show why it fails.
        let other = log.consistency.iter().find_map(|entry| {
            let opened = open_note(&entry.from, &known).ok()?;
            let from = Checkpoint::parse(&opened.text).ok()?;
            (from.size == old.size).then_some((from, entry.proof.clone()))
        });
        match other {
            None => self.find(
                "log.json consistency",
                format!("a consistency proof from the since checkpoint (size {}) to size {}", old.size, new.size),
                format!(
                    "no consistency proof from size {} in the bundle; fetch one with `revshare log consistency --from {} --to {}` \
                     (or GET /v1/log/consistency?from={}&to={}) and pass it with --consistency",
                    old.size, old.size, new.size, old.size, new.size
                ),
            ),
            Some((from, proof)) => {
                let why = proof
                    .map(|p| verify_consistency(old.size, new.size, &old.root, &new.root, &p))
                    .and_then(Result::err)
                    .map_or_else(String::new, |e| format!(": {e}"));
                self.find(
                    "since checkpoint",
                    format!("the root of the bundle's log at size {} ({})", old.size, b64(&from.root)),
                    format!("root {}, which the bundle's log does not extend{why}", b64(&old.root)),
                );
            }
        }
        None
    }

    /// A consistency proof the verifier fetched, from the kept checkpoint `old` to the bundle's
    /// `new`: its sizes and roots must be those two checkpoints', and the proof must verify.
    pub(super) fn fetched_consistency(&mut self, text: &str, old: &Checkpoint, new: &Checkpoint) -> bool {
        const SHAPE: &str = r#"{"from": <size>, "to": <size>, "from_root": "<base64>", "to_root": "<base64>", "consistency_proof": [...]}"#;
        let what = "--consistency";
        let value = match serde_json::from_str::<Value>(text) {
            Ok(value) => value,
            Err(e) => {
                self.find(what, SHAPE, format!("not valid JSON: {e}"));
                return false;
            }
        };
        let size = |key: &str| value.get(key).and_then(Value::as_u64);
        let root = |key: &str| str_member(&value, key).and_then(hash_from_b64);
        let (Some(from), Some(to), Some(from_root), Some(to_root)) = (size("from"), size("to"), root("from_root"), root("to_root")) else {
            self.find(what, SHAPE, shorten(&value.to_string(), 160));
            return false;
        };
        let Some(proof) = self.proof(what, value.get("consistency_proof")) else { return false };
        let mut good = true;
        for (name, found, expected, checkpoint) in [
            ("from", (from, from_root), (old.size, old.root), "the --since checkpoint's"),
            ("to", (to, to_root), (new.size, new.root), "the bundle's checkpoint's"),
        ] {
            if found != expected {
                self.find(
                    format!("{what} {name}"),
                    format!("{checkpoint} size {} and root {}", expected.0, b64(&expected.1)),
                    format!("size {} and root {}", found.0, b64(&found.1)),
                );
                good = false;
            }
        }
        if !good {
            return false;
        }
        match verify_consistency(old.size, new.size, &old.root, &new.root, &proof) {
            Ok(()) => {
                self.checked.consistency += 1;
                true
            }
            Err(e) => {
                self.find(what, format!("a consistency proof from size {} to size {}", old.size, new.size), e.to_string());
                false
            }
        }
    }
}
