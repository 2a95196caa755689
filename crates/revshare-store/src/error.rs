//! What can go wrong in a store. Each message says what failed and what would be right; refusals
//! of single usage records are not errors but entries of an [`crate::IngestReport`].

use revshare_core::dispute::DisputeError;
use revshare_core::ledger::LedgerError;
use revshare_core::money::Currency;
use revshare_core::rollup::RollupOverflow;
use revshare_core::settle::SettleError;

use crate::registry::Role;
use crate::schema::COMMITTED_LOG;

/// An error and its causes, `: `-separated: the PostgreSQL driver puts the server's message
/// (or why a connection failed) in the cause, not in its own text.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the SQLite store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the PostgreSQL store failed: {}", with_causes(.0))]
    Postgres(#[from] postgres::Error),
    /// The database setting does not parse (the setting itself is not repeated: it may hold a
    /// password).
    #[error(
        "the database setting is not a PostgreSQL connection string ({detail}); write postgres://USER@HOST:PORT/DATABASE, or settings like `host=127.0.0.1 port=5432 user=postgres dbname=revshare`"
    )]
    DatabaseSetting { detail: String },
    /// The connection failed; `target` names what was tried (host and port, database, user).
    #[error("cannot connect to PostgreSQL at {target}: {}", with_causes(.source))]
    Connect { target: String, source: postgres::Error },
    #[error(
        "the database holds a {what} that revshare cannot read ({detail}); it was changed outside revshare or is damaged — restore it from a backup"
    )]
    Corrupt { what: String, detail: String },
    /// A failure outside the data: a thread that cannot start, a caller breaking the contract.
    #[error("the store could not {action}: {detail}")]
    Internal { action: String, detail: String },
    #[error("the database schema is at version {found}, but this revshare knows versions up to {known}; use a newer revshare")]
    NewerSchema { found: i64, known: i64 },
    #[error(
        "this store's transparency log ({leaves} leaves) was written by an earlier revshare (schema version {found}), whose \
         leaves disclose their events; this revshare commits to every event with a salt (schema version {COMMITTED_LOG}) and \
         cannot rewrite a signed log. Keep this store with the revshare that wrote it, and start a new one with `revshare init`"
    )]
    DisclosingLog { found: i64, leaves: u64 },
    #[error("{0}")]
    PaymentAmount(String),
    #[error(
        "agreement {agreement} has no pending payment `{reference}`; the payer records it first (`revshare payment record`, `POST /v1/payments`)"
    )]
    NoPendingPayment { agreement: String, reference: String },

    /// The store stopped answering while a transaction was being committed: the change may or
    /// may not be stored (a repeat of a stored one is answered as such: duplicates, a no-op).
    #[error("the store stopped answering while committing, so the change may or may not be stored: {0}")]
    CommitInDoubt(Box<StoreError>),
    #[error("`{0}` is not a role; use licensor, host, auditor or arbiter")]
    BadRole(String),
    #[error(
        "the operator is not a party and `operator` is not a party id: whoever holds the store acts as the operator, and `revshare token create --operator` makes a token that does over HTTP"
    )]
    OperatorIsNoParty,
    #[error("auditor `{auditor}` holds no grant on agreement {agreement}; grants are listed by `revshare grant list`")]
    NoGrant { auditor: String, agreement: String },
    #[error("party `{id}` needs a display name: 1 to 200 characters, no control characters")]
    BadName { id: String },
    #[error("party `{id}` is already registered as {existing}; use another id for a different party")]
    PartyExists { id: String, existing: String },
    #[error("`{id}`, {purpose}, is not a registered party; register it first")]
    UnknownParty { id: String, purpose: String },
    #[error("`{id}`, {purpose}, has role {found}; it must be {}", expected.with_article())]
    WrongRole { id: String, found: Role, expected: Role, purpose: String },
    #[error("model `{id}` is already registered ({existing}); use another id for a different model")]
    ModelExists { id: String, existing: String },
    #[error("`{id}`, {purpose}, is not a registered model; register it first")]
    UnknownModel { id: String, purpose: String },
    #[error(
        "model `{id}` derives from `{base}`, which belongs to `{base_owner}`: a derived model belongs to its base model's licensor (SPEC §11), so it cannot be registered for `{owner}`{}",
        if base_owner == owner { String::new() } else { format!("; `{owner}` registers derivatives of its own models only") }
    )]
    DerivedOwner { id: String, base: String, base_owner: String, owner: String },
    #[error("a host registers models derived from a registered model only (`derived_from`); `{id}` names none")]
    HostModelNotDerived { id: String },
    #[error("host `{host}` already maps its model `{host_model}` to `{existing}`; an alias cannot be changed to point elsewhere")]
    AliasExists { host: String, host_model: String, existing: String },
    #[error(
        "model `{model}` is neither a registered model nor an alias of host `{host}`; register the model, or an alias from the host's model id to the licensed model"
    )]
    Unresolved { host: String, model: String },

    #[error("`{0}` is not a token id; use 1 to 64 of a-z 0-9 _ -")]
    BadTokenId(String),
    #[error("a token with id `{id}` or with the same hash is already registered; create a new token")]
    TokenExists { id: String },
    #[error("there is no token `{id}`; a token's id is printed when it is created")]
    UnknownToken { id: String },

    #[error("{0}")]
    Agreement(String),
    #[error("transparency log: {0}")]
    Log(String),
    #[error("signature refused: {0}")]
    Signature(String),
    #[error("agreement {id} version {version} cannot be registered: {reason}")]
    AgreementVersion { id: String, version: u32, reason: String },
    #[error(
        "agreement {id} lists model `{model}`, which belongs to `{owner}`, not to the licensor `{licensor}`; list only the licensor's models"
    )]
    ForeignModel { id: String, model: String, owner: String, licensor: String },
    #[error(
        "agreement {id}: its [[exclusivity]] entry {scope} overlaps entry {other_scope} of agreement {other} (version {other_version}, host {other_host}) in use case, region, model and time; one scope can be exclusive to one host only — narrow one of them"
    )]
    ExclusivityConflict { id: String, scope: usize, other: String, other_version: u32, other_host: String, other_scope: usize },
    #[error(
        "agreement {id} is in effect at the same time as agreement {other} (version {other_version}) between the same licensor and host, so a record could belong to both; end one before the other starts, or amend {other} instead"
    )]
    EffectiveOverlap { id: String, other: String, other_version: u32 },
    #[error(
        "agreement {id} is in {expected}, but record {record} of host {host}, already stored, falls under it and is in {found}; an agreement must be in the currency of the usage it covers"
    )]
    CurrencyMismatch { id: String, expected: String, record: String, host: String, found: String },
    #[error("agreement {id}{} is not registered", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    UnknownAgreement { id: String, version: Option<u32> },

    #[error(
        "agreement {agreement} already has a finalised statement for {period} (sequence {sequence}); statements are never replaced — save a restatement instead"
    )]
    StatementExists { agreement: String, period: String, sequence: u32 },
    #[error("agreement {agreement} has no statement for {period} to restate; save the first one as an original")]
    NothingToRestate { agreement: String, period: String },
    #[error("the statement's digest is {given}, but its bytes hash to {actual}; pass the digest of exactly these bytes")]
    StatementDigest { given: String, actual: String },
    #[error("the statement bytes are not the statement being saved: {0}")]
    StatementMismatch(String),
    #[error(transparent)]
    RollupOverflow(#[from] RollupOverflow),

    #[error(
        "the original statement of agreement {agreement} for {period} posts its journal entry; pass the entry JournalEntry::for_statement builds from it"
    )]
    EntryRequired { agreement: String, period: String },
    #[error(
        "a restatement of agreement {agreement} for {period} posts no journal entry; its difference is carried as an adjustment line of the next month's statement"
    )]
    EntryNotAllowed { agreement: String, period: String },
    #[error(
        "journal entry `{reference}` is not the entry of the statement being finalised: {detail}; build it with JournalEntry::for_statement from that statement"
    )]
    StatementEntry { reference: String, detail: String },
    #[error("entry `{reference}` is a statement's entry; it is posted with its statement when the month is closed")]
    StatementEntryAlone { reference: String },
    #[error(
        "entry `{reference}` reverses `{original}`, a statement's entry; a finalised statement is not reversed — late records and corrections are carried into the next month's statement"
    )]
    StatementReversal { reference: String, original: String },
    #[error(
        "entry `{reference}` posts in {found}, but agreement {agreement} is in {expected}; post its payments and adjustments in {expected}"
    )]
    EntryCurrency { reference: String, agreement: String, expected: Currency, found: Currency },
    #[error(transparent)]
    Ledger(#[from] LedgerError),

    /// A contribution the agreement does not admit (the rules settlement applies).
    #[error(transparent)]
    Contribution(#[from] SettleError),
    #[error(
        "agreement {agreement} has no statement {}for {period}; a dispute questions a finalised statement — close the month first",
        sequence.map(|n| format!("#{n} ")).unwrap_or_default()
    )]
    NoStatement { agreement: String, period: String, sequence: Option<u32> },
    #[error("there is no dispute {id}; `revshare dispute list` shows the disputes")]
    UnknownDispute { id: u64 },
    /// Said alike of a party that does not exist and of one in another role, so that naming
    /// parties does not tell which exist.
    #[error("`{id}` is not a registered arbiter; name a party the operator registered as an arbiter")]
    NotAnArbiter { id: String },
    /// A transition the dispute process refuses.
    #[error(transparent)]
    Dispute(#[from] DisputeError),

    #[error(
        "contribution {id} of agreement {agreement} cannot be recorded: {detail}; a contribution is never changed except to accept it — give a new one another id"
    )]
    ContributionConflict { agreement: String, id: String, detail: String },
}

