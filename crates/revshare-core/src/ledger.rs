//! The double-entry ledger (issue 3, §5): who owes whom, in integer minor units per currency.
//!
//! A finalised statement, a payment, an adjustment or a reversal becomes one [`JournalEntry`]: a
//! list of [`Posting`]s that balance. [`Balances`] sums entries into per-account balances and the
//! "who owes whom" view. Everything here is a pure function of its arguments: no IO, no clock, no
//! randomness; references and amounts come in from the caller, and a store persists the results.
//!
//! # Two mirrored books in one journal
//!
//! Every [`Account`] belongs to one party in one role under one agreement, and is named by a
//! stable text key `role:party:kind:agreement`, for example
//! `host:northwind:payable:meridian-northwind`. Party and agreement ids cannot contain `:`, so the
//! key splits back unambiguously ([`Account::parse`]). The kinds:
//!
//! | kind | host side | licensor side |
//! |---|---|---|
//! | `payable` / `receivable` | what the host owes under the agreement | what the licensor is owed |
//! | `usage` | usage charged to the host (usage_total) | usage income of the licensor |
//! | `contribution-credit` | credit the host earned (host_credit) | credit the licensor granted |
//! | `adjustments` | adjustments charged to the host | adjustments to the licensor |
//! | `cash` | money paid or received under the agreement | the same, licensor side |
//!
//! `payable` exists only for a host and `receivable` only for a licensor; the other kinds exist
//! for both. `cash` is a per-agreement settlement account (what moved under this agreement), not a
//! bank balance.
//!
//! An entry holds the host's books and the licensor's books side by side, and each side is a
//! balanced entry on its own, so either party can take its half into its own accounting. The
//! licensor's half mirrors the host's: `receivable` mirrors `payable`, and each other kind mirrors
//! the same kind. A statement with usage_total U, host_credit C, adjustments A and
//! net_payable N = U − C + A (SPEC §4 step 6) posts:
//!
//! | account | host side | licensor side |
//! |---|---|---|
//! | usage | debit U | credit U |
//! | adjustments | debit A | credit A |
//! | contribution-credit | credit C | debit C |
//! | payable / receivable | credit N | debit N |
//!
//! A payment of P from the host posts debit payable, credit cash on the host side and debit cash,
//! credit receivable on the licensor side (reversed directions when the licensor pays the host).
//! Only the host's part of the contribution pool is posted: the licensor's part is not a flow
//! between the parties, it stays inside usage_total.
//!
//! [`JournalEntry::check`] asserts, when an entry is built and again when it is read back
//! (TigerBeetle's pair assertions): a valid reference; at least one posting; one agreement; exactly
//! one licensor and one host, different parties; per currency, debits equal credits overall, in
//! each party's books, and between each mirrored pair of accounts. Corrections are new entries
//! ([`JournalEntry::reversal`], [`JournalEntry::adjustment`]); nothing is edited or deleted.
//! [`Balances`] adds the ledger-level rules: a reference is posted once, a reversal exactly negates
//! an earlier entry that is not yet reversed, and an agreement keeps its licensor and host.
//!
//! # Signs and units
//!
//! A posting's `amount_minor` is signed: a debit is positive, a credit negative, so an entry
//! balances when its amounts sum to zero per currency, and the balances of all accounts sum to zero
//! per currency. A balance is therefore positive when debit-heavy: the host's `payable` is
//! negative while the host owes, the licensor's `receivable` positive. Amounts are integers of the
//! currency's minor unit (`i128`, as in statements) because settlement has already done its one
//! rounding per line: the ledger only adds and negates, and integer sums are exact, associative
//! and order-independent, so two stores, or an auditor, reach the same balance to the unit. Every
//! sum is checked; `i128::MIN` is refused so that every amount and balance can be negated.
//! Currencies are never converted: each balance, and each "who owes whom", is per currency.

use std::collections::BTreeMap;
use std::fmt;

use crate::ids::{AgreementId, IdError, PartyId, is_record_id};
use crate::money::Currency;
use crate::statement::Statement;

/// The side of an agreement a party is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Licensor,
    Host,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Licensor => "licensor",
            Role::Host => "host",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A party in its role: `host northwind`, `licensor meridian`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Party {
    pub role: Role,
    pub id: PartyId,
}

impl Party {
    pub fn licensor(id: &PartyId) -> Party {
        Party { role: Role::Licensor, id: id.clone() }
    }

    pub fn host(id: &PartyId) -> Party {
        Party { role: Role::Host, id: id.clone() }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.id)
    }
}

/// What an account records; see the module documentation for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountKind {
    /// The host's debt to the licensor under an agreement (host only).
    Payable,
    /// The licensor's claim on the host under an agreement (licensor only).
    Receivable,
    /// Usage charged (host) or earned (licensor): the statements' usage_total.
    Usage,
    /// Contribution credit earned (host) or granted (licensor): the statements' host_credit.
    ContributionCredit,
    /// Adjustments charged (host) or credited (licensor): statement adjustments and adjustment
    /// entries.
    Adjustments,
    /// Money paid or received under the agreement.
    Cash,
}

const KIND_RULE: &str = "the kind must be one of payable, receivable, usage, contribution-credit, adjustments, cash";

impl AccountKind {
    pub const ALL: [AccountKind; 6] = [
        AccountKind::Payable,
        AccountKind::Receivable,
        AccountKind::Usage,
        AccountKind::ContributionCredit,
        AccountKind::Adjustments,
        AccountKind::Cash,
    ];

