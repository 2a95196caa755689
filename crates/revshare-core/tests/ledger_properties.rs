//! Property tests of the ledger invariants over random journals of statements, payments,
//! adjustments and reversals, in several currencies and agreements.
//!
//! The balances are checked against an independent oracle (a plain sum of every posting per
//! account key and currency), so a mistake in `Balances` bookkeeping shows up as a disagreement.
//! proptest prints the failing case; `ledger_properties.proptest-regressions` keeps it.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use revshare_core::ids::{AgreementId, PartyId};
use revshare_core::ledger::{Account, AccountKind, Balances, EntryKind, JournalEntry, LedgerError, Party, Posting, Role};
use revshare_core::money::Currency;
use revshare_core::statement::{Inputs, Statement, Tiers, Totals};
use revshare_core::time::Period;

/// (agreement, licensor, host): two licensors, two hosts, northwind under both licensors.
const AGREEMENTS: [(&str, &str, &str); 3] = [
    ("meridian-northwind", "meridian", "northwind"),
    ("meridian-eastwind", "meridian", "eastwind"),
    ("atlas-northwind", "atlas", "northwind"),
];
const CURRENCIES: [&str; 3] = ["USD", "JPY", "BHD"];

#[derive(Debug, Clone)]
enum Op {
    Statement {
        agreement: usize,
        currency: usize,
        usage_total: i64,
        host_credit_permille: u16,
        adjustments: i64,
    },
    Payment {
        agreement: usize,
        currency: usize,
        host_pays: bool,
        amount: i64,
    },
    Adjustment {
        agreement: usize,
        currency: usize,
        amount: i64,
    },
    /// Reverses the `pick % n`-th of the n entries not yet reversed (skipped when there are none).
    Reverse {
        pick: usize,
    },
}

fn amount() -> impl Strategy<Value = i64> {
    // Mostly realistic amounts, sometimes near the top of i64 so sums reach far past it.
    prop_oneof![4 => 0i64..10_000_000, 1 => (i64::MAX / 4)..i64::MAX]
}

fn signed_amount() -> impl Strategy<Value = i64> {
    prop_oneof![(1i64..5_000_000).prop_map(|a| -a), 1i64..5_000_000, (i64::MIN + 1)..(i64::MIN / 4), (i64::MAX / 4)..i64::MAX]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..AGREEMENTS.len(), 0..CURRENCIES.len(), amount(), 0u16..=1000, prop_oneof![3 => Just(0i64), 1 => signed_amount()]).prop_map(
            |(agreement, currency, usage_total, host_credit_permille, adjustments)| Op::Statement {
                agreement,
                currency,
                usage_total,
                host_credit_permille,
                adjustments
            }
        ),
        3 => (0..AGREEMENTS.len(), 0..CURRENCIES.len(), any::<bool>(), prop_oneof![1i64..10_000_000, (i64::MAX / 4)..i64::MAX])
            .prop_map(|(agreement, currency, host_pays, amount)| Op::Payment { agreement, currency, host_pays, amount }),
        1 => (0..AGREEMENTS.len(), 0..CURRENCIES.len(), signed_amount())
            .prop_map(|(agreement, currency, amount)| Op::Adjustment { agreement, currency, amount }),
        2 => any::<usize>().prop_map(|pick| Op::Reverse { pick }),
    ]
}

fn party(id: &str) -> PartyId {
    PartyId::parse(id).expect("test party ids are valid")
}

fn currency(i: usize) -> Currency {
    Currency::parse(CURRENCIES[i]).expect("test currencies are ISO 4217")
}

fn parties(agreement: usize) -> (AgreementId, PartyId, PartyId) {
    let (a, l, h) = AGREEMENTS[agreement];
    (AgreementId::parse(a).expect("test agreement ids are valid"), party(l), party(h))
}

