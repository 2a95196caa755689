//! Payments (SPEC §10): the one copy of how `revshare payment …` and `POST /v1/payments` build a
//! payment's journal entry (the core's `JournalEntry::payment`) and take it through its two
//! steps. A payment recorded by its payer is **pending**: kept in `pending_payments`, shown apart
//! in balances, in no account. It posts to the journal (and the log) when the payee confirms it,
//! in the confirmation's transaction. A payment the payee records itself posts at once.
//!
//! The amount is a plain decimal with no more places than the agreement currency's minor unit:
//! what was paid is recorded exactly, never rounded, and at most [`MAX_MAJOR_UNITS`] of the
//! currency. The host pays the licensor, or the licensor pays the host back.
//!
//! A payment's reference (a bank transfer's id, say) is its payer's, and is unique within its
//! agreement: it is posted under `payment:<agreement>:<reference>` ([`journal_reference`]), so a
//! reference another agreement used is never refused — a refusal would tell that it exists
//! (SPEC §9). Answers show the payer's own reference ([`own_reference`]).

use revshare_core::agreement::Agreement;
use revshare_core::ids::{AgreementId, is_record_id};
use revshare_core::ledger::{JournalEntry, LedgerError, Party};
use revshare_core::money::Currency;

use crate::error::StoreError;
use crate::sql::{Param, Sql, first, rows};
use crate::{agreements, journal};

/// Who paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payer {
    /// The host pays the licensor what it owes.
    Host,
    /// The licensor pays the host back.
    Licensor,
}

impl Payer {
    /// `host` or `licensor`, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Payer::Host => "host",
            Payer::Licensor => "licensor",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Payer> {
        match text {
            "host" => Some(Payer::Host),
            "licensor" => Some(Payer::Licensor),
            _ => None,
        }
    }
}

/// The most one payment may be, in major units of its currency: a trillion. A larger amount is
/// a typing error or an attack on the balances, never a payment.
pub const MAX_MAJOR_UNITS: i128 = 1_000_000_000_000;

/// Why a payment's entry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The amount is not a decimal, has too many places, or is too large.
    #[error("{0}")]
    Amount(String),
    /// The reference is not one (its characters, or its length with the agreement's prefix).
    #[error("{0}")]
    Reference(String),
    #[error(transparent)]
    Entry(#[from] LedgerError),
}

/// `amount` in minor units of `currency`, within (0, [`MAX_MAJOR_UNITS`]].
pub fn parse_amount(currency: Currency, amount: &str) -> Result<i128, PaymentError> {
    let minor = currency.parse_amount(amount, "the amount paid").map_err(PaymentError::Amount)?;
    let bound = 10i128.pow(u32::from(currency.minor_units())).saturating_mul(MAX_MAJOR_UNITS);
    if minor > bound {
        return Err(PaymentError::Amount(format!(
            "the amount `{amount}` is over the most one payment may be, {} {currency}",
            currency.format(bound)
        )));
    }
    Ok(minor)
}

/// The journal reference of the payment `reference` of `agreement`.
pub fn journal_reference(agreement: &AgreementId, reference: &str) -> String {
    format!("payment:{agreement}:{reference}")
}

/// The payer's own reference of a payment's journal reference (one posted before references
/// were namespaced is its own).
pub fn own_reference(journal_reference: &str) -> &str {
    journal_reference.strip_prefix("payment:").and_then(|rest| rest.split_once(':')).map_or(journal_reference, |(_, own)| own)
}

/// The journal entry of a payment of `amount_minor` by `from` under `agreement`, posted once
/// under its `reference` within the agreement.
pub fn entry_of(agreement: &Agreement, amount_minor: i128, reference: &str, from: Payer) -> Result<JournalEntry, PaymentError> {
    let namespaced = journal_reference(agreement.id(), reference);
    if !is_record_id(reference) || !is_record_id(&namespaced) {
        let room = 128usize.saturating_sub(namespaced.len() - reference.len());
        return Err(PaymentError::Reference(format!(
            "`{}` is not a payment reference: use 1-{room} of A-Z a-z 0-9 . _ : - (a reference is kept with its agreement's id, within 128 characters)",
            revshare_core::text::printable(reference, 160)
        )));
    }
    let (host, licensor) = (Party::host(agreement.host()), Party::licensor(agreement.licensor()));
    let (from, to) = match from {
        Payer::Host => (&host, &licensor),
        Payer::Licensor => (&licensor, &host),
    };
    Ok(JournalEntry::payment(from, to, agreement.id(), agreement.currency(), amount_minor, &namespaced)?)
}

/// The journal entry of a payment of `amount` (a decimal in the agreement's currency).
pub fn payment_entry(agreement: &Agreement, amount: &str, reference: &str, from: Payer) -> Result<JournalEntry, PaymentError> {
    entry_of(agreement, parse_amount(agreement.currency(), amount)?, reference, from)
}

/// A payment recorded by its payer, waiting for the payee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingPayment {
    pub agreement_id: AgreementId,
    pub reference: String,
    pub from: Payer,
    pub amount_minor: i128,
    pub currency: Currency,
}

