//! Where each agreement's money stands, read from the journal and the statements: the payments
//! (pending, confirmed, reversed) and each statement with what is paid of it and what is
//! outstanding. The CLI's `payment list` and `statement list` and the dashboard show these; the
//! rules are here once.
//!
//! Payments are applied to an agreement's originals oldest month first (open-item style): what
//! the host paid, less what the licensor paid back, covers the earliest amounts owed first; a
//! statement in the host's favour (negative) is outstanding whole. Who paid is read from the host's
//! payable posting: it falls when the host pays.

use std::collections::{BTreeMap, BTreeSet};

use revshare_core::ids::AgreementId;
use revshare_core::ledger::{AccountKind, EntryKind, JournalEntry, Role as LedgerRole};
use revshare_core::money::Currency;

use crate::payments::{Payer, own_reference};
use crate::{Store, StoreError, StoredStatement};

/// A payment entry of the journal: what the host paid by it (negative: what the licensor paid
/// back), and whether a later entry reverses it.
struct Posted<'j> {
    entry: &'j JournalEntry,
    by_host: i128,
    currency: Currency,
    reversed: bool,
}

/// The journal's payment entries, in posting order.
fn posted_payments(journal: &[JournalEntry]) -> impl Iterator<Item = Posted<'_>> {
    let reversed: BTreeSet<&str> = journal.iter().filter_map(|e| e.kind().reverses()).collect();
    journal.iter().filter(|e| *e.kind() == EntryKind::Payment).filter_map(move |entry| {
        let payable = entry.postings().iter().find(|p| p.account.role() == LedgerRole::Host && p.account.kind() == AccountKind::Payable)?;
        Some(Posted { entry, by_host: payable.amount_minor, currency: payable.currency, reversed: reversed.contains(entry.reference()) })
    })
}

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentState {
    /// Recorded by its payer; the payee has not confirmed it.
    Pending,
    Confirmed,
    /// Confirmed, then reversed by a later entry.
    Reversed,
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Pending => "pending",
            PaymentState::Confirmed => "confirmed",
            PaymentState::Reversed => "reversed",
        }
    }
}

/// A payment as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRow {
    pub agreement: AgreementId,
    /// The payer's own reference.
    pub reference: String,
    pub from: Payer,
    pub amount_minor: i128,
    pub currency: Currency,
    pub state: PaymentState,
}

impl PaymentRow {
    /// The members of its JSON, in order: the columns of its CSV.
    pub const COLUMNS: [&str; 6] = ["agreement", "reference", "from", "amount", "currency", "state"];

    /// As the CLI's `payment list --format json` and the dashboard's download give it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "agreement": self.agreement.as_str(), "reference": self.reference, "from": self.from.as_str(),
            "amount": self.currency.format(self.amount_minor), "currency": self.currency.code(), "state": self.state.as_str(),
        })
    }
}

/// Pending payments first, then the journal's payment entries in posting order (of one agreement,
/// with `agreement`).
pub fn payments(store: &mut dyn Store, agreement: Option<&AgreementId>) -> Result<Vec<PaymentRow>, StoreError> {
    let mut rows: Vec<PaymentRow> = store
        .pending_payments(agreement)?
        .into_iter()
        .map(|p| PaymentRow {
            agreement: p.agreement_id,
            reference: p.reference,
            from: p.from,
            amount_minor: p.amount_minor,
            currency: p.currency,
            state: PaymentState::Pending,
        })
        .collect();
    let journal = store.journal()?;
    for posted in posted_payments(&journal).filter(|p| agreement.is_none_or(|a| p.entry.agreement() == a)) {
        rows.push(PaymentRow {
            agreement: posted.entry.agreement().clone(),
            reference: own_reference(posted.entry.reference()).to_owned(),
            from: if posted.by_host > 0 { Payer::Host } else { Payer::Licensor },
            amount_minor: posted.by_host.abs(),
            currency: posted.currency,
            state: if posted.reversed { PaymentState::Reversed } else { PaymentState::Confirmed },
        });
    }
    Ok(rows)
}

