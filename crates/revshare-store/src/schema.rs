//! Versioned schema migrations, one list per dialect, kept side by side so they stay alike.
//!
//! `schema_version` holds one row per applied migration. Opening a store applies, in one write
//! transaction, every migration after the highest version found (migration `n` of a list is
//! version `n + 1`), so opening twice, or from two processes at once, applies each exactly once.
//! A database newer than this build is refused rather than guessed at. Migrations are append-only:
//! a released one is never edited; a change is a new entry in both lists.
//!
//! Dialect differences: integers are `BIGINT` in PostgreSQL and `INTEGER` (64-bit) in SQLite;
//! the `u128` rollup sums are `NUMERIC(39,0)` in PostgreSQL and decimal `TEXT` in SQLite (see
//! [`crate::rollups`]); digests and statement bytes are `BYTEA` / `BLOB`; flags are `BOOLEAN` /
//! `INTEGER` 0 or 1. SQLite tables are `STRICT`, so a value of the wrong type is an error there
//! as it is in PostgreSQL. Triggers refuse any update or deletion of agreements, statements,
//! journal entries and postings, and any change to a stored record's values (only where it is
//! rolled up may change, when an agreement is registered).
//!
//! Version 2 adds the journal (see [`crate::journal`]): `journal_entries`, numbered by `seq` in
//! posting order, and their `postings`, whose signed `i128` amounts are `NUMERIC(39,0)` in
//! PostgreSQL (with a check that keeps them within ±(2^127 − 1)) and decimal `TEXT` in SQLite,
//! like the rollup sums.
//!
//! Version 4 adds the transparency log (see [`crate::log`]): `log_leaves` (index, kind, the
//! subject it is looked up by, the canonical data and its leaf hash), `log_nodes` (the hashes of
//! complete subtrees at every fourth level, all proofs need besides leaf hashes), the signed
//! `log_checkpoints`, registered `signing_keys`, `batches` (each usage batch's digest and the sorted
//! digests of its records as sent), the batch that first stored each record, the leaf of each
//! statement, and `statement_signatures`. Everything in the log is append-only. Usage batches,
//! by far the most numerous leaves, are found through `batches` and the records, never by
//! subject, so the subject index leaves them out (appending is the log's hot path).
//!
//! Version 3 adds `contributions` (see [`crate::contributions`]), per agreement; a trigger refuses
//! every change but `accepted` going from false to true, and every deletion.
//!
//! Version 5 adds the API's bearer `tokens` (see [`crate::tokens`]): an id, the party and role it
//! acts as, the SHA-256 of the token (never the token itself; unique, 32 bytes) and whether it is
//! revoked. A trigger refuses every change but `revoked` going from false to true, and every
//! deletion, so a revoked token stays revoked.
//!
//! Version 6 adds disputes (see [`crate::disputes`]): `disputes` (what each questions: a
//! statement, or one of its lines) and their append-only `dispute_transitions` (state, who,
//! when, why, amount in minor units, evidence as a JSON array, its log leaf); a dispute's state is
//! its last transition. Statements gain `finalised_secs`, when they were finalised, which a
//! dispute window runs from (empty for statements finalised before version 6).
//!
//! Version 7 adds `usage_sets` (see [`crate::rollups`]): per agreement and month, the lattice-hash
//! state of its records that a statement's `usage_digest` is taken from, computed from the stored
//! records when the migration is applied (SQL cannot compute it), and kept current at ingest.
//!
//! Version 8 keeps usage records in `record_segments` (see [`crate::segments`]): one row per batch,
//! host, licensor, place and lateness, its records encoded in two blobs, and `record_resends`
//! for the identical resends per record. Applying it moves every stored record into segments
//! (one per group of the old rows, their batch kept) and drops `records`, whose one B-tree row
//! per record was what bounded ingestion. Segments are never updated (a trigger refuses it).
//!
//! Version 9 adds `bundle_checkpoints` (see [`crate::export`]): the size of every checkpoint a
//! bundle of an agreement was exported under, so that each later bundle of the agreement carries
//! a consistency proof from it — the checkpoints its parties kept stay usable with `verify --since`.
//!
//! Version 10 makes the log commit rather than disclose (SPEC §7, DECISIONS): each leaf keeps its
//! `event` and `salt`, and its `data` is the commitment to them; each batch keeps its
//! `record_key`, and `record_digests` holds its records' salted commitments. A store whose log
//! already has leaves of the old form is refused ([`StoreError::DisclosingLog`]): a signed log
//! cannot be rewritten, and old leaves cannot be salted after the fact.
//!
//! Version 11 adds `pending_payments` (see [`crate::payments`]): payments their payer recorded,
//! posted to the journal when the payee confirms them (`confirmed` goes from false to true, once;
//! a trigger refuses every other change, and every deletion).
//!
//! Version 12 adds the operator's `operator_tokens` (see [`crate::tokens`]; the operator is not a
//! party, SPEC §1) and auditors' `grants` (see [`crate::grants`]): which auditor may read which
//! agreement, from the log leaf that granted it until the one that revoked it. A grant in force
//! is unique per auditor and agreement; only `revoked_leaf` is ever set, once; nothing is deleted.
//!
//! Version 13 adds `dispute_transitions.arbiter`: the arbiter an escalation names, which decides
//! the dispute once both sides named it (SPEC §9).
//!
//! Version 14 drops `record_resends`: a resend costs no row (SPEC §6 keeps delivery out of the
//! statement; the rollups' per-group resend counts remain as delivery statistics).
//!
//! Version 18 adds `webhook_endpoints` and their outbox, `webhook_deliveries` (see
//! [`crate::webhooks`]); version 19 an endpoint's `preview_threshold`.
//!
//! Version 20 keeps what the statement and payment lists page through without reading a
//! statement's bytes or the whole journal: `statement_amounts` (each statement's currency and net
//! payable, written with it) and `paid_by_host` (per agreement, what its host paid net of what was
//! paid back and of reversed payments, kept current as payments post), both filled when the
//! migration is applied; and indexes of the payments of an agreement by reference.
//!
//! Version 21 adds `models.registered_by`: the host that registered a derived model (SPEC §11),
//! which only that host's records may name; empty for a model its licensor registered.

use crate::error::StoreError;
use crate::sql::{Access, Backend, Dialect, Param, Sql, first};

const SQLITE: &[&str] = &[
    r#"
CREATE TABLE parties (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('licensor', 'host', 'auditor', 'arbiter'))
) STRICT;

CREATE TABLE models (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES parties (id),
    derived_from TEXT REFERENCES models (id)
) STRICT;

CREATE TABLE model_aliases (
    host TEXT NOT NULL REFERENCES parties (id),
    host_model TEXT NOT NULL,
    model TEXT NOT NULL REFERENCES models (id),
    PRIMARY KEY (host, host_model)
) STRICT, WITHOUT ROWID;

CREATE TABLE agreements (
    id TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    licensor TEXT NOT NULL REFERENCES parties (id),
    host TEXT NOT NULL REFERENCES parties (id),
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (id, version)
) STRICT;
CREATE INDEX agreements_by_licensor ON agreements (licensor, host);

