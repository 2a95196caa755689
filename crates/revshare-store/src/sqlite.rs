//! The embedded store: one SQLite file in the data folder, nothing to install.
//!
//! The file is opened in WAL mode with `synchronous = FULL`, so a committed transaction is on
//! disk before `commit` returns (an acknowledged batch survives a crash or power loss), and
//! readers never block the writer. Writers take the write lock up front (`BEGIN IMMEDIATE`), so
//! a second process waits for the first (up to [`BUSY_TIMEOUT`]) instead of failing half-way
//! through a read-check-write sequence. Foreign keys are enforced. Statements are prepared once
//! per connection (`prepare_cached`).
//!
//! A commit never copies the write-ahead log into the database file itself: each store has a
//! checkpointer, a thread with its own connection that runs `PRAGMA wal_checkpoint(PASSIVE)`
//! when a commit leaves the log at [`CHECKPOINT_PAGES`] or more (a passive checkpoint never
//! waits for, and never blocks, a reader or the writer). The store's connection wakes it from
//! SQLite's log hook, which replaces SQLite's automatic checkpoints: those ran inside the
//! commit that took the log past the same length, copying and syncing several megabytes before
//! it returned, so every few megabytes one batch waited for that, and every batch queued behind
//! it. Dropping the store stops its checkpointer after its connection has closed, so the last
//! one to close checkpoints what is left and removes the log, as SQLite does.
//!
//! SQLite writes the log from its start again only when a write transaction begins with every
//! committed page already copied into the file. A writer that commits batch after batch never
//! finds it so: the checkpointer is always copying the last commit when the next begins, and the
//! log grew to 715 MB over a 10M-record ingest, every page of it fresh memory for the system's
//! file cache (on a virtual machine that hands free memory back to its host, a page touched
//! for the first time costs several times its copy). So a commit that leaves the log at [`RESTART_PAGES`] or more has the next write
//! transaction wait, before it begins, for a checkpoint that covers the whole log; it then
//! starts the log again, over pages the cache already holds. The wait is for the copy of what
//! the checkpointer had not reached yet, mostly the last commit. A reader still using the log
//! (another connection's read transaction) keeps it from starting again; the next wait then
//! comes only after another [`RESTART_PAGES`], so a long reader does not make every commit wait.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::types::ToSqlOutput;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::StoreError;
use crate::index::{RecordIndex, SharedIndex};
use crate::schema;
use crate::sql::{Access, Backend, Columns, Dialect, Param, Sql};

/// How long a writer waits for another process's write transaction to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The length of the log, in pages, from which a commit wakes the checkpointer: SQLite's own
/// threshold for its automatic checkpoints (4 MiB of 4 KiB pages). Waking it after every commit
/// added a sync of the database file to every small batch.
pub const CHECKPOINT_PAGES: i32 = 1000;

/// The length of the log, in pages, from which the next write transaction first waits for a
/// checkpoint of the whole log, so that it writes the log from its start again (64 MiB of 4 KiB
/// pages: a wait every dozen or so batches of 50,000 records).
pub const RESTART_PAGES: i32 = 16_384;

/// A store in one SQLite file. Fields drop in order: the connection closes before the
/// checkpointer stops.
pub struct SqliteStore {
    connection: Connection,
    index: SharedIndex,
    /// Stopped on drop, once the connection above has closed.
    checkpointer: Option<Checkpointer>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let mut connection = Connection::open(&path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        let checkpointer = Checkpointer::start(path.as_ref())?;
        let (passes, long) = (checkpointer.passes.clone(), checkpointer.long.clone());
        // The log's length from which the next write transaction waits: RESTART_PAGES, or, when
        // a wait did not start the log again (a reader still used it), RESTART_PAGES more.
        let mut wait_from = RESTART_PAGES;
        // Called after each commit with the log's length; it replaces the automatic checkpoints.
        connection.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            if pages >= CHECKPOINT_PAGES {
                passes.ask();
            }
            if pages < RESTART_PAGES {
                wait_from = RESTART_PAGES;
            } else if pages >= wait_from {
                long.store(true, Ordering::Relaxed);
                wait_from = pages.saturating_add(RESTART_PAGES);
            }
            Ok(())
        }))?;
        let mut store = SqliteStore { connection, index: RecordIndex::shared(), checkpointer: Some(checkpointer) };
        schema::migrate(&mut store)?;
        Ok(store)
    }

    /// Opens the file without migrating it (tests build older schemas with it).
    #[cfg(test)]
    pub(crate) fn unmigrated(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        Ok(SqliteStore { connection: Connection::open(path)?, index: RecordIndex::shared(), checkpointer: None })
    }

    /// Ingests with `index`, shared with other stores of the same file in this process, so the
    /// process keeps one copy of the stored keys (each store still catches up on its own).
    pub fn with_index(self, index: SharedIndex) -> SqliteStore {
        SqliteStore { index, ..self }
    }
}

