//! `revshare`: the command line. Thin glue: it reads files, calls the core, prints results.

mod access;
mod batch_cmds;
mod demo;
mod dispute_cmds;
mod generate;
mod ingest_sink;
mod ledger_cmds;
mod list_cmds;
mod log_cmds;
mod reading;
mod report;
mod server_cmds;
mod settle_files;
mod settle_sink;
mod store_cmds;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use revshare_core::time::Period;

#[derive(Parser)]
#[command(
    name = "revshare",
    version,
    about = "Exact, verifiable revenue-share settlement between a model licensor and the hosts that serve its models"
)]
struct Cli {
    #[command(flatten)]
    store: access::StoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with agreement files.
    #[command(subcommand)]
    Agreement(AgreementCommand),
    /// Settle one agreement for one month from files, and print the statement.
    #[command(after_help = "Example:\n  revshare settle --agreement examples/agreement.toml --usage examples/usage.jsonl --period 2026-10")]
    Settle(SettleArgs),
    /// Generate test data.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Generate a month for a licensor and three hosts, and print each statement.
    #[command(after_help = "Example:\n  revshare demo --dir demo-data")]
    Demo(DemoArgs),
    /// Create the store (the data folder's SQLite file, or the PostgreSQL schema) and the
    /// deployment's signing key.
    #[command(after_help = "Example:\n  revshare init")]
    Init {
        /// The log's origin, which names the deployment key (a new key only).
        #[arg(long, default_value = log_cmds::DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Ed25519 keys: generate a party's key pair, rotate the deployment's.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The transparency log: checkpoints and proofs.
    #[command(subcommand)]
    Log(LogCommand),
    /// A host's usage batches, offline: sign one to send over the API.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Check a statement bundle offline (no store): recompute the statement from its agreement
    /// and records, and check every digest, signature and proof. It passes only when anchored to
    /// something you hold (--trust or --since), never to keys the bundle brings.
    #[command(after_help = "Example:\n  revshare verify bundle-2026-10 --trust deployment.key.pub")]
    Verify {
        /// The bundle folder (`revshare statement export --bundle DIR`).
        bundle: PathBuf,
        #[command(flatten)]
        anchors: Anchors,
    },
    /// Register parties.
    #[command(subcommand)]
    Party(PartyCommand),
    /// Register models and hosts' aliases for them.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Store usage files (JSON Lines or CloudEvents batches; `-` for standard input).
    #[command(after_help = "Example:\n  revshare ingest examples/usage.jsonl --receipts receipts.jsonl")]
    Ingest {
        /// Usage files: JSON Lines or CloudEvents batches; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Store the good records of a batch and report each bad one, instead of refusing it.
        #[arg(long)]
        partial: bool,
        /// Records per committed batch.
        #[arg(long, default_value_t = 10_000)]
        batch_size: usize,
        /// Sign each batch with this host's private key file (the batch is then stored whole or not at all).
        #[arg(long, value_name = "KEY_FILE")]
        sign: Option<PathBuf>,
        /// Append each committed batch's signed receipt to this file (JSON Lines).
        #[arg(long, value_name = "FILE")]
        receipts: Option<PathBuf>,
    },
    /// Record contributions to an agreement in the store.
    #[command(subcommand)]
    Contribution(ContributionCommand),
    /// Settle a month from the store and finalise its statement.
    #[command(after_help = "Example:\n  revshare close --agreement meridian-northwind --period 2026-10")]
    Close {
        #[command(flatten)]
        month: Month,
        /// `table` for people, `json` for the canonical statement, `csv` (RFC 4180) of its lines.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Read finalised statements.
    #[command(subcommand)]
    Statement(StatementCommand),
    /// Book payments between the parties of an agreement.
    #[command(subcommand)]
    Payment(PaymentCommand),
    /// Dispute a finalised statement, answer, escalate and decide disputes (SPEC §8).
    #[command(subcommand)]
    Dispute(DisputeCommand),
    /// An agreement's usage per day, model, use case and region, from the store's daily rollups
    /// (the open month included).
    #[command(after_help = "Example:\n  revshare usage --agreement meridian-northwind --from 2026-10 --to 2026-11 --format csv")]
    Usage {
        /// The agreement.
        #[arg(long)]
        agreement: String,
        /// The first month (YYYY-MM).
        #[arg(long, value_parser = parse_period)]
        from: Period,
        /// The last month (YYYY-MM) [default: the first].
        #[arg(long, value_parser = parse_period)]
        to: Option<Period>,
        /// `table` for people, `json` or `csv` (RFC 4180) for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// The double-entry journal, in posting order: every entry and its postings.
    #[command(after_help = "Example:\n  revshare journal --format csv")]
    Journal {
        /// `table` for people, `json` or `csv` (RFC 4180, a row per posting) for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// A licensor's compliance report (SPEC §11).
    #[command(subcommand)]
    Compliance(ComplianceCommand),
    /// Show who owes whom, per currency, from the journal.
    #[command(after_help = "Example:\n  revshare balances --currency USD")]
    Balances {
        /// Only this currency (an ISO 4217 code).
        #[arg(long)]
        currency: Option<String>,
        /// `table` for people (pending payments too), `json` or `csv` (RFC 4180) of the debts.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Bearer tokens for the HTTP API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Auditors' grants: which auditor may read which agreement (SPEC §9); each is logged.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Serve the authenticated HTTP API over the store until ctrl-c or SIGTERM.
    #[command(after_help = "Example:\n  revshare serve --listen 8080")]
    Serve {
        /// The address to listen on: a port on this machine only (8080), or an address and port
        /// (0.0.0.0:8080, [::]:8080); port 0 takes any free port (the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen)]
        listen: std::net::SocketAddr,
        /// The largest request body accepted, in bytes (a larger one is answered 413).
        #[arg(long, default_value_t = revshare_server::DEFAULT_MAX_BODY_BYTES)]
        max_body: usize,
        /// Store calls running at once (and so database connections at most).
        #[arg(long, default_value_t = 16)]
        max_connections: usize,
        /// Requests a second each token may make (and burst), and failed authentications a second
        /// per client address; more are answered 429. 0: no limit.
        #[arg(long, default_value_t = 100)]
        rate_limit: u32,
        /// A host (`HOST` or `HOST:PORT`) webhook endpoints may name, such as an egress relay, or
        /// `loopback` for this machine's loopback addresses; repeat it for more. None by default.
        #[arg(long = "webhook-allow", value_name = "HOST[:PORT]")]
        webhook_allow: Vec<String>,
        /// Log JSON objects instead of compact lines (standard error; RUST_LOG filters).
        #[arg(long)]
        log_json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token acting for a party in its registered role, or for the operator
    /// (`--operator`: it registers parties, tokens and grants over HTTP); it is printed once, and
    /// only its SHA-256 is stored.
    #[command(after_help = "Example:\n  revshare token create --party northwind --role host")]
    Create {
        /// The party the token acts for (a registered party id).
        #[arg(long, required_unless_present = "operator")]
        party: Option<String>,
        /// The party's registered role: licensor, host, auditor or arbiter.
        #[arg(long, required_unless_present = "operator")]
        role: Option<String>,
        /// A token for the operator instead: it registers parties, tokens and grants.
        #[arg(long, conflicts_with_all = ["party", "role"])]
        operator: bool,
    },
    /// Revoke a token for good, by the id `token create` printed.
    #[command(after_help = "Example:\n  revshare token revoke 3f2a9c")]
    Revoke {
        /// The token's id, as `token create` printed it.
        id: String,
    },
}

#[derive(Subcommand)]
enum GrantCommand {
    /// Grant an auditor reading an agreement (every version); logged, visible to both parties.
    #[command(after_help = "Example:\n  revshare grant add --auditor audit-co --agreement meridian-northwind")]
    Add {
        /// The auditor's party id.
        #[arg(long)]
        auditor: String,
        /// The agreement's id, like meridian-northwind.
        #[arg(long)]
        agreement: String,
    },
    /// Revoke an auditor's grant on an agreement; logged.
    #[command(after_help = "Example:\n  revshare grant revoke --auditor audit-co --agreement meridian-northwind")]
    Revoke {
        /// The auditor's party id.
        #[arg(long)]
        auditor: String,
        /// The agreement's id, like meridian-northwind.
        #[arg(long)]
        agreement: String,
    },
    /// List grants, in force and revoked.
    #[command(after_help = "Example:\n  revshare grant list --agreement meridian-northwind")]
    List {
        /// The agreement's id, like meridian-northwind.
        #[arg(long)]
        agreement: Option<String>,
        /// `table` for people, `json` or `csv` (RFC 4180) for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

/// What every dispute transition says.
#[derive(clap::Args)]
struct Said {
    /// The party acting; its registered role is the capacity it acts in.
    #[arg(long)]
    by: String,
    /// Why, in a sentence or more.
    #[arg(long)]
    reason: String,
    /// A link or digest supporting it (repeatable).
    #[arg(long)]
    evidence: Vec<String>,
}

/// A transition that carries an amount, in the agreement's currency.
#[derive(clap::Args)]
struct SaidWithAmount {
    #[command(flatten)]
    said: Said,
    /// The amount, with at most the currency's decimal places (120.50 in USD).
    #[arg(long)]
    amount: String,
}

#[derive(Subcommand)]
enum DisputeCommand {
    /// Dispute a finalised statement, or one of its lines, claiming an amount: a licensor's claim
    /// is owed by the host, a host's is credited to it.
    #[command(
        after_help = "Example:\n  revshare dispute open --agreement meridian-northwind --period 2026-10 --line 0 --by northwind --amount 12.50 --reason \"a test tenant was billed\""
    )]
    Open {
        #[command(flatten)]
        month: Month,
        /// Which statement of the month (1 is the original; default the latest).
        #[arg(long)]
        sequence: Option<u32>,
        /// One line of the statement, by its number in the `line` column of `statement show`
        /// (from 0; default: the whole statement).
        #[arg(long)]
        line: Option<u32>,
        #[command(flatten)]
        said: SaidWithAmount,
    },
    /// Accept the amount on the table: the claim, or the counter-offer.
    #[command(after_help = "Example:\n  revshare dispute accept 1 --by northwind --reason fair")]
    Accept {
        /// The dispute's id, as `dispute list` shows it.
        id: u64,
        #[command(flatten)]
        said: Said,
    },
    /// Reject the claim, or the counter-offer.
    #[command(after_help = "Example:\n  revshare dispute reject 2 --by northwind --reason \"our logs agree\"")]
    Reject {
        /// The dispute's id, as `dispute list` shows it.
        id: u64,
        #[command(flatten)]
        said: Said,
    },
    /// Offer a smaller amount than claimed.
    #[command(after_help = "Example:\n  revshare dispute counter 1 --by meridian --amount 5.00 --reason \"part of it\"")]
    Counter {
        /// The dispute's id, as `dispute list` shows it.
        id: u64,
        #[command(flatten)]
        said: SaidWithAmount,
    },
    /// Take a rejected dispute to an arbiter; or, once escalated, name the arbiter this side
    /// accepts for it (`--arbiter`): once both sides name the same one, it decides the dispute
    /// beside the arbiters the agreement names.
    #[command(after_help = "Example:\n  revshare dispute escalate 2 --by meridian --reason \"to the arbiter\"")]
    Escalate {
        /// The dispute's id, as `dispute list` shows it.
        id: u64,
        #[command(flatten)]
        said: Said,
        /// The arbiter (a party registered as one) this side accepts for the dispute.
        #[arg(long)]
        arbiter: Option<String>,
    },
    /// Decide an escalated dispute (an arbiter), from 0 to the amount claimed.
    #[command(after_help = "Example:\n  revshare dispute decide 2 --by judge --amount 10.00 --reason \"partly undercounted\"")]
    Decide {
        /// The dispute's id, as `dispute list` shows it.
        id: u64,
        #[command(flatten)]
        said: SaidWithAmount,
    },
    /// List disputes.
    #[command(after_help = "Example:\n  revshare dispute list --agreement meridian-northwind --format csv")]
    List {
        /// Only this agreement's.
        #[arg(long)]
        agreement: Option<String>,
        /// `table` for people, `json` (with each history) or `csv` (RFC 4180, a row a dispute)
        /// for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Show a dispute and its history.
    #[command(after_help = "Example:\n  revshare dispute show 1")]
    Show {
        /// The dispute's id, as `dispute list` shows it.
        id: u64,
        /// `table` for people, `json` for programs, `csv` (RFC 4180) of its history.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

impl Said {
    fn with(self, amount: Option<String>) -> dispute_cmds::Said {
        dispute_cmds::Said { by: self.by, reason: self.reason, amount, evidence: self.evidence, arbiter: None }
    }
}

impl SaidWithAmount {
    fn said(self) -> dispute_cmds::Said {
        self.said.with(Some(self.amount))
    }
}

#[derive(Subcommand)]
enum PaymentCommand {
    /// Record a payment under an agreement, in the agreement's currency: as its payer's, it is
    /// pending until the payee confirms it (`payment confirm`); with --by-payee it posts at once.
    #[command(after_help = "Example:\n  revshare payment record --agreement meridian-northwind --amount 800.00 --reference wire-0042")]
    Record {
        /// The agreement's id, like meridian-northwind.
        #[arg(long)]
        agreement: String,
        /// The amount paid, with at most the currency's decimal places (800.00 in USD).
        #[arg(long)]
        amount: String,
        /// The payment's own reference (a bank transfer id, say); unique in the journal.
        #[arg(long)]
        reference: String,
        /// Who paid: the host (paying what it owes) or the licensor (paying back).
        #[arg(long, value_enum, default_value_t = ledger_cmds::Payer::Host)]
        from: ledger_cmds::Payer,
        /// Recorded for the payee, who says it was received: posted at once.
        #[arg(long)]
        by_payee: bool,
    },
    /// Confirm, for the payee, a pending payment: it posts to the journal.
    #[command(after_help = "Example:\n  revshare payment confirm --agreement meridian-northwind --reference wire-0042")]
    Confirm {
        /// The agreement's id, like meridian-northwind.
        #[arg(long)]
        agreement: String,
        /// The reference the payer recorded it under.
        #[arg(long)]
        reference: String,
    },
    /// Undo a recorded payment with a reversing entry; the payment stays in the journal.
    #[command(after_help = "Example:\n  revshare payment reverse --reference wire-0042 --as wire-0042-undo")]
    Reverse {
        /// The reference the payment was recorded with.
        #[arg(long)]
        reference: String,
        /// The reversal's own reference.
        #[arg(long = "as", value_name = "NEW_REF")]
        as_reference: String,
    },
    /// List payments: pending (recorded by the payer, not yet confirmed), confirmed (posted) and
    /// reversed, by agreement and reference.
    #[command(after_help = "Example:\n  revshare payment list --format csv")]
    List {
        /// Only this agreement's.
        #[arg(long)]
        agreement: Option<String>,
        /// `table` for people, `json` or `csv` (RFC 4180) for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate an Ed25519 key pair: the private key to FILE (mode 0600), the public key to
    /// FILE.pub and standard output.
    #[command(after_help = "Example:\n  revshare keys generate --name northwind --out northwind.key")]
    Generate {
        /// The key's name (a party id, say).
        #[arg(long)]
        name: String,
        /// Where to write the private key (FILE); the public key goes to FILE.pub.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the deployment's signing key with a new one; the rotation is logged.
    #[command(after_help = "Example:\n  revshare keys rotate")]
    Rotate,
    /// Print the body of POST /v1/keys that registers a party's key over the API, on the party's
    /// machine (no store): its first key with a proof that it holds it, or a later one signed by
    /// its current key (`--rotate-with`).
    #[command(after_help = "Example:\n  revshare keys registration --key northwind.key --party northwind")]
    Registration {
        /// The private key to register (its public half is what the server keeps).
        #[arg(long)]
        key: PathBuf,
        /// The party it is for: the token's.
        #[arg(long)]
        party: String,
        /// The party's current private key, which signs the rotation to the new one.
        #[arg(long, value_name = "CURRENT_KEY")]
        rotate_with: Option<PathBuf>,
    },
}

/// What a bundle is checked against: what the verifier holds, never what the bundle brings.
#[derive(clap::Args)]
struct Anchors {
    /// A checkpoint you kept (from an earlier bundle, `revshare log checkpoint` or GET
    /// /v1/log/checkpoint): the bundle's log must extend it, and the deployment keys logged
    /// before it are trusted.
    #[arg(long, value_name = "CHECKPOINT")]
    since: Option<PathBuf>,
    /// A deployment public key file you obtained on your own (`DATA/deployment.key.pub`, GET
    /// /v1/keys); repeatable. Keys it rotated to, by signed rotation leaves, are trusted too.
    #[arg(long, value_name = "KEY_FILE")]
    trust: Vec<PathBuf>,
    /// A consistency proof from the --since checkpoint to the bundle's checkpoint
    /// (`revshare log consistency --from M --to N` or GET /v1/log/consistency), when the
    /// bundle carries none from that size.
    #[arg(long, value_name = "PROOF_FILE", requires = "since")]
    consistency: Option<PathBuf>,
}

#[derive(Subcommand)]
enum BatchCommand {
    /// Sign a usage file as one batch with the host's private key, on the host's machine (no
    /// store): prints the Revshare-Signature and Revshare-Record-Key headers to send it with, as
    /// one POST /v1/usage, unchanged.
    #[command(
        after_help = "Example:\n  revshare batch sign october.jsonl --key northwind.key\n\nTo send it, keep the two lines in a file (`> headers`) and:\n  curl -H @headers -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/x-ndjson' --data-binary @october.jsonl http://127.0.0.1:8080/v1/usage"
    )]
    Sign {
        /// The usage file: one host's records, as the API reads them.
        file: PathBuf,
        /// The host's private key file (from `revshare keys generate`, registered with `revshare party key`).
        #[arg(long)]
        key: PathBuf,
        /// How the file is written: application/x-ndjson (JSON Lines), application/json (an array of
        /// records) or application/cloudevents-batch+json [default: application/json for a .json file,
        /// else application/x-ndjson]
        #[arg(long)]
        content_type: Option<String>,
        /// Print a JSON object (the headers' values, the batch digest, the host and record count)
        /// instead of the two header lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Sign and print a checkpoint of the log as it is now (a C2SP signed note).
    #[command(after_help = "Example:\n  revshare log checkpoint")]
    Checkpoint,
    /// Print a leaf and its inclusion proof (at SIZE, or at a new checkpoint).
    #[command(after_help = "Example:\n  revshare log prove --leaf 3")]
    Prove {
        /// The leaf's index in the log, from 0.
        #[arg(long)]
        leaf: u64,
        /// The log size to prove it at (default: a new checkpoint of the log as it is now).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Print the consistency proof from an earlier size to a later one (or a new checkpoint).
    #[command(after_help = "Example:\n  revshare log consistency --from 12")]
    Consistency {
        /// The earlier size: that of a checkpoint you kept.
        #[arg(long)]
        from: u64,
        /// The later size (default: a new checkpoint of the log as it is now).
        #[arg(long)]
        to: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ContributionCommand {
    /// Record contributions (JSON Lines, as in examples/contributions.jsonl); adding one again
    /// with `"accepted": true` records its acceptance.
    #[command(after_help = "Example:\n  revshare contribution add --agreement meridian-northwind examples/contributions.jsonl")]
    Add {
        /// The agreement's id, like meridian-northwind.
        #[arg(long)]
        agreement: String,
        /// The contributions file (JSON Lines).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PartyCommand {
    /// Register a party: a licensor, host, auditor or arbiter.
    #[command(after_help = "Example:\n  revshare party add northwind --name \"Northwind Cloud\" --role host")]
    Add {
        /// The party's id: 1-63 of a-z 0-9 _ -.
        id: String,
        /// The party's display name.
        #[arg(long)]
        name: String,
        /// The party's role: licensor, host, auditor or arbiter.
        #[arg(long)]
        role: String,
    },
    /// Register a party's public key (a `.pub` file from `revshare keys generate`): its first, as
    /// the operator; a later one only as a rotation signed with its current private key.
    #[command(after_help = "Example:\n  revshare party key --party northwind northwind.key.pub")]
    Key {
        /// The party (a registered party id).
        #[arg(long)]
        party: String,
        /// The party's public key file (`.pub`, from `revshare keys generate`).
        file: PathBuf,
        /// The party's current private key, which signs the rotation to the new key.
        #[arg(long, value_name = "KEY")]
        rotate_with: Option<PathBuf>,
    },
    /// List the registered parties, by id.
    #[command(after_help = "Example:\n  revshare party list")]
    List {
        /// `table` for people, `json` or `csv` (RFC 4180) for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// List the registered models, by id, with their owners and what they derive from.
    #[command(after_help = "Example:\n  revshare model list")]
    List {
        /// `table` for people, `json` or `csv` (RFC 4180) for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Register a licensor's model, or a model derived from one (a fine-tune or distillation,
    /// SPEC §11), which belongs to its base model's licensor; with `--host`, the host registers
    /// it, and only that host's records may name it.
    #[command(
        after_help = "Examples:\n  revshare model add m-70b --owner meridian\n  revshare model add m-70b-nw-support --derived-from m-70b --host northwind"
    )]
    Add {
        /// The model's id, like m-70b.
        id: String,
        /// The licensor that owns the model (a registered party id); a derived model's is its
        /// base model's.
        #[arg(long, required_unless_present = "derived_from")]
        owner: Option<String>,
        /// The model it derives from (fine-tuned, quantised, distilled), if any.
        #[arg(long)]
        derived_from: Option<String>,
        /// The host registering a derived model it made (a registered party id).
        #[arg(long, requires = "derived_from")]
        host: Option<String>,
    },
    /// Map a host's own model id to a licensed model.
    #[command(after_help = "Example:\n  revshare model alias --host northwind --host-model nw-llama-70b --model m-70b")]
    Alias {
        /// The host (a registered party id).
        #[arg(long)]
        host: String,
        /// The host's own id for the model, as its records name it.
        #[arg(long)]
        host_model: String,
        /// The licensed model it means.
        #[arg(long)]
        model: String,
    },
}

#[derive(Subcommand)]
enum ComplianceCommand {
    /// What a licensor's hosts did with its models in a month outside what their agreements
    /// allow: usage no agreement covered, and statement lines flagged `unlicensed_model`,
    /// `naming_violation` or `prohibited_use` (the final statement, or the open month so far).
    #[command(after_help = "Example:\n  revshare compliance report --licensor meridian --period 2026-10 --format csv")]
    Report {
        /// The licensor (a registered party id).
        #[arg(long)]
        licensor: String,
        /// YYYY-MM (UTC).
        #[arg(long, value_parser = parse_period)]
        period: Period,
        /// `table` for people, `json` or `csv` (RFC 4180) for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

#[derive(Subcommand)]
enum StatementCommand {
    /// Show the latest statement of a month.
    #[command(after_help = "Example:\n  revshare statement show --agreement meridian-northwind --period 2026-10")]
    Show {
        #[command(flatten)]
        month: Month,
        /// `table` for people, `json` for the canonical statement, `csv` (RFC 4180) of its lines.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show an open month as it would close now (SPEC §10): running totals mid-month; not
    /// final, not signed, nothing booked or logged.
    #[command(after_help = "Example:\n  revshare statement preview --agreement meridian-northwind --period 2026-11")]
    Preview {
        #[command(flatten)]
        month: Month,
        /// `table` for people, `json` for the canonical statement, `csv` (RFC 4180) of its lines.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List finalised statements with their money: net payable, paid (payments applied to the
    /// oldest month first), outstanding, countersigned, closed on.
    #[command(after_help = "Example:\n  revshare statement list --agreement meridian-northwind")]
    List {
        /// Only this agreement's.
        #[arg(long)]
        agreement: Option<String>,
        /// `table` for people, `json` or `csv` (RFC 4180) for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Write the latest statement of a month (its canonical bytes) to a file, or (`--bundle`)
    /// everything needed to verify it offline to a folder.
    #[command(after_help = "Example:\n  revshare statement export --agreement meridian-northwind --period 2026-10 --bundle bundle-2026-10")]
    Export {
        #[command(flatten)]
        month: Month,
        /// Which statement of the month (1 is the original; default the latest).
        #[arg(long)]
        sequence: Option<u32>,
        /// Write the statement's canonical bytes (JSON) to this file.
        #[arg(long, required_unless_present = "bundle", conflicts_with = "bundle")]
        out: Option<PathBuf>,
        /// Write everything `revshare verify` needs to this folder instead.
        #[arg(long, value_name = "DIR")]
        bundle: Option<PathBuf>,
    },
    /// Countersign a statement bundle on the host's machine (no store): verify it as `revshare
    /// verify` does, anchored to what you hold, and only then write the countersignature to send
    /// as POST /v1/statements/{agreement}/{period}/signatures.
    #[command(
        after_help = "Example:\n  revshare statement countersign bundle-2026-10 --key northwind.key --trust deployment.key.pub --out countersignature.json\n  curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' --data-binary @countersignature.json http://127.0.0.1:8080/v1/statements/meridian-northwind/2026-10/signatures"
    )]
    Countersign {
        /// The bundle folder (`revshare statement export --bundle DIR`, or GET …/bundle unpacked).
        bundle: PathBuf,
        /// The host's private key file (from `revshare keys generate`, registered with `revshare party key`).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the countersignature (the JSON body of the POST).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        anchors: Anchors,
    },
    /// Sign a finalised statement with a party's private key (the host's countersignature).
    #[command(after_help = "Example:\n  revshare statement sign --agreement meridian-northwind --period 2026-10 --key northwind.key")]
    Sign {
        #[command(flatten)]
        month: Month,
        /// Which statement of the month (1 is the original; default the latest).
        #[arg(long)]
        sequence: Option<u32>,
        /// The signing party's private key file (from `revshare keys generate`).
        #[arg(long, value_name = "KEY_FILE")]
        key: PathBuf,
    },
}

#[derive(Subcommand)]
enum AgreementCommand {
    /// Check agreement files and list every problem, with its line and column.
    #[command(after_help = "Example:\n  revshare agreement check examples/agreement.toml")]
    Check {
        /// Agreement files (TOML) to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Register an agreement (a new version of an existing id is an amendment).
    #[command(after_help = "Example:\n  revshare agreement add examples/agreement.toml")]
    Add {
        /// The agreement file (TOML).
        file: PathBuf,
    },
    /// List the registered agreements (the latest version of each), by id.
    #[command(after_help = "Example:\n  revshare agreement list --format json")]
    List {
        /// `table` for people, `json` or `csv` (RFC 4180) for programs.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

#[derive(clap::Args)]
struct SettleArgs {
    /// The agreement file (TOML).
    #[arg(long)]
    agreement: PathBuf,
    /// Usage files: JSON Lines or CloudEvents batches; `-` reads standard input.
    #[arg(long, required = true, num_args = 1..)]
    usage: Vec<PathBuf>,
    /// Contributions (JSON Lines, with their final `accepted` state).
    #[arg(long)]
    contributions: Option<PathBuf>,
    /// The derived models' lineage (SPEC §11): a JSON array of {"id", "derived_from"}, as
    /// `revshare model list --format json` prints and a bundle's models.json holds.
    #[arg(long)]
    models: Option<PathBuf>,
    /// The month to settle, YYYY-MM (UTC).
    #[arg(long, value_parser = parse_period)]
    period: Period,
    /// `table` for people, `json` for the canonical statement, `csv` (RFC 4180) of its lines.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// One agreement's month in the store.
#[derive(clap::Args)]
struct Month {
    /// The agreement's id, like meridian-northwind.
    #[arg(long)]
    agreement: String,
    /// YYYY-MM (UTC).
    #[arg(long, value_parser = parse_period)]
    period: Period,
}

/// How a statement is printed: tables for people; its canonical JSON; or its lines as CSV (RFC
/// 4180, a header row, one row a line), for a spreadsheet.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
}

/// How a list is printed: a table for people, JSON or CSV (RFC 4180, a header row) for programs.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum GenCommand {
    /// Write a deterministic, realistic month of usage records (JSON Lines).
    #[command(after_help = "Example:\n  revshare gen usage --agreement examples/agreement.toml --records 100000 --out usage.jsonl")]
    Usage(generate::GenArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Records to generate across the three hosts [default: 200000; with --serve, 5000 a month].
    #[arg(long)]
    records: Option<u64>,
    /// Where to write the demo files, or the served demo's store (default: a new temporary
    /// folder, kept).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Fill a store with a year of the demo's business (statements, payments, a dispute,
    /// contributions) and serve the dashboard on it, printing a sign-in token for each party.
    #[arg(long)]
    serve: bool,
    /// With --serve: where to listen, a port (this machine only) or an address and port.
    #[arg(long, default_value = "8080", value_parser = parse_listen, requires = "serve")]
    listen: std::net::SocketAddr,
}

fn parse_period(text: &str) -> Result<Period, String> {
    Period::parse(text).map_err(|e| e.to_string())
}

/// `8080` (this machine only: 127.0.0.1) or an address and port.
fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    match text.parse::<u16>() {
        Ok(port) => Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => text.parse().map_err(|_| {
            format!(
                "`{text}` is not a port or an address to listen on: write a port (8080) or an address and port (0.0.0.0:8080, [::]:8080)"
            )
        }),
    }
}

/// A flag Ctrl-C sets, for a batch command to stop cleanly and say what it left undone (instead
/// of the process ending wherever it is).
pub fn ctrl_c() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, std::sync::Arc::clone(&flag))
        .map_err(|e| anyhow::anyhow!("cannot watch for Ctrl-C: {e}"))?;
    Ok(flag)
}

/// How a command failed: invalid input (every problem, rendered), an interruption, or another
/// error.
pub enum Failure {
    Invalid(String),
    Other(anyhow::Error),
    /// Stopped by Ctrl-C; what was left undone (exit status 130, as the shell's).
    Interrupted(String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn dispute(store: &access::StoreArgs, command: DisputeCommand) -> Result<(), Failure> {
    use revshare_core::dispute::State;
    match command {
        DisputeCommand::Open { month, sequence, line, said } => {
            let questioned = dispute_cmds::Questioned { agreement: &month.agreement, period: month.period, sequence, line };
            dispute_cmds::open_dispute(store, &questioned, said.said())
        }
        DisputeCommand::Accept { id, said } => dispute_cmds::move_dispute(store, id, State::Accepted, said.with(None)),
        DisputeCommand::Reject { id, said } => dispute_cmds::move_dispute(store, id, State::Rejected, said.with(None)),
        DisputeCommand::Escalate { id, said, arbiter } => {
            dispute_cmds::move_dispute(store, id, State::Escalated, dispute_cmds::Said { arbiter, ..said.with(None) })
        }
        DisputeCommand::Counter { id, said } => dispute_cmds::move_dispute(store, id, State::Countered, said.said()),
        DisputeCommand::Decide { id, said } => dispute_cmds::move_dispute(store, id, State::Decided, said.said()),
        DisputeCommand::List { agreement, format } => dispute_cmds::list(store, agreement.as_deref(), format),
        DisputeCommand::Show { id, format } => dispute_cmds::show(store, id, format),
    }
}

/// Batches of tens of thousands of records allocate and free large buffers all the time; glibc
/// returns them to the kernel and faults them back in zeroed (measured at a tenth of an ingest's
/// CPU), where mimalloc keeps more of them (docs/DECISIONS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agreement(AgreementCommand::Check { files }) => settle_files::check_agreements(&files),
        Command::Agreement(AgreementCommand::Add { file }) => store_cmds::add_agreement(&cli.store, &file),
        Command::Agreement(AgreementCommand::List { format }) => list_cmds::agreements(&cli.store, format),
        Command::Party(PartyCommand::List { format }) => list_cmds::parties(&cli.store, format),
        Command::Model(ModelCommand::List { format }) => list_cmds::models(&cli.store, format),
        Command::Journal { format } => list_cmds::journal(&cli.store, format),
        Command::Init { origin } => store_cmds::init(&cli.store, &origin),
        Command::Keys(KeysCommand::Generate { name, out }) => log_cmds::generate_key(&name, &out),
        Command::Keys(KeysCommand::Rotate) => log_cmds::rotate(&cli.store),
        Command::Keys(KeysCommand::Registration { key, party, rotate_with }) => {
            log_cmds::registration(&key, &party, rotate_with.as_deref())
        }
        Command::Party(PartyCommand::Key { party, file, rotate_with }) => {
            log_cmds::add_party_key(&cli.store, &party, &file, rotate_with.as_deref())
        }
        Command::Batch(BatchCommand::Sign { file, key, content_type, json }) => {
            batch_cmds::sign(&file, &key, content_type.as_deref(), json)
        }
        Command::Log(LogCommand::Checkpoint) => log_cmds::print_checkpoint(&cli.store),
        Command::Log(LogCommand::Prove { leaf, size }) => log_cmds::prove(&cli.store, leaf, size),
        Command::Log(LogCommand::Consistency { from, to }) => log_cmds::consistency(&cli.store, from, to),
        Command::Verify { bundle, anchors } => {
            log_cmds::verify_bundle(&bundle, anchors.since.as_deref(), &anchors.trust, anchors.consistency.as_deref()).map(|_| ())
        }
        Command::Statement(StatementCommand::Countersign { bundle, key, out, anchors }) => {
            log_cmds::countersign(&bundle, &key, &out, anchors.since.as_deref(), &anchors.trust, anchors.consistency.as_deref())
        }
        Command::Statement(StatementCommand::Sign { month, sequence, key }) => {
            log_cmds::sign_statement(&cli.store, &month.agreement, month.period, sequence, &key)
        }
        Command::Party(PartyCommand::Add { id, name, role }) => store_cmds::add_party(&cli.store, &id, &name, &role),
        Command::Model(ModelCommand::Add { id, owner, derived_from, host }) => {
            store_cmds::add_model(&cli.store, &id, owner.as_deref(), derived_from.as_deref(), host.as_deref())
        }
        Command::Model(ModelCommand::Alias { host, host_model, model }) => store_cmds::add_alias(&cli.store, &host, &host_model, &model),
        Command::Contribution(ContributionCommand::Add { agreement, file }) => store_cmds::add_contributions(&cli.store, &agreement, &file),
        Command::Ingest { files, partial, batch_size, sign, receipts } => {
            let signing = store_cmds::IngestSigning { sign: sign.as_deref(), receipts: receipts.as_deref() };
            store_cmds::ingest(&cli.store, &files, partial, batch_size, &signing)
        }
        Command::Close { month, format } => store_cmds::close(&cli.store, &month.agreement, month.period).and_then(|statement| {
            report::print_statement(&statement, format, || {
                let bytes = statement.to_canonical().map_err(|e| Failure::Other(e.into()))?;
                Ok(report::statement_table(&bytes, "closed and finalised"))
            })
        }),
        Command::Statement(StatementCommand::Show { month, format }) => {
            store_cmds::show_statement(&cli.store, &month.agreement, month.period, format)
        }
        Command::Statement(StatementCommand::Preview { month, format }) => {
            store_cmds::preview_statement(&cli.store, &month.agreement, month.period, format)
        }
        Command::Statement(StatementCommand::List { agreement, format }) => list_cmds::statements(&cli.store, agreement.as_deref(), format),
        Command::Statement(StatementCommand::Export { month, sequence, out, bundle }) => match (bundle, out) {
            (Some(dir), _) => log_cmds::export_bundle(&cli.store, &month.agreement, month.period, sequence, &dir),
            (None, Some(out)) => store_cmds::export_statement(&cli.store, &month.agreement, month.period, sequence, &out),
            (None, None) => Err(Failure::Invalid("error: pass --out FILE or --bundle DIR\n".to_owned())),
        },
        Command::Payment(PaymentCommand::Record { agreement, amount, reference, from, by_payee }) => {
            ledger_cmds::record_payment(&cli.store, &agreement, &amount, &reference, from, by_payee)
        }
        Command::Payment(PaymentCommand::List { agreement, format }) => list_cmds::payments(&cli.store, agreement.as_deref(), format),
        Command::Usage { agreement, from, to, format } => list_cmds::usage(&cli.store, &agreement, from, to.unwrap_or(from), format),
        Command::Payment(PaymentCommand::Confirm { agreement, reference }) => {
            ledger_cmds::confirm_payment(&cli.store, &agreement, &reference)
        }
        Command::Payment(PaymentCommand::Reverse { reference, as_reference }) => {
            ledger_cmds::reverse_payment(&cli.store, &reference, &as_reference)
        }
        Command::Dispute(command) => dispute(&cli.store, command),
        Command::Compliance(ComplianceCommand::Report { licensor, period, format }) => {
            list_cmds::compliance(&cli.store, &licensor, period, format)
        }
        Command::Balances { currency, format } => ledger_cmds::balances(&cli.store, currency.as_deref(), format),
        Command::Token(TokenCommand::Create { party, role, operator }) => {
            server_cmds::create_token(&cli.store, party.as_deref(), role.as_deref(), operator)
        }
        Command::Token(TokenCommand::Revoke { id }) => server_cmds::revoke_token(&cli.store, &id),
        Command::Grant(GrantCommand::Add { auditor, agreement }) => server_cmds::grant(&cli.store, &auditor, &agreement, true),
        Command::Grant(GrantCommand::Revoke { auditor, agreement }) => server_cmds::grant(&cli.store, &auditor, &agreement, false),
        Command::Grant(GrantCommand::List { agreement, format }) => list_cmds::grants(&cli.store, agreement.as_deref(), format),
        Command::Serve { listen, max_body, max_connections, rate_limit, webhook_allow, log_json } => {
            let options = server_cmds::ServeOptions {
                listen,
                max_body_bytes: max_body,
                max_connections,
                rate_limit_per_second: rate_limit,
                webhook_hosts: webhook_allow,
                log_json,
            };
            server_cmds::serve(&cli.store, &options)
        }
        Command::Settle(args) => {
            settle_files::settle_command(&args.agreement, &args.usage, (args.contributions.as_deref(), args.models.as_deref()), args.period)
                .and_then(|(agreement, statement, summary)| {
                    report::print_statement(&statement, args.format, || Ok(report::settled_table(&agreement, &statement, &summary)))
                })
        }
        Command::Gen(GenCommand::Usage(args)) => generate::run(&args),
        Command::Demo(args) if args.serve => demo::serve(args.records.unwrap_or(5_000), args.dir, args.listen),
        Command::Demo(args) => demo::run(args.records.unwrap_or(200_000), args.dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(text)) => {
            eprint!("{text}");
            ExitCode::from(1)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Interrupted(text)) => {
            eprint!("{text}");
            ExitCode::from(130)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn listen_takes_a_port_or_an_address() {
        let address = |text: &str| text.parse::<std::net::SocketAddr>().expect("an address");
        assert_eq!(super::parse_listen("8081"), Ok(address("127.0.0.1:8081")));
        assert_eq!(super::parse_listen("0.0.0.0:9000"), Ok(address("0.0.0.0:9000")));
        assert_eq!(super::parse_listen("[::1]:9000"), Ok(address("[::1]:9000")));
        let refused = super::parse_listen("localhost").expect_err("not an address");
        assert!(refused.starts_with("`localhost` is not a port or an address to listen on: write a port (8080)"), "{refused}");
    }

    /// Every argument of every command says what it is (`--help`), so no one has to guess.
    #[test]
    fn every_argument_has_help() {
        use clap::CommandFactory as _;
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "revshare", &mut missing);
        assert!(missing.is_empty(), "arguments without help:\n{}", missing.join("\n"));
    }

    /// Every command that runs shows an example in its `--help`, and the example is a command
    /// line `revshare` accepts.
    #[test]
    fn every_command_has_an_example_that_parses() {
        use clap::{CommandFactory as _, Parser as _};
        fn leaves<'c>(command: &'c clap::Command, path: String, out: &mut Vec<(String, &'c clap::Command)>) {
            for sub in command.get_subcommands() {
                leaves(sub, format!("{path} {}", sub.get_name()), out);
            }
            if command.get_subcommands().next().is_none() {
                out.push((path, command));
            }
        }
        /// Splits a shell line at spaces, keeping double-quoted parts whole.
        fn words(line: &str) -> Vec<String> {
            let (mut words, mut word, mut quoted) = (Vec::new(), String::new(), false);
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ' ' if !quoted => words.extend((!word.is_empty()).then(|| std::mem::take(&mut word))),
                    c => word.push(c),
                }
            }
            words.extend((!word.is_empty()).then_some(word));
            words
        }
        let root = super::Cli::command();
        let mut all = Vec::new();
        leaves(&root, "revshare".to_owned(), &mut all);
        assert!(all.len() > 40, "{} commands", all.len());
        for (path, command) in all {
            let help = command.get_after_help().map(ToString::to_string).unwrap_or_default();
            let example = help.lines().find_map(|l| l.trim().strip_prefix("revshare ").map(|rest| format!("revshare {rest}")));
            let Some(example) = example else { panic!("`{path}` has no example in its help") };
            assert!(example.starts_with(&path), "`{path}`'s example is of another command: {example}");
            if let Err(e) = super::Cli::try_parse_from(words(&example)) {
                panic!("`{path}`'s example does not parse: {example}\n{e}");
            }
        }
    }

    #[test]
    fn counts_name_their_noun() {
        use crate::report::counted;
        assert_eq!([counted(0, "resend"), counted(1, "resend"), counted(2, "record")], ["0 resends", "1 resend", "2 records"]);
        assert_eq!([counted(2, "party"), counted(1, "entry"), counted(3, "key")], ["2 parties", "1 entry", "3 keys"]);
    }
}
