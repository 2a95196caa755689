//! The transparency commands (SPEC §7): keys, the log's checkpoints and proofs, receipts,
//! statement signatures, statement bundles and `revshare verify`.
//!
//! The deployment's signing key is a file (`--signing-key`, default `DATA/deployment.key`, mode
//! 0600) that `init` creates; its name is the log's origin. Keys are generated from the operating
//! system's random source and only their public halves are printed or stored. The clock is read
//! here, never in the core: a checkpoint's `time` line is the only wall-clock value the log holds.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use revshare_core::bundle::{Anchor, BATCHES_DIR, Bundle, RESTATED_DIR, RestatedMonth, VerifyOptions, verify};
use revshare_core::merkle::Hash;
use revshare_core::note::{SignerKey, VerifierKey};
use revshare_core::time::{Instant, Period};
use revshare_core::transparency::{Signed, SignedBatch};
use revshare_core::usage::UsageRecord;
use revshare_store::export::{self, ExportError};
use revshare_store::receipts::{self, ProofError};
use revshare_store::{Store, StoredStatement};

use crate::Failure;
use crate::access::{StoreArgs, open, parse};

/// The default name of the deployment key, and so the log's origin.
pub const DEFAULT_ORIGIN: &str = "revshare.local/log";

/// Where the deployment's signing key is.
pub fn deployment_key_path(args: &StoreArgs) -> PathBuf {
    args.signing_key.clone().unwrap_or_else(|| args.data.join("deployment.key"))
}

/// A new key from the operating system's random source.
fn generate(name: &str) -> Result<SignerKey, Failure> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("the operating system's random source failed: {e}"))?;
    parse(SignerKey::from_seed(name, seed))
}

/// Writes a private key to a new file readable by its owner only (0600); never overwrites.
fn write_private(path: &Path, key: &SignerKey) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the key file {} (an existing key is never overwritten)", path.display()))?;
    writeln!(file, "{}", key.to_text()).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes a key's public half beside its private key file, to `<private>.pub`: the file a
/// verifier is handed (`revshare verify --trust`, `revshare party key`). Returns its path.
fn write_public(private: &Path, key: &SignerKey) -> Result<PathBuf, Failure> {
    let pub_path = PathBuf::from(format!("{}.pub", private.display()));
    std::fs::write(&pub_path, format!("{}\n", key.verifier().to_text())).with_context(|| format!("cannot write {}", pub_path.display()))?;
    Ok(pub_path)
}

/// Reads a private key file.
pub fn read_signer(path: &Path) -> Result<SignerKey, Failure> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the key file {}", path.display()))?;
    SignerKey::parse(text.trim()).map_err(|e| Failure::Invalid(format!("error: {}: {e}\n", path.display())))
}

/// Reads a public (verifier) key file.
fn read_verifier(path: &Path) -> Result<VerifierKey, Failure> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the key file {}", path.display()))?;
    VerifierKey::parse(text.trim()).map_err(|e| Failure::Invalid(format!("error: {}: {e}\n", path.display())))
}

/// The deployment's signing key.
pub fn deployment_key(args: &StoreArgs) -> Result<SignerKey, Failure> {
    let path = deployment_key_path(args);
    if !path.exists() {
        return Err(Failure::Invalid(format!(
            "error: there is no deployment signing key at {}; run `revshare init` (it creates one), or pass --signing-key FILE\n",
            path.display()
        )));
    }
    read_signer(&path)
}

/// Creates the deployment key if there is none, and registers it in the store (again: a no-op).
pub fn ensure_deployment_key(args: &StoreArgs, store: &mut (dyn Store + Send), origin: &str) -> Result<SignerKey, Failure> {
    let path = deployment_key_path(args);
    let key = if path.exists() {
        read_signer(&path)?
    } else {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let key = generate(origin)?;
        write_private(&path, &key)?;
        println!("created the deployment signing key {} ({})", path.display(), key.verifier().to_text());
        key
    };
    // Written again on every `init`, so a data folder made before `.pub` files existed gets one.
    let public = write_public(&path, &key)?;
    println!("the deployment's public key, for verifiers: {}", public.display());
    store.add_key(None, &key.verifier())?;
    Ok(key)
}

