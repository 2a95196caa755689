//! Auditors' grants (SPEC §9): an auditor reads only the agreements the operator granted it.
//!
//! A grant names one auditor and one agreement (every version of it), and is a leaf of the log
//! (`grant_event`), as is its revocation, so both parties of the agreement can see who may read
//! it, and since when. Granting what is in force, or revoking what is not, changes nothing.

use revshare_core::ids::{AgreementId, PartyId};
use revshare_core::transparency::grant_event;

use crate::agreements;
use crate::error::StoreError;
use crate::log;
use crate::registry::{Role, require_role};
use crate::sql::{Columns, Param, Sql, first, rows, unsigned};

/// A grant, in force or revoked: the leaves that granted and revoked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub auditor: PartyId,
    pub agreement: AgreementId,
    pub granted_leaf: u64,
    pub revoked_leaf: Option<u64>,
}

fn read(row: &dyn Columns) -> Result<Grant, StoreError> {
    let auditor = row.text(0)?;
    let agreement = row.text(1)?;
    let what = || format!("the grant of agreement {agreement} to {auditor}");
    let corrupt = |detail: String| StoreError::Corrupt { what: what(), detail };
    Ok(Grant {
        auditor: PartyId::parse(&auditor).map_err(|e| corrupt(e.to_string()))?,
        agreement: AgreementId::parse(&agreement).map_err(|e| corrupt(e.to_string()))?,
        granted_leaf: unsigned(row.int(2)?, what)?,
        revoked_leaf: row.opt_int(3)?.map(|leaf| unsigned(leaf, what)).transpose()?,
    })
}

fn in_force(sql: &mut impl Sql, auditor: &str, agreement: &str) -> Result<Option<Grant>, StoreError> {
    first(
        sql,
        "SELECT auditor, agreement_id, granted_leaf, revoked_leaf FROM grants \
         WHERE auditor = $1 AND agreement_id = $2 AND revoked_leaf IS NULL",
        &[Param::Text(auditor), Param::Text(agreement)],
        read,
    )
}

fn leaf_column(leaf: u64) -> Result<i64, StoreError> {
    i64::try_from(leaf).map_err(|_| StoreError::Log(format!("the log is full at {leaf} leaves")))
}

/// Grants `auditor` (a registered auditor) reading `agreement` (a registered agreement) and logs
/// it; a grant in force is returned as it is.
pub(crate) fn grant(sql: &mut impl Sql, auditor: &PartyId, agreement: &AgreementId) -> Result<Grant, StoreError> {
    require_role(sql, auditor.as_str(), Role::Auditor, "the party a grant is for")?;
    agreements::require(sql, agreement.as_str(), None)?;
    if let Some(grant) = in_force(sql, auditor.as_str(), agreement.as_str())? {
        return Ok(grant);
    }
    let leaf = log::record(sql, "grant", agreement.to_string(), grant_event(agreement.as_str(), auditor.as_str(), "grant"))?;
    sql.execute(
        "INSERT INTO grants (auditor, agreement_id, granted_leaf) VALUES ($1, $2, $3)",
        &[Param::Text(auditor.as_str()), Param::Text(agreement.as_str()), Param::Int(leaf_column(leaf)?)],
    )?;
    Ok(Grant { auditor: auditor.clone(), agreement: agreement.clone(), granted_leaf: leaf, revoked_leaf: None })
}

/// Revokes the grant in force of `agreement` to `auditor` and logs it; returns it revoked.
pub(crate) fn revoke(sql: &mut impl Sql, auditor: &PartyId, agreement: &AgreementId) -> Result<Grant, StoreError> {
    let grant = in_force(sql, auditor.as_str(), agreement.as_str())?
        .ok_or_else(|| StoreError::NoGrant { auditor: auditor.to_string(), agreement: agreement.to_string() })?;
    let leaf = log::record(sql, "grant", agreement.to_string(), grant_event(agreement.as_str(), auditor.as_str(), "revoke"))?;
    sql.execute(
        "UPDATE grants SET revoked_leaf = $1 WHERE auditor = $2 AND agreement_id = $3 AND granted_leaf = $4",
        &[
            Param::Int(leaf_column(leaf)?),
            Param::Text(auditor.as_str()),
            Param::Text(agreement.as_str()),
            Param::Int(leaf_column(grant.granted_leaf)?),
        ],
    )?;
    Ok(Grant { revoked_leaf: Some(leaf), ..grant })
}

/// Every grant, in force or revoked, in the order granted; of one agreement, or of one auditor.
pub(crate) fn list(sql: &mut impl Sql, agreement: Option<&AgreementId>, auditor: Option<&PartyId>) -> Result<Vec<Grant>, StoreError> {
    rows(
        sql,
        "SELECT auditor, agreement_id, granted_leaf, revoked_leaf FROM grants \
         WHERE ($1 = '' OR agreement_id = $1) AND ($2 = '' OR auditor = $2) ORDER BY granted_leaf",
        &[Param::Text(agreement.map_or("", AgreementId::as_str)), Param::Text(auditor.map_or("", PartyId::as_str))],
        read,
    )
}