    /// The kind's segment in an account key.
    pub fn as_str(&self) -> &'static str {
        match self {
            AccountKind::Payable => "payable",
            AccountKind::Receivable => "receivable",
            AccountKind::Usage => "usage",
            AccountKind::ContributionCredit => "contribution-credit",
            AccountKind::Adjustments => "adjustments",
            AccountKind::Cash => "cash",
        }
    }

    fn parse(text: &str) -> Option<AccountKind> {
        AccountKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The kind of the account on the other side that mirrors this one.
    pub fn mirror(&self) -> AccountKind {
        match self {
            AccountKind::Payable => AccountKind::Receivable,
            AccountKind::Receivable => AccountKind::Payable,
            other => *other,
        }
    }

    /// Whether a party in `role` can hold an account of this kind.
    pub fn allowed_for(&self, role: Role) -> bool {
        !matches!((role, self), (Role::Licensor, AccountKind::Payable) | (Role::Host, AccountKind::Receivable))
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account: one party, in one role, under one agreement. Built only by [`Account::new`] or
/// [`Account::parse`], so its role and kind always fit together.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Account {
    agreement: AgreementId,
    role: Role,
    party: PartyId,
    kind: AccountKind,
}

const KEY_SHAPE: &str = "write it as role:party:kind:agreement, like \"host:northwind:payable:meridian-northwind\"";

impl Account {
    pub fn new(role: Role, party: &PartyId, kind: AccountKind, agreement: &AgreementId) -> Result<Account, LedgerError> {
        if !kind.allowed_for(role) {
            return Err(LedgerError::RoleKind { role, kind });
        }
        Ok(Account { agreement: agreement.clone(), role, party: party.clone(), kind })
    }

    /// The host's account of `kind`; only for kinds a host can hold (not `receivable`).
    fn host(host: &PartyId, kind: AccountKind, agreement: &AgreementId) -> Account {
        debug_assert!(kind.allowed_for(Role::Host));
        Account { agreement: agreement.clone(), role: Role::Host, party: host.clone(), kind }
    }

    /// The licensor's account of `kind`; only for kinds a licensor can hold (not `payable`).
    fn licensor(licensor: &PartyId, kind: AccountKind, agreement: &AgreementId) -> Account {
        debug_assert!(kind.allowed_for(Role::Licensor));
        Account { agreement: agreement.clone(), role: Role::Licensor, party: licensor.clone(), kind }
    }

    /// Parses a key written by [`Account::key`].
    pub fn parse(key: &str) -> Result<Account, LedgerError> {
        let bad = |reason: &'static str| LedgerError::AccountKey { key: key.to_owned(), reason };
        let parts: Vec<&str> = key.split(':').collect();
        let [role, party, kind, agreement] = parts.as_slice() else { return Err(bad(KEY_SHAPE)) };
        let role = match *role {
            "host" => Role::Host,
            "licensor" => Role::Licensor,
            _ => return Err(bad("the role must be \"host\" or \"licensor\"")),
        };
        let party =
            PartyId::parse(party).map_err(|_| bad("the party must be a party id (1-63 of a-z 0-9 _ - starting with a letter or digit)"))?;
        let kind = AccountKind::parse(kind).ok_or_else(|| bad(KIND_RULE))?;
        let agreement = AgreementId::parse(agreement)
            .map_err(|_| bad("the agreement must be an agreement id (1-63 of a-z 0-9 _ - . starting with a letter or digit)"))?;
        Account::new(role, &party, kind, &agreement)
    }

    /// The stable text key: `host:northwind:payable:meridian-northwind`.
    pub fn key(&self) -> String {
        self.to_string()
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn party(&self) -> &PartyId {
        &self.party
    }

    pub fn kind(&self) -> AccountKind {
        self.kind
    }

    pub fn agreement(&self) -> &AgreementId {
        &self.agreement
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.role, self.party, self.kind, self.agreement)
    }
}

/// One amount on one account: a debit when positive, a credit when negative.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Posting {
    pub account: Account,
    pub currency: Currency,
    pub amount_minor: i128,
}

/// Why an entry was made. A reversal names the entry it reverses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A finalised statement ([`JournalEntry::for_statement`]).
    Statement,
    /// Money paid between the parties ([`JournalEntry::payment`]).
    Payment,
    /// A correction outside a statement ([`JournalEntry::adjustment`]).
    Adjustment,
    /// The exact negation of an earlier entry ([`JournalEntry::reversal`]).
    Reversal { of: String },
}

impl EntryKind {
    /// The kind's name as stored: `statement`, `payment`, `adjustment`, `reversal`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EntryKind::Statement => "statement",
            EntryKind::Payment => "payment",
            EntryKind::Adjustment => "adjustment",
            EntryKind::Reversal { .. } => "reversal",
        }
    }

    /// The reference of the reversed entry, for a reversal.
    pub fn reverses(&self) -> Option<&str> {
        match self {
            EntryKind::Reversal { of } => Some(of),
            EntryKind::Statement | EntryKind::Payment | EntryKind::Adjustment => None,
        }
    }

    /// Rebuilds a kind from its stored name and, for a reversal, the reversed reference.
    pub fn from_stored(name: &str, reverses: Option<&str>) -> Result<EntryKind, LedgerError> {
        let kind = match (name, reverses) {
            ("statement", None) => EntryKind::Statement,
            ("payment", None) => EntryKind::Payment,
            ("adjustment", None) => EntryKind::Adjustment,
            ("reversal", Some(of)) => EntryKind::Reversal { of: of.to_owned() },
            ("reversal", None) => {
                return Err(LedgerError::EntryKind { name: name.to_owned(), reason: "a reversal names the entry it reverses" });
            }
            ("statement" | "payment" | "adjustment", Some(_)) => {
                return Err(LedgerError::EntryKind { name: name.to_owned(), reason: "only a reversal names a reversed entry" });
            }
            _ => {
                return Err(LedgerError::EntryKind { name: name.to_owned(), reason: "use statement, payment, adjustment or reversal" });
            }
        };
        Ok(kind)
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A balanced set of postings under one agreement. Built only through the constructors, which all
/// run [`JournalEntry::check`]; fields are private so an entry in hand balances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    reference: String,
    kind: EntryKind,
    description: String,
    postings: Vec<Posting>,
    agreement: AgreementId,
    licensor: PartyId,
    host: PartyId,
}

/// The agreement and parties an entry's postings name, found while checking it.
struct EntryParties {
    agreement: AgreementId,
    licensor: PartyId,
    host: PartyId,
}

impl JournalEntry {
    /// The entry for a finalised statement: usage_total, host_credit, adjustments and
    /// net_payable posted to both parties' books (see the module documentation). Its reference is
    /// `statement:<agreement>:<period>`: one finalised statement per agreement and month, since a
    /// closed month is corrected by adjustments, never by a second statement.
    pub fn for_statement(statement: &Statement, licensor: &PartyId, host: &PartyId) -> Result<JournalEntry, LedgerError> {
        let agreement = AgreementId::parse(&statement.agreement_id)?;
        let reference = format!("statement:{agreement}:{}", statement.period);
        let overflow = || LedgerError::Overflow { reference: reference.clone() };
        let currency = statement.currency;
        let t = &statement.totals;
        // Pair assertion on the statement's own arithmetic (SPEC §4 step 6).
        let expected = t.usage_total.checked_sub(t.host_credit).and_then(|v| v.checked_add(t.adjustments)).ok_or_else(overflow)?;
        if expected != t.net_payable {
            return Err(LedgerError::StatementTotals {
                reference,
                currency,
                usage_total: t.usage_total,
                host_credit: t.host_credit,
                adjustments: t.adjustments,
                net_payable: t.net_payable,
                expected,
            });
        }
        let neg = |v: i128| v.checked_neg().ok_or_else(overflow);
        let h = |kind| Account::host(host, kind, &agreement);
        let l = |kind| Account::licensor(licensor, kind, &agreement);
        let post = |account, amount_minor| Posting { account, currency, amount_minor };
        let postings = vec![
            post(h(AccountKind::Usage), t.usage_total),
            post(h(AccountKind::Adjustments), t.adjustments),
            post(h(AccountKind::ContributionCredit), neg(t.host_credit)?),
            post(h(AccountKind::Payable), neg(t.net_payable)?),
            post(l(AccountKind::Receivable), t.net_payable),
            post(l(AccountKind::ContributionCredit), t.host_credit),
            post(l(AccountKind::Usage), neg(t.usage_total)?),
            post(l(AccountKind::Adjustments), neg(t.adjustments)?),
        ];
        let description = format!(
            "statement {agreement} {} (agreement version {}): usage total {}, host credit {}, adjustments {}, net payable {} {currency}",
            statement.period,
            statement.agreement_version,
            currency.format(t.usage_total),
            currency.format(t.host_credit),
            currency.format(t.adjustments),
            currency.format(t.net_payable),
        );
        JournalEntry::from_parts(&reference, EntryKind::Statement, &description, postings)
    }

