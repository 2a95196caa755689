//! The PostgreSQL store, for production deployments.
//!
//! Write transactions first take a transaction-scoped advisory lock ([`WRITE_LOCK`]), so writers
//! run one at a time as in SQLite: the shared read-check-write logic (dedup, rollup sums,
//! statement sequence numbers) stays correct with several processes ingesting at once, without
//! serialisation-failure retries. Readers do not take it. Commits are durable under the
//! server's default `synchronous_commit = on`. Statements are prepared once per connection.
//!
//! The connection is made without TLS (`NoTls`): the server is expected on a trusted network or
//! a Unix socket.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Statement, Transaction};

use crate::error::StoreError;
use crate::index::{RecordIndex, SharedIndex};
use crate::schema;
use crate::sql::{Access, Backend, Columns, Dialect, Param, Sql};

/// The advisory lock key that serialises writers ("revs" in ASCII).
pub const WRITE_LOCK: i64 = 0x7265_7673;

/// A store in a PostgreSQL database.
pub struct PgStore {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
    index: SharedIndex,
}

impl PgStore {
    /// Connects with a URL (`postgres://user@host/db`) or `key=value` settings, and brings the
    /// schema up to date.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let config = url.parse::<Config>().map_err(|e| StoreError::DatabaseSetting { detail: crate::error::with_causes(&e) })?;
        PgStore::connect_with(&config)
    }

    /// Connects with parsed settings, and brings the schema up to date. A failed connection
    /// names what was tried.
    pub fn connect_with(config: &Config) -> Result<PgStore, StoreError> {
        let client = config.connect(NoTls).map_err(|source| StoreError::Connect { target: target(config), source })?;
        let mut store = PgStore { client, prepared: HashMap::new(), index: RecordIndex::shared() };
        schema::migrate(&mut store)?;
        Ok(store)
    }

    /// Ingests with `index`, shared with other connections to the same database in this process,
    /// so the process keeps one copy of the stored keys (each still catches up on its own).
    pub fn with_index(self, index: SharedIndex) -> PgStore {
        PgStore { index, ..self }
    }
}

/// What a connection tries, for its error: `127.0.0.1:5432, database revshare, user postgres`
/// (never the password).
fn target(config: &Config) -> String {
    use postgres::config::Host;
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{} (port {port})", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() { "the default host (localhost:5432)".to_owned() } else { hosts.join(", ") };
    let user = config.get_user().unwrap_or("(the default)");
    format!("{hosts}, database {}, user {user}", config.get_dbname().unwrap_or("(the user's)"))
}

/// An open PostgreSQL transaction.
pub struct PgTx<'a> {
    tx: Transaction<'a>,
    prepared: &'a mut HashMap<&'static str, Statement>,
}

impl Backend for PgStore {
    type Tx<'a> = PgTx<'a>;

    fn begin(&mut self, access: Access) -> Result<PgTx<'_>, StoreError> {
        let mut tx = self.client.transaction()?;
        if access == Access::Write {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        }
        Ok(PgTx { tx, prepared: &mut self.prepared })
    }

    fn index(&self) -> SharedIndex {
        self.index.clone()
    }
}

impl PgTx<'_> {
    fn prepare(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(sql)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }
}

fn bind<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| -> &'a (dyn ToSql + Sync) {
            match p {
                Param::Text(text) => text,
                Param::OptText(text) => text,
                Param::Int(n) => n,
                Param::OptInt(n) => n,
                Param::Bytes(bytes) => bytes,
                Param::Bool(flag) => flag,
                Param::TextArray(texts) => texts,
                Param::OptTextArray(texts) => texts,
                Param::IntArray(ns) => ns,
                Param::BytesArray(bytes) => bytes,
                Param::BoolArray(flags) => flags,
            }
        })
        .collect()
}

struct Row<'r>(&'r postgres::Row);

impl Columns for Row<'_> {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.0.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.0.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.0.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.0.try_get(i)?)
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        Ok(self.0.try_get(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.0.try_get(i)?)
    }
}

impl Sql for PgTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let statement = self.prepare(sql)?;
        Ok(self.tx.execute(&statement, &bind(params))?)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&dyn Columns) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let statement = self.prepare(sql)?;
        for row in self.tx.query(&statement, &bind(params))? {
            each(&Row(&row))?;
        }
        Ok(())
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.tx.batch_execute(sql)?)
    }

    fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit()?)
    }
}
