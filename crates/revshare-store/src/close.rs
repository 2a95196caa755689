//! Closing a month: the one copy of what `revshare close` and `POST /v1/close` do.
//!
//! [`close_month`] closes the month in one write transaction ([`Store::close`], computed by
//! `close_in`): it restates the earlier closed months that late records changed (each
//! difference becomes an adjustment line of the month being closed), settles the month with the
//! core from the store's rollups and the agreement's stored contributions, and finalises the
//! restatements and the original with its journal entry. Everything it reads and writes is one
//! snapshot under the write lock, so a record stored while a month is being closed is either in
//! the statement or, committed after it, late — never neither (the statement's bundle holds every
//! record logged before the statement). Then it signs what it finalised with the deployment key. A
//! signature can be added at any time, so a failure to sign leaves nothing inconsistent. A month
//! already closed is refused ([`CloseError::AlreadyClosed`]): its statement is final, and late
//! records are carried into the next month's close.
//!
//! A month closes only from its end plus the agreement's `close_after_days` (SPEC §10); an
//! earlier close is refused with that date ([`CloseError::TooEarly`]) and changes nothing.
//!
//! Disputes (SPEC §8): the escalations due at the closing time are applied first; then every
//! dispute of the agreement accepted or decided with an amount, and not yet carried by an
//! earlier original statement, becomes an adjustment line (`kind` `dispute`, `reference`
//! `dispute:<id>`). Whether a dispute was carried is read from the finalised statements
//! themselves, so nothing about a dispute changes when it is carried.

use std::collections::BTreeMap;

use revshare_core::agreement::Agreement;
use revshare_core::canonical::{self, CanonicalError};
use revshare_core::contribution::Contribution;
use revshare_core::ids::AgreementId;
use revshare_core::ledger::{JournalEntry, LedgerError};
use revshare_core::note::SignerKey;
use revshare_core::settle::{SettleError, SettlementInput, settle};
use revshare_core::statement::{Adjustment, Statement, restatement};
use revshare_core::time::{Instant, Period};
use revshare_core::transparency::{Signed, statement_message};

use crate::sql::Sql;
use crate::{
    NewStatement, StatementKind, Store, StoreError, StoredStatement, agreements, contributions, disputes, registry, rollups, statements,
};

/// Why a month could not be closed.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// Boxed: a store error is large, and closing is rare.
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error("{agreement} {period} is already closed and its statement is final; late records are carried into the next month's close")]
    AlreadyClosed { agreement: AgreementId, period: Period },
    #[error(
        "{agreement} {period} can be closed from {from}: the month ends at {end} and the agreement leaves {days} days for late reports (`close_after_days`); until then `revshare statement preview` shows it as it stands"
    )]
    TooEarly { agreement: AgreementId, period: Period, from: Instant, end: Instant, days: u32 },
    #[error(transparent)]
    Settle(#[from] SettleError),
    #[error(transparent)]
    Entry(LedgerError),
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// A stored statement that cannot be read back.
    #[error("{0}")]
    Corrupt(String),
}

impl From<StoreError> for CloseError {
    fn from(error: StoreError) -> CloseError {
        CloseError::Store(Box::new(error))
    }
}

/// Settles a month from the store's rollups with the agreement's stored contributions and the
/// given adjustments.
fn settle_stored(
    sql: &mut impl Sql,
    agreement: &Agreement,
    period: Period,
    contributions: &[Contribution],
    adjustments: Vec<Adjustment>,
) -> Result<Statement, CloseError> {
    let month = period.to_string();
    // The resends the store counted are delivery statistics, no part of the statement (SPEC §6).
    let (rollup, _resends) = rollups::of_period(sql, agreement.id().as_str(), &month)?;
    let usage_set = rollups::usage_set(sql, agreement.id().as_str(), &month)?;
    let lineage = registry::lineage(sql)?;
    let input = SettlementInput {
        agreement,
        period,
        rollup: &rollup,
        usage_digest: usage_set.digest(),
        contributions,
        adjustments,
        lineage: &lineage,
    };
    Ok(settle(&input)?)
}

/// Signs a stored statement with `key` (the deployment's, or a host's countersignature).
pub fn sign_stored<S: Store + ?Sized>(store: &mut S, statement: &StoredStatement, key: &SignerKey) -> Result<(), StoreError> {
    let signature = key.sign(&statement_message(&statement.head.digest));
    store.sign_statement(statement, &Signed { key: key.verifier().to_text(), signature })
}

/// A month closed by [`Store::close`]: the original statement as stored and as settled, and the
/// restatements of earlier months finalised with it.
#[derive(Debug)]
pub struct Closed {
    pub original: StoredStatement,
    pub statement: Statement,
    pub restated: Vec<StoredStatement>,
}

/// Closes a month at `now` (the edge's clock) in one write transaction ([`Store::close`]):
/// restates earlier closed months that late records changed and carries resolved disputes, each
/// as an adjustment line, and finalises the month's statement; then signs what it finalised with
/// `key`. Returns the stored original and the statement.
pub fn close_month<S: Store + ?Sized>(
    store: &mut S,
    id: &AgreementId,
    period: Period,
    key: &SignerKey,
    now: Instant,
) -> Result<(StoredStatement, Statement), CloseError> {
    let Closed { original, statement, restated } = store.close(id, period, now)?;
    // The deployment signs what it finalised. A signature can be added at any time, so a failure
    // here leaves nothing inconsistent: `revshare statement sign` adds it later.
    for restatement in &restated {
        sign_stored(store, restatement, key)?;
    }
    sign_stored(store, &original, key)?;
    Ok((original, statement))
}