CREATE TABLE records (
    host TEXT NOT NULL REFERENCES parties (id),
    id TEXT NOT NULL,
    model TEXT NOT NULL REFERENCES models (id),
    reported_model TEXT NOT NULL,
    use_case TEXT NOT NULL,
    region TEXT NOT NULL,
    time_secs INTEGER NOT NULL,
    time_nanos INTEGER NOT NULL CHECK (time_nanos BETWEEN 0 AND 999999999),
    requests INTEGER NOT NULL CHECK (requests >= 0),
    input_tokens INTEGER NOT NULL CHECK (input_tokens >= 0),
    output_tokens INTEGER NOT NULL CHECK (output_tokens >= 0),
    revenue TEXT NOT NULL,
    currency TEXT NOT NULL,
    digest BLOB NOT NULL CHECK (length(digest) = 32),
    resends INTEGER NOT NULL DEFAULT 0 CHECK (resends >= 0),
    agreement_id TEXT,
    month TEXT,
    scope INTEGER NOT NULL DEFAULT -1,
    late INTEGER NOT NULL DEFAULT 0 CHECK (late IN (0, 1)),
    PRIMARY KEY (host, id),
    CHECK ((agreement_id IS NULL) = (month IS NULL))
) STRICT, WITHOUT ROWID;
CREATE INDEX records_by_period ON records (agreement_id, month);
CREATE TRIGGER records_keep_values BEFORE UPDATE OF host, id, model, reported_model, use_case, region, time_secs,
    time_nanos, requests, input_tokens, output_tokens, revenue, currency, digest ON records
BEGIN SELECT RAISE(ABORT, 'a stored usage record is never changed'); END;
CREATE TRIGGER records_are_kept BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'a stored usage record is never deleted'); END;

CREATE TABLE rollups (
    agreement_id TEXT NOT NULL,
    month TEXT NOT NULL,
    model TEXT NOT NULL,
    use_case TEXT NOT NULL,
    region TEXT NOT NULL,
    scope INTEGER NOT NULL,
    scale INTEGER NOT NULL CHECK (scale BETWEEN 0 AND 28),
    record_count INTEGER NOT NULL CHECK (record_count >= 0),
    duplicates INTEGER NOT NULL CHECK (duplicates >= 0),
    requests TEXT NOT NULL,
    input_tokens TEXT NOT NULL,
    output_tokens TEXT NOT NULL,
    revenue TEXT NOT NULL,
    PRIMARY KEY (agreement_id, month, model, use_case, region, scope, scale)
) STRICT, WITHOUT ROWID;

CREATE TABLE statements (
    agreement_id TEXT NOT NULL,
    period TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    kind TEXT NOT NULL CHECK (kind IN ('original', 'restatement')),
    agreement_version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (agreement_id, period, seq),
    CHECK ((seq = 1) = (kind = 'original')),
    FOREIGN KEY (agreement_id, agreement_version) REFERENCES agreements (id, version)
) STRICT;
CREATE TRIGGER statements_are_final_u BEFORE UPDATE ON statements
BEGIN SELECT RAISE(ABORT, 'a finalised statement is never changed; save a restatement'); END;
CREATE TRIGGER statements_are_final_d BEFORE DELETE ON statements
BEGIN SELECT RAISE(ABORT, 'a finalised statement is never deleted; save a restatement'); END;
CREATE TRIGGER agreements_are_kept_u BEFORE UPDATE ON agreements
BEGIN SELECT RAISE(ABORT, 'an agreement version is never changed; register an amendment'); END;
CREATE TRIGGER agreements_are_kept_d BEFORE DELETE ON agreements
BEGIN SELECT RAISE(ABORT, 'an agreement version is never deleted; register an amendment'); END;
"#,
    r#"
CREATE TABLE journal_entries (
    seq INTEGER PRIMARY KEY CHECK (seq >= 1),
    reference TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('statement', 'payment', 'adjustment', 'reversal')),
    reverses TEXT UNIQUE REFERENCES journal_entries (reference),
    description TEXT NOT NULL,
    agreement_id TEXT NOT NULL,
    CHECK ((kind = 'reversal') = (reverses IS NOT NULL))
) STRICT;
CREATE INDEX journal_entries_by_agreement ON journal_entries (agreement_id, seq);

CREATE TABLE postings (
    entry_seq INTEGER NOT NULL REFERENCES journal_entries (seq),
    line INTEGER NOT NULL CHECK (line >= 0),
    account TEXT NOT NULL,
    currency TEXT NOT NULL CHECK (length(currency) = 3),
    amount_minor TEXT NOT NULL,
    PRIMARY KEY (entry_seq, line)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER journal_entries_are_final_u BEFORE UPDATE ON journal_entries
BEGIN SELECT RAISE(ABORT, 'a journal entry is never changed; post a reversal'); END;
CREATE TRIGGER journal_entries_are_final_d BEFORE DELETE ON journal_entries
BEGIN SELECT RAISE(ABORT, 'a journal entry is never deleted; post a reversal'); END;
CREATE TRIGGER postings_are_final_u BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'a posting is never changed; post a reversal'); END;
CREATE TRIGGER postings_are_final_d BEFORE DELETE ON postings
BEGIN SELECT RAISE(ABORT, 'a posting is never deleted; post a reversal'); END;
"#,
    r#"
