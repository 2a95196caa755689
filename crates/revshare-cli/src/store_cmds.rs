//! The commands on the system of record: `init`, `party add`, `model add`, `agreement add`,
//! `ingest`, `contribution add`, `close` and `statement show / preview / export`. Each opens the
//! store (`crate::access`), does one thing, and says what it did.
//! `close` finalises the month's statement and posts its journal entry in one transaction;
//! restatements it saves on the way post none (their difference is an adjustment line of the
//! month being closed, so its entry carries it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;
use revshare_core::ids::{AgreementId, ModelId, PartyId};
use revshare_core::statement::Statement;
use revshare_core::time::Period;
use revshare_store::close::{CloseError, close_month};
use revshare_store::{Delivery, IngestMode, Model, Party, Role, StoreError};

use crate::Failure;
use crate::access::{STORE_FILE, StoreArgs, open, parse};
use crate::ingest_sink::{Committer, Ingest, Signing, StopReason, Validate};
use crate::reading::{ReadError, display_names, read_files, report};
use crate::settle_files::{load_contributions, progress_bar};

pub fn init(args: &StoreArgs, origin: &str) -> Result<(), Failure> {
    let mut store = open(args, true)?;
    let version = store.schema_version()?;
    crate::log_cmds::ensure_deployment_key(args, store.as_mut(), origin)?;
    match &args.database {
        Some(_) => println!("store ready in PostgreSQL (schema version {version})"),
        None => println!("store ready in {} (schema version {version})", args.data.join(STORE_FILE).display()),
    }
    Ok(())
}

pub fn add_party(args: &StoreArgs, id: &str, name: &str, role: &str) -> Result<(), Failure> {
    let party = Party { id: parse(PartyId::parse(id))?, name: name.to_owned(), role: Role::parse(role)? };
    open(args, false)?.add_party(&party)?;
    println!("party {id} ({role}) registered");
    Ok(())
}

/// `revshare model add`: without `--owner`, a derived model's owner is its base model's.
pub fn add_model(args: &StoreArgs, id: &str, owner: Option<&str>, derived_from: Option<&str>, host: Option<&str>) -> Result<(), Failure> {
    let id = parse(ModelId::parse(id))?;
    let derived_from = derived_from.map(ModelId::parse).transpose().map_err(|e| Failure::Invalid(format!("error: {e}\n")))?;
    let registered_by = host.map(PartyId::parse).transpose().map_err(|e| Failure::Invalid(format!("error: {e}\n")))?;
    let mut store = open(args, false)?;
    let owner = match (owner, &derived_from) {
        (Some(owner), _) => parse(PartyId::parse(owner))?,
        (None, Some(base)) => match store.model(base)? {
            Some(base) => base.owner,
            None => {
                return Err(StoreError::UnknownModel { id: base.to_string(), purpose: format!("the model {id} derives from") }.into());
            }
        },
        (None, None) => return Err(Failure::Invalid("error: a model that derives from none needs --owner\n".to_owned())),
    };
    let model = Model { id, owner, derived_from, registered_by };
    store.add_model(&model)?;
    let by = model.registered_by.as_ref().map(|h| format!(", registered by {h}")).unwrap_or_default();
    println!("model {} of {} registered{by}", model.id, model.owner);
    Ok(())
}

pub fn add_alias(args: &StoreArgs, host: &str, host_model: &str, model: &str) -> Result<(), Failure> {
    let (host_id, host_model_id, model_id) =
        (parse(PartyId::parse(host))?, parse(ModelId::parse(host_model))?, parse(ModelId::parse(model))?);
    open(args, false)?.add_alias(&host_id, &host_model_id, &model_id)?;
    println!("host {host}'s model {host_model} is licensed model {model}");
    Ok(())
}

pub fn add_agreement(args: &StoreArgs, file: &Path) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read agreement {}", file.display()))?;
    let agreement = open(args, false)?.add_agreement(&file.display().to_string(), &text)?;
    println!("agreement {} version {} registered ({} and {})", agreement.id(), agreement.version(), agreement.licensor(), agreement.host());
    Ok(())
}