/// Runs passive checkpoints of one database on its own thread, each time it is asked.
struct Checkpointer {
    passes: Arc<Passes>,
    /// Set by a commit that leaves the log at [`RESTART_PAGES`] or more; taken by the next write
    /// transaction, which first waits for a checkpoint of the whole log.
    long: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Checkpoints asked for and done, counted: a checkpoint takes every request made before it
/// starts, so one asked for while another runs is the next one, and several are one.
#[derive(Default)]
struct Passes {
    count: Mutex<Count>,
    changed: Condvar,
}

#[derive(Default)]
struct Count {
    asked: u64,
    done: u64,
    /// The store is gone: the thread ends once it has done what was asked.
    closed: bool,
}

impl Passes {
    fn count(&self) -> std::sync::MutexGuard<'_, Count> {
        self.count.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for a checkpoint that starts from now on, and returns its number.
    fn ask(&self) -> u64 {
        let mut count = self.count();
        count.asked += 1;
        self.changed.notify_all();
        count.asked
    }

    /// Waits until checkpoint `pass` is done (or the thread has ended).
    fn wait(&self, pass: u64) {
        let mut count = self.count();
        while count.done < pass && !count.closed {
            count = self.changed.wait(count).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits for a request, and returns the number of the last one made; `None` once closed
    /// with nothing left to do.
    fn next(&self) -> Option<u64> {
        let mut count = self.count();
        while count.asked == count.done {
            if count.closed {
                return None;
            }
            count = self.changed.wait(count).unwrap_or_else(PoisonError::into_inner);
        }
        Some(count.asked)
    }

    fn done(&self, pass: u64) {
        self.count().done = pass;
        self.changed.notify_all();
    }

    fn close(&self) {
        self.count().closed = true;
        self.changed.notify_all();
    }
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let connection = Connection::open(path)?;
        let passes = Arc::new(Passes::default());
        let asked = passes.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || checkpoint_when_asked(&connection, &asked))
            .map_err(|e| StoreError::Internal { action: "start its checkpoint thread".to_owned(), detail: e.to_string() })?;
        Ok(Checkpointer { passes, long: Arc::new(AtomicBool::new(false)), thread: Some(thread) })
    }

