//! The system of record: one storage contract ([`Store`]) and two stores, an embedded SQLite file
//! ([`SqliteStore`], the default) and PostgreSQL ([`PgStore`], for production).
//!
//! What a store keeps: the registry (parties, models, host model aliases), every version of every
//! agreement, every usage record as sent (deduplicated forever by `(host, id)`), rollups of those
//! records maintained at ingest so that settling a month reads O(groups) rows, finalised
//! statements, and the double-entry journal that statements and payments post. It decides nothing
//! about money: settlement is the core's (`revshare_core::settle`), fed from [`Store::rollup`]
//! and [`Store::usage_set`], and gives the same statement as settling the same records in
//! memory (the conformance suite holds the stores to that); entries are built by the core's
//! ledger (`revshare_core::ledger`) and only checked and kept here.
//!
//! Layout: the logic is written once, in the modules below, against a small SQL seam
//! (`sql.rs`: run a statement, read rows, commit); `sqlite.rs` and `pg.rs` adapt their drivers to
//! it, and `schema.rs` holds both dialects' migrations side by side. Every [`Store`] method is one
//! transaction, committed before it returns; writers are serialised per database.
//!
//! - `registry.rs`: parties, models, aliases.
//! - `agreements.rs`: versions and amendments, the exclusivity rule, which agreement a record
//!   falls under.
//! - `ingest.rs`: batches, idempotency, atomic and partial modes.
//! - `records.rs`: a record's stored values, as a resend is compared with them.
//! - `segments.rs`: where records are kept: one row per batch and place, records encoded.
//! - `index.rs`: the `(host, id)` index of stored records, in memory, caught up under the write lock.
//! - `rollups.rs`: the per-group sums and how they are held exactly.
//! - `statements.rs`: immutable statements, originals and restatements, closed periods.
//! - `journal.rs`: the ledger's entries, checked when written and again when read.
//! - `contributions.rs`: contributions per agreement; only their acceptance changes.
//! - `disputes.rs`: disputes as their append-only transitions, checked by the core's rules.
//! - `log.rs`: the transparency log: leaves, subtree hashes, proofs, checkpoints, batches.
//! - `keys.rs`: the parties' and the deployment's public keys.
//! - [`close`]: closing a month (restatements, the statement, its entry, the signatures).
//! - [`payments`]: a payment's journal entry from its amount text and payer.
//! - [`receipts`]: signed checkpoints and batch receipts (the caller brings the key and the time).
//! - [`export`]: a statement's bundle for offline verification (`statement export --bundle`, the API's bundle).
//! - `tokens.rs`: the API's bearer tokens (the parties' and the operator's), kept as SHA-256
//!   hashes, revocable.
//! - `grants.rs`: which auditor may read which agreement, granted and revoked in the log.
//! - `webhooks.rs`: the parties' webhook endpoints and the outbox of their deliveries.
//!
//! The API is synchronous; an async server runs it on a blocking thread.

pub mod accounts;
mod agreements;
pub mod close;
pub mod compliance;
mod contributions;
mod disputes;
mod error;
pub mod export;
mod grants;
mod idempotency;
mod index;
mod ingest;
mod journal;
mod keys;
mod log;
pub mod payments;
mod pg;
pub mod receipts;
mod records;
mod registry;
mod rollups;
mod schema;
mod segments;
mod sql;
mod sqlite;
mod statements;
mod tokens;
pub mod webhooks;

use revshare_core::agreement::Agreement;
use revshare_core::contribution::Contribution;
use revshare_core::dispute::Transition;
use revshare_core::ids::{AgreementId, ModelId, PartyId};
use revshare_core::ledger::JournalEntry;
use revshare_core::licence::Lineage;
use revshare_core::merkle::Hash;
use revshare_core::note::VerifierKey;
use revshare_core::rollup::Rollup;
use revshare_core::statement::Statement;
use revshare_core::time::{Instant, Period};
use revshare_core::transparency::{Signed, SignedBatch};
use revshare_core::usage::UsageRecord;
use revshare_core::usage_set::UsageSet;

pub use disputes::StoredDispute;
pub use error::{Fault, StoreError};
pub use grants::Grant;
pub use idempotency::KeptAnswer;
use index::Pending;
pub use index::{RecordIndex, SharedIndex};
pub use ingest::{Batch, IngestMode, IngestProblem, IngestReport, LoggedBatch, ProblemKind, batch_digest};
pub use keys::RegisteredKey;
pub use log::{LogLeaf, StoredBatch};
pub use pg::{PgStore, WRITE_LOCK};
pub use records::SentRecord;
pub use registry::{Model, OPERATOR, Party, Role};
pub use rollups::{Grain, GroupBy, UsageRow, regroup};
pub use segments::Delivery;
pub use sqlite::{BUSY_TIMEOUT, SqliteStore};
pub use statements::{Carried, NewStatement, StatementHead, StatementKind, StoredStatement};
pub use tokens::StoredToken;
pub use webhooks::{Attempt, NewDelivery, NewEndpoint, WebhookDelivery, WebhookEndpoint};

use rollups::Deltas;
use sql::{Access, Backend, Sql};

/// The storage contract: what every store does, and the conformance suite checks.
pub trait Store {
    /// The schema version of the database.
    fn schema_version(&mut self) -> Result<i64, StoreError>;

    /// Registers a party; registering the same party again changes nothing.
    fn add_party(&mut self, party: &Party) -> Result<(), StoreError>;
    fn party(&mut self, id: &PartyId) -> Result<Option<Party>, StoreError>;
    /// Registers a model of a licensor; registering the same model again changes nothing.
    fn add_model(&mut self, model: &Model) -> Result<(), StoreError>;
    fn model(&mut self, id: &ModelId) -> Result<Option<Model>, StoreError>;
    /// Maps a host's own model id to a licensed model, for that host's records.
    fn add_alias(&mut self, host: &PartyId, host_model: &ModelId, model: &ModelId) -> Result<(), StoreError>;
    /// The licensed model a host means by `model`: through the host's alias, if any.
    fn resolve_model(&mut self, host: &PartyId, model: &str) -> Result<ModelId, StoreError>;

