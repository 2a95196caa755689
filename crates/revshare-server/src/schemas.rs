//! The OpenAPI schemas of documents the API passes through as the core and store write them: a
//! statement's canonical JSON (SPEC §6) and a batch's signed receipt (SPEC §7). They only
//! describe the wire form, for the document and the clients generated from it; the bytes are
//! written by `revshare_core::statement` and `revshare_store::receipts`, and schemathesis checks in
//! CI that what the server sends matches them.
#![allow(dead_code, reason = "schemas for the OpenAPI document; the core and the store write these documents")]

use utoipa::ToSchema;

/// A statement: its canonical JSON (RFC 8785), which its digest and signatures are over. Money is
/// a decimal string with the currency's minor-unit places; token and request counts are decimal
/// strings (they pass 2^53).
#[derive(ToSchema)]
#[schema(as = Statement)]
pub struct StatementSchema {
    agreement: StatementAgreement,
    /// YYYY-MM (UTC).
    #[schema(example = "2026-10")]
    period: String,
    #[schema(example = "USD")]
    currency: String,
    inputs: StatementInputs,
    tiers: StatementTiers,
    /// One per model, use case and region with usage (an exclusive scope's usage is a line of its
    /// own).
    lines: Vec<StatementLine>,
    /// Restatements and decided or accepted disputes this statement carries.
    adjustments: Vec<StatementAdjustment>,
    totals: StatementTotals,
    /// Every line's flags, sorted and once each (`unlicensed_model`, …), and `final_true_up` for a
    /// month after the agreement ended that only carries adjustments.
    flags: Vec<String>,
}

/// The agreement version a statement applies.
#[derive(ToSchema)]
pub struct StatementAgreement {
    #[schema(example = "meridian-northwind")]
    id: String,
    version: u32,
    /// `sha256:` of the validated agreement's canonical form.
    digest: String,
}

/// What the statement was computed from.
#[derive(ToSchema)]
pub struct StatementInputs {
    /// Distinct records selected.
    records: u64,
    /// The set's `lthash16:` digest: both sides recompute it from the records.
    usage_digest: String,
}

/// The volume tiers and how the month's volume fell into them.
#[derive(ToSchema)]
pub struct StatementTiers {
    /// `tokens`, `requests` or `revenue`.
    #[schema(example = "tokens")]
    metric: String,
    /// `graduated` or `volume`.
    #[schema(example = "graduated")]
    mode: String,
    bounds: Vec<String>,
    /// The month's volume V.
    volume: String,
    tiers: Vec<StatementTier>,
}

#[derive(ToSchema)]
pub struct StatementTier {
    from: String,
    /// Null for the last, open tier.
    to: Option<String>,
    volume: String,
    /// Its share of V, ten places.
    fraction: String,
}

/// One line of a statement.
#[derive(ToSchema)]
pub struct StatementLine {
    #[schema(example = "m-70b")]
    model: String,
    #[schema(example = "customer_service")]
    use_case: String,
    #[schema(example = "us")]
    region: String,
    /// Inside an exclusive scope of the agreement.
    exclusive: bool,
    records: u64,
    requests: String,
    input_tokens: String,
    output_tokens: String,
    #[schema(example = "1080.00")]
    revenue: String,
    volume: String,
    /// The tier-weighted rate, ten places.
    #[schema(example = "0.1695488722")]
    blended_rate: String,
    /// The exclusivity uplift applied, if any.
    uplift: Option<String>,
    #[schema(example = "183.11")]
    amount: String,
    flags: Vec<String>,
}

/// An amount a statement carries from elsewhere.
#[derive(ToSchema)]
pub struct StatementAdjustment {
    /// `restatement` or `dispute`.
    #[schema(example = "dispute")]
    kind: String,
    /// The restated month, or `dispute:<id>`.
    #[schema(example = "dispute:1")]
    reference: String,
    description: String,
    /// What it changes in what the host owes (negative: credited to the host).
    #[schema(example = "-10.00")]
    amount: String,
}

/// The statement's totals (SPEC §6).
#[derive(ToSchema)]
pub struct StatementTotals {
    gross_revenue: String,
    usage_subtotal: String,
    minimum_true_up: String,
    cap_reduction: String,
    usage_total: String,
    contribution_pool: String,
    /// Each party's share of the pool.
    #[schema(example = json!({"meridian": "4.96", "northwind": "12.40"}))]
    contribution_allocation: std::collections::BTreeMap<String, String>,
    host_credit: String,
    adjustments: String,
    /// What the host owes the licensor for the month (negative: is owed).
    #[schema(example = "855.37")]
    net_payable: String,
}

/// The deployment's signed receipt of a stored batch: the batch, its leaf, a checkpoint and the
/// leaf's inclusion proof under it (`revshare ingest --receipts` writes the same).
#[derive(ToSchema)]
#[schema(as = Receipt)]
pub struct ReceiptSchema {
    /// `receipt`.
    #[schema(rename = "type", example = "receipt")]
    kind: String,
    batch: ReceiptBatch,
    leaf: ReceiptLeaf,
    tree_size: u64,
    /// The proof's hashes, in base64.
    inclusion_proof: Vec<String>,
    /// The signed checkpoint (a C2SP note) the proof is under.
    checkpoint: String,
    signed: SignatureSchema,
}

#[derive(ToSchema)]
pub struct ReceiptBatch {
    /// `sha256:` over the batch's salted record commitments.
    digest: String,
    records: u64,
    /// The batch's record-salt key, in base64: it opens the salts of its records.
    record_key: String,
}

#[derive(ToSchema)]
pub struct ReceiptLeaf {
    index: u64,
    /// The event's canonical JSON text.
    event: String,
    /// The event's salt, in base64.
    salt: String,
}

/// A signature and the key that made it.
#[derive(ToSchema)]
#[schema(as = Signature)]
pub struct SignatureSchema {
    /// The verifier key (`<name>+<key id>+<base64>`).
    key: String,
    /// Ed25519, in base64.
    signature: String,
}
