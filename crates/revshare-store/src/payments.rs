//! Payments: the one copy of how `revshare payment record` and `POST /v1/payments` build a
//! payment's journal entry (the core's `JournalEntry::payment`), which `Store::post_entry` then
//! checks against its agreement and the journal.
//!
//! The amount is a plain decimal with no more places than the agreement currency's minor unit:
//! what was paid is recorded exactly, never rounded. The host pays the licensor, or the licensor
//! pays the host back.

use revshare_core::agreement::Agreement;
use revshare_core::ledger::{JournalEntry, LedgerError, Party};

/// Who paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payer {
    /// The host pays the licensor what it owes.
    Host,
    /// The licensor pays the host back.
    Licensor,
}

/// Why a payment's entry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The amount is not a decimal, has too many places, or is too large.
    #[error("{0}")]
    Amount(String),
    #[error(transparent)]
    Entry(#[from] LedgerError),
}

/// The journal entry of a payment of `amount` (in the agreement's currency) by `from` under
/// `agreement`, posted once under `reference`.
pub fn payment_entry(agreement: &Agreement, amount: &str, reference: &str, from: Payer) -> Result<JournalEntry, PaymentError> {
    let currency = agreement.currency();
    let amount_minor = currency.parse_amount(amount, "the amount paid").map_err(PaymentError::Amount)?;
    let (host, licensor) = (Party::host(agreement.host()), Party::licensor(agreement.licensor()));
    let (from, to) = match from {
        Payer::Host => (&host, &licensor),
        Payer::Licensor => (&licensor, &host),
    };
    Ok(JournalEntry::payment(from, to, agreement.id(), currency, amount_minor, reference)?)
}