/// How `ingest` signs and acknowledges batches.
pub struct IngestSigning<'a> {
    /// The host's private key file: batches are sent signed with it.
    pub sign: Option<&'a Path>,
    /// Where to write each batch's signed receipt.
    pub receipts: Option<&'a Path>,
}

pub fn ingest(args: &StoreArgs, paths: &[PathBuf], partial: bool, batch_size: usize, signing: &IngestSigning<'_>) -> Result<(), Failure> {
    // Standard input cannot be read twice: spool it to a temporary file first. Problems still
    // name it as standard input.
    let names = display_names(paths);
    let stdin = paths.iter().any(|p| p.as_os_str() == "-");
    let spool = stdin.then(tempfile::NamedTempFile::new).transpose().context("cannot create a spool file for standard input")?;
    let paths: Vec<PathBuf> = match &spool {
        Some(spool) => {
            let mut out = spool.reopen().context("cannot open the spool file")?;
            std::io::copy(&mut std::io::stdin().lock(), &mut out).context("cannot read standard input")?;
            paths.iter().map(|p| if p.as_os_str() == "-" { spool.path().to_path_buf() } else { p.clone() }).collect()
        }
        None => paths.to_vec(),
    };
    let total: Option<u64> = paths.iter().map(|p| std::fs::metadata(p).ok().map(|m| m.len())).sum();
    // Ctrl-C stops the reading; what was handed to the store is stored, and the user is told.
    let interrupted = crate::ctrl_c()?;
    // Pass 1 (atomic mode): every record valid, or nothing is stored. In partial mode the good
    // records are stored and every bad one is reported at the end.
    let counted = if partial {
        None
    } else {
        let mut validate = Validate { interrupted: &interrupted };
        let counted = read_files(&paths, &names, &mut validate, &progress_bar(total, "checking")).map_err(|e| read_failure(e, partial))?;
        if interrupted.load(Ordering::Relaxed) {
            return Err(Failure::Interrupted("interrupted while checking the input: nothing was stored\n".to_owned()));
        }
        Some(counted)
    };
    let mut store = open(args, false)?;
    // What the store's index makes room for before the first batch: the records counted, or (in
    // partial mode) what the reader estimates from each file's first block.
    let announced = AtomicU64::new(counted.unwrap_or(0));
    let mode = if partial { IngestMode::Partial } else { IngestMode::Atomic };
    let receipts = signing
        .receipts
        .map(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("cannot open {}", p.display())))
        .transpose()?;
    let signing = Signing {
        deployment: crate::log_cmds::deployment_key(args)?,
        host_key: signing.sign.map(crate::log_cmds::read_signer).transpose()?,
        receipts,
    };
    let stop = AtomicBool::new(false);
    let (to_store, from_reader) = std::sync::mpsc::sync_channel(1);
    let (spent, back) = std::sync::mpsc::channel();
    let committer = Committer::new(store.as_mut(), mode, names.clone(), signing, &stop, &announced, spent);
    // The store's parallel steps run on threads of their own. On the parsing threads' pool they
    // would wait behind the parsing of the next block at every step, and the committing thread is
    // the one every record waits for; parsing only has to stay a batch ahead.
    let store_threads =
        rayon::ThreadPoolBuilder::new().thread_name(|n| format!("store-{n}")).build().context("cannot start the store's threads")?;
    // And parsing runs on half the cores. The store is the slower side, so parsing on every core
    // only keeps the reader further ahead while it takes the cores from the store's parallel
    // steps: on two cores, one parsing thread made a 10M ingest about 5% faster and still kept
    // ahead (the committing thread waited 0.2 s in all for its next batch; docs/BENCHMARKS.md).
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let reading_threads = rayon::ThreadPoolBuilder::new()
        .num_threads((cores / 2).max(1))
        .thread_name(|n| format!("parse-{n}"))
        .build()
        .context("cannot start the parsing threads")?;
    let (read, committed) = std::thread::scope(|scope| {
        let committing = scope.spawn(move || store_threads.install(|| committer.run(from_reader)));
        let mut sink = Ingest::new(batch_size, to_store, back, &stop, &interrupted, partial.then_some(&announced));
        let read = reading_threads.install(|| read_files(&paths, &names, &mut sink, &progress_bar(total, "ingesting")));
        sink.flush();
        // Dropping the sink closes the hand-over, so the committer ends after the last batch.
        drop(sink);
        (read, committing.join())
    });
    let mut sink = committed.map_err(|_| Failure::Other(anyhow::anyhow!("the thread committing batches panicked")))?;
    if let Err(e) = read {
        return Err(read_failure(e, partial));
    }
    let t = &sink.totals;
    let summary = format!(
        "ingested {} batch{}: accepted {}, duplicates {}, conflicts {}, refused {}, late {}, unmatched {}",
        sink.batches,
        if sink.batches == 1 { "" } else { "es" },
        t.accepted,
        t.duplicates,
        t.conflicts,
        t.refused,
        t.late,
        t.unmatched
    );
    match sink.stopped.take() {
        None if interrupted.load(Ordering::Relaxed) => Err(Failure::Interrupted(format!(
            "{summary}\ninterrupted: the batches counted above are stored, the rest of the input was not read; run the same command again to resume (what is stored comes back as duplicates)\n"
        ))),
        None => {
            println!("{summary}");
            Ok(())
        }
        Some(StopReason::Receipt(e)) => Err(Failure::Invalid(format!("{summary}\nerror: {e}\n"))),
        Some(StopReason::Store(e)) => {
            Err(Failure::Invalid(format!("{summary}\nerror: the store failed; the batch in progress was not stored: {e}\n")))
        }
        Some(StopReason::Refused(problems)) => Err(Failure::Invalid(report(
            problems,
            &format!(
                "{summary}\nthe batch holding them was refused whole: nothing of it, and nothing of the input after it, was stored; fix the records above (or pass --partial) and run the command again (batches stored before it come back as duplicates)"
            ),
        ))),
    }
}

