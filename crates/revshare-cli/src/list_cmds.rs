//! What the store holds, listed: `party list`, `model list`, `agreement list`, `statement list`,
//! `payment list` and `journal`, each a table for people, or for programs one JSON array (`--format json`) or
//! CSV (`--format csv`, RFC 4180 with a header row: the JSON members as columns, the same
//! values as text, `null` as an empty field).

use revshare_core::ids::{AgreementId, ModelId, PartyId};
use revshare_core::ledger::JournalEntry;
use revshare_core::text::printable;
use revshare_core::time::Period;
use revshare_store::accounts::{self, PaymentRow, StatementRow};
use revshare_store::{Grain, Role, UsageRow, compliance};
use serde_json::{Value, json};

use crate::access::{StoreArgs, open, parse};
use crate::report::{counted, right_align, table, write_csv};
use crate::{Failure, ListFormat};
use revshare_core::text::grouped;

/// A list's columns: the table's headings for people, and the JSON members (the CSV columns).
pub(crate) struct Columns<'a> {
    pub(crate) headings: &'a [&'a str],
    pub(crate) members: &'a [&'a str],
}

/// Prints `items` as a JSON array, as CSV of `columns.members`, or as a table of `row`s under
/// the headings with a closing count of `noun`s. Text from the store is made printable before it
/// reaches the terminal; JSON and CSV carry it as stored, quoted by their rules.
pub(crate) fn print_list<T>(
    items: &[T],
    format: ListFormat,
    columns: &Columns<'_>,
    row: impl Fn(&T) -> Vec<String>,
    to_json: impl Fn(&T) -> Value,
    noun: &str,
) -> Result<(), Failure> {
    match format {
        ListFormat::Json => {
            println!("{}", Value::Array(items.iter().map(to_json).collect()));
            return Ok(());
        }
        ListFormat::Csv => return write_csv(columns.members, items.iter().map(to_json)),
        ListFormat::Table => {}
    }
    let mut t = table(columns.headings);
    for item in items {
        t.add_row(row(item).iter().map(|cell| printable(cell, 200)).collect::<Vec<_>>());
    }
    if !items.is_empty() {
        println!("{t}");
    }
    println!("{}", counted(u64::try_from(items.len()).unwrap_or(u64::MAX), noun));
    Ok(())
}

/// `revshare compliance report`: the licensor's findings of the month ([`compliance::report`]).
pub fn compliance(args: &StoreArgs, licensor: &str, period: Period, format: ListFormat) -> Result<(), Failure> {
    let licensor = parse(PartyId::parse(licensor))?;
    let mut store = open(args, false)?;
    store.party(&licensor)?.filter(|p| p.role == Role::Licensor).ok_or_else(|| {
        Failure::Invalid(format!("error: `{licensor}` is not a registered licensor; `revshare party list` shows the parties\n"))
    })?;
    let report = compliance::report(store.as_mut(), &licensor, period).map_err(crate::store_cmds::close_failure)?;
    print_list(
        &report.findings,
        format,
        &Columns {
            headings: &["flags", "agreement", "host", "model", "use case", "region", "month", "records", "revenue", "amount"],
            members: compliance::FINDING_MEMBERS,
        },
        |f| {
            vec![
                f.flags.join(", "),
                f.agreement.clone().unwrap_or_else(|| "(none)".to_owned()),
                f.host.clone(),
                f.model.clone(),
                f.use_case.clone(),
                f.region.clone(),
                f.standing.unwrap_or_default().to_owned(),
                grouped(&f.records.to_string()),
                format!("{} {}", f.revenue, f.currency),
                f.amount.as_ref().map(|a| format!("{a} {}", f.currency)).unwrap_or_default(),
            ]
        },
        |f| serde_json::to_value(f).unwrap_or(Value::Null),
        "finding",
    )
}

