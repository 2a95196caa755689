//! The transparency log, persisted (SPEC §7).
//!
//! One append-only Merkle tree per database, hashed as RFC 6962 by the core
//! (`revshare_core::merkle`). A leaf is appended in the same transaction as the event it logs (a
//! usage batch, an agreement version, a statement, …), so an event is never durable without its
//! leaf, nor a leaf without its event.
//!
//! What is kept: each leaf (`log_leaves`: its event and salt, its data — the commitment to the
//! event under the salt, `revshare_core::transparency::commitment` — the subject it is looked up
//! by, and its leaf hash, the tree's level 0) and the hashes of complete subtrees at every level that is a
//! multiple of `merkle::STRIDE` (`log_nodes`). Those never change once written, and any subtree
//! hash a proof needs is folded from at most 2^STRIDE of them, so a proof at 10M leaves reads a
//! few hundred small rows, in one round trip per table. Appending reloads the right edge of the
//! tree (`Frontier::load`) from the same rows; nothing else holds state, so two processes
//! appending in turn (writers are serialised) extend the same tree.
//!
//! Checkpoints are signed by the caller (the key and the clock are the CLI's or server's) and
//! kept in `log_checkpoints`, one per size.

use revshare_core::merkle::{self, Cell, CellSource, Frontier, Hash, ProofError};
use revshare_core::transparency::{RECORD_KEY_BYTES, SALT_BYTES, Salt, commitment};

use crate::error::StoreError;
use crate::sql::{Columns, Dialect, Param, Sql, first, rows, unsigned};

/// One leaf: what it is, what it is looked up by, its event's canonical bytes and the event's
/// salt. The tree holds only [`LogLeaf::data`], the commitment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLeaf {
    pub kind: String,
    pub subject: String,
    pub event: Vec<u8>,
    pub salt: Salt,
}

impl LogLeaf {
    /// A leaf to append, its salt fresh from the operating system's random source.
    pub fn new(kind: &str, subject: String, event: Vec<u8>) -> Result<LogLeaf, StoreError> {
        Ok(LogLeaf { kind: kind.to_owned(), subject, event, salt: fresh()? })
    }

    /// The leaf's data in the tree: the commitment to its event under its salt.
    pub fn data(&self) -> Hash {
        commitment(&self.salt, &self.event)
    }
}

/// Fresh random bytes from the operating system, for salts and record-salt keys.
pub(crate) fn fresh<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Log(format!("the operating system's random source failed: {e}")))?;
    Ok(bytes)
}

fn salt_of(bytes: Vec<u8>, index: impl std::fmt::Display) -> Result<Salt, StoreError> {
    Salt::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt {
        what: format!("log leaf {index}"),
        detail: format!("its salt has {} bytes, not {SALT_BYTES}", bytes.len()),
    })
}

/// The stored cells of the tree, read through one transaction.
struct Cells<'a, S>(&'a mut S);

fn hash_of(row: &dyn Columns, i: usize, what: impl FnOnce() -> String) -> Result<Hash, StoreError> {
    let bytes = row.bytes(i)?;
    Hash::try_from(bytes.as_slice())
        .map_err(|_| StoreError::Corrupt { what: what(), detail: format!("its hash has {} bytes, not 32", bytes.len()) })
}

fn int(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt { what: "log index".to_owned(), detail: format!("{n} is beyond 2^63") })
}

