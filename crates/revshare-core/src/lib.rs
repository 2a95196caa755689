//! The pure core of revshare: everything that decides money is here, and nothing here performs IO,
//! reads the clock, draws random numbers or runs async code. Time, ids and inputs come in as
//! arguments, so every statement can be recomputed from its inputs by anyone (`revshare verify`,
//! a dispute, an auditor with a spreadsheet and patience).
//!
//! Module map:
//! - [`decimal`], [`money`], [`time`], [`ids`]: validated value types ("parse, don't validate").
//! - [`json`]: a small borrowed JSON reader that keeps number literals as text (never `f64`).
//! - [`canonical`]: RFC 8785 canonical JSON and `sha256:` digests.
//! - [`agreement`]: agreement files (SPEC §2) with positioned, all-at-once diagnostics.
//! - [`usage`]: usage records (SPEC §3) from JSON Lines and CloudEvents batches.
//! - [`dedup`]: the `(host, id)` idempotency index: duplicates and conflicts.
//! - [`rollup`]: the per-group exact sums that settlement needs (O(groups), not O(records)).
//! - [`contribution`], [`allocate`]: contribution credits and the largest-remainder split.
//! - [`dispute`]: the dispute process (SPEC §8): which transitions are allowed, deadlines, and
//!   the adjustment a resolved dispute carries into the next statement.
//! - [`licence`]: the licence rules settlement applies (SPEC §11): derived models' lineage.
//! - [`settle`]: the SPEC §4 arithmetic, producing a [`statement::Statement`].
//! - [`statement`]: the statement (SPEC §6) and its canonical encoding.
//! - [`ledger`]: the double-entry ledger: journal entries, balances, who owes whom.
//! - [`merkle`]: RFC 6962/9162 Merkle tree maths (roots, inclusion and consistency proofs) over stored cells.
//! - [`note`]: C2SP signed notes, note key formats, tlog checkpoints, Ed25519 signing and verification.
//! - [`transparency`]: the log's leaves and the messages parties sign; [`bundle`] checks a
//!   statement bundle offline (`revshare verify`).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::as_conversions, clippy::float_arithmetic)]

pub mod agreement;
pub mod allocate;
pub mod bundle;
pub mod canonical;
pub mod contribution;
pub mod decimal;
pub mod dedup;
pub mod dispute;
pub mod ids;
pub mod json;
pub mod ledger;
pub mod licence;
pub mod merkle;
pub mod money;
pub mod note;
pub mod rollup;
pub mod settle;
pub mod spreadsheet;
pub mod statement;
pub mod text;
pub mod time;
pub mod transparency;
pub mod usage;
pub mod usage_set;
