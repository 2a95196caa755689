//! `revshare demo`: a month of usage for one licensor and three hosts, settled in seconds.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use revshare_core::time::Period;

use revshare_core::contribution::parse_contribution_line;
use revshare_core::dispute::{Actor, ActorRole, Request, State as DisputeState};
use revshare_core::ids::{AgreementId, ModelId, PartyId};
use revshare_core::time::Instant;
use revshare_core::usage::{UsageRecord, parse_json_line};
use revshare_store::close::close_month;
use revshare_store::payments::{self, Payer};
use revshare_store::{IngestMode, Model, Party, Role};

use crate::Failure;
use crate::access::{StoreArgs, open, parse};
use crate::generate::{GenArgs, Profile, generate};
use crate::settle_files::settle_command;

/// One demo agreement: its file name and text, and its contributions file, if it has one.
struct DemoAgreement {
    file: &'static str,
    text: &'static str,
    contributions: Option<(&'static str, &'static str)>,
}

const AGREEMENTS: [DemoAgreement; 3] = [
    DemoAgreement {
        file: "northwind.toml",
        text: include_str!("../demo/northwind.toml"),
        contributions: Some(("contributions-northwind.jsonl", include_str!("../demo/contributions-northwind.jsonl"))),
    },
    DemoAgreement { file: "eastwater.toml", text: include_str!("../demo/eastwater.toml"), contributions: None },
    DemoAgreement {
        file: "westfield.toml",
        text: include_str!("../demo/westfield.toml"),
        contributions: Some(("contributions-westfield.jsonl", include_str!("../demo/contributions-westfield.jsonl"))),
    },
];

pub fn run(records: u64, dir: Option<PathBuf>) -> Result<(), Failure> {
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
            d
        }
        None => tempfile::Builder::new().prefix("revshare-demo-").tempdir().context("cannot create a temporary folder")?.keep(),
    };
    let period = Period::parse("2026-10").map_err(|e| anyhow::anyhow!(e))?;
    for DemoAgreement { file, text, contributions } in AGREEMENTS {
        std::fs::write(dir.join(file), text).with_context(|| format!("cannot write {file}"))?;
        if let Some((name, text)) = contributions {
            std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {name}"))?;
        }
    }
    let usage = dir.join("usage.jsonl");
    let args = GenArgs {
        records,
        seed: 2026,
        out: usage.clone(),
        period,
        hosts: vec!["northwind".into(), "eastwater".into(), "westfield".into()],
        agreement: None,
        dup_rate: 5_000,
    };
    let mut out = BufWriter::new(File::create(&usage).context("cannot create usage.jsonl")?);
    let profile = Profile::of_hosts(&args.hosts);
    generate(&args, &profile, &mut out, &|_| {}, &AtomicBool::new(false)).context("cannot write usage.jsonl")?;
    drop(out);
    println!("revshare demo: licensor meridian, hosts northwind, eastwater and westfield, {records} usage lines for {period}");
    let d = dir.display();
    println!(
        "files in {d} (try: revshare settle --agreement {d}/northwind.toml --usage {d}/usage.jsonl --contributions {d}/contributions-northwind.jsonl --period {period})\n"
    );
    for DemoAgreement { file: name, contributions, .. } in AGREEMENTS {
        let contributions = contributions.map(|(file, _)| dir.join(file));
        let (agreement, statement, summary) =
            settle_command(&dir.join(name), std::slice::from_ref(&usage), (contributions.as_deref(), None), period)?;
        println!("{}", crate::report::settled_table(&agreement, &statement, &summary));
    }
    Ok(())
}

/// The parties of the served demo: id, name, role.
const PARTIES: [(&str, &str, Role); 6] = [
    ("meridian", "Meridian Labs", Role::Licensor),
    ("northwind", "Northwind Cloud", Role::Host),
    ("eastwater", "Eastwater Compute", Role::Host),
    ("westfield", "Westfield Hosting", Role::Host),
    ("ledgerwise", "Ledgerwise Audit", Role::Auditor),
    ("arbitra", "Arbitra Arbitration", Role::Arbiter),
];

/// `revshare demo --serve`: a store with a year of the demo's business — every month of 2026
/// up to today ingested, each ended month closed as it would have been (its `close_after_days`
/// after it ended), payments recorded and confirmed for all but the last months (one pending,
/// one unpaid), contributions (northwind's `c-nw-2` waits for the licensor's acceptance), a dispute answered with a counter-offer, an auditor
/// granted northwind's agreement — then `serve` on `listen`, with a sign-in token for each party.
pub fn serve(records_per_month: u64, dir: Option<PathBuf>, listen: std::net::SocketAddr) -> Result<(), Failure> {
    let dir = match dir {
        Some(d) => d,
        None => tempfile::Builder::new().prefix("revshare-demo-").tempdir().context("cannot create a temporary folder")?.keep(),
    };
    let args = StoreArgs { data: dir.clone(), database: None, signing_key: None };
    let tokens = fill(&args, records_per_month, crate::log_cmds::now())?;
    println!("revshare demo: a year of meridian's business with northwind, eastwater and westfield, in {}", dir.display());
    println!("dashboard: http://{listen}/ — sign in with one of these tokens:");
    for (party, role, token) in &tokens {
        println!("  {party:<10} {role:<8} {token}");
    }
    crate::server_cmds::serve(
        &args,
        &crate::server_cmds::ServeOptions {
            listen,
            max_body_bytes: revshare_server::DEFAULT_MAX_BODY_BYTES,
            max_connections: 8,
            rate_limit_per_second: 0,
            webhook_hosts: Vec::new(),
            log_json: false,
        },
    )
}

