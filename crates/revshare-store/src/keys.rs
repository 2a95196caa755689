//! Public keys: the parties' (a host signs its usage batches and countersigns statements) and the
//! deployment's (it signs checkpoints, receipts and statements). Registering one appends a `key`
//! leaf to the log; a deployment key registered after another is a rotation and its leaf names the
//! key it replaces. Keys are never removed, so every signature ever made can still be checked.

use revshare_core::note::VerifierKey;
use revshare_core::transparency::key_leaf;

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
    let replaces = match party {
        Some(_) => None,
        None => deployment(sql)?.last().map(|k| k.key.to_text()),
    };
    let data = key_leaf(party, &text, replaces.as_deref()).map_err(|e| StoreError::Log(e.to_string()))?;
    let subject = format!("key:{}", party.unwrap_or(""));
    let leaf = log::append(sql, &[LogLeaf::new("key", subject, data)])?;
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
