//! The API's commands: `token create`, `token revoke`, `grant` and `serve`.
//!
//! A token is made here from the operating system's random source and printed once, to standard
//! output alone (so a script can capture it); the store keeps only its SHA-256. Its format, hash
//! and id are `revshare_server::auth`'s, the same code the server checks tokens with. `serve`
//! opens the same store as every other command (`--data` or `--database`) and signs with the same
//! deployment key; the server crate does the rest.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use revshare_core::ids::{AgreementId, PartyId};
use revshare_server::auth;
use revshare_store::{PgStore, RecordIndex, Role, SqliteStore, Store};

use crate::Failure;
use crate::access::{STORE_FILE, StoreArgs, open, parse};
use crate::log_cmds::{deployment_key, now};

/// `revshare token create`: prints a new token once; stores its hash. `--operator` makes one that
/// acts as the deployment's operator (SPEC §1), who is no party.
pub fn create_token(args: &StoreArgs, party: Option<&str>, role: Option<&str>, operator: bool) -> Result<(), Failure> {
    let (party_id, role) = match (party, role, operator) {
        (None, None, true) => (parse(PartyId::parse(revshare_store::OPERATOR))?, Role::Operator),
        (Some(party), Some(role), false) => match Role::parse(role)? {
            Role::Operator => return Err(revshare_store::StoreError::OperatorIsNoParty.into()),
            role => (parse(PartyId::parse(party))?, role),
        },
        _ => {
            return Err(Failure::Invalid(
                "error: give --party and --role for a party's token, or --operator alone for the operator's\n".to_owned(),
            ));
        }
    };
    let (token, hash, id) = auth::new_token().map_err(|e| anyhow::anyhow!(e))?;
    open(args, false)?.add_token(&id, &party_id, role, &hash)?;
    println!("{token}");
    eprintln!(
        "token {id} for {party_id} ({role}) created; it is shown only this once — keep it secret, revoke it with `revshare token revoke {id}`"
    );
    Ok(())
}

/// `revshare token revoke`.
pub fn revoke_token(args: &StoreArgs, id: &str) -> Result<(), Failure> {
    let token = open(args, false)?.revoke_token(id)?;
    println!("token {} of {} ({}) revoked", token.id, token.party, token.role);
    Ok(())
}

/// `revshare grant add` (`give`) and `grant revoke`: the operator's grants, each logged.
pub fn grant(args: &StoreArgs, auditor: &str, agreement: &str, give: bool) -> Result<(), Failure> {
    let auditor = parse(PartyId::parse(auditor))?;
    let agreement = parse(AgreementId::parse(agreement))?;
    let mut store = open(args, false)?;
    if give {
        let grant = store.grant(&auditor, &agreement)?;
        println!("auditor {} may read agreement {} (log leaf {})", grant.auditor, grant.agreement, grant.granted_leaf);
    } else {
        let grant = store.revoke_grant(&auditor, &agreement)?;
        let leaf = grant.revoked_leaf.map(|l| format!(" (log leaf {l})")).unwrap_or_default();
        println!("auditor {} may no longer read agreement {}{leaf}", grant.auditor, grant.agreement);
    }
    Ok(())
}

/// `revshare grant list`.
/// How `serve` listens and logs.
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub rate_limit_per_second: u32,
    /// Hosts webhook endpoints may name (`loopback`: the loopback addresses).
    pub webhook_hosts: Vec<String>,
    pub log_json: bool,
}

/// `revshare serve`: the HTTP API until ctrl-c or SIGTERM; requests in flight finish first.
pub fn serve(args: &StoreArgs, options: &ServeOptions) -> Result<(), Failure> {
    // Fail now, with the CLI's messages, if there is no store or no key.
    open(args, false)?;
    let key = deployment_key(args)?;
    // The server's connections share one index of the stored records, not one copy each.
    let index = RecordIndex::shared();
    let opener: revshare_server::OpenStore = match &args.database {
        Some(url) => {
            let url = url.clone();
            Arc::new(move || Ok(Box::new(PgStore::connect(&url).map_err(Box::new)?.with_index(index.clone())) as Box<dyn Store + Send>))
        }
        None => {
            let file = args.data.join(STORE_FILE);
            Arc::new(move || Ok(Box::new(SqliteStore::open(&file).map_err(Box::new)?.with_index(index.clone())) as Box<dyn Store + Send>))
        }
    };
    let config = revshare_server::Config {
        open: opener,
        key,
        clock: now,
        max_body_bytes: options.max_body_bytes,
        max_connections: options.max_connections,
        // SQLite has one writer at a time: they queue in the server, in order (see `Config`).
        max_writers: if args.database.is_some() { options.max_connections } else { 1 },
        rate_limit_per_second: options.rate_limit_per_second,
        timeouts: revshare_server::Timeouts::default(),
        webhooks: revshare_server::webhooks::WebhookConfig { allowed_hosts: options.webhook_hosts.clone(), ..Default::default() },
    };
    revshare_server::init_tracing(options.log_json);
    // No transparent huge pages for the server: the allocator asks for them, and each first
    // touch of one zeroes 2 MiB on the spot, on whichever request's path it falls; on a virtual
    // machine a few of those in a row held a usage batch for tens of milliseconds (p99 batch
    // latency 77-95 ms with them, 47-55 ms without, same throughput). Batch jobs (`ingest`) keep
    // them: there they save more in page faults and TLB misses than they cost (docs/DECISIONS.md).
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(%e, "cannot turn transparent huge pages off; batch latency may have longer tails");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(options.listen).await.with_context(|| format!("cannot listen on {}", options.listen))?;
        let address = listener.local_addr().context("cannot read the address listened on")?;
        println!("listening on http://{address}");
        std::io::stdout().flush().context("cannot write to standard output")?;
        revshare_server::serve(listener, config, revshare_server::shutdown_signal()).await.context("the server failed")?;
        Ok::<(), anyhow::Error>(())
    })?;
    println!("stopped");
    Ok(())
}