    /// Before a write transaction: if the log has grown long, waits for a checkpoint of all of
    /// it, so the transaction writes the log from its start again.
    fn before_writing(&self) {
        if self.long.swap(false, Ordering::Relaxed) {
            self.passes.wait(self.passes.ask());
        }
    }
}

/// A checkpoint that fails (the file is gone, the disk is full) leaves the log as it is, still
/// complete and read by every connection; the next commit that leaves it long asks again.
fn checkpoint_when_asked(connection: &Connection, passes: &Passes) {
    while let Some(pass) = passes.next() {
        let _ = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        passes.done(pass);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // The thread ends after the checkpoints asked for.
        self.passes.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An open SQLite transaction.
pub struct SqliteTx<'a>(Transaction<'a>);

impl Backend for SqliteStore {
    type Tx<'a> = SqliteTx<'a>;

    fn begin(&mut self, access: Access) -> Result<SqliteTx<'_>, StoreError> {
        let behavior = match access {
            Access::Read => TransactionBehavior::Deferred,
            Access::Write => {
                if let Some(checkpointer) = &self.checkpointer {
                    checkpointer.before_writing();
                }
                TransactionBehavior::Immediate
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A new store in a temporary folder (kept while the folder is), and its file.
    fn opened() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let file = dir.path().join("revshare.db");
        let store = SqliteStore::open(&file).expect("opens");
        (dir, file, store)
    }

    /// The length of a file.
    fn length(path: &Path) -> u64 {
        std::fs::metadata(path).expect("the file").len()
    }

    /// The log's length, in bytes, from which it is written from its start again.
    fn restart_bytes() -> u64 {
        u64::try_from(RESTART_PAGES).expect("a page count") * 4096
    }

    /// How many rows the writes made.
    fn rows(connection: &Connection) -> i64 {
        connection.query_row("SELECT count(*) FROM scratch", [], |row| row.get(0)).expect("reads")
    }

    /// Writes one transaction of `bytes` bytes.
    fn write(store: &mut SqliteStore, bytes: usize) {
        let mut sql = store.begin(Access::Write).expect("a write transaction");
        sql.batch("CREATE TABLE IF NOT EXISTS scratch (b BLOB)").expect("a table");
        sql.execute("INSERT INTO scratch (b) VALUES ($1)", &[Param::Bytes(&vec![7u8; bytes])]).expect("a row");
        sql.commit().expect("the commit");
    }

    /// A commit that leaves the log shorter than [`CHECKPOINT_PAGES`] wakes nothing: its pages
    /// stay in the log. One that leaves it longer wakes the checkpointer, which copies them into
    /// the database file while the store stays open.
    #[test]
    fn the_checkpointer_copies_committed_pages_into_the_file() {
        let (_dir, file, mut store) = opened();
        let before = length(&file);
        write(&mut store, 1 << 20);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(length(&file), before, "a short log was checkpointed");
        write(&mut store, 8 << 20);
        let deadline = Instant::now() + Duration::from_secs(30);
        while length(&file) < before + (8 << 20) {
            assert!(Instant::now() < deadline, "no checkpoint copied the 8 MiB committed into the file");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The store goes on writing, and reading what it wrote.
        write(&mut store, 1 << 10);
        assert_eq!(rows(&store.connection), 3);
    }

    /// A store that commits batch after batch writes its log from the start again once it has
    /// grown past [`RESTART_PAGES`]: the log's file stays near that length, where without the
    /// wait before the next write transaction it held everything written (the checkpointer is
    /// still copying the last commit when the next begins).
    #[test]
    fn a_long_log_is_written_from_its_start_again() {
        let (dir, _file, mut store) = opened();
        let commits = (2 * restart_bytes()) >> 22;
        for _ in 0..commits {
            write(&mut store, 4 << 20);
        }
        let log = length(&dir.path().join("revshare.db-wal"));
        assert!(log < restart_bytes() + (12 << 20), "the log is {log} bytes after {commits} commits of 4 MiB");
        assert_eq!(rows(&store.connection), i64::try_from(commits).expect("a count"));
    }

    /// A reader still using the log keeps it from starting again. The writer then waits for a
    /// checkpoint once every [`RESTART_PAGES`], not before every commit, and starts the log
    /// again once the reader is done.
    #[test]
    fn a_reader_on_the_log_does_not_make_every_commit_wait() {
        let (dir, file, mut store) = opened();
        let log = dir.path().join("revshare.db-wal");
        write(&mut store, 1 << 20);
        let reader = Connection::open(&file).expect("opens");
        reader.execute_batch("BEGIN").expect("a read transaction");
        assert_eq!(rows(&reader), 1);
        let asked = |store: &SqliteStore| store.checkpointer.as_ref().expect("a checkpointer").passes.count().asked;
        let restart = restart_bytes();
        let (before, commits) = (asked(&store), (2 * restart) >> 22);
        for _ in 0..commits {
            write(&mut store, 4 << 20);
        }
        // Each commit asks for a checkpoint (the log is longer than CHECKPOINT_PAGES); each
        // wait asks for one more.
        let waits = asked(&store) - before - commits;
        assert!((1..=2).contains(&waits), "{waits} of {commits} write transactions waited for a checkpoint");
        let grown = length(&log);
        assert!(grown > 2 * restart, "the log started again while a reader used it: {grown} bytes");
        reader.execute_batch("COMMIT").expect("the reader is done");
        for _ in 0..commits {
            write(&mut store, 4 << 20);
        }
        let after = length(&log);
        assert!(after < grown + restart + (12 << 20), "the log is {after} bytes, {grown} when the reader was done");
    }

    /// A store opened while another connection holds the write lock opens at once: a current
    /// schema is read, not migrated under the lock.
    #[test]
    fn a_store_opens_while_another_writes() {
        let (_dir, file, mut writer) = opened();
        let writing = writer.begin(Access::Write).expect("the write lock");
        let (opened, opening) = std::sync::mpsc::channel();
        let path = file.clone();
        let thread = std::thread::spawn(move || {
            let _ = opened.send(SqliteStore::open(&path).map(drop));
        });
        let outcome = opening.recv_timeout(Duration::from_secs(10));
        drop(writing);
        thread.join().expect("the opening thread");
        assert!(matches!(outcome, Ok(Ok(()))), "the store did not open while another held the write lock: {outcome:?}");
    }

    /// Dropping a store stops its checkpointer after the store's connection has closed, so the
    /// last connection to close checkpoints everything and removes the log.
    #[test]
    fn a_dropped_store_leaves_no_log() {
        let (dir, file, mut store) = opened();
        for _ in 0..20 {
            write(&mut store, 256 << 10);
        }
        assert!(dir.path().join("revshare.db-wal").exists(), "an open store writes through its log");
        drop(store);
        assert!(!dir.path().join("revshare.db-wal").exists(), "the log outlived the store");
        assert_eq!(rows(&Connection::open(&file).expect("opens")), 20);
    }
}
