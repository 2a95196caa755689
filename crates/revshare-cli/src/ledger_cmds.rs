//! The ledger commands: `payment record`, `payment reverse` and `balances`. Each payment is one
//! journal entry (`JournalEntry::payment`), which the store checks against its agreement and the
//! journal before writing it; balances are summed from the whole journal as read back.
//!
//! Decisions:
//! - `payment record` books money that moved under one agreement, in the agreement's currency,
//!   from the host to the licensor unless `--from licensor` (money paid back). The amount is a
//!   plain decimal with no more places than the currency's minor unit: what was paid is recorded
//!   exactly, never rounded. Paying more than is owed is recorded as it happened; the licensor
//!   then owes the excess.
//! - The reference is the caller's (a bank transfer id, say) and is posted once per agreement
//!   (under `payment:<agreement>:<reference>`, `payments::journal_reference`), so recording the
//!   same payment twice is refused rather than counted twice, and no agreement's references
//!   collide with another's.
//! - `payment reverse` undoes a recorded payment with a new entry under a new reference; the
//!   payment stays in the journal. Only payments are reversed here: a statement is final, and
//!   corrected by a restatement carried into the next month's statement.
//! - `balances` lists, per currency, each agreement with an open balance: who owes whom, read from
//!   the host's payable account.

use clap::ValueEnum;
use revshare_core::ids::AgreementId;
use revshare_core::ledger::{Balances, EntryKind, JournalEntry};
use revshare_core::money::Currency;
use revshare_store::payments;

use crate::access::{StoreArgs, open, parse};
use crate::list_cmds::{Columns, print_list};
use crate::report::{right_align, table};
use crate::{Failure, ListFormat};
use revshare_core::text::grouped;

/// Who paid.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Payer {
    /// The host pays the licensor what it owes.
    Host,
    /// The licensor pays the host back.
    Licensor,
}

pub fn record_payment(
    args: &StoreArgs,
    agreement: &str,
    amount: &str,
    reference: &str,
    from: Payer,
    by_payee: bool,
) -> Result<(), Failure> {
    let id = parse(AgreementId::parse(agreement))?;
    let mut store = open(args, false)?;
    let agreement = store.agreement(&id, None)?;
    let from = match from {
        Payer::Host => payments::Payer::Host,
        Payer::Licensor => payments::Payer::Licensor,
    };
    let amount_minor = parse(payments::parse_amount(agreement.currency(), amount))?;
    let entry = parse(payments::entry_of(&agreement, amount_minor, reference, from))?;
    if by_payee {
        store.post_entry(&entry)?;
        println!("posted `{reference}`: {}", entry.description());
    } else {
        store.record_payment(&entry, from, amount_minor)?;
        println!(
            "pending `{reference}`: {}; it posts when the payee confirms it (`revshare payment confirm --agreement {id} --reference {reference}`)",
            entry.description()
        );
    }
    Ok(())
}

pub fn confirm_payment(args: &StoreArgs, agreement: &str, reference: &str) -> Result<(), Failure> {
    let id = parse(AgreementId::parse(agreement))?;
    let entry = open(args, false)?.confirm_payment(&id, reference)?;
    println!("posted `{reference}`: {}", entry.description());
    Ok(())
}

pub fn reverse_payment(args: &StoreArgs, reference: &str, new_reference: &str) -> Result<(), Failure> {
    let mut store = open(args, false)?;
    let journal = store.journal()?;
    // The journal reference, or the payer's own when only one agreement has a payment under it.
    let exact = journal.iter().find(|e| e.reference() == reference);
    let own: Vec<&JournalEntry> =
        journal.iter().filter(|e| e.kind() == &EntryKind::Payment && payments::own_reference(e.reference()) == reference).collect();
    let payment = match (exact, own.as_slice()) {
        (Some(entry), _) => entry,
        (None, [entry]) => *entry,
        (None, []) => {
            return Err(Failure::Invalid(format!(
                "error: the journal has no entry `{reference}`; give the reference the payment was recorded with\n"
            )));
        }
        (None, several) => {
            let names: Vec<&str> = several.iter().map(|e| e.reference()).collect();
            return Err(Failure::Invalid(format!(
                "error: payments of several agreements have the reference `{reference}`; give one of {}\n",
                names.join(", ")
            )));
        }
    };
    if payment.kind() != &EntryKind::Payment {
        return Err(Failure::Invalid(format!(
            "error: `{reference}` is a {} entry, not a payment; `payment reverse` undoes payments only\n",
            payment.kind()
        )));
    }
    let reversal = parse(JournalEntry::reversal(payment, new_reference))?;
    store.post_entry(&reversal)?;
    println!("reversed `{reference}` with `{new_reference}`: {}", payment.description());
    Ok(())
}

/// Who owes whom: a table (with the pending payments above it), or for programs the debts as
/// JSON or CSV (pending payments are in `payment list`).
pub fn balances(args: &StoreArgs, currency: Option<&str>, format: ListFormat) -> Result<(), Failure> {
    let currency = parse(currency.map(Currency::parse).transpose())?;
    let mut store = open(args, false)?;
    let journal = store.journal()?;
    let balances = parse(Balances::from_entries(&journal))?;
    let currencies = currency.map_or_else(|| balances.currencies(), |c| vec![c]);
    let debts: Vec<_> = currencies.into_iter().flat_map(|c| balances.owed(c)).collect();
    if format != ListFormat::Table {
        let columns = ["currency", "debtor", "creditor", "agreement", "amount"];
        let to_json = |d: &revshare_core::ledger::Debt| {
            serde_json::json!({
                "currency": d.currency.code(), "debtor": d.debtor.to_string(), "creditor": d.creditor.to_string(),
                "agreement": d.agreement.as_str(), "amount": d.currency.format(d.amount_minor),
            })
        };
        return print_list(&debts, format, &Columns { headings: &columns, members: &columns }, |_| Vec::new(), to_json, "debt");
    }
    let pending: Vec<_> = store.pending_payments(None)?.into_iter().filter(|p| currency.is_none_or(|c| p.currency == c)).collect();
    if !pending.is_empty() {
        let mut waiting = table(&["currency", "agreement", "from", "reference", "amount"]);
        for payment in &pending {
            let row = [
                &payment.currency.to_string(),
                payment.agreement_id.as_str(),
                payment.from.as_str(),
                &payment.reference,
                &grouped(&payment.currency.format(payment.amount_minor)),
            ];
            waiting.add_row(row.iter().map(|cell| revshare_core::text::printable(cell, 200)).collect::<Vec<_>>());
        }
        right_align(&mut waiting, 4);
        println!("pending, in no balance until the payee confirms:\n{waiting}");
    }
    if debts.is_empty() {
        println!("nobody owes anything{}", currency.map(|c| format!(" in {c}")).unwrap_or_default());
        return Ok(());
    }
    let mut owed = table(&["currency", "debtor", "creditor", "agreement", "amount"]);
    for debt in &debts {
        owed.add_row(vec![
            debt.currency.to_string(),
            debt.debtor.to_string(),
            debt.creditor.to_string(),
            debt.agreement.to_string(),
            grouped(&debt.currency.format(debt.amount_minor)),
        ]);
    }
    right_align(&mut owed, 4);
    println!("{owed}");
    Ok(())
}
