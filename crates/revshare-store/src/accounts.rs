//! Where each agreement's money stands: the payments (pending, confirmed, reversed) and each
//! statement with what is paid of it and what is outstanding. The CLI's `payment list` and
//! `statement list`, the API's lists and the dashboard show these; the rules are here once.
//!
//! Payments are applied to an agreement's originals oldest month first (open-item style): what
//! the host paid, less what the licensor paid back, covers the earliest amounts owed first; a
//! statement in the host's favour (negative) is outstanding whole. Who paid is read from the host's
//! payable posting: it falls when the host pays.
//!
//! Both lists are read a page at a time, agreement by agreement, with keyset queries: a page costs
//! what it shows, not what is stored. What the host paid is kept per agreement as payments post
//! (`paid_by_host`) and each statement's net payable beside it (`statement_amounts`), so an
//! original's share of the payments is `min(net, max(0, paid − the positive nets of the originals
//! before it))` (see [`applied`]): the same as applying the payments one statement at a time.

use std::collections::BTreeMap;

use revshare_core::ids::AgreementId;
use revshare_core::ledger::{Account, AccountKind, EntryKind, JournalEntry, Role as LedgerRole};
use revshare_core::money::Currency;
use revshare_core::time::Period;

use crate::payments::{Payer, own_reference};
use crate::sql::{Dialect, Param, Sql, first, rows};
use crate::statements::{StatementHead, read_head};
use crate::{StatementKind, Store, StoreError, agreements};

/// An entry's posting on its host's payable account: by a payment, what the host paid (negative:
/// what the licensor paid back); by the reversal of one, the opposite.
pub(crate) fn host_payable(entry: &JournalEntry) -> Option<i128> {
    entry
        .postings()
        .iter()
        .find(|p| p.account.role() == LedgerRole::Host && p.account.kind() == AccountKind::Payable)
        .map(|p| p.amount_minor)
}

/// What each agreement's host paid by the journal's payments that are not reversed, net of what
/// was paid back.
pub(crate) fn paid_by_host(journal: &[JournalEntry]) -> Result<BTreeMap<AgreementId, i128>, StoreError> {
    let reversed: std::collections::BTreeSet<&str> = journal.iter().filter_map(|e| e.kind().reverses()).collect();
    let mut paid: BTreeMap<AgreementId, i128> = BTreeMap::new();
    for entry in journal.iter().filter(|e| *e.kind() == EntryKind::Payment && !reversed.contains(e.reference())) {
        if let Some(amount) = host_payable(entry) {
            let sum = paid.entry(entry.agreement().clone()).or_default();
            *sum = sum
                .checked_add(amount)
                .ok_or_else(|| revshare_core::ledger::LedgerError::Overflow { reference: entry.reference().to_owned() })?;
        }
    }
    Ok(paid)
}

/// What of an original statement's `net` payable the host's payments cover, and what is left,
/// when the host paid `paid` in all and the originals before it owed `earlier` (the sum of their
/// positive nets).
pub fn applied(net: i128, paid: i128, earlier: i128) -> (i128, i128) {
    let covered = if net > 0 { net.min(paid.saturating_sub(earlier).max(0)) } else { 0 };
    (covered, net - covered)
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
    /// The reference it is kept under (`payment:<agreement>:<reference>`): the list's order
    /// within an agreement.
    pub stored_reference: String,
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

/// Which payments a page of the payment list holds: by agreement, then by the reference each is
/// kept under.
pub struct PaymentQuery<'q> {
    /// The agreements listed, in id order.
    pub agreements: &'q [AgreementId],
    pub state: Option<PaymentState>,
    /// Only the payments after this agreement and kept reference.
    pub after: Option<(AgreementId, String)>,
    /// At most this many.
    pub limit: usize,
}

/// Every payment (of one agreement, with `agreement`), by agreement and reference.
pub fn payments(store: &mut dyn Store, agreement: Option<&AgreementId>) -> Result<Vec<PaymentRow>, StoreError> {
    let agreements = listed(store, agreement)?;
    store.payment_rows(&PaymentQuery { agreements: &agreements, state: None, after: None, limit: usize::MAX })
}

