//! The embedded store: one SQLite file in the data folder, nothing to install.
//!
//! The file is opened in WAL mode with `synchronous = FULL`, so a committed transaction is on
//! disk before `commit` returns (an acknowledged batch survives a crash or power loss), and
//! readers never block the writer. Writers take the write lock up front (`BEGIN IMMEDIATE`), so
//! a second process waits for the first (up to [`BUSY_TIMEOUT`]) instead of failing half-way
//! through a read-check-write sequence. Foreign keys are enforced. Statements are prepared once
//! per connection (`prepare_cached`).

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ToSqlOutput;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::StoreError;
use crate::index::{RecordIndex, SharedIndex};
use crate::schema;
use crate::sql::{Access, Backend, Columns, Dialect, Param, Sql};

/// How long a writer waits for another process's write transaction to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// A store in one SQLite file.
pub struct SqliteStore {
    connection: Connection,
    index: SharedIndex,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = SqliteStore { connection, index: RecordIndex::shared() };
        schema::migrate(&mut store)?;
        Ok(store)
    }

    /// Opens the file without migrating it (tests build older schemas with it).
    #[cfg(test)]
    pub(crate) fn unmigrated(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore { connection: Connection::open(path)?, index: RecordIndex::shared() })
    }

    /// Ingests with `index`, shared with other stores of the same file in this process, so the
    /// process keeps one copy of the stored keys (each store still catches up on its own).
    pub fn with_index(self, index: SharedIndex) -> SqliteStore {
        SqliteStore { index, ..self }
    }
}

/// An open SQLite transaction.
pub struct SqliteTx<'a>(Transaction<'a>);

impl Backend for SqliteStore {
    type Tx<'a> = SqliteTx<'a>;

    fn begin(&mut self, access: Access) -> Result<SqliteTx<'_>, StoreError> {
        let behavior = match access {
            Access::Read => TransactionBehavior::Deferred,
            Access::Write => TransactionBehavior::Immediate,
        };
        Ok(SqliteTx(self.connection.transaction_with_behavior(behavior)?))
    }

    fn index(&self) -> SharedIndex {
        self.index.clone()
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Param::Text(text) => text.to_sql(),
            Param::OptText(text) => text.to_sql(),
            Param::Int(n) => n.to_sql(),
            Param::OptInt(n) => n.to_sql(),
            Param::Bytes(bytes) => bytes.to_sql(),
            Param::Bool(flag) => flag.to_sql(),
            Param::TextArray(_) | Param::OptTextArray(_) | Param::IntArray(_) | Param::BytesArray(_) | Param::BoolArray(_) => {
                Err(rusqlite::Error::ToSqlConversionFailure("array parameters are for PostgreSQL bulk statements only".into()))
            }
        }
    }
}

struct Row<'r, 's>(&'r rusqlite::Row<'s>);

impl Columns for Row<'_, '_> {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        Ok(self.0.get(i)?)
    }
    fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.0.get(i)?)
    }
}

impl Sql for SqliteTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let changed = self.0.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&dyn Columns) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut statement = self.0.prepare_cached(sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            each(&Row(row))?;
        }
        Ok(())
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.0.execute_batch(sql)?)
    }

    fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.commit()?)
    }
}