/// Records a file of contributions to an agreement, one by one, in file order; each is checked
/// against the agreement as settlement checks it. Adding one again is a no-op, so after a refusal
/// the corrected file can be added whole.
pub fn add_contributions(args: &StoreArgs, agreement: &str, file: &Path) -> Result<(), Failure> {
    let id = parse(AgreementId::parse(agreement))?;
    let contributions = load_contributions(file)?;
    let mut store = open(args, false)?;
    for (done, c) in contributions.iter().enumerate() {
        store.add_contribution(&id, c).map_err(|e| {
            Failure::Invalid(format!(
                "error: {}: {e}\n{} before it {} recorded; adding them again changes nothing\n",
                file.display(),
                crate::report::counted(u64::try_from(done).unwrap_or(u64::MAX), "contribution"),
                if done == 1 { "was" } else { "were" }
            ))
        })?;
    }
    let n = contributions.len();
    println!("recorded {n} contribution{} to agreement {id}", if n == 1 { "" } else { "s" });
    Ok(())
}

fn read_failure(e: ReadError, partial: bool) -> Failure {
    match e {
        ReadError::Io(e) => Failure::Other(e),
        ReadError::Invalid(problems) => {
            let outcome = if partial { "the valid records were stored" } else { "nothing was stored" };
            let closing = format!("{} invalid record{}; {outcome}", problems.len(), if problems.len() == 1 { "" } else { "s" });
            Failure::Invalid(report(problems, &closing))
        }
    }
}

/// Closes a month with the store's [`close_month`]: restates earlier closed months that late
/// records changed, carrying each difference as an adjustment line, then finalises the month's
/// statement and signs it with the deployment key.
pub fn close(args: &StoreArgs, agreement_id: &str, period: Period) -> Result<Statement, Failure> {
    let id = parse(AgreementId::parse(agreement_id))?;
    let key = crate::log_cmds::deployment_key(args)?;
    let mut store = open(args, false)?;
    close_month(store.as_mut(), &id, period, &key, crate::log_cmds::now()).map(|(_, statement)| statement).map_err(close_failure)
}