/// The agreements a whole list covers: one, or all.
fn listed(store: &mut dyn Store, agreement: Option<&AgreementId>) -> Result<Vec<AgreementId>, StoreError> {
    Ok(match agreement {
        Some(id) => vec![id.clone()],
        None => store.agreement_index()?.into_iter().map(|(id, _, _)| id).collect(),
    })
}

/// A page of payments ([`Store::payment_rows`]): per agreement, its pending payments and its
/// posted ones read in reference order, each query at most what the page still needs, merged.
pub(crate) fn payment_page(sql: &mut impl Sql, query: &PaymentQuery<'_>) -> Result<Vec<PaymentRow>, StoreError> {
    let (pending_query, posted_query) = match sql.dialect() {
        Dialect::Sqlite => (PENDING, POSTED),
        Dialect::Postgres => (PENDING_PG, POSTED_PG),
    };
    let mut page = Vec::new();
    for id in query.agreements {
        let Some(left) = query.limit.checked_sub(page.len()).filter(|left| *left > 0) else { break };
        let after = match &query.after {
            Some((agreement, _)) if agreement > id => continue,
            Some((agreement, reference)) if agreement == id => reference.as_str(),
            _ => "",
        };
        let Some((_, host)) = agreements::parties(sql, id.as_str())? else { continue };
        let limit = Param::Int(i64::try_from(left).unwrap_or(i64::MAX));
        let corrupt =
            |reference: &str, detail: String| StoreError::Corrupt { what: format!("payment {reference} of agreement {id}"), detail };
        let mut pending = Vec::new();
        if query.state.is_none_or(|s| s == PaymentState::Pending) {
            let found = rows(sql, pending_query, &[Param::Text(id.as_str()), Param::Text(after), limit], |row| {
                Ok((row.text(0)?, row.text(1)?, row.int(2)?))
            })?;
            let currency = if found.is_empty() { None } else { Some(agreements::require(sql, id.as_str(), None)?.currency()) };
            for (stored, payer, amount) in found {
                let from = Payer::parse(&payer).ok_or_else(|| corrupt(&stored, format!("its payer is `{payer}`")))?;
                let currency = currency.ok_or_else(|| corrupt(&stored, "its agreement has no currency".to_owned()))?;
                pending.push(PaymentRow {
                    agreement: id.clone(),
                    reference: own_reference(&stored).to_owned(),
                    stored_reference: stored,
                    from,
                    amount_minor: i128::from(amount),
                    currency,
                    state: PaymentState::Pending,
                });
            }
        }
        let mut posted = Vec::new();
        if query.state != Some(PaymentState::Pending) {
            let account = Account::new(LedgerRole::Host, &host, AccountKind::Payable, id)?.key();
            let state = query.state.map_or("", PaymentState::as_str);
            let params = [Param::Text(&account), Param::Text(id.as_str()), Param::Text(after), Param::Text(state), limit];
            let found = rows(sql, posted_query, &params, |row| Ok((row.text(0)?, row.text(1)?, row.text(2)?, row.flag(3)?)))?;
            for (stored, amount, currency, reversed) in found {
                let by_host: i128 = amount.parse().map_err(|_| corrupt(&stored, format!("`{amount}` is not an amount in minor units")))?;
                let currency = Currency::parse(&currency).map_err(|e| corrupt(&stored, e.to_string()))?;
                posted.push(PaymentRow {
                    agreement: id.clone(),
                    reference: own_reference(&stored).to_owned(),
                    stored_reference: stored,
                    from: if by_host > 0 { Payer::Host } else { Payer::Licensor },
                    amount_minor: by_host.abs(),
                    currency,
                    state: if reversed { PaymentState::Reversed } else { PaymentState::Confirmed },
                });
            }
        }
        // A reference is pending or posted, never both: the two merge by reference.
        let mut merged: Vec<PaymentRow> = pending.into_iter().chain(posted).collect();
        merged.sort_by(|a, b| a.stored_reference.cmp(&b.stored_reference));
        merged.truncate(left);
        page.extend(merged);
    }
    Ok(page)
}

/// An agreement's pending payments after a reference, in reference order.
const PENDING: &str = "SELECT reference, payer, amount_minor FROM pending_payments \
     WHERE agreement_id = $1 AND NOT confirmed AND reference > $2 ORDER BY reference LIMIT $3";
