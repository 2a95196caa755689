//! Finalised statements: immutable, numbered per agreement and period.
//!
//! The first statement of an agreement's period is the `original` (sequence 1); a period with a
//! statement is *closed*. Anything saved for a closed period must say it is a `restatement` and
//! gets the next sequence number; nothing saved is ever updated or deleted (the schema refuses
//! both with triggers as well). The bytes are stored exactly as given — the RFC 8785 canonical
//! JSON — with their `sha256:` digest, which is checked against the bytes, and the bytes must be
//! the statement of the agreement version and period they are saved under.
//!
//! Finalising an original posts its journal entry in the same transaction ([`finalise`]), and the
//! entry must be the statement's: the statement entry of its agreement and month, posting exactly
//! its usage total, host credit, adjustments and net payable in its currency — compared with the
//! bytes being saved, so a statement and its entry cannot disagree. A restatement posts no entry
//! (see [`crate::journal`]).

use std::fmt;

use revshare_core::canonical;
use revshare_core::ids::AgreementId;
use revshare_core::ledger::{AccountKind, EntryKind, JournalEntry, Role as LedgerRole};
use revshare_core::statement::Statement;
use revshare_core::time::{Instant, Period};

use crate::error::StoreError;
use crate::log;
use crate::sql::{Columns, Dialect, Param, Sql, first, rows, unsigned};
use crate::{agreements, journal, keys};
use revshare_core::note::VerifierKey;
use revshare_core::transparency;
use revshare_core::transparency::Signed;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    /// The first statement of a period, which closes it.
    Original,
    /// A later statement of a closed period (a late record, a correction).
    Restatement,
}

impl StatementKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            StatementKind::Original => "original",
            StatementKind::Restatement => "restatement",
        }
    }

    /// The kind a stored word names.
    pub(crate) fn parse(text: &str) -> Result<StatementKind, String> {
        match text {
            "original" => Ok(StatementKind::Original),
            "restatement" => Ok(StatementKind::Restatement),
            other => Err(format!("`{other}` is not a statement kind")),
        }
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A statement to finalise.
#[derive(Clone, Copy, Debug)]
pub struct NewStatement<'a> {
    pub agreement_id: &'a AgreementId,
    pub agreement_version: u32,
    pub period: Period,
    pub kind: StatementKind,
    /// The canonical bytes (`Statement::to_canonical`).
    pub canonical: &'a [u8],
    /// `sha256:` of `canonical`.
    pub digest: &'a str,
    /// When it is finalised (the edge's clock): a dispute window runs from it.
    pub finalised_at: Instant,
}

/// A finalised statement: what identifies it, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredStatement {
    pub head: StatementHead,
    pub canonical: Vec<u8>,
}

/// A finalised statement without its bytes: what a list shows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementHead {
    pub agreement_id: AgreementId,
    pub agreement_version: u32,
    pub period: Period,
    /// 1 for the original, then 2, 3, … for restatements.
    pub sequence: u32,
    pub kind: StatementKind,
    pub digest: String,
    /// Its leaf in the transparency log (`None` if finalised before the log existed).
    pub leaf: Option<u64>,
    /// When it was finalised, to the second (`None` if finalised before the store kept it).
    pub finalised_at: Option<Instant>,
}

/// Where an adjustment went: the original statement that carries it and its index in that
/// statement's `adjustments`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    pub period: Period,
    pub sequence: u32,
    pub line: usize,
}

/// Where each dispute adjustment (by its reference, `dispute:<id>`) the original statements among
/// `statements` carry went. A dispute is carried once, by the first original closed after it was
/// resolved.
pub(crate) fn carried_disputes(statements: &[StoredStatement]) -> Result<std::collections::BTreeMap<String, Carried>, StoreError> {
    let mut carried = std::collections::BTreeMap::new();
    for stored in statements.iter().filter(|s| s.head.kind == StatementKind::Original) {
        for (line, adjustment) in stored.statement()?.adjustments.into_iter().enumerate() {
            if adjustment.dispute().is_some() {
                carried.entry(adjustment.reference).or_insert(Carried { period: stored.head.period, sequence: stored.head.sequence, line });
            }
        }
    }
    Ok(carried)
}

