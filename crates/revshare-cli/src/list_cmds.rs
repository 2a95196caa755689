//! What the store holds, listed: `party list`, `model list`, `agreement list`, `payment list`
//! and `journal`, each a table for people or (`--format json`) one JSON array for programs.

use std::collections::BTreeSet;

use revshare_core::ids::AgreementId;
use revshare_core::ledger::{AccountKind, EntryKind, JournalEntry, Role as LedgerRole};
use revshare_core::money::Currency;
use revshare_core::text::printable;
use serde_json::{Value, json};

use crate::Failure;
use crate::report::{counted, right_align, table};
use crate::store_cmds::{StoreArgs, open};

/// Prints `items` as a JSON array, or as a table of `header` and `row`s with a closing count of
/// `noun`s. Text from the store is made printable before it reaches the terminal.
fn print_list<T>(items: &[T], json: bool, header: &[&str], row: impl Fn(&T) -> Vec<String>, to_json: impl Fn(&T) -> Value, noun: &str) {
    if json {
        println!("{}", Value::Array(items.iter().map(to_json).collect()));
        return;
    }
    let mut t = table(header);
    for item in items {
        t.add_row(row(item).iter().map(|cell| printable(cell, 200)).collect::<Vec<_>>());
    }
    if !items.is_empty() {
        println!("{t}");
    }
    println!("{}", counted(u64::try_from(items.len()).unwrap_or(u64::MAX), noun));
}

pub fn parties(args: &StoreArgs, json: bool) -> Result<(), Failure> {
    let parties = open(args, false)?.parties()?;
    print_list(
        &parties,
        json,
        &["id", "name", "role"],
        |p| vec![p.id.to_string(), p.name.clone(), p.role.to_string()],
        |p| json!({"id": p.id.as_str(), "name": p.name, "role": p.role.as_str()}),
        "party",
    );
    Ok(())
}

pub fn models(args: &StoreArgs, json: bool) -> Result<(), Failure> {
    let models = open(args, false)?.models()?;
    print_list(
        &models,
        json,
        &["id", "owner", "derived from"],
        |m| vec![m.id.to_string(), m.owner.to_string(), m.derived_from.as_ref().map_or_else(String::new, ToString::to_string)],
        |m| json!({"id": m.id.as_str(), "owner": m.owner.as_str(), "derived_from": m.derived_from.as_ref().map(|d| d.as_str())}),
        "model",
    );
    Ok(())
}

/// The latest version of every agreement.
pub fn agreements(args: &StoreArgs, json: bool) -> Result<(), Failure> {
    let agreements = open(args, false)?.agreements()?;
    let effective = |a: &revshare_core::agreement::Agreement| {
        let from = a.effective_from().to_string();
        let from = from.get(..10).unwrap_or(&from).to_owned();
        match a.effective_to() {
            Some(to) => format!("{from} to {}", to.to_string().get(..10).unwrap_or_default()),
            None => format!("from {from}"),
        }
    };
    print_list(
        &agreements,
        json,
        &["id", "version", "licensor", "host", "currency", "in effect"],
        |a| {
            vec![
                a.id().to_string(),
                a.version().to_string(),
                a.licensor().to_string(),
                a.host().to_string(),
                a.currency().to_string(),
                effective(a),
            ]
        },
        |a| {
            json!({
                "id": a.id().as_str(), "version": a.version(), "licensor": a.licensor().as_str(), "host": a.host().as_str(),
                "currency": a.currency().code(), "effective_from": a.effective_from().to_string(),
                "effective_to": a.effective_to().map(|t| t.to_string()), "digest": a.digest(),
            })
        },
        "agreement",
    );
    Ok(())
}

