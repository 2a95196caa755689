//! The handlers: each checks who may call it, reads its input, makes the CLI's store and core
//! calls on a blocking thread, and turns the result into JSON (or a problem).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use revshare_core::agreement::{line_column, parse_agreement};
use revshare_core::ids::AgreementId;
use revshare_core::ledger::Balances;
use revshare_core::note::VerifierKey;
use revshare_core::time::Period;
use revshare_core::transparency::{RECORD_KEY_BYTES, Signed, SignedBatch, from_b64};
use revshare_store::accounts::{PaymentQuery, PaymentState, StatementQuery};
use revshare_store::close::{CloseError, close_month};
use revshare_store::payments::{self, PaymentError};
use revshare_store::receipts::{self, ConsistencyProof, InclusionProof};
use revshare_store::{Role, StatementHead, StatementKind, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi as _, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Caller, may_read, may_read_agreement, may_read_leaf};
use crate::body::{self, Format, Parsed};
use crate::extract::{Months, Params, agreement_id, choice, json_body, number, params, period_of, readable, required, visible_agreements};
use crate::group::{self, Committed, Job};
use crate::page::{self, Page, PageParams, Paging, created, key_of, number_key, stale_cursor};
use crate::problem::{Problem, ProblemDetails, ProblemItem};

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` (the store answers) or `alive` (the process answers: `/livez`).
    #[schema(example = "ok")]
    pub status: String,
    /// The store's schema version; absent from `/livez`, which does not ask the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
}

/// What a stored batch did (SPEC §3), and its signed receipt.
#[derive(Serialize, ToSchema)]
pub struct IngestResult {
    /// New records stored.
    #[schema(example = 50000)]
    pub accepted: u64,
    /// Identical resends of stored records: acknowledged, nothing changed.
    pub duplicates: u64,
    pub conflicts: u64,
    pub refused: u64,
    /// Accepted records that no agreement covers.
    pub unmatched: u64,
    /// Accepted records of a month already closed.
    pub late: u64,
    /// The deployment's signed receipt: the batch digest, its leaf, a checkpoint and the leaf's
    /// inclusion proof (as `revshare ingest --receipts` writes).
    #[schema(value_type = Option<crate::schemas::ReceiptSchema>)]
    pub receipt: Option<Value>,
    /// Why a stored batch has no receipt (it was committed; the receipt could not be made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_unavailable: Option<String>,
}

/// A usage record (SPEC §3), as one element of a JSON array or one line of JSON Lines. Only
/// documents the wire form: records are read by the core's parser, which refuses any other field.
#[derive(ToSchema)]
#[allow(dead_code, reason = "a schema for the OpenAPI document; the core parses records")]
pub struct UsageRecordSchema {
    /// 1–128 of `A-Z a-z 0-9 . _ : -`; unique per host.
    #[schema(example = "e1")]
    id: String,
    /// The reporting host: the token's party.
    #[schema(example = "northwind")]
    host: String,
    #[schema(example = "m-70b")]
    model: String,
    #[schema(example = "customer_service")]
    use_case: String,
    #[schema(example = "us")]
    region: String,
    /// RFC 3339 with an offset.
    #[schema(example = "2026-10-02T10:00:00Z")]
    time: String,
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    /// A decimal string (or a JSON number, read from its exact text).
    #[schema(example = "1080.00")]
    revenue: String,
    /// ISO 4217; the agreement's currency.
    #[schema(example = "USD")]
    currency: String,
}

/// A CloudEvents 1.0 event carrying a usage record: its `id` and `time` are the record's.
#[derive(ToSchema)]
#[allow(dead_code, reason = "a schema for the OpenAPI document; the core parses events")]
pub struct UsageEventSchema {
    #[schema(example = "1.0")]
    specversion: String,
    id: String,
    source: String,
    /// `revshare.usage.v1`.
    #[schema(rename = "type", example = "revshare.usage.v1")]
    kind: String,
    time: String,
    /// The record's other fields.
    #[schema(value_type = Object)]
    data: (),
}

/// The latest version of an agreement, with the TOML it was registered from.
#[derive(Serialize, ToSchema)]
pub struct AgreementView {
    #[schema(example = "meridian-northwind")]
    pub id: String,
    #[schema(example = 1)]
    pub version: u32,
    #[schema(example = "meridian")]
    pub licensor: String,
    #[schema(example = "northwind")]
    pub host: String,
    #[schema(example = "USD")]
    pub currency: String,
    /// `sha256:` of the validated agreement's canonical form.
    pub digest: String,
    /// The agreement file (SPEC §2) as registered.
    pub source: String,
}

/// A finalised statement, without its bytes.
#[derive(Serialize, ToSchema)]
pub struct StatementSummary {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    pub agreement_version: u32,
    /// YYYY-MM.
    #[schema(example = "2026-10")]
    pub period: String,
    /// 1 for the original, then 2, 3, … for restatements.
    pub sequence: u32,
    /// `original` or `restatement`.
    #[schema(example = "original")]
    pub kind: String,
    /// `sha256:` of the canonical bytes.
    pub digest: String,
    /// Its leaf in the transparency log.
    pub leaf: Option<u64>,
}

/// A finalised statement in a list: its summary and where its money stands.
#[derive(Serialize, ToSchema)]
pub struct StatementItem {
    #[serde(flatten)]
    pub statement: StatementSummary,
    #[schema(example = "USD")]
    pub currency: String,
    /// What the host owes for the month (negative: is owed), with the currency's minor-unit places.
    #[schema(example = "4620.50")]
    pub net_payable: String,
    /// For an original: what the agreement's confirmed payments cover of it (oldest month first);
    /// null for a restatement, whose difference a later original carries.
    pub paid: Option<String>,
    /// For an original: what is left to pay.
    pub outstanding: Option<String>,
    /// Whether a key registered to the agreement's host signed it.
    pub countersigned: bool,
    /// When it was finalised, `YYYY-MM-DD`.
    #[schema(example = "2026-11-04")]
    pub closed_on: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PartyRef {
    #[schema(example = "northwind")]
    pub party: String,
    /// `licensor` or `host`.
    pub role: String,
}

/// `debtor` owes `creditor` `amount` under `agreement`.
#[derive(Serialize, ToSchema)]
pub struct Debt {
    pub agreement: String,
    pub currency: String,
    pub debtor: PartyRef,
    pub creditor: PartyRef,
    /// A decimal string with the currency's minor-unit places.
    #[schema(example = "4620.50")]
    pub amount: String,
}

#[derive(Serialize, ToSchema)]
pub struct BalanceList {
    pub balances: Vec<Debt>,
    /// Payments their payer recorded and the payee has not confirmed: in no balance yet.
    pub pending: Vec<PendingPaymentView>,
}

/// A payment waiting for its payee's confirmation (SPEC §10).
#[derive(Serialize, ToSchema)]
pub struct PendingPaymentView {
    pub agreement: String,
    pub reference: String,
    /// Who paid: `host` or `licensor`; the other side confirms.
    pub from: String,
    /// A decimal string with the currency's minor-unit places.
    pub amount: String,
    pub currency: String,
}

/// The API's routes, and the OpenAPI document generated from the same annotations. Without
/// `auth` the routes are unauthenticated: that router is only for reading the document.
pub(crate) fn api(auth: Option<AppState>) -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let mut v1 = OpenApiRouter::new()
        .routes(routes!(post_usage))
        .routes(routes!(get_agreement))
        .routes(routes!(list_statements))
        .routes(routes!(get_statement))
        .routes(routes!(preview_statement))
        .routes(routes!(statement_delivery))
        .routes(routes!(sign_statement))
        .routes(routes!(list_agreements, post_agreement))
        .routes(routes!(post_close))
        .routes(routes!(list_payments, post_payment))
        .routes(routes!(get_payment))
        .routes(routes!(confirm_payment))
        .routes(routes!(balances))
        .routes(routes!(checkpoint))
        .routes(routes!(inclusion))
        .routes(routes!(consistency))
        .routes(routes!(keys, post_key))
        // The registry (`registry.rs`) and statement bundles (`export.rs`).
        .routes(routes!(crate::registry::post_party))
        .routes(routes!(crate::registry::get_party))
        .routes(routes!(crate::registry::post_model))
        .routes(routes!(crate::registry::get_model))
        .routes(routes!(crate::registry::post_alias))
        .routes(routes!(crate::export::get_bundle))
        // Disputes (`disputes.rs`).
        .routes(routes!(crate::disputes::open_dispute, crate::disputes::list_disputes))
        .routes(routes!(crate::disputes::get_dispute))
        .routes(routes!(crate::disputes::move_dispute))
        // Usage so far (`usage.rs`), and a licensor's compliance report (`compliance.rs`).
        .routes(routes!(crate::usage::summary))
        .routes(routes!(crate::compliance::report))
        .routes(routes!(crate::usage::list_batches))
        .routes(routes!(crate::usage::get_batch))
        .routes(routes!(crate::webhooks::post_webhook, crate::webhooks::list_webhooks))
        .routes(routes!(crate::webhooks::get_webhook, crate::webhooks::delete_webhook))
        .routes(routes!(crate::webhooks::list_deliveries))
        // Contributions (`contributions.rs`).
        .routes(routes!(crate::contributions::post_contribution, crate::contributions::list_contributions))
        .routes(routes!(crate::contributions::accept_contribution))
        .routes(routes!(crate::contributions::get_contribution))
        // The operator's tokens and grants (`operator.rs`).
        .routes(routes!(crate::operator::create_token))
        .routes(routes!(crate::operator::revoke_token))
        .routes(routes!(crate::operator::post_grant, crate::operator::list_grants))
        .routes(routes!(crate::operator::revoke_grant));
    if let Some(state) = auth {
        // Authentication runs first (the outer layer), so a kept answer is the caller's own.
        v1 = v1
            .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::idempotency::replay))
            .route_layer(axum::middleware::from_fn_with_state(state, crate::auth::authenticate));
    }
    let (router, mut document) = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(livez))
        .nest("/v1", v1)
        .split_for_parts();
    crate::openapi::document_idempotency_keys(&mut document);
    crate::openapi::document_links(&mut document);
    (router, document)
}

/// Whether the server and its store answer: 503 (or 507, full) naming the store when it does not.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "the server and its store answer", body = Health),
    (status = 503, description = "the store does not answer; see Retry-After", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 507, description = "the store has no room left; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")))]
pub(crate) async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, Problem> {
    // The one dependency is the store's database: say so, rather than what a write would be told.
    let version = state.run(|store, _| Ok(store.schema_version()?)).await.map_err(|problem| match problem.retry_after {
        Some(seconds) => Problem {
            detail: format!(
                "the database is down: the store does not answer; ask again in {seconds} s (GET /livez: the server itself is up)"
            ),
            ..problem
        },
        None => problem,
    })?;
    Ok(Json(Health { status: "ok".to_owned(), schema_version: Some(version) }))
}

/// Whether the server process answers, store or not: for a supervisor deciding to restart it
/// (a store that is down is not cured by a restart; `/healthz` says that one).
#[utoipa::path(get, path = "/livez", tag = "health", responses((status = 200, description = "the process answers", body = Health)))]
pub(crate) async fn livez() -> Json<Health> {
    Json(Health { status: "alive".to_owned(), schema_version: None })
}

pub(crate) async fn no_route() -> Problem {
    Problem::not_found("there is no such route; the API is /healthz and /v1/…")
}

/// `Revshare-Signature: <verifier key> <base64 signature>`: the host's signature of the batch,
/// with `Revshare-Record-Key: <base64 of 16 bytes>`, the record-salt key it signed the batch under.
fn signature(headers: &HeaderMap) -> Result<Option<SignedBatch>, Problem> {
    let Some(value) = headers.get("revshare-signature") else { return Ok(None) };
    let bad = |why: &str| Problem::bad_request(format!("the Revshare-Signature header {why}; send `<verifier key> <base64 signature>`"));
    let text = value.to_str().map_err(|_| bad("is not ASCII text"))?;
    let (key, signature) = text.trim().rsplit_once(' ').ok_or_else(|| bad("has no space between the key and the signature"))?;
    let signature = from_b64(signature.trim())
        .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
        .ok_or_else(|| bad("does not end in a 64-byte signature in base64"))?;
    let record_key = headers
        .get("revshare-record-key")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| from_b64(text.trim()))
        .and_then(|bytes| <[u8; RECORD_KEY_BYTES]>::try_from(bytes).ok())
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "a signed batch needs the Revshare-Record-Key header: the {RECORD_KEY_BYTES}-byte record-salt key the batch was signed \
                 under, in base64 (draw it at random for each batch; see `revshare_core::transparency::batch_digest`)"
            ))
        })?;
    Ok(Some(SignedBatch { signed: Signed { key: key.trim().to_owned(), signature }, record_key }))
}

/// Stores a batch of usage records (SPEC §3) in one transaction, whole or not at all, and
/// answers with a signed receipt once it is committed.
#[utoipa::path(
    post,
    path = "/usage",
    tag = "usage",
    request_body(
        description = "a JSON array of records, JSON Lines (`application/x-ndjson` or `application/jsonl`: one record a line) or a CloudEvents batch",
        content(
            (Vec<UsageRecordSchema> = "application/json"),
            (String = "application/x-ndjson"),
            (Vec<UsageEventSchema> = "application/cloudevents-batch+json")
        )
    ),
    params(
        ("Revshare-Signature" = Option<String>, Header, description = "`<verifier key> <base64 signature>`: the host's signature of `revshare usage batch v2\\n<batch digest>\\n`"),
        ("Revshare-Record-Key" = Option<String>, Header, description = "with a signature: the 16 random bytes (base64) the batch's record salts derive from; the batch digest is over the records' salted commitments under it")
    ),
    responses(
        (status = 200, description = "stored (or all duplicates); a signed receipt", body = IngestResult),
        (status = 400, description = "records that do not parse: every one, with line, column, record and field", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not a host token, or records of another host", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "records conflict with stored ones; nothing stored", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 408, description = "the body stopped arriving (a pause over the idle timeout); nothing stored", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "records the registry refuses, or a signature that does not verify", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_usage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<IngestResult>, Problem> {
    caller.require(Role::Host, "report usage")?;
    let format = Format::of(&headers)?;
    let signed = signature(&headers)?;
    let bytes = body::read(&headers, request_body, state.max_body_bytes(), state.body_idle()).await?;
    let parsed = tokio::task::spawn_blocking(move || body::parse(format, &bytes))
        .await
        .map_err(|e| Problem::internal("reading a batch panicked", &e))?
        .map_err(|errors| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-records",
                "the batch has invalid records",
                format!("{} problem(s) in the batch; nothing was stored", errors.len()),
            )
            .with_errors(errors)
        })?;
    let foreign: Vec<ProblemItem> = parsed
        .records
        .iter()
        .zip(&parsed.lines)
        .filter(|(record, _)| record.host != caller.party.as_str())
        .map(|(record, line)| ProblemItem {
            line: Some(*line),
            record: Some(record.id.to_string()),
            field: Some("host".to_owned()),
            message: format!("record {} is host {}'s; a token of {} reports only its own usage", record.id, record.host, caller.party),
            ..ProblemItem::default()
        })
        .collect();
    if !foreign.is_empty() {
        let detail = format!("{} record(s) belong to another host; nothing was stored", foreign.len());
        return Err(Problem::forbidden(detail).with_errors(foreign));
    }
    let Parsed { records, digests, lines } = parsed;
    // Queued, then stored with the batches queued with it by whichever request gets a writer's
    // turn first (this one's, at the latest); the answer comes after that group's commit. A
    // request answered by another's turn leaves the writers' queue at once.
    let (reply, mut answer) = tokio::sync::oneshot::channel();
    state.queue_ingest(Job { records, digests, signed, reply })?;
    let answered = tokio::select! {
        biased;
        answered = &mut answer => answered,
        // This batch's own answer, when its group was committed in this turn, stands whatever
        // failed after it (a later group, the connection).
        written = state.write(group::commit_queued) => match (written, answer.try_recv()) {
            (_, Ok(answered)) => Ok(answered),
            (Err(problem), Err(_)) => return Err(problem),
            (Ok(()), Err(_)) => answer.await,
        }
    };
    let Committed { report, receipt } = answered.map_err(|e| Problem::internal("the batch's group ended without answering it", &e))??;
    if !report.stored {
        let errors: Vec<ProblemItem> = report
            .problems
            .iter()
            .map(|p| ProblemItem {
                line: lines.get(p.index).copied(),
                record: Some(p.id.clone()),
                message: p.reason.clone(),
                ..ProblemItem::default()
            })
            .collect();
        let detail = format!(
            "{} record(s) conflict with records stored under the same id and {} are refused; nothing was stored",
            report.conflicts, report.refused
        );
        let problem = if report.conflicts > 0 {
            Problem::new(StatusCode::CONFLICT, "conflict", "records conflict with stored records", detail)
        } else {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", "records refused", detail)
        };
        crate::metrics::records("conflict", report.conflicts);
        crate::metrics::records("refused", report.refused);
        return Err(problem.with_errors(errors));
    }
    crate::metrics::records("accepted", report.accepted);
    crate::metrics::records("duplicate", report.duplicates);
    tracing::info!(host = %caller.party, accepted = report.accepted, duplicates = report.duplicates, "usage batch stored");
    Ok(Json(IngestResult {
        accepted: report.accepted,
        duplicates: report.duplicates,
        conflicts: report.conflicts,
        refused: report.refused,
        unmatched: report.unmatched,
        late: report.late,
        receipt: receipt.as_ref().ok().cloned().flatten(),
        receipt_unavailable: receipt.err(),
    }))
}

/// The latest version of an agreement this token may read.
#[utoipa::path(
    get,
    path = "/agreements/{agreement}",
    tag = "agreements",
    params(("agreement" = String, Path, description = "the agreement id")),
    responses((status = 200, description = "the agreement's terms at the version asked for", body = AgreementView), (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "no such agreement or statement that this token can read", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(crate) async fn get_agreement(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(agreement): Path<String>,
) -> Result<Json<AgreementView>, Problem> {
    let id = agreement_id(&agreement)?;
    let view = state
        .run(move |store, _| {
            let agreement = readable(store, &caller, &id)?;
            let source = store.agreement_source(&id, agreement.version())?;
            Ok(AgreementView {
                id: id.to_string(),
                version: agreement.version(),
                licensor: agreement.licensor().to_string(),
                host: agreement.host().to_string(),
                currency: agreement.currency().to_string(),
                digest: agreement.digest(),
                source,
            })
        })
        .await?;
    Ok(Json(view))
}

/// An agreement's latest version, without its source.
#[derive(Serialize, ToSchema)]
pub struct AgreementItem {
    #[schema(example = "meridian-northwind")]
    pub id: String,
    pub version: u32,
    #[schema(example = "meridian")]
    pub licensor: String,
    #[schema(example = "northwind")]
    pub host: String,
    #[schema(example = "USD")]
    pub currency: String,
    /// `sha256:` of the validated agreement's canonical form.
    pub digest: String,
}

/// The agreements this token may read (their latest versions), by id; filtered by licensor or
/// host.
#[utoipa::path(
    get,
    path = "/agreements",
    tag = "agreements",
    params(
        PageParams,
        ("licensor" = Option<String>, Query, description = "only this licensor's"),
        ("host" = Option<String>, Query, description = "only this host's"),
    ),
    responses((status = 200, description = "a page of the agreements; as CSV with `Accept: text/csv`; the next page in `Link`", content((Page<AgreementItem> = "application/json"), (String = "text/csv"))), (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(crate) async fn list_agreements(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, Problem> {
    let (params, paging) = Paging::read(query, &["licensor", "host"])?;
    let (licensor, host) = (params.get("licensor").cloned(), params.get("host").cloned());
    let page = state
        .run(move |store, _| {
            let items = store
                .agreements()?
                .into_iter()
                .filter(|a| may_read_agreement(&caller, a))
                .filter(|a| {
                    licensor.as_deref().is_none_or(|l| a.licensor().as_str() == l) && host.as_deref().is_none_or(|h| a.host().as_str() == h)
                })
                .map(|a| AgreementItem {
                    id: a.id().to_string(),
                    version: a.version(),
                    licensor: a.licensor().to_string(),
                    host: a.host().to_string(),
                    currency: a.currency().to_string(),
                    digest: a.digest(),
                })
                .collect();
            Ok(paging.page(items, |a: &AgreementItem| a.id.clone()))
        })
        .await?;
    page::answer(&headers, &uri, &page, &["id", "version", "licensor", "host", "currency", "digest"])
}

fn summary(statement: &StatementHead) -> StatementSummary {
    StatementSummary {
        agreement: statement.agreement_id.to_string(),
        agreement_version: statement.agreement_version,
        period: statement.period.to_string(),
        sequence: statement.sequence,
        kind: statement.kind.as_str().to_owned(),
        digest: statement.digest.clone(),
        leaf: statement.leaf,
    }
}

/// The finalised statements of the agreements this token may read, by agreement, month and
/// sequence; filtered by agreement, months and kind.
#[utoipa::path(
    get,
    path = "/statements",
    tag = "statements",
    params(
        PageParams,
        ("agreement" = Option<String>, Query, description = "only this agreement's"),
        ("from" = Option<String>, Query, description = "only months from this one (`YYYY-MM`)"),
        ("to" = Option<String>, Query, description = "only months up to this one (`YYYY-MM`)"),
        ("kind" = Option<String>, Query, description = "only `original` or only `restatement` statements"),
    ),
    responses((status = 200, description = "a page of the statements; as CSV with `Accept: text/csv`; the next page in `Link`", content((Page<StatementItem> = "application/json"), (String = "text/csv"))), (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "no such agreement that this token can read", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(crate) async fn list_statements(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, Problem> {
    let (params, paging) = Paging::read(query, &["agreement", "from", "to", "kind"])?;
    let months = Months::of(&params)?;
    let kind = match choice(&params, "kind", &["original", "restatement"])? {
        Some("original") => Some(StatementKind::Original),
        Some(_) => Some(StatementKind::Restatement),
        None => None,
    };
    let agreement = params.get("agreement").map(|text| agreement_id(text)).transpose()?;
    let after = match paging.after_parts(3)?.as_deref() {
        Some([agreement, period, sequence]) => Some((
            AgreementId::parse(agreement).map_err(|_| stale_cursor())?,
            Period::parse(period).map_err(|_| stale_cursor())?,
            sequence.parse::<u32>().map_err(|_| stale_cursor())?,
        )),
        _ => None,
    };
    let page = state
        .run(move |store, _| {
            let visible: Vec<AgreementId> = visible_agreements(store, &caller, agreement.as_ref())?.into_iter().collect();
            let (from, to) = months.range();
            let query = StatementQuery { agreements: &visible, from, to, kind, after, limit: paging.limit() + 1 };
            let items = store
                .statement_rows(&query)?
                .into_iter()
                .map(|row| {
                    let c = row.currency;
                    StatementItem {
                        statement: summary(&row.head),
                        currency: c.code().to_owned(),
                        net_payable: c.format(row.net_payable),
                        paid: row.paid.map(|(paid, _)| c.format(paid)),
                        outstanding: row.paid.map(|(_, left)| c.format(left)),
                        countersigned: row.countersigned,
                        closed_on: row.closed_on,
                    }
                })
                .collect();
            Ok(paging.page_read(items, |s: &StatementItem| {
                let s = &s.statement;
                key_of(&[&s.agreement, &s.period, &s.sequence.to_string()])
            }))
        })
        .await?;
    let columns = [
        "agreement",
        "agreement_version",
        "period",
        "sequence",
        "kind",
        "currency",
        "net_payable",
        "paid",
        "outstanding",
        "countersigned",
        "closed_on",
        "digest",
        "leaf",
    ];
    page::answer(&headers, &uri, &page, &columns)
}

/// The latest statement of an agreement's month: its canonical bytes (RFC 8785), with its digest
/// and sequence in the `Revshare-Statement-Digest` and `Revshare-Statement-Sequence` headers.
#[utoipa::path(
    get,
    path = "/statements/{agreement}/{period}",
    tag = "statements",
    params(("agreement" = String, Path, description = "the agreement id"), ("period" = String, Path, description = "the month, YYYY-MM")),
    responses(
        (status = 200, description = "the statement's canonical JSON; its lines as CSV with `Accept: text/csv`", content((crate::schemas::StatementSchema = "application/json"), (String = "text/csv"))),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "no such agreement or statement that this token can read", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_statement(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request_headers: HeaderMap,
    Path((agreement, period)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let id = agreement_id(&agreement)?;
    let period = Period::parse(&period).map_err(|e| Problem::bad_request(e.to_string()))?;
    let statement = state
        .run(move |store, _| {
            readable(store, &caller, &id)?;
            store.statement(&id, period)?.ok_or_else(|| Problem::not_found(format!("agreement {id} has no statement for {period}")))
        })
        .await?;
    let header_value =
        |text: String| HeaderValue::from_str(&text).map_err(|e| Problem::internal("a statement header cannot be written", &e));
    if crate::csv_answer::wanted(&request_headers) {
        let mut answer = crate::csv_answer::answer(revshare_core::spreadsheet::statement_lines(&statement.statement()?))?;
        answer.headers_mut().insert(HeaderName::from_static("revshare-statement-digest"), header_value(statement.head.digest.clone())?);
        answer
            .headers_mut()
            .insert(HeaderName::from_static("revshare-statement-sequence"), header_value(statement.head.sequence.to_string())?);
        return Ok(answer);
    }
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (HeaderName::from_static("revshare-statement-digest"), header_value(statement.head.digest.clone())?),
        (HeaderName::from_static("revshare-statement-sequence"), header_value(statement.head.sequence.to_string())?),
    ];
    Ok((headers, statement.canonical).into_response())
}

/// An open month as it would close now (SPEC §10).
#[derive(Serialize, ToSchema)]
pub struct Preview {
    /// Always true: this is not a statement of record.
    pub preview: bool,
    /// When it was computed.
    #[schema(example = "2026-10-20T09:30:00Z")]
    pub as_of: String,
    /// The statement closing the month now would finalise, byte for byte in its canonical form.
    #[schema(value_type = crate::schemas::StatementSchema)]
    pub statement: Value,
    /// How the month's records arrived so far, beside the statement.
    pub delivery: DeliveryView,
}

/// How an agreement month's records arrived: delivery statistics, reported beside its statement
/// and never in it (SPEC §6), so resends and retries change no statement byte.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub agreement: String,
    #[schema(example = "2026-10")]
    pub period: String,
    /// Distinct records stored for the month.
    pub records: u64,
    /// The batches that stored them.
    pub batches: u64,
    /// Those stored after the month closed (carried by a restatement).
    pub late: u64,
    /// Identical resends of them acknowledged; they changed nothing.
    pub resends: u64,
}

impl DeliveryView {
    fn of(id: &AgreementId, period: Period, d: revshare_store::Delivery) -> DeliveryView {
        DeliveryView {
            agreement: id.to_string(),
            period: period.to_string(),
            records: d.records,
            batches: d.batches,
            late: d.late,
            resends: d.resends,
        }
    }
}

/// How an agreement month's records arrived (open or closed): records, batches, late records and
/// identical resends. For whoever may read the agreement's statements.
#[utoipa::path(
    get,
    path = "/statements/{agreement}/{period}/delivery",
    tag = "statements",
    params(("agreement" = String, Path, description = "the agreement id"), ("period" = String, Path, description = "the month, YYYY-MM")),
    responses(
        (status = 200, description = "the month's delivery statistics", body = DeliveryView),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn statement_delivery(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agreement, period)): Path<(String, String)>,
) -> Result<Json<DeliveryView>, Problem> {
    let id = agreement_id(&agreement)?;
    let period = period_of(&period)?;
    let view = state
        .run(move |store, _| {
            readable(store, &caller, &id)?;
            Ok(DeliveryView::of(&id, period, store.delivery(&id, period)?))
        })
        .await?;
    Ok(Json(view))
}

/// An open month as `revshare statement preview` shows it: the statement closing it now would
/// finalise (running totals mid-month), unsigned, marked as a preview; nothing is booked or
/// logged. For the agreement's licensor and host.
#[utoipa::path(
    get,
    path = "/statements/{agreement}/{period}/preview",
    tag = "statements",
    params(("agreement" = String, Path, description = "the agreement id"), ("period" = String, Path, description = "the month, YYYY-MM")),
    responses(
        (status = 200, description = "the month as it would close now", body = Preview),
        (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "an auditor's token: previews are for the agreement's two parties", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "the month is closed: its statement is final", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "the agreement is not in effect that month", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn preview_statement(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agreement, period)): Path<(String, String)>,
) -> Result<Json<Preview>, Problem> {
    let id = agreement_id(&agreement)?;
    let period = period_of(&period)?;
    let preview = state
        .run(move |store, shared| {
            readable(store, &caller, &id)?;
            if !matches!(caller.role, Role::Licensor | Role::Host) {
                return Err(Problem::forbidden(format!(
                    "{} is an {}: a preview is for the agreement's licensor and host; the finalised statements are readable",
                    caller.party, caller.role
                )));
            }
            let as_of = shared.now();
            let bytes = store.preview(&id, period)?.to_canonical().map_err(|e| Problem::internal("a preview cannot be encoded", &e))?;
            let statement = serde_json::from_slice(&bytes).map_err(|e| Problem::internal("a preview cannot be read back", &e))?;
            let delivery = DeliveryView::of(&id, period, store.delivery(&id, period)?);
            Ok(Preview { preview: true, as_of: as_of.to_string(), statement, delivery })
        })
        .await?;
    Ok(Json(preview))
}

/// Who owes whom, per currency, under the agreements this token may read, from the journal.
#[utoipa::path(get, path = "/balances", tag = "ledger", responses((status = 200, description = "who owes whom; the balances (not the pending payments) as CSV with `Accept: text/csv`", content((BalanceList = "application/json"), (String = "text/csv"))), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(crate) async fn balances(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let list = balances_of(&state, caller).await?;
    let columns = ["agreement", "currency", "debtor.party", "debtor.role", "creditor.party", "creditor.role", "amount"];
    crate::csv_answer::json_or_rows(&headers, &list, &columns, &list.balances)
}

/// Who owes whom under the agreements `caller` may read, and the payments pending.
pub(crate) async fn balances_of(state: &AppState, caller: Caller) -> Result<BalanceList, Problem> {
    let debts = state
        .run(move |store, _| {
            let journal = store.journal()?;
            let visible = journal.iter().filter(|entry| may_read(&caller, entry.agreement(), entry.licensor(), entry.host()));
            let balances = Balances::from_entries(visible).map_err(|e| Problem::internal("the journal does not balance", &e))?;
            let debts: Vec<Debt> = balances
                .currencies()
                .into_iter()
                .flat_map(|currency| balances.owed(currency))
                .map(|debt| Debt {
                    agreement: debt.agreement.to_string(),
                    currency: debt.currency.to_string(),
                    debtor: PartyRef { party: debt.debtor.id.to_string(), role: debt.debtor.role.as_str().to_owned() },
                    creditor: PartyRef { party: debt.creditor.id.to_string(), role: debt.creditor.role.as_str().to_owned() },
                    amount: debt.currency.format(debt.amount_minor),
                })
                .collect();
            let mut pending = Vec::new();
            for payment in store.pending_payments(None)? {
                let agreement = store.agreement(&payment.agreement_id, None)?;
                if may_read_agreement(&caller, &agreement) {
                    pending.push(PendingPaymentView {
                        agreement: payment.agreement_id.to_string(),
                        reference: payment.reference,
                        from: payment.from.as_str().to_owned(),
                        amount: payment.currency.format(payment.amount_minor),
                        currency: payment.currency.to_string(),
                    });
                }
            }
            Ok((debts, pending))
        })
        .await?;
    let (debts, pending) = debts;
    Ok(BalanceList { balances: debts, pending })
}

/// A registered public key: the deployment's (`party` null) or a party's, with its log leaf.
#[derive(Serialize, ToSchema)]
pub struct KeyEntry {
    /// The owner; null for the deployment's signing keys.
    #[schema(example = "northwind")]
    pub party: Option<String>,
    /// The verifier key (`<name>+<key id>+<base64>`), as `revshare verify --trust` reads it.
    #[schema(example = "northwind+8c1f2d3a+AdT4wlrQ3vS6rJZqY0m2pGk1h8eCwF6xk3oV9bN7uYtI")]
    pub key: String,
    /// The key's leaf in the log: a rotation's leaf carries the replaced key's signature.
    pub leaf: u64,
    /// The key it replaced, for a rotation.
    pub replaces: Option<String>,
}

/// A key a party registers for itself: its first, with a proof of possession, or a later one,
/// with the rotation signed by its current key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// The verifier key (`<name>+<key id>+<base64>`, as `revshare keys generate` writes it).
    pub key: String,
    /// For the party's first key: the new key's signature, in base64, of
    /// `revshare key registration v1\n<party>\n<key>\n` (proof that the caller holds it).
    pub proof: Option<String>,
    /// For a later key: the current key's signature of `revshare key rotation v1\n<party>\n<key>\n`.
    pub rotation: Option<RotationSignature>,
}

/// A signature by the key being replaced.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationSignature {
    /// The current key, which signs.
    pub key: String,
    /// Its Ed25519 signature, in base64.
    pub signature: String,
}

/// The deployment's key history and the caller's own keys, by leaf (the deployment's last key
/// signs now). Other parties' keys are theirs to show. A verifier should still obtain its first
/// trusted key by a channel of its own.
#[utoipa::path(get, path = "/keys", tag = "log",
    params(PageParams),
    responses((status = 200, description = "a page of the deployment's keys and the caller's, with their history; the next page in `Link`", body = Page<KeyEntry>), (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")), security(("bearer" = [])))]
pub(crate) async fn keys(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, Problem> {
    let (_, paging) = Paging::read(query, &[])?;
    let page = state
        .run(move |store, _| {
            let registered = store.keys()?;
            let (mut previous, mut previous_own): (Option<String>, Option<String>) = (None, None);
            let mut listed = Vec::new();
            for key in registered {
                let text = key.key.to_text();
                match key.party {
                    None => {
                        let replaces = previous.replace(text.clone());
                        listed.push(KeyEntry { party: None, key: text, leaf: key.leaf, replaces });
                    }
                    Some(party) if party == caller.party.as_str() => {
                        let replaces = previous_own.replace(text.clone());
                        listed.push(KeyEntry { party: Some(party), key: text, leaf: key.leaf, replaces });
                    }
                    Some(_) => {}
                }
            }
            Ok(paging.page(listed, |k: &KeyEntry| number_key(k.leaf)))
        })
        .await?;
    page::answer(&headers, &uri, &page, &["party", "key", "leaf", "replaces"])
}

/// Registers a key for the caller's party (SPEC §7): its first with a proof of possession, or a
/// later one by a rotation its current key signs. Logged; the leaf says which.
#[utoipa::path(
    post,
    path = "/keys",
    tag = "log",
    request_body(content = NewKey, content_type = "application/json"),
    responses(
        (status = 200, description = "registered (or already registered for the caller)", body = KeyEntry),
        (status = 400, description = "the body is not a key with exactly one of `proof` and `rotation`", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "an operator token: the operator registers no key of its own", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "a proof or rotation signature that does not verify, a first key when the party has one, or a key someone else registered", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<KeyEntry>, Problem> {
    if caller.role == Role::Operator {
        return Err(Problem::forbidden(
            "the operator is no party and registers no key of its own; the deployment's key is rotated on the store",
        ));
    }
    let new: NewKey = json_body(&state, &headers, request_body).await?;
    let key = VerifierKey::parse(&new.key).map_err(|e| Problem::bad_request(format!("`key`: {e}")))?;
    let signature = |text: &str, member: &str| {
        from_b64(text)
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .ok_or_else(|| Problem::bad_request(format!("`{member}` must be a 64-byte Ed25519 signature in base64")))
    };
    let party = caller.party.clone();
    let entry = match (new.proof, new.rotation) {
        (Some(proof), None) => {
            let proof = signature(&proof, "proof")?;
            state
                .write(move |store, _| {
                    let leaf = store.register_own_key(&party, &key, &proof)?;
                    Ok(KeyEntry { party: Some(party.to_string()), key: key.to_text(), leaf, replaces: None })
                })
                .await?
        }
        (None, Some(rotation)) => {
            let endorsement = Signed { signature: signature(&rotation.signature, "rotation.signature")?, key: rotation.key };
            state
                .write(move |store, _| {
                    let leaf = store.rotate_key(Some(&party), &key, &endorsement)?;
                    Ok(KeyEntry { party: Some(party.to_string()), key: key.to_text(), leaf, replaces: Some(endorsement.key) })
                })
                .await?
        }
        _ => {
            return Err(Problem::bad_request(
                "send `proof` for the party's first key (the key's signature of `revshare key registration v1\\n<party>\\n<key>\\n`) or \
                 `rotation` for a later one (`{\"key\": <current key>, \"signature\": <its signature of `revshare key rotation \
                 v1\\n<party>\\n<key>\\n`>}`), one of the two",
            ));
        }
    };
    tracing::info!(party = %caller.party, key = %entry.key, leaf = entry.leaf, "key registered");
    Ok(Json(entry))
}

