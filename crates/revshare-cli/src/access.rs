//! Where the store is and how a command opens it: the arguments every store command shares
//! (`--data`, `--database`, `--signing-key`), opening the embedded SQLite file or PostgreSQL, and
//! turning a parse or store error into the command's failure. Every command module depends on
//! this one and on none of each other's internals for it.

use std::path::PathBuf;

use anyhow::Context;
use revshare_store::{PgStore, SqliteStore, Store, StoreError};

use crate::Failure;

/// Where the store is.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// The data folder of the embedded store.
    #[arg(long, global = true, env = "REVSHARE_DATA", default_value = "revshare-data")]
    pub data: PathBuf,
    /// A PostgreSQL URL (`postgres://user@host/db`); when set, it is the store.
    #[arg(long, global = true, env = "REVSHARE_DATABASE_URL")]
    pub database: Option<String>,
    /// The deployment's private signing key (default: DATA/deployment.key, created by `init`).
    #[arg(long, global = true, env = "REVSHARE_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
}

/// The SQLite file inside a data folder.
pub const STORE_FILE: &str = "revshare.db";

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Invalid(format!("error: {e}\n"))
    }
}

/// Opens the store; only `init` creates one.
pub fn open(args: &StoreArgs, create: bool) -> Result<Box<dyn Store + Send>, Failure> {
    if let Some(url) = &args.database {
        return Ok(Box::new(PgStore::connect(url)?));
    }
    let file = args.data.join(STORE_FILE);
    if !create && !file.exists() {
        return Err(Failure::Invalid(format!(
            "error: there is no store in {}; run `revshare init` there first, or pass --data DIR\n",
            args.data.display()
        )));
    }
    std::fs::create_dir_all(&args.data).with_context(|| format!("cannot create the data folder {}", args.data.display()))?;
    Ok(Box::new(SqliteStore::open(&file)?))
}

/// A parse or validation result, its error as invalid input.
pub fn parse<T, E: std::fmt::Display>(parsed: Result<T, E>) -> Result<T, Failure> {
    parsed.map_err(|e| Failure::Invalid(format!("error: {e}\n")))
}