impl<S: Sql> CellSource for Cells<'_, S> {
    type Error = StoreError;

    fn cells(&mut self, wanted: &[Cell]) -> Result<Vec<Hash>, StoreError> {
        let missing = |cell: &Cell| StoreError::Corrupt {
            what: "transparency log".to_owned(),
            detail: format!("the hash of the subtree at level {} index {} is missing", cell.level, cell.index),
        };
        if self.0.dialect() == Dialect::Sqlite {
            return wanted
                .iter()
                .map(|cell| {
                    let index = int(cell.index)?;
                    let found = if cell.level == 0 {
                        first(self.0, "SELECT hash FROM log_leaves WHERE idx = $1", &[Param::Int(index)], |row| {
                            hash_of(row, 0, || format!("log leaf {index}"))
                        })?
                    } else {
                        let level = i64::from(cell.level);
                        first(
                            self.0,
                            "SELECT hash FROM log_nodes WHERE level = $1 AND idx = $2",
                            &[Param::Int(level), Param::Int(index)],
                            |row| hash_of(row, 0, || format!("log node {level}/{index}")),
                        )?
                    };
                    found.ok_or_else(|| missing(cell))
                })
                .collect();
        }
        // PostgreSQL: one query per table for the whole proof.
        let mut found: std::collections::HashMap<Cell, Hash> = std::collections::HashMap::with_capacity(wanted.len());
        let leaves = wanted.iter().filter(|c| c.level == 0).map(|c| int(c.index)).collect::<Result<Vec<_>, _>>()?;
        if !leaves.is_empty() {
            self.0.query("SELECT idx, hash FROM log_leaves WHERE idx = ANY($1)", &[Param::IntArray(&leaves)], &mut |row| {
                let index: u64 = unsigned(row.int(0)?, || "log leaf index".to_owned())?;
                found.insert(Cell { level: 0, index }, hash_of(row, 1, || format!("log leaf {index}"))?);
                Ok(())
            })?;
        }
        let nodes: Vec<&Cell> = wanted.iter().filter(|c| c.level > 0).collect();
        if !nodes.is_empty() {
            let levels: Vec<i64> = nodes.iter().map(|c| i64::from(c.level)).collect();
            let indexes = nodes.iter().map(|c| int(c.index)).collect::<Result<Vec<_>, _>>()?;
            self.0.query(
                "SELECT n.level, n.idx, n.hash FROM log_nodes n JOIN UNNEST($1::bigint[], $2::bigint[]) AS w (level, idx) \
                 ON n.level = w.level AND n.idx = w.idx",
                &[Param::IntArray(&levels), Param::IntArray(&indexes)],
                &mut |row| {
                    let level: u32 = unsigned(row.int(0)?, || "log node level".to_owned())?;
                    let index: u64 = unsigned(row.int(1)?, || "log node index".to_owned())?;
                    found.insert(Cell { level, index }, hash_of(row, 2, || format!("log node {level}/{index}"))?);
                    Ok(())
                },
            )?;
        }
        wanted.iter().map(|cell| found.get(cell).copied().ok_or_else(|| missing(cell))).collect()
    }
}

fn proof_error(e: ProofError<StoreError>) -> StoreError {
    match e {
        ProofError::Source(e) => e,
        other => StoreError::Log(other.to_string()),
    }
}

/// The number of leaves.
pub(crate) fn size(sql: &mut impl Sql) -> Result<u64, StoreError> {
    let n = first(sql, "SELECT COALESCE(MAX(idx) + 1, 0) FROM log_leaves", &[], |row| row.int(0))?.unwrap_or(0);
    unsigned(n, || "log size".to_owned())
}

/// The root hash of the tree at `size` (at most the current size).
pub(crate) fn root(sql: &mut impl Sql, size: u64) -> Result<Hash, StoreError> {
    check_size(sql, size)?;
    merkle::root(&mut Cells(sql), size).map_err(proof_error)
}

fn check_size(sql: &mut impl Sql, asked: u64) -> Result<u64, StoreError> {
    let current = size(sql)?;
    if asked > current {
        return Err(StoreError::Log(format!("the log has {current} leaves; a size of {asked} is in its future")));
    }
    Ok(current)
}

pub(crate) fn inclusion_proof(sql: &mut impl Sql, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
    check_size(sql, size)?;
    merkle::inclusion_proof(&mut Cells(sql), index, size).map_err(proof_error)
}

pub(crate) fn consistency_proof(sql: &mut impl Sql, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
    check_size(sql, new)?;
    merkle::consistency_proof(&mut Cells(sql), old, new).map_err(proof_error)
}

