//! Answers kept for `Idempotency-Key` (as Stripe's API does it): a POST retried with the key of
//! a request already answered gets that first answer back, not a second effect. A key belongs to
//! the party whose token sent it, so parties cannot see, replay or block each other's. Answers
//! are kept for good (a row per keyed request), so at least as long as any dispute window.

use revshare_core::ids::PartyId;
use revshare_core::time::Instant;

use crate::error::StoreError;
use crate::sql::{Columns, Param, Sql, first};

/// The first answer to a party's request with an `Idempotency-Key`, and what the request was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptAnswer {
    /// SHA-256 of the request (its method, path, query and body): a key names one request.
    pub request_digest: [u8; 32],
    pub status: u16,
    /// The answer's headers that a replay repeats (`Content-Type`, `Location`, …), as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn read(row: &dyn Columns) -> Result<KeptAnswer, StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt { what: "a kept idempotent answer".to_owned(), detail: detail.to_owned() };
    let request_digest: [u8; 32] = row.bytes(0)?.try_into().map_err(|_| corrupt("its request digest is not 32 bytes"))?;
    let status = u16::try_from(row.int(1)?).map_err(|_| corrupt("its status is not an HTTP status"))?;
    let headers: Vec<(String, String)> =
        serde_json::from_str(&row.text(2)?).map_err(|_| corrupt("its headers are not a JSON list of name and value"))?;
    Ok(KeptAnswer { request_digest, status, headers, body: row.bytes(3)? })
}

/// The answer kept for `party`'s `key`.
pub(crate) fn find(sql: &mut impl Sql, party: &PartyId, key: &str) -> Result<Option<KeptAnswer>, StoreError> {
    first(
        sql,
        "SELECT request_digest, status, headers, body FROM idempotency_keys WHERE party = $1 AND key = $2",
        &[Param::Text(party.as_str()), Param::Text(key)],
        read,
    )
}

/// Keeps `answer` for `party`'s `key`; false (and the first kept) when one is kept already.
pub(crate) fn keep(sql: &mut impl Sql, party: &PartyId, key: &str, answer: &KeptAnswer, at: Instant) -> Result<bool, StoreError> {
    let headers = serde_json::to_string(&answer.headers)
        .map_err(|e| StoreError::Corrupt { what: "an answer's headers".to_owned(), detail: e.to_string() })?;
    let inserted = sql.execute(
        "INSERT INTO idempotency_keys (party, key, request_digest, status, headers, body, kept_secs) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (party, key) DO NOTHING",
        &[
            Param::Text(party.as_str()),
            Param::Text(key),
            Param::Bytes(&answer.request_digest),
            Param::Int(i64::from(answer.status)),
            Param::Text(&headers),
            Param::Bytes(&answer.body),
            Param::Int(at.secs()),
        ],
    )?;
    Ok(inserted == 1)
}