/// `revshare keys generate`: a key pair for a party; the private half to `out` (0600), the
/// public half to `out.pub` and standard output.
pub fn generate_key(name: &str, out: &Path) -> Result<(), Failure> {
    let key = generate(name)?;
    write_private(out, &key)?;
    let pub_path = write_public(out, &key)?;
    println!("{}", key.verifier().to_text());
    eprintln!("private key written to {} (mode 0600); public key to {}", out.display(), pub_path.display());
    Ok(())
}

/// `revshare keys registration`: the JSON body of `POST /v1/keys` for `party`'s key in `key`:
/// with the key's proof of possession, or with the rotation `current` signs. No store.
pub fn registration(key: &Path, party: &str, current: Option<&Path>) -> Result<(), Failure> {
    let party = revshare_core::ids::PartyId::parse(party).map_err(|e| Failure::Invalid(format!("error: --party: {e}\n")))?;
    let new = read_signer(key)?;
    let text = new.verifier().to_text();
    let body = match current {
        None => {
            let proof = new.sign(&revshare_core::transparency::registration_message(party.as_str(), &text));
            serde_json::json!({ "key": text, "proof": revshare_core::transparency::b64(&proof) })
        }
        Some(current) => {
            let current = read_signer(current)?;
            let signature = current.sign(&revshare_core::transparency::rotation_message(Some(party.as_str()), &text));
            serde_json::json!({
                "key": text,
                "rotation": { "key": current.verifier().to_text(), "signature": revshare_core::transparency::b64(&signature) },
            })
        }
    };
    println!("{body}");
    Ok(())
}

/// `revshare keys rotate`: a new deployment key replaces the current one; the rotation is a
/// leaf of the log and the old key file is kept, renamed, so old signatures stay checkable.
pub fn rotate(args: &StoreArgs) -> Result<(), Failure> {
    let mut store = open(args, false)?;
    let old = deployment_key(args)?;
    let new = generate(old.name())?;
    let path = deployment_key_path(args);
    let retired = PathBuf::from(format!("{}.{:08x}.retired", path.display(), old.key_id()));
    let staged = PathBuf::from(format!("{}.new", path.display()));
    write_private(&staged, &new)?;
    let new_text = new.verifier().to_text();
    let endorsement =
        Signed { key: old.verifier().to_text(), signature: old.sign(&revshare_core::transparency::rotation_message(None, &new_text)) };
    let leaf = store.rotate_key(None, &new.verifier(), &endorsement)?;
    std::fs::rename(&path, &retired).with_context(|| format!("cannot move {} aside", path.display()))?;
    std::fs::rename(&staged, &path).with_context(|| format!("cannot install {}", path.display()))?;
    write_public(&path, &new)?;
    println!("deployment key rotated (log leaf {leaf}): {} replaces {}", new.verifier().to_text(), old.verifier().to_text());
    Ok(())
}

/// `revshare party key`: registers a party's first public key, as the operator, or (with
/// `rotate_with`, the party's current private key) a later one by a rotation that key signs.
pub fn add_party_key(args: &StoreArgs, party: &str, file: &Path, rotate_with: Option<&Path>) -> Result<(), Failure> {
    let id = parse(revshare_core::ids::PartyId::parse(party))?;
    let key = read_verifier(file)?;
    let mut store = open(args, false)?;
    match rotate_with {
        None => {
            let leaf = store.add_key(Some(&id), &key)?;
            println!("key {} registered for {party} (log leaf {leaf})", key.to_text());
        }
        Some(current) => {
            let current = read_signer(current)?;
            let message = revshare_core::transparency::rotation_message(Some(party), &key.to_text());
            let endorsement = Signed { key: current.verifier().to_text(), signature: current.sign(&message) };
            let leaf = store.rotate_key(Some(&id), &key, &endorsement)?;
            println!("key {} of {party} replaces {} (log leaf {leaf})", key.to_text(), current.verifier().to_text());
        }
    }
    Ok(())
}