/// A refused close (or preview) is the caller's to fix; a statement that cannot be encoded or
/// read back is not.
pub(crate) fn close_failure(e: CloseError) -> Failure {
    match e {
        CloseError::Canonical(_) | CloseError::Corrupt(_) => Failure::Other(e.into()),
        e => Failure::Invalid(format!("error: {e}\n")),
    }
}

pub fn show_statement(args: &StoreArgs, agreement: &str, period: Period, format: crate::Format) -> Result<(), Failure> {
    let id = parse(AgreementId::parse(agreement))?;
    let mut store = open(args, false)?;
    let Some(stored) = store.statement(&id, period)? else {
        return Err(Failure::Invalid(format!("error: {id} has no statement for {period}; close the month first (`revshare close`)\n")));
    };
    match format {
        crate::Format::Json => println!("{}", String::from_utf8_lossy(&stored.canonical)),
        crate::Format::Csv => crate::report::print_lines_csv(&stored.statement()?)?,
        crate::Format::Table => {
            let context = format!("{} statement {} of the month", stored.head.kind.as_str(), stored.head.sequence);
            print!("{}", crate::report::statement_table(&stored.canonical, &context));
            print!("{}", delivery_line(&store.delivery(&id, period)?));
        }
    }
    Ok(())
}

/// The delivery statistics as JSON: `{records, batches, late, resends}`.
fn delivery_json(d: &Delivery) -> serde_json::Value {
    serde_json::json!({"records": d.records, "batches": d.batches, "late": d.late, "resends": d.resends})
}

/// How the month's records arrived, printed under its statement: beside it, never part of it.
fn delivery_line(d: &Delivery) -> String {
    format!(
        "delivery, not part of the statement: {} records stored in {} batch{}, {} of them late; {} identical resend{} acknowledged\n",
        d.records,
        d.batches,
        if d.batches == 1 { "" } else { "es" },
        d.late,
        d.resends,
        if d.resends == 1 { "" } else { "s" }
    )
}

/// `revshare statement preview`: the open month as it would close now, marked as a preview. As
/// JSON, `{"preview": true, "as_of", "statement", "delivery"}`: the statement is what closing
/// now would finalise, byte for byte; the delivery statistics are beside it.
pub fn preview_statement(args: &StoreArgs, agreement: &str, period: Period, format: crate::Format) -> Result<(), Failure> {
    let id = parse(AgreementId::parse(agreement))?;
    let now = crate::log_cmds::now();
    let mut store = open(args, false)?;
    let statement = store.preview(&id, period).map_err(close_failure)?;
    let delivery = store.delivery(&id, period)?;
    let bytes = statement.to_canonical().map_err(anyhow::Error::from)?;
    if format == crate::Format::Csv {
        return crate::report::print_lines_csv(&statement);
    }
    if format == crate::Format::Json {
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(anyhow::Error::from)?;
        let preview =
            serde_json::json!({"preview": true, "as_of": now.to_string(), "statement": value, "delivery": delivery_json(&delivery)});
        println!("{}", serde_json::to_string_pretty(&preview).map_err(anyhow::Error::from)?);
    } else {
        let context = format!("PREVIEW as of {now}: not final, not signed, nothing booked");
        print!("{}", crate::report::statement_table(&bytes, &context));
        print!("{}", delivery_line(&delivery));
    }
    Ok(())
}

pub fn export_statement(args: &StoreArgs, agreement: &str, period: Period, sequence: Option<u32>, out: &Path) -> Result<(), Failure> {
    let stored = crate::log_cmds::find_statement(open(args, false)?.as_mut(), agreement, period, sequence)?;
    std::fs::write(out, &stored.canonical).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {} ({})", out.display(), stored.head.digest);
    Ok(())
}