/// Leaves per multi-row insert on SQLite.
const ROWS: usize = 64;

/// `INSERT INTO log_leaves … VALUES (…), (…), …` with [`ROWS`] rows of `$n` parameters.
static INSERT_ROWS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let rows: Vec<String> = (0..ROWS)
        .map(|r| {
            format!("(${}, ${}, ${}, ${}, ${}, ${}, ${})", 7 * r + 1, 7 * r + 2, 7 * r + 3, 7 * r + 4, 7 * r + 5, 7 * r + 6, 7 * r + 7)
        })
        .collect();
    format!("INSERT INTO log_leaves (idx, kind, subject, data, hash, event, salt) VALUES {}", rows.join(", "))
});

/// Appends leaves in order; returns the index of the first.
pub(crate) fn append(sql: &mut impl Sql, leaves: &[LogLeaf]) -> Result<u64, StoreError> {
    let start = size(sql)?;
    let mut frontier = Frontier::load(&mut Cells(sql), start).map_err(proof_error)?;
    let mut nodes: Vec<(Cell, Hash)> = Vec::new();
    let data: Vec<Hash> = leaves.iter().map(LogLeaf::data).collect();
    let hashes: Vec<Hash> = data
        .iter()
        .map(|data| {
            let hash = merkle::leaf_hash(data);
            frontier.push(hash, |cell, hash| nodes.push((cell, hash)));
            hash
        })
        .collect();
    let first_index = int(start)?;
    if sql.dialect() == Dialect::Sqlite {
        // Rows go in statements of ROWS rows (and one row at a time for the rest): SQLite's cost
        // per statement is larger than its cost per row.
        let indexes: Vec<i64> = (first_index..).take(leaves.len()).collect();
        fn row<'a>(((leaf, data), (hash, index)): ((&'a LogLeaf, &'a Hash), (&'a Hash, &'a i64))) -> [Param<'a>; 7] {
            [
                Param::Int(*index),
                Param::Text(&leaf.kind),
                Param::Text(&leaf.subject),
                Param::Bytes(data),
                Param::Bytes(hash),
                Param::Bytes(&leaf.event),
                Param::Bytes(&leaf.salt),
            ]
        }
        let rows = leaves.chunks_exact(ROWS).zip(data.chunks_exact(ROWS)).zip(hashes.chunks_exact(ROWS).zip(indexes.chunks_exact(ROWS)));
        for ((leaves, data), (hashes, indexes)) in rows {
            let params: Vec<Param<'_>> = leaves.iter().zip(data).zip(hashes.iter().zip(indexes)).flat_map(row).collect();
            sql.execute(std::sync::LazyLock::force(&INSERT_ROWS).as_str(), &params)?;
        }
        let done = leaves.len() - leaves.len() % ROWS;
        let rest = leaves[done..].iter().zip(&data[done..]).zip(hashes[done..].iter().zip(&indexes[done..]));
        for params in rest.map(row) {
            sql.execute(
                "INSERT INTO log_leaves (idx, kind, subject, data, hash, event, salt) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &params,
            )?;
        }
        for (cell, hash) in &nodes {
            sql.execute(
                "INSERT INTO log_nodes (level, idx, hash) VALUES ($1, $2, $3)",
                &[Param::Int(i64::from(cell.level)), Param::Int(int(cell.index)?), Param::Bytes(hash)],
            )?;
        }
    } else {
        let indexes: Vec<i64> = (first_index..).take(leaves.len()).collect();
        let kinds: Vec<&str> = leaves.iter().map(|l| l.kind.as_str()).collect();
        let subjects: Vec<&str> = leaves.iter().map(|l| l.subject.as_str()).collect();
        let data: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
        let leaf_hashes: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
        let events: Vec<&[u8]> = leaves.iter().map(|l| l.event.as_slice()).collect();
        let salts: Vec<&[u8]> = leaves.iter().map(|l| &l.salt[..]).collect();
        sql.execute(
            "INSERT INTO log_leaves (idx, kind, subject, data, hash, event, salt) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[])",
            &[
                Param::IntArray(&indexes),
                Param::TextArray(&kinds),
                Param::TextArray(&subjects),
                Param::BytesArray(&data),
                Param::BytesArray(&leaf_hashes),
                Param::BytesArray(&events),
                Param::BytesArray(&salts),
            ],
        )?;
        if !nodes.is_empty() {
            let levels: Vec<i64> = nodes.iter().map(|(c, _)| i64::from(c.level)).collect();
            let indexes = nodes.iter().map(|(c, _)| int(c.index)).collect::<Result<Vec<_>, _>>()?;
            let node_hashes: Vec<&[u8]> = nodes.iter().map(|(_, h)| &h[..]).collect();
            sql.execute(
                "INSERT INTO log_nodes (level, idx, hash) SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bytea[])",
                &[Param::IntArray(&levels), Param::IntArray(&indexes), Param::BytesArray(&node_hashes)],
            )?;
        }
    }
    Ok(start)
}

