//! The API's bearer tokens (SPEC §9): who a caller is, and in which role.
//!
//! A token is 32 random bytes that its holder sends; the store keeps only their SHA-256, so a
//! copy of the database lets nobody call the API. A token acts for one registered party in that
//! party's registered role (a token cannot make a host an auditor). Tokens are never changed or
//! deleted, only revoked, and a revoked token stays revoked (a trigger holds both), so what a
//! token could do is always known afterwards. The operator's tokens (SPEC §1: it registers
//! parties, tokens and grants) act for no party: they are kept apart, in `operator_tokens`, and
//! read back as acting for [`OPERATOR`] in [`Role::Operator`]. Comparing the hash a caller's token gives with the
//! stored one in constant time is the server's job; the store finds the row by the hash.

use revshare_core::ids::PartyId;

use crate::error::StoreError;
use crate::registry::{OPERATOR, Role, require_role};
use crate::sql::{Columns, Param, Sql, first};

/// A token as stored: never the token itself, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    pub id: String,
    pub party: PartyId,
    pub role: Role,
    pub hash: [u8; 32],
    pub revoked: bool,
}

/// Whether `id` can name a token: 1 to 64 of `a-z 0-9 _ -`.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn read(row: &dyn Columns) -> Result<StoredToken, StoreError> {
    let id = row.text(0)?;
    let corrupt = |detail: String| StoreError::Corrupt { what: format!("token `{id}`"), detail };
    let party = PartyId::parse(&row.text(1)?).map_err(|e| corrupt(e.to_string()))?;
    let role = Role::parse(&row.text(2)?).map_err(|e| corrupt(e.to_string()))?;
    let hash: [u8; 32] = row.bytes(3)?.try_into().map_err(|_| corrupt("its hash is not 32 bytes".to_owned()))?;
    let revoked = row.flag(4)?;
    Ok(StoredToken { id, party, role, hash, revoked })
}

/// Every token, the parties' and the operator's, as one relation (`$1` is the column compared,
/// the macro the column's name).
macro_rules! all_tokens_where {
    ($column:literal) => {
        concat!(
            "SELECT id, party, role, hash, revoked FROM tokens WHERE ",
            $column,
            " = $1 UNION ALL SELECT id, 'operator', 'operator', hash, revoked FROM operator_tokens WHERE ",
            $column,
            " = $1"
        )
    };
}

fn by_id(sql: &mut impl Sql, id: &str) -> Result<Option<StoredToken>, StoreError> {
    first(sql, all_tokens_where!("id"), &[Param::Text(id)], read)
}

/// The token whose SHA-256 is `hash`, revoked or not.
pub(crate) fn by_hash(sql: &mut impl Sql, hash: &[u8; 32]) -> Result<Option<StoredToken>, StoreError> {
    first(sql, all_tokens_where!("hash"), &[Param::Bytes(hash)], read)
}

/// Registers a token: its id is new, its party is registered with `role` (or, for the
/// operator's, is [`OPERATOR`]), its hash is new.
pub(crate) fn add(sql: &mut impl Sql, id: &str, party: &PartyId, role: Role, hash: &[u8; 32]) -> Result<(), StoreError> {
    if !valid_id(id) {
        return Err(StoreError::BadTokenId(id.to_owned()));
    }
    if role == Role::Operator {
        if party.as_str() != OPERATOR {
            return Err(StoreError::OperatorIsNoParty);
        }
    } else {
        require_role(sql, party.as_str(), role, "the party a token acts for")?;
    }
    if by_id(sql, id)?.is_some() || by_hash(sql, hash)?.is_some() {
        return Err(StoreError::TokenExists { id: id.to_owned() });
    }
    if role == Role::Operator {
        sql.execute(
            "INSERT INTO operator_tokens (id, hash, revoked) VALUES ($1, $2, $3)",
            &[Param::Text(id), Param::Bytes(hash), Param::Bool(false)],
        )?;
    } else {
        sql.execute(
            "INSERT INTO tokens (id, party, role, hash, revoked) VALUES ($1, $2, $3, $4, $5)",
            &[Param::Text(id), Param::Text(party.as_str()), Param::Text(role.as_str()), Param::Bytes(hash), Param::Bool(false)],
        )?;
    }
    Ok(())
}

/// Revokes a token (again: a no-op); returns it as it now is.
pub(crate) fn revoke(sql: &mut impl Sql, id: &str) -> Result<StoredToken, StoreError> {
    let token = by_id(sql, id)?.ok_or_else(|| StoreError::UnknownToken { id: id.to_owned() })?;
    if !token.revoked {
        let update = if token.role == Role::Operator {
            "UPDATE operator_tokens SET revoked = $1 WHERE id = $2"
        } else {
            "UPDATE tokens SET revoked = $1 WHERE id = $2"
        };
        sql.execute(update, &[Param::Bool(true), Param::Text(id)])?;
    }
    Ok(StoredToken { revoked: true, ..token })
}
