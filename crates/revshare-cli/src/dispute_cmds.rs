//! `revshare dispute`: open a dispute of a finalised statement, answer it, escalate it, decide
//! it, and read disputes (SPEC §8). The rules are the core's (`revshare_core::dispute`); this
//! module names the acting party (`--by`, whose registered role is the capacity it acts in),
//! reads the clock, and prints what the store recorded.
//!
//! Before a dispute is moved, the escalations whose deadlines have passed are logged
//! (`Store::escalate_disputes`); `list` and `show` only read, and show each dispute as it stands
//! now (`StoredDispute::effective`), an escalation due included, without writing it.

use revshare_core::dispute::{Actor, Request, State};
use revshare_core::ids::{AgreementId, PartyId};
use revshare_core::text::printable;
use revshare_core::time::Period;
use revshare_store::{Store, StoredDispute};

use crate::access::{StoreArgs, open, parse};
use crate::list_cmds::{Columns, print_list};
use crate::log_cmds::now;
use crate::report::{right_align, table};
use crate::{Failure, ListFormat};

/// The most characters of another party's reason or evidence a table shows.
const MAX_SHOWN_CHARS: usize = 500;

/// What every transition says: who, why, with what evidence, and an amount where one belongs.
pub struct Said {
    pub by: String,
    pub reason: String,
    pub amount: Option<String>,
    pub evidence: Vec<String>,
    /// The arbiter an escalation names.
    pub arbiter: Option<String>,
}

/// The disputed statement: an agreement's month, which statement of it, which line.
pub struct Questioned<'a> {
    pub agreement: &'a str,
    pub period: Period,
    pub sequence: Option<u32>,
    pub line: Option<u32>,
}

/// The request `said` makes: the party's registered role is the capacity it acts in.
fn request(store: &mut (dyn Store + Send), state: State, said: Said) -> Result<Request, Failure> {
    let id = parse(PartyId::parse(&said.by))?;
    let Some(party) = store.party(&id)? else {
        return Err(Failure::Invalid(format!("error: `{id}` is not a registered party; `--by` names the party acting\n")));
    };
    let Some(role) = party.role.dispute_role() else {
        return Err(Failure::Invalid(format!(
            "error: `{id}` is an {}; disputes are opened and answered by the licensor or the host, and decided by an arbiter\n",
            party.role
        )));
    };
    let arbiter = said.arbiter.as_deref().map(|a| parse(PartyId::parse(a))).transpose()?;
    Ok(Request {
        state,
        actor: Actor { party: id.to_string(), role },
        reason: said.reason,
        amount: said.amount,
        evidence: said.evidence,
        arbiter,
    })
}

/// `dispute 3 of …: countered`, and what else there is to say (`open, claiming 12.00 USD`).
fn print(stored: &StoredDispute, more: Option<&str>) {
    let d = &stored.dispute;
    let currency = stored.terms.currency;
    println!("dispute {} of {}: {}{}", d.id, d.subject, d.state(), more.map(|m| format!(", {m}")).unwrap_or_default());
    if let Some(by) = d.respond_by(&stored.terms) {
        println!("  to be answered by {by}");
    }
    if let Some(arbiter) = d.accepted_arbiter() {
        println!("  both sides accepted {arbiter} as its arbiter");
    }
    match (d.resolution(), &stored.carried) {
        (Some(amount), Some(c)) => println!(
            "  adjustment of {} {currency}, carried by statement {} {} #{} (adjustments[{}])",
            currency.format(amount),
            d.subject.agreement,
            c.period,
            c.sequence,
            c.line
        ),
        (Some(amount), None) => println!("  adjustment of {} {currency} in the next statement closed", currency.format(amount)),
        (None, _) => {}
    }
}

/// `revshare dispute open`.
pub fn open_dispute(args: &StoreArgs, questioned: &Questioned<'_>, said: Said) -> Result<(), Failure> {
    let agreement = parse(AgreementId::parse(questioned.agreement))?;
    let mut store = open(args, false)?;
    let currency = store.agreement(&agreement, None)?.currency();
    let opening = parse(request(store.as_mut(), State::Open, said)?.transition(now(), currency, None))?;
    let stored = store.open_dispute(&agreement, questioned.period, questioned.sequence, questioned.line, opening)?;
    print(&stored, Some(&format!("claiming {} {currency}", currency.format(stored.dispute.claimed()))));
    Ok(())
}

/// `revshare dispute accept|reject|counter|escalate|decide ID`.
pub fn move_dispute(args: &StoreArgs, id: u64, state: State, said: Said) -> Result<(), Failure> {
    let mut store = open(args, false)?;
    let at = now();
    store.escalate_disputes(at)?;
    let Some(stored) = store.dispute(id)? else {
        return Err(Failure::Invalid(format!("error: there is no dispute {id}; `revshare dispute list` shows the disputes\n")));
    };
    let transition = parse(request(store.as_mut(), state, said)?.transition(at, stored.terms.currency, Some(&stored.dispute)))?;
    let stored = store.dispute_transition(id, transition)?;
    print(&stored, None);
    Ok(())
}