impl StoredStatement {
    /// The statement its bytes hold ([`Statement::from_canonical`]).
    pub fn statement(&self) -> Result<Statement, StoreError> {
        Statement::from_canonical(&self.canonical).map_err(|e| StoreError::Corrupt {
            what: format!("statement {} {} #{}", self.head.agreement_id, self.head.period, self.head.sequence),
            detail: e.to_string(),
        })
    }
}

/// A statement row: its head ([`read_head`]) and then its bytes.
fn read(row: &dyn Columns) -> Result<StoredStatement, StoreError> {
    Ok(StoredStatement { head: read_head(row)?, canonical: row.bytes(8)? })
}

/// A statement's head from the first columns of a row: agreement, period, sequence, kind,
/// agreement version, digest, leaf (or -1) and when it was finalised.
pub(crate) fn read_head(row: &dyn Columns) -> Result<StatementHead, StoreError> {
    let id = row.text(0)?;
    let period = row.text(1)?;
    let what = || format!("statement of agreement {id} for {period}");
    let corrupt = |detail: String| StoreError::Corrupt { what: what(), detail };
    Ok(StatementHead {
        agreement_id: AgreementId::parse(&id).map_err(|e| corrupt(e.to_string()))?,
        period: Period::parse(&period).map_err(|e| corrupt(e.to_string()))?,
        sequence: unsigned(row.int(2)?, what)?,
        kind: StatementKind::parse(&row.text(3)?).map_err(corrupt)?,
        agreement_version: unsigned(row.int(4)?, what)?,
        digest: row.text(5)?,
        leaf: u64::try_from(row.int(6)?).ok(),
        finalised_at: row.opt_int(7)?.map(|secs| Instant::from_parts(secs, 0)),
    })
}

/// Whether a period of an agreement has a finalised statement.
pub(crate) fn closed(sql: &mut impl Sql, agreement_id: &str, month: &str) -> Result<bool, StoreError> {
    let found = first(
        sql,
        "SELECT seq FROM statements WHERE agreement_id = $1 AND period = $2 LIMIT 1",
        &[Param::Text(agreement_id), Param::Text(month)],
        |_| Ok(()),
    )?;
    Ok(found.is_some())
}

/// The bytes must be a statement (in its canonical encoding) and the one they are saved as: its
/// agreement, version and period. Returns it decoded.
fn check_bytes(new: &NewStatement<'_>) -> Result<Statement, StoreError> {
    let actual = canonical::digest(new.canonical);
    if actual != new.digest {
        return Err(StoreError::StatementDigest { given: new.digest.to_owned(), actual });
    }
    let statement = Statement::from_canonical(new.canonical).map_err(|e| StoreError::StatementMismatch(e.to_string()))?;
    let said = (statement.agreement_id.as_str(), statement.agreement_version, statement.period);
    if said != (new.agreement_id.as_str(), new.agreement_version, new.period) {
        return Err(StoreError::StatementMismatch(format!(
            "they are of agreement {} version {} for {}, but were saved as agreement {} version {} for {}",
            said.0, said.1, said.2, new.agreement_id, new.agreement_version, new.period,
        )));
    }
    Ok(statement)
}

