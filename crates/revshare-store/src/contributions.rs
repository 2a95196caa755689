//! Contributions (SPEC §5), kept per agreement.
//!
//! - **Rules** are the ones settlement applies (`revshare_core::settle`): the kind must be listed in
//!   the `[contributions]` points of the agreement's latest version, and the party must be its
//!   licensor or host. A refusal is the core's own [`SettleError`], which names the contribution.
//! - **Append-only, but for acceptance.** A contribution counts once the other party accepts it,
//!   so `accepted` may go from false to true; nothing else about a stored contribution changes,
//!   and none is deleted (triggers enforce it). Adding the same contribution again is a no-op;
//!   adding one with a stored id and other content is refused.
//! - **Order.** Read back by id, so settlement sees the same list whatever order they came in.

use revshare_core::agreement::Agreement;
use revshare_core::contribution::Contribution;
use revshare_core::ids::PartyId;
use revshare_core::settle::SettleError;
use revshare_core::time::Instant;

use crate::agreements;
use crate::error::StoreError;
use crate::log;
use crate::sql::{Columns, Param, Sql, rows, unsigned};
use revshare_core::transparency;

/// Whether `agreement` admits `c`: the rules settlement applies, with the core's errors.
fn check(agreement: &Agreement, c: &Contribution) -> Result<(), StoreError> {
    if !agreement.contribution_kinds().any(|k| k == c.kind) {
        let allowed = agreement.contribution_kinds().collect::<Vec<_>>().join(", ");
        let allowed = if allowed.is_empty() { "none (the agreement has no [contributions] section)".to_owned() } else { allowed };
        return Err(SettleError::ContributionKind { id: c.id.clone(), kind: c.kind.clone(), allowed }.into());
    }
    if &c.party != agreement.licensor() && &c.party != agreement.host() {
        return Err(SettleError::ContributionParty { id: c.id.clone(), party: c.party.to_string() }.into());
    }
    Ok(())
}

fn read_row(agreement: &str, row: &dyn Columns) -> Result<Contribution, StoreError> {
    let id = row.text(0)?;
    let corrupt = |detail: String| StoreError::Corrupt { what: format!("contribution {id} of agreement {agreement}"), detail };
    let party = PartyId::parse(&row.text(1)?).map_err(|e| corrupt(e.to_string()))?;
    let nanos: u32 = unsigned(row.int(4)?, || format!("date of contribution {id} of agreement {agreement}"))?;
    Ok(Contribution {
        party,
        kind: row.text(2)?,
        date: Instant::from_parts(row.int(3)?, nanos),
        description: row.text(5)?,
        evidence: row.opt_text(6)?,
        accepted: row.flag(7)?,
        id,
    })
}

/// An agreement's contributions, by id.
pub(crate) fn of_agreement(sql: &mut impl Sql, agreement: &str) -> Result<Vec<Contribution>, StoreError> {
    const QUERY: &str = "SELECT id, party, kind, date_secs, date_nanos, description, evidence, accepted \
         FROM contributions WHERE agreement_id = $1 ORDER BY id";
    rows(sql, QUERY, &[Param::Text(agreement)], |row| read_row(agreement, row))
}

/// Records a contribution, or its acceptance.
pub(crate) fn add(sql: &mut impl Sql, agreement_id: &str, c: &Contribution) -> Result<(), StoreError> {
    let agreement = agreements::require(sql, agreement_id, None)?;
    check(&agreement, c)?;
    const ONE: &str = "SELECT id, party, kind, date_secs, date_nanos, description, evidence, accepted \
         FROM contributions WHERE agreement_id = $1 AND id = $2";
    let stored = rows(sql, ONE, &[Param::Text(agreement_id), Param::Text(&c.id)], |row| read_row(agreement_id, row))?;
    match stored.into_iter().next() {
        None => {
            sql.execute(
                "INSERT INTO contributions (agreement_id, id, party, kind, date_secs, date_nanos, description, evidence, accepted) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    Param::Text(agreement_id),
                    Param::Text(&c.id),
                    Param::Text(c.party.as_str()),
                    Param::Text(&c.kind),
                    Param::Int(c.date.secs()),
                    Param::Int(i64::from(c.date.nanos())),
                    Param::Text(&c.description),
                    Param::OptText(c.evidence.as_deref()),
                    Param::Bool(c.accepted),
                ],
            )?;
            log_state(sql, agreement_id, c)
        }
        Some(old) if &old == c => Ok(()),
        Some(old) if !old.accepted && c.accepted && Contribution { accepted: true, ..old.clone() } == *c => {
            sql.execute(
                "UPDATE contributions SET accepted = $1 WHERE agreement_id = $2 AND id = $3",
                &[Param::Bool(true), Param::Text(agreement_id), Param::Text(&c.id)],
            )?;
            log_state(sql, agreement_id, c)
        }
        Some(old) => Err(StoreError::ContributionConflict {
            agreement: agreement_id.to_owned(),
            id: c.id.clone(),
            detail: if old.accepted && !c.accepted {
                "it is already accepted, and an acceptance is not withdrawn".to_owned()
            } else {
                "it is stored with other content".to_owned()
            },
        }),
    }
}

/// Logs a contribution's new state (recorded, or accepted).
fn log_state(sql: &mut impl Sql, agreement_id: &str, c: &Contribution) -> Result<(), StoreError> {
    let leaf = transparency::contribution_event(agreement_id, c);
    log::record(sql, "contribution", contribution_subject(agreement_id), leaf)?;
    Ok(())
}

/// The subject contribution leaves of an agreement are looked up by.
pub(crate) fn contribution_subject(agreement_id: &str) -> String {
    format!("contributions:{agreement_id}")
}