/// A fresh checkpoint of the log (a C2SP signed note), signed by the deployment key (not kept: a
/// read changes nothing).
#[utoipa::path(
    get,
    path = "/log/checkpoint",
    tag = "log",
    responses((status = 200, description = "the signed note", body = String, content_type = "text/plain"), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(crate) async fn checkpoint(State(state): State<AppState>) -> Result<Response, Problem> {
    let (_, _, note) = state.run(|store, shared| Ok(receipts::sign_checkpoint(store, shared.key(), shared.now())?)).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

/// A leaf and its inclusion proof in the tree of `size` leaves, or of a fresh checkpoint's
/// (included) when `size` is not given.
#[utoipa::path(
    get,
    path = "/log/inclusion",
    tag = "log",
    params(("leaf" = u64, Query, description = "the leaf index"), ("size" = Option<u64>, Query, description = "the tree size")),
    responses((status = 200, description = "the leaf's inclusion proof in the checkpoint", body = InclusionProof), (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no leaf of that index that this token may read", body = ProblemDetails, content_type = "application/problem+json"), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(crate) async fn inclusion(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Params,
) -> Result<Json<InclusionProof>, Problem> {
    let params = params(query)?;
    let (index, size) = (required(&params, "leaf")?, number(&params, "size")?);
    let proof = state
        .run(move |store, shared| {
            // A leaf the caller may not read is answered as if it were not there, before a
            // checkpoint is signed for it. Leaves past the log's end get the range error: the
            // log's size is public.
            if index < store.log_size()? {
                let leaf = store.log_leaf(index)?;
                if !may_read_leaf(store, &caller, index, &leaf.event)? {
                    return Err(Problem::not_found(format!("there is no log leaf {index} that this token may read")));
                }
            }
            Ok(receipts::inclusion(store, shared.key(), shared.now(), index, size)?)
        })
        .await?;
    Ok(Json(proof))
}

/// The proof that the tree of `to` leaves (default: a fresh checkpoint's, included) extends the
/// tree of `from` leaves: the log was only appended to.
#[utoipa::path(
    get,
    path = "/log/consistency",
    tag = "log",
    params(("from" = u64, Query, description = "the earlier tree size (at least 1)"), ("to" = Option<u64>, Query, description = "the later tree size")),
    responses((status = 200, description = "the proof that the later checkpoint extends the earlier", body = ConsistencyProof), (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(crate) async fn consistency(State(state): State<AppState>, query: Params) -> Result<Json<ConsistencyProof>, Problem> {
    let params = params(query)?;
    let (from, to) = (required(&params, "from")?, number(&params, "to")?);
    let proof = state.run(move |store, shared| Ok(receipts::consistency(store, shared.key(), shared.now(), from, to)?)).await?;
    Ok(Json(proof))
}

/// A signature added to a statement.
#[derive(Serialize, ToSchema)]
pub struct StatementSignature {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    /// YYYY-MM.
    #[schema(example = "2026-10")]
    pub period: String,
    pub sequence: u32,
    /// `sha256:` of the canonical bytes: what was signed (`revshare statement v1\n<digest>\n`).
    pub digest: String,
    /// The verifier key that signed.
    pub key: String,
}

/// A countersignature of a statement by its host (`revshare statement sign`).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code, reason = "documents the body; it is read by the core's `Signed::from_json`")]
pub struct SignatureBody {
    /// The host's verifier key text, registered for it (`revshare party key`, or `POST /v1/keys`).
    #[schema(example = "northwind+1a2b3c4d+AbCd…")]
    key: String,
    /// The 64-byte Ed25519 signature of `revshare statement v1\n<digest>\n`, in base64.
    signature: String,
}

/// Closes an agreement's month (`revshare close`).
#[derive(Deserialize, ToSchema)]
pub struct CloseBody {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    /// YYYY-MM.
    #[schema(example = "2026-10")]
    pub period: String,
}

/// Who paid: the host pays the licensor, or the licensor pays the host back.
#[derive(Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PayerBody {
    Host,
    Licensor,
}

/// A payment under an agreement (`revshare payment record`).
#[derive(Deserialize, ToSchema)]
pub struct PaymentBody {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    /// A decimal in the agreement's currency, with at most its minor-unit places.
    #[schema(example = "1200.00")]
    pub amount: String,
    /// The payer's reference (a bank transfer id, say); posted once in the whole journal.
    #[schema(example = "wire-2026-11-04")]
    pub reference: String,
    /// Who paid; by default the caller (a host's token records what the host paid). The payee
    /// names the payer to record a payment it received: posted at once.
    #[serde(default)]
    pub from: Option<PayerBody>,
}

/// A recorded payment.
#[derive(Serialize, ToSchema)]
pub struct PaymentRecorded {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    pub reference: String,
    pub description: String,
    /// `pending` (recorded by the payer: the payee confirms it) or `posted` (recorded or
    /// confirmed by the payee: in the journal).
    pub state: String,
}

/// The payment a payee confirms.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmationBody {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    /// The reference the payer recorded it under.
    #[schema(example = "wire-2026-11-04")]
    pub reference: String,
}

/// Countersigns the latest statement of an agreement's month with the host's registered key, as
/// `revshare statement sign` does. Only the agreement's host; signing again changes nothing.
#[utoipa::path(
    post,
    path = "/statements/{agreement}/{period}/signatures",
    tag = "statements",
    params(("agreement" = String, Path, description = "the agreement id"), ("period" = String, Path, description = "the month, YYYY-MM")),
    request_body(content = SignatureBody, content_type = "application/json"),
    responses((status = 415, description = "the body is not sent as application/json", body = ProblemDetails, content_type = "application/problem+json"), 
        (status = 200, description = "the signature is kept", body = StatementSignature),
        (status = 400, description = "invalid parameters or body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not a host token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement or statement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "a key not registered for the host, or a signature that does not verify", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn sign_statement(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agreement, period)): Path<(String, String)>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<StatementSignature>, Problem> {
    caller.require(Role::Host, "countersign a statement")?;
    let id = agreement_id(&agreement)?;
    let period = period_of(&period)?;
    let value: Value = json_body(&state, &headers, request_body).await?;
    let signed = Signed::from_json(&value)
        .ok_or_else(|| Problem::bad_request("the body must be `{\"key\": \"<verifier key>\", \"signature\": \"<64 bytes in base64>\"}`"))?;
    let signature = state
        .write(move |store, _| {
            // The caller is a host: it reads only its own agreements.
            readable(store, &caller, &id)?;
            let statement =
                store.statement(&id, period)?.ok_or_else(|| Problem::not_found(format!("agreement {id} has no statement for {period}")))?;
            store.sign_statement(&statement, &signed)?;
            Ok(StatementSignature {
                agreement: id.to_string(),
                period: period.to_string(),
                sequence: statement.head.sequence,
                digest: statement.head.digest,
                key: signed.key,
            })
        })
        .await?;
    tracing::info!(agreement = %signature.agreement, period = %signature.period, "statement countersigned");
    Ok(Json(signature))
}

/// How an agreement is sent: its TOML file, or the same structure as a JSON object.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AgreementFormat {
    Toml,
    Json,
}

/// Registers an agreement version from its TOML (SPEC §2), or the same structure in JSON, as
/// `revshare agreement add` does: version 1 of a new id, or an amendment. Only its licensor.
/// JSON is converted to TOML (`agreement_json.rs`) and takes the same path, so what is stored is
/// TOML either way.
#[utoipa::path(
    post,
    path = "/agreements",
    tag = "agreements",
    request_body(
        description = "the agreement file (`application/toml`), or a JSON object with the same keys and structure (decimals as strings; a number with a fraction or exponent is refused as a TOML float is); a JSON agreement is stored as its conversion to TOML",
        content((String = "application/toml"), (Object = "application/json"))
    ),
    responses(
        (status = 201, description = "registered; `Location` is the agreement", body = AgreementView, headers(("Location" = String, description = "`/v1/agreements/{id}`"))),
        (status = 400, description = "the agreement does not parse or validate: every problem, with line and column (and, for JSON, the field)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not the agreement's licensor", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "the id is another licensor's agreement", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "the registry or the agreements stored refuse it", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_agreement(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, Problem> {
    caller.require(Role::Licensor, "register an agreement")?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let format = if media.eq_ignore_ascii_case("application/toml") {
        AgreementFormat::Toml
    } else if media.eq_ignore_ascii_case("application/json") {
        AgreementFormat::Json
    } else {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "unsupported content type",
            format!("an agreement is sent as application/toml (its file) or application/json (the same structure), not `{content_type}`"),
        ));
    };
    let bytes = body::read(&headers, request_body, state.max_body_bytes(), state.body_idle()).await?;
    let body = String::from_utf8(bytes.to_vec()).map_err(|e| Problem::bad_request(format!("the agreement is not UTF-8: {e}")))?;
    let invalid = |detail: String, errors: Vec<ProblemItem>| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-agreement", "the agreement is not valid", format!("{detail}; nothing was stored"))
            .with_errors(errors)
    };
    let converted = match format {
        AgreementFormat::Toml => None,
        AgreementFormat::Json => Some(
            crate::agreement_json::to_toml(&body)
                .map_err(|errors| invalid(format!("{} problem(s) in the JSON agreement", errors.len()), errors))?,
        ),
    };
    let text = converted.as_ref().map_or_else(|| body.clone(), |c| c.toml.clone());
    const NAME: &str = "agreement.toml";
    let parsed = parse_agreement(NAME, &text).map_err(|e| {
        let errors = e
            .problems
            .iter()
            .map(|p| {
                let message = match &p.help {
                    Some(help) => format!("{} ({help})", p.message),
                    None => p.message.clone(),
                };
                match &converted {
                    // Located in the JSON body, with the field the problem is about.
                    Some(converted) => converted.locate(&body, p.span.offset(), &message),
                    None => {
                        let (line, column) = line_column(&text, p.span.offset());
                        ProblemItem {
                            line: u64::try_from(line).ok(),
                            column: u64::try_from(column).ok(),
                            message,
                            ..ProblemItem::default()
                        }
                    }
                }
            })
            .collect();
        invalid(e.to_string(), errors)
    })?;
    if parsed.licensor() != &caller.party {
        return Err(Problem::forbidden(format!(
            "agreement {} is licensor {}'s; a token of {} registers only its own agreements",
            parsed.id(),
            parsed.licensor(),
            caller.party
        )));
    }
    let id = parsed.id().clone();
    let view = state
        .write(move |store, _| {
            // An id another licensor registered: refused without a word of that agreement (its
            // parties, versions or terms), whatever the body says (SPEC §9).
            match store.agreement(&id, None) {
                Ok(existing) if existing.licensor() != &caller.party => {
                    let detail = format!("agreement id `{id}` is taken; register your agreement under another id; nothing was stored");
                    return Err(Problem::new(StatusCode::CONFLICT, "conflict", "conflicts with what is stored", detail));
                }
                Ok(_) | Err(StoreError::UnknownAgreement { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let agreement = store.add_agreement(NAME, &text)?;
            Ok(AgreementView {
                id: agreement.id().to_string(),
                version: agreement.version(),
                licensor: agreement.licensor().to_string(),
                host: agreement.host().to_string(),
                currency: agreement.currency().to_string(),
                digest: agreement.digest(),
                source: text,
            })
        })
        .await?;
    tracing::info!(agreement = %view.id, version = view.version, "agreement registered");
    Ok(created(&format!("/v1/agreements/{}", view.id), Json(view)))
}

impl From<CloseError> for Problem {
    fn from(error: CloseError) -> Problem {
        match error {
            CloseError::Store(e) => (*e).into(),
            e @ CloseError::AlreadyClosed { .. } => {
                Problem::new(StatusCode::CONFLICT, "already-closed", "the month is already closed", e.to_string())
            }
            e @ CloseError::TooEarly { .. } => {
                Problem::new(StatusCode::CONFLICT, "too-early", "the month cannot be closed yet", e.to_string())
            }
            e @ (CloseError::Settle(_) | CloseError::Entry(_)) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", "the request cannot be applied", e.to_string())
            }
            e @ (CloseError::Canonical(_) | CloseError::Corrupt(_)) => Problem::internal("closing the month failed", &e),
        }
    }
}

/// Closes an agreement's month as `revshare close` does: restates earlier months that late
/// records changed, finalises the month's statement with its journal entry, and signs them with
/// the deployment key. Only the agreement's licensor.
#[utoipa::path(
    post,
    path = "/close",
    tag = "statements",
    request_body(content = CloseBody, content_type = "application/json"),
    responses((status = 415, description = "the body is not sent as application/json", body = ProblemDetails, content_type = "application/problem+json"), 
        (status = 201, description = "the month's statement, finalised and signed; `Location` is the statement", body = StatementSummary, headers(("Location" = String, description = "`/v1/statements/{agreement}/{period}`"))),
        (status = 400, description = "invalid body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "not a licensor token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "the month is already closed, or cannot be closed yet (its end plus the agreement's `close_after_days`); the detail says from when", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "the month cannot be settled", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_close(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, Problem> {
    caller.require(Role::Licensor, "close a month")?;
    let request: CloseBody = json_body(&state, &headers, request_body).await?;
    let id = agreement_id(&request.agreement)?;
    let period = period_of(&request.period)?;
    let stored = state
        .write(move |store, shared| {
            readable(store, &caller, &id)?;
            Ok(close_month(store, &id, period, shared.key(), shared.now())?.0)
        })
        .await?;
    tracing::info!(agreement = %stored.head.agreement_id, period = %stored.head.period, "month closed");
    Ok(created(&format!("/v1/statements/{}/{}", stored.head.agreement_id, stored.head.period), Json(summary(&stored.head))))
}

/// Records a payment under an agreement (SPEC §10). Recorded by its payer, it is pending until
/// the payee confirms it (`POST /v1/payments/confirmations`); recorded by its payee, it posts at
/// once. Either way the token's party must be a party of the agreement.
#[utoipa::path(
    post,
    path = "/payments",
    tag = "ledger",
    request_body(content = PaymentBody, content_type = "application/json"),
    responses((status = 415, description = "the body is not sent as application/json", body = ProblemDetails, content_type = "application/problem+json"), 
        (status = 201, description = "pending (recorded by the payer) or posted (recorded by the payee); `Location` names it", body = PaymentRecorded,
            headers(("Location" = String, description = "the payment: `/v1/payments/{agreement}/{reference}`"))),
        (status = 400, description = "invalid body, or an amount with too many places or over the bound (named)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "the token's party is neither the host nor the licensor", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "the journal refuses it (a reference already recorded, say)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post_payment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, Problem> {
    let request: PaymentBody = json_body(&state, &headers, request_body).await?;
    let caller_pays = match caller.role {
        Role::Host => PayerBody::Host,
        Role::Licensor => PayerBody::Licensor,
        _ => {
            return Err(Problem::forbidden(format!(
                "only an agreement's host or licensor records its payments; this token acts for {} {}",
                caller.role, caller.party
            )));
        }
    };
    let (payer_role, from) = match request.from.unwrap_or(caller_pays) {
        PayerBody::Host => (Role::Host, payments::Payer::Host),
        PayerBody::Licensor => (Role::Licensor, payments::Payer::Licensor),
    };
    let id = agreement_id(&request.agreement)?;
    let recorded = state
        .write(move |store, _| {
            let agreement = readable(store, &caller, &id)?;
            let refused = |e: PaymentError| -> Problem {
                match e {
                    PaymentError::Amount(detail) | PaymentError::Reference(detail) => Problem::bad_request(detail),
                    PaymentError::Entry(e) => StoreError::from(e).into(),
                }
            };
            let amount_minor = payments::parse_amount(agreement.currency(), &request.amount).map_err(refused)?;
            let entry = payments::entry_of(&agreement, amount_minor, &request.reference, from).map_err(refused)?;
            let state = if caller.role == payer_role {
                // Recorded by the payer: pending, in no account, until the payee confirms it.
                store.record_payment(&entry, from, amount_minor)?;
                "pending"
            } else {
                store.post_entry(&entry)?;
                "posted"
            };
            Ok(PaymentRecorded {
                agreement: id.to_string(),
                reference: request.reference,
                description: entry.description().to_owned(),
                state: state.to_owned(),
            })
        })
        .await?;
    tracing::info!(reference = %recorded.reference, state = %recorded.state, "payment recorded");
    Ok(created(&format!("/v1/payments/{}/{}", recorded.agreement, recorded.reference), Json(recorded)))
}

/// A payment and where it stands.
#[derive(Serialize, ToSchema)]
pub struct PaymentView {
    #[schema(example = "meridian-northwind")]
    pub agreement: String,
    /// The payer's own reference, unique within the agreement.
    #[schema(example = "wire-2026-11-05")]
    pub reference: String,
    /// Who paid: `host` or `licensor`.
    #[schema(example = "host")]
    pub from: String,
    /// A decimal string with the currency's minor-unit places.
    #[schema(example = "4620.50")]
    pub amount: String,
    #[schema(example = "USD")]
    pub currency: String,
    /// `pending` (the payee has not confirmed it), `confirmed`, or `reversed`.
    #[schema(example = "confirmed")]
    pub state: String,
}

impl PaymentView {
    fn of(row: &revshare_store::accounts::PaymentRow) -> PaymentView {
        PaymentView {
            agreement: row.agreement.to_string(),
            reference: row.reference.clone(),
            from: row.from.as_str().to_owned(),
            amount: row.currency.format(row.amount_minor),
            currency: row.currency.code().to_owned(),
            state: row.state.as_str().to_owned(),
        }
    }
}

/// The payments of the agreements this token may read, by agreement and reference; filtered by
/// agreement and state.
#[utoipa::path(
    get,
    path = "/payments",
    tag = "ledger",
    params(
        PageParams,
        ("agreement" = Option<String>, Query, description = "only this agreement's"),
        ("state" = Option<String>, Query, description = "only `pending`, `confirmed` or `reversed` payments"),
    ),
    responses((status = 200, description = "a page of the payments; as CSV with `Accept: text/csv`; the next page in `Link`", content((Page<PaymentView> = "application/json"), (String = "text/csv"))), (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(crate) async fn list_payments(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    query: Params,
) -> Result<Response, Problem> {
    let (params, paging) = Paging::read(query, &["agreement", "state"])?;
    let wanted = match choice(&params, "state", &["pending", "confirmed", "reversed"])? {
        Some("pending") => Some(PaymentState::Pending),
        Some("confirmed") => Some(PaymentState::Confirmed),
        Some(_) => Some(PaymentState::Reversed),
        None => None,
    };
    let agreement = params.get("agreement").map(|text| agreement_id(text)).transpose()?;
    let after = match paging.after_parts(2)?.as_deref() {
        Some([agreement, reference]) => Some((AgreementId::parse(agreement).map_err(|_| stale_cursor())?, (*reference).to_owned())),
        _ => None,
    };
    let page = state
        .run(move |store, _| {
            let visible: Vec<AgreementId> = visible_agreements(store, &caller, agreement.as_ref())?.into_iter().collect();
            let query = PaymentQuery { agreements: &visible, state: wanted, after, limit: paging.limit() + 1 };
            // The list is ordered by the reference each payment is kept under; an item shows the
            // payer's own.
            let keyed = store
                .payment_rows(&query)?
                .iter()
                .map(|row| (key_of(&[row.agreement.as_str(), &row.stored_reference]), PaymentView::of(row)))
                .collect();
            Ok(paging.page_keyed(keyed))
        })
        .await?;
    page::answer(&headers, &uri, &page, &revshare_store::accounts::PaymentRow::COLUMNS)
}

/// One payment and where it stands.
#[utoipa::path(
    get,
    path = "/payments/{agreement}/{reference}",
    tag = "ledger",
    params(("agreement" = String, Path, description = "the agreement"), ("reference" = String, Path, description = "the payer's reference")),
    responses((status = 200, description = "the payment", body = PaymentView), (status = 400, description = "invalid parameters", body = ProblemDetails, content_type = "application/problem+json"), (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement or payment that this token can read", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub(crate) async fn get_payment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((agreement, reference)): Path<(String, String)>,
) -> Result<Json<PaymentView>, Problem> {
    let id = agreement_id(&agreement)?;
    let view = state
        .run(move |store, _| {
            readable(store, &caller, &id)?;
            let rows = revshare_store::accounts::payments(store, Some(&id))?;
            rows.iter().find(|row| row.reference == reference).map(PaymentView::of).ok_or_else(|| {
                Problem::not_found(format!("agreement {id} has no payment `{}`", revshare_core::text::printable(&reference, 130)))
            })
        })
        .await?;
    Ok(Json(view))
}

/// The payee confirms a pending payment: it posts to the journal (SPEC §10).
#[utoipa::path(
    post,
    path = "/payments/confirmations",
    tag = "ledger",
    request_body(content = ConfirmationBody, content_type = "application/json"),
    responses(
        (status = 200, description = "posted", body = PaymentRecorded),
        (status = 400, description = "invalid body", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "no valid bearer token", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "the token's party is the payer, not the payee", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "no such agreement that this token can read, or no payment pending under that reference", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "the body is over the limit", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 415, description = "another content type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "over the token's rate limit; see Retry-After", body = ProblemDetails, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn confirm_payment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<PaymentRecorded>, Problem> {
    let request: ConfirmationBody = json_body(&state, &headers, request_body).await?;
    let id = agreement_id(&request.agreement)?;
    let posted = state
        .write(move |store, _| {
            readable(store, &caller, &id)?;
            let not_pending = || Problem::not_found(format!("agreement {id} has no payment pending under `{}`", request.reference));
            let pending = store.pending_payments(Some(&id))?;
            let payment = pending.iter().find(|p| p.reference == request.reference).ok_or_else(not_pending)?;
            let (payer, payee) = match payment.from {
                payments::Payer::Host => (Role::Host, Role::Licensor),
                payments::Payer::Licensor => (Role::Licensor, Role::Host),
            };
            if caller.role != payee {
                return Err(Problem::forbidden(format!(
                    "the {payee} confirms a payment from the {payer}; this token acts for {} {}",
                    caller.role, caller.party
                )));
            }
            let entry = store.confirm_payment(&id, &request.reference)?;
            Ok(PaymentRecorded {
                agreement: id.to_string(),
                reference: request.reference,
                description: entry.description().to_owned(),
                state: "posted".to_owned(),
            })
        })
        .await?;
    tracing::info!(reference = %posted.reference, "payment confirmed");
    Ok(Json(posted))
}