    /// Registers an agreement version from its TOML text (`name` is how errors name the text):
    /// version 1 of a new id, or an amendment (latest + 1). Returns the parsed agreement.
    fn add_agreement(&mut self, name: &str, text: &str) -> Result<Agreement, StoreError>;
    /// An agreement version, or (`None`) its latest version.
    fn agreement(&mut self, id: &AgreementId, version: Option<u32>) -> Result<Agreement, StoreError>;
    /// The licensor and the host of an agreement (every version has the same), read without its
    /// terms: what deciding who may read it needs.
    fn agreement_parties(&mut self, id: &AgreementId) -> Result<Option<(PartyId, PartyId)>, StoreError>;
    /// Every agreement's id, licensor and host, by id, read without its terms: what deciding which
    /// agreements a caller may read needs.
    fn agreement_index(&mut self) -> Result<Vec<(AgreementId, PartyId, PartyId)>, StoreError>;
    /// The TOML text an agreement version was registered from.
    fn agreement_source(&mut self, id: &AgreementId, version: u32) -> Result<String, StoreError>;
    /// The latest version of every agreement of `licensor`, by id.
    fn agreements_of_licensor(&mut self, licensor: &PartyId) -> Result<Vec<Agreement>, StoreError>;
    /// The latest version of every agreement, by id.
    fn agreements(&mut self) -> Result<Vec<Agreement>, StoreError>;
    /// Every registered party, by id.
    fn parties(&mut self) -> Result<Vec<Party>, StoreError>;
    /// Every registered model, by id.
    fn models(&mut self) -> Result<Vec<Model>, StoreError>;
    /// Which registered model derives from which (SPEC §11).
    fn lineage(&mut self) -> Result<Lineage, StoreError>;
    /// The records of `licensor`'s models in `period` that no agreement covered, summed per host,
    /// model, use case, region and currency ([`compliance`]).
    fn unlicensed_usage(&mut self, licensor: &PartyId, period: Period) -> Result<Vec<compliance::Finding>, StoreError>;