CREATE TABLE contributions (
    agreement_id TEXT NOT NULL,
    id TEXT NOT NULL,
    party TEXT NOT NULL,
    kind TEXT NOT NULL,
    date_secs INTEGER NOT NULL,
    date_nanos INTEGER NOT NULL CHECK (date_nanos BETWEEN 0 AND 999999999),
    description TEXT NOT NULL,
    evidence TEXT,
    accepted INTEGER NOT NULL CHECK (accepted IN (0, 1)),
    PRIMARY KEY (agreement_id, id)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER contributions_only_accepted BEFORE UPDATE ON contributions
WHEN NEW.agreement_id IS NOT OLD.agreement_id OR NEW.id IS NOT OLD.id OR NEW.party IS NOT OLD.party
    OR NEW.kind IS NOT OLD.kind OR NEW.date_secs IS NOT OLD.date_secs OR NEW.date_nanos IS NOT OLD.date_nanos
    OR NEW.description IS NOT OLD.description OR NEW.evidence IS NOT OLD.evidence
    OR NOT (NEW.accepted = OLD.accepted OR (OLD.accepted = 0 AND NEW.accepted = 1))
BEGIN SELECT RAISE(ABORT, 'a contribution is never changed, except to accept it'); END;
CREATE TRIGGER contributions_are_kept BEFORE DELETE ON contributions
BEGIN SELECT RAISE(ABORT, 'a contribution is never deleted'); END;
"#,
    r#"
CREATE TABLE log_leaves (
    idx INTEGER PRIMARY KEY CHECK (idx >= 0),
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    data BLOB NOT NULL,
    hash BLOB NOT NULL CHECK (length(hash) = 32)
) STRICT;
CREATE INDEX log_leaves_by_subject ON log_leaves (subject, idx) WHERE kind <> 'usage_batch';
CREATE TABLE log_nodes (
    level INTEGER NOT NULL CHECK (level > 0),
    idx INTEGER NOT NULL CHECK (idx >= 0),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;
CREATE TABLE log_checkpoints (
    size INTEGER PRIMARY KEY CHECK (size >= 0),
    note TEXT NOT NULL
) STRICT;
CREATE TABLE signing_keys (
    key TEXT PRIMARY KEY,
    party TEXT REFERENCES parties (id),
    leaf INTEGER NOT NULL REFERENCES log_leaves (idx)
) STRICT;
CREATE TABLE batches (
    leaf INTEGER PRIMARY KEY REFERENCES log_leaves (idx),
    digest TEXT NOT NULL,
    record_digests BLOB NOT NULL
) STRICT;
ALTER TABLE records ADD COLUMN batch INTEGER;
ALTER TABLE statements ADD COLUMN leaf INTEGER;
CREATE TABLE statement_signatures (
    agreement_id TEXT NOT NULL,
    period TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    PRIMARY KEY (agreement_id, period, seq, key),
    FOREIGN KEY (agreement_id, period, seq) REFERENCES statements (agreement_id, period, seq)
) STRICT;
CREATE TRIGGER log_leaves_are_kept_u BEFORE UPDATE ON log_leaves
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_leaves_are_kept_d BEFORE DELETE ON log_leaves
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_nodes_are_kept_u BEFORE UPDATE ON log_nodes
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER log_nodes_are_kept_d BEFORE DELETE ON log_nodes
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER batches_are_kept_u BEFORE UPDATE ON batches
BEGIN SELECT RAISE(ABORT, 'a logged batch is never changed'); END;
CREATE TRIGGER batches_are_kept_d BEFORE DELETE ON batches
BEGIN SELECT RAISE(ABORT, 'a logged batch is never deleted'); END;
CREATE TRIGGER records_keep_batch BEFORE UPDATE OF batch ON records
BEGIN SELECT RAISE(ABORT, 'the batch of a stored usage record is never changed'); END;
"#,
    r#"
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    party TEXT NOT NULL REFERENCES parties (id),
    role TEXT NOT NULL CHECK (role IN ('licensor', 'host', 'auditor', 'arbiter')),
    hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
) STRICT;
CREATE TRIGGER tokens_only_revoked BEFORE UPDATE ON tokens
WHEN NEW.id IS NOT OLD.id OR NEW.party IS NOT OLD.party OR NEW.role IS NOT OLD.role OR NEW.hash IS NOT OLD.hash
    OR NOT (NEW.revoked = OLD.revoked OR (OLD.revoked = 0 AND NEW.revoked = 1))
BEGIN SELECT RAISE(ABORT, 'a token is never changed, except to revoke it'); END;
CREATE TRIGGER tokens_are_kept BEFORE DELETE ON tokens
BEGIN SELECT RAISE(ABORT, 'a token is never deleted; revoke it'); END;
"#,
    r#"
ALTER TABLE statements ADD COLUMN finalised_secs INTEGER;
CREATE TABLE disputes (
    id INTEGER PRIMARY KEY CHECK (id >= 1),
    agreement_id TEXT NOT NULL,
    period TEXT NOT NULL,
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    line INTEGER CHECK (line >= 0),
    FOREIGN KEY (agreement_id, period, seq) REFERENCES statements (agreement_id, period, seq)
) STRICT;
CREATE INDEX disputes_of_agreement ON disputes (agreement_id, id);
CREATE TABLE dispute_transitions (
    dispute_id INTEGER NOT NULL REFERENCES disputes (id),
    n INTEGER NOT NULL CHECK (n >= 0),
    state TEXT NOT NULL CHECK (state IN ('open', 'countered', 'accepted', 'rejected', 'escalated', 'decided')),
    party TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('licensor', 'host', 'arbiter', 'deployment')),
    at_secs INTEGER NOT NULL,
    at_nanos INTEGER NOT NULL CHECK (at_nanos BETWEEN 0 AND 999999999),
    reason TEXT NOT NULL,
    amount INTEGER CHECK (amount >= 0),
    evidence TEXT NOT NULL,
    leaf INTEGER NOT NULL,
    PRIMARY KEY (dispute_id, n)
) STRICT;
CREATE TRIGGER disputes_are_kept_u BEFORE UPDATE ON disputes
BEGIN SELECT RAISE(ABORT, 'a dispute is never changed; it moves by new transitions'); END;
CREATE TRIGGER disputes_are_kept_d BEFORE DELETE ON disputes
BEGIN SELECT RAISE(ABORT, 'a dispute is never deleted'); END;
CREATE TRIGGER dispute_transitions_are_kept_u BEFORE UPDATE ON dispute_transitions
BEGIN SELECT RAISE(ABORT, 'a dispute transition is never changed'); END;
CREATE TRIGGER dispute_transitions_are_kept_d BEFORE DELETE ON dispute_transitions
BEGIN SELECT RAISE(ABORT, 'a dispute transition is never deleted'); END;
"#,
    r#"
CREATE TABLE usage_sets (
    agreement_id TEXT NOT NULL,
    month TEXT NOT NULL,
    state BLOB NOT NULL CHECK (length(state) = 2048),
    PRIMARY KEY (agreement_id, month)
) STRICT;
"#,
    r#"
CREATE TABLE record_segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch INTEGER NOT NULL,
    host TEXT NOT NULL REFERENCES parties (id),
    licensor TEXT NOT NULL REFERENCES parties (id),
    agreement_id TEXT,
    month TEXT,
    late INTEGER NOT NULL CHECK (late IN (0, 1)),
    records INTEGER NOT NULL CHECK (records >= 1),
    keys BLOB NOT NULL,
    data BLOB NOT NULL,
    CHECK ((agreement_id IS NULL) = (month IS NULL))
) STRICT;
CREATE INDEX record_segments_of_period ON record_segments (agreement_id, month);
CREATE INDEX record_segments_of_pair ON record_segments (host, licensor);
CREATE INDEX record_segments_of_batch ON record_segments (batch, host);
CREATE TRIGGER record_segments_are_kept BEFORE UPDATE ON record_segments
BEGIN SELECT RAISE(ABORT, 'a record segment is never changed; re-placement replaces it by segments of the same records'); END;
CREATE TABLE record_resends (
    host TEXT NOT NULL,
    id TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count >= 1),
    PRIMARY KEY (host, id)
) STRICT, WITHOUT ROWID;
"#,
    r#"
CREATE TABLE bundle_checkpoints (
    agreement_id TEXT NOT NULL,
    size INTEGER NOT NULL REFERENCES log_checkpoints (size),
    PRIMARY KEY (agreement_id, size)
) STRICT, WITHOUT ROWID;
"#,
    r#"
ALTER TABLE log_leaves ADD COLUMN event BLOB;
ALTER TABLE log_leaves ADD COLUMN salt BLOB CHECK (length(salt) = 32);
ALTER TABLE batches ADD COLUMN record_key BLOB CHECK (length(record_key) = 16);
"#,
    r#"
CREATE TABLE pending_payments (
    reference TEXT PRIMARY KEY,
    agreement_id TEXT NOT NULL,
    payer TEXT NOT NULL CHECK (payer IN ('host', 'licensor')),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    confirmed INTEGER NOT NULL CHECK (confirmed IN (0, 1))
) STRICT;
CREATE INDEX pending_payments_of_agreement ON pending_payments (agreement_id) WHERE confirmed = 0;
CREATE TRIGGER pending_payments_only_confirmed BEFORE UPDATE ON pending_payments
WHEN NEW.reference IS NOT OLD.reference OR NEW.agreement_id IS NOT OLD.agreement_id OR NEW.payer IS NOT OLD.payer
    OR NEW.amount_minor IS NOT OLD.amount_minor OR (OLD.confirmed = 1)
BEGIN SELECT RAISE(ABORT, 'a pending payment is never changed, except to confirm it once'); END;
CREATE TRIGGER pending_payments_are_kept BEFORE DELETE ON pending_payments
BEGIN SELECT RAISE(ABORT, 'a pending payment is never deleted'); END;
"#,
    r#"