/// The current UTC time, to the second.
pub fn now() -> Instant {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Instant::from_parts(i64::try_from(secs).unwrap_or(i64::MAX), 0)
}

/// Signs and keeps a checkpoint of the log as it is now: (size, root, signed note).
fn checkpoint(store: &mut (dyn Store + Send), key: &SignerKey) -> Result<(u64, Hash, String), Failure> {
    Ok(revshare_store::receipts::checkpoint(store, key, now())?)
}

/// `revshare log checkpoint`.
pub fn print_checkpoint(args: &StoreArgs) -> Result<(), Failure> {
    let key = deployment_key(args)?;
    let (_, _, note) = checkpoint(open(args, false)?.as_mut(), &key)?;
    print!("{note}");
    Ok(())
}

/// `revshare log prove`: a leaf's inclusion proof at `size` (default: a fresh checkpoint's).
pub fn prove(args: &StoreArgs, index: u64, size: Option<u64>) -> Result<(), Failure> {
    let mut store = open(args, false)?;
    let key = deployment_key(args)?;
    let proof = receipts::inclusion(store.as_mut(), &key, now(), index, size).map_err(proof_failure)?;
    println!("{}", serde_json::to_string_pretty(&proof).map_err(anyhow::Error::from)?);
    Ok(())
}

/// `revshare log consistency`: the proof that the log at `to` (default: now) extends the log at `from`.
pub fn consistency(args: &StoreArgs, from: u64, to: Option<u64>) -> Result<(), Failure> {
    let mut store = open(args, false)?;
    let key = deployment_key(args)?;
    let proof = receipts::consistency(store.as_mut(), &key, now(), from, to).map_err(proof_failure)?;
    println!("{}", serde_json::to_string_pretty(&proof).map_err(anyhow::Error::from)?);
    Ok(())
}

fn proof_failure(error: ProofError) -> Failure {
    match error {
        ProofError::Range(detail) => Failure::Invalid(format!("error: {detail}\n")),
        ProofError::Store(e) => (*e).into(),
    }
}

/// Signs a finalised statement with a key (the deployment's, or the host's countersignature).
pub fn sign_stored(store: &mut (dyn Store + Send), statement: &StoredStatement, key: &SignerKey) -> Result<(), Failure> {
    Ok(revshare_store::close::sign_stored(store, statement, key)?)
}

pub fn find_statement(
    store: &mut (dyn Store + Send),
    agreement: &str,
    period: Period,
    sequence: Option<u32>,
) -> Result<StoredStatement, Failure> {
    let id = parse(revshare_core::ids::AgreementId::parse(agreement))?;
    let found = match sequence {
        Some(n) => store.statement_by_sequence(&id, period, n)?,
        None => store.statement(&id, period)?,
    };
    found.ok_or_else(|| {
        Failure::Invalid(format!(
            "error: {id} has no statement {}for {period}; close the month first (`revshare close`)\n",
            sequence.map(|n| format!("#{n} ")).unwrap_or_default()
        ))
    })
}

/// `revshare statement sign`: countersigns a statement with a party's key file.
pub fn sign_statement(args: &StoreArgs, agreement: &str, period: Period, sequence: Option<u32>, key_file: &Path) -> Result<(), Failure> {
    let key = read_signer(key_file)?;
    let mut store = open(args, false)?;
    let statement = find_statement(store.as_mut(), agreement, period, sequence)?;
    sign_stored(store.as_mut(), &statement, &key)?;
    println!(
        "statement {agreement} {period} #{} ({}) signed by {}",
        statement.head.sequence,
        statement.head.digest,
        key.verifier().to_text()
    );
    Ok(())
}