pub fn parties(args: &StoreArgs, format: ListFormat) -> Result<(), Failure> {
    let parties = open(args, false)?.parties()?;
    print_list(
        &parties,
        format,
        &Columns { headings: &["id", "name", "role"], members: &["id", "name", "role"] },
        |p| vec![p.id.to_string(), p.name.clone(), p.role.to_string()],
        |p| json!({"id": p.id.as_str(), "name": p.name, "role": p.role.as_str()}),
        "party",
    )
}

pub fn models(args: &StoreArgs, format: ListFormat) -> Result<(), Failure> {
    let models = open(args, false)?.models()?;
    print_list(
        &models,
        format,
        &Columns {
            headings: &["id", "owner", "derived from", "registered by"],
            members: &["id", "owner", "derived_from", "registered_by"],
        },
        |m| {
            let derived_from = m.derived_from.as_ref().map_or("", ModelId::as_str);
            let registered_by = m.registered_by.as_ref().map_or("", PartyId::as_str);
            vec![m.id.to_string(), m.owner.to_string(), derived_from.to_owned(), registered_by.to_owned()]
        },
        |m| {
            json!({
                "id": m.id.as_str(),
                "owner": m.owner.as_str(),
                "derived_from": m.derived_from.as_ref().map(ModelId::as_str),
                "registered_by": m.registered_by.as_ref().map(PartyId::as_str),
            })
        },
        "model",
    )
}

/// The latest version of every agreement.
pub fn agreements(args: &StoreArgs, format: ListFormat) -> Result<(), Failure> {
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
        format,
        &Columns {
            headings: &["id", "version", "licensor", "host", "currency", "in effect"],
            members: &["id", "version", "licensor", "host", "currency", "effective_from", "effective_to", "digest"],
        },
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
    )
}