CREATE TABLE operator_tokens (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
) STRICT;
CREATE TRIGGER operator_tokens_only_revoked BEFORE UPDATE ON operator_tokens
WHEN NEW.id IS NOT OLD.id OR NEW.hash IS NOT OLD.hash OR NOT (NEW.revoked = OLD.revoked OR (OLD.revoked = 0 AND NEW.revoked = 1))
BEGIN SELECT RAISE(ABORT, 'a token is never changed, except to revoke it'); END;
CREATE TRIGGER operator_tokens_are_kept BEFORE DELETE ON operator_tokens
BEGIN SELECT RAISE(ABORT, 'a token is never deleted; revoke it'); END;

CREATE TABLE grants (
    auditor TEXT NOT NULL REFERENCES parties (id),
    agreement_id TEXT NOT NULL,
    granted_leaf INTEGER NOT NULL,
    revoked_leaf INTEGER CHECK (revoked_leaf > granted_leaf),
    PRIMARY KEY (auditor, agreement_id, granted_leaf)
) STRICT;
CREATE UNIQUE INDEX grants_in_force ON grants (auditor, agreement_id) WHERE revoked_leaf IS NULL;
CREATE INDEX grants_of_agreement ON grants (agreement_id, granted_leaf);
CREATE TRIGGER grants_only_revoked BEFORE UPDATE ON grants
WHEN NEW.auditor IS NOT OLD.auditor OR NEW.agreement_id IS NOT OLD.agreement_id OR NEW.granted_leaf IS NOT OLD.granted_leaf
    OR OLD.revoked_leaf IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'a grant is never changed, except to revoke it once'); END;
CREATE TRIGGER grants_are_kept BEFORE DELETE ON grants
BEGIN SELECT RAISE(ABORT, 'a grant is never deleted; revoke it'); END;
"#,
    r#"
ALTER TABLE dispute_transitions ADD COLUMN arbiter TEXT REFERENCES parties (id);
"#,
    r#"
DROP TABLE record_resends;
"#,
    r#"
CREATE TABLE daily_rollups (
    agreement_id TEXT NOT NULL,
    month TEXT NOT NULL,
    model TEXT NOT NULL,
    use_case TEXT NOT NULL,
    region TEXT NOT NULL,
    day INTEGER NOT NULL CHECK (day BETWEEN 1 AND 31),
    scale INTEGER NOT NULL CHECK (scale BETWEEN 0 AND 28),
    record_count INTEGER NOT NULL CHECK (record_count >= 0),
    duplicates INTEGER NOT NULL CHECK (duplicates >= 0),
    requests TEXT NOT NULL,
    input_tokens TEXT NOT NULL,
    output_tokens TEXT NOT NULL,
    revenue TEXT NOT NULL,
    PRIMARY KEY (agreement_id, month, model, use_case, region, day, scale)
) STRICT, WITHOUT ROWID;
"#,
    r#"
CREATE TABLE daily_totals (
    agreement_id TEXT NOT NULL,
    month TEXT NOT NULL,
    model TEXT NOT NULL CHECK (model = ''),
    use_case TEXT NOT NULL CHECK (use_case = ''),
    region TEXT NOT NULL CHECK (region = ''),
    day INTEGER NOT NULL CHECK (day BETWEEN 1 AND 31),
    scale INTEGER NOT NULL CHECK (scale BETWEEN 0 AND 28),
    record_count INTEGER NOT NULL CHECK (record_count >= 0),
    duplicates INTEGER NOT NULL CHECK (duplicates >= 0),
    requests TEXT NOT NULL,
    input_tokens TEXT NOT NULL,
    output_tokens TEXT NOT NULL,
    revenue TEXT NOT NULL,
    PRIMARY KEY (agreement_id, month, model, use_case, region, day, scale)
) STRICT, WITHOUT ROWID;
"#,
    r#"
CREATE TABLE idempotency_keys (
    party TEXT NOT NULL,
    key TEXT NOT NULL,
    request_digest BLOB NOT NULL CHECK (length(request_digest) = 32),
    status INTEGER NOT NULL CHECK (status BETWEEN 100 AND 599),
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    kept_secs INTEGER NOT NULL,
    PRIMARY KEY (party, key)
) STRICT;
"#,
    r#"
CREATE TABLE webhook_endpoints (
    id INTEGER PRIMARY KEY,
    party TEXT NOT NULL REFERENCES parties (id),
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_secs INTEGER NOT NULL,
    next_leaf INTEGER NOT NULL,
    disabled INTEGER NOT NULL CHECK (disabled IN (0, 1))
) STRICT;
CREATE INDEX webhook_endpoints_of_party ON webhook_endpoints (party, id);
CREATE TABLE webhook_deliveries (
    endpoint INTEGER NOT NULL REFERENCES webhook_endpoints (id),
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_secs INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_ms INTEGER,
    delivered_secs INTEGER,
    last_status INTEGER,
    last_error TEXT,
    PRIMARY KEY (endpoint, event_id)
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms) WHERE next_attempt_ms IS NOT NULL;
"#,
    r#"
ALTER TABLE webhook_endpoints ADD COLUMN preview_threshold TEXT;
"#,
    r#"
CREATE TABLE statement_amounts (
    agreement_id TEXT NOT NULL,
    period TEXT NOT NULL,
    seq INTEGER NOT NULL,
    currency TEXT NOT NULL CHECK (length(currency) = 3),
    net_payable_minor TEXT NOT NULL,
    PRIMARY KEY (agreement_id, period, seq),
    FOREIGN KEY (agreement_id, period, seq) REFERENCES statements (agreement_id, period, seq)
) STRICT, WITHOUT ROWID;
CREATE TABLE paid_by_host (
    agreement_id TEXT PRIMARY KEY,
    amount_minor TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX journal_payments ON journal_entries (agreement_id, reference) WHERE kind = 'payment';
CREATE INDEX pending_payments_listed ON pending_payments (agreement_id, reference) WHERE NOT confirmed;
"#,
    r#"
ALTER TABLE models ADD COLUMN registered_by TEXT REFERENCES parties (id);
"#,
];

const POSTGRES: &[&str] = &[
    r#"
CREATE TABLE parties (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('licensor', 'host', 'auditor', 'arbiter'))
);

CREATE TABLE models (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES parties (id),
    derived_from TEXT REFERENCES models (id)
);

CREATE TABLE model_aliases (
    host TEXT NOT NULL REFERENCES parties (id),
    host_model TEXT NOT NULL,
    model TEXT NOT NULL REFERENCES models (id),
    PRIMARY KEY (host, host_model)
);

