//! The journal: the ledger's entries (`revshare_core::ledger`), kept for good.
//!
//! The core decides what an entry is and which entries may follow which; this module stores them
//! and holds every write and every read to those rules. Decisions:
//!
//! - **When entries are posted.** An original statement posts its entry in the transaction that
//!   saves it ([`crate::statements::finalise`]), so a closed month always has its entry and an
//!   entry always has its statement. A restatement posts none: its difference is carried as an
//!   adjustment line of the next month's statement, whose entry posts it. Payments, adjustments
//!   and reversals are posted on their own ([`post`]). A statement's entry is never reversed: the
//!   statement stays final, so its entry stays too, and the ledger agrees with the statements.
//! - **Checked on the way in.** [`append`] asserts `JournalEntry::check` again (debits = credits
//!   overall, in each party's books and between mirrored accounts), that the entry's licensor and
//!   host are its agreement's, that a payment or adjustment is in the agreement's currency (a
//!   statement's entry is held to its statement's currency and totals instead, and a reversal to
//!   the entry it negates), and that its reference is new in the whole journal. Then it loads the
//!   agreement's entries so far and applies `Balances::post`, so the ledger-level rules hold: a
//!   reversal exactly negates a posted entry that is not yet reversed. Only the agreement's
//!   entries are loaded, since those rules are per agreement: posting costs O(entries of one
//!   agreement) — a dozen statements a year and their payments.
//! - **Checked on the way out.** Every entry read is rebuilt with `JournalEntry::from_parts`,
//!   which asserts debits = credits again, and the entries read are summed with `Balances`, so a
//!   row changed outside revshare is a [`StoreError::Corrupt`] naming the entry, never a wrong
//!   balance. An entry whose postings are all gone reads as an entry with none, which is refused.
//! - **Order.** `seq` is `MAX(seq) + 1` inside the write transaction; writers are serialised
//!   (see [`crate::sql::Access`]), so it is gap-free and is the order entries were committed in.
//!   Postings keep their entry's order in `line`.
//! - **Amounts** are the exact `i128` minor units, written as decimal text and read back as text
//!   (`NUMERIC(39,0)` in PostgreSQL, `TEXT` in SQLite, like the rollup sums).

use revshare_core::ledger::{Account, Balances, EntryKind, JournalEntry, LedgerError, Posting};
use revshare_core::money::Currency;

use crate::error::StoreError;
use crate::sql::{Dialect, Param, Sql, first};
use crate::{accounts, agreements};

const ALL: &str = "SELECT e.seq, e.reference, e.kind, e.reverses, e.description, e.agreement_id, \
     p.account, p.currency, CAST(p.amount_minor AS TEXT) \
     FROM journal_entries e LEFT JOIN postings p ON p.entry_seq = e.seq ORDER BY e.seq, p.line";

const OF_AGREEMENT: &str = "SELECT e.seq, e.reference, e.kind, e.reverses, e.description, e.agreement_id, \
     p.account, p.currency, CAST(p.amount_minor AS TEXT) \
     FROM journal_entries e LEFT JOIN postings p ON p.entry_seq = e.seq WHERE e.agreement_id = $1 ORDER BY e.seq, p.line";

fn corrupt(reference: &str, detail: String) -> StoreError {
    StoreError::Corrupt { what: format!("journal entry `{reference}`"), detail }
}

/// An entry's row and its postings, as read.
struct StoredEntry {
    seq: i64,
    reference: String,
    kind: String,
    reverses: Option<String>,
    description: String,
    agreement_id: String,
    postings: Vec<Posting>,
}

impl StoredEntry {
    /// The entry, rebuilt and checked by the core.
    fn into_entry(self) -> Result<JournalEntry, StoreError> {
        let reference = self.reference;
        let kind = EntryKind::from_stored(&self.kind, self.reverses.as_deref()).map_err(|e| corrupt(&reference, e.to_string()))?;
        let entry =
            JournalEntry::from_parts(&reference, kind, &self.description, self.postings).map_err(|e| corrupt(&reference, e.to_string()))?;
        if entry.agreement().as_str() != self.agreement_id {
            return Err(corrupt(
                &reference,
                format!("it is stored under agreement {} but its postings are under {}", self.agreement_id, entry.agreement()),
            ));
        }
        Ok(entry)
    }
}