/// The entry of an original must be its statement's (see the module documentation).
fn check_entry(statement: &Statement, new: &NewStatement<'_>, entry: &JournalEntry) -> Result<(), StoreError> {
    let mismatch = |detail: String| StoreError::StatementEntry { reference: entry.reference().to_owned(), detail };
    // The reference `JournalEntry::for_statement` gives: one statement entry per agreement and month.
    let expected = format!("statement:{}:{}", new.agreement_id, new.period);
    if entry.kind() != &EntryKind::Statement || entry.reference() != expected || entry.agreement() != new.agreement_id {
        return Err(mismatch(format!(
            "it is a {} entry of agreement {}, not the statement entry `{expected}`",
            entry.kind(),
            entry.agreement()
        )));
    }
    let currency = statement.currency;
    if let Some(p) = entry.postings().iter().find(|p| p.currency != currency) {
        return Err(mismatch(format!("it posts in {}, but the statement is in {currency}", p.currency)));
    }
    // On the host's side usage and adjustments are debits, the credit and the payable credits.
    let t = &statement.totals;
    let totals = [
        ("usage_total", t.usage_total, AccountKind::Usage, 1),
        ("host_credit", t.host_credit, AccountKind::ContributionCredit, -1),
        ("adjustments", t.adjustments, AccountKind::Adjustments, 1),
        ("net_payable", t.net_payable, AccountKind::Payable, -1),
    ];
    for (total, said, kind, sign) in totals {
        let posted = entry
            .postings()
            .iter()
            .filter(|p| p.account.role() == LedgerRole::Host && p.account.kind() == kind)
            .try_fold(0i128, |sum, p| sum.checked_add(p.amount_minor))
            .and_then(|net| net.checked_mul(sign));
        if posted != Some(said) {
            return Err(mismatch(format!(
                "it posts {total} {} {currency}, but the statement says {}",
                posted.map_or_else(|| "beyond range".to_owned(), |p| currency.format(p)),
                currency.format(said)
            )));
        }
    }
    Ok(())
}

/// Finalises a statement: saves it and, for an original, posts its entry, in the caller's
/// transaction.
pub(crate) fn finalise(sql: &mut impl Sql, new: &NewStatement<'_>, entry: Option<&JournalEntry>) -> Result<StoredStatement, StoreError> {
    let statement = check_bytes(new)?;
    let (agreement, period) = (new.agreement_id.to_string(), new.period.to_string());
    match (new.kind, entry) {
        (StatementKind::Original, None) => return Err(StoreError::EntryRequired { agreement, period }),
        (StatementKind::Restatement, Some(_)) => return Err(StoreError::EntryNotAllowed { agreement, period }),
        (StatementKind::Original, Some(entry)) => check_entry(&statement, new, entry)?,
        (StatementKind::Restatement, None) => {}
    }
    let stored = save(sql, new, &statement)?;
    if let Some(entry) = entry {
        journal::append(sql, entry)?;
    }
    Ok(stored)
}

/// Saves checked statement bytes with the next sequence number of their period.
fn save(sql: &mut impl Sql, new: &NewStatement<'_>, statement: &Statement) -> Result<StoredStatement, StoreError> {
    let id = new.agreement_id.as_str();
    agreements::require(sql, id, Some(new.agreement_version))?;
    let period = new.period.to_string();
    let sequence = match (latest(sql, id, &period)?, new.kind) {
        (None, StatementKind::Original) => 1,
        (None, StatementKind::Restatement) => return Err(StoreError::NothingToRestate { agreement: id.to_owned(), period }),
        (Some(last), StatementKind::Original) => {
            return Err(StoreError::StatementExists { agreement: id.to_owned(), period, sequence: last.head.sequence });
        }
        (Some(last), StatementKind::Restatement) => last.head.sequence + 1,
    };
    let leaf = transparency::statement_event(id, &period, sequence, new.kind.as_str(), new.digest);
    let leaf = log::record(sql, "statement", log::statement_subject(id, &period, sequence), leaf)?;
    let leaf = i64::try_from(leaf).map_err(|_| StoreError::Log(format!("the log is full at {leaf} leaves")))?;
    sql.execute(
        "INSERT INTO statements (agreement_id, period, seq, kind, agreement_version, digest, body, leaf, finalised_secs) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            Param::Text(id),
            Param::Text(&period),
            Param::Int(i64::from(sequence)),
            Param::Text(new.kind.as_str()),
            Param::Int(i64::from(new.agreement_version)),
            Param::Text(new.digest),
            Param::Bytes(new.canonical),
            Param::Int(leaf),
            Param::Int(new.finalised_at.secs()),
        ],
    )?;
    keep_amounts(sql, id, &period, sequence, statement)?;
    Ok(StoredStatement {
        head: StatementHead {
            agreement_id: new.agreement_id.clone(),
            agreement_version: new.agreement_version,
            period: new.period,
            sequence,
            kind: new.kind,
            digest: new.digest.to_owned(),
            leaf: u64::try_from(leaf).ok(),
            finalised_at: Some(Instant::from_parts(new.finalised_at.secs(), 0)),
        },
        canonical: new.canonical.to_vec(),
    })
}