/// The earlier months that late records changed: each one's period, restated canonical bytes and
/// digest.
type Restated = Vec<(Period, Vec<u8>, String)>;

/// What closing `period` computes from what `sql` reads, writing nothing: the month's statement
/// and the restatements of the earlier months (`statements`, those finalised) that late records
/// changed, each difference an adjustment line of the statement.
fn compute(
    sql: &mut impl Sql,
    agreement: &Agreement,
    period: Period,
    statements: &[StoredStatement],
) -> Result<(Statement, Restated), CloseError> {
    let id = agreement.id();
    let contributions = contributions::of_agreement(sql, id.as_str())?;
    let mut adjustments = Vec::new();
    let mut restated: Restated = Vec::new();
    // The latest statement of each earlier month: the last of its period in the list.
    let latest = statements.iter().filter(|s| s.head.period < period).fold(BTreeMap::new(), |mut latest, s| {
        latest.insert(s.head.period, s);
        latest
    });
    for (&earlier, stored) in &latest {
        let again = settle_stored(sql, agreement, earlier, &contributions, Vec::new())?;
        let Some(adjustment) = restatement(&stored.statement()?, &again).map_err(SettleError::from)? else { continue };
        adjustments.push(adjustment);
        let bytes = again.to_canonical()?;
        let digest = canonical::digest(&bytes);
        restated.push((earlier, bytes, digest));
    }
    // Escalations never resolve a dispute, so those due need not be applied to find what is carried.
    let carried = statements::carried_disputes(statements)?;
    for stored in disputes::list(sql, Some(id.as_str()))? {
        if let Some(adjustment) = stored.dispute.adjustment().filter(|a| !carried.contains_key(&a.reference)) {
            adjustments.push(adjustment);
        }
    }
    Ok((settle_stored(sql, agreement, period, &contributions, adjustments)?, restated))
}

/// The agreement and its finalised statements, if `period` is still open.
fn open_month(sql: &mut impl Sql, id: &AgreementId, period: Period) -> Result<(Agreement, Vec<StoredStatement>), CloseError> {
    let agreement = agreements::require(sql, id.as_str(), None)?;
    let statements = statements::list(sql, Some(id.as_str()))?;
    if statements.iter().any(|s| s.head.period == period) {
        return Err(CloseError::AlreadyClosed { agreement: id.clone(), period });
    }
    Ok((agreement, statements))
}

/// What [`Store::preview`] does inside its read transaction: [`compute`], nothing written.
pub(crate) fn preview_in(sql: &mut impl Sql, id: &AgreementId, period: Period) -> Result<Statement, CloseError> {
    let (agreement, statements) = open_month(sql, id, period)?;
    Ok(compute(sql, &agreement, period, &statements)?.0)
}

/// What [`Store::running_totals`] does inside its read transaction: the open month settled with
/// its contributions and no adjustments.
pub(crate) fn running_in(sql: &mut impl Sql, id: &AgreementId, period: Period) -> Result<Statement, CloseError> {
    let (agreement, _) = open_month(sql, id, period)?;
    let contributions = contributions::of_agreement(sql, id.as_str())?;
    settle_stored(sql, &agreement, period, &contributions, Vec::new())
}

/// What [`Store::close`] does inside its write transaction.
pub(crate) fn close_in(sql: &mut impl Sql, id: &AgreementId, period: Period, now: Instant) -> Result<Closed, CloseError> {
    let (agreement, statements) = open_month(sql, id, period)?;
    // SPEC §10: not before the month has ended and its late reports had time to arrive.
    let from = agreement.closes_from(period);
    if now < from {
        let (end, days) = (period.end_exclusive(), agreement.close_after_days());
        return Err(CloseError::TooEarly { agreement: id.clone(), period, from, end, days });
    }
    disputes::escalate_due(sql, now)?;
    let (statement, restated) = compute(sql, &agreement, period, &statements)?;
    let bytes = statement.to_canonical()?;
    let digest = canonical::digest(&bytes);
    let entry = JournalEntry::for_statement(&statement, agreement.licensor(), agreement.host()).map_err(CloseError::Entry)?;
    let version = agreement.version();
    // The restatements first, posting nothing (their differences are the original's adjustment
    // lines), then the original with its journal entry.
    let restated = restated
        .iter()
        .map(|(earlier, canonical, digest)| {
            let restatement = NewStatement {
                agreement_id: id,
                agreement_version: version,
                period: *earlier,
                kind: StatementKind::Restatement,
                canonical,
                digest,
                finalised_at: now,
            };
            statements::finalise(sql, &restatement, None)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let original = NewStatement {
        agreement_id: id,
        agreement_version: version,
        period,
        kind: StatementKind::Original,
        canonical: &bytes,
        digest: &digest,
        finalised_at: now,
    };
    let original = statements::finalise(sql, &original, Some(&entry))?;
    Ok(Closed { original, statement, restated })
}