    /// Stores a batch of records in one transaction, with its leaf in the log; see
    /// [`IngestReport`] for what it did. A batch signed by its host (`signed`, over
    /// [`batch_digest`]) is refused whole unless the signature verifies with a key registered for
    /// that host.
    fn ingest(&mut self, records: &[UsageRecord<'_>], mode: IngestMode, signed: Option<&SignedBatch>) -> Result<IngestReport, StoreError>;
    /// [`Store::ingest`] of a [`Batch`], which may carry its records' digests.
    fn ingest_batch(&mut self, batch: Batch<'_>) -> Result<IngestReport, StoreError>;
    /// Stores several batches in one transaction (group commit: one commit, one fsync), each as
    /// [`Store::ingest`] would, in order, each seeing the records of those before it. A batch
    /// refused or failing alone (its result) leaves nothing of it and the others go on; an error
    /// of the whole (reading the registry, writing the stored batches' rollups, the commit)
    /// stores none. Every `Ok` report with `stored = true` is durable.
    fn ingest_group(&mut self, batches: &[Batch<'_>]) -> Result<Vec<Result<IngestReport, StoreError>>, StoreError>;
    /// Announces about `records` records to ingest (say, counted while validating a file), so
    /// the index of stored records makes room for them once instead of growing as they come. A
    /// hint: it changes no result.
    fn expect_records(&mut self, records: u64);

    /// The rollup of an agreement's month, and the identical resends acknowledged for its records.
    fn rollup(&mut self, agreement: &AgreementId, period: Period) -> Result<(Rollup, u64), StoreError>;
    /// How an agreement month's records arrived: delivery statistics, reported beside its
    /// statement and never in it (SPEC §6).
    fn delivery(&mut self, agreement: &AgreementId, period: Period) -> Result<Delivery, StoreError>;
    /// An agreement's usage from month `first` to month `last` (both included, the open month
    /// too) at a [`Grain`], from the rollups kept at ingest (never its records).
    fn usage(&mut self, agreement: &AgreementId, first: Period, last: Period, grain: Grain) -> Result<Vec<UsageRow>, StoreError>;
    /// The usage set of the records of an agreement's month (its digest is the statement's
    /// `usage_digest`), kept current at ingest.
    fn usage_set(&mut self, agreement: &AgreementId, period: Period) -> Result<UsageSet, StoreError>;
    /// The records of an agreement's month as stored (model resolved), by host and id.
    fn records(&mut self, agreement: &AgreementId, period: Period) -> Result<Vec<UsageRecord<'static>>, StoreError>;

    /// Finalises a statement: the first of a period is the original, later ones restatements. An
    /// original posts its journal entry (`JournalEntry::for_statement`) in the same transaction; a
    /// restatement posts none (`None`), its difference being carried by the next statement.
    fn finalise_statement(&mut self, statement: &NewStatement<'_>, entry: Option<&JournalEntry>) -> Result<StoredStatement, StoreError>;
    /// Closes an agreement's month at `now` in one write transaction (`close::close_in`): the
    /// restatements of earlier months that late records changed, then the month's original with
    /// its journal entry, all computed from what the transaction reads. All or nothing, and one
    /// snapshot under the write lock: no restatement whose difference was never carried, no
    /// difference or dispute carried twice, and every record stored before the statement counted
    /// by it. [`close::close_month`] is this and the deployment's signatures.
    fn close(&mut self, agreement: &AgreementId, period: Period, now: Instant) -> Result<close::Closed, close::CloseError>;
    /// The statement an open month would close to now (SPEC §10), computed as [`Store::close`]
    /// computes it, in one read transaction, and written nowhere: not finalised, signed, booked
    /// or logged. A month already closed has none ([`close::CloseError::AlreadyClosed`]).
    fn preview(&mut self, agreement: &AgreementId, period: Period) -> Result<Statement, close::CloseError>;
    /// An open month's usage settled so far, with its accepted contributions and without the
    /// adjustments a close would carry (restatements of earlier months, disputes): the running
    /// totals of the dashboard's overview, from the month's rollups alone (one settlement, where
    /// [`Store::preview`] settles every earlier month again).
    fn running_totals(&mut self, agreement: &AgreementId, period: Period) -> Result<Statement, close::CloseError>;
    /// The latest statement of an agreement's month.
    fn statement(&mut self, agreement: &AgreementId, period: Period) -> Result<Option<StoredStatement>, StoreError>;
    /// Every statement (of one agreement, or of all), by agreement, period and sequence.
    fn statements(&mut self, agreement: Option<&AgreementId>) -> Result<Vec<StoredStatement>, StoreError>;
    /// The months of an agreement that have a statement.
    fn closed_periods(&mut self, agreement: &AgreementId) -> Result<Vec<Period>, StoreError>;

    /// Posts a payment, adjustment or reversal, checked against its agreement and the journal.
    fn post_entry(&mut self, entry: &JournalEntry) -> Result<(), StoreError>;
    /// Keeps a payment its payer recorded (`entry`, built by [`payments::entry_of`]) as pending:
    /// in no account until its payee confirms it ([`Store::confirm_payment`]).
    fn record_payment(&mut self, entry: &JournalEntry, from: payments::Payer, amount_minor: i128) -> Result<(), StoreError>;
    /// Posts the pending payment `reference` of `agreement`, as its payee confirms it; its entry.
    fn confirm_payment(&mut self, agreement: &AgreementId, reference: &str) -> Result<JournalEntry, StoreError>;
    /// The payments still pending, of one agreement or (`None`) all.
    fn pending_payments(&mut self, agreement: Option<&AgreementId>) -> Result<Vec<payments::PendingPayment>, StoreError>;
    /// A page of the payment list ([`accounts::PaymentQuery`]), each with where it stands.
    fn payment_rows(&mut self, query: &accounts::PaymentQuery<'_>) -> Result<Vec<accounts::PaymentRow>, StoreError>;
    /// A page of the statement list ([`accounts::StatementQuery`]), each with its money.
    fn statement_rows(&mut self, query: &accounts::StatementQuery<'_>) -> Result<Vec<accounts::StatementRow>, StoreError>;
    /// Every journal entry in posting order, each checked again as it is read.
    fn journal(&mut self) -> Result<Vec<JournalEntry>, StoreError>;

    /// Records a contribution to an agreement: its kind must be listed in the latest version's
    /// `[contributions]` and its party be the licensor or host. The same contribution again is a
    /// no-op; the same id with `accepted` now true records the acceptance; any other change is
    /// refused.
    fn add_contribution(&mut self, agreement: &AgreementId, contribution: &Contribution) -> Result<(), StoreError>;
    /// An agreement's contributions, by id.
    fn contributions(&mut self, agreement: &AgreementId) -> Result<Vec<Contribution>, StoreError>;

    /// The number of leaves in the transparency log.
    fn log_size(&mut self) -> Result<u64, StoreError>;
    /// The log's root hash at `size` (at most the current size).
    fn log_root(&mut self, size: u64) -> Result<Hash, StoreError>;
    fn log_leaf(&mut self, index: u64) -> Result<LogLeaf, StoreError>;
    /// The leaves logged under a subject (`agreement:ID/VERSION`, `contributions:ID`, …), oldest first.
    fn log_leaves_of(&mut self, subject: &str) -> Result<Vec<(u64, LogLeaf)>, StoreError>;
    /// The RFC 6962 inclusion proof of leaf `index` in the tree of `size` leaves.
    fn inclusion_proof(&mut self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError>;
    /// The RFC 6962 consistency proof between the trees of `old` and `new` leaves.
    fn consistency_proof(&mut self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError>;
    /// Appends leaves in one transaction; returns the index of the first.
    fn append_leaves(&mut self, leaves: &[LogLeaf]) -> Result<u64, StoreError>;
    /// Keeps a signed checkpoint (a C2SP signed note) of the log at `size`.
    fn add_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError>;
    /// Every kept checkpoint, by size.
    fn checkpoints(&mut self) -> Result<Vec<(u64, String)>, StoreError>;
    /// The first kept checkpoint that includes leaf `index` (the one a batch's receipt carries,
    /// as receipts are signed right after their batch commits).
    fn checkpoint_including(&mut self, index: u64) -> Result<Option<(u64, String)>, StoreError>;
    /// Records that a bundle of `agreement` was exported under the kept checkpoint of `size`.
    fn add_bundle_checkpoint(&mut self, agreement: &AgreementId, size: u64) -> Result<(), StoreError>;
    /// The kept checkpoints (size, note) that bundles of `agreement` were exported under, by size.
    fn bundle_checkpoints(&mut self, agreement: &AgreementId) -> Result<Vec<(u64, String)>, StoreError>;
    /// Registers the first public key of a party, or (`None`) the deployment's first signing key,
    /// as the operator; logged. A key when the owner has one is refused: that is a rotation
    /// ([`Store::rotate_key`]). Returns the key's leaf.
    fn add_key(&mut self, party: Option<&PartyId>, key: &VerifierKey) -> Result<u64, StoreError>;
    /// Registers a party's first key by the party: `proof` is the key's signature of
    /// [`revshare_core::transparency::registration_message`], checked here and logged with it.
    fn register_own_key(&mut self, party: &PartyId, key: &VerifierKey, proof: &[u8; 64]) -> Result<u64, StoreError>;
    /// Replaces the current key of a party (or, `None`, the deployment's): `endorsement` is the
    /// current key's signature of [`revshare_core::transparency::rotation_message`] for `key`,
    /// checked here and logged with it, so a verifier who trusts the old key can follow it to the
    /// new one. Returns the leaf.
    fn rotate_key(&mut self, party: Option<&PartyId>, key: &VerifierKey, endorsement: &Signed) -> Result<u64, StoreError>;
    /// Every registered key, in the order registered.
    fn keys(&mut self) -> Result<Vec<RegisteredKey>, StoreError>;
    /// A logged usage batch: its digest, the sorted commitments of its distinct records as sent,
    /// and its record-salt key.
    fn usage_batch(&mut self, leaf: u64) -> Result<StoredBatch, StoreError>;
    /// The (host, licensor) pairs of the records a usage batch stored (none for a batch of
    /// resends only), by host then licensor: whose the batch is to read.
    fn batch_parties(&mut self, leaf: u64) -> Result<Vec<(String, String)>, StoreError>;
    /// The leaves of `host`'s usage batches that stored records, after leaf `after`, at most
    /// `limit`, oldest first.
    fn host_batches(&mut self, host: &PartyId, after: Option<u64>, limit: u32) -> Result<Vec<u64>, StoreError>;
    /// The records of an agreement's month as sent (each host's own model id), by host and id,
    /// with the licensed model each resolved to and the leaf of the batch that stored it.
    fn sent_records(&mut self, agreement: &AgreementId, period: Period) -> Result<Vec<SentRecord>, StoreError>;
    /// One statement of an agreement's month, by sequence (1 is the original).
    fn statement_by_sequence(
        &mut self,
        agreement: &AgreementId,
        period: Period,
        sequence: u32,
    ) -> Result<Option<StoredStatement>, StoreError>;
    /// Adds the deployment's signature or the host's countersignature to a statement.
    fn sign_statement(&mut self, statement: &StoredStatement, signed: &Signed) -> Result<(), StoreError>;
    /// A statement's signatures.
    fn statement_signatures(&mut self, statement: &StoredStatement) -> Result<Vec<Signed>, StoreError>;

    /// Registers an API bearer token by its SHA-256: it acts for `party`, whose registered role
    /// must be `role`. The id and the hash must both be new.
    /// The answer kept for a party's `Idempotency-Key`, if one is.
    fn kept_answer(&mut self, party: &PartyId, key: &str) -> Result<Option<KeptAnswer>, StoreError>;
    /// Keeps the answer to a party's request sent with an `Idempotency-Key`; false, keeping the
    /// first, when one is kept for that key already.
    fn keep_answer(&mut self, party: &PartyId, key: &str, answer: &KeptAnswer, at: Instant) -> Result<bool, StoreError>;
    /// Subscribes `party`'s endpoint to `events` from the current end of the log on.
    fn add_webhook(&mut self, endpoint: &NewEndpoint<'_>, at: Instant) -> Result<WebhookEndpoint, StoreError>;
    /// `party`'s endpoints, removed ones too; without `party`, every endpoint in service.
    fn webhooks(&mut self, party: Option<&PartyId>) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// Removes `party`'s endpoint: nothing more is queued or delivered to it.
    fn disable_webhook(&mut self, party: &PartyId, id: u64) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Queues deliveries for an endpoint and moves its `next_leaf` from `from` to `to`, or does
    /// nothing (false) when another pass moved it first.
    fn queue_webhook_deliveries(
        &mut self,
        id: u64,
        from: u64,
        to: u64,
        deliveries: &[NewDelivery],
        at: Instant,
    ) -> Result<bool, StoreError>;
    /// Queues deliveries for an endpoint; an event queued before for it is left as it is.
    fn offer_webhook_deliveries(&mut self, id: u64, deliveries: &[NewDelivery], at: Instant) -> Result<(), StoreError>;
    /// Deliveries due at `now_ms`, each held until `hold_ms` while it is tried.
    fn take_due_deliveries(&mut self, now_ms: i64, hold_ms: i64, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError>;
    fn record_delivery_attempt(&mut self, endpoint: u64, event_id: &str, attempt: &Attempt) -> Result<(), StoreError>;
    /// An endpoint's deliveries, oldest first.
    fn webhook_deliveries(&mut self, id: u64) -> Result<Vec<WebhookDelivery>, StoreError>;
    fn add_token(&mut self, id: &str, party: &PartyId, role: Role, hash: &[u8; 32]) -> Result<(), StoreError>;
    /// The token whose SHA-256 is `hash`, revoked or not.
    fn token_by_hash(&mut self, hash: &[u8; 32]) -> Result<Option<StoredToken>, StoreError>;
    /// Revokes a token for good (again: a no-op); returns it.
    fn revoke_token(&mut self, id: &str) -> Result<StoredToken, StoreError>;

    /// Grants a registered auditor reading a registered agreement (SPEC §9) and logs it; a grant
    /// in force is returned as it is.
    fn grant(&mut self, auditor: &PartyId, agreement: &AgreementId) -> Result<Grant, StoreError>;
    /// Revokes the grant in force of `agreement` to `auditor` and logs it.
    fn revoke_grant(&mut self, auditor: &PartyId, agreement: &AgreementId) -> Result<Grant, StoreError>;
    /// Grants in force and revoked, in the order granted: of one agreement, of one auditor, or all.
    fn grants(&mut self, agreement: Option<&AgreementId>, auditor: Option<&PartyId>) -> Result<Vec<Grant>, StoreError>;

    /// Opens a dispute of a statement (the latest of the period unless `sequence` says), or of
    /// one of its lines, with the core's rules (`revshare_core::dispute`); logs it.
    fn open_dispute(
        &mut self,
        agreement: &AgreementId,
        period: Period,
        sequence: Option<u32>,
        line: Option<u32>,
        opening: Transition,
    ) -> Result<StoredDispute, StoreError>;
    /// Moves a dispute on, after the escalations due by the transition's time; logs each step.
    fn dispute_transition(&mut self, id: u64, transition: Transition) -> Result<StoredDispute, StoreError>;
    /// Applies every escalation whose deadline is at or before `now`; returns how many.
    fn escalate_disputes(&mut self, now: Instant) -> Result<u64, StoreError>;
    fn dispute(&mut self, id: u64) -> Result<Option<StoredDispute>, StoreError>;
    /// The agreement of dispute `id` and its licensor and host, read without the dispute: what
    /// deciding whether a party of an agreement may read it needs.
    fn dispute_parties(&mut self, id: u64) -> Result<Option<(AgreementId, PartyId, PartyId)>, StoreError>;
    /// Every dispute, or those of one agreement, by id.
    fn disputes(&mut self, agreement: Option<&AgreementId>) -> Result<Vec<StoredDispute>, StoreError>;
}

/// Runs `f` in one transaction and commits it if `f` succeeds.
fn transaction<B: Backend, T>(
    backend: &mut B,
    access: Access,
    f: impl FnOnce(&mut B::Tx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut tx = backend.begin(access)?;
    let value = f(&mut tx)?;
    tx.commit().map_err(StoreError::in_commit)?;
    Ok(value)
}

impl<B: Backend> Store for B {
    fn schema_version(&mut self) -> Result<i64, StoreError> {
        transaction(self, Access::Read, |sql| schema::version(sql))
    }

    fn add_party(&mut self, party: &Party) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| registry::add_party(sql, party))
    }

    fn party(&mut self, id: &PartyId) -> Result<Option<Party>, StoreError> {
        transaction(self, Access::Read, |sql| registry::party(sql, id.as_str()))
    }

    fn add_model(&mut self, model: &Model) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| registry::add_model(sql, model))
    }

    fn model(&mut self, id: &ModelId) -> Result<Option<Model>, StoreError> {
        transaction(self, Access::Read, |sql| registry::model(sql, id.as_str()))
    }

    fn add_alias(&mut self, host: &PartyId, host_model: &ModelId, model: &ModelId) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| registry::add_alias(sql, host, host_model, model))
    }

    fn resolve_model(&mut self, host: &PartyId, model: &str) -> Result<ModelId, StoreError> {
        transaction(self, Access::Read, |sql| {
            registry::resolve(sql, host.as_str(), model)?
                .map(|m| m.id)
                .ok_or_else(|| StoreError::Unresolved { host: host.to_string(), model: model.to_owned() })
        })
    }

    fn add_agreement(&mut self, name: &str, text: &str) -> Result<Agreement, StoreError> {
        transaction(self, Access::Write, |sql| agreements::add(sql, name, text))
    }

    fn agreement(&mut self, id: &AgreementId, version: Option<u32>) -> Result<Agreement, StoreError> {
        transaction(self, Access::Read, |sql| agreements::require(sql, id.as_str(), version))
    }

    fn agreement_parties(&mut self, id: &AgreementId) -> Result<Option<(PartyId, PartyId)>, StoreError> {
        transaction(self, Access::Read, |sql| agreements::parties(sql, id.as_str()))
    }

    fn agreement_index(&mut self) -> Result<Vec<(AgreementId, PartyId, PartyId)>, StoreError> {
        transaction(self, Access::Read, |sql| agreements::index(sql))
    }

    fn agreement_source(&mut self, id: &AgreementId, version: u32) -> Result<String, StoreError> {
        transaction(self, Access::Read, |sql| agreements::source(sql, id.as_str(), version))
    }

    fn agreements_of_licensor(&mut self, licensor: &PartyId) -> Result<Vec<Agreement>, StoreError> {
        transaction(self, Access::Read, |sql| agreements::latest(sql, Some(licensor.as_str())))
    }

    fn agreements(&mut self) -> Result<Vec<Agreement>, StoreError> {
        transaction(self, Access::Read, |sql| agreements::latest(sql, None))
    }

    fn parties(&mut self) -> Result<Vec<Party>, StoreError> {
        transaction(self, Access::Read, |sql| registry::parties(sql))
    }

    fn models(&mut self) -> Result<Vec<Model>, StoreError> {
        transaction(self, Access::Read, |sql| registry::models(sql))
    }

    fn lineage(&mut self) -> Result<Lineage, StoreError> {
        transaction(self, Access::Read, |sql| registry::lineage(sql))
    }

    fn unlicensed_usage(&mut self, licensor: &PartyId, period: Period) -> Result<Vec<compliance::Finding>, StoreError> {
        transaction(self, Access::Read, |sql| {
            let segments = segments::unmatched_of_licensor(sql, licensor.as_str())?;
            compliance::unlicensed(segments.iter().flat_map(|s| s.records.iter().map(|r| &r.record)), period)
        })
    }

    fn ingest(&mut self, records: &[UsageRecord<'_>], mode: IngestMode, signed: Option<&SignedBatch>) -> Result<IngestReport, StoreError> {
        self.ingest_batch(Batch { records, digests: None, mode, signed })
    }

    fn ingest_batch(&mut self, batch: Batch<'_>) -> Result<IngestReport, StoreError> {
        let mut results = self.ingest_group(&[batch])?;
        results.pop().unwrap_or_else(|| Err(StoreError::Log("a group of one batch gave no result".to_owned())))
    }

    fn ingest_group(&mut self, batches: &[Batch<'_>]) -> Result<Vec<Result<IngestReport, StoreError>>, StoreError> {
        let shared = self.index();
        // A writer that panicked may have left the index half-updated: start it again from the
        // segments, which are the truth.
        let mut index = shared.lock().unwrap_or_else(|poisoned| {
            let mut index = poisoned.into_inner();
            *index = RecordIndex::new();
            index
        });
        let mut tx = self.begin(Access::Write)?;
        // Holding the write lock: every segment committed so far is read before deciding.
        index.catch_up(&mut tx)?;
        index.make_room();
        // Each batch runs inside a savepoint, so one that fails or is refused leaves nothing and
        // the others go on; the keys of the batches stored so far are `pending` for the next.
        let mut pending = Pending::default();
        let mut results = Vec::with_capacity(batches.len());
        let mut stored = Vec::new();
        // The registry is only read by ingestion, so reading it once before the group's first
        // batch decides the same as reading it for each.
        let registry = ingest::Registry::read(&mut tx, batches)?;
        // The stored batches' changes to rollups and usage sets, written once before the commit.
        let mut deltas = Deltas::default();
        for (n, batch) in batches.iter().enumerate() {
            tx.batch("SAVEPOINT revshare_batch")?;
            match ingest::ingest(&mut tx, &index, &pending, &registry, *batch) {
                Ok((report, mut added)) if report.stored => {
                    tx.batch("RELEASE SAVEPOINT revshare_batch")?;
                    deltas.merge(std::mem::take(&mut added.deltas))?;
                    if n + 1 < batches.len() {
                        pending.extend(added.keys.iter().map(|&(_, host, id, fingerprint)| ((host, id), (fingerprint, added.batch))));
                    }
                    stored.push(added);
                    results.push(Ok(report));
                }
                outcome => {
                    tx.batch("ROLLBACK TO SAVEPOINT revshare_batch; RELEASE SAVEPOINT revshare_batch")?;
                    results.push(outcome.map(|(report, _)| report));
                }
            }
        }
        // A group that stored nothing is dropped here, which rolls it back.
        if !stored.is_empty() {
            deltas.write(&mut tx)?;
            let adds: Vec<_> = stored.iter().map(|added| (added.batch, added.keys.as_slice(), added.last_segment)).collect();
            index.added_while(&adds, || tx.commit().map_err(StoreError::in_commit))?;
        }
        Ok(results)
    }

    fn expect_records(&mut self, records: u64) {
        let shared = self.index();
        // A poisoned index is rebuilt by the next ingest; the hint can be dropped.
        if let Ok(mut index) = shared.lock() {
            index.expect(usize::try_from(records).unwrap_or(usize::MAX));
        }
    }

    fn rollup(&mut self, agreement: &AgreementId, period: Period) -> Result<(Rollup, u64), StoreError> {
        transaction(self, Access::Read, |sql| {
            agreements::require(sql, agreement.as_str(), None)?;
            rollups::of_period(sql, agreement.as_str(), &period.to_string())
        })
    }

    fn delivery(&mut self, agreement: &AgreementId, period: Period) -> Result<Delivery, StoreError> {
        transaction(self, Access::Read, |sql| {
            agreements::require(sql, agreement.as_str(), None)?;
            let month = period.to_string();
            let (_, resends) = rollups::of_period(sql, agreement.as_str(), &month)?;
            segments::delivery(sql, agreement.as_str(), &month, resends)
        })
    }

    fn usage(&mut self, agreement: &AgreementId, first: Period, last: Period, grain: Grain) -> Result<Vec<UsageRow>, StoreError> {
        transaction(self, Access::Read, |sql| {
            agreements::require(sql, agreement.as_str(), None)?;
            rollups::usage(sql, agreement.as_str(), &first.to_string(), &last.to_string(), grain)
        })
    }

    fn usage_set(&mut self, agreement: &AgreementId, period: Period) -> Result<UsageSet, StoreError> {
        transaction(self, Access::Read, |sql| {
            agreements::require(sql, agreement.as_str(), None)?;
            rollups::usage_set(sql, agreement.as_str(), &period.to_string())
        })
    }

    fn records(&mut self, agreement: &AgreementId, period: Period) -> Result<Vec<UsageRecord<'static>>, StoreError> {
        transaction(self, Access::Read, |sql| {
            agreements::require(sql, agreement.as_str(), None)?;
            let mut records: Vec<UsageRecord<'static>> = segments::of_period(sql, agreement.as_str(), &period.to_string())?
                .into_iter()
                .flat_map(|segment| segment.records.into_iter().map(|stored| stored.record))
                .collect();
            records.sort_unstable_by(|a, b| (&a.host, &a.id).cmp(&(&b.host, &b.id)));
            Ok(records)
        })
    }

    fn finalise_statement(&mut self, statement: &NewStatement<'_>, entry: Option<&JournalEntry>) -> Result<StoredStatement, StoreError> {
        transaction(self, Access::Write, |sql| statements::finalise(sql, statement, entry))
    }

    fn close(&mut self, agreement: &AgreementId, period: Period, now: Instant) -> Result<close::Closed, close::CloseError> {
        let mut tx = self.begin(Access::Write)?;
        let closed = close::close_in(&mut tx, agreement, period, now)?;
        tx.commit()?;
        Ok(closed)
    }

    fn preview(&mut self, agreement: &AgreementId, period: Period) -> Result<Statement, close::CloseError> {
        let mut tx = self.begin(Access::Read)?;
        let statement = close::preview_in(&mut tx, agreement, period)?;
        tx.commit().map_err(StoreError::in_commit)?;
        Ok(statement)
    }

    fn running_totals(&mut self, agreement: &AgreementId, period: Period) -> Result<Statement, close::CloseError> {
        let mut tx = self.begin(Access::Read)?;
        let statement = close::running_in(&mut tx, agreement, period)?;
        tx.commit().map_err(StoreError::in_commit)?;
        Ok(statement)
    }

    fn statement(&mut self, agreement: &AgreementId, period: Period) -> Result<Option<StoredStatement>, StoreError> {
        transaction(self, Access::Read, |sql| statements::latest(sql, agreement.as_str(), &period.to_string()))
    }

    fn statements(&mut self, agreement: Option<&AgreementId>) -> Result<Vec<StoredStatement>, StoreError> {
        transaction(self, Access::Read, |sql| statements::list(sql, agreement.map(AgreementId::as_str)))
    }

    fn closed_periods(&mut self, agreement: &AgreementId) -> Result<Vec<Period>, StoreError> {
        transaction(self, Access::Read, |sql| statements::closed_periods(sql, agreement.as_str()))
    }

    fn post_entry(&mut self, entry: &JournalEntry) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| journal::post(sql, entry))
    }

    fn record_payment(&mut self, entry: &JournalEntry, from: payments::Payer, amount_minor: i128) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| payments::record(sql, entry, from, amount_minor))
    }

    fn confirm_payment(&mut self, agreement: &AgreementId, reference: &str) -> Result<JournalEntry, StoreError> {
        transaction(self, Access::Write, |sql| payments::confirm(sql, agreement, reference))
    }

    fn pending_payments(&mut self, agreement: Option<&AgreementId>) -> Result<Vec<payments::PendingPayment>, StoreError> {
        transaction(self, Access::Read, |sql| payments::pending(sql, agreement.map(AgreementId::as_str)))
    }

    fn payment_rows(&mut self, query: &accounts::PaymentQuery<'_>) -> Result<Vec<accounts::PaymentRow>, StoreError> {
        transaction(self, Access::Read, |sql| accounts::payment_page(sql, query))
    }

    fn statement_rows(&mut self, query: &accounts::StatementQuery<'_>) -> Result<Vec<accounts::StatementRow>, StoreError> {
        transaction(self, Access::Read, |sql| accounts::statement_page(sql, query))
    }

    fn journal(&mut self) -> Result<Vec<JournalEntry>, StoreError> {
        transaction(self, Access::Read, |sql| journal::all(sql))
    }

    fn add_contribution(&mut self, agreement: &AgreementId, contribution: &Contribution) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| contributions::add(sql, agreement.as_str(), contribution))
    }

    fn open_dispute(
        &mut self,
        agreement: &AgreementId,
        period: Period,
        sequence: Option<u32>,
        line: Option<u32>,
        opening: Transition,
    ) -> Result<StoredDispute, StoreError> {
        transaction(self, Access::Write, |sql| disputes::open(sql, agreement, period, sequence, line, opening))
    }

    fn dispute_transition(&mut self, id: u64, transition: Transition) -> Result<StoredDispute, StoreError> {
        transaction(self, Access::Write, |sql| disputes::transition(sql, id, transition))
    }

    fn escalate_disputes(&mut self, now: Instant) -> Result<u64, StoreError> {
        transaction(self, Access::Write, |sql| disputes::escalate_due(sql, now))
    }

    fn dispute(&mut self, id: u64) -> Result<Option<StoredDispute>, StoreError> {
        transaction(self, Access::Read, |sql| match disputes::one(sql, id)? {
            Some(stored) => {
                let agreement = stored.dispute.subject.agreement.clone();
                Ok(disputes::with_carried(sql, Some(agreement.as_str()), vec![stored])?.pop())
            }
            None => Ok(None),
        })
    }

    fn dispute_parties(&mut self, id: u64) -> Result<Option<(AgreementId, PartyId, PartyId)>, StoreError> {
        transaction(self, Access::Read, |sql| disputes::parties(sql, id))
    }

    fn disputes(&mut self, agreement: Option<&AgreementId>) -> Result<Vec<StoredDispute>, StoreError> {
        transaction(self, Access::Read, |sql| {
            let agreement = agreement.map(AgreementId::as_str);
            let all = disputes::list(sql, agreement)?;
            disputes::with_carried(sql, agreement, all)
        })
    }

    fn contributions(&mut self, agreement: &AgreementId) -> Result<Vec<Contribution>, StoreError> {
        transaction(self, Access::Read, |sql| {
            agreements::require(sql, agreement.as_str(), None)?;
            contributions::of_agreement(sql, agreement.as_str())
        })
    }

    fn log_size(&mut self) -> Result<u64, StoreError> {
        transaction(self, Access::Read, |sql| log::size(sql))
    }

    fn log_root(&mut self, size: u64) -> Result<Hash, StoreError> {
        transaction(self, Access::Read, |sql| log::root(sql, size))
    }

    fn log_leaf(&mut self, index: u64) -> Result<LogLeaf, StoreError> {
        transaction(self, Access::Read, |sql| log::leaf(sql, index))
    }

    fn log_leaves_of(&mut self, subject: &str) -> Result<Vec<(u64, LogLeaf)>, StoreError> {
        transaction(self, Access::Read, |sql| log::by_subject(sql, subject))
    }

    fn inclusion_proof(&mut self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        transaction(self, Access::Read, |sql| log::inclusion_proof(sql, index, size))
    }

    fn consistency_proof(&mut self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        transaction(self, Access::Read, |sql| log::consistency_proof(sql, old, new))
    }

    fn append_leaves(&mut self, leaves: &[LogLeaf]) -> Result<u64, StoreError> {
        transaction(self, Access::Write, |sql| log::append(sql, leaves))
    }

    fn add_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| log::add_checkpoint(sql, size, note))
    }