CREATE TABLE agreements (
    id TEXT NOT NULL,
    version BIGINT NOT NULL CHECK (version >= 1),
    licensor TEXT NOT NULL REFERENCES parties (id),
    host TEXT NOT NULL REFERENCES parties (id),
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE INDEX agreements_by_licensor ON agreements (licensor, host);

CREATE TABLE records (
    host TEXT NOT NULL REFERENCES parties (id),
    id TEXT NOT NULL,
    model TEXT NOT NULL REFERENCES models (id),
    reported_model TEXT NOT NULL,
    use_case TEXT NOT NULL,
    region TEXT NOT NULL,
    time_secs BIGINT NOT NULL,
    time_nanos BIGINT NOT NULL CHECK (time_nanos BETWEEN 0 AND 999999999),
    requests BIGINT NOT NULL CHECK (requests >= 0),
    input_tokens BIGINT NOT NULL CHECK (input_tokens >= 0),
    output_tokens BIGINT NOT NULL CHECK (output_tokens >= 0),
    revenue TEXT NOT NULL,
    currency TEXT NOT NULL,
    digest BYTEA NOT NULL CHECK (length(digest) = 32),
    resends BIGINT NOT NULL DEFAULT 0 CHECK (resends >= 0),
    agreement_id TEXT,
    month TEXT,
    scope BIGINT NOT NULL DEFAULT -1,
    late BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (host, id),
    CHECK ((agreement_id IS NULL) = (month IS NULL))
);
CREATE INDEX records_by_period ON records (agreement_id, month);

CREATE FUNCTION revshare_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$;
CREATE TRIGGER records_keep_values BEFORE UPDATE OF host, id, model, reported_model, use_case, region, time_secs,
    time_nanos, requests, input_tokens, output_tokens, revenue, currency, digest ON records
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a stored usage record is never changed');
CREATE TRIGGER records_are_kept BEFORE DELETE ON records
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a stored usage record is never deleted');

CREATE TABLE rollups (
    agreement_id TEXT NOT NULL,
    month TEXT NOT NULL,
    model TEXT NOT NULL,
    use_case TEXT NOT NULL,
    region TEXT NOT NULL,
    scope BIGINT NOT NULL,
    scale BIGINT NOT NULL CHECK (scale BETWEEN 0 AND 28),
    record_count BIGINT NOT NULL CHECK (record_count >= 0),
    duplicates BIGINT NOT NULL CHECK (duplicates >= 0),
    requests NUMERIC(39, 0) NOT NULL CHECK (requests >= 0),
    input_tokens NUMERIC(39, 0) NOT NULL CHECK (input_tokens >= 0),
    output_tokens NUMERIC(39, 0) NOT NULL CHECK (output_tokens >= 0),
    revenue NUMERIC(39, 0) NOT NULL CHECK (revenue >= 0),
    PRIMARY KEY (agreement_id, month, model, use_case, region, scope, scale)
);

CREATE TABLE statements (
    agreement_id TEXT NOT NULL,
    period TEXT NOT NULL,
    seq BIGINT NOT NULL CHECK (seq >= 1),
    kind TEXT NOT NULL CHECK (kind IN ('original', 'restatement')),
    agreement_version BIGINT NOT NULL,
    digest TEXT NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (agreement_id, period, seq),
    CHECK ((seq = 1) = (kind = 'original')),
    FOREIGN KEY (agreement_id, agreement_version) REFERENCES agreements (id, version)
);
CREATE TRIGGER statements_are_final BEFORE UPDATE OR DELETE ON statements
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a finalised statement is never changed or deleted; save a restatement');
CREATE TRIGGER agreements_are_kept BEFORE UPDATE OR DELETE ON agreements
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('an agreement version is never changed or deleted; register an amendment');
"#,
    r#"
CREATE TABLE journal_entries (
    seq BIGINT PRIMARY KEY CHECK (seq >= 1),
    reference TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('statement', 'payment', 'adjustment', 'reversal')),
    reverses TEXT UNIQUE REFERENCES journal_entries (reference),
    description TEXT NOT NULL,
    agreement_id TEXT NOT NULL,
    CHECK ((kind = 'reversal') = (reverses IS NOT NULL))
);
CREATE INDEX journal_entries_by_agreement ON journal_entries (agreement_id, seq);

CREATE TABLE postings (
    entry_seq BIGINT NOT NULL REFERENCES journal_entries (seq),
    line BIGINT NOT NULL CHECK (line >= 0),
    account TEXT NOT NULL,
    currency TEXT NOT NULL CHECK (length(currency) = 3),
    amount_minor NUMERIC(39, 0) NOT NULL CHECK (abs(amount_minor) <= 170141183460469231731687303715884105727),
    PRIMARY KEY (entry_seq, line)
);
CREATE TRIGGER journal_entries_are_final BEFORE UPDATE OR DELETE ON journal_entries
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a journal entry is never changed or deleted; post a reversal');
CREATE TRIGGER postings_are_final BEFORE UPDATE OR DELETE ON postings
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a posting is never changed or deleted; post a reversal');
"#,
    r#"
CREATE TABLE contributions (
    agreement_id TEXT NOT NULL,
    id TEXT NOT NULL,
    party TEXT NOT NULL,
    kind TEXT NOT NULL,
    date_secs BIGINT NOT NULL,
    date_nanos BIGINT NOT NULL CHECK (date_nanos BETWEEN 0 AND 999999999),
    description TEXT NOT NULL,
    evidence TEXT,
    accepted BOOLEAN NOT NULL,
    PRIMARY KEY (agreement_id, id)
);
CREATE TRIGGER contributions_only_accepted BEFORE UPDATE ON contributions
FOR EACH ROW WHEN (NEW.agreement_id IS DISTINCT FROM OLD.agreement_id OR NEW.id IS DISTINCT FROM OLD.id
    OR NEW.party IS DISTINCT FROM OLD.party OR NEW.kind IS DISTINCT FROM OLD.kind
    OR NEW.date_secs IS DISTINCT FROM OLD.date_secs OR NEW.date_nanos IS DISTINCT FROM OLD.date_nanos
    OR NEW.description IS DISTINCT FROM OLD.description OR NEW.evidence IS DISTINCT FROM OLD.evidence
    OR (OLD.accepted AND NOT NEW.accepted))
EXECUTE FUNCTION revshare_refuse('a contribution is never changed, except to accept it');
CREATE TRIGGER contributions_are_kept BEFORE DELETE ON contributions
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a contribution is never deleted');
"#,
    r#"
CREATE TABLE log_leaves (
    idx BIGINT PRIMARY KEY CHECK (idx >= 0),
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    data BYTEA NOT NULL,
    hash BYTEA NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX log_leaves_by_subject ON log_leaves (subject, idx) WHERE kind <> 'usage_batch';
CREATE TABLE log_nodes (
    level BIGINT NOT NULL CHECK (level > 0),
    idx BIGINT NOT NULL CHECK (idx >= 0),
    hash BYTEA NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);
CREATE TABLE log_checkpoints (
    size BIGINT PRIMARY KEY CHECK (size >= 0),
    note TEXT NOT NULL
);
CREATE TABLE signing_keys (
    key TEXT PRIMARY KEY,
    party TEXT REFERENCES parties (id),
    leaf BIGINT NOT NULL REFERENCES log_leaves (idx)
);
CREATE TABLE batches (
    leaf BIGINT PRIMARY KEY REFERENCES log_leaves (idx),
    digest TEXT NOT NULL,
    record_digests BYTEA NOT NULL
);
ALTER TABLE records ADD COLUMN batch BIGINT;
ALTER TABLE statements ADD COLUMN leaf BIGINT;
CREATE TABLE statement_signatures (
    agreement_id TEXT NOT NULL,
    period TEXT NOT NULL,
    seq BIGINT NOT NULL,
    key TEXT NOT NULL,
    signature BYTEA NOT NULL CHECK (length(signature) = 64),
    PRIMARY KEY (agreement_id, period, seq, key),
    FOREIGN KEY (agreement_id, period, seq) REFERENCES statements (agreement_id, period, seq)
);
CREATE TRIGGER log_leaves_are_kept BEFORE UPDATE OR DELETE ON log_leaves
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('the log is append-only');
CREATE TRIGGER log_nodes_are_kept BEFORE UPDATE OR DELETE ON log_nodes
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('the log is append-only');
CREATE TRIGGER batches_are_kept BEFORE UPDATE OR DELETE ON batches
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a logged batch is never changed or deleted');
CREATE TRIGGER records_keep_batch BEFORE UPDATE OF batch ON records
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('the batch of a stored usage record is never changed');
"#,
    r#"
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    party TEXT NOT NULL REFERENCES parties (id),
    role TEXT NOT NULL CHECK (role IN ('licensor', 'host', 'auditor', 'arbiter')),
    hash BYTEA NOT NULL UNIQUE CHECK (length(hash) = 32),
    revoked BOOLEAN NOT NULL DEFAULT false
);
CREATE TRIGGER tokens_only_revoked BEFORE UPDATE ON tokens
FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.party IS DISTINCT FROM OLD.party
    OR NEW.role IS DISTINCT FROM OLD.role OR NEW.hash IS DISTINCT FROM OLD.hash
    OR (OLD.revoked AND NOT NEW.revoked))