/// A failure of the database itself that passes, as opposed to a refusal or a bug: the caller
/// may try again later, and nothing of the call was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The database does not answer, is starting or shutting down, or is busy past the wait.
    Unavailable,
    /// The database has no room left (a full disk, or the server's own limit).
    Full,
}

impl StoreError {
    /// The passing fault this error is, if it is one.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            StoreError::CommitInDoubt(inner) => inner.fault(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => match e.code {
                rusqlite::ErrorCode::DiskFull => Some(Fault::Full),
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked | rusqlite::ErrorCode::CannotOpen => {
                    Some(Fault::Unavailable)
                }
                _ => None,
            },
            StoreError::Postgres(e) | StoreError::Connect { source: e, .. } => match e.code().map(|state| state.code()) {
                // Class 53: insufficient resources (53100 disk full, 53200 out of memory, …).
                Some(code) if code.starts_with("53") => Some(Fault::Full),
                // Class 08: connection exceptions; 57P01–57P03: shut down or not accepting yet.
                Some(code) if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03") => Some(Fault::Unavailable),
                Some(_) => None,
                // No SQLSTATE: the connection itself failed or was closed.
                None => Some(Fault::Unavailable),
            },
            _ => None,
        }
    }
}

impl StoreError {
    /// A commit's failure: a passing fault leaves the change in doubt ([`StoreError::CommitInDoubt`]).
    pub(crate) fn in_commit(self) -> StoreError {
        if self.fault().is_some() { StoreError::CommitInDoubt(Box::new(self)) } else { self }
    }
}