/// A statement built field by field with the totals the ledger reads.
fn statement(agreement: &str, period: Period, currency: Currency, usage_total: i128, host_credit: i128, adjustments: i128) -> Statement {
    Statement {
        agreement_id: agreement.to_owned(),
        agreement_version: 1,
        agreement_digest: "sha256:00".to_owned(),
        period,
        currency,
        inputs: Inputs { records: 0, usage_digest: "sha256:00".to_owned() },
        tiers: Tiers {
            metric: revshare_core::agreement::TierMetric::Tokens,
            mode: revshare_core::agreement::TierMode::Graduated,
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
    }
}

/// The op's month: op i settles the i-th month from January 2020, so statement references are
/// unique.
fn period(i: usize) -> Period {
    Period::parse(&format!("{:04}-{:02}", 2020 + i / 12, i % 12 + 1)).expect("a valid month")
}

/// The journal the ops describe, every entry built through the public constructors.
fn journal(ops: &[Op]) -> Vec<JournalEntry> {
    let mut entries: Vec<JournalEntry> = Vec::new();
    let mut reversed: BTreeSet<usize> = BTreeSet::new();
    for (i, op) in ops.iter().enumerate() {
        let entry = match op {
            Op::Statement { agreement, currency: c, usage_total, host_credit_permille, adjustments } => {
                let (id, licensor, host) = parties(*agreement);
                let usage_total = i128::from(*usage_total);
                let host_credit = usage_total * i128::from(*host_credit_permille) / 1000;
                let s = statement(id.as_str(), period(i), currency(*c), usage_total, host_credit, i128::from(*adjustments));
                JournalEntry::for_statement(&s, &licensor, &host).expect("a consistent statement posts")
            }
            Op::Payment { agreement, currency: c, host_pays, amount } => {
                let (id, licensor, host) = parties(*agreement);
                let (from, to) = if *host_pays {
                    (Party::host(&host), Party::licensor(&licensor))
                } else {
                    (Party::licensor(&licensor), Party::host(&host))
                };
                JournalEntry::payment(&from, &to, &id, currency(*c), i128::from(*amount), &format!("pay-{i}"))
                    .expect("a positive payment posts")
            }
            Op::Adjustment { agreement, currency: c, amount } => {
                let (id, licensor, host) = parties(*agreement);
                JournalEntry::adjustment(&licensor, &host, &id, currency(*c), i128::from(*amount), &format!("adj-{i}"), "test adjustment")
                    .expect("a non-zero adjustment posts")
            }
            Op::Reverse { pick } => {
                let open: Vec<usize> = (0..entries.len()).filter(|k| !reversed.contains(k)).collect();
                if open.is_empty() {
                    continue;
                }
                let k = open[pick % open.len()];
                reversed.insert(k);
                // The reversal is an entry like any other: a later op may reverse it in turn.
                JournalEntry::reversal(&entries[k], &format!("rev-{i}")).expect("a reversal posts")
            }
        };
        entries.push(entry);
    }
    entries
}

/// Σ of every posting per (account key, currency), zeros dropped: the oracle for `Balances`.
fn oracle(entries: &[JournalEntry]) -> BTreeMap<(String, Currency), i128> {
    let mut sums: BTreeMap<(String, Currency), i128> = BTreeMap::new();
    for p in entries.iter().flat_map(|e| e.postings()) {
        *sums.entry((p.account.key(), p.currency)).or_default() += p.amount_minor;
    }
    sums.retain(|_, v| *v != 0);
    sums
}

fn snapshot(balances: &Balances) -> BTreeMap<(String, Currency), i128> {
    balances.iter().map(|(a, c, b)| ((a.key(), c), b)).collect()
}

/// Σ of the postings per currency, and per (currency, role).
fn sums(postings: &[Posting]) -> (BTreeMap<Currency, i128>, BTreeMap<(Currency, Role), i128>) {
    let (mut total, mut books) = (BTreeMap::new(), BTreeMap::new());
    for p in postings {
        *total.entry(p.currency).or_default() += p.amount_minor;
        *books.entry((p.currency, p.account.role())).or_default() += p.amount_minor;
    }
    (total, books)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_entry_balances_and_reads_back(ops in prop::collection::vec(op(), 0..40)) {
        for entry in journal(&ops) {
            prop_assert_eq!(entry.check(), Ok(()));
            let (total, books) = sums(entry.postings());
            prop_assert!(total.values().all(|s| *s == 0), "{total:?}");
            prop_assert!(books.values().all(|s| *s == 0), "{books:?}");
            // What a store reads back is the same entry.
            let stored_kind = EntryKind::from_stored(entry.kind().as_str(), entry.kind().reverses()).expect("a stored kind");
            let keys: Vec<(String, Currency, i128)> = entry.postings().iter().map(|p| (p.account.key(), p.currency, p.amount_minor)).collect();
            let postings: Vec<Posting> = keys
                .iter()
                .map(|(k, c, a)| Posting { account: Account::parse(k).expect("a key parses back"), currency: *c, amount_minor: *a })
                .collect();
            let read_back = JournalEntry::from_parts(entry.reference(), stored_kind, entry.description(), postings);
            prop_assert_eq!(read_back.as_ref(), Ok(&entry));
        }
    }

    #[test]
    fn balances_sum_to_zero_per_currency(ops in prop::collection::vec(op(), 0..40)) {
        let entries = journal(&ops);
        let mut balances = Balances::new();
        for (n, entry) in entries.iter().enumerate() {
            balances.post(entry).expect("a journal of checked entries posts");
            let (total, books) = sums(&balances.iter().map(|(a, c, b)| Posting { account: a.clone(), currency: c, amount_minor: b }).collect::<Vec<_>>());
            prop_assert!(total.values().all(|s| *s == 0), "after {} entries: {:?}", n + 1, total);
            prop_assert!(books.values().all(|s| *s == 0), "after {} entries: {:?}", n + 1, books);
            prop_assert_eq!(snapshot(&balances), oracle(&entries[..=n]));
        }
        // The licensor's receivable mirrors the host's payable in every agreement and currency.
        for i in 0..AGREEMENTS.len() {
            let (id, licensor, host) = parties(i);
            for c in 0..CURRENCIES.len() {
                let payable = Account::new(Role::Host, &host, AccountKind::Payable, &id).expect("a host payable");
                let receivable = Account::new(Role::Licensor, &licensor, AccountKind::Receivable, &id).expect("a licensor receivable");
                prop_assert_eq!(balances.balance(&payable, currency(c)), -balances.balance(&receivable, currency(c)));
            }
        }
        // The journal is the same whether summed at once or entry by entry.
        prop_assert_eq!(snapshot(&Balances::from_entries(&entries).expect("the journal sums")), snapshot(&balances));
    }

    #[test]
    fn a_reversal_brings_the_balances_back(ops in prop::collection::vec(op(), 1..40), pick in any::<usize>()) {
        let entries = journal(&ops);
        let reversed: BTreeSet<&str> = entries.iter().filter_map(|e| e.kind().reverses()).collect();
        let open: Vec<usize> = (0..entries.len()).filter(|k| !reversed.contains(entries[*k].reference())).collect();
        prop_assume!(!open.is_empty());
        let k = open[pick % open.len()];
        let reversal = JournalEntry::reversal(&entries[k], "rev-final").expect("a reversal");

        // Straight after the entry: every balance is back where it was before it.
        let mut balances = Balances::from_entries(&entries[..k]).expect("a prefix sums");
        let before = snapshot(&balances);
        balances.post(&entries[k]).expect("the entry posts");
        balances.post(&reversal).expect("its reversal posts");
        prop_assert_eq!(snapshot(&balances), before);

        // At the end of the journal: the same as if the entry had never been made.
        let mut with_reversal = entries.clone();
        with_reversal.push(reversal);
        let without: Vec<JournalEntry> = entries.iter().enumerate().filter(|(i, _)| *i != k).map(|(_, e)| e.clone()).collect();
        prop_assert_eq!(
            snapshot(&Balances::from_entries(&with_reversal).expect("journal with the reversal")),
            snapshot(&Balances::from_entries(&without).expect("journal without the entry"))
        );
    }

    #[test]
    fn an_unbalanced_entry_cannot_be_built(ops in prop::collection::vec(op(), 1..20), pick in any::<usize>(), delta in prop_oneof![-1_000_000i128..0, 1i128..1_000_000]) {
        let entries = journal(&ops);
        prop_assume!(!entries.is_empty());
        let entry = &entries[pick % entries.len()];
        let mut postings = entry.postings().to_vec();
        let j = (pick / entries.len()) % postings.len();
        postings[j].amount_minor += delta;
        let c = postings[j].currency;
        let debits: i128 = postings.iter().filter(|p| p.currency == c && p.amount_minor > 0).map(|p| p.amount_minor).sum();
        let credits: i128 = postings.iter().filter(|p| p.currency == c && p.amount_minor < 0).map(|p| -p.amount_minor).sum();
        let result = JournalEntry::from_parts(entry.reference(), entry.kind().clone(), entry.description(), postings);
        prop_assert_eq!(
            result.map_err(|e| e.to_string()),
            Err(format!(
                "entry `{}` does not balance in {c}: debits {}, credits {}; debits must equal credits in every currency",
                entry.reference(),
                c.format(debits),
                c.format(credits)
            ))
        );
    }

    #[test]
    fn arbitrary_postings_build_only_when_balanced(
        items in prop::collection::vec((any::<bool>(), 0..AccountKind::ALL.len(), 0..CURRENCIES.len(), -3i128..=3), 1..8)
    ) {
        // One agreement, so that the balance rules are what decides.
        let (id, licensor, host) = parties(0);
        let postings: Vec<Posting> = items
            .iter()
            .filter_map(|(host_side, kind, c, amount)| {
                let (role, who) = if *host_side { (Role::Host, &host) } else { (Role::Licensor, &licensor) };
                let account = Account::new(role, who, AccountKind::ALL[*kind], &id).ok()?;
                Some(Posting { account, currency: currency(*c), amount_minor: *amount })
            })
            .collect();
        let (total, books) = sums(&postings);
        match JournalEntry::from_parts("arbitrary", EntryKind::Adjustment, "", postings.clone()) {
            Ok(entry) => {
                prop_assert!(total.values().all(|s| *s == 0) && books.values().all(|s| *s == 0), "{total:?} {books:?}");
                prop_assert_eq!(entry.postings(), postings.as_slice());
            }
            Err(LedgerError::Unbalanced { .. }) => prop_assert!(total.values().any(|s| *s != 0)),
            Err(LedgerError::PartyUnbalanced { .. }) => prop_assert!(books.values().any(|s| *s != 0)),
            Err(
                LedgerError::Empty { .. } | LedgerError::MissingParty { .. } | LedgerError::NotMirrored { .. }
            ) => {}
            Err(other) => prop_assert!(false, "unexpected error: {other}"),
        }
    }

    #[test]
    fn paying_every_debt_clears_the_ledger(ops in prop::collection::vec(op(), 0..40)) {
        let entries = journal(&ops);
        let mut balances = Balances::from_entries(&entries).expect("the journal sums");
        let mut n = 0;
        for c in 0..CURRENCIES.len() {
            let debts = balances.owed(currency(c));
            for debt in &debts {
                prop_assert!(debt.amount_minor > 0);
                prop_assert_eq!(debt.currency, currency(c));
                let payable = Account::new(Role::Host, &parties_of(&debt.debtor, &debt.creditor).1, AccountKind::Payable, &debt.agreement)
                    .expect("a host payable");
                let expected = if debt.debtor.role == Role::Host { -debt.amount_minor } else { debt.amount_minor };
                prop_assert_eq!(balances.balance(&payable, currency(c)), expected);
                n += 1;
                let payment = JournalEntry::payment(&debt.debtor, &debt.creditor, &debt.agreement, currency(c), debt.amount_minor, &format!("settle-{n}"))
                    .expect("paying a debt");
                balances.post(&payment).expect("the payment posts");
            }
            prop_assert_eq!(balances.owed(currency(c)), vec![]);
        }
        for (account, c, balance) in balances.iter() {
            prop_assert!(
                !matches!(account.kind(), AccountKind::Payable | AccountKind::Receivable),
                "{} still holds {} {}", account, c.format(balance), c
            );
        }
    }
}

/// (licensor, host) of a debt, whichever way it runs.
fn parties_of(debtor: &Party, creditor: &Party) -> (PartyId, PartyId) {
    if debtor.role == Role::Host { (creditor.id.clone(), debtor.id.clone()) } else { (debtor.id.clone(), creditor.id.clone()) }
}