fn posting(reference: &str, account: &str, currency: &str, amount: &str) -> Result<Posting, StoreError> {
    Ok(Posting {
        account: Account::parse(account).map_err(|e| corrupt(reference, e.to_string()))?,
        currency: Currency::parse(currency).map_err(|e| corrupt(reference, e.to_string()))?,
        amount_minor: amount.parse().map_err(|_| corrupt(reference, format!("`{amount}` is not an amount in minor units")))?,
    })
}

/// The entries a query selects, in posting order, each rebuilt and checked.
fn read(sql: &mut impl Sql, query: &'static str, params: &[Param<'_>]) -> Result<Vec<JournalEntry>, StoreError> {
    let mut stored: Vec<StoredEntry> = Vec::new();
    sql.query(query, params, &mut |row| {
        let seq = row.int(0)?;
        if stored.last().is_none_or(|s| s.seq != seq) {
            stored.push(StoredEntry {
                seq,
                reference: row.text(1)?,
                kind: row.text(2)?,
                reverses: row.opt_text(3)?,
                description: row.text(4)?,
                agreement_id: row.text(5)?,
                postings: Vec::new(),
            });
        }
        // The posting columns are all NULL for an entry without postings (the LEFT JOIN).
        if let (Some(entry), Some(account), Some(currency), Some(amount)) =
            (stored.last_mut(), row.opt_text(6)?, row.opt_text(7)?, row.opt_text(8)?)
        {
            entry.postings.push(posting(&entry.reference, &account, &currency, &amount)?);
        }
        Ok(())
    })?;
    stored.into_iter().map(StoredEntry::into_entry).collect()
}

/// Sums entries read back; a rule they break is damage to the stored journal.
fn balances(entries: &[JournalEntry], what: impl FnOnce() -> String) -> Result<Balances, StoreError> {
    Balances::from_entries(entries).map_err(|e| StoreError::Corrupt { what: what(), detail: e.to_string() })
}

/// Every entry, in posting order, checked one by one and as a journal.
pub(crate) fn all(sql: &mut impl Sql) -> Result<Vec<JournalEntry>, StoreError> {
    let entries = read(sql, ALL, &[])?;
    balances(&entries, || "journal".to_owned())?;
    Ok(entries)
}

/// Posts a payment, adjustment or reversal.
pub(crate) fn post(sql: &mut impl Sql, entry: &JournalEntry) -> Result<(), StoreError> {
    if entry.kind() == &EntryKind::Statement {
        return Err(StoreError::StatementEntryAlone { reference: entry.reference().to_owned() });
    }
    append(sql, entry)
}

/// Posts any entry, after checking it against its agreement and the agreement's journal so far.
pub(crate) fn append(sql: &mut impl Sql, entry: &JournalEntry) -> Result<(), StoreError> {
    entry.check()?;
    let reference = entry.reference();
    let id = entry.agreement().as_str();
    let agreement = agreements::require(sql, id, None)?;
    if agreement.licensor() != entry.licensor() || agreement.host() != entry.host() {
        return Err(LedgerError::PartiesChanged {
            reference: reference.to_owned(),
            agreement: entry.agreement().clone(),
            licensor: entry.licensor().clone(),
            host: entry.host().clone(),
            earlier: Box::new((agreement.licensor().clone(), agreement.host().clone())),
        }
        .into());
    }
    if matches!(entry.kind(), EntryKind::Payment | EntryKind::Adjustment)
        && let Some(p) = entry.postings().iter().find(|p| p.currency != agreement.currency())
    {
        return Err(StoreError::EntryCurrency {
            reference: reference.to_owned(),
            agreement: id.to_owned(),
            expected: agreement.currency(),
            found: p.currency,
        });
    }
    let taken = first(sql, "SELECT seq FROM journal_entries WHERE reference = $1", &[Param::Text(reference)], |_| Ok(()))?;
    if taken.is_some() {
        return Err(LedgerError::DuplicateReference { reference: reference.to_owned() }.into());
    }
    let so_far = read(sql, OF_AGREEMENT, &[Param::Text(id)])?;
    if let EntryKind::Reversal { of } = entry.kind()
        && so_far.iter().any(|e| e.reference() == of && e.kind() == &EntryKind::Statement)
    {
        return Err(StoreError::StatementReversal { reference: reference.to_owned(), original: of.clone() });
    }
    balances(&so_far, || format!("journal of agreement {id}"))?.post(entry)?;
    write(sql, entry)?;
    // A payment, or the reversal of one, changes what the host paid.
    let pays = match entry.kind() {
        EntryKind::Payment => true,
        EntryKind::Reversal { of } => so_far.iter().any(|e| e.reference() == of && e.kind() == &EntryKind::Payment),
        _ => false,
    };
    match accounts::host_payable(entry) {
        Some(amount) if pays => add_paid_by_host(sql, id, amount, reference),
        _ => Ok(()),
    }
}