/// Keeps a statement's currency and net payable beside it, for the lists ([`crate::accounts`]).
fn keep_amounts(sql: &mut impl Sql, id: &str, period: &str, sequence: u32, statement: &Statement) -> Result<(), StoreError> {
    let net = statement.totals.net_payable.to_string();
    let query = match sql.dialect() {
        Dialect::Sqlite => {
            "INSERT INTO statement_amounts (agreement_id, period, seq, currency, net_payable_minor) VALUES ($1, $2, $3, $4, $5)"
        }
        Dialect::Postgres => {
            "INSERT INTO statement_amounts (agreement_id, period, seq, currency, net_payable_minor) \
             VALUES ($1, $2, $3, $4, CAST(CAST($5 AS TEXT) AS NUMERIC))"
        }
    };
    sql.execute(
        query,
        &[Param::Text(id), Param::Text(period), Param::Int(i64::from(sequence)), Param::Text(statement.currency.code()), Param::Text(&net)],
    )?;
    Ok(())
}

/// Fills `statement_amounts` from the statements saved before it existed (schema version 20).
pub(crate) fn fill_amounts(sql: &mut impl Sql) -> Result<(), StoreError> {
    for stored in list(sql, None)? {
        let statement = stored.statement()?;
        keep_amounts(sql, stored.head.agreement_id.as_str(), &stored.head.period.to_string(), stored.head.sequence, &statement)?;
    }
    Ok(())
}

/// The latest statement of an agreement's period.
pub(crate) fn latest(sql: &mut impl Sql, agreement_id: &str, period: &str) -> Result<Option<StoredStatement>, StoreError> {
    first(
        sql,
        "SELECT agreement_id, period, seq, kind, agreement_version, digest, COALESCE(leaf, -1), finalised_secs, body FROM statements \
         WHERE agreement_id = $1 AND period = $2 ORDER BY seq DESC LIMIT 1",
        &[Param::Text(agreement_id), Param::Text(period)],
        read,
    )
}

/// One statement of an agreement's period, by sequence.
pub(crate) fn by_sequence(
    sql: &mut impl Sql,
    agreement_id: &str,
    period: &str,
    sequence: u32,
) -> Result<Option<StoredStatement>, StoreError> {
    first(
        sql,
        "SELECT agreement_id, period, seq, kind, agreement_version, digest, COALESCE(leaf, -1), finalised_secs, body FROM statements \
         WHERE agreement_id = $1 AND period = $2 AND seq = $3",
        &[Param::Text(agreement_id), Param::Text(period), Param::Int(i64::from(sequence))],
        read,
    )
}