EXECUTE FUNCTION revshare_refuse('a token is never changed, except to revoke it');
CREATE TRIGGER tokens_are_kept BEFORE DELETE ON tokens
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a token is never deleted; revoke it');
"#,
    r#"
ALTER TABLE statements ADD COLUMN finalised_secs BIGINT;
CREATE TABLE disputes (
    id BIGINT PRIMARY KEY CHECK (id >= 1),
    agreement_id TEXT NOT NULL,
    period TEXT NOT NULL,
    seq BIGINT NOT NULL,
    digest TEXT NOT NULL,
    line BIGINT CHECK (line >= 0),
    FOREIGN KEY (agreement_id, period, seq) REFERENCES statements (agreement_id, period, seq)
);
CREATE INDEX disputes_of_agreement ON disputes (agreement_id, id);
CREATE TABLE dispute_transitions (
    dispute_id BIGINT NOT NULL REFERENCES disputes (id),
    n BIGINT NOT NULL CHECK (n >= 0),
    state TEXT NOT NULL CHECK (state IN ('open', 'countered', 'accepted', 'rejected', 'escalated', 'decided')),
    party TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('licensor', 'host', 'arbiter', 'deployment')),
    at_secs BIGINT NOT NULL,
    at_nanos BIGINT NOT NULL CHECK (at_nanos BETWEEN 0 AND 999999999),
    reason TEXT NOT NULL,
    amount BIGINT CHECK (amount >= 0),
    evidence TEXT NOT NULL,
    leaf BIGINT NOT NULL,
    PRIMARY KEY (dispute_id, n)
);
CREATE TRIGGER disputes_are_kept BEFORE UPDATE OR DELETE ON disputes
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a dispute is never changed or deleted; it moves by new transitions');
CREATE TRIGGER dispute_transitions_are_kept BEFORE UPDATE OR DELETE ON dispute_transitions
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a dispute transition is never changed or deleted');
"#,
    r#"
CREATE TABLE usage_sets (
    agreement_id TEXT NOT NULL,
    month TEXT NOT NULL,
    state BYTEA NOT NULL CHECK (length(state) = 2048),
    PRIMARY KEY (agreement_id, month)
);
"#,
    r#"
CREATE TABLE record_segments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch BIGINT NOT NULL,
    host TEXT NOT NULL REFERENCES parties (id),
    licensor TEXT NOT NULL REFERENCES parties (id),
    agreement_id TEXT,
    month TEXT,
    late BOOLEAN NOT NULL,
    records BIGINT NOT NULL CHECK (records >= 1),
    keys BYTEA NOT NULL,
    data BYTEA NOT NULL,
    CHECK ((agreement_id IS NULL) = (month IS NULL))
);
CREATE INDEX record_segments_of_period ON record_segments (agreement_id, month);
CREATE INDEX record_segments_of_pair ON record_segments (host, licensor);
CREATE INDEX record_segments_of_batch ON record_segments (batch, host);
CREATE TRIGGER record_segments_are_kept BEFORE UPDATE ON record_segments
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a record segment is never changed; re-placement replaces it by segments of the same records');
-- Stored out of line uncompressed: compressing a segment or a batch's random digests costs the
-- server more time than it saves.
ALTER TABLE record_segments ALTER COLUMN keys SET STORAGE EXTERNAL, ALTER COLUMN data SET STORAGE EXTERNAL;
ALTER TABLE batches ALTER COLUMN record_digests SET STORAGE EXTERNAL;
CREATE TABLE record_resends (
    host TEXT NOT NULL,
    id TEXT NOT NULL,
    count BIGINT NOT NULL CHECK (count >= 1),
    PRIMARY KEY (host, id)
);
"#,
    r#"
CREATE TABLE bundle_checkpoints (
    agreement_id TEXT NOT NULL,
    size BIGINT NOT NULL REFERENCES log_checkpoints (size),
    PRIMARY KEY (agreement_id, size)
);
"#,
    r#"
ALTER TABLE log_leaves ADD COLUMN event BYTEA, ADD COLUMN salt BYTEA CHECK (length(salt) = 32);
ALTER TABLE batches ADD COLUMN record_key BYTEA CHECK (length(record_key) = 16);
"#,
    r#"
CREATE TABLE pending_payments (
    reference TEXT PRIMARY KEY,
    agreement_id TEXT NOT NULL,
    payer TEXT NOT NULL CHECK (payer IN ('host', 'licensor')),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    confirmed BOOLEAN NOT NULL
);
CREATE INDEX pending_payments_of_agreement ON pending_payments (agreement_id) WHERE NOT confirmed;
CREATE TRIGGER pending_payments_only_confirmed BEFORE UPDATE ON pending_payments
FOR EACH ROW WHEN (NEW.reference IS DISTINCT FROM OLD.reference OR NEW.agreement_id IS DISTINCT FROM OLD.agreement_id
    OR NEW.payer IS DISTINCT FROM OLD.payer OR NEW.amount_minor IS DISTINCT FROM OLD.amount_minor OR OLD.confirmed)
EXECUTE FUNCTION revshare_refuse('a pending payment is never changed, except to confirm it once');
CREATE TRIGGER pending_payments_are_kept BEFORE DELETE ON pending_payments
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a pending payment is never deleted');
"#,
    r#"
CREATE TABLE operator_tokens (
    id TEXT PRIMARY KEY,
    hash BYTEA NOT NULL UNIQUE CHECK (length(hash) = 32),
    revoked BOOLEAN NOT NULL DEFAULT false
);
CREATE TRIGGER operator_tokens_only_revoked BEFORE UPDATE ON operator_tokens
FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.hash IS DISTINCT FROM OLD.hash OR (OLD.revoked AND NOT NEW.revoked))
EXECUTE FUNCTION revshare_refuse('a token is never changed, except to revoke it');
CREATE TRIGGER operator_tokens_are_kept BEFORE DELETE ON operator_tokens
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a token is never deleted; revoke it');

CREATE TABLE grants (
    auditor TEXT NOT NULL REFERENCES parties (id),
    agreement_id TEXT NOT NULL,
    granted_leaf BIGINT NOT NULL,
    revoked_leaf BIGINT CHECK (revoked_leaf > granted_leaf),
    PRIMARY KEY (auditor, agreement_id, granted_leaf)
);
CREATE UNIQUE INDEX grants_in_force ON grants (auditor, agreement_id) WHERE revoked_leaf IS NULL;
CREATE INDEX grants_of_agreement ON grants (agreement_id, granted_leaf);
CREATE TRIGGER grants_only_revoked BEFORE UPDATE ON grants
FOR EACH ROW WHEN (NEW.auditor IS DISTINCT FROM OLD.auditor OR NEW.agreement_id IS DISTINCT FROM OLD.agreement_id
    OR NEW.granted_leaf IS DISTINCT FROM OLD.granted_leaf OR OLD.revoked_leaf IS NOT NULL)