/// A finalised statement with its money.
#[derive(Clone, Debug)]
pub struct StatementRow {
    pub stored: StoredStatement,
    pub currency: Currency,
    pub net_payable: i128,
    /// For an original (the statements booked): what the agreement's payments cover of it, and
    /// what is left; `None` for a restatement (its difference is carried by a later original).
    pub paid: Option<(i128, i128)>,
    /// Whether a key registered to the agreement's host signed it.
    pub countersigned: bool,
    /// When it was finalised, `YYYY-MM-DD`.
    pub closed_on: Option<String>,
}

impl StatementRow {
    /// The members of its JSON, in order: the columns of its CSV.
    pub const COLUMNS: [&str; 12] = [
        "agreement",
        "version",
        "period",
        "sequence",
        "kind",
        "currency",
        "net_payable",
        "paid",
        "outstanding",
        "countersigned",
        "closed_on",
        "digest",
    ];

    /// As the CLI's `statement list --format json` and the dashboard's download give it.
    pub fn to_json(&self) -> serde_json::Value {
        let (s, c) = (&self.stored, self.currency);
        serde_json::json!({
            "agreement": s.agreement_id.as_str(), "version": s.agreement_version, "period": s.period.to_string(),
            "sequence": s.sequence, "kind": s.kind.as_str(), "currency": c.code(), "net_payable": c.format(self.net_payable),
            "paid": self.paid.map(|(paid, _)| c.format(paid)), "outstanding": self.paid.map(|(_, left)| c.format(left)),
            "countersigned": self.countersigned, "closed_on": self.closed_on, "digest": s.digest,
        })
    }
}

/// Each finalised statement (of one agreement, with `agreement`), oldest month first per
/// agreement, with its net payable, what is paid and outstanding, whether the host countersigned
/// it and when it closed.
pub fn statements(store: &mut dyn Store, agreement: Option<&AgreementId>) -> Result<Vec<StatementRow>, StoreError> {
    let stored = store.statements(agreement)?;
    let journal = store.journal()?;
    let keys = store.keys()?;
    // What each agreement's host paid, net of what was paid back and of reversed payments.
    let mut paid: BTreeMap<AgreementId, i128> = BTreeMap::new();
    for posted in posted_payments(&journal).filter(|p| !p.reversed) {
        *paid.entry(posted.entry.agreement().clone()).or_default() += posted.by_host;
    }
    // The keys registered to each agreement's host, looked up once per agreement.
    let mut host_keys: BTreeMap<AgreementId, BTreeSet<String>> = BTreeMap::new();
    let mut rows = Vec::with_capacity(stored.len());
    for s in stored {
        let statement = s.statement()?;
        if !host_keys.contains_key(&s.agreement_id) {
            let host = store.agreement_parties(&s.agreement_id)?.map(|(_, host)| host.to_string());
            let of_host = keys.iter().filter(|k| host.is_some() && k.party == host).map(|k| k.key.to_text()).collect();
            host_keys.insert(s.agreement_id.clone(), of_host);
        }
        let countersigned = store.statement_signatures(&s)?.iter().any(|signed| host_keys[&s.agreement_id].contains(&signed.key));
        let net = statement.totals.net_payable;
        let paid = (s.kind == crate::StatementKind::Original).then(|| {
            let left = paid.entry(s.agreement_id.clone()).or_default();
            let covered = if net > 0 { net.min((*left).max(0)) } else { 0 };
            *left -= covered;
            (covered, net - covered)
        });
        let closed_on = s.finalised_at.map(|t| t.to_string().get(..10).unwrap_or_default().to_owned());
        rows.push(StatementRow { currency: statement.currency, net_payable: net, paid, countersigned, closed_on, stored: s });
    }
    Ok(rows)
}