/// `revshare statement export --bundle DIR`: everything needed to check a statement offline,
/// assembled by the store's `export::bundle` (the API's bundle is the same files, as a tar).
pub fn export_bundle(args: &StoreArgs, agreement: &str, period: Period, sequence: Option<u32>, dir: &Path) -> Result<(), Failure> {
    let id = parse(revshare_core::ids::AgreementId::parse(agreement))?;
    let mut store = open(args, false)?;
    let key = deployment_key(args)?;
    let (bundle, summary) = export::bundle(store.as_mut(), &key, &id, period, sequence, now()).map_err(|e| match e {
        ExportError::Store(e) => Failure::from(*e),
        ExportError::Encode(e) => Failure::from(anyhow::Error::from(e)),
        e @ (ExportError::NoStatement { .. } | ExportError::StatementNotLogged { .. } | ExportError::AgreementNotLogged { .. }) => {
            Failure::Invalid(format!("error: {e}\n"))
        }
    })?;
    std::fs::create_dir_all(dir.join(BATCHES_DIR)).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, bytes) in bundle.files() {
        let path = dir.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "wrote bundle {} for {id} {period} #{}: {} records in {} batches, {} proven leaves, checkpoint at size {}",
        dir.display(),
        summary.sequence,
        summary.records,
        summary.batches,
        summary.leaves,
        summary.tree_size
    );
    if summary.unlogged > 0 {
        eprintln!("warning: {} records were stored before the log existed; `verify` will report them as in no batch", summary.unlogged);
    }
    Ok(())
}

/// Reads a bundle directory.
fn read_bundle(dir: &Path) -> Result<Bundle, Failure> {
    let read = |name: &str| std::fs::read(dir.join(name)).with_context(|| format!("cannot read {} in the bundle {}", name, dir.display()));
    let mut batches = Vec::new();
    let batch_dir = dir.join(BATCHES_DIR);
    if batch_dir.exists() {
        for entry in std::fs::read_dir(&batch_dir).with_context(|| format!("cannot list {}", batch_dir.display()))? {
            let path = entry.context("cannot list the bundle's batches")?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let leaf = name.strip_suffix(".digests").and_then(|n| n.parse::<u64>().ok()).ok_or_else(|| {
                Failure::Invalid(format!("error: {} is not a batch file; batches/ holds LEAF.digests files only\n", path.display()))
            })?;
            batches.push((leaf, std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?));
        }
    }
    batches.sort_by_key(|(leaf, _)| *leaf);
    let mut restated = Vec::new();
    let restated_dir = dir.join(RESTATED_DIR);
    if restated_dir.exists() {
        for entry in std::fs::read_dir(&restated_dir).with_context(|| format!("cannot list {}", restated_dir.display()))? {
            let month = entry.context("cannot list the bundle's restated months")?.path();
            let period = month.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let read_month = |name: &str| {
                let path = month.join(name);
                std::fs::read(&path)
                    .with_context(|| format!("cannot read {}: a restated month holds before.json and after.json", path.display()))
            };
            restated.push(RestatedMonth { before: read_month("before.json")?, after: read_month("after.json")?, period });
        }
    }
    restated.sort_by(|a, b| a.period.cmp(&b.period));
    let agreement = String::from_utf8(read("agreement.toml")?)
        .map_err(|e| Failure::Invalid(format!("error: agreement.toml in the bundle is not UTF-8 ({e})\n")))?;
    Ok(Bundle {
        statement: read("statement.json")?,
        agreement,
        records: read("records.jsonl")?,
        salts: read(revshare_core::bundle::SALTS_FILE)?,
        aliases: read("aliases.json")?,
        // Bundles exported before derived models were priced have none: no lineage.
        models: if dir.join("models.json").exists() { read("models.json")? } else { b"[]".to_vec() },
        log: read("log.json")?,
        keys: read("keys.json")?,
        signatures: read("signatures.json")?,
        batches,
        restated,
    })
}

