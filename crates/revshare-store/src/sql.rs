//! The seam between the store's logic and its two databases.
//!
//! Everything a store decides — validation, idempotency, matching records to agreements, rollup
//! arithmetic, statement sequencing — is written once, against the small [`Sql`] trait: run a
//! statement with `$n` parameters, read rows through [`Columns`], run a migration script, commit.
//! The SQLite and PostgreSQL modules only adapt their driver to it. SQL text is shared as well:
//! both databases read `$1, $2, …` (SQLite numbers `$n` parameters in order of first appearance, so
//! every statement names them in ascending order) and both speak `INSERT … ON CONFLICT`. The few
//! places where the dialects differ (the DDL, and writing the `u128` rollup sums, which are
//! `NUMERIC` in PostgreSQL and `TEXT` in SQLite) branch on [`Dialect`].
//!
//! Bulk statements are the other place: PostgreSQL is a network round trip away, so ingestion
//! sends a batch's records in one statement, each column bound as an array (`Param::*Array`,
//! unpacked by `UNNEST`), where SQLite, in-process, runs the one-row statement per record. Only
//! PostgreSQL binds array parameters; SQLite refuses them.
//!
//! [`Backend`] opens a transaction; dropping one without [`Sql::commit`] rolls it back, which is
//! how a refused batch leaves nothing behind.

use crate::error::StoreError;
use crate::index::SharedIndex;

/// Which SQL dialect a transaction speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// What a transaction will do: writers are serialised (SQLite `BEGIN IMMEDIATE`, a PostgreSQL
/// advisory lock), so the read-check-write sequences of the shared logic need no retry loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A value bound to a `$n` placeholder.
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Bytes(&'a [u8]),
    Bool(bool),
    /// Arrays, one element per row of a bulk statement (PostgreSQL only).
    TextArray(&'a [&'a str]),
    OptTextArray(&'a [Option<&'a str>]),
    IntArray(&'a [i64]),
    BytesArray(&'a [&'a [u8]]),
    BoolArray(&'a [bool]),
}

/// One result row, read by column index.
pub trait Columns {
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError>;
    fn flag(&self, i: usize) -> Result<bool, StoreError>;
}

/// One open transaction.
pub trait Sql {
    fn dialect(&self) -> Dialect;
    /// Runs one statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// Runs one query, calling `each` for every row.
    fn query(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&dyn Columns) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Runs a script of statements without parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
    fn commit(self) -> Result<(), StoreError>
    where
        Self: Sized;
}

/// A database connection that opens transactions.
pub trait Backend {
    type Tx<'a>: Sql
    where
        Self: 'a;
    fn begin(&mut self, access: Access) -> Result<Self::Tx<'_>, StoreError>;
    /// The index of the database's stored records that this connection ingests with.
    fn index(&self) -> SharedIndex;
}

/// Every row of a query, each read by `read`.
pub fn rows<T>(
    sql: &mut impl Sql,
    query: &'static str,
    params: &[Param<'_>],
    mut read: impl FnMut(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    sql.query(query, params, &mut |row| {
        out.push(read(row)?);
        Ok(())
    })?;
    Ok(out)
}

/// The first row of a query, if any.
pub fn first<T>(
    sql: &mut impl Sql,
    query: &'static str,
    params: &[Param<'_>],
    mut read: impl FnMut(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut out = None;
    sql.query(query, params, &mut |row| {
        if out.is_none() {
            out = Some(read(row)?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// A stored integer that must fit a smaller unsigned type.
pub fn unsigned<T: TryFrom<i64>>(value: i64, what: impl FnOnce() -> String) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Corrupt { what: what(), detail: format!("{value} is out of range") })
}