EXECUTE FUNCTION revshare_refuse('a grant is never changed, except to revoke it once');
CREATE TRIGGER grants_are_kept BEFORE DELETE ON grants
FOR EACH ROW EXECUTE FUNCTION revshare_refuse('a grant is never deleted; revoke it');
"#,
    r#"
ALTER TABLE dispute_transitions ADD COLUMN arbiter TEXT REFERENCES parties (id);
"#,
    r#"
DROP TABLE record_resends;
"#,
    r#"
CREATE TABLE daily_rollups (
    agreement_id TEXT NOT NULL,
    month TEXT NOT NULL,
    model TEXT NOT NULL,
    use_case TEXT NOT NULL,
    region TEXT NOT NULL,
    day BIGINT NOT NULL CHECK (day BETWEEN 1 AND 31),
    scale BIGINT NOT NULL CHECK (scale BETWEEN 0 AND 28),
    record_count BIGINT NOT NULL CHECK (record_count >= 0),
    duplicates BIGINT NOT NULL CHECK (duplicates >= 0),
    requests NUMERIC(39,0) NOT NULL,
    input_tokens NUMERIC(39,0) NOT NULL,
    output_tokens NUMERIC(39,0) NOT NULL,
    revenue NUMERIC(39,0) NOT NULL,
    PRIMARY KEY (agreement_id, month, model, use_case, region, day, scale)
);
"#,
    r#"
CREATE TABLE daily_totals (
    agreement_id TEXT NOT NULL,
    month TEXT NOT NULL,
    model TEXT NOT NULL CHECK (model = ''),
    use_case TEXT NOT NULL CHECK (use_case = ''),
    region TEXT NOT NULL CHECK (region = ''),
    day BIGINT NOT NULL CHECK (day BETWEEN 1 AND 31),
    scale BIGINT NOT NULL CHECK (scale BETWEEN 0 AND 28),
    record_count BIGINT NOT NULL CHECK (record_count >= 0),
    duplicates BIGINT NOT NULL CHECK (duplicates >= 0),
    requests NUMERIC(39,0) NOT NULL,
    input_tokens NUMERIC(39,0) NOT NULL,
    output_tokens NUMERIC(39,0) NOT NULL,
    revenue NUMERIC(39,0) NOT NULL,
    PRIMARY KEY (agreement_id, month, model, use_case, region, day, scale)
);
"#,
    r#"
CREATE TABLE idempotency_keys (
    party TEXT NOT NULL,
    key TEXT NOT NULL,
    request_digest BYTEA NOT NULL CHECK (length(request_digest) = 32),
    status BIGINT NOT NULL CHECK (status BETWEEN 100 AND 599),
    headers TEXT NOT NULL,
    body BYTEA NOT NULL,
    kept_secs BIGINT NOT NULL,
    PRIMARY KEY (party, key)
);
"#,
    r#"
CREATE TABLE webhook_endpoints (
    id BIGINT PRIMARY KEY,
    party TEXT NOT NULL REFERENCES parties (id),
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_secs BIGINT NOT NULL,
    next_leaf BIGINT NOT NULL,
    disabled BOOLEAN NOT NULL
);
CREATE INDEX webhook_endpoints_of_party ON webhook_endpoints (party, id);
CREATE TABLE webhook_deliveries (
    endpoint BIGINT NOT NULL REFERENCES webhook_endpoints (id),
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload BYTEA NOT NULL,
    created_secs BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT,
    delivered_secs BIGINT,
    last_status BIGINT,
    last_error TEXT,
    PRIMARY KEY (endpoint, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms) WHERE next_attempt_ms IS NOT NULL;
"#,
    r#"
ALTER TABLE webhook_endpoints ADD COLUMN preview_threshold TEXT;
"#,
    r#"
CREATE TABLE statement_amounts (
    agreement_id TEXT NOT NULL,
    period TEXT NOT NULL,
    seq BIGINT NOT NULL,
    currency TEXT NOT NULL CHECK (length(currency) = 3),
    net_payable_minor NUMERIC(39, 0) NOT NULL,
    PRIMARY KEY (agreement_id, period, seq),
    FOREIGN KEY (agreement_id, period, seq) REFERENCES statements (agreement_id, period, seq)
);
CREATE TABLE paid_by_host (
    agreement_id TEXT PRIMARY KEY,
    amount_minor NUMERIC(39, 0) NOT NULL
);
CREATE INDEX journal_payments ON journal_entries (agreement_id, reference) WHERE kind = 'payment';
CREATE INDEX pending_payments_listed ON pending_payments (agreement_id, reference) WHERE NOT confirmed;
"#,
    r#"
ALTER TABLE models ADD COLUMN registered_by TEXT REFERENCES parties (id);
"#,
];

/// The version that added `usage_sets`, which is filled from the stored records when it is applied.
const USAGE_SETS: i64 = 7;
/// The version that added `daily_rollups`, filled from the stored records when it is applied.
const DAILY_ROLLUPS: i64 = 15;
/// The version that added `daily_totals`, filled from `daily_rollups` when it is applied.
const DAILY_TOTALS: i64 = 16;
/// The version that added `statement_amounts` and `paid_by_host`, filled from the statements and
/// the journal when it is applied.
const LIST_AMOUNTS: i64 = 20;
/// The version whose log commits to its events (salted): a log of an earlier version that has
/// leaves is refused.
pub(crate) const COMMITTED_LOG: i64 = 10;
/// The version that keeps records in segments; it moves the stored records into them and drops
/// the table of one row per record.
const SEGMENTS: i64 = 8;