    /// A payment of `amount_minor` (> 0) from one party to the other under `agreement`: it lowers
    /// what the payer owes (or raises what it is owed) and moves the parties' cash accounts.
    /// Paying more than is owed is recorded as it happened; the other side then owes the excess.
    pub fn payment(
        from: &Party,
        to: &Party,
        agreement: &AgreementId,
        currency: Currency,
        amount_minor: i128,
        reference: &str,
    ) -> Result<JournalEntry, LedgerError> {
        check_reference(reference)?;
        let (licensor, host, host_pays) = match (from.role, to.role) {
            (Role::Host, Role::Licensor) => (&to.id, &from.id, true),
            (Role::Licensor, Role::Host) => (&from.id, &to.id, false),
            (Role::Host, Role::Host) | (Role::Licensor, Role::Licensor) => {
                return Err(LedgerError::PaymentParties { reference: reference.to_owned(), from: from.clone(), to: to.clone() });
            }
        };
        if amount_minor <= 0 {
            return Err(LedgerError::PaymentAmount { reference: reference.to_owned(), amount: currency.format(amount_minor), currency });
        }
        // The host's debt falls by what it pays (a debit to payable) and rises by what it receives.
        let to_host = if host_pays { amount_minor } else { amount_minor.checked_neg().ok_or_else(|| overflow(reference))? };
        let from_host = to_host.checked_neg().ok_or_else(|| overflow(reference))?;
        let post = |account, amount_minor| Posting { account, currency, amount_minor };
        let postings = vec![
            post(Account::host(host, AccountKind::Payable, agreement), to_host),
            post(Account::host(host, AccountKind::Cash, agreement), from_host),
            post(Account::licensor(licensor, AccountKind::Cash, agreement), to_host),
            post(Account::licensor(licensor, AccountKind::Receivable, agreement), from_host),
        ];
        let description = format!("payment from {from} to {to} under {agreement}: {} {currency}", currency.format(amount_minor));
        JournalEntry::from_parts(reference, EntryKind::Payment, &description, postings)
    }

    /// A correction outside a statement: a non-zero `amount_minor` the host owes the licensor in
    /// addition (positive) or less (negative), through both parties' adjustments accounts. Most
    /// corrections travel as adjustment lines of the next statement instead (SPEC §4 step 6);
    /// this is for those that cannot wait for one.
    pub fn adjustment(
        licensor: &PartyId,
        host: &PartyId,
        agreement: &AgreementId,
        currency: Currency,
        amount_minor: i128,
        reference: &str,
        description: &str,
    ) -> Result<JournalEntry, LedgerError> {
        check_reference(reference)?;
        if amount_minor == 0 {
            return Err(LedgerError::ZeroAdjustment { reference: reference.to_owned() });
        }
        let credit = amount_minor.checked_neg().ok_or_else(|| overflow(reference))?;
        let post = |account, amount_minor| Posting { account, currency, amount_minor };
        let postings = vec![
            post(Account::host(host, AccountKind::Adjustments, agreement), amount_minor),
            post(Account::host(host, AccountKind::Payable, agreement), credit),
            post(Account::licensor(licensor, AccountKind::Receivable, agreement), amount_minor),
            post(Account::licensor(licensor, AccountKind::Adjustments, agreement), credit),
        ];
        JournalEntry::from_parts(reference, EntryKind::Adjustment, description, postings)
    }

    /// A new entry that negates every posting of `original`: the correction for an entry that
    /// should not have been made. The original stays in the journal as it was.
    pub fn reversal(original: &JournalEntry, reference: &str) -> Result<JournalEntry, LedgerError> {
        let postings = original
            .postings
            .iter()
            .map(|p| {
                let amount_minor = p.amount_minor.checked_neg().ok_or_else(|| overflow(reference))?;
                Ok(Posting { account: p.account.clone(), currency: p.currency, amount_minor })
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        let description = format!("reversal of {}: {}", original.reference, original.description);
        JournalEntry::from_parts(reference, EntryKind::Reversal { of: original.reference.clone() }, &description, postings)
    }

    /// Builds an entry from stored parts, checking it: the way a store reads an entry back.
    pub fn from_parts(reference: &str, kind: EntryKind, description: &str, postings: Vec<Posting>) -> Result<JournalEntry, LedgerError> {
        let parties = validate(reference, &kind, &postings)?;
        Ok(JournalEntry {
            reference: reference.to_owned(),
            kind,
            description: description.to_owned(),
            postings,
            agreement: parties.agreement,
            licensor: parties.licensor,
            host: parties.host,
        })
    }

    /// Re-asserts every rule an entry was built under (see the module documentation); a store
    /// calls it on what it reads back, so a damaged row is caught before it is summed.
    pub fn check(&self) -> Result<(), LedgerError> {
        validate(&self.reference, &self.kind, &self.postings).map(|_| ())
    }

    /// The entry's unique reference: `statement:<agreement>:<period>` for a statement, the
    /// caller's for the others.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    pub fn kind(&self) -> &EntryKind {
        &self.kind
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }

    pub fn agreement(&self) -> &AgreementId {
        &self.agreement
    }

    pub fn licensor(&self) -> &PartyId {
        &self.licensor
    }

    pub fn host(&self) -> &PartyId {
        &self.host
    }
}

fn overflow(reference: &str) -> LedgerError {
    LedgerError::Overflow { reference: reference.to_owned() }
}

/// References are keys in a store and appear in logs and URLs: 1-128 of `A-Z a-z 0-9 . _ : -`,
/// the charset of record ids.
fn check_reference(reference: &str) -> Result<(), LedgerError> {
    if is_record_id(reference) { Ok(()) } else { Err(LedgerError::Reference { reference: reference.to_owned() }) }
}

/// Debits and credits (as a positive number) of a group of postings.
#[derive(Clone, Copy, Default)]
struct Sums {
    debits: i128,
    credits: i128,
}

impl Sums {
    fn add(&mut self, amount: i128) -> Option<()> {
        if amount >= 0 {
            self.debits = self.debits.checked_add(amount)?;
        } else {
            self.credits = self.credits.checked_add(amount.checked_neg()?)?;
        }
        Some(())
    }
}

/// The rules of one entry; returns the agreement and parties its postings name.
fn validate(reference: &str, kind: &EntryKind, postings: &[Posting]) -> Result<EntryParties, LedgerError> {
    check_reference(reference)?;
    if let EntryKind::Reversal { of } = kind {
        check_reference(of)?;
        if of == reference {
            return Err(LedgerError::SelfReversal { reference: reference.to_owned() });
        }
    }
    let Some(first) = postings.first() else { return Err(LedgerError::Empty { reference: reference.to_owned() }) };
    let agreement = &first.account.agreement;
    let (mut licensor, mut host): (Option<&PartyId>, Option<&PartyId>) = (None, None);
    for p in postings {
        if p.amount_minor == i128::MIN {
            return Err(overflow(reference));
        }
        if p.account.agreement != *agreement {
            return Err(LedgerError::MixedAgreements {
                reference: reference.to_owned(),
                first: agreement.clone(),
                second: p.account.agreement.clone(),
            });
        }
        let slot = match p.account.role {
            Role::Licensor => &mut licensor,
            Role::Host => &mut host,
        };
        match slot {
            None => *slot = Some(&p.account.party),
            Some(seen) if *seen != &p.account.party => {
                return Err(LedgerError::MixedParties {
                    reference: reference.to_owned(),
                    role: p.account.role,
                    first: (*seen).clone(),
                    second: p.account.party.clone(),
                });
            }
            Some(_) => {}
        }
    }
    let missing = |role| LedgerError::MissingParty { reference: reference.to_owned(), role };
    let licensor = licensor.ok_or_else(|| missing(Role::Licensor))?;
    let host = host.ok_or_else(|| missing(Role::Host))?;
    if licensor == host {
        return Err(LedgerError::SameParty { reference: reference.to_owned(), party: host.clone() });
    }

    // Debits = credits per currency, then within each party's books, then between each pair of
    // mirrored accounts (keyed by the host-side kind: payable for payable/receivable).
    let mut total: BTreeMap<Currency, Sums> = BTreeMap::new();
    let mut books: BTreeMap<(Currency, Role), Sums> = BTreeMap::new();
    let mut mirrors: BTreeMap<(Currency, AccountKind), (i128, i128)> = BTreeMap::new();
    for p in postings {
        let c = p.currency;
        total.entry(c).or_default().add(p.amount_minor).ok_or_else(|| overflow(reference))?;
        books.entry((c, p.account.role)).or_default().add(p.amount_minor).ok_or_else(|| overflow(reference))?;
        let net = match p.account.role {
            Role::Host => &mut mirrors.entry((c, p.account.kind)).or_default().0,
            Role::Licensor => &mut mirrors.entry((c, p.account.kind.mirror())).or_default().1,
        };
        *net = net.checked_add(p.amount_minor).ok_or_else(|| overflow(reference))?;
    }
    for (currency, sums) in &total {
        if sums.debits != sums.credits {
            return Err(LedgerError::Unbalanced {
                reference: reference.to_owned(),
                currency: *currency,
                debits: currency.format(sums.debits),
                credits: currency.format(sums.credits),
            });
        }
    }
    for ((currency, role), sums) in &books {
        if sums.debits != sums.credits {
            let party = match role {
                Role::Licensor => licensor,
                Role::Host => host,
            };
            return Err(LedgerError::PartyUnbalanced {
                reference: reference.to_owned(),
                party: Party { role: *role, id: party.clone() },
                currency: *currency,
                debits: currency.format(sums.debits),
                credits: currency.format(sums.credits),
            });
        }
    }
    for ((currency, host_kind), (host_net, licensor_net)) in &mirrors {
        // Both nets are within one balanced book, so their sum cannot overflow unless a book
        // does; compare without adding.
        if Some(*host_net) != licensor_net.checked_neg() {
            return Err(LedgerError::NotMirrored {
                reference: reference.to_owned(),
                currency: *currency,
                host_kind: *host_kind,
                host_net: currency.format(*host_net),
                licensor_kind: host_kind.mirror(),
                licensor_net: currency.format(*licensor_net),
            });
        }
    }
    Ok(EntryParties { agreement: agreement.clone(), licensor: licensor.clone(), host: host.clone() })
}

/// One debt in the "who owes whom" view: `debtor` owes `creditor` `amount_minor` (> 0) under
/// `agreement`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debt {
    pub debtor: Party,
    pub creditor: Party,
    pub agreement: AgreementId,
    pub currency: Currency,
    pub amount_minor: i128,
}