/// `revshare verify BUNDLE`: offline; exit 0 when everything checks and the checkpoint is signed
/// by a key the caller's own trust reaches, 1 otherwise, with every finding.
pub fn verify_bundle(dir: &Path, since: Option<&Path>, trust: &[PathBuf], consistency: Option<&Path>) -> Result<Bundle, Failure> {
    let bundle = read_bundle(dir)?;
    let read = |p: &Path, what: &str| std::fs::read_to_string(p).with_context(|| format!("cannot read the {what} {}", p.display()));
    let since = since.map(|p| read(p, "checkpoint")).transpose()?;
    let consistency = consistency.map(|p| read(p, "consistency proof")).transpose()?;
    let trusted = trust.iter().map(|p| read_verifier(p)).collect::<Result<Vec<_>, _>>()?;
    let options = VerifyOptions { since: since.as_deref(), trusted: &trusted, consistency: consistency.as_deref() };
    let report = verify(&bundle, &options);
    let c = &report.checked;
    let summary = format!(
        "the statement recomputes byte for byte from {} records in {} logged batches ({} signed by the host); \
         {} log leaves proven under the checkpoint; {} dispute adjustment(s) resolved as logged; {} restatement(s) equal to \
         their month's logged statements' difference; {} statement signature(s){}",
        c.records,
        c.batches,
        c.signed_batches,
        c.leaves,
        c.disputes,
        c.restatements,
        c.signatures,
        if c.countersigned { ", countersigned by the host" } else { ", not countersigned by the host" }
    );
    match (&report.anchor, report.findings.is_empty()) {
        (Anchor::Anchored { key, how }, true) => {
            println!("verified {}: {summary}; anchored to {key} ({how})", dir.display());
            Ok(bundle)
        }
        (Anchor::NotAnchored, true) => Err(Failure::Invalid(format!(
            "{}: everything in the bundle agrees with itself ({summary}), but it is not anchored: its keys are the bundle's own, \
             and a forged bundle brings its own keys too.\n\
             error: not anchored; pass --trust with the deployment's public key obtained on your own (the operator's \
             deployment.key.pub, or GET /v1/keys), or --since with a checkpoint you kept (an earlier bundle's, \
             `revshare log checkpoint`)\n",
            dir.display()
        ))),
        (_, false) => {
            let mut text = String::new();
            for finding in &report.findings {
                text.push_str(&format!("mismatch: {finding}\n"));
            }
            text.push_str(&format!("error: {} does not verify: {} finding(s)\n", dir.display(), report.findings.len()));
            Err(Failure::Invalid(text))
        }
    }
}

/// `revshare statement countersign`: the bundle verified and anchored first, then the host's
/// signature of its statement written to `out` as the body `POST …/signatures` takes.
pub fn countersign(
    dir: &Path,
    key_file: &Path,
    out: &Path,
    since: Option<&Path>,
    trust: &[PathBuf],
    consistency: Option<&Path>,
) -> Result<(), Failure> {
    let key = read_signer(key_file)?;
    let bundle = verify_bundle(dir, since, trust, consistency)?;
    let statement = revshare_core::statement::Statement::from_canonical(&bundle.statement)
        .map_err(|e| Failure::Invalid(format!("error: {}: statement.json: {e}\n", dir.display())))?;
    let digest = revshare_core::canonical::digest(&bundle.statement);
    let signature = key.sign(&revshare_core::transparency::statement_message(&digest));
    let body = serde_json::json!({"key": key.verifier().to_text(), "signature": revshare_core::transparency::b64(&signature)});
    std::fs::write(out, format!("{body}\n")).with_context(|| format!("cannot write {}", out.display()))?;
    let (agreement, period) = (&statement.agreement_id, statement.period);
    println!(
        "countersigned {agreement} {period} ({digest}) with {}: send {} as POST /v1/statements/{agreement}/{period}/signatures",
        key.verifier().to_text(),
        out.display()
    );
    Ok(())
}

/// The records of a batch as the host would sign them, under a fresh record-salt key: used by
/// `ingest --sign` and `batch sign`.
pub fn sign_batch(key: &SignerKey, records: &[UsageRecord<'_>]) -> Result<SignedBatch, String> {
    let mut record_key = [0u8; revshare_core::transparency::RECORD_KEY_BYTES];
    getrandom::fill(&mut record_key).map_err(|e| format!("the operating system's random source failed: {e}"))?;
    let digest = revshare_store::batch_digest(records, &record_key);
    let signed = Signed { key: key.verifier().to_text(), signature: key.sign(&revshare_core::transparency::batch_message(&digest)) };
    Ok(SignedBatch { signed, record_key })
}
