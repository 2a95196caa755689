//! Public keys: the parties' (a host signs its usage batches and countersigns statements) and the
//! deployment's (it signs checkpoints, receipts and statements). Registering one appends a `key`
//! leaf to the log. The deployment's first key is registered by whoever holds the store (the
//! operator); every later one is a rotation, accepted only with the current key's signature of
//! the new one, which its leaf carries: that chain is what lets a verifier who trusts one key
//! trust its successors, and nothing else (SPEC §7). Keys are never removed, so every signature
//! ever made can still be checked.

use revshare_core::note::VerifierKey;
use revshare_core::transparency::{Signed, key_event, rotation_message};

use crate::error::StoreError;
use crate::log::{self, LogLeaf};
use crate::registry;
use crate::sql::{Param, Sql, first, rows, unsigned};

/// A registered key: whose (`None`: the deployment's), and its leaf in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisteredKey {
    pub party: Option<String>,
    pub key: VerifierKey,
    pub leaf: u64,
}

fn parse(text: &str) -> Result<VerifierKey, StoreError> {
    VerifierKey::parse(text).map_err(|e| StoreError::Corrupt { what: format!("signing key {text}"), detail: e.to_string() })
}

/// Registers a key; the same key for the same owner again is a no-op returning its leaf.
pub(crate) fn add(sql: &mut impl Sql, party: Option<&str>, key: &VerifierKey) -> Result<u64, StoreError> {
    let text = key.to_text();
    if let Some(party) = party {
        registry::party(sql, party)?
            .ok_or_else(|| StoreError::UnknownParty { id: party.to_owned(), purpose: "the key's owner".to_owned() })?;
    }
    let stored = first(sql, "SELECT party, leaf FROM signing_keys WHERE key = $1", &[Param::Text(&text)], |row| {
        Ok((row.opt_text(0)?, unsigned::<u64>(row.int(1)?, || format!("leaf of key {text}"))?))
    })?;
    if let Some((owner, leaf)) = stored {
        if owner.as_deref() == party {
            return Ok(leaf);
        }
        let owner = owner.map_or_else(|| "the deployment".to_owned(), |p| format!("party {p}"));
        return Err(StoreError::Signature(format!("key {text} is already registered for {owner}; a key belongs to one owner")));
    }
    if party.is_none()
        && let Some(current) = deployment(sql)?.last()
    {
        return Err(StoreError::Signature(format!(
            "the deployment already has the signing key {}; a new one replaces it by a rotation signed with it (`revshare keys rotate`)",
            current.key.to_text()
        )));
    }
    append(sql, party, key, None)
}

/// Replaces the deployment's current key with `key`, endorsed by the current key's signature.
pub(crate) fn rotate(sql: &mut impl Sql, key: &VerifierKey, endorsement: &Signed) -> Result<u64, StoreError> {
    let text = key.to_text();
    let current = deployment(sql)?.pop().ok_or_else(|| {
        StoreError::Signature("the deployment has no signing key to rotate; `revshare init` registers the first".to_owned())
    })?;
    if current.key == *key {
        return Err(StoreError::Signature(format!("{text} is already the deployment's current key")));
    }
    let endorsed =
        endorsement.key == current.key.to_text() && current.key.verify(&rotation_message(None, &text), &endorsement.signature).is_ok();
    if !endorsed {
        return Err(StoreError::Signature(format!(
            "a rotation to {text} must be signed by the current deployment key {}; the signature given is by {} and does not verify with it",
            current.key.to_text(),
            endorsement.key
        )));
    }
    if first(sql, "SELECT leaf FROM signing_keys WHERE key = $1", &[Param::Text(&text)], |row| row.int(0))?.is_some() {
        return Err(StoreError::Signature(format!("key {text} is already registered; a rotation brings a new key")));
    }
    append(sql, None, key, Some(endorsement))
}

/// Logs a key's leaf and records it.
fn append(sql: &mut impl Sql, party: Option<&str>, key: &VerifierKey, rotation: Option<&Signed>) -> Result<u64, StoreError> {
    let text = key.to_text();
    let data = key_event(party, &text, rotation).map_err(|e| StoreError::Log(e.to_string()))?;
    let subject = format!("key:{}", party.unwrap_or(""));
    let leaf = log::append(sql, &[LogLeaf::new("key", subject, data)?])?;
    let leaf_column = i64::try_from(leaf).map_err(|_| StoreError::Log(format!("the log is full at {leaf} leaves")))?;
    sql.execute(
        "INSERT INTO signing_keys (key, party, leaf) VALUES ($1, $2, $3)",
        &[Param::Text(&text), Param::OptText(party), Param::Int(leaf_column)],
    )?;
    Ok(leaf)
}

/// Every registered key, in the order registered.
pub(crate) fn all(sql: &mut impl Sql) -> Result<Vec<RegisteredKey>, StoreError> {
    rows(sql, "SELECT party, key, leaf FROM signing_keys ORDER BY leaf", &[], |row| {
        let text = row.text(1)?;
        Ok(RegisteredKey { party: row.opt_text(0)?, key: parse(&text)?, leaf: unsigned(row.int(2)?, || format!("leaf of key {text}"))? })
    })
}

/// A party's keys.
pub(crate) fn of_party(sql: &mut impl Sql, party: &str) -> Result<Vec<VerifierKey>, StoreError> {
    rows(sql, "SELECT key FROM signing_keys WHERE party = $1 ORDER BY leaf", &[Param::Text(party)], |row| parse(&row.text(0)?))
}

/// The deployment's keys, oldest first; the last is the current one.
pub(crate) fn deployment(sql: &mut impl Sql) -> Result<Vec<RegisteredKey>, StoreError> {
    Ok(all(sql)?.into_iter().filter(|k| k.party.is_none()).collect())
}