/// The same in PostgreSQL, in byte order as Rust compares the references it merges.
const PENDING_PG: &str = "SELECT reference, payer, amount_minor FROM pending_payments \
     WHERE agreement_id = $1 AND NOT confirmed AND reference COLLATE \"C\" > $2 ORDER BY reference COLLATE \"C\" LIMIT $3";
/// An agreement's posted payments after a reference, in reference order: the host's payable
/// posting (`$1`) and whether a later entry reverses it; `$4` a state (`confirmed`, `reversed`) or
/// any.
const POSTED: &str = "SELECT e.reference, CAST(p.amount_minor AS TEXT), p.currency, \
     EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses = e.reference) \
     FROM journal_entries e JOIN postings p ON p.entry_seq = e.seq AND p.account = $1 \
     WHERE e.kind = 'payment' AND e.agreement_id = $2 AND e.reference > $3 \
     AND ($4 = '' OR EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses = e.reference) = ($4 = 'reversed')) \
     ORDER BY e.reference LIMIT $5";
const POSTED_PG: &str = "SELECT e.reference, CAST(p.amount_minor AS TEXT), p.currency, \
     EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses = e.reference) \
     FROM journal_entries e JOIN postings p ON p.entry_seq = e.seq AND p.account = $1 \
     WHERE e.kind = 'payment' AND e.agreement_id = $2 AND e.reference COLLATE \"C\" > $3 \
     AND ($4 = '' OR EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses = e.reference) = ($4 = 'reversed')) \
     ORDER BY e.reference COLLATE \"C\" LIMIT $5";

/// A finalised statement with its money.
#[derive(Clone, Debug)]
pub struct StatementRow {
    pub head: StatementHead,
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
        let (s, c) = (&self.head, self.currency);
        serde_json::json!({
            "agreement": s.agreement_id.as_str(), "version": s.agreement_version, "period": s.period.to_string(),
            "sequence": s.sequence, "kind": s.kind.as_str(), "currency": c.code(), "net_payable": c.format(self.net_payable),
            "paid": self.paid.map(|(paid, _)| c.format(paid)), "outstanding": self.paid.map(|(_, left)| c.format(left)),
            "countersigned": self.countersigned, "closed_on": self.closed_on, "digest": s.digest,
        })
    }
}

/// Which statements a page of the statement list holds: by agreement, month and sequence.
pub struct StatementQuery<'q> {
    /// The agreements listed, in id order.
    pub agreements: &'q [AgreementId],
    /// Only months from this one.
    pub from: Option<Period>,
    /// Only months up to this one.
    pub to: Option<Period>,
    pub kind: Option<StatementKind>,
    /// Only the statements after this agreement, month and sequence.
    pub after: Option<(AgreementId, Period, u32)>,
    /// At most this many.
    pub limit: usize,
}

/// Each finalised statement (of one agreement, with `agreement`), oldest month first per
/// agreement, with its net payable, what is paid and outstanding, whether the host countersigned
/// it and when it closed.
pub fn statements(store: &mut dyn Store, agreement: Option<&AgreementId>) -> Result<Vec<StatementRow>, StoreError> {
    let agreements = listed(store, agreement)?;
    store.statement_rows(&StatementQuery { agreements: &agreements, from: None, to: None, kind: None, after: None, limit: usize::MAX })
}