/// Fills a new store in `args.data` with the demo's year up to `now`; returns each party's
/// sign-in token.
fn fill(args: &StoreArgs, records_per_month: u64, now: Instant) -> Result<Vec<(String, &'static str, String)>, Failure> {
    let mut store = open(args, true)?;
    let key = crate::log_cmds::ensure_deployment_key(args, store.as_mut(), "revshare.demo/log")?;
    for (id, name, role) in PARTIES {
        store.add_party(&Party { id: parse(PartyId::parse(id))?, name: name.to_owned(), role })?;
    }
    for model in ["m-8b", "m-70b", "m-405b"] {
        store.add_model(&Model {
            id: parse(ModelId::parse(model))?,
            owner: parse(PartyId::parse("meridian"))?,
            derived_from: None,
            registered_by: None,
        })?;
    }
    let mut agreements = Vec::new();
    for DemoAgreement { file, text, contributions } in AGREEMENTS {
        // westfield's is an amendment: its first version, the same terms, comes first.
        if text.contains("\nversion = 2\n") {
            store.add_agreement(file, &text.replacen("\nversion = 2\n", "\nversion = 1\n", 1))?;
        }
        let agreement = store.add_agreement(file, text)?;
        if let Some((name, text)) = contributions {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let contribution = parse_contribution_line(line.as_bytes())
                    .map_err(|problems| Failure::Invalid(format!("error: {name}: {problems:?}\n")))?;
                store.add_contribution(agreement.id(), &contribution)?;
            }
        }
        agreements.push(agreement);
    }
    // Each month of 2026 up to now: its usage, then its close once its time came.
    let hosts: Vec<String> = ["northwind", "eastwater", "westfield"].map(str::to_owned).to_vec();
    let profile = Profile::of_hosts(&hosts);
    let this_month = Period::of(now);
    let mut period = Period::parse("2026-01").map_err(|e| anyhow::anyhow!(e))?;
    let mut closed = Vec::new();
    while period <= this_month {
        let month_args = GenArgs {
            records: records_per_month,
            seed: 2026 + u64::from(period.month()),
            out: PathBuf::new(),
            period,
            hosts: hosts.clone(),
            agreement: None,
            dup_rate: 5_000,
        };
        let mut lines = Vec::new();
        generate(&month_args, &profile, &mut lines, &|_| {}, &AtomicBool::new(false)).context("cannot generate the demo's usage")?;
        let records: Vec<UsageRecord<'_>> = lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_json_line(l).map_err(|problems| anyhow::anyhow!("a generated record does not parse: {problems:?}")))
            .filter(|r| r.as_ref().map_or(true, |r| r.time < now))
            .collect::<Result<_, _>>()?;
        for batch in records.chunks(5_000) {
            store.ingest(batch, IngestMode::Atomic, None)?;
        }
        for agreement in &agreements {
            let at = period.end_exclusive().plus_days(agreement.close_after_days());
            let in_effect = agreement.effective_from() < period.end_exclusive();
            if at <= now && in_effect {
                close_month(store.as_mut(), agreement.id(), period, &key, at).map_err(|e| Failure::Invalid(format!("error: {e}\n")))?;
                closed.push((agreement.clone(), period, at));
            }
        }
        period = period.next();
    }
    // Payments: each statement paid by its host a week after it closed and confirmed by the
    // licensor, except the last two months: one paid and not confirmed yet, one not paid.
    let last = this_month.previous();
    for (agreement, period, at) in &closed {
        let Some(stored) = store.statement(agreement.id(), *period)? else { continue };
        let net = stored.statement()?.totals.net_payable;
        if net <= 0 || *period == last || at.plus_days(7) > now {
            continue;
        }
        let reference = format!("wire-{period}");
        let entry = payments::entry_of(agreement, net, &reference, Payer::Host).map_err(|e| anyhow::anyhow!("{e}"))?;
        store.record_payment(&entry, Payer::Host, net)?;
        if *period != last.previous() {
            store.confirm_payment(agreement.id(), &reference)?;
        }
    }
    let northwind = parse(AgreementId::parse("meridian-northwind"))?;
    // A dispute of northwind's last closed statement's first line, countered by the licensor.
    if store.statement(&northwind, last)?.is_some() {
        let actor = |party: &str, role| Actor { party: party.to_owned(), role };
        let request = |state, party: &str, role, reason: &str, amount: &str| Request {
            state,
            actor: actor(party, role),
            reason: reason.to_owned(),
            amount: Some(amount.to_owned()),
            evidence: Vec::new(),
            arbiter: None,
        };
        let usd = agreements[0].currency();
        let opening = request(DisputeState::Open, "northwind", ActorRole::Host, "search traffic double-counted on the 14th", "120.00")
            .transition(now, usd, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let opened = store.open_dispute(&northwind, last, None, Some(0), opening)?;
        let counter =
            request(DisputeState::Countered, "meridian", ActorRole::Licensor, "half of it was a retry storm on our side", "60.00")
                .transition(now, usd, Some(&opened.dispute))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        store.dispute_transition(opened.dispute.id, counter)?;
    }
    store.grant(&parse(PartyId::parse("ledgerwise"))?, &northwind)?;
    let mut tokens = Vec::new();
    for (id, _, role) in PARTIES {
        let (token, hash, token_id) = revshare_server::auth::new_token().map_err(|e| anyhow::anyhow!(e))?;
        store.add_token(&token_id, &parse(PartyId::parse(id))?, role, &hash)?;
        tokens.push((id.to_owned(), role.as_str(), token));
    }
    Ok(tokens)
}