/// Adds `amount`, posted by entry `reference`, to what the host of agreement `id` paid
/// (`paid_by_host`, schema version 20).
fn add_paid_by_host(sql: &mut impl Sql, id: &str, amount: i128, reference: &str) -> Result<(), StoreError> {
    let so_far =
        match first(sql, "SELECT CAST(amount_minor AS TEXT) FROM paid_by_host WHERE agreement_id = $1", &[Param::Text(id)], |row| {
            row.text(0)
        })? {
            Some(text) => text.parse::<i128>().map_err(|_| StoreError::Corrupt {
                what: format!("what the host of agreement {id} paid"),
                detail: format!("`{text}` is not an amount in minor units"),
            })?,
            None => 0,
        };
    let total = so_far.checked_add(amount).ok_or_else(|| LedgerError::Overflow { reference: reference.to_owned() })?;
    let query = match sql.dialect() {
        Dialect::Sqlite => {
            "INSERT INTO paid_by_host (agreement_id, amount_minor) VALUES ($1, $2) \
             ON CONFLICT (agreement_id) DO UPDATE SET amount_minor = excluded.amount_minor"
        }
        Dialect::Postgres => {
            "INSERT INTO paid_by_host (agreement_id, amount_minor) VALUES ($1, CAST(CAST($2 AS TEXT) AS NUMERIC)) \
             ON CONFLICT (agreement_id) DO UPDATE SET amount_minor = excluded.amount_minor"
        }
    };
    sql.execute(query, &[Param::Text(id), Param::Text(&total.to_string())])?;
    Ok(())
}

/// Fills `paid_by_host` from the journal posted before it existed (schema version 20).
pub(crate) fn fill_paid_by_host(sql: &mut impl Sql) -> Result<(), StoreError> {
    for (agreement, amount) in accounts::paid_by_host(&all(sql)?)? {
        add_paid_by_host(sql, agreement.as_str(), amount, "the payments posted before schema version 20")?;
    }
    Ok(())
}

fn write(sql: &mut impl Sql, entry: &JournalEntry) -> Result<(), StoreError> {
    let last = first(sql, "SELECT COALESCE(MAX(seq), 0) FROM journal_entries", &[], |row| row.int(0))?.unwrap_or(0);
    let seq = last
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt { what: "journal".to_owned(), detail: format!("its last entry is numbered {last}") })?;
    sql.execute(
        "INSERT INTO journal_entries (seq, reference, kind, reverses, description, agreement_id) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            Param::Int(seq),
            Param::Text(entry.reference()),
            Param::Text(entry.kind().as_str()),
            Param::OptText(entry.kind().reverses()),
            Param::Text(entry.description()),
            Param::Text(entry.agreement().as_str()),
        ],
    )?;
    let statement = match sql.dialect() {
        Dialect::Sqlite => "INSERT INTO postings (entry_seq, line, account, currency, amount_minor) VALUES ($1, $2, $3, $4, $5)",
        Dialect::Postgres => {
            "INSERT INTO postings (entry_seq, line, account, currency, amount_minor) \
             VALUES ($1, $2, $3, $4, CAST(CAST($5 AS TEXT) AS NUMERIC))"
        }
    };
    for (line, p) in (0..).zip(entry.postings()) {
        let (account, amount) = (p.account.key(), p.amount_minor.to_string());
        sql.execute(
            statement,
            &[Param::Int(seq), Param::Int(line), Param::Text(&account), Param::Text(p.currency.code()), Param::Text(&amount)],
        )?;
    }
    let postings: Vec<serde_json::Value> = entry
        .postings()
        .iter()
        .map(|p| serde_json::json!({ "account": p.account.key(), "currency": p.currency.code(), "amount_minor": p.amount_minor.to_string() }))
        .collect();
    let postings = revshare_core::canonical::to_canonical(&serde_json::Value::Array(postings))
        .map_err(|e| StoreError::Log(format!("journal entry {} cannot be encoded: {e}", entry.reference())))?;
    let leaf = revshare_core::transparency::journal_event(
        entry.reference(),
        entry.kind().as_str(),
        entry.agreement().as_str(),
        &revshare_core::canonical::digest(&postings),
    );
    crate::log::record(sql, "journal_entry", format!("journal:{}", entry.reference()), leaf)?;
    Ok(())
}