/// A page of statements ([`Store::statement_rows`]): per agreement, the statements after the
/// cursor in one query, then what the payments cover of its originals from what the host paid
/// and the nets of the originals before them.
pub(crate) fn statement_page(sql: &mut impl Sql, query: &StatementQuery<'_>) -> Result<Vec<StatementRow>, StoreError> {
    let (from, to) =
        (query.from.map(|p| p.to_string()).unwrap_or_default(), query.to.map_or_else(|| "9999-12".to_owned(), |p| p.to_string()));
    let kind = query.kind.as_ref().map_or("", StatementKind::as_str);
    let mut page = Vec::new();
    for id in query.agreements {
        let Some(left) = query.limit.checked_sub(page.len()).filter(|left| *left > 0) else { break };
        let (after_period, after_sequence) = match &query.after {
            Some((agreement, _, _)) if agreement > id => continue,
            Some((agreement, period, sequence)) if agreement == id => (period.to_string(), i64::from(*sequence)),
            _ => (String::new(), 0),
        };
        let Some((_, host)) = agreements::parties(sql, id.as_str())? else { continue };
        let what = |period: &str| format!("statement of agreement {id} for {period}");
        let params = [
            Param::Text(host.as_str()),
            Param::Text(id.as_str()),
            Param::Text(&after_period),
            Param::Int(after_sequence),
            Param::Text(&from),
            Param::Text(&to),
            Param::Text(kind),
            Param::Int(i64::try_from(left).unwrap_or(i64::MAX)),
        ];
        let found = rows(sql, STATEMENTS, &params, |row| {
            let head = read_head(row)?;
            let corrupt = |detail: String| StoreError::Corrupt { what: what(&head.period.to_string()), detail };
            let currency = Currency::parse(&row.text(8)?).map_err(|e| corrupt(e.to_string()))?;
            let net = amount(&row.text(9)?).map_err(corrupt)?;
            Ok((head, currency, net, row.flag(10)?))
        })?;
        let Some(last) = found.last().map(|(head, ..)| head.period.to_string()) else { continue };
        let paid = match first(
            sql,
            "SELECT CAST(amount_minor AS TEXT) FROM paid_by_host WHERE agreement_id = $1",
            &[Param::Text(id.as_str())],
            |row| row.text(0),
        )? {
            Some(text) => {
                amount(&text).map_err(|detail| StoreError::Corrupt { what: format!("what the host of agreement {id} paid"), detail })?
            }
            None => 0,
        };
        // The originals' nets up to the page's last month, oldest first, to sum those before each.
        let originals = rows(
            sql,
            "SELECT period, CAST(net_payable_minor AS TEXT) FROM statement_amounts WHERE agreement_id = $1 AND seq = 1 AND period <= $2 \
             ORDER BY period",
            &[Param::Text(id.as_str()), Param::Text(&last)],
            |row| {
                let period = row.text(0)?;
                let net = amount(&row.text(1)?).map_err(|detail| StoreError::Corrupt { what: what(&period), detail })?;
                Ok((period, net))
            },
        )?;
        let (mut originals, mut earlier) = (originals.into_iter().peekable(), 0i128);
        for (head, currency, net, countersigned) in found {
            let month = head.period.to_string();
            while let Some((_, before)) = originals.next_if(|(period, _)| *period < month) {
                earlier = earlier.saturating_add(before.max(0));
            }
            let paid = (head.kind == StatementKind::Original).then(|| applied(net, paid, earlier));
            let closed_on = head.finalised_at.map(|t| t.to_string().get(..10).unwrap_or_default().to_owned());
            page.push(StatementRow { head, currency, net_payable: net, paid, countersigned, closed_on });
        }
    }
    Ok(page)
}

/// An agreement's (`$2`) statements after a month and sequence, within months `$5`–`$6`, of kind
/// `$7` (or any), in order; with their amounts and whether a key of the host (`$1`) signed each.
/// (SQLite numbers `$n` parameters in the order they first appear: they appear in order.)
const STATEMENTS: &str = "SELECT s.agreement_id, s.period, s.seq, s.kind, s.agreement_version, s.digest, COALESCE(s.leaf, -1), \
     s.finalised_secs, \
     a.currency, CAST(a.net_payable_minor AS TEXT), \
     EXISTS (SELECT 1 FROM statement_signatures g JOIN signing_keys k ON k.key = g.key \
             WHERE g.agreement_id = s.agreement_id AND g.period = s.period AND g.seq = s.seq AND k.party = $1) \
     FROM statements s JOIN statement_amounts a ON a.agreement_id = s.agreement_id AND a.period = s.period AND a.seq = s.seq \
     WHERE s.agreement_id = $2 AND (s.period > $3 OR (s.period = $3 AND s.seq > $4)) \
     AND s.period >= $5 AND s.period <= $6 AND ($7 = '' OR s.kind = $7) \
     ORDER BY s.period, s.seq LIMIT $8";

/// An amount in minor units as the store keeps it.
fn amount(text: &str) -> Result<i128, String> {
    text.parse().map_err(|_| format!("`{text}` is not an amount in minor units"))
}