/// Adds a signature to a statement: the deployment's, or its host's countersignature. The key
/// must be registered to one of them and the signature must verify over the statement's digest;
/// the same signature again is a no-op.
pub(crate) fn sign(sql: &mut impl Sql, statement: &StoredStatement, signed: &Signed) -> Result<(), StoreError> {
    let what = format!("statement {} {} #{}", statement.head.agreement_id, statement.head.period, statement.head.sequence);
    let key = VerifierKey::parse(&signed.key).map_err(|e| StoreError::Signature(format!("the key signing {what}: {e}")))?;
    let agreement = agreements::require(sql, statement.head.agreement_id.as_str(), Some(statement.head.agreement_version))?;
    let deployment = keys::deployment(sql)?.into_iter().map(|k| k.key);
    let host = keys::of_party(sql, agreement.host().as_str())?;
    if host.contains(&key) {
        // A countersignature: only by the host's current key.
        keys::require_current(sql, agreement.host().as_str(), &key, "countersign")?;
    }
    if !deployment.chain(host).any(|k| k == key) {
        return Err(StoreError::Signature(format!(
            "key {} is neither the deployment's nor registered for host {}, so it cannot sign {what}",
            signed.key,
            agreement.host()
        )));
    }
    key.verify(&transparency::statement_message(&statement.head.digest), &signed.signature).map_err(|e| {
        StoreError::Signature(format!(
            "the signature by {} is not a signature of {what} (digest {}): {e}",
            key.name(),
            statement.head.digest
        ))
    })?;
    let period = statement.head.period.to_string();
    sql.execute(
        "INSERT INTO statement_signatures (agreement_id, period, seq, key, signature) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (agreement_id, period, seq, key) DO NOTHING",
        &[
            Param::Text(statement.head.agreement_id.as_str()),
            Param::Text(&period),
            Param::Int(i64::from(statement.head.sequence)),
            Param::Text(&signed.key),
            Param::Bytes(&signed.signature),
        ],
    )?;
    Ok(())
}

/// A statement's signatures, by key.
pub(crate) fn signatures(sql: &mut impl Sql, statement: &StoredStatement) -> Result<Vec<Signed>, StoreError> {
    let period = statement.head.period.to_string();
    rows(
        sql,
        "SELECT key, signature FROM statement_signatures WHERE agreement_id = $1 AND period = $2 AND seq = $3 ORDER BY key",
        &[Param::Text(statement.head.agreement_id.as_str()), Param::Text(&period), Param::Int(i64::from(statement.head.sequence))],
        |row| {
            let key = row.text(0)?;
            let bytes = row.bytes(1)?;
            let signature = <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt {
                what: format!("signature by {key}"),
                detail: format!("it has {} bytes", bytes.len()),
            })?;
            Ok(Signed { key, signature })
        },
    )
}

/// Every statement, or every statement of one agreement, by agreement, period and sequence.
pub(crate) fn list(sql: &mut impl Sql, agreement_id: Option<&str>) -> Result<Vec<StoredStatement>, StoreError> {
    match agreement_id {
        Some(id) => rows(
            sql,
            "SELECT agreement_id, period, seq, kind, agreement_version, digest, COALESCE(leaf, -1), finalised_secs, body FROM statements \
             WHERE agreement_id = $1 ORDER BY agreement_id, period, seq",
            &[Param::Text(id)],
            read,
        ),
        None => rows(
            sql,
            "SELECT agreement_id, period, seq, kind, agreement_version, digest, COALESCE(leaf, -1), finalised_secs, body FROM statements ORDER BY agreement_id, period, seq",
            &[],
            read,
        ),
    }
}

/// The (agreement, month) pairs closed among `licensor`'s agreements: what an ingest needs to
/// flag late records, in one query.
pub(crate) fn closed_of_licensor(sql: &mut impl Sql, licensor: &str) -> Result<Vec<(String, String)>, StoreError> {
    rows(
        sql,
        "SELECT DISTINCT agreement_id, period FROM statements \
         WHERE agreement_id IN (SELECT id FROM agreements WHERE licensor = $1)",
        &[Param::Text(licensor)],
        |row| Ok((row.text(0)?, row.text(1)?)),
    )
}

/// The periods of an agreement that have a statement, in order.
pub(crate) fn closed_periods(sql: &mut impl Sql, agreement_id: &str) -> Result<Vec<Period>, StoreError> {
    let periods =
        rows(sql, "SELECT DISTINCT period FROM statements WHERE agreement_id = $1 ORDER BY period", &[Param::Text(agreement_id)], |row| {
            row.text(0)
        })?;
    periods
        .iter()
        .map(|p| {
            Period::parse(p)
                .map_err(|e| StoreError::Corrupt { what: format!("statement of agreement {agreement_id}"), detail: e.to_string() })
        })
        .collect()
}