/// Every journal entry in posting order, each posting on its own row (in CSV too, with its
/// entry's members).
pub fn journal(args: &StoreArgs, format: ListFormat) -> Result<(), Failure> {
    let entries = open(args, false)?.journal()?;
    let postings = |e: &JournalEntry| -> Vec<Value> {
        e.postings()
            .iter()
            .map(|p| json!({"account": p.account.to_string(), "currency": p.currency.code(), "amount": p.currency.format(p.amount_minor)}))
            .collect()
    };
    let entry_json = |e: &JournalEntry| {
        json!({
            "reference": e.reference(), "kind": e.kind().to_string(), "agreement": e.agreement().as_str(),
            "description": e.description(), "postings": postings(e),
        })
    };
    match format {
        ListFormat::Json => {
            println!("{}", Value::Array(entries.iter().map(entry_json).collect()));
            return Ok(());
        }
        ListFormat::Csv => {
            let rows = entries.iter().flat_map(|e| {
                let entry = entry_json(e);
                postings(e).into_iter().map(move |mut posting| {
                    for member in ["reference", "kind", "agreement", "description"] {
                        posting[member] = entry[member].clone();
                    }
                    posting
                })
            });
            return write_csv(&["reference", "kind", "agreement", "description", "account", "currency", "amount"], rows);
        }
        ListFormat::Table => {}
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
                format!("{} {}", grouped(&p.currency.format(p.amount_minor)), p.currency),
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

/// Pending payments and the journal's payment entries, by agreement and reference, each pending,
/// confirmed or (when a later entry reverses it) reversed (`revshare_store::accounts`).
pub fn payments(args: &StoreArgs, agreement: Option<&str>, format: ListFormat) -> Result<(), Failure> {
    let agreement = parse(agreement.map(AgreementId::parse).transpose())?;
    let mut store = open(args, false)?;
    let payments = accounts::payments(store.as_mut(), agreement.as_ref())?;
    print_list(
        &payments,
        format,
        &Columns { headings: &["agreement", "reference", "from", "amount", "state"], members: &PaymentRow::COLUMNS },
        |p| {
            vec![
                p.agreement.to_string(),
                p.reference.clone(),
                p.from.as_str().to_owned(),
                format!("{} {}", grouped(&p.currency.format(p.amount_minor)), p.currency),
                p.state.as_str().to_owned(),
            ]
        },
        PaymentRow::to_json,
        "payment",
    )
}

/// Each statement with its net payable, what is paid and outstanding (payments applied oldest
/// month first, `revshare_store::accounts`), whether the host countersigned it and when it closed.
pub fn statements(args: &StoreArgs, agreement: Option<&str>, format: ListFormat) -> Result<(), Failure> {
    let id = parse(agreement.map(AgreementId::parse).transpose())?;
    let mut store = open(args, false)?;
    let listed = accounts::statements(store.as_mut(), id.as_ref())?;
    let money = |l: &StatementRow, minor: i128| format!("{} {}", grouped(&l.currency.format(minor)), l.currency);
    print_list(
        &listed,
        format,
        &Columns {
            headings: &["agreement", "period", "#", "kind", "net payable", "paid", "outstanding", "countersigned", "closed on", "digest"],
            members: &StatementRow::COLUMNS,
        },
        |l| {
            let s = &l.head;
            vec![
                s.agreement_id.to_string(),
                s.period.to_string(),
                s.sequence.to_string(),
                s.kind.as_str().to_owned(),
                money(l, l.net_payable),
                l.paid.map_or_else(String::new, |(paid, _)| money(l, paid)),
                l.paid.map_or_else(|| "carried by a later statement".to_owned(), |(_, left)| money(l, left)),
                if l.countersigned { "yes" } else { "no" }.to_owned(),
                l.closed_on.clone().unwrap_or_default(),
                format!("{}…", s.digest.get(..19).unwrap_or(&s.digest)),
            ]
        },
        StatementRow::to_json,
        "statement",
    )
}

/// An agreement's daily usage from `from` to `to` (months): a row per day, model, use case and
/// region, revenue exact in the agreement's currency.
pub fn usage(args: &StoreArgs, agreement: &str, from: Period, to: Period, format: ListFormat) -> Result<(), Failure> {
    let id = parse(AgreementId::parse(agreement))?;
    if from > to {
        return Err(Failure::Invalid(format!("error: the range starts ({from}) after it ends ({to}); give --from up to --to\n")));
    }
    let mut store = open(args, false)?;
    let currency = store.agreement(&id, None)?.currency();
    let days = store.usage(&id, from, to, Grain::Day)?;
    print_list(
        &days,
        format,
        &Columns {
            headings: &["day", "model", "use case", "region", "records", "requests", "tokens", "revenue"],
            members: &UsageRow::COLUMNS,
        },
        |d| {
            vec![
                d.date.clone(),
                d.model.clone(),
                d.use_case.clone(),
                d.region.clone(),
                grouped(&d.records.to_string()),
                grouped(&d.requests.to_string()),
                grouped(&d.input_tokens.saturating_add(d.output_tokens).to_string()),
                format!("{} {currency}", grouped(&d.revenue_text())),
            ]
        },
        |d| d.to_json(currency),
        "row",
    )
}

/// Auditors' grants, in force and revoked, with the log leaves that granted and revoked them.
pub fn grants(args: &StoreArgs, agreement: Option<&str>, format: ListFormat) -> Result<(), Failure> {
    let agreement = parse(agreement.map(AgreementId::parse).transpose())?;
    let grants = open(args, false)?.grants(agreement.as_ref(), None)?;
    print_list(
        &grants,
        format,
        &Columns {
            headings: &["auditor", "agreement", "granted (leaf)", "revoked (leaf)"],
            members: &["auditor", "agreement", "granted_leaf", "revoked_leaf"],
        },
        |g| {
            vec![
                g.auditor.to_string(),
                g.agreement.to_string(),
                g.granted_leaf.to_string(),
                g.revoked_leaf.map(|l| l.to_string()).unwrap_or_default(),
            ]
        },
        |g| {
            json!({
                "auditor": g.auditor.as_str(), "agreement": g.agreement.as_str(),
                "granted_leaf": g.granted_leaf, "revoked_leaf": g.revoked_leaf,
            })
        },
        "grant",
    )
}