impl fmt::Display for Debt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} owes {} {} {} under {}",
            self.debtor,
            self.creditor,
            self.currency.format(self.amount_minor),
            self.currency,
            self.agreement
        )
    }
}

/// What [`Balances`] remembers of a posted entry: enough to check a later reversal of it.
#[derive(Clone, Debug)]
struct Posted {
    /// The postings, sorted, so a reversal compares whatever order it was stored in.
    postings: Vec<Posting>,
    reversed_by: Option<String>,
}

/// Balances per (account, currency), summed from checked entries, with the ledger-level rules: a
/// reference is posted once; a reversal exactly negates an earlier entry not yet reversed; an
/// agreement's licensor and host never change. Zero balances are not kept.
#[derive(Clone, Debug, Default)]
pub struct Balances {
    balances: BTreeMap<(Account, Currency), i128>,
    /// Licensor and host of each agreement seen.
    parties: BTreeMap<AgreementId, (PartyId, PartyId)>,
    posted: BTreeMap<String, Posted>,
}

impl Balances {
    pub fn new() -> Balances {
        Balances::default()
    }

    /// Sums `entries` in order, checking each one and the ledger-level rules.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a JournalEntry>) -> Result<Balances, LedgerError> {
        let mut balances = Balances::new();
        for entry in entries {
            balances.post(entry)?;
        }
        Ok(balances)
    }

    /// Adds one entry. On error nothing changes.
    pub fn post(&mut self, entry: &JournalEntry) -> Result<(), LedgerError> {
        entry.check()?;
        let reference = entry.reference();
        if self.posted.contains_key(reference) {
            return Err(LedgerError::DuplicateReference { reference: reference.to_owned() });
        }
        if let Some((licensor, host)) = self.parties.get(&entry.agreement)
            && (licensor != &entry.licensor || host != &entry.host)
        {
            return Err(LedgerError::PartiesChanged {
                reference: reference.to_owned(),
                agreement: entry.agreement.clone(),
                licensor: entry.licensor.clone(),
                host: entry.host.clone(),
                earlier: Box::new((licensor.clone(), host.clone())),
            });
        }
        let mut sorted = entry.postings.clone();
        sorted.sort();
        if let EntryKind::Reversal { of } = &entry.kind {
            let unknown = || LedgerError::UnknownOriginal { reference: reference.to_owned(), original: of.clone() };
            let original = self.posted.get(of).ok_or_else(unknown)?;
            if let Some(by) = &original.reversed_by {
                return Err(LedgerError::AlreadyReversed { reference: reference.to_owned(), original: of.clone(), by: by.clone() });
            }
            let mut negated: Vec<Posting> = original
                .postings
                .iter()
                .map(|p| Posting { account: p.account.clone(), currency: p.currency, amount_minor: p.amount_minor.saturating_neg() })
                .collect();
            negated.sort();
            if negated != sorted {
                return Err(LedgerError::InexactReversal { reference: reference.to_owned(), original: of.clone() });
            }
        }
        // Net the entry per account first (it may post one account twice), then apply.
        let mut deltas: BTreeMap<(&Account, Currency), i128> = BTreeMap::new();
        for p in &entry.postings {
            let d = deltas.entry((&p.account, p.currency)).or_default();
            *d = d.checked_add(p.amount_minor).ok_or_else(|| overflow(reference))?;
        }
        let mut updates = Vec::with_capacity(deltas.len());
        for ((account, currency), delta) in deltas {
            let old = self.balances.get(&(account.clone(), currency)).copied().unwrap_or(0);
            let new = old.checked_add(delta).filter(|v| *v != i128::MIN).ok_or_else(|| overflow(reference))?;
            updates.push(((account.clone(), currency), new));
        }
        for (key, new) in updates {
            if new == 0 {
                self.balances.remove(&key);
            } else {
                self.balances.insert(key, new);
            }
        }
        if let EntryKind::Reversal { of } = &entry.kind
            && let Some(original) = self.posted.get_mut(of)
        {
            original.reversed_by = Some(reference.to_owned());
        }
        self.parties.entry(entry.agreement.clone()).or_insert_with(|| (entry.licensor.clone(), entry.host.clone()));
        self.posted.insert(reference.to_owned(), Posted { postings: sorted, reversed_by: None });
        Ok(())
    }

    /// The balance of `account` in `currency` (debit positive); 0 when nothing is posted.
    pub fn balance(&self, account: &Account, currency: Currency) -> i128 {
        self.balances.get(&(account.clone(), currency)).copied().unwrap_or(0)
    }

    /// Every non-zero balance, ordered by account and currency.
    pub fn iter(&self) -> impl Iterator<Item = (&Account, Currency, i128)> {
        self.balances.iter().map(|((account, currency), balance)| (account, *currency, *balance))
    }

    /// The currencies with a non-zero balance.
    pub fn currencies(&self) -> Vec<Currency> {
        let mut currencies: Vec<Currency> = self.balances.keys().map(|(_, c)| *c).collect();
        currencies.sort();
        currencies.dedup();
        currencies
    }

    /// Who owes whom in `currency`, one debt per agreement with an open balance, ordered by
    /// agreement. Read from the host's payable; the licensor's receivable is its mirror.
    pub fn owed(&self, currency: Currency) -> Vec<Debt> {
        let mut debts = Vec::new();
        for (agreement, (licensor, host)) in &self.parties {
            let payable = self.balance(&Account::host(host, AccountKind::Payable, agreement), currency);
            let (licensor, host) = (Party::licensor(licensor), Party::host(host));
            // A credit balance on payable is the host's debt; a debit balance means the host paid
            // more than it owed. Balances are never i128::MIN, so the negation is exact.
            let debt = match payable.cmp(&0) {
                std::cmp::Ordering::Less => Some((host, licensor, payable.saturating_neg())),
                std::cmp::Ordering::Greater => Some((licensor, host, payable)),
                std::cmp::Ordering::Equal => None,
            };
            if let Some((debtor, creditor, amount_minor)) = debt {
                debts.push(Debt { debtor, creditor, agreement: agreement.clone(), currency, amount_minor });
            }
        }
        debts
    }
}