/// `revshare dispute list`: one row per dispute.
pub fn list(args: &StoreArgs, agreement: Option<&str>, format: ListFormat) -> Result<(), Failure> {
    let agreement = agreement.map(|a| parse(AgreementId::parse(a))).transpose()?;
    let mut store = open(args, false)?;
    let at = now();
    let disputes: Vec<StoredDispute> = store.disputes(agreement.as_ref())?.into_iter().map(|d| d.effective(at)).collect();
    match format {
        ListFormat::Json => {
            let all: Vec<_> = disputes.iter().map(StoredDispute::to_json).collect();
            println!("{}", serde_json::to_string_pretty(&all).map_err(anyhow::Error::from)?);
            return Ok(());
        }
        // One row a dispute, its history left to `dispute show`.
        ListFormat::Csv => {
            let columns = [
                "id",
                "agreement",
                "period",
                "sequence",
                "line",
                "opened_by",
                "state",
                "respond_by",
                "currency",
                "claimed",
                "adjustment",
                "carried_by",
            ];
            let row = |stored: &StoredDispute| {
                let (d, currency) = (&stored.dispute, stored.terms.currency);
                serde_json::json!({
                    "id": d.id, "agreement": d.subject.agreement.as_str(), "period": d.subject.period.to_string(),
                    "sequence": d.subject.sequence, "line": d.subject.line, "opened_by": d.opener().to_string(),
                    "state": d.state().to_string(), "respond_by": d.respond_by(&stored.terms).map(|t| t.to_string()),
                    "currency": currency.code(), "claimed": currency.format(d.claimed()),
                    "adjustment": d.resolution().map(|a| currency.format(a)),
                    "carried_by": stored.carried.as_ref().map(|c| format!("{} #{} adjustments[{}]", c.period, c.sequence, c.line)),
                })
            };
            return print_list(&disputes, format, &Columns { headings: &columns, members: &columns }, |_| Vec::new(), row, "dispute");
        }
        ListFormat::Table => {}
    }
    let mut t = table(&["id", "statement", "line", "opened by", "state", "respond by", "claimed", "adjustment", "carried by"]);
    for stored in &disputes {
        let (d, currency) = (&stored.dispute, stored.terms.currency);
        let s = &d.subject;
        t.add_row(vec![
            d.id.to_string(),
            format!("{} {} #{}", s.agreement, s.period, s.sequence),
            s.line.map(|l| l.to_string()).unwrap_or_default(),
            d.opener().to_string(),
            d.state().to_string(),
            d.respond_by(&stored.terms).map(|t| t.to_string()).unwrap_or_default(),
            format!("{} {currency}", currency.format(d.claimed())),
            d.resolution().map(|a| format!("{} {currency}", currency.format(a))).unwrap_or_default(),
            stored.carried.as_ref().map(|c| format!("{} #{} [{}]", c.period, c.sequence, c.line)).unwrap_or_default(),
        ]);
    }
    right_align(&mut t, 6);
    println!("{t}");
    println!("{}", crate::report::counted(u64::try_from(disputes.len()).unwrap_or(u64::MAX), "dispute"));
    Ok(())
}

/// `revshare dispute show ID`: the dispute and its history (as CSV: the history, a row a step).
pub fn show(args: &StoreArgs, id: u64, format: crate::Format) -> Result<(), Failure> {
    let mut store = open(args, false)?;
    let Some(stored) = store.dispute(id)?.map(|d| d.effective(now())) else {
        return Err(Failure::Invalid(format!("error: there is no dispute {id}; `revshare dispute list` shows the disputes\n")));
    };
    let currency = stored.terms.currency;
    match format {
        crate::Format::Json => {
            println!("{}", serde_json::to_string_pretty(&stored.to_json()).map_err(anyhow::Error::from)?);
            return Ok(());
        }
        crate::Format::Csv => {
            let columns = ["at", "state", "party", "role", "arbiter", "amount", "currency", "reason", "evidence"];
            let step_json = |step: &revshare_core::dispute::Transition| {
                serde_json::json!({
                    "at": step.at.to_string(), "state": step.state.to_string(), "party": step.actor.party.to_string(),
                    "role": step.actor.role.to_string(), "arbiter": step.arbiter.as_ref().map(ToString::to_string), "amount": step.amount.map(|a| currency.format(a)),
                    "currency": currency.code(), "reason": step.reason, "evidence": step.evidence.join(" "),
                })
            };
            let history = &stored.dispute.history;
            return print_list(
                history,
                ListFormat::Csv,
                &Columns { headings: &columns, members: &columns },
                |_| Vec::new(),
                step_json,
                "step",
            );
        }
        crate::Format::Table => {}
    }
    print(&stored, Some(&format!("claims {} {currency}", currency.format(stored.dispute.claimed()))));
    let mut t = table(&["when", "state", "by", "amount", "reason", "evidence"]);
    for step in &stored.dispute.history {
        t.add_row(vec![
            step.at.to_string(),
            step.state.to_string(),
            match &step.arbiter {
                Some(arbiter) => format!("{} ({}), naming {arbiter}", step.actor.party, step.actor.role),
                None => format!("{} ({})", step.actor.party, step.actor.role),
            },
            step.amount.map(|a| currency.format(a)).unwrap_or_default(),
            // Another party's words: shown, never obeyed by the terminal.
            printable(&step.reason, MAX_SHOWN_CHARS),
            step.evidence.iter().map(|e| printable(e, MAX_SHOWN_CHARS)).collect::<Vec<_>>().join("\n"),
        ]);
    }
    println!("{t}");
    Ok(())
}