/// Keeps a payment its payer recorded, built and checked as its entry will be posted; refused
/// when its reference is pending or posted already.
pub(crate) fn record<S: Sql>(sql: &mut S, entry: &JournalEntry, from: Payer, amount_minor: i128) -> Result<(), StoreError> {
    entry.check()?;
    let reference = entry.reference();
    let found = |sql: &mut S, query: &'static str| first(sql, query, &[Param::Text(reference)], |row| row.text(0)).map(|r| r.is_some());
    let taken = found(sql, "SELECT reference FROM pending_payments WHERE reference = $1")?
        || found(sql, "SELECT reference FROM journal_entries WHERE reference = $1")?;
    if taken {
        return Err(LedgerError::DuplicateReference { reference: own_reference(reference).to_owned() }.into());
    }
    let amount = i64::try_from(amount_minor).map_err(|_| PaymentError::Amount(format!("the amount of `{reference}` is too large")))?;
    sql.execute(
        "INSERT INTO pending_payments (reference, agreement_id, payer, amount_minor, confirmed) VALUES ($1, $2, $3, $4, $5)",
        &[
            Param::Text(reference),
            Param::Text(entry.agreement().as_str()),
            Param::Text(from.as_str()),
            Param::Int(amount),
            Param::Bool(false),
        ],
    )?;
    Ok(())
}

/// Posts the pending payment `reference` (the payer's own) of `agreement`, confirmed by its
/// payee; returns its entry.
pub(crate) fn confirm(sql: &mut impl Sql, agreement: &AgreementId, reference: &str) -> Result<JournalEntry, StoreError> {
    let namespaced = journal_reference(agreement, reference);
    let found = first(
        sql,
        "SELECT payer, amount_minor FROM pending_payments WHERE reference = $1 AND agreement_id = $2 AND NOT confirmed",
        &[Param::Text(&namespaced), Param::Text(agreement.as_str())],
        |row| Ok((row.text(0)?, row.int(1)?)),
    )?;
    let agreement = agreement.as_str();
    let (payer, amount) =
        found.ok_or_else(|| StoreError::NoPendingPayment { agreement: agreement.to_owned(), reference: reference.to_owned() })?;
    let from = Payer::parse(&payer)
        .ok_or_else(|| StoreError::Corrupt { what: format!("pending payment {reference}"), detail: format!("its payer is `{payer}`") })?;
    let stored = agreements::require(sql, agreement, None)?;
    let entry = entry_of(&stored, i128::from(amount), reference, from)?;
    journal::post(sql, &entry)?;
    sql.execute("UPDATE pending_payments SET confirmed = $1 WHERE reference = $2", &[Param::Bool(true), Param::Text(&namespaced)])?;
    Ok(entry)
}

/// The payments still pending, of one agreement or all, by reference.
pub(crate) fn pending(sql: &mut impl Sql, agreement: Option<&str>) -> Result<Vec<PendingPayment>, StoreError> {
    let found = rows(
        sql,
        "SELECT reference, agreement_id, payer, amount_minor FROM pending_payments \
         WHERE NOT confirmed AND ($1 = '' OR agreement_id = $1) ORDER BY reference",
        &[Param::Text(agreement.unwrap_or(""))],
        |row| Ok((row.text(0)?, row.text(1)?, row.text(2)?, row.int(3)?)),
    )?;
    let mut out = Vec::with_capacity(found.len());
    for (reference, agreement_id, payer, amount) in found {
        let corrupt = |detail: String| StoreError::Corrupt { what: format!("pending payment {reference}"), detail };
        let id = AgreementId::parse(&agreement_id).map_err(|e| corrupt(e.to_string()))?;
        let from = Payer::parse(&payer).ok_or_else(|| corrupt(format!("its payer is `{payer}`")))?;
        let currency = agreements::require(sql, &agreement_id, None)?.currency();
        out.push(PendingPayment {
            agreement_id: id,
            reference: own_reference(&reference).to_owned(),
            from,
            amount_minor: i128::from(amount),
            currency,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreement(id: &str) -> Agreement {
        let text = include_str!("../../../examples/agreement.toml").replace("\"meridian-northwind\"", &format!("\"{id}\""));
        revshare_core::agreement::parse_agreement("agreement.toml", &text).unwrap_or_else(|e| panic!("{}", e.render_plain()))
    }

    /// Two agreements' payments under one reference never meet, and each reads back as its own.
    #[test]
    fn references_are_kept_per_agreement() {
        let (one, two) = (agreement("meridian-northwind"), agreement("meridian-other"));
        let first = entry_of(&one, 100, "wire-1", Payer::Host).map(|e| e.reference().to_owned());
        let second = entry_of(&two, 100, "wire-1", Payer::Host).map(|e| e.reference().to_owned());
        assert_eq!(first.as_deref().ok(), Some("payment:meridian-northwind:wire-1"));
        assert_eq!(second.as_deref().ok(), Some("payment:meridian-other:wire-1"));
        assert_eq!(own_reference("payment:meridian-other:wire:1"), "wire:1", "a reference may hold a colon");
        assert_eq!(own_reference("wire-0042"), "wire-0042", "one posted before namespacing is its own");
        // Within 128 characters with the prefix, and the room left is named.
        assert!(entry_of(&one, 100, &"x".repeat(101), Payer::Host).is_ok(), "128 characters with the prefix");
        let refused = entry_of(&one, 100, &"x".repeat(102), Payer::Host).map(|_| ()).map_err(|e| e.to_string());
        assert!(refused.is_err_and(|e| e.contains("use 1-101 of")), "the room left is named");
        assert!(entry_of(&one, 100, "wire 1", Payer::Host).is_err(), "no spaces");
    }
}