/// One leaf by index.
pub(crate) fn leaf(sql: &mut impl Sql, index: u64) -> Result<LogLeaf, StoreError> {
    let at = int(index)?;
    first(sql, "SELECT kind, subject, event, salt FROM log_leaves WHERE idx = $1", &[Param::Int(at)], |row| {
        Ok(LogLeaf { kind: row.text(0)?, subject: row.text(1)?, event: row.bytes(2)?, salt: salt_of(row.bytes(3)?, index)? })
    })?
    .ok_or_else(|| StoreError::Log(format!("the log has no leaf {index}; it has {} leaves", size(sql).unwrap_or(0))))
}

/// The leaves logged under a subject, oldest first: (index, leaf).
pub(crate) fn by_subject(sql: &mut impl Sql, subject: &str) -> Result<Vec<(u64, LogLeaf)>, StoreError> {
    rows(sql, "SELECT idx, kind, subject, event, salt FROM log_leaves WHERE subject = $1 ORDER BY idx", &[Param::Text(subject)], |row| {
        let index: u64 = unsigned(row.int(0)?, || "log leaf index".to_owned())?;
        Ok((index, LogLeaf { kind: row.text(1)?, subject: row.text(2)?, event: row.bytes(3)?, salt: salt_of(row.bytes(4)?, index)? }))
    })
}

/// Keeps a signed checkpoint; the first one kept for a size stays.
pub(crate) fn add_checkpoint(sql: &mut impl Sql, size: u64, note: &str) -> Result<(), StoreError> {
    check_size(sql, size)?;
    sql.execute(
        "INSERT INTO log_checkpoints (size, note) VALUES ($1, $2) ON CONFLICT (size) DO NOTHING",
        &[Param::Int(int(size)?), Param::Text(note)],
    )?;
    Ok(())
}

/// Records that a bundle of `agreement` was exported under the kept checkpoint of `size`.
pub(crate) fn add_bundle_checkpoint(sql: &mut impl Sql, agreement: &str, size: u64) -> Result<(), StoreError> {
    sql.execute(
        "INSERT INTO bundle_checkpoints (agreement_id, size) VALUES ($1, $2) ON CONFLICT (agreement_id, size) DO NOTHING",
        &[Param::Text(agreement), Param::Int(int(size)?)],
    )?;
    Ok(())
}

/// The kept checkpoints the bundles of `agreement` were exported under, by size.
pub(crate) fn bundle_checkpoints(sql: &mut impl Sql, agreement: &str) -> Result<Vec<(u64, String)>, StoreError> {
    rows(
        sql,
        "SELECT c.size, c.note FROM bundle_checkpoints b JOIN log_checkpoints c ON c.size = b.size \
         WHERE b.agreement_id = $1 ORDER BY c.size",
        &[Param::Text(agreement)],
        |row| Ok((unsigned(row.int(0)?, || "checkpoint size".to_owned())?, row.text(1)?)),
    )
}