    fn checkpoint_including(&mut self, index: u64) -> Result<Option<(u64, String)>, StoreError> {
        transaction(self, Access::Read, |sql| log::checkpoint_including(sql, index))
    }

    fn add_bundle_checkpoint(&mut self, agreement: &AgreementId, size: u64) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| log::add_bundle_checkpoint(sql, agreement.as_str(), size))
    }

    fn bundle_checkpoints(&mut self, agreement: &AgreementId) -> Result<Vec<(u64, String)>, StoreError> {
        transaction(self, Access::Read, |sql| log::bundle_checkpoints(sql, agreement.as_str()))
    }

    fn checkpoints(&mut self) -> Result<Vec<(u64, String)>, StoreError> {
        transaction(self, Access::Read, |sql| log::checkpoints(sql))
    }

    fn add_key(&mut self, party: Option<&PartyId>, key: &VerifierKey) -> Result<u64, StoreError> {
        transaction(self, Access::Write, |sql| keys::add(sql, party.map(PartyId::as_str), key))
    }

    fn register_own_key(&mut self, party: &PartyId, key: &VerifierKey, proof: &[u8; 64]) -> Result<u64, StoreError> {
        transaction(self, Access::Write, |sql| keys::register_own(sql, party.as_str(), key, proof))
    }

    fn rotate_key(&mut self, party: Option<&PartyId>, key: &VerifierKey, endorsement: &Signed) -> Result<u64, StoreError> {
        transaction(self, Access::Write, |sql| keys::rotate(sql, party.map(PartyId::as_str), key, endorsement))
    }

    fn keys(&mut self) -> Result<Vec<RegisteredKey>, StoreError> {
        transaction(self, Access::Read, |sql| keys::all(sql))
    }

    fn usage_batch(&mut self, leaf: u64) -> Result<StoredBatch, StoreError> {
        transaction(self, Access::Read, |sql| log::batch(sql, leaf))
    }

    fn host_batches(&mut self, host: &PartyId, after: Option<u64>, limit: u32) -> Result<Vec<u64>, StoreError> {
        let after = after.map_or(Ok(-1), i64::try_from).map_err(|_| StoreError::Log("a leaf past the log's range".to_owned()))?;
        let leaves = transaction(self, Access::Read, |sql| segments::batches_of_host(sql, host.as_str(), after, i64::from(limit)))?;
        leaves.into_iter().map(|leaf| sql::unsigned(leaf, || "a batch's leaf".to_owned())).collect()
    }

    fn batch_parties(&mut self, leaf: u64) -> Result<Vec<(String, String)>, StoreError> {
        let batch = i64::try_from(leaf).map_err(|_| StoreError::Log(format!("there is no log leaf {leaf}")))?;
        transaction(self, Access::Read, |sql| segments::parties_of_batch(sql, batch))
    }

    fn sent_records(&mut self, agreement: &AgreementId, period: Period) -> Result<Vec<SentRecord>, StoreError> {
        transaction(self, Access::Read, |sql| {
            agreements::require(sql, agreement.as_str(), None)?;
            let mut sent: Vec<SentRecord> = segments::of_period(sql, agreement.as_str(), &period.to_string())?
                .into_iter()
                .flat_map(|segment| {
                    let batch = u64::try_from(segment.place.batch).ok();
                    segment.records.into_iter().map(move |stored| {
                        let mut record = stored.record;
                        let model = std::mem::replace(&mut record.model, std::borrow::Cow::Owned(stored.reported_model)).into_owned();
                        SentRecord { batch, record, model }
                    })
                })
                .collect();
            sent.sort_unstable_by(|a, b| (&a.record.host, &a.record.id).cmp(&(&b.record.host, &b.record.id)));
            Ok(sent)
        })
    }

    fn statement_by_sequence(
        &mut self,
        agreement: &AgreementId,
        period: Period,
        sequence: u32,
    ) -> Result<Option<StoredStatement>, StoreError> {
        transaction(self, Access::Read, |sql| statements::by_sequence(sql, agreement.as_str(), &period.to_string(), sequence))
    }

    fn sign_statement(&mut self, statement: &StoredStatement, signed: &Signed) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| statements::sign(sql, statement, signed))
    }

    fn statement_signatures(&mut self, statement: &StoredStatement) -> Result<Vec<Signed>, StoreError> {
        transaction(self, Access::Read, |sql| statements::signatures(sql, statement))
    }

    fn kept_answer(&mut self, party: &PartyId, key: &str) -> Result<Option<KeptAnswer>, StoreError> {
        transaction(self, Access::Read, |sql| idempotency::find(sql, party, key))
    }

    fn keep_answer(&mut self, party: &PartyId, key: &str, answer: &KeptAnswer, at: Instant) -> Result<bool, StoreError> {
        transaction(self, Access::Write, |sql| idempotency::keep(sql, party, key, answer, at))
    }

    fn add_webhook(&mut self, endpoint: &NewEndpoint<'_>, at: Instant) -> Result<WebhookEndpoint, StoreError> {
        transaction(self, Access::Write, |sql| webhooks::add(sql, endpoint, at))
    }

    fn webhooks(&mut self, party: Option<&PartyId>) -> Result<Vec<WebhookEndpoint>, StoreError> {
        transaction(self, Access::Read, |sql| webhooks::list(sql, party))
    }

    fn disable_webhook(&mut self, party: &PartyId, id: u64) -> Result<Option<WebhookEndpoint>, StoreError> {
        transaction(self, Access::Write, |sql| webhooks::disable(sql, party, id))
    }

    fn queue_webhook_deliveries(
        &mut self,
        id: u64,
        from: u64,
        to: u64,
        deliveries: &[NewDelivery],
        at: Instant,
    ) -> Result<bool, StoreError> {
        transaction(self, Access::Write, |sql| webhooks::queue(sql, id, from, to, deliveries, at))
    }

    fn offer_webhook_deliveries(&mut self, id: u64, deliveries: &[NewDelivery], at: Instant) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| webhooks::offer(sql, id, deliveries, at))
    }

    fn take_due_deliveries(&mut self, now_ms: i64, hold_ms: i64, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError> {
        transaction(self, Access::Write, |sql| webhooks::take_due(sql, now_ms, hold_ms, limit))
    }

    fn record_delivery_attempt(&mut self, endpoint: u64, event_id: &str, attempt: &Attempt) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| webhooks::attempted(sql, endpoint, event_id, attempt))
    }

    fn webhook_deliveries(&mut self, id: u64) -> Result<Vec<WebhookDelivery>, StoreError> {
        transaction(self, Access::Read, |sql| webhooks::deliveries(sql, id))
    }

    fn add_token(&mut self, id: &str, party: &PartyId, role: Role, hash: &[u8; 32]) -> Result<(), StoreError> {
        transaction(self, Access::Write, |sql| tokens::add(sql, id, party, role, hash))
    }

    fn token_by_hash(&mut self, hash: &[u8; 32]) -> Result<Option<StoredToken>, StoreError> {
        transaction(self, Access::Read, |sql| tokens::by_hash(sql, hash))
    }

    fn revoke_token(&mut self, id: &str) -> Result<StoredToken, StoreError> {
        transaction(self, Access::Write, |sql| tokens::revoke(sql, id))
    }

    fn grant(&mut self, auditor: &PartyId, agreement: &AgreementId) -> Result<Grant, StoreError> {
        transaction(self, Access::Write, |sql| grants::grant(sql, auditor, agreement))
    }

    fn revoke_grant(&mut self, auditor: &PartyId, agreement: &AgreementId) -> Result<Grant, StoreError> {
        transaction(self, Access::Write, |sql| grants::revoke(sql, auditor, agreement))
    }

    fn grants(&mut self, agreement: Option<&AgreementId>, auditor: Option<&PartyId>) -> Result<Vec<Grant>, StoreError> {
        transaction(self, Access::Read, |sql| grants::list(sql, agreement, auditor))
    }
}
