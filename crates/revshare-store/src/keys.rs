//! Public keys: the parties' (a host signs its usage batches and countersigns statements) and the
//! deployment's (it signs checkpoints, receipts and statements). Registering one appends a `key`
//! leaf to the log. An owner's first key is registered by whoever holds the store (the operator)
//! or, for a party, by the party itself with a proof of possession; every later one is a
//! rotation, accepted only with the current key's signature of the new one, which its leaf
//! carries: that chain is what lets a verifier who trusts one key trust its successors, and
//! nothing else (SPEC §7). Keys are never removed, so every signature ever made can still be
//! checked; but only an owner's current key makes new ones ([`require_current`]).

use revshare_core::note::VerifierKey;
use revshare_core::transparency::{KeyOrigin, Signed, key_event, registration_message, rotation_message};

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

/// The owner's name in messages.
fn owner_name(party: Option<&str>) -> String {
    party.map_or_else(|| "the deployment".to_owned(), |p| format!("party {p}"))
}

/// The leaf of `text` when it is already registered for `party`; an error when it is someone
/// else's.
fn registered(sql: &mut impl Sql, party: Option<&str>, text: &str) -> Result<Option<u64>, StoreError> {
    let stored = first(sql, "SELECT party, leaf FROM signing_keys WHERE key = $1", &[Param::Text(text)], |row| {
        Ok((row.opt_text(0)?, unsigned::<u64>(row.int(1)?, || format!("leaf of key {text}"))?))
    })?;
    match stored {
        None => Ok(None),
        Some((owner, leaf)) if owner.as_deref() == party => Ok(Some(leaf)),
        // The owner is not named: the caller may be a party, and whose key it is is not its to learn.
        Some(_) => Err(StoreError::Signature(format!("key {text} is already registered to another owner; a key belongs to one owner"))),
    }
}

/// The owner's current key (its last registered), if any.
fn current(sql: &mut impl Sql, party: Option<&str>) -> Result<Option<RegisteredKey>, StoreError> {
    Ok(all(sql)?.into_iter().rev().find(|k| k.party.as_deref() == party))
}

/// Refuses a first key for an owner that has one: a later key is a rotation.
fn refuse_second(sql: &mut impl Sql, party: Option<&str>) -> Result<(), StoreError> {
    match current(sql, party)? {
        None => Ok(()),
        Some(current) => Err(StoreError::Signature(format!(
            "{} already has the key {}; a new one replaces it by a rotation signed with it ({})",
            owner_name(party),
            current.key.to_text(),
            if party.is_some() { "`revshare party key --rotate-with`, `POST /v1/keys`" } else { "`revshare keys rotate`" }
        ))),
    }
}

/// Registers a first key, by the operator (whoever holds the store); the same key for the same
/// owner again is a no-op returning its leaf.
pub(crate) fn add(sql: &mut impl Sql, party: Option<&str>, key: &VerifierKey) -> Result<u64, StoreError> {
    let text = key.to_text();
    if let Some(party) = party {
        registry::party(sql, party)?
            .ok_or_else(|| StoreError::UnknownParty { id: party.to_owned(), purpose: "the key's owner".to_owned() })?;
    }
    if let Some(leaf) = registered(sql, party, &text)? {
        return Ok(leaf);
    }
    refuse_second(sql, party)?;
    append(sql, party, key, KeyOrigin::Operator)
}

/// Registers a party's first key by the party itself, with the key's signature of
/// [`registration_message`] as proof that the party holds its private half.
pub(crate) fn register_own(sql: &mut impl Sql, party: &str, key: &VerifierKey, proof: &[u8; 64]) -> Result<u64, StoreError> {
    let text = key.to_text();
    if key.verify(&registration_message(party, &text), proof).is_err() {
        return Err(StoreError::Signature(format!(
            "the proof of possession does not verify with {text}: sign `revshare key registration v1\\n{party}\\n<key>\\n` with the \
             key being registered"
        )));
    }
    if let Some(leaf) = registered(sql, Some(party), &text)? {
        return Ok(leaf);
    }
    refuse_second(sql, Some(party))?;
    append(sql, Some(party), key, KeyOrigin::Possession(proof))
}

/// Replaces the owner's current key (`party` none: the deployment's) with `key`, endorsed by the
/// current key's signature of [`rotation_message`].
pub(crate) fn rotate(sql: &mut impl Sql, party: Option<&str>, key: &VerifierKey, endorsement: &Signed) -> Result<u64, StoreError> {
    let text = key.to_text();
    let owner = owner_name(party);
    let current = current(sql, party)?.ok_or_else(|| {
        StoreError::Signature(match party {
            None => "the deployment has no signing key to rotate; `revshare init` registers the first".to_owned(),
            Some(p) => {
                format!("party {p} has no key to rotate; register its first key (`revshare party key`, `POST /v1/keys` with a proof)")
            }
        })
    })?;
    if current.key == *key {
        return Err(StoreError::Signature(format!("{text} is already the current key of {owner}")));
    }
    let endorsed =
        endorsement.key == current.key.to_text() && current.key.verify(&rotation_message(party, &text), &endorsement.signature).is_ok();
    if !endorsed {
        return Err(StoreError::Signature(format!(
            "a rotation to {text} must be signed by the current key of {owner}, {}; the signature given is by {} and does not verify \
             with it",
            current.key.to_text(),
            endorsement.key
        )));
    }
    if registered(sql, party, &text)?.is_some() {
        return Err(StoreError::Signature(format!("key {text} is already registered; a rotation brings a new key")));
    }
    append(sql, party, key, KeyOrigin::Rotation(endorsement))
}

/// A party's current key must have made a new signature: a replaced key signs nothing more.
pub(crate) fn require_current(sql: &mut impl Sql, party: &str, key: &VerifierKey, purpose: &str) -> Result<(), StoreError> {
    let keys = of_party(sql, party)?;
    match keys.last() {
        Some(last) if last == key => Ok(()),
        Some(last) if keys.contains(key) => Err(StoreError::Signature(format!(
            "key {} of {party} was replaced by {}; {purpose} with the current key",
            key.to_text(),
            last.to_text()
        ))),
        _ => Err(StoreError::Signature(format!(
            "key {} is not registered for {party}; register it with `revshare party key` or `POST /v1/keys`",
            key.to_text()
        ))),
    }
}

/// Logs a key's leaf and records it.
fn append(sql: &mut impl Sql, party: Option<&str>, key: &VerifierKey, origin: KeyOrigin<'_>) -> Result<u64, StoreError> {
    let text = key.to_text();
    let data = key_event(party, &text, origin).map_err(|e| StoreError::Log(e.to_string()))?;
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