/// Every kept checkpoint, by size.
pub(crate) fn checkpoints(sql: &mut impl Sql) -> Result<Vec<(u64, String)>, StoreError> {
    rows(sql, "SELECT size, note FROM log_checkpoints ORDER BY size", &[], |row| {
        Ok((unsigned(row.int(0)?, || "checkpoint size".to_owned())?, row.text(1)?))
    })
}

/// Keeps a logged usage batch's digest, the sorted commitments of its records as sent and its
/// record-salt key, which a bundle needs to show that a record is in the batch.
pub(crate) fn store_batch(
    sql: &mut impl Sql,
    leaf: u64,
    digest: &str,
    commitments: &[[u8; 32]],
    key: &[u8; RECORD_KEY_BYTES],
) -> Result<(), StoreError> {
    sql.execute(
        "INSERT INTO batches (leaf, digest, record_digests, record_key) VALUES ($1, $2, $3, $4)",
        &[Param::Int(int(leaf)?), Param::Text(digest), Param::Bytes(commitments.as_flattened()), Param::Bytes(key)],
    )?;
    Ok(())
}

/// A logged usage batch, as [`store_batch`] kept it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBatch {
    pub digest: String,
    /// The sorted [`revshare_core::transparency::record_commitment`]s of its distinct records;
    /// none for a batch that stored no record (resends only), which no bundle holds.
    pub commitments: Vec<[u8; 32]>,
    /// Its record-salt key: a secret that opens every record of the batch.
    pub record_key: [u8; RECORD_KEY_BYTES],
}

/// A logged usage batch.
pub(crate) fn batch(sql: &mut impl Sql, leaf: u64) -> Result<StoredBatch, StoreError> {
    let found = first(sql, "SELECT digest, record_digests, record_key FROM batches WHERE leaf = $1", &[Param::Int(int(leaf)?)], |row| {
        Ok((row.text(0)?, row.bytes(1)?, row.bytes(2)?))
    })?;
    let (digest, blob, key) = found.ok_or_else(|| StoreError::Log(format!("log leaf {leaf} is not a usage batch")))?;
    let corrupt = |detail: String| StoreError::Corrupt { what: format!("usage batch {leaf}"), detail };
    if blob.len() % 32 != 0 {
        return Err(corrupt(format!("its record commitments are {} bytes", blob.len())));
    }
    let record_key = <[u8; RECORD_KEY_BYTES]>::try_from(key.as_slice())
        .map_err(|_| corrupt(format!("its record-salt key has {} bytes, not {RECORD_KEY_BYTES}", key.len())))?;
    let commitments = blob.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).collect();
    Ok(StoredBatch { digest, commitments, record_key })
}

/// Appends one leaf built by a `revshare_core::transparency` builder; returns its index.
pub(crate) fn record(
    sql: &mut impl Sql,
    kind: &str,
    subject: String,
    event: Result<Vec<u8>, revshare_core::canonical::CanonicalError>,
) -> Result<u64, StoreError> {
    let event = event.map_err(|e| StoreError::Log(format!("a {kind} event cannot be encoded: {e}")))?;
    append(sql, &[LogLeaf::new(kind, subject, event)?])
}

/// The subject a statement's leaf is looked up by.
pub(crate) fn statement_subject(agreement: &str, period: &str, sequence: u32) -> String {
    format!("statement:{agreement}/{period}/{sequence}")
}

/// The smallest kept checkpoint whose tree includes leaf `index`.
pub(crate) fn checkpoint_including(sql: &mut impl Sql, index: u64) -> Result<Option<(u64, String)>, StoreError> {
    first(sql, "SELECT size, note FROM log_checkpoints WHERE size > $1 ORDER BY size LIMIT 1", &[Param::Int(int(index)?)], |row| {
        Ok((unsigned(row.int(0)?, || "checkpoint size".to_owned())?, row.text(1)?))
    })
}