impl From<crate::payments::PaymentError> for StoreError {
    fn from(error: crate::payments::PaymentError) -> StoreError {
        match error {
            crate::payments::PaymentError::Amount(detail) | crate::payments::PaymentError::Reference(detail) => {
                StoreError::PaymentAmount(detail)
            }
            crate::payments::PaymentError::Entry(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_faults_are_told_from_refusals() {
        let sqlite = |code: i32| StoreError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None));
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_FULL).fault(), Some(Fault::Full));
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_BUSY).fault(), Some(Fault::Unavailable));
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).fault(), None);
        // Nothing listens on port 1: the connection fails without an SQLSTATE.
        let refused = postgres::Client::connect("host=127.0.0.1 port=1 user=postgres connect_timeout=2", postgres::NoTls)
            .err()
            .expect("nothing listens on port 1");
        let refused = StoreError::Postgres(refused);
        assert_eq!(refused.fault(), Some(Fault::Unavailable));
        // A commit cut short by one leaves the change in doubt; a refusal at commit does not.
        let in_doubt = refused.in_commit();
        assert!(matches!(in_doubt, StoreError::CommitInDoubt(_)), "{in_doubt}");
        assert_eq!(in_doubt.fault(), Some(Fault::Unavailable));
        assert!(matches!(sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).in_commit(), StoreError::Sqlite(_)));
        assert_eq!(StoreError::BadRole("king".to_owned()).fault(), None);
    }
}