/// An amount with its currency's minor-unit digits, for messages.
fn minor(currency: &Currency, amount_minor: &i128) -> String {
    currency.format(*amount_minor)
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("`{key}` is not an account key: {reason}")]
    AccountKey { key: String, reason: &'static str },
    #[error("a {role} has no {kind} account: a host owes through `payable`, a licensor is owed through `receivable`")]
    RoleKind { role: Role, kind: AccountKind },
    #[error("`{name}` is not a stored entry kind: {reason}")]
    EntryKind { name: String, reason: &'static str },
    #[error("`{reference}` is not a valid entry reference: use 1-128 of A-Z a-z 0-9 . _ : -")]
    Reference { reference: String },
    #[error("entry `{reference}` reverses itself; a reversal names an earlier entry and has its own reference")]
    SelfReversal { reference: String },
    #[error("entry `{reference}` has no postings; an entry moves at least one amount")]
    Empty { reference: String },
    #[error("entry `{reference}` posts under two agreements, `{first}` and `{second}`; an entry belongs to one agreement")]
    MixedAgreements { reference: String, first: AgreementId, second: AgreementId },
    #[error("entry `{reference}` posts to two {role}s, `{first}` and `{second}`; an entry has one licensor and one host")]
    MixedParties { reference: String, role: Role, first: PartyId, second: PartyId },
    #[error("entry `{reference}` posts nothing to a {role}'s books; an entry posts to both the licensor's and the host's")]
    MissingParty { reference: String, role: Role },
    #[error("entry `{reference}` names `{party}` as both licensor and host; they must be different parties")]
    SameParty { reference: String, party: PartyId },
    #[error(
        "entry `{reference}` does not balance in {currency}: debits {debits}, credits {credits}; debits must equal credits in every currency"
    )]
    Unbalanced { reference: String, currency: Currency, debits: String, credits: String },
    #[error(
        "entry `{reference}` does not balance in the books of {party} in {currency}: debits {debits}, credits {credits}; each party's postings must balance on their own"
    )]
    PartyUnbalanced { reference: String, party: Party, currency: Currency, debits: String, credits: String },
    #[error(
        "entry `{reference}` is not mirrored in {currency}: the host's {host_kind} moves {host_net} but the licensor's {licensor_kind} moves {licensor_net}; the licensor's books must mirror the host's, amount for amount"
    )]
    NotMirrored {
        reference: String,
        currency: Currency,
        host_kind: AccountKind,
        host_net: String,
        licensor_kind: AccountKind,
        licensor_net: String,
    },
    #[error("entry `{reference}` overflows: an amount, a sum or a balance is beyond ±(2^127 - 1) minor units")]
    Overflow { reference: String },
    #[error(
        "statement `{reference}` does not add up: net_payable {} should be usage_total {} - host_credit {} + adjustments {} = {}",
        minor(.currency, .net_payable), minor(.currency, .usage_total), minor(.currency, .host_credit), minor(.currency, .adjustments), minor(.currency, .expected)
    )]
    StatementTotals {
        reference: String,
        currency: Currency,
        usage_total: i128,
        host_credit: i128,
        adjustments: i128,
        net_payable: i128,
        expected: i128,
    },
    #[error("payment `{reference}` is from {from} to {to}; a payment goes between the licensor and the host of an agreement")]
    PaymentParties { reference: String, from: Party, to: Party },
    #[error("payment `{reference}` of {amount} {currency} is not positive; record the amount paid, and reverse a payment to undo it")]
    PaymentAmount { reference: String, amount: String, currency: Currency },
    #[error("adjustment `{reference}` is zero; an adjustment changes what the host owes by a non-zero amount")]
    ZeroAdjustment { reference: String },
    #[error("entry `{reference}` is already posted; a reference is posted once, and a correction is a new entry with its own reference")]
    DuplicateReference { reference: String },
    #[error("entry `{reference}` reverses `{original}`, which is not posted before it")]
    UnknownOriginal { reference: String, original: String },
    #[error("entry `{reference}` reverses `{original}`, which `{by}` already reversed; an entry is reversed at most once")]
    AlreadyReversed { reference: String, original: String, by: String },
    #[error("entry `{reference}` does not exactly negate every posting of `{original}`, which it claims to reverse")]
    InexactReversal { reference: String, original: String },
    #[error(
        "entry `{reference}` puts agreement `{agreement}` between licensor `{licensor}` and host `{host}`, but it is between licensor `{}` and host `{}`",
        .earlier.0, .earlier.1
    )]
    PartiesChanged {
        reference: String,
        agreement: AgreementId,
        licensor: PartyId,
        host: PartyId,
        /// The licensor and host of the agreement's earlier entries.
        earlier: Box<(PartyId, PartyId)>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::{Inputs, Tiers, Totals};
    use crate::time::Period;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn party(id: &str) -> Result<PartyId, IdError> {
        PartyId::parse(id)
    }

    fn usd() -> Result<Currency, crate::money::CurrencyError> {
        Currency::parse("USD")
    }

    fn statement(
        agreement: &str,
        period: &str,
        usage_total: i128,
        host_credit: i128,
        adjustments: i128,
    ) -> Result<Statement, Box<dyn std::error::Error>> {
        Ok(Statement {
            agreement_id: agreement.to_owned(),
            agreement_version: 1,
            agreement_digest: "sha256:00".to_owned(),
            period: Period::parse(period)?,
            currency: usd()?,
            inputs: Inputs { records: 0, usage_digest: "sha256:00".to_owned() },
            tiers: Tiers {
                metric: crate::agreement::TierMetric::Tokens,
                mode: crate::agreement::TierMode::Graduated,
                bounds: vec![],
                volume: "0".to_owned(),
                tiers: vec![],
            },
            lines: vec![],
            adjustments: vec![],
            totals: Totals {
                gross_revenue: 0,
                usage_subtotal: usage_total,
                minimum_true_up: 0,
                cap_reduction: 0,
                usage_total,
                contribution_pool: host_credit,
                contribution_allocation: vec![],
                host_credit,
                adjustments,
                net_payable: usage_total - host_credit + adjustments,
            },
            flags: vec![],
        })
    }

    /// The worked example of SPEC §4 (usage_total 867.77, host_credit 12.40) as an entry.
    fn worked_example() -> Result<JournalEntry, Box<dyn std::error::Error>> {
        let s = statement("meridian-northwind", "2026-10", 86_777, 1_240, 0)?;
        Ok(JournalEntry::for_statement(&s, &party("meridian")?, &party("northwind")?)?)
    }

    fn key_amounts(entry: &JournalEntry) -> Vec<(String, i128)> {
        entry.postings().iter().map(|p| (p.account.key(), p.amount_minor)).collect()
    }

    fn message<T: fmt::Debug>(result: Result<T, LedgerError>) -> String {
        match result {
            Ok(value) => format!("unexpectedly ok: {value:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn posting(key: &str, amount_minor: i128) -> Result<Posting, Box<dyn std::error::Error>> {
        Ok(Posting { account: Account::parse(key)?, currency: usd()?, amount_minor })
    }

    fn postings(items: &[(&str, i128)]) -> Result<Vec<Posting>, Box<dyn std::error::Error>> {
        items.iter().map(|(k, a)| posting(k, *a)).collect()
    }

    const HP: &str = "host:northwind:payable:meridian-northwind";
    const HC: &str = "host:northwind:cash:meridian-northwind";
    const LR: &str = "licensor:meridian:receivable:meridian-northwind";
    const LC: &str = "licensor:meridian:cash:meridian-northwind";

    #[test]
    fn account_keys_round_trip() -> TestResult {
        for key in [HP, LR, "host:northwind:contribution-credit:meridian-northwind", "licensor:meridian:usage:a.b_c-1"] {
            assert_eq!(Account::parse(key)?.key(), key);
        }
        let a = Account::parse(HP)?;
        assert_eq!(
            (a.role(), a.party().as_str(), a.kind(), a.agreement().as_str()),
            (Role::Host, "northwind", AccountKind::Payable, "meridian-northwind")
        );
        Ok(())
    }

    #[test]
    fn bad_account_keys_say_what_is_right() {
        let shape = "write it as role:party:kind:agreement, like \"host:northwind:payable:meridian-northwind\"";
        assert_eq!(message(Account::parse("host:northwind:payable")), format!("`host:northwind:payable` is not an account key: {shape}"));
        assert_eq!(message(Account::parse("a:b:c:d:e")), format!("`a:b:c:d:e` is not an account key: {shape}"));
        assert_eq!(
            message(Account::parse("auditor:x:cash:a")),
            "`auditor:x:cash:a` is not an account key: the role must be \"host\" or \"licensor\""
        );
        assert_eq!(
            message(Account::parse("host:North:cash:a")),
            "`host:North:cash:a` is not an account key: the party must be a party id (1-63 of a-z 0-9 _ - starting with a letter or digit)"
        );
        assert_eq!(
            message(Account::parse("host:n:credit:a")),
            "`host:n:credit:a` is not an account key: the kind must be one of payable, receivable, usage, contribution-credit, adjustments, cash"
        );
        assert_eq!(
            message(Account::parse("host:n:cash:A")),
            "`host:n:cash:A` is not an account key: the agreement must be an agreement id (1-63 of a-z 0-9 _ - . starting with a letter or digit)"
        );
        assert_eq!(
            message(Account::parse("licensor:meridian:payable:meridian-northwind")),
            "a licensor has no payable account: a host owes through `payable`, a licensor is owed through `receivable`"
        );
        assert_eq!(
            message(Account::parse("host:northwind:receivable:meridian-northwind")),
            "a host has no receivable account: a host owes through `payable`, a licensor is owed through `receivable`"
        );
    }

    #[test]
    fn a_statement_posts_both_books() -> TestResult {
        let entry = worked_example()?;
        assert_eq!(entry.reference(), "statement:meridian-northwind:2026-10");
        assert_eq!(entry.kind(), &EntryKind::Statement);
        assert_eq!(
            entry.description(),
            "statement meridian-northwind 2026-10 (agreement version 1): usage total 867.77, host credit 12.40, adjustments 0.00, net payable 855.37 USD"
        );
        assert_eq!(
            key_amounts(&entry),
            vec![
                ("host:northwind:usage:meridian-northwind".to_owned(), 86_777),
                ("host:northwind:adjustments:meridian-northwind".to_owned(), 0),
                ("host:northwind:contribution-credit:meridian-northwind".to_owned(), -1_240),
                (HP.to_owned(), -85_537),
                (LR.to_owned(), 85_537),
                ("licensor:meridian:contribution-credit:meridian-northwind".to_owned(), 1_240),
                ("licensor:meridian:usage:meridian-northwind".to_owned(), -86_777),
                ("licensor:meridian:adjustments:meridian-northwind".to_owned(), 0),
            ]
        );
        assert_eq!(
            (entry.agreement().as_str(), entry.licensor().as_str(), entry.host().as_str()),
            ("meridian-northwind", "meridian", "northwind")
        );
        entry.check()?;
        let balances = Balances::from_entries([&entry])?;
        let owed: Vec<String> = balances.owed(usd()?).iter().map(ToString::to_string).collect();
        assert_eq!(owed, vec!["host northwind owes licensor meridian 855.37 USD under meridian-northwind".to_owned()]);
        assert_eq!(balances.currencies(), vec![usd()?]);
        assert!(balances.owed(Currency::parse("EUR")?).is_empty());
        Ok(())
    }

    #[test]
    fn adjustments_and_negative_net_flow_through() -> TestResult {
        // usage 10.00, credit 4.00, adjustments -20.00: the licensor owes the host 14.00.
        let s = statement("meridian-northwind", "2026-11", 1_000, 400, -2_000)?;
        let entry = JournalEntry::for_statement(&s, &party("meridian")?, &party("northwind")?)?;
        let balances = Balances::from_entries([&entry])?;
        let owed: Vec<String> = balances.owed(usd()?).iter().map(ToString::to_string).collect();
        assert_eq!(owed, vec!["licensor meridian owes host northwind 14.00 USD under meridian-northwind".to_owned()]);
        assert_eq!(balances.balance(&Account::parse("host:northwind:adjustments:meridian-northwind")?, usd()?), -2_000);
        Ok(())
    }

    #[test]
    fn a_statement_that_does_not_add_up_is_refused() -> TestResult {
        let mut s = statement("meridian-northwind", "2026-10", 86_777, 1_240, 0)?;
        s.totals.net_payable = 85_536;
        assert_eq!(
            message(JournalEntry::for_statement(&s, &party("meridian")?, &party("northwind")?)),
            "statement `statement:meridian-northwind:2026-10` does not add up: net_payable 855.36 should be usage_total 867.77 - host_credit 12.40 + adjustments 0.00 = 855.37"
        );
        s.agreement_id = "Meridian".to_owned();
        assert_eq!(
            message(JournalEntry::for_statement(&s, &party("meridian")?, &party("northwind")?)),
            "`Meridian` is not a valid agreement id: use 1-63 of a-z 0-9 _ - . starting with a letter or digit"
        );
        let s = statement("meridian-northwind", "2026-10", 100, 0, 0)?;
        assert_eq!(
            message(JournalEntry::for_statement(&s, &party("meridian")?, &party("meridian")?)),
            "entry `statement:meridian-northwind:2026-10` names `meridian` as both licensor and host; they must be different parties"
        );
        Ok(())
    }

    #[test]
    fn payments_settle_the_debt() -> TestResult {
        let (meridian, northwind) = (party("meridian")?, party("northwind")?);
        let agreement = AgreementId::parse("meridian-northwind")?;
        let statement = worked_example()?;
        let pay =
            JournalEntry::payment(&Party::host(&northwind), &Party::licensor(&meridian), &agreement, usd()?, 85_000, "pay-2026-11-03")?;
        assert_eq!(pay.description(), "payment from host northwind to licensor meridian under meridian-northwind: 850.00 USD");
        assert_eq!(
            key_amounts(&pay),
            vec![(HP.to_owned(), 85_000), (HC.to_owned(), -85_000), (LC.to_owned(), 85_000), (LR.to_owned(), -85_000)]
        );
        let balances = Balances::from_entries([&statement, &pay])?;
        let owed: Vec<String> = balances.owed(usd()?).iter().map(ToString::to_string).collect();
        assert_eq!(owed, vec!["host northwind owes licensor meridian 5.37 USD under meridian-northwind".to_owned()]);
        // Overpaying is recorded; the licensor then owes the excess, and can pay it back.
        let over = JournalEntry::payment(&Party::host(&northwind), &Party::licensor(&meridian), &agreement, usd()?, 1_000, "pay-2")?;
        let balances = Balances::from_entries([&statement, &pay, &over])?;
        assert_eq!(
            balances.owed(usd()?).iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["licensor meridian owes host northwind 4.63 USD under meridian-northwind".to_owned()]
        );
        let back = JournalEntry::payment(&Party::licensor(&meridian), &Party::host(&northwind), &agreement, usd()?, 463, "refund-1")?;
        assert_eq!(key_amounts(&back), vec![(HP.to_owned(), -463), (HC.to_owned(), 463), (LC.to_owned(), -463), (LR.to_owned(), 463)]);
        let balances = Balances::from_entries([&statement, &pay, &over, &back])?;
        assert!(balances.owed(usd()?).is_empty());
        assert_eq!(balances.balance(&Account::parse(HP)?, usd()?), 0);
        assert_eq!(balances.balance(&Account::parse(LC)?, usd()?), 85_537);
        Ok(())
    }

    #[test]
    fn bad_payments_are_refused() -> TestResult {
        let (meridian, northwind) = (party("meridian")?, party("northwind")?);
        let agreement = AgreementId::parse("meridian-northwind")?;
        let (h, l) = (Party::host(&northwind), Party::licensor(&meridian));
        assert_eq!(
            message(JournalEntry::payment(&h, &l, &agreement, usd()?, 0, "p1")),
            "payment `p1` of 0.00 USD is not positive; record the amount paid, and reverse a payment to undo it"
        );
        assert_eq!(
            message(JournalEntry::payment(&h, &l, &agreement, usd()?, -5, "p1")),
            "payment `p1` of -0.05 USD is not positive; record the amount paid, and reverse a payment to undo it"
        );
        assert_eq!(
            message(JournalEntry::payment(&h, &Party::host(&meridian), &agreement, usd()?, 5, "p1")),
            "payment `p1` is from host northwind to host meridian; a payment goes between the licensor and the host of an agreement"
        );
        assert_eq!(
            message(JournalEntry::payment(&h, &l, &agreement, usd()?, 5, "bank ref 7")),
            "`bank ref 7` is not a valid entry reference: use 1-128 of A-Z a-z 0-9 . _ : -"
        );
        let long = "x".repeat(129);
        assert_eq!(
            message(JournalEntry::payment(&h, &l, &agreement, usd()?, 5, &long)),
            format!("`{long}` is not a valid entry reference: use 1-128 of A-Z a-z 0-9 . _ : -")
        );
        Ok(())
    }

    #[test]
    fn adjustments_move_the_debt_both_ways() -> TestResult {
        let (meridian, northwind) = (party("meridian")?, party("northwind")?);
        let agreement = AgreementId::parse("meridian-northwind")?;
        let up = JournalEntry::adjustment(&meridian, &northwind, &agreement, usd()?, 500, "adj-1", "dispute d-7 decided")?;
        assert_eq!(up.description(), "dispute d-7 decided");
        assert_eq!(
            key_amounts(&up),
            vec![
                ("host:northwind:adjustments:meridian-northwind".to_owned(), 500),
                (HP.to_owned(), -500),
                (LR.to_owned(), 500),
                ("licensor:meridian:adjustments:meridian-northwind".to_owned(), -500),
            ]
        );
        let down = JournalEntry::adjustment(&meridian, &northwind, &agreement, usd()?, -200, "adj-2", "goodwill")?;
        let balances = Balances::from_entries([&up, &down])?;
        assert_eq!(balances.balance(&Account::parse(LR)?, usd()?), 300);
        assert_eq!(
            message(JournalEntry::adjustment(&meridian, &northwind, &agreement, usd()?, 0, "adj-3", "nothing")),
            "adjustment `adj-3` is zero; an adjustment changes what the host owes by a non-zero amount"
        );
        Ok(())
    }

    #[test]
    fn a_reversal_negates_and_restores() -> TestResult {
        let statement = worked_example()?;
        let reversal = JournalEntry::reversal(&statement, "rev-1")?;
        assert_eq!(reversal.kind(), &EntryKind::Reversal { of: "statement:meridian-northwind:2026-10".to_owned() });
        assert_eq!(reversal.kind().reverses(), Some("statement:meridian-northwind:2026-10"));
        assert!(reversal.description().starts_with("reversal of statement:meridian-northwind:2026-10: statement meridian-northwind"));
        for (p, r) in statement.postings().iter().zip(reversal.postings()) {
            assert_eq!((&p.account, p.currency, p.amount_minor), (&r.account, r.currency, -r.amount_minor));
        }
        let balances = Balances::from_entries([&statement, &reversal])?;
        assert_eq!(balances.iter().count(), 0);
        assert!(balances.owed(usd()?).is_empty());
        // A reversal of the reversal puts the statement back.
        let again = JournalEntry::reversal(&reversal, "rev-2")?;
        let balances = Balances::from_entries([&statement, &reversal, &again])?;
        assert_eq!(balances.balance(&Account::parse(HP)?, usd()?), -85_537);
        assert_eq!(
            message(JournalEntry::reversal(&statement, statement.reference())),
            "entry `statement:meridian-northwind:2026-10` reverses itself; a reversal names an earlier entry and has its own reference"
        );
        Ok(())
    }

    #[test]
    fn unbalanced_entries_cannot_be_built() -> TestResult {
        let r = |items: &[(&str, i128)]| -> Result<String, Box<dyn std::error::Error>> {
            Ok(message(JournalEntry::from_parts("e1", EntryKind::Adjustment, "test", postings(items)?)))
        };
        assert_eq!(
            r(&[(HP, -100), (LR, 99)])?,
            "entry `e1` does not balance in USD: debits 0.99, credits 1.00; debits must equal credits in every currency"
        );
        assert_eq!(
            r(&[(HP, -100), (LR, 100)])?,
            "entry `e1` does not balance in the books of licensor meridian in USD: debits 1.00, credits 0.00; each party's postings must balance on their own"
        );
        assert_eq!(
            r(&[(HP, 100), (HC, -100), (LR, -100), ("licensor:meridian:usage:meridian-northwind", 100)])?,
            "entry `e1` is not mirrored in USD: the host's usage moves 0.00 but the licensor's usage moves 1.00; the licensor's books must mirror the host's, amount for amount"
        );
        assert_eq!(r(&[])?, "entry `e1` has no postings; an entry moves at least one amount");
        assert_eq!(
            r(&[(HP, 1), ("licensor:meridian:receivable:other", -1)])?,
            "entry `e1` posts under two agreements, `meridian-northwind` and `other`; an entry belongs to one agreement"
        );
        assert_eq!(
            r(&[(HP, 1), ("host:eastwind:cash:meridian-northwind", -1)])?,
            "entry `e1` posts to two hosts, `northwind` and `eastwind`; an entry has one licensor and one host"
        );
        assert_eq!(
            r(&[(HP, 1), (HC, -1)])?,
            "entry `e1` posts nothing to a licensor's books; an entry posts to both the licensor's and the host's"
        );
        assert_eq!(
            r(&[(HP, i128::MIN), (LR, 1)])?,
            "entry `e1` overflows: an amount, a sum or a balance is beyond ±(2^127 - 1) minor units"
        );
        assert_eq!(
            r(&[(HP, i128::MAX), (HP, i128::MAX), (LR, 1)])?,
            "entry `e1` overflows: an amount, a sum or a balance is beyond ±(2^127 - 1) minor units"
        );
        // A balanced, mirrored entry from parts is accepted and equals the constructed one.
        let (meridian, northwind) = (party("meridian")?, party("northwind")?);
        let agreement = AgreementId::parse("meridian-northwind")?;
        let pay = JournalEntry::payment(&Party::host(&northwind), &Party::licensor(&meridian), &agreement, usd()?, 7, "p")?;
        let read_back = JournalEntry::from_parts(pay.reference(), pay.kind().clone(), pay.description(), pay.postings().to_vec())?;
        assert_eq!(read_back, pay);
        Ok(())
    }

    #[test]
    fn stored_kinds_round_trip() -> TestResult {
        for kind in [EntryKind::Statement, EntryKind::Payment, EntryKind::Adjustment, EntryKind::Reversal { of: "x".to_owned() }] {
            assert_eq!(EntryKind::from_stored(kind.as_str(), kind.reverses())?, kind);
        }
        assert_eq!(
            message(EntryKind::from_stored("refund", None)),
            "`refund` is not a stored entry kind: use statement, payment, adjustment or reversal"
        );
        assert_eq!(
            message(EntryKind::from_stored("reversal", None)),
            "`reversal` is not a stored entry kind: a reversal names the entry it reverses"
        );
        assert_eq!(
            message(EntryKind::from_stored("payment", Some("x"))),
            "`payment` is not a stored entry kind: only a reversal names a reversed entry"
        );
        Ok(())
    }

    #[test]
    fn balances_enforce_the_journal_rules() -> TestResult {
        let statement = worked_example()?;
        let (meridian, northwind, eastwind) = (party("meridian")?, party("northwind")?, party("eastwind")?);
        let agreement = AgreementId::parse("meridian-northwind")?;
        assert_eq!(
            message(Balances::from_entries([&statement, &statement])),
            "entry `statement:meridian-northwind:2026-10` is already posted; a reference is posted once, and a correction is a new entry with its own reference"
        );
        let reversal = JournalEntry::reversal(&statement, "rev-1")?;
        assert_eq!(
            message(Balances::from_entries([&reversal, &statement])),
            "entry `rev-1` reverses `statement:meridian-northwind:2026-10`, which is not posted before it"
        );
        let twice = JournalEntry::reversal(&statement, "rev-2")?;
        assert_eq!(
            message(Balances::from_entries([&statement, &reversal, &twice])),
            "entry `rev-2` reverses `statement:meridian-northwind:2026-10`, which `rev-1` already reversed; an entry is reversed at most once"
        );
        // A reversal read back with one amount changed balances but is not the original's negation.
        let mut items: Vec<Posting> = reversal.postings().to_vec();
        for p in items.iter_mut().filter(|p| p.account.kind() == AccountKind::Usage || p.account.kind() == AccountKind::Payable) {
            p.amount_minor += p.amount_minor.signum();
        }
        for p in items.iter_mut().filter(|p| p.account.kind() == AccountKind::Receivable) {
            p.amount_minor -= 1;
        }
        let forged = JournalEntry::from_parts("rev-3", reversal.kind().clone(), "forged", items)?;
        assert_eq!(
            message(Balances::from_entries([&statement, &forged])),
            "entry `rev-3` does not exactly negate every posting of `statement:meridian-northwind:2026-10`, which it claims to reverse"
        );
        let other_host = JournalEntry::payment(&Party::host(&eastwind), &Party::licensor(&meridian), &agreement, usd()?, 5, "p-east")?;
        assert_eq!(
            message(Balances::from_entries([&statement, &other_host])),
            "entry `p-east` puts agreement `meridian-northwind` between licensor `meridian` and host `eastwind`, but it is between licensor `meridian` and host `northwind`"
        );
        // A failed post changes nothing.
        let mut balances = Balances::from_entries([&statement])?;
        let before: Vec<(Account, Currency, i128)> = balances.iter().map(|(a, c, b)| (a.clone(), c, b)).collect();
        assert!(balances.post(&other_host).is_err());
        // Half the range fits in one entry (its debits are twice the amount), twice does not fit
        // in a balance.
        let usd = usd()?;
        let huge = |reference| JournalEntry::adjustment(&meridian, &northwind, &agreement, usd, i128::MAX / 2, reference, "");
        assert_eq!(
            message(Balances::from_entries([&statement, &huge("huge-1")?, &huge("huge-2")?])),
            "entry `huge-2` overflows: an amount, a sum or a balance is beyond ±(2^127 - 1) minor units"
        );
        assert_eq!(
            message(balances.post(&huge("huge-1")?).and_then(|()| balances.post(&huge("huge-2")?))),
            "entry `huge-2` overflows: an amount, a sum or a balance is beyond ±(2^127 - 1) minor units"
        );
        assert!(balances.post(&huge("huge-1")?).is_err());
        assert!(balances.post(&JournalEntry::reversal(&huge("huge-1")?, "huge-1-rev")?).is_ok());
        let after: Vec<(Account, Currency, i128)> = balances.iter().map(|(a, c, b)| (a.clone(), c, b)).collect();
        assert_eq!(before, after);
        Ok(())
    }
}