/// Every journal entry in posting order, each posting on its own row.
pub fn journal(args: &StoreArgs, json: bool) -> Result<(), Failure> {
    let entries = open(args, false)?.journal()?;
    let postings = |e: &JournalEntry| -> Vec<Value> {
        e.postings()
            .iter()
            .map(|p| json!({"account": p.account.to_string(), "currency": p.currency.code(), "amount": p.currency.format(p.amount_minor)}))
            .collect()
    };
    if json {
        let entries: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "reference": e.reference(), "kind": e.kind().to_string(), "agreement": e.agreement().as_str(),
                    "description": e.description(), "postings": postings(e),
                })
            })
            .collect();
        println!("{}", Value::Array(entries));
        return Ok(());
    }
    let mut t = table(&["#", "entry", "kind", "agreement", "account", "amount"]);
    for (n, e) in entries.iter().enumerate() {
        for (i, p) in e.postings().iter().enumerate() {
            let first = i == 0;
            let cell = |text: String| if first { text } else { String::new() };
            let row = [
                cell((n + 1).to_string()),
                cell(e.reference().to_owned()),
                cell(e.kind().to_string()),
                cell(e.agreement().to_string()),
                p.account.to_string(),
                format!("{} {}", p.currency.format(p.amount_minor), p.currency),
            ];
            t.add_row(row.iter().map(|c| printable(c, 200)).collect::<Vec<_>>());
        }
    }
    right_align(&mut t, 5);
    if !entries.is_empty() {
        println!("{t}");
    }
    println!("{}, each balanced", counted(u64::try_from(entries.len()).unwrap_or(u64::MAX), "entry"));
    Ok(())
}

/// A payment as listed.
struct Payment {
    agreement: String,
    reference: String,
    /// `host` or `licensor`.
    from: &'static str,
    amount_minor: i128,
    currency: Currency,
    state: &'static str,
}

/// Pending payments first, then the journal's payment entries in posting order, each confirmed
/// or (when a later entry reverses it) reversed. Who paid is read from the host's payable
/// posting: it falls when the host pays.
pub fn payments(args: &StoreArgs, agreement: Option<&str>, json: bool) -> Result<(), Failure> {
    let agreement = agreement.map(AgreementId::parse).transpose().map_err(|e| Failure::Invalid(format!("error: {e}\n")))?;
    let mut store = open(args, false)?;
    let mut payments: Vec<Payment> = store
        .pending_payments(agreement.as_ref())?
        .into_iter()
        .map(|p| Payment {
            agreement: p.agreement_id.to_string(),
            reference: p.reference,
            from: p.from.as_str(),
            amount_minor: p.amount_minor,
            currency: p.currency,
            state: "pending",
        })
        .collect();
    let journal = store.journal()?;
    let reversed: BTreeSet<&str> = journal.iter().filter_map(|e| e.kind().reverses()).collect();
    for entry in journal.iter().filter(|e| *e.kind() == EntryKind::Payment && agreement.as_ref().is_none_or(|a| e.agreement() == a)) {
        let payable = entry.postings().iter().find(|p| p.account.role() == LedgerRole::Host && p.account.kind() == AccountKind::Payable);
        let Some(payable) = payable else { continue };
        payments.push(Payment {
            agreement: entry.agreement().to_string(),
            reference: revshare_store::payments::own_reference(entry.reference()).to_owned(),
            from: if payable.amount_minor > 0 { "host" } else { "licensor" },
            amount_minor: payable.amount_minor.abs(),
            currency: payable.currency,
            state: if reversed.contains(entry.reference()) { "reversed" } else { "confirmed" },
        });
    }
    print_list(
        &payments,
        json,
        &["agreement", "reference", "from", "amount", "state"],
        |p| {
            vec![
                p.agreement.clone(),
                p.reference.clone(),
                p.from.to_owned(),
                format!("{} {}", p.currency.format(p.amount_minor), p.currency),
                p.state.to_owned(),
            ]
        },
        |p| {
            json!({
                "agreement": p.agreement, "reference": p.reference, "from": p.from,
                "amount": p.currency.format(p.amount_minor), "currency": p.currency.code(), "state": p.state,
            })
        },
        "payment",
    );
    Ok(())
}
