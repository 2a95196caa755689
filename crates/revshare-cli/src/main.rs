//! `revshare`: the command line. Thin glue: it reads files, calls the core, prints results.

mod demo;
mod generate;
mod reading;
mod report;
mod settle_files;
mod settle_sink;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with agreement files.
    #[command(subcommand)]
    Agreement(AgreementCommand),
    /// Settle one agreement for one month from files, and print the statement.
    Settle(SettleArgs),
    /// Generate test data.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Generate a month for a licensor and three hosts, and print each statement.
    Demo(DemoArgs),
}

#[derive(Subcommand)]
enum AgreementCommand {
    /// Check agreement files and list every problem, with its line and column.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
    /// The month to settle, YYYY-MM (UTC).
    #[arg(long, value_parser = parse_period)]
    period: Period,
    /// `table` for people, `json` for the canonical statement.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum GenCommand {
    /// Write a deterministic, realistic month of usage records (JSON Lines).
    Usage(generate::GenArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Records to generate across the three hosts.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Where to write the demo files (default: a new temporary folder, kept).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn parse_period(text: &str) -> Result<Period, String> {
    Period::parse(text).map_err(|e| e.to_string())
}

/// How a command failed: invalid input (every problem, rendered) or another error.
pub enum Failure {
    Invalid(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agreement(AgreementCommand::Check { files }) => settle_files::check_agreements(&files),
        Command::Settle(args) => settle_files::settle_command(&args.agreement, &args.usage, args.contributions.as_deref(), args.period)
            .map(|(agreement, statement, summary)| match args.format {
                Format::Json => report::print_json(&statement),
                Format::Table => print!("{}", report::statement_table(&agreement, &statement, &summary)),
            }),
        Command::Gen(GenCommand::Usage(args)) => generate::run(&args).map_err(Failure::from),
        Command::Demo(args) => demo::run(args.records, args.dir),
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
    }
}