fn migrations(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

/// The schema version of a database.
pub(crate) fn version(sql: &mut impl Sql) -> Result<i64, StoreError> {
    Ok(first(sql, "SELECT COALESCE(MAX(version), 0) FROM schema_version", &[], |row| row.int(0))?.unwrap_or(0))
}

/// Brings the schema up to date; returns its version.
pub(crate) fn migrate<B: Backend>(backend: &mut B) -> Result<i64, StoreError> {
    migrate_to(backend, i64::MAX)
}

/// Applies the migrations up to version `target`; returns the latest version this build knows
/// (tests stop short of it, to build a database as an older release left it).
fn migrate_to<B: Backend>(backend: &mut B, target: i64) -> Result<i64, StoreError> {
    // A connection opened while others write (the server opens them as load grows) reads the
    // version first and takes the write lock only to migrate: waiting for the lock in SQLite's
    // busy handler behind back-to-back writers held requests for over a second. A version that
    // cannot be read (a new database) is settled under the lock below.
    {
        let mut sql = backend.begin(Access::Read)?;
        let known = i64::try_from(migrations(sql.dialect()).len()).unwrap_or(i64::MAX);
        if known <= target && version(&mut sql).is_ok_and(|found| found == known) {
            return Ok(known);
        }
    }
    let mut sql = backend.begin(Access::Write)?;
    sql.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY)")?;
    let found = version(&mut sql)?;
    let all = migrations(sql.dialect());
    let known = i64::try_from(all.len()).unwrap_or(i64::MAX);
    if found > known {
        return Err(StoreError::NewerSchema { found, known });
    }
    for (version, script) in (1..).zip(all).skip_while(|(v, _)| *v <= found).take_while(|(v, _)| *v <= target) {
        if version == COMMITTED_LOG {
            let leaves = crate::log::size(&mut sql)?;
            if leaves > 0 {
                return Err(StoreError::DisclosingLog { found, leaves });
            }
        }
        sql.batch(script)?;
        if version == USAGE_SETS {
            crate::rollups::fill_usage_sets(&mut sql)?;
        }
        if version == SEGMENTS {
            crate::segments::move_records(&mut sql)?;
        }
        if version == DAILY_ROLLUPS {
            crate::rollups::fill_daily(&mut sql)?;
        }
        if version == DAILY_TOTALS {
            crate::rollups::fill_day_totals(&mut sql)?;
        }
        if version == LIST_AMOUNTS {
            crate::statements::fill_amounts(&mut sql)?;
            crate::journal::fill_paid_by_host(&mut sql)?;
        }
        sql.execute("INSERT INTO schema_version (version) VALUES ($1)", &[Param::Int(version)])?;
    }
    sql.commit()?;
    Ok(known)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use revshare_core::decimal::Decimal;
    use revshare_core::money::Currency;
    use revshare_core::time::Instant;
    use revshare_core::usage::UsageRecord;
    use revshare_core::usage_set::of_digests;

    use super::*;
    use crate::rollups::Grain;
    use crate::sqlite::SqliteStore;

    fn record(id: &str, secs: i64, revenue: &str) -> UsageRecord<'static> {
        UsageRecord {
            id: Cow::Owned(id.to_owned()),
            host: Cow::Borrowed("northwind"),
            model: Cow::Borrowed("m-70b"),
            use_case: Cow::Borrowed("search"),
            region: Cow::Borrowed("eu"),
            time: Instant::from_parts(secs, 250),
            requests: 3,
            input_tokens: 1_000,
            output_tokens: 20,
            revenue: Decimal::parse(revenue).expect("a decimal"),
            currency: Currency::parse("USD").expect("USD"),
        }
    }

    /// A database as version 6 left it, one row per record, comes out of the migrations with the
    /// same records in segments (values, scope, batch, resends), its usage sets filled.
    #[test]
    fn stored_records_move_into_segments() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut store = SqliteStore::unmigrated(dir.path().join("old.db")).expect("opens");
        migrate_to(&mut store, 6).expect("migrates to version 6");
        let (r1, r2, r3) = (record("r1", 1_791_000_000, "12.5"), record("r2", 1_791_000_100, "0.25"), record("r3", 1_793_000_000, "7"));
        let mut sql = store.begin(Access::Write).expect("a transaction");
        sql.batch(
            "INSERT INTO parties VALUES ('meridian', 'Meridian', 'licensor'), ('northwind', 'Northwind', 'host');
             INSERT INTO models VALUES ('m-70b', 'meridian', NULL);",
        )
        .expect("the registry");
        for (record, agreement, scope, resends, batch) in
            [(&r1, Some("a1"), 0, 2, Some(4)), (&r2, Some("a1"), -1, 0, None), (&r3, None, -1, 0, Some(5))]
        {
            let revenue = record.revenue.to_string();
            sql.execute(
                "INSERT INTO records (host, id, model, reported_model, use_case, region, time_secs, time_nanos, requests, \
                 input_tokens, output_tokens, revenue, currency, digest, resends, agreement_id, month, scope, late, batch) \
                 VALUES ('northwind', $1, 'm-70b', 'nw-70b', 'search', 'eu', $2, 250, 3, 1000, 20, $3, 'USD', $4, $5, $6, $7, $8, 0, $9)",
                &[
                    Param::Text(&record.id),
                    Param::Int(record.time.secs()),
                    Param::Text(&revenue),
                    Param::Bytes(&record.digest()),
                    Param::Int(resends),
                    Param::OptText(agreement),
                    Param::OptText(agreement.map(|_| "2026-10")),
                    Param::Int(scope),
                    Param::OptInt(batch),
                ],
            )
            .expect("an old record row");
        }
        sql.commit().expect("commits");

        let latest = i64::try_from(SQLITE.len()).expect("few");
        assert_eq!(migrate_to(&mut store, i64::MAX).expect("migrates"), latest);
        let mut sql = store.begin(Access::Read).expect("a transaction");
        let mut moved: Vec<(UsageRecord<'static>, String, Option<usize>, i64)> = crate::segments::of_period(&mut sql, "a1", "2026-10")
            .expect("segments")
            .into_iter()
            .flat_map(|s| s.records.into_iter().map(move |r| (r.record, r.reported_model, r.scope, s.place.batch)))
            .collect();
        moved.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        assert_eq!(moved, vec![(r1.clone(), "nw-70b".to_owned(), Some(0), 4), (r2.clone(), "nw-70b".to_owned(), None, -1)]);
        let unmatched = crate::segments::find(&mut sql, "northwind", "r3", 5).expect("reads").expect("r3 is kept");
        assert_eq!((unmatched.0.record, unmatched.1.rolled_up), (r3, None));
        assert!(sql.query("SELECT 1 FROM record_resends", &[], &mut |_| Ok(())).is_err(), "version 14 dropped the resend rows");
        let set = crate::rollups::usage_set(&mut sql, "a1", "2026-10").expect("the usage set");
        assert_eq!(set, of_digests(&[r2.digest(), r1.digest()]), "version 7 filled it from the old rows");
        let mut filled = |grain| {
            let days = crate::rollups::usage(&mut sql, "a1", "2026-10", "2026-10", grain).expect("daily rollups");
            days.iter().map(|d| (d.date.clone(), d.model.clone(), d.records, d.revenue_text())).collect::<Vec<_>>()
        };
        let day = |model: &str| vec![("2026-10-03".to_owned(), model.to_owned(), 2, "12.75".to_owned())];
        assert_eq!(filled(Grain::Day), day("m-70b"), "version 15 filled them from the segments");
        assert_eq!(filled(Grain::DayTotal), day(""), "version 16 filled them from the daily rollups");
        assert!(sql.query("SELECT 1 FROM records", &[], &mut |_| Ok(())).is_err(), "the old table is gone");
    }

    /// A store whose log holds leaves of the form that disclosed events is refused, saying why
    /// and what to do, and left as it was; one with no leaves yet takes the new form.
    #[test]
    fn a_log_that_discloses_its_events_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut store = SqliteStore::unmigrated(dir.path().join("old.db")).expect("opens");
        migrate_to(&mut store, COMMITTED_LOG - 1).expect("migrates to the version before");
        let mut sql = store.begin(Access::Write).expect("a transaction");
        sql.execute(
            "INSERT INTO log_leaves (idx, kind, subject, data, hash) VALUES (0, 'key', 'key:', $1, $2)",
            &[Param::Bytes(br#"{"type":"key"}"#), Param::Bytes(&[0u8; 32])],
        )
        .expect("an old leaf");
        sql.commit().expect("commits");
        let e = migrate_to(&mut store, i64::MAX).expect_err("refused");
        let text = e.to_string();
        assert!(matches!(e, StoreError::DisclosingLog { found: 9, leaves: 1 }), "{text}");
        assert!(text.contains("whose leaves disclose their events") && text.contains("`revshare init`"), "{text}");
        let mut sql = store.begin(Access::Read).expect("a transaction");
        assert_eq!(version(&mut sql).expect("version"), COMMITTED_LOG - 1, "nothing was applied");

        let empty = tempfile::tempdir().expect("a temporary folder");
        let mut store = SqliteStore::unmigrated(empty.path().join("empty.db")).expect("opens");
        migrate_to(&mut store, COMMITTED_LOG - 1).expect("migrates to the version before");
        assert!(migrate_to(&mut store, i64::MAX).expect("an empty log takes the new form") >= COMMITTED_LOG);
    }
}
